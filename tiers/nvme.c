/* nvme.c — see nvme.h. */
#include "tiers/nvme.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#define LAYOUT_CHUNK (8u << 20) /* bytes of zeros per layout write (and per claim) */

/* A byte range of slot file `file` that is not yet a written extent (unwritten or a hole). */
typedef struct nvme_range {
    uint64_t off, len;
    unsigned file;
} nvme_range;

struct nvme_tier {
    uint64_t slot_bytes;
    uint32_t n_slots;
    uint32_t n_used;
    uint32_t per_file; /* slots per file (the last file may hold fewer) */
    unsigned n_files;
    int *fds;          /* [n_files] */
    int direct;
    int lock_fd;
    uint64_t *used;    /* [n_words] bitmap, bit set = used; bits past n_slots stay 0 */
    uint32_t n_words;
    uint32_t hint;     /* no word below hint has a free bit */

    /* Layout (see nvme.h). mu guards the bitmap's writes (the layout thread reads it), the
     * claim and the todo list; cv signals a released claim and the end of the layout. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sync_ok;               /* mu and cv initialised */
    pthread_t layout_th;
    int layout_running;        /* the thread is started and not finished */
    int layout_joinable;       /* started: join at close */
    int stop;
    int layout_err;            /* first -errno of a layout write; the layout stopped there */
    nvme_range *todo;          /* [n_todo], file then offset order; taken from the end */
    unsigned n_todo, cap_todo;
    uint64_t layout_left;      /* bytes in todo */
    uint32_t claim_lo, claim_hi; /* slots [lo, hi) under a layout write: alloc waits */
    void *zero;                /* LAYOUT_CHUNK zero bytes, IO_ALIGN-aligned */
};

static atomic_int said_no_fallocate, said_no_fiemap, said_layout_err;

static uint64_t file_slots(const nvme_tier *t, unsigned f)
{
    uint64_t first = (uint64_t)f * t->per_file;
    uint64_t left = t->n_slots - first;
    return left < t->per_file ? left : t->per_file;
}

/* Delete slots.NNNNNN files with NNNNNN >= n_files: they lie beyond the capacity. */
static int remove_surplus(const char *dir, unsigned n_files)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *e;
    int err = 0;
    while ((e = readdir(d))) {
        unsigned idx;
        char tail;
        if (sscanf(e->d_name, "slots.%6u%c", &idx, &tail) != 1 || strlen(e->d_name) != 12)
            continue;
        if (idx >= n_files && unlinkat(dirfd(d), e->d_name, 0) != 0 && !err)
            err = -errno;
    }
    closedir(d);
    return err;
}

/* Size file f to exactly its slots' bytes, allocating the blocks now. */
static int file_prepare(int fd, uint64_t bytes)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if ((uint64_t)st.st_size > bytes && ftruncate(fd, (off_t)bytes) != 0)
        return -errno;
    if (fallocate(fd, 0, 0, (off_t)bytes) == 0)
        return 0;
    int e = errno;
    if (e != EOPNOTSUPP && e != ENOSYS)
        return -e;
    /* No preallocation on this file system: the size is still capped (writes never extend
     * the file), but blocks are allocated on first write and may then fail with ENOSPC. */
    if (!atomic_exchange(&said_no_fallocate, 1))
        io_log(IO_LOG_WARN, "nvme: fallocate unsupported: slot files are sparse");
    return ftruncate(fd, (off_t)bytes) == 0 ? 0 : -errno;
}

/* ---------------------------------------------------------------- layout */

static int todo_add(nvme_tier *t, unsigned f, uint64_t lo, uint64_t hi)
{
    lo = (lo + IO_ALIGN - 1) & ~(uint64_t)(IO_ALIGN - 1); /* inward: O_DIRECT alignment, and */
    hi &= ~(uint64_t)(IO_ALIGN - 1);                      /* never a byte outside the range */
    if (hi <= lo)
        return 0;
    if (t->n_todo && t->todo[t->n_todo - 1].file == f &&
        t->todo[t->n_todo - 1].off + t->todo[t->n_todo - 1].len == lo) {
        t->todo[t->n_todo - 1].len += hi - lo;
    } else {
        if (t->n_todo == t->cap_todo) {
            unsigned cap = t->cap_todo ? 2 * t->cap_todo : 16;
            nvme_range *p = util_realloc(t->todo, cap * sizeof *p);
            if (!p)
                return -ENOMEM;
            t->todo = p;
            t->cap_todo = cap;
        }
        t->todo[t->n_todo++] = (nvme_range){.off = lo, .len = hi - lo, .file = f};
    }
    t->layout_left += hi - lo;
    return 0;
}

/* Add the parts of file f's [0, bytes) that are not written extents (FIEMAP: unwritten
 * extents and holes) to the todo list. 1 when the file system cannot tell (no FIEMAP). */
static int layout_scan(nvme_tier *t, unsigned f, uint64_t bytes)
{
    struct {
        struct fiemap fm;
        struct fiemap_extent ext[64];
    } m;
    uint64_t start = 0, cover = 0; /* [0, cover) classified */
    while (start < bytes) {
        memset(&m, 0, sizeof m);
        m.fm.fm_start = start;
        m.fm.fm_length = bytes - start;
        m.fm.fm_extent_count = 64;
        if (ioctl(t->fds[f], FS_IOC_FIEMAP, &m.fm) != 0)
            return errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL ? 1 : -errno;
        if (m.fm.fm_mapped_extents == 0)
            break;
        int last = 0;
        for (unsigned i = 0; i < m.fm.fm_mapped_extents; i++) {
            const struct fiemap_extent *x = &m.fm.fm_extents[i];
            uint64_t lo = x->fe_logical, hi = x->fe_logical + x->fe_length;
            start = hi;
            last |= (x->fe_flags & FIEMAP_EXTENT_LAST) != 0;
            if (x->fe_flags & FIEMAP_EXTENT_UNWRITTEN)
                continue; /* reads as zeros: still to lay out */
            if (lo > cover) {
                int e = todo_add(t, f, cover, lo < bytes ? lo : bytes);
                if (e)
                    return e;
            }
            if (hi > cover)
                cover = hi;
        }
        if (last)
            break;
    }
    return cover < bytes ? todo_add(t, f, cover, bytes) : 0;
}

/* Zero the free slots' parts of [off, off+len) of file f; claims are set by the caller.
 * free_bits: bit i = slot claim_lo + i was free when claimed. 0 or -errno. */
static int layout_write(nvme_tier *t, unsigned f, uint64_t off, uint64_t len,
                        const uint64_t *free_bits)
{
    uint64_t end = off + len, base = (uint64_t)f * t->per_file;
    while (off < end) {
        uint32_t s = (uint32_t)(base + off / t->slot_bytes);
        uint64_t slot_end = (s - base + 1) * t->slot_bytes, run = off;
        /* extend over consecutive free slots */
        while (run < end && ((free_bits[(s - t->claim_lo) / 64] >> ((s - t->claim_lo) % 64)) & 1)) {
            run = slot_end < end ? slot_end : end;
            s++;
            slot_end += t->slot_bytes;
        }
        if (run == off) { /* a used slot: skip it */
            off = slot_end < end ? slot_end : end;
            continue;
        }
        for (uint64_t p = off; p < run;) {
            ssize_t w = pwrite(t->fds[f], t->zero, run - p, (off_t)p);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return w < 0 ? -errno : -EIO;
            p += (uint64_t)w;
        }
        off = run;
    }
    return 0;
}

static void *layout_main(void *arg)
{
    nvme_tier *t = arg;
    uint64_t free_bits[LAYOUT_CHUNK / IO_ALIGN / 64 + 2];
    pthread_mutex_lock(&t->mu);
    while (!t->stop && t->n_todo) {
        /* from the end: the allocator takes the lowest free slots, so the two meet late */
        nvme_range *r = &t->todo[t->n_todo - 1];
        unsigned f = r->file;
        uint64_t len = r->len < LAYOUT_CHUNK ? r->len : LAYOUT_CHUNK;
        uint64_t off = r->off + r->len - len, base = (uint64_t)f * t->per_file;
        t->claim_lo = (uint32_t)(base + off / t->slot_bytes);
        t->claim_hi = (uint32_t)(base + (off + len - 1) / t->slot_bytes + 1);
        memset(free_bits, 0, sizeof free_bits);
        for (uint32_t s = t->claim_lo; s < t->claim_hi; s++)
            if (!((t->used[s / 64] >> (s % 64)) & 1))
                free_bits[(s - t->claim_lo) / 64] |= 1ull << ((s - t->claim_lo) % 64);
        pthread_mutex_unlock(&t->mu);

        int e = layout_write(t, f, off, len, free_bits);

        pthread_mutex_lock(&t->mu);
        t->claim_lo = t->claim_hi = 0;
        pthread_cond_broadcast(&t->cv);
        if (e) {
            t->layout_err = e;
            if (!atomic_exchange(&said_layout_err, 1))
                io_log(IO_LOG_WARN, "nvme: laying out the slot files stopped: %s (the rest "
                       "stays preallocated, unwritten)", strerror(-e));
            break;
        }
        r->len -= len;
        if (r->len == 0)
            t->n_todo--;
        t->layout_left -= len;
    }
    t->layout_running = 0;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* Find what is left to lay out and start the thread; nothing to do leaves it unstarted. */
static int layout_start(nvme_tier *t)
{
    for (unsigned f = 0; f < t->n_files; f++) {
        int e = layout_scan(t, f, file_slots(t, f) * t->slot_bytes);
        if (e == 1) {
            if (!atomic_exchange(&said_no_fiemap, 1))
                io_log(IO_LOG_INFO, "nvme: the file system has no FIEMAP: slot files are not "
                       "laid out (first writes fill preallocated extents)");
            t->n_todo = 0;
            t->layout_left = 0;
            return 0;
        }
        if (e)
            return e;
    }
    if (!t->n_todo)
        return 0;
    t->zero = io_buf_alloc(LAYOUT_CHUNK);
    if (!t->zero)
        return -ENOMEM;
    memset(t->zero, 0, LAYOUT_CHUNK);
    t->layout_running = 1;
    if (pthread_create(&t->layout_th, NULL, layout_main, t) != 0) {
        t->layout_running = 0;
        return -EAGAIN;
    }
    t->layout_joinable = 1;
    return 0;
}

uint64_t nvme_layout_left(nvme_tier *t)
{
    pthread_mutex_lock(&t->mu);
    uint64_t n = t->layout_left;
    pthread_mutex_unlock(&t->mu);
    return n;
}

int nvme_layout_wait(nvme_tier *t)
{
    pthread_mutex_lock(&t->mu);
    while (t->layout_running)
        pthread_cond_wait(&t->cv, &t->mu);
    int e = t->layout_err;
    pthread_mutex_unlock(&t->mu);
    return e;
}

/* ---------------------------------------------------------------- open / close */

int nvme_open(const char *dir, uint64_t capacity, uint64_t slot_bytes, const nvme_opts *opts,
              nvme_tier **out)
{
    uint64_t file_bytes = opts && opts->file_bytes ? opts->file_bytes : (1ull << 30);
    unsigned flags = opts ? opts->flags : 0;
    if (!dir || !out || slot_bytes < IO_ALIGN || slot_bytes > (1ull << 30) ||
        slot_bytes % IO_ALIGN || capacity < slot_bytes || capacity / slot_bytes >= UINT32_MAX ||
        (flags & ~(NVME_NO_DIRECT | NVME_NO_LAYOUT)))
        return -EINVAL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -errno;

    int err = -ENOMEM;
    char path[PATH_MAX];
    nvme_tier *t = util_calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->lock_fd = -1;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        util_free(t);
        return -ENOMEM;
    }
    if (pthread_cond_init(&t->cv, NULL) != 0) {
        pthread_mutex_destroy(&t->mu);
        util_free(t);
        return -ENOMEM;
    }
    t->sync_ok = 1;
    t->slot_bytes = slot_bytes;
    t->n_slots = (uint32_t)(capacity / slot_bytes);
    uint64_t pf = file_bytes / slot_bytes;
    t->per_file = pf == 0 ? 1 : pf > t->n_slots ? t->n_slots : (uint32_t)pf;
    t->n_files = (unsigned)((t->n_slots + (uint64_t)t->per_file - 1) / t->per_file);
    t->n_words = (t->n_slots + 63) / 64;
    t->used = util_calloc(t->n_words, sizeof *t->used);
    t->fds = util_malloc(t->n_files * sizeof *t->fds);
    if (!t->used || !t->fds)
        goto fail;
    for (unsigned f = 0; f < t->n_files; f++)
        t->fds[f] = -1;

    if (snprintf(path, sizeof path, "%s/LOCK", dir) >= (int)sizeof path) {
        err = -ENAMETOOLONG;
        goto fail;
    }
    t->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (t->lock_fd < 0) {
        err = -errno;
        goto fail;
    }
    if (flock(t->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno == EWOULDBLOCK ? -EBUSY : -errno;
        goto fail;
    }
    err = remove_surplus(dir, t->n_files);
    if (err)
        goto fail;

    t->direct = !(flags & NVME_NO_DIRECT);
    for (unsigned f = 0; f < t->n_files; f++) {
        int direct = 0;
        snprintf(path, sizeof path, "%s/slots.%06u", dir, f);
        int fd = io_file_open(path, O_RDWR | O_CREAT, 0644, !(flags & NVME_NO_DIRECT), &direct);
        if (fd < 0) {
            err = fd;
            goto fail;
        }
        t->fds[f] = fd;
        if (!direct)
            t->direct = 0;
        err = file_prepare(fd, file_slots(t, f) * slot_bytes);
        if (err)
            goto fail;
    }
    if (!(flags & NVME_NO_LAYOUT) && (err = layout_start(t)))
        goto fail;
    *out = t;
    return 0;
fail:
    nvme_close(t);
    return err;
}

void nvme_close(nvme_tier *t)
{
    if (!t)
        return;
    if (t->layout_joinable) {
        pthread_mutex_lock(&t->mu);
        t->stop = 1; /* the write in flight finishes; the rest stays for the next open */
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->layout_th, NULL);
    }
    if (t->sync_ok) {
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
    }
    io_buf_free(t->zero);
    util_free(t->todo);
    if (t->fds)
        for (unsigned f = 0; f < t->n_files; f++)
            if (t->fds[f] >= 0)
                close(t->fds[f]);
    if (t->lock_fd >= 0)
        close(t->lock_fd); /* drops the flock */
    util_free(t->fds);
    util_free(t->used);
    util_free(t);
}

int nvme_alloc(nvme_tier *t, uint32_t *slot)
{
    pthread_mutex_lock(&t->mu);
    for (uint32_t w = t->hint; w < t->n_words; w++) {
        uint64_t freebits = ~t->used[w];
        if (w == t->n_words - 1 && t->n_slots % 64)
            freebits &= (1ull << (t->n_slots % 64)) - 1; /* bits past n_slots do not exist */
        if (!freebits)
            continue;
        uint32_t b = (uint32_t)__builtin_ctzll(freebits), s = w * 64 + b;
        if (s >= t->claim_lo && s < t->claim_hi) {
            /* Being laid out (zeros in flight): wait for that one write, then look at this
             * word again (callers serialise alloc/free/mark_used: nothing else moved). */
            pthread_cond_wait(&t->cv, &t->mu);
            w--;
            continue;
        }
        t->used[w] |= 1ull << b;
        t->hint = w;
        t->n_used++;
        *slot = s;
        pthread_mutex_unlock(&t->mu);
        return 0;
    }
    t->hint = t->n_words;
    pthread_mutex_unlock(&t->mu);
    return -ENOSPC;
}

int nvme_free(nvme_tier *t, uint32_t slot)
{
    if (slot >= t->n_slots)
        return -ERANGE;
    uint64_t bit = 1ull << (slot % 64);
    pthread_mutex_lock(&t->mu);
    int e = 0;
    if (!(t->used[slot / 64] & bit)) {
        e = -EINVAL;
    } else {
        t->used[slot / 64] &= ~bit;
        t->n_used--;
        if (slot / 64 < t->hint)
            t->hint = slot / 64;
    }
    pthread_mutex_unlock(&t->mu);
    return e;
}

int nvme_mark_used(nvme_tier *t, uint32_t slot)
{
    if (slot >= t->n_slots)
        return -ERANGE;
    uint64_t bit = 1ull << (slot % 64);
    pthread_mutex_lock(&t->mu);
    int e = 0;
    if (t->used[slot / 64] & bit) {
        e = -EEXIST;
    } else {
        t->used[slot / 64] |= bit;
        t->n_used++;
    }
    pthread_mutex_unlock(&t->mu);
    return e;
}

int nvme_is_used(const nvme_tier *t, uint32_t slot)
{
    if (slot >= t->n_slots)
        return -ERANGE;
    return (int)((t->used[slot / 64] >> (slot % 64)) & 1);
}

int nvme_slot_loc(const nvme_tier *t, uint32_t slot, int *fd, uint64_t *off)
{
    if (slot >= t->n_slots)
        return -ERANGE;
    *fd = t->fds[slot / t->per_file];
    *off = (uint64_t)(slot % t->per_file) * t->slot_bytes;
    return 0;
}

int nvme_req(const nvme_tier *t, uint32_t slot, int op, void *buf, uint32_t len,
             uint64_t user_data, io_req *r)
{
    if (slot >= t->n_slots)
        return -ERANGE;
    if (!buf || !r || len == 0 || len > t->slot_bytes || (op != IO_OP_READ && op != IO_OP_WRITE))
        return -EINVAL;
    if (t->direct && (len % IO_ALIGN || (uintptr_t)buf % IO_ALIGN))
        return -EINVAL;
    memset(r, 0, sizeof *r);
    nvme_slot_loc(t, slot, &r->fd, &r->off);
    r->buf = buf;
    r->len = len;
    r->op = op;
    r->user_data = user_data;
    return 0;
}

int nvme_sync(nvme_tier *t)
{
    for (unsigned f = 0; f < t->n_files; f++)
        if (fdatasync(t->fds[f]) != 0)
            return -errno;
    return 0;
}

uint64_t nvme_slot_bytes(const nvme_tier *t) { return t->slot_bytes; }
uint32_t nvme_slots(const nvme_tier *t) { return t->n_slots; }
uint32_t nvme_free_slots(const nvme_tier *t) { return t->n_slots - t->n_used; }
uint64_t nvme_capacity(const nvme_tier *t) { return (uint64_t)t->n_slots * t->slot_bytes; }
int nvme_direct(const nvme_tier *t) { return t->direct; }

const int *nvme_fds(const nvme_tier *t, unsigned *n)
{
    *n = t->n_files;
    return t->fds;
}
