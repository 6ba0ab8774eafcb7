/*
 * test_prefix: the prefix cache. First engine/prefix.c's choice on hand-made slots
 * (longest prefix, same tag only, LRU eviction, the last prompt token always fed);
 * then the scheduler on the tiny qwen2 model: a ~1000-token system prompt sent twice
 * reuses ~1000 rows and gives the same tokens as an uncached run; another key does not
 * reuse them; a chat's next turn reuses the earlier turn; forgetting a tag (erase)
 * drops its rows and only its rows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/generate.h"
#include "engine/prefix.h"
#include "engine/sched.h"
#include "kernels/kernels.h"
#include "testutil.h"
#include "sched_testutil.h"

/* ---------------------------------------------------------------- prefix_choose */

static void test_common(void **state)
{
    (void)state;
    int32_t a[] = {1, 2, 3, 4}, b[] = {1, 2, 9}, c[] = {7};
    assert_int_equal(prefix_common(a, 4, b, 3), 2);
    assert_int_equal(prefix_common(a, 4, a, 2), 2);
    assert_int_equal(prefix_common(a, 4, c, 1), 0);
    assert_int_equal(prefix_common(a, 0, a, 4), 0);
}

static void test_choose(void **state)
{
    (void)state;
    int32_t s0[] = {1, 2, 3, 4, 5}, s1[] = {1, 2, 8}, s2[] = {9, 9};
    struct prefix_slot sl[3] = {{s0, 5, "alice", 10, false},
                                {s1, 3, "alice", 30, false},
                                {s2, 2, "", 20, false}};
    int32_t p[] = {1, 2, 3, 4, 6, 7};
    size_t hit = 99;
    /* the longest shared prefix wins over the more recent slot */
    assert_int_equal(prefix_choose(sl, 3, p, 6, "alice", false, &hit), 0);
    assert_int_equal(hit, 4);
    /* another key sees nothing: eviction of the least recently used (slot 0) */
    assert_int_equal(prefix_choose(sl, 3, p, 6, "bob", false, &hit), 0);
    assert_int_equal(hit, 0);
    sl[0].used = 40;
    assert_int_equal(prefix_choose(sl, 3, p, 6, "bob", false, &hit), 2);
    assert_int_equal(hit, 0);
    /* shared tags: bob may use alice's rows */
    assert_int_equal(prefix_choose(sl, 3, p, 6, "bob", true, &hit), 0);
    assert_int_equal(hit, 4);
    /* busy slots are not candidates */
    sl[0].busy = true;
    assert_int_equal(prefix_choose(sl, 3, p, 6, "alice", false, &hit), 1);
    assert_int_equal(hit, 2);
    /* the whole prompt cached: the last token is still fed */
    sl[0].busy = false;
    assert_int_equal(prefix_choose(sl, 3, s0, 5, "alice", false, &hit), 0);
    assert_int_equal(hit, 4);
    assert_int_equal(prefix_choose(sl, 3, s0, 3, "alice", false, &hit), 0);
    assert_int_equal(hit, 2);
    for (int i = 0; i < 3; i++)
        sl[i].busy = true;
    assert_int_equal(prefix_choose(sl, 3, p, 6, "alice", false, &hit), -1);
}

/* ------------------------------------------------------------ on the scheduler */

static struct sched *new_sched(struct fixture *fx, int slots, bool off)
{
    struct sched_params p = {.n_slots = slots, .n_ctx = 2048, .queue_max = 4, .n_threads = 1,
                             .max_batch = 256, .kv_type = KERNELS_F16,
                             .matmul = FORWARD_MATMUL_QUANT_ACT, .prefix_off = off};
    struct sched *s = NULL;
    struct err e = {0};
    if (sched_new(fx->m, fx->t, &p, &s, &e))
        fail_msg("sched_new: %s", e.msg);
    return s;
}

struct result {
    char text[4096];
    int32_t cached, prompt;
};

/* Runs one greedy request for text under tag to the end. */
static void run(struct fixture *fx, struct sched *s, const char *text, const char *tag,
                struct result *res)
{
    int32_t *ids;
    size_t n;
    assert_int_equal(generate_encode_prompt(fx->t, text, strlen(text), &ids, &n, NULL), 0);
    struct request_params rp = {.sampling = sampler_params_default(), .max_tokens = 16,
                                .think_end = -1, .think_start = -1};
    rp.sampling.temperature = 0;
    snprintf(rp.cache_tag, sizeof rp.cache_tag, "%s", tag);
    struct request *r;
    assert_int_equal(request_new("t", ids, n, &rp, &r, NULL), 0);
    enum sched_reject why;
    assert_int_equal(sched_submit(s, r, &why, NULL), 0);
    memset(res, 0, sizeof *res);
    for (int steps = 0; steps < 1000; steps++) {
        assert_true(sched_step(s, NULL) >= 0);
        struct request_output o;
        assert_int_equal(request_take(r, &o), 0);
        strncat(res->text, o.content ? o.content : "", sizeof res->text - strlen(res->text) - 1);
        res->cached = o.cached_tokens;
        res->prompt = o.prompt_tokens;
        bool done = o.state == REQUEST_DONE;
        request_output_free(&o);
        if (done)
            break;
    }
    request_unref(r);
}

/* A system prompt of about 1000 tokens, then a question. */
static char *long_prompt(const char *question)
{
    size_t cap = 16384;
    char *p = malloc(cap);
    assert_non_null(p);
    snprintf(p, cap, "System: You are a careful assistant.");
    for (int i = 0; i < 100; i++) {
        size_t len = strlen(p);
        snprintf(p + len, cap - len, " Rule %d: answer briefly and cite.", i);
    }
    size_t len = strlen(p);
    snprintf(p + len, cap - len, "\nUser: %s\nAssistant:", question);
    return p;
}

static void test_system_prompt_hit(void **state)
{
    struct fixture *fx = *state;
    if (!fx)
        skip();
    char *q1 = long_prompt("What is a fox?"), *q2 = long_prompt("Name three rivers.");
    struct result cold1, cold2, warm1, warm2, other;
    struct sched *off = new_sched(fx, 2, true);
    run(fx, off, q1, "", &cold1);
    run(fx, off, q2, "", &cold2);
    assert_int_equal(cold1.cached, 0);
    assert_int_equal(cold2.cached, 0);
    sched_free(off);

    struct sched *s = new_sched(fx, 2, false);
    struct result first;
    run(fx, s, q1, "alice", &first);
    assert_int_equal(first.cached, 0);
    assert_true(first.prompt > 900);
    run(fx, s, q1, "alice", &warm1); /* the same prompt: all but the last token */
    assert_int_equal(warm1.cached, warm1.prompt - 1);
    assert_string_equal(warm1.text, cold1.text);
    run(fx, s, q2, "alice", &warm2); /* another question: the system prompt */
    print_message("  prompt %d tokens, %d cached; q2 %d of %d cached\n", warm1.prompt,
                  warm1.cached, warm2.cached, warm2.prompt);
    assert_true(warm2.cached > 900 && warm2.cached < warm2.prompt - 3);
    assert_string_equal(warm2.text, cold2.text);
    run(fx, s, q1, "bob", &other); /* another key: nothing of alice's */
    assert_int_equal(other.cached, 0);
    assert_string_equal(other.text, cold1.text);
    struct sched_stats st;
    sched_stats(s, &st);
    assert_int_equal(st.tokens_cached, (unsigned long long)(warm1.cached + warm2.cached));
    sched_free(s);
    free(q1);
    free(q2);
}

/* The next turn of a chat holds the previous prompt and the model's reply. */
static void test_next_turn(void **state)
{
    struct fixture *fx = *state;
    if (!fx)
        skip();
    struct sched *s = new_sched(fx, 1, false);
    struct result t1, t2, cold;
    const char *turn1 = "User: Count with me: 1, 2, 3,\nAssistant:";
    run(fx, s, turn1, "", &t1);
    char turn2[8192];
    snprintf(turn2, sizeof turn2, "%s%s\nUser: and then?\nAssistant:", turn1, t1.text);
    run(fx, s, turn2, "", &t2);
    print_message("  turn 1: %d prompt tokens, reply \"%s\"; turn 2: %d of %d cached\n",
                  t1.prompt, t1.text, t2.cached, t2.prompt);
    /* at least the whole first prompt; the reply's rows too where its text
     * retokenizes to the same ids (the tiny model's random text often does not) */
    assert_true(t2.cached >= t1.prompt);
    sched_free(s);
    struct sched *off = new_sched(fx, 1, true);
    run(fx, off, turn2, "", &cold);
    assert_string_equal(t2.text, cold.text);
    sched_free(off);
}

/* sched_forget_tag (an erased key id): its rows go, another key's stay; on the
 * calling thread first, then through a started engine thread (woken while idle). */
static void test_forget_tag(void **state)
{
    struct fixture *fx = *state;
    if (!fx)
        skip();
    struct sched *s = new_sched(fx, 2, false);
    const char *pa = "User: alice writes a rather long question about foxes\nAssistant:";
    const char *pb = "User: bob asks something else about rivers and seas\nAssistant:";
    struct result r;
    run(fx, s, pa, "alice", &r);
    run(fx, s, pb, "bob", &r);
    run(fx, s, pa, "alice", &r);
    assert_int_equal(r.cached, r.prompt - 1); /* control: alice's rows are there */
    int n = -1;
    assert_int_equal(sched_forget_tag(s, "alice", &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sched_forget_tag(s, "alice", &n, NULL), 0);
    assert_int_equal(n, 0); /* nothing left: an erase repeated finds nothing */
    run(fx, s, pa, "alice", &r);
    assert_int_equal(r.cached, 0);
    run(fx, s, pb, "bob", &r);
    assert_int_equal(r.cached, r.prompt - 1);

    /* forgotten while running: the rows go when the request ends */
    int32_t *ids;
    size_t n_ids;
    assert_int_equal(generate_encode_prompt(fx->t, pa, strlen(pa), &ids, &n_ids, NULL), 0);
    struct request_params rp = {.sampling = sampler_params_default(), .max_tokens = 4,
                                .think_end = -1, .think_start = -1, .cache_tag = "alice"};
    struct request *req;
    enum sched_reject why;
    assert_int_equal(request_new("t", ids, n_ids, &rp, &req, NULL), 0);
    assert_int_equal(sched_submit(s, req, &why, NULL), 0);
    assert_true(sched_step(s, NULL) > 0); /* admitted, running */
    assert_int_equal(sched_forget_tag(s, "alice", &n, NULL), 0);
    assert_int_equal(n, 1);
    while (sched_step(s, NULL) > 0)
        ;
    request_unref(req);
    run(fx, s, pa, "alice", &r);
    assert_int_equal(r.cached, 0);

    struct err e = {0};
    assert_int_equal(sched_start(s, &e), 0);
    assert_int_equal(sched_forget_tag(s, "bob", &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sched_forget_tag(s, "carol", &n, &e), 0);
    assert_int_equal(n, 0);
    sched_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common),
        cmocka_unit_test(test_choose),
        cmocka_unit_test(test_system_prompt_hit),
        cmocka_unit_test(test_next_turn),
        cmocka_unit_test(test_forget_tag),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
