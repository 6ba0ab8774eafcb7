/*
 * server: the `deepseek serve` process around the REST API: the event loop, the
 * engine thread, API keys, rate limits, metrics, the access log, the pid file and
 * the signals.
 *
 *   SIGTERM, SIGINT  drain: /ready answers 503 and new generation requests 503 at
 *                    once; requests in flight finish (up to drain_timeout seconds,
 *                    then they are cut off); then server_run returns 0.
 *   SIGHUP           reopens the log and access log (logrotate) and reloads the API
 *                    key file (a bad file keeps the old keys, with a WARN line).
 *
 * Data about API key ids: per-key data keys in <log dir>/cache.keys, sealed prompt
 * logs under <log dir>/prompts (--log-prompts), and DELETE /v1/admin/subjects/ID,
 * which erases one key id's data (server/erase.h) on the loop thread.
 *
 * Threads: the caller's thread runs the libevent loop (connections, parsing, replies);
 * one engine thread (engine/sched.h) owns the forward context; the forward pass's pool
 * workers run inside it. They meet only in the scheduler's queue and the requests.
 *
 * Ownership: borrows the model, tokenizer and config (they outlive server_run).
 * Threading: server_run on the main thread, once at a time.
 */
#ifndef DS_SERVER_SERVER_H
#define DS_SERVER_SERVER_H

#include "base/err.h"
#include "config/config.h"
#include "model/model.h"
#include "model/tokenizer.h"

struct server_params {
    const struct config *cfg; /* host, port, parallel, queue, batch_size, kv_type,
                                 max_body, drain_timeout, api_keys, pid_file, ... */
    const struct model *model;
    const struct tokenizer *tok;
    const char *model_name;   /* the id clients send and /v1/models lists */
    int n_threads;            /* resolved (never 0) */
    int n_ctx;                /* resolved context size per sequence */
};

/* Serves until a SIGTERM/SIGINT drain completes. 0 after a clean drain; ERR_IO when
 * the address cannot be bound, ERR_FORMAT/ERR_IO for a bad key file, ERR_NOMEM. Logs
 * "Server ready on http://HOST:PORT" once requests are accepted. */
int server_run(const struct server_params *p, struct err *err);

#endif
