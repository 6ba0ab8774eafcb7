/* Unit tests for server/ratelimit with an injected clock: requests/minute and
 * tokens/minute buckets (refill, retry-after values, refunds and overruns),
 * concurrency, per-key isolation, limits changed by a reload, the OpenAI header
 * values and Go-style durations, pruning, and a threaded concurrency bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "server/ratelimit.h"

static int64_t fake_now(void *ctx)
{
    return *(int64_t *)ctx;
}

static struct ratelimit *new_rl(int64_t *clock)
{
    struct ratelimit *rl = ratelimit_new(fake_now, clock);
    assert_non_null(rl);
    return rl;
}

static void test_requests_per_minute(void **state)
{
    (void)state;
    int64_t now = 1000000;
    struct ratelimit *rl = new_rl(&now);
    struct ratelimit_limits lim = {.rpm = 3};
    struct ratelimit_decision d;
    for (long i = 0; i < 3; i++) {
        assert_int_equal(ratelimit_acquire(rl, "alice", &lim, 10, &d), 0);
        assert_true(d.allowed);
        assert_int_equal(d.limit_requests, 3);
        assert_int_equal(d.remaining_requests, 2 - i);
        assert_int_equal(d.reserved_tokens, 0); /* no tpm: nothing reserved */
        ratelimit_release(rl, "alice", d.reserved_tokens, 10);
    }
    /* empty bucket: full again after 60 s, the next request in 60/3 = 20 s */
    assert_int_equal(d.reset_requests_ms, 60000);
    ratelimit_acquire(rl, "alice", &lim, 10, &d);
    assert_false(d.allowed);
    assert_int_equal(d.reason, RATELIMIT_REQUESTS);
    assert_int_equal(d.retry_after_s, 20);
    assert_int_equal(d.remaining_requests, 0);

    now += 19999; /* 1 ms short: still denied, retry-after rounds up to 1 s */
    ratelimit_acquire(rl, "alice", &lim, 10, &d);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_s, 1);
    now += 1;
    ratelimit_acquire(rl, "alice", &lim, 10, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining_requests, 0);
    ratelimit_release(rl, "alice", 0, 0);

    /* another key has its own bucket */
    ratelimit_acquire(rl, "bob", &lim, 10, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining_requests, 2);
    ratelimit_release(rl, "bob", 0, 0);

    /* a long pause refills only up to the limit */
    now += 3600 * 1000;
    ratelimit_acquire(rl, "alice", &lim, 10, &d);
    assert_int_equal(d.remaining_requests, 2);
    ratelimit_release(rl, "alice", 0, 0);
    ratelimit_free(rl);
}

static void test_tokens_per_minute(void **state)
{
    (void)state;
    int64_t now = 0;
    struct ratelimit *rl = new_rl(&now);
    struct ratelimit_limits lim = {.tpm = 1000};
    struct ratelimit_decision d, d2;
    ratelimit_acquire(rl, "k", &lim, 600, &d);
    assert_true(d.allowed);
    assert_int_equal(d.reserved_tokens, 600);
    assert_int_equal(d.remaining_tokens, 400);
    assert_int_equal(d.reset_tokens_ms, 36000); /* 600 tokens at 1000/min */

    /* 600 more do not fit: 200 missing at 1000/60 per second = 12 s */
    ratelimit_acquire(rl, "k", &lim, 600, &d2);
    assert_false(d2.allowed);
    assert_int_equal(d2.reason, RATELIMIT_TOKENS);
    assert_int_equal(d2.retry_after_s, 12);
    assert_int_equal(d2.reserved_tokens, 0);

    /* the first request used only 100: 500 come back, now 600 fit */
    ratelimit_release(rl, "k", d.reserved_tokens, 100);
    ratelimit_acquire(rl, "k", &lim, 600, &d2);
    assert_true(d2.allowed);
    assert_int_equal(d2.remaining_tokens, 300);

    /* an overrun (used 1500 of 600 reserved) is charged: the level goes below 0 */
    ratelimit_release(rl, "k", d2.reserved_tokens, 1500);
    ratelimit_acquire(rl, "k", &lim, 1, &d);
    assert_false(d.allowed);
    assert_int_equal(d.remaining_tokens, 0);
    /* level is 300-900 = -600: 601 tokens missing = 36.06 s -> 37 s */
    assert_int_equal(d.retry_after_s, 37);

    /* an estimate above tpm is capped, so it passes once the bucket is full */
    now += 120000;
    ratelimit_acquire(rl, "k", &lim, 5000, &d);
    assert_true(d.allowed);
    assert_int_equal(d.reserved_tokens, 1000);
    assert_int_equal(d.remaining_tokens, 0);
    ratelimit_release(rl, "k", d.reserved_tokens, 5000);
    ratelimit_free(rl);
}

static void test_concurrency(void **state)
{
    (void)state;
    int64_t now = 0;
    struct ratelimit *rl = new_rl(&now);
    struct ratelimit_limits lim = {.concurrent = 2, .rpm = 100};
    struct ratelimit_decision d;
    ratelimit_acquire(rl, "k", &lim, 0, &d);
    assert_true(d.allowed);
    ratelimit_acquire(rl, "k", &lim, 0, &d);
    assert_true(d.allowed);
    ratelimit_acquire(rl, "k", &lim, 0, &d);
    assert_false(d.allowed);
    assert_int_equal(d.reason, RATELIMIT_CONCURRENT);
    assert_int_equal(d.retry_after_s, 1);
    assert_int_equal(d.remaining_requests, 98); /* a denial takes nothing */
    ratelimit_release(rl, "k", 0, 0);
    ratelimit_acquire(rl, "k", &lim, 0, &d);
    assert_true(d.allowed);
    ratelimit_release(rl, "k", 0, 0);
    ratelimit_release(rl, "k", 0, 0);
    ratelimit_free(rl);
}

static void test_unlimited_and_reload(void **state)
{
    (void)state;
    int64_t now = 0;
    struct ratelimit *rl = new_rl(&now);
    struct ratelimit_limits none = {0};
    struct ratelimit_decision d;
    struct ratelimit_header h[RATELIMIT_MAX_HEADERS];
    for (int i = 0; i < 1000; i++) {
        ratelimit_acquire(rl, "", &none, 100000, &d);
        assert_true(d.allowed);
        ratelimit_release(rl, "", d.reserved_tokens, 100000);
    }
    assert_int_equal(ratelimit_headers(&d, h), 0);

    /* rpm lowered from 60 to 2 by a key-file reload: takes effect at once */
    struct ratelimit_limits hi = {.rpm = 60}, lo = {.rpm = 2};
    ratelimit_acquire(rl, "k", &hi, 0, &d);
    assert_int_equal(d.remaining_requests, 59);
    ratelimit_release(rl, "k", 0, 0);
    ratelimit_acquire(rl, "k", &lo, 0, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining_requests, 1);
    ratelimit_release(rl, "k", 0, 0);
    ratelimit_acquire(rl, "k", &lo, 0, &d);
    ratelimit_release(rl, "k", 0, 0);
    ratelimit_acquire(rl, "k", &lo, 0, &d);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_s, 30);

    /* prune drops idle keys only */
    ratelimit_acquire(rl, "busy", &lo, 0, &d);
    now += 10 * 60 * 1000;
    assert_int_equal(ratelimit_prune(rl, 60 * 1000), 2); /* "" and "k" */
    ratelimit_release(rl, "busy", 0, 0);
    ratelimit_free(rl);
}

static const char *header(struct ratelimit_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(h[i].name, name))
            return h[i].value;
    return NULL;
}

static void test_headers(void **state)
{
    (void)state;
    int64_t now = 0;
    struct ratelimit *rl = new_rl(&now);
    struct ratelimit_limits lim = {.rpm = 60, .tpm = 1000};
    struct ratelimit_decision d;
    struct ratelimit_header h[RATELIMIT_MAX_HEADERS];
    ratelimit_acquire(rl, "k", &lim, 600, &d);
    size_t n = ratelimit_headers(&d, h);
    assert_int_equal(n, 6);
    assert_string_equal(header(h, n, "x-ratelimit-limit-requests"), "60");
    assert_string_equal(header(h, n, "x-ratelimit-remaining-requests"), "59");
    assert_string_equal(header(h, n, "x-ratelimit-reset-requests"), "1s");
    assert_string_equal(header(h, n, "x-ratelimit-limit-tokens"), "1000");
    assert_string_equal(header(h, n, "x-ratelimit-remaining-tokens"), "400");
    assert_string_equal(header(h, n, "x-ratelimit-reset-tokens"), "36s");
    assert_null(header(h, n, "retry-after"));

    ratelimit_acquire(rl, "k", &lim, 600, &d);
    n = ratelimit_headers(&d, h);
    assert_int_equal(n, 7);
    assert_string_equal(header(h, n, "retry-after"), "12");
    assert_string_equal(header(h, n, "x-ratelimit-remaining-requests"), "59");
    ratelimit_free(rl);
    assert_string_equal(ratelimit_reason_name(RATELIMIT_TOKENS), "tokens");
}

static void test_go_durations(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *want;
    } cases[] = {{0, "0s"},         {-5, "0s"},          {12, "12ms"},      {999, "999ms"},
                 {1000, "1s"},      {1500, "1.5s"},      {1250, "1.25s"},   {1001, "1.001s"},
                 {59000, "59s"},    {60000, "1m0s"},     {90500, "1m30.5s"}, {360000, "6m0s"},
                 {3600000, "1h0m0s"}, {3723004, "1h2m3.004s"}};
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(ratelimit_format_duration(cases[i].ms, buf, sizeof buf),
                            cases[i].want);
}

struct worker {
    struct ratelimit *rl;
    atomic_int *inflight, *max_seen;
    int admitted;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct ratelimit_limits lim = {.concurrent = 3};
    for (int i = 0; i < 2000; i++) {
        struct ratelimit_decision d;
        ratelimit_acquire(w->rl, "shared", &lim, 1, &d);
        if (!d.allowed)
            continue;
        int now = atomic_fetch_add(w->inflight, 1) + 1;
        int m = atomic_load(w->max_seen);
        while (now > m && !atomic_compare_exchange_weak(w->max_seen, &m, now))
            ;
        atomic_fetch_sub(w->inflight, 1);
        ratelimit_release(w->rl, "shared", d.reserved_tokens, 1);
        w->admitted++;
    }
    return NULL;
}

static void test_threads_respect_concurrency(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(NULL, NULL); /* the real clock */
    assert_non_null(rl);
    atomic_int inflight = 0, max_seen = 0;
    struct worker w[6];
    pthread_t t[6];
    for (int i = 0; i < 6; i++) {
        w[i] = (struct worker){rl, &inflight, &max_seen, 0};
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    int admitted = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        admitted += w[i].admitted;
    }
    assert_true(atomic_load(&max_seen) <= 3);
    assert_true(admitted > 0);
    /* everything released: 3 more fit at once, a 4th does not */
    struct ratelimit_limits lim = {.concurrent = 3};
    struct ratelimit_decision d;
    for (int i = 0; i < 3; i++) {
        ratelimit_acquire(rl, "shared", &lim, 1, &d);
        assert_true(d.allowed);
    }
    ratelimit_acquire(rl, "shared", &lim, 1, &d);
    assert_false(d.allowed);
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_per_minute),
        cmocka_unit_test(test_tokens_per_minute),
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_unlimited_and_reload),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_go_durations),
        cmocka_unit_test(test_threads_respect_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
