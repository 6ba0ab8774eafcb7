/*
 * client: REST client over libcurl (see client.h for the contract and the retry
 * policy). A call is a loop of attempts; one attempt is one curl_easy_perform whose
 * callbacks fill a struct call: headers (status, Retry-After), the body (kept for
 * JSON answers and error bodies) or the SSE stream (parsed as it arrives and handed
 * to the caller's delta callback). After the attempt, classify() decides between
 * success, a retry and a final error.
 */
#include "client/client.h"
#include "client/curlutil.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "client/sse.h"

#define BODY_MAX (64u << 20)  /* bytes of a JSON answer or error body we keep */
#define EVENT_MAX (16u << 20) /* bytes of one SSE line or event */

struct client {
    char *chat_url, *completion_url;
    char *auth;  /* "Authorization: Bearer KEY" or NULL; wiped at free */
    struct client_opts o;
    CURL *curl;
    atomic_int cancel;
};

struct buf {
    char *p;
    size_t len, cap;
};

/* One call across its attempts. The fields under "this attempt" are reset per try. */
struct call {
    struct client *c;
    bool chat, stream;
    client_delta_fn on_delta;
    void *user;
    struct client_result *res;
    struct buf content, reasoning; /* what the answer holds so far */
    bool delivered;                /* some text went to on_delta: no more retries */
    /* this attempt */
    struct buf body;
    struct sse *sse;
    bool is_sse, done, user_abort, retry_after_set;
    double retry_after; /* seconds, the longest the server asked for */
    int stream_rc;      /* an error found while parsing the stream */
    struct err stream_err;
    char errbuf[CURL_ERROR_SIZE];
};

static int buf_add(struct buf *b, const char *p, size_t n, size_t max)
{
    if (b->len + n > max)
        return ERR_RANGE;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return ERR_NOMEM;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* ------------------------------------------------------------ options, clock */

void client_opts_default(struct client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->retry = (struct client_retry){3, 1.0, 4.0, 10.0, 60.0};
    o->connect_timeout_ms = 10000;
}

void client_params_default(struct client_params *p)
{
    memset(p, 0, sizeof(*p));
    p->temperature = -1;
    p->top_p = -1;
}

static bool cancelled_cb(const void *c)
{
    return client_cancelled(c);
}

/* Sleeps in slices so a cancel (from a signal handler) ends the wait quickly. */
static int real_sleep(void *arg, double s, const struct client *c)
{
    (void)arg;
    return curlutil_sleep(s, cancelled_cb, c);
}

double client_backoff(const struct client_retry *r, int attempt)
{
    double w = r->multiplier * pow(2.0, attempt - 1 > 60 ? 60 : attempt - 1);
    if (w > r->max_wait_s)
        w = r->max_wait_s;
    if (w < r->min_wait_s)
        w = r->min_wait_s;
    return w;
}

int client_parse_retry_after(const char *value, double now, double *wait_s)
{
    *wait_s = 0;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(value);
    while (n && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    if (n == 0 || n > 64)
        return ERR_FORMAT;
    char v[65];
    memcpy(v, value, n);
    v[n] = '\0';
    if (isdigit((unsigned char)v[0])) {
        double s = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)v[i]))
                return ERR_FORMAT;
            s = s * 10 + (v[i] - '0');
        }
        *wait_s = s;
        return 0;
    }
    if (!isalpha((unsigned char)v[0])) /* dates start with the day's name */
        return ERR_FORMAT;
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1)
        return ERR_FORMAT;
    *wait_s = (double)t > now ? (double)t - now : 0;
    return 0;
}

/* ------------------------------------------------------------ lifecycle */

/* Endpoint URLs from a root or a ".../v1" base, without doubling "/v1". */
static int set_urls(struct client *c, const char *url)
{
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    char *base = strndup(url, n);
    if (!base)
        return ERR_NOMEM;
    bool v1 = n >= 3 && !strcmp(base + n - 3, "/v1");
    c->chat_url = curlutil_join(base, v1 ? "/chat/completions" : "/v1/chat/completions");
    c->completion_url = curlutil_join(base, v1 ? "/completions" : "/v1/completions");
    free(base);
    return c->chat_url && c->completion_url ? 0 : ERR_NOMEM;
}

struct client *client_new(const char *url, const char *api_key, const struct client_opts *opts,
                          struct err *e)
{
    struct client_opts o;
    if (opts)
        o = *opts;
    else
        client_opts_default(&o);
    if (!url || !*url || strpbrk(url, "\r\n ")) {
        err_set(e, ERR_INVALID, "client: the server URL is empty or has blanks");
        return NULL;
    }
    if (api_key && strpbrk(api_key, "\r\n")) {
        err_set(e, ERR_INVALID, "client: the API key holds a line break");
        return NULL;
    }
    if (curlutil_check_opts(&o, "client", e))
        return NULL;
    if (curlutil_global_init("client", e))
        return NULL;
    struct client *c = calloc(1, sizeof(*c));
    if (!c) {
        err_set(e, ERR_NOMEM, "client: out of memory");
        return NULL;
    }
    c->o = o;
    if (!c->o.now)
        c->o.now = curlutil_now;
    if (!c->o.sleep)
        c->o.sleep = real_sleep;
    atomic_init(&c->cancel, 0);
    c->curl = curl_easy_init();
    if (!c->curl || set_urls(c, url) ||
        (api_key && *api_key && !(c->auth = curlutil_join("Authorization: Bearer ", api_key)))) {
        err_set(e, ERR_NOMEM, "client: out of memory");
        client_free(c);
        return NULL;
    }
    return c;
}

void client_free(struct client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curlutil_wipe_free(c->auth);
    free(c->chat_url);
    free(c->completion_url);
    free(c);
}

void client_cancel(struct client *c)
{
    atomic_store(&c->cancel, 1);
}

bool client_cancelled(const struct client *c)
{
    return atomic_load(&((struct client *)c)->cancel) != 0;
}

void client_result_free(struct client_result *r)
{
    if (!r)
        return;
    free(r->content);
    free(r->reasoning);
    memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------------------ request body */

static int add_params(json_t *j, const struct client_params *p)
{
    int rc = 0;
    if (p->model)
        rc |= json_object_set_new(j, "model", json_string(p->model));
    if (p->temperature >= 0)
        rc |= json_object_set_new(j, "temperature", json_real(p->temperature));
    if (p->top_p >= 0)
        rc |= json_object_set_new(j, "top_p", json_real(p->top_p));
    if (p->max_tokens > 0)
        rc |= json_object_set_new(j, "max_tokens", json_integer(p->max_tokens));
    if (p->has_seed)
        rc |= json_object_set_new(j, "seed", json_integer(p->seed));
    if (p->stream) {
        rc |= json_object_set_new(j, "stream", json_true());
        rc |= json_object_set_new(j, "stream_options",
                                  json_pack("{s:b}", "include_usage", 1));
    }
    return rc ? ERR_NOMEM : 0;
}

/* The JSON body of a chat call (msgs) or a completion call (prompt). NULL on error. */
static char *make_body(const struct client_message *msgs, size_t n, const char *prompt,
                       const struct client_params *p, struct err *e)
{
    json_t *j = json_object();
    json_t *arr = json_array();
    int rc = !j || !arr;
    for (size_t i = 0; !rc && msgs && i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            json_decref(j);
            json_decref(arr);
            err_set(e, ERR_INVALID, "client: message %zu has no role or content", i);
            return NULL;
        }
        rc = json_array_append_new(arr, json_pack("{s:s,s:s}", "role", msgs[i].role,
                                                  "content", msgs[i].content));
    }
    if (!rc && msgs)
        rc = json_object_set(j, "messages", arr);
    if (!rc && prompt)
        rc = json_object_set_new(j, "prompt", json_string(prompt));
    if (!rc)
        rc = add_params(j, p);
    char *s = rc ? NULL : json_dumps(j, JSON_COMPACT);
    json_decref(arr);
    json_decref(j);
    if (!s)
        err_set(e, ERR_INVALID, "client: cannot build the request (is all text UTF-8?)");
    return s;
}

/* ------------------------------------------------------------ answer parsing */

/* Hands text to the caller and keeps it for the result. */
static int deliver(struct call *k, enum client_part part, const char *s, size_t n)
{
    if (!n)
        return 0;
    struct buf *b = part == CLIENT_PART_REASONING ? &k->reasoning : &k->content;
    if (buf_add(b, s, n, BODY_MAX))
        return err_set(&k->stream_err, ERR_NOMEM, "client: answer too large");
    k->delivered = true;
    if (k->on_delta && k->on_delta(k->user, part, s, n)) {
        k->user_abort = true;
        return CLIENT_ERR_CANCELLED;
    }
    return 0;
}

static void take_usage(struct client_result *r, json_t *u)
{
    if (!json_is_object(u))
        return;
    json_t *v;
    if ((v = json_object_get(u, "prompt_tokens")) && json_is_integer(v))
        r->prompt_tokens = (long)json_integer_value(v);
    if ((v = json_object_get(u, "completion_tokens")) && json_is_integer(v))
        r->completion_tokens = (long)json_integer_value(v);
    v = json_object_get(json_object_get(u, "completion_tokens_details"), "reasoning_tokens");
    if (json_is_integer(v))
        r->reasoning_tokens = (long)json_integer_value(v);
}

static void take_finish(struct client_result *r, json_t *choice)
{
    const char *f = json_string_value(json_object_get(choice, "finish_reason"));
    if (f)
        snprintf(r->finish_reason, sizeof(r->finish_reason), "%s", f);
}

/* The text parts of choice 0: a chat message/delta or a completion's text. */
static int take_choice(struct call *k, json_t *choice, const char *msg_key)
{
    if (!json_is_object(choice))
        return 0;
    take_finish(k->res, choice);
    if (!k->chat) {
        json_t *t = json_object_get(choice, "text");
        return deliver(k, CLIENT_PART_CONTENT, json_string_value(t), json_string_length(t));
    }
    json_t *m = json_object_get(choice, msg_key);
    json_t *r = json_object_get(m, "reasoning_content");
    json_t *t = json_object_get(m, "content");
    int rc = deliver(k, CLIENT_PART_REASONING, json_string_value(r), json_string_length(r));
    if (!rc && json_is_string(r) && !k->reasoning.p)
        rc = buf_add(&k->reasoning, "", 0, BODY_MAX); /* present, if empty */
    return rc ? rc : deliver(k, CLIENT_PART_CONTENT, json_string_value(t),
                             json_string_length(t));
}

/* "HTTP 429 rate_limit_exceeded: message" from an OpenAI error object. */
static void describe_error(struct call *k, json_t *error, int status, char *out, size_t size)
{
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *msg = json_string_value(json_object_get(error, "message"));
    if (!code)
        code = json_string_value(json_object_get(error, "type"));
    if (code)
        snprintf(k->res->error_code, sizeof(k->res->error_code), "%s", code);
    char st[24] = "";
    if (status)
        snprintf(st, sizeof st, "HTTP %d ", status);
    snprintf(out, size, "%s%s%s%.300s", st, code ? code : "error", msg ? ": " : "",
             msg ? msg : "");
}

/* One SSE event: "[DONE]", an error chunk, or a chunk of the answer. */
static int on_event(void *arg, const char *data, size_t len)
{
    struct call *k = arg;
    if (len == 6 && !memcmp(data, "[DONE]", 6)) {
        k->done = true;
        return 0;
    }
    json_error_t je;
    json_t *j = json_loadb(data, len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return err_set(&k->stream_err, ERR_FORMAT, "stream chunk is not JSON: %s", je.text);
    }
    int rc = 0;
    json_t *error = json_object_get(j, "error");
    if (error) {
        char m[ERR_MSG_MAX - 32];
        describe_error(k, error, 0, m, sizeof m);
        rc = err_set(&k->stream_err, ERR_IO, "stream failed: %s", m);
    } else {
        take_usage(k->res, json_object_get(j, "usage"));
        rc = take_choice(k, json_array_get(json_object_get(j, "choices"), 0), "delta");
    }
    json_decref(j);
    return rc;
}

/* A whole JSON answer (status 200, not streamed). */
static int parse_answer(struct call *k, struct err *e)
{
    const char *url = k->chat ? k->c->chat_url : k->c->completion_url;
    json_error_t je;
    json_t *j = json_loadb(k->body.p ? k->body.p : "", k->body.len, 0, &je);
    json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
    if (!json_is_object(choice)) {
        json_decref(j);
        return err_set(e, ERR_FORMAT, "%s: answer is not a completion (%s)", url,
                       je.text[0] ? je.text : "no choices[0]");
    }
    take_usage(k->res, json_object_get(j, "usage"));
    int rc = take_choice(k, choice, "message");
    json_decref(j);
    if (rc == ERR_NOMEM)
        return err_set(e, rc, "%s", k->stream_err.msg);
    return rc;
}

/* ------------------------------------------------------------ curl callbacks */

/* Notes Retry-After / retry-after-ms (the longest wins) and the content type. */
static size_t on_header(char *line, size_t size, size_t nitems, void *arg)
{
    struct call *k = arg;
    size_t n = size * nitems;
    if (n >= 5 && !strncmp(line, "HTTP/", 5)) { /* a new response: forget the last */
        k->retry_after_set = false;
        k->retry_after = 0;
        k->is_sse = false;
        return n;
    }
    char name[32], value[512];
    if (!curlutil_header(line, n, name, sizeof name, value, sizeof value))
        return n;
    double w = -1;
    if (!strcasecmp(name, "retry-after")) {
        if (client_parse_retry_after(value, k->c->o.now(k->c->o.clock_arg), &w))
            w = -1;
    } else if (!strcasecmp(name, "retry-after-ms")) {
        char *end;
        errno = 0;
        double ms = strtod(value, &end);
        if (!errno && end != value && ms >= 0 && isfinite(ms))
            w = ms / 1000.0;
    } else if (!strcasecmp(name, "content-type")) {
        k->is_sse = strstr(value, "text/event-stream") != NULL;
    }
    if (w >= 0 && (!k->retry_after_set || w > k->retry_after)) {
        k->retry_after = w;
        k->retry_after_set = true;
    }
    return n;
}

static long status_of(struct call *k)
{
    long status = 0;
    curl_easy_getinfo(k->c->curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* Body bytes: the SSE parser for a 200 event stream, else the body buffer.
 * Returning less than n makes curl stop with CURLE_WRITE_ERROR. */
static size_t on_body(char *p, size_t size, size_t nitems, void *arg)
{
    struct call *k = arg;
    size_t n = size * nitems;
    if (client_cancelled(k->c))
        return 0;
    if (k->stream && k->is_sse && status_of(k) == 200) {
        int rc = sse_feed(k->sse, p, n, &k->stream_err);
        if (rc && rc != CLIENT_ERR_CANCELLED && !k->stream_rc)
            k->stream_rc = rc;
        return rc ? 0 : n;
    }
    if (buf_add(&k->body, p, n, BODY_MAX)) {
        k->stream_rc = err_set(&k->stream_err, ERR_RANGE, "response over %u bytes", BODY_MAX);
        return 0;
    }
    return n;
}

/* Called by curl while connecting and transferring: our way to stop it. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    struct call *k = arg;
    return client_cancelled(k->c) ? 1 : 0;
}

/* ------------------------------------------------------------ one attempt */

static bool retryable_status(long status)
{
    return status == 429 || status == 502 || status == 503 || status == 504;
}

static int reset_attempt(struct call *k)
{
    k->body.len = 0;
    sse_free(k->sse);
    k->sse = sse_new(EVENT_MAX, on_event, k);
    k->is_sse = k->done = k->user_abort = k->retry_after_set = false;
    k->retry_after = 0;
    k->stream_rc = 0;
    err_clear(&k->stream_err);
    k->errbuf[0] = '\0';
    return k->sse ? 0 : ERR_NOMEM;
}

static CURLcode perform(struct call *k, const char *url, const char *body,
                        struct curl_slist *hdrs)
{
    CURL *cu = k->c->curl;
    curl_easy_reset(cu); /* keeps the connection cache: a retry may reuse it */
    curl_easy_setopt(cu, CURLOPT_URL, url);
    curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cu, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT_MS, k->c->o.connect_timeout_ms);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, k->c->o.timeout_ms);
    curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, k->errbuf);
    curl_easy_setopt(cu, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(cu, CURLOPT_HEADERDATA, k);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(cu, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(cu, CURLOPT_XFERINFODATA, k);
    curl_easy_setopt(cu, CURLOPT_NOPROGRESS, 0L);
    return curl_easy_perform(cu);
}

/* A non-200 answer: the server's error object, retryable or not. */
static int status_error(struct call *k, long status, bool *retry, struct err *e)
{
    json_t *j = json_loadb(k->body.p ? k->body.p : "", k->body.len, 0, NULL);
    json_t *error = json_object_get(j, "error");
    char m[ERR_MSG_MAX - 64];
    if (json_is_object(error))
        describe_error(k, error, (int)status, m, sizeof m);
    else
        snprintf(m, sizeof m, "HTTP %ld (body is not an API error)", status);
    json_decref(j);
    *retry = retryable_status(status);
    return err_set(e, *retry || status >= 500 ? ERR_IO : ERR_INVALID, "%s", m);
}

/* Decides what an attempt came to: 0, or an error with *retry saying whether
 * another try may help. */
static int finish_attempt(struct call *k, CURLcode cc, const char *url, bool *retry,
                          struct err *e)
{
    *retry = false;
    long status = status_of(k);
    k->res->http_status = (int)status;
    int rc = k->stream_rc;
    if (!rc && cc == CURLE_OK && status == 200 && k->stream && k->is_sse)
        rc = sse_finish(k->sse, &k->stream_err);
    else if (!rc && cc == CURLE_OK && status == 200 && !k->user_abort)
        rc = parse_answer(k, &k->stream_err);
    if (k->user_abort || client_cancelled(k->c) || rc == CLIENT_ERR_CANCELLED)
        return err_set(e, CLIENT_ERR_CANCELLED, "%s: cancelled", url);
    if (rc)
        return err_set(e, rc, "%s: %s", url, k->stream_err.msg);
    if (cc != CURLE_OK) {
        *retry = !k->delivered && curlutil_retryable(cc);
        return err_set(e, ERR_IO, "%s: %s", url, k->errbuf[0] ? k->errbuf : curl_easy_strerror(cc));
    }
    if (status != 200)
        return status_error(k, status, retry, e);
    if (k->stream && k->is_sse && !k->done) {
        *retry = !k->delivered;
        return err_set(e, ERR_IO, "%s: the event stream ended before [DONE]", url);
    }
    return 0;
}

/* ------------------------------------------------------------ the call */

static struct curl_slist *make_headers(const struct call *k)
{
    struct curl_slist *h = NULL, *t;
    const char *lines[] = {"Content-Type: application/json",
                           k->stream ? "Accept: text/event-stream" : "Accept: application/json",
                           "Expect:", k->c->auth};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (!lines[i])
            continue;
        if (!(t = curl_slist_append(h, lines[i]))) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = t;
    }
    return h;
}

/* Waits before the next try; nonzero when cancelled meanwhile. */
static int wait_retry(struct call *k, int attempt, const struct err *why)
{
    const struct client_opts *o = &k->c->o;
    bool from_server = k->retry_after_set && k->retry_after <= o->retry.retry_after_max_s;
    struct client_retry_info info = {
        .attempt = attempt, .attempts = o->retry.attempts, .http_status = k->res->http_status,
        .message = why->msg, .from_server = from_server,
        .wait_s = from_server ? k->retry_after : client_backoff(&o->retry, attempt)};
    if (o->on_retry)
        o->on_retry(o->on_retry_arg, &info);
    return o->sleep(o->clock_arg, info.wait_s, k->c) || client_cancelled(k->c);
}

static int run_call(struct call *k, const char *url, const char *body, struct err *e)
{
    struct curl_slist *hdrs = make_headers(k);
    if (!hdrs)
        return err_set(e, ERR_NOMEM, "client: out of memory");
    const int attempts = k->c->o.retry.attempts;
    int rc = 0;
    for (int a = 1;; a++) {
        k->res->attempts = a;
        k->res->error_code[0] = '\0';
        bool retry = false;
        if (reset_attempt(k)) {
            rc = err_set(e, ERR_NOMEM, "client: out of memory");
            break;
        }
        rc = finish_attempt(k, perform(k, url, body, hdrs), url, &retry, e);
        if (rc == 0 || !retry || a >= attempts)
            break;
        if (wait_retry(k, a, e)) {
            rc = err_set(e, CLIENT_ERR_CANCELLED, "%s: cancelled while waiting to retry", url);
            break;
        }
    }
    if (rc && rc != CLIENT_ERR_CANCELLED && k->res->attempts > 1) {
        char m[ERR_MSG_MAX];
        snprintf(m, sizeof m, "%s", e->msg);
        err_set(e, rc, "%.440s (%d attempts)", m, k->res->attempts);
    }
    curl_slist_free_all(hdrs);
    return rc;
}

/* Shared by client_chat and client_completion: body in, result out. */
static int call(struct client *c, bool chat, char *body, const struct client_params *p,
                client_delta_fn on_delta, void *user, struct client_result *res, struct err *e)
{
    struct err le = {0};
    bool built = body != NULL; /* else make_body has set e */
    struct call k = {.c = c, .chat = chat, .stream = p->stream, .on_delta = on_delta,
                     .user = user, .res = res};
    int rc = built ? run_call(&k, chat ? c->chat_url : c->completion_url, body, &le)
                  : ERR_INVALID;
    if (rc == 0) {
        res->content = k.content.p ? k.content.p : strdup("");
        res->reasoning = k.reasoning.p;
        k.content.p = k.reasoning.p = NULL;
        if (!res->content)
            rc = err_set(&le, ERR_NOMEM, "client: out of memory");
    }
    free(k.content.p);
    free(k.reasoning.p);
    free(k.body.p);
    sse_free(k.sse);
    free(body);
    atomic_store(&c->cancel, 0);
    if (rc && e && built)
        *e = le;
    return rc;
}

static void result_init(struct client_result *r)
{
    memset(r, 0, sizeof(*r));
    r->prompt_tokens = r->completion_tokens = r->reasoning_tokens = -1;
}

int client_chat(struct client *c, const struct client_message *msgs, size_t n,
                const struct client_params *p, client_delta_fn on_delta, void *user,
                struct client_result *res, struct err *e)
{
    result_init(res);
    struct client_params def;
    if (!p) {
        client_params_default(&def);
        p = &def;
    }
    if (n == 0)
        return err_set(e, ERR_INVALID, "client: a chat needs at least one message");
    char *body = make_body(msgs, n, NULL, p, e);
    return call(c, true, body, p, on_delta, user, res, e);
}

int client_completion(struct client *c, const char *prompt, const struct client_params *p,
                      client_delta_fn on_delta, void *user, struct client_result *res,
                      struct err *e)
{
    result_init(res);
    struct client_params def;
    if (!p) {
        client_params_default(&def);
        p = &def;
    }
    if (!prompt)
        return err_set(e, ERR_INVALID, "client: a completion needs a prompt");
    char *body = make_body(NULL, 0, prompt, p, e);
    return call(c, false, body, p, on_delta, user, res, e);
}
