/* wipe_device: `wipe --device` on whole block devices; see the section in wipe.h.
 * The order is wipe.c's: every check, then the intent record, then the first write. */
#include "ops/wipe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define RANGE (256ull << 20) /* bytes per ioctl, so progress and stop are seen */
#define READ_CHUNK (1u << 20)

static const char *const method_names[] = {"zeroout", "secure-discard", "discard"};
static const char *const method_ioctls[] = {"blkzeroout", "blksecdiscard", "blkdiscard"};

int wipe_device_method_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, method_names[i]))
            return i;
    return -1;
}

const char *wipe_device_nist(enum wipe_device_method m)
{
    switch (m) {
    case WIPE_DEV_ZEROOUT:
        return "NIST SP 800-88 Clear (every addressable block written with zeros and read "
               "back); not Purge on flash: spare and remapped blocks are out of reach";
    case WIPE_DEV_SECURE_DISCARD:
        return "NIST SP 800-88: device-defined secure erase, Purge only if the device's secure erase "
               "physically erases, which the host cannot verify";
    case WIPE_DEV_DISCARD:
        return "NIST SP 800-88: none, discard is not sanitization (the device may keep and return the data)";
    }
    return "?";
}

/* /sys/class/block/NAME/ATTR as text ("" when absent). */
static void sys_attr(const char *name, const char *attr, char *out, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "/sys/class/block/%s/%s", name, attr);
    FILE *f = fopen(path, "re");
    out[0] = '\0';
    if (f) {
        if (!fgets(out, (int)cap, f))
            out[0] = '\0';
        fclose(f);
    }
    out[strcspn(out, "\n")] = '\0';
}

void wipe_device_purge_hint(const char *dev, char *out, size_t cap)
{
    const char *name = strrchr(dev, '/') ? strrchr(dev, '/') + 1 : dev;
    char rot[8], back[512];
    sys_attr(name, "queue/rotational", rot, sizeof rot);
    if (!strncmp(name, "loop", 4)) {
        sys_attr(name, "loop/backing_file", back, sizeof back);
        snprintf(out, cap, "a loop device keeps its data in its backing file %s: wipe that "
                 "file (deepseek wipe) or purge the device under it", back[0] ? back : "?");
    } else if (!strncmp(name, "nvme", 4)) {
        snprintf(out, cap, "NVMe Purge is the drive's own command: nvme id-ctrl %s -H | grep "
                 "-i sanitize; then nvme sanitize %s --sanact=2 (block erase) or --sanact=4 "
                 "(crypto erase), or nvme format %s --ses=1 (--ses=2: crypto erase)",
                 dev, dev, dev);
    } else if (!strncmp(name, "mmcblk", 6)) {
        snprintf(out, cap, "eMMC: secure-discard asks the card's own secure erase/trim "
                 "(deepseek wipe --device secure-discard %s)", dev);
    } else if (!strcmp(rot, "0")) {
        snprintf(out, cap, "SSD Purge is the drive's own command: hdparm -I %s | grep -i "
                 "sanitize; then hdparm --sanitize-block-erase %s (ATA) or sg_sanitize "
                 "--block %s (SCSI/SAS); crypto erase: --sanitize-crypto-scramble / "
                 "sg_sanitize --crypto", dev, dev, dev);
    } else {
        snprintf(out, cap, "disk Purge: hdparm --sanitize-overwrite hex:00000000 %s (ATA) or "
                 "sg_sanitize --overwrite --pattern=FILE %s (SCSI), or degauss", dev, dev);
    }
}

/* The mount point of dev or of one of its partitions, or "" when none is mounted. */
static void mounted_on(dev_t dev, char *where, size_t cap)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096];
    where[0] = '\0';
    while (f && !where[0] && fgets(line, sizeof line, f)) {
        unsigned ma, mi;
        char mnt[2048];
        if (sscanf(line, "%*d %*d %u:%u %*s %2047s", &ma, &mi, mnt) != 3)
            continue;
        bool hit = makedev(ma, mi) == dev;
        if (!hit) { /* a partition: its parent's dev file names dev */
            char path[128], parent[32];
            snprintf(path, sizeof path, "/sys/dev/block/%u:%u/../dev", ma, mi);
            FILE *p = fopen(path, "re");
            if (p && fgets(parent, sizeof parent, p)) {
                unsigned pa, pi;
                hit = sscanf(parent, "%u:%u", &pa, &pi) == 2 && makedev(pa, pi) == dev;
            }
            if (p)
                fclose(p);
        }
        if (hit)
            snprintf(where, cap, "%s", mnt);
    }
    if (f)
        fclose(f);
}

/* Opens dev for the wipe after the checks; fills size. -1 with *status and err. */
static int device_open(const char *dev, uint64_t *size, struct stat *st,
                       enum wipe_status *status, struct err *err)
{
    char where[2048];
    *status = WIPE_REFUSED;
    if (stat(dev, st) != 0)
        return err_errno(err, ERR_IO, errno, "%s", dev), -1;
    if (!S_ISBLK(st->st_mode))
        return err_set(err, ERR_INVALID, "%s is not a block device (files: deepseek wipe "
                       "FILE)", dev), -1;
    mounted_on(st->st_rdev, where, sizeof where);
    if (where[0])
        return err_set(err, ERR_INVALID, "%s (or a partition of it) is mounted on %s: "
                       "unmount it first", dev, where), -1;
    int fd = open(dev, O_RDWR | O_EXCL | O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, ERR_IO, errno, "%s is in use (swap, device mapper, RAID or "
                         "another opener holds it)%s", dev, errno == EBUSY ? "" : ": cannot "
                         "open it"), -1;
    if (ioctl(fd, BLKGETSIZE64, size) != 0) {
        close(fd);
        *status = WIPE_FAILED;
        return err_errno(err, ERR_IO, errno, "%s: BLKGETSIZE64", dev), -1;
    }
    return fd;
}

static int record(struct audit *a, const char *dev, enum wipe_device_method m,
                  uint64_t size, const struct stat *st, const char *phase, const char *result,
                  const char *verification, const char *error, int64_t intent,
                  int64_t *seq, struct err *err)
{
    char hint[512], devno[32];
    wipe_device_purge_hint(dev, hint, sizeof hint);
    snprintf(devno, sizeof devno, "%u:%u", major(st->st_rdev), minor(st->st_rdev));
    json_t *d = json_pack("{s:s,s:s,s:s}", "dev", devno, "nist", wipe_device_nist(m),
                          "purge_hint", hint);
    struct audit_record r = {.action = "wipe.device", .phase = phase, .target = dev,
                             .size = (int64_t)size, .method = method_ioctls[m], .passes = 1,
                             .verification = verification, .result = result, .error = error,
                             .intent_seq = intent, .details = d};
    int rc = audit_append(a, &r, seq, err);
    json_decref(d);
    return rc;
}

/* Runs the ioctl over [0, size). 0, or -errno of the failing range (*done: bytes done). */
static int device_ioctl(int fd, enum wipe_device_method m, uint64_t size, const char *dev,
                        const struct wipe_opts *o, uint64_t *done)
{
    static const unsigned long req[] = {BLKZEROOUT, BLKSECDISCARD, BLKDISCARD};
    for (*done = 0; *done < size;) {
        uint64_t range[2] = {*done, size - *done < RANGE ? size - *done : RANGE};
        if (ioctl(fd, req[m], range) != 0)
            return -errno;
        *done += range[1];
        if (o->progress)
            o->progress(o->progress_ctx, dev, 1, 1, *done, size);
        if (o->stop && *o->stop && *done < size)
            return -EINTR;
    }
    return fsync(fd) != 0 ? -errno : 0;
}

/* Reads dev back through O_DIRECT: 0 all zeros, else the first non-zero offset + 1. */
static uint64_t device_nonzero(const char *dev, uint64_t size, struct err *err)
{
    int fd = open(dev, O_RDONLY | O_DIRECT | O_CLOEXEC);
    unsigned char *buf = NULL;
    uint64_t bad = 0;
    if (fd < 0 || posix_memalign((void **)&buf, 4096, READ_CHUNK) != 0) {
        err_errno(err, ERR_IO, errno, "%s: cannot read back", dev);
        bad = 1;
    }
    for (uint64_t off = 0; !bad && off < size;) {
        ssize_t n = pread(fd, buf, READ_CHUNK, (off_t)off);
        if (n <= 0) {
            err_errno(err, ERR_IO, n < 0 ? errno : EIO, "%s: read back at %llu", dev,
                      (unsigned long long)off);
            bad = off + 1;
            break;
        }
        for (ssize_t i = 0; i < n; i++)
            if (buf[i]) {
                err_set(err, ERR_IO, "%s: byte %llu reads back 0x%02x after zeroout", dev,
                        (unsigned long long)(off + (uint64_t)i), buf[i]);
                bad = off + (uint64_t)i + 1;
                break;
            }
        off += (uint64_t)n;
    }
    free(buf);
    if (fd >= 0)
        close(fd);
    return bad;
}

int wipe_device(struct audit *audit, const char *dev, enum wipe_device_method m,
                const struct wipe_opts *o, enum wipe_status *status, struct err *err)
{
    uint64_t size = 0, done = 0;
    struct stat st;
    memset(&st, 0, sizeof st);
    int64_t intent = 0;
    int fd = device_open(dev, &size, &st, status, err);
    if (fd < 0) {
        if (*status == WIPE_REFUSED)
            record(audit, dev, m, 0, &st, "result", "refused", NULL, err->msg, 0, NULL, NULL);
        return ERR_INVALID;
    }
    int rc = 0;
    if (o->dry_run) {
        *status = WIPE_PLANNED;
        rc = record(audit, dev, m, size, &st, "plan", "planned", NULL, NULL, 0, NULL, err);
        goto close_fd;
    }
    if (record(audit, dev, m, size, &st, "intent", "pending", NULL, NULL, 0, &intent, err)) {
        *status = WIPE_AUDIT_FAILED;
        rc = ERR_IO;
        goto close_fd;
    }
    int e = device_ioctl(fd, m, size, dev, o, &done);
    const char *verif = m == WIPE_DEV_ZEROOUT ? "readback-o_direct-all-zero"
                      : m == WIPE_DEV_SECURE_DISCARD ? "none: device-defined secure erase"
                                                     : "none: discard is not sanitization";
    if (e == -EOPNOTSUPP && done == 0) {
        *status = WIPE_REFUSED;
        rc = err_set(err, ERR_UNSUPPORTED, "%s does not support %s (%s: %s); nothing was "
                     "changed", dev, method_names[m], method_ioctls[m], strerror(EOPNOTSUPP));
    } else if (e == -EINTR) {
        *status = WIPE_INTERRUPTED;
        rc = err_set(err, ERR_IO, "%s: interrupted after %llu of %llu bytes", dev,
                     (unsigned long long)done, (unsigned long long)size);
    } else if (e != 0) {
        *status = WIPE_FAILED;
        rc = err_errno(err, ERR_IO, -e, "%s: %s at byte %llu", dev, method_ioctls[m],
                       (unsigned long long)done);
    } else if (m == WIPE_DEV_ZEROOUT && device_nonzero(dev, size, err) != 0) {
        *status = WIPE_VERIFY_FAILED;
        rc = ERR_IO;
    } else {
        *status = WIPE_OK;
    }
    struct err e2;
    if (record(audit, dev, m, size, &st, "result", wipe_status_name(*status), verif,
               rc ? err->msg : NULL, intent, NULL, &e2) != 0 && rc == 0) {
        *status = WIPE_AUDIT_FAILED;
        rc = err_set(err, ERR_IO, "%s wiped, but the result record failed: %s", dev, e2.msg);
    }
close_fd:
    close(fd);
    return rc;
}
