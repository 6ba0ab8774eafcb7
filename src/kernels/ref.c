/*
 * ref: the scalar reference of every kernel, written to be read, not to be fast.
 *
 * The dequantization formulas and the activation rounding follow ggml's definitions
 * exactly (the order of float operations included: d * sc first, then times q), because
 * the engine must agree with llama.cpp. The weight quantizers are our own searches of
 * the same quality class as ggml's reference quantizers.
 */
#include <math.h>
#include <string.h>

#include "base/err.h"
#include "kernels/impl.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Round to nearest, ties to even (the FPU default), as ggml's nearest_int. */
static int nearest_int(float f)
{
    return (int)lrintf(f);
}

/* ======================================================================== dequantize */

static void dequant_q8_0(const struct block_q8_0 *b, float *y)
{
    float d = kernels_fp16_to_f32(b->d);
    for (int j = 0; j < QK8_0; j++)
        y[j] = b->qs[j] * d;
}

static void dequant_q4_0(const struct block_q4_0 *b, float *y)
{
    float d = kernels_fp16_to_f32(b->d);
    for (int j = 0; j < QK4_0 / 2; j++) {
        y[j] = ((b->qs[j] & 0x0F) - 8) * d;
        y[j + QK4_0 / 2] = ((b->qs[j] >> 4) - 8) * d;
    }
}

static void dequant_q5_0(const struct block_q5_0 *b, float *y)
{
    float d = kernels_fp16_to_f32(b->d);
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    for (int j = 0; j < QK5_0 / 2; j++) {
        int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
        y[j] = (((b->qs[j] & 0x0F) | (h0 << 4)) - 16) * d;
        y[j + QK5_0 / 2] = (((b->qs[j] >> 4) | (h1 << 4)) - 16) * d;
    }
}

static void dequant_q4_K(const struct block_q4_K *b, float *y)
{
    float d = kernels_fp16_to_f32(b->d), dmin = kernels_fp16_to_f32(b->dmin);
    const uint8_t *q = b->qs;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
        uint8_t sc, m;
        q4k_scale_min(is, b->scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        q4k_scale_min(is + 1, b->scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++)
            y[j + l] = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++)
            y[j + 32 + l] = d2 * (q[l] >> 4) - m2;
    }
}

static void dequant_q5_K(const struct block_q5_K *b, float *y)
{
    float d = kernels_fp16_to_f32(b->d), dmin = kernels_fp16_to_f32(b->dmin);
    const uint8_t *ql = b->qs;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
        uint8_t sc, m;
        q4k_scale_min(is, b->scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        q4k_scale_min(is + 1, b->scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++)
            y[j + l] = d1 * ((ql[l] & 0xF) + (b->qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++)
            y[j + 32 + l] = d2 * ((ql[l] >> 4) + (b->qh[l] & u2 ? 16 : 0)) - m2;
    }
}

/* The 6-bit quant of element n*128 + k*32 + l (k = 0..3, l < 32), unbiased (-32..31). */
static int q6k_value(const struct block_q6_K *b, int n, int k, int l)
{
    const uint8_t *ql = b->ql + 64 * n, *qh = b->qh + 32 * n;
    int lo = k & 1 ? ql[l + 32] : ql[l];
    lo = k < 2 ? lo & 0xF : lo >> 4;
    int hi = (qh[l] >> (2 * k)) & 3;
    return (lo | (hi << 4)) - 32;
}

static void dequant_q6_K(const struct block_q6_K *b, float *y)
{
    float d = kernels_fp16_to_f32(b->d);
    for (int n = 0; n < 2; n++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int is = 8 * n + 2 * k + l / 16;
                y[128 * n + 32 * k + l] = d * b->scales[is] * q6k_value(b, n, k, l);
            }
}

static void dequant_q8_K(const struct block_q8_K *b, float *y)
{
    for (int j = 0; j < QK_K; j++)
        y[j] = b->d * b->qs[j];
}

void ref_dequantize_row(enum kernels_type t, const void *src, float *dst, int64_t n)
{
    switch (t) {
    case KERNELS_F32:
        memmove(dst, src, (size_t)n * sizeof(float));
        break;
    case KERNELS_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = kernels_fp16_to_f32(((const kernels_fp16 *)src)[i]);
        break;
    case KERNELS_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = kernels_bf16_to_f32(((const kernels_bf16 *)src)[i]);
        break;
#define DEQ(T, QK)                                                                  \
    for (int64_t i = 0; i < n / (QK); i++)                                          \
        dequant_##T((const struct block_##T *)src + i, dst + i * (QK));             \
    break;
    case KERNELS_Q8_0: DEQ(q8_0, QK8_0)
    case KERNELS_Q4_0: DEQ(q4_0, QK4_0)
    case KERNELS_Q5_0: DEQ(q5_0, QK5_0)
    case KERNELS_Q4_K: DEQ(q4_K, QK_K)
    case KERNELS_Q5_K: DEQ(q5_K, QK_K)
    case KERNELS_Q6_K: DEQ(q6_K, QK_K)
    case KERNELS_Q8_K: DEQ(q8_K, QK_K)
#undef DEQ
    }
}

/* ======================================================================== quantize */

/* Weight Q8_0, as ggml's reference quantizer: d = amax/127, q = round-half-away(x/d). */
static void quant_q8_0(const float *x, struct block_q8_0 *b)
{
    float amax = 0;
    for (int j = 0; j < QK8_0; j++)
        amax = MAX(amax, fabsf(x[j]));
    float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    b->d = kernels_f32_to_fp16(d);
    for (int j = 0; j < QK8_0; j++)
        b->qs[j] = (int8_t)roundf(x[j] * id);
}

/* The element of largest magnitude, with its sign (the first one on a tie). */
static float signed_absmax(const float *x, int n)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

/* Q4_0 / Q5_0: the extreme element maps to -8 / -16 exactly, as in ggml. */
static void quant_q4_0(const float *x, struct block_q4_0 *b)
{
    float d = signed_absmax(x, QK4_0) / -8, id = d ? 1.0f / d : 0.0f;
    b->d = kernels_f32_to_fp16(d);
    for (int j = 0; j < QK4_0 / 2; j++) {
        int q0 = MIN(15, (int)(x[j] * id + 8.5f));
        int q1 = MIN(15, (int)(x[j + QK4_0 / 2] * id + 8.5f));
        b->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void quant_q5_0(const float *x, struct block_q5_0 *b)
{
    float d = signed_absmax(x, QK5_0) / -16, id = d ? 1.0f / d : 0.0f;
    b->d = kernels_f32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_0 / 2; j++) {
        int q0 = MIN(31, (int)(x[j] * id + 16.5f));
        int q1 = MIN(31, (int)(x[j + QK5_0 / 2] * id + 16.5f));
        b->qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
        qh |= (uint32_t)(q0 >> 4) << j;
        qh |= (uint32_t)(q1 >> 4) << (j + 16);
    }
    memcpy(b->qh, &qh, 4);
}

/*
 * Asymmetric fit x ~ scale * q - min, q in 0..nmax, minimising sum w (x - scale q + min)^2.
 * Tries a range of step sizes around (max - min) / nmax; for each, rounds, then solves the
 * 2x2 weighted least squares for (scale, min) with those q. min is kept >= 0 (the
 * sub-block minimum is clamped to <= 0, as K-quants store a subtracted non-negative min).
 */
float ref_fit_scale_min(const float *x, const float *w, int n, int nmax, uint8_t *L,
                        float *the_min)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = MIN(lo, x[i]);
        hi = MAX(hi, x[i]);
    }
    lo = MIN(lo, 0.0f);
    if (hi <= lo) {
        memset(L, 0, (size_t)n);
        *the_min = -lo;
        return 0;
    }
    float best_err = INFINITY, best_scale = (hi - lo) / nmax, best_min = -lo;
    uint8_t Ltry[QK_K];
    for (int is = -10; is <= 20; is++) {
        float iscale = (nmax + 0.1f * is) / (hi - lo);
        if (iscale <= 0)
            continue;
        float sw = 0, swl = 0, swl2 = 0, swx = 0, swlx = 0;
        for (int i = 0; i < n; i++) {
            int l = MAX(0, MIN(nmax, nearest_int(iscale * (x[i] - lo))));
            Ltry[i] = (uint8_t)l;
            sw += w[i];
            swl += w[i] * l;
            swl2 += w[i] * l * l;
            swx += w[i] * x[i];
            swlx += w[i] * l * x[i];
        }
        float det = sw * swl2 - swl * swl;
        if (det <= 0)
            continue;
        float scale = (sw * swlx - swx * swl) / det;
        float mn = (swl2 * swx - swl * swlx) / det; /* x ~ scale*l + mn */
        if (mn > 0) { /* keep the offset non-positive: refit scale alone with mn = 0 */
            mn = 0;
            scale = swl2 > 0 ? swlx / swl2 : 0;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float e = scale * Ltry[i] + mn - x[i];
            err += w[i] * e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_scale = scale;
            best_min = -mn;
            memcpy(L, Ltry, (size_t)n);
        }
    }
    *the_min = best_min;
    return best_scale;
}

/* Pack 6-bit scale/min of sub-block j as q4k_scale_min reads them. */
static void q4k_pack_scale_min(uint8_t *s, int j, int sc, int m)
{
    if (j < 4) {
        s[j] = (uint8_t)((s[j] & 0xC0) | sc);
        s[j + 4] = (uint8_t)((s[j + 4] & 0xC0) | m);
    } else {
        s[j + 4] = (uint8_t)((sc & 0xF) | ((m & 0xF) << 4));
        s[j - 4] |= (uint8_t)((sc >> 4) << 6);
        s[j] |= (uint8_t)((m >> 4) << 6);
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): L receives the final 0..nmax quants. */
static void quant_k_asym(const float *x, int nmax, kernels_fp16 *dd, kernels_fp16 *dm,
                         uint8_t *scales, uint8_t *L)
{
    float sumx2 = 0;
    for (int i = 0; i < QK_K; i++)
        sumx2 += x[i] * x[i];
    float av_x = sqrtf(sumx2 / QK_K);
    float w[32], scale[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        for (int l = 0; l < 32; l++)
            w[l] = av_x + fabsf(x[32 * j + l]);
        scale[j] = kernels_tab.fit_scale_min(x + 32 * j, w, 32, nmax, L + 32 * j, &mins[j]);
        max_scale = MAX(max_scale, scale[j]);
        max_min = MAX(max_min, mins[j]);
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(scales, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        int ls = MIN(63, nearest_int(inv_scale * scale[j]));
        int lm = MIN(63, nearest_int(inv_min * mins[j]));
        q4k_pack_scale_min(scales, j, MAX(0, ls), MAX(0, lm));
    }
    *dd = kernels_f32_to_fp16(max_scale / 63.f);
    *dm = kernels_f32_to_fp16(max_min / 63.f);
    /* requantize against the scales as stored */
    float d = kernels_fp16_to_f32(*dd), dmin = kernels_fp16_to_f32(*dm);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        q4k_scale_min(j, scales, &sc, &m);
        float ds = d * sc, dmv = dmin * m;
        for (int l = 0; l < 32; l++) {
            int q = ds ? nearest_int((x[32 * j + l] + dmv) / ds) : 0;
            L[32 * j + l] = (uint8_t)MAX(0, MIN(nmax, q));
        }
    }
}

static void quant_q4_K(const float *x, struct block_q4_K *b)
{
    uint8_t L[QK_K];
    quant_k_asym(x, 15, &b->d, &b->dmin, b->scales, L);
    for (int j = 0; j < QK_K; j += 64)
        for (int l = 0; l < 32; l++)
            b->qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + 32 + l] << 4));
}

static void quant_q5_K(const float *x, struct block_q5_K *b)
{
    uint8_t L[QK_K];
    quant_k_asym(x, 31, &b->d, &b->dmin, b->scales, L);
    memset(b->qh, 0, sizeof b->qh);
    for (int j = 0, k = 0; j < QK_K; j += 64, k++)
        for (int l = 0; l < 32; l++) {
            int a = L[j + l], c = L[j + 32 + l];
            b->qh[l] |= (uint8_t)(((a >> 4) << (2 * k)) | ((c >> 4) << (2 * k + 1)));
            b->qs[j / 2 + l] = (uint8_t)((a & 0xF) | ((c & 0xF) << 4));
        }
}

/* Symmetric fit x ~ scale * q, q in -nmax..nmax-1, weights x^2; tries step sizes around
 * max/-nmax and keeps the least-squares scale with the best error. */
float ref_fit_scale_sym(const float *x, int n, int nmax)
{
    float max = signed_absmax(x, n);
    if (max == 0)
        return 0;
    float best = 0, best_scale = 0;
    for (int is = -9; is <= 9; is++) {
        float iscale = -(nmax + 0.1f * is) / max;
        float slx = 0, sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = MAX(-nmax, MIN(nmax - 1, nearest_int(iscale * x[i])));
            float w = x[i] * x[i];
            slx += w * x[i] * l;
            sl2 += w * l * l;
        }
        /* the error of the LS fit is sum w x^2 - slx^2/sl2: maximise slx^2/sl2 */
        if (sl2 > 0 && slx * slx > best * sl2) {
            best = slx * slx / sl2;
            best_scale = slx / sl2;
        }
    }
    return best_scale;
}

static void quant_q6_K(const float *x, struct block_q6_K *b)
{
    float scale[16], max_scale = 0, amax = 0;
    for (int ib = 0; ib < 16; ib++) {
        scale[ib] = kernels_tab.fit_scale_sym(x + 16 * ib, 16, 32);
        if (fabsf(scale[ib]) > amax) {
            amax = fabsf(scale[ib]);
            max_scale = scale[ib];
        }
    }
    memset(b, 0, sizeof *b);
    if (amax == 0)
        return;
    float iscale = -128.f / max_scale;
    b->d = kernels_f32_to_fp16(1 / iscale);
    float d = kernels_fp16_to_f32(b->d);
    uint8_t L[QK_K];
    for (int ib = 0; ib < 16; ib++) {
        b->scales[ib] = (int8_t)MIN(127, nearest_int(iscale * scale[ib]));
        float ds = d * b->scales[ib];
        for (int l = 0; l < 16; l++) {
            int q = ds ? nearest_int(x[16 * ib + l] / ds) : 0;
            L[16 * ib + l] = (uint8_t)(MAX(-32, MIN(31, q)) + 32);
        }
    }
    for (int n = 0; n < 2; n++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *Ln = L + 128 * n;
            b->ql[64 * n + l] = (uint8_t)((Ln[l] & 0xF) | ((Ln[l + 64] & 0xF) << 4));
            b->ql[64 * n + l + 32] = (uint8_t)((Ln[l + 32] & 0xF) | ((Ln[l + 96] & 0xF) << 4));
            b->qh[32 * n + l] = (uint8_t)((Ln[l] >> 4) | ((Ln[l + 32] >> 4) << 2) |
                                          ((Ln[l + 64] >> 4) << 4) | ((Ln[l + 96] >> 4) << 6));
        }
}

/* Activation Q8_0 as llama.cpp's x86 CPU backend: d = amax/127 (stored fp16),
 * q = round-half-even(x * (127/amax)) with the fp32 factor. */
static void ref_quantize_q8_0_act(const float *x, void *vy, int64_t n)
{
    struct block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0;
        for (int j = 0; j < QK8_0; j++)
            amax = MAX(amax, fabsf(x[j]));
        float id = amax != 0 ? 127.f / amax : 0.f;
        y[i].d = kernels_f32_to_fp16(amax / 127.f);
        for (int j = 0; j < QK8_0; j++)
            y[i].qs[j] = (int8_t)nearest_int(x[j] * id);
    }
}

/* Activation Q8_K as ggml: scale from the signed extreme, q = min(127, rne(x * -127/max)). */
static void ref_quantize_q8_K_act(const float *x, void *vy, int64_t n)
{
    struct block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = signed_absmax(x, QK_K);
        memset(&y[i], 0, sizeof y[i]);
        if (max == 0)
            continue;
        float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++)
            y[i].qs[j] = (int8_t)MIN(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

int ref_quantize_row(enum kernels_type t, const float *src, void *dst, int64_t n)
{
    int qk = kernels_block_size(t);
    if (qk <= 0)
        return ERR_UNSUPPORTED;
    if (n < 0 || n % qk != 0)
        return ERR_INVALID;
    switch (t) {
    case KERNELS_F32:
        memmove(dst, src, (size_t)n * sizeof(float));
        return 0;
    case KERNELS_F16:
        for (int64_t i = 0; i < n; i++)
            ((kernels_fp16 *)dst)[i] = kernels_f32_to_fp16(src[i]);
        return 0;
    case KERNELS_BF16:
        for (int64_t i = 0; i < n; i++)
            ((kernels_bf16 *)dst)[i] = kernels_f32_to_bf16(src[i]);
        return 0;
    case KERNELS_Q8_K:
        ref_quantize_q8_K_act(src, dst, n);
        return 0;
#define QUANT(T)                                                                    \
    for (int64_t i = 0; i < n / qk; i++)                                            \
        quant_##T(src + i * qk, (struct block_##T *)dst + i);                       \
    return 0;
    case KERNELS_Q8_0: QUANT(q8_0)
    case KERNELS_Q4_0: QUANT(q4_0)
    case KERNELS_Q5_0: QUANT(q5_0)
    case KERNELS_Q4_K: QUANT(q4_K)
    case KERNELS_Q5_K: QUANT(q5_K)
    case KERNELS_Q6_K: QUANT(q6_K)
#undef QUANT
    }
    return ERR_UNSUPPORTED;
}

/* ======================================================================== dots, float x */

/* Any weight type times float x: dequantize a block, multiply, accumulate in fp32. */
static void ref_dot_f32_any(enum kernels_type t, const void *w, const void *vx,
                            size_t x_stride, int n_x, int64_t n, float *out)
{
    int qk = kernels_block_size(t);
    size_t bb = kernels_block_bytes(t);
    int step = qk > 1 ? qk : 64;
    float buf[QK_K];
    for (int k = 0; k < n_x; k++)
        out[k] = 0;
    for (int64_t i = 0; i < n; i += step) {
        int len = (int)MIN((int64_t)step, n - i);
        ref_dequantize_row(t, (const char *)w + (size_t)(i / qk) * bb, buf, len);
        for (int k = 0; k < n_x; k++) {
            const float *x = (const float *)((const char *)vx + k * x_stride) + i;
            float s = 0;
            for (int j = 0; j < len; j++)
                s += buf[j] * x[j];
            out[k] += s;
        }
    }
}

#define REF_DOT_F32(T, E)                                                           \
    static void ref_dot_f32_##T(const void *w, const void *x, size_t xs, int n_x,   \
                                int64_t n, float *out)                              \
    {                                                                               \
        ref_dot_f32_any(E, w, x, xs, n_x, n, out);                                  \
    }
REF_DOT_F32(f32, KERNELS_F32)
REF_DOT_F32(f16, KERNELS_F16)
REF_DOT_F32(bf16, KERNELS_BF16)
REF_DOT_F32(q8_0, KERNELS_Q8_0)
REF_DOT_F32(q4_0, KERNELS_Q4_0)
REF_DOT_F32(q5_0, KERNELS_Q5_0)
REF_DOT_F32(q4_K, KERNELS_Q4_K)
REF_DOT_F32(q5_K, KERNELS_Q5_K)
REF_DOT_F32(q6_K, KERNELS_Q6_K)

/* ======================================================================== dots, quantized x */

/* 32-element blocks against Q8_0: integer sum per block, times d_w * d_x. */
static void ref_dot_q_32(enum kernels_type t, const void *w, const void *vx,
                         size_t x_stride, int n_x, int64_t n, float *out)
{
    for (int k = 0; k < n_x; k++) {
        const struct block_q8_0 *x =
            (const struct block_q8_0 *)((const char *)vx + k * x_stride);
        float sum = 0;
        for (int64_t i = 0; i < n / 32; i++) {
            int q[32];
            float dw;
            if (t == KERNELS_Q8_0) {
                const struct block_q8_0 *b = (const struct block_q8_0 *)w + i;
                dw = kernels_fp16_to_f32(b->d);
                for (int j = 0; j < 32; j++)
                    q[j] = b->qs[j];
            } else if (t == KERNELS_Q4_0) {
                const struct block_q4_0 *b = (const struct block_q4_0 *)w + i;
                dw = kernels_fp16_to_f32(b->d);
                for (int j = 0; j < 16; j++) {
                    q[j] = (b->qs[j] & 0xF) - 8;
                    q[j + 16] = (b->qs[j] >> 4) - 8;
                }
            } else {
                const struct block_q5_0 *b = (const struct block_q5_0 *)w + i;
                dw = kernels_fp16_to_f32(b->d);
                uint32_t qh;
                memcpy(&qh, b->qh, 4);
                for (int j = 0; j < 16; j++) {
                    q[j] = ((b->qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16;
                    q[j + 16] = ((b->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
                }
            }
            int sumi = 0;
            for (int j = 0; j < 32; j++)
                sumi += q[j] * x[i].qs[j];
            sum += sumi * (dw * kernels_fp16_to_f32(x[i].d));
        }
        out[k] = sum;
    }
}

static void ref_dot_q_q8_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                           float *out)
{
    ref_dot_q_32(KERNELS_Q8_0, w, x, xs, n_x, n, out);
}
static void ref_dot_q_q4_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                           float *out)
{
    ref_dot_q_32(KERNELS_Q4_0, w, x, xs, n_x, n, out);
}
static void ref_dot_q_q5_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                           float *out)
{
    ref_dot_q_32(KERNELS_Q5_0, w, x, xs, n_x, n, out);
}

/* Q4_K / Q5_K against Q8_K: per block d*sum(sc*isum) - dmin*sum(m*bsum), exact ints. */
static void ref_dot_q_k_asym(int five, const void *w, const void *vx, size_t x_stride,
                             int n_x, int64_t n, float *out)
{
    for (int k = 0; k < n_x; k++) {
        const struct block_q8_K *x =
            (const struct block_q8_K *)((const char *)vx + k * x_stride);
        float sum = 0;
        for (int64_t i = 0; i < n / QK_K; i++) {
            const uint8_t *scales, *qs, *qh = NULL;
            kernels_fp16 hd, hdmin;
            if (five) {
                const struct block_q5_K *b = (const struct block_q5_K *)w + i;
                scales = b->scales, qs = b->qs, qh = b->qh, hd = b->d, hdmin = b->dmin;
            } else {
                const struct block_q4_K *b = (const struct block_q4_K *)w + i;
                scales = b->scales, qs = b->qs, hd = b->d, hdmin = b->dmin;
            }
            int sumi = 0, summ = 0;
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                q4k_scale_min(j, scales, &sc, &m);
                int isum = 0;
                for (int l = 0; l < 32; l++) {
                    uint8_t byte = qs[32 * (j / 2) + l];
                    int q = j & 1 ? byte >> 4 : byte & 0xF;
                    if (qh && (qh[l] >> j) & 1)
                        q += 16;
                    isum += q * x[i].qs[32 * j + l];
                }
                sumi += sc * isum;
                summ += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
            }
            float d = x[i].d * kernels_fp16_to_f32(hd);
            float dmin = x[i].d * kernels_fp16_to_f32(hdmin);
            sum += d * sumi - dmin * summ;
        }
        out[k] = sum;
    }
}

static void ref_dot_q_q4_K(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                           float *out)
{
    ref_dot_q_k_asym(0, w, x, xs, n_x, n, out);
}
static void ref_dot_q_q5_K(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                           float *out)
{
    ref_dot_q_k_asym(1, w, x, xs, n_x, n, out);
}

static void ref_dot_q_q6_K(const void *w, const void *vx, size_t x_stride, int n_x,
                           int64_t n, float *out)
{
    for (int k = 0; k < n_x; k++) {
        const struct block_q8_K *x =
            (const struct block_q8_K *)((const char *)vx + k * x_stride);
        float sum = 0;
        for (int64_t i = 0; i < n / QK_K; i++) {
            const struct block_q6_K *b = (const struct block_q6_K *)w + i;
            int sumi = 0;
            for (int h = 0; h < 2; h++)
                for (int q = 0; q < 4; q++)
                    for (int l = 0; l < 32; l++) {
                        int e = 128 * h + 32 * q + l;
                        sumi += b->scales[e / 16] * q6k_value(b, h, q, l) * x[i].qs[e];
                    }
            sum += kernels_fp16_to_f32(b->d) * x[i].d * sumi;
        }
        out[k] = sum;
    }
}

static void ref_dot_q_f16(const void *w, const void *vx, size_t x_stride, int n_x,
                          int64_t n, float *out)
{
    const kernels_fp16 *a = w;
    for (int k = 0; k < n_x; k++) {
        const kernels_fp16 *x = (const kernels_fp16 *)((const char *)vx + k * x_stride);
        float s = 0;
        for (int64_t i = 0; i < n; i++)
            s += kernels_fp16_to_f32(a[i]) * kernels_fp16_to_f32(x[i]);
        out[k] = s;
    }
}

static void ref_dot_q_bf16(const void *w, const void *vx, size_t x_stride, int n_x,
                           int64_t n, float *out)
{
    const kernels_bf16 *a = w;
    for (int k = 0; k < n_x; k++) {
        const kernels_bf16 *x = (const kernels_bf16 *)((const char *)vx + k * x_stride);
        float s = 0;
        for (int64_t i = 0; i < n; i++)
            s += kernels_bf16_to_f32(a[i]) * kernels_bf16_to_f32(x[i]);
        out[k] = s;
    }
}

/* ======================================================================== vector ops */

static void ref_f32_to_f16(const float *x, kernels_fp16 *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = kernels_f32_to_fp16(x[i]);
}

static void ref_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    double ss = 0; /* ggml sums in double */
    for (int64_t i = 0; i < n; i++)
        ss += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

static void ref_softmax(float *x, int64_t n, float cut)
{
    if (n <= 0)
        return;
    float max = x[0];
    for (int64_t i = 1; i < n; i++)
        max = MAX(max, x[i]);
    double sum = 0; /* ggml sums in double and scales by 1/sum */
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) {
        x[i] *= inv;
        x[i] = x[i] < cut ? 0.0f : x[i]; /* (NaN stays NaN) */
    }
}

static void ref_swiglu(float *out, const float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void ref_add(float *y, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

static void ref_scale(float *x, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= s;
}

static void ref_axpy(enum kernels_type t, float a, const void *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float v = t == KERNELS_F32   ? ((const float *)x)[i]
                  : t == KERNELS_F16 ? kernels_fp16_to_f32(((const kernels_fp16 *)x)[i])
                                     : kernels_bf16_to_f32(((const kernels_bf16 *)x)[i]);
        y[i] += a * v;
    }
}

static void ref_wsum(enum kernels_type t, const float *a, const void *x, size_t stride,
                     int n_rows, float *y, int64_t n)
{
    memset(y, 0, (size_t)n * sizeof(float));
    for (int j = 0; j < n_rows; j++)
        ref_axpy(t, a[j], (const char *)x + (size_t)j * stride, y, n);
}

void kernels_ref_fill(struct kernels_table *t)
{
    memset(t, 0, sizeof *t);
    t->dot_f32[KERNELS_F32] = ref_dot_f32_f32;
    t->dot_f32[KERNELS_F16] = ref_dot_f32_f16;
    t->dot_f32[KERNELS_BF16] = ref_dot_f32_bf16;
    t->dot_f32[KERNELS_Q8_0] = ref_dot_f32_q8_0;
    t->dot_f32[KERNELS_Q4_0] = ref_dot_f32_q4_0;
    t->dot_f32[KERNELS_Q5_0] = ref_dot_f32_q5_0;
    t->dot_f32[KERNELS_Q4_K] = ref_dot_f32_q4_K;
    t->dot_f32[KERNELS_Q5_K] = ref_dot_f32_q5_K;
    t->dot_f32[KERNELS_Q6_K] = ref_dot_f32_q6_K;
    t->dot_q[KERNELS_F32] = ref_dot_f32_f32;
    t->dot_q[KERNELS_F16] = ref_dot_q_f16;
    t->dot_q[KERNELS_BF16] = ref_dot_q_bf16;
    t->dot_q[KERNELS_Q8_0] = ref_dot_q_q8_0;
    t->dot_q[KERNELS_Q4_0] = ref_dot_q_q4_0;
    t->dot_q[KERNELS_Q5_0] = ref_dot_q_q5_0;
    t->dot_q[KERNELS_Q4_K] = ref_dot_q_q4_K;
    t->dot_q[KERNELS_Q5_K] = ref_dot_q_q5_K;
    t->dot_q[KERNELS_Q6_K] = ref_dot_q_q6_K;
    t->quantize_q8_0_act = ref_quantize_q8_0_act;
    t->quantize_q8_K_act = ref_quantize_q8_K_act;
    t->f32_to_f16 = ref_f32_to_f16;
    t->rmsnorm = ref_rmsnorm;
    t->softmax = ref_softmax;
    t->swiglu = ref_swiglu;
    t->add = ref_add;
    t->scale = ref_scale;
    t->axpy = ref_axpy;
    t->wsum = ref_wsum;
    t->fit_scale_min = ref_fit_scale_min;
    t->fit_scale_sym = ref_fit_scale_sym;
}
