/*
 * test_erase: one subject's erasure over a real keystore, prompt log, in-memory
 * response cache and audit log in a temporary directory. Afterwards the subject's
 * data key record is zeros, its prompt log is gone and none of its sealed bytes are
 * left in any file of the directory, its cache entries miss, the report says what
 * was removed and the audit chain verifies with intent and result records; another
 * subject's data is untouched; a second erase succeeds with an empty report; the
 * anonymous subject "-" works; with the audit log unwritable nothing is touched.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "ops/audit.h"
#include "ops/keystore.h"
#include "ops/wipe.h"
#include "server/erase.h"
#include "server/promptlog.h"
#include "server/rcache.h"
#include "testutil.h"

struct env {
    char dir[64], keys[96], prompts[96];
    struct keystore *ks;
    struct promptlog *pl;
    struct rcache *rc;
    struct audit_operator op;
    struct erase_targets t;
    bool in_place; /* the filesystem lets a wipe overwrite in place */
};

static int setup(void **state)
{
    static struct env e;
    memset(&e, 0, sizeof e);
    snprintf(e.dir, sizeof e.dir, "/tmp/test_erase.XXXXXX");
    if (!mkdtemp(e.dir))
        return -1;
    snprintf(e.keys, sizeof e.keys, "%s/cache.keys", e.dir);
    snprintf(e.prompts, sizeof e.prompts, "%s/prompts", e.dir);
    struct rcache_params rp = {.mem_bytes = 1 << 20};
    if (keystore_open(e.keys, &e.ks, NULL) || promptlog_new(e.prompts, e.ks, &e.pl, NULL) ||
        rcache_new(&rp, &e.rc, NULL))
        return -1;
    audit_operator_detect(&e.op, NULL);
    e.t = (struct erase_targets){.ks = e.ks, .ks_path = e.keys, .pl = e.pl, .rc = e.rc,
                                 .audit_dir = e.dir, .op = &e.op, .via = "cli", .passes = 1};
    int fd = open(e.dir, O_RDONLY | O_DIRECTORY);
    e.in_place = fd >= 0 && wipe_check_fs(fd, e.dir, NULL) == 0;
    if (fd >= 0)
        close(fd);
    *state = &e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    rcache_free(e->rc);
    promptlog_free(e->pl);
    keystore_free(e->ks);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void store(struct env *e, const char *id, const char *text)
{
    json_t *rec = promptlog_record_new("req", "http", "/v1/chat/completions", id);
    json_object_set_new(rec, "messages", json_pack("[{ssss}]", "role", "user", "content", text));
    assert_int_equal(promptlog_append(e->pl, id, rec, NULL), 0);
    json_decref(rec);
    unsigned char k[RCACHE_KEY_BYTES];
    rcache_key(text, strlen(text), k);
    rcache_put(e->rc, strcmp(id, "-") ? id : "", k, text, strlen(text));
}

static bool cached(struct env *e, const char *tag, const char *text)
{
    unsigned char k[RCACHE_KEY_BYTES];
    rcache_key(text, strlen(text), k);
    char *v = NULL;
    size_t n = 0;
    int hit = rcache_get(e->rc, tag, k, &v, &n);
    free(v);
    return hit == 1;
}

/* Whether needle[0..n) occurs in any regular file under dir (recursively). */
static bool tree_has(const char *dir, const void *needle, size_t n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    for (struct dirent *de; !found && (de = readdir(d));) {
        if (de->d_name[0] == '.' && (!de->d_name[1] || !strcmp(de->d_name, "..")))
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (de->d_type == DT_DIR) {
            found = tree_has(p, needle, n);
            continue;
        }
        size_t len = 0;
        char *buf = testutil_read_file(p, &len);
        found = buf && memmem(buf, len, needle, n);
        free(buf);
    }
    closedir(d);
    return found;
}

static json_t *erase(struct env *e, const char *id)
{
    json_t *r = NULL;
    struct err err = {0};
    if (erase_subject(&e->t, id, &r, &err))
        fail_msg("erase_subject: %s", err.msg);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "ok");
    assert_int_equal(json_array_size(json_object_get(r, "errors")), 0);
    return r;
}

static void audit_ok(struct env *e, int64_t min_records)
{
    char **files;
    size_t n;
    struct audit_verify v;
    assert_int_equal(audit_list_files(e->dir, &files, &n, NULL), 0);
    assert_int_equal(audit_verify_files(files, n, false, &v, NULL), 0);
    assert_false(v.broken);
    assert_true(v.records >= min_records);
    audit_files_free(files, n);
}

static void test_erase_one_subject(void **state)
{
    struct env *e = *state;
    store(e, "alice", "alice-prompt-1");
    store(e, "alice", "alice-prompt-2");
    store(e, "bob", "bob-prompt");
    char pa[256];
    promptlog_path(e->pl, "alice", pa, sizeof pa, NULL);
    size_t sealed_len = 0;
    char *sealed = testutil_read_file(pa, &sealed_len); /* alice's ciphertext, as base64 */
    assert_non_null(sealed);
    unsigned char key[KEYSTORE_KEY_BYTES], bob[KEYSTORE_KEY_BYTES];
    assert_int_equal(keystore_get(e->ks, "alice", key, NULL), 0);
    assert_int_equal(keystore_get(e->ks, "bob", bob, NULL), 0);
    assert_true(tree_has(e->dir, key, sizeof key) && tree_has(e->dir, sealed, 40));

    json_t *r = erase(e, "alice");
    json_t *dk = json_object_get(r, "data_key");
    json_t *f = json_array_get(json_object_get(r, "files"), 0);
    assert_true(json_is_true(json_object_get(dk, "destroyed")));
    assert_string_equal(json_string_value(json_object_get(dk, "store")), e->keys);
    assert_int_equal(json_array_size(json_object_get(r, "files")), 1);
    assert_string_equal(json_string_value(json_object_get(f, "path")), pa);
    assert_int_equal(json_integer_value(json_object_get(f, "bytes")), (json_int_t)sealed_len);
    assert_string_equal(json_string_value(json_object_get(f, "status")),
                        e->in_place ? "wiped" : "unlinked");
    json_t *rc = json_object_get(r, "response_cache");
    assert_int_equal(json_integer_value(json_object_get(rc, "memory")), 2);
    assert_true(json_is_null(json_object_get(rc, "redis")));
    assert_true(json_is_null(json_object_get(r, "prefix_cache_slots")));
    json_t *au = json_object_get(r, "audit");
    assert_true(json_integer_value(json_object_get(au, "result_seq")) >
                json_integer_value(json_object_get(au, "intent_seq")));
    json_decref(r);

    assert_int_equal(access(pa, F_OK), -1);
    assert_false(tree_has(e->dir, key, sizeof key));     /* the data key: overwritten */
    assert_false(tree_has(e->dir, sealed, 40));          /* its ciphertext: wiped */
    assert_false(tree_has(e->dir, "alice-prompt", 12));  /* never plain on disk anyway */
    assert_int_equal(keystore_erase(e->ks, "alice", NULL), ERR_NOTFOUND);
    assert_false(cached(e, "alice", "alice-prompt-1"));
    assert_true(cached(e, "bob", "bob-prompt"));         /* bob: untouched */
    assert_true(tree_has(e->dir, bob, sizeof bob));
    char pb[256];
    promptlog_path(e->pl, "bob", pb, sizeof pb, NULL);
    assert_int_equal(access(pb, F_OK), 0);
    audit_ok(e, 2);
    free(sealed);

    r = erase(e, "alice"); /* again: nothing left, still a success */
    assert_false(json_is_true(json_object_get(json_object_get(r, "data_key"), "destroyed")));
    assert_int_equal(json_array_size(json_object_get(r, "files")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "response_cache"),
                                                        "memory")), 0);
    json_decref(r);
}

static void test_anonymous_and_refusals(void **state)
{
    struct env *e = *state;
    store(e, "-", "anon-prompt");
    json_t *r = erase(e, "-");
    assert_true(json_is_true(json_object_get(json_object_get(r, "data_key"), "destroyed")));
    assert_int_equal(json_array_size(json_object_get(r, "files")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "response_cache"),
                                                        "memory")), 1);
    assert_false(cached(e, "", "anon-prompt"));
    json_decref(r);

    struct err err = {0};
    assert_int_equal(erase_subject(&e->t, "../bob", &r, &err), ERR_INVALID);
    assert_null(r);
    /* no audit log, no erase: bob keeps everything */
    unsigned char before[KEYSTORE_KEY_BYTES], key[KEYSTORE_KEY_BYTES];
    assert_int_equal(keystore_get(e->ks, "bob", before, NULL), 0);
    struct erase_targets t = e->t;
    t.audit_dir = e->keys; /* a regular file: the audit log cannot be opened there */
    assert_int_equal(erase_subject(&t, "bob", &r, &err), ERR_IO);
    assert_null(r);
    assert_int_equal(keystore_get(e->ks, "bob", key, NULL), 0);
    assert_memory_equal(key, before, sizeof key);
    assert_true(cached(e, "bob", "bob-prompt"));
    char pb[256];
    promptlog_path(e->pl, "bob", pb, sizeof pb, NULL);
    assert_int_equal(access(pb, F_OK), 0);
    audit_ok(e, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_erase_one_subject),
        cmocka_unit_test(test_anonymous_and_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
