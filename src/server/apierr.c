/*
 * apierr: see apierr.h. One table row per kind; bodies are built with jansson so
 * quoting and escaping of the message are jansson's, not ours.
 */
#include "server/apierr.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/err.h"

struct row {
    int status;
    const char *type, *code, *message;
    enum apierr_grpc grpc;
};

static const struct row rows[APIERR_N_KINDS] = {
    [APIERR_INVALID_JSON] = {400, "invalid_request_error", "invalid_json",
                             "The request body is not valid JSON.",
                             APIERR_GRPC_INVALID_ARGUMENT},
    [APIERR_MISSING_FIELD] = {400, "invalid_request_error", "missing_field",
                              "A required field is missing.", APIERR_GRPC_INVALID_ARGUMENT},
    [APIERR_INVALID_PARAM] = {400, "invalid_request_error", "invalid_value",
                              "A parameter has an invalid value.",
                              APIERR_GRPC_INVALID_ARGUMENT},
    [APIERR_CONTEXT_LENGTH] = {400, "invalid_request_error", "context_length_exceeded",
                               "The prompt and max_tokens exceed the model's context length.",
                               APIERR_GRPC_INVALID_ARGUMENT},
    [APIERR_INVALID_KEY] = {401, "authentication_error", "invalid_api_key",
                            "Incorrect API key provided.", APIERR_GRPC_UNAUTHENTICATED},
    [APIERR_MISSING_KEY] = {401, "authentication_error", "missing_api_key",
                            "No API key provided: send 'Authorization: Bearer <key>'.",
                            APIERR_GRPC_UNAUTHENTICATED},
    [APIERR_PERMISSION] = {403, "permission_error", "insufficient_scope",
                           "This API key may not use this endpoint.",
                           APIERR_GRPC_PERMISSION_DENIED},
    [APIERR_NOT_FOUND] = {404, "not_found_error", "not_found", "No such endpoint or resource.",
                          APIERR_GRPC_NOT_FOUND},
    [APIERR_MODEL_NOT_FOUND] = {404, "invalid_request_error", "model_not_found",
                                "The model does not exist.", APIERR_GRPC_NOT_FOUND},
    [APIERR_METHOD] = {405, "invalid_request_error", "method_not_allowed",
                       "Method not allowed for this endpoint.", APIERR_GRPC_UNIMPLEMENTED},
    [APIERR_TOO_LARGE] = {413, "invalid_request_error", "request_too_large",
                          "The request body is too large.", APIERR_GRPC_RESOURCE_EXHAUSTED},
    [APIERR_UNPROCESSABLE] = {422, "invalid_request_error", "invalid_parameters",
                              "Invalid parameters.", APIERR_GRPC_INVALID_ARGUMENT},
    [APIERR_RATE_LIMIT] = {429, "rate_limit_error", "rate_limit_exceeded",
                           "Rate limit reached; retry after the time in Retry-After.",
                           APIERR_GRPC_RESOURCE_EXHAUSTED},
    [APIERR_INTERNAL] = {500, "server_error", "internal_error",
                         "The server had an error while processing your request.",
                         APIERR_GRPC_INTERNAL},
    [APIERR_NOT_IMPLEMENTED] = {501, "invalid_request_error", "not_implemented",
                                "This feature is not implemented.", APIERR_GRPC_UNIMPLEMENTED},
    [APIERR_OVERLOADED] = {503, "service_unavailable_error", "server_is_overloaded",
                           "The server is overloaded; retry after the time in Retry-After.",
                           APIERR_GRPC_UNAVAILABLE},
    [APIERR_UNAVAILABLE] = {503, "service_unavailable_error", "service_unavailable",
                            "The service is not ready (loading or shutting down).",
                            APIERR_GRPC_UNAVAILABLE},
    [APIERR_TIMEOUT] = {504, "server_error", "timeout", "The request timed out.",
                        APIERR_GRPC_DEADLINE_EXCEEDED},
};

static const struct row *row_of(enum apierr_kind k)
{
    return &rows[(unsigned)k < APIERR_N_KINDS ? k : APIERR_INTERNAL];
}

int apierr_status(enum apierr_kind k) { return row_of(k)->status; }
const char *apierr_type(enum apierr_kind k) { return row_of(k)->type; }
const char *apierr_code(enum apierr_kind k) { return row_of(k)->code; }
const char *apierr_default_message(enum apierr_kind k) { return row_of(k)->message; }
enum apierr_grpc apierr_grpc_status(enum apierr_kind k) { return row_of(k)->grpc; }

/* A JSON string of s; bytes that are not valid UTF-8 become '?' (the message may
 * quote a client's bytes). NULL on no memory. */
static json_t *utf8_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

char *apierr_body(enum apierr_kind k, const char *message, const char *param, size_t *len)
{
    const struct row *r = row_of(k);
    json_t *err = json_object();
    json_t *root = json_object();
    char *out = NULL;
    if (!err || !root)
        goto done;
    json_t *msg = utf8_string(message ? message : r->message);
    json_t *par = param ? utf8_string(param) : json_null();
    /* set_new takes each value even when it fails, so nothing leaks on a bail-out */
    int bad = json_object_set_new(err, "message", msg);
    bad |= json_object_set_new(err, "type", json_string(r->type));
    bad |= json_object_set_new(err, "param", par);
    bad |= json_object_set_new(err, "code", json_string(r->code));
    if (bad)
        goto done;
    if (json_object_set(root, "error", err))
        goto done;
    out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (out && len)
        *len = strlen(out);
done:
    json_decref(err);
    json_decref(root);
    return out;
}

char *apierr_bodyf(enum apierr_kind k, const char *param, size_t *len, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return apierr_body(k, msg, param, len);
}

enum apierr_kind apierr_from_err(int err_code)
{
    switch (err_code) {
    case ERR_FORMAT: return APIERR_INVALID_JSON;
    case ERR_RANGE:
    case ERR_INVALID:
    case ERR_UNSUPPORTED: return APIERR_INVALID_PARAM;
    case ERR_NOTFOUND: return APIERR_NOT_FOUND;
    case ERR_NOMEM: return APIERR_OVERLOADED;
    default: return APIERR_INTERNAL;
    }
}

enum apierr_kind apierr_from_status(int status)
{
    for (int k = 0; k < APIERR_N_KINDS; k++)
        if (rows[k].status == status)
            return (enum apierr_kind)k;
    return APIERR_INTERNAL;
}
