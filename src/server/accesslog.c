/*
 * accesslog: see accesslog.h. Process-wide like base/log: one descriptor, one
 * path, one mutex; a line is formatted and redacted outside the lock and written
 * with a single write(2) under it.
 */
#define LOG_MODULE "access"
#include "server/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

#define VALUE_MAX 200 /* bytes kept of one string value */
#define LINE_MAX_BYTES 2048

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_fd = -1;
static char g_path[PATH_MAX];
static int g_warned; /* a write error was reported once already */
static volatile sig_atomic_t g_reopen;

static int open_path(const char *path, struct err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return err_errno(err, ERR_IO, errno, "%s", path);
    return fd;
}

int accesslog_open(const char *dir, struct err *err)
{
    if (!dir || !*dir) {
        accesslog_close();
        return 0;
    }
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, ACCESSLOG_FILE_NAME);
    if (n < 0 || (size_t)n >= sizeof(path))
        return err_set(err, ERR_RANGE, "%s: path too long", dir);
    int fd = open_path(path, err);
    if (fd < 0)
        return fd;
    pthread_mutex_lock(&g_mu);
    if (g_fd >= 0)
        close(g_fd);
    g_fd = fd;
    memcpy(g_path, path, (size_t)n + 1);
    g_warned = 0;
    pthread_mutex_unlock(&g_mu);
    return 0;
}

void accesslog_close(void)
{
    pthread_mutex_lock(&g_mu);
    if (g_fd >= 0)
        close(g_fd);
    g_fd = -1;
    g_path[0] = '\0';
    pthread_mutex_unlock(&g_mu);
}

const char *accesslog_path(void)
{
    return g_path;
}

static int reopen_locked(struct err *err)
{
    if (!g_path[0])
        return 0;
    int fd = open_path(g_path, err);
    if (fd < 0)
        return fd;
    if (g_fd >= 0)
        close(g_fd);
    g_fd = fd;
    return 0;
}

int accesslog_reopen(struct err *err)
{
    pthread_mutex_lock(&g_mu);
    g_reopen = 0;
    int rc = reopen_locked(err);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void accesslog_request_reopen(void)
{
    g_reopen = 1;
}

/* A logfmt value: bare when it is plain, else quoted with \" \\ and \xNN escapes
 * (so no value can break the line or forge a field). NULL or "" is "-". */
static void put_value(char *buf, size_t size, size_t *len, const char *v)
{
    if (!v || !*v)
        v = "-";
    size_t n = strnlen(v, VALUE_MAX);
    int plain = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
            plain = 0;
    }
    char tmp[VALUE_MAX * 4 + 3];
    size_t t = 0;
    if (!plain)
        tmp[t++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (plain || (c >= ' ' && c < 0x7f && c != '"' && c != '\\')) {
            tmp[t++] = (char)c;
        } else if (c == '"' || c == '\\') {
            tmp[t++] = '\\';
            tmp[t++] = (char)c;
        } else {
            t += (size_t)snprintf(tmp + t, sizeof(tmp) - t, "\\x%02x", c);
        }
    }
    if (!plain)
        tmp[t++] = '"';
    tmp[t] = '\0';
    int w = snprintf(buf + (*len < size ? *len : size), *len < size ? size - *len : 0, "%s",
                     tmp);
    *len += (size_t)(w > 0 ? w : 0);
}

static void put_field(char *buf, size_t size, size_t *len, const char *name, const char *v)
{
    int w = snprintf(buf + (*len < size ? *len : size), *len < size ? size - *len : 0,
                     "%s%s=", *len ? " " : "", name);
    *len += (size_t)(w > 0 ? w : 0);
    put_value(buf, size, len, v);
}

/* Whole numbers (milliseconds are rounded); negative = absent = "-". */
static const char *num(char tmp[32], double v)
{
    if (v < 0)
        return "-";
    snprintf(tmp, 32, "%.0f", v);
    return tmp;
}

int accesslog_format(const struct accesslog_entry *e, char *buf, size_t size)
{
    char t[6][32];
    size_t len = 0;
    if (size)
        buf[0] = '\0';
    snprintf(t[0], 32, "%d", e->status);
    put_field(buf, size, &len, "rid", e->request_id);
    put_field(buf, size, &len, "key", e->key_id);
    put_field(buf, size, &len, "proto", e->protocol);
    put_field(buf, size, &len, "method", e->method);
    put_field(buf, size, &len, "route", e->route);
    put_field(buf, size, &len, "status", e->status > 0 ? t[0] : NULL);
    put_field(buf, size, &len, "prompt_tokens", num(t[1], (double)e->prompt_tokens));
    put_field(buf, size, &len, "completion_tokens", num(t[2], (double)e->completion_tokens));
    put_field(buf, size, &len, "cached_tokens", num(t[3], (double)e->cached_tokens));
    put_field(buf, size, &len, "queue_ms", num(t[4], e->queue_ms));
    put_field(buf, size, &len, "total_ms", num(t[5], e->total_ms));
    put_field(buf, size, &len, "finish", e->finish_reason);
    put_field(buf, size, &len, "peer", e->peer);
    return len > INT_MAX ? INT_MAX : (int)len;
}

static void timestamp(char out[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void accesslog_write(const struct accesslog_entry *e)
{
    char body[LINE_MAX_BYTES];
    accesslog_format(e, body, sizeof(body));
    char *red = log_redact(body);
    if (!red)
        return;
    pthread_mutex_lock(&g_mu);
    int to_log = !g_path[0];
    pthread_mutex_unlock(&g_mu);
    if (to_log) { /* no file: through the main log */
        LOG(INFO, "%s", red);
        free(red);
        return;
    }
    char ts[32], line[LINE_MAX_BYTES + 40];
    timestamp(ts);
    int n = snprintf(line, sizeof(line), "%s %s\n", ts, red);
    free(red);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    line[len - 1] = '\n'; /* a cut line still ends the line */
    pthread_mutex_lock(&g_mu);
    if (g_reopen) {
        g_reopen = 0;
        reopen_locked(NULL);
    }
    ssize_t w = g_fd >= 0 ? write(g_fd, line, len) : -1;
    int report = w != (ssize_t)len && !g_warned;
    int saved = errno;
    if (report)
        g_warned = 1;
    pthread_mutex_unlock(&g_mu);
    if (report)
        LOG(WARN, "cannot write %s: %s (access lines are dropped)", g_path, strerror(saved));
}
