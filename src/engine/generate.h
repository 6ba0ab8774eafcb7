/*
 * generate: one sequence generated from prompt to end on the calling thread, for the
 * command line (`deepseek generate`, `deepseek bench`). The server does not use this
 * loop (its scheduler batches many sequences); it may use the prompt helpers.
 *
 * The loop: the whole prompt goes through forward_batch in chunks of max_batch tokens
 * (only the last position asks for logits); then sample, stop or feed the token, and
 * repeat. Generation ends at an end-of-generation token (not emitted), after n_predict
 * tokens, when a stop string completes (the text before it is the last emitted), or
 * when the context is full. Generated text reaches the caller through a callback, as
 * complete UTF-8 (the streaming detokenizer) with stop-string prefixes held back until
 * they are decided (engine/stop.h).
 *
 * Prompts: generate_encode_prompt tokenizes raw text the way llama.cpp's tools do (BOS
 * when the model asks for it, special-token text parsed), which is how the reference
 * outputs in the test data were made. generate_encode_chat renders chat messages
 * through a DeepSeek chat template and tokenizes them with control tokens recognised
 * only outside the message contents, so user text cannot forge a turn.
 *
 * Ownership: borrows the forward context and tokenizer; the callback's text is valid
 * only during the call. Threading: the forward context's owner thread only.
 */
#ifndef DS_ENGINE_GENERATE_H
#define DS_ENGINE_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/sampler.h"
#include "model/chat.h"
#include "model/forward.h"
#include "model/tokenizer.h"

enum generate_finish {
    GENERATE_FINISH_EOG,     /* the model produced an end-of-generation token */
    GENERATE_FINISH_STOP,    /* a stop string completed */
    GENERATE_FINISH_LENGTH,  /* n_predict tokens were generated */
    GENERATE_FINISH_CONTEXT, /* the context is full */
    GENERATE_FINISH_CALLER,  /* the callback asked to stop */
};

struct generate_params {
    struct sampler_params sampling;
    int32_t n_predict;       /* most tokens to generate; -1 = until EOG or context full */
    const char *const *stop; /* borrowed stop strings (engine/stop.h limits), may be NULL */
    int n_stop;
};

struct generate_stats {
    int32_t n_prompt;    /* tokens prefilled */
    int32_t n_generated; /* tokens sampled and emitted (EOG not counted) */
    double prefill_s;    /* wall time of the prompt's forward passes */
    double decode_s;     /* wall time from the end of prefill to the end: sampling,
                            detokenizing and one forward pass per generated token */
    enum generate_finish finish;
    uint64_t seed;       /* the sampler's seed (the drawn one when none was given) */
};

/* Called once per generated token with the text that is now safe to show (len may be 0
 * while UTF-8 or a possible stop string is incomplete), and once more with id -1 for the
 * text held until the end. A non-zero return stops generation (GENERATE_FINISH_CALLER). */
typedef int (*generate_token_fn)(void *ctx, int32_t id, const char *text, size_t len);

/* Feeds ids[0..n) to sequence seq at positions from its current length, in chunks of
 * the context's max_batch; *last_logits gets the logits of the last position (valid until
 * the next forward call). n >= 1. */
int generate_prefill(struct forward *f, int seq, const int32_t *ids, size_t n,
                     const float **last_logits, struct err *err);

/* Generates on sequence 0 of f (cleared first) after prompt[0..n_prompt), calling
 * on_token (may be NULL) as text is produced. prompt_logits, when non-NULL, receives the
 * n_vocab logits of the last prompt position before any penalty is applied. stats (may
 * be NULL) is filled on success and on failure. ERR_RANGE when the prompt does not leave
 * room for one token in the context (n_prompt >= n_ctx) or holds an id >= n_vocab. */
int generate_run(struct forward *f, const struct tokenizer *t, const int32_t *prompt,
                 size_t n_prompt, const struct generate_params *p, generate_token_fn on_token,
                 void *ctx, float *prompt_logits, struct generate_stats *stats,
                 struct err *err);

/* Raw text to ids: BOS when tokenizer_add_bos says so, special-token text parsed.
 * *ids malloc'ed (caller frees). */
int generate_encode_prompt(const struct tokenizer *t, const char *text, size_t len,
                           int32_t **ids, size_t *n_ids, struct err *err);

/* Chat messages to ids through the template chat_template_choose(template_name, the
 * model's tokenizer.chat_template) picks, with the generation prompt, the vocabulary's
 * BOS/EOS texts, and control tokens parsed only outside message contents. No BOS is
 * added by the tokenizer: the template writes it. *ids malloc'ed (caller frees). */
int generate_encode_chat(const struct tokenizer *t, const char *template_name,
                         const struct chat_message *msgs, size_t n_msgs, int32_t **ids,
                         size_t *n_ids, struct err *err);

/* Seconds on a monotonic clock, for timing. */
double generate_now(void);

#endif
