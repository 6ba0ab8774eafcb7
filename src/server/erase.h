/*
 * erase: GDPR Art. 17 erasure of one subject (an API key id) from everything the
 * server keeps about it (`deepseek erase --key-id ID`, `DELETE /v1/admin/subjects/ID`).
 *
 * The steps, in this order (docs/OPERATIONS.md "Erasing one subject"):
 *   1. an audit record "erase"/"intent" (ops/audit.h), fsynced; if it cannot be
 *      written nothing is touched (fail closed);
 *   2. the subject's data key is overwritten in place in the keystore
 *      (keystore_erase): from here every sealed copy of its prompt logs and Redis
 *      entries, wherever it lies (a backup, a Redis snapshot, a replica), is
 *      unreadable: crypto-shredding;
 *   3. its prompt-log files are wiped (ops/wipe.h: overwrite passes, verified, then
 *      removed) while the prompt log holds every append (promptlog_files_locked). A
 *      file the wipe refuses (a filesystem that does not overwrite in place, another
 *      process holding it open) is unlinked instead and the report says so: it holds
 *      only ciphertext under the key destroyed in step 2;
 *   4. its response-cache entries are evicted from memory and Redis
 *      (rcache_erase_tag_tiers);
 *   5. its prefix-cache KV slots are dropped (sched_forget_tag; online only);
 *   6. an audit record "erase"/"result" carrying the report.
 * A subject with nothing stored is erased successfully with an empty report: a
 * request repeated, or made for a subject that never used the server, must not fail.
 *
 * The anonymous subject (requests without a key) is "-": its response-cache and
 * prefix tag is "" and its data key and prompt log are named "-".
 *
 * The report is a JSON object (docs/API.md shows one):
 *   {"subject","status":"ok"|"partial","data_key":{"destroyed":bool,"store":path|null},
 *    "files":[{"path","bytes","status":"wiped"|"unlinked"|"failed","method","note"?}],
 *    "response_cache":{"memory":N|null,"redis":N|null}, "prefix_cache_slots":N|null,
 *    "errors":[...], "audit":{"file","intent_seq","result_seq"}}
 * null means that store is not kept by this process (tier off, no engine offline).
 * "partial": some step failed (errors says which); the others were done.
 *
 * Ownership: borrows everything in struct erase_targets. Threading: any thread but
 * the engine thread (sched_forget_tag waits for it); the server runs erases on its
 * event loop thread, one at a time. `deepseek erase` works offline only when no server
 * runs, so two processes never erase from the same files at once.
 */
#ifndef DS_SERVER_ERASE_H
#define DS_SERVER_ERASE_H

#include <jansson.h>

#include "base/err.h"
#include "ops/audit.h"

struct keystore;
struct promptlog;
struct rcache;
struct sched;

struct erase_targets {
    struct keystore *ks;            /* data keys; NULL: none kept */
    const char *ks_path;            /* for the report; NULL when ks is NULL */
    struct promptlog *pl;           /* prompt logs; NULL: none */
    struct rcache *rc;              /* response cache; NULL: none */
    struct sched *sched;            /* prefix-cache slots; NULL: no engine (offline) */
    const char *audit_dir;          /* where audit.jsonl lives */
    const struct audit_operator *op;
    const char *via;                /* "cli" or "rest", for the audit record */
    const char *requested_by;       /* the admin key id, or NULL */
    int passes;                     /* random wipe passes before the zero pass */
};

/* Erases subject (a key id or "-") as described above. On 0, *report is a new JSON
 * object (caller json_decref's it) whose "status" says ok or partial. ERR_INVALID:
 * subject is not a key id (nothing done); ERR_IO: the audit log could not be opened
 * or the intent record written (nothing done; err says why); ERR_NOMEM. */
int erase_subject(const struct erase_targets *t, const char *subject, json_t **report,
                  struct err *err);

#endif
