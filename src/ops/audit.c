/* audit: see audit.h for the record format and the chain. */
#include "ops/audit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define HASH_KEY ",\"hash\":\""
#define HASH_KEY_LEN (sizeof HASH_KEY - 1)
/* ,"hash":"<64 hex>"} */
#define HASH_SUFFIX_LEN (HASH_KEY_LEN + 64 + 2)
#define GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"

struct audit {
    char dir[PATH_MAX];
    char path[PATH_MAX];
    char lock_path[PATH_MAX];
    struct audit_operator op;
};

void audit_sha256_hex(const void *data, size_t len, char out[AUDIT_HASH_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const char hex[] = "0123456789abcdef";
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL))
        mdlen = 0; /* leaves an empty string: the line then fails verification */
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * mdlen] = '\0';
}

/* ---- operator ---- */

static long read_loginuid(void)
{
    FILE *f = fopen("/proc/self/loginuid", "r");
    long v = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%ld", &v) != 1 || v == 4294967295L)
        v = -1;
    fclose(f);
    return v;
}

void audit_operator_detect(struct audit_operator *op, char *const *envp)
{
    memset(op, 0, sizeof *op);
    op->uid = (long)getuid();
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res)
        snprintf(op->user, sizeof op->user, "%s", res->pw_name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (!strncmp(envp[i], "SUDO_USER=", 10))
            snprintf(op->sudo_user, sizeof op->sudo_user, "%s", envp[i] + 10);
    op->loginuid = read_loginuid();
    if (gethostname(op->host, sizeof op->host - 1) != 0)
        op->host[0] = '\0';
}

/* ---- open ---- */

static int check_writable(const char *path, struct err *err)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return err_errno(err, ERR_IO, errno, "audit log %s cannot be written", path);
    close(fd);
    return 0;
}

int audit_open(const char *dir, const struct audit_operator *op, struct audit **out,
               struct err *err)
{
    *out = NULL;
    if (!dir || !dir[0])
        return err_set(err, ERR_INVALID, "audit: no log directory given");
    struct audit *a = calloc(1, sizeof *a);
    if (!a)
        return err_set(err, ERR_NOMEM, "audit: out of memory");
    int n1 = snprintf(a->dir, sizeof a->dir, "%s", dir);
    int n2 = snprintf(a->path, sizeof a->path, "%s/%s", dir, AUDIT_FILE);
    int n3 = snprintf(a->lock_path, sizeof a->lock_path, "%s/%s", dir, AUDIT_LOCK_FILE);
    if (n1 < 0 || n2 < 0 || n3 < 0 || (size_t)n3 >= sizeof a->lock_path) {
        free(a);
        return err_set(err, ERR_RANGE, "audit: log directory path too long");
    }
    a->op = *op;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        int e = errno;
        free(a);
        return err_errno(err, ERR_IO, e, "audit: cannot create log directory %s", dir);
    }
    int rc = check_writable(a->lock_path, err);
    if (rc == 0)
        rc = check_writable(a->path, err);
    if (rc != 0) {
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int audit_open_fallback(const char *dir, const char *fallback, const struct audit_operator *op,
                        struct audit **out, const char **used, struct err *err)
{
    struct err first;
    *used = dir;
    int rc = audit_open(dir, op, out, &first);
    if (rc == 0 || !fallback || !fallback[0] || !strcmp(dir, fallback)) {
        if (rc != 0 && err)
            *err = first;
        return rc;
    }
    *used = fallback;
    rc = audit_open(fallback, op, out, err);
    if (rc != 0 && err) {
        char msg[ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        err_set(err, rc, "%.240s; fallback: %.240s", first.msg, msg);
    }
    return rc;
}

void audit_free(struct audit *a)
{
    free(a);
}

const char *audit_path(const struct audit *a)
{
    return a->path;
}

/* ---- one line ---- */

static bool is_hex64(const char *s, size_t len)
{
    if (len != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* Rebuilds the body (line minus the hash field) into buf: line[0..len-suffix] + '}'. */
static const char *split_body(const char *line, size_t len, char *buf, size_t cap,
                              size_t *body_len, const char **hash)
{
    if (len < HASH_SUFFIX_LEN + 2 || line[0] != '{')
        return "not a record (too short or not a JSON object)";
    const char *suf = line + len - HASH_SUFFIX_LEN;
    if (memcmp(suf, HASH_KEY, HASH_KEY_LEN) != 0 || line[len - 2] != '"' ||
        line[len - 1] != '}' || !is_hex64(suf + HASH_KEY_LEN, 64))
        return "no \"hash\" field of 64 hex digits at the end of the record";
    *body_len = len - HASH_SUFFIX_LEN + 1;
    if (*body_len + 1 > cap)
        return "record longer than the limit";
    memcpy(buf, line, *body_len - 1);
    buf[*body_len - 1] = '}';
    buf[*body_len] = '\0';
    *hash = suf + HASH_KEY_LEN;
    return NULL;
}

static const char *body_fields(const char *body, size_t body_len, int64_t *seq,
                               char prev[AUDIT_HASH_HEX])
{
    json_error_t jerr;
    json_t *o = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &jerr);
    const char *why = NULL;
    if (!o || !json_is_object(o))
        why = "the record is not a valid JSON object";
    else if (json_object_get(o, "hash"))
        why = "a second \"hash\" field inside the record";
    else if (!json_is_integer(json_object_get(o, "seq")) ||
             json_integer_value(json_object_get(o, "seq")) < 1)
        why = "no positive integer \"seq\"";
    else {
        const char *p = json_string_value(json_object_get(o, "prev_hash"));
        if (!p || !is_hex64(p, strlen(p)))
            why = "no \"prev_hash\" of 64 hex digits";
        else {
            *seq = json_integer_value(json_object_get(o, "seq"));
            memcpy(prev, p, AUDIT_HASH_HEX);
        }
    }
    json_decref(o);
    return why;
}

int audit_line_check(const char *line, size_t len, int64_t *seq, char prev[AUDIT_HASH_HEX],
                     char hash[AUDIT_HASH_HEX], const char **reason)
{
    if (len + 1 > AUDIT_LINE_MAX) {
        *reason = "record longer than the limit";
        return -1;
    }
    char *body = malloc(len + 2);
    size_t body_len = 0;
    const char *stored = NULL;
    char got[AUDIT_HASH_HEX];
    if (!body) {
        *reason = "out of memory";
        return -1;
    }
    *reason = split_body(line, len, body, len + 2, &body_len, &stored);
    if (!*reason) {
        audit_sha256_hex(body, body_len, got);
        if (memcmp(got, stored, 64) != 0)
            *reason = "hash mismatch: the record's content was changed";
    }
    if (!*reason)
        *reason = body_fields(body, body_len, seq, prev);
    if (!*reason) {
        memcpy(hash, stored, 64);
        hash[64] = '\0';
    }
    free(body);
    return *reason ? -1 : 0;
}

/* ---- building a record ---- */

/* A JSON string of s; bytes that are not UTF-8 (file names may hold any) become
 * the four characters \xNN, so the record stays valid JSON and names the file. */
static json_t *json_path_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    char *buf = malloc(4 * n + 1);
    if (!buf)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80)
            buf[k++] = (char)c;
        else
            k += (size_t)snprintf(buf + k, 5, "\\x%02x", c);
    }
    buf[k] = '\0';
    j = json_string(buf);
    free(buf);
    return j;
}

static void utc_now(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static json_t *operator_json(const struct audit_operator *op)
{
    json_t *o = json_object();
    json_object_set_new(o, "uid", json_integer(op->uid));
    json_object_set_new(o, "user", json_path_string(op->user));
    json_object_set_new(o, "loginuid", op->loginuid >= 0 ? json_integer(op->loginuid)
                                                         : json_null());
    if (op->sudo_user[0])
        json_object_set_new(o, "sudo_user", json_path_string(op->sudo_user));
    return o;
}

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v)
        json_object_set_new(o, key, json_path_string(v));
}

static json_t *record_json(const struct audit *a, const struct audit_record *r, int64_t seq,
                           const char *prev)
{
    char now[32];
    utc_now(now);
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer(seq));
    json_object_set_new(o, "time", json_string(now));
    json_object_set_new(o, "operator", operator_json(&a->op));
    set_str(o, "host", a->op.host);
    set_str(o, "action", r->action);
    set_str(o, "phase", r->phase);
    set_str(o, "target", r->target);
    if (r->size >= 0)
        json_object_set_new(o, "size", json_integer(r->size));
    set_str(o, "sha256", r->sha256);
    set_str(o, "method", r->method);
    if (r->passes >= 0)
        json_object_set_new(o, "passes", json_integer(r->passes));
    set_str(o, "verification", r->verification);
    set_str(o, "result", r->result);
    set_str(o, "error", r->error);
    if (r->intent_seq > 0)
        json_object_set_new(o, "intent_seq", json_integer(r->intent_seq));
    if (r->details)
        json_object_set_new(o, "details", json_deep_copy(r->details));
    json_object_set_new(o, "prev_hash", json_string(prev));
    return o;
}

/* The full line (with hash and '\n') of r; malloc'ed, or NULL. */
static char *record_line(const struct audit *a, const struct audit_record *r, int64_t seq,
                         const char *prev, size_t *len)
{
    json_t *o = record_json(a, r, seq, prev);
    char *body = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!body)
        return NULL;
    size_t blen = strlen(body);
    char hash[AUDIT_HASH_HEX];
    audit_sha256_hex(body, blen, hash);
    char *line = malloc(blen + HASH_SUFFIX_LEN + 2);
    if (line) {
        memcpy(line, body, blen - 1);
        *len = blen - 1;
        *len += (size_t)snprintf(line + *len, HASH_SUFFIX_LEN + 3, "%s%s\"}\n", HASH_KEY, hash);
    }
    free(body);
    return line;
}

/* ---- the newest record ---- */

/* The last record of one file: *seq 0 when the file is empty. ERR_FORMAT when the
 * last line is damaged (no newline, too long, bad hash). */
static int file_tail(const char *path, int64_t *seq, char hash[AUDIT_HASH_HEX],
                     struct err *err)
{
    *seq = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : err_errno(err, ERR_IO, errno, "open %s", path);
    struct stat st;
    char *buf = malloc(AUDIT_LINE_MAX);
    int rc = 0;
    if (!buf || fstat(fd, &st) != 0) {
        rc = err_set(err, buf ? ERR_IO : ERR_NOMEM, "%s: cannot read", path);
        goto out;
    }
    if (st.st_size == 0)
        goto out;
    off_t want = st.st_size < AUDIT_LINE_MAX ? st.st_size : AUDIT_LINE_MAX;
    ssize_t got = pread(fd, buf, (size_t)want, st.st_size - want);
    if (got != (ssize_t)want) {
        rc = err_errno(err, ERR_IO, errno, "%s: cannot read the last record", path);
        goto out;
    }
    if (buf[got - 1] != '\n') {
        rc = err_set(err, ERR_FORMAT, "%s: the last record is cut off (no newline); "
                     "run 'deepseek audit verify' and repair the log first", path);
        goto out;
    }
    ssize_t start = got - 1;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    if (start == 0 && want < st.st_size) {
        rc = err_set(err, ERR_FORMAT, "%s: the last record is too long", path);
        goto out;
    }
    char prev[AUDIT_HASH_HEX];
    const char *why;
    if (audit_line_check(buf + start, (size_t)(got - 1 - start), seq, prev, hash, &why) != 0)
        rc = err_set(err, ERR_FORMAT, "%s: the last record is damaged (%s); run "
                     "'deepseek audit verify'", path, why);
out:
    free(buf);
    close(fd);
    return rc;
}

static bool is_audit_name(const char *name)
{
    size_t n = strlen(name);
    return strncmp(name, AUDIT_FILE, strlen(AUDIT_FILE)) == 0 &&
           !(n > 3 && strcmp(name + n - 3, ".gz") == 0);
}

/* The newest record over every audit file of the directory: rotation may have left
 * audit.jsonl empty with the chain's end in audit.jsonl.1. */
static int chain_tail(const struct audit *a, int64_t *seq, char hash[AUDIT_HASH_HEX],
                      struct err *err)
{
    *seq = 0;
    memcpy(hash, GENESIS_HASH, AUDIT_HASH_HEX);
    DIR *d = opendir(a->dir);
    if (!d)
        return err_errno(err, ERR_IO, errno, "audit: cannot list %s", a->dir);
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!is_audit_name(de->d_name))
            continue;
        char path[PATH_MAX + 256];
        int64_t s;
        char h[AUDIT_HASH_HEX];
        snprintf(path, sizeof path, "%s/%s", a->dir, de->d_name);
        rc = file_tail(path, &s, h, err);
        if (rc == 0 && s > *seq) {
            *seq = s;
            memcpy(hash, h, AUDIT_HASH_HEX);
        }
    }
    closedir(d);
    return rc;
}

/* ---- append ---- */

static int write_all_sync(const char *path, const char *line, size_t len, struct err *err)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return err_errno(err, ERR_IO, errno, "audit: open %s", path);
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, line + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            return err_errno(err, ERR_IO, e, "audit: write %s", path);
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return err_errno(err, ERR_IO, e, "audit: fsync %s", path);
    }
    return close(fd) == 0 ? 0 : err_errno(err, ERR_IO, errno, "audit: close %s", path);
}

/* fsync of the directory, so a newly created audit.jsonl has its name on disk too. */
static int sync_dir(const char *dir, struct err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return err_errno(err, ERR_IO, e, "audit: fsync directory %s", dir);
    }
    close(fd);
    return 0;
}

int audit_append(struct audit *a, const struct audit_record *r, int64_t *seq_out,
                 struct err *err)
{
    if (seq_out)
        *seq_out = 0;
    int lock = open(a->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (lock < 0)
        return err_errno(err, ERR_IO, errno, "audit: open %s", a->lock_path);
    while (flock(lock, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(lock);
            return err_errno(err, ERR_IO, e, "audit: lock %s", a->lock_path);
        }
    }
    int64_t seq;
    char prev[AUDIT_HASH_HEX];
    size_t len = 0;
    char *line = NULL;
    int rc = chain_tail(a, &seq, prev, err);
    if (rc == 0) {
        line = record_line(a, r, seq + 1, prev, &len);
        if (!line)
            rc = err_set(err, ERR_NOMEM, "audit: cannot build the record");
    }
    if (rc == 0 && len > AUDIT_LINE_MAX)
        rc = err_set(err, ERR_RANGE, "audit: record of %zu bytes is over the limit", len);
    if (rc == 0)
        rc = write_all_sync(a->path, line, len, err);
    if (rc == 0)
        rc = sync_dir(a->dir, err);
    if (rc == 0 && seq_out)
        *seq_out = seq + 1;
    free(line);
    close(lock); /* releases the flock */
    return rc;
}

/* ---- listing and verifying ---- */

void audit_files_free(char **files, size_t n)
{
    for (size_t i = 0; files && i < n; i++)
        free(files[i]);
    free(files);
}

/* The seq of a file's first record: 0 when empty, -1 when it does not parse. */
static int64_t first_seq(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    int64_t seq = 0;
    if (n > 0) {
        char prev[AUDIT_HASH_HEX], hash[AUDIT_HASH_HEX];
        const char *why;
        size_t len = (size_t)n - (line[n - 1] == '\n');
        if (audit_line_check(line, len, &seq, prev, hash, &why) != 0)
            seq = -1;
    }
    free(line);
    fclose(f);
    return seq;
}

struct ranked {
    char *path;
    int64_t seq;
};

static int ranked_cmp(const void *x, const void *y)
{
    const struct ranked *a = x, *b = y;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return strcmp(a->path, b->path);
}

int audit_list_files(const char *dir, char ***files, size_t *n, struct err *err)
{
    *files = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return err_errno(err, ERR_IO, errno, "audit: cannot list %s", dir);
    struct ranked *r = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!is_audit_name(de->d_name))
            continue;
        if (cnt == cap) {
            cap = cap ? 2 * cap : 8;
            struct ranked *nr = realloc(r, cap * sizeof *r);
            if (!nr) {
                rc = err_set(err, ERR_NOMEM, "audit: out of memory");
                break;
            }
            r = nr;
        }
        size_t plen = strlen(dir) + strlen(de->d_name) + 2;
        r[cnt].path = malloc(plen);
        if (!r[cnt].path) {
            rc = err_set(err, ERR_NOMEM, "audit: out of memory");
            break;
        }
        snprintf(r[cnt].path, plen, "%s/%s", dir, de->d_name);
        r[cnt].seq = first_seq(r[cnt].path);
        if (r[cnt].seq == 0) { /* empty: nothing to verify */
            free(r[cnt].path);
            continue;
        }
        cnt++;
    }
    closedir(d);
    char **out = rc == 0 ? calloc(cnt + 1, sizeof *out) : NULL;
    if (rc == 0 && !out)
        rc = err_set(err, ERR_NOMEM, "audit: out of memory");
    if (rc == 0)
        qsort(r, cnt, sizeof *r, ranked_cmp);
    for (size_t i = 0; i < cnt; i++) {
        if (out)
            out[i] = r[i].path;
        else
            free(r[i].path);
    }
    free(r);
    if (rc == 0) {
        *files = out;
        *n = cnt;
    }
    return rc;
}

static void verify_fail(struct audit_verify *v, const char *file, int64_t line, int64_t seq,
                        const char *reason)
{
    v->broken = true;
    snprintf(v->file, sizeof v->file, "%s", file);
    v->line = line;
    v->seq = seq;
    snprintf(v->reason, sizeof v->reason, "%s", reason);
}

/* Checks one line against the chain so far (v->head_*). false when broken. */
static bool verify_line(struct audit_verify *v, const char *file, int64_t lineno, char *line,
                        ssize_t n, bool partial)
{
    char prev[AUDIT_HASH_HEX], hash[AUDIT_HASH_HEX], why[200];
    const char *reason;
    int64_t seq = 0;
    if (line[n - 1] != '\n') {
        verify_fail(v, file, lineno, 0, "the record is cut off (no newline at the end)");
        return false;
    }
    if (audit_line_check(line, (size_t)n - 1, &seq, prev, hash, &reason) != 0) {
        verify_fail(v, file, lineno, 0, reason);
        return false;
    }
    if (v->records == 0 && !partial && (seq != 1 || strcmp(prev, GENESIS_HASH) != 0)) {
        snprintf(why, sizeof why, "the chain starts at seq %lld, not at seq 1 from the "
                 "genesis hash: earlier records are missing (--partial accepts this)",
                 (long long)seq);
        verify_fail(v, file, lineno, seq, why);
        return false;
    }
    if (v->records > 0 && seq != v->head_seq + 1) {
        snprintf(why, sizeof why, "seq %lld follows seq %lld: records were deleted, "
                 "reordered or inserted", (long long)seq, (long long)v->head_seq);
        verify_fail(v, file, lineno, seq, why);
        return false;
    }
    if (v->records > 0 && strcmp(prev, v->head_hash) != 0) {
        verify_fail(v, file, lineno, seq, "prev_hash is not the hash of the record before: "
                    "a record was replaced or inserted");
        return false;
    }
    if (v->records == 0)
        v->first_seq = seq;
    v->records++;
    v->head_seq = seq;
    memcpy(v->head_hash, hash, AUDIT_HASH_HEX);
    return true;
}

int audit_verify_files(char *const *files, size_t n, bool partial, struct audit_verify *out,
                       struct err *err)
{
    memset(out, 0, sizeof *out);
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0 && !out->broken; i++) {
        FILE *f = fopen(files[i], "re");
        if (!f) {
            rc = err_errno(err, ERR_IO, errno, "audit: open %s", files[i]);
            break;
        }
        ssize_t len;
        int64_t lineno = 0;
        while (!out->broken && (len = getline(&line, &cap, f)) > 0) {
            lineno++;
            verify_line(out, files[i], lineno, line, len, partial);
        }
        if (ferror(f))
            rc = err_errno(err, ERR_IO, errno, "audit: read %s", files[i]);
        fclose(f);
    }
    free(line);
    return rc;
}

int audit_foreach(char *const *files, size_t n, audit_record_fn fn, void *ctx,
                  struct err *err)
{
    char *line = NULL;
    size_t cap = 0;
    int rc = 0, stop = 0;
    for (size_t i = 0; i < n && rc == 0 && !stop; i++) {
        FILE *f = fopen(files[i], "re");
        if (!f) {
            rc = err_errno(err, ERR_IO, errno, "audit: open %s", files[i]);
            break;
        }
        ssize_t len;
        int64_t lineno = 0;
        while (!stop && (len = getline(&line, &cap, f)) > 0) {
            lineno++;
            json_t *rec = json_loadb(line, (size_t)len, 0, NULL);
            stop = fn(json_is_object(rec) ? rec : NULL, files[i], lineno, ctx);
            json_decref(rec);
        }
        fclose(f);
    }
    free(line);
    return rc;
}
