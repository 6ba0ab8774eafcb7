/* Unit tests for base/log: line format, levels, secret redaction, escaping,
 * truncation, the ./logs fallback, reopen after rotation, threads. Each test opens
 * its own log in a fresh temporary directory and reads the file back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_MODULE "test"
#include "base/log.h"
#include "testutil.h"

struct fixture {
    char dir[64];
    char path[PATH_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/test_log.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    struct err err;
    if (log_open(f->dir, "t.log", LOG_LEVEL_DEBUG, false, &err) != 0)
        return -1;
    snprintf(f->path, sizeof f->path, "%s", log_path());
    *state = f;
    return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    chmod(p, 0700);
    return remove(p);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    log_close();
    log_clear_secrets();
    log_set_request_id(NULL);
    log_set_level(LOG_LEVEL_INFO);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* dst = a/b, failing the test rather than truncating. */
static void join(char *dst, size_t size, const char *a, const char *b)
{
    assert_true(snprintf(dst, size, "%s/%s", a, b) < (int)size);
}

static char *read_log(const struct fixture *f)
{
    char *text = testutil_read_file(f->path, NULL);
    assert_non_null(text);
    return text;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static bool matches(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE | REG_NOSUB), 0);
    bool ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

#define TS "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

/* ---- format and levels ---- */

static void test_line_format(void **state)
{
    struct fixture *f = *state;
    time_t before = time(NULL);
    log_write(LOG_LEVEL_INFO, "gguf", "opened %s (%d tensors)", "m.gguf", 291);
    log_set_request_id("req-7f3a");
    log_write(LOG_LEVEL_WARN, "http", "client gone");
    log_set_request_id("a b\nc\"d");
    LOG(ERROR, "sanitised");
    log_set_request_id(NULL);
    LOG(DEBUG, "no rid");
    char *text = read_log(f);
    assert_true(matches(text, "^" TS " \\[INFO\\] gguf: opened m\\.gguf \\(291 tensors\\)$"));
    assert_true(matches(text, "^" TS " \\[WARN\\] http rid=req-7f3a: client gone$"));
    assert_true(matches(text, "^" TS " \\[ERROR\\] test rid=a_b_c_d: sanitised$"));
    assert_true(matches(text, "^" TS " \\[DEBUG\\] test: no rid$"));
    assert_int_equal(count(text, "\n"), 4);
    /* The timestamp is UTC and now. */
    struct tm tm = {0};
    assert_non_null(strptime(text, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm);
    assert_true(t >= before - 1 && t <= time(NULL) + 1);
    free(text);
}

static int evaluated;
static int side_effect(void)
{
    return ++evaluated;
}

static void test_level_filter(void **state)
{
    struct fixture *f = *state;
    log_set_level(LOG_LEVEL_WARN);
    evaluated = 0;
    LOG(DEBUG, "debug %d", side_effect());
    LOG(INFO, "info %d", side_effect());
    assert_int_equal(evaluated, 0); /* arguments of a disabled level are not evaluated */
    LOG(WARN, "warn line");
    LOG(ERROR, "error line");
    enum log_level lv = LOG_LEVEL_INFO;
    LOG_AT(lv, "runtime info");
    lv = LOG_LEVEL_ERROR;
    LOG_AT(lv, "runtime error");
    char *text = read_log(f);
    assert_null(strstr(text, "debug"));
    assert_null(strstr(text, "info"));
    assert_non_null(strstr(text, "[WARN] test: warn line"));
    assert_non_null(strstr(text, "[ERROR] test: error line"));
    assert_non_null(strstr(text, "[ERROR] test: runtime error"));
    assert_int_equal(count(text, "\n"), 3);
    assert_true(log_enabled(LOG_LEVEL_ERROR));
    assert_false(log_enabled(LOG_LEVEL_INFO));
    free(text);

    for (int i = LOG_LEVEL_ERROR; i <= LOG_LEVEL_DEBUG; i++) {
        enum log_level back;
        assert_int_equal(log_level_parse(log_level_name((enum log_level)i), &back), 0);
        assert_int_equal(back, i);
    }
    enum log_level back;
    assert_int_equal(log_level_parse("WARNING", &back), 0);
    assert_int_equal(back, LOG_LEVEL_WARN);
    assert_int_equal(log_level_parse("loud", &back), ERR_INVALID);
}

/* ---- secrets ---- */

static const char *const keys[] = {"sk-supersecret123", "k3y_ALPHA.0042xyz", "adm!n#S3cret"};
#define N_KEYS (sizeof keys / sizeof keys[0])

/* No key, nor its first 5 bytes, appears anywhere in text. */
static void assert_no_key(const char *text)
{
    for (size_t k = 0; k < N_KEYS; k++) {
        char prefix[6];
        snprintf(prefix, sizeof prefix, "%s", keys[k]);
        if (strstr(text, keys[k]) || strstr(text, prefix))
            fail_msg("key %s (or its prefix) leaked into the log", keys[k]);
    }
}

static void test_registered_secrets_never_written(void **state)
{
    struct fixture *f = *state;
    for (size_t k = 0; k < N_KEYS; k++) {
        assert_int_equal(log_register_secret(keys[k], strlen(keys[k])), 0);
        assert_int_equal(log_register_secret(keys[k], strlen(keys[k])), 0); /* dup: ignored */
    }
    size_t lines = 0;
    for (size_t k = 0; k < N_KEYS; k++) {
        const char *key = keys[k];
        int half = (int)strlen(key) / 2;
        LOG(INFO, "%s", key);                                 /* alone */
        LOG(INFO, "%s at the start", key);                    /* line start */
        LOG(INFO, "at the end %s", key);                      /* line end */
        LOG(INFO, "embedded:xx%syy", key);                    /* glued to text */
        LOG(INFO, "split %.*s%s here", half, key, key + half); /* across two args */
        LOG(INFO, "twice %s%s and %s", key, key, key);        /* repeated */
        LOG(INFO, "auth=Bearer%%20%s; key=\"%s\"\n%s", key, key, key);
        log_set_request_id(key);
        LOG(WARN, "key as request id");
        log_set_request_id(NULL);
        lines += 8;
        /* In long lines, the key before, across and after the truncation point. */
        char pad[LOG_LINE_MAX + 200];
        for (size_t len = LOG_LINE_MAX - 120; len < LOG_LINE_MAX + 40; len += 3) {
            memset(pad, 'x', len);
            pad[len] = '\0';
            LOG(INFO, "%s%s tail", pad, key);
            lines++;
        }
        memset(pad, 'y', sizeof pad - 1);
        pad[sizeof pad - 1] = '\0';
        LOG(INFO, "%s%s%s", key, pad, key);
        lines++;
    }
    char *text = read_log(f);
    assert_no_key(text);
    assert_true(count(text, "[REDACTED]") >= 8 * N_KEYS);
    assert_int_equal(count(text, "\n"), lines); /* one line per call, none forged */
    assert_non_null(strstr(text, "twice [REDACTED] and [REDACTED]"));
    assert_non_null(strstr(text, "split [REDACTED] here"));
    free(text);
}

static void test_generic_patterns(void **state)
{
    struct fixture *f = *state;
    LOG(INFO, "Authorization: Bearer abc.DEF-123_xyz~ end");
    LOG(INFO, "header authorization: bearer   lowercase-token");
    LOG(INFO, "openai key sk-proj-ABCdef_123456 used");
    LOG(INFO, "short sk-abc and disk-usage-is-fine-today");
    LOG(INFO, "cache redis://user:hunter2pw@db:6379/0 up");
    char *text = read_log(f);
    assert_non_null(strstr(text, "Authorization: Bearer [REDACTED] end"));
    assert_non_null(strstr(text, "bearer   [REDACTED]"));
    assert_non_null(strstr(text, "openai key [REDACTED] used"));
    assert_non_null(strstr(text, "short sk-abc and disk-usage-is-fine-today"));
    assert_non_null(strstr(text, "redis://user:[REDACTED]@db:6379/0 up"));
    assert_null(strstr(text, "hunter2pw"));
    assert_null(strstr(text, "lowercase-token"));
    free(text);

    log_register_secret("s3cr3t", 6);
    char *r = log_redact("a s3cr3t, Bearer tok and s3cr3ts3cr3t.");
    assert_string_equal(r, "a [REDACTED], Bearer [REDACTED] and [REDACTED].");
    free(r);
}

/* ---- one line, bounded ---- */

static void test_newlines_escaped(void **state)
{
    struct fixture *f = *state;
    LOG(INFO, "user said: hi\n2026-01-01T00:00:00.000Z [ERROR] auth: forged\r\x01\x7f end");
    char *text = read_log(f);
    assert_int_equal(count(text, "\n"), 1);
    assert_non_null(strstr(text, "hi\\n2026-01-01T00:00:00.000Z [ERROR] auth: forged\\r\\x01\\x7f end\n"));
    free(text);
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = s[i] < 0x80 ? 1 : s[i] >= 0xF0 ? 4 : s[i] >= 0xE0 ? 3 : s[i] >= 0xC0 ? 2 : 0;
        if (len == 0 || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

static void test_long_lines_truncated_cleanly(void **state)
{
    struct fixture *f = *state;
    char *big = malloc(20000);
    memset(big, 'a', 19999);
    big[19999] = '\0';
    LOG(INFO, "%s", big);
    /* Two- and three-byte characters at every alignment against the cut. */
    for (int shift = 0; shift < 3; shift++) {
        size_t n = 0;
        for (int i = 0; i < shift; i++)
            big[n++] = 'b';
        while (n + 5 < 19999) {
            memcpy(big + n, "\xc3\xa9\xe2\x82\xac", 5); /* é€ */
            n += 5;
        }
        big[n] = '\0';
        LOG(INFO, "%s", big);
    }
    free(big);
    size_t len;
    char *text = testutil_read_file(f->path, &len);
    assert_int_equal(count(text, "\n"), 4);
    assert_int_equal(count(text, " [truncated]\n"), 4);
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        assert_true((size_t)(nl - line) + 1 <= LOG_LINE_MAX);
        assert_true(valid_utf8((const unsigned char *)line, (size_t)(nl - line)));
    }
    free(text);
}

/* ---- files ---- */

static void test_fallback_to_cwd_logs(void **state)
{
    struct fixture *f = *state;
    char blocker[PATH_MAX], bad_dir[PATH_MAX], cwd[PATH_MAX], old_cwd[PATH_MAX], want[PATH_MAX];
    join(blocker, sizeof blocker, f->dir, "regular-file");
    join(bad_dir, sizeof bad_dir, blocker, "sub");
    join(cwd, sizeof cwd, f->dir, "cwd");
    FILE *b = fopen(blocker, "w");
    assert_non_null(b);
    fclose(b);
    assert_int_equal(mkdir(cwd, 0700), 0);
    assert_non_null(getcwd(old_cwd, sizeof old_cwd));
    assert_int_equal(chdir(cwd), 0);

    struct err err;
    int rc = log_open(bad_dir, "deepseek.log", LOG_LEVEL_INFO, false, &err);
    LOG(INFO, "after fallback");
    assert_int_equal(chdir(old_cwd), 0);
    assert_int_equal(rc, 0);
    char real[PATH_MAX];
    join(want, sizeof want, realpath(cwd, real) ? real : cwd, "logs");
    assert_string_equal(log_dir_used(), want);
    join(f->path, sizeof f->path, want, "deepseek.log");
    assert_string_equal(log_path(), f->path);
    char *text = read_log(f);
    assert_int_equal(count(text, "not writable"), 1);
    assert_int_equal(count(text, "\n"), 2);
    assert_true(matches(text, "^" TS " \\[WARN\\] log: log directory .*/regular-file/sub is not "
                              "writable \\(Not a directory\\); logging to .*/cwd/logs/deepseek\\.log instead$"));
    assert_non_null(strstr(text, "[INFO] test: after fallback"));
    free(text);

    /* When ./logs cannot be made either, the error names both places. */
    assert_int_equal(chdir(f->dir), 0);
    rename("cwd", "logs-was-here");
    b = fopen("logs", "w"); /* a file named logs blocks the fallback */
    fclose(b);
    rc = log_open(bad_dir, "deepseek.log", LOG_LEVEL_INFO, false, &err);
    assert_int_equal(chdir(old_cwd), 0);
    assert_int_equal(rc, ERR_IO);
    assert_non_null(strstr(err.msg, "regular-file/sub"));
    assert_non_null(strstr(err.msg, "/logs"));
    assert_string_equal(log_dir_used(), "");
}

static void test_reopen_after_rename(void **state)
{
    struct fixture *f = *state;
    char rotated[PATH_MAX];
    assert_true(snprintf(rotated, sizeof rotated, "%s.1", f->path) < (int)sizeof rotated);
    for (int i = 1; i <= 40; i++)
        LOG(INFO, "line %d", i);
    assert_int_equal(rename(f->path, rotated), 0);
    for (int i = 41; i <= 50; i++) /* before the signal: still the renamed file */
        LOG(INFO, "line %d", i);
    log_request_reopen();
    for (int i = 51; i <= 100; i++)
        LOG(INFO, "line %d", i);

    char *old_text = testutil_read_file(rotated, NULL), *new_text = read_log(f);
    assert_non_null(old_text);
    assert_int_equal(count(old_text, "\n"), 50);
    assert_int_equal(count(new_text, "\n"), 50);
    assert_non_null(strstr(old_text, "line 1\n"));
    assert_non_null(strstr(old_text, "line 50\n"));
    assert_non_null(strstr(new_text, "line 51\n"));
    assert_non_null(strstr(new_text, "line 100\n"));
    free(old_text);
    free(new_text);

    /* The same through SIGHUP, as logrotate's postrotate does it. */
    struct err err;
    assert_int_equal(log_install_sighup(&err), 0);
    assert_int_equal(rename(f->path, rotated), 0);
    raise(SIGHUP);
    LOG(INFO, "after sighup");
    new_text = read_log(f);
    assert_int_equal(count(new_text, "\n"), 1);
    assert_non_null(strstr(new_text, "after sighup"));
    free(new_text);
    signal(SIGHUP, SIG_DFL);

    /* An explicit reopen works too. */
    assert_int_equal(rename(f->path, rotated), 0);
    assert_int_equal(log_reopen(&err), 0);
    LOG(INFO, "after log_reopen");
    new_text = read_log(f);
    assert_int_equal(count(new_text, "\n"), 1);
    free(new_text);
}

static void test_stderr_without_file(void **state)
{
    struct fixture *f = *state;
    char capture[PATH_MAX];
    join(capture, sizeof capture, f->dir, "stderr.txt");
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);

    log_close();
    LOG(WARN, "to stderr only");
    struct err err;
    assert_int_equal(log_open(f->dir, "t.log", LOG_LEVEL_INFO, true, &err), 0);
    LOG(INFO, "to both");
    assert_int_equal(log_open(f->dir, "a/b", LOG_LEVEL_INFO, false, &err), ERR_INVALID);

    dup2(saved, STDERR_FILENO);
    close(saved);
    char *err_text = testutil_read_file(capture, NULL), *file_text = read_log(f);
    assert_non_null(strstr(err_text, "[WARN] test: to stderr only\n"));
    assert_non_null(strstr(err_text, "[INFO] test: to both\n"));
    assert_null(strstr(file_text, "to stderr only"));
    assert_non_null(strstr(file_text, "[INFO] test: to both\n"));
    free(err_text);
    free(file_text);
}

static void test_errno_preserved(void **state)
{
    (void)state;
    errno = ENOENT;
    LOG(INFO, "errno stays");
    assert_int_equal(errno, ENOENT);
}

/* ---- threads ---- */

#define N_THREADS 8
#define N_LINES 300

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    char req[16];
    snprintf(req, sizeof req, "r%d", t);
    log_set_request_id(req);
    for (int i = 0; i < N_LINES; i++)
        LOG(INFO, "thread %d line %d %.*s|", t, i, (i * 7 + t * 13) % 900,
            "................................................................................"
            "................................................................................"
            "................................................................................"
            "................................................................................"
            "................................................................................"
            "................................................................................"
            "................................................................................"
            "................................................................................"
            "................................................................................"
            "................................................................................"
            "................................................................................"
            "................................................................................");
    return NULL;
}

static void test_threads_never_interleave(void **state)
{
    struct fixture *f = *state;
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t), 0);
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
    char *text = read_log(f);
    assert_int_equal(count(text, "\n"), N_THREADS * N_LINES);
    int per_thread[N_THREADS] = {0};
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        int t, i;
        char *body = strstr(line, ": thread ");
        assert_non_null(body);
        assert_int_equal(sscanf(body, ": thread %d line %d", &t, &i), 2);
        assert_true(t >= 0 && t < N_THREADS);
        char rid[16];
        snprintf(rid, sizeof rid, " rid=r%d:", t);
        assert_non_null(strstr(line, rid)); /* the request id is per thread */
        assert_int_equal(nl[-1], '|'); /* the whole line arrived, in one piece */
        int dots = 0;
        while (nl[-2 - dots] == '.')
            dots++;
        assert_int_equal(dots, (i * 7 + t * 13) % 900);
        per_thread[t]++;
    }
    for (int t = 0; t < N_THREADS; t++)
        assert_int_equal(per_thread[t], N_LINES);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registered_secrets_never_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generic_patterns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newlines_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_lines_truncated_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_to_cwd_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_without_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errno_preserved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_never_interleave, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
