/*
 * curlutil: the pieces the REST client (client.c) and the gRPC client (grpc_client.c)
 * share: one libcurl global initialisation, the clocks, a cancellable sleep, string
 * joining, wiping a secret, the check of client_opts and which libcurl errors are worth
 * a retry. Internal to src/client/.
 *
 * Ownership: curlutil_join returns malloc'ed memory for the caller; curlutil_wipe_free
 * takes it back. Threading: all functions may be called from any thread;
 * curlutil_global_init runs curl_global_init once (pthread_once).
 */
#ifndef DS_CLIENT_CURLUTIL_H
#define DS_CLIENT_CURLUTIL_H

#include <stdbool.h>

#include <curl/curl.h>

#include "base/err.h"
#include "client/client.h"

/* curl_global_init, once per process. ERR_NOMEM naming `who` when it failed. */
int curlutil_global_init(const char *who, struct err *e);

/* a followed by b, malloc'ed; NULL when out of memory. */
char *curlutil_join(const char *a, const char *b);
/* Overwrites a secret string's bytes before freeing it (an API key in a header). */
void curlutil_wipe_free(char *secret);

double curlutil_now(void *arg); /* wall clock, seconds: client_opts.now's default */
double curlutil_mono(void);     /* monotonic seconds */
/* Sleeps s seconds in slices of 50 ms, returning 1 as soon as cancelled(obj) is true
 * (set from a signal handler), 0 after the whole wait. */
int curlutil_sleep(double s, bool (*cancelled)(const void *obj), const void *obj);

/* Splits one header line as curl hands it over ("Name: value\r\n") into name and
 * value, the value's leading blanks and line end trimmed. false for a status line, a
 * line without a colon, a name over name_size, or a whole line of value_size bytes or
 * more (not a header we read). */
bool curlutil_header(const char *line, size_t n, char *name, size_t name_size, char *value,
                     size_t value_size);

/* ERR_INVALID naming `who` when the retry policy or timeouts are out of range. */
int curlutil_check_opts(const struct client_opts *o, const char *who, struct err *e);
/* Transport failures another attempt may fix (connect, timeout, reset, HTTP/2 errors). */
bool curlutil_retryable(CURLcode cc);

#endif
