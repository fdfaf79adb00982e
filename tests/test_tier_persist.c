// ctest: labels=unit timeout=120
/*
 * test_tier_persist — write-through, kvt_flush and a warm restart after a clean close.
 *
 * An engine with a data directory (nvme + disk tiers) stores random prompts (token and key
 * namespaces, two tenants, shared prefixes and branches), flushes, and is closed; a second
 * engine opened on the same directory must match every prompt in full and read it back
 * byte-identical from the persistent tiers (DRAM starts empty), report where each block is,
 * and keep serving puts. Also: a close without an explicit flush persists everything, and
 * the whole sequence runs once on io_uring and once on the pread/pwrite pool
 * (kvt_options_set_io_force_pool), checking the backend name in the stats.
 * Fails if write-through, flush, the catalog records, the restart rebuild, or a verified
 * read from nvme breaks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define BT 16u
#define NP 24   /* prompts per namespace */
#define MAXB 12 /* blocks per prompt */

static tu_rng rng;
static char root[512];

/* 2*2*16*2*64*2 = 16 KiB per block */
static kvt_layout layout(void) { return tu_layout(2, 2, 64, KVT_DTYPE_FP16, BT); }

typedef struct prompt {
    uint32_t tok[MAXB * BT];
    uint64_t keys[MAXB];
    size_t nb;
    unsigned char *data; /* [nb][bb] */
} prompt;

static uint64_t bb;

static kvt_engine *open_engine(const char *dir, int pool, uint64_t dram_blocks)
{
    tu_tier_cfg c = {.dram_bytes = dram_blocks * bb, .nvme_bytes = 4096 * bb,
                     .disk_bytes = 64ull << 20, .pool = pool, .cuda_pin = 1};
    return tu_tier_engine(dir, &c);
}

static void gen(prompt *p, const prompt *share)
{
    p->nb = 1 + tu_below(&rng, MAXB);
    size_t keep = 0;
    if (share && tu_below(&rng, 2)) { /* share a prefix, then branch */
        keep = tu_below(&rng, share->nb + 1);
        if (keep > p->nb)
            keep = p->nb;
        memcpy(p->tok, share->tok, keep * BT * sizeof(uint32_t));
        memcpy(p->keys, share->keys, keep * sizeof(uint64_t));
    }
    for (size_t i = keep * BT; i < p->nb * BT; i++)
        p->tok[i] = (uint32_t)tu_next(&rng);
    for (size_t i = keep; i < p->nb; i++)
        p->keys[i] = tu_next(&rng);
    p->data = malloc(p->nb * bb);
    TU_CHECK(p->data);
    if (keep)
        memcpy(p->data, share->data, keep * bb);
    tu_fill(&rng, p->data + keep * bb, (p->nb - keep) * bb);
}

static void put(kvt_ns *ns, const prompt *p, int keys)
{
    const void *ptr[MAXB];
    for (size_t i = 0; i < p->nb; i++)
        ptr[i] = p->data + i * bb;
    int rc = keys ? kvt_put_keys(ns, p->keys, p->nb, ptr, NULL)
                  : kvt_put(ns, p->tok, p->nb * BT, ptr, NULL);
    TU_CHECK_EQ(rc, 0);
}

/* The prompt matches in full and reads back byte-identical. Returns blocks per tier. */
static void verify(kvt_ns *ns, const prompt *p, int keys, unsigned tiers[4])
{
    kvt_lease *l = NULL;
    size_t m = 0;
    int rc = keys ? kvt_match_keys(ns, p->keys, p->nb, &m, &l)
                  : kvt_match(ns, p->tok, p->nb * BT, &m, &l);
    TU_CHECK_EQ(rc, 0);
    TU_CHECK_EQ(m, keys ? p->nb : p->nb * BT);
    TU_CHECK(l != NULL);
    for (size_t i = 0; i < p->nb; i++) {
        kvt_tier t;
        TU_CHECK_EQ(kvt_lease_block_tier(l, i, &t), 0);
        TU_CHECK(t >= KVT_TIER_DRAM && t <= KVT_TIER_DISK);
        tiers[t]++;
    }
    unsigned char *out = malloc(p->nb * bb);
    TU_CHECK(out);
    memset(out, 0xee, p->nb * bb);
    rc = kvt_read_contig(l, 0, p->nb, out, p->nb * bb);
    if (rc)
        fprintf(stderr, "read: %s\n", kvt_strerror(rc));
    TU_CHECK_EQ(rc, 0);
    TU_CHECK(memcmp(out, p->data, p->nb * bb) == 0);
    for (size_t i = 0; i < p->nb; i++) { /* now promoted: DRAM */
        kvt_tier t;
        TU_CHECK_EQ(kvt_lease_block_tier(l, i, &t), 0);
        TU_CHECK_EQ(t, KVT_TIER_DRAM);
    }
    free(out);
    kvt_release(l);
}

static void run(int pool, int explicit_flush)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/d%d%d", root, pool, explicit_flush);
    kvt_layout l = layout();
    static prompt P[2][NP], K[NP];
    kvt_engine *e = open_engine(dir, pool, 4096);
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.persistent, 1);
    TU_CHECK_EQ(s.namespaces, 0);
    if (pool)
        TU_CHECK(strcmp(s.io_backend, "pool") == 0);
    else
        TU_CHECK(strcmp(s.io_backend, "io_uring") == 0 || strcmp(s.io_backend, "pool") == 0);
    printf("backend %s, flush %d\n", s.io_backend, explicit_flush);

    kvt_ns *ns[2], *nk;
    TU_CHECK_EQ(kvt_ns_open(e, "llama", "alice", &l, 0, &ns[0]), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "llama", "bob", &l, 0, &ns[1]), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "keys", "alice", &l, KVT_NS_KEYS, &nk), 0);
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < NP; i++) {
            gen(&P[t][i], i ? &P[t][tu_below(&rng, (uint64_t)i)] : NULL);
            put(ns[t], &P[t][i], 0);
        }
    for (int i = 0; i < NP; i++) {
        gen(&K[i], i ? &K[tu_below(&rng, (uint64_t)i)] : NULL);
        put(nk, &K[i], 1);
    }
    uint64_t cached = tu_stats(e).blocks_cached;
    if (explicit_flush) {
        TU_CHECK_EQ(kvt_flush(e), 0);
        s = tu_stats(e);
        TU_CHECK_EQ(s.unpersisted_blocks, 0);
        TU_CHECK_EQ(s.persisted_blocks, cached);
        TU_CHECK_EQ(s.tier_blocks[KVT_TIER_NVME], cached);
        TU_CHECK_EQ(s.tier_writes[KVT_TIER_NVME], cached);
        TU_CHECK(s.flushes == 1);
    }
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    /* warm restart */
    e = open_engine(dir, pool, 4096);
    s = tu_stats(e);
    TU_CHECK_EQ(s.namespaces, 3);
    TU_CHECK_EQ(s.blocks_cached, cached);
    TU_CHECK_EQ(s.restored_blocks, cached);
    TU_CHECK_EQ(s.restore_dropped, 0);
    TU_CHECK_EQ(s.dram_used, 0);
    kvt_ns *ns2[2], *nk2;
    TU_CHECK_EQ(kvt_ns_open(e, "llama", "alice", &l, 0, &ns2[0]), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "llama", "bob", &l, 0, &ns2[1]), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "keys", "alice", &l, KVT_NS_KEYS, &nk2), 0);
    /* the layout is part of the namespace's identity across restarts */
    kvt_layout other = l;
    other.head_dim = 32;
    kvt_ns *bad = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "llama", "alice", &other, 0, &bad), KVT_EBADLAYOUT);
    unsigned tiers[4] = {0};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < NP; i++)
            verify(ns2[t], &P[t][i], 0, tiers);
    for (int i = 0; i < NP; i++)
        verify(nk2, &K[i], 1, tiers);
    TU_CHECK(tiers[KVT_TIER_NVME] > 0); /* the first touch of each block came from nvme */
    s = tu_stats(e);
    TU_CHECK_EQ(s.checksum_failures, 0);
    TU_CHECK(s.tier_reads[KVT_TIER_NVME] == cached);
    TU_CHECK(s.promotions == cached);
    /* still serving: a new prompt persists and survives another restart */
    prompt q;
    gen(&q, &P[0][0]);
    put(ns2[0], &q, 0);
    TU_CHECK_EQ(kvt_flush(e), 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    e = open_engine(dir, pool, 4096);
    TU_CHECK_EQ(kvt_ns_open(e, "llama", "alice", &l, 0, &ns2[0]), 0);
    verify(ns2[0], &q, 0, tiers);
    verify(ns2[0], &P[0][0], 0, tiers);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    free(q.data);
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < NP; i++)
            free(P[t][i].data);
    for (int i = 0; i < NP; i++)
        free(K[i].data);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_tier_persist", 3));
    kvt_layout l = layout();
    bb = kvt_layout_block_bytes(&l);
    tu_fresh_dir(root, sizeof root, "tier_persist");
    run(0, 1);
    run(1, 1);
    run(0, 0);
    tu_rm_tree(root);
    printf("ok\n");
    return 0;
}
