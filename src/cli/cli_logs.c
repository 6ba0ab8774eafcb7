/*
 * `deepseek logs sanitize [--check] FILE...`: redacts secrets in log files in place
 * (ops/sanitize.h), overwriting the old bytes on the same blocks, with audit records.
 * Exit codes (docs/OPERATIONS.md): 0 done (or nothing to redact), 1 I/O error,
 * 2 usage, 3 refused (unsafe filesystem, file held open: rotate it first), 4 mixed
 * outcomes, 5 verification failed, 9 audit log not writable (nothing changed),
 * 10 --check found secrets (nothing changed).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "ops/audit.h"
#include "ops/sanitize.h"

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek logs sanitize [--check] [--log-dir DIR] FILE...\n"
            "Replaces API keys (sk-...), Bearer/Basic credentials, api_key=/token=/password=\n"
            "parameters, JSON password/api_key/token fields and URL passwords by\n"
            "[REDACTED]*** of the same length, in place on the same blocks, and records\n"
            "it in <log-dir>/audit.jsonl. --check only counts (exit 10 when any found).\n"
            "A log still open by a process (the server's active log) is refused: rotate\n"
            "it first. Exit: 0 done, 1 I/O error, 2 usage, 3 refused, 4 mixed,\n"
            "5 verification failed, 9 audit log not writable, 10 secrets found (--check).\n");
}

static int exit_code(enum sanitize_status s)
{
    switch (s) {
    case SANITIZE_DONE:
    case SANITIZE_CLEAN: return 0;
    case SANITIZE_FOUND: return 10;
    case SANITIZE_REFUSED: return 3;
    case SANITIZE_FAILED: return 1;
    case SANITIZE_VERIFY_FAILED: return 5;
    case SANITIZE_AUDIT_FAILED: return 9;
    }
    return 1;
}

static void report(const char *path, const struct sanitize_stats *st, enum sanitize_status s)
{
    printf("%s: %s, %llu secret(s)", path, sanitize_status_name(s),
           (unsigned long long)st->total);
    for (int c = 0; c < SANITIZE_NCLASS; c++)
        if (st->matches[c])
            printf(" %s=%llu", sanitize_class_name(c), (unsigned long long)st->matches[c]);
    putchar('\n');
}

static int run(const struct sanitizer *s, struct audit *audit, int argc, char **argv,
               int first, bool check)
{
    int code = -1;
    for (int i = first; i < argc; i++) {
        struct sanitize_stats st;
        enum sanitize_status status;
        struct err err;
        memset(&st, 0, sizeof st);
        err_clear(&err);
        if (sanitize_file(s, audit, argv[i], check, &st, &status, &err) == 0)
            report(argv[i], &st, status);
        else
            fprintf(stderr, "deepseek logs sanitize: %s: %s\n", sanitize_status_name(status),
                    err.msg);
        int c = exit_code(status);
        code = code < 0 || code == c ? c : 4;
    }
    return code;
}

static int parse(int argc, char **argv, bool *check, int *first)
{
    int i = 2;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--check")) {
            *check = true;
        } else if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else {
            fprintf(stderr, "deepseek logs: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    *first = i;
    if (i >= argc) {
        fprintf(stderr, "deepseek logs sanitize: no FILE given (see --help)\n");
        return 2;
    }
    return 0;
}

int cli_logs(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    }
    struct config cfg;
    struct err err;
    int rest, first;
    bool check = false;
    if (config_setup(&cfg, argc, argv, &rest, argv, &err) != 0) {
        fprintf(stderr, "deepseek logs: %s\n", err.msg);
        return 2;
    }
    if (rest < 2 || strcmp(argv[1], "sanitize") != 0) {
        usage(stderr);
        return 2;
    }
    if (parse(rest, argv, &check, &first) != 0)
        return 2;
    struct sanitizer *s;
    if (sanitize_new(&s, &err) != 0) {
        fprintf(stderr, "deepseek logs: %s\n", err.msg);
        return 1;
    }
    struct audit *audit = NULL;
    if (!check) {
        struct audit_operator op;
        const char *used;
        audit_operator_detect(&op, environ);
        if (audit_open_fallback(cfg.log_dir, LOG_FALLBACK_DIR, &op, &audit, &used, &err)) {
            fprintf(stderr, "deepseek logs sanitize: nothing changed: %s\n", err.msg);
            sanitize_free(s);
            return 9;
        }
    }
    int rc = run(s, audit, rest, argv, first, check);
    audit_free(audit);
    sanitize_free(s);
    return rc;
}
