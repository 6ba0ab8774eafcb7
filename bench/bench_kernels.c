/*
 * bench_kernels: single-threaded matrix-product throughput of the kernels, per ISA.
 *
 *   bench_kernels [rows cols]     (default 8960 x 1536, an FFN up-projection shape)
 *
 * For Q4_K, Q8_0 and F16 weights: GEMV (1 token) and GEMM (64 tokens) on both paths
 * (quantized activations as llama.cpp; float activations), reporting weight GB/s (weight
 * bytes streamed per second, once per product) and GFLOP/s (2 * rows * cols * tokens).
 * Activation quantization is timed with the product. The reference ISA runs on a
 * row subset to keep the run short; figures are per-row rates so they compare.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint32_t rs = 12345;
static float frand(void)
{
    rs = rs * 1664525u + 1013904223u;
    return (float)(rs >> 8) / 16777216.0f - 0.5f;
}

int main(int argc, char **argv)
{
    int rows = argc > 2 ? (int)strtol(argv[1], NULL, 10) : 8960;
    int cols = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 1536;
    if (rows <= 0 || cols <= 0 || cols % 256) {
        fprintf(stderr, "usage: bench_kernels [rows cols]  (cols a multiple of 256)\n");
        return 2;
    }
    const enum kernels_type types[] = {KERNELS_Q4_K, KERNELS_Q5_K, KERNELS_Q6_K, KERNELS_Q8_0,
                                       KERNELS_F16};
    const enum kernels_isa isas[] = {KERNELS_ISA_REF, KERNELS_ISA_AVX2, KERNELS_ISA_AVX512,
                                     KERNELS_ISA_AMX};
    const int toks[] = {1, 64};
    float *wf = malloc(sizeof(float) * (size_t)cols);
    float *x = malloc(sizeof(float) * (size_t)cols * 64);
    float *y = malloc(sizeof(float) * (size_t)rows * 64);
    for (int i = 0; i < cols * 64; i++)
        x[i] = frand();
    printf("%-5s %-10s %-5s %4s %10s %10s %10s\n", "type", "isa", "path", "ntok", "ms/prod",
           "weightGB/s", "GFLOP/s");
    for (int ti = 0; ti < (int)(sizeof types / sizeof types[0]); ti++) {
        enum kernels_type t = types[ti];
        size_t rb = kernels_row_bytes(t, cols);
        unsigned char *w = malloc(rb * (size_t)rows);
        kernels_init(KERNELS_ISA_AUTO);
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++)
                wf[c] = frand();
            kernels_quantize_row(t, wf, w + rb * (size_t)r, cols);
        }
        struct kernels_tensor_view W = {t, w, rows, cols, rb};
        void *act = malloc(kernels_act_bytes(t, cols, 64));
        for (int ii = 0; ii < (int)(sizeof isas / sizeof isas[0]); ii++) {
            if (kernels_init(isas[ii]) != 0)
                continue;
            for (int path = 0; path < 2; path++)
                for (int k = 0; k < 2; k++) {
                    int nt = toks[k];
                    int64_t nrows = ii == 0 ? (nt > 1 ? 256 : 1024) : rows;
                    int reps = 0;
                    double t0 = now(), el;
                    do {
                        if (path == 0) {
                            kernels_quantize_act(t, x, cols, nt, act);
                            kernels_matmul_q(&W, act, y, nt, 0, nrows);
                        } else {
                            kernels_matmul(&W, x, y, nt, 0, nrows);
                        }
                        reps++;
                        el = now() - t0;
                    } while (el < 0.4);
                    double per = el / reps * (double)rows / (double)nrows; /* full matrix */
                    printf("%-5s %-10s %-5s %4d %10.3f %10.2f %10.2f\n", kernels_type_name(t),
                           kernels_isa_name(), path ? "f32x" : "qx", nt, per * 1e3,
                           (double)rb * rows / per / 1e9,
                           2.0 * rows * (double)cols * nt / per / 1e9);
                    fflush(stdout);
                }
        }
        free(act);
        free(w);
    }
    free(wf), free(x), free(y);
    return 0;
}
