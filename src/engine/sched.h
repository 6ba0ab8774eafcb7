/*
 * sched: the engine thread's continuous-batching scheduler.
 *
 * The scheduler owns the forward context (KV cache, thread pool, batch) and n_slots
 * sequence slots. Each step (sched_step) it
 *   1. admits waiting requests into free slots (FIFO) and drops cancelled ones;
 *   2. builds one forward_batch: the next token of every running sequence first, then
 *      prompt chunks of sequences still reading their prompt, as far as max_batch
 *      allows, so a long prompt never stalls the streams already running;
 *   3. samples a token for every sequence that produced logits and runs it through
 *      EOG, the </think> reasoning split, the streaming detokenizer, stop strings and
 *      max_tokens, emitting text into the request (request_emit) as it becomes final.
 * A cancelled request (client gone) leaves its slot at the next step.
 *
 * Prefix cache: a slot's KV rows outlive its request. Admission puts a request into
 * the free slot whose rows share the longest prefix with its prompt under the same
 * cache tag (request_params.cache_tag: the API key id), or else the least recently
 * used free slot (engine/prefix.h); the shared rows are kept and only the rest of the
 * prompt is computed. request_output.cached_tokens says how many rows were reused.
 *
 * Admission (sched_submit, any thread) is bounded: at most n_slots running plus
 * queue_max waiting; beyond that it refuses with SCHED_REJECT_QUEUE_FULL.
 *
 * Ownership: borrows the model and tokenizer (they must outlive the scheduler); owns
 * its forward context; holds one reference on each submitted request until it is
 * finished. Threading: sched_submit, sched_stats, sched_drain and sched_free from any
 * one control thread; sched_step only from the engine thread (the one sched_start
 * spawns, or the caller's own when sched_start is never called, as tests do).
 */
#ifndef DS_ENGINE_SCHED_H
#define DS_ENGINE_SCHED_H

#include <stdbool.h>

#include "base/err.h"
#include "engine/request.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/tokenizer.h"

struct sched_params {
    int n_slots;     /* sequences generated at once (--parallel), >= 1 */
    int n_ctx;       /* positions per sequence (--ctx-size); 0 = the model's */
    int queue_max;   /* requests waiting beyond n_slots (--queue), >= 0 */
    int n_threads;   /* forward threads, >= 1 */
    int max_batch;   /* tokens per forward_batch (--batch-size), >= n_slots */
    enum kernels_type kv_type;
    enum forward_matmul matmul; /* as `deepseek generate` (QUANT_ACT by default there) */
    bool prefix_off;   /* no prefix cache: every request starts from an empty slot */
    bool prefix_share; /* prefix rows are reused across cache tags (API keys) too */
};

enum sched_reject {
    SCHED_ACCEPTED = 0,
    SCHED_REJECT_QUEUE_FULL, /* n_slots + queue_max requests already in */
    SCHED_REJECT_TOO_LONG,   /* prompt + 1 token does not fit in n_ctx */
    SCHED_REJECT_STOPPED,    /* draining or stopped: no new requests */
};

struct sched_stats {
    int running, waiting;
    int n_slots, n_ctx, queue_max;
    unsigned long long steps, tokens_prompt, tokens_generated;
    unsigned long long tokens_cached; /* prompt tokens not computed: prefix-cache hits */
};

struct sched;

int sched_new(const struct model *m, const struct tokenizer *t, const struct sched_params *p,
              struct sched **out, struct err *err);
/* Stops the engine thread if running (cancelling what is left) and frees. NULL ok. */
void sched_free(struct sched *s);

/* Spawns the engine thread, which steps whenever there is work and sleeps otherwise. */
int sched_start(struct sched *s, struct err *err);

/* Queues r (takes a reference). Returns 0 with *why = SCHED_ACCEPTED, or ERR_RANGE with
 * *why saying which limit refused it and err naming it ("queue full: 4 running, 8
 * waiting"; "prompt is 5000 tokens, context size is 4096"). */
int sched_submit(struct sched *s, struct request *r, enum sched_reject *why, struct err *err);

/* Refuses new requests from now on (SCHED_REJECT_STOPPED); in-flight ones go on. */
void sched_drain(struct sched *s);
/* Running + waiting requests right now. */
void sched_stats(struct sched *s, struct sched_stats *out);

/* Forgets the prefix-cache rows tagged tag (an API key id being erased, `deepseek
 * erase`): every free slot holding them is emptied now (its token record zeroed, its
 * KV length 0; the K/V bytes stay in memory until the slot is reused), and a slot
 * running a request of that tag drops its rows when the request ends instead of
 * keeping them. The slots belong to the engine thread, so this asks it to do the work
 * at the start of its next step (waking it if idle) and waits; a forward pass in
 * flight finishes first. Without an engine thread (sched_start never called) the
 * work is done on the calling thread, which must then be the one calling sched_step.
 * *n (may be NULL) = slots whose rows were or will be dropped. ERR_RANGE when the
 * scheduler is stopping. Any thread but the engine thread. */
int sched_forget_tag(struct sched *s, const char *tag, int *n, struct err *err);

/* One scheduling step on the calling thread (see top). Returns the number of
 * requests still running or waiting, or a negative error if the forward pass failed
 * (those requests are finished with REQUEST_FINISH_ERROR; the scheduler stays usable). */
int sched_step(struct sched *s, struct err *err);

#endif
