/*
 * x86_avx512_f16: AVX-512 register-tiled F16 x F16 product (tile_q of F16; dispatch uses
 * it for every F16 product, a single token too). Installed after kernels_avx512_fill;
 * uses F, BW and VL (the masked 16-bit tail load), which cpu_has_avx512 checks. Same
 * results as ref.c up to float summation order. A result's arithmetic does not depend on
 * the call's row and token counts or on its place in a tile (chunks follow the column
 * index, every accumulator gets the same FMA sequence, every row the same reduction
 * tree), so a token's output is the same bits whatever else is in the batch.
 *
 * Without AVX512-FP16 every half must be widened (vcvtph2ps: two uops on the two FMA
 * ports, measured as one FMA slot each), so widening, not the FMAs, sets the speed.
 * A call gets up to F16_CALL_ROWS rows and F16_TOKS tokens. Per chunk of F16_KC columns
 * it widens the tokens once into an L1 buffer of floats, then runs register tiles of
 * F16_ROWS rows x F16_TOKS tokens (24 zmm accumulators): a 16-column step widens 3
 * weight vectors and does 24 FMAs, 1.25 FMA-port slots per FMA. (Widening both operands
 * in the tile, 4 rows x 6 tokens: 10 widenings per 24 FMAs, 1.83 slots; L1-resident
 * 4 x 6 tile 85 GFLOP/s, this kernel 105-117, pure FMA peak 168 on this VM.) The partial
 * sums of all the call's rows wait in part[] between chunks and are reduced at the end,
 * 16 rows at a time.
 *
 * One token (decode) is bound by memory instead: dec_rows walks whole rows, 4 at a time,
 * with the same FMA sequence (so the same bits), and asks for the next tile's rows a
 * tile ahead by software prefetch; the register tile prefetches its next rows the same
 * way. Measured in docs/PERFORMANCE.md.
 */
#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")
#endif

#include <immintrin.h>

#include "kernels/impl.h"

/* full unrolling of the tile loops keeps acc[][] in registers (KERNELS_NX_SWITCH) */
#if defined(__clang__)
#define F16_UNROLL _Pragma("clang loop unroll(full)")
#else
#define F16_UNROLL _Pragma("GCC unroll 16")
#endif

#define F16_ROWS 3        /* rows of a register tile: 24 accumulators + 3 weights + 1 */
#define F16_TOKS 8        /* tokens of a register tile and of a call (tile_toks) */
#define F16_CALL_ROWS 64  /* rows of a call (tile_rows): dispatch's row block, so each
                           * chunk of tokens is widened once per block; the widening is
                           * then 8 of the 64 + 8 widenings per 16-column step */
#define F16_DEC_ROWS 4    /* rows walked side by side by a one-token call (dec_tile) */
#define F16_KC 512        /* columns per chunk: the float buffer is 16 KiB, part[] 32 KiB;
                           * 256 and 1024 measured slower */

/* Widens columns [k0, k0 + kc) of n_x tokens into xf, zero-padded to a multiple of 16. */
static void widen_chunk(float xf[F16_TOKS][F16_KC], const void *x, size_t xs, int n_x,
                        int64_t k0, int kc)
{
    for (int t = 0; t < n_x; t++) {
        const kernels_fp16 *p = kernels_hrow(x, xs, t) + k0;
        for (int i = 0; i < kc; i += 16) {
            __mmask16 m = kc - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (kc - i)) - 1);
            _mm512_store_ps(xf[t] + i, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + i)));
        }
    }
}

/* acc[r][t] += w_r[i..i+16) * xf[t][i..i+16); when tail, only the lanes in m are read
 * (the rest widen to 0); full steps use plain loads */
KERNELS_INLINE void tile_step(__m512 acc[F16_ROWS][F16_TOKS], const kernels_fp16 *w,
                              size_t ws, int i, const float xf[F16_TOKS][F16_KC], int tail,
                              __mmask16 m, const int n_r, const int n_x)
{
    __m512 wv[F16_ROWS];
    if ((i & 31) == 0) {
F16_UNROLL
        for (int r = 0; r < n_r; r++) /* the next register tile's rows (see dec_tile) */
            __builtin_prefetch(kernels_hrow(w, ws, r + n_r) + i, 0, 3);
    }
F16_UNROLL
    for (int r = 0; r < n_r; r++) {
        const kernels_fp16 *p = kernels_hrow(w, ws, r) + i;
        wv[r] = _mm512_cvtph_ps(tail ? _mm256_maskz_loadu_epi16(m, p)
                                     : _mm256_loadu_si256((const __m256i *)p));
    }
F16_UNROLL
    for (int t = 0; t < n_x; t++) {
        __m512 xv = _mm512_load_ps(xf[t] + i);
        __asm__("" : "+v"(xv)); /* one load per token, not one per FMA (gcc folds) */
F16_UNROLL
        for (int r = 0; r < n_r; r++)
            acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
}

/* part[r][t] (+)= the chunk's products for one register tile of n_r rows from w (at the
 * chunk's first column); acc lives in zmm between the load and the store. */
KERNELS_INLINE void tile_chunk(__m512 *part, const kernels_fp16 *w, size_t ws, int kc,
                               const float xf[F16_TOKS][F16_KC], int first, const int n_r,
                               const int n_x)
{
    __m512 acc[F16_ROWS][F16_TOKS];
F16_UNROLL
    for (int r = 0; r < n_r; r++)
F16_UNROLL
        for (int t = 0; t < n_x; t++)
            acc[r][t] = first ? _mm512_setzero_ps() : part[r * F16_TOKS + t];
    int i = 0;
    for (; i + 16 <= kc; i += 16)
        tile_step(acc, w, ws, i, xf, 0, 0, n_r, n_x);
    if (i < kc)
        tile_step(acc, w, ws, i, xf, 1, (__mmask16)((1u << (kc - i)) - 1), n_r, n_x);
F16_UNROLL
    for (int r = 0; r < n_r; r++)
F16_UNROLL
        for (int t = 0; t < n_x; t++)
            part[r * F16_TOKS + t] = acc[r][t];
}

/* y[j] = the sum of the 16 lanes of v[j * F16_TOKS] for j < n (n <= 16): a transposing
 * tree, 15 shuffle-pair-and-add steps for 16 sums, where a reduce per sum costs about 8 */
static void sum16(const __m512 *v, int n, float *y)
{
    __m512 a[16], b[8], c[4];
    for (int j = 0; j < 16; j++)
        a[j] = j < n ? v[j * F16_TOKS] : _mm512_setzero_ps();
    /* each 128-bit lane: [u 0+2, w 0+2, u 1+3, w 1+3] of that lane of u = a[2j], w = a[2j+1] */
    for (int j = 0; j < 8; j++)
        b[j] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * j], a[2 * j + 1]),
                             _mm512_unpackhi_ps(a[2 * j], a[2 * j + 1]));
    /* each 128-bit lane: that lane's sums of a[4j], a[4j+1], a[4j+2], a[4j+3] */
    for (int j = 0; j < 4; j++) {
        __m512d u = _mm512_castps_pd(b[2 * j]), w = _mm512_castps_pd(b[2 * j + 1]);
        c[j] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(u, w)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(u, w)));
    }
    /* 128-bit lanes [c0 0+1, c0 2+3, c1 0+1, c1 2+3], then the same again: lane q holds
     * a[4q..4q+3]'s full sums */
    __m512 d0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88),
                              _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
    __m512 d1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x88),
                              _mm512_shuffle_f32x4(c[2], c[3], 0xDD));
    __m512 e = _mm512_add_ps(_mm512_shuffle_f32x4(d0, d1, 0x88),
                             _mm512_shuffle_f32x4(d0, d1, 0xDD));
    _mm512_mask_storeu_ps(y, (__mmask16)((1u << n) - 1), e);
}

/* One token (decode): n_r rows walked whole, side by side, into part[r * F16_TOKS] with
 * the FMA sequence of the chunked path (16-column steps from 0, the masked tail last), so
 * the bits are the same. A decode call is bound by memory, not FMAs: whole rows are long
 * streams for the hardware prefetcher, and each step asks for the next tile's rows at the
 * same column, a tile ahead (the prefetcher stops at 4 KiB pages). */
KERNELS_INLINE void dec_tile(__m512 *part, const kernels_fp16 *w, size_t ws,
                             const kernels_fp16 *x, int64_t n, const int n_r)
{
    __m512 acc[F16_DEC_ROWS];
F16_UNROLL
    for (int r = 0; r < n_r; r++)
        acc[r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if ((i & 31) == 0) {
F16_UNROLL
            for (int r = 0; r < n_r; r++)
                __builtin_prefetch(kernels_hrow(w, ws, r + n_r) + i, 0, 3);
        }
        __m512 xv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i)));
F16_UNROLL
        for (int r = 0; r < n_r; r++) {
            __m256i h = _mm256_loadu_si256((const __m256i *)(kernels_hrow(w, ws, r) + i));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtph_ps(h), xv, acc[r]);
        }
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
F16_UNROLL
        for (int r = 0; r < n_r; r++) {
            __m256i h = _mm256_maskz_loadu_epi16(m, kernels_hrow(w, ws, r) + i);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtph_ps(h), xv, acc[r]);
        }
    }
F16_UNROLL
    for (int r = 0; r < n_r; r++)
        part[r * F16_TOKS] = acc[r];
}

static void dec_rows(__m512 *part, const void *w, size_t ws, int n_r, const void *x,
                     int64_t n)
{
    const kernels_fp16 *xh = kernels_hrow(x, 0, 0);
    for (int r0 = 0; r0 < n_r; r0 += F16_DEC_ROWS) {
        const kernels_fp16 *wr = kernels_hrow(w, ws, r0);
        __m512 *pr = part + r0 * F16_TOKS;
        switch (n_r - r0) {
        case 1: dec_tile(pr, wr, ws, xh, n, 1); break;
        case 2: dec_tile(pr, wr, ws, xh, n, 2); break;
        case 3: dec_tile(pr, wr, ws, xh, n, 3); break;
        default: dec_tile(pr, wr, ws, xh, n, F16_DEC_ROWS); break;
        }
    }
}
_Static_assert(F16_DEC_ROWS == 4, "dec_rows switches over 1..4 rows");

/* One call: n_r rows x n_x tokens (n_x constant), chunk by chunk. */
KERNELS_INLINE void call_body(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                              int64_t n, float *y, size_t ys, const int n_x)
{
    _Alignas(64) float xf[F16_TOKS][F16_KC];
    __m512 part[F16_CALL_ROWS * F16_TOKS];
    if (n_x == 1)
        dec_rows(part, w, ws, n_r, x, n);
    for (int64_t k0 = 0; n_x > 1 && k0 < n; k0 += F16_KC) {
        int kc = n - k0 < F16_KC ? (int)(n - k0) : F16_KC;
        widen_chunk(xf, x, xs, n_x, k0, kc);
        for (int r0 = 0; r0 < n_r; r0 += F16_ROWS) {
            const kernels_fp16 *wr = kernels_hrow(w, ws, r0) + k0;
            __m512 *pr = part + r0 * F16_TOKS;
            switch (n_r - r0) {
            case 1: tile_chunk(pr, wr, ws, kc, xf, k0 == 0, 1, n_x); break;
            case 2: tile_chunk(pr, wr, ws, kc, xf, k0 == 0, 2, n_x); break;
            default: tile_chunk(pr, wr, ws, kc, xf, k0 == 0, 3, n_x); break;
            }
        }
    }
    for (int t = 0; t < n_x; t++)
        for (int r0 = 0; r0 < n_r; r0 += 16)
            sum16(part + r0 * F16_TOKS + t, n_r - r0 < 16 ? n_r - r0 : 16,
                  y + (size_t)t * ys + (size_t)r0);
}

/* dispatch keeps 1 <= n_r <= F16_CALL_ROWS and 1 <= n_x <= F16_TOKS (tile_rows,
 * tile_toks) and n >= 1; each token count has its own copy of call_body */
static void avx512_tile_f16(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                            int n_x, int64_t n, float *y, size_t ys)
{
    KERNELS_NX8_SWITCH(n_x, call_body, w, ws, n_r, x, xs, n, y, ys);
}
_Static_assert(F16_TOKS == 8, "avx512_tile_f16 switches over 1..8 tokens");

/*
 * Attention's weighted sum of V rows (kernels_wsum) for F16 and F32 rows: 128 columns
 * (a whole head) in 8 zmm accumulators, so each row is read and widened in one pass
 * (AVX2 holds 64 and walks the rows twice for a 128-wide head). Every element gets
 * acc = fma(a_j, x_j, acc) from 0 in row order, as in the AVX2 kernel, so the bits are
 * the same; columns past the last 128 and BF16 rows go to that kernel.
 */
static void (*g_wsum_next)(enum kernels_type t, const float *a, const void *x, size_t stride,
                           int n_rows, float *y, int64_t n);

static inline __m512 wsum_load16(enum kernels_type t, const void *row, int64_t c)
{
    if (t == KERNELS_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)
                                                  ((const kernels_fp16 *)row + c)));
    return _mm512_loadu_ps((const float *)row + c);
}

static void avx512_wsum(enum kernels_type t, const float *a, const void *x, size_t stride,
                        int n_rows, float *y, int64_t n)
{
    int64_t c = 0;
    if (t == KERNELS_F16 || t == KERNELS_F32) {
        for (; c + 128 <= n; c += 128) {
            __m512 acc[8];
            for (int k = 0; k < 8; k++)
                acc[k] = _mm512_setzero_ps();
            for (int j = 0; j < n_rows; j++) {
                const void *row = (const char *)x + (size_t)j * stride;
                __m512 av = _mm512_set1_ps(a[j]);
                for (int k = 0; k < 8; k++)
                    acc[k] = _mm512_fmadd_ps(av, wsum_load16(t, row, c + 16 * k), acc[k]);
            }
            for (int k = 0; k < 8; k++)
                _mm512_storeu_ps(y + c + 16 * k, acc[k]);
        }
    }
    if (c < n) {
        size_t eb = t == KERNELS_F32 ? 4 : 2; /* F16 and BF16: 2 bytes */
        g_wsum_next(t, a, (const char *)x + (size_t)c * eb, stride, n_rows, y + c, n - c);
    }
}

void kernels_avx512_f16_fill(struct kernels_table *t)
{
    g_wsum_next = t->wsum;
    t->wsum = avx512_wsum;
    t->tile_q[KERNELS_F16] = avx512_tile_f16;
    t->tile_rows[KERNELS_F16] = F16_CALL_ROWS;
    t->tile_toks[KERNELS_F16] = F16_TOKS;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int kernels_x86_avx512_f16_unused; /* ISO C forbids an empty translation unit */
#endif
