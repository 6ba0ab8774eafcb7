/*
 * vocab_builtin: the small byte-level BPE vocabulary `deepseek mkmodel` writes when no
 * --vocab file is given, so a synthetic model is self-contained and chat-capable.
 *
 * Layout (ids): 0..255 the GPT-2 byte-level characters (bytes_to_unicode, in GPT-2's
 * order: "!" is 0), then a few dozen merged English pieces ("Ġt", "he", "Ġthe", ...)
 * with their merges, then the DeepSeek special tokens <｜begin▁of▁sentence｜> (BOS),
 * <｜end▁of▁sentence｜> (EOS, also padding), <｜User｜>, <｜Assistant｜> (CONTROL, as in
 * the R1-Distill vocabulary) and <think>, </think> (USER_DEFINED). Pre-tokenizer
 * "deepseek-r1-qwen", add_bos_token true, and the DeepSeek-R1-Distill chat template.
 *
 * Threading: reentrant; no state.
 */
#ifndef DS_MODEL_VOCAB_BUILTIN_H
#define DS_MODEL_VOCAB_BUILTIN_H

#include <stdint.h>

#include "base/err.h"
#include "model/gguf.h"

/* Number of tokens the built-in vocabulary has (the model's vocab_size). */
uint32_t vocab_builtin_n_tokens(void);

/* Writes every tokenizer.* key of the built-in vocabulary to w. */
int vocab_builtin_write(struct gguf_writer *w, struct err *err);

#endif
