/*
 * request: one generation request as the engine and the server both see it.
 *
 * Lifecycle: the server makes a request (request_new: prompt token ids and the
 * generation parameters), sets a notify callback, and hands it to the scheduler
 * (sched_submit). The engine thread moves it QUEUED -> RUNNING -> DONE and appends
 * generated text as it goes (request_emit*); the event loop takes what has arrived
 * (request_take) whenever the notify callback has told it there is news. A client
 * that goes away calls request_cancel; the engine sees it within one step and
 * finishes the request with REQUEST_FINISH_CANCELLED, freeing its slot.
 *
 * Text is split into two streams: content and reasoning (R1's <think> block, see
 * serving.md 3.6). Everything emitted is complete UTF-8 (the engine feeds the
 * streaming detokenizer), so each piece can go straight into a JSON string.
 *
 * Ownership: a request is refcounted because two threads hold it: request_new returns
 * one reference (the creator's); sched_submit takes its own; request_unref drops one
 * and the last frees. The prompt array is taken by request_new.
 *
 * Threading: request_new / set_notify before submission, on one thread. Afterwards
 * the engine thread alone calls request_set_state, request_emit*, request_finish and
 * reads the immutable fields; any thread may call request_cancel, request_cancelled,
 * request_take and ref/unref. The output buffer is under the request's mutex.
 * notify runs on the engine thread (and must not call back into the request's
 * emit/finish functions); it is called at most once until the next request_take.
 */
#ifndef DS_ENGINE_REQUEST_H
#define DS_ENGINE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/sampler.h"

#define REQUEST_MAX_STOP 4 /* OpenAI allows up to 4 stop strings */
#define REQUEST_ID_MAX 48
#define REQUEST_TAG_MAX 64 /* bytes of a prefix-cache tag (an API key id), NUL included */

enum request_state { REQUEST_QUEUED, REQUEST_RUNNING, REQUEST_DONE };

enum request_finish {
    REQUEST_FINISH_NONE = 0, /* not finished */
    REQUEST_FINISH_STOP,     /* EOG token or stop string */
    REQUEST_FINISH_LENGTH,   /* max_tokens or the context is full */
    REQUEST_FINISH_CANCELLED,
    REQUEST_FINISH_ERROR,    /* an engine error; message in request_output.error */
};

struct request_params {
    struct sampler_params sampling;
    int32_t max_tokens;                 /* >= 1 */
    const char *stop[REQUEST_MAX_STOP]; /* borrowed; request_new copies them */
    int n_stop;
    bool in_reasoning;  /* the prompt leaves the model inside <think> */
    int32_t think_end;  /* id of </think>, or -1: then no reasoning split at all */
    int32_t think_start;/* id of <think>, or -1 */
    char cache_tag[REQUEST_TAG_MAX]; /* whose prefix-cache rows it may reuse ("" = anyone
                                      * anonymous; the API key id otherwise) */
};

struct request; /* opaque */

/* What the loop thread gets from request_take: bytes that arrived since the last
 * take (malloc'ed, caller frees, NULL when none) and the state. */
struct request_output {
    char *content, *reasoning;
    size_t content_len, reasoning_len;
    enum request_state state;
    enum request_finish finish;
    int32_t prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens;
    char error[ERR_MSG_MAX];
};

/* Takes prompt (malloc'ed, n_prompt >= 1 ids) even on failure; copies params and id.
 * ERR_RANGE for too many stop strings; ERR_NOMEM. */
int request_new(const char *id, int32_t *prompt, size_t n_prompt,
                const struct request_params *params, struct request **out, struct err *err);
void request_ref(struct request *r);
void request_unref(struct request *r); /* accepts NULL */

typedef void (*request_notify_fn)(struct request *r, void *arg);
void request_set_notify(struct request *r, request_notify_fn fn, void *arg);

const char *request_id(const struct request *r);
const int32_t *request_prompt(const struct request *r, size_t *n);
const struct request_params *request_params(const struct request *r);
const char *request_stop(const struct request *r, int i); /* the request's own copy */

/* Any thread. */
void request_cancel(struct request *r);
bool request_cancelled(const struct request *r);
/* Moves the pending text out; clears the "notified" mark. 0 or ERR_NOMEM. */
int request_take(struct request *r, struct request_output *out);
void request_output_free(struct request_output *out);

/* Engine thread. Each may call notify. */
void request_set_state(struct request *r, enum request_state s);
int request_emit(struct request *r, const char *text, size_t len, bool reasoning);
void request_count(struct request *r, int32_t prompt_tokens, int32_t completion_tokens,
                   int32_t reasoning_tokens);
/* Leading prompt tokens whose KV rows came from the prefix cache (engine/prefix.h). */
void request_set_cached(struct request *r, int32_t cached_tokens);
void request_finish(struct request *r, enum request_finish f, const char *error);

const char *request_finish_name(enum request_finish f); /* "stop", "length", ... */

#endif
