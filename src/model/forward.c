/*
 * forward: the context (cache, pool, scratch), batch checks, the threaded matrix
 * product shared by the architectures, and dispatch to the architecture's pass.
 */
#include "model/forward.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "model/arch.h"

#define MM_ROW_ALIGN 16 /* rows per thread share are a multiple of this */
#define MM_QUANT_INLINE 2 /* batches this small quantize activations on the caller */

void forward_params_default(struct forward_params *p)
{
    memset(p, 0, sizeof(*p));
    p->n_threads = 1;
    p->max_batch = 512;
    p->n_seq = 1;
    p->n_ctx = 0;
    p->kv_type = KERNELS_F16;
    p->matmul = FORWARD_MATMUL_FLOAT;
}

static int act_slot(enum kernels_type w)
{
    switch (kernels_act_type(w)) {
    case KERNELS_F16: return ARCH_ACT_F16;
    case KERNELS_BF16: return ARCH_ACT_BF16;
    case KERNELS_Q8_0: return ARCH_ACT_Q8_0;
    case KERNELS_Q8_K: return ARCH_ACT_Q8_K;
    default: return -1;
    }
}

/* Largest activation bytes per token that slot s needs over every matrix of m. */
static void act_sizes(const struct model *m, size_t need[ARCH_ACT_N])
{
    const struct model_hparams *hp = &m->hp;
    memset(need, 0, sizeof(size_t) * ARCH_ACT_N);
    for (int il = -1; il < hp->n_layer; il++) {
        const struct kernels_tensor_view *v[20];
        int nv = 0;
        if (il < 0) {
            v[nv++] = &m->output;
        } else {
            const struct model_layer *L = &m->layers[il];
            v[nv++] = &L->wq, v[nv++] = &L->wk, v[nv++] = &L->wv, v[nv++] = &L->wo;
            v[nv++] = &L->gate, v[nv++] = &L->up, v[nv++] = &L->down;
            /* deepseek2 (unbound views are F32: no slot) */
            v[nv++] = &L->wq_a, v[nv++] = &L->wq_b, v[nv++] = &L->wkv_a;
            v[nv++] = &L->wk_b, v[nv++] = &L->wv_b, v[nv++] = &L->gate_inp;
            v[nv++] = &L->gate_exps, v[nv++] = &L->up_exps, v[nv++] = &L->down_exps;
            v[nv++] = &L->gate_shexp, v[nv++] = &L->up_shexp, v[nv++] = &L->down_shexp;
        }
        for (int i = 0; i < nv; i++) {
            int s = act_slot(v[i]->type);
            size_t b = s < 0 ? 0 : kernels_act_bytes(v[i]->type, v[i]->cols, 1);
            if (s >= 0 && b > need[s])
                need[s] = b;
        }
    }
}

static int alloc_scratch(struct forward *f, struct err *err)
{
    const struct model_hparams *hp = &f->m->hp;
    size_t B = (size_t)f->p.max_batch, nt = (size_t)f->p.n_threads;
    size_t E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * (size_t)hp->head_dim;
    size_t KV = (size_t)hp->n_head_kv * (size_t)hp->head_dim, F = (size_t)hp->n_ff;
    f->x = malloc(B * E * sizeof(float));
    f->xn = malloc(B * E * sizeof(float));
    f->q = malloc(B * Q * sizeof(float));
    f->k = malloc(B * KV * sizeof(float));
    f->v = malloc(B * KV * sizeof(float));
    f->att = malloc(B * Q * sizeof(float));
    f->tmp = malloc(B * E * sizeof(float));
    f->gate = malloc(B * F * sizeof(float));
    f->up = malloc(B * F * sizeof(float));
    f->logits = malloc(B * (size_t)hp->n_vocab * sizeof(float));
    /* llama/qwen2: a KV head's query group at once; deepseek2: one head (model.c checked
     * n_head % n_head_kv) */
    size_t grp = hp->arch == MODEL_ARCH_DEEPSEEK2 ? 1 : (size_t)(hp->n_head / hp->n_head_kv);
    f->scores = malloc(nt * grp * (size_t)f->p.n_ctx * sizeof(float));
    f->vrow = malloc(nt * (size_t)hp->head_dim * sizeof(float));
    f->tok_out = malloc(B * sizeof(int));
    f->e_out = malloc(B * sizeof(*f->e_out));
    f->seq_next = malloc((size_t)f->p.n_seq * sizeof(int));
    bool ok = f->x && f->xn && f->q && f->k && f->v && f->att && f->tmp && f->gate && f->up &&
              f->logits && f->scores && f->vrow && f->tok_out && f->e_out && f->seq_next;
    if (ok && f->p.matmul == FORWARD_MATMUL_QUANT_ACT) {
        size_t need[ARCH_ACT_N];
        act_sizes(f->m, need);
        for (int s = 0; s < ARCH_ACT_N && ok; s++)
            if (need[s] && !(f->act[s] = malloc(need[s] * B)))
                ok = false;
    }
    if (!ok)
        return err_set(err, ERR_NOMEM, "forward: cannot allocate scratch for a batch of %zu",
                       B);
    return 0;
}

int forward_new(const struct model *m, const struct forward_params *p, struct forward **out,
                struct err *err)
{
    *out = NULL;
    struct forward *f = calloc(1, sizeof(*f));
    if (!f)
        return err_set(err, ERR_NOMEM, "forward: out of memory");
    f->m = m;
    f->p = *p;
    if (f->p.n_ctx <= 0)
        f->p.n_ctx = m->hp.n_ctx_train;
    int rc = 0;
    if (f->p.max_batch < 1 || f->p.max_batch > (1 << 20) || f->p.n_seq < 1 ||
        f->p.n_ctx > (1 << 24) || (f->p.matmul != FORWARD_MATMUL_FLOAT &&
                                   f->p.matmul != FORWARD_MATMUL_QUANT_ACT))
        rc = err_set(err, ERR_INVALID, "forward: bad parameters (batch %d, %d sequences, "
                     "ctx %d)", f->p.max_batch, f->p.n_seq, f->p.n_ctx);
    if (!rc)
        rc = threadpool_new(f->p.n_threads, &f->pool, err);
    if (!rc && m->hp.arch == MODEL_ARCH_DEEPSEEK2) /* MLA: one latent row, no V */
        rc = kvcache_new_kv(f->p.n_seq, m->hp.n_layer, f->p.n_ctx,
                            m->hp.kv_lora_rank + m->hp.n_rot, 0, f->p.kv_type, &f->kv, err);
    else if (!rc)
        rc = kvcache_new(f->p.n_seq, m->hp.n_layer, f->p.n_ctx,
                         m->hp.n_head_kv * m->hp.head_dim, f->p.kv_type, &f->kv, err);
    if (!rc)
        rc = alloc_scratch(f, err);
    if (!rc && m->hp.arch == MODEL_ARCH_DEEPSEEK2)
        rc = arch_deepseek2_alloc(f, err);
    if (rc) {
        forward_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

void forward_free(struct forward *f)
{
    if (!f)
        return;
    arch_deepseek2_free(f);
    threadpool_free(f->pool);
    kvcache_free(f->kv);
    float *bufs[] = {f->x, f->xn, f->q, f->k, f->v, f->att, f->tmp, f->gate, f->up,
                     f->logits, f->scores, f->vrow};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        free(bufs[i]);
    for (int s = 0; s < ARCH_ACT_N; s++)
        free(f->act[s]);
    free(f->tok_out);
    free(f->e_out);
    free(f->seq_next);
    free(f);
}

const struct model *forward_model(const struct forward *f) { return f->m; }
const struct forward_params *forward_params(const struct forward *f) { return &f->p; }
struct kvcache *forward_kvcache(struct forward *f) { return f->kv; }

void forward_seq_clear(struct forward *f, int seq)
{
    (void)kvcache_seq_truncate(f->kv, seq, 0);
}

int forward_seq_len(const struct forward *f, int seq)
{
    return kvcache_seq_len(f->kv, seq);
}

/* ---------------------------------------------------------------- batch checks */

static int check_batch(struct forward *f, const struct forward_entry *e, int n,
                       struct err *err)
{
    if (n < 1 || n > f->p.max_batch)
        return err_set(err, ERR_RANGE, "forward: batch of %d entries (1..%d)", n,
                       f->p.max_batch);
    for (int s = 0; s < f->p.n_seq; s++)
        f->seq_next[s] = -1;
    for (int i = 0; i < n; i++) {
        int s = e[i].seq, pos = e[i].pos;
        if (s < 0 || s >= f->p.n_seq)
            return err_set(err, ERR_RANGE, "forward: entry %d: sequence %d (0..%d)", i, s,
                           f->p.n_seq - 1);
        if (e[i].token < 0 || e[i].token >= f->m->hp.n_vocab)
            return err_set(err, ERR_RANGE, "forward: entry %d: token %d (0..%d)", i,
                           e[i].token, f->m->hp.n_vocab - 1);
        if (pos < 0 || pos >= f->p.n_ctx)
            return err_set(err, ERR_RANGE, "forward: entry %d: position %d beyond the "
                           "context (0..%d)", i, pos, f->p.n_ctx - 1);
        int want = f->seq_next[s];
        if (want < 0 && pos > kvcache_seq_len(f->kv, s))
            return err_set(err, ERR_INVALID, "forward: entry %d: position %d leaves a gap "
                           "(sequence %d has %d)", i, pos, s, kvcache_seq_len(f->kv, s));
        if (want >= 0 && pos != want)
            return err_set(err, ERR_INVALID, "forward: entry %d: position %d of sequence %d, "
                           "expected %d (consecutive within a batch)", i, pos, s, want);
        f->seq_next[s] = pos + 1;
    }
    return 0;
}

int forward_batch(struct forward *f, const struct forward_entry *e, int n,
                  const float **logits, struct err *err)
{
    *logits = NULL;
    int rc = check_batch(f, e, n, err);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++) /* cannot fail: checked above */
        (void)kvcache_seq_advance(f->kv, e[i].seq, e[i].pos);
    rc = f->m->hp.arch == MODEL_ARCH_DEEPSEEK2 ? arch_deepseek2_forward(f, e, n, err)
                                                : arch_llama_forward(f, e, n, err);
    if (rc) {
        for (int i = 0; i < n; i++) /* the rows written are garbage now */
            if (kvcache_seq_len(f->kv, e[i].seq) > e[i].pos)
                (void)kvcache_seq_truncate(f->kv, e[i].seq, e[i].pos);
        return rc;
    }
    *logits = f->logits;
    return 0;
}

/* ---------------------------------------------------------------- matmul */

struct mm_task {
    struct forward *f;
    const struct arch_mm *mm;
    int n_mm, n_tok;
    const void *act[8]; /* per product: quantized input, or NULL for float */
    _Atomic int rc;
};

static void mm_worker(void *ctx, int ith, int nth)
{
    struct mm_task *t = ctx;
    for (int i = 0; i < t->n_mm; i++) {
        const struct arch_mm *m = &t->mm[i];
        long rb, re;
        threadpool_split((long)m->W->rows, ith, nth, MM_ROW_ALIGN, &rb, &re);
        if (rb >= re)
            continue;
        int rc = t->act[i] ? kernels_matmul_q(m->W, t->act[i], m->y, t->n_tok, rb, re)
                           : kernels_matmul(m->W, m->x, m->y, t->n_tok, rb, re);
        if (rc)
            atomic_store(&t->rc, rc);
    }
}

struct quant_task {
    enum kernels_type w;
    const float *x;
    int64_t cols;
    int n_tok;
    void *act;
    _Atomic int rc;
};

static void quant_worker(void *ctx, int ith, int nth)
{
    struct quant_task *t = ctx;
    long tb, te;
    threadpool_split(t->n_tok, ith, nth, 1, &tb, &te);
    if (tb >= te)
        return;
    size_t rb = kernels_act_row_bytes(t->w, t->cols);
    int rc = kernels_quantize_act(t->w, t->x + (size_t)tb * (size_t)t->cols, t->cols,
                                  (int)(te - tb), (char *)t->act + (size_t)tb * rb);
    if (rc)
        atomic_store(&t->rc, rc);
}

int arch_matmul(struct forward *f, const struct arch_mm *mm, int n_mm, int n_tok,
                struct err *err)
{
    struct mm_task t = {.f = f, .mm = mm, .n_mm = n_mm, .n_tok = n_tok};
    if (n_mm > 8)
        return err_set(err, ERR_INTERNAL, "forward: %d products in one call (max 8)", n_mm);
    atomic_init(&t.rc, 0);
    if (f->p.matmul == FORWARD_MATMUL_QUANT_ACT) {
        const float *src[ARCH_ACT_N] = {0};
        for (int i = 0; i < n_mm; i++) {
            int s = act_slot(mm[i].W->type);
            if (s < 0)
                continue;
            if (src[s] && src[s] != mm[i].x) /* one buffer per slot */
                return err_set(err, ERR_INTERNAL, "forward: two inputs share an "
                               "activation buffer in one call");
            if (!src[s]) {
                struct quant_task q = {mm[i].W->type, mm[i].x, mm[i].W->cols, n_tok,
                                       f->act[s], 0};
                if (n_tok <= MM_QUANT_INLINE) /* a pool run costs more than the work */
                    quant_worker(&q, 0, 1);
                else
                    threadpool_run(f->pool, quant_worker, &q);
                if (atomic_load(&q.rc))
                    return err_set(err, ERR_INTERNAL, "forward: quantizing activations "
                                   "for a %s matrix failed", kernels_type_name(q.w));
                src[s] = mm[i].x;
            }
            t.act[i] = f->act[s];
        }
    }
    threadpool_run(f->pool, mm_worker, &t);
    int rc = atomic_load(&t.rc);
    if (rc)
        return err_set(err, ERR_INTERNAL, "forward: matrix product failed (%s)",
                       err_name(rc));
    return 0;
}
