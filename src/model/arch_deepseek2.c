/*
 * arch_deepseek2: the forward pass of DeepSeek-V2 / V2-Lite / V3 / R1 (GGUF architecture
 * "deepseek2"): multi-head latent attention (MLA) in its weight-absorbed form, and a
 * mixture-of-experts feed-forward. docs/DEEPSEEK2.md has the derivation and layout.
 *
 * MLA. Per token the model projects a latent c = rmsnorm(W_kv_a x)[0:kv_lora] and one
 * rope key k_pe shared by all heads; the cache stores only the row [c, rope(k_pe)]. Head
 * h's key would be [W_kb[h]^T c, k_pe] and its value W_vb[h] c; instead of expanding them
 * for every cached token we move the matrices to the query and output side:
 *     q_nope . (W_kb^T c_j) = (W_kb q_nope) . c_j      (attn_k_b = W_kb, [kv_lora][nope])
 *     sum_j p_j W_vb c_j    = W_vb (sum_j p_j c_j)     (attn_v_b = W_vb, [v_head][kv_lora])
 * so each (token, head) attends with the query [W_kb q_nope, rope(q_pe)] over the cached
 * rows directly, and the latent-space result is expanded once. This is what llama.cpp
 * computes too, including the activation rounding before the k_b / v_b products.
 *
 * Attention scale: llama.cpp pre-scales for YaRN, cancelling the rope's own magnitude
 * term in attn_factor and putting mscale^2 into the softmax scale, where
 * mscale = 1 + 0.1 * mscale_all_dim * ln(factor) (see ds2_rope).
 *
 * MoE. Router logits -> softmax (V2) or sigmoid (V3) probabilities; experts are chosen
 * on the probabilities plus the optional exp_probs_b bias, first restricting to the best
 * n_group_used groups (group score = sum of its two best), and weighted by the unbiased
 * probabilities (optionally normalised, then scaled). Tokens routed to the same expert
 * in one batch are multiplied together; the shared experts are a plain SwiGLU block.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/arch.h"

struct arch_ds2 {
    float *qa;      /* [B][q_lora] */
    float *kva;     /* [B][C] latent and rope key; becomes the cache row (C = kv_lora+n_rot) */
    float *qatt;    /* [B][n_head][C] absorbed query and roped q_pe */
    float *olat;    /* [B][n_head][kv_lora] attention output in the latent space */
    float *hin;     /* [B][max(qk_nope, kv_lora)] one head's inputs, gathered */
    float *hout;    /* [B][max(kv_lora, v_head)] one head's outputs */
    float *att;     /* [B][n_head * v_head] */
    float *router;  /* [B][n_expert] logits, then probabilities */
    float *selp;    /* [n_expert] selection scores of one token */
    unsigned char *taken; /* [n_expert] */
    int *sel;       /* [B][n_used] chosen experts, best first */
    float *w;       /* [B][n_used] their weights */
    int *cnt, *start; /* [n_expert] */
    int *route;     /* [B * n_used] token * n_used + slot, grouped by expert */
    float *xe;      /* [B][n_embd] rows routed to one expert */
    float *ge, *ue; /* [B][n_ff_exp * max(1, n_shared)] */
    float *ye;      /* [B][n_embd] */
    float *slot;    /* [B][n_used][n_embd] weighted expert outputs */
};

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

int arch_deepseek2_alloc(struct forward *f, struct err *err)
{
    const struct model_hparams *hp = &f->m->hp;
    size_t B = (size_t)f->p.max_batch, H = (size_t)hp->n_head, E = (size_t)hp->n_embd;
    size_t Lr = (size_t)hp->kv_lora_rank, C = Lr + (size_t)hp->n_rot;
    size_t X = (size_t)hp->n_expert, K = (size_t)hp->n_expert_used;
    size_t FF = (size_t)hp->n_ff_exp * zmax(1, (size_t)hp->n_expert_shared);
    struct arch_ds2 *d = calloc(1, sizeof(*d));
    f->ds2 = d;
    if (!d)
        return err_set(err, ERR_NOMEM, "forward: out of memory");
    d->qa = malloc(B * zmax(1, (size_t)hp->q_lora_rank) * sizeof(float));
    d->kva = malloc(B * C * sizeof(float));
    d->qatt = malloc(B * H * C * sizeof(float));
    d->olat = malloc(B * H * Lr * sizeof(float));
    d->hin = malloc(B * zmax((size_t)hp->qk_nope, Lr) * sizeof(float));
    d->hout = malloc(B * zmax(Lr, (size_t)hp->v_head_dim) * sizeof(float));
    d->att = malloc(B * H * (size_t)hp->v_head_dim * sizeof(float));
    d->router = malloc(B * X * sizeof(float));
    d->selp = malloc(X * sizeof(float));
    d->taken = malloc(X);
    d->sel = malloc(B * K * sizeof(int));
    d->w = malloc(B * K * sizeof(float));
    d->cnt = malloc(X * sizeof(int));
    d->start = malloc(X * sizeof(int));
    d->route = malloc(B * K * sizeof(int));
    d->xe = malloc(B * E * sizeof(float));
    d->ge = malloc(B * FF * sizeof(float));
    d->ue = malloc(B * FF * sizeof(float));
    d->ye = malloc(B * E * sizeof(float));
    d->slot = malloc(B * K * E * sizeof(float));
    if (!d->qa || !d->kva || !d->qatt || !d->olat || !d->hin || !d->hout || !d->att ||
        !d->router || !d->selp || !d->taken || !d->sel || !d->w || !d->cnt ||
        !d->start || !d->route || !d->xe || !d->ge || !d->ue || !d->ye || !d->slot)
        return err_set(err, ERR_NOMEM, "forward: cannot allocate deepseek2 scratch for a "
                       "batch of %zu", B);
    return 0;
}

void arch_deepseek2_free(struct forward *f)
{
    struct arch_ds2 *d = f->ds2;
    if (!d)
        return;
    void *bufs[] = {d->qa, d->kva, d->qatt, d->olat, d->hin, d->hout, d->att,
                    d->router, d->selp, d->taken, d->sel, d->w, d->cnt, d->start, d->route,
                    d->xe, d->ge, d->ue, d->ye, d->slot};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        free(bufs[i]);
    free(d);
    f->ds2 = NULL;
}

/* ---------------------------------------------------------------- helpers */

/* arch_matmul on inputs this pass rewrites between calls (gathered rows): any record of
 * which input an activation slot holds is dropped first. */
static int mm(struct forward *f, const struct arch_mm *p, int n_mm, int n_tok, struct err *err)
{
    memset(f->act_src, 0, sizeof(f->act_src));
    return arch_matmul(f, p, n_mm, n_tok, err);
}

/* Rows [i * rows, (i + 1) * rows) of a stacked 3-D weight: head or expert i. */
static struct kernels_tensor_view slice(const struct kernels_tensor_view *W, int i, int64_t rows)
{
    struct kernels_tensor_view v = *W;
    v.rows = rows;
    v.data = (const char *)W->data + (size_t)i * (size_t)rows * W->row_bytes;
    return v;
}

/* For every head h and token t: y[t*y_tok + h*y_head ..] = W[h] x[t*x_tok + h*x_head ..],
 * one batched product per head (the inputs of a head are gathered first). */
static int per_head(struct forward *f, const struct kernels_tensor_view *W, int64_t rows,
                    const float *x, size_t x_tok, size_t x_head, float *y, size_t y_tok,
                    size_t y_head, int n, struct err *err)
{
    struct arch_ds2 *d = f->ds2;
    size_t cols = (size_t)W->cols, r = (size_t)rows;
    int rc;
    for (int h = 0; h < f->m->hp.n_head; h++) {
        struct kernels_tensor_view Wh = slice(W, h, rows);
        for (int t = 0; t < n; t++)
            memcpy(d->hin + (size_t)t * cols, x + (size_t)t * x_tok + (size_t)h * x_head,
                   cols * sizeof(float));
        struct arch_mm p = {&Wh, d->hin, d->hout};
        if ((rc = mm(f, &p, 1, n, err)))
            return rc;
        for (int t = 0; t < n; t++)
            memcpy(y + (size_t)t * y_tok + (size_t)h * y_head, d->hout + (size_t)t * r,
                   r * sizeof(float));
    }
    return 0;
}

static void rmsnorm_rows(float *y, const float *x, const float *w, int n_tok, size_t stride,
                         int n, float eps)
{
    for (int t = 0; t < n_tok; t++)
        kernels_rmsnorm(y + (size_t)t * stride, x + (size_t)t * stride, w, n, eps);
}

static float yarn_mscale(float scale, float mscale)
{
    return scale <= 1.0f ? 1.0f : 0.1f * mscale * logf(scale) + 1.0f;
}

/* Rope parameters and the softmax scale, with llama.cpp's YaRN pre-scaling: attn_factor
 * cancels the rope's own magnitude correction, and mscale^2 goes into kq_scale. */
static struct kernels_rope ds2_rope(const struct model_hparams *hp, float *kq_scale)
{
    float fs = hp->rope_freq_scale, factor = 1.0f / fs, lm = hp->rope_yarn_log_mul;
    float af = 1.0f;
    if (hp->rope_yarn) {
        if (lm != 0.0f) /* DeepSeek-V2 sets mscale = mscale_all_dim: the ratio is 1 */
            af = yarn_mscale(factor, lm != 1.0f ? lm : 1.0f) / yarn_mscale(factor, lm);
        else
            af = yarn_mscale(factor, 1.0f);
        af *= 1.0f / (1.0f + 0.1f * logf(factor));
    }
    af *= hp->rope_attn_factor;
    float org = af * (1.0f + 0.1f * logf(1.0f / fs));
    float ms = org * (1.0f + 0.1f * lm * logf(1.0f / fs));
    *kq_scale = ms * ms / sqrtf((float)hp->head_dim);
    struct kernels_rope r = {
        .n_rot = hp->n_rot,
        .neox = 0,
        .freq_base = hp->rope_freq_base,
        .freq_scale = fs,
        .freq_factors = NULL,
        .ext_factor = hp->rope_yarn ? 1.0f : 0.0f,
        .attn_factor = af,
        .beta_fast = hp->yarn_beta_fast,
        .beta_slow = hp->yarn_beta_slow,
        .n_ctx_orig = hp->rope_yarn ? hp->rope_n_ctx_orig : hp->n_ctx_train,
    };
    return r;
}

/* ---------------------------------------------------------------- attention */

struct att_task {
    struct forward *f;
    const struct forward_entry *e;
    int n_tok, layer;
    float scale;
};

/* One (entry, head): softmax(q . row_j * scale) over the cached rows 0..pos, and the
 * weighted sum of their latent parts into olat. */
static void attend_latent(struct forward *f, const struct forward_entry *e, int t, int h,
                          int layer, float scale, float *scores)
{
    const struct model_hparams *hp = &f->m->hp;
    struct arch_ds2 *d = f->ds2;
    int Lr = hp->kv_lora_rank, C = Lr + hp->n_rot, n = e->pos + 1;
    enum kernels_type kt = kvcache_type(f->kv);
    size_t rowb = kvcache_row_bytes(f->kv);
    const char *K = kvcache_k(f->kv, e->seq, layer);
    size_t th = (size_t)t * (size_t)hp->n_head + (size_t)h;
    const float *q = d->qatt + th * (size_t)C;
    float *out = d->olat + th * (size_t)Lr;

    for (int j = 0; j < n; j++)
        scores[j] = kernels_dot_f32(kt, K + (size_t)j * rowb, q, C) * scale;
    kernels_softmax(scores, n, KERNELS_ATT_P_MIN); /* no denormal assists (arch_llama.c) */
    memset(out, 0, (size_t)Lr * sizeof(float));
    /* the latent part (first Lr elements) of each cached row, straight from its F16/F32
     * bytes: a scalar dequantize + loop here was 45 % of a V2-Lite pp512 profile */
    for (int j = 0; j < n; j++)
        kernels_axpy(kt, scores[j], K + (size_t)j * rowb, out, Lr);
}

static void att_worker(void *ctx, int ith, int nth)
{
    struct att_task *a = ctx;
    struct forward *f = a->f;
    const struct model_hparams *hp = &f->m->hp;
    int n_head = hp->n_head;
    float *scores = f->scores + (size_t)ith * (size_t)f->p.n_ctx;
    long b, end;
    threadpool_split((long)a->n_tok * n_head, ith, nth, 1, &b, &end);
    for (long i = b; i < end; i++) {
        int t = (int)(i / n_head), h = (int)(i % n_head);
        attend_latent(f, &a->e[t], t, h, a->layer, a->scale, scores);
    }
}

/* The attention block from xn to f->tmp: q (plain or q-LoRA), latent + rope key into
 * the cache, absorbed query, latent attention, expansion with v_b, output projection. */
static int mla_block(struct forward *f, const struct model_layer *L, int il,
                     const struct forward_entry *e, int n, struct err *err)
{
    const struct model_hparams *hp = &f->m->hp;
    struct arch_ds2 *d = f->ds2;
    const int H = hp->n_head, hd = hp->head_dim, nope = hp->qk_nope, R = hp->n_rot;
    const int Lr = hp->kv_lora_rank, C = Lr + R, VH = hp->v_head_dim;
    float kq_scale;
    const struct kernels_rope rope = ds2_rope(hp, &kq_scale);
    int rc;

    /* Projections: q (through the q-LoRA bottleneck when there is one) and the latent. */
    if (hp->q_lora_rank > 0) {
        struct arch_mm a[2] = {{&L->wq_a, f->xn, d->qa}, {&L->wkv_a, f->xn, d->kva}};
        if ((rc = mm(f, a, 2, n, err)))
            return rc;
        rmsnorm_rows(d->qa, d->qa, L->q_a_norm, n, (size_t)hp->q_lora_rank, hp->q_lora_rank,
                     hp->rms_eps);
        struct arch_mm b = {&L->wq_b, d->qa, f->q};
        if ((rc = mm(f, &b, 1, n, err)))
            return rc;
    } else {
        struct arch_mm a[2] = {{&L->wq, f->xn, f->q}, {&L->wkv_a, f->xn, d->kva}};
        if ((rc = mm(f, a, 2, n, err)))
            return rc;
    }

    /* Norm the latent, rope q_pe and k_pe at each entry's position, cache [c, k_pe]. */
    for (int t = 0; t < n; t++) {
        float *q = f->q + (size_t)t * (size_t)(H * hd), *kv = d->kva + (size_t)t * (size_t)C;
        kernels_rmsnorm(kv, kv, L->kv_a_norm, Lr, hp->rms_eps);
        if (kernels_rope_apply(&rope, q + nope, H, hd, e[t].pos) ||
            kernels_rope_apply(&rope, kv + Lr, 1, R, e[t].pos))
            return err_set(err, ERR_INTERNAL, "forward: rope rejected n_rot %d", R);
        kvcache_put(f->kv, e[t].seq, il, e[t].pos, kv, NULL);
    }

    /* Absorbed query per head: [W_kb q_nope, q_pe]. */
    if ((rc = per_head(f, &L->wk_b, Lr, f->q, (size_t)(H * hd), (size_t)hd, d->qatt,
                       (size_t)H * (size_t)C, (size_t)C, n, err)))
        return rc;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++)
            memcpy(d->qatt + ((size_t)t * (size_t)H + (size_t)h) * (size_t)C + Lr,
                   f->q + ((size_t)t * (size_t)H + (size_t)h) * (size_t)hd + nope,
                   (size_t)R * sizeof(float));

    struct att_task at = {f, e, n, il, kq_scale};
    threadpool_run(f->pool, att_worker, &at);

    /* Expand each head's latent output with v_b, then the output projection. */
    if ((rc = per_head(f, &L->wv_b, VH, d->olat, (size_t)H * (size_t)Lr, (size_t)Lr, d->att,
                       (size_t)(H * VH), (size_t)VH, n, err)))
        return rc;
    struct arch_mm o = {&L->wo, d->att, f->tmp};
    return mm(f, &o, 1, n, err);
}

/* ---------------------------------------------------------------- experts */

/* Indices of the k largest of v[0..n) into out, best first, lower index first on ties. */
static void top_k(const float *v, int n, int k, int *out, unsigned char *taken)
{
    memset(taken, 0, (size_t)n);
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int j = 0; j < n; j++)
            if (!taken[j] && (best < 0 || v[j] > v[best]))
                best = j;
        taken[best] = 1;
        out[i] = best;
    }
}

void arch_deepseek2_route(const struct model_hparams *hp, float *probs, const float *bias,
                          float *selp, unsigned char *taken, int *sel, float *w)
{
    const int X = hp->n_expert, K = hp->n_expert_used;
    if (hp->expert_gating == 2) {
        for (int i = 0; i < X; i++)
            probs[i] = 1.0f / (1.0f + expf(-probs[i]));
    } else {
        kernels_softmax(probs, X, 0.0f); /* the router keeps every probability */
    }
    for (int i = 0; i < X; i++)
        selp[i] = bias ? probs[i] + bias[i] : probs[i];
    if (hp->n_group > 1 && hp->n_group_used < hp->n_group) {
        /* Keep the n_group_used groups whose two best scores sum highest. */
        int G = hp->n_group, per = X / G, best2[2], keep[64];
        float gs[64];
        for (int g = 0; g < G; g++) {
            top_k(selp + g * per, per, 2, best2, taken);
            gs[g] = selp[g * per + best2[0]] + selp[g * per + best2[1]];
        }
        top_k(gs, G, hp->n_group_used, keep, taken);
        memset(taken, 0, (size_t)G);
        for (int i = 0; i < hp->n_group_used; i++)
            taken[keep[i]] = 1;
        for (int g = 0; g < G; g++)
            if (!taken[g])
                for (int i = 0; i < per; i++)
                    selp[g * per + i] = -INFINITY;
    }
    top_k(selp, X, K, sel, taken);
    float sum = 0.0f;
    for (int i = 0; i < K; i++) {
        w[i] = probs[sel[i]];
        sum += w[i];
    }
    if (hp->expert_weights_norm) {
        sum = sum < 6.103515625e-5f ? 6.103515625e-5f : sum; /* llama.cpp's clamp */
        for (int i = 0; i < K; i++)
            w[i] /= sum;
    }
    float s = hp->expert_weights_scale;
    if (s != 0.0f && s != 1.0f)
        for (int i = 0; i < K; i++)
            w[i] *= s;
}

/* One routed expert over the rows routed to it: gather, SwiGLU, weight into slot. */
static int run_expert(struct forward *f, const struct model_layer *L, int x, int cnt,
                      const int *route, struct err *err)
{
    const struct model_hparams *hp = &f->m->hp;
    struct arch_ds2 *d = f->ds2;
    const size_t E = (size_t)hp->n_embd, K = (size_t)hp->n_expert_used;
    int rc;
    for (int r = 0; r < cnt; r++)
        memcpy(d->xe + (size_t)r * E, f->xn + (size_t)route[r] / K * E, E * sizeof(float));
    struct kernels_tensor_view g = slice(&L->gate_exps, x, hp->n_ff_exp);
    struct kernels_tensor_view u = slice(&L->up_exps, x, hp->n_ff_exp);
    struct kernels_tensor_view dn = slice(&L->down_exps, x, hp->n_embd);
    struct arch_mm gu[2] = {{&g, d->xe, d->ge}, {&u, d->xe, d->ue}};
    if ((rc = mm(f, gu, 2, cnt, err)))
        return rc;
    kernels_swiglu(d->ge, d->ge, d->ue, (int64_t)cnt * hp->n_ff_exp);
    struct arch_mm dm = {&dn, d->ge, d->ye};
    if ((rc = mm(f, &dm, 1, cnt, err)))
        return rc;
    for (int r = 0; r < cnt; r++) {
        float *out = d->slot + (size_t)route[r] * E, wt = d->w[route[r]];
        const float *y = d->ye + (size_t)r * E;
        for (size_t i = 0; i < E; i++)
            out[i] = y[i] * wt;
    }
    return 0;
}

/* The MoE feed-forward from xn to f->tmp: shared experts, routing, routed experts (each
 * once over all its tokens), then per token the slots summed in selection order. */
static int moe_block(struct forward *f, const struct model_layer *L, int n, struct err *err)
{
    const struct model_hparams *hp = &f->m->hp;
    struct arch_ds2 *d = f->ds2;
    const int X = hp->n_expert, K = hp->n_expert_used, E = hp->n_embd;
    const int S = hp->n_ff_exp * hp->n_expert_shared;
    int rc;

    struct arch_mm a[3] = {{&L->gate_inp, f->xn, d->router}, {&L->gate_shexp, f->xn, d->ge},
                           {&L->up_shexp, f->xn, d->ue}};
    if ((rc = mm(f, a, S > 0 ? 3 : 1, n, err)))
        return rc;
    if (S > 0) {
        kernels_swiglu(d->ge, d->ge, d->ue, (int64_t)n * S);
        struct arch_mm dm = {&L->down_shexp, d->ge, f->tmp};
        if ((rc = mm(f, &dm, 1, n, err)))
            return rc;
    } else {
        memset(f->tmp, 0, (size_t)n * (size_t)E * sizeof(float));
    }

    for (int t = 0; t < n; t++)
        arch_deepseek2_route(hp, d->router + (size_t)t * (size_t)X, L->exp_probs_b, d->selp,
                             d->taken, d->sel + (size_t)t * (size_t)K,
                             d->w + (size_t)t * (size_t)K);

    /* Group the (token, slot) pairs by expert (counting sort keeps token order). */
    memset(d->cnt, 0, (size_t)X * sizeof(int));
    for (int i = 0; i < n * K; i++)
        d->cnt[d->sel[i]]++;
    for (int x = 0, acc = 0; x < X; x++) {
        d->start[x] = acc;
        acc += d->cnt[x];
    }
    for (int i = 0; i < n * K; i++)
        d->route[d->start[d->sel[i]]++] = i;
    for (int x = 0, b = 0; x < X; b += d->cnt[x], x++)
        if (d->cnt[x] > 0 && (rc = run_expert(f, L, x, d->cnt[x], d->route + b, err)))
            return rc;

    for (int t = 0; t < n; t++) {
        float *o = f->tmp + (size_t)t * (size_t)E;
        const float *s = d->slot + (size_t)t * (size_t)K * (size_t)E;
        float *acc = d->ye; /* free again: sum the slots in order, then add shared */
        memcpy(acc, s, (size_t)E * sizeof(float));
        for (int k = 1; k < K; k++)
            kernels_add(acc, acc, s + (size_t)k * (size_t)E, E);
        kernels_add(o, acc, o, E);
    }
    return 0;
}

static int dense_block(struct forward *f, const struct model_layer *L, int n, struct err *err)
{
    int rc;
    struct arch_mm gu[2] = {{&L->gate, f->xn, f->gate}, {&L->up, f->xn, f->up}};
    if ((rc = mm(f, gu, 2, n, err)))
        return rc;
    kernels_swiglu(f->gate, f->gate, f->up, (int64_t)n * f->m->hp.n_ff);
    struct arch_mm dm = {&L->down, f->gate, f->tmp};
    return mm(f, &dm, 1, n, err);
}

/* ---------------------------------------------------------------- the pass */

int arch_deepseek2_forward(struct forward *f, const struct forward_entry *e, int n,
                           struct err *err)
{
    const struct model *m = f->m;
    const struct model_hparams *hp = &m->hp;
    const int E = hp->n_embd;
    int rc;

    for (int t = 0; t < n; t++)
        kernels_dequantize_row(m->tok_embd.type,
                               (const char *)m->tok_embd.data +
                                   (size_t)e[t].token * m->tok_embd.row_bytes,
                               f->x + (size_t)t * (size_t)E, E);

    for (int il = 0; il < hp->n_layer; il++) {
        const struct model_layer *L = &m->layers[il];
        rmsnorm_rows(f->xn, f->x, L->attn_norm, n, (size_t)E, E, hp->rms_eps);
        if ((rc = mla_block(f, L, il, e, n, err)))
            return rc;
        kernels_add(f->x, f->x, f->tmp, (int64_t)n * E);

        rmsnorm_rows(f->xn, f->x, L->ffn_norm, n, (size_t)E, E, hp->rms_eps);
        rc = il < hp->n_dense_lead ? dense_block(f, L, n, err) : moe_block(f, L, n, err);
        if (rc)
            return rc;
        kernels_add(f->x, f->x, f->tmp, (int64_t)n * E);
    }

    int n_out = 0;
    for (int t = 0; t < n; t++)
        if (e[t].want_logits)
            f->tok_out[n_out++] = t;
    if (n_out == 0)
        return 0;
    for (int i = 0; i < n_out; i++)
        kernels_rmsnorm(f->xn + (size_t)i * (size_t)E, f->x + (size_t)f->tok_out[i] * (size_t)E,
                        m->output_norm, E, hp->rms_eps);
    struct arch_mm out = {&m->output, f->xn, f->logits};
    return mm(f, &out, 1, n_out, err);
}
