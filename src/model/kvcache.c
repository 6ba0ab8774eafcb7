/*
 * kvcache: one calloc'ed block, K regions then V regions, addressed by
 * ((seq * n_layer + layer) * n_ctx + pos) * the K or V row's bytes.
 */
#include "model/kvcache.h"

#include <stdlib.h>

struct kvcache {
    int n_seq, n_layer, n_ctx, kv_dim, v_dim;
    enum kernels_type type;
    size_t row_bytes, v_row_bytes;
    size_t half;     /* bytes of all K rows (V follows) */
    size_t v_half;   /* bytes of all V rows */
    int *len;        /* [n_seq] */
    unsigned char *mem; /* K [n_seq][n_layer][n_ctx][kv_dim], then V alike */
};

int kvcache_new(int n_seq, int n_layer, int n_ctx, int kv_dim, enum kernels_type type,
                struct kvcache **out, struct err *err)
{
    return kvcache_new_kv(n_seq, n_layer, n_ctx, kv_dim, kv_dim, type, out, err);
}

int kvcache_new_kv(int n_seq, int n_layer, int n_ctx, int kv_dim, int v_dim,
                   enum kernels_type type, struct kvcache **out, struct err *err)
{
    *out = NULL;
    if (n_seq < 1 || n_layer < 1 || n_ctx < 1 || kv_dim < 1 || v_dim < 0)
        return err_set(err, ERR_INVALID, "kvcache: bad size (%d seq, %d layers, %d ctx, dim "
                       "%d/%d)", n_seq, n_layer, n_ctx, kv_dim, v_dim);
    if (type != KERNELS_F16 && type != KERNELS_F32)
        return err_set(err, ERR_INVALID, "kvcache: type %s not supported (f16 or f32)",
                       kernels_type_name(type));
    struct kvcache *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return err_set(err, ERR_NOMEM, "kvcache: out of memory");
    kv->n_seq = n_seq;
    kv->n_layer = n_layer;
    kv->n_ctx = n_ctx;
    kv->kv_dim = kv_dim;
    kv->v_dim = v_dim;
    kv->type = type;
    kv->row_bytes = kernels_row_bytes(type, kv_dim);
    kv->v_row_bytes = kernels_row_bytes(type, v_dim);
    size_t rows = (size_t)n_seq * (size_t)n_layer * (size_t)n_ctx;
    kv->half = rows * kv->row_bytes;
    kv->v_half = rows * kv->v_row_bytes;
    kv->len = calloc((size_t)n_seq, sizeof(int));
    kv->mem = calloc(1, kv->half + kv->v_half);
    if (!kv->len || !kv->mem) {
        size_t bytes = kv->half + kv->v_half;
        kvcache_free(kv);
        return err_set(err, ERR_NOMEM, "kvcache: cannot allocate %zu bytes (%d sequences x %d "
                       "positions)", bytes, n_seq, n_ctx);
    }
    *out = kv;
    return 0;
}

void kvcache_free(struct kvcache *kv)
{
    if (!kv)
        return;
    free(kv->len);
    free(kv->mem);
    free(kv);
}

int kvcache_n_seq(const struct kvcache *kv) { return kv->n_seq; }
int kvcache_n_ctx(const struct kvcache *kv) { return kv->n_ctx; }
int kvcache_kv_dim(const struct kvcache *kv) { return kv->kv_dim; }
enum kernels_type kvcache_type(const struct kvcache *kv) { return kv->type; }
size_t kvcache_bytes(const struct kvcache *kv) { return kv->half + kv->v_half; }
size_t kvcache_row_bytes(const struct kvcache *kv) { return kv->row_bytes; }
size_t kvcache_v_row_bytes(const struct kvcache *kv) { return kv->v_row_bytes; }

int kvcache_seq_len(const struct kvcache *kv, int seq)
{
    return seq >= 0 && seq < kv->n_seq ? kv->len[seq] : 0;
}

int kvcache_seq_truncate(struct kvcache *kv, int seq, int len)
{
    if (seq < 0 || seq >= kv->n_seq || len < 0 || len > kv->len[seq])
        return ERR_INVALID;
    kv->len[seq] = len;
    return 0;
}

int kvcache_seq_advance(struct kvcache *kv, int seq, int pos)
{
    if (seq < 0 || seq >= kv->n_seq || pos < 0 || pos >= kv->n_ctx || pos > kv->len[seq])
        return ERR_INVALID;
    kv->len[seq] = pos + 1;
    return 0;
}

/* Index of the row (seq, layer, pos); times the K or V row size gives its offset. */
static size_t row_idx(const struct kvcache *kv, int seq, int layer, int pos)
{
    return ((size_t)seq * (size_t)kv->n_layer + (size_t)layer) * (size_t)kv->n_ctx +
           (size_t)pos;
}

void kvcache_put(struct kvcache *kv, int seq, int layer, int pos, const float *k,
                 const float *v)
{
    size_t r = row_idx(kv, seq, layer, pos);
    (void)kernels_quantize_row(kv->type, k, kv->mem + r * kv->row_bytes, kv->kv_dim);
    if (kv->v_dim > 0)
        (void)kernels_quantize_row(kv->type, v, kv->mem + kv->half + r * kv->v_row_bytes,
                                   kv->v_dim);
}

const void *kvcache_k(const struct kvcache *kv, int seq, int layer)
{
    return kv->mem + row_idx(kv, seq, layer, 0) * kv->row_bytes;
}

const void *kvcache_v(const struct kvcache *kv, int seq, int layer)
{
    return kv->mem + kv->half + row_idx(kv, seq, layer, 0) * kv->v_row_bytes;
}
