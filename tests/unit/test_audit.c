/* Unit tests for ops/audit: the chain format, append across rotation, and that
 * verification finds each kind of tampering at the right record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops/audit.h"
#include "testutil.h"

struct fx {
    char dir[64];
    char path[128];
    struct audit *a;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/test_audit.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, AUDIT_FILE);
    struct audit_operator op;
    char *envp[] = {"PATH=/bin", "SUDO_USER=alice", NULL};
    audit_operator_detect(&op, envp);
    if (audit_open(f->dir, &op, &f->a, NULL) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    audit_free(f->a);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void append_n(struct fx *f, int n)
{
    for (int i = 0; i < n; i++) {
        char target[32];
        snprintf(target, sizeof target, "/models/m%d.gguf", i);
        struct audit_record r = {.action = "wipe", .phase = "intent", .target = target,
                                 .size = 100 + i, .passes = 4, .result = "pending"};
        int64_t seq;
        assert_int_equal(audit_append(f->a, &r, &seq, NULL), 0);
    }
}

static void verify_file(const char *path, struct audit_verify *v)
{
    char *files[] = {(char *)path};
    assert_int_equal(audit_verify_files(files, 1, false, v, NULL), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_clean_chain_verifies(void **state)
{
    struct fx *f = *state;
    append_n(f, 4);
    struct audit_verify v;
    verify_file(f->path, &v);
    assert_false(v.broken);
    assert_int_equal(v.records, 4);
    assert_int_equal(v.head_seq, 4);
    char *text = testutil_read_file(f->path, NULL);
    assert_non_null(strstr(text, "\"sudo_user\":\"alice\""));
    assert_non_null(strstr(text, "\"prev_hash\":\"0000000000"));
    free(text);
}

static void test_line_check_recomputes_hash(void **state)
{
    (void)state;
    /* body {"prev_hash":"0..0","seq":1} hashed by hand in the test below */
    char body[200], line[300], h[AUDIT_HASH_HEX], prev[AUDIT_HASH_HEX], got[AUDIT_HASH_HEX];
    snprintf(body, sizeof body, "{\"prev_hash\":\"%064d\",\"seq\":1}", 0);
    audit_sha256_hex(body, strlen(body), h);
    snprintf(line, sizeof line, "%.*s,\"hash\":\"%s\"}", (int)strlen(body) - 1, body, h);
    int64_t seq = 0;
    const char *why = NULL;
    assert_int_equal(audit_line_check(line, strlen(line), &seq, prev, got, &why), 0);
    assert_int_equal(seq, 1);
    assert_string_equal(got, h);
    line[5] = 'X'; /* "prev_hash" -> "prXv_hash": content changed */
    assert_int_equal(audit_line_check(line, strlen(line), &seq, prev, got, &why), -1);
    assert_non_null(strstr(why, "hash mismatch"));
}

/* Rewrites the log with line k (1-based) changed by edit, then verifies. */
static void tamper(struct fx *f, void (*edit)(char **lines, int *n), int64_t want_line,
                   const char *want_reason)
{
    char *text = testutil_read_file(f->path, NULL);
    char *lines[16];
    int n = 0;
    for (char *s = strtok(text, "\n"); s && n < 16; s = strtok(NULL, "\n"))
        lines[n++] = s;
    edit(lines, &n);
    FILE *fp = fopen(f->path, "w");
    for (int i = 0; i < n; i++)
        fprintf(fp, "%s%s", lines[i], lines[i][0] == '!' ? "" : "\n");
    fclose(fp);
    free(text);
    struct audit_verify v;
    verify_file(f->path, &v);
    assert_true(v.broken);
    assert_int_equal(v.line, want_line);
    assert_non_null(strstr(v.reason, want_reason));
}

static void edit_field(char **l, int *n) { (void)n; l[1][20] ^= 1; }
static void edit_delete(char **l, int *n) { l[1] = l[2]; l[2] = l[3]; (*n)--; }
static void edit_swap(char **l, int *n) { (void)n; char *t = l[1]; l[1] = l[2]; l[2] = t; }
static void edit_insert_copy(char **l, int *n) { l[4] = l[3]; l[3] = l[2]; (*n)++; }

static void test_changed_field(void **s) { append_n(*s, 4); tamper(*s, edit_field, 2, "hash"); }
static void test_deleted(void **s) { append_n(*s, 4); tamper(*s, edit_delete, 2, "seq 3 follows seq 1"); }
static void test_reordered(void **s) { append_n(*s, 4); tamper(*s, edit_swap, 2, "seq 3 follows seq 1"); }
static void test_inserted(void **s) { append_n(*s, 4); tamper(*s, edit_insert_copy, 4, "seq 3 follows seq 3"); }

static void test_truncated_last(void **state)
{
    struct fx *f = *state;
    append_n(f, 3);
    char *text = testutil_read_file(f->path, NULL);
    text[strlen(text) - 7] = '\0';
    write_text(f->path, text);
    free(text);
    struct audit_verify v;
    verify_file(f->path, &v);
    assert_true(v.broken);
    assert_int_equal(v.line, 3);
    assert_non_null(strstr(v.reason, "cut off"));
    /* and writers refuse to continue a damaged chain */
    struct audit_record r = {.action = "wipe", .phase = "intent", .size = -1, .passes = -1};
    struct err e;
    assert_int_equal(audit_append(f->a, &r, NULL, &e), ERR_FORMAT);
    assert_non_null(strstr(e.msg, "cut off"));
}

static void test_rotation_continues_chain(void **state)
{
    struct fx *f = *state;
    append_n(f, 2);
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", f->path);
    assert_int_equal(rename(f->path, rotated), 0);
    append_n(f, 2);
    char **files;
    size_t n;
    assert_int_equal(audit_list_files(f->dir, &files, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(files[0], rotated); /* oldest first by first seq */
    struct audit_verify v;
    assert_int_equal(audit_verify_files(files, n, false, &v, NULL), 0);
    assert_false(v.broken);
    assert_int_equal(v.head_seq, 4);
    /* the newer file alone: only with partial */
    assert_int_equal(audit_verify_files(files + 1, 1, false, &v, NULL), 0);
    assert_true(v.broken);
    assert_int_equal(audit_verify_files(files + 1, 1, true, &v, NULL), 0);
    assert_false(v.broken);
    audit_files_free(files, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clean_chain_verifies, setup, teardown),
        cmocka_unit_test(test_line_check_recomputes_hash),
        cmocka_unit_test_setup_teardown(test_changed_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reordered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inserted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_continues_chain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
