/*
 * grpc_wire: the client's side of the gRPC wire format, apart from the network so
 * it can be unit-tested and fuzzed (tests/fuzz/fuzz_grpc_wire.c).
 *
 *   Length-prefixed message: 1 byte compressed flag, 4 bytes big-endian length, then
 *   the protobuf bytes. A response body is any number of them back to back, and the
 *   network cuts it anywhere: inside a prefix, inside a message, between two.
 *   grpc-message: percent-encoded UTF-8.
 *   Status codes: the 17 names of grpc's status.proto, and the HTTP-to-gRPC mapping
 *   of grpc's http-grpc-status-mapping.md for answers that are not gRPC at all
 *   (a proxy's 503).
 *
 * The reader keeps the part of a message received so far and calls the message
 * callback once per complete message. Limits: a message over max_msg bytes is
 * refused from its prefix alone (ERR_RANGE), before any of it is buffered, so a
 * hostile server cannot make the client allocate without bound. A compressed
 * message is ERR_UNSUPPORTED (the client sends no grpc-accept-encoding, so a server
 * may not compress); a flag other than 0 or 1 is ERR_FORMAT. After an error the
 * reader stays failed: later feeds return the same code.
 *
 * (The server's src/server/grpc_frame.h holds the same prefix writer and packer,
 * next to request decoding that needs the engine's types; a client must not depend
 * on server/, hence this module.)
 *
 * Ownership: a reader owns its buffer; the message passed to the callback is
 * borrowed for the call only. Threading: one thread per reader; the rest is pure.
 */
#ifndef DS_CLIENT_GRPC_WIRE_H
#define DS_CLIENT_GRPC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define GRPC_WIRE_PREFIX 5
#define GRPC_WIRE_MAX_DEFAULT (4u << 20) /* grpc's own default receive limit */

/* Status codes (grpc/status.proto). */
enum {
    GRPC_WIRE_OK = 0,
    GRPC_WIRE_CANCELLED = 1,
    GRPC_WIRE_UNKNOWN = 2,
    GRPC_WIRE_INVALID_ARGUMENT = 3,
    GRPC_WIRE_DEADLINE_EXCEEDED = 4,
    GRPC_WIRE_NOT_FOUND = 5,
    GRPC_WIRE_ALREADY_EXISTS = 6,
    GRPC_WIRE_PERMISSION_DENIED = 7,
    GRPC_WIRE_RESOURCE_EXHAUSTED = 8,
    GRPC_WIRE_FAILED_PRECONDITION = 9,
    GRPC_WIRE_ABORTED = 10,
    GRPC_WIRE_OUT_OF_RANGE = 11,
    GRPC_WIRE_UNIMPLEMENTED = 12,
    GRPC_WIRE_INTERNAL = 13,
    GRPC_WIRE_UNAVAILABLE = 14,
    GRPC_WIRE_DATA_LOSS = 15,
    GRPC_WIRE_UNAUTHENTICATED = 16,
};

/* "UNAUTHENTICATED" for 16; "UNKNOWN" for a code outside 0..16. */
const char *grpc_wire_status_name(int code);

/* The gRPC status an HTTP status other than 200 stands for: 400 INTERNAL, 401
 * UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504
 * UNAVAILABLE, anything else UNKNOWN. */
int grpc_wire_status_of_http(long http_status);

/* Parses a grpc-status value: 1..3 ASCII digits, 0..99 (leading/trailing blanks
 * allowed). 0 or ERR_FORMAT. */
int grpc_wire_parse_status(const char *value, int *code);

/* Writes the 5-byte prefix of an uncompressed message of len bytes. */
void grpc_wire_prefix(uint8_t out[GRPC_WIRE_PREFIX], uint32_t len);

/* Packs a protobuf-c message (a const ProtobufCMessage *) with its prefix into a
 * malloc'ed buffer (caller frees). NULL on no memory or a message over 4 GiB. */
uint8_t *grpc_wire_pack(const void *msg, size_t *len);

/* Decodes n bytes of a percent-encoded grpc-message into out (always NUL-terminated,
 * truncated to fit). A '%' not followed by two hex digits is kept as it is. Control
 * bytes (below 0x20, and 0x7f) become '?': the text ends up in one-line messages. */
void grpc_wire_percent_decode(const char *s, size_t n, char *out, size_t size);

struct grpc_wire_reader;

/* Receives one complete message (the protobuf bytes, prefix stripped); nonzero
 * stops the reader, and grpc_wire_feed returns that value. */
typedef int (*grpc_wire_msg_fn)(void *arg, const uint8_t *msg, size_t len);

/* A reader calling fn(arg, ...) per message, refusing messages over max_msg bytes.
 * NULL when out of memory. */
struct grpc_wire_reader *grpc_wire_reader_new(size_t max_msg, grpc_wire_msg_fn fn, void *arg);
void grpc_wire_reader_free(struct grpc_wire_reader *r);

/* Parses n more body bytes. 0; the callback's nonzero value; or ERR_FORMAT,
 * ERR_RANGE, ERR_UNSUPPORTED, ERR_NOMEM with e naming the message's index and byte
 * offset in the body. */
int grpc_wire_feed(struct grpc_wire_reader *r, const uint8_t *buf, size_t n, struct err *e);

/* End of the body: 0 when it ended between messages, ERR_FORMAT when inside one
 * (or the reader's earlier error). */
int grpc_wire_finish(struct grpc_wire_reader *r, struct err *e);

/* Messages delivered so far. */
size_t grpc_wire_count(const struct grpc_wire_reader *r);

#endif
