// ctest: labels=unit timeout=120
/*
 * test_tier_corrupt — a block that fails verification or whose read fails is never served
 * (invariant 2), and the engine keeps serving (invariant 6).
 *
 *  1. nvme: a 6-block prompt is persisted and the engine reopened (the blocks are on nvme
 *     only); one byte of block 3 is flipped in the slot file. kvt_read of blocks 0..5 copies
 *     0..2 and returns KVT_ECORRUPT; the buffer of block 3 holds no data from it; stats count
 *     one checksum failure; after release the block and its descendants are gone (3 dropped),
 *     the next match stops before it, and the first 3 blocks still read right. Putting the
 *     prompt again repairs it, across a restart.
 *  2. disk: the same with a disk-only engine, the byte flipped in the segment file.
 *  3. an injected -EIO on nvme reads: kvt_read returns -EIO for that block, never data.
 *  4. an injected -EIO on writes: kvt_flush returns -EIO, the blocks stay readable from DRAM,
 *     and once the fault is gone new blocks persist again.
 * Fails if a corrupt or unreadable block is served, the error is not reported, the bad
 * block stays matchable, or the engine stops serving.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define BT 16u

static tu_rng rng;
static char root[512];
static uint64_t bb;

static kvt_layout layout(void) { return tu_layout(2, 2, 64, KVT_DTYPE_FP16, BT); } /* 16 KiB */

static void gen(tu_prompt *p, size_t nb) { tu_prompt_gen(p, &rng, nb, BT, bb); }

#include "io/io.h"

void kvt__engine_set_fault(kvt_engine *e, io_fault_fn fn, void *arg); /* tests only */

/* Flip one byte of the block whose bytes begin with `head` in any file under dir (whose
 * name starts with prefix), scanning at every 4 KiB page + `shift`. */
static int flip(const char *dir, const char *prefix, const unsigned char *head, size_t shift)
{
    char path[1024];
    for (int f = 0; f < 64; f++) {
        snprintf(path, sizeof path, prefix[0] == 's' && prefix[1] == 'l' ? "%s/%s%06d" : "%s/%s%08d",
                 dir, prefix, f);
        int fd = open(path, O_RDWR);
        if (fd < 0)
            continue;
        unsigned char buf[64];
        for (off_t off = 0;; off += 4096) {
            if (pread(fd, buf, 64, off + (off_t)shift) != 64)
                break;
            if (memcmp(buf, head, 64) == 0) {
                unsigned char c;
                off_t at = off + (off_t)shift + 100;
                TU_CHECK(pread(fd, &c, 1, at) == 1);
                c ^= 0x40;
                TU_CHECK(pwrite(fd, &c, 1, at) == 1);
                fsync(fd);
                close(fd);
                return 1;
            }
        }
        close(fd);
    }
    return 0;
}

static void case_corrupt(int disk_only)
{
    char dir[600], tdir[700];
    snprintf(dir, sizeof dir, "%s/%s", root, disk_only ? "disk" : "nvme");
    tu_tier_cfg c = {.dram_bytes = 64 * bb, .nvme_bytes = disk_only ? 0 : 64 * bb,
                     .disk_bytes = 16 << 20};
    kvt_layout l = layout();
    static tu_prompt p;
    gen(&p, 6);
    kvt_engine *e = tu_tier_engine(dir, &c);
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, &ns), 0);
    TU_CHECK_EQ(tu_prompt_put(ns, &p, NULL), 0);
    TU_CHECK_EQ(kvt_flush(e), 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    if (disk_only) {
        snprintf(tdir, sizeof tdir, "%s/disk", dir);
        TU_CHECK(flip(tdir, "seg.", p.data + 3 * bb, 40)); /* raw record: 40-byte header */
    } else {
        snprintf(tdir, sizeof tdir, "%s/nvme", dir);
        TU_CHECK(flip(tdir, "slots.", p.data + 3 * bb, 0));
    }
    e = tu_tier_engine(dir, &c);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, &ns), 0);
    kvt_lease *ls = NULL;
    size_t m = 0;
    TU_CHECK_EQ(kvt_match(ns, p.tok, 6 * BT, &m, &ls), 0);
    TU_CHECK_EQ(m, 6 * BT);
    static unsigned char out[6][16384];
    memset(out, 0xee, sizeof out);
    int rc = kvt_read_contig(ls, 0, 6, out, sizeof out);
    TU_CHECK_EQ(rc, KVT_ECORRUPT);
    TU_CHECK(memcmp(out, p.data, 3 * bb) == 0); /* the blocks before it were copied */
    TU_CHECK(memcmp(out[3], p.data + 3 * bb, bb) != 0);
    /* asking again does not serve it either */
    void *d = out[3];
    TU_CHECK_EQ(kvt_read(ls, 3, 1, &d), KVT_ECORRUPT);
    /* a new match already stops before it while the lease pins it */
    size_t m2 = 0;
    TU_CHECK_EQ(kvt_match(ns, p.tok, 6 * BT, &m2, NULL), 0);
    TU_CHECK_EQ(m2, 3 * BT);
    kvt_release(ls);
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.checksum_failures, 1);
    TU_CHECK_EQ(s.blocks_dropped_bad, 1);
    TU_CHECK_EQ(s.blocks_cached, 3);
    int r2;
    TU_CHECK_EQ(tu_prompt_match_read(ns, &p, &r2), 3);
    TU_CHECK_EQ(r2, 0);
    /* repaired by a new put, also across a restart */
    size_t st = 0;
    TU_CHECK_EQ(tu_prompt_put(ns, &p, &st), 0);
    TU_CHECK_EQ(st, 3);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    e = tu_tier_engine(dir, &c);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, &ns), 0);
    TU_CHECK_EQ(tu_prompt_match_read(ns, &p, &r2), 6);
    TU_CHECK_EQ(r2, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    printf("%s corruption: detected, dropped, repaired\n", disk_only ? "disk" : "nvme");
}

static int fail_op = -1;
static int fault(void *arg, uint64_t seq, unsigned attempt, const io_req *r, uint32_t *len)
{
    (void)arg, (void)seq, (void)attempt, (void)len;
    return r->op == fail_op ? -EIO : 0;
}

static void case_eio(void)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/eio", root);
    tu_tier_cfg c = {.dram_bytes = 64 * bb, .nvme_bytes = 64 * bb, .disk_bytes = 16 << 20};
    kvt_layout l = layout();
    static tu_prompt p, q, r;
    gen(&p, 4);
    gen(&q, 4);
    gen(&r, 2);
    kvt_engine *e = tu_tier_engine(dir, &c);
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, &ns), 0);
    TU_CHECK_EQ(tu_prompt_put(ns, &p, NULL), 0);
    TU_CHECK_EQ(kvt_flush(e), 0);
    /* write errors: nvme and disk writes fail, the flush says so, DRAM still serves */
    fail_op = IO_OP_WRITE;
    kvt__engine_set_fault(e, fault, NULL);
    TU_CHECK_EQ(tu_prompt_put(ns, &q, NULL), 0);
    TU_CHECK_EQ(kvt_flush(e), -EIO);
    int rc;
    TU_CHECK_EQ(tu_prompt_match_read(ns, &q, &rc), 4);
    TU_CHECK_EQ(rc, 0);
    TU_CHECK(tu_stats(e).wt_failures >= 4);
    fail_op = -1;
    TU_CHECK_EQ(tu_prompt_put(ns, &r, NULL), 0);
    TU_CHECK_EQ(kvt_flush(e), 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    /* read errors after a restart: p is on nvme only */
    e = tu_tier_engine(dir, &c);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, &ns), 0);
    TU_CHECK_EQ(tu_prompt_match_read(ns, &q, NULL), 0); /* never persisted: gone, not torn */
    fail_op = IO_OP_READ;
    kvt__engine_set_fault(e, fault, NULL);
    TU_CHECK_EQ(tu_prompt_match_read(ns, &p, &rc), 4);
    TU_CHECK_EQ(rc, -EIO);
    TU_CHECK(tu_stats(e).io_errors >= 1);
    fail_op = -1;
    kvt__engine_set_fault(e, NULL, NULL);
    TU_CHECK_EQ(tu_prompt_match_read(ns, &p, &rc), 0); /* the unreadable block was dropped */
    TU_CHECK_EQ(tu_prompt_match_read(ns, &r, &rc), 2);
    TU_CHECK_EQ(rc, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    printf("eio: write and read errors reported, never served\n");
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_tier_corrupt", 9));
    kvt_layout l = layout();
    bb = kvt_layout_block_bytes(&l);
    tu_fresh_dir(root, sizeof root, "tier_corrupt");
    case_corrupt(0);
    case_corrupt(1);
    case_eio();
    tu_rm_tree(root);
    printf("ok\n");
    return 0;
}
