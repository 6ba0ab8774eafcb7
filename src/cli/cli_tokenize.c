/*
 * cli_tokenize: `deepseek tokenize -m MODEL.gguf [--add-bos] [--parse-special]
 * [--chat [--system TEXT] [--chat-template NAME]] [--pieces] (TEXT | --file F)`.
 * Prints the token ids on one line, space-separated, or with --pieces one
 * "id<TAB>piece" line per token (piece bytes escaped C-style). --chat shows exactly
 * what `deepseek generate --chat` feeds the model: TEXT as one user turn of the chat
 * template, control tokens recognised only outside the message contents.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/generate.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

struct tok_opts {
    const char *model, *file, *text, *system, *chat_template;
    bool add_bos, parse_special, pieces, chat;
};

static void tok_usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek tokenize -m MODEL.gguf [--add-bos] [--parse-special] [--pieces]\n"
            "                         [--chat [--system TEXT] [--chat-template NAME]]\n"
            "                         (TEXT | --file FILE)\n"
            "  -m, --model FILE     GGUF file whose tokenizer.* keys are used\n"
            "  --add-bos            prepend the model's BOS token\n"
            "  --parse-special      recognise special-token text such as <｜User｜>\n"
            "  --chat               TEXT as one user turn of the model's chat template (with\n"
            "                       the generation prompt); special text in it stays text\n"
            "  --system TEXT        with --chat: a system message first\n"
            "  --chat-template NAME with --chat: this template instead of the model's\n"
            "  --pieces             print 'id<TAB>piece' per token instead of the id line\n"
            "  -f, --file FILE      tokenize the bytes of FILE instead of TEXT\n");
}

/* 0 on success, 1 after --help, -1 on a usage error (message printed). */
static int tok_parse(int argc, char **argv, struct tok_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            tok_usage(stdout);
            return 1;
        } else if (!strcmp(a, "--add-bos")) {
            o->add_bos = true;
        } else if (!strcmp(a, "--parse-special")) {
            o->parse_special = true;
        } else if (!strcmp(a, "--chat")) {
            o->chat = true;
        } else if (!strcmp(a, "--system") && has_val) {
            o->system = argv[++i];
        } else if (!strcmp(a, "--chat-template") && has_val) {
            o->chat_template = argv[++i];
        } else if (!strcmp(a, "--pieces")) {
            o->pieces = true;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_val) {
            o->model = argv[++i];
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && has_val) {
            o->file = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "deepseek tokenize: unknown option or missing value: %s\n", a);
            return -1;
        } else if (o->text) {
            fprintf(stderr, "deepseek tokenize: more than one TEXT argument\n");
            return -1;
        } else {
            o->text = a;
        }
    }
    if (!o->model) {
        fprintf(stderr, "deepseek tokenize: no model given (-m MODEL.gguf)\n");
        return -1;
    }
    if (!o->text == !o->file) {
        fprintf(stderr, "deepseek tokenize: give exactly one of TEXT or --file FILE\n");
        return -1;
    }
    if ((o->system || o->chat_template) && !o->chat) {
        fprintf(stderr, "deepseek tokenize: --system and --chat-template need --chat\n");
        return -1;
    }
    if (o->chat && (o->add_bos || o->parse_special)) {
        fprintf(stderr, "deepseek tokenize: --chat decides BOS and special tokens itself; "
                "drop --add-bos / --parse-special\n");
        return -1;
    }
    return 0;
}

static char *tok_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *p = realloc(buf, cap *= 2);
        if (!p)
            free(buf);
        buf = p;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

static void tok_print_piece(const struct tokenizer *t, int32_t id)
{
    char small[256];
    size_t n = tokenizer_piece(t, id, small, sizeof small);
    char *p = n <= sizeof small ? small : malloc(n);
    if (!p)
        return;
    if (p != small)
        tokenizer_piece(t, id, p, n);
    printf("%d\t", id);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c == '\\')
            fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('\n');
    if (p != small)
        free(p);
}

/* One user turn (after an optional system message) through the chat template. */
static int tok_chat(const struct tok_opts *o, const struct tokenizer *t, const char *text,
                    size_t len, int32_t **ids, size_t *n, struct err *err)
{
    if (memchr(text, '\0', len))
        return err_set(err, ERR_INVALID, "--chat: the text contains a NUL byte");
    char *user = strndup(text, len);
    if (!user)
        return err_set(err, ERR_NOMEM, "out of memory");
    struct chat_message msgs[2] = {{CHAT_ROLE_SYSTEM, o->system}, {CHAT_ROLE_USER, user}};
    size_t first = o->system ? 0 : 1;
    int rc = generate_encode_chat(t, o->chat_template ? o->chat_template : "", msgs + first,
                                  2 - first, ids, n, err);
    free(user);
    return rc;
}

static int tok_run(const struct tok_opts *o, const struct tokenizer *t)
{
    size_t len = 0;
    char *owned = NULL;
    const char *text = o->text;
    if (o->file) {
        owned = tok_read_file(o->file, &len);
        if (!owned) {
            fprintf(stderr, "deepseek tokenize: cannot read %s\n", o->file);
            return 2;
        }
        text = owned;
    } else {
        len = strlen(text);
    }
    int32_t *ids;
    size_t n;
    struct err err = {0};
    int rc = o->chat ? tok_chat(o, t, text, len, &ids, &n, &err)
                     : tokenizer_encode(t, text, len, (o->add_bos ? TOKENIZER_ADD_BOS : 0) |
                                        (o->parse_special ? TOKENIZER_PARSE_SPECIAL : 0),
                                        &ids, &n, &err);
    free(owned);
    if (rc) {
        fprintf(stderr, "deepseek tokenize: %s\n", err.msg);
        return rc == ERR_NOMEM || rc == ERR_INTERNAL ? 1 : 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (o->pieces)
            tok_print_piece(t, ids[i]);
        else
            printf(i ? " %d" : "%d", ids[i]);
    }
    if (!o->pieces)
        putchar('\n');
    free(ids);
    return fflush(stdout) == 0 ? 0 : 1;
}

int cli_tokenize(int argc, char **argv)
{
    struct tok_opts o = {0};
    int rc = tok_parse(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct err err = {0};
    struct gguf *g = NULL;
    struct tokenizer *t = NULL;
    if (gguf_open(o.model, &g, &err) != 0 || tokenizer_load(g, &t, &err) != 0) {
        fprintf(stderr, "deepseek tokenize: %s\n", err.msg);
        gguf_close(g);
        return 2;
    }
    gguf_close(g); /* the tokenizer keeps its own copies */
    rc = tok_run(&o, t);
    tokenizer_free(t);
    return rc;
}
