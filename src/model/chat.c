/*
 * chat: the DeepSeek chat templates written out by hand. Each family below is the
 * message loop of its Jinja template (research/serving.md §3) minus the tool-call
 * branches; docs/chat-templates.md shows the rendered forms.
 */
#include "model/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* DeepSeek's special tokens use U+FF5C (fullwidth bar) and U+2581 (lower one-eighth
 * block), not ASCII '|' and '_'. */
#define FW_BAR        "\xef\xbd\x9c"
#define SP_MARK       "\xe2\x96\x81"
#define TOK_USER      "<" FW_BAR "User" FW_BAR ">"
#define TOK_ASSISTANT "<" FW_BAR "Assistant" FW_BAR ">"
#define TOK_EOS       "<" FW_BAR "end" SP_MARK "of" SP_MARK "sentence" FW_BAR ">"
#define THINK_END     "</think>"

#define NAMES_HINT                                                                                 \
    "choose one with --chat-template NAME (deepseek-r1, deepseek-v3, deepseek-r1-distill, "        \
    "deepseek-llm)"

/* What tells the families apart. deepseek-llm has its own loop (render_llm) and uses
 * only name and gen here. */
struct family {
    const char *name;
    bool join_systems; /* all system messages joined by "\n\n" (else the last one wins) */
    bool strip_think;  /* past assistant turns keep only the text after the last </think> */
    const char *gen;   /* generation prompt */
};

static const struct family families[CHAT_TEMPLATE_COUNT] = {
    [CHAT_TEMPLATE_DEEPSEEK_R1] = {"deepseek-r1", true, true, TOK_ASSISTANT "<think>\n"},
    [CHAT_TEMPLATE_DEEPSEEK_V3] = {"deepseek-v3", true, false, TOK_ASSISTANT},
    [CHAT_TEMPLATE_DEEPSEEK_R1_DISTILL] = {"deepseek-r1-distill", false, true,
                                           TOK_ASSISTANT "<think>\n"},
    [CHAT_TEMPLATE_DEEPSEEK_LLM] = {"deepseek-llm", false, false, "Assistant:"},
};

const char *chat_template_name(enum chat_template t)
{
    if ((unsigned)t >= CHAT_TEMPLATE_COUNT) return "unknown";
    return families[t].name;
}

int chat_template_from_name(const char *name, enum chat_template *out, struct err *err)
{
    if (!out) return err_set(err, ERR_INVALID, "chat_template_from_name: out is NULL");
    for (int i = 0; i < CHAT_TEMPLATE_COUNT; i++) {
        if (name && strcmp(name, families[i].name) == 0) {
            *out = (enum chat_template)i;
            return 0;
        }
    }
    return err_set(err, ERR_NOTFOUND, "unknown chat template name '%s'; " NAMES_HINT,
                   name ? name : "(null)");
}

int chat_template_choose(const char *name, const char *gguf_template, enum chat_template *out,
                         struct err *err)
{
    if (name && name[0])
        return chat_template_from_name(name, out, err);
    return chat_template_detect(gguf_template, out, err);
}

/*
 * Detection looks for the distinctive pieces of each template text rather than whole
 * strings, so that whitespace-control variants ({%- -%}) and the tool-call fixes of
 * copies (llama.cpp's) are recognised too:
 *   deepseek-llm  the assistant line 'Assistant: ' + message['content'] + eos_token
 *   the <｜User｜>/<｜Assistant｜>/<｜end▁of▁sentence｜> family, told apart by
 *     '<｜Assistant｜></think>'  V3.1+ hybrid thinking: not supported (different rules)
 *     '</think>' + is_first_sp  R1 (reasoning; system messages are accumulated)
 *     '</think>' alone          R1-Distill (reasoning; last system message wins)
 *     neither                   V3
 */
int chat_template_detect(const char *src, enum chat_template *out, struct err *err)
{
    if (!out) return err_set(err, ERR_INVALID, "chat_template_detect: out is NULL");
    if (!src)
        return err_set(err, ERR_NOTFOUND, "model has no tokenizer.chat_template; " NAMES_HINT);
    if (strstr(src, "'Assistant: ' + message['content'] + eos_token")) {
        *out = CHAT_TEMPLATE_DEEPSEEK_LLM;
        return 0;
    }
    bool user_asst = strstr(src, TOK_USER) && strstr(src, TOK_ASSISTANT) && strstr(src, TOK_EOS);
    if (user_asst && strstr(src, "'" TOK_ASSISTANT THINK_END "'"))
        return err_set(err, ERR_UNSUPPORTED,
                       "chat template is a DeepSeek-V3.1-style hybrid-thinking template, "
                       "which is not supported; " NAMES_HINT);
    if (!user_asst) return err_set(err, ERR_UNSUPPORTED, "unknown chat template; " NAMES_HINT);
    if (!strstr(src, THINK_END))
        *out = CHAT_TEMPLATE_DEEPSEEK_V3;
    else if (strstr(src, "is_first_sp"))
        *out = CHAT_TEMPLATE_DEEPSEEK_R1;
    else
        *out = CHAT_TEMPLATE_DEEPSEEK_R1_DISTILL;
    return 0;
}

bool chat_starts_in_reasoning(const char *rendered, size_t len)
{
    static const char open_nl[] = "<think>\n";
    static const char open[] = "<think>";
    if (!rendered) return false;
    if (len >= sizeof open_nl - 1 &&
        memcmp(rendered + len - (sizeof open_nl - 1), open_nl, sizeof open_nl - 1) == 0)
        return true;
    return len >= sizeof open - 1 &&
           memcmp(rendered + len - (sizeof open - 1), open, sizeof open - 1) == 0;
}

/* ---- output buffer ---------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom; /* sticky: later appends are no-ops, checked once at the end */
    bool want_spans;
    struct chat_span *spans; /* where message contents landed, when want_spans */
    size_t n_spans, cap_spans;
};

static void sbuf_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (n >= SIZE_MAX / 2 - b->len) {
        b->oom = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sbuf_puts(struct sbuf *b, const char *s)
{
    sbuf_put(b, s, strlen(s));
}

/* Appends message content (caller-supplied text) and records its byte range, so the
 * tokenizer can refuse to match control tokens inside it. */
static void sbuf_content(struct sbuf *b, const char *s)
{
    size_t off = b->len, n = strlen(s);
    sbuf_put(b, s, n);
    if (b->oom || !b->want_spans || n == 0) return;
    if (b->n_spans == b->cap_spans) {
        size_t cap = b->cap_spans ? 2 * b->cap_spans : 8;
        struct chat_span *p = realloc(b->spans, cap * sizeof *p);
        if (!p) {
            b->oom = true;
            return;
        }
        b->spans = p;
        b->cap_spans = cap;
    }
    b->spans[b->n_spans++] = (struct chat_span){off, n};
}

/* ---- rendering -------------------------------------------------------------------- */

/* Jinja's content.split('</think>')[-1]: the text after the last </think>, or all. */
static const char *after_last_think_end(const char *s)
{
    const char *rest = s;
    for (const char *p = strstr(s, THINK_END); p; p = strstr(p + 1, THINK_END))
        rest = p + strlen(THINK_END);
    return rest;
}

/* R1, V3 and R1-Distill: the system prompt goes first (after BOS) with no separator,
 * then the turns in order; system messages do not appear in the loop. */
static void render_user_assistant(const struct family *f, const struct chat_message *msgs, size_t n,
                                  const struct chat_render_opts *opts, struct sbuf *b)
{
    const char *last_system = NULL;
    bool first_system = true;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].role != CHAT_ROLE_SYSTEM) continue;
        last_system = msgs[i].content;
        if (!f->join_systems) continue;
        if (!first_system) sbuf_puts(b, "\n\n");
        sbuf_content(b, msgs[i].content);
        first_system = false;
    }
    if (!f->join_systems && last_system) sbuf_content(b, last_system);

    for (size_t i = 0; i < n; i++) {
        const char *c = msgs[i].content;
        bool open = opts->continue_final && i + 1 == n;
        if (msgs[i].role == CHAT_ROLE_USER) {
            sbuf_puts(b, TOK_USER);
            sbuf_content(b, c);
        } else if (msgs[i].role == CHAT_ROLE_ASSISTANT) {
            sbuf_puts(b, TOK_ASSISTANT);
            sbuf_content(b, f->strip_think && !open ? after_last_think_end(c) : c);
            if (!open) sbuf_puts(b, TOK_EOS);
        }
    }
}

/* deepseek-llm / V2: every message in place, system text included. */
static void render_llm(const struct chat_message *msgs, size_t n,
                       const struct chat_render_opts *opts, struct sbuf *b)
{
    for (size_t i = 0; i < n; i++) {
        const char *c = msgs[i].content;
        switch (msgs[i].role) {
        case CHAT_ROLE_USER:
            sbuf_puts(b, "User: ");
            sbuf_content(b, c);
            sbuf_puts(b, "\n\n");
            break;
        case CHAT_ROLE_ASSISTANT:
            sbuf_puts(b, "Assistant: ");
            sbuf_content(b, c);
            if (!(opts->continue_final && i + 1 == n)) sbuf_puts(b, opts->eos);
            break;
        case CHAT_ROLE_SYSTEM:
            sbuf_content(b, c);
            sbuf_puts(b, "\n\n");
            break;
        }
    }
}

static int check_args(enum chat_template t, const struct chat_message *msgs, size_t n,
                      const struct chat_render_opts *opts, struct err *err)
{
    if ((unsigned)t >= CHAT_TEMPLATE_COUNT)
        return err_set(err, ERR_INVALID, "chat_render: template %d out of range", (int)t);
    if (!opts || (n > 0 && !msgs))
        return err_set(err, ERR_INVALID, "chat_render: %s is NULL", opts ? "msgs" : "opts");
    if (t == CHAT_TEMPLATE_DEEPSEEK_LLM && !opts->eos)
        return err_set(err, ERR_INVALID, "chat_render: deepseek-llm needs the EOS text");
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)msgs[i].role > CHAT_ROLE_ASSISTANT)
            return err_set(err, ERR_INVALID, "chat message %zu: role %d out of range", i,
                           (int)msgs[i].role);
        if (!msgs[i].content)
            return err_set(err, ERR_INVALID, "chat message %zu: content is NULL", i);
    }
    if (opts->continue_final && (n == 0 || msgs[n - 1].role != CHAT_ROLE_ASSISTANT))
        return err_set(err, ERR_INVALID,
                       "continue_final: the last message must be an assistant message");
    return 0;
}

int chat_render(enum chat_template t, const struct chat_message *msgs, size_t n,
                const struct chat_render_opts *opts, char **out, size_t *out_len, struct err *err)
{
    return chat_render_spans(t, msgs, n, opts, out, out_len, NULL, NULL, err);
}

int chat_render_spans(enum chat_template t, const struct chat_message *msgs, size_t n,
                      const struct chat_render_opts *opts, char **out, size_t *out_len,
                      struct chat_span **spans, size_t *n_spans, struct err *err)
{
    if (!out) return err_set(err, ERR_INVALID, "chat_render: out is NULL");
    *out = NULL;
    if (out_len) *out_len = 0;
    if (spans) *spans = NULL;
    if (n_spans) *n_spans = 0;
    if (!spans != !n_spans)
        return err_set(err, ERR_INVALID, "chat_render: spans and n_spans go together");
    int rc = check_args(t, msgs, n, opts, err);
    if (rc < 0) return rc;

    struct sbuf b = {.want_spans = spans != NULL};
    sbuf_put(&b, "", 0); /* an empty conversation still yields "" */
    sbuf_puts(&b, opts->bos ? opts->bos : "");
    if (t == CHAT_TEMPLATE_DEEPSEEK_LLM)
        render_llm(msgs, n, opts, &b);
    else
        render_user_assistant(&families[t], msgs, n, opts, &b);
    if (opts->add_generation_prompt && !opts->continue_final) sbuf_puts(&b, families[t].gen);
    if (b.oom) {
        free(b.p);
        free(b.spans);
        return err_set(err, ERR_NOMEM, "chat_render: out of memory for the prompt");
    }
    *out = b.p;
    if (out_len) *out_len = b.len;
    if (spans) {
        *spans = b.spans;
        *n_spans = b.n_spans;
    }
    return 0;
}
