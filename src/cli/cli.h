/*
 * cli: the `deepseek` subcommands. Each takes the argv that follows the program
 * name (argv[0] is the subcommand's own name) and returns the process exit code:
 * 0 success, 1 runtime failure, 2 usage error or invalid input (a one-line message
 * on stderr naming what is wrong). Only main.c calls these; only main.c exits.
 *
 * Threading: main thread only.
 */
#ifndef DS_CLI_CLI_H
#define DS_CLI_CLI_H

int cli_inspect(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_mkmodel(int argc, char **argv);
int cli_config(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_wipe(int argc, char **argv);
int cli_audit(int argc, char **argv);
int cli_logs(int argc, char **argv);
int cli_keys(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_chat(int argc, char **argv);
int cli_doctor(int argc, char **argv);
int cli_erase(int argc, char **argv);

#endif
