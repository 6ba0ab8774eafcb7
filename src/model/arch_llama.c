/*
 * arch_llama: the forward pass of the llama and qwen2 architectures (pre-norm
 * transformer: RMSNorm, rotary attention with grouped KV heads, SwiGLU feed-forward),
 * over a batch of entries from any number of sequences.
 *
 * qwen2 differs from llama only in q/k/v biases and NEOX-style rope (pairs i, i+n_rot/2);
 * llama rotates adjacent pairs. Both scale attention scores by 1/sqrt(head_dim).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "model/arch.h"

/* ---------------------------------------------------------------- attention */

struct att_task {
    struct forward *f;
    const struct forward_entry *e;
    int n_tok, layer;
    int per_kv;   /* pieces each KV head's query group is cut into */
    int piece;    /* query heads per piece (the last may have fewer) */
    float scale;
};

/* Query heads [h0, h0 + nq) of entry t, all reading KV head kvh:
 * softmax(q . K[0..pos] * scale) . V[0..pos] into att, each K and V row read once for the
 * nq heads. scores: nq rows of n_ctx floats. */
static void attend_heads(struct forward *f, const struct forward_entry *e, int t, int kvh,
                         int h0, int nq, int layer, float scale, float *scores, float *vrow)
{
    const struct model_hparams *hp = &f->m->hp;
    int hd = hp->head_dim, n = e->pos + 1;
    size_t sst = (size_t)f->p.n_ctx;
    enum kernels_type kt = kvcache_type(f->kv);
    size_t rowb = kvcache_row_bytes(f->kv);
    size_t headb = (size_t)kvh * kernels_row_bytes(kt, hd);
    const char *K = (const char *)kvcache_k(f->kv, e->seq, layer) + headb;
    const char *V = (const char *)kvcache_v(f->kv, e->seq, layer) + headb;
    const float *q = f->q + ((size_t)t * (size_t)hp->n_head + (size_t)h0) * (size_t)hd;
    float *out = f->att + ((size_t)t * (size_t)hp->n_head + (size_t)h0) * (size_t)hd;

    kernels_att_scores(kt, K, rowb, n, q, (size_t)hd, nq, scale, scores, sst, hd);
    /* near-zero weights to 0: Intel's denormal assists were 14 % of a Q4_K_M pp512 (Ice
     * Lake VM, in avx512_att_wsum), see KERNELS_ATT_P_MIN */
    for (int i = 0; i < nq; i++)
        kernels_softmax(scores + (size_t)i * sst, n, KERNELS_ATT_P_MIN);
    if (kt == KERNELS_F32 || kt == KERNELS_F16 || kt == KERNELS_BF16) {
        kernels_att_wsum(kt, scores, sst, nq, V, rowb, n, out, (size_t)hd, hd);
        return;
    }
    memset(out, 0, (size_t)nq * (size_t)hd * sizeof(float));
    for (int j = 0; j < n; j++) { /* a quantized cache: dequantize each row first */
        kernels_dequantize_row(kt, V + (size_t)j * rowb, vrow, hd);
        for (int i = 0; i < nq; i++)
            kernels_axpy(KERNELS_F32, scores[(size_t)i * sst + (size_t)j], vrow,
                         out + (size_t)i * (size_t)hd, hd);
    }
}

/* The items [*b, *end) of thread ith, per_entry items per entry: contiguous shares of
 * about equal cost, an item costing its entry's pos + 1 cache rows and going to the
 * thread whose share holds its middle. (Equal item counts gave the last thread a
 * prompt's latest, longest rows: 3x the first thread's work at 2 threads.) */
static void att_share(const struct forward_entry *e, int n_tok, int per_entry, int ith,
                      int nth, long *b, long *end)
{
    double total = 0, acc = 0;
    for (int t = 0; t < n_tok; t++)
        total += (double)(e[t].pos + 1) * per_entry;
    long n = (long)n_tok * per_entry, i = 0;
    *b = *end = n;
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < per_entry; h++, i++) {
            double c = (double)(e[t].pos + 1), mid = acc + c / 2;
            int owner = (int)(mid * nth / total);
            acc += c;
            if (owner >= ith && *b == n)
                *b = i;
            if (owner > ith) {
                *end = i;
                return;
            }
        }
}

static void att_worker(void *ctx, int ith, int nth)
{
    struct att_task *a = ctx;
    struct forward *f = a->f;
    const struct model_hparams *hp = &f->m->hp;
    int grp = hp->n_head / hp->n_head_kv, per_entry = hp->n_head_kv * a->per_kv;
    float *scores = f->scores + (size_t)ith * (size_t)grp * (size_t)f->p.n_ctx;
    float *vrow = f->vrow + (size_t)ith * (size_t)hp->head_dim;
    long b, end;
    att_share(a->e, a->n_tok, per_entry, ith, nth, &b, &end);
    for (long i = b; i < end; i++) {
        int t = (int)(i / per_entry), k = (int)(i % per_entry);
        int kvh = k / a->per_kv, h0 = kvh * grp + (k % a->per_kv) * a->piece;
        int nq = grp - (k % a->per_kv) * a->piece;
        attend_heads(f, &a->e[t], t, kvh, h0, nq < a->piece ? nq : a->piece, a->layer,
                     a->scale, scores, vrow);
    }
}

/* Attention of every (entry, head) over its sequence. A KV head's query group is one
 * item, so its K and V rows are read once; it is cut into pieces only when there are
 * fewer (entry, KV head) pairs than threads (a decode step of a model with few KV
 * heads). */
static void attention(struct forward *f, const struct forward_entry *e, int n, int layer)
{
    const struct model_hparams *hp = &f->m->hp;
    int grp = hp->n_head / hp->n_head_kv, nth = threadpool_size(f->pool);
    long pairs = (long)n * hp->n_head_kv;
    long want = (nth + pairs - 1) / pairs; /* pieces per group to give every thread one */
    int piece = want >= grp ? 1 : (int)((grp + want - 1) / want);
    int per_kv = (grp + piece - 1) / piece;
    struct att_task at = {f, e, n, layer, per_kv, piece, 1.0f / sqrtf((float)hp->head_dim)};
    threadpool_run(f->pool, att_worker, &at);
}

/* ---------------------------------------------------------------- helpers */

/* silu(gate) * up over a prefill's [n_tok][n_ff] on the pool (expf dominates); decode's
 * single row stays on the caller. */
struct swiglu_task {
    float *gate;
    const float *up;
    int64_t n;
};

static void swiglu_worker(void *ctx, int ith, int nth)
{
    struct swiglu_task *s = ctx;
    long b, end;
    threadpool_split((long)s->n, ith, nth, 16, &b, &end);
    if (b < end)
        kernels_swiglu(s->gate + b, s->gate + b, s->up + b, end - b);
}

static void swiglu_rows(struct forward *f, int n_tok, int n_ff)
{
    struct swiglu_task s = {f->gate, f->up, (int64_t)n_tok * n_ff};
    if (n_tok == 1)
        swiglu_worker(&s, 0, 1);
    else
        threadpool_run(f->pool, swiglu_worker, &s);
}

/* Per-token steps between the matrix products, over the batch's tokens on the pool (one
 * thread waiting while the other did them serially was ~3 % of an F16 prefill); a batch
 * of one or two stays on the caller. Each token's arithmetic is the same either way. */
enum tok_stage {
    TOK_NORM,      /* x += tmp (when add), xn = rmsnorm(x) * w */
    TOK_ROPE_PUT,  /* q, k, v += biases; rope on q and k; k and v into the cache */
};

struct tok_task {
    struct forward *f;
    const struct forward_entry *e;
    int n, layer, add;
    enum tok_stage stage;
    const float *w;             /* TOK_NORM: the norm's weights */
    const struct model_layer *L;
    const struct kernels_rope *rope;
    _Atomic int bad;            /* rope refused its parameters */
};

static void tok_one(struct tok_task *a, int t)
{
    struct forward *f = a->f;
    const struct model_hparams *hp = &f->m->hp;
    size_t E = (size_t)hp->n_embd, hd = (size_t)hp->head_dim;
    size_t Q = (size_t)hp->n_head * hd, KV = (size_t)hp->n_head_kv * hd;
    if (a->stage == TOK_NORM) {
        float *x = f->x + (size_t)t * E;
        if (a->add)
            kernels_add(x, x, f->tmp + (size_t)t * E, (int64_t)E);
        kernels_rmsnorm(f->xn + (size_t)t * E, x, a->w, (int64_t)E, hp->rms_eps);
        return;
    }
    const struct model_layer *L = a->L;
    float *q = f->q + (size_t)t * Q, *k = f->k + (size_t)t * KV, *v = f->v + (size_t)t * KV;
    if (L->bq)
        kernels_add(q, q, L->bq, (int64_t)Q);
    if (L->bk)
        kernels_add(k, k, L->bk, (int64_t)KV);
    if (L->bv)
        kernels_add(v, v, L->bv, (int64_t)KV);
    if (kernels_rope_apply(a->rope, q, hp->n_head, (int)hd, a->e[t].pos) ||
        kernels_rope_apply(a->rope, k, hp->n_head_kv, (int)hd, a->e[t].pos)) {
        atomic_store(&a->bad, 1);
        return;
    }
    kvcache_put(f->kv, a->e[t].seq, a->layer, a->e[t].pos, k, v);
}

static void tok_worker(void *ctx, int ith, int nth)
{
    struct tok_task *a = ctx;
    long b, end;
    threadpool_split(a->n, ith, nth, 1, &b, &end);
    for (long t = b; t < end; t++)
        tok_one(a, (int)t);
}

static int run_tokens(struct tok_task *a)
{
    atomic_init(&a->bad, 0);
    if (a->n <= 2)
        tok_worker(a, 0, 1);
    else
        threadpool_run(a->f->pool, tok_worker, a);
    return atomic_load(&a->bad);
}

/* x (+= tmp) and xn = rmsnorm(x) * w over the batch */
static void resid_norm(struct forward *f, int n, int add, const float *w)
{
    struct tok_task a = {.f = f, .n = n, .add = add, .stage = TOK_NORM, .w = w};
    (void)run_tokens(&a);
}

static struct kernels_rope rope_params(const struct model *m)
{
    const struct model_hparams *hp = &m->hp;
    struct kernels_rope r = {
        .n_rot = hp->n_rot,
        .neox = hp->rope_neox,
        .freq_base = hp->rope_freq_base,
        .freq_scale = hp->rope_freq_scale,
        .freq_factors = m->rope_freqs,
        .ext_factor = hp->rope_yarn ? 1.0f : 0.0f,
        .attn_factor = 1.0f,
        .beta_fast = 32.0f,
        .beta_slow = 1.0f,
        .n_ctx_orig = hp->rope_yarn ? hp->rope_n_ctx_orig : hp->n_ctx_train,
    };
    return r;
}

/* Before the last layer's attention: keeps only the entries that want logits, moving
 * their q and residual rows to the front and their entries to f->e_out (*e points there
 * then), as llama.cpp does; the other entries' K and V are in the cache already and
 * nothing else of theirs is needed. Returns how many are kept. */
static int keep_out_rows(struct forward *f, const struct forward_entry **e, int n)
{
    const struct model_hparams *hp = &f->m->hp;
    size_t E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * (size_t)hp->head_dim;
    int n_out = 0;
    for (int t = 0; t < n; t++) {
        if (!(*e)[t].want_logits)
            continue;
        if (t != n_out) { /* t > n_out: the source row is never one already written */
            memcpy(f->q + (size_t)n_out * Q, f->q + (size_t)t * Q, Q * sizeof(float));
            memcpy(f->x + (size_t)n_out * E, f->x + (size_t)t * E, E * sizeof(float));
        }
        f->e_out[n_out++] = (*e)[t];
    }
    *e = f->e_out;
    return n_out;
}

/* ---------------------------------------------------------------- the pass */

int arch_llama_forward(struct forward *f, const struct forward_entry *e, int n,
                       struct err *err)
{
    const struct model *m = f->m;
    const struct model_hparams *hp = &m->hp;
    const int E = hp->n_embd, F = hp->n_ff;
    const struct kernels_rope rope = rope_params(m);
    int rc;

    /* Token embeddings: one row of token_embd per entry, dequantized. */
    for (int t = 0; t < n; t++)
        kernels_dequantize_row(m->tok_embd.type,
                               (const char *)m->tok_embd.data +
                                   (size_t)e[t].token * m->tok_embd.row_bytes,
                               f->x + (size_t)t * (size_t)E, E);

    for (int il = 0; il < hp->n_layer; il++) {
        const struct model_layer *L = &m->layers[il];

        /* Attention: the residual of the layer before, norm, q/k/v projections. */
        resid_norm(f, n, il > 0, L->attn_norm);
        struct arch_mm qkv[3] = {{&L->wq, f->xn, f->q}, {&L->wk, f->xn, f->k},
                                 {&L->wv, f->xn, f->v}};
        if ((rc = arch_matmul(f, qkv, 3, n, err)))
            return rc;

        /* Biases (qwen2), rope on q and k at each entry's position, k and v cached. */
        struct tok_task pr = {.f = f, .e = e, .n = n, .layer = il, .stage = TOK_ROPE_PUT,
                              .L = L, .rope = &rope};
        if (run_tokens(&pr))
            return err_set(err, ERR_INTERNAL, "forward: rope rejected n_rot %d", hp->n_rot);
        if (il == hp->n_layer - 1 && (n = keep_out_rows(f, &e, n)) == 0)
            return 0; /* the last layer's K and V are all that later tokens need */

        attention(f, e, n, il);

        /* Output projection; residual and norm; feed-forward: silu(gate) * up, down. */
        struct arch_mm o = {&L->wo, f->att, f->tmp};
        if ((rc = arch_matmul(f, &o, 1, n, err)))
            return rc;
        resid_norm(f, n, 1, L->ffn_norm);
        struct arch_mm gu[2] = {{&L->gate, f->xn, f->gate}, {&L->up, f->xn, f->up}};
        if ((rc = arch_matmul(f, gu, 2, n, err)))
            return rc;
        swiglu_rows(f, n, F);
        struct arch_mm d = {&L->down, f->gate, f->tmp};
        if ((rc = arch_matmul(f, &d, 1, n, err)))
            return rc;
    }

    /* Logits of the entries that asked (all that is left): the last residual, final
     * norm, output matrix. */
    resid_norm(f, n, 1, m->output_norm);
    struct arch_mm out = {&m->output, f->xn, f->logits};
    return arch_matmul(f, &out, 1, n, err);
}
