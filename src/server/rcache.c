/*
 * rcache: the response cache (see rcache.h). Three parts: the memory tier (a chained
 * hash table threaded on an LRU list), the Redis tier (hiredis, blocking with
 * timeouts, back-off after failures), and the public functions that try both.
 */
#define LOG_MODULE "rcache"
#include "server/rcache.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "ops/keystore.h"

#define RCACHE_TTL_DEFAULT 3600
#define RCACHE_BACKOFF_MIN 1.0
#define RCACHE_BACKOFF_MAX 30.0
#define RCACHE_PREFIX "deepseek:rc:"

struct entry {
    unsigned char key[RCACHE_KEY_BYTES];
    char tag[RCACHE_TAG_MAX];
    double expires;              /* 0: never */
    char *val;
    size_t len;
    struct entry *hnext;         /* hash chain */
    struct entry *prev, *next;   /* LRU list: head = most recently used */
};

struct rcache {
    struct rcache_params p;
    pthread_mutex_t mu;
    /* memory tier */
    struct entry **buckets;
    size_t n_buckets, n_entries, bytes;
    struct entry *head, *tail;
    /* redis tier */
    bool redis;
    char host[256], user[128], pass[256];
    int port, db, ttl;
    redisContext *rc;
    double down_until, backoff;
    bool warned;
    struct rcache_stats st;
};

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void rcache_key(const void *data, size_t n, unsigned char key[RCACHE_KEY_BYTES])
{
    unsigned int len = 0;
    if (!EVP_Digest(data, n, key, &len, EVP_sha256(), NULL))
        memset(key, 0, RCACHE_KEY_BYTES); /* cannot happen with a built-in digest */
}

/* ------------------------------------------------------------- memory tier */

static size_t entry_cost(const struct entry *e) { return sizeof *e + e->len; }

static size_t bucket_of(const struct rcache *c, const unsigned char *key)
{
    size_t h;
    memcpy(&h, key, sizeof h); /* a SHA-256 is already uniform */
    return h & (c->n_buckets - 1);
}

static struct entry **mem_slot(struct rcache *c, const char *tag, const unsigned char *key)
{
    struct entry **pp = &c->buckets[bucket_of(c, key)];
    while (*pp && (memcmp((*pp)->key, key, RCACHE_KEY_BYTES) || strcmp((*pp)->tag, tag)))
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_unlink(struct rcache *c, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(struct rcache *c, struct entry *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void mem_remove(struct rcache *c, struct entry *e)
{
    struct entry **pp = mem_slot(c, e->tag, e->key);
    if (*pp == e)
        *pp = e->hnext;
    lru_unlink(c, e);
    c->bytes -= entry_cost(e);
    c->n_entries--;
    free(e->val);
    free(e);
}

/* Doubles the table when it is fuller than one entry per bucket. */
static void mem_grow(struct rcache *c)
{
    if (c->n_entries < c->n_buckets)
        return;
    size_t n = c->n_buckets * 2;
    struct entry **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < c->n_buckets; i++)
        for (struct entry *e = c->buckets[i], *next; e; e = next) {
            next = e->hnext;
            size_t h;
            memcpy(&h, e->key, sizeof h);
            e->hnext = b[h & (n - 1)];
            b[h & (n - 1)] = e;
        }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = n;
}

static int mem_get(struct rcache *c, const char *tag, const unsigned char *key, char **val,
                   size_t *len)
{
    struct entry *e = *mem_slot(c, tag, key);
    if (!e)
        return 0;
    if (e->expires > 0 && c->p.now() >= e->expires) {
        mem_remove(c, e);
        return 0;
    }
    if (!(*val = malloc(e->len + 1)))
        return 0;
    memcpy(*val, e->val, e->len);
    (*val)[e->len] = '\0';
    *len = e->len;
    lru_unlink(c, e);
    lru_push(c, e);
    return 1;
}

static void mem_put(struct rcache *c, const char *tag, const unsigned char *key,
                    const char *val, size_t len, double ttl)
{
    struct entry *old = *mem_slot(c, tag, key);
    if (old)
        mem_remove(c, old);
    struct entry *e = calloc(1, sizeof *e);
    if (!e || !(e->val = malloc(len ? len : 1))) {
        free(e);
        return;
    }
    memcpy(e->key, key, RCACHE_KEY_BYTES);
    snprintf(e->tag, sizeof e->tag, "%s", tag);
    memcpy(e->val, val, len);
    e->len = len;
    e->expires = ttl > 0 ? c->p.now() + ttl : 0;
    if (entry_cost(e) > c->p.mem_bytes) { /* would evict everything and still not fit */
        free(e->val);
        free(e);
        return;
    }
    while (c->tail && c->bytes + entry_cost(e) > c->p.mem_bytes) {
        mem_remove(c, c->tail);
        c->st.evictions++;
    }
    struct entry **pp = mem_slot(c, tag, key);
    e->hnext = *pp;
    *pp = e;
    lru_push(c, e);
    c->bytes += entry_cost(e);
    c->n_entries++;
    mem_grow(c);
}

/* -------------------------------------------------------------- redis tier */

/* redis://[user[:password]@]host[:port][/db][?ttl=seconds] */
static int parse_url(struct rcache *c, const char *url, struct err *err)
{
    static const char bad[] = "cache-url: expected redis://[user:password@]HOST:PORT/DB[?ttl=S]";
    if (strncmp(url, "redis://", 8))
        return err_set(err, ERR_INVALID, "%s", bad);
    const char *s = url + 8, *at = strrchr(s, '@');
    c->port = 6379;
    c->ttl = RCACHE_TTL_DEFAULT;
    if (at) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        size_t ul = colon ? (size_t)(colon - s) : (size_t)(at - s);
        if (ul >= sizeof c->user || (colon && (size_t)(at - colon - 1) >= sizeof c->pass))
            return err_set(err, ERR_INVALID, "%s", bad);
        snprintf(c->user, sizeof c->user, "%.*s", (int)ul, s);
        if (colon)
            snprintf(c->pass, sizeof c->pass, "%.*s", (int)(at - colon - 1), colon + 1);
        s = at + 1;
    }
    size_t hl = strcspn(s, ":/?");
    if (hl == 0 || hl >= sizeof c->host)
        return err_set(err, ERR_INVALID, "%s", bad);
    snprintf(c->host, sizeof c->host, "%.*s", (int)hl, s);
    s += hl;
    char *end;
    if (*s == ':') {
        long v = strtol(s + 1, &end, 10);
        if (end == s + 1 || v < 1 || v > 65535)
            return err_set(err, ERR_INVALID, "%s", bad);
        c->port = (int)v, s = end;
    }
    if (*s == '/' && s[1] && s[1] != '?') {
        long v = strtol(s + 1, &end, 10);
        if (end == s + 1 || v < 0 || v > 1000000)
            return err_set(err, ERR_INVALID, "%s", bad);
        c->db = (int)v, s = end;
    } else if (*s == '/') {
        s++;
    }
    if (!strncmp(s, "?ttl=", 5)) {
        long v = strtol(s + 5, &end, 10);
        if (end == s + 5 || v < 1 || v > 365L * 86400)
            return err_set(err, ERR_INVALID, "cache-url: ttl must be 1..31536000 seconds");
        c->ttl = (int)v, s = end;
    }
    if (*s)
        return err_set(err, ERR_INVALID, "%s", bad);
    return 0;
}

static void redis_fail(struct rcache *c, const char *what)
{
    c->st.redis_errors++;
    if (!c->warned)
        LOG(WARN, "redis %s:%d: %s; the response cache runs without it for now", c->host,
            c->port, what);
    c->warned = true;
    if (c->rc)
        redisFree(c->rc);
    c->rc = NULL;
    c->backoff = c->backoff > 0 ? c->backoff * 2 : RCACHE_BACKOFF_MIN;
    if (c->backoff > RCACHE_BACKOFF_MAX)
        c->backoff = RCACHE_BACKOFF_MAX;
    c->down_until = c->p.now() + c->backoff;
}

/* A command that must not fail (AUTH, SELECT): false after redis_fail. */
static bool redis_ok(struct rcache *c, redisReply *r, const char *what)
{
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (!ok)
        redis_fail(c, r ? r->str : c->rc && c->rc->errstr[0] ? c->rc->errstr : what);
    freeReplyObject(r);
    return ok;
}

/* The connection, (re)connecting unless in back-off; NULL when Redis is unusable. */
static redisContext *redis_conn(struct rcache *c)
{
    if (!c->redis)
        return NULL;
    if (c->rc)
        return c->rc;
    if (c->p.now() < c->down_until)
        return NULL;
    struct timeval tv = {c->p.timeout_ms / 1000, (c->p.timeout_ms % 1000) * 1000};
    c->rc = redisConnectWithTimeout(c->host, c->port, tv);
    if (!c->rc || c->rc->err) {
        redis_fail(c, c->rc ? c->rc->errstr : "cannot allocate a connection");
        return NULL;
    }
    redisSetTimeout(c->rc, tv);
    if (c->pass[0] && !redis_ok(c, c->user[0] ? redisCommand(c->rc, "AUTH %s %s", c->user,
                                                             c->pass)
                                              : redisCommand(c->rc, "AUTH %s", c->pass),
                                "AUTH"))
        return NULL;
    if (c->db && !redis_ok(c, redisCommand(c->rc, "SELECT %d", c->db), "SELECT"))
        return NULL;
    if (c->warned)
        LOG(INFO, "redis %s:%d is back; the response cache uses it again", c->host, c->port);
    c->warned = false;
    c->backoff = 0;
    c->st.redis_up = true;
    return c->rc;
}

static void redis_key(const char *tag, const unsigned char *key, char *out, size_t size)
{
    int n = snprintf(out, size, RCACHE_PREFIX "%s:", tag[0] ? tag : "-");
    for (int i = 0; i < RCACHE_KEY_BYTES && n > 0 && (size_t)n + 2 < size; i++, n += 2)
        snprintf(out + n, size - (size_t)n, "%02x", key[i]);
}

static int redis_get(struct rcache *c, const char *tag, const unsigned char *key, char **val,
                     size_t *len)
{
    redisContext *rc = redis_conn(c);
    if (!rc)
        return 0;
    char k[RCACHE_TAG_MAX + 96];
    redis_key(tag, key, k, sizeof k);
    redisReply *r = redisCommand(rc, "GET %s", k);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        redis_fail(c, r ? r->str : rc->errstr);
        freeReplyObject(r);
        return 0;
    }
    int hit = 0;
    struct err e = {0};
    if (r->type == REDIS_REPLY_STRING && c->p.ks) { /* an erased key's entry is a miss */
        hit = keystore_unseal(c->p.ks, tag[0] ? tag : "-", k, (const unsigned char *)r->str,
                              r->len, val, len, &e) == 0;
    } else if (r->type == REDIS_REPLY_STRING && (*val = malloc(r->len + 1))) {
        memcpy(*val, r->str, r->len);
        (*val)[r->len] = '\0';
        *len = r->len;
        hit = 1;
    }
    freeReplyObject(r);
    return hit;
}

static void redis_put(struct rcache *c, const char *tag, const unsigned char *key,
                      const char *val, size_t len)
{
    redisContext *rc = redis_conn(c);
    if (!rc)
        return;
    char k[RCACHE_TAG_MAX + 96];
    redis_key(tag, key, k, sizeof k);
    unsigned char *sealed = NULL;
    struct err e = {0};
    if (c->p.ks && keystore_seal(c->p.ks, tag[0] ? tag : "-", k, val, len, &sealed, &len, &e)) {
        LOG(WARN, "not stored in redis: %s", e.msg);
        return;
    }
    redisReply *r = redisCommand(rc, "SET %s %b EX %d", k, sealed ? (const char *)sealed : val,
                                 len, c->ttl);
    free(sealed);
    if (!r || r->type == REDIS_REPLY_ERROR)
        redis_fail(c, r ? r->str : rc->errstr);
    freeReplyObject(r);
}

/* SCAN + DEL of the tag's keys. */
static int redis_erase(struct rcache *c, const char *tag, size_t *n, struct err *err)
{
    redisContext *rc = redis_conn(c);
    if (!rc)
        return err_set(err, ERR_IO, "redis %s:%d cannot be reached", c->host, c->port);
    char pat[RCACHE_TAG_MAX + 32];
    snprintf(pat, sizeof pat, RCACHE_PREFIX "%s:*", tag[0] ? tag : "-");
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(rc, "SCAN %s MATCH %s COUNT 500", cursor, pat);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING) {
            redis_fail(c, r && r->type == REDIS_REPLY_ERROR ? r->str : "SCAN failed");
            freeReplyObject(r);
            return err_set(err, ERR_IO, "redis %s:%d: SCAN failed", c->host, c->port);
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *d = redisCommand(rc, "DEL %b", keys->element[i]->str,
                                         keys->element[i]->len);
            if (d && d->type == REDIS_REPLY_INTEGER)
                *n += (size_t)d->integer;
            freeReplyObject(d);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    return 0;
}

/* ---------------------------------------------------------------- public */

int rcache_new(const struct rcache_params *p, struct rcache **out, struct err *err)
{
    *out = NULL;
    struct rcache *c = calloc(1, sizeof *c);
    if (!c)
        return err_set(err, ERR_NOMEM, "rcache: out of memory");
    c->p = *p;
    c->p.url = NULL; /* not kept: it may hold a password */
    if (!c->p.now)
        c->p.now = mono_now;
    if (c->p.timeout_ms <= 0)
        c->p.timeout_ms = 200;
    pthread_mutex_init(&c->mu, NULL);
    c->n_buckets = 64;
    c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
    int rc = c->buckets ? 0 : err_set(err, ERR_NOMEM, "rcache: out of memory");
    if (!rc && p->url && p->url[0]) {
        c->redis = true;
        rc = parse_url(c, p->url, err);
    }
    if (rc) {
        rcache_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void rcache_free(struct rcache *c)
{
    if (!c)
        return;
    while (c->head)
        mem_remove(c, c->head);
    free(c->buckets);
    if (c->rc)
        redisFree(c->rc);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

bool rcache_enabled(const struct rcache *c)
{
    return c && (c->p.mem_bytes > 0 || c->redis);
}

int rcache_get(struct rcache *c, const char *tag, const unsigned char key[RCACHE_KEY_BYTES],
               char **val, size_t *len)
{
    *val = NULL;
    *len = 0;
    if (!rcache_enabled(c))
        return 0;
    pthread_mutex_lock(&c->mu);
    int hit = c->p.mem_bytes ? mem_get(c, tag, key, val, len) : 0;
    if (!hit && c->redis) {
        hit = redis_get(c, tag, key, val, len);
        if (hit && c->p.mem_bytes) /* keep it near; Redis' own ttl bounds the copy's */
            mem_put(c, tag, key, *val, *len, c->ttl);
    }
    if (hit)
        c->st.hits++;
    else
        c->st.misses++;
    pthread_mutex_unlock(&c->mu);
    return hit;
}

void rcache_put(struct rcache *c, const char *tag, const unsigned char key[RCACHE_KEY_BYTES],
                const char *val, size_t len)
{
    if (!rcache_enabled(c))
        return;
    pthread_mutex_lock(&c->mu);
    if (c->p.mem_bytes)
        mem_put(c, tag, key, val, len, c->redis ? c->ttl : 0);
    if (c->redis)
        redis_put(c, tag, key, val, len);
    c->st.stores++;
    pthread_mutex_unlock(&c->mu);
}

int rcache_erase_tag_tiers(struct rcache *c, const char *tag, long long *mem,
                           long long *redis, struct err *err)
{
    size_t in_mem = 0, in_redis = 0;
    int rc = 0;
    if (c) {
        pthread_mutex_lock(&c->mu);
        for (struct entry *e = c->head, *next; e; e = next) {
            next = e->next;
            if (!strcmp(e->tag, tag))
                mem_remove(c, e), in_mem++;
        }
        if (c->p.ks) /* first: whatever Redis keeps from here on is unreadable */
            (void)keystore_erase(c->p.ks, tag[0] ? tag : "-", NULL);
        if (c->redis)
            rc = redis_erase(c, tag, &in_redis, err);
        pthread_mutex_unlock(&c->mu);
    }
    if (mem)
        *mem = c && c->p.mem_bytes ? (long long)in_mem : -1;
    if (redis)
        *redis = c && c->redis ? (long long)in_redis : -1;
    return rc;
}

int rcache_erase_tag(struct rcache *c, const char *tag, size_t *n, struct err *err)
{
    long long mem = 0, redis = 0;
    int rc = rcache_erase_tag_tiers(c, tag, &mem, &redis, err);
    if (n)
        *n = (size_t)(mem > 0 ? mem : 0) + (size_t)(redis > 0 ? redis : 0);
    return rc;
}

void rcache_stats(struct rcache *c, struct rcache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    out->mem_bytes = c->bytes;
    out->mem_entries = c->n_entries;
    out->redis_up = c->rc != NULL;
    pthread_mutex_unlock(&c->mu);
}
