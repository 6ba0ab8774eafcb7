/* Unit tests for model/gguf: the shared test files, writer round trips, and a
 * catalogue of corrupted files, each of which must fail cleanly with a message
 * naming the key/tensor and the offset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf.h"
#include "testutil.h"

/* ------------------------------------------------------------------------- */
/* A byte builder for hand-made GGUF files                                   */

struct bb {
    uint8_t *p;
    size_t len, cap;
};

static void bb_put(struct bb *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void bb_le(struct bb *b, uint64_t v, unsigned n)
{
    uint8_t t[8];
    for (unsigned k = 0; k < n; k++)
        t[k] = (uint8_t)(v >> (8 * k));
    bb_put(b, t, n);
}

static void bb_str(struct bb *b, const char *s)
{
    bb_le(b, strlen(s), 8);
    bb_put(b, s, strlen(s));
}

static void bb_hdr(struct bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    bb_put(b, "GGUF", 4);
    bb_le(b, version, 4);
    bb_le(b, n_tensors, 8);
    bb_le(b, n_kv, 8);
}

/* key + type + fixed-size value */
static void bb_kv(struct bb *b, const char *key, enum gguf_type t, uint64_t v, unsigned n)
{
    bb_str(b, key);
    bb_le(b, t, 4);
    bb_le(b, v, n);
}

static void bb_tensor(struct bb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                      uint32_t type, uint64_t offset)
{
    bb_str(b, name);
    bb_le(b, n_dims, 4);
    for (uint32_t d = 0; d < n_dims; d++)
        bb_le(b, ne[d], 8);
    bb_le(b, type, 4);
    bb_le(b, offset, 8);
}

/* Pads to `align` and appends `n` data bytes. */
static void bb_data(struct bb *b, uint32_t align, size_t n)
{
    static const uint8_t z[1];
    while (b->len % align)
        bb_put(b, z, 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t v = (uint8_t)i;
        bb_put(b, &v, 1);
    }
}

/* Opens the bytes, expects failure and checks each NULL-terminated substring. */
static void expect_fail(const struct bb *b, int code, ...)
{
    struct gguf *g = (struct gguf *)1;
    struct err e = {0};
    int rc = gguf_open_memory(b->p, b->len, "bad.gguf", &g, &e);
    if (rc == 0)
        fail_msg("expected failure, file opened");
    assert_null(g);
    if (code)
        assert_int_equal(rc, code);
    assert_int_equal(e.code, rc);
    assert_non_null(strstr(e.msg, "bad.gguf: "));
    va_list ap;
    va_start(ap, code);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(e.msg, s))
            fail_msg("message '%s' lacks '%s'", e.msg, s);
    va_end(ap);
}

static void expect_ok(const struct bb *b)
{
    struct gguf *g;
    struct err e = {0};
    if (gguf_open_memory(b->p, b->len, "ok.gguf", &g, &e))
        fail_msg("expected success: %s", e.msg);
    gguf_close(g);
}

/* ------------------------------------------------------------------------- */
/* Shared test data                                                          */

struct model_fact {
    const char *file, *arch;
    int64_t n_tensors;
    uint64_t params, vocab;
    int n_f32, n_q8_0, n_q4_k, n_q6_k;
};

static const struct model_fact model_facts[] = {
    {"tiny-qwen2-Q8_0.gguf", "qwen2", 50, 41914112, 151936, 21, 29, 0, 0},
    {"tiny-qwen2-Q4_K_M.gguf", "qwen2", 50, 41914112, 151936, 21, 0, 24, 5},
    {"tiny-llama-F32.gguf", "llama", 38, 11405568, 32256, 38, 0, 0, 0},
    {"tiny-llama-Q4_K_M.gguf", "llama", 38, 11405568, 32256, 9, 0, 24, 5},
    {"tiny-deepseek2-Q8_0.gguf", "deepseek2", 58, 15135104, 102400, 16, 42, 0, 0},
};

static void check_model(const char *dir, const struct model_fact *f)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", dir, f->file);
    struct gguf *g;
    struct err e;
    if (gguf_open(path, &g, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_alignment(g), 32);
    assert_int_equal(gguf_n_tensors(g), f->n_tensors);
    const char *s;
    size_t n;
    assert_int_equal(gguf_get_str(g, "general.architecture", &s, &n, &e), 0);
    assert_int_equal(n, strlen(f->arch));
    assert_memory_equal(s, f->arch, n);
    int64_t k = gguf_find_key(g, "tokenizer.ggml.tokens");
    enum gguf_type et;
    uint64_t nv;
    assert_true(gguf_kv_array(g, k, &et, &nv));
    assert_int_equal(et, GGUF_TYPE_STRING);
    assert_int_equal(nv, f->vocab);
    uint64_t params = 0;
    int counts[GGML_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        params += t->n_elems;
        counts[t->type]++;
        assert_ptr_equal(gguf_find_tensor(g, t->name), t);
        assert_int_equal(t->offset % gguf_alignment(g), 0);
        assert_true(gguf_data_offset(g) + t->offset + t->nbytes <= gguf_file_size(g));
    }
    assert_int_equal(params, f->params);
    assert_int_equal(counts[GGML_TYPE_F32], f->n_f32);
    assert_int_equal(counts[GGML_TYPE_Q8_0], f->n_q8_0);
    assert_int_equal(counts[GGML_TYPE_Q4_K], f->n_q4_k);
    assert_int_equal(counts[GGML_TYPE_Q6_K], f->n_q6_k);
    const struct gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(emb);
    assert_int_equal(emb->ne[1], (int64_t)f->vocab);
    assert_null(gguf_find_tensor(g, "output.weight")); /* tied embeddings */
    gguf_close(g);
}

static void test_models(void **state)
{
    (void)state;
    const char *dir = testutil_testdata();
    if (!dir)
        skip();
    for (size_t i = 0; i < sizeof model_facts / sizeof model_facts[0]; i++)
        check_model(dir, &model_facts[i]);

    /* Specific metadata values stated in models/README.md. */
    char path[4096];
    snprintf(path, sizeof path, "%s/models/tiny-llama-F32.gguf", dir);
    struct gguf *g;
    struct err e;
    assert_int_equal(gguf_open(path, &g, &e), 0);
    uint32_t u;
    float f;
    assert_int_equal(gguf_get_u32(g, "llama.block_count", &u, &e), 0);
    assert_int_equal(u, 4);
    assert_int_equal(gguf_get_u32(g, "llama.attention.head_count_kv", &u, &e), 0);
    assert_int_equal(u, 4);
    assert_int_equal(gguf_get_f32(g, "llama.rope.freq_base", &f, &e), 0);
    assert_float_equal(f, 100000.0f, 0.0f);
    assert_int_equal(gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u, &e), 0);
    assert_int_equal(u, 32013);
    assert_int_equal(gguf_get_u32(g, "no.such.key", &u, &e), ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "no.such.key"));
    assert_int_equal(gguf_get_u32(g, "general.architecture", &u, &e), ERR_FORMAT);
    assert_non_null(strstr(e.msg, "general.architecture"));
    assert_non_null(strstr(e.msg, "string"));
    const struct gguf_tensor *t = gguf_find_tensor(g, "blk.0.attn_k.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 256);
    assert_int_equal(t->ne[1], 128);
    assert_int_equal(t->nbytes, 256 * 128 * 4);
    gguf_close(g);
}

struct vocab_fact {
    const char *file, *pre;
    uint64_t n_vocab;
    uint32_t bos, eos;
};

static void test_vocab_files(void **state)
{
    (void)state;
    static const struct vocab_fact facts[] = {
        {"ggml-vocab-deepseek-llm.gguf", "deepseek-llm", 102400, 100000, 100001},
        {"ggml-vocab-deepseek-coder.gguf", "deepseek-coder", 32256, 32013, 32014},
        {"ggml-vocab-qwen2.gguf", "qwen2", 151936, 0, 0},
        {"ggml-vocab-llama-bpe.gguf", "llama-bpe", 128256, 0, 0},
        {"ggml-vocab-deepseek-v3.gguf", "deepseek-v3", 129280, 0, 1},
    };
    const char *dir = testutil_testdata();
    if (!dir)
        skip();
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer/%s", dir, facts[i].file);
        struct gguf *g;
        struct err e;
        if (gguf_open(path, &g, &e))
            fail_msg("%s", e.msg);
        assert_int_equal(gguf_n_tensors(g), 0);
        const char *s;
        size_t n;
        assert_int_equal(gguf_get_str(g, "tokenizer.ggml.pre", &s, &n, &e), 0);
        assert_int_equal(n, strlen(facts[i].pre));
        assert_memory_equal(s, facts[i].pre, n);
        assert_int_equal(gguf_get_str(g, "tokenizer.ggml.model", &s, &n, &e), 0);
        assert_memory_equal(s, "gpt2", 4);
        int64_t k = gguf_find_key(g, "tokenizer.ggml.tokens");
        uint64_t nv;
        assert_true(gguf_kv_array(g, k, NULL, &nv));
        assert_int_equal(nv, facts[i].n_vocab);
        int64_t tt = gguf_find_key(g, "tokenizer.ggml.token_type");
        uint64_t ntt;
        enum gguf_type et;
        assert_true(gguf_kv_array(g, tt, &et, &ntt));
        assert_int_equal(et, GGUF_TYPE_INT32);
        assert_int_equal(ntt, nv);
        int64_t ty;
        assert_true(gguf_arr_i64(g, tt, nv - 1, &ty));
        assert_true(ty >= 1 && ty <= 6);
        if (facts[i].eos) {
            uint32_t u;
            assert_int_equal(gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u, &e), 0);
            assert_int_equal(u, facts[i].bos);
            assert_int_equal(gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u, &e), 0);
            assert_int_equal(u, facts[i].eos);
        }
        /* A merge is "left right". */
        int64_t m = gguf_find_key(g, "tokenizer.ggml.merges");
        assert_true(gguf_arr_str(g, m, 0, &s, &n));
        assert_non_null(memchr(s, ' ', n));
        assert_false(gguf_arr_str(g, m, UINT64_MAX, &s, &n));
        gguf_close(g);
    }
}

/* ------------------------------------------------------------------------- */
/* Writer round trip                                                         */

static char tmpdir[64];

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_gguf.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[512];
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    return rmdir(tmpdir);
}

static int count_files(void)
{
    int n = 0;
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* Tensor bytes are a function of (index, position) so the reader can check them. */
static int fill_pattern(void *user, int64_t index, const char *name, void *buf, uint64_t nbytes,
                        struct err *err)
{
    (void)name;
    (void)err;
    int *calls = user;
    ++*calls;
    for (uint64_t k = 0; k < nbytes; k++)
        ((uint8_t *)buf)[k] = (uint8_t)(k * 7 + (uint64_t)index * 13 + 1);
    return 0;
}

static int fill_fail(void *user, int64_t index, const char *name, void *buf, uint64_t nbytes,
                     struct err *err)
{
    (void)user;
    (void)buf;
    (void)nbytes;
    if (index == 1)
        return err_set(err, ERR_IO, "fill failed at %s", name);
    return 0;
}

static const char *const strs[] = {"hello", "", "wörld", "a\nb"};

static void write_sample(const char *path, uint32_t align)
{
    struct gguf_writer *w = gguf_writer_new(align);
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "test", 4), 0);
    assert_int_equal(gguf_writer_set_u32(w, "t.u32", 4000000000u), 0);
    assert_int_equal(gguf_writer_set_i32(w, "t.i32", -7), 0);
    assert_int_equal(gguf_writer_set_u64(w, "t.u64", UINT64_MAX - 1), 0);
    assert_int_equal(gguf_writer_set_f32(w, "t.f32", 1.5f), 0);
    assert_int_equal(gguf_writer_set_bool(w, "t.bool", true), 0);
    assert_int_equal(gguf_writer_set_str(w, "t.str", "x\0y", 3), 0);
    assert_int_equal(gguf_writer_set_u32(w, "t.replaced", 1), 0);
    assert_int_equal(gguf_writer_set_u32(w, "t.replaced", 2), 0); /* replaces */
    int32_t i32s[] = {1, -2, 3};
    double f64s[] = {0.25, -1e300};
    uint8_t bools[] = {1, 0, 1};
    int16_t i16s[] = {-32768, 32767};
    assert_int_equal(gguf_writer_set_arr(w, "a.i32", GGUF_TYPE_INT32, i32s, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.f64", GGUF_TYPE_FLOAT64, f64s, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.bool", GGUF_TYPE_BOOL, bools, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.i16", GGUF_TYPE_INT16, i16s, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.empty", GGUF_TYPE_UINT8, NULL, 0), 0);
    assert_int_equal(gguf_writer_set_arr_str(w, "a.str", strs, NULL, 4), 0);
    uint8_t bad_bool = 2;
    assert_int_equal(gguf_writer_set_arr(w, "a.badbool", GGUF_TYPE_BOOL, &bad_bool, 1),
                     ERR_INVALID);
    assert_int_equal(gguf_writer_set_arr(w, "a.nested", GGUF_TYPE_ARRAY, i32s, 1), ERR_INVALID);
    int64_t ne1[] = {64, 3}, ne2[] = {512}, ne3[] = {32, 2, 2, 2}, ne4[] = {5};
    assert_int_equal(gguf_writer_add_tensor(w, "w.f32", GGML_TYPE_F32, 2, ne1), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "w.q4k", GGML_TYPE_Q4_K, 1, ne2), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "w.q8", GGML_TYPE_Q8_0, 4, ne3), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "w.f16", GGML_TYPE_F16, 1, ne4), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "w.f16", GGML_TYPE_F16, 1, ne4), ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "w.bad", GGML_TYPE_Q8_0, 1, ne4), ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "w.bad", (enum ggml_type)4, 1, ne2), ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "w.bad", GGML_TYPE_F32, 5, ne3), ERR_INVALID);
    int calls = 0;
    struct err e;
    if (gguf_writer_write(w, path, fill_pattern, &calls, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(calls, 4);
    gguf_writer_free(w);
}

static void check_sample(const struct gguf *g, uint32_t align)
{
    struct err e;
    uint32_t u;
    uint64_t u64;
    int64_t i64;
    float f;
    bool b;
    const char *s;
    size_t n;
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_alignment(g), align);
    assert_int_equal(gguf_get_u32(g, "t.u32", &u, &e), 0);
    assert_int_equal(u, 4000000000u);
    assert_int_equal(gguf_get_i64(g, "t.i32", &i64, &e), 0);
    assert_int_equal(i64, -7);
    assert_int_equal(gguf_get_u32(g, "t.i32", &u, &e), ERR_FORMAT); /* negative */
    assert_int_equal(gguf_get_u64(g, "t.u64", &u64, &e), 0);
    assert_true(u64 == UINT64_MAX - 1);
    assert_int_equal(gguf_get_i64(g, "t.u64", &i64, &e), ERR_FORMAT); /* too big */
    assert_int_equal(gguf_get_f32(g, "t.f32", &f, &e), 0);
    assert_float_equal(f, 1.5f, 0.0f);
    assert_int_equal(gguf_get_bool(g, "t.bool", &b, &e), 0);
    assert_true(b);
    assert_int_equal(gguf_get_str(g, "t.str", &s, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "x\0y", 3);
    assert_int_equal(gguf_get_u32(g, "t.replaced", &u, &e), 0);
    assert_int_equal(u, 2);
    assert_int_equal(gguf_find_key(g, "a.badbool"), -1);

    int64_t k = gguf_find_key(g, "a.i32");
    enum gguf_type et;
    uint64_t na;
    assert_true(gguf_kv_array(g, k, &et, &na));
    assert_int_equal(et, GGUF_TYPE_INT32);
    assert_int_equal(na, 3);
    assert_true(gguf_arr_i64(g, k, 1, &i64));
    assert_int_equal(i64, -2);
    assert_false(gguf_arr_i64(g, k, 3, &i64));
    size_t nb;
    assert_non_null(gguf_arr_data(g, k, &nb));
    assert_int_equal(nb, 12);
    double d;
    k = gguf_find_key(g, "a.f64");
    assert_true(gguf_arr_f64(g, k, 1, &d));
    assert_true(d == -1e300);
    assert_false(gguf_arr_i64(g, k, 0, &i64));
    k = gguf_find_key(g, "a.bool");
    assert_true(gguf_arr_i64(g, k, 2, &i64));
    assert_int_equal(i64, 1);
    k = gguf_find_key(g, "a.i16");
    assert_true(gguf_arr_i64(g, k, 0, &i64));
    assert_int_equal(i64, -32768);
    k = gguf_find_key(g, "a.empty");
    assert_true(gguf_kv_array(g, k, &et, &na));
    assert_int_equal(na, 0);
    k = gguf_find_key(g, "a.str");
    assert_null(gguf_arr_data(g, k, &nb));
    for (uint64_t j = 0; j < 4; j++) {
        assert_true(gguf_arr_str(g, k, j, &s, &n));
        assert_int_equal(n, strlen(strs[j]));
        assert_memory_equal(s, strs[j], n);
    }

    assert_int_equal(gguf_n_tensors(g), 4);
    static const char *const names[] = {"w.f32", "w.q4k", "w.q8", "w.f16"};
    static const uint64_t sizes[] = {64 * 3 * 4, 2 * 144, 8 * 34, 10};
    for (int64_t i = 0; i < 4; i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        assert_string_equal(t->name, names[i]);
        assert_int_equal(t->nbytes, sizes[i]);
        assert_int_equal(t->offset % align, 0);
        assert_int_equal((gguf_data_offset(g) + t->offset) % align, 0);
        for (uint64_t b2 = 0; b2 < t->nbytes; b2++)
            assert_int_equal(((const uint8_t *)t->data)[b2], (uint8_t)(b2 * 7 + (uint64_t)i * 13 + 1));
    }
    const struct gguf_tensor *q8 = gguf_find_tensor(g, "w.q8");
    assert_int_equal(q8->n_dims, 4);
    assert_int_equal(q8->ne[3], 2);
    assert_int_equal(q8->n_elems, 256);
    assert_null(gguf_tensor(g, 4));
}

static void test_writer_round_trip(void **state)
{
    (void)state;
    char path[128];
    for (uint32_t align = 32; align <= 64; align *= 2) {
        snprintf(path, sizeof path, "%s/rt%u.gguf", tmpdir, align);
        write_sample(path, align);
        struct gguf *g;
        struct err e;
        if (gguf_open(path, &g, &e))
            fail_msg("%s", e.msg);
        check_sample(g, align);

        /* Copying every kv and tensor gives a file that reads back identically. */
        char path2[160];
        snprintf(path2, sizeof path2, "%s/copy%u.gguf", tmpdir, align);
        struct gguf_writer *w = gguf_writer_new(align);
        for (int64_t i = 0; i < gguf_n_kv(g); i++)
            assert_int_equal(gguf_writer_copy_kv(w, g, i), 0);
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
            const struct gguf_tensor *t = gguf_tensor(g, i);
            assert_int_equal(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne), 0);
        }
        int calls = 0;
        assert_int_equal(gguf_writer_write(w, path2, fill_pattern, &calls, &e), 0);
        gguf_writer_free(w);
        struct gguf *g2;
        if (gguf_open(path2, &g2, &e))
            fail_msg("%s", e.msg);
        check_sample(g2, align);
        assert_int_equal(gguf_n_kv(g2), gguf_n_kv(g));
        gguf_close(g2);
        gguf_close(g);
    }
}

/* GGUF_LOAD_READ holds the same bytes as the mapping, from a 2 MiB-aligned base (so the
 * kernel can back it with huge pages), and refuses what the mapping refuses, with the
 * same message. */
static void test_load_read(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/read.gguf", tmpdir);
    write_sample(path, 32);
    struct gguf *gm, *gr;
    struct err e;
    if (gguf_open_as(path, GGUF_LOAD_MMAP, &gm, &e) || gguf_open_as(path, GGUF_LOAD_READ, &gr, &e))
        fail_msg("%s", e.msg);
    check_sample(gr, 32);
    assert_int_equal(gguf_file_size(gr), gguf_file_size(gm));
    assert_int_equal(gguf_n_kv(gr), gguf_n_kv(gm));
    for (int64_t i = 0; i < gguf_n_tensors(gm); i++) {
        const struct gguf_tensor *a = gguf_tensor(gm, i), *b = gguf_tensor(gr, i);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_ptr_not_equal(a->data, b->data);
        assert_memory_equal(a->data, b->data, a->nbytes);
        uintptr_t base = (uintptr_t)b->data - gguf_data_offset(gr) - b->offset;
        assert_int_equal(base % ((uintptr_t)2 << 20), 0);
    }
    gguf_close(gr);
    gguf_close(gm);

    /* Cut inside the data: both modes name the tensor whose data runs past the end. */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, size - 1), 0);
    struct err em;
    assert_int_equal(gguf_open_as(path, GGUF_LOAD_MMAP, &gm, &em), ERR_FORMAT);
    assert_int_equal(gguf_open_as(path, GGUF_LOAD_READ, &gr, &e), ERR_FORMAT);
    assert_null(gr);
    assert_string_equal(e.msg, em.msg);
    assert_non_null(strstr(e.msg, "data ends at byte"));

    /* 100 MiB + 12345 bytes (read by several threads, the last share partial): every
     * byte lands where the mapping has it; markers every 3 MiB + 1 catch a share read to
     * the wrong place. */
    write_sample(path, 32);
    const off_t big = ((off_t)100 << 20) + 12345;
    assert_int_equal(truncate(path, big), 0);
    FILE *fb = fopen(path, "r+b");
    assert_non_null(fb);
    for (off_t at = 4096; at < big - 8; at += ((off_t)3 << 20) + 1) {
        assert_int_equal(fseeko(fb, at, SEEK_SET), 0);
        assert_int_equal(fwrite(&at, sizeof at, 1, fb), 1);
    }
    fclose(fb);
    if (gguf_open_as(path, GGUF_LOAD_MMAP, &gm, &e) || gguf_open_as(path, GGUF_LOAD_READ, &gr, &e))
        fail_msg("%s", e.msg);
    const struct gguf_tensor *tm = gguf_tensor(gm, 0), *tr = gguf_tensor(gr, 0);
    assert_memory_equal((const char *)tm->data - gguf_data_offset(gm) - tm->offset,
                        (const char *)tr->data - gguf_data_offset(gr) - tr->offset, (size_t)big);
    gguf_close(gr);
    gguf_close(gm);

    /* Larger than the available memory (a sparse 1 TiB file): refused before any read,
     * naming the way out; the mapping still opens it. */
    write_sample(path, 32);
    if (truncate(path, (off_t)1 << 40) == 0) {
        assert_int_equal(gguf_open_as(path, GGUF_LOAD_READ, &gr, &e), ERR_NOMEM);
        assert_null(gr);
        assert_non_null(strstr(e.msg, "available memory (--mmap maps the file instead)"));
        if (gguf_open_as(path, GGUF_LOAD_MMAP, &gm, &e))
            fail_msg("%s", e.msg);
        check_sample(gm, 32);
        gguf_close(gm);
    }
    unlink(path);

    assert_int_equal(gguf_open_as("/nonexistent/x.gguf", GGUF_LOAD_READ, &gr, &e), ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/x.gguf"));
    assert_int_equal(gguf_open_as(tmpdir, GGUF_LOAD_READ, &gr, &e), ERR_IO);
    assert_non_null(strstr(e.msg, "not a regular file"));
}

static void test_writer_failure_leaves_no_file(void **state)
{
    (void)state;
    int before = count_files();
    char path[128];
    snprintf(path, sizeof path, "%s/fail.gguf", tmpdir);
    struct gguf_writer *w = gguf_writer_new(0);
    int64_t ne[] = {8};
    assert_int_equal(gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 1, ne), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 1, ne), 0);
    struct err e;
    assert_int_equal(gguf_writer_write(w, path, fill_fail, NULL, &e), ERR_IO);
    assert_non_null(strstr(e.msg, "fill failed at b"));
    assert_int_equal(count_files(), before);
    snprintf(path, sizeof path, "%s/no/such/dir.gguf", tmpdir);
    assert_int_equal(gguf_writer_write(w, path, NULL, NULL, &e), ERR_IO);
    assert_non_null(strstr(e.msg, "dir.gguf"));
    gguf_writer_free(w);
    assert_null(gguf_writer_new(48)); /* not a power of two */
}

/* Scalars of every type (the writer has no setter for some) survive copy_kv. */
static void test_all_scalar_types_copy(void **state)
{
    (void)state;
    struct bb b = {0};
    bb_hdr(&b, 2, 0, 9);
    bb_kv(&b, "u8", GGUF_TYPE_UINT8, 200, 1);
    bb_kv(&b, "i8", GGUF_TYPE_INT8, (uint8_t)-100, 1);
    bb_kv(&b, "u16", GGUF_TYPE_UINT16, 60000, 2);
    bb_kv(&b, "i16", GGUF_TYPE_INT16, (uint16_t)-30000, 2);
    bb_kv(&b, "i64", GGUF_TYPE_INT64, (uint64_t)INT64_MIN, 8);
    double dv = 2.5;
    uint64_t bits;
    memcpy(&bits, &dv, 8);
    bb_kv(&b, "f64", GGUF_TYPE_FLOAT64, bits, 8);
    bb_kv(&b, "b0", GGUF_TYPE_BOOL, 0, 1);
    bb_str(&b, "s");
    bb_le(&b, GGUF_TYPE_STRING, 4);
    bb_str(&b, "");
    bb_str(&b, "arr.u64");
    bb_le(&b, GGUF_TYPE_ARRAY, 4);
    bb_le(&b, GGUF_TYPE_UINT64, 4);
    bb_le(&b, 1, 8);
    bb_le(&b, 42, 8);
    struct gguf *src;
    struct err e;
    assert_int_equal(gguf_open_memory(b.p, b.len, "src", &src, &e), 0);
    assert_int_equal(gguf_version(src), 2);
    struct gguf_writer *w = gguf_writer_new(0);
    for (int64_t i = 0; i < gguf_n_kv(src); i++)
        assert_int_equal(gguf_writer_copy_kv(w, src, i), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/scalars.gguf", tmpdir);
    assert_int_equal(gguf_writer_write(w, path, NULL, NULL, &e), 0);
    gguf_writer_free(w);
    struct gguf *g;
    assert_int_equal(gguf_open(path, &g, &e), 0);
    assert_int_equal(gguf_n_kv(g), 9);
    for (int64_t i = 0; i < 9; i++) {
        assert_string_equal(gguf_kv_key(g, i), gguf_kv_key(src, i));
        assert_int_equal(gguf_kv_type(g, i), gguf_kv_type(src, i));
    }
    int64_t i64;
    uint64_t u64;
    double d;
    assert_true(gguf_kv_as_u64(g, gguf_find_key(g, "u8"), &u64) && u64 == 200);
    assert_true(gguf_kv_as_i64(g, gguf_find_key(g, "i8"), &i64) && i64 == -100);
    assert_false(gguf_kv_as_u64(g, gguf_find_key(g, "i8"), &u64));
    assert_true(gguf_kv_as_u64(g, gguf_find_key(g, "u16"), &u64) && u64 == 60000);
    assert_true(gguf_kv_as_i64(g, gguf_find_key(g, "i16"), &i64) && i64 == -30000);
    assert_true(gguf_kv_as_i64(g, gguf_find_key(g, "i64"), &i64) && i64 == INT64_MIN);
    assert_true(gguf_kv_as_f64(g, gguf_find_key(g, "f64"), &d) && d == 2.5);
    assert_false(gguf_kv_as_i64(g, gguf_find_key(g, "f64"), &i64));
    bool bv = true;
    assert_int_equal(gguf_get_bool(g, "b0", &bv, &e), 0);
    assert_false(bv);
    const char *s;
    size_t n = 9;
    assert_true(gguf_kv_as_str(g, gguf_find_key(g, "s"), &s, &n) && n == 0);
    assert_true(gguf_arr_i64(g, gguf_find_key(g, "arr.u64"), 0, &i64) && i64 == 42);
    gguf_close(g);
    gguf_close(src);
    free(b.p);
}

/* ------------------------------------------------------------------------- */
/* Corrupted files, hand-built                                               */

static const uint64_t ne_64[] = {64}, ne_64x2[] = {64, 2};

/* A valid file: 1 kv, 1 tensor F32 [64] at offset 0. Offsets: kv at 24. */
static void valid_base(struct bb *b)
{
    bb_hdr(b, 3, 1, 1);
    bb_kv(b, "k", GGUF_TYPE_UINT32, 7, 4);
    bb_tensor(b, "t", 1, ne_64, GGML_TYPE_F32, 0);
    bb_data(b, 32, 256);
}

static void test_corrupt_header(void **state)
{
    (void)state;
    struct bb b = {0};
    valid_base(&b);
    expect_ok(&b);
    b.p[0] = 'X';
    expect_fail(&b, ERR_FORMAT, "bad magic 'XGUF'", "offset 0", NULL);
    b.p[0] = 'G';
    b.p[4] = 1;
    expect_fail(&b, ERR_UNSUPPORTED, "version 1", "offset 4", NULL);
    b.p[4] = 99;
    expect_fail(&b, ERR_UNSUPPORTED, "version 99", NULL);
    b.p[4] = 0;
    b.p[7] = 3;
    expect_fail(&b, ERR_UNSUPPORTED, "big-endian", NULL);
    b.p[4] = 3;
    b.p[7] = 0;
    expect_ok(&b);
    b.p[23] = 0x10; /* n_kv = 2^60 + 1 */
    expect_fail(&b, ERR_FORMAT, "n_kv 1152921504606846977", "offset 16", NULL);
    b.p[23] = 0;
    b.p[15] = 0x80; /* n_tensors huge */
    expect_fail(&b, ERR_FORMAT, "n_tensors", "offset 8", NULL);
    b.p[15] = 0;
    b.p[8] = 2; /* two tensors claimed: runs out of bytes in the data */
    expect_fail(&b, 0, "tensor", NULL);
    b.p[8] = 1;
    expect_ok(&b);
    free(b.p);

    struct bb empty = {0};
    bb_put(&empty, "GG", 2);
    expect_fail(&empty, ERR_FORMAT, "bad magic", NULL);
    free(empty.p);
}

/* Truncation at every offset of a small valid file must fail, never crash. */
static void test_truncated_everywhere(void **state)
{
    (void)state;
    struct bb b = {0};
    valid_base(&b);
    for (size_t cut = 0; cut < b.len; cut++) {
        struct bb t = {b.p, cut, cut};
        expect_fail(&t, 0, NULL);
    }
    struct bb t = {b.p, 72, 72}; /* inside the tensor info (41..74) */
    expect_fail(&t, ERR_FORMAT, "tensor 't' (tensor 0) at offset 66", "truncated", NULL);
    t.len = b.len - 1; /* inside the data */
    expect_fail(&t, ERR_FORMAT, "tensor 't' (info at offset 41) data ends at byte 352", NULL);
    t.len = 10;
    expect_fail(&t, ERR_FORMAT, "header", "n_tensors", NULL);
    free(b.p);
}

static void test_corrupt_strings_and_arrays(void **state)
{
    (void)state;
    struct bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_le(&b, 1000000, 8); /* key length beyond EOF */
    bb_put(&b, "abcdefghijklmnop", 16);
    expect_fail(&b, ERR_FORMAT, "kv 0 at offset 24", "key length 1000000 exceeds", NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 0, 2);
    bb_kv(&b, "a", GGUF_TYPE_UINT8, 1, 1);
    size_t at = b.len; /* 24 + 8 + 1 + 4 + 1 = 38 */
    bb_str(&b, "general.name");
    bb_le(&b, GGUF_TYPE_STRING, 4);
    bb_le(&b, 9000000, 8);
    bb_put(&b, "xyz", 3);
    char off[64];
    snprintf(off, sizeof off, "at offset %zu", at + 8 + 12 + 4);
    expect_fail(&b, ERR_FORMAT, "key 'general.name' (kv 1)", off, "string length 9000000", NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "tokenizer.ggml.tokens");
    bb_le(&b, GGUF_TYPE_ARRAY, 4);
    bb_le(&b, GGUF_TYPE_STRING, 4);
    bb_le(&b, (uint64_t)1 << 60, 8); /* must fail before allocating */
    bb_str(&b, "a");
    expect_fail(&b, ERR_FORMAT, "tokenizer.ggml.tokens", "array count 1152921504606846976",
                NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_le(&b, GGUF_TYPE_ARRAY, 4);
    bb_le(&b, GGUF_TYPE_STRING, 4);
    bb_le(&b, 2, 8);
    bb_str(&b, "ok");
    bb_le(&b, 77, 8); /* second element overruns */
    bb_put(&b, "x", 1);
    expect_fail(&b, ERR_FORMAT, "key 'arr'", "array string length 77", NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_le(&b, GGUF_TYPE_ARRAY, 4);
    bb_le(&b, GGUF_TYPE_ARRAY, 4); /* nested */
    bb_le(&b, 1, 8);
    bb_le(&b, GGUF_TYPE_UINT8, 4);
    bb_le(&b, 0, 8);
    expect_fail(&b, ERR_UNSUPPORTED, "key 'arr'", "nested arrays", NULL);
    b.p[b.len - 24] = 42; /* unknown element type */
    expect_fail(&b, ERR_FORMAT, "unknown array element type 42", NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_kv(&b, "v", 13, 0, 4); /* unknown value type */
    expect_fail(&b, ERR_FORMAT, "key 'v'", "unknown value type 13", "offset 33", NULL);
    free(b.p);
}

static void test_corrupt_values(void **state)
{
    (void)state;
    struct bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_kv(&b, "flag", GGUF_TYPE_BOOL, 2, 1);
    expect_fail(&b, ERR_FORMAT, "key 'flag'", "bool value 2", NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "flags");
    bb_le(&b, GGUF_TYPE_ARRAY, 4);
    bb_le(&b, GGUF_TYPE_BOOL, 4);
    bb_le(&b, 3, 8);
    bb_put(&b, "\1\0\7", 3);
    expect_fail(&b, ERR_FORMAT, "key 'flags'", "element 2: bool value 7", NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 0, 2);
    bb_kv(&b, "a.b", GGUF_TYPE_UINT32, 1, 4);
    bb_kv(&b, "a.b", GGUF_TYPE_UINT8, 1, 1);
    expect_fail(&b, ERR_FORMAT, "duplicate key 'a.b' at offset 43", "first at offset 24", NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_kv(&b, "", GGUF_TYPE_UINT8, 1, 1);
    bb_put(&b, "pad", 3);
    expect_fail(&b, ERR_FORMAT, "empty key", "offset 24", NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_kv(&b, "a", GGUF_TYPE_UINT8, 1, 1);
    b.p[32] = '\0';
    expect_fail(&b, ERR_FORMAT, "NUL", NULL);
    free(b.p);

    static const struct {
        enum gguf_type t;
        uint64_t v;
        const char *msg;
    } aligns[] = {
        {GGUF_TYPE_UINT32, 48, "alignment 48 is not a power of two"},
        {GGUF_TYPE_UINT32, 0, "alignment 0 is not a power of two"},
        {GGUF_TYPE_UINT64, 64, "type uint64, expected uint32"},
    };
    for (size_t i = 0; i < 3; i++) {
        b = (struct bb){0};
        bb_hdr(&b, 3, 0, 1);
        bb_kv(&b, "general.alignment", aligns[i].t, aligns[i].v, aligns[i].t == GGUF_TYPE_UINT64 ? 8 : 4);
        expect_fail(&b, ERR_FORMAT, "key 'general.alignment'", aligns[i].msg, NULL);
        free(b.p);
    }
}

/* One tensor info variant, for the table below. */
struct tcase {
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t offset;
    unsigned at; /* offset the message must name */
    const char *msg;
};

static void test_corrupt_tensors(void **state)
{
    (void)state;
    static const struct tcase cases[] = {
        /* kv 'k' is 24..41; the tensor info starts at 41, n_dims at 56, ne at 60. */
        {0, {64}, GGML_TYPE_F32, 0, 56, "n_dims 0 is out of range"},
        {5, {64, 1, 1, 1}, GGML_TYPE_F32, 0, 56, "n_dims 5 is out of range"},
        {2, {64, 0}, GGML_TYPE_F32, 0, 68, "dimension 1 is 0"},
        {2, {(uint64_t)1 << 63, 1}, GGML_TYPE_F32, 0, 60, "dimension 0 is 9223372036854775808"},
        {3, {(uint64_t)1 << 32, (uint64_t)1 << 20, (uint64_t)1 << 20}, GGML_TYPE_F32, 0, 76,
         "element count overflows at dimension 2"},
        {1, {64}, 4, 0, 68, "unknown tensor type 4"},
        {1, {64}, 99, 0, 68, "unknown tensor type 99"},
        {1, {33}, GGML_TYPE_Q8_0, 0, 68, "row length 33 is not a multiple of the Q8_0 block size 32"},
        {1, {64}, GGML_TYPE_F32, 16, 72, "data offset 16 is not a multiple of the alignment 32"},
        {1, {128}, GGML_TYPE_F32, 0, 41, "data ends at byte 608, file has 352"},
        {1, {64}, GGML_TYPE_F32, (uint64_t)1 << 62, 41, "ends at byte 4611686018427388256"},
        {1, {64}, GGML_TYPE_F32, UINT64_MAX - 31, 41, "lie beyond the file"},
        {2, {(uint64_t)1 << 40, (uint64_t)1 << 20}, GGML_TYPE_Q6_K, 0, 41, "ends at byte 945755921747804256"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct tcase *c = &cases[i];
        struct bb b = {0};
        bb_hdr(&b, 3, 1, 1);
        bb_kv(&b, "k", GGUF_TYPE_UINT32, 7, 4);
        bb_tensor(&b, "blk.0.w", c->n_dims, c->ne, c->type, c->offset);
        bb_data(&b, 32, 256);
        char at[64];
        snprintf(at, sizeof at, "offset %u", c->at);
        expect_fail(&b, 0, "tensor 'blk.0.w' (", at, c->msg, NULL);
        free(b.p);
    }

    struct bb b = {0};
    bb_hdr(&b, 3, 2, 0);
    bb_tensor(&b, "same", 1, ne_64, GGML_TYPE_F32, 0);
    size_t second = b.len;
    bb_tensor(&b, "same", 1, ne_64, GGML_TYPE_F32, 256);
    bb_data(&b, 32, 512);
    char msg[80];
    snprintf(msg, sizeof msg, "duplicate tensor name 'same' at offset %zu", second);
    expect_fail(&b, ERR_FORMAT, msg, "first at offset 24", NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 2, 0);
    bb_tensor(&b, "a", 2, ne_64x2, GGML_TYPE_F32, 0);
    bb_tensor(&b, "b", 1, ne_64, GGML_TYPE_F32, 256); /* inside a's 512 bytes */
    bb_data(&b, 32, 1024);
    expect_fail(&b, ERR_FORMAT, "tensor 'b'", "overlaps tensor 'a'", NULL);
    free(b.p);

    b = (struct bb){0};
    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, "", 1, ne_64, GGML_TYPE_F32, 0);
    bb_data(&b, 32, 256);
    expect_fail(&b, ERR_FORMAT, "tensor 0", "empty tensor name", NULL);
    free(b.p);
}

/* A deterministic pseudo-random generator (tests must be reproducible). */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random byte mutations of a writer-made file: any outcome but a crash is fine,
 * and an opened file must be fully walkable. */
static void test_random_mutations(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/mut.gguf", tmpdir);
    write_sample(path, 32);
    size_t len = 0;
    uint8_t *orig = (uint8_t *)testutil_read_file(path, &len);
    assert_non_null(orig);
    uint8_t *buf = malloc(len);
    uint64_t seed = 0x9e3779b97f4a7c15u;
    int opened = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, orig, len);
        int flips = 1 + (int)(rng_next(&seed) % 4);
        for (int k = 0; k < flips; k++)
            buf[rng_next(&seed) % len] ^= (uint8_t)(1u << (rng_next(&seed) % 8));
        struct gguf *g;
        struct err e;
        if (gguf_open_memory(buf, len, "mut", &g, &e)) {
            assert_true(e.msg[0] != '\0');
            continue;
        }
        opened++;
        for (int64_t i = 0; i < gguf_n_kv(g); i++) {
            uint64_t n = 0;
            const char *s;
            size_t sl;
            int64_t v;
            double d;
            if (gguf_kv_array(g, i, NULL, &n))
                for (uint64_t j = 0; j < n; j++)
                    if (!gguf_arr_str(g, i, j, &s, &sl) && !gguf_arr_f64(g, i, j, &d))
                        fail_msg("array element unreadable");
            (void)gguf_kv_as_i64(g, i, &v);
        }
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
            const struct gguf_tensor *t = gguf_tensor(g, i);
            volatile uint8_t sum = 0;
            for (uint64_t b2 = 0; b2 < t->nbytes; b2++)
                sum ^= ((const uint8_t *)t->data)[b2];
        }
        gguf_close(g);
    }
    assert_true(opened > 0); /* flips inside tensor data keep the file valid */
    free(buf);
    free(orig);
}

/* ------------------------------------------------------------------------- */
/* Mutating a real model file                                                */

static uint8_t *find_bytes(uint8_t *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle));
}

static void test_corrupt_real_file(void **state)
{
    (void)state;
    const char *dir = testutil_testdata();
    if (!dir)
        skip();
    char path[4096];
    snprintf(path, sizeof path, "%s/models/tiny-llama-Q4_K_M.gguf", dir);
    size_t len = 0;
    uint8_t *orig = (uint8_t *)testutil_read_file(path, &len);
    assert_non_null(orig);
    struct gguf *g;
    struct err e;
    assert_int_equal(gguf_open_memory(orig, len, "bad.gguf", &g, &e), 0);
    uint64_t data_off = gguf_data_offset(g);
    gguf_close(g);

    /* Every cut in the first 4 KiB, then 300 cuts across the file. */
    for (size_t cut = 0; cut < 4096; cut++) {
        struct bb t = {orig, cut, cut};
        expect_fail(&t, 0, NULL);
    }
    for (size_t k = 1; k < 300; k++) {
        struct bb t = {orig, len / 300 * k, 0};
        expect_fail(&t, 0, NULL);
    }
    struct bb t = {orig, (size_t)data_off - 1, 0}; /* header intact, data missing */
    expect_fail(&t, ERR_FORMAT, "data ends at byte", NULL);

    uint8_t *buf = malloc(len);
    struct bb b = {buf, len, len};

    /* The token array's count made absurd. */
    memcpy(buf, orig, len);
    uint8_t *p = find_bytes(buf, len, "tokenizer.ggml.tokens");
    assert_non_null(p);
    p[21 + 4 + 4 + 7] = 0x40;
    expect_fail(&b, ERR_FORMAT, "key 'tokenizer.ggml.tokens'", "array count", NULL);

    /* A tensor's type made unknown: name, n_dims, ne..., type. */
    memcpy(buf, orig, len);
    p = find_bytes(buf, len, "blk.1.attn_q.weight");
    assert_non_null(p);
    uint32_t nd = p[19];
    p[19 + 4 + 8 * nd] = 77;
    expect_fail(&b, ERR_UNSUPPORTED, "tensor 'blk.1.attn_q.weight'", "unknown tensor type 77",
                NULL);

    /* A tensor's offset made misaligned. */
    memcpy(buf, orig, len);
    p = find_bytes(buf, len, "blk.1.attn_q.weight");
    p[19 + 4 + 8 * nd + 4] ^= 1;
    expect_fail(&b, ERR_FORMAT, "tensor 'blk.1.attn_q.weight'", "alignment 32", NULL);

    /* A key's value type made unknown. */
    memcpy(buf, orig, len);
    p = find_bytes(buf, len, "general.architecture");
    p[20] = 200;
    expect_fail(&b, ERR_FORMAT, "key 'general.architecture'", "unknown value type 200", NULL);

    /* A second tensor renamed to the first's name. */
    memcpy(buf, orig, len);
    p = find_bytes(buf, len, "blk.1.attn_q.weight");
    p[4] = '0';
    expect_fail(&b, ERR_FORMAT, "duplicate tensor name 'blk.0.attn_q.weight'", NULL);

    free(buf);
    free(orig);
}

static void test_type_table(void **state)
{
    (void)state;
    uint32_t be = 0, bb2 = 0;
    assert_true(gguf_type_size(GGML_TYPE_Q4_K, &be, &bb2));
    assert_int_equal(be, 256);
    assert_int_equal(bb2, 144);
    assert_true(gguf_type_size(GGML_TYPE_Q8_K, &be, &bb2));
    assert_int_equal(bb2, 292);
    assert_true(gguf_type_size(GGML_TYPE_BF16, &be, &bb2));
    assert_int_equal(bb2, 2);
    be = 5;
    assert_false(gguf_type_size((enum ggml_type)4, &be, &bb2));
    assert_false(gguf_type_size((enum ggml_type)-1, &be, &bb2));
    assert_int_equal(be, 5);
    assert_string_equal(gguf_type_name(GGML_TYPE_Q6_K), "Q6_K");
    assert_string_equal(gguf_type_name((enum ggml_type)1000), "?");
    assert_int_equal(gguf_type_from_name("q8_0"), GGML_TYPE_Q8_0);
    assert_int_equal(gguf_type_from_name("nope"), -1);
    assert_string_equal(gguf_value_type_name(GGUF_TYPE_FLOAT64), "float64");
    assert_string_equal(gguf_value_type_name(GGUF_TYPE_COUNT), "?");
}

static void test_open_errors(void **state)
{
    (void)state;
    struct gguf *g = (struct gguf *)1;
    struct err e;
    assert_int_equal(gguf_open("/nonexistent/x.gguf", &g, &e), ERR_IO);
    assert_null(g);
    assert_non_null(strstr(e.msg, "/nonexistent/x.gguf"));
    assert_int_equal(gguf_open(tmpdir, &g, &e), ERR_IO);
    assert_non_null(strstr(e.msg, "not a regular file"));
    gguf_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_vocab_files),
        cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_load_read),
        cmocka_unit_test(test_writer_failure_leaves_no_file),
        cmocka_unit_test(test_all_scalar_types_copy),
        cmocka_unit_test(test_corrupt_header),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_corrupt_strings_and_arrays),
        cmocka_unit_test(test_corrupt_values),
        cmocka_unit_test(test_corrupt_tensors),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_corrupt_real_file),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
