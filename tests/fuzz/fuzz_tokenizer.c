/*
 * fuzz_tokenizer: arbitrary bytes through tokenizer_encode (plain and with
 * PARSE_SPECIAL), tokenizer_decode and the streaming detokenizer. Aborts when
 * valid UTF-8 does not survive decode(encode(x)) == x or when the stream emits
 * invalid UTF-8.
 *
 * Vocabulary: $DS_TESTDATA (or ../shared/testdata from the working directory)
 * tokenizer/ggml-vocab-deepseek-llm.gguf; without test data, a byte-level
 * vocabulary with a few merges and a control token is written to a temporary file.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf.h"
#include "model/tokenizer.h"

static struct gguf *g_gguf;
static struct tokenizer *g_tok;

static size_t byte_text(int b, char *out)
{
    int n = 0, cp = b;
    for (int x = 0; x < 256; x++) {
        bool printable = (x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || x >= 0xae;
        int c = printable ? x : 256 + n++;
        if (x == b)
            cp = c;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

static int write_builtin_vocab(const char *path, struct err *err)
{
    static char names[256][2];
    const char *strs[260];
    size_t lens[260];
    int32_t types[260];
    for (int b = 0; b < 256; b++) {
        lens[b] = byte_text(b, names[b]);
        strs[b] = names[b];
        types[b] = TOKEN_TYPE_NORMAL;
    }
    const char *extra[4] = {"<|endoftext|>", "he", "ll", "hell"};
    for (int i = 0; i < 4; i++) {
        strs[256 + i] = extra[i];
        lens[256 + i] = strlen(extra[i]);
        types[256 + i] = i == 0 ? TOKEN_TYPE_CONTROL : TOKEN_TYPE_NORMAL;
    }
    const char *merges[3] = {"h e", "l l", "he ll"};
    size_t mlens[3] = {3, 3, 5};
    struct gguf_writer *w = gguf_writer_new(0);
    if (!w)
        return ERR_NOMEM;
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", 4);
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2", 5);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, 260);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 260);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, mlens, 3);
    int rc = gguf_writer_write(w, path, NULL, NULL, err);
    gguf_writer_free(w);
    return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char path[1024];
    struct err err = {0};
    const char *td = getenv("DS_TESTDATA");
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-deepseek-llm.gguf",
             td ? td : "../shared/testdata");
    if (access(path, R_OK) == 0 && gguf_open(path, &g_gguf, &err) == 0 &&
        tokenizer_load(g_gguf, &g_tok, &err) == 0)
        return 0;
    gguf_close(g_gguf);
    g_gguf = NULL;
    char tmp[] = "/tmp/fuzz_tokenizer_XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0)
        abort();
    close(fd);
    if (write_builtin_vocab(tmp, &err) || gguf_open(tmp, &g_gguf, &err) ||
        tokenizer_load(g_gguf, &g_tok, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    unlink(tmp);
    return 0;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t L = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (!L || i + L > n)
            return false;
        unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (L > 1 && (s[i + 1] < lo || s[i + 1] > hi))
            return false;
        for (size_t k = 2; k < L; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        i += L;
    }
    return true;
}

static void check_stream(const int32_t *ids, size_t n)
{
    struct tokenizer_detok d;
    char buf[512];
    tokenizer_detok_init(&d);
    for (size_t i = 0; i < n; i++) {
        size_t k = tokenizer_detok_push(g_tok, &d, ids[i], buf, sizeof buf);
        if (k > sizeof buf || !valid_utf8((unsigned char *)buf, k))
            abort();
    }
    size_t k = tokenizer_detok_flush(&d, buf, sizeof buf);
    if (!valid_utf8((unsigned char *)buf, k))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool valid = valid_utf8(data, size);
    for (int pass = 0; pass < 2; pass++) {
        int flags = pass ? TOKENIZER_PARSE_SPECIAL : 0;
        int32_t *ids;
        size_t n;
        struct err err = {0};
        if (tokenizer_encode(g_tok, (const char *)data, size, flags, &ids, &n, &err) != 0)
            abort(); /* encoding never fails on any bytes (short of memory) */
        char *text;
        size_t len;
        if (tokenizer_decode(g_tok, ids, n, &text, &len, &err) != 0)
            abort();
        if (valid && (len != size || memcmp(text, data, size) != 0))
            abort();
        check_stream(ids, n);
        free(text);
        free(ids);
    }
    return 0;
}
