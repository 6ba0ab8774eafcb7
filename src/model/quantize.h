/*
 * quantize: converting a GGUF model to another tensor type, as llama-quantize does
 * (default settings, no importance matrix). Two parts:
 *
 *  - the per-tensor type policy (quantize_tensor_type): which tensors are quantized at
 *    all, and which type each one gets for a file type such as Q4_K_M. It follows
 *    llama.cpp's llama_tensor_get_type for the file types we offer, so a file made here
 *    has the same tensor types as one llama-quantize makes from the same model (the
 *    tests check this against the shared/testdata Q4_K_M files);
 *  - the conversion driver (quantize_job_*): opens the input, plans every tensor, then
 *    streams the output one tensor at a time (input rows dequantized to float, then
 *    quantized), so a model never has to fit in memory: the input is mapped and at most
 *    one output tensor is held.
 *
 * The policy, in short (docs/MODELS.md, "Quantization", has the table):
 *  - only tensors named "*weight" with two or more dimensions are converted; norms
 *    ("*_norm.weight"), the MoE router ffn_gate_inp, biases, exp_probs_b and rope_freqs
 *    are copied unchanged. So is a tensor already of its target type;
 *  - output.weight (or token_embd.weight when there is no output.weight: tied
 *    embeddings) gets Q6_K in every quantized file type but Q8_0;
 *  - Q4_K_M / Q5_K_M: attn_v and ffn_down (incl. the MoE ffn_down_exps/_shexp) of the
 *    "more important" layers (llama.cpp's use_more_bits) get Q6_K; Q4_K_M's
 *    attn_output gets Q5_K in 8-expert models and attn_v Q5_K in Llama-70B shapes;
 *    8-expert models get Q8_0 attn_v and attn_k;
 *  - a row length not divisible by the type's block falls back as llama.cpp does:
 *    Q4_K -> Q5_0, Q6_K -> Q8_0, and Q5_K -> Q5_0 (llama.cpp uses Q5_1, which we do
 *    not implement; Q5_0 is the nearest in size); a row not divisible by 32 -> F16.
 * 3-D tensors (MoE experts [n_embd, n_ff, n_expert], attn_k_b, attn_v_b) are converted
 * row by row (row length ne[0]), which is quantizing each 2-D slice row-wise.
 *
 * Ownership: a quantize_job owns its input mapping; entries borrow from it and live
 * as long as the job. Threading: a job belongs to one thread; quantize_job_write uses
 * n_threads threads of its own for the rows of each tensor. kernels_init() must have
 * been called.
 */
#ifndef DS_MODEL_QUANTIZE_H
#define DS_MODEL_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "model/gguf.h"

/* File types, numbered as llama.cpp's LLAMA_FTYPE (written to general.file_type). */
enum quantize_ftype {
    QUANTIZE_ALL_F32 = 0,
    QUANTIZE_F16 = 1,
    QUANTIZE_Q4_0 = 2,
    QUANTIZE_Q8_0 = 7,
    QUANTIZE_Q4_K_M = 15,
    QUANTIZE_Q5_K_M = 17,
    QUANTIZE_Q6_K = 18,
    QUANTIZE_BF16 = 32,
};

/* general.quantization_version written to every file (ggml's GGML_QNT_VERSION). */
#define QUANTIZE_QNT_VERSION 2

/* The file type named `name` ("q4_k_m", case-insensitive), or -1. */
int quantize_ftype_from_name(const char *name);
/* "q4_k_m", ...; "?" for a number we do not offer. */
const char *quantize_ftype_name(enum quantize_ftype f);
/* The names we accept, comma-separated, for usage and error messages. */
const char *quantize_ftype_names(void);
/* The type most tensors get (Q4_K for Q4_K_M). */
enum ggml_type quantize_ftype_base(enum quantize_ftype f);

/* What the policy needs to know of the model as a whole. */
struct quantize_model {
    char arch[32];     /* general.architecture */
    int n_layer;       /* <arch>.block_count */
    int n_expert;      /* <arch>.expert_count, 0 for dense models */
    int n_head;        /* <arch>.attention.head_count, 0 if absent */
    int n_head_kv;     /* <arch>.attention.head_count_kv, n_head if absent */
    int n_attn_v;      /* tensors named *attn_v.weight, *attn_qkv.weight, *attn_kv_b.weight */
    bool has_output;   /* an output.weight exists (no tied embeddings) */
};

/* Reads the model description from an open file. ERR_FORMAT naming the key when
 * general.architecture or <arch>.block_count is missing or malformed. */
int quantize_model_from_gguf(const struct gguf *g, struct quantize_model *m, struct err *err);

/* The type tensor t gets in a file of type f (t->type when it is copied unchanged).
 * *fallback (may be NULL) is set when the row length forced a fallback type. */
enum ggml_type quantize_tensor_type(const struct quantize_model *m, enum quantize_ftype f,
                                    const struct gguf_tensor *t, bool *fallback);

/* ------------------------------------------------------------------------- */
/* The conversion driver                                                     */

struct quantize_job; /* opaque */

/* The plan for one tensor. */
struct quantize_entry {
    const struct gguf_tensor *in; /* borrowed from the job's input */
    enum ggml_type type;          /* output type */
    bool convert;                 /* false: bytes copied unchanged */
    bool fallback;                /* the row length forced a fallback type */
    uint64_t nbytes;              /* output bytes */
};

/* Opens `in_path` and plans every tensor for file type f. Errors are the input's:
 * ERR_IO / ERR_FORMAT (unreadable or malformed file), ERR_UNSUPPORTED (a split model;
 * a tensor to convert whose type we cannot read, naming tensor and type),
 * ERR_INVALID (f is not a type we offer). */
int quantize_job_new(const char *in_path, enum quantize_ftype f, struct quantize_job **out,
                     struct err *err);
void quantize_job_free(struct quantize_job *j); /* accepts NULL */

const struct gguf *quantize_job_input(const struct quantize_job *j);
int64_t quantize_job_n_tensors(const struct quantize_job *j);
const struct quantize_entry *quantize_job_entry(const struct quantize_job *j, int64_t i);
/* Bytes of tensor data the output will hold (without header and padding). */
uint64_t quantize_job_out_data_bytes(const struct quantize_job *j);

#define QUANTIZE_MAX_THREADS 256

/* Called before tensor i of n is produced (for a progress line). */
typedef void (*quantize_progress_fn)(void *user, int64_t i, int64_t n,
                                     const struct quantize_entry *e);

/* Writes the output: every metadata key of the input (split.* dropped), then
 * general.quantization_version = 2 and general.file_type = f; the tensors in input
 * order. The file appears under `out_path` only when complete. n_threads in
 * 1..QUANTIZE_MAX_THREADS;
 * progress may be NULL. ERR_IO (write), ERR_NOMEM, ERR_INTERNAL. */
int quantize_job_write(struct quantize_job *j, const char *out_path, int n_threads,
                       quantize_progress_fn progress, void *user, struct err *err);

#endif
