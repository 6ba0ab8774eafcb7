/*
 * metrics: the server's Prometheus metrics and their text exposition (format
 * 0.0.4, served as "text/plain; version=0.0.4; charset=utf-8" on GET /metrics).
 *
 * A fixed set, named like vLLM's (docs/API.md "Metrics") under the "deepseek:"
 * prefix, every series labelled model_name="<served model>":
 *   gauges     num_requests_running, num_requests_waiting, kv_cache_usage_perc (0..1)
 *   counters   prompt_tokens_total, generation_tokens_total,
 *              prefix_cache_queries_total, prefix_cache_hits_total (in tokens),
 *              request_success_total{finished_reason},
 *              http_requests_total{status,protocol},
 *              rate_limited_total{reason}, rejected_overload_total
 *   histograms time_to_first_token_seconds, inter_token_latency_seconds (also
 *              exposed as time_per_output_token_seconds, the name vLLM's bundled
 *              dashboard queries), e2e_request_latency_seconds,
 *              request_queue_time_seconds; vLLM's bucket bounds.
 * With vllm_names, metrics_render writes every family a second time under "vllm:"
 * (plus vllm:gpu_cache_usage_perc, the old name of kv_cache_usage_perc), so
 * vLLM's Grafana dashboard works unchanged. Label values are escaped (\\, \", \n).
 * Labelled counters hold at most METRICS_MAX_SERIES distinct label sets each;
 * later new sets are counted under finished_reason="other" / status="other" so a
 * misbehaving caller cannot grow memory without bound.
 *
 * Never put key values or prompt text in labels (ids only).
 * Threading: all functions may be called from any thread (one mutex; updates are
 * a few additions under it). metrics_free must not race with anything.
 */
#ifndef DS_SERVER_METRICS_H
#define DS_SERVER_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#define METRICS_MAX_SERIES 32
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics;

enum metrics_gauge {
    METRICS_REQUESTS_RUNNING = 0,
    METRICS_REQUESTS_WAITING,
    METRICS_KV_CACHE_USAGE, /* fraction 0..1 */
    METRICS_N_GAUGES
};

enum metrics_counter {
    METRICS_PROMPT_TOKENS = 0,
    METRICS_GENERATION_TOKENS,
    METRICS_PREFIX_CACHE_QUERIES, /* tokens looked up */
    METRICS_PREFIX_CACHE_HITS,    /* tokens found */
    METRICS_REJECTED_OVERLOAD,    /* 503 for a full queue / draining */
    METRICS_N_COUNTERS
};

enum metrics_histogram {
    METRICS_TTFT = 0,  /* time_to_first_token_seconds */
    METRICS_ITL,       /* inter_token_latency_seconds (= time_per_output_token) */
    METRICS_E2E,       /* e2e_request_latency_seconds */
    METRICS_QUEUE_TIME,/* request_queue_time_seconds */
    METRICS_N_HISTOGRAMS
};

/* model_name is copied (the label value of every series). NULL on no memory. */
struct metrics *metrics_new(const char *model_name);
void metrics_free(struct metrics *m);

void metrics_gauge_set(struct metrics *m, enum metrics_gauge g, double v);
void metrics_gauge_add(struct metrics *m, enum metrics_gauge g, double delta);
/* delta >= 0 (negative values are ignored: counters only go up). */
void metrics_counter_add(struct metrics *m, enum metrics_counter c, double delta);
void metrics_observe(struct metrics *m, enum metrics_histogram h, double seconds);

/* request_success_total{finished_reason}: "stop", "length", "tool_calls", "abort",
 * "content_filter", "insufficient_system_resource", ... */
void metrics_request_finished(struct metrics *m, const char *finished_reason);
/* http_requests_total{status,protocol}: protocol "http" or "grpc". */
void metrics_http_request(struct metrics *m, int status, const char *protocol);
/* rate_limited_total{reason}: reason from ratelimit_reason_name() ("requests",
 * "tokens", "concurrent"). */
void metrics_rate_limited(struct metrics *m, const char *reason);

/* Current value of a gauge/counter (tests and /health details). */
double metrics_gauge_get(struct metrics *m, enum metrics_gauge g);
double metrics_counter_get(struct metrics *m, enum metrics_counter c);

/* The whole exposition as a malloc'ed NUL-terminated string (caller frees); *len
 * (may be NULL) gets its length. NULL on no memory. */
char *metrics_render(struct metrics *m, bool vllm_names, size_t *len);

/* The bucket upper bounds (without +Inf) of a histogram; *n gets the count. */
const double *metrics_buckets(enum metrics_histogram h, size_t *n);

#endif
