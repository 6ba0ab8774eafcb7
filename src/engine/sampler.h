/*
 * sampler: picks the next token of one sequence from the model's logits.
 *
 * Order of operations in sampler_sample (docs/SAMPLING.md has the why):
 *   1. penalties, in place on the caller's logits:
 *        repetition (llama.cpp): each distinct token among the last penalty_last_n
 *          accepted tokens (prompt included when fed with sampler_accept_prompt):
 *          logit > 0 ? logit /= repetition_penalty : logit *= repetition_penalty
 *        presence / frequency (OpenAI): each token generated so far (sampler_accept):
 *          logit -= presence_penalty * (count > 0) + frequency_penalty * count
 *   2. temperature 0: argmax, the lowest id wins ties. Done, no randomness used.
 *   3. top_k (0 = off): keep the k highest logits (ties: lowest id first).
 *   4. softmax of logit / temperature.
 *   5. top_p (1 = off): keep the smallest most-probable set whose mass reaches top_p
 *      (the token that crosses top_p is kept), measured on the step-4 distribution.
 *   6. min_p (0 = off): keep tokens with p >= min_p * p_max (p of step 4).
 *   7. draw one token from what is left, renormalised, with the sampler's own PRNG
 *      (xoshiro256** seeded through splitmix64): the same seed and the same logits
 *      give the same tokens on every platform.
 * NaN logits count as -inf and +inf as FLT_MAX, so bad logits never crash.
 * Without top_k, tokens whose combined probability is below 1e-7 of the best
 * token's (those more than ln(n_vocab) + 16.1 below it in logit / T) are never drawn:
 * this skips the exps of a long tail at the cost of far less than float rounding.
 *
 * End-of-generation tokens, max_tokens and stop strings (engine/stop.h) are the
 * caller's loop: the sampler only ever returns an id in [0, n_vocab).
 *
 * Cost: all scratch is allocated by sampler_new (about 8 bytes per vocabulary entry);
 * sampler_sample never allocates. top_k uses a k-heap (no full sort); top_p without
 * top_k buckets the probabilities (two levels) and sorts only the boundary bucket.
 *
 * Ownership: a sampler owns its scratch and history; the params are copied.
 * Threading: a sampler belongs to one sequence and one thread at a time (the engine
 * thread); distinct samplers are independent.
 */
#ifndef DS_ENGINE_SAMPLER_H
#define DS_ENGINE_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define SAMPLER_LAST_N_MAX 65536 /* largest penalty_last_n */

struct sampler_params {
    float temperature;        /* [0, 2]; 0 = greedy */
    int32_t top_k;            /* >= 0; 0 = off */
    float top_p;              /* (0, 1]; 1 = off */
    float min_p;              /* [0, 1]; 0 = off */
    float repetition_penalty; /* (0, 10]; 1 = off */
    int32_t penalty_last_n;   /* [0, SAMPLER_LAST_N_MAX] window of the repetition penalty */
    float presence_penalty;   /* [-2, 2]; 0 = off */
    float frequency_penalty;  /* [-2, 2]; 0 = off */
    bool has_seed;            /* false: a random seed from getrandom() */
    uint64_t seed;            /* used when has_seed */
};

/* OpenAI's defaults: temperature 1, top_p 1, no top_k, min_p or penalties,
 * penalty_last_n 64 (llama.cpp's), random seed. */
struct sampler_params sampler_params_default(void);

/* 0, or ERR_RANGE with a message naming the field as the API spells it:
 * "temperature: 2.5 is out of range [0, 2]". NaN is out of every range. */
int sampler_params_check(const struct sampler_params *p, struct err *err);

struct sampler; /* opaque */

/* Checks p (as sampler_params_check) and n_vocab > 0, then allocates. *out is NULL
 * on failure. */
int sampler_new(const struct sampler_params *p, int32_t n_vocab, struct sampler **out,
                struct err *err);
void sampler_free(struct sampler *s); /* accepts NULL */

/* Records a generated token: it enters the repetition window and the
 * presence/frequency counts. ERR_RANGE if token is outside [0, n_vocab),
 * ERR_NOMEM if the counts cannot grow (the history is then unchanged). */
int sampler_accept(struct sampler *s, int32_t token);

/* Records prompt tokens: they enter only the repetition window (as llama.cpp, whose
 * server feeds the prompt to its penalties), not the OpenAI counts.
 * ERR_RANGE (nothing recorded) if any token is outside [0, n_vocab). */
int sampler_accept_prompt(struct sampler *s, const int32_t *tokens, size_t n);

/* The next token, from logits[n_vocab] (modified in place by the penalties).
 * Returns an id in [0, n_vocab), or ERR_RANGE when no logit is above
 * -inf (after penalties). Does not record the token: call sampler_accept. */
int32_t sampler_sample(struct sampler *s, float *logits);

/* The seed in use (the drawn one when params had none), for logs and replays. */
uint64_t sampler_seed(const struct sampler *s);

#endif
