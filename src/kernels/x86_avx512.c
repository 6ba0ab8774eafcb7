/*
 * x86_avx512: AVX-512 (F/BW/VL/VNNI) versions of some dots; installed over the AVX2 table,
 * so every kernel not overridden here stays on AVX2. Same signatures and results as ref.c
 * up to float summation order.
 *  - Q8_0/Q4_0/Q5_0, Q4_K and Q5_K: register tiles (tile_q, used for every product of
 *    these types, one token too): 8 rows in each 512-bit register, VNNI vpdpbusd (u8 x s8,
 *    four products summed into s32, no saturation); see their sections below.
 *  - Q6_K: a register tile (tile_q) for two tokens and more, and for single tokens
 *    (gemv_q) a one-row dot with 512-bit vpdpbusd (two 32-quant chunks per register,
 *    four u6 x s8 products per s32 lane), vpackssdw of two such sums to s16, then
 *    vpdpwssd by the sub-block scales into s32; both in the canonical form (below), so
 *    with the same bits.
 *    F16 x F16 tiles are in x86_avx512_f16.c. A 16-wide FMA version of the one-row
 *    F32/F16 dots was measured slower than AVX2 here (frequency), so it was dropped.
 */
#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512dq"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512dq")
#endif

#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kernels/impl.h"

static inline float fp16(kernels_fp16 h)
{
    return _cvtsh_ss(h);
}

static inline const void *xrow(const void *x, size_t stride, int k)
{
    return (const char *)x + (size_t)k * stride;
}

static inline __m256i nibbles32(const uint8_t *p)
{
    __m128i raw = _mm_loadu_si128((const __m128i *)p);
    __m128i m = _mm_set1_epi8(0xF);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
}

/* the 32 signed quants of block i, and the block's fp16 scale */
static inline __m256i tile_unpack(enum kernels_type t, const void *w, int64_t i,
                                  kernels_fp16 *d)
{
    if (t == KERNELS_Q8_0) {
        const struct block_q8_0 *b = (const struct block_q8_0 *)w + i;
        *d = b->d;
        return _mm256_loadu_si256((const __m256i *)b->qs);
    }
    if (t == KERNELS_Q4_0) {
        const struct block_q4_0 *b = (const struct block_q4_0 *)w + i;
        *d = b->d;
        return _mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8));
    }
    const struct block_q5_0 *b = (const struct block_q5_0 *)w + i;
    *d = b->d;
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    __m256i q = _mm256_or_si256(nibbles32(b->qs),
                                _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(0x10)));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(16));
}

/* ------------------------------------------------ register-tiled Q8_0/Q4_0/Q5_0 (prefill) */

/*
 * tile_q of the 32-quant types: 8 rows x TILE_T tokens, one zmm accumulator per token
 * holding all 8 rows (two s32 lanes per row). A row-token pair then costs half a dpbusd
 * and an eighth of a cvt, a vmulps and an fma per block, where a one-row dot pays a whole
 * cvt, scale broadcast and fma per pair and block (those ports are the limit).
 *  - weights: the 8 rows' blocks are transposed in 64-bit pieces, W_q = quants 8q..8q+7
 *    of each row; the activation's piece q is broadcast to all eight 64-bit lanes, and
 *    dpbusd(Y_q, W_q) over q = 0..3 leaves each row's dot in two adjacent lanes.
 *  - vpdpbusd wants an unsigned operand: the activations go in as u8 = y + 128 (y ^
 *    0x80), and every token's sum starts from -128 * (the row's quants summed in the same
 *    lane pattern), formed once per block for all tokens. Exact in s32 for any byte.
 *  - the scales: one vcvtph2ps gives the 8 row scales (each twice), one vmulps by the
 *    token's scale the products for all 8 rows.
 * Fewer than 8 rows repeat the last row (computed, not stored). Measured (Q8_0, one
 * thread, 64 tokens, 8960 x 1536 and 1536 x 8960): 8 x 8 as fast as 8 x 4, 8 x 6, 16 x 4
 * and 16 x 6 within noise, and the fewest copies; the same design with 4 rows per ymm
 * ran ~25% slower, one ymm accumulator per row-token pair (4 x 4) ~75% slower.
 */
#define TILE_T 8


/* The shuffles below leave row TILE_ROW[j] in lanes 2j, 2j+1. */
static const int TILE_ROW[8] = {0, 1, 4, 5, 2, 3, 6, 7};

/* z[r]: 32 bytes of row r (low half) and of row r + 4 (high half) -> W[q]: bytes
 * 8q..8q+7 of row TILE_ROW[j] in 64-bit lane j (128-bit lane L of z[r] holds pieces
 * 2(L%2), 2(L%2)+1 of row r + 4(L/2)) */
static inline void tile_transpose8(const __m512i *z, __m512i *W)
{
    __m512i t0 = _mm512_unpacklo_epi64(z[0], z[1]), t1 = _mm512_unpackhi_epi64(z[0], z[1]);
    __m512i t2 = _mm512_unpacklo_epi64(z[2], z[3]), t3 = _mm512_unpackhi_epi64(z[2], z[3]);
    W[0] = _mm512_shuffle_i64x2(t0, t2, 0x88);
    W[1] = _mm512_shuffle_i64x2(t1, t3, 0x88);
    W[2] = _mm512_shuffle_i64x2(t0, t2, 0xDD);
    W[3] = _mm512_shuffle_i64x2(t1, t3, 0xDD);
}

/* the 8 row pointers of a tile of n_r rows (1..8): missing rows repeat the last one,
 * computed but never stored */
static inline void tile_row_ptrs(const void *w, size_t ws, int n_r, const void **rows)
{
    for (int r = 0; r < 8; r++)
        rows[r] = (const char *)w + (size_t)(r < n_r ? r : n_r - 1) * ws;
}

/* the next tile's lines: `lines` cache lines at byte offset off of each of the 8 rows */
static inline void tile_prefetch8(const void *const *w, size_t off, int lines)
{
    for (int r = 0; r < 8; r++)
        for (int l = 0; l < lines; l++)
            __builtin_prefetch((const char *)w[r] + off + 64 * (size_t)l, 0, 3);
}

/* block i of 8 rows: the pieces W[0..3], the start value -128 * (quant sums) of each
 * token's sums, and the scales */
KERNELS_INLINE void tile_rows8(enum kernels_type t, const void *const *w, int64_t i,
                               __m512i *W, __m512i *corr, __m512 *dw)
{
    kernels_fp16 h[8];
    __m512i z[4];
    for (int r = 0; r < 4; r++) {
        __m256i lo = tile_unpack(t, w[r], i, &h[r]), hi = tile_unpack(t, w[r + 4], i, &h[r + 4]);
        z[r] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    tile_transpose8(z, W);
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    __m512i c = _mm512_setzero_si512();
    for (int q = 0; q < 4; q++)
        c = _mm512_dpbusd_epi32(c, k128, W[q]);
    *corr = _mm512_sub_epi32(_mm512_setzero_si512(), c);
    __m128i hv = _mm_set_epi16((short)h[7], (short)h[6], (short)h[3], (short)h[2],
                               (short)h[5], (short)h[4], (short)h[1], (short)h[0]);
    *dw = _mm512_cvtph_ps(_mm256_set_m128i(_mm_unpackhi_epi16(hv, hv),
                                           _mm_unpacklo_epi16(hv, hv)));
}

/* a token's 8-row accumulator (row TILE_ROW[j] in lanes 2j, 2j+1) into y[0..nr) */
static inline void tile_store8(__m512 acc, float *y, int nr)
{
    _Alignas(64) float v[16];
    _mm512_store_ps(v, _mm512_add_ps(acc, _mm512_movehdup_ps(acc)));
    for (int j = 0; j < 8; j++)
        if (TILE_ROW[j] < nr)
            y[TILE_ROW[j]] = v[2 * j];
}

/*
 * The canonical form (canon = 1, installed with the AMX kernels of x86_amx.c): each
 * row's two s32 lanes are added (exact) into the even lane before the conversion, so a
 * (row, token) result is fma(float(whole block sum), dw * dx, acc) per block in block
 * order, which is what the matrix unit computes from its whole-block sums. The two
 * paths then agree bit for bit and a token's logits do not depend on whether its batch
 * went through AMX or these tiles. Without AMX the two lanes are kept apart (two
 * instructions per token and block fewer).
 */
static inline __m512i tile_fold(__m512i s)
{
    return _mm512_maskz_add_epi32(0x5555, s, _mm512_srli_epi64(s, 32));
}

/* the canonical form's store: row TILE_ROW[j]'s result is lane 2j alone */
static inline void tile_store8_even(__m512 acc, float *y, int nr)
{
    _Alignas(64) float v[16];
    _mm512_store_ps(v, acc);
    for (int j = 0; j < 8; j++)
        if (TILE_ROW[j] < nr)
            y[TILE_ROW[j]] = v[2 * j];
}

KERNELS_INLINE void tile32_body(enum kernels_type t, const void *const *w, size_t ahead,
                                const void *x, size_t xs, int64_t n, float *y, size_t ys,
                                int nr, const int canon, const int nt)
{
    __m512 acc[TILE_T];
    for (int k = 0; k < nt; k++)
        acc[k] = _mm512_setzero_ps();
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    const size_t bb = t == KERNELS_Q8_0 ? sizeof(struct block_q8_0)
                      : t == KERNELS_Q4_0 ? sizeof(struct block_q4_0)
                                          : sizeof(struct block_q5_0);
    for (int64_t i = 0; i < n / 32; i++) {
        /* the next tile's rows (ahead = 8 rows; see kernels_prefetch). Blocks are under a
         * line: one prefetch per row and block covers every line. Q8_0 decode (Zen 5 VM,
         * 1.5B shape) 17.3-18.1 -> 26.8-27.8 t/s; with KERNELS_PREFETCH ahead instead,
         * 1 KiB, 2 KiB and 8 KiB were no better than 4 KiB */
        tile_prefetch8(w, ahead + (size_t)i * bb, 1);
        __m512i W[4], corr;
        __m512 dw;
        tile_rows8(t, w, i, W, &corr, &dw);
        for (int k = 0; k < nt; k++) {
            const struct block_q8_0 *b = (const struct block_q8_0 *)xrow(x, xs, k) + i;
            __m512i s = corr;
            for (int q = 0; q < 4; q++) {
                long long v;
                memcpy(&v, b->qs + 8 * q, 8);
                s = _mm512_dpbusd_epi32(s, _mm512_xor_si512(_mm512_set1_epi64(v), k128), W[q]);
            }
            if (canon)
                s = tile_fold(s);
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s),
                                     _mm512_mul_ps(dw, _mm512_set1_ps(fp16(b->d))), acc[k]);
        }
    }
    for (int k = 0; k < nt; k++) {
        if (canon)
            tile_store8_even(acc[k], y + (size_t)k * ys, nr);
        else
            tile_store8(acc[k], y + (size_t)k * ys, nr);
    }
}

/* 1 <= n_r <= 8, 1 <= n_x <= TILE_T; each token count has its own copy (a run-time count
 * would keep acc[] on the stack) */
KERNELS_INLINE void tile32(enum kernels_type t, const void *w, size_t ws, int n_r,
                           const void *x, size_t xs, int n_x, int64_t n, float *y, size_t ys,
                           const int canon)
{
    const void *rows[8];
    tile_row_ptrs(w, ws, n_r, rows);
    KERNELS_NX8_SWITCH(n_x, tile32_body, t, rows, 8 * ws, x, xs, n, y, ys, n_r, canon);
}
_Static_assert(TILE_T == 8, "tile32 switches over 1..8 tokens");

static void avx512_tile_q8_0(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                             int n_x, int64_t n, float *y, size_t ys)
{
    tile32(KERNELS_Q8_0, w, ws, n_r, x, xs, n_x, n, y, ys, 0);
}
static void avx512c_tile_q8_0(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                              int n_x, int64_t n, float *y, size_t ys)
{
    tile32(KERNELS_Q8_0, w, ws, n_r, x, xs, n_x, n, y, ys, 1);
}
static void avx512_tile_q4_0(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                             int n_x, int64_t n, float *y, size_t ys)
{
    tile32(KERNELS_Q4_0, w, ws, n_r, x, xs, n_x, n, y, ys, 0);
}
static void avx512_tile_q5_0(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                             int n_x, int64_t n, float *y, size_t ys)
{
    tile32(KERNELS_Q5_0, w, ws, n_r, x, xs, n_x, n, y, ys, 0);
}

/* ---------------------------------------------------- register-tiled Q4_K (prefill, decode) */

/*
 * tile_q of Q4_K: the design of tile32 above (8 rows per zmm, two s32 lanes per row, one
 * accumulator per token) applied per pair of sub-blocks (2p, 2p+1), whose quants share
 * the 32 bytes qs[32p..32p+31] (low nibbles 2p, high nibbles 2p+1).
 *  - the 8 rows' 32 bytes are transposed in 64-bit pieces as in tile_rows8; masking and
 *    shifting then give the unsigned 0..15 quants of sub-block 2p and of 2p+1 (4 zmm
 *    each), the u8 operand of vpdpbusd as they are: the Q8_K activations are its s8
 *    operand directly, no bias and no correction term.
 *  - per token and sub-block, 4 dpbusd from zero leave each row's sum in its two lanes
 *    (|sum| <= 16 * 15 * 128 = 30720, so it is its own low s16 half); vpdpwssd against
 *    (scale, 0) word pairs multiplies it by the row's 6-bit scale and adds it to the
 *    token's s32 block sum. No pack, so the lanes keep tile32's layout.
 *  - per block and token: one cvt, one vmulps (8 rows' d x token's d) and an fma; the
 *    mins term (dmin * m_j * the trailer's d * sum of sub-block j) is 4 fnmadd of a
 *    (dmin m_2c, dmin m_2c+1) lane-pair vector with the broadcast float pair t_2c, t_2c+1.
 *  - the scales are decoded for all 8 rows at once: the 16-byte block headers (d, dmin,
 *    scales[12]) of 4 rows per zmm, ggml's 6-bit unpacking per 128-bit lane, then word
 *    permutes (AVX-512BW vpermt2w) place each (row, sub-block) value in its lanes.
 * Every (row, token) lane pair sees the same operations whatever n_r and n_x are, so a
 * token's result does not depend on its batch. Fewer than 8 rows repeat the last row.
 * Measured (one thread, CPU time, 64 tokens): 8960 x 1536 4.4 -> 2.6 ns per block and
 * token, 1536 x 8960 5.2 -> 2.5 ns, decode no slower than the one-row dot. Interleaving
 * two tokens' dpbusd chains and skipping the prefetch above one token changed nothing.
 * What limits it now: 512-bit loads issue about once per cycle on this VM (measured:
 * loads + dpbusd run at half the rate of dpbusd alone), and every dpbusd here takes one
 * broadcast load; 16 rows per tile (two weight zmm per broadcast) would halve them.
 *
 * Q5_K (q5 = 1) is the same tile: the same 16-byte header (d, dmin, 6-bit scales and
 * mins), the 32 qh bytes transposed once per block as the quants are, and bit 2p (2p +
 * 1) of a qh byte ORed in as bit 4 of sub-block 2p's (2p + 1's) quant. Quants up to 31
 * take the 16 products of a lane to 63,488, past s16, so the lane's sum is scaled every
 * 8 products (31,744): two vpdpwssd per sub-block and token instead of one. Measured (Ice
 * Lake VM, one thread, in-process A/B against the AVX2 dot that Q5_K had, best of 12):
 * 64 tokens 1536 x 8960 82 -> 178 GFLOP/s, 8960 x 1536 76 -> 167; one token 40 -> 53 and
 * 34 -> 51.
 */

/* block bytes of Q4_K (q5 = 0) or Q5_K (q5 = 1), which share the 16-byte header */
#define Q4KT_BB(q5) ((q5) ? sizeof(struct block_q5_K) : sizeof(struct block_q4_K))

/* the 16-byte headers of block i of rows 4h..4h+3, one row per 128-bit lane */
static inline __m512i q4kt_headers(const void *const *w, int64_t i, int h, size_t bb)
{
    const char *b[4];
    for (int r = 0; r < 4; r++)
        b[r] = (const char *)w[4 * h + r] + (size_t)i * bb;
    /* the immediates of inserti32x4 must be constants, also at -O0 */
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)b[0]));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)b[1]), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)b[2]), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)b[3]), 3);
}

/* per 128-bit lane: header dwords (d|dmin, a, b, c) -> 8 scale bytes, then 8 min bytes */
static inline __m512i q4kt_unpack_scales(__m512i h)
{
    const __m512i m1 = _mm512_broadcast_i32x4(
        _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m512i m2 = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    const __m512i sh = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0, 0, 4));
    /* (a, c, b, c) >> (0, 0, 0, 4), masked: the low 4 or 6 bits of each value */
    __m512i lo = _mm512_and_si512(_mm512_srlv_epi32(_mm512_shuffle_epi32(h, 0xED), sh), m1);
    /* (a, a, b, b) >> 2: bits 4..5 of scales and mins 4..7 */
    __m512i hi = _mm512_srli_epi32(_mm512_shuffle_epi32(h, 0xA5), 2);
    return _mm512_ternarylogic_epi32(lo, hi, m2, 0xF8); /* lo | (hi & m2) */
}

/* word index (into two tables of 4 rows x 8 words) of row TILE_ROW[l / 2]'s value 0, at
 * the low word of each dword lane l */
static const uint16_t Q4KT_ROW_WORD[32] = {0,  0, 0,  0, 8,  0, 8,  0, 32, 0, 32, 0, 40, 0, 40, 0,
                                           16, 0, 16, 0, 24, 0, 24, 0, 48, 0, 48, 0, 56, 0, 56, 0};
/* word index (into the two header zmm) of d (words 0..15) and dmin (16..31) for the lane
 * pair of row TILE_ROW[(w % 16) / 2] */
static const uint16_t Q4KT_D_WORD[32] = {0,  0,  8,  8,  32, 32, 40, 40, 16, 16, 24,
                                         24, 48, 48, 56, 56, 1,  1,  9,  9,  33, 33,
                                         41, 41, 17, 17, 25, 25, 49, 49, 57, 57};

/* the per-block values of 8 rows, in lane pairs (2j, 2j + 1) for row TILE_ROW[j] */
struct q4kt_block {
    __m512i sc[2]; /* words 0..63 of two tables: scale k of row r at word 8r + k */
    __m512 d;      /* d of the row in both lanes */
    __m512 mw[4];  /* dmin * m_2c in lane 2j, dmin * m_2c+1 in lane 2j + 1 */
    __m512 dmin;   /* canonical form: dmin of the row in both lanes */
    __m512i mp[2]; /* canonical form: words (m0, m1), (m2, m3) in lanes 2j, 2j + 1 (mp[0]),
                    * (m4, m5), (m6, m7) (mp[1]) */
};

KERNELS_INLINE void q4kt_block_values(const void *const *w, int64_t i, const __m512i *ix,
                                      struct q4kt_block *v, size_t bb)
{
    __m512i h0 = q4kt_headers(w, i, 0, bb), h1 = q4kt_headers(w, i, 1, bb);
    __m512i r0 = q4kt_unpack_scales(h0), r1 = q4kt_unpack_scales(h1);
    /* qwords: scales of rows 0..7, then the mins of rows 0..7 */
    __m512i scb = _mm512_permutex2var_epi64(r0, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), r1);
    __m512i mnb = _mm512_permutex2var_epi64(r0, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), r1);
    v->sc[0] = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(scb));
    v->sc[1] = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(scb, 1));
    __m512i mn0 = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(mnb));
    __m512i mn1 = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(mnb, 1));
    __m512i dd = _mm512_permutex2var_epi16(h0, ix[8], h1);
    v->d = _mm512_cvtph_ps(_mm512_castsi512_si256(dd));
    __m512 dmin = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dd, 1));
    v->dmin = dmin;
    for (int h = 0; h < 2; h++)
        v->mp[h] = _mm512_permutex2var_epi16(mn0, ix[13 + h], mn1);
    for (int c = 0; c < 4; c++) {
        __m512i m = _mm512_maskz_permutex2var_epi16(0x55555555, mn0, ix[9 + c], mn1);
        v->mw[c] = _mm512_mul_ps(_mm512_cvtepi32_ps(m), dmin);
    }
}

/* the 32 bytes at offset off of block i (bb bytes) of the 8 rows, transposed (see
 * tile_transpose8) */
static inline void tile_load8(const void *const *w, int64_t i, size_t bb, size_t off,
                              __m512i *T)
{
    __m512i z[4];
    for (int r = 0; r < 4; r++) {
        const char *a = (const char *)w[r] + (size_t)i * bb + off;
        const char *b = (const char *)w[r + 4] + (size_t)i * bb + off;
        z[r] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                                  _mm256_loadu_si256((const __m256i *)b), 1);
    }
    tile_transpose8(z, T);
}

/* bit b (0..7) of every byte of v moved to bit 4, the other bits arbitrary (16-bit shifts:
 * the bits a byte takes from its neighbour stay out of bit 4) */
static inline __m512i q5kt_bit_to_4(__m512i v, int b)
{
    return b <= 4 ? _mm512_sll_epi16(v, _mm_cvtsi32_si128(4 - b))
                  : _mm512_srl_epi16(v, _mm_cvtsi32_si128(b - 4));
}

/* sub-blocks 2p (lo) and 2p + 1 (hi) of block i of the 8 rows: quants 8q..8q+7 of row
 * TILE_ROW[j] in 64-bit lane j of lo[q] and hi[q]. Q5_K (qh: its high bits, transposed
 * as the quants): bit 2p of a qh byte is lo's fifth bit, bit 2p + 1 hi's. */
KERNELS_INLINE void q4kt_quants(const void *const *w, int64_t i, int p, __m512i *lo,
                                __m512i *hi, const __m512i *qh, const int q5)
{
    __m512i W[4];
    tile_load8(w, i, Q4KT_BB(q5),
               (q5 ? offsetof(struct block_q5_K, qs) : offsetof(struct block_q4_K, qs)) +
                   32 * (size_t)p,
               W);
    const __m512i m4 = _mm512_set1_epi8(0xF), m16 = _mm512_set1_epi8(0x10);
    for (int q = 0; q < 4; q++) {
        lo[q] = _mm512_and_si512(W[q], m4);
        hi[q] = _mm512_and_si512(_mm512_srli_epi16(W[q], 4), m4);
        if (q5) { /* nibble | (high bit & 0x10) */
            lo[q] = _mm512_ternarylogic_epi32(lo[q], q5kt_bit_to_4(qh[q], 2 * p), m16, 0xF8);
            hi[q] = _mm512_ternarylogic_epi32(hi[q], q5kt_bit_to_4(qh[q], 2 * p + 1), m16, 0xF8);
        }
    }
}

static inline __m512i q4kt_bcast8(const int8_t *p)
{
    long long v;
    memcpy(&v, p, 8);
    return _mm512_set1_epi64(v);
}

/* the canonical form's min sums: words S_0..S_7 (S_j = bsums[2j] + bsums[2j + 1], |S_j|
 * <= 32 * 128) of a Q8_K block as qword broadcasts: (S0..S3) and (S4..S7) */
static inline void q4kt_bsum_pairs(const struct block_q8_K *b, __m512i *s)
{
    __m256i w = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)b->bsums),
                                  _mm256_set1_epi16(1));
    __m128i p = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    s[0] = _mm512_broadcastq_epi64(p);
    s[1] = _mm512_broadcastq_epi64(_mm_unpackhi_epi64(p, p));
}

/*
 * canon = 1 (installed with the AMX kernels): per block, acc = fma(float(isum), d dx,
 * acc) and then acc = fnmadd(float(msum), dmin dx, acc), isum the row's whole integer
 * block sum (its two lanes folded, as in tile32) and msum = sum_j m_j S_j, exact in
 * s32 (vpdpwssd of the min pairs with the bsum pairs, folded): the arithmetic of
 * ggml's Q4_K dot and of x86_amx.c, bit for bit.
 */
KERNELS_INLINE void q4kt_body(const void *const *w, size_t ahead, const void *x, size_t xs,
                              int64_t n, float *y, size_t ys, int nr, const int canon,
                              const int q5, const int nt)
{
    __m512 acc[TILE_T];
KERNELS_UNROLL8
    for (int k = 0; k < nt; k++)
        acc[k] = _mm512_setzero_ps();
    /* each token's sub-block sums (d * sum of 32 quants) follow its Q8_K row */
    const size_t trailer = (size_t)(n / QK_K) * sizeof(struct block_q8_K);
    /* permute indices: 0..7 scale k, 8 d/dmin, 9..12 the min pairs (2c, 2c + 1) */
    __m512i ix[15];
    const __m512i rw = _mm512_loadu_si512((const void *)Q4KT_ROW_WORD);
    /* the odd lane of each pair takes the next value index */
    const __m512i lane_odd = _mm512_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
    for (int k = 0; k < 8; k++)
        ix[k] = _mm512_add_epi16(rw, _mm512_set1_epi32(k));
    ix[8] = _mm512_loadu_si512((const void *)Q4KT_D_WORD);
    for (int c = 0; c < 4; c++)
        ix[9 + c] = _mm512_add_epi16(rw, _mm512_add_epi32(lane_odd, _mm512_set1_epi32(2 * c)));
    /* min word pairs: both words of a dword index the row; even lanes (0, 1) / (4, 5),
     * odd lanes (2, 3) / (6, 7) */
    const __m512i rw2 = _mm512_or_si512(rw, _mm512_slli_epi32(rw, 16));
    for (int h = 0; h < 2; h++)
        ix[13 + h] = _mm512_add_epi16(
            rw2, _mm512_add_epi32(_mm512_set1_epi32(0x10000 + 0x40004 * h),
                                  _mm512_mullo_epi32(lane_odd, _mm512_set1_epi32(0x20002))));
    for (int64_t i = 0; i < n / QK_K; i++) {
        /* the next tile's rows, as in tile32_body (Q4_K_M decode 47-50 -> 55-57 t/s);
         * 144-byte blocks: 3 lines each, the next block's prefetch covers a 4th */
        tile_prefetch8(w, (size_t)i * Q4KT_BB(q5) + ahead, q5 ? 4 : 3);
        struct q4kt_block bv;
        q4kt_block_values(w, i, ix, &bv, Q4KT_BB(q5));
        __m512i qh[4];
        if (q5)
            tile_load8(w, i, Q4KT_BB(q5), offsetof(struct block_q5_K, qh), qh);
        __m512i isum[TILE_T];
KERNELS_UNROLL8
        for (int k = 0; k < nt; k++)
            isum[k] = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) {
            __m512i lo[4], hi[4];
            q4kt_quants(w, i, p, lo, hi, qh, q5);
            __m512i sa = _mm512_maskz_permutex2var_epi16(0x55555555, bv.sc[0], ix[2 * p], bv.sc[1]);
            __m512i sb = _mm512_maskz_permutex2var_epi16(0x55555555, bv.sc[0], ix[2 * p + 1],
                                                         bv.sc[1]);
KERNELS_UNROLL8
            for (int k = 0; k < nt; k++) {
                const struct block_q8_K *b = (const struct block_q8_K *)xrow(x, xs, k) + i;
                if (q5) { /* 8 x 31 x 128 = 31,744 per lane fits s16; 16 would not */
KERNELS_UNROLL8
                    for (int e = 0; e < 2; e++) {
                        const int8_t *ya = b->qs + 64 * p + 16 * e, *yc = ya + 32;
                        __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[2 * e],
                                                        q4kt_bcast8(ya));
                        __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[2 * e],
                                                        q4kt_bcast8(yc));
                        a = _mm512_dpbusd_epi32(a, lo[2 * e + 1], q4kt_bcast8(ya + 8));
                        c = _mm512_dpbusd_epi32(c, hi[2 * e + 1], q4kt_bcast8(yc + 8));
                        isum[k] = _mm512_dpwssd_epi32(isum[k], a, sa);
                        isum[k] = _mm512_dpwssd_epi32(isum[k], c, sb);
                    }
                    continue;
                }
                __m512i a = _mm512_setzero_si512(), c = _mm512_setzero_si512();
KERNELS_UNROLL8
                for (int q = 0; q < 4; q++) {
                    a = _mm512_dpbusd_epi32(a, lo[q], q4kt_bcast8(b->qs + 64 * p + 8 * q));
                    c = _mm512_dpbusd_epi32(c, hi[q], q4kt_bcast8(b->qs + 64 * p + 32 + 8 * q));
                }
                isum[k] = _mm512_dpwssd_epi32(isum[k], a, sa);
                isum[k] = _mm512_dpwssd_epi32(isum[k], c, sb);
            }
        }
KERNELS_UNROLL8
        for (int k = 0; k < nt; k++) {
            const struct block_q8_K *b = (const struct block_q8_K *)xrow(x, xs, k) + i;
            if (canon) {
                __m512i sp[2];
                q4kt_bsum_pairs(b, sp);
                __m512i ms = _mm512_dpwssd_epi32(_mm512_setzero_si512(), bv.mp[0], sp[0]);
                ms = tile_fold(_mm512_dpwssd_epi32(ms, bv.mp[1], sp[1]));
                __m512 dx = _mm512_set1_ps(b->d);
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tile_fold(isum[k])),
                                         _mm512_mul_ps(bv.d, dx), acc[k]);
                acc[k] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(bv.dmin, dx),
                                          acc[k]);
                continue;
            }
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[k]),
                                     _mm512_mul_ps(bv.d, _mm512_set1_ps(b->d)), acc[k]);
            const float *t = (const float *)(const void *)((const char *)xrow(x, xs, k) +
                                                           trailer) + 8 * i;
KERNELS_UNROLL8
            for (int c = 0; c < 4; c++) {
                double pair;
                memcpy(&pair, t + 2 * c, 8);
                acc[k] = _mm512_fnmadd_ps(bv.mw[c], _mm512_castpd_ps(_mm512_set1_pd(pair)),
                                          acc[k]);
            }
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < nt; k++) {
        if (canon)
            tile_store8_even(acc[k], y + (size_t)k * ys, nr);
        else
            tile_store8(acc[k], y + (size_t)k * ys, nr);
    }
}

/* 1 <= n_r <= 8, 1 <= n_x <= TILE_T, n a multiple of QK_K */
static void avx512_tile_q4_K(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                             int n_x, int64_t n, float *y, size_t ys)
{
    const void *rows[8];
    tile_row_ptrs(w, ws, n_r, rows);
    KERNELS_NX8_SWITCH(n_x, q4kt_body, rows, 8 * ws, x, xs, n, y, ys, n_r, 0, 0);
}
static void avx512c_tile_q4_K(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                              int n_x, int64_t n, float *y, size_t ys)
{
    const void *rows[8];
    tile_row_ptrs(w, ws, n_r, rows);
    KERNELS_NX8_SWITCH(n_x, q4kt_body, rows, 8 * ws, x, xs, n, y, ys, n_r, 1, 0);
}

/* Q5_K: the Q4_K tile with the fifth bits (q5 = 1); no AMX kernel, so one form */
static void avx512_tile_q5_K(const void *w, size_t ws, int n_r, const void *x, size_t xs,
                             int n_x, int64_t n, float *y, size_t ys)
{
    const void *rows[8];
    tile_row_ptrs(w, ws, n_r, rows);
    KERNELS_NX8_SWITCH(n_x, q4kt_body, rows, 8 * ws, x, xs, n, y, ys, n_r, 0, 1);
}

/* ---------------------------------------------------- register-tiled Q6_K (prefill, decode) */

/*
 * tile_q of Q6_K: 8 rows x TILE_T tokens, one zmm accumulator per token, as tile32 and
 * q4kt_body. The 6-bit quants (0..63) are vpdpbusd's u8 operand against the Q8_K
 * activations (s8); the -32 offset goes through the activation's 16-quant sums
 * (bsums), as in the one-row dot below. Where the one-row dot pays, per token and
 * block, a bias madd, a shift, a subtraction, a scale broadcast, a cvt and an fma for
 * one row, this tile pays them once for 8 rows.
 *  - the weights are transposed raw (the ql halves and qh of each 128-quant half, 32
 *    bytes per row each, tile_transpose8) and the 6-bit quants assembled after the
 *    transpose, so the assembly serves all 8 rows: Q[q] holds quants 8q..8q+7 of a
 *    32-quant chunk of row TILE_ROW[j] in 64-bit lane j.
 *  - a 16-quant sub-block's sum over the 8 quants of one lane can reach 8 * 63 * 128 =
 *    64,512, past s16, so each dpbusd (4 quants per s32 lane, |sum| <= 32,256) starts
 *    from zero; the two of a sub-block are packed to s16 (vpackssdw, exact) and one
 *    vpdpwssd multiplies both by the row's scale into the token's s32 block sum. The pack
 *    interleaves per 128-bit lane L, so every s32 vector here holds row TILE_ROW[2L] in
 *    dwords 0 and 2 of lane L and row TILE_ROW[2L + 1] in dwords 1 and 3 ("layout P");
 *    scales, row d and bias scales are built in it once per block for all tokens.
 *  - the bias 32 * sum_s sc_s bsum_s: four vpdpwssd per token and block, scale pairs of
 *    layout P against the bsum pairs as two 128-bit broadcasts and their pair swaps.
 *  - integer sums are exact in s32; per block and token the row's two dwords are added
 *    (exact), then one cvt, one vmulps (8 rows' d x the token's d) and an fma: the
 *    canonical form fma(float(block sum), d * dx, acc) in block order, what the one-row
 *    dot below (gemv_q, single tokens) and x86_amx.c compute, so all three agree bit for
 *    bit and a token's result does not depend on its batch. Fewer than 8 rows repeat the
 *    last row.
 * Measured (Ice Lake VM, one thread, in-process A/B against the one-row dot, best of 12):
 * 1536 x 8960 x 64 tokens 101 -> 146 GFLOP/s, 8960 x 1536 117 -> 145 (with the pshufb
 * controls built by scalar byte stores on each call: 140 and 128).
 */

/* pshufb controls (words: low byte 0x80, i.e. zero; high byte the index of the byte
 * wanted), which q6kt_words then sign-extends. Scale control s (sub-block s & 7 of clo /
 * chi): words (j0, j0, j1, j1) twice, j0's scales at bytes 0..7, j1's at 8..15. */
static inline __m512i q6kt_sctl(int s)
{
    return _mm512_add_epi16(
        _mm512_broadcast_i32x4(_mm_setr_epi16(0x80, 0x80, 0x880, 0x880, 0x80, 0x80, 0x880, 0x880)),
        _mm512_set1_epi16((short)(s << 8)));
}

static inline __m512i q6kt_words(__m512i c, __m512i ctrl)
{
    return _mm512_srai_epi16(_mm512_shuffle_epi8(c, ctrl), 8);
}

/* the per-block values of 8 rows in layout P */
struct q6kt_block {
    __m512i clo, chi; /* lane L: scales 0..7 (clo) or 8..15 (chi) of row TILE_ROW[2L],
                       * then those of row TILE_ROW[2L + 1], as bytes */
    __m512i bs[4];    /* bias scale pairs: dword p of lane L, row TILE_ROW[2L + (p & 1)],
                       * pair p, p ^ 1, 4 + p, 4 + (p ^ 1) (scales 2 pair, 2 pair + 1) */
    __m512 d;         /* d of the dword's row */
};

KERNELS_INLINE void q6kt_block_values(const void *const *w, int64_t i, const __m512i *bctl,
                                      struct q6kt_block *v)
{
    const struct block_q6_K *b[8];
    for (int r = 0; r < 8; r++)
        b[r] = (const struct block_q6_K *)w[r] + i;
    /* lane L of x: the 16 scales of row TILE_ROW[2L] = 0, 4, 2, 6; of y: TILE_ROW[2L + 1] */
    __m512i x =
        _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)b[0]->scales));
    x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)(const void *)b[4]->scales), 1);
    x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)(const void *)b[2]->scales), 2);
    x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)(const void *)b[6]->scales), 3);
    __m512i y =
        _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)b[1]->scales));
    y = _mm512_inserti32x4(y, _mm_loadu_si128((const __m128i *)(const void *)b[5]->scales), 1);
    y = _mm512_inserti32x4(y, _mm_loadu_si128((const __m128i *)(const void *)b[3]->scales), 2);
    y = _mm512_inserti32x4(y, _mm_loadu_si128((const __m128i *)(const void *)b[7]->scales), 3);
    v->clo = _mm512_unpacklo_epi64(x, y);
    v->chi = _mm512_unpackhi_epi64(x, y);
    v->bs[0] = q6kt_words(v->clo, bctl[0]);
    v->bs[1] = q6kt_words(v->clo, bctl[1]);
    v->bs[2] = q6kt_words(v->chi, bctl[0]);
    v->bs[3] = q6kt_words(v->chi, bctl[1]);
    /* words h0 h1 h4 h5 h2 h3 h6 h7: dword L is lane L's row pair; each twice */
    __m128i hv = _mm_set_epi16((short)b[7]->d, (short)b[6]->d, (short)b[3]->d, (short)b[2]->d,
                               (short)b[5]->d, (short)b[4]->d, (short)b[1]->d, (short)b[0]->d);
    v->d =
        _mm512_cvtph_ps(_mm256_set_m128i(_mm_unpackhi_epi32(hv, hv), _mm_unpacklo_epi32(hv, hv)));
}

/* a token's accumulator (rows TILE_ROW[2L], TILE_ROW[2L + 1] in dwords 0, 1 of lane L)
 * into y[0..nr) */
static inline void q6kt_store8(__m512 acc, float *y, int nr)
{
    _Alignas(64) float v[16];
    _mm512_store_ps(v, acc);
    for (int l = 0; l < 4; l++)
        for (int e = 0; e < 2; e++)
            if (TILE_ROW[2 * l + e] < nr) y[TILE_ROW[2 * l + e]] = v[4 * l + e];
}

/* chunk (32 quants) sums of one token into isum: sub-blocks sa (Q[0], Q[1]) and sb
 * (Q[2], Q[3]) against the chunk's activations a */
KERNELS_INLINE __m512i q6kt_chunk(__m512i isum, const __m512i *Q, const int8_t *a, __m512i sa,
                                  __m512i sb)
{
    __m512i p[4];
KERNELS_UNROLL8
    for (int q = 0; q < 4; q++)
        p[q] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), Q[q], q4kt_bcast8(a + 8 * q));
    isum = _mm512_dpwssd_epi32(isum, _mm512_packs_epi32(p[0], p[1]), sa);
    return _mm512_dpwssd_epi32(isum, _mm512_packs_epi32(p[2], p[3]), sb);
}

KERNELS_INLINE void q6kt_body(const void *const *w, size_t ahead, const void *x, size_t xs,
                              int64_t n, float *y, size_t ys, int nr, const int nt)
{
    __m512 acc[TILE_T];
KERNELS_UNROLL8
    for (int k = 0; k < nt; k++)
        acc[k] = _mm512_setzero_ps();
    /* bias pairs: dword p takes scales (2 pair, 2 pair + 1) of row j0 (p even) or j1 (p
     * odd), pair = p (bctl[0]) or p ^ 1 (bctl[1]) */
    const __m512i bctl[2] = {_mm512_broadcast_i32x4(_mm_setr_epi16(0x080, 0x180, 0xA80, 0xB80,
                                                                   0x480, 0x580, 0xE80, 0xF80)),
                             _mm512_broadcast_i32x4(_mm_setr_epi16(0x280, 0x380, 0x880, 0x980,
                                                                   0x680, 0x780, 0xC80, 0xD80))};
    const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
    for (int64_t i = 0; i < n / QK_K; i++) {
        /* the next tile's rows, as in q4kt_body; 210-byte blocks: 4 lines each */
        tile_prefetch8(w, (size_t)i * sizeof(struct block_q6_K) + ahead, 4);
        struct q6kt_block bv;
        q6kt_block_values(w, i, bctl, &bv);
        __m512i isum[TILE_T];
KERNELS_UNROLL8
        for (int k = 0; k < nt; k++)
            isum[k] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i QH[4];
            tile_load8(w, i, sizeof(struct block_q6_K),
                       offsetof(struct block_q6_K, qh) + 32 * (size_t)h, QH);
            /* g = 0: ql bytes 0..31 of the half, chunks 0 (low nibbles, qh bits 0-1) and 2
             * (high nibbles, bits 4-5); g = 1: bytes 32..63, chunks 1 (bits 2-3) and 3 (6-7) */
            for (int g = 0; g < 2; g++) {
                __m512i QL[4], A[4], B[4];
                tile_load8(w, i, sizeof(struct block_q6_K),
                           offsetof(struct block_q6_K, ql) + 64 * (size_t)h + 32 * (size_t)g, QL);
                for (int q = 0; q < 4; q++) {
                    __m512i ha = g ? _mm512_slli_epi16(QH[q], 2) : _mm512_slli_epi16(QH[q], 4);
                    __m512i hb = g ? _mm512_srli_epi16(QH[q], 2) : QH[q];
                    /* nibble | (high bits & 0x30) */
                    A[q] = _mm512_ternarylogic_epi32(_mm512_and_si512(QL[q], m4), ha, m30, 0xF8);
                    B[q] = _mm512_ternarylogic_epi32(
                        _mm512_and_si512(_mm512_srli_epi16(QL[q], 4), m4), hb, m30, 0xF8);
                }
                /* sub-blocks of chunk c = 4h + j: 2c and 2c + 1; A is chunk j = g, B j = g + 2 */
                int ca = 4 * h + g, cb = 4 * h + g + 2;
                __m512i src_a = ca < 4 ? bv.clo : bv.chi, src_b = cb < 4 ? bv.clo : bv.chi;
                __m512i sa0 = q6kt_words(src_a, q6kt_sctl((2 * ca) & 7));
                __m512i sa1 = q6kt_words(src_a, q6kt_sctl((2 * ca + 1) & 7));
                __m512i sb0 = q6kt_words(src_b, q6kt_sctl((2 * cb) & 7));
                __m512i sb1 = q6kt_words(src_b, q6kt_sctl((2 * cb + 1) & 7));
KERNELS_UNROLL8
                for (int k = 0; k < nt; k++) {
                    const struct block_q8_K *a = (const struct block_q8_K *)xrow(x, xs, k) + i;
                    isum[k] = q6kt_chunk(isum[k], A, a->qs + 32 * ca, sa0, sa1);
                    isum[k] = q6kt_chunk(isum[k], B, a->qs + 32 * cb, sb0, sb1);
                }
            }
        }
KERNELS_UNROLL8
        for (int k = 0; k < nt; k++) {
            const struct block_q8_K *a = (const struct block_q8_K *)xrow(x, xs, k) + i;
            __m512i lo =
                _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)a->bsums));
            __m512i hi = _mm512_broadcast_i32x4(
                _mm_loadu_si128((const __m128i *)(const void *)(a->bsums + 8)));
            __m512i bias = _mm512_dpwssd_epi32(_mm512_setzero_si512(), bv.bs[0], lo);
            bias = _mm512_dpwssd_epi32(bias, bv.bs[1], _mm512_shuffle_epi32(lo, 0xB1));
            bias = _mm512_dpwssd_epi32(bias, bv.bs[2], hi);
            bias = _mm512_dpwssd_epi32(bias, bv.bs[3], _mm512_shuffle_epi32(hi, 0xB1));
            __m512i s = _mm512_sub_epi32(isum[k], _mm512_slli_epi32(bias, 5));
            /* the row's whole block sum (exact) in dwords 0 and 1 of each lane */
            s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, 0x4E));
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s),
                                     _mm512_mul_ps(bv.d, _mm512_set1_ps(a->d)), acc[k]);
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < nt; k++)
        q6kt_store8(acc[k], y + (size_t)k * ys, nr);
}

/* 1 <= n_r <= 8, 1 <= n_x <= TILE_T, n a multiple of QK_K */
static void avx512_tile_q6_K(const void *w, size_t ws, int n_r, const void *x, size_t xs, int n_x,
                             int64_t n, float *y, size_t ys)
{
    const void *rows[8];
    tile_row_ptrs(w, ws, n_r, rows);
    KERNELS_NX8_SWITCH(n_x, q6kt_body, rows, 8 * ws, x, xs, n, y, ys, n_r);
}
/* ======================================================================== K-quants, 512-bit */

/* Q6_K against Q8_K: a 64-byte load of ql holds chunks 4h (low nibbles of bytes 0..31)
 * and 4h+1 (low nibbles of 32..63); their high bits come from the same 32 qh bytes
 * shifted by 4 and 2, one variable shift per half. The -32 offset goes through the
 * activation block sums as in the AVX2 version (exact in s32). */
/* The canonical form: the block's integer sum is reduced to one s32 (exact) and each
 * token's result is a scalar fma(float(isum), d * dx, acc) per block in block order, the
 * arithmetic of the Q6_K tile above and of x86_amx.c's Q6_K, bit for bit. */
KERNELS_INLINE void q6k_body(const void *w, const void *x, size_t xs, int64_t n, float *out,
                         const int n_x)
{
    float accs[KERNELS_NX_MAX] = {0};
    const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
    const __m512i sh_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    /* After vpackssdw of the dpbusd sums of q[2h] (A) and q[2h+1] (B), 128-bit lane L
     * holds A's s32 lanes 4L..4L+3 (sub-block 8h + L) then B's (8h + 4 + L) as s16. */
    __m512i idx[2];
    for (int h = 0; h < 2; h++) {
        short e[32];
        for (int j = 0; j < 32; j++)
            e[j] = (short)(8 * h + j / 8 + ((j % 8) >= 4 ? 4 : 0));
        idx[h] = _mm512_loadu_si512((const void *)e);
    }
    for (int64_t i = 0; i < n / QK_K; i++) {
        const struct block_q6_K *b = (const struct block_q6_K *)w + i;
        kernels_prefetch(b, 4); /* 210-byte blocks */
        __m512i q[4], scv[2];
KERNELS_UNROLL8
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512((const void *)(b->ql + 64 * h));
            __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
            q[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                       _mm512_and_si512(_mm512_sllv_epi16(qh, sh_a), m30));
            q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                           _mm512_and_si512(_mm512_srlv_epi16(qh, sh_b), m30));
        }
        __m128i s8 = _mm_loadu_si128((const __m128i *)b->scales);
        __m256i sc_all = _mm256_cvtepi8_epi16(s8);
        __m512i sc512 = _mm512_castsi256_si512(sc_all);
        scv[0] = _mm512_permutexvar_epi16(idx[0], sc512);
        scv[1] = _mm512_permutexvar_epi16(idx[1], sc512);
        float d = fp16(b->d);
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++) {
            const struct block_q8_K *y = (const struct block_q8_K *)xrow(x, xs, k) + i;
            __m512i s4[4];
KERNELS_UNROLL8
            for (int c = 0; c < 4; c++) /* 4 x 63 x 128 fits s16: the packs never saturate */
                s4[c] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[c],
                                            _mm512_loadu_si512((const void *)(y->qs + 64 * c)));
            __m512i sumi = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
                                               _mm512_packs_epi32(s4[0], s4[1]), scv[0]);
            sumi = _mm512_dpwssd_epi32(sumi, _mm512_packs_epi32(s4[2], s4[3]), scv[1]);
            __m256i bias = _mm256_madd_epi16(sc_all,
                                             _mm256_loadu_si256((const __m256i *)y->bsums));
            sumi = _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(_mm256_slli_epi32(bias, 5)));
            accs[k] = fmaf((float)_mm512_reduce_add_epi32(sumi), d * y->d, accs[k]);
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++)
        out[k] = accs[k];
}

/* one token (gemv_q): this dot (q6k_body with one token; no table entry uses it for
 * more since the tile came) row by row, bit for bit what the Q6_K tile gives the token
 * in a batch (both are the canonical form); the tile's shared weight unpacking does not
 * pay for one token (measured 8960 x 1536, one thread, best of 12: 38 against 62
 * GFLOP/s) */
static void avx512_gemv_q6_K(const struct kernels_tensor_view *W, const void *act, float *y,
                             int64_t rb, int64_t re)
{
    for (int64_t r = rb; r < re; r++)
        q6k_body((const char *)W->data + (size_t)r * W->row_bytes, act, 0, W->cols, y + r, 1);
}

static void set_tile(struct kernels_table *t, enum kernels_type ty, kernels_tile_fn f)
{
    t->tile_q[ty] = f;
    t->tile_rows[ty] = 8;
    t->tile_toks[ty] = TILE_T;
}

/* The tiles serve every product of their types (Q6_K: all but single tokens, which take
 * its one-row dot with the same bits), so those types need no other AVX-512 dot. */
void kernels_avx512_fill(struct kernels_table *t)
{
    set_tile(t, KERNELS_Q8_0, avx512_tile_q8_0);
    set_tile(t, KERNELS_Q4_0, avx512_tile_q4_0);
    set_tile(t, KERNELS_Q5_0, avx512_tile_q5_0);
    set_tile(t, KERNELS_Q4_K, avx512_tile_q4_K);
    set_tile(t, KERNELS_Q5_K, avx512_tile_q5_K);
    set_tile(t, KERNELS_Q6_K, avx512_tile_q6_K);
    t->gemv_q[KERNELS_Q6_K] = avx512_gemv_q6_K;
}

/* the canonical tiles the AMX kernels agree with (see tile_fold) */
void kernels_avx512_canon_fill(struct kernels_table *t)
{
    set_tile(t, KERNELS_Q8_0, avx512c_tile_q8_0);
    set_tile(t, KERNELS_Q4_K, avx512c_tile_q4_K);
    /* Q6_K's tile and one-token dot are canonical already (kernels_avx512_fill) */
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int kernels_x86_avx512_unused; /* ISO C forbids an empty translation unit */
#endif
