/* keystore: per-key-id data keys in a file of fixed records (see keystore.h). */
#include "ops/keystore.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define REC_BYTES (KEYSTORE_ID_MAX + KEYSTORE_KEY_BYTES)
#define NONCE_BYTES 12
#define TAG_BYTES 16

struct rec {
    char id[KEYSTORE_ID_MAX];             /* all zero: a free record */
    unsigned char key[KEYSTORE_KEY_BYTES];
};

struct keystore {
    pthread_mutex_t mu; /* threads of this process; flock() orders the processes */
    int fd;
    char path[512];
};

int keystore_open(const char *path, struct keystore **out, struct err *err)
{
    *out = NULL;
    struct keystore *ks = calloc(1, sizeof *ks);
    if (!ks)
        return err_set(err, ERR_NOMEM, "keystore: out of memory");
    pthread_mutex_init(&ks->mu, NULL);
    snprintf(ks->path, sizeof ks->path, "%s", path);
    ks->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    int rc = 0;
    if (ks->fd < 0 || fstat(ks->fd, &st))
        rc = err_errno(err, ERR_IO, errno, "%s: cannot open", path);
    else if (st.st_size % REC_BYTES)
        rc = err_set(err, ERR_FORMAT, "%s: %lld bytes is not a whole number of %d-byte records",
                     path, (long long)st.st_size, REC_BYTES);
    if (rc) {
        keystore_free(ks);
        return rc;
    }
    *out = ks;
    return 0;
}

void keystore_free(struct keystore *ks)
{
    if (!ks)
        return;
    if (ks->fd >= 0)
        close(ks->fd);
    pthread_mutex_destroy(&ks->mu);
    free(ks);
}

/* The records as the file holds them now (replicas sharing the file may have added
 * or erased keys): takes the mutex and a flock (exclusive when about to write), and
 * reads the whole file. *recs is malloc'ed (NULL when empty); release with unlock(). */
static int lock_load(struct keystore *ks, bool write, struct rec **recs, size_t *n,
                     struct err *err)
{
    *recs = NULL;
    *n = 0;
    pthread_mutex_lock(&ks->mu);
    struct stat st;
    int rc = 0;
    if (flock(ks->fd, write ? LOCK_EX : LOCK_SH) || fstat(ks->fd, &st))
        rc = err_errno(err, ERR_IO, errno, "%s: cannot lock", ks->path);
    else if (st.st_size % REC_BYTES)
        rc = err_set(err, ERR_FORMAT, "%s: not a whole number of records", ks->path);
    else if (st.st_size && !(*recs = malloc((size_t)st.st_size)))
        rc = err_set(err, ERR_NOMEM, "keystore: out of memory");
    else if (st.st_size && pread(ks->fd, *recs, (size_t)st.st_size, 0) != st.st_size)
        rc = err_errno(err, ERR_IO, errno, "%s: cannot read", ks->path);
    *n = rc ? 0 : (size_t)st.st_size / REC_BYTES;
    return rc;
}

static void unlock(struct keystore *ks, struct rec *recs, size_t n)
{
    if (recs)
        OPENSSL_cleanse(recs, n * sizeof *recs);
    free(recs);
    (void)flock(ks->fd, LOCK_UN);
    pthread_mutex_unlock(&ks->mu);
}

static struct rec *find(struct rec *recs, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strncmp(recs[i].id, id, KEYSTORE_ID_MAX))
            return &recs[i];
    return NULL;
}

/* Writes r as record i (i == n appends) and syncs it. */
static int put_rec(struct keystore *ks, size_t i, const struct rec *r, struct err *err)
{
    if (pwrite(ks->fd, r, REC_BYTES, (off_t)(i * REC_BYTES)) != REC_BYTES ||
        fdatasync(ks->fd))
        return err_errno(err, ERR_IO, errno, "%s: cannot write", ks->path);
    return 0;
}

/* A new random key for id in the first free record (or appended). */
static int create(struct keystore *ks, struct rec *recs, size_t n, const char *id,
                  unsigned char *key, struct err *err)
{
    size_t i = 0;
    while (i < n && recs[i].id[0])
        i++;
    struct rec r;
    memset(&r, 0, sizeof r);
    memcpy(r.id, id, strlen(id));
    if (RAND_bytes(r.key, sizeof r.key) != 1)
        return err_set(err, ERR_INTERNAL, "keystore: no random bytes");
    int rc = put_rec(ks, i, &r, err);
    if (!rc)
        memcpy(key, r.key, KEYSTORE_KEY_BYTES);
    OPENSSL_cleanse(&r, sizeof r);
    return rc;
}

static int get_key(struct keystore *ks, const char *id, unsigned char *key, bool make,
                   struct err *err)
{
    size_t len = strlen(id), n;
    if (len == 0 || len >= KEYSTORE_ID_MAX)
        return err_set(err, ERR_INVALID, "keystore: key id must be 1..%d bytes",
                       KEYSTORE_ID_MAX - 1);
    struct rec *recs;
    int rc = lock_load(ks, make, &recs, &n, err);
    struct rec *r = rc ? NULL : find(recs, n, id);
    if (r)
        memcpy(key, r->key, KEYSTORE_KEY_BYTES);
    else if (!rc && make)
        rc = create(ks, recs, n, id, key, err);
    else if (!rc)
        rc = err_set(err, ERR_NOTFOUND, "keystore: no data key for %s", id);
    unlock(ks, recs, n);
    return rc;
}

int keystore_get(struct keystore *ks, const char *id, unsigned char key[KEYSTORE_KEY_BYTES],
                 struct err *err)
{
    return get_key(ks, id, key, true, err);
}

int keystore_erase(struct keystore *ks, const char *id, struct err *err)
{
    struct rec *recs;
    size_t n;
    int rc = lock_load(ks, true, &recs, &n, err);
    struct rec *r = rc || !id[0] ? NULL : find(recs, n, id);
    if (r) {
        OPENSSL_cleanse(r, sizeof *r);
        rc = put_rec(ks, (size_t)(r - recs), r, err);
    } else if (!rc) {
        rc = err_set(err, ERR_NOTFOUND, "keystore: no data key for %s", id);
    }
    unlock(ks, recs, n);
    return rc;
}

/* One AES-256-GCM pass: enc 1 seals, 0 opens (tag checked). */
static int gcm(int enc, const unsigned char *key, const unsigned char *nonce, const char *aad,
               const unsigned char *in, size_t n, unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok = c && n <= INT32_MAX &&
                      EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1;
    if (ok && aad && aad[0])
        ok = EVP_CipherUpdate(c, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) == 1;
    if (ok && n)
        ok = EVP_CipherUpdate(c, out, &len, in, (int)n) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) == 1;
    if (ok)
        ok = EVP_CipherFinal_ex(c, out + len, &len) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

int keystore_seal(struct keystore *ks, const char *id, const char *aad, const void *in,
                  size_t n, unsigned char **out, size_t *out_len, struct err *err)
{
    *out = NULL;
    *out_len = 0;
    unsigned char key[KEYSTORE_KEY_BYTES];
    int rc = keystore_get(ks, id, key, err);
    if (rc)
        return rc;
    unsigned char *buf = malloc(n + KEYSTORE_OVERHEAD);
    if (!buf)
        rc = err_set(err, ERR_NOMEM, "keystore: out of memory");
    else if (RAND_bytes(buf, NONCE_BYTES) != 1 ||
             gcm(1, key, buf, aad, in, n, buf + NONCE_BYTES, buf + NONCE_BYTES + n))
        rc = err_set(err, ERR_INTERNAL, "keystore: AES-GCM failed");
    OPENSSL_cleanse(key, sizeof key);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = n + KEYSTORE_OVERHEAD;
    return 0;
}

int keystore_unseal(struct keystore *ks, const char *id, const char *aad,
                    const unsigned char *in, size_t n, char **out, size_t *out_len,
                    struct err *err)
{
    *out = NULL;
    *out_len = 0;
    if (n < KEYSTORE_OVERHEAD)
        return err_set(err, ERR_FORMAT, "keystore: sealed data too short");
    unsigned char key[KEYSTORE_KEY_BYTES];
    int rc = get_key(ks, id, key, false, err);
    if (rc)
        return rc;
    size_t len = n - KEYSTORE_OVERHEAD;
    char *buf = malloc(len + 1);
    unsigned char tag[TAG_BYTES];
    if (buf)
        memcpy(tag, in + NONCE_BYTES + len, TAG_BYTES);
    if (!buf)
        rc = err_set(err, ERR_NOMEM, "keystore: out of memory");
    else if (gcm(0, key, in, aad, in + NONCE_BYTES, len, (unsigned char *)buf, tag))
        rc = err_set(err, ERR_FORMAT, "keystore: sealed data does not authenticate");
    OPENSSL_cleanse(key, sizeof key);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}
