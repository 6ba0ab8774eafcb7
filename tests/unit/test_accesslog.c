/* Unit tests for server/accesslog: the field order and values of a line, absent
 * values as "-", quoting that keeps a hostile value from forging fields or lines,
 * redaction of key-like text, and reopening after logrotate renamed the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/accesslog.h"
#include "testutil.h"

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/test_accesslog.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    accesslog_close();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct accesslog_entry sample_entry(void)
{
    return (struct accesslog_entry){
        .request_id = "chatcmpl-7f3a", .key_id = "alice", .protocol = "http",
        .method = "POST", .route = "/v1/chat/completions", .status = 200,
        .prompt_tokens = 12, .completion_tokens = 40, .cached_tokens = 8,
        .queue_ms = 3.4, .total_ms = 812.0, .finish_reason = "stop", .peer = "127.0.0.1"};
}

static void test_format(void **state)
{
    (void)state;
    struct accesslog_entry e = sample_entry();
    char buf[1024];
    int n = accesslog_format(&e, buf, sizeof buf);
    assert_int_equal(n, (int)strlen(buf));
    assert_string_equal(buf, "rid=chatcmpl-7f3a key=alice proto=http method=POST "
                             "route=/v1/chat/completions status=200 prompt_tokens=12 "
                             "completion_tokens=40 cached_tokens=8 queue_ms=3 total_ms=812 "
                             "finish=stop peer=127.0.0.1");
    struct accesslog_entry absent = {.status = 0, .prompt_tokens = -1, .completion_tokens = -1,
                                     .cached_tokens = -1, .queue_ms = -1, .total_ms = -1};
    accesslog_format(&absent, buf, sizeof buf);
    assert_string_equal(buf, "rid=- key=- proto=- method=- route=- status=- prompt_tokens=- "
                             "completion_tokens=- cached_tokens=- queue_ms=- total_ms=- "
                             "finish=- peer=-");
    /* hostile route: quoted and escaped, so no new field or line can appear */
    e.route = "/v1/x status=500\n\"evil\"\\";
    accesslog_format(&e, buf, sizeof buf);
    assert_non_null(strstr(buf, "route=\"/v1/x status=500\\x0a\\\"evil\\\"\\\\\" status=200"));
    assert_null(strchr(buf, '\n'));
    /* a small buffer: truncated, NUL-terminated, full length reported */
    char small[16];
    e = sample_entry();
    n = accesslog_format(&e, small, sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_true(n > (int)sizeof small);
}

static void test_file_redaction_and_reopen(void **state)
{
    (void)state;
    struct err err;
    assert_int_equal(accesslog_open(g_dir, &err), 0);
    char path[128], rotated[140];
    snprintf(path, sizeof path, "%s/access.log", g_dir);
    assert_string_equal(accesslog_path(), path);
    struct accesslog_entry e = sample_entry();
    accesslog_write(&e);
    e.route = "/v1/models?k=sk-0123456789abcdefABCDEF"; /* a key in a query string */
    e.key_id = "bob";
    accesslog_write(&e);

    snprintf(rotated, sizeof rotated, "%s.1", path);
    assert_int_equal(rename(path, rotated), 0);
    accesslog_request_reopen();
    e = sample_entry();
    e.request_id = "after-rotate";
    accesslog_write(&e);

    char *old = testutil_read_file(rotated, NULL), *cur = testutil_read_file(path, NULL);
    assert_non_null(old);
    assert_non_null(cur);
    regex_t re;
    assert_int_equal(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z rid=chatcmpl-7f3a "
                                  "key=alice proto=http .* total_ms=812 finish=stop "
                                  "peer=127.0.0.1\n", REG_EXTENDED | REG_NEWLINE), 0);
    assert_int_equal(regexec(&re, old, 0, NULL, 0), 0);
    regfree(&re);
    assert_null(strstr(old, "0123456789abcdef"));
    assert_non_null(strstr(old, "[REDACTED]"));
    assert_non_null(strstr(old, "key=bob"));
    assert_null(strstr(old, "after-rotate"));
    assert_non_null(strstr(cur, "rid=after-rotate"));
    free(old);
    free(cur);

    char bad[128];
    snprintf(bad, sizeof bad, "%s/missing-dir", g_dir);
    assert_int_equal(accesslog_open(bad, &err), ERR_IO);
    assert_non_null(strstr(err.msg, "missing-dir/access.log"));
    assert_string_equal(accesslog_path(), path); /* the open file stays in use */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_file_redaction_and_reopen),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
