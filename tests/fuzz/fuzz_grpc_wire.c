/* libFuzzer target for the gRPC message reader (client/grpc_wire.h) that reads a
 * server's response body. The first byte picks a cut size; the rest is the body. It
 * is parsed twice, whole and in pieces of that size, and both must deliver the same
 * messages and the same result: where the network cuts the bytes must never change
 * what the client sees. Each message is also handed to protobuf-c as the
 * GenerateResponse the client expects, as grpc_client does. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/grpc_wire.h"
#include "proto/deepseek.pb-c.h"

struct log {
    uint8_t *all;
    size_t len;
};

static int collect(void *arg, const uint8_t *msg, size_t len)
{
    struct log *l = arg;
    uint8_t *p = realloc(l->all, l->len + len + 9);
    if (!p)
        abort();
    memcpy(p + l->len, &len, sizeof len < 8 ? sizeof len : 8);
    p[l->len + 8] = 0x1e; /* message separator */
    if (len)
        memcpy(p + l->len + 9, msg, len);
    l->all = p;
    l->len += len + 9;
    GenerateResponse *r = generate_response__unpack(NULL, len, msg);
    if (r)
        generate_response__free_unpacked(r, NULL);
    return 0;
}

/* Parses buf in pieces of `cut` bytes (0: whole); the result code. */
static int parse(const uint8_t *buf, size_t n, size_t cut, struct log *l)
{
    struct grpc_wire_reader *r = grpc_wire_reader_new(4096, collect, l);
    if (!r)
        abort();
    struct err e;
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t k = cut && n - i > cut ? cut : n - i;
        rc = grpc_wire_feed(r, buf + i, k, &e);
        i += k;
    }
    if (!rc)
        rc = grpc_wire_finish(r, &e);
    grpc_wire_reader_free(r);
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
    if (ra != rb || a.len != b.len || (a.len && memcmp(a.all, b.all, a.len)))
        abort();
    free(a.all);
    free(b.all);
    return 0;
}
