/*
 * x86_avx2_f16: AVX2 register-tiled F16 x F16 product (tile_q of F16 on CPUs without
 * AVX-512; dispatch then uses it for every F16 product, a single token too). Installed
 * after kernels_avx2_fill; x86_avx512_f16.c replaces it where AVX-512 is present. Same
 * results as ref.c up to float summation order, and a result's arithmetic does not depend
 * on the call's row and token counts or on its place in a tile: lane j of a (row, token)
 * accumulator takes columns k = j mod 8 in ascending order with one FMA each, and every
 * sum is reduced by the same tree (sum8_at), so a token's output is the same bits
 * whatever else is in the batch.
 *
 * Why a tile: the one-row dot (x86_avx2.c, dot_float) widens every half it reads, the
 * activation's too, so a 4-token call spends 10 widenings (vcvtph2ps, two uops each) on
 * 8 FMAs. Here the call's tokens are widened once per chunk of A2_KC columns into an L1
 * buffer of floats, shared by all the call's rows, and the register tile of A2_ROWS rows
 * x A2_TOKS tokens (12 ymm accumulators, 3 weights, 1 activation: all 16 registers) does
 * 12 FMAs per 3 widenings. The partial sums of the call's rows wait in part[] between
 * chunks and are reduced at the end.
 *
 * One token (decode) is bound by memory instead: dec_rows walks whole rows, 4 at a time,
 * with the same FMA sequence (so the same bits), and asks for the next rows a tile ahead
 * by software prefetch, as x86_avx512_f16.c does.
 */
#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"

#if defined(__clang__)
#define A2_UNROLL _Pragma("clang loop unroll(full)")
#else
#define A2_UNROLL _Pragma("GCC unroll 16")
#endif

#define A2_ROWS 3       /* rows of a register tile */
#define A2_TOKS 4       /* tokens of a register tile and of a call (tile_toks) */
#define A2_CALL_ROWS 64 /* rows of a call (tile_rows): dispatch's row block, so each chunk
                         * of tokens is widened once per 64 rows */
#define A2_DEC_ROWS 4   /* rows walked side by side by a one-token call */
#define A2_KC 512       /* columns per chunk: xf is 8 KiB, part[] 8 KiB (L1: 32 KiB) */

/* 8 halves from p widened; only the first cnt (< 8) read when cnt < 8, the rest 0 */
static inline __m256 load8h(const kernels_fp16 *p, int cnt)
{
    if (cnt >= 8)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
    kernels_fp16 tmp[8] = {0};
    memcpy(tmp, p, (size_t)cnt * sizeof *p);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)tmp));
}

/* Widens columns [k0, k0 + kc) of n_x tokens into xf, zero-padded to a multiple of 8. */
static void widen_chunk(float xf[A2_TOKS][A2_KC], const void *x, size_t xs, int n_x,
                        int64_t k0, int kc)
{
    for (int t = 0; t < n_x; t++) {
        const kernels_fp16 *p = kernels_hrow(x, xs, t) + k0;
        for (int i = 0; i < kc; i += 8)
            _mm256_store_ps(xf[t] + i, load8h(p + i, kc - i));
    }
}

/* acc[r][t] += w_r[i..i+8) * xf[t][i..i+8); cnt < 8 only at the chunk's tail */
KERNELS_INLINE void tile_step(__m256 acc[A2_ROWS][A2_TOKS], const kernels_fp16 *w,
                              size_t ws, int i, const float xf[A2_TOKS][A2_KC], int cnt,
                              const int n_r, const int n_x)
{
    __m256 wv[A2_ROWS];
    if ((i & 31) == 0) {
A2_UNROLL
        for (int r = 0; r < n_r; r++) /* the next register tile's rows */
            __builtin_prefetch(kernels_hrow(w, ws, r + n_r) + i, 0, 3);
    }
A2_UNROLL
    for (int r = 0; r < n_r; r++)
        wv[r] = load8h(kernels_hrow(w, ws, r) + i, cnt);
A2_UNROLL
    for (int t = 0; t < n_x; t++) {
        __m256 xv = _mm256_load_ps(xf[t] + i);
A2_UNROLL
        for (int r = 0; r < n_r; r++)
            acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
}

/* part[r][t] (+)= the chunk's products for one register tile of n_r rows from w (at the
 * chunk's first column); acc lives in ymm between the load and the store. */
KERNELS_INLINE void tile_chunk(__m256 *part, const kernels_fp16 *w, size_t ws, int kc,
                               const float xf[A2_TOKS][A2_KC], int first, const int n_r,
                               const int n_x)
{
    __m256 acc[A2_ROWS][A2_TOKS];
A2_UNROLL
    for (int r = 0; r < n_r; r++)
A2_UNROLL
        for (int t = 0; t < n_x; t++)
            acc[r][t] = first ? _mm256_setzero_ps() : part[r * A2_TOKS + t];
    int i = 0;
    for (; i + 8 <= kc; i += 8)
        tile_step(acc, w, ws, i, xf, 8, n_r, n_x);
    if (i < kc)
        tile_step(acc, w, ws, i, xf, kc - i, n_r, n_x);
A2_UNROLL
    for (int r = 0; r < n_r; r++)
A2_UNROLL
        for (int t = 0; t < n_x; t++)
            part[r * A2_TOKS + t] = acc[r][t];
}

/* y[j] = the sum of the 8 lanes of v[j * vs] for j < n (n <= 8), each as
 * ((l0 + l2) + (l1 + l3)) + ((l4 + l6) + (l5 + l7)) whatever its j: a transposing tree,
 * 7 shuffle-pair-and-add steps for 8 sums */
static void sum8_at(const __m256 *v, size_t vs, int n, float *y)
{
    __m256 a[8], b[4], c[2];
    for (int j = 0; j < 8; j++)
        a[j] = j < n ? v[(size_t)j * vs] : _mm256_setzero_ps();
    /* each 128-bit lane: [u 0+2, w 0+2, u 1+3, w 1+3] of that lane of u = a[2j], w = a[2j+1] */
    for (int j = 0; j < 4; j++)
        b[j] = _mm256_add_ps(_mm256_unpacklo_ps(a[2 * j], a[2 * j + 1]),
                             _mm256_unpackhi_ps(a[2 * j], a[2 * j + 1]));
    /* each 128-bit lane: that lane's sums of a[4j], a[4j+1], a[4j+2], a[4j+3] */
    for (int j = 0; j < 2; j++) {
        __m256d u = _mm256_castps_pd(b[2 * j]), w = _mm256_castps_pd(b[2 * j + 1]);
        c[j] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(u, w)),
                             _mm256_castpd_ps(_mm256_unpackhi_pd(u, w)));
    }
    /* low 128 bits + high 128 bits: lane j holds a[j]'s full sum */
    __m256 e = _mm256_add_ps(_mm256_permute2f128_ps(c[0], c[1], 0x20),
                             _mm256_permute2f128_ps(c[0], c[1], 0x31));
    if (n == 8) {
        _mm256_storeu_ps(y, e);
    } else {
        float tmp[8];
        _mm256_storeu_ps(tmp, e);
        memcpy(y, tmp, (size_t)n * sizeof *y);
    }
}

/* One token (decode): n_r rows walked whole, side by side, into part[r * A2_TOKS] with
 * the FMA sequence of the chunked path (8-column steps from 0, the short tail last), so
 * the bits are the same. Each step asks for the next tile's rows at the same column. */
KERNELS_INLINE void dec_tile(__m256 *part, const kernels_fp16 *w, size_t ws,
                             const kernels_fp16 *x, int64_t n, const int n_r)
{
    __m256 acc[A2_DEC_ROWS];
A2_UNROLL
    for (int r = 0; r < n_r; r++)
        acc[r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if ((i & 31) == 0) {
A2_UNROLL
            for (int r = 0; r < n_r; r++)
                __builtin_prefetch(kernels_hrow(w, ws, r + n_r) + i, 0, 3);
        }
        __m256 xv = load8h(x + i, 8);
A2_UNROLL
        for (int r = 0; r < n_r; r++)
            acc[r] = _mm256_fmadd_ps(load8h(kernels_hrow(w, ws, r) + i, 8), xv, acc[r]);
    }
    if (i < n) {
        __m256 xv = load8h(x + i, (int)(n - i));
A2_UNROLL
        for (int r = 0; r < n_r; r++)
            acc[r] = _mm256_fmadd_ps(load8h(kernels_hrow(w, ws, r) + i, (int)(n - i)), xv,
                                     acc[r]);
    }
A2_UNROLL
    for (int r = 0; r < n_r; r++)
        part[r * A2_TOKS] = acc[r];
}

static void dec_rows(__m256 *part, const void *w, size_t ws, int n_r, const void *x,
                     int64_t n)
{
    const kernels_fp16 *xh = kernels_hrow(x, 0, 0);
    for (int r0 = 0; r0 < n_r; r0 += A2_DEC_ROWS) {
        const kernels_fp16 *wr = kernels_hrow(w, ws, r0);
        __m256 *pr = part + r0 * A2_TOKS;
        switch (n_r - r0) {
        case 1: dec_tile(pr, wr, ws, xh, n, 1); break;
        case 2: dec_tile(pr, wr, ws, xh, n, 2); break;
        case 3: dec_tile(pr, wr, ws, xh, n, 3); break;
        default: dec_tile(pr, wr, ws, xh, n, A2_DEC_ROWS); break;
        }
    }
}
_Static_assert(A2_DEC_ROWS == 4, "dec_rows switches over 1..4 rows");

/* One call: n_r rows x n_x tokens (n_x constant), chunk by chunk. */
KERNELS_INLINE void call_body(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                              int64_t n, float *y, size_t ys, const int n_x)
{
    _Alignas(32) float xf[A2_TOKS][A2_KC];
    __m256 part[A2_CALL_ROWS * A2_TOKS];
    if (n_x == 1)
        dec_rows(part, w, ws, n_r, x, n);
    for (int64_t k0 = 0; n_x > 1 && k0 < n; k0 += A2_KC) {
        int kc = n - k0 < A2_KC ? (int)(n - k0) : A2_KC;
        widen_chunk(xf, x, xs, n_x, k0, kc);
        for (int r0 = 0; r0 < n_r; r0 += A2_ROWS) {
            const kernels_fp16 *wr = kernels_hrow(w, ws, r0) + k0;
            __m256 *pr = part + r0 * A2_TOKS;
            switch (n_r - r0) {
            case 1: tile_chunk(pr, wr, ws, kc, xf, k0 == 0, 1, n_x); break;
            case 2: tile_chunk(pr, wr, ws, kc, xf, k0 == 0, 2, n_x); break;
            default: tile_chunk(pr, wr, ws, kc, xf, k0 == 0, 3, n_x); break;
            }
        }
    }
    for (int t = 0; t < n_x; t++)
        for (int r0 = 0; r0 < n_r; r0 += 8)
            sum8_at(part + r0 * A2_TOKS + t, A2_TOKS, n_r - r0 < 8 ? n_r - r0 : 8,
                    y + (size_t)t * ys + (size_t)r0);
}
_Static_assert(A2_ROWS == 3, "call_body switches over 1..3 rows");

/* dispatch keeps 1 <= n_r <= A2_CALL_ROWS and 1 <= n_x <= A2_TOKS (tile_rows,
 * tile_toks) and n >= 1; each token count has its own copy of call_body */
static void avx2_tile_f16(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                          int n_x, int64_t n, float *y, size_t ys)
{
    KERNELS_NX_SWITCH(n_x, call_body, w, ws, n_r, x, xs, n, y, ys);
}
_Static_assert(A2_TOKS == KERNELS_NX, "avx2_tile_f16 switches over 1..KERNELS_NX tokens");

void kernels_avx2_f16_fill(struct kernels_table *t)
{
    t->tile_q[KERNELS_F16] = avx2_tile_f16;
    t->tile_rows[KERNELS_F16] = A2_CALL_ROWS;
    t->tile_toks[KERNELS_F16] = A2_TOKS;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int kernels_x86_avx2_f16_unused; /* ISO C forbids an empty translation unit */
#endif
