/* generate: the single-sequence prefill/decode loop and the prompt tokenizers. */
#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/stop.h"

double generate_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int generate_prefill(struct forward *f, int seq, const int32_t *ids, size_t n,
                     const float **last_logits, struct err *err)
{
    *last_logits = NULL;
    int max_batch = forward_params(f)->max_batch;
    struct forward_entry *e = malloc((size_t)max_batch * sizeof *e);
    if (!e)
        return err_set(err, ERR_NOMEM, "generate: out of memory");
    int rc = n ? 0 : err_set(err, ERR_INVALID, "generate: empty prompt");
    int pos = forward_seq_len(f, seq);
    for (size_t at = 0; !rc && at < n;) {
        int k = n - at < (size_t)max_batch ? (int)(n - at) : max_batch;
        for (int i = 0; i < k; i++)
            e[i] = (struct forward_entry){seq, pos + i, ids[at + (size_t)i],
                                          at + (size_t)i == n - 1};
        const float *logits;
        rc = forward_batch(f, e, k, &logits, err);
        if (!rc && at + (size_t)k == n)
            *last_logits = logits;
        at += (size_t)k;
        pos += k;
    }
    free(e);
    return rc;
}

/* ---------------------------------------------------------------- the decode loop */

/* What one generation holds besides the forward context. */
struct gen {
    const struct tokenizer *t;
    struct sampler *smp;
    struct stop *stop;
    struct tokenizer_detok detok;
    char *buf; /* detokenizer output */
    size_t cap;
    generate_token_fn on_token;
    void *ctx;
    struct err *err;
};

/* Passes `len` bytes of newly decoded text through the stop matcher to the callback.
 * Returns 1 when a stop string matched, 2 when the callback asked to stop, 0 or err. */
static int gen_emit(struct gen *g, int32_t id, const char *text, size_t len)
{
    const char *out;
    size_t out_len;
    int hit = stop_feed(g->stop, text, len, &out, &out_len);
    if (hit < 0)
        return err_set(g->err, hit, "generate: out of memory in the stop matcher");
    if (g->on_token && g->on_token(g->ctx, id, out, out_len))
        return 2;
    return hit;
}

/* Detokenizes id and emits its text; result as gen_emit. */
static int gen_token(struct gen *g, int32_t id)
{
    size_t n = tokenizer_detok_push(g->t, &g->detok, id, g->buf, g->cap);
    if (n > g->cap) {
        char *nb = realloc(g->buf, n);
        if (!nb)
            return err_set(g->err, ERR_NOMEM, "generate: out of memory");
        g->buf = nb;
        g->cap = n;
        n = tokenizer_detok_push(g->t, &g->detok, id, g->buf, g->cap);
    }
    return gen_emit(g, id, g->buf, n);
}

/* End of stream: an unfinished character and the held-back bytes go out (id -1). */
static int gen_finish(struct gen *g)
{
    char tail[8];
    size_t n = tokenizer_detok_flush(&g->detok, tail, sizeof tail);
    const char *out;
    size_t out_len;
    int hit = stop_feed(g->stop, tail, n, &out, &out_len);
    if (hit < 0)
        return err_set(g->err, hit, "generate: out of memory in the stop matcher");
    /* out may be overwritten by stop_flush: hand it over first */
    if (g->on_token && out_len)
        g->on_token(g->ctx, -1, out, out_len);
    stop_flush(g->stop, &out, &out_len);
    if (g->on_token)
        g->on_token(g->ctx, -1, out, out_len);
    return 0;
}

static int check_prompt(const struct forward *f, const int32_t *prompt, size_t n,
                        struct err *err)
{
    int n_ctx = forward_params(f)->n_ctx, n_vocab = model_hparams(forward_model(f))->n_vocab;
    if (n == 0)
        return err_set(err, ERR_INVALID, "generate: empty prompt");
    if (n >= (size_t)n_ctx)
        return err_set(err, ERR_RANGE, "prompt has %zu tokens; the context holds %d "
                       "(prompt plus generated; see --ctx-size)", n, n_ctx);
    for (size_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= n_vocab)
            return err_set(err, ERR_RANGE, "prompt token %zu is %d; the vocabulary has ids "
                           "0..%d", i, prompt[i], n_vocab - 1);
    return 0;
}

/* Samples, emits and feeds tokens until one of the ends; logits are the prompt's. */
static int decode_loop(struct forward *f, struct gen *g, const struct generate_params *p,
                       const float *logits, int pos, struct generate_stats *st)
{
    int n_ctx = forward_params(f)->n_ctx, n_vocab = model_hparams(forward_model(f))->n_vocab;
    float *work = malloc((size_t)n_vocab * sizeof *work);
    if (!work)
        return err_set(g->err, ERR_NOMEM, "generate: out of memory");
    int rc = 0;
    for (;;) {
        if (p->n_predict >= 0 && st->n_generated >= p->n_predict) {
            st->finish = GENERATE_FINISH_LENGTH;
            break;
        }
        memcpy(work, logits, (size_t)n_vocab * sizeof *work);
        int32_t id = sampler_sample(g->smp, work);
        if (id < 0) {
            rc = err_set(g->err, id, "generate: no token is possible (every logit is -inf "
                         "after penalties)");
            break;
        }
        if (tokenizer_is_eog(g->t, id)) {
            st->finish = GENERATE_FINISH_EOG;
            break;
        }
        if ((rc = sampler_accept(g->smp, id)) != 0) {
            err_set(g->err, rc, "generate: sampler_accept(%d) failed", id);
            break;
        }
        st->n_generated++;
        int r = gen_token(g, id);
        if (r < 0 || r == 1 || r == 2) {
            rc = r < 0 ? r : 0;
            st->finish = r == 1 ? GENERATE_FINISH_STOP : GENERATE_FINISH_CALLER;
            break;
        }
        if (pos >= n_ctx) {
            st->finish = GENERATE_FINISH_CONTEXT;
            break;
        }
        if (p->n_predict >= 0 && st->n_generated >= p->n_predict) { /* no need to feed */
            st->finish = GENERATE_FINISH_LENGTH;
            break;
        }
        struct forward_entry e = {0, pos++, id, true};
        if ((rc = forward_batch(f, &e, 1, &logits, g->err)) != 0)
            break;
    }
    free(work);
    return rc;
}

static int gen_init(struct gen *g, const struct generate_params *p, int32_t n_vocab,
                    const int32_t *prompt, size_t n_prompt, struct err *err)
{
    int rc = sampler_new(&p->sampling, n_vocab, &g->smp, err);
    if (!rc)
        rc = stop_new(p->stop, p->n_stop, &g->stop, err);
    if (!rc && (rc = sampler_accept_prompt(g->smp, prompt, n_prompt)) != 0)
        err_set(err, rc, "generate: the sampler refused the prompt tokens");
    g->cap = 256;
    if (!rc && !(g->buf = malloc(g->cap)))
        rc = err_set(err, ERR_NOMEM, "generate: out of memory");
    tokenizer_detok_init(&g->detok);
    return rc;
}

int generate_run(struct forward *f, const struct tokenizer *t, const int32_t *prompt,
                 size_t n_prompt, const struct generate_params *p, generate_token_fn on_token,
                 void *ctx, float *prompt_logits, struct generate_stats *stats,
                 struct err *err)
{
    struct generate_stats st = {.n_prompt = (int32_t)n_prompt};
    int32_t n_vocab = model_hparams(forward_model(f))->n_vocab;
    struct gen g = {.t = t, .on_token = on_token, .ctx = ctx, .err = err};
    int rc = check_prompt(f, prompt, n_prompt, err);
    if (!rc)
        rc = gen_init(&g, p, n_vocab, prompt, n_prompt, err);
    const float *logits = NULL;
    if (!rc) {
        st.seed = sampler_seed(g.smp);
        forward_seq_clear(f, 0);
        double t0 = generate_now();
        rc = generate_prefill(f, 0, prompt, n_prompt, &logits, err);
        double t1 = generate_now();
        st.prefill_s = t1 - t0;
        if (!rc && prompt_logits)
            memcpy(prompt_logits, logits, (size_t)n_vocab * sizeof *prompt_logits);
        if (!rc)
            rc = decode_loop(f, &g, p, logits, (int)n_prompt, &st);
        if (!rc)
            rc = gen_finish(&g);
        st.decode_s = generate_now() - t1;
    }
    free(g.buf);
    stop_free(g.stop);
    sampler_free(g.smp);
    if (stats)
        *stats = st;
    return rc;
}

/* ---------------------------------------------------------------- prompts */

int generate_encode_prompt(const struct tokenizer *t, const char *text, size_t len,
                           int32_t **ids, size_t *n_ids, struct err *err)
{
    int flags = TOKENIZER_PARSE_SPECIAL | (tokenizer_add_bos(t) ? TOKENIZER_ADD_BOS : 0);
    return tokenizer_encode(t, text, len, flags, ids, n_ids, err);
}

int generate_encode_chat(const struct tokenizer *t, const char *template_name,
                         const struct chat_message *msgs, size_t n_msgs, int32_t **ids,
                         size_t *n_ids, struct err *err)
{
    *ids = NULL;
    *n_ids = 0;
    enum chat_template tmpl;
    int rc = chat_template_choose(template_name, tokenizer_chat_template(t), &tmpl, err);
    if (rc)
        return rc;
    int32_t bos = tokenizer_bos(t), eos = tokenizer_eos(t);
    struct chat_render_opts o = {.bos = bos >= 0 ? tokenizer_token_text(t, bos) : "",
                                 .eos = eos >= 0 ? tokenizer_token_text(t, eos) : NULL,
                                 .add_generation_prompt = true};
    char *text = NULL;
    size_t len = 0, n_spans = 0;
    struct chat_span *spans = NULL;
    struct tokenizer_span *plain = NULL;
    rc = chat_render_spans(tmpl, msgs, n_msgs, &o, &text, &len, &spans, &n_spans, err);
    if (!rc && n_spans && !(plain = malloc(n_spans * sizeof *plain)))
        rc = err_set(err, ERR_NOMEM, "generate: out of memory");
    for (size_t i = 0; !rc && i < n_spans; i++)
        plain[i] = (struct tokenizer_span){spans[i].off, spans[i].len};
    if (!rc)
        rc = tokenizer_encode_spans(t, text, len, TOKENIZER_PARSE_SPECIAL, plain, n_spans, ids,
                                    n_ids, err);
    free(plain);
    free(spans);
    free(text);
    return rc;
}
