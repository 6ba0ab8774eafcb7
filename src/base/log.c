/*
 * log: see log.h. A line is built in three steps: format (header + message, on the
 * stack or, when long, on the heap), mark the bytes to redact over the whole text,
 * then copy into a fixed line buffer, escaping control bytes and truncating cleanly.
 * Only the marking and the write happen under the mutex.
 */
#define LOG_MODULE "log"
#include "base/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REDACTED "[REDACTED]"
#define TRUNCATED " [truncated]"
/* A message longer than this is not logged at all (it would be cut anyway; this
 * only bounds the heap copy that redaction needs). */
#define LOG_FORMAT_MAX (16u << 20)

struct secret {
    char *s;
    size_t len;
};

/* Process-wide state; everything but the level and the reopen flag is under mu. */
static struct {
    pthread_mutex_t mu;
    int fd; /* -1: no file, lines go to stderr */
    bool to_stderr;
    char dir[PATH_MAX];
    char path[PATH_MAX];
    struct secret *secrets;
    size_t n_secrets, cap_secrets;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static atomic_int g_level = LOG_LEVEL_INFO;
static volatile sig_atomic_t g_reopen_requested;
static _Thread_local char t_request_id[LOG_REQUEST_ID_MAX];

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const level_tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};

/* ------------------------------------------------------------------------- */
/* Levels and request ids                                                    */

void log_set_level(enum log_level level)
{
    if (level < LOG_LEVEL_ERROR)
        level = LOG_LEVEL_ERROR;
    if (level > LOG_LEVEL_DEBUG)
        level = LOG_LEVEL_DEBUG;
    atomic_store_explicit(&g_level, (int)level, memory_order_relaxed);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load_explicit(&g_level, memory_order_relaxed);
}

bool log_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&g_level, memory_order_relaxed);
}

const char *log_level_name(enum log_level level)
{
    if (level < LOG_LEVEL_ERROR || level > LOG_LEVEL_DEBUG)
        return "unknown";
    return level_names[level];
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; name && i <= LOG_LEVEL_DEBUG; i++) {
        if (!strcasecmp(name, level_names[i])) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (name && !strcasecmp(name, "warning")) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return ERR_INVALID;
}

void log_set_request_id(const char *id)
{
    size_t i = 0;
    /* Request ids can come from clients (X-Request-Id): keep them tame. */
    for (; id && id[i] && i < sizeof t_request_id - 1; i++) {
        unsigned char c = (unsigned char)id[i];
        t_request_id[i] = (isalnum(c) || strchr("._:-", c)) ? (char)c : '_';
    }
    t_request_id[i] = '\0';
}

const char *log_request_id(void)
{
    return t_request_id;
}

/* ------------------------------------------------------------------------- */
/* Secrets and redaction                                                     */

int log_register_secret(const char *s, size_t len)
{
    if (!s || len == 0)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&g.mu);
    for (size_t i = 0; i < g.n_secrets; i++)
        if (g.secrets[i].len == len && !memcmp(g.secrets[i].s, s, len))
            goto unlock;
    if (g.n_secrets == g.cap_secrets) {
        size_t cap = g.cap_secrets ? 2 * g.cap_secrets : 8;
        struct secret *grown = realloc(g.secrets, cap * sizeof *grown);
        if (!grown) {
            rc = ERR_NOMEM;
            goto unlock;
        }
        g.secrets = grown;
        g.cap_secrets = cap;
    }
    char *copy = malloc(len);
    if (!copy) {
        rc = ERR_NOMEM;
        goto unlock;
    }
    memcpy(copy, s, len);
    g.secrets[g.n_secrets++] = (struct secret){copy, len};
unlock:
    pthread_mutex_unlock(&g.mu);
    return rc;
}

void log_clear_secrets(void)
{
    pthread_mutex_lock(&g.mu);
    for (size_t i = 0; i < g.n_secrets; i++) {
        /* Wipe before free: the heap should not keep keys around either. */
        memset(g.secrets[i].s, 0, g.secrets[i].len);
        free(g.secrets[i].s);
    }
    free(g.secrets);
    g.secrets = NULL;
    g.n_secrets = g.cap_secrets = 0;
    pthread_mutex_unlock(&g.mu);
}

static bool is_token_char(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_';
}

static bool is_bearer_char(unsigned char c)
{
    return isalnum(c) || strchr("-._~+/=", c) != NULL;
}

/* "sk-" + 8 or more token chars, not glued to a word before it ("disk-..."). */
static void mark_sk_token(const char *s, size_t n, size_t i, unsigned char *mask)
{
    if (n - i < 11 || memcmp(s + i, "sk-", 3) != 0)
        return;
    if (i > 0 && isalnum((unsigned char)s[i - 1]))
        return;
    size_t j = i + 3;
    while (j < n && is_token_char((unsigned char)s[j]))
        j++;
    if (j - (i + 3) >= 8)
        memset(mask + i, 1, j - i);
}

/* "Bearer <token>" (scheme case-insensitive, as in HTTP): the token only. */
static void mark_bearer(const char *s, size_t n, size_t i, unsigned char *mask)
{
    if (n - i < 8 || strncasecmp(s + i, "bearer", 6) != 0)
        return;
    size_t j = i + 6;
    while (j < n && (s[j] == ' ' || s[j] == '\t'))
        j++;
    if (j == i + 6)
        return;
    size_t k = j;
    while (k < n && is_bearer_char((unsigned char)s[k]))
        k++;
    if (k > j)
        memset(mask + j, 1, k - j);
}

/* "scheme://user:password@": the password only. */
static void mark_url_password(const char *s, size_t n, size_t i, unsigned char *mask)
{
    if (n - i < 6 || memcmp(s + i, "://", 3) != 0)
        return;
    size_t j = i + 3;
    while (j < n && !strchr("/@: \t", s[j]) && (unsigned char)s[j] >= 0x20)
        j++;
    if (j >= n || s[j] != ':')
        return;
    size_t k = ++j;
    while (k < n && !strchr("/@ \t", s[k]) && (unsigned char)s[k] >= 0x20)
        k++;
    if (k < n && s[k] == '@' && k > j)
        memset(mask + j, 1, k - j);
}

/* Sets mask[i] for every byte of s that must not be written. Caller holds g.mu. */
static void redact_mark(const char *s, size_t n, unsigned char *mask)
{
    memset(mask, 0, n);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < g.n_secrets; k++) {
            const struct secret *sec = &g.secrets[k];
            if (sec->len <= n - i && s[i] == sec->s[0] && !memcmp(s + i, sec->s, sec->len))
                memset(mask + i, 1, sec->len);
        }
        mark_sk_token(s, n, i, mask);
        mark_bearer(s, n, i, mask);
        mark_url_password(s, n, i, mask);
    }
}

char *log_redact(const char *text)
{
    size_t n = strlen(text);
    unsigned char *mask = malloc(n ? n : 1);
    if (!mask)
        return NULL;
    pthread_mutex_lock(&g.mu);
    redact_mark(text, n, mask);
    pthread_mutex_unlock(&g.mu);
    /* Each masked run becomes REDACTED: at most 10 bytes per masked byte. */
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += (mask[i] && (i == 0 || !mask[i - 1])) ? strlen(REDACTED) : !mask[i];
    char *out = malloc(cap);
    if (out) {
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (!mask[i])
                out[o++] = text[i];
            else if (i == 0 || !mask[i - 1])
                o += (size_t)snprintf(out + o, cap - o, "%s", REDACTED);
        }
        out[o] = '\0';
    }
    free(mask);
    return out;
}

/* ------------------------------------------------------------------------- */
/* Building one line: escape, redact, truncate                               */

struct line {
    char buf[LOG_LINE_MAX];
    size_t len;
    bool truncated;
};

/* Room for " [truncated]\n" is always kept free. */
static bool line_put(struct line *l, const char *s, size_t n)
{
    if (l->truncated)
        return false;
    if (l->len + n > sizeof l->buf - sizeof TRUNCATED) {
        l->truncated = true;
        return false;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

static bool line_put_escaped(struct line *l, unsigned char c)
{
    char esc[5];
    if (c == '\n')
        return line_put(l, "\\n", 2);
    if (c == '\r')
        return line_put(l, "\\r", 2);
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
        snprintf(esc, sizeof esc, "\\x%02x", c);
        return line_put(l, esc, 4);
    }
    esc[0] = (char)c;
    return line_put(l, esc, 1);
}

/* Length of s[0..len) without a trailing incomplete UTF-8 character. */
static size_t utf8_whole_len(const char *s, size_t len)
{
    size_t i = len, cont = 0;
    while (i > 0 && cont < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        cont++;
    }
    if (i == 0)
        return len;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return (need > 1 && cont + 1 < need) ? i - 1 : len;
}

static void line_build(struct line *l, const char *s, size_t n, const unsigned char *mask)
{
    l->len = 0;
    l->truncated = false;
    for (size_t i = 0; i < n; i++) {
        bool ok;
        if (!mask[i])
            ok = line_put_escaped(l, (unsigned char)s[i]);
        else if (i == 0 || !mask[i - 1])
            ok = line_put(l, REDACTED, strlen(REDACTED));
        else
            ok = true;
        if (!ok)
            break;
    }
    if (l->truncated) {
        l->len = utf8_whole_len(l->buf, l->len);
        memcpy(l->buf + l->len, TRUNCATED, strlen(TRUNCATED));
        l->len += strlen(TRUNCATED);
    }
    l->buf[l->len++] = '\n';
}

/* ------------------------------------------------------------------------- */
/* Files                                                                     */

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        buf += w;
        len -= (size_t)w;
    }
}

/* mkdir -p, one component at a time; errors surface when the file is opened. */
static void make_dirs(const char *dir)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
        return;
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0750);
            *p = '/';
        }
    }
    mkdir(tmp, 0750);
}

/* Opens dir/name for appending; fills path. Returns the fd or -errno. */
static int open_in(const char *dir, const char *name, char *path, size_t path_size)
{
    make_dirs(dir);
    if (snprintf(path, path_size, "%s/%s", dir, name) >= (int)path_size)
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    return fd >= 0 ? fd : -errno;
}

/* Records the open file; caller holds g.mu. Names are made absolute so that a
 * reopen after a chdir still finds the file. */
static void adopt_locked(int fd, const char *dir, const char *name)
{
    char real[PATH_MAX];
    const char *d = realpath(dir, real) ? real : dir;
    g.fd = fd;
    if (snprintf(g.dir, sizeof g.dir, "%s", d) >= (int)sizeof g.dir
        || snprintf(g.path, sizeof g.path, "%s/%s", d, name) >= (int)sizeof g.path) {
        /* The resolved name is too long: keep the one we opened (it fitted). */
        snprintf(g.dir, sizeof g.dir, "%s", dir);
        if (snprintf(g.path, sizeof g.path, "%s/%s", dir, name) >= (int)sizeof g.path)
            g.path[0] = '\0';
    }
}

static void close_locked(void)
{
    if (g.fd >= 0)
        close(g.fd);
    g.fd = -1;
    g.dir[0] = g.path[0] = '\0';
}

void log_close(void)
{
    pthread_mutex_lock(&g.mu);
    close_locked();
    pthread_mutex_unlock(&g.mu);
}

const char *log_dir_used(void)
{
    return g.dir;
}

const char *log_path(void)
{
    return g.path;
}

static void emit(enum log_level level, const char *module, bool force_stderr,
                 const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void emit_fmt(enum log_level level, bool force_stderr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void emit_fmt(enum log_level level, bool force_stderr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, LOG_MODULE, force_stderr, fmt, ap);
    va_end(ap);
}

int log_open(const char *dir, const char *file_name, enum log_level level, bool to_stderr,
             struct err *err)
{
    log_set_level(level);
    pthread_mutex_lock(&g.mu);
    close_locked();
    g.to_stderr = to_stderr;
    pthread_mutex_unlock(&g.mu);
    if (!dir || !*dir)
        return 0;
    if (!file_name || !*file_name || strchr(file_name, '/'))
        return err_set(err, ERR_INVALID, "log file name '%s' must be a plain file name",
                       file_name ? file_name : "");

    char path[PATH_MAX], cwd[PATH_MAX], fallback[PATH_MAX];
    int fd = open_in(dir, file_name, path, sizeof path);
    if (fd >= 0) {
        pthread_mutex_lock(&g.mu);
        adopt_locked(fd, dir, file_name);
        pthread_mutex_unlock(&g.mu);
        return 0;
    }
    int first_errno = -fd;
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, ".");
    if (snprintf(fallback, sizeof fallback, "%s/%s", cwd, LOG_FALLBACK_DIR) >= (int)sizeof fallback)
        return err_set(err, ERR_IO, "cannot write logs to %s (%s); working directory too long",
                       dir, strerror(first_errno));
    int fd2 = open_in(fallback, file_name, path, sizeof path);
    if (fd2 < 0)
        return err_set(err, ERR_IO, "cannot write logs to %s (%s) nor to %s (%s)", dir,
                       strerror(first_errno), fallback, strerror(-fd2));
    pthread_mutex_lock(&g.mu);
    adopt_locked(fd2, fallback, file_name);
    pthread_mutex_unlock(&g.mu);
    emit_fmt(LOG_LEVEL_WARN, true, "log directory %s is not writable (%s); logging to %s instead",
             dir, strerror(first_errno), log_path());
    return 0;
}

static int reopen_locked(struct err *err)
{
    if (g.fd < 0 || !g.path[0])
        return 0;
    int fd = open(g.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return err_errno(err, ERR_IO, errno, "reopen %s", g.path);
    close(g.fd);
    g.fd = fd;
    return 0;
}

int log_reopen(struct err *err)
{
    pthread_mutex_lock(&g.mu);
    g_reopen_requested = 0;
    int rc = reopen_locked(err);
    pthread_mutex_unlock(&g.mu);
    return rc;
}

void log_request_reopen(void)
{
    g_reopen_requested = 1;
}

static void on_sighup(int sig)
{
    (void)sig;
    g_reopen_requested = 1;
}

int log_install_sighup(struct err *err)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sighup;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGHUP, &sa, NULL) != 0)
        return err_errno(err, ERR_INTERNAL, errno, "sigaction(SIGHUP)");
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Writing                                                                   */

/* Header + message into buf (or a heap buffer when it does not fit). Returns the
 * text and its length; *heap is set when the caller must free it. */
static const char *format_text(char *buf, size_t size, size_t *len, char **heap,
                               enum log_level level, const char *module, const char *fmt,
                               va_list ap) __attribute__((format(printf, 7, 0)));

static const char *format_text(char *buf, size_t size, size_t *len, char **heap,
                               enum log_level level, const char *module, const char *fmt,
                               va_list ap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    const char *rid = t_request_id;
    int h = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] %s%s%s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000L, level_tags[level],
                     module ? module : "-", rid[0] ? " rid=" : "", rid);
    if (h < 0 || (size_t)h >= size)
        h = (int)size - 1; /* an absurd module name: cut, the message still follows */
    va_list ap2;
    va_copy(ap2, ap);
    int m = vsnprintf(buf + h, size - (size_t)h, fmt, ap);
    *heap = NULL;
    if (m < 0)
        m = 0;
    if ((size_t)h + (size_t)m < size || (size_t)m > LOG_FORMAT_MAX) {
        if ((size_t)m > LOG_FORMAT_MAX)
            snprintf(buf + h, size - (size_t)h, "[message of %d bytes dropped]", m);
        *len = strlen(buf);
        va_end(ap2);
        return buf;
    }
    *heap = malloc((size_t)h + (size_t)m + 1);
    if (!*heap) {
        /* Never write a prefix that might hold half a secret: drop the message. */
        snprintf(buf + h, size - (size_t)h, "[message of %d bytes dropped: no memory]", m);
        *len = strlen(buf);
        va_end(ap2);
        return buf;
    }
    memcpy(*heap, buf, (size_t)h);
    vsnprintf(*heap + h, (size_t)m + 1, fmt, ap2);
    va_end(ap2);
    *len = (size_t)h + (size_t)m;
    return *heap;
}

static void emit(enum log_level level, const char *module, bool force_stderr,
                 const char *fmt, va_list ap)
{
    if (level < LOG_LEVEL_ERROR || level > LOG_LEVEL_DEBUG)
        level = LOG_LEVEL_ERROR;
    char text_buf[LOG_LINE_MAX];
    unsigned char mask_buf[LOG_LINE_MAX];
    static _Thread_local struct line line; /* 4 KiB: kept off small thread stacks */
    char *heap = NULL;
    size_t n;
    const char *text = format_text(text_buf, sizeof text_buf, &n, &heap, level, module, fmt, ap);
    unsigned char *mask = n <= sizeof mask_buf ? mask_buf : malloc(n);

    pthread_mutex_lock(&g.mu);
    if (g_reopen_requested) {
        g_reopen_requested = 0;
        reopen_locked(NULL);
    }
    if (mask) {
        redact_mark(text, n, mask);
        line_build(&line, text, n, mask);
    } else {
        memset(mask_buf, 0, sizeof mask_buf);
        static const char oom[] = "[log line dropped: no memory]";
        line_build(&line, oom, strlen(oom), mask_buf);
    }
    if (g.fd >= 0)
        write_all(g.fd, line.buf, line.len);
    if (g.fd < 0 || g.to_stderr || force_stderr)
        write_all(STDERR_FILENO, line.buf, line.len);
    pthread_mutex_unlock(&g.mu);

    if (mask != mask_buf)
        free(mask);
    free(heap);
}

void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    int saved_errno = errno;
    emit(level, module, false, fmt, ap);
    errno = saved_errno;
}

void log_write(enum log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, module, fmt, ap);
    va_end(ap);
}
