/*
 * rcache: the response cache. An exact-match cache of finished generations for
 * deterministic requests (temperature 0, or a fixed seed), keyed by a SHA-256 that
 * the caller computes over everything that decides the output (http_api.c: model,
 * key id, rendered prompt tokens, every sampling and stopping parameter).
 *
 * Two tiers, either may be off:
 *   memory  an in-process LRU bounded by a byte budget (--cache-size; 0 = off);
 *   redis   a shared Redis (--cache-url redis://[user:password@]HOST:PORT/DB[?ttl=S]),
 *           so replicas share hits; entries expire after ttl seconds (default 3600;
 *           the memory tier uses the same ttl when a URL gives one).
 * Every entry is tagged with the API key id that made it ("" = anonymous): the Redis
 * key is "deepseek:rc:<tag>:<hex sha256>", so rcache_erase_tag can find a key's
 * entries (`deepseek erase`). With a keystore (ops/keystore.h), Redis values are
 * sealed with AES-256-GCM under the tag's data key ("-" for anonymous), the Redis key
 * as associated data; rcache_erase_tag also erases that data key, so copies that
 * survive anywhere (a replica, a Redis snapshot) can no longer be read. Without one
 * they are stored as given. The memory tier always holds plain values.
 *
 * Redis is best effort: a request never fails because of it. Commands run with a
 * timeout (timeout_ms); a failure counts as a miss, logs one warning, drops the
 * connection and skips Redis for a back-off (1 s, doubling to 30 s) before the next
 * reconnect; the first success after that logs that Redis is back.
 *
 * Ownership: rcache owns its entries (copies of what rcache_put is given) and its
 * Redis connection; rcache_get returns a malloc'ed copy the caller frees.
 * Threading: every function may be called from any thread; one mutex serialises
 * them (Redis commands included, bounded by timeout_ms).
 */
#ifndef DS_SERVER_RCACHE_H
#define DS_SERVER_RCACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

#define RCACHE_KEY_BYTES 32  /* a SHA-256 */
#define RCACHE_TAG_MAX 64    /* bytes of a tag, NUL included */

struct rcache_params {
    size_t mem_bytes;       /* memory-tier budget; 0: no memory tier */
    const char *url;        /* NULL or "": no Redis tier */
    int timeout_ms;         /* per Redis connect/command; 0: 200 */
    double (*now)(void);    /* monotonic seconds; NULL: CLOCK_MONOTONIC (tests inject) */
    struct keystore *ks;    /* borrowed (must outlive the cache); NULL: Redis values plain */
};

struct rcache_stats {
    unsigned long long hits, misses, stores, evictions, redis_errors;
    size_t mem_bytes, mem_entries;
    bool redis_up;
};

struct rcache;

/* ERR_INVALID for a URL that does not parse ("cache-url: expected redis://HOST:PORT/DB").
 * Does not connect yet: the first get or put does. */
int rcache_new(const struct rcache_params *p, struct rcache **out, struct err *err);
void rcache_free(struct rcache *c); /* NULL ok */

/* True when at least one tier is on. */
bool rcache_enabled(const struct rcache *c);

/* SHA-256 of data[0..n). */
void rcache_key(const void *data, size_t n, unsigned char key[RCACHE_KEY_BYTES]);

/* 1 and *val (malloc'ed, NUL-terminated, *len bytes) on a hit; 0 on a miss (or any
 * failure). tag must be the tag the entry was stored with. */
int rcache_get(struct rcache *c, const char *tag, const unsigned char key[RCACHE_KEY_BYTES],
               char **val, size_t *len);
/* Stores a copy in every tier (a value over the memory budget skips that tier). */
void rcache_put(struct rcache *c, const char *tag, const unsigned char key[RCACHE_KEY_BYTES],
                const char *val, size_t len);

/* Removes every entry of tag from both tiers and erases its data key from the
 * keystore; *n (may be NULL) = entries removed. ERR_IO when Redis is configured and
 * cannot be reached (memory entries and the data key are gone all the same). */
int rcache_erase_tag(struct rcache *c, const char *tag, size_t *n, struct err *err);
/* The same, counting per tier for erase reports: *mem and *redis (either may be NULL)
 * get the entries removed from that tier, or -1 when the tier is off (or c is NULL). */
int rcache_erase_tag_tiers(struct rcache *c, const char *tag, long long *mem,
                           long long *redis, struct err *err);

void rcache_stats(struct rcache *c, struct rcache_stats *out);

#endif
