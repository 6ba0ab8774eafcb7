/*
 * auth: see auth.h. A key set is an immutable array of (info, sha256) built by
 * parse_file; struct auth swaps whole sets under a pthread rwlock.
 */
#include "server/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define HASH_LEN 32

struct key_entry {
    struct auth_key_info info;
    unsigned char hash[HASH_LEN];
};

struct keyset {
    size_t n, cap;
    struct key_entry *keys;
};

struct auth {
    char *path;
    pthread_rwlock_t lock; /* guards cur (the pointer); the set itself is immutable */
    struct keyset *cur;
};

static void keyset_free(struct keyset *ks)
{
    if (!ks)
        return;
    free(ks->keys);
    free(ks);
}

bool auth_id_valid(const char *id)
{
    size_t n = strlen(id);
    /* "-" names the requests made without a key (caches, prompt logs, erase) */
    if (n == 0 || n >= AUTH_ID_MAX || !strcmp(id, "-"))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool parse_hash(const char *hex, unsigned char out[HASH_LEN])
{
    if (strlen(hex) != 2 * HASH_LEN)
        return false;
    for (size_t i = 0; i < HASH_LEN; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

static bool parse_limit(const char *s, long *out)
{
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 1000000000000L)
        return false;
    *out = v;
    return true;
}

/* Applies one "name=value" field to e. 0 or ERR_FORMAT naming FILE:LINE. */
static int parse_field(char *tok, struct key_entry *e, bool *have_hash, const char *path,
                       size_t lineno, struct err *err)
{
    char *eq = strchr(tok, '=');
    if (!eq) /* not echoed: it may be a key pasted into the file by mistake */
        return err_set(err, ERR_FORMAT, "%s:%zu: expected name=value fields (the file holds "
                       "sha256= hashes, never keys)", path, lineno);
    *eq = '\0';
    const char *name = tok, *val = eq + 1;
    if (!strcmp(name, "id")) {
        if (!auth_id_valid(val))
            return err_set(err, ERR_FORMAT,
                           "%s:%zu: id must be 1-%d characters of [A-Za-z0-9._-], not \"-\"", path,
                           lineno, AUTH_ID_MAX - 1);
        memcpy(e->info.id, val, strlen(val) + 1);
    } else if (!strcmp(name, "sha256")) {
        if (!parse_hash(val, e->hash))
            return err_set(err, ERR_FORMAT, "%s:%zu: sha256 must be 64 hex digits", path,
                           lineno);
        *have_hash = true;
    } else if (!strcmp(name, "rpm") || !strcmp(name, "tpm") || !strcmp(name, "concurrent")) {
        long *dst = !strcmp(name, "rpm") ? &e->info.rpm
                    : !strcmp(name, "tpm") ? &e->info.tpm : &e->info.concurrent;
        if (!parse_limit(val, dst))
            return err_set(err, ERR_FORMAT, "%s:%zu: %s must be a whole number >= 0", path,
                           lineno, name);
    } else if (!strcmp(name, "scope")) {
        if (!strcmp(val, "user"))
            e->info.scope = AUTH_SCOPE_USER;
        else if (!strcmp(val, "admin"))
            e->info.scope = AUTH_SCOPE_ADMIN;
        else
            return err_set(err, ERR_FORMAT, "%s:%zu: scope must be user or admin", path,
                           lineno);
    } else {
        return err_set(err, ERR_FORMAT, "%s:%zu: unknown field '%.40s'", path, lineno, name);
    }
    return 0;
}

/* Checks e against the keys already in ks (unique id and hash). */
static int check_unique(const struct keyset *ks, const struct key_entry *e, const char *path,
                        size_t lineno, struct err *err)
{
    for (size_t i = 0; i < ks->n; i++) {
        if (!strcmp(ks->keys[i].info.id, e->info.id))
            return err_set(err, ERR_FORMAT, "%s:%zu: duplicate id '%s'", path, lineno,
                           e->info.id);
        if (!memcmp(ks->keys[i].hash, e->hash, HASH_LEN))
            return err_set(err, ERR_FORMAT, "%s:%zu: same key hash as id '%s'", path, lineno,
                           ks->keys[i].info.id);
    }
    return 0;
}

static int keyset_push(struct keyset *ks, const struct key_entry *e)
{
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 8;
        struct key_entry *k = realloc(ks->keys, cap * sizeof(*k));
        if (!k)
            return ERR_NOMEM;
        ks->keys = k;
        ks->cap = cap;
    }
    ks->keys[ks->n++] = *e;
    return 0;
}

/* Parses one line (modified in place) into ks. Blank and comment lines add nothing. */
static int parse_line(char *line, struct keyset *ks, const char *path, size_t lineno,
                      struct err *err)
{
    const char *ws = " \t\r\n";
    char *p = line + strspn(line, ws);
    if (*p == '\0' || *p == '#')
        return 0;
    struct key_entry e;
    memset(&e, 0, sizeof(e));
    bool have_hash = false;
    char *save = NULL;
    for (char *tok = strtok_r(p, ws, &save); tok; tok = strtok_r(NULL, ws, &save)) {
        int rc = parse_field(tok, &e, &have_hash, path, lineno, err);
        if (rc)
            return rc;
    }
    if (!e.info.id[0])
        return err_set(err, ERR_FORMAT, "%s:%zu: missing id=", path, lineno);
    if (!have_hash)
        return err_set(err, ERR_FORMAT, "%s:%zu: missing sha256= (the file holds hashes, "
                       "never keys; use `deepseek keys add`)", path, lineno);
    int rc = check_unique(ks, &e, path, lineno, err);
    if (rc)
        return rc;
    if (keyset_push(ks, &e))
        return err_set(err, ERR_NOMEM, "%s:%zu: out of memory", path, lineno);
    return 0;
}

static int parse_file(const char *path, struct keyset **out, bool *mode_too_open,
                      struct err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, ERR_IO, errno, "%s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_errno(err, ERR_IO, e, "%s", path);
    }
    if (mode_too_open)
        *mode_too_open = (st.st_mode & (S_IRWXG | S_IRWXO)) != 0;
    FILE *f = fdopen(fd, "r");
    if (!f) {
        int e = errno;
        close(fd);
        return err_errno(err, ERR_IO, e, "%s", path);
    }
    struct keyset *ks = calloc(1, sizeof(*ks));
    int rc = ks ? 0 : err_set(err, ERR_NOMEM, "%s: out of memory", path);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0)
        rc = parse_line(line, ks, path, ++lineno, err);
    if (rc == 0 && ferror(f))
        rc = err_errno(err, ERR_IO, errno, "%s: read", path);
    if (line) /* the line may hold a key pasted by mistake: don't leave it in memory */
        OPENSSL_cleanse(line, cap);
    free(line);
    fclose(f);
    if (rc) {
        keyset_free(ks);
        return rc;
    }
    *out = ks;
    return 0;
}

int auth_load(const char *path, struct auth **out, bool *mode_too_open, struct err *err)
{
    *out = NULL;
    struct auth *a = calloc(1, sizeof(*a));
    if (!a || !(a->path = strdup(path))) {
        free(a);
        return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    }
    int rc = parse_file(path, &a->cur, mode_too_open, err);
    if (rc == 0 && pthread_rwlock_init(&a->lock, NULL) != 0)
        rc = err_set(err, ERR_INTERNAL, "%s: cannot create lock", path);
    if (rc) {
        keyset_free(a->cur);
        free(a->path);
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int auth_reload(struct auth *a, bool *mode_too_open, struct err *err)
{
    struct keyset *ks;
    int rc = parse_file(a->path, &ks, mode_too_open, err);
    if (rc)
        return rc;
    pthread_rwlock_wrlock(&a->lock);
    struct keyset *old = a->cur;
    a->cur = ks;
    pthread_rwlock_unlock(&a->lock);
    /* No reader can hold old now: every reader copies what it needs under the lock. */
    keyset_free(old);
    return 0;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    pthread_rwlock_destroy(&a->lock);
    keyset_free(a->cur);
    free(a->path);
    free(a);
}

size_t auth_count(struct auth *a)
{
    pthread_rwlock_rdlock(&a->lock);
    size_t n = a->cur->n;
    pthread_rwlock_unlock(&a->lock);
    return n;
}

int auth_key_at(struct auth *a, size_t i, struct auth_key_info *out)
{
    int rc = 0;
    pthread_rwlock_rdlock(&a->lock);
    if (i < a->cur->n)
        *out = a->cur->keys[i].info;
    else
        rc = ERR_RANGE;
    pthread_rwlock_unlock(&a->lock);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

static int sha256(const char *key, size_t len, unsigned char out[HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(key, len, out, &n, EVP_sha256(), NULL) != 1 || n != HASH_LEN)
        return ERR_INTERNAL;
    return 0;
}

int auth_hash_hex(const char *key, size_t len, char hex[65])
{
    unsigned char h[HASH_LEN];
    if (sha256(key, len, h))
        return ERR_INTERNAL;
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < HASH_LEN; i++) {
        hex[2 * i] = digits[h[i] >> 4];
        hex[2 * i + 1] = digits[h[i] & 15];
    }
    hex[64] = '\0';
    return 0;
}

enum auth_result auth_check_key(struct auth *a, const char *key, size_t len,
                                struct auth_key_info *info)
{
    if (info)
        memset(info, 0, sizeof(*info));
    if (!key || len == 0)
        return AUTH_MISSING;
    unsigned char h[HASH_LEN];
    if (sha256(key, len, h))
        return AUTH_INVALID;
    pthread_rwlock_rdlock(&a->lock);
    const struct keyset *ks = a->cur;
    /* Compare with every key, no early exit: the time depends only on the number
     * of keys, not on which one matched. */
    size_t found = SIZE_MAX;
    for (size_t i = 0; i < ks->n; i++) {
        size_t eq = (size_t)(CRYPTO_memcmp(h, ks->keys[i].hash, HASH_LEN) == 0);
        size_t mask = (size_t)0 - eq;
        found = (found & ~mask) | (i & mask);
    }
    if (found != SIZE_MAX && info)
        *info = ks->keys[found].info;
    pthread_rwlock_unlock(&a->lock);
    OPENSSL_cleanse(h, sizeof(h));
    return found != SIZE_MAX ? AUTH_OK : AUTH_INVALID;
}

enum auth_result auth_check(struct auth *a, const char *authorization,
                            struct auth_key_info *info)
{
    if (info)
        memset(info, 0, sizeof(*info));
    if (!authorization)
        return AUTH_MISSING;
    const char *p = authorization + strspn(authorization, " \t");
    if (!strncasecmp(p, "Bearer", 6) && (p[6] == '\0' || p[6] == ' ' || p[6] == '\t'))
        p += 6;
    p += strspn(p, " \t");
    size_t len = strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    return auth_check_key(a, p, len, info);
}

const char *auth_result_name(enum auth_result r)
{
    switch (r) {
    case AUTH_OK: return "ok";
    case AUTH_MISSING: return "missing";
    case AUTH_INVALID: return "invalid";
    }
    return "invalid";
}

int auth_generate_key(char *buf, size_t size)
{
    unsigned char raw[32];
    if (size < AUTH_NEW_KEY_SIZE || RAND_bytes(raw, sizeof(raw)) != 1)
        return ERR_INTERNAL;
    static const char digits[] = "0123456789abcdef";
    size_t n = strlen(AUTH_KEY_PREFIX);
    memcpy(buf, AUTH_KEY_PREFIX, n);
    for (size_t i = 0; i < sizeof(raw); i++) {
        buf[n++] = digits[raw[i] >> 4];
        buf[n++] = digits[raw[i] & 15];
    }
    buf[n] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}
