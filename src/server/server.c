/* server: the serve process's setup, signals, drain and teardown (see server.h). */
#define LOG_MODULE "server"
#include "server/server.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "ops/audit.h"
#include "ops/keystore.h"
#include "ops/wipe.h"
#include "engine/sched.h"
#include "server/accesslog.h"
#include "server/auth.h"
#include "server/erase.h"
#include "server/grpc_api.h"
#include "server/http_api.h"
#include "server/metrics.h"
#include "server/promptlog.h"
#include "server/ratelimit.h"
#include "server/rcache.h"

#define DRAIN_POLL_MS 50

struct server {
    const struct server_params *p;
    struct event_base *base;
    struct evhttp *http;
    struct sched *sched;
    struct http_api *api;
    struct grpc_api *grpc; /* NULL when --grpc-port is 0 */
    struct metrics *metrics;
    struct auth *auth;
    struct ratelimit *rl;
    struct rcache *rcache;
    struct keystore *ks; /* data keys sealing Redis cache entries and prompt logs */
    char ks_path[CONFIG_PATH_MAX + 32];
    struct promptlog *prompts; /* the prompt logs (appended only with --log-prompts) */
    struct audit_operator op;  /* who erases: this process */
    struct erase_targets erase;
    char data_dir[CONFIG_PATH_MAX];
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer;
    double drain_deadline;
    char pid_path[CONFIG_PATH_MAX + 32];
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ signals */

static void drain_poll(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    (void)fd;
    (void)what;
    int left = http_api_in_flight(s->api) + (s->grpc ? grpc_api_in_flight(s->grpc) : 0);
    if (left == 0) {
        /* The last replies' ends are still in the connections' output buffers: run the
         * loop a little longer so they are written before the sockets close. */
        struct timeval flush = {0, 100 * 1000};
        LOG(INFO, "drained: no request in flight; exiting");
        event_base_loopexit(s->base, &flush);
        if (s->drain_timer)
            event_del(s->drain_timer); /* once */
    } else if (mono_s() >= s->drain_deadline) {
        LOG(WARN, "drain timeout: cutting off %d request(s) still in flight", left);
        event_base_loopexit(s->base, NULL);
    }
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    (void)what;
    if (s->drain_timer) {
        LOG(WARN, "second signal %d while draining: exiting now", (int)sig);
        event_base_loopexit(s->base, NULL);
        return;
    }
    LOG(INFO, "signal %d: draining (no new requests; up to %llds for %d in flight)", (int)sig,
        (long long)s->p->cfg->drain_timeout, http_api_in_flight(s->api));
    http_api_drain(s->api);
    if (s->grpc)
        grpc_api_drain(s->grpc);
    sched_drain(s->sched);
    s->drain_deadline = mono_s() + (double)s->p->cfg->drain_timeout;
    s->drain_timer = event_new(s->base, -1, EV_PERSIST, drain_poll, s);
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    if (!s->drain_timer || event_add(s->drain_timer, &tv))
        event_base_loopexit(s->base, NULL);
    else
        drain_poll(-1, 0, s);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    (void)sig;
    (void)what;
    struct err e = {0};
    if (log_reopen(&e))
        LOG(WARN, "SIGHUP: log reopen failed: %s", e.msg);
    if (accesslog_reopen(&e))
        LOG(WARN, "SIGHUP: access log reopen failed: %s", e.msg);
    if (s->auth) {
        bool too_open = false;
        if (auth_reload(s->auth, &too_open, &e))
            LOG(WARN, "SIGHUP: key file not reloaded, old keys stay: %s", e.msg);
        else
            LOG(INFO, "SIGHUP: %zu API key(s) loaded%s", auth_count(s->auth),
                too_open ? " (the key file should be mode 0600)" : "");
    }
}

/* ------------------------------------------------------------------ setup */

static int server_keys(struct server *s, struct err *err)
{
    const struct config *cfg = s->p->cfg;
    if (!cfg->api_keys[0]) {
        LOG(WARN, "no --api-keys file: requests are not authenticated");
        return 0;
    }
    bool too_open = false;
    int rc = auth_load(cfg->api_keys, &s->auth, &too_open, err);
    if (rc)
        return rc;
    if (too_open)
        LOG(WARN, "%s is readable by group or others; it should be mode 0600", cfg->api_keys);
    LOG(INFO, "%zu API key(s) loaded from %s", auth_count(s->auth), cfg->api_keys);
    return 0;
}

static int server_engine(struct server *s, struct err *err)
{
    const struct config *cfg = s->p->cfg;
    struct sched_params sp = {
        .n_slots = (int)cfg->parallel,
        .n_ctx = s->p->n_ctx,
        .queue_max = (int)cfg->queue,
        .n_threads = s->p->n_threads,
        .max_batch = (int)cfg->batch_size < (int)cfg->parallel ? (int)cfg->parallel
                                                                 : (int)cfg->batch_size,
        .kv_type = strcmp(cfg->kv_type, "f32") == 0 ? KERNELS_F32 : KERNELS_F16,
        .matmul = FORWARD_MATMUL_QUANT_ACT, /* `deepseek generate`'s default: same outputs */
    };
    int rc = sched_new(s->p->model, s->p->tok, &sp, &s->sched, err);
    return rc ? rc : sched_start(s->sched, err);
}

/* Data keys (ops/keystore.h) in <log dir>/cache.keys, one per key id: they seal the
 * Redis entries and the prompt logs. Opened when either is on, or when the file is
 * there from an earlier run (so an erase can still destroy a key). */
static int server_keystore(struct server *s, struct err *err)
{
    const struct config *cfg = s->p->cfg;
    snprintf(s->data_dir, sizeof s->data_dir, "%s",
             log_dir_used()[0] ? log_dir_used() : ".");
    snprintf(s->ks_path, sizeof s->ks_path, "%s/cache.keys", s->data_dir);
    if (!cfg->cache_url[0] && !cfg->log_prompts && access(s->ks_path, F_OK) != 0)
        return 0;
    return keystore_open(s->ks_path, &s->ks, err);
}

/* The response cache (server/rcache.h): memory tier of --cache-size bytes, Redis at
 * --cache-url, whose entries are sealed with the per-key data keys (replicas sharing
 * a Redis must share that file). */
static int server_rcache(struct server *s, struct err *err)
{
    const struct config *cfg = s->p->cfg;
    struct rcache_params rp = {.mem_bytes = (size_t)cfg->cache_size, .url = cfg->cache_url};
    if (cfg->cache_url[0])
        rp.ks = s->ks;
    int rc = rcache_new(&rp, &s->rcache, err);
    if (rc)
        return rc;
    if (rcache_enabled(s->rcache))
        LOG(INFO, "response cache: %lld bytes in memory%s", (long long)cfg->cache_size,
            cfg->cache_url[0] ? " + redis (sealed)" : "");
    return 0;
}

/* Prompt logs (server/promptlog.h) under <log dir>/prompts, and what an erase of one
 * key id reaches (server/erase.h): they exist whether or not --log-prompts is on now,
 * so files written by an earlier run can still be erased. */
static int server_privacy(struct server *s, struct err *err)
{
    const struct config *cfg = s->p->cfg;
    char dir[CONFIG_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/" PROMPTLOG_DIR, s->data_dir);
    int rc = promptlog_new(dir, s->ks, &s->prompts, err); /* ks NULL: files only */
    if (rc)
        return rc;
    if (cfg->log_prompts)
        LOG(INFO, "prompt logs: on, sealed per key id under %s", dir);
    audit_operator_detect(&s->op, NULL);
    s->erase = (struct erase_targets){
        .ks = s->ks, .ks_path = s->ks ? s->ks_path : NULL, .pl = s->prompts,
        .rc = s->rcache, .sched = s->sched, .audit_dir = s->data_dir, .op = &s->op,
        .passes = WIPE_DEFAULT_PASSES};
    return 0;
}

static int server_listen(struct server *s, struct err *err)
{
    const struct config *cfg = s->p->cfg;
    s->http = evhttp_new(s->base);
    if (!s->http)
        return err_set(err, ERR_NOMEM, "serve: cannot create the HTTP server");
    if (!evhttp_bind_socket_with_handle(s->http, cfg->host, (ev_uint16_t)cfg->port))
        return err_errno(err, ERR_IO, errno, "serve: cannot listen on %s:%lld", cfg->host,
                         (long long)cfg->port);
    evhttp_set_timeout(s->http, 600); /* idle keep-alive connections, slow clients */
    return 0;
}

/* The gRPC listener on the same event base, sharing engine, keys, limits, metrics. */
static int server_grpc(struct server *s, struct err *err)
{
    const struct config *cfg = s->p->cfg;
    if (cfg->grpc_port == 0)
        return 0;
    struct grpc_api_deps g = {
        .base = s->base, .host = cfg->host, .port = (int)cfg->grpc_port, .sched = s->sched,
        .tok = s->p->tok, .chat_template = cfg->chat_template,
        .model_name = s->p->model_name, .metrics = s->metrics, .auth = s->auth, .rl = s->rl,
        .n_ctx = s->p->n_ctx, .temperature = cfg->temperature, .top_p = cfg->top_p,
        .prompts = cfg->log_prompts ? s->prompts : NULL,
    };
    int rc = grpc_api_new(&g, &s->grpc, err);
    if (!rc)
        LOG(INFO, "gRPC on %s:%lld (HTTP/2 cleartext)", cfg->host, (long long)cfg->grpc_port);
    return rc;
}

static void server_pid_file(struct server *s)
{
    const struct config *cfg = s->p->cfg;
    if (cfg->pid_file[0])
        snprintf(s->pid_path, sizeof s->pid_path, "%s", cfg->pid_file);
    else if (log_dir_used()[0])
        snprintf(s->pid_path, sizeof s->pid_path, "%s/deepseek-serve.pid", log_dir_used());
    FILE *f = s->pid_path[0] ? fopen(s->pid_path, "w") : NULL;
    if (!f) {
        if (s->pid_path[0])
            LOG(WARN, "cannot write the pid file %s: %s", s->pid_path, strerror(errno));
        s->pid_path[0] = '\0';
        return;
    }
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
}

static int server_signals(struct server *s)
{
    s->sig_term = evsignal_new(s->base, SIGTERM, on_term, s);
    s->sig_int = evsignal_new(s->base, SIGINT, on_term, s);
    s->sig_hup = evsignal_new(s->base, SIGHUP, on_hup, s);
    if (!s->sig_term || !s->sig_int || !s->sig_hup || evsignal_add(s->sig_term, NULL) ||
        evsignal_add(s->sig_int, NULL) || evsignal_add(s->sig_hup, NULL))
        return ERR_NOMEM;
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error return, not death */
    return 0;
}

static void server_teardown(struct server *s)
{
    sched_free(s->sched); /* joins the engine thread: no notify after this */
    http_api_free(s->api);
    grpc_api_free(s->grpc);
    if (s->http)
        evhttp_free(s->http);
    if (s->drain_timer)
        event_free(s->drain_timer);
    if (s->sig_term)
        event_free(s->sig_term);
    if (s->sig_int)
        event_free(s->sig_int);
    if (s->sig_hup)
        event_free(s->sig_hup);
    if (s->base)
        event_base_free(s->base);
    if (s->pid_path[0])
        unlink(s->pid_path);
    accesslog_close();
    ratelimit_free(s->rl);
    rcache_free(s->rcache);
    promptlog_free(s->prompts);
    keystore_free(s->ks);
    auth_free(s->auth);
    metrics_free(s->metrics);
}

int server_run(const struct server_params *p, struct err *err)
{
    struct server srv = {.p = p};
    struct server *s = &srv;
    const struct config *cfg = p->cfg;
    int rc = 0;
    if (evthread_use_pthreads() || !(s->base = event_base_new())) {
        rc = err_set(err, ERR_NOMEM, "serve: cannot create the event loop");
        goto out;
    }
    if ((rc = server_keys(s, err)) || (rc = server_listen(s, err)))
        goto out;
    if (accesslog_open(log_dir_used(), err))
        LOG(WARN, "access log: %s (lines go to the main log)", err->msg);
    s->metrics = metrics_new(p->model_name);
    s->rl = ratelimit_new(NULL, NULL);
    if (!s->metrics || !s->rl) {
        rc = err_set(err, ERR_NOMEM, "serve: out of memory");
        goto out;
    }
    if ((rc = server_engine(s, err)) || (rc = server_keystore(s, err)) ||
        (rc = server_rcache(s, err)) || (rc = server_privacy(s, err)))
        goto out;
    struct http_api_deps d = {
        .base = s->base, .http = s->http, .sched = s->sched, .tok = p->tok,
        .chat_template = cfg->chat_template, .model_name = p->model_name,
        .metrics = s->metrics, .auth = s->auth, .rl = s->rl,
        .max_body = (size_t)cfg->max_body, .n_ctx = p->n_ctx,
        .temperature = cfg->temperature, .top_p = cfg->top_p,
        .vllm_names = cfg->metrics_vllm_names, .rcache = s->rcache,
        .prompts = cfg->log_prompts ? s->prompts : NULL, .erase = &s->erase,
        .admin_key = cfg->admin_key,
    };
    if ((rc = http_api_new(&d, &s->api, err)) || (rc = server_grpc(s, err)))
        goto out;
    if ((rc = server_signals(s))) {
        rc = err_set(err, rc, "serve: cannot install signal handlers");
        goto out;
    }
    server_pid_file(s);
    http_api_set_ready(s->api, true);
    if (s->grpc)
        grpc_api_set_ready(s->grpc, true);
    LOG(INFO, "Server ready on http://%s:%lld (model %s, %lld slots, queue %lld, ctx %d, "
        "%d threads)", cfg->host, (long long)cfg->port, p->model_name,
        (long long)cfg->parallel, (long long)cfg->queue, p->n_ctx, p->n_threads);
    event_base_dispatch(s->base);
    LOG(INFO, "server stopped");
out:
    server_teardown(s);
    return rc;
}
