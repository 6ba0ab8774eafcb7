/* bench_sampler: microseconds per sampler_sample over a 152k vocabulary (Qwen2 /
 * DeepSeek-R1-Distill size) for the usual settings. Logits are random normal-ish
 * values with a few strong tokens, like a language model's. Not a test: a figure
 * to quote before and after a change.
 *
 *   build/bench_sampler [n_vocab] [iterations]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/sampler.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static float gauss(uint32_t *x)
{
    float sum = 0.0f; /* Irwin-Hall: the sum of 4 uniforms, centred */
    for (int i = 0; i < 4; i++) {
        *x = *x * 1664525u + 1013904223u;
        sum += (float)(*x >> 8) / (float)(1u << 24);
    }
    return (sum - 2.0f) * 1.7f;
}

static int run(const char *name, struct sampler_params p, const float *logits,
               int32_t n_vocab, int iters)
{
    struct sampler *s = NULL;
    struct err e;
    if (sampler_new(&p, n_vocab, &s, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    float *work = malloc((size_t)n_vocab * sizeof *work);
    if (!work) {
        sampler_free(s);
        return 1;
    }
    for (int i = 0; i < 64; i++) /* a realistic history for the penalties */
        sampler_accept(s, (int32_t)(i * 7919 % n_vocab));
    double copy_us = 0.0, total_us = 0.0, best_us = 1e30;
    long check = 0;
    for (int i = 0; i < iters; i++) {
        double t0 = now_us();
        memcpy(work, logits, (size_t)n_vocab * sizeof *work);
        double t1 = now_us();
        check += sampler_sample(s, work);
        double t2 = now_us();
        copy_us += t1 - t0;
        total_us += t2 - t1;
        best_us = t2 - t1 < best_us ? t2 - t1 : best_us;
    }
    /* The minimum is the figure to compare on a shared machine. */
    printf("%-46s %8.1f us/sample (min %.1f; logit copy %.1f us; checksum %ld)\n", name,
           total_us / iters, best_us, copy_us / iters, check);
    free(work);
    sampler_free(s);
    return 0;
}

int main(int argc, char **argv)
{
    int32_t n_vocab = argc > 1 ? (int32_t)strtol(argv[1], NULL, 10) : 152064;
    int iters = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 200;
    if (n_vocab <= 0 || iters <= 0) {
        fprintf(stderr, "usage: bench_sampler [n_vocab] [iterations]\n");
        return 2;
    }
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    if (!logits)
        return 1;
    uint32_t x = 1;
    for (int32_t i = 0; i < n_vocab; i++)
        logits[i] = gauss(&x);
    for (int i = 0; i < 20; i++) /* a few likely continuations */
        logits[(i * 104729) % n_vocab] += 8.0f + (float)i * 0.3f;

    struct sampler_params base = sampler_params_default();
    base.has_seed = true;
    base.seed = 1;
    struct sampler_params p;
    int rc = 0;
    printf("n_vocab %d, %d iterations\n", (int)n_vocab, iters);
    p = base, p.temperature = 0.0f;
    rc |= run("greedy", p, logits, n_vocab, iters);
    p = base, p.temperature = 1.0f;
    rc |= run("temperature 1 (no truncation)", p, logits, n_vocab, iters);
    p = base, p.temperature = 0.7f, p.top_p = 0.95f;
    rc |= run("temperature 0.7, top_p 0.95", p, logits, n_vocab, iters);
    p = base, p.temperature = 0.7f, p.top_k = 40;
    rc |= run("temperature 0.7, top_k 40", p, logits, n_vocab, iters);
    p = base, p.temperature = 0.8f, p.top_k = 40, p.top_p = 0.95f, p.min_p = 0.05f;
    p.repetition_penalty = 1.1f;
    rc |= run("llama.cpp defaults (k 40, p 0.95, min_p 0.05)", p, logits, n_vocab, iters);
    p = base, p.temperature = 1.0f, p.top_p = 0.95f, p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.5f;
    rc |= run("top_p 0.95 + presence/frequency", p, logits, n_vocab, iters);
    /* Flat logits: the worst case for top_p (a nucleus of most of the vocabulary). */
    for (int32_t i = 0; i < n_vocab; i++)
        logits[i] = gauss(&x) * 0.1f;
    p = base, p.temperature = 1.0f, p.top_p = 0.95f;
    rc |= run("top_p 0.95 on flat logits (worst case)", p, logits, n_vocab, iters / 4 + 1);
    free(logits);
    return rc;
}
