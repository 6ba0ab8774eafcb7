/*
 * cli_model: what the model-running subcommands (generate, bench) share: loading the
 * configured model and its tokenizer, choosing the kernels and thread count from the
 * settings, creating a forward context, and parsing numeric flags.
 *
 * Settings used: model (-m), kernels, threads (0: physical cores, base/cpu.h),
 * kv-type, ctx-size (capped at the model's context_length), batch-size.
 *
 * Ownership: struct cli_model owns the model, tokenizer and forward context it holds;
 * cli_model_close releases them. Threading: main thread only.
 */
#ifndef DS_CLI_CLI_MODEL_H
#define DS_CLI_CLI_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "config/config.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/tokenizer.h"

struct cli_model {
    struct model *model;
    struct tokenizer *tok;
    struct forward *fwd; /* NULL until cli_model_forward */
    int n_threads;       /* resolved: never 0 */
    int n_ctx;           /* resolved context size */
};

/* Initialises the kernels from cfg->kernels, then opens cfg->model and its tokenizer.
 * ERR_INVALID when no model is configured; the loaders' errors otherwise. On failure
 * everything opened is released. */
int cli_model_open(const struct config *cfg, struct cli_model *cm, struct err *err);

/* Creates cm->fwd for one sequence with room for max_batch tokens per call. */
int cli_model_forward(struct cli_model *cm, const struct config *cfg, enum forward_matmul mm,
                      int max_batch, struct err *err);

void cli_model_close(struct cli_model *cm); /* accepts a zeroed or half-open struct */

/* Parses the whole of s as a number in [lo, hi]; false otherwise. */
bool cli_parse_long(const char *s, long long lo, long long hi, long long *out);
bool cli_parse_double(const char *s, double lo, double hi, double *out);

#endif
