/*
 * test_sched: the continuous-batching scheduler on the tiny qwen2 model, stepped on
 * the test's own thread: batched requests give the tokens they give alone (and the
 * tokens of engine/generate.c's single-sequence loop), admission limits, cancellation
 * within one step, stop strings, and the </think> reasoning split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/generate.h"
#include "engine/sched.h"
#include "kernels/kernels.h"
#include "testutil.h"
#include "sched_testutil.h"

static struct sched *new_sched(struct fixture *fx, int slots, int queue, int n_ctx)
{
    struct sched_params p = {.n_slots = slots, .n_ctx = n_ctx, .queue_max = queue,
                             .n_threads = 1, .max_batch = 64, .kv_type = KERNELS_F16,
                             .matmul = FORWARD_MATMUL_QUANT_ACT};
    struct sched *s = NULL;
    struct err e = {0};
    if (sched_new(fx->m, fx->t, &p, &s, &e))
        fail_msg("sched_new: %s", e.msg);
    return s;
}

static struct request *new_req(struct fixture *fx, const char *prompt, int max_tokens,
                               const char *stop)
{
    int32_t *ids;
    size_t n;
    assert_int_equal(generate_encode_prompt(fx->t, prompt, strlen(prompt), &ids, &n, NULL), 0);
    struct request_params rp = {.sampling = sampler_params_default(), .max_tokens = max_tokens,
                                .think_end = -1, .think_start = -1};
    rp.sampling.temperature = 0;
    if (stop) {
        rp.stop[0] = stop;
        rp.n_stop = 1;
    }
    struct request *r;
    assert_int_equal(request_new("t", ids, n, &rp, &r, NULL), 0);
    return r;
}

struct result {
    char text[4096], reasoning[4096];
    enum request_finish finish;
    int32_t completion_tokens;
};

/* Takes r's new output into res; true once r is done. */
static bool collect(struct request *r, struct result *res)
{
    struct request_output o;
    assert_int_equal(request_take(r, &o), 0);
    strncat(res->text, o.content ? o.content : "", sizeof res->text - strlen(res->text) - 1);
    strncat(res->reasoning, o.reasoning ? o.reasoning : "",
            sizeof res->reasoning - strlen(res->reasoning) - 1);
    res->finish = o.finish;
    res->completion_tokens = o.completion_tokens;
    bool done = o.state == REQUEST_DONE;
    request_output_free(&o);
    return done;
}

/* Steps until every request is done; returns the number of steps. */
static int run(struct sched *s, struct request **r, struct result *res, int n)
{
    int steps = 0, left = n;
    bool done[8] = {0};
    while (left > 0 && steps < 10000) {
        assert_true(sched_step(s, NULL) >= 0);
        steps++;
        for (int i = 0; i < n; i++)
            if (!done[i] && collect(r[i], &res[i]))
                done[i] = true, left--;
    }
    assert_int_equal(left, 0);
    return steps;
}

static void submit(struct sched *s, struct request *r)
{
    enum sched_reject why;
    struct err e = {0};
    if (sched_submit(s, r, &why, &e))
        fail_msg("submit: %s", e.msg);
}

static const char *prompts[3] = {"The quick brown fox", "Once upon a time, in a land far",
                                 "1, 2, 3,"};

static void test_batched_equals_alone(void **state)
{
    struct fixture *fx = *state;
    if (!fx)
        skip();
    struct result alone[3] = {0}, together[3] = {0};
    int steps_alone = 0;
    for (int i = 0; i < 3; i++) {
        struct sched *s = new_sched(fx, 3, 0, 256);
        struct request *r = new_req(fx, prompts[i], 12, NULL);
        submit(s, r);
        steps_alone += run(s, &r, &alone[i], 1);
        request_unref(r);
        sched_free(s);
    }
    struct sched *s = new_sched(fx, 3, 0, 256);
    struct request *r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = new_req(fx, prompts[i], 12, NULL);
        submit(s, r[i]);
    }
    int steps = run(s, r, together, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(together[i].text, alone[i].text);
        assert_int_equal(together[i].completion_tokens, alone[i].completion_tokens);
        assert_int_equal(together[i].finish, REQUEST_FINISH_LENGTH);
        request_unref(r[i]);
    }
    assert_true(steps < steps_alone); /* they really ran in shared steps */
    printf("  3 requests: %d steps together, %d alone\n", steps, steps_alone);
    sched_free(s);
}

static int on_token(void *ctx, int32_t id, const char *text, size_t len)
{
    (void)id;
    strncat(ctx, text, len);
    return 0;
}

static void test_equals_generate(void **state)
{
    struct fixture *fx = *state;
    if (!fx)
        skip();
    struct result res = {0};
    struct sched *s = new_sched(fx, 2, 0, 256);
    struct request *r = new_req(fx, prompts[1], 10, NULL);
    submit(s, r);
    run(s, &r, &res, 1);
    size_t n;
    const int32_t *ids = request_prompt(r, &n);
    struct forward_params fp;
    forward_params_default(&fp);
    fp.n_ctx = 256;
    fp.matmul = FORWARD_MATMUL_QUANT_ACT;
    struct forward *f;
    assert_int_equal(forward_new(fx->m, &fp, &f, NULL), 0);
    struct generate_params gp = {.sampling = sampler_params_default(), .n_predict = 10};
    gp.sampling.temperature = 0;
    char text[4096] = "";
    assert_int_equal(generate_run(f, fx->t, ids, n, &gp, on_token, text, NULL, NULL, NULL), 0);
    assert_string_equal(res.text, text);
    forward_free(f);
    request_unref(r);
    sched_free(s);
}

static void test_admission(void **state)
{
    struct fixture *fx = *state;
    if (!fx)
        skip();
    struct sched *s = new_sched(fx, 1, 1, 32);
    struct request *a = new_req(fx, "one", 4, NULL), *b = new_req(fx, "two", 4, NULL);
    struct request *c = new_req(fx, "three", 4, NULL);
    struct request *big = new_req(fx, "word word word word word word word word word word word "
                                      "word word word word word word word word word word word "
                                      "word word word word word word word word word word", 4, NULL);
    enum sched_reject why;
    struct err e = {0};
    assert_int_equal(sched_submit(s, big, &why, &e), ERR_RANGE);
    assert_int_equal(why, SCHED_REJECT_TOO_LONG);
    assert_int_equal(sched_submit(s, a, &why, NULL), 0);
    assert_int_equal(sched_submit(s, b, &why, NULL), 0);
    assert_int_equal(sched_submit(s, c, &why, &e), ERR_RANGE);
    assert_int_equal(why, SCHED_REJECT_QUEUE_FULL);
    assert_non_null(strstr(e.msg, "queue full"));
    sched_drain(s);
    struct request *d = new_req(fx, "four", 4, NULL);
    sched_stats(s, &(struct sched_stats){0});
    assert_int_equal(sched_submit(s, d, &why, NULL), ERR_RANGE);
    assert_int_equal(why, SCHED_REJECT_STOPPED);
    struct result res[2] = {0};
    struct request *both[2] = {a, b};
    run(s, both, res, 2); /* admitted work still finishes while draining */
    assert_int_equal(res[1].completion_tokens, 4);
    request_unref(a), request_unref(b), request_unref(c), request_unref(d), request_unref(big);
    sched_free(s);
}

static void test_cancel_frees_slot(void **state)
{
    struct fixture *fx = *state;
    if (!fx)
        skip();
    struct sched *s = new_sched(fx, 1, 1, 256);
    struct request *a = new_req(fx, "one", 200, NULL), *b = new_req(fx, "two", 3, NULL);
    submit(s, a);
    submit(s, b);
    for (int i = 0; i < 3; i++)
        sched_step(s, NULL);
    struct sched_stats st;
    sched_stats(s, &st);
    assert_int_equal(st.running, 1);
    assert_int_equal(st.waiting, 1);
    request_cancel(a);
    sched_step(s, NULL); /* one step: a leaves, b takes the slot */
    struct result ra = {0}, rb = {0};
    assert_true(collect(a, &ra));
    assert_int_equal(ra.finish, REQUEST_FINISH_CANCELLED);
    sched_stats(s, &st);
    assert_int_equal(st.waiting, 0);
    run(s, &b, &rb, 1);
    assert_int_equal(rb.completion_tokens, 3);
    request_unref(a);
    request_unref(b);
    sched_free(s);
}

/* A request cancelled while queued leaves the queue at the next step, though no slot
 * frees: its place is open to a new request at once. */
static void test_cancel_frees_queue_place(void **state)
{
    struct fixture *fx = *state;
    if (!fx)
        skip();
    struct sched *s = new_sched(fx, 1, 1, 256);
    struct request *a = new_req(fx, "one", 200, NULL), *b = new_req(fx, "two", 3, NULL);
    struct request *c = new_req(fx, "three", 3, NULL);
    submit(s, a);
    submit(s, b);
    sched_step(s, NULL);
    enum sched_reject why;
    assert_int_equal(sched_submit(s, c, &why, NULL), ERR_RANGE); /* queue full */
    assert_int_equal(why, SCHED_REJECT_QUEUE_FULL);
    request_cancel(b);
    sched_step(s, NULL);
    struct sched_stats st;
    sched_stats(s, &st);
    assert_int_equal(st.running, 1);
    assert_int_equal(st.waiting, 0);
    struct result rb = {0};
    assert_true(collect(b, &rb));
    assert_int_equal(rb.finish, REQUEST_FINISH_CANCELLED);
    assert_int_equal(rb.completion_tokens, 0);
    submit(s, c); /* b's place is free while a still runs */
    request_cancel(a);
    struct result rc = {0};
    run(s, &c, &rc, 1);
    assert_int_equal(rc.completion_tokens, 3);
    request_unref(a), request_unref(b), request_unref(c);
    sched_free(s);
}

static void test_stop_string(void **state)
{
    struct fixture *fx = *state;
    if (!fx)
        skip();
    struct result full = {0}, cut = {0};
    struct sched *s = new_sched(fx, 1, 0, 256);
    struct request *r = new_req(fx, prompts[0], 12, NULL);
    submit(s, r);
    run(s, &r, &full, 1);
    request_unref(r);
    assert_true(strlen(full.text) > 6);
    char stop[3] = {full.text[4], full.text[5], 0};
    r = new_req(fx, prompts[0], 12, stop);
    submit(s, r);
    run(s, &r, &cut, 1);
    size_t at = (size_t)(strstr(full.text, stop) - full.text);
    assert_int_equal(strlen(cut.text), at);
    assert_memory_equal(cut.text, full.text, at);
    assert_int_equal(cut.finish, REQUEST_FINISH_STOP);
    request_unref(r);
    sched_free(s);
}

static int on_id(void *ctx, int32_t id, const char *text, size_t len)
{
    (void)text;
    (void)len;
    int32_t *ids = ctx;
    if (id >= 0 && ids[0] < 15)
        ids[1 + ids[0]++] = id;
    return 0;
}

/* A stand-in </think>: a greedy token that first appears at position k >= 1. The text
 * of the tokens before it is reasoning; what follows is content without leading
 * whitespace. */
static void test_reasoning_split(void **state)
{
    struct fixture *fx = *state;
    if (!fx)
        skip();
    struct request *r = new_req(fx, prompts[1], 8, NULL);
    size_t n;
    const int32_t *ids = request_prompt(r, &n);
    struct forward_params fp;
    forward_params_default(&fp);
    fp.n_ctx = 256;
    fp.matmul = FORWARD_MATMUL_QUANT_ACT;
    struct forward *f;
    assert_int_equal(forward_new(fx->m, &fp, &f, NULL), 0);
    struct generate_params gp = {.sampling = sampler_params_default(), .n_predict = 8};
    gp.sampling.temperature = 0;
    int32_t gen[16] = {0};
    assert_int_equal(generate_run(f, fx->t, ids, n, &gp, on_id, gen, NULL, NULL, NULL), 0);
    forward_free(f);
    assert_true(gen[0] == 8);
    int k = 1; /* the split token: the first one not seen before it */
    for (; k < 7; k++) {
        bool seen = false;
        for (int i = 0; i < k; i++)
            seen |= gen[1 + i] == gen[1 + k];
        if (!seen)
            break;
    }
    assert_true(k < 7);
    int32_t end = gen[1 + k];
    int32_t *copy = malloc(n * sizeof *copy);
    memcpy(copy, ids, n * sizeof *copy);
    struct request_params rp = *request_params(r);
    rp.think_end = end;
    rp.in_reasoning = true;
    struct request *rr;
    assert_int_equal(request_new("t", copy, n, &rp, &rr, NULL), 0);
    struct sched *s = new_sched(fx, 1, 0, 256);
    struct result res = {0};
    submit(s, rr);
    run(s, &rr, &res, 1);
    char *want_r = NULL;
    size_t len;
    assert_int_equal(tokenizer_decode(fx->t, gen + 1, (size_t)k, &want_r, &len, NULL), 0);
    assert_string_equal(res.reasoning, want_r);
    char *want_c = NULL;
    assert_int_equal(tokenizer_decode(fx->t, gen + 2 + k, (size_t)(7 - k), &want_c, &len, NULL),
                     0);
    const char *wc = want_c;
    while (*wc == ' ' || *wc == '\n' || *wc == '\r' || *wc == '\t')
        wc++;
    assert_string_equal(res.text, wc);
    printf("  split at token %d: %zu reasoning bytes, %zu content bytes\n", k,
           strlen(res.reasoning), strlen(res.text));
    free(want_c);
    free(want_r);
    request_unref(rr);
    request_unref(r);
    sched_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_alone),
        cmocka_unit_test(test_equals_generate),
        cmocka_unit_test(test_admission),
        cmocka_unit_test(test_cancel_frees_slot),
        cmocka_unit_test(test_cancel_frees_queue_place),
        cmocka_unit_test(test_stop_string),
        cmocka_unit_test(test_reasoning_split),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
