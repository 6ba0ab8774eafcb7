/*
 * `deepseek audit verify [--partial] [FILE...]` and `deepseek audit show [--since DATE]
 * [FILE...]`: check and print the hash-chained audit log (ops/audit.h).
 * Without FILEs both read every audit.jsonl* file of the log directory (the
 * log-dir setting, else ./logs), oldest first.
 * verify: exit 0 the chain is intact (prints records and the head seq/hash to keep
 * elsewhere), 1 broken (prints file:line, seq and reason of the first bad record),
 * 2 usage or unreadable files. show: exit 0, 2.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "ops/audit.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek audit verify [--partial] [--log-dir DIR] [FILE...]\n"
            "       deepseek audit show [--since DATE] [--log-dir DIR] [FILE...]\n"
            "verify: checks every record's hash and the chain (seq, prev_hash) across\n"
            "  the rotated files, oldest first; exit 0 intact, 1 broken (the first bad\n"
            "  record is named), 2 usage or unreadable. --partial: the oldest file may\n"
            "  continue a chain whose start was pruned.\n"
            "show: prints the records readably; --since 2026-01-31 (or a full UTC time)\n"
            "  keeps records at or after it.\n");
}

/* The files named on the command line, or the log directory's (./logs when the
 * configured one has none). */
static int gather(const struct config *cfg, int argc, char **argv, int first, char ***files,
                  size_t *n, bool *owned)
{
    struct err err;
    *owned = false;
    if (first < argc) {
        *files = argv + first;
        *n = (size_t)(argc - first);
        return 0;
    }
    int rc = audit_list_files(cfg->log_dir, files, n, &err);
    if (rc != 0 || *n == 0) {
        if (rc == 0)
            audit_files_free(*files, *n);
        rc = audit_list_files(LOG_FALLBACK_DIR, files, n, &err);
    }
    if (rc != 0 || *n == 0) {
        if (rc == 0)
            audit_files_free(*files, *n);
        fprintf(stderr, "deepseek audit: no audit files in %s or ./%s\n", cfg->log_dir,
                LOG_FALLBACK_DIR);
        return 2;
    }
    *owned = true;
    return 0;
}

static int verify(char **files, size_t n, bool partial)
{
    struct audit_verify v;
    struct err err;
    if (audit_verify_files(files, n, partial, &v, &err) != 0) {
        fprintf(stderr, "deepseek audit verify: %s\n", err.msg);
        return 2;
    }
    if (v.broken) {
        printf("BROKEN %s:%lld: seq %lld: %s\n", v.file, (long long)v.line, (long long)v.seq,
               v.reason);
        printf("records before it verified: %lld\n", (long long)v.records);
        return 1;
    }
    printf("OK %lld records in %zu file(s), seq %lld..%lld\n", (long long)v.records, n,
           (long long)v.first_seq, (long long)v.head_seq);
    printf("head seq %lld hash %s\n", (long long)v.head_seq, v.head_hash);
    return 0;
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

static int show_one(const json_t *rec, const char *file, int64_t line, void *ctx)
{
    const char *since = ctx;
    if (!rec) {
        printf("%s:%lld: (not a JSON record)\n", file, (long long)line);
        return 0;
    }
    if (since && strcmp(str(rec, "time"), since) < 0)
        return 0;
    const json_t *op = json_object_get(rec, "operator");
    printf("#%lld %s %s %s %s %s (uid %lld %s%s%s)", (long long)json_integer_value(
           json_object_get(rec, "seq")), str(rec, "time"), str(rec, "action"),
           str(rec, "phase"), str(rec, "result"), str(rec, "target"),
           (long long)json_integer_value(json_object_get(op, "uid")), str(op, "user"),
           json_object_get(op, "sudo_user") ? " via sudo from " : "",
           json_object_get(op, "sudo_user") ? str(op, "sudo_user") : "");
    if (json_object_get(rec, "error"))
        printf(": %s", str(rec, "error"));
    putchar('\n');
    return 0;
}

int cli_audit(int argc, char **argv)
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
    if (config_setup(&cfg, argc, argv, &rest, argv, &err) != 0) {
        fprintf(stderr, "deepseek audit: %s\n", err.msg);
        return 2;
    }
    if (rest < 2 || (strcmp(argv[1], "verify") && strcmp(argv[1], "show"))) {
        usage(stderr);
        return 2;
    }
    bool is_verify = !strcmp(argv[1], "verify"), partial = false;
    const char *since = NULL;
    int i = 2;
    for (; i < rest && argv[i][0] == '-'; i++) {
        if (is_verify && !strcmp(argv[i], "--partial"))
            partial = true;
        else if (!is_verify && !strcmp(argv[i], "--since") && i + 1 < rest)
            since = argv[++i];
        else if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else {
            fprintf(stderr, "deepseek audit: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    char **files;
    size_t n;
    bool owned;
    int rc = gather(&cfg, rest, argv, i, &files, &n, &owned);
    if (rc == 0 && is_verify)
        rc = verify(files, n, partial);
    else if (rc == 0 && audit_foreach(files, n, show_one, (void *)since, &err) != 0) {
        fprintf(stderr, "deepseek audit show: %s\n", err.msg);
        rc = 2;
    }
    if (owned)
        audit_files_free(files, n);
    return rc;
}
