/* grpc_frame: message framing, grpc-timeout, percent-encoding, request decoding. */
#include "server/grpc_frame.h"

#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stop.h"
#include "proto/deepseek.pb-c.h"
#include "proto/health.pb-c.h"

int grpc_frame_parse(const uint8_t *body, size_t len, size_t max_msg, const uint8_t **msg,
                     size_t *msg_len, struct err *err)
{
    *msg = NULL;
    *msg_len = 0;
    if (len < GRPC_FRAME_PREFIX)
        return err_set(err, ERR_FORMAT, "grpc: the body has %zu bytes, fewer than the 5-byte "
                       "message prefix", len);
    if (body[0] > 1)
        return err_set(err, ERR_FORMAT, "grpc: compressed flag is %u (must be 0 or 1)", body[0]);
    if (body[0] == 1)
        return err_set(err, ERR_UNSUPPORTED, "grpc: compressed messages are not supported");
    size_t n = (size_t)body[1] << 24 | (size_t)body[2] << 16 | (size_t)body[3] << 8 | body[4];
    if (n > max_msg)
        return err_set(err, ERR_RANGE, "grpc: message is %zu bytes; the limit is %zu", n,
                       max_msg);
    if (n != len - GRPC_FRAME_PREFIX)
        return err_set(err, ERR_FORMAT, "grpc: message prefix says %zu bytes, the body has "
                       "%zu after it (one message expected)", n, len - GRPC_FRAME_PREFIX);
    *msg = body + GRPC_FRAME_PREFIX;
    *msg_len = n;
    return 0;
}

void grpc_frame_prefix(uint8_t out[GRPC_FRAME_PREFIX], uint32_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

int grpc_frame_timeout_ms(const char *s, int64_t *ms)
{
    *ms = 0;
    size_t nd = strspn(s, "0123456789");
    if (nd < 1 || nd > 8 || strlen(s) != nd + 1)
        return ERR_FORMAT;
    int64_t v = 0;
    for (size_t i = 0; i < nd; i++)
        v = v * 10 + (s[i] - '0');
    switch (s[nd]) { /* to microseconds first, then round up to milliseconds */
    case 'H': v *= 3600LL * 1000000; break;
    case 'M': v *= 60LL * 1000000; break;
    case 'S': v *= 1000000; break;
    case 'm': v *= 1000; break;
    case 'u': break;
    case 'n': v = (v + 999) / 1000; break;
    default: return ERR_FORMAT;
    }
    *ms = (v + 999) / 1000;
    if (*ms < 1)
        *ms = 1;
    return 0;
}

void grpc_frame_percent_encode(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (!size)
        return;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
        if (o + (plain ? 1 : 3) >= size)
            break;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

static int parse_role(const char *r, enum chat_role *out)
{
    if (!strcmp(r, "system"))
        *out = CHAT_ROLE_SYSTEM;
    else if (!strcmp(r, "user"))
        *out = CHAT_ROLE_USER;
    else if (!strcmp(r, "assistant"))
        *out = CHAT_ROLE_ASSISTANT;
    else
        return ERR_INVALID;
    return 0;
}

/* Fields -> request_params; the unpacked message stays alive for the strings. */
static int gen_params(const GenerateRequest *m, const struct grpc_frame_defaults *d,
                      struct grpc_frame_gen *g, struct err *err)
{
    struct sampler_params *sp = &g->rp.sampling;
    *sp = sampler_params_default();
    sp->temperature = m->temperature != 0 ? m->temperature : d->temperature;
    sp->top_p = m->top_p != 0 ? m->top_p : d->top_p;
    if (m->top_k < 0)
        return err_set(err, ERR_RANGE, "top_k: %d is negative", (int)m->top_k);
    sp->top_k = m->top_k;
    sp->has_seed = m->seed != 0;
    sp->seed = (uint64_t)m->seed;
    int rc = sampler_params_check(sp, err);
    if (rc)
        return rc;
    if (m->max_tokens < 0)
        return err_set(err, ERR_RANGE, "max_tokens: %d is negative", (int)m->max_tokens);
    g->rp.max_tokens = m->max_tokens;
    if (m->n_stop > REQUEST_MAX_STOP)
        return err_set(err, ERR_RANGE, "stop: %zu strings; at most %d", m->n_stop,
                       REQUEST_MAX_STOP);
    for (size_t i = 0; i < m->n_stop; i++) {
        size_t n = strlen(m->stop[i]);
        if (n == 0 || n > STOP_MAX_LEN)
            return err_set(err, ERR_RANGE, "stop: each stop string must have 1..%d bytes",
                           STOP_MAX_LEN);
        g->rp.stop[g->rp.n_stop++] = m->stop[i];
    }
    g->rp.think_start = g->rp.think_end = -1;
    g->model = m->model;
    return 0;
}

static int gen_messages(const GenerateRequest *m, struct grpc_frame_gen *g, struct err *err)
{
    size_t n = m->n_messages ? m->n_messages : 1;
    if (!m->n_messages && !m->prompt[0])
        return err_set(err, ERR_INVALID, "prompt: required (or messages)");
    if (!(g->msgs = calloc(n, sizeof *g->msgs)))
        return err_set(err, ERR_NOMEM, "out of memory");
    g->n_msgs = n;
    if (!m->n_messages) {
        g->msgs[0] = (struct chat_message){CHAT_ROLE_USER, m->prompt};
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (parse_role(m->messages[i]->role, &g->msgs[i].role))
            return err_set(err, ERR_INVALID, "messages[%zu].role: must be system, user or "
                           "assistant", i);
        g->msgs[i].content = m->messages[i]->content;
    }
    return 0;
}

int grpc_frame_decode_generate(const uint8_t *data, size_t len,
                               const struct grpc_frame_defaults *d, struct grpc_frame_gen *out,
                               struct err *err)
{
    memset(out, 0, sizeof *out);
    GenerateRequest *m = generate_request__unpack(NULL, len, data);
    if (!m)
        return err_set(err, ERR_FORMAT, "grpc: the GenerateRequest (%zu bytes) does not "
                       "decode", len);
    out->msg = m;
    int rc = gen_params(m, d, out, err);
    if (!rc)
        rc = gen_messages(m, out, err);
    if (rc)
        grpc_frame_gen_free(out);
    return rc;
}

void grpc_frame_gen_free(struct grpc_frame_gen *g)
{
    if (g->msg)
        generate_request__free_unpacked(g->msg, NULL);
    free(g->msgs);
    memset(g, 0, sizeof *g);
}

int grpc_frame_decode_health(const uint8_t *data, size_t len, char *out, size_t size,
                             struct err *err)
{
    Grpc__Health__V1__HealthCheckRequest *m =
        grpc__health__v1__health_check_request__unpack(NULL, len, data);
    if (!m)
        return err_set(err, ERR_FORMAT, "grpc: the HealthCheckRequest does not decode");
    snprintf(out, size, "%s", m->service);
    grpc__health__v1__health_check_request__free_unpacked(m, NULL);
    return 0;
}

uint8_t *grpc_frame_pack(const void *msg, size_t *len)
{
    const ProtobufCMessage *m = msg;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = n <= UINT32_MAX ? malloc(n + GRPC_FRAME_PREFIX) : NULL;
    if (!buf)
        return NULL;
    grpc_frame_prefix(buf, (uint32_t)n);
    protobuf_c_message_pack(m, buf + GRPC_FRAME_PREFIX);
    *len = n + GRPC_FRAME_PREFIX;
    return buf;
}
