/*
 * `deepseek quantize IN.gguf OUT.gguf TYPE`: converts a model to another tensor type
 * with llama-quantize's per-tensor choices (model/quantize.h has the policy and the
 * driver; this file parses arguments, prints progress and the summary).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "kernels/kernels.h"
#include "model/quantize.h"

#define QZ_MAX_THREADS QUANTIZE_MAX_THREADS

struct qz_args {
    const char *in, *out, *type;
    int threads;
    int quiet;
};

static void qz_usage(FILE *f)
{
    fprintf(f,
            "usage: deepseek quantize [--threads N] [--quiet] IN.gguf OUT.gguf TYPE\n"
            "\n"
            "Converts a GGUF model to TYPE with llama-quantize's per-tensor choices: norms,\n"
            "biases and the MoE router stay as they are; the output matrix and, in the _M\n"
            "mixes, some attn_v / ffn_down tensors get more bits (docs/MODELS.md).\n"
            "The input may already be quantized (rows are dequantized, then quantized).\n"
            "\n"
            "  TYPE           %s\n"
            "  --threads N    worker threads (default: the number of CPUs, at most 16)\n"
            "  --quiet        no per-tensor progress lines\n"
            "\n"
            "Exit status: 0 written; 2 bad arguments, unreadable input, unwritable output or\n"
            "a tensor type that cannot be converted; 1 failure while writing.\n",
            quantize_ftype_names());
}

static int qz_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 16 ? 16 : (int)n;
}

/* 0 parsed, 1 --help, 2 usage error (message printed). */
static int qz_parse(int argc, char **argv, struct qz_args *a)
{
    const char *pos[3];
    int n_pos = 0;
    a->threads = qz_default_threads();
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            qz_usage(stdout);
            return 1;
        } else if (!strcmp(s, "--quiet") || !strcmp(s, "-q")) {
            a->quiet = 1;
        } else if (!strcmp(s, "--threads") || !strcmp(s, "-t")) {
            char *end;
            long v = i + 1 < argc ? strtol(argv[++i], &end, 10) : 0;
            if (v < 1 || v > QZ_MAX_THREADS || *end) {
                fprintf(stderr, "deepseek quantize: --threads wants 1..%d\n", QZ_MAX_THREADS);
                return 2;
            }
            a->threads = (int)v;
        } else if (s[0] == '-' && s[1] != '\0') {
            fprintf(stderr, "deepseek quantize: unknown option '%s' (try --help)\n", s);
            return 2;
        } else if (n_pos < 3) {
            pos[n_pos++] = s;
        } else {
            fprintf(stderr, "deepseek quantize: too many arguments (try --help)\n");
            return 2;
        }
    }
    if (n_pos != 3) {
        fprintf(stderr, "usage: deepseek quantize [--threads N] IN.gguf OUT.gguf TYPE\n");
        return 2;
    }
    a->in = pos[0], a->out = pos[1], a->type = pos[2];
    return 0;
}

/* "q4_K" as llama.cpp prints types; gguf's name for types the kernels do not know. */
static const char *qz_type_name(enum ggml_type t)
{
    return kernels_type_known((int)t) ? kernels_type_name((enum kernels_type)t)
                                      : gguf_type_name(t);
}

static void qz_progress(void *user, int64_t i, int64_t n, const struct quantize_entry *e)
{
    (void)user;
    const struct gguf_tensor *t = e->in;
    char shape[96];
    int len = snprintf(shape, sizeof shape, "%lld", (long long)t->ne[0]);
    for (uint32_t d = 1; d < t->n_dims && len > 0 && (size_t)len < sizeof shape; d++)
        len += snprintf(shape + len, sizeof shape - (size_t)len, "x%lld", (long long)t->ne[d]);
    int w = n >= 1000 ? 4 : 3;
    if (e->convert)
        fprintf(stderr, "[%*lld/%lld] %-32s %5s -> %-5s (%s)%s\n", w, (long long)i + 1,
                (long long)n, t->name, qz_type_name(t->type), qz_type_name(e->type), shape,
                e->fallback ? " fallback: row length" : "");
    else
        fprintf(stderr, "[%*lld/%lld] %-32s %5s    copy  (%s)\n", w, (long long)i + 1,
                (long long)n, t->name, qz_type_name(t->type), shape);
}

static double qz_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void qz_summary(const struct quantize_job *j, const struct qz_args *a, double secs)
{
    struct stat st;
    double in_mb = (double)gguf_file_size(quantize_job_input(j)) / 1e6;
    double out_mb = stat(a->out, &st) == 0 ? (double)st.st_size / 1e6 : 0;
    int64_t n_conv = 0, n_fb = 0;
    for (int64_t i = 0; i < quantize_job_n_tensors(j); i++) {
        n_conv += quantize_job_entry(j, i)->convert;
        n_fb += quantize_job_entry(j, i)->fallback;
    }
    fprintf(stderr, "quantized %s -> %s (%s): %.2f MB -> %.2f MB, %lld of %lld tensors "
                    "converted, %lld fallbacks, %.1f s, %d threads\n",
            a->in, a->out, quantize_ftype_name(quantize_ftype_from_name(a->type)), in_mb,
            out_mb, (long long)n_conv, (long long)quantize_job_n_tensors(j), (long long)n_fb,
            secs, a->threads);
}

int cli_quantize(int argc, char **argv)
{
    struct qz_args a = {0};
    int rc = qz_parse(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : 2;
    int ftype = quantize_ftype_from_name(a.type);
    if (ftype < 0) {
        fprintf(stderr, "deepseek quantize: unknown type '%s' (valid: %s)\n", a.type,
                quantize_ftype_names());
        return 2;
    }
    if (cli_check_output("quantize", a.out))
        return 2;
    kernels_init(KERNELS_ISA_AUTO);
    double t0 = qz_now();
    struct err e = {0};
    struct quantize_job *j = NULL;
    if (quantize_job_new(a.in, (enum quantize_ftype)ftype, &j, &e) != 0) {
        fprintf(stderr, "deepseek quantize: %s\n", e.msg);
        return 2;
    }
    rc = quantize_job_write(j, a.out, a.threads, a.quiet ? NULL : qz_progress, NULL, &e);
    if (rc)
        fprintf(stderr, "deepseek quantize: %s\n", e.msg);
    else
        qz_summary(j, &a, qz_now() - t0);
    quantize_job_free(j);
    return rc ? 1 : 0;
}
