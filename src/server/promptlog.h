/*
 * promptlog: per-subject encrypted prompt logs (`--log-prompts`, off by default).
 *
 * One file per API key id ("subject"): <dir>/<id>.log, where dir is
 * <log-dir>/prompts (mode 0700; files 0600). Requests without a key belong to the
 * anonymous subject "-" (the name the response cache uses for it too). Each line is
 * one record: base64 of keystore_seal(id, aad = "deepseek:prompts:<id>", json), so
 * the plain text (the prompt, the output) never touches the disk and a record cannot
 * be moved into another subject's file. A record is a JSON object started by
 * promptlog_record_new (v, request_id, time, protocol, route, key_id) to which the
 * front end (http_api.c, grpc_api.c) adds "messages" (chat) or "prompt" (completions:
 * a list of strings), "output" (one {content, reasoning, finish} per choice), "status"
 * (the HTTP or gRPC status) and "cache" ("hit"/"miss", REST only). docs/API.md
 * "Prompt logs" shows one.
 *
 * Erasure (server/erase.h) destroys the subject's data key, which makes every copy of
 * its records unreadable wherever it lies, and then wipes its files:
 * promptlog_files_locked runs the wipe while appends of every subject wait, so no
 * descriptor of ours is open on a file being wiped (ops/wipe.h refuses held files)
 * and no record lands half-way. A file is opened, appended to with one write(2) and
 * closed for each record, so outside an append no descriptor stays open.
 *
 * A subject's files: "<id>.log" and rotated copies "<id>.log.N", "<id>.log-DATE"
 * (digits), each optionally ".gz". Since ids cannot hold '/', these names never
 * belong to another id ("a.log.log" is the file of id "a.log", not a copy of "a").
 *
 * Ownership: borrows the keystore (must outlive it); owns its path copy. Threading:
 * every function may be called from any thread (one mutex serialises appends and the
 * locked file walk).
 */
#ifndef DS_SERVER_PROMPTLOG_H
#define DS_SERVER_PROMPTLOG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "base/err.h"

#define PROMPTLOG_DIR "prompts"   /* under the log dir */
#define PROMPTLOG_ANON "-"        /* the subject of requests made without a key */
#define PROMPTLOG_AAD "deepseek:prompts:"

struct keystore;
struct promptlog;

/* dir: the prompts directory (created with mode 0700 at the first append). ks: the
 * data keys; NULL (no keystore file: nothing was ever sealed) leaves only the file
 * walk useful: appends fail with ERR_INVALID, every record read is unreadable.
 * ERR_NOMEM only. */
int promptlog_new(const char *dir, struct keystore *ks, struct promptlog **out,
                  struct err *err);
void promptlog_free(struct promptlog *pl); /* NULL ok */

/* True when id names a subject: a key id ([A-Za-z0-9._-], 1..63 bytes) or "-". */
bool promptlog_id_valid(const char *id);

/* "<dir>/<id>.log". ERR_INVALID for a bad id, ERR_RANGE when it does not fit. */
int promptlog_path(const struct promptlog *pl, const char *id, char *out, size_t cap,
                   struct err *err);

/* A new record object (caller owns it): {"v":1,"request_id","time" (UTC now,
 * ISO 8601 with milliseconds),"protocol","route","key_id" (null when "")}. NULL on
 * no memory. */
json_t *promptlog_record_new(const char *request_id, const char *protocol, const char *route,
                             const char *key_id);

/* The subject of a key id: id itself, or PROMPTLOG_ANON when "". */
const char *promptlog_subject(const char *key_id);

/* Seals rec (serialised compactly) under id's data key (created at first use) and
 * appends it as one line. ERR_INVALID (bad id), ERR_IO naming the file, ERR_NOMEM. */
int promptlog_append(struct promptlog *pl, const char *id, const json_t *rec,
                     struct err *err);

/* Called with each record of id, oldest file first (rotated copies by their number,
 * highest first, then the live file), in file order. json[0..len) is the record as
 * written, NUL-terminated, borrowed for the call. Return non-zero to stop. */
typedef int (*promptlog_record_fn)(const char *json, size_t len, void *ctx);

/* Reads and unseals every record of id. *unreadable (may be NULL) counts lines that
 * do not decode or authenticate (an erased data key, tampering, a gzipped copy).
 * 0 (also when id has no file), ERR_INVALID, ERR_IO, ERR_NOMEM. */
int promptlog_read(struct promptlog *pl, const char *id, promptlog_record_fn fn, void *ctx,
                   size_t *unreadable, struct err *err);

/* Called with each file of id (full path, its size in bytes). Non-zero stops the walk
 * and is returned. */
typedef int (*promptlog_file_fn)(const char *path, long long size, void *ctx);

/* Calls fn on each of id's files while every append waits (see top). 0 when id has
 * no file; ERR_INVALID (bad id), ERR_IO (dir unreadable), or fn's value. */
int promptlog_files_locked(struct promptlog *pl, const char *id, promptlog_file_fn fn,
                           void *ctx, struct err *err);

#endif
