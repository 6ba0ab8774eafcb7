/* grpc_wire: status names, message framing and the incremental message reader. */
#include "client/grpc_wire.h"

#include <protobuf-c/protobuf-c.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ status codes */

const char *grpc_wire_status_name(int code)
{
    static const char *const names[17] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED"};
    return code >= 0 && code < 17 ? names[code] : "UNKNOWN";
}

int grpc_wire_status_of_http(long http_status)
{
    switch (http_status) {
    case 400: return GRPC_WIRE_INTERNAL;
    case 401: return GRPC_WIRE_UNAUTHENTICATED;
    case 403: return GRPC_WIRE_PERMISSION_DENIED;
    case 404: return GRPC_WIRE_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504: return GRPC_WIRE_UNAVAILABLE;
    default: return GRPC_WIRE_UNKNOWN;
    }
}

int grpc_wire_parse_status(const char *value, int *code)
{
    *code = GRPC_WIRE_UNKNOWN;
    value += strspn(value, " \t");
    size_t nd = strspn(value, "0123456789");
    if (nd < 1 || nd > 3 || value[nd + strspn(value + nd, " \t")] != '\0')
        return ERR_FORMAT;
    int v = 0;
    for (size_t i = 0; i < nd; i++)
        v = v * 10 + (value[i] - '0');
    *code = v;
    return 0;
}

/* ------------------------------------------------------------ framing */

void grpc_wire_prefix(uint8_t out[GRPC_WIRE_PREFIX], uint32_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

uint8_t *grpc_wire_pack(const void *msg, size_t *len)
{
    const ProtobufCMessage *m = msg;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = n <= UINT32_MAX ? malloc(n + GRPC_WIRE_PREFIX) : NULL;
    if (!buf)
        return NULL;
    grpc_wire_prefix(buf, (uint32_t)n);
    protobuf_c_message_pack(m, buf + GRPC_WIRE_PREFIX);
    *len = n + GRPC_WIRE_PREFIX;
    return buf;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void grpc_wire_percent_decode(const char *s, size_t n, char *out, size_t size)
{
    size_t o = 0;
    if (!size)
        return;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        int hi = ch == '%' && i + 2 < n ? hex_val(s[i + 1]) : -1;
        int lo = hi >= 0 ? hex_val(s[i + 2]) : -1;
        if (lo >= 0) {
            ch = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        out[o++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    out[o] = '\0';
}

/* ------------------------------------------------------------ the reader */

struct grpc_wire_reader {
    size_t max;
    grpc_wire_msg_fn fn;
    void *arg;
    uint8_t hdr[GRPC_WIRE_PREFIX];
    size_t hdr_len;          /* prefix bytes of the current message so far */
    uint8_t *msg;            /* its body so far */
    size_t need, have, cap;  /* its length, bytes received, msg's size */
    size_t count;            /* messages delivered */
    unsigned long long at;   /* body offset of the current message's prefix */
    unsigned long long off;  /* body bytes consumed */
    struct err failed;       /* code != 0: the reader stopped with this */
};

struct grpc_wire_reader *grpc_wire_reader_new(size_t max_msg, grpc_wire_msg_fn fn, void *arg)
{
    struct grpc_wire_reader *r = calloc(1, sizeof *r);
    if (r) {
        r->max = max_msg;
        r->fn = fn;
        r->arg = arg;
    }
    return r;
}

void grpc_wire_reader_free(struct grpc_wire_reader *r)
{
    if (!r)
        return;
    free(r->msg);
    free(r);
}

size_t grpc_wire_count(const struct grpc_wire_reader *r) { return r->count; }

/* Stops the reader with rc; later calls return it again. The message is already
 * in r->failed for the reader's own errors; a callback's code gets a generic one. */
static int fail(struct grpc_wire_reader *r, int rc, struct err *e)
{
    if (r->failed.code != rc)
        err_set(&r->failed, rc, "grpc: the message callback stopped the reader at message "
                "%zu", r->count);
    if (e)
        *e = r->failed;
    return rc;
}

/* The prefix is complete: checks it and makes room for the message. */
static int start_message(struct grpc_wire_reader *r)
{
    const uint8_t *h = r->hdr;
    struct err *e = &r->failed;
    size_t n = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
    if (h[0] > 1)
        return err_set(e, ERR_FORMAT, "grpc: message %zu at byte %llu: compressed flag is %u "
                       "(must be 0 or 1)", r->count, r->at, h[0]);
    if (h[0] == 1)
        return err_set(e, ERR_UNSUPPORTED, "grpc: message %zu at byte %llu is compressed; "
                       "this client accepts identity only", r->count, r->at);
    if (n > r->max)
        return err_set(e, ERR_RANGE, "grpc: message %zu at byte %llu is %zu bytes; the limit "
                       "is %zu", r->count, r->at, n, r->max);
    if (n > r->cap) {
        uint8_t *p = realloc(r->msg, n);
        if (!p)
            return err_set(e, ERR_NOMEM, "grpc: out of memory for a %zu-byte message", n);
        r->msg = p;
        r->cap = n;
    }
    r->need = n;
    r->have = 0;
    return 0;
}

/* Hands one message to the callback and gets ready for the next prefix. */
static int deliver(struct grpc_wire_reader *r, const uint8_t *msg, size_t len)
{
    r->count++;
    r->hdr_len = 0;
    r->need = r->have = 0;
    r->at = r->off;
    return r->fn(r->arg, msg, len);
}

int grpc_wire_feed(struct grpc_wire_reader *r, const uint8_t *buf, size_t n, struct err *e)
{
    if (r->failed.code)
        return fail(r, r->failed.code, e);
    while (n > 0) {
        int rc = 0;
        if (r->hdr_len < GRPC_WIRE_PREFIX) {
            size_t k = GRPC_WIRE_PREFIX - r->hdr_len < n ? GRPC_WIRE_PREFIX - r->hdr_len : n;
            memcpy(r->hdr + r->hdr_len, buf, k);
            r->hdr_len += k;
            r->off += k;
            buf += k;
            n -= k;
            if (r->hdr_len == GRPC_WIRE_PREFIX && (rc = start_message(r)) == 0 &&
                r->need == 0)
                rc = deliver(r, r->msg, 0);
        } else if (r->have == 0 && n >= r->need) { /* whole in this piece: no copy */
            size_t k = r->need;
            r->off += k;
            rc = deliver(r, buf, k);
            buf += k;
            n -= k;
        } else {
            size_t k = r->need - r->have < n ? r->need - r->have : n;
            memcpy(r->msg + r->have, buf, k);
            r->have += k;
            r->off += k;
            buf += k;
            n -= k;
            if (r->have == r->need)
                rc = deliver(r, r->msg, r->need);
        }
        if (rc)
            return fail(r, rc, e);
    }
    return 0;
}

int grpc_wire_finish(struct grpc_wire_reader *r, struct err *e)
{
    if (r->failed.code)
        return fail(r, r->failed.code, e);
    if (r->hdr_len == 0)
        return 0;
    if (r->hdr_len < GRPC_WIRE_PREFIX)
        err_set(&r->failed, ERR_FORMAT, "grpc: the body ended inside the prefix of message "
                "%zu at byte %llu (%zu of 5 bytes)", r->count, r->at, r->hdr_len);
    else
        err_set(&r->failed, ERR_FORMAT, "grpc: the body ended inside message %zu at byte %llu "
                "(%zu of %zu bytes)", r->count, r->at, r->have, r->need);
    return fail(r, ERR_FORMAT, e);
}
