/*
 * model: a loaded GGUF model: its architecture, hyper-parameters and weights.
 *
 * Loading reads general.architecture (llama, qwen2, deepseek2), the `<arch>.*`
 * hyper-parameter keys, and then locates and validates every tensor the architecture needs: a missing
 * tensor, a shape that does not match the hyper-parameters or an element type the
 * kernels cannot multiply is an error naming the file and the tensor. The weights are
 * kernels_tensor_views into the file's bytes, mapped or read (model_open_as), not copied
 * again, except for deepseek2 files with an unsplit attn_kv_b (older converters), whose
 * attn_k_b / attn_v_b the model builds at load and owns (docs/DEEPSEEK2.md).
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

enum model_arch { MODEL_ARCH_LLAMA, MODEL_ARCH_QWEN2, MODEL_ARCH_DEEPSEEK2 };

struct model_hparams {
    enum model_arch arch;
    const char *arch_name;  /* "llama", "qwen2", "deepseek2" */
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

    /* deepseek2 only (zero otherwise); see docs/DEEPSEEK2.md. head_dim is then
     * qk_nope + n_rot (key_length_mla, or key_length in a file with an unsplit attn_kv_b),
     * n_head_kv 1 (the latent cache) in both layouts, n_ff the dense blocks' width. */
    int n_layer_nextn;      /* next-token-prediction blocks after n_layer: not loaded */
    int q_lora_rank;        /* 0: plain attn_q */
    int kv_lora_rank;       /* latent width; the cache row is kv_lora_rank + n_rot */
    int qk_nope;            /* non-rotated part of a query/key head */
    int v_head_dim;         /* value_length_mla (unsplit attn_kv_b: value_length) */
    float rope_yarn_log_mul; /* mscale_all_dim: the GGUF's yarn_log_multiplier / 0.1 */
    float rope_attn_factor; /* rope.scaling.attn_factor, default 1 */
    float yarn_beta_fast, yarn_beta_slow;
    int n_dense_lead;       /* leading blocks with a dense feed-forward */
    int n_expert, n_expert_used, n_expert_shared, n_ff_exp;
    int n_group, n_group_used; /* group-limited routing (V3); 1, 1 = off */
    int expert_gating;      /* 1 softmax (V2), 2 sigmoid (V3) */
    bool expert_weights_norm;
    float expert_weights_scale; /* 0 or 1: not scaled */
};

/* Opens `path` and loads it; the model owns the mapping. */
int model_open(const char *path, struct model **out, struct err *err);
/* The same, holding the file as `load` says (gguf_open_as). */
int model_open_as(const char *path, enum gguf_load load, struct model **out,
                  struct err *err);
/* Loads from an open gguf, which the model borrows. */
int model_load(const struct gguf *g, struct model **out, struct err *err);
void model_free(struct model *m); /* accepts NULL */

const struct model_hparams *model_hparams(const struct model *m);
const struct gguf *model_gguf(const struct model *m);

#endif
