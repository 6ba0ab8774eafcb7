/*
 * `deepseek wipe PATH... [--passes N] [--no-zero] [--recursive] [--dry-run]
 *                [--stop-server]`,
 * `deepseek wipe --device zeroout|secure-discard|discard [--dry-run] DEVICE...`:
 * overwrites files in place, verifies, removes them and records it all in the audit
 * log (ops/wipe.h says what is checked and why). Exit codes (docs/OPERATIONS.md):
 *   0 every target wiped (or, with --dry-run, every check passed)
 *   1 an I/O error; that target may be partly overwritten
 *   2 usage error
 *   3 refused by a safety check; nothing was modified
 *   4 several targets with different outcomes (see the lines printed per target)
 *   5 verification failed (read-back mismatch or blocks moved): data may remain
 *   6 --stop-server: our server could not be stopped; nothing was wiped
 *   9 the audit log cannot be written; nothing was modified
 *   130 interrupted (SIGINT/SIGTERM) after the write in flight; recorded
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "ops/audit.h"
#include "ops/wipe.h"

extern char **environ;

#define PID_NAME "deepseek-serve.pid" /* the server's default, in its log dir */

static volatile sig_atomic_t wipe_stop;

static void on_signal(int sig)
{
    (void)sig;
    wipe_stop = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek wipe [options] PATH...\n"
            "Overwrites each file in place, checks the overwrite reached the old blocks,\n"
            "then removes it; every step is recorded in <log-dir>/audit.jsonl.\n\n"
            "  --passes N     random passes before the zero pass (default %d, max %d)\n"
            "  --no-zero      no final zero pass\n"
            "  -r, --recursive  wipe directories: every file, then the directories\n"
            "  --dry-run      run every check, write a plan record, change nothing\n"
            "  --stop-server  first stop our own server (the deepseek serve in the pid\n"
            "                 file, else the main process of deepseek.service): SIGTERM,\n"
            "                 wait for the drain (drain-timeout + %d s), only then SIGKILL;\n"
            "                 or systemctl stop when it runs under systemd. Recorded as\n"
            "                 server.stop. Nothing is stopped when another process holds\n"
            "                 a target (that target is refused) and no other process is\n"
            "                 ever signalled. The server stays stopped. Use the server's\n"
            "                 settings (--config, or --pid-file, --log-dir, --drain-timeout).\n"
            "  --log-dir DIR  where audit.jsonl lives (default from the configuration)\n"
            "  --device zeroout|secure-discard|discard  PATHs are whole block devices\n"
            "                 (refused when mounted or in use); prints the NIST SP 800-88\n"
            "                 category reached and the drive's own Purge command\n\n"
            "Refuses (exit 3, nothing modified) files held open by a process, files with\n"
            "several hard links, and copy-on-write, compressed, network or memory\n"
            "filesystems. Exit: 0 wiped, 1 I/O error, 2 usage, 3 refused, 4 mixed,\n"
            "5 verification failed, 6 server not stopped (--stop-server, nothing wiped),\n"
            "9 audit log not writable, 130 interrupted.\n",
            WIPE_DEFAULT_PASSES, WIPE_MAX_PASSES, WIPE_STOP_MARGIN_S);
}

static int exit_code(enum wipe_status s)
{
    switch (s) {
    case WIPE_OK:
    case WIPE_PLANNED: return 0;
    case WIPE_FAILED: return 1;
    case WIPE_REFUSED: return 3;
    case WIPE_VERIFY_FAILED: return 5;
    case WIPE_AUDIT_FAILED: return 9;
    case WIPE_INTERRUPTED: return 130;
    }
    return 1;
}

static void progress(void *ctx, const char *path, int pass, int passes, uint64_t done,
                     uint64_t total)
{
    (void)ctx;
    fprintf(stderr, "\r%s: pass %d/%d %3d%%", path, pass, passes,
            total ? (int)(done * 100 / total) : 100);
    if (pass == passes && done == total)
        fputc('\n', stderr);
}

/* Parses the options that are not settings. 0, or 2 with a message. */
static int parse(int argc, char **argv, struct wipe_opts *o, int *device, bool *stop_server,
                 int *first_path)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (!strcmp(a, "--passes") && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || end == argv[i] || n < 0 || n > WIPE_MAX_PASSES) {
                fprintf(stderr, "deepseek wipe: --passes %s is not in 0..%d\n", argv[i],
                        WIPE_MAX_PASSES);
                return 2;
            }
            o->passes = (int)n;
        } else if (!strcmp(a, "--no-zero")) {
            o->zero = false;
        } else if (!strcmp(a, "--recursive") || !strcmp(a, "-r")) {
            o->recursive = true;
        } else if (!strcmp(a, "--dry-run")) {
            o->dry_run = true;
        } else if (!strcmp(a, "--stop-server")) {
            *stop_server = true;
        } else if (!strcmp(a, "--device") && i + 1 < argc) {
            *device = wipe_device_method_parse(argv[++i]);
            if (*device < 0) {
                fprintf(stderr, "deepseek wipe: --device %s: use zeroout, secure-discard or "
                                "discard\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "deepseek wipe: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    *first_path = i;
    if (i >= argc) {
        fprintf(stderr, "deepseek wipe: no PATH given (see --help)\n");
        return 2;
    }
    if (*stop_server && *device >= 0) {
        fprintf(stderr, "deepseek wipe: --stop-server is for files, not --device\n");
        return 2;
    }
    if (o->passes == 0 && !o->zero) {
        fprintf(stderr, "deepseek wipe: --passes 0 with --no-zero would write nothing\n");
        return 2;
    }
    return 0;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: the write in flight finishes anyway */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* --device: one block device, then what the method reached and the Purge command. */
static int run_device(struct audit *audit, const char *dev, int method,
                      const struct wipe_opts *o, enum wipe_status *st, struct err *err)
{
    char hint[512];
    int rc = wipe_device(audit, dev, (enum wipe_device_method)method, o, st, err);
    if (rc == 0)
        printf("%s: %s\n", dev, o->dry_run ? "checks passed, would be wiped" : "done");
    printf("%s: %s\n", dev, wipe_device_nist((enum wipe_device_method)method));
    wipe_device_purge_hint(dev, hint, sizeof hint);
    printf("%s: for Purge: %s\n", dev, hint);
    return rc;
}

/* The pid file of the server this configuration describes: pid-file, else the
 * server's default in log-dir, else in ./logs where a server that could not write
 * log-dir falls back (as doctor looks). */
static void pid_path(const struct config *cfg, char *out, size_t cap)
{
    struct stat st;
    if (cfg->pid_file[0]) {
        snprintf(out, cap, "%s", cfg->pid_file);
        return;
    }
    snprintf(out, cap, "%s/%s", cfg->log_dir, PID_NAME);
    if (stat(out, &st) != 0 && stat(LOG_FALLBACK_DIR "/" PID_NAME, &st) == 0)
        snprintf(out, cap, "%s/%s", LOG_FALLBACK_DIR, PID_NAME);
}

/* True (and says so) when a process other than server holds a target: stopping the
 * server would not make that target wipeable, so it is left running. */
static bool other_holder(int argc, char **argv, int first, bool recursive, int server)
{
    for (int i = first; i < argc; i++) {
        struct wipe_holder h[16];
        size_t n = 0;
        struct err err;
        if (wipe_path_holders(argv[i], recursive, h, 16, &n, &err) != 0)
            continue; /* the wipe itself reports it */
        for (size_t j = 0; j < n; j++) {
            if (j < 16 && h[j].pid == server)
                continue;
            fprintf(stderr, "deepseek wipe: --stop-server: deepseek serve pid %d left "
                    "running: %s is also held by ", server, argv[i]);
            if (j < 16)
                fprintf(stderr, "pid %d (%s, %s)", h[j].pid, h[j].comm, h[j].how);
            else
                fprintf(stderr, "%zu processes", n);
            fprintf(stderr, ", which this command never stops\n");
            return true;
        }
    }
    return false;
}

/* --stop-server: finds our server and stops it (--dry-run: says it would and plans
 * it). 0 to go on with the wipe, which checks the holders again; else the exit code. */
static int stop_server_first(struct audit *audit, const struct config *cfg, int argc,
                             char **argv, int first, struct wipe_opts *o)
{
    char pf[CONFIG_PATH_MAX + 32], reason[512];
    struct wipe_server srv;
    pid_path(cfg, pf, sizeof pf);
    wipe_server_find(pf, &srv);
    if (srv.via == WIPE_SERVER_NONE) {
        if (srv.note[0])
            fprintf(stderr, "deepseek wipe: --stop-server: %s; no %s running: nothing "
                    "stopped\n", srv.note, WIPE_SYSTEMD_UNIT);
        else
            fprintf(stderr, "deepseek wipe: --stop-server: no pid file %s and no %s "
                    "running: nothing stopped\n", pf, WIPE_SYSTEMD_UNIT);
        return 0;
    }
    fprintf(stderr, "deepseek wipe: --stop-server: %s\n", srv.note);
    if (other_holder(argc, argv, first, o->recursive, srv.pid))
        return 0;
    snprintf(reason, sizeof reason, "wipe --stop-server%s %.400s%s", o->dry_run ? " --dry-run"
             : "", argv[first], argc - first > 1 ? " ..." : "");
    int drain = (int)cfg->drain_timeout;
    const char *how = srv.via == WIPE_SERVER_SYSTEMD ? "systemctl stop " WIPE_SYSTEMD_UNIT
                                                     : "SIGTERM";
    struct err err;
    err_clear(&err);
    if (o->dry_run) {
        printf("server: would stop deepseek serve pid %d (%s, drain up to %d s + %d s, then "
               "SIGKILL)\n", srv.pid, how, drain, WIPE_STOP_MARGIN_S);
        o->spare_pid = srv.pid;
        if (wipe_server_plan(audit, &srv, drain, reason, &err) == 0)
            return 0;
        fprintf(stderr, "deepseek wipe: nothing done: %s\n", err.msg);
        return 9;
    }
    enum wipe_status st;
    struct wipe_stop_report rep;
    if (wipe_server_stop(audit, &srv, drain, reason, &wipe_stop, &rep, &st, &err) != 0) {
        fprintf(stderr, "deepseek wipe: nothing wiped: %s\n", err.msg);
        return st == WIPE_AUDIT_FAILED ? 9 : st == WIPE_INTERRUPTED ? 130 : 6;
    }
    printf("server: stopped deepseek serve pid %d (%s, gone after %.1f s)\n", srv.pid,
           rep.how, rep.seconds);
    return 0;
}

static int run_targets(struct audit *audit, int argc, char **argv, int first,
                       const struct wipe_opts *o, int device)
{
    int code = -1;
    for (int i = first; i < argc; i++) {
        enum wipe_status st;
        struct err err;
        err_clear(&err);
        int rc = device >= 0 ? run_device(audit, argv[i], device, o, &st, &err)
                             : wipe_path(audit, argv[i], o, &st, &err);
        if (rc == 0 && device < 0)
            printf("%s: %s\n", argv[i], o->dry_run ? "checks passed, would be wiped"
                                                   : "wiped and verified");
        else if (rc != 0)
            fprintf(stderr, "deepseek wipe: %s: %s\n", wipe_status_name(st), err.msg);
        int c = exit_code(st);
        code = code < 0 || code == c ? c : 4;
        if (st == WIPE_INTERRUPTED || wipe_stop)
            return 130;
    }
    return code;
}

int cli_wipe(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    }
    struct config cfg;
    struct err err;
    int rest;
    err_clear(&err);
    if (config_setup(&cfg, argc, argv, &rest, argv, &err) != 0) {
        fprintf(stderr, "deepseek wipe: %s\n", err.msg);
        return 2;
    }
    struct wipe_opts o = {.passes = WIPE_DEFAULT_PASSES, .zero = true, .stop = &wipe_stop};
    int first, device = -1;
    bool stop_server = false;
    int rc = parse(rest, argv, &o, &device, &stop_server, &first);
    if (rc != 0)
        return rc;
    if (isatty(STDERR_FILENO))
        o.progress = progress;

    struct audit_operator op;
    struct audit *audit;
    const char *used;
    audit_operator_detect(&op, environ);
    if (audit_open_fallback(cfg.log_dir, LOG_FALLBACK_DIR, &op, &audit, &used, &err) != 0) {
        fprintf(stderr, "deepseek wipe: nothing wiped: %s\n", err.msg);
        return 9;
    }
    if (strcmp(used, cfg.log_dir) != 0)
        fprintf(stderr, "deepseek wipe: %s is not writable; audit records go to %s\n",
                cfg.log_dir, audit_path(audit));
    install_signals();
    rc = stop_server ? stop_server_first(audit, &cfg, rest, argv, first, &o) : 0;
    if (rc == 0)
        rc = run_targets(audit, rest, argv, first, &o, device);
    audit_free(audit);
    return rc;
}
