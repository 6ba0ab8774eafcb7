/*
 * x86_amx: matrix products on Intel AMX (Sapphire Rapids and later: AMX-TILE, AMX-INT8)
 * for the prefill of Q8_0 and Q4_K weights; installed over the AVX-512 table.
 *
 * One TDPBSSD/TDPBUSD multiplies a 16 x 64-byte tile of weights (16 rows) by a 16 x
 * 64-byte tile of activations in the "VNNI" layout (dword t of row kk holds quants
 * 4kk..4kk+3 of token t) into 16 x 16 s32 sums, 16,384 products in a few nanoseconds,
 * 30-50 times what vpdpbusd does per instruction. Everything else is AVX-512 work on those
 * sums, so the design keeps it small:
 *  - Q8_0: the weight tile is loaded straight from the GGUF blocks (row stride = the row's
 *    bytes, 32 quants at offset 2 of each 34-byte block), K = 32 (one block per product,
 *    since each block has its own scale). Per block and row: one cvt, one vmulps of the
 *    row's scale by the 16 tokens' scales and one fma into the row's accumulator, which
 *    holds 16 tokens.
 *  - Q4_K: per 16-row panel the quants are packed once per call as w = q * sc (the
 *    6-bit sub-block scale applied, <= 945) split into a low byte and a high byte tile, so
 *    the whole block's integer sum sum_j sc_j sum_k q_k x_k = C_lo + 256 C_hi comes out of
 *    8 products over K = 256 with no per-sub-block work; the mins term sum_j m_j S_j
 *    (S_j: the activation's sums of 32 quants, from the Q8_K bsums) is 4 vpdpwssd per row
 *    and block on the 16 tokens.
 * The activations are packed once per call per 16 tokens (all blocks), then each 16-row
 * panel meets each 16-token group. Loop order as in dispatch.c's run_rows: a block of
 * rows (L2-sized) outside, the token groups inside, so weights stream from memory once
 * and a group's packed activations stay in L2 across the block's panels.
 *
 * Bit-identical with the canonical AVX-512 tiles (x86_avx512.c, tile_fold): per block,
 * acc = fma(float(isum), d_w * d_x, acc) (and for Q4_K then acc = fnmadd(float(msum),
 * dmin * d_x, acc)), in block order, from exact integer sums. dispatch.c runs whole
 * 16 x 16 tiles here and the remaining rows and tokens on those tiles, so a token's
 * result does not depend on its batch (test_kernels checks the bits).
 *
 * Threading: tile state is per thread; each call loads its tile configuration and
 * releases it. Packing scratch is per thread (kernels_scratch).
 * Linux only runs AMX code after the process asked for the tile data state
 * (arch_prctl ARCH_REQ_XCOMP_PERM): kernels_amx_usable() does that once.
 */
#if defined(__x86_64__) && defined(__linux__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx512bf16,amx-tile,amx-int8,amx-bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx512bf16,amx-tile,amx-int8,amx-bf16")
#endif

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels/impl.h"

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int kernels_amx_usable(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    if (!(d & (1u << 24)) || !(d & (1u << 25))) /* AMX-TILE, AMX-INT8 */
        return 0;
    /* the kernel keeps AMX off for a process until it asks (Linux 5.16+) */
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

/* ------------------------------------------------------------------ tile config */

struct amx_cfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* tiles 0..3: 16 x 16 s32 sums; 4, 5: weights (16 rows x a_colsb); 6, 7: activations
 * (b_rows x 64 bytes) */
static void amx_config(int a_colsb, int b_rows)
{
    _Alignas(64) struct amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = (uint8_t)(t >= 6 ? b_rows : 16);
        cfg.colsb[t] = (uint16_t)(t == 4 || t == 5 ? a_colsb : 64);
    }
    /* GCC 12 does not model ldtilecfg as reading the struct and dropped the stores
     * above at -O2 (SIGILL at the first tile load): make them visible first */
    __asm__ __volatile__("" : : "m"(cfg) : "memory");
    _tile_loadconfig(&cfg);
}

/* rows per block of rows: about `bytes` of weights, a multiple of 16, at least 16 */
static int64_t rows_per_block(size_t row_bytes, size_t bytes)
{
    int64_t r = (int64_t)(bytes / (row_bytes ? row_bytes : 1)) / 16 * 16;
    return r < 16 ? 16 : r;
}

/* acc[r] holds tokens 0..15 of row r: y[t * ys + r] = acc[r][t] */
static void store_transposed(const __m512 *acc, float *y, size_t ys)
{
    _Alignas(64) float e[16][16];
    for (int r = 0; r < 16; r++)
        _mm512_store_ps(e[r], acc[r]);
    for (int t = 0; t < 16; t++) {
        __m512 v = _mm512_i32gather_ps(
            _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208,
                              224, 240),
            &e[0][t], 4);
        _mm512_storeu_ps(y + (size_t)t * ys, v);
    }
}

/* ------------------------------------------------------------------------- Q8_0 */

#define Q8_B_BYTES 512 /* one block of 16 tokens: 8 rows of 16 dwords */

/* activations of tokens g*16..g*16+15 into B tiles (per block i: 512 bytes) and their
 * scales dx[i][16] */
static void q8_pack_group(const void *act, size_t xs, int64_t nb, uint8_t *bq, float *dx)
{
    for (int t = 0; t < 16; t++) {
        const struct block_q8_0 *b = (const struct block_q8_0 *)(const void *)
                                         ((const char *)act + (size_t)t * xs);
        for (int64_t i = 0; i < nb; i++) {
            uint32_t *dst = (uint32_t *)(void *)(bq + (size_t)i * Q8_B_BYTES) + t;
            for (int kk = 0; kk < 8; kk++)
                memcpy(dst + 16 * kk, b[i].qs + 4 * kk, 4);
            dx[i * 16 + t] = _cvtsh_ss(b[i].d);
        }
    }
}

KERNELS_INLINE void q8_post(const int32_t *c, const float *dw, __m512 dxv, __m512 *acc)
{
    for (int r = 0; r < 16; r++)
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const void *)(c + 16 * r))),
                                 _mm512_mul_ps(_mm512_set1_ps(dw[r]), dxv), acc[r]);
}

/* one 16-row panel (quants at a, row stride rs) x one 16-token group */
static void q8_panel(const char *a, size_t rs, int64_t nb, const uint8_t *bq, const float *dx,
                     const float *dw, float *y, size_t ys)
{
    _Alignas(64) int32_t c0[256], c1[256];
    __m512 acc[16];
    for (int r = 0; r < 16; r++)
        acc[r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) { /* two blocks in flight: the unit works while we post */
        _tile_loadd(4, a + (size_t)i * 34, rs);
        _tile_loadd(6, bq + (size_t)i * Q8_B_BYTES, 64);
        _tile_zero(0);
        _tile_dpbssd(0, 4, 6);
        _tile_loadd(5, a + (size_t)(i + 1) * 34, rs);
        _tile_loadd(7, bq + (size_t)(i + 1) * Q8_B_BYTES, 64);
        _tile_zero(1);
        _tile_dpbssd(1, 5, 7);
        _tile_stored(0, c0, 64);
        _tile_stored(1, c1, 64);
        q8_post(c0, dw + i * 16, _mm512_load_ps(dx + i * 16), acc);
        q8_post(c1, dw + (i + 1) * 16, _mm512_load_ps(dx + (i + 1) * 16), acc);
    }
    if (i < nb) {
        _tile_loadd(4, a + (size_t)i * 34, rs);
        _tile_loadd(6, bq + (size_t)i * Q8_B_BYTES, 64);
        _tile_zero(0);
        _tile_dpbssd(0, 4, 6);
        _tile_stored(0, c0, 64);
        q8_post(c0, dw + i * 16, _mm512_load_ps(dx + i * 16), acc);
    }
    store_transposed(acc, y, ys);
}

static int amx_q8_0(const struct kernels_tensor_view *W, const void *act, size_t xs, float *y,
                    int n_tok, int64_t rb, int64_t re)
{
    const int64_t nb = W->cols / QK8_0;
    const int G = n_tok / 16;
    const int64_t rblk = rows_per_block(W->row_bytes, 192 * 1024);
    size_t b_bytes = (size_t)G * (size_t)nb * Q8_B_BYTES;
    size_t dx_bytes = (size_t)G * (size_t)nb * 16 * sizeof(float);
    size_t dw_bytes = (size_t)rblk * (size_t)nb * sizeof(float);
    uint8_t *s = kernels_scratch(b_bytes + dx_bytes + dw_bytes);
    if (!s)
        return -1;
    uint8_t *bq = s;
    float *dx = (float *)(void *)(s + b_bytes), *dw = (float *)(void *)(s + b_bytes + dx_bytes);
    for (int g = 0; g < G; g++)
        q8_pack_group((const char *)act + (size_t)g * 16 * xs, xs, nb,
                      bq + (size_t)g * (size_t)nb * Q8_B_BYTES, dx + (size_t)g * (size_t)nb * 16);
    amx_config(32, 8);
    for (int64_t r0 = rb; r0 < re; r0 += rblk) {
        int64_t r1 = r0 + rblk < re ? r0 + rblk : re;
        /* the block's row scales, per panel [block][16 rows] */
        for (int64_t r = r0; r < r1; r++) {
            const struct block_q8_0 *b = (const struct block_q8_0 *)(const void *)
                                             ((const char *)W->data + (size_t)r * W->row_bytes);
            float *d = dw + ((r - r0) / 16) * nb * 16 + (r - r0) % 16;
            for (int64_t i = 0; i < nb; i++)
                d[i * 16] = _cvtsh_ss(b[i].d);
        }
        for (int g = 0; g < G; g++)
            for (int64_t p = r0; p < r1; p += 16)
                q8_panel((const char *)W->data + (size_t)p * W->row_bytes + 2, W->row_bytes, nb,
                         bq + (size_t)g * (size_t)nb * Q8_B_BYTES,
                         dx + (size_t)g * (size_t)nb * 16, dw + ((p - r0) / 16) * nb * 16,
                         y + (size_t)g * 16 * (size_t)W->rows + (size_t)p, (size_t)W->rows);
    }
    _tile_release();
    return 0;
}

/* ------------------------------------------------------------------------- Q4_K */

/* per block of a 16-token group: B tiles of the 4 K-chunks of 64 quants (1 KiB each),
 * the tokens' d, and the bsum word pairs (S_2c, S_2c+1) for c = 0..3 */
struct q4_bgrp {
    uint8_t bq[4][1024];
    float dx[16];
    uint32_t sp[4][16];
};
/* per block of a 16-row panel: the low and high byte tiles of q * sc per K-chunk, d,
 * dmin and the min word pairs (m_2c, m_2c+1) of each row */
struct q4_apan {
    uint8_t lo[4][1024];
    uint8_t hi[4][1024];
    float d[16];
    float dm[16];
    uint32_t mp[16][4];
};

static void q4_pack_group(const void *act, size_t xs, int64_t nb, struct q4_bgrp *bg)
{
    for (int t = 0; t < 16; t++) {
        const struct block_q8_K *b = (const struct block_q8_K *)(const void *)
                                         ((const char *)act + (size_t)t * xs);
        for (int64_t i = 0; i < nb; i++) {
            struct q4_bgrp *o = bg + i;
            for (int c = 0; c < 4; c++) {
                uint32_t *dst = (uint32_t *)(void *)o->bq[c] + t;
                for (int kk = 0; kk < 16; kk++)
                    memcpy(dst + 16 * kk, b[i].qs + 64 * c + 4 * kk, 4);
                int s0 = b[i].bsums[4 * c] + b[i].bsums[4 * c + 1];
                int s1 = b[i].bsums[4 * c + 2] + b[i].bsums[4 * c + 3];
                o->sp[c][t] = (uint32_t)(uint16_t)s0 | (uint32_t)(uint16_t)s1 << 16;
            }
            o->dx[t] = b[i].d;
        }
    }
}

/* block i of 16 rows (row r at w + r * rs) into the panel layout */
static void q4_pack_panel(const char *w, size_t rs, int64_t i, struct q4_apan *o)
{
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const __m512i lo8 = _mm512_set1_epi16(0xFF);
    for (int r = 0; r < 16; r++) {
        const struct block_q4_K *b = (const struct block_q4_K *)(const void *)(w + (size_t)r * rs) + i;
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; j++)
            q4k_scale_min(j, b->scales, &sc[j], &m[j]);
        o->d[r] = _cvtsh_ss(b->d);
        o->dm[r] = _cvtsh_ss(b->dmin);
        for (int c = 0; c < 4; c++) {
            o->mp[r][c] = (uint32_t)m[2 * c] | (uint32_t)m[2 * c + 1] << 16;
            __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(b->qs + 32 * c));
            __m512i qa = _mm512_cvtepu8_epi16(_mm256_and_si256(raw, m4));
            __m512i qb = _mm512_cvtepu8_epi16(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
            __m512i wa = _mm512_mullo_epi16(qa, _mm512_set1_epi16(sc[2 * c]));
            __m512i wb = _mm512_mullo_epi16(qb, _mm512_set1_epi16(sc[2 * c + 1]));
            uint8_t *l = o->lo[c] + 64 * r, *h = o->hi[c] + 64 * r;
            _mm256_storeu_si256((__m256i *)(void *)l, _mm512_cvtepi16_epi8(_mm512_and_si512(wa, lo8)));
            _mm256_storeu_si256((__m256i *)(void *)(l + 32),
                                _mm512_cvtepi16_epi8(_mm512_and_si512(wb, lo8)));
            _mm256_storeu_si256((__m256i *)(void *)h, _mm512_cvtepi16_epi8(_mm512_srli_epi16(wa, 8)));
            _mm256_storeu_si256((__m256i *)(void *)(h + 32),
                                _mm512_cvtepi16_epi8(_mm512_srli_epi16(wb, 8)));
        }
    }
}

KERNELS_INLINE void q4_post(const int32_t *clo, const int32_t *chi, const struct q4_apan *a,
                            const struct q4_bgrp *b, __m512 *acc)
{
    __m512 dxv = _mm512_load_ps(b->dx);
    __m512i sp[4];
    for (int c = 0; c < 4; c++)
        sp[c] = _mm512_load_si512((const void *)b->sp[c]);
    for (int r = 0; r < 16; r++) {
        __m512i is = _mm512_add_epi32(_mm512_load_si512((const void *)(clo + 16 * r)),
                                      _mm512_slli_epi32(_mm512_load_si512((const void *)(chi + 16 * r)), 8));
        __m512i ms = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++)
            ms = _mm512_dpwssd_epi32(ms, sp[c], _mm512_set1_epi32((int)a->mp[r][c]));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(_mm512_set1_ps(a->d[r]), dxv),
                                 acc[r]);
        acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms),
                                  _mm512_mul_ps(_mm512_set1_ps(a->dm[r]), dxv), acc[r]);
    }
}

/* ------------------------------------------------------------------------- Q6_K */

/*
 * Q6_K: w = sc_j (q - 32) (signed 8-bit scale of 16 quants, 6-bit q) is in [-4064, 4096]:
 * a low byte (unsigned, TDPBUSD) and a high part w >> 8 in [-16, 16] (signed, TDPBSSD),
 * isum = C_lo + 256 C_hi, the whole block's exact integer sum; one cvt, mul and fma
 * per block, row and 16 tokens. The activations' B tiles are those of Q4_K.
 */
struct q6_apan {
    uint8_t lo[4][1024];
    int8_t hi[4][1024];
    float d[16];
};

static void q6_pack_panel(const char *w, size_t rs, int64_t i, struct q6_apan *o)
{
    const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
    const __m512i sh_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i lo8 = _mm512_set1_epi16(0xFF), k32 = _mm512_set1_epi16(32);
    for (int r = 0; r < 16; r++) {
        const struct block_q6_K *b = (const struct block_q6_K *)(const void *)(w + (size_t)r * rs) + i;
        o->d[r] = _cvtsh_ss(b->d);
        __m512i q[4]; /* quants 64c..64c+63 in order, 0..63 (as in x86_avx512.c's q6k_body) */
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512((const void *)(b->ql + 64 * h));
            __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(b->qh + 32 * h)));
            q[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                       _mm512_and_si512(_mm512_sllv_epi16(qh, sh_a), m30));
            q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                           _mm512_and_si512(_mm512_srlv_epi16(qh, sh_b), m30));
        }
        for (int c = 0; c < 4; c++)
            for (int half = 0; half < 2; half++) { /* 32 quants: sub-blocks 4c + 2 half + 0, 1 */
                __m256i qq = half ? _mm512_extracti64x4_epi64(q[c], 1) : _mm512_castsi512_si256(q[c]);
                int j = 4 * c + 2 * half;
                __m512i sc = _mm512_inserti64x4(_mm512_set1_epi16(b->scales[j]),
                                                _mm256_set1_epi16(b->scales[j + 1]), 1);
                __m512i wv = _mm512_mullo_epi16(_mm512_sub_epi16(_mm512_cvtepu8_epi16(qq), k32), sc);
                _mm256_storeu_si256((__m256i *)(void *)(o->lo[c] + 64 * r + 32 * half),
                                    _mm512_cvtepi16_epi8(_mm512_and_si512(wv, lo8)));
                _mm256_storeu_si256((__m256i *)(void *)(o->hi[c] + 64 * r + 32 * half),
                                    _mm512_cvtepi16_epi8(_mm512_srai_epi16(wv, 8)));
            }
    }
}

KERNELS_INLINE void q6_post(const int32_t *clo, const int32_t *chi, const struct q6_apan *a,
                            const struct q4_bgrp *b, __m512 *acc)
{
    __m512 dxv = _mm512_load_ps(b->dx);
    for (int r = 0; r < 16; r++) {
        __m512i is = _mm512_add_epi32(_mm512_load_si512((const void *)(clo + 16 * r)),
                                      _mm512_slli_epi32(_mm512_load_si512((const void *)(chi + 16 * r)), 8));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(_mm512_set1_ps(a->d[r]), dxv),
                                 acc[r]);
    }
}

/* ------------------------------------------------------------- Q4_K, Q6_K drivers */

/* a block's products into sums tiles LO, HI (tile numbers must be constants); the high
 * part is unsigned for Q4_K (TDPBUSD), signed for Q6_K (TDPBSSD) */
#define KQ_BLOCK(LO, HI, A, B, Q6)                                                         \
    do {                                                                                   \
        _tile_zero(LO);                                                                    \
        _tile_zero(HI);                                                                    \
        for (int c = 0; c < 4; c++) {                                                      \
            _tile_loadd(6, (B)->bq[c], 64);                                                \
            _tile_loadd(4, (A)->lo[c], 64);                                                \
            _tile_loadd(5, (A)->hi[c], 64);                                                \
            _tile_dpbusd(LO, 4, 6);                                                        \
            if (Q6)                                                                        \
                _tile_dpbssd(HI, 5, 6);                                                    \
            else                                                                           \
                _tile_dpbusd(HI, 5, 6);                                                    \
        }                                                                                  \
    } while (0)

#define KQ_POST(Q6, CLO, CHI, AP, I, B, ACC)                                               \
    do {                                                                                   \
        if (Q6)                                                                            \
            q6_post(CLO, CHI, (const struct q6_apan *)(AP) + (I), B, ACC);                 \
        else                                                                               \
            q4_post(CLO, CHI, (const struct q4_apan *)(AP) + (I), B, ACC);                 \
    } while (0)

/* one 16-row panel (packed blocks at ap: struct q4_apan or q6_apan) x one 16-token
 * group, two blocks in flight */
KERNELS_INLINE void kq_panel(const void *ap, const struct q4_bgrp *b, int64_t nb, float *y,
                             size_t ys, const int q6)
{
    const struct q4_apan *a4 = ap;
    const struct q6_apan *a6 = ap;
    _Alignas(64) int32_t cs[4][256];
    __m512 acc[16];
    for (int r = 0; r < 16; r++)
        acc[r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        if (q6) {
            KQ_BLOCK(0, 1, a6 + i, b + i, 1);
            KQ_BLOCK(2, 3, a6 + i + 1, b + i + 1, 1);
        } else {
            KQ_BLOCK(0, 1, a4 + i, b + i, 0);
            KQ_BLOCK(2, 3, a4 + i + 1, b + i + 1, 0);
        }
        _tile_stored(0, cs[0], 64);
        _tile_stored(1, cs[1], 64);
        _tile_stored(2, cs[2], 64);
        _tile_stored(3, cs[3], 64);
        KQ_POST(q6, cs[0], cs[1], ap, i, b + i, acc);
        KQ_POST(q6, cs[2], cs[3], ap, i + 1, b + i + 1, acc);
    }
    if (i < nb) {
        if (q6)
            KQ_BLOCK(0, 1, a6 + i, b + i, 1);
        else
            KQ_BLOCK(0, 1, a4 + i, b + i, 0);
        _tile_stored(0, cs[0], 64);
        _tile_stored(1, cs[1], 64);
        KQ_POST(q6, cs[0], cs[1], ap, i, b + i, acc);
    }
    store_transposed(acc, y, ys);
}

KERNELS_INLINE int amx_kq(const struct kernels_tensor_view *W, const void *act, size_t xs,
                          float *y, int n_tok, int64_t rb, int64_t re, const int q6)
{
    const int64_t nb = W->cols / QK_K;
    const int G = n_tok / 16;
    /* packed weights take ~8.5 KiB per block of 16 rows: a smaller row block */
    const int64_t rblk = rows_per_block(W->row_bytes, 96 * 1024);
    const size_t asz = q6 ? sizeof(struct q6_apan) : sizeof(struct q4_apan);
    size_t b_bytes = (size_t)G * (size_t)nb * sizeof(struct q4_bgrp);
    uint8_t *s = kernels_scratch(b_bytes + (size_t)(rblk / 16) * (size_t)nb * asz);
    if (!s)
        return -1;
    struct q4_bgrp *bg = (struct q4_bgrp *)(void *)s;
    uint8_t *ap = s + b_bytes;
    for (int g = 0; g < G; g++)
        q4_pack_group((const char *)act + (size_t)g * 16 * xs, xs, nb, bg + (size_t)g * (size_t)nb);
    amx_config(64, 16);
    for (int64_t r0 = rb; r0 < re; r0 += rblk) {
        int64_t r1 = r0 + rblk < re ? r0 + rblk : re;
        for (int64_t p = r0; p < r1; p += 16)
            for (int64_t i = 0; i < nb; i++) {
                const char *w = (const char *)W->data + (size_t)p * W->row_bytes;
                void *o = ap + ((size_t)((p - r0) / 16 * nb + i)) * asz;
                if (q6)
                    q6_pack_panel(w, W->row_bytes, i, o);
                else
                    q4_pack_panel(w, W->row_bytes, i, o);
            }
        for (int g = 0; g < G; g++)
            for (int64_t p = r0; p < r1; p += 16)
                kq_panel(ap + (size_t)((p - r0) / 16 * nb) * asz, bg + (size_t)g * (size_t)nb, nb,
                         y + (size_t)g * 16 * (size_t)W->rows + (size_t)p, (size_t)W->rows, q6);
    }
    _tile_release();
    return 0;
}

static int amx_q4_K(const struct kernels_tensor_view *W, const void *act, size_t xs, float *y,
                    int n_tok, int64_t rb, int64_t re)
{
    return amx_kq(W, act, xs, y, n_tok, rb, re, 0);
}

static int amx_q6_K(const struct kernels_tensor_view *W, const void *act, size_t xs, float *y,
                    int n_tok, int64_t rb, int64_t re)
{
    return amx_kq(W, act, xs, y, n_tok, rb, re, 1);
}

/* -------------------------------------------------------------------------- F16 */

/*
 * F16 on AMX-BF16 (TDPBF16PS: 16 x 32 bfloat16 by 32 x 16 into 16 x 16 floats, each
 * product exact, the pairs added in order with one rounding each). A half has 11
 * significant bits and a bfloat16 8, but every half v is exactly hi + lo, hi = v's float
 * with the low 16 bits cleared, lo = v - hi (at most 3 bits), both bfloat16. So with the
 * activations (halves as well, kernels_act_type) split the same way, the four products
 * hi*hi, hi*lo, lo*hi, lo*lo of each pair of columns give w * x exactly, as the F32 FMA of
 * the AVX-512 tile does: the result differs from ref.c only by summation order. Four
 * TDPBF16PS per 32 columns still do about 5 times the AVX-512 tile's FMAs per cycle.
 *
 * dispatch.c uses it for prefills, whole 16 x 16 tiles from 16 tokens on; the leftover
 * rows and tokens and decode stay on the AVX-512 F16 tile. Those are not the same bits
 * (same exact products, other summation order), so an F16 token's result can differ in
 * the last bits with its batch. Decode here measured slower than the AVX-512 tile (4.0
 * against 5.5 t/s on the 1.5B shape): packing writes 4 bytes per weight, and one token
 * does not pay for that.
 *
 * Layout: weights are tile A (16 rows x 32 columns, hi and lo tiles), packed per panel
 * and column range of F16_KCH chunks of 32 into an L1-sized buffer; activations are
 * tile B (VNNI: dword n of row kk holds columns 2kk, 2kk + 1 of token n), packed once per
 * call and token block. Two panels share each B load. Each column range runs over all
 * panel pairs, so that range's B stays in L2; the 16 x 16 sums wait in cbuf between
 * ranges (a float store and reload is exact) and are transposed into y at the end.
 */
#define F16_KCH 8   /* chunks of 32 columns per column range: a panel pair's A is 32 KiB */
#define F16_TB 256  /* tokens per token block: packed B is 1 KiB per column and block */

static int amx_bf16_usable(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22))) /* AMX-BF16 */
        return 0;
    /* AVX512_BF16 (vcvtne2ps2bf16) */
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
}

/* 32 halves -> their hi and lo bfloat16 (as above), in column order */
KERNELS_INLINE void f16_split(__m512i v, __m512i *hi, __m512i *lo)
{
    const __m512 m = _mm512_castsi512_ps(_mm512_set1_epi32((int)0xFFFF0000u));
    __m512 f0 = _mm512_cvtph_ps(_mm512_castsi512_si256(v));
    __m512 f1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1));
    __m512 h0 = _mm512_and_ps(f0, m), h1 = _mm512_and_ps(f1, m);
    *hi = (__m512i)_mm512_cvtne2ps_pbh(h1, h0);
    *lo = (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(f1, h1), _mm512_sub_ps(f0, h0));
}

/* the hi and lo of columns [32c, 32c + 32) of a row of n halves, zero past n */
KERNELS_INLINE void f16_split32(const kernels_fp16 *row, int64_t n, int64_t c, __m512i *hi,
                                __m512i *lo)
{
    int64_t left = n - 32 * c;
    __mmask32 k = left >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << left) - 1);
    f16_split(_mm512_maskz_loadu_epi16(k, row + 32 * c), hi, lo);
}

/*
 * r[i] <- column i of the 16 x 16 dword matrix whose rows are r[]. Stage s swaps bit
 * b = 2^s of the row and the column index (elements (i, j) and (i ^ b, j ^ b) where the
 * bits differ); the four swaps compose to the transpose. For rows i (bit b clear) and
 * i | b: new r[i][j] = bit b of j ? r[i | b][j ^ b] : r[i][j], new r[i | b][j] = bit b of
 * j ? r[i | b][j] : r[i][j ^ b]; as vpermt2d indices (16 + k: the second source), T_A, T_C.
 */
#define T_A(b, j) (((j) & (b)) ? 16 + ((j) ^ (b)) : (j))
#define T_C(b, j) (((j) & (b)) ? 16 + (j) : ((j) ^ (b)))
#define T_ROW(F, b)                                                                        \
    {F(b, 0),  F(b, 1),  F(b, 2),  F(b, 3),  F(b, 4),  F(b, 5),  F(b, 6),  F(b, 7),        \
     F(b, 8),  F(b, 9),  F(b, 10), F(b, 11), F(b, 12), F(b, 13), F(b, 14), F(b, 15)}
static const int32_t t16_a[4][16] __attribute__((aligned(64))) = {
    T_ROW(T_A, 1), T_ROW(T_A, 2), T_ROW(T_A, 4), T_ROW(T_A, 8)};
static const int32_t t16_c[4][16] __attribute__((aligned(64))) = {
    T_ROW(T_C, 1), T_ROW(T_C, 2), T_ROW(T_C, 4), T_ROW(T_C, 8)};

static void transpose16(__m512i r[16])
{
    for (int s = 0; s < 4; s++) {
        int b = 1 << s;
        __m512i xa = _mm512_load_si512((const void *)t16_a[s]);
        __m512i xc = _mm512_load_si512((const void *)t16_c[s]);
        for (int i = 0; i < 16; i++) {
            if (i & b)
                continue;
            __m512i lo = r[i], hi = r[i | b];
            r[i] = _mm512_permutex2var_epi32(lo, xa, hi);
            r[i | b] = _mm512_permutex2var_epi32(lo, xc, hi);
        }
    }
}

/* B tiles of 16 tokens, all nc chunks: bq[c] = hi 1 KiB, then lo 1 KiB */
static void f16_pack_group(const void *act, size_t xs, int64_t n, int64_t nc, uint8_t *bq)
{
    for (int64_t c = 0; c < nc; c++) {
        __m512i h[16], l[16];
        for (int t = 0; t < 16; t++)
            f16_split32(kernels_hrow(act, xs, t), n, c, &h[t], &l[t]);
        transpose16(h);
        transpose16(l);
        uint8_t *o = bq + (size_t)c * 2048;
        for (int kk = 0; kk < 16; kk++) {
            _mm512_store_si512((void *)(o + 64 * kk), h[kk]);
            _mm512_store_si512((void *)(o + 1024 + 64 * kk), l[kk]);
        }
    }
}

/* A tiles of rows [r, r + 16), chunks [c0, c0 + nk): a[k] = hi 1 KiB, then lo 1 KiB */
static void f16_pack_panel(const struct kernels_tensor_view *W, int64_t r, int64_t c0, int nk,
                           uint8_t *a)
{
    for (int i = 0; i < 16; i++) {
        const kernels_fp16 *row = kernels_hrow(W->data, W->row_bytes, r + i);
        for (int k = 0; k < nk; k++) {
            __m512i h, l;
            kernels_prefetch(row + 32 * (c0 + k), 1); /* pp512 108.6 -> 111.4-113.7 */
            f16_split32(row, W->cols, c0 + k, &h, &l);
            _mm512_store_si512((void *)(a + (size_t)k * 2048 + 64 * i), h);
            _mm512_store_si512((void *)(a + (size_t)k * 2048 + 1024 + 64 * i), l);
        }
    }
}

/* sums tile C += (hi + lo tiles AH, AL of the A chunk at A) x (B tiles 6, 7): the four
 * products in a fixed order (tile numbers must be constants) */
#define F16_PANEL(C, AH, AL, A)                                                            \
    do {                                                                                   \
        _tile_loadd(AH, (A), 64);                                                          \
        _tile_loadd(AL, (A) + 1024, 64);                                                   \
        _tile_dpbf16ps(C, AH, 6);                                                          \
        _tile_dpbf16ps(C, AH, 7);                                                          \
        _tile_dpbf16ps(C, AL, 6);                                                          \
        _tile_dpbf16ps(C, AL, 7);                                                          \
    } while (0)

/* the sums of one panel pair (two = 0: one panel) and group, over nk chunks */
KERNELS_INLINE void f16_unit_group(const uint8_t *a0, const uint8_t *a1, const uint8_t *b, int nk,
                                   float *cs0, float *cs1, int first, const int two)
{
    if (first) {
        _tile_zero(0);
        if (two)
            _tile_zero(1);
    } else {
        _tile_loadd(0, cs0, 64);
        if (two)
            _tile_loadd(1, cs1, 64);
    }
    for (int k = 0; k < nk; k++) {
        _tile_loadd(6, b + (size_t)k * 2048, 64);
        _tile_loadd(7, b + (size_t)k * 2048 + 1024, 64);
        F16_PANEL(0, 2, 3, a0 + (size_t)k * 2048);
        if (two)
            F16_PANEL(1, 4, 5, a1 + (size_t)k * 2048);
    }
    _tile_stored(0, cs0, 64);
    if (two)
        _tile_stored(1, cs1, 64);
}

struct f16_job {
    const struct kernels_tensor_view *W;
    int64_t rb, nc, np; /* first row; chunks of 32 columns; panels of 16 rows */
    int G;              /* token groups of 16 */
    const uint8_t *bq;  /* [G][nc] 2 KiB */
    uint8_t *abuf;      /* 2 panels x F16_KCH x 2 KiB */
    float *cbuf;        /* [np][G] 16 x 16 sums */
};

/* panels p and p + 1 (when there) over chunks [c0, c0 + F16_KCH) and every token group */
static void f16_unit(const struct f16_job *j, int64_t p, int64_t c0)
{
    int nk = j->nc - c0 < F16_KCH ? (int)(j->nc - c0) : F16_KCH;
    int two = p + 1 < j->np;
    uint8_t *a1 = j->abuf + (size_t)F16_KCH * 2048;
    f16_pack_panel(j->W, j->rb + 16 * p, c0, nk, j->abuf);
    if (two)
        f16_pack_panel(j->W, j->rb + 16 * (p + 1), c0, nk, a1);
    for (int g = 0; g < j->G; g++) {
        const uint8_t *b = j->bq + ((size_t)g * (size_t)j->nc + (size_t)c0) * 2048;
        float *cs0 = j->cbuf + ((size_t)p * (size_t)j->G + (size_t)g) * 256;
        float *cs1 = cs0 + (size_t)j->G * 256;
        if (two)
            f16_unit_group(j->abuf, a1, b, nk, cs0, cs1, c0 == 0, 1);
        else
            f16_unit_group(j->abuf, a1, b, nk, cs0, cs1, c0 == 0, 0);
    }
}

/* whole tiles only (kernels_gemm_fn): re - rb and n_tok multiples of 16 */
static int amx_f16(const struct kernels_tensor_view *W, const void *act, size_t xs, float *y,
                   int n_tok, int64_t rb, int64_t re)
{
    struct f16_job j = {.W = W, .rb = rb, .nc = (W->cols + 31) / 32, .np = (re - rb) / 16};
    for (int t0 = 0; t0 < n_tok; t0 += F16_TB) {
        int nt = n_tok - t0 < F16_TB ? n_tok - t0 : F16_TB;
        j.G = nt / 16;
        size_t b_bytes = (size_t)j.G * (size_t)j.nc * 2048;
        size_t a_bytes = 2 * (size_t)F16_KCH * 2048;
        size_t c_bytes = (size_t)j.np * (size_t)j.G * 256 * sizeof(float);
        uint8_t *s = kernels_scratch(b_bytes + a_bytes + c_bytes);
        if (!s) /* only in the first block (the largest): nothing written yet */
            return -1;
        j.bq = s;
        j.abuf = s + b_bytes;
        j.cbuf = (float *)(void *)(s + b_bytes + a_bytes);
        for (int g = 0; g < j.G; g++)
            f16_pack_group((const char *)act + (size_t)(t0 + 16 * g) * xs, xs, W->cols, j.nc,
                           s + (size_t)g * (size_t)j.nc * 2048);
        amx_config(64, 16);
        for (int64_t c0 = 0; c0 < j.nc; c0 += F16_KCH)
            for (int64_t p = 0; p < j.np; p += 2)
                f16_unit(&j, p, c0);
        _tile_release();
        for (int64_t p = 0; p < j.np; p++) /* cbuf rows are weight rows: transpose into y */
            for (int g = 0; g < j.G; g++) {
                const float *cs = j.cbuf + ((size_t)p * (size_t)j.G + (size_t)g) * 256;
                __m512 acc[16];
                for (int r = 0; r < 16; r++)
                    acc[r] = _mm512_load_ps(cs + 16 * r);
                store_transposed(acc, y + (size_t)(t0 + 16 * g) * (size_t)W->rows +
                                          (size_t)(rb + 16 * p), (size_t)W->rows);
            }
    }
    return 0;
}

void kernels_amx_fill(struct kernels_table *t)
{
    t->gemm_q[KERNELS_Q6_K] = amx_q6_K;
    t->gemm_min_tok[KERNELS_Q6_K] = 16;
    kernels_avx512_canon_fill(t);
    t->gemm_q[KERNELS_Q8_0] = amx_q8_0;
    t->gemm_min_tok[KERNELS_Q8_0] = 16;
    t->gemm_q[KERNELS_Q4_K] = amx_q4_K;
    t->gemm_min_tok[KERNELS_Q4_K] = 16;
    if (amx_bf16_usable()) {
        t->gemm_q[KERNELS_F16] = amx_f16;
        t->gemm_min_tok[KERNELS_F16] = 16;
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
#include "kernels/impl.h"
int kernels_amx_usable(void)
{
    return 0;
}
void kernels_amx_fill(struct kernels_table *t)
{
    (void)t;
}
#endif
