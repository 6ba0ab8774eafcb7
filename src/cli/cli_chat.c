/*
 * `deepseek chat [--url URL] [--api-key KEY | --api-key-file F] [--model M] [--stream]
 *                [--system TEXT] [--temperature T] [--max-tokens N] [--seed N] [--grpc]
 *                [PROMPT...]`
 *
 * A client of a running `deepseek serve` (or any OpenAI-compatible server) through
 * client/client.h, or of its gRPC API through client/grpc_client.h with --grpc; both
 * retry as the library does (docs/CLIENT.md). With a
 * PROMPT: one question, one answer, exit. Without: a conversation read line by line
 * from stdin ("> " prompt when stdin is a terminal), history kept for the session;
 * Ctrl-C during an answer stops that answer and returns to the prompt, Ctrl-C or
 * Ctrl-D at the prompt ends the session (exit 0).
 *
 * Reasoning (R1 family) is printed before the answer with every line prefixed
 * "[thinking] " (and dimmed on a terminal), so it cannot be mistaken for the answer.
 * Model text is data: control bytes other than newline and tab are shown as '?', so
 * an answer cannot drive the terminal.
 *
 * The key is read from --api-key-file (first line) or --api-key; it is never printed.
 * Exit: 0 answered; 1 the request failed (the last error on stderr); 2 usage;
 * 130 one-shot cancelled by Ctrl-C.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "client/client.h"
#include "client/grpc_client.h"
#include "config/config.h"

#define KEY_FILE_MAX 4096

struct chat_opts {
    char url[256];
    const char *key, *key_file, *model, *system;
    bool stream, grpc, url_given;
    struct client_params p;
    char *prompt; /* the positionals joined; owned */
};

/* The terminal side of an answer: where reasoning stops and the answer starts. */
struct printer {
    bool tty, in_reasoning, line_start, any_output;
};

/* The session's connection: the REST client, or the gRPC one with --grpc. */
struct conn {
    struct client *rest;
    struct grpc_client *grpc;
};

static volatile sig_atomic_t g_sigint;
static volatile sig_atomic_t g_in_call;
static struct conn *volatile g_conn;

/* Ctrl-C: stops the answer in progress; at the prompt, interrupts the read. */
static void on_sigint(int sig)
{
    (void)sig;
    g_sigint = 1;
    if (g_in_call && g_conn && g_conn->rest)
        client_cancel(g_conn->rest);
    else if (g_in_call && g_conn && g_conn->grpc)
        grpc_client_cancel(g_conn->grpc);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek chat [options] [PROMPT...]\n"
            "  --url URL           server root or base URL ending in /v1\n"
            "                      (default http://127.0.0.1:PORT, PORT the port setting);\n"
            "                      with --grpc: host:port or http://host:port (default\n"
            "                      127.0.0.1:GRPC_PORT, the grpc-port setting, 50051)\n"
            "  --api-key KEY       API key (visible to other users in ps; prefer a file)\n"
            "  --api-key-file F    read the key from the first line of F\n"
            "  --model M           model id (default: the server's)\n"
            "  --stream            print the answer as it is generated\n"
            "  --system TEXT       a system message before the conversation\n"
            "  --temperature T, --max-tokens N, --seed N   sampling (default: server's)\n"
            "  --grpc              use the gRPC API (DeepSeekService over cleartext HTTP/2)\n"
            "                      instead of REST; same options and output (but --seed 0,\n"
            "                      which gRPC cannot send)\n\n"
            "With PROMPT: one answer, then exit. Without: a conversation on stdin; Ctrl-C\n"
            "stops an answer, Ctrl-C or Ctrl-D at the prompt ends it. Connection errors,\n"
            "429 and 503 (gRPC: UNAVAILABLE, RESOURCE_EXHAUSTED) are retried (3 attempts,\n"
            "the server's Retry-After honoured): docs/CLIENT.md.\n");
}

static int parse_number(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "deepseek chat: %s needs a number in %g..%g\n", flag, lo, hi);
        return 2;
    }
    *out = v;
    return 0;
}

/* Appends one prompt word (positionals are joined with spaces). */
static int add_word(struct chat_opts *o, const char *w)
{
    size_t old = o->prompt ? strlen(o->prompt) : 0, n = old + strlen(w) + 2;
    char *p = realloc(o->prompt, n);
    if (!p)
        return 1;
    snprintf(p + old, n - old, "%s%s", old ? " " : "", w);
    o->prompt = p;
    return 0;
}

/* An option with a value (v, NULL when missing). 0, 2, or -1: not such an option. */
static int value_opt(struct chat_opts *o, const char *a, const char *v)
{
    double d = 0;
    int rc = 0;
    if (strcmp(a, "--url") && strcmp(a, "--api-key") && strcmp(a, "--api-key-file") &&
        strcmp(a, "--model") && strcmp(a, "--system") && strcmp(a, "--temperature") &&
        strcmp(a, "--max-tokens") && strcmp(a, "--seed"))
        return -1;
    if (!v) {
        fprintf(stderr, "deepseek chat: %s needs a value\n", a);
        return 2;
    }
    if (!strcmp(a, "--url")) {
        o->url_given = true;
        if (snprintf(o->url, sizeof o->url, "%s", v) >= (int)sizeof o->url) {
            fprintf(stderr, "deepseek chat: --url is too long\n");
            return 2;
        }
    } else if (!strcmp(a, "--api-key"))
        o->key = v;
    else if (!strcmp(a, "--api-key-file"))
        o->key_file = v;
    else if (!strcmp(a, "--model"))
        o->model = o->p.model = v;
    else if (!strcmp(a, "--system"))
        o->system = v;
    else if (!strcmp(a, "--temperature"))
        rc = parse_number(a, v, 0, 2, &o->p.temperature);
    else if (!strcmp(a, "--max-tokens") && !(rc = parse_number(a, v, 1, 1e9, &d)))
        o->p.max_tokens = (int)d;
    else if (!strcmp(a, "--seed") && !(rc = parse_number(a, v, 0, 9e15, &d))) {
        o->p.seed = (long long)d;
        o->p.has_seed = true;
    }
    return rc;
}

/* 0, 1 (no memory), 2 (usage) or 3 (--help printed). Options may follow words. */
static int parse_args(struct chat_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    client_params_default(&o->p);
    struct config cfg;
    bool have_cfg = config_init_defaults(&cfg) == 0;
    if (have_cfg)
        snprintf(o->url, sizeof o->url, "http://127.0.0.1:%lld", (long long)cfg.port);
    bool words_only = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (words_only || a[0] != '-' || !a[1]) {
            if (add_word(o, a))
                return 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 3;
        } else if (!strcmp(a, "--"))
            words_only = true;
        else if (!strcmp(a, "--stream"))
            o->stream = o->p.stream = true;
        else if (!strcmp(a, "--grpc"))
            o->grpc = true;
        else if ((rc = value_opt(o, a, i + 1 < argc ? argv[i + 1] : NULL)) == 0)
            i++;
        else if (rc == -1) {
            fprintf(stderr, "deepseek chat: unknown option %s (see --help)\n", a);
            return 2;
        } else
            return rc;
    }
    if (o->grpc && !o->url_given) /* 0 (no listener) would only fail to connect */
        snprintf(o->url, sizeof o->url, "127.0.0.1:%lld",
                 have_cfg && cfg.grpc_port > 0 ? (long long)cfg.grpc_port
                                               : (long long)GRPC_CLIENT_DEFAULT_PORT);
    return 0;
}

/* The first line of path, trimmed, into key[KEY_FILE_MAX]. 0 or 1 (message printed,
 * never the file's content). */
static int read_key_file(const char *path, char *key)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "deepseek chat: --api-key-file %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (!fgets(key, KEY_FILE_MAX, f))
        key[0] = '\0';
    fclose(f);
    size_t n = strlen(key);
    while (n && strchr("\r\n \t", key[n - 1]))
        key[--n] = '\0';
    size_t lead = strspn(key, " \t");
    memmove(key, key + lead, n - lead + 1);
    if (!key[0]) {
        fprintf(stderr, "deepseek chat: --api-key-file %s: the first line is empty\n", path);
        return 1;
    }
    return 0;
}

/* Writes model text, control bytes (but newline and tab) shown as '?'. */
static void put_text(struct printer *pr, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (pr->in_reasoning && pr->line_start)
            fputs("[thinking] ", stdout);
        bool ctrl = (ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f;
        putchar(ctrl ? '?' : ch);
        pr->line_start = ch == '\n';
    }
    pr->any_output = pr->any_output || n > 0;
}

/* on_delta: reasoning (prefixed, dimmed on a tty), then the answer on its own line. */
static int print_delta(void *user, enum client_part part, const char *text, size_t len)
{
    struct printer *pr = user;
    bool reasoning = part == CLIENT_PART_REASONING;
    if (reasoning && !pr->in_reasoning) {
        if (pr->tty)
            fputs("\033[2m", stdout);
        pr->in_reasoning = true;
    } else if (!reasoning && pr->in_reasoning) {
        if (pr->tty)
            fputs("\033[0m", stdout);
        if (!pr->line_start)
            putchar('\n');
        pr->in_reasoning = false;
        pr->line_start = true;
    }
    put_text(pr, text, len);
    fflush(stdout);
    return 0;
}

/* Ends an answer's output: colours off, a final newline. */
static void end_answer(struct printer *pr)
{
    if (pr->in_reasoning && pr->tty)
        fputs("\033[0m", stdout);
    if (pr->any_output && !pr->line_start)
        putchar('\n');
    fflush(stdout);
    *pr = (struct printer){.tty = pr->tty, .line_start = true};
}

static void on_retry(void *arg, const struct client_retry_info *r)
{
    (void)arg;
    int n = (int)strlen(r->message);
    if (n && r->message[n - 1] == '.')
        n--; /* "... in Retry-After.; retrying" reads badly */
    fprintf(stderr, "deepseek chat: %.*s; retrying in %.3g s%s (attempt %d of %d)\n", n,
            r->message, r->wait_s, r->from_server ? " as the server asked (Retry-After)" : "",
            r->attempt + 1, r->attempts);
}

/* One request; prints the answer. 0, 1 (failed, message printed) or 130 (Ctrl-C).
 * *answer (if asked for) takes the answer's text on 0. */
static int ask(struct conn *c, struct printer *pr, const struct client_message *m, size_t n,
               const struct client_params *p, char **answer)
{
    struct client_result res;
    struct err e = {0};
    g_in_call = 1;
    int rc = c->grpc ? grpc_client_chat(c->grpc, m, n, p, print_delta, pr, &res, &e)
                     : client_chat(c->rest, m, n, p, print_delta, pr, &res, &e);
    g_in_call = 0;
    end_answer(pr);
    if (rc == CLIENT_ERR_CANCELLED)
        fprintf(stderr, "[cancelled]\n");
    else if (rc)
        fprintf(stderr, "deepseek chat: %s\n", e.msg);
    if (rc == 0 && answer) {
        *answer = res.content;
        res.content = NULL;
    }
    client_result_free(&res);
    return rc == 0 ? 0 : rc == CLIENT_ERR_CANCELLED ? 130 : 1;
}

/* The conversation so far; texts[i] is the owned copy behind m[i].content. */
struct history {
    struct client_message *m;
    char **texts;
    size_t n, cap;
};

/* Appends a turn, taking text. 0 or 1 (no memory; text freed). */
static int history_push(struct history *h, const char *role, char *text)
{
    if (!text)
        return 1;
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 16;
        struct client_message *m = realloc(h->m, cap * sizeof(*m));
        if (m)
            h->m = m;
        char **t = m ? realloc(h->texts, cap * sizeof(*t)) : NULL;
        if (!t) {
            free(text);
            return 1;
        }
        h->texts = t;
        h->cap = cap;
    }
    h->m[h->n] = (struct client_message){role, text};
    h->texts[h->n++] = text;
    return 0;
}

static void history_pop(struct history *h)
{
    if (h->n)
        free(h->texts[--h->n]);
}

static void history_free(struct history *h)
{
    while (h->n)
        history_pop(h);
    free(h->m);
    free(h->texts);
}

/* Reads a question; false at EOF, on Ctrl-C, or for /exit and /quit. */
static bool read_question(bool tty_in, char **line, size_t *cap)
{
    for (;;) {
        if (tty_in) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        g_sigint = 0;
        ssize_t n = getline(line, cap, stdin);
        if (n < 0 || g_sigint) {
            if (tty_in)
                putchar('\n');
            return false;
        }
        while (n && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r'))
            (*line)[--n] = '\0';
        if (!strcmp(*line, "/exit") || !strcmp(*line, "/quit"))
            return false;
        if (n)
            return true;
    }
}

/* The interactive session. 0, or 1 when a question failed and stdin is not a
 * terminal (a script learns of it by the exit status; the session stops there). */
static int converse(struct conn *c, const struct chat_opts *o)
{
    bool tty_in = isatty(STDIN_FILENO);
    struct printer pr = {.tty = isatty(STDOUT_FILENO), .line_start = true};
    struct history h = {0};
    int failed = o->system ? history_push(&h, "system", strdup(o->system)) : 0;
    char *line = NULL;
    size_t cap = 0;
    if (tty_in)
        fprintf(stderr, "Chatting with %s%s. Ctrl-C stops an answer; Ctrl-D or /exit ends.\n",
                o->url, o->grpc ? " (gRPC)" : "");
    while (!failed && read_question(tty_in, &line, &cap)) {
        char *answer = NULL;
        if (history_push(&h, "user", strdup(line))) {
            failed = 1;
            break;
        }
        int rc = ask(c, &pr, h.m, h.n, &o->p, &answer);
        clearerr(stdout); /* a Ctrl-C may have interrupted a write */
        if (rc == 0) {
            failed = history_push(&h, "assistant", answer);
        } else {
            history_pop(&h); /* unanswered: leave the question out of the history */
            failed = rc == 1 && !tty_in;
        }
    }
    free(line);
    history_free(&h);
    return failed ? 1 : 0;
}

static int one_shot(struct conn *c, const struct chat_opts *o)
{
    struct client_message m[2];
    size_t n = 0;
    if (o->system)
        m[n++] = (struct client_message){"system", o->system};
    m[n++] = (struct client_message){"user", o->prompt};
    struct printer pr = {.tty = isatty(STDOUT_FILENO), .line_start = true};
    return ask(c, &pr, m, n, &o->p, NULL);
}

/* Builds the client from the options into c. 0, or 1 after printing why. */
static int open_client(const struct chat_opts *o, struct conn *c)
{
    char key[KEY_FILE_MAX] = "";
    if (o->key_file && read_key_file(o->key_file, key))
        return 1;
    struct client_opts co;
    client_opts_default(&co);
    co.on_retry = on_retry;
    struct err e = {0};
    const char *k = o->key_file ? key : o->key;
    if (o->grpc)
        c->grpc = grpc_client_new(o->url, k, &co, &e);
    else
        c->rest = client_new(o->url, k, &co, &e);
    explicit_bzero(key, sizeof key);
    if (c->grpc || c->rest)
        return 0;
    fprintf(stderr, "deepseek chat: %s\n", e.msg);
    return 1;
}

int cli_chat(int argc, char **argv)
{
    struct chat_opts o;
    int rc = parse_args(&o, argc, argv);
    if (!rc && o.key && o.key_file) {
        fprintf(stderr, "deepseek chat: give --api-key or --api-key-file, not both\n");
        rc = 2;
    }
    struct conn c = {0};
    if (!rc)
        rc = open_client(&o, &c);
    if (rc) {
        free(o.prompt);
        return rc == 3 ? 0 : rc;
    }
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: Ctrl-C must interrupt a read */
    sigemptyset(&sa.sa_mask);
    g_conn = &c;
    sigaction(SIGINT, &sa, &old);
    rc = o.prompt ? one_shot(&c, &o) : converse(&c, &o);
    sigaction(SIGINT, &old, NULL);
    g_conn = NULL;
    client_free(c.rest);
    grpc_client_free(c.grpc);
    free(o.prompt);
    return rc;
}
