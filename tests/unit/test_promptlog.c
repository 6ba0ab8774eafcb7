/*
 * test_promptlog: per-subject sealed prompt logs. Records come back in order and
 * only for their own subject; the file holds base64 ciphertext, never the text, with
 * modes 0600/0700; a line moved to another subject's file, a flipped byte or an erased
 * data key make records unreadable (counted, not returned); a subject's rotated copies
 * are found in age order and nobody else's ("a.log.log" is subject "a.log"'s).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops/keystore.h"
#include "server/promptlog.h"
#include "testutil.h"

struct env {
    char dir[64], keys[96], prompts[96];
    struct keystore *ks;
    struct promptlog *pl;
};

static int setup(void **state)
{
    static struct env e;
    memset(&e, 0, sizeof e);
    snprintf(e.dir, sizeof e.dir, "/tmp/test_promptlog.XXXXXX");
    if (!mkdtemp(e.dir))
        return -1;
    snprintf(e.keys, sizeof e.keys, "%s/cache.keys", e.dir);
    snprintf(e.prompts, sizeof e.prompts, "%s/prompts", e.dir);
    if (keystore_open(e.keys, &e.ks, NULL) || promptlog_new(e.prompts, e.ks, &e.pl, NULL))
        return -1;
    *state = &e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    promptlog_free(e->pl);
    keystore_free(e->ks);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void append(struct env *e, const char *id, const char *text)
{
    json_t *rec = promptlog_record_new("req-1", "http", "/v1/completions", id);
    assert_non_null(rec);
    json_object_set_new(rec, "prompt", json_pack("[s]", text));
    struct err err = {0};
    if (promptlog_append(e->pl, id, rec, &err))
        fail_msg("promptlog_append: %s", err.msg);
    json_decref(rec);
}

struct got {
    int n;
    char prompts[8][64];
};

static int collect(const char *json, size_t len, void *ctx)
{
    struct got *g = ctx;
    json_t *j = json_loadb(json, len, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "v")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "route")), "/v1/completions");
    const char *t = json_string_value(json_array_get(json_object_get(j, "prompt"), 0));
    if (g->n < 8 && t)
        snprintf(g->prompts[g->n], sizeof g->prompts[0], "%s", t);
    g->n++;
    json_decref(j);
    return 0;
}

static size_t read_all(struct env *e, const char *id, struct got *g)
{
    memset(g, 0, sizeof *g);
    size_t bad = 99;
    assert_int_equal(promptlog_read(e->pl, id, collect, g, &bad, NULL), 0);
    return bad;
}

static bool file_has(const char *path, const char *needle)
{
    size_t len = 0;
    char *buf = testutil_read_file(path, &len);
    bool found = buf && memmem(buf, len, needle, strlen(needle));
    free(buf);
    return found;
}

static void test_roundtrip(void **state)
{
    struct env *e = *state;
    append(e, "alice", "alice-secret-one");
    append(e, "alice", "alice-secret-two");
    append(e, "bob", "bob-secret");
    append(e, PROMPTLOG_ANON, "anon-secret");
    struct got g;
    assert_int_equal(read_all(e, "alice", &g), 0);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.prompts[0], "alice-secret-one");
    assert_string_equal(g.prompts[1], "alice-secret-two");
    assert_int_equal(read_all(e, "bob", &g), 0);
    assert_int_equal(g.n, 1);
    assert_int_equal(read_all(e, "-", &g), 0);
    assert_string_equal(g.prompts[0], "anon-secret");
    assert_int_equal(read_all(e, "carol", &g), 0); /* no file: no record, no error */
    assert_int_equal(g.n, 0);
    char path[256];
    assert_int_equal(promptlog_path(e->pl, "alice", path, sizeof path, NULL), 0);
    assert_false(file_has(path, "alice-secret")); /* sealed: no plain text on disk */
    assert_false(file_has(path, "\"prompt\""));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(e->prompts, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    json_t *r = promptlog_record_new("x", "grpc", "/p", "");
    assert_true(json_is_null(json_object_get(r, "key_id")));
    const char *when = json_string_value(json_object_get(r, "time"));
    assert_true(when && strlen(when) == 24 && when[23] == 'Z');
    json_decref(r);
    assert_string_equal(promptlog_subject(""), "-");
    assert_string_equal(promptlog_subject("bob"), "bob");
}

/* Appends line (with its '\n') to path. */
static void add_line(const char *path, const char *line)
{
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(line, f);
    fclose(f);
}

static void test_tamper_and_erase(void **state)
{
    struct env *e = *state;
    char pa[256], pb[256];
    promptlog_path(e->pl, "alice", pa, sizeof pa, NULL);
    promptlog_path(e->pl, "bob", pb, sizeof pb, NULL);
    char *bob = testutil_read_file(pb, NULL);
    assert_non_null(bob);
    add_line(pa, bob); /* bob's record moved into alice's file: the aad says no */
    free(bob);
    struct got g;
    assert_int_equal(read_all(e, "alice", &g), 1);
    assert_int_equal(g.n, 2);
    add_line(pa, "not base64 at all!\n");
    assert_int_equal(read_all(e, "alice", &g), 2);
    /* one flipped character inside the first record */
    size_t len = 0;
    char *buf = testutil_read_file(pa, &len);
    buf[10] = buf[10] == 'A' ? 'B' : 'A';
    FILE *f = fopen(pa, "w");
    fwrite(buf, 1, len, f);
    fclose(f);
    free(buf);
    assert_int_equal(read_all(e, "alice", &g), 3);
    assert_int_equal(g.n, 1);
    assert_int_equal(keystore_erase(e->ks, "alice", NULL), 0);
    assert_int_equal(read_all(e, "alice", &g), 4); /* every line: the key is gone */
    assert_int_equal(g.n, 0);
    assert_int_equal(read_all(e, "bob", &g), 0);
    assert_int_equal(g.n, 1);
}

struct names {
    int n;
    char v[8][64];
};

static int list_name(const char *path, long long size, void *ctx)
{
    struct names *nm = ctx;
    assert_true(size >= 0);
    const char *base = strrchr(path, '/');
    snprintf(nm->v[nm->n++], sizeof nm->v[0], "%s", base ? base + 1 : path);
    return 0;
}

static void test_files_and_ids(void **state)
{
    struct env *e = *state;
    static const char *const names[] = {"carol.log.2", "carol.log-20260101", "carol.log.1.gz",
                                        "carol.log.1", "carol.log.log", "carolx.log",
                                        "carol.logs", "carol.log.x"};
    char path[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", e->prompts, names[i]);
        add_line(path, "x\n");
    }
    append(e, "carol", "carol-text");
    struct names nm = {0};
    assert_int_equal(promptlog_files_locked(e->pl, "carol", list_name, &nm, NULL), 0);
    assert_int_equal(nm.n, 5);
    assert_string_equal(nm.v[0], "carol.log-20260101");
    assert_string_equal(nm.v[1], "carol.log.2");
    assert_string_equal(nm.v[2], "carol.log.1");
    assert_string_equal(nm.v[3], "carol.log.1.gz");
    assert_string_equal(nm.v[4], "carol.log");
    nm.n = 0;
    assert_int_equal(promptlog_files_locked(e->pl, "carol.log", list_name, &nm, NULL), 0);
    assert_int_equal(nm.n, 1);
    assert_string_equal(nm.v[0], "carol.log.log");
    nm.n = 0;
    assert_int_equal(promptlog_files_locked(e->pl, "nobody", list_name, &nm, NULL), 0);
    assert_int_equal(nm.n, 0);
    struct got g;
    assert_int_equal(read_all(e, "carol", &g), 4); /* 3 junk lines, 1 gz copy skipped */
    assert_int_equal(g.n, 1);
    static const char *const bad[] = {"", "../x", "a/b", "a b", "x.log\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(promptlog_id_valid(bad[i]));
        assert_int_equal(promptlog_path(e->pl, bad[i], path, sizeof path, NULL), ERR_INVALID);
        assert_int_equal(promptlog_read(e->pl, bad[i], collect, &g, NULL, NULL), ERR_INVALID);
    }
    assert_true(promptlog_id_valid("-"));
    assert_true(promptlog_id_valid("ops.admin_1-x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_tamper_and_erase),
        cmocka_unit_test(test_files_and_ids),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
