/*
 * `deepseek mkmodel`: writes a complete synthetic GGUF model of a named shape (see
 * model/shapes.h) with random weights: every metadata key and tensor a loader needs,
 * as llama.cpp's converter writes them, so the engine can be run and benchmarked at
 * real sizes without downloading weights. The output is gibberish by design.
 *
 * Weights are drawn per tensor from a splitmix64 stream seeded by (--seed, tensor
 * index), so the same seed gives the same bytes and tensors can be filled in any
 * order. The writer streams one tensor at a time; a 3.5 GB model needs at most its
 * largest tensor in memory.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "model/gguf.h"
#include "model/shapes.h"
#include "model/vocab_builtin.h"

#define MK_DESCRIPTION "synthetic model with random weights (deepseek mkmodel)"

/* llama_ftype numbers for general.file_type. */
enum { MK_FTYPE_ALL_F32 = 0, MK_FTYPE_MOSTLY_F16 = 1, MK_FTYPE_MOSTLY_BF16 = 32 };

struct mk_args {
    const char *arch, *shape, *type, *vocab, *out;
    uint64_t seed;
};

struct mk_fill {
    const struct shapes_model *shape;
    const struct shapes_tensor *tensors;
    enum ggml_type *types;
    uint64_t seed;
};

static void mk_usage(FILE *f)
{
    fprintf(f,
            "usage: deepseek mkmodel --arch ARCH --shape NAME --type TYPE [--vocab VOCAB.gguf]\n"
            "                        [--seed N] -o OUT.gguf\n"
            "\n"
            "Writes a complete GGUF model of a real DeepSeek shape with RANDOM weights\n"
            "(it produces gibberish), for tests and benchmarks.\n"
            "\n"
            "  --arch ARCH      llama | qwen2 | deepseek2\n"
            "  --shape NAME     a shape of that architecture (see docs/MODELS.md):\n");
    for (int a = 0; a < 3; a++) {
        char list[256];
        shapes_list((enum shapes_arch)a, list, sizeof list);
        fprintf(f, "                     %-9s %s\n", shapes_arch_name((enum shapes_arch)a), list);
    }
    fprintf(f,
            "  --type TYPE      f32 | f16 | bf16 (weight matrices; norms, biases and the\n"
            "                   MoE router stay f32)\n"
            "  --vocab FILE     copy every tokenizer.* key from this GGUF; the model gets its\n"
            "                   token count. Default: a small built-in byte-level vocabulary\n"
            "  --seed N         random seed (default 0); same seed, same bytes\n"
            "  -o, --output F   the file to write\n");
}

/* ------------------------------------------------------------------------- */
/* Random numbers                                                             */

static uint64_t mk_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Approximately N(0, 1): the sum of four 16-bit uniforms from one 64-bit draw
 * (Irwin-Hall, n = 4), centred and scaled to unit variance. No libm per element,
 * which is what makes multi-GB models quick; the tails stop at 3.46 sigma, which
 * random test weights do not miss. */
static float mk_gauss(uint64_t *state)
{
    uint64_t r = mk_splitmix64(state);
    uint32_t s = (uint32_t)(r & 0xffff) + (uint32_t)((r >> 16) & 0xffff) +
                 (uint32_t)((r >> 32) & 0xffff) + (uint32_t)(r >> 48);
    return ((float)s - 131070.0f) * (1.7320508f / 65536.0f);
}

/* ------------------------------------------------------------------------- */
/* Float conversion (round to nearest even)                                   */

static uint16_t mk_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffff;
    if (a > 0x7f800000)
        return sign | 0x7e00; /* NaN */
    if (a >= 0x47800000)
        return sign | 0x7c00; /* >= 65536: infinity */
    if (a < 0x38800000) {     /* below 2^-14: subnormal, in units of 2^-24 */
        float v;
        memcpy(&v, &a, sizeof v);
        return sign | (uint16_t)lrintf(v * 16777216.0f);
    }
    a += 0xfff + ((a >> 13) & 1); /* round the 13 dropped bits, ties to even */
    return sign | (uint16_t)((a - 0x38000000) >> 13); /* rebias exponent 127 -> 15 */
}

static uint16_t mk_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((x >> 16) | 0x40); /* keep NaN a quiet NaN */
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/* ------------------------------------------------------------------------- */
/* Tensor data                                                                */

static void mk_store(void *buf, enum ggml_type type, uint64_t i, float v)
{
    if (type == GGML_TYPE_F32) {
        memcpy((char *)buf + i * 4, &v, 4);
    } else {
        uint16_t h = type == GGML_TYPE_F16 ? mk_f16(v) : mk_bf16(v);
        memcpy((char *)buf + i * 2, &h, 2);
    }
}

static int mk_fill_tensor(void *user, int64_t index, const char *name, void *buf,
                          uint64_t nbytes, struct err *err)
{
    const struct mk_fill *f = user;
    const struct shapes_tensor *t = &f->tensors[index];
    enum ggml_type type = f->types[index];
    uint64_t n = shapes_tensor_elems(t);
    if (nbytes != n * (type == GGML_TYPE_F32 ? 4 : 2))
        return err_set(err, ERR_INTERNAL, "tensor %s: %" PRIu64 " bytes for %" PRIu64
                       " elements", name, nbytes, n);
    if (t->init == SHAPES_INIT_ROPE_FREQS) {
        shapes_llama3_rope_factors(f->shape, buf, (uint32_t)n); /* always F32 */
        return 0;
    }
    /* One stream per tensor: its own seed, independent of fill order. */
    uint64_t state = f->seed;
    state = mk_splitmix64(&state) ^ ((uint64_t)index * 0xd1b54a32d192ed03ULL);
    float base = t->init == SHAPES_INIT_ONE_PLUS ? 1.0f : 0.0f;
    for (uint64_t i = 0; i < n; i++)
        mk_store(buf, type, i, base + t->std * mk_gauss(&state));
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Arguments                                                                  */

/* 0 ok, 1 --help printed, 2 usage error (message printed). */
static int mk_parse(int argc, char **argv, struct mk_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            mk_usage(stdout);
            return 1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "deepseek mkmodel: %s: unknown option or missing value\n", o);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(o, "--arch")) {
            a->arch = v;
        } else if (!strcmp(o, "--shape")) {
            a->shape = v;
        } else if (!strcmp(o, "--type")) {
            a->type = v;
        } else if (!strcmp(o, "--vocab")) {
            a->vocab = v;
        } else if (!strcmp(o, "-o") || !strcmp(o, "--output")) {
            a->out = v;
        } else if (!strcmp(o, "--seed")) {
            char *end;
            errno = 0;
            a->seed = strtoull(v, &end, 0);
            if (errno || end == v || *end || v[0] == '-') {
                fprintf(stderr, "deepseek mkmodel: --seed: '%s' is not a number\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "deepseek mkmodel: unknown option '%s' (try --help)\n", o);
            return 2;
        }
    }
    if (!a->arch || !a->shape || !a->type || !a->out) {
        fprintf(stderr, "deepseek mkmodel: --arch, --shape, --type and -o are required "
                        "(try --help)\n");
        return 2;
    }
    return 0;
}

/* Resolves arch, shape and type; 0 or 2 (message printed). */
static int mk_resolve(const struct mk_args *a, const struct shapes_model **shape,
                      enum ggml_type *type, uint32_t *ftype)
{
    int arch = shapes_arch_from_name(a->arch);
    if (arch < 0) {
        fprintf(stderr, "deepseek mkmodel: unknown --arch '%s' (llama, qwen2, deepseek2)\n",
                a->arch);
        return 2;
    }
    *shape = shapes_find((enum shapes_arch)arch, a->shape);
    if (!*shape) {
        char list[256];
        shapes_list((enum shapes_arch)arch, list, sizeof list);
        fprintf(stderr, "deepseek mkmodel: no shape '%s' for arch %s (shapes: %s)\n", a->shape,
                a->arch, list);
        return 2;
    }
    if (!strcmp(a->type, "f32")) {
        *type = GGML_TYPE_F32;
        *ftype = MK_FTYPE_ALL_F32;
    } else if (!strcmp(a->type, "f16")) {
        *type = GGML_TYPE_F16;
        *ftype = MK_FTYPE_MOSTLY_F16;
    } else if (!strcmp(a->type, "bf16")) {
        *type = GGML_TYPE_BF16;
        *ftype = MK_FTYPE_MOSTLY_BF16;
    } else {
        fprintf(stderr, "deepseek mkmodel: unknown --type '%s' (f32, f16, bf16)\n", a->type);
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Metadata                                                                   */

/* Opens the vocabulary file and checks it has tokens; *n_vocab = their count.
 * 0, or 2 with the message printed. */
static int mk_open_vocab(const char *path, struct gguf **out, uint32_t *n_vocab)
{
    struct err e = {0};
    if (gguf_open(path, out, &e) != 0) {
        fprintf(stderr, "deepseek mkmodel: --vocab: %s\n", e.msg);
        return 2;
    }
    int64_t tok = gguf_find_key(*out, "tokenizer.ggml.tokens");
    enum gguf_type et;
    uint64_t n = 0;
    if (tok < 0 || !gguf_kv_array(*out, tok, &et, &n) || et != GGUF_TYPE_STRING || n == 0 ||
        n > UINT32_MAX) {
        fprintf(stderr, "deepseek mkmodel: --vocab: %s has no tokenizer.ggml.tokens string "
                        "array\n", path);
        gguf_close(*out);
        *out = NULL;
        return 2;
    }
    *n_vocab = (uint32_t)n;
    return 0;
}

/* Copies every tokenizer.* key of v verbatim. */
static int mk_copy_vocab(struct gguf_writer *w, const struct gguf *v, struct err *e)
{
    for (int64_t i = 0; i < gguf_n_kv(v); i++) {
        const char *key = gguf_kv_key(v, i);
        if (strncmp(key, "tokenizer.", 10) == 0 && gguf_writer_copy_kv(w, v, i) != 0)
            return err_set(e, ERR_NOMEM, "cannot copy %s from %s", key, gguf_path(v));
    }
    return 0;
}

static int mk_set_str(struct gguf_writer *w, const char *key, const char *v)
{
    return gguf_writer_set_str(w, key, v, strlen(v));
}

/* general.* (architecture first, as the converter writes them). */
static int mk_general(struct gguf_writer *w, const struct shapes_model *s)
{
    char name[128];
    snprintf(name, sizeof name, "%s-synthetic", s->hf_name);
    int rc = mk_set_str(w, "general.architecture", shapes_arch_name(s->arch));
    if (rc == 0)
        rc = mk_set_str(w, "general.type", "model");
    if (rc == 0)
        rc = mk_set_str(w, "general.name", name);
    if (rc == 0)
        rc = mk_set_str(w, "general.description", MK_DESCRIPTION);
    return rc;
}

/* Declares every tensor; matrices get `type`, the rest F32. */
static int mk_add_tensors(struct gguf_writer *w, struct mk_fill *f, size_t n, enum ggml_type type,
                          uint64_t *n_params)
{
    *n_params = 0;
    for (size_t i = 0; i < n; i++) {
        const struct shapes_tensor *t = &f->tensors[i];
        f->types[i] = t->matrix ? type : GGML_TYPE_F32;
        *n_params += shapes_tensor_elems(t);
        int rc = gguf_writer_add_tensor(w, t->name, f->types[i], t->n_dims, t->ne);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */

struct mk_job {
    struct mk_args args;
    const struct shapes_model *shape;
    enum ggml_type type;
    uint32_t ftype, n_vocab;
    struct shapes_tensor *tensors;
    size_t n_tensors;
    uint64_t n_params;
};

/* Builds the writer's metadata and tensor list (vocab: the open --vocab file or
 * NULL for the built-in one); 0 or 1 with the message printed. */
static int mk_build(struct mk_job *j, const struct gguf *vocab, struct gguf_writer *w,
                    struct mk_fill *fill)
{
    struct err e = {0};
    if (mk_general(w, j->shape) != 0 || shapes_write_hparams(j->shape, j->n_vocab, w, &e) != 0)
        goto fail;
    if (vocab ? mk_copy_vocab(w, vocab, &e) : vocab_builtin_write(w, &e))
        goto fail;
    if (gguf_writer_set_u32(w, "general.quantization_version", 2) != 0 ||
        gguf_writer_set_u32(w, "general.file_type", j->ftype) != 0)
        goto fail;
    if (shapes_tensors(j->shape, j->n_vocab, &j->tensors, &j->n_tensors, &e) != 0)
        goto fail;
    fill->tensors = j->tensors;
    fill->types = calloc(j->n_tensors, sizeof *fill->types);
    if (!fill->types || mk_add_tensors(w, fill, j->n_tensors, j->type, &j->n_params) != 0)
        goto fail;
    return 0;
fail:
    fprintf(stderr, "deepseek mkmodel: %s\n", e.msg[0] ? e.msg : "out of memory");
    return 1;
}

static void mk_report(const struct mk_job *j)
{
    struct stat st;
    long long size = stat(j->args.out, &st) == 0 ? (long long)st.st_size : -1;
    printf("wrote %s: %s %s (%s), %s, %u tokens%s, %zu tensors, %" PRIu64 " parameters, "
           "%lld bytes, seed %" PRIu64 "\n",
           j->args.out, shapes_arch_name(j->shape->arch), j->shape->name, j->shape->hf_name,
           j->args.type, j->n_vocab, j->args.vocab ? "" : " (built-in vocabulary)",
           j->n_tensors, j->n_params, size, j->args.seed);
    if (j->args.vocab && j->n_vocab != j->shape->n_vocab)
        fprintf(stderr, "note: %s has %u tokens; this file has the vocabulary's %u\n",
                j->shape->hf_name, j->shape->n_vocab, j->n_vocab);
}

int cli_mkmodel(int argc, char **argv)
{
    struct mk_job j = {0};
    int rc = mk_parse(argc, argv, &j.args);
    if (rc)
        return rc == 1 ? 0 : 2;
    if (mk_resolve(&j.args, &j.shape, &j.type, &j.ftype) ||
        cli_check_output("mkmodel", j.args.out))
        return 2;
    struct gguf *vocab = NULL;
    j.n_vocab = vocab_builtin_n_tokens();
    if (j.args.vocab && mk_open_vocab(j.args.vocab, &vocab, &j.n_vocab))
        return 2;
    struct mk_fill fill = {.shape = j.shape, .seed = j.args.seed};
    struct gguf_writer *w = gguf_writer_new(GGUF_DEFAULT_ALIGNMENT);
    rc = w ? mk_build(&j, vocab, w, &fill) : 1;
    if (!w)
        fprintf(stderr, "deepseek mkmodel: out of memory\n");
    if (rc == 0) {
        struct err e = {0};
        if (gguf_writer_write(w, j.args.out, mk_fill_tensor, &fill, &e) != 0) {
            fprintf(stderr, "deepseek mkmodel: %s\n", e.msg);
            rc = 1;
        } else {
            mk_report(&j);
        }
    }
    free(fill.types);
    free(j.tensors);
    gguf_writer_free(w);
    gguf_close(vocab);
    return rc;
}
