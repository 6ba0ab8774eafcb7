/* Unit tests for base/err. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "base/err.h"

static void test_set_returns_code_and_formats(void **state)
{
    (void)state;
    struct err e;
    assert_int_equal(err_set(&e, ERR_FORMAT, "%s: bad magic at offset %d", "m.gguf", 0),
                     ERR_FORMAT);
    assert_int_equal(e.code, ERR_FORMAT);
    assert_string_equal(e.msg, "m.gguf: bad magic at offset 0");
}

static void test_null_err_is_allowed(void **state)
{
    (void)state;
    assert_int_equal(err_set(NULL, ERR_IO, "x"), ERR_IO);
    err_clear(NULL);
}

static void test_errno_appends_strerror(void **state)
{
    (void)state;
    struct err e;
    err_errno(&e, ERR_IO, ENOENT, "open %s", "x.gguf");
    assert_non_null(strstr(e.msg, "open x.gguf: "));
    assert_non_null(strstr(e.msg, strerror(ENOENT)));
}

static void test_long_message_is_truncated_not_overflowed(void **state)
{
    (void)state;
    struct err e;
    char big[2 * ERR_MSG_MAX];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    err_set(&e, ERR_RANGE, "%s", big);
    assert_int_equal(strlen(e.msg), ERR_MSG_MAX - 1);
    assert_string_equal(err_name(ERR_RANGE), "range");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_returns_code_and_formats),
        cmocka_unit_test(test_null_err_is_allowed),
        cmocka_unit_test(test_errno_appends_strerror),
        cmocka_unit_test(test_long_message_is_truncated_not_overflowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
