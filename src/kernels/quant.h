/*
 * quant: the quantized block layouts, byte for byte as GGUF/ggml store them, and the
 * fp16/bf16 scalar conversions. Internal to kernels/ (callers include kernels.h).
 *
 * A quantized row of n elements is n/QK consecutive blocks; every field is little-endian
 * (we only build for little-endian targets). The sizes are asserted so a padding surprise
 * is a compile error, not a garbled model.
 */
#ifndef DS_KERNELS_QUANT_H
#define DS_KERNELS_QUANT_H

#include <stdint.h>
#include <string.h>

#define QK4_0 32
#define QK5_0 32
#define QK8_0 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t kernels_fp16; /* IEEE binary16 bits */
typedef uint16_t kernels_bf16; /* bfloat16 bits */

/* x[i] = d * qs[i] */
struct block_q8_0 {
    kernels_fp16 d;
    int8_t qs[QK8_0];
};
/* x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8), j < 16 */
struct block_q4_0 {
    kernels_fp16 d;
    uint8_t qs[QK4_0 / 2];
};
/* as q4_0 with a fifth bit: bit j of the little-endian uint32 qh is the high bit of element
 * j (0..31); value = d * (q5 - 16) */
struct block_q5_0 {
    kernels_fp16 d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
};
/* 8 sub-blocks of 32 with 6-bit scale and min (packed, see q4k_scale_min):
 * x = d * sc * q - dmin * m, q 4-bit; qs[32*k + l] holds element 64k + l (low nibble) and
 * 64k + 32 + l (high nibble) */
struct block_q4_K {
    kernels_fp16 d;
    kernels_fp16 dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
};
/* as q4_K plus a fifth bit: bit 2k of qh[l] for element 64k + l, bit 2k+1 for 64k + 32 + l */
struct block_q5_K {
    kernels_fp16 d;
    kernels_fp16 dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
/* 16 sub-blocks of 16 with int8 scales: x = d * scales[i/16] * (q6 - 32); see ref.c for the
 * element order of ql/qh */
struct block_q6_K {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    kernels_fp16 d;
};
/* activations for K-quant dots: fp32 scale, and sums of each 16 quants */
struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};

_Static_assert(sizeof(struct block_q8_0) == 34, "block_q8_0 size");
_Static_assert(sizeof(struct block_q4_0) == 18, "block_q4_0 size");
_Static_assert(sizeof(struct block_q5_0) == 22, "block_q5_0 size");
_Static_assert(sizeof(struct block_q4_K) == 144, "block_q4_K size");
_Static_assert(sizeof(struct block_q5_K) == 176, "block_q5_K size");
_Static_assert(sizeof(struct block_q6_K) == 210, "block_q6_K size");
_Static_assert(sizeof(struct block_q8_K) == 292, "block_q8_K size");

/* ---- scalar fp16 / bf16 conversion (round to nearest even, like F16C / ggml) ---- */

static inline uint32_t quant_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float quant_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float kernels_fp16_to_f32(kernels_fp16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) /* inf / nan */
        return quant_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in float */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return quant_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline kernels_fp16 kernels_f32_to_fp16(float f)
{
    uint32_t u = quant_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf / nan (keep nan quiet) */
        return (kernels_fp16)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0));
    if (a >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (kernels_fp16)(sign | 0x7c00);
    if (a < 0x38800000u) {
        /* result is subnormal or zero: add 0.5 (as float) so the FPU rounds the mantissa
         * at 2^-24 granularity, nearest even */
        float v = quant_bits_f32(a) + 0.5f;
        return (kernels_fp16)(sign | ((quant_f32_bits(v) - 0x3f000000u) & 0x7ff));
    }
    uint32_t odd = (a >> 13) & 1;
    a += 0xc8000fffu + odd; /* rebias exponent (-112 << 23) and round to nearest even */
    return (kernels_fp16)(sign | (a >> 13));
}

static inline float kernels_bf16_to_f32(kernels_bf16 h)
{
    return quant_bits_f32((uint32_t)h << 16);
}

static inline kernels_bf16 kernels_f32_to_bf16(float f)
{
    uint32_t u = quant_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* nan: keep it quiet */
        return (kernels_bf16)((u >> 16) | 64);
    return (kernels_bf16)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

/* The 6-bit scale and min of sub-block j (0..7) of a q4_K/q5_K block. */
static inline void q4k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

#endif
