/*
 * bench_tokenize: encode throughput of every test vocabulary on ~10 MB of mixed
 * English / Chinese / code text, built deterministically (fixed seed) from the
 * test-vector inputs and fixed snippets.
 *
 *   bench_tokenize [TESTDATA_DIR] [--mb N] [--write FILE]
 *
 * TESTDATA_DIR defaults to $DS_TESTDATA; --write saves the corpus (to time other
 * tokenizers on the same bytes). Prints MB/s and tokens per vocabulary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/gguf.h"
#include "model/tokenizer.h"

static const char *const VOCABS[] = {"deepseek-llm", "deepseek-coder", "qwen2", "llama-bpe",
                                     "deepseek-v3"};

static const char *const EN[] = {
    "the", "model", "reads", "a", "prompt", "and", "writes", "tokens", "quickly", "while",
    "keeping", "its", "cache", "warm", "Transformer", "layers", "attention", "isn't", "we'll",
    "DeepSeek", "inference", "on", "CPU", "with", "quantized", "weights", "2024", "3.14159",
};
static const char *const ZH[] = {
    "深度", "求索", "模型", "推理", "量子", "计算", "的", "基本", "原理", "解释", "我们",
    "中文", "分词", "速度", "测试", "，", "。", "人工智能", "语言",
};
static const char *const CODE[] = {
    "static int f(int x) {\n    return x * 2 + 1;\n}\n",
    "for (size_t i = 0; i < n; i++)\n        sum += a[i] * b[i];\n",
    "def main():\n    print(\"hello, world\")  # greet\n\n",
    "if (err != NULL && err->code < 0) { goto fail; }\n",
    "    <div class=\"row\">{{ item.name }}</div>\n",
};

struct buf {
    char *p;
    size_t n, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap)
            b->cap = b->cap ? b->cap * 2 : 1 << 20;
        b->p = realloc(b->p, b->cap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static uint32_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *p = len > 0 ? malloc((size_t)len) : NULL;
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = p ? (size_t)len : 0;
    return p;
}

/* Mixes paragraphs of generated English, Chinese and code with chunks of the test
 * vectors' input (emoji, odd whitespace, many scripts) until `target` bytes. */
static void build_corpus(struct buf *b, const char *testdata, size_t target)
{
    char path[1024];
    size_t n_inp = 0;
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-deepseek-llm.gguf.inp", testdata);
    char *inp = read_all(path, &n_inp);
    uint64_t seed = 42;
    while (b->n < target) {
        uint32_t kind = rnd(&seed) % 8;
        if (kind < 3) {
            for (int w = 0; w < 40; w++) {
                const char *s = EN[rnd(&seed) % (sizeof EN / sizeof EN[0])];
                put(b, w ? " " : "", w ? 1 : 0);
                put(b, s, strlen(s));
            }
            put(b, ".\n", 2);
        } else if (kind < 5) {
            for (int w = 0; w < 40; w++) {
                const char *s = ZH[rnd(&seed) % (sizeof ZH / sizeof ZH[0])];
                put(b, s, strlen(s));
            }
            put(b, "\n", 1);
        } else if (kind < 7) {
            const char *s = CODE[rnd(&seed) % (sizeof CODE / sizeof CODE[0])];
            put(b, s, strlen(s));
        } else if (inp) {
            size_t at = rnd(&seed) % n_inp, len = 200 + rnd(&seed) % 400;
            while (at > 0 && ((unsigned char)inp[at] & 0xc0) == 0x80)
                at--; /* start on a character boundary */
            if (at + len > n_inp)
                len = n_inp - at;
            while (len > 0 && at + len < n_inp && ((unsigned char)inp[at + len] & 0xc0) == 0x80)
                len--;
            put(b, inp + at, len);
        }
    }
    free(inp);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const char *testdata = getenv("DS_TESTDATA"), *write_path = NULL;
    double mb = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mb") && i + 1 < argc)
            mb = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--write") && i + 1 < argc)
            write_path = argv[++i];
        else
            testdata = argv[i];
    }
    if (!testdata) {
        fprintf(stderr, "usage: bench_tokenize TESTDATA_DIR [--mb N] [--write FILE] "
                        "(or set DS_TESTDATA)\n");
        return 2;
    }
    struct buf corpus = {0};
    build_corpus(&corpus, testdata, (size_t)(mb * 1e6));
    if (write_path) {
        FILE *f = fopen(write_path, "wb");
        if (!f || fwrite(corpus.p, 1, corpus.n, f) != corpus.n || fclose(f) != 0) {
            fprintf(stderr, "cannot write %s\n", write_path);
            return 1;
        }
    }
    printf("corpus: %.2f MB\n", (double)corpus.n / 1e6);
    for (size_t v = 0; v < sizeof VOCABS / sizeof VOCABS[0]; v++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-%s.gguf", testdata, VOCABS[v]);
        struct err err = {0};
        struct gguf *g = NULL;
        struct tokenizer *t = NULL;
        double t0 = now();
        if (gguf_open(path, &g, &err) || tokenizer_load(g, &t, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            gguf_close(g);
            return 1;
        }
        double t1 = now();
        int32_t *ids;
        size_t n;
        if (tokenizer_encode(t, corpus.p, corpus.n, 0, &ids, &n, &err)) {
            fprintf(stderr, "%s: %s\n", VOCABS[v], err.msg);
            return 1;
        }
        double t2 = now();
        free(ids);
        if (tokenizer_encode(t, corpus.p, corpus.n, TOKENIZER_PARSE_SPECIAL, &ids, &n, &err)) {
            fprintf(stderr, "%s: %s\n", VOCABS[v], err.msg);
            return 1;
        }
        double t3 = now();
        printf("%-15s load %6.1f ms  encode %7.2f MB/s  (%zu tokens, %.2f bytes/token)  "
               "parse_special %7.2f MB/s\n", VOCABS[v], (t1 - t0) * 1e3,
               (double)corpus.n / 1e6 / (t2 - t1), n, (double)corpus.n / (double)n,
               (double)corpus.n / 1e6 / (t3 - t2));
        free(ids);
        tokenizer_free(t);
        gguf_close(g);
    }
    free(corpus.p);
    return 0;
}
