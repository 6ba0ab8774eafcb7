/*
 * audit: the hash-chained, append-only audit log of destructive operations.
 *
 * The log is JSON Lines in <dir>/audit.jsonl; logrotate may rename it to any name
 * that starts with "audit.jsonl" (audit.jsonl.1, audit.jsonl-20261128). Each line is
 * one record. The chain, precisely (docs/OPERATIONS.md repeats it):
 *
 *   body  = the record with every field except "hash", serialised by jansson with
 *           JSON_COMPACT | JSON_SORT_KEYS; it holds "seq" (1, 2, 3, ...) and
 *           "prev_hash" (the "hash" of the record before; 64 '0's for seq 1);
 *   hash  = lowercase hex SHA-256 of the exact bytes of body;
 *   line  = body without its final '}' + ",\"hash\":\"" + hash + "\"}" + "\n".
 *
 * So "hash" is always the last field and a verifier recomputes it from the line's
 * own bytes (no re-serialisation, no canonical-JSON question). Editing any byte of a
 * record breaks its hash; deleting, reordering or inserting records breaks seq and
 * prev_hash; a cut-off last line has no newline. Limits: whoever can rewrite the
 * whole file can recompute every hash after the edit, and dropping the newest
 * records leaves a valid shorter chain; both are caught only by comparing with a
 * head (seq, hash) recorded elsewhere (`deepseek audit verify` prints it).
 *
 * Writers: audit_append takes an exclusive flock on <dir>/.audit.lock (never
 * rotated, so a rename by logrotate cannot split writers onto two files), finds the
 * newest record across all audit.jsonl* files, appends one line with one write(2)
 * and fsyncs before returning. A caller about to destroy data writes its "intent"
 * record first and destroys nothing if that fails (fail closed). If the newest
 * record is damaged (partial line, bad hash) appends are refused until a person
 * looks (`deepseek audit verify`).
 *
 * Ownership: struct audit is opaque, audit_open creates it and audit_free releases
 * it. Records borrow every string the caller passes. Threading: one struct audit per
 * thread; different processes may append at once (the lock serialises them).
 */
#ifndef DS_OPS_AUDIT_H
#define DS_OPS_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "base/err.h"

#define AUDIT_FILE "audit.jsonl"
#define AUDIT_LOCK_FILE ".audit.lock"
#define AUDIT_LINE_MAX 65536 /* bytes of one record line, '\n' included */
#define AUDIT_HASH_HEX 65    /* 64 hex digits and a NUL */

struct audit;

/* Who runs the command. uid and user come from the kernel and the password file;
 * loginuid (/proc/self/loginuid, -1 when unset) survives su and sudo, so it names
 * the person who logged in; sudo_user is the SUDO_USER variable, which anyone can
 * set, so it is informational only. */
struct audit_operator {
    long uid;
    char user[64];      /* "" when uid has no password entry */
    char sudo_user[64]; /* "" when not run through sudo */
    long loginuid;      /* -1 when unset (daemons, containers) */
    char host[256];
};

/* One record. Pointers are borrowed; NULL strings, negative numbers and a NULL
 * details object are left out of the line. */
struct audit_record {
    const char *action;       /* "wipe", "logs.sanitize" */
    const char *phase;        /* "intent", "result", "plan" */
    const char *target;       /* path (bytes that are not UTF-8 are written as \xNN) */
    int64_t size;             /* bytes, or -1 */
    const char *sha256;       /* hex digest of the content before, or NULL */
    const char *method;       /* "overwrite", "in-place-redact" */
    int passes;               /* overwrite passes including the zero pass, or -1 */
    const char *verification; /* what was checked and how */
    const char *result;       /* "pending", "ok", "refused", "error", "interrupted", ... */
    const char *error;        /* the reason, or NULL */
    int64_t intent_seq;       /* the intent record a result answers, or 0 */
    const json_t *details;    /* extra fields under "details", or NULL (borrowed) */
};

/* Fills op from the process: uid, user name, loginuid, host, and SUDO_USER taken
 * from envp (the CLI passes its environment; NULL: none), since only the caller's
 * layer decides which environment counts. */
void audit_operator_detect(struct audit_operator *op, char *const *envp);

/* Opens the log in dir (created, mode 0750, when missing) and checks that
 * audit.jsonl and the lock file can be written. op is copied. ERR_IO naming the
 * path when not; *out is NULL on failure. */
int audit_open(const char *dir, const struct audit_operator *op, struct audit **out,
               struct err *err);
void audit_free(struct audit *a);

/* audit_open on dir, and when that fails on fallback (NULL: none). *used points at
 * the directory opened (dir or fallback). On failure err names both. */
int audit_open_fallback(const char *dir, const char *fallback, const struct audit_operator *op,
                        struct audit **out, const char **used, struct err *err);

/* The log file's path ("<dir>/audit.jsonl"). */
const char *audit_path(const struct audit *a);

/* Appends r with the next seq and the chain fields, fsyncs, and stores the seq in
 * *seq_out (may be NULL). Returns 0 only once the line is on stable storage;
 * ERR_IO / ERR_FORMAT (damaged newest record) / ERR_NOMEM otherwise. */
int audit_append(struct audit *a, const struct audit_record *r, int64_t *seq_out,
                 struct err *err);

/* Lists dir's audit files (names starting with "audit.jsonl", no ".gz"), oldest
 * first by the seq of their first record; an unreadable first record sorts first so
 * verification reports it. *files is a malloc'ed array of malloc'ed paths the caller
 * releases with audit_files_free. ERR_IO when dir cannot be read. */
int audit_list_files(const char *dir, char ***files, size_t *n, struct err *err);
void audit_files_free(char **files, size_t n);

/* The outcome of a verification. When broken, file/line/seq name the first bad
 * record (line counts from 1; seq is 0 when unreadable) and reason says why. */
struct audit_verify {
    bool broken;
    int64_t records;
    int64_t first_seq;
    int64_t head_seq;
    char head_hash[AUDIT_HASH_HEX];
    char file[4096];
    int64_t line;
    int64_t seq;
    char reason[256];
};

/* Verifies the chain over files in the order given (oldest first). partial: the
 * first record may continue an older chain (files were pruned) instead of starting
 * at seq 1 from 64 '0's. 0 with out filled (check out->broken); ERR_IO when a file
 * cannot be read. */
int audit_verify_files(char *const *files, size_t n, bool partial, struct audit_verify *out,
                       struct err *err);

/* Calls fn for each record of files in order with the record parsed (borrowed for
 * the call). A line that does not parse is passed as NULL. fn returns 0 to go on. */
typedef int (*audit_record_fn)(const json_t *rec, const char *file, int64_t line, void *ctx);
int audit_foreach(char *const *files, size_t n, audit_record_fn fn, void *ctx,
                  struct err *err);

/* Checks one line (without its '\n') on its own: the hash suffix, the hash over the
 * body, and seq / prev_hash present. 0 and the fields, or -1 with a reason. */
int audit_line_check(const char *line, size_t len, int64_t *seq, char prev[AUDIT_HASH_HEX],
                     char hash[AUDIT_HASH_HEX], const char **reason);

/* Lowercase hex SHA-256 of len bytes. */
void audit_sha256_hex(const void *data, size_t len, char out[AUDIT_HASH_HEX]);

#endif
