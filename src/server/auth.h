/*
 * auth: API keys for the HTTP and gRPC front ends.
 *
 * The key file (`--api-keys FILE`, docs/API.md "Authentication and keys") holds one
 * key per line, never the key itself, only its SHA-256:
 *     # comment
 *     id=alice sha256=<64 hex> rpm=60 tpm=100000 concurrent=4 scope=user
 *     id=ops sha256=<64 hex> scope=admin
 * id ([A-Za-z0-9._-], 1..63 bytes, unique, not "-") and sha256 are required; rpm, tpm and
 * concurrent default to 0 = unlimited; scope is user (default) or admin. Blank lines
 * and lines starting with '#' are skipped. Any other content is an error naming
 * "FILE:LINE". `deepseek keys add` writes such lines (src/cli/cli_keys.c).
 *
 * A presented key ("Authorization: Bearer sk-...", gRPC metadata "authorization",
 * or a bare value as in "X-Api-Key") is hashed with SHA-256 (OpenSSL EVP) and
 * compared with every stored hash using CRYPTO_memcmp, without an early exit, so
 * the time taken does not depend on which key (if any) matched or where two hashes
 * first differ. Only the key id may be logged; the key never is.
 *
 * Ownership: struct auth owns its path copy and the current key set.
 * Threading: auth_check and auth_count may run on any number of threads at once;
 * auth_reload may run concurrently with them (from the thread that saw SIGHUP's
 * flag). The key set is immutable once parsed; auth_reload parses the new file
 * without any lock held and then swaps the pointer under a write lock (pthread
 * rwlock), so a check sees either the whole old set or the whole new one. A failed
 * reload keeps the old set. auth_free must not race with anything.
 */
#ifndef DS_SERVER_AUTH_H
#define DS_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

#define AUTH_ID_MAX 64      /* bytes of a key id, NUL included */
#define AUTH_KEY_PREFIX "sk-"

struct auth;

enum auth_scope {
    AUTH_SCOPE_USER = 0,
    AUTH_SCOPE_ADMIN = 1, /* may also call the administrative endpoints */
};

/* What a matching key grants. Limits of 0 mean unlimited. */
struct auth_key_info {
    char id[AUTH_ID_MAX];
    long rpm;        /* requests per minute */
    long tpm;        /* prompt + completion tokens per minute */
    long concurrent; /* requests in flight at once */
    enum auth_scope scope;
};

enum auth_result {
    AUTH_OK = 0,
    AUTH_MISSING = 1, /* no header, empty value, or "Bearer" with nothing after it */
    AUTH_INVALID = 2, /* a value was presented and no stored hash matches it */
};

/* Reads the key file. *out is a new struct auth (NULL on failure). *mode_too_open
 * (may be NULL) is set when the file is readable or writable by group or others
 * (it should be 0600): the caller warns; the file is still used. Errors: ERR_IO
 * (cannot open/read), ERR_FORMAT "FILE:LINE: ..." (bad line, duplicate id or hash),
 * ERR_NOMEM. An empty file (no keys) is valid: every check then fails. */
int auth_load(const char *path, struct auth **out, bool *mode_too_open, struct err *err);

/* Re-reads the same file and swaps the key set in atomically (see Threading). On
 * failure the old keys stay in force and the error says why. Same errors as
 * auth_load. */
int auth_reload(struct auth *a, bool *mode_too_open, struct err *err);

void auth_free(struct auth *a);

/* Number of keys in the current set. */
size_t auth_count(struct auth *a);

/* Copies the i-th key's info (file order) of the current set; ERR_RANGE past the
 * end. For `keys list` and the admin endpoints; no hash is exposed. */
int auth_key_at(struct auth *a, size_t i, struct auth_key_info *out);

/* Checks an Authorization header value: "Bearer <key>" (scheme case-insensitive,
 * spaces/tabs around the key ignored). A value without the Bearer scheme is taken
 * as the key itself (X-Api-Key). NULL means the header is absent. On AUTH_OK fills
 * *info (may be NULL); otherwise clears it. */
enum auth_result auth_check(struct auth *a, const char *authorization, struct auth_key_info *info);

/* Same check for a key of len bytes that is already extracted. */
enum auth_result auth_check_key(struct auth *a, const char *key, size_t len,
                                struct auth_key_info *info);

/* "ok" | "missing" | "invalid". */
const char *auth_result_name(enum auth_result r);

/* --- helpers shared with `deepseek keys` --- */

/* Writes the lower-case hex SHA-256 of key[0..len) into hex (65 bytes, NUL
 * included). 0 or ERR_INTERNAL (OpenSSL failed). */
int auth_hash_hex(const char *key, size_t len, char hex[65]);

/* Generates a new key: "sk-" + 32 random bytes (RAND_bytes) as 64 hex digits, NUL
 * terminated, into buf (at least AUTH_NEW_KEY_SIZE bytes). 0 or ERR_INTERNAL. */
#define AUTH_NEW_KEY_SIZE 68
int auth_generate_key(char *buf, size_t size);

/* True when id is a valid key id ([A-Za-z0-9._-], 1..AUTH_ID_MAX-1 bytes, not "-", which
 * names the requests made without a key). */
bool auth_id_valid(const char *id);

#endif
