/*
 * metrics: see metrics.h. Values live in plain arrays under one mutex; rendering
 * walks a table of families and writes each under every requested prefix.
 */
#include "server/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_MAX 64  /* bytes kept of a label value (escaped form may double it) */
#define MAX_BUCKETS 24

/* vLLM's bounds (vllm/v1/metrics/loggers.py; research/serving.md §5.1). */
static const double ttft_buckets[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                      0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0,
                                      20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
static const double itl_buckets[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                     0.3,  0.4,   0.5,  0.75,  1.0, 2.5,  5.0,
                                     7.5,  10.0,  20.0, 40.0,  80.0};
static const double latency_buckets[] = {0.3,  0.5,  0.8,  1.0,   1.5,   2.0,   2.5,
                                         5.0,  10.0, 15.0, 20.0,  30.0,  40.0,  50.0,
                                         60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

struct hist_def {
    const char *name, *help;
    const double *bounds;
    size_t n;
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
static const struct hist_def hist_defs[METRICS_N_HISTOGRAMS] = {
    [METRICS_TTFT] = {"time_to_first_token_seconds", "Time to first token in seconds.",
                      ttft_buckets, N_OF(ttft_buckets)},
    [METRICS_ITL] = {"inter_token_latency_seconds", "Time between output tokens in seconds.",
                     itl_buckets, N_OF(itl_buckets)},
    [METRICS_E2E] = {"e2e_request_latency_seconds", "End-to-end request latency in seconds.",
                     latency_buckets, N_OF(latency_buckets)},
    [METRICS_QUEUE_TIME] = {"request_queue_time_seconds",
                            "Time a request spent waiting in the queue in seconds.",
                            latency_buckets, N_OF(latency_buckets)},
};

static const char *const gauge_names[METRICS_N_GAUGES][2] = {
    [METRICS_REQUESTS_RUNNING] = {"num_requests_running", "Requests being generated now."},
    [METRICS_REQUESTS_WAITING] = {"num_requests_waiting", "Requests waiting to be scheduled."},
    [METRICS_KV_CACHE_USAGE] = {"kv_cache_usage_perc", "Fraction of the KV cache in use (0-1)."},
};

static const char *const counter_names[METRICS_N_COUNTERS][2] = {
    [METRICS_PROMPT_TOKENS] = {"prompt_tokens_total", "Prompt tokens processed."},
    [METRICS_GENERATION_TOKENS] = {"generation_tokens_total", "Tokens generated."},
    [METRICS_PREFIX_CACHE_QUERIES] = {"prefix_cache_queries_total",
                                      "Prompt tokens looked up in the prefix cache."},
    [METRICS_PREFIX_CACHE_HITS] = {"prefix_cache_hits_total",
                                   "Prompt tokens found in the prefix cache."},
    [METRICS_REJECTED_OVERLOAD] = {"rejected_overload_total",
                                   "Requests refused with 503 (queue full or draining)."},
};

struct hist {
    uint64_t counts[MAX_BUCKETS + 1]; /* per bucket, not cumulative; last = above all */
    double sum;
    uint64_t count;
};

/* A counter series with up to two label values (escaped at insertion). */
struct series {
    char a[2 * LABEL_MAX];
    char b[2 * LABEL_MAX];
    double v;
};

struct labelled {
    struct series s[METRICS_MAX_SERIES];
    size_t n;
};

struct metrics {
    pthread_mutex_t mu;
    char model[2 * LABEL_MAX]; /* escaped */
    double gauges[METRICS_N_GAUGES];
    double counters[METRICS_N_COUNTERS];
    struct hist hists[METRICS_N_HISTOGRAMS];
    struct labelled finished, http, limited;
};

/* Escapes a label value (\\, \", \n) into out; cuts the input at LABEL_MAX-1. */
static void escape_label(const char *in, char out[2 * LABEL_MAX])
{
    size_t j = 0;
    for (size_t i = 0; in[i] && i < LABEL_MAX - 1; i++) {
        char c = in[i];
        if (c == '\\' || c == '"' || c == '\n') {
            out[j++] = '\\';
            c = c == '\n' ? 'n' : c;
        }
        out[j++] = c;
    }
    out[j] = '\0';
}

/* Adds v to the series (a, b), creating it; when full, to (other_a, other_b). */
static void labelled_add(struct labelled *l, const char *a, const char *b, double v)
{
    char ea[2 * LABEL_MAX], eb[2 * LABEL_MAX];
    escape_label(a, ea);
    escape_label(b, eb);
    for (size_t i = 0; i < l->n; i++) {
        if (!strcmp(l->s[i].a, ea) && !strcmp(l->s[i].b, eb)) {
            l->s[i].v += v;
            return;
        }
    }
    if (l->n >= METRICS_MAX_SERIES - 1) {
        /* full: the last slot is the overflow series, labelled "other" */
        struct series *o = &l->s[METRICS_MAX_SERIES - 1];
        if (l->n == METRICS_MAX_SERIES - 1) {
            memcpy(o->a, "other", 6);
            memcpy(o->b, eb[0] ? "other" : "", eb[0] ? 6 : 1);
            o->v = 0;
            l->n++;
        }
        o->v += v;
        return;
    }
    struct series *s = &l->s[l->n++];
    memcpy(s->a, ea, sizeof(ea));
    memcpy(s->b, eb, sizeof(eb));
    s->v = v;
}

struct metrics *metrics_new(const char *model_name)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    escape_label(model_name ? model_name : "", m->model);
    /* Series that dashboards rate() exist from the start, at 0. */
    static const char *const reasons[] = {"stop", "length", "abort"};
    for (size_t i = 0; i < N_OF(reasons); i++)
        labelled_add(&m->finished, reasons[i], "", 0);
    static const char *const limits[] = {"requests", "tokens", "concurrent"};
    for (size_t i = 0; i < N_OF(limits); i++)
        labelled_add(&m->limited, limits[i], "", 0);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_gauge_set(struct metrics *m, enum metrics_gauge g, double v)
{
    if ((unsigned)g >= METRICS_N_GAUGES)
        return;
    pthread_mutex_lock(&m->mu);
    m->gauges[g] = v;
    pthread_mutex_unlock(&m->mu);
}

void metrics_gauge_add(struct metrics *m, enum metrics_gauge g, double delta)
{
    if ((unsigned)g >= METRICS_N_GAUGES)
        return;
    pthread_mutex_lock(&m->mu);
    m->gauges[g] += delta;
    pthread_mutex_unlock(&m->mu);
}

void metrics_counter_add(struct metrics *m, enum metrics_counter c, double delta)
{
    if ((unsigned)c >= METRICS_N_COUNTERS || !(delta >= 0))
        return;
    pthread_mutex_lock(&m->mu);
    m->counters[c] += delta;
    pthread_mutex_unlock(&m->mu);
}

void metrics_observe(struct metrics *m, enum metrics_histogram h, double seconds)
{
    if ((unsigned)h >= METRICS_N_HISTOGRAMS || isnan(seconds))
        return;
    const struct hist_def *d = &hist_defs[h];
    size_t b = 0;
    while (b < d->n && seconds > d->bounds[b])
        b++;
    pthread_mutex_lock(&m->mu);
    m->hists[h].counts[b]++;
    m->hists[h].sum += seconds;
    m->hists[h].count++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_request_finished(struct metrics *m, const char *finished_reason)
{
    pthread_mutex_lock(&m->mu);
    labelled_add(&m->finished, finished_reason ? finished_reason : "unknown", "", 1);
    pthread_mutex_unlock(&m->mu);
}

void metrics_http_request(struct metrics *m, int status, const char *protocol)
{
    char st[16];
    snprintf(st, sizeof(st), "%d", status);
    pthread_mutex_lock(&m->mu);
    labelled_add(&m->http, st, protocol && *protocol ? protocol : "http", 1);
    pthread_mutex_unlock(&m->mu);
}

void metrics_rate_limited(struct metrics *m, const char *reason)
{
    pthread_mutex_lock(&m->mu);
    labelled_add(&m->limited, reason ? reason : "unknown", "", 1);
    pthread_mutex_unlock(&m->mu);
}

double metrics_gauge_get(struct metrics *m, enum metrics_gauge g)
{
    if ((unsigned)g >= METRICS_N_GAUGES)
        return 0;
    pthread_mutex_lock(&m->mu);
    double v = m->gauges[g];
    pthread_mutex_unlock(&m->mu);
    return v;
}

double metrics_counter_get(struct metrics *m, enum metrics_counter c)
{
    if ((unsigned)c >= METRICS_N_COUNTERS)
        return 0;
    pthread_mutex_lock(&m->mu);
    double v = m->counters[c];
    pthread_mutex_unlock(&m->mu);
    return v;
}

const double *metrics_buckets(enum metrics_histogram h, size_t *n)
{
    if ((unsigned)h >= METRICS_N_HISTOGRAMS) {
        *n = 0;
        return NULL;
    }
    *n = hist_defs[h].n;
    return hist_defs[h].bounds;
}

/* ---- rendering ---- */

struct sb {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* Shortest form that reads back to the same double; Prometheus spellings of
 * infinities and NaN. */
static const char *fmt_num(double v, char buf[32])
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(buf, 32, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, 32, "%.17g", v);
    return buf;
}

static void head(struct sb *b, const char *pfx, const char *name, const char *type,
                 const char *help)
{
    sb_printf(b, "# HELP %s%s %s\n# TYPE %s%s %s\n", pfx, name, help, pfx, name, type);
}

static void simple(struct sb *b, const struct metrics *m, const char *pfx, const char *name,
                   const char *type, const char *help, double v)
{
    char nb[32];
    head(b, pfx, name, type, help);
    sb_printf(b, "%s%s{model_name=\"%s\"} %s\n", pfx, name, m->model, fmt_num(v, nb));
}

static void labelled_family(struct sb *b, const struct metrics *m, const char *pfx,
                            const char *name, const char *help, const struct labelled *l,
                            const char *la, const char *lb)
{
    char nb[32];
    head(b, pfx, name, "counter", help);
    for (size_t i = 0; i < l->n; i++) {
        const struct series *s = &l->s[i];
        sb_printf(b, "%s%s{model_name=\"%s\",%s=\"%s\"", pfx, name, m->model, la, s->a);
        if (lb)
            sb_printf(b, ",%s=\"%s\"", lb, s->b);
        sb_printf(b, "} %s\n", fmt_num(s->v, nb));
    }
}

static void histogram(struct sb *b, const struct metrics *m, const char *pfx,
                      const char *name, const char *help, enum metrics_histogram h)
{
    const struct hist_def *d = &hist_defs[h];
    const struct hist *v = &m->hists[h];
    char nb[32], lb[32];
    head(b, pfx, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i <= d->n; i++) {
        cum += v->counts[i];
        const char *le = i < d->n ? fmt_num(d->bounds[i], lb) : "+Inf";
        sb_printf(b, "%s%s_bucket{model_name=\"%s\",le=\"%s\"} %llu\n", pfx, name, m->model,
                  le, (unsigned long long)cum);
    }
    sb_printf(b, "%s%s_sum{model_name=\"%s\"} %s\n", pfx, name, m->model, fmt_num(v->sum, nb));
    sb_printf(b, "%s%s_count{model_name=\"%s\"} %llu\n", pfx, name, m->model,
              (unsigned long long)v->count);
}

static void render_prefix(struct sb *b, const struct metrics *m, const char *pfx, bool vllm)
{
    for (int g = 0; g < METRICS_N_GAUGES; g++)
        simple(b, m, pfx, gauge_names[g][0], "gauge", gauge_names[g][1], m->gauges[g]);
    if (vllm) /* the old name, still queried by vLLM's bundled dashboard */
        simple(b, m, pfx, "gpu_cache_usage_perc", "gauge",
               "Fraction of the KV cache in use (0-1); old name of kv_cache_usage_perc.",
               m->gauges[METRICS_KV_CACHE_USAGE]);
    for (int c = 0; c < METRICS_N_COUNTERS; c++)
        simple(b, m, pfx, counter_names[c][0], "counter", counter_names[c][1], m->counters[c]);
    labelled_family(b, m, pfx, "request_success_total", "Finished requests by finish reason.",
                    &m->finished, "finished_reason", NULL);
    labelled_family(b, m, pfx, "http_requests_total",
                    "Requests answered, by status and protocol (http or grpc).", &m->http,
                    "status", "protocol");
    labelled_family(b, m, pfx, "rate_limited_total",
                    "Requests refused with 429, by the limit that was reached.", &m->limited,
                    "reason", NULL);
    for (int h = 0; h < METRICS_N_HISTOGRAMS; h++)
        histogram(b, m, pfx, hist_defs[h].name, hist_defs[h].help, (enum metrics_histogram)h);
    histogram(b, m, pfx, "time_per_output_token_seconds",
              "Time between output tokens in seconds; same data as inter_token_latency_seconds.",
              METRICS_ITL);
}

char *metrics_render(struct metrics *m, bool vllm_names, size_t *len)
{
    struct sb b = {.p = malloc(8192), .cap = 8192};
    if (!b.p)
        return NULL;
    pthread_mutex_lock(&m->mu);
    render_prefix(&b, m, "deepseek:", false);
    if (vllm_names)
        render_prefix(&b, m, "vllm:", true);
    pthread_mutex_unlock(&m->mu);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}
