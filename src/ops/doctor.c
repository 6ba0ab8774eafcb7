/* doctor: see doctor.h. Each check_* fills one struct doctor_check; none of them
 * stops the others, so one run shows everything that is wrong. */
#include "ops/doctor.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base/log.h"
#include "ops/audit.h"

#define LOG_NAME "deepseek.log"
#define PID_NAME "deepseek-serve.pid" /* the server's default, server/server.c */
#define HASH_CHUNK (4u << 20)
#define PROGRESS_EVERY (64ull << 20)
#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)

/* ---- report helpers ---- */

static struct doctor_check *add(struct doctor_report *r, const char *name)
{
    struct doctor_check *c = &r->checks[r->n < DOCTOR_MAX_CHECKS ? r->n++ : r->n - 1];
    memset(c, 0, sizeof *c);
    c->name = name;
    return c;
}

__attribute__((format(printf, 3, 4)))
static void set(struct doctor_check *c, enum doctor_status s, const char *fmt, ...)
{
    c->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 2, 3)))
static void fix(struct doctor_check *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fix, sizeof c->fix, fmt, ap);
    va_end(ap);
}

const char *doctor_status_name(enum doctor_status s)
{
    static const char *const names[] = {"pass", "skip", "warn", "fail"};
    return (unsigned)s < 4 ? names[s] : "?";
}

enum doctor_status doctor_worst(const struct doctor_report *r)
{
    enum doctor_status w = DOCTOR_PASS;
    for (size_t i = 0; i < r->n; i++)
        if (r->checks[i].status > w)
            w = r->checks[i].status;
    return w;
}

json_t *doctor_to_json(const struct doctor_report *r)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < r->n; i++) {
        const struct doctor_check *c = &r->checks[i];
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s}", "name", c->name, "status",
                                             doctor_status_name(c->status), "detail",
                                             c->detail, "fix", c->fix));
    }
    enum doctor_status w = doctor_worst(r);
    return json_pack("{s:b,s:s,s:o*}", "ok", w != DOCTOR_FAIL, "worst", doctor_status_name(w),
                     "checks", arr);
}

/* ---- where the deployment's files are ---- */

struct where {
    char log_dir[CONFIG_PATH_MAX];
    char pid_file[CONFIG_PATH_MAX + 32];
    bool fell_back; /* the server logs to ./logs */
};

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void locate(const struct config *cfg, struct where *w)
{
    char p[CONFIG_PATH_MAX + 32];
    snprintf(w->log_dir, sizeof w->log_dir, "%s", cfg->log_dir);
    snprintf(p, sizeof p, "%s/%s", cfg->log_dir, LOG_NAME);
    if (!exists(p) && exists(LOG_FALLBACK_DIR "/" LOG_NAME)) {
        snprintf(w->log_dir, sizeof w->log_dir, "%s", LOG_FALLBACK_DIR);
        w->fell_back = true;
    }
    if (cfg->pid_file[0])
        snprintf(w->pid_file, sizeof w->pid_file, "%s", cfg->pid_file);
    else
        snprintf(w->pid_file, sizeof w->pid_file, "%s/%s", w->log_dir, PID_NAME);
}

/* ---- process ---- */

/* True when /proc/pid/cmdline is "<...deepseek> serve ...". */
static bool is_deepseek_serve(long pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *base = strrchr(buf, '/');
    base = base ? base + 1 : buf;
    size_t len0 = strlen(buf);
    return strstr(base, "deepseek") && (size_t)n > len0 + 1 && !strcmp(buf + len0 + 1, "serve");
}

/* The first `deepseek serve` process in /proc other than us, or 0. */
static long find_serve(void)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    long found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end == '\0' && pid > 0 && pid != (long)getpid() && is_deepseek_serve(pid))
            found = pid;
    }
    closedir(d);
    return found;
}

static long read_pid(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return pid;
}

static bool check_process(struct doctor_report *r, const struct where *w)
{
    struct doctor_check *c = add(r, "process");
    long pid = read_pid(w->pid_file);
    if (pid > 0 && is_deepseek_serve(pid)) {
        set(c, DOCTOR_PASS, "deepseek serve running, pid %ld (%s)", pid, w->pid_file);
        return true;
    }
    long other = find_serve();
    if (pid >= 0) { /* a pid file, stale or unreadable */
        set(c, DOCTOR_FAIL, "%s names pid %ld, which is %s", w->pid_file, pid,
            pid > 0 && kill((pid_t)pid, 0) == 0 ? "not deepseek serve" : "not running");
    } else if (other) {
        set(c, DOCTOR_WARN, "a deepseek serve runs as pid %ld (perhaps with other settings) but there "
            "is no pid file %s",
            other, w->pid_file);
        fix(c, "check pid-file/log-dir of that server against this configuration; logrotate "
               "signals the pid in the pid file");
        return true;
    } else {
        set(c, DOCTOR_FAIL, "no pid file %s and no deepseek serve process", w->pid_file);
    }
    if (other)
        fix(c, "a deepseek serve runs as pid %ld with another pid file: check the settings",
            other);
    else
        fix(c, "start it: systemctl start deepseek (then journalctl -u deepseek, and %s/%s "
               "for why it stopped)", w->log_dir, LOG_NAME);
    return false;
}

/* ---- ports ---- */

/* "0.0.0.0" and "::" listen everywhere; a client reaches them on loopback. */
static const char *probe_host(const char *host)
{
    if (!host[0] || !strcmp(host, "0.0.0.0"))
        return "127.0.0.1";
    if (!strcmp(host, "::") || !strcmp(host, "[::]"))
        return "::1";
    return host;
}

/* A connected socket to host:port within timeout_ms, or -1 with why. */
static int tcp_connect(const char *host, long port, int timeout_ms, char *why, size_t cap)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%ld", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g != 0) {
        snprintf(why, cap, "cannot resolve %s: %s", host, gai_strerror(g));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -1 : connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (fd >= 0 && rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int soerr = ETIMEDOUT;
        socklen_t len = sizeof soerr;
        if (poll(&p, 1, timeout_ms) == 1)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        errno = soerr;
        rc = soerr ? -1 : 0;
    }
    if (rc != 0) {
        snprintf(why, cap, "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Sends GET /ready and returns the HTTP status, or 0 when no HTTP answer came. */
static int http_ready(int fd, const char *host, int timeout_ms)
{
    char req[512], buf[256];
    int n = snprintf(req, sizeof req, "GET /ready HTTP/1.0\r\nHost: %s\r\n\r\n", host);
    if (n <= 0 || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return 0;
    size_t got = 0;
    while (got < sizeof buf - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) != 1)
            break;
        ssize_t k = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
        if (memchr(buf, '\n', got))
            break;
    }
    buf[got] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1)
        return 0;
    return status;
}

static void check_rest(struct doctor_report *r, const struct config *cfg, int timeout_ms)
{
    struct doctor_check *c = add(r, "rest-port");
    const char *host = probe_host(cfg->host);
    char why[256];
    int fd = tcp_connect(host, (long)cfg->port, timeout_ms, why, sizeof why);
    if (fd < 0) {
        set(c, DOCTOR_FAIL, "nothing listening on %s:%lld (%s)", host, (long long)cfg->port,
            why);
        fix(c, "start the server, or check host/port against its configuration "
               "(ss -ltnp | grep %lld)", (long long)cfg->port);
        return;
    }
    if (cfg->tls_cert[0]) {
        set(c, DOCTOR_PASS, "%s:%lld listening (TLS: /ready not probed)", host,
            (long long)cfg->port);
        close(fd);
        return;
    }
    int st = http_ready(fd, host, timeout_ms);
    close(fd);
    if (st == 200) {
        set(c, DOCTOR_PASS, "%s:%lld listening, GET /ready 200", host, (long long)cfg->port);
    } else if (st == 503) {
        set(c, DOCTOR_WARN, "%s:%lld listening, GET /ready 503 (loading or draining)", host,
            (long long)cfg->port);
        fix(c, "wait for the model to load; if it stays, read the log");
    } else {
        set(c, DOCTOR_FAIL, "%s:%lld accepts connections but GET /ready answered %s", host,
            (long long)cfg->port, st ? "with an unexpected status" : "no HTTP");
        fix(c, "another program may hold the port: ss -ltnp | grep %lld", (long long)cfg->port);
    }
}

static void check_grpc(struct doctor_report *r, const struct config *cfg, int timeout_ms)
{
    struct doctor_check *c = add(r, "grpc-port");
    if (cfg->grpc_port == 0) {
        set(c, DOCTOR_SKIP, "grpc-port is 0: gRPC is off");
        return;
    }
    const char *host = probe_host(cfg->host);
    char why[256];
    int fd = tcp_connect(host, (long)cfg->grpc_port, timeout_ms, why, sizeof why);
    if (fd < 0) {
        set(c, DOCTOR_FAIL, "nothing listening on %s:%lld (%s)", host,
            (long long)cfg->grpc_port, why);
        fix(c, "gRPC clients will fail: start the server, or set grpc-port = 0 if gRPC is "
               "not used");
        return;
    }
    close(fd);
    set(c, DOCTOR_PASS, "%s:%lld listening", host, (long long)cfg->grpc_port);
}

/* ---- log ---- */

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

int doctor_log_scan(const char *path, int *start, int *ready, int *stopped, char *ready_line,
                    size_t cap, struct err *err)
{
    *start = *ready = *stopped = 0;
    if (cap)
        ready_line[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return err_errno(err, ERR_IO, errno, "%s", path);
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        /* cli_serve logs "serve: loading MODEL" first thing at every start */
        if (strstr(line, "[INFO] serve: loading ")) {
            *start = 1;
            *ready = *stopped = 0;
            if (cap)
                ready_line[0] = '\0';
        } else if (strstr(line, "[INFO]") && strstr(line, "Server ready")) {
            *ready = 1;
            *stopped = 0;
            trim(line);
            if (cap)
                snprintf(ready_line, cap, "%s", line);
        } else if (*ready && strstr(line, "server stopped")) {
            *stopped = 1;
        }
    }
    free(line);
    fclose(f);
    return 0;
}

static void check_log(struct doctor_report *r, const struct where *w)
{
    struct doctor_check *c = add(r, "log-ready");
    char path[CONFIG_PATH_MAX + 32], line[400];
    int start, ready, stopped;
    struct err e;
    snprintf(path, sizeof path, "%s/%s", w->log_dir, LOG_NAME);
    if (doctor_log_scan(path, &start, &ready, &stopped, line, sizeof line, &e) != 0) {
        set(c, DOCTOR_FAIL, "%s", e.msg);
        fix(c, "the server has not written its log here: check log-dir, or start it");
        return;
    }
    if (!start) { /* rotated since the start: the start is in the rotated file */
        snprintf(path, sizeof path, "%s/%s.1", w->log_dir, LOG_NAME);
        if (doctor_log_scan(path, &start, &ready, &stopped, line, sizeof line, &e) != 0)
            start = 0;
    }
    if (!start) {
        set(c, DOCTOR_FAIL, "no start of the server in %s/%s or .1", w->log_dir, LOG_NAME);
        fix(c, "start the server; a log rotated more than once since is in a .gz file");
    } else if (!ready) {
        set(c, DOCTOR_FAIL, "%s: the last start has no [INFO] Server ready", path);
        fix(c, "the server is loading, or failed: read the [ERROR] lines of %s", path);
    } else if (stopped) {
        set(c, DOCTOR_FAIL, "%s: the server stopped after it was ready", path);
        fix(c, "start it again: systemctl start deepseek");
    } else {
        set(c, DOCTOR_PASS, "%s%s", line, w->fell_back ? " (server logs to ./logs: its "
                                                          "log-dir was not writable)" : "");
    }
}

/* ---- compute ---- */

/* The SIMD flags of /proc/cpuinfo this program can use, space-separated. */
static void simd_flags(char *out, size_t cap)
{
    static const char *const want[] = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f",
                                       "avx512bw", "avx512vl", "avx512_vnni", "asimd"};
    out[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "re");
    char *line = NULL;
    size_t lcap = 0;
    while (f && getline(&line, &lcap, f) > 0) {
        if (strncmp(line, "flags", 5) && strncmp(line, "Features", 8))
            continue;
        trim(line);
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            size_t n = strlen(want[i]);
            for (const char *p = strstr(line, want[i]); p; p = strstr(p + 1, want[i])) {
                if (p[-1] == ' ' && (p[n] == ' ' || p[n] == '\0')) {
                    size_t used = strlen(out);
                    snprintf(out + used, cap - used, "%s%s", used ? " " : "", want[i]);
                    break;
                }
            }
        }
        break;
    }
    free(line);
    if (f)
        fclose(f);
}

static void check_compute(struct doctor_report *r, const char *isa)
{
    struct doctor_check *c = add(r, "compute");
    char gpu[256] = "", simd[160];
    FILE *p = popen("nvidia-smi --query-gpu=name,memory.total --format=csv,noheader "
                    "2>/dev/null", "r");
    if (p) {
        if (!fgets(gpu, sizeof gpu, p))
            gpu[0] = '\0';
        while (fgetc(p) != EOF) { /* drain: more GPUs */
        }
        int st = pclose(p);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            gpu[0] = '\0';
        trim(gpu);
    }
    simd_flags(simd, sizeof simd);
    bool slow = !strstr(simd, "avx2") && !strstr(simd, "asimd");
    enum doctor_status st = slow ? DOCTOR_WARN : DOCTOR_PASS;
    if (gpu[0])
        set(c, st, "GPU %s (not used: deepseek-local computes on the CPU); CPU SIMD: %s; "
            "kernels %s", gpu, simd[0] ? simd : "none", isa ? isa : "?");
    else
        set(c, st, "CPU inference (no nvidia-smi GPU); SIMD: %s; kernels %s",
            simd[0] ? simd : "none", isa ? isa : "?");
    if (slow)
        fix(c, "no AVX2 or NEON: the scalar reference kernels run, expect slow generation");
}

/* ---- memory and disk ---- */

/* A /proc/meminfo field in bytes, or -1. */
static double meminfo(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "re");
    char line[256];
    double v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, key, n) && line[n] == ':') {
            v = strtod(line + n + 1, NULL) * 1024.0;
            break;
        }
    }
    if (f)
        fclose(f);
    return v;
}

static double free_bytes(const char *path)
{
    struct statvfs s;
    if (statvfs(path, &s) != 0)
        return -1;
    return (double)s.f_bavail * (double)s.f_frsize;
}

static void check_memory(struct doctor_report *r, const char *model, double size)
{
    struct doctor_check *c = add(r, "memory");
    double total = meminfo("MemTotal"), avail = meminfo("MemAvailable");
    if (size < 0) {
        set(c, DOCTOR_SKIP, "no model file to compare with (RAM %.1f GiB, %.1f GiB available)",
            total / GIB, avail / GIB);
        return;
    }
    if (total > 0 && size > total) {
        set(c, DOCTOR_FAIL, "model %.2f GiB > RAM %.2f GiB", size / GIB, total / GIB);
        fix(c, "use a smaller quantization (deepseek quantize %s q4_k_m) or a machine with "
               "more memory", model);
    } else if (avail > 0 && size > avail) {
        set(c, DOCTOR_WARN, "model %.2f GiB > available memory %.2f GiB (RAM %.2f GiB)",
            size / GIB, avail / GIB, total / GIB);
        fix(c, "stop other programs, or use a smaller quantization: pages of the model will "
               "be read from disk again and again");
    } else {
        set(c, DOCTOR_PASS, "model %.2f GiB; RAM %.2f GiB, %.2f GiB available", size / GIB,
            total / GIB, avail / GIB);
    }
}

static void check_disk(struct doctor_report *r, const char *log_dir, const char *model,
                       double size)
{
    struct doctor_check *c = add(r, "disk");
    double logs = free_bytes(log_dir);
    char dir[CONFIG_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", model);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    double mfree = size >= 0 ? free_bytes(slash ? (dir[0] ? dir : "/") : ".") : -1;
    if (logs < 0) {
        set(c, DOCTOR_WARN, "cannot statvfs the log directory %s", log_dir);
        fix(c, "create it (the server creates it at start when it may)");
    } else if (logs < 100 * MIB) {
        set(c, DOCTOR_FAIL, "%s has %.0f MiB free", log_dir, logs / MIB);
        fix(c, "free space: logs and audit records cannot be written (wipe refuses without "
               "its audit record)");
    } else if (logs < GIB) {
        set(c, DOCTOR_WARN, "%s has %.0f MiB free", log_dir, logs / MIB);
        fix(c, "free space or lower logrotate's rotate count");
    } else if (mfree >= 0 && mfree < size) {
        set(c, DOCTOR_WARN, "the model's filesystem has %.2f GiB free, less than the model "
            "(%.2f GiB)", mfree / GIB, size / GIB);
        fix(c, "no room to quantize or replace the model beside it");
    } else {
        set(c, DOCTOR_PASS, "%s: %.1f GiB free", log_dir, logs / GIB);
        if (mfree >= 0) {
            size_t n = strlen(c->detail);
            snprintf(c->detail + n, sizeof c->detail - n, "; model filesystem %.1f GiB free",
                     mfree / GIB);
        }
    }
}

/* ---- model integrity ---- */

static void hex(const unsigned char *d, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

int doctor_hash_file(const char *path, char sha256[65], char md5[33], doctor_progress_fn fn,
                     void *ctx, struct err *err)
{
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = err_errno(err, ERR_IO, errno, "%s", path);
        goto close_fd;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    EVP_MD_CTX *s = EVP_MD_CTX_new(), *m = EVP_MD_CTX_new();
    unsigned char *buf = malloc(HASH_CHUNK);
    if (!s || !m || !buf || !EVP_DigestInit_ex(s, EVP_sha256(), NULL) ||
        !EVP_DigestInit_ex(m, EVP_md5(), NULL)) {
        rc = err_set(err, ERR_NOMEM, "%s: cannot set up hashing", path);
        goto free_ctx;
    }
    uint64_t done = 0, next = PROGRESS_EVERY;
    ssize_t n;
    while ((n = read(fd, buf, HASH_CHUNK)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_errno(err, ERR_IO, errno, "%s: read at byte %llu", path,
                           (unsigned long long)done);
            goto free_ctx;
        }
        EVP_DigestUpdate(s, buf, (size_t)n);
        EVP_DigestUpdate(m, buf, (size_t)n);
        done += (uint64_t)n;
        if (fn && done >= next) {
            fn(ctx, path, done, (uint64_t)st.st_size);
            next = done + PROGRESS_EVERY;
        }
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    EVP_DigestFinal_ex(s, d, &dl);
    hex(d, dl, sha256);
    EVP_DigestFinal_ex(m, d, &dl);
    hex(d, dl, md5);
    if (fn)
        fn(ctx, path, done, (uint64_t)st.st_size);
free_ctx:
    free(buf);
    EVP_MD_CTX_free(s);
    EVP_MD_CTX_free(m);
close_fd:
    if (fd >= 0)
        close(fd);
    return rc;
}

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int doctor_manifest_digest(const char *manifest, const char *file, size_t hex_len, char *out,
                           struct err *err)
{
    FILE *f = fopen(manifest, "re");
    if (!f)
        return err_errno(err, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, errno, "%s", manifest);
    char *line = NULL;
    size_t cap = 0;
    int rc = err_set(err, ERR_FORMAT, "%s: no %zu-digit digest for %s", manifest, hex_len,
                     base_name(file));
    while (getline(&line, &cap, f) > 0) {
        trim(line);
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strlen(p) < hex_len || !is_hex(p, hex_len) || (p[hex_len] && p[hex_len] != ' '))
            continue;
        const char *name = p + hex_len;
        while (*name == ' ' || *name == '*')
            name++;
        if (*name && strcmp(base_name(name), base_name(file)) != 0)
            continue;
        for (size_t i = 0; i < hex_len; i++)
            out[i] = (char)tolower((unsigned char)p[i]);
        out[hex_len] = '\0';
        rc = 0;
        break;
    }
    free(line);
    fclose(f);
    return rc;
}

/* Expected digest: given, else from path+ext. 1 found, 0 none, -1 unusable (why set). */
static int expected(const char *given, const char *model, const char *ext, size_t len,
                    char *out, char *why, size_t cap)
{
    if (given && given[0]) {
        if (strlen(given) != len || !is_hex(given, len)) {
            snprintf(why, cap, "the given %s value is not %zu hex digits", ext + 1, len);
            return -1;
        }
        for (size_t i = 0; i <= len; i++)
            out[i] = (char)tolower((unsigned char)given[i]);
        return 1;
    }
    char path[CONFIG_PATH_MAX + 16];
    struct err e;
    snprintf(path, sizeof path, "%s%s", model, ext);
    int rc = doctor_manifest_digest(path, model, len, out, &e);
    if (rc == ERR_NOTFOUND)
        return 0;
    if (rc != 0) {
        snprintf(why, cap, "%s", e.msg);
        return -1;
    }
    return 1;
}

static bool gguf_magic(const char *path)
{
    char m[4] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    bool ok = fd >= 0 && read(fd, m, 4) == 4 && !memcmp(m, "GGUF", 4);
    if (fd >= 0)
        close(fd);
    return ok;
}

static void check_model(struct doctor_report *r, const struct doctor_opts *o, const char *model)
{
    struct doctor_check *c = add(r, "model");
    char sha[65], md5[33], want_sha[65], want_md5[33], why[ERR_MSG_MAX] = "";
    struct err e;
    if (!model[0]) {
        set(c, DOCTOR_SKIP, "no model configured (serve uses the demo model)");
        return;
    }
    if (!gguf_magic(model)) {
        set(c, DOCTOR_FAIL, "%s: %s", model, exists(model) ? "not a GGUF file (no magic)"
                                                              : "cannot be read");
        fix(c, "check the model setting; re-download the model");
        return;
    }
    int hs = expected(o->sha256, model, ".sha256", 64, want_sha, why, sizeof why);
    int hm = hs < 0 ? 0 : expected(o->md5, model, ".md5", 32, want_md5, why, sizeof why);
    if (hs < 0 || hm < 0) {
        set(c, DOCTOR_FAIL, "%s", why);
        fix(c, "give the digest as printed by sha256sum / md5sum");
        return;
    }
    if (doctor_hash_file(model, sha, md5, o->progress, o->progress_ctx, &e) != 0) {
        set(c, DOCTOR_FAIL, "%s", e.msg);
        return;
    }
    bool bad_s = hs == 1 && strcmp(sha, want_sha), bad_m = hm == 1 && strcmp(md5, want_md5);
    if (bad_s || bad_m) {
        set(c, DOCTOR_FAIL, "%s: %s %s, expected %s", model, bad_s ? "sha256" : "md5",
            bad_s ? sha : md5, bad_s ? want_sha : want_md5);
        fix(c, "the file is damaged or not the release you meant: download it again (the "
               "server answers 500 on a damaged model)");
    } else if (hs == 0 && hm == 0) {
        set(c, DOCTOR_WARN, "%s: sha256 %s md5 %s, no manifest to compare with", model, sha,
            md5);
        fix(c, "record the digests once from a trusted copy: sha256sum %s > %s.sha256", model,
            model);
    } else {
        set(c, DOCTOR_PASS, "%s: sha256 %s%s%s", model, sha, hs ? " matches" : "",
            hm ? ", md5 matches" : "");
    }
}

/* ---- permissions ---- */

static bool loopback(const char *host)
{
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "localhost") || !strcmp(host, "::1") ||
           !strncmp(host, "127.", 4);
}

static void check_keys(struct doctor_report *r, const struct config *cfg)
{
    struct doctor_check *c = add(r, "key-file");
    struct stat st;
    if (!cfg->api_keys[0]) {
        if (loopback(cfg->host)) {
            set(c, DOCTOR_PASS, "no api-keys file: authentication off, host %s is loopback",
                cfg->host);
        } else {
            set(c, DOCTOR_WARN, "no api-keys file and host %s: anyone who reaches the port "
                "can use the model", cfg->host);
            fix(c, "deepseek keys add NAME --api-keys /etc/deepseek/keys, then set api-keys");
        }
        return;
    }
    if (stat(cfg->api_keys, &st) != 0) {
        set(c, DOCTOR_FAIL, "%s: %s", cfg->api_keys, strerror(errno));
        fix(c, "create it with deepseek keys add NAME --api-keys %s", cfg->api_keys);
        return;
    }
    unsigned mode = (unsigned)st.st_mode & 07777;
    if (mode & 0077) {
        set(c, (mode & 0027) ? DOCTOR_FAIL : DOCTOR_WARN, "%s is mode %04o (uid %ld): %s",
            cfg->api_keys, mode, (long)st.st_uid,
            (mode & 0007) ? "others may read or change the keys"
                          : "its group may read or change the keys");
        fix(c, "chmod 600 %s (owned by the server's user)", cfg->api_keys);
    } else {
        set(c, DOCTOR_PASS, "%s is mode %04o, uid %ld", cfg->api_keys, mode, (long)st.st_uid);
    }
}

static void check_log_dir(struct doctor_report *r, const char *dir)
{
    struct doctor_check *c = add(r, "log-dir");
    struct stat st;
    if (stat(dir, &st) != 0) {
        set(c, DOCTOR_WARN, "%s: %s", dir, strerror(errno));
        fix(c, "the server creates it (mode 0750) when it may; or mkdir -m 750 %s", dir);
        return;
    }
    unsigned mode = (unsigned)st.st_mode & 07777;
    if (mode & 0002) {
        set(c, DOCTOR_FAIL, "%s is mode %04o: anyone may replace or remove logs and audit "
            "records", dir, mode);
        fix(c, "chmod 750 %s", dir);
    } else if (mode & 0005) {
        set(c, DOCTOR_WARN, "%s is mode %04o: every user may read the logs", dir, mode);
        fix(c, "chmod 750 %s (the logs name keys and clients)", dir);
    } else {
        set(c, DOCTOR_PASS, "%s is mode %04o, uid %ld", dir, mode, (long)st.st_uid);
    }
}

/* ---- audit chain ---- */

static void check_audit(struct doctor_report *r, const char *dir)
{
    struct doctor_check *c = add(r, "audit");
    char **files = NULL;
    size_t n = 0;
    struct err e;
    struct audit_verify v;
    if (audit_list_files(dir, &files, &n, &e) != 0 || n == 0) {
        set(c, DOCTOR_PASS, "no audit records in %s yet", dir);
        if (files)
            audit_files_free(files, n);
        return;
    }
    if (audit_verify_files(files, n, false, &v, &e) != 0) {
        set(c, DOCTOR_FAIL, "%s", e.msg);
        fix(c, "make the audit files readable to this user");
    } else if (v.broken && v.line == 1 && !strcmp(v.file, files[0]) &&
               audit_verify_files(files, n, true, &v, &e) == 0 && !v.broken) {
        set(c, DOCTOR_WARN, "%lld records verify, but the chain starts at seq %lld",
            (long long)v.records, (long long)v.first_seq);
        fix(c, "older audit files were pruned (expected after months of rotation) or removed: "
               "compare with the head you kept (deepseek audit verify --partial)");
    } else if (v.broken) {
        set(c, DOCTOR_FAIL, "chain broken at %s:%lld (seq %lld): %s", v.file, (long long)v.line,
            (long long)v.seq, v.reason);
        fix(c, "someone or something changed the audit log: keep a copy, investigate, and "
               "compare with the head kept elsewhere (deepseek audit verify)");
    } else {
        set(c, DOCTOR_PASS, "%lld records in %zu file(s) verify; head seq %lld hash %.16s...",
            (long long)v.records, n, (long long)v.head_seq, v.head_hash);
    }
    audit_files_free(files, n);
}

/* ---- all of it ---- */

void doctor_run(const struct doctor_opts *o, struct doctor_report *r)
{
    const struct config *cfg = o->cfg;
    int timeout = o->timeout_ms > 0 ? o->timeout_ms : 2000;
    const char *model = o->model && o->model[0] ? o->model : cfg->model;
    struct where w;
    struct stat st;
    double size = model[0] && stat(model, &st) == 0 ? (double)st.st_size : -1;

    memset(r, 0, sizeof *r);
    locate(cfg, &w);
    check_process(r, &w);
    check_rest(r, cfg, timeout);
    check_grpc(r, cfg, timeout);
    check_log(r, &w);
    check_compute(r, o->kernels_isa);
    check_memory(r, model, size);
    check_disk(r, w.log_dir, model, size);
    check_model(r, o, model);
    check_keys(r, cfg);
    check_log_dir(r, w.log_dir);
    check_audit(r, w.log_dir);
}
