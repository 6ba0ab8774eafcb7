/*
 * sched: continuous batching on the engine thread. See sched.h for the step; this
 * file is in four parts: the waiting queue (shared, under a mutex), slots (engine
 * thread only), turning a sampled token into text, and the step itself.
 */
#include "engine/sched.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/prefix.h"
#include "engine/stop.h"

#define SCHED_PIECE_MAX 256 /* bytes of one token's text held on the stack */

struct slot {
    struct request *req; /* NULL: free */
    struct sampler *smp;
    struct stop *stop;   /* stop strings on the content */
    struct stop *stop_r; /* and, separately, on the reasoning */
    struct tokenizer_detok detok;
    size_t n_fed;        /* prompt tokens already in the cache */
    int32_t next_tok;    /* sampled, not yet in the cache */
    int32_t n_gen, n_reasoning;
    bool in_reasoning;
    bool strip_ws;       /* drop whitespace right after </think> */
};

/* What a slot's KV cache holds; survives the request (the prefix cache). */
struct slot_kv {
    int32_t *toks;            /* [n_ctx]: the token at each valid position */
    size_t n;                 /* == forward_seq_len of the slot */
    char tag[REQUEST_TAG_MAX];
    unsigned long long used;  /* s->clock when its last request ended */
    bool forget;              /* its tag was erased while it ran: drop rows at release */
};

struct sched {
    const struct model *model;
    const struct tokenizer *tok;
    struct sched_params p;
    struct forward *fwd;
    struct slot *slots;
    struct slot_kv *kv;  /* [n_slots] */
    struct prefix_slot *cand; /* [n_slots] scratch for prefix_choose */
    unsigned long long clock;
    struct forward_entry *batch;
    int *batch_slot;     /* [max_batch] slot of each entry wanting logits, else -1 */
    float *logits;       /* [n_vocab] scratch the sampler may modify */
    int n_prompt_built;  /* prompt entries in the last sched_build */
    int n_vocab;

    pthread_mutex_t mu;  /* guards the fields below */
    pthread_cond_t cv;
    struct request **wait; /* ring of queue_max + n_slots */
    int wait_cap, wait_head, wait_len;
    int running;
    bool draining, stopping, thread_started;
    /* sched_forget_tag: one caller at a time (forget_mu, taken before mu), the work
     * done by the engine thread */
    pthread_mutex_t forget_mu;
    pthread_cond_t forget_cv;
    char forget_tag[REQUEST_TAG_MAX];
    bool forget_pending;
    int forget_n;
    unsigned long long steps, tokens_prompt, tokens_generated, tokens_cached;
    pthread_t thread;
};

/* ------------------------------------------------------------ queue (any thread) */

int sched_submit(struct sched *s, struct request *r, enum sched_reject *why, struct err *err)
{
    size_t n_prompt;
    request_prompt(r, &n_prompt);
    if (n_prompt + 1 > (size_t)s->p.n_ctx) {
        *why = SCHED_REJECT_TOO_LONG;
        return err_set(err, ERR_RANGE,
                       "this model's context size is %d tokens; the prompt is %zu tokens",
                       s->p.n_ctx, n_prompt);
    }
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    *why = SCHED_ACCEPTED;
    if (s->draining || s->stopping) {
        *why = SCHED_REJECT_STOPPED;
        rc = err_set(err, ERR_RANGE, "server is shutting down");
    } else if (s->running + s->wait_len >= s->p.n_slots + s->p.queue_max) {
        *why = SCHED_REJECT_QUEUE_FULL;
        rc = err_set(err, ERR_RANGE, "queue full: %d running, %d waiting", s->running,
                     s->wait_len);
    } else {
        request_ref(r);
        s->wait[(s->wait_head + s->wait_len++) % s->wait_cap] = r;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static struct request *queue_pop_locked(struct sched *s)
{
    if (s->wait_len == 0)
        return NULL;
    struct request *r = s->wait[s->wait_head];
    s->wait_head = (s->wait_head + 1) % s->wait_cap;
    s->wait_len--;
    return r;
}

void sched_drain(struct sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
}

void sched_stats(struct sched *s, struct sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = (struct sched_stats){.running = s->running, .waiting = s->wait_len,
                                .n_slots = s->p.n_slots, .n_ctx = s->p.n_ctx,
                                .queue_max = s->p.queue_max, .steps = s->steps,
                                .tokens_prompt = s->tokens_prompt,
                                .tokens_generated = s->tokens_generated,
                                .tokens_cached = s->tokens_cached};
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------ slots (engine thread) */

/* Empties slot i's prefix-cache record: rows, token ids and tag. */
static void slot_forget(struct sched *s, int i)
{
    struct slot_kv *kv = &s->kv[i];
    forward_seq_clear(s->fwd, i);
    memset(kv->toks, 0, sizeof(int32_t) * (size_t)s->p.n_ctx);
    kv->n = 0;
    memset(kv->tag, 0, sizeof kv->tag);
    kv->forget = false;
    kv->used = 0; /* empty: the first slot to take next, before any with rows */
}

/* The work of sched_forget_tag, on the engine thread: free slots now, busy ones at
 * their release. Returns the number of slots concerned. */
static int slots_forget_tag(struct sched *s, const char *tag)
{
    int n = 0;
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot_kv *kv = &s->kv[i];
        bool busy = s->slots[i].req != NULL;
        if (strcmp(kv->tag, tag))
            continue;
        if (!busy && kv->n == 0) { /* no rows: only the name is left */
            memset(kv->tag, 0, sizeof kv->tag);
            continue;
        }
        n++;
        if (busy)
            kv->forget = true;
        else
            slot_forget(s, i);
    }
    return n;
}

/* Engine thread, at the start of a step: answers a pending sched_forget_tag. */
static void sched_do_forget(struct sched *s)
{
    pthread_mutex_lock(&s->mu);
    bool pending = s->forget_pending;
    char tag[REQUEST_TAG_MAX];
    memcpy(tag, s->forget_tag, sizeof tag);
    pthread_mutex_unlock(&s->mu);
    if (!pending)
        return;
    int n = slots_forget_tag(s, tag);
    pthread_mutex_lock(&s->mu);
    s->forget_n = n;
    s->forget_pending = false;
    pthread_cond_broadcast(&s->forget_cv);
    pthread_mutex_unlock(&s->mu);
}

int sched_forget_tag(struct sched *s, const char *tag, int *n, struct err *err)
{
    if (n)
        *n = 0;
    if (strlen(tag) >= REQUEST_TAG_MAX)
        return err_set(err, ERR_INVALID, "sched: tag longer than %d bytes", REQUEST_TAG_MAX - 1);
    if (!s->thread_started) {
        int k = slots_forget_tag(s, tag);
        if (n)
            *n = k;
        return 0;
    }
    pthread_mutex_lock(&s->forget_mu);
    pthread_mutex_lock(&s->mu);
    bool done = false;
    if (!s->stopping) {
        snprintf(s->forget_tag, sizeof s->forget_tag, "%s", tag);
        s->forget_pending = true;
        pthread_cond_signal(&s->cv);
        while (s->forget_pending && !s->stopping)
            pthread_cond_wait(&s->forget_cv, &s->mu);
        done = !s->forget_pending;
        if (done && n)
            *n = s->forget_n;
    }
    s->forget_pending = false;
    int rc = done ? 0 : err_set(err, ERR_RANGE, "sched: stopping; prefix-cache rows not dropped");
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->forget_mu);
    return rc;
}

/* keep: the slot's KV rows stay for the prefix cache (they are valid: everything in
 * kv->toks went through a forward pass that succeeded). */
static void slot_release(struct sched *s, int i, bool keep)
{
    struct slot *sl = &s->slots[i];
    s->kv[i].used = ++s->clock;
    if (s->kv[i].forget) {
        slot_forget(s, i);
    } else if (!keep || s->p.prefix_off) {
        forward_seq_clear(s->fwd, i);
        s->kv[i].n = 0;
    }
    sampler_free(sl->smp);
    stop_free(sl->stop);
    stop_free(sl->stop_r);
    request_unref(sl->req);
    memset(sl, 0, sizeof *sl);
    pthread_mutex_lock(&s->mu);
    s->running--;
    pthread_mutex_unlock(&s->mu);
}

/* Flushes what the detokenizer and stop matcher hold, counts, finishes, frees. */
static void slot_finish(struct sched *s, int i, enum request_finish f, const char *msg)
{
    struct slot *sl = &s->slots[i];
    char tail[8];
    size_t n = tokenizer_detok_flush(&sl->detok, tail, sizeof tail);
    const char *emit = NULL;
    size_t emit_len = 0;
    if (f != REQUEST_FINISH_CANCELLED && f != REQUEST_FINISH_ERROR && sl->stop) {
        struct stop *m = sl->in_reasoning ? sl->stop_r : sl->stop;
        if (n && stop_feed(m, tail, n, &emit, &emit_len) == 0)
            request_emit(sl->req, emit, emit_len, sl->in_reasoning);
        if (stop_matched(m) < 0) {
            stop_flush(m, &emit, &emit_len);
            request_emit(sl->req, emit, emit_len, sl->in_reasoning);
        } else {
            f = REQUEST_FINISH_STOP;
        }
    }
    size_t n_prompt;
    request_prompt(sl->req, &n_prompt);
    request_count(sl->req, (int32_t)n_prompt, sl->n_gen, sl->n_reasoning);
    request_finish(sl->req, f, msg);
    slot_release(s, i, f != REQUEST_FINISH_ERROR);
}

/* hit: leading prompt tokens whose rows slot i already holds (prefix_choose). */
static int slot_admit(struct sched *s, int i, struct request *r, size_t hit, struct err *err)
{
    struct slot *sl = &s->slots[i];
    const struct request_params *rp = request_params(r);
    memset(sl, 0, sizeof *sl);
    sl->req = r;
    tokenizer_detok_init(&sl->detok);
    sl->in_reasoning = rp->in_reasoning && rp->think_end >= 0;
    size_t n_prompt;
    const int32_t *prompt = request_prompt(r, &n_prompt);
    int rc = sampler_new(&rp->sampling, s->n_vocab, &sl->smp, err);
    if (!rc)
        rc = sampler_accept_prompt(sl->smp, prompt, n_prompt);
    const char *stops[REQUEST_MAX_STOP];
    for (int k = 0; k < rp->n_stop; k++)
        stops[k] = request_stop(r, k);
    if (!rc)
        rc = stop_new(stops, rp->n_stop, &sl->stop, err);
    if (!rc)
        rc = stop_new(stops, rp->n_stop, &sl->stop_r, err);
    struct slot_kv *kv = &s->kv[i];
    (void)kvcache_seq_truncate(forward_kvcache(s->fwd), i, (int)hit);
    kv->n = hit;
    snprintf(kv->tag, sizeof kv->tag, "%s", rp->cache_tag);
    sl->n_fed = hit;
    request_set_cached(r, (int32_t)hit);
    pthread_mutex_lock(&s->mu);
    s->tokens_cached += hit;
    pthread_mutex_unlock(&s->mu);
    request_set_state(r, REQUEST_RUNNING);
    return rc;
}

static int slot_choose_any_free(const struct sched *s)
{
    for (int i = 0; i < s->p.n_slots; i++)
        if (!s->slots[i].req)
            return i;
    return -1;
}

/* The free slot for r (the longest cached prefix, else LRU), or -1 when none is free. */
static int slot_choose(struct sched *s, struct request *r, size_t *hit)
{
    size_t n_prompt;
    const int32_t *prompt = request_prompt(r, &n_prompt);
    for (int i = 0; i < s->p.n_slots; i++)
        s->cand[i] = (struct prefix_slot){.toks = s->kv[i].toks, .n = s->kv[i].n,
                                          .tag = s->kv[i].tag, .used = s->kv[i].used,
                                          .busy = s->slots[i].req != NULL};
    int i = prefix_choose(s->cand, s->p.n_slots, prompt, n_prompt,
                          request_params(r)->cache_tag, s->p.prefix_share, hit);
    if (s->p.prefix_off)
        *hit = 0;
    return i;
}

/* Moves waiting requests into free slots; cancelled ones finish without a slot. */
static void sched_admit(struct sched *s)
{
    size_t hit = 0;
    int i;
    while ((i = slot_choose_any_free(s)) >= 0) {
        struct request *r = NULL;
        pthread_mutex_lock(&s->mu);
        while ((r = queue_pop_locked(s)) && request_cancelled(r)) {
            pthread_mutex_unlock(&s->mu);
            request_finish(r, REQUEST_FINISH_CANCELLED, NULL);
            request_unref(r);
            pthread_mutex_lock(&s->mu);
        }
        if (r)
            s->running++;
        pthread_mutex_unlock(&s->mu);
        if (!r)
            return;
        i = slot_choose(s, r, &hit);
        struct err e = {0};
        if (slot_admit(s, i, r, hit, &e))
            slot_finish(s, i, REQUEST_FINISH_ERROR, e.msg);
    }
}

/* ----------------------------------------------- a sampled token becomes text */

/* Text of the current stream (content or reasoning) through its stop matcher; content
 * right after </think> loses its leading whitespace. True when a stop string matched. */
static bool slot_text(struct slot *sl, const char *p, size_t n)
{
    if (!sl->in_reasoning && sl->strip_ws) {
        while (n && (*p == '\n' || *p == ' ' || *p == '\r' || *p == '\t'))
            p++, n--;
        if (n)
            sl->strip_ws = false;
    }
    const char *emit = NULL;
    size_t emit_len = 0;
    int m = n ? stop_feed(sl->in_reasoning ? sl->stop_r : sl->stop, p, n, &emit, &emit_len) : 0;
    if (m >= 0)
        request_emit(sl->req, emit, emit_len, sl->in_reasoning);
    return m == 1;
}

/* Handles one sampled token; returns a finish reason, or NONE to keep going. */
static enum request_finish slot_token(struct sched *s, int i, int32_t t)
{
    struct slot *sl = &s->slots[i];
    const struct request_params *rp = request_params(sl->req);
    if (tokenizer_is_eog(s->tok, t))
        return REQUEST_FINISH_STOP;
    sl->n_gen++;
    (void)sampler_accept(sl->smp, t);
    if (rp->think_end >= 0) {
        if (!sl->in_reasoning && sl->n_gen == 1 && t == rp->think_start) {
            sl->in_reasoning = true;
            sl->n_reasoning++;
            return REQUEST_FINISH_NONE;
        }
        if (sl->in_reasoning && t == rp->think_end) { /* reasoning ends: flush it */
            char tail[8];
            const char *emit = NULL;
            size_t emit_len = 0, n = tokenizer_detok_flush(&sl->detok, tail, sizeof tail);
            if (slot_text(sl, tail, n))
                return REQUEST_FINISH_STOP;
            stop_flush(sl->stop_r, &emit, &emit_len);
            request_emit(sl->req, emit, emit_len, true);
            sl->in_reasoning = false;
            sl->strip_ws = true;
            sl->n_reasoning++;
            return sl->n_gen >= rp->max_tokens ? REQUEST_FINISH_LENGTH : REQUEST_FINISH_NONE;
        }
    }
    char small[SCHED_PIECE_MAX];
    char *buf = small;
    size_t n = tokenizer_detok_push(s->tok, &sl->detok, t, small, sizeof small);
    if (n > sizeof small) { /* a very long piece: rare, allocate once */
        buf = malloc(n);
        n = buf ? tokenizer_detok_push(s->tok, &sl->detok, t, buf, n) : 0;
    }
    if (sl->in_reasoning)
        sl->n_reasoning++;
    bool stopped = slot_text(sl, buf, n);
    if (buf != small)
        free(buf);
    if (stopped)
        return REQUEST_FINISH_STOP;
    if (sl->n_gen >= rp->max_tokens)
        return REQUEST_FINISH_LENGTH;
    size_t n_prompt;
    request_prompt(sl->req, &n_prompt);
    if ((int)n_prompt + sl->n_gen >= s->p.n_ctx) /* no room for this token's row */
        return REQUEST_FINISH_LENGTH;
    return REQUEST_FINISH_NONE;
}

/* ------------------------------------------------------------------ the step */

/* Fills s->batch: decode entries first, then prompt chunks. Returns the count. */
static int sched_build(struct sched *s)
{
    int n = 0;
    s->n_prompt_built = 0;
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        size_t n_prompt;
        if (!sl->req)
            continue;
        request_prompt(sl->req, &n_prompt);
        if (sl->n_fed < n_prompt)
            continue;
        int pos = forward_seq_len(s->fwd, i);
        s->kv[i].toks[pos] = sl->next_tok;
        s->kv[i].n = (size_t)pos + 1;
        s->batch_slot[n] = i;
        s->batch[n++] = (struct forward_entry){i, pos, sl->next_tok, true};
    }
    for (int i = 0; i < s->p.n_slots && n < s->p.max_batch; i++) {
        struct slot *sl = &s->slots[i];
        size_t n_prompt;
        if (!sl->req)
            continue;
        const int32_t *prompt = request_prompt(sl->req, &n_prompt);
        while (sl->n_fed < n_prompt && n < s->p.max_batch) {
            bool last = sl->n_fed + 1 == n_prompt;
            s->batch_slot[n] = last ? i : -1;
            s->batch[n++] = (struct forward_entry){i, (int32_t)sl->n_fed,
                                                   prompt[sl->n_fed], last};
            s->kv[i].toks[sl->n_fed] = prompt[sl->n_fed];
            sl->n_fed++;
            s->kv[i].n = sl->n_fed;
            s->n_prompt_built++;
        }
    }
    return n;
}

/* Cancelled requests leave their slot and, at once, their queue place: a client that
 * gave up while queued must not hold a place (and make others 503) until a slot frees. */
static void sched_drop_cancelled(struct sched *s)
{
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->slots[i].req && request_cancelled(s->slots[i].req))
            slot_finish(s, i, REQUEST_FINISH_CANCELLED, NULL);
    struct request *gone[32];
    int n_gone = 0, kept = 0;
    pthread_mutex_lock(&s->mu);
    for (int k = 0; k < s->wait_len; k++) {
        struct request *r = s->wait[(s->wait_head + k) % s->wait_cap];
        if (n_gone < 32 && request_cancelled(r))
            gone[n_gone++] = r; /* more than 32: the rest go at the next step */
        else
            s->wait[(s->wait_head + kept++) % s->wait_cap] = r;
    }
    s->wait_len = kept;
    pthread_mutex_unlock(&s->mu);
    for (int k = 0; k < n_gone; k++) {
        request_finish(gone[k], REQUEST_FINISH_CANCELLED, NULL);
        request_unref(gone[k]);
    }
}

static void sched_sample(struct sched *s, const float *logits, int n)
{
    int row = 0;
    unsigned long long generated = 0;
    for (int k = 0; k < n; k++) {
        if (!s->batch[k].want_logits)
            continue;
        int i = s->batch_slot[k];
        struct slot *sl = &s->slots[i];
        memcpy(s->logits, logits + (size_t)row++ * (size_t)s->n_vocab,
               sizeof(float) * (size_t)s->n_vocab);
        int32_t t = sampler_sample(sl->smp, s->logits);
        if (t < 0) {
            slot_finish(s, i, REQUEST_FINISH_ERROR, "sampler: no token has a finite logit");
            continue;
        }
        generated++;
        enum request_finish f = slot_token(s, i, t);
        if (f != REQUEST_FINISH_NONE)
            slot_finish(s, i, f, NULL);
        else
            sl->next_tok = t;
    }
    pthread_mutex_lock(&s->mu);
    s->tokens_generated += generated;
    pthread_mutex_unlock(&s->mu);
}

int sched_step(struct sched *s, struct err *err)
{
    sched_do_forget(s);
    sched_drop_cancelled(s);
    sched_admit(s);
    int n = sched_build(s);
    int rc = 0;
    if (n > 0) {
        const float *logits = NULL;
        rc = forward_batch(s->fwd, s->batch, n, &logits, err);
        if (rc) {
            for (int k = 0; k < n; k++)
                if (s->slots[s->batch[k].seq].req)
                    slot_finish(s, s->batch[k].seq, REQUEST_FINISH_ERROR, err ? err->msg : NULL);
        } else {
            pthread_mutex_lock(&s->mu);
            s->steps++;
            s->tokens_prompt += (unsigned long long)s->n_prompt_built;
            pthread_mutex_unlock(&s->mu);
            sched_sample(s, logits, n);
        }
    }
    pthread_mutex_lock(&s->mu);
    int left = s->running + s->wait_len;
    pthread_mutex_unlock(&s->mu);
    return rc ? rc : left;
}

/* ------------------------------------------------------------ engine thread */

static void *sched_thread(void *arg)
{
    struct sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->running == 0 && s->wait_len == 0 && !s->forget_pending)
            pthread_cond_wait(&s->cv, &s->mu);
        bool stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        struct err e = {0};
        (void)sched_step(s, &e); /* errors are reported to the requests concerned */
    }
    return NULL;
}

int sched_start(struct sched *s, struct err *err)
{
    if (pthread_create(&s->thread, NULL, sched_thread, s))
        return err_set(err, ERR_INTERNAL, "sched: cannot start the engine thread");
    s->thread_started = true;
    return 0;
}

int sched_new(const struct model *m, const struct tokenizer *t, const struct sched_params *p,
              struct sched **out, struct err *err)
{
    *out = NULL;
    if (p->n_slots < 1 || p->queue_max < 0 || p->n_threads < 1 || p->max_batch < p->n_slots)
        return err_set(err, ERR_INVALID,
                       "sched: need parallel >= 1, queue >= 0, threads >= 1, batch >= parallel");
    struct sched *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(err, ERR_NOMEM, "sched: out of memory");
    s->model = m;
    s->tok = t;
    s->p = *p;
    s->n_vocab = model_hparams(m)->n_vocab;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->forget_cv, NULL);
    pthread_mutex_init(&s->forget_mu, NULL);
    struct forward_params fp;
    forward_params_default(&fp);
    fp.n_threads = p->n_threads;
    fp.max_batch = p->max_batch;
    fp.n_seq = p->n_slots;
    fp.n_ctx = p->n_ctx;
    fp.kv_type = p->kv_type;
    fp.matmul = p->matmul;
    int rc = forward_new(m, &fp, &s->fwd, err);
    if (rc)
        goto fail;
    s->p.n_ctx = forward_params(s->fwd)->n_ctx;
    if (s->p.n_ctx <= 0)
        s->p.n_ctx = model_hparams(m)->n_ctx_train;
    s->wait_cap = p->n_slots + p->queue_max;
    s->slots = calloc((size_t)p->n_slots, sizeof *s->slots);
    s->kv = calloc((size_t)p->n_slots, sizeof *s->kv);
    s->cand = calloc((size_t)p->n_slots, sizeof *s->cand);
    bool kv_ok = s->kv != NULL;
    for (int i = 0; s->kv && i < p->n_slots; i++)
        kv_ok = (s->kv[i].toks = malloc(sizeof(int32_t) * (size_t)s->p.n_ctx)) && kv_ok;
    s->batch = calloc((size_t)p->max_batch, sizeof *s->batch);
    s->batch_slot = calloc((size_t)p->max_batch, sizeof *s->batch_slot);
    s->logits = malloc(sizeof(float) * (size_t)s->n_vocab);
    s->wait = calloc((size_t)s->wait_cap, sizeof *s->wait);
    if (!kv_ok || !s->cand || !s->slots || !s->batch || !s->batch_slot || !s->logits || !s->wait) {
        rc = err_set(err, ERR_NOMEM, "sched: out of memory");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    sched_free(s);
    return rc;
}

void sched_free(struct sched *s)
{
    if (!s)
        return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->cv);
        pthread_cond_broadcast(&s->forget_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    for (int i = 0; s->slots && i < s->p.n_slots; i++)
        if (s->slots[i].req)
            slot_finish(s, i, REQUEST_FINISH_CANCELLED, NULL);
    struct request *r;
    while (s->wait && (r = queue_pop_locked(s))) {
        request_finish(r, REQUEST_FINISH_CANCELLED, NULL);
        request_unref(r);
    }
    forward_free(s->fwd);
    for (int i = 0; s->kv && i < s->p.n_slots; i++)
        free(s->kv[i].toks);
    free(s->kv);
    free(s->cand);
    free(s->slots);
    free(s->batch);
    free(s->batch_slot);
    free(s->logits);
    free(s->wait);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->forget_cv);
    pthread_mutex_destroy(&s->forget_mu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
