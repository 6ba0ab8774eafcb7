/*
 * bench_forward: prefill and decode throughput of the forward pass on one model, measured
 * as llama.cpp's llama-bench measures them.
 *
 *   bench_forward MODEL.gguf [-t threads=2] [-p prompt=512] [-n gen=128] [-r reps=3]
 *                 [--float] [--kv f32] [--mmap] [--ttft]
 *
 * pp: the prompt (synthetic token ids) as one batch into an empty sequence.
 * tg: n tokens fed one per call into an empty sequence (as llama-bench's tg test).
 * An untimed 8-token prompt first maps the weights and starts the pool; each test then runs
 * r times; prints
 * mean ± sample standard deviation of tokens/s and the best run.
 * --float uses float activations (the faithful path) instead of quantized activations
 * (llama.cpp's arithmetic, the default here as in llama-bench).
 * --mmap maps the file instead of reading it into huge-page memory (deepseek's --mmap).
 * --ttft prints the time from the start of main() to the logits of an 8-token prompt
 * (model open + context + first batch), then exits.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/forward.h"
#include "model/model.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* tokens/s of one pp run (n_prompt tokens, one batch) or tg run (n_gen single calls). */
static int run_pp(struct forward *f, struct forward_entry *e, int n_vocab, int n_prompt,
                  double *tps, struct err *err)
{
    const float *lg;
    forward_seq_clear(f, 0);
    for (int i = 0; i < n_prompt; i++)
        e[i] = (struct forward_entry){0, i, (i * 7919 + 13) % n_vocab, i == n_prompt - 1};
    double t0 = now_s();
    int rc = forward_batch(f, e, n_prompt, &lg, err);
    *tps = n_prompt / (now_s() - t0);
    return rc;
}

static int run_tg(struct forward *f, int n_vocab, int n_gen, double *tps, struct err *err)
{
    const float *lg;
    int rc = 0;
    forward_seq_clear(f, 0);
    double t0 = now_s();
    for (int i = 0; i < n_gen && !rc; i++) {
        struct forward_entry d = {0, i, (i * 104729 + 5) % n_vocab, true};
        rc = forward_batch(f, &d, 1, &lg, err);
    }
    *tps = n_gen / (now_s() - t0);
    return rc;
}

static void report(const char *name, const double *v, int r)
{
    double mean = 0, sd = 0, best = 0;
    for (int i = 0; i < r; i++) {
        mean += v[i] / r;
        best = v[i] > best ? v[i] : best;
    }
    for (int i = 0; i < r && r > 1; i++)
        sd += (v[i] - mean) * (v[i] - mean) / (r - 1);
    printf("%-6s %8.2f ± %5.2f t/s  (best %.2f; runs", name, mean, sqrt(sd), best);
    for (int i = 0; i < r; i++)
        printf(" %.2f", v[i]);
    printf(")\n");
}

static int usage(const char *prog)
{
    fprintf(stderr, "usage: %s MODEL.gguf [-t threads] [-p prompt] [-n gen] [-r reps] "
            "[--float] [--kv f32] [--mmap] [--ttft]\n", prog);
    return 2;
}

int main(int argc, char **argv)
{
    double t_start = now_s();
    if (argc < 2)
        return usage(argv[0]);
    struct forward_params p;
    forward_params_default(&p);
    p.n_threads = 2;
    p.matmul = FORWARD_MATMUL_QUANT_ACT;
    int n_prompt = 512, n_gen = 128, reps = 3, ttft = 0;
    enum gguf_load load = GGUF_LOAD_READ;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--float"))
            p.matmul = FORWARD_MATMUL_FLOAT;
        else if (!strcmp(a, "--ttft"))
            ttft = 1;
        else if (!strcmp(a, "--mmap"))
            load = GGUF_LOAD_MMAP;
        else if (v && !strcmp(a, "--kv"))
            p.kv_type = strcmp(argv[++i], "f32") ? KERNELS_F16 : KERNELS_F32;
        else if (v && !strcmp(a, "-t"))
            p.n_threads = (int)strtol(argv[++i], NULL, 10);
        else if (v && !strcmp(a, "-p"))
            n_prompt = (int)strtol(argv[++i], NULL, 10);
        else if (v && !strcmp(a, "-n"))
            n_gen = (int)strtol(argv[++i], NULL, 10);
        else if (v && !strcmp(a, "-r"))
            reps = (int)strtol(argv[++i], NULL, 10);
        else
            return usage(argv[0]);
    }
    if (ttft)
        n_prompt = 8, n_gen = 0, reps = 0;
    if (n_prompt < 1 || n_gen < 0 || reps < 0 || reps > 100 || p.n_threads < 1)
        return usage(argv[0]);
    kernels_init(KERNELS_ISA_AUTO);
    p.max_batch = n_prompt;
    p.n_ctx = n_prompt > n_gen ? n_prompt : n_gen;
    struct err err = {0};
    struct model *m;
    struct forward *f;
    struct forward_entry *e = calloc((size_t)n_prompt, sizeof(*e));
    double *pp = calloc((size_t)reps + 1, sizeof(double));
    double *tg = calloc((size_t)reps + 1, sizeof(double));
    if (!e || !pp || !tg)
        return 1;
    if (model_open_as(argv[1], load, &m, &err) || forward_new(m, &p, &f, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int n_vocab = model_hparams(m)->n_vocab;
    double warm; /* an 8-token prompt maps every weight page and starts the pool */
    if (run_pp(f, e, n_vocab, n_prompt < 8 ? n_prompt : 8, &warm, &err))
        goto fail;
    if (ttft) {
        printf("time to first logits (open + context + 8-token prompt): %.3f s\n",
               now_s() - t_start);
        goto done;
    }
    for (int r = 0; r < reps; r++)
        if (run_pp(f, e, n_vocab, n_prompt, &pp[r], &err))
            goto fail;
    for (int r = 0; r < reps && n_gen > 0; r++)
        if (run_tg(f, n_vocab, n_gen, &tg[r], &err))
            goto fail;
    printf("%s: %d threads, %s activations, %s KV, isa %s\n", argv[1], p.n_threads,
           p.matmul == FORWARD_MATMUL_QUANT_ACT ? "quantized" : "float",
           p.kv_type == KERNELS_F32 ? "f32" : "f16", kernels_isa_name());
    char name[32];
    snprintf(name, sizeof(name), "pp%d", n_prompt);
    report(name, pp, reps);
    if (n_gen > 0) {
        snprintf(name, sizeof(name), "tg%d", n_gen);
        report(name, tg, reps);
    }
done:
    forward_free(f);
    model_free(m);
    free(e), free(pp), free(tg);
    return 0;
fail:
    fprintf(stderr, "%s\n", err.msg);
    return 1;
}
