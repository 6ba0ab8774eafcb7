/*
 * ratelimit: per-key limits on requests/minute, tokens/minute and requests in
 * flight, shared by the HTTP and gRPC front ends (docs/API.md "Rate limits").
 *
 * Algorithm: two token buckets per key id. The request bucket holds up to rpm and
 * refills at rpm/60 per second; each admitted request takes 1. The token bucket
 * holds up to tpm and refills at tpm/60 per second; an admitted request reserves
 * its estimate (prompt tokens + max_tokens; capped at tpm so that one large request
 * can still pass once the bucket is full) and ratelimit_release settles the
 * difference with the tokens actually used (the level may go below zero, which
 * delays later requests instead of forgetting the overrun). A third counter
 * tracks requests in flight against `concurrent`. A limit of 0 is unlimited.
 *
 * Limits travel with each call (from struct auth_key_info), so a key-file reload
 * applies at the next request; state is keyed by key id and survives reloads.
 * Header values follow OpenAI: x-ratelimit-limit-requests (rpm),
 * x-ratelimit-remaining-requests (whole requests left now),
 * x-ratelimit-reset-requests (time until the bucket is full again, Go duration
 * such as "1s", "6m0s", "120ms"), and the same three for -tokens; Retry-After
 * (whole seconds, at least 1) on a denial.
 *
 * Threading: every function may be called from any thread (one mutex per
 * limiter). The clock is injectable: tests pass their own.
 */
#ifndef DS_SERVER_RATELIMIT_H
#define DS_SERVER_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct ratelimit;

/* Monotonic time in milliseconds. NULL in ratelimit_new = CLOCK_MONOTONIC. */
typedef int64_t (*ratelimit_clock_fn)(void *ctx);

struct ratelimit_limits {
    long rpm;        /* 0 = unlimited */
    long tpm;        /* 0 = unlimited */
    long concurrent; /* 0 = unlimited */
};

enum ratelimit_reason {
    RATELIMIT_ALLOWED = 0,
    RATELIMIT_REQUESTS = 1,   /* rpm exhausted */
    RATELIMIT_TOKENS = 2,     /* tpm exhausted */
    RATELIMIT_CONCURRENT = 3, /* too many requests in flight */
};

struct ratelimit_decision {
    bool allowed;
    enum ratelimit_reason reason;
    long retry_after_s;      /* >= 1 when denied, 0 when allowed */
    long limit_requests;     /* rpm; 0 = unlimited (no -requests headers) */
    long remaining_requests; /* after this request */
    int64_t reset_requests_ms;
    long limit_tokens;       /* tpm; 0 = unlimited (no -tokens headers) */
    long remaining_tokens;   /* after this request's reservation, >= 0 */
    int64_t reset_tokens_ms;
    long reserved_tokens;    /* pass back to ratelimit_release */
};

/* clock may be NULL (CLOCK_MONOTONIC); ctx is handed to it. NULL on no memory. */
struct ratelimit *ratelimit_new(ratelimit_clock_fn clock, void *clock_ctx);
void ratelimit_free(struct ratelimit *rl);

/* Admits or denies one request of key_id (an auth key id; "" for the anonymous
 * caller when no key file is used) with an estimated token cost. On allow: takes
 * one request, reserves min(tokens_estimate, tpm) tokens and counts the request as
 * in flight: the caller must call ratelimit_release exactly once later. On deny
 * nothing is taken. d is always filled. Returns 0, or ERR_NOMEM (d says allowed:
 * a limiter out of memory must not take the service down; nothing to release). */
int ratelimit_acquire(struct ratelimit *rl, const char *key_id,
                      const struct ratelimit_limits *lim, long tokens_estimate,
                      struct ratelimit_decision *d);

/* Ends an admitted request: drops it from the in-flight count and charges
 * used_tokens instead of the reserved amount (refunding or charging extra). */
void ratelimit_release(struct ratelimit *rl, const char *key_id, long reserved_tokens,
                       long used_tokens);

/* Forgets keys idle for more than idle_ms with nothing in flight (bounded memory
 * after many reloads). Returns how many were dropped. */
size_t ratelimit_prune(struct ratelimit *rl, int64_t idle_ms);

/* Response headers for a decision: the x-ratelimit-* of each limited dimension and,
 * when denied, Retry-After. Returns the number filled (<= RATELIMIT_MAX_HEADERS). */
#define RATELIMIT_MAX_HEADERS 7
struct ratelimit_header {
    const char *name; /* static string, e.g. "x-ratelimit-remaining-requests" */
    char value[32];
};
size_t ratelimit_headers(const struct ratelimit_decision *d,
                         struct ratelimit_header out[RATELIMIT_MAX_HEADERS]);

/* Formats ms as a Go duration ("0s", "120ms", "1s", "1.5s", "6m0s", "1h0m0s") into
 * buf; returns buf. Used by the reset headers. */
char *ratelimit_format_duration(int64_t ms, char *buf, size_t size);

/* "allowed" | "requests" | "tokens" | "concurrent" (also the metric label). */
const char *ratelimit_reason_name(enum ratelimit_reason r);

#endif
