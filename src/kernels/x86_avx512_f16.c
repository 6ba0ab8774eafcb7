/*
 * x86_avx512_f16: AVX-512 register-tiled F16 x F16 product (tile_q of F16; dispatch uses
 * it for every F16 product of 2 to 127 tokens and for what the GEMM leaves over; the
 * whole 16 x 16 tiles of calls with 128 tokens or more go to the packed GEMM below,
 * gemm_q, and single tokens to gemv_q, both with the same bits). Installed after
 * kernels_avx512_fill;
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
 * One token (decode) is bound by memory instead. A one-token product goes to gemv_q
 * (avx512_gemv_f16), which cuts the thread's row range into four parts and walks one
 * row of each at a time: four sequential streams far apart, which the hardware
 * prefetcher follows. Within a tile call (the rows and tokens a GEMM leaves over)
 * dec_rows walks whole rows, 4 side by side, asking for the next tile's rows by
 * software prefetch; the register tile prefetches its next rows the same way. All
 * three give a row the same FMA sequence and reduction, so the same bits. Measured in
 * docs/PERFORMANCE.md.
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

/* y[j] = the sum of the 16 lanes of v[j * vs] for j < n (n <= 16): a transposing tree,
 * 15 shuffle-pair-and-add steps for 16 sums, where a reduce per sum costs about 8; each
 * sum gets the same additions in the same order, whatever its j */
KERNELS_INLINE void sum16_at(const __m512 *v, size_t vs, int n, float *y)
{
    __m512 a[16], b[8], c[4];
    for (int j = 0; j < 16; j++)
        a[j] = j < n ? v[(size_t)j * vs] : _mm512_setzero_ps();
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

static void sum16(const __m512 *v, int n, float *y) { sum16_at(v, F16_TOKS, n, y); }

/* One token: n_r rows w[r] walked whole, side by side, into out[r * os] with the FMA
 * sequence of the chunked path (16-column steps from 0, the masked tail last), so the
 * bits are the same. With pf (dec_tile), each step also asks for pf[r] at the same
 * column; without (gemv_q), none. */
KERNELS_INLINE void rows_walk(__m512 *out, size_t os, const kernels_fp16 *const *w,
                              const kernels_fp16 *const *pf, const kernels_fp16 *x,
                              int64_t n, const int n_r)
{
    __m512 acc[F16_DEC_ROWS];
F16_UNROLL
    for (int r = 0; r < n_r; r++)
        acc[r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if (pf && (i & 31) == 0) {
F16_UNROLL
            for (int r = 0; r < n_r; r++)
                __builtin_prefetch(pf[r] + i, 0, 3);
        }
        __m512 xv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i)));
F16_UNROLL
        for (int r = 0; r < n_r; r++) {
            __m256i h = _mm256_loadu_si256((const __m256i *)(w[r] + i));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtph_ps(h), xv, acc[r]);
        }
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
F16_UNROLL
        for (int r = 0; r < n_r; r++) {
            __m256i h = _mm256_maskz_loadu_epi16(m, w[r] + i);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtph_ps(h), xv, acc[r]);
        }
    }
F16_UNROLL
    for (int r = 0; r < n_r; r++)
        out[(size_t)r * os] = acc[r];
}

/* One token within a tile call: n_r consecutive rows into part[r * F16_TOKS]. A decode
 * call is bound by memory, not FMAs: each step asks for the next tile's rows at the same
 * column, a tile ahead (the prefetcher stops at 4 KiB pages). */
KERNELS_INLINE void dec_tile(__m512 *part, const kernels_fp16 *w, size_t ws,
                             const kernels_fp16 *x, int64_t n, const int n_r)
{
    const kernels_fp16 *rows[F16_DEC_ROWS], *next[F16_DEC_ROWS];
F16_UNROLL
    for (int r = 0; r < n_r; r++) {
        rows[r] = kernels_hrow(w, ws, r);
        next[r] = kernels_hrow(w, ws, r + n_r);
    }
    rows_walk(part, F16_TOKS, rows, next, x, n, n_r);
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

/*
 * One token over a thread's whole row range (gemv_q). The range is cut into
 * F16_GEMV_STREAMS contiguous parts walked side by side, one row of each at a time, so
 * memory sees that many sequential streams a part apart (96 KiB to 58 MB in the 1.5B
 * shape): the hardware prefetcher follows those at close to a plain read's speed, where
 * rows side by side (3 KiB apart, dec_tile) confuse it and need software prefetch
 * (docs/PERFORMANCE.md). Each row gets rows_walk's FMA sequence and sum16's tree, as
 * in dec_tile, so the bits are the tile's.
 */
#define F16_GEMV_STREAMS 4 /* at most F16_DEC_ROWS: rows_walk's accumulators */

static void avx512_gemv_f16(const struct kernels_tensor_view *W, const void *act, float *y,
                            int64_t rb, int64_t re)
{
    const kernels_fp16 *x = kernels_hrow(act, 0, 0);
    /* each part a whole number of 16-row groups, reduced 16 rows at a time */
    int64_t per = (re - rb + F16_GEMV_STREAMS - 1) / F16_GEMV_STREAMS;
    per = (per + 15) / 16 * 16;
    __m512 part[F16_GEMV_STREAMS * 16];
    for (int64_t j0 = 0; j0 < per; j0 += 16) {
        int jn = 0;
        for (int j = 0; j < 16; j++) {
            const kernels_fp16 *wr[F16_GEMV_STREAMS];
            int na = 0; /* the parts with a row j0 + j: a prefix, later parts end first */
            for (; na < F16_GEMV_STREAMS && rb + na * per + j0 + j < re; na++)
                wr[na] = kernels_hrow(W->data, W->row_bytes, rb + na * per + j0 + j);
            if (na == 0)
                break;
            __m512 *pj = part + j;
            switch (na) {
            case 1: rows_walk(pj, 16, wr, NULL, x, W->cols, 1); break;
            case 2: rows_walk(pj, 16, wr, NULL, x, W->cols, 2); break;
            case 3: rows_walk(pj, 16, wr, NULL, x, W->cols, 3); break;
            default: rows_walk(pj, 16, wr, NULL, x, W->cols, F16_GEMV_STREAMS); break;
            }
            jn = j + 1;
        }
        for (int q = 0; q < F16_GEMV_STREAMS; q++) {
            int64_t r0 = rb + q * per + j0;
            int64_t cnt = re - r0 < jn ? re - r0 : jn;
            if (cnt > 0)
                sum16_at(part + q * 16, 1, (int)cnt, y + r0);
        }
    }
}
_Static_assert(F16_GEMV_STREAMS == 4, "avx512_gemv_f16 switches over 1..4 parts");

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
 * Large-batch F16 product (gemm_q, from GEMM_MIN_TOK tokens): the tile above spends a
 * widening and a load per 8 FMAs and keeps 16 lanes per sum; here both operands are
 * widened once per call into packed float panels, and the register tile is an outer
 * product: 48 rows (3 zmm of a packed weight column) by 8 tokens, 24 FMAs for 3 vector
 * loads and 8 broadcasts straight from memory (load pipes, no FP pipe), nothing widened
 * in the loop. (A {1to16} memory operand on each of the 24 FMAs instead measured 18 %
 * slower on Zen 5: 24 loads per step.)
 *
 * Same bits as the tile: there, lane j of a row's sum accumulates columns k = j mod 16
 * in ascending order, and sum16 adds the 16 lanes in a fixed tree. Here the columns are
 * packed in "phase" order (phase p: columns p, p + 16, p + 32, ...), each phase runs
 * from zero with the same FMAs in the same order, and the 16 phase sums are added in
 * sum16's tree: ((P0+P2) + (P1+P3)) + ((P4+P6) + (P5+P7)), the same for 8..15, then the
 * two halves. A token's result therefore does not depend on whether its batch was large
 * enough for this path (test_kernels, check_bits).
 *
 * Loop order: a block of tokens (at most GEMM_X_BYTES of packed floats) is packed per
 * thread; then each 48-row panel is packed and meets every 8-token group of the block.
 * A panel of 1536 columns is 288 KiB (L2), so the weights come from memory once per
 * token block; 16 x 16 transposes do both packings.
 */
#define GEMM_TOKS 8               /* tokens per register tile */
#define GEMM_NRV 3                /* 16-row vectors per panel: 8 x 3 = 24 accumulators */
#define GEMM_X_BYTES (9u << 19)   /* packed activations per token block, 4.5 MiB: 128 tokens of
                                   * 8960 columns, a 512-token batch in 4 whole blocks (4 MiB:
                                   * 4 x 112 + 64); 3 and 8 MiB measured slower */
#define GEMM_MIN_TOK 128          /* below this the packing costs about what it saves */
#define GEMM_PF 256               /* halves ahead that packing prefetches (512 bytes) */
#define GEMM_PF_STEP 8            /* phase sums prefetched per step before the reduction */
#define GEMM_KS 128               /* steps per slice of a phase: 24 KiB of the panel, L1 */

/* r[j] lane i <- r[i] lane j */
KERNELS_INLINE void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) { /* per 128-bit block: [a0 b0 a1 b1], [a2 b2 a3 b3] */
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* r[4i + j], block q: element 4q + j of rows 4i..4i+3 */
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
        __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for (int j = 0; j < 4; j++) { /* gather block q of r[j], r[4+j], r[8+j], r[12+j] */
        __m512 u0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        __m512 u1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        __m512 v0 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        __m512 v1 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
        t[j] = _mm512_shuffle_f32x4(u0, v0, 0x88);
        t[8 + j] = _mm512_shuffle_f32x4(u0, v0, 0xDD);
        t[4 + j] = _mm512_shuffle_f32x4(u1, v1, 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(u1, v1, 0xDD);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

/* Column k = 16 s + p is step s of phase p; off[p] = the steps of phases before p
 * (phase p has (n - p + 15) / 16), off[16] = n. */
static void phase_offsets(int64_t n, int64_t off[17])
{
    off[0] = 0;
    for (int p = 0; p < 16; p++)
        off[p + 1] = off[p] + (n > p ? (n - p + 15) / 16 : 0);
}

/* 16 rows (or tokens) of halves at h (byte stride hs), columns [16 b, 16 b + 16) cut at
 * n, widened and transposed: r[p] lane i = row i, column 16 b + p */
static inline int load_block(__m512 r[16], const void *h, size_t hs, int64_t b, int64_t n)
{
    int64_t k = 16 * b;
    int rem = n - k >= 16 ? 16 : (int)(n - k);
    __mmask16 m = rem == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
    for (int i = 0; i < 16; i++) {
        /* weights come from memory, 16 rows side by side: too many streams for the
         * hardware prefetcher (without this, a third of the 8960-column product) */
        __builtin_prefetch(kernels_hrow(h, hs, i) + k + GEMM_PF, 0, 3);
        r[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, kernels_hrow(h, hs, i) + k));
    }
    transpose16(r);
    return rem;
}

/* wp[(off[p] + s) * 16 nrv + r] = w_r[16 s + p] for rows r < 16 nrv */
static void pack_rows(const void *w, size_t ws, int nrv, int64_t n, const int64_t *off,
                      float *wp)
{
    for (int v = 0; v < nrv; v++)
        for (int64_t b = 0; 16 * b < n; b++) {
            __m512 r[16];
            int rem = load_block(r, kernels_hrow(w, ws, 16 * v), ws, b, n);
            for (int p = 0; p < rem; p++)
                _mm512_store_ps(wp + (size_t)(off[p] + b) * (size_t)(16 * nrv) +
                                    (size_t)(16 * v), r[p]);
        }
}

/* 16 tokens as two groups of GEMM_TOKS: xp[g][(off[p] + s) * 8 + t] = x_{8g+t}[16 s + p],
 * each group n * 8 floats */
static void pack_toks(const void *x, size_t xs, int64_t n, const int64_t *off, float *xp)
{
    float *g1 = xp + (size_t)n * GEMM_TOKS;
    for (int64_t b = 0; 16 * b < n; b++) {
        __m512 r[16];
        int rem = load_block(r, x, xs, b, n);
        for (int p = 0; p < rem; p++) {
            size_t at = (size_t)(off[p] + b) * GEMM_TOKS;
            _mm256_store_ps(xp + at, _mm512_castps512_ps256(r[p]));
            _mm256_store_ps(g1 + at, _mm256_castpd_ps(_mm512_extractf64x4_pd(
                                         _mm512_castps_pd(r[p]), 1)));
        }
    }
}
_Static_assert(GEMM_TOKS == 8, "pack_toks splits 16 tokens into two groups");

/* acc[t][v] (from zero when first, else from acc) over steps of one phase; acc is in
 * memory (part) and lives in registers meanwhile. With pf, the first n_pf vectors there
 * are prefetched meanwhile, GEMM_PF_STEP per step. */
KERNELS_INLINE void gemm_phase(__m512 *accm, const float *wq, const float *xq,
                               int64_t steps, int first, const int nrv, const __m512 *pf,
                               int64_t n_pf)
{
    __m512 acc[GEMM_TOKS][GEMM_NRV];
F16_UNROLL
    for (int t = 0; t < GEMM_TOKS; t++)
F16_UNROLL
        for (int v = 0; v < nrv; v++)
            acc[t][v] = first ? _mm512_setzero_ps() : accm[t * GEMM_NRV + v];
    for (int64_t s = 0; s < steps; s++) {
        if (pf && s * GEMM_PF_STEP < n_pf)
            for (int q = 0; q < GEMM_PF_STEP; q++)
                _mm_prefetch((const char *)(pf + s * GEMM_PF_STEP + q), _MM_HINT_T0);
        __m512 wv[GEMM_NRV];
F16_UNROLL
        for (int v = 0; v < nrv; v++)
            wv[v] = _mm512_load_ps(wq + (size_t)s * (size_t)(16 * nrv) + (size_t)(16 * v));
F16_UNROLL
        for (int t = 0; t < GEMM_TOKS; t++) {
            __m512 xb = _mm512_set1_ps(xq[(size_t)s * GEMM_TOKS + (size_t)t]);
            /* gcc emits one vbroadcastss from memory per token here */
F16_UNROLL
            for (int v = 0; v < nrv; v++)
                acc[t][v] = _mm512_fmadd_ps(wv[v], xb, acc[t][v]);
        }
    }
F16_UNROLL
    for (int t = 0; t < GEMM_TOKS; t++)
F16_UNROLL
        for (int v = 0; v < nrv; v++)
            accm[t * GEMM_NRV + v] = acc[t][v];
}

/* y[t * ys + r] for one token group: the 16 phase sums of part (16 x 8 x nrv vectors)
 * added by sum16's tree (so the tile's bits) */
KERNELS_INLINE void gemm_reduce(const __m512 *pp, float *y, size_t ys, const int nrv)
{
#define GEMM_P(ph) pp[((size_t)(ph) * GEMM_TOKS + (size_t)t) * GEMM_NRV + (size_t)v]
    for (int t = 0; t < GEMM_TOKS; t++)
        for (int v = 0; v < nrv; v++) {
            __m512 s[4];
            for (int q = 0; q < 4; q++)
                s[q] = _mm512_add_ps(_mm512_add_ps(GEMM_P(4 * q), GEMM_P(4 * q + 2)),
                                     _mm512_add_ps(GEMM_P(4 * q + 1), GEMM_P(4 * q + 3)));
            _mm512_storeu_ps(y + (size_t)t * ys + (size_t)(16 * v),
                             _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3])));
        }
#undef GEMM_P
}

/* One panel (16 nrv rows, packed at wp) by the token block's ng groups (xp, n * 8
 * floats each), phase by phase and within a phase GEMM_KS steps at a time, so that each
 * slice of the panel (at most 24 KiB) serves every group from L1 before the next is
 * read. Phase sums wait in part (per group 16 x 8 x nrv vectors) between slices, then
 * sum16's tree writes y[t * ys + r]. */
KERNELS_INLINE void gemm_panel(const float *wp, const float *xp, int64_t n, int64_t ng,
                               const int64_t *off, __m512 *part, float *y, size_t ys,
                               const int nrv)
{
    const size_t pg = 16 * GEMM_TOKS * GEMM_NRV; /* vectors of part per group */
    if (off[1] <= GEMM_KS) {
        /* every phase one slice (n <= 16 GEMM_KS): group by group instead, the panel
         * (at most 384 KiB, L2) and the group's tokens read as two sequential streams,
         * the group's phase sums in part; the same arithmetic */
        for (int64_t g = 0; g < ng; g++) {
            /* by the last phase the streamed panel has pushed the first 15 phases' sums
             * out of L1: the reduction waited on L2 for them (~4 % of the product) */
            for (int p = 0; p < 16; p++)
                gemm_phase(part + (size_t)p * GEMM_TOKS * GEMM_NRV,
                           wp + (size_t)off[p] * (size_t)(16 * nrv),
                           xp + ((size_t)g * (size_t)n + (size_t)off[p]) * GEMM_TOKS,
                           off[p + 1] - off[p], 1, nrv, p == 15 ? part : NULL,
                           15 * GEMM_TOKS * GEMM_NRV);
            gemm_reduce(part, y + (size_t)(g * GEMM_TOKS) * ys, ys, nrv);
        }
        return;
    }
    for (int p = 0; p < 16; p++)
        for (int64_t s0 = off[p]; s0 == off[p] || s0 < off[p + 1]; s0 += GEMM_KS) {
            /* (a phase without steps, under 16 columns, still zeroes its sums) */
            int64_t ns = off[p + 1] - s0 < GEMM_KS ? off[p + 1] - s0 : GEMM_KS;
            for (int64_t g = 0; g < ng; g++)
                gemm_phase(part + (size_t)g * pg + (size_t)p * GEMM_TOKS * GEMM_NRV,
                           wp + (size_t)s0 * (size_t)(16 * nrv),
                           xp + ((size_t)g * (size_t)n + (size_t)s0) * GEMM_TOKS, ns,
                           s0 == off[p], nrv, NULL, 0);
        }
    for (int64_t g = 0; g < ng; g++)
        gemm_reduce(part + (size_t)g * pg, y + (size_t)(g * GEMM_TOKS) * ys, ys, nrv);
}

/* whole tiles only (kernels_gemm_fn): re - rb and n_tok multiples of 16 */
static int avx512_gemm_f16(const struct kernels_tensor_view *W, const void *act, size_t xs,
                           float *y, int n_tok, int64_t rb, int64_t re)
{
    int64_t n = W->cols, off[17];
    phase_offsets(n, off);
    int64_t tb = (int64_t)(GEMM_X_BYTES / ((size_t)n * sizeof(float))) / 16 * 16;
    tb = tb < 16 ? 16 : tb > n_tok ? n_tok : tb;
    size_t x_floats = (size_t)tb * (size_t)n, w_floats = (size_t)(16 * GEMM_NRV) * (size_t)n;
    size_t part_vecs = (size_t)(tb / GEMM_TOKS) * 16 * GEMM_TOKS * GEMM_NRV;
    __m512 *part = kernels_scratch(part_vecs * sizeof(__m512) +
                                   (x_floats + w_floats) * sizeof(float));
    if (!part)
        return -1;
    float *xp = (float *)(void *)(part + part_vecs), *wp = xp + x_floats;
    for (int64_t t0 = 0; t0 < n_tok; t0 += tb) {
        int64_t nt = n_tok - t0 < tb ? n_tok - t0 : tb;
        for (int64_t t = 0; t < nt; t += 16)
            pack_toks((const char *)act + (size_t)(t0 + t) * xs, xs, n, off,
                      xp + (size_t)t * (size_t)n);
        for (int64_t r0 = rb; r0 < re; r0 += 16 * GEMM_NRV) {
            int nrv = (re - r0) / 16 < GEMM_NRV ? (int)((re - r0) / 16) : GEMM_NRV;
            float *yp = y + (size_t)t0 * (size_t)W->rows + (size_t)r0;
            int64_t ng = nt / GEMM_TOKS;
            pack_rows((const char *)W->data + (size_t)r0 * W->row_bytes, W->row_bytes, nrv,
                      n, off, wp);
            switch (nrv) {
            case 1: gemm_panel(wp, xp, n, ng, off, part, yp, (size_t)W->rows, 1); break;
            case 2: gemm_panel(wp, xp, n, ng, off, part, yp, (size_t)W->rows, 2); break;
            default: gemm_panel(wp, xp, n, ng, off, part, yp, (size_t)W->rows, 3); break;
            }
        }
    }
    return 0;
}
_Static_assert(GEMM_NRV == 3, "avx512_gemm_f16 switches over 1..3 row vectors");

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

/*
 * Grouped-query attention (kernels_att_scores / kernels_att_wsum) for F16 and F32 rows of
 * up to 128 columns, a multiple of 16: the n_q query heads of one KV head read each K and
 * V row once between them, where one head at a time widened every row n_q times.
 *
 * Scores: 16 rows at a time are widened into an L1 block; per query, its vectors stay in
 * registers and each row gets 16-lane FMAs over the columns in order, then sum16's tree
 * turns the 16 rows' lanes into 16 scores. The sum of a (query, row) pair is the same
 * whatever the group, block or position: batch invariance holds, and decode and prefill
 * agree. (Its order is not kernels_dot_f32's.)
 */
static void (*g_att_scores_next)(enum kernels_type t, const void *x, size_t stride,
                                 int n_rows, const float *q, size_t qs, int n_q, float scale,
                                 float *s, size_t ss, int64_t d);
static void (*g_att_wsum_next)(enum kernels_type t, const float *a, size_t as, int n_q,
                               const void *x, size_t stride, int n_rows, float *y, size_t ys,
                               int64_t d);

#define ATT_MAX_V 8 /* 16-column vectors of a row: 128 columns */
#define ATT_WQ 6    /* query heads per pass of the weighted sum: 6 x 4 accumulators */

KERNELS_INLINE void att_scores_q(const float (*kb)[16 * ATT_MAX_V], int nj, const float *q,
                                 float scale, float *s, const int nv)
{
    __m512 qv[ATT_MAX_V], acc[16];
F16_UNROLL
    for (int c = 0; c < nv; c++)
        qv[c] = _mm512_loadu_ps(q + 16 * c);
F16_UNROLL
    for (int j = 0; j < 16; j++) {
        acc[j] = _mm512_setzero_ps();
        if (j < nj) {
F16_UNROLL
            for (int c = 0; c < nv; c++)
                acc[j] = _mm512_fmadd_ps(qv[c], _mm512_load_ps(kb[j] + 16 * c), acc[j]);
        }
    }
    float sum[16];
    sum16_at(acc, 1, nj, sum);
    for (int j = 0; j < nj; j++)
        s[j] = sum[j] * scale;
}

static void avx512_att_scores(enum kernels_type t, const void *x, size_t stride, int n_rows,
                              const float *q, size_t qs, int n_q, float scale, float *s,
                              size_t ss, int64_t d)
{
    if ((t != KERNELS_F16 && t != KERNELS_F32) || d % 16 || d < 16 || d > 16 * ATT_MAX_V) {
        g_att_scores_next(t, x, stride, n_rows, q, qs, n_q, scale, s, ss, d);
        return;
    }
    int nv = (int)(d / 16);
    _Alignas(64) float kb[16][16 * ATT_MAX_V];
    for (int j0 = 0; j0 < n_rows; j0 += 16) {
        int nj = n_rows - j0 < 16 ? n_rows - j0 : 16;
        for (int j = 0; j < nj; j++) {
            const char *row = (const char *)x + (size_t)(j0 + j) * stride;
            for (int c = 0; c < nv; c++)
                _mm512_store_ps(kb[j] + 16 * c, wsum_load16(t, row, 16 * c));
        }
        for (int i = 0; i < n_q; i++) {
            const float *qi = q + (size_t)i * qs;
            float *si = s + (size_t)i * ss + (size_t)j0;
            KERNELS_NX8_SWITCH(nv, att_scores_q, kb, nj, qi, scale, si);
        }
    }
}

/* y_i[c0 .. c0 + 16 nv) for n_q <= ATT_WQ queries: acc = fma(a_j, x_j, acc) from 0 in
 * row order, as avx512_wsum (and the AVX2 wsum) do per query */
KERNELS_INLINE void att_wsum_block(const float *a, size_t as, enum kernels_type t,
                                   const void *x, size_t stride, int n_rows, float *y,
                                   size_t ys, int64_t c0, const int n_q, const int nv)
{
    __m512 acc[ATT_WQ][4];
F16_UNROLL
    for (int i = 0; i < n_q; i++)
F16_UNROLL
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm512_setzero_ps();
    for (int j = 0; j < n_rows; j++) {
        const void *row = (const char *)x + (size_t)j * stride;
        __m512 xv[4];
F16_UNROLL
        for (int v = 0; v < nv; v++)
            xv[v] = wsum_load16(t, row, c0 + 16 * v);
F16_UNROLL
        for (int i = 0; i < n_q; i++) {
            __m512 av = _mm512_set1_ps(a[(size_t)i * as + (size_t)j]);
F16_UNROLL
            for (int v = 0; v < nv; v++)
                acc[i][v] = _mm512_fmadd_ps(av, xv[v], acc[i][v]);
        }
    }
F16_UNROLL
    for (int i = 0; i < n_q; i++)
F16_UNROLL
        for (int v = 0; v < nv; v++)
            _mm512_storeu_ps(y + (size_t)i * ys + c0 + 16 * v, acc[i][v]);
}

/* att_wsum_block with n_q (1..ATT_WQ) made a constant, so acc[][] stays in registers */
KERNELS_INLINE void att_wsum_cols(const float *a, size_t as, enum kernels_type t,
                                  const void *x, size_t stride, int n_rows, float *y,
                                  size_t ys, int64_t c0, int n_q, const int nv)
{
    switch (n_q) {
    case 1: att_wsum_block(a, as, t, x, stride, n_rows, y, ys, c0, 1, nv); break;
    case 2: att_wsum_block(a, as, t, x, stride, n_rows, y, ys, c0, 2, nv); break;
    case 3: att_wsum_block(a, as, t, x, stride, n_rows, y, ys, c0, 3, nv); break;
    case 4: att_wsum_block(a, as, t, x, stride, n_rows, y, ys, c0, 4, nv); break;
    case 5: att_wsum_block(a, as, t, x, stride, n_rows, y, ys, c0, 5, nv); break;
    default: att_wsum_block(a, as, t, x, stride, n_rows, y, ys, c0, 6, nv); break;
    }
}
_Static_assert(ATT_WQ == 6, "att_wsum_cols switches over 1..6 queries");

static void avx512_att_wsum(enum kernels_type t, const float *a, size_t as, int n_q,
                            const void *x, size_t stride, int n_rows, float *y, size_t ys,
                            int64_t d)
{
    if (t != KERNELS_F16 && t != KERNELS_F32) {
        g_att_wsum_next(t, a, as, n_q, x, stride, n_rows, y, ys, d);
        return;
    }
    for (int i0 = 0; i0 < n_q; i0 += ATT_WQ) {
        int nq = n_q - i0 < ATT_WQ ? n_q - i0 : ATT_WQ;
        const float *ai = a + (size_t)i0 * as;
        float *yi = y + (size_t)i0 * ys;
        int64_t c = 0;
        for (; c + 64 <= d; c += 64)
            att_wsum_cols(ai, as, t, x, stride, n_rows, yi, ys, c, nq, 4);
        for (; c + 16 <= d; c += 16)
            att_wsum_cols(ai, as, t, x, stride, n_rows, yi, ys, c, nq, 1);
        if (c < d) /* the last columns, per query as kernels_wsum would do them */
            for (int i = 0; i < nq; i++)
                g_wsum_next(t, ai + (size_t)i * as,
                            (const char *)x + (size_t)c * (t == KERNELS_F32 ? 4 : 2), stride,
                            n_rows, yi + (size_t)i * ys + c, d - c);
    }
}

void kernels_avx512_f16_fill(struct kernels_table *t)
{
    g_wsum_next = t->wsum;
    t->wsum = avx512_wsum;
    g_att_scores_next = t->att_scores;
    t->att_scores = avx512_att_scores;
    g_att_wsum_next = t->att_wsum;
    t->att_wsum = avx512_att_wsum;
    t->tile_q[KERNELS_F16] = avx512_tile_f16;
    t->tile_rows[KERNELS_F16] = F16_CALL_ROWS;
    t->tile_toks[KERNELS_F16] = F16_TOKS;
    t->gemm_q[KERNELS_F16] = avx512_gemm_f16; /* x86_amx.c may replace it */
    t->gemm_min_tok[KERNELS_F16] = GEMM_MIN_TOK;
    t->gemv_q[KERNELS_F16] = avx512_gemv_f16;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int kernels_x86_avx512_f16_unused; /* ISO C forbids an empty translation unit */
#endif
