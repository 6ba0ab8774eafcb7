/*
 * `deepseek logs sanitize [--check] FILE...`: redacts secrets in log files in place
 * (ops/sanitize.h), overwriting the old bytes on the same blocks, with audit records.
 * `deepseek logs prompts --key-id ID`: prints one key id's sealed prompt-log records
 * (server/promptlog.h) decrypted, one JSON object a line, for a subject-access request;
 * exit 0, 1 (I/O error, or records that do not decrypt: an erased data key), 2 usage.
 * Exit codes (docs/OPERATIONS.md): 0 done (or nothing to redact), 1 I/O error,
 * 2 usage, 3 refused (unsafe filesystem, file held open: rotate it first), 4 mixed
 * outcomes, 5 verification failed, 9 audit log not writable (nothing changed),
 * 10 --check found secrets (nothing changed).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "ops/audit.h"
#include "ops/keystore.h"
#include "ops/sanitize.h"
#include "server/promptlog.h"

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek logs sanitize [--check] [--log-dir DIR] FILE...\n"
            "       deepseek logs prompts --key-id ID [--log-dir DIR]\n"
            "prompts: prints the key id's prompt-log records (--log-prompts), decrypted with\n"
            "its data key from <log-dir>/cache.keys, one JSON object a line (ID '-': requests\n"
            "without a key). Exit 0, 1 (I/O error or records that do not decrypt), 2 usage.\n"
            "sanitize:\n"
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

static int print_record(const char *json, size_t len, void *ctx)
{
    (void)ctx;
    fwrite(json, 1, len, stdout);
    putchar('\n');
    return 0;
}

/* logs prompts --key-id ID: the subject's records, decrypted. */
static int prompts(const struct config *cfg, int argc, char **argv)
{
    const char *id = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--key-id") && i + 1 < argc) {
            id = argv[++i];
        } else {
            fprintf(stderr, "deepseek logs prompts: unknown option '%s' (see --help)\n",
                    argv[i]);
            return 2;
        }
    }
    if (!id || !promptlog_id_valid(id)) {
        fprintf(stderr, "deepseek logs prompts: --key-id ID is required (a key id, or -)\n");
        return 2;
    }
    char ks_path[CONFIG_PATH_MAX + 32], dir[CONFIG_PATH_MAX + 32];
    snprintf(ks_path, sizeof ks_path, "%s/cache.keys", cfg->log_dir);
    snprintf(dir, sizeof dir, "%s/" PROMPTLOG_DIR, cfg->log_dir);
    struct keystore *ks = NULL;
    struct promptlog *pl = NULL;
    struct err err = {0};
    size_t bad = 0;
    int rc = access(ks_path, F_OK) == 0 ? keystore_open(ks_path, &ks, &err) : 0;
    if (!rc && !(rc = promptlog_new(dir, ks, &pl, &err)))
        rc = promptlog_read(pl, id, print_record, NULL, &bad, &err);
    fflush(stdout);
    if (rc)
        fprintf(stderr, "deepseek logs prompts: %s\n", err.msg);
    else if (bad)
        fprintf(stderr, "deepseek logs prompts: %zu record(s) of %s do not decrypt: its data "
                        "key is erased (or the file was altered)\n", bad, id);
    promptlog_free(pl);
    keystore_free(ks);
    return rc || bad ? 1 : 0;
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
    if (rest >= 2 && !strcmp(argv[1], "prompts"))
        return prompts(&cfg, rest, argv);
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
