/* shapes: see shapes.h. The numbers come from each model's Hugging Face config.json
 * (docs/MODELS.md lists them); the tiny shapes match shared/testdata/models. */
#include "model/shapes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct shapes_model shapes_table[] = {
    /* --- qwen2 ---------------------------------------------------------- */
    {.name = "tiny", .arch = SHAPES_ARCH_QWEN2, .hf_name = "tiny-qwen2", .n_vocab = 151936,
     .n_layer = 4, .n_ctx = 2048, .n_embd = 256, .n_ff = 768, .n_head = 8, .n_head_kv = 2,
     .rope_theta = 10000.0f, .rms_eps = 1e-6f, .tied = true},
    {.name = "r1-distill-qwen-1.5b", .arch = SHAPES_ARCH_QWEN2,
     .hf_name = "DeepSeek-R1-Distill-Qwen-1.5B", .n_vocab = 151936, .n_layer = 28,
     .n_ctx = 131072, .n_embd = 1536, .n_ff = 8960, .n_head = 12, .n_head_kv = 2,
     .rope_theta = 10000.0f, .rms_eps = 1e-6f, .tied = false},
    {.name = "r1-distill-qwen-7b", .arch = SHAPES_ARCH_QWEN2,
     .hf_name = "DeepSeek-R1-Distill-Qwen-7B", .n_vocab = 152064, .n_layer = 28,
     .n_ctx = 131072, .n_embd = 3584, .n_ff = 18944, .n_head = 28, .n_head_kv = 4,
     .rope_theta = 10000.0f, .rms_eps = 1e-6f, .tied = false},
    /* --- llama ---------------------------------------------------------- */
    {.name = "tiny", .arch = SHAPES_ARCH_LLAMA, .hf_name = "tiny-llama", .n_vocab = 32256,
     .n_layer = 4, .n_ctx = 2048, .n_embd = 256, .n_ff = 768, .n_head = 8, .n_head_kv = 4,
     .rope_theta = 100000.0f, .rms_eps = 1e-6f, .tied = true,
     .rope_scaling = SHAPES_ROPE_LINEAR, .rope_factor = 4.0f},
    {.name = "r1-distill-llama-8b", .arch = SHAPES_ARCH_LLAMA,
     .hf_name = "DeepSeek-R1-Distill-Llama-8B", .n_vocab = 128256, .n_layer = 32,
     .n_ctx = 131072, .n_embd = 4096, .n_ff = 14336, .n_head = 32, .n_head_kv = 8,
     .rope_theta = 500000.0f, .rms_eps = 1e-5f, .tied = false,
     .rope_scaling = SHAPES_ROPE_LLAMA3, .rope_factor = 8.0f, .rope_orig_ctx = 8192,
     .llama3_low_freq = 1.0f, .llama3_high_freq = 4.0f},
    /* --- deepseek2: MLA is stored as MQA, so head_count_kv is 1 ---------- */
    {.name = "tiny", .arch = SHAPES_ARCH_DEEPSEEK2, .hf_name = "tiny-deepseek2",
     .n_vocab = 102400, .n_layer = 4, .n_ctx = 163840, .n_embd = 128, .n_ff = 512,
     .n_head = 8, .n_head_kv = 1, .rope_theta = 10000.0f, .rms_eps = 1e-6f, .tied = true,
     .rope_scaling = SHAPES_ROPE_YARN, .rope_factor = 40.0f, .rope_orig_ctx = 4096,
     .yarn_beta_fast = 32.0f, .yarn_beta_slow = 1.0f, .yarn_mscale_all_dim = 0.707,
     .n_dense_lead = 1, .n_expert = 8, .n_expert_used = 2, .n_expert_shared = 1,
     .n_ff_exp = 128, .n_group = 1, .n_group_used = 1, .has_q_lora_rank = true,
     .q_lora_rank = 0, .kv_lora_rank = 64, .qk_nope = 32, .qk_rope = 16, .v_head = 32,
     .expert_weights_scale = 1.0f, .expert_weights_norm = false,
     .gating = SHAPES_GATING_SOFTMAX},
    {.name = "tiny-v3", .arch = SHAPES_ARCH_DEEPSEEK2, .hf_name = "tiny-deepseek-v3",
     .n_vocab = 129280, .n_layer = 4, .n_ctx = 163840, .n_embd = 128, .n_ff = 512,
     .n_head = 8, .n_head_kv = 1, .rope_theta = 10000.0f, .rms_eps = 1e-6f, .tied = false,
     .rope_scaling = SHAPES_ROPE_YARN, .rope_factor = 40.0f, .rope_orig_ctx = 4096,
     .yarn_beta_fast = 32.0f, .yarn_beta_slow = 1.0f, .yarn_mscale_all_dim = 1.0,
     .n_dense_lead = 1, .n_expert = 16, .n_expert_used = 4, .n_expert_shared = 1,
     .n_ff_exp = 128, .n_group = 4, .n_group_used = 2, .has_q_lora_rank = true,
     .q_lora_rank = 96, .kv_lora_rank = 64, .qk_nope = 32, .qk_rope = 16, .v_head = 32,
     .expert_weights_scale = 2.5f, .expert_weights_norm = true,
     .gating = SHAPES_GATING_SIGMOID},
    {.name = "deepseek-v2-lite", .arch = SHAPES_ARCH_DEEPSEEK2,
     .hf_name = "DeepSeek-V2-Lite", .n_vocab = 102400, .n_layer = 27, .n_ctx = 163840,
     .n_embd = 2048, .n_ff = 10944, .n_head = 16, .n_head_kv = 1, .rope_theta = 10000.0f,
     .rms_eps = 1e-6f, .tied = false, .rope_scaling = SHAPES_ROPE_YARN,
     .rope_factor = 40.0f, .rope_orig_ctx = 4096, .yarn_beta_fast = 32.0f,
     .yarn_beta_slow = 1.0f, .yarn_mscale_all_dim = 0.707, .n_dense_lead = 1,
     .n_expert = 64, .n_expert_used = 6, .n_expert_shared = 2, .n_ff_exp = 1408,
     .n_group = 1, .n_group_used = 1, .has_q_lora_rank = false, .q_lora_rank = 0,
     .kv_lora_rank = 512, .qk_nope = 128, .qk_rope = 64, .v_head = 128,
     .expert_weights_scale = 1.0f, .expert_weights_norm = false,
     .gating = SHAPES_GATING_SOFTMAX},
};

#define SHAPES_N (sizeof shapes_table / sizeof shapes_table[0])

static const char *const shapes_arch_names[] = {"llama", "qwen2", "deepseek2"};

const char *shapes_arch_name(enum shapes_arch arch)
{
    return (unsigned)arch < 3 ? shapes_arch_names[arch] : "?";
}

int shapes_arch_from_name(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, shapes_arch_names[i]))
            return i;
    return -1;
}

const struct shapes_model *shapes_all(size_t *n)
{
    *n = SHAPES_N;
    return shapes_table;
}

const struct shapes_model *shapes_find(enum shapes_arch arch, const char *name)
{
    for (size_t i = 0; i < SHAPES_N; i++)
        if (shapes_table[i].arch == arch && !strcmp(shapes_table[i].name, name))
            return &shapes_table[i];
    return NULL;
}

void shapes_list(enum shapes_arch arch, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap)
        buf[0] = '\0';
    for (size_t i = 0; i < SHAPES_N; i++) {
        if (shapes_table[i].arch != arch || used >= cap)
            continue;
        int k = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "",
                         shapes_table[i].name);
        if (k > 0)
            used += (size_t)k;
    }
}

/* ------------------------------------------------------------------------- */
/* Tensor list                                                                */

struct shapes_builder {
    struct shapes_tensor *v;
    size_t n, cap;
    bool bad;
};

/* Appends one tensor; `fmt` is a SHAPES_TN_* name, formatted with the block index. */
static void shapes_add(struct shapes_builder *b, const char *fmt, int blk, bool matrix,
                       enum shapes_init init, float std, uint32_t n_dims, int64_t ne0,
                       int64_t ne1, int64_t ne2)
{
    if (b->bad)
        return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct shapes_tensor *v = realloc(b->v, cap * sizeof *v);
        if (!v) {
            b->bad = true;
            return;
        }
        b->v = v;
        b->cap = cap;
    }
    struct shapes_tensor *t = &b->v[b->n++];
    memset(t, 0, sizeof *t);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(t->name, sizeof t->name, fmt, blk); /* fmt is always a SHAPES_TN_* literal */
#pragma GCC diagnostic pop
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->ne[3] = 1;
    t->matrix = matrix;
    t->init = init;
    t->std = std;
}

#define W_STD 0.02f  /* weights, biases, norm noise */
#define QK_STD 0.2f  /* query/key projections: sharp attention even with random weights */

static void shapes_norm(struct shapes_builder *b, const char *fmt, int blk, int64_t n)
{
    shapes_add(b, fmt, blk, false, SHAPES_INIT_ONE_PLUS, W_STD, 1, n, 1, 1);
}

static void shapes_mat(struct shapes_builder *b, const char *fmt, int blk, int64_t in,
                       int64_t out, float std)
{
    shapes_add(b, fmt, blk, true, SHAPES_INIT_NORMAL, std, 2, in, out, 1);
}

static void shapes_bias(struct shapes_builder *b, const char *fmt, int blk, int64_t n)
{
    shapes_add(b, fmt, blk, false, SHAPES_INIT_NORMAL, W_STD, 1, n, 1, 1);
}

/* llama / qwen2 attention: GQA with optional q/k/v biases (qwen2). */
static void shapes_attn_gqa(struct shapes_builder *b, const struct shapes_model *s, int i)
{
    int64_t hd = s->n_embd / s->n_head;
    bool bias = s->arch == SHAPES_ARCH_QWEN2;
    shapes_mat(b, SHAPES_TN_ATTN_Q, i, s->n_embd, hd * s->n_head, QK_STD);
    if (bias)
        shapes_bias(b, SHAPES_TN_ATTN_Q_BIAS, i, hd * s->n_head);
    shapes_mat(b, SHAPES_TN_ATTN_K, i, s->n_embd, hd * s->n_head_kv, QK_STD);
    if (bias)
        shapes_bias(b, SHAPES_TN_ATTN_K_BIAS, i, hd * s->n_head_kv);
    shapes_mat(b, SHAPES_TN_ATTN_V, i, s->n_embd, hd * s->n_head_kv, W_STD);
    if (bias)
        shapes_bias(b, SHAPES_TN_ATTN_V_BIAS, i, hd * s->n_head_kv);
    shapes_mat(b, SHAPES_TN_ATTN_OUT, i, hd * s->n_head, s->n_embd, W_STD);
}

/* deepseek2 multi-head latent attention, kv_b_proj split into k_b / v_b. */
static void shapes_attn_mla(struct shapes_builder *b, const struct shapes_model *s, int i)
{
    int64_t qk = s->qk_nope + s->qk_rope;
    if (s->q_lora_rank == 0) {
        shapes_mat(b, SHAPES_TN_ATTN_Q, i, s->n_embd, s->n_head * qk, QK_STD);
    } else {
        shapes_mat(b, SHAPES_TN_ATTN_Q_A, i, s->n_embd, s->q_lora_rank, W_STD);
        shapes_norm(b, SHAPES_TN_ATTN_Q_A_NORM, i, s->q_lora_rank);
        shapes_mat(b, SHAPES_TN_ATTN_Q_B, i, s->q_lora_rank, s->n_head * qk, QK_STD);
    }
    shapes_mat(b, SHAPES_TN_ATTN_KV_A_MQA, i, s->n_embd, s->kv_lora_rank + s->qk_rope, QK_STD);
    shapes_norm(b, SHAPES_TN_ATTN_KV_A_NORM, i, s->kv_lora_rank);
    shapes_add(b, SHAPES_TN_ATTN_K_B, i, true, SHAPES_INIT_NORMAL, QK_STD, 3, s->qk_nope,
               s->kv_lora_rank, s->n_head);
    shapes_add(b, SHAPES_TN_ATTN_V_B, i, true, SHAPES_INIT_NORMAL, W_STD, 3, s->kv_lora_rank,
               s->v_head, s->n_head);
    shapes_mat(b, SHAPES_TN_ATTN_OUT, i, (int64_t)s->n_head * s->v_head, s->n_embd, W_STD);
}

/* Dense SwiGLU feed-forward. */
static void shapes_ffn_dense(struct shapes_builder *b, const struct shapes_model *s, int i)
{
    shapes_mat(b, SHAPES_TN_FFN_GATE, i, s->n_embd, s->n_ff, W_STD);
    shapes_mat(b, SHAPES_TN_FFN_UP, i, s->n_embd, s->n_ff, W_STD);
    shapes_mat(b, SHAPES_TN_FFN_DOWN, i, s->n_ff, s->n_embd, W_STD);
}

/* Mixture of experts: router (F32), routed experts as 3-D tensors, shared experts. */
static void shapes_ffn_moe(struct shapes_builder *b, const struct shapes_model *s, int i)
{
    int64_t sh = (int64_t)s->n_ff_exp * s->n_expert_shared;
    shapes_add(b, SHAPES_TN_FFN_GATE_INP, i, false, SHAPES_INIT_NORMAL, W_STD, 2, s->n_embd,
               s->n_expert, 1);
    if (s->gating == SHAPES_GATING_SIGMOID)
        shapes_bias(b, SHAPES_TN_FFN_EXP_PROBS_B, i, s->n_expert);
    shapes_add(b, SHAPES_TN_FFN_GATE_EXPS, i, true, SHAPES_INIT_NORMAL, W_STD, 3, s->n_embd,
               s->n_ff_exp, s->n_expert);
    shapes_add(b, SHAPES_TN_FFN_UP_EXPS, i, true, SHAPES_INIT_NORMAL, W_STD, 3, s->n_embd,
               s->n_ff_exp, s->n_expert);
    shapes_add(b, SHAPES_TN_FFN_DOWN_EXPS, i, true, SHAPES_INIT_NORMAL, W_STD, 3, s->n_ff_exp,
               s->n_embd, s->n_expert);
    if (sh > 0) {
        shapes_mat(b, SHAPES_TN_FFN_GATE_SHEXP, i, s->n_embd, sh, W_STD);
        shapes_mat(b, SHAPES_TN_FFN_UP_SHEXP, i, s->n_embd, sh, W_STD);
        shapes_mat(b, SHAPES_TN_FFN_DOWN_SHEXP, i, sh, s->n_embd, W_STD);
    }
}

static void shapes_block(struct shapes_builder *b, const struct shapes_model *s, int i)
{
    shapes_norm(b, SHAPES_TN_ATTN_NORM, i, s->n_embd);
    if (s->arch == SHAPES_ARCH_DEEPSEEK2)
        shapes_attn_mla(b, s, i);
    else
        shapes_attn_gqa(b, s, i);
    shapes_norm(b, SHAPES_TN_FFN_NORM, i, s->n_embd);
    if (s->arch == SHAPES_ARCH_DEEPSEEK2 && (uint32_t)i >= s->n_dense_lead)
        shapes_ffn_moe(b, s, i);
    else
        shapes_ffn_dense(b, s, i);
}

int shapes_tensors(const struct shapes_model *s, uint32_t n_vocab, struct shapes_tensor **out,
                   size_t *n, struct err *err)
{
    *out = NULL;
    *n = 0;
    if (n_vocab == 0 || s->n_embd == 0 || s->n_head == 0 || s->n_layer == 0)
        return err_set(err, ERR_INVALID, "shape %s: zero vocabulary or dimension", s->name);
    struct shapes_builder b = {0};
    if (s->rope_scaling == SHAPES_ROPE_LLAMA3)
        shapes_add(&b, SHAPES_TN_ROPE_FREQS, 0, false, SHAPES_INIT_ROPE_FREQS, 0.0f, 1,
                   s->n_embd / s->n_head / 2, 1, 1);
    shapes_mat(&b, SHAPES_TN_TOKEN_EMBD, 0, s->n_embd, n_vocab, W_STD);
    shapes_norm(&b, SHAPES_TN_OUTPUT_NORM, 0, s->n_embd);
    if (!s->tied)
        shapes_mat(&b, SHAPES_TN_OUTPUT, 0, s->n_embd, n_vocab, W_STD);
    for (uint32_t i = 0; i < s->n_layer; i++)
        shapes_block(&b, s, (int)i);
    if (b.bad) {
        free(b.v);
        return err_set(err, ERR_NOMEM, "shape %s: out of memory listing tensors", s->name);
    }
    *out = b.v;
    *n = b.n;
    return 0;
}

uint64_t shapes_tensor_elems(const struct shapes_tensor *t)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        n *= (uint64_t)t->ne[d];
    return n;
}

/* ------------------------------------------------------------------------- */
/* Metadata                                                                   */

/* The key `fmt` ("%s.block_count") for arch into buf. */
static const char *shapes_key(char *buf, size_t cap, const char *fmt, const char *arch)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(buf, cap, fmt, arch); /* fmt is always a SHAPES_KV_* literal */
#pragma GCC diagnostic pop
    return buf;
}

struct shapes_kw {
    struct gguf_writer *w;
    const char *arch;
    char key[128];
    int rc;
};

static void kw_u32(struct shapes_kw *k, const char *fmt, uint32_t v)
{
    if (k->rc == 0)
        k->rc = gguf_writer_set_u32(k->w, shapes_key(k->key, sizeof k->key, fmt, k->arch), v);
}

static void kw_f32(struct shapes_kw *k, const char *fmt, float v)
{
    if (k->rc == 0)
        k->rc = gguf_writer_set_f32(k->w, shapes_key(k->key, sizeof k->key, fmt, k->arch), v);
}

static void kw_bool(struct shapes_kw *k, const char *fmt, bool v)
{
    if (k->rc == 0)
        k->rc = gguf_writer_set_bool(k->w, shapes_key(k->key, sizeof k->key, fmt, k->arch), v);
}

static void kw_str(struct shapes_kw *k, const char *fmt, const char *v)
{
    if (k->rc == 0)
        k->rc = gguf_writer_set_str(k->w, shapes_key(k->key, sizeof k->key, fmt, k->arch), v,
                                    strlen(v));
}

/* Keys every architecture gets (convert_hf_to_gguf.py TextModel.set_gguf_parameters). */
static void shapes_kv_base(struct shapes_kw *k, const struct shapes_model *s)
{
    kw_u32(k, SHAPES_KV_BLOCK_COUNT, s->n_layer);
    kw_u32(k, SHAPES_KV_CONTEXT_LENGTH, s->n_ctx);
    kw_u32(k, SHAPES_KV_EMBEDDING_LENGTH, s->n_embd);
    kw_u32(k, SHAPES_KV_FEED_FORWARD_LENGTH, s->n_ff);
    kw_u32(k, SHAPES_KV_HEAD_COUNT, s->n_head);
    kw_u32(k, SHAPES_KV_HEAD_COUNT_KV, s->n_head_kv);
    if (s->rope_scaling == SHAPES_ROPE_YARN) {
        kw_str(k, SHAPES_KV_ROPE_SCALING_TYPE, "yarn");
        kw_f32(k, SHAPES_KV_ROPE_SCALING_FACTOR, s->rope_factor);
        kw_u32(k, SHAPES_KV_ROPE_SCALING_ORIG_CTX, s->rope_orig_ctx);
        kw_f32(k, SHAPES_KV_YARN_BETA_FAST, s->yarn_beta_fast);
        kw_f32(k, SHAPES_KV_YARN_BETA_SLOW, s->yarn_beta_slow);
    }
    kw_f32(k, SHAPES_KV_ROPE_FREQ_BASE, s->rope_theta);
    kw_f32(k, SHAPES_KV_RMS_EPS, s->rms_eps);
}

/* LlamaModel: linear rope scaling keys, vocab_size, rope.dimension_count. Llama-3
 * scaling writes no key (rope_freqs.weight carries it). */
static void shapes_kv_llama(struct shapes_kw *k, const struct shapes_model *s, uint32_t n_vocab)
{
    if (s->rope_scaling == SHAPES_ROPE_LINEAR) {
        kw_str(k, SHAPES_KV_ROPE_SCALING_TYPE, "linear");
        kw_f32(k, SHAPES_KV_ROPE_SCALING_FACTOR, s->rope_factor);
    }
    kw_u32(k, SHAPES_KV_VOCAB_SIZE, n_vocab);
    kw_u32(k, SHAPES_KV_ROPE_DIM, s->n_embd / s->n_head);
}

/* DeepseekV2Model: MoE counts, MLA ranks and lengths, yarn log multiplier. */
static void shapes_kv_deepseek2(struct shapes_kw *k, const struct shapes_model *s,
                                uint32_t n_vocab)
{
    kw_u32(k, SHAPES_KV_EXPERT_COUNT, s->n_expert);
    kw_u32(k, SHAPES_KV_EXPERT_USED, s->n_expert_used);
    kw_u32(k, SHAPES_KV_EXPERT_GROUPS, s->n_group);
    kw_u32(k, SHAPES_KV_EXPERT_GROUPS_USED, s->n_group_used);
    kw_u32(k, SHAPES_KV_EXPERT_GATING, (uint32_t)s->gating);
    kw_u32(k, SHAPES_KV_LEADING_DENSE, s->n_dense_lead);
    kw_u32(k, SHAPES_KV_VOCAB_SIZE, n_vocab);
    if (s->has_q_lora_rank)
        kw_u32(k, SHAPES_KV_Q_LORA_RANK, s->q_lora_rank);
    kw_u32(k, SHAPES_KV_KV_LORA_RANK, s->kv_lora_rank);
    kw_u32(k, SHAPES_KV_KEY_LENGTH, s->kv_lora_rank + s->qk_rope);
    kw_u32(k, SHAPES_KV_VALUE_LENGTH, s->kv_lora_rank);
    kw_u32(k, SHAPES_KV_KEY_LENGTH_MLA, s->qk_nope + s->qk_rope);
    kw_u32(k, SHAPES_KV_VALUE_LENGTH_MLA, s->v_head);
    kw_u32(k, SHAPES_KV_EXPERT_FF, s->n_ff_exp);
    kw_u32(k, SHAPES_KV_EXPERT_SHARED, s->n_expert_shared);
    kw_f32(k, SHAPES_KV_EXPERT_SCALE, s->expert_weights_scale);
    if (s->expert_weights_norm)
        kw_bool(k, SHAPES_KV_EXPERT_NORM, true);
    kw_u32(k, SHAPES_KV_ROPE_DIM, s->qk_rope);
    if (s->rope_scaling == SHAPES_ROPE_YARN)
        kw_f32(k, SHAPES_KV_YARN_LOG_MUL, (float)(0.1 * s->yarn_mscale_all_dim));
}

int shapes_write_hparams(const struct shapes_model *s, uint32_t n_vocab, struct gguf_writer *w,
                         struct err *err)
{
    struct shapes_kw k = {.w = w, .arch = shapes_arch_name(s->arch)};
    shapes_kv_base(&k, s);
    if (s->arch == SHAPES_ARCH_LLAMA)
        shapes_kv_llama(&k, s, n_vocab);
    else if (s->arch == SHAPES_ARCH_DEEPSEEK2)
        shapes_kv_deepseek2(&k, s, n_vocab);
    if (k.rc != 0)
        return err_set(err, k.rc, "shape %s: cannot set metadata key %s", s->name, k.key);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Llama-3 rope factors                                                       */

void shapes_llama3_rope_factors(const struct shapes_model *s, float *out, uint32_t n)
{
    /* float32 throughout, like the converter's torch code */
    const float dim = (float)(s->n_embd / s->n_head);
    const float old_ctx = (float)s->rope_orig_ctx;
    const float low_wavelen = old_ctx / s->llama3_low_freq;
    const float high_wavelen = old_ctx / s->llama3_high_freq;
    for (uint32_t i = 0; i < n; i++) {
        float freq = 1.0f / powf(s->rope_theta, (float)(2 * i) / dim);
        float wavelen = (float)(2.0 * 3.14159265358979323846) / freq; /* 2*math.pi */
        if (wavelen < high_wavelen) {
            out[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            out[i] = s->rope_factor;
        } else {
            float smooth = (old_ctx / wavelen - s->llama3_low_freq) /
                           (s->llama3_high_freq - s->llama3_low_freq);
            out[i] = 1.0f / ((1.0f - smooth) / s->rope_factor + smooth);
        }
    }
}
