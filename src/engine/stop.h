/*
 * stop: stop strings matched on the generated text as it streams out.
 *
 * The caller feeds the decoded text in whatever pieces the streaming detokenizer
 * produces (one token's bytes, several, or none); a stop string may be split over
 * any number of feeds. Each feed answers which bytes are safe to send now: bytes
 * that could still be the start of a stop string are held back until the next feed
 * decides them. When a stop string matches, the bytes before it are the last ones
 * ever emitted and the stop string itself is not (OpenAI semantics). The stop string
 * that is complete first wins, the longer one if two end at the same byte, so the
 * result does not depend on how the text was cut into feeds ("bc" beats "abcd" in
 * "abcd": generation would have stopped after "abc"). At the end of generation (EOS, max_tokens) stop_flush
 * releases the held bytes.
 *
 * Matching is on bytes. When the stop strings are valid UTF-8 and the text arrives
 * in whole characters (as tokenizer_detok_* gives it), held-back and emitted pieces
 * always split between characters, so "。" or an emoji works like ASCII.
 *
 * Ownership: the matcher copies the stop strings. The emitted pointer borrows the
 * matcher's buffer and stays valid until the next call on it.
 * Threading: one matcher per sequence, one thread at a time.
 */
#ifndef DS_ENGINE_STOP_H
#define DS_ENGINE_STOP_H

#include <stddef.h>

#include "base/err.h"

#define STOP_MAX_STRINGS 16 /* more than OpenAI's 4; the API may ask for fewer */
#define STOP_MAX_LEN 256    /* bytes per stop string */

struct stop; /* opaque */

/* A matcher for strs[0..n) (n may be 0: then every byte is emitted at once).
 * ERR_RANGE naming the entry ("stop[2]: empty string") for an empty string, one
 * longer than STOP_MAX_LEN, or n above STOP_MAX_STRINGS; *out is NULL on failure. */
int stop_new(const char *const *strs, int n, struct stop **out, struct err *err);
void stop_free(struct stop *m); /* accepts NULL */

/* Feeds len bytes. Sets *emit, *emit_len to the bytes now safe to send (they may
 * include bytes held from earlier feeds). Returns 1 when a stop string has matched:
 * the emitted bytes are then the last text before it and later feeds emit nothing.
 * Returns 0 otherwise, or ERR_NOMEM (nothing consumed, *emit_len = 0). */
int stop_feed(struct stop *m, const char *data, size_t len, const char **emit,
              size_t *emit_len);

/* End of generation: emits the held bytes (none after a match). */
void stop_flush(struct stop *m, const char **emit, size_t *emit_len);

/* The index of the stop string that matched, or -1. */
int stop_matched(const struct stop *m);

/* Bytes currently held back (for tests and logs). */
size_t stop_held(const struct stop *m);

#endif
