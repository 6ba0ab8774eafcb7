/* Unit tests for config: defaults, every value type, the config file, the
 * environment, flags, the precedence chain, dump and help. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

static char tmp_dir[] = "/tmp/test_config.XXXXXX";

/* Writes text to a file in tmp_dir; returns its path (static buffer per name). */
static const char *write_file(const char *name, const char *text)
{
    static char paths[4][256];
    static int next;
    char *path = paths[next++ % 4];
    assert_true(snprintf(path, 256, "%s/%s", tmp_dir, name) < 256);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static char *dump_to_string(const struct config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_dump(cfg, f);
    fclose(f);
    return buf;
}

static void expect_err(int rc, int want, const struct err *err, const char *msg)
{
    assert_int_equal(rc, want);
    assert_string_equal(err->msg, msg);
}

/* ---- defaults and values ---- */

static void test_defaults(void **state)
{
    (void)state;
    struct config cfg;
    struct err err;
    assert_int_equal(config_init_defaults(&cfg), 0);
    assert_string_equal(cfg.model, "");
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 7860);
    assert_int_equal(cfg.grpc_port, 50051);
    assert_int_equal(cfg.threads, 0);
    assert_int_equal(cfg.ctx_size, 4096);
    assert_int_equal(cfg.parallel, 4);
    assert_int_equal(cfg.queue, 64);
    assert_int_equal(cfg.batch_size, 512);
    assert_string_equal(cfg.kv_type, "f16");
    assert_string_equal(cfg.kernels, "auto");
    assert_string_equal(cfg.log_dir, "/var/log/deepseek");
    assert_string_equal(cfg.log_level, "info");
    assert_false(cfg.log_prompts);
    assert_int_equal(cfg.max_body, 1048576);
    assert_int_equal(cfg.drain_timeout, 30);
    assert_int_equal(cfg.cache_size, 268435456);
    assert_string_equal(cfg.admin_key, "");
    assert_false(cfg.metrics_vllm_names);
    assert_true(cfg.temperature == 0.8);
    assert_true(cfg.top_p == 0.95);
    assert_string_equal(cfg.config_file, "");
    assert_int_equal(config_validate(&cfg, &err), 0);
    assert_int_equal(config_log_level(&cfg), LOG_LEVEL_INFO);
}

static void test_set_each_type(void **state)
{
    (void)state;
    struct config cfg;
    struct err err;
    config_init_defaults(&cfg);
    assert_int_equal(config_set(&cfg, "port", "8080", &err), 0);
    assert_int_equal(cfg.port, 8080);
    assert_int_equal(config_set(&cfg, "ctx_size", "8192", &err), 0); /* underscores too */
    assert_int_equal(cfg.ctx_size, 8192);
    assert_int_equal(config_set(&cfg, "log-prompts", "YES", &err), 0);
    assert_true(cfg.log_prompts);
    assert_int_equal(config_set(&cfg, "log-prompts", "off", &err), 0);
    assert_false(cfg.log_prompts);
    assert_int_equal(config_set(&cfg, "kv-type", "F32", &err), 0);
    assert_string_equal(cfg.kv_type, "f32"); /* stored as the canonical choice */
    assert_int_equal(config_set(&cfg, "temperature", "0.25", &err), 0);
    assert_true(cfg.temperature == 0.25);
    assert_int_equal(config_set(&cfg, "max-body", "2M", &err), 0);
    assert_int_equal(cfg.max_body, 2 << 20);
    assert_int_equal(config_set(&cfg, "cache-size", "1g", &err), 0);
    assert_int_equal(cfg.cache_size, 1 << 30);
    assert_int_equal(config_set(&cfg, "model", "/models/r1 distill.gguf", &err), 0);
    assert_string_equal(cfg.model, "/models/r1 distill.gguf");
    assert_int_equal(config_set(&cfg, "log-level", "debug", &err), 0);
    assert_int_equal(config_log_level(&cfg), LOG_LEVEL_DEBUG);
    assert_int_equal(config_enum_index("kernels", "avx2"), 2);
    assert_int_equal(config_enum_index("kernels", "sse"), -1);
    assert_int_equal(config_enum_index("port", "1"), -1);
    assert_true(config_is_setting("grpc_port"));
    assert_false(config_is_setting("grpc"));
}

static void test_set_errors_name_the_key(void **state)
{
    (void)state;
    struct config cfg;
    struct err err;
    config_init_defaults(&cfg);
    expect_err(config_set(&cfg, "port", "70000", &err), ERR_RANGE, &err,
               "port = 70000 is out of range 1..65535");
    expect_err(config_set(&cfg, "port", "80x", &err), ERR_FORMAT, &err,
               "port = 80x is not an integer");
    expect_err(config_set(&cfg, "port", "", &err), ERR_FORMAT, &err,
               "port = '' is not an integer");
    expect_err(config_set(&cfg, "port", "99999999999999999999", &err), ERR_RANGE, &err,
               "port = 99999999999999999999 is out of range 1..65535");
    expect_err(config_set(&cfg, "max-body", "2X", &err), ERR_FORMAT, &err,
               "max-body = 2X is not an integer (a k, M, G or T suffix may follow)");
    expect_err(config_set(&cfg, "max-body", "2G", &err), ERR_RANGE, &err,
               "max-body = 2G is out of range 1024..1073741824");
    expect_err(config_set(&cfg, "cache-size", "9999999999T", &err), ERR_RANGE, &err,
               "cache-size = 9999999999T is out of range 0..1099511627776");
    expect_err(config_set(&cfg, "temperature", "nan", &err), ERR_FORMAT, &err,
               "temperature = nan is not a number");
    expect_err(config_set(&cfg, "top-p", "1.5", &err), ERR_RANGE, &err,
               "top-p = 1.5 is out of range 0..1");
    expect_err(config_set(&cfg, "log-prompts", "maybe", &err), ERR_FORMAT, &err,
               "log-prompts = maybe is not a boolean (true or false)");
    expect_err(config_set(&cfg, "kv-type", "f64", &err), ERR_FORMAT, &err,
               "kv-type = f64 is not one of f16|f32");
    expect_err(config_set(&cfg, "host", "a\nb", &err), ERR_FORMAT, &err,
               "host = value contains a control character");
    expect_err(config_set(&cfg, "prot", "1", &err), ERR_NOTFOUND, &err,
               "unknown setting 'prot' (did you mean 'port'?)");
    expect_err(config_set(&cfg, "zzzzzzzz", "1", &err), ERR_NOTFOUND, &err,
               "unknown setting 'zzzzzzzz'");
    char big[CONFIG_STRING_MAX + 10];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_err(config_set(&cfg, "host", big, &err), ERR_RANGE, &err,
               "host = value is too long (1033 bytes, at most 1023)");
    /* A secret's value never appears in a message. */
    expect_err(config_set(&cfg, "admin-key", big, &err), ERR_RANGE, &err,
               "admin-key = **** is too long (1033 bytes, at most 1023)");
    expect_err(config_set(&cfg, "admin-key", "****", &err), ERR_FORMAT, &err,
               "admin-key = **** is the mask printed by 'deepseek config', not a value");
    assert_int_equal(cfg.port, 7860); /* failed sets change nothing */
    assert_string_equal(cfg.admin_key, "");
}

/* ---- config file ---- */

static void test_file_good(void **state)
{
    (void)state;
    struct config cfg;
    struct err err;
    config_init_defaults(&cfg);
    const char *path = write_file("good.conf",
                                  "# deepseek.conf\n"
                                  "\n"
                                  "port = 8000\n"
                                  "  grpc_port=0   # gRPC off\n"
                                  "model = \"/srv/models/my model #1.gguf\"\n"
                                  "chat-template = 'deepseek-r1'\n"
                                  "host = \"say \\\"hi\\\" \\\\ there\"  # quoted\n"
                                  "log-prompts = true\r\n"
                                  "api-keys = /etc/deepseek/keys#not-a-comment\n"
                                  "admin-key = (unset)\n"
                                  "\t# indented comment\n");
    assert_int_equal(config_load_file(&cfg, path, &err), 0);
    assert_int_equal(cfg.port, 8000);
    assert_int_equal(cfg.grpc_port, 0);
    assert_string_equal(cfg.model, "/srv/models/my model #1.gguf");
    assert_string_equal(cfg.chat_template, "deepseek-r1");
    assert_string_equal(cfg.host, "say \"hi\" \\ there");
    assert_true(cfg.log_prompts);
    assert_string_equal(cfg.api_keys, "/etc/deepseek/keys#not-a-comment");
    assert_string_equal(cfg.admin_key, "");
    assert_string_equal(cfg.config_file, path);
}

static void test_file_errors_name_file_line_key(void **state)
{
    (void)state;
    struct config cfg;
    struct err err;
    char want[512];
    config_init_defaults(&cfg);
    const char *p = write_file("deepseek.conf", "# comment\nport = 8000\nprot = 9000\n");
    snprintf(want, sizeof want, "%s:3: unknown key 'prot' (did you mean 'port'?)", p);
    expect_err(config_load_file(&cfg, p, &err), ERR_NOTFOUND, &err, want);
    assert_int_equal(cfg.port, 8000); /* lines before the bad one were applied */

    p = write_file("range.conf", "\n\nport = 70000\n");
    snprintf(want, sizeof want, "%s:3: port = 70000 is out of range 1..65535", p);
    expect_err(config_load_file(&cfg, p, &err), ERR_RANGE, &err, want);

    p = write_file("noeq.conf", "port 8000\n");
    snprintf(want, sizeof want, "%s:1: expected 'key = value', got 'port 8000'", p);
    expect_err(config_load_file(&cfg, p, &err), ERR_FORMAT, &err, want);

    p = write_file("quote.conf", "host = \"abc\n");
    snprintf(want, sizeof want, "%s:1: host: unterminated quote", p);
    expect_err(config_load_file(&cfg, p, &err), ERR_FORMAT, &err, want);

    p = write_file("after.conf", "host = \"abc\" def\n");
    snprintf(want, sizeof want, "%s:1: host: text after the closing quote", p);
    expect_err(config_load_file(&cfg, p, &err), ERR_FORMAT, &err, want);

    p = write_file("secret.conf", "admin-key = ****\n");
    snprintf(want, sizeof want,
             "%s:1: admin-key = **** is the mask printed by 'deepseek config', not a value", p);
    expect_err(config_load_file(&cfg, p, &err), ERR_FORMAT, &err, want);

    char nul_path[256];
    snprintf(nul_path, sizeof nul_path, "%s/nul.conf", tmp_dir);
    FILE *f = fopen(nul_path, "w");
    fwrite("port = 80\0\n", 1, 11, f);
    fclose(f);
    snprintf(want, sizeof want, "%s:1: line holds a NUL byte", nul_path);
    expect_err(config_load_file(&cfg, nul_path, &err), ERR_FORMAT, &err, want);

    snprintf(want, sizeof want, "%s/missing.conf", tmp_dir);
    assert_int_equal(config_load_file(&cfg, want, &err), ERR_IO);
    assert_non_null(strstr(err.msg, "missing.conf: No such file or directory"));
    assert_int_equal(config_load_file(&cfg, tmp_dir, &err), ERR_IO); /* a directory */
    assert_non_null(strstr(err.msg, tmp_dir));
}

/* ---- environment ---- */

static void test_env(void **state)
{
    (void)state;
    struct config cfg;
    struct err err;
    config_init_defaults(&cfg);
    char *envp[] = {"HOME=/root",          "DEEPSEEK_PORT=8000",      "DEEPSEEK_API_KEY=sk-x",
                    "DEEPSEEK_CTX_SIZE=2k", "DEEPSEEK_LOG_PROMPTS=1", "DEEPSEEK_CONFIG=/nope",
                    "PORT=1",              "DEEPSEEK_PROT=9",         NULL};
    assert_int_equal(config_load_env(&cfg, envp, &err), ERR_FORMAT); /* 2k: not bytes */
    assert_string_equal(err.msg, "environment: DEEPSEEK_CTX_SIZE = 2k is not an integer");
    envp[3] = "DEEPSEEK_CTX_SIZE=2048";
    config_init_defaults(&cfg);
    assert_int_equal(config_load_env(&cfg, envp, &err), 0);
    assert_int_equal(cfg.port, 8000);
    assert_int_equal(cfg.ctx_size, 2048);
    assert_true(cfg.log_prompts);
    assert_string_equal(cfg.ignored_env, "DEEPSEEK_API_KEY DEEPSEEK_PROT");

    char *bad[] = {"DEEPSEEK_PORT=0", NULL};
    expect_err(config_load_env(&cfg, bad, &err), ERR_RANGE, &err,
               "environment: DEEPSEEK_PORT = 0 is out of range 1..65535");
    char *secret[] = {"DEEPSEEK_ADMIN_KEY=bad\nkey", NULL};
    expect_err(config_load_env(&cfg, secret, &err), ERR_FORMAT, &err,
               "environment: DEEPSEEK_ADMIN_KEY = **** contains a control character");
}

/* ---- command line ---- */

static void test_args(void **state)
{
    (void)state;
    struct config cfg;
    struct err err;
    config_init_defaults(&cfg);
    char *argv[] = {"generate", "-m", "x.gguf", "-p", "hello", "--port=8080", "--threads", "8",
                    "--log-prompts", "--no-metrics-vllm-names", "--verbose", "pos", "--config",
                    "f.conf", "--ctx_size", "8192", "-c", "1024", "--no-port", "--kv-type=f32",
                    "--temperature", "-0", "--", "--port", "1", NULL};
    int argc = (int)(sizeof argv / sizeof argv[0]) - 1, rest_argc = -1;
    char *rest[sizeof argv / sizeof argv[0]];
    assert_int_equal(config_parse_args(&cfg, argc, argv, &rest_argc, rest, &err), 0);
    assert_string_equal(cfg.model, "x.gguf");
    assert_int_equal(cfg.port, 8080);
    assert_int_equal(cfg.threads, 8);
    assert_true(cfg.log_prompts);
    assert_false(cfg.metrics_vllm_names);
    assert_int_equal(cfg.ctx_size, 1024); /* the later flag wins */
    assert_string_equal(cfg.kv_type, "f32");
    assert_true(cfg.temperature == 0);
    const char *want[] = {"generate", "-p", "hello", "--verbose", "pos", "--no-port", "--", "--port",
                          "1"};
    assert_int_equal(rest_argc, 9);
    for (int i = 0; i < rest_argc; i++)
        assert_string_equal(rest[i], want[i]);
    assert_null(rest[rest_argc]);

    /* In place: rest may be argv itself. */
    char *inplace[] = {"serve", "--port", "9", "x", "--log-prompts=false", "y", NULL};
    assert_int_equal(config_parse_args(&cfg, 6, inplace, &rest_argc, inplace, &err), 0);
    assert_int_equal(rest_argc, 3);
    assert_string_equal(inplace[1], "x");
    assert_string_equal(inplace[2], "y");
    assert_null(inplace[3]);
    assert_false(cfg.log_prompts);
}

static void test_args_errors_name_the_flag(void **state)
{
    (void)state;
    struct config cfg;
    struct err err;
    int rest_argc;
    char *rest[8];
    config_init_defaults(&cfg);
    char *a1[] = {"x", "--port=70000", NULL};
    expect_err(config_parse_args(&cfg, 2, a1, &rest_argc, rest, &err), ERR_RANGE, &err,
               "--port 70000 is out of range 1..65535");
    char *a2[] = {"x", "-c", "8", NULL};
    expect_err(config_parse_args(&cfg, 3, a2, &rest_argc, rest, &err), ERR_RANGE, &err,
               "-c 8 is out of range 16..1048576");
    char *a3[] = {"x", "--threads", NULL};
    expect_err(config_parse_args(&cfg, 2, a3, &rest_argc, rest, &err), ERR_INVALID, &err,
               "--threads needs a value");
    char *a4[] = {"x", "--log-prompts=perhaps", NULL};
    expect_err(config_parse_args(&cfg, 2, a4, &rest_argc, rest, &err), ERR_FORMAT, &err,
               "--log-prompts perhaps is not a boolean (true or false)");
    char *a5[] = {"x", "--config", NULL};
    expect_err(config_parse_args(&cfg, 2, a5, &rest_argc, rest, &err), ERR_INVALID, &err,
               "--config needs a value (a file name)");
    char *a6[] = {"x", "--admin-key", "sk-abc\x01", NULL};
    expect_err(config_parse_args(&cfg, 3, a6, &rest_argc, rest, &err), ERR_FORMAT, &err,
               "--admin-key **** contains a control character");
}

/* ---- the chain ---- */

static void test_setup_precedence(void **state)
{
    (void)state;
    struct config cfg;
    struct err err;
    int rest_argc;
    char *rest[8];
    const char *file = write_file("chain.conf", "port = 7000\nthreads = 3\nqueue = 5\n");
    char cfg_arg[300];
    snprintf(cfg_arg, sizeof cfg_arg, "--config=%s", file);
    unsetenv("DEEPSEEK_CONFIG");

    /* file only */
    char *a1[] = {"serve", cfg_arg, NULL};
    assert_int_equal(config_setup(&cfg, 2, a1, &rest_argc, rest, &err), 0);
    assert_int_equal(cfg.port, 7000);
    assert_string_equal(cfg.config_file, file);
    /* env beats file */
    setenv("DEEPSEEK_PORT", "8000", 1);
    setenv("DEEPSEEK_QUEUE", "6", 1);
    char *a2[] = {"serve", "--config", (char *)file, NULL};
    assert_int_equal(config_setup(&cfg, 3, a2, &rest_argc, rest, &err), 0);
    assert_int_equal(cfg.port, 8000);
    assert_int_equal(cfg.threads, 3);
    assert_int_equal(cfg.queue, 6);
    /* flag beats env; $DEEPSEEK_CONFIG names the file */
    setenv("DEEPSEEK_CONFIG", file, 1);
    char *a3[] = {"serve", "--port", "9000", "extra", NULL};
    assert_int_equal(config_setup(&cfg, 4, a3, &rest_argc, rest, &err), 0);
    assert_int_equal(cfg.port, 9000);
    assert_int_equal(cfg.threads, 3);
    assert_int_equal(rest_argc, 2);
    assert_string_equal(rest[1], "extra");
    /* --config= (empty) means no file, whatever $DEEPSEEK_CONFIG says */
    char *a4[] = {"serve", "--config=", NULL};
    assert_int_equal(config_setup(&cfg, 2, a4, &rest_argc, rest, &err), 0);
    assert_int_equal(cfg.threads, 0);
    assert_int_equal(cfg.port, 8000);
    assert_string_equal(cfg.config_file, "");
    unsetenv("DEEPSEEK_PORT");
    unsetenv("DEEPSEEK_QUEUE");
    unsetenv("DEEPSEEK_CONFIG");

    /* cross-setting rules and registered secrets */
    char *a5[] = {"serve", "--config=", "--tls-cert", "c.pem", NULL};
    expect_err(config_setup(&cfg, 4, a5, &rest_argc, rest, &err), ERR_INVALID, &err,
               "tls-cert is set but tls-key is not: give both or neither");
    char *a6[] = {"serve", "--config=", "--grpc-port", "7860", NULL};
    expect_err(config_setup(&cfg, 4, a6, &rest_argc, rest, &err), ERR_INVALID, &err,
               "grpc-port 7860 is the same as port");
    char *a7[] = {"serve", "--config=", "--admin-key", "adminKEY-0001", NULL};
    assert_int_equal(config_setup(&cfg, 4, a7, &rest_argc, rest, &err), 0);
    char *red = log_redact("key adminKEY-0001 used");
    assert_string_equal(red, "key [REDACTED] used");
    free(red);
    log_clear_secrets();
}

/* ---- output ---- */

static void test_dump_masks_and_round_trips(void **state)
{
    (void)state;
    struct config cfg, back;
    struct err err;
    config_init_defaults(&cfg);
    char *text = dump_to_string(&cfg);
    assert_non_null(strstr(text, "port = 7860\n"));
    assert_non_null(strstr(text, "grpc-port = 50051\n"));
    assert_non_null(strstr(text, "model = \"\"\n"));
    assert_non_null(strstr(text, "temperature = 0.8\n"));
    assert_non_null(strstr(text, "log-prompts = false\n"));
    assert_non_null(strstr(text, "admin-key = (unset)\n"));
    assert_non_null(strstr(text, "cache-url = (unset)\n"));
    free(text);

    config_set(&cfg, "host", " spaced # \"quoted\" \\ ", &err);
    config_set(&cfg, "model", "/m/a'b.gguf", &err);
    config_set(&cfg, "top-p", "0.1", &err);
    config_set(&cfg, "max-body", "3M", &err);
    config_set(&cfg, "kernels", "REF", &err);
    text = dump_to_string(&cfg);
    config_init_defaults(&back);
    const char *p = write_file("dump.conf", text);
    assert_int_equal(config_load_file(&back, p, &err), 0);
    memset(back.config_file, 0, sizeof back.config_file);
    assert_memory_equal(&cfg, &back, sizeof cfg);
    free(text);

    config_set(&cfg, "admin-key", "sk-supersecret123", &err);
    config_set(&cfg, "cache-url", "redis://u:pw@h/0", &err);
    text = dump_to_string(&cfg);
    assert_non_null(strstr(text, "admin-key = ****\n"));
    assert_non_null(strstr(text, "cache-url = ****\n"));
    assert_null(strstr(text, "supersecret"));
    assert_null(strstr(text, "pw@"));
    free(text);
}

static void test_help_lists_every_setting(void **state)
{
    (void)state;
    struct config cfg;
    config_init_defaults(&cfg);
    char *dump = dump_to_string(&cfg), *help = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&help, &len);
    config_help(f);
    fclose(f);
    int n = 0;
    for (char *line = strtok(dump, "\n"); line; line = strtok(NULL, "\n"), n++) {
        char name[64], flag[80], env[80];
        assert_int_equal(sscanf(line, "%63s =", name), 1);
        snprintf(flag, sizeof flag, "--%s", name);
        snprintf(env, sizeof env, "DEEPSEEK_");
        for (size_t i = 0; name[i]; i++)
            env[9 + i] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
        env[9 + strlen(name)] = '\0';
        if (!strstr(help, flag) || !strstr(help, env))
            fail_msg("help lacks %s or %s", flag, env);
    }
    assert_true(n >= 25);
    assert_non_null(strstr(help, "-m, --model PATH"));
    assert_non_null(strstr(help, "--log-prompts, --no-log-prompts"));
    assert_non_null(strstr(help, "range 1..65535"));
    assert_non_null(strstr(help, "one of f16|f32"));
    free(dump);
    free(help);
}

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set_each_type),
        cmocka_unit_test(test_set_errors_name_the_key),
        cmocka_unit_test(test_file_good),
        cmocka_unit_test(test_file_errors_name_file_line_key),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_args_errors_name_the_flag),
        cmocka_unit_test(test_setup_precedence),
        cmocka_unit_test(test_dump_masks_and_round_trips),
        cmocka_unit_test(test_help_lists_every_setting),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
