/*
 * model: reads the hyper-parameters of a llama-family or deepseek2 GGUF and binds every
 * tensor to a checked kernels_tensor_view. The key and tensor names come from shapes.h, the one
 * place that spells them.
 */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/arch.h"
#include "model/shapes.h"

/* The key "<arch>.x" from shapes.h's "%s.x" (the format is not passed to printf, so
 * the compiler can check every format string). */
static void arch_key(char *key, size_t cap, const char *fmt, const char *arch)
{
    snprintf(key, cap, "%s%s", arch, strncmp(fmt, "%s", 2) == 0 ? fmt + 2 : fmt);
}

/* An optional u32 key "<arch>.<...>": 0 if found, 1 if absent (out untouched). */
static int opt_u32(const struct gguf *g, const char *fmt, const char *arch, uint32_t *out,
                   struct err *err)
{
    char key[128];
    uint32_t def = *out; /* gguf clears *out on failure: keep the caller's default */
    arch_key(key, sizeof(key), fmt, arch);
    int rc = gguf_get_u32(g, key, out, err);
    if (rc == ERR_NOTFOUND) {
        err_clear(err);
        *out = def;
        return 1;
    }
    return rc;
}

static int req_u32(const struct gguf *g, const char *fmt, const char *arch, uint32_t *out,
                   struct err *err)
{
    *out = 0;
    int rc = opt_u32(g, fmt, arch, out, err);
    if (rc == 1) {
        char key[128];
        arch_key(key, sizeof(key), fmt, arch);
        return err_set(err, ERR_NOTFOUND, "%s: missing key '%s'", gguf_path(g), key);
    }
    return rc;
}

static int opt_f32(const struct gguf *g, const char *fmt, const char *arch, float *out,
                   struct err *err)
{
    char key[128];
    float def = *out;
    arch_key(key, sizeof(key), fmt, arch);
    int rc = gguf_get_f32(g, key, out, err);
    if (rc == ERR_NOTFOUND) {
        err_clear(err);
        *out = def;
        return 1;
    }
    return rc;
}

static int read_rope_scaling(const struct gguf *g, const char *arch, struct model_hparams *hp,
                             struct err *err)
{
    char key[128];
    const char *s;
    size_t len;
    float factor = 1.0f;
    uint32_t orig = (uint32_t)hp->n_ctx_train;
    int rc;
    hp->rope_freq_scale = 1.0f;
    arch_key(key, sizeof(key), SHAPES_KV_ROPE_SCALING_TYPE, arch);
    rc = gguf_get_str(g, key, &s, &len, err);
    if (rc == ERR_NOTFOUND) {
        err_clear(err);
        return 0;
    }
    if (rc)
        return rc;
    if ((rc = opt_f32(g, SHAPES_KV_ROPE_SCALING_FACTOR, arch, &factor, err)) < 0)
        return rc;
    if (len == 4 && memcmp(s, "none", 4) == 0)
        return 0;
    if (!(factor > 0.0f) || !isfinite(factor))
        return err_set(err, ERR_RANGE, "%s: %s.rope.scaling.factor = %g is not positive",
                       gguf_path(g), arch, (double)factor);
    if (len == 6 && memcmp(s, "linear", 6) == 0) {
        hp->rope_freq_scale = 1.0f / factor;
        return 0;
    }
    if (len == 4 && memcmp(s, "yarn", 4) == 0) {
        if ((rc = opt_u32(g, SHAPES_KV_ROPE_SCALING_ORIG_CTX, arch, &orig, err)) < 0)
            return rc;
        hp->rope_freq_scale = 1.0f / factor;
        hp->rope_yarn = true;
        hp->rope_n_ctx_orig = (int)orig;
        return 0;
    }
    return err_set(err, ERR_UNSUPPORTED, "%s: rope scaling type '%.*s' is not supported "
                   "(none, linear, yarn)", gguf_path(g), (int)(len > 32 ? 32 : len), s);
}

static int read_hparams(const struct gguf *g, const char *arch, struct model_hparams *hp,
                        struct err *err)
{
    uint32_t n_layer, n_ctx, n_embd, n_ff, n_head, n_head_kv, head_dim = 0, n_rot = 0;
    float base = 10000.0f, eps = 0.0f;
    int rc;
    if ((rc = req_u32(g, SHAPES_KV_BLOCK_COUNT, arch, &n_layer, err)) ||
        (rc = req_u32(g, SHAPES_KV_CONTEXT_LENGTH, arch, &n_ctx, err)) ||
        (rc = req_u32(g, SHAPES_KV_EMBEDDING_LENGTH, arch, &n_embd, err)) ||
        (rc = req_u32(g, SHAPES_KV_FEED_FORWARD_LENGTH, arch, &n_ff, err)) ||
        (rc = req_u32(g, SHAPES_KV_HEAD_COUNT, arch, &n_head, err)))
        return rc;
    n_head_kv = n_head;
    if ((rc = opt_u32(g, SHAPES_KV_HEAD_COUNT_KV, arch, &n_head_kv, err)) < 0 ||
        (rc = opt_u32(g, SHAPES_KV_KEY_LENGTH, arch, &head_dim, err)) < 0 ||
        (rc = opt_u32(g, SHAPES_KV_ROPE_DIM, arch, &n_rot, err)) < 0 ||
        (rc = opt_f32(g, SHAPES_KV_ROPE_FREQ_BASE, arch, &base, err)) < 0)
        return rc;
    if ((rc = opt_f32(g, SHAPES_KV_RMS_EPS, arch, &eps, err)) != 0)
        return rc < 0 ? rc : err_set(err, ERR_NOTFOUND, "%s: missing key '%s.attention."
                                     "layer_norm_rms_epsilon'", gguf_path(g), arch);
    const uint32_t lim = 1u << 20;
    if (n_layer == 0 || n_layer > 4096 || n_ctx == 0 || n_embd == 0 || n_embd > lim ||
        n_ff == 0 || n_ff > lim || n_head == 0 || n_head > 4096 || n_head_kv == 0 ||
        n_head % n_head_kv != 0)
        return err_set(err, ERR_RANGE, "%s: implausible hyper-parameters (%u layers, ctx %u, "
                       "embd %u, ff %u, %u heads, %u kv heads)", gguf_path(g), n_layer, n_ctx,
                       n_embd, n_ff, n_head, n_head_kv);
    if (head_dim == 0) {
        if (n_embd % n_head != 0)
            return err_set(err, ERR_RANGE, "%s: embedding_length %u is not a multiple of "
                           "head_count %u", gguf_path(g), n_embd, n_head);
        head_dim = n_embd / n_head;
    }
    if (n_rot == 0)
        n_rot = head_dim;
    if (head_dim > 1024 || n_rot > head_dim || n_rot % 2 != 0)
        return err_set(err, ERR_RANGE, "%s: rope.dimension_count %u does not fit head size %u",
                       gguf_path(g), n_rot, head_dim);
    if (!(eps > 0.0f) || !(base > 0.0f))
        return err_set(err, ERR_RANGE, "%s: rms epsilon %g / rope base %g must be positive",
                       gguf_path(g), (double)eps, (double)base);
    hp->n_layer = (int)n_layer;
    hp->n_ctx_train = n_ctx > (1u << 30) ? 1 << 30 : (int)n_ctx;
    hp->n_embd = (int)n_embd;
    hp->n_ff = (int)n_ff;
    hp->n_head = (int)n_head;
    hp->n_head_kv = (int)n_head_kv;
    hp->head_dim = (int)head_dim;
    hp->n_rot = (int)n_rot;
    hp->rms_eps = eps;
    hp->rope_freq_base = base;
    return read_rope_scaling(g, arch, hp, err);
}

/* ---------------------------------------------------------------- deepseek2 keys */

/* Keys llama.cpp reads that shapes.h does not spell (mkmodel never writes them). */
#define DS2_KV_NEXTN "%s.nextn_predict_layers"
#define DS2_KV_ROPE_ATTN_FACTOR "%s.rope.scaling.attn_factor"

static int opt_bool(const struct gguf *g, const char *fmt, const char *arch, bool *out,
                    struct err *err)
{
    char key[128];
    bool def = *out;
    arch_key(key, sizeof(key), fmt, arch);
    int rc = gguf_get_bool(g, key, out, err);
    if (rc == ERR_NOTFOUND) {
        err_clear(err);
        *out = def;
        return 1;
    }
    return rc;
}

/* Files converted before llama.cpp split kv_b_proj: no key_length_mla, an attn_kv_b
 * tensor, and MLA described as plain multi-head attention (key_length = qk_nope + rope,
 * value_length = v_head, head_count_kv = head_count). Sets the head split as a split file
 * would (the cache holds the latent either way: one kv head). */
static int read_mla_unsplit(const struct gguf *g, const char *arch, struct model_hparams *hp,
                            uint32_t *k_mla, uint32_t *v_mla, struct err *err)
{
    int rc;
    if ((rc = req_u32(g, SHAPES_KV_KEY_LENGTH, arch, k_mla, err)) ||
        (rc = req_u32(g, SHAPES_KV_VALUE_LENGTH, arch, v_mla, err)))
        return rc;
    if (hp->n_head_kv != hp->n_head)
        return err_set(err, ERR_RANGE, "%s: %s.attention.head_count_kv %d differs from "
                       "head_count %d in a file with an unsplit attn_kv_b", gguf_path(g), arch,
                       hp->n_head_kv, hp->n_head);
    if (*k_mla <= (uint32_t)hp->n_rot || *v_mla == 0)
        return err_set(err, ERR_RANGE, "%s: %s.attention.key_length %u must exceed "
                       "rope.dimension_count %d and value_length %u be positive (unsplit "
                       "attn_kv_b: qk_nope + qk_rope, v_head)", gguf_path(g), arch, *k_mla,
                       hp->n_rot, *v_mla);
    hp->n_head_kv = 1;
    return 0;
}

/* MLA ranks and head split, from key_length_mla / value_length_mla (split attn_k_b /
 * attn_v_b), or from an older converter's keys when the file has attn_kv_b instead. */
static int read_mla(const struct gguf *g, const char *arch, struct model_hparams *hp,
                    bool *unsplit, struct err *err)
{
    uint32_t q_lora = 0, kv_lora = 0, k_mla = 0, v_mla = 0;
    char kvb[64];
    int rc;
    *unsplit = false;
    if ((rc = opt_u32(g, SHAPES_KV_Q_LORA_RANK, arch, &q_lora, err)) < 0 ||
        (rc = req_u32(g, SHAPES_KV_KV_LORA_RANK, arch, &kv_lora, err)) ||
        (rc = opt_u32(g, SHAPES_KV_KEY_LENGTH_MLA, arch, &k_mla, err)) < 0 ||
        (rc = opt_u32(g, SHAPES_KV_VALUE_LENGTH_MLA, arch, &v_mla, err)) < 0)
        return rc;
    snprintf(kvb, sizeof(kvb), SHAPES_TN_ATTN_KV_B, 0);
    if (k_mla == 0 && v_mla == 0 && gguf_find_tensor(g, kvb)) {
        if ((rc = read_mla_unsplit(g, arch, hp, &k_mla, &v_mla, err)))
            return rc;
        *unsplit = true;
    } else if (k_mla == 0 || v_mla == 0) {
        return err_set(err, ERR_FORMAT, "%s: deepseek2 file has neither %s.attention."
                       "key_length_mla and value_length_mla nor an unsplit tensor %s",
                       gguf_path(g), arch, kvb);
    }
    const uint32_t lim = 1u << 16;
    if (kv_lora == 0 || kv_lora > lim || q_lora > lim || v_mla > lim ||
        k_mla <= (uint32_t)hp->n_rot || k_mla > 1024 || hp->n_head_kv != 1)
        return err_set(err, ERR_RANGE, "%s: implausible MLA shape (q_lora %u, kv_lora %u, "
                       "key_length_mla %u, rope dims %d, value_length_mla %u, %d kv heads)",
                       gguf_path(g), q_lora, kv_lora, k_mla, hp->n_rot, v_mla, hp->n_head_kv);
    hp->q_lora_rank = (int)q_lora;
    hp->kv_lora_rank = (int)kv_lora;
    hp->head_dim = (int)k_mla;
    hp->qk_nope = (int)k_mla - hp->n_rot;
    hp->v_head_dim = (int)v_mla;
    return 0;
}

static int read_moe(const struct gguf *g, const char *arch, struct model_hparams *hp,
                    struct err *err)
{
    uint32_t lead = 0, n_exp = 0, used = 0, shared = 0, ff_exp = 0, groups = 1, gused = 1;
    uint32_t gating = 0;
    int rc;
    if ((rc = opt_u32(g, SHAPES_KV_LEADING_DENSE, arch, &lead, err)) < 0 ||
        (rc = req_u32(g, SHAPES_KV_EXPERT_COUNT, arch, &n_exp, err)) ||
        (rc = req_u32(g, SHAPES_KV_EXPERT_USED, arch, &used, err)) ||
        (rc = opt_u32(g, SHAPES_KV_EXPERT_SHARED, arch, &shared, err)) < 0 ||
        (rc = req_u32(g, SHAPES_KV_EXPERT_FF, arch, &ff_exp, err)) ||
        (rc = opt_u32(g, SHAPES_KV_EXPERT_GROUPS, arch, &groups, err)) < 0 ||
        (rc = opt_u32(g, SHAPES_KV_EXPERT_GROUPS_USED, arch, &gused, err)) < 0 ||
        (rc = opt_u32(g, SHAPES_KV_EXPERT_GATING, arch, &gating, err)) < 0 ||
        (rc = opt_f32(g, SHAPES_KV_EXPERT_SCALE, arch, &hp->expert_weights_scale, err)) < 0 ||
        (rc = opt_bool(g, SHAPES_KV_EXPERT_NORM, arch, &hp->expert_weights_norm, err)) < 0)
        return rc;
    if (gating == 0) /* absent in early V2 files: softmax, as llama.cpp assumes */
        gating = 1;
    if (groups == 0)
        groups = 1;
    if (n_exp == 0 || n_exp > 4096 || used == 0 || used > n_exp || ff_exp == 0 ||
        ff_exp > (1u << 20) || shared > 64 || groups > 64 || n_exp % groups != 0 || gused == 0 ||
        gused > groups || (groups > 1 && n_exp / groups < 2) || (gating != 1 && gating != 2) ||
        !isfinite(hp->expert_weights_scale))
        return err_set(err, ERR_RANGE, "%s: implausible MoE shape (%u experts, %u used, %u "
                       "shared, ff %u, %u groups, %u used, gating %u)", gguf_path(g), n_exp,
                       used, shared, ff_exp, groups, gused, gating);
    hp->n_dense_lead = (int)(lead < (uint32_t)hp->n_layer ? lead : (uint32_t)hp->n_layer);
    hp->n_expert = (int)n_exp;
    hp->n_expert_used = (int)used;
    hp->n_expert_shared = (int)shared;
    hp->n_ff_exp = (int)ff_exp;
    hp->n_group = (int)groups;
    hp->n_group_used = (int)gused;
    hp->expert_gating = (int)gating;
    return 0;
}

/* deepseek2 on top of the common keys: skipped next-token-prediction blocks, MLA, MoE,
 * and the YaRN terms llama.cpp folds into the attention scale. */
static int read_deepseek2(const struct gguf *g, const char *arch, struct model_hparams *hp,
                          bool *kv_b_unsplit, struct err *err)
{
    uint32_t nextn = 0;
    float log_mul = 0.0f;
    int rc;
    if ((rc = opt_u32(g, DS2_KV_NEXTN, arch, &nextn, err)) < 0)
        return rc;
    if (nextn >= (uint32_t)hp->n_layer)
        return err_set(err, ERR_RANGE, "%s: %s.nextn_predict_layers %u leaves no block of %d",
                       gguf_path(g), arch, nextn, hp->n_layer);
    hp->n_layer_nextn = (int)nextn;
    hp->n_layer -= (int)nextn;
    hp->rope_attn_factor = 1.0f;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    if ((rc = read_mla(g, arch, hp, kv_b_unsplit, err)) || (rc = read_moe(g, arch, hp, err)) ||
        (rc = opt_f32(g, SHAPES_KV_YARN_LOG_MUL, arch, &log_mul, err)) < 0 ||
        (rc = opt_f32(g, DS2_KV_ROPE_ATTN_FACTOR, arch, &hp->rope_attn_factor, err)) < 0 ||
        (rc = opt_f32(g, SHAPES_KV_YARN_BETA_FAST, arch, &hp->yarn_beta_fast, err)) < 0 ||
        (rc = opt_f32(g, SHAPES_KV_YARN_BETA_SLOW, arch, &hp->yarn_beta_slow, err)) < 0)
        return rc;
    /* The converter stores 0.1 * mscale_all_dim; llama.cpp divides it back out. */
    hp->rope_yarn_log_mul = log_mul / 0.1f;
    if (!isfinite(hp->rope_yarn_log_mul) || !(hp->rope_attn_factor > 0.0f))
        return err_set(err, ERR_RANGE, "%s: bad yarn_log_multiplier %g / attn_factor %g",
                       gguf_path(g), (double)log_mul, (double)hp->rope_attn_factor);
    return 0;
}

/* ---------------------------------------------------------------- tensors */

static const char *dims_str(char *buf, size_t cap, int n, const int64_t *ne)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)ne[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
    return buf;
}

/* Finds `name` and checks its shape (ne0 = in, ne1 = out; ne1 0 for a vector). */
static int find_checked(const struct gguf *g, const char *name, int64_t ne0, int64_t ne1,
                        bool optional, const struct gguf_tensor **out, struct err *err)
{
    *out = NULL;
    const struct gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) {
        if (optional)
            return 0;
        return err_set(err, ERR_NOTFOUND, "%s: tensor %s is missing", gguf_path(g), name);
    }
    int64_t want[GGUF_MAX_DIMS] = {ne0, ne1 ? ne1 : 1, 1, 1};
    int want_dims = ne1 ? 2 : 1;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) {
        if (t->ne[i] != want[i]) {
            char a[96], b[96];
            return err_set(err, ERR_FORMAT, "%s: tensor %s has shape %s, expected %s",
                           gguf_path(g), name, dims_str(a, sizeof(a), (int)t->n_dims, t->ne),
                           dims_str(b, sizeof(b), want_dims, want));
        }
    }
    *out = t;
    return 0;
}

static int bind_vector(const struct gguf *g, const char *name, int64_t n, bool optional,
                       const float **out, struct err *err)
{
    const struct gguf_tensor *t;
    *out = NULL;
    int rc = find_checked(g, name, n, 0, optional, &t, err);
    if (rc || !t)
        return rc;
    if (t->type != GGML_TYPE_F32)
        return err_set(err, ERR_UNSUPPORTED, "%s: tensor %s has type %s, only F32 is "
                       "supported for norms and biases", gguf_path(g), name,
                       gguf_type_name(t->type));
    *out = t->data;
    return 0;
}

static int bind_matrix_rows(const struct gguf *g, const char *name, const struct gguf_tensor *t,
                            int64_t cols, int64_t rows, struct kernels_tensor_view *v,
                            struct err *err);

static int bind_matrix(const struct gguf *g, const char *name, int64_t cols, int64_t rows,
                       bool optional, struct kernels_tensor_view *v, struct err *err)
{
    const struct gguf_tensor *t;
    memset(v, 0, sizeof(*v));
    int rc = find_checked(g, name, cols, rows, optional, &t, err);
    if (rc || !t)
        return rc;
    return bind_matrix_rows(g, name, t, cols, rows, v, err);
}

/* Type and size checks of a found tensor read as `rows` rows of `cols`. */
static int bind_matrix_rows(const struct gguf *g, const char *name, const struct gguf_tensor *t,
                            int64_t cols, int64_t rows, struct kernels_tensor_view *v,
                            struct err *err)
{
    size_t rb = kernels_type_known((int)t->type) && t->type != GGML_TYPE_Q8_K
                    ? kernels_row_bytes((enum kernels_type)t->type, cols) : 0;
    if (rb == 0)
        return err_set(err, ERR_UNSUPPORTED, "%s: tensor %s has type %s, which the matrix "
                       "kernels do not support (or rows of %lld do not fit its blocks)",
                       gguf_path(g), name, gguf_type_name(t->type), (long long)cols);
    if (t->nbytes < rb * (uint64_t)rows)
        return err_set(err, ERR_FORMAT, "%s: tensor %s holds %llu bytes, needs %llu",
                       gguf_path(g), name, (unsigned long long)t->nbytes,
                       (unsigned long long)(rb * (uint64_t)rows));
    v->type = (enum kernels_type)t->type;
    v->data = t->data;
    v->rows = rows;
    v->cols = cols;
    v->row_bytes = rb;
    return 0;
}

static int bind_layer(struct model *m, int il, struct err *err)
{
    const struct gguf *g = m->g;
    const struct model_hparams *hp = &m->hp;
    struct model_layer *L = &m->layers[il];
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim;
    int64_t KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    char n[10][64];
    snprintf(n[0], 64, SHAPES_TN_ATTN_NORM, il);
    snprintf(n[1], 64, SHAPES_TN_ATTN_Q, il);
    snprintf(n[2], 64, SHAPES_TN_ATTN_K, il);
    snprintf(n[3], 64, SHAPES_TN_ATTN_V, il);
    snprintf(n[4], 64, SHAPES_TN_ATTN_OUT, il);
    snprintf(n[5], 64, SHAPES_TN_FFN_NORM, il);
    snprintf(n[6], 64, SHAPES_TN_FFN_GATE, il);
    snprintf(n[7], 64, SHAPES_TN_FFN_UP, il);
    snprintf(n[8], 64, SHAPES_TN_FFN_DOWN, il);
    int rc;
    if ((rc = bind_vector(g, n[0], E, false, &L->attn_norm, err)) ||
        (rc = bind_matrix(g, n[1], E, Q, false, &L->wq, err)) ||
        (rc = bind_matrix(g, n[2], E, KV, false, &L->wk, err)) ||
        (rc = bind_matrix(g, n[3], E, KV, false, &L->wv, err)) ||
        (rc = bind_matrix(g, n[4], Q, E, false, &L->wo, err)) ||
        (rc = bind_vector(g, n[5], E, false, &L->ffn_norm, err)) ||
        (rc = bind_matrix(g, n[6], E, F, false, &L->gate, err)) ||
        (rc = bind_matrix(g, n[7], E, F, false, &L->up, err)) ||
        (rc = bind_matrix(g, n[8], F, E, false, &L->down, err)))
        return rc;
    if (!hp->has_qkv_bias)
        return 0;
    snprintf(n[0], 64, SHAPES_TN_ATTN_Q_BIAS, il);
    snprintf(n[1], 64, SHAPES_TN_ATTN_K_BIAS, il);
    snprintf(n[2], 64, SHAPES_TN_ATTN_V_BIAS, il);
    if ((rc = bind_vector(g, n[0], Q, false, &L->bq, err)) ||
        (rc = bind_vector(g, n[1], KV, false, &L->bk, err)) ||
        (rc = bind_vector(g, n[2], KV, false, &L->bv, err)))
        return rc;
    return 0;
}

/* A 3-D weight [cols, rows, n] (one matrix per head or expert) as one view of n * rows
 * stacked rows. */
static int bind_matrix3(const struct gguf *g, const char *name, int64_t cols, int64_t rows,
                        int64_t n, struct kernels_tensor_view *v, struct err *err)
{
    memset(v, 0, sizeof(*v));
    const struct gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t)
        return err_set(err, ERR_NOTFOUND, "%s: tensor %s is missing", gguf_path(g), name);
    int64_t want[GGUF_MAX_DIMS] = {cols, rows, n, 1};
    for (int i = 0; i < GGUF_MAX_DIMS; i++) {
        if (t->ne[i] != want[i]) {
            char a[96], b[96];
            return err_set(err, ERR_FORMAT, "%s: tensor %s has shape %s, expected %s",
                           gguf_path(g), name, dims_str(a, sizeof(a), (int)t->n_dims, t->ne),
                           dims_str(b, sizeof(b), 3, want));
        }
    }
    return bind_matrix_rows(g, name, t, cols, rows * n, v, err);
}

/* One head's nope K rows of attn_kv_b (from `head`), row n written as column n of that
 * head's k_b ([kv_lora][nope]): elements moved when k_b keeps the file's float type,
 * else through a dequantized row (scratch `row`, kv_lora floats). */
static void transpose_k_rows(const struct kernels_tensor_view *kv, const char *head, int64_t nope,
                             enum kernels_type kt, char *kb_head, float *row)
{
    const size_t es = kernels_row_bytes(kt, 1), Lr = (size_t)kv->cols;
    for (int64_t n = 0; n < nope; n++) {
        const char *src = head + (size_t)n * kv->row_bytes;
        char *dst = kb_head + (size_t)n * es;
        if (kt == kv->type) {
            for (size_t c = 0; c < Lr; c++)
                memcpy(dst + c * (size_t)nope * es, src + c * es, es);
            continue;
        }
        kernels_dequantize_row(kv->type, src, row, (int64_t)Lr);
        for (size_t c = 0; c < Lr; c++)
            memcpy(dst + c * (size_t)nope * es, &row[c], sizeof(float));
    }
}

/* An older converter's attn_kv_b [kv_lora, n_head * (nope + v_head)] holds per head nope
 * rows of W_kb^T, then v_head rows of W_vb. Builds the split file's tensors from it, with
 * the same values: k_b [n_head][kv_lora][nope] transposed (in the file's type if F32, F16
 * or BF16, where moving elements is exact, else dequantized to F32: transposing would cut
 * across quant blocks) and v_b [n_head][v_head][kv_lora] (the V rows' bytes as they are).
 * The buffers go to m->kv_b_bufs at once, so model_free releases them on any error. */
static int split_kv_b(struct model *m, int il, struct err *err)
{
    const struct model_hparams *hp = &m->hp;
    struct model_layer *L = &m->layers[il];
    const int64_t H = hp->n_head, Lr = hp->kv_lora_rank, nope = hp->qk_nope;
    const int64_t VH = hp->v_head_dim;
    struct kernels_tensor_view kv;
    char name[64];
    snprintf(name, sizeof(name), SHAPES_TN_ATTN_KV_B, il);
    int rc = bind_matrix(m->g, name, Lr, H * (nope + VH), false, &kv, err);
    if (rc)
        return rc;
    enum kernels_type kt = kv.type == KERNELS_F16 || kv.type == KERNELS_BF16 ? kv.type
                                                                               : KERNELS_F32;
    size_t es = kernels_row_bytes(kt, 1), vb_head = (size_t)VH * kv.row_bytes;
    char *kb = malloc((size_t)(H * Lr * nope) * es), *vb = malloc((size_t)H * vb_head);
    float *row = kt == kv.type ? NULL : malloc((size_t)Lr * sizeof(float));
    m->kv_b_bufs[2 * il] = kb;
    m->kv_b_bufs[2 * il + 1] = vb;
    if (!kb || !vb || (kt != kv.type && !row)) {
        free(row);
        return err_set(err, ERR_NOMEM, "%s: out of memory splitting tensor %s",
                       gguf_path(m->g), name);
    }
    for (int64_t h = 0; h < H; h++) {
        const char *head = (const char *)kv.data + (size_t)(h * (nope + VH)) * kv.row_bytes;
        transpose_k_rows(&kv, head, nope, kt, kb + (size_t)(h * Lr * nope) * es, row);
        memcpy(vb + (size_t)h * vb_head, head + (size_t)nope * kv.row_bytes, vb_head);
    }
    free(row);
    L->wk_b = (struct kernels_tensor_view){kt, kb, H * Lr, nope, (size_t)nope * es};
    L->wv_b = (struct kernels_tensor_view){kv.type, vb, H * VH, Lr, kv.row_bytes};
    return 0;
}

/* k_b / v_b: the split tensors as they are in the file, or built from attn_kv_b. */
static int bind_k_v_b(struct model *m, int il, struct err *err)
{
    const struct model_hparams *hp = &m->hp;
    struct model_layer *L = &m->layers[il];
    char kb[64], vb[64];
    int rc;
    if (m->kv_b_unsplit)
        return split_kv_b(m, il, err);
    snprintf(kb, sizeof(kb), SHAPES_TN_ATTN_K_B, il);
    snprintf(vb, sizeof(vb), SHAPES_TN_ATTN_V_B, il);
    if ((rc = bind_matrix3(m->g, kb, hp->qk_nope, hp->kv_lora_rank, hp->n_head, &L->wk_b, err)) ||
        (rc = bind_matrix3(m->g, vb, hp->kv_lora_rank, hp->v_head_dim, hp->n_head, &L->wv_b,
                           err)))
        return rc;
    return 0;
}

/* Multi-head latent attention: q (plain or q-LoRA), the latent projection, k_b / v_b. */
static int bind_mla(struct model *m, int il, struct err *err)
{
    const struct gguf *g = m->g;
    const struct model_hparams *hp = &m->hp;
    struct model_layer *L = &m->layers[il];
    int64_t E = hp->n_embd, H = hp->n_head, Q = H * hp->head_dim, Lr = hp->kv_lora_rank;
    char n[8][64];
    int rc;
    snprintf(n[0], 64, SHAPES_TN_ATTN_KV_A_MQA, il);
    snprintf(n[1], 64, SHAPES_TN_ATTN_KV_A_NORM, il);
    snprintf(n[4], 64, SHAPES_TN_ATTN_OUT, il);
    if ((rc = bind_matrix(g, n[0], E, Lr + hp->n_rot, false, &L->wkv_a, err)) ||
        (rc = bind_vector(g, n[1], Lr, false, &L->kv_a_norm, err)) ||
        (rc = bind_k_v_b(m, il, err)) ||
        (rc = bind_matrix(g, n[4], H * hp->v_head_dim, E, false, &L->wo, err)))
        return rc;
    if (hp->q_lora_rank == 0) {
        snprintf(n[5], 64, SHAPES_TN_ATTN_Q, il);
        return bind_matrix(g, n[5], E, Q, false, &L->wq, err);
    }
    snprintf(n[5], 64, SHAPES_TN_ATTN_Q_A, il);
    snprintf(n[6], 64, SHAPES_TN_ATTN_Q_A_NORM, il);
    snprintf(n[7], 64, SHAPES_TN_ATTN_Q_B, il);
    if ((rc = bind_matrix(g, n[5], E, hp->q_lora_rank, false, &L->wq_a, err)) ||
        (rc = bind_vector(g, n[6], hp->q_lora_rank, false, &L->q_a_norm, err)) ||
        (rc = bind_matrix(g, n[7], hp->q_lora_rank, Q, false, &L->wq_b, err)))
        return rc;
    return 0;
}

/* Router, optional selection bias, routed experts and shared experts. */
static int bind_moe(const struct gguf *g, const struct model_hparams *hp, int il,
                    struct model_layer *L, struct err *err)
{
    int64_t E = hp->n_embd, X = hp->n_expert, F = hp->n_ff_exp;
    int64_t S = (int64_t)hp->n_ff_exp * hp->n_expert_shared;
    char n[8][64];
    int rc;
    snprintf(n[0], 64, SHAPES_TN_FFN_GATE_INP, il);
    snprintf(n[1], 64, SHAPES_TN_FFN_EXP_PROBS_B, il);
    snprintf(n[2], 64, SHAPES_TN_FFN_GATE_EXPS, il);
    snprintf(n[3], 64, SHAPES_TN_FFN_UP_EXPS, il);
    snprintf(n[4], 64, SHAPES_TN_FFN_DOWN_EXPS, il);
    if ((rc = bind_matrix(g, n[0], E, X, false, &L->gate_inp, err)) ||
        (rc = bind_vector(g, n[1], X, true, &L->exp_probs_b, err)) ||
        (rc = bind_matrix3(g, n[2], E, F, X, &L->gate_exps, err)) ||
        (rc = bind_matrix3(g, n[3], E, F, X, &L->up_exps, err)) ||
        (rc = bind_matrix3(g, n[4], F, E, X, &L->down_exps, err)))
        return rc;
    if (S == 0)
        return 0;
    snprintf(n[5], 64, SHAPES_TN_FFN_GATE_SHEXP, il);
    snprintf(n[6], 64, SHAPES_TN_FFN_UP_SHEXP, il);
    snprintf(n[7], 64, SHAPES_TN_FFN_DOWN_SHEXP, il);
    if ((rc = bind_matrix(g, n[5], E, S, false, &L->gate_shexp, err)) ||
        (rc = bind_matrix(g, n[6], E, S, false, &L->up_shexp, err)) ||
        (rc = bind_matrix(g, n[7], S, E, false, &L->down_shexp, err)))
        return rc;
    return 0;
}

static int bind_layer_deepseek2(struct model *m, int il, struct err *err)
{
    const struct gguf *g = m->g;
    const struct model_hparams *hp = &m->hp;
    struct model_layer *L = &m->layers[il];
    int64_t E = hp->n_embd, F = hp->n_ff;
    char n[5][64];
    int rc;
    snprintf(n[0], 64, SHAPES_TN_ATTN_NORM, il);
    snprintf(n[1], 64, SHAPES_TN_FFN_NORM, il);
    if ((rc = bind_vector(g, n[0], E, false, &L->attn_norm, err)) ||
        (rc = bind_vector(g, n[1], E, false, &L->ffn_norm, err)) ||
        (rc = bind_mla(m, il, err)))
        return rc;
    if (il >= hp->n_dense_lead)
        return bind_moe(g, hp, il, L, err);
    snprintf(n[2], 64, SHAPES_TN_FFN_GATE, il);
    snprintf(n[3], 64, SHAPES_TN_FFN_UP, il);
    snprintf(n[4], 64, SHAPES_TN_FFN_DOWN, il);
    if ((rc = bind_matrix(g, n[2], E, F, false, &L->gate, err)) ||
        (rc = bind_matrix(g, n[3], E, F, false, &L->up, err)) ||
        (rc = bind_matrix(g, n[4], F, E, false, &L->down, err)))
        return rc;
    return 0;
}

static int bind_tensors(struct model *m, struct err *err)
{
    const struct gguf *g = m->g;
    struct model_hparams *hp = &m->hp;
    const struct gguf_tensor *te = gguf_find_tensor(g, SHAPES_TN_TOKEN_EMBD);
    if (!te)
        return err_set(err, ERR_NOTFOUND, "%s: tensor %s is missing", gguf_path(g),
                       SHAPES_TN_TOKEN_EMBD);
    if (te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > (1 << 30))
        return err_set(err, ERR_FORMAT, "%s: tensor %s is not a [n_embd, n_vocab] matrix",
                       gguf_path(g), SHAPES_TN_TOKEN_EMBD);
    hp->n_vocab = (int)te->ne[1];
    int rc;
    if ((rc = bind_matrix(g, SHAPES_TN_TOKEN_EMBD, hp->n_embd, hp->n_vocab, false,
                          &m->tok_embd, err)) ||
        (rc = bind_vector(g, SHAPES_TN_OUTPUT_NORM, hp->n_embd, false, &m->output_norm, err)) ||
        (rc = bind_matrix(g, SHAPES_TN_OUTPUT, hp->n_embd, hp->n_vocab, true, &m->output, err)) ||
        (rc = bind_vector(g, SHAPES_TN_ROPE_FREQS, hp->n_rot / 2, true, &m->rope_freqs, err)))
        return rc;
    hp->tied_output = m->output.data == NULL;
    if (hp->tied_output)
        m->output = m->tok_embd;
    hp->has_rope_freqs = m->rope_freqs != NULL;
    if (m->kv_b_unsplit && !(m->kv_b_bufs = calloc(2 * (size_t)hp->n_layer, sizeof(void *))))
        return err_set(err, ERR_NOMEM, "%s: out of memory", gguf_path(g));
    for (int il = 0; il < hp->n_layer; il++)
        if ((rc = hp->arch == MODEL_ARCH_DEEPSEEK2 ? bind_layer_deepseek2(m, il, err)
                                                   : bind_layer(m, il, err)))
            return rc;
    return 0;
}

/* ---------------------------------------------------------------- load */

static const struct {
    const char *name;
    enum model_arch arch;
    bool neox, bias;
} arch_table[] = {
    {"llama", MODEL_ARCH_LLAMA, false, false},
    {"qwen2", MODEL_ARCH_QWEN2, true, true},
    {"deepseek2", MODEL_ARCH_DEEPSEEK2, false, false},
};

static int read_arch(const struct gguf *g, struct model_hparams *hp, struct err *err)
{
    const char *s;
    size_t len;
    int rc = gguf_get_str(g, "general.architecture", &s, &len, err);
    if (rc == ERR_NOTFOUND)
        return err_set(err, ERR_FORMAT, "%s: missing key 'general.architecture'", gguf_path(g));
    if (rc)
        return rc;
    for (size_t i = 0; i < sizeof(arch_table) / sizeof(arch_table[0]); i++) {
        if (strlen(arch_table[i].name) == len && memcmp(arch_table[i].name, s, len) == 0) {
            hp->arch = arch_table[i].arch;
            hp->arch_name = arch_table[i].name;
            hp->rope_neox = arch_table[i].neox;
            hp->has_qkv_bias = arch_table[i].bias;
            return 0;
        }
    }
    return err_set(err, ERR_UNSUPPORTED, "%s: architecture '%.*s' is not supported "
                   "(llama, qwen2, deepseek2)", gguf_path(g), (int)(len > 64 ? 64 : len), s);
}

int model_load(const struct gguf *g, struct model **out, struct err *err)
{
    *out = NULL;
    struct model *m = calloc(1, sizeof(*m));
    if (!m)
        return err_set(err, ERR_NOMEM, "%s: out of memory", gguf_path(g));
    m->g = g;
    int rc = read_arch(g, &m->hp, err);
    if (!rc)
        rc = read_hparams(g, m->hp.arch_name, &m->hp, err);
    if (!rc && m->hp.arch == MODEL_ARCH_DEEPSEEK2)
        rc = read_deepseek2(g, m->hp.arch_name, &m->hp, &m->kv_b_unsplit, err);
    if (!rc) {
        m->layers = calloc((size_t)m->hp.n_layer, sizeof(*m->layers));
        rc = m->layers ? bind_tensors(m, err)
                       : err_set(err, ERR_NOMEM, "%s: out of memory", gguf_path(g));
    }
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int model_open(const char *path, struct model **out, struct err *err)
{
    return model_open_as(path, GGUF_LOAD_MMAP, out, err);
}

int model_open_as(const char *path, enum gguf_load load, struct model **out,
                  struct err *err)
{
    struct gguf *g;
    *out = NULL;
    int rc = gguf_open_as(path, load, &g, err);
    if (rc)
        return rc;
    rc = model_load(g, out, err);
    if (rc) {
        gguf_close(g);
        return rc;
    }
    (*out)->owned = g;
    return 0;
}

void model_free(struct model *m)
{
    if (!m)
        return;
    gguf_close(m->owned);
    for (int i = 0; m->kv_b_bufs && i < 2 * m->hp.n_layer; i++)
        free(m->kv_b_bufs[i]);
    free(m->kv_b_bufs);
    free(m->layers);
    free(m);
}

const struct model_hparams *model_hparams(const struct model *m)
{
    return &m->hp;
}

const struct gguf *model_gguf(const struct model *m)
{
    return m->g;
}
