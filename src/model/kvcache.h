/*
 * kvcache: the attention key/value cache, one fixed region per sequence slot.
 *
 * For each of n_seq sequences and each layer the cache holds n_ctx rows of K and of V,
 * each row n_kv_head * head_dim elements (kv_dim), stored as F16 (default, as llama.cpp's
 * server) or F32 (exact, as the reference outputs were made):
 *     K, V: [n_seq][n_layer][n_ctx][kv_dim]
 * A sequence's length is the number of leading positions that hold valid rows; writing
 * position p makes the length p + 1 (positions after p are forgotten), so rolling a
 * sequence back is writing at an earlier position, and clearing is setting length 0.
 *
 * An architecture whose attention reads one cached row per token (deepseek2's MLA: the
 * compressed latent plus the shared rope key) makes the cache with kvcache_new_kv and
 * v_dim 0: the V region is then empty and kvcache_put ignores v.
 *
 * Ownership: the cache owns its memory (one allocation, made at creation; nothing is
 * allocated afterwards). Threading: owned by the engine thread; kvcache_put and the row
 * readers may be called from pool workers for disjoint (seq, layer, pos) rows.
 */
#ifndef DS_MODEL_KVCACHE_H
#define DS_MODEL_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "kernels/kernels.h"

struct kvcache; /* opaque */

/* type is KERNELS_F16 or KERNELS_F32. ERR_INVALID (zero size, other type), ERR_NOMEM. */
int kvcache_new(int n_seq, int n_layer, int n_ctx, int kv_dim, enum kernels_type type,
                struct kvcache **out, struct err *err);
/* K rows of k_dim and V rows of v_dim elements (v_dim may be 0: no V region). */
int kvcache_new_kv(int n_seq, int n_layer, int n_ctx, int k_dim, int v_dim,
                   enum kernels_type type, struct kvcache **out, struct err *err);
void kvcache_free(struct kvcache *kv); /* accepts NULL */

int kvcache_n_seq(const struct kvcache *kv);
int kvcache_n_ctx(const struct kvcache *kv);
int kvcache_kv_dim(const struct kvcache *kv); /* the K row's elements */
enum kernels_type kvcache_type(const struct kvcache *kv);
size_t kvcache_bytes(const struct kvcache *kv); /* memory held */

/* Valid leading positions of sequence seq. */
int kvcache_seq_len(const struct kvcache *kv, int seq);
/* Sets the length (0 clears the sequence); len must be <= the current length. */
int kvcache_seq_truncate(struct kvcache *kv, int seq, int len);
/* Marks position pos written: length becomes pos + 1 (pos <= current length). */
int kvcache_seq_advance(struct kvcache *kv, int seq, int pos);

/* Stores k and v [kv_dim] floats at (seq, layer, pos), converting to the cache type.
 * Does not change the length (call kvcache_seq_advance). No bounds errors: the caller
 * has validated seq < n_seq, layer < n_layer, pos < n_ctx. */
void kvcache_put(struct kvcache *kv, int seq, int layer, int pos, const float *k,
                 const float *v);
/* The first K / V row of (seq, layer); row p is at + p * kvcache_row_bytes(). */
const void *kvcache_k(const struct kvcache *kv, int seq, int layer);
const void *kvcache_v(const struct kvcache *kv, int seq, int layer);
size_t kvcache_row_bytes(const struct kvcache *kv);   /* of a K row */
size_t kvcache_v_row_bytes(const struct kvcache *kv); /* of a V row (0: no V) */

#endif
