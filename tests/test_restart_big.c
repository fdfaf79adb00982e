// ctest: labels=unit timeout=300
/*
 * test_restart_big — warm restart at scale (issue 3): store >= 10^4 blocks over several
 * namespaces (four namespaces of two tenants), flush, close, reopen, and check that
 * every block is restored, matches in full and reads back byte-identical; then a second
 * close/reopen cycle (restart of a restarted engine) checks the same again.
 * Small blocks (4 KiB) keep it to seconds; nvme holds half of the data, so the write-through
 * moves the older half to disk and the blocks end up spread over nvme and disk. KVT_SEED.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define BT 16u
#define NNS 4
#define PROMPTS_PER_NS 560
#define MAXB 8

typedef struct prompt {
    uint32_t tok[MAXB * BT];
    size_t nb;
    size_t off; /* into g_data */
} prompt;

static prompt P[NNS][PROMPTS_PER_NS];
static unsigned char *g_data;
static uint64_t bb;
static size_t total_blocks;

static const char *ns_name[NNS] = {"a", "b", "c", "d"};
static const char *tn_name[NNS] = {"t0", "t0", "t1", "t1"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static kvt_engine *open_engine(const char *dir)
{
    tu_tier_cfg c = {.dram_bytes = 16384 * bb, .nvme_bytes = 6000 * bb, .disk_bytes = 512ull << 20,
                     .backpressure_ms = 20000};
    return tu_tier_engine(dir, &c);
}

static void open_all(kvt_engine *e, kvt_ns **ns)
{
    kvt_layout l = tu_layout(1, 1, 64, KVT_DTYPE_FP16, BT);
    for (int k = 0; k < NNS; k++)
        TU_CHECK_EQ(kvt_ns_open(e, ns_name[k], tn_name[k], &l, 0, &ns[k]), 0);
}

static size_t verify(kvt_ns **ns)
{
    size_t blocks = 0;
    unsigned char *out = malloc(MAXB * bb);
    TU_CHECK(out);
    for (int k = 0; k < NNS; k++)
        for (int i = 0; i < PROMPTS_PER_NS; i++) {
            const prompt *p = &P[k][i];
            kvt_lease *l = NULL;
            size_t m = 0;
            TU_CHECK_EQ(kvt_match(ns[k], p->tok, p->nb * BT, &m, &l), 0);
            if (m != p->nb * BT) {
                fprintf(stderr, "ns %s prompt %d: %zu of %zu tokens matched\n", ns_name[k], i, m,
                        p->nb * BT);
                exit(1);
            }
            TU_CHECK_EQ(kvt_read_contig(l, 0, p->nb, out, p->nb * bb), 0);
            if (memcmp(out, g_data + p->off, p->nb * bb) != 0) {
                fprintf(stderr, "ns %s prompt %d: bytes differ\n", ns_name[k], i);
                exit(1);
            }
            kvt_release(l);
            blocks += p->nb;
        }
    free(out);
    return blocks;
}

int main(void)
{
    kvt_layout l = tu_layout(1, 1, 64, KVT_DTYPE_FP16, BT);
    bb = kvt_layout_block_bytes(&l);
    uint64_t seed = tu_seed("test_restart_big", 3);
    tu_rng r;
    tu_rng_init(&r, seed);
    g_data = malloc((size_t)NNS * PROMPTS_PER_NS * MAXB * bb);
    TU_CHECK(g_data);
    size_t off = 0;
    for (int k = 0; k < NNS; k++)
        for (int i = 0; i < PROMPTS_PER_NS; i++) {
            prompt *p = &P[k][i];
            p->nb = 1 + tu_below(&r, MAXB);
            if (p->nb < 3)
                p->nb += 3; /* 4..8 blocks: >= 10^4 blocks in all */
            p->off = off;
            tu_fill_tokens(&r, p->tok, p->nb * BT);
            tu_fill(&r, g_data + off, p->nb * bb);
            off += p->nb * bb;
            total_blocks += p->nb;
        }
    TU_CHECK(total_blocks >= 10000);

    char dir[512];
    tu_fresh_dir(dir, sizeof dir, "restart_big");
    double t0 = now_s();
    kvt_engine *e = open_engine(dir);
    kvt_ns *ns[NNS];
    open_all(e, ns);
    for (int k = 0; k < NNS; k++)
        for (int i = 0; i < PROMPTS_PER_NS; i++) {
            const prompt *p = &P[k][i];
            const void *ptr[MAXB];
            for (size_t b = 0; b < p->nb; b++)
                ptr[b] = g_data + p->off + b * bb;
            TU_CHECK_EQ(kvt_put(ns[k], p->tok, p->nb * BT, ptr, NULL), 0);
        }
    TU_CHECK_EQ(kvt_flush(e), 0);
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.blocks_cached, total_blocks);
    TU_CHECK_EQ(s.persisted_blocks, total_blocks);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    double t1 = now_s();

    for (int cycle = 0; cycle < 2; cycle++) {
        double a = now_s();
        e = open_engine(dir);
        double b = now_s();
        open_all(e, ns);
        s = tu_stats(e);
        TU_CHECK_EQ(s.restored_blocks, total_blocks);
        TU_CHECK_EQ(s.restore_dropped, 0);
        TU_CHECK_EQ(s.blocks_cached, total_blocks);
        size_t n = verify(ns);
        TU_CHECK_EQ(n, total_blocks);
        s = tu_stats(e);
        TU_CHECK_EQ(s.checksum_failures, 0);
        TU_CHECK_EQ(s.io_errors, 0);
        printf("cycle %d: reopen %.3f s, %zu blocks restored and verified (%llu nvme, %llu "
               "disk) in %.3f s\n",
               cycle, b - a, n, (unsigned long long)s.tier_blocks[KVT_TIER_NVME],
               (unsigned long long)s.tier_blocks[KVT_TIER_DISK], now_s() - b);
        TU_CHECK_EQ(kvt_engine_close(e), 0);
    }
    printf("stored %zu blocks in %d namespaces (2 tenants) in %.3f s\nok\n", total_blocks, NNS,
           t1 - t0);
    tu_rm_tree(dir);
    free(g_data);
    return 0;
}
