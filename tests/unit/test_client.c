/* Unit tests for client/client and client/sse: the retry policy (tenacity's
 * schedule, Retry-After in seconds, dates and milliseconds, 429/503 retried, other
 * 4xx not, connection refused retried, the last error after the last try), streamed
 * and whole answers with reasoning, broken streams, cancellation, and the SSE parser
 * fed byte by byte. The server is libevent's evhttp on 127.0.0.1 in a thread of this
 * process, answering from a script; the client's sleep is injected and only records
 * the waits, so nothing here waits for a back-off. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "client/client.h"
#include "client/curlutil.h"
#include "client/sse.h"

/* ------------------------------------------------------------ scripted server */

#define MAX_STEPS 8
#define MAX_CHUNKS 16

struct step {
    int status;              /* 0: never answer (the request hangs) */
    const char *headers[4];  /* "Name: value" */
    const char *body;        /* whole body, or NULL with chunks */
    const char *chunks[MAX_CHUNKS]; /* a streamed body, sent piece by piece */
};

struct fake {
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
    int port;
    pthread_mutex_t mu;
    struct step steps[MAX_STEPS];
    int n_steps, hits;
    char path[128], auth[128], body[4096];
};

static void add_header(struct evhttp_request *req, const char *line)
{
    const char *colon = strchr(line, ':');
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(colon - line), line);
    evhttp_add_header(evhttp_request_get_output_headers(req), name, colon + 2);
}

static void handle(struct evhttp_request *req, void *arg)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->mu);
    int i = f->hits < f->n_steps ? f->hits : f->n_steps - 1;
    f->hits++;
    snprintf(f->path, sizeof f->path, "%s", evhttp_request_get_uri(req));
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    snprintf(f->auth, sizeof f->auth, "%s", auth ? auth : "");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n >= sizeof f->body)
        n = sizeof f->body - 1;
    evbuffer_copyout(in, f->body, n);
    f->body[n] = '\0';
    struct step s = f->steps[i];
    pthread_mutex_unlock(&f->mu);
    if (s.status == 0)
        return; /* hang: the client has to give up by itself */
    for (int h = 0; h < 4 && s.headers[h]; h++)
        add_header(req, s.headers[h]);
    struct evbuffer *out = evbuffer_new();
    if (s.body) {
        evbuffer_add(out, s.body, strlen(s.body));
        evhttp_send_reply(req, s.status, "x", out);
    } else {
        evhttp_send_reply_start(req, s.status, "x");
        for (int c = 0; c < MAX_CHUNKS && s.chunks[c]; c++) {
            evbuffer_add(out, s.chunks[c], strlen(s.chunks[c]));
            evhttp_send_reply_chunk(req, out);
        }
        evhttp_send_reply_end(req);
    }
    evbuffer_free(out);
}

static void *serve(void *arg)
{
    struct fake *f = arg;
    event_base_loop(f->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static struct fake *fake_start(const struct step *steps, int n)
{
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    memcpy(f->steps, steps, (size_t)n * sizeof(*steps));
    f->n_steps = n;
    f->base = event_base_new();
    f->http = evhttp_new(f->base);
    assert_non_null(f->http);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
    assert_non_null(bs);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    evhttp_set_gencb(f->http, handle, f);
    assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
    return f;
}

static void fake_stop(struct fake *f)
{
    event_base_loopbreak(f->base);
    pthread_join(f->thread, NULL);
    evhttp_free(f->http);
    event_base_free(f->base);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static int fake_hits(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->hits;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* ------------------------------------------------------------ injected clock */

struct clock {
    double now;
    double waits[16];
    int n_waits;
    int cancel_on_wait; /* 1: a "Ctrl-C" arrives during the first wait */
    int retries_seen, last_status, last_from_server;
};

static double clock_now(void *arg)
{
    return ((struct clock *)arg)->now;
}

static int clock_sleep(void *arg, double s, const struct client *c)
{
    struct clock *k = arg;
    if (k->n_waits < 16)
        k->waits[k->n_waits++] = s;
    k->now += s;
    if (k->cancel_on_wait)
        client_cancel((struct client *)c);
    return client_cancelled(c);
}

static void note_retry(void *arg, const struct client_retry_info *r)
{
    struct clock *k = arg;
    k->retries_seen++;
    k->last_status = r->http_status;
    k->last_from_server = r->from_server;
    assert_int_equal(r->attempt, k->retries_seen);
    assert_true(r->message && r->message[0]);
}

static struct client *new_client(struct fake *f, const char *suffix, struct clock *k)
{
    struct client_opts o;
    client_opts_default(&o);
    o.now = clock_now;
    o.sleep = clock_sleep;
    o.clock_arg = k;
    o.on_retry = note_retry;
    o.on_retry_arg = k;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", f ? f->port : 1, suffix);
    struct err e = {0};
    struct client *c = client_new(url, "sk-test-key", &o, &e);
    assert_non_null(c);
    return c;
}

static const char *ANSWER =
    "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
    "\"finish_reason\":\"stop\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi!\","
    "\"reasoning_content\":\"The user greets.\"}}],\"usage\":{\"prompt_tokens\":6,"
    "\"completion_tokens\":9,\"total_tokens\":15,"
    "\"completion_tokens_details\":{\"reasoning_tokens\":4}}}";
static const char *ERR_429 = "{\"error\":{\"message\":\"Rate limit reached.\",\"type\":"
                             "\"rate_limit_error\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}";
static const char *ERR_503 = "{\"error\":{\"message\":\"The server is overloaded.\",\"type\":"
                             "\"service_unavailable_error\",\"param\":null,"
                             "\"code\":\"server_is_overloaded\"}}";
static const char *ERR_400 = "{\"error\":{\"message\":\"temperature must be in [0, 2]\","
                             "\"type\":\"invalid_request_error\",\"param\":\"temperature\","
                             "\"code\":\"invalid_value\"}}";

static const struct client_message HELLO[] = {{"system", "Be brief."}, {"user", "Hello"}};

/* What the delta callback saw, in order, with parts marked R: and C:. */
struct seen {
    char text[1024];
    int calls, stop_after;
};

static int on_delta(void *user, enum client_part part, const char *s, size_t n)
{
    struct seen *w = user;
    size_t at = strlen(w->text);
    snprintf(w->text + at, sizeof w->text - at, "%s%.*s",
             part == CLIENT_PART_REASONING ? "R:" : "C:", (int)n, s);
    return ++w->calls == w->stop_after;
}

/* ------------------------------------------------------------ the retry policy */

static void test_backoff_schedule(void **state)
{
    (void)state;
    struct client_opts o;
    client_opts_default(&o);
    assert_int_equal(o.retry.attempts, 3);
    const double want[] = {4, 4, 4, 8, 10, 10}; /* tenacity: 1*2^(n-1) in [4, 10] */
    for (int a = 1; a <= 6; a++)
        assert_true(client_backoff(&o.retry, a) == want[a - 1]);
    struct client_retry r = {5, 0.5, 0, 100, 60};
    assert_true(client_backoff(&r, 1) == 0.5);
    assert_true(client_backoff(&r, 4) == 4.0);
    assert_true(client_backoff(&r, 200) == 100.0); /* no overflow for huge attempts */
}

/* The header-line split both clients use: blanks and CRLF trimmed, status lines,
 * colon-less and over-long lines refused. */
static void test_header_split(void **state)
{
    (void)state;
    char name[16], value[32];
    const char *l = "Retry-After: \t 7\r\n";
    assert_true(curlutil_header(l, strlen(l), name, sizeof name, value, sizeof value));
    assert_string_equal(name, "Retry-After");
    assert_string_equal(value, "7");
    l = "x:\r\n";
    assert_true(curlutil_header(l, strlen(l), name, sizeof name, value, sizeof value));
    assert_string_equal(value, "");
    l = "HTTP/1.1 200 OK\r\n";
    assert_false(curlutil_header(l, strlen(l), name, sizeof name, value, sizeof value));
    l = "a-very-long-header-name: 1\r\n"; /* name over its buffer */
    assert_false(curlutil_header(l, strlen(l), name, sizeof name, value, 64));
    l = "a: 0123456789abcdef0123456789abcdef\r\n"; /* line over the value buffer */
    assert_false(curlutil_header(l, strlen(l), name, sizeof name, value, sizeof value));
}

static void test_parse_retry_after(void **state)
{
    (void)state;
    double w = -1;
    assert_int_equal(client_parse_retry_after("1", 0, &w), 0);
    assert_true(w == 1);
    assert_int_equal(client_parse_retry_after(" 120 ", 0, &w), 0);
    assert_true(w == 120);
    const double date = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */
    assert_int_equal(client_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", date - 30, &w), 0);
    assert_true(w == 30);
    assert_int_equal(client_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", date + 5, &w), 0);
    assert_true(w == 0); /* a date in the past: go now */
    const char *bad[] = {"", "-1", "1.5", "abc", "12abc", "+3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(client_parse_retry_after(bad[i], 0, &w), ERR_FORMAT);
}

static void test_429_then_ok_waits_retry_after(void **state)
{
    (void)state;
    struct step s[] = {{429, {"Retry-After: 1", "x-ratelimit-remaining-requests: 0"}, ERR_429, {0}},
                       {200, {"Content-Type: application/json"}, ANSWER, {0}}};
    struct fake *f = fake_start(s, 2);
    struct clock k = {.now = 1e9};
    struct client *c = new_client(f, "", &k);
    struct client_result r;
    struct seen w = {0};
    struct err e = {0};
    assert_int_equal(client_chat(c, HELLO, 2, NULL, on_delta, &w, &r, &e), 0);
    assert_int_equal(fake_hits(f), 2);
    assert_int_equal(k.n_waits, 1);
    assert_true(k.waits[0] == 1.0); /* the server's word, not the 4 s back-off */
    assert_int_equal(k.last_status, 429);
    assert_true(k.last_from_server);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.http_status, 200);
    assert_string_equal(r.content, "Hi!");
    assert_string_equal(r.reasoning, "The user greets.");
    assert_string_equal(w.text, "R:The user greets.C:Hi!");
    assert_string_equal(r.finish_reason, "stop");
    assert_int_equal(r.prompt_tokens, 6);
    assert_int_equal(r.completion_tokens, 9);
    assert_int_equal(r.reasoning_tokens, 4);
    /* What went over the wire: the path, the key, the messages. */
    assert_string_equal(f->path, "/v1/chat/completions");
    assert_string_equal(f->auth, "Bearer sk-test-key");
    assert_non_null(strstr(f->body, "{\"role\":\"system\",\"content\":\"Be brief.\"}"));
    assert_null(strstr(f->body, "temperature")); /* unset params are left out */
    client_result_free(&r);
    client_free(c);
    fake_stop(f);
}

static void test_503_three_times_fails_with_last_error(void **state)
{
    (void)state;
    struct step s[] = {{503, {0}, ERR_503, {0}}}; /* no Retry-After: back-off */
    struct fake *f = fake_start(s, 1);
    struct clock k = {0};
    struct client *c = new_client(f, "", &k);
    struct client_result r;
    struct err e = {0};
    assert_int_equal(client_chat(c, HELLO, 2, NULL, NULL, NULL, &r, &e), ERR_IO);
    assert_int_equal(fake_hits(f), 3);
    assert_int_equal(k.n_waits, 2);
    assert_true(k.waits[0] == 4.0 && k.waits[1] == 4.0);
    assert_false(k.last_from_server);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(r.http_status, 503);
    assert_string_equal(r.error_code, "server_is_overloaded");
    assert_null(r.content);
    assert_non_null(strstr(e.msg, "HTTP 503 server_is_overloaded: The server is overloaded."));
    assert_non_null(strstr(e.msg, "(3 attempts)"));
    client_result_free(&r);
    client_free(c);
    fake_stop(f);
}

static void test_4xx_not_retried(void **state)
{
    (void)state;
    const int codes[] = {400, 401, 403, 404, 413};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        struct step s[] = {{codes[i], {"Retry-After: 1"}, ERR_400, {0}},
                           {200, {0}, ANSWER, {0}}};
        struct fake *f = fake_start(s, 2);
        struct clock k = {0};
        struct client *c = new_client(f, "", &k);
        struct client_result r;
        struct err e = {0};
        assert_int_equal(client_chat(c, HELLO, 2, NULL, NULL, NULL, &r, &e), ERR_INVALID);
        assert_int_equal(fake_hits(f), 1);
        assert_int_equal(k.n_waits, 0);
        assert_int_equal(r.http_status, codes[i]);
        assert_string_equal(r.error_code, "invalid_value");
        assert_non_null(strstr(e.msg, "temperature must be in [0, 2]"));
        assert_null(strstr(e.msg, "attempts"));
        client_result_free(&r);
        client_free(c);
        fake_stop(f);
    }
}

static void test_500_not_retried_502_is(void **state)
{
    (void)state;
    struct step s[] = {{500, {0}, "oops", {0}}};
    struct fake *f = fake_start(s, 1);
    struct clock k = {0};
    struct client *c = new_client(f, "", &k);
    struct client_result r;
    struct err e = {0};
    assert_int_equal(client_chat(c, HELLO, 2, NULL, NULL, NULL, &r, &e), ERR_IO);
    assert_int_equal(fake_hits(f), 1);
    assert_non_null(strstr(e.msg, "HTTP 500"));
    client_result_free(&r);
    client_free(c);
    fake_stop(f);
    struct step s2[] = {{502, {0}, "<html>bad gateway</html>", {0}}, {200, {0}, ANSWER, {0}}};
    f = fake_start(s2, 2);
    c = new_client(f, "", &k);
    assert_int_equal(client_chat(c, HELLO, 2, NULL, NULL, NULL, &r, &e), 0);
    assert_int_equal(fake_hits(f), 2);
    client_result_free(&r);
    client_free(c);
    fake_stop(f);
}

static void test_connection_refused_retried(void **state)
{
    (void)state;
    /* A port that was free a moment ago: bind, read it, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    struct client_opts o;
    client_opts_default(&o);
    struct clock k = {0};
    o.now = clock_now;
    o.sleep = clock_sleep;
    o.clock_arg = &k;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(sa.sin_port));
    struct client *c = client_new(url, NULL, &o, NULL);
    assert_non_null(c);
    struct client_result r;
    struct err e = {0};
    assert_int_equal(client_chat(c, HELLO, 2, NULL, NULL, NULL, &r, &e), ERR_IO);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(r.http_status, 0);
    assert_int_equal(k.n_waits, 2);
    assert_true(k.waits[0] == 4.0 && k.waits[1] == 4.0);
    assert_non_null(strstr(e.msg, "(3 attempts)"));
    client_result_free(&r);
    client_free(c);
}

/* Retry-After over retry_after_max_s is not honoured; several: the longest wins;
 * retry-after-ms and dates work; 0 means at once. */
static void test_retry_after_variants(void **state)
{
    (void)state;
    struct {
        const char *h[2];
        double want;
        int from_server;
    } cases[] = {
        {{"Retry-After: 120", NULL}, 4.0, 0},
        {{"Retry-After: 1", "Retry-After: 7"}, 7.0, 1},
        {{"retry-after-ms: 250", NULL}, 0.25, 1},
        {{"Retry-After: Wed, 21 Oct 2015 07:28:09 GMT", NULL}, 9.0, 1},
        {{"Retry-After: 0", NULL}, 0.0, 1},
        {{"Retry-After: soon", NULL}, 4.0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct step s[] = {{429, {cases[i].h[0], cases[i].h[1]}, ERR_429, {0}},
                           {200, {0}, ANSWER, {0}}};
        struct fake *f = fake_start(s, 2);
        struct clock k = {.now = 1445412480}; /* 07:28:00 */
        struct client *c = new_client(f, "", &k);
        struct client_result r;
        struct err e = {0};
        assert_int_equal(client_chat(c, HELLO, 2, NULL, NULL, NULL, &r, &e), 0);
        assert_int_equal(k.n_waits, 1);
        if (k.waits[0] != cases[i].want)
            fail_msg("case %zu: waited %g, want %g", i, k.waits[0], cases[i].want);
        assert_int_equal(k.last_from_server, cases[i].from_server);
        client_result_free(&r);
        client_free(c);
        fake_stop(f);
    }
}

/* ------------------------------------------------------------ streaming */

static void test_stream_split_chunks(void **state)
{
    (void)state;
    /* Lines cut mid-JSON, a "\r\n" cut in two, a keep-alive comment, a usage chunk. */
    struct step s[] = {{200, {"Content-Type: text/event-stream"}, NULL,
                        {": keep-alive\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                         "\"assistant\",\"content\":\"\"}}]}\n\nda",
                         "ta: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"Thi",
                         "nk\"}}]}\r", "\n\r\ndata: {\"choices\":[{\"index\":0,\"delta\":"
                         "{\"reasoning_content\":\"ing.\"}}]}\n\n",
                         "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
                         "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u00e9\"}}]}",
                         "\n\ndata: {\"choices\":[{\"index\":0,\"finish_reason\":\"length\","
                         "\"delta\":{}}]}\n\n",
                         "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
                         "\"completion_tokens\":5}}\n\ndata: [DONE]\n\n"}}};
    struct fake *f = fake_start(s, 1);
    struct clock k = {0};
    struct client *c = new_client(f, "/v1/", &k);
    struct client_params p;
    client_params_default(&p);
    p.stream = true;
    p.model = "tiny";
    p.temperature = 0;
    p.max_tokens = 5;
    struct client_result r;
    struct seen w = {0};
    struct err e = {0};
    assert_int_equal(client_chat(c, HELLO, 2, &p, on_delta, &w, &r, &e), 0);
    assert_string_equal(f->path, "/v1/chat/completions"); /* a /v1 base is not doubled */
    assert_non_null(strstr(f->body, "\"stream\":true"));
    assert_non_null(strstr(f->body, "\"model\":\"tiny\""));
    assert_non_null(strstr(f->body, "\"max_tokens\":5"));
    assert_non_null(strstr(f->body, "\"temperature\":0"));
    assert_string_equal(w.text, "R:ThinkR:ing.C:HelC:lo \xc3\xa9");
    assert_string_equal(r.reasoning, "Thinking.");
    assert_string_equal(r.content, "Hello \xc3\xa9");
    assert_string_equal(r.finish_reason, "length");
    assert_int_equal(r.prompt_tokens, 3);
    assert_int_equal(r.completion_tokens, 5);
    assert_int_equal(r.reasoning_tokens, -1);
    client_result_free(&r);
    client_free(c);
    fake_stop(f);
}

static void test_stream_cut_before_text_is_retried(void **state)
{
    (void)state;
    const char *delta = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\"}}]}\n\n";
    struct step s[] = {{200, {"Content-Type: text/event-stream"}, NULL, {": keep-alive\n\n"}},
                       {200, {"Content-Type: text/event-stream"}, NULL, {delta, "data: [DONE]\n\n"}}};
    struct fake *f = fake_start(s, 2);
    struct clock k = {0};
    struct client *c = new_client(f, "", &k);
    struct client_params p;
    client_params_default(&p);
    p.stream = true;
    struct client_result r;
    struct seen w = {0};
    struct err e = {0};
    assert_int_equal(client_chat(c, HELLO, 2, &p, on_delta, &w, &r, &e), 0);
    assert_int_equal(fake_hits(f), 2);
    assert_string_equal(w.text, "C:A");
    client_result_free(&r);
    client_free(c);
    fake_stop(f);
}

static void test_stream_cut_after_text_is_not_retried(void **state)
{
    (void)state;
    const char *delta = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\"}}]}\n\n";
    const char *err = "data: {\"error\":{\"message\":\"engine failed\",\"type\":\"server_error\","
                      "\"code\":\"internal_error\"}}\n\ndata: [DONE]\n\n";
    const struct step cases[] = {
        {200, {"Content-Type: text/event-stream"}, NULL, {delta}},      /* no [DONE] */
        {200, {"Content-Type: text/event-stream"}, NULL, {delta, err}}, /* an error chunk */
    };
    for (int i = 0; i < 2; i++) {
        struct step s[] = {cases[i], {200, {0}, ANSWER, {0}}};
        struct fake *f = fake_start(s, 2);
        struct clock k = {0};
        struct client *c = new_client(f, "", &k);
        struct client_params p;
        client_params_default(&p);
        p.stream = true;
        struct client_result r;
        struct seen w = {0};
        struct err e = {0};
        assert_int_equal(client_chat(c, HELLO, 2, &p, on_delta, &w, &r, &e), ERR_IO);
        assert_int_equal(fake_hits(f), 1); /* text was shown: never silently restart */
        assert_string_equal(w.text, "C:A");
        assert_non_null(strstr(e.msg, i == 0 ? "before [DONE]" : "internal_error: engine failed"));
        client_result_free(&r);
        client_free(c);
        fake_stop(f);
    }
}

static void test_completion(void **state)
{
    (void)state;
    struct step s[] = {{200, {0},
                        "{\"choices\":[{\"index\":0,\"text\":\" world\",\"finish_reason\":\"stop\"}]}",
                        {0}}};
    struct fake *f = fake_start(s, 1);
    struct clock k = {0};
    struct client *c = new_client(f, "", &k);
    struct client_result r;
    struct seen w = {0};
    struct err e = {0};
    assert_int_equal(client_completion(c, "Hello", NULL, on_delta, &w, &r, &e), 0);
    assert_string_equal(f->path, "/v1/completions");
    assert_non_null(strstr(f->body, "\"prompt\":\"Hello\""));
    assert_string_equal(r.content, " world");
    assert_null(r.reasoning);
    assert_string_equal(w.text, "C: world");
    client_result_free(&r);
    client_free(c);
    fake_stop(f);
}

static void test_bad_answers(void **state)
{
    (void)state;
    const char *bodies[] = {"not json", "{\"choices\":[]}", "{\"error\":\"x\"}"};
    for (int i = 0; i < 3; i++) {
        struct step s[] = {{200, {0}, bodies[i], {0}}};
        struct fake *f = fake_start(s, 1);
        struct clock k = {0};
        struct client *c = new_client(f, "", &k);
        struct client_result r;
        struct err e = {0};
        assert_int_equal(client_chat(c, HELLO, 2, NULL, NULL, NULL, &r, &e), ERR_FORMAT);
        assert_int_equal(fake_hits(f), 1);
        assert_null(r.content);
        client_result_free(&r);
        client_free(c);
        fake_stop(f);
    }
}

/* ------------------------------------------------------------ cancellation */

static void test_cancel_from_callback_and_during_wait(void **state)
{
    (void)state;
    struct step s[] = {{429, {"Retry-After: 1"}, ERR_429, {0}}, {200, {0}, ANSWER, {0}}};
    struct fake *f = fake_start(s, 2);
    struct clock k = {.cancel_on_wait = 1};
    struct client *c = new_client(f, "", &k);
    struct client_result r;
    struct err e = {0};
    assert_int_equal(client_chat(c, HELLO, 2, NULL, NULL, NULL, &r, &e), CLIENT_ERR_CANCELLED);
    assert_int_equal(fake_hits(f), 1);
    assert_false(client_cancelled(c)); /* the flag ends with the call */
    client_result_free(&r);
    /* The next call runs; the callback stops it after the reasoning. */
    k.cancel_on_wait = 0;
    struct seen w = {.stop_after = 1};
    assert_int_equal(client_chat(c, HELLO, 2, NULL, on_delta, &w, &r, &e), CLIENT_ERR_CANCELLED);
    assert_string_equal(w.text, "R:The user greets.");
    client_result_free(&r);
    client_free(c);
    fake_stop(f);
}

static void *cancel_later(void *arg)
{
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    client_cancel(arg);
    return NULL;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_cancel_hanging_request(void **state)
{
    (void)state;
    struct step s[] = {{0, {0}, NULL, {0}}}; /* the server never answers */
    struct fake *f = fake_start(s, 1);
    struct clock k = {0};
    struct client *c = new_client(f, "", &k);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_later, c), 0);
    struct client_result r;
    struct err e = {0};
    double t0 = mono();
    assert_int_equal(client_chat(c, HELLO, 2, NULL, NULL, NULL, &r, &e), CLIENT_ERR_CANCELLED);
    double took = mono() - t0;
    pthread_join(t, NULL);
    if (took > 1.5)
        fail_msg("cancel took %.2f s", took);
    assert_int_equal(k.n_waits, 0);
    client_result_free(&r);
    client_free(c);
    fake_stop(f);
}

static void test_new_rejects_bad_settings(void **state)
{
    (void)state;
    struct client_opts o;
    client_opts_default(&o);
    struct err e = {0};
    assert_null(client_new("", NULL, &o, &e));
    assert_int_equal(e.code, ERR_INVALID);
    assert_null(client_new("http://x", "sk-a\r\nX-Evil: 1", &o, &e));
    assert_int_equal(e.code, ERR_INVALID);
    assert_null(strstr(e.msg, "sk-a")); /* the key is never echoed */
    o.retry.attempts = 0;
    assert_null(client_new("http://x", NULL, &o, &e));
    client_opts_default(&o);
    o.retry.min_wait_s = 20; /* above max */
    assert_null(client_new("http://x", NULL, &o, &e));
    assert_int_equal(e.code, ERR_INVALID);
    struct client *c = client_new("http://x", NULL, NULL, &e);
    assert_non_null(c);
    struct client_result r;
    assert_int_equal(client_chat(c, HELLO, 0, NULL, NULL, NULL, &r, &e), ERR_INVALID);
    struct client_message bad[] = {{"user", "\xff\xfe not UTF-8"}};
    assert_int_equal(client_chat(c, bad, 1, NULL, NULL, NULL, &r, &e), ERR_INVALID);
    client_result_free(&r);
    client_free(c);
    client_free(NULL);
}

/* ------------------------------------------------------------ the SSE parser */

struct events {
    char all[512];
    int n;
};

static int collect(void *arg, const char *data, size_t len)
{
    struct events *ev = arg;
    size_t at = strlen(ev->all);
    snprintf(ev->all + at, sizeof ev->all - at, "[%.*s]", (int)len, data);
    assert_int_equal(data[len], '\0');
    return ++ev->n == 100 ? 7 : 0;
}

static void test_sse_byte_by_byte(void **state)
{
    (void)state;
    const char *in = "data: a\r\ndata: b\r\n\r\n: comment\r\ndata: one\r\n\r\nevent: x\ndata:two\ndata:  three\n\n"
                     "id: 5\n\ndata\n\ndata: cr\r\rdata: last";
    const char *want = "[a\nb][one][two\n three][][cr][last]";
    for (int whole = 0; whole < 2; whole++) {
        struct events ev = {0};
        struct sse *s = sse_new(64, collect, &ev);
        assert_non_null(s);
        struct err e = {0};
        if (whole)
            assert_int_equal(sse_feed(s, in, strlen(in), &e), 0);
        else
            for (size_t i = 0; in[i]; i++)
                assert_int_equal(sse_feed(s, in + i, 1, &e), 0);
        assert_int_equal(ev.n, 5); /* "last" waits for its blank line or the end */
        assert_int_equal(sse_finish(s, &e), 0);
        assert_string_equal(ev.all, want);
        sse_free(s);
    }
}

static void test_sse_limits_and_stop(void **state)
{
    (void)state;
    struct events ev = {0};
    struct sse *s = sse_new(16, collect, &ev);
    struct err e = {0};
    assert_int_equal(sse_feed(s, "data: 0123456789abcdef\n", 23, &e), ERR_RANGE);
    assert_non_null(strstr(e.msg, "16 bytes"));
    sse_free(s);
    /* An event over the limit through many short lines. */
    s = sse_new(16, collect, &ev);
    assert_int_equal(sse_feed(s, "data: 0123456\ndata: 789abcdef\n", 30, &e), ERR_RANGE);
    sse_free(s);
    /* The callback's nonzero value stops the parse and comes back. */
    ev = (struct events){.n = 98};
    s = sse_new(64, collect, &ev);
    assert_int_equal(sse_feed(s, "data: a\n\ndata: b\n\ndata: c\n\n", 27, &e), 7);
    assert_string_equal(ev.all, "[a][b]");
    sse_free(s);
    sse_free(NULL);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_schedule),
        cmocka_unit_test(test_parse_retry_after),
        cmocka_unit_test(test_header_split),
        cmocka_unit_test(test_429_then_ok_waits_retry_after),
        cmocka_unit_test(test_503_three_times_fails_with_last_error),
        cmocka_unit_test(test_4xx_not_retried),
        cmocka_unit_test(test_500_not_retried_502_is),
        cmocka_unit_test(test_connection_refused_retried),
        cmocka_unit_test(test_retry_after_variants),
        cmocka_unit_test(test_stream_split_chunks),
        cmocka_unit_test(test_stream_cut_before_text_is_retried),
        cmocka_unit_test(test_stream_cut_after_text_is_not_retried),
        cmocka_unit_test(test_completion),
        cmocka_unit_test(test_bad_answers),
        cmocka_unit_test(test_cancel_from_callback_and_during_wait),
        cmocka_unit_test(test_cancel_hanging_request),
        cmocka_unit_test(test_new_rejects_bad_settings),
        cmocka_unit_test(test_sse_byte_by_byte),
        cmocka_unit_test(test_sse_limits_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
