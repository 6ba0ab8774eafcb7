/* Tests for model/shapes (the shape table, tensor lists, metadata) and, end to end,
 * `deepseek mkmodel`: each tiny shape written with the tokenizer of the matching
 * shared/testdata model must have exactly that model's metadata keys (same types,
 * same hyper-parameter values) and tensor names and shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>
#include <unistd.h>

#include "cli/cli.h"
#include "model/gguf.h"
#include "model/shapes.h"
#include "model/vocab_builtin.h"
#include "testutil.h"

static void test_table_lookup(void **state)
{
    (void)state;
    size_t n;
    const struct shapes_model *all = shapes_all(&n);
    assert_true(n >= 8);
    for (size_t i = 0; i < n; i++) {
        const struct shapes_model *s = &all[i];
        assert_ptr_equal(shapes_find(s->arch, s->name), s);
        assert_int_equal(shapes_arch_from_name(shapes_arch_name(s->arch)), (int)s->arch);
        assert_int_equal(s->n_embd % s->n_head, 0);
        if (s->arch != SHAPES_ARCH_DEEPSEEK2)
            assert_int_equal(s->n_head % s->n_head_kv, 0);
        else
            assert_true(s->n_expert_used <= s->n_expert && s->n_group_used <= s->n_group);
    }
    assert_null(shapes_find(SHAPES_ARCH_QWEN2, "deepseek-v2-lite"));
    assert_null(shapes_find(SHAPES_ARCH_LLAMA, "nope"));
    assert_int_equal(shapes_arch_from_name("gpt2"), -1);
    char list[256];
    shapes_list(SHAPES_ARCH_DEEPSEEK2, list, sizeof list);
    assert_string_equal(list, "tiny, tiny-v3, deepseek-v2-lite");
    char small[8];
    shapes_list(SHAPES_ARCH_QWEN2, small, sizeof small); /* truncates, stays terminated */
    assert_true(strlen(small) < sizeof small);
}

static uint64_t params_of(enum shapes_arch arch, const char *name, uint32_t n_vocab)
{
    struct shapes_tensor *t;
    size_t n;
    assert_int_equal(shapes_tensors(shapes_find(arch, name), n_vocab, &t, &n, NULL), 0);
    uint64_t p = 0;
    for (size_t i = 0; i < n; i++)
        p += shapes_tensor_elems(&t[i]);
    free(t);
    return p;
}

/* Parameter counts: the tiny ones as testdata/models/README.md states them, the real
 * ones as their model cards state them (rounded). */
static void test_param_counts(void **state)
{
    (void)state;
    assert_int_equal(params_of(SHAPES_ARCH_QWEN2, "tiny", 151936), 41914112);
    assert_int_equal(params_of(SHAPES_ARCH_LLAMA, "tiny", 32256), 11405568);
    assert_int_equal(params_of(SHAPES_ARCH_DEEPSEEK2, "tiny", 102400), 15135104);
    uint64_t q15 = params_of(SHAPES_ARCH_QWEN2, "r1-distill-qwen-1.5b", 151936);
    assert_true(q15 > 1770000000ULL && q15 < 1790000000ULL); /* 1.78B */
    uint64_t q7 = params_of(SHAPES_ARCH_QWEN2, "r1-distill-qwen-7b", 152064);
    assert_true(q7 > 7600000000ULL && q7 < 7630000000ULL); /* 7.62B */
    uint64_t l8 = params_of(SHAPES_ARCH_LLAMA, "r1-distill-llama-8b", 128256);
    assert_true(l8 > 8020000000ULL && l8 < 8040000000ULL); /* 8.03B */
    uint64_t v2 = params_of(SHAPES_ARCH_DEEPSEEK2, "deepseek-v2-lite", 102400);
    assert_true(v2 > 15600000000ULL && v2 < 15800000000ULL); /* 15.7B */
}

static const struct shapes_tensor *find_t(const struct shapes_tensor *t, size_t n,
                                          const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].name, name))
            return &t[i];
    return NULL;
}

static void test_v3_tensors(void **state)
{
    (void)state;
    const struct shapes_model *s = shapes_find(SHAPES_ARCH_DEEPSEEK2, "tiny-v3");
    struct shapes_tensor *t;
    size_t n;
    assert_int_equal(shapes_tensors(s, 1000, &t, &n, NULL), 0);
    const struct shapes_tensor *x = find_t(t, n, "blk.0.attn_q_b.weight");
    assert_non_null(x);
    assert_int_equal(x->ne[0], s->q_lora_rank);
    assert_int_equal(x->ne[1], s->n_head * (s->qk_nope + s->qk_rope));
    assert_null(find_t(t, n, "blk.0.attn_q.weight"));
    assert_null(find_t(t, n, "blk.0.exp_probs_b.bias")); /* block 0 is dense */
    x = find_t(t, n, "blk.1.exp_probs_b.bias");
    assert_non_null(x);
    assert_false(x->matrix);
    assert_int_equal(x->ne[0], s->n_expert);
    x = find_t(t, n, "blk.3.ffn_down_exps.weight");
    assert_non_null(x);
    assert_int_equal(x->n_dims, 3);
    assert_int_equal(x->ne[0], s->n_ff_exp);
    assert_int_equal(x->ne[1], s->n_embd);
    assert_int_equal(x->ne[2], s->n_expert);
    assert_false(find_t(t, n, "blk.2.ffn_gate_inp.weight")->matrix); /* router stays F32 */
    assert_non_null(find_t(t, n, "output.weight")); /* untied */
    free(t);
}

/* Llama-3.1 rope factors against the formula in double precision. */
static void test_llama3_rope_factors(void **state)
{
    (void)state;
    const struct shapes_model *s = shapes_find(SHAPES_ARCH_LLAMA, "r1-distill-llama-8b");
    float f[64];
    shapes_llama3_rope_factors(s, f, 64);
    assert_true(f[0] == 1.0f);
    assert_true(f[63] == 8.0f);
    int smooth = 0;
    for (int i = 0; i < 64; i++) {
        double freq = pow(500000.0, -2.0 * i / 128.0), wl = 2 * M_PI / freq, want;
        if (wl < 2048.0)
            want = 1.0;
        else if (wl > 8192.0)
            want = 8.0;
        else {
            double sm = (8192.0 / wl - 1.0) / 3.0;
            want = 1.0 / ((1.0 - sm) / 8.0 + sm);
            smooth++;
        }
        assert_true(fabs(f[i] - want) < 1e-4 * want);
        if (i)
            assert_true(f[i] >= f[i - 1]);
    }
    assert_true(smooth > 0);
}

/* ------------------------------------------------------------------------- */
/* End to end against the testdata models                                    */

static int run_mkmodel(const char *arch, const char *shape, const char *type, const char *vocab,
                       const char *seed, const char *out)
{
    char *argv[14];
    int argc = 0;
    argv[argc++] = (char *)"mkmodel";
    argv[argc++] = (char *)"--arch";
    argv[argc++] = (char *)arch;
    argv[argc++] = (char *)"--shape";
    argv[argc++] = (char *)shape;
    argv[argc++] = (char *)"--type";
    argv[argc++] = (char *)type;
    if (vocab) {
        argv[argc++] = (char *)"--vocab";
        argv[argc++] = (char *)vocab;
    }
    argv[argc++] = (char *)"--seed";
    argv[argc++] = (char *)seed;
    argv[argc++] = (char *)"-o";
    argv[argc] = (char *)out;
    return cli_mkmodel(argc + 1, argv);
}

/* Every key of `ref` is in `got` with the same type (and array element type and
 * count); hyper-parameter keys (arch prefix) have the same value. Same key count. */
static void compare_kv(const struct gguf *ref, const struct gguf *got, const char *arch)
{
    assert_int_equal(gguf_n_kv(got), gguf_n_kv(ref));
    for (int64_t i = 0; i < gguf_n_kv(ref); i++) {
        const char *key = gguf_kv_key(ref, i);
        int64_t j = gguf_find_key(got, key);
        if (j < 0)
            fail_msg("key %s missing", key);
        if (gguf_kv_type(got, j) != gguf_kv_type(ref, i))
            fail_msg("key %s: type %d, want %d", key, gguf_kv_type(got, j), gguf_kv_type(ref, i));
        enum gguf_type ra, ga;
        uint64_t rn, gn;
        if (gguf_kv_array(ref, i, &ra, &rn)) {
            assert_true(gguf_kv_array(got, j, &ga, &gn));
            assert_int_equal(ga, ra);
            assert_int_equal(gn, rn);
        }
        double rv, gv;
        const char *rs, *gs;
        size_t rl, gl;
        if (strncmp(key, arch, strlen(arch)) != 0 || key[strlen(arch)] != '.')
            continue;
        if (gguf_kv_as_f64(ref, i, &rv)) {
            assert_true(gguf_kv_as_f64(got, j, &gv));
            if (gv != rv)
                fail_msg("key %s: %g, want %g", key, gv, rv);
        } else if (gguf_kv_as_str(ref, i, &rs, &rl)) {
            assert_true(gguf_kv_as_str(got, j, &gs, &gl));
            assert_int_equal(gl, rl);
            assert_memory_equal(gs, rs, rl);
        }
    }
}

/* Same tensor names and shapes (and types when same_types). */
static void compare_tensors(const struct gguf *ref, const struct gguf *got, bool same_types)
{
    assert_int_equal(gguf_n_tensors(got), gguf_n_tensors(ref));
    for (int64_t i = 0; i < gguf_n_tensors(ref); i++) {
        const struct gguf_tensor *r = gguf_tensor(ref, i);
        const struct gguf_tensor *g = gguf_find_tensor(got, r->name);
        if (!g)
            fail_msg("tensor %s missing", r->name);
        assert_int_equal(g->n_dims, r->n_dims);
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            if (g->ne[d] != r->ne[d])
                fail_msg("tensor %s: ne[%d] = %lld, want %lld", r->name, d,
                         (long long)g->ne[d], (long long)r->ne[d]);
        if (same_types || r->type == GGML_TYPE_F32)
            assert_int_equal(g->type, r->type);
    }
}

static void check_against(const char *arch, const char *model, bool same_types)
{
    const char *td = testutil_testdata();
    if (!td)
        skip();
    char ref_path[1024], out[] = "/tmp/test_shapes_XXXXXX";
    snprintf(ref_path, sizeof ref_path, "%s/models/%s", td, model);
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(run_mkmodel(arch, "tiny", "f32", ref_path, "7", out), 0);
    struct gguf *ref = NULL, *got = NULL;
    struct err e;
    assert_int_equal(gguf_open(ref_path, &ref, &e), 0);
    if (gguf_open(out, &got, &e) != 0)
        fail_msg("%s", e.msg);
    compare_kv(ref, got, arch);
    compare_tensors(ref, got, same_types);
    gguf_close(ref);
    gguf_close(got);
    unlink(out);
}

static void test_tiny_qwen2_matches_testdata(void **state)
{
    (void)state;
    check_against("qwen2", "tiny-qwen2-Q8_0.gguf", false);
}

static void test_tiny_llama_matches_testdata(void **state)
{
    (void)state;
    check_against("llama", "tiny-llama-F32.gguf", true);
}

static void test_tiny_deepseek2_matches_testdata(void **state)
{
    (void)state;
    check_against("deepseek2", "tiny-deepseek2-Q8_0.gguf", false);
}

/* Half-precision outputs: matrices in the requested type with sane values, norms F32. */
static void check_half(const char *type, enum ggml_type want)
{
    char out[] = "/tmp/test_shapes_XXXXXX";
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(run_mkmodel("deepseek2", "tiny-v3", type, NULL, "3", out), 0);
    struct gguf *g = NULL;
    assert_int_equal(gguf_open(out, &g, NULL), 0);
    const struct gguf_tensor *t = gguf_find_tensor(g, "blk.1.ffn_up_exps.weight");
    assert_non_null(t);
    assert_int_equal(t->type, want);
    assert_int_equal(gguf_find_tensor(g, "blk.1.exp_probs_b.bias")->type, GGML_TYPE_F32);
    assert_int_equal(gguf_find_tensor(g, "output_norm.weight")->type, GGML_TYPE_F32);
    double sum2 = 0;
    const uint16_t *h = t->data;
    for (uint64_t i = 0; i < t->n_elems; i++) {
        float v;
        if (want == GGML_TYPE_BF16) {
            uint32_t x = (uint32_t)h[i] << 16;
            memcpy(&v, &x, 4);
        } else { /* normal f16 only: |v| < 1 and > 2^-14 almost surely */
            int ex = (h[i] >> 10) & 0x1f;
            v = ldexpf(1.0f + (float)(h[i] & 0x3ff) / 1024.0f, ex - 15);
            if (ex == 0)
                v = ldexpf((float)(h[i] & 0x3ff), -24);
            if (h[i] & 0x8000)
                v = -v;
        }
        assert_true(fabsf(v) < 0.1f);
        sum2 += (double)v * v;
    }
    double sd = sqrt(sum2 / (double)t->n_elems);
    assert_true(sd > 0.019 && sd < 0.021);
    uint64_t n_vocab = 0;
    assert_int_equal(gguf_get_u64(g, "deepseek2.vocab_size", &n_vocab, NULL), 0);
    assert_int_equal(n_vocab, vocab_builtin_n_tokens());
    gguf_close(g);
    unlink(out);
}

static void test_f16_bf16(void **state)
{
    (void)state;
    check_half("f16", GGML_TYPE_F16);
    check_half("bf16", GGML_TYPE_BF16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_lookup),
        cmocka_unit_test(test_param_counts),
        cmocka_unit_test(test_v3_tensors),
        cmocka_unit_test(test_llama3_rope_factors),
        cmocka_unit_test(test_tiny_qwen2_matches_testdata),
        cmocka_unit_test(test_tiny_llama_matches_testdata),
        cmocka_unit_test(test_tiny_deepseek2_matches_testdata),
        cmocka_unit_test(test_f16_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
