/*
 * grpc_client: a C client of deepseek-local's gRPC API (proto/deepseek.proto,
 * DeepSeekService) with the same calls, results, retries and cancellation as the
 * REST client in client.h, whose types it shares. `deepseek chat --grpc` is built on
 * it; docs/CLIENT.md "gRPC mode" is the user guide.
 *
 *     struct grpc_client *g = grpc_client_new("127.0.0.1:50051", key, NULL, &err);
 *     struct client_message m[] = {{"user", "Hello"}};
 *     if (grpc_client_chat(g, m, 1, NULL, on_delta, NULL, &r, &err) == 0)
 *         puts(r.content);
 *     client_result_free(&r);
 *     grpc_client_free(g);
 *
 * Transport: libcurl speaking cleartext HTTP/2 with prior knowledge (h2c, as the
 * server listens; libcurl must be built with nghttp2, checked at grpc_client_new).
 * A call is one POST to /DeepSeekService/GenerateText (unary) or
 * /DeepSeekService/GenerateTextStream (params->stream) with content-type
 * application/grpc, te: trailers, authorization: Bearer KEY and, when opts.timeout_ms
 * is set, grpc-timeout. The body is one length-prefixed GenerateRequest; the answer's
 * messages are parsed as they arrive (grpc_wire.h) and the status is read from the
 * trailers (or the headers of a Trailers-Only answer). Streaming hands each
 * GenerateResponse's reasoning, then its text, to the delta callback.
 *
 * Request mapping (proto3 cannot tell 0 from unset, and 0 means "the server's
 * default"): every call sends `messages` (so system prompts and history work);
 * temperature 0 is sent as top_k = 1 (greedy, the same tokens as REST's temperature
 * 0); temperature < 0, top_p < 0 and max_tokens 0 are left at 0; a seed of 0 cannot
 * be sent and is refused (ERR_INVALID) rather than silently made random.
 *
 * Retries: the policy of client.h (struct client_retry: attempts, back-off through
 * client_backoff, the server's hint honoured up to retry_after_max_s). Retried:
 * connection errors (gRPC calls them UNAVAILABLE), status UNAVAILABLE (queue full,
 * loading, draining, or an HTTP 429/502/503/504 from a proxy) and RESOURCE_EXHAUSTED
 * (rate limit). The server's hint is the longest of the trailers retry-after (seconds
 * or an HTTP date), retry-after-ms and grpc-retry-pushback-ms; a negative
 * grpc-retry-pushback-ms means "do not retry" (grpc's retry design, A6). Every other
 * status fails at once. A stream that has delivered text is never retried.
 *
 * Errors are one line naming the gRPC status: "gRPC UNAUTHENTICATED (16): invalid API
 * key", "gRPC UNAVAILABLE (14): 127.0.0.1:50051: Failed to connect ... (3 attempts)";
 * res->error_code holds the status name ("" on success), res->http_status the HTTP
 * status (0 without an answer). Return codes as client_chat: ERR_IO (connection,
 * UNAVAILABLE, RESOURCE_EXHAUSTED, INTERNAL and other server-side statuses, a broken
 * stream), ERR_INVALID (INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED and other
 * statuses that repeating cannot fix), ERR_FORMAT (not a gRPC answer: a malformed
 * frame or message), ERR_UNSUPPORTED (a compressed message), ERR_NOMEM,
 * CLIENT_ERR_CANCELLED.
 *
 * Options: struct client_opts as for client_new. opts.sleep, when injected, is
 * called with NULL as its client argument (the flag to watch is
 * grpc_client_cancelled, reachable through clock_arg); NULL gives a real sleep that
 * ends within 50 ms of grpc_client_cancel.
 *
 * Ownership: owns copies of the target and key (the key wiped at free) and one curl
 * handle kept between calls so the HTTP/2 connection is reused (with libcurl 8.0.0
 * or later: older ones break a reused prior-knowledge connection, curl issue 10634,
 * so there each call connects afresh). Messages and params
 * are borrowed for the call; results own their strings (client_result_free).
 * Threading: one thread calls a client at a time; grpc_client_cancel may be called
 * from any thread or a signal handler (async-signal-safe). Never prints or logs.
 */
#ifndef DS_CLIENT_GRPC_CLIENT_H
#define DS_CLIENT_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "client/client.h"

#define GRPC_CLIENT_DEFAULT_PORT 50051

struct grpc_client;

/* A client of the server at target: "host", "host:port", "[v6addr]:port", or the
 * same after "http://" (a trailing "/" allowed); no port means 50051. api_key NULL
 * or "" sends no authorization. opts NULL: client_opts_default. ERR_INVALID (empty
 * or malformed target, a path, bad retry settings), ERR_UNSUPPORTED ("https://": the
 * server speaks cleartext only; libcurl without HTTP/2), ERR_NOMEM; NULL then. */
struct grpc_client *grpc_client_new(const char *target, const char *api_key,
                                    const struct client_opts *opts, struct err *e);
void grpc_client_free(struct grpc_client *g);

/* "http://host:port": where calls go (borrowed from g). */
const char *grpc_client_url(const struct grpc_client *g);

/* GenerateText (or GenerateTextStream when p->stream) with n messages, as
 * client_chat: on_delta may be NULL; on 0 *res holds the answer (content, reasoning
 * or NULL, finish_reason, prompt_tokens, completion_tokens; reasoning_tokens -1);
 * on error *res holds http_status, attempts and error_code, e the message. Always
 * call client_result_free afterwards. */
int grpc_client_chat(struct grpc_client *g, const struct client_message *msgs, size_t n,
                     const struct client_params *p, client_delta_fn on_delta, void *user,
                     struct client_result *res, struct err *e);

/* Stops the call in progress (or the next one). Async-signal-safe. */
void grpc_client_cancel(struct grpc_client *g);

/* True once grpc_client_cancel was called and the call has not yet returned. */
bool grpc_client_cancelled(const struct grpc_client *g);

#endif
