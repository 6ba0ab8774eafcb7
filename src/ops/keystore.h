/*
 * keystore: one AES-256-GCM data key per API key id, for data kept outside the
 * process (the response cache's Redis entries), so that erasing a key's data key
 * makes every copy of that key's data unreadable wherever it still lies
 * (crypto-shredding; `deepseek erase`).
 *
 * The file (mode 0600, created if absent) is a sequence of fixed 96-byte records:
 * the key id (64 bytes, NUL-padded) and its 32 random bytes (RAND_bytes). A key is
 * created on first use and appended (fsync). keystore_erase overwrites its record
 * in place with zeros and fsyncs, so the bytes are gone from the file, not merely
 * unlinked; a zero record is free and reused by the next new key.
 *
 * Nothing is kept in memory: every call re-reads the file under flock() (shared to
 * read, exclusive to write), so processes sharing the file (replicas sharing a Redis)
 * use one key per id, and an erase by one is seen by all at their next call.
 *
 * Sealed data: nonce (12 random bytes) | ciphertext | GCM tag (16 bytes); aad (the
 * Redis key, say) is authenticated, so an entry cannot be moved under another name.
 *
 * Ownership: a keystore owns its file descriptor; keys read are wiped after use; sealed
 * buffers are malloc'ed for the caller. Threading: every function may be called from
 * any thread (one mutex).
 */
#ifndef DS_OPS_KEYSTORE_H
#define DS_OPS_KEYSTORE_H

#include <stddef.h>

#include "base/err.h"

#define KEYSTORE_ID_MAX 64  /* bytes of a key id, NUL included */
#define KEYSTORE_KEY_BYTES 32
#define KEYSTORE_OVERHEAD 28 /* nonce + tag added by keystore_seal */

struct keystore;

/* Opens or creates path. ERR_IO naming the path; ERR_FORMAT when its size is not a
 * multiple of the record size. */
int keystore_open(const char *path, struct keystore **out, struct err *err);
void keystore_free(struct keystore *ks); /* NULL ok; wipes the keys from memory */

/* id's data key, created and stored when id has none. ERR_INVALID for an empty or
 * too long id, ERR_IO when the file cannot be written. */
int keystore_get(struct keystore *ks, const char *id, unsigned char key[KEYSTORE_KEY_BYTES],
                 struct err *err);
/* Overwrites id's record with zeros (fsync) and forgets the key. ERR_NOTFOUND if id
 * has none. */
int keystore_erase(struct keystore *ks, const char *id, struct err *err);

/* AES-256-GCM with id's data key (created if needed). *out (malloc'ed) is
 * n + KEYSTORE_OVERHEAD bytes. */
int keystore_seal(struct keystore *ks, const char *id, const char *aad, const void *in,
                  size_t n, unsigned char **out, size_t *out_len, struct err *err);
/* The reverse; ERR_FORMAT when the data is too short or does not authenticate (a
 * wrong key, an erased key, tampering), ERR_NOTFOUND when id has no key (erased).
 * *out is malloc'ed, NUL-terminated, *out_len bytes. */
int keystore_unseal(struct keystore *ks, const char *id, const char *aad,
                    const unsigned char *in, size_t n, char **out, size_t *out_len,
                    struct err *err);

#endif
