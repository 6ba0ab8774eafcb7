/*
 * kernels: the numeric kernels of the inference engine: tensor element types and their
 * block layouts, (de)quantization, dot products, matrix products over a row range, and
 * the small vector ops of a transformer forward pass (rmsnorm, softmax, swiglu, rope).
 *
 * Every kernel has a plain scalar reference (ref.c); SIMD versions (x86_avx2.c,
 * x86_avx512.c) share its signature and are chosen once by kernels_init() from a CPUID
 * probe. kernels_init(KERNELS_ISA_REF) runs everything on the reference, so a suspected
 * SIMD bug can be ruled in or out with one setting.
 *
 * Types are numbered as ggml numbers them, so a GGUF tensor type can be passed through
 * unchanged, but this module knows nothing of GGUF.
 *
 * Two matrix paths (see docs/KERNELS.md):
 *  - kernels_matmul: quantized weights times float activations (weights dequantized on
 *    the fly, fp32 accumulation). The most faithful to the model's exact arithmetic.
 *  - kernels_quantize_act + kernels_matmul_q: activations first rounded to the weight
 *    type's "dot type" (Q8_0, Q8_K or F16) exactly as llama.cpp's CPU backend does, then
 *    integer dot products. Matches llama.cpp's logits and is the fastest path.
 *
 * Threading: kernels_init() must be called once before any other function (it is
 * idempotent but not thread-safe); everything else is reentrant and allocation-free, and
 * disjoint row ranges of one matrix product may run on different threads.
 */
#ifndef DS_KERNELS_KERNELS_H
#define DS_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Element types, numerically equal to ggml's. */
enum kernels_type {
    KERNELS_F32 = 0,
    KERNELS_F16 = 1,
    KERNELS_Q4_0 = 2,
    KERNELS_Q5_0 = 6,
    KERNELS_Q8_0 = 8,
    KERNELS_Q4_K = 12,
    KERNELS_Q5_K = 13,
    KERNELS_Q6_K = 14,
    KERNELS_Q8_K = 15,
    KERNELS_BF16 = 30,
};

enum kernels_isa {
    KERNELS_ISA_AUTO = 0, /* best the CPU supports */
    KERNELS_ISA_REF,      /* scalar reference everywhere */
    KERNELS_ISA_AVX2,     /* AVX2 + FMA + F16C */
    KERNELS_ISA_AVX512,   /* AVX-512 F/BW/VL/VNNI (falls back to AVX2 kernels per op) */
    KERNELS_ISA_AMX,      /* AVX-512 plus AMX-INT8 tiles for Q8_0/Q4_K prefill (Linux) */
};

/* Probes the CPU and fills the function table. `force` is AUTO, or an ISA to use; a
 * forced ISA the CPU lacks gives ERR_UNSUPPORTED and leaves the reference selected. */
int kernels_init(enum kernels_isa force);
enum kernels_isa kernels_isa(void);
const char *kernels_isa_name(void); /* "ref", "avx2", "avx512", "avx512-amx" */

/* ---- types ---- */

int kernels_type_known(int type); /* 1 for the types above */
const char *kernels_type_name(enum kernels_type t); /* "q4_K", ... */
int kernels_block_size(enum kernels_type t);        /* elements per block (1 for floats) */
size_t kernels_block_bytes(enum kernels_type t);    /* bytes per block */
/* Bytes of a row of n elements; 0 when n is not a multiple of the block size. */
size_t kernels_row_bytes(enum kernels_type t, int64_t n);

/* ---- conversion ---- */

/* Row of n elements (n a multiple of the block size) to float. All types. */
void kernels_dequantize_row(enum kernels_type t, const void *src, float *dst, int64_t n);
/* Float row to type t. Supported: F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q8_K.
 * Weight quantizers search for good scales (reference quality, not fast); Q8_0/Q4_0/Q5_0
 * round as ggml's reference quantizers (llama-quantize). Q8_K rounds as llama.cpp rounds
 * activations. Returns ERR_UNSUPPORTED / ERR_INVALID (n not a multiple of the block). */
int kernels_quantize_row(enum kernels_type t, const float *src, void *dst, int64_t n);

/* ---- matrix products ---- */

/* A borrowed 2-D weight: rows of `cols` elements, row r at data + r * row_bytes. */
struct kernels_tensor_view {
    enum kernels_type type;
    const void *data;
    int64_t rows;
    int64_t cols;
    size_t row_bytes; /* kernels_row_bytes(type, cols), or larger for padded rows */
};

/* y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tok and row_begin <= r < row_end, with
 * float activations x [n_tok][W->cols] and y [n_tok][W->rows] (only the given rows are
 * written). Returns ERR_INVALID on a bad range / ERR_UNSUPPORTED on a bad type. */
int kernels_matmul(const struct kernels_tensor_view *W, const float *x, float *y, int n_tok,
                   int64_t row_begin, int64_t row_end);

/* The type activations are rounded to before a product with weights of type w, as in
 * llama.cpp: Q8_0 for Q8_0/Q4_0/Q5_0, Q8_K for Q4_K/Q5_K/Q6_K, F16 for F16, BF16 for BF16,
 * F32 for F32. */
enum kernels_type kernels_act_type(enum kernels_type w);
/* Bytes of one token's prepared activations: a row of kernels_act_type(w), and for Q8_K
 * a trailer of cols/32 floats after it (d * the sum of each 32 quants: the block sums the
 * K-quant mins term needs, formed once per token instead of once per weight row). */
size_t kernels_act_row_bytes(enum kernels_type w, int64_t cols);
/* Scratch bytes kernels_quantize_act needs for n_tok tokens of `cols`. */
size_t kernels_act_bytes(enum kernels_type w, int64_t cols, int n_tok);
/* Rounds x [n_tok][cols] into act (kernels_act_bytes(w, cols, n_tok) bytes, caller owns),
 * token t at act + t * kernels_act_row_bytes(w, cols), starting with its row of
 * kernels_act_type(w). Call once per input, then any number of matmul_q. */
int kernels_quantize_act(enum kernels_type w, const float *x, int64_t cols, int n_tok,
                         void *act);
/* As kernels_matmul, but with activations prepared by kernels_quantize_act. */
int kernels_matmul_q(const struct kernels_tensor_view *W, const void *act, float *y,
                     int n_tok, int64_t row_begin, int64_t row_end);

/* One dot product of a row of type w (n elements) with float x. */
float kernels_dot_f32(enum kernels_type w, const void *row, const float *x, int64_t n);

/* ---- vector ops (n any length) ---- */

/* y = x / sqrt(mean(x^2) + eps) * w (w may be NULL: no weight). y may equal x. */
void kernels_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
/* In place: x = exp(x - max) / sum, and then 0 where that is under cut (0: none).
 * Attention passes KERNELS_ATT_P_MIN: on Intel cores an FMA with a denormal input or
 * result takes a microcode assist (about a hundred cycles), and weights a few exponents
 * above the denormal range, times small V values, make them in the weighted sum of V. The
 * cut is part of the normalizing pass, so it costs no pass of its own. */
void kernels_softmax(float *x, int64_t n, float cut);
/* 2^-64: a weight under it times |v| >= 2^-24 (the smallest F16) stays a normal float,
 * and all the dropped weights of a context of up to 2^17 positions add at most 2^-47 of
 * the largest |v| to an output, far under a float's rounding (2^-24 relative). */
#define KERNELS_ATT_P_MIN 0x1p-64f
/* out = silu(gate) * up; out may equal gate or up. */
void kernels_swiglu(float *out, const float *gate, const float *up, int64_t n);
/* y = a + b; y may equal a or b. */
void kernels_add(float *y, const float *a, const float *b, int64_t n);
/* x *= s */
void kernels_scale(float *x, float s, int64_t n);
/* y += a * x for a row x of type t (F32, F16 or BF16; others are ignored): the weighted
 * sum of V rows in attention. */
void kernels_axpy(enum kernels_type t, float a, const void *x, float *y, int64_t n);
/* y = sum_j a[j] * row_j for j < n_rows, row_j = x + j * stride bytes, rows of type t (F32,
 * F16 or BF16; for other types y is left as it is, as kernels_axpy does), summed in j
 * order (as repeated kernels_axpy from y = 0); y is overwritten.
 * Attention's softmax-weighted sum of V rows: SIMD versions keep a stretch of y in
 * registers across all rows instead of loading and storing it once per row. */
void kernels_wsum(enum kernels_type t, const float *a, const void *x, size_t stride,
                  int n_rows, float *y, int64_t n);

/* Attention over one KV head for the n_q query heads that share it (grouped-query
 * attention), rows j < n_rows of type t at x + j * stride bytes, d elements each:
 *   kernels_att_scores: s[i * ss + j] = scale * dot(q_i, row_j), q_i = q + i * qs floats,
 *     any type kernels_dot_f32 takes (others give 0); SIMD versions widen each row once
 *     for all n_q queries and may sum in another order than kernels_dot_f32.
 *   kernels_att_wsum: y_i = kernels_wsum(t, a_i, x, stride, n_rows, ., d) for i < n_q,
 *     a_i = a + i * as, y_i = y + i * ys floats: the same bits as n_q kernels_wsum
 *     calls, each row read once for all of them. */
void kernels_att_scores(enum kernels_type t, const void *x, size_t stride, int n_rows,
                        const float *q, size_t qs, int n_q, float scale, float *s, size_t ss,
                        int64_t d);
void kernels_att_wsum(enum kernels_type t, const float *a, size_t as, int n_q, const void *x,
                      size_t stride, int n_rows, float *y, size_t ys, int64_t d);

/* Rotary embedding of one head vector x [n_dims...] at position pos, in place.
 * neox = 0: pairs (x[2i], x[2i+1]) (llama); neox = 1: pairs (x[i], x[i + n_rot/2]).
 * theta_i = pos * freq_base^(-2i/n_rot) / freq_factors[i] (freq_factors may be NULL) *
 * freq_scale; only the first n_rot dims rotate; ext_factor/attn_factor/beta are YaRN
 * parameters (ext_factor 0 and attn_factor 1 give plain rope). */
struct kernels_rope {
    int n_rot;
    int neox;
    float freq_base;
    float freq_scale;
    const float *freq_factors; /* [n_rot/2] or NULL, borrowed */
    float ext_factor;
    float attn_factor;
    float beta_fast;
    float beta_slow;
    int n_ctx_orig;
};
int kernels_rope_apply(const struct kernels_rope *r, float *x, int n_heads, int head_dim,
                       int64_t pos); /* ERR_INVALID: n_rot odd, > head_dim or > 1024 */

#endif
