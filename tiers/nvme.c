/* nvme.c — see nvme.h. */
#include "tiers/nvme.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

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
};

static atomic_int said_no_fallocate;

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

int nvme_open(const char *dir, uint64_t capacity, uint64_t slot_bytes, const nvme_opts *opts,
              nvme_tier **out)
{
    uint64_t file_bytes = opts && opts->file_bytes ? opts->file_bytes : (1ull << 30);
    unsigned flags = opts ? opts->flags : 0;
    if (!dir || !out || slot_bytes < IO_ALIGN || slot_bytes > (1ull << 30) ||
        slot_bytes % IO_ALIGN || capacity < slot_bytes || capacity / slot_bytes >= UINT32_MAX ||
        (flags & ~NVME_NO_DIRECT))
        return -EINVAL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -errno;

    int err = -ENOMEM;
    char path[PATH_MAX];
    nvme_tier *t = util_calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->lock_fd = -1;
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
    for (uint32_t w = t->hint; w < t->n_words; w++) {
        uint64_t freebits = ~t->used[w];
        if (w == t->n_words - 1 && t->n_slots % 64)
            freebits &= (1ull << (t->n_slots % 64)) - 1; /* bits past n_slots do not exist */
        if (!freebits)
            continue;
        uint32_t b = (uint32_t)__builtin_ctzll(freebits);
        t->used[w] |= 1ull << b;
        t->hint = w;
        t->n_used++;
        *slot = w * 64 + b;
        return 0;
    }
    t->hint = t->n_words;
    return -ENOSPC;
}

int nvme_free(nvme_tier *t, uint32_t slot)
{
    if (slot >= t->n_slots)
        return -ERANGE;
    uint64_t bit = 1ull << (slot % 64);
    if (!(t->used[slot / 64] & bit))
        return -EINVAL;
    t->used[slot / 64] &= ~bit;
    t->n_used--;
    if (slot / 64 < t->hint)
        t->hint = slot / 64;
    return 0;
}

int nvme_mark_used(nvme_tier *t, uint32_t slot)
{
    if (slot >= t->n_slots)
        return -ERANGE;
    uint64_t bit = 1ull << (slot % 64);
    if (t->used[slot / 64] & bit)
        return -EEXIST;
    t->used[slot / 64] |= bit;
    t->n_used++;
    return 0;
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
