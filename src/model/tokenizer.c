/*
 * tokenizer: see tokenizer.h. Byte-level BPE as llama.cpp runs it (src/llama-vocab.cpp,
 * src/unicode.cpp), re-implemented on PCRE2:
 *
 *   text -> special-token partition -> UTF-8 runs -> regex cascade -> words -> BPE
 *
 * Special-token partition: the special tokens (CONTROL, USER_DEFINED, UNKNOWN) are
 * tried longest text first; each one splits every still-raw fragment at its
 * leftmost non-overlapping occurrences. USER_DEFINED tokens are matched even
 * without TOKENIZER_PARSE_SPECIAL (HF and llama.cpp do so: they are "added words",
 * e.g. deepseek-coder's "õ"); CONTROL and UNKNOWN tokens only with it. We find all
 * candidate occurrences in one pass (bucketed by their first two bytes) and then
 * replay that priority order, which gives the same partition as llama.cpp's
 * token-by-token rescans in a fraction of the time.
 *
 * Regex cascade: each pre-tokenizer is a list of regexes applied in sequence; a
 * regex splits every current segment into its matches AND the gaps between them
 * (llama.cpp's unicode_regex_split). The regexes are llama.cpp's, adjusted where
 * its std::regex emulation differs from real Unicode classes: `\s` is the Unicode
 * White_Space set (WS below), '~' is not a symbol for deepseek-v3 (llama.cpp's
 * collapsed class tables omit it), whitespace code points are outside the CJK
 * ranges, and llama-bpe's gaps are split per code point (its hand-written splitter
 * emits unmatched characters one by one). deepseek-llm's `\s+$` is done by hand
 * (PCRE2 would backtrack quadratically on long inner whitespace runs).
 *
 * Invalid UTF-8 bytes (llama.cpp turns them into U+FFFD) are each encoded as their
 * own byte token, so decode(encode(x)) == x for every byte string without special
 * tokens in it.
 *
 * BPE: the merge table maps a pair of token ids to (rank, merged id); a word's
 * symbols merge lowest rank first, leftmost on ties. Words up to SMALL_WORD bytes
 * use a linear scan, longer ones a binary heap, so a long word costs O(n log n).
 *
 * Word cache: a word's ids depend on its bytes alone, and text repeats its words, so
 * each encode call keeps the ids of the short words it has merged (as Hugging Face
 * `tokenizers` does) and copies them on a repeat instead of merging again.
 */
#include "model/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    ATTR_CONTROL = 1,
    ATTR_USER = 2,
    ATTR_UNKNOWN = 4,
    ATTR_EOG = 8,
};

#define MAX_REGEX 6
#define SMALL_WORD 24
#define CACHE_SLOTS 8192   /* word cache slots (a power of two); emptied when half full */
#define CACHE_MAX_WORD 48  /* longer words are seldom repeated: not cached */

/* ------------------------------------------------------------------------- */
/* Pre-tokenizers                                                            */

/* Unicode White_Space, the set llama.cpp's `\s` stands for. */
#define WS "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}" \
           "\\x{205f}\\x{3000}"
#define S "[" WS "]"
#define NS "[^" WS "]"
/* deepseek's CJK class [一-龥ࠀ-一가-퟿] minus the whitespace inside U+0800..U+4E00
 * (llama.cpp maps those to a vertical tab before matching). */
#define CJK "[\\x{4e00}-\\x{9fa5}\\x{800}-\\x{167f}\\x{1681}-\\x{1fff}\\x{200b}-\\x{2027}" \
            "\\x{202a}-\\x{202e}\\x{2030}-\\x{205e}\\x{2060}-\\x{2fff}\\x{3001}-\\x{4e00}" \
            "\\x{ac00}-\\x{d7ff}]+"
/* deepseek-llm's cased-letter class, as written in its tokenizer.json. */
#define DSL_LETTERS                                                                        \
    "A-Za-z\\x{b5}\\x{c0}-\\x{d6}\\x{d8}-\\x{f6}\\x{f8}-\\x{1ba}\\x{1bc}-\\x{1bf}"             \
    "\\x{1c4}-\\x{293}\\x{295}-\\x{2af}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37b}-\\x{37d}"       \
    "\\x{37f}\\x{386}\\x{388}-\\x{38a}\\x{38c}\\x{38e}-\\x{3a1}\\x{3a3}-\\x{3f5}"               \
    "\\x{3f7}-\\x{481}\\x{48a}-\\x{52f}\\x{531}-\\x{556}\\x{10a0}-\\x{10c5}\\x{13a0}-\\x{13f5}" \
    "\\x{13f8}-\\x{13fd}\\x{1c90}-\\x{1cba}\\x{1cbd}-\\x{1cbf}\\x{1d00}-\\x{1d2b}"             \
    "\\x{1d6b}-\\x{1d77}\\x{1d79}-\\x{1d9a}\\x{1e00}-\\x{1f15}\\x{1f18}-\\x{1f1d}"             \
    "\\x{1f20}-\\x{1f45}\\x{1f48}-\\x{1f4d}\\x{1f50}-\\x{1f57}\\x{1f59}\\x{1f5b}\\x{1f5d}"      \
    "\\x{1f5f}-\\x{1f7d}\\x{1f80}-\\x{1fb4}\\x{1fb6}-\\x{1fbc}\\x{1fbe}\\x{1fc2}-\\x{1fc4}"     \
    "\\x{1fc6}-\\x{1fcc}\\x{1fd0}-\\x{1fd3}\\x{1fd6}-\\x{1fdb}\\x{1fe0}-\\x{1fec}"             \
    "\\x{1ff2}-\\x{1ff4}\\x{1ff6}-\\x{1ffc}\\x{2102}\\x{2107}\\x{210a}-\\x{2113}\\x{2115}"      \
    "\\x{2119}-\\x{211d}\\x{2124}\\x{2126}\\x{2128}\\x{212a}-\\x{212d}\\x{212f}-\\x{2134}"     \
    "\\x{2139}\\x{213c}-\\x{213f}\\x{2145}-\\x{2149}\\x{214e}\\x{2183}\\x{2184}"               \
    "\\x{2c00}-\\x{2c7b}\\x{2c7e}-\\x{2ce4}\\x{2ceb}-\\x{2cee}\\x{2cf2}\\x{2cf3}"               \
    "\\x{a640}-\\x{a66d}\\x{a680}-\\x{a69b}\\x{a722}-\\x{a76f}\\x{a771}-\\x{a787}"             \
    "\\x{a78b}-\\x{a78e}\\x{ab70}-\\x{abbf}\\x{fb00}-\\x{fb06}\\x{fb13}-\\x{fb17}"             \
    "\\x{ff21}-\\x{ff3a}\\x{ff41}-\\x{ff5a}\\x{10400}-\\x{1044f}\\x{104b0}-\\x{104d3}"         \
    "\\x{104d8}-\\x{104fb}\\x{10c80}-\\x{10cb2}\\x{10cc0}-\\x{10cf2}\\x{118a0}-\\x{118df}"     \
    "\\x{1e900}-\\x{1e943}"
#define CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

/* Stands in the regex list for "split off trailing whitespace" (`\s+$`). */
static const char TRAILING_WS[] = "\\s+$";

static const char *const re_deepseek_llm[] = {
    "[\\r\\n]",
    S "?[" DSL_LETTERS "]+",
    S "?[!-/:-~\\x{ff01}-\\x{ff0f}\\x{ff1a}-\\x{ff5e}\\x{2018}-\\x{201f}\\x{3001}-\\x{3002}]+",
    TRAILING_WS,
    CJK,
    "\\p{N}+",
};
static const char *const re_deepseek_coder[] = {
    "[\\r\\n]", S "?\\p{L}+", S "?\\p{P}+", CJK, "\\p{N}",
};
static const char *const re_deepseek_v3[] = {
    "\\p{N}{1,3}",
    "[\\x{4e00}-\\x{9fa5}\\x{3040}-\\x{309f}\\x{30a0}-\\x{30ff}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
    "|(?:[^\\r\\n\\p{L}\\p{P}\\p{S}]|~)?[\\p{L}\\p{M}]+"
    "| ?[^\\p{L}\\p{M}\\p{N}\\p{Z}\\p{C}~]+[\\r\\n]*"
    "|" S "*[\\r\\n]+|" S "+(?!" NS ")|" S "+",
};
static const char *const re_qwen2[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*"
                 "|" S "*[\\r\\n]+|" S "+(?!" NS ")|" S "+",
};
static const char *const re_llama3[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}\\p{Cn}]+[\\r\\n]*"
                 "|" S "*[\\r\\n]+|" S "+(?!" NS ")|" S "+",
};

struct pre_def {
    const char *name;
    const char *const *regex;
    int n_regex;
    bool ignore_merges; /* a word that is itself a token is not merged */
    bool add_bos;       /* default of add_bos_token when the GGUF does not say */
    bool gap_per_char;  /* unmatched code points become one word each */
};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
static const struct pre_def pre_defs[] = {
    {"deepseek-llm", re_deepseek_llm, N_OF(re_deepseek_llm), false, false, false},
    {"deepseek-coder", re_deepseek_coder, N_OF(re_deepseek_coder), false, false, false},
    {"deepseek-v3", re_deepseek_v3, N_OF(re_deepseek_v3), false, false, false},
    {"deepseek-r1-qwen", re_qwen2, N_OF(re_qwen2), false, false, false},
    {"qwen2", re_qwen2, N_OF(re_qwen2), false, false, false},
    {"llama-bpe", re_llama3, N_OF(re_llama3), true, true, true},
};
#define PRE_NAMES "deepseek-llm, deepseek-coder, deepseek-v3, deepseek-r1-qwen, qwen2, llama-bpe"

/* ------------------------------------------------------------------------- */
/* The tokenizer                                                             */

struct pair_slot {
    uint64_t key; /* left << 32 | right; PAIR_EMPTY when free */
    int32_t rank;
    int32_t result;
};
#define PAIR_EMPTY UINT64_MAX

struct tokenizer {
    int32_t n_vocab;
    char *text;          /* all token texts, each NUL-terminated */
    uint32_t *text_off;  /* [n_vocab] */
    uint32_t *text_len;  /* [n_vocab] */
    char *piece;         /* decoded bytes of all tokens */
    uint32_t *piece_off; /* [n_vocab] */
    uint32_t *piece_len; /* [n_vocab] */
    uint8_t *type;       /* [n_vocab] GGUF token type */
    uint8_t *attr;       /* [n_vocab] ATTR_* */

    int32_t *vocab_slots; /* text -> id, open addressing, -1 = free */
    uint64_t vocab_mask;
    struct pair_slot *pairs; /* (left, right) -> rank, merged id */
    uint64_t pair_mask;
    int32_t byte_tok[256]; /* the token of each single byte */
    char byte_text[256][2]; /* each byte's byte-level text (1 or 2 UTF-8 bytes) */
    uint8_t byte_text_len[256];

    int32_t *special;  /* special ids, longest text first (ties: lower id) */
    int32_t n_special;
    int32_t n_user;    /* how many of them are USER_DEFINED */
    uint32_t *sp_bucket; /* [65537] start of each first-two-bytes bucket in sp_order */
    int32_t *sp_order;   /* indexes into special[], grouped by bucket */
    uint8_t sp_has1[256]; /* a one-byte special token starts with this byte */

    int32_t bos, eos;
    bool add_bos;
    const struct pre_def *pre;
    pcre2_code *re[MAX_REGEX];
    bool re_jit[MAX_REGEX];
    char *chat_template;
};

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others are
 * mapped to U+0100 upwards in byte order. */
static void byte_map(uint16_t cp_of_byte[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        cp_of_byte[b] = printable ? (uint16_t)b : (uint16_t)(256 + n++);
    }
}

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the well-formed UTF-8 character at s (n bytes available), or 0. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static int32_t vocab_lookup(const struct tokenizer *t, const char *s, size_t n)
{
    uint64_t h = hash_bytes(s, n) & t->vocab_mask;
    for (;;) {
        int32_t id = t->vocab_slots[h];
        if (id < 0)
            return -1;
        if (t->text_len[id] == n && memcmp(t->text + t->text_off[id], s, n) == 0)
            return id;
        h = (h + 1) & t->vocab_mask;
    }
}

static uint64_t pair_hash(uint64_t key, uint64_t mask)
{
    return ((key * 0x9e3779b97f4a7c15ull) >> 20) & mask;
}

static const struct pair_slot *pair_lookup(const struct tokenizer *t, int32_t l, int32_t r)
{
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    uint64_t h = pair_hash(key, t->pair_mask);
    for (;;) {
        const struct pair_slot *s = &t->pairs[h];
        if (s->key == key)
            return s;
        if (s->key == PAIR_EMPTY)
            return NULL;
        h = (h + 1) & t->pair_mask;
    }
}

static uint64_t table_size(uint64_t n)
{
    uint64_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    return cap;
}

/* ------------------------------------------------------------------------- */
/* Loading                                                                   */

/* Finds an array-of-strings key; -1 (and *n = 0) when absent. */
static int find_str_array(const struct gguf *g, const char *key, int64_t *kv, uint64_t *n,
                          struct err *err)
{
    enum gguf_type et;
    *kv = gguf_find_key(g, key);
    *n = 0;
    if (*kv < 0)
        return ERR_NOTFOUND;
    if (!gguf_kv_array(g, *kv, &et, n) || et != GGUF_TYPE_STRING)
        return err_set(err, ERR_FORMAT, "%s: %s is not an array of strings", gguf_path(g), key);
    return 0;
}

static int load_tokens(struct tokenizer *t, const struct gguf *g, struct err *err)
{
    int64_t kv;
    uint64_t n;
    int rc = find_str_array(g, "tokenizer.ggml.tokens", &kv, &n, err);
    if (rc == ERR_NOTFOUND)
        return err_set(err, ERR_FORMAT, "%s: missing key tokenizer.ggml.tokens", gguf_path(g));
    if (rc)
        return rc;
    if (n == 0 || n > INT32_MAX / 2)
        return err_set(err, ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries",
                       gguf_path(g), (unsigned long long)n);
    t->n_vocab = (int32_t)n;
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (!gguf_arr_str(g, kv, i, &s, &len))
            return err_set(err, ERR_FORMAT, "%s: token %llu unreadable", gguf_path(g),
                           (unsigned long long)i);
        total += (len ? len : 24) + 1;
    }
    if (total > UINT32_MAX)
        return err_set(err, ERR_FORMAT, "%s: token texts total %llu bytes", gguf_path(g),
                       (unsigned long long)total);
    t->text = malloc(total);
    t->text_off = malloc(n * sizeof *t->text_off);
    t->text_len = malloc(n * sizeof *t->text_len);
    t->vocab_mask = table_size(n) - 1;
    t->vocab_slots = malloc((t->vocab_mask + 1) * sizeof *t->vocab_slots);
    if (!t->text || !t->text_off || !t->text_len || !t->vocab_slots)
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory for %llu tokens",
                       (unsigned long long)n);
    memset(t->vocab_slots, 0xff, (t->vocab_mask + 1) * sizeof *t->vocab_slots);
    uint32_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        gguf_arr_str(g, kv, i, &s, &len);
        char *dst = t->text + off;
        if (len == 0) /* as llama.cpp: an empty token gets a placeholder text */
            len = (size_t)snprintf(dst, 24, "[EMPTY_%llu]", (unsigned long long)i);
        else
            memcpy(dst, s, len);
        dst[len] = '\0';
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)len;
        off += (uint32_t)len + 1;
        int32_t dup = vocab_lookup(t, dst, len);
        if (dup >= 0)
            return err_set(err, ERR_FORMAT, "%s: duplicate token '%.64s' has ids %d and %llu",
                           gguf_path(g), dst, dup, (unsigned long long)i);
        uint64_t h = hash_bytes(dst, len) & t->vocab_mask;
        while (t->vocab_slots[h] >= 0)
            h = (h + 1) & t->vocab_mask;
        t->vocab_slots[h] = (int32_t)i;
    }
    return 0;
}

static int load_types(struct tokenizer *t, const struct gguf *g, struct err *err)
{
    t->type = malloc((size_t)t->n_vocab);
    t->attr = calloc((size_t)t->n_vocab, 1);
    if (!t->type || !t->attr)
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    memset(t->type, TOKEN_TYPE_NORMAL, (size_t)t->n_vocab);
    int64_t kv = gguf_find_key(g, "tokenizer.ggml.token_type");
    if (kv < 0)
        return 0;
    enum gguf_type et;
    uint64_t n;
    if (!gguf_kv_array(g, kv, &et, &n) || et == GGUF_TYPE_STRING || et == GGUF_TYPE_ARRAY)
        return err_set(err, ERR_FORMAT, "%s: tokenizer.ggml.token_type is not an integer array",
                       gguf_path(g));
    if (n < (uint64_t)t->n_vocab)
        return err_set(err, ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries, vocab %d",
                       gguf_path(g), (unsigned long long)n, t->n_vocab);
    for (int32_t i = 0; i < t->n_vocab; i++) {
        int64_t v = 0;
        gguf_arr_i64(g, kv, (uint64_t)i, &v);
        t->type[i] = (v >= 1 && v <= 6) ? (uint8_t)v : 0;
        if (v == TOKEN_TYPE_CONTROL)
            t->attr[i] |= ATTR_CONTROL;
        else if (v == TOKEN_TYPE_USER_DEFINED)
            t->attr[i] |= ATTR_USER;
        else if (v == TOKEN_TYPE_UNKNOWN)
            t->attr[i] |= ATTR_UNKNOWN;
    }
    return 0;
}

static int merge_insert(struct tokenizer *t, int32_t l, int32_t r, int32_t rank, int32_t res)
{
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    uint64_t h = pair_hash(key, t->pair_mask);
    while (t->pairs[h].key != PAIR_EMPTY) {
        if (t->pairs[h].key == key)
            return 0; /* a repeated pair keeps its first (lowest) rank */
        h = (h + 1) & t->pair_mask;
    }
    t->pairs[h] = (struct pair_slot){key, rank, res};
    return 0;
}

static int load_merges(struct tokenizer *t, const struct gguf *g, struct err *err)
{
    int64_t kv;
    uint64_t n;
    int rc = find_str_array(g, "tokenizer.ggml.merges", &kv, &n, err);
    if (rc && rc != ERR_NOTFOUND)
        return rc; /* absent merges: a byte-only vocabulary */
    if (n > INT32_MAX / 4)
        return err_set(err, ERR_FORMAT, "%s: %llu merges", gguf_path(g), (unsigned long long)n);
    t->pair_mask = table_size(n) - 1;
    t->pairs = malloc((t->pair_mask + 1) * sizeof *t->pairs);
    if (!t->pairs)
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory for %llu merges",
                       (unsigned long long)n);
    for (uint64_t i = 0; i <= t->pair_mask; i++)
        t->pairs[i].key = PAIR_EMPTY;
    char buf[1024];
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (!gguf_arr_str(g, kv, i, &s, &len))
            return err_set(err, ERR_FORMAT, "%s: merge %llu unreadable", gguf_path(g),
                           (unsigned long long)i);
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp || len >= sizeof buf)
            return err_set(err, ERR_FORMAT, "%s: merge %llu '%.*s' is not \"left right\"",
                           gguf_path(g), (unsigned long long)i, (int)(len > 64 ? 64 : len), s);
        size_t nl = (size_t)(sp - s), nr = len - nl - 1;
        int32_t l = vocab_lookup(t, s, nl), r = vocab_lookup(t, sp + 1, nr);
        memcpy(buf, s, nl);
        memcpy(buf + nl, sp + 1, nr);
        int32_t res = vocab_lookup(t, buf, nl + nr);
        if (l < 0 || r < 0 || res < 0)
            return err_set(err, ERR_FORMAT, "%s: merge %llu '%.*s' refers to %s '%.*s' not in "
                           "the vocabulary", gguf_path(g), (unsigned long long)i,
                           (int)(len > 64 ? 64 : len), s, l < 0 ? "left token" :
                           r < 0 ? "right token" : "merged token",
                           (int)(l < 0 ? nl : r < 0 ? nr : (nl + nr > 64 ? 64 : nl + nr)),
                           l < 0 ? s : r < 0 ? sp + 1 : buf);
        merge_insert(t, l, r, (int32_t)i, res);
    }
    return 0;
}

/* Optional uint32 id key; ids outside the vocabulary are ignored as llama.cpp does. */
static int32_t get_id(const struct gguf *g, const char *key, int32_t n_vocab)
{
    uint32_t v;
    if (gguf_get_u32(g, key, &v, NULL) != 0 || v >= (uint32_t)n_vocab)
        return -1;
    return (int32_t)v;
}

/* Tokens llama.cpp recognises by text: forced to CONTROL, some of them end generation. */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<|fim_pad|>", "<|repo_name|>",
    "<|fim_repo|>", "<|file_sep|>",
};
static const char *const control_texts[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
};

static void load_special_ids(struct tokenizer *t, const struct gguf *g)
{
    t->bos = get_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab);
    t->eos = get_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab);
    int32_t eot = get_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab);
    int32_t eom = get_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab);
    bool b;
    t->add_bos = gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, NULL) == 0 ? b
                                                                                 : t->pre->add_bos;
    if (t->add_bos && t->bos < 0)
        t->add_bos = false;
    for (int i = 0; i < N_OF(eog_texts); i++) {
        int32_t id = vocab_lookup(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0)
            t->attr[id] |= ATTR_CONTROL | ATTR_EOG;
    }
    for (int i = 0; i < N_OF(control_texts); i++) {
        int32_t id = vocab_lookup(t, control_texts[i], strlen(control_texts[i]));
        if (id >= 0)
            t->attr[id] |= ATTR_CONTROL;
    }
    if (t->eos >= 0)
        t->attr[t->eos] |= ATTR_EOG;
    if (eot >= 0)
        t->attr[eot] |= ATTR_EOG;
    if (eom >= 0)
        t->attr[eom] |= ATTR_EOG;
}

static int load_byte_tokens(struct tokenizer *t, const struct gguf *g, struct err *err)
{
    uint16_t cp[256];
    byte_map(cp);
    for (int b = 0; b < 256; b++) {
        char s[4];
        size_t n = utf8_put(s, cp[b]);
        memcpy(t->byte_text[b], s, n);
        t->byte_text_len[b] = (uint8_t)n;
        t->byte_tok[b] = vocab_lookup(t, s, n);
        if (t->byte_tok[b] < 0)
            return err_set(err, ERR_FORMAT, "%s: byte 0x%02x (token '%.*s') is not in the "
                           "vocabulary", gguf_path(g), b, (int)n, s);
    }
    return 0;
}

/* Decoded bytes of every token: byte-level decoding for normal tokens, the text
 * itself for control / user-defined / unknown ones. */
static int build_pieces(struct tokenizer *t, struct err *err)
{
    uint16_t cp[256];
    int16_t byte_of[324];
    byte_map(cp);
    memset(byte_of, 0xff, sizeof byte_of);
    for (int b = 0; b < 256; b++)
        byte_of[cp[b]] = (int16_t)b;
    size_t total = t->text_off[t->n_vocab - 1] + t->text_len[t->n_vocab - 1] + 1;
    t->piece = malloc(total);
    t->piece_off = malloc((size_t)t->n_vocab * sizeof *t->piece_off);
    t->piece_len = malloc((size_t)t->n_vocab * sizeof *t->piece_len);
    if (!t->piece || !t->piece_off || !t->piece_len)
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    uint32_t off = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const unsigned char *s = (const unsigned char *)t->text + t->text_off[id];
        size_t n = t->text_len[id], i = 0;
        uint32_t start = off;
        bool raw = t->attr[id] & (ATTR_CONTROL | ATTR_USER | ATTR_UNKNOWN);
        while (i < n) {
            size_t cl = raw ? 0 : utf8_char_len(s + i, n - i);
            uint32_t c = 0;
            if (cl == 2)
                c = (uint32_t)(s[i] & 0x1f) << 6 | (s[i + 1] & 0x3f);
            else if (cl == 1)
                c = s[i];
            if (cl && c < 324 && byte_of[c] >= 0) {
                t->piece[off++] = (char)byte_of[c];
                i += cl;
            } else {
                size_t k = cl ? cl : 1; /* not a byte-level char: copied as is */
                memcpy(t->piece + off, s + i, k);
                off += (uint32_t)k;
                i += k;
            }
        }
        t->piece_off[id] = start;
        t->piece_len[id] = off - start;
    }
    return 0;
}

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const struct tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->text_len[x] != t->text_len[y])
        return t->text_len[x] > t->text_len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static uint32_t key2(const char *s)
{
    return (uint32_t)(unsigned char)s[0] | (uint32_t)(unsigned char)s[1] << 8;
}

static int build_specials(struct tokenizer *t, struct err *err)
{
    t->special = malloc(((size_t)t->n_vocab) * sizeof *t->special);
    t->sp_bucket = calloc(65537, sizeof *t->sp_bucket);
    if (!t->special || !t->sp_bucket)
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->attr[id] & (ATTR_CONTROL | ATTR_USER | ATTR_UNKNOWN)) {
            t->special[t->n_special++] = id;
            t->n_user += (t->attr[id] & ATTR_USER) != 0;
        }
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special, t);
    t->sp_order = malloc(((size_t)t->n_special + 1) * sizeof *t->sp_order);
    if (!t->sp_order)
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    /* Counting sort of the multi-byte tokens by their first two bytes, keeping the
     * priority order inside a bucket. */
    for (int32_t k = 0; k < t->n_special; k++) {
        const char *s = t->text + t->text_off[t->special[k]];
        if (t->text_len[t->special[k]] >= 2)
            t->sp_bucket[key2(s) + 1]++;
        else
            t->sp_has1[(unsigned char)s[0]] = 1;
    }
    for (uint32_t k = 0; k < 65536; k++)
        t->sp_bucket[k + 1] += t->sp_bucket[k];
    uint32_t *fill = malloc(65536 * sizeof *fill);
    if (!fill)
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    memcpy(fill, t->sp_bucket, 65536 * sizeof *fill);
    for (int32_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        if (t->text_len[id] >= 2)
            t->sp_order[fill[key2(t->text + t->text_off[id])]++] = k;
    }
    free(fill);
    return 0;
}

static int compile_pre(struct tokenizer *t, const struct gguf *g, struct err *err)
{
    for (int i = 0; i < t->pre->n_regex; i++) {
        const char *pat = t->pre->regex[i];
        if (pat == TRAILING_WS)
            continue;
        int ec;
        PCRE2_SIZE eo;
        t->re[i] = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
        if (!t->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return err_set(err, ERR_INTERNAL, "%s: pre-tokenizer %s regex %d: %s at %zu",
                           gguf_path(g), t->pre->name, i, (const char *)msg, (size_t)eo);
        }
        t->re_jit[i] = pcre2_jit_compile(t->re[i], PCRE2_JIT_COMPLETE) == 0;
    }
    return 0;
}

static int load_header(struct tokenizer *t, const struct gguf *g, struct err *err)
{
    const char *s;
    size_t n;
    if (gguf_get_str(g, "tokenizer.ggml.model", &s, &n, NULL) != 0)
        return err_set(err, ERR_FORMAT, "%s: missing string key tokenizer.ggml.model",
                       gguf_path(g));
    if (n != 4 || memcmp(s, "gpt2", 4) != 0)
        return err_set(err, ERR_UNSUPPORTED, "%s: unsupported tokenizer.ggml.model '%.*s' "
                       "(supported: gpt2)", gguf_path(g), (int)(n > 64 ? 64 : n), s);
    if (gguf_get_str(g, "tokenizer.ggml.pre", &s, &n, NULL) != 0)
        return err_set(err, ERR_UNSUPPORTED, "%s: missing tokenizer.ggml.pre (supported: "
                       PRE_NAMES ")", gguf_path(g));
    for (int i = 0; i < N_OF(pre_defs); i++)
        if (strlen(pre_defs[i].name) == n && memcmp(pre_defs[i].name, s, n) == 0)
            t->pre = &pre_defs[i];
    if (!t->pre)
        return err_set(err, ERR_UNSUPPORTED, "%s: unsupported tokenizer.ggml.pre '%.*s' "
                       "(supported: " PRE_NAMES ")", gguf_path(g), (int)(n > 64 ? 64 : n), s);
    if (gguf_get_str(g, "tokenizer.chat_template", &s, &n, NULL) == 0) {
        t->chat_template = malloc(n + 1);
        if (!t->chat_template)
            return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
        memcpy(t->chat_template, s, n);
        t->chat_template[n] = '\0';
    }
    return 0;
}

int tokenizer_load(const struct gguf *g, struct tokenizer **out, struct err *err)
{
    *out = NULL;
    struct tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    int rc = load_header(t, g, err);
    if (!rc)
        rc = load_tokens(t, g, err);
    if (!rc)
        rc = load_types(t, g, err);
    if (!rc)
        rc = load_merges(t, g, err);
    if (!rc)
        rc = load_byte_tokens(t, g, err);
    if (!rc) {
        load_special_ids(t, g);
        rc = build_pieces(t, err);
    }
    if (!rc)
        rc = build_specials(t, err);
    if (!rc)
        rc = compile_pre(t, g, err);
    if (rc) {
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tokenizer_free(struct tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < MAX_REGEX; i++)
        pcre2_code_free(t->re[i]);
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->piece);
    free(t->piece_off);
    free(t->piece_len);
    free(t->type);
    free(t->attr);
    free(t->vocab_slots);
    free(t->pairs);
    free(t->special);
    free(t->sp_bucket);
    free(t->sp_order);
    free(t->chat_template);
    free(t);
}

/* ------------------------------------------------------------------------- */
/* Accessors                                                                 */

int32_t tokenizer_n_vocab(const struct tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_bos(const struct tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const struct tokenizer *t) { return t->eos; }
bool tokenizer_add_bos(const struct tokenizer *t) { return t->add_bos; }
const char *tokenizer_pre(const struct tokenizer *t) { return t->pre->name; }
const char *tokenizer_chat_template(const struct tokenizer *t) { return t->chat_template; }

bool tokenizer_is_eog(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && (t->attr[id] & ATTR_EOG);
}

const char *tokenizer_token_text(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab ? t->text + t->text_off[id] : NULL;
}

enum tokenizer_token_type tokenizer_token_type(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab ? (enum tokenizer_token_type)t->type[id] : 0;
}

int32_t tokenizer_find(const struct tokenizer *t, const char *text)
{
    return vocab_lookup(t, text, strlen(text));
}

size_t tokenizer_piece(const struct tokenizer *t, int32_t id, char *buf, size_t cap)
{
    if (id < 0 || id >= t->n_vocab)
        return 0;
    size_t n = t->piece_len[id];
    memcpy(buf, t->piece + t->piece_off[id], n < cap ? n : cap);
    return n;
}

/* ------------------------------------------------------------------------- */
/* Encoding: per-call state                                                  */

struct span {
    size_t off, len;
};

struct sym {
    int32_t id, prev, next, rank; /* rank of the pair (this, next) in the small path */
};

struct bigram {
    int32_t rank, left, right, lid, rid, result;
};

struct vec {
    void *p;
    size_t n, cap;
};

struct cache_slot {
    uint32_t tag;      /* high bits of the word's hash */
    uint32_t word_off; /* into cache_bytes */
    uint32_t ids_off;  /* into cache_ids */
    uint8_t word_len;  /* 0: free slot (cached words have 2 bytes or more) */
    uint8_t n_ids;
};

struct enc {
    const struct tokenizer *t;
    struct vec ids;    /* int32_t */
    struct vec seg[2]; /* struct span, the regex cascade's current and next lists */
    struct vec syms;   /* struct sym */
    struct vec heap;   /* struct bigram */
    struct vec wbuf;   /* char: a word in byte-level text */
    struct cache_slot *cache; /* [CACHE_SLOTS], allocated on first use */
    uint32_t cache_used;
    struct vec cache_bytes;   /* char: the cached words */
    struct vec cache_ids;     /* int32_t: their ids */
    pcre2_match_data *md;
    struct err *err;
};

/* Makes room for `more` elements of `size` bytes; false when out of memory. */
static bool vec_reserve(struct vec *v, size_t size, size_t more)
{
    if (v->n + more <= v->cap)
        return true;
    size_t cap = v->cap ? v->cap : 64;
    while (cap < v->n + more)
        cap *= 2;
    void *p = realloc(v->p, cap * size);
    if (!p)
        return false;
    v->p = p;
    v->cap = cap;
    return true;
}

static int push_id(struct enc *e, int32_t id)
{
    if (!vec_reserve(&e->ids, sizeof(int32_t), 1))
        return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
    ((int32_t *)e->ids.p)[e->ids.n++] = id;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* BPE of one word                                                           */

static int32_t pair_rank(const struct tokenizer *t, int32_t l, int32_t r, int32_t *res)
{
    const struct pair_slot *s = pair_lookup(t, l, r);
    if (!s)
        return INT32_MAX;
    *res = s->result;
    return s->rank;
}

/* Rank of the pair starting at symbol i (INT32_MAX when there is none). */
static int32_t sym_rank(const struct tokenizer *t, const struct sym *sy, int32_t i)
{
    int32_t res;
    if (i < 0 || sy[i].next < 0)
        return INT32_MAX;
    return pair_rank(t, sy[i].id, sy[sy[i].next].id, &res);
}

/* Merges symbol i with its right neighbour into token `res`. */
static void sym_merge(struct sym *sy, int32_t i, int32_t res)
{
    int32_t j = sy[i].next;
    sy[i].id = res;
    sy[i].next = sy[j].next;
    if (sy[j].next >= 0)
        sy[sy[j].next].prev = i;
    sy[j].id = -1;
}

/* Words of up to SMALL_WORD bytes: scan for the best pair each round. */
static void bpe_small(const struct tokenizer *t, struct sym *sy)
{
    for (int32_t i = 0; i >= 0; i = sy[i].next)
        sy[i].rank = sym_rank(t, sy, i);
    for (;;) {
        int32_t best = -1, best_rank = INT32_MAX, res = -1;
        for (int32_t i = 0; i >= 0; i = sy[i].next)
            if (sy[i].rank < best_rank) {
                best_rank = sy[i].rank;
                best = i;
            }
        if (best < 0)
            return;
        pair_rank(t, sy[best].id, sy[sy[best].next].id, &res);
        sym_merge(sy, best, res);
        if (sy[best].prev >= 0)
            sy[sy[best].prev].rank = sym_rank(t, sy, sy[best].prev);
        sy[best].rank = sym_rank(t, sy, best);
    }
}

static bool bigram_less(const struct bigram *a, const struct bigram *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static bool heap_push(struct vec *h, const struct tokenizer *t, const struct sym *sy, int32_t i)
{
    if (i < 0 || sy[i].next < 0)
        return true;
    struct bigram b = {0, i, sy[i].next, sy[i].id, sy[sy[i].next].id, -1};
    b.rank = pair_rank(t, b.lid, b.rid, &b.result);
    if (b.rank == INT32_MAX)
        return true;
    if (!vec_reserve(h, sizeof b, 1))
        return false;
    struct bigram *a = h->p;
    size_t k = h->n++;
    while (k > 0 && bigram_less(&b, &a[(k - 1) / 2])) {
        a[k] = a[(k - 1) / 2];
        k = (k - 1) / 2;
    }
    a[k] = b;
    return true;
}

static struct bigram heap_pop(struct vec *h)
{
    struct bigram *a = h->p, top = a[0], last = a[--h->n];
    size_t k = 0;
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bigram_less(&a[c + 1], &a[c]))
            c++;
        if (!bigram_less(&a[c], &last))
            break;
        a[k] = a[c];
        k = c;
    }
    if (h->n)
        a[k] = last;
    return top;
}

/* Long words: a heap of candidate pairs; entries made stale by a merge are
 * recognised (the symbols or their ids changed) and dropped. */
static int bpe_heap(struct enc *e, struct sym *sy)
{
    const struct tokenizer *t = e->t;
    e->heap.n = 0;
    for (int32_t i = 0; i >= 0; i = sy[i].next)
        if (!heap_push(&e->heap, t, sy, i))
            return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
    while (e->heap.n) {
        struct bigram b = heap_pop(&e->heap);
        if (sy[b.left].id != b.lid || sy[b.left].next != b.right || sy[b.right].id != b.rid)
            continue;
        sym_merge(sy, b.left, b.result);
        if (!heap_push(&e->heap, t, sy, sy[b.left].prev) || !heap_push(&e->heap, t, sy, b.left))
            return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
    }
    return 0;
}

/* BPE of a word of 2 bytes or more, appending its ids. */
static int bpe_merge_word(struct enc *e, const unsigned char *w, size_t n)
{
    const struct tokenizer *t = e->t;
    if (n > INT32_MAX / 2)
        return err_set(e->err, ERR_RANGE, "tokenizer: a %zu-byte word is too long", n);
    if (t->pre->ignore_merges) { /* the whole word may be a token of its own */
        if (!vec_reserve(&e->wbuf, 1, 2 * n))
            return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
        char *dst = e->wbuf.p;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(dst + m, t->byte_text[w[i]], 2);
            m += t->byte_text_len[w[i]];
        }
        int32_t id = vocab_lookup(t, e->wbuf.p, m);
        if (id >= 0)
            return push_id(e, id);
    }
    e->syms.n = 0;
    if (!vec_reserve(&e->syms, sizeof(struct sym), n))
        return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
    struct sym *sy = e->syms.p;
    for (size_t i = 0; i < n; i++)
        sy[i] = (struct sym){t->byte_tok[w[i]], (int32_t)i - 1,
                             i + 1 < n ? (int32_t)i + 1 : -1, INT32_MAX};
    if (n <= SMALL_WORD)
        bpe_small(t, sy);
    else {
        int rc = bpe_heap(e, sy);
        if (rc)
            return rc;
    }
    for (int32_t i = 0; i >= 0; i = sy[i].next) {
        int rc = push_id(e, sy[i].id);
        if (rc)
            return rc;
    }
    return 0;
}

/* The cache slot that holds word w, or the free slot where it would go. */
static struct cache_slot *cache_find(struct enc *e, const unsigned char *w, size_t n,
                                     uint32_t *tag)
{
    uint64_t h = hash_bytes(w, n);
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    *tag = (uint32_t)(h >> 32);
    const char *bytes = e->cache_bytes.p;
    for (;; i = (i + 1) & (CACHE_SLOTS - 1)) {
        struct cache_slot *s = &e->cache[i];
        if (s->word_len == 0 || (s->tag == *tag && s->word_len == n &&
                                 memcmp(bytes + s->word_off, w, n) == 0))
            return s;
    }
}

/* Remembers the last n_ids ids pushed as the ids of word w in free slot s; when
 * the cache is half full it is emptied first (s then points into the new table). */
static int cache_put(struct enc *e, struct cache_slot *s, uint32_t tag,
                     const unsigned char *w, size_t n, size_t n_ids)
{
    if (n_ids > UINT8_MAX)
        return 0;
    if (e->cache_used >= CACHE_SLOTS / 2) {
        memset(e->cache, 0, CACHE_SLOTS * sizeof *e->cache);
        e->cache_used = 0;
        e->cache_bytes.n = e->cache_ids.n = 0;
        s = cache_find(e, w, n, &tag);
    }
    if (!vec_reserve(&e->cache_bytes, 1, n) ||
        !vec_reserve(&e->cache_ids, sizeof(int32_t), n_ids))
        return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
    *s = (struct cache_slot){tag, (uint32_t)e->cache_bytes.n, (uint32_t)e->cache_ids.n,
                             (uint8_t)n, (uint8_t)n_ids};
    memcpy((char *)e->cache_bytes.p + e->cache_bytes.n, w, n);
    e->cache_bytes.n += n;
    memcpy((int32_t *)e->cache_ids.p + e->cache_ids.n,
           (int32_t *)e->ids.p + e->ids.n - n_ids, n_ids * sizeof(int32_t));
    e->cache_ids.n += n_ids;
    e->cache_used++;
    return 0;
}

/* BPE of one word, through the word cache when it is short. */
static int bpe_word(struct enc *e, const unsigned char *w, size_t n)
{
    if (n == 0)
        return 0;
    if (n == 1)
        return push_id(e, e->t->byte_tok[w[0]]);
    if (n > CACHE_MAX_WORD)
        return bpe_merge_word(e, w, n);
    if (!e->cache && !(e->cache = calloc(CACHE_SLOTS, sizeof *e->cache)))
        return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
    uint32_t tag;
    struct cache_slot *s = cache_find(e, w, n, &tag);
    if (s->word_len) { /* a repeat: copy its ids */
        if (!vec_reserve(&e->ids, sizeof(int32_t), s->n_ids))
            return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
        memcpy((int32_t *)e->ids.p + e->ids.n, (int32_t *)e->cache_ids.p + s->ids_off,
               s->n_ids * sizeof(int32_t));
        e->ids.n += s->n_ids;
        return 0;
    }
    size_t before = e->ids.n;
    int rc = bpe_merge_word(e, w, n);
    return rc ? rc : cache_put(e, s, tag, w, n, e->ids.n - before);
}

/* ------------------------------------------------------------------------- */
/* Pre-tokenization                                                          */

static bool push_span(struct vec *v, size_t off, size_t len)
{
    if (!vec_reserve(v, sizeof(struct span), 1))
        return false;
    ((struct span *)v->p)[v->n++] = (struct span){off, len};
    return true;
}

/* A gap between matches: one segment, or one per code point (llama-bpe). */
static bool push_gap(struct enc *e, struct vec *out, const char *text, size_t off, size_t len)
{
    if (!e->t->pre->gap_per_char)
        return push_span(out, off, len);
    for (size_t i = 0; i < len;) {
        size_t cl = utf8_char_len((const unsigned char *)text + off + i, len - i);
        cl = cl ? cl : 1;
        if (!push_span(out, off + i, cl))
            return false;
        i += cl;
    }
    return true;
}

static bool is_ws(const unsigned char *s, size_t n, size_t *cl)
{
    *cl = utf8_char_len(s, n);
    uint32_t c = s[0];
    if (*cl == 2)
        c = (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
    else if (*cl == 3)
        c = (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    else if (*cl != 1)
        return false;
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* `\s+$`: the segment's trailing whitespace run, if any, becomes its own segment. */
static bool split_trailing_ws(struct vec *out, const char *text, struct span sg)
{
    size_t start = sg.len; /* start of the trailing run */
    const unsigned char *s = (const unsigned char *)text + sg.off;
    for (size_t i = 0; i < sg.len;) {
        size_t cl;
        bool ws = is_ws(s + i, sg.len - i, &cl);
        if (!ws)
            start = sg.len;
        else if (start == sg.len)
            start = i;
        i += cl ? cl : 1;
    }
    if (start > 0 && !push_span(out, sg.off, start))
        return false;
    return start == sg.len || push_span(out, sg.off + start, sg.len - start);
}

static int split_regex(struct enc *e, int ri, struct vec *out, const char *text, struct span sg)
{
    const struct tokenizer *t = e->t;
    PCRE2_SPTR subj = (PCRE2_SPTR)(text + sg.off);
    size_t pos = 0, last = 0;
    while (pos < sg.len) {
        int rc = t->re_jit[ri] ? pcre2_jit_match(t->re[ri], subj, sg.len, pos, 0, e->md, NULL)
                               : PCRE2_ERROR_JIT_STACKLIMIT;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its stack on the heap */
            rc = pcre2_match(t->re[ri], subj, sg.len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                             e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return err_set(e->err, ERR_INTERNAL, "tokenizer: %s regex %d failed with PCRE2 "
                           "error %d", t->pre->name, ri, rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* no pattern here matches empty, but never loop */
            size_t cl = utf8_char_len(subj + ms, sg.len - ms);
            pos = ms + (cl ? cl : 1);
            continue;
        }
        if (ms > last && !push_gap(e, out, text, sg.off + last, ms - last))
            return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
        if (!push_span(out, sg.off + ms, me - ms))
            return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
        last = pos = me;
    }
    if (last < sg.len && !push_gap(e, out, text, sg.off + last, sg.len - last))
        return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
    return 0;
}

/* Valid UTF-8 text: the regex cascade, then BPE of every resulting word. */
static int encode_valid(struct enc *e, const char *text, size_t len)
{
    const struct tokenizer *t = e->t;
    struct vec *cur = &e->seg[0], *next = &e->seg[1];
    cur->n = 0;
    if (!push_span(cur, 0, len))
        return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
    for (int ri = 0; ri < t->pre->n_regex; ri++) {
        next->n = 0;
        for (size_t k = 0; k < cur->n; k++) {
            struct span sg = ((struct span *)cur->p)[k];
            if (t->pre->regex[ri] == TRAILING_WS) {
                if (!split_trailing_ws(next, text, sg))
                    return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
                continue;
            }
            int rc = split_regex(e, ri, next, text, sg);
            if (rc)
                return rc;
        }
        struct vec *tmp = cur;
        cur = next;
        next = tmp;
    }
    for (size_t k = 0; k < cur->n; k++) {
        struct span sg = ((struct span *)cur->p)[k];
        int rc = bpe_word(e, (const unsigned char *)text + sg.off, sg.len);
        if (rc)
            return rc;
    }
    return 0;
}

/* Raw text (no special tokens): valid UTF-8 runs go through the pre-tokenizer;
 * each byte that is not part of a valid character becomes its byte token. */
static int encode_raw(struct enc *e, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t start = i, cl;
        while (i < len && (cl = utf8_char_len(s + i, len - i)) != 0)
            i += cl;
        if (i > start) {
            int rc = encode_valid(e, text + start, i - start);
            if (rc)
                return rc;
        }
        if (i < len) {
            int rc = push_id(e, e->t->byte_tok[s[i]]);
            if (rc)
                return rc;
            i++;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Special-token partition                                                   */

struct occ {
    size_t pos;
    int32_t prio; /* index into t->special */
};

static int cmp_occ(const void *a, const void *b)
{
    const struct occ *x = a, *y = b;
    if (x->prio != y->prio)
        return x->prio < y->prio ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_occ_pos(const void *a, const void *b)
{
    const struct occ *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Byte ranges of caller text (chat message contents) where control tokens are not
 * recognised even with PARSE_SPECIAL. */
struct plain_ranges {
    const struct tokenizer_span *r;
    size_t n;
};

/* True when [pos, pos+n) overlaps a plain range. Linear: a prompt has few messages and
 * this runs only for text that already matched a special token. */
static bool in_plain(const struct plain_ranges *pl, size_t pos, size_t n)
{
    for (size_t i = 0; i < pl->n; i++)
        if (pl->r[i].len && pos < pl->r[i].off + pl->r[i].len && pl->r[i].off < pos + n)
            return true;
    return false;
}

/* Whether the occurrence of token id at [pos, pos+n) may become that token: user-defined
 * tokens always, control tokens with PARSE_SPECIAL outside the plain ranges. */
static bool occ_allowed(const struct tokenizer *t, int32_t id, bool parse_special,
                        const struct plain_ranges *pl, size_t pos, size_t n)
{
    if (t->attr[id] & ATTR_USER)
        return true;
    return parse_special && !in_plain(pl, pos, n);
}

/* Every position where an allowed special token's text occurs. */
static int find_occurrences(struct enc *e, const char *text, size_t len, bool parse_special,
                            const struct plain_ranges *pl, struct vec *occ)
{
    const struct tokenizer *t = e->t;
    for (size_t pos = 0; pos < len; pos++) {
        unsigned char c = (unsigned char)text[pos];
        size_t lo = 0, hi = 0;
        if (pos + 1 < len) {
            uint32_t k = key2(text + pos);
            lo = t->sp_bucket[k];
            hi = t->sp_bucket[k + 1];
        }
        for (size_t b = lo; b < hi; b++) {
            int32_t prio = t->sp_order[b], id = t->special[prio];
            size_t n = t->text_len[id];
            if (n <= len - pos && memcmp(text + pos, t->text + t->text_off[id], n) == 0 &&
                occ_allowed(t, id, parse_special, pl, pos, n)) {
                if (!vec_reserve(occ, sizeof(struct occ), 1))
                    return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
                ((struct occ *)occ->p)[occ->n++] = (struct occ){pos, prio};
            }
        }
        if (!t->sp_has1[c])
            continue;
        for (int32_t prio = t->n_special - 1; prio >= 0; prio--) { /* short ones sit last */
            int32_t id = t->special[prio];
            if (t->text_len[id] != 1)
                break;
            if ((unsigned char)t->text[t->text_off[id]] == c &&
                occ_allowed(t, id, parse_special, pl, pos, 1)) {
                if (!vec_reserve(occ, sizeof(struct occ), 1))
                    return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
                ((struct occ *)occ->p)[occ->n++] = (struct occ){pos, prio};
            }
        }
    }
    return 0;
}

/* Replays llama.cpp's order (tokens by priority, each leftmost non-overlapping in
 * the still-raw text) on the collected occurrences; keeps the accepted ones, sorted
 * by position. */
static int resolve_occurrences(struct enc *e, size_t len, struct vec *occ)
{
    struct occ *o = occ->p;
    qsort(o, occ->n, sizeof *o, cmp_occ);
    uint8_t *covered = calloc(len / 8 + 1, 1);
    if (!covered)
        return err_set(e->err, ERR_NOMEM, "tokenizer: out of memory");
    size_t kept = 0, last_end = 0;
    int32_t last_prio = -1;
    for (size_t k = 0; k < occ->n; k++) {
        size_t n = e->t->text_len[e->t->special[o[k].prio]];
        if (o[k].prio != last_prio) {
            last_prio = o[k].prio;
            last_end = 0;
        }
        if (o[k].pos < last_end)
            continue;
        bool free_range = true;
        for (size_t i = o[k].pos; i < o[k].pos + n && free_range; i++)
            free_range = !(covered[i / 8] & (1u << (i % 8)));
        if (!free_range)
            continue;
        for (size_t i = o[k].pos; i < o[k].pos + n; i++)
            covered[i / 8] |= (uint8_t)(1u << (i % 8));
        last_end = o[k].pos + n;
        o[kept++] = o[k];
    }
    free(covered);
    occ->n = kept;
    qsort(o, kept, sizeof *o, cmp_occ_pos);
    return 0;
}

static int encode_all(struct enc *e, const char *text, size_t len, int flags,
                      const struct plain_ranges *pl)
{
    const struct tokenizer *t = e->t;
    int rc = 0;
    if ((flags & TOKENIZER_ADD_BOS) && t->bos >= 0 && (rc = push_id(e, t->bos)))
        return rc;
    bool parse = (flags & TOKENIZER_PARSE_SPECIAL) != 0;
    struct vec occ = {0};
    if ((parse && t->n_special > 0) || t->n_user > 0) {
        rc = find_occurrences(e, text, len, parse, pl, &occ);
        if (!rc && occ.n)
            rc = resolve_occurrences(e, len, &occ);
    }
    size_t at = 0;
    for (size_t k = 0; !rc && k < occ.n; k++) {
        const struct occ *o = &((struct occ *)occ.p)[k];
        int32_t id = t->special[o->prio];
        rc = encode_raw(e, text + at, o->pos - at);
        if (!rc)
            rc = push_id(e, id);
        at = o->pos + t->text_len[id];
    }
    if (!rc)
        rc = encode_raw(e, text + at, len - at);
    free(occ.p);
    return rc;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, int flags,
                     int32_t **ids, size_t *n_ids, struct err *err)
{
    return tokenizer_encode_spans(t, text, len, flags, NULL, 0, ids, n_ids, err);
}

int tokenizer_encode_spans(const struct tokenizer *t, const char *text, size_t len, int flags,
                           const struct tokenizer_span *plain, size_t n_plain, int32_t **ids,
                           size_t *n_ids, struct err *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (!text && len)
        return err_set(err, ERR_INVALID, "tokenizer: NULL text of length %zu", len);
    if (!plain && n_plain)
        return err_set(err, ERR_INVALID, "tokenizer: NULL plain ranges (%zu of them)", n_plain);
    for (size_t i = 0; i < n_plain; i++)
        if (plain[i].off > len || plain[i].len > len - plain[i].off)
            return err_set(err, ERR_RANGE,
                           "tokenizer: plain range %zu (offset %zu, length %zu) is outside "
                           "the %zu-byte text", i, plain[i].off, plain[i].len, len);
    struct plain_ranges pl = {plain, n_plain};
    struct enc e = {.t = t, .err = err};
    e.md = pcre2_match_data_create(1, NULL);
    int rc = e.md ? 0 : err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    if (!rc)
        rc = encode_all(&e, text, len, flags, &pl);
    if (!rc && !e.ids.p && !(e.ids.p = malloc(sizeof(int32_t))))
        rc = err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    pcre2_match_data_free(e.md);
    free(e.seg[0].p);
    free(e.seg[1].p);
    free(e.syms.p);
    free(e.heap.p);
    free(e.wbuf.p);
    free(e.cache);
    free(e.cache_bytes.p);
    free(e.cache_ids.p);
    if (rc) {
        free(e.ids.p);
        return rc;
    }
    *ids = e.ids.p;
    *n_ids = e.ids.n;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Decoding                                                                  */

int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, char **out,
                     size_t *out_len, struct err *err)
{
    *out = NULL;
    *out_len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return err_set(err, ERR_RANGE, "tokenizer: token id %d at %zu outside vocabulary "
                           "of %d", ids[i], i, t->n_vocab);
        total += t->piece_len[ids[i]];
    }
    char *s = malloc(total + 1);
    if (!s)
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory for %zu bytes", total);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(s + off, t->piece + t->piece_off[ids[i]], t->piece_len[ids[i]]);
        off += t->piece_len[ids[i]];
    }
    s[off] = '\0';
    *out = s;
    *out_len = off;
    return 0;
}

void tokenizer_detok_init(struct tokenizer_detok *d)
{
    memset(d, 0, sizeof *d);
}

/* Output sink that counts everything and writes what fits. */
struct sink {
    char *buf;
    size_t cap, n;
};

static void sink_put(struct sink *k, const void *p, size_t n)
{
    if (k->n + n <= k->cap)
        memcpy(k->buf + k->n, p, n);
    k->n += n;
}

static const char REPLACEMENT[3] = {(char)0xef, (char)0xbf, (char)0xbd};

/* Expected length of a character from its lead byte; 0 if it cannot start one. */
static size_t utf8_lead_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

static bool utf8_cont_ok(unsigned char lead, size_t k, unsigned char c)
{
    if (k == 1) {
        unsigned char lo = lead == 0xe0 ? 0xa0 : lead == 0xf0 ? 0x90 : 0x80;
        unsigned char hi = lead == 0xed ? 0x9f : lead == 0xf4 ? 0x8f : 0xbf;
        return c >= lo && c <= hi;
    }
    return (c & 0xc0) == 0x80;
}

size_t tokenizer_detok_push(const struct tokenizer *t, struct tokenizer_detok *d, int32_t id,
                            char *buf, size_t cap)
{
    const unsigned char *piece = NULL;
    size_t np = d->n_pending, n = np;
    if (id >= 0 && id < t->n_vocab) {
        piece = (const unsigned char *)t->piece + t->piece_off[id];
        n += t->piece_len[id];
    }
    unsigned char b[4];
#define AT(k) ((k) < np ? (unsigned char)d->pending[k] : piece[(k) - np])
    struct sink k = {buf, cap, 0};
    size_t i = 0, keep = 0;
    while (i < n) {
        unsigned char c = AT(i);
        size_t L = utf8_lead_len(c), m = 1;
        if (L == 0) {
            sink_put(&k, REPLACEMENT, 3);
            i++;
            continue;
        }
        b[0] = c;
        while (m < L && i + m < n && utf8_cont_ok(c, m, AT(i + m))) {
            b[m] = AT(i + m);
            m++;
        }
        if (m == L) {
            sink_put(&k, b, L);
        } else if (i + m == n) { /* an unfinished character: hold it */
            keep = m;
            break;
        } else {
            sink_put(&k, REPLACEMENT, 3);
        }
        i += m;
    }
    if (k.n <= cap) {
        char held[4];
        for (size_t j = 0; j < keep; j++)
            held[j] = (char)AT(i + j);
        memcpy(d->pending, held, keep);
        d->n_pending = keep;
    }
#undef AT
    return k.n;
}

size_t tokenizer_detok_flush(struct tokenizer_detok *d, char *buf, size_t cap)
{
    if (d->n_pending == 0)
        return 0;
    if (cap < 3)
        return 3;
    memcpy(buf, REPLACEMENT, 3);
    d->n_pending = 0;
    return 3;
}
