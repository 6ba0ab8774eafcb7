/*
 * cli_serve: `deepseek serve [-m MODEL] [--host H] [--port P] [--parallel N]
 * [--ctx-size N] [--queue N] [--threads N] [--api-keys FILE] [--log-dir DIR] ...`:
 * every option is a setting (config/config.h; `deepseek config --help` lists them).
 * Without -m it serves the demo model models/demo-tiny.gguf, saying so, or explains
 * how to make it (`make demo`) and exits 2. The server itself is server/server.c.
 */
#define LOG_MODULE "serve"
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "cli/cli.h"
#include "cli/cli_model.h"
#include "config/config.h"
#include "server/server.h"

#define SERVE_DEMO_MODEL "models/demo-tiny.gguf"

static void serve_usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek serve [-m MODEL.gguf] [--host ADDR] [--port N] [--parallel N]\n"
            "                      [--ctx-size N] [--queue N] [--threads N]\n"
            "                      [--api-keys FILE] [--log-dir DIR] [SETTING ...]\n"
            "Serves the OpenAI-compatible REST API (docs/API.md). Without -m, serves the\n"
            "demo model %s (make it with `make demo`).\n"
            "SIGTERM drains (in-flight requests finish, up to --drain-timeout seconds);\n"
            "SIGHUP reopens the logs and reloads the key file.\n\nsettings:\n",
            SERVE_DEMO_MODEL);
    config_help(out);
}

/* "dir/name.gguf" -> "name": the model id clients send. */
static void serve_model_name(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf"))
        n -= 5;
    snprintf(out, cap, "%.*s", (int)n, base);
}

static int serve_run(struct config *cfg)
{
    struct err err = {0};
    if (log_open(cfg->log_dir, "deepseek.log", config_log_level(cfg), true, &err))
        fprintf(stderr, "deepseek serve: %s\n", err.msg);
    struct cli_model cm;
    LOG(INFO, "loading %s", cfg->model);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (cli_model_open(cfg, &cm, &err)) {
        LOG(ERROR, "%s", err.msg);
        log_close();
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    LOG(INFO, "model %s: %.1f MB %s in %.2f s", cfg->model,
        (double)gguf_file_size(model_gguf(cm.model)) / 1e6,
        cfg->mmap ? "mapped (--mmap)" : "read into memory", (double)(t1.tv_sec - t0.tv_sec) +
        (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    char name[256];
    serve_model_name(cfg->model, name, sizeof name);
    struct server_params sp = {.cfg = cfg, .model = cm.model, .tok = cm.tok,
                               .model_name = name, .n_threads = cm.n_threads,
                               .n_ctx = cm.n_ctx};
    int rc = server_run(&sp, &err);
    if (rc)
        LOG(ERROR, "%s", err.msg);
    cli_model_close(&cm);
    log_close();
    return rc == 0 ? 0 : rc == ERR_IO || rc == ERR_FORMAT ? 2 : 1;
}

int cli_serve(int argc, char **argv)
{
    struct config cfg;
    struct err err = {0};
    int rest = 0;
    if (config_setup(&cfg, argc, argv, &rest, argv, &err) != 0) {
        fprintf(stderr, "deepseek serve: %s\n", err.msg);
        return 2;
    }
    for (int i = 1; i < rest; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            serve_usage(stdout);
            return 0;
        }
        fprintf(stderr, "deepseek serve: unknown argument '%s' (try --help)\n", argv[i]);
        return 2;
    }
    if (!cfg.model[0]) {
        if (access(SERVE_DEMO_MODEL, R_OK) != 0) {
            fprintf(stderr, "deepseek serve: no model given (-m MODEL.gguf) and no demo model "
                            "at %s: run `make demo` to make it\n", SERVE_DEMO_MODEL);
            return 2;
        }
        fprintf(stderr, "deepseek serve: no -m given: serving the demo model %s "
                        "(random weights, gibberish output)\n", SERVE_DEMO_MODEL);
        snprintf(cfg.model, sizeof cfg.model, "%s", SERVE_DEMO_MODEL);
    }
    return serve_run(&cfg);
}
