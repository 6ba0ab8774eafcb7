/*
 * dispatch: the CPU probe that fills the function table once, the type table, and the
 * drivers (matrix products over a row range, rope) that call the table's kernels.
 */
#include <math.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kernels/impl.h"

struct kernels_table kernels_tab;

/* ------------------------------------------------------------ per-thread scratch */

static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static __thread void *t_scratch;
static __thread size_t t_scratch_cap;

static void scratch_free(void *p)
{
    free(p);
}

static void scratch_make_key(void)
{
    if (pthread_key_create(&g_scratch_key, scratch_free) != 0)
        abort(); /* only when the process is out of keys: our bug */
}

void *kernels_scratch(size_t need)
{
    pthread_once(&g_scratch_once, scratch_make_key);
    if (need <= t_scratch_cap)
        return t_scratch;
    size_t cap = (need + need / 4 + 4095) & ~(size_t)4095;
    void *p = aligned_alloc(64, cap);
    if (!p)
        return NULL;
    free(t_scratch);
    t_scratch = p;
    t_scratch_cap = cap;
    pthread_setspecific(g_scratch_key, p);
    return p;
}

/* ------------------------------------------------------------------------ probe */

static enum kernels_isa g_isa = KERNELS_ISA_REF;
static int g_ready;

static int cpu_has_avx2(void)
{
#if defined(__x86_64__)
    /* F16C is CPUID.1:ECX bit 29; clang's __builtin_cpu_supports cannot name it. */
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 29)))
        return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int cpu_has_avx512(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

/* AMX needs AVX-512 for everything around the tiles, and the OS's permission (asked
 * once; the answer does not change) */
static int cpu_has_amx(void)
{
#if defined(__x86_64__)
    static int known = -1;
    if (known < 0)
        known = cpu_has_avx512() && kernels_amx_usable();
    return known;
#else
    return 0;
#endif
}

/* Attention of a query group as one call per pair or per query, on the table's dot_f32
 * and wsum: the reference (on ref.c's) and what an ISA without grouped kernels runs. */
static void loop_att_scores(enum kernels_type t, const void *x, size_t stride, int n_rows,
                            const float *q, size_t qs, int n_q, float scale, float *s,
                            size_t ss, int64_t d)
{
    for (int i = 0; i < n_q; i++)
        for (int j = 0; j < n_rows; j++) {
            float dot;
            kernels_tab.dot_f32[t]((const char *)x + (size_t)j * stride, q + (size_t)i * qs,
                                   0, 1, d, &dot);
            s[(size_t)i * ss + (size_t)j] = dot * scale;
        }
}

static void loop_att_wsum(enum kernels_type t, const float *a, size_t as, int n_q,
                          const void *x, size_t stride, int n_rows, float *y, size_t ys,
                          int64_t d)
{
    for (int i = 0; i < n_q; i++)
        kernels_tab.wsum(t, a + (size_t)i * as, x, stride, n_rows, y + (size_t)i * ys, d);
}

int kernels_init(enum kernels_isa force)
{
    memset(&kernels_tab, 0, sizeof kernels_tab); /* an ISA chosen before leaves nothing */
    kernels_ref_fill(&kernels_tab);
    kernels_tab.att_scores = loop_att_scores;
    kernels_tab.att_wsum = loop_att_wsum;
    g_isa = KERNELS_ISA_REF;
    g_ready = 1;
    enum kernels_isa want = force;
    if (want == KERNELS_ISA_AUTO)
        want = cpu_has_amx()      ? KERNELS_ISA_AMX
               : cpu_has_avx512() ? KERNELS_ISA_AVX512
               : cpu_has_avx2() ? KERNELS_ISA_AVX2
                                : KERNELS_ISA_REF;
    if (want == KERNELS_ISA_REF)
        return 0;
    if ((want == KERNELS_ISA_AVX2 && !cpu_has_avx2()) ||
        (want == KERNELS_ISA_AVX512 && !cpu_has_avx512()) ||
        (want == KERNELS_ISA_AMX && !cpu_has_amx()) ||
        (want != KERNELS_ISA_AVX2 && want != KERNELS_ISA_AVX512 && want != KERNELS_ISA_AMX))
        return ERR_UNSUPPORTED;
#if defined(__x86_64__)
    kernels_avx2_fill(&kernels_tab);
    kernels_avx2_f16_fill(&kernels_tab);
    if (want == KERNELS_ISA_AVX512 || want == KERNELS_ISA_AMX) {
        kernels_avx512_fill(&kernels_tab);
        kernels_avx512_f16_fill(&kernels_tab);
    }
    if (want == KERNELS_ISA_AMX)
        kernels_amx_fill(&kernels_tab);
    g_isa = want;
    return 0;
#else
    return ERR_UNSUPPORTED;
#endif
}

enum kernels_isa kernels_isa(void)
{
    return g_isa;
}

const char *kernels_isa_name(void)
{
    switch (g_isa) {
    case KERNELS_ISA_AVX2: return "avx2";
    case KERNELS_ISA_AVX512: return "avx512";
    case KERNELS_ISA_AMX: return "avx512-amx";
    default: return "ref";
    }
}

static void ensure_init(void)
{
    if (!g_ready) /* a caller that forgot kernels_init still gets correct (ref) results */
        kernels_init(KERNELS_ISA_REF);
}

/* ======================================================================== types */

static const struct {
    const char *name;
    int block;
    size_t bytes;
} type_info[KERNELS_NTYPES] = {
    [KERNELS_F32] = {"f32", 1, 4},
    [KERNELS_F16] = {"f16", 1, 2},
    [KERNELS_BF16] = {"bf16", 1, 2},
    [KERNELS_Q4_0] = {"q4_0", QK4_0, sizeof(struct block_q4_0)},
    [KERNELS_Q5_0] = {"q5_0", QK5_0, sizeof(struct block_q5_0)},
    [KERNELS_Q8_0] = {"q8_0", QK8_0, sizeof(struct block_q8_0)},
    [KERNELS_Q4_K] = {"q4_K", QK_K, sizeof(struct block_q4_K)},
    [KERNELS_Q5_K] = {"q5_K", QK_K, sizeof(struct block_q5_K)},
    [KERNELS_Q6_K] = {"q6_K", QK_K, sizeof(struct block_q6_K)},
    [KERNELS_Q8_K] = {"q8_K", QK_K, sizeof(struct block_q8_K)},
};

int kernels_type_known(int type)
{
    return type >= 0 && type < KERNELS_NTYPES && type_info[type].name != NULL;
}

const char *kernels_type_name(enum kernels_type t)
{
    return kernels_type_known((int)t) ? type_info[t].name : "?";
}

int kernels_block_size(enum kernels_type t)
{
    return kernels_type_known((int)t) ? type_info[t].block : 0;
}

size_t kernels_block_bytes(enum kernels_type t)
{
    return kernels_type_known((int)t) ? type_info[t].bytes : 0;
}

size_t kernels_row_bytes(enum kernels_type t, int64_t n)
{
    int qk = kernels_block_size(t);
    if (qk <= 0 || n < 0 || n % qk != 0)
        return 0;
    return (size_t)(n / qk) * type_info[t].bytes;
}

void kernels_dequantize_row(enum kernels_type t, const void *src, float *dst, int64_t n)
{
    if (kernels_row_bytes(t, n) == 0 && n != 0)
        return;
    ref_dequantize_row(t, src, dst, n);
}

int kernels_quantize_row(enum kernels_type t, const float *src, void *dst, int64_t n)
{
    ensure_init();
    if (t == KERNELS_F16 && n >= 0) { /* the SIMD conversion rounds identically */
        kernels_tab.f32_to_f16(src, dst, n);
        return 0;
    }
    return ref_quantize_row(t, src, dst, n);
}

/* ======================================================================== matmul */

enum kernels_type kernels_act_type(enum kernels_type w)
{
    switch (w) {
    case KERNELS_Q8_0:
    case KERNELS_Q4_0:
    case KERNELS_Q5_0: return KERNELS_Q8_0;
    case KERNELS_Q4_K:
    case KERNELS_Q5_K:
    case KERNELS_Q6_K: return KERNELS_Q8_K;
    case KERNELS_F16: return KERNELS_F16;
    case KERNELS_BF16: return KERNELS_BF16;
    default: return KERNELS_F32;
    }
}

size_t kernels_act_row_bytes(enum kernels_type w, int64_t cols)
{
    enum kernels_type a = kernels_act_type(w);
    size_t rb = kernels_row_bytes(a, cols);
    if (a == KERNELS_Q8_K && rb)
        rb += (size_t)(cols / 32) * sizeof(float);
    return rb;
}

size_t kernels_act_bytes(enum kernels_type w, int64_t cols, int n_tok)
{
    return kernels_act_row_bytes(w, cols) * (size_t)(n_tok > 0 ? n_tok : 0);
}

/* The Q8_K trailer: d * (bsums[2j] + bsums[2j + 1]) for each 32 quants, in block order. */
static void q8k_trailer(const void *act, int64_t cols)
{
    const struct block_q8_K *b = act;
    float *s = (float *)(void *)((char *)act + kernels_row_bytes(KERNELS_Q8_K, cols));
    for (int64_t i = 0; i < cols / QK_K; i++)
        for (int j = 0; j < QK_K / 32; j++)
            s[i * (QK_K / 32) + j] = b[i].d * (float)(b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
}

int kernels_quantize_act(enum kernels_type w, const float *x, int64_t cols, int n_tok,
                         void *act)
{
    ensure_init();
    enum kernels_type a = kernels_act_type(w);
    size_t rb = kernels_act_row_bytes(w, cols);
    if (!kernels_type_known((int)w) || w == KERNELS_Q8_K)
        return ERR_UNSUPPORTED;
    if (n_tok < 0 || (rb == 0 && cols != 0) || kernels_row_bytes(w, cols) == 0)
        return ERR_INVALID;
    for (int t = 0; t < n_tok; t++) {
        const float *xt = x + (size_t)t * (size_t)cols;
        void *at = (char *)act + (size_t)t * rb;
        switch (a) {
        case KERNELS_Q8_0: kernels_tab.quantize_q8_0_act(xt, at, cols); break;
        case KERNELS_Q8_K:
            kernels_tab.quantize_q8_K_act(xt, at, cols);
            q8k_trailer(at, cols);
            break;
        case KERNELS_F16: kernels_tab.f32_to_f16(xt, at, cols); break;
        default: ref_quantize_row(a, xt, at, cols); break;
        }
    }
    return 0;
}

static int check_view(const struct kernels_tensor_view *W, int n_tok, int64_t rb, int64_t re)
{
    if (!W || !kernels_type_known((int)W->type) || W->type == KERNELS_Q8_K)
        return ERR_UNSUPPORTED;
    size_t need = kernels_row_bytes(W->type, W->cols);
    if (need == 0 || W->row_bytes < need || n_tok < 0 || rb < 0 || re < rb || re > W->rows)
        return ERR_INVALID;
    return 0;
}

/* Cache blocking for many tokens (prefill): a block of rows (at most MM_W_BLOCK bytes of
 * weights, L2-resident) meets chunks of tokens (at most MM_X_BLOCK bytes of activations,
 * also L2). Inside, tokens go in groups of the dot's width (KERNELS_NX or the ISA's
 * dot_q_nx) and each group runs over all the block's rows: the group's activations
 * stay in L1 while the weight rows come from L2. (Rows outside, groups inside re-read
 * every group's activations from L2 for each row: Q4_K 8960 x 1536 x 64 tokens, one
 * thread, 5.6 -> 4.7 ns per block and token with this order.) Weights stream from memory
 * once. Types with a register tile (run_tile_reg) use the same blocking. */
#define MM_W_BLOCK (192 * 1024)
#define MM_X_BLOCK (512 * 1024)

static void run_tile(kernels_dot_fn dot, int nx_max, const struct kernels_tensor_view *W,
                     const void *x, size_t x_stride, float *y, int t0, int t1, int64_t rb,
                     int64_t re)
{
    float out[KERNELS_NX_MAX];
    for (int t = t0; t < t1; t += nx_max) {
        int nx = t1 - t < nx_max ? t1 - t : nx_max;
        for (int64_t r = rb; r < re; r++) {
            const void *w = (const char *)W->data + (size_t)r * W->row_bytes;
            dot(w, (const char *)x + (size_t)t * x_stride, x_stride, nx, W->cols, out);
            for (int k = 0; k < nx; k++)
                y[(size_t)(t + k) * (size_t)W->rows + (size_t)r] = out[k];
        }
    }
}

/* As run_tile with the type's register-tiled kernel: tile_toks tokens by tile_rows rows
 * at a time, written straight into y. */
static void run_tile_reg(kernels_tile_fn tile, int tr, int tt,
                         const struct kernels_tensor_view *W, const void *x, size_t x_stride,
                         float *y, int t0, int t1, int64_t rb, int64_t re)
{
    for (int t = t0; t < t1; t += tt) {
        int nx = t1 - t < tt ? t1 - t : tt;
        for (int64_t r = rb; r < re; r += tr) {
            int nr = re - r < tr ? (int)(re - r) : tr;
            tile((const char *)W->data + (size_t)r * W->row_bytes, W->row_bytes, nr,
                 (const char *)x + (size_t)t * x_stride, x_stride, nx, W->cols,
                 y + (size_t)t * (size_t)W->rows + (size_t)r, (size_t)W->rows);
        }
    }
}

/* nx_max: tokens per dot call (KERNELS_NX, or the ISA's dot_q_nx); tile: NULL, or the
 * type's tiled kernel, then used for every product of the type, a single token too, so
 * that a token's arithmetic never depends on what else is in the batch. */
static void run_rows(kernels_dot_fn dot, int nx_max, kernels_tile_fn tile, int tr, int tt,
                     const struct kernels_tensor_view *W, const void *x, size_t x_stride,
                     float *y, int n_tok, int64_t rb, int64_t re)
{
    int grp = tile ? tt : nx_max;
    int64_t rows_blk = (int64_t)(MM_W_BLOCK / (W->row_bytes ? W->row_bytes : 1));
    int tok_blk = (int)(MM_X_BLOCK / (x_stride ? x_stride : 1)) / grp * grp;
    int unit = tile ? tr : 1; /* whole tiles: a partial one still computes tile_rows rows */
    rows_blk = rows_blk / unit * unit;
    if (rows_blk < unit)
        rows_blk = unit;
    if (tok_blk < grp)
        tok_blk = grp;
    for (int64_t r0 = rb; r0 < re; r0 += rows_blk) {
        int64_t r1 = r0 + rows_blk < re ? r0 + rows_blk : re;
        for (int t0 = 0; t0 < n_tok; t0 += tok_blk) {
            int t1 = t0 + tok_blk < n_tok ? t0 + tok_blk : n_tok;
            if (tile)
                run_tile_reg(tile, tr, tt, W, x, x_stride, y, t0, t1, r0, r1);
            else
                run_tile(dot, nx_max, W, x, x_stride, y, t0, t1, r0, r1);
        }
    }
}

int kernels_matmul(const struct kernels_tensor_view *W, const float *x, float *y, int n_tok,
                   int64_t row_begin, int64_t row_end)
{
    ensure_init();
    int rc = check_view(W, n_tok, row_begin, row_end);
    if (rc)
        return rc;
    run_rows(kernels_tab.dot_f32[W->type], KERNELS_NX, NULL, 0, 0, W, x,
             (size_t)W->cols * sizeof(float),
             y, n_tok, row_begin, row_end);
    return 0;
}

int kernels_matmul_q(const struct kernels_tensor_view *W, const void *act, float *y,
                     int n_tok, int64_t row_begin, int64_t row_end)
{
    ensure_init();
    int rc = check_view(W, n_tok, row_begin, row_end);
    if (rc)
        return rc;
    size_t stride = kernels_act_row_bytes(W->type, W->cols);
    int nx = kernels_tab.dot_q_nx[W->type];
    kernels_tile_fn tile = kernels_tab.tile_q[W->type];
    int tr = kernels_tab.tile_rows[W->type], tt = kernels_tab.tile_toks[W->type];
    if (tr < 1 || tt < 1)
        tile = NULL;
    kernels_gemm_fn gemm = kernels_tab.gemm_q[W->type];
    kernels_dot_fn dot = kernels_tab.dot_q[W->type];
    nx = nx > 0 && nx <= KERNELS_NX_MAX ? nx : KERNELS_NX;
    if (n_tok == 1 && kernels_tab.gemv_q[W->type]) {
        kernels_tab.gemv_q[W->type](W, act, y, row_begin, row_end);
        return 0;
    }
    if (gemm && n_tok >= kernels_tab.gemm_min_tok[W->type] && n_tok >= 16 &&
        row_end - row_begin >= 16) {
        /* whole 16 x 16 tiles there, the rest on the (bit-identical) tile or dot */
        int n16 = n_tok / 16 * 16;
        int64_t r16 = row_begin + (row_end - row_begin) / 16 * 16;
        if (gemm(W, act, stride, y, n16, row_begin, r16) == 0) {
            if (r16 < row_end)
                run_rows(dot, nx, tile, tr, tt, W, act, stride, y, n16, r16, row_end);
            if (n16 < n_tok)
                run_rows(dot, nx, tile, tr, tt, W, (const char *)act + (size_t)n16 * stride,
                         stride, y + (size_t)n16 * (size_t)W->rows, n_tok - n16, row_begin,
                         row_end);
            return 0;
        }
    }
    run_rows(dot, nx, tile, tr, tt, W, act, stride, y, n_tok, row_begin, row_end);
    return 0;
}

float kernels_dot_f32(enum kernels_type w, const void *row, const float *x, int64_t n)
{
    ensure_init();
    float out = 0;
    if (kernels_row_bytes(w, n) == 0 || w == KERNELS_Q8_K)
        return 0;
    kernels_tab.dot_f32[w](row, x, 0, 1, n, &out);
    return out;
}

/* ======================================================================== vector ops */

void kernels_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    ensure_init();
    kernels_tab.rmsnorm(y, x, w, n, eps);
}

void kernels_softmax(float *x, int64_t n, float cut)
{
    ensure_init();
    kernels_tab.softmax(x, n, cut);
}

void kernels_swiglu(float *out, const float *gate, const float *up, int64_t n)
{
    ensure_init();
    kernels_tab.swiglu(out, gate, up, n);
}

void kernels_add(float *y, const float *a, const float *b, int64_t n)
{
    ensure_init();
    kernels_tab.add(y, a, b, n);
}

void kernels_scale(float *x, float s, int64_t n)
{
    ensure_init();
    kernels_tab.scale(x, s, n);
}

void kernels_axpy(enum kernels_type t, float a, const void *x, float *y, int64_t n)
{
    ensure_init();
    if (t == KERNELS_F32 || t == KERNELS_F16 || t == KERNELS_BF16)
        kernels_tab.axpy(t, a, x, y, n);
}

void kernels_wsum(enum kernels_type t, const float *a, const void *x, size_t stride,
                  int n_rows, float *y, int64_t n)
{
    ensure_init();
    if (t != KERNELS_F32 && t != KERNELS_F16 && t != KERNELS_BF16)
        return;
    kernels_tab.wsum(t, a, x, stride, n_rows, y, n);
}

void kernels_att_scores(enum kernels_type t, const void *x, size_t stride, int n_rows,
                        const float *q, size_t qs, int n_q, float scale, float *s, size_t ss,
                        int64_t d)
{
    ensure_init();
    if (kernels_row_bytes(t, d) == 0 || t == KERNELS_Q8_K) { /* as kernels_dot_f32 */
        for (int i = 0; i < n_q; i++)
            for (int j = 0; j < n_rows; j++)
                s[(size_t)i * ss + (size_t)j] = 0;
        return;
    }
    kernels_tab.att_scores(t, x, stride, n_rows, q, qs, n_q, scale, s, ss, d);
}

void kernels_att_wsum(enum kernels_type t, const float *a, size_t as, int n_q, const void *x,
                      size_t stride, int n_rows, float *y, size_t ys, int64_t d)
{
    ensure_init();
    if (t != KERNELS_F32 && t != KERNELS_F16 && t != KERNELS_BF16)
        return;
    kernels_tab.att_wsum(t, a, as, n_q, x, stride, n_rows, y, ys, d);
}

/* ======================================================================== rope */

/* YaRN correction dimension for a rotation count (ggml's formula, float arithmetic). */
static float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base)
{
    return n_dims * logf(n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(base));
}

/*
 * cos/sin per pair, computed as ggml does: theta starts at pos and is multiplied by
 * base^(-2/n_rot) per pair (repeated multiplication, not pow, so the rounding agrees).
 */
#define ROPE_MAX_DIMS 1024
int kernels_rope_apply(const struct kernels_rope *r, float *x, int n_heads, int head_dim,
                       int64_t pos)
{
    int n_rot = r->n_rot;
    if (n_rot <= 0 || n_rot % 2 || n_rot > head_dim || n_rot > ROPE_MAX_DIMS || n_heads < 0)
        return ERR_INVALID;
    float cs[ROPE_MAX_DIMS]; /* [n_rot/2] pairs of (cos, sin) */
    float corr0 = 0, corr1 = 0;
    if (r->ext_factor != 0.0f) {
        float start = floorf(yarn_corr_dim(n_rot, r->n_ctx_orig, r->beta_fast, r->freq_base));
        float end = ceilf(yarn_corr_dim(n_rot, r->n_ctx_orig, r->beta_slow, r->freq_base));
        corr0 = start > 0 ? start : 0;
        corr1 = end < n_rot - 1 ? end : (float)(n_rot - 1);
    }
    float theta_scale = powf(r->freq_base, -2.0f / n_rot);
    float theta = (float)pos;
    for (int i0 = 0; i0 < n_rot; i0 += 2) {
        float ff = r->freq_factors ? r->freq_factors[i0 / 2] : 1.0f;
        float extrap = theta / ff, interp = r->freq_scale * extrap, th = interp;
        float mscale = r->attn_factor;
        if (r->ext_factor != 0.0f) {
            float yv = (i0 / 2 - corr0) / fmaxf(0.001f, corr1 - corr0);
            float ramp = (1 - fminf(1, fmaxf(0, yv))) * r->ext_factor;
            th = interp * (1 - ramp) + extrap * ramp;
            mscale *= 1.0f + 0.1f * logf(1.0f / r->freq_scale);
        }
        cs[i0] = cosf(th) * mscale;
        cs[i0 + 1] = sinf(th) * mscale;
        theta *= theta_scale;
    }
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)head_dim;
        for (int i0 = 0; i0 < n_rot; i0 += 2) {
            int a = r->neox ? i0 / 2 : i0, b = r->neox ? i0 / 2 + n_rot / 2 : i0 + 1;
            float c = cs[i0], s = cs[i0 + 1], x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
    return 0;
}
