/* wipe: see wipe.h. The order of the steps is the design: every check before the
 * intent record, the intent record before the first write. */
#include "ops/wipe.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define CHUNK (1u << 20)              /* bytes per write and read */
#define PROGRESS_EVERY (64ull << 20)  /* bytes between progress calls */

/* ---- filesystem check ---- */

struct fs_kind {
    unsigned long magic;
    const char *name;
    const char *why; /* NULL: overwrites in place */
};

/* Magic numbers not in every linux/magic.h. */
#define FS_ZFS 0x2fc12fc1UL
#define FS_BCACHEFS 0xca451a4eUL
#define FS_F2FS 0xf2f52010UL
#define FS_CIFS 0xff534d42UL
#define FS_SMB2 0xfe534d42UL
#define FS_FUSE 0x65735546UL
#define FS_XFS 0x58465342UL
#define FS_NILFS 0x3434UL

#define ALT "; what works instead: keep such data on an encrypted volume and destroy the " \
            "key (crypto-erase), or purge the device (NIST SP 800-88)"

static const struct fs_kind fs_kinds[] = {
    {EXT4_SUPER_MAGIC, "ext4", NULL}, /* ext2 and ext3 share the magic */
    {FS_XFS, "xfs", NULL},
    {BTRFS_SUPER_MAGIC, "btrfs", "btrfs is copy-on-write: an overwrite goes to new blocks "
     "and the old ones keep the data (measured: 100% of the pattern left)" ALT},
    {FS_ZFS, "zfs", "zfs is copy-on-write: an overwrite goes to new blocks" ALT},
    {FS_BCACHEFS, "bcachefs", "bcachefs is copy-on-write" ALT},
    {FS_F2FS, "f2fs", "f2fs is log-structured: an overwrite goes to new blocks" ALT},
    {FS_NILFS, "nilfs2", "nilfs2 is log-structured and keeps snapshots" ALT},
    {TMPFS_MAGIC, "tmpfs", "tmpfs lives in memory and swap, which a file overwrite cannot "
     "reach; reboot (and wipe or encrypt swap) instead"},
    {RAMFS_MAGIC, "ramfs", "ramfs lives in memory; freed pages are not cleared; reboot"},
    {OVERLAYFS_SUPER_MAGIC, "overlay", "an overlay copies files up and keeps the lower "
     "layer's copy; wipe the file on the underlying filesystem instead"},
    {NFS_SUPER_MAGIC, "nfs", "on NFS the server decides where blocks go (snapshots, CoW, "
     "caches) and this host cannot check; wipe on the server itself"},
    {FS_CIFS, "cifs", "on SMB/CIFS the server decides where blocks go; wipe on the server"},
    {FS_SMB2, "smb2", "on SMB the server decides where blocks go; wipe on the server"},
    {FS_FUSE, "fuse", "a FUSE filesystem may store data anywhere; cannot be checked"},
    {SQUASHFS_MAGIC, "squashfs", "squashfs is read-only and compressed"},
};

static const struct fs_kind *fs_kind_of(unsigned long magic)
{
    for (size_t i = 0; i < sizeof fs_kinds / sizeof fs_kinds[0]; i++)
        if (fs_kinds[i].magic == magic)
            return &fs_kinds[i];
    return NULL;
}

/* The super options of the mount holding dev, from /proc/self/mountinfo
 * ("... - ext4 /dev/loop0 rw,data=journal"). Empty when not found. */
static void super_options(dev_t dev, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL;
    size_t lcap = 0;
    if (!f)
        return;
    while (getline(&line, &lcap, f) > 0) {
        unsigned maj, mnr;
        if (sscanf(line, "%*s %*s %u:%u", &maj, &mnr) != 2 ||
            makedev(maj, mnr) != dev)
            continue;
        char *sep = strstr(line, " - ");
        char fstype[64], src[1024], opts[1024];
        if (sep && sscanf(sep + 3, "%63s %1023s %1023s", fstype, src, opts) == 3)
            snprintf(out, cap, "%s", opts);
        break;
    }
    free(line);
    fclose(f);
}

int wipe_check_fs(int fd, const char *path, struct err *err)
{
    struct statfs sfs;
    struct stat st;
    if (fstatfs(fd, &sfs) != 0 || fstat(fd, &st) != 0)
        return err_errno(err, ERR_IO, errno, "%s: statfs", path);
    const struct fs_kind *k = fs_kind_of((unsigned long)sfs.f_type);
    if (!k)
        return err_set(err, ERR_UNSUPPORTED, "%s: filesystem type 0x%lx is not known to "
                       "overwrite in place, so the overwrite could not be proven" ALT,
                       path, (unsigned long)sfs.f_type);
    if (k->why)
        return err_set(err, ERR_UNSUPPORTED, "%s: on %s: %s", path, k->name, k->why);
    char opts[1024];
    super_options(st.st_dev, opts, sizeof opts);
    if (strstr(opts, "data=journal"))
        return err_set(err, ERR_UNSUPPORTED, "%s: ext4 mounted data=journal keeps a copy of "
                       "written data in the journal; remount with data=ordered" ALT, path);
    return 0;
}

static const char *fs_name(int fd)
{
    struct statfs sfs;
    const struct fs_kind *k = fstatfs(fd, &sfs) == 0 ? fs_kind_of((unsigned long)sfs.f_type)
                                                      : NULL;
    return k ? k->name : "unknown";
}

/* ---- processes holding the file ---- */

static void read_comm(int pid, char *out, size_t cap)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/comm", pid);
    FILE *f = fopen(p, "re");
    out[0] = '\0';
    if (f) {
        if (fgets(out, (int)cap, f))
            out[strcspn(out, "\n")] = '\0';
        fclose(f);
    }
}

static void add_holder(struct wipe_holder *out, size_t max, size_t *n, int pid,
                       const char *how)
{
    if (*n < max) {
        out[*n].pid = pid;
        read_comm(pid, out[*n].comm, sizeof out[*n].comm);
        snprintf(out[*n].how, sizeof out[*n].how, "%s", how);
    }
    (*n)++;
}

/* Open descriptors of pid on (dev, ino). -1 when the fd folder is unreadable. */
static int scan_fds(int pid, dev_t dev, ino_t ino, struct wipe_holder *out, size_t max,
                    size_t *n)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/fd", pid);
    DIR *d = opendir(p);
    if (!d)
        return errno == ENOENT ? 0 : -1; /* ENOENT: it exited meanwhile */
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char fp[320], how[24];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        snprintf(fp, sizeof fp, "%s/%s", p, de->d_name);
        if (stat(fp, &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
            snprintf(how, sizeof how, "fd %.16s", de->d_name);
            add_holder(out, max, n, pid, how);
        }
    }
    closedir(d);
    return 0;
}

/* Mappings of pid of (dev, ino): a mapping outlives the descriptor it came from. */
static int scan_maps(int pid, dev_t dev, ino_t ino, struct wipe_holder *out, size_t max,
                     size_t *n)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/maps", pid);
    FILE *f = fopen(p, "re");
    if (!f)
        return errno == ENOENT ? 0 : -1;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        unsigned maj, mnr;
        unsigned long long i;
        if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &mnr, &i) == 3 && i == ino &&
            makedev(maj, mnr) == dev) {
            add_holder(out, max, n, pid, "mmap");
            break;
        }
    }
    free(line);
    fclose(f);
    return 0;
}

int wipe_find_holders(dev_t dev, ino_t ino, struct wipe_holder *out, size_t max, size_t *n,
                      size_t *unreadable, struct err *err)
{
    *n = 0;
    *unreadable = 0;
    DIR *d = opendir("/proc");
    if (!d)
        return err_errno(err, ERR_IO, errno, "cannot list /proc to find processes");
    int self = (int)getpid();
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        int pid = (int)strtol(de->d_name, NULL, 10);
        if (pid == self)
            continue;
        int a = scan_fds(pid, dev, ino, out, max, n);
        int b = scan_maps(pid, dev, ino, out, max, n);
        if (a < 0 || b < 0)
            (*unreadable)++;
    }
    closedir(d);
    return 0;
}

/* ---- extents ---- */

struct wipe_extents {
    size_t n;
    struct fiemap_extent e[];
};

#define BAD_EXTENT_FLAGS                                                            \
    (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_ENCODED |       \
     FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_DATA_TAIL | FIEMAP_EXTENT_NOT_ALIGNED | \
     FIEMAP_EXTENT_SHARED)

/* One FS_IOC_FIEMAP call with room for cap extents. */
static struct fiemap *fiemap_call(int fd, uint32_t cap)
{
    struct fiemap *fm = calloc(1, sizeof *fm + (size_t)cap * sizeof(struct fiemap_extent));
    if (!fm)
        return NULL;
    fm->fm_start = 0;
    fm->fm_length = FIEMAP_MAX_OFFSET;
    fm->fm_flags = FIEMAP_FLAG_SYNC;
    fm->fm_extent_count = cap;
    if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
        int e = errno;
        free(fm);
        errno = e;
        return NULL;
    }
    return fm;
}

int wipe_extents_get(int fd, const char *path, struct wipe_extents **out, struct err *err)
{
    *out = NULL;
    struct fiemap *fm = fiemap_call(fd, 0);
    uint32_t cap = fm ? fm->fm_mapped_extents + 16 : 0;
    free(fm);
    fm = cap ? fiemap_call(fd, cap) : NULL;
    if (!fm)
        return err_errno(err, errno == ENOMEM ? ERR_NOMEM : ERR_UNSUPPORTED, errno,
                         "%s: cannot read the block map (FIEMAP), so an in-place overwrite "
                         "could not be checked", path);
    if (fm->fm_mapped_extents >= cap) {
        free(fm);
        return err_set(err, ERR_RANGE, "%s: the block map changed while being read", path);
    }
    struct wipe_extents *x = malloc(sizeof *x + fm->fm_mapped_extents * sizeof x->e[0]);
    int rc = 0;
    if (!x)
        rc = err_set(err, ERR_NOMEM, "%s: out of memory", path);
    for (uint32_t i = 0; x && i < fm->fm_mapped_extents; i++) {
        x->e[i] = fm->fm_extents[i];
        if (rc == 0 && (x->e[i].fe_flags & BAD_EXTENT_FLAGS))
            rc = err_set(err, ERR_UNSUPPORTED, "%s: extent %u has flags 0x%x (shared, "
                         "inline, encoded or unknown location): an overwrite would not "
                         "provably reach the old blocks" ALT, path, i, x->e[i].fe_flags);
    }
    if (x)
        x->n = fm->fm_mapped_extents;
    free(fm);
    if (rc != 0) {
        free(x);
        return rc;
    }
    *out = x;
    return 0;
}

void wipe_extents_free(struct wipe_extents *x)
{
    free(x);
}

size_t wipe_extents_count(const struct wipe_extents *x)
{
    return x ? x->n : 0;
}

uint64_t wipe_extents_end(const struct wipe_extents *x)
{
    uint64_t end = 0;
    for (size_t i = 0; x && i < x->n; i++)
        if (x->e[i].fe_logical + x->e[i].fe_length > end)
            end = x->e[i].fe_logical + x->e[i].fe_length;
    return end;
}

/* The extent of after containing logical byte l, or NULL. */
static const struct fiemap_extent *extent_at(const struct wipe_extents *after, uint64_t l)
{
    for (size_t i = 0; i < after->n; i++)
        if (l >= after->e[i].fe_logical && l < after->e[i].fe_logical + after->e[i].fe_length)
            return &after->e[i];
    return NULL;
}

bool wipe_extents_kept(const struct wipe_extents *before, const struct wipe_extents *after)
{
    for (size_t i = 0; i < before->n; i++) {
        const struct fiemap_extent *b = &before->e[i];
        uint64_t l = b->fe_logical, end = b->fe_logical + b->fe_length;
        while (l < end) {
            const struct fiemap_extent *a = extent_at(after, l);
            if (!a || a->fe_physical - a->fe_logical != b->fe_physical - b->fe_logical)
                return false;
            l = a->fe_logical + a->fe_length;
        }
    }
    return true;
}

/* ---- one file ---- */

/* Everything known about a file between its checks and its removal. */
struct target {
    const char *path;
    int fd;
    struct stat st;
    struct wipe_extents *before;
    uint64_t total; /* bytes each pass writes */
    char sha256[AUDIT_HASH_HEX];
    char lasthash[AUDIT_HASH_HEX]; /* SHA-256 of what the last pass wrote */
    char verification[128];
    size_t holders_unchecked;
    int spare_pid;  /* dry run: the server --stop-server would stop (not a holder) */
    bool spared;    /* that server holds this file */
    int64_t intent_seq;
    int renames;
};

/* Drops the holders that are t->spare_pid (the server a dry run would stop). */
static size_t drop_spared(struct target *t, struct wipe_holder *h, size_t listed, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < listed; i++) {
        if (t->spare_pid > 0 && h[i].pid == t->spare_pid)
            t->spared = true;
        else
            h[k++] = h[i];
    }
    return k + (n - listed); /* the unlisted ones may be anyone */
}

static int check_holders(struct target *t, struct err *err)
{
    struct wipe_holder h[8];
    size_t n = 0;
    int rc = wipe_find_holders(t->st.st_dev, t->st.st_ino, h, 8, &n, &t->holders_unchecked,
                               err);
    if (rc == 0)
        n = drop_spared(t, h, n < 8 ? n : 8, n);
    if (rc != 0 || n == 0)
        return rc;
    char list[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && i < 8 && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%d (%s, %s)",
                                i ? ", " : "", h[i].pid, h[i].comm, h[i].how);
    return err_set(err, ERR_UNSUPPORTED, "%s: held open by process %s: it could still read "
                   "the data after removal; stop it (our own server: --stop-server, or "
                   "systemctl stop deepseek) and retry", t->path, list);
}

/* Opens and checks a file. ERR_IO: could not even look; others: refused. */
static int target_check(struct target *t, struct err *err)
{
    struct stat lst;
    if (lstat(t->path, &lst) != 0)
        return err_errno(err, ERR_IO, errno, "%s", t->path);
    if (S_ISLNK(lst.st_mode))
        return err_set(err, ERR_INVALID, "%s: a symbolic link; wipe the file it points to "
                       "by its own name", t->path);
    if (!S_ISREG(lst.st_mode))
        return err_set(err, ERR_INVALID, "%s: not a regular file (directories need "
                       "--recursive; devices are not wiped by this command)", t->path);
    t->fd = open(t->path, O_RDWR | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if (t->fd < 0)
        return err_errno(err, ERR_IO, errno, "%s: open for writing", t->path);
    if (fstat(t->fd, &t->st) != 0 || t->st.st_ino != lst.st_ino || t->st.st_dev != lst.st_dev)
        return err_set(err, ERR_INVALID, "%s: replaced while being opened", t->path);
    if (t->st.st_nlink > 1)
        return err_set(err, ERR_INVALID, "%s: has %ju hard links: the other names would "
                       "remain (pointing at zeros), so the file would not be gone; remove "
                       "the other links first (find -samefile) or wipe by the last name",
                       t->path, (uintmax_t)t->st.st_nlink);
    int rc = wipe_check_fs(t->fd, t->path, err);
    if (rc == 0)
        rc = check_holders(t, err);
    if (rc == 0)
        rc = wipe_extents_get(t->fd, t->path, &t->before, err);
    if (rc != 0)
        return rc;
    uint64_t bs = t->st.st_blksize > 0 ? (uint64_t)t->st.st_blksize : 4096;
    t->total = ((uint64_t)t->st.st_size + bs - 1) / bs * bs;
    if (wipe_extents_end(t->before) > t->total)
        t->total = wipe_extents_end(t->before); /* preallocated blocks past EOF */
    return 0;
}

static void target_close(struct target *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    wipe_extents_free(t->before);
    t->before = NULL;
}

static int hash_content(struct target *t, unsigned char *buf, struct err *err)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) ? 0
             : err_set(err, ERR_NOMEM, "sha256 unavailable");
    for (off_t off = 0; rc == 0;) {
        ssize_t n = pread(t->fd, buf, CHUNK, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = err_errno(err, ERR_IO, errno, "%s: read", t->path);
        if (n <= 0)
            break;
        EVP_DigestUpdate(md, buf, (size_t)n);
        off += n;
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (rc == 0 && EVP_DigestFinal_ex(md, d, &dl)) {
        for (unsigned int i = 0; i < dl; i++)
            snprintf(t->sha256 + 2 * i, 3, "%02x", d[i]);
    }
    EVP_MD_CTX_free(md);
    return rc;
}

/* ---- overwrite ---- */

static int pwrite_all(int fd, const unsigned char *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t w = pwrite(fd, buf, len, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -ENOSPC;
        buf += w;
        len -= (size_t)w;
        off += w;
    }
    return 0;
}

/* One pass: random bytes (fresh per chunk) or zeros, then fdatasync. The last
 * pass is hashed so the read-back can be compared. */
static int one_pass(struct target *t, const struct wipe_opts *o, int pass, int passes,
                    bool random, unsigned char *buf, struct err *err)
{
    EVP_MD_CTX *md = pass == passes ? EVP_MD_CTX_new() : NULL;
    if (md)
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    if (!random)
        memset(buf, 0, CHUNK);
    int rc = 0;
    uint64_t since = 0;
    for (uint64_t off = 0; off < t->total && rc == 0; off += CHUNK) {
        if (o->stop && *o->stop) {
            rc = err_set(err, ERR_IO, "%s: interrupted in pass %d of %d at byte %ju",
                         t->path, pass, passes, (uintmax_t)off);
            break;
        }
        size_t n = t->total - off < CHUNK ? (size_t)(t->total - off) : CHUNK;
        if (random && RAND_bytes(buf, (int)n) != 1)
            rc = err_set(err, ERR_INTERNAL, "%s: no random bytes (OpenSSL RAND)", t->path);
        int w = rc == 0 ? pwrite_all(t->fd, buf, n, (off_t)off) : 0;
        if (w != 0)
            rc = err_errno(err, ERR_IO, -w, "%s: write at byte %ju in pass %d", t->path,
                           (uintmax_t)off, pass);
        if (rc == 0 && md)
            EVP_DigestUpdate(md, buf, n);
        since += n;
        if (o->progress && (since >= PROGRESS_EVERY || off + n >= t->total)) {
            o->progress(o->progress_ctx, t->path, pass, passes, off + n, t->total);
            since = 0;
        }
    }
    if (rc == 0 && fdatasync(t->fd) != 0)
        rc = err_errno(err, ERR_IO, errno, "%s: fdatasync after pass %d", t->path, pass);
    if (md) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned int dl = 0;
        EVP_DigestFinal_ex(md, d, &dl);
        for (unsigned int i = 0; i < dl; i++)
            snprintf(t->lasthash + 2 * i, 3, "%02x", d[i]);
        EVP_MD_CTX_free(md);
    }
    return rc;
}

/* A descriptor that reads from the device, not the page cache: O_DIRECT on a
 * reopen of our own descriptor, else drop the cached pages first. */
static int readback_fd(struct target *t, const char **how)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", t->fd);
    int fd = open(p, O_RDONLY | O_DIRECT | O_CLOEXEC);
    *how = "o_direct";
    if (fd >= 0)
        return fd;
    *how = "fadvise-dontneed";
    posix_fadvise(t->fd, 0, 0, POSIX_FADV_DONTNEED);
    return dup(t->fd);
}

static int read_back(struct target *t, unsigned char *buf, struct err *err)
{
    const char *how;
    int fd = readback_fd(t, &how);
    if (fd < 0)
        return err_errno(err, ERR_IO, errno, "%s: reopen for read-back", t->path);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    int rc = 0;
    for (uint64_t off = 0; off < t->total && rc == 0;) {
        size_t want = t->total - off < CHUNK ? (size_t)(t->total - off) : CHUNK;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = err_errno(err, ERR_IO, n < 0 ? errno : EIO, "%s: read-back at byte %ju",
                           t->path, (uintmax_t)off);
        else {
            EVP_DigestUpdate(md, buf, (size_t)n);
            off += (uint64_t)n;
        }
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    char got[AUDIT_HASH_HEX] = "";
    EVP_DigestFinal_ex(md, d, &dl);
    for (unsigned int i = 0; i < dl; i++)
        snprintf(got + 2 * i, 3, "%02x", d[i]);
    EVP_MD_CTX_free(md);
    close(fd);
    if (rc == 0 && strcmp(got, t->lasthash) != 0)
        rc = err_set(err, ERR_FORMAT, "%s: read-back of the last pass differs from what "
                     "was written (%s): the device did not store the overwrite", t->path, how);
    snprintf(t->verification, sizeof t->verification, "readback-%s-sha256", how);
    return rc;
}

/* Overwrites, reads back and checks the extents. ERR_FORMAT: verification failed. */
static int overwrite(struct target *t, const struct wipe_opts *o, struct err *err)
{
    unsigned char *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, CHUNK) != 0)
        return err_set(err, ERR_NOMEM, "%s: out of memory", t->path);
    int passes = o->passes + (o->zero ? 1 : 0);
    int rc = 0;
    for (int p = 1; p <= passes && rc == 0; p++)
        rc = one_pass(t, o, p, passes, p <= o->passes, buf, err);
    if (rc == 0 && passes > 0)
        rc = read_back(t, buf, err);
    free(buf);
    struct wipe_extents *after = NULL;
    if (rc == 0)
        rc = wipe_extents_get(t->fd, t->path, &after, err);
    if (rc == ERR_UNSUPPORTED)
        rc = ERR_FORMAT;
    if (rc == 0 && !wipe_extents_kept(t->before, after))
        rc = err_set(err, ERR_FORMAT, "%s: the file's blocks moved during the overwrite: "
                     "the old blocks may still hold the data", t->path);
    if (rc == 0) {
        size_t n = strlen(t->verification);
        snprintf(t->verification + n, sizeof t->verification - n, "%sextents-unchanged",
                 n ? "," : "");
    }
    wipe_extents_free(after);
    return rc;
}

/* ---- removing the name ---- */

static void random_name(char *out, size_t len)
{
    static const char set[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char r[NAME_MAX];
    if (RAND_bytes(r, (int)len) != 1)
        memset(r, 0, len);
    for (size_t i = 0; i < len; i++)
        out[i] = set[r[i] % (sizeof set - 1)];
    out[len] = '\0';
}

static int split_path(const char *path, char *dir, size_t cap, const char **base)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!slash)
        return snprintf(dir, cap, ".") < 0 ? -1 : 0;
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= cap)
        return -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return 0;
}

/* Truncates, renames through shorter random names (directory fsync after each, as
 * shred -u does) and unlinks. The name may survive in the filesystem journal. */
static int remove_name(struct target *t, struct err *err)
{
    char dir[PATH_MAX], cur[NAME_MAX + 1], next[NAME_MAX + 1];
    const char *base;
    if (ftruncate(t->fd, 0) != 0 || fsync(t->fd) != 0)
        return err_errno(err, ERR_IO, errno, "%s: truncate", t->path);
    if (split_path(t->path, dir, sizeof dir, &base) != 0 || strlen(base) > NAME_MAX)
        return err_set(err, ERR_RANGE, "%s: path too long", t->path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return err_errno(err, ERR_IO, errno, "%s: open directory", dir);
    snprintf(cur, sizeof cur, "%s", base);
    int rc = 0;
    for (size_t len = strlen(base); len >= 1 && rc == 0; len--) {
        int r = -1;
        for (int tries = 0; tries < 20 && r != 0 && rc == 0; tries++) {
            random_name(next, len);
            r = renameat2(dfd, cur, dfd, next, RENAME_NOREPLACE);
            if (r != 0 && errno != EEXIST)
                rc = err_errno(err, ERR_IO, errno, "%s: rename to a random name", t->path);
        }
        if (r != 0)
            continue; /* error, or every name tried of this length taken: go shorter */
        memcpy(cur, next, len + 1);
        t->renames++;
        if (fsync(dfd) != 0)
            rc = err_errno(err, ERR_IO, errno, "%s: fsync directory", dir);
    }
    if (rc == 0 && unlinkat(dfd, cur, 0) != 0)
        rc = err_errno(err, ERR_IO, errno, "%s: unlink (now named %s)", t->path, cur);
    if (rc == 0 && fsync(dfd) != 0)
        rc = err_errno(err, ERR_IO, errno, "%s: fsync directory", dir);
    close(dfd);
    return rc;
}

/* ---- audit records ---- */

static json_t *target_details(const struct target *t)
{
    char dev[32];
    json_t *d = json_object();
    if (t->fd < 0)
        return d;
    snprintf(dev, sizeof dev, "%u:%u", major(t->st.st_dev), minor(t->st.st_dev));
    json_object_set_new(d, "dev", json_string(dev));
    json_object_set_new(d, "ino", json_integer((json_int_t)t->st.st_ino));
    json_object_set_new(d, "fs", json_string(fs_name(t->fd)));
    json_object_set_new(d, "bytes_per_pass", json_integer((json_int_t)t->total));
    json_object_set_new(d, "extents", json_integer((json_int_t)wipe_extents_count(t->before)));
    if (t->holders_unchecked)
        json_object_set_new(d, "processes_not_inspected",
                            json_integer((json_int_t)t->holders_unchecked));
    if (t->renames)
        json_object_set_new(d, "name_renames", json_integer(t->renames));
    if (t->spared)
        json_object_set_new(d, "held_by_server_to_stop", json_integer(t->spare_pid));
    return d;
}

/* Writes one record for t. Returns audit_append's result. */
static int record(struct audit *audit, struct target *t, const struct wipe_opts *o,
                  const char *phase, const char *result, const char *error, struct err *err)
{
    json_t *details = target_details(t);
    struct audit_record r = {
        .action = "wipe",
        .phase = phase,
        .target = t->path,
        .size = t->fd >= 0 ? (int64_t)t->st.st_size : -1,
        .sha256 = t->sha256[0] ? t->sha256 : NULL,
        .method = "overwrite",
        .passes = o->passes + (o->zero ? 1 : 0),
        .verification = t->verification[0] ? t->verification : NULL,
        .result = result,
        .error = error,
        .intent_seq = strcmp(phase, "intent") ? t->intent_seq : 0,
        .details = details,
    };
    int64_t seq = 0;
    int rc = audit_append(audit, &r, &seq, err);
    if (rc == 0 && !strcmp(phase, "intent"))
        t->intent_seq = seq;
    json_decref(details);
    return rc;
}

/* Records a failure after destruction began; the record's own failure is added to
 * the message because it is worth knowing, but cannot undo anything. */
static void record_outcome(struct audit *audit, struct target *t, const struct wipe_opts *o,
                           const char *result, struct err *err)
{
    struct err aerr;
    char why[ERR_MSG_MAX];
    snprintf(why, sizeof why, "%s", err->msg);
    if (record(audit, t, o, "result", result, why, &aerr) != 0) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, " (and the audit record failed: %s)",
                 aerr.msg);
    }
}

static int wipe_checked(struct audit *audit, struct target *t, const struct wipe_opts *o,
                        enum wipe_status *st, struct err *err)
{
    unsigned char *buf = malloc(CHUNK);
    int rc = buf ? hash_content(t, buf, err) : err_set(err, ERR_NOMEM, "out of memory");
    free(buf);
    if (rc != 0) {
        *st = WIPE_FAILED;
        return rc;
    }
    rc = record(audit, t, o, "intent", "pending", NULL, err);
    if (rc != 0) {
        *st = WIPE_AUDIT_FAILED;
        return rc;
    }
    rc = overwrite(t, o, err);
    if (rc == 0)
        rc = remove_name(t, err);
    if (rc != 0) {
        bool stopped = o->stop && *o->stop;
        *st = stopped ? WIPE_INTERRUPTED : rc == ERR_FORMAT ? WIPE_VERIFY_FAILED : WIPE_FAILED;
        record_outcome(audit, t, o, wipe_status_name(*st), err);
        return rc;
    }
    rc = record(audit, t, o, "result", "ok", NULL, err);
    *st = rc == 0 ? WIPE_OK : WIPE_AUDIT_FAILED;
    return rc;
}

static int wipe_file(struct audit *audit, const char *path, const struct wipe_opts *o,
                     enum wipe_status *st, struct err *err)
{
    struct target t = {.path = path, .fd = -1, .spare_pid = o->dry_run ? o->spare_pid : 0};
    int rc = target_check(&t, err);
    if (rc != 0) {
        *st = rc == ERR_IO ? WIPE_FAILED : WIPE_REFUSED;
        record_outcome(audit, &t, o, wipe_status_name(*st), err);
    } else if (o->dry_run) {
        rc = record(audit, &t, o, "plan", "planned", NULL, err);
        *st = rc == 0 ? WIPE_PLANNED : WIPE_AUDIT_FAILED;
    } else {
        rc = wipe_checked(audit, &t, o, st, err);
    }
    target_close(&t);
    return rc;
}

const char *wipe_status_name(enum wipe_status s)
{
    switch (s) {
    case WIPE_OK: return "ok";
    case WIPE_PLANNED: return "planned";
    case WIPE_REFUSED: return "refused";
    case WIPE_FAILED: return "error";
    case WIPE_VERIFY_FAILED: return "verify_failed";
    case WIPE_INTERRUPTED: return "interrupted";
    case WIPE_AUDIT_FAILED: return "audit_failed";
    }
    return "unknown";
}

/* ---- directory trees ---- */

struct tree {
    char **path;
    mode_t *mode;
    size_t n, cap;
};

static int tree_add(struct tree *tr, const char *path, mode_t mode, struct err *err)
{
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? 2 * tr->cap : 64;
        char **p = realloc(tr->path, cap * sizeof *p);
        if (p)
            tr->path = p;
        mode_t *m = p ? realloc(tr->mode, cap * sizeof *m) : NULL;
        if (!m)
            return err_set(err, ERR_NOMEM, "out of memory listing the tree");
        tr->mode = m;
        tr->cap = cap;
    }
    tr->path[tr->n] = strdup(path);
    if (!tr->path[tr->n])
        return err_set(err, ERR_NOMEM, "out of memory listing the tree");
    tr->mode[tr->n++] = mode;
    return 0;
}

static void tree_free(struct tree *tr)
{
    for (size_t i = 0; i < tr->n; i++)
        free(tr->path[i]);
    free(tr->path);
    free(tr->mode);
}

/* Lists dir depth first, children before their directory, never crossing into
 * another filesystem (its blocks were not checked). */
static int tree_collect(const char *dir, dev_t dev, int depth, struct tree *tr,
                        struct err *err)
{
    if (depth > 128)
        return err_set(err, ERR_RANGE, "%s: nested deeper than 128 directories", dir);
    DIR *d = opendir(dir);
    if (!d)
        return err_errno(err, ERR_IO, errno, "%s: list directory", dir);
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[PATH_MAX];
        struct stat st;
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p)
            rc = err_set(err, ERR_RANGE, "%s/%s: path too long", dir, de->d_name);
        else if (lstat(p, &st) != 0)
            rc = err_errno(err, ERR_IO, errno, "%s", p);
        else if (st.st_dev != dev)
            rc = err_set(err, ERR_INVALID, "%s: another filesystem is mounted here; wipe it "
                         "separately", p);
        else if (S_ISDIR(st.st_mode))
            rc = tree_collect(p, dev, depth + 1, tr, err);
        else if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
            rc = err_set(err, ERR_INVALID, "%s: not a regular file, directory or link", p);
        else
            rc = tree_add(tr, p, st.st_mode, err);
    }
    closedir(d);
    return rc == 0 ? tree_add(tr, dir, S_IFDIR, err) : rc;
}

/* Every file of the tree passes every check, or nothing is touched. */
static int tree_check(const struct tree *tr, const struct wipe_opts *o, struct err *err)
{
    for (size_t i = 0; i < tr->n; i++) {
        if (!S_ISREG(tr->mode[i]))
            continue;
        struct target t = {.path = tr->path[i], .fd = -1,
                           .spare_pid = o->dry_run ? o->spare_pid : 0};
        int rc = target_check(&t, err);
        target_close(&t);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int tree_remove(const struct tree *tr, const struct wipe_opts *o,
                       struct audit *audit, enum wipe_status *st, struct err *err)
{
    for (size_t i = 0; i < tr->n; i++) {
        int rc = 0;
        if (S_ISREG(tr->mode[i]))
            rc = wipe_file(audit, tr->path[i], o, st, err);
        else if (o->dry_run)
            continue;
        else if (S_ISLNK(tr->mode[i]) && unlink(tr->path[i]) != 0)
            rc = err_errno(err, ERR_IO, errno, "%s: unlink", tr->path[i]);
        else if (S_ISDIR(tr->mode[i]) && rmdir(tr->path[i]) != 0)
            rc = err_errno(err, ERR_IO, errno, "%s: rmdir", tr->path[i]);
        if (rc != 0) {
            if (*st == WIPE_OK || *st == WIPE_PLANNED)
                *st = WIPE_FAILED;
            return rc;
        }
    }
    return 0;
}

static int wipe_tree(struct audit *audit, const char *root, const struct wipe_opts *o,
                     enum wipe_status *st, struct err *err)
{
    struct tree tr = {0};
    struct stat rst;
    struct target rt = {.path = root, .fd = -1};
    int rc = lstat(root, &rst) != 0 ? err_errno(err, ERR_IO, errno, "%s", root)
                                    : tree_collect(root, rst.st_dev, 0, &tr, err);
    if (rc == 0)
        rc = tree_check(&tr, o, err);
    if (rc != 0) {
        *st = rc == ERR_IO || rc == ERR_NOMEM ? WIPE_FAILED : WIPE_REFUSED;
        record_outcome(audit, &rt, o, wipe_status_name(*st), err);
        tree_free(&tr);
        return rc;
    }
    *st = o->dry_run ? WIPE_PLANNED : WIPE_OK;
    rc = tree_remove(&tr, o, audit, st, err);
    tree_free(&tr);
    return rc;
}

/* Adds the holders of one file to out[*n...]. */
static int file_holders(const char *path, struct wipe_holder *out, size_t max, size_t *n,
                        struct err *err)
{
    struct stat st;
    size_t k = 0, unreadable = 0;
    if (stat(path, &st) != 0)
        return err_errno(err, ERR_IO, errno, "%s", path);
    size_t room = *n < max ? max - *n : 0;
    int rc = wipe_find_holders(st.st_dev, st.st_ino, room ? out + *n : NULL, room, &k,
                               &unreadable, err);
    *n += k;
    return rc;
}

int wipe_path_holders(const char *path, bool recursive, struct wipe_holder *out, size_t max,
                      size_t *n, struct err *err)
{
    struct stat st;
    *n = 0;
    if (lstat(path, &st) != 0)
        return err_errno(err, ERR_IO, errno, "%s", path);
    if (S_ISREG(st.st_mode))
        return file_holders(path, out, max, n, err);
    if (!S_ISDIR(st.st_mode) || !recursive)
        return err_set(err, ERR_INVALID, "%s: not a regular file", path);
    struct tree tr = {0};
    int rc = tree_collect(path, st.st_dev, 0, &tr, err);
    for (size_t i = 0; rc == 0 && i < tr.n; i++)
        if (S_ISREG(tr.mode[i]))
            rc = file_holders(tr.path[i], out, max, n, err);
    tree_free(&tr);
    return rc;
}

int wipe_path(struct audit *audit, const char *path, const struct wipe_opts *opts,
              enum wipe_status *status, struct err *err)
{
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (!opts->recursive) {
            *status = WIPE_REFUSED;
            return err_set(err, ERR_INVALID, "%s: a directory (use --recursive)", path);
        }
        return wipe_tree(audit, path, opts, status, err);
    }
    return wipe_file(audit, path, opts, status, err);
}
