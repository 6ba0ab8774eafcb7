/*
 * cli_generate: `deepseek generate -m MODEL (-p TEXT | --prompt-ids ID,...) [options]`.
 * Prefills the prompt, samples up to -n tokens and streams the text to stdout (or the
 * ids with --ids); a timing summary goes to stderr. Settings (threads, kv-type,
 * ctx-size, kernels, chat-template, temperature, top-p, ...) come from the settings
 * table; the sampler flags below override them for this run. docs/USAGE.md has more.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_model.h"
#include "config/config.h"
#include "engine/generate.h"
#include "engine/stop.h"
#include "kernels/kernels.h"

struct gen_opts {
    const char *prompt, *prompt_ids, *system, *logits_out;
    const char *stop[STOP_MAX_STRINGS];
    int n_stop;
    long long n_predict;
    bool chat, ids, float_act;
    struct sampler_params sp;
};

static void gen_usage(FILE *out)
{
    fprintf(out,
        "usage: deepseek generate -m MODEL.gguf (-p TEXT | --prompt-ids ID,ID,...) [options]\n"
        "  -p, --prompt TEXT      prompt text (BOS added if the model asks; special-token\n"
        "                         text such as <｜User｜> is parsed, as llama.cpp does)\n"
        "  --prompt-ids LIST      comma-separated token ids, fed as they are\n"
        "  -n, --n-predict N      most tokens to generate (default -1: until an\n"
        "                         end-of-generation token or the context is full)\n"
        "  --chat                 render TEXT as one user turn through the chat template\n"
        "  --system TEXT          with --chat: a system message first\n"
        "  --temp T               temperature (default: the temperature setting; 0 greedy)\n"
        "  --top-k K, --min-p P, --repeat-penalty R, --seed S    sampler (default off;\n"
        "                         --top-p is the top-p setting)\n"
        "  --stop STR             stop before STR (repeatable, up to %d)\n"
        "  --ids                  print the generated ids on one line instead of text\n"
        "  --logits-out FILE      write the last prompt position's logits (n_vocab\n"
        "                         little-endian float32)\n"
        "  --quant-act            round activations as llama.cpp does (default, faster)\n"
        "  --float-act            float activations (closest to the exact model)\n"
        "Settings such as -t/--threads, --kv-type, -c/--ctx-size, --kernels,\n"
        "--chat-template, --temperature and --top-p apply too (deepseek config --help).\n",
        STOP_MAX_STRINGS);
}

/* Parses one command-specific flag with a value at argv[*i]; 1 if it was one, 0 if
 * not, -1 on a bad value (message printed). */
static int gen_parse_value(struct gen_opts *o, const char *a, const char *v)
{
    long long n;
    double d;
    if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
        o->prompt = v;
    } else if (!strcmp(a, "--prompt-ids")) {
        o->prompt_ids = v;
    } else if (!strcmp(a, "--system")) {
        o->system = v;
    } else if (!strcmp(a, "--logits-out")) {
        o->logits_out = v;
    } else if (!strcmp(a, "--stop")) {
        if (o->n_stop == STOP_MAX_STRINGS || !*v || strlen(v) > STOP_MAX_LEN) {
            fprintf(stderr, "deepseek generate: --stop: at most %d non-empty strings of up to "
                    "%d bytes\n", STOP_MAX_STRINGS, STOP_MAX_LEN);
            return -1;
        }
        o->stop[o->n_stop++] = v;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
        if (!cli_parse_long(v, -1, INT32_MAX, &o->n_predict))
            goto bad;
    } else if (!strcmp(a, "--temp")) {
        if (!cli_parse_double(v, 0, 2, &d))
            goto bad;
        o->sp.temperature = (float)d;
    } else if (!strcmp(a, "--top-k")) {
        if (!cli_parse_long(v, 0, INT32_MAX, &n))
            goto bad;
        o->sp.top_k = (int32_t)n;
    } else if (!strcmp(a, "--min-p")) {
        if (!cli_parse_double(v, 0, 1, &d))
            goto bad;
        o->sp.min_p = (float)d;
    } else if (!strcmp(a, "--repeat-penalty")) {
        if (!cli_parse_double(v, 1e-6, 10, &d))
            goto bad;
        o->sp.repetition_penalty = (float)d;
    } else if (!strcmp(a, "--seed")) {
        if (!cli_parse_long(v, 0, INT64_MAX, &n))
            goto bad;
        o->sp.has_seed = true;
        o->sp.seed = (uint64_t)n;
    } else {
        return 0;
    }
    return 1;
bad:
    fprintf(stderr, "deepseek generate: %s %s: not a valid value (see --help)\n", a, v);
    return -1;
}

/* 0 ok, 1 after --help, -1 usage error (message printed). */
static int gen_parse(int argc, char **argv, struct gen_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            gen_usage(stdout);
            return 1;
        } else if (!strcmp(a, "--chat")) {
            o->chat = true;
        } else if (!strcmp(a, "--ids")) {
            o->ids = true;
        } else if (!strcmp(a, "--float-act")) {
            o->float_act = true;
        } else if (!strcmp(a, "--quant-act")) {
            o->float_act = false;
        } else {
            int r = i + 1 < argc ? gen_parse_value(o, a, argv[i + 1]) : 0;
            if (r < 0)
                return -1;
            if (r == 0) {
                fprintf(stderr, "deepseek generate: unknown option, missing value or extra "
                        "argument: %s (see --help)\n", a);
                return -1;
            }
            i++;
        }
    }
    if (!o->prompt == !o->prompt_ids) {
        fprintf(stderr, "deepseek generate: give exactly one of -p TEXT or --prompt-ids LIST\n");
        return -1;
    }
    if ((o->chat || o->system) && !o->prompt) {
        fprintf(stderr, "deepseek generate: --chat and --system need -p TEXT\n");
        return -1;
    }
    if (o->system && !o->chat) {
        fprintf(stderr, "deepseek generate: --system needs --chat\n");
        return -1;
    }
    return 0;
}

/* "1,2, 3" -> ids; each must be < n_vocab. Returns 0, or -1 with a message printed. */
static int parse_ids(const char *s, int32_t n_vocab, int32_t **ids, size_t *n)
{
    size_t cap = strlen(s) / 2 + 1, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v)
        return -1;
    for (const char *p = s; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        char *end;
        long long x = strtoll(p, &end, 10);
        if (end == p || (*end && *end != ',' && *end != ' ') || x < 0 || x >= n_vocab) {
            int w = (int)strcspn(p, ", ");
            fprintf(stderr, "deepseek generate: --prompt-ids: '%.*s' is not a token id of this "
                    "model (0..%d)\n", w, p, n_vocab - 1);
            free(v);
            return -1;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    if (k == 0) {
        fprintf(stderr, "deepseek generate: --prompt-ids: no ids given\n");
        free(v);
        return -1;
    }
    *ids = v;
    *n = k;
    return 0;
}

/* The prompt as ids: parsed ids, chat-rendered text or raw text. 0, 2 (bad input, message
 * printed) or 1 (runtime error). */
static int gen_prompt(const struct gen_opts *o, const struct config *cfg,
                      const struct tokenizer *t, int32_t **ids, size_t *n)
{
    if (o->prompt_ids)
        return parse_ids(o->prompt_ids, tokenizer_n_vocab(t), ids, n) ? 2 : 0;
    struct err err = {0};
    int rc;
    if (o->chat) {
        struct chat_message msgs[2] = {{CHAT_ROLE_SYSTEM, o->system},
                                       {CHAT_ROLE_USER, o->prompt}};
        size_t first = o->system ? 0 : 1;
        rc = generate_encode_chat(t, cfg->chat_template, msgs + first, 2 - first, ids, n, &err);
    } else {
        rc = generate_encode_prompt(t, o->prompt, strlen(o->prompt), ids, n, &err);
    }
    if (rc)
        fprintf(stderr, "deepseek generate: %s\n", err.msg);
    return rc == 0 ? 0 : rc == ERR_NOMEM ? 1 : 2;
}

struct gen_out {
    bool ids, any;
};

static int on_token(void *ctx, int32_t id, const char *text, size_t len)
{
    struct gen_out *g = ctx;
    if (g->ids) {
        if (id >= 0)
            printf(g->any ? " %d" : "%d", id);
        g->any |= id >= 0;
    } else if (len) {
        fwrite(text, 1, len, stdout);
    }
    fflush(stdout);
    return ferror(stdout) ? 1 : 0; /* a closed pipe ends generation */
}

static int write_logits(const char *path, const float *v, int32_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    for (int32_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                              (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
        fwrite(b, 1, 4, f);
    }
    bool bad = ferror(f) != 0;
    return fclose(f) == 0 && !bad ? 0 : -1;
}

static const char *finish_name(enum generate_finish f)
{
    static const char *const names[] = {"end-of-generation token", "stop string",
                                        "-n reached", "context full", "output closed"};
    return (unsigned)f < sizeof names / sizeof names[0] ? names[f] : "?";
}

/* llama.cpp-style timing lines on stderr. */
static void print_summary(const struct generate_stats *st, const struct cli_model *cm,
                          bool float_act)
{
    double pp = st->prefill_s > 0 ? st->n_prompt / st->prefill_s : 0;
    double tg = st->decode_s > 0 ? st->n_generated / st->decode_s : 0;
    fprintf(stderr, "generate: prompt %d tokens in %.3f s (%.2f tok/s); generated %d tokens "
            "in %.3f s (%.2f tok/s)\n", st->n_prompt, st->prefill_s, pp, st->n_generated,
            st->decode_s, tg);
    fprintf(stderr, "generate: stopped: %s; seed %llu; %d threads, %s kernels, %s "
            "activations, context %d\n", finish_name(st->finish),
            (unsigned long long)st->seed, cm->n_threads, kernels_isa_name(),
            float_act ? "float" : "quantized", cm->n_ctx);
}

/* Everything after the options are parsed and the model is open. */
static int gen_run(const struct gen_opts *o, const struct config *cfg, struct cli_model *cm)
{
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = gen_prompt(o, cfg, cm->tok, &ids, &n);
    if (rc)
        return rc;
    if (n >= (size_t)cm->n_ctx) {
        fprintf(stderr, "deepseek generate: the prompt has %zu tokens; the context holds %d "
                "(prompt plus generated; see --ctx-size)\n", n, cm->n_ctx);
        free(ids);
        return 2;
    }
    struct err err = {0};
    int max_batch = n < (size_t)cfg->batch_size ? (int)n : (int)cfg->batch_size;
    if (cli_model_forward(cm, cfg, o->float_act ? FORWARD_MATMUL_FLOAT : FORWARD_MATMUL_QUANT_ACT,
                          max_batch, &err)) {
        fprintf(stderr, "deepseek generate: %s\n", err.msg);
        free(ids);
        return 1;
    }
    int32_t n_vocab = model_hparams(cm->model)->n_vocab;
    float *logits = o->logits_out ? malloc((size_t)n_vocab * sizeof *logits) : NULL;
    struct generate_params gp = {o->sp, (int32_t)o->n_predict, o->stop, o->n_stop};
    struct gen_out out = {o->ids, false};
    struct generate_stats st;
    rc = o->logits_out && !logits ? ERR_NOMEM
         : generate_run(cm->fwd, cm->tok, ids, n, &gp, on_token, &out, logits, &st, &err);
    if (!rc) {
        putchar('\n');
        fflush(stdout);
        print_summary(&st, cm, o->float_act);
        if (o->logits_out && write_logits(o->logits_out, logits, n_vocab)) {
            fprintf(stderr, "deepseek generate: cannot write %s\n", o->logits_out);
            rc = 1;
        }
    } else {
        fprintf(stderr, "deepseek generate: %s\n", rc == ERR_NOMEM && !err.msg[0]
                ? "out of memory" : err.msg);
        rc = 1;
    }
    free(logits);
    free(ids);
    return rc;
}

int cli_generate(int argc, char **argv)
{
    struct config cfg;
    struct err err = {0};
    int rest = 0;
    if (config_setup(&cfg, argc, argv, &rest, argv, &err) != 0) {
        fprintf(stderr, "deepseek generate: %s\n", err.msg);
        return 2;
    }
    struct gen_opts o = {.n_predict = -1, .sp = sampler_params_default()};
    o.sp.temperature = (float)cfg.temperature;
    o.sp.top_p = (float)cfg.top_p;
    int rc = gen_parse(rest, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct sampler_params check = o.sp;
    if (sampler_params_check(&check, &err)) {
        fprintf(stderr, "deepseek generate: %s\n", err.msg);
        return 2;
    }
    struct cli_model cm;
    if (cli_model_open(&cfg, &cm, &err)) {
        fprintf(stderr, "deepseek generate: %s\n", err.msg);
        return 2;
    }
    rc = gen_run(&o, &cfg, &cm);
    cli_model_close(&cm);
    return rc;
}
