/* Unit tests for server/metrics: the text exposition (HELP/TYPE before every
 * family, cumulative histogram buckets with vLLM's bounds and +Inf, _sum/_count),
 * label escaping, labelled counters and their bound, the vllm: duplicates, and
 * `promtool check metrics` on the output when promtool is installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/metrics.h"

/* The value of the sample line that starts with `series ` (NAN when absent). */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return NAN;
}

/* Every sample's family was declared by # HELP and # TYPE lines before it, and
 * each family is declared once. */
static void check_families(const char *text)
{
    char declared[256][96];
    size_t nd = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, '\n');
        assert_non_null(end); /* every line ends with \n, the last one too */
        char line[512];
        size_t len = (size_t)(end - p) < sizeof line - 1 ? (size_t)(end - p) : sizeof line - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        char name[96], type[32];
        if (sscanf(line, "# TYPE %95s %31s", name, type) == 2) {
            for (size_t i = 0; i < nd; i++)
                if (!strcmp(declared[i], name))
                    fail_msg("family %s declared twice", name);
            assert_true(nd < 256);
            memcpy(declared[nd++], name, sizeof name);
            /* the HELP line comes right before the TYPE line */
            char help[128];
            snprintf(help, sizeof help, "# HELP %s ", name);
            const char *prev = p - 2;
            while (prev > text && prev[-1] != '\n')
                prev--;
            assert_true(prev >= text && !strncmp(prev, help, strlen(help)));
        } else if (line[0] != '#') {
            size_t k = strcspn(line, "{ ");
            memcpy(name, line, k);
            name[k] = '\0';
            int found = 0;
            for (size_t i = 0; i < nd && !found; i++) {
                size_t dl = strlen(declared[i]);
                found = !strncmp(name, declared[i], dl) &&
                        (!name[dl] || !strcmp(name + dl, "_bucket") ||
                         !strcmp(name + dl, "_sum") || !strcmp(name + dl, "_count"));
            }
            if (!found)
                fail_msg("sample '%s' has no # TYPE before it", line);
        }
        p = end + 1;
    }
}

static void test_families_and_simple_values(void **state)
{
    (void)state;
    struct metrics *m = metrics_new("deepseek-r1-1.5b");
    assert_non_null(m);
    metrics_gauge_set(m, METRICS_REQUESTS_RUNNING, 3);
    metrics_gauge_add(m, METRICS_REQUESTS_RUNNING, -1);
    metrics_gauge_set(m, METRICS_KV_CACHE_USAGE, 0.25);
    metrics_counter_add(m, METRICS_PROMPT_TOKENS, 12);
    metrics_counter_add(m, METRICS_PROMPT_TOKENS, 30);
    metrics_counter_add(m, METRICS_PROMPT_TOKENS, -5); /* ignored: counters only rise */
    metrics_counter_add(m, METRICS_GENERATION_TOKENS, 7);
    metrics_request_finished(m, "stop");
    metrics_request_finished(m, "stop");
    metrics_request_finished(m, "length");
    metrics_http_request(m, 200, "http");
    metrics_http_request(m, 429, "grpc");
    metrics_rate_limited(m, "tokens");
    assert_true(metrics_gauge_get(m, METRICS_REQUESTS_RUNNING) == 2);
    assert_true(metrics_counter_get(m, METRICS_PROMPT_TOKENS) == 42);

    size_t len = 0;
    char *t = metrics_render(m, false, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    check_families(t);
    const char *lbl = "{model_name=\"deepseek-r1-1.5b\"}";
    char s[256];
    snprintf(s, sizeof s, "deepseek:num_requests_running%s", lbl);
    assert_true(sample(t, s) == 2);
    assert_non_null(strstr(t, "# TYPE deepseek:num_requests_running gauge\n"));
    snprintf(s, sizeof s, "deepseek:kv_cache_usage_perc%s", lbl);
    assert_true(sample(t, s) == 0.25);
    snprintf(s, sizeof s, "deepseek:prompt_tokens_total%s", lbl);
    assert_true(sample(t, s) == 42);
    assert_non_null(strstr(t, "# TYPE deepseek:prompt_tokens_total counter\n"));
    assert_true(sample(t, "deepseek:request_success_total{model_name=\"deepseek-r1-1.5b\","
                          "finished_reason=\"stop\"}") == 2);
    assert_true(sample(t, "deepseek:request_success_total{model_name=\"deepseek-r1-1.5b\","
                          "finished_reason=\"abort\"}") == 0); /* present from the start */
    assert_true(sample(t, "deepseek:http_requests_total{model_name=\"deepseek-r1-1.5b\","
                          "status=\"429\",protocol=\"grpc\"}") == 1);
    assert_true(sample(t, "deepseek:rate_limited_total{model_name=\"deepseek-r1-1.5b\","
                          "reason=\"tokens\"}") == 1);
    assert_null(strstr(t, "vllm:"));
    assert_null(strstr(t, "gpu_cache_usage_perc"));
    free(t);
    metrics_free(m);
}

static void test_histogram_buckets(void **state)
{
    (void)state;
    struct metrics *m = metrics_new("m");
    /* 0.001 is exactly a bound: it belongs to le="0.001" (le = less or equal) */
    const double obs[] = {0.0005, 0.001, 0.03, 3000};
    for (size_t i = 0; i < 4; i++)
        metrics_observe(m, METRICS_TTFT, obs[i]);
    metrics_observe(m, METRICS_TTFT, NAN); /* ignored */
    metrics_observe(m, METRICS_ITL, 0.05);
    char *t = metrics_render(m, false, NULL);
    assert_non_null(t);
    check_families(t);
    assert_non_null(strstr(t, "# TYPE deepseek:time_to_first_token_seconds histogram\n"));
    const char *b = "deepseek:time_to_first_token_seconds_bucket{model_name=\"m\",le=";
    char s[256];
    snprintf(s, sizeof s, "%s\"0.001\"}", b);
    assert_true(sample(t, s) == 2);
    snprintf(s, sizeof s, "%s\"0.02\"}", b);
    assert_true(sample(t, s) == 2);
    snprintf(s, sizeof s, "%s\"0.04\"}", b);
    assert_true(sample(t, s) == 3);
    snprintf(s, sizeof s, "%s\"2560\"}", b);
    assert_true(sample(t, s) == 3);
    snprintf(s, sizeof s, "%s\"+Inf\"}", b);
    assert_true(sample(t, s) == 4);
    assert_true(sample(t, "deepseek:time_to_first_token_seconds_count{model_name=\"m\"}") == 4);
    double sum = sample(t, "deepseek:time_to_first_token_seconds_sum{model_name=\"m\"}");
    assert_true(fabs(sum - 3000.0315) < 1e-9);

    /* every bound of vLLM's list appears once, in order, counts never decrease */
    size_t nb;
    const double *bounds = metrics_buckets(METRICS_TTFT, &nb);
    assert_int_equal(nb, 22);
    assert_true(bounds[0] == 0.001 && bounds[nb - 1] == 2560);
    double last = -1;
    for (size_t i = 0; i < nb; i++) {
        char le[32];
        snprintf(le, sizeof le, "%.15g", bounds[i]);
        snprintf(s, sizeof s, "%s\"%s\"}", b, le);
        double v = sample(t, s);
        if (isnan(v))
            fail_msg("no bucket line for le=%s", le);
        assert_true(v >= last);
        last = v;
    }
    /* the ITL histogram is also exposed as time_per_output_token_seconds */
    assert_true(sample(t, "deepseek:inter_token_latency_seconds_bucket{model_name=\"m\","
                          "le=\"0.05\"}") == 1);
    assert_true(sample(t, "deepseek:time_per_output_token_seconds_bucket{model_name=\"m\","
                          "le=\"0.05\"}") == 1);
    assert_true(sample(t, "deepseek:time_per_output_token_seconds_bucket{model_name=\"m\","
                          "le=\"0.025\"}") == 0);
    metrics_buckets(METRICS_E2E, &nb);
    assert_int_equal(nb, 21);
    metrics_buckets(METRICS_ITL, &nb);
    assert_int_equal(nb, 19);
    free(t);
    metrics_free(m);
}

static void test_label_escaping_and_bound(void **state)
{
    (void)state;
    struct metrics *m = metrics_new("my \"model\"\\x\nz");
    metrics_request_finished(m, "we\"ird");
    for (int i = 0; i < 40; i++) {
        char r[16];
        snprintf(r, sizeof r, "r%d", i);
        metrics_request_finished(m, r);
    }
    char *t = metrics_render(m, false, NULL);
    assert_non_null(t);
    check_families(t);
    const char *lbl = "model_name=\"my \\\"model\\\"\\\\x\\nz\"";
    char s[256];
    snprintf(s, sizeof s, "deepseek:num_requests_waiting{%s}", lbl);
    assert_true(sample(t, s) == 0);
    snprintf(s, sizeof s, "deepseek:request_success_total{%s,finished_reason=\"we\\\"ird\"}", lbl);
    assert_true(sample(t, s) == 1);
    /* 3 preset + 1 + 40 reasons > 32 series: the overflow is counted as "other" */
    size_t n = 0;
    double total = 0;
    for (const char *p = t; (p = strstr(p, "deepseek:request_success_total{")); p++) {
        n++;
        total += strtod(strchr(p, '}') + 2, NULL);
    }
    assert_int_equal(n, METRICS_MAX_SERIES);
    assert_true(total == 41);
    snprintf(s, sizeof s, "deepseek:request_success_total{%s,finished_reason=\"other\"}", lbl);
    assert_true(sample(t, s) == 41 - (METRICS_MAX_SERIES - 4));
    free(t);
    metrics_free(m);
}

static void test_vllm_names(void **state)
{
    (void)state;
    struct metrics *m = metrics_new("m");
    metrics_gauge_set(m, METRICS_KV_CACHE_USAGE, 0.5);
    metrics_counter_add(m, METRICS_GENERATION_TOKENS, 9);
    metrics_observe(m, METRICS_E2E, 1.2);
    char *t = metrics_render(m, true, NULL);
    assert_non_null(t);
    check_families(t);
    /* every deepseek: family also exists as vllm: with the same samples */
    size_t families = 0;
    for (const char *p = t; (p = strstr(p, "# TYPE deepseek:")); p++) {
        char name[96], v[128];
        assert_int_equal(sscanf(p, "# TYPE deepseek:%95s", name), 1);
        snprintf(v, sizeof v, "# TYPE vllm:%s ", name);
        if (!strstr(t, v))
            fail_msg("no vllm: twin of deepseek:%s", name);
        families++;
    }
    assert_true(families >= 16);
    assert_true(sample(t, "vllm:generation_tokens_total{model_name=\"m\"}") == 9);
    assert_true(sample(t, "vllm:gpu_cache_usage_perc{model_name=\"m\"}") == 0.5);
    assert_true(sample(t, "vllm:kv_cache_usage_perc{model_name=\"m\"}") == 0.5);
    assert_true(sample(t, "vllm:e2e_request_latency_seconds_bucket{model_name=\"m\","
                          "le=\"1.5\"}") == 1);
    assert_true(sample(t, "vllm:e2e_request_latency_seconds_bucket{model_name=\"m\","
                          "le=\"1\"}") == 0);
    free(t);
    metrics_free(m);
}

/* Runs promtool check metrics on text. Returns its exit status and its output in
 * out; -1 when promtool is not installed. */
static int promtool(const char *text, char *out, size_t size)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        return -1;
    char path[] = "/tmp/test_metrics.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* promtool's only complaint may be the colon: vLLM's names need it (Prometheus
 * reserves ':' for recording rules, so its linter flags every vllm: metric too). */
static int only_colon_lint(const char *out)
{
    const char *p = out;
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *want = "metric names should not contain ':'";
        if (len && (len < strlen(want) || strncmp(p + len - strlen(want), want, strlen(want))))
            return 0;
        p += len + (end ? 1 : 0);
    }
    return 1;
}

static void test_promtool(void **state)
{
    (void)state;
    struct metrics *m = metrics_new("we\"ird\\model");
    metrics_observe(m, METRICS_QUEUE_TIME, 0.01);
    metrics_http_request(m, 200, "http");
    metrics_request_finished(m, "stop");
    char *t = metrics_render(m, true, NULL);
    assert_non_null(t);
    char out[65536];
    int rc = promtool(t, out, sizeof out);
    if (rc < 0) {
        fprintf(stderr, "skip: promtool not installed (apt-get install prometheus); "
                        "exposition checked by the other tests only\n");
        free(t);
        metrics_free(m);
        skip();
    }
    if (!(rc == 0 || (rc == 3 && only_colon_lint(out))))
        fail_msg("promtool check metrics exit %d:\n%s", rc, out);
    /* the check itself can fail: a broken exposition is rejected */
    rc = promtool("# TYPE x_total counter\nx_total{a=\"1} 1\n", out, sizeof out);
    assert_true(rc != 0 && !only_colon_lint(out));
    rc = promtool("# TYPE x_total counter\nx_total 1\n", out, sizeof out); /* no HELP */
    assert_true(rc != 0 && !only_colon_lint(out));
    free(t);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families_and_simple_values),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_label_escaping_and_bound),
        cmocka_unit_test(test_vllm_names),
        cmocka_unit_test(test_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
