/* Unit tests for client/grpc_client against a scripted gRPC server: nghttp2 on a
 * socket of 127.0.0.1 in a thread of this process, answering each call from a script
 * (headers, a body of prefixed messages sent a few bytes per DATA frame, trailers,
 * Trailers-Only, RST_STREAM, or no answer). Checks: the request (path, metadata,
 * GenerateRequest fields), unary and streamed answers with reasoning, the server's
 * retry hint honoured, back-off otherwise, which statuses are retried, a negative
 * grpc-retry-pushback-ms, a broken stream after text, malformed and oversized
 * frames, a non-gRPC answer, cancellation, targets, and connection refused. The
 * client's sleep is injected and only records the waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/grpc_client.h"
#include "client/grpc_wire.h"
#include "proto/deepseek.pb-c.h"

/* ------------------------------------------------------------ scripted server */

#define MAX_STEPS 6

struct step {
    int http;               /* :status (0: 200) */
    const char *ctype;      /* NULL: application/grpc */
    const char *hdrs[4];    /* more "name: value" headers (Trailers-Only: the status) */
    bool trailers_only;     /* one HEADERS frame, no body */
    uint8_t body[2048];
    size_t body_len;
    const char *trls[4];    /* trailers after the body (none: the stream just ends) */
    bool rst;               /* RST_STREAM after the body instead of trailers */
    bool hang;              /* headers, then nothing */
};

struct fake {
    int lfd, port;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t mu;
    struct step steps[MAX_STEPS];
    int n_steps, hits;
    char path[128], auth[128], te[32], ctype[64];
    uint8_t req[4096];
    size_t req_len;
};

struct fstream {
    int32_t id;
    uint8_t req[4096];
    size_t req_len;
    char path[128], auth[128], te[32], ctype[64];
    const struct step *st;
    size_t sent;
};

struct fconn {
    struct fake *f;
    nghttp2_session *ng;
    int32_t rst_id; /* a stream to reset once the client has had its body */
    double rst_since;
    struct fstream *open[16]; /* freed at the end if the session never closed them */
};

/* Deltas the client has handed to the test: a step with rst breaks its stream only
 * once text has reached the caller (or after 0.5 s for a unary call, which delivers
 * nothing before its status), so the test does not depend on scheduling. */
static atomic_int g_deltas;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void copy_hdr(char *dst, size_t size, const uint8_t *v, size_t n)
{
    snprintf(dst, size, "%.*s", (int)n, (const char *)v);
}

static int f_begin(nghttp2_session *ng, const nghttp2_frame *fr, void *ud)
{
    struct fconn *c = ud;
    if (fr->hd.type == NGHTTP2_HEADERS && fr->headers.cat == NGHTTP2_HCAT_REQUEST) {
        struct fstream *s = calloc(1, sizeof *s);
        assert_non_null(s);
        s->id = fr->hd.stream_id;
        nghttp2_session_set_stream_user_data(ng, s->id, s);
        size_t i = 0;
        while (i < 16 && c->open[i])
            i++;
        assert_true(i < 16);
        c->open[i] = s;
    }
    return 0;
}

static int f_header(nghttp2_session *ng, const nghttp2_frame *fr, const uint8_t *name,
                    size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags, (void)ud;
    struct fstream *s = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);
    if (!s)
        return 0;
    if (nlen == 5 && !memcmp(name, ":path", 5))
        copy_hdr(s->path, sizeof s->path, value, vlen);
    else if (nlen == 13 && !memcmp(name, "authorization", 13))
        copy_hdr(s->auth, sizeof s->auth, value, vlen);
    else if (nlen == 2 && !memcmp(name, "te", 2))
        copy_hdr(s->te, sizeof s->te, value, vlen);
    else if (nlen == 12 && !memcmp(name, "content-type", 12))
        copy_hdr(s->ctype, sizeof s->ctype, value, vlen);
    return 0;
}

static int f_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                  size_t len, void *ud)
{
    (void)flags, (void)ud;
    struct fstream *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s && s->req_len + len <= sizeof s->req) {
        memcpy(s->req + s->req_len, data, len);
        s->req_len += len;
    }
    return 0;
}

/* "name: value" into an nghttp2 pair pointing into line. */
static nghttp2_nv nv_of(const char *line)
{
    const char *colon = strchr(line, ':');
    return (nghttp2_nv){(uint8_t *)line, (uint8_t *)colon + 2, (size_t)(colon - line),
                        strlen(colon + 2), NGHTTP2_NV_FLAG_NONE};
}

/* A few bytes per DATA frame, so the client's reader sees messages cut anywhere. */
static ssize_t f_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                      uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct fconn *c = ud;
    struct fstream *s = src->ptr;
    const struct step *st = s->st;
    (void)ng;
    if (st->hang)
        return NGHTTP2_ERR_DEFERRED;
    if (st->rst && s->sent == st->body_len) { /* the body is out: break the stream soon */
        c->rst_id = id;
        c->rst_since = mono();
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t k = st->body_len - s->sent < 7 ? st->body_len - s->sent : 7;
    if (k > length)
        k = length;
    memcpy(buf, st->body + s->sent, k);
    s->sent += k;
    if (s->sent < st->body_len || st->rst)
        return (ssize_t)k;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    nghttp2_nv t[4];
    size_t nt = 0;
    while (nt < 4 && st->trls[nt]) {
        t[nt] = nv_of(st->trls[nt]);
        nt++;
    }
    if (nt) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_submit_trailer(ng, id, t, nt);
    }
    return (ssize_t)k;
}

static void f_respond(struct fconn *c, struct fstream *s)
{
    struct fake *f = c->f;
    pthread_mutex_lock(&f->mu);
    s->st = &f->steps[f->hits < f->n_steps ? f->hits : f->n_steps - 1];
    f->hits++;
    memcpy(f->path, s->path, sizeof f->path);
    memcpy(f->auth, s->auth, sizeof f->auth);
    memcpy(f->te, s->te, sizeof f->te);
    memcpy(f->ctype, s->ctype, sizeof f->ctype);
    memcpy(f->req, s->req, s->req_len);
    f->req_len = s->req_len;
    pthread_mutex_unlock(&f->mu);
    const struct step *st = s->st;
    char status[8];
    snprintf(status, sizeof status, "%d", st->http ? st->http : 200);
    nghttp2_nv h[6] = {
        {(uint8_t *)":status", (uint8_t *)status, 7, strlen(status), NGHTTP2_NV_FLAG_NONE}};
    const char *ct = st->ctype ? st->ctype : "application/grpc";
    char ctl[80];
    snprintf(ctl, sizeof ctl, "content-type: %s", ct);
    h[1] = nv_of(ctl);
    size_t n = 2;
    for (int i = 0; i < 4 && st->hdrs[i]; i++)
        h[n++] = nv_of(st->hdrs[i]);
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = f_read};
    nghttp2_submit_response(c->ng, s->id, h, n, st->trailers_only ? NULL : &prd);
}

static int f_frame(nghttp2_session *ng, const nghttp2_frame *fr, void *ud)
{
    if ((fr->hd.type == NGHTTP2_HEADERS || fr->hd.type == NGHTTP2_DATA) &&
        (fr->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct fstream *s = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);
        if (s)
            f_respond(ud, s);
    }
    return 0;
}

static int f_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    struct fconn *c = ud;
    (void)code;
    struct fstream *s = nghttp2_session_get_stream_user_data(ng, id);
    for (size_t i = 0; s && i < 16; i++)
        if (c->open[i] == s)
            c->open[i] = NULL;
    free(s);
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    return 0;
}

static void serve_conn(struct fake *f, int fd)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, f_begin);
    nghttp2_session_callbacks_set_on_header_callback(cb, f_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, f_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, f_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, f_close);
    struct fconn c = {.f = f};
    assert_int_equal(nghttp2_session_server_new(&c.ng, cb, &c), 0);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(c.ng, NGHTTP2_FLAG_NONE, NULL, 0);
    while (!atomic_load(&f->stop)) {
        const uint8_t *data;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(c.ng, &data)) > 0)
            if (send(fd, data, (size_t)n, MSG_NOSIGNAL) != n)
                goto done;
        if (!nghttp2_session_want_read(c.ng) && !nghttp2_session_want_write(c.ng))
            break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) {
            if (c.rst_id && (atomic_load(&g_deltas) || mono() - c.rst_since > 0.5)) {
                nghttp2_submit_rst_stream(c.ng, NGHTTP2_FLAG_NONE, c.rst_id,
                                          NGHTTP2_INTERNAL_ERROR);
                c.rst_id = 0;
            }
            continue;
        }
        uint8_t buf[4096];
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0 || nghttp2_session_mem_recv(c.ng, buf, (size_t)r) < 0)
            break;
    }
done:
    nghttp2_session_del(c.ng);
    for (size_t i = 0; i < 16; i++)
        free(c.open[i]);
    close(fd);
}

static void *serve(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {f->lfd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd >= 0)
            serve_conn(f, fd);
    }
    return NULL;
}

static struct fake *fake_start(const struct step *steps, int n)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    memcpy(f->steps, steps, (size_t)n * sizeof *steps);
    f->n_steps = n;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
    return f;
}

static void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* Appends a framed GenerateResponse to st's body. */
static void add_response(struct step *st, const char *text, const char *reasoning,
                         const char *finish, int tokens, int prompt)
{
    GenerateResponse r = GENERATE_RESPONSE__INIT;
    r.text = (char *)text;
    r.reasoning = (char *)reasoning;
    r.finish_reason = (char *)finish;
    r.token_count = tokens;
    r.prompt_tokens = prompt;
    size_t len;
    uint8_t *b = grpc_wire_pack(&r, &len);
    assert_non_null(b);
    assert_true(st->body_len + len <= sizeof st->body);
    memcpy(st->body + st->body_len, b, len);
    st->body_len += len;
    free(b);
}

/* ------------------------------------------------------------ injected clock */

struct clock {
    double waits[8];
    int n_waits, retries_seen;
    bool last_from_server;
    struct grpc_client *cancel_on_wait;
};

static double clock_now(void *arg)
{
    (void)arg;
    return 1e9;
}

static int clock_sleep(void *arg, double s, const struct client *unused)
{
    struct clock *k = arg;
    assert_null(unused); /* the gRPC client has no struct client to give */
    if (k->n_waits < 8)
        k->waits[k->n_waits++] = s;
    if (k->cancel_on_wait)
        grpc_client_cancel(k->cancel_on_wait);
    return k->cancel_on_wait ? 1 : 0;
}

static void note_retry(void *arg, const struct client_retry_info *r)
{
    struct clock *k = arg;
    k->retries_seen++;
    k->last_from_server = r->from_server;
    assert_int_equal(r->attempt, k->retries_seen);
    assert_non_null(strstr(r->message, "gRPC "));
}

static struct grpc_client *new_client(int port, struct clock *k)
{
    struct client_opts o;
    client_opts_default(&o);
    o.now = clock_now;
    o.sleep = clock_sleep;
    o.clock_arg = k;
    o.on_retry = note_retry;
    o.on_retry_arg = k;
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", port);
    struct err e = {0};
    struct grpc_client *g = grpc_client_new(t, "sk-test-key", &o, &e);
    assert_non_null(g);
    return g;
}

struct deltas {
    char text[512];
    size_t len;
    int calls;
};

/* Records deltas as "R:<text>|" or "C:<text>|". */
static int on_delta(void *user, enum client_part part, const char *s, size_t n)
{
    struct deltas *d = user;
    int w = snprintf(d->text + d->len, sizeof d->text - d->len, "%c:%.*s|",
                     part == CLIENT_PART_REASONING ? 'R' : 'C', (int)n, s);
    d->len += (size_t)w;
    d->calls++;
    atomic_fetch_add(&g_deltas, 1);
    return 0;
}

static const struct client_message HELLO[] = {{"system", "Be brief."}, {"user", "Hello"}};

static int chat(struct grpc_client *g, bool stream, struct deltas *d, struct client_result *r,
                struct err *e)
{
    struct client_params p;
    client_params_default(&p);
    p.stream = stream;
    return grpc_client_chat(g, HELLO, 2, &p, d ? on_delta : NULL, d, r, e);
}

#define OK_TRAILERS {"grpc-status: 0"}

/* ------------------------------------------------------------ tests */

static void test_unary(void **state)
{
    (void)state;
    struct step s = {.trls = OK_TRAILERS};
    add_response(&s, "The answer.", "Some thought.", "stop", 5, 12);
    struct fake *f = fake_start(&s, 1);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    struct client_params p;
    client_params_default(&p);
    p.temperature = 0;
    p.max_tokens = 9;
    p.model = "m1";
    p.has_seed = true;
    p.seed = 42;
    struct deltas d = {0};
    struct client_result r;
    struct err e = {0};
    assert_int_equal(grpc_client_chat(g, HELLO, 2, &p, on_delta, &d, &r, &e), 0);
    assert_string_equal(r.content, "The answer.");
    assert_string_equal(r.reasoning, "Some thought.");
    assert_string_equal(d.text, "R:Some thought.|C:The answer.|");
    assert_string_equal(r.finish_reason, "stop");
    assert_int_equal(r.completion_tokens, 5);
    assert_int_equal(r.prompt_tokens, 12);
    assert_int_equal(r.reasoning_tokens, -1);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.http_status, 200);
    assert_string_equal(r.error_code, "");
    /* what the server received */
    assert_string_equal(f->path, "/DeepSeekService/GenerateText");
    assert_string_equal(f->auth, "Bearer sk-test-key");
    assert_string_equal(f->te, "trailers");
    assert_string_equal(f->ctype, "application/grpc");
    assert_true(f->req_len > 5);
    assert_int_equal(f->req[0], 0);
    assert_int_equal((size_t)f->req[3] << 8 | f->req[4], f->req_len - 5);
    GenerateRequest *q = generate_request__unpack(NULL, f->req_len - 5, f->req + 5);
    assert_non_null(q);
    assert_int_equal(q->n_messages, 2);
    assert_string_equal(q->messages[0]->role, "system");
    assert_string_equal(q->messages[1]->content, "Hello");
    assert_int_equal(q->top_k, 1); /* temperature 0 is greedy, not the server's default */
    assert_true(q->temperature == 0.0f);
    assert_int_equal(q->max_tokens, 9);
    assert_string_equal(q->model, "m1");
    assert_int_equal(q->seed, 42);
    generate_request__free_unpacked(q, NULL);
    client_result_free(&r);
    /* seed 0 cannot be said in proto3: refused before anything is sent */
    p.seed = 0;
    assert_int_equal(grpc_client_chat(g, HELLO, 2, &p, NULL, NULL, &r, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "seed 0"));
    assert_int_equal(f->hits, 1);
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
}

static void test_stream(void **state)
{
    (void)state;
    struct step s = {.trls = OK_TRAILERS};
    add_response(&s, "", "Hmm, ", "", 0, 0);
    add_response(&s, "", "let me see.", "", 0, 0);
    add_response(&s, "Hi", "", "", 0, 0);
    add_response(&s, " there!", "", "", 0, 0);
    add_response(&s, "", "", "length", 4, 10);
    struct fake *f = fake_start(&s, 1);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    struct deltas d = {0};
    struct client_result r;
    struct err e = {0};
    assert_int_equal(chat(g, true, &d, &r, &e), 0);
    assert_string_equal(f->path, "/DeepSeekService/GenerateTextStream");
    assert_string_equal(d.text, "R:Hmm, |R:let me see.|C:Hi|C: there!|");
    assert_string_equal(r.content, "Hi there!");
    assert_string_equal(r.reasoning, "Hmm, let me see.");
    assert_string_equal(r.finish_reason, "length");
    assert_int_equal(r.completion_tokens, 4);
    assert_int_equal(r.prompt_tokens, 10);
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
}

static void test_hint_honoured(void **state)
{
    (void)state;
    struct step s[3] = {
        {.trailers_only = true, .hdrs = {"grpc-status: 8", "grpc-message: rate%20limit",
                                         "retry-after: 2", "grpc-retry-pushback-ms: 2500"}},
        {.trailers_only = true, .hdrs = {"grpc-status: 14", "retry-after: 1"}},
        {.trls = OK_TRAILERS}};
    add_response(&s[2], "ok", "", "stop", 1, 1);
    struct fake *f = fake_start(s, 3);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    struct deltas d = {0};
    struct client_result r;
    struct err e = {0};
    assert_int_equal(chat(g, false, &d, &r, &e), 0);
    assert_string_equal(r.content, "ok");
    assert_int_equal(r.attempts, 3);
    assert_int_equal(k.n_waits, 2);
    assert_true(k.waits[0] == 2.5); /* the longest hint wins */
    assert_true(k.waits[1] == 1.0);
    assert_true(k.last_from_server);
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
}

static void test_last_error_after_attempts(void **state)
{
    (void)state;
    struct step s = {.trailers_only = true,
                     .hdrs = {"grpc-status: 14", "grpc-message: the%20server%20is%20busy"}};
    struct fake *f = fake_start(&s, 1);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    struct client_result r;
    struct err e = {0};
    assert_int_equal(chat(g, false, NULL, &r, &e), ERR_IO);
    assert_int_equal(f->hits, 3);
    assert_int_equal(k.n_waits, 2);
    assert_true(k.waits[0] == 4.0 && k.waits[1] == 4.0); /* no hint: the back-off */
    assert_false(k.last_from_server);
    assert_string_equal(e.msg, "gRPC UNAVAILABLE (14): the server is busy (3 attempts)");
    assert_string_equal(r.error_code, "UNAVAILABLE");
    assert_int_equal(r.attempts, 3);
    assert_null(r.content);
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
}

static void test_not_retried(void **state)
{
    (void)state;
    static const struct {
        const char *status, *code;
        int rc;
    } cases[] = {{"grpc-status: 16", "UNAUTHENTICATED", ERR_INVALID},
                 {"grpc-status: 3", "INVALID_ARGUMENT", ERR_INVALID},
                 {"grpc-status: 5", "NOT_FOUND", ERR_INVALID},
                 {"grpc-status: 13", "INTERNAL", ERR_IO},
                 {"grpc-status: 4", "DEADLINE_EXCEEDED", ERR_IO}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct step s = {.trailers_only = true,
                         .hdrs = {cases[i].status, "grpc-message: no%0Agood", "retry-after: 1"}};
        struct fake *f = fake_start(&s, 1);
        struct clock k = {0};
        struct grpc_client *g = new_client(f->port, &k);
        struct client_result r;
        struct err e = {0};
        assert_int_equal(chat(g, false, NULL, &r, &e), cases[i].rc);
        assert_int_equal(f->hits, 1);
        assert_int_equal(k.n_waits, 0);
        assert_string_equal(r.error_code, cases[i].code);
        char want[128];
        snprintf(want, sizeof want, "gRPC %s (%s): no?good", cases[i].code,
                 cases[i].status + 13);
        assert_string_equal(e.msg, want);
        client_result_free(&r);
        grpc_client_free(g);
        fake_stop(f);
    }
    /* RESOURCE_EXHAUSTED with a negative pushback: the server says never retry */
    struct step s = {.trailers_only = true,
                     .hdrs = {"grpc-status: 8", "grpc-retry-pushback-ms: -1"}};
    struct fake *f = fake_start(&s, 1);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    struct client_result r;
    struct err e = {0};
    assert_int_equal(chat(g, false, NULL, &r, &e), ERR_IO);
    assert_int_equal(f->hits, 1);
    assert_non_null(strstr(e.msg, "RESOURCE_EXHAUSTED (8)"));
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
}

static void test_status_after_messages(void **state)
{
    (void)state;
    /* text streamed, then UNAVAILABLE: an error, never a retry that repeats text */
    struct step s = {.trls = {"grpc-status: 14", "grpc-message: draining"}};
    add_response(&s, "partial", "", "", 0, 0);
    struct fake *f = fake_start(&s, 1);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    struct deltas d = {0};
    struct client_result r;
    struct err e = {0};
    assert_int_equal(chat(g, true, &d, &r, &e), ERR_IO);
    assert_string_equal(d.text, "C:partial|");
    assert_int_equal(f->hits, 1);
    assert_string_equal(e.msg, "gRPC UNAVAILABLE (14): draining");
    client_result_free(&r);
    /* a unary answer followed by an error status delivers nothing */
    memset(&d, 0, sizeof d);
    assert_int_equal(chat(g, false, &d, &r, &e), ERR_IO);
    assert_int_equal(d.calls, 0);
    assert_null(r.content);
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
}

static void test_broken_stream(void **state)
{
    (void)state;
    /* RST_STREAM after text: an error naming the transport, not retried */
    atomic_store(&g_deltas, 0);
    struct step s[2] = {{.rst = true}, {.trls = OK_TRAILERS}};
    add_response(&s[0], "half", "", "", 0, 0);
    add_response(&s[1], "whole", "", "stop", 1, 1);
    struct fake *f = fake_start(s, 2);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    struct deltas d = {0};
    struct client_result r;
    struct err e = {0};
    assert_int_equal(chat(g, true, &d, &r, &e), ERR_IO);
    assert_string_equal(d.text, "C:half|");
    assert_int_equal(f->hits, 1);
    assert_non_null(strstr(e.msg, "gRPC UNAVAILABLE (14): http://127.0.0.1:"));
    client_result_free(&r);
    fake_stop(f);
    grpc_client_free(g);
    /* the same without text delivered yet (unary): retried, and the retry succeeds */
    atomic_store(&g_deltas, 0);
    f = fake_start(s, 2);
    k = (struct clock){0};
    g = new_client(f->port, &k);
    memset(&d, 0, sizeof d);
    assert_int_equal(chat(g, false, &d, &r, &e), 0);
    assert_string_equal(d.text, "C:whole|");
    assert_int_equal(r.attempts, 2);
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
    /* the stream ends without trailers: no status is an error, retried */
    struct step t[2] = {{.body_len = 0}, {.trls = OK_TRAILERS}};
    add_response(&t[1], "fine", "", "stop", 1, 1);
    f = fake_start(t, 2);
    k = (struct clock){0};
    g = new_client(f->port, &k);
    assert_int_equal(chat(g, false, NULL, &r, &e), 0);
    assert_int_equal(r.attempts, 2);
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
}

static void test_bad_frames(void **state)
{
    (void)state;
    struct step s[4] = {{.trls = OK_TRAILERS}, {.trls = OK_TRAILERS},
                        {.trls = OK_TRAILERS}, {.trls = OK_TRAILERS}};
    /* 0: a prefix claiming 16 MiB (over the 4 MiB limit) */
    memcpy(s[0].body, "\x00\x01\x00\x00\x00xyz", 8);
    s[0].body_len = 8;
    /* 1: compressed */
    add_response(&s[1], "x", "", "stop", 1, 1);
    s[1].body[0] = 1;
    /* 2: not a GenerateResponse (field 1 as a varint with a truncated value) */
    memcpy(s[2].body, "\x00\x00\x00\x00\x02\x08\xff", 7);
    s[2].body_len = 7;
    /* 3: the body stops inside a message */
    add_response(&s[3], "truncated", "", "stop", 1, 1);
    s[3].body_len -= 3;
    static const char *const want[4] = {"is 16777216 bytes; the limit is 4194304",
                                        "is compressed", "is not a GenerateResponse",
                                        "ended inside message 0"};
    static const int rcs[4] = {ERR_RANGE, ERR_UNSUPPORTED, ERR_FORMAT, ERR_FORMAT};
    struct fake *f = fake_start(s, 4);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    for (int i = 0; i < 4; i++) {
        struct deltas d = {0};
        struct client_result r;
        struct err e = {0};
        assert_int_equal(chat(g, true, &d, &r, &e), rcs[i]);
        assert_int_equal(f->hits, i + 1); /* never retried */
        assert_int_equal(d.calls, 0);
        assert_non_null(strstr(e.msg, "gRPC INTERNAL (13)"));
        assert_non_null(strstr(e.msg, want[i]));
        assert_string_equal(r.error_code, "INTERNAL");
        client_result_free(&r);
    }
    grpc_client_free(g);
    fake_stop(f);
}

static void test_unary_two_messages(void **state)
{
    (void)state;
    struct step s = {.trls = OK_TRAILERS};
    add_response(&s, "one", "", "stop", 1, 1);
    add_response(&s, "two", "", "stop", 1, 1);
    struct fake *f = fake_start(&s, 1);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    struct deltas d = {0};
    struct client_result r;
    struct err e = {0};
    assert_int_equal(chat(g, false, &d, &r, &e), ERR_FORMAT);
    assert_non_null(strstr(e.msg, "a second message (1) in a unary answer"));
    assert_int_equal(d.calls, 0);
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
}

static void test_not_grpc(void **state)
{
    (void)state;
    /* a proxy's 503 (retried as UNAVAILABLE), then an HTML 200 (not retried) */
    struct step s[2] = {{.http = 503, .ctype = "text/html", .hdrs = {"retry-after: 3"},
                         .trls = {NULL}},
                        {.ctype = "text/html"}};
    memcpy(s[0].body, "<html>busy</html>", 17);
    s[0].body_len = 17;
    memcpy(s[1].body, "<html>hi</html>", 15);
    s[1].body_len = 15;
    struct fake *f = fake_start(s, 2);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    struct client_result r;
    struct err e = {0};
    assert_int_equal(chat(g, false, NULL, &r, &e), ERR_FORMAT);
    assert_int_equal(f->hits, 2);
    assert_int_equal(k.n_waits, 1);
    assert_true(k.waits[0] == 3.0);
    assert_non_null(strstr(e.msg, "gRPC UNKNOWN (2): "));
    assert_non_null(strstr(e.msg, "content-type `text/html` is not application/grpc"));
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
}

struct canceller {
    struct grpc_client *g;
    int after_ms;
};

static void *cancel_later(void *arg)
{
    struct canceller *c = arg;
    struct timespec ts = {0, c->after_ms * 1000000L};
    nanosleep(&ts, NULL);
    grpc_client_cancel(c->g);
    return NULL;
}

static void test_cancel(void **state)
{
    (void)state;
    struct step s = {.hang = true};
    struct fake *f = fake_start(&s, 1);
    struct clock k = {0};
    struct grpc_client *g = new_client(f->port, &k);
    struct canceller c = {g, 200};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_later, &c), 0);
    struct client_result r;
    struct err e = {0};
    double t0 = mono();
    assert_int_equal(chat(g, true, NULL, &r, &e), CLIENT_ERR_CANCELLED);
    double took = mono() - t0;
    pthread_join(t, NULL);
    assert_true(took >= 0.15 && took < 2.0);
    assert_false(grpc_client_cancelled(g)); /* cleared when the call returns */
    client_result_free(&r);
    /* a cancel during the wait before a retry ends the call there */
    grpc_client_free(g);
    fake_stop(f);
    struct step u = {.trailers_only = true, .hdrs = {"grpc-status: 14"}};
    f = fake_start(&u, 1);
    g = new_client(f->port, &k);
    k.cancel_on_wait = g;
    assert_int_equal(chat(g, false, NULL, &r, &e), CLIENT_ERR_CANCELLED);
    assert_int_equal(f->hits, 1);
    client_result_free(&r);
    grpc_client_free(g);
    fake_stop(f);
}

static void test_targets(void **state)
{
    (void)state;
    static const struct {
        const char *in, *url;
    } good[] = {{"localhost", "http://localhost:50051"},
                {"127.0.0.1:7", "http://127.0.0.1:7"},
                {"http://10.0.0.1:65535/", "http://10.0.0.1:65535"},
                {"HTTP://h", "http://h:50051"},
                {"[::1]:5", "http://[::1]:5"},
                {"[::1]", "http://[::1]:50051"}};
    struct err e = {0};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct grpc_client *g = grpc_client_new(good[i].in, NULL, NULL, &e);
        assert_non_null(g);
        assert_string_equal(grpc_client_url(g), good[i].url);
        grpc_client_free(g);
    }
    static const struct {
        const char *in;
        int rc;
    } bad[] = {{"", ERR_INVALID},       {"https://h:1", ERR_UNSUPPORTED},
               {"ftp://h", ERR_INVALID}, {"h:0", ERR_INVALID},
               {"h:65536", ERR_INVALID}, {"h:", ERR_INVALID},
               {"h:5x", ERR_INVALID},    {"::1:5", ERR_INVALID},
               {"h:5/v1", ERR_INVALID},  {"[::1", ERR_INVALID},
               {"[::1]x", ERR_INVALID},  {":5", ERR_INVALID},
               {"h 1", ERR_INVALID}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e.msg[0] = '\0';
        assert_null(grpc_client_new(bad[i].in, NULL, NULL, &e));
        assert_int_equal(e.code, bad[i].rc);
        assert_true(e.msg[0] != '\0');
    }
    assert_null(grpc_client_new("h", "key\nx", NULL, &e));
    struct client_opts o;
    client_opts_default(&o);
    o.retry.attempts = 0;
    assert_null(grpc_client_new("h", NULL, &o, &e));
    assert_non_null(strstr(e.msg, "attempts"));
}

static void test_connection_refused(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd); /* nobody listens there now */
    struct clock k = {0};
    struct grpc_client *g = new_client(ntohs(sa.sin_port), &k);
    struct client_result r;
    struct err e = {0};
    assert_int_equal(chat(g, false, NULL, &r, &e), ERR_IO);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(k.n_waits, 2);
    assert_true(k.waits[0] == 4.0 && k.waits[1] == 4.0);
    assert_int_equal(r.http_status, 0);
    assert_string_equal(r.error_code, "UNAVAILABLE");
    assert_non_null(strstr(e.msg, "gRPC UNAVAILABLE (14): http://127.0.0.1:"));
    assert_non_null(strstr(e.msg, "(3 attempts)"));
    client_result_free(&r);
    grpc_client_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_hint_honoured),
        cmocka_unit_test(test_last_error_after_attempts),
        cmocka_unit_test(test_not_retried),
        cmocka_unit_test(test_status_after_messages),
        cmocka_unit_test(test_broken_stream),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_unary_two_messages),
        cmocka_unit_test(test_not_grpc),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_connection_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
