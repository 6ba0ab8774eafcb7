/*
 * config: struct config and the one table of settings behind it.
 *
 * CONFIG_SETTINGS below is the single list of settings. From it come the fields of
 * struct config, the defaults, the command-line flags (--ctx-size 8192,
 * --ctx-size=8192, -c 8192; bools --log-prompts / --no-log-prompts / --log-prompts=false),
 * the environment variables (DEEPSEEK_CTX_SIZE), the config-file keys (ctx-size or
 * ctx_size), `--help` (config_help) and the dump of `deepseek config` (config_dump).
 * Adding a setting is one X(...) line here plus its paragraph in docs/CONFIGURATION.md.
 *
 * Precedence, lowest first: default < config file < environment < command line.
 * The config file is --config FILE, else $DEEPSEEK_CONFIG, else CONFIG_DEFAULT_FILE
 * when it exists ("--config=" with an empty value means no file at all). Its lines
 * are `key = value`; '#' starts a comment (at line start, or after a blank in an
 * unquoted value); values may be quoted "..." (with \" and \\) or '...'.
 *
 * Errors name where the value came from and the key:
 *     deepseek.conf:12: unknown key 'prot' (did you mean 'port'?)
 *     deepseek.conf:3: port = 70000 is out of range 1..65535
 *     environment: DEEPSEEK_PORT = abc is not an integer
 *     --port 70000 is out of range 1..65535
 * Secret settings (admin-key, cache-url) never appear in messages or dumps: "****".
 *
 * The environment is read only in this module (config_load_env, config_setup).
 * Variables named DEEPSEEK_* that are not settings are ignored, not errors (many
 * shells export DEEPSEEK_API_KEY for DeepSeek's cloud tools); their names are kept
 * in cfg->ignored_env so `deepseek config` can point out a typo.
 *
 * Ownership: struct config is a plain value with fixed-size fields and no pointers:
 * copy it freely; nothing to free. Threading: fill it in main() before starting
 * threads; afterwards it is read-only and any thread may read it. config_help and
 * config_dump print only to the FILE the caller passes.
 */
#ifndef DS_CONFIG_CONFIG_H
#define DS_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "base/log.h"

#define CONFIG_DEFAULT_FILE "/etc/deepseek/deepseek.conf"
#define CONFIG_STRING_MAX 1024 /* bytes of a STRING value, NUL included */
#define CONFIG_PATH_MAX 4096   /* bytes of a PATH value, NUL included */
#define CONFIG_ENUM_MAX 32     /* bytes of an ENUM value, NUL included */

/* Flags of a setting. */
#define CONFIG_SECRET 1u /* masked in dumps and error messages, registered with the log */
#define CONFIG_BYTES 2u  /* an INT size: accepts k, M, G, T suffixes (powers of 1024) */

/*
 * X(id, TYPE, default, min, max, choices, flags, short flag, help)
 *   id       C name of the field; the setting's name is id with '_' -> '-'
 *   TYPE     BOOL (bool), INT (int64_t), FLOAT (double), STRING, PATH (char[]),
 *            ENUM (char[] holding one of `choices`, '|'-separated, lower case)
 *   default, min, max  written as text and parsed by the same code as user input
 *            (min/max "" = unbounded; only INT and FLOAT use them)
 */
#define CONFIG_SETTINGS(X)                                                                    \
    /* ---- model and engine ---- */                                                         \
    X(model, PATH, "", "", "", "", 0, "-m",                                                   \
      "GGUF model file to serve. Empty: the built-in demo model (random weights).")           \
    X(chat_template, STRING, "", "", "", "", 0, NULL,                                         \
      "Chat template by name (deepseek-r1, deepseek-v3, ...). Empty: detect from the model.") \
    X(threads, INT, "0", "0", "1024", "", 0, "-t",                                            \
      "Threads for the forward pass. 0: one per physical core.")                             \
    X(ctx_size, INT, "4096", "16", "1048576", "", 0, "-c",                                    \
      "Context window of one request in tokens (prompt plus generated).")                    \
    X(parallel, INT, "4", "1", "256", "", 0, NULL,                                            \
      "Requests decoded together (continuous-batching slots).")                              \
    X(queue, INT, "64", "0", "100000", "", 0, NULL,                                           \
      "Requests that may wait for a free slot; beyond that they are refused (0: no queue).")  \
    X(batch_size, INT, "512", "1", "65536", "", 0, NULL,                                      \
      "Most tokens in one forward step; longer prompts are processed in chunks.")            \
    X(kv_type, ENUM, "f16", "", "", "f16|f32", 0, NULL,                                       \
      "Element type of the KV cache.")                                                        \
    X(mmap, BOOL, "false", "", "", "", 0, NULL,                                              \
      "Map the model file instead of reading it into huge-page memory (slower decode).")     \
    X(kernels, ENUM, "auto", "", "", "auto|ref|avx2|avx512|amx", 0, NULL,                     \
      "Compute kernels: auto = fastest this CPU has; ref = scalar reference (slow, checks).") \
    X(temperature, FLOAT, "0.8", "0", "2", "", 0, NULL,                                       \
      "Sampling temperature when a request sets none (0: greedy).")                          \
    X(top_p, FLOAT, "0.95", "0", "1", "", 0, NULL,                                            \
      "Nucleus-sampling threshold when a request sets none (1: off).")                       \
    /* ---- network ---- */                                                                  \
    X(host, STRING, "127.0.0.1", "", "", "", 0, NULL,                                         \
      "Address the REST and gRPC servers listen on (0.0.0.0: every interface).")             \
    X(port, INT, "7860", "1", "65535", "", 0, NULL, "TCP port of the REST API.")              \
    X(grpc_port, INT, "50051", "0", "65535", "", 0, NULL,                                     \
      "TCP port of the gRPC API (0: gRPC off).")                                              \
    X(max_body, INT, "1048576", "1024", "1073741824", "", CONFIG_BYTES, NULL,                 \
      "Largest request body accepted, in bytes.")                                            \
    X(drain_timeout, INT, "30", "0", "3600", "", 0, NULL,                                     \
      "Seconds a shutdown waits for running requests before cancelling them.")               \
    X(tls_cert, PATH, "", "", "", "", 0, NULL,                                                \
      "PEM certificate chain for TLS on both ports. Empty: plain TCP.")                      \
    X(tls_key, PATH, "", "", "", "", 0, NULL, "PEM private key of tls-cert.")                 \
    /* ---- access control ---- */                                                           \
    X(api_keys, PATH, "", "", "", "", 0, NULL,                                                \
      "File of API keys, one per line. Empty: no authentication (keep host on 127.0.0.1).")  \
    X(admin_key, STRING, "", "", "", "", CONFIG_SECRET, NULL,                                 \
      "Key for the admin endpoints (also: keys of scope=admin). Empty: only those keys.")    \
    /* ---- cache ---- */                                                                    \
    X(cache_size, INT, "268435456", "0", "1099511627776", "", CONFIG_BYTES, NULL,             \
      "Memory for the response cache in bytes (0: cache off).")                              \
    X(cache_url, STRING, "", "", "", "", CONFIG_SECRET, NULL,                                 \
      "Shared cache URL (redis://user:password@host:6379/0). Empty: memory only.")           \
    /* ---- logs and operations ---- */                                                      \
    X(log_dir, PATH, "/var/log/deepseek", "", "", "", 0, NULL,                                \
      "Directory of the log files; ./logs (with a warning) when it is not writable.")        \
    X(log_level, ENUM, "info", "", "", "error|warn|info|debug", 0, NULL,                      \
      "Least severe level written to the log.")                                              \
    X(log_prompts, BOOL, "false", "", "", "", 0, NULL,                                        \
      "Keep prompts and outputs in per-key logs sealed with the key's data key.")            \
    X(pid_file, PATH, "", "", "", "", 0, NULL,                                                \
      "PID file of the server. Empty: chosen by the server.")                                \
    X(metrics_vllm_names, BOOL, "false", "", "", "", 0, NULL,                                 \
      "Also export Prometheus metrics under vLLM's names (vllm:...).")

#define CONFIG_FIELD_BOOL(id) bool id;
#define CONFIG_FIELD_INT(id) int64_t id;
#define CONFIG_FIELD_FLOAT(id) double id;
#define CONFIG_FIELD_STRING(id) char id[CONFIG_STRING_MAX];
#define CONFIG_FIELD_PATH(id) char id[CONFIG_PATH_MAX];
#define CONFIG_FIELD_ENUM(id) char id[CONFIG_ENUM_MAX];
#define CONFIG_FIELD_(id, type, ...) CONFIG_FIELD_##type(id)

struct config {
    CONFIG_SETTINGS(CONFIG_FIELD_)
    char config_file[CONFIG_PATH_MAX]; /* the file loaded last, "" if none */
    char ignored_env[512];             /* "DEEPSEEK_X DEEPSEEK_Y": not settings */
};

/* Fills every setting with its default and clears config_file/ignored_env.
 * 0, or ERR_INTERNAL if a default in the table does not parse (our bug). */
int config_init_defaults(struct config *cfg);

/* Sets one setting by name (dashes or underscores) from text. ERR_NOTFOUND for an
 * unknown name; ERR_FORMAT / ERR_RANGE as "port = 70000 is out of range 1..65535". */
int config_set(struct config *cfg, const char *name, const char *value, struct err *err);

/* Applies a config file's `key = value` lines on top of cfg. ERR_IO if it cannot be
 * read; ERR_FORMAT / ERR_NOTFOUND / ERR_RANGE naming "path:line" and the key. On
 * error, lines before the bad one have been applied. Records path in config_file. */
int config_load_file(struct config *cfg, const char *path, struct err *err);

/* Applies DEEPSEEK_* variables from envp (NULL: the process environment). */
int config_load_env(struct config *cfg, char *const *envp, struct err *err);

/* Applies setting flags from argv[1..argc) and drops --config FILE (config_setup
 * handles it). Everything else (positionals, flags that are not settings, --help,
 * and all arguments after "--", which is kept too) goes, in order, to rest_argv,
 * with argv[0] first and a NULL after the last; *rest_argc gets the count.
 * rest_argv needs room for argc+1 pointers and may be argv itself.
 * A setting flag with a bad or missing value is an error naming the flag. */
int config_parse_args(struct config *cfg, int argc, char **argv, int *rest_argc,
                      char **rest_argv, struct err *err);

/* The whole chain: defaults, config file, environment, flags, config_validate, and
 * config_register_secrets. Same argv contract as config_parse_args. */
int config_setup(struct config *cfg, int argc, char **argv, int *rest_argc, char **rest_argv,
                 struct err *err);

/* Checks rules across settings (tls-cert and tls-key together; grpc-port differs
 * from port). 0 or ERR_INVALID. */
int config_validate(const struct config *cfg, struct err *err);

/* Registers every non-empty secret setting with the log's redaction. 0 or ERR_NOMEM. */
int config_register_secrets(const struct config *cfg);

/* Prints the settings table: flag, environment variable, default, range, help. */
void config_help(FILE *out);

/* Prints `name = value` lines in table order (a valid config file, secrets aside):
 * secrets as **** (or (unset) when empty), strings quoted when needed. */
void config_dump(const struct config *cfg, FILE *out);

/* True if name (dashes or underscores) is a setting. */
bool config_is_setting(const char *name);

/* The position of value among an ENUM setting's choices (kernels: auto=0, ref=1,
 * avx2=2, avx512=3, amx=4, matching enum kernels_isa), or -1. */
int config_enum_index(const char *name, const char *value);

/* cfg->log_level as the log module's enum. */
enum log_level config_log_level(const struct config *cfg);

#endif
