/*
 * bench_forward: prefill and decode throughput of the forward pass on one model.
 *
 *   bench_forward MODEL.gguf [threads=2] [prompt=128] [decode=32] [float|quant] [f16|f32]
 *
 * Prefill runs the prompt (synthetic token ids) as one batch; decode then feeds one
 * token per call. Reports tokens/s for each; best of 3 runs.
 */
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

static int run_once(struct forward *f, int n_vocab, int n_prompt, int n_decode, double *pre,
                    double *dec, struct err *err)
{
    struct forward_entry *e = calloc((size_t)n_prompt, sizeof(*e));
    const float *lg;
    if (!e)
        return ERR_NOMEM;
    forward_seq_clear(f, 0);
    for (int i = 0; i < n_prompt; i++)
        e[i] = (struct forward_entry){0, i, (i * 7919 + 13) % n_vocab, i == n_prompt - 1};
    double t0 = now_s();
    int rc = forward_batch(f, e, n_prompt, &lg, err);
    double t1 = now_s();
    for (int i = 0; i < n_decode && !rc; i++) {
        struct forward_entry d = {0, n_prompt + i, (i * 104729 + 5) % n_vocab, true};
        rc = forward_batch(f, &d, 1, &lg, err);
    }
    double t2 = now_s();
    free(e);
    *pre = n_prompt / (t1 - t0);
    *dec = n_decode / (t2 - t1);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [threads] [prompt] [decode] [float|quant] "
                "[f16|f32]\n", argv[0]);
        return 2;
    }
    kernels_init(KERNELS_ISA_AUTO);
    struct forward_params p;
    forward_params_default(&p);
    p.n_threads = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 2;
    int n_prompt = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 128;
    int n_decode = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 32;
    if (argc > 5 && strcmp(argv[5], "quant") == 0)
        p.matmul = FORWARD_MATMUL_QUANT_ACT;
    if (argc > 6 && strcmp(argv[6], "f32") == 0)
        p.kv_type = KERNELS_F32;
    if (n_prompt < 1 || n_decode < 0) {
        fprintf(stderr, "bad sizes\n");
        return 2;
    }
    p.max_batch = n_prompt;
    p.n_ctx = n_prompt + n_decode;
    struct err err = {0};
    struct model *m;
    struct forward *f;
    if (model_open(argv[1], &m, &err) || forward_new(m, &p, &f, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double best_pre = 0, best_dec = 0;
    for (int r = 0; r < 3; r++) {
        double pre, dec;
        if (run_once(f, model_hparams(m)->n_vocab, n_prompt, n_decode, &pre, &dec, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        best_pre = pre > best_pre ? pre : best_pre;
        best_dec = dec > best_dec ? dec : best_dec;
    }
    printf("%s: %d threads, %s activations, %s cache, isa %s: prefill %d tok: %.1f tok/s, "
           "decode %d tok: %.1f tok/s\n", argv[1], p.n_threads,
           p.matmul == FORWARD_MATMUL_QUANT_ACT ? "quantized" : "float",
           p.kv_type == KERNELS_F32 ? "f32" : "f16", kernels_isa_name(), n_prompt, best_pre,
           n_decode, best_dec);
    forward_free(f);
    model_free(m);
    return 0;
}
