/*
 * gguf: see gguf.h. The reader validates the whole header in one pass (parse_*),
 * recording for every kv where its value lies in the file, so accessors only decode
 * bytes already known to be in range. Duplicate keys / tensor names are found by
 * sorting an index (which also serves the O(log n) lookups), overlapping tensor data
 * by sorting tensors by offset. The writer keeps each kv's value serialized exactly as
 * it goes into the file, so copying a kv from a reader is one memcpy.
 */
#include "model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* Type tables                                                               */

struct type_info {
    const char *name;
    uint32_t blk;   /* elements per block */
    uint32_t bytes; /* bytes per block */
};

static const struct type_info type_table[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"F32", 1, 4},       [GGML_TYPE_F16] = {"F16", 1, 2},
    [GGML_TYPE_Q4_0] = {"Q4_0", 32, 18},   [GGML_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [GGML_TYPE_Q5_0] = {"Q5_0", 32, 22},   [GGML_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [GGML_TYPE_Q8_0] = {"Q8_0", 32, 34},   [GGML_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [GGML_TYPE_Q2_K] = {"Q2_K", 256, 84},  [GGML_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [GGML_TYPE_Q4_K] = {"Q4_K", 256, 144}, [GGML_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [GGML_TYPE_Q6_K] = {"Q6_K", 256, 210}, [GGML_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [GGML_TYPE_I8] = {"I8", 1, 1},         [GGML_TYPE_I16] = {"I16", 1, 2},
    [GGML_TYPE_I32] = {"I32", 1, 4},       [GGML_TYPE_I64] = {"I64", 1, 8},
    [GGML_TYPE_F64] = {"F64", 1, 8},       [GGML_TYPE_BF16] = {"BF16", 1, 2},
};

static const char *const value_type_names[GGUF_TYPE_COUNT] = {
    "uint8", "int8",   "uint16", "int16", "uint32", "int32",  "float32",
    "bool",  "string", "array",  "uint64", "int64", "float64",
};

/* Bytes of one value of a fixed-size type; 0 for string/array/unknown. */
static uint32_t value_size(enum gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

bool gguf_type_size(enum ggml_type type, uint32_t *block_elems, uint32_t *block_bytes)
{
    if ((int)type < 0 || type >= GGML_TYPE_COUNT || !type_table[type].name)
        return false;
    if (block_elems)
        *block_elems = type_table[type].blk;
    if (block_bytes)
        *block_bytes = type_table[type].bytes;
    return true;
}

const char *gguf_type_name(enum ggml_type type)
{
    if ((int)type < 0 || type >= GGML_TYPE_COUNT || !type_table[type].name)
        return "?";
    return type_table[type].name;
}

int gguf_type_from_name(const char *name)
{
    for (int t = 0; name && t < GGML_TYPE_COUNT; t++)
        if (type_table[t].name && !strcasecmp(type_table[t].name, name))
            return t;
    return -1;
}

const char *gguf_value_type_name(enum gguf_type type)
{
    if ((int)type < 0 || type >= GGUF_TYPE_COUNT)
        return "?";
    return value_type_names[type];
}

/* ------------------------------------------------------------------------- */
/* Decoding little-endian values (independent of host byte order)            */

static uint64_t le_get(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned k = 0; k < n; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

/* A decoded number: exactly one of the three members is meaningful. */
struct num {
    enum { NUM_U, NUM_I, NUM_F } kind;
    uint64_t u;
    int64_t i;
    double f;
};

/* Decodes a value of fixed-size type t at p (t must have value_size(t) > 0). */
static struct num num_decode(enum gguf_type t, const uint8_t *p)
{
    struct num n = {NUM_U, 0, 0, 0.0};
    uint64_t raw = le_get(p, value_size(t));
    switch (t) {
    case GGUF_TYPE_INT8: n.kind = NUM_I; n.i = (int8_t)raw; break;
    case GGUF_TYPE_INT16: n.kind = NUM_I; n.i = (int16_t)raw; break;
    case GGUF_TYPE_INT32: n.kind = NUM_I; n.i = (int32_t)raw; break;
    case GGUF_TYPE_INT64: n.kind = NUM_I; n.i = (int64_t)raw; break;
    case GGUF_TYPE_FLOAT32: {
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, sizeof f);
        n.kind = NUM_F;
        n.f = f;
        break;
    }
    case GGUF_TYPE_FLOAT64: {
        double d;
        memcpy(&d, &raw, sizeof d);
        n.kind = NUM_F;
        n.f = d;
        break;
    }
    default: n.u = raw; break; /* unsigned and bool */
    }
    return n;
}

static bool num_to_u64(struct num n, uint64_t *out)
{
    if (n.kind == NUM_U)
        *out = n.u;
    else if (n.kind == NUM_I && n.i >= 0)
        *out = (uint64_t)n.i;
    else
        return false;
    return true;
}

static bool num_to_i64(struct num n, int64_t *out)
{
    if (n.kind == NUM_U && n.u <= (uint64_t)INT64_MAX)
        *out = (int64_t)n.u;
    else if (n.kind == NUM_I)
        *out = n.i;
    else
        return false;
    return true;
}

static double num_to_f64(struct num n)
{
    return n.kind == NUM_F ? n.f : n.kind == NUM_I ? (double)n.i : (double)n.u;
}

/* ------------------------------------------------------------------------- */
/* The reader's state                                                        */

struct gguf_kv {
    char *key;
    enum gguf_type type;
    uint64_t entry_off; /* where the kv entry (its key) starts */
    uint64_t val_off;   /* where the value starts (after the u32 type) */
    uint64_t val_len;   /* bytes of the value as stored */
    struct num num;     /* scalars of fixed-size type */
    enum gguf_type arr_type;
    uint64_t arr_n;
    uint64_t arr_off;   /* first element */
    uint64_t *str_offs; /* string arrays: offset of each element's length prefix */
};

struct gguf {
    char *name;
    const uint8_t *base;
    uint64_t size;
    bool mapped;        /* base is ours to munmap, map_len bytes */
    size_t map_len;
    int fd;             /* GGUF_LOAD_READ: the file, kept open (see gguf_open_as); else -1 */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    struct gguf_kv *kvs;
    int64_t n_kv;
    struct gguf_tensor *tensors;
    uint64_t *tensor_info_off; /* where each tensor's info starts, for messages */
    int64_t n_tensors;
    int64_t *kv_by_key;     /* kv indices sorted by key */
    int64_t *tensor_by_name; /* tensor indices sorted by name */
};

struct parser {
    struct gguf *g;
    uint64_t off;
    char ctx[200]; /* what is being parsed, e.g. "key 'general.name' (kv 3)" */
    struct err *err;
};

/* Writes a printable rendering of s (at most 80 bytes) into dst. Names in
 * messages come from untrusted files, so control bytes must not reach a terminal. */
static void printable(char *dst, size_t cap, const char *s, size_t len)
{
    size_t k = 0, lim = len > 80 ? 80 : len;
    for (size_t j = 0; j < lim && k + 4 < cap; j++) {
        unsigned char c = (unsigned char)s[j];
        dst[k++] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (lim < len && k + 4 < cap) {
        memcpy(dst + k, "...", 3);
        k += 3;
    }
    dst[k] = '\0';
}

static int perr(struct parser *p, uint64_t at, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "<file>: <ctx> at offset <at>: <message>" */
static int perr(struct parser *p, uint64_t at, int code, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(p->err, code, "%s: %s at offset %" PRIu64 ": %s", p->g->name, p->ctx, at,
                   msg);
}

static uint64_t left(const struct parser *p)
{
    return p->g->size - p->off;
}

/* Reads an n-byte little-endian integer named `what`. */
static int rd_int(struct parser *p, unsigned n, const char *what, uint64_t *out)
{
    *out = 0;
    if (left(p) < n)
        return perr(p, p->off, ERR_FORMAT,
                    "truncated: %s needs %u bytes, file ends at %" PRIu64, what, n,
                    p->g->size);
    *out = le_get(p->g->base + p->off, n);
    p->off += n;
    return 0;
}

static int rd_u32(struct parser *p, const char *what, uint32_t *out)
{
    uint64_t v;
    int rc = rd_int(p, 4, what, &v);
    *out = (uint32_t)v;
    return rc;
}

/* Reads a GGUF string (u64 length + bytes); *s points into the file. */
static int rd_str(struct parser *p, const char *what, const char **s, uint64_t *len)
{
    uint64_t at = p->off, n;
    int rc = rd_int(p, 8, what, &n);
    if (rc)
        return rc;
    if (n > left(p))
        return perr(p, at, ERR_FORMAT, "%s length %" PRIu64 " exceeds file size %" PRIu64,
                    what, n, p->g->size);
    *s = (const char *)p->g->base + p->off;
    *len = n;
    p->off += n;
    return 0;
}

/* Reads a key or tensor name and returns a NUL-terminated copy in *out. */
static int rd_name(struct parser *p, const char *what, char **out)
{
    uint64_t at = p->off, len = 0;
    const char *s = NULL;
    int rc = rd_str(p, what, &s, &len);
    if (rc)
        return rc;
    if (len == 0)
        return perr(p, at, ERR_FORMAT, "empty %s", what);
    if (memchr(s, '\0', len))
        return perr(p, at, ERR_FORMAT, "%s contains a NUL byte", what);
    *out = strndup(s, len);
    if (!*out)
        return perr(p, at, ERR_NOMEM, "out of memory copying %s", what);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Parsing metadata                                                          */

static int parse_array(struct parser *p, struct gguf_kv *kv)
{
    uint32_t et;
    uint64_t at = p->off, n;
    int rc = rd_u32(p, "array element type", &et);
    if (rc || (rc = rd_int(p, 8, "array count", &n)))
        return rc;
    if (et == GGUF_TYPE_ARRAY)
        return perr(p, at, ERR_UNSUPPORTED, "nested arrays are not supported");
    if (et >= GGUF_TYPE_COUNT)
        return perr(p, at, ERR_FORMAT, "unknown array element type %u", et);
    kv->arr_type = (enum gguf_type)et;
    kv->arr_n = n;
    kv->arr_off = p->off;
    uint32_t es = et == GGUF_TYPE_STRING ? 8 : value_size(kv->arr_type);
    /* Every element takes at least es bytes: absurd counts fail here, before
     * anything is allocated. */
    if (n > left(p) / es)
        return perr(p, at, ERR_FORMAT,
                    "array count %" PRIu64 " of %s exceeds the %" PRIu64
                    " bytes left in the file",
                    n, value_type_names[et], left(p));
    if (et == GGUF_TYPE_BOOL) {
        for (uint64_t j = 0; j < n; j++)
            if (p->g->base[p->off + j] > 1)
                return perr(p, p->off + j, ERR_FORMAT,
                            "array element %" PRIu64 ": bool value %u is not 0 or 1", j,
                            p->g->base[p->off + j]);
    }
    if (et != GGUF_TYPE_STRING) {
        p->off += n * es;
        return 0;
    }
    kv->str_offs = malloc((n ? n : 1) * sizeof *kv->str_offs);
    if (!kv->str_offs)
        return perr(p, at, ERR_NOMEM, "out of memory indexing %" PRIu64 " strings", n);
    for (uint64_t j = 0; j < n; j++) {
        const char *s;
        uint64_t len;
        kv->str_offs[j] = p->off;
        if ((rc = rd_str(p, "array string", &s, &len)))
            return rc;
    }
    return 0;
}

static int parse_value(struct parser *p, struct gguf_kv *kv)
{
    kv->val_off = p->off;
    if (kv->type == GGUF_TYPE_ARRAY)
        return parse_array(p, kv);
    if (kv->type == GGUF_TYPE_STRING) {
        const char *s;
        uint64_t len;
        return rd_str(p, "string", &s, &len);
    }
    uint32_t sz = value_size(kv->type);
    if (left(p) < sz)
        return perr(p, p->off, ERR_FORMAT,
                    "truncated: %s value needs %u bytes, file ends at %" PRIu64,
                    value_type_names[kv->type], sz, p->g->size);
    kv->num = num_decode(kv->type, p->g->base + p->off);
    if (kv->type == GGUF_TYPE_BOOL && kv->num.u > 1)
        return perr(p, p->off, ERR_FORMAT, "bool value %" PRIu64 " is not 0 or 1", kv->num.u);
    p->off += sz;
    return 0;
}

static int parse_kv(struct parser *p, int64_t i)
{
    struct gguf_kv *kv = &p->g->kvs[i];
    kv->entry_off = p->off;
    snprintf(p->ctx, sizeof p->ctx, "kv %" PRId64, i);
    int rc = rd_name(p, "key", &kv->key);
    if (rc)
        return rc;
    char shown[100];
    printable(shown, sizeof shown, kv->key, strlen(kv->key));
    snprintf(p->ctx, sizeof p->ctx, "key '%s' (kv %" PRId64 ")", shown, i);
    uint64_t at = p->off;
    uint32_t t;
    if ((rc = rd_u32(p, "value type", &t)))
        return rc;
    if (t >= GGUF_TYPE_COUNT)
        return perr(p, at, ERR_FORMAT, "unknown value type %u", t);
    kv->type = (enum gguf_type)t;
    if ((rc = parse_value(p, kv)))
        return rc;
    kv->val_len = p->off - kv->val_off;
    return 0;
}

static int cmp_kv_key(const void *a, const void *b, void *ctx)
{
    const struct gguf_kv *kvs = ctx;
    return strcmp(kvs[*(const int64_t *)a].key, kvs[*(const int64_t *)b].key);
}

/* Sorts the key index and rejects duplicate keys. */
static int index_keys(struct parser *p)
{
    struct gguf *g = p->g;
    g->kv_by_key = malloc((size_t)(g->n_kv ? g->n_kv : 1) * sizeof *g->kv_by_key);
    if (!g->kv_by_key)
        return err_set(p->err, ERR_NOMEM, "%s: out of memory", g->name);
    for (int64_t i = 0; i < g->n_kv; i++)
        g->kv_by_key[i] = i;
    qsort_r(g->kv_by_key, (size_t)g->n_kv, sizeof *g->kv_by_key, cmp_kv_key, g->kvs);
    for (int64_t i = 1; i < g->n_kv; i++) {
        const struct gguf_kv *a = &g->kvs[g->kv_by_key[i - 1]], *b = &g->kvs[g->kv_by_key[i]];
        if (strcmp(a->key, b->key))
            continue;
        if (a->entry_off > b->entry_off) {
            const struct gguf_kv *t = a;
            a = b;
            b = t;
        }
        char shown[100];
        printable(shown, sizeof shown, a->key, strlen(a->key));
        return err_set(p->err, ERR_FORMAT,
                       "%s: duplicate key '%s' at offset %" PRIu64 " (first at offset %" PRIu64
                       ")",
                       g->name, shown, b->entry_off, a->entry_off);
    }
    return 0;
}

/* Applies general.alignment: a uint32 power of two when present. */
static int parse_alignment(struct parser *p)
{
    struct gguf *g = p->g;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = gguf_find_key(g, "general.alignment");
    if (i < 0)
        return 0;
    const struct gguf_kv *kv = &g->kvs[i];
    snprintf(p->ctx, sizeof p->ctx, "key 'general.alignment' (kv %" PRId64 ")", i);
    if (kv->type != GGUF_TYPE_UINT32)
        return perr(p, kv->entry_off, ERR_FORMAT, "type %s, expected uint32",
                    value_type_names[kv->type]);
    uint64_t a = kv->num.u;
    if (a == 0 || (a & (a - 1)))
        return perr(p, kv->entry_off, ERR_FORMAT, "alignment %" PRIu64 " is not a power of two",
                    a);
    g->alignment = (uint32_t)a;
    return 0;
}

static int parse_kvs(struct parser *p, uint64_t n_kv)
{
    struct gguf *g = p->g;
    g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
    if (!g->kvs)
        return err_set(p->err, ERR_NOMEM, "%s: out of memory for %" PRIu64 " kvs", g->name,
                       n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1; /* so gguf_close frees what parse_kv allocated */
        int rc = parse_kv(p, (int64_t)i);
        if (rc)
            return rc;
    }
    int rc = index_keys(p);
    return rc ? rc : parse_alignment(p);
}

/* ------------------------------------------------------------------------- */
/* Parsing tensor infos                                                      */

static int parse_shape(struct parser *p, struct gguf_tensor *t)
{
    uint64_t at = p->off;
    int rc = rd_u32(p, "n_dims", &t->n_dims);
    if (rc)
        return rc;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return perr(p, at, ERR_FORMAT, "n_dims %u is out of range 1..%d", t->n_dims,
                    GGUF_MAX_DIMS);
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        at = p->off;
        if (d < t->n_dims && (rc = rd_int(p, 8, "dimension", &ne)))
            return rc;
        /* Zero-sized dimensions are legal in ggml but no model needs them; refusing
         * them keeps row counts and divisions safe for every consumer. */
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return perr(p, at, ERR_FORMAT, "dimension %u is %" PRIu64 " (must be 1..2^63-1)", d,
                        ne);
        if (n_elems > (uint64_t)INT64_MAX / ne)
            return perr(p, at, ERR_FORMAT, "element count overflows at dimension %u", d);
        n_elems *= ne;
        t->ne[d] = (int64_t)ne;
    }
    t->n_elems = n_elems;
    return 0;
}

static int parse_tensor_info(struct parser *p, int64_t i)
{
    struct gguf *g = p->g;
    struct gguf_tensor *t = &g->tensors[i];
    g->tensor_info_off[i] = p->off;
    snprintf(p->ctx, sizeof p->ctx, "tensor %" PRId64, i);
    int rc = rd_name(p, "tensor name", (char **)&t->name);
    if (rc)
        return rc;
    char shown[100];
    printable(shown, sizeof shown, t->name, strlen(t->name));
    snprintf(p->ctx, sizeof p->ctx, "tensor '%s' (tensor %" PRId64 ")", shown, i);
    if ((rc = parse_shape(p, t)))
        return rc;
    uint64_t at = p->off;
    uint32_t type, blk, bytes;
    if ((rc = rd_u32(p, "tensor type", &type)))
        return rc;
    if (!gguf_type_size((enum ggml_type)type, &blk, &bytes))
        return perr(p, at, ERR_UNSUPPORTED, "unknown tensor type %u", type);
    t->type = (enum ggml_type)type;
    if ((uint64_t)t->ne[0] % blk)
        return perr(p, at, ERR_FORMAT,
                    "row length %" PRId64 " is not a multiple of the %s block size %u", t->ne[0],
                    type_table[type].name, blk);
    uint64_t blocks = t->n_elems / blk;
    if (blocks > UINT64_MAX / bytes)
        return perr(p, at, ERR_FORMAT, "byte size overflows");
    t->nbytes = blocks * bytes;
    at = p->off;
    if ((rc = rd_int(p, 8, "tensor offset", &t->offset)))
        return rc;
    if (t->offset % g->alignment)
        return perr(p, at, ERR_FORMAT,
                    "data offset %" PRIu64 " is not a multiple of the alignment %u", t->offset,
                    g->alignment);
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b, void *ctx)
{
    const struct gguf_tensor *ts = ctx;
    return strcmp(ts[*(const int64_t *)a].name, ts[*(const int64_t *)b].name);
}

static int cmp_tensor_off(const void *a, const void *b, void *ctx)
{
    const struct gguf_tensor *ts = ctx;
    uint64_t x = ts[*(const int64_t *)a].offset, y = ts[*(const int64_t *)b].offset;
    return x < y ? -1 : x > y;
}

/* Sorts the name index and rejects duplicate names. */
static int index_tensor_names(struct parser *p)
{
    struct gguf *g = p->g;
    int64_t *ix = g->tensor_by_name;
    for (int64_t i = 0; i < g->n_tensors; i++)
        ix[i] = i;
    qsort_r(ix, (size_t)g->n_tensors, sizeof *ix, cmp_tensor_name, g->tensors);
    for (int64_t i = 1; i < g->n_tensors; i++) {
        int64_t a = ix[i - 1], b = ix[i];
        if (strcmp(g->tensors[a].name, g->tensors[b].name))
            continue;
        if (a > b) {
            int64_t t = a;
            a = b;
            b = t;
        }
        char shown[100];
        printable(shown, sizeof shown, g->tensors[b].name, strlen(g->tensors[b].name));
        return err_set(p->err, ERR_FORMAT,
                       "%s: duplicate tensor name '%s' at offset %" PRIu64
                       " (first at offset %" PRIu64 ")",
                       g->name, shown, g->tensor_info_off[b], g->tensor_info_off[a]);
    }
    return 0;
}

/* Checks each tensor's data lies in the file and no two overlap; sets data. */
static int check_tensor_data(struct parser *p)
{
    struct gguf *g = p->g;
    int64_t *ix = malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * sizeof *ix);
    if (!ix)
        return err_set(p->err, ERR_NOMEM, "%s: out of memory", g->name);
    int rc = 0;
    for (int64_t i = 0; i < g->n_tensors && !rc; i++) {
        struct gguf_tensor *t = &g->tensors[i];
        ix[i] = i;
        uint64_t start, end;
        bool wraps = __builtin_add_overflow(g->data_offset, t->offset, &start) ||
                     __builtin_add_overflow(start, t->nbytes, &end);
        if (!wraps && end <= g->size) {
            t->data = g->base + start;
            continue;
        }
        char shown[100];
        printable(shown, sizeof shown, t->name, strlen(t->name));
        if (wraps)
            rc = err_set(p->err, ERR_FORMAT,
                         "%s: tensor '%s' (info at offset %" PRIu64 "): data offset %" PRIu64
                         " and size %" PRIu64 " lie beyond the file (%" PRIu64 " bytes)",
                         g->name, shown, g->tensor_info_off[i], t->offset, t->nbytes, g->size);
        else
            rc = err_set(p->err, ERR_FORMAT,
                         "%s: tensor '%s' (info at offset %" PRIu64 ") data ends at byte %" PRIu64
                         ", file has %" PRIu64,
                         g->name, shown, g->tensor_info_off[i], end, g->size);
    }
    if (!rc)
        qsort_r(ix, (size_t)g->n_tensors, sizeof *ix, cmp_tensor_off, g->tensors);
    for (int64_t k = 1; k < g->n_tensors && !rc; k++) {
        const struct gguf_tensor *a = &g->tensors[ix[k - 1]], *b = &g->tensors[ix[k]];
        if (b->offset >= a->offset + a->nbytes)
            continue;
        char sa[100], sb[100];
        printable(sa, sizeof sa, a->name, strlen(a->name));
        printable(sb, sizeof sb, b->name, strlen(b->name));
        rc = err_set(p->err, ERR_FORMAT,
                     "%s: tensor '%s' (info at offset %" PRIu64 ") data at %" PRIu64
                     " overlaps tensor '%s' data at %" PRIu64 "..%" PRIu64,
                     g->name, sb, g->tensor_info_off[ix[k]], b->offset, sa, a->offset,
                     a->offset + a->nbytes);
    }
    free(ix);
    return rc;
}

static int parse_tensors(struct parser *p, uint64_t n)
{
    struct gguf *g = p->g;
    g->tensors = calloc(n ? n : 1, sizeof *g->tensors);
    g->tensor_info_off = calloc(n ? n : 1, sizeof *g->tensor_info_off);
    g->tensor_by_name = calloc(n ? n : 1, sizeof *g->tensor_by_name);
    if (!g->tensors || !g->tensor_info_off || !g->tensor_by_name)
        return err_set(p->err, ERR_NOMEM, "%s: out of memory for %" PRIu64 " tensors", g->name,
                       n);
    for (uint64_t i = 0; i < n; i++) {
        g->n_tensors = (int64_t)i + 1;
        int rc = parse_tensor_info(p, (int64_t)i);
        if (rc)
            return rc;
    }
    uint64_t pad = (g->alignment - p->off % g->alignment) % g->alignment;
    g->data_offset = p->off + pad; /* p->off <= size < 2^63: no overflow */
    int rc = index_tensor_names(p);
    return rc ? rc : check_tensor_data(p);
}

/* ------------------------------------------------------------------------- */
/* Header and open                                                           */

/* Smallest encodings: a kv is key length + 1-byte key + type + 1-byte value; a tensor
 * info is name length + 1-byte name + n_dims + one dimension + type + offset. */
#define MIN_KV_BYTES 14u
#define MIN_TENSOR_BYTES 33u

static int parse_header(struct parser *p, uint64_t *n_tensors, uint64_t *n_kv)
{
    struct gguf *g = p->g;
    snprintf(p->ctx, sizeof p->ctx, "header");
    if (g->size < 4 || memcmp(g->base, GGUF_MAGIC, 4)) {
        char shown[100];
        printable(shown, sizeof shown, (const char *)g->base, g->size < 4 ? g->size : 4);
        return perr(p, 0, ERR_FORMAT, "bad magic '%s' (expected 'GGUF'; not a GGUF file)",
                    shown);
    }
    if (g->size > ((uint64_t)1 << 62))
        return perr(p, 0, ERR_UNSUPPORTED, "file of %" PRIu64 " bytes is too large", g->size);
    p->off = 4;
    int rc = rd_u32(p, "version", &g->version);
    if (rc)
        return rc;
    if (g->version == 1)
        return perr(p, 4, ERR_UNSUPPORTED, "GGUF version 1 is not supported (use v2 or v3)");
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return perr(p, 4, ERR_UNSUPPORTED, "big-endian GGUF is not supported");
    if (g->version != 2 && g->version != 3)
        return perr(p, 4, ERR_UNSUPPORTED, "unsupported GGUF version %u", g->version);
    if ((rc = rd_int(p, 8, "n_tensors", n_tensors)) || (rc = rd_int(p, 8, "n_kv", n_kv)))
        return rc;
    uint64_t room = left(p);
    if (*n_kv > room / MIN_KV_BYTES)
        return perr(p, 16, ERR_FORMAT, "n_kv %" PRIu64 " is impossible in a file of %" PRIu64
                    " bytes", *n_kv, g->size);
    if (*n_tensors > (room - *n_kv * MIN_KV_BYTES) / MIN_TENSOR_BYTES)
        return perr(p, 8, ERR_FORMAT, "n_tensors %" PRIu64 " is impossible in a file of %" PRIu64
                    " bytes", *n_tensors, g->size);
    return 0;
}

static int gguf_parse(struct gguf *g, struct err *err)
{
    struct parser p = {.g = g, .off = 0, .err = err};
    uint64_t n_tensors = 0, n_kv = 0;
    int rc = parse_header(&p, &n_tensors, &n_kv);
    if (!rc)
        rc = parse_kvs(&p, n_kv);
    if (!rc)
        rc = parse_tensors(&p, n_tensors);
    return rc;
}

static struct gguf *gguf_alloc(const char *name)
{
    struct gguf *g = calloc(1, sizeof *g);
    if (g && !(g->name = strdup(name ? name : "<memory>"))) {
        free(g);
        g = NULL;
    }
    if (g)
        g->fd = -1;
    return g;
}

int gguf_open_memory(const void *data, size_t size, const char *name, struct gguf **out,
                     struct err *err)
{
    *out = NULL;
    struct gguf *g = gguf_alloc(name);
    if (!g)
        return err_set(err, ERR_NOMEM, "%s: out of memory", name ? name : "<memory>");
    g->base = data;
    g->size = size;
    int rc = data || !size ? gguf_parse(g, err)
                           : err_set(err, ERR_INVALID, "%s: NULL buffer", g->name);
    if (rc) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

/* 2 MiB: the x86-64 transparent huge page. */
#define GGUF_HUGE_PAGE ((size_t)2 << 20)
#define GGUF_READ_THREADS 4 /* most threads one read uses */

/* MemAvailable of /proc/meminfo in bytes, or 0 when it cannot be read. */
static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    char line[128];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (uint64_t)kb * 1024;
}

/* One thread's share of a read: [off, off + len) of the file into buf + off. */
struct read_part {
    int fd;
    char *buf;
    size_t off, len;
    size_t at;  /* where it stopped: off + len when done */
    int errnum; /* the failed pread's errno; 0 with at < off + len: the file ended */
};

static void *read_part(void *arg)
{
    struct read_part *p = arg;
    p->at = p->off;
    while (p->at < p->off + p->len) {
        size_t n = p->off + p->len - p->at;
        ssize_t k = pread(p->fd, p->buf + p->at, n < ((size_t)1 << 30) ? n : (size_t)1 << 30,
                          (off_t)p->at);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            p->errnum = k < 0 ? errno : 0;
            break;
        }
        p->at += (size_t)k;
    }
    return NULL;
}

/* Reads size bytes of fd into buf with up to GGUF_READ_THREADS threads: most of the time
 * goes to the kernel zeroing fresh pages and copying from the page cache, and each
 * thread does that for its own pages (a 1.1 GB file from a warm cache took 0.2-1.6 s
 * with one thread on the Zen 5 VM, where first touches of memory are slow). */
static int read_parallel(int fd, const char *path, char *buf, size_t size, struct err *err)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus < 1 ? 1 : cpus > GGUF_READ_THREADS ? GGUF_READ_THREADS : (int)cpus;
    if (size < ((size_t)64 << 20))
        n = 1;
    struct read_part parts[GGUF_READ_THREADS] = {{0}};
    pthread_t tid[GGUF_READ_THREADS];
    bool started[GGUF_READ_THREADS] = {false};
    size_t step = (size / (size_t)n + GGUF_HUGE_PAGE - 1) / GGUF_HUGE_PAGE * GGUF_HUGE_PAGE;
    for (int i = 0; i < n; i++) {
        size_t off = step * (size_t)i < size ? step * (size_t)i : size;
        parts[i] = (struct read_part){.fd = fd, .buf = buf, .off = off,
                                      .len = i == n - 1 ? size - off
                                             : off + step < size ? step : size - off};
        /* thread 0 and any thread that cannot start read in this one */
        started[i] = i > 0 && pthread_create(&tid[i], NULL, read_part, &parts[i]) == 0;
    }
    for (int i = 0; i < n; i++) {
        if (!started[i])
            read_part(&parts[i]);
    }
    for (int i = 0; i < n; i++)
        if (started[i])
            pthread_join(tid[i], NULL);
    for (int i = 0; i < n; i++) {
        const struct read_part *p = &parts[i];
        if (p->at == p->off + p->len)
            continue;
        if (p->errnum)
            return err_errno(err, ERR_IO, p->errnum, "%s: read failed at offset %zu", path,
                             p->at);
        return err_set(err, ERR_IO, "%s: file ended at offset %zu while reading %zu bytes "
                       "(changed while open?)", path, p->at, size);
    }
    return 0;
}

/* GGUF_LOAD_READ: the file's bytes in private anonymous memory aligned to a huge page
 * (so the whole range can use them), read-only once filled. *len = the mapping's
 * length, for munmap. */
static int read_file(int fd, const char *path, size_t size, void **out, size_t *len,
                     struct err *err)
{
    /* Refused up front: an allocation the kernel grants lazily would otherwise end in
     * the OOM killer halfway through the read. The file's own cached pages count as
     * available, so a file in the page cache is not refused for being cached. */
    uint64_t avail = mem_available();
    if (avail && size > avail)
        return err_set(err, ERR_NOMEM, "%s: %zu bytes do not fit the %" PRIu64 " bytes of "
                       "available memory (--mmap maps the file instead)", path, size, avail);
    size_t want = (size + GGUF_HUGE_PAGE - 1) / GGUF_HUGE_PAGE * GGUF_HUGE_PAGE;
    char *raw = mmap(NULL, want + GGUF_HUGE_PAGE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return err_errno(err, ERR_NOMEM, errno, "%s: cannot allocate %zu bytes to read it "
                         "into (--mmap maps it instead)", path, size);
    size_t lead = (GGUF_HUGE_PAGE - (uintptr_t)raw % GGUF_HUGE_PAGE) % GGUF_HUGE_PAGE;
    if (lead)
        munmap(raw, lead);
    munmap(raw + lead + want, GGUF_HUGE_PAGE - lead);
    char *buf = raw + lead;
    (void)madvise(buf, want, MADV_HUGEPAGE); /* a hint: without THP it still works */
    (void)posix_fadvise(fd, 0, (off_t)size, POSIX_FADV_SEQUENTIAL);
    int rc = read_parallel(fd, path, buf, size, err);
    if (rc) {
        munmap(buf, want);
        return rc;
    }
    (void)mprotect(buf, want, PROT_READ); /* weights are immutable; a stray write faults */
    *out = buf;
    *len = want;
    return 0;
}

int gguf_open(const char *path, struct gguf **out, struct err *err)
{
    return gguf_open_as(path, GGUF_LOAD_MMAP, out, err);
}

int gguf_open_as(const char *path, enum gguf_load load, struct gguf **out, struct err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, ERR_IO, errno, "%s: cannot open", path);
    struct stat st;
    int rc = 0;
    void *map = MAP_FAILED;
    size_t map_len = 0;
    if (fstat(fd, &st) != 0)
        rc = err_errno(err, ERR_IO, errno, "%s: cannot stat", path);
    else if (!S_ISREG(st.st_mode))
        rc = err_set(err, ERR_IO, "%s: not a regular file", path);
    else if (st.st_size < 4)
        rc = err_set(err, ERR_FORMAT, "%s: file is %lld bytes, too small for a GGUF header",
                     path, (long long)st.st_size);
    else if (load == GGUF_LOAD_READ)
        rc = read_file(fd, path, (size_t)st.st_size, &map, &map_len, err);
    else if ((map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED)
        rc = err_errno(err, ERR_IO, errno, "%s: cannot map", path);
    else
        map_len = (size_t)st.st_size;
    /* A read file's descriptor stays open while its bytes are held: `deepseek wipe`
     * finds the users of a file through /proc/PID/fd and maps, and must still refuse to
     * shred a model a server is running (docs/OPERATIONS.md). */
    if (rc || load != GGUF_LOAD_READ) {
        close(fd);
        fd = -1;
    }
    if (rc)
        return rc;
    struct gguf *g = gguf_alloc(path);
    if (!g) {
        munmap(map, map_len);
        if (fd >= 0)
            close(fd);
        return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    }
    g->fd = fd;
    g->base = map;
    g->size = (uint64_t)st.st_size;
    g->mapped = true;
    g->map_len = map_len;
    if ((rc = gguf_parse(g, err))) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

void gguf_close(struct gguf *g)
{
    if (!g)
        return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kvs[i].key);
        free(g->kvs[i].str_offs);
    }
    for (int64_t i = 0; i < g->n_tensors; i++)
        free((char *)g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    free(g->tensor_info_off);
    free(g->kv_by_key);
    free(g->tensor_by_name);
    if (g->mapped)
        munmap((void *)g->base, g->map_len);
    if (g->fd >= 0)
        close(g->fd);
    free(g->name);
    free(g);
}

/* ------------------------------------------------------------------------- */
/* Accessors                                                                 */

const char *gguf_path(const struct gguf *g) { return g->name; }
uint32_t gguf_version(const struct gguf *g) { return g->version; }
uint64_t gguf_file_size(const struct gguf *g) { return g->size; }
uint32_t gguf_alignment(const struct gguf *g) { return g->alignment; }
uint64_t gguf_data_offset(const struct gguf *g) { return g->data_offset; }
int64_t gguf_n_kv(const struct gguf *g) { return g->n_kv; }
int64_t gguf_n_tensors(const struct gguf *g) { return g->n_tensors; }

static const struct gguf_kv *kv_at(const struct gguf *g, int64_t i)
{
    return (g && i >= 0 && i < g->n_kv) ? &g->kvs[i] : NULL;
}

const char *gguf_kv_key(const struct gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

enum gguf_type gguf_kv_type(const struct gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv ? kv->type : GGUF_TYPE_COUNT;
}

bool gguf_kv_array(const struct gguf *g, int64_t i, enum gguf_type *elem_type, uint64_t *n)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_TYPE_ARRAY)
        return false;
    if (elem_type)
        *elem_type = kv->arr_type;
    if (n)
        *n = kv->arr_n;
    return true;
}

int64_t gguf_find_key(const struct gguf *g, const char *key)
{
    if (!g || !key || !g->kv_by_key)
        return -1;
    int64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->kvs[g->kv_by_key[mid]].key, key);
        if (c == 0)
            return g->kv_by_key[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static bool is_scalar_num(const struct gguf_kv *kv)
{
    return kv && value_size(kv->type) > 0;
}

bool gguf_kv_as_u64(const struct gguf *g, int64_t i, uint64_t *out)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return is_scalar_num(kv) && num_to_u64(kv->num, out);
}

bool gguf_kv_as_i64(const struct gguf *g, int64_t i, int64_t *out)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return is_scalar_num(kv) && num_to_i64(kv->num, out);
}

bool gguf_kv_as_f64(const struct gguf *g, int64_t i, double *out)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (!is_scalar_num(kv))
        return false;
    *out = num_to_f64(kv->num);
    return true;
}

bool gguf_kv_as_str(const struct gguf *g, int64_t i, const char **s, size_t *len)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_TYPE_STRING)
        return false;
    *len = (size_t)le_get(g->base + kv->val_off, 8);
    *s = (const char *)g->base + kv->val_off + 8;
    return true;
}

/* ------------------------------------------------------------------------- */
/* Getters by key                                                            */

/* Finds `key`; ERR_NOTFOUND (with message) when absent. */
static int get_kv(const struct gguf *g, const char *key, const struct gguf_kv **kv,
                  struct err *err)
{
    int64_t i = gguf_find_key(g, key);
    if (i < 0)
        return err_set(err, ERR_NOTFOUND, "%s: key '%s' not found", g->name, key);
    *kv = &g->kvs[i];
    return 0;
}

static int type_mismatch(const struct gguf *g, const struct gguf_kv *kv, const char *want,
                         struct err *err)
{
    return err_set(err, ERR_FORMAT, "%s: key '%s' at offset %" PRIu64 " has type %s, expected %s"
                   " (or a value that does not fit it)",
                   g->name, kv->key, kv->entry_off, value_type_names[kv->type], want);
}

int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out, struct err *err)
{
    const struct gguf_kv *kv = NULL;
    uint64_t v;
    *out = 0;
    int rc = get_kv(g, key, &kv, err);
    if (rc)
        return rc;
    if (!is_scalar_num(kv) || kv->num.kind == NUM_F || !num_to_u64(kv->num, &v) ||
        v > UINT32_MAX)
        return type_mismatch(g, kv, "uint32", err);
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *out, struct err *err)
{
    const struct gguf_kv *kv = NULL;
    *out = 0;
    int rc = get_kv(g, key, &kv, err);
    if (rc)
        return rc;
    if (!is_scalar_num(kv) || !num_to_u64(kv->num, out))
        return type_mismatch(g, kv, "uint64", err);
    return 0;
}

int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out, struct err *err)
{
    const struct gguf_kv *kv = NULL;
    *out = 0;
    int rc = get_kv(g, key, &kv, err);
    if (rc)
        return rc;
    if (!is_scalar_num(kv) || !num_to_i64(kv->num, out))
        return type_mismatch(g, kv, "int64", err);
    return 0;
}

int gguf_get_f32(const struct gguf *g, const char *key, float *out, struct err *err)
{
    const struct gguf_kv *kv = NULL;
    *out = 0.0f;
    int rc = get_kv(g, key, &kv, err);
    if (rc)
        return rc;
    if (!is_scalar_num(kv) || kv->type == GGUF_TYPE_BOOL)
        return type_mismatch(g, kv, "float32", err);
    *out = (float)num_to_f64(kv->num);
    return 0;
}

int gguf_get_bool(const struct gguf *g, const char *key, bool *out, struct err *err)
{
    const struct gguf_kv *kv = NULL;
    uint64_t v;
    *out = false;
    int rc = get_kv(g, key, &kv, err);
    if (rc)
        return rc;
    /* Some converters write flags as integers; 0/1 of any integer type is accepted. */
    if (!is_scalar_num(kv) || kv->num.kind == NUM_F || !num_to_u64(kv->num, &v) || v > 1)
        return type_mismatch(g, kv, "bool", err);
    *out = v == 1;
    return 0;
}

int gguf_get_str(const struct gguf *g, const char *key, const char **s, size_t *len,
                 struct err *err)
{
    const struct gguf_kv *kv = NULL;
    *s = NULL;
    *len = 0;
    int rc = get_kv(g, key, &kv, err);
    if (rc)
        return rc;
    if (!gguf_kv_as_str(g, kv - g->kvs, s, len))
        return type_mismatch(g, kv, "string", err);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Arrays and tensors                                                        */

/* Element j of numeric array i, or NULL. */
static const uint8_t *arr_elem(const struct gguf *g, int64_t i, uint64_t j, enum gguf_type *t)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || j >= kv->arr_n || !value_size(kv->arr_type))
        return NULL;
    *t = kv->arr_type;
    return g->base + kv->arr_off + j * value_size(kv->arr_type);
}

bool gguf_arr_str(const struct gguf *g, int64_t i, uint64_t j, const char **s, size_t *len)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING ||
        j >= kv->arr_n)
        return false;
    const uint8_t *p = g->base + kv->str_offs[j];
    *len = (size_t)le_get(p, 8);
    *s = (const char *)p + 8;
    return true;
}

bool gguf_arr_i64(const struct gguf *g, int64_t i, uint64_t j, int64_t *out)
{
    enum gguf_type t;
    const uint8_t *p = arr_elem(g, i, j, &t);
    if (!p)
        return false;
    struct num n = num_decode(t, p);
    return n.kind != NUM_F && num_to_i64(n, out);
}

bool gguf_arr_f64(const struct gguf *g, int64_t i, uint64_t j, double *out)
{
    enum gguf_type t;
    const uint8_t *p = arr_elem(g, i, j, &t);
    if (!p)
        return false;
    *out = num_to_f64(num_decode(t, p));
    return true;
}

const void *gguf_arr_data(const struct gguf *g, int64_t i, size_t *nbytes)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || !value_size(kv->arr_type))
        return NULL;
    *nbytes = (size_t)(kv->arr_n * value_size(kv->arr_type));
    return g->base + kv->arr_off;
}

const struct gguf_tensor *gguf_tensor(const struct gguf *g, int64_t i)
{
    return (g && i >= 0 && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name)
{
    if (!g || !name)
        return NULL;
    int64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const struct gguf_tensor *t = &g->tensors[g->tensor_by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ------------------------------------------------------------------------- */
/* Writer                                                                    */

/* A growable byte buffer for serializing values and the header. */
struct buf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
};

static void buf_put(struct buf *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n && cap < SIZE_MAX / 2)
            cap *= 2;
        uint8_t *q = cap - b->len >= n ? realloc(b->p, cap) : NULL;
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_le(struct buf *b, uint64_t v, unsigned n)
{
    uint8_t tmp[8];
    for (unsigned k = 0; k < n; k++)
        tmp[k] = (uint8_t)(v >> (8 * k));
    buf_put(b, tmp, n);
}

static void buf_str(struct buf *b, const char *s, size_t len)
{
    buf_le(b, len, 8);
    buf_put(b, s, len);
}

struct wkv {
    char *key;
    enum gguf_type type;
    uint8_t *val; /* the value exactly as it goes into the file */
    size_t len;
};

struct wtensor {
    char *name;
    enum ggml_type type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;
};

struct gguf_writer {
    uint32_t alignment;
    struct wkv *kvs;
    size_t n_kv, cap_kv;
    struct wtensor *ts;
    size_t n_t, cap_t;
};

struct gguf_writer *gguf_writer_new(uint32_t alignment)
{
    if (alignment == 0)
        alignment = GGUF_DEFAULT_ALIGNMENT;
    if (alignment & (alignment - 1))
        return NULL;
    struct gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (alignment != GGUF_DEFAULT_ALIGNMENT &&
        gguf_writer_set_u32(w, "general.alignment", alignment)) {
        gguf_writer_free(w);
        return NULL;
    }
    return w;
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++)
        free(w->ts[i].name);
    free(w->kvs);
    free(w->ts);
    free(w);
}

/* Stores kv (key, type, serialized value); takes val (malloc'ed) in every case. */
static int kv_put(struct gguf_writer *w, const char *key, enum gguf_type type, uint8_t *val,
                  size_t len)
{
    if (!w || !key || !*key || !val) {
        free(val);
        return !val ? ERR_NOMEM : ERR_INVALID;
    }
    if (!strcmp(key, "general.alignment")) {
        uint64_t a = type == GGUF_TYPE_UINT32 ? le_get(val, 4) : 0;
        if (a == 0 || (a & (a - 1))) {
            free(val);
            return ERR_INVALID;
        }
        w->alignment = (uint32_t)a;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key))
            continue;
        free(w->kvs[i].val);
        w->kvs[i].type = type;
        w->kvs[i].val = val;
        w->kvs[i].len = len;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        struct wkv *k = realloc(w->kvs, cap * sizeof *k);
        if (!k) {
            free(val);
            return ERR_NOMEM;
        }
        w->kvs = k;
        w->cap_kv = cap;
    }
    char *kcopy = strdup(key);
    if (!kcopy) {
        free(val);
        return ERR_NOMEM;
    }
    w->kvs[w->n_kv++] = (struct wkv){kcopy, type, val, len};
    return 0;
}

static int put_buf(struct gguf_writer *w, const char *key, enum gguf_type type, struct buf *b)
{
    if (b->oom) {
        free(b->p);
        return ERR_NOMEM;
    }
    if (!b->p) /* empty values still need a non-NULL buffer */
        b->p = malloc(1);
    return kv_put(w, key, type, b->p, b->len);
}

static int set_num(struct gguf_writer *w, const char *key, enum gguf_type type, uint64_t bits)
{
    struct buf b = {0};
    buf_le(&b, bits, value_size(type));
    return put_buf(w, key, type, &b);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    return set_num(w, key, GGUF_TYPE_UINT32, v);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
    return set_num(w, key, GGUF_TYPE_INT32, (uint32_t)v);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
    return set_num(w, key, GGUF_TYPE_UINT64, v);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return set_num(w, key, GGUF_TYPE_FLOAT32, bits);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
    return set_num(w, key, GGUF_TYPE_BOOL, v ? 1 : 0);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *s, size_t len)
{
    if (!s && len)
        return ERR_INVALID;
    struct buf b = {0};
    buf_str(&b, s, len);
    return put_buf(w, key, GGUF_TYPE_STRING, &b);
}

int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem_type,
                        const void *data, uint64_t n)
{
    uint32_t es = value_size(elem_type);
    if (!es || (n && !data) || n > SIZE_MAX / es)
        return ERR_INVALID;
    const uint8_t *d = data;
    for (uint64_t j = 0; elem_type == GGUF_TYPE_BOOL && j < n; j++)
        if (d[j] > 1)
            return ERR_INVALID;
    struct buf b = {0};
    buf_le(&b, (uint64_t)elem_type, 4);
    buf_le(&b, n, 8);
    buf_put(&b, data, (size_t)(n * es));
    return put_buf(w, key, GGUF_TYPE_ARRAY, &b);
}

int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
                            const size_t *lens, uint64_t n)
{
    if (n && !strs)
        return ERR_INVALID;
    struct buf b = {0};
    buf_le(&b, GGUF_TYPE_STRING, 4);
    buf_le(&b, n, 8);
    for (uint64_t j = 0; j < n; j++) {
        if (!strs[j] && (!lens || lens[j])) {
            free(b.p);
            return ERR_INVALID;
        }
        buf_str(&b, strs[j], lens ? lens[j] : strlen(strs[j]));
    }
    return put_buf(w, key, GGUF_TYPE_ARRAY, &b);
}

int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf *src, int64_t i)
{
    const struct gguf_kv *kv = kv_at(src, i);
    if (!kv)
        return ERR_INVALID;
    uint8_t *val = malloc(kv->val_len ? (size_t)kv->val_len : 1);
    if (!val)
        return ERR_NOMEM;
    memcpy(val, src->base + kv->val_off, (size_t)kv->val_len);
    return kv_put(w, kv->key, kv->type, val, (size_t)kv->val_len);
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
                           uint32_t n_dims, const int64_t *ne)
{
    uint32_t blk, bytes;
    if (!w || !name || !*name || !ne || n_dims < 1 || n_dims > GGUF_MAX_DIMS ||
        !gguf_type_size(type, &blk, &bytes) || ne[0] <= 0 || ne[0] % blk)
        return ERR_INVALID;
    struct wtensor t = {.type = type, .n_dims = n_dims};
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] <= 0 || n_elems > (uint64_t)INT64_MAX / (uint64_t)t.ne[d])
            return ERR_INVALID;
        n_elems *= (uint64_t)t.ne[d];
    }
    if (n_elems / blk > UINT64_MAX / bytes)
        return ERR_INVALID;
    t.nbytes = n_elems / blk * bytes;
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->ts[i].name, name))
            return ERR_INVALID;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 16;
        struct wtensor *ts = realloc(w->ts, cap * sizeof *ts);
        if (!ts)
            return ERR_NOMEM;
        w->ts = ts;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name)))
        return ERR_NOMEM;
    w->ts[w->n_t++] = t;
    return 0;
}

static uint64_t align_up(uint64_t x, uint32_t a)
{
    return (x + a - 1) / a * a;
}

/* Serializes everything before the data section, padded to the alignment, and
 * assigns tensor offsets. */
static int build_header(struct gguf_writer *w, struct buf *b)
{
    buf_put(b, GGUF_MAGIC, 4);
    buf_le(b, 3, 4);
    buf_le(b, w->n_t, 8);
    buf_le(b, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        buf_str(b, w->kvs[i].key, strlen(w->kvs[i].key));
        buf_le(b, w->kvs[i].type, 4);
        buf_put(b, w->kvs[i].val, w->kvs[i].len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        struct wtensor *t = &w->ts[i];
        t->offset = align_up(off, w->alignment);
        off = t->offset + t->nbytes;
        buf_str(b, t->name, strlen(t->name));
        buf_le(b, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++)
            buf_le(b, (uint64_t)t->ne[d], 8);
        buf_le(b, t->type, 4);
        buf_le(b, t->offset, 8);
    }
    static const uint8_t zero[1];
    while (!b->oom && b->len % w->alignment)
        buf_put(b, zero, 1);
    return b->oom ? ERR_NOMEM : 0;
}

static int write_zeros(FILE *f, uint64_t n)
{
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, k, f) != k)
            return -1;
        n -= k;
    }
    return 0;
}

/* Writes the tensor data, one tensor buffer alive at a time. */
static int write_tensors(struct gguf_writer *w, FILE *f, const char *path, gguf_fill_fn fill,
                         void *user, struct err *err)
{
    uint64_t pos = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->ts[i];
        if (write_zeros(f, t->offset - pos))
            return err_errno(err, ERR_IO, errno, "%s: write failed", path);
        if (t->nbytes > SIZE_MAX)
            return err_set(err, ERR_NOMEM, "%s: tensor '%s' too large", path, t->name);
        void *data = calloc(1, t->nbytes ? (size_t)t->nbytes : 1);
        if (!data)
            return err_set(err, ERR_NOMEM, "%s: out of memory for tensor '%s' (%" PRIu64
                           " bytes)", path, t->name, t->nbytes);
        int rc = fill ? fill(user, (int64_t)i, t->name, data, t->nbytes, err) : 0;
        if (!rc && fwrite(data, 1, (size_t)t->nbytes, f) != (size_t)t->nbytes)
            rc = err_errno(err, ERR_IO, errno, "%s: write failed", path);
        free(data);
        if (rc)
            return rc;
        pos = t->offset + t->nbytes;
    }
    return 0;
}

/* Creates a temporary file beside `path` (same directory, so rename is atomic). */
static FILE *create_temp(const char *path, char **tmp, struct err *err)
{
    size_t n = strlen(path) + 16;
    *tmp = malloc(n);
    if (!*tmp) {
        err_set(err, ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    snprintf(*tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(*tmp);
    if (fd < 0) {
        err_errno(err, ERR_IO, errno, "%s: cannot create temporary file", path);
        free(*tmp);
        *tmp = NULL;
        return NULL;
    }
    fchmod(fd, 0644); /* mkstemp makes 0600; a model file is not a secret */
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        err_errno(err, ERR_IO, errno, "%s: cannot open temporary file", path);
        close(fd);
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
    }
    return f;
}

int gguf_writer_write(struct gguf_writer *w, const char *path, gguf_fill_fn fill, void *user,
                      struct err *err)
{
    if (!w || !path)
        return err_set(err, ERR_INVALID, "gguf writer: NULL argument");
    struct buf hdr = {0};
    if (build_header(w, &hdr)) {
        free(hdr.p);
        return err_set(err, ERR_NOMEM, "%s: out of memory building the header", path);
    }
    char *tmp = NULL;
    FILE *f = create_temp(path, &tmp, err);
    int rc = f ? 0 : (err ? err->code : ERR_IO);
    if (f && fwrite(hdr.p, 1, hdr.len, f) != hdr.len)
        rc = err_errno(err, ERR_IO, errno, "%s: write failed", path);
    free(hdr.p);
    if (!rc)
        rc = write_tensors(w, f, path, fill, user, err);
    if (!rc && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        rc = err_errno(err, ERR_IO, errno, "%s: write failed", path);
    if (f && fclose(f) != 0 && !rc)
        rc = err_errno(err, ERR_IO, errno, "%s: close failed", path);
    if (!rc && rename(tmp, path) != 0)
        rc = err_errno(err, ERR_IO, errno, "%s: cannot rename %s", path, tmp);
    if (rc && tmp)
        unlink(tmp);
    free(tmp);
    return rc;
}
