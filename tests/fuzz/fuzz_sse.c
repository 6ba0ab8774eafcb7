/* libFuzzer target for the SSE parser (client/sse.h) that reads a server's event
 * stream. The first byte picks a cut size; the rest is the stream. It is parsed twice,
 * whole and in pieces of that size, and the two must deliver the same events: where
 * the network cuts the bytes must never change what the client sees. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/sse.h"

struct log {
    char *all;
    size_t len;
};

static int collect(void *arg, const char *data, size_t len)
{
    struct log *l = arg;
    if (data[len] != '\0')
        abort();
    char *p = realloc(l->all, l->len + len + 1);
    if (!p)
        abort();
    memcpy(p + l->len, data, len);
    p[l->len + len] = '\x1e'; /* event separator */
    l->all = p;
    l->len += len + 1;
    return 0;
}

/* Parses buf in pieces of `cut` bytes (0: whole); the result code. */
static int parse(const uint8_t *buf, size_t n, size_t cut, struct log *l)
{
    struct sse *s = sse_new(4096, collect, l);
    if (!s)
        abort();
    struct err e;
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t k = cut && n - i > cut ? cut : n - i;
        rc = sse_feed(s, (const char *)buf + i, k, &e);
        i += k;
    }
    if (!rc)
        rc = sse_finish(s, &e);
    sse_free(s);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cut = 1 + data[0] % 16;
    struct log a = {0}, b = {0};
    int ra = parse(data + 1, size - 1, 0, &a);
    int rb = parse(data + 1, size - 1, cut, &b);
    /* Over-long input may fail at a different event, but success must agree exactly. */
    if ((ra == 0) != (rb == 0) || (ra == 0 && (a.len != b.len || memcmp(a.all, b.all, a.len))))
        abort();
    free(a.all);
    free(b.all);
    return 0;
}
