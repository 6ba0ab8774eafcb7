/*
 * threadpool: fork-join over a generation counter. The owner publishes (fn, ctx), sets
 * `pending` to the number of workers and bumps `gen`; each worker, having seen the new
 * generation, runs its share and decrements `pending`; the owner runs share 0 and then
 * waits for `pending` to reach zero. Both waits spin first (runs come back to back in a
 * forward pass) and then sleep on a futex; a sleeper count tells the waker whether the
 * futex_wake syscall is needed at all.
 */
#include "base/threadpool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define THREADPOOL_SPIN 5000 /* polls before sleeping (~0.1-2 ms) */
#define THREADPOOL_SPIN_PAUSE 2000 /* polls with `pause` only; then each poll yields, so
                                    * on an oversubscribed CPU the thread we wait for
                                    * gets to run */

struct worker {
    struct threadpool *pool;
    int ith;
    pthread_t thread;
};

struct threadpool {
    int nth;
    threadpool_fn fn; /* published before gen is bumped */
    void *ctx;
    _Atomic uint32_t gen;      /* bumped once per run (and once at shutdown) */
    _Atomic uint32_t pending;  /* workers still running the current fn */
    _Atomic int sleepers;      /* workers asleep on gen */
    _Atomic int owner_waiting; /* owner asleep on pending */
    _Atomic int stop;
    struct worker *workers;    /* [nth - 1] */
    int n_started;
};

static void futex_wait(_Atomic uint32_t *addr, uint32_t expect)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Waits until *addr != old; returns the new value. */
static uint32_t wait_change(_Atomic uint32_t *addr, uint32_t old, _Atomic int *sleep_flag)
{
    uint32_t v;
    for (int i = 0; i < THREADPOOL_SPIN; i++) {
        v = atomic_load_explicit(addr, memory_order_acquire);
        if (v != old)
            return v;
        if (i < THREADPOOL_SPIN_PAUSE)
            cpu_relax();
        else
            sched_yield();
    }
    for (;;) {
        atomic_fetch_add(sleep_flag, 1);
        futex_wait(addr, old);
        atomic_fetch_sub(sleep_flag, 1);
        v = atomic_load(addr);
        if (v != old)
            return v;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct threadpool *p = w->pool;
    uint32_t seen = 0; /* gen at creation; a run may bump it before we get here */
    for (;;) {
        seen = wait_change(&p->gen, seen, &p->sleepers);
        if (atomic_load(&p->stop))
            break;
        p->fn(p->ctx, w->ith, p->nth);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->owner_waiting))
            futex_wake(&p->pending);
    }
    return NULL;
}

int threadpool_new(int n_threads, struct threadpool **out, struct err *err)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return err_set(err, ERR_INVALID, "threadpool: %d threads (must be 1..1024)", n_threads);
    struct threadpool *p = calloc(1, sizeof(*p));
    if (!p)
        return err_set(err, ERR_NOMEM, "threadpool: out of memory");
    p->nth = n_threads;
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof(*p->workers));
        if (!p->workers) {
            threadpool_free(p);
            return err_set(err, ERR_NOMEM, "threadpool: out of memory");
        }
    }
    for (int i = 0; i < n_threads - 1; i++) {
        struct worker *w = &p->workers[i];
        w->pool = p;
        w->ith = i + 1;
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            threadpool_free(p);
            return err_errno(err, ERR_IO, rc, "threadpool: starting thread %d", i + 1);
        }
        p->n_started++;
    }
    *out = p;
    return 0;
}

void threadpool_free(struct threadpool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake(&p->gen);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->workers[i].thread, NULL);
    free(p->workers);
    free(p);
}

int threadpool_size(const struct threadpool *p)
{
    return p->nth;
}

void threadpool_run(struct threadpool *p, threadpool_fn fn, void *ctx)
{
    if (p->nth == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, (uint32_t)(p->nth - 1));
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0)
        futex_wake(&p->gen);
    fn(ctx, 0, p->nth);
    uint32_t left = atomic_load_explicit(&p->pending, memory_order_acquire);
    while (left != 0) {
        (void)wait_change(&p->pending, left, &p->owner_waiting);
        left = atomic_load_explicit(&p->pending, memory_order_acquire);
    }
}

void threadpool_split(long n, int ith, int nth, long align, long *begin, long *end)
{
    if (align < 1)
        align = 1;
    long chunks = (n + align - 1) / align;
    long per = chunks / nth, extra = chunks % nth;
    long c0 = ith * per + (ith < extra ? ith : extra);
    long c1 = c0 + per + (ith < extra ? 1 : 0);
    *begin = c0 * align < n ? c0 * align : n;
    *end = c1 * align < n ? c1 * align : n;
}
