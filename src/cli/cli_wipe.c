/*
 * `deepseek wipe PATH... [--passes N] [--no-zero] [--recursive] [--dry-run]`,
 * `deepseek wipe --device zeroout|secure-discard|discard [--dry-run] DEVICE...`:
 * overwrites files in place, verifies, removes them and records it all in the audit
 * log (ops/wipe.h says what is checked and why). Exit codes (docs/OPERATIONS.md):
 *   0 every target wiped (or, with --dry-run, every check passed)
 *   1 an I/O error; that target may be partly overwritten
 *   2 usage error
 *   3 refused by a safety check; nothing was modified
 *   4 several targets with different outcomes (see the lines printed per target)
 *   5 verification failed (read-back mismatch or blocks moved): data may remain
 *   9 the audit log cannot be written; nothing was modified
 *   130 interrupted (SIGINT/SIGTERM) after the write in flight; recorded
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "ops/audit.h"
#include "ops/wipe.h"

extern char **environ;

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
            "  --log-dir DIR  where audit.jsonl lives (default from the configuration)\n"
            "  --device zeroout|secure-discard|discard  PATHs are whole block devices\n"
            "                 (refused when mounted or in use); prints the NIST SP 800-88\n"
            "                 category reached and the drive's own Purge command\n\n"
            "Refuses (exit 3, nothing modified) files held open by a process, files with\n"
            "several hard links, and copy-on-write, compressed, network or memory\n"
            "filesystems. Exit: 0 wiped, 1 I/O error, 2 usage, 3 refused, 4 mixed,\n"
            "5 verification failed, 9 audit log not writable, 130 interrupted.\n",
            WIPE_DEFAULT_PASSES, WIPE_MAX_PASSES);
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
static int parse(int argc, char **argv, struct wipe_opts *o, int *device, int *first_path)
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
    int rc = parse(rest, argv, &o, &device, &first);
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
    rc = run_targets(audit, rest, argv, first, &o, device);
    audit_free(audit);
    return rc;
}
