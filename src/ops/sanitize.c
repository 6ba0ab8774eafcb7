/* sanitize: see sanitize.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "ops/sanitize.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <pcre2.h>

#include "ops/wipe.h"

#define REDACTED "[REDACTED]"

/* One pattern per class; the named group "s" is the secret part that is replaced. */
static const char *const patterns[SANITIZE_NCLASS] = {
    [SANITIZE_SK_KEY] = "\\bsk-(?<s>[A-Za-z0-9_-]{8,})",
    [SANITIZE_BEARER] = "(?i)\\bbearer\\s+(?<s>[A-Za-z0-9._~+/=-]{8,})",
    [SANITIZE_BASIC] = "(?i)\\bauthorization\\s*[:=]\\s*basic\\s+(?<s>[A-Za-z0-9+/=]{4,})",
    [SANITIZE_PARAM] = "(?i)(?:^|[?&;,\\s{(])(?:api[_-]?key|access[_-]?token|token|key|"
                       "password|passwd|pwd|secret)=(?<s>[^&\\s\"'<>,;]+)",
    [SANITIZE_JSON_FIELD] = "(?i)\"(?:password|passwd|api[_-]?key|secret|token|access_token|"
                            "authorization)\"\\s*:\\s*\"(?<s>(?:[^\"\\\\]|\\\\.)+)\"",
    [SANITIZE_API_KEY_LABEL] = "(?i)\\bapi[_-]?key\\b\\s*:\\s*(?<s>[A-Za-z0-9_-]{6,})",
    [SANITIZE_URL_PASSWORD] = "\\b[A-Za-z][A-Za-z0-9+.-]*://[^/\\s:@]+:(?<s>[^/\\s@]+)@",
};

static const char *const class_names[SANITIZE_NCLASS] = {
    "sk-key", "bearer", "basic-auth", "param", "json-field", "api-key-label", "url-password",
};

struct sanitizer {
    pcre2_code *re[SANITIZE_NCLASS];
    uint32_t group[SANITIZE_NCLASS];
};

const char *sanitize_class_name(enum sanitize_class c)
{
    return c < SANITIZE_NCLASS ? class_names[c] : "unknown";
}

const char *sanitize_status_name(enum sanitize_status s)
{
    static const char *const names[] = {"ok", "clean", "found", "refused", "error",
                                        "verify_failed", "audit_failed"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}

int sanitize_new(struct sanitizer **out, struct err *err)
{
    struct sanitizer *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s)
        return err_set(err, ERR_NOMEM, "sanitize: out of memory");
    for (int i = 0; i < SANITIZE_NCLASS; i++) {
        int ec;
        PCRE2_SIZE off;
        s->re[i] = pcre2_compile((PCRE2_SPTR)patterns[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_MULTILINE, &ec, &off, NULL);
        if (!s->re[i]) {
            sanitize_free(s);
            return err_set(err, ERR_INTERNAL, "sanitize: pattern %s does not compile at %zu",
                           class_names[i], (size_t)off);
        }
        pcre2_jit_compile(s->re[i], PCRE2_JIT_COMPLETE); /* optional speed-up */
        s->group[i] = (uint32_t)pcre2_substring_number_from_name(s->re[i], (PCRE2_SPTR) "s");
    }
    *out = s;
    return 0;
}

void sanitize_free(struct sanitizer *s)
{
    if (!s)
        return;
    for (int i = 0; i < SANITIZE_NCLASS; i++)
        pcre2_code_free(s->re[i]);
    free(s);
}

/* True when p[0..n) is already our redaction (so a second run leaves it alone). */
static bool already_redacted(const char *p, size_t n)
{
    if (n >= sizeof REDACTED - 1 && !memcmp(p, REDACTED, sizeof REDACTED - 1))
        return true;
    for (size_t i = 0; i < n; i++)
        if (p[i] != '*')
            return false;
    return true;
}

static void redact(char *p, size_t n)
{
    size_t k = n >= sizeof REDACTED - 1 ? sizeof REDACTED - 1 : 0;
    memcpy(p, REDACTED, k);
    memset(p + k, '*', n - k);
}

static int scan_class(const struct sanitizer *s, int c, char *buf, size_t len, bool do_redact,
                      struct sanitize_stats *st, pcre2_match_data *md, struct err *err)
{
    PCRE2_SIZE start = 0;
    while (start < len) {
        int rc = pcre2_match(s->re[c], (PCRE2_SPTR)buf, len, start, 0, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return err_set(err, ERR_INTERNAL, "sanitize: pattern %s failed (PCRE2 %d) at "
                           "byte %zu", class_names[c], rc, (size_t)start);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        PCRE2_SIZE so = ov[2 * s->group[c]], eo = ov[2 * s->group[c] + 1];
        if (so != PCRE2_UNSET && eo > so && !already_redacted(buf + so, eo - so)) {
            st->matches[c]++;
            st->total++;
            st->bytes_redacted += eo - so;
            if (do_redact)
                redact(buf + so, eo - so);
        }
        start = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
    }
    return 0;
}

int sanitize_buffer(const struct sanitizer *s, char *buf, size_t len, bool do_redact,
                    struct sanitize_stats *st, struct err *err)
{
    int rc = 0;
    for (int c = 0; c < SANITIZE_NCLASS && rc == 0; c++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(s->re[c], NULL);
        if (!md)
            return err_set(err, ERR_NOMEM, "sanitize: out of memory");
        rc = scan_class(s, c, buf, len, do_redact, st, md, err);
        pcre2_match_data_free(md);
    }
    return rc;
}

/* ---- one file ---- */

struct logfile {
    const char *path;
    int fd;
    struct stat st;
    char *map;
    struct wipe_extents *before;
    char sha_before[AUDIT_HASH_HEX];
    int64_t intent_seq;
};

/* Refuses what wipe refuses, and any file a process has open: the writer of an
 * active log would race with the rewrite (and may hold secrets in memory anyway). */
static int file_check(struct logfile *f, struct err *err)
{
    struct stat lst;
    if (lstat(f->path, &lst) != 0)
        return err_errno(err, ERR_IO, errno, "%s", f->path);
    if (!S_ISREG(lst.st_mode))
        return err_set(err, ERR_INVALID, "%s: not a regular file", f->path);
    f->fd = open(f->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (f->fd < 0 || fstat(f->fd, &f->st) != 0)
        return err_errno(err, ERR_IO, errno, "%s: open for writing", f->path);
    int rc = wipe_check_fs(f->fd, f->path, err);
    struct wipe_holder h[1];
    size_t n = 0, unreadable = 0;
    if (rc == 0)
        rc = wipe_find_holders(f->st.st_dev, f->st.st_ino, h, 1, &n, &unreadable, err);
    if (rc == 0 && n > 0)
        rc = err_set(err, ERR_UNSUPPORTED, "%s: held open by process %d (%s, %s): rotate the "
                     "log first (logrotate -f, or SIGHUP) and sanitize the rotated file",
                     f->path, h[0].pid, h[0].comm, h[0].how);
    if (rc == 0)
        rc = wipe_extents_get(f->fd, f->path, &f->before, err);
    if (rc == 0 && f->st.st_size > 0) {
        f->map = mmap(NULL, (size_t)f->st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            rc = err_errno(err, ERR_IO, errno, "%s: mmap", f->path);
        }
    }
    return rc;
}

static void file_close(struct logfile *f)
{
    if (f->map)
        munmap(f->map, (size_t)f->st.st_size);
    if (f->fd >= 0)
        close(f->fd);
    wipe_extents_free(f->before);
}

static json_t *stats_json(const struct sanitize_stats *st)
{
    json_t *d = json_object(), *m = json_object();
    for (int c = 0; c < SANITIZE_NCLASS; c++)
        if (st->matches[c])
            json_object_set_new(m, class_names[c], json_integer((json_int_t)st->matches[c]));
    json_object_set_new(d, "matches", m);
    json_object_set_new(d, "bytes_redacted", json_integer((json_int_t)st->bytes_redacted));
    return d;
}

static int record(struct audit *audit, struct logfile *f, const struct sanitize_stats *st,
                  const char *phase, const char *result, const char *sha, const char *verif,
                  const char *error, struct err *err)
{
    json_t *d = stats_json(st);
    struct audit_record r = {
        .action = "logs.sanitize", .phase = phase, .target = f->path,
        .size = f->fd >= 0 ? (int64_t)f->st.st_size : -1, .sha256 = sha,
        .method = "in-place-same-length-redaction", .passes = -1, .verification = verif,
        .result = result, .error = error,
        .intent_seq = strcmp(phase, "intent") ? f->intent_seq : 0, .details = d,
    };
    int64_t seq;
    int rc = audit_append(audit, &r, &seq, err);
    if (rc == 0 && !strcmp(phase, "intent"))
        f->intent_seq = seq;
    json_decref(d);
    return rc;
}

/* Rewrites through the mapping, syncs, and proves it: no secret left, same blocks. */
static int rewrite(const struct sanitizer *s, struct logfile *f, struct sanitize_stats *st,
                   struct err *err)
{
    size_t len = (size_t)f->st.st_size;
    struct sanitize_stats done = {0}, left = {0};
    int rc = sanitize_buffer(s, f->map, len, true, &done, err);
    if (rc == 0 && (msync(f->map, len, MS_SYNC) != 0 || fdatasync(f->fd) != 0))
        rc = err_errno(err, ERR_IO, errno, "%s: sync", f->path);
    if (rc == 0)
        rc = sanitize_buffer(s, f->map, len, false, &left, err);
    if (rc == 0 && left.total > 0)
        rc = err_set(err, ERR_FORMAT, "%s: %llu secret(s) still found after the rewrite",
                     f->path, (unsigned long long)left.total);
    struct wipe_extents *after = NULL;
    if (rc == 0 && wipe_extents_get(f->fd, f->path, &after, err) != 0)
        rc = ERR_FORMAT;
    if (rc == 0 && !wipe_extents_kept(f->before, after))
        rc = err_set(err, ERR_FORMAT, "%s: the file's blocks moved during the rewrite: the "
                     "old blocks may still hold the secrets", f->path);
    wipe_extents_free(after);
    *st = done;
    return rc;
}

static int sanitize_checked(const struct sanitizer *s, struct audit *audit, struct logfile *f,
                            bool check_only, struct sanitize_stats *st,
                            enum sanitize_status *status, struct err *err)
{
    size_t len = (size_t)f->st.st_size;
    int rc = f->map ? sanitize_buffer(s, f->map, len, false, st, err) : 0;
    if (rc != 0 || st->total == 0 || check_only) {
        *status = rc ? SANITIZE_FAILED : st->total ? SANITIZE_FOUND : SANITIZE_CLEAN;
        if (rc == 0 && !check_only)
            record(audit, f, st, "result", "clean", NULL, "scanned", NULL, err);
        return rc;
    }
    audit_sha256_hex(f->map, len, f->sha_before);
    if (record(audit, f, st, "intent", "pending", f->sha_before, NULL, NULL, err) != 0) {
        *status = SANITIZE_AUDIT_FAILED;
        return err->code;
    }
    rc = rewrite(s, f, st, err);
    *status = rc == 0 ? SANITIZE_DONE : rc == ERR_FORMAT ? SANITIZE_VERIFY_FAILED
                                                          : SANITIZE_FAILED;
    char after[AUDIT_HASH_HEX];
    audit_sha256_hex(f->map, len, after);
    struct err aerr;
    int arc = record(audit, f, st, "result", sanitize_status_name(*status), after,
                     "rescan-no-secrets,extents-unchanged", rc ? err->msg : NULL, &aerr);
    if (rc == 0 && arc != 0) {
        *err = aerr;
        rc = arc;
    }
    return rc;
}

int sanitize_file(const struct sanitizer *s, struct audit *audit, const char *path,
                  bool check_only, struct sanitize_stats *st, enum sanitize_status *status,
                  struct err *err)
{
    struct logfile f = {.path = path, .fd = -1};
    memset(st, 0, sizeof *st);
    int rc = file_check(&f, err);
    if (rc != 0) {
        *status = rc == ERR_IO ? SANITIZE_FAILED : SANITIZE_REFUSED;
        if (audit) {
            struct err aerr;
            char why[ERR_MSG_MAX];
            snprintf(why, sizeof why, "%s", err->msg);
            record(audit, &f, st, "result", sanitize_status_name(*status), NULL, NULL, why,
                   &aerr);
        }
    } else {
        rc = sanitize_checked(s, audit, &f, check_only, st, status, err);
    }
    file_close(&f);
    return rc;
}
