// ctest: labels=unit timeout=120
/*
 * test_sim — the data-free simulation mode (kvt_options_set_simulate, engine/sim.c).
 *
 *  - size: 1 TiB DRAM + 1 TiB nvme + 1 TiB disk of 64 MiB blocks (Llama-3-8B, 512-token
 *    blocks), and 256 GiB of DRAM alone, open without mapping anything: 3 TiB of puts later
 *    VmRSS has grown by less than 64 MiB (the side tables: 16,384 slots × 8 bytes per tier).
 *  - placement, hand-counted: DRAM 2 blocks, nvme 2 blocks, disk 3 blocks (2 MiB blocks),
 *    1-block sequences 1..8 put in order at t = 1..8 s. Each put writes through to nvme;
 *    a full nvme moves its least recently used block to disk; a full DRAM frees the DRAM
 *    copy of its least recently used (persisted) block; a full disk drops its least
 *    recently used block (its last copy). After 8 puts: DRAM {7, 8}, nvme {7, 8},
 *    disk {4, 5, 6}, dropped {1, 2, 3}. A match then reports those tiers; kvt_read returns
 *    -ENODATA and promotes 4 into DRAM (evicting DRAM's least recently used copy, 7's: it
 *    stays on nvme).
 *  - quotas and tenants hold in every simulated tier.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define SEC 1000000000ull
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)

static long vmrss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static kvt_stats stats(kvt_engine *e)
{
    kvt_stats s;
    memset(&s, 0, sizeof s);
    TU_CHECK_EQ(kvt_engine_stats(e, &s, sizeof s), 0);
    return s;
}

static kvt_engine *open_sim(uint64_t dram, uint64_t nvme, uint64_t disk)
{
    kvt_options *o;
    kvt_engine *e;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_simulate(o, 1), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, dram), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_NVME, NULL, nvme, 0), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_DISK, NULL, disk, 0), 0);
    TU_CHECK_EQ(kvt_engine_open(o, &e), 0);
    kvt_options_destroy(o);
    return e;
}

static void test_big(void)
{
    kvt_layout l = {.layers = 32, .kv_heads = 8, .head_dim = 128, .dtype = KVT_DTYPE_BF16,
                    .block_tokens = 512};
    TU_CHECK_EQ(kvt_layout_block_bytes(&l), 64 * MiB);
    long rss0 = vmrss_kib();
    kvt_engine *e = open_sim(256 * GiB, 0, 0);
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, KVT_NS_KEYS, &ns), 0);
    kvt_stats s = stats(e);
    TU_CHECK_EQ(s.dram_capacity, 256 * GiB);
    TU_CHECK_EQ(s.simulate, 1);
    kvt_engine_close(e);

    e = open_sim(TiB, TiB, TiB);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, KVT_NS_KEYS, &ns), 0);
    /* 3 TiB + 1 block of puts: 49,153 blocks in sequences of 64 */
    const uint64_t per = 64, nseq = (3 * TiB / (64 * MiB)) / per + 1;
    uint64_t keys[64];
    for (uint64_t q = 0; q < nseq; q++) {
        for (uint64_t i = 0; i < per; i++)
            keys[i] = (q << 20) | (i + 1);
        size_t st = 0;
        TU_CHECK_EQ(kvt_engine_set_clock(e, (q + 1) * SEC), 0);
        TU_CHECK_EQ(kvt_put_keys(ns, keys, per, NULL, &st), 0);
        TU_CHECK_EQ(st, per);
    }
    s = stats(e);
    long rss1 = vmrss_kib();
    printf("sim 1 TiB x 3: dram %llu/%llu GiB, nvme %llu/%llu GiB, disk %llu/%llu GiB; "
           "blocks %llu, demotions %llu, evicted %llu; VmRSS %ld -> %ld KiB\n",
           (unsigned long long)(s.tier_used[1] >> 30), (unsigned long long)(s.tier_capacity[1] >> 30),
           (unsigned long long)(s.tier_used[2] >> 30), (unsigned long long)(s.tier_capacity[2] >> 30),
           (unsigned long long)(s.tier_used[3] >> 30), (unsigned long long)(s.tier_capacity[3] >> 30),
           (unsigned long long)s.blocks_cached, (unsigned long long)s.demotions,
           (unsigned long long)s.blocks_evicted, rss0, rss1);
    TU_CHECK_EQ(s.tier_capacity[KVT_TIER_DRAM], TiB);
    TU_CHECK_EQ(s.tier_capacity[KVT_TIER_NVME], TiB);
    TU_CHECK_EQ(s.tier_capacity[KVT_TIER_DISK], TiB);
    TU_CHECK_EQ(s.tier_used[KVT_TIER_DRAM], TiB);
    TU_CHECK_EQ(s.tier_used[KVT_TIER_NVME], TiB);
    TU_CHECK(s.tier_used[KVT_TIER_DISK] > TiB - 64 * 64 * MiB);
    TU_CHECK(s.demotions > 0 && s.blocks_evicted > 0);
    TU_CHECK(rss0 > 0 && rss1 - rss0 < 64 * 1024);
    /* reads: no data, in simulation */
    size_t m = 0;
    kvt_lease *ls = NULL;
    TU_CHECK_EQ(kvt_match_keys(ns, keys, per, &m, &ls), 0);
    TU_CHECK_EQ(m, per);
    static char buf[1];
    void *dst[1] = {buf};
    TU_CHECK_EQ(kvt_read(ls, 0, 1, dst), -ENODATA);
    kvt_release(ls);
    TU_CHECK_EQ(kvt_flush(e), 0);
    kvt_engine_close(e);
}

static kvt_tier tier_of(kvt_ns *ns, uint64_t key)
{
    size_t m = 0;
    TU_CHECK_EQ(kvt_match_keys(ns, &key, 1, &m, NULL), 0);
    if (!m)
        return KVT_TIER_HBM; /* "not cached" */
    kvt_lease *l = NULL;
    TU_CHECK_EQ(kvt_match_keys(ns, &key, 1, &m, &l), 0);
    kvt_tier t;
    TU_CHECK_EQ(kvt_lease_block_tier(l, 0, &t), 0);
    kvt_release(l);
    return t;
}

static void test_placement(void)
{
    kvt_layout l = {.layers = 32, .kv_heads = 8, .head_dim = 128, .dtype = KVT_DTYPE_BF16,
                    .block_tokens = 16};
    const uint64_t bb = 2 * MiB;
    kvt_engine *e = open_sim(2 * bb, 2 * bb, 3 * bb);
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, KVT_NS_KEYS, &ns), 0);
    for (uint64_t k = 1; k <= 8; k++) {
        size_t st = 0;
        TU_CHECK_EQ(kvt_engine_set_clock(e, k * SEC), 0);
        TU_CHECK_EQ(kvt_put_keys(ns, &k, 1, NULL, &st), 0);
        TU_CHECK_EQ(st, 1);
    }
    kvt_stats s = stats(e);
    TU_CHECK_EQ(s.tier_blocks[KVT_TIER_DRAM], 2);
    TU_CHECK_EQ(s.tier_blocks[KVT_TIER_NVME], 2);
    TU_CHECK_EQ(s.tier_blocks[KVT_TIER_DISK], 3);
    TU_CHECK_EQ(s.blocks_cached, 5);
    TU_CHECK_EQ(s.blocks_evicted, 3);
    TU_CHECK_EQ(s.persisted_blocks, 8);
    /* measure first (tier_of's leased match touches, so read 4 last) */
    static const int want[9] = {0, 0, 0, 0, KVT_TIER_DISK, KVT_TIER_DISK, KVT_TIER_DISK,
                                KVT_TIER_DRAM, KVT_TIER_DRAM};
    for (uint64_t k = 1; k <= 3; k++)
        TU_CHECK_EQ(tier_of(ns, k), KVT_TIER_HBM);
    for (uint64_t k = 5; k <= 8; k++)
        TU_CHECK_EQ(tier_of(ns, k), want[k]);
    /* 7 and 8 were touched by tier_of after 5, 6; now read 4: promoted into DRAM */
    uint64_t k4 = 4;
    size_t m = 0;
    kvt_lease *ls = NULL;
    TU_CHECK_EQ(kvt_engine_set_clock(e, 20 * SEC), 0);
    TU_CHECK_EQ(kvt_match_keys(ns, &k4, 1, &m, &ls), 0);
    TU_CHECK_EQ(m, 1);
    kvt_tier t;
    TU_CHECK_EQ(kvt_lease_block_tier(ls, 0, &t), 0);
    TU_CHECK_EQ(t, KVT_TIER_DISK);
    static char buf[1];
    void *dst[1] = {buf};
    TU_CHECK_EQ(kvt_read(ls, 0, 1, dst), -ENODATA);
    TU_CHECK_EQ(kvt_lease_block_tier(ls, 0, &t), 0);
    TU_CHECK_EQ(t, KVT_TIER_DRAM);
    kvt_release(ls);
    s = stats(e);
    TU_CHECK_EQ(s.promotions, 1);
    TU_CHECK_EQ(s.tier_reads[KVT_TIER_DISK], 1);
    TU_CHECK_EQ(tier_of(ns, 7), KVT_TIER_NVME); /* DRAM copy freed for 4, nvme copy kept */
    kvt_engine_close(e);
    printf("placement: dram {7,8} nvme {7,8} disk {4,5,6} dropped {1,2,3}; read promotes\n");
}

static void test_quota(void)
{
    kvt_layout l = {.layers = 32, .kv_heads = 8, .head_dim = 128, .dtype = KVT_DTYPE_BF16,
                    .block_tokens = 16};
    const uint64_t bb = 2 * MiB;
    kvt_engine *e = open_sim(8 * bb, 8 * bb, 0);
    kvt_ns *a, *b;
    TU_CHECK_EQ(kvt_tenant_set_quota(e, "a", KVT_TIER_NVME, 2 * bb), 0);
    TU_CHECK_EQ(kvt_tenant_set_quota(e, "b", KVT_TIER_NVME, 6 * bb), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, KVT_NS_KEYS, &a), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "b", &l, KVT_NS_KEYS, &b), 0);
    for (uint64_t k = 1; k <= 5; k++) {
        size_t st;
        TU_CHECK_EQ(kvt_put_keys(a, &k, 1, NULL, &st), 0);
    }
    for (uint64_t k = 1; k <= 6; k++) {
        size_t st;
        TU_CHECK_EQ(kvt_put_keys(b, &k, 1, NULL, &st), 0);
    }
    kvt_stats s = stats(e);
    /* a holds 2 nvme slots (its quota), b 6: neither evicted the other's */
    TU_CHECK_EQ(s.tier_blocks[KVT_TIER_NVME], 8);
    TU_CHECK_EQ(s.tier_used[KVT_TIER_NVME], 8 * bb);
    kvt_engine_close(e);
    printf("quota: nvme quotas per tenant hold in simulation\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_big();
    test_placement();
    test_quota();
    printf("test_sim: ok\n");
    return 0;
}
