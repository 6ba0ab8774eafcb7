/* The `deepseek` command: the subcommand table and dispatch, nothing else. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define DEEPSEEK_VERSION "0.1.0"

struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct subcommand subcommands[] = {
    {"inspect", cli_inspect, "print a GGUF file's header, metadata and tensors"},
    {"tokenize", cli_tokenize, "print the token ids of a text"},
    {"mkmodel", cli_mkmodel, "write a synthetic model of a real shape (random weights)"},
    {"config", cli_config, "print the effective configuration (secrets masked)"},
    {"quantize", cli_quantize, "convert a model to q8_0, q4_0, q4_k_m, q5_k_m, q6_k, ..."},
    {"wipe", cli_wipe, "overwrite files in place, verify, remove; audited"},
    {"audit", cli_audit, "verify or show the hash-chained audit log"},
    {"logs", cli_logs, "logs sanitize FILE... (redact secrets in place) | logs prompts --key-id ID"},
    {"keys", cli_keys, "keys add|list|remove: API keys of the server (hashed at rest)"},
    {"generate", cli_generate, "generate text from a prompt (streams to stdout)"},
    {"bench", cli_bench, "measure prompt and generation speed (llama-bench table)"},
    {"serve", cli_serve, "serve the OpenAI-compatible REST API (docs/API.md)"},
    {"chat", cli_chat, "chat with a running server (REST, or gRPC with --grpc; retries)"},
    {"doctor", cli_doctor, "check the deployment: process, ports, log, model checksums, ..."},
    {"erase", cli_erase, "erase one API key id's data (GDPR): data key, prompt logs, caches"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: deepseek <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].help);
    fprintf(out, "\n'deepseek <command> --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("deepseek %s\n", DEEPSEEK_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(cmd, subcommands[i].name))
            return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "deepseek: unknown command '%s' (try 'deepseek --help')\n", cmd);
    return 2;
}
