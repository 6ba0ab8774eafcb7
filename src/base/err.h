/*
 * err: error codes and the one-line error message that travels with them.
 *
 * Every fallible function returns 0 or a negative ERR_* code and, when given a
 * non-NULL `struct err *`, fills it with a single line naming what is wrong and
 * where ("model.gguf: tensor blk.3.attn_q.weight ends at byte 9123456, file has
 * 9000000"). Library code never prints; the caller decides where the message goes.
 *
 * Threading: a struct err belongs to the caller; functions here are reentrant.
 */
#ifndef DS_BASE_ERR_H
#define DS_BASE_ERR_H

#include <stddef.h>

enum {
    ERR_OK = 0,
    ERR_IO = -1,          /* open/read/write/mmap failed (errno text in message) */
    ERR_FORMAT = -2,      /* malformed input: file, request, config */
    ERR_NOMEM = -3,       /* allocation failed */
    ERR_RANGE = -4,       /* a value out of its allowed range */
    ERR_UNSUPPORTED = -5, /* well-formed but not supported (type, arch, template) */
    ERR_INVALID = -6,     /* bad argument or usage */
    ERR_NOTFOUND = -7,    /* a named key, tensor, file or token does not exist */
    ERR_INTERNAL = -8,    /* our own bug surfaced as an error instead of a crash */
};

#define ERR_MSG_MAX 512

struct err {
    int code;
    char msg[ERR_MSG_MAX];
};

/* Sets e (if non-NULL) and returns code, so callers can write
 * `return err_set(e, ERR_FORMAT, "%s: bad magic", path);`. */
int err_set(struct err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like err_set, appending ": <strerror(errnum)>". */
int err_errno(struct err *e, int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Clears e (if non-NULL). */
void err_clear(struct err *e);

/* A short stable name for a code ("format", "io", ...). */
const char *err_name(int code);

#endif
