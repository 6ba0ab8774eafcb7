/*
 * doctor: checks a deployment the way an operator would by hand, and says what to do.
 *
 * The seed verifies a deployment three ways (`ps -ef | grep deepseek`, port 7860
 * listening, `[INFO] Server ready` in /var/log/deepseek/), then `nvidia-smi` and
 * `md5sum` of the model. doctor_run does those and more, each as one check with a
 * status, what it found and what to do about it:
 *   process    the pid file names a live deepseek process (/proc/PID); without a pid
 *              file, a `deepseek serve` found in /proc is a warning
 *   rest-port  a TCP connect to host:port, then GET /ready (200 pass, 503 warn:
 *              loading or draining; no HTTP answer: another program holds the port)
 *   grpc-port  a TCP connect to host:grpc-port (skipped when grpc-port is 0)
 *   log-ready  the current log (deepseek.log, else deepseek.log.1 when rotated since)
 *              has "[INFO] ... Server ready" after the last start line and no
 *              "server stopped" after it
 *   compute    nvidia-smi's GPU name and memory when present (this program computes
 *              on the CPU, so a GPU is information only); the CPU's SIMD features and
 *              the kernels chosen; no AVX2 is a warning (reference kernels: slow)
 *   memory     the model file's size against MemTotal (fail) and MemAvailable (warn)
 *   disk       free space of the log directory (fail < 100 MiB, warn < 1 GiB) and of
 *              the model's filesystem against the model size (warn)
 *   model      GGUF magic, then SHA-256 and MD5 in one read compared with the given
 *              values or the FILE.sha256 / FILE.md5 manifests (sha256sum/md5sum
 *              format); a mismatch fails, no manifest warns (MD5 is compared only
 *              because the seed's manifests use it: integrity, not security)
 *   key-file   the api-keys file is 0600 (group or other may not read or write it);
 *              no key file is fine only on a loopback host
 *   log-dir    not writable by others, not readable by others
 *   audit      the hash chain of the audit log verifies (ops/audit.h)
 * The log directory is the configured one, or ./logs when the server fell back there
 * (its deepseek.log is there and not in the configured one).
 *
 * Library code: nothing is printed; the caller formats the report (text or
 * doctor_to_json). Ownership: doctor_run borrows opts; the report is a plain value.
 * Threading: any thread; runs nvidia-smi through popen (no other child processes).
 */
#ifndef DS_OPS_DOCTOR_H
#define DS_OPS_DOCTOR_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/err.h"
#include "config/config.h"

enum doctor_status {
    DOCTOR_PASS = 0,
    DOCTOR_SKIP, /* not applicable (grpc-port 0, no model configured) */
    DOCTOR_WARN,
    DOCTOR_FAIL,
};

struct doctor_check {
    const char *name; /* static: "process", "rest-port", ... */
    enum doctor_status status;
    char detail[512]; /* what was found */
    char fix[512];    /* what to do; "" when nothing */
};

#define DOCTOR_MAX_CHECKS 16

struct doctor_report {
    size_t n;
    struct doctor_check checks[DOCTOR_MAX_CHECKS];
};

/* Bytes hashed so far of the model (about every 64 MiB, and at the end). */
typedef void (*doctor_progress_fn)(void *ctx, const char *path, uint64_t done,
                                   uint64_t total);

struct doctor_opts {
    const struct config *cfg; /* the deployment: host, ports, log-dir, pid-file, ... */
    const char *model;        /* file to check; NULL or "": cfg->model */
    const char *sha256;       /* expected hex digest, or NULL: FILE.sha256 if present */
    const char *md5;          /* expected hex digest, or NULL: FILE.md5 if present */
    const char *kernels_isa;  /* the kernels in use ("avx2"), or NULL */
    int timeout_ms;           /* per network probe; <= 0: 2000 */
    doctor_progress_fn progress; /* or NULL */
    void *progress_ctx;
};

/* Runs every check in the order above and fills r. */
void doctor_run(const struct doctor_opts *opts, struct doctor_report *r);

/* The most severe status of the report (PASS < SKIP < WARN < FAIL). */
enum doctor_status doctor_worst(const struct doctor_report *r);

/* "pass", "skip", "warn", "fail". */
const char *doctor_status_name(enum doctor_status s);

/* {"ok": no fail, "worst": "...", "checks": [{"name","status","detail","fix"}]}.
 * New reference; NULL on no memory. */
json_t *doctor_to_json(const struct doctor_report *r);

/* SHA-256 and MD5 (lowercase hex) of a file in one read. 0 or ERR_IO. */
int doctor_hash_file(const char *path, char sha256[65], char md5[33], doctor_progress_fn fn,
                     void *ctx, struct err *err);

/* Reads the digest for file from a sha256sum/md5sum style manifest: the first line
 * whose name (basename compared, a leading '*' ignored) is file's, or a line holding
 * only a digest. hex_len is 64 or 32. 0 with out filled (lowercase), ERR_NOTFOUND when
 * the manifest does not exist, ERR_FORMAT when it has no matching line. */
int doctor_manifest_digest(const char *manifest, const char *file, size_t hex_len,
                           char *out, struct err *err);

/* Scans a log for the last start. *start 1 when a start line was found, *ready 1
 * when "Server ready" came after it, *stopped 1 when "server stopped" came after
 * that; ready_line gets the ready line (trimmed). 0 or ERR_IO. */
int doctor_log_scan(const char *path, int *start, int *ready, int *stopped,
                    char *ready_line, size_t cap, struct err *err);

#endif
