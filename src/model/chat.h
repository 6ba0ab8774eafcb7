/*
 * chat: chat templates of the DeepSeek families, rendered in C (no Jinja engine).
 *
 * A template is chosen by recognising the GGUF's tokenizer.chat_template text
 * (chat_template_detect) or by name (chat_template_from_name, for --chat-template).
 * An unknown template is an error that lists the names that can be chosen.
 *
 * Families (exact output and detection rules in docs/chat-templates.md):
 *   deepseek-r1          DeepSeek-R1 (671B): system messages joined by "\n\n", past
 *                        assistant turns keep only the text after the last </think>,
 *                        generation prompt "<｜Assistant｜><think>\n"
 *   deepseek-v3          DeepSeek-V3 chat: as R1 but assistant text kept whole and
 *                        generation prompt "<｜Assistant｜>"
 *   deepseek-r1-distill  R1-Distill-Qwen / -Llama: as R1 but the last system message wins
 *   deepseek-llm         deepseek-llm-7b-chat, DeepSeek-V2 / V2-Lite
 *                        ("User: ...\n\nAssistant: ...<eos>", prompt "Assistant:")
 *
 * Messages carry only role and content: tool calls and tool outputs are not rendered
 * (out of scope). The R1/V3/distill families write the literal <｜end▁of▁sentence｜>
 * after assistant turns, as their templates do; only deepseek-llm uses opts->eos.
 *
 * Threading: pure functions; any thread.
 */
#ifndef DS_MODEL_CHAT_H
#define DS_MODEL_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

enum chat_template {
    CHAT_TEMPLATE_DEEPSEEK_R1,
    CHAT_TEMPLATE_DEEPSEEK_V3,
    CHAT_TEMPLATE_DEEPSEEK_R1_DISTILL,
    CHAT_TEMPLATE_DEEPSEEK_LLM,
    CHAT_TEMPLATE_COUNT
};

enum chat_role { CHAT_ROLE_SYSTEM, CHAT_ROLE_USER, CHAT_ROLE_ASSISTANT };

struct chat_message {
    enum chat_role role;
    const char *content; /* borrowed, NUL-terminated UTF-8; "" is fine, NULL is ERR_INVALID */
};

struct chat_render_opts {
    const char *bos;            /* BOS token text; "" or NULL if the model has none */
    const char *eos;            /* EOS token text; required (non-NULL) by deepseek-llm only */
    bool add_generation_prompt; /* end with the assistant prefix */
    bool continue_final;        /* last message is an assistant prefix to continue
                                   (DeepSeek API `prefix: true`): rendered open, verbatim
                                   (no </think> stripping), no EOS, no generation prompt
                                   even if add_generation_prompt is set */
};

/* Recognises a GGUF chat template text. ERR_UNSUPPORTED with a message listing the
 * choosable names if it is none of ours; ERR_NOTFOUND (same hint) if src is NULL, i.e.
 * the model has no template. */
int chat_template_detect(const char *src, enum chat_template *out, struct err *err);
/* By name ("deepseek-r1", ...); ERR_NOTFOUND listing the valid names otherwise. */
int chat_template_from_name(const char *name, enum chat_template *out, struct err *err);
/* The name of t, or "unknown" for a value out of range. */
const char *chat_template_name(enum chat_template t);
/* The template to use: `name` (the --chat-template setting) when non-empty, otherwise
 * the one recognised in `gguf_template` (tokenizer.chat_template, may be NULL). */
int chat_template_choose(const char *name, const char *gguf_template, enum chat_template *out,
                         struct err *err);

/* Renders msgs into a malloc'ed NUL-terminated string (*out, caller frees; *out_len if
 * out_len is non-NULL). ERR_INVALID for a NULL content, a bad role, or continue_final
 * without a final assistant message; *out is NULL on failure. */
int chat_render(enum chat_template t, const struct chat_message *msgs, size_t n,
                const struct chat_render_opts *opts, char **out, size_t *out_len, struct err *err);

/* A byte range of the rendered prompt that holds message content (caller text). */
struct chat_span {
    size_t off, len;
};

/* As chat_render, also returning where each message's content landed (*spans is
 * malloc'ed, caller frees; NULL when there are none). Callers tokenize the prompt with
 * special tokens recognised everywhere except inside these spans, so a user who types
 * "<｜Assistant｜>" cannot forge a turn. spans and n_spans are both NULL or both set. */
int chat_render_spans(enum chat_template t, const struct chat_message *msgs, size_t n,
                      const struct chat_render_opts *opts, char **out, size_t *out_len,
                      struct chat_span **spans, size_t *n_spans, struct err *err);

/* True when the rendered prompt leaves the model inside a reasoning block (ends with
 * "<think>\n" or "<think>"), so generated text is reasoning until </think>. */
bool chat_starts_in_reasoning(const char *rendered, size_t len);

#endif
