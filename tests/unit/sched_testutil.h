/*
 * sched_testutil: the cmocka fixture shared by the scheduler tests (test_sched.c,
 * test_prefix.c): tiny-qwen2-Q8_0 and its tokenizer, loaded once per group. Without
 * the shared test data the state stays NULL and the tests skip. Header-only; include
 * cmocka.h and testutil.h first.
 */
#ifndef DS_TESTS_SCHED_TESTUTIL_H
#define DS_TESTS_SCHED_TESTUTIL_H

#include <stdio.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "model/tokenizer.h"

struct fixture {
    struct model *m;
    struct tokenizer *t;
};

static int setup(void **state)
{
    const char *td = testutil_testdata();
    if (!td)
        return 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/tiny-qwen2-Q8_0.gguf", td);
    static struct fixture fx;
    kernels_init(KERNELS_ISA_AUTO);
    if (model_open(path, &fx.m, NULL) || tokenizer_load(model_gguf(fx.m), &fx.t, NULL))
        return -1;
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx) {
        tokenizer_free(fx->t);
        model_free(fx->m);
    }
    return 0;
}

#endif
