/*
 * Unit tests for kernels/: block layouts against hand-built blocks, quantize/dequantize
 * round trips, the integer and float dot products against a float64 computation on the
 * dequantized operands, every SIMD kernel against the scalar reference on random data
 * (sizes that are not multiples of the vector width, odd token counts, row ranges), and
 * the vector ops against their formulas.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

/* Tolerances, relative to the magnitude sum_i |w_i x_i| of a dot product. */
#define TOL_SUM_ORDER 2e-6   /* same float terms, different summation order (n <= 2048) */
#define TOL_VS_EXACT 1e-5    /* fp32 kernel vs float64 dot of the same dequantized values */
#define TOL_ACT_ROUNDING 0.03 /* quantized-activation path vs float path (8-bit x rounding) */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float frand(void) /* roughly normal, mean 0, sd 1 */
{
    float s = 0;
    for (int i = 0; i < 4; i++)
        s += (float)rnd() / 4294967296.0f;
    return (s - 2.0f) * 1.7320508f;
}

static void fill(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = frand() * scale;
}

static const enum kernels_type weight_types[] = {
    KERNELS_F32,  KERNELS_F16,  KERNELS_BF16, KERNELS_Q8_0, KERNELS_Q4_0,
    KERNELS_Q5_0, KERNELS_Q4_K, KERNELS_Q5_K, KERNELS_Q6_K,
};
#define N_WEIGHT_TYPES (int)(sizeof weight_types / sizeof weight_types[0])

/* The ISAs this CPU can run besides the reference. */
static int simd_isas(enum kernels_isa *out)
{
    int n = 0;
    if (kernels_init(KERNELS_ISA_AVX2) == 0)
        out[n++] = KERNELS_ISA_AVX2;
    if (kernels_init(KERNELS_ISA_AVX512) == 0)
        out[n++] = KERNELS_ISA_AVX512;
    if (kernels_init(KERNELS_ISA_AMX) == 0)
        out[n++] = KERNELS_ISA_AMX;
    kernels_init(KERNELS_ISA_REF);
    return n;
}

/* ======================================================================== layouts */

static void test_sizes_and_names(void **state)
{
    (void)state;
    assert_int_equal(kernels_row_bytes(KERNELS_Q8_0, 64), 68);
    assert_int_equal(kernels_row_bytes(KERNELS_Q4_0, 32), 18);
    assert_int_equal(kernels_row_bytes(KERNELS_Q5_0, 32), 22);
    assert_int_equal(kernels_row_bytes(KERNELS_Q4_K, 512), 288);
    assert_int_equal(kernels_row_bytes(KERNELS_Q5_K, 256), 176);
    assert_int_equal(kernels_row_bytes(KERNELS_Q6_K, 256), 210);
    assert_int_equal(kernels_row_bytes(KERNELS_Q8_K, 256), 292);
    assert_int_equal(kernels_row_bytes(KERNELS_F16, 7), 14);
    assert_int_equal(kernels_row_bytes(KERNELS_BF16, 3), 6);
    assert_int_equal(kernels_row_bytes(KERNELS_F32, 5), 20);
    assert_int_equal(kernels_row_bytes(KERNELS_Q4_K, 100), 0); /* not a block multiple */
    assert_false(kernels_type_known(3));
    assert_false(kernels_type_known(-1));
    assert_false(kernels_type_known(99));
    assert_string_equal(kernels_type_name(KERNELS_Q6_K), "q6_K");
    assert_int_equal(kernels_act_type(KERNELS_Q4_0), KERNELS_Q8_0);
    assert_int_equal(kernels_act_type(KERNELS_Q5_K), KERNELS_Q8_K);
    assert_int_equal(kernels_act_type(KERNELS_F16), KERNELS_F16);
}

static void test_fp16_conversion(void **state)
{
    (void)state;
    /* every finite half survives half -> float -> half */
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue; /* nan */
        assert_int_equal(kernels_f32_to_fp16(kernels_fp16_to_f32((kernels_fp16)h)), h);
    }
    assert_true(kernels_fp16_to_f32(0x3c00) == 1.0f);
    assert_true(kernels_fp16_to_f32(0xc000) == -2.0f);
    assert_true(kernels_fp16_to_f32(0x0001) == 5.9604644775390625e-8f);
    assert_int_equal(kernels_f32_to_fp16(65504.0f), 0x7bff);
    assert_int_equal(kernels_f32_to_fp16(1e6f), 0x7c00);
    assert_int_equal(kernels_f32_to_fp16(1.0f + 1.0f / 2048), 0x3c00); /* tie -> even */
    assert_int_equal(kernels_f32_to_fp16(1.0f + 3.0f / 2048), 0x3c02); /* tie -> even */
    assert_int_equal(kernels_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);  /* tie -> even */
    assert_true(kernels_bf16_to_f32(0x3fc0) == 1.5f);

    /* the SIMD conversion (F16C) rounds identically, including subnormals and overflow */
    enum kernels_isa isas[3];
    int n_isa = simd_isas(isas);
    enum { N = 4099 };
    static float x[N];
    static kernels_fp16 a[N], b[N];
    for (int i = 0; i < N; i++) {
        uint32_t u = rnd() ^ (rnd() << 16);
        float f;
        memcpy(&f, &u, 4);
        x[i] = isnan(f) ? 0.0f : f;
        if (i % 3 == 0)
            x[i] = frand() * 1e-5f; /* near the subnormal range */
    }
    kernels_init(KERNELS_ISA_REF);
    assert_int_equal(kernels_quantize_row(KERNELS_F16, x, a, N), 0);
    for (int s = 0; s < n_isa; s++) {
        kernels_init(isas[s]);
        assert_int_equal(kernels_quantize_row(KERNELS_F16, x, b, N), 0);
        assert_memory_equal(a, b, sizeof a);
    }
    kernels_init(KERNELS_ISA_REF);
}

static void set_fp16(kernels_fp16 *d, float v)
{
    *d = kernels_f32_to_fp16(v);
}

static void test_hand_built_blocks(void **state)
{
    (void)state;
    float y[QK_K];

    /* Q8_0: d = 0.25 */
    struct block_q8_0 b8;
    set_fp16(&b8.d, 0.25f);
    for (int j = 0; j < 32; j++)
        b8.qs[j] = (int8_t)(j - 16);
    kernels_dequantize_row(KERNELS_Q8_0, &b8, y, 32);
    for (int j = 0; j < 32; j++)
        assert_true(y[j] == (j - 16) * 0.25f);

    /* Q4_0: d = 0.5, byte j = low nibble j, high nibble 15 - j */
    struct block_q4_0 b4;
    set_fp16(&b4.d, 0.5f);
    for (int j = 0; j < 16; j++)
        b4.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    kernels_dequantize_row(KERNELS_Q4_0, &b4, y, 32);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == (j - 8) * 0.5f);
        assert_true(y[j + 16] == (7 - j) * 0.5f);
    }

    /* Q5_0: as above plus the fifth bit set for elements 3 and 20 (qh bit 3 and bit 20) */
    struct block_q5_0 b5;
    set_fp16(&b5.d, 2.0f);
    memcpy(b5.qs, b4.qs, 16);
    uint32_t qh = (1u << 3) | (1u << 20);
    memcpy(b5.qh, &qh, 4);
    kernels_dequantize_row(KERNELS_Q5_0, &b5, y, 32);
    assert_true(y[0] == (0 - 16) * 2.0f);
    assert_true(y[3] == (3 + 16 - 16) * 2.0f);
    assert_true(y[20] == ((15 - 4) + 16 - 16) * 2.0f);
    assert_true(y[31] == ((15 - 15) - 16) * 2.0f);

    /* Q4_K: d = 1, dmin = 0.5; sub-block j gets scale j + 1 (j < 4) or 40 + j (j >= 4, so
     * the high two bits live in bytes 0..3) and min 2j (j < 4) or 50 + j. */
    struct block_q4_K bk;
    memset(&bk, 0, sizeof bk);
    set_fp16(&bk.d, 1.0f);
    set_fp16(&bk.dmin, 0.5f);
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = j < 4 ? j + 1 : 40 + j;
        mn[j] = j < 4 ? 2 * j : 50 + j;
    }
    for (int j = 0; j < 4; j++) { /* bytes 0..3: scale j | (high bits of scale j+4) << 6 */
        bk.scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        bk.scales[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        bk.scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    for (int i = 0; i < 128; i++)
        bk.qs[i] = (uint8_t)((i % 16) | ((15 - i % 16) << 4));
    kernels_dequantize_row(KERNELS_Q4_K, &bk, y, QK_K);
    for (int e = 0; e < QK_K; e++) {
        int j = e / 32, l = e % 32, byte = 32 * (j / 2) + l;
        int q = j % 2 == 0 ? byte % 16 : 15 - byte % 16;
        assert_true(y[e] == 1.0f * sc[j] * q - 0.5f * mn[j]);
    }

    /* Q5_K: same scales; the fifth bit of element 64k + l is bit 2k of qh[l] and of
     * element 64k + 32 + l bit 2k + 1; set qh[l] = l so the pattern varies */
    struct block_q5_K b5k;
    memset(&b5k, 0, sizeof b5k);
    b5k.d = bk.d, b5k.dmin = bk.dmin;
    memcpy(b5k.scales, bk.scales, 12);
    memcpy(b5k.qs, bk.qs, 128);
    for (int l = 0; l < 32; l++)
        b5k.qh[l] = (uint8_t)(l * 7);
    kernels_dequantize_row(KERNELS_Q5_K, &b5k, y, QK_K);
    for (int e = 0; e < QK_K; e++) {
        int j = e / 32, l = e % 32, byte = 32 * (j / 2) + l;
        int q = j % 2 == 0 ? byte % 16 : 15 - byte % 16;
        q += ((b5k.qh[l] >> j) & 1) * 16;
        assert_true(y[e] == 1.0f * sc[j] * q - 0.5f * mn[j]);
    }

    /* Q6_K: build from wanted 6-bit values v[e] = (e * 5) % 64 following the format:
     * for half h and l < 32: ql[64h + l] = v0 lo | v2 lo << 4, ql[64h + 32 + l] =
     * v1 lo | v3 lo << 4, qh[32h + l] = v0 hi | v1 hi << 2 | v2 hi << 4 | v3 hi << 6,
     * where vk = v[128h + 32k + l]. Scale of element e: scales[e / 16]. */
    struct block_q6_K b6;
    memset(&b6, 0, sizeof b6);
    set_fp16(&b6.d, 0.125f);
    int v[QK_K];
    for (int e = 0; e < QK_K; e++)
        v[e] = (e * 5) % 64;
    for (int g = 0; g < 16; g++)
        b6.scales[g] = (int8_t)(g % 2 ? -3 * g : 2 * g + 1);
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            int *vv = v + 128 * h + l;
            b6.ql[64 * h + l] = (uint8_t)((vv[0] & 15) | ((vv[64] & 15) << 4));
            b6.ql[64 * h + 32 + l] = (uint8_t)((vv[32] & 15) | ((vv[96] & 15) << 4));
            b6.qh[32 * h + l] = (uint8_t)((vv[0] >> 4) | ((vv[32] >> 4) << 2) |
                                          ((vv[64] >> 4) << 4) | ((vv[96] >> 4) << 6));
        }
    kernels_dequantize_row(KERNELS_Q6_K, &b6, y, QK_K);
    for (int e = 0; e < QK_K; e++)
        assert_true(y[e] == 0.125f * b6.scales[e / 16] * (v[e] - 32));
}

/* ======================================================================== quantize */

static void test_quantize_roundtrip(void **state)
{
    (void)state;
    enum { N = 4096 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    fill(x, N, 0.7f);
    x[5] = 0; /* and a zero block */
    for (int i = 256; i < 512; i++)
        x[i] = 0;
    double sx2 = 0;
    for (int i = 0; i < N; i++)
        sx2 += (double)x[i] * x[i];
    double rms = sqrt(sx2 / N);
    /* relative RMSE bounds: about 1.5x of what ggml's reference quantizers reach on
     * gaussian data (q4_0 ~0.10, q5_0 ~0.05, q4_K ~0.075, q5_K ~0.037, q6_K ~0.018) */
    static const struct {
        enum kernels_type t;
        double max_rel_rmse;
    } cases[] = {
        {KERNELS_F16, 0.0005},  {KERNELS_BF16, 0.004},  {KERNELS_Q8_0, 0.006},
        {KERNELS_Q4_0, 0.14},   {KERNELS_Q5_0, 0.07},   {KERNELS_Q4_K, 0.11},
        {KERNELS_Q5_K, 0.055},  {KERNELS_Q6_K, 0.027},  {KERNELS_Q8_K, 0.008},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        enum kernels_type t = cases[c].t;
        assert_int_equal(kernels_quantize_row(t, x, q, N), 0);
        kernels_dequantize_row(t, q, y, N);
        double se = 0;
        for (int i = 0; i < N; i++)
            se += (double)(x[i] - y[i]) * (x[i] - y[i]);
        double rel = sqrt(se / N) / rms;
        fprintf(stderr, "  roundtrip %-5s rel rmse %.5f (bound %.4f)\n", kernels_type_name(t),
                rel, cases[c].max_rel_rmse);
        assert_true(rel <= cases[c].max_rel_rmse);
        for (int i = 256; i < 512; i++) /* zero block stays exactly zero */
            assert_true(y[i] == 0.0f);
    }
    /* Q8_0 weights: every element within d/2 of the input (round to nearest) plus the
     * fp16 rounding of d (relative 2^-11) times |q| <= 127 */
    kernels_quantize_row(KERNELS_Q8_0, x, q, N);
    kernels_dequantize_row(KERNELS_Q8_0, q, y, N);
    for (int i = 0; i < N; i++) {
        float d = kernels_fp16_to_f32(((struct block_q8_0 *)q)[i / 32].d);
        assert_true(fabsf(x[i] - y[i]) <= d * (0.5f + 127.0f / 2048.0f) + 1e-7f);
    }
    /* bad length */
    assert_int_equal(kernels_quantize_row(KERNELS_Q4_K, x, q, 100), ERR_INVALID);
    assert_int_equal(kernels_quantize_row((enum kernels_type)3, x, q, 32), ERR_UNSUPPORTED);
}

/* The SIMD step-size searches of the K-quant weight quantizers must give the very bytes
 * of the reference: gaussian rows at several scales, rows with outliers, constant,
 * all-positive and all-negative blocks, tiny and huge values, zeros. */
static void test_quantize_simd_identical(void **state)
{
    (void)state;
    enum { N = 256 * 24 };
    static float x[N];
    static uint8_t qr[N], qs[N];
    enum kernels_isa isas[3];
    int n_isa = simd_isas(isas);
    static const enum kernels_type types[] = {KERNELS_Q4_K, KERNELS_Q5_K, KERNELS_Q6_K};
    for (int round = 0; round < 6; round++) {
        static const float scales[] = {1.0f, 0.02f, 30.0f, 1e-6f, 5e4f, 0.3f};
        fill(x, N, scales[round]);
        for (int i = 0; i < 256; i++) /* block 0: constant; block 1: all positive */
            x[i] = scales[round], x[256 + i] = fabsf(x[256 + i]);
        for (int i = 512; i < 768; i++) /* block 2: all negative; block 3: zeros */
            x[i] = -fabsf(x[i]), x[i + 256] = 0;
        for (int i = 1024; i < N; i += 97) /* outliers */
            x[i] *= 40.0f;
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            size_t bytes = kernels_row_bytes(types[t], N);
            kernels_init(KERNELS_ISA_REF);
            assert_int_equal(kernels_quantize_row(types[t], x, qr, N), 0);
            for (int k = 0; k < n_isa; k++) {
                kernels_init(isas[k]);
                memset(qs, 0xAA, sizeof qs);
                assert_int_equal(kernels_quantize_row(types[t], x, qs, N), 0);
                if (memcmp(qr, qs, bytes) != 0)
                    fail_msg("%s quantized by %s differs from ref (round %d)",
                             kernels_type_name(types[t]), kernels_isa_name(), round);
            }
        }
    }
    kernels_init(KERNELS_ISA_AUTO);
}

/* SIMD activation rounding writes the reference's bytes (Q8_0 and Q8_K with its trailer),
 * on random rows, rows with exact .5 ties after scaling, a zero block, and a negative
 * extreme that appears twice (the first one sets the sign). */
static void test_activation_simd_identical(void **state)
{
    (void)state;
    enum kernels_isa isas[3];
    int n_isa = simd_isas(isas);
    enum { COLS = 4 * QK_K };
    static const enum kernels_type w[] = {KERNELS_Q8_0, KERNELS_Q4_K};
    float *x = malloc(sizeof(float) * COLS * 3);
    fill(x, COLS * 3, 3.0f);
    for (int j = 0; j < QK_K; j++) /* block 1 of token 0: zeros */
        x[QK_K + j] = 0.0f;
    for (int j = 0; j < QK_K; j++) /* block 2: halves of 127/amax steps, ties */
        x[2 * QK_K + j] = (float)((j % 255) - 127) * 0.5f;
    x[2 * QK_K + 5] = -127.0f, x[2 * QK_K + 9] = 127.0f, x[2 * QK_K + 11] = -127.0f;
    for (int wi = 0; wi < 2; wi++) {
        size_t ab = kernels_act_bytes(w[wi], COLS, 3);
        unsigned char *ref = malloc(ab), *got = malloc(ab);
        kernels_init(KERNELS_ISA_REF);
        memset(ref, 0xAA, ab);
        assert_int_equal(kernels_quantize_act(w[wi], x, COLS, 3, ref), 0);
        for (int s = 0; s < n_isa; s++) {
            assert_int_equal(kernels_init(isas[s]), 0);
            memset(got, 0x55, ab);
            assert_int_equal(kernels_quantize_act(w[wi], x, COLS, 3, got), 0);
            assert_memory_equal(ref, got, ab);
        }
        free(ref), free(got);
    }
    kernels_init(KERNELS_ISA_REF);
    free(x);
}

static void test_activation_rounding(void **state)
{
    (void)state;
    /* Q8_0 activations: amax 127 -> factor exactly 1; halves round to even */
    float x[QK_K];
    for (int j = 0; j < 32; j++)
        x[j] = (float)j - 16.5f;
    x[0] = -127.0f;
    struct block_q8_0 a;
    assert_int_equal(kernels_quantize_act(KERNELS_Q8_0, x, 32, 1, &a), 0);
    assert_true(kernels_fp16_to_f32(a.d) == kernels_fp16_to_f32(kernels_f32_to_fp16(1.0f)));
    assert_int_equal(a.qs[0], -127);
    for (int j = 1; j < 32; j++)
        assert_int_equal(a.qs[j], (int)lrintf((float)j - 16.5f)); /* -15.5 -> -16, ... */
    assert_int_equal(a.qs[1], -16);
    assert_int_equal(a.qs[2], -14);

    /* Q8_K: the signed extreme (negative here) maps to -127 via scale -max/127 */
    for (int j = 0; j < QK_K; j++)
        x[j] = (float)(j % 50) * 0.1f;
    x[77] = -10.0f;
    struct {
        struct block_q8_K b;
        float sums[QK_K / 32]; /* the trailer: d * (sum of each 32 quants) */
    } ka;
    assert_int_equal(kernels_act_bytes(KERNELS_Q4_K, QK_K, 1), sizeof ka);
    assert_int_equal(kernels_act_row_bytes(KERNELS_Q6_K, QK_K), sizeof ka);
    assert_int_equal(kernels_quantize_act(KERNELS_Q4_K, x, QK_K, 1, &ka), 0);
    const struct block_q8_K k = ka.b;
    for (int j = 0; j < QK_K / 32; j++) {
        int s = 0;
        for (int l = 0; l < 32; l++)
            s += k.qs[32 * j + l];
        assert_true(ka.sums[j] == k.d * (float)s);
    }
    assert_true(k.d == 1.0f / (-127.0f / -10.0f));
    assert_int_equal(k.qs[77], -127);
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int l = 0; l < 16; l++)
            s += k.qs[16 * g + l];
        assert_int_equal(k.bsums[g], s);
    }
    for (int j = 0; j < QK_K; j++)
        assert_int_equal(k.qs[j], j == 77 ? -127 : (int)lrintf(x[j] * (-127.0f / -10.0f)));
}

/* ======================================================================== dots */

struct mat {
    enum kernels_type t;
    int rows, cols;
    uint8_t *data;
    float *deq; /* [rows][cols] dequantized */
};

static void mat_make(struct mat *m, enum kernels_type t, int rows, int cols)
{
    m->t = t, m->rows = rows, m->cols = cols;
    size_t rb = kernels_row_bytes(t, cols);
    m->data = malloc(rb * (size_t)rows);
    m->deq = malloc(sizeof(float) * (size_t)rows * (size_t)cols);
    float *tmp = malloc(sizeof(float) * (size_t)cols);
    assert_non_null(m->data);
    for (int r = 0; r < rows; r++) {
        fill(tmp, cols, 0.5f + 0.1f * (float)(r % 5));
        kernels_init(KERNELS_ISA_REF);
        assert_int_equal(kernels_quantize_row(t, tmp, m->data + rb * (size_t)r, cols), 0);
        kernels_dequantize_row(t, m->data + rb * (size_t)r, m->deq + (size_t)r * cols, cols);
    }
    free(tmp);
}

static void mat_free(struct mat *m)
{
    free(m->data);
    free(m->deq);
}

/* |a - b| <= tol * mag, with mag = sum |w x| over the row (floor 1e-30) */
static void check_close(float a, float b, double mag, double tol, const char *what,
                        enum kernels_type t, int cols, int tok, int row)
{
    double err = fabs((double)a - (double)b);
    if (!(err <= tol * (mag + 1e-30))) { /* also a NaN: an output nobody wrote */
        fprintf(stderr, "%s %s cols=%d tok=%d row=%d: %.9g vs %.9g (err %.3g, mag %.3g)\n",
                what, kernels_type_name(t), cols, tok, row, a, b, err, mag);
        fail();
    }
}

/* Runs both matrix paths on every ISA and checks: the reference equals the float64 dot of
 * the dequantized operands; each SIMD ISA equals the reference; the quantized-activation
 * path stays near the float path. */
static void check_matmul(enum kernels_type t, int rows, int cols, int n_tok,
                         const enum kernels_isa *isas, int n_isa)
{
    struct mat m;
    mat_make(&m, t, rows, cols);
    struct kernels_tensor_view W = {t, m.data, rows, cols, kernels_row_bytes(t, cols)};
    float *x = malloc(sizeof(float) * (size_t)n_tok * cols);
    fill(x, (int64_t)n_tok * cols, 1.0f);
    size_t ab = kernels_act_bytes(t, cols, n_tok);
    void *act = malloc(ab);
    float *xa = malloc(sizeof(float) * (size_t)n_tok * cols); /* dequantized activations */
    size_t ny = (size_t)n_tok * rows;
    float *yf = malloc(ny * 4), *yq = malloc(ny * 4), *ys = malloc(ny * 4);

    kernels_init(KERNELS_ISA_REF);
    assert_int_equal(kernels_quantize_act(t, x, cols, n_tok, act), 0);
    enum kernels_type at = kernels_act_type(t);
    size_t arb = kernels_act_row_bytes(t, cols); /* a token's row, then any trailer */
    for (int k = 0; k < n_tok; k++)
        kernels_dequantize_row(at, (char *)act + arb * (size_t)k, xa + (size_t)k * cols, cols);
    assert_int_equal(kernels_matmul(&W, x, yf, n_tok, 0, rows), 0);
    assert_int_equal(kernels_matmul_q(&W, act, yq, n_tok, 0, rows), 0);

    for (int k = 0; k < n_tok; k++)
        for (int r = 0; r < rows; r++) {
            const float *w = m.deq + (size_t)r * cols;
            const float *xk = x + (size_t)k * cols, *xq = xa + (size_t)k * cols;
            double ef = 0, eq = 0, magf = 0, magq = 0;
            for (int c = 0; c < cols; c++) {
                ef += (double)w[c] * xk[c];
                eq += (double)w[c] * xq[c];
                magf += fabs((double)w[c] * xk[c]);
                magq += fabs((double)w[c] * xq[c]);
            }
            size_t o = (size_t)k * rows + r;
            check_close(yf[o], (float)ef, magf, TOL_VS_EXACT, "ref float path", t, cols, k, r);
            check_close(yq[o], (float)eq, magq, TOL_VS_EXACT, "ref quant path", t, cols, k, r);
            check_close(yq[o], yf[o], magf, TOL_ACT_ROUNDING, "quant vs float", t, cols, k, r);
        }

    for (int s = 0; s < n_isa; s++) {
        assert_int_equal(kernels_init(isas[s]), 0);
        for (int path = 0; path < 2; path++) {
            for (size_t i = 0; i < ny; i++)
                ys[i] = NAN;
            int rc = path ? kernels_matmul_q(&W, act, ys, n_tok, 0, rows)
                          : kernels_matmul(&W, x, ys, n_tok, 0, rows);
            assert_int_equal(rc, 0);
            for (int k = 0; k < n_tok; k++)
                for (int r = 0; r < rows; r++) {
                    const float *w = m.deq + (size_t)r * cols;
                    const float *xk = (path ? xa : x) + (size_t)k * cols;
                    double mag = 0;
                    for (int c = 0; c < cols; c++)
                        mag += fabs((double)w[c] * xk[c]);
                    size_t o = (size_t)k * rows + r;
                    check_close(ys[o], path ? yq[o] : yf[o], mag, TOL_SUM_ORDER,
                                path ? "simd quant path" : "simd float path", t, cols, k, r);
                }
        }
    }
    kernels_init(KERNELS_ISA_REF);
    free(x), free(act), free(xa), free(yf), free(yq), free(ys);
    mat_free(&m);
}

static void test_matmul_all_types(void **state)
{
    (void)state;
    enum kernels_isa isas[3];
    int n_isa = simd_isas(isas);
    fprintf(stderr, "  SIMD ISAs tested against ref: %d\n", n_isa);
    static const int toks[] = {1, 2, 3, 4, 5, 7, 9};
    for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        enum kernels_type t = weight_types[ti];
        int qk = kernels_block_size(t);
        /* column counts: 1..8 blocks for quantized types, odd lengths for float types */
        int cols_list[] = {qk, 2 * qk, 3 * qk, 8 * qk};
        int cols_float[] = {1, 7, 15, 16, 17, 33, 250, 1031};
        int n_cols = qk > 1 ? 4 : 8;
        for (int ci = 0; ci < n_cols; ci++) {
            int cols = qk > 1 ? cols_list[ci] : cols_float[ci];
            int n_tok = toks[(ci + ti) % 7];
            check_matmul(t, 5, cols, n_tok, isas, n_isa);
        }
        check_matmul(t, 3, qk > 1 ? 4 * qk : 96, 9, isas, n_isa); /* two token groups + 1 */
        /* every token count up to two groups of the widest dot (KERNELS_NX_MAX = 8 tokens
         * per call) plus one, so each n_x specialisation of every ISA runs */
        for (int nt = 1; nt <= 17; nt++)
            check_matmul(t, 3, qk > 1 ? 2 * qk : 33, nt, isas, n_isa);
    }
}

/* Register-tiled products (tile_q) take rows and tokens in tiles of several of each: every
 * row count up to past two tiles, including the partial tiles at the end of a product,
 * against every token count that leaves a token remainder. */
static void test_matmul_tile_remainders(void **state)
{
    (void)state;
    enum kernels_isa isas[3];
    int n_isa = simd_isas(isas);
    static const enum kernels_type types[] = {KERNELS_Q8_0, KERNELS_Q4_0, KERNELS_Q5_0,
                                              KERNELS_Q4_K, KERNELS_Q5_K, KERNELS_Q6_K};
    static const int rows[] = {1, 2, 3, 4, 5, 7, 8, 9, 13};
    static const int toks[] = {2, 3, 4, 5, 8, 9, 17};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++)
            for (size_t ki = 0; ki < sizeof toks / sizeof toks[0]; ki++)
                check_matmul(types[ti], rows[ri], 3 * kernels_block_size(types[ti]), toks[ki],
                             isas, n_isa);
        /* one token (decode) goes through the tile kernel too: every partial row tile */
        for (int r = 1; r <= 13; r++)
            check_matmul(types[ti], r, 3 * kernels_block_size(types[ti]), 1, isas, n_isa);
    }
}

/* The F16 tile kernel: partial row and token tiles, column tails under 16 (masked loads)
 * and several column chunks (1031), and (17, 67 rows) more than one 16-row reduction and
 * more than one call per row block. */
static void test_matmul_f16_tiles(void **state)
{
    (void)state;
    enum kernels_isa isas[3];
    int n_isa = simd_isas(isas);
    static const int rows[] = {1, 2, 3, 4, 5, 7, 8, 9, 13};
    static const int toks[] = {1, 2, 3, 4, 5, 6, 7, 9, 17};
    static const int cols[] = {1, 15, 16, 17, 100, 1031};
    for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++)
        for (size_t ki = 0; ki < sizeof toks / sizeof toks[0]; ki++)
            for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++)
                check_matmul(KERNELS_F16, rows[ri], cols[ci], toks[ki], isas, n_isa);
    check_matmul(KERNELS_F16, 17, 100, 9, isas, n_isa);
    check_matmul(KERNELS_F16, 67, 1031, 9, isas, n_isa);
}

/*
 * AMX (x86_amx.c) runs whole 16 x 16 tiles and leaves the rows and tokens past the last
 * whole tile to the canonical AVX-512 tiles (Q6_K: dot). Checks, for Q8_0, Q4_K and Q6_K: against the
 * reference within TOL_SUM_ORDER (sizes with partial row and token tiles, and with more
 * than one row block: the 6144 and 11008 columns make each row block 16 rows), and bit
 * for bit: every token alone (one token never uses AMX) and every row range of 16 gives
 * exactly what the whole batch gave, which is what batch invariance needs (check_bits,
 * which the AVX-512 F16 tile's test below uses too).
 */
static void check_bits(enum kernels_isa isa, enum kernels_type t, int rows, int cols,
                       int n_tok)
{
    struct mat m;
    mat_make(&m, t, rows, cols);
    struct kernels_tensor_view W = {t, m.data, rows, cols, kernels_row_bytes(t, cols)};
    float *x = malloc(sizeof(float) * (size_t)n_tok * cols);
    fill(x, (int64_t)n_tok * cols, 1.0f);
    size_t arb = kernels_act_row_bytes(t, cols);
    void *act = malloc(arb * (size_t)n_tok);
    float *yb = malloc(sizeof(float) * (size_t)n_tok * rows);
    float *y1 = malloc(sizeof(float) * (size_t)rows);
    float *yr = malloc(sizeof(float) * (size_t)n_tok * rows);
    assert_int_equal(kernels_init(isa), 0);
    assert_int_equal(kernels_quantize_act(t, x, cols, n_tok, act), 0);
    assert_int_equal(kernels_matmul_q(&W, act, yb, n_tok, 0, rows), 0);
    for (int k = 0; k < n_tok; k++) {
        assert_int_equal(kernels_matmul_q(&W, (char *)act + arb * (size_t)k, y1, 1, 0, rows), 0);
        for (int r = 0; r < rows; r++)
            if (!(y1[r] == yb[(size_t)k * rows + r])) {
                fprintf(stderr, "isa %d %s %dx%d tok %d/%d row %d: alone %.9g, batch %.9g\n",
                        (int)isa, kernels_type_name(t), rows, cols, k, n_tok, r, y1[r],
                        yb[(size_t)k * rows + r]);
                fail();
            }
    }
    /* one token over uneven row ranges (gemv_q gets a thread's whole range): the same
     * bits, and nothing written outside the range */
    for (int r0 = 0; r0 < rows; r0 += 37) {
        int r1 = r0 + 37 < rows ? r0 + 37 : rows;
        for (int r = 0; r < rows; r++)
            y1[r] = -1e30f;
        assert_int_equal(kernels_matmul_q(&W, act, y1, 1, r0, r1), 0);
        for (int r = 0; r < rows; r++)
            if (r >= r0 && r < r1 ? !(y1[r] == yb[r]) : y1[r] != -1e30f) {
                fprintf(stderr, "isa %d %s %dx%d rows [%d, %d) row %d: %.9g, batch %.9g\n",
                        (int)isa, kernels_type_name(t), rows, cols, r0, r1, r, y1[r], yb[r]);
                fail();
            }
    }
    for (int r0 = 0; r0 < rows; r0 += 16) { /* row ranges, as the thread pool splits them */
        int r1 = r0 + 16 < rows ? r0 + 16 : rows;
        assert_int_equal(kernels_matmul_q(&W, act, yr, n_tok, r0, r1), 0);
    }
    assert_memory_equal(yr, yb, sizeof(float) * (size_t)n_tok * rows);
    kernels_init(KERNELS_ISA_REF);
    free(x), free(act), free(yb), free(y1), free(yr);
    mat_free(&m);
}

/* 1 when isa could be selected (it is then the active one); else 0, ref selected again,
 * and why the test is skipped on stderr: the caller then calls skip() */
static int isa_or_skip(enum kernels_isa isa, const char *why)
{
    if (kernels_init(isa) == 0)
        return 1;
    kernels_init(KERNELS_ISA_REF);
    fprintf(stderr, "  %s\n", why);
    return 0;
}

/* The F16 tiles of AVX2 (x86_avx2_f16.c) and AVX-512: a token's bits do not depend on
 * the batch (under 16 tokens, so no AMX), the one-token paths (AVX-512: gemv_q over a
 * row range in four streams; AVX2: whole rows, dec_tile) included: partial row tiles, column tails, more than one 512-column chunk, more than
 * one call per row block. AVX2 runs everywhere the suite runs on x86; AVX-512 where the
 * CPU has it. */
static void test_matmul_f16_bits(void **state)
{
    (void)state;
    static const enum kernels_isa isas[] = {KERNELS_ISA_AVX2, KERNELS_ISA_AVX512};
    static const char *const why[] = {
        "no AVX2 on this CPU: the AVX2 F16 tile's batch invariance not tested",
        "no AVX-512 on this CPU: the AVX-512 F16 tile's batch invariance not tested"};
    static const int rows[] = {1, 3, 5, 13, 67};
    static const int toks[] = {2, 5, 9, 15};
    static const int cols[] = {15, 100, 1031};
    int ran = 0;
    for (int s = 0; s < 2; s++) {
        if (!isa_or_skip(isas[s], why[s]))
            continue;
        ran++;
        for (size_t ri = 0; ri < 5; ri++)
            for (size_t ki = 0; ki < 4; ki++)
                check_bits(isas[s], KERNELS_F16, rows[ri], cols[(ri + ki) % 3], toks[ki]);
        /* the one-token path's four row streams, each more than one 16-row group */
        check_bits(isas[s], KERNELS_F16, 301, 100, 2);
    }
    if (!ran)
        skip();
}

/* The AVX-512 F16 GEMM (gemm_q, from 128 tokens): against the reference, and bit for
 * bit with the tile (each token alone runs the one-token path; row ranges of 16, as the
 * thread pool splits, run the tile when under 48 rows): panels of 48, 32 and 16 rows
 * with tile rows left over (67, 100), token counts off 16 (leftovers on the tile),
 * column tails under 16, phases without columns (1 column), a phase longer than one
 * slice (2100 columns: 132 steps > 128), and (8960 columns: 112 tokens per block) more
 * than one token block. */
static void test_matmul_f16_gemm(void **state)
{
    (void)state;
    if (!isa_or_skip(KERNELS_ISA_AVX512, "no AVX-512 on this CPU: the F16 GEMM not tested"))
        skip();
    enum kernels_isa avx512[1] = {KERNELS_ISA_AVX512};
    static const int rows[] = {16, 32, 48, 67, 100};
    static const int toks[] = {128, 129, 144, 161};
    static const int cols[] = {1, 15, 100, 2100};
    for (size_t ri = 0; ri < 5; ri++)
        for (size_t ki = 0; ki < 4; ki++) {
            int c = cols[(ri + ki) % 4];
            check_matmul(KERNELS_F16, rows[ri], c, toks[ki], avx512, 1);
            check_bits(KERNELS_ISA_AVX512, KERNELS_F16, rows[ri], c, toks[ki]);
        }
    check_matmul(KERNELS_F16, 50, 8960, 130, avx512, 1);
    check_bits(KERNELS_ISA_AVX512, KERNELS_F16, 50, 8960, 130);
}

/* A K-quant tile's batch invariance (check_bits): partial row and token tiles, 1-3 blocks,
 * more than one call per row block. */
static void check_kquant_tile_bits(enum kernels_type t)
{
    static const int rows[] = {1, 3, 8, 9, 13, 67};
    static const int toks[] = {2, 5, 9, 15};
    for (size_t ri = 0; ri < 6; ri++)
        for (size_t ki = 0; ki < 4; ki++)
            check_bits(KERNELS_ISA_AVX512, t, rows[ri], 256 * (int)(1 + (ri + ki) % 3), toks[ki]);
}

/* The raw blocks w (R rows of C columns of type t) against T activation rows, token 0
 * every x = -1 (the quantizer's extreme, qs -127), the others fill(): y0 by the reference,
 * y1 by AVX-512 (selected after), and mag[k * R + r] = sum |w x| of the dequantized
 * values. */
static void raw_tile_vs_ref(enum kernels_type t, const uint8_t *w, int R, int C, int T,
                            float *y0, float *y1, double *mag)
{
    size_t rb = kernels_row_bytes(t, C), arb = kernels_act_row_bytes(t, C);
    float *x = malloc(sizeof(float) * (size_t)T * C), *wd = malloc(sizeof(float) * (size_t)R * C);
    float *xd = malloc(sizeof(float) * (size_t)T * C);
    void *act = malloc(arb * (size_t)T);
    fill(x, (int64_t)T * C, 1.0f);
    for (int c = 0; c < C; c++)
        x[c] = -1.0f;
    kernels_init(KERNELS_ISA_REF);
    assert_int_equal(kernels_quantize_act(t, x, C, T, act), 0);
    assert_true(((const int8_t *)act)[4] <= -127); /* qs[0] of token 0: the extreme */
    for (int k = 0; k < T; k++)
        kernels_dequantize_row(kernels_act_type(t), (char *)act + arb * (size_t)k,
                               xd + (size_t)k * C, C);
    for (int r = 0; r < R; r++)
        kernels_dequantize_row(t, w + rb * (size_t)r, wd + (size_t)r * C, C);
    struct kernels_tensor_view W = {t, w, R, C, rb};
    assert_int_equal(kernels_matmul_q(&W, act, y0, T, 0, R), 0);
    assert_int_equal(kernels_init(KERNELS_ISA_AVX512), 0);
    assert_int_equal(kernels_matmul_q(&W, act, y1, T, 0, R), 0);
    for (int k = 0; k < T; k++)
        for (int r = 0; r < R; r++) {
            double m = 0;
            for (int c = 0; c < C; c++)
                m += fabs((double)wd[(size_t)r * C + c] * xd[(size_t)k * C + c]);
            mag[(size_t)k * R + r] = m;
        }
    kernels_init(KERNELS_ISA_REF);
    free(x), free(wd), free(xd), free(act);
}

/* The AVX-512 Q5_K tile (the Q4_K tile with fifth bits): a token's bits do not depend on
 * its batch; and every quant 31 (qs and qh all ones, the largest sums its s16 scaling
 * must hold: 8 * 31 * 127 per lane) with scales and mins at 63, against the reference. */
static void test_matmul_q5k_tile(void **state)
{
    (void)state;
    if (!isa_or_skip(KERNELS_ISA_AVX512, "no AVX-512 on this CPU: the Q5_K tile not tested"))
        skip();
    check_kquant_tile_bits(KERNELS_Q5_K);
    enum { R = 9, C = 512, T = 2 };
    size_t rb = kernels_row_bytes(KERNELS_Q5_K, C);
    uint8_t *w = malloc(rb * R);
    float y0[T * R], y1[T * R];
    double mag[T * R];
    memset(w, 0xFF, rb * R); /* quants 31, 6-bit scales and mins 63 */
    for (int r = 0; r < R; r++)
        for (int b = 0; b < C / 256; b++) {
            uint8_t *blk = w + rb * (size_t)r + 176 * (size_t)b;
            blk[0] = 0x66, blk[1] = (uint8_t)(0x2C + r % 4); /* d */
            blk[2] = 0x66, blk[3] = 0x28;                     /* dmin */
        }
    raw_tile_vs_ref(KERNELS_Q5_K, w, R, C, T, y0, y1, mag);
    for (int i = 0; i < T * R; i++)
        assert_true(fabsf(y1[i] - y0[i]) <= 1e-5f * fabsf(y0[i]) + 1e-6f);
    free(w);
}

/* The AVX-512 Q6_K tile: a token's bits do not depend on its batch (partial row and token
 * tiles, several blocks, more than one call per row block); and on raw random blocks (any
 * byte is a valid quant, scales from -128 to 127) with the extreme sums its s16 packing
 * must hold: every quant 63 against the quantizer's extreme activations (x all -1: -127;
 * the pack holds 4 * 63 * 128 = 32,256 per dpbusd lane for any s8), against the reference
 * within TOL_SUM_ORDER. */
static void test_matmul_q6k_tile(void **state)
{
    (void)state;
    if (!isa_or_skip(KERNELS_ISA_AVX512, "no AVX-512 on this CPU: the Q6_K tile not tested"))
        skip();
    check_kquant_tile_bits(KERNELS_Q6_K);
    enum { R = 11, C = 768, T = 3 };
    size_t rb = kernels_row_bytes(KERNELS_Q6_K, C);
    uint8_t *w = malloc(rb * R);
    float y0[T * R], y1[T * R];
    double mag[T * R];
    uint32_t seed = 12345;
    for (size_t i = 0; i < rb * R; i++) {
        seed = seed * 1664525u + 1013904223u;
        w[i] = (uint8_t)(seed >> 24);
    }
    for (int r = 0; r < R; r++)
        for (int b = 0; b < C / 256; b++) {
            uint8_t *blk = w + rb * (size_t)r + 210 * (size_t)b;
            if (r == 0) /* every quant 63, scales 127 and -128 */
                for (int k = 0; k < 192; k++)
                    blk[k] = 0xFF;
            if (r == 0)
                for (int k = 0; k < 16; k++)
                    blk[192 + k] = (uint8_t)(k % 2 ? 0x80 : 0x7F);
            blk[208] = 0x66, blk[209] = (uint8_t)(0x2C + r % 4); /* d: fp16 about 0.06..0.4 */
        }
    raw_tile_vs_ref(KERNELS_Q6_K, w, R, C, T, y0, y1, mag);
    for (int k = 0; k < T; k++)
        for (int r = 0; r < R; r++) {
            size_t o = (size_t)k * R + r;
            check_close(y1[o], y0[o], mag[o], TOL_SUM_ORDER, "Q6_K tile vs ref", KERNELS_Q6_K, C,
                        k, r);
        }
    free(w);
}

static void test_matmul_amx(void **state)
{
    (void)state;
    if (!isa_or_skip(KERNELS_ISA_AMX,
                     "no AMX-INT8 on this CPU (or the OS refused it): AMX not tested"))
        skip();
    enum kernels_isa amx[1] = {KERNELS_ISA_AMX};
    static const enum kernels_type types[] = {KERNELS_Q8_0, KERNELS_Q4_K, KERNELS_Q6_K};
    static const int rows[] = {16, 32, 45};
    static const int toks[] = {16, 17, 31, 32, 53};
    for (size_t ti = 0; ti < 3; ti++) {
        enum kernels_type t = types[ti];
        int qk = kernels_block_size(t);
        for (size_t ri = 0; ri < 3; ri++)
            for (size_t ki = 0; ki < 5; ki++) {
                int cols = qk * (int)(1 + (ri + ki) % 3 * 3); /* 1, 4 and 7 blocks */
                check_matmul(t, rows[ri], cols, toks[ki], amx, 1);
                check_bits(KERNELS_ISA_AMX, t, rows[ri], cols, toks[ki]);
            }
        int big = t == KERNELS_Q8_0 ? 6144 : 11008;
        check_matmul(t, 40, big, 33, amx, 1);
        check_bits(KERNELS_ISA_AMX, t, 40, big, 33);
    }
    /* F16 on AMX-BF16 (exact products, so TOL_SUM_ORDER; not bit-identical with the
     * AVX-512 F16 tile, which takes the leftovers): column counts off the 32-column chunk
     * and the 256-column range, partial tiles, more than one token block (300 > 256) */
    static const int rows16[] = {16, 17, 45};
    static const int toks16[] = {16, 17, 33, 40};
    static const int cols16[] = {1, 31, 33, 100, 257, 1031};
    for (size_t ri = 0; ri < 3; ri++)
        for (size_t ki = 0; ki < 4; ki++)
            check_matmul(KERNELS_F16, rows16[ri], cols16[(ri + ki) % 6], toks16[ki], amx, 1);
    check_matmul(KERNELS_F16, 40, 2048, 300, amx, 1);
}

static void test_matmul_row_range_and_errors(void **state)
{
    (void)state;
    enum { ROWS = 9, COLS = 256, NT = 3 };
    struct mat m;
    mat_make(&m, KERNELS_Q4_K, ROWS, COLS);
    struct kernels_tensor_view W = {KERNELS_Q4_K, m.data, ROWS, COLS,
                                    kernels_row_bytes(KERNELS_Q4_K, COLS)};
    float x[NT * COLS], yall[NT * ROWS], y[NT * ROWS];
    fill(x, NT * COLS, 1.0f);
    kernels_init(KERNELS_ISA_AUTO);
    assert_int_equal(kernels_matmul(&W, x, yall, NT, 0, ROWS), 0);
    for (int i = 0; i < NT * ROWS; i++)
        y[i] = -12345.0f;
    /* two "threads" computing disjoint ranges give the whole product, untouched elsewhere */
    assert_int_equal(kernels_matmul(&W, x, y, NT, 2, 5), 0);
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < ROWS; r++) {
            if (r >= 2 && r < 5)
                assert_true(y[t * ROWS + r] == yall[t * ROWS + r]);
            else
                assert_true(y[t * ROWS + r] == -12345.0f);
        }
    assert_int_equal(kernels_matmul(&W, x, y, NT, 5, ROWS), 0);
    assert_int_equal(kernels_matmul(&W, x, y, NT, 0, 2), 0);
    assert_memory_equal(y, yall, sizeof y);
    assert_int_equal(kernels_matmul(&W, x, y, NT, 4, 3), ERR_INVALID);
    assert_int_equal(kernels_matmul(&W, x, y, NT, 0, ROWS + 1), ERR_INVALID);
    assert_int_equal(kernels_matmul(&W, x, y, -1, 0, 1), ERR_INVALID);
    W.cols = 100;
    assert_int_equal(kernels_matmul(&W, x, y, NT, 0, 1), ERR_INVALID);
    W.cols = COLS;
    W.type = KERNELS_Q8_K;
    assert_int_equal(kernels_matmul(&W, x, y, NT, 0, 1), ERR_UNSUPPORTED);
    W.type = (enum kernels_type)3;
    assert_int_equal(kernels_matmul(&W, x, y, NT, 0, 1), ERR_UNSUPPORTED);
    kernels_init(KERNELS_ISA_REF);
    mat_free(&m);
}

static void test_dispatch(void **state)
{
    (void)state;
    assert_int_equal(kernels_init(KERNELS_ISA_REF), 0);
    assert_string_equal(kernels_isa_name(), "ref");
    assert_int_equal(kernels_init(KERNELS_ISA_AUTO), 0);
    fprintf(stderr, "  auto ISA: %s\n", kernels_isa_name());
    assert_int_equal(kernels_init((enum kernels_isa)77), ERR_UNSUPPORTED);
    assert_string_equal(kernels_isa_name(), "ref");
    kernels_init(KERNELS_ISA_REF);
}

/* ======================================================================== vector ops */

/* kernels_wsum of rows of type t (made from x shifted per row) against float64 */
static void check_wsum(enum kernels_type t, int n, const float *x)
{
    static const int nrows[] = {1, 5, 33};
    size_t rb = kernels_row_bytes(t, n) + 8; /* a stride that is not the row size */
    for (int ri = 0; ri < 3; ri++) {
        int nr = nrows[ri];
        unsigned char *rows = malloc(rb * (size_t)nr);
        float *a = malloc(sizeof(float) * (size_t)nr), *xr = malloc(4 * (size_t)n);
        double *e = calloc((size_t)n, sizeof(double)), *mag = calloc((size_t)n, sizeof(double));
        float *y = malloc(4 * (size_t)n);
        fill(a, nr, 1.0f);
        for (int j = 0; j < nr; j++) {
            float *src = malloc(4 * (size_t)n);
            for (int i = 0; i < n; i++)
                src[i] = x[(i + 7 * j) % n] * (1.0f + 0.01f * (float)j);
            assert_int_equal(kernels_quantize_row(t, src, rows + rb * (size_t)j, n), 0);
            kernels_dequantize_row(t, rows + rb * (size_t)j, xr, n);
            for (int i = 0; i < n; i++) {
                e[i] += (double)a[j] * xr[i];
                mag[i] += fabs((double)a[j] * xr[i]);
            }
            free(src);
        }
        for (int i = 0; i < n; i++)
            y[i] = NAN; /* overwritten, not accumulated */
        kernels_wsum(t, a, rows, rb, nr, y, n);
        for (int i = 0; i < n; i++)
            assert_true(fabs(y[i] - e[i]) <= 1e-6 * (mag[i] + 1e-6));
        free(rows), free(a), free(xr), free(e), free(mag), free(y);
    }
}

static void test_vector_ops(void **state)
{
    (void)state;
    enum kernels_isa isas[3];
    int n_isa = simd_isas(isas);
    /* 128 and 300: the AVX-512 wsum's whole-head chunks, with and without a tail */
    static const int sizes[] = {1, 3, 8, 15, 17, 64, 128, 300, 1000, 4097};
    for (int si = 0; si < 10; si++) {
        int n = sizes[si];
        float *x = malloc(4 * (size_t)n), *w = malloc(4 * (size_t)n), *u = malloc(4 * (size_t)n);
        float *y = malloc(4 * (size_t)n), *z = malloc(4 * (size_t)n);
        fill(x, n, 2.0f);
        fill(w, n, 1.0f);
        fill(u, n, 1.0f);
        for (int s = -1; s < n_isa; s++) {
            kernels_init(s < 0 ? KERNELS_ISA_REF : isas[s]);
            /* rmsnorm */
            double ss = 0;
            for (int i = 0; i < n; i++)
                ss += (double)x[i] * x[i];
            double sc = 1.0 / sqrt(ss / n + 1e-6);
            kernels_rmsnorm(y, x, w, n, 1e-6f);
            for (int i = 0; i < n; i++)
                assert_true(fabs(y[i] - x[i] * sc * w[i]) <= 1e-5 * (fabs(x[i] * sc * w[i]) + 1e-3));
            memcpy(z, x, 4 * (size_t)n); /* in place, no weights */
            kernels_rmsnorm(z, z, NULL, n, 1e-6f);
            for (int i = 0; i < n; i++)
                assert_true(fabs(z[i] - x[i] * sc) <= 1e-5 * (fabs(x[i] * sc) + 1e-3));
            /* softmax */
            memcpy(y, x, 4 * (size_t)n);
            kernels_softmax(y, n, 0.0f);
            double mx = x[0], sum = 0, tot = 0;
            for (int i = 1; i < n; i++)
                mx = fmax(mx, x[i]);
            for (int i = 0; i < n; i++)
                sum += exp(x[i] - mx);
            for (int i = 0; i < n; i++) {
                assert_true(fabs(y[i] - exp(x[i] - mx) / sum) <= 1e-6 + 1e-5 * y[i]);
                tot += y[i];
            }
            assert_true(fabs(tot - 1.0) < 1e-5);
            /* a wide range: exp underflows (x - max down to about -400) */
            for (int i = 0; i < n; i++)
                z[i] = 100.0f * x[i];
            memcpy(y, z, 4 * (size_t)n);
            kernels_softmax(y, n, 0.0f);
            mx = z[0], sum = 0;
            for (int i = 1; i < n; i++)
                mx = fmax(mx, z[i]);
            for (int i = 0; i < n; i++)
                sum += exp(z[i] - mx);
            for (int i = 0; i < n; i++)
                assert_true(fabs(y[i] - exp(z[i] - mx) / sum) <= 1e-6 + 1e-5 * y[i]);
            /* swiglu */
            kernels_swiglu(y, x, u, n);
            for (int i = 0; i < n; i++) {
                double e = x[i] / (1.0 + exp(-x[i])) * u[i];
                assert_true(fabs(y[i] - e) <= 1e-5 * (fabs(e) + 1e-3));
            }
            /* add, scale: exact */
            kernels_add(y, x, w, n);
            for (int i = 0; i < n; i++)
                assert_true(y[i] == x[i] + w[i]);
            memcpy(z, x, 4 * (size_t)n);
            kernels_scale(z, 0.37f, n);
            for (int i = 0; i < n; i++)
                assert_true(z[i] == x[i] * 0.37f);
            /* axpy over the row types attention reads (values rounded to the type) */
            static const enum kernels_type at[] = {KERNELS_F32, KERNELS_F16, KERNELS_BF16};
            for (int ti = 0; ti < 3; ti++) {
                void *row = malloc(4 * (size_t)n);
                float *xr = malloc(4 * (size_t)n);
                assert_int_equal(kernels_quantize_row(at[ti], x, row, n), 0);
                kernels_dequantize_row(at[ti], row, xr, n);
                memcpy(z, w, 4 * (size_t)n);
                kernels_axpy(at[ti], -0.61f, row, z, n);
                for (int i = 0; i < n; i++) {
                    double e = (double)w[i] - 0.61 * xr[i];
                    assert_true(fabs(z[i] - e) <= 1e-6 * (fabs(w[i]) + fabs(xr[i])));
                }
                free(row), free(xr);
            }
            /* wsum: the softmax-weighted sum of 1, 5 or 33 rows (attention's P.V) */
            for (int ti = 0; ti < 3; ti++)
                check_wsum(at[ti], n, x);
        }
        free(x), free(w), free(u), free(y), free(z);
    }
    kernels_init(KERNELS_ISA_REF);
}

/* kernels_att_scores and kernels_att_wsum for one (type, d, n_q, n_rows): the scores
 * against float64 on the rows as stored; each score the same bits when its query runs
 * alone and when its row's block is cut short (the batch invariance of attention rests on
 * it); the weighted sums the same bits as one kernels_wsum per query. */
static void check_att(enum kernels_type t, int d, int n_q, int n_rows)
{
    size_t rb = kernels_row_bytes(t, d) + 8, ss = (size_t)n_rows + 3;
    unsigned char *rows = malloc(rb * (size_t)n_rows);
    float *q = malloc(sizeof(float) * (size_t)(n_q * d)), *xr = malloc(4 * (size_t)d);
    float *src = malloc(4 * (size_t)d), *s = malloc(sizeof(float) * ss * (size_t)n_q);
    float *s1 = malloc(sizeof(float) * ss * (size_t)n_q);
    float *y = malloc(sizeof(float) * (size_t)(n_q * d)), *y1 = malloc(4 * (size_t)d);
    double *e = calloc((size_t)(n_q * n_rows), sizeof(double));
    double *mag = calloc((size_t)(n_q * n_rows), sizeof(double));
    const float scale = 0.088f;
    fill(q, (int64_t)n_q * d, 1.0f);
    for (int j = 0; j < n_rows; j++) {
        fill(src, d, 1.0f + 0.01f * (float)j);
        assert_int_equal(kernels_quantize_row(t, src, rows + rb * (size_t)j, d), 0);
        kernels_dequantize_row(t, rows + rb * (size_t)j, xr, d);
        for (int i = 0; i < n_q; i++)
            for (int c = 0; c < d; c++) {
                double p = (double)q[i * d + c] * xr[c] * scale;
                e[i * n_rows + j] += p;
                mag[i * n_rows + j] += fabs(p);
            }
    }
    kernels_att_scores(t, rows, rb, n_rows, q, (size_t)d, n_q, scale, s, ss, d);
    for (int i = 0; i < n_q; i++)
        for (int j = 0; j < n_rows; j++)
            assert_true(fabs(s[i * ss + j] - e[i * n_rows + j]) <=
                        1e-6 * (mag[i * n_rows + j] + 1e-6));
    for (int i = 0; i < n_q; i++) { /* query i alone */
        kernels_att_scores(t, rows, rb, n_rows, q + (size_t)i * d, (size_t)d, 1, scale, s1,
                           ss, d);
        assert_memory_equal(s1, s + (size_t)i * ss, sizeof(float) * (size_t)n_rows);
    }
    if (n_rows > 1) { /* one row fewer: the last block shorter */
        kernels_att_scores(t, rows, rb, n_rows - 1, q, (size_t)d, n_q, scale, s1, ss, d);
        for (int i = 0; i < n_q; i++)
            assert_memory_equal(s1 + (size_t)i * ss, s + (size_t)i * ss,
                                sizeof(float) * (size_t)(n_rows - 1));
    }
    if (t == KERNELS_F32 || t == KERNELS_F16 || t == KERNELS_BF16) {
        for (int i = 0; i < n_q; i++) /* weights: the scores, softmaxed */
            kernels_softmax(s + (size_t)i * ss, n_rows, 0.0f);
        kernels_att_wsum(t, s, ss, n_q, rows, rb, n_rows, y, (size_t)d, d);
        for (int i = 0; i < n_q; i++) {
            kernels_wsum(t, s + (size_t)i * ss, rows, rb, n_rows, y1, d);
            assert_memory_equal(y1, y + (size_t)i * d, 4 * (size_t)d);
        }
    }
    free(rows), free(q), free(xr), free(src), free(s), free(s1), free(y), free(y1);
    free(e), free(mag);
}

/* softmax's cut (attention passes KERNELS_ATT_P_MIN), on ref and every SIMD ISA: weights
 * under it become 0, in the vector part and the tail; the others are bit for bit what no
 * cut gives; a NaN that the softmax leaves is not hidden as 0; and the bound times the
 * smallest F16 is a normal float, as its comment says. */
static void test_softmax_cut(void **state)
{
    (void)state;
    enum kernels_isa isas[4];
    int n_isa = simd_isas(isas);
    isas[n_isa++] = KERNELS_ISA_REF;
    enum { N = 19 }; /* two 8-lane vectors and a tail of 3 */
    float x[N];
    for (int i = 0; i < N; i++) /* x - max: 0, -40 (e^-40 = 4e-18, kept), -60 (9e-27, cut) */
        x[i] = i % 3 == 0 ? 0.0f : i % 3 == 1 ? -40.0f : -60.0f;
    for (int k = 0; k < n_isa; k++) {
        assert_int_equal(kernels_init(isas[k]), 0);
        float y0[N], y1[N];
        memcpy(y0, x, sizeof x), memcpy(y1, x, sizeof x);
        kernels_softmax(y0, N, 0.0f);
        kernels_softmax(y1, N, KERNELS_ATT_P_MIN);
        for (int i = 0; i < N; i++) {
            assert_true(y0[i] > 0.0f);
            if (y0[i] < KERNELS_ATT_P_MIN)
                assert_true(y1[i] == 0.0f && i % 3 == 2);
            else
                assert_true(y1[i] == y0[i] && i % 3 != 2);
        }
        float z0[N], z[N]; /* whether a NaN survives is the softmax's; the cut keeps it */
        memcpy(z0, x, sizeof x);
        z0[5] = NAN;
        memcpy(z, z0, sizeof z0);
        kernels_softmax(z0, N, 0.0f);
        kernels_softmax(z, N, KERNELS_ATT_P_MIN);
        for (int i = 0; i < N; i++)
            assert_true(isnan(z[i]) == isnan(z0[i]));
        kernels_softmax(z, 0, 1.0f); /* nothing to do */
    }
    kernels_init(KERNELS_ISA_REF);
    assert_true(KERNELS_ATT_P_MIN * 0x1p-24f >= FLT_MIN);
}

static void test_attention(void **state)
{
    (void)state;
    enum kernels_isa isas[3];
    int n_isa = simd_isas(isas);
    /* 64 and 128: the grouped AVX-512 path (4 or 8 vectors); 16, 48 and 80: other widths
     * of it; 100: the weighted sum's tail, scores through the per-pair dot; 160: wider
     * than the grouped scores take */
    static const int ds[] = {16, 48, 64, 80, 100, 128, 160};
    static const int nqs[] = {1, 6, 7, 13};
    static const int nrs[] = {1, 15, 16, 17, 45};
    static const enum kernels_type ts[] = {KERNELS_F32, KERNELS_F16, KERNELS_BF16,
                                           KERNELS_Q8_0};
    for (int k = -1; k < n_isa; k++) {
        kernels_init(k < 0 ? KERNELS_ISA_REF : isas[k]);
        for (int ti = 0; ti < 4; ti++)
            for (int di = 0; di < 7; di++) {
                if (ds[di] % kernels_block_size(ts[ti]))
                    continue;
                for (int qi = 0; qi < 4; qi++)
                    for (int ri = 0; ri < 5; ri++)
                        check_att(ts[ti], ds[di], nqs[qi], nrs[ri]);
            }
    }
    kernels_init(KERNELS_ISA_REF);
}

static void test_rope(void **state)
{
    (void)state;
    enum { HD = 16, NH = 2 };
    float x[NH * HD], y[NH * HD], ff[HD / 2];
    for (int i = 0; i < HD / 2; i++)
        ff[i] = 1.0f + 0.5f * i;
    for (int neox = 0; neox < 2; neox++)
        for (int use_ff = 0; use_ff < 2; use_ff++) {
            struct kernels_rope r = {.n_rot = 12, .neox = neox, .freq_base = 10000.0f,
                                     .freq_scale = 1.0f, .attn_factor = 1.0f,
                                     .freq_factors = use_ff ? ff : NULL};
            fill(x, NH * HD, 1.0f);
            memcpy(y, x, sizeof x);
            assert_int_equal(kernels_rope_apply(&r, y, NH, HD, 0), 0);
            for (int i = 0; i < NH * HD; i++) /* position 0 is the identity */
                assert_true(fabsf(y[i] - x[i]) <= 1e-7f);
            memcpy(y, x, sizeof x);
            int64_t pos = 37;
            assert_int_equal(kernels_rope_apply(&r, y, NH, HD, pos), 0);
            for (int h = 0; h < NH; h++) {
                const float *a = x + h * HD, *b = y + h * HD;
                for (int i = 0; i < 6; i++) {
                    double th = pos * pow(10000.0, -2.0 * i / 12) / (use_ff ? ff[i] : 1.0);
                    int i0 = neox ? i : 2 * i, i1 = neox ? i + 6 : 2 * i + 1;
                    double e0 = a[i0] * cos(th) - a[i1] * sin(th);
                    double e1 = a[i0] * sin(th) + a[i1] * cos(th);
                    assert_true(fabs(b[i0] - e0) < 1e-4 && fabs(b[i1] - e1) < 1e-4);
                }
                for (int i = 12; i < HD; i++) /* beyond n_rot: unchanged */
                    assert_true(b[i] == a[i]);
            }
        }
    /* YaRN: attn_factor scales, ext_factor 0 keeps plain rope */
    struct kernels_rope r = {.n_rot = 16, .freq_base = 10000.0f, .freq_scale = 0.25f,
                             .attn_factor = 2.0f, .ext_factor = 1.0f, .beta_fast = 32.0f,
                             .beta_slow = 1.0f, .n_ctx_orig = 4096};
    fill(x, HD, 1.0f);
    memcpy(y, x, sizeof(float) * HD);
    assert_int_equal(kernels_rope_apply(&r, y, 1, HD, 0), 0);
    float ms = 2.0f * (1.0f + 0.1f * logf(4.0f));
    for (int i = 0; i < HD; i++)
        assert_true(fabsf(y[i] - x[i] * ms) <= 1e-5f * fabsf(x[i] * ms) + 1e-7f);
    r.n_rot = 7;
    assert_int_equal(kernels_rope_apply(&r, y, 1, HD, 0), ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_names),
        cmocka_unit_test(test_fp16_conversion),
        cmocka_unit_test(test_hand_built_blocks),
        cmocka_unit_test(test_quantize_roundtrip),
        cmocka_unit_test(test_quantize_simd_identical),
        cmocka_unit_test(test_activation_rounding),
        cmocka_unit_test(test_activation_simd_identical),
        cmocka_unit_test(test_matmul_all_types),
        cmocka_unit_test(test_matmul_tile_remainders),
        cmocka_unit_test(test_matmul_f16_tiles),
        cmocka_unit_test(test_matmul_f16_bits),
        cmocka_unit_test(test_matmul_f16_gemm),
        cmocka_unit_test(test_matmul_q5k_tile),
        cmocka_unit_test(test_matmul_q6k_tile),
        cmocka_unit_test(test_matmul_amx),
        cmocka_unit_test(test_matmul_row_range_and_errors),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_vector_ops),
        cmocka_unit_test(test_softmax_cut),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_rope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
