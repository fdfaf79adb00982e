/* disk.c — see disk.h. */
#include "tiers/disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lz4.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "util/util.h"

#define PAGE 4096u
#define DISK_MAGIC 0x3144564bu /* "KVD1" little-endian */
#define DISK_VERSION 1u
#define REC_DEAD 0x80000000u   /* in disk_rec.pages */
#define MAX_SEG_ID 0xffffffu   /* 24 bits of disk_loc */

typedef struct disk_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t flags;
    uint32_t raw_len;
    uint32_t stored_len;
    uint64_t tag;
    uint64_t data_sum;
    uint32_t hdr_sum; /* XXH32 of the 32 bytes above */
    uint32_t pad;
} disk_hdr;
_Static_assert(sizeof(disk_hdr) == DISK_HDR_BYTES, "disk_hdr layout");

typedef struct disk_rec {
    uint32_t page;  /* first page in the segment */
    uint32_t pages; /* | REC_DEAD once freed */
} disk_rec;

typedef struct disk_seg {
    int fd;              /* -1: this id is unused */
    int dirty;           /* written since the last sync */
    uint32_t size_pages; /* append cursor = file bytes / PAGE */
    uint32_t n_live;
    uint64_t live_bytes;
    disk_rec *recs;      /* [n_recs], sorted by page */
    uint32_t n_recs, cap_recs;
} disk_seg;

struct disk_tier {
    char dir[PATH_MAX];
    uint64_t seg_bytes;
    uint32_t seg_pages;
    uint32_t max_segs;   /* capacity / seg_bytes */
    uint32_t n_ids;      /* entries in segs[] (>= max_segs when adopting more files) */
    uint32_t n_segs;     /* segments with a file */
    int64_t active;      /* segment appended to, -1 none */
    disk_seg *segs;      /* [n_ids] */
    double min_ratio;
    unsigned flags;
    int direct;
    int lock_fd;
    uint64_t file_bytes, live_bytes;
    io_fault_fn fault;
    void *fault_arg;
    atomic_uint_fast64_t seq; /* I/O attempts numbered for the fault hook */
};

static uint32_t hdr_sum(const disk_hdr *h) { return XXH32(h, 32, 0); }

static disk_loc loc_pack(uint32_t seg, uint32_t page, uint32_t pages)
{
    return (uint64_t)seg << 40 | (uint64_t)page << 20 | pages;
}

static void seg_path(const disk_tier *t, uint32_t id, char *p, size_t n)
{
    snprintf(p, n, "%s/seg.%08u", t->dir, id);
}

static int seg_rw(disk_tier *t, int op, int fd, void *buf, uint64_t len, uint64_t off)
{
    io_req r = {.buf = buf, .off = off, .len = (uint32_t)len, .fd = fd, .op = op};
    int res = io_sync_rw(&r, t->fault, t->fault_arg, atomic_fetch_add(&t->seq, 1));
    return res < 0 ? res : 0;
}

/* Index of the record starting at page in s->recs, or -1. */
static int64_t rec_find(const disk_seg *s, uint32_t page)
{
    uint32_t lo = 0, hi = s->n_recs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->recs[mid].page < page)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n_recs && s->recs[lo].page == page ? (int64_t)lo : -1;
}

static int recs_reserve(disk_seg *s)
{
    if (s->n_recs < s->cap_recs)
        return 0;
    uint32_t cap = s->cap_recs ? s->cap_recs * 2 : 16;
    disk_rec *r = util_realloc(s->recs, cap * sizeof *r);
    if (!r)
        return -ENOMEM;
    s->recs = r;
    s->cap_recs = cap;
    return 0;
}

static void seg_delete(disk_tier *t, uint32_t id)
{
    disk_seg *s = &t->segs[id];
    char p[PATH_MAX + 16];
    seg_path(t, id, p, sizeof p);
    unlink(p);
    close(s->fd);
    t->file_bytes -= (uint64_t)s->size_pages * PAGE;
    t->live_bytes -= s->live_bytes;
    util_free(s->recs);
    memset(s, 0, sizeof *s);
    s->fd = -1;
    t->n_segs--;
    if (t->active == (int64_t)id)
        t->active = -1;
}

/* Create a fresh segment with the lowest unused id and make it the append target. */
static int seg_new(disk_tier *t, int use_reserve)
{
    uint32_t limit = use_reserve ? t->max_segs : t->max_segs - 1;
    if (t->n_segs >= limit)
        return -ENOSPC;
    uint32_t id = 0;
    while (id < t->n_ids && t->segs[id].fd >= 0)
        id++;
    if (id >= t->n_ids)
        return -ENOSPC;
    char p[PATH_MAX + 16];
    seg_path(t, id, p, sizeof p);
    int direct;
    int fd = io_file_open(p, O_RDWR | O_CREAT | O_TRUNC, 0644, !(t->flags & DISK_NO_DIRECT),
                          &direct);
    if (fd < 0)
        return fd;
    if (!direct)
        t->direct = 0;
    disk_seg *s = &t->segs[id];
    memset(s, 0, sizeof *s);
    s->fd = fd;
    t->n_segs++;
    t->active = id;
    return 0;
}

/*
 * Append `pages` pages of buf (a whole record) to the active segment, opening one if needed.
 * Returns 0 and *loc, or -errno with nothing recorded (a failed write leaves the cursor where
 * it was, so the next append overwrites the torn bytes).
 */
static int append(disk_tier *t, const void *buf, uint32_t pages, int use_reserve, disk_loc *loc)
{
    int err;
    if (t->active < 0 || t->segs[t->active].size_pages + pages > t->seg_pages) {
        err = seg_new(t, use_reserve);
        if (err)
            return err;
    }
    uint32_t id = (uint32_t)t->active;
    disk_seg *s = &t->segs[id];
    err = recs_reserve(s);
    if (err)
        return err;
    err = seg_rw(t, IO_OP_WRITE, s->fd, (void *)buf, (uint64_t)pages * PAGE,
                 (uint64_t)s->size_pages * PAGE);
    if (err)
        return err == -EFBIG || err == -EDQUOT ? -ENOSPC : err;
    s->recs[s->n_recs++] = (disk_rec){s->size_pages, pages};
    *loc = loc_pack(id, s->size_pages, pages);
    s->size_pages += pages;
    s->n_live++;
    s->live_bytes += (uint64_t)pages * PAGE;
    s->dirty = 1;
    t->file_bytes += (uint64_t)pages * PAGE;
    t->live_bytes += (uint64_t)pages * PAGE;
    return 0;
}

int disk_encode(uint64_t tag, const void *src, size_t len, double min_ratio, unsigned flags,
                void **rec, size_t *rec_bytes)
{
    if (!src || !rec || !rec_bytes || len == 0 || (flags & ~(DISK_NO_DIRECT | DISK_NO_LZ4)))
        return -EINVAL;
    if (len > (1u << 30) - DISK_HDR_BYTES)
        return -EFBIG;
    if (min_ratio <= 0)
        min_ratio = 1.1;
    /* Room for the larger of the LZ4 bound and the raw bytes, padded to pages. */
    size_t bound = (size_t)LZ4_compressBound((int)len);
    size_t room = DISK_HDR_BYTES + (bound > len ? bound : len);
    room = (room + PAGE - 1) / PAGE * PAGE;
    char *buf = io_buf_alloc(room);
    if (!buf)
        return -ENOMEM;
    disk_hdr h = {.magic = DISK_MAGIC, .version = DISK_VERSION, .raw_len = (uint32_t)len,
                  .tag = tag, .data_sum = XXH3_64bits(src, len)};
    int comp = 0;
    if (!(flags & DISK_NO_LZ4))
        comp = LZ4_compress_default(src, buf + DISK_HDR_BYTES, (int)len, (int)bound);
    if (comp > 0 && (double)len >= min_ratio * (double)comp) {
        h.flags = DISK_REC_LZ4;
        h.stored_len = (uint32_t)comp;
    } else {
        memcpy(buf + DISK_HDR_BYTES, src, len);
        h.stored_len = (uint32_t)len;
    }
    h.hdr_sum = hdr_sum(&h);
    memcpy(buf, &h, sizeof h);
    size_t used = DISK_HDR_BYTES + h.stored_len;
    size_t padded = (used + PAGE - 1) / PAGE * PAGE;
    memset(buf + used, 0, padded - used);
    *rec = buf;
    *rec_bytes = padded;
    return 0;
}

int disk_append(disk_tier *t, const void *rec, size_t rec_bytes, disk_loc *loc)
{
    disk_hdr h;
    if (!t || !rec || !loc || rec_bytes == 0 || rec_bytes % PAGE)
        return -EINVAL;
    memcpy(&h, rec, sizeof h);
    uint64_t used = DISK_HDR_BYTES + (uint64_t)h.stored_len;
    if (h.magic != DISK_MAGIC || h.hdr_sum != hdr_sum(&h) || used > rec_bytes ||
        used <= rec_bytes - PAGE)
        return -EINVAL; /* not one record made by disk_encode */
    if (rec_bytes > t->seg_bytes)
        return -EFBIG;
    return append(t, rec, (uint32_t)(rec_bytes / PAGE), 0, loc);
}

int disk_put(disk_tier *t, uint64_t tag, const void *src, size_t len, disk_loc *loc)
{
    if (!t || !src || !loc || len == 0)
        return -EINVAL;
    if (len > t->seg_bytes - DISK_HDR_BYTES)
        return -EFBIG;
    void *rec;
    size_t bytes;
    int err = disk_encode(tag, src, len, t->min_ratio, t->flags, &rec, &bytes);
    if (err)
        return err;
    err = disk_append(t, rec, bytes, loc);
    io_buf_free(rec);
    return err;
}

/* The live record at loc: its segment and index, or -ENOENT. */
static int lookup(const disk_tier *t, disk_loc loc, disk_seg **seg, int64_t *idx)
{
    uint32_t id = disk_loc_seg(loc), page = (uint32_t)(disk_loc_off(loc) / PAGE);
    uint32_t pages = (uint32_t)(disk_loc_len(loc) / PAGE);
    if (loc == DISK_LOC_NONE || id >= t->n_ids || t->segs[id].fd < 0 || pages == 0)
        return -ENOENT;
    disk_seg *s = &t->segs[id];
    int64_t i = rec_find(s, page);
    if (i < 0 || s->recs[i].pages != pages) /* absent, dead, or another length */
        return -ENOENT;
    *seg = s;
    *idx = i;
    return 0;
}

int disk_get(disk_tier *t, disk_loc loc, uint64_t tag, void *dst, size_t cap, size_t *len)
{
    disk_seg *s;
    int64_t idx;
    if (!t || !dst || !len)
        return -EINVAL;
    int err = lookup(t, loc, &s, &idx);
    if (err)
        return err;
    uint64_t bytes = disk_loc_len(loc);
    char *buf = io_buf_alloc(bytes);
    if (!buf)
        return -ENOMEM;
    err = seg_rw(t, IO_OP_READ, s->fd, buf, bytes, disk_loc_off(loc));
    if (err)
        goto out;
    disk_hdr h;
    memcpy(&h, buf, sizeof h);
    err = -EBADMSG;
    /* The header must be intact and describe exactly the pages the location names. */
    if (h.magic != DISK_MAGIC || h.version != DISK_VERSION || h.hdr_sum != hdr_sum(&h) ||
        (h.flags & ~DISK_REC_LZ4) || h.raw_len == 0 ||
        DISK_HDR_BYTES + (uint64_t)h.stored_len > bytes ||
        DISK_HDR_BYTES + (uint64_t)h.stored_len <= bytes - PAGE ||
        (!(h.flags & DISK_REC_LZ4) && h.stored_len != h.raw_len))
        goto out;
    if (h.tag != tag) {
        err = -ESTALE;
        goto out;
    }
    *len = h.raw_len;
    if (h.raw_len > cap) {
        err = -ERANGE;
        goto out;
    }
    if (h.flags & DISK_REC_LZ4) {
        int n = LZ4_decompress_safe(buf + DISK_HDR_BYTES, dst, (int)h.stored_len, (int)h.raw_len);
        if (n != (int)h.raw_len)
            goto out;
    } else {
        memcpy(dst, buf + DISK_HDR_BYTES, h.raw_len);
    }
    if (XXH3_64bits(dst, h.raw_len) != h.data_sum)
        goto out;
    err = 0;
out:
    io_buf_free(buf);
    return err;
}

static void rec_kill(disk_tier *t, disk_seg *s, int64_t i)
{
    uint64_t b = (uint64_t)s->recs[i].pages * PAGE;
    s->recs[i].pages |= REC_DEAD;
    s->n_live--;
    s->live_bytes -= b;
    t->live_bytes -= b;
}

int disk_free(disk_tier *t, disk_loc loc)
{
    disk_seg *s;
    int64_t idx;
    int err = lookup(t, loc, &s, &idx);
    if (err)
        return err;
    rec_kill(t, s, idx);
    uint32_t id = disk_loc_seg(loc);
    if (s->n_live == 0 && t->active != (int64_t)id)
        seg_delete(t, id); /* nothing to move: reclaim now */
    return 0;
}

int disk_mark_live(disk_tier *t, disk_loc loc)
{
    uint32_t id = disk_loc_seg(loc), page = (uint32_t)(disk_loc_off(loc) / PAGE);
    uint32_t pages = (uint32_t)(disk_loc_len(loc) / PAGE);
    if (loc == DISK_LOC_NONE || id >= t->n_ids || t->segs[id].fd < 0 || pages == 0)
        return -ENOENT;
    disk_seg *s = &t->segs[id];
    if ((uint64_t)page + pages > s->size_pages)
        return -ENOENT;
    /* Insertion point; the live neighbours must not overlap. Dead entries at the same page
     * (from an earlier mark and free) are replaced. */
    uint32_t lo = 0, hi = s->n_recs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->recs[mid].page < page)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0) {
        disk_rec *p = &s->recs[lo - 1];
        if (!(p->pages & REC_DEAD) && p->page + p->pages > page)
            return -EEXIST;
    }
    uint32_t j = lo;
    while (j < s->n_recs && s->recs[j].page < page + pages) {
        if (!(s->recs[j].pages & REC_DEAD))
            return -EEXIST;
        j++;
    }
    if (j == lo) {
        int err = recs_reserve(s);
        if (err)
            return err;
        memmove(&s->recs[lo + 1], &s->recs[lo], (s->n_recs - lo) * sizeof *s->recs);
        s->n_recs++;
    } else if (j > lo + 1) {
        /* Several dead entries inside the new record's span collapse into it. */
        memmove(&s->recs[lo + 1], &s->recs[j], (s->n_recs - j) * sizeof *s->recs);
        s->n_recs -= j - lo - 1;
    }
    s->recs[lo] = (disk_rec){page, pages};
    s->n_live++;
    s->live_bytes += (uint64_t)pages * PAGE;
    t->live_bytes += (uint64_t)pages * PAGE;
    return 0;
}

int disk_compact(disk_tier *t, double min_garbage, disk_move_fn fn, void *arg,
                 disk_compact_stats *stats)
{
    disk_compact_stats st = {0};
    int err = 0;
    char *buf = NULL;
    for (uint32_t id = 0; id < t->n_ids && !err; id++) {
        disk_seg *s = &t->segs[id];
        if (s->fd < 0 || t->active == (int64_t)id)
            continue;
        uint64_t fbytes = (uint64_t)s->size_pages * PAGE;
        double garbage = fbytes ? 1.0 - (double)s->live_bytes / (double)fbytes : 1.0;
        if (garbage < min_garbage)
            continue;
        for (uint32_t i = 0; i < s->n_recs && !err; i++) {
            disk_rec r = s->recs[i];
            if (r.pages & REC_DEAD)
                continue;
            uint64_t bytes = (uint64_t)r.pages * PAGE;
            io_buf_free(buf);
            if (!(buf = io_buf_alloc(bytes))) {
                err = -ENOMEM;
                break;
            }
            err = seg_rw(t, IO_OP_READ, s->fd, buf, bytes, (uint64_t)r.page * PAGE);
            if (err)
                break;
            disk_hdr h;
            memcpy(&h, buf, sizeof h);
            /* Copied verbatim (header, checksum and all); disk_get verifies at the new place. */
            disk_loc nl, ol = loc_pack(id, r.page, r.pages);
            err = append(t, buf, r.pages, 1, &nl);
            if (err)
                break;
            err = fn ? fn(arg, h.tag, ol, nl) : 0;
            if (err) {
                disk_seg *ns;
                int64_t ni;
                if (lookup(t, nl, &ns, &ni) == 0)
                    rec_kill(t, ns, ni);
                break;
            }
            s = &t->segs[id]; /* append does not move segs[], but keep it obvious */
            rec_kill(t, s, i);
            st.records_moved++;
            st.bytes_moved += bytes;
        }
        if (!err && s->n_live == 0) {
            st.bytes_freed += (uint64_t)s->size_pages * PAGE;
            st.segments_freed++;
            seg_delete(t, id);
        }
    }
    io_buf_free(buf);
    if (stats)
        *stats = st;
    return err;
}

int disk_sync(disk_tier *t)
{
    for (uint32_t id = 0; id < t->n_ids; id++) {
        disk_seg *s = &t->segs[id];
        if (s->fd >= 0 && s->dirty) {
            if (fdatasync(s->fd) != 0)
                return -errno;
            s->dirty = 0;
        }
    }
    return 0;
}

/* Adopt existing seg.NNNNNNNN files: ids found go in *ids (grown), count in *n. */
static int scan_dir(disk_tier *t, uint32_t **ids, uint32_t *n, uint32_t *max_id)
{
    DIR *d = opendir(t->dir);
    if (!d)
        return -errno;
    struct dirent *e;
    uint32_t cap = 0;
    int err = 0;
    *n = 0;
    *max_id = 0;
    while ((e = readdir(d))) {
        unsigned id;
        char tail;
        if (strlen(e->d_name) != 12 || sscanf(e->d_name, "seg.%8u%c", &id, &tail) != 1 ||
            id > MAX_SEG_ID)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint32_t *g = util_realloc(*ids, cap * sizeof *g);
            if (!g) {
                err = -ENOMEM;
                break;
            }
            *ids = g;
        }
        (*ids)[(*n)++] = id;
        if (id > *max_id)
            *max_id = id;
    }
    closedir(d);
    return err;
}

int disk_open(const char *dir, uint64_t capacity, const disk_opts *opts, disk_tier **out)
{
    disk_opts o = {0};
    if (opts)
        o = *opts;
    if (!o.segment_bytes)
        o.segment_bytes = 64ull << 20;
    if (o.min_ratio <= 0)
        o.min_ratio = 1.1;
    if (!dir || !out || o.segment_bytes % PAGE || o.segment_bytes < (64u << 10) ||
        o.segment_bytes > (1ull << 30) || capacity / o.segment_bytes < 2 ||
        capacity / o.segment_bytes > MAX_SEG_ID || (o.flags & ~(DISK_NO_DIRECT | DISK_NO_LZ4)) ||
        strlen(dir) + 16 >= PATH_MAX)
        return -EINVAL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -errno;
    int err = -ENOMEM;
    uint32_t *ids = NULL, n_found = 0, max_id = 0;
    disk_tier *t = util_calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    snprintf(t->dir, sizeof t->dir, "%s", dir);
    t->lock_fd = -1;
    t->active = -1;
    t->seg_bytes = o.segment_bytes;
    t->seg_pages = (uint32_t)(o.segment_bytes / PAGE);
    t->max_segs = (uint32_t)(capacity / o.segment_bytes);
    t->min_ratio = o.min_ratio;
    t->flags = o.flags;
    t->direct = !(o.flags & DISK_NO_DIRECT);

    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/LOCK", dir);
    t->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (t->lock_fd < 0) {
        err = -errno;
        goto fail;
    }
    if (flock(t->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno == EWOULDBLOCK ? -EBUSY : -errno;
        goto fail;
    }
    err = scan_dir(t, &ids, &n_found, &max_id);
    if (err)
        goto fail;
    t->n_ids = t->max_segs;
    if (n_found && max_id + 1 > t->n_ids)
        t->n_ids = max_id + 1;
    err = -ENOMEM;
    t->segs = util_calloc(t->n_ids, sizeof *t->segs);
    if (!t->segs)
        goto fail;
    for (uint32_t i = 0; i < t->n_ids; i++)
        t->segs[i].fd = -1;
    for (uint32_t i = 0; i < n_found; i++) {
        int direct;
        seg_path(t, ids[i], p, sizeof p);
        int fd = io_file_open(p, O_RDWR, 0644, t->direct, &direct);
        if (fd < 0) {
            err = fd;
            goto fail;
        }
        if (!direct)
            t->direct = 0;
        struct stat stb;
        if (fstat(fd, &stb) != 0) {
            err = -errno;
            close(fd);
            goto fail;
        }
        disk_seg *s = &t->segs[ids[i]];
        s->fd = fd;
        t->n_segs++;
        /* A torn last page (crash mid-append) is garbage like any unmarked record; cut it
         * (and anything past segment_bytes) so file bytes stay what is accounted. */
        uint64_t pages = (uint64_t)stb.st_size / PAGE;
        s->size_pages = (uint32_t)(pages < t->seg_pages ? pages : t->seg_pages);
        if ((uint64_t)stb.st_size != (uint64_t)s->size_pages * PAGE &&
            ftruncate(fd, (off_t)s->size_pages * PAGE) != 0) {
            err = -errno;
            goto fail;
        }
        t->file_bytes += (uint64_t)s->size_pages * PAGE;
    }
    util_free(ids);
    *out = t;
    return 0;
fail:
    util_free(ids);
    disk_close(t);
    return err;
}

void disk_close(disk_tier *t)
{
    if (!t)
        return;
    if (t->segs) {
        for (uint32_t i = 0; i < t->n_ids; i++) {
            if (t->segs[i].fd >= 0)
                close(t->segs[i].fd);
            util_free(t->segs[i].recs);
        }
        util_free(t->segs);
    }
    if (t->lock_fd >= 0)
        close(t->lock_fd);
    util_free(t);
}

void disk_set_fault(disk_tier *t, io_fault_fn fn, void *arg)
{
    t->fault = fn;
    t->fault_arg = fn ? arg : NULL;
}

uint64_t disk_capacity(const disk_tier *t) { return (uint64_t)t->max_segs * t->seg_bytes; }
uint64_t disk_file_bytes(const disk_tier *t) { return t->file_bytes; }
uint64_t disk_live_bytes(const disk_tier *t) { return t->live_bytes; }
uint32_t disk_segments(const disk_tier *t) { return t->n_segs; }
int disk_direct(const disk_tier *t) { return t->direct; }
