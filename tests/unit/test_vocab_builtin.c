/* Tests for model/vocab_builtin: the keys it writes load in our tokenizer, the merges
 * apply, special tokens are recognised only when asked, every byte round-trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "model/gguf.h"
#include "model/tokenizer.h"
#include "model/vocab_builtin.h"

struct fixture {
    char path[32];
    struct gguf *g;
    struct tokenizer *t;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    memcpy(f->path, "/tmp/test_vocab_XXXXXX", 23);
    int fd = mkstemp(f->path);
    if (fd < 0)
        return -1;
    close(fd);
    struct gguf_writer *w = gguf_writer_new(0);
    struct err e;
    int rc = vocab_builtin_write(w, &e);
    if (rc == 0)
        rc = gguf_writer_write(w, f->path, NULL, NULL, &e);
    gguf_writer_free(w);
    if (rc == 0)
        rc = gguf_open(f->path, &f->g, &e);
    if (rc == 0)
        rc = tokenizer_load(f->g, &f->t, &e);
    if (rc != 0)
        print_error("setup: %s\n", e.msg);
    *state = f;
    return rc;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tokenizer_free(f->t);
    gguf_close(f->g);
    unlink(f->path);
    free(f);
    return 0;
}

static void test_counts_and_specials(void **state)
{
    struct fixture *f = *state;
    const struct tokenizer *t = f->t;
    assert_int_equal(tokenizer_n_vocab(t), (int32_t)vocab_builtin_n_tokens());
    int32_t bos = tokenizer_find(t, "<｜begin▁of▁sentence｜>");
    int32_t eos = tokenizer_find(t, "<｜end▁of▁sentence｜>");
    assert_int_equal(tokenizer_bos(t), bos);
    assert_int_equal(tokenizer_eos(t), eos);
    assert_true(tokenizer_add_bos(t));
    assert_true(tokenizer_is_eog(t, eos));
    assert_int_equal(tokenizer_token_type(t, bos), TOKEN_TYPE_CONTROL);
    assert_int_equal(tokenizer_token_type(t, tokenizer_find(t, "<｜User｜>")), TOKEN_TYPE_CONTROL);
    assert_int_equal(tokenizer_token_type(t, tokenizer_find(t, "<think>")),
                     TOKEN_TYPE_USER_DEFINED);
    assert_string_equal(tokenizer_pre(t), "deepseek-r1-qwen");
    assert_non_null(strstr(tokenizer_chat_template(t), "<｜Assistant｜><think>"));
    assert_int_equal(tokenizer_find(t, "!"), 0);   /* GPT-2 byte order */
    assert_int_equal(tokenizer_find(t, "Ġ"), 220); /* the space byte, as in GPT-2 */
}

static void test_merges_apply(void **state)
{
    struct fixture *f = *state;
    int32_t *ids;
    size_t n;
    const char text[] = "and the thing";
    assert_int_equal(tokenizer_encode(f->t, text, strlen(text), 0, &ids, &n, NULL), 0);
    /* "and" -> a n d (no merge "an d" without the space), " the" -> Ġthe, " thing" ->
     * Ġt h ing */
    int32_t want[] = {tokenizer_find(f->t, "an"), tokenizer_find(f->t, "d"),
                      tokenizer_find(f->t, "Ġthe"), tokenizer_find(f->t, "Ġt"),
                      tokenizer_find(f->t, "h"), tokenizer_find(f->t, "ing")};
    assert_int_equal(n, 6);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
}

static void test_special_parsing(void **state)
{
    struct fixture *f = *state;
    const char text[] = "<｜User｜>hi";
    int32_t *ids;
    size_t n;
    assert_int_equal(tokenizer_encode(f->t, text, strlen(text),
                                      TOKENIZER_ADD_BOS | TOKENIZER_PARSE_SPECIAL, &ids, &n,
                                      NULL), 0);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], tokenizer_bos(f->t));
    assert_int_equal(ids[1], tokenizer_find(f->t, "<｜User｜>"));
    free(ids);
    assert_int_equal(tokenizer_encode(f->t, text, strlen(text), 0, &ids, &n, NULL), 0);
    assert_true(n > 4); /* as plain text: bytes */
    free(ids);
}

static void test_all_bytes_round_trip(void **state)
{
    struct fixture *f = *state;
    char text[256];
    for (int i = 0; i < 256; i++)
        text[i] = (char)(i == 0 ? 1 : i);
    int32_t *ids;
    size_t n;
    assert_int_equal(tokenizer_encode(f->t, text, sizeof text, 0, &ids, &n, NULL), 0);
    char *back;
    size_t len;
    assert_int_equal(tokenizer_decode(f->t, ids, n, &back, &len, NULL), 0);
    assert_int_equal(len, sizeof text);
    assert_memory_equal(back, text, sizeof text);
    free(back);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_specials),
        cmocka_unit_test(test_merges_apply),
        cmocka_unit_test(test_special_parsing),
        cmocka_unit_test(test_all_bytes_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
