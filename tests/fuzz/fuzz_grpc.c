/*
 * fuzz_grpc: arbitrary bytes through the gRPC request path's pure parsers: the
 * length-prefixed framing (grpc_frame_parse), GenerateRequest decoding and checks
 * (grpc_frame_decode_generate), HealthCheckRequest decoding, grpc-timeout parsing
 * and grpc-message percent-encoding. Aborts when a parse accepts a frame whose
 * message does not lie inside the input or an encoded message is not printable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/grpc_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e = {0};
    const uint8_t *msg;
    size_t len;
    /* a small limit too, so the RESOURCE_EXHAUSTED path is reached */
    size_t max = size && (data[0] & 0x80) ? 64 : GRPC_MAX_MESSAGE_DEFAULT;
    if (grpc_frame_parse(data, size, max, &msg, &len, &e) == 0) {
        if (msg < data || msg + len > data + size || len > max)
            abort();
        struct grpc_frame_defaults d = {0.8f, 0.95f};
        struct grpc_frame_gen g;
        if (grpc_frame_decode_generate(msg, len, &d, &g, &e) == 0) {
            if (g.n_msgs < 1 || g.rp.n_stop > REQUEST_MAX_STOP)
                abort();
            for (size_t i = 0; i < g.n_msgs; i++)
                if (!g.msgs[i].content)
                    abort();
            grpc_frame_gen_free(&g);
        }
        char svc[64];
        grpc_frame_decode_health(msg, len, svc, sizeof svc, &e);
    }
    char s[64], enc[64 * 3 + 1];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    int64_t ms;
    if (grpc_frame_timeout_ms(s, &ms) == 0 && ms < 1)
        abort();
    grpc_frame_percent_encode(s, enc, sizeof enc);
    for (const char *p = enc; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            abort();
    return 0;
}
