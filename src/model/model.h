/*
 * model: a loaded GGUF model: its architecture, hyper-parameters and weights.
 *
 * Loading reads general.architecture (llama and qwen2 are supported; deepseek2 is
 * recognised and refused with ERR_UNSUPPORTED for now), the `<arch>.*` hyper-parameter
 * keys, and then locates and validates every tensor the architecture needs: a missing
 * tensor, a shape that does not match the hyper-parameters or an element type the
 * kernels cannot multiply is an error naming the file and the tensor. The weights are
 * kernels_tensor_views into the file's mapping: nothing is copied.
 *
 * Ownership: model_open owns the gguf it opens; model_load borrows a gguf that must
 * outlive the model. A model is immutable after loading: any thread may read it, and
 * any number of forward contexts (forward.h) may share it.
 */
#ifndef DS_MODEL_MODEL_H
#define DS_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "model/gguf.h"

struct model; /* opaque */

enum model_arch { MODEL_ARCH_LLAMA, MODEL_ARCH_QWEN2 };

struct model_hparams {
    enum model_arch arch;
    const char *arch_name;  /* "llama", "qwen2" */
    int n_vocab;            /* rows of token_embd.weight */
    int n_ctx_train;        /* <arch>.context_length */
    int n_embd, n_ff, n_layer;
    int n_head, n_head_kv, head_dim; /* head_dim = key_length, else n_embd / n_head */
    float rms_eps;
    /* rope */
    int n_rot;              /* rotated dims per head (rope.dimension_count, else head_dim) */
    bool rope_neox;         /* pairs (i, i + n_rot/2) (qwen2) instead of (2i, 2i+1) */
    float rope_freq_base;
    float rope_freq_scale;  /* 1 / rope.scaling.factor for linear and yarn scaling */
    bool rope_yarn;
    int rope_n_ctx_orig;    /* rope.scaling.original_context_length (yarn) */
    bool has_rope_freqs;    /* llama3 rope_freqs.weight divisors present */
    bool has_qkv_bias;      /* qwen2 */
    bool tied_output;       /* no output.weight: token_embd is the output matrix */
};

/* Opens `path` and loads it; the model owns the mapping. */
int model_open(const char *path, struct model **out, struct err *err);
/* Loads from an open gguf, which the model borrows. */
int model_load(const struct gguf *g, struct model **out, struct err *err);
void model_free(struct model *m); /* accepts NULL */

const struct model_hparams *model_hparams(const struct model *m);
const struct gguf *model_gguf(const struct model *m);

#endif
