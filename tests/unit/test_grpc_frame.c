/* Unit tests for server/grpc_frame: framing, grpc-timeout, percent-encoding and
 * GenerateRequest / HealthCheckRequest decoding (messages built with protobuf-c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/deepseek.pb-c.h"
#include "proto/health.pb-c.h"
#include "server/grpc_frame.h"

static const struct grpc_frame_defaults defs = {0.8f, 0.95f};

static void test_parse(void **state)
{
    (void)state;
    uint8_t b[16] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};
    const uint8_t *m;
    size_t n;
    struct err e = {0};
    assert_int_equal(grpc_frame_parse(b, 8, 100, &m, &n, &e), 0);
    assert_ptr_equal(m, b + 5);
    assert_int_equal(n, 3);
    assert_int_equal(grpc_frame_parse(b, 4, 100, &m, &n, &e), ERR_FORMAT);
    assert_int_equal(grpc_frame_parse(b, 7, 100, &m, &n, &e), ERR_FORMAT); /* truncated */
    assert_int_equal(grpc_frame_parse(b, 9, 100, &m, &n, &e), ERR_FORMAT); /* trailing */
    assert_int_equal(grpc_frame_parse(b, 8, 2, &m, &n, &e), ERR_RANGE);
    assert_non_null(strstr(e.msg, "limit is 2"));
    b[0] = 1;
    assert_int_equal(grpc_frame_parse(b, 8, 100, &m, &n, &e), ERR_UNSUPPORTED);
    b[0] = 7;
    assert_int_equal(grpc_frame_parse(b, 8, 100, &m, &n, &e), ERR_FORMAT);
    uint8_t big[5] = {0, 0xff, 0xff, 0xff, 0xff}; /* 4 GiB claimed: refused, not read */
    assert_int_equal(grpc_frame_parse(big, 5, GRPC_MAX_MESSAGE_DEFAULT, &m, &n, &e), ERR_RANGE);
    uint8_t p[5];
    grpc_frame_prefix(p, 0x01020304);
    assert_memory_equal(p, "\x00\x01\x02\x03\x04", 5);
}

static void test_timeout(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(grpc_frame_timeout_ms("100m", &ms), 0);
    assert_int_equal(ms, 100);
    assert_int_equal(grpc_frame_timeout_ms("2S", &ms), 0);
    assert_int_equal(ms, 2000);
    assert_int_equal(grpc_frame_timeout_ms("1H", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(grpc_frame_timeout_ms("1500u", &ms), 0);
    assert_int_equal(ms, 2); /* rounded up */
    assert_int_equal(grpc_frame_timeout_ms("5n", &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(grpc_frame_timeout_ms("123456789S", &ms), ERR_FORMAT); /* 9 digits */
    assert_int_equal(grpc_frame_timeout_ms("10", &ms), ERR_FORMAT);
    assert_int_equal(grpc_frame_timeout_ms("S", &ms), ERR_FORMAT);
    assert_int_equal(grpc_frame_timeout_ms("10x", &ms), ERR_FORMAT);
    assert_int_equal(grpc_frame_timeout_ms("10mm", &ms), ERR_FORMAT);
}

static void test_percent(void **state)
{
    (void)state;
    char out[64];
    grpc_frame_percent_encode("a 100% b\n\xc3\xa9", out, sizeof out);
    assert_string_equal(out, "a 100%25 b%0A%C3%A9");
    grpc_frame_percent_encode("\n\n", out, 5); /* never a partial escape */
    assert_string_equal(out, "%0A");
}

static uint8_t *pack_req(const GenerateRequest *r, size_t *n)
{
    *n = generate_request__get_packed_size(r);
    uint8_t *b = malloc(*n + 1);
    generate_request__pack(r, b);
    return b;
}

static void test_generate(void **state)
{
    (void)state;
    GenerateRequest r = GENERATE_REQUEST__INIT;
    r.prompt = "hello";
    r.temperature = 0.3f;
    r.max_tokens = 150;
    size_t n;
    uint8_t *b = pack_req(&r, &n);
    struct grpc_frame_gen g;
    struct err e = {0};
    assert_int_equal(grpc_frame_decode_generate(b, n, &defs, &g, &e), 0);
    assert_int_equal(g.n_msgs, 1);
    assert_int_equal(g.msgs[0].role, CHAT_ROLE_USER);
    assert_string_equal(g.msgs[0].content, "hello");
    assert_float_equal(g.rp.sampling.temperature, 0.3f, 1e-6);
    assert_float_equal(g.rp.sampling.top_p, 0.95f, 1e-6); /* the server's default */
    assert_int_equal(g.rp.max_tokens, 150);
    assert_false(g.rp.sampling.has_seed);
    grpc_frame_gen_free(&g);
    free(b);

    /* unset temperature / max_tokens: defaults (max_tokens 0 = the caller picks) */
    r.temperature = 0;
    r.max_tokens = 0;
    r.seed = 42;
    r.top_k = 1;
    b = pack_req(&r, &n);
    assert_int_equal(grpc_frame_decode_generate(b, n, &defs, &g, &e), 0);
    assert_float_equal(g.rp.sampling.temperature, 0.8f, 1e-6);
    assert_int_equal(g.rp.max_tokens, 0);
    assert_true(g.rp.sampling.has_seed);
    assert_int_equal(g.rp.sampling.top_k, 1);
    grpc_frame_gen_free(&g);
    free(b);
}

static void expect_bad(GenerateRequest *r, int code, const char *field)
{
    size_t n;
    uint8_t *b = pack_req(r, &n);
    struct grpc_frame_gen g;
    struct err e = {0};
    assert_int_equal(grpc_frame_decode_generate(b, n, &defs, &g, &e), code);
    assert_non_null(strstr(e.msg, field));
    assert_null(g.msg);
    free(b);
}

static void test_generate_bad(void **state)
{
    (void)state;
    GenerateRequest r = GENERATE_REQUEST__INIT;
    expect_bad(&r, ERR_INVALID, "prompt");
    r.prompt = "x";
    r.temperature = 5;
    expect_bad(&r, ERR_RANGE, "temperature");
    r.temperature = 0;
    r.max_tokens = -1;
    expect_bad(&r, ERR_RANGE, "max_tokens");
    r.max_tokens = 0;
    char *stops[5] = {"a", "b", "c", "d", "e"};
    r.stop = stops;
    r.n_stop = 5;
    expect_bad(&r, ERR_RANGE, "stop");
    r.n_stop = 0;
    ChatMessage m = CHAT_MESSAGE__INIT, *mp = &m;
    m.role = "robot";
    m.content = "hi";
    r.messages = &mp;
    r.n_messages = 1;
    expect_bad(&r, ERR_INVALID, "messages[0].role");
    m.role = "assistant";
    size_t n;
    uint8_t *b = pack_req(&r, &n);
    struct grpc_frame_gen g;
    struct err e = {0};
    assert_int_equal(grpc_frame_decode_generate(b, n, &defs, &g, &e), 0);
    assert_int_equal(g.msgs[0].role, CHAT_ROLE_ASSISTANT); /* messages win over prompt */
    grpc_frame_gen_free(&g);
    free(b);
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(grpc_frame_decode_generate(junk, sizeof junk, &defs, &g, &e), ERR_FORMAT);
}

static void test_health_and_pack(void **state)
{
    (void)state;
    Grpc__Health__V1__HealthCheckRequest h = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    h.service = "DeepSeekService";
    size_t n;
    uint8_t *b = grpc_frame_pack(&h, &n);
    assert_non_null(b);
    const uint8_t *m;
    size_t len;
    struct err e = {0};
    assert_int_equal(grpc_frame_parse(b, n, 100, &m, &len, &e), 0);
    char svc[8];
    assert_int_equal(grpc_frame_decode_health(m, len, svc, sizeof svc, &e), 0);
    assert_string_equal(svc, "DeepSee"); /* truncated to fit */
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_percent),      cmocka_unit_test(test_generate),
        cmocka_unit_test(test_generate_bad), cmocka_unit_test(test_health_and_pack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
