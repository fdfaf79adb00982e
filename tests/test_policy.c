// ctest: labels=unit timeout=120
/*
 * test_policy — placement policies (kvt_options_set_policy) and TTL hints (kvt_put_ex).
 *
 * Hand-built histories where lru, lfu and drain pick different victims:
 *  - lfu: A, B, C stored; C used 5 times, then A once, then B once. LRU order (stale first)
 *    is C, A, B: lru evicts C. Counts are C 6, A 2, B 2 (A's aged a little more): lfu
 *    evicts A. Both in a DRAM-only engine (engine.c's victim search) and a simulated one
 *    (tiering.c's).
 *  - drain (simulated clock, Llama-3-8B, 2 MiB blocks): X stored at t=0 and used at t=1,
 *    t=2 (gap 1 s), Y stored at t=100; at t=101 a third block needs room. X idles 99 s:
 *    reuse t = 99 s, keeping it costs 2.3e-9 $/s × 99 + 4.2e-8 = 2.7e-7 $ < recompute
 *    4.3e-7 $: worth keeping. Y has no history: t = prior 300 s, 7.3e-7 $ > 4.3e-7 $: the
 *    cost model would rather recompute it. lru evicts X (stalest), drain evicts Y.
 *  - drain at put: with the 8B model and no hint every block is cheaper to recompute than
 *    to keep for 300 s (recompute 0.52 ms of GPU vs 2 MiB held): nothing is written through
 *    (sim and a real data directory: persisted_blocks 0; lru persists every block). With
 *    Llama-3-70B (5 MiB blocks, recompute 4.6 ms), a "5m" hint lands on nvme (1.58e-6 $ vs
 *    DRAM 1.80e-6 $), its DRAM copy freed once persisted; a "30s" hint stays in DRAM.
 *  - drain, online (marginal) model, the default, with nvme below DRAM (simulated, 2 MiB
 *    blocks, DRAM 2 blocks): A stored at t=0, used at 1 s and 2 s (gap 1 s); B stored at
 *    3 s; C at 4 s needs room. Both are on nvme (written through at put), so the DRAM
 *    victim only loses its DRAM copy. lru demotes A (stalest). drain ranks by value density
 *    (DRAM saving - nvme saving) × $/s / (bytes × t): A's t = max(1 s, idle 2 s) = 2 s, B's
 *    t = the 300 s prior: B is demoted. At 5 s A is requested: a DRAM hit for drain, an
 *    nvme hit for lru; both hit (same hit rate), and the load plan of drain's lease is
 *    cheaper (DRAM 0.05 ms against lru's nvme load 0.80 ms, which the plan declines for the
 *    0.52 ms recompute). Regression: before issue 4's fix drain's DRAM eviction demoted the
 *    stalest persisted block whatever the pick (a scan of the DRAM list), i.e. A.
 *  - regression (issue 4): an unbacked never-reused block is dropped, the hot block stays in
 *    DRAM, a fresh block does not push a sooner-reused one out of a full nvme
 *    (test_drain_drops_unbacked);
 *    the real engine demotes under drain and reads everything back (test_drain_real_demotes).
 *  - pins and tenants: a pinned lfu victim is skipped; tenant B's puts never evict A's.
 *  - TTL: expired blocks are misses and are dropped when a match reaches them; the deadline
 *    slides with use.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define SEC 1000000000ull

static kvt_layout lay_8b(uint32_t bt)
{
    return (kvt_layout){.layers = 32, .kv_heads = 8, .head_dim = 128, .dtype = KVT_DTYPE_BF16,
                        .block_tokens = bt};
}

static kvt_layout lay_70b(void)
{
    return (kvt_layout){.layers = 80, .kv_heads = 8, .head_dim = 128, .dtype = KVT_DTYPE_BF16,
                        .block_tokens = 16};
}

static kvt_stats stats(kvt_engine *e)
{
    kvt_stats s;
    memset(&s, 0, sizeof s);
    TU_CHECK_EQ(kvt_engine_stats(e, &s, sizeof s), 0);
    return s;
}

/* key namespace: sequence "id" is the one key {id} */
static int put1(kvt_ns *ns, uint64_t id, const void *const *blk)
{
    size_t st = 0;
    return kvt_put_keys(ns, &id, 1, blk, &st);
}

static size_t hit1(kvt_ns *ns, uint64_t id)
{
    size_t m = 0;
    kvt_lease *l = NULL;
    TU_CHECK_EQ(kvt_match_keys(ns, &id, 1, &m, &l), 0);
    kvt_release(l);
    return m;
}

static size_t peek1(kvt_ns *ns, uint64_t id)
{
    size_t m = 0;
    TU_CHECK_EQ(kvt_match_keys(ns, &id, 1, &m, NULL), 0);
    return m;
}

/* A history of reuse every second: id stored at t = 0, used at 1 s and 2 s (simulated clock). */
static void put_used_twice(kvt_engine *e, kvt_ns *ns, uint64_t id)
{
    TU_CHECK_EQ(kvt_engine_set_clock(e, 1), 0);
    TU_CHECK_EQ(put1(ns, id, NULL), 0);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 1 * SEC), 0);
    TU_CHECK_EQ(hit1(ns, id), 1);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 2 * SEC), 0);
    TU_CHECK_EQ(hit1(ns, id), 1);
}

static kvt_engine *open_small(const char *policy, int sim, uint64_t cap_blocks, uint64_t bb)
{
    kvt_options *o;
    kvt_engine *e;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, cap_blocks * bb), 0);
    TU_CHECK_EQ(kvt_options_set_dram_slot_bytes(o, bb), 0);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, KVT_HUGEPAGES_OFF), 0);
    TU_CHECK_EQ(kvt_options_set_cuda_pin(o, 0), 0);
    TU_CHECK_EQ(kvt_options_set_policy(o, policy), 0);
    /* the hand-built drain cases below use the capacity-priced model (hold cost per B·s) */
    TU_CHECK_EQ(kvt_options_set_capacity_priced(o, !strcmp(policy, "drain")), 0);
    if (sim) {
        TU_CHECK_EQ(kvt_options_set_simulate(o, 1), 0);
        TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_DISK, NULL, 0, 0), 0);
    }
    TU_CHECK_EQ(kvt_engine_open(o, &e), 0);
    kvt_options_destroy(o);
    return e;
}

static void test_options(void)
{
    kvt_options *o;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_policy(o, "lru"), 0);
    TU_CHECK_EQ(kvt_options_set_policy(o, "lfu"), 0);
    TU_CHECK_EQ(kvt_options_set_policy(o, "drain"), 0);
    TU_CHECK_EQ(kvt_options_set_policy(o, "arc"), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_policy(o, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_policy(NULL, "lru"), -EINVAL);
    kvt_model_desc m = {0};
    TU_CHECK_EQ(kvt_options_set_model(o, &m), -EINVAL);
    kvt_model_desc_llama3_70b(&m);
    TU_CHECK_EQ(kvt_options_set_model(o, &m), 0);
    TU_CHECK_EQ(kvt_options_set_tier_perf(o, KVT_TIER_HBM, 1, 1), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_tier_perf(o, KVT_TIER_DISK, -1, 1), -EINVAL);
    kvt_options_destroy(o);
    double t = 0;
    TU_CHECK_EQ(kvt_ttl_parse("5m", &t), 0);
    TU_CHECK(t == 300);
    TU_CHECK_EQ(kvt_ttl_parse("5x", &t), -EINVAL);
    /* 8B, 16 tokens at 0: (2·8.03e9·16 + 4·32·4096·136) / 494.5e12 = 0.5197 ms */
    kvt_model_desc_llama3_8b(&m);
    double r = kvt_recompute_seconds(&m, 0, 16);
    TU_CHECK(r > 0.000519 && r < 0.000521);
    printf("options: policy names, model, perf, ttl parse, recompute %.4f ms\n", r * 1e3);
}

static void test_lfu(int sim)
{
    const char *pol[2] = {"lru", "lfu"};
    const uint64_t bb = 512;
    kvt_layout l = {.layers = 2, .kv_heads = 2, .head_dim = 8, .dtype = KVT_DTYPE_FP16,
                    .block_tokens = 4};
    static char data[512];
    const void *blk[1] = {data};
    for (int p = 0; p < 2; p++) {
        kvt_engine *e = open_small(pol[p], sim, 3, bb);
        kvt_ns *ns;
        TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, KVT_NS_KEYS, &ns), 0);
        uint64_t now = 1;
        if (sim)
            TU_CHECK_EQ(kvt_engine_set_clock(e, now), 0);
        TU_CHECK_EQ(put1(ns, 'A', blk), 0);
        TU_CHECK_EQ(put1(ns, 'B', blk), 0);
        TU_CHECK_EQ(put1(ns, 'C', blk), 0);
        for (int i = 0; i < 5; i++) {
            if (sim)
                TU_CHECK_EQ(kvt_engine_set_clock(e, now += SEC), 0);
            TU_CHECK_EQ(hit1(ns, 'C'), 1);
        }
        if (sim)
            TU_CHECK_EQ(kvt_engine_set_clock(e, now += SEC), 0);
        TU_CHECK_EQ(hit1(ns, 'A'), 1);
        if (sim)
            TU_CHECK_EQ(kvt_engine_set_clock(e, now += SEC), 0);
        TU_CHECK_EQ(hit1(ns, 'B'), 1);
        TU_CHECK_EQ(put1(ns, 'D', blk), 0);
        uint64_t gone = p == 0 ? 'C' : 'A';
        TU_CHECK_EQ(peek1(ns, gone), 0);
        for (uint64_t k = 'A'; k <= 'D'; k++)
            if (k != gone)
                TU_CHECK_EQ(peek1(ns, k), 1);
        /* pins: with C's... pin A (lfu's next victim would be B now: counts A gone) */
        kvt_engine_close(e);
        printf("%s %s: evicts %c\n", sim ? "sim" : "dram", pol[p], (char)gone);
    }
}

/* lfu never evicts a pinned block, and never another tenant's */
static void test_lfu_pins_tenants(void)
{
    const uint64_t bb = 512;
    kvt_layout l = {.layers = 2, .kv_heads = 2, .head_dim = 8, .dtype = KVT_DTYPE_FP16,
                    .block_tokens = 4};
    static char data[512];
    const void *blk[1] = {data};
    kvt_engine *e = open_small("lfu", 0, 4, bb);
    kvt_ns *a, *b;
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "ta", 2 * bb), 0);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "tb", 2 * bb), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "ta", &l, KVT_NS_KEYS, &a), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "tb", &l, KVT_NS_KEYS, &b), 0);
    TU_CHECK_EQ(put1(a, 1, blk), 0);
    TU_CHECK_EQ(put1(a, 2, blk), 0);
    TU_CHECK_EQ(hit1(a, 2), 1);
    TU_CHECK_EQ(hit1(a, 2), 1); /* 1 is the lfu victim ... */
    uint64_t one = 1;
    size_t m;
    kvt_lease *pin = NULL;
    TU_CHECK_EQ(kvt_match_keys(a, &one, 1, &m, &pin), 0); /* ... but pinned */
    TU_CHECK_EQ(put1(a, 3, blk), 0);
    TU_CHECK_EQ(peek1(a, 1), 1);
    TU_CHECK_EQ(peek1(a, 2), 0);
    kvt_release(pin);
    for (uint64_t k = 10; k < 20; k++) /* tenant b churns: a keeps its blocks */
        TU_CHECK_EQ(put1(b, k, blk), 0);
    TU_CHECK_EQ(peek1(a, 1), 1);
    TU_CHECK_EQ(peek1(a, 3), 1);
    kvt_engine_close(e);
    printf("lfu: pinned victim skipped, tenants isolated\n");
}

static void test_drain_victim(void)
{
    const char *pol[2] = {"lru", "drain"};
    kvt_layout l = lay_8b(16);
    uint64_t bb = kvt_layout_block_bytes(&l);
    for (int p = 0; p < 2; p++) {
        kvt_engine *e = open_small(pol[p], 1, 2, bb);
        kvt_ns *ns;
        TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, KVT_NS_KEYS, &ns), 0);
        put_used_twice(e, ns, 'X');
        TU_CHECK_EQ(kvt_engine_set_clock(e, 100 * SEC), 0);
        TU_CHECK_EQ(put1(ns, 'Y', NULL), 0);
        TU_CHECK_EQ(kvt_engine_set_clock(e, 101 * SEC), 0);
        TU_CHECK_EQ(put1(ns, 'Z', NULL), 0);
        uint64_t gone = p == 0 ? 'X' : 'Y';
        TU_CHECK_EQ(peek1(ns, gone), 0);
        TU_CHECK_EQ(peek1(ns, gone == 'X' ? 'Y' : 'X'), 1);
        TU_CHECK_EQ(peek1(ns, 'Z'), 1);
        kvt_engine_close(e);
        printf("sim %s: evicts %c\n", pol[p], (char)gone);
    }
}

static kvt_engine *open_tiered(const char *policy, const char *dir, const kvt_model_desc *m,
                               uint64_t dram, uint64_t nvme)
{
    kvt_options *o;
    kvt_engine *e;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, dram), 0);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, KVT_HUGEPAGES_OFF), 0);
    TU_CHECK_EQ(kvt_options_set_cuda_pin(o, 0), 0);
    TU_CHECK_EQ(kvt_options_set_policy(o, policy), 0);
    /* the hand-built drain cases below use the capacity-priced model (hold cost per B·s) */
    TU_CHECK_EQ(kvt_options_set_capacity_priced(o, !strcmp(policy, "drain")), 0);
    if (m)
        TU_CHECK_EQ(kvt_options_set_model(o, m), 0);
    if (dir) {
        TU_CHECK_EQ(kvt_options_set_data_dir(o, dir), 0);
        TU_CHECK_EQ(kvt_options_set_io_force_pool(o, 1), 0);
    } else {
        TU_CHECK_EQ(kvt_options_set_simulate(o, 1), 0);
    }
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_NVME, NULL, nvme, 0), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_DISK, NULL, 0, 0), 0);
    int rc = kvt_engine_open(o, &e);
    kvt_options_destroy(o);
    if (rc == -EINVAL || rc == -EOPNOTSUPP)
        TU_SKIP("no persistent engine here (%s)", kvt_strerror(rc));
    TU_CHECK_EQ(rc, 0);
    return e;
}

static char *tmpdir(const char *name)
{
    const char *base = getenv("KVT_TEST_DIR");
    static char buf[1024];
    char cmd[4200];
    snprintf(buf, sizeof buf, "%s/policy-%s-%d", base ? base : "/tmp", name, (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", buf, buf);
    TU_CHECK_EQ(system(cmd), 0);
    return buf;
}

static void rmdir_r(const char *d)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    TU_CHECK_EQ(system(cmd), 0);
}

/* drain at put: 8B blocks are cheaper to recompute than to keep 300 s: no write-through */
static void test_drain_skip_wt(void)
{
    kvt_layout l = lay_8b(16);
    uint64_t bb = kvt_layout_block_bytes(&l);
    uint32_t tok[16 * 4];
    for (unsigned i = 0; i < 64; i++)
        tok[i] = i + 7;
    char *buf = calloc(4, bb);
    TU_CHECK(buf);
    const void *blk[4] = {buf, buf + bb, buf + 2 * bb, buf + 3 * bb};
    for (int real = 0; real < 2; real++)
        for (int p = 0; p < 2; p++) {
            const char *pol = p ? "drain" : "lru";
            char *dir = real ? tmpdir(pol) : NULL;
            kvt_engine *e = open_tiered(pol, dir, NULL, 8 * bb, 64 * bb);
            kvt_ns *ns;
            size_t st = 0;
            TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
            TU_CHECK_EQ(kvt_put(ns, tok, 64, real ? blk : NULL, &st), 0);
            TU_CHECK_EQ(st, 4);
            TU_CHECK_EQ(kvt_flush(e), 0);
            kvt_stats s = stats(e);
            TU_CHECK_EQ(s.persisted_blocks, p ? 0 : 4);
            TU_CHECK_EQ(s.tier_blocks[KVT_TIER_NVME], p ? 0 : 4);
            TU_CHECK_EQ(s.tier_blocks[KVT_TIER_DRAM], 4);
            /* still served from DRAM */
            size_t m = 0;
            kvt_lease *ls = NULL;
            TU_CHECK_EQ(kvt_match(ns, tok, 64, &m, &ls), 0);
            TU_CHECK_EQ(m, 64);
            kvt_release(ls);
            TU_CHECK_EQ(kvt_engine_close(e), 0);
            if (dir)
                rmdir_r(dir);
            printf("%s %s: %llu of 4 blocks written through\n", real ? "real" : "sim", pol,
                   (unsigned long long)s.persisted_blocks);
        }
    free(buf);
}

/* drain at put with Llama-3-70B: "5m" lands on nvme (DRAM copy freed), "30s" stays in DRAM */
static void test_drain_ttl_placement(void)
{
    kvt_model_desc m;
    kvt_model_desc_llama3_70b(&m);
    kvt_layout l = lay_70b();
    uint64_t bb = kvt_layout_block_bytes(&l);
    TU_CHECK_EQ(bb, 5ull << 20);
    uint32_t tok[32];
    char *buf = calloc(2, bb);
    TU_CHECK(buf);
    const void *blk[2] = {buf, buf + bb};
    for (int real = 0; real < 2; real++) {
        char *dir = real ? tmpdir("ttl") : NULL;
        kvt_engine *e = open_tiered("drain", dir, &m, 16 * bb, 16 * bb);
        kvt_ns *ns;
        TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
        const char *ttl[2] = {"5m", "30s"};
        for (int k = 0; k < 2; k++) {
            for (unsigned i = 0; i < 32; i++)
                tok[i] = 1000u * (k + 1) + i;
            kvt_put_opts po = {.ttl = ttl[k]};
            size_t st = 0;
            TU_CHECK_EQ(kvt_put_ex(ns, tok, 32, real ? blk : NULL, &po, &st), 0);
            TU_CHECK_EQ(st, 2);
            TU_CHECK_EQ(kvt_flush(e), 0);
            size_t mt = 0;
            kvt_lease *ls = NULL;
            TU_CHECK_EQ(kvt_match(ns, tok, 32, &mt, &ls), 0);
            TU_CHECK_EQ(mt, 32);
            for (size_t i = 0; i < 2; i++) {
                kvt_tier t;
                TU_CHECK_EQ(kvt_lease_block_tier(ls, i, &t), 0);
                TU_CHECK_EQ(t, k == 0 ? KVT_TIER_NVME : KVT_TIER_DRAM);
            }
            if (real && k == 0) { /* and it reads back from nvme */
                char *out = malloc(bb);
                TU_CHECK(out);
                void *dst[1] = {out};
                TU_CHECK_EQ(kvt_read(ls, 0, 1, dst), 0);
                free(out);
            }
            kvt_release(ls);
        }
        kvt_stats s = stats(e);
        TU_CHECK(s.demotions >= 2);
        TU_CHECK_EQ(kvt_engine_close(e), 0);
        if (dir)
            rmdir_r(dir);
        printf("%s drain 70B: \"5m\" -> nvme, \"30s\" -> dram\n", real ? "real" : "sim");
    }
    free(buf);
}

static void test_ttl(void)
{
    kvt_layout l = {.layers = 2, .kv_heads = 2, .head_dim = 8, .dtype = KVT_DTYPE_FP16,
                    .block_tokens = 4};
    uint64_t bb = kvt_layout_block_bytes(&l);
    /* simulated clock */
    kvt_engine *e = open_small("lru", 1, 16, bb);
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, KVT_NS_KEYS, &ns), 0);
    uint64_t k2[2] = {1, 2};
    kvt_put_opts po = {.ttl_s = 10};
    size_t st = 0, m = 0;
    TU_CHECK_EQ(kvt_engine_set_clock(e, 1), 0);
    TU_CHECK_EQ(kvt_put_keys_ex(ns, k2, 2, NULL, &po, &st), 0);
    TU_CHECK_EQ(st, 2);
    kvt_put_opts bad = {.ttl = "ten"};
    TU_CHECK_EQ(kvt_put_keys_ex(ns, k2, 2, NULL, &bad, &st), -EINVAL);
    kvt_lease *ls = NULL;
    TU_CHECK_EQ(kvt_engine_set_clock(e, 9 * SEC), 0);
    TU_CHECK_EQ(kvt_match_keys(ns, k2, 2, &m, &ls), 0); /* slides to 19 s */
    TU_CHECK_EQ(m, 2);
    kvt_release(ls);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 18 * SEC), 0);
    TU_CHECK_EQ(kvt_match_keys(ns, k2, 2, &m, NULL), 0);
    TU_CHECK_EQ(m, 2);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 20 * SEC), 0);
    TU_CHECK_EQ(kvt_match_keys(ns, k2, 2, &m, &ls), 0);
    TU_CHECK_EQ(m, 0);
    TU_CHECK(ls == NULL);
    kvt_stats s = stats(e);
    TU_CHECK_EQ(s.blocks_cached, 0); /* dropped lazily by that match */
    /* a block without TTL stays */
    TU_CHECK_EQ(kvt_put_keys(ns, k2, 2, NULL, &st), 0);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 100000 * SEC), 0);
    TU_CHECK_EQ(kvt_match_keys(ns, k2, 2, &m, NULL), 0);
    TU_CHECK_EQ(m, 2);
    kvt_engine_close(e);

    /* real clock, DRAM engine: 50 ms TTL */
    e = open_small("lfu", 0, 16, bb);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, KVT_NS_KEYS, &ns), 0);
    static char data[2][512];
    const void *blk[2] = {data[0], data[1]};
    po.ttl_s = 0.05;
    TU_CHECK_EQ(kvt_put_keys_ex(ns, k2, 2, blk, &po, &st), 0);
    TU_CHECK_EQ(kvt_match_keys(ns, k2, 2, &m, NULL), 0);
    TU_CHECK_EQ(m, 2);
    usleep(120000);
    TU_CHECK_EQ(kvt_match_keys(ns, k2, 2, &m, NULL), 0);
    TU_CHECK_EQ(m, 0);
    kvt_engine_close(e);
    printf("ttl: sliding deadline, expiry is a miss and drops the blocks\n");
}

/* Simulated DRAM + nvme engine, default (online) model, one key namespace of layout l. */
static kvt_engine *open_sim_nvme(const char *pol, uint64_t dram_blocks, uint64_t nvme_blocks,
                                 const kvt_layout *l, kvt_ns **ns)
{
    uint64_t bb = kvt_layout_block_bytes(l);
    kvt_options *o;
    kvt_engine *e;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_simulate(o, 1), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, dram_blocks * bb), 0);
    TU_CHECK_EQ(kvt_options_set_dram_slot_bytes(o, bb), 0);
    TU_CHECK_EQ(kvt_options_set_policy(o, pol), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_NVME, NULL, nvme_blocks * bb, 0), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_DISK, NULL, 0, 0), 0);
    TU_CHECK_EQ(kvt_engine_open(o, &e), 0);
    kvt_options_destroy(o);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", l, KVT_NS_KEYS, ns), 0);
    return e;
}

static kvt_tier tier1(kvt_ns *ns, uint64_t id)
{
    size_t m = 0;
    kvt_lease *ls = NULL;
    kvt_tier t = (kvt_tier)-1;
    TU_CHECK_EQ(kvt_match_keys(ns, &id, 1, &m, &ls), 0);
    TU_CHECK_EQ(m, 1);
    TU_CHECK_EQ(kvt_lease_block_tier(ls, 0, &t), 0);
    kvt_release(ls);
    return t;
}

/* drain (online model) keeps the block lru demotes; same hit, cheaper plan (header) */
static void test_drain_keeps_dram(void)
{
    kvt_layout l = lay_8b(16);
    double total[2];
    for (int p = 0; p < 2; p++) {
        const char *pol = p ? "drain" : "lru";
        kvt_ns *ns;
        kvt_engine *e = open_sim_nvme(pol, 2, 64, &l, &ns);
        put_used_twice(e, ns, 'A');
        TU_CHECK_EQ(kvt_engine_set_clock(e, 3 * SEC), 0);
        TU_CHECK_EQ(put1(ns, 'B', NULL), 0);
        TU_CHECK_EQ(kvt_engine_set_clock(e, 4 * SEC), 0);
        TU_CHECK_EQ(put1(ns, 'C', NULL), 0);
        kvt_stats s = stats(e);
        TU_CHECK_EQ(s.tier_blocks[KVT_TIER_NVME], 3); /* every block written through */
        TU_CHECK_EQ(s.tier_blocks[KVT_TIER_DRAM], 2);
        TU_CHECK_EQ(kvt_engine_set_clock(e, 5 * SEC), 0);
        uint64_t id = 'A';
        size_t m = 0;
        kvt_lease *ls = NULL;
        kvt_tier tier;
        kvt_plan plan;
        TU_CHECK_EQ(kvt_match_keys(ns, &id, 1, &m, &ls), 0);
        TU_CHECK_EQ(m, 1); /* a hit under both policies */
        TU_CHECK_EQ(kvt_lease_block_tier(ls, 0, &tier), 0);
        TU_CHECK_EQ(tier, p ? KVT_TIER_DRAM : KVT_TIER_NVME);
        TU_CHECK_EQ(kvt_lease_plan(ls, NULL, 0, &plan, NULL), 0);
        total[p] = plan.total_s;
        kvt_release(ls);
        /* B is the one drain moved out of DRAM */
        id = 'B';
        TU_CHECK_EQ(kvt_match_keys(ns, &id, 1, &m, &ls), 0);
        TU_CHECK_EQ(m, 1);
        TU_CHECK_EQ(kvt_lease_block_tier(ls, 0, &tier), 0);
        TU_CHECK_EQ(tier, p ? KVT_TIER_NVME : KVT_TIER_DRAM);
        kvt_release(ls);
        kvt_engine_close(e);
        printf("sim %s (online model): A from %s, plan %.3f ms\n", pol, p ? "dram" : "nvme",
               total[p] * 1e3);
    }
    TU_CHECK(total[1] < 0.5 * total[0]);
}

/*
 * Regression (issue 4, drain lost DRAM hits to lru on the Mooncake trace): DRAM 2 blocks,
 * nvme 1 (2 MiB blocks). A put at 0 s; B put at 1 s: its write-through evicts A's nvme copy
 * (A stays in DRAM, now backed by nothing); B used at 2 s and 3 s (gap 1 s); C put at 4 s
 * needs DRAM room. drain's pick is A (never reused: t = the 300 s prior, density 0.52 ms /
 * 300 s against B's 0.31 ms / 1 s): A is dropped. C is not written through: the full nvme
 * would push out B, expected back in 1 s, for C's 300 s prior (C stays in DRAM, unbacked).
 * The old rule skipped an unbacked pick and demoted the stalest persisted block, B: the hot
 * block was then served from nvme. At 5 s B must be a DRAM hit, C cached, A gone.
 */
static void test_drain_drops_unbacked(void)
{
    kvt_layout l = lay_8b(16);
    kvt_ns *ns;
    kvt_engine *e = open_sim_nvme("drain", 2, 1, &l, &ns);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 1), 0);
    TU_CHECK_EQ(put1(ns, 'A', NULL), 0);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 1 * SEC), 0);
    TU_CHECK_EQ(put1(ns, 'B', NULL), 0);
    kvt_stats s = stats(e);
    TU_CHECK_EQ(s.tier_blocks[KVT_TIER_NVME], 1); /* B's; A's copy was evicted */
    TU_CHECK_EQ(s.tier_blocks[KVT_TIER_DRAM], 2);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 2 * SEC), 0);
    TU_CHECK_EQ(hit1(ns, 'B'), 1);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 3 * SEC), 0);
    TU_CHECK_EQ(hit1(ns, 'B'), 1);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 4 * SEC), 0);
    TU_CHECK_EQ(put1(ns, 'C', NULL), 0);
    TU_CHECK_EQ(kvt_engine_set_clock(e, 5 * SEC), 0);
    TU_CHECK_EQ(peek1(ns, 'A'), 0);
    TU_CHECK_EQ(tier1(ns, 'B'), KVT_TIER_DRAM);
    TU_CHECK_EQ(peek1(ns, 'C'), 1);
    s = stats(e);
    TU_CHECK_EQ(s.persisted_blocks, 2); /* A, B; C refused (B is expected back sooner) */
    TU_CHECK_EQ(s.tier_blocks[KVT_TIER_NVME], 1);
    /* At 400 s B has idled 397 s, longer than the prior: D is written through, pushing B
     * out of nvme (B lost its DRAM copy to D first: lower density than unbacked C). */
    TU_CHECK_EQ(kvt_engine_set_clock(e, 400 * SEC), 0);
    TU_CHECK_EQ(put1(ns, 'D', NULL), 0);
    s = stats(e);
    TU_CHECK_EQ(s.persisted_blocks, 3);
    TU_CHECK_EQ(peek1(ns, 'B'), 0);
    TU_CHECK_EQ(peek1(ns, 'C'), 1);
    TU_CHECK_EQ(tier1(ns, 'D'), KVT_TIER_DRAM);
    kvt_engine_close(e);
    printf("sim drain (online model): unbacked A dropped, hot B kept in DRAM and on nvme\n");
}

/* The real engine (a data directory, O_DIRECT nvme) under drain's DRAM eviction: 12 blocks
 * through a DRAM of 4, flushed between chunks so that each eviction finds persisted blocks to
 * demote; every block still matches and reads back its own bytes, from DRAM or nvme. */
static void test_drain_real_demotes(void)
{
    kvt_layout l = lay_8b(16);
    uint64_t bb = kvt_layout_block_bytes(&l);
    char *dir = tmpdir("real-demote");
    kvt_options *o;
    kvt_engine *e;
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, 4 * bb), 0);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, KVT_HUGEPAGES_OFF), 0);
    TU_CHECK_EQ(kvt_options_set_cuda_pin(o, 0), 0);
    TU_CHECK_EQ(kvt_options_set_policy(o, "drain"), 0);
    TU_CHECK_EQ(kvt_options_set_data_dir(o, dir), 0);
    TU_CHECK_EQ(kvt_options_set_io_force_pool(o, 1), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_NVME, NULL, 64 * bb, 0), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_DISK, NULL, 0, 0), 0);
    int rc = kvt_engine_open(o, &e);
    kvt_options_destroy(o);
    if (rc == -EINVAL || rc == -EOPNOTSUPP)
        TU_SKIP("no persistent engine here (%s)", kvt_strerror(rc));
    TU_CHECK_EQ(rc, 0);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, KVT_NS_KEYS, &ns), 0);
    enum { N = 12 };
    uint64_t keys[N];
    char *buf = malloc(N * bb), *got = malloc(bb);
    TU_CHECK(buf && got);
    const void *blk[N];
    for (unsigned i = 0; i < N; i++) {
        keys[i] = 1000 + i;
        memset(buf + i * bb, (int)(i + 1), bb);
        blk[i] = buf + i * bb;
    }
    for (unsigned c = 0; c < N; c += 4) { /* one chain, 4 blocks per put */
        size_t st = 0;
        TU_CHECK_EQ(kvt_put_keys(ns, keys, c + 4, blk, &st), 0);
        TU_CHECK_EQ(kvt_flush(e), 0);
    }
    size_t m = 0;
    kvt_lease *ls = NULL;
    TU_CHECK_EQ(kvt_match_keys(ns, keys, N, &m, &ls), 0);
    TU_CHECK_EQ(m, N);
    unsigned on_nvme = 0;
    for (unsigned i = 0; i < N; i++) {
        kvt_tier t;
        void *dst[1] = {got};
        TU_CHECK_EQ(kvt_lease_block_tier(ls, i, &t), 0);
        on_nvme += t == KVT_TIER_NVME;
        TU_CHECK_EQ(kvt_read(ls, i, 1, dst), 0);
        TU_CHECK(memcmp(got, buf + i * bb, bb) == 0);
    }
    kvt_release(ls);
    kvt_stats s = stats(e);
    TU_CHECK(on_nvme >= N - 4);
    TU_CHECK(s.demotions >= N - 4);
    TU_CHECK_EQ(s.blocks_evicted, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    rmdir_r(dir);
    free(buf);
    free(got);
    printf("real drain: %u of %d blocks read back from nvme after demotion, all verified\n",
           on_nvme, N);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_options();
    test_lfu(0);
    test_lfu(1);
    test_lfu_pins_tenants();
    test_drain_victim();
    test_drain_skip_wt();
    test_drain_ttl_placement();
    test_drain_keeps_dram();
    test_drain_drops_unbacked();
    test_drain_real_demotes();
    test_ttl();
    printf("test_policy: ok\n");
    return 0;
}
