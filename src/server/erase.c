/*
 * erase: one subject's erasure, step by step (see erase.h). Each step adds its part to
 * the report; a failed step is recorded in "errors" and the others still run, since
 * leaving data behind because another store failed helps nobody.
 */
#include "server/erase.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/sched.h"
#include "ops/keystore.h"
#include "ops/wipe.h"
#include "server/promptlog.h"
#include "server/rcache.h"

/* Appends "<step>: <msg>" to the report's errors. */
static void add_error(json_t *report, const char *step, const char *what)
{
    char msg[ERR_MSG_MAX + 64];
    snprintf(msg, sizeof msg, "%s: %s", step, what);
    json_array_append_new(json_object_get(report, "errors"), json_string(msg));
}

/* Step 2: the data key. */
static void erase_key(const struct erase_targets *t, const char *subject, json_t *report)
{
    bool destroyed = false;
    struct err e = {0};
    if (t->ks) {
        int rc = keystore_erase(t->ks, subject, &e);
        destroyed = rc == 0;
        if (rc && rc != ERR_NOTFOUND)
            add_error(report, "data key", e.msg);
    }
    json_object_set_new(report, "data_key",
                        json_pack("{sbss?}", "destroyed", destroyed, "store",
                                  t->ks ? t->ks_path : NULL));
}

struct file_ctx {
    const struct erase_targets *t;
    struct audit *audit;
    json_t *report;
};

/* Step 3, for one file (promptlog_files_locked: appends wait meanwhile). */
static int erase_file(const char *path, long long size, void *arg)
{
    struct file_ctx *c = arg;
    struct wipe_opts o = {.passes = c->t->passes, .zero = true};
    enum wipe_status st = WIPE_FAILED;
    struct err e = {0};
    char method[96], note[ERR_MSG_MAX] = "";
    const char *status = "wiped";
    snprintf(method, sizeof method, "overwrite: %d random pass(es) and zeros, verified",
             o.passes);
    if (wipe_path(c->audit, path, &o, &st, &e) != 0) {
        snprintf(note, sizeof note, "%s", e.msg);
        if (st == WIPE_REFUSED && unlink(path) == 0) {
            status = "unlinked"; /* ciphertext under a destroyed key, see erase.h */
            snprintf(method, sizeof method, "unlink (wipe refused; only ciphertext)");
        } else {
            status = "failed";
            snprintf(method, sizeof method, "overwrite (%s)", wipe_status_name(st));
            add_error(c->report, "prompt log", e.msg);
        }
    }
    json_t *f = json_pack("{sssIssss}", "path", path, "bytes", (json_int_t)size, "status",
                          status, "method", method);
    if (f && note[0])
        json_object_set_new(f, "note", json_string(note));
    json_array_append_new(json_object_get(c->report, "files"), f);
    return 0;
}

/* Step 4 and 5: the caches in memory and Redis, the prefix-cache slots. */
static void erase_caches(const struct erase_targets *t, const char *tag, json_t *report)
{
    long long mem = -1, redis = -1;
    struct err e = {0};
    if (t->rc && rcache_erase_tag_tiers(t->rc, tag, &mem, &redis, &e))
        add_error(report, "response cache", e.msg);
    json_t *m = mem >= 0 ? json_integer(mem) : json_null();
    json_t *r = redis >= 0 ? json_integer(redis) : json_null();
    json_object_set_new(report, "response_cache", json_pack("{soso}", "memory", m, "redis", r));
    int slots = 0;
    if (t->sched && sched_forget_tag(t->sched, tag, &slots, &e))
        add_error(report, "prefix cache", e.msg);
    json_object_set_new(report, "prefix_cache_slots",
                        t->sched ? json_integer(slots) : json_null());
}

static int write_intent(const struct erase_targets *t, struct audit *a, const char *target,
                        int64_t *seq, struct err *err)
{
    json_t *d = json_pack("{ss?ss?}", "via", t->via, "requested_by", t->requested_by);
    struct audit_record r = {.action = "erase", .phase = "intent", .target = target,
                             .size = -1, .passes = -1,
                             .method = "crypto-erase (data key) + wipe (files) + evict",
                             .result = "pending", .details = d};
    int rc = audit_append(a, &r, seq, err);
    json_decref(d);
    return rc;
}

static void write_result(const struct erase_targets *t, struct audit *a, const char *target,
                         int64_t intent, json_t *report)
{
    bool ok = json_array_size(json_object_get(report, "errors")) == 0;
    json_object_set_new(report, "status", json_string(ok ? "ok" : "partial"));
    struct audit_record r = {.action = "erase", .phase = "result", .target = target,
                             .size = -1, .passes = t->passes + 1,
                             .method = "crypto-erase (data key) + wipe (files) + evict",
                             .verification = "keystore record overwritten and synced; "
                                             "files read back by the wipe",
                             .result = ok ? "ok" : "partial", .intent_seq = intent,
                             .details = report};
    int64_t seq = 0;
    struct err e = {0};
    if (audit_append(a, &r, &seq, &e)) {
        add_error(report, "audit: result record not written", e.msg);
        json_object_set_new(report, "status", json_string("partial"));
    }
    json_object_set_new(report, "audit", json_pack("{sssIsI}", "file", audit_path(a),
                                                   "intent_seq", (json_int_t)intent,
                                                   "result_seq", (json_int_t)seq));
}

int erase_subject(const struct erase_targets *t, const char *subject, json_t **report,
                  struct err *err)
{
    *report = NULL;
    if (!promptlog_id_valid(subject))
        return err_set(err, ERR_INVALID, "erase: '%.80s' is not a key id ([A-Za-z0-9._-], "
                       "1..63 bytes, or - for anonymous requests)", subject);
    char target[KEYSTORE_ID_MAX + 16];
    snprintf(target, sizeof target, "key-id:%s", subject);
    const char *tag = strcmp(subject, PROMPTLOG_ANON) ? subject : "";
    struct audit *a = NULL;
    int64_t intent = 0;
    int rc = audit_open(t->audit_dir, t->op, &a, err);
    if (!rc)
        rc = write_intent(t, a, target, &intent, err);
    if (rc) {
        audit_free(a);
        return rc == ERR_NOMEM ? rc : ERR_IO; /* nothing was touched */
    }
    json_t *r = json_pack("{sss[]s[]}", "subject", subject, "files", "errors");
    if (!r) {
        audit_free(a);
        return err_set(err, ERR_NOMEM, "erase: out of memory");
    }
    erase_key(t, subject, r);
    struct file_ctx fc = {t, a, r};
    struct err e = {0};
    if (t->pl && promptlog_files_locked(t->pl, subject, erase_file, &fc, &e))
        add_error(r, "prompt logs", e.msg);
    erase_caches(t, tag, r);
    write_result(t, a, target, intent, r);
    audit_free(a);
    *report = r;
    return 0;
}
