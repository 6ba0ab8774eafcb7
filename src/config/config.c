/*
 * config: see config.h. One static table, built from CONFIG_SETTINGS, describes
 * every setting; each source (file, environment, flags) finds the setting by name
 * and hands its text to parse_value, the only place values are checked and stored.
 * Defaults in the table go through parse_value too, so they obey their own ranges.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum setting_type { T_BOOL, T_INT, T_FLOAT, T_STRING, T_PATH, T_ENUM };

struct setting {
    const char *id; /* C name: "ctx_size" */
    enum setting_type type;
    const char *def, *min, *max, *choices;
    unsigned flags;
    const char *short_flag;
    const char *help;
    size_t offset, size; /* of the field in struct config */
};

#define SETTING_(id, type, def, min, max, choices, flags, short_flag, help)                 \
    {#id, T_##type, def, min, max, choices, flags, short_flag, help,                        \
     offsetof(struct config, id), sizeof(((struct config *)0)->id)},

static const struct setting settings[] = {CONFIG_SETTINGS(SETTING_)};
#define N_SETTINGS (sizeof settings / sizeof settings[0])

#define NAME_MAX_LEN 64
#define WHY_MAX 256

/* ------------------------------------------------------------------------- */
/* Names                                                                     */

/* "ctx_size" -> "ctx-size" */
static const char *display_name(const struct setting *s, char buf[NAME_MAX_LEN])
{
    size_t i = 0;
    for (; s->id[i] && i < NAME_MAX_LEN - 1; i++)
        buf[i] = s->id[i] == '_' ? '-' : s->id[i];
    buf[i] = '\0';
    return buf;
}

/* "ctx_size" -> "DEEPSEEK_CTX_SIZE" */
static const char *env_name(const struct setting *s, char buf[NAME_MAX_LEN])
{
    size_t n = (size_t)snprintf(buf, NAME_MAX_LEN, "DEEPSEEK_");
    for (size_t i = 0; s->id[i] && n < NAME_MAX_LEN - 1; i++)
        buf[n++] = (char)toupper((unsigned char)s->id[i]);
    buf[n] = '\0';
    return buf;
}

/* name[0..len) equals id, with '-' and '_' the same. */
static bool name_matches(const char *id, const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = name[i] == '-' ? '_' : name[i];
        if (id[i] == '\0' || id[i] != c)
            return false;
    }
    return id[len] == '\0';
}

static const struct setting *find_setting(const char *name, size_t len)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (name_matches(settings[i].id, name, len))
            return &settings[i];
    return NULL;
}

bool config_is_setting(const char *name)
{
    return name && find_setting(name, strlen(name)) != NULL;
}

/* Edit distance, for "did you mean"; names longer than 63 bytes are not compared. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 64 || lb >= 64)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            char ca = a[i - 1] == '-' ? '_' : a[i - 1];
            size_t best = diag + (ca != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* " (did you mean 'port'?)" or "" */
static const char *suggest(const char *name, char buf[NAME_MAX_LEN + 24])
{
    const struct setting *best = NULL;
    size_t best_d = 3; /* at most two edits away */
    for (size_t i = 0; i < N_SETTINGS; i++) {
        size_t d = edit_distance(name, settings[i].id);
        if (d < best_d) {
            best_d = d;
            best = &settings[i];
        }
    }
    char dn[NAME_MAX_LEN];
    buf[0] = '\0';
    if (best)
        snprintf(buf, NAME_MAX_LEN + 24, " (did you mean '%s'?)", display_name(best, dn));
    return buf;
}

/* A user-supplied name or value made safe to quote in a message. */
static const char *shown(const char *v, bool secret, char buf[80])
{
    if (secret)
        return "****";
    if (!*v)
        return "''";
    size_t i = 0;
    for (; v[i] && i < 60; i++)
        buf[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? '?' : v[i];
    if (v[i]) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

/* ------------------------------------------------------------------------- */
/* Values                                                                    */

/* Fills why (WHY_MAX bytes) and returns code, as err_set does for a struct err. */
static int why_set(char *why, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int why_set(char *why, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, WHY_MAX, fmt, ap);
    va_end(ap);
    return code;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i]) || !strcasecmp(v, no[i])) {
            *out = !strcasecmp(v, yes[i]);
            return 0;
        }
    }
    return ERR_FORMAT;
}

/* Decimal int64, with a k/M/G/T suffix (powers of 1024) when bytes is set. */
static int parse_int(const char *v, bool bytes, int64_t *out)
{
    char *end;
    if (!*v || isspace((unsigned char)*v))
        return ERR_FORMAT;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v)
        return ERR_FORMAT;
    if (errno == ERANGE)
        return ERR_RANGE;
    long long mult = 1;
    if (bytes && *end) {
        const char *units = "kmgt";
        const char *u = strchr(units, tolower((unsigned char)*end));
        if (!u)
            return ERR_FORMAT;
        for (const char *p = units; p <= u; p++)
            mult *= 1024;
        end++;
    }
    if (*end)
        return ERR_FORMAT;
    if (x > INT64_MAX / mult || x < INT64_MIN / mult)
        return ERR_RANGE;
    *out = x * mult;
    return 0;
}

static int parse_float(const char *v, double *out)
{
    char *end;
    if (!*v || isspace((unsigned char)*v))
        return ERR_FORMAT;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x))
        return ERR_FORMAT;
    if (errno == ERANGE)
        return ERR_RANGE;
    *out = x;
    return 0;
}

static int check_int(const struct setting *s, const char *v, int64_t *x, char *why)
{
    char b[80];
    const char *sv = shown(v, s->flags & CONFIG_SECRET, b);
    int rc = parse_int(v, s->flags & CONFIG_BYTES, x);
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    if (*s->min)
        parse_int(s->min, false, &lo);
    if (*s->max)
        parse_int(s->max, false, &hi);
    if (rc == ERR_FORMAT)
        return why_set(why, rc, "%s is not an integer%s", sv,
                 (s->flags & CONFIG_BYTES) ? " (a k, M, G or T suffix may follow)" : "");
    else if (rc == ERR_RANGE || *x < lo || *x > hi)
        return why_set(why, ERR_RANGE, "%s is out of range %s..%s", sv, s->min, s->max);
    return rc;
}

static int check_float(const struct setting *s, const char *v, double *x, char *why)
{
    char b[80];
    const char *sv = shown(v, s->flags & CONFIG_SECRET, b);
    int rc = parse_float(v, x);
    double lo = -INFINITY, hi = INFINITY;
    if (*s->min)
        parse_float(s->min, &lo);
    if (*s->max)
        parse_float(s->max, &hi);
    if (rc == ERR_FORMAT)
        return why_set(why, rc, "%s is not a number", sv);
    else if (rc == ERR_RANGE || *x < lo || *x > hi)
        return why_set(why, ERR_RANGE, "%s is out of range %s..%s", sv, s->min, s->max);
    return rc;
}

/* The choice of an ENUM setting that v names (case-insensitive), or -1. */
static int choice_index(const struct setting *s, const char *v, char canon[CONFIG_ENUM_MAX])
{
    const char *p = s->choices;
    for (int i = 0; *p; i++) {
        size_t n = strcspn(p, "|");
        if (strlen(v) == n && !strncasecmp(p, v, n) && n < CONFIG_ENUM_MAX) {
            if (canon) {
                memcpy(canon, p, n);
                canon[n] = '\0';
            }
            return i;
        }
        p += n + (p[n] == '|');
    }
    return -1;
}

static int check_text(const struct setting *s, const char *v, char *why)
{
    size_t n = strlen(v);
    if (n >= s->size)
        return why_set(why, ERR_RANGE, "%s is too long (%zu bytes, at most %zu)",
                        (s->flags & CONFIG_SECRET) ? "****" : "value", n, s->size - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return why_set(why, ERR_FORMAT, "%s contains a control character",
                            (s->flags & CONFIG_SECRET) ? "****" : "value");
    return 0;
}

/* Checks v and stores it in s's field of cfg. On error, why says what is wrong,
 * starting with the (masked) value: "70000 is out of range 1..65535". */
static int parse_value(const struct setting *s, struct config *cfg, const char *v, char *why)
{
    char *field = (char *)cfg + s->offset, b[80], canon[CONFIG_ENUM_MAX];
    int rc = 0;
    switch (s->type) {
    case T_BOOL: {
        bool x;
        if (parse_bool(v, &x))
            return why_set(why, ERR_FORMAT, "%s is not a boolean (true or false)",
                            shown(v, false, b));
        memcpy(field, &x, sizeof x);
        return 0;
    }
    case T_INT: {
        int64_t x = 0;
        if (!(rc = check_int(s, v, &x, why)))
            memcpy(field, &x, sizeof x);
        return rc;
    }
    case T_FLOAT: {
        double x = 0;
        if (!(rc = check_float(s, v, &x, why)))
            memcpy(field, &x, sizeof x);
        return rc;
    }
    case T_STRING:
    case T_PATH:
        if ((s->flags & CONFIG_SECRET) && !strcmp(v, "****"))
            return why_set(why, ERR_FORMAT,
                           "**** is the mask printed by 'deepseek config', not a value");
        if ((s->flags & CONFIG_SECRET) && !strcmp(v, "(unset)"))
            v = ""; /* what config_dump prints for an empty secret reads back as empty */
        if ((rc = check_text(s, v, why)))
            return rc;
        /* Whole field cleared: equal configs compare equal byte for byte. */
        memset(field, 0, s->size);
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case T_ENUM:
        if (choice_index(s, v, canon) < 0)
            return why_set(why, ERR_FORMAT, "%s is not one of %s", shown(v, false, b),
                            s->choices);
        memset(field, 0, s->size);
        memcpy(field, canon, strlen(canon) + 1);
        return 0;
    }
    return ERR_INTERNAL;
}

int config_init_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    char why[WHY_MAX];
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (parse_value(&settings[i], cfg, settings[i].def, why))
            return ERR_INTERNAL;
    return 0;
}

int config_set(struct config *cfg, const char *name, const char *value, struct err *err)
{
    char why[WHY_MAX], dn[NAME_MAX_LEN], sg[NAME_MAX_LEN + 24], b[80];
    const struct setting *s = find_setting(name, strlen(name));
    if (!s)
        return err_set(err, ERR_NOTFOUND, "unknown setting '%s'%s", shown(name, false, b),
                       suggest(name, sg));
    int rc = parse_value(s, cfg, value, why);
    if (rc)
        return err_set(err, rc, "%s = %s", display_name(s, dn), why);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Config file                                                               */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Unquotes a value in place: "..." with \" and \\, '...' literal, or bare text
 * whose " #" starts a comment. NULL with *what set on a syntax error. */
static char *unquote(char *v, const char **what)
{
    char q = *v;
    if (q != '"' && q != '\'') {
        for (char *p = v; *p; p++)
            if (*p == '#' && (p == v || isspace((unsigned char)p[-1]))) {
                *p = '\0';
                break;
            }
        return trim(v);
    }
    char *out = v, *p = v + 1;
    while (*p && *p != q) {
        if (q == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
            p++;
        *out++ = *p++;
    }
    if (*p != q) {
        *what = "unterminated quote";
        return NULL;
    }
    char *rest = trim(p + 1);
    if (*rest && *rest != '#') {
        *what = "text after the closing quote";
        return NULL;
    }
    *out = '\0';
    return v;
}

static int load_line(struct config *cfg, const char *path, int lineno, char *line,
                     struct err *err)
{
    char why[WHY_MAX], dn[NAME_MAX_LEN], sg[NAME_MAX_LEN + 24], b[80];
    char *text = trim(line);
    if (!*text || *text == '#')
        return 0;
    char *eq = strchr(text, '=');
    if (!eq)
        return err_set(err, ERR_FORMAT, "%s:%d: expected 'key = value', got '%s'", path, lineno,
                       shown(text, false, b));
    *eq = '\0';
    char *key = trim(text);
    const struct setting *s = find_setting(key, strlen(key));
    if (!s)
        return err_set(err, ERR_NOTFOUND, "%s:%d: unknown key '%s'%s", path, lineno,
                       shown(key, false, b), suggest(key, sg));
    const char *what = NULL;
    char *value = unquote(trim(eq + 1), &what);
    if (!value)
        return err_set(err, ERR_FORMAT, "%s:%d: %s: %s", path, lineno, display_name(s, dn),
                       what);
    int rc = parse_value(s, cfg, value, why);
    if (rc)
        return err_set(err, rc, "%s:%d: %s = %s", path, lineno, display_name(s, dn), why);
    return 0;
}

int config_load_file(struct config *cfg, const char *path, struct err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return err_errno(err, ERR_IO, errno, "%s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, rc = 0;
    while (!rc && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)n != strlen(line))
            rc = err_set(err, ERR_FORMAT, "%s:%d: line holds a NUL byte", path, lineno);
        else if (n > 65536)
            rc = err_set(err, ERR_FORMAT, "%s:%d: line longer than 65536 bytes", path, lineno);
        else
            rc = load_line(cfg, path, lineno, line, err);
    }
    if (!rc && ferror(f))
        rc = err_errno(err, ERR_IO, errno, "%s: read failed after line %d", path, lineno);
    free(line);
    fclose(f);
    if (!rc && snprintf(cfg->config_file, sizeof cfg->config_file, "%s", path) < 0)
        cfg->config_file[0] = '\0';
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Environment                                                               */

/* The value of DEEPSEEK_<suffix> in envp, or NULL. */
static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

static void note_ignored(struct config *cfg, const char *name, size_t len)
{
    size_t used = strlen(cfg->ignored_env);
    if (used + len + 2 > sizeof cfg->ignored_env)
        return; /* the list is a hint; a full one just stops growing */
    if (used)
        cfg->ignored_env[used++] = ' ';
    memcpy(cfg->ignored_env + used, name, len);
    cfg->ignored_env[used + len] = '\0';
}

static const struct setting *find_env_setting(const char *var, size_t len)
{
    char en[NAME_MAX_LEN];
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strlen(env_name(&settings[i], en)) == len && !memcmp(en, var, len))
            return &settings[i];
    return NULL;
}

int config_load_env(struct config *cfg, char *const *envp, struct err *err)
{
    char why[WHY_MAX], en[NAME_MAX_LEN];
    if (!envp)
        envp = environ;
    for (; envp && *envp; envp++) {
        const char *e = *envp, *eq = strchr(e, '=');
        if (strncmp(e, "DEEPSEEK_", 9) != 0 || !eq || !strncmp(e, "DEEPSEEK_CONFIG=", 16))
            continue;
        const struct setting *s = find_env_setting(e, (size_t)(eq - e));
        if (!s) {
            note_ignored(cfg, e, (size_t)(eq - e));
            continue;
        }
        int rc = parse_value(s, cfg, eq + 1, why);
        if (rc)
            return err_set(err, rc, "environment: %s = %s", env_name(s, en), why);
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Command line                                                              */

static const struct setting *find_short(const char *arg)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (settings[i].short_flag && !strcmp(settings[i].short_flag, arg))
            return &settings[i];
    return NULL;
}

/* Looks at argv[*i]; if it is a setting flag, applies it (advancing *i past a
 * separate value) and returns 1; returns 0 for an argument that is not ours. */
static int apply_flag(struct config *cfg, int argc, char **argv, int *i, struct err *err)
{
    const char *arg = argv[*i], *value = NULL;
    const struct setting *s = find_short(arg);
    bool negated = false;
    char why[WHY_MAX];
    if (!s && arg[0] == '-' && arg[1] == '-') {
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (len == 6 && !strncmp(name, "config", 6)) {
            if (!eq && ++*i >= argc)
                return err_set(err, ERR_INVALID, "--config needs a value (a file name)");
            return 1;
        }
        s = find_setting(name, len);
        if (!s && len > 3 && !strncmp(name, "no-", 3) && !eq) {
            s = find_setting(name + 3, len - 3);
            negated = s && s->type == T_BOOL;
            s = negated ? s : NULL;
        }
        value = eq ? eq + 1 : NULL;
    }
    if (!s)
        return 0;
    if (!value && s->type == T_BOOL)
        value = negated ? "false" : "true";
    if (!value) {
        if (*i + 1 >= argc)
            return err_set(err, ERR_INVALID, "%s needs a value", arg);
        value = argv[++*i];
    }
    int rc = parse_value(s, cfg, value, why);
    if (rc) {
        size_t flag_len = strcspn(arg, "=");
        return err_set(err, rc, "%.*s %s", (int)flag_len, arg, why);
    }
    return 1;
}

int config_parse_args(struct config *cfg, int argc, char **argv, int *rest_argc,
                      char **rest_argv, struct err *err)
{
    int out = 0;
    if (argc > 0)
        rest_argv[out++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            while (i < argc)
                rest_argv[out++] = argv[i++];
            break;
        }
        int rc = apply_flag(cfg, argc, argv, &i, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            rest_argv[out++] = argv[i];
    }
    rest_argv[out] = NULL;
    *rest_argc = out;
    return 0;
}

/* The last --config FILE / --config=FILE before "--", or NULL. */
static int find_config_arg(int argc, char **argv, const char **file, struct err *err)
{
    *file = NULL;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (!strncmp(argv[i], "--config=", 9)) {
            *file = argv[i] + 9;
        } else if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc)
                return err_set(err, ERR_INVALID, "--config needs a value (a file name)");
            *file = argv[++i];
        }
    }
    return 0;
}

int config_validate(const struct config *cfg, struct err *err)
{
    if (!cfg->tls_cert[0] != !cfg->tls_key[0])
        return err_set(err, ERR_INVALID, "%s is set but %s is not: give both or neither",
                       cfg->tls_cert[0] ? "tls-cert" : "tls-key",
                       cfg->tls_cert[0] ? "tls-key" : "tls-cert");
    if (cfg->grpc_port != 0 && cfg->grpc_port == cfg->port)
        return err_set(err, ERR_INVALID, "grpc-port %lld is the same as port",
                       (long long)cfg->grpc_port);
    return 0;
}

int config_register_secrets(const struct config *cfg)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        const char *v = (const char *)cfg + s->offset;
        if ((s->flags & CONFIG_SECRET) && (s->type == T_STRING || s->type == T_PATH) && *v)
            if (log_register_secret(v, strlen(v)))
                return ERR_NOMEM;
    }
    return 0;
}

int config_setup(struct config *cfg, int argc, char **argv, int *rest_argc, char **rest_argv,
                 struct err *err)
{
    const char *file;
    int rc = config_init_defaults(cfg);
    if (rc)
        return err_set(err, rc, "config: a default in the settings table does not parse");
    if ((rc = find_config_arg(argc, argv, &file, err)))
        return rc;
    if (!file)
        file = env_get(environ, "DEEPSEEK_CONFIG");
    if (!file && access(CONFIG_DEFAULT_FILE, F_OK) == 0)
        file = CONFIG_DEFAULT_FILE;
    if (file && *file && (rc = config_load_file(cfg, file, err)))
        return rc;
    if ((rc = config_load_env(cfg, NULL, err)))
        return rc;
    if ((rc = config_parse_args(cfg, argc, argv, rest_argc, rest_argv, err)))
        return rc;
    if ((rc = config_validate(cfg, err)))
        return rc;
    if (config_register_secrets(cfg))
        return err_set(err, ERR_NOMEM, "out of memory registering secrets with the log");
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Help and dump                                                             */

static const char *metavar(const struct setting *s)
{
    switch (s->type) {
    case T_BOOL: return "";
    case T_INT: return (s->flags & CONFIG_BYTES) ? " BYTES" : " N";
    case T_FLOAT: return " X";
    case T_STRING: return " TEXT";
    case T_PATH: return " PATH";
    case T_ENUM: return " CHOICE";
    }
    return "";
}

static void help_one(const struct setting *s, FILE *out)
{
    char dn[NAME_MAX_LEN], en[NAME_MAX_LEN], flag[160];
    display_name(s, dn);
    if (s->type == T_BOOL)
        snprintf(flag, sizeof flag, "--%s, --no-%s", dn, dn);
    else if (s->short_flag)
        snprintf(flag, sizeof flag, "%s, --%s%s", s->short_flag, dn, metavar(s));
    else
        snprintf(flag, sizeof flag, "--%s%s", dn, metavar(s));
    fprintf(out, "  %-38s %s\n      %s\n      default: %s%s", flag, env_name(s, en), s->help,
            *s->def ? s->def : "(empty)", (s->flags & CONFIG_SECRET) ? "; secret" : "");
    if (s->type == T_ENUM)
        fprintf(out, "; one of %s", s->choices);
    else if (*s->min || *s->max)
        fprintf(out, "; range %s..%s", s->min, s->max);
    fputc('\n', out);
}

void config_help(FILE *out)
{
    fprintf(out,
            "Settings. Each is a flag, an environment variable and a config-file key\n"
            "(the flag name without '--'). Later sources win: default < config file <\n"
            "environment < command line. The config file is --config FILE, else\n"
            "$DEEPSEEK_CONFIG, else " CONFIG_DEFAULT_FILE " if it exists; it holds\n"
            "'key = value' lines and '#' comments. Sizes in BYTES take k, M, G, T suffixes.\n\n");
    for (size_t i = 0; i < N_SETTINGS; i++)
        help_one(&settings[i], out);
}

static bool needs_quotes(const char *v)
{
    size_t n = strlen(v);
    return n == 0 || isspace((unsigned char)v[0]) || isspace((unsigned char)v[n - 1])
           || strpbrk(v, "#\"'\\") != NULL;
}

static void dump_text(const char *v, FILE *out)
{
    if (!needs_quotes(v)) {
        fputs(v, out);
        return;
    }
    fputc('"', out);
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            fputc('\\', out);
        fputc(*v, out);
    }
    fputc('"', out);
}

/* The shortest of %.15g..%.17g that reads back as x (0.8, not 0.80000000000000004). */
static void dump_float(double x, FILE *out)
{
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    fputs(buf, out);
}

void config_dump(const struct config *cfg, FILE *out)
{
    char dn[NAME_MAX_LEN];
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        const char *field = (const char *)cfg + s->offset;
        fprintf(out, "%s = ", display_name(s, dn));
        if (s->flags & CONFIG_SECRET) {
            fputs(*field ? "****" : "(unset)", out);
        } else if (s->type == T_BOOL) {
            bool b;
            memcpy(&b, field, sizeof b);
            fputs(b ? "true" : "false", out);
        } else if (s->type == T_INT) {
            int64_t x;
            memcpy(&x, field, sizeof x);
            fprintf(out, "%lld", (long long)x);
        } else if (s->type == T_FLOAT) {
            double x;
            memcpy(&x, field, sizeof x);
            dump_float(x, out);
        } else {
            dump_text(field, out);
        }
        fputc('\n', out);
    }
}

int config_enum_index(const char *name, const char *value)
{
    const struct setting *s = name ? find_setting(name, strlen(name)) : NULL;
    if (!s || s->type != T_ENUM || !value)
        return -1;
    return choice_index(s, value, NULL);
}

enum log_level config_log_level(const struct config *cfg)
{
    enum log_level level = LOG_LEVEL_INFO;
    log_level_parse(cfg->log_level, &level);
    return level;
}
