/*
 * prefix: choosing which KV slot a new request should reuse (the prefix cache).
 *
 * A sequence slot's KV cache keeps the tokens of the last request it ran (prompt and
 * the generated tokens that were fed back) after that request ends. A new request
 * whose prompt starts with the same tokens (a shared system prompt, the earlier turns
 * of a chat) can keep those rows and compute only the rest: its first token comes
 * sooner, and its output is the same, since the kept rows were computed by the same
 * code from the same tokens at the same positions.
 *
 * prefix_choose picks, among the free slots, the one whose kept tokens share the
 * longest prefix with the new prompt and carry the same tag (the API key id, so one
 * key cannot time another's prompts), or, when none shares anything, the least
 * recently used free slot, whose rows are then evicted. The usable hit is at most
 * n_prompt - 1: the last prompt token is always fed, since its logits give the first
 * sampled token.
 *
 * Pure functions over caller storage: no allocation, no locking, any thread.
 */
#ifndef DS_ENGINE_PREFIX_H
#define DS_ENGINE_PREFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the chooser sees of one slot (borrowed). */
struct prefix_slot {
    const int32_t *toks;      /* the tokens in the slot's KV cache, n of them */
    size_t n;
    const char *tag;          /* who put them there ("" = anonymous) */
    unsigned long long used;  /* when the slot last finished a request (bigger = later) */
    bool busy;                /* running a request: not a candidate */
};

/* Length of the longest common prefix of a[0..na) and b[0..nb). */
size_t prefix_common(const int32_t *a, size_t na, const int32_t *b, size_t nb);

/* The free slot to run prompt[0..n_prompt) (n_prompt >= 1) in, or -1 if every slot is
 * busy. *hit is the number of leading prompt tokens whose KV rows that slot already
 * holds (0 when it is an eviction). share_tags: tags are ignored (all keys share). */
int prefix_choose(const struct prefix_slot *s, int n_slots, const int32_t *prompt,
                  size_t n_prompt, const char *tag, bool share_tags, size_t *hit);

#endif
