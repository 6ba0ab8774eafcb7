/*
 * cli_util: small helpers shared by the subcommands (they print to stderr, so they
 * live in cli/, not in the library layers). Main thread only.
 */
#ifndef DS_CLI_CLI_UTIL_H
#define DS_CLI_CLI_UTIL_H

/* Checks that `out` can be created: not a directory, and its directory is writable.
 * Prints "deepseek CMD: ..." and returns 2 if not; 0 if fine. Run before any work so
 * a bad path fails fast. */
int cli_check_output(const char *cmd, const char *out);

#endif
