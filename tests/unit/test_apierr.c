/* Unit tests for server/apierr: each kind's status, type, code and gRPC status
 * against research/serving.md §2.3; bodies parse back as JSON with exactly the
 * OpenAI shape (message, type, param, code; param null or a string); hostile
 * messages (quotes, newlines, invalid UTF-8) stay one valid line; ERR_* and
 * status mappings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/err.h"
#include "server/apierr.h"

/* Parses body and checks the shape; returns the inner "error" object (borrowed
 * from *root, which the caller decrefs). */
static json_t *parse_error(const char *body, json_t **root)
{
    json_error_t je;
    *root = json_loads(body, 0, &je);
    if (!*root)
        fail_msg("not JSON (%s): %s", je.text, body);
    assert_int_equal(json_object_size(*root), 1);
    json_t *e = json_object_get(*root, "error");
    assert_true(json_is_object(e));
    assert_int_equal(json_object_size(e), 4);
    assert_true(json_is_string(json_object_get(e, "message")));
    assert_true(json_is_string(json_object_get(e, "type")));
    assert_true(json_is_string(json_object_get(e, "code")));
    json_t *param = json_object_get(e, "param");
    assert_true(json_is_null(param) || json_is_string(param));
    assert_null(strchr(body, '\n')); /* one line */
    return e;
}

static void test_table(void **state)
{
    (void)state;
    static const struct {
        enum apierr_kind k;
        int status;
        const char *type, *code;
        enum apierr_grpc grpc;
    } want[] = {
        {APIERR_INVALID_JSON, 400, "invalid_request_error", "invalid_json",
         APIERR_GRPC_INVALID_ARGUMENT},
        {APIERR_CONTEXT_LENGTH, 400, "invalid_request_error", "context_length_exceeded",
         APIERR_GRPC_INVALID_ARGUMENT},
        {APIERR_INVALID_KEY, 401, "authentication_error", "invalid_api_key",
         APIERR_GRPC_UNAUTHENTICATED},
        {APIERR_MISSING_KEY, 401, "authentication_error", "missing_api_key",
         APIERR_GRPC_UNAUTHENTICATED},
        {APIERR_PERMISSION, 403, "permission_error", "insufficient_scope",
         APIERR_GRPC_PERMISSION_DENIED},
        {APIERR_NOT_FOUND, 404, "not_found_error", "not_found", APIERR_GRPC_NOT_FOUND},
        {APIERR_MODEL_NOT_FOUND, 404, "invalid_request_error", "model_not_found",
         APIERR_GRPC_NOT_FOUND},
        {APIERR_TOO_LARGE, 413, "invalid_request_error", "request_too_large",
         APIERR_GRPC_RESOURCE_EXHAUSTED},
        {APIERR_UNPROCESSABLE, 422, "invalid_request_error", "invalid_parameters",
         APIERR_GRPC_INVALID_ARGUMENT},
        {APIERR_RATE_LIMIT, 429, "rate_limit_error", "rate_limit_exceeded",
         APIERR_GRPC_RESOURCE_EXHAUSTED},
        {APIERR_INTERNAL, 500, "server_error", "internal_error", APIERR_GRPC_INTERNAL},
        {APIERR_OVERLOADED, 503, "service_unavailable_error", "server_is_overloaded",
         APIERR_GRPC_UNAVAILABLE},
        {APIERR_UNAVAILABLE, 503, "service_unavailable_error", "service_unavailable",
         APIERR_GRPC_UNAVAILABLE},
        {APIERR_TIMEOUT, 504, "server_error", "timeout", APIERR_GRPC_DEADLINE_EXCEEDED},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(apierr_status(want[i].k), want[i].status);
        assert_string_equal(apierr_type(want[i].k), want[i].type);
        assert_string_equal(apierr_code(want[i].k), want[i].code);
        assert_int_equal(apierr_grpc_status(want[i].k), want[i].grpc);
    }
    /* every kind has a complete row and a well-formed default body */
    for (int k = 0; k < APIERR_N_KINDS; k++) {
        assert_true(apierr_status(k) >= 400 && apierr_status(k) < 600);
        assert_true(strlen(apierr_default_message(k)) > 5);
        size_t len;
        char *b = apierr_body(k, NULL, NULL, &len);
        assert_non_null(b);
        assert_int_equal(strlen(b), len);
        json_t *root, *e = parse_error(b, &root);
        assert_string_equal(json_string_value(json_object_get(e, "message")),
                            apierr_default_message(k));
        assert_true(json_is_null(json_object_get(e, "param")));
        json_decref(root);
        free(b);
    }
    /* out-of-range kinds answer as internal errors instead of reading past the table */
    assert_int_equal(apierr_status((enum apierr_kind)999), 500);
}

static void test_body_exact(void **state)
{
    (void)state;
    char *b = apierr_body(APIERR_CONTEXT_LENGTH, "This model's maximum context length is 4096 "
                          "tokens.", "messages", NULL);
    assert_string_equal(b, "{\"error\":{\"message\":\"This model's maximum context length is "
                           "4096 tokens.\",\"type\":\"invalid_request_error\",\"param\":"
                           "\"messages\",\"code\":\"context_length_exceeded\"}}");
    free(b);
    b = apierr_bodyf(APIERR_RATE_LIMIT, NULL, NULL, "Rate limit reached for requests: limit %d, "
                     "retry in %ds.", 60, 12);
    json_t *root, *e = parse_error(b, &root);
    assert_string_equal(json_string_value(json_object_get(e, "message")),
                        "Rate limit reached for requests: limit 60, retry in 12s.");
    assert_string_equal(json_string_value(json_object_get(e, "type")), "rate_limit_error");
    json_decref(root);
    free(b);
}

static void test_hostile_message(void **state)
{
    (void)state;
    char *b = apierr_body(APIERR_INVALID_PARAM, "bad \"x\"\n}\\ \x01 end", "a\"b", NULL);
    json_t *root, *e = parse_error(b, &root);
    assert_string_equal(json_string_value(json_object_get(e, "message")),
                        "bad \"x\"\n}\\ \x01 end");
    assert_string_equal(json_string_value(json_object_get(e, "param")), "a\"b");
    json_decref(root);
    free(b);
    /* bytes that are not UTF-8 become '?' instead of failing the whole body */
    b = apierr_body(APIERR_INVALID_PARAM, "field \xff\xfe name", NULL, NULL);
    e = parse_error(b, &root);
    assert_string_equal(json_string_value(json_object_get(e, "message")), "field ?? name");
    json_decref(root);
    free(b);
}

static void test_mappings(void **state)
{
    (void)state;
    assert_int_equal(apierr_from_err(ERR_FORMAT), APIERR_INVALID_JSON);
    assert_int_equal(apierr_from_err(ERR_RANGE), APIERR_INVALID_PARAM);
    assert_int_equal(apierr_from_err(ERR_INVALID), APIERR_INVALID_PARAM);
    assert_int_equal(apierr_from_err(ERR_UNSUPPORTED), APIERR_INVALID_PARAM);
    assert_int_equal(apierr_from_err(ERR_NOTFOUND), APIERR_NOT_FOUND);
    assert_int_equal(apierr_from_err(ERR_NOMEM), APIERR_OVERLOADED);
    assert_int_equal(apierr_from_err(ERR_IO), APIERR_INTERNAL);
    assert_int_equal(apierr_from_err(ERR_INTERNAL), APIERR_INTERNAL);
    assert_int_equal(apierr_from_status(429), APIERR_RATE_LIMIT);
    assert_int_equal(apierr_from_status(401), APIERR_INVALID_KEY);
    assert_int_equal(apierr_from_status(503), APIERR_OVERLOADED);
    assert_int_equal(apierr_from_status(404), APIERR_NOT_FOUND);
    assert_int_equal(apierr_from_status(418), APIERR_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_body_exact),
        cmocka_unit_test(test_hostile_message),
        cmocka_unit_test(test_mappings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
