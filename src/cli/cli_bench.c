/*
 * cli_bench: `deepseek bench -m MODEL [-p 512] [-n 128] [-t N] [-r 3] [--float-act]`.
 * Measures prompt processing (pp: one prefill of -p seeded random token ids) and text
 * generation (tg: -n single-token forward steps from position 0, each asking for
 * logits), -r times each after one warm-up, and prints llama-bench's markdown table
 * (mean ± sample standard deviation of tokens per second) so the two tools' figures
 * can be put side by side. Sampling is not timed (llama-bench does not sample either).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_model.h"
#include "config/config.h"
#include "engine/generate.h"
#include "kernels/kernels.h"

struct bench_opts {
    long long n_prompt, n_gen, reps;
    bool float_act;
};

static void bench_usage(FILE *out)
{
    fprintf(out,
        "usage: deepseek bench -m MODEL.gguf [-p N] [-n N] [-t THREADS] [-r N] [--float-act]\n"
        "  -p, --n-prompt N   prompt-processing test of N tokens in one prefill (default 512;\n"
        "                     0 skips it)\n"
        "  -n, --n-gen N      text-generation test of N single-token steps (default 128;\n"
        "                     0 skips it)\n"
        "  -r, --repetitions N  runs of each test (default 3)\n"
        "  --float-act        float activations instead of llama.cpp-style quantized ones\n"
        "Output: llama-bench's markdown table (t/s = mean ± stddev). Settings such as\n"
        "-t/--threads, --kernels, --kv-type and --batch-size apply (deepseek config --help).\n");
}

static int bench_parse(int argc, char **argv, struct bench_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long *dst = NULL, lo = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(stdout);
            return 1;
        } else if (!strcmp(a, "--float-act")) {
            o->float_act = true;
            continue;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            dst = &o->n_prompt;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) {
            dst = &o->n_gen;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) {
            dst = &o->reps;
            lo = 1;
        }
        if (!dst || !v) {
            fprintf(stderr, "deepseek bench: unknown option or missing value: %s (see --help)\n",
                    a);
            return -1;
        }
        if (!cli_parse_long(v, lo, 1 << 20, dst)) {
            fprintf(stderr, "deepseek bench: %s %s: not a valid count\n", a, v);
            return -1;
        }
        i++;
    }
    if (o->n_prompt == 0 && o->n_gen == 0) {
        fprintf(stderr, "deepseek bench: nothing to measure (-p 0 and -n 0)\n");
        return -1;
    }
    return 0;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One pp run: prefill of n seeded random ids on a cleared sequence; tokens/s or < 0. */
static double run_pp(struct forward *f, int32_t *ids, int n, uint64_t seed, struct err *err)
{
    int32_t n_vocab = model_hparams(forward_model(f))->n_vocab;
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(splitmix64(&seed) % (uint64_t)n_vocab);
    forward_seq_clear(f, 0);
    const float *logits;
    double t0 = generate_now();
    if (generate_prefill(f, 0, ids, (size_t)n, &logits, err))
        return -1;
    return n / (generate_now() - t0);
}

/* One tg run: n single-token steps from position 0 (BOS first, as llama-bench). */
static double run_tg(struct forward *f, int32_t bos, int n, uint64_t seed, struct err *err)
{
    int32_t n_vocab = model_hparams(forward_model(f))->n_vocab;
    forward_seq_clear(f, 0);
    int32_t tok = bos >= 0 ? bos : (int32_t)(splitmix64(&seed) % (uint64_t)n_vocab);
    double t0 = generate_now();
    for (int i = 0; i < n; i++) {
        struct forward_entry e = {0, i, tok, true};
        const float *logits;
        if (forward_batch(f, &e, 1, &logits, err))
            return -1;
        tok = (int32_t)(splitmix64(&seed) % (uint64_t)n_vocab);
    }
    return n / (generate_now() - t0);
}

static void mean_sd(const double *v, int n, double *mean, double *sd)
{
    double s = 0, q = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++)
        q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* The model, size, params and backend columns, as llama-bench writes them. */
static void bench_columns(const struct cli_model *cm, const char *path, char *name, size_t cap,
                          char *size, char *params, char *backend)
{
    const struct gguf *g = model_gguf(cm->model);
    const char *s;
    size_t len;
    if (gguf_get_str(g, "general.name", &s, &len, NULL) == 0 && len > 0) {
        snprintf(name, cap, "%.*s", (int)(len < 30 ? len : 30), s);
    } else {
        const char *base = strrchr(path, '/');
        snprintf(name, cap, "%.30s", base ? base + 1 : path);
    }
    uint64_t bytes = 0, n_params = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        bytes += gguf_tensor(g, i)->nbytes;
        n_params += gguf_tensor(g, i)->n_elems;
    }
    double gib = (double)bytes / (1024.0 * 1024 * 1024);
    if (gib >= 1)
        snprintf(size, 32, "%.2f GiB", gib);
    else
        snprintf(size, 32, "%.2f MiB", (double)bytes / (1024.0 * 1024));
    if (n_params >= 1000000000ull)
        snprintf(params, 32, "%.2f B", (double)n_params / 1e9);
    else
        snprintf(params, 32, "%.2f M", (double)n_params / 1e6);
    snprintf(backend, 32, "CPU (%s)", kernels_isa_name());
}

static void print_row(const char *const cols[4], int threads, const char *test, const double *v,
                      int n)
{
    double mean, sd;
    mean_sd(v, n, &mean, &sd);
    char ts[64];
    snprintf(ts, sizeof ts, "%.2f ± %.2f", mean, sd);
    printf("| %-30s | %10s | %10s | %-12s | %7d | %13s | %21s |\n", cols[0], cols[1], cols[2],
           cols[3], threads, test, ts);
    fflush(stdout);
}

/* Runs the warm-up and the -r repetitions of one test; 0 or 1 (message printed). */
static int bench_test(struct forward *f, const struct cli_model *cm, const struct bench_opts *o,
                      bool pp, const char *const cols[4])
{
    int n = (int)(pp ? o->n_prompt : o->n_gen), reps = (int)o->reps;
    double *v = malloc((size_t)(reps + 1) * sizeof *v);
    int32_t *ids = pp ? malloc((size_t)n * sizeof *ids) : NULL;
    struct err err = {0};
    int rc = !v || (pp && !ids);
    if (rc)
        fprintf(stderr, "deepseek bench: out of memory\n");
    for (int r = 0; !rc && r <= reps; r++) { /* r == 0: warm-up, not counted */
        double tps = pp ? run_pp(f, ids, n, 1234 + (uint64_t)r, &err)
                        : run_tg(f, tokenizer_bos(cm->tok), n, 4321 + (uint64_t)r, &err);
        if (tps < 0) {
            fprintf(stderr, "deepseek bench: %s\n", err.msg);
            rc = 1;
        }
        v[r] = tps;
    }
    if (!rc) {
        char test[32];
        snprintf(test, sizeof test, "%s%d", pp ? "pp" : "tg", n);
        print_row(cols, cm->n_threads, test, v + 1, reps);
    }
    free(ids);
    free(v);
    return rc;
}

static int bench_run(const struct bench_opts *o, const struct config *cfg, struct cli_model *cm)
{
    if (o->n_prompt > cm->n_ctx || o->n_gen > cm->n_ctx) {
        fprintf(stderr, "deepseek bench: -p %lld / -n %lld exceed the context of %d tokens "
                "(see --ctx-size)\n", o->n_prompt, o->n_gen, cm->n_ctx);
        return 2;
    }
    struct err err = {0};
    int max_batch = o->n_prompt < cfg->batch_size ? (int)o->n_prompt : (int)cfg->batch_size;
    if (cli_model_forward(cm, cfg, o->float_act ? FORWARD_MATMUL_FLOAT : FORWARD_MATMUL_QUANT_ACT,
                          max_batch, &err)) {
        fprintf(stderr, "deepseek bench: %s\n", err.msg);
        return 1;
    }
    char name[64], size[32], params[32], backend[32];
    bench_columns(cm, cfg->model, name, sizeof name, size, params, backend);
    const char *const cols[4] = {name, size, params, backend};
    printf("| %-30s | %10s | %10s | %-12s | %7s | %13s | %20s |\n", "model", "size", "params",
           "backend", "threads", "test", "t/s");
    printf("| ------------------------------ | ---------: | ---------: | ------------ | ------: "
           "| ------------: | -------------------: |\n");
    int rc = 0;
    if (o->n_prompt > 0)
        rc = bench_test(cm->fwd, cm, o, true, cols);
    if (!rc && o->n_gen > 0)
        rc = bench_test(cm->fwd, cm, o, false, cols);
    if (!rc)
        printf("\nactivations: %s; KV cache %s; %d repetitions after one warm-up\n",
               o->float_act ? "float" : "quantized as llama.cpp", cfg->kv_type, (int)o->reps);
    return rc;
}

int cli_bench(int argc, char **argv)
{
    struct config cfg;
    struct err err = {0};
    int rest = 0;
    if (config_setup(&cfg, argc, argv, &rest, argv, &err) != 0) {
        fprintf(stderr, "deepseek bench: %s\n", err.msg);
        return 2;
    }
    struct bench_opts o = {512, 128, 3, false};
    int rc = bench_parse(rest, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct cli_model cm;
    if (cli_model_open(&cfg, &cm, &err)) {
        fprintf(stderr, "deepseek bench: %s\n", err.msg);
        return 2;
    }
    rc = bench_run(&o, &cfg, &cm);
    cli_model_close(&cm);
    return rc;
}
