/*
 * impl: the function table shared by dispatch.c and the per-ISA files. Internal to
 * kernels/. Every entry has a reference in ref.c (prefix ref_); an ISA file overrides the
 * entries it accelerates in its *_fill() function and leaves the rest alone.
 *
 * Multi-token dots: a dot function computes out[t] = dot(w, x_t) for t < n_x
 * (1 <= n_x <= KERNELS_NX), x_t = x + t * x_stride (bytes), so SIMD versions unpack a
 * weight block once for several tokens (the blocked GEMM of a prefill).
 */
#ifndef DS_KERNELS_IMPL_H
#define DS_KERNELS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "kernels/quant.h"

/* Loop-unroll hint; gcc and clang spell it differently. */
#if defined(__clang__)
#define KERNELS_UNROLL8 _Pragma("clang loop unroll_count(8)")
#else
#define KERNELS_UNROLL8 _Pragma("GCC unroll 8")
#endif

#define KERNELS_NX 4
#define KERNELS_NX_MAX 8 /* an ISA may take up to this many tokens per dot_q call */

/*
 * Multi-token dot bodies are force-inlined and called through KERNELS_NX_SWITCH with n_x
 * as a constant 1..KERNELS_NX, so each copy fully unrolls its per-token loops and keeps
 * the accumulators in registers. With a run-time n_x the compiler keeps acc[] on the
 * stack and every block pays a store and a reload per token (measured: the top stall
 * of the Q4_K prefill profile). The body's last parameter is n_x.
 */
#define KERNELS_INLINE static inline __attribute__((always_inline))

/*
 * A decode step streams every weight row from memory once, and the hardware prefetcher
 * stops at each 4 KiB page, so the dot kernels ask for the bytes KERNELS_PREFETCH ahead
 * of the block they are reading (rows are contiguous, so this runs on into the next
 * row). Q4_K GEMV of a 131 MB matrix, one thread, quiet VM: 8.1 -> 11.4 GB/s with 4 KiB
 * (1 KiB and 512 B: no gain). Prefetches never fault, so reading past the end is safe.
 * The register tiles, which walk several rows side by side, ask instead for the next
 * tile's rows at the same column (x86_avx512.c, x86_avx512_f16.c): rows of 1536
 * columns are shorter than 4 KiB, so KERNELS_PREFETCH ahead would land in rows the tile
 * is reading already.
 */
#define KERNELS_PREFETCH 4096
KERNELS_INLINE void kernels_prefetch(const void *block, int lines)
{
    for (int l = 0; l < lines; l++)
        __builtin_prefetch((const char *)block + KERNELS_PREFETCH + 64 * l, 0, 3);
}
/* row k of halves at base with a byte stride (weights or F16 activations) */
static inline const kernels_fp16 *kernels_hrow(const void *base, size_t stride, int64_t k)
{
    return (const kernels_fp16 *)(const void *)((const char *)base + (size_t)k * stride);
}

#define KERNELS_NX_SWITCH(n_x, body, ...)                                                    \
    do {                                                                                   \
        switch (n_x) {                                                                     \
        case 1: body(__VA_ARGS__, 1); break;                                               \
        case 2: body(__VA_ARGS__, 2); break;                                               \
        case 3: body(__VA_ARGS__, 3); break;                                               \
        default: body(__VA_ARGS__, KERNELS_NX); break;                                     \
        }                                                                                  \
    } while (0)
#define KERNELS_NX8_SWITCH(n_x, body, ...)                                                   \
    do {                                                                                   \
        switch (n_x) {                                                                     \
        case 1: body(__VA_ARGS__, 1); break;                                               \
        case 2: body(__VA_ARGS__, 2); break;                                               \
        case 3: body(__VA_ARGS__, 3); break;                                               \
        case 4: body(__VA_ARGS__, 4); break;                                               \
        case 5: body(__VA_ARGS__, 5); break;                                               \
        case 6: body(__VA_ARGS__, 6); break;                                               \
        case 7: body(__VA_ARGS__, 7); break;                                               \
        default: body(__VA_ARGS__, 8); break;                                              \
        }                                                                                  \
    } while (0)
#define KERNELS_NTYPES 31

/* w: one weight row of n elements; x: float rows (dot_f32) or activation rows of
 * kernels_act_type (dot_q). */
typedef void (*kernels_dot_fn)(const void *w, const void *x, size_t x_stride, int n_x,
                               int64_t n, float *out);

/*
 * Register-tiled product for a prefill: y[t * y_stride + r] = dot(w_r, x_t) for r < n_r
 * rows (w_r = w + r * w_stride bytes) and t < n_x tokens (x_t = x + t * x_stride bytes,
 * activations of kernels_act_type), n elements each; 1 <= n_r <= tile_rows and
 * 1 <= n_x <= tile_toks of the type. Several rows share each activation load and several
 * tokens each weight load, and per-block scale products can be formed for a whole row
 * group at once, which a one-row dot cannot do.
 */
typedef void (*kernels_tile_fn)(const void *w, size_t w_stride, int n_r, const void *x,
                                size_t x_stride, int n_x, int64_t n, float *y,
                                size_t y_stride);

/*
 * Large-batch product of whole 16 x 16 tiles, which packs its operands per call (the
 * AMX kernels of x86_amx.c; the AVX-512 F16 GEMM of x86_avx512_f16.c): y as
 * kernels_matmul_q for rows [rb, re), re - rb a multiple of 16, and tokens [0, n_tok),
 * n_tok a multiple of 16; activations of kernels_act_type with row stride xs. Its
 * results equal the type's tile_q bit for bit, except AMX F16 (the rows and tokens left
 * over run there, and batch invariance rests on the two agreeing). Returns 0, or -1 when
 * it could not get scratch memory (nothing written: the caller runs tile_q instead).
 */
typedef int (*kernels_gemm_fn)(const struct kernels_tensor_view *W, const void *act,
                               size_t xs, float *y, int n_tok, int64_t rb, int64_t re);

/*
 * One-token product over a thread's whole row range (decode): y[r] for rb <= r < re,
 * activations of kernels_act_type. Seeing the whole range (tile_q gets tile_rows rows
 * per call) lets it choose how the rows are streamed from memory. Its results equal
 * tile_q's for one token bit for bit (batch invariance rests on it).
 */
typedef void (*kernels_gemv_fn)(const struct kernels_tensor_view *W, const void *act,
                                float *y, int64_t rb, int64_t re);

struct kernels_table {
    kernels_dot_fn dot_f32[KERNELS_NTYPES];
    kernels_dot_fn dot_q[KERNELS_NTYPES];
    /* optional (NULL: matmul_q uses dot_q). When set, matmul_q uses it for every token
     * count that gemm_q and gemv_q (same bits) do not take, so its result for a (row,
     * token) pair must not depend on n_r or n_x: batch invariance rests on it
     * (test_model, test_deepseek2 check it end to end). */
    kernels_tile_fn tile_q[KERNELS_NTYPES];
    int tile_rows[KERNELS_NTYPES];
    int tile_toks[KERNELS_NTYPES];
    /* tokens dot_q[t] takes per call (1..KERNELS_NX_MAX); 0 means KERNELS_NX. More
     * tokens per call unpack each weight block fewer times in a prefill, where the ISA
     * has the registers to hold that many accumulators (AVX-512: 32). */
    int dot_q_nx[KERNELS_NTYPES];
    /* optional: large-batch products, used from gemm_min_tok tokens on (their packing
     * pays off only over many tokens) */
    kernels_gemm_fn gemm_q[KERNELS_NTYPES];
    int gemm_min_tok[KERNELS_NTYPES];
    /* optional: one-token products (NULL: tile_q or dot_q) */
    kernels_gemv_fn gemv_q[KERNELS_NTYPES];
    void (*quantize_q8_0_act)(const float *x, void *y, int64_t n);
    void (*quantize_q8_K_act)(const float *x, void *y, int64_t n);
    void (*f32_to_f16)(const float *x, kernels_fp16 *y, int64_t n);
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    void (*softmax)(float *x, int64_t n, float cut);
    void (*swiglu)(float *out, const float *gate, const float *up, int64_t n);
    void (*add)(float *y, const float *a, const float *b, int64_t n);
    void (*scale)(float *x, float s, int64_t n);
    void (*axpy)(enum kernels_type t, float a, const void *x, float *y, int64_t n);
    void (*wsum)(enum kernels_type t, const float *a, const void *x, size_t stride,
                 int n_rows, float *y, int64_t n);
    /* kernels_att_scores / kernels_att_wsum, called with a type they accept (set by
     * dispatch.c: loops over dot_f32 and wsum, unless an ISA has grouped kernels) */
    void (*att_scores)(enum kernels_type t, const void *x, size_t stride, int n_rows,
                       const float *q, size_t qs, int n_q, float scale, float *s, size_t ss,
                       int64_t d);
    void (*att_wsum)(enum kernels_type t, const float *a, size_t as, int n_q, const void *x,
                     size_t stride, int n_rows, float *y, size_t ys, int64_t d);
    /* The step-size searches of the K-quant weight quantizers (ref.c documents them).
     * SIMD versions try several candidate steps at once, one per lane, each lane doing
     * the reference's float operations in the reference's order, so the quantized bytes
     * are identical (test_kernels compares them); n <= 32. */
    float (*fit_scale_min)(const float *x, const float *w, int n, int nmax, uint8_t *L,
                           float *the_min);
    float (*fit_scale_sym)(const float *x, int n, int nmax);
};

extern struct kernels_table kernels_tab;

void kernels_ref_fill(struct kernels_table *t);
void kernels_avx2_fill(struct kernels_table *t);   /* x86_avx2.c */
void kernels_avx2_f16_fill(struct kernels_table *t); /* x86_avx2_f16.c */
void kernels_avx512_fill(struct kernels_table *t); /* x86_avx512.c */
void kernels_avx512_f16_fill(struct kernels_table *t); /* x86_avx512_f16.c */
/* x86_avx512.c: the tiles in the canonical form the AMX kernels agree with */
void kernels_avx512_canon_fill(struct kernels_table *t);
int kernels_amx_usable(void);                   /* x86_amx.c: CPU has it, OS allows it */
void kernels_amx_fill(struct kernels_table *t); /* x86_amx.c */

/*
 * This thread's packing scratch for the large-batch products (gemm_q): at least `need`
 * bytes, 64-aligned, grow-only (contents not kept across a growth), freed when the
 * thread exits; NULL when out of memory, and the caller then runs the tiles. One buffer
 * per thread, so a kernel must not hold it across a call to another that uses it.
 */
void *kernels_scratch(size_t need);

/* reference pieces the SIMD files and dispatch.c call directly */
void ref_dequantize_row(enum kernels_type t, const void *src, float *dst, int64_t n);
int ref_quantize_row(enum kernels_type t, const float *src, void *dst, int64_t n);
float ref_fit_scale_min(const float *x, const float *w, int n, int nmax, uint8_t *L,
                        float *the_min);
float ref_fit_scale_sym(const float *x, int n, int nmax);

#endif
