/*
 * shapes: the named model shapes (hyper-parameters of real DeepSeek models and of the
 * tiny test models) and the GGUF names llama.cpp gives their metadata keys and
 * tensors. `deepseek mkmodel` writes synthetic models from this table; the model
 * loader reads the same key and tensor names, so they are defined here once.
 *
 * What each architecture writes follows llama.cpp's convert_hf_to_gguf.py (the
 * tiny-* files in shared/testdata were checked key by key): qwen2 writes no
 * vocab_size / rope.dimension_count; llama writes both; deepseek2 writes the MLA
 * and MoE keys, stores MLA as MQA (head_count_kv 1, key_length = kv_lora_rank +
 * qk_rope_head_dim, value_length = kv_lora_rank) and splits kv_b_proj into
 * attn_k_b / attn_v_b. Llama-3 rope scaling is no key at all but a
 * `rope_freqs.weight` tensor of per-frequency divisors.
 *
 * Threading: the table is constant; every function is reentrant.
 */
#ifndef DS_MODEL_SHAPES_H
#define DS_MODEL_SHAPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "model/gguf.h"

/* ------------------------------------------------------------------------- */
/* GGUF metadata keys (llama.cpp LLM_KV_*); "%s" is the architecture name.     */

#define SHAPES_KV_BLOCK_COUNT "%s.block_count"
#define SHAPES_KV_CONTEXT_LENGTH "%s.context_length"
#define SHAPES_KV_EMBEDDING_LENGTH "%s.embedding_length"
#define SHAPES_KV_FEED_FORWARD_LENGTH "%s.feed_forward_length"
#define SHAPES_KV_HEAD_COUNT "%s.attention.head_count"
#define SHAPES_KV_HEAD_COUNT_KV "%s.attention.head_count_kv"
#define SHAPES_KV_RMS_EPS "%s.attention.layer_norm_rms_epsilon"
#define SHAPES_KV_KEY_LENGTH "%s.attention.key_length"
#define SHAPES_KV_VALUE_LENGTH "%s.attention.value_length"
#define SHAPES_KV_KEY_LENGTH_MLA "%s.attention.key_length_mla"
#define SHAPES_KV_VALUE_LENGTH_MLA "%s.attention.value_length_mla"
#define SHAPES_KV_Q_LORA_RANK "%s.attention.q_lora_rank"
#define SHAPES_KV_KV_LORA_RANK "%s.attention.kv_lora_rank"
#define SHAPES_KV_VOCAB_SIZE "%s.vocab_size"
#define SHAPES_KV_ROPE_DIM "%s.rope.dimension_count"
#define SHAPES_KV_ROPE_FREQ_BASE "%s.rope.freq_base"
#define SHAPES_KV_ROPE_SCALING_TYPE "%s.rope.scaling.type" /* "linear" | "yarn" */
#define SHAPES_KV_ROPE_SCALING_FACTOR "%s.rope.scaling.factor"
#define SHAPES_KV_ROPE_SCALING_ORIG_CTX "%s.rope.scaling.original_context_length"
#define SHAPES_KV_YARN_BETA_FAST "%s.rope.scaling.yarn_beta_fast"
#define SHAPES_KV_YARN_BETA_SLOW "%s.rope.scaling.yarn_beta_slow"
#define SHAPES_KV_YARN_LOG_MUL "%s.rope.scaling.yarn_log_multiplier" /* 0.1*mscale_all_dim */
#define SHAPES_KV_LEADING_DENSE "%s.leading_dense_block_count"
#define SHAPES_KV_EXPERT_COUNT "%s.expert_count"
#define SHAPES_KV_EXPERT_USED "%s.expert_used_count"
#define SHAPES_KV_EXPERT_SHARED "%s.expert_shared_count"
#define SHAPES_KV_EXPERT_FF "%s.expert_feed_forward_length"
#define SHAPES_KV_EXPERT_SCALE "%s.expert_weights_scale"
#define SHAPES_KV_EXPERT_NORM "%s.expert_weights_norm" /* written only when true */
#define SHAPES_KV_EXPERT_GATING "%s.expert_gating_func"  /* enum shapes_gating */
#define SHAPES_KV_EXPERT_GROUPS "%s.expert_group_count"
#define SHAPES_KV_EXPERT_GROUPS_USED "%s.expert_group_used_count"

/* ------------------------------------------------------------------------- */
/* Tensor names (llama.cpp LLM_TENSOR_*); "%d" is the block index. Shapes in   */
/* ggml order [ne0 = in, ne1 = out, ne2 = expert].                             */

#define SHAPES_TN_TOKEN_EMBD "token_embd.weight"    /* [n_embd, n_vocab] */
#define SHAPES_TN_OUTPUT_NORM "output_norm.weight"  /* [n_embd] */
#define SHAPES_TN_OUTPUT "output.weight"            /* [n_embd, n_vocab]; absent = tied */
#define SHAPES_TN_ROPE_FREQS "rope_freqs.weight"    /* [head_dim/2] F32, llama3 scaling */
#define SHAPES_TN_ATTN_NORM "blk.%d.attn_norm.weight"
#define SHAPES_TN_ATTN_Q "blk.%d.attn_q.weight"     /* [n_embd, n_head*head_dim] */
#define SHAPES_TN_ATTN_Q_BIAS "blk.%d.attn_q.bias"
#define SHAPES_TN_ATTN_K "blk.%d.attn_k.weight"     /* [n_embd, n_head_kv*head_dim] */
#define SHAPES_TN_ATTN_K_BIAS "blk.%d.attn_k.bias"
#define SHAPES_TN_ATTN_V "blk.%d.attn_v.weight"
#define SHAPES_TN_ATTN_V_BIAS "blk.%d.attn_v.bias"
#define SHAPES_TN_ATTN_OUT "blk.%d.attn_output.weight"
#define SHAPES_TN_ATTN_Q_A "blk.%d.attn_q_a.weight"           /* [n_embd, q_lora] */
#define SHAPES_TN_ATTN_Q_A_NORM "blk.%d.attn_q_a_norm.weight" /* [q_lora] */
#define SHAPES_TN_ATTN_Q_B "blk.%d.attn_q_b.weight" /* [q_lora, n_head*(nope+rope)] */
#define SHAPES_TN_ATTN_KV_A_MQA "blk.%d.attn_kv_a_mqa.weight" /* [n_embd, kv_lora+rope] */
#define SHAPES_TN_ATTN_KV_A_NORM "blk.%d.attn_kv_a_norm.weight" /* [kv_lora] */
#define SHAPES_TN_ATTN_K_B "blk.%d.attn_k_b.weight" /* [nope, kv_lora, n_head] */
#define SHAPES_TN_ATTN_V_B "blk.%d.attn_v_b.weight" /* [kv_lora, v_head, n_head] */
/* older converters: both unsplit, per head nope K rows then v_head V rows */
#define SHAPES_TN_ATTN_KV_B "blk.%d.attn_kv_b.weight" /* [kv_lora, n_head*(nope+v_head)] */
#define SHAPES_TN_FFN_NORM "blk.%d.ffn_norm.weight"
#define SHAPES_TN_FFN_GATE "blk.%d.ffn_gate.weight" /* [n_embd, n_ff] */
#define SHAPES_TN_FFN_UP "blk.%d.ffn_up.weight"     /* [n_embd, n_ff] */
#define SHAPES_TN_FFN_DOWN "blk.%d.ffn_down.weight" /* [n_ff, n_embd] */
#define SHAPES_TN_FFN_GATE_INP "blk.%d.ffn_gate_inp.weight" /* [n_embd, n_expert] F32 */
#define SHAPES_TN_FFN_EXP_PROBS_B "blk.%d.exp_probs_b.bias" /* [n_expert] F32 */
#define SHAPES_TN_FFN_GATE_EXPS "blk.%d.ffn_gate_exps.weight" /* [n_embd, n_ff_exp, n_exp] */
#define SHAPES_TN_FFN_UP_EXPS "blk.%d.ffn_up_exps.weight"
#define SHAPES_TN_FFN_DOWN_EXPS "blk.%d.ffn_down_exps.weight" /* [n_ff_exp, n_embd, n_exp] */
#define SHAPES_TN_FFN_GATE_SHEXP "blk.%d.ffn_gate_shexp.weight" /* [n_embd, n_ff_exp*n_sh] */
#define SHAPES_TN_FFN_UP_SHEXP "blk.%d.ffn_up_shexp.weight"
#define SHAPES_TN_FFN_DOWN_SHEXP "blk.%d.ffn_down_shexp.weight"

/* ------------------------------------------------------------------------- */
/* The shape table                                                            */

enum shapes_arch { SHAPES_ARCH_LLAMA, SHAPES_ARCH_QWEN2, SHAPES_ARCH_DEEPSEEK2 };

enum shapes_rope_scaling {
    SHAPES_ROPE_NONE,
    SHAPES_ROPE_LINEAR, /* positions divided by rope_factor (DeepSeek-Coder) */
    SHAPES_ROPE_YARN,   /* DeepSeek-V2/V3 */
    SHAPES_ROPE_LLAMA3, /* Llama-3.1: rope_freqs.weight tensor, no keys */
};

/* expert_gating_func values, as llama.cpp numbers them. */
enum shapes_gating { SHAPES_GATING_SOFTMAX = 1, SHAPES_GATING_SIGMOID = 2 };

struct shapes_model {
    const char *name;      /* --shape name: "tiny", "r1-distill-qwen-1.5b" */
    enum shapes_arch arch;
    const char *hf_name;   /* the model it imitates, for general.name and docs */
    uint32_t n_vocab;      /* the real model's vocab_size (documentation; the file
                            * gets the vocabulary's token count) */
    uint32_t n_layer, n_ctx, n_embd, n_ff, n_head, n_head_kv;
    float rope_theta, rms_eps;
    bool tied;             /* no output.weight: token_embd is the output matrix */

    enum shapes_rope_scaling rope_scaling;
    float rope_factor;     /* linear, yarn, llama3 */
    uint32_t rope_orig_ctx; /* yarn, llama3 */
    float llama3_low_freq, llama3_high_freq;
    float yarn_beta_fast, yarn_beta_slow;
    double yarn_mscale_all_dim; /* double: log_mul = 0.1 * it, rounded once, as Python does */

    /* deepseek2 (MLA + MoE) */
    uint32_t n_dense_lead;  /* first_k_dense_replace */
    uint32_t n_expert, n_expert_used, n_expert_shared, n_ff_exp;
    uint32_t n_group, n_group_used;
    bool has_q_lora_rank;   /* key written (the converter omits it when HF says null) */
    uint32_t q_lora_rank;   /* 0: plain attn_q */
    uint32_t kv_lora_rank, qk_nope, qk_rope, v_head;
    float expert_weights_scale;
    bool expert_weights_norm;
    enum shapes_gating gating;
};

/* "llama", "qwen2", "deepseek2" (general.architecture and the key prefix). */
const char *shapes_arch_name(enum shapes_arch arch);
/* SHAPES_ARCH_* for a name, or -1. */
int shapes_arch_from_name(const char *name);

/* All shapes, in table order; *n set to the count. */
const struct shapes_model *shapes_all(size_t *n);
/* The shape `name` of `arch`, or NULL. */
const struct shapes_model *shapes_find(enum shapes_arch arch, const char *name);
/* Comma-separated shape names of `arch` into buf (for error messages). */
void shapes_list(enum shapes_arch arch, char *buf, size_t cap);

/* How a tensor's values are drawn (see mkmodel): N(0, std), 1 + N(0, std) for
 * norms, or the llama3 rope factors. */
enum shapes_init { SHAPES_INIT_NORMAL, SHAPES_INIT_ONE_PLUS, SHAPES_INIT_ROPE_FREQS };

struct shapes_tensor {
    char name[64];
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    bool matrix;           /* a weight matrix: stored in the requested type; otherwise F32 */
    enum shapes_init init;
    float std;
};

/* The tensors of a model of shape s with n_vocab tokens, in file order.
 * *out is malloc'ed (caller frees); ERR_NOMEM or ERR_INVALID (zero dimension). */
int shapes_tensors(const struct shapes_model *s, uint32_t n_vocab, struct shapes_tensor **out,
                   size_t *n, struct err *err);

/* Elements of a tensor (product of its ne). */
uint64_t shapes_tensor_elems(const struct shapes_tensor *t);

/* Writes every `<arch>.*` hyper-parameter key of s (n_vocab for vocab_size) to w, in
 * the converter's order. The caller writes general.* (architecture first). */
int shapes_write_hparams(const struct shapes_model *s, uint32_t n_vocab, struct gguf_writer *w,
                         struct err *err);

/* Llama-3 rope factors (rope_freqs.weight): head_dim/2 floats into out, computed as
 * llama.cpp's converter does (float32: freq_i = theta^(-2i/d), factor by wavelength
 * band, smooth interpolation between). */
void shapes_llama3_rope_factors(const struct shapes_model *s, float *out, uint32_t n);

#endif
