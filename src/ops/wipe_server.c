/* wipe_server: `wipe --stop-server`, stopping our own server and nothing else; see the
 * section at the end of wipe.h. Every check that the pid is ours runs before the
 * intent record, the intent record before the first signal. */
#include "ops/wipe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- what a pid is ---- */

/* State letter and start time of pid from /proc/PID/stat. -1 when it has no entry. */
static int proc_stat(int pid, char *state, unsigned long long *start)
{
    char p[64], buf[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *f = strrchr(buf, ')'); /* comm may hold spaces and ')' */
    if (!f || f[1] != ' ' || !f[2])
        return -1;
    *state = f[2]; /* field 3; the start time is field 22 */
    for (int field = 3; field <= 22 && f; field++)
        f = strchr(f + 1, ' '); /* the space before field */
    if (!f)
        return -1;
    char *end;
    *start = strtoull(f + 1, &end, 10);
    return end == f + 1 ? -1 : 0;
}

/* True once pid no longer runs the process that started at start: no entry, a
 * zombie (exited, its parent has not reaped it yet) or a new process on that pid. */
static bool proc_gone(int pid, unsigned long long start)
{
    char st;
    unsigned long long s;
    if (proc_stat(pid, &st, &s) != 0)
        return true;
    return st == 'Z' || st == 'X' || s != start;
}

/* Reads /proc/PID/<name> into buf (NUL-ended). The byte count, or -1. */
static ssize_t proc_read(int pid, const char *name, char *buf, size_t cap)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/%s", pid, name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

/* Why pid is not a `deepseek serve` (into why), or NULL when it is one: argv[0]'s
 * file name holds "deepseek", argv[1] is "serve", and the executable (when this user
 * may read the link) is a file whose name holds "deepseek". */
static const char *not_serve(int pid, char *why, size_t cap)
{
    char cmd[512], exe[4096];
    ssize_t n = proc_read(pid, "cmdline", cmd, sizeof cmd);
    if (n <= 0) {
        snprintf(why, cap, "not running");
        return why;
    }
    const char *base = strrchr(cmd, '/');
    base = base ? base + 1 : cmd;
    size_t len0 = strlen(cmd);
    const char *arg1 = (size_t)n > len0 + 1 ? cmd + len0 + 1 : "";
    if (!strstr(base, "deepseek") || strcmp(arg1, "serve") != 0) {
        snprintf(why, cap, "\"%.60s%s%.20s\", not deepseek serve", base, *arg1 ? " " : "",
                 arg1);
        return why;
    }
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/exe", pid);
    ssize_t e = readlink(p, exe, sizeof exe - 1);
    if (e > 0) {
        exe[e] = '\0';
        const char *eb = strrchr(exe, '/');
        if (!strstr(eb ? eb + 1 : exe, "deepseek")) {
            snprintf(why, cap, "running %.200s, not a deepseek binary", exe);
            return why;
        }
    }
    return NULL;
}

/* True when pid runs in the cgroup of deepseek.service. */
static bool in_unit(int pid)
{
    char cg[2048];
    if (proc_read(pid, "cgroup", cg, sizeof cg) <= 0)
        return false;
    char *save = NULL;
    for (char *l = strtok_r(cg, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        size_t n = strlen(l), u = strlen("/" WIPE_SYSTEMD_UNIT);
        if (n >= u && !strcmp(l + n - u, "/" WIPE_SYSTEMD_UNIT))
            return true;
    }
    return false;
}

/* ---- running systemctl ---- */

/* Runs argv (found on PATH) with stdin /dev/null and stdout+stderr into out (first
 * cap-1 bytes), killing it at deadline (monotonic seconds). Its exit status, -1 when
 * it could not start, -2 when it was killed at the deadline. */
static int run_cmd(char *const argv[], double deadline, char *out, size_t cap)
{
    int p[2];
    out[0] = '\0';
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    pid_t child;
    int rc = posix_spawnp(&child, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return -1;
    }
    size_t len = 0;
    bool late = false;
    for (;;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int left = (int)((deadline - mono_s()) * 1000);
        int pr = left > 0 ? poll(&pf, 1, left) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) { /* the deadline, or poll itself failed */
            late = true;
            kill(child, SIGKILL); /* our own child */
            break;
        }
        char buf[512];
        ssize_t r = read(p[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t k = (size_t)r < cap - 1 - len ? (size_t)r : cap - 1 - len;
        memcpy(out + len, buf, k);
        len += k;
        out[len] = '\0';
    }
    close(p[0]);
    int ws;
    while (waitpid(child, &ws, 0) < 0 && errno == EINTR)
        ;
    if (late)
        return -2;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* The MainPID of deepseek.service, 0 when none (no systemd, unit not running). */
static int unit_main_pid(void)
{
    char *argv[] = {"systemctl", "show", "-p", "MainPID", "--value", WIPE_SYSTEMD_UNIT, NULL};
    char out[256];
    if (run_cmd(argv, mono_s() + 10, out, sizeof out) != 0)
        return 0;
    char *end;
    long pid = strtol(out, &end, 10);
    return end != out && (*end == '\n' || *end == '\0') && pid > 0 && pid < (1L << 30)
               ? (int)pid : 0;
}

/* ---- finding it ---- */

/* The pid a pid file names: >0, 0 when it holds no pid, -1 when it cannot be read. */
static long read_pid(const char *path, int *err_no)
{
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        *err_no = errno;
        return -1;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    return end != buf && (*end == '\n' || *end == '\0') && pid > 0 && pid < (1L << 30) ? pid
                                                                                      : 0;
}

/* Takes pid as our server when it is a deepseek serve. */
static bool take(struct wipe_server *s, int pid, enum wipe_server_via via)
{
    char st;
    if (proc_stat(pid, &st, &s->start) != 0 || st == 'Z')
        return false;
    s->pid = pid;
    s->via = via == WIPE_SERVER_PIDFILE && in_unit(pid) ? WIPE_SERVER_SYSTEMD : via;
    return true;
}

void wipe_server_find(const char *pid_file, struct wipe_server *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->pid_file, sizeof out->pid_file, "%s", pid_file ? pid_file : "");
    int e = 0;
    long pid = pid_file && pid_file[0] ? read_pid(pid_file, &e) : -1;
    char why[320];
    const char *bad = pid > 0 ? not_serve((int)pid, why, sizeof why) : NULL;
    if (pid > 0 && !bad && take(out, (int)pid, WIPE_SERVER_PIDFILE)) {
        snprintf(out->note, sizeof out->note, "deepseek serve pid %d from %s%s", out->pid,
                 pid_file, out->via == WIPE_SERVER_SYSTEMD ? " (in " WIPE_SYSTEMD_UNIT ")" : "");
        return;
    }
    if (pid > 0)
        snprintf(out->note, sizeof out->note, "stale pid file %s: pid %ld is %s; not "
                 "signalled", pid_file, pid, bad ? bad : "not running");
    else if (pid == 0)
        snprintf(out->note, sizeof out->note, "stale pid file %s: it holds no pid", pid_file);
    else if (pid_file && pid_file[0] && e != ENOENT)
        snprintf(out->note, sizeof out->note, "pid file %s: %s", pid_file, strerror(e));
    int upid = unit_main_pid();
    if (upid > 0 && !not_serve(upid, why, sizeof why) && take(out, upid, WIPE_SERVER_SYSTEMD)) {
        size_t n = strlen(out->note);
        snprintf(out->note + n, sizeof out->note - n, "%sdeepseek serve pid %d, main process "
                 "of " WIPE_SYSTEMD_UNIT, n ? "; " : "", upid);
    }
}

/* ---- stopping it ---- */

/* Waits until srv's process is gone: 0, -1 at deadline, 1 when *stop was set. */
static int wait_gone(const struct wipe_server *srv, double deadline,
                     volatile sig_atomic_t *stop)
{
    for (;;) {
        if (proc_gone(srv->pid, srv->start))
            return 0;
        if (stop && *stop)
            return 1;
        if (mono_s() >= deadline)
            return -1;
        nap_ms(50);
    }
}

/* A pidfd for srv's process, checked to still be it (-1: none; the caller uses kill
 * after its own start-time check). */
static int pin(const struct wipe_server *srv)
{
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, srv->pid, 0);
    if (fd >= 0 && proc_gone(srv->pid, srv->start)) {
        close(fd); /* the pid was recycled before the pidfd was taken */
        errno = ESRCH;
        return -1;
    }
    return fd;
#else
    (void)srv;
    errno = ENOSYS;
    return -1;
#endif
}

static int send_sig(int pidfd, const struct wipe_server *srv, int sig)
{
#ifdef SYS_pidfd_send_signal
    if (pidfd >= 0)
        return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#endif
    (void)pidfd;
    if (proc_gone(srv->pid, srv->start)) {
        errno = ESRCH;
        return -1;
    }
    return kill(srv->pid, sig);
}

/* After SIGKILL the server could not remove its pid file: remove it while it still
 * names the killed pid, so doctor and logrotate do not find a stale one. */
static void drop_pid_file(const struct wipe_server *srv)
{
    int e;
    if (srv->pid_file[0] && read_pid(srv->pid_file, &e) == srv->pid)
        unlink(srv->pid_file);
}

static int stop_by_signal(const struct wipe_server *srv, int drain_s,
                          volatile sig_atomic_t *stop, struct wipe_stop_report *rep,
                          struct err *err)
{
    int fd = pin(srv);
    if (fd < 0 && errno == ESRCH) {
        snprintf(rep->how, sizeof rep->how, "already gone");
        return 0;
    }
    double t0 = mono_s();
    int rc = 0;
    snprintf(rep->how, sizeof rep->how, "SIGTERM");
    if (send_sig(fd, srv, SIGTERM) != 0) {
        rc = errno == ESRCH ? 0
             : err_errno(err, ERR_IO, errno, "cannot send SIGTERM to deepseek serve pid %d "
                         "(run as its user or root)", srv->pid);
        if (rc == 0)
            snprintf(rep->how, sizeof rep->how, "already gone");
    }
    int w = rc == 0 ? wait_gone(srv, t0 + drain_s + WIPE_STOP_MARGIN_S, stop) : 0;
    if (w < 0) {
        snprintf(rep->how, sizeof rep->how, "SIGTERM+SIGKILL");
        send_sig(fd, srv, SIGKILL);
        w = wait_gone(srv, mono_s() + WIPE_KILL_WAIT_S, stop);
        if (w == 0)
            drop_pid_file(srv);
        else if (w < 0)
            rc = err_set(err, ERR_IO, "deepseek serve pid %d still runs %d s after SIGKILL "
                         "(uninterruptible I/O?)", srv->pid, WIPE_KILL_WAIT_S);
    }
    if (w > 0)
        rc = err_set(err, ERR_IO, "interrupted while deepseek serve pid %d drains (it goes "
                     "on stopping); nothing wiped", srv->pid);
    rep->seconds = mono_s() - t0;
    if (fd >= 0)
        close(fd);
    return rc;
}

static int stop_by_systemd(const struct wipe_server *srv, int drain_s,
                           struct wipe_stop_report *rep, struct err *err)
{
    char *argv[] = {"systemctl", "--no-ask-password", "stop", WIPE_SYSTEMD_UNIT, NULL};
    char out[512];
    double t0 = mono_s();
    snprintf(rep->how, sizeof rep->how, "systemctl stop");
    int st = run_cmd(argv, t0 + drain_s + WIPE_STOP_MARGIN_S + WIPE_KILL_WAIT_S + 5, out,
                     sizeof out);
    out[strcspn(out, "\n")] = '\0';
    rep->seconds = mono_s() - t0;
    if (st != 0)
        return err_set(err, ERR_IO, "systemctl stop " WIPE_SYSTEMD_UNIT " %s%s%s",
                       st == -1 ? "could not run" : st == -2 ? "timed out" : "failed",
                       out[0] ? ": " : "", out);
    if (wait_gone(srv, mono_s() + WIPE_KILL_WAIT_S, NULL) != 0)
        return err_set(err, ERR_IO, "systemctl stop " WIPE_SYSTEMD_UNIT " returned but pid %d "
                       "still runs", srv->pid);
    rep->seconds = mono_s() - t0;
    return 0;
}

/* ---- audit records ---- */

struct stop_rec {
    const struct wipe_server *srv;
    int drain_s;
    const char *reason;
    const struct wipe_stop_report *rep; /* NULL before the stop */
};

static int stop_record(struct audit *audit, const struct stop_rec *s, const char *phase,
                       const char *result, const char *error, int64_t intent_seq,
                       int64_t *seq, struct err *err)
{
    bool sd = s->srv->via == WIPE_SERVER_SYSTEMD;
    char target[64];
    snprintf(target, sizeof target, "deepseek serve pid %d", s->srv->pid);
    json_t *d = json_pack("{s:i,s:s,s:s,s:i,s:i,s:s}", "pid", s->srv->pid, "via",
                          sd ? "systemd" : "pid-file", "pid_file", s->srv->pid_file,
                          "drain_timeout_s", s->drain_s, "wait_limit_s",
                          s->drain_s + WIPE_STOP_MARGIN_S, "reason", s->reason ? s->reason : "");
    if (d && s->rep) {
        json_object_set_new(d, "stopped_by", json_string(s->rep->how));
        json_object_set_new(d, "waited_ms", json_integer((json_int_t)(s->rep->seconds * 1000)));
    }
    struct audit_record r = {
        .action = "server.stop",
        .phase = phase,
        .target = sd ? WIPE_SYSTEMD_UNIT : target,
        .size = -1,
        .method = sd ? "systemctl-stop" : "sigterm-drain-then-sigkill",
        .passes = -1,
        .verification = s->rep && !error ? "proc-gone" : NULL,
        .result = result,
        .error = error,
        .intent_seq = intent_seq,
        .details = d,
    };
    int rc = audit_append(audit, &r, seq, err);
    json_decref(d);
    return rc;
}

int wipe_server_plan(struct audit *audit, const struct wipe_server *srv, int drain_timeout_s,
                     const char *reason, struct err *err)
{
    struct stop_rec s = {srv, drain_timeout_s, reason, NULL};
    return stop_record(audit, &s, "plan", "planned", NULL, 0, NULL, err);
}

int wipe_server_stop(struct audit *audit, const struct wipe_server *srv, int drain_timeout_s,
                     const char *reason, volatile sig_atomic_t *stop,
                     struct wipe_stop_report *rep, enum wipe_status *status, struct err *err)
{
    memset(rep, 0, sizeof *rep);
    *status = WIPE_FAILED;
    if (srv->via == WIPE_SERVER_NONE || srv->pid <= 0)
        return err_set(err, ERR_INVALID, "no server to stop");
    struct stop_rec s = {srv, drain_timeout_s, reason, NULL};
    int64_t intent = 0;
    int rc = stop_record(audit, &s, "intent", "pending", NULL, 0, &intent, err);
    if (rc != 0) {
        *status = WIPE_AUDIT_FAILED;
        return rc;
    }
    rc = srv->via == WIPE_SERVER_SYSTEMD ? stop_by_systemd(srv, drain_timeout_s, rep, err)
                                        : stop_by_signal(srv, drain_timeout_s, stop, rep, err);
    bool stopped = rc != 0 && stop && *stop;
    *status = rc == 0 ? WIPE_OK : stopped ? WIPE_INTERRUPTED : WIPE_FAILED;
    s.rep = rep;
    struct err aerr;
    int arc = stop_record(audit, &s, "result", wipe_status_name(*status), rc ? err->msg : NULL,
                          intent, NULL, &aerr);
    if (arc != 0 && rc == 0) {
        *status = WIPE_AUDIT_FAILED;
        return err_set(err, arc, "the server was stopped but its audit record failed: %s",
                       aerr.msg);
    }
    return rc;
}
