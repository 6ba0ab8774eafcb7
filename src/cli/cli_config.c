/*
 * `deepseek config [--config FILE] [--SETTING VALUE]...`: prints the effective
 * configuration (defaults < file < environment < flags) as a config file with the
 * secrets masked. `--help` prints the settings table. Exit 0, or 2 with one line
 * on stderr naming the file, line, variable or flag at fault.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: deepseek config [--config FILE] [--SETTING VALUE]...\n"
                 "Prints the effective configuration; secrets are shown as ****.\n\n");
    config_help(out);
}

int cli_config(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    }
    struct config cfg;
    struct err err;
    int rest_argc;
    err_clear(&err);
    if (config_setup(&cfg, argc, argv, &rest_argc, argv, &err) != 0) {
        fprintf(stderr, "deepseek config: %s\n", err.msg);
        return 2;
    }
    if (rest_argc > 1) {
        fprintf(stderr, "deepseek config: unknown option or argument '%s' (see --help)\n",
                argv[1]);
        return 2;
    }
    printf("# deepseek effective configuration\n");
    printf("# config file: %s\n", cfg.config_file[0] ? cfg.config_file : "(none)");
    if (cfg.ignored_env[0])
        printf("# ignored environment variables (not settings): %s\n", cfg.ignored_env);
    config_dump(&cfg, stdout);
    return 0;
}
