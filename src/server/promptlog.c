/*
 * promptlog: sealed per-subject prompt logs (see promptlog.h). Three parts: names
 * (ids, paths, which files are a subject's), appending, and reading back.
 */
#include "server/promptlog.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ops/keystore.h"
#include "server/auth.h"

#define PROMPTLOG_PATH_MAX 4200

struct promptlog {
    pthread_mutex_t mu;
    struct keystore *ks;
    char dir[PROMPTLOG_PATH_MAX];
};

int promptlog_new(const char *dir, struct keystore *ks, struct promptlog **out,
                  struct err *err)
{
    *out = NULL;
    struct promptlog *pl = calloc(1, sizeof *pl);
    if (!pl)
        return err_set(err, ERR_NOMEM, "promptlog: out of memory");
    pthread_mutex_init(&pl->mu, NULL);
    pl->ks = ks;
    snprintf(pl->dir, sizeof pl->dir, "%s", dir);
    *out = pl;
    return 0;
}

void promptlog_free(struct promptlog *pl)
{
    if (!pl)
        return;
    pthread_mutex_destroy(&pl->mu);
    free(pl);
}

/* ------------------------------------------------------------------ names */

bool promptlog_id_valid(const char *id)
{
    return !strcmp(id, PROMPTLOG_ANON) || auth_id_valid(id);
}

int promptlog_path(const struct promptlog *pl, const char *id, char *out, size_t cap,
                   struct err *err)
{
    if (!promptlog_id_valid(id))
        return err_set(err, ERR_INVALID, "promptlog: '%.80s' is not a key id", id);
    int n = snprintf(out, cap, "%s/%s.log", pl->dir, id);
    if (n < 0 || (size_t)n >= cap)
        return err_set(err, ERR_RANGE, "promptlog: path too long under %.200s", pl->dir);
    return 0;
}

/* The order of a subject's file name among its files (oldest first), or -1 when
 * name is not one of id's: "<id>.log" (live, last), "<id>.log.N[.gz]" (higher N
 * older), "<id>.log-DIGITS[.gz]" (dateext: smaller older). *num gets N or DIGITS. */
static int file_class(const char *name, const char *id, unsigned long long *num, bool *gz)
{
    size_t n = strlen(id);
    if (strncmp(name, id, n) || strncmp(name + n, ".log", 4))
        return -1;
    const char *s = name + n + 4;
    *num = 0;
    *gz = false;
    if (!*s)
        return 2;
    if (*s != '.' && *s != '-')
        return -1;
    char sep = *s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    while (isdigit((unsigned char)*s))
        *num = *num * 10 + (unsigned long long)(*s++ - '0');
    if (!strcmp(s, ".gz"))
        *gz = true;
    else if (*s)
        return -1;
    return sep == '-' ? 0 : 1;
}

struct fent {
    char name[300];
    int cls;
    unsigned long long num;
    bool gz;
};

static int fent_cmp(const void *pa, const void *pb)
{
    const struct fent *a = pa, *b = pb;
    if (a->cls != b->cls)
        return a->cls < b->cls ? -1 : 1;
    if (a->num == b->num)
        return strcmp(a->name, b->name);
    bool older = a->cls == 1 ? a->num > b->num : a->num < b->num;
    return older ? -1 : 1;
}

/* id's files in dir, oldest first. *out malloc'ed (NULL when none). A missing dir is
 * no file. */
static int list_files(const char *dir, const char *id, struct fent **out, size_t *n,
                      struct err *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : err_errno(err, ERR_IO, errno, "%s: cannot list", dir);
    size_t cap = 0;
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        struct fent f = {0};
        if (strlen(e->d_name) >= sizeof f.name ||
            (f.cls = file_class(e->d_name, id, &f.num, &f.gz)) < 0)
            continue;
        snprintf(f.name, sizeof f.name, "%s", e->d_name);
        if (*n == cap) {
            cap = cap ? cap * 2 : 4;
            struct fent *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                rc = err_set(err, ERR_NOMEM, "promptlog: out of memory");
                break;
            }
            *out = p;
        }
        (*out)[(*n)++] = f;
    }
    closedir(d);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc;
    }
    if (*n)
        qsort(*out, *n, sizeof **out, fent_cmp);
    return 0;
}

/* ---------------------------------------------------------------- appending */

json_t *promptlog_record_new(const char *request_id, const char *protocol, const char *route,
                             const char *key_id)
{
    struct timespec ts;
    struct tm tm;
    char when[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);
    return json_pack("{sissssssssss?}", "v", 1, "request_id", request_id, "time", when,
                     "protocol", protocol, "route", route, "key_id",
                     key_id && key_id[0] ? key_id : NULL);
}

const char *promptlog_subject(const char *key_id)
{
    return key_id && key_id[0] ? key_id : PROMPTLOG_ANON;
}

static void aad_of(const char *id, char *aad, size_t cap)
{
    snprintf(aad, cap, PROMPTLOG_AAD "%s", id);
}

/* base64 of sealed[0..n) and a '\n'; malloc'ed into *line (*len bytes). */
static int encode_line(const unsigned char *sealed, size_t n, char **line, size_t *len)
{
    size_t cap = 4 * ((n + 2) / 3) + 2;
    char *s = malloc(cap);
    if (!s || n > INT32_MAX) {
        free(s);
        return ERR_NOMEM;
    }
    int k = EVP_EncodeBlock((unsigned char *)s, sealed, (int)n);
    s[k] = '\n';
    *line = s;
    *len = (size_t)k + 1;
    return 0;
}

static int append_line(struct promptlog *pl, const char *path, const char *line, size_t len,
                       struct err *err)
{
    if (mkdir(pl->dir, 0700) && errno != EEXIST)
        return err_errno(err, ERR_IO, errno, "%s: cannot create", pl->dir);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return err_errno(err, ERR_IO, errno, "%s: cannot open", path);
    ssize_t w = write(fd, line, len);
    int e = errno;
    close(fd);
    if (w != (ssize_t)len)
        return err_errno(err, ERR_IO, w < 0 ? e : ENOSPC, "%s: cannot append", path);
    return 0;
}

int promptlog_append(struct promptlog *pl, const char *id, const json_t *rec,
                     struct err *err)
{
    char path[PROMPTLOG_PATH_MAX + 80], aad[KEYSTORE_ID_MAX + 32];
    int rc = promptlog_path(pl, id, path, sizeof path, err);
    if (rc)
        return rc;
    if (!pl->ks)
        return err_set(err, ERR_INVALID, "promptlog: no keystore to seal with");
    char *json = json_dumps(rec, JSON_COMPACT);
    if (!json)
        return err_set(err, ERR_NOMEM, "promptlog: cannot serialise the record");
    size_t json_len = strlen(json);
    aad_of(id, aad, sizeof aad);
    unsigned char *sealed = NULL;
    size_t sealed_len = 0;
    char *line = NULL;
    size_t line_len = 0;
    pthread_mutex_lock(&pl->mu);
    rc = keystore_seal(pl->ks, id, aad, json, json_len, &sealed, &sealed_len, err);
    if (!rc && encode_line(sealed, sealed_len, &line, &line_len))
        rc = err_set(err, ERR_NOMEM, "promptlog: out of memory");
    if (!rc)
        rc = append_line(pl, path, line, line_len, err);
    pthread_mutex_unlock(&pl->mu);
    OPENSSL_cleanse(json, json_len); /* the plain text lives no longer than needed */
    free(json);
    free(sealed);
    free(line);
    return rc;
}

/* -------------------------------------------------------------- reading back */

/* Decodes one base64 line (no '\n') into *raw (malloc'ed, *n bytes). -1 if bad. */
static int decode_line(const char *s, size_t len, unsigned char **raw, size_t *n)
{
    if (len == 0 || len % 4 || len > INT32_MAX)
        return -1;
    unsigned char *buf = malloc(len / 4 * 3 + 1);
    int k = buf ? EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len) : -1;
    if (k < 0) {
        free(buf);
        return -1;
    }
    k -= (s[len - 1] == '=') + (s[len - 2] == '=');
    *raw = buf;
    *n = (size_t)k;
    return 0;
}

struct reader {
    struct promptlog *pl;
    const char *id;
    promptlog_record_fn fn;
    void *ctx;
    size_t unreadable;
};

/* One line: decode, unseal, hand over. Returns fn's value (0 for a bad line). */
static int read_line(struct reader *r, const char *aad, char *line, size_t len)
{
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    if (!len)
        return 0;
    unsigned char *raw = NULL;
    size_t n = 0;
    char *plain = NULL;
    size_t plain_len = 0;
    int rc = 0;
    if (!r->pl->ks || decode_line(line, len, &raw, &n) ||
        keystore_unseal(r->pl->ks, r->id, aad, raw, n, &plain, &plain_len, NULL))
        r->unreadable++;
    else
        rc = r->fn(plain, plain_len, r->ctx);
    if (plain)
        OPENSSL_cleanse(plain, plain_len);
    free(plain);
    free(raw);
    return rc;
}

static int read_file(struct reader *r, const char *path, struct err *err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : err_errno(err, ERR_IO, errno, "%s: cannot open", path);
    char aad[KEYSTORE_ID_MAX + 32];
    aad_of(r->id, aad, sizeof aad);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) > 0)
        rc = read_line(r, aad, line, (size_t)len);
    bool bad = ferror(f);
    free(line);
    fclose(f);
    if (!rc && bad)
        rc = err_errno(err, ERR_IO, errno, "%s: cannot read", path);
    return rc;
}

int promptlog_read(struct promptlog *pl, const char *id, promptlog_record_fn fn, void *ctx,
                   size_t *unreadable, struct err *err)
{
    if (unreadable)
        *unreadable = 0;
    if (!promptlog_id_valid(id))
        return err_set(err, ERR_INVALID, "promptlog: '%.80s' is not a key id", id);
    struct fent *files;
    size_t n;
    int rc = list_files(pl->dir, id, &files, &n, err);
    struct reader r = {pl, id, fn, ctx, 0};
    for (size_t i = 0; !rc && i < n; i++) {
        char path[PROMPTLOG_PATH_MAX + 320];
        snprintf(path, sizeof path, "%s/%s", pl->dir, files[i].name);
        if (files[i].gz)
            r.unreadable++; /* compressed copies are not read here (zcat them) */
        else
            rc = read_file(&r, path, err);
    }
    free(files);
    if (unreadable)
        *unreadable = r.unreadable;
    return rc;
}

int promptlog_files_locked(struct promptlog *pl, const char *id, promptlog_file_fn fn,
                           void *ctx, struct err *err)
{
    if (!promptlog_id_valid(id))
        return err_set(err, ERR_INVALID, "promptlog: '%.80s' is not a key id", id);
    pthread_mutex_lock(&pl->mu);
    struct fent *files;
    size_t n;
    int rc = list_files(pl->dir, id, &files, &n, err);
    for (size_t i = 0; !rc && i < n; i++) {
        char path[PROMPTLOG_PATH_MAX + 320];
        snprintf(path, sizeof path, "%s/%s", pl->dir, files[i].name);
        struct stat st;
        if (lstat(path, &st))
            continue; /* gone meanwhile (another process's erase) */
        rc = fn(path, (long long)st.st_size, ctx);
    }
    pthread_mutex_unlock(&pl->mu);
    free(files);
    return rc;
}
