/*
 * forward_testutil: helpers shared by the forward-pass tests (test_model.c,
 * test_deepseek2.c): logit comparison, reference file readers, and a forward context
 * with one batch per call. Header-only static functions, like testutil.h; include
 * cmocka.h, jansson.h and testutil.h first.
 */
#ifndef DS_TESTS_FORWARD_TESTUTIL_H
#define DS_TESTS_FORWARD_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/model.h"

#define TEST_THREADS 2

struct cmp {
    double max_abs, cosine, rel_l2; /* rel_l2 = |a - b| / |b| */
};

static struct cmp compare(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0, dd = 0, mx = 0;
    for (int i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
        dd += d * d;
        if (fabs(d) > mx)
            mx = fabs(d);
    }
    struct cmp c = {mx, ab / sqrt(aa * bb), sqrt(dd / bb)};
    return c;
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static float *read_floats(const char *path, int n)
{
    size_t len = 0;
    char *buf = testutil_read_file(path, &len);
    assert_non_null(buf);
    assert_int_equal(len, (size_t)n * sizeof(float));
    float *f = malloc(len);
    assert_non_null(f);
    memcpy(f, buf, len);
    free(buf);
    return f;
}

static int *json_ints(json_t *arr, int *n)
{
    assert_true(json_is_array(arr));
    *n = (int)json_array_size(arr);
    int *v = malloc(sizeof(int) * (size_t)(*n > 0 ? *n : 1));
    assert_non_null(v);
    for (int i = 0; i < *n; i++)
        v[i] = (int)json_integer_value(json_array_get(arr, (size_t)i));
    return v;
}

static struct forward *new_ctx(const struct model *m, int n_seq, int n_ctx, int batch,
                               enum kernels_type kv, enum forward_matmul mode)
{
    struct forward_params p;
    struct forward *f;
    struct err e = {0};
    forward_params_default(&p);
    p.n_threads = TEST_THREADS;
    p.n_seq = n_seq;
    p.n_ctx = n_ctx;
    p.max_batch = batch;
    p.kv_type = kv;
    p.matmul = mode;
    int rc = forward_new(m, &p, &f, &e);
    if (rc)
        fprintf(stderr, "forward_new: %s\n", e.msg);
    assert_int_equal(rc, 0);
    return f;
}

/* Runs tokens[0..n) of seq from position pos0 in one batch; returns the last logits. */
static const float *run_seq(struct forward *f, int seq, int pos0, const int *tokens, int n)
{
    struct forward_entry e[256];
    assert_true(n <= 256);
    for (int i = 0; i < n; i++)
        e[i] = (struct forward_entry){seq, pos0 + i, tokens[i], i == n - 1};
    const float *logits;
    struct err err = {0};
    int rc = forward_batch(f, e, n, &logits, &err);
    if (rc)
        fprintf(stderr, "forward_batch: %s\n", err.msg);
    assert_int_equal(rc, 0);
    return logits;
}

#endif
