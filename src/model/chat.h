/*
 * chat: chat templates of the DeepSeek families, rendered in C (no Jinja engine).
 *
 * A template is chosen by recognising the GGUF's tokenizer.chat_template text
 * (chat_template_detect) or by name (chat_template_from_name, for --chat-template).
 * An unknown template is an error that lists the names that can be chosen.
 *
 * Families (exact output documented in docs/formats.md):
 *   deepseek-r1        DeepSeek-R1 (671B): generation prompt "<｜Assistant｜><think>\n"
 *   deepseek-v3        DeepSeek-V3 chat: generation prompt "<｜Assistant｜>"
 *   deepseek-r1-distill  R1-Distill-Qwen / -Llama (last system message wins)
 *   deepseek-llm       deepseek-llm-7b-chat, DeepSeek-V2 / V2-Lite ("User: ...\n\nAssistant:")
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
    const char *content; /* borrowed, NUL-terminated UTF-8 */
};

struct chat_render_opts {
    const char *bos;            /* BOS token text ("" if the model has none) */
    const char *eos;            /* EOS token text */
    bool add_generation_prompt; /* end with the assistant prefix */
    bool continue_final;        /* last message is an assistant prefix to continue
                                   (DeepSeek API `prefix: true`): rendered open, no EOS */
};

/* Recognises a GGUF chat template text; ERR_UNSUPPORTED with a message listing the
 * choosable names if it is none of ours. */
int chat_template_detect(const char *src, enum chat_template *out, struct err *err);
/* By name ("deepseek-r1", ...); ERR_NOTFOUND listing the valid names otherwise. */
int chat_template_from_name(const char *name, enum chat_template *out, struct err *err);
const char *chat_template_name(enum chat_template t);

/* Renders msgs into a malloc'ed NUL-terminated string (*out; caller frees). */
int chat_render(enum chat_template t, const struct chat_message *msgs, size_t n,
                const struct chat_render_opts *opts, char **out, size_t *out_len,
                struct err *err);

/* True when the rendered prompt leaves the model inside a reasoning block (ends with
 * "<think>\n" or "<think>"), so generated text is reasoning until </think>. */
bool chat_starts_in_reasoning(const char *rendered, size_t len);

#endif
