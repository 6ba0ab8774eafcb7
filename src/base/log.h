/*
 * log: the one logging macro and the process-wide log file.
 *
 * Every line looks like
 *     2026-11-28T17:12:00.123Z [INFO] gguf: opened model.gguf (291 tensors)
 *     2026-11-28T17:12:00.456Z [WARN] http rid=7f3a9c: client closed the stream
 * (UTC with milliseconds; " rid=ID" only while the thread has a request id set).
 *
 * Use: each .c file that logs says which module it is, then calls LOG:
 *     #define LOG_MODULE "gguf"
 *     #include "base/log.h"
 *     LOG(INFO, "opened %s (%zu tensors)", path, n);
 *     LOG_AT(level, ...) takes a runtime enum log_level instead of a word (level is
 *     evaluated twice: pass a plain variable).
 * The level is checked before anything is formatted (arguments are not evaluated
 * when the level is off) and the format string is printf-checked by the compiler.
 *
 * Invariants of a written line, whatever the message holds:
 *   - it is exactly one line: '\n', '\r' and other control bytes in the text are
 *     written escaped ("\n" as the two characters \ and n), so content can't forge
 *     a line;
 *   - it is at most LOG_LINE_MAX bytes; longer ones end in " [truncated]" and are
 *     never cut inside a UTF-8 character;
 *   - every registered secret (log_register_secret), every "Bearer <token>",
 *     every "sk-" token of 8+ characters [A-Za-z0-9_-] and the password of a
 *     "scheme://user:password@" URL are written as [REDACTED]. Redaction looks at
 *     the whole formatted text before it is truncated, so a secret split across
 *     format arguments or crossing the truncation point is still caught.
 *
 * Where lines go: to the file opened by log_open, and also to stderr when asked;
 * to stderr alone while no file is open. Each line is one write(2) on an O_APPEND
 * descriptor under a mutex, so lines of different threads never interleave.
 * Rotation: log_request_reopen() is async-signal-safe (it only sets a flag) and the
 * next LOG call reopens the file by name; log_install_sighup() wires it to SIGHUP
 * for logrotate's "postrotate kill -HUP".
 *
 * Threading: every function may be called from any thread; log_open/log_close are
 * meant for main() at start and end. The request id is per thread. errno is
 * preserved across LOG calls.
 */
#ifndef DS_BASE_LOG_H
#define DS_BASE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

#define LOG_LINE_MAX 4096       /* bytes of one written line, '\n' included */
#define LOG_REQUEST_ID_MAX 64   /* bytes kept of a request id, NUL included */
#define LOG_FALLBACK_DIR "logs" /* relative to the working directory */

/* LOG(INFO, "fmt", ...): the logging macro. Level is one of ERROR, WARN, INFO, DEBUG.
 * Needs LOG_MODULE (a string literal) defined in the calling file. */
#define LOG(level, ...) LOG_AT(LOG_LEVEL_##level, __VA_ARGS__)
#define LOG_AT(level, ...)                                        \
    do {                                                          \
        if (log_enabled(level))                                   \
            log_write((level), LOG_MODULE, __VA_ARGS__);          \
    } while (0)

/* Opens dir/file_name for appending (creating dir, one level of parents at a time,
 * mode 0750; the file 0640). If that fails, falls back to ./logs/file_name and logs
 * one WARN line saying why (also on stderr). dir NULL or "" means no file: lines go
 * to stderr. to_stderr: also copy every line to stderr. Sets the level. Closes any
 * file opened before. Returns 0, or ERR_IO naming both directories when even the
 * fallback fails (lines then go to stderr). */
int log_open(const char *dir, const char *file_name, enum log_level level, bool to_stderr,
             struct err *err);

/* Closes the log file; later lines go to stderr. Registered secrets stay. */
void log_close(void);

/* The directory / full path of the open log file, or "" when none is open. The
 * returned string stays valid until the next log_open/log_close. */
const char *log_dir_used(void);
const char *log_path(void);

/* Reopens the log file by name now (after logrotate renamed it). 0 or ERR_IO; on
 * failure the old descriptor stays in use. */
int log_reopen(struct err *err);

/* Async-signal-safe: asks the next LOG call to reopen the file. */
void log_request_reopen(void);

/* Installs a SIGHUP handler that calls log_request_reopen(). 0 or ERR_INTERNAL. */
int log_install_sighup(struct err *err);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
bool log_enabled(enum log_level level);

/* "error" | "warn" | "info" | "debug" <-> enum. parse returns 0 or ERR_INVALID. */
const char *log_level_name(enum log_level level);
int log_level_parse(const char *name, enum log_level *out);

/* Sets this thread's request id (copied, bytes outside [A-Za-z0-9._:-] become '_',
 * cut at LOG_REQUEST_ID_MAX-1); NULL or "" clears it. */
void log_set_request_id(const char *id);
const char *log_request_id(void);

/* Registers a secret (an API key, the admin key, a URL with a password): copies
 * len bytes; every later line containing them shows [REDACTED] instead. Empty and
 * already-registered secrets are ignored. 0 or ERR_NOMEM. */
int log_register_secret(const char *s, size_t len);
/* Forgets every registered secret (tests; never needed in the server). */
void log_clear_secrets(void);

/* Applies the same redaction as log lines (secrets and patterns; no escaping or
 * truncation) to text, for modules that write their own files (access log, audit).
 * Returns a malloc'ed NUL-terminated string the caller owns, or NULL on no memory. */
char *log_redact(const char *text);

/* The functions behind LOG; call them through the macro. */
void log_write(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
