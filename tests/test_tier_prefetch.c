// ctest: labels=unit timeout=120
/*
 * test_tier_prefetch — kvt_prefetch promotes blocks from nvme/disk into DRAM in the
 * background; a read right after it waits for the blocks in flight and gets the right
 * bytes; once promotions finish, kvt_lease_block_tier reports DRAM and a read does no tier
 * I/O. Runs on io_uring and then with KVT_IO_NO_URING=1 (the pool fallback, as on machines
 * where io_uring is blocked), checking the backend the stats report.
 * Fails if prefetch does not promote, serves wrong bytes, or the pool path breaks.
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

#include <time.h>

static void run(const char *name, int expect_pool)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    tu_tier_cfg c = {.dram_bytes = 64 * bb, .nvme_bytes = 8 * bb, .disk_bytes = 16 << 20};
    kvt_layout l = layout();
    static tu_prompt p;
    gen(&p, 12); /* 8 blocks fit nvme, the rest goes to disk */
    kvt_engine *e = tu_tier_engine(dir, &c);
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, &ns), 0);
    TU_CHECK_EQ(tu_prompt_put(ns, &p, NULL), 0);
    TU_CHECK_EQ(kvt_flush(e), 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    e = tu_tier_engine(dir, &c);
    kvt_stats s = tu_stats(e);
    if (expect_pool)
        TU_CHECK(strcmp(s.io_backend, "pool") == 0);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, &ns), 0);
    TU_CHECK_EQ(s.dram_used, 0);
    /* prefetch, then read at once: waits only for blocks in flight */
    TU_CHECK_EQ(kvt_prefetch(ns, p.tok, 12 * BT), 0);
    int rc;
    TU_CHECK_EQ(tu_prompt_match_read(ns, &p, &rc), 12);
    TU_CHECK_EQ(rc, 0);
    /* a second prefetch of a cached prompt: everything ends in DRAM */
    TU_CHECK_EQ(kvt_prefetch(ns, p.tok, 12 * BT), 0);
    for (int spin = 0; spin < 2000; spin++) {
        kvt_lease *ls = NULL;
        size_t m;
        TU_CHECK_EQ(kvt_match(ns, p.tok, 12 * BT, &m, &ls), 0);
        int all = 1;
        for (size_t i = 0; i < 12; i++) {
            kvt_tier t;
            TU_CHECK_EQ(kvt_lease_block_tier(ls, i, &t), 0);
            all &= t == KVT_TIER_DRAM;
        }
        kvt_release(ls);
        if (all)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    uint64_t r0 = tu_stats(e).tier_reads[KVT_TIER_NVME] + tu_stats(e).tier_reads[KVT_TIER_DISK];
    TU_CHECK_EQ(tu_prompt_match_read(ns, &p, &rc), 12);
    TU_CHECK_EQ(rc, 0);
    s = tu_stats(e);
    TU_CHECK_EQ(s.tier_reads[KVT_TIER_NVME] + s.tier_reads[KVT_TIER_DISK], r0); /* from DRAM */
    TU_CHECK_EQ(s.promotions, 12);
    TU_CHECK(s.tier_reads[KVT_TIER_DISK] >= 4);
    /* prefetch of nothing cached, and of a key call on a token namespace */
    static tu_prompt z;
    gen(&z, 2);
    TU_CHECK_EQ(kvt_prefetch(ns, z.tok, 2 * BT), 0);
    uint64_t k = 1;
    TU_CHECK_EQ(kvt_prefetch_keys(ns, &k, 1), KVT_EMODE);
    TU_CHECK_EQ(kvt_prefetch(NULL, z.tok, 2 * BT), -EINVAL);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    printf("%s: backend %s, promotions %llu\n", name, s.io_backend,
           (unsigned long long)s.promotions);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_tier_prefetch", 13));
    kvt_layout l = layout();
    bb = kvt_layout_block_bytes(&l);
    tu_fresh_dir(root, sizeof root, "tier_prefetch");
    run("uring", 0);
    setenv("KVT_IO_NO_URING", "1", 1);
    run("pool", 1);
    tu_rm_tree(root);
    printf("ok\n");
    return 0;
}
