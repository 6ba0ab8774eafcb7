/*
 * gguf: the GGUF file format (v2 and v3), reading and writing. File format only:
 * no knowledge of architectures, tokenizers or kernels.
 *
 * Reading maps the file read-only, or reads it into memory (gguf_open_as), or borrows
 * a caller's buffer, and validates the whole header at open: every count, length,
 * offset and size is checked against the file length and for overflow before use, so
 * accessors never fail on a handle that opened. Metadata keys and tensor names are copied (NUL-terminated); string values
 * and tensor data point into the mapping and live as long as the handle.
 *
 * Errors name the file, the key or tensor, and the byte offset:
 *   "m.gguf: key 'general.name' (kv 3) at offset 412: string length 9000000 exceeds file size 1024"
 *
 * Threading: a struct gguf is immutable after open; any thread may read it
 * concurrently. A gguf_writer belongs to one thread.
 */
#ifndef DS_MODEL_GGUF_H
#define DS_MODEL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* Metadata value types, numbered as in the file. */
enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/* Tensor element types, numbered as ggml numbers them in the file. Types the
 * format defines but we cannot size are rejected at open as unknown. */
enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_COUNT = 40 /* upper bound of the numbering, not a type */
};

/* Block geometry of a tensor type: `block_elems` elements take `block_bytes` bytes.
 * Returns false (and leaves outputs untouched) for a type we do not know. */
bool gguf_type_size(enum ggml_type type, uint32_t *block_elems, uint32_t *block_bytes);
/* "F32", "Q4_K", ...; "?" for unknown. */
const char *gguf_type_name(enum ggml_type type);
/* The ggml_type whose name is `name` (case-insensitive), or -1. */
int gguf_type_from_name(const char *name);
/* "uint32", "string", "array", ...; "?" for unknown. */
const char *gguf_value_type_name(enum gguf_type type);

/* ------------------------------------------------------------------------- */
/* Reading                                                                   */

struct gguf; /* opaque */

struct gguf_tensor {
    const char *name;      /* NUL-terminated copy, owned by the gguf */
    enum ggml_type type;
    uint32_t n_dims;       /* 1..GGUF_MAX_DIMS */
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the fastest-varying (row length); unused = 1 */
    uint64_t n_elems;      /* product of ne */
    uint64_t offset;       /* relative to the start of the data section */
    uint64_t nbytes;       /* bytes of data */
    const void *data;      /* points into the mapping (aligned to the file's alignment) */
};

/* How an opened file's bytes are held. */
enum gguf_load {
    GGUF_LOAD_MMAP, /* a read-only file mapping: nothing copied, the page cache shared */
    GGUF_LOAD_READ  /* read into private anonymous memory, 2 MiB-aligned and advised
                     * MADV_HUGEPAGE, then made read-only: fewer TLB misses when the
                     * weights are streamed (decode), at the cost of a copy at open;
                     * the file stays open, so the process is still seen as its user */
};

/* Opens and validates `path` (mmap, read-only). On success *out owns the mapping. */
int gguf_open(const char *path, struct gguf **out, struct err *err);
/* The same, holding the bytes as `load` says. */
int gguf_open_as(const char *path, enum gguf_load load, struct gguf **out, struct err *err);

/* Validates a buffer the caller keeps alive for the handle's lifetime (borrows
 * data). `name` is used in error messages. Used by the fuzz target and tests. */
int gguf_open_memory(const void *data, size_t size, const char *name, struct gguf **out,
                     struct err *err);

/* Unmaps and frees; accepts NULL. */
void gguf_close(struct gguf *g);

const char *gguf_path(const struct gguf *g); /* the name given at open */
uint32_t gguf_version(const struct gguf *g);
uint64_t gguf_file_size(const struct gguf *g);
uint32_t gguf_alignment(const struct gguf *g);
uint64_t gguf_data_offset(const struct gguf *g); /* start of the tensor data section */

/* Metadata, by index 0..gguf_n_kv()-1. */
int64_t gguf_n_kv(const struct gguf *g);
const char *gguf_kv_key(const struct gguf *g, int64_t i);
enum gguf_type gguf_kv_type(const struct gguf *g, int64_t i);
/* For arrays: element type and count; for other types returns false. */
bool gguf_kv_array(const struct gguf *g, int64_t i, enum gguf_type *elem_type, uint64_t *n);
/* Index of `key`, or -1. */
int64_t gguf_find_key(const struct gguf *g, const char *key);

/* Scalar getters by key. Integer getters accept any integer type (and bool) whose
 * value fits the output; float getters accept float32/float64 and integers.
 * They return ERR_NOTFOUND if the key is absent and ERR_FORMAT (message naming the
 * key, its actual type and the file) if the type does not fit. */
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out, struct err *err);
int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out, struct err *err);
int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *out, struct err *err);
int gguf_get_f32(const struct gguf *g, const char *key, float *out, struct err *err);
int gguf_get_bool(const struct gguf *g, const char *key, bool *out, struct err *err);
/* String value: *s points into the mapping and is NOT NUL-terminated. */
int gguf_get_str(const struct gguf *g, const char *key, const char **s, size_t *len,
                 struct err *err);

/* Value access by kv index, for generic printing (inspect) and copying. Each returns
 * false when the index or type does not match. Numeric values are converted. */
bool gguf_kv_as_u64(const struct gguf *g, int64_t i, uint64_t *out);
bool gguf_kv_as_i64(const struct gguf *g, int64_t i, int64_t *out);
bool gguf_kv_as_f64(const struct gguf *g, int64_t i, double *out);
bool gguf_kv_as_str(const struct gguf *g, int64_t i, const char **s, size_t *len);

/* Array element access (element j of array kv i). Strings point into the mapping,
 * not NUL-terminated; O(1) (offsets are indexed at open). */
bool gguf_arr_str(const struct gguf *g, int64_t i, uint64_t j, const char **s, size_t *len);
bool gguf_arr_i64(const struct gguf *g, int64_t i, uint64_t j, int64_t *out);
bool gguf_arr_f64(const struct gguf *g, int64_t i, uint64_t j, double *out);
/* Raw bytes of a numeric array (little-endian, possibly unaligned: memcpy from it). */
const void *gguf_arr_data(const struct gguf *g, int64_t i, size_t *nbytes);

/* Tensors, by index 0..gguf_n_tensors()-1. */
int64_t gguf_n_tensors(const struct gguf *g);
const struct gguf_tensor *gguf_tensor(const struct gguf *g, int64_t i);
/* Tensor named `name`, or NULL. */
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/* ------------------------------------------------------------------------- */
/* Writing                                                                   */

struct gguf_writer; /* opaque */

/* A writer for GGUF v3 with the given alignment (0 = 32). */
struct gguf_writer *gguf_writer_new(uint32_t alignment);
void gguf_writer_free(struct gguf_writer *w); /* accepts NULL */

/* Metadata setters copy key and value. Setting an existing key replaces it. */
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *s, size_t len);
/* Numeric array of `n` elements of `elem_type` (raw little-endian bytes copied). */
int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem_type,
                        const void *data, uint64_t n);
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
                            const size_t *lens, uint64_t n);
/* Copies metadata entry `i` of `src` (any type, arrays included). */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf *src, int64_t i);

/* Declares a tensor; its bytes are produced at write time by the fill callback, so
 * models larger than memory can be written one tensor at a time. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
                           uint32_t n_dims, const int64_t *ne);

/* Fills `buf` (nbytes long, zeroed) with tensor `index`'s data; 0 or an ERR_* code. */
typedef int (*gguf_fill_fn)(void *user, int64_t index, const char *name, void *buf,
                            uint64_t nbytes, struct err *err);

/* Writes the file to `path` (via a temporary name and rename on success, so a failed
 * write never leaves a half file under the final name). */
int gguf_writer_write(struct gguf_writer *w, const char *path, gguf_fill_fn fill, void *user,
                      struct err *err);

#endif
