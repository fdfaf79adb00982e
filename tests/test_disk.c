// ctest: labels=unit timeout=120
/*
 * test_disk.c — the capacity tier: LZ4 ratio rule, checksum and header corruption, stale
 * tags, compaction with moves reported, capacity enforcement, injected ENOSPC/EIO/short
 * I/O, reopen with warm-restart marking, OOM, and a random-operation fuzz against a model
 * (tag -> location + the bytes regenerated from the tag).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"
#include "testutil.h"
#include "tiers/disk.h"
#include "util/util.h"

#define SEG (256u << 10) /* segment bytes */
#define CAP (8u * SEG)   /* 8 segments: 7 for puts, 1 reserved for compaction */
#define MAXB (60u << 10) /* largest test block */

static char dir[PATH_MAX];
static tu_rng rng;

static void setup_dir(void) { tu_test_dir(dir, sizeof dir, "test_disk"); }

static void wipe(void) { tu_wipe_dir(dir); }

static void cleanup(void)
{
    wipe();
    rmdir(dir);
}

/* The bytes of block `tag`: its length and kind (0 random, 1 half zeros, 2 repeated 64 B)
 * follow from the tag, so the model stores only tags. */
static size_t block_len(uint64_t tag) { return 1 + (size_t)((tag * 2654435761u) % MAXB); }

static void block_fill(uint64_t tag, unsigned char *b, size_t n)
{
    tu_rng r;
    tu_rng_init(&r, tag);
    switch (tag % 3) {
    case 0:
        tu_fill(&r, b, n);
        break;
    case 1:
        tu_fill(&r, b, n / 2);
        memset(b + n / 2, 0, n - n / 2);
        break;
    default:
        for (size_t i = 0; i < n; i++)
            b[i] = (unsigned char)(i % 64 * 7 + tag);
        break;
    }
}

static unsigned char *blk, *got;

static int put(disk_tier *t, uint64_t tag, disk_loc *loc)
{
    size_t n = block_len(tag);
    block_fill(tag, blk, n);
    return disk_put(t, tag, blk, n, loc);
}

static void check_get(disk_tier *t, uint64_t tag, disk_loc loc)
{
    size_t n = block_len(tag), len = 0;
    block_fill(tag, blk, n);
    memset(got, 0, MAXB);
    TU_CHECK_EQ(disk_get(t, loc, tag, got, MAXB, &len), 0);
    TU_CHECK_EQ(len, n);
    TU_CHECK(memcmp(got, blk, n) == 0);
}

static disk_tier *open_tier(const disk_opts *o0)
{
    disk_opts o = {.segment_bytes = SEG};
    if (o0)
        o = *o0;
    disk_tier *t = NULL;
    TU_CHECK_EQ(disk_open(dir, CAP, &o, &t), 0);
    return t;
}

static uint64_t dir_seg_bytes(unsigned *n)
{
    DIR *d = opendir(dir);
    TU_CHECK(d);
    struct dirent *e;
    uint64_t sum = 0;
    *n = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "seg.", 4) != 0)
            continue;
        struct stat st;
        TU_CHECK(fstatat(dirfd(d), e->d_name, &st, 0) == 0);
        sum += (uint64_t)st.st_size;
        (*n)++;
    }
    closedir(d);
    return sum;
}

/* Flip one byte of segment file `seg` at byte offset off. */
static void flip(uint32_t seg, uint64_t off)
{
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/seg.%08u", dir, seg);
    int fd = open(p, O_RDWR);
    TU_CHECK(fd >= 0);
    unsigned char c;
    TU_CHECK(pread(fd, &c, 1, (off_t)off) == 1);
    c ^= 0x40;
    TU_CHECK(pwrite(fd, &c, 1, (off_t)off) == 1);
    close(fd);
}

/* --- the ratio rule, round trips, errors of get --- */
static void test_records(void)
{
    disk_tier *t = open_tier(NULL);
    const size_t n = 40000;
    disk_loc lr, lh, lp;
    /* random: stored raw, so the record is header + raw bytes, padded */
    tu_fill(&rng, blk, n);
    TU_CHECK_EQ(disk_put(t, 1, blk, n, &lr), 0);
    TU_CHECK_EQ(disk_loc_len(lr), (DISK_HDR_BYTES + n + 4095) / 4096 * 4096);
    /* half zeros: ratio ~2, compressed */
    memset(blk + n / 2, 0, n / 2);
    TU_CHECK_EQ(disk_put(t, 2, blk, n, &lh), 0);
    TU_CHECK(disk_loc_len(lh) <= 6 * 4096);
    /* a repeated pattern: one page */
    memset(blk, 'k', n);
    TU_CHECK_EQ(disk_put(t, 3, blk, n, &lp), 0);
    TU_CHECK_EQ(disk_loc_len(lp), 4096);
    TU_CHECK_EQ(disk_loc_seg(lh), disk_loc_seg(lr));
    TU_CHECK_EQ(disk_loc_off(lh), disk_loc_off(lr) + disk_loc_len(lr));

    size_t len;
    TU_CHECK_EQ(disk_get(t, lp, 3, got, MAXB, &len), 0);
    TU_CHECK_EQ(len, n);
    TU_CHECK(memcmp(got, blk, n) == 0);
    TU_CHECK_EQ(disk_get(t, lp, 4, got, MAXB, &len), -ESTALE);
    TU_CHECK_EQ(disk_get(t, lp, 3, got, n - 1, &len), -ERANGE);
    TU_CHECK_EQ(len, n);
    TU_CHECK_EQ(disk_get(t, lp + 1, 3, got, MAXB, &len), -ENOENT); /* wrong length */
    TU_CHECK_EQ(disk_get(t, DISK_LOC_NONE, 3, got, MAXB, &len), -ENOENT);
    /* The two-step put: encode anywhere, append under the tier's exclusive section. */
    void *rec;
    size_t rb;
    TU_CHECK_EQ(disk_encode(6, blk, n, 0, 0, &rec, &rb), 0);
    TU_CHECK_EQ(rb, 4096); /* the 'k' pattern */
    disk_loc le;
    TU_CHECK_EQ(disk_append(t, rec, rb, &le), 0);
    TU_CHECK_EQ(disk_get(t, le, 6, got, MAXB, &len), 0);
    TU_CHECK(len == n && memcmp(got, blk, n) == 0);
    ((unsigned char *)rec)[20] ^= 1; /* no longer a record: refused, nothing written */
    TU_CHECK_EQ(disk_append(t, rec, rb, &le), -EINVAL);
    io_buf_free(rec);
    TU_CHECK_EQ(disk_put(t, 9, blk, 0, &lp), -EINVAL);
    TU_CHECK_EQ(disk_put(t, 9, blk, SEG, &lp), -EFBIG);
    disk_close(t);

    /* A ratio demand above what the half-zero block reaches stores it raw. */
    disk_opts o = {.segment_bytes = SEG, .min_ratio = 3.0};
    t = open_tier(&o);
    tu_fill(&rng, blk, n);
    memset(blk + n / 2, 0, n / 2);
    disk_loc l;
    TU_CHECK_EQ(disk_put(t, 5, blk, n, &l), 0);
    TU_CHECK_EQ(disk_loc_len(l), (DISK_HDR_BYTES + n + 4095) / 4096 * 4096);
    TU_CHECK_EQ(disk_get(t, l, 5, got, MAXB, &len), 0);
    TU_CHECK(memcmp(got, blk, n) == 0);
    disk_close(t);
    wipe();
}

/* --- corruption anywhere in a record is -EBADMSG --- */
static void test_corruption(void)
{
    disk_tier *t = open_tier(NULL);
    disk_loc l[4];
    uint64_t tags[4] = {30, 31, 32, 31 + 3}; /* kinds: raw, half-zero LZ4, pattern, half */
    for (int i = 0; i < 4; i++)
        TU_CHECK_EQ(put(t, tags[i], &l[i]), 0);
    for (int i = 0; i < 4; i++)
        check_get(t, tags[i], l[i]);
    size_t len;
    /* raw payload byte, LZ4 payload byte, header byte (the tag), last payload byte */
    flip(disk_loc_seg(l[0]), disk_loc_off(l[0]) + DISK_HDR_BYTES + 1000);
    flip(disk_loc_seg(l[1]), disk_loc_off(l[1]) + DISK_HDR_BYTES + 10);
    flip(disk_loc_seg(l[2]), disk_loc_off(l[2]) + 12);
    size_t n3 = block_len(tags[3]);
    flip(disk_loc_seg(l[3]), disk_loc_off(l[3]) + DISK_HDR_BYTES + 3); /* LZ4 token area */
    for (int i = 0; i < 4; i++) {
        memset(got, 0, MAXB);
        TU_CHECK_EQ(disk_get(t, l[i], tags[i], got, MAXB, &len), -EBADMSG);
    }
    (void)n3;
    /* Zeroed page (lost write): the header no longer matches. */
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/seg.%08u", dir, disk_loc_seg(l[0]));
    int fd = open(p, O_RDWR);
    TU_CHECK(fd >= 0);
    static unsigned char zero[4096];
    TU_CHECK(pwrite(fd, zero, 4096, (off_t)disk_loc_off(l[0])) == 4096);
    close(fd);
    TU_CHECK_EQ(disk_get(t, l[0], tags[0], got, MAXB, &len), -EBADMSG);
    disk_close(t);
    wipe();
}

/* --- compaction: live records move, the caller learns where, space comes back --- */
typedef struct move_log {
    uint64_t tags[512];
    disk_loc old_l[512], new_l[512];
    unsigned n;
    int refuse; /* return -EBUSY for this many-th move (1-based), 0 never */
} move_log;

static int on_move(void *arg, uint64_t tag, disk_loc o, disk_loc n)
{
    move_log *m = arg;
    if (m->refuse && m->n + 1 == (unsigned)m->refuse)
        return -EBUSY;
    m->tags[m->n] = tag;
    m->old_l[m->n] = o;
    m->new_l[m->n] = n;
    m->n++;
    return 0;
}

static void test_compaction_and_capacity(void)
{
    disk_tier *t = open_tier(NULL);
    TU_CHECK_EQ(disk_capacity(t), CAP);
    /* Fill until full; sizes and file bytes never pass the capacity. Tags are multiples of
     * 3 (random, stored raw) so every record takes real space. */
    uint64_t tags[512];
    disk_loc locs[512];
    unsigned n = 0;
    int r;
    for (;;) {
        uint64_t tag = 3 * (1000 + n);
        r = put(t, tag, &locs[n]);
        if (r)
            break;
        tags[n++] = tag;
        TU_CHECK(disk_file_bytes(t) <= CAP - SEG);
        TU_CHECK(n < 512);
    }
    TU_CHECK_EQ(r, -ENOSPC);
    unsigned files;
    TU_CHECK(dir_seg_bytes(&files) <= CAP - SEG);
    TU_CHECK_EQ(files, 7);
    TU_CHECK_EQ(disk_segments(t), 7);
    for (unsigned i = 0; i < n; i++)
        check_get(t, tags[i], locs[i]);

    /* Free 3 of every 4 records: most segments become > 50% garbage. */
    for (unsigned i = 0; i < n; i++)
        if (i % 4)
            TU_CHECK_EQ(disk_free(t, locs[i]), 0);
    TU_CHECK_EQ(disk_free(t, locs[1]), -ENOENT);
    uint64_t before = disk_file_bytes(t);
    move_log m = {0};
    disk_compact_stats st;
    TU_CHECK_EQ(disk_compact(t, 0.5, on_move, &m, &st), 0);
    TU_CHECK(st.segments_freed >= 4);
    TU_CHECK_EQ(st.records_moved, m.n);
    TU_CHECK(m.n > 0);
    TU_CHECK(disk_file_bytes(t) < before);
    TU_CHECK_EQ(before - disk_file_bytes(t), st.bytes_freed - st.bytes_moved);
    TU_CHECK_EQ(dir_seg_bytes(&files), disk_file_bytes(t));
    size_t len;
    for (unsigned k = 0; k < m.n; k++) {
        unsigned i = 0;
        while (i < n && tags[i] != m.tags[k])
            i++;
        TU_CHECK(i < n && i % 4 == 0);
        TU_CHECK_EQ(locs[i], m.old_l[k]);
        locs[i] = m.new_l[k];
        TU_CHECK_EQ(disk_get(t, m.old_l[k], tags[i], got, MAXB, &len), -ENOENT);
    }
    for (unsigned i = 0; i < n; i += 4)
        check_get(t, tags[i], locs[i]);
    /* There is room again. */
    disk_loc l;
    TU_CHECK_EQ(put(t, 3 * 5000, &l), 0);
    check_get(t, 3 * 5000, l);

    /* Refused move: compaction stops, the old location stays valid. */
    for (unsigned i = 0; i < n; i += 8)
        TU_CHECK_EQ(disk_free(t, locs[i]), 0);
    m = (move_log){.refuse = 1};
    r = disk_compact(t, 0.0, on_move, &m, &st);
    TU_CHECK_EQ(r, -EBUSY);
    for (unsigned i = 4; i < n; i += 8)
        check_get(t, tags[i], locs[i]);
    disk_close(t);
    wipe();
}

/* --- injected faults: ENOSPC and EIO are errors, short transfers are completed --- */
static int fault_mode; /* 1 ENOSPC on writes, 2 EIO on reads, 3 short (one page) */
static int fault_fn(void *arg, uint64_t seq, unsigned attempt, const io_req *req, uint32_t *len)
{
    (void)arg;
    (void)seq;
    (void)attempt;
    if (fault_mode == 1 && req->op == IO_OP_WRITE)
        return -ENOSPC;
    if (fault_mode == 2 && req->op == IO_OP_READ)
        return -EIO;
    if (fault_mode == 3 && *len > 4096)
        *len = 4096;
    return 0;
}

static void test_faults(void)
{
    disk_tier *t = open_tier(NULL);
    disk_set_fault(t, fault_fn, NULL);
    disk_loc a, b, c;
    TU_CHECK_EQ(put(t, 100, &a), 0);
    fault_mode = 1;
    TU_CHECK_EQ(put(t, 101, &b), -ENOSPC);
    uint64_t fb = disk_file_bytes(t);
    fault_mode = 0;
    TU_CHECK_EQ(put(t, 102, &c), 0);
    TU_CHECK_EQ(disk_file_bytes(t), fb + disk_loc_len(c)); /* the failed put left nothing */
    TU_CHECK_EQ(disk_loc_off(c), disk_loc_off(a) + disk_loc_len(a));
    check_get(t, 100, a);
    fault_mode = 2;
    size_t len;
    memset(got, 0x5a, MAXB);
    TU_CHECK_EQ(disk_get(t, a, 100, got, MAXB, &len), -EIO);
    for (unsigned i = 0; i < MAXB; i++)
        TU_CHECK(got[i] == 0x5a);
    fault_mode = 3;
    TU_CHECK_EQ(put(t, 103, &b), 0);
    check_get(t, 103, b);
    check_get(t, 102, c);
    fault_mode = 0;
    disk_set_fault(t, NULL, NULL);

    /* OOM in put: an error, the tier unchanged. */
    fb = disk_file_bytes(t);
    util_alloc_fail_after(0);
    TU_CHECK_EQ(put(t, 104, &b), -ENOMEM);
    util_alloc_fail_after(-1);
    TU_CHECK_EQ(disk_file_bytes(t), fb);
    disk_close(t);
    wipe();
}

/* --- reopen: everything dead until marked; compaction reclaims the unmarked --- */
static void test_reopen(void)
{
    disk_tier *t = open_tier(NULL);
    disk_loc l[20];
    for (unsigned i = 0; i < 20; i++)
        TU_CHECK_EQ(put(t, 3 * i + 1, &l[i]), 0); /* half-zero blocks */
    TU_CHECK_EQ(disk_sync(t), 0);
    disk_tier *t2;
    disk_opts o = {.segment_bytes = SEG};
    TU_CHECK_EQ(disk_open(dir, CAP, &o, &t2), -EBUSY);
    uint32_t segs = disk_segments(t);
    disk_close(t);

    /* OOM at every allocation of an open that adopts files. */
    int ok = 0;
    for (long k = 0; k < 64 && !ok; k++) {
        util_alloc_fail_after(k);
        int r = disk_open(dir, CAP, &o, &t);
        util_alloc_fail_after(-1);
        if (r == 0)
            ok = 1;
        else
            TU_CHECK_EQ(r, -ENOMEM);
    }
    TU_CHECK(ok);
    TU_CHECK_EQ(disk_segments(t), segs);
    TU_CHECK_EQ(disk_live_bytes(t), 0);
    size_t len;
    TU_CHECK_EQ(disk_get(t, l[0], 1, got, MAXB, &len), -ENOENT);
    for (unsigned i = 0; i < 20; i += 2)
        TU_CHECK_EQ(disk_mark_live(t, l[i]), 0);
    TU_CHECK_EQ(disk_mark_live(t, l[0]), -EEXIST);
    TU_CHECK_EQ(disk_mark_live(t, l[19] + ((disk_loc)SEG / 4096 << 20)), -ENOENT);
    for (unsigned i = 0; i < 20; i += 2)
        check_get(t, 3 * i + 1, l[i]);
    move_log m = {0};
    disk_compact_stats st;
    TU_CHECK_EQ(disk_compact(t, 0.3, on_move, &m, &st), 0);
    TU_CHECK_EQ(m.n, st.records_moved);
    for (unsigned k = 0; k < m.n; k++) {
        unsigned i = (unsigned)((m.tags[k] - 1) / 3);
        TU_CHECK(i % 2 == 0 && l[i] == m.old_l[k]);
        l[i] = m.new_l[k];
    }
    for (unsigned i = 0; i < 20; i += 2)
        check_get(t, 3 * i + 1, l[i]);
    TU_CHECK(disk_live_bytes(t) <= disk_file_bytes(t));
    disk_close(t);
    wipe();
}

/* --- random operations against the model --- */
static void test_fuzz(void)
{
    disk_tier *t = open_tier(NULL);
    enum { MAXLIVE = 256 };
    uint64_t tags[MAXLIVE];
    disk_loc locs[MAXLIVE];
    unsigned n = 0, puts = 0, nospc = 0, compacts = 0;
    uint64_t next_tag = 1u << 20;
    for (int op = 0; op < 3000; op++) {
        uint64_t k = tu_below(&rng, 100);
        if (k < 45 && n < MAXLIVE) {
            uint64_t tag = next_tag++;
            int r = put(t, tag, &locs[n]);
            if (r == 0) {
                tags[n++] = tag;
                puts++;
            } else {
                TU_CHECK_EQ(r, -ENOSPC);
                nospc++;
            }
        } else if (k < 80 && n) {
            unsigned i = (unsigned)tu_below(&rng, n);
            TU_CHECK_EQ(disk_free(t, locs[i]), 0);
            tags[i] = tags[--n];
            locs[i] = locs[n];
        } else if (k < 97 && n) {
            unsigned i = (unsigned)tu_below(&rng, n);
            check_get(t, tags[i], locs[i]);
        } else {
            move_log m = {0};
            int r = disk_compact(t, 0.4, on_move, &m, NULL);
            TU_CHECK(r == 0 || r == -ENOSPC);
            for (unsigned j = 0; j < m.n; j++) {
                unsigned i = 0;
                while (i < n && tags[i] != m.tags[j])
                    i++;
                TU_CHECK(i < n && locs[i] == m.old_l[j]);
                locs[i] = m.new_l[j];
            }
            compacts++;
        }
        TU_CHECK(disk_file_bytes(t) <= CAP);
        TU_CHECK(disk_segments(t) <= CAP / SEG);
    }
    for (unsigned i = 0; i < n; i++)
        check_get(t, tags[i], locs[i]);
    unsigned files;
    TU_CHECK_EQ(dir_seg_bytes(&files), disk_file_bytes(t));
    printf("test_disk: fuzz puts=%u enospc=%u compactions=%u live=%u\n", puts, nospc, compacts,
           n);
    disk_close(t);
    wipe();
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_disk", 13));
    setup_dir();
    atexit(cleanup);
    blk = util_malloc(SEG);
    got = util_malloc(SEG);
    TU_CHECK(blk && got);
    test_records();
    test_corruption();
    test_compaction_and_capacity();
    test_faults();
    test_reopen();
    test_fuzz();
    util_free(blk);
    util_free(got);
    printf("test_disk: ok\n");
    return 0;
}
