/*
 * sanitize: redacts secrets in log files in place, so the old bytes are gone.
 *
 * Why in place: writing a redacted copy and renaming it over the log leaves the
 * original bytes in the freed blocks (research/deletion.md §0 item 4: 2000 of 2000
 * tokens still on disk). Here each secret is replaced by the same number of bytes
 * ("[REDACTED]" then '*', or only '*' when shorter than 10) through a shared mapping
 * of the same inode, then msync + fdatasync; the filesystem and FIEMAP checks of
 * wipe make sure those pages are written back onto the same blocks. Same length
 * also means offsets, line numbers and the file size stay the same.
 *
 * What counts as a secret (the secret part only is replaced; the prefix stays so a
 * reader sees what was there): "sk-" keys of 8+ characters, "Bearer <token>",
 * "Authorization: Basic <b64>", api_key / access_token / token / key / password /
 * passwd / secret parameters ("name=value"), JSON fields of those names
 * ("password": "..."), "API_KEY: value" (the seed's pattern) and the password of a
 * "scheme://user:password@" URL. Text already redacted is left alone, so running
 * twice changes nothing the second time.
 *
 * Ownership: struct sanitizer holds the compiled patterns; sanitize_new creates it,
 * sanitize_free releases it. Threading: a sanitizer is read-only after creation but
 * PCRE2 match data is per call, so one sanitizer may serve several threads.
 */
#ifndef DS_OPS_SANITIZE_H
#define DS_OPS_SANITIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "ops/audit.h"

enum sanitize_class {
    SANITIZE_SK_KEY,
    SANITIZE_BEARER,
    SANITIZE_BASIC,
    SANITIZE_PARAM,
    SANITIZE_JSON_FIELD,
    SANITIZE_API_KEY_LABEL,
    SANITIZE_URL_PASSWORD,
    SANITIZE_NCLASS,
};

struct sanitize_stats {
    uint64_t matches[SANITIZE_NCLASS];
    uint64_t total;
    uint64_t bytes_redacted;
};

enum sanitize_status {
    SANITIZE_DONE,         /* secrets redacted and synced */
    SANITIZE_CLEAN,        /* nothing to redact */
    SANITIZE_FOUND,        /* check only: secrets present, nothing changed */
    SANITIZE_REFUSED,      /* a safety check said no; nothing changed */
    SANITIZE_FAILED,       /* I/O error */
    SANITIZE_VERIFY_FAILED,/* blocks moved or secrets remain after the rewrite */
    SANITIZE_AUDIT_FAILED, /* intent record not written; nothing changed */
};

struct sanitizer;

int sanitize_new(struct sanitizer **out, struct err *err);
void sanitize_free(struct sanitizer *s);

/* The name of a class ("sk-key", "bearer", ...) for reports and audit records. */
const char *sanitize_class_name(enum sanitize_class c);
const char *sanitize_status_name(enum sanitize_status s);

/* Redacts buf[0..len) in place (same length) when redact, else only counts. Adds
 * to *st. 0 or ERR_INTERNAL (a PCRE2 failure other than no-match). */
int sanitize_buffer(const struct sanitizer *s, char *buf, size_t len, bool redact,
                    struct sanitize_stats *st, struct err *err);

/* Sanitizes one file in place with the checks and audit records described above.
 * check_only: count, change nothing, write no record. audit may be NULL only when
 * check_only. 0 when *status is DONE, CLEAN or FOUND; a negative ERR_* otherwise. */
int sanitize_file(const struct sanitizer *s, struct audit *audit, const char *path,
                  bool check_only, struct sanitize_stats *st, enum sanitize_status *status,
                  struct err *err);

#endif
