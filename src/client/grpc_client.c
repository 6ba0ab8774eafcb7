/*
 * grpc_client: gRPC over libcurl's HTTP/2 (see grpc_client.h for the contract). A call
 * is a loop of attempts, as in client.c; one attempt is one curl_easy_perform whose
 * callbacks fill a struct call: the header callback sees the response headers and,
 * once the body is over, the trailers (libcurl hands HTTP/2 trailers to it), the
 * body callback feeds the message reader. After the attempt, finish_attempt decides
 * between success, a retry and a final error.
 */
#include "client/grpc_client.h"
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

#include "client/grpc_wire.h"
#include "proto/deepseek.pb-c.h"

#define ANSWER_MAX (64u << 20) /* bytes of content or reasoning we keep */
#define HEADER_MAX 2048        /* a longer header line is ignored */

struct grpc_client {
    char *url;                 /* "http://host:port" */
    char *unary_url, *stream_url;
    char *auth;                /* "authorization: Bearer KEY" or NULL; wiped at free */
    struct client_opts o;
    CURL *curl;
    bool no_reuse;             /* libcurl < 8.0.0: a fresh connection per call */
    atomic_int cancel;
};

struct buf {
    char *p;
    size_t len, cap;
};

/* One call across its attempts. The fields under "this attempt" are reset per try. */
struct call {
    struct grpc_client *g;
    const char *url;
    bool stream;
    client_delta_fn on_delta;
    void *user;
    struct client_result *res;
    struct buf content, reasoning; /* what the answer holds so far */
    bool delivered;                /* some text went to on_delta: no more retries */
    /* this attempt */
    struct grpc_wire_reader *rd;
    GenerateResponse *unary;       /* a unary call's message, delivered once status is OK */
    bool is_grpc, user_abort, hint_set, no_retry;
    int status;                    /* grpc-status, -1 until seen */
    char message[600];             /* grpc-message, decoded */
    char ctype[64];
    double hint;                   /* seconds, the longest the server asked for */
    int stream_rc;                 /* an error found in the body */
    struct err stream_err;
    char errbuf[CURL_ERROR_SIZE];
};

static int buf_add(struct buf *b, const char *p, size_t n)
{
    if (b->len + n > ANSWER_MAX)
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

/* ------------------------------------------------------------ clock */

static bool cancelled_cb(const void *g)
{
    return grpc_client_cancelled(g);
}

/* Sleeps in slices so a cancel (from a signal handler) ends the wait quickly. */
static int real_sleep(const struct grpc_client *g, double s)
{
    return curlutil_sleep(s, cancelled_cb, g);
}

/* ------------------------------------------------------------ target, lifecycle */

/* The digits after "host:" (NULL: none, the default port). 0 or ERR_INVALID. */
static int parse_port(const char *s, const char *target, long *port, struct err *e)
{
    *port = GRPC_CLIENT_DEFAULT_PORT;
    if (!s)
        return 0;
    size_t nd = strspn(s, "0123456789");
    long v = 0;
    for (size_t i = 0; i < nd && i < 6; i++)
        v = v * 10 + (s[i] - '0');
    if (nd < 1 || nd > 5 || s[nd] || v < 1 || v > 65535)
        return err_set(e, ERR_INVALID, "grpc client: %s: the port must be 1..65535", target);
    *port = v;
    return 0;
}

/* Splits "host[:port]" or "[v6][:port]" in place: *host, *port_s (NULL: none). */
static int split_host(char *hp, const char *target, char **host, char **port_s, bool *v6,
                      struct err *e)
{
    *host = hp;
    *port_s = NULL;
    *v6 = hp[0] == '[';
    char *colon;
    if (*v6) {
        char *close = strchr(hp, ']');
        if (!close || close == hp + 1 || (close[1] && close[1] != ':'))
            return err_set(e, ERR_INVALID, "grpc client: %s: expected [addr]:port", target);
        *close = '\0';
        *host = hp + 1;
        colon = close[1] ? close + 1 : NULL;
    } else {
        colon = strchr(hp, ':');
        if (colon && strchr(colon + 1, ':'))
            return err_set(e, ERR_INVALID, "grpc client: %s: write an IPv6 address as "
                           "[addr]:port", target);
    }
    if (colon) {
        *colon = '\0';
        *port_s = colon + 1;
    }
    if (!**host)
        return err_set(e, ERR_INVALID, "grpc client: %s: no host", target);
    return 0;
}

/* "host[:port]", "[v6]:port", optionally after "http://", into "http://host:port". */
static int parse_target(const char *target, char **url, struct err *e)
{
    const char *t = target;
    *url = NULL;
    if (!strncasecmp(t, "https://", 8))
        return err_set(e, ERR_UNSUPPORTED, "grpc client: %s: the server's gRPC port speaks "
                       "cleartext HTTP/2 only (use http:// or host:port)", target);
    if (!strncasecmp(t, "http://", 7))
        t += 7;
    else if (strstr(t, "://"))
        return err_set(e, ERR_INVALID, "grpc client: %s: only http:// targets", target);
    size_t n = strlen(t);
    while (n && t[n - 1] == '/')
        n--;
    char hp[300], *host, *port_s;
    bool v6;
    long port;
    if (n == 0 || n >= sizeof hp || memchr(t, '/', n))
        return err_set(e, ERR_INVALID, "grpc client: %s: expected host:port (no path)", target);
    memcpy(hp, t, n);
    hp[n] = '\0';
    if (split_host(hp, target, &host, &port_s, &v6, e) || parse_port(port_s, target, &port, e))
        return ERR_INVALID;
    char u[400];
    snprintf(u, sizeof u, v6 ? "http://[%s]:%ld" : "http://%s:%ld", host, port);
    *url = strdup(u);
    return *url ? 0 : err_set(e, ERR_NOMEM, "grpc client: out of memory");
}

/* curl_global_init and a libcurl that can speak HTTP/2. *no_reuse: libcurl before
 * 8.0.0 breaks a reused prior-knowledge HTTP/2 connection ("Error in the HTTP2
 * framing layer" on the second request: curl issue 10634, fixed in 8.0.0), so older
 * ones get a new connection per call (a local TCP connect, nothing next to a
 * generation). */
static int check_curl(bool *no_reuse, struct err *e)
{
    int rc = curlutil_global_init("grpc client", e);
    if (rc)
        return rc;
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    if (!(v->features & CURL_VERSION_HTTP2))
        return err_set(e, ERR_UNSUPPORTED, "grpc client: libcurl %s was built without HTTP/2 "
                       "(nghttp2), which gRPC needs", v->version);
    *no_reuse = v->version_num < 0x080000;
    return 0;
}

struct grpc_client *grpc_client_new(const char *target, const char *api_key,
                                    const struct client_opts *opts, struct err *e)
{
    struct client_opts o;
    if (opts)
        o = *opts;
    else
        client_opts_default(&o);
    if (!target || !*target || strpbrk(target, "\r\n \t")) {
        err_set(e, ERR_INVALID, "grpc client: the server address is empty or has blanks");
        return NULL;
    }
    if (api_key && strpbrk(api_key, "\r\n")) {
        err_set(e, ERR_INVALID, "grpc client: the API key holds a line break");
        return NULL;
    }
    char *url = NULL;
    bool no_reuse = false;
    if (curlutil_check_opts(&o, "grpc client", e) || check_curl(&no_reuse, e) || parse_target(target, &url, e))
        return NULL;
    struct grpc_client *g = calloc(1, sizeof *g);
    if (!g) {
        free(url);
        err_set(e, ERR_NOMEM, "grpc client: out of memory");
        return NULL;
    }
    g->url = url;
    g->no_reuse = no_reuse;
    g->o = o;
    if (!g->o.now)
        g->o.now = curlutil_now;
    atomic_init(&g->cancel, 0);
    g->curl = curl_easy_init();
    g->unary_url = curlutil_join(url, "/DeepSeekService/GenerateText");
    g->stream_url = curlutil_join(url, "/DeepSeekService/GenerateTextStream");
    if (!g->curl || !g->unary_url || !g->stream_url ||
        (api_key && *api_key && !(g->auth = curlutil_join("authorization: Bearer ", api_key)))) {
        err_set(e, ERR_NOMEM, "grpc client: out of memory");
        grpc_client_free(g);
        return NULL;
    }
    return g;
}

void grpc_client_free(struct grpc_client *g)
{
    if (!g)
        return;
    if (g->curl)
        curl_easy_cleanup(g->curl);
    curlutil_wipe_free(g->auth);
    free(g->url);
    free(g->unary_url);
    free(g->stream_url);
    free(g);
}

const char *grpc_client_url(const struct grpc_client *g) { return g->url; }

void grpc_client_cancel(struct grpc_client *g)
{
    atomic_store(&g->cancel, 1);
}

bool grpc_client_cancelled(const struct grpc_client *g)
{
    return atomic_load(&((struct grpc_client *)g)->cancel) != 0;
}

/* ------------------------------------------------------------ request */

/* The GenerateRequest for msgs and p, framed. NULL with e set on error. */
static uint8_t *make_request(const struct client_message *msgs, size_t n,
                             const struct client_params *p, size_t *len, struct err *e)
{
    if (p->has_seed && p->seed == 0) {
        err_set(e, ERR_INVALID, "grpc client: seed 0 cannot be sent over gRPC (proto3 0 "
                "means a random seed); choose another seed");
        return NULL;
    }
    GenerateRequest r = GENERATE_REQUEST__INIT;
    ChatMessage *cm = calloc(n, sizeof *cm);
    ChatMessage **pm = calloc(n, sizeof *pm);
    uint8_t *out = NULL;
    if (!cm || !pm) {
        err_set(e, ERR_NOMEM, "grpc client: out of memory");
        goto free_msgs;
    }
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            err_set(e, ERR_INVALID, "grpc client: message %zu has no role or content", i);
            goto free_msgs;
        }
        chat_message__init(&cm[i]);
        cm[i].role = (char *)msgs[i].role;
        cm[i].content = (char *)msgs[i].content;
        pm[i] = &cm[i];
    }
    r.n_messages = n;
    r.messages = pm;
    if (p->temperature == 0)
        r.top_k = 1; /* proto3's temperature 0 is "the server's default" */
    else if (p->temperature > 0)
        r.temperature = (float)p->temperature;
    if (p->top_p >= 0)
        r.top_p = (float)p->top_p;
    if (p->max_tokens > 0)
        r.max_tokens = p->max_tokens;
    if (p->has_seed)
        r.seed = p->seed;
    if (p->model)
        r.model = (char *)p->model;
    if (!(out = grpc_wire_pack(&r, len)))
        err_set(e, ERR_NOMEM, "grpc client: out of memory");
free_msgs:
    free(pm);
    free(cm);
    return out;
}

static struct curl_slist *make_headers(const struct grpc_client *g)
{
    char timeout[48] = "";
    if (g->o.timeout_ms > 0) /* grpc-timeout has at most 8 digits */
        snprintf(timeout, sizeof timeout, g->o.timeout_ms <= 99999999 ? "grpc-timeout: %ldm"
                 : "grpc-timeout: %ldS", g->o.timeout_ms <= 99999999 ? g->o.timeout_ms
                 : (g->o.timeout_ms + 999) / 1000);
    const char *lines[] = {"content-type: application/grpc", "te: trailers", "Expect:",
                           "Accept:", "user-agent: deepseek-local-grpc-c", g->auth,
                           timeout[0] ? timeout : NULL};
    struct curl_slist *h = NULL, *t;
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

/* ------------------------------------------------------------ answer */

/* Hands text to the caller and keeps it for the result. */
static int deliver(struct call *k, enum client_part part, const char *s, size_t n)
{
    if (!n)
        return 0;
    if (buf_add(part == CLIENT_PART_REASONING ? &k->reasoning : &k->content, s, n))
        return err_set(&k->stream_err, ERR_NOMEM, "grpc: the answer is over %u bytes or out "
                       "of memory", ANSWER_MAX);
    k->delivered = true;
    if (k->on_delta && k->on_delta(k->user, part, s, n)) {
        k->user_abort = true;
        return CLIENT_ERR_CANCELLED;
    }
    return 0;
}

/* Counts and finish reason (the unary message, or a stream's last one), then text. */
static int take_response(struct call *k, const GenerateResponse *r)
{
    if (r->finish_reason[0]) {
        snprintf(k->res->finish_reason, sizeof k->res->finish_reason, "%s", r->finish_reason);
        k->res->completion_tokens = r->token_count;
        k->res->prompt_tokens = r->prompt_tokens;
    }
    int rc = deliver(k, CLIENT_PART_REASONING, r->reasoning, strlen(r->reasoning));
    return rc ? rc : deliver(k, CLIENT_PART_CONTENT, r->text, strlen(r->text));
}

/* One complete message from the reader. */
static int on_message(void *arg, const uint8_t *msg, size_t len)
{
    struct call *k = arg;
    size_t index = grpc_wire_count(k->rd) - 1;
    if (!k->stream && k->unary)
        return err_set(&k->stream_err, ERR_FORMAT, "grpc: a second message (%zu) in a unary "
                       "answer", index);
    GenerateResponse *r = generate_response__unpack(NULL, len, msg);
    if (!r)
        return err_set(&k->stream_err, ERR_FORMAT, "grpc: message %zu (%zu bytes) is not a "
                       "GenerateResponse", index, len);
    if (!k->stream) {
        k->unary = r; /* delivered once the status says OK */
        return 0;
    }
    int rc = take_response(k, r);
    generate_response__free_unpacked(r, NULL);
    return rc;
}

/* ------------------------------------------------------------ curl callbacks */

/* A millisecond hint; negative grpc-retry-pushback-ms: no retry. -1 if unusable. */
static double ms_hint(struct call *k, const char *value, bool pushback)
{
    char *end;
    errno = 0;
    double ms = strtod(value, &end);
    if (errno || end == value || !isfinite(ms))
        return -1;
    if (ms < 0 && pushback)
        k->no_retry = true;
    return ms >= 0 ? ms / 1000.0 : -1;
}

/* One header or trailer, split into name and value (blanks and CRLF trimmed). */
static void take_header(struct call *k, const char *name, const char *value)
{
    double w = -1;
    if (!strcasecmp(name, "grpc-status")) {
        if (grpc_wire_parse_status(value, &k->status)) {
            k->status = GRPC_WIRE_UNKNOWN;
            snprintf(k->message, sizeof k->message, "grpc-status `%.32s` is not a number",
                     value);
        }
    } else if (!strcasecmp(name, "grpc-message")) {
        grpc_wire_percent_decode(value, strlen(value), k->message, sizeof k->message);
    } else if (!strcasecmp(name, "retry-after")) {
        if (client_parse_retry_after(value, k->g->o.now(k->g->o.clock_arg), &w))
            w = -1;
    } else if (!strcasecmp(name, "retry-after-ms")) {
        w = ms_hint(k, value, false);
    } else if (!strcasecmp(name, "grpc-retry-pushback-ms")) {
        w = ms_hint(k, value, true);
    } else if (!strcasecmp(name, "content-type")) {
        snprintf(k->ctype, sizeof k->ctype, "%.63s", value);
        k->is_grpc = !strncasecmp(value, "application/grpc", 16);
    }
    if (w >= 0 && (!k->hint_set || w > k->hint)) {
        k->hint = w;
        k->hint_set = true;
    }
}

static size_t on_header(char *line, size_t size, size_t nitems, void *arg)
{
    struct call *k = arg;
    size_t n = size * nitems;
    if (n >= 5 && !strncmp(line, "HTTP/", 5)) { /* a new response: forget the last */
        k->status = -1;
        k->message[0] = k->ctype[0] = '\0';
        k->is_grpc = k->hint_set = k->no_retry = false;
        k->hint = 0;
        return n;
    }
    char name[64], value[HEADER_MAX];
    if (curlutil_header(line, n, name, sizeof name, value, sizeof value))
        take_header(k, name, value);
    return n;
}

static long status_of(struct call *k)
{
    long status = 0;
    curl_easy_getinfo(k->g->curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* Body bytes: the message reader for a gRPC answer; anything else is dropped (its
 * status says what went wrong). Returning less than n stops curl. */
static size_t on_body(char *p, size_t size, size_t nitems, void *arg)
{
    struct call *k = arg;
    size_t n = size * nitems;
    if (grpc_client_cancelled(k->g))
        return 0;
    if (!k->is_grpc || status_of(k) != 200)
        return n;
    struct err we = {0};
    int rc = grpc_wire_feed(k->rd, (const uint8_t *)p, n, &we);
    if (rc && rc != CLIENT_ERR_CANCELLED && !k->stream_rc) {
        k->stream_rc = rc;
        if (!k->stream_err.code) /* else on_message has said what was wrong */
            k->stream_err = we;
    }
    return rc ? 0 : n;
}

/* Called by curl while connecting and transferring: our way to stop it. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    struct call *k = arg;
    return grpc_client_cancelled(k->g) ? 1 : 0;
}

/* ------------------------------------------------------------ one attempt */

/* Statuses that say the server (or the network) failed, not the request. */
static bool server_side(int status)
{
    switch (status) {
    case GRPC_WIRE_CANCELLED:
    case GRPC_WIRE_UNKNOWN:
    case GRPC_WIRE_DEADLINE_EXCEEDED:
    case GRPC_WIRE_RESOURCE_EXHAUSTED:
    case GRPC_WIRE_ABORTED:
    case GRPC_WIRE_INTERNAL:
    case GRPC_WIRE_UNAVAILABLE:
    case GRPC_WIRE_DATA_LOSS:
        return true;
    default:
        return false;
    }
}

static int reset_attempt(struct call *k)
{
    grpc_wire_reader_free(k->rd);
    k->rd = grpc_wire_reader_new(GRPC_WIRE_MAX_DEFAULT, on_message, k);
    if (k->unary)
        generate_response__free_unpacked(k->unary, NULL);
    k->unary = NULL;
    k->is_grpc = k->user_abort = k->hint_set = k->no_retry = false;
    k->status = -1;
    k->message[0] = k->ctype[0] = '\0';
    k->hint = 0;
    k->stream_rc = 0;
    err_clear(&k->stream_err);
    k->errbuf[0] = '\0';
    return k->rd ? 0 : ERR_NOMEM;
}

static CURLcode perform(struct call *k, const uint8_t *body, size_t len,
                        struct curl_slist *hdrs)
{
    CURL *cu = k->g->curl;
    curl_easy_reset(cu); /* keeps the connection cache: a retry may reuse it */
    curl_easy_setopt(cu, CURLOPT_URL, k->url);
    curl_easy_setopt(cu, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cu, CURLOPT_TCP_KEEPALIVE, 1L);
    if (k->g->no_reuse) {
        curl_easy_setopt(cu, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(cu, CURLOPT_FORBID_REUSE, 1L);
    }
    curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT_MS, k->g->o.connect_timeout_ms);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, k->g->o.timeout_ms);
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

/* A failed attempt's status: error_code, message, and whether to try again. */
static int status_error(struct call *k, int status, const char *what, bool retryable,
                        bool *retry, struct err *e)
{
    snprintf(k->res->error_code, sizeof k->res->error_code, "%s",
             grpc_wire_status_name(status));
    *retry = retryable && !k->delivered && !k->no_retry;
    return err_set(e, server_side(status) ? ERR_IO : ERR_INVALID, "gRPC %s (%d): %.400s",
                   grpc_wire_status_name(status), status, what);
}

/* The answer arrived and its status is not OK (or missing). */
static int answer_error(struct call *k, long http, bool *retry, struct err *e)
{
    char what[500];
    if (http != 200) {
        int st = k->status >= 0 ? k->status : grpc_wire_status_of_http(http);
        snprintf(what, sizeof what, "%s: HTTP %ld%s%.300s", k->url, http,
                 k->message[0] ? ": " : " (not a gRPC answer)", k->message);
        return status_error(k, st, what, st == GRPC_WIRE_UNAVAILABLE, retry, e);
    }
    if (!k->is_grpc && k->status < 0) {
        snprintf(what, sizeof what, "%s: content-type `%s` is not application/grpc", k->url,
                 k->ctype);
        status_error(k, GRPC_WIRE_UNKNOWN, what, false, retry, e);
        return ERR_FORMAT;
    }
    if (k->status < 0) {
        snprintf(what, sizeof what, "%s: the answer ended without a grpc-status", k->url);
        return status_error(k, GRPC_WIRE_UNAVAILABLE, what, true, retry, e);
    }
    snprintf(what, sizeof what, "%.400s", k->message[0] ? k->message : "(no grpc-message)");
    return status_error(k, k->status, what, k->status == GRPC_WIRE_UNAVAILABLE ||
                        k->status == GRPC_WIRE_RESOURCE_EXHAUSTED, retry, e);
}

/* Decides what an attempt came to: 0, or an error with *retry saying whether
 * another try may help. */
static int finish_attempt(struct call *k, CURLcode cc, bool *retry, struct err *e)
{
    *retry = false;
    long http = status_of(k);
    k->res->http_status = (int)http;
    int rc = k->stream_rc;
    if (!rc && cc == CURLE_OK && http == 200 && k->is_grpc)
        rc = grpc_wire_finish(k->rd, &k->stream_err);
    if (!rc && cc == CURLE_OK && k->status == GRPC_WIRE_OK && !k->stream && k->unary)
        rc = take_response(k, k->unary);
    if (k->user_abort || grpc_client_cancelled(k->g) || rc == CLIENT_ERR_CANCELLED)
        return err_set(e, CLIENT_ERR_CANCELLED, "%s: cancelled", k->url);
    if (rc) {
        snprintf(k->res->error_code, sizeof k->res->error_code, "INTERNAL");
        return err_set(e, rc, "gRPC INTERNAL (13): %s: %.400s", k->url, k->stream_err.msg);
    }
    if (cc != CURLE_OK) {
        char what[500];
        snprintf(what, sizeof what, "%s: %s", k->url,
                 k->errbuf[0] ? k->errbuf : curl_easy_strerror(cc));
        status_error(k, GRPC_WIRE_UNAVAILABLE, what, curlutil_retryable(cc), retry, e);
        return ERR_IO;
    }
    if (http != 200 || k->status != GRPC_WIRE_OK)
        return answer_error(k, http, retry, e);
    if (!k->stream && !k->unary) {
        snprintf(k->res->error_code, sizeof k->res->error_code, "INTERNAL");
        return err_set(e, ERR_FORMAT, "gRPC INTERNAL (13): %s: status OK without a message",
                       k->url);
    }
    return 0;
}

/* ------------------------------------------------------------ the call */

/* Waits before the next try; nonzero when cancelled meanwhile. */
static int wait_retry(struct call *k, int attempt, const struct err *why)
{
    const struct client_opts *o = &k->g->o;
    bool from_server = k->hint_set && k->hint <= o->retry.retry_after_max_s;
    struct client_retry_info info = {
        .attempt = attempt, .attempts = o->retry.attempts, .http_status = k->res->http_status,
        .message = why->msg, .from_server = from_server,
        .wait_s = from_server ? k->hint : client_backoff(&o->retry, attempt)};
    if (o->on_retry)
        o->on_retry(o->on_retry_arg, &info);
    int stop = o->sleep ? o->sleep(o->clock_arg, info.wait_s, NULL)
                        : real_sleep(k->g, info.wait_s);
    return stop || grpc_client_cancelled(k->g);
}

static int run_call(struct call *k, const uint8_t *body, size_t len, struct err *e)
{
    struct curl_slist *hdrs = make_headers(k->g);
    if (!hdrs)
        return err_set(e, ERR_NOMEM, "grpc client: out of memory");
    const int attempts = k->g->o.retry.attempts;
    int rc = 0;
    for (int a = 1;; a++) {
        k->res->attempts = a;
        k->res->error_code[0] = '\0';
        bool retry = false;
        if (reset_attempt(k)) {
            rc = err_set(e, ERR_NOMEM, "grpc client: out of memory");
            break;
        }
        rc = finish_attempt(k, perform(k, body, len, hdrs), &retry, e);
        if (rc == 0 || !retry || a >= attempts)
            break;
        if (wait_retry(k, a, e)) {
            rc = err_set(e, CLIENT_ERR_CANCELLED, "%s: cancelled while waiting to retry",
                         k->url);
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

int grpc_client_chat(struct grpc_client *g, const struct client_message *msgs, size_t n,
                     const struct client_params *p, client_delta_fn on_delta, void *user,
                     struct client_result *res, struct err *e)
{
    memset(res, 0, sizeof *res);
    res->prompt_tokens = res->completion_tokens = res->reasoning_tokens = -1;
    struct client_params def;
    if (!p) {
        client_params_default(&def);
        p = &def;
    }
    if (n == 0)
        return err_set(e, ERR_INVALID, "grpc client: a chat needs at least one message");
    struct err le = {0};
    size_t len = 0;
    uint8_t *body = make_request(msgs, n, p, &len, &le);
    if (!body) {
        if (e)
            *e = le;
        return le.code;
    }
    struct call k = {.g = g, .url = p->stream ? g->stream_url : g->unary_url,
                     .stream = p->stream, .on_delta = on_delta, .user = user, .res = res};
    int rc = run_call(&k, body, len, &le);
    if (rc == 0) {
        res->content = k.content.p ? k.content.p : strdup("");
        res->reasoning = k.reasoning.p;
        k.content.p = k.reasoning.p = NULL;
        if (!res->content)
            rc = err_set(&le, ERR_NOMEM, "grpc client: out of memory");
    }
    free(k.content.p);
    free(k.reasoning.p);
    grpc_wire_reader_free(k.rd);
    if (k.unary)
        generate_response__free_unpacked(k.unary, NULL);
    free(body);
    atomic_store(&g->cancel, 0);
    if (rc && e)
        *e = le;
    return rc;
}
