/* Unit tests for engine/sampler. Statistical checks use fixed seeds, so they are
 * deterministic; their bounds are wide enough for any seed but tight enough to
 * catch a wrong distribution. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"

/* A tiny test-local generator for logits, independent of the sampler's PRNG. */
static uint32_t lcg(uint32_t *x)
{
    *x = *x * 1664525u + 1013904223u;
    return *x >> 8;
}

static float lcg_float(uint32_t *x, float lo, float hi)
{
    return lo + (hi - lo) * (float)lcg(x) / (float)(1u << 24);
}

static struct sampler *make(struct sampler_params p, int32_t n_vocab)
{
    struct sampler *s = NULL;
    struct err e;
    assert_int_equal(sampler_new(&p, n_vocab, &s, &e), 0);
    assert_non_null(s);
    return s;
}

static struct sampler_params seeded(float temperature, uint64_t seed)
{
    struct sampler_params p = sampler_params_default();
    p.temperature = temperature;
    p.has_seed = true;
    p.seed = seed;
    return p;
}

/* Samples n times from a copy of logits; counts[id]++. */
static void histogram(struct sampler *s, const float *logits, int32_t n_vocab, int n,
                      int *counts)
{
    float *work = malloc((size_t)n_vocab * sizeof *work);
    assert_non_null(work);
    for (int i = 0; i < n; i++) {
        memcpy(work, logits, (size_t)n_vocab * sizeof *work);
        int32_t t = sampler_sample(s, work);
        assert_true(t >= 0 && t < n_vocab);
        counts[t]++;
    }
    free(work);
}

static void test_greedy_argmax_lowest_id_on_ties(void **state)
{
    (void)state;
    struct sampler *s = make(seeded(0.0f, 1), 6);
    float a[6] = {0.5f, 2.0f, -1.0f, 3.0f, 3.0f, 1.0f};
    assert_int_equal(sampler_sample(s, a), 3);
    float b[6] = {NAN, 1.0f, 1.0f, NAN, -INFINITY, 0.0f};
    assert_int_equal(sampler_sample(s, b), 1);
    float c[6] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(sampler_sample(s, c), ERR_RANGE);
    float d[6] = {0, 0, 0, 0, 0, 0};
    assert_int_equal(sampler_sample(s, d), 0);
    sampler_free(s);
}

static void sequence(uint64_t seed, float *logits, int32_t n_vocab, int32_t *out, int n)
{
    struct sampler_params p = seeded(1.0f, seed);
    p.top_p = 0.9f;
    struct sampler *s = make(p, n_vocab);
    float *work = malloc((size_t)n_vocab * sizeof *work);
    assert_non_null(work);
    for (int i = 0; i < n; i++) {
        memcpy(work, logits, (size_t)n_vocab * sizeof *work);
        out[i] = sampler_sample(s, work);
        assert_true(out[i] >= 0);
    }
    free(work);
    assert_int_equal(sampler_seed(s), seed);
    sampler_free(s);
}

static void test_same_seed_same_sequence(void **state)
{
    (void)state;
    enum { V = 1000, N = 1000 };
    float logits[V];
    uint32_t x = 7;
    for (int i = 0; i < V; i++)
        logits[i] = lcg_float(&x, -3.0f, 3.0f);
    static int32_t a[N], b[N], c[N];
    sequence(42, logits, V, a, N);
    sequence(42, logits, V, b, N);
    sequence(43, logits, V, c, N);
    assert_memory_equal(a, b, sizeof a);
    int same = 0;
    for (int i = 0; i < N; i++)
        same += a[i] == c[i];
    assert_true(same < N / 10); /* unrelated streams agree rarely */
}

static void test_unset_seed_is_random(void **state)
{
    (void)state;
    struct sampler_params p = sampler_params_default();
    struct sampler *s1 = make(p, 10), *s2 = make(p, 10);
    assert_true(sampler_seed(s1) != sampler_seed(s2));
    sampler_free(s1);
    sampler_free(s2);
}

static void test_top_k_1_is_greedy(void **state)
{
    (void)state;
    enum { V = 5000 };
    struct sampler_params p = seeded(1.5f, 9);
    p.top_k = 1;
    struct sampler *s = make(p, V), *g = make(seeded(0.0f, 9), V);
    static float a[V], b[V];
    uint32_t x = 3;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < V; i++)
            a[i] = b[i] = (float)(int)lcg_float(&x, -20.0f, 20.0f); /* many ties */
        assert_int_equal(sampler_sample(s, a), sampler_sample(g, b));
    }
    sampler_free(s);
    sampler_free(g);
}

static void test_temperature_matches_softmax(void **state)
{
    (void)state;
    const float logits[3] = {1.0f, 2.0f, 3.0f};
    const float temps[3] = {0.5f, 1.0f, 2.0f};
    for (int t = 0; t < 3; t++) {
        struct sampler *s = make(seeded(temps[t], 100 + (uint64_t)t), 3);
        int counts[3] = {0};
        enum { N = 20000 };
        histogram(s, logits, 3, N, counts);
        double z = 0, want[3];
        for (int i = 0; i < 3; i++)
            z += want[i] = exp(logits[i] / temps[t]);
        for (int i = 0; i < 3; i++)
            assert_true(fabs((double)counts[i] / N - want[i] / z) < 0.02);
        sampler_free(s);
    }
}

static void test_top_p_small_keeps_only_top(void **state)
{
    (void)state;
    const float logits[5] = {1.0f, 1.5f, 1.4f, 0.0f, 1.2f};
    struct sampler_params p = seeded(1.0f, 5);
    p.top_p = 0.01f;
    struct sampler *s = make(p, 5);
    int counts[5] = {0};
    histogram(s, logits, 5, 2000, counts);
    assert_int_equal(counts[1], 2000);
    sampler_free(s);
}

/* probs 0.5, 0.3, 0.15, 0.05 placed at scattered ids of a vocabulary whose other
 * entries are -inf: top_p 0.7 keeps exactly the first two, in ratio 5:3. */
static void check_nucleus(int32_t top_k)
{
    enum { V = 4096, N = 20000 };
    static float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = -INFINITY;
    const int32_t ids[4] = {3001, 17, 4095, 2024};
    const double probs[4] = {0.5, 0.3, 0.15, 0.05};
    for (int i = 0; i < 4; i++)
        logits[ids[i]] = (float)log(probs[i]);
    struct sampler_params p = seeded(1.0f, 11);
    p.top_p = 0.7f;
    p.top_k = top_k;
    struct sampler *s = make(p, V);
    static int counts[V];
    memset(counts, 0, sizeof counts);
    histogram(s, logits, V, N, counts);
    assert_int_equal(counts[ids[0]] + counts[ids[1]], N);
    assert_true(fabs((double)counts[ids[0]] / N - 0.625) < 0.02);
    sampler_free(s);
}

static void test_top_p_nucleus(void **state)
{
    (void)state;
    check_nucleus(0);  /* bucketed path over all candidates */
    check_nucleus(10); /* sorted path after top_k */
}

/* On random logits over a big vocabulary, every sampled token lies in the nucleus
 * computed by brute force, and the nucleus's least likely token is reachable. */
static int desc_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void check_top_p_brute_force(float lo, float hi, float temperature, float top_p,
                                    float band)
{
    enum { V = 152064 };
    static float logits[V], sorted[V], work[V];
    uint32_t x = 99;
    for (int i = 0; i < V; i++)
        logits[i] = lcg_float(&x, lo, hi);
    double z = 0;
    for (int i = 0; i < V; i++)
        z += exp(((double)logits[i] - hi) / temperature);
    memcpy(sorted, logits, sizeof sorted);
    qsort(sorted, V, sizeof *sorted, desc_float);
    double cum = 0;
    float cutoff = sorted[0];
    for (int i = 0; i < V; i++) {
        cum += exp(((double)sorted[i] - hi) / temperature) / z;
        cutoff = sorted[i];
        if (cum >= top_p)
            break;
    }
    struct sampler_params p = seeded(temperature, 77);
    p.top_p = top_p;
    struct sampler *s = make(p, V);
    float min_seen = INFINITY;
    for (int i = 0; i < 1000; i++) {
        memcpy(work, logits, sizeof work);
        int32_t t = sampler_sample(s, work);
        assert_true(logits[t] >= cutoff);
        min_seen = fminf(min_seen, logits[t]);
    }
    assert_true(min_seen - cutoff < band);
    sampler_free(s);
}

static void test_top_p_matches_brute_force(void **state)
{
    (void)state;
    /* The nucleus spans logits [~9.2, 10]; 12% of its mass lies in its lowest 0.2. */
    check_top_p_brute_force(-10.0f, 10.0f, 0.5f, 0.8f, 0.2f);
    /* Nearly flat: every p within one octave, the nucleus is half the vocabulary and
     * its boundary is found by the second bucket level. */
    check_top_p_brute_force(-0.05f, 0.05f, 1.0f, 0.5f, 0.005f);
}

static void test_min_p(void **state)
{
    (void)state;
    /* p = 0.5, 0.25, 0.2, 0.05; min_p 0.45 keeps p >= 0.225: ids 0 and 1, 2:1. */
    const float logits[4] = {logf(0.5f), logf(0.25f), logf(0.2f), logf(0.05f)};
    struct sampler_params p = seeded(1.0f, 21);
    p.min_p = 0.45f;
    struct sampler *s = make(p, 4);
    int counts[4] = {0};
    enum { N = 20000 };
    histogram(s, logits, 4, N, counts);
    assert_int_equal(counts[0] + counts[1], N);
    assert_true(fabs((double)counts[0] / N - 2.0 / 3.0) < 0.02);
    sampler_free(s);

    /* top_p is measured before min_p: top_p 0.9 alone keeps 0, 1, 2; with min_p
     * 0.45 the result is the intersection {0, 1}, not a nucleus of the rest. */
    p.top_p = 0.9f;
    s = make(p, 4);
    memset(counts, 0, sizeof counts);
    histogram(s, logits, 4, N, counts);
    assert_int_equal(counts[0] + counts[1], N);
    sampler_free(s);
}

static void test_repetition_penalty(void **state)
{
    (void)state;
    struct sampler_params p = seeded(0.0f, 1);
    p.repetition_penalty = 2.0f;
    p.penalty_last_n = 3;
    struct sampler *s = make(p, 8);
    assert_int_equal(sampler_accept(s, 7), 0); /* pushed out of the window below */
    const int32_t prompt[2] = {1, 2};
    assert_int_equal(sampler_accept_prompt(s, prompt, 2), 0);
    assert_int_equal(sampler_accept(s, 1), 0); /* window: 1 2 1 */
    float l[8] = {1.0f, 3.0f, -2.0f, 0.5f, 0.0f, 0.0f, 0.0f, 5.0f};
    assert_int_equal(sampler_sample(s, l), 7);
    assert_true(l[1] == 1.5f);  /* positive: divided, once although seen twice */
    assert_true(l[2] == -4.0f); /* negative: multiplied */
    assert_true(l[7] == 5.0f);  /* left the window */
    assert_true(l[0] == 1.0f && l[3] == 0.5f);
    sampler_free(s);
}

static void test_presence_frequency_penalty(void **state)
{
    (void)state;
    struct sampler_params p = seeded(0.0f, 1);
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    struct sampler *s = make(p, 8);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sampler_accept(s, 3), 0);
    assert_int_equal(sampler_accept(s, 5), 0);
    const int32_t prompt[1] = {6};
    assert_int_equal(sampler_accept_prompt(s, prompt, 1), 0); /* not counted */
    float l[8] = {0.0f, 0.0f, 0.0f, 2.0f, 0.0f, -1.0f, 1.0f, 0.0f};
    assert_int_equal(sampler_sample(s, l), 6);
    assert_true(fabsf(l[3] - (2.0f - 0.5f - 0.75f)) < 1e-6f);
    assert_true(fabsf(l[5] - (-1.0f - 0.5f - 0.25f)) < 1e-6f);
    assert_true(l[6] == 1.0f);
    /* Negative penalties encourage repetition. */
    sampler_free(s);
    p.presence_penalty = -2.0f;
    p.frequency_penalty = 0.0f;
    s = make(p, 8);
    assert_int_equal(sampler_accept(s, 4), 0);
    float m[8] = {1.0f, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(sampler_sample(s, m), 4);
    sampler_free(s);
}

/* The window's counts survive thousands of pushes and evictions (backward-shift
 * deletion): penalised logits always equal a brute-force recount of the window. */
static void test_window_against_brute_force(void **state)
{
    (void)state;
    enum { V = 300, LAST = 50, STEPS = 5000 };
    struct sampler_params p = seeded(0.0f, 1);
    p.repetition_penalty = 2.0f;
    p.penalty_last_n = LAST;
    struct sampler *s = make(p, V);
    static int32_t hist[STEPS];
    float l[V];
    uint32_t x = 5;
    for (int step = 0; step < STEPS; step++) {
        hist[step] = (int32_t)(lcg(&x) % (step % 2 ? V : 40)); /* repeats and spread */
        assert_int_equal(sampler_accept(s, hist[step]), 0);
        for (int i = 0; i < V; i++)
            l[i] = 1.0f;
        assert_true(sampler_sample(s, l) >= 0);
        bool in[V] = {false};
        for (int k = step; k >= 0 && k > step - LAST; k--)
            in[hist[k]] = true;
        for (int i = 0; i < V; i++)
            assert_true(l[i] == (in[i] ? 0.5f : 1.0f));
    }
    sampler_free(s);
}

static void expect_range(struct sampler_params p, const char *field)
{
    struct err e;
    err_clear(&e);
    assert_int_equal(sampler_params_check(&p, &e), ERR_RANGE);
    assert_non_null(strstr(e.msg, field));
    struct sampler *s = (struct sampler *)&e; /* any non-NULL: must be cleared */
    assert_int_equal(sampler_new(&p, 10, &s, NULL), ERR_RANGE);
    assert_null(s);
}

static void test_validation(void **state)
{
    (void)state;
    struct sampler_params d = sampler_params_default(), p;
    assert_int_equal(sampler_params_check(&d, NULL), 0);
    struct err e;
    p = d, p.temperature = 2.5f;
    assert_int_equal(sampler_params_check(&p, &e), ERR_RANGE);
    assert_string_equal(e.msg, "temperature: 2.5 is out of range [0, 2]");
    p = d, p.top_p = 0.0f;
    assert_int_equal(sampler_params_check(&p, &e), ERR_RANGE);
    assert_string_equal(e.msg, "top_p: 0 is out of range (0, 1]");
    p = d, p.temperature = NAN, expect_range(p, "temperature");
    p = d, p.temperature = -0.1f, expect_range(p, "temperature");
    p = d, p.top_p = 1.01f, expect_range(p, "top_p");
    p = d, p.top_k = -1, expect_range(p, "top_k");
    p = d, p.min_p = 1.5f, expect_range(p, "min_p");
    p = d, p.repetition_penalty = 0.0f, expect_range(p, "repetition_penalty");
    p = d, p.repetition_penalty = 10.5f, expect_range(p, "repetition_penalty");
    p = d, p.presence_penalty = -2.5f, expect_range(p, "presence_penalty");
    p = d, p.frequency_penalty = 2.01f, expect_range(p, "frequency_penalty");
    p = d, p.penalty_last_n = -1, expect_range(p, "penalty_last_n");
    p = d, p.penalty_last_n = SAMPLER_LAST_N_MAX + 1, expect_range(p, "penalty_last_n");
    /* Edges are allowed. */
    p = d, p.temperature = 2.0f, p.top_p = 1.0f, p.min_p = 1.0f, p.presence_penalty = -2.0f;
    p.frequency_penalty = 2.0f, p.repetition_penalty = 10.0f, p.penalty_last_n = 0;
    assert_int_equal(sampler_params_check(&p, NULL), 0);

    struct sampler *s = NULL;
    assert_int_equal(sampler_new(&d, 0, &s, &e), ERR_RANGE);
    assert_non_null(strstr(e.msg, "n_vocab"));
    sampler_free(NULL);
}

static void test_accept_rejects_bad_tokens(void **state)
{
    (void)state;
    struct sampler *s = make(seeded(1.0f, 1), 10);
    assert_int_equal(sampler_accept(s, 10), ERR_RANGE);
    assert_int_equal(sampler_accept(s, -1), ERR_RANGE);
    const int32_t bad[2] = {1, 11};
    assert_int_equal(sampler_accept_prompt(s, bad, 2), ERR_RANGE);
    for (int i = 0; i < 1000; i++) /* the history table grows */
        assert_int_equal(sampler_accept(s, i % 10), 0);
    sampler_free(s);

    struct sampler_params p = seeded(1.0f, 1);
    p.frequency_penalty = 0.001f;
    s = make(p, 100000);
    for (int32_t i = 0; i < 100000; i++)
        assert_int_equal(sampler_accept(s, i), 0);
    sampler_free(s);
}

static void test_bad_logits_do_not_crash(void **state)
{
    (void)state;
    struct sampler_params p = seeded(0.8f, 3);
    p.top_p = 0.9f;
    p.min_p = 0.01f;
    struct sampler *s = make(p, 5);
    float a[5] = {NAN, INFINITY, 1.0f, -INFINITY, INFINITY};
    int32_t t = sampler_sample(s, a); /* both +inf tie at the top */
    assert_true(t == 1 || t == 4);
    float b[5] = {NAN, NAN, NAN, NAN, 0.0f};
    assert_int_equal(sampler_sample(s, b), 4);
    float c[5] = {NAN, NAN, NAN, NAN, NAN};
    assert_int_equal(sampler_sample(s, c), ERR_RANGE);
    sampler_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_argmax_lowest_id_on_ties),
        cmocka_unit_test(test_same_seed_same_sequence),
        cmocka_unit_test(test_unset_seed_is_random),
        cmocka_unit_test(test_top_k_1_is_greedy),
        cmocka_unit_test(test_temperature_matches_softmax),
        cmocka_unit_test(test_top_p_small_keeps_only_top),
        cmocka_unit_test(test_top_p_nucleus),
        cmocka_unit_test(test_top_p_matches_brute_force),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_presence_frequency_penalty),
        cmocka_unit_test(test_window_against_brute_force),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_accept_rejects_bad_tokens),
        cmocka_unit_test(test_bad_logits_do_not_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
