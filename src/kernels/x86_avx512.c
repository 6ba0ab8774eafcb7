/*
 * x86_avx512: AVX-512 (F/BW/VL/VNNI) versions of some dots; installed over the AVX2 table,
 * so every kernel not overridden here stays on AVX2. Same signatures and results as ref.c
 * up to float summation order.
 *  - Q8_0/Q4_0/Q5_0 x Q8_0: VNNI vpdpbusd (u8 x s8, four products summed into s32, no
 *    saturation) replaces AVX2's maddubs + madd pair; 256-bit registers (VL) because a
 *    block is 32 bytes.
 * Q4_K/Q5_K/Q6_K stay on AVX2: their per-sub-block int16 scales fit maddubs+madd, and a
 * VNNI version would need a 32-bit multiply per sub-block. A 16-wide FMA version of the
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

static inline void dot_q_32(enum kernels_type t, const void *w, const void *x, size_t xs,
                            int n_x, int64_t n, float *out)
{
    __m256 acc[KERNELS_NX];
    for (int k = 0; k < KERNELS_NX; k++)
        acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        float dw;
        __m256i q = unpack_32(t, w, i, &dw);
        __m256i aq = _mm256_abs_epi8(q);
        for (int k = 0; k < n_x; k++) {
            const struct block_q8_0 *y = (const struct block_q8_0 *)xrow(x, xs, k) + i;
            __m256i sy = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->qs), q);
            __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aq, sy);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * fp16(y->d)), _mm256_cvtepi32_ps(s),
                                     acc[k]);
        }
    }
    for (int k = 0; k < n_x; k++)
        out[k] = _mm512_reduce_add_ps(_mm512_insertf32x8(_mm512_setzero_ps(), acc[k], 0));
}

static void avx512_dot_q_q8_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                              float *out)
{
    dot_q_32(KERNELS_Q8_0, w, x, xs, n_x, n, out);
}
static void avx512_dot_q_q4_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                              float *out)
{
    dot_q_32(KERNELS_Q4_0, w, x, xs, n_x, n, out);
}
static void avx512_dot_q_q5_0(const void *w, const void *x, size_t xs, int n_x, int64_t n,
                              float *out)
{
    dot_q_32(KERNELS_Q5_0, w, x, xs, n_x, n, out);
}

void kernels_avx512_fill(struct kernels_table *t)
{
    t->dot_q[KERNELS_Q8_0] = avx512_dot_q_q8_0;
    t->dot_q[KERNELS_Q4_0] = avx512_dot_q_q4_0;
    t->dot_q[KERNELS_Q5_0] = avx512_dot_q_q5_0;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int kernels_x86_avx512_unused; /* ISO C forbids an empty translation unit */
#endif
