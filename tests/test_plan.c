// ctest: labels=unit timeout=60
/*
 * test_plan — kvt_lease_plan: load or recompute each matched block, on hand-computed cases.
 *
 * Llama-3-8B, 16-token blocks of 2 MiB. Recomputing block i (positions 16i .. 16i+15):
 *   r_i = (2·8.03e9·16 + 4·32·4096·(16·16i + 136)) / 494.5e12 s   (0.5198 ms at i = 0)
 * Loading from DRAM: 12 µs + 2 MiB / 55.2 GB/s = 12 + 38.0 µs; from the default disk:
 * 10 ms + 2 MiB / 0.2 GB/s = 10 + 10.5 ms: slower than recomputing the whole prompt.
 *
 * Case 1 (simulated engine, DRAM 2 blocks, disk 8 blocks, no nvme): a 4-block prompt is
 * pushed out of DRAM (to disk) by two other prompts; blocks 2 and 3 are read back (promoted
 * to DRAM). The plan loads 2, 3 from DRAM and recomputes 0, 1 rather than wait on the disk:
 *   load_s = 12e-6 + 2 × 2 MiB / 55.2e9,  compute_s = r_0 + r_1,  total = max(both).
 * Case 2: the same lease with a disk as fast as DRAM (kvt_options_set_tier_perf on disk,
 * 55.2e9 B/s, latency 10 ms still): 4 loads take 10 ms + 152 µs > 4 recomputes (2.08 ms),
 * so the plan still recomputes the disk blocks — latency, not bandwidth, rules small loads.
 * Case 3: a suffix of 4096 tokens (≈ 135 ms of compute) hides every load: all 4 loaded.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define SEC 1000000000ull
#define MiB (1ull << 20)

static double r_i(unsigned i)
{
    return (2 * 8.03e9 * 16 + 4.0 * 32 * 4096 * (16.0 * 16 * i + 136)) / 494.5e12;
}

static int close_to(double a, double b) { return fabs(a - b) <= 1e-9 + 1e-9 * fabs(b); }

static kvt_engine *open_sim(double disk_bw)
{
    kvt_options *o;
    kvt_engine *e;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_simulate(o, 1), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, 2 * 2 * MiB), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_NVME, NULL, 0, 0), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_DISK, NULL, 8 * 2 * MiB, 0), 0);
    if (disk_bw > 0)
        TU_CHECK_EQ(kvt_options_set_tier_perf(o, KVT_TIER_DISK, disk_bw, disk_bw), 0);
    TU_CHECK_EQ(kvt_engine_open(o, &e), 0);
    kvt_options_destroy(o);
    return e;
}

static void run(double disk_bw, size_t suffix, int want_load[4])
{
    kvt_layout l = {.layers = 32, .kv_heads = 8, .head_dim = 128, .dtype = KVT_DTYPE_BF16,
                    .block_tokens = 16};
    kvt_engine *e = open_sim(disk_bw);
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
    uint32_t tok[3][64];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 64; i++)
            tok[s][i] = (uint32_t)(s * 1000 + i);
    size_t st, m;
    TU_CHECK_EQ(kvt_engine_set_clock(e, 1 * SEC), 0);
    TU_CHECK_EQ(kvt_put(ns, tok[0], 32, NULL, &st), 0); /* 2 blocks, then extended */
    TU_CHECK_EQ(kvt_put(ns, tok[0], 64, NULL, &st), 0);
    TU_CHECK_EQ(kvt_put(ns, tok[1], 32, NULL, &st), 0);
    TU_CHECK_EQ(kvt_put(ns, tok[2], 32, NULL, &st), 0);
    kvt_lease *ls = NULL;
    TU_CHECK_EQ(kvt_match(ns, tok[0], 64, &m, &ls), 0);
    TU_CHECK_EQ(m, 64);
    static char b1[1];
    void *dst[2] = {b1, b1};
    TU_CHECK_EQ(kvt_read(ls, 2, 2, dst), -ENODATA); /* promotes 2, 3 */
    kvt_tier t;
    for (size_t i = 0; i < 4; i++) {
        TU_CHECK_EQ(kvt_lease_block_tier(ls, i, &t), 0);
        TU_CHECK_EQ(t, i < 2 ? KVT_TIER_DISK : KVT_TIER_DRAM);
    }
    kvt_plan p;
    kvt_plan_block pb[4];
    TU_CHECK_EQ(kvt_lease_plan(NULL, NULL, 0, &p, pb), -EINVAL);
    TU_CHECK_EQ(kvt_lease_plan(ls, NULL, suffix, &p, pb), 0);
    double all = r_i(0) + r_i(1) + r_i(2) + r_i(3), sfx = 0;
    if (suffix) /* positions 64 .. 64+suffix-1 */
        sfx = (2 * 8.03e9 * suffix + 4.0 * 32 * 4096 * (suffix * 64.0 + suffix * (suffix + 1.0) / 2)) / 494.5e12;
    TU_CHECK(close_to(p.all_recompute_s, all + sfx));
    TU_CHECK(p.total_s <= p.all_recompute_s);
    size_t nl = 0;
    double comp = sfx, load = 0, lat = 0;
    for (int i = 0; i < 4; i++) {
        TU_CHECK_EQ(pb[i].load, want_load[i]);
        TU_CHECK_EQ(pb[i].tier, i < 2 ? KVT_TIER_DISK : KVT_TIER_DRAM);
        nl += (size_t)want_load[i];
        if (want_load[i]) {
            double bw = i < 2 ? (disk_bw > 0 ? disk_bw : 0.2e9) : 55.2e9;
            double l8 = i < 2 ? 10e-3 : 12e-6;
            load += 2.0 * MiB / bw;
            lat = lat > l8 ? lat : l8;
        } else {
            comp += r_i((unsigned)i);
        }
    }
    TU_CHECK_EQ(p.n_load, nl);
    TU_CHECK_EQ(p.n_recompute, 4 - nl);
    TU_CHECK(close_to(p.compute_s, comp));
    TU_CHECK(close_to(p.load_s, nl ? lat + load : 0));
    TU_CHECK(close_to(p.total_s, fmax(p.load_s, p.compute_s)));
    printf("disk %.3g B/s, suffix %zu: load %d%d%d%d, load %.1f us, compute %.1f us, "
           "total %.1f us vs all-recompute %.1f us\n",
           disk_bw > 0 ? disk_bw : 0.2e9, suffix, pb[0].load, pb[1].load, pb[2].load,
           pb[3].load, p.load_s * 1e6, p.compute_s * 1e6, p.total_s * 1e6,
           p.all_recompute_s * 1e6);
    kvt_release(ls);
    kvt_engine_close(e);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int c1[4] = {0, 0, 1, 1};
    run(0, 0, c1);
    run(55.2e9, 0, c1);
    int c3[4] = {1, 1, 1, 1};
    run(0, 4096, c3);
    /* tier descriptors */
    kvt_engine *e = open_sim(0);
    kvt_tier_info ti[4];
    size_t n = 0;
    TU_CHECK_EQ(kvt_engine_tiers(e, ti, 4, &n), 0);
    TU_CHECK_EQ(n, 3); /* hbm (modeled), dram, disk */
    TU_CHECK_EQ(ti[1].tier, KVT_TIER_DRAM);
    TU_CHECK_EQ(ti[1].capacity, 4 * MiB);
    TU_CHECK_EQ(ti[2].tier, KVT_TIER_DISK);
    TU_CHECK(close_to(ti[2].drain_s, 16.0 * MiB / 0.2e9));
    kvt_engine_close(e);
    printf("test_plan: ok\n");
    return 0;
}
