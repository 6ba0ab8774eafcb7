/*
 * x86_avx512: AVX-512 (F/BW/VL/VNNI) versions of some dots; installed over the AVX2 table,
 * so every kernel not overridden here stays on AVX2. Same signatures and results as ref.c
 * up to float summation order.
 *  - Q8_0/Q4_0/Q5_0 x Q8_0: VNNI vpdpbusd (u8 x s8, four products summed into s32, no
 *    saturation) replaces AVX2's maddubs + madd pair; 256-bit registers (VL) because a
 *    block is 32 bytes.
 *  - Q4_K/Q6_K x Q8_K: 512-bit maddubs (two 32-quant chunks per register) followed by VNNI
 *    vpdpwssd, which multiplies the s16 pair sums by the chunk's s16 scale and accumulates
 *    in s32 in one instruction (AVX2 needs madd + add). Q5_K stays on AVX2. A 16-wide FMA version of the
 * F32/F16 dots was tried and measured slower than AVX2 here (frequency), so it was dropped.
 */
#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512dq"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512dq")
#endif

#include <immintrin.h>
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

/* the 32 signed quants of block i of a 32-block row, and its scale */
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
    /* AVX-512BW: a 32-bit mask selects the bytes that get the fifth bit */
    __m256i q = _mm256_or_si256(nibbles32(b->qs),
                                _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(0x10)));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(16));
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
        __m256i aq = _mm256_abs_epi8(q);
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++) {
            const struct block_q8_0 *y = (const struct block_q8_0 *)xrow(x, xs, k) + i;
            __m256i sy = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->qs), q);
            __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aq, sy);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * fp16(y->d)), _mm256_cvtepi32_ps(s),
                                     acc[k]);
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++)
        out[k] = _mm512_reduce_add_ps(_mm512_insertf32x8(_mm512_setzero_ps(), acc[k], 0));
}

static void avx512_dot_q_q8_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                              float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_q_32, KERNELS_Q8_0, w, x, xs, n, out);
}
static void avx512_dot_q_q4_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                              float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_q_32, KERNELS_Q4_0, w, x, xs, n, out);
}
static void avx512_dot_q_q5_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                              float *out)
{
    KERNELS_NX_SWITCH(n_x, dot_q_32, KERNELS_Q5_0, w, x, xs, n, out);
}

/* ======================================================================== K-quants, 512-bit */

/* Q4_K against Q8_K, two sub-blocks per 512-bit register: the low nibbles of a 32-byte
 * group (sub-block 2p) in the low half, the high nibbles (2p+1) in the high half, which
 * is exactly the order of the activation's 64 quants. maddubs gives u4 x s8 pair sums
 * (|.| <= 3840), VNNI vpdpwssd multiplies them by the sub-block scale and accumulates
 * into s32 in one instruction. All integer sums are exact; only the float order
 * differs from ref.c. */
KERNELS_INLINE void q4k_body(const void *w, const void *x, size_t xs, int64_t n, float *out,
                         const int n_x)
{
    __m512 acc[KERNELS_NX_MAX]; /* the mins term is subtracted into the same sum */
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++)
        acc[k] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0xF);
    __m512i idx[4];
    for (int p = 0; p < 4; p++) /* s16 lanes 0..15 take scale 2p, 16..31 scale 2p+1 */
        idx[p] = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * p)),
                                    _mm256_set1_epi16((short)(2 * p + 1)), 1);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const struct block_q4_K *b = (const struct block_q4_K *)w + i;
        kernels_prefetch(b, 3); /* 144-byte blocks */
        __m512i q[4], scv[4];
KERNELS_UNROLL8
        for (int p = 0; p < 4; p++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * p));
            __m512i r = _mm512_inserti64x4(_mm512_castsi256_si512(raw),
                                           _mm256_srli_epi16(raw, 4), 1);
            q[p] = _mm512_and_si512(r, m4);
        }
        uint32_t a, bb, c;
        memcpy(&a, b->scales, 4);
        memcpy(&bb, b->scales + 4, 4);
        memcpy(&c, b->scales + 8, 4);
        uint64_t sc8 = (a & 0x3f3f3f3fu) |
                       (uint64_t)((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32;
        uint64_t mn8 = (bb & 0x3f3f3f3fu) |
                       (uint64_t)(((c >> 4) & 0x0f0f0f0fu) | ((bb >> 2) & 0x30303030u)) << 32;
        __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
KERNELS_UNROLL8
        for (int p = 0; p < 4; p++)
            scv[p] = _mm512_permutexvar_epi16(idx[p], sc16);
        __m128i mn = _mm_cvtsi64_si128((long long)mn8);
        __m256i mdup = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
        float d = fp16(b->d), dmin = fp16(b->dmin);
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++) {
            const struct block_q8_K *y = (const struct block_q8_K *)xrow(x, xs, k) + i;
            __m512i sumi = _mm512_setzero_si512();
    KERNELS_UNROLL8
        for (int p = 0; p < 4; p++) {
                __m512i yv = _mm512_loadu_si512((const void *)(y->qs + 64 * p));
                sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[p], yv), scv[p]);
            }
            __m256i summ = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums),
                                             mdup);
            acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(y->d * d), _mm512_cvtepi32_ps(sumi),
                                     acc[k]);
            acc[k] = _mm512_fnmadd_ps(_mm512_set1_ps(y->d * dmin),
                                      _mm512_cvtepi32_ps(_mm512_zextsi256_si512(summ)), acc[k]);
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++)
        out[k] = _mm512_reduce_add_ps(acc[k]);
}

/* Q6_K against Q8_K: a 64-byte load of ql holds chunks 4h (low nibbles of bytes 0..31)
 * and 4h+1 (low nibbles of 32..63); their high bits come from the same 32 qh bytes
 * shifted by 4 and 2, one variable shift per half. The -32 offset goes through the
 * activation block sums as in the AVX2 version (exact in s32). */
KERNELS_INLINE void q6k_body(const void *w, const void *x, size_t xs, int64_t n, float *out,
                         const int n_x)
{
    __m512 acc[KERNELS_NX_MAX];
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++)
        acc[k] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
    const __m512i sh_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    __m512i idx[4];
    for (int c = 0; c < 4; c++) /* s16 lane l of pair c takes scale 4c + l/8 */
        idx[c] = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * c)),
                                  _mm512_srli_epi16(_mm512_set_epi16(
                                      31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18,
                                      17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3,
                                      2, 1, 0), 3));
    for (int64_t i = 0; i < n / QK_K; i++) {
        const struct block_q6_K *b = (const struct block_q6_K *)w + i;
        kernels_prefetch(b, 4); /* 210-byte blocks */
        __m512i q[4], scv[4];
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
KERNELS_UNROLL8
        for (int c = 0; c < 4; c++)
            scv[c] = _mm512_permutexvar_epi16(idx[c], sc512);
        float d = fp16(b->d);
KERNELS_UNROLL8
        for (int k = 0; k < n_x; k++) {
            const struct block_q8_K *y = (const struct block_q8_K *)xrow(x, xs, k) + i;
            __m512i sumi = _mm512_setzero_si512();
    KERNELS_UNROLL8
        for (int c = 0; c < 4; c++) {
                __m512i yv = _mm512_loadu_si512((const void *)(y->qs + 64 * c));
                sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[c], yv), scv[c]);
            }
            __m256i bias = _mm256_madd_epi16(sc_all,
                                             _mm256_loadu_si256((const __m256i *)y->bsums));
            sumi = _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(_mm256_slli_epi32(bias, 5)));
            acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(d * y->d), _mm512_cvtepi32_ps(sumi),
                                     acc[k]);
        }
    }
KERNELS_UNROLL8
    for (int k = 0; k < n_x; k++)
        out[k] = _mm512_reduce_add_ps(acc[k]);
}

static void avx512_dot_q_q4_K(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                              float *out)
{
    KERNELS_NX8_SWITCH(n_x, q4k_body, w, x, xs, n, out);
}

static void avx512_dot_q_q6_K(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                              float *out)
{
    KERNELS_NX8_SWITCH(n_x, q6k_body, w, x, xs, n, out);
}

void kernels_avx512_fill(struct kernels_table *t)
{
    t->dot_q[KERNELS_Q8_0] = avx512_dot_q_q8_0;
    t->dot_q[KERNELS_Q4_0] = avx512_dot_q_q4_0;
    t->dot_q[KERNELS_Q5_0] = avx512_dot_q_q5_0;
    t->dot_q[KERNELS_Q4_K] = avx512_dot_q_q4_K;
    t->dot_q[KERNELS_Q6_K] = avx512_dot_q_q6_K;
    t->dot_q_nx[KERNELS_Q4_K] = KERNELS_NX_MAX;
    t->dot_q_nx[KERNELS_Q6_K] = KERNELS_NX_MAX;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int kernels_x86_avx512_unused; /* ISO C forbids an empty translation unit */
#endif
