/*
 * kvcache: one calloc'ed block, K regions then V regions, addressed by
 * ((seq * n_layer + layer) * n_ctx + pos) * row_bytes.
 */
#include "model/kvcache.h"

#include <stdlib.h>

struct kvcache {
    int n_seq, n_layer, n_ctx, kv_dim;
    enum kernels_type type;
    size_t row_bytes;
    size_t half;     /* bytes of all K rows (V follows) */
    int *len;        /* [n_seq] */
    unsigned char *mem; /* K [n_seq][n_layer][n_ctx][kv_dim], then V alike */
};

int kvcache_new(int n_seq, int n_layer, int n_ctx, int kv_dim, enum kernels_type type,
                struct kvcache **out, struct err *err)
{
    *out = NULL;
    if (n_seq < 1 || n_layer < 1 || n_ctx < 1 || kv_dim < 1)
        return err_set(err, ERR_INVALID, "kvcache: bad size (%d seq, %d layers, %d ctx, dim %d)",
                       n_seq, n_layer, n_ctx, kv_dim);
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
    kv->type = type;
    kv->row_bytes = kernels_row_bytes(type, kv_dim);
    kv->half = (size_t)n_seq * (size_t)n_layer * (size_t)n_ctx * kv->row_bytes;
    kv->len = calloc((size_t)n_seq, sizeof(int));
    kv->mem = calloc(2, kv->half);
    if (!kv->len || !kv->mem) {
        size_t bytes = 2 * kv->half;
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
size_t kvcache_bytes(const struct kvcache *kv) { return 2 * kv->half; }
size_t kvcache_row_bytes(const struct kvcache *kv) { return kv->row_bytes; }

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

static size_t row_off(const struct kvcache *kv, int seq, int layer, int pos)
{
    return (((size_t)seq * (size_t)kv->n_layer + (size_t)layer) * (size_t)kv->n_ctx +
            (size_t)pos) * kv->row_bytes;
}

void kvcache_put(struct kvcache *kv, int seq, int layer, int pos, const float *k,
                 const float *v)
{
    size_t off = row_off(kv, seq, layer, pos);
    (void)kernels_quantize_row(kv->type, k, kv->mem + off, kv->kv_dim);
    (void)kernels_quantize_row(kv->type, v, kv->mem + kv->half + off, kv->kv_dim);
}

const void *kvcache_k(const struct kvcache *kv, int seq, int layer)
{
    return kv->mem + row_off(kv, seq, layer, 0);
}

const void *kvcache_v(const struct kvcache *kv, int seq, int layer)
{
    return kv->mem + kv->half + row_off(kv, seq, layer, 0);
}
