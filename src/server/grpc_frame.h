/*
 * grpc_frame: the pure parts of the gRPC wire protocol, kept apart from the
 * network so they can be unit-tested and fuzzed (tests/fuzz/fuzz_grpc.c).
 *
 *   Length-prefixed message: 1 byte compressed flag (0/1), 4 bytes big-endian
 *   length, then the protobuf bytes. A unary or server-streaming request body holds
 *   exactly one such message.
 *   grpc-timeout: 1..8 ASCII digits and a unit H M S m u n.
 *   grpc-message: percent-encoded UTF-8 (bytes outside 0x20..0x7e and '%').
 *   GenerateRequest decoding: protobuf-c unpack plus our range checks, into the
 *   engine's request_params and chat messages.
 *
 * Threading: pure functions; any thread. Ownership noted per function.
 */
#ifndef DS_SERVER_GRPC_FRAME_H
#define DS_SERVER_GRPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/request.h"
#include "model/chat.h"

#define GRPC_FRAME_PREFIX 5
#define GRPC_MAX_MESSAGE_DEFAULT (4u << 20) /* grpc's own default receive limit */

/* Finds the one message in body[0..len). 0 with *msg and *msg_len pointing into body;
 * ERR_FORMAT (fewer than 5 bytes, length beyond the body, bytes after the message,
 * flag not 0/1), ERR_RANGE (length > max_msg), ERR_UNSUPPORTED (compressed flag:
 * we accept no grpc-encoding). err names what was wrong. */
int grpc_frame_parse(const uint8_t *body, size_t len, size_t max_msg, const uint8_t **msg,
                     size_t *msg_len, struct err *err);

/* Writes the 5-byte prefix of an uncompressed message of len bytes. */
void grpc_frame_prefix(uint8_t out[GRPC_FRAME_PREFIX], uint32_t len);

/* grpc-timeout's value to milliseconds (rounded up, at least 1). 0 or ERR_FORMAT. */
int grpc_frame_timeout_ms(const char *s, int64_t *ms);

/* Percent-encodes s into out (always NUL-terminated, truncated to fit). */
void grpc_frame_percent_encode(const char *s, char *out, size_t size);

/* Server defaults for fields a request leaves at 0. */
struct grpc_frame_defaults {
    float temperature, top_p;
};

/* A decoded GenerateRequest. Strings point into the unpacked message (owned here). */
struct grpc_frame_gen {
    void *msg;                  /* GenerateRequest * (protobuf-c) */
    struct request_params rp;   /* sampling, max_tokens (0 = not given), stop */
    const char *model;          /* "" = any */
    struct chat_message *msgs;  /* messages, or the prompt as one user turn */
    size_t n_msgs;
};

/* Unpacks and checks a GenerateRequest. 0, or ERR_FORMAT (not a valid message),
 * ERR_RANGE / ERR_INVALID (a field out of range, no prompt: err names the field),
 * ERR_NOMEM. out is cleared on failure; free with grpc_frame_gen_free. */
int grpc_frame_decode_generate(const uint8_t *data, size_t len,
                               const struct grpc_frame_defaults *d, struct grpc_frame_gen *out,
                               struct err *err);
void grpc_frame_gen_free(struct grpc_frame_gen *g);

/* The service name of a grpc.health.v1.HealthCheckRequest, copied into out
 * (truncated). 0 or ERR_FORMAT. */
int grpc_frame_decode_health(const uint8_t *data, size_t len, char *out, size_t size,
                             struct err *err);

/* Packs a message (a ProtobufCMessage *) with its 5-byte prefix into a malloc'ed
 * buffer. NULL on no memory or a message over 4 GiB. */
uint8_t *grpc_frame_pack(const void *msg, size_t *len);

#endif
