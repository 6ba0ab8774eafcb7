/*
 * `deepseek doctor [--json] [--model FILE] [--sha256 HEX] [--md5 HEX] [SETTING ...]`:
 * checks the deployment the server's settings describe (same config file,
 * environment and flags as `deepseek serve`) and prints one line per check with
 * pass/warn/fail/skip and what to do (ops/doctor.h lists the checks).
 * Exit 0 when nothing failed (warnings allowed), 1 when a check failed, 2 usage.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "kernels/kernels.h"
#include "ops/doctor.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek doctor [--json] [--model FILE] [--sha256 HEX] [--md5 HEX]\n"
            "                       [--config FILE] [SETTING ...]\n"
            "Checks the deployment described by the settings (the same ones `deepseek\n"
            "serve` reads): server process (pid file, /proc), REST and gRPC ports, the\n"
            "log's [INFO] Server ready after the last start, GPU or CPU SIMD, RAM and disk\n"
            "against the model size, model SHA-256/MD5 against --sha256/--md5 or the\n"
            "FILE.sha256 / FILE.md5 manifests, key file and log dir permissions, and the\n"
            "audit chain. --json: one JSON object on stdout.\n"
            "Exit 0 nothing failed (warnings allowed), 1 a check failed, 2 usage.\n");
}

static void progress(void *ctx, const char *path, uint64_t done, uint64_t total)
{
    (void)ctx;
    fprintf(stderr, "\rhashing %s: %3.0f%% (%.1f of %.1f GiB)%s", path,
            total ? 100.0 * (double)done / (double)total : 100.0, (double)done / 1073741824.0,
            (double)total / 1073741824.0, done >= total ? "\n" : "");
}

static void print_text(const struct doctor_report *r)
{
    size_t count[4] = {0};
    for (size_t i = 0; i < r->n; i++) {
        const struct doctor_check *c = &r->checks[i];
        char word[8];
        snprintf(word, sizeof word, "%s", doctor_status_name(c->status));
        for (char *p = word; *p; p++)
            *p = (char)(*p - 'a' + 'A');
        printf("%-5s %-10s %s\n", word, c->name, c->detail);
        if (c->fix[0])
            printf("      %-10s -> %s\n", "", c->fix);
        count[c->status]++;
    }
    printf("doctor: %zu pass, %zu warn, %zu fail, %zu skip\n", count[DOCTOR_PASS],
           count[DOCTOR_WARN], count[DOCTOR_FAIL], count[DOCTOR_SKIP]);
}

int cli_doctor(int argc, char **argv)
{
    struct config cfg;
    struct err err;
    int rest = 0;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    }
    if (config_setup(&cfg, argc, argv, &rest, argv, &err) != 0) {
        fprintf(stderr, "deepseek doctor: %s\n", err.msg);
        return 2;
    }
    struct doctor_opts o = {.cfg = &cfg};
    bool json = false;
    for (int i = 1; i < rest; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if ((!strcmp(argv[i], "--sha256") || !strcmp(argv[i], "--md5")) && i + 1 < rest) {
            *(argv[i][2] == 's' ? &o.sha256 : &o.md5) = argv[i + 1];
            i++;
        } else {
            fprintf(stderr, "deepseek doctor: unknown argument '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    kernels_init((enum kernels_isa)config_enum_index("kernels", cfg.kernels));
    o.kernels_isa = kernels_isa_name();
    if (isatty(STDERR_FILENO))
        o.progress = progress;
    struct doctor_report r;
    doctor_run(&o, &r);
    if (json) {
        json_t *j = doctor_to_json(&r);
        if (!j || json_dumpf(j, stdout, JSON_INDENT(2)) != 0) {
            json_decref(j);
            fprintf(stderr, "deepseek doctor: out of memory\n");
            return 1;
        }
        putchar('\n');
        json_decref(j);
    } else {
        print_text(&r);
    }
    return doctor_worst(&r) == DOCTOR_FAIL ? 1 : 0;
}
