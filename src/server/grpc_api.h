/*
 * grpc_api: the gRPC front end: cleartext HTTP/2 with prior knowledge (nghttp2, one
 * server session per connection, on bufferevents of the server's event base) and
 * protobuf-c messages (proto/deepseek.proto, proto/health.proto).
 *
 *   /DeepSeekService/GenerateText         unary: the whole text and its token count
 *   /DeepSeekService/GenerateTextStream   server streaming: one message per piece
 *   /grpc.health.v1.Health/Check, Watch   SERVING while ready, NOT_SERVING otherwise
 *
 * Same engine queue, keys, rate limits, metrics (protocol="grpc") and access log as
 * the REST API (http_api.h), and the same sealed prompt-log records when
 * deps->prompts is set (one per generation call that passed validation, written when
 * it ends). Status codes and trailers are in docs/API.md "gRPC".
 * A malformed frame or message ends its stream with an error status; an HTTP/2
 * protocol error ends its connection; neither ever the process.
 *
 * Ownership: borrows everything in struct grpc_api_deps; owns its listener, its
 * connections and their streams; each generation stream holds a reference on its
 * engine request. Threading: every function on the event loop thread; the notify
 * callback it installs on requests runs on the engine thread and only queues the
 * request and activates a wake event (as http_api does).
 */
#ifndef DS_SERVER_GRPC_API_H
#define DS_SERVER_GRPC_API_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "engine/sched.h"
#include "model/tokenizer.h"

struct event_base;
struct metrics;
struct auth;
struct ratelimit;
struct promptlog;

struct grpc_api_deps {
    struct event_base *base;
    const char *host;          /* listen address */
    int port;                  /* 1..65535 */
    struct sched *sched;
    const struct tokenizer *tok;
    const char *chat_template; /* --chat-template ("" = the model's own) */
    const char *model_name;
    struct metrics *metrics;   /* may be NULL */
    struct auth *auth;         /* NULL: no key required */
    struct ratelimit *rl;      /* may be NULL */
    size_t max_message;        /* bytes of one request message (0 = 4 MiB) */
    int n_ctx;
    double temperature, top_p; /* defaults for fields a request leaves at 0 */
    struct promptlog *prompts; /* --log-prompts (server/promptlog.h); NULL: off */
};

struct grpc_api;

/* Binds host:port and starts accepting. ERR_IO when the address cannot be bound. */
int grpc_api_new(const struct grpc_api_deps *deps, struct grpc_api **out, struct err *err);
/* Cancels every open call, closes every connection, frees. NULL ok. */
void grpc_api_free(struct grpc_api *g);

/* Readiness (Health says SERVING once ready and not draining; Watch streams are told
 * of each change). Drain refuses new generation calls with UNAVAILABLE for good. */
void grpc_api_set_ready(struct grpc_api *g, bool ready);
void grpc_api_drain(struct grpc_api *g);
/* Generation calls still open. */
int grpc_api_in_flight(const struct grpc_api *g);

#endif
