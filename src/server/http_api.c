/*
 * http_api: routes, calls and their replies. Layout: plumbing (replies, errors, the
 * wake list), request parsing (JSON -> request_params, messages -> prompt ids), the
 * call lifecycle (submit, updates from the engine, SSE chunks, the final body, end),
 * the route handlers, and setup.
 */
#define LOG_MODULE "http"
#include "server/http_api.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/log.h"
#include "engine/generate.h"
#include "engine/stop.h"
#include "model/chat.h"
#include "server/accesslog.h"
#include "server/apierr.h"
#include "server/auth.h"
#include "server/erase.h"
#include "server/metrics.h"
#include "server/promptlog.h"
#include "server/ratelimit.h"
#include "server/rcache.h"

#define CALL_MAX_CHOICES 8       /* n and /v1/completions prompt lists */
#define KEEPALIVE_SECONDS 2      /* ": keep-alive" while a stream waits in the queue */
#define RETRY_AFTER_BUSY "1"     /* seconds, on 503 queue full / draining */

struct textacc {
    char *p;
    size_t len;
};

struct choice {
    struct request *er;
    bool done, role_sent;
    enum request_finish finish;
    struct textacc content, reasoning;
    int32_t prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens;
    char error[ERR_MSG_MAX];
};

struct call {
    struct call *prev, *next;
    struct http_api *api;
    struct evhttp_request *req; /* NULL once the client is gone */
    bool chat, stream, include_usage, reasoning_split, reply_started;
    int n_choices;
    struct choice ch[CALL_MAX_CHOICES];
    char id[64];
    long long created;
    double t0, t_first, t_last, t_running;
    bool saw_running;
    struct event *keepalive;
    struct auth_key_info key;
    bool rl_held;
    long rl_reserved;
    const char *route;
    bool cache_hit;   /* served from the response cache: nothing was generated */
    bool cache_store; /* a cacheable miss: store the result when it completes */
    unsigned char cache_key[RCACHE_KEY_BYTES];
    json_t *plog; /* {"messages": ...} or {"prompt": ...}: the prompt-log record's input */
};

struct http_api {
    struct http_api_deps d;
    int32_t think_start, think_end;
    struct event *wake;
    pthread_mutex_t mu; /* guards ready[] (engine thread pushes, loop pops) */
    struct request **ready;
    size_t n_ready, cap_ready;
    struct call *calls; /* open generation calls */
    int n_calls;
    bool is_ready, draining;
    unsigned long long seq;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ replies */

static const char *method_name(struct evhttp_request *req)
{
    enum evhttp_cmd_type m = req ? evhttp_request_get_command(req) : EVHTTP_REQ_POST;
    return m == EVHTTP_REQ_GET ? "GET" : m == EVHTTP_REQ_DELETE ? "DELETE" : "POST";
}

static void access_log(struct http_api *a, struct evhttp_request *req, const char *route,
                       int status, const struct call *c)
{
    struct accesslog_entry e = {.request_id = c ? c->id : NULL,
                                .key_id = c && c->key.id[0] ? c->key.id : NULL,
                                .protocol = "http",
                                .method = method_name(req),
                                .route = route, .status = status, .prompt_tokens = -1,
                                .completion_tokens = -1, .cached_tokens = -1,
                                .queue_ms = -1, .total_ms = -1};
    char peer[64] = "";
    struct evhttp_connection *con = req ? evhttp_request_get_connection(req) : NULL;
    if (con) {
        char *addr = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(con, &addr, &port);
        snprintf(peer, sizeof peer, "%s", addr ? addr : "");
        e.peer = peer;
    }
    if (c) {
        long pt = 0, ct = 0, cached = 0;
        for (int i = 0; i < c->n_choices; i++) {
            pt += c->ch[i].prompt_tokens;
            ct += c->ch[i].completion_tokens;
            cached += c->ch[i].cached_tokens;
        }
        e.prompt_tokens = pt;
        e.completion_tokens = ct;
        e.cached_tokens = cached;
        e.total_ms = (now_s() - c->t0) * 1e3;
        e.queue_ms = c->saw_running ? (c->t_running - c->t0) * 1e3 : -1;
        e.finish_reason = c->n_choices ? request_finish_name(c->ch[0].finish) : NULL;
        if (c->n_choices && c->ch[0].finish == REQUEST_FINISH_CANCELLED)
            e.finish_reason = "abort";
    }
    accesslog_write(&e);
    if (a->d.metrics)
        metrics_http_request(a->d.metrics, status, "http");
}

static void reply_body(struct evhttp_request *req, int status, const char *ctype,
                       const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    struct evbuffer *b = evbuffer_new();
    if (b)
        evbuffer_add(b, body, len);
    evhttp_send_reply(req, status, status < 400 ? "OK" : "Error", b);
    if (b)
        evbuffer_free(b);
}

static void reply_json(struct evhttp_request *req, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (!s) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    reply_body(req, status, "application/json", s, strlen(s));
    free(s);
}

/* Sends an OpenAI error body (with Retry-After on 429/503); no access log line. */
static void send_error(struct http_api *a, struct evhttp_request *req, enum apierr_kind k,
                       const char *param, const char *msg)
{
    size_t len = 0;
    char *body = apierr_body(k, msg, param, &len);
    int status = apierr_status(k);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if ((status == 503 || status == 429) && !evhttp_find_header(h, "Retry-After"))
        evhttp_add_header(h, "Retry-After", RETRY_AFTER_BUSY); /* the limiter's wins */
    if (body)
        reply_body(req, status, "application/json", body, len);
    else
        evhttp_send_error(req, status, NULL);
    free(body);
    if (k == APIERR_OVERLOADED && a->d.metrics)
        metrics_counter_add(a->d.metrics, METRICS_REJECTED_OVERLOAD, 1);
}

/* send_error plus the access log line; route is for the log. */
static void reply_error(struct http_api *a, struct evhttp_request *req, const char *route,
                        enum apierr_kind k, const char *param, const char *msg)
{
    send_error(a, req, k, param, msg);
    access_log(a, req, route, apierr_status(k), NULL);
}

/* ------------------------------------------------ the wake list (two threads) */

/* Engine thread: r has news. Queue it (with a reference) and wake the loop. */
static void api_notify(struct request *r, void *arg)
{
    struct http_api *a = arg;
    pthread_mutex_lock(&a->mu);
    if (a->n_ready == a->cap_ready) {
        size_t cap = a->cap_ready ? a->cap_ready * 2 : 64;
        struct request **p = realloc(a->ready, cap * sizeof *p);
        if (!p) { /* the request is taken at the next wake of another one, or at end */
            pthread_mutex_unlock(&a->mu);
            LOG(ERROR, "out of memory queueing an engine event");
            return;
        }
        a->ready = p;
        a->cap_ready = cap;
    }
    request_ref(r);
    a->ready[a->n_ready++] = r;
    pthread_mutex_unlock(&a->mu);
    event_active(a->wake, EV_READ, 0);
}

/* ------------------------------------------------------------- parsing */

struct parsed {
    struct request_params rp;
    bool stream, include_usage, max_given;
    bool missing; /* the error is a required field left out (400 missing_field) */
    int n;
    const char *param; /* the field an error is about */
    char param_buf[64];
    char msg[ERR_MSG_MAX];
};

static int bad(struct parsed *p, const char *param, const char *detail)
{
    p->param = param;
    snprintf(p->msg, sizeof p->msg, "%s: %.400s", param, detail);
    return -1;
}

static int missing(struct parsed *p, const char *param)
{
    p->missing = true;
    return bad(p, param, "required");
}

static int get_number(json_t *body, const char *key, double *out, struct parsed *p)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return bad(p, key, "expected a number");
    *out = json_number_value(v);
    return 0;
}

static int get_int(json_t *body, const char *key, long long lo, long long hi, long long *out,
                   bool *given, struct parsed *p)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return bad(p, key, "expected an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        char r[96];
        snprintf(r, sizeof r, "%lld is out of range [%lld, %lld]", x, lo, hi);
        return bad(p, key, r);
    }
    *out = x;
    if (given)
        *given = true;
    return 0;
}

static int parse_stop(json_t *body, struct parsed *p)
{
    json_t *v = json_object_get(body, "stop");
    if (!v || json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        v = json_pack("[O]", v);
        json_object_set_new(body, "stop", v); /* body owns it; the strings live as long */
    }
    if (!json_is_array(v))
        return bad(p, "stop", "expected a string or a list of strings");
    if (json_array_size(v) > REQUEST_MAX_STOP)
        return bad(p, "stop", "at most 4 stop strings");
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s) || json_string_length(s) == 0 ||
            json_string_length(s) > STOP_MAX_LEN || strlen(json_string_value(s)) !=
                                                         json_string_length(s))
            return bad(p, "stop",
                       "each stop string must be a non-empty string of at most 256 bytes");
        p->rp.stop[p->rp.n_stop++] = json_string_value(s);
    }
    return 0;
}

static int parse_bool(json_t *body, const char *key, bool *out, struct parsed *p)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return bad(p, key, "expected a boolean");
    *out = json_is_true(v);
    return 0;
}

/* The sampling and stopping fields common to both endpoints. */
static int parse_common(struct http_api *a, json_t *body, struct parsed *p)
{
    struct sampler_params *sp = &p->rp.sampling;
    *sp = sampler_params_default();
    sp->temperature = (float)a->d.temperature;
    sp->top_p = (float)a->d.top_p;
    double d;
    long long x;
    static const struct { const char *key; size_t off; } floats[] = {
        {"temperature", offsetof(struct sampler_params, temperature)},
        {"top_p", offsetof(struct sampler_params, top_p)},
        {"min_p", offsetof(struct sampler_params, min_p)},
        {"presence_penalty", offsetof(struct sampler_params, presence_penalty)},
        {"frequency_penalty", offsetof(struct sampler_params, frequency_penalty)},
        {"repetition_penalty", offsetof(struct sampler_params, repetition_penalty)},
    };
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        d = NAN;
        if (get_number(body, floats[i].key, &d, p))
            return -1;
        if (!isnan(d))
            *(float *)((char *)sp + floats[i].off) = (float)d;
    }
    x = 0;
    if (get_int(body, "top_k", 0, 1 << 30, &x, NULL, p))
        return -1;
    sp->top_k = (int32_t)x;
    if (get_int(body, "seed", INT64_MIN, INT64_MAX, &x, &sp->has_seed, p))
        return -1;
    sp->seed = (uint64_t)x;
    struct err e = {0};
    if (sampler_params_check(sp, &e)) { /* "temperature: 2.5 is out of range [0, 2]" */
        size_t k = strcspn(e.msg, ":");
        snprintf(p->param_buf, sizeof p->param_buf, "%.*s", (int)k, e.msg);
        p->param = p->param_buf;
        snprintf(p->msg, sizeof p->msg, "%s", e.msg);
        return -1;
    }
    long long mt = 0;
    bool mt_given = false;
    if (get_int(body, "max_tokens", 1, 1 << 30, &mt, &mt_given, p) ||
        get_int(body, "max_completion_tokens", 1, 1 << 30, &mt, &mt_given, p))
        return -1;
    p->rp.max_tokens = mt_given ? (int32_t)mt : INT32_MAX;
    p->max_given = mt_given;
    long long n = 1;
    if (get_int(body, "n", 1, CALL_MAX_CHOICES, &n, NULL, p))
        return -1;
    p->n = (int)n;
    if (parse_stop(body, p) || parse_bool(body, "stream", &p->stream, p))
        return -1;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return bad(p, "stream_options", "expected an object");
        if (parse_bool(so, "include_usage", &p->include_usage, p))
            return -1;
    }
    json_t *u = json_object_get(body, "user");
    if (u && !json_is_null(u) && !json_is_string(u))
        return bad(p, "user", "expected a string");
    p->rp.think_start = p->rp.think_end = -1;
    return 0;
}

/* A message's content: a string, or a list of {"type":"text","text":...} parts,
 * joined. Returns a malloc'ed string or NULL (p->msg says why). */
static char *message_text(json_t *content, struct parsed *p)
{
    if (json_is_string(content))
        return strndup(json_string_value(content), json_string_length(content));
    if (!json_is_array(content)) {
        bad(p, "messages", "content must be a string or a list of text parts");
        return NULL;
    }
    size_t cap = 1, len = 0;
    for (size_t i = 0; i < json_array_size(content); i++) {
        json_t *t = json_object_get(json_array_get(content, i), "text");
        const char *type = json_string_value(json_object_get(json_array_get(content, i),
                                                             "type"));
        if (!json_is_string(t) || !type || strcmp(type, "text")) {
            bad(p, "messages", "only text content parts are supported");
            return NULL;
        }
        cap += json_string_length(t);
    }
    char *s = malloc(cap);
    for (size_t i = 0; s && i < json_array_size(content); i++) {
        json_t *t = json_object_get(json_array_get(content, i), "text");
        memcpy(s + len, json_string_value(t), json_string_length(t));
        len += json_string_length(t);
    }
    if (s)
        s[len] = '\0';
    return s;
}

static int parse_role(const char *r, enum chat_role *out)
{
    if (!r)
        return -1;
    if (!strcmp(r, "system") || !strcmp(r, "developer"))
        *out = CHAT_ROLE_SYSTEM;
    else if (!strcmp(r, "user"))
        *out = CHAT_ROLE_USER;
    else if (!strcmp(r, "assistant"))
        *out = CHAT_ROLE_ASSISTANT;
    else
        return -1;
    return 0;
}

/* messages (or the seed's "prompt") to chat_message[]; texts malloc'ed into texts[]. */
static int parse_messages(json_t *body, struct chat_message **msgs, char ***texts, size_t *n,
                          bool *prefix, struct parsed *p)
{
    json_t *m = json_object_get(body, "messages");
    json_t *prompt = json_object_get(body, "prompt");
    *prefix = false;
    if (!m && json_is_string(prompt)) {
        m = json_pack("[{sssO}]", "role", "user", "content", prompt);
        json_object_set_new(body, "messages", m);
    }
    if (!m)
        return missing(p, "messages");
    if (!json_is_array(m) || json_array_size(m) == 0)
        return bad(p, "messages", "expected a non-empty list of messages");
    *n = json_array_size(m);
    *msgs = calloc(*n, sizeof **msgs);
    *texts = calloc(*n, sizeof **texts);
    if (!*msgs || !*texts)
        return bad(p, "messages", "out of memory");
    for (size_t i = 0; i < *n; i++) {
        json_t *mi = json_array_get(m, i);
        if (!json_is_object(mi) ||
            parse_role(json_string_value(json_object_get(mi, "role")), &(*msgs)[i].role))
            return bad(p, "messages",
                       "each message needs a role: system, user or assistant");
        json_t *c = json_object_get(mi, "content");
        if (!c || json_is_null(c))
            c = json_string("");
        else
            json_incref(c);
        (*texts)[i] = message_text(c, p);
        json_decref(c);
        if (!(*texts)[i])
            return -1;
        (*msgs)[i].content = (*texts)[i];
        if (i + 1 == *n && (*msgs)[i].role == CHAT_ROLE_ASSISTANT &&
            json_is_true(json_object_get(mi, "prefix")))
            *prefix = true;
    }
    return 0;
}

/* Renders the chat as generate_encode_chat does (plus DeepSeek's prefix mode) and
 * sets the reasoning split from where the prompt leaves the model. */
static int encode_chat(struct http_api *a, const struct chat_message *msgs, size_t n,
                       bool prefix, struct parsed *p, int32_t **ids, size_t *n_ids,
                       struct err *err)
{
    enum chat_template tmpl;
    const struct tokenizer *t = a->d.tok;
    int rc = chat_template_choose(a->d.chat_template, tokenizer_chat_template(t), &tmpl, err);
    if (rc)
        return rc;
    int32_t bos = tokenizer_bos(t), eos = tokenizer_eos(t);
    struct chat_render_opts o = {.bos = bos >= 0 ? tokenizer_token_text(t, bos) : "",
                                 .eos = eos >= 0 ? tokenizer_token_text(t, eos) : NULL,
                                 .add_generation_prompt = !prefix, .continue_final = prefix};
    char *text = NULL;
    size_t len = 0, n_spans = 0;
    struct chat_span *spans = NULL;
    struct tokenizer_span *plain = NULL;
    rc = chat_render_spans(tmpl, msgs, n, &o, &text, &len, &spans, &n_spans, err);
    if (!rc && n_spans && !(plain = malloc(n_spans * sizeof *plain)))
        rc = err_set(err, ERR_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n_spans; i++)
        plain[i] = (struct tokenizer_span){spans[i].off, spans[i].len};
    if (!rc)
        rc = tokenizer_encode_spans(t, text, len, TOKENIZER_PARSE_SPECIAL, plain, n_spans, ids,
                                    n_ids, err);
    if (!rc && a->think_end >= 0) {
        p->rp.think_end = a->think_end;
        p->rp.think_start = a->think_start;
        p->rp.in_reasoning = chat_starts_in_reasoning(text, len);
    }
    free(plain);
    free(spans);
    free(text);
    return rc;
}

/* ------------------------------------------------------- call lifecycle */

static void call_unlink(struct call *c)
{
    struct http_api *a = c->api;
    if (c->prev)
        c->prev->next = c->next;
    else if (a->calls == c)
        a->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    a->n_calls--;
}

static json_t *json_text(const char *s, size_t n);

/* The call's sealed prompt-log record: its input, what each choice produced, status. */
static void prompt_log(struct call *c, int status)
{
    struct http_api *a = c->api;
    if (!c->plog || !a->d.prompts)
        return;
    json_t *rec = promptlog_record_new(c->id, "http", c->route, c->key.id);
    json_t *out = json_array();
    for (int i = 0; rec && out && i < c->n_choices; i++) {
        const struct choice *ch = &c->ch[i];
        json_array_append_new(out, json_pack("{soso ss}", "content",
                                             json_text(ch->content.p, ch->content.len),
                                             "reasoning",
                                             json_text(ch->reasoning.p, ch->reasoning.len),
                                             "finish", request_finish_name(ch->finish)));
    }
    struct err e = {0};
    if (!rec || !out || json_object_update(rec, c->plog) ||
        json_object_set_new(rec, "output", json_incref(out)) ||
        json_object_set_new(rec, "status", json_integer(status)) ||
        json_object_set_new(rec, "cache", c->cache_hit ? json_string("hit")
                                          : c->cache_store ? json_string("miss")
                                                           : json_null()))
        LOG(WARN, "%s: prompt log record not written: out of memory", c->id);
    else if (promptlog_append(a->d.prompts, promptlog_subject(c->key.id), rec, &e))
        LOG(WARN, "%s: prompt log record not written: %s", c->id, e.msg);
    json_decref(out);
    json_decref(rec);
}

/* Releases everything; the reply has been sent (or the client is gone). */
static void call_free(struct call *c, int status)
{
    struct http_api *a = c->api;
    if (c->req) {
        struct evhttp_connection *con = evhttp_request_get_connection(c->req);
        if (con)
            evhttp_connection_set_closecb(con, NULL, NULL);
    }
    long used = 0;
    for (int i = 0; i < c->n_choices && !c->cache_hit; i++) {
        used += c->ch[i].prompt_tokens + c->ch[i].completion_tokens;
        bool counted = c->ch[i].done || status == 499; /* 499: the client left (abort) */
        if (a->d.metrics && counted && c->ch[i].finish != REQUEST_FINISH_ERROR) {
            metrics_counter_add(a->d.metrics, METRICS_PREFIX_CACHE_QUERIES,
                                c->ch[i].prompt_tokens);
            metrics_counter_add(a->d.metrics, METRICS_PREFIX_CACHE_HITS,
                                c->ch[i].cached_tokens);
            metrics_counter_add(a->d.metrics, METRICS_PROMPT_TOKENS, c->ch[i].prompt_tokens);
            metrics_counter_add(a->d.metrics, METRICS_GENERATION_TOKENS,
                                c->ch[i].completion_tokens);
            const char *fin = c->ch[i].finish == REQUEST_FINISH_CANCELLED
                                  ? "abort" : request_finish_name(c->ch[i].finish);
            metrics_request_finished(a->d.metrics, fin);
        }
    }
    if (a->d.metrics && status == 200)
        metrics_observe(a->d.metrics, METRICS_E2E, now_s() - c->t0);
    if (c->rl_held && a->d.rl)
        ratelimit_release(a->d.rl, c->key.id, c->rl_reserved, used);
    prompt_log(c, status);
    access_log(a, c->req, c->route, status, c);
    call_unlink(c);
    if (c->keepalive)
        event_free(c->keepalive);
    for (int i = 0; i < c->n_choices; i++) {
        if (c->ch[i].er && !c->ch[i].done)
            request_cancel(c->ch[i].er);
        request_unref(c->ch[i].er);
        free(c->ch[i].content.p);
        free(c->ch[i].reasoning.p);
    }
    json_decref(c->plog);
    free(c);
}

/* The client went away: stop generating, drop the call. libevent has detached the
 * request from the dead connection; sending on it now only frees it. */
static void call_on_close(struct evhttp_connection *con, void *arg)
{
    struct call *c = arg;
    (void)con;
    LOG(INFO, "%s: client closed the connection", c->id);
    for (int i = 0; i < c->n_choices; i++)
        if (c->ch[i].er && !c->ch[i].done) {
            request_cancel(c->ch[i].er);
            c->ch[i].finish = REQUEST_FINISH_CANCELLED;
        }
    struct evhttp_request *req = c->req;
    evhttp_connection_set_closecb(con, NULL, NULL);
    c->req = NULL;
    call_free(c, 499);
    if (req && evhttp_request_get_connection(req) == NULL)
        evhttp_send_reply_end(req); /* frees a detached request */
}

static int acc_append(struct textacc *t, const char *s, size_t n)
{
    if (!n)
        return 0;
    char *p = realloc(t->p, t->len + n + 1);
    if (!p)
        return -1;
    memcpy(p + t->len, s, n);
    t->len += n;
    p[t->len] = '\0';
    t->p = p;
    return 0;
}

/* A JSON string of model output: valid UTF-8 by construction (detok), but never trust
 * it: invalid bytes become U+FFFD rather than a failed reply. */
static json_t *json_text(const char *s, size_t n)
{
    json_t *j = json_stringn(s ? s : "", s ? n : 0);
    if (j)
        return j;
    char *fixed = malloc(n * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; fixed && i < n;) {
        unsigned char b = (unsigned char)s[i];
        int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        json_t *probe = len && i + (size_t)len <= n ? json_stringn(s + i, (size_t)len) : NULL;
        if (probe) {
            memcpy(fixed + k, s + i, (size_t)len);
            k += (size_t)len;
            i += (size_t)len;
            json_decref(probe);
        } else {
            memcpy(fixed + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    j = fixed ? json_stringn(fixed, k) : json_string("");
    free(fixed);
    return j;
}

static json_t *usage_json(const struct call *c)
{
    long pt = 0, ct = 0, rt = 0, hit = 0;
    for (int i = 0; i < c->n_choices; i++) {
        pt += c->ch[i].prompt_tokens;
        ct += c->ch[i].completion_tokens;
        rt += c->ch[i].reasoning_tokens;
        hit += c->ch[i].cached_tokens;
    }
    if (c->chat && c->n_choices > 1) { /* n copies of one prompt: OpenAI counts it once */
        pt = c->ch[0].prompt_tokens;
        hit = c->ch[0].cached_tokens;
    }
    json_t *u = json_pack("{sIsIsIsIsIs{sI}}", "prompt_tokens", (json_int_t)pt,
                          "completion_tokens", (json_int_t)ct, "total_tokens",
                          (json_int_t)(pt + ct), "prompt_cache_hit_tokens", (json_int_t)hit,
                          "prompt_cache_miss_tokens", (json_int_t)(pt - hit),
                          "prompt_tokens_details", "cached_tokens", (json_int_t)hit);
    if (u && c->reasoning_split)
        json_object_set_new(u, "completion_tokens_details",
                            json_pack("{sI}", "reasoning_tokens", (json_int_t)rt));
    return u;
}

static const char *finish_str(enum request_finish f)
{
    return f == REQUEST_FINISH_LENGTH ? "length" : "stop";
}

static json_t *call_envelope(const struct call *c, bool chunk)
{
    const char *object = c->chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                 : "text_completion";
    return json_pack("{sssssIss}", "id", c->id, "object", object, "created",
                     (json_int_t)c->created, "model", c->api->d.model_name);
}

/* ---- streaming */

static void sse_send(struct call *c, const char *data, size_t len)
{
    if (!c->req)
        return;
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return;
    evbuffer_add(b, data, len);
    evhttp_send_reply_chunk(c->req, b);
    evbuffer_free(b);
}

static void sse_json(struct call *c, json_t *j)
{
    /* ASCII-only: clients that split lines on U+2028 or U+0085 (Python's splitlines)
     * must not see a chunk cut in two. */
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(j);
    if (!s)
        return;
    struct evbuffer *b = evbuffer_new();
    if (b && c->req) {
        evbuffer_add_printf(b, "data: %s\n\n", s);
        evhttp_send_reply_chunk(c->req, b);
    }
    if (b)
        evbuffer_free(b);
    free(s);
}

/* One chunk for choice i: delta (chat) or text (completions), and finish. */
static void sse_chunk(struct call *c, int i, json_t *delta, const char *finish)
{
    json_t *j = call_envelope(c, true);
    json_t *ch = json_pack("{sisnso}", "index", i, "logprobs", "finish_reason",
                           finish ? json_string(finish) : json_null());
    if (c->chat) {
        json_object_set_new(ch, "delta", delta ? delta : json_object());
    } else {
        json_t *text = delta ? json_incref(json_object_get(delta, "content")) : NULL;
        json_object_set_new(ch, "text", text ? text : json_string(""));
        json_decref(delta);
    }
    json_object_set_new(j, "choices", json_pack("[o]", ch));
    if (c->include_usage)
        json_object_set_new(j, "usage", json_null());
    sse_json(c, j);
}

static void stream_update(struct call *c, int i, const struct request_output *o)
{
    struct choice *ch = &c->ch[i];
    if (c->chat && !ch->role_sent && (o->content_len || o->reasoning_len ||
                                      o->state == REQUEST_DONE)) {
        sse_chunk(c, i, json_pack("{ssss}", "role", "assistant", "content", ""), NULL);
        ch->role_sent = true;
    }
    if (o->reasoning_len)
        sse_chunk(c, i, json_pack("{so}", "reasoning_content",
                                  json_text(o->reasoning, o->reasoning_len)), NULL);
    if (o->content_len)
        sse_chunk(c, i, json_pack("{so}", "content", json_text(o->content, o->content_len)),
                  NULL);
    if (o->state == REQUEST_DONE && o->finish == REQUEST_FINISH_ERROR) {
        char *e = apierr_body(APIERR_INTERNAL, o->error, NULL, NULL);
        if (e) {
            struct evbuffer *b = evbuffer_new();
            if (b && c->req) {
                evbuffer_add_printf(b, "data: %s\n\n", e);
                evhttp_send_reply_chunk(c->req, b);
            }
            if (b)
                evbuffer_free(b);
        }
        free(e);
    } else if (o->state == REQUEST_DONE) {
        sse_chunk(c, i, NULL, finish_str(o->finish));
    }
}

static void cache_store(struct call *c);

static void stream_end(struct call *c)
{
    cache_store(c);
    if (c->include_usage) {
        json_t *j = call_envelope(c, true);
        json_object_set_new(j, "choices", json_array());
        json_object_set_new(j, "usage", usage_json(c));
        sse_json(c, j);
    }
    static const char done[] = "data: [DONE]\n\n";
    sse_send(c, done, sizeof done - 1);
    struct evhttp_request *req = c->req;
    call_free(c, 200); /* clears the close callback before the reply ends */
    if (req)
        evhttp_send_reply_end(req);
}

static void keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
    struct call *c = arg;
    (void)fd;
    (void)what;
    if (!c->saw_running) {
        static const char ka[] = ": keep-alive\n\n";
        sse_send(c, ka, sizeof ka - 1);
    }
}

/* ---- the whole body at once */

static void body_end(struct call *c)
{
    for (int i = 0; i < c->n_choices; i++)
        if (c->ch[i].finish == REQUEST_FINISH_ERROR) {
            struct evhttp_request *req = c->req;
            struct http_api *a = c->api;
            char msg[ERR_MSG_MAX + 32];
            snprintf(msg, sizeof msg, "generation failed: %s", c->ch[i].error);
            call_free(c, 500);
            if (req)
                send_error(a, req, APIERR_INTERNAL, NULL, msg);
            return;
        }
    cache_store(c);
    json_t *j = call_envelope(c, false);
    json_t *choices = json_array();
    for (int i = 0; i < c->n_choices; i++) {
        struct choice *ch = &c->ch[i];
        json_t *o = json_pack("{sisnss}", "index", i, "logprobs", "finish_reason",
                              finish_str(ch->finish));
        if (c->chat) {
            json_t *m = json_pack("{ssso}", "role", "assistant", "content",
                                  json_text(ch->content.p, ch->content.len));
            if (c->reasoning_split)
                json_object_set_new(m, "reasoning_content",
                                    json_text(ch->reasoning.p, ch->reasoning.len));
            json_object_set_new(o, "message", m);
        } else {
            json_object_set_new(o, "text", json_text(ch->content.p, ch->content.len));
        }
        json_array_append_new(choices, o);
    }
    json_object_set_new(j, "choices", choices);
    json_object_set_new(j, "usage", usage_json(c));
    struct evhttp_request *req = c->req;
    json_t *keep = j;
    call_free(c, 200);
    if (req)
        reply_json(req, 200, keep);
    json_decref(keep);
}

/* New output for choice i of c: take it and pass it on. */
static void call_update(struct call *c, int i)
{
    struct choice *ch = &c->ch[i];
    struct request_output o;
    if (ch->done || request_take(ch->er, &o))
        return;
    struct metrics *m = c->api->d.metrics;
    double t = now_s();
    if (o.state != REQUEST_QUEUED && !c->saw_running) {
        c->saw_running = true;
        c->t_running = t;
        if (m)
            metrics_observe(m, METRICS_QUEUE_TIME, t - c->t0);
    }
    if (o.content_len || o.reasoning_len) {
        if (m && c->t_first == 0)
            metrics_observe(m, METRICS_TTFT, t - c->t0);
        else if (m)
            metrics_observe(m, METRICS_ITL, t - c->t_last);
        if (c->t_first == 0)
            c->t_first = t;
        c->t_last = t;
    }
    if (c->stream)
        stream_update(c, i, &o);
    bool keep = !c->stream || c->cache_store || c->plog; /* the text is needed at the end */
    if (keep && (acc_append(&ch->content, o.content, o.content_len) ||
                 acc_append(&ch->reasoning, o.reasoning, o.reasoning_len)))
        snprintf(o.error, sizeof o.error, "out of memory"), o.finish = REQUEST_FINISH_ERROR;
    if (o.state == REQUEST_DONE) {
        ch->done = true;
        ch->finish = o.finish;
        ch->prompt_tokens = o.prompt_tokens;
        ch->completion_tokens = o.completion_tokens;
        ch->reasoning_tokens = o.reasoning_tokens;
        ch->cached_tokens = o.cached_tokens;
        memcpy(ch->error, o.error, sizeof ch->error);
    }
    request_output_free(&o);
    for (int k = 0; k < c->n_choices; k++)
        if (!c->ch[k].done)
            return;
    if (c->stream)
        stream_end(c);
    else
        body_end(c);
}

static struct call *find_call(struct http_api *a, struct request *r, int *idx)
{
    for (struct call *c = a->calls; c; c = c->next)
        for (int i = 0; i < c->n_choices; i++)
            if (c->ch[i].er == r) {
                *idx = i;
                return c;
            }
    return NULL;
}

/* The wake event: drain the list the engine filled. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct http_api *a = arg;
    (void)fd;
    (void)what;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        struct request *r = a->n_ready ? a->ready[--a->n_ready] : NULL;
        pthread_mutex_unlock(&a->mu);
        if (!r)
            break;
        int i;
        struct call *c = find_call(a, r, &i);
        if (c)
            call_update(c, i);
        request_unref(r);
    }
}

/* ------------------------------------------------------ the response cache */

/* The cache key: a SHA-256 over everything that decides the call's output, as
 * canonical JSON (model, key id: entries are never shared across keys, route, every
 * sampling and stopping parameter) followed by each prompt's token ids. */
static int cache_key_of(struct call *c, const struct parsed *p, int32_t **ids,
                        const size_t *n_ids, int n)
{
    struct http_api *a = c->api;
    const struct sampler_params *sp = &p->rp.sampling;
    const struct request_params *rp = &p->rp;
    json_t *stops = json_array();
    for (int i = 0; stops && i < rp->n_stop; i++)
        json_array_append_new(stops, json_string(rp->stop[i]));
    json_t *j = json_pack(
        "{si ss ss sb sb sb si si sf si sf sf sf si sf sf sb sI sI sb si si so}", "v", 1,
        "model", a->d.model_name, "tag", c->key.id, "chat", c->chat, "split",
        c->reasoning_split, "in_reasoning", rp->in_reasoning, "think_start", rp->think_start,
        "think_end", rp->think_end, "temperature", (double)sp->temperature, "top_k",
        sp->top_k, "top_p", (double)sp->top_p, "min_p", (double)sp->min_p, "repetition",
        (double)sp->repetition_penalty, "last_n", sp->penalty_last_n, "presence",
        (double)sp->presence_penalty, "frequency", (double)sp->frequency_penalty,
        "has_seed", sp->has_seed, "seed", (json_int_t)sp->seed, "max_tokens",
        (json_int_t)rp->max_tokens, "max_given", p->max_given, "n_ctx", a->d.n_ctx, "n", n,
        "stop", stops);
    char *head = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    size_t len = head ? strlen(head) + 1 : 0, total = len;
    for (int i = 0; i < n; i++)
        total += sizeof(uint64_t) + n_ids[i] * sizeof(int32_t);
    char *buf = head ? malloc(total) : NULL;
    if (!buf) {
        free(head);
        return -1;
    }
    memcpy(buf, head, len); /* with its NUL: the JSON cannot run into the ids */
    for (int i = 0; i < n; i++) {
        uint64_t k = n_ids[i];
        memcpy(buf + len, &k, sizeof k);
        memcpy(buf + len + sizeof k, ids[i], n_ids[i] * sizeof(int32_t));
        len += sizeof k + n_ids[i] * sizeof(int32_t);
    }
    rcache_key(buf, len, c->cache_key);
    free(buf);
    free(head);
    return 0;
}

/* A finished cacheable call: store what each choice produced. Only complete results
 * (stop or length) are stored, never an error or a cancelled one. */
static void cache_store(struct call *c)
{
    if (!c->cache_store)
        return;
    json_t *choices = json_array();
    for (int i = 0; i < c->n_choices; i++) {
        const struct choice *ch = &c->ch[i];
        if (!ch->done || (ch->finish != REQUEST_FINISH_STOP &&
                          ch->finish != REQUEST_FINISH_LENGTH)) {
            json_decref(choices);
            return;
        }
        json_array_append_new(
            choices, json_pack("{so so si si si si si}", "content",
                               json_text(ch->content.p, ch->content.len), "reasoning",
                               json_text(ch->reasoning.p, ch->reasoning.len), "finish",
                               (int)ch->finish, "pt", ch->prompt_tokens, "ct",
                               ch->completion_tokens, "rt", ch->reasoning_tokens, "cached",
                               ch->cached_tokens));
    }
    json_t *j = json_pack("{siso}", "v", 1, "choices", choices);
    char *val = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (val)
        rcache_put(c->api->d.rcache, c->key.id, c->cache_key, val, strlen(val));
    free(val);
}

/* Fills c's n choices from a stored value; -1 if it does not have that shape. */
static int cache_fill(struct call *c, const char *val, size_t len, int n)
{
    json_t *j = json_loadb(val, len, 0, NULL);
    json_t *choices = json_object_get(j, "choices");
    int rc = json_is_array(choices) && json_array_size(choices) == (size_t)n ? 0 : -1;
    for (int i = 0; !rc && i < n; i++) {
        struct choice *ch = &c->ch[i];
        json_t *o = json_array_get(choices, i), *t = json_object_get(o, "content"),
               *r = json_object_get(o, "reasoning");
        json_int_t f = json_integer_value(json_object_get(o, "finish"));
        if (!json_is_string(t) || !json_is_string(r) ||
            (f != REQUEST_FINISH_STOP && f != REQUEST_FINISH_LENGTH) ||
            acc_append(&ch->content, json_string_value(t), json_string_length(t)) ||
            acc_append(&ch->reasoning, json_string_value(r), json_string_length(r))) {
            rc = -1;
            break;
        }
        ch->done = true;
        ch->finish = (enum request_finish)f;
        ch->prompt_tokens = (int32_t)json_integer_value(json_object_get(o, "pt"));
        ch->completion_tokens = (int32_t)json_integer_value(json_object_get(o, "ct"));
        ch->reasoning_tokens = (int32_t)json_integer_value(json_object_get(o, "rt"));
        ch->cached_tokens = (int32_t)json_integer_value(json_object_get(o, "cached"));
    }
    json_decref(j);
    return rc;
}

/* Answers c from the cache (the stream all at once). */
static void cache_reply(struct call *c)
{
    c->cache_hit = true;
    if (!c->stream) {
        body_end(c);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_send_reply_start(c->req, 200, "OK");
    c->reply_started = true;
    for (int i = 0; i < c->n_choices; i++) {
        struct choice *ch = &c->ch[i];
        struct request_output o = {.content = ch->content.p, .content_len = ch->content.len,
                                   .reasoning = ch->reasoning.p,
                                   .reasoning_len = ch->reasoning.len,
                                   .state = REQUEST_DONE, .finish = ch->finish};
        stream_update(c, i, &o);
    }
    stream_end(c);
}

/* Deterministic calls (temperature 0 or a seed) consult the response cache. True when
 * c has been answered from it (ids[] freed); otherwise c->cache_store says whether to
 * store the result. Sets X-Cache on cacheable calls. */
static bool cache_lookup(struct call *c, const struct parsed *p, int32_t **ids,
                         const size_t *n_ids, int n)
{
    struct http_api *a = c->api;
    const struct sampler_params *sp = &p->rp.sampling;
    if (!rcache_enabled(a->d.rcache) || (sp->temperature != 0 && !sp->has_seed))
        return false;
    struct evkeyvalq *out = evhttp_request_get_output_headers(c->req);
    const char *cc = evhttp_find_header(evhttp_request_get_input_headers(c->req),
                                        "Cache-Control");
    if ((cc && strcasestr(cc, "no-store")) || cache_key_of(c, p, ids, n_ids, n)) {
        evhttp_add_header(out, "X-Cache", "MISS");
        return false;
    }
    char *val = NULL;
    size_t len = 0;
    if (rcache_get(a->d.rcache, c->key.id, c->cache_key, &val, &len)) {
        c->n_choices = n;
        if (cache_fill(c, val, len, n) == 0) {
            free(val);
            for (int i = 0; i < n; i++)
                free(ids[i]);
            evhttp_add_header(out, "X-Cache", "HIT");
            cache_reply(c);
            return true;
        }
        for (int i = 0; i < n; i++) { /* a malformed entry: generate afresh */
            free(c->ch[i].content.p);
            free(c->ch[i].reasoning.p);
            memset(&c->ch[i], 0, sizeof c->ch[i]);
        }
        c->n_choices = 0;
        LOG(WARN, "%s: a response-cache entry did not parse; ignored", c->id);
    }
    free(val);
    evhttp_add_header(out, "X-Cache", "MISS");
    c->cache_store = true;
    return false;
}

/* ------------------------------------------------------------- handlers */

/* With a key file, every route but /health and /ready needs a key (Authorization:
 * Bearer, or X-Api-Key). False when a 401 has been sent. */
static bool key_ok(struct http_api *a, struct evhttp_request *req, const char *route,
                   struct auth_key_info *key)
{
    if (!a->d.auth)
        return true;
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *v = evhttp_find_header(h, "Authorization");
    if (!v)
        v = evhttp_find_header(h, "X-Api-Key");
    enum auth_result r = auth_check(a->d.auth, v, key);
    if (r == AUTH_OK)
        return true;
    reply_error(a, req, route, r == AUTH_MISSING ? APIERR_MISSING_KEY : APIERR_INVALID_KEY,
                NULL, NULL);
    return false;
}

/* Method, key, availability and body size. Returns the parsed JSON object, or NULL
 * when a reply has been sent. */
static json_t *api_gate(struct http_api *a, struct evhttp_request *req, const char *route,
                        struct auth_key_info *key)
{
    memset(key, 0, sizeof *key);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        reply_error(a, req, route, APIERR_METHOD, NULL, "use POST");
        return NULL;
    }
    if (!key_ok(a, req, route, key))
        return NULL;
    if (a->draining || !a->is_ready) {
        reply_error(a, req, route, APIERR_UNAVAILABLE, NULL,
                    a->draining ? "the server is shutting down" : "the model is loading");
        return NULL;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > a->d.max_body) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body is %zu bytes; the limit is %zu", len,
                 a->d.max_body);
        reply_error(a, req, route, APIERR_TOO_LARGE, NULL, msg);
        return NULL;
    }
    json_error_t je;
    json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &je);
    if (!body || !json_is_object(body)) {
        char msg[256];
        snprintf(msg, sizeof msg, "the body is not a JSON object%s%s", body ? "" : ": ",
                 body ? "" : je.text);
        json_decref(body);
        reply_error(a, req, route, APIERR_INVALID_JSON, NULL, msg);
        return NULL;
    }
    json_t *model = json_object_get(body, "model");
    if (model && !json_is_null(model) && !json_is_string(model)) {
        json_decref(body);
        reply_error(a, req, route, APIERR_INVALID_PARAM, "model", "model: expected a string");
        return NULL;
    }
    if (json_is_string(model) && strcmp(json_string_value(model), a->d.model_name)) {
        char msg[160];
        snprintf(msg, sizeof msg, "The model `%.100s` does not exist; this server serves `%s`",
                 json_string_value(model), a->d.model_name);
        json_decref(body);
        reply_error(a, req, route, APIERR_MODEL_NOT_FOUND, "model", msg);
        return NULL;
    }
    return body;
}

static struct call *call_new(struct http_api *a, struct evhttp_request *req, const char *route,
                             bool chat, const struct parsed *p, const struct auth_key_info *key)
{
    struct call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->api = a;
    c->req = req;
    c->chat = chat;
    c->stream = p->stream;
    c->include_usage = p->stream && p->include_usage;
    c->reasoning_split = chat && p->rp.think_end >= 0;
    c->route = route;
    c->key = *key;
    c->t0 = now_s();
    c->created = (long long)time(NULL);
    unsigned char rnd[6] = {0};
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        memcpy(rnd, &c->t0, sizeof rnd); /* ids need only be unique, not secret */
    snprintf(c->id, sizeof c->id, "%s-%llx%02x%02x%02x%02x%02x%02x",
             chat ? "chatcmpl" : "cmpl", ++a->seq, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
             rnd[5]);
    c->next = a->calls;
    if (a->calls)
        a->calls->prev = c;
    a->calls = c;
    a->n_calls++;
    return c;
}

/* Rate limit, engine requests, submission, then the stream's headers. Takes ids[]. */
static void call_start(struct http_api *a, struct call *c, struct parsed *p, int32_t **ids,
                       size_t *n_ids, int n)
{
    struct evhttp_request *req = c->req;
    long estimate = 0;
    for (int i = 0; i < n; i++)
        estimate += (long)n_ids[i] + (p->max_given ? p->rp.max_tokens : a->d.n_ctx);
    if (a->d.rl) {
        struct ratelimit_limits lim = {c->key.rpm, c->key.tpm, c->key.concurrent};
        struct ratelimit_decision d;
        ratelimit_acquire(a->d.rl, c->key.id, &lim, estimate, &d);
        struct ratelimit_header hs[RATELIMIT_MAX_HEADERS];
        size_t nh = ratelimit_headers(&d, hs);
        for (size_t k = 0; k < nh; k++)
            evhttp_add_header(evhttp_request_get_output_headers(req), hs[k].name, hs[k].value);
        if (!d.allowed) {
            for (int i = 0; i < n; i++)
                free(ids[i]);
            if (a->d.metrics)
                metrics_rate_limited(a->d.metrics, ratelimit_reason_name(d.reason));
            call_free(c, 429);
            send_error(a, req, APIERR_RATE_LIMIT, NULL, NULL);
            return;
        }
        c->rl_held = true;
        c->rl_reserved = d.reserved_tokens;
    }
    if (cache_lookup(c, p, ids, n_ids, n))
        return;
    enum apierr_kind fail = APIERR_N_KINDS;
    struct err e = {0};
    for (int i = 0; i < n; i++) {
        struct request_params rp = p->rp;
        if (!p->max_given)
            rp.max_tokens = a->d.n_ctx - (int32_t)n_ids[i];
        if (rp.max_tokens < 1)
            rp.max_tokens = 1;
        if (rp.sampling.has_seed)
            rp.sampling.seed += (uint64_t)i; /* n > 1: distinct but reproducible */
        snprintf(rp.cache_tag, sizeof rp.cache_tag, "%s", c->key.id);
        if (fail != APIERR_N_KINDS) {
            free(ids[i]);
            continue;
        }
        char rid[64];
        snprintf(rid, sizeof rid, "%.36s/%d", c->id, i);
        if (request_new(rid, ids[i], n_ids[i], &rp, &c->ch[i].er, &e)) {
            fail = apierr_from_err(e.code);
            continue;
        }
        c->n_choices = i + 1;
        request_set_notify(c->ch[i].er, api_notify, a);
        enum sched_reject why;
        if (sched_submit(a->d.sched, c->ch[i].er, &why, &e))
            fail = why == SCHED_REJECT_TOO_LONG ? APIERR_CONTEXT_LENGTH
                 : why == SCHED_REJECT_QUEUE_FULL ? APIERR_OVERLOADED : APIERR_UNAVAILABLE;
    }
    if (fail != APIERR_N_KINDS) {
        for (int i = 0; i < c->n_choices; i++)
            c->ch[i].finish = REQUEST_FINISH_CANCELLED;
        call_free(c, apierr_status(fail));
        send_error(a, req, fail, fail == APIERR_CONTEXT_LENGTH ? "messages" : NULL, e.msg);
        return;
    }
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), call_on_close, c);
    if (c->stream) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Content-Type", "text/event-stream");
        evhttp_add_header(h, "Cache-Control", "no-cache");
        evhttp_send_reply_start(req, 200, "OK");
        c->reply_started = true;
        struct timeval tv = {KEEPALIVE_SECONDS, 0};
        c->keepalive = event_new(a->d.base, -1, EV_PERSIST, keepalive_cb, c);
        if (c->keepalive)
            event_add(c->keepalive, &tv);
    }
}

static void free_messages(struct chat_message *msgs, char **texts, size_t n)
{
    for (size_t i = 0; texts && i < n; i++)
        free(texts[i]);
    free(texts);
    free(msgs);
}

static void on_chat(struct evhttp_request *req, void *arg)
{
    static const char route[] = "/v1/chat/completions";
    struct http_api *a = arg;
    struct auth_key_info key;
    json_t *body = api_gate(a, req, route, &key);
    if (!body)
        return;
    struct parsed p = {0};
    struct chat_message *msgs = NULL;
    char **texts = NULL;
    size_t n_msgs = 0;
    bool prefix = false;
    int32_t *ids[CALL_MAX_CHOICES] = {0};
    size_t n_ids[CALL_MAX_CHOICES] = {0};
    struct err e = {0};
    if (parse_common(a, body, &p) ||
        parse_messages(body, &msgs, &texts, &n_msgs, &prefix, &p)) {
        reply_error(a, req, route, p.missing ? APIERR_MISSING_FIELD : APIERR_INVALID_PARAM,
                    p.param, p.msg);
    } else if (encode_chat(a, msgs, n_msgs, prefix, &p, &ids[0], &n_ids[0], &e)) {
        reply_error(a, req, route, e.code == ERR_NOMEM ? APIERR_INTERNAL : APIERR_INVALID_PARAM,
                    "messages", e.msg);
    } else {
        bool ok = true;
        for (int i = 1; i < p.n; i++) {
            ids[i] = malloc(n_ids[0] * sizeof *ids[0]);
            ok = ok && ids[i];
            if (ids[i])
                memcpy(ids[i], ids[0], n_ids[0] * sizeof *ids[0]);
            n_ids[i] = n_ids[0];
        }
        struct call *c = ok ? call_new(a, req, route, true, &p, &key) : NULL;
        if (c && a->d.prompts)
            c->plog = json_pack("{sO}", "messages", json_object_get(body, "messages"));
        if (c) {
            call_start(a, c, &p, ids, n_ids, p.n);
        } else {
            for (int i = 0; i < p.n; i++)
                free(ids[i]);
            reply_error(a, req, route, APIERR_INTERNAL, NULL, "out of memory");
        }
    }
    free_messages(msgs, texts, n_msgs);
    json_decref(body);
}

/* prompt: a string or a list of strings (each its own choice). */
static int encode_prompts(struct http_api *a, json_t *body, struct parsed *p, int32_t **ids,
                          size_t *n_ids, int *n)
{
    json_t *pr = json_object_get(body, "prompt");
    if (!pr)
        return missing(p, "prompt");
    if (json_is_string(pr))
        pr = json_pack("[O]", pr), json_object_set_new(body, "prompt", pr);
    size_t np = json_is_array(pr) ? json_array_size(pr) : 0;
    if (np == 0)
        return bad(p, "prompt", "expected a string or a non-empty list of strings");
    if (np * (size_t)p->n > CALL_MAX_CHOICES)
        return bad(p, "prompt", "at most 8 choices (prompts x n) per request");
    *n = 0;
    for (size_t i = 0; i < np; i++) {
        json_t *s = json_array_get(pr, i);
        if (!json_is_string(s))
            return bad(p, "prompt", "expected a string or a list of strings");
        for (int k = 0; k < p->n; k++) {
            struct err e = {0};
            if (generate_encode_prompt(a->d.tok, json_string_value(s), json_string_length(s),
                                       &ids[*n], &n_ids[*n], &e))
                return bad(p, "prompt", e.msg);
            if (n_ids[*n] == 0) {
                free(ids[*n]);
                return bad(p, "prompt", "an empty prompt has nothing to continue");
            }
            (*n)++;
        }
    }
    return 0;
}

static void on_completions(struct evhttp_request *req, void *arg)
{
    static const char route[] = "/v1/completions";
    struct http_api *a = arg;
    struct auth_key_info key;
    json_t *body = api_gate(a, req, route, &key);
    if (!body)
        return;
    struct parsed p = {0};
    int32_t *ids[CALL_MAX_CHOICES] = {0};
    size_t n_ids[CALL_MAX_CHOICES] = {0};
    int n = 0;
    if (parse_common(a, body, &p) || encode_prompts(a, body, &p, ids, n_ids, &n)) {
        for (int i = 0; i < n; i++)
            free(ids[i]);
        reply_error(a, req, route, p.missing ? APIERR_MISSING_FIELD : APIERR_INVALID_PARAM,
                    p.param, p.msg);
    } else {
        struct call *c = call_new(a, req, route, false, &p, &key);
        if (c && a->d.prompts)
            c->plog = json_pack("{sO}", "prompt", json_object_get(body, "prompt"));
        if (c) {
            call_start(a, c, &p, ids, n_ids, n);
        } else {
            for (int i = 0; i < n; i++)
                free(ids[i]);
            reply_error(a, req, route, APIERR_INTERNAL, NULL, "out of memory");
        }
    }
    json_decref(body);
}

static bool is_get(struct http_api *a, struct evhttp_request *req, const char *route)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)
        return true;
    reply_error(a, req, route, APIERR_METHOD, NULL, "use GET");
    return false;
}

static void on_models(struct evhttp_request *req, void *arg)
{
    struct http_api *a = arg;
    if (!is_get(a, req, "/v1/models"))
        return;
    struct auth_key_info key;
    if (!key_ok(a, req, "/v1/models", &key))
        return;
    json_t *j = json_pack("{ss s[{ss ss sI ss}]}", "object", "list", "data", "id",
                          a->d.model_name, "object", "model", "created", (json_int_t)0,
                          "owned_by", "deepseek-local");
    reply_json(req, 200, j);
    json_decref(j);
    access_log(a, req, "/v1/models", 200, NULL);
}

static void on_health(struct evhttp_request *req, void *arg)
{
    struct http_api *a = arg;
    if (!is_get(a, req, "/health"))
        return;
    static const char ok[] = "{\"status\":\"ok\"}";
    reply_body(req, 200, "application/json", ok, sizeof ok - 1);
    access_log(a, req, "/health", 200, NULL);
}

static void on_ready(struct evhttp_request *req, void *arg)
{
    struct http_api *a = arg;
    if (!is_get(a, req, "/ready"))
        return;
    if (!a->is_ready || a->draining) {
        reply_error(a, req, "/ready", APIERR_UNAVAILABLE, NULL,
                    a->draining ? "the server is shutting down" : "the model is loading");
        return;
    }
    static const char ok[] = "{\"status\":\"ready\"}";
    reply_body(req, 200, "application/json", ok, sizeof ok - 1);
    access_log(a, req, "/ready", 200, NULL);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct http_api *a = arg;
    struct auth_key_info key;
    if (!is_get(a, req, "/metrics") || !key_ok(a, req, "/metrics", &key))
        return;
    if (!a->d.metrics) {
        reply_error(a, req, "/metrics", APIERR_NOT_FOUND, NULL, "metrics are off");
        return;
    }
    struct sched_stats st;
    sched_stats(a->d.sched, &st);
    metrics_gauge_set(a->d.metrics, METRICS_REQUESTS_RUNNING, st.running);
    metrics_gauge_set(a->d.metrics, METRICS_REQUESTS_WAITING, st.waiting);
    metrics_gauge_set(a->d.metrics, METRICS_KV_CACHE_USAGE,
                      st.n_slots ? (double)st.running / st.n_slots : 0);
    size_t len = 0;
    char *text = metrics_render(a->d.metrics, a->d.vllm_names, &len);
    if (!text) {
        reply_error(a, req, "/metrics", APIERR_INTERNAL, NULL, "out of memory");
        return;
    }
    reply_body(req, 200, METRICS_CONTENT_TYPE, text, len);
    free(text);
    access_log(a, req, "/metrics", 200, NULL);
}

/* ------------------------------------------------------- admin endpoints */

#define ADMIN_SUBJECTS "/v1/admin/subjects/"

/* True when v (a header value: "Bearer KEY" or the bare key) is the --admin-key.
 * Compares SHA-256 digests with CRYPTO_memcmp: no early exit, no length leak. */
static bool is_admin_key(const char *admin_key, const char *v)
{
    if (!admin_key || !admin_key[0] || !v)
        return false;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!strncasecmp(v, "Bearer", 6) && (v[6] == ' ' || v[6] == '\t'))
        for (v += 6; *v == ' ' || *v == '\t';)
            v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    unsigned char h1[EVP_MAX_MD_SIZE], h2[EVP_MAX_MD_SIZE];
    unsigned int l1 = 0, l2 = 0;
    if (!EVP_Digest(v, n, h1, &l1, EVP_sha256(), NULL) ||
        !EVP_Digest(admin_key, strlen(admin_key), h2, &l2, EVP_sha256(), NULL))
        return false;
    return l1 == l2 && CRYPTO_memcmp(h1, h2, l1) == 0;
}

/* The --admin-key, or a key of scope=admin from the key file. who gets the key id
 * ("admin-key" for the setting). False when a 401/403 has been sent. */
static bool admin_ok(struct http_api *a, struct evhttp_request *req, const char *route,
                     char who[AUTH_ID_MAX])
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *v = evhttp_find_header(h, "Authorization");
    if (!v)
        v = evhttp_find_header(h, "X-Api-Key");
    if (is_admin_key(a->d.admin_key, v)) {
        snprintf(who, AUTH_ID_MAX, "admin-key");
        return true;
    }
    struct auth_key_info key;
    enum auth_result r = a->d.auth ? auth_check(a->d.auth, v, &key)
                                   : v ? AUTH_INVALID : AUTH_MISSING;
    if (r == AUTH_OK && key.scope == AUTH_SCOPE_ADMIN) {
        snprintf(who, AUTH_ID_MAX, "%s", key.id);
        return true;
    }
    if (r == AUTH_OK) {
        LOG(WARN, "%s: key id %s has scope user; refused", route, key.id);
        reply_error(a, req, route, APIERR_PERMISSION, NULL,
                    "this key has scope user; the admin endpoints need scope=admin");
    } else {
        reply_error(a, req, route, r == AUTH_MISSING ? APIERR_MISSING_KEY : APIERR_INVALID_KEY,
                    NULL, NULL);
    }
    return false;
}

/* DELETE /v1/admin/subjects/ID: erases key id ID's data (server/erase.h). */
static void on_admin_subject(struct http_api *a, struct evhttp_request *req, const char *id)
{
    static const char route[] = "/v1/admin/subjects";
    if (!a->d.erase || (!a->d.auth && !(a->d.admin_key && a->d.admin_key[0]))) {
        reply_error(a, req, route, APIERR_NOT_FOUND, NULL,
                    "the admin endpoints are off: set --admin-key or give a key scope=admin");
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_DELETE) {
        reply_error(a, req, route, APIERR_METHOD, NULL, "use DELETE");
        return;
    }
    char who[AUTH_ID_MAX];
    if (!admin_ok(a, req, route, who))
        return;
    if (!promptlog_id_valid(id)) {
        reply_error(a, req, route, APIERR_INVALID_PARAM, "id",
                    "id: expected a key id ([A-Za-z0-9._-], 1..63 bytes) or - (anonymous)");
        return;
    }
    struct erase_targets t = *a->d.erase;
    t.via = "rest";
    t.requested_by = who;
    json_t *report = NULL;
    struct err e = {0};
    int rc = erase_subject(&t, id, &report, &e);
    if (rc) {
        LOG(ERROR, "erase of key id %s (by %s): nothing erased: %s", id, who, e.msg);
        reply_error(a, req, route, APIERR_INTERNAL, NULL, e.msg);
        return;
    }
    const char *status = json_string_value(json_object_get(report, "status"));
    LOG(INFO, "erase of key id %s (by %s): %s", id, who, status ? status : "?");
    reply_json(req, 200, report);
    json_decref(report);
    access_log(a, req, route, 200, NULL);
}

static void on_unknown(struct evhttp_request *req, void *arg)
{
    struct http_api *a = arg;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (path && !strncmp(path, ADMIN_SUBJECTS, sizeof ADMIN_SUBJECTS - 1)) {
        on_admin_subject(a, req, path + sizeof ADMIN_SUBJECTS - 1);
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "no route %.100s", path ? path : "?");
    reply_error(a, req, "-", APIERR_NOT_FOUND, NULL, msg);
}

/* ---------------------------------------------------------------- setup */

int http_api_new(const struct http_api_deps *deps, struct http_api **out, struct err *err)
{
    *out = NULL;
    struct http_api *a = calloc(1, sizeof *a);
    if (!a)
        return err_set(err, ERR_NOMEM, "http: out of memory");
    a->d = *deps;
    pthread_mutex_init(&a->mu, NULL);
    a->think_end = tokenizer_find(deps->tok, "</think>");
    a->think_start = tokenizer_find(deps->tok, "<think>");
    a->wake = event_new(deps->base, -1, 0, on_wake, a);
    if (!a->wake) {
        http_api_free(a);
        return err_set(err, ERR_NOMEM, "http: cannot create the wake event");
    }
    struct evhttp *h = deps->http;
    /* libevent answers bodies far over the limit itself (413, not our JSON body);
     * between max_body and 4x we answer with the OpenAI error shape. */
    evhttp_set_max_body_size(h, (ev_ssize_t)(deps->max_body * 4 + 4096));
    evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                      EVHTTP_REQ_DELETE);
    evhttp_set_cb(h, "/v1/chat/completions", on_chat, a);
    evhttp_set_cb(h, "/chat/completions", on_chat, a); /* DeepSeek's base URL has no /v1 */
    evhttp_set_cb(h, "/v1/completions", on_completions, a);
    evhttp_set_cb(h, "/v1/models", on_models, a);
    evhttp_set_cb(h, "/models", on_models, a);
    evhttp_set_cb(h, "/health", on_health, a);
    evhttp_set_cb(h, "/ready", on_ready, a);
    evhttp_set_cb(h, "/metrics", on_metrics, a);
    evhttp_set_gencb(h, on_unknown, a);
    *out = a;
    return 0;
}

void http_api_free(struct http_api *a)
{
    if (!a)
        return;
    while (a->calls) {
        struct call *c = a->calls;
        struct evhttp_request *req = c->req;
        bool started = c->reply_started;
        call_free(c, 503);
        if (req && started)
            evhttp_send_reply_end(req);
        else if (req)
            evhttp_send_error(req, 503, NULL);
    }
    for (size_t i = 0; i < a->n_ready; i++)
        request_unref(a->ready[i]);
    free(a->ready);
    if (a->wake)
        event_free(a->wake);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

void http_api_set_ready(struct http_api *a, bool ready) { a->is_ready = ready; }

void http_api_drain(struct http_api *a) { a->draining = true; }

int http_api_in_flight(const struct http_api *a) { return a->n_calls; }
