/*
 * forward: the batched forward pass of a loaded model, and the context it runs in.
 *
 * A forward context owns everything one model run needs besides the weights: the KV
 * cache (n_seq sequence slots of n_ctx positions), the thread pool, and scratch buffers
 * sized at creation for max_batch tokens, so forward_batch allocates nothing.
 *
 * One call takes a batch of entries (sequence, position, token, want_logits) and runs
 * them together: every matrix product multiplies all the batch's tokens at once, and
 * each entry attends over its own sequence's cache positions 0..pos (causal), including
 * entries earlier in the same batch of the same sequence. So a scheduler may put the
 * prompt chunk of one sequence and the next token of several others into one call.
 * A sequence's entries in one batch must have consecutive increasing positions; the
 * first may be at most the sequence's current length (writing earlier rolls it back).
 *
 * Matrix products use float activations by default (faithful to the model's exact
 * arithmetic), or, with FORWARD_MATMUL_QUANT_ACT, round activations to the weight type's
 * dot type first as llama.cpp's CPU backend does.
 *
 * The kernels run as kernels_init() set them up: the program calls it once, before
 * forward_new (main() chooses the ISA).
 *
 * Ownership: a context borrows the model (which must outlive it) and owns its cache,
 * pool and buffers. Threading: a context belongs to one thread (the engine thread);
 * the pool's workers run inside forward_batch only.
 */
#ifndef DS_MODEL_FORWARD_H
#define DS_MODEL_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "kernels/kernels.h"
#include "model/kvcache.h"
#include "model/model.h"

struct forward; /* opaque */

enum forward_matmul {
    FORWARD_MATMUL_FLOAT = 0, /* kernels_matmul: weights x float activations */
    FORWARD_MATMUL_QUANT_ACT, /* kernels_quantize_act + kernels_matmul_q (llama.cpp) */
};

struct forward_params {
    int n_threads;            /* threads in the pool (caller included); >= 1 */
    int max_batch;            /* most entries per forward_batch call */
    int n_seq;                /* sequence slots in the KV cache */
    int n_ctx;                /* positions per sequence; 0 = the model's context_length */
    enum kernels_type kv_type; /* KERNELS_F16 (default) or KERNELS_F32 */
    enum forward_matmul matmul;
};

/* 1 thread, batch 512, 1 sequence, n_ctx 0, F16 cache, float activations. */
void forward_params_default(struct forward_params *p);

struct forward_entry {
    int32_t seq;   /* 0..n_seq-1 */
    int32_t pos;   /* 0..n_ctx-1 */
    int32_t token; /* 0..n_vocab-1 */
    bool want_logits;
};

int forward_new(const struct model *m, const struct forward_params *p, struct forward **out,
                struct err *err);
void forward_free(struct forward *f); /* accepts NULL */

/* Runs n (1..max_batch) entries. On success *logits points at [n_want][n_vocab] floats,
 * one row per entry with want_logits, in entry order, valid until the next call.
 * A bad entry (ERR_RANGE / ERR_INVALID, message naming the entry) changes nothing.
 * (llama/qwen2: past its K and V, the last layer runs only the entries with want_logits,
 * so a prompt chunk asking for none costs one layer's attention and MLP less.) */
int forward_batch(struct forward *f, const struct forward_entry *e, int n,
                  const float **logits, struct err *err);

/* Forgets sequence seq (length 0), so its slot can take a new request. */
void forward_seq_clear(struct forward *f, int seq);
int forward_seq_len(const struct forward *f, int seq);

const struct model *forward_model(const struct forward *f);
const struct forward_params *forward_params(const struct forward *f);
struct kvcache *forward_kvcache(struct forward *f);

#endif
