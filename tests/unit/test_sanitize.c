/* Unit tests for ops/sanitize: what each pattern redacts, that redaction keeps the
 * length and the surrounding text, and that a second run changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ops/sanitize.h"

static int setup(void **state)
{
    struct sanitizer *s;
    if (sanitize_new(&s, NULL) != 0)
        return -1;
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    sanitize_free(*state);
    return 0;
}

/* Sanitizes in, expects out (same length) and n secrets. */
static void expect(struct sanitizer *s, const char *in, const char *out, uint64_t n)
{
    char *buf = strdup(in);
    struct sanitize_stats st;
    memset(&st, 0, sizeof st);
    assert_int_equal(sanitize_buffer(s, buf, strlen(buf), true, &st, NULL), 0);
    assert_string_equal(buf, out);
    assert_int_equal(strlen(buf), strlen(in));
    assert_int_equal(st.total, n);
    memset(&st, 0, sizeof st); /* idempotent: nothing left to find */
    assert_int_equal(sanitize_buffer(s, buf, strlen(buf), true, &st, NULL), 0);
    assert_int_equal(st.total, 0);
    assert_string_equal(buf, out);
    free(buf);
}

static void test_sk_key(void **state)
{
    expect(*state, "key sk-abcdef0123456789XYZ used", "key sk-[REDACTED]********* used", 1);
    expect(*state, "task-abcdefghijkl and sk-short", "task-abcdefghijkl and sk-short", 0);
}

static void test_bearer_and_basic(void **state)
{
    expect(*state, "Authorization: Bearer eyJhbGciOi.J9x\n",
           "Authorization: Bearer [REDACTED]****\n", 1);
    expect(*state, "authorization: Basic dXNlcjpwYXNz", "authorization: Basic [REDACTED]**", 1);
}

static void test_params(void **state)
{
    expect(*state, "GET /v1?api_key=abc123&x=1", "GET /v1?api_key=******&x=1", 1);
    expect(*state, "login password=hunter2 ok", "login password=******* ok", 1);
    expect(*state, "access_token=0123456789abcdef", "access_token=[REDACTED]******", 1);
}

static void test_json_fields(void **state)
{
    expect(*state, "{\"user\":\"bob\",\"password\": \"se\\\"cret\"}",
           "{\"user\":\"bob\",\"password\": \"********\"}", 1);
    expect(*state, "{\"api_key\":\"k-1234567890\"}", "{\"api_key\":\"[REDACTED]**\"}", 1);
}

static void test_seed_label_and_url(void **state)
{
    expect(*state, "API_KEY: abcdef123", "API_KEY: *********", 1);
    expect(*state, "cache redis://app:s3cr3tpw@db:6379/0", "cache redis://app:********@db:6379/0",
           1);
}

static void test_plain_text_untouched(void **state)
{
    const char *t = "2026-11-28T10:00:00Z INFO engine: request 7 done tokens=42 key-id=ab12\n";
    expect(*state, t, t, 0);
}

static void test_check_only_changes_nothing(void **state)
{
    char buf[] = "Bearer abcdefghijkl";
    struct sanitize_stats st;
    memset(&st, 0, sizeof st);
    assert_int_equal(sanitize_buffer(*state, buf, strlen(buf), false, &st, NULL), 0);
    assert_int_equal(st.matches[SANITIZE_BEARER], 1);
    assert_string_equal(buf, "Bearer abcdefghijkl");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sk_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bearer_and_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed_label_and_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_text_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_only_changes_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
