/*
 * wipe: provable deletion of files by overwriting them in place.
 *
 * Overwriting erases data only where the filesystem writes the new bytes onto the
 * same blocks (research/deletion.md §0, measured here: ext4 data=ordered yes; btrfs,
 * ext4 data=journal, tmpfs no). So a wipe first proves it can work and refuses
 * otherwise, before a single byte is written:
 *   - a regular file, not a symlink, with one hard link (other names would keep
 *     pointing at the zeros and hide that a "deleted" name still exists);
 *   - on an allowlisted filesystem (ext2/3/4 except data=journal, xfs), never on
 *     copy-on-write, compressed, log-structured, network or memory filesystems;
 *   - FIEMAP extents readable and none shared, inline, encoded or unknown;
 *   - no process holds it open or mapped (/proc/PID/fd and /proc/PID/maps): a
 *     holder could still read the content after the unlink (our own server can be
 *     stopped first: wipe_server_stop, at the end of this header).
 * Then: audit "intent" record (fsynced; no record, no wipe), N random passes and a
 * zero pass over every allocated byte (size rounded up to the block size, plus any
 * preallocated extents), fdatasync after each, read-back of the last pass through
 * O_DIRECT compared by SHA-256, FIEMAP again (every old extent must still map to the
 * same physical blocks), truncate, rename through shorter random names with a
 * directory fsync after each, unlink, directory fsync, audit "result" record.
 *
 * What it does not claim: file names may survive in the ext4 journal; SSD wear
 * levelling and remapped sectors are out of reach of any file-level tool (use
 * crypto-erase or a device purge, NIST SP 800-88); backups are not covered.
 *
 * Ownership: functions borrow every argument. Threading: any thread, but a wipe of
 * one path at a time; opts->stop may be set from a signal handler.
 */
#ifndef DS_OPS_WIPE_H
#define DS_OPS_WIPE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"
#include "ops/audit.h"

#define WIPE_DEFAULT_PASSES 3
#define WIPE_MAX_PASSES 35

enum wipe_status {
    WIPE_OK = 0,        /* overwritten, verified, removed */
    WIPE_PLANNED,       /* --dry-run: every check passed, nothing written */
    WIPE_REFUSED,       /* a safety check said no; nothing was modified */
    WIPE_FAILED,        /* I/O error; the file may be partly overwritten */
    WIPE_VERIFY_FAILED, /* read-back mismatch or extents moved: data may remain */
    WIPE_INTERRUPTED,   /* stop was set; the file is partly overwritten */
    WIPE_AUDIT_FAILED,  /* the intent record could not be written; nothing modified */
};

/* Progress of the pass in flight, called about every 64 MiB. */
typedef void (*wipe_progress_fn)(void *ctx, const char *path, int pass, int passes,
                                 uint64_t done, uint64_t total);

struct wipe_opts {
    int passes;                  /* random passes, 0..WIPE_MAX_PASSES */
    bool zero;                   /* a final zero pass */
    bool recursive;              /* directories: every file, then the directories */
    bool dry_run;                /* checks and a "plan" record only */
    volatile sig_atomic_t *stop; /* non-zero: stop after the write in flight (or NULL) */
    wipe_progress_fn progress;   /* or NULL */
    void *progress_ctx;
    int spare_pid; /* dry run with --stop-server only: the server that would be stopped
                      first does not count as a holder (0: none; ignored without dry_run) */
};

/* A process that has the file open or mapped. */
struct wipe_holder {
    int pid;
    char comm[32];
    char how[24]; /* "fd 3" or "mmap" */
};

/* Wipes path (a file, or with opts->recursive a directory tree: every check on
 * every file passes before anything is touched). Writes audit records to audit.
 * *status says what happened; err says why when it is not WIPE_OK/WIPE_PLANNED.
 * Returns 0 when the wipe (or plan) succeeded, a negative ERR_* otherwise. */
int wipe_path(struct audit *audit, const char *path, const struct wipe_opts *opts,
              enum wipe_status *status, struct err *err);

/* The filesystem check alone, shared with logs sanitize: 0 when fd's filesystem
 * overwrites in place, ERR_UNSUPPORTED with the reason and the alternative. */
int wipe_check_fs(int fd, const char *path, struct err *err);

/* Finds processes other than this one holding (dev, ino) open or mapped: fills up to
 * max holders, *n gets the count found (may exceed max), *unreadable the processes
 * whose fd/maps could not be read (not root). 0 or ERR_IO (/proc unreadable). */
int wipe_find_holders(dev_t dev, ino_t ino, struct wipe_holder *out, size_t max, size_t *n,
                      size_t *unreadable, struct err *err);

/* wipe_find_holders over path, or with recursive over every regular file of the tree
 * under it: fills up to max holders (a process holding several files appears once a
 * file), *n gets the count found. 0, or ERR_IO / ERR_INVALID when path or the tree
 * cannot be read (the wipe itself then says why). */
int wipe_path_holders(const char *path, bool recursive, struct wipe_holder *out, size_t max,
                      size_t *n, struct err *err);

/* The physical layout of a file from FS_IOC_FIEMAP. Opaque. */
struct wipe_extents;
/* ERR_UNSUPPORTED when FIEMAP is not available or an extent is shared, inline,
 * encoded or of unknown location (an overwrite could not be proven in place). */
int wipe_extents_get(int fd, const char *path, struct wipe_extents **out, struct err *err);
void wipe_extents_free(struct wipe_extents *x);
/* True when every block mapped in before is mapped at the same physical place in
 * after (new extents filling holes are fine: they never held old data). */
bool wipe_extents_kept(const struct wipe_extents *before, const struct wipe_extents *after);
/* The end of the last extent in bytes (0 when none). */
uint64_t wipe_extents_end(const struct wipe_extents *x);
size_t wipe_extents_count(const struct wipe_extents *x);

/* The word for a status: "ok", "planned", "refused", ... */
const char *wipe_status_name(enum wipe_status s);


/* ---- whole block devices (wipe_device.c) ----
 * wipe --device: one block ioctl over the whole device, never on a mounted or
 * otherwise opened device (O_EXCL and /proc/self/mountinfo, partitions included).
 * What each method reaches, in NIST SP 800-88 terms (research/deletion.md §1.4-1.5):
 *   zeroout         BLKZEROOUT, then every byte read back as zero: Clear. On flash it
 *                   does not reach spare or remapped blocks, so it is not Purge.
 *   secure-discard  BLKSECDISCARD: only devices that implement secure erase (eMMC,
 *                   some virtio/Xen); EOPNOTSUPP elsewhere (refused, nothing changed).
 *                   What the device does cannot be verified from the host.
 *   discard         BLKDISCARD: not sanitization (the device may keep and return the
 *                   data); recorded as such.
 * Purge of an SSD needs the drive's own sanitize command: wipe_device_purge_hint
 * names it and this code never claims Purge. */
enum wipe_device_method { WIPE_DEV_ZEROOUT = 0, WIPE_DEV_SECURE_DISCARD, WIPE_DEV_DISCARD };

/* "zeroout", "secure-discard", "discard" -> method; -1 when unknown. */
int wipe_device_method_parse(const char *name);
/* The NIST SP 800-88 category the method reaches, as a sentence. */
const char *wipe_device_nist(enum wipe_device_method m);
/* The drive's own Purge command for dev ("nvme sanitize ...", "hdparm ...",
 * "sg_sanitize ..."), or what to do instead (loop devices: their backing file). */
void wipe_device_purge_hint(const char *dev, char *out, size_t cap);

/* Wipes the block device dev with method m: checks (block device, not mounted, O_EXCL,
 * support), intent record, the ioctl in 256 MiB ranges, read-back of zeros for
 * zeroout, result record. opts: dry_run, stop, progress (passes = 1) are used. */
int wipe_device(struct audit *audit, const char *dev, enum wipe_device_method m,
                const struct wipe_opts *opts, enum wipe_status *status, struct err *err);


/* ---- our own server: wipe --stop-server (wipe_server.c) ----
 * A file the server has open or mapped (its model) cannot be wiped: the holder would
 * go on reading the data after the unlink. --stop-server stops OUR server first and
 * never any other process:
 *   - the pid in the pid file, and only while /proc/PID/cmdline reads
 *     "<...deepseek...> serve ..." and /proc/PID/exe (where readable) is a deepseek
 *     binary; a pid file naming a dead or a foreign process is stale: reported, never
 *     signalled;
 *   - else the MainPID of the systemd unit deepseek.service (`systemctl show`).
 * A server running in deepseek.service's cgroup is stopped with `systemctl stop
 * deepseek.service` (systemd then knows the stop was meant and does not restart it);
 * any other gets SIGTERM through a pidfd (a recycled pid cannot be hit), the drain is
 * awaited up to drain-timeout + WIPE_STOP_MARGIN_S seconds, only then SIGKILL. The
 * process counts as gone when /proc/PID is absent, a zombie, or another process (its
 * start time differs). The stop is its own audit action "server.stop": an intent
 * record before the signal (no record, no signal) and a result saying how it ended.
 * The caller checks the holders again afterwards: this module stops, it does not
 * decide that the file is free. */
#define WIPE_STOP_MARGIN_S 10 /* after the drain: cut-off requests, engine join, unmap */
#define WIPE_KILL_WAIT_S 5    /* after SIGKILL */
#define WIPE_SYSTEMD_UNIT "deepseek.service"

enum wipe_server_via { WIPE_SERVER_NONE = 0, WIPE_SERVER_PIDFILE, WIPE_SERVER_SYSTEMD };

struct wipe_server {
    enum wipe_server_via via;
    int pid;                  /* 0 when none was found */
    unsigned long long start; /* its start time (/proc/PID/stat field 22) */
    char pid_file[4096];      /* the pid file looked at */
    char note[512];           /* how it was found, or why nothing was ("" when no pid file
                                 and no unit): a stale pid file is said here */
};

/* Looks for our server through pid_file, then deepseek.service. Never signals, never
 * fails: via NONE (pid 0) when there is none, with note saying what was seen. */
void wipe_server_find(const char *pid_file, struct wipe_server *out);

/* What a stop did. */
struct wipe_stop_report {
    char how[32];   /* "SIGTERM", "SIGTERM+SIGKILL", "systemctl stop", "already gone" */
    double seconds; /* from the signal until the process was seen gone */
};

/* Stops srv (via PIDFILE or SYSTEMD) as described above; reason (borrowed, e.g. "wipe
 * --stop-server MODEL") goes into the records. stop: set by a signal handler, ends the
 * wait (the server goes on draining). *status: WIPE_OK when the process is gone,
 * WIPE_AUDIT_FAILED (intent not written: nothing signalled; or the result record
 * failed), WIPE_FAILED (could not signal, or still there after SIGKILL),
 * WIPE_INTERRUPTED. Returns 0 on WIPE_OK, a negative ERR_* otherwise. */
int wipe_server_stop(struct audit *audit, const struct wipe_server *srv, int drain_timeout_s,
                     const char *reason, volatile sig_atomic_t *stop,
                     struct wipe_stop_report *rep, enum wipe_status *status, struct err *err);

/* --dry-run: the "plan" record of the stop wipe_server_stop would do. 0 or ERR_*. */
int wipe_server_plan(struct audit *audit, const struct wipe_server *srv, int drain_timeout_s,
                     const char *reason, struct err *err);

#endif
