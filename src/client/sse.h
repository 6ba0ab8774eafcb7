/*
 * sse: an incremental parser of Server-Sent Events (text/event-stream), as the
 * streaming chat and completion endpoints send them.
 *
 * Bytes go in as they arrive from the network, cut anywhere (inside a line, inside a
 * "\r\n", inside a UTF-8 character); the parser keeps the partial line and calls the
 * event callback once per complete event with its data. Per the WHATWG rules: lines
 * end in "\n", "\r\n" or "\r"; "data:" lines (one optional space after the colon
 * dropped) are joined with "\n"; a blank line ends the event; lines starting with ':'
 * are comments (keep-alives) and skipped; other fields (event:, id:, retry:) are
 * ignored. An event with no data line is not delivered. sse_finish delivers an event
 * the stream ended without its blank line, so a server that closes right after its
 * last "data:" line loses nothing.
 *
 * Limits: a line or event longer than max_bytes is ERR_RANGE (a hostile server
 * cannot make the client buffer without bound).
 *
 * Ownership: struct sse owns its buffers; the data passed to the callback is borrowed
 * for the call only (NUL-terminated for convenience). Threading: one thread at a time.
 */
#ifndef DS_CLIENT_SSE_H
#define DS_CLIENT_SSE_H

#include <stddef.h>

#include "base/err.h"

struct sse;

/* Receives one event's data; nonzero stops parsing and is returned by sse_feed. */
typedef int (*sse_event_fn)(void *arg, const char *data, size_t len);

/* A parser calling fn(arg, ...) per event; max_bytes bounds a line and an event.
 * NULL when out of memory. */
struct sse *sse_new(size_t max_bytes, sse_event_fn fn, void *arg);
void sse_free(struct sse *s);

/* Parses n more bytes. 0; the callback's nonzero value (parsing stops there); or
 * ERR_RANGE / ERR_NOMEM with a message in e. */
int sse_feed(struct sse *s, const char *buf, size_t n, struct err *e);

/* End of stream: delivers a pending event. Same returns as sse_feed. */
int sse_finish(struct sse *s, struct err *e);

#endif
