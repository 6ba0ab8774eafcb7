/*
 * accesslog: one line per finished request, HTTP or gRPC, in access.log beside
 * the main log (or through LOG when no file is open). A line is logfmt, fields in
 * a fixed order, values without spaces or quotes quoted as needed:
 *     2026-11-28T17:12:00.123Z rid=chatcmpl-7f3a key=alice proto=http
 *     method=POST route=/v1/chat/completions status=200 prompt_tokens=12
 *     completion_tokens=40 cached_tokens=8 queue_ms=3 total_ms=812 finish=stop
 * (one line). Only the key id is ever written, never the key, prompt or output
 * text; every line also goes through log_redact() so a stray secret in a route
 * or id cannot leak. Absent values are "-".
 *
 * Rotation: accesslog_request_reopen() is async-signal-safe (sets a flag); the
 * next line reopens the file by name, like base/log (call it from the same SIGHUP
 * handler path as log_request_reopen).
 * Threading: accesslog_write may be called from any thread; each line is one
 * write(2) on an O_APPEND descriptor under a mutex. open/close: main thread.
 */
#ifndef DS_SERVER_ACCESSLOG_H
#define DS_SERVER_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define ACCESSLOG_FILE_NAME "access.log"

/* What one request did. Strings may be NULL ("-"). Numbers < 0 mean absent. */
struct accesslog_entry {
    const char *request_id;
    const char *key_id;       /* auth key id, never the key */
    const char *protocol;     /* "http" | "grpc" */
    const char *method;       /* "POST", or the gRPC method name */
    const char *route;        /* path without the query string */
    int status;               /* HTTP status (gRPC: the mapped HTTP status) */
    long prompt_tokens;
    long completion_tokens;
    long cached_tokens;
    double queue_ms;
    double total_ms;
    const char *finish_reason;
    const char *peer;         /* client address, or NULL */
};

/* Opens dir/access.log for appending (mode 0640, dir must exist). dir NULL or ""
 * means no file: lines go through LOG(INFO) with module "access". Replaces any
 * file opened before. 0 or ERR_IO (the message names the path). */
int accesslog_open(const char *dir, struct err *err);
void accesslog_close(void);

/* The path of the open file, or "" when none. */
const char *accesslog_path(void);

/* Formats e's line (without the time stamp and '\n') into buf; returns the
 * length it needed (like snprintf). For tests and for the LOG route. */
int accesslog_format(const struct accesslog_entry *e, char *buf, size_t size);

/* Writes one line for e. Never fails loudly: a write error is logged once as WARN
 * and the line is dropped. */
void accesslog_write(const struct accesslog_entry *e);

/* Async-signal-safe: the next accesslog_write reopens the file by name. */
void accesslog_request_reopen(void);
/* Reopens now. 0 or ERR_IO (the old descriptor stays in use). */
int accesslog_reopen(struct err *err);

#endif
