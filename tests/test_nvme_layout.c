// ctest: labels=unit timeout=180
/*
 * test_nvme_layout.c — the nvme tier lays out its fallocated slot files in the background
 * (tiers/nvme.h "Layout"): after nvme_layout_wait no byte of a slot file is an unwritten
 * extent or a hole (FIEMAP), the files keep exactly the capacity, every byte reads zero;
 * NVME_NO_LAYOUT leaves them unwritten; nvme_open returns before the layout is done; blocks
 * written through io/ while the layout runs read back intact; a block the catalog would know
 * (written, not re-marked yet) keeps its bytes when a reopen lays out the slot's unwritten
 * tail; a close in mid-layout returns and the next open finishes the job.
 * Exit 77 when the test directory has no FIEMAP (tmpfs) or refuses O_DIRECT.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"
#include "testutil.h"
#include "tiers/nvme.h"
#include "util/util.h"

#define SB 65536u         /* slot bytes */
#define FB (64ull << 20)  /* file bytes */
#define CAP (256ull << 20) /* 4096 slots in 4 files */

static char dir[PATH_MAX];
static tu_rng rng;

static void cleanup(void) { tu_rm_tree(dir); }

/* Bytes of [0, size) of fd that FIEMAP reports unwritten or as holes; -1 without FIEMAP. */
static long long not_written(int fd, uint64_t size)
{
    struct {
        struct fiemap fm;
        struct fiemap_extent ext[128];
    } m;
    uint64_t start = 0, written = 0;
    while (start < size) {
        memset(&m, 0, sizeof m);
        m.fm.fm_start = start;
        m.fm.fm_length = size - start;
        m.fm.fm_flags = FIEMAP_FLAG_SYNC;
        m.fm.fm_extent_count = 128;
        if (ioctl(fd, FS_IOC_FIEMAP, &m.fm) != 0)
            return -1;
        if (m.fm.fm_mapped_extents == 0)
            break;
        int last = 0;
        for (unsigned i = 0; i < m.fm.fm_mapped_extents; i++) {
            const struct fiemap_extent *x = &m.fm.fm_extents[i];
            uint64_t lo = x->fe_logical > start ? x->fe_logical : start;
            uint64_t hi = x->fe_logical + x->fe_length < size ? x->fe_logical + x->fe_length
                                                               : size;
            if (!(x->fe_flags & FIEMAP_EXTENT_UNWRITTEN) && hi > lo)
                written += hi - lo;
            start = x->fe_logical + x->fe_length;
            last |= (x->fe_flags & FIEMAP_EXTENT_LAST) != 0;
        }
        if (last)
            break;
    }
    return (long long)(size - written);
}

/* Sum of not_written over the tier's files, and their total size via fstat. */
static long long tier_not_written(nvme_tier *t, uint64_t *size)
{
    unsigned nf;
    const int *fds = nvme_fds(t, &nf);
    long long sum = 0;
    *size = 0;
    for (unsigned f = 0; f < nf; f++) {
        struct stat st;
        TU_CHECK(fstat(fds[f], &st) == 0);
        long long n = not_written(fds[f], (uint64_t)st.st_size);
        if (n < 0)
            return -1;
        sum += n;
        *size += (uint64_t)st.st_size;
    }
    return sum;
}

static nvme_tier *open_tier(uint64_t cap, unsigned flags, double *secs)
{
    nvme_opts o = {.file_bytes = FB, .flags = flags};
    nvme_tier *t = NULL;
    uint64_t t0 = util_now_ns();
    TU_CHECK_EQ(nvme_open(dir, cap, SB, &o, &t), 0);
    if (secs)
        *secs = (double)(util_now_ns() - t0) * 1e-9;
    return t;
}

/* Every byte of every slot file reads zero. */
static void check_zeros(nvme_tier *t)
{
    unsigned char *b = io_buf_alloc(FB);
    TU_CHECK(b);
    for (uint32_t s = 0; s < nvme_slots(t); s += (uint32_t)(FB / SB)) {
        int fd;
        uint64_t off;
        TU_CHECK_EQ(nvme_slot_loc(t, s, &fd, &off), 0);
        TU_CHECK_EQ(pread(fd, b, FB, 0), (long long)FB);
        for (uint64_t i = 0; i < FB; i++)
            TU_CHECK_EQ(b[i], 0);
    }
    io_buf_free(b);
}

static void test_fresh(void)
{
    tu_rm_tree(dir);
    double secs;
    nvme_tier *t = open_tier(CAP, NVME_NO_LAYOUT, &secs);
    uint64_t size;
    TU_CHECK_EQ(tier_not_written(t, &size), (long long)CAP); /* fallocate alone: unwritten */
    TU_CHECK_EQ(size, CAP);
    TU_CHECK_EQ(nvme_layout_left(t), 0);
    TU_CHECK_EQ(nvme_layout_wait(t), 0);
    nvme_close(t);

    t = open_tier(CAP, 0, &secs);
    uint64_t left = nvme_layout_left(t);
    printf("open of %llu MiB: %.3f s, %llu MiB left to lay out on return\n",
           (unsigned long long)(CAP >> 20), secs, (unsigned long long)(left >> 20));
    TU_CHECK(left > 0); /* open did not write the capacity before returning */
    TU_CHECK_EQ(nvme_layout_wait(t), 0);
    TU_CHECK_EQ(nvme_layout_left(t), 0);
    TU_CHECK_EQ(tier_not_written(t, &size), 0);
    TU_CHECK_EQ(size, CAP); /* capacity unchanged: layout never extends a file */
    check_zeros(t);
    uint32_t s;
    for (uint32_t i = 0; i < nvme_slots(t); i++)
        TU_CHECK_EQ(nvme_alloc(t, &s), 0);
    TU_CHECK_EQ(nvme_alloc(t, &s), -ENOSPC);
    nvme_close(t);

    t = open_tier(CAP, 0, NULL); /* laid out already: nothing to do */
    TU_CHECK_EQ(nvme_layout_left(t), 0);
    nvme_close(t);
}

/* Allocate and write every slot through io/ while the layout runs; all data survives. */
static void test_concurrent(void)
{
    tu_rm_tree(dir);
    io_opts o;
    io_opts_init(&o);
    o.queue_depth = 8;
    io_ctx *c;
    TU_CHECK_EQ(io_ctx_open(&o, &c), 0);
    unsigned char *w = io_buf_alloc((size_t)CAP), *rd = io_buf_alloc(64 * SB);
    TU_CHECK(w && rd);
    tu_fill(&rng, w, (size_t)CAP);
    nvme_tier *t = open_tier(CAP, 0, NULL); /* the layout starts now, beside our writes */
    uint32_t n = nvme_slots(t);
    io_req r[64];
    uint32_t slot_of[4096];
    TU_CHECK(n <= 4096);
    unsigned waited_mid = 0;
    for (uint32_t i = 0; i < n; i += 64) {
        for (uint32_t k = 0; k < 64; k++) {
            TU_CHECK_EQ(nvme_alloc(t, &slot_of[i + k]), 0);
            TU_CHECK_EQ(nvme_req(t, slot_of[i + k], IO_OP_WRITE, w + (size_t)(i + k) * SB, SB,
                                 k, &r[k]),
                        0);
        }
        TU_CHECK_EQ(io_rw_batch(c, r, 64), 0);
        waited_mid += nvme_layout_left(t) > 0;
    }
    TU_CHECK_EQ(nvme_layout_wait(t), 0);
    printf("layout still running during %u of %u write batches\n", waited_mid, n / 64);
    for (uint32_t i = 0; i < n; i += 64) {
        for (uint32_t k = 0; k < 64; k++)
            TU_CHECK_EQ(nvme_req(t, slot_of[i + k], IO_OP_READ, rd + (size_t)k * SB, SB, k, &r[k]),
                        0);
        TU_CHECK_EQ(io_rw_batch(c, r, 64), 0);
        TU_CHECK(memcmp(rd, w + (size_t)i * SB, 64 * SB) == 0);
    }
    uint64_t size;
    TU_CHECK_EQ(tier_not_written(t, &size), 0);
    nvme_close(t);

    /* Allocation races the layout to its first claim: the lowest-first order holds (alloc
     * waits for the chunk in flight), then the layout skips the used slots. */
    tu_rm_tree(dir);
    t = open_tier(CAP, 0, NULL);
    for (uint32_t i = 0; i < n; i++) {
        TU_CHECK_EQ(nvme_alloc(t, &slot_of[i]), 0);
        TU_CHECK_EQ(slot_of[i], i);
    }
    TU_CHECK_EQ(nvme_layout_wait(t), 0);
    for (uint32_t i = 0; i < n; i += 64) {
        for (uint32_t k = 0; k < 64; k++)
            TU_CHECK_EQ(nvme_req(t, i + k, IO_OP_WRITE, w + (size_t)(i + k) * SB, SB, k, &r[k]),
                        0);
        TU_CHECK_EQ(io_rw_batch(c, r, 64), 0);
    }
    for (uint32_t i = 0; i < n; i += 64) {
        for (uint32_t k = 0; k < 64; k++)
            TU_CHECK_EQ(nvme_req(t, i + k, IO_OP_READ, rd + (size_t)k * SB, SB, k, &r[k]), 0);
        TU_CHECK_EQ(io_rw_batch(c, r, 64), 0);
        TU_CHECK(memcmp(rd, w + (size_t)i * SB, 64 * SB) == 0);
    }
    io_ctx_close(c);
    nvme_close(t);
    io_buf_free(w);
    io_buf_free(rd);
}

/* Regression guard for the claim: only the slots under the layout's first write (the top
 * 8 MiB) are free; allocating them must wait for that write, else its zeros can land on the
 * data written next. 64 fresh tiers: a broken claim shows up as lost data. */
static void test_claim(void)
{
    const uint64_t cap = 16ull << 20; /* 256 slots: the layout's first chunk is 128..255 */
    io_ctx *c;
    TU_CHECK_EQ(io_ctx_open(NULL, &c), 0);
    unsigned char *w = io_buf_alloc(128 * SB), *rd = io_buf_alloc(128 * SB);
    TU_CHECK(w && rd);
    io_req r[128];
    for (int it = 0; it < 64; it++) {
        tu_rm_tree(dir);
        nvme_close(open_tier(cap, NVME_NO_LAYOUT, NULL));
        tu_fill(&rng, w, 128 * SB);
        nvme_tier *t = open_tier(cap, 0, NULL);
        for (uint32_t s = 0; s < 128; s++)
            TU_CHECK_EQ(nvme_mark_used(t, s), 0);
        usleep(100 + 50 * (it % 16)); /* let the thread claim 128..255 and write zeros */
        for (uint32_t k = 0; k < 128; k++) {
            uint32_t s;
            TU_CHECK_EQ(nvme_alloc(t, &s), 0);
            TU_CHECK_EQ(s, 128 + k);
            TU_CHECK_EQ(nvme_req(t, s, IO_OP_WRITE, w + (size_t)k * SB, SB, k, &r[k]), 0);
        }
        TU_CHECK_EQ(io_rw_batch(c, r, 128), 0);
        TU_CHECK_EQ(nvme_layout_wait(t), 0);
        for (uint32_t k = 0; k < 128; k++)
            TU_CHECK_EQ(nvme_req(t, 128 + k, IO_OP_READ, rd + (size_t)k * SB, SB, k, &r[k]), 0);
        TU_CHECK_EQ(io_rw_batch(c, r, 128), 0);
        TU_CHECK(memcmp(rd, w, 128 * SB) == 0);
        nvme_close(t);
    }
    io_ctx_close(c);
    io_buf_free(w);
    io_buf_free(rd);
}

/* A half-slot block written into an unwritten tier, then a reopen that lays out the rest
 * before the slot is re-marked: the block's bytes stay, the tail reads zero. A close in
 * mid-layout returns; the next open finishes. */
static void test_reopen(void)
{
    tu_rm_tree(dir);
    nvme_tier *t = open_tier(CAP, NVME_NO_LAYOUT, NULL);
    unsigned char *w = io_buf_alloc(SB), *rd = io_buf_alloc(SB);
    TU_CHECK(w && rd);
    tu_fill(&rng, w, SB / 2);
    int fd;
    uint64_t off;
    TU_CHECK_EQ(nvme_slot_loc(t, 3, &fd, &off), 0);
    TU_CHECK_EQ(pwrite(fd, w, SB / 2, (off_t)off), (long long)SB / 2);
    TU_CHECK_EQ(nvme_sync(t), 0);
    nvme_close(t);

    t = open_tier(CAP, 0, NULL);
    nvme_close(t); /* mid-layout: the thread stops after its write in flight */
    t = open_tier(CAP, 0, NULL);
    TU_CHECK_EQ(nvme_layout_wait(t), 0);
    uint64_t size;
    TU_CHECK_EQ(tier_not_written(t, &size), 0);
    TU_CHECK_EQ(nvme_slot_loc(t, 3, &fd, &off), 0);
    TU_CHECK_EQ(pread(fd, rd, SB, (off_t)off), (long long)SB);
    TU_CHECK(memcmp(rd, w, SB / 2) == 0);
    for (unsigned i = SB / 2; i < SB; i++)
        TU_CHECK_EQ(rd[i], 0);
    TU_CHECK_EQ(nvme_mark_used(t, 3), 0);
    nvme_close(t);
    io_buf_free(w);
    io_buf_free(rd);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_nvme_layout", 5));
    tu_test_dir(dir, sizeof dir, "test_nvme_layout");
    atexit(cleanup);
    tu_rm_tree(dir);
    nvme_tier *t = open_tier(SB, NVME_NO_LAYOUT, NULL);
    uint64_t size;
    int direct = nvme_direct(t);
    long long nw = tier_not_written(t, &size);
    nvme_close(t);
    if (!direct || nw < 0)
        TU_SKIP("test_nvme_layout: %s has no O_DIRECT or no FIEMAP", dir);
    test_fresh();
    test_concurrent();
    test_claim();
    test_reopen();
    printf("test_nvme_layout: ok\n");
    return 0;
}
