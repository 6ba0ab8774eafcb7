/* Unit tests for server/auth: key-file parsing (good lines, every kind of bad line
 * with its FILE:LINE), the file-mode warning, Bearer/X-Api-Key checks, that every
 * comparison goes through CRYPTO_memcmp once per stored key whatever matches (this
 * file interposes CRYPTO_memcmp to count), reload (atomic, failed reload keeps the
 * old keys, concurrent checkers), key generation and hashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "server/auth.h"

/* Counts calls; compares like memcmp's equality (0 = equal). The linker binds
 * auth.c's call to this definition instead of libcrypto's. */
static atomic_int g_memcmp_calls;
int CRYPTO_memcmp(const void *a, const void *b, size_t len)
{
    g_memcmp_calls++;
    const unsigned char *x = a, *y = b;
    unsigned char d = 0;
    for (size_t i = 0; i < len; i++)
        d |= (unsigned char)(x[i] ^ y[i]);
    return d;
}

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/test_auth.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes text to g_dir/name with mode; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

/* "id=ID sha256=<hash of key> EXTRA\n" */
static void key_line(char *buf, size_t size, const char *id, const char *key, const char *extra)
{
    char hex[65];
    assert_int_equal(auth_hash_hex(key, strlen(key), hex), 0);
    snprintf(buf, size, "id=%s sha256=%s %s\n", id, hex, extra);
}

static struct auth *load_keys(const char *text, const char *name)
{
    struct auth *a = NULL;
    struct err err;
    bool open_mode = true;
    int rc = auth_load(write_file(name, text, 0600), &a, &open_mode, &err);
    if (rc)
        fail_msg("auth_load: %s", err.msg);
    assert_false(open_mode);
    return a;
}

static void test_hash_known_vector(void **state)
{
    (void)state;
    char hex[65];
    assert_int_equal(auth_hash_hex("abc", 3, hex), 0);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_check_good_bad_missing(void **state)
{
    (void)state;
    char l1[256], l2[256], text[600];
    key_line(l1, sizeof l1, "alice", "sk-alice-secret", "rpm=60 tpm=100000 concurrent=4");
    key_line(l2, sizeof l2, "ops.1", "sk-ops", "scope=admin");
    snprintf(text, sizeof text, "# keys\n\n%s   \t\n%s", l1, l2);
    struct auth *a = load_keys(text, "keys");
    assert_int_equal(auth_count(a), 2);

    struct auth_key_info k;
    assert_int_equal(auth_check(a, "Bearer sk-alice-secret", &k), AUTH_OK);
    assert_string_equal(k.id, "alice");
    assert_int_equal(k.rpm, 60);
    assert_int_equal(k.tpm, 100000);
    assert_int_equal(k.concurrent, 4);
    assert_int_equal(k.scope, AUTH_SCOPE_USER);
    assert_int_equal(auth_check(a, "  bearer \tsk-ops  ", &k), AUTH_OK);
    assert_string_equal(k.id, "ops.1");
    assert_int_equal(k.scope, AUTH_SCOPE_ADMIN);
    assert_int_equal(k.rpm, 0);
    assert_int_equal(auth_check(a, "sk-ops", &k), AUTH_OK); /* X-Api-Key style */

    assert_int_equal(auth_check(a, "Bearer sk-alice-secreT", &k), AUTH_INVALID);
    assert_string_equal(k.id, ""); /* cleared on failure */
    assert_int_equal(auth_check(a, "Bearer sk-alice-secret2", &k), AUTH_INVALID);
    assert_int_equal(auth_check(a, "Basic c2stb3Bz", &k), AUTH_INVALID);
    assert_int_equal(auth_check(a, NULL, &k), AUTH_MISSING);
    assert_int_equal(auth_check(a, "", &k), AUTH_MISSING);
    assert_int_equal(auth_check(a, "Bearer", &k), AUTH_MISSING);
    assert_int_equal(auth_check(a, "Bearer   ", &k), AUTH_MISSING);
    assert_int_equal(auth_check_key(a, "sk-ops", 6, NULL), AUTH_OK);
    assert_int_equal(auth_check_key(a, "sk-ops", 5, NULL), AUTH_INVALID);

    assert_int_equal(auth_key_at(a, 1, &k), 0);
    assert_string_equal(k.id, "ops.1");
    assert_int_equal(auth_key_at(a, 2, &k), ERR_RANGE);
    assert_string_equal(auth_result_name(AUTH_INVALID), "invalid");
    auth_free(a);
}

static void test_constant_time_compare(void **state)
{
    (void)state;
    char text[2048] = "", line[256], id[16], key[32];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "k%d", i);
        snprintf(key, sizeof key, "sk-key-%d", i);
        key_line(line, sizeof line, id, key, "");
        strncat(text, line, sizeof text - strlen(text) - 1);
    }
    struct auth *a = load_keys(text, "ct");
    const char *probes[] = {"Bearer sk-key-0", "Bearer sk-key-4", "Bearer sk-key-2",
                            "Bearer sk-nope"};
    for (size_t i = 0; i < 4; i++) {
        g_memcmp_calls = 0;
        enum auth_result r = auth_check(a, probes[i], NULL);
        assert_int_equal(r, i < 3 ? AUTH_OK : AUTH_INVALID);
        /* every stored hash compared, no early exit on a match */
        assert_int_equal(g_memcmp_calls, 5);
    }
    auth_free(a);
}

struct bad_case {
    const char *line; /* written as line 3, after a comment and a good line */
    const char *want; /* fragment of the message after "FILE:3: " */
};

static void test_malformed_lines(void **state)
{
    (void)state;
    char good[256], dup_hash[256];
    key_line(good, sizeof good, "alice", "sk-a", "");
    key_line(dup_hash, sizeof dup_hash, "bob", "sk-a", "");
    const struct bad_case cases[] = {
        {"id=bob sha256=abcd\n", "sha256 must be 64 hex digits"},
        {"id=bob\n", "missing sha256="},
        {"sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
         "missing id="},
        {"id=alice sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
         "duplicate id 'alice'"},
        {dup_hash, "same key hash as id 'alice'"},
        {"id=bob sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad "
         "rpm=-1\n", "rpm must be a whole number"},
        {"id=bob sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad "
         "tpm=12x\n", "tpm must be a whole number"},
        {"id=bob sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad "
         "scope=root\n", "scope must be user or admin"},
        {"id=bob sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad "
         "color=red\n", "unknown field 'color'"},
        {"sk-0123456789abcdef\n", "expected name=value"},
        {"id=b/o/b sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
         "id must be"},
        {"id=bob sha256=zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
         "sha256 must be 64 hex digits"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024], want[256];
        snprintf(text, sizeof text, "# keys\n%s%s", good, cases[i].line);
        const char *path = write_file("bad", text, 0600);
        struct auth *a = (struct auth *)1;
        struct err err;
        int rc = auth_load(path, &a, NULL, &err);
        assert_int_equal(rc, ERR_FORMAT);
        assert_null(a);
        snprintf(want, sizeof want, "%s:3: ", path);
        if (!strstr(err.msg, want) || !strstr(err.msg, cases[i].want))
            fail_msg("case %zu: message '%s' lacks '%s' / '%s'", i, err.msg, want,
                     cases[i].want);
        /* nothing after "sk-" of a pasted key may reach the message */
        assert_null(strstr(err.msg, "0123456789abcdef"));
    }
}

static void test_file_mode_and_missing(void **state)
{
    (void)state;
    char line[256];
    key_line(line, sizeof line, "alice", "sk-a", "");
    struct auth *a;
    struct err err;
    bool open_mode = false;
    assert_int_equal(auth_load(write_file("open", line, 0644), &a, &open_mode, &err), 0);
    assert_true(open_mode); /* world-readable: the caller warns */
    auth_free(a);
    assert_int_equal(auth_load(write_file("open", line, 0640), &a, &open_mode, &err), 0);
    assert_true(open_mode);
    auth_free(a);
    assert_int_equal(auth_load(write_file("open", line, 0600), &a, &open_mode, &err), 0);
    assert_false(open_mode);
    auth_free(a);

    char path[128];
    snprintf(path, sizeof path, "%s/absent", g_dir);
    assert_int_equal(auth_load(path, &a, NULL, &err), ERR_IO);
    assert_non_null(strstr(err.msg, path));
    /* an empty file is valid and admits nobody */
    assert_int_equal(auth_load(write_file("empty", "", 0600), &a, NULL, &err), 0);
    assert_int_equal(auth_count(a), 0);
    assert_int_equal(auth_check(a, "Bearer sk-a", NULL), AUTH_INVALID);
    auth_free(a);
}

struct checker {
    struct auth *a;
    atomic_int *stop;
    int bad;
    atomic_int checks;
};

static void *check_loop(void *arg)
{
    struct checker *c = arg;
    while (!atomic_load(c->stop)) {
        struct auth_key_info k;
        /* "both" is in every version of the file */
        if (auth_check(c->a, "Bearer sk-both", &k) != AUTH_OK || strcmp(k.id, "both") != 0)
            c->bad++;
        atomic_fetch_add(&c->checks, 1);
    }
    return NULL;
}

static void test_reload(void **state)
{
    (void)state;
    char la[256], lb[256], lboth[256], v1[600], v2[600];
    key_line(la, sizeof la, "a", "sk-a", "rpm=1");
    key_line(lb, sizeof lb, "b", "sk-b", "rpm=2");
    key_line(lboth, sizeof lboth, "both", "sk-both", "");
    snprintf(v1, sizeof v1, "%s%s", la, lboth);
    snprintf(v2, sizeof v2, "%s%s", lboth, lb);
    struct auth *a = load_keys(v1, "reload");
    assert_int_equal(auth_check(a, "Bearer sk-a", NULL), AUTH_OK);
    assert_int_equal(auth_check(a, "Bearer sk-b", NULL), AUTH_INVALID);

    struct err err;
    write_file("reload", v2, 0600);
    assert_int_equal(auth_reload(a, NULL, &err), 0);
    assert_int_equal(auth_check(a, "Bearer sk-a", NULL), AUTH_INVALID); /* revoked */
    assert_int_equal(auth_check(a, "Bearer sk-b", NULL), AUTH_OK);

    /* a bad file: the error names the line, the keys in force stay */
    write_file("reload", "id=x\n", 0600);
    assert_int_equal(auth_reload(a, NULL, &err), ERR_FORMAT);
    assert_non_null(strstr(err.msg, "reload:1:"));
    assert_int_equal(auth_check(a, "Bearer sk-b", NULL), AUTH_OK);

    /* checkers on two threads while the file flips between versions */
    atomic_int stop = 0;
    struct checker c[2] = {{.a = a, .stop = &stop}, {.a = a, .stop = &stop}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, check_loop, &c[i]), 0);
    for (int i = 0; i < 2; i++) /* both checkers running before the flips start */
        while (atomic_load(&c[i].checks) == 0)
            sched_yield();
    for (int i = 0; i < 100; i++) {
        write_file("reload", i % 2 ? v1 : v2, 0600);
        assert_int_equal(auth_reload(a, NULL, &err), 0);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].bad, 0);
        assert_true(atomic_load(&c[i].checks) > 0);
    }
    auth_free(a);
}

static void test_generate_key(void **state)
{
    (void)state;
    char k1[AUTH_NEW_KEY_SIZE], k2[AUTH_NEW_KEY_SIZE];
    assert_int_equal(auth_generate_key(k1, sizeof k1), 0);
    assert_int_equal(auth_generate_key(k2, sizeof k2), 0);
    assert_int_equal(strlen(k1), 3 + 64);
    assert_memory_equal(k1, "sk-", 3);
    assert_int_equal(strspn(k1 + 3, "0123456789abcdef"), 64);
    assert_string_not_equal(k1, k2);
    assert_int_equal(auth_generate_key(k1, 10), ERR_INTERNAL);
    assert_true(auth_id_valid("a-b_c.9"));
    assert_false(auth_id_valid(""));
    assert_false(auth_id_valid("a b"));
    assert_false(auth_id_valid("-")); /* the keyless subject */
    assert_true(auth_id_valid("--"));
    char long_id[AUTH_ID_MAX + 1];
    memset(long_id, 'x', AUTH_ID_MAX);
    long_id[AUTH_ID_MAX] = '\0';
    assert_false(auth_id_valid(long_id));
    long_id[AUTH_ID_MAX - 1] = '\0';
    assert_true(auth_id_valid(long_id));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_known_vector),
        cmocka_unit_test(test_check_good_bad_missing),
        cmocka_unit_test(test_constant_time_compare),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_file_mode_and_missing),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_generate_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
