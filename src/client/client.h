/*
 * client: a C client of the deepseek-local REST API (or any OpenAI-compatible
 * server) over libcurl: chat and text completions, streaming through a callback,
 * retries with exponential back-off, cancellation. `deepseek chat` is built on it;
 * docs/CLIENT.md is the user guide.
 *
 *     struct client_opts o;
 *     client_opts_default(&o);
 *     struct client *c = client_new("http://127.0.0.1:7860", key, &o, &err);
 *     struct client_message m[] = {{"user", "Hello"}};
 *     struct client_params p;
 *     client_params_default(&p);
 *     struct client_result r;
 *     if (client_chat(c, m, 1, &p, on_delta, NULL, &r, &err) == 0)
 *         puts(r.content);
 *     client_result_free(&r);
 *     client_free(c);
 *
 * Retries (the seed's tenacity policy: stop_after_attempt(3),
 * wait_exponential(multiplier=1, min=4, max=10)). A request is tried up to
 * `attempts` times in all. It is tried again after
 *   - a connection error: refused, reset, timed out, name not resolved, nothing
 *     received, a response cut off before its end;
 *   - HTTP 429 (rate limited), 502, 503 (overloaded, draining) and 504.
 * Any other status (400, 401, 403, 404, 413, 500, ...) fails at once: repeating an
 * invalid or unauthorised request cannot help. Before try k+1 (k = 1, 2, ...) the
 * client waits
 *   - exactly what the server asked, when the response carries `retry-after-ms`
 *     (milliseconds) or `Retry-After` (whole seconds or an HTTP date) and that is
 *     between 0 and retry_after_max_s (60 s): the server knows when its bucket refills
 *     or its queue drains, and coming back earlier only earns another 429. This is
 *     what the OpenAI and Anthropic SDKs do. When several such headers came, the
 *     longest wait wins;
 *   - otherwise multiplier * 2^(k-1) seconds clamped to [min_wait_s, max_wait_s]:
 *     with the defaults 4 s, 4 s, 4 s, 8 s, 10 s, 10 s ... (tenacity's formula, so
 *     a 3-attempt call waits 4 s and 4 s: 8 s in all before giving up).
 * A streamed answer is retried only while nothing of it has reached the callback:
 * once text was delivered, a broken stream is an error, never a silent restart
 * that would repeat text. After the last try the call fails with the last error:
 * "HTTP 503 server_is_overloaded: The server is overloaded; ... (3 attempts)".
 *
 * Cancellation: client_cancel (async-signal-safe, so a SIGINT handler may call it)
 * makes the call in progress return CLIENT_ERR_CANCELLED within about 50 ms,
 * whether it is connecting, receiving or waiting to retry. A cancel with no call in
 * progress cancels the next one; each call clears the flag when it returns.
 *
 * Tests inject the clock (now) and the wait (sleep) through client_opts, so retry
 * schedules are checked without waiting.
 *
 * Ownership: struct client owns a copy of the URL and key and one curl handle (kept
 * between calls so the connection is reused). Results own their strings
 * (client_result_free). Messages and params are borrowed for the call.
 * Threading: one thread calls a client at a time; different clients may run on
 * different threads. client_cancel may be called from any thread or signal handler.
 * The library never prints and never logs the key.
 */
#ifndef DS_CLIENT_CLIENT_H
#define DS_CLIENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

struct client;

/* Returned when client_cancel stopped the call (beyond base/err.h's codes). */
#define CLIENT_ERR_CANCELLED (-100)

struct client_retry {
    int attempts;             /* tries in all, >= 1 (default 3; 1 = no retries) */
    double multiplier;        /* seconds (default 1) */
    double min_wait_s;        /* default 4 */
    double max_wait_s;        /* default 10 */
    double retry_after_max_s; /* a server's wait up to this is honoured (default 60) */
};

/* What the on_retry callback is told before each wait. */
struct client_retry_info {
    int attempt;         /* the try that failed, 1-based */
    int attempts;        /* tries in all */
    int http_status;     /* 0 for a connection error */
    const char *message; /* the failure, one line */
    double wait_s;       /* about to wait this long */
    bool from_server;    /* wait_s came from Retry-After / retry-after-ms */
};

struct client_opts {
    struct client_retry retry;
    long connect_timeout_ms; /* default 10000 */
    long timeout_ms;         /* whole request, 0 = none (default: none, answers are long) */
    /* Called before each wait (e.g. to say "retrying in 4 s"); may be NULL. */
    void (*on_retry)(void *arg, const struct client_retry_info *info);
    void *on_retry_arg;
    /* Injected clock and wait for tests. now: seconds since the Unix epoch (for
     * Retry-After dates). sleep: waits s seconds, returning early (nonzero) once
     * client_cancelled(c) is true. NULL: the real clock, and a sleep that checks
     * for a cancel every 50 ms. */
    double (*now)(void *arg);
    int (*sleep)(void *arg, double s, const struct client *c);
    void *clock_arg;
};

/* One chat message; strings borrowed. role: "system", "user" or "assistant". */
struct client_message {
    const char *role;
    const char *content;
};

struct client_params {
    const char *model;  /* NULL: leave it out (the server's model) */
    double temperature; /* < 0: leave it out (server default) */
    double top_p;       /* < 0: leave it out */
    int max_tokens;     /* 0: leave it out */
    long long seed;     /* used when has_seed */
    bool has_seed;
    bool stream;        /* ask for SSE and deliver text as it is generated */
};

/* Which text a delta is: the R1 family's reasoning, or the answer. */
enum client_part { CLIENT_PART_REASONING, CLIENT_PART_CONTENT };

/* Receives text as it arrives (streaming) or once per part at the end (not
 * streaming): reasoning first, then content. text is borrowed, not NUL-terminated
 * necessarily; nonzero return cancels the call (CLIENT_ERR_CANCELLED). */
typedef int (*client_delta_fn)(void *user, enum client_part part, const char *text,
                               size_t len);

struct client_result {
    char *content;           /* the answer (completions: the text); owned, never NULL on 0 */
    char *reasoning;         /* owned; NULL when the server sent none */
    char finish_reason[16];  /* "stop", "length", or "" if not reported */
    long prompt_tokens, completion_tokens, reasoning_tokens; /* -1 if not reported */
    int http_status;         /* status of the last response, 0 if none */
    int attempts;            /* tries made */
    char error_code[64];     /* the last error's code (e.g. "rate_limit_exceeded") or "" */
};

void client_opts_default(struct client_opts *o);
void client_params_default(struct client_params *p);

/* A client for the server at url: its root ("http://127.0.0.1:7860") or a base URL
 * ending in "/v1"; paths /v1/chat/completions and /v1/completions are appended.
 * api_key NULL or "" sends no Authorization header. opts NULL: defaults.
 * ERR_INVALID for an empty URL or bad retry settings (attempts < 1, negative waits,
 * min > max); NULL then with the message in e. */
struct client *client_new(const char *url, const char *api_key, const struct client_opts *opts,
                          struct err *e);
void client_free(struct client *c);

/* POST /v1/chat/completions with n messages. on_delta may be NULL. On 0, *res holds
 * the answer; on error *res holds http_status, attempts and error_code (its strings
 * NULL) and e the message. Errors: ERR_IO (connection, 5xx, 429 after the last try,
 * or a broken stream), ERR_INVALID (a 4xx that is not retried; e names the server's
 * message), ERR_FORMAT (a response that is not the API's JSON), ERR_NOMEM,
 * CLIENT_ERR_CANCELLED. Always call client_result_free afterwards. */
int client_chat(struct client *c, const struct client_message *msgs, size_t n,
                const struct client_params *p, client_delta_fn on_delta, void *user,
                struct client_result *res, struct err *e);

/* POST /v1/completions with one prompt (raw text, no chat template); the text comes
 * back in res->content and through on_delta as CLIENT_PART_CONTENT. As client_chat. */
int client_completion(struct client *c, const char *prompt, const struct client_params *p,
                      client_delta_fn on_delta, void *user, struct client_result *res,
                      struct err *e);

/* Stops the call in progress (or the next one). Async-signal-safe. */
void client_cancel(struct client *c);

/* True once client_cancel was called and the call has not yet returned. */
bool client_cancelled(const struct client *c);

/* Frees the strings of r and clears it; r may be zeroed or from a failed call. */
void client_result_free(struct client_result *r);

/* The wait before try attempt+1 when the server gave none: multiplier *
 * 2^(attempt-1) clamped to [min_wait_s, max_wait_s]. attempt is 1-based. */
double client_backoff(const struct client_retry *r, int attempt);

/* Parses a Retry-After value ("120" or "Wed, 21 Oct 2015 07:28:00 GMT") against
 * now (seconds since the epoch) into seconds to wait (a past date gives 0).
 * 0, or ERR_FORMAT for anything else (negative, fractional, garbage). */
int client_parse_retry_after(const char *value, double now, double *wait_s);

#endif
