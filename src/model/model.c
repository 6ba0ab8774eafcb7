/*
 * model: reads the hyper-parameters of a llama-family GGUF and binds every tensor to a
 * checked kernels_tensor_view. The key and tensor names come from shapes.h, the one
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
    arch_key(key, sizeof(key), fmt, arch);
    int rc = gguf_get_u32(g, key, out, err);
    if (rc == ERR_NOTFOUND) {
        err_clear(err);
        return 1;
    }
    return rc;
}

static int req_u32(const struct gguf *g, const char *fmt, const char *arch, uint32_t *out,
                   struct err *err)
{
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
    arch_key(key, sizeof(key), fmt, arch);
    int rc = gguf_get_f32(g, key, out, err);
    if (rc == ERR_NOTFOUND) {
        err_clear(err);
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
    float base = 10000.0f, eps;
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

static int bind_matrix(const struct gguf *g, const char *name, int64_t cols, int64_t rows,
                       bool optional, struct kernels_tensor_view *v, struct err *err)
{
    const struct gguf_tensor *t;
    memset(v, 0, sizeof(*v));
    int rc = find_checked(g, name, cols, rows, optional, &t, err);
    if (rc || !t)
        return rc;
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
    for (int il = 0; il < hp->n_layer; il++)
        if ((rc = bind_layer(m, il, err)))
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
    if (len == 9 && memcmp(s, "deepseek2", 9) == 0)
        return err_set(err, ERR_UNSUPPORTED, "%s: architecture deepseek2 (MLA + MoE) is not "
                       "supported yet; supported: llama, qwen2", gguf_path(g));
    return err_set(err, ERR_UNSUPPORTED, "%s: architecture '%.*s' is not supported "
                   "(llama, qwen2)", gguf_path(g), (int)(len > 64 ? 64 : len), s);
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
    struct gguf *g;
    *out = NULL;
    int rc = gguf_open(path, &g, err);
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
