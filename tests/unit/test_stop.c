/* Unit tests for engine/stop: stop strings over streamed text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "engine/stop.h"

/* The text the client would see, and whether/which stop matched. */
struct run {
    char out[4096];
    size_t len;
    int rc; /* last stop_feed result */
};

static void emit_into(struct run *r, const char *p, size_t n)
{
    assert_true(r->len + n < sizeof r->out);
    memcpy(r->out + r->len, p, n);
    r->len += n;
    r->out[r->len] = '\0';
}

static void feed(struct stop *m, struct run *r, const char *piece)
{
    const char *p;
    size_t n;
    r->rc = stop_feed(m, piece, strlen(piece), &p, &n);
    assert_true(r->rc == 0 || r->rc == 1);
    emit_into(r, p, n);
}

static void flush(struct stop *m, struct run *r)
{
    const char *p;
    size_t n;
    stop_flush(m, &p, &n);
    emit_into(r, p, n);
}

static struct stop *make(const char *const *strs, int n)
{
    struct stop *m = NULL;
    struct err e;
    assert_int_equal(stop_new(strs, n, &m, &e), 0);
    assert_non_null(m);
    return m;
}

static void test_no_stop_strings_emit_everything(void **state)
{
    (void)state;
    struct stop *m = make(NULL, 0);
    struct run r = {0};
    feed(m, &r, "Hello");
    assert_int_equal(r.len, 5);
    feed(m, &r, "");
    feed(m, &r, ", world");
    assert_string_equal(r.out, "Hello, world");
    assert_int_equal(stop_held(m), 0);
    assert_int_equal(stop_matched(m), -1);
    stop_free(m);
}

static void test_match_in_one_feed(void **state)
{
    (void)state;
    const char *stops[] = {"STOP"};
    struct stop *m = make(stops, 1);
    struct run r = {0};
    feed(m, &r, "Hello STOP world");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "Hello ");
    assert_int_equal(stop_matched(m), 0);
    feed(m, &r, "more"); /* after a match nothing more comes out */
    assert_int_equal(r.rc, 1);
    flush(m, &r);
    assert_string_equal(r.out, "Hello ");
    stop_free(m);
}

static void test_split_over_three_feeds(void **state)
{
    (void)state;
    const char *stops[] = {"</answer>", "<|end|>"};
    struct stop *m = make(stops, 2);
    struct run r = {0};
    feed(m, &r, "abc<|e");
    assert_string_equal(r.out, "abc"); /* "<|e" might start a stop string */
    assert_int_equal(stop_held(m), 3);
    feed(m, &r, "nd");
    assert_string_equal(r.out, "abc");
    assert_int_equal(stop_held(m), 5);
    feed(m, &r, "|>tail");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "abc");
    assert_int_equal(stop_matched(m), 1);
    stop_free(m);
}

static void test_false_start_is_released(void **state)
{
    (void)state;
    const char *stops[] = {"<|end|>"};
    struct stop *m = make(stops, 1);
    struct run r = {0};
    feed(m, &r, "x <|e");
    assert_string_equal(r.out, "x ");
    feed(m, &r, "nx and <");
    assert_string_equal(r.out, "x <|enx and ");
    assert_int_equal(r.rc, 0);
    feed(m, &r, "b");
    assert_string_equal(r.out, "x <|enx and <b");
    assert_int_equal(stop_held(m), 0);
    stop_free(m);
}

static void test_overlapping_prefixes(void **state)
{
    (void)state;
    const char *stops[] = {"ab"};
    struct stop *m = make(stops, 1);
    struct run r = {0};
    feed(m, &r, "a");
    feed(m, &r, "a");
    assert_string_equal(r.out, "a"); /* the second a may still start "ab" */
    feed(m, &r, "b");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "a");
    stop_free(m);

    m = make(stops, 1);
    memset(&r, 0, sizeof r);
    feed(m, &r, "aab");
    assert_string_equal(r.out, "a");
    stop_free(m);

    const char *stops2[] = {"aab"}; /* self-overlap: "aaab" must match at 1 */
    m = make(stops2, 1);
    memset(&r, 0, sizeof r);
    feed(m, &r, "a");
    feed(m, &r, "a");
    feed(m, &r, "a");
    assert_string_equal(r.out, "a");
    feed(m, &r, "b");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "a");
    stop_free(m);
}

static void test_first_completed_match_wins(void **state)
{
    (void)state;
    const char *stops[] = {"world", "lo w"};
    struct stop *m = make(stops, 2);
    struct run r = {0};
    feed(m, &r, "hello world");
    assert_string_equal(r.out, "hel");
    assert_int_equal(stop_matched(m), 1);
    stop_free(m);

    /* "bc" is complete before "abcd", whether the text comes whole or in pieces. */
    const char *stops2[] = {"abcd", "bc", "c"};
    for (int split = 0; split < 2; split++) {
        m = make(stops2, 2);
        memset(&r, 0, sizeof r);
        if (split) {
            feed(m, &r, "xab");
            feed(m, &r, "cd");
        } else {
            feed(m, &r, "xabcd");
        }
        assert_string_equal(r.out, "xa");
        assert_int_equal(stop_matched(m), 1);
        stop_free(m);
    }
    /* Two ending at the same byte: the longer one. */
    m = make(stops2, 3);
    memset(&r, 0, sizeof r);
    feed(m, &r, "xabcd");
    assert_string_equal(r.out, "xa");
    assert_int_equal(stop_matched(m), 1);
    stop_free(m);
}

static void test_multibyte_stop_strings(void **state)
{
    (void)state;
    const char *stops[] = {"。", "\xF0\x9F\x9B\x91" /* U+1F6D1 stop sign */};
    struct stop *m = make(stops, 2);
    struct run r = {0};
    feed(m, &r, "你");
    feed(m, &r, "好");
    feed(m, &r, "、"); /* shares the lead bytes E3 80 with 。 but is not it */
    assert_string_equal(r.out, "你好、");
    feed(m, &r, "\xF0\x9F\x99\x82"); /* U+1F642 shares F0 9F with the stop sign */
    assert_string_equal(r.out, "你好、\xF0\x9F\x99\x82");
    assert_int_equal(stop_held(m), 0);
    feed(m, &r, "世界。再见");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "你好、\xF0\x9F\x99\x82世界");
    stop_free(m);

    /* The emoji split byte by byte over four feeds. */
    m = make(stops, 2);
    memset(&r, 0, sizeof r);
    feed(m, &r, "ok \xF0");
    feed(m, &r, "\x9F");
    feed(m, &r, "\x9B");
    assert_string_equal(r.out, "ok ");
    assert_int_equal(stop_held(m), 3);
    feed(m, &r, "\x91!");
    assert_int_equal(r.rc, 1);
    assert_int_equal(stop_matched(m), 1);
    assert_string_equal(r.out, "ok ");
    stop_free(m);
}

static void test_flush_releases_held_bytes(void **state)
{
    (void)state;
    const char *stops[] = {"END"};
    struct stop *m = make(stops, 1);
    struct run r = {0};
    feed(m, &r, "the EN");
    assert_string_equal(r.out, "the ");
    assert_int_equal(stop_held(m), 2);
    flush(m, &r);
    assert_string_equal(r.out, "the EN");
    assert_int_equal(stop_held(m), 0);
    flush(m, &r); /* twice is harmless */
    assert_string_equal(r.out, "the EN");
    stop_free(m);
}

static void test_validation(void **state)
{
    (void)state;
    struct stop *m = NULL;
    struct err e;
    const char *empty[] = {"ok", ""};
    assert_int_equal(stop_new(empty, 2, &m, &e), ERR_RANGE);
    assert_string_equal(e.msg, "stop[1]: empty string");
    assert_null(m);
    char big[STOP_MAX_LEN + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *longs[] = {big};
    assert_int_equal(stop_new(longs, 1, &m, &e), ERR_RANGE);
    assert_non_null(strstr(e.msg, "stop[0]"));
    const char *many[STOP_MAX_STRINGS + 1];
    for (int i = 0; i <= STOP_MAX_STRINGS; i++)
        many[i] = "x";
    assert_int_equal(stop_new(many, STOP_MAX_STRINGS + 1, &m, &e), ERR_RANGE);
    assert_int_equal(stop_new(many, -1, &m, NULL), ERR_RANGE);
    big[STOP_MAX_LEN] = '\0'; /* exactly the limit is fine */
    assert_int_equal(stop_new(longs, 1, &m, NULL), 0);
    stop_free(m);
    stop_free(NULL);
}

/* Random texts over a small alphabet, random stop strings, random feed sizes: the
 * streamed output always equals the text up to the earliest stop string (or all of
 * it after the flush), and the held bytes never reach a whole stop string. */
static uint32_t lcg(uint32_t *x)
{
    *x = *x * 1664525u + 1013904223u;
    return *x >> 8;
}

static void test_random_against_reference(void **state)
{
    (void)state;
    uint32_t x = 12345;
    for (int round = 0; round < 3000; round++) {
        char text[200], sbuf[3][8];
        const char *stops[3];
        int n_text = (int)(lcg(&x) % 120), n_stop = (int)(lcg(&x) % 4);
        for (int i = 0; i < n_text; i++)
            text[i] = (char)('a' + lcg(&x) % 3);
        text[n_text] = '\0';
        for (int k = 0; k < n_stop; k++) {
            int len = 1 + (int)(lcg(&x) % 5);
            for (int i = 0; i < len; i++)
                sbuf[k][i] = (char)('a' + lcg(&x) % 3);
            sbuf[k][len] = '\0';
            stops[k] = sbuf[k];
        }
        /* Reference: the stop string whose first occurrence ends first; on a tie
         * the one that starts first. */
        size_t want = (size_t)n_text, want_end = SIZE_MAX;
        for (int k = 0; k < n_stop; k++) {
            const char *hit = strstr(text, stops[k]);
            if (!hit)
                continue;
            size_t start = (size_t)(hit - text), end = start + strlen(stops[k]);
            if (end < want_end || (end == want_end && start < want)) {
                want = start;
                want_end = end;
            }
        }
        struct stop *m = make(stops, n_stop);
        struct run r = {0};
        for (int pos = 0; pos < n_text && r.rc == 0;) {
            int step = (int)(lcg(&x) % 6);
            step = step > n_text - pos ? n_text - pos : step;
            const char *p;
            size_t n;
            r.rc = stop_feed(m, text + pos, (size_t)step, &p, &n);
            emit_into(&r, p, n);
            pos += step;
            assert_true(stop_held(m) < 5);
        }
        flush(m, &r);
        assert_int_equal(r.len, want);
        assert_memory_equal(r.out, text, want);
        assert_int_equal(stop_matched(m) >= 0, want < (size_t)n_text);
        stop_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_stop_strings_emit_everything),
        cmocka_unit_test(test_match_in_one_feed),
        cmocka_unit_test(test_split_over_three_feeds),
        cmocka_unit_test(test_false_start_is_released),
        cmocka_unit_test(test_overlapping_prefixes),
        cmocka_unit_test(test_first_completed_match_wins),
        cmocka_unit_test(test_multibyte_stop_strings),
        cmocka_unit_test(test_flush_releases_held_bytes),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_random_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
