/*
 * x86_avx2: AVX2 + FMA + F16C versions of the hot kernels (dot products for both matrix
 * paths, fp16 conversion). Same signatures as ref.c; tails finish with the reference
 * arithmetic. Compiled with a target pragma so the rest of the build stays baseline x86-64;
 * dispatch.c installs these only when CPUID reports the features.
 *
 * Integer dots use the classic maddubs trick: u8 x s8 -> pairs summed into s16 (no
 * saturation possible for our ranges: |q| <= 63 unsigned or |q| <= 128 with the sign moved
 * to the other operand, |y| <= 127), then madd with 1 or with the sub-block scale -> s32.
 * Dequantization for the float path computes exactly the reference's float values
 * (separate multiply and subtract, no FMA), so only the summation order differs.
 */
#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/impl.h"

static inline float fp16(kernels_fp16 h)
{
    return _cvtsh_ss(h);
}

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline const void *xrow(const void *x, size_t stride, int k)
{
    return (const char *)x + (size_t)k * stride;
}

/* s8 x s8 over 32 lanes -> 8 x s32, via |a| and sign(b, a). */
static inline __m256i dot_s8(__m256i a, __m256i b)
{
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set (bit j -> byte j). */
static inline __m256i bits_to_bytes(uint32_t bits)
{
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles in lanes 0..15, high in 16..31. */
static inline __m256i nibbles32(const uint8_t *p)
{
    __m128i raw = _mm_loadu_si128((const __m128i *)p);
    __m128i m = _mm_set1_epi8(0xF);
    __m128i lo = _mm_and_si128(raw, m), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m);
    return _mm256_set_m128i(hi, lo);
}

/* ======================================================================== dot_q, 32-blocks */

static inline __m256i unpack_32(enum kernels_type t, const void *w, int64_t i, float *d)
{
    if (t == KERNELS_Q8_0) {
        const struct block_q8_0 *b = (const struct block_q8_0 *)w + i;
        *d = fp16(b->d);
        return _mm256_loadu_si256((const __m256i *)b->qs);
    }
    if (t == KERNELS_Q4_0) {
        const struct block_q4_0 *b = (const struct block_q4_0 *)w + i;
        *d = fp16(b->d);
        return _mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8));
    }
    const struct block_q5_0 *b = (const struct block_q5_0 *)w + i;
    *d = fp16(b->d);
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    __m256i hi = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10));
    return _mm256_sub_epi8(_mm256_or_si256(nibbles32(b->qs), hi), _mm256_set1_epi8(16));
}

KERNELS_INLINE void dot_q_32(enum kernels_type t, const void *w, const void *x, size_t xs,
                             int64_t n, float *out, const int n_x)
{
    __m256 acc[KERNELS_NX];
    for (int k = 0; k < KERNELS_NX; k++)
        acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        float dw;
        if (i % 2 == 0) /* blocks of 18-34 bytes: a line every other block */
            kernels_prefetch((const char *)w + (size_t)i * (t == KERNELS_Q8_0   ? sizeof(struct block_q8_0)
                                                             : t == KERNELS_Q4_0 ? sizeof(struct block_q4_0)
                                                                                 : sizeof(struct block_q5_0)),
                             1);
        __m256i q = unpack_32(t, w, i, &dw);
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++) {
            const struct block_q8_0 *y = (const struct block_q8_0 *)xrow(x, xs, k) + i;
            __m256i s = dot_s8(q, _mm256_loadu_si256((const __m256i *)y->qs));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * fp16(y->d)), _mm256_cvtepi32_ps(s),
                                     acc[k]);
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++)
        out[k] = hsum8(acc[k]);
}

static void avx2_dot_q_q8_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                            float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_q_32, KERNELS_Q8_0, w, x, xs, n, out);
}
static void avx2_dot_q_q4_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                            float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_q_32, KERNELS_Q4_0, w, x, xs, n, out);
}
static void avx2_dot_q_q5_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                            float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_q_32, KERNELS_Q5_0, w, x, xs, n, out);
}

/* ======================================================================== dot_q, K-quants */

/* The 8 six-bit scales and mins of a q4_K/q5_K block as bytes (same values as
 * q4k_scale_min, four at a time with 32-bit arithmetic). */
static inline void k_scales_mins(const uint8_t *s, uint64_t *sc, uint64_t *mn)
{
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    uint32_t sc_hi = (c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u);
    uint32_t mn_hi = ((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u);
    *sc = (a & 0x3f3f3f3fu) | (uint64_t)sc_hi << 32;
    *mn = (b & 0x3f3f3f3fu) | (uint64_t)mn_hi << 32;
}

/* A shuffle mask that broadcasts int16 lane j of each 128-bit half. */
static inline __m256i bcast16_mask(int j)
{
    return _mm256_set1_epi16((short)((2 * j) | ((2 * j + 1) << 8)));
}

/*
 * K-quant dots, loop order: sub-block outer, tokens inner, so a sub-block's quants are
 * unpacked into one register and meet every token there, and its scale vector is read
 * from screp[] (built once per block) as a memory operand instead of a shuffle per
 * token. (Unpacking all 8 sub-blocks first needed 8 registers for the quants and 8 for
 * the scales: gcc spilled them, and each token paid the shuffles again. Q4_K 8960 x 1536,
 * 64 tokens, one thread: 76 -> 101 GFLOP/s with the barrier below; Q6_K 1536 x 8960:
 * 81 -> 111.) The integer sums are exact, so the bits are those of the old order.
 * The empty asm after each sumi add keeps gcc from summing the products in a tree,
 * which holds them all at once and spilled (Q6_K 111 with it, 100 without).
 */

/* Q4_K / Q5_K: q = the 32 unsigned quants of sub-block j. The min term
 * dmin * sum_j m_j * (bsum[2j] + bsum[2j+1]) is one madd of the activation block sums
 * with the mins duplicated pairwise. */
KERNELS_INLINE void dot_q_k_asym(int five, const void *w, const void *x, size_t xs, int64_t n,
                                 float *out, const int n_x)
{
    __m256 acc[KERNELS_NX], accm[KERNELS_NX];
    for (int k = 0; k < KERNELS_NX; k++)
        acc[k] = accm[k] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0xF);
    _Alignas(32) int16_t screp[8][16]; /* sub-block j's scale in all 16 lanes */
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *scales, *qs, *qh = NULL;
        float d, dmin;
        kernels_prefetch((const char *)w + (size_t)i * (five ? sizeof(struct block_q5_K)
                                                             : sizeof(struct block_q4_K)),
                         3); /* 176 / 144-byte blocks */
        if (five) {
            const struct block_q5_K *b = (const struct block_q5_K *)w + i;
            scales = b->scales, qs = b->qs, qh = b->qh, d = fp16(b->d), dmin = fp16(b->dmin);
        } else {
            const struct block_q4_K *b = (const struct block_q4_K *)w + i;
            scales = b->scales, qs = b->qs, d = fp16(b->d), dmin = fp16(b->dmin);
        }
        uint64_t sc8, mn8;
        k_scales_mins(scales, &sc8, &mn8);
        __m256i sc16 = _mm256_broadcastsi128_si256(
            _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
KERNELS_UNROLL8
        for (int j = 0; j < 8; j++)
            _mm256_store_si256((__m256i *)(void *)screp[j],
                               _mm256_shuffle_epi8(sc16, bcast16_mask(j)));
        /* Q5_K: the fifth bits of all 8 sub-blocks, bit j for sub-block j */
        __m256i hv = five ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
        __m256i sumi[KERNELS_NX];
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++)
            sumi[k] = _mm256_setzero_si256();
KERNELS_UNROLL8
        for (int p = 0; p < 4; p++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
KERNELS_UNROLL8
            for (int h = 0; h < 2; h++) {
                int j = 2 * p + h;
                __m256i q = h ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4)
                              : _mm256_and_si256(raw, m4);
                if (five) {
                    __m256i bit = _mm256_set1_epi8((char)(1 << j));
                    __m256i hb = _mm256_cmpeq_epi8(_mm256_and_si256(hv, bit), bit);
                    q = _mm256_or_si256(q, _mm256_and_si256(hb, _mm256_set1_epi8(16)));
                }
                __m256i scj = _mm256_load_si256((const __m256i *)(const void *)screp[j]);
KERNELS_UNROLL8
                for (int k = 0; k < n_x; k++) {
                    const struct block_q8_K *y = (const struct block_q8_K *)xrow(x, xs, k) + i;
                    __m256i yv = _mm256_loadu_si256((const __m256i *)(y->qs + 32 * j));
                    __m256i p16 = _mm256_maddubs_epi16(q, yv);
                    sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(p16, scj));
                    __asm__("" : "+x"(sumi[k])); /* no tree (see above) */
                }
            }
        }
        __m128i mn = _mm_cvtsi64_si128((long long)mn8);
        __m256i mdup = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++) {
            const struct block_q8_K *y = (const struct block_q8_K *)xrow(x, xs, k) + i;
            __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
            __m256i summ = _mm256_madd_epi16(bs, mdup);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * d), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
            accm[k] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * dmin), _mm256_cvtepi32_ps(summ),
                                      accm[k]);
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++)
        out[k] = hsum8(_mm256_sub_ps(acc[k], accm[k]));
}

static void avx2_dot_q_q4_K(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                            float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_q_k_asym, 0, w, x, xs, n, out);
}
static void avx2_dot_q_q5_K(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                            float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_q_k_asym, 1, w, x, xs, n, out);
}

/* Q6_K (same loop order): q = the unsigned 6-bit quants (0..63) of 32-element chunk c;
 * the -32 offset is applied through the activation block sums:
 * sum sc*(q-32)*y = sum sc*q*y - 32 sum sc*bsum (exact in int32: |sum| < 2^27 per block). */
KERNELS_INLINE void q6k_body(const void *w, const void *x, size_t xs, int64_t n, float *out,
                         const int n_x)
{
    __m256 acc[KERNELS_NX];
    for (int k = 0; k < KERNELS_NX; k++)
        acc[k] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    _Alignas(32) int16_t screp[8][16]; /* chunk c's two scales, 2c and 2c + 1 */
    for (int64_t i = 0; i < n / QK_K; i++) {
        const struct block_q6_K *b = (const struct block_q6_K *)w + i;
        kernels_prefetch(b, 4); /* 210-byte blocks */
        float d = fp16(b->d);
        __m128i s8 = _mm_loadu_si128((const __m128i *)b->scales);
        __m256i sc_lo = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(s8));
        __m256i sc_hi = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(s8, 8)));
KERNELS_UNROLL8
        for (int c = 0; c < 8; c++) {
            /* scale 2c in the low 128 bits (elements 0..15), 2c+1 in the high */
            int g = (2 * c) % 8;
            __m256i mask = _mm256_set_m128i(_mm_set1_epi16((short)((2 * g + 2) | ((2 * g + 3) << 8))),
                                            _mm_set1_epi16((short)((2 * g) | ((2 * g + 1) << 8))));
            _mm256_store_si256((__m256i *)(void *)screp[c],
                               _mm256_shuffle_epi8(c < 4 ? sc_lo : sc_hi, mask));
        }
        __m256i sumi[KERNELS_NX];
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++)
            sumi[k] = _mm256_setzero_si256();
KERNELS_UNROLL8
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
KERNELS_UNROLL8
            for (int e = 0; e < 4; e++) {
                __m256i lo = e == 0 ? _mm256_and_si256(ql0, m4)
                           : e == 1 ? _mm256_and_si256(ql1, m4)
                           : e == 2 ? _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4)
                                    : _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4);
                __m256i hi = e == 0 ? _mm256_slli_epi16(qh, 4)
                           : e == 1 ? _mm256_slli_epi16(qh, 2)
                           : e == 2 ? qh
                                    : _mm256_srli_epi16(qh, 2);
                __m256i q = _mm256_or_si256(lo, _mm256_and_si256(hi, m30));
                int c = 4 * h + e;
                __m256i scv = _mm256_load_si256((const __m256i *)(const void *)screp[c]);
KERNELS_UNROLL8
                for (int k = 0; k < n_x; k++) {
                    const struct block_q8_K *y = (const struct block_q8_K *)xrow(x, xs, k) + i;
                    __m256i yv = _mm256_loadu_si256((const __m256i *)(y->qs + 32 * c));
                    __m256i p16 = _mm256_maddubs_epi16(q, yv);
                    sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(p16, scv));
                    __asm__("" : "+x"(sumi[k])); /* no tree (see above) */
                }
            }
        }
        __m256i sc_all = _mm256_cvtepi8_epi16(s8); /* 16 x s16, for the bias */
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++) {
            const struct block_q8_K *y = (const struct block_q8_K *)xrow(x, xs, k) + i;
            __m256i bias = _mm256_madd_epi16(sc_all,
                                             _mm256_loadu_si256((const __m256i *)y->bsums));
            __m256i tot = _mm256_sub_epi32(sumi[k], _mm256_slli_epi32(bias, 5));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * y->d), _mm256_cvtepi32_ps(tot), acc[k]);
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++)
        out[k] = hsum8(acc[k]);
}

static void avx2_dot_q_q6_K(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                            float *out)
{
    KERNELS_NX_SWITCH(n_x, q6k_body, w, x, xs, n, out);
}

/* ======================================================================== float rows */

/* Loads 8 weights of a float-like row as floats. */
static inline __m256 load8(enum kernels_type t, const void *p, int64_t i)
{
    if (t == KERNELS_F32)
        return _mm256_loadu_ps((const float *)p + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (t == KERNELS_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); /* bf16 */
}

static inline float load1(enum kernels_type t, const void *p, int64_t i)
{
    if (t == KERNELS_F32)
        return ((const float *)p)[i];
    if (t == KERNELS_F16)
        return fp16(((const kernels_fp16 *)p)[i]);
    return kernels_bf16_to_f32(((const kernels_bf16 *)p)[i]);
}

/* Row of type tw times rows of type tx (both F32/F16/BF16), two accumulators per token. */
KERNELS_INLINE void dot_float(enum kernels_type tw, enum kernels_type tx, const void *w,
                              const void *x, size_t xs, int64_t n, float *out, const int n_x)
{
    __m256 a0[KERNELS_NX], a1[KERNELS_NX];
    for (int k = 0; k < KERNELS_NX; k++)
        a0[k] = a1[k] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = load8(tw, w, i), w1 = load8(tw, w, i + 8);
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++) {
            const void *xk = xrow(x, xs, k);
            a0[k] = _mm256_fmadd_ps(w0, load8(tx, xk, i), a0[k]);
            a1[k] = _mm256_fmadd_ps(w1, load8(tx, xk, i + 8), a1[k]);
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++) {
        const void *xk = xrow(x, xs, k);
        float s = hsum8(_mm256_add_ps(a0[k], a1[k]));
        for (int64_t j = i; j < n; j++)
            s += load1(tw, w, j) * load1(tx, xk, j);
        out[k] = s;
    }
}

static void avx2_dot_f32_f32(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                             float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_float, KERNELS_F32, KERNELS_F32, w, x, xs, n, out);
}
static void avx2_dot_f32_f16(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                             float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_float, KERNELS_F16, KERNELS_F32, w, x, xs, n, out);
}
static void avx2_dot_f32_bf16(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                              float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_float, KERNELS_BF16, KERNELS_F32, w, x, xs, n, out);
}
static void avx2_dot_q_f16(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                           float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_float, KERNELS_F16, KERNELS_F16, w, x, xs, n, out);
}
static void avx2_dot_q_bf16(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                            float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_float, KERNELS_BF16, KERNELS_BF16, w, x, xs, n, out);
}

/* ======================================================================== float x, quantized w */

/* Dequantizers writing exactly ref.c's float values into buf. */
static void deq_q8_0(const void *v, float *buf)
{
    const struct block_q8_0 *b = v;
    __m256 d = _mm256_set1_ps(fp16(b->d));
    for (int l = 0; l < 32; l += 8) {
        __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + l)));
        _mm256_storeu_ps(buf + l, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
}

static void deq_32_from_bytes(__m256i q /* 32 x s8 */, float d, float *buf)
{
    __m256 dv = _mm256_set1_ps(d);
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(buf, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), dv));
    _mm256_storeu_ps(buf + 8, _mm256_mul_ps(
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), dv));
    _mm256_storeu_ps(buf + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), dv));
    _mm256_storeu_ps(buf + 24, _mm256_mul_ps(
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), dv));
}

static void deq_q4_0(const void *v, float *buf)
{
    float d;
    __m256i q = unpack_32(KERNELS_Q4_0, v, 0, &d);
    deq_32_from_bytes(q, d, buf);
}

static void deq_q5_0(const void *v, float *buf)
{
    float d;
    __m256i q = unpack_32(KERNELS_Q5_0, v, 0, &d);
    deq_32_from_bytes(q, d, buf);
}

static void deq_q4_K(const void *v, float *buf)
{
    const struct block_q4_K *b = v;
    float d = fp16(b->d), dmin = fp16(b->dmin);
    const __m256i m4 = _mm256_set1_epi32(0xF);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        q4k_scale_min(j, b->scales, &sc, &m);
        __m256 dv = _mm256_set1_ps(d * sc), mv = _mm256_set1_ps(dmin * m);
        const uint8_t *q = b->qs + 32 * (j / 2);
        for (int l = 0; l < 32; l += 8) {
            __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + l)));
            w = j & 1 ? _mm256_srli_epi32(w, 4) : _mm256_and_si256(w, m4);
            __m256 f = _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(w)), mv);
            _mm256_storeu_ps(buf + 32 * j + l, f);
        }
    }
}

static void deq_q5_K(const void *v, float *buf)
{
    const struct block_q5_K *b = v;
    float d = fp16(b->d), dmin = fp16(b->dmin);
    const __m256i m4 = _mm256_set1_epi32(0xF);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        q4k_scale_min(j, b->scales, &sc, &m);
        __m256 dv = _mm256_set1_ps(d * sc), mv = _mm256_set1_ps(dmin * m);
        const uint8_t *q = b->qs + 32 * (j / 2);
        for (int l = 0; l < 32; l += 8) {
            __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + l)));
            w = j & 1 ? _mm256_srli_epi32(w, 4) : _mm256_and_si256(w, m4);
            __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b->qh + l)));
            h = _mm256_and_si256(_mm256_srli_epi32(h, j), _mm256_set1_epi32(1));
            w = _mm256_or_si256(w, _mm256_slli_epi32(h, 4));
            __m256 f = _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(w)), mv);
            _mm256_storeu_ps(buf + 32 * j + l, f);
        }
    }
}

static void deq_q6_K(const void *v, float *buf)
{
    const struct block_q6_K *b = v;
    float d = fp16(b->d);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l += 8) {
                const uint8_t *ql = b->ql + 64 * h + (k & 1) * 32 + l;
                __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)ql));
                lo = k < 2 ? _mm256_and_si256(lo, _mm256_set1_epi32(0xF))
                           : _mm256_srli_epi32(lo, 4);
                __m256i hi = _mm256_cvtepu8_epi32(
                    _mm_loadl_epi64((const __m128i *)(b->qh + 32 * h + l)));
                hi = _mm256_and_si256(_mm256_srli_epi32(hi, 2 * k), _mm256_set1_epi32(3));
                __m256i q = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)),
                                             _mm256_set1_epi32(32));
                float s = d * b->scales[8 * h + 2 * k + l / 16];
                _mm256_storeu_ps(buf + 128 * h + 32 * k + l,
                                 _mm256_mul_ps(_mm256_set1_ps(s), _mm256_cvtepi32_ps(q)));
            }
}

/* Dequantize a block once, then one FMA pass per token. */
static inline void dot_f32_blocks(void (*deq)(const void *, float *), int qk, size_t bb,
                                  const void *w, const void *x, size_t xs, int n_x,
                                  int64_t n, float *out)
{
    float buf[QK_K] __attribute__((aligned(32)));
    __m256 acc[KERNELS_NX];
    for (int k = 0; k < KERNELS_NX; k++)
        acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / qk; i++) {
        deq((const char *)w + (size_t)i * bb, buf);
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++) {
            const float *xk = (const float *)xrow(x, xs, k) + i * qk;
            __m256 a = acc[k];
            for (int l = 0; l < qk; l += 8)
                a = _mm256_fmadd_ps(_mm256_load_ps(buf + l), _mm256_loadu_ps(xk + l), a);
            acc[k] = a;
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++)
        out[k] = hsum8(acc[k]);
}

#define AVX2_DOT_F32(T, QK)                                                              \
    static void avx2_dot_f32_##T(const void *w, const void *x, size_t xs, int n_x,        \
                                 int64_t n, float *out)                                   \
    {                                                                                    \
        dot_f32_blocks(deq_##T, QK, sizeof(struct block_##T), w, x, xs, n_x, n, out);   \
    }
AVX2_DOT_F32(q8_0, QK8_0)
AVX2_DOT_F32(q4_0, QK4_0)
AVX2_DOT_F32(q5_0, QK5_0)
AVX2_DOT_F32(q4_K, QK_K)
AVX2_DOT_F32(q5_K, QK_K)
AVX2_DOT_F32(q6_K, QK_K)

/* ======================================================================== conversions */

static void avx2_f32_to_f16(const float *x, kernels_fp16 *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = kernels_f32_to_fp16(x[i]);
}

static void avx2_add(float *y, const float *a, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++)
        y[i] = a[i] + b[i];
}

static void avx2_scale(float *x, float s, int64_t n)
{
    int64_t i = 0;
    __m256 sv = _mm256_set1_ps(s);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), sv));
    for (; i < n; i++)
        x[i] *= s;
}

static void avx2_axpy(enum kernels_type t, float a, const void *x, float *y, int64_t n)
{
    int64_t i = 0;
    __m256 av = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, load8(t, x, i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * load1(t, x, i);
}

/* Eight 8-float accumulators cover 64 columns of y through every row; the rest of y goes
 * in further passes over the rows (attention heads are 64-192 wide: one to three). */
static void avx2_wsum(enum kernels_type t, const float *a, const void *x, size_t stride,
                      int n_rows, float *y, int64_t n)
{
    int64_t c = 0;
    for (; c + 64 <= n; c += 64) {
        __m256 acc[8];
        for (int k = 0; k < 8; k++)
            acc[k] = _mm256_setzero_ps();
        for (int j = 0; j < n_rows; j++) {
            const void *row = (const char *)x + (size_t)j * stride;
            __m256 av = _mm256_set1_ps(a[j]);
            for (int k = 0; k < 8; k++)
                acc[k] = _mm256_fmadd_ps(av, load8(t, row, c + 8 * k), acc[k]);
        }
        for (int k = 0; k < 8; k++)
            _mm256_storeu_ps(y + c + 8 * k, acc[k]);
    }
    if (c < n) {
        memset(y + c, 0, (size_t)(n - c) * sizeof(float));
        for (int j = 0; j < n_rows; j++) {
            const void *row = (const char *)x + (size_t)j * stride;
            int64_t i = c;
            __m256 av = _mm256_set1_ps(a[j]);
            for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, load8(t, row, i), _mm256_loadu_ps(y + i)));
            for (; i < n; i++)
                y[i] += a[j] * load1(t, row, i);
        }
    }
}

/* ======================================================================== activations */

/* 32 floats times m, rounded to nearest-even s32 (as lrintf under the default rounding
 * mode), packed to s8 in order. Callers keep |x * m| <= 127.5, so the packs never clip. */
static inline __m256i round_pack32(const float *x, __m256 m)
{
    __m256i v[4];
    for (int k = 0; k < 4; k++)
        v[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), m));
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    /* the packs interleave 128-bit lanes: dwords 0 4 1 5 2 6 3 7 restore the order */
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline __m256 abs8(__m256 v)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* ref_quantize_q8_0_act, the same bytes: scale amax/127, q = rne(x * 127/amax). */
static void avx2_quantize_q8_0_act(const float *x, void *vy, int64_t n)
{
    struct block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        __m256 am = abs8(_mm256_loadu_ps(x));
        for (int k = 1; k < 4; k++)
            am = _mm256_max_ps(am, abs8(_mm256_loadu_ps(x + 8 * k)));
        float amax = hmax8(am);
        float id = amax != 0 ? 127.f / amax : 0.f;
        y[i].d = kernels_f32_to_fp16(amax / 127.f);
        _mm256_storeu_si256((__m256i *)y[i].qs, round_pack32(x, _mm256_set1_ps(id)));
    }
}

/* ref_quantize_q8_K_act, the same bytes: the scale comes from the first element of
 * largest magnitude, with its sign; q = min(127, rne(x * -127/max)). */
static void avx2_quantize_q8_K_act(const float *x, void *vy, int64_t n)
{
    struct block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 am = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8)
            am = _mm256_max_ps(am, abs8(_mm256_loadu_ps(x + j)));
        float amax = hmax8(am);
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0)
            continue;
        float max = 0;
        for (int j = 0; j < QK_K; j += 8) {
            int m = _mm256_movemask_ps(_mm256_cmp_ps(abs8(_mm256_loadu_ps(x + j)),
                                                     _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (m) {
                max = x[j + __builtin_ctz((unsigned)m)];
                break;
            }
        }
        float iscale = -127.f / max;
        __m256i lim = _mm256_set1_epi8(127);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i q = _mm256_min_epi8(round_pack32(x + j, _mm256_set1_ps(iscale)), lim);
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), q);
            /* block sums of 16: s8 -> s16, pairwise madd with 1, then fold */
            __m256i s16 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(q)),
                                            _mm256_set1_epi16(1));
            __m256i t16 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1)),
                                            _mm256_set1_epi16(1));
            __m256i h = _mm256_hadd_epi32(s16, t16); /* 4-sums: s0 s1 t0 t1 | s2 s3 t2 t3 */
            h = _mm256_hadd_epi32(h, h);             /* s01 t01 . . | s23 t23 . . */
            y[i].bsums[j / 16] = (int16_t)(_mm256_extract_epi32(h, 0) + _mm256_extract_epi32(h, 4));
            y[i].bsums[j / 16 + 1] = (int16_t)(_mm256_extract_epi32(h, 1) + _mm256_extract_epi32(h, 5));
        }
        y[i].d = 1 / iscale;
    }
}

/* exp(x) for |x| <= 88: 2^k * e^r with r = x - k ln2 (ln2 split in two for exactness),
 * e^r by a degree-6 polynomial on |r| <= ln2/2; relative error ~2 ulp. Larger inputs are
 * clamped, so exp(-g) of a very negative g gives a huge finite value and silu(g) ~ -0. */
static inline __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static void avx2_swiglu(float *out, const float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f),
                                   exp8(_mm256_sub_ps(_mm256_setzero_ps(), g)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, den), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++)
        out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* rmsnorm as ref_rmsnorm: the squares in float, summed in double (8 lanes, so not the
 * reference's order, which double precision makes immaterial), the scaling in float in
 * its order. The reference's one double add chain per element (4-cycle latency) was
 * 0.5 % of a 512-token F16 prefill. */
static void avx2_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), sq = _mm256_mul_ps(v, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    _Alignas(32) double lanes[4];
    _mm256_store_pd(lanes, _mm256_add_pd(s0, s1));
    double ss = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (int64_t j = i; j < n; j++)
        ss += (double)(x[j] * x[j]);
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        _mm256_storeu_ps(y + i, w ? _mm256_mul_ps(v, _mm256_loadu_ps(w + i)) : v);
    }
    for (; i < n; i++)
        y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

/* softmax as ref_softmax: max, exp(x - max) with exp8 (~2 ulp; below -87 it gives
 * 1.6e-38 instead of 0, nothing against a sum >= 1), the sum in double (4 lanes, so not
 * the reference's order, which double precision makes immaterial), then 1/sum. Attention
 * calls it once per query and head over every cached position: in a 512-token prefill
 * libm's expf and its underflow path were 3.5 % of the time. */
static void avx2_softmax(float *x, int64_t n, float cut)
{
    if (n <= 0)
        return;
    float max = x[0];
    int64_t i = 0;
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8)
            m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
        max = hmax8(m);
    }
    for (; i < n; i++)
        max = max > x[i] ? max : x[i];
    __m256 vm = _mm256_set1_ps(max);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    _Alignas(32) double lanes[4];
    _mm256_store_pd(lanes, _mm256_add_pd(s0, s1));
    double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    __m256 vf = _mm256_set1_ps(cut);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 p = _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(inv));
        /* keep p unless p < cut (not-less-than, unordered: NaN kept, as ref.c) */
        _mm256_storeu_ps(x + i, _mm256_and_ps(p, _mm256_cmp_ps(p, vf, _CMP_NLT_UQ)));
    }
    for (; i < n; i++) {
        x[i] *= inv;
        x[i] = x[i] < cut ? 0.0f : x[i];
    }
}

/* ======================================================================== quantizer search */

/*
 * The K-quant step-size searches of ref.c with 8 candidate steps per pass, one per lane.
 * Every lane performs exactly the reference's float operations in its order (mul and
 * add kept separate, no FMA; cvtps rounds half to even like lrintf), and candidates are
 * compared in the reference's order, so the result is bit-identical. This is what
 * made `deepseek quantize` spend its time: 31 (Q4_K/Q5_K) or 19 (Q6_K) trial roundings
 * of every weight.
 */
#define FIT_MAX_N 32

static float avx2_fit_scale_min(const float *x, const float *w, int n, int nmax, uint8_t *L,
                                float *the_min)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = lo < x[i] ? lo : x[i];
        hi = hi > x[i] ? hi : x[i];
    }
    lo = lo < 0.0f ? lo : 0.0f;
    if (hi <= lo || n > FIT_MAX_N) {
        if (n > FIT_MAX_N)
            return ref_fit_scale_min(x, w, n, nmax, L, the_min);
        memset(L, 0, (size_t)n);
        *the_min = -lo;
        return 0;
    }
    float sw = 0, swx = 0, xl[FIT_MAX_N];
    for (int i = 0; i < n; i++) { /* the same in every trial of the reference */
        sw += w[i];
        swx += w[i] * x[i];
        xl[i] = x[i] - lo;
    }
    float best_err = INFINITY, best_scale = (hi - lo) / nmax, best_min = -lo;
    const __m256i vmax = _mm256_set1_epi32(nmax), zero = _mm256_setzero_si256();
    for (int is0 = -10; is0 <= 20; is0 += 8) {
        float isc[8];
        for (int k = 0; k < 8; k++)
            isc[k] = (nmax + 0.1f * (is0 + k)) / (hi - lo);
        __m256 iscale = _mm256_loadu_ps(isc);
        __m256 swl = _mm256_setzero_ps(), swl2 = swl, swlx = swl;
        int32_t lv[FIT_MAX_N][8];
        for (int i = 0; i < n; i++) {
            __m256i l = _mm256_cvtps_epi32(_mm256_mul_ps(iscale, _mm256_set1_ps(xl[i])));
            l = _mm256_max_epi32(zero, _mm256_min_epi32(vmax, l));
            _mm256_storeu_si256((__m256i *)lv[i], l);
            __m256 lf = _mm256_cvtepi32_ps(l), wl = _mm256_mul_ps(_mm256_set1_ps(w[i]), lf);
            swl = _mm256_add_ps(swl, wl);
            swl2 = _mm256_add_ps(swl2, _mm256_mul_ps(wl, lf));
            swlx = _mm256_add_ps(swlx, _mm256_mul_ps(wl, _mm256_set1_ps(x[i])));
        }
        float a_swl[8], a_swl2[8], a_swlx[8], sc[8], mn[8];
        int ok[8];
        _mm256_storeu_ps(a_swl, swl);
        _mm256_storeu_ps(a_swl2, swl2);
        _mm256_storeu_ps(a_swlx, swlx);
        for (int k = 0; k < 8; k++) {
            float det = sw * a_swl2[k] - a_swl[k] * a_swl[k];
            ok[k] = is0 + k <= 20 && isc[k] > 0 && det > 0;
            sc[k] = mn[k] = 0;
            if (!ok[k])
                continue;
            sc[k] = (sw * a_swlx[k] - swx * a_swl[k]) / det;
            mn[k] = (a_swl2[k] * swx - a_swl[k] * a_swlx[k]) / det;
            if (mn[k] > 0) {
                mn[k] = 0;
                sc[k] = a_swl2[k] > 0 ? a_swlx[k] / a_swl2[k] : 0;
            }
        }
        __m256 vs = _mm256_loadu_ps(sc), vm = _mm256_loadu_ps(mn), err = _mm256_setzero_ps();
        for (int i = 0; i < n; i++) {
            __m256 lf = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)lv[i]));
            __m256 e = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(vs, lf), vm),
                                     _mm256_set1_ps(x[i]));
            err = _mm256_add_ps(err, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), e), e));
        }
        float a_err[8];
        _mm256_storeu_ps(a_err, err);
        for (int k = 0; k < 8; k++)
            if (ok[k] && a_err[k] < best_err) {
                best_err = a_err[k];
                best_scale = sc[k];
                best_min = -mn[k];
                for (int i = 0; i < n; i++)
                    L[i] = (uint8_t)lv[i][k];
            }
    }
    *the_min = best_min;
    return best_scale;
}

static float avx2_fit_scale_sym(const float *x, int n, int nmax)
{
    if (n > FIT_MAX_N)
        return ref_fit_scale_sym(x, n, nmax);
    float max = 0, amax = 0; /* signed_absmax of ref.c */
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    if (max == 0)
        return 0;
    float best = 0, best_scale = 0;
    const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);
    for (int is0 = -9; is0 <= 9; is0 += 8) {
        float isc[8];
        for (int k = 0; k < 8; k++)
            isc[k] = -(nmax + 0.1f * (is0 + k)) / max;
        __m256 iscale = _mm256_loadu_ps(isc), slx = _mm256_setzero_ps(), sl2 = slx;
        for (int i = 0; i < n; i++) {
            __m256 xi = _mm256_set1_ps(x[i]), w = _mm256_set1_ps(x[i] * x[i]);
            __m256i l = _mm256_cvtps_epi32(_mm256_mul_ps(iscale, xi));
            __m256 lf = _mm256_cvtepi32_ps(_mm256_max_epi32(lo, _mm256_min_epi32(hi, l)));
            slx = _mm256_add_ps(slx, _mm256_mul_ps(_mm256_mul_ps(w, xi), lf));
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w, lf), lf));
        }
        float a_slx[8], a_sl2[8];
        _mm256_storeu_ps(a_slx, slx);
        _mm256_storeu_ps(a_sl2, sl2);
        for (int k = 0; k < 8 && is0 + k <= 9; k++)
            if (a_sl2[k] > 0 && a_slx[k] * a_slx[k] > best * a_sl2[k]) {
                best = a_slx[k] * a_slx[k] / a_sl2[k];
                best_scale = a_slx[k] / a_sl2[k];
            }
    }
    return best_scale;
}

void kernels_avx2_fill(struct kernels_table *t)
{
    t->fit_scale_min = avx2_fit_scale_min;
    t->fit_scale_sym = avx2_fit_scale_sym;
    t->axpy = avx2_axpy;
    t->wsum = avx2_wsum;
    t->dot_f32[KERNELS_F32] = avx2_dot_f32_f32;
    t->dot_f32[KERNELS_F16] = avx2_dot_f32_f16;
    t->dot_f32[KERNELS_BF16] = avx2_dot_f32_bf16;
    t->dot_f32[KERNELS_Q8_0] = avx2_dot_f32_q8_0;
    t->dot_f32[KERNELS_Q4_0] = avx2_dot_f32_q4_0;
    t->dot_f32[KERNELS_Q5_0] = avx2_dot_f32_q5_0;
    t->dot_f32[KERNELS_Q4_K] = avx2_dot_f32_q4_K;
    t->dot_f32[KERNELS_Q5_K] = avx2_dot_f32_q5_K;
    t->dot_f32[KERNELS_Q6_K] = avx2_dot_f32_q6_K;
    t->dot_q[KERNELS_F32] = avx2_dot_f32_f32;
    t->dot_q[KERNELS_F16] = avx2_dot_q_f16;
    t->dot_q[KERNELS_BF16] = avx2_dot_q_bf16;
    t->dot_q[KERNELS_Q8_0] = avx2_dot_q_q8_0;
    t->dot_q[KERNELS_Q4_0] = avx2_dot_q_q4_0;
    t->dot_q[KERNELS_Q5_0] = avx2_dot_q_q5_0;
    t->dot_q[KERNELS_Q4_K] = avx2_dot_q_q4_K;
    t->dot_q[KERNELS_Q5_K] = avx2_dot_q_q5_K;
    t->dot_q[KERNELS_Q6_K] = avx2_dot_q_q6_K;
    t->f32_to_f16 = avx2_f32_to_f16;
    t->quantize_q8_0_act = avx2_quantize_q8_0_act;
    t->quantize_q8_K_act = avx2_quantize_q8_K_act;
    t->swiglu = avx2_swiglu;
    t->softmax = avx2_softmax;
    t->rmsnorm = avx2_rmsnorm;
    t->add = avx2_add;
    t->scale = avx2_scale;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int kernels_x86_avx2_unused; /* ISO C forbids an empty translation unit */
#endif
