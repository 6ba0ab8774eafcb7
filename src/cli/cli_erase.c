/*
 * `deepseek erase --key-id ID`: GDPR erasure of one API key id's data (server/erase.h).
 *
 * With a server running (its pid file names a live `deepseek serve`, or --url is
 * given) the server does it: DELETE /v1/admin/subjects/ID with the admin key, since
 * only the server can evict what it holds in memory. Otherwise it is done here, on the
 * same files the server uses: the data keys <log-dir>/cache.keys, the prompt logs
 * <log-dir>/prompts, Redis at --cache-url, the audit log <log-dir>/audit.jsonl.
 * Exit codes (docs/OPERATIONS.md "Erasing one subject"): 0 done, 1 error (server
 * unreachable, I/O), 2 usage, 3 refused by the server (401/403/404), 4 partial (some
 * store failed; the report says which), 7 a server runs and no admin key was given,
 * 9 audit log not writable (nothing erased).
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "ops/audit.h"
#include "ops/keystore.h"
#include "ops/wipe.h"
#include "server/erase.h"
#include "server/promptlog.h"
#include "server/rcache.h"

#define ERASE_PID_NAME "deepseek-serve.pid" /* the server's default, server/server.c */
#define ERASE_TIMEOUT_S 300L                /* a wipe of large prompt logs takes a while */

extern char **environ;

struct opts {
    const char *key_id, *url, *admin_key_file;
    bool json;
    int passes;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek erase --key-id ID [--url URL] [--admin-key KEY | --admin-key-file F]\n"
            "                      [--json] [--passes N] [--log-dir DIR] [SETTING ...]\n"
            "Erases everything kept about one API key id (GDPR Art. 17): destroys its data\n"
            "key (overwritten in place), wipes its prompt logs, evicts its response-cache\n"
            "entries (memory and Redis) and prefix-cache slots, and writes an audit record.\n"
            "ID '-' is the anonymous subject (requests made without a key).\n"
            "A running server (pid file, or --url) does it through DELETE\n"
            "/v1/admin/subjects/ID with the admin key (--admin-key, DEEPSEEK_ADMIN_KEY, or\n"
            "the first line of --admin-key-file); with none running it is done here.\n"
            "Exit: 0 done, 1 error, 2 usage, 3 refused by the server, 4 partial,\n"
            "7 server running but no admin key, 9 audit log not writable (nothing erased).\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--key-id") && has)
            o->key_id = argv[++i];
        else if (!strcmp(a, "--url") && has)
            o->url = argv[++i];
        else if (!strcmp(a, "--admin-key-file") && has)
            o->admin_key_file = argv[++i];
        else if (!strcmp(a, "--json"))
            o->json = true;
        else if (!strcmp(a, "--passes") && has) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > WIPE_MAX_PASSES) {
                fprintf(stderr, "deepseek erase: --passes must be 0..%d\n", WIPE_MAX_PASSES);
                return 2;
            }
            o->passes = (int)v;
        } else {
            fprintf(stderr, "deepseek erase: unknown or incomplete option '%s' (see --help)\n",
                    a);
            return 2;
        }
    }
    if (!o->key_id) {
        fprintf(stderr, "deepseek erase: --key-id ID is required (see --help)\n");
        return 2;
    }
    if (!promptlog_id_valid(o->key_id)) {
        fprintf(stderr, "deepseek erase: '%s' is not a key id ([A-Za-z0-9._-], 1..63 bytes, "
                        "or - for anonymous requests)\n", o->key_id);
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------- the report */

static void print_files(json_t *files)
{
    size_t i;
    json_t *f;
    if (json_array_size(files) == 0)
        printf("  prompt logs     none\n");
    json_array_foreach(files, i, f) {
        const char *note = json_string_value(json_object_get(f, "note"));
        printf("  prompt log      %s (%lld bytes): %s, %s%s%s\n",
               json_string_value(json_object_get(f, "path")),
               (long long)json_integer_value(json_object_get(f, "bytes")),
               json_string_value(json_object_get(f, "status")),
               json_string_value(json_object_get(f, "method")), note ? ": " : "",
               note ? note : "");
    }
}

/* "N removed" or "off" for a store that is not kept here (a JSON null). */
static const char *count(json_t *v, char *buf, size_t cap, const char *off)
{
    if (!json_is_integer(v))
        return off;
    snprintf(buf, cap, "%lld removed", (long long)json_integer_value(v));
    return buf;
}

static void print_report(json_t *r)
{
    json_t *dk = json_object_get(r, "data_key"), *rc = json_object_get(r, "response_cache");
    const char *store = json_string_value(json_object_get(dk, "store"));
    char b1[32], b2[32], b3[32];
    printf("erase key id %s: %s\n", json_string_value(json_object_get(r, "subject")),
           json_string_value(json_object_get(r, "status")));
    if (json_is_true(json_object_get(dk, "destroyed")))
        printf("  data key        destroyed (record overwritten in place in %s)\n", store);
    else
        printf("  data key        none stored%s%s\n", store ? " in " : "", store ? store : "");
    print_files(json_object_get(r, "files"));
    printf("  response cache  memory: %s; redis: %s\n",
           count(json_object_get(rc, "memory"), b1, sizeof b1, "off"),
           count(json_object_get(rc, "redis"), b2, sizeof b2, "off"));
    printf("  prefix cache    slots: %s\n",
           count(json_object_get(r, "prefix_cache_slots"), b3, sizeof b3,
                 "none here (no server running)"));
    json_t *au = json_object_get(r, "audit");
    printf("  audit           %s records %lld (intent) and %lld (result)\n",
           json_string_value(json_object_get(au, "file")),
           (long long)json_integer_value(json_object_get(au, "intent_seq")),
           (long long)json_integer_value(json_object_get(au, "result_seq")));
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r, "errors"), i, e)
        printf("  error           %s\n", json_string_value(e));
}

/* Prints r as asked; the exit code for its status. */
static int report_out(json_t *r, bool as_json)
{
    if (as_json) {
        char *s = json_dumps(r, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (s)
            printf("%s\n", s);
        free(s);
    } else {
        print_report(r);
    }
    const char *st = json_string_value(json_object_get(r, "status"));
    return st && !strcmp(st, "ok") ? 0 : 4;
}

/* ------------------------------------------------------ a running server */

/* The pid in the server's pid file when it is a live `deepseek serve`, else 0. */
static long server_pid(const struct config *cfg)
{
    char path[CONFIG_PATH_MAX + 32], cmd[4096];
    if (cfg->pid_file[0])
        snprintf(path, sizeof path, "%s", cfg->pid_file);
    else
        snprintf(path, sizeof path, "%s/%s", cfg->log_dir, ERASE_PID_NAME);
    FILE *f = fopen(path, "re");
    long pid = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 0)
        pid = 0;
    fclose(f);
    if (!pid || (kill((pid_t)pid, 0) && errno != EPERM))
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    f = fopen(path, "re");
    size_t n = f ? fread(cmd, 1, sizeof cmd - 1, f) : 0;
    if (f)
        fclose(f);
    cmd[n] = '\0';
    const char *arg1 = memchr(cmd, '\0', n) ? cmd + strlen(cmd) + 1 : NULL;
    bool ours = strstr(cmd, "deepseek") && arg1 && arg1 < cmd + n && !strcmp(arg1, "serve");
    return ours ? pid : 0;
}

/* The admin key: the first line of --admin-key-file, else the admin-key setting. */
static int admin_key(const struct config *cfg, const struct opts *o, char *key, size_t cap)
{
    key[0] = '\0';
    if (o->admin_key_file) {
        FILE *f = fopen(o->admin_key_file, "re");
        if (!f || !fgets(key, (int)cap, f)) {
            fprintf(stderr, "deepseek erase: %s: cannot read the admin key%s%s\n",
                    o->admin_key_file, f ? "" : ": ", f ? "" : strerror(errno));
            if (f)
                fclose(f);
            return 2;
        }
        fclose(f);
        key[strcspn(key, "\r\n")] = '\0';
    } else {
        snprintf(key, cap, "%s", cfg->admin_key);
    }
    return 0;
}

struct body {
    char *p;
    size_t len;
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    char *p = realloc(b->p, b->len + size * n + 1);
    if (!p)
        return 0;
    memcpy(p + b->len, data, size * n);
    b->len += size * n;
    p[b->len] = '\0';
    b->p = p;
    return size * n;
}

/* DELETE base/v1/admin/subjects/ID. *status the HTTP status, *reply the body. */
static int call_server(const char *base, const char *id, const char *key, long *status,
                       struct body *reply, char *errbuf)
{
    char url[2048], auth[CONFIG_STRING_MAX + 32];
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof url, "%.*s/v1/admin/subjects/%s", (int)bl, base, id);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    CURL *cu = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, auth);
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    if (cu && h) {
        curl_easy_setopt(cu, CURLOPT_URL, url);
        curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, "DELETE");
        curl_easy_setopt(cu, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(cu, CURLOPT_TIMEOUT, ERASE_TIMEOUT_S);
        curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(cu, CURLOPT_WRITEDATA, reply);
        rc = curl_easy_perform(cu);
        curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, status);
    }
    if (rc != CURLE_OK && !errbuf[0])
        snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(cu);
    return rc == CURLE_OK ? 0 : -1;
}

/* The server erases (it alone can evict its memory). */
static int erase_online(const struct opts *o, const char *base, const char *key)
{
    struct body b = {0};
    long status = 0;
    char errbuf[CURL_ERROR_SIZE] = "";
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        call_server(base, o->key_id, key, &status, &b, errbuf)) {
        fprintf(stderr, "deepseek erase: cannot reach the server at %s: %s (nothing erased "
                        "by this command)\n", base, errbuf);
        free(b.p);
        return 1;
    }
    json_t *j = b.p ? json_loads(b.p, 0, NULL) : NULL;
    int code;
    if (status == 200 && json_is_object(j)) {
        code = report_out(j, o->json);
    } else {
        const char *msg = json_string_value(json_object_get(json_object_get(j, "error"),
                                                            "message"));
        fprintf(stderr, "deepseek erase: the server answered %ld: %s\n", status,
                msg ? msg : "(no message)");
        code = status == 401 || status == 403 || status == 404 ? 3 : 1;
    }
    json_decref(j);
    free(b.p);
    curl_global_cleanup();
    return code;
}

/* ------------------------------------------------------------- offline */

/* Where the server keeps its files: log-dir, or ./logs when it had to fall back. */
static const char *data_dir(const struct config *cfg)
{
    struct stat st;
    if (stat(cfg->log_dir, &st) == 0 && S_ISDIR(st.st_mode) && access(cfg->log_dir, W_OK) == 0)
        return cfg->log_dir;
    if (stat(LOG_FALLBACK_DIR, &st) == 0 && S_ISDIR(st.st_mode))
        return LOG_FALLBACK_DIR;
    return cfg->log_dir;
}

/* The stores this process can open: keystore (only when its file exists: never
 * create one), prompt logs, Redis. Then erase_subject. */
static int erase_offline(const struct config *cfg, const struct opts *o)
{
    const char *dir = data_dir(cfg);
    char ks_path[CONFIG_PATH_MAX + 32], pl_dir[CONFIG_PATH_MAX + 32];
    snprintf(ks_path, sizeof ks_path, "%s/cache.keys", dir);
    snprintf(pl_dir, sizeof pl_dir, "%s/" PROMPTLOG_DIR, dir);
    struct keystore *ks = NULL;
    struct promptlog *pl = NULL;
    struct rcache *rc = NULL;
    struct err err = {0};
    json_t *report = NULL;
    int code = 1;
    if (access(ks_path, F_OK) == 0 && keystore_open(ks_path, &ks, &err))
        goto out;
    if (promptlog_new(pl_dir, ks, &pl, &err))
        goto out;
    struct rcache_params rp = {.mem_bytes = 0, .url = cfg->cache_url, .ks = ks};
    if (cfg->cache_url[0] && rcache_new(&rp, &rc, &err))
        goto out;
    struct audit_operator op;
    audit_operator_detect(&op, environ);
    struct erase_targets t = {.ks = ks, .ks_path = ks ? ks_path : NULL, .pl = pl, .rc = rc,
                              .audit_dir = dir, .op = &op, .via = "cli",
                              .passes = o->passes};
    int rc2 = erase_subject(&t, o->key_id, &report, &err);
    if (rc2 == ERR_IO) {
        fprintf(stderr, "deepseek erase: nothing erased: %s\n", err.msg);
        code = 9;
    } else if (rc2 == 0) {
        code = report_out(report, o->json);
    }
out:
    if (code == 1)
        fprintf(stderr, "deepseek erase: %s\n", err.msg);
    json_decref(report);
    rcache_free(rc);
    promptlog_free(pl);
    keystore_free(ks);
    return code;
}

int cli_erase(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    struct config cfg;
    struct err err = {0};
    int rest = 0;
    if (config_setup(&cfg, argc, argv, &rest, argv, &err) != 0) {
        fprintf(stderr, "deepseek erase: %s\n", err.msg);
        return 2;
    }
    struct opts o = {.passes = WIPE_DEFAULT_PASSES};
    if (parse(rest, argv, &o))
        return 2;
    long pid = o.url ? 0 : server_pid(&cfg);
    if (!o.url && !pid)
        return erase_offline(&cfg, &o);
    char key[CONFIG_STRING_MAX];
    if (admin_key(&cfg, &o, key, sizeof key))
        return 2;
    if (!key[0] && o.url) {
        fprintf(stderr, "deepseek erase: --url needs the server's admin key "
                        "(--admin-key-file FILE or DEEPSEEK_ADMIN_KEY)\n");
        return 7;
    }
    if (!key[0]) {
        fprintf(stderr, "deepseek erase: a server is running (pid %ld): it holds the subject's "
                        "cache in memory, so it must do the erase: give its admin key "
                        "(--admin-key-file FILE or DEEPSEEK_ADMIN_KEY), or stop it first\n",
                pid);
        return 7;
    }
    char base[CONFIG_STRING_MAX + 64];
    const char *host = !strcmp(cfg.host, "0.0.0.0") ? "127.0.0.1"
                       : !strcmp(cfg.host, "::") ? "[::1]" : cfg.host;
    if (o.url)
        snprintf(base, sizeof base, "%s", o.url);
    else
        snprintf(base, sizeof base, "http://%s:%lld", host, (long long)cfg.port);
    int code = erase_online(&o, base, key);
    explicit_bzero(key, sizeof key);
    return code;
}
