/* stop: see stop.h.
 *
 * The buffer holds the held-back bytes followed by the new feed. The first full
 * match to end in it ends the stream. Otherwise the longest suffix that is a proper prefix
 * of some stop string is held: any match still to come must start inside it, since
 * every earlier start has been ruled out. Held bytes are fewer than STOP_MAX_LEN, so
 * the search is a few thousand byte compares per feed at most. */
#include "engine/stop.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct stop {
    int n;
    char *strs[STOP_MAX_STRINGS]; /* NUL-terminated copies */
    size_t lens[STOP_MAX_STRINGS];
    int matched;   /* index of the matched string, or -1 */
    char *buf;     /* [cap]: emitted bytes of the last call, then held bytes */
    size_t cap;
    size_t start;  /* held bytes are buf[start .. start + held) */
    size_t held;
};

int stop_new(const char *const *strs, int n, struct stop **out, struct err *err)
{
    *out = NULL;
    if (n < 0 || n > STOP_MAX_STRINGS)
        return err_set(err, ERR_RANGE, "stop: %d strings, at most %d allowed", n,
                       STOP_MAX_STRINGS);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(strs[i]);
        if (len == 0)
            return err_set(err, ERR_RANGE, "stop[%d]: empty string", i);
        if (len > STOP_MAX_LEN)
            return err_set(err, ERR_RANGE, "stop[%d]: %zu bytes, at most %d allowed", i, len,
                           STOP_MAX_LEN);
    }
    struct stop *m = calloc(1, sizeof *m);
    if (!m)
        goto fail_nomem;
    m->matched = -1;
    for (int i = 0; i < n; i++) {
        m->lens[i] = strlen(strs[i]);
        m->strs[i] = malloc(m->lens[i] + 1);
        if (!m->strs[i])
            goto fail_stop;
        memcpy(m->strs[i], strs[i], m->lens[i] + 1);
        m->n = i + 1;
    }
    *out = m;
    return 0;

fail_stop:
    stop_free(m);
fail_nomem:
    return err_set(err, ERR_NOMEM, "stop: out of memory");
}

void stop_free(struct stop *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n; i++)
        free(m->strs[i]);
    free(m->buf);
    free(m);
}

int stop_matched(const struct stop *m)
{
    return m->matched;
}

size_t stop_held(const struct stop *m)
{
    return m->held;
}

/* Moves the held bytes to the front and makes room for len more. */
static int make_room(struct stop *m, size_t len)
{
    if (m->held && m->start)
        memmove(m->buf, m->buf + m->start, m->held);
    m->start = 0;
    if (len > SIZE_MAX / 2 - m->held)
        return ERR_NOMEM;
    size_t need = m->held + len;
    if (need <= m->cap)
        return 0;
    size_t cap = m->cap ? m->cap : 64;
    while (cap < need)
        cap *= 2;
    char *b = realloc(m->buf, cap);
    if (!b)
        return ERR_NOMEM;
    m->buf = b;
    m->cap = cap;
    return 0;
}

/* The start of the first stop string to end in t[0..n) (the longest if several end
 * at the same byte); sets *which. Returns n when there is none. A match is sought
 * by its end so that the answer does not depend on how the text was split into
 * feeds. */
static size_t find_match(const struct stop *m, const char *t, size_t n, int *which)
{
    for (size_t end = 1; end <= n; end++) {
        size_t best = n;
        for (int i = 0; i < m->n; i++) {
            size_t len = m->lens[i];
            if (len <= end && end - len < best && memcmp(t + end - len, m->strs[i], len) == 0) {
                best = end - len;
                *which = i;
            }
        }
        if (best < n)
            return best;
    }
    return n;
}

/* The length of the longest suffix of t[0..n) that is a proper prefix of a stop
 * string. */
static size_t held_suffix(const struct stop *m, const char *t, size_t n)
{
    size_t best = 0;
    for (int i = 0; i < m->n; i++) {
        size_t most = m->lens[i] - 1 < n ? m->lens[i] - 1 : n;
        for (size_t k = most; k > best; k--) {
            if (memcmp(t + n - k, m->strs[i], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

int stop_feed(struct stop *m, const char *data, size_t len, const char **emit,
              size_t *emit_len)
{
    *emit = m->buf ? m->buf : "";
    *emit_len = 0;
    if (m->matched >= 0)
        return 1;
    if (make_room(m, len))
        return ERR_NOMEM;
    if (len)
        memcpy(m->buf + m->held, data, len);
    size_t n = m->held + len;
    if (n == 0)
        return 0; /* nothing held, nothing fed (buf may still be NULL) */
    *emit = m->buf;

    int which = -1;
    size_t pos = find_match(m, m->buf, n, &which);
    if (pos < n) {
        m->matched = which;
        m->held = 0;
        *emit_len = pos;
        return 1;
    }
    m->held = held_suffix(m, m->buf, n);
    m->start = n - m->held;
    *emit_len = n - m->held;
    return 0;
}

void stop_flush(struct stop *m, const char **emit, size_t *emit_len)
{
    *emit = m->buf ? m->buf + m->start : "";
    *emit_len = m->held;
    m->start += m->held;
    m->held = 0;
}
