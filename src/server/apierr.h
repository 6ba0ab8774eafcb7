/*
 * apierr: the OpenAI-shaped error body every HTTP error carries, and the mapping
 * from our ERR_* codes and situations to HTTP status, type, code and gRPC status
 * (docs/API.md "Errors"; research/serving.md §2.3):
 *     {"error":{"message":"...","type":"invalid_request_error","param":null,
 *               "code":"invalid_json"}}
 * param and code are JSON null when not given; code is always a string.
 *
 *   kind                      status  type                        code
 *   APIERR_INVALID_JSON       400     invalid_request_error       invalid_json
 *   APIERR_MISSING_FIELD      400     invalid_request_error       missing_field
 *   APIERR_INVALID_PARAM      400     invalid_request_error       invalid_value
 *   APIERR_CONTEXT_LENGTH     400     invalid_request_error       context_length_exceeded
 *   APIERR_INVALID_KEY        401     authentication_error        invalid_api_key
 *   APIERR_MISSING_KEY        401     authentication_error        missing_api_key
 *   APIERR_PERMISSION         403     permission_error            insufficient_scope
 *   APIERR_NOT_FOUND          404     not_found_error             not_found
 *   APIERR_MODEL_NOT_FOUND    404     invalid_request_error       model_not_found
 *   APIERR_METHOD             405     invalid_request_error       method_not_allowed
 *   APIERR_TOO_LARGE          413     invalid_request_error       request_too_large
 *   APIERR_UNPROCESSABLE      422     invalid_request_error       invalid_parameters
 *   APIERR_RATE_LIMIT         429     rate_limit_error            rate_limit_exceeded
 *   APIERR_INTERNAL           500     server_error                internal_error
 *   APIERR_NOT_IMPLEMENTED    501     invalid_request_error       not_implemented
 *   APIERR_OVERLOADED         503     service_unavailable_error   server_is_overloaded
 *   APIERR_UNAVAILABLE        503     service_unavailable_error   service_unavailable
 *   APIERR_TIMEOUT            504     server_error                timeout
 *
 * Messages are the caller's text (never a key or prompt text); a NULL message
 * gets the kind's default sentence.
 * Threading: pure functions; any thread.
 */
#ifndef DS_SERVER_APIERR_H
#define DS_SERVER_APIERR_H

#include <stddef.h>

enum apierr_kind {
    APIERR_INVALID_JSON = 0,
    APIERR_MISSING_FIELD,
    APIERR_INVALID_PARAM,
    APIERR_CONTEXT_LENGTH,
    APIERR_INVALID_KEY,
    APIERR_MISSING_KEY,
    APIERR_PERMISSION,
    APIERR_NOT_FOUND,
    APIERR_MODEL_NOT_FOUND,
    APIERR_METHOD,
    APIERR_TOO_LARGE,
    APIERR_UNPROCESSABLE,
    APIERR_RATE_LIMIT,
    APIERR_INTERNAL,
    APIERR_NOT_IMPLEMENTED,
    APIERR_OVERLOADED,
    APIERR_UNAVAILABLE,
    APIERR_TIMEOUT,
    APIERR_N_KINDS
};

/* gRPC status codes (grpc/status.h numbering) for the gRPC front end. */
enum apierr_grpc {
    APIERR_GRPC_OK = 0,
    APIERR_GRPC_INVALID_ARGUMENT = 3,
    APIERR_GRPC_DEADLINE_EXCEEDED = 4,
    APIERR_GRPC_NOT_FOUND = 5,
    APIERR_GRPC_PERMISSION_DENIED = 7,
    APIERR_GRPC_RESOURCE_EXHAUSTED = 8,
    APIERR_GRPC_UNIMPLEMENTED = 12,
    APIERR_GRPC_INTERNAL = 13,
    APIERR_GRPC_UNAVAILABLE = 14,
    APIERR_GRPC_UNAUTHENTICATED = 16,
};

int apierr_status(enum apierr_kind k);          /* HTTP status */
const char *apierr_type(enum apierr_kind k);    /* "invalid_request_error", ... */
const char *apierr_code(enum apierr_kind k);    /* "invalid_json", ... */
const char *apierr_default_message(enum apierr_kind k);
enum apierr_grpc apierr_grpc_status(enum apierr_kind k);

/* The JSON body as a malloc'ed NUL-terminated string (caller frees), compact, one
 * line. message NULL = the default sentence; param NULL = JSON null. *len (may be
 * NULL) gets the length. NULL on no memory. */
char *apierr_body(enum apierr_kind k, const char *message, const char *param, size_t *len);

/* Like apierr_body with a printf-style message. */
char *apierr_bodyf(enum apierr_kind k, const char *param, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The kind for an engine/library error code: ERR_FORMAT -> INVALID_JSON;
 * ERR_RANGE, ERR_INVALID, ERR_UNSUPPORTED -> INVALID_PARAM; ERR_NOTFOUND ->
 * NOT_FOUND; ERR_NOMEM -> OVERLOADED (503, retryable); anything else -> INTERNAL. */
enum apierr_kind apierr_from_err(int err_code);

/* The kind whose HTTP status is status (the first in the table above), or
 * APIERR_INTERNAL for a status not in it. */
enum apierr_kind apierr_from_status(int status);

#endif
