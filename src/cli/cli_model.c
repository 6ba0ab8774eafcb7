/* cli_model: model, tokenizer and forward-context setup shared by generate and bench. */
#define LOG_MODULE "model"
#include "cli/cli_model.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/log.h"
#include "kernels/kernels.h"

int cli_model_open(const struct config *cfg, struct cli_model *cm, struct err *err)
{
    memset(cm, 0, sizeof *cm);
    if (!cfg->model[0])
        return err_set(err, ERR_INVALID, "no model given (-m MODEL.gguf)");
    int isa = config_enum_index("kernels", cfg->kernels);
    int rc = kernels_init(isa < 0 ? KERNELS_ISA_AUTO : (enum kernels_isa)isa);
    if (rc)
        return err_set(err, rc, "kernels = %s: this CPU does not support it", cfg->kernels);
    rc = model_open_as(cfg->model, cfg->mmap ? GGUF_LOAD_MMAP : GGUF_LOAD_READ, &cm->model,
                       err);
    if (rc == ERR_NOMEM && !cfg->mmap) {
        /* too large to read into memory: mapped, it still runs (paging from disk) */
        LOG(WARN, "%s; mapping it instead", err->msg);
        rc = model_open_as(cfg->model, GGUF_LOAD_MMAP, &cm->model, err);
    }
    if (!rc)
        rc = tokenizer_load(model_gguf(cm->model), &cm->tok, err);
    if (rc) {
        cli_model_close(cm);
        return rc;
    }
    cm->n_threads = cfg->threads > 0 ? (int)cfg->threads : cpu_physical_cores();
    int n_train = model_hparams(cm->model)->n_ctx_train;
    cm->n_ctx = (int)cfg->ctx_size;
    if (n_train > 0 && cm->n_ctx > n_train)
        cm->n_ctx = n_train;
    return 0;
}

int cli_model_forward(struct cli_model *cm, const struct config *cfg, enum forward_matmul mm,
                      int max_batch, struct err *err)
{
    struct forward_params p;
    forward_params_default(&p);
    p.n_threads = cm->n_threads;
    p.max_batch = max_batch < 1 ? 1 : max_batch;
    p.n_seq = 1;
    p.n_ctx = cm->n_ctx;
    p.kv_type = strcmp(cfg->kv_type, "f32") == 0 ? KERNELS_F32 : KERNELS_F16;
    p.matmul = mm;
    return forward_new(cm->model, &p, &cm->fwd, err);
}

void cli_model_close(struct cli_model *cm)
{
    forward_free(cm->fwd);
    tokenizer_free(cm->tok);
    model_free(cm->model);
    memset(cm, 0, sizeof *cm);
}

bool cli_parse_long(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool cli_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || isnan(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}
