/* request: refcounted generation request shared by the engine and the event loop. */
#include "engine/request.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct textbuf {
    char *p;
    size_t len, cap;
};

struct request {
    atomic_int refs;
    atomic_bool cancelled;
    char id[REQUEST_ID_MAX];
    int32_t *prompt;
    size_t n_prompt;
    struct request_params params;
    char *stop_copy[REQUEST_MAX_STOP];
    request_notify_fn notify;
    void *notify_arg;

    pthread_mutex_t mu; /* guards everything below */
    struct textbuf content, reasoning;
    enum request_state state;
    enum request_finish finish;
    int32_t prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens;
    char error[ERR_MSG_MAX];
    bool notified; /* notify called since the last take */
};

static void request_destroy(struct request *r)
{
    for (int i = 0; i < REQUEST_MAX_STOP; i++)
        free(r->stop_copy[i]);
    free(r->content.p);
    free(r->reasoning.p);
    free(r->prompt);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int request_new(const char *id, int32_t *prompt, size_t n_prompt,
                const struct request_params *params, struct request **out, struct err *err)
{
    *out = NULL;
    if (params->n_stop < 0 || params->n_stop > REQUEST_MAX_STOP) {
        free(prompt);
        return err_set(err, ERR_RANGE, "stop: at most %d strings", REQUEST_MAX_STOP);
    }
    struct request *r = calloc(1, sizeof *r);
    if (!r) {
        free(prompt);
        return err_set(err, ERR_NOMEM, "request: out of memory");
    }
    atomic_init(&r->refs, 1);
    atomic_init(&r->cancelled, false);
    pthread_mutex_init(&r->mu, NULL);
    snprintf(r->id, sizeof r->id, "%s", id ? id : "");
    r->prompt = prompt;
    r->n_prompt = n_prompt;
    r->params = *params;
    for (int i = 0; i < params->n_stop; i++) {
        r->stop_copy[i] = strdup(params->stop[i]);
        if (!r->stop_copy[i]) {
            request_destroy(r);
            return err_set(err, ERR_NOMEM, "request: out of memory");
        }
        r->params.stop[i] = r->stop_copy[i];
    }
    r->state = REQUEST_QUEUED;
    *out = r;
    return 0;
}

void request_ref(struct request *r)
{
    atomic_fetch_add(&r->refs, 1);
}

void request_unref(struct request *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1)
        request_destroy(r);
}

void request_set_notify(struct request *r, request_notify_fn fn, void *arg)
{
    r->notify = fn;
    r->notify_arg = arg;
}

const char *request_id(const struct request *r) { return r->id; }

const int32_t *request_prompt(const struct request *r, size_t *n)
{
    *n = r->n_prompt;
    return r->prompt;
}

const struct request_params *request_params(const struct request *r) { return &r->params; }

const char *request_stop(const struct request *r, int i)
{
    return i >= 0 && i < r->params.n_stop ? r->stop_copy[i] : NULL;
}

void request_cancel(struct request *r) { atomic_store(&r->cancelled, true); }

bool request_cancelled(const struct request *r)
{
    return atomic_load(&((struct request *)r)->cancelled);
}

/* Called with mu held; returns whether the caller must notify (after unlocking). */
static bool request_mark_locked(struct request *r)
{
    if (r->notified || !r->notify)
        return false;
    r->notified = true;
    return true;
}

static void request_notify_unlock(struct request *r, bool must)
{
    pthread_mutex_unlock(&r->mu);
    if (must)
        r->notify(r, r->notify_arg);
}

int request_take(struct request *r, struct request_output *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&r->mu);
    out->content = r->content.p;
    out->content_len = r->content.len;
    out->reasoning = r->reasoning.p;
    out->reasoning_len = r->reasoning.len;
    memset(&r->content, 0, sizeof r->content);
    memset(&r->reasoning, 0, sizeof r->reasoning);
    out->state = r->state;
    out->finish = r->finish;
    out->prompt_tokens = r->prompt_tokens;
    out->completion_tokens = r->completion_tokens;
    out->reasoning_tokens = r->reasoning_tokens;
    out->cached_tokens = r->cached_tokens;
    memcpy(out->error, r->error, sizeof out->error);
    r->notified = false;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

void request_output_free(struct request_output *out)
{
    free(out->content);
    free(out->reasoning);
    out->content = out->reasoning = NULL;
}

void request_set_state(struct request *r, enum request_state s)
{
    pthread_mutex_lock(&r->mu);
    r->state = s;
    request_notify_unlock(r, request_mark_locked(r));
}

static int textbuf_append(struct textbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return ERR_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int request_emit(struct request *r, const char *text, size_t len, bool reasoning)
{
    if (len == 0)
        return 0;
    pthread_mutex_lock(&r->mu);
    int rc = textbuf_append(reasoning ? &r->reasoning : &r->content, text, len);
    request_notify_unlock(r, rc == 0 && request_mark_locked(r));
    return rc;
}

void request_count(struct request *r, int32_t prompt_tokens, int32_t completion_tokens,
                   int32_t reasoning_tokens)
{
    pthread_mutex_lock(&r->mu);
    r->prompt_tokens = prompt_tokens;
    r->completion_tokens = completion_tokens;
    r->reasoning_tokens = reasoning_tokens;
    pthread_mutex_unlock(&r->mu);
}

void request_set_cached(struct request *r, int32_t cached_tokens)
{
    pthread_mutex_lock(&r->mu);
    r->cached_tokens = cached_tokens;
    pthread_mutex_unlock(&r->mu);
}

void request_finish(struct request *r, enum request_finish f, const char *error)
{
    pthread_mutex_lock(&r->mu);
    r->state = REQUEST_DONE;
    r->finish = f;
    if (error)
        snprintf(r->error, sizeof r->error, "%s", error);
    request_notify_unlock(r, request_mark_locked(r));
}

const char *request_finish_name(enum request_finish f)
{
    switch (f) {
    case REQUEST_FINISH_STOP: return "stop";
    case REQUEST_FINISH_LENGTH: return "length";
    case REQUEST_FINISH_CANCELLED: return "cancelled";
    case REQUEST_FINISH_ERROR: return "error";
    default: return "none";
    }
}
