/*
 * cli_inspect: `deepseek inspect FILE.gguf` prints a GGUF file's header, metadata and
 * tensors. All validation is gguf_open's; this file only formats. Strings come from
 * untrusted files, so they are printed quoted with control bytes and invalid UTF-8
 * escaped, and long strings and arrays are abbreviated.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "model/gguf.h"

#define STR_SHOWN 64  /* bytes of a string value printed before "..." */
#define ARR_SHOWN 5   /* array elements printed before "..." */
#define ELEM_SHOWN 32 /* bytes of each string array element printed */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek inspect [--help] FILE.gguf\n"
            "\n"
            "Validates a GGUF file (v2/v3) and prints its header, metadata (key, type,\n"
            "value; long strings and arrays abbreviated) and tensors (name, type, shape,\n"
            "offset in the data section, bytes), then the total parameter count.\n"
            "Exit status: 0 ok, 2 invalid file or usage.\n");
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (s[0] >= 0xf5 || len == 0 || len > n)
        return 0;
    for (size_t k = 1; k < len; k++)
        if ((s[k] & 0xc0) != 0x80)
            return 0;
    /* overlong 3/4-byte forms, surrogates and code points above U+10FFFF */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return len;
}

/* Prints s, escaping what a terminal would interpret; at most `max` bytes. */
static void print_escaped(const char *str, size_t len, size_t max)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t shown = len < max ? len : max;
    for (size_t i = 0; i < shown;) {
        unsigned char c = s[i];
        size_t u = c >= 0x80 ? utf8_len(s + i, shown - i) : 0;
        if (u) {
            fwrite(s + i, 1, u, stdout);
            i += u;
            continue;
        }
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
        i++;
    }
}

static void print_str(const char *s, size_t len, size_t max)
{
    putchar('"');
    print_escaped(s, len, max);
    putchar('"');
    if (max < len)
        printf("... (%zu bytes)", len);
}

/* A key or tensor name, escaped, padded to `width` columns. */
static void print_name(const char *name, int width)
{
    size_t len = strlen(name);
    print_escaped(name, len, len);
    for (int k = (int)len; k < width; k++)
        putchar(' ');
}

static void print_scalar(const struct gguf *g, int64_t i)
{
    enum gguf_type t = gguf_kv_type(g, i);
    uint64_t u;
    int64_t v;
    double d;
    if (t == GGUF_TYPE_BOOL && gguf_kv_as_u64(g, i, &u))
        fputs(u ? "true" : "false", stdout);
    else if ((t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) && gguf_kv_as_f64(g, i, &d))
        printf(t == GGUF_TYPE_FLOAT32 ? "%.7g" : "%.17g", d);
    else if (gguf_kv_as_i64(g, i, &v))
        printf("%" PRId64, v);
    else if (gguf_kv_as_u64(g, i, &u))
        printf("%" PRIu64, u);
}

static void print_array(const struct gguf *g, int64_t i)
{
    enum gguf_type et;
    uint64_t n;
    gguf_kv_array(g, i, &et, &n);
    printf("[%s \xc3\x97 %" PRIu64 "]", gguf_value_type_name(et), n);
    for (uint64_t j = 0; j < n && j < ARR_SHOWN; j++) {
        const char *s;
        size_t len;
        int64_t v;
        double d;
        fputs(j ? ", " : " ", stdout);
        if (gguf_arr_str(g, i, j, &s, &len))
            print_str(s, len, ELEM_SHOWN);
        else if (et == GGUF_TYPE_BOOL && gguf_arr_i64(g, i, j, &v))
            fputs(v ? "true" : "false", stdout);
        else if (gguf_arr_i64(g, i, j, &v))
            printf("%" PRId64, v);
        else if (gguf_arr_f64(g, i, j, &d))
            printf("%.7g", d);
    }
    if (n > ARR_SHOWN)
        printf(", ... (%" PRIu64 " more)", n - ARR_SHOWN);
}

static void print_metadata(const struct gguf *g)
{
    printf("\nmetadata (%" PRId64 " keys):\n", gguf_n_kv(g));
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        enum gguf_type t = gguf_kv_type(g, i);
        const char *s;
        size_t len;
        fputs("  ", stdout);
        print_name(gguf_kv_key(g, i), 44);
        printf(" %-8s ", gguf_value_type_name(t));
        if (t == GGUF_TYPE_ARRAY)
            print_array(g, i);
        else if (gguf_kv_as_str(g, i, &s, &len))
            print_str(s, len, STR_SHOWN);
        else
            print_scalar(g, i);
        putchar('\n');
    }
}

/* "[256, 151936]" */
static void format_shape(const struct gguf_tensor *t, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

/* "41914112" -> "41,914,112" */
static void format_thousands(uint64_t v, char *buf, size_t cap)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    size_t k = 0;
    for (int i = 0; i < n && k + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = '\0';
}

static void print_tensors(const struct gguf *g)
{
    printf("\ntensors (%" PRId64 "):\n", gguf_n_tensors(g));
    if (gguf_n_tensors(g))
        printf("  %-36s %-6s %-22s %12s %12s\n", "name", "type", "shape", "offset", "bytes");
    uint64_t params = 0, bytes = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        char shape[128];
        format_shape(t, shape, sizeof shape);
        fputs("  ", stdout);
        print_name(t->name, 36);
        printf(" %-6s %-22s %12" PRIu64 " %12" PRIu64 "\n", gguf_type_name(t->type), shape,
               t->offset, t->nbytes);
        params += t->n_elems; /* each <= 2^63, and all lie in the file: no overflow */
        bytes += t->nbytes;
    }
    char pretty[40];
    format_thousands(params, pretty, sizeof pretty);
    printf("\nparameters: %" PRIu64 " (%s)\ntensor data: %" PRIu64 " bytes\n", params, pretty,
           bytes);
}

int cli_inspect(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "deepseek inspect: unknown option '%s' (try --help)\n", argv[i]);
            return 2;
        }
        if (path) {
            fprintf(stderr, "deepseek inspect: expected one file, got more (try --help)\n");
            return 2;
        }
        path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "deepseek inspect: missing FILE.gguf (try --help)\n");
        return 2;
    }
    struct gguf *g;
    struct err err;
    if (gguf_open(path, &g, &err)) {
        fprintf(stderr, "deepseek inspect: %s\n", err.msg);
        return 2;
    }
    printf("file: %s\nversion: %u\nalignment: %u\nfile size: %" PRIu64 " bytes\n"
           "data offset: %" PRIu64 "\nn_kv: %" PRId64 "\nn_tensors: %" PRId64 "\n",
           path, gguf_version(g), gguf_alignment(g), gguf_file_size(g), gguf_data_offset(g),
           gguf_n_kv(g), gguf_n_tensors(g));
    print_metadata(g);
    print_tensors(g);
    gguf_close(g);
    return 0;
}
