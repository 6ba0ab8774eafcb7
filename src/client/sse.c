/* sse: incremental text/event-stream parser (see sse.h). */
#include "client/sse.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct buf {
    char *p;
    size_t len, cap;
};

struct sse {
    size_t max;
    sse_event_fn fn;
    void *arg;
    struct buf line;  /* the line being received, without its terminator */
    struct buf data;  /* the event's data lines joined with '\n' */
    bool has_data;    /* a data: line was seen in this event */
    bool skip_lf;     /* the last byte was '\r': a following '\n' is its pair */
};

struct sse *sse_new(size_t max_bytes, sse_event_fn fn, void *arg)
{
    struct sse *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->max = max_bytes;
    s->fn = fn;
    s->arg = arg;
    return s;
}

void sse_free(struct sse *s)
{
    if (!s)
        return;
    free(s->line.p);
    free(s->data.p);
    free(s);
}

/* Appends n bytes, keeping room for a NUL; ERR_RANGE past max. */
static int buf_add(struct sse *s, struct buf *b, const char *p, size_t n, struct err *e)
{
    if (b->len + n > s->max)
        return err_set(e, ERR_RANGE, "event stream: a line or event is over %zu bytes", s->max);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return err_set(e, ERR_NOMEM, "event stream: out of memory");
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Blank line: hands the event over and starts the next. */
static int dispatch(struct sse *s)
{
    if (!s->has_data)
        return 0;
    s->has_data = false;
    size_t n = s->data.len;
    s->data.len = 0;
    return s->fn(s->arg, s->data.p, n);
}

/* One complete line (s->line). */
static int on_line(struct sse *s, struct err *e)
{
    const char *l = s->line.p ? s->line.p : "";
    size_t n = s->line.len;
    s->line.len = 0;
    if (n == 0)
        return dispatch(s);
    if (l[0] == ':')
        return 0;
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    if (name_len != 4 || memcmp(l, "data", 4))
        return 0;
    const char *v = colon ? colon + 1 : l + n;
    if (v < l + n && *v == ' ')
        v++;
    int rc = 0;
    if (s->has_data)
        rc = buf_add(s, &s->data, "\n", 1, e);
    if (!rc)
        rc = buf_add(s, &s->data, v, (size_t)(l + n - v), e);
    s->has_data = true;
    return rc;
}

int sse_feed(struct sse *s, const char *buf, size_t n, struct err *e)
{
    size_t i = 0;
    while (i < n) {
        if (s->skip_lf) {
            s->skip_lf = false;
            if (buf[i] == '\n') {
                i++;
                continue;
            }
        }
        size_t j = i;
        while (j < n && buf[j] != '\n' && buf[j] != '\r')
            j++;
        int rc = buf_add(s, &s->line, buf + i, j - i, e);
        if (rc || j == n)
            return rc;
        s->skip_lf = buf[j] == '\r';
        i = j + 1;
        rc = on_line(s, e);
        if (rc)
            return rc;
    }
    return 0;
}

int sse_finish(struct sse *s, struct err *e)
{
    int rc = 0;
    if (s->line.len)
        rc = on_line(s, e);
    return rc ? rc : dispatch(s);
}
