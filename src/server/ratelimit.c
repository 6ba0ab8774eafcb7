/*
 * ratelimit: see ratelimit.h. State is a flat array of per-key buckets searched
 * linearly: key files hold tens of keys, not thousands, and a search costs less
 * than the hash of the presented key that precedes it.
 */
#include "server/ratelimit.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MINUTE_MS 60000.0

/* One bucket: level refills at cap per minute up to cap; cap 0 = unlimited. */
struct bucket {
    long cap;
    double level;
    int64_t t; /* when level was last brought up to date */
};

struct key_state {
    char *id;
    struct bucket req, tok;
    long inflight;
    int64_t last_used;
};

struct ratelimit {
    pthread_mutex_t mu;
    ratelimit_clock_fn clock;
    void *clock_ctx;
    struct key_state *keys;
    size_t n, cap;
};

static int64_t monotonic_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct ratelimit *ratelimit_new(ratelimit_clock_fn clock, void *clock_ctx)
{
    struct ratelimit *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    if (pthread_mutex_init(&rl->mu, NULL) != 0) {
        free(rl);
        return NULL;
    }
    rl->clock = clock ? clock : monotonic_ms;
    rl->clock_ctx = clock_ctx;
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < rl->n; i++)
        free(rl->keys[i].id);
    free(rl->keys);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

static struct key_state *find_key(struct ratelimit *rl, const char *id)
{
    for (size_t i = 0; i < rl->n; i++)
        if (!strcmp(rl->keys[i].id, id))
            return &rl->keys[i];
    return NULL;
}

static struct key_state *get_key(struct ratelimit *rl, const char *id, int64_t now)
{
    struct key_state *k = find_key(rl, id);
    if (k)
        return k;
    if (rl->n == rl->cap) {
        size_t cap = rl->cap ? rl->cap * 2 : 16;
        struct key_state *ks = realloc(rl->keys, cap * sizeof(*ks));
        if (!ks)
            return NULL;
        rl->keys = ks;
        rl->cap = cap;
    }
    k = &rl->keys[rl->n];
    memset(k, 0, sizeof(*k));
    if (!(k->id = strdup(id)))
        return NULL;
    k->last_used = now;
    rl->n++;
    return k;
}

/* Brings b up to now under capacity cap (a new or changed cap starts full or is
 * clamped: a reload that lowers a limit takes effect at once). */
static void bucket_update(struct bucket *b, long cap, int64_t now)
{
    if (cap <= 0) {
        b->cap = 0;
        return;
    }
    if (b->cap == 0) {
        b->level = (double)cap;
    } else if (now > b->t) {
        b->level += (double)(now - b->t) * (double)cap / MINUTE_MS;
    }
    if (b->level > (double)cap)
        b->level = (double)cap;
    b->cap = cap;
    b->t = now;
}

/* Milliseconds until b holds `need` (0 if it already does). */
static int64_t bucket_wait_ms(const struct bucket *b, double need)
{
    if (b->cap <= 0 || b->level >= need)
        return 0;
    return (int64_t)ceil((need - b->level) * MINUTE_MS / (double)b->cap);
}

static long ms_to_retry_s(int64_t ms)
{
    long s = (long)((ms + 999) / 1000);
    return s < 1 ? 1 : s;
}

static void fill_state(const struct key_state *k, struct ratelimit_decision *d)
{
    d->limit_requests = k->req.cap;
    d->remaining_requests = k->req.cap ? (long)floor(k->req.level) : 0;
    if (d->remaining_requests < 0)
        d->remaining_requests = 0;
    d->reset_requests_ms = bucket_wait_ms(&k->req, (double)k->req.cap);
    d->limit_tokens = k->tok.cap;
    d->remaining_tokens = k->tok.cap ? (long)floor(k->tok.level) : 0;
    if (d->remaining_tokens < 0)
        d->remaining_tokens = 0;
    d->reset_tokens_ms = bucket_wait_ms(&k->tok, (double)k->tok.cap);
}

/* Decides for k at now; takes nothing. Sets reason and retry_after_s. */
static void judge(const struct key_state *k, const struct ratelimit_limits *lim, double need,
                  struct ratelimit_decision *d)
{
    int64_t wait = 0;
    d->reason = RATELIMIT_ALLOWED;
    if (lim->concurrent > 0 && k->inflight >= lim->concurrent) {
        d->reason = RATELIMIT_CONCURRENT;
        wait = 1000; /* unknown: when some request ends; ask again in a second */
    }
    int64_t w = bucket_wait_ms(&k->req, 1.0);
    if (w > 0) {
        if (d->reason == RATELIMIT_ALLOWED)
            d->reason = RATELIMIT_REQUESTS;
        wait = w > wait ? w : wait;
    }
    w = bucket_wait_ms(&k->tok, need);
    if (w > 0) {
        if (d->reason == RATELIMIT_ALLOWED)
            d->reason = RATELIMIT_TOKENS;
        wait = w > wait ? w : wait;
    }
    d->allowed = d->reason == RATELIMIT_ALLOWED;
    d->retry_after_s = d->allowed ? 0 : ms_to_retry_s(wait);
}

int ratelimit_acquire(struct ratelimit *rl, const char *key_id,
                      const struct ratelimit_limits *lim, long tokens_estimate,
                      struct ratelimit_decision *d)
{
    memset(d, 0, sizeof(*d));
    pthread_mutex_lock(&rl->mu);
    int64_t now = rl->clock(rl->clock_ctx);
    struct key_state *k = get_key(rl, key_id ? key_id : "", now);
    if (!k) {
        pthread_mutex_unlock(&rl->mu);
        d->allowed = true;
        return ERR_NOMEM;
    }
    bucket_update(&k->req, lim->rpm, now);
    bucket_update(&k->tok, lim->tpm, now);
    k->last_used = now;
    double need = tokens_estimate > 0 ? (double)tokens_estimate : 0.0;
    if (k->tok.cap > 0 && need > (double)k->tok.cap)
        need = (double)k->tok.cap;
    judge(k, lim, need, d);
    if (d->allowed) {
        if (k->req.cap > 0)
            k->req.level -= 1.0;
        if (k->tok.cap > 0) {
            k->tok.level -= need;
            d->reserved_tokens = (long)need;
        }
        k->inflight++;
    }
    fill_state(k, d);
    pthread_mutex_unlock(&rl->mu);
    return 0;
}

void ratelimit_release(struct ratelimit *rl, const char *key_id, long reserved_tokens,
                       long used_tokens)
{
    pthread_mutex_lock(&rl->mu);
    int64_t now = rl->clock(rl->clock_ctx);
    struct key_state *k = find_key(rl, key_id ? key_id : "");
    if (k) {
        if (k->inflight > 0)
            k->inflight--;
        if (k->tok.cap > 0) {
            bucket_update(&k->tok, k->tok.cap, now);
            double used = used_tokens > 0 ? (double)used_tokens : 0.0;
            k->tok.level += (double)reserved_tokens - used;
            if (k->tok.level > (double)k->tok.cap)
                k->tok.level = (double)k->tok.cap;
        }
        k->last_used = now;
    }
    pthread_mutex_unlock(&rl->mu);
}

size_t ratelimit_prune(struct ratelimit *rl, int64_t idle_ms)
{
    size_t dropped = 0;
    pthread_mutex_lock(&rl->mu);
    int64_t now = rl->clock(rl->clock_ctx);
    for (size_t i = 0; i < rl->n;) {
        struct key_state *k = &rl->keys[i];
        if (k->inflight == 0 && now - k->last_used > idle_ms) {
            free(k->id);
            rl->keys[i] = rl->keys[--rl->n];
            dropped++;
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&rl->mu);
    return dropped;
}

char *ratelimit_format_duration(int64_t ms, char *buf, size_t size)
{
    if (ms <= 0) {
        snprintf(buf, size, "0s");
        return buf;
    }
    if (ms < 1000) {
        snprintf(buf, size, "%" PRId64 "ms", ms);
        return buf;
    }
    int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    char sec[16];
    if (frac == 0) {
        snprintf(sec, sizeof(sec), "%" PRId64 "s", s);
    } else {
        /* Go prints the fraction without trailing zeros: 1.5s, 1.25s, 1.125s */
        int digits = frac % 100 == 0 ? 1 : frac % 10 == 0 ? 2 : 3;
        int64_t f = digits == 1 ? frac / 100 : digits == 2 ? frac / 10 : frac;
        snprintf(sec, sizeof(sec), "%" PRId64 ".%0*" PRId64 "s", s, digits, f);
    }
    if (h > 0)
        snprintf(buf, size, "%" PRId64 "h%" PRId64 "m%s", h, m, sec);
    else if (m > 0)
        snprintf(buf, size, "%" PRId64 "m%s", m, sec);
    else
        snprintf(buf, size, "%s", sec);
    return buf;
}

static void put(struct ratelimit_header *h, size_t *n, const char *name, long v)
{
    h[*n].name = name;
    snprintf(h[*n].value, sizeof(h[*n].value), "%ld", v);
    (*n)++;
}

static void put_reset(struct ratelimit_header *h, size_t *n, const char *name, int64_t ms)
{
    h[*n].name = name;
    ratelimit_format_duration(ms, h[*n].value, sizeof(h[*n].value));
    (*n)++;
}

size_t ratelimit_headers(const struct ratelimit_decision *d,
                         struct ratelimit_header out[RATELIMIT_MAX_HEADERS])
{
    size_t n = 0;
    if (d->limit_requests > 0) {
        put(out, &n, "x-ratelimit-limit-requests", d->limit_requests);
        put(out, &n, "x-ratelimit-remaining-requests", d->remaining_requests);
        put_reset(out, &n, "x-ratelimit-reset-requests", d->reset_requests_ms);
    }
    if (d->limit_tokens > 0) {
        put(out, &n, "x-ratelimit-limit-tokens", d->limit_tokens);
        put(out, &n, "x-ratelimit-remaining-tokens", d->remaining_tokens);
        put_reset(out, &n, "x-ratelimit-reset-tokens", d->reset_tokens_ms);
    }
    if (!d->allowed)
        put(out, &n, "retry-after", d->retry_after_s);
    return n;
}

const char *ratelimit_reason_name(enum ratelimit_reason r)
{
    switch (r) {
    case RATELIMIT_ALLOWED: return "allowed";
    case RATELIMIT_REQUESTS: return "requests";
    case RATELIMIT_TOKENS: return "tokens";
    case RATELIMIT_CONCURRENT: return "concurrent";
    }
    return "allowed";
}
