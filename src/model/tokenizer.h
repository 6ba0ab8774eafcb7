/*
 * tokenizer: byte-level BPE (GGUF `tokenizer.ggml.model` = "gpt2") with the
 * pre-tokenizers DeepSeek models use, selected by `tokenizer.ggml.pre`:
 * deepseek-llm, deepseek-coder, deepseek-v3, deepseek-r1-qwen, qwen2, llama-bpe.
 * Split regexes run on PCRE2 (UTF + UCP, JIT). An unsupported model or pre is an
 * error naming it, never a silent fallback.
 *
 * Special tokens (control / unknown tokens such as <｜User｜>) are matched in the
 * input text only with TOKENIZER_PARSE_SPECIAL; otherwise their text is tokenized
 * as plain text, so user input cannot inject control tokens. USER_DEFINED tokens
 * ("added words" that are not special, e.g. deepseek-coder's "õ") are matched
 * always, as Hugging Face and llama.cpp do. Matching follows llama.cpp: longest
 * token text first, each at its leftmost non-overlapping occurrences.
 *
 * Detokenization through tokenizer_detok_* never emits a partial UTF-8 character:
 * bytes of an incomplete character are held until the rest arrives.
 *
 * Ownership: the tokenizer copies everything it needs from the gguf at load, so the
 * gguf may be closed afterwards. Threading: immutable after load; encode/decode may
 * run concurrently from any thread (each call uses its own scratch).
 */
#ifndef DS_MODEL_TOKENIZER_H
#define DS_MODEL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "model/gguf.h"

struct tokenizer; /* opaque */

enum tokenizer_flags {
    TOKENIZER_ADD_BOS = 1 << 0,       /* prepend BOS (callers pass it when add_bos says so) */
    TOKENIZER_PARSE_SPECIAL = 1 << 1, /* recognise special-token text in the input */
};

/* GGUF token types (tokenizer.ggml.token_type). */
enum tokenizer_token_type {
    TOKEN_TYPE_NORMAL = 1,
    TOKEN_TYPE_UNKNOWN = 2,
    TOKEN_TYPE_CONTROL = 3,
    TOKEN_TYPE_USER_DEFINED = 4,
    TOKEN_TYPE_UNUSED = 5,
    TOKEN_TYPE_BYTE = 6,
};

/* Loads from the `tokenizer.*` keys of g. */
int tokenizer_load(const struct gguf *g, struct tokenizer **out, struct err *err);
void tokenizer_free(struct tokenizer *t); /* accepts NULL */

int32_t tokenizer_n_vocab(const struct tokenizer *t);
int32_t tokenizer_bos(const struct tokenizer *t); /* -1 if none */
int32_t tokenizer_eos(const struct tokenizer *t); /* -1 if none */
bool tokenizer_add_bos(const struct tokenizer *t); /* tokenizer.ggml.add_bos_token */
/* End-of-generation: EOS, EOT and the like (as llama.cpp's EOG set). */
bool tokenizer_is_eog(const struct tokenizer *t, int32_t id);
const char *tokenizer_pre(const struct tokenizer *t); /* the pre-tokenizer's name */
/* The GGUF's tokenizer.chat_template, or NULL; NUL-terminated, owned by t. */
const char *tokenizer_chat_template(const struct tokenizer *t);

/* Token text as stored in the vocabulary (byte-level encoded, NUL-terminated). */
const char *tokenizer_token_text(const struct tokenizer *t, int32_t id);
enum tokenizer_token_type tokenizer_token_type(const struct tokenizer *t, int32_t id);
/* Id of the token whose vocabulary text is exactly `text`, or -1. */
int32_t tokenizer_find(const struct tokenizer *t, const char *text);

/* Encodes len bytes of text. *ids is malloc'ed (caller frees) and *n_ids set; on
 * error *ids is NULL. Invalid UTF-8 in the input is tokenized byte by byte (each
 * such byte is its byte token; llama.cpp would turn it into U+FFFD), so
 * decode(encode(x)) == x for valid UTF-8, and for invalid bytes too except where a
 * vocabulary gives the byte's character to a user-defined token. */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, int flags,
                     int32_t **ids, size_t *n_ids, struct err *err);

/* A byte range [off, off + len) of the text passed to tokenizer_encode_spans. Same
 * fields as model/chat.h's struct chat_span (callers convert). */
struct tokenizer_span {
    size_t off, len;
};

/* As tokenizer_encode, but with TOKENIZER_PARSE_SPECIAL control-token text is
 * recognised only outside the `plain` ranges (the caller's text inside a rendered chat
 * prompt): an occurrence that overlaps a plain range is tokenized as text, so a user who
 * types "<｜Assistant｜>" gets ordinary ids, not the control token. User-defined tokens
 * are matched everywhere, as in tokenizer_encode. Ranges may be in any order and may
 * be empty; one reaching past len is ERR_RANGE. tokenizer_encode is this function with
 * no ranges. */
int tokenizer_encode_spans(const struct tokenizer *t, const char *text, size_t len, int flags,
                           const struct tokenizer_span *plain, size_t n_plain, int32_t **ids,
                           size_t *n_ids, struct err *err);

/* The raw bytes a token stands for (byte-level decoded; special tokens give their
 * text). Returns the number of bytes the piece has, writing at most cap bytes; a
 * return > cap means the buffer was too small. Invalid ids give 0. */
size_t tokenizer_piece(const struct tokenizer *t, int32_t id, char *buf, size_t cap);

/* Decodes a whole id sequence to malloc'ed bytes (NUL-terminated; caller frees). */
int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, char **out,
                     size_t *out_len, struct err *err);

/* Streaming detokenizer: feed ids one at a time, get only complete UTF-8. */
struct tokenizer_detok {
    char pending[8]; /* bytes of an unfinished UTF-8 character */
    size_t n_pending;
};
void tokenizer_detok_init(struct tokenizer_detok *d);
/* Appends the piece of `id` and writes to buf (cap bytes) everything that is now
 * complete; returns the number of bytes written (or needed, if > cap: then nothing
 * is consumed and the caller pushes the same id again with a bigger buffer). A byte
 * that can never start or continue a valid character, or a character cut short, is
 * emitted as one U+FFFD. An invalid id adds nothing. */
size_t tokenizer_detok_push(const struct tokenizer *t, struct tokenizer_detok *d, int32_t id,
                            char *buf, size_t cap);
/* Flushes what remains at end of stream (an unfinished character becomes U+FFFD;
 * needs cap >= 3, else returns 3 and keeps it). */
size_t tokenizer_detok_flush(struct tokenizer_detok *d, char *buf, size_t cap);

#endif
