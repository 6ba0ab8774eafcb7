/* Unit tests for client/grpc_wire: status names and the HTTP mapping, grpc-status
 * parsing, prefix and packing (round trip through protobuf-c), percent-decoding, and
 * the incremental message reader: the same messages whatever the cuts (every fixed
 * piece size and seeded random cuts), oversized, compressed and malformed prefixes
 * refused cleanly and for good, bodies ending inside a message, and a callback that
 * stops the reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/grpc_wire.h"
#include "proto/deepseek.pb-c.h"

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(grpc_wire_status_name(0), "OK");
    assert_string_equal(grpc_wire_status_name(8), "RESOURCE_EXHAUSTED");
    assert_string_equal(grpc_wire_status_name(14), "UNAVAILABLE");
    assert_string_equal(grpc_wire_status_name(16), "UNAUTHENTICATED");
    assert_string_equal(grpc_wire_status_name(17), "UNKNOWN");
    assert_string_equal(grpc_wire_status_name(-1), "UNKNOWN");
    assert_int_equal(grpc_wire_status_of_http(401), GRPC_WIRE_UNAUTHENTICATED);
    assert_int_equal(grpc_wire_status_of_http(404), GRPC_WIRE_UNIMPLEMENTED);
    assert_int_equal(grpc_wire_status_of_http(429), GRPC_WIRE_UNAVAILABLE);
    assert_int_equal(grpc_wire_status_of_http(503), GRPC_WIRE_UNAVAILABLE);
    assert_int_equal(grpc_wire_status_of_http(500), GRPC_WIRE_UNKNOWN);
    int c;
    assert_int_equal(grpc_wire_parse_status("16", &c), 0);
    assert_int_equal(c, 16);
    assert_int_equal(grpc_wire_parse_status(" 0 ", &c), 0);
    assert_int_equal(c, 0);
    assert_int_equal(grpc_wire_parse_status("", &c), ERR_FORMAT);
    assert_int_equal(grpc_wire_parse_status("1x", &c), ERR_FORMAT);
    assert_int_equal(grpc_wire_parse_status("-1", &c), ERR_FORMAT);
    assert_int_equal(grpc_wire_parse_status("1234", &c), ERR_FORMAT);
    assert_int_equal(c, GRPC_WIRE_UNKNOWN);
}

static void test_pack_roundtrip(void **state)
{
    (void)state;
    uint8_t p[5];
    grpc_wire_prefix(p, 0x01020304);
    assert_memory_equal(p, "\x00\x01\x02\x03\x04", 5);
    GenerateResponse r = GENERATE_RESPONSE__INIT;
    r.text = "héllo";
    r.reasoning = "think";
    r.token_count = 7;
    r.finish_reason = "stop";
    size_t len = 0;
    uint8_t *buf = grpc_wire_pack(&r, &len);
    assert_non_null(buf);
    size_t n = protobuf_c_message_get_packed_size(&r.base);
    assert_int_equal(len, n + 5);
    assert_int_equal(buf[0], 0);
    assert_int_equal((size_t)buf[3] << 8 | buf[4], n);
    GenerateResponse *u = generate_response__unpack(NULL, len - 5, buf + 5);
    assert_non_null(u);
    assert_string_equal(u->text, "héllo");
    assert_string_equal(u->reasoning, "think");
    assert_int_equal(u->token_count, 7);
    assert_string_equal(u->finish_reason, "stop");
    generate_response__free_unpacked(u, NULL);
    free(buf);
}

static void test_percent_decode(void **state)
{
    (void)state;
    char out[64];
    const char *s = "rate%20limit%3A 100%25%zz%4";
    grpc_wire_percent_decode(s, strlen(s), out, sizeof out);
    assert_string_equal(out, "rate limit: 100%%zz%4"); /* bad escapes kept as they are */
    s = "line%0Aone%7F%C3%A9";
    grpc_wire_percent_decode(s, strlen(s), out, sizeof out);
    assert_string_equal(out, "line?one?\xc3\xa9"); /* control bytes cannot break the line */
    grpc_wire_percent_decode("abcdef", 6, out, 4);
    assert_string_equal(out, "abc");
    grpc_wire_percent_decode("%41%42", 5, out, sizeof out); /* n cuts the second escape */
    assert_string_equal(out, "A%4");
}

/* ------------------------------------------------------------ the reader */

struct got {
    char all[8192];
    size_t len;
    int n, stop_at; /* stop_at > 0: the callback returns 7 on that message */
};

/* Records each message as "<len>:<bytes>|". */
static int collect(void *arg, const uint8_t *msg, size_t len)
{
    struct got *g = arg;
    int w = snprintf(g->all + g->len, sizeof g->all - g->len, "%zu:", len);
    assert_true(w > 0 && g->len + (size_t)w + len + 1 < sizeof g->all);
    g->len += (size_t)w;
    memcpy(g->all + g->len, msg, len);
    g->len += len;
    g->all[g->len++] = '|';
    g->n++;
    return g->stop_at && g->n == g->stop_at ? 7 : 0;
}

/* Appends a prefixed message of n bytes (byte i = seed + i) to body. */
static size_t add_msg(uint8_t *body, size_t at, size_t n, uint8_t seed)
{
    grpc_wire_prefix(body + at, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        body[at + 5 + i] = (uint8_t)(seed + i);
    return at + 5 + n;
}

/* Feeds body in pieces: cuts[] are piece sizes cycled (NULL: whole). */
static int feed_cut(const uint8_t *body, size_t len, const size_t *cuts, size_t n_cuts,
                    size_t max, struct got *g, struct err *e)
{
    struct grpc_wire_reader *r = grpc_wire_reader_new(max, collect, g);
    assert_non_null(r);
    int rc = 0;
    for (size_t i = 0, c = 0; i < len && !rc; c++) {
        size_t k = cuts ? cuts[c % n_cuts] : len;
        if (k > len - i)
            k = len - i;
        rc = grpc_wire_feed(r, body + i, k, e);
        i += k;
    }
    if (!rc)
        rc = grpc_wire_finish(r, e);
    grpc_wire_reader_free(r);
    return rc;
}

static void test_reader_any_cut(void **state)
{
    (void)state;
    static uint8_t body[3000];
    size_t len = add_msg(body, 0, 3, 'a');
    len = add_msg(body, len, 0, 0);       /* an empty message is a message */
    len = add_msg(body, len, 1000, 1);    /* longer than most pieces */
    len = add_msg(body, len, 1, 'z');
    len = add_msg(body, len, 200, 'A');
    struct got whole = {0};
    struct err e = {0};
    assert_int_equal(feed_cut(body, len, NULL, 0, 4096, &whole, &e), 0);
    assert_int_equal(whole.n, 5);
    assert_memory_equal(whole.all, "3:abc|0:|1000:", 14);
    for (size_t k = 1; k <= 40; k++) { /* every small piece size, across every boundary */
        struct got g = {0};
        assert_int_equal(feed_cut(body, len, &k, 1, 4096, &g, &e), 0);
        assert_int_equal(g.n, 5);
        assert_int_equal(g.len, whole.len);
        assert_memory_equal(g.all, whole.all, whole.len);
    }
    srand(12345);
    for (int t = 0; t < 200; t++) { /* random cuts, including empty pieces */
        size_t cuts[16];
        for (int i = 0; i < 16; i++)
            cuts[i] = (size_t)(rand() % 23);
        cuts[0] = cuts[0] ? cuts[0] : 1; /* at least one non-empty piece per cycle */
        struct got g = {0};
        assert_int_equal(feed_cut(body, len, cuts, 16, 4096, &g, &e), 0);
        assert_int_equal(g.len, whole.len);
        assert_memory_equal(g.all, whole.all, whole.len);
    }
}

static void test_reader_oversized(void **state)
{
    (void)state;
    struct got g = {0};
    struct err e = {0};
    struct grpc_wire_reader *r = grpc_wire_reader_new(100, collect, &g);
    assert_non_null(r);
    uint8_t body[16];
    size_t len = add_msg(body, 0, 2, 'x');
    assert_int_equal(grpc_wire_feed(r, body, len, &e), 0);
    /* 4 GiB claimed: refused from the prefix alone, nothing of it buffered */
    const uint8_t huge[5] = {0, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(grpc_wire_feed(r, huge, 3, &e), 0);
    assert_int_equal(grpc_wire_feed(r, huge + 3, 2, &e), ERR_RANGE);
    assert_non_null(strstr(e.msg, "message 1 at byte 7"));
    assert_non_null(strstr(e.msg, "limit is 100"));
    struct err e2 = {0};
    assert_int_equal(grpc_wire_feed(r, body, len, &e2), ERR_RANGE); /* stays failed */
    assert_string_equal(e2.msg, e.msg);
    assert_int_equal(grpc_wire_finish(r, &e2), ERR_RANGE);
    assert_int_equal(grpc_wire_count(r), 1);
    assert_int_equal(g.n, 1);
    grpc_wire_reader_free(r);
    /* exactly the limit is fine */
    static uint8_t b2[200];
    struct got g2 = {0};
    size_t n2 = add_msg(b2, 0, 100, 0);
    assert_int_equal(feed_cut(b2, n2, NULL, 0, 100, &g2, &e), 0);
    assert_int_equal(g2.n, 1);
}

static void test_reader_bad_flags(void **state)
{
    (void)state;
    struct err e = {0};
    struct got g = {0};
    uint8_t body[32];
    size_t len = add_msg(body, 0, 4, 'a');
    size_t at = len;
    len = add_msg(body, len, 4, 'b');
    body[at] = 1; /* compressed */
    size_t one = 1;
    assert_int_equal(feed_cut(body, len, &one, 1, 100, &g, &e), ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "message 1 at byte 9 is compressed"));
    assert_int_equal(g.n, 1);
    body[at] = 0x80; /* not a flag at all */
    memset(&g, 0, sizeof g);
    assert_int_equal(feed_cut(body, len, NULL, 0, 100, &g, &e), ERR_FORMAT);
    assert_non_null(strstr(e.msg, "compressed flag is 128"));
}

static void test_reader_truncated(void **state)
{
    (void)state;
    struct err e = {0};
    uint8_t body[32];
    size_t len = add_msg(body, 0, 4, 'a');
    len = add_msg(body, len, 6, 'b');
    struct got g = {0};
    assert_int_equal(feed_cut(body, len - 2, NULL, 0, 100, &g, &e), ERR_FORMAT);
    assert_non_null(strstr(e.msg, "inside message 1 at byte 9 (4 of 6 bytes)"));
    assert_int_equal(g.n, 1);
    memset(&g, 0, sizeof g);
    assert_int_equal(feed_cut(body, 12, NULL, 0, 100, &g, &e), ERR_FORMAT);
    assert_non_null(strstr(e.msg, "inside the prefix of message 1 at byte 9 (3 of 5"));
    memset(&g, 0, sizeof g);
    assert_int_equal(feed_cut(body, 0, NULL, 0, 100, &g, &e), 0); /* no message at all */
    assert_int_equal(g.n, 0);
}

static void test_reader_callback_stops(void **state)
{
    (void)state;
    struct err e = {0};
    uint8_t body[64];
    size_t len = 0;
    for (int i = 0; i < 4; i++)
        len = add_msg(body, len, 3, (uint8_t)('a' + 3 * i));
    struct got g = {.stop_at = 2};
    assert_int_equal(feed_cut(body, len, NULL, 0, 100, &g, &e), 7);
    assert_int_equal(g.n, 2); /* nothing after the stop */
    assert_non_null(strstr(e.msg, "callback stopped"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_pack_roundtrip),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_reader_any_cut),
        cmocka_unit_test(test_reader_oversized),
        cmocka_unit_test(test_reader_bad_flags),
        cmocka_unit_test(test_reader_truncated),
        cmocka_unit_test(test_reader_callback_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
