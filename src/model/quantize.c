/*
 * quantize: the per-tensor type policy (after llama.cpp's llama_tensor_get_type, for
 * the file types we offer) and the streaming conversion driver. See quantize.h.
 */
#include "model/quantize.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels/kernels.h"

/* ------------------------------------------------------------------------- */
/* File types                                                                */

static const struct {
    const char *name;
    enum quantize_ftype ftype;
    enum ggml_type base;
} ftypes[] = {
    {"q8_0", QUANTIZE_Q8_0, GGML_TYPE_Q8_0},       {"q4_0", QUANTIZE_Q4_0, GGML_TYPE_Q4_0},
    {"q4_k_m", QUANTIZE_Q4_K_M, GGML_TYPE_Q4_K},   {"q5_k_m", QUANTIZE_Q5_K_M, GGML_TYPE_Q5_K},
    {"q6_k", QUANTIZE_Q6_K, GGML_TYPE_Q6_K},       {"f16", QUANTIZE_F16, GGML_TYPE_F16},
    {"bf16", QUANTIZE_BF16, GGML_TYPE_BF16},       {"f32", QUANTIZE_ALL_F32, GGML_TYPE_F32},
};
#define N_FTYPES (sizeof ftypes / sizeof ftypes[0])

int quantize_ftype_from_name(const char *name)
{
    for (size_t i = 0; name && i < N_FTYPES; i++)
        if (!strcasecmp(name, ftypes[i].name))
            return (int)ftypes[i].ftype;
    return -1;
}

static int ftype_index(enum quantize_ftype f)
{
    for (size_t i = 0; i < N_FTYPES; i++)
        if (ftypes[i].ftype == f)
            return (int)i;
    return -1;
}

const char *quantize_ftype_name(enum quantize_ftype f)
{
    int i = ftype_index(f);
    return i < 0 ? "?" : ftypes[i].name;
}

const char *quantize_ftype_names(void)
{
    return "q8_0, q4_0, q4_k_m, q5_k_m, q6_k, f16, bf16, f32";
}

enum ggml_type quantize_ftype_base(enum quantize_ftype f)
{
    int i = ftype_index(f);
    return i < 0 ? GGML_TYPE_COUNT : ftypes[i].base;
}

/* ------------------------------------------------------------------------- */
/* The model description                                                     */

/* An integer hyper-parameter "<arch>.<suffix>" into *out; absent leaves *out. A
 * per-layer array (some models store head_count_kv so) gives its first element. */
static int model_key(const struct gguf *g, const char *arch, const char *suffix, int *out,
                     bool required, struct err *err)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t i = gguf_find_key(g, key);
    if (i < 0)
        return required ? err_set(err, ERR_FORMAT, "%s: no key '%s'", gguf_path(g), key) : 0;
    int64_t v;
    enum gguf_type et;
    uint64_t n;
    bool ok = gguf_kv_array(g, i, &et, &n) ? n > 0 && gguf_arr_i64(g, i, 0, &v)
                                            : gguf_kv_as_i64(g, i, &v);
    if (!ok || v < 0 || v > 1000000)
        return err_set(err, ERR_FORMAT, "%s: key '%s' is not a count", gguf_path(g), key);
    *out = (int)v;
    return 0;
}

int quantize_model_from_gguf(const struct gguf *g, struct quantize_model *m, struct err *err)
{
    memset(m, 0, sizeof *m);
    const char *s;
    size_t len;
    if (gguf_get_str(g, "general.architecture", &s, &len, NULL) != 0 || len == 0 ||
        len >= sizeof m->arch || memchr(s, '\0', len))
        return err_set(err, ERR_FORMAT, "%s: no usable general.architecture", gguf_path(g));
    memcpy(m->arch, s, len);
    int rc = model_key(g, m->arch, "block_count", &m->n_layer, true, err);
    if (!rc)
        rc = model_key(g, m->arch, "expert_count", &m->n_expert, false, err);
    if (!rc)
        rc = model_key(g, m->arch, "attention.head_count", &m->n_head, false, err);
    m->n_head_kv = m->n_head;
    if (!rc)
        rc = model_key(g, m->arch, "attention.head_count_kv", &m->n_head_kv, false, err);
    if (rc)
        return rc;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const char *name = gguf_tensor(g, i)->name;
        if (strstr(name, "attn_v.weight") || strstr(name, "attn_qkv.weight") ||
            strstr(name, "attn_kv_b.weight"))
            m->n_attn_v++;
        if (!strcmp(name, "output.weight"))
            m->has_output = true;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* The policy                                                                */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* llama.cpp quantizes 2-D and 3-D "*weight" tensors except norms and the router. */
static bool is_quantizable(const struct gguf_tensor *t)
{
    return ends_with(t->name, "weight") && t->n_dims >= 2 && !strstr(t->name, "_norm.weight") &&
           !strstr(t->name, "ffn_gate_inp.weight");
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and every third
 * one in between get more bits in the _M mixes. */
static bool use_more_bits(int i_layer, int n_layer)
{
    return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 ||
           (i_layer - n_layer / 8) % 3 == 2;
}

/* The block index in "blk.N.*", or -1. */
static int layer_of(const char *name)
{
    int i;
    return sscanf(name, "blk.%d.", &i) == 1 && i >= 0 ? i : -1;
}

static bool is_k_mix(enum quantize_ftype f)
{
    return f == QUANTIZE_Q4_K_M || f == QUANTIZE_Q5_K_M;
}

/* llama.cpp: Llama-2/3 70B (80 layers, grouped KV) gets a bigger attn_v. */
static bool is_llama_70b(const struct quantize_model *m)
{
    return !strcmp(m->arch, "llama") && m->n_layer == 80 && m->n_head_kv != m->n_head;
}

static enum ggml_type output_type(const struct gguf_tensor *t, enum ggml_type base)
{
    uint32_t qk = 0, bytes;
    gguf_type_size(base, &qk, &bytes);
    if (qk == 0 || t->ne[0] % qk != 0)
        return GGML_TYPE_Q8_0;
    return base == GGML_TYPE_Q8_0 ? base : GGML_TYPE_Q6_K;
}

static enum ggml_type attn_v_type(const struct quantize_model *m, enum quantize_ftype f,
                                  const char *name, enum ggml_type t)
{
    if (is_k_mix(f) && use_more_bits(layer_of(name), m->n_attn_v))
        t = GGML_TYPE_Q6_K;
    if (is_llama_70b(m) && t == GGML_TYPE_Q4_K)
        t = GGML_TYPE_Q5_K;
    return m->n_expert == 8 ? GGML_TYPE_Q8_0 : t;
}

/* The type of a quantized tensor before the row-length fallback (quantized f only). */
static enum ggml_type mix_type(const struct quantize_model *m, enum quantize_ftype f,
                               const struct gguf_tensor *t)
{
    enum ggml_type base = quantize_ftype_base(f);
    const char *name = t->name;
    if (!strcmp(name, "output.weight") || (!m->has_output && !strcmp(name, "token_embd.weight")))
        return output_type(t, base);
    if (!strcmp(name, "token_embd.weight"))
        return base;
    if (strstr(name, "attn_v.weight"))
        return attn_v_type(m, f, name, base);
    if (strstr(name, "attn_k.weight"))
        return m->n_expert == 8 ? GGML_TYPE_Q8_0 : base;
    if (strstr(name, "ffn_down")) { /* also ffn_down_exps, ffn_down_shexp */
        int il = layer_of(name);
        return is_k_mix(f) && il >= 0 && use_more_bits(il, m->n_layer) ? GGML_TYPE_Q6_K : base;
    }
    if (strstr(name, "attn_output.weight"))
        return m->n_expert == 8 && f == QUANTIZE_Q4_K_M ? GGML_TYPE_Q5_K : base;
    if (strstr(name, "attn_qkv.weight") && is_k_mix(f))
        return f == QUANTIZE_Q4_K_M ? GGML_TYPE_Q5_K : GGML_TYPE_Q6_K;
    return base;
}

/* Rows whose length the type's block does not divide: llama.cpp's fallback table,
 * with Q5_0 standing in for Q5_1 (not implemented) and F16 where llama.cpp gives up. */
static enum ggml_type row_fallback(enum ggml_type t, int64_t ne0, bool *fallback)
{
    uint32_t qk = 1, bytes;
    gguf_type_size(t, &qk, &bytes);
    if (ne0 % qk == 0)
        return t;
    *fallback = true;
    switch (t) {
    case GGML_TYPE_Q4_K: t = GGML_TYPE_Q5_0; break;
    case GGML_TYPE_Q5_K: t = GGML_TYPE_Q5_0; break;
    case GGML_TYPE_Q6_K: t = GGML_TYPE_Q8_0; break;
    default: t = GGML_TYPE_F16; break;
    }
    return ne0 % 32 == 0 ? t : GGML_TYPE_F16;
}

enum ggml_type quantize_tensor_type(const struct quantize_model *m, enum quantize_ftype f,
                                    const struct gguf_tensor *t, bool *fallback)
{
    bool fb = false;
    enum ggml_type type = t->type, base = quantize_ftype_base(f);
    if (base != GGML_TYPE_COUNT && is_quantizable(t)) {
        bool quantized = base != GGML_TYPE_F32 && base != GGML_TYPE_F16 && base != GGML_TYPE_BF16;
        type = quantized ? row_fallback(mix_type(m, f, t), t->ne[0], &fb) : base;
    }
    if (fallback)
        *fallback = fb;
    return type;
}

/* ------------------------------------------------------------------------- */
/* The job: input and plan                                                   */

struct quantize_job {
    struct gguf *in;
    enum quantize_ftype ftype;
    struct quantize_model model;
    int64_t n;
    struct quantize_entry *entries; /* [n] */
    int64_t max_row;                /* longest row converted, for the float scratch */
};

static int plan_entry(struct quantize_job *j, const struct gguf_tensor *t,
                      struct quantize_entry *e, struct err *err)
{
    e->in = t;
    e->type = quantize_tensor_type(&j->model, j->ftype, t, &e->fallback);
    e->convert = e->type != t->type;
    if (!e->convert) {
        e->nbytes = t->nbytes;
        return 0;
    }
    const char *path = gguf_path(j->in);
    if (!kernels_type_known((int)t->type) || t->type == GGML_TYPE_Q8_K ||
        kernels_row_bytes((enum kernels_type)t->type, t->ne[0]) == 0)
        return err_set(err, ERR_UNSUPPORTED,
                       "%s: tensor %s has type %s, which cannot be converted (supported: "
                       "F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K)",
                       path, t->name, gguf_type_name(t->type));
    size_t row = kernels_row_bytes((enum kernels_type)e->type, t->ne[0]);
    if (row == 0)
        return err_set(err, ERR_INTERNAL, "%s: tensor %s: no %s rows of %lld", path, t->name,
                       gguf_type_name(e->type), (long long)t->ne[0]);
    e->nbytes = (uint64_t)row * (t->n_elems / (uint64_t)t->ne[0]);
    if (t->ne[0] > j->max_row)
        j->max_row = t->ne[0];
    return 0;
}

/* A split model's shards each hold part of the tensors; converting one alone would
 * write a broken file. */
static int check_not_split(const struct gguf *g, struct err *err)
{
    int64_t i = gguf_find_key(g, "split.count");
    uint64_t n = 0;
    if (i >= 0 && gguf_kv_as_u64(g, i, &n) && n > 1)
        return err_set(err, ERR_UNSUPPORTED,
                       "%s: a split model (%llu files); merge it first "
                       "(llama-gguf-split --merge)", gguf_path(g), (unsigned long long)n);
    return 0;
}

int quantize_job_new(const char *in_path, enum quantize_ftype f, struct quantize_job **out,
                     struct err *err)
{
    *out = NULL;
    if (ftype_index(f) < 0)
        return err_set(err, ERR_INVALID, "file type %d is not one of %s", (int)f,
                       quantize_ftype_names());
    struct quantize_job *j = calloc(1, sizeof *j);
    if (!j)
        return err_set(err, ERR_NOMEM, "out of memory");
    j->ftype = f;
    int rc = gguf_open(in_path, &j->in, err);
    if (!rc)
        rc = check_not_split(j->in, err);
    if (!rc)
        rc = quantize_model_from_gguf(j->in, &j->model, err);
    if (rc)
        goto fail;
    j->n = gguf_n_tensors(j->in);
    j->entries = calloc(j->n ? (size_t)j->n : 1, sizeof *j->entries);
    if (!j->entries) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < j->n && !rc; i++)
        rc = plan_entry(j, gguf_tensor(j->in, i), &j->entries[i], err);
    if (rc)
        goto fail;
    *out = j;
    return 0;
fail:
    quantize_job_free(j);
    return rc;
}

void quantize_job_free(struct quantize_job *j)
{
    if (!j)
        return;
    free(j->entries);
    gguf_close(j->in);
    free(j);
}

const struct gguf *quantize_job_input(const struct quantize_job *j)
{
    return j->in;
}

int64_t quantize_job_n_tensors(const struct quantize_job *j)
{
    return j->n;
}

const struct quantize_entry *quantize_job_entry(const struct quantize_job *j, int64_t i)
{
    return i >= 0 && i < j->n ? &j->entries[i] : NULL;
}

uint64_t quantize_job_out_data_bytes(const struct quantize_job *j)
{
    uint64_t sum = 0;
    for (int64_t i = 0; i < j->n; i++)
        sum += j->entries[i].nbytes;
    return sum;
}

/* ------------------------------------------------------------------------- */
/* Writing                                                                   */

/* One thread's share of a tensor's rows. Threads are started per tensor: a
 * pthread_create costs microseconds, a tensor milliseconds or more. */
struct convert_task {
    const struct quantize_entry *e;
    void *dst;
    float *x;      /* [ne0] scratch, this thread's */
    int64_t r0, r1;
    int rc;
};

/* Dequantizes each row to float and quantizes it to the output type. */
static void *convert_rows(void *arg)
{
    struct convert_task *c = arg;
    const struct gguf_tensor *t = c->e->in;
    int64_t ne0 = t->ne[0];
    enum kernels_type ti = (enum kernels_type)t->type, to = (enum kernels_type)c->e->type;
    size_t in_row = kernels_row_bytes(ti, ne0), out_row = kernels_row_bytes(to, ne0);
    c->rc = 0;
    for (int64_t r = c->r0; r < c->r1 && !c->rc; r++) {
        kernels_dequantize_row(ti, (const char *)t->data + (size_t)r * in_row, c->x, ne0);
        c->rc = kernels_quantize_row(to, c->x, (char *)c->dst + (size_t)r * out_row, ne0);
    }
    return NULL;
}

struct write_ctx {
    struct quantize_job *j;
    int n_threads;
    struct convert_task *tasks; /* [n_threads] */
    pthread_t *threads;         /* [n_threads] */
    float *scratch;             /* [n_threads][max_row] */
    quantize_progress_fn progress;
    void *user;
};

/* Splits the rows of e over the threads (the caller's thread takes share 0). */
static int convert_tensor(struct write_ctx *w, const struct quantize_entry *e, void *dst,
                          struct err *err)
{
    int64_t rows = (int64_t)(e->in->n_elems / (uint64_t)e->in->ne[0]);
    int nth = rows < w->n_threads ? (int)(rows ? rows : 1) : w->n_threads, started = 1;
    int rc = 0;
    for (int i = 0; i < nth; i++) {
        struct convert_task *c = &w->tasks[i];
        *c = (struct convert_task){.e = e, .dst = dst, .r0 = rows * i / nth,
                                   .r1 = rows * (i + 1) / nth,
                                   .x = w->scratch + (size_t)i * (size_t)w->j->max_row};
    }
    for (; started < nth; started++) {
        int prc = pthread_create(&w->threads[started], NULL, convert_rows, &w->tasks[started]);
        if (prc) {
            rc = err_errno(err, ERR_IO, prc, "tensor %s: starting a thread", e->in->name);
            break;
        }
    }
    convert_rows(&w->tasks[0]);
    for (int i = 1; i < started; i++)
        pthread_join(w->threads[i], NULL);
    for (int i = 0; i < started && !rc; i++)
        if (w->tasks[i].rc)
            rc = err_set(err, w->tasks[i].rc, "tensor %s: %s quantizer failed (%s)",
                         e->in->name, gguf_type_name(e->type), err_name(w->tasks[i].rc));
    return rc;
}

static int fill_tensor(void *user, int64_t index, const char *name, void *buf, uint64_t nbytes,
                       struct err *err)
{
    struct write_ctx *w = user;
    const struct quantize_entry *e = quantize_job_entry(w->j, index);
    if (!e || nbytes != e->nbytes)
        return err_set(err, ERR_INTERNAL, "tensor %s: writer asks %llu bytes, plan has %llu",
                       name, (unsigned long long)nbytes,
                       (unsigned long long)(e ? e->nbytes : 0));
    if (w->progress)
        w->progress(w->user, index, w->j->n, e);
    if (!e->convert) {
        memcpy(buf, e->in->data, nbytes);
        return 0;
    }
    return convert_tensor(w, e, buf, err);
}

/* Every key but the ones we set (file type, quantization version) and split.*. */
static int build_writer(struct quantize_job *j, struct gguf_writer *w)
{
    for (int64_t i = 0; i < gguf_n_kv(j->in); i++) {
        const char *key = gguf_kv_key(j->in, i);
        if (!strcmp(key, "general.file_type") || !strcmp(key, "general.quantization_version") ||
            !strncmp(key, "split.", 6))
            continue;
        if (gguf_writer_copy_kv(w, j->in, i))
            return ERR_NOMEM;
    }
    if (gguf_writer_set_u32(w, "general.quantization_version", QUANTIZE_QNT_VERSION) ||
        gguf_writer_set_u32(w, "general.file_type", (uint32_t)j->ftype))
        return ERR_NOMEM;
    for (int64_t i = 0; i < j->n; i++) {
        const struct gguf_tensor *t = j->entries[i].in;
        if (gguf_writer_add_tensor(w, t->name, j->entries[i].type, t->n_dims, t->ne))
            return ERR_NOMEM;
    }
    return 0;
}

int quantize_job_write(struct quantize_job *j, const char *out_path, int n_threads,
                       quantize_progress_fn progress, void *user, struct err *err)
{
    if (n_threads < 1 || n_threads > QUANTIZE_MAX_THREADS)
        return err_set(err, ERR_INVALID, "threads: %d is not in 1..%d", n_threads,
                       QUANTIZE_MAX_THREADS);
    struct write_ctx w = {.j = j, .n_threads = n_threads, .progress = progress, .user = user};
    struct gguf_writer *gw = gguf_writer_new(gguf_alignment(j->in));
    size_t row = (size_t)(j->max_row ? j->max_row : 1);
    w.scratch = malloc((size_t)n_threads * row * sizeof(float));
    w.tasks = calloc((size_t)n_threads, sizeof *w.tasks);
    w.threads = calloc((size_t)n_threads, sizeof *w.threads);
    int rc = gw && w.scratch && w.tasks && w.threads ? build_writer(j, gw) : ERR_NOMEM;
    if (rc)
        err_set(err, rc, "%s: out of memory", out_path);
    else
        rc = gguf_writer_write(gw, out_path, fill_tensor, &w, err);
    free(w.threads);
    free(w.tasks);
    free(w.scratch);
    gguf_writer_free(gw);
    return rc;
}
