/*
 * arch: internal to src/model (not for callers elsewhere). The layout of a loaded model
 * and of a forward context, shared by model.c (loading), forward.c (the context and
 * batch checks) and the per-architecture forward passes (arch_llama.c).
 *
 * Weight views point into the GGUF mapping (except deepseek2 k_b / v_b built from an
 * unsplit attn_kv_b, which the model owns); shapes are given as [rows][cols], the row
 * being the input dimension (ggml's ne0).
 */
#ifndef DS_MODEL_ARCH_H
#define DS_MODEL_ARCH_H

#include "base/threadpool.h"
#include "kernels/kernels.h"
#include "model/forward.h"
#include "model/kvcache.h"
#include "model/model.h"

struct model_layer {
    const float *attn_norm;          /* [n_embd] */
    struct kernels_tensor_view wq;   /* [n_head*head_dim][n_embd] */
    struct kernels_tensor_view wk;   /* [n_head_kv*head_dim][n_embd] */
    struct kernels_tensor_view wv;   /* [n_head_kv*head_dim][n_embd] */
    struct kernels_tensor_view wo;   /* [n_embd][n_head*head_dim] */
    const float *bq, *bk, *bv;       /* [n_head*head_dim], [kv_dim], [kv_dim]; qwen2 only */
    const float *ffn_norm;           /* [n_embd] */
    struct kernels_tensor_view gate; /* [n_ff][n_embd] */
    struct kernels_tensor_view up;   /* [n_ff][n_embd] */
    struct kernels_tensor_view down; /* [n_embd][n_ff] */
    /* deepseek2 (arch_deepseek2.c); 3-D tensors are views of all heads' / experts'
     * rows stacked, head or expert i being rows [i*per, (i+1)*per). */
    struct kernels_tensor_view wq_a;  /* [q_lora][n_embd] (q_lora_rank > 0; wq unused) */
    const float *q_a_norm;           /* [q_lora] */
    struct kernels_tensor_view wq_b;  /* [n_head*head_dim][q_lora] */
    struct kernels_tensor_view wkv_a; /* [kv_lora + n_rot][n_embd] latent and shared rope key */
    const float *kv_a_norm;          /* [kv_lora] */
    struct kernels_tensor_view wk_b;  /* [n_head][kv_lora][qk_nope] absorbs q_nope; from
                                       * attn_kv_b: transposed, F32 unless F16/BF16 */
    struct kernels_tensor_view wv_b;  /* [n_head][v_head][kv_lora] expands the latent; from
                                       * attn_kv_b: its V rows, same type */
    struct kernels_tensor_view gate_inp; /* [n_expert][n_embd] router */
    const float *exp_probs_b;        /* [n_expert] selection bias (V3) or NULL */
    struct kernels_tensor_view gate_exps, up_exps; /* [n_expert][n_ff_exp][n_embd] */
    struct kernels_tensor_view down_exps;          /* [n_expert][n_embd][n_ff_exp] */
    struct kernels_tensor_view gate_shexp, up_shexp; /* [n_ff_exp*n_shared][n_embd] */
    struct kernels_tensor_view down_shexp;           /* [n_embd][n_ff_exp*n_shared] */
};

struct model {
    struct gguf *owned;              /* set by model_open */
    const struct gguf *g;
    struct model_hparams hp;
    struct kernels_tensor_view tok_embd; /* [n_vocab][n_embd] */
    struct kernels_tensor_view output;   /* [n_vocab][n_embd]; = tok_embd when tied */
    const float *output_norm;        /* [n_embd] */
    const float *rope_freqs;         /* [n_rot/2] or NULL */
    struct model_layer *layers;      /* [n_layer] */
    /* deepseek2 files with an unsplit attn_kv_b (older converters): every layer's wk_b and
     * wv_b are built at load into buffers the model owns (model.c, split_kv_b). */
    bool kv_b_unsplit;
    void **kv_b_bufs;                /* [2 * n_layer]: k_b, v_b of each layer, or NULL */
};

/* Activation slots for FORWARD_MATMUL_QUANT_ACT, one per dot type. */
enum { ARCH_ACT_F16, ARCH_ACT_BF16, ARCH_ACT_Q8_0, ARCH_ACT_Q8_K, ARCH_ACT_N };

struct forward {
    const struct model *m;
    struct forward_params p;
    struct kvcache *kv;
    struct threadpool *pool;
    /* scratch, B = max_batch rows each */
    float *x;       /* [B][n_embd] residual stream */
    float *xn;      /* [B][n_embd] normed input of a block */
    float *q;       /* [B][n_head*head_dim] */
    float *k;       /* [B][kv_dim] */
    float *v;       /* [B][kv_dim] */
    float *att;     /* [B][n_head*head_dim] attention output */
    float *tmp;     /* [B][n_embd] block output before the residual add */
    float *gate;    /* [B][n_ff] */
    float *up;      /* [B][n_ff] */
    float *logits;  /* [B][n_vocab] */
    float *scores;  /* [n_threads][n_head / n_head_kv][n_ctx] attention weights of
                     * one KV head's query group */
    float *vrow;    /* [n_threads][head_dim] a dequantized V slice */
    int *tok_out;   /* [B] entry index of each logits row (deepseek2) */
    struct forward_entry *e_out; /* [B] llama/qwen2: the entries wanting logits */
    int *seq_next;  /* [n_seq] batch checks: next position expected in this batch */
    void *act[ARCH_ACT_N];            /* quantized activations, or NULL if unused */
    const float *act_src[ARCH_ACT_N]; /* which input each slot holds (NULL: stale) */
    struct arch_ds2 *ds2;             /* deepseek2 scratch (arch_deepseek2.c), or NULL */
};

/* One matrix product of a batch: y [n_tok][W->rows] = x [n_tok][W->cols] times W. */
struct arch_mm {
    const struct kernels_tensor_view *W;
    const float *x;
    float *y;
};

/* Runs n_mm products over n_tok tokens at once on the context's pool, rows split across
 * threads, in the context's matmul mode (activations of one input are quantized once per
 * call and shared by the products that read it). */
int arch_matmul(struct forward *f, const struct arch_mm *mm, int n_mm, int n_tok,
                struct err *err);

/* The llama / qwen2 forward pass over a checked batch. */
int arch_llama_forward(struct forward *f, const struct forward_entry *e, int n,
                       struct err *err);

/* deepseek2 (MLA + MoE): its own scratch, made by forward_new after the common one
 * and released by forward_free (accepts a context without it), and its pass. */
int arch_deepseek2_alloc(struct forward *f, struct err *err);
void arch_deepseek2_free(struct forward *f);
int arch_deepseek2_forward(struct forward *f, const struct forward_entry *e, int n,
                           struct err *err);
/* One token's expert choice: probs [n_expert] holds the router logits and is turned into
 * probabilities in place; bias (exp_probs_b) may be NULL; selp [n_expert] and taken
 * [n_expert] are scratch. Writes the n_expert_used chosen experts, best first, and their
 * weights (normalised and scaled as the model says). */
void arch_deepseek2_route(const struct model_hparams *hp, float *probs, const float *bias,
                          float *selp, unsigned char *taken, int *sel, float *w);

#endif
