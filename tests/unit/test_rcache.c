/*
 * test_rcache: the response cache's memory tier (hits, tags kept apart, LRU eviction
 * by bytes, erase by tag), URL checks, and Redis being down: a miss, one error, then
 * no new attempt until the back-off has passed (injected clock). The Redis tier
 * tier's sharing and erase run against a real redis-server when one is installed
 * (TTL and restarts: tests/integration/test_cache.sh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ops/keystore.h"
#include "server/rcache.h"

static double fake_now;
static double clock_fake(void) { return fake_now; }

static void key_of(const char *s, unsigned char k[RCACHE_KEY_BYTES])
{
    rcache_key(s, strlen(s), k);
}

static void test_key(void **state)
{
    (void)state;
    unsigned char k[RCACHE_KEY_BYTES];
    key_of("abc", k); /* FIPS 180-2 test vector */
    static const unsigned char want[4] = {0xba, 0x78, 0x16, 0xbf};
    assert_memory_equal(k, want, 4);
    assert_int_equal(k[31], 0xad);
}

static void test_memory(void **state)
{
    (void)state;
    struct rcache *c;
    struct rcache_params p = {.mem_bytes = 4096, .now = clock_fake};
    assert_int_equal(rcache_new(&p, &c, NULL), 0);
    assert_true(rcache_enabled(c));
    unsigned char k1[RCACHE_KEY_BYTES], k2[RCACHE_KEY_BYTES];
    key_of("one", k1);
    key_of("two", k2);
    char *v;
    size_t n;
    assert_int_equal(rcache_get(c, "alice", k1, &v, &n), 0);
    assert_null(v);
    rcache_put(c, "alice", k1, "hello", 5);
    assert_int_equal(rcache_get(c, "alice", k1, &v, &n), 1);
    assert_int_equal(n, 5);
    assert_string_equal(v, "hello");
    free(v);
    assert_int_equal(rcache_get(c, "bob", k1, &v, &n), 0); /* another key's entry */
    assert_int_equal(rcache_get(c, "alice", k2, &v, &n), 0);
    rcache_put(c, "alice", k1, "world!", 6); /* replaces */
    assert_int_equal(rcache_get(c, "alice", k1, &v, &n), 1);
    assert_string_equal(v, "world!");
    free(v);
    struct rcache_stats st;
    rcache_stats(c, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 3);
    assert_int_equal(st.mem_entries, 1);
    rcache_free(c);
}

static void test_lru_budget(void **state)
{
    (void)state;
    struct rcache *c;
    struct rcache_params p = {.mem_bytes = 3 * 1200, .now = clock_fake};
    assert_int_equal(rcache_new(&p, &c, NULL), 0);
    char big[1000];
    memset(big, 'x', sizeof big);
    unsigned char k[4][RCACHE_KEY_BYTES];
    char name[8];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "k%d", i);
        key_of(name, k[i]);
    }
    char *v;
    size_t n;
    rcache_put(c, "", k[0], big, sizeof big);
    rcache_put(c, "", k[1], big, sizeof big);
    rcache_put(c, "", k[2], big, sizeof big);
    assert_int_equal(rcache_get(c, "", k[0], &v, &n), 1); /* k0 is now the most recent */
    free(v);
    rcache_put(c, "", k[3], big, sizeof big); /* over budget: evicts k1, the LRU */
    assert_int_equal(rcache_get(c, "", k[1], &v, &n), 0);
    assert_int_equal(rcache_get(c, "", k[0], &v, &n), 1);
    free(v);
    assert_int_equal(rcache_get(c, "", k[3], &v, &n), 1);
    free(v);
    struct rcache_stats st;
    rcache_stats(c, &st);
    assert_true(st.mem_bytes <= p.mem_bytes);
    assert_int_equal(st.evictions, 1);
    char huge[4000] = {0}; /* larger than the whole budget: not stored, nothing evicted */
    rcache_put(c, "", k[1], huge, sizeof huge);
    assert_int_equal(rcache_get(c, "", k[1], &v, &n), 0);
    assert_int_equal(rcache_get(c, "", k[0], &v, &n), 1);
    free(v);
    rcache_free(c);
}

static void test_erase_tag(void **state)
{
    (void)state;
    struct rcache *c;
    struct rcache_params p = {.mem_bytes = 1 << 20, .now = clock_fake};
    assert_int_equal(rcache_new(&p, &c, NULL), 0);
    unsigned char k[RCACHE_KEY_BYTES];
    char name[16];
    for (int i = 0; i < 300; i++) { /* also grows the hash table */
        snprintf(name, sizeof name, "k%d", i);
        key_of(name, k);
        rcache_put(c, i % 3 ? "alice" : "bob", k, name, strlen(name));
    }
    size_t n = 0;
    assert_int_equal(rcache_erase_tag(c, "alice", &n, NULL), 0);
    assert_int_equal(n, 200);
    char *v;
    size_t len;
    key_of("k1", k);
    assert_int_equal(rcache_get(c, "alice", k, &v, &len), 0);
    key_of("k3", k);
    assert_int_equal(rcache_get(c, "bob", k, &v, &len), 1);
    assert_string_equal(v, "k3");
    free(v);
    rcache_free(c);
}

static void test_off_and_urls(void **state)
{
    (void)state;
    struct rcache *c;
    struct rcache_params p = {0};
    assert_int_equal(rcache_new(&p, &c, NULL), 0);
    assert_false(rcache_enabled(c));
    unsigned char k[RCACHE_KEY_BYTES];
    key_of("x", k);
    rcache_put(c, "", k, "v", 1);
    char *v;
    size_t n;
    assert_int_equal(rcache_get(c, "", k, &v, &n), 0);
    rcache_free(c);
    static const char *bad[] = {"http://x:1/0", "redis://", "redis://h:0/0", "redis://h:99999",
                                "redis://h:1/x", "redis://h:1/0?ttl=0", "redis://h:1/0?foo=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct err e = {0};
        p.url = bad[i];
        assert_int_equal(rcache_new(&p, &c, &e), ERR_INVALID);
        assert_null(c);
        assert_non_null(strstr(e.msg, "cache-url"));
    }
    static const char *good[] = {"redis://h", "redis://h:6380", "redis://h:6380/2",
                                 "redis://u:pw@h:1/0?ttl=5", "redis://:pw@h/?ttl=5"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        p.url = good[i];
        assert_int_equal(rcache_new(&p, &c, NULL), 0);
        assert_true(rcache_enabled(c));
        rcache_free(c);
    }
}

/* Port 1 on loopback refuses at once: each attempt is a miss and one error; within
 * the back-off no attempt is made at all. */
static void test_redis_down(void **state)
{
    (void)state;
    struct rcache *c;
    struct rcache_params p = {.mem_bytes = 0, .url = "redis://127.0.0.1:1/0",
                              .timeout_ms = 100, .now = clock_fake};
    fake_now = 100;
    assert_int_equal(rcache_new(&p, &c, NULL), 0);
    unsigned char k[RCACHE_KEY_BYTES];
    key_of("x", k);
    char *v;
    size_t n;
    assert_int_equal(rcache_get(c, "", k, &v, &n), 0);
    rcache_put(c, "", k, "v", 1);
    assert_int_equal(rcache_get(c, "", k, &v, &n), 0);
    struct rcache_stats st;
    rcache_stats(c, &st);
    assert_int_equal(st.redis_errors, 1);
    assert_false(st.redis_up);
    fake_now += 1.5; /* past the first back-off (1 s): one more try, then 2 s */
    assert_int_equal(rcache_get(c, "", k, &v, &n), 0);
    fake_now += 1.5;
    assert_int_equal(rcache_get(c, "", k, &v, &n), 0);
    rcache_stats(c, &st);
    assert_int_equal(st.redis_errors, 2);
    struct err e = {0};
    fake_now += 10;
    assert_int_equal(rcache_erase_tag(c, "", NULL, &e), ERR_IO);
    rcache_free(c);
}

extern char **environ;

/* A redis-server on a random loopback port; 0 when none could be started. */
static pid_t redis_start(int *port)
{
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    *port = 20000 + rand() % 40000;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", *port);
    char *argv[] = {"redis-server", "--port", ps, "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--logfile", "/dev/null", NULL};
    pid_t pid;
    if (posix_spawnp(&pid, "redis-server", NULL, NULL, argv, environ))
        return 0;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", *port);
    for (int i = 0; i < 100; i++) { /* up to 5 s for it to listen */
        struct rcache *c;
        struct rcache_params p = {.url = url, .timeout_ms = 100};
        struct rcache_stats st;
        unsigned char k[RCACHE_KEY_BYTES] = {0};
        rcache_new(&p, &c, NULL);
        rcache_put(c, "probe", k, "x", 1);
        rcache_stats(c, &st);
        rcache_free(c);
        if (st.redis_errors == 0)
            return pid;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}

/* Two replicas on one Redis share entries; erasing a tag removes only its entries,
 * from Redis and from the memory tier of the replica that erases. */
static void test_redis_share_erase(void **state)
{
    (void)state;
    int port;
    pid_t pid = redis_start(&port);
    if (!pid)
        skip(); /* no redis-server installed: test_cache.sh says so too */
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3?ttl=60", port);
    struct rcache *a, *b;
    struct rcache_params pa = {.mem_bytes = 1 << 20, .url = url, .timeout_ms = 500};
    struct rcache_params pb = {.mem_bytes = 0, .url = url, .timeout_ms = 500};
    assert_int_equal(rcache_new(&pa, &a, NULL), 0);
    assert_int_equal(rcache_new(&pb, &b, NULL), 0);
    unsigned char k1[RCACHE_KEY_BYTES], k2[RCACHE_KEY_BYTES], k3[RCACHE_KEY_BYTES];
    key_of("one", k1);
    key_of("two", k2);
    key_of("three", k3);
    rcache_put(a, "alice", k1, "v1", 2);
    rcache_put(a, "alice", k2, "v2\0bin", 7); /* binary-safe */
    rcache_put(a, "bob", k3, "v3", 2);
    char *v;
    size_t n;
    assert_int_equal(rcache_get(b, "alice", k2, &v, &n), 1);
    assert_int_equal(n, 7);
    assert_memory_equal(v, "v2\0bin", 7);
    free(v);
    assert_int_equal(rcache_get(b, "bob", k1, &v, &n), 0); /* tags stay apart in Redis */
    size_t erased = 0;
    assert_int_equal(rcache_erase_tag(a, "alice", &erased, NULL), 0);
    assert_int_equal(erased, 4); /* 2 in memory + 2 in Redis */
    assert_int_equal(rcache_get(a, "alice", k1, &v, &n), 0);
    assert_int_equal(rcache_get(b, "alice", k1, &v, &n), 0);
    assert_int_equal(rcache_get(b, "bob", k3, &v, &n), 1);
    free(v);
    struct rcache_stats st;
    rcache_stats(b, &st);
    assert_int_equal(st.redis_errors, 0);
    assert_true(st.redis_up);
    rcache_free(a);
    rcache_free(b);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* With a keystore, Redis holds only ciphertext; erasing the data key makes an entry
 * left in Redis unreadable (a miss), and erase_tag removes the entries themselves. */
static void test_redis_sealed(void **state)
{
    (void)state;
    int port;
    pid_t pid = redis_start(&port);
    if (!pid)
        skip();
    char dir[] = "/tmp/test_rcache.XXXXXX", kpath[64], url[64];
    assert_non_null(mkdtemp(dir));
    snprintf(kpath, sizeof kpath, "%s/keys", dir);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    struct keystore *ks;
    assert_int_equal(keystore_open(kpath, &ks, NULL), 0);
    struct rcache *a, *b, *raw;
    struct rcache_params pk = {.url = url, .timeout_ms = 500, .ks = ks};
    struct rcache_params pr = {.url = url, .timeout_ms = 500};
    assert_int_equal(rcache_new(&pk, &a, NULL), 0);
    assert_int_equal(rcache_new(&pk, &b, NULL), 0);
    assert_int_equal(rcache_new(&pr, &raw, NULL), 0);
    unsigned char k[RCACHE_KEY_BYTES];
    key_of("one", k);
    static const char text[] = "secret text";
    rcache_put(a, "alice", k, text, sizeof text - 1);
    char *v;
    size_t n;
    assert_int_equal(rcache_get(raw, "alice", k, &v, &n), 1); /* what Redis holds */
    assert_int_equal(n, sizeof text - 1 + KEYSTORE_OVERHEAD);
    assert_null(memmem(v, n, "secret", 6));
    free(v);
    assert_int_equal(rcache_get(b, "alice", k, &v, &n), 1);
    assert_string_equal(v, text);
    free(v);
    assert_int_equal(keystore_erase(ks, "alice", NULL), 0); /* Redis not told */
    assert_int_equal(rcache_get(b, "alice", k, &v, &n), 0);
    assert_int_equal(rcache_get(raw, "alice", k, &v, &n), 1);
    free(v);
    size_t erased = 0;
    assert_int_equal(rcache_erase_tag(a, "alice", &erased, NULL), 0);
    assert_int_equal(erased, 1);
    assert_int_equal(rcache_get(raw, "alice", k, &v, &n), 0);
    rcache_free(a);
    rcache_free(b);
    rcache_free(raw);
    keystore_free(ks);
    unlink(kpath);
    rmdir(dir);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key),         cmocka_unit_test(test_memory),
        cmocka_unit_test(test_lru_budget),  cmocka_unit_test(test_erase_tag),
        cmocka_unit_test(test_off_and_urls), cmocka_unit_test(test_redis_down),
        cmocka_unit_test(test_redis_share_erase), cmocka_unit_test(test_redis_sealed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
