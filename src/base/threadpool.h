/*
 * threadpool: a persistent pool of worker threads that run one function on every
 * thread at once (fork-join), as a forward pass needs it: "each of nth threads does
 * its ith share of this matrix product, then everyone waits".
 *
 * threadpool_run(pool, fn, ctx) calls fn(ctx, ith, nth) on nth = threadpool_size()
 * threads, the caller being thread 0, and returns when all calls have returned. Workers
 * spin briefly after a run (a forward pass issues runs back to back) and then sleep on a
 * futex, so an idle pool costs no CPU. No allocation happens per run.
 *
 * Threading: the pool belongs to one owner thread; only that thread may call
 * threadpool_run (runs do not nest and are not reentrant). fn must not call back into
 * the pool.
 */
#ifndef DS_BASE_THREADPOOL_H
#define DS_BASE_THREADPOOL_H

#include "base/err.h"

struct threadpool; /* opaque */

typedef void (*threadpool_fn)(void *ctx, int ith, int nth);

/* A pool of n_threads threads in all (the caller counts as one, so n_threads - 1 workers
 * are started); n_threads >= 1. ERR_INVALID / ERR_NOMEM / ERR_IO (pthread_create). */
int threadpool_new(int n_threads, struct threadpool **out, struct err *err);
/* Stops and joins the workers; accepts NULL. */
void threadpool_free(struct threadpool *pool);

int threadpool_size(const struct threadpool *pool);

/* Runs fn(ctx, ith, nth) for ith = 0..nth-1, ith 0 on the calling thread; returns when
 * every call has returned. */
void threadpool_run(struct threadpool *pool, threadpool_fn fn, void *ctx);

/* The share [*begin, *end) of n items that thread ith of nth takes, in chunks of
 * `align` items (the last share takes the remainder). */
void threadpool_split(long n, int ith, int nth, long align, long *begin, long *end);

#endif
