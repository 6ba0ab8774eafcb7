/*
 * test_keystore: per-key data keys in a 0600 file of fixed records: created once and
 * found again after reopening; AES-256-GCM seal/unseal with associated data; tampering
 * and a wrong name fail; erase overwrites the key's bytes in the file itself.
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
#include "testutil.h"

static char dir[] = "/tmp/test_keystore.XXXXXX";
static char path[64];

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/keys", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

/* Whether needle[0..n) occurs in the file's bytes. */
static bool file_has(const unsigned char *needle, size_t n)
{
    size_t len = 0;
    char *buf = testutil_read_file(path, &len);
    assert_non_null(buf);
    bool found = false;
    for (size_t i = 0; i + n <= len && !found; i++)
        found = !memcmp(buf + i, needle, n);
    free(buf);
    return found;
}

static void test_keys_and_erase(void **state)
{
    (void)state;
    struct keystore *ks;
    assert_int_equal(keystore_open(path, &ks, NULL), 0);
    unsigned char a1[KEYSTORE_KEY_BYTES], a2[KEYSTORE_KEY_BYTES], b[KEYSTORE_KEY_BYTES];
    assert_int_equal(keystore_get(ks, "alice", a1, NULL), 0);
    assert_int_equal(keystore_get(ks, "bob", b, NULL), 0);
    assert_int_equal(keystore_get(ks, "alice", a2, NULL), 0);
    assert_memory_equal(a1, a2, sizeof a1);
    assert_memory_not_equal(a1, b, sizeof a1);
    assert_int_equal(keystore_get(ks, "", a2, NULL), ERR_INVALID);
    keystore_free(ks);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 2 * (KEYSTORE_ID_MAX + KEYSTORE_KEY_BYTES));
    assert_true(file_has(a1, sizeof a1));

    assert_int_equal(keystore_open(path, &ks, NULL), 0); /* the same keys again */
    assert_int_equal(keystore_get(ks, "alice", a2, NULL), 0);
    assert_memory_equal(a1, a2, sizeof a1);
    unsigned char *sealed;
    size_t n;
    const char msg[] = "the generated text";
    assert_int_equal(keystore_seal(ks, "alice", "rk:1", msg, sizeof msg - 1, &sealed, &n,
                                   NULL), 0);
    assert_int_equal(n, sizeof msg - 1 + KEYSTORE_OVERHEAD);
    assert_null(memmem(sealed, n, "generated", 9));
    char *plain;
    size_t len;
    assert_int_equal(keystore_unseal(ks, "alice", "rk:1", sealed, n, &plain, &len, NULL), 0);
    assert_int_equal(len, sizeof msg - 1);
    assert_string_equal(plain, msg);
    free(plain);
    struct err e = {0};
    assert_int_equal(keystore_unseal(ks, "alice", "rk:2", sealed, n, &plain, &len, &e),
                     ERR_FORMAT); /* moved under another name */
    assert_int_equal(keystore_unseal(ks, "bob", "rk:1", sealed, n, &plain, &len, NULL),
                     ERR_FORMAT);
    sealed[n - 1] ^= 1;
    assert_int_equal(keystore_unseal(ks, "alice", "rk:1", sealed, n, &plain, &len, NULL),
                     ERR_FORMAT);
    sealed[n - 1] ^= 1;
    assert_int_equal(keystore_unseal(ks, "alice", "rk:1", sealed, 10, &plain, &len, NULL),
                     ERR_FORMAT);

    assert_int_equal(keystore_erase(ks, "alice", NULL), 0);
    assert_false(file_has(a1, sizeof a1)); /* overwritten in place, not just forgotten */
    assert_true(file_has(b, sizeof b));
    assert_int_equal(keystore_unseal(ks, "alice", "rk:1", sealed, n, &plain, &len, NULL),
                     ERR_NOTFOUND);
    assert_int_equal(keystore_erase(ks, "alice", NULL), ERR_NOTFOUND);
    assert_int_equal(keystore_get(ks, "carol", a2, NULL), 0); /* reuses the free record */
    keystore_free(ks);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 2 * (KEYSTORE_ID_MAX + KEYSTORE_KEY_BYTES));
    assert_int_equal(keystore_open(path, &ks, NULL), 0);
    assert_int_equal(keystore_unseal(ks, "alice", "rk:1", sealed, n, &plain, &len, NULL),
                     ERR_NOTFOUND); /* and after reopening */
    keystore_free(ks);
    free(sealed);
}

static void test_bad_file(void **state)
{
    (void)state;
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
    struct keystore *ks;
    struct err e = {0};
    assert_int_equal(keystore_open(path, &ks, &e), ERR_FORMAT);
    assert_non_null(strstr(e.msg, "records"));
    assert_int_equal(keystore_open("/nonexistent-dir/keys", &ks, &e), ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_and_erase),
        cmocka_unit_test(test_bad_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
