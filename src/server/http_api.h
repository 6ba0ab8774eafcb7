/*
 * http_api: the OpenAI-compatible REST routes on a libevent evhttp server.
 *
 *   POST /v1/chat/completions  chat (also the seed's {"prompt": ...} form), streaming
 *   POST /v1/completions       raw prompt(s): a string or a list, one choice each
 *   GET  /v1/models            the one served model
 *   GET  /health               200 while the process serves
 *   GET  /ready                200 when accepting work; 503 while loading or draining
 *   GET  /metrics              Prometheus text (server/metrics.h)
 *   DELETE /v1/admin/subjects/ID  erase one key id's data (server/erase.h): a key of
 *                              scope=admin or --admin-key; the JSON report
 * Everything else is 404; every error is the OpenAI error body (server/apierr.h).
 *
 * Caching (docs/API.md "Caching"): each engine request carries the caller's key id as
 * its prefix-cache tag, and usage reports prompt_cache_hit_tokens / _miss_tokens.
 * Deterministic requests (temperature 0 or a seed) go through the response cache
 * when one is configured: "X-Cache: HIT|MISS" on the reply; "Cache-Control:
 * no-store" on the request neither reads nor writes it.
 * Request and response shapes are in docs/API.md.
 * Prompt logs: with deps->prompts, every generation call that passed validation
 * leaves one sealed record (prompt, output, status) in its key's prompt log when it
 * ends; nothing of the text goes to the ordinary logs.
 *
 * The event loop thread owns connections and the per-call state; generation runs on
 * the engine thread (engine/sched.h). A call renders and tokenizes its prompt on the
 * loop thread, submits engine requests, and gets their text back through a wake
 * event: the engine's notify callback queues the request on a mutex-protected list
 * and activates the event (event_active is thread-safe once evthread_use_pthreads
 * has been called, which server.c does before creating the base).
 *
 * Ownership: borrows everything in struct http_api_deps (the server owns them);
 * owns its calls, each holding references on its engine requests.
 * Threading: every function on the event loop thread, except that the notify
 * callback it installs runs on the engine thread.
 */
#ifndef DS_SERVER_HTTP_API_H
#define DS_SERVER_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "engine/sched.h"
#include "model/tokenizer.h"

struct event_base;
struct evhttp;
struct metrics;
struct auth;
struct ratelimit;
struct rcache;
struct promptlog;
struct erase_targets;

struct http_api_deps {
    struct event_base *base;
    struct evhttp *http;
    struct sched *sched;
    const struct tokenizer *tok;
    const char *chat_template; /* --chat-template ("" = the model's own) */
    const char *model_name;    /* the id /v1/models lists and responses carry */
    struct metrics *metrics;   /* may be NULL */
    struct auth *auth;         /* NULL: no API keys required */
    struct ratelimit *rl;      /* may be NULL */
    size_t max_body;           /* bytes of a request body */
    int n_ctx;                 /* positions per sequence */
    double temperature, top_p; /* server defaults when a request gives none */
    bool vllm_names;           /* metrics_render's compat names */
    struct rcache *rcache;     /* response cache (server/rcache.h); NULL: off */
    struct promptlog *prompts; /* --log-prompts (server/promptlog.h); NULL: off */
    const struct erase_targets *erase; /* DELETE /v1/admin/subjects/ID; NULL: off */
    const char *admin_key;     /* --admin-key ("" or NULL: none) */
};

struct http_api;

/* Registers the routes on deps->http. */
int http_api_new(const struct http_api_deps *deps, struct http_api **out, struct err *err);
/* Cancels and ends every open call, then frees. NULL ok. */
void http_api_free(struct http_api *a);

/* /ready answers 200 once set; drain refuses new generation requests with 503 and
 * flips /ready to 503 for good. */
void http_api_set_ready(struct http_api *a, bool ready);
void http_api_drain(struct http_api *a);
/* Generation calls still open (0 means a drain is complete). */
int http_api_in_flight(const struct http_api *a);

#endif
