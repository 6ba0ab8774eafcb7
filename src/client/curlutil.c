/* Shared libcurl helpers of the REST and gRPC clients (curlutil.h). */
#include "client/curlutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLEEP_SLICE_S 0.05 /* the sleep looks at the cancel flag this often */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int curlutil_global_init(const char *who, struct err *e)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return err_set(e, ERR_NOMEM, "%s: cannot initialise libcurl", who);
    return 0;
}

char *curlutil_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", a, b);
    return s;
}

void curlutil_wipe_free(char *secret)
{
    if (!secret)
        return;
    volatile char *p = secret;
    while (*p)
        *p++ = 0;
    free(secret);
}

double curlutil_now(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double curlutil_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int curlutil_sleep(double s, bool (*cancelled)(const void *obj), const void *obj)
{
    double end = curlutil_mono() + s;
    for (;;) {
        if (cancelled(obj))
            return 1;
        double left = end - curlutil_mono();
        if (left <= 0)
            return 0;
        if (left > SLEEP_SLICE_S)
            left = SLEEP_SLICE_S;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL); /* EINTR: the loop looks at the flag again */
    }
}

int curlutil_check_opts(const struct client_opts *o, const char *who, struct err *e)
{
    const struct client_retry *r = &o->retry;
    if (r->attempts < 1 || r->attempts > 100)
        return err_set(e, ERR_INVALID, "%s: retry attempts %d is out of range 1..100", who,
                       r->attempts);
    if (!(r->multiplier >= 0) || !(r->min_wait_s >= 0) || !(r->max_wait_s >= r->min_wait_s) ||
        !(r->retry_after_max_s >= 0))
        return err_set(e, ERR_INVALID, "%s: retry waits must be >= 0 with min <= max", who);
    if (o->connect_timeout_ms < 0 || o->timeout_ms < 0)
        return err_set(e, ERR_INVALID, "%s: timeouts must be >= 0", who);
    return 0;
}

bool curlutil_retryable(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

bool curlutil_header(const char *line, size_t n, char *name, size_t name_size, char *value,
                     size_t value_size)
{
    const char *colon = memchr(line, ':', n);
    if (!colon || n >= value_size)
        return false;
    size_t nl = (size_t)(colon - line), vl = n - nl - 1;
    if (nl >= name_size)
        return false;
    memcpy(name, line, nl);
    name[nl] = '\0';
    const char *v = colon + 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    memcpy(value, v, vl);
    while (vl && (value[vl - 1] == '\r' || value[vl - 1] == '\n'))
        vl--;
    value[vl] = '\0';
    return true;
}
