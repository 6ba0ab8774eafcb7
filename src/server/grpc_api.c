/*
 * grpc_api: listener and connections (nghttp2 on bufferevents), streams (headers,
 * body, responses with trailers), the generation call lifecycle (gate, submit,
 * updates from the engine, deadline, cancel, end), health, and setup.
 *
 * A stream's response goes out through one nghttp2 data provider reading the
 * stream's `out` buffer; it defers when the buffer is empty and is resumed when a
 * message is added. Trailers are submitted from inside the provider once the buffer
 * is empty and the status is known, so they always follow the last message. A call
 * that fails before any message is answered "Trailers-Only" (one HEADERS frame).
 */
#define LOG_MODULE "grpc"
#include "server/grpc_api.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "base/log.h"
#include "engine/generate.h"
#include "proto/deepseek.pb-c.h"
#include "proto/health.pb-c.h"
#include "server/accesslog.h"
#include "server/apierr.h"
#include "server/auth.h"
#include "server/grpc_frame.h"
#include "server/metrics.h"
#include "server/promptlog.h"
#include "server/ratelimit.h"

#define GRPC_CANCELLED 1 /* not in apierr_grpc: no REST kind maps to it */
#define MAX_STREAMS 128  /* SETTINGS_MAX_CONCURRENT_STREAMS per connection */

enum method { M_NONE, M_GENERATE, M_GENERATE_STREAM, M_HEALTH_CHECK, M_HEALTH_WATCH };

struct gstream {
    struct gstream *prev, *next; /* the connection's streams */
    struct conn *c;
    int32_t id;
    enum method m;
    char path[96], auth[600], ctype[64], encoding[32];
    int64_t timeout_ms;
    uint8_t *body;
    size_t body_len, body_cap;
    bool responded;   /* response HEADERS submitted */
    bool answered;    /* final status decided; further input is ignored */
    bool trailers;    /* send trailers when `out` is empty */
    bool deferred;    /* the data provider is waiting for output */
    bool logged;
    struct evbuffer *out;
    int status;       /* grpc-status */
    char msg[300];
    long retry_s;     /* > 0: retry-after trailers */
    int health;       /* Watch: last status sent */
    /* generation call */
    bool call_open;
    struct request *er;
    struct event *deadline;
    struct auth_key_info key;
    bool rl_held;
    long rl_reserved;
    double t0, t_first, t_last;
    bool saw_running;
    int32_t prompt_tokens, completion_tokens;
    enum request_finish finish;
    char *content, *reasoning;
    size_t content_len, reasoning_len;
    char rid[48];
    json_t *plog; /* {"messages": [...]}: the prompt-log record's input; NULL when off */
};

struct conn {
    struct conn *prev, *next;
    struct grpc_api *g;
    struct bufferevent *bev;
    nghttp2_session *ng;
    struct gstream *streams;
    char peer[64];
};

struct grpc_api {
    struct grpc_api_deps d;
    struct evconnlistener *lis;
    struct conn *conns;
    struct event *wake;
    pthread_mutex_t mu; /* guards ready[] (engine thread pushes, loop pops) */
    struct request **ready;
    size_t n_ready, cap_ready;
    int n_calls;
    bool is_ready, draining;
    int32_t think_start, think_end;
    unsigned long long seq;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The HTTP status a gRPC status stands for in metrics and the access log. */
static int http_of(int code)
{
    static const int map[17] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
                                400, 409, 400, 501, 500, 503, 500, 401};
    return code >= 0 && code < 17 ? map[code] : 500;
}

/* ------------------------------------------------------------ sending */

static void conn_free(struct conn *c);

/* Writes what nghttp2 has to send; closes the connection when it is over. Returns
 * -1 when c has been freed. */
static int conn_flush(struct conn *c)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->ng, &data);
        if (n < 0) {
            LOG(INFO, "%s: HTTP/2 send failed: %s", c->peer, nghttp2_strerror((int)n));
            conn_free(c);
            return -1;
        }
        if (n == 0)
            break;
        bufferevent_write(c->bev, data, (size_t)n);
    }
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_free(c);
        return -1;
    }
    return 0;
}

static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud);

static void push(struct gstream *s)
{
    if (s->deferred) {
        s->deferred = false;
        nghttp2_session_resume_data(s->c->ng, s->id);
    }
}

/* :status 200 and content-type, with the body to follow. */
static int respond(struct gstream *s)
{
    if (s->responded)
        return 0;
    nghttp2_nv h[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
         NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read};
    s->responded = true;
    return nghttp2_submit_response(s->c->ng, s->id, h, 2, &prd);
}

static void stream_log(struct gstream *s);

/* The final status: trailers after the messages already queued, or Trailers-Only. */
static void finish(struct gstream *s, int code, const char *msg)
{
    if (s->answered)
        return;
    s->answered = true;
    s->status = code;
    if (code == APIERR_GRPC_UNAVAILABLE && s->retry_s <= 0)
        s->retry_s = 1; /* busy, loading, draining: as REST's 503 with Retry-After: 1 */
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "");
    if (s->responded) {
        s->trailers = true;
        push(s);
    } else {
        char st[16], enc[sizeof s->msg * 3], ra[24], pb[32];
        snprintf(st, sizeof st, "%d", code);
        grpc_frame_percent_encode(s->msg, enc, sizeof enc);
        snprintf(ra, sizeof ra, "%ld", s->retry_s);
        snprintf(pb, sizeof pb, "%ld", s->retry_s * 1000);
        nghttp2_nv h[6] = {
            {(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
            {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
            {(uint8_t *)"grpc-status", (uint8_t *)st, 11, strlen(st), 0},
            {(uint8_t *)"grpc-message", (uint8_t *)enc, 12, strlen(enc), 0},
            {(uint8_t *)"retry-after", (uint8_t *)ra, 11, strlen(ra), 0},
            {(uint8_t *)"grpc-retry-pushback-ms", (uint8_t *)pb, 22, strlen(pb), 0},
        };
        s->responded = true;
        nghttp2_submit_response(s->c->ng, s->id, h, s->retry_s > 0 ? 6 : 4, NULL);
    }
    if (!s->call_open)
        stream_log(s);
}

static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct gstream *s = src->ptr;
    (void)ud;
    int n = evbuffer_remove(s->out, buf, length);
    if (n > 0)
        return n;
    if (!s->trailers) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    char st[16], enc[sizeof s->msg * 3], ra[24], pb[32];
    snprintf(st, sizeof st, "%d", s->status);
    grpc_frame_percent_encode(s->msg, enc, sizeof enc);
    snprintf(ra, sizeof ra, "%ld", s->retry_s);
    snprintf(pb, sizeof pb, "%ld", s->retry_s * 1000);
    nghttp2_nv t[4] = {
        {(uint8_t *)"grpc-status", (uint8_t *)st, 11, strlen(st), 0},
        {(uint8_t *)"grpc-message", (uint8_t *)enc, 12, strlen(enc), 0},
        {(uint8_t *)"retry-after", (uint8_t *)ra, 11, strlen(ra), 0},
        {(uint8_t *)"grpc-retry-pushback-ms", (uint8_t *)pb, 22, strlen(pb), 0},
    };
    s->trailers = false;
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (nghttp2_submit_trailer(ng, id, t, s->retry_s > 0 ? 4 : 2))
        *flags &= ~(uint32_t)NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return 0;
}

/* Queues one message (a ProtobufCMessage). */
static int send_msg(struct gstream *s, const void *msg)
{
    size_t len = 0;
    uint8_t *buf = grpc_frame_pack(msg, &len);
    if (!buf || respond(s) || evbuffer_add(s->out, buf, len)) {
        free(buf);
        return -1;
    }
    free(buf);
    push(s);
    return 0;
}

/* ------------------------------------------------------------ calls */

static void stream_log(struct gstream *s)
{
    if (s->logged)
        return;
    s->logged = true;
    struct grpc_api *g = s->c->g;
    bool gen = s->m == M_GENERATE || s->m == M_GENERATE_STREAM;
    struct accesslog_entry e = {
        .request_id = s->rid[0] ? s->rid : NULL, .key_id = s->key.id[0] ? s->key.id : NULL,
        .protocol = "grpc", .method = "POST", .route = s->path[0] ? s->path : NULL,
        .status = http_of(s->status), .prompt_tokens = gen ? s->prompt_tokens : -1,
        .completion_tokens = gen ? s->completion_tokens : -1, .cached_tokens = -1,
        .queue_ms = -1, .total_ms = s->t0 > 0 ? (now_s() - s->t0) * 1e3 : -1,
        .finish_reason = s->finish ? request_finish_name(s->finish) : NULL,
        .peer = s->c->peer};
    if (s->finish == REQUEST_FINISH_CANCELLED)
        e.finish_reason = "abort";
    accesslog_write(&e);
    if (g->d.metrics)
        metrics_http_request(g->d.metrics, http_of(s->status), "grpc");
}

/* Writes the record of s whose input is in. */
static void prompt_write(struct gstream *s, json_t *in)
{
    json_t *rec = promptlog_record_new(s->rid[0] ? s->rid : "grpc", "grpc", s->path,
                                       s->key.id);
    struct err e = {0};
    if (!rec || json_object_update(rec, in) ||
        json_object_set_new(rec, "output", json_pack("[{s:s%,s:s%,s:s}]", "content",
                                                     s->content ? s->content : "",
                                                     s->content_len, "reasoning",
                                                     s->reasoning ? s->reasoning : "",
                                                     s->reasoning_len, "finish",
                                                     request_finish_name(s->finish))) ||
        json_object_set_new(rec, "status", json_integer(s->status)))
        LOG(WARN, "%s: prompt log record not written: out of memory", s->rid);
    else if (promptlog_append(s->c->g->d.prompts, promptlog_subject(s->key.id), rec, &e))
        LOG(WARN, "%s: prompt log record not written: %s", s->rid, e.msg);
    json_decref(rec);
}

/* The call's sealed prompt-log record, once (call_end, or stream_free for a call
 * refused before it opened). */
static void prompt_log(struct gstream *s)
{
    json_t *in = s->plog;
    s->plog = NULL;
    if (in && s->c->g->d.prompts)
        prompt_write(s, in);
    json_decref(in);
}

/* Ends the generation bookkeeping once: engine request, rate limit, metrics, log. */
static void call_end(struct gstream *s)
{
    struct grpc_api *g = s->c->g;
    if (!s->call_open)
        return;
    s->call_open = false;
    g->n_calls--;
    if (s->deadline)
        event_del(s->deadline);
    if (s->er && s->finish == REQUEST_FINISH_NONE) {
        request_cancel(s->er);
        s->finish = REQUEST_FINISH_CANCELLED;
    }
    request_unref(s->er);
    s->er = NULL;
    struct metrics *m = g->d.metrics;
    if (m && s->finish != REQUEST_FINISH_ERROR) {
        metrics_counter_add(m, METRICS_PROMPT_TOKENS, s->prompt_tokens);
        metrics_counter_add(m, METRICS_GENERATION_TOKENS, s->completion_tokens);
        metrics_request_finished(m, s->finish == REQUEST_FINISH_CANCELLED
                                        ? "abort" : request_finish_name(s->finish));
    }
    if (m && s->status == 0)
        metrics_observe(m, METRICS_E2E, now_s() - s->t0);
    if (s->rl_held && g->d.rl)
        ratelimit_release(g->d.rl, s->key.id, s->rl_reserved,
                          (long)s->prompt_tokens + s->completion_tokens);
    s->rl_held = false;
    prompt_log(s);
    stream_log(s);
}

static void fail_call(struct gstream *s, int code, const char *msg)
{
    finish(s, code, msg);
    call_end(s);
}

static void api_notify(struct request *r, void *arg)
{
    struct grpc_api *g = arg;
    pthread_mutex_lock(&g->mu);
    if (g->n_ready == g->cap_ready) {
        size_t cap = g->cap_ready ? g->cap_ready * 2 : 64;
        struct request **p = realloc(g->ready, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&g->mu);
            LOG(ERROR, "out of memory queueing an engine event");
            return;
        }
        g->ready = p;
        g->cap_ready = cap;
    }
    request_ref(r);
    g->ready[g->n_ready++] = r;
    pthread_mutex_unlock(&g->mu);
    event_active(g->wake, EV_READ, 0);
}

static int append(char **p, size_t *len, const char *s, size_t n)
{
    if (!n)
        return 0;
    char *q = realloc(*p, *len + n + 1);
    if (!q)
        return -1;
    memcpy(q + *len, s, n);
    *len += n;
    q[*len] = '\0';
    *p = q;
    return 0;
}

static void metrics_times(struct gstream *s, const struct request_output *o)
{
    struct metrics *m = s->c->g->d.metrics;
    double t = now_s();
    if (o->state != REQUEST_QUEUED && !s->saw_running) {
        s->saw_running = true;
        if (m)
            metrics_observe(m, METRICS_QUEUE_TIME, t - s->t0);
    }
    if (o->content_len || o->reasoning_len) {
        if (m)
            metrics_observe(m, s->t_first == 0 ? METRICS_TTFT : METRICS_ITL,
                            t - (s->t_first == 0 ? s->t0 : s->t_last));
        if (s->t_first == 0)
            s->t_first = t;
        s->t_last = t;
    }
}

static void call_done(struct gstream *s, const struct request_output *o)
{
    s->finish = o->finish;
    s->prompt_tokens = o->prompt_tokens;
    s->completion_tokens = o->completion_tokens;
    if (o->finish == REQUEST_FINISH_ERROR) {
        char msg[ERR_MSG_MAX + 32];
        snprintf(msg, sizeof msg, "generation failed: %s", o->error);
        fail_call(s, APIERR_GRPC_INTERNAL, msg);
        return;
    }
    GenerateResponse r = GENERATE_RESPONSE__INIT;
    r.token_count = o->completion_tokens;
    r.prompt_tokens = o->prompt_tokens;
    r.finish_reason = (char *)request_finish_name(o->finish);
    if (s->m == M_GENERATE) {
        r.text = s->content ? s->content : (char *)"";
        r.reasoning = s->reasoning ? s->reasoning : (char *)"";
    }
    if (send_msg(s, &r))
        fail_call(s, APIERR_GRPC_INTERNAL, "out of memory");
    else
        fail_call(s, 0, NULL);
}

/* New output for s's request: pass it on, or keep it for the unary reply. */
static void call_update(struct gstream *s)
{
    struct request_output o;
    if (!s->er || request_take(s->er, &o))
        return;
    metrics_times(s, &o);
    int bad = 0;
    if (s->m == M_GENERATE_STREAM && (o.content_len || o.reasoning_len)) {
        GenerateResponse r = GENERATE_RESPONSE__INIT;
        r.text = o.content ? o.content : (char *)"";
        r.reasoning = o.reasoning ? o.reasoning : (char *)"";
        bad = send_msg(s, &r);
    }
    if (!bad && (s->m == M_GENERATE || s->plog)) {
        bad = append(&s->content, &s->content_len, o.content, o.content_len) ||
              append(&s->reasoning, &s->reasoning_len, o.reasoning, o.reasoning_len);
    }
    if (bad)
        fail_call(s, APIERR_GRPC_INTERNAL, "out of memory");
    else if (o.state == REQUEST_DONE)
        call_done(s, &o);
    request_output_free(&o);
}

static struct gstream *find_stream(struct grpc_api *g, struct request *r)
{
    for (struct conn *c = g->conns; c; c = c->next)
        for (struct gstream *s = c->streams; s; s = s->next)
            if (s->er == r)
                return s;
    return NULL;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct grpc_api *g = arg;
    (void)fd;
    (void)what;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        struct request *r = g->n_ready ? g->ready[--g->n_ready] : NULL;
        pthread_mutex_unlock(&g->mu);
        if (!r)
            break;
        struct gstream *s = find_stream(g, r);
        if (s) {
            call_update(s);
            conn_flush(s->c); /* s and its connection may be gone after this */
        }
        request_unref(r);
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct gstream *s = arg;
    (void)fd;
    (void)what;
    char msg[96];
    snprintf(msg, sizeof msg, "deadline exceeded: the generation was stopped after %lld ms",
             (long long)s->timeout_ms);
    LOG(INFO, "%s: %s", s->rid, msg);
    if (s->er)
        request_cancel(s->er);
    s->finish = REQUEST_FINISH_CANCELLED;
    fail_call(s, APIERR_GRPC_DEADLINE_EXCEEDED, msg);
    conn_flush(s->c);
}

/* ------------------------------------------------------------ generation */

/* The prompt leaves the model inside <think> when its last think tag opens one. */
static bool in_reasoning(const struct grpc_api *g, const int32_t *ids, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        if (ids[i] == g->think_end)
            return false;
        if (ids[i] == g->think_start)
            return true;
    }
    return false;
}

/* Key, availability. False when the call has been answered. */
static bool gen_gate(struct gstream *s)
{
    struct grpc_api *g = s->c->g;
    if (g->d.auth) {
        enum auth_result r = auth_check(g->d.auth, s->auth[0] ? s->auth : NULL, &s->key);
        if (r != AUTH_OK) {
            finish(s, APIERR_GRPC_UNAUTHENTICATED,
                   r == AUTH_MISSING ? "missing API key: send metadata authorization: "
                                       "Bearer KEY" : "invalid API key");
            return false;
        }
    }
    if (g->draining || !g->is_ready) {
        finish(s, APIERR_GRPC_UNAVAILABLE,
               g->draining ? "the server is shutting down" : "the model is loading");
        return false;
    }
    return true;
}

static bool rate_ok(struct gstream *s, long estimate)
{
    struct grpc_api *g = s->c->g;
    if (!g->d.rl)
        return true;
    struct ratelimit_limits lim = {s->key.rpm, s->key.tpm, s->key.concurrent};
    struct ratelimit_decision d;
    ratelimit_acquire(g->d.rl, s->key.id, &lim, estimate, &d);
    if (d.allowed) {
        s->rl_held = true;
        s->rl_reserved = d.reserved_tokens;
        return true;
    }
    if (g->d.metrics)
        metrics_rate_limited(g->d.metrics, ratelimit_reason_name(d.reason));
    char msg[160];
    snprintf(msg, sizeof msg, "rate limit exceeded (%s per minute or in flight); retry after "
             "%lds", ratelimit_reason_name(d.reason), d.retry_after_s);
    s->retry_s = d.retry_after_s > 0 ? d.retry_after_s : 1;
    finish(s, APIERR_GRPC_RESOURCE_EXHAUSTED, msg);
    return false;
}

/* Makes and submits the engine request; takes ids. */
static void gen_submit(struct gstream *s, struct request_params *rp, int32_t *ids, size_t n)
{
    struct grpc_api *g = s->c->g;
    bool max_given = rp->max_tokens > 0;
    long estimate = (long)n + (max_given ? rp->max_tokens : g->d.n_ctx);
    if (!max_given)
        rp->max_tokens = g->d.n_ctx - (int32_t)n > 0 ? g->d.n_ctx - (int32_t)n : 1;
    if (!rate_ok(s, estimate)) {
        free(ids);
        return;
    }
    snprintf(s->rid, sizeof s->rid, "grpc-%llx", ++g->seq);
    s->call_open = true;
    g->n_calls++;
    struct err e = {0};
    enum sched_reject why = SCHED_ACCEPTED;
    if (request_new(s->rid, ids, n, rp, &s->er, &e)) {
        s->finish = REQUEST_FINISH_ERROR;
        fail_call(s, apierr_grpc_status(apierr_from_err(e.code)), e.msg);
        return;
    }
    request_set_notify(s->er, api_notify, g);
    if (sched_submit(g->d.sched, s->er, &why, &e)) {
        s->finish = REQUEST_FINISH_CANCELLED;
        if (why == SCHED_REJECT_QUEUE_FULL && g->d.metrics)
            metrics_counter_add(g->d.metrics, METRICS_REJECTED_OVERLOAD, 1);
        fail_call(s, why == SCHED_REJECT_TOO_LONG ? APIERR_GRPC_INVALID_ARGUMENT
                                                  : APIERR_GRPC_UNAVAILABLE, e.msg);
        return;
    }
    if (s->timeout_ms > 0 && (s->deadline = evtimer_new(g->d.base, on_deadline, s))) {
        struct timeval tv = {(time_t)(s->timeout_ms / 1000),
                             (suseconds_t)(s->timeout_ms % 1000) * 1000};
        evtimer_add(s->deadline, &tv);
    }
    if (s->m == M_GENERATE_STREAM)
        respond(s); /* headers now: the client sees the call is accepted */
}

/* {"messages": [{role, content}...]} of a decoded request, for the prompt log. */
static json_t *prompt_input(const struct grpc_frame_gen *gen)
{
    static const char *const roles[] = {"system", "user", "assistant"};
    json_t *msgs = json_array();
    for (size_t i = 0; msgs && i < gen->n_msgs; i++) {
        unsigned r = (unsigned)gen->msgs[i].role;
        json_array_append_new(msgs, json_pack("{ssss}", "role", r < 3 ? roles[r] : "user",
                                              "content", gen->msgs[i].content));
    }
    return msgs ? json_pack("{so}", "messages", msgs) : NULL;
}

static void gen_start(struct gstream *s, const uint8_t *msg, size_t len)
{
    struct grpc_api *g = s->c->g;
    s->t0 = now_s();
    if (!gen_gate(s))
        return;
    struct grpc_frame_defaults defs = {(float)g->d.temperature, (float)g->d.top_p};
    struct grpc_frame_gen gen;
    struct err e = {0};
    if (grpc_frame_decode_generate(msg, len, &defs, &gen, &e)) {
        finish(s, e.code == ERR_FORMAT ? APIERR_GRPC_INTERNAL : e.code == ERR_NOMEM
                  ? APIERR_GRPC_RESOURCE_EXHAUSTED : APIERR_GRPC_INVALID_ARGUMENT, e.msg);
        return;
    }
    if (gen.model[0] && strcmp(gen.model, g->d.model_name)) {
        char m[256];
        snprintf(m, sizeof m, "model `%.100s` does not exist; this server serves `%.60s`",
                 gen.model, g->d.model_name);
        finish(s, APIERR_GRPC_NOT_FOUND, m);
        grpc_frame_gen_free(&gen);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (generate_encode_chat(g->d.tok, g->d.chat_template, gen.msgs, gen.n_msgs, &ids, &n,
                             &e)) {
        finish(s, e.code == ERR_NOMEM ? APIERR_GRPC_INTERNAL : APIERR_GRPC_INVALID_ARGUMENT,
               e.msg);
        grpc_frame_gen_free(&gen);
        return;
    }
    if (g->think_end >= 0) {
        gen.rp.think_end = g->think_end;
        gen.rp.think_start = g->think_start;
        gen.rp.in_reasoning = in_reasoning(g, ids, n);
    }
    if (s->key.id[0])
        snprintf(gen.rp.cache_tag, sizeof gen.rp.cache_tag, "%s", s->key.id);
    if (g->d.prompts)
        s->plog = prompt_input(&gen);
    gen_submit(s, &gen.rp, ids, n); /* request_new copies the stop strings */
    grpc_frame_gen_free(&gen);
}

/* ------------------------------------------------------------ health */

static int health_status(const struct grpc_api *g, const char *service)
{
    if (service[0] && strcmp(service, "DeepSeekService"))
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    return g->is_ready && !g->draining
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void health_send(struct gstream *s, int st)
{
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
    s->health = st;
    if (send_msg(s, &r))
        finish(s, APIERR_GRPC_INTERNAL, "out of memory");
}

static void health_start(struct gstream *s, const uint8_t *msg, size_t len)
{
    char service[128];
    struct err e = {0};
    if (grpc_frame_decode_health(msg, len, service, sizeof service, &e)) {
        finish(s, APIERR_GRPC_INTERNAL, e.msg);
        return;
    }
    int st = health_status(s->c->g, service);
    if (s->m == M_HEALTH_WATCH) {
        s->health = -1;
        health_send(s, st);
        s->health = st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
                        ? -2 : st; /* -2: never changes */
        return;
    }
    if (st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN) {
        finish(s, APIERR_GRPC_NOT_FOUND, "unknown service");
        return;
    }
    health_send(s, st);
    finish(s, 0, NULL);
}

/* Tells every Watch stream of a change. */
static void health_changed(struct grpc_api *g)
{
    int st = health_status(g, "");
    struct conn *next;
    for (struct conn *c = g->conns; c; c = next) {
        next = c->next;
        for (struct gstream *s = c->streams; s; s = s->next)
            if (s->m == M_HEALTH_WATCH && !s->answered && s->health >= 0 && s->health != st)
                health_send(s, st);
        conn_flush(c);
    }
}

/* ------------------------------------------------------------ streams */

static enum method method_of(const char *path)
{
    static const struct { const char *path; enum method m; } t[] = {
        {"/DeepSeekService/GenerateText", M_GENERATE},
        {"/DeepSeekService/GenerateTextStream", M_GENERATE_STREAM},
        {"/grpc.health.v1.Health/Check", M_HEALTH_CHECK},
        {"/grpc.health.v1.Health/Watch", M_HEALTH_WATCH},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(path, t[i].path))
            return t[i].m;
    return M_NONE;
}

/* The request is complete (END_STREAM): route it. */
static void dispatch(struct gstream *s)
{
    struct grpc_api *g = s->c->g;
    if (s->answered)
        return;
    if (strncmp(s->ctype, "application/grpc", 16)) {
        finish(s, APIERR_GRPC_INTERNAL, "content-type must be application/grpc");
        return;
    }
    s->m = method_of(s->path);
    if (s->m == M_NONE) {
        char m[160];
        snprintf(m, sizeof m, "unknown method %.96s", s->path);
        finish(s, APIERR_GRPC_UNIMPLEMENTED, m);
        return;
    }
    if (s->encoding[0] && strcmp(s->encoding, "identity")) {
        finish(s, APIERR_GRPC_UNIMPLEMENTED, "grpc-encoding: only identity is supported");
        return;
    }
    const uint8_t *msg;
    size_t len;
    struct err e = {0};
    size_t max = g->d.max_message ? g->d.max_message : GRPC_MAX_MESSAGE_DEFAULT;
    if (grpc_frame_parse(s->body, s->body_len, max, &msg, &len, &e)) {
        finish(s, e.code == ERR_RANGE ? APIERR_GRPC_RESOURCE_EXHAUSTED
                  : e.code == ERR_UNSUPPORTED ? APIERR_GRPC_UNIMPLEMENTED
                  : APIERR_GRPC_INTERNAL, e.msg);
        return;
    }
    if (s->m == M_GENERATE || s->m == M_GENERATE_STREAM)
        gen_start(s, msg, len);
    else
        health_start(s, msg, len);
}

static void stream_free(struct gstream *s)
{
    struct conn *c = s->c;
    if (s->call_open && !s->answered)
        s->status = GRPC_CANCELLED;
    call_end(s);
    if (!s->logged && s->path[0]) { /* closed before an answer: the client cancelled */
        s->status = GRPC_CANCELLED;
        stream_log(s);
    }
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->deadline)
        event_free(s->deadline);
    if (s->out)
        evbuffer_free(s->out);
    free(s->body);
    prompt_log(s);
    free(s->content);
    free(s->reasoning);
    free(s);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct conn *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct gstream *s = calloc(1, sizeof *s);
    if (!s || !(s->out = evbuffer_new())) {
        free(s);
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    s->c = c;
    s->id = f->hd.stream_id;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    nghttp2_session_set_stream_user_data(ng, s->id, s);
    return 0;
}

static void copy_hdr(char *dst, size_t size, const uint8_t *v, size_t n)
{
    if (n >= size)
        n = size - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    struct gstream *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!s || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    static const struct { const char *n; size_t off, size; } keep[] = {
        {":path", offsetof(struct gstream, path), sizeof ((struct gstream *)0)->path},
        {"authorization", offsetof(struct gstream, auth), sizeof ((struct gstream *)0)->auth},
        {"content-type", offsetof(struct gstream, ctype), sizeof ((struct gstream *)0)->ctype},
        {"grpc-encoding", offsetof(struct gstream, encoding),
         sizeof ((struct gstream *)0)->encoding},
    };
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (nlen == strlen(keep[i].n) && !memcmp(name, keep[i].n, nlen))
            copy_hdr((char *)s + keep[i].off, keep[i].size, value, vlen);
    if (nlen == 12 && !memcmp(name, "grpc-timeout", 12)) {
        char v[16];
        copy_hdr(v, sizeof v, value, vlen);
        if (grpc_frame_timeout_ms(v, &s->timeout_ms))
            s->timeout_ms = 0; /* a malformed timeout is ignored, as grpc does */
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    struct conn *c = ud;
    (void)flags;
    struct gstream *s = nghttp2_session_get_stream_user_data(ng, id);
    if (!s || s->answered)
        return 0;
    size_t max = c->g->d.max_message ? c->g->d.max_message : GRPC_MAX_MESSAGE_DEFAULT;
    if (s->body_len + len > max + GRPC_FRAME_PREFIX) { /* answer now, drop the rest */
        char m[128];
        snprintf(m, sizeof m, "grpc: request message is larger than the limit of %zu bytes",
                 max);
        finish(s, APIERR_GRPC_RESOURCE_EXHAUSTED, m);
        return 0;
    }
    if (s->body_len + len > s->body_cap) {
        size_t cap = s->body_cap ? s->body_cap : 256;
        while (cap < s->body_len + len)
            cap *= 2;
        uint8_t *p = realloc(s->body, cap);
        if (!p) {
            finish(s, APIERR_GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return 0;
        }
        s->body = p;
        s->body_cap = cap;
    }
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct gstream *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s)
        dispatch(s);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    (void)ud;
    (void)code;
    struct gstream *s = nghttp2_session_get_stream_user_data(ng, id);
    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    if (s->call_open)
        LOG(INFO, "%s: the client cancelled the call; freeing its slot", s->rid);
    stream_free(s);
    return 0;
}

/* ------------------------------------------------------------ connections */

static void conn_free(struct conn *c)
{
    struct grpc_api *g = c->g;
    while (c->streams) {
        nghttp2_session_set_stream_user_data(c->ng, c->streams->id, NULL);
        stream_free(c->streams);
    }
    nghttp2_session_del(c->ng);
    bufferevent_free(c->bev);
    if (c->prev)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t rv = nghttp2_session_mem_recv(c->ng, v.iov_base, v.iov_len);
        if (rv < 0) {
            LOG(INFO, "%s: HTTP/2 error, closing the connection: %s", c->peer,
                nghttp2_strerror((int)rv));
            conn_free(c);
            return;
        }
        evbuffer_drain(in, v.iov_len);
    }
    conn_flush(c);
}

static void conn_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_flush(arg); /* closes a finished session once its output is out */
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(arg);
}

static int conn_session(struct conn *c)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb))
        return -1;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    int rv = nghttp2_session_server_new(&c->ng, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rv)
        return -1;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS},
                                   {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384}};
    return nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 2) ? -1 : 0;
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct grpc_api *g = arg;
    (void)lis;
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->g = g;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* small replies at once */
    char host[INET6_ADDRSTRLEN] = ""; /* numeric: always fits */
    if (getnameinfo(sa, (socklen_t)salen, host, sizeof host, NULL, 0, NI_NUMERICHOST) == 0)
        snprintf(c->peer, sizeof c->peer, "%s", host);
    c->bev = bufferevent_socket_new(g->d.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev || conn_session(c)) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->ng)
            nghttp2_session_del(c->ng);
        free(c);
        return;
    }
    c->next = g->conns;
    if (g->conns)
        g->conns->prev = c;
    g->conns = c;
    bufferevent_setcb(c->bev, conn_read, conn_write, conn_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    conn_flush(c);
}

/* ------------------------------------------------------------ setup */

static int listen_on(struct grpc_api *g, struct err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", g->d.port);
    int rc = getaddrinfo(g->d.host, port, &hints, &ai);
    if (rc)
        return err_set(err, ERR_IO, "grpc: cannot resolve %s: %s", g->d.host,
                       gai_strerror(rc));
    for (struct addrinfo *p = ai; p && !g->lis; p = p->ai_next)
        g->lis = evconnlistener_new_bind(g->d.base, on_accept, g,
                                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
                                         p->ai_addr, (int)p->ai_addrlen);
    freeaddrinfo(ai);
    if (!g->lis)
        return err_set(err, ERR_IO, "grpc: cannot listen on %s:%d", g->d.host, g->d.port);
    return 0;
}

int grpc_api_new(const struct grpc_api_deps *deps, struct grpc_api **out, struct err *err)
{
    *out = NULL;
    struct grpc_api *g = calloc(1, sizeof *g);
    if (!g)
        return err_set(err, ERR_NOMEM, "grpc: out of memory");
    g->d = *deps;
    pthread_mutex_init(&g->mu, NULL);
    g->think_end = tokenizer_find(deps->tok, "</think>");
    g->think_start = tokenizer_find(deps->tok, "<think>");
    g->wake = event_new(deps->base, -1, 0, on_wake, g);
    int rc = g->wake ? listen_on(g, err) : err_set(err, ERR_NOMEM, "grpc: out of memory");
    if (rc) {
        grpc_api_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

void grpc_api_free(struct grpc_api *g)
{
    if (!g)
        return;
    while (g->conns)
        conn_free(g->conns);
    if (g->lis)
        evconnlistener_free(g->lis);
    if (g->wake)
        event_free(g->wake);
    for (size_t i = 0; i < g->n_ready; i++)
        request_unref(g->ready[i]);
    free(g->ready);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void grpc_api_set_ready(struct grpc_api *g, bool ready)
{
    g->is_ready = ready;
    health_changed(g);
}

void grpc_api_drain(struct grpc_api *g)
{
    g->draining = true;
    health_changed(g);
}

int grpc_api_in_flight(const struct grpc_api *g) { return g->n_calls; }
