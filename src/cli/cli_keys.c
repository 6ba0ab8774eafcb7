/*
 * `deepseek keys add NAME [--rpm N] [--tpm N] [--concurrent N] [--admin]`,
 * `deepseek keys list`, `deepseek keys remove NAME` (all take --api-keys FILE or
 * the api-keys setting): manage the server's key file (server/auth.h has its
 * format). add prints the new key once on stdout and stores only its SHA-256; the
 * file is created 0600. Edits hold an flock on the file so two adds cannot
 * interleave; a running server picks changes up on SIGHUP.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "config/config.h"
#include "server/auth.h"

struct add_opts {
    const char *name;
    long rpm, tpm, concurrent;
    int admin;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deepseek keys add NAME [--rpm N] [--tpm N] [--concurrent N] [--admin]\n"
            "       deepseek keys list\n"
            "       deepseek keys remove NAME\n"
            "  --api-keys FILE  the key file (default: the api-keys setting)\n\n"
            "add generates a key, appends its SHA-256 to the file (created mode 0600) and\n"
            "prints the key once on stdout: store it now, it cannot be shown again.\n"
            "Limits default to 0 = unlimited. Send SIGHUP to a running server to reload.\n");
}

static int parse_num(const char *flag, const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : -1;
    if (!s || errno || *end || end == s || v < 0) {
        fprintf(stderr, "deepseek keys add: %s needs a whole number >= 0\n", flag);
        return 2;
    }
    *out = v;
    return 0;
}

static int parse_add(int argc, char **argv, struct add_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (!strcmp(a, "--rpm"))
            rc = parse_num(a, argv[++i], &o->rpm);
        else if (!strcmp(a, "--tpm"))
            rc = parse_num(a, argv[++i], &o->tpm);
        else if (!strcmp(a, "--concurrent"))
            rc = parse_num(a, argv[++i], &o->concurrent);
        else if (!strcmp(a, "--admin"))
            o->admin = 1;
        else if (a[0] == '-' || o->name) {
            fprintf(stderr, "deepseek keys add: unexpected argument '%s'\n", a);
            return 2;
        } else
            o->name = a;
        if (rc)
            return rc;
    }
    if (!o->name || !auth_id_valid(o->name)) {
        fprintf(stderr, "deepseek keys add: NAME must be 1-%d characters of [A-Za-z0-9._-], not \"-\"\n",
                AUTH_ID_MAX - 1);
        return 2;
    }
    return 0;
}

/* Opens (creating 0600) and locks the key file. A concurrent `keys remove` may
 * rename a new file over the one we locked: then lock the new one. fd or -1. */
static int open_locked(const char *path, int flags)
{
    for (int tries = 0; tries < 10; tries++) {
        int fd = open(path, flags | O_CLOEXEC, 0600);
        if (fd < 0) {
            fprintf(stderr, "deepseek keys: %s: %s\n", path, strerror(errno));
            return -1;
        }
        struct stat a, b;
        if (flock(fd, LOCK_EX) != 0 || fstat(fd, &a) != 0) {
            fprintf(stderr, "deepseek keys: %s: lock: %s\n", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            return fd;
        close(fd);
    }
    fprintf(stderr, "deepseek keys: %s: keeps being replaced; try again\n", path);
    return -1;
}

/* Loads the current file to check it parses and NAME is new. 0, 1 or 2. */
static int check_existing(const char *path, const char *name)
{
    struct auth *a;
    struct err err;
    bool open_mode = false;
    if (auth_load(path, &a, &open_mode, &err) != 0) {
        fprintf(stderr, "deepseek keys add: nothing added: %s\n", err.msg);
        return 1;
    }
    if (open_mode)
        fprintf(stderr, "deepseek keys: warning: %s is readable by group or others; "
                        "chmod 600 it\n", path);
    int rc = 0;
    struct auth_key_info k;
    for (size_t i = 0; auth_key_at(a, i, &k) == 0; i++) {
        if (!strcmp(k.id, name)) {
            fprintf(stderr, "deepseek keys add: %s: id '%s' exists already\n", path, name);
            rc = 2;
        }
    }
    auth_free(a);
    return rc;
}

/* True when the file is non-empty and its last byte is not '\n'. */
static int needs_newline(int fd)
{
    struct stat st;
    char c;
    if (fstat(fd, &st) != 0 || st.st_size == 0)
        return 0;
    return pread(fd, &c, 1, st.st_size - 1) == 1 && c != '\n';
}

static int keys_add(const char *path, int argc, char **argv)
{
    struct add_opts o;
    int rc = parse_add(argc, argv, &o);
    if (rc)
        return rc;
    int fd = open_locked(path, O_RDWR | O_CREAT | O_APPEND);
    if (fd < 0)
        return 1;
    rc = check_existing(path, o.name);
    char key[AUTH_NEW_KEY_SIZE], hex[65], line[256];
    if (rc == 0 && (auth_generate_key(key, sizeof(key)) || auth_hash_hex(key, strlen(key), hex))) {
        fprintf(stderr, "deepseek keys add: no random bytes or hash from OpenSSL\n");
        rc = 1;
    }
    if (rc == 0) {
        int n = snprintf(line, sizeof(line), "%sid=%s sha256=%s rpm=%ld tpm=%ld concurrent=%ld "
                         "scope=%s\n", needs_newline(fd) ? "\n" : "", o.name, hex, o.rpm, o.tpm,
                         o.concurrent, o.admin ? "admin" : "user");
        if (n < 0 || (size_t)n >= sizeof(line) || write(fd, line, (size_t)n) != n ||
            fsync(fd) != 0) {
            fprintf(stderr, "deepseek keys add: %s: write: %s\n", path, strerror(errno));
            rc = 1;
        }
    }
    if (rc == 0) {
        printf("%s\n", key);
        fflush(stdout);
        fprintf(stderr, "added key '%s' to %s; it is shown only this once. "
                        "Reload a running server with SIGHUP.\n", o.name, path);
    }
    OPENSSL_cleanse(key, sizeof(key));
    close(fd);
    return rc;
}

static void print_limit(long v)
{
    if (v > 0)
        printf(" %10ld", v);
    else
        printf(" %10s", "-");
}

static int keys_list(const char *path)
{
    struct auth *a;
    struct err err;
    bool open_mode = false;
    if (auth_load(path, &a, &open_mode, &err) != 0) {
        fprintf(stderr, "deepseek keys list: %s\n", err.msg);
        return 1;
    }
    if (open_mode)
        fprintf(stderr, "deepseek keys: warning: %s is readable by group or others; "
                        "chmod 600 it\n", path);
    printf("%-24s %-6s %10s %10s %10s\n", "ID", "SCOPE", "RPM", "TPM", "CONCURRENT");
    struct auth_key_info k;
    for (size_t i = 0; auth_key_at(a, i, &k) == 0; i++) {
        printf("%-24s %-6s", k.id, k.scope == AUTH_SCOPE_ADMIN ? "admin" : "user");
        print_limit(k.rpm);
        print_limit(k.tpm);
        print_limit(k.concurrent);
        printf("\n");
    }
    auth_free(a);
    return 0;
}

/* Whether line is a key line whose id= field is exactly name. */
static int line_has_id(const char *line, const char *name)
{
    const char *p = line;
    size_t n = strlen(name);
    while ((p = strstr(p, "id=")) != NULL) {
        int at_start = p == line || p[-1] == ' ' || p[-1] == '\t';
        if (at_start && !strncmp(p + 3, name, n) && strchr(" \t\r\n", p[3 + n]))
            return 1;
        p += 3;
    }
    return 0;
}

/* Copies every line but NAME's to tmp; 1 if found, 0 if not, -1 on error. */
static int copy_without(FILE *in, FILE *out, const char *name)
{
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    while (getline(&line, &cap, in) >= 0) {
        const char *p = line + strspn(line, " \t");
        if (*p != '#' && line_has_id(p, name)) {
            found = 1;
            continue;
        }
        if (fputs(line, out) == EOF) {
            found = -1;
            break;
        }
    }
    if (ferror(in))
        found = -1;
    free(line);
    return found;
}

static int keys_remove(const char *path, const char *name)
{
    int fd = open_locked(path, O_RDONLY);
    if (fd < 0)
        return 1;
    char tmp[CONFIG_PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path); /* path < CONFIG_PATH_MAX: fits */
    int tfd = mkstemp(tmp); /* mode 0600 */
    FILE *in = fdopen(dup(fd), "r"), *out = tfd >= 0 ? fdopen(tfd, "w") : NULL;
    int found = in && out ? copy_without(in, out, name) : -1;
    if (out && (fflush(out) != 0 || fsync(fileno(out)) != 0))
        found = -1;
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    else if (tfd >= 0)
        close(tfd);
    int rc = 0;
    if (found == 1 && rename(tmp, path) != 0)
        found = -1;
    if (found != 1)
        unlink(tmp);
    if (found < 0) {
        fprintf(stderr, "deepseek keys remove: %s: %s; nothing changed\n", path,
                strerror(errno));
        rc = 1;
    } else if (found == 0) {
        fprintf(stderr, "deepseek keys remove: %s: no key with id '%s'\n", path, name);
        rc = 2;
    } else {
        fprintf(stderr, "removed key '%s' from %s. Reload a running server with SIGHUP.\n",
                name, path);
    }
    close(fd);
    return rc;
}

int cli_keys(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    }
    struct config cfg;
    struct err err;
    int rest;
    if (config_setup(&cfg, argc, argv, &rest, argv, &err) != 0) {
        fprintf(stderr, "deepseek keys: %s\n", err.msg);
        return 2;
    }
    if (rest < 2) {
        usage(stderr);
        return 2;
    }
    if (!cfg.api_keys[0]) {
        fprintf(stderr, "deepseek keys: no key file: pass --api-keys FILE or set api-keys\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "add"))
        return keys_add(cfg.api_keys, rest, argv);
    if (!strcmp(cmd, "list") && rest == 2)
        return keys_list(cfg.api_keys);
    if (!strcmp(cmd, "remove") && rest == 3)
        return keys_remove(cfg.api_keys, argv[2]);
    usage(stderr);
    return 2;
}
