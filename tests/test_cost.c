// ctest: labels=unit timeout=60
/*
 * test_cost.c — the placement cost model (evict/cost.h) and the policies (evict/reuse.h) on
 * hand-computed cases, the rule of thumb on the default tiers and on a balanced hierarchy,
 * TTL hints, and the load plan against a brute-force optimum.
 *
 * `test_cost -v` prints the worked-example table of docs/cost-model.md.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "evict/cost.h"
#include "evict/reuse.h"
#include "testutil.h"
#include "util/util.h"

#define MIB (1ull << 20)

static int near(double a, double b, double rel)
{
    if (isinf(a) || isinf(b))
        return a == b;
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + 1e-300;
}
#define TU_NEAR(a, b, rel)                                                                 \
    do {                                                                                   \
        double tn_a_ = (a), tn_b_ = (b);                                                   \
        if (!near(tn_a_, tn_b_, rel)) {                                                    \
            fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g\n", __FILE__, __LINE__, #a,   \
                    tn_a_, tn_b_);                                                         \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

enum { HBM, DRAM, NVME, DISK };

/* ---------------------------------------------------------------- defaults */
static void test_defaults(void)
{
    evict_costmodel cm;
    evict_costmodel_default(&cm);
    TU_CHECK_EQ(evict_costmodel_check(&cm), 0);
    TU_CHECK_EQ(cm.n_tiers, 4);
    /* drain = capacity / min(read, link):
     *   hbm  80 GiB = 85.90e9 B / 2,950e9 B/s = 29.1 ms
     *   dram 256 GiB = 274.9e9 / 55.2e9 = 4.98 s
     *   nvme 3.84e12 / 3.0e9 = 1,280 s
     *   disk 16 TiB = 17.59e12 / 0.2e9 = 87,961 s = 24.4 h */
    TU_NEAR(evict_tier_drain_s(&cm.tier[HBM]), 85.899e9 / 2950e9, 1e-4);
    TU_NEAR(evict_tier_drain_s(&cm.tier[DRAM]), 4.9797, 1e-4);
    TU_NEAR(evict_tier_drain_s(&cm.tier[NVME]), 1280.0, 1e-9);
    TU_NEAR(evict_tier_drain_s(&cm.tier[DISK]), 87960.93, 1e-6);
    /* $/B·s: hbm 3/3600/85.9e9 = 9.701e-15; dram 0.004237/3600/2^30 = 1.0961e-15;
     * nvme 0.08/(730·3600)/2^30 = 2.8351e-17; disk 0.015/(730·3600)/2^30 = 5.3158e-18 */
    TU_NEAR(cm.tier[HBM].cost_byte_s, 9.7013e-15, 1e-4);
    TU_NEAR(cm.tier[DRAM].cost_byte_s, 1.09612e-15, 1e-4);
    TU_NEAR(cm.tier[NVME].cost_byte_s, 2.83506e-17, 1e-4);
    TU_NEAR(cm.tier[DISK].cost_byte_s, 5.3158e-18, 1e-4);
    TU_NEAR(evict_tier_kappa(&cm, HBM), 1.0, 1e-12);
    /* load of 2 MiB from dram: 12 µs + 2,097,152 / 55.2e9 = 12 + 37.99 = 49.99 µs */
    TU_NEAR(evict_tier_load_s(&cm.tier[DRAM], 2 * MIB), 49.992e-6, 1e-4);
    TU_CHECK_EQ(evict_tier_load_s(&cm.tier[HBM], 2 * MIB), 0);

    evict_costmodel bad = cm;
    bad.tier[0].resident = 0;
    TU_CHECK_EQ(evict_costmodel_check(&bad), -EINVAL);
    bad = cm;
    bad.tier[2].read_bw = 0;
    TU_CHECK_EQ(evict_costmodel_check(&bad), -EINVAL);
    bad = cm;
    bad.n_tiers = 0;
    TU_CHECK_EQ(evict_costmodel_check(&bad), -EINVAL);
    bad = cm;
    bad.tier[1].cost_byte_s = NAN;
    TU_CHECK_EQ(evict_costmodel_check(&bad), -EINVAL);
}

/* ---------------------------------------------------------------- recompute */
static void test_recompute(void)
{
    evict_costmodel cm;
    evict_model m8;
    evict_costmodel_default(&cm);
    evict_model_llama3_8b(&m8);
    /* 16 tokens at position 0: 2·8.03e9·16 = 2.5696e11, attention 4·32·4096·(0 + 16·17/2)
     * = 524,288·136 = 7.130e7: total 2.57031e11 FLOP; / 494.5e12 FLOP/s = 0.51978 ms */
    TU_NEAR(evict_recompute_flops(&m8, 0, 16), 2.5696e11 + 71303168.0, 1e-12);
    TU_NEAR(evict_recompute_s(&cm, &m8, 0, 16), 2.57031e11 / 494.5e12, 1e-5);
    /* at 32,768: + 524,288·16·32,768 = 2.7488e11: the block costs 2.07x the first one */
    TU_NEAR(evict_recompute_flops(&m8, 32768, 16), 2.5696e11 + 524288.0 * (16 * 32768.0 + 136),
            1e-12);
    TU_CHECK(evict_recompute_s(&cm, &m8, 32768, 16) > 2 * evict_recompute_s(&cm, &m8, 0, 16));
    /* a measured prefill rate overrides: 16 tokens at 10,000 tok/s = 1.6 ms at any position */
    m8.prefill_tok_s = 10000;
    TU_NEAR(evict_recompute_s(&cm, &m8, 99999, 16), 1.6e-3, 1e-12);
}

/* ---------------------------------------------------------------- a toy by hand */
/* GPU $1/s. hbm: 100 B, $0.01/B·s. t1: 1,000 B at 100 B/s, $0.001/B·s. Block of 10 B,
 * recompute 0.5 s.
 *   hbm:       0      + 0.1  t
 *   t1:        0.1    + 0.01 t      (10 B / 100 B/s = 0.1 s × $1/s)
 *   recompute: 0.5
 * hbm = t1 at 0.1 = 0.09 t, t = 1.111 s; t1 = recompute at 0.1 + 0.01 t = 0.5, t = 40 s;
 * hbm = recompute at t = 5 s. */
static void toy(evict_costmodel *cm)
{
    *cm = (evict_costmodel){.gpu_usd_s = 1, .gpu_flops = 1e12, .n_tiers = 2};
    cm->tier[0] = (evict_tier){.name = "hbm", .capacity = 100, .read_bw = 1000,
                               .cost_byte_s = 0.01, .resident = 1};
    cm->tier[1] = (evict_tier){.name = "t1", .capacity = 1000, .read_bw = 100,
                               .cost_byte_s = 0.001};
}

static void test_toy(void)
{
    evict_costmodel cm;
    evict_window w[EVICT_MAX_TIERS + 1];
    double usd;
    toy(&cm);
    TU_CHECK_EQ(evict_costmodel_check(&cm), 0);
    TU_NEAR(evict_option_usd(&cm, 0, 10, 0.5, 2), 0.2, 1e-12);
    TU_NEAR(evict_option_usd(&cm, 1, 10, 0.5, 2), 0.12, 1e-12);
    TU_NEAR(evict_option_usd(&cm, EVICT_RECOMPUTE, 10, 0.5, 2), 0.5, 1e-12);
    TU_CHECK(isnan(evict_option_usd(&cm, 2, 10, 0.5, 2)));
    TU_CHECK_EQ(evict_choose(&cm, 10, 0.5, 1.0, ~0u, &usd), 0);
    TU_NEAR(usd, 0.1, 1e-12);
    TU_CHECK_EQ(evict_choose(&cm, 10, 0.5, 1.2, ~0u, &usd), 1);
    TU_CHECK_EQ(evict_choose(&cm, 10, 0.5, 39, ~0u, NULL), 1);
    TU_CHECK_EQ(evict_choose(&cm, 10, 0.5, 41, ~0u, &usd), EVICT_RECOMPUTE);
    TU_NEAR(usd, 0.5, 1e-12);
    TU_CHECK_EQ(evict_choose(&cm, 10, 0.5, INFINITY, ~0u, NULL), EVICT_RECOMPUTE);
    /* recompute forbidden: t1 even at t = 1,000 s */
    TU_CHECK_EQ(evict_choose(&cm, 10, INFINITY, 1000, ~0u, NULL), 1);
    /* only hbm allowed: at t = 6 s (> 5 s) recompute */
    TU_CHECK_EQ(evict_choose(&cm, 10, 0.5, 6, 1u, NULL), EVICT_RECOMPUTE);
    TU_CHECK_EQ(evict_choose(&cm, 10, 0.5, 4, 1u, NULL), 0);

    TU_CHECK_EQ(evict_breakeven(&cm, 10, 0.5, w), 3);
    TU_NEAR(w[0].lo_s, 0, 0);
    TU_NEAR(w[0].hi_s, 0.1 / 0.09, 1e-12);
    TU_NEAR(w[1].lo_s, 0.1 / 0.09, 1e-12);
    TU_NEAR(w[1].hi_s, 40, 1e-12);
    TU_NEAR(w[2].lo_s, 40, 1e-12);
    TU_CHECK(isinf(w[2].hi_s));
    TU_NEAR(w[0].vs_recompute_s, 5, 1e-12);
    TU_NEAR(w[1].vs_recompute_s, 40, 1e-12);
    TU_CHECK(isnan(w[2].vs_recompute_s));
    /* recompute cheaper than the t1 load (0.05 < 0.1): t1 never wins, its window is empty */
    TU_CHECK_EQ(evict_breakeven(&cm, 10, 0.05, w), 2);
    TU_CHECK(isnan(w[1].lo_s) && isnan(w[1].hi_s));
    TU_CHECK_EQ(w[1].vs_recompute_s, 0);
    TU_NEAR(w[0].hi_s, 0.5, 1e-12);
    TU_NEAR(w[2].lo_s, 0.5, 1e-12);
    /* balance: ($1/s / 100 B/s) / $0.001/B·s = 10 s = drain 10 s / kappa 1 (1 $/s / 1 $/s) */
    TU_NEAR(evict_tier_balance_s(&cm, 1), 10, 1e-12);
    TU_NEAR(evict_tier_kappa(&cm, 1), 1, 1e-12);
    TU_CHECK_EQ(evict_tier_balance_s(&cm, 0), 0);
}

/* The windows must tile [0, inf) and agree with evict_choose at random points. */
static void test_envelope_random(tu_rng *r)
{
    for (int it = 0; it < 2000; it++) {
        evict_costmodel cm;
        evict_window w[EVICT_MAX_TIERS + 1];
        evict_costmodel_default(&cm);
        cm.n_tiers = 1 + (unsigned)tu_below(r, EVICT_MAX_TIERS);
        for (unsigned i = 0; i < cm.n_tiers; i++) {
            evict_tier *t = &cm.tier[i];
            *t = (evict_tier){.name = "x", .capacity = 1 + tu_below(r, 1000000),
                              .read_bw = 1 + (double)tu_below(r, 1000),
                              .link_bw = (double)tu_below(r, 3) * 300,
                              .latency_s = (double)tu_below(r, 3) * 1e-3,
                              .cost_byte_s = (double)tu_below(r, 100) * 1e-6,
                              .resident = i == 0};
        }
        uint64_t bytes = 1 + tu_below(r, 1000);
        double rs = (double)tu_below(r, 50) * 0.1;
        int owners = evict_breakeven(&cm, bytes, rs, w);
        TU_CHECK(owners >= 1);
        /* tiling */
        double t = 0;
        for (int k = 0; k < owners; k++) {
            unsigned found = 0;
            for (unsigned o = 0; o <= cm.n_tiers; o++)
                if (w[o].lo_s == t) {
                    t = w[o].hi_s;
                    found = 1;
                    break;
                }
            TU_CHECK(found);
        }
        TU_CHECK(isinf(t));
        for (int s = 0; s < 20; s++) {
            double x = (double)tu_below(r, 100000) * 1e-2;
            int c = evict_choose(&cm, bytes, rs, x, ~0u, NULL);
            double best = evict_option_usd(&cm, c, bytes, rs, x);
            for (unsigned o = 0; o <= cm.n_tiers; o++) {
                int opt = o == cm.n_tiers ? EVICT_RECOMPUTE : (int)o;
                TU_CHECK(best <= evict_option_usd(&cm, opt, bytes, rs, x) * (1 + 1e-12));
                /* the owner of x's window costs the same as the choice (ties may differ) */
                if (w[o].lo_s <= x && x < w[o].hi_s)
                    TU_NEAR(evict_option_usd(&cm, opt, bytes, rs, x), best, 1e-9);
            }
        }
    }
}

/* ---------------------------------------------------------------- rule of thumb */
static void test_rule_of_thumb(void)
{
    evict_costmodel cm;
    evict_model m70, m8;
    evict_costmodel_default(&cm);
    evict_model_llama3_70b(&m70);
    evict_model_llama3_8b(&m8);
    /* Llama-3-70B, 16-token block = 16 × 320 KiB = 5 MiB, at position 0:
     * recompute 2·70.6e9·16 = 2.259e12 FLOP / 494.5e12 = 4.57 ms = $3.81e-6.
     * Windows (hand, per byte, gpu g = 8.333e-4 $/s):
     *   hbm/dram at 0.107 ms·g / (5.24e6 × (9.70e-15 - 1.10e-15)) = 1.98 s
     *   dram/nvme at (1.848 - 0.107) ms·g / (5.24e6 × (1.096e-15 - 2.8e-17)) = 259 s
     *   nvme/recompute at (4.569 - 1.848) ms·g / (5.24e6 × 2.835e-17) = 15,260 s = 4.2 h
     * Drain times 29 ms, 4.98 s, 1,280 s each land in their own tier's window. */
    uint64_t b70 = 5 * MIB;
    double r70 = evict_recompute_s(&cm, &m70, 0, 16);
    TU_NEAR(r70, (2.2592e12 + 4.0 * 80 * 8192 * 136) / 494.5e12, 1e-4); /* 4.569 ms */
    for (unsigned i = HBM; i <= NVME; i++)
        TU_CHECK_EQ(evict_choose(&cm, b70, r70, evict_tier_drain_s(&cm.tier[i]), ~0u, NULL),
                    (int)i);
    evict_window w[EVICT_MAX_TIERS + 1];
    TU_CHECK_EQ(evict_breakeven(&cm, b70, r70, w), 4);
    TU_NEAR(w[HBM].hi_s, 1.976, 1e-3);
    TU_NEAR(w[DRAM].hi_s, 259.1, 1e-3);
    TU_NEAR(w[NVME].hi_s, 15260, 1e-3);
    /* Deviation 1: the disk. Its 24 h drain time lands on recompute: 5 MiB at 0.2 GB/s is
     * 26 ms + 10 ms latency = 36 ms of GPU waiting, 8x the 4.6 ms recompute. */
    TU_CHECK_EQ(evict_choose(&cm, b70, r70, evict_tier_drain_s(&cm.tier[DISK]), ~0u, NULL),
                EVICT_RECOMPUTE);
    TU_CHECK(isnan(w[DISK].lo_s));
    TU_CHECK_EQ(w[DISK].vs_recompute_s, 0);
    /* Deviation 2: Llama-3-8B's early blocks are cheap to recompute (0.52 ms per 2 MiB block)
     * and a 3 GB/s NVMe load takes 0.80 ms: NVMe never pays, and the 1,280 s NVMe drain time
     * lands on recompute. At position 32k (recompute 1.08 ms) NVMe owns [279 s, 3,877 s). */
    double r8 = evict_recompute_s(&cm, &m8, 0, 16);
    TU_CHECK(evict_tier_load_s(&cm.tier[NVME], 2 * MIB) > r8);
    TU_CHECK_EQ(evict_choose(&cm, 2 * MIB, r8, 1280, ~0u, NULL), EVICT_RECOMPUTE);
    double r8l = evict_recompute_s(&cm, &m8, 32768, 16);
    TU_CHECK_EQ(evict_choose(&cm, 2 * MIB, r8l, 1280, ~0u, NULL), NVME);

    /* A balanced hierarchy: every tier's total price equals the GPU's (kappa = 1), each 10x
     * larger, 15-20x slower. The rule of thumb is exact: the cheapest tier for t = drain(T)
     * is T, the disk included, and the windows are roughly [C_above / bw_T, C_T / bw_below). */
    evict_costmodel bal = cm;
    const uint64_t caps[4] = {80ull << 30, 800ull << 30, 8000ull << 30, 80000ull << 30};
    for (unsigned i = 0; i < 4; i++) {
        bal.tier[i].capacity = caps[i];
        bal.tier[i].latency_s = 0;
        bal.tier[i].cost_byte_s = bal.gpu_usd_s / (double)caps[i];
        TU_NEAR(evict_tier_kappa(&bal, i), 1, 1e-12);
    }
    for (unsigned i = 0; i < 4; i++) {
        double d = evict_tier_drain_s(&bal.tier[i]);
        TU_CHECK_EQ(evict_choose(&bal, b70, INFINITY, d, ~0u, NULL), (int)i);
        if (i)
            TU_NEAR(evict_tier_balance_s(&bal, i), d, 1e-12);
    }
}

/* ---------------------------------------------------------------- too slow: recompute */
static void test_too_slow(void)
{
    evict_costmodel cm;
    evict_model m8;
    evict_costmodel_default(&cm);
    evict_model_llama3_8b(&m8);
    /* Llama-3-8B block 0 (16 tokens, 2 MiB): recompute 0.52 ms; the disk load is
     * 10 ms + 2,097,152 / 0.2e9 = 20.5 ms: 39x slower. With only the disk on offer, recompute
     * wins at every interval, even one of 1 ms when holding is almost free. */
    double r = evict_recompute_s(&cm, &m8, 0, 16);
    TU_NEAR(evict_tier_load_s(&cm.tier[DISK], 2 * MIB), 20.486e-3, 1e-4);
    TU_CHECK_EQ(evict_choose(&cm, 2 * MIB, r, 1e-3, 1u << DISK, NULL), EVICT_RECOMPUTE);
    TU_CHECK_EQ(evict_choose(&cm, 2 * MIB, r, 1e-3, 1u << NVME, NULL), EVICT_RECOMPUTE);
    TU_CHECK_EQ(evict_choose(&cm, 2 * MIB, r, 1e-3, 1u << DRAM, NULL), DRAM);
    /* a disk 100x faster (20 GB/s, 0.1 ms) would beat it: 0.2 ms < 0.52 ms */
    evict_costmodel fast = cm;
    fast.tier[DISK].read_bw = 20e9;
    fast.tier[DISK].latency_s = 1e-4;
    TU_CHECK_EQ(evict_choose(&fast, 2 * MIB, r, 1e-3, 1u << DISK, NULL), DISK);
}

/* ---------------------------------------------------------------- TTL parsing */
static void test_ttl_parse(void)
{
    static const struct {
        const char *s;
        double sec;
    } good[] = {{"5m", 300},    {"1h", 3600},    {"30s", 30},    {"90s", 90},
                {"2h30m", 9000}, {"1d12h", 129600}, {"0h5m", 300}, {"1h0m1s", 3601},
                {"999999999s", 999999999}};
    static const char *const bad[] = {"",    "5",   "m",    "5x",   "5M",   "-5m", "+5m",
                                      "5 m", " 5m", "5m ",  "1.5h", "30m2h", "5m5m", "5s5m",
                                      "0s",  "0h0m", "h5m", "5mm",  "1h-5m", "0x10s"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        double t = -1;
        TU_CHECK_EQ(evict_ttl_parse(good[i].s, &t), 0);
        TU_NEAR(t, good[i].sec, 0);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        double t = -1;
        int rc = evict_ttl_parse(bad[i], &t);
        if (rc != -EINVAL) {
            fprintf(stderr, "ttl \"%s\": %d\n", bad[i], rc);
            exit(1);
        }
        TU_CHECK_EQ(t, -1);
    }
    double t;
    TU_CHECK_EQ(evict_ttl_parse("1234567890s", &t), -ERANGE);
    TU_CHECK_EQ(evict_ttl_parse(NULL, &t), -EINVAL);
    TU_CHECK_EQ(evict_ttl_parse("5m", NULL), -EINVAL);

    evict_policy pol;
    TU_CHECK_EQ(evict_policy_parse("drain", &pol), 0);
    TU_CHECK_EQ(pol, EVICT_POLICY_DRAIN);
    TU_CHECK_EQ(evict_policy_parse("lfu", &pol), 0);
    TU_CHECK_EQ(pol, EVICT_POLICY_LFU);
    TU_CHECK_EQ(evict_policy_parse("LRU", &pol), -EINVAL);
    TU_CHECK(!strcmp(evict_policy_name(EVICT_POLICY_LRU), "lru"));
}

/* ---------------------------------------------------------------- history */
static void test_history(void)
{
    evict_params p;
    evict_hist h;
    evict_params_default(&p);
    p.capacity_priced = 1; /* the sizing model (hold cost per byte-second) */
    /* accesses at 0, 10, 20, 40: gaps 10, 10, 20; EWMA (alpha 0.25): 10, 10, 12.5 */
    evict_hist_init(&h, 0, 0);
    TU_CHECK_EQ(h.hits, 1);
    TU_NEAR(evict_reuse_s(&h, 0, &p), 300, 0); /* the prior */
    TU_NEAR(evict_reuse_s(&h, 1000, &p), 1000, 0); /* idle time bounds it below */
    evict_hist_touch(&h, 10, &p);
    TU_NEAR(h.gap_s, 10, 1e-12);
    evict_hist_touch(&h, 20, &p);
    TU_NEAR(h.gap_s, 10, 1e-12);
    evict_hist_touch(&h, 40, &p);
    TU_NEAR(h.gap_s, 12.5, 1e-12);
    TU_CHECK_EQ(h.hits, 4);
    TU_NEAR(evict_reuse_s(&h, 40, &p), 12.5, 1e-12);
    TU_NEAR(evict_reuse_s(&h, 45, &p), 12.5, 1e-12);
    TU_NEAR(evict_reuse_s(&h, 100, &p), 60, 1e-12);
    TU_CHECK(isinf(evict_hist_deadline_s(&h)));
    /* LFU count: 1 at 0; aged by 2^(-10/600) then +1 at 10, ... */
    double f = 1;
    f = f * exp2(-10.0 / 600) + 1;
    f = f * exp2(-10.0 / 600) + 1;
    f = f * exp2(-20.0 / 600) + 1;
    TU_NEAR(h.freq, f, 1e-12);
    TU_NEAR(evict_lfu_count(&h, 640, &p), f / 2, 1e-12);

    /* TTL: a 5m hint with no history: t = 300; the deadline slides with each access. */
    evict_hist_init(&h, 100, 300);
    TU_NEAR(evict_reuse_s(&h, 100, &p), 300, 0);
    TU_NEAR(evict_reuse_s(&h, 350, &p), 300, 0);
    TU_NEAR(evict_hist_deadline_s(&h), 400, 0);
    TU_CHECK(!evict_hist_expired(&h, 399.9));
    TU_CHECK(evict_hist_expired(&h, 400));
    TU_CHECK(isinf(evict_reuse_s(&h, 400, &p)));
    evict_hist_touch(&h, 390, &p);
    TU_NEAR(evict_hist_deadline_s(&h), 690, 0);
    TU_NEAR(evict_reuse_s(&h, 390, &p), 290, 1e-12); /* one gap of 290 s */
    /* the TTL caps a long history: gaps of 1,000 s under a 5m hint plan for 300 s */
    evict_hist_init(&h, 0, 0);
    evict_hist_touch(&h, 1000, &p);
    h.ttl_s = 300;
    TU_NEAR(evict_reuse_s(&h, 1000, &p), 300, 0);
    /* a zeroed history touched once becomes a fresh block */
    memset(&h, 0, sizeof h);
    evict_hist_touch(&h, 5, &p);
    TU_CHECK_EQ(h.hits, 1);
    TU_NEAR(h.last_s, 5, 0);
}

/* ---------------------------------------------------------------- decisions */
static evict_block block70(const evict_costmodel *cm, uint32_t tiers, double now, double ttl)
{
    evict_model m70;
    evict_model_llama3_70b(&m70);
    evict_block b = {.bytes = 5 * MIB, .recompute_s = evict_recompute_s(cm, &m70, 0, 16),
                     .tiers = tiers};
    evict_hist_init(&b.hist, now, ttl);
    return b;
}

static void test_decide_drain(void)
{
    evict_costmodel cm;
    evict_params p;
    evict_action a;
    double ttl;
    evict_costmodel_default(&cm);
    evict_params_default(&p);
    p.capacity_priced = 1; /* the sizing model (hold cost per byte-second) */

    /* A fresh 70B block in HBM with a "5m" hint and no history: t = 300 s, in NVMe's window
     * [259 s, 15,260 s): at t = 300 NVMe costs 5.24e6·2.835e-17·300 + 1.848 ms·g = 4.5e-8 +
     * 1.540e-6 = $1.585e-6, DRAM 5.24e6·1.096e-15·300 + 0.107 ms·g = 1.724e-6 + 0.089e-6 =
     * $1.813e-6 (14% more: beyond the 10% hysteresis too). Demote to flash, not DRAM. */
    TU_CHECK_EQ(evict_ttl_parse("5m", &ttl), 0);
    evict_block b = block70(&cm, 1u << HBM, 1000, ttl);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 1000, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_DEMOTE);
    TU_CHECK_EQ(a.tier, NVME);
    TU_NEAR(a.reuse_s, 300, 0);
    TU_NEAR(a.usd, 1.585e-6, 1e-3);
    /* sitting in DRAM already: cost 1.813 > 1.1 × 1.585 = 1.744: still moves */
    b.tiers = 1u << DRAM;
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 1000, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_DEMOTE);
    TU_CHECK_EQ(a.tier, NVME);
    /* not stored yet: store it on NVMe */
    b.tiers = 0;
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 1000, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_PROMOTE);
    TU_CHECK_EQ(a.tier, NVME);
    /* "1h": t = 3,600 s, still NVMe ($2.07e-6 < recompute $3.81e-6) */
    TU_CHECK_EQ(evict_ttl_parse("1h", &ttl), 0);
    b = block70(&cm, 1u << HBM, 1000, ttl);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 1000, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_DEMOTE);
    TU_CHECK_EQ(a.tier, NVME);
    /* after the deadline: worthless, drop (wherever it is) */
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 1000 + 3600, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_DROP);
    TU_CHECK_EQ(a.tier, -1);
    TU_CHECK(isinf(a.reuse_s));
    /* ... unless pinned */
    b.pinned = 1;
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 1000 + 3600, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_KEEP);
    TU_CHECK_EQ(a.tier, HBM);

    /* History whose gap equals a tier's drain time lands on that tier: gaps of 5 s (DRAM
     * drain 4.98 s) -> DRAM; gaps of 20 ms (HBM drain 29 ms) -> stays in HBM; gaps of
     * 1,280 s (NVMe drain) -> NVMe. */
    const double gaps[3] = {0.020, 4.98, 1280};
    for (unsigned i = 0; i < 3; i++) {
        b = block70(&cm, 1u << HBM, 0, 0);
        for (int k = 1; k <= 4; k++)
            evict_hist_touch(&b.hist, k * gaps[i], &p);
        double now = 4 * gaps[i];
        TU_CHECK_EQ(evict_decide(&cm, &p, &b, now, &a), 0);
        TU_NEAR(a.reuse_s, gaps[i], 1e-12);
        TU_CHECK_EQ(a.verb, i == HBM ? EVICT_KEEP : EVICT_DEMOTE);
        TU_CHECK_EQ(a.tier, (int)i);
    }
    /* A block in NVMe whose gaps shrink to 1 s: promote to HBM (window [0, 1.98 s)). */
    b = block70(&cm, 1u << NVME, 0, 0);
    for (int k = 1; k <= 4; k++)
        evict_hist_touch(&b.hist, k * 1.0, &p);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 4, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_PROMOTE);
    TU_CHECK_EQ(a.tier, HBM);
    /* Aging without accesses walks it down: idle 100 s -> DRAM, 1,000 s -> NVMe,
     * 20,000 s (> 15,260) -> drop. */
    b.tiers = 1u << HBM;
    const struct {
        double idle;
        evict_verb v;
        int tier;
    } walk[] = {{100, EVICT_DEMOTE, DRAM}, {1000, EVICT_DEMOTE, NVME}, {20000, EVICT_DROP, -1}};
    for (unsigned i = 0; i < 3; i++) {
        TU_CHECK_EQ(evict_decide(&cm, &p, &b, 4 + walk[i].idle, &a), 0);
        TU_CHECK_EQ(a.verb, walk[i].v);
        TU_CHECK_EQ(a.tier, walk[i].tier);
    }
    /* hysteresis: at t = 270 s NVMe ($4.0e-8 + 1.5404e-6 = 1.5806e-6) beats DRAM ($1.5525e-6
     * + 0.0892e-6 = 1.6417e-6) by 3.9%, inside the 10% band: a DRAM block stays; with
     * hysteresis 0 it moves. */
    b = block70(&cm, 1u << DRAM, 0, 270);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 0, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_KEEP);
    TU_CHECK_EQ(a.tier, DRAM);
    p.hysteresis = 0;
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 0, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_DEMOTE);
    TU_CHECK_EQ(a.tier, NVME);

    /* bad input */
    b.tiers = 1u << 4;
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 0, &a), -EINVAL);
    b.tiers = 1;
    p.ewma_alpha = 0;
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 0, &a), -EINVAL);
}

static void test_decide_lru_lfu(void)
{
    evict_costmodel cm;
    evict_params p;
    evict_action a;
    evict_costmodel_default(&cm);
    evict_params_default(&p);
    p.capacity_priced = 1; /* the sizing model (hold cost per byte-second) */
    p.policy = EVICT_POLICY_LRU;

    /* defaults (infinite ages): everything belongs in HBM; a fresh block is stored there */
    evict_block b = block70(&cm, 0, 0, 0);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 0, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_PROMOTE);
    TU_CHECK_EQ(a.tier, HBM);
    /* demoted under pressure to NVMe: a sweep leaves it there; a hit promotes it */
    b.tiers = 1u << NVME;
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 50, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_KEEP);
    TU_CHECK_EQ(a.tier, NVME);
    evict_hist_touch(&b.hist, 60, &p);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 60, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_PROMOTE);
    TU_CHECK_EQ(a.tier, HBM);
    /* an age ladder: HBM below 10 s idle, DRAM below 300 s, NVMe below 3,600 s, else drop */
    p.lru_idle_s[0] = 10;
    p.lru_idle_s[1] = 300;
    p.lru_idle_s[2] = 3600;
    p.lru_idle_s[3] = 3600;
    b.tiers = 1u << HBM;
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 65, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_KEEP);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 100, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_DEMOTE);
    TU_CHECK_EQ(a.tier, DRAM);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 1000, &a), 0);
    TU_CHECK_EQ(a.tier, NVME);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 5000, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_DROP);
    /* TTL applies to every policy */
    b = block70(&cm, 1u << HBM, 0, 30);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 31, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_DROP);

    /* lfu: HBM for aged count >= 3, DRAM >= 1, else drop */
    evict_params_default(&p);
    p.capacity_priced = 1; /* the sizing model (hold cost per byte-second) */
    p.policy = EVICT_POLICY_LFU;
    p.lfu_min_freq[0] = 3;
    p.lfu_min_freq[1] = 1;
    p.lfu_min_freq[2] = p.lfu_min_freq[3] = INFINITY;
    b = block70(&cm, 1u << DRAM, 0, 0);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 0, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_KEEP);
    evict_hist_touch(&b.hist, 1, &p);
    evict_hist_touch(&b.hist, 2, &p); /* count ~2.997 < 3: still DRAM */
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 2, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_KEEP);
    evict_hist_touch(&b.hist, 3, &p); /* ~3.99 */
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 3, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_PROMOTE);
    TU_CHECK_EQ(a.tier, HBM);
    /* count 3.99 aged 1,100 s: 3.99 × 2^(-1100/600) = 1.12 -> DRAM; 1,800 s: 0.50 -> drop */
    b.tiers = 1u << HBM;
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 3 + 1100, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_DEMOTE);
    TU_CHECK_EQ(a.tier, DRAM);
    TU_CHECK_EQ(evict_decide(&cm, &p, &b, 3 + 1800, &a), 0);
    TU_CHECK_EQ(a.verb, EVICT_DROP);
}

static void test_score(void)
{
    evict_costmodel cm;
    evict_params p;
    evict_costmodel_default(&cm);
    evict_params_default(&p);
    p.capacity_priced = 1; /* the sizing model (hold cost per byte-second) */
    /* Three 70B blocks in DRAM, reuse 10 s, 100 s, 300 s (gaps), one with an expired TTL and
     * one pinned. Drain evicts the 300 s block first (it belongs on NVMe: negative density),
     * then 100 s, then 10 s. Densities by hand for 10 s: alt = NVMe (1.5404e-6 + 1.49e-10·10 =
     * $1.5419e-6), here = DRAM ($8.92e-8 + 5.75e-9·10 = $1.467e-7): (1.5419e-6 - 1.467e-7) /
     * (5,242,880 × 10) = 2.661e-14 $/(B·s). */
    double now = 1000, s[5];
    evict_block b[5];
    const double gap[3] = {10, 100, 300};
    for (int i = 0; i < 3; i++) {
        b[i] = block70(&cm, 1u << DRAM, now - 2 * gap[i], 0);
        evict_hist_touch(&b[i].hist, now - gap[i], &p);
        evict_hist_touch(&b[i].hist, now, &p);
    }
    b[3] = block70(&cm, 1u << DRAM, 0, 60);
    b[4] = block70(&cm, 1u << DRAM, 0, 60);
    b[4].pinned = 1;
    for (int i = 0; i < 5; i++)
        s[i] = evict_score(&cm, &p, &b[i], DRAM, now);
    TU_NEAR(s[0], 2.661e-14, 2e-3);
    TU_CHECK(s[2] < 0 && s[2] < s[1] && s[1] < s[0]);
    TU_CHECK(isinf(s[3]) && s[3] < 0);
    TU_CHECK(isinf(s[4]) && s[4] > 0);
    TU_CHECK_EQ(evict_victim_target(&cm, &p, &b[2], DRAM, now), NVME);
    TU_CHECK_EQ(evict_victim_target(&cm, &p, &b[0], DRAM, now), NVME);
    TU_CHECK_EQ(evict_victim_target(&cm, &p, &b[3], DRAM, now), EVICT_RECOMPUTE);
    /* from NVMe the only slower options are disk and recompute: recompute */
    TU_CHECK_EQ(evict_victim_target(&cm, &p, &b[0], NVME, now), EVICT_RECOMPUTE);
    TU_CHECK_EQ(evict_victim_target(&cm, &p, &b[0], 9, now), -EINVAL);
    /* lru: last access time; lfu: aged count */
    p.policy = EVICT_POLICY_LRU;
    b[0].hist.last_s = 5;
    TU_NEAR(evict_score(&cm, &p, &b[0], DRAM, now), 5, 0);
    TU_CHECK_EQ(evict_victim_target(&cm, &p, &b[0], DRAM, now), NVME);
    TU_CHECK_EQ(evict_victim_target(&cm, &p, &b[0], DISK, now), EVICT_RECOMPUTE);
    p.policy = EVICT_POLICY_LFU;
    TU_NEAR(evict_score(&cm, &p, &b[1], DRAM, now), b[1].hist.freq, 1e-12);
    TU_CHECK(isnan(evict_score(&cm, &p, &b[1], 4, now)));
}

/* ---------------------------------------------------------------- load plan */
/* Toy tiers for plans: hbm resident; dram 100 B/s; nvme 10 B/s; no latency. */
static void plan_model(evict_costmodel *cm)
{
    *cm = (evict_costmodel){.gpu_usd_s = 1, .gpu_flops = 1, .n_tiers = 3};
    cm->tier[0] = (evict_tier){.name = "hbm", .capacity = 1000, .read_bw = 1e6, .resident = 1};
    cm->tier[1] = (evict_tier){.name = "dram", .capacity = 1000, .read_bw = 100};
    cm->tier[2] = (evict_tier){.name = "nvme", .capacity = 1000, .read_bw = 10};
}

static void test_plan_hand(void)
{
    evict_costmodel cm;
    evict_plan pl;
    plan_model(&cm);
    /* blocks 100 B each:  b0 hbm R=1;  b1 nvme R=1 (load 10 s);  b2 dram R=2 (load 1 s);
     * b3 dram R=3 (load 1 s);  b4 not cached R=1.  Suffix compute 0.5 s.
     * All-recompute: 0.5 + 1 + 2 + 3 + 1 = 7.5 s (b0 is used in place).
     * Ratio order: b3 (1/3), b2 (1/2), b1 (10).
     *   load {b3}:        max(1, 4.5) = 4.5
     *   load {b3,b2}:     max(2, 2.5) = 2.5   <- best
     *   load {b3,b2,b1}:  max(12, 1.5) = 12
     * The plan recomputes b1 although it is cached and blocks after it are loaded: legal,
     * block 2's KV does not depend on how block 1's was obtained. */
    evict_plan_block blk[5] = {
        {.bytes = 100, .recompute_s = 1, .tier = 0}, {.bytes = 100, .recompute_s = 1, .tier = 2},
        {.bytes = 100, .recompute_s = 2, .tier = 1}, {.bytes = 100, .recompute_s = 3, .tier = 1},
        {.bytes = 100, .recompute_s = 1, .tier = -1},
    };
    TU_CHECK_EQ(evict_plan_match(&cm, blk, 5, 0.5, &pl), 0);
    const int want[5] = {1, 0, 1, 1, 0};
    const double tm[5] = {0, 1, 1, 1, 1};
    for (int i = 0; i < 5; i++) {
        TU_CHECK_EQ(blk[i].load, want[i]);
        TU_NEAR(blk[i].time_s, tm[i], 1e-12);
    }
    TU_NEAR(pl.all_recompute_s, 7.5, 1e-12);
    TU_NEAR(pl.load_s, 2, 1e-12);
    TU_NEAR(pl.compute_s, 2.5, 1e-12);
    TU_NEAR(pl.total_s, 2.5, 1e-12);
    TU_CHECK_EQ(pl.n_load, 3);
    TU_CHECK_EQ(pl.n_recompute, 2);

    /* A 20 s suffix hides every load: b1's 10 s load beats its 1 s recompute because the GPU
     * is busy for 20 s anyway: max(12, 21) = 21 < max(2, 21.5). */
    TU_CHECK_EQ(evict_plan_match(&cm, blk, 5, 20, &pl), 0);
    TU_CHECK_EQ(blk[1].load, 1);
    TU_NEAR(pl.total_s, 21, 1e-12);
    TU_NEAR(pl.load_s, 12, 1e-12);

    /* Latency is paid once per pipeline (the largest of the tiers used): 0.5 s on dram turns
     * {b3,b2} into max(2.5, 2.5) = 2.5, {b3} into max(1.5, 4.5). */
    cm.tier[1].latency_s = 0.5;
    TU_CHECK_EQ(evict_plan_match(&cm, blk, 5, 0.5, &pl), 0);
    TU_NEAR(pl.load_s, 2.5, 1e-12);
    TU_NEAR(pl.total_s, 2.5, 1e-12);

    /* Everything too slow: nothing loaded, total = all-recompute. */
    cm.tier[1].read_bw = 1;
    TU_CHECK_EQ(evict_plan_match(&cm, blk, 5, 0.5, &pl), 0);
    TU_NEAR(pl.total_s, pl.all_recompute_s, 1e-12);
    TU_CHECK_EQ(pl.n_load, 1); /* the resident one */
    TU_NEAR(pl.load_s, 0, 0);

    TU_CHECK_EQ(evict_plan_match(&cm, NULL, 0, 0, &pl), 0);
    TU_NEAR(pl.total_s, 0, 0);
    blk[0].tier = 3;
    TU_CHECK_EQ(evict_plan_match(&cm, blk, 5, 0.5, &pl), -EINVAL);
    blk[0].tier = 0;
    TU_CHECK_EQ(evict_plan_match(&cm, blk, 5, -1, &pl), -EINVAL);
    util_alloc_fail_after(0);
    TU_CHECK_EQ(evict_plan_match(&cm, blk, 5, 0.5, &pl), -ENOMEM);
    util_alloc_fail_after(-1);

    /* "Always load" (the reference without a plan), dram back to 100 B/s, no latency: every
     * cached block loaded: b1 10 s + b2 1 s + b3 1 s = 12 s of loads against the suffix and
     * b4: max(12, 1.5) = 12 s, worse than the plan's 2.5 s and than all-recompute (7.5 s). */
    cm.tier[1].read_bw = 100;
    cm.tier[1].latency_s = 0;
    TU_CHECK_EQ(evict_plan_load_all(&cm, blk, 5, 0.5, &pl), 0);
    const int all[5] = {1, 1, 1, 1, 0};
    for (int i = 0; i < 5; i++)
        TU_CHECK_EQ(blk[i].load, all[i]);
    TU_NEAR(blk[1].time_s, 10, 1e-12);
    TU_NEAR(pl.load_s, 12, 1e-12);
    TU_NEAR(pl.compute_s, 1.5, 1e-12);
    TU_NEAR(pl.total_s, 12, 1e-12);
    TU_NEAR(pl.all_recompute_s, 7.5, 1e-12);
    TU_CHECK_EQ(pl.n_load, 4);
    TU_CHECK_EQ(pl.n_recompute, 1);
    TU_CHECK_EQ(evict_plan_match(&cm, blk, 5, 0.5, &pl), 0);
    TU_NEAR(pl.total_s, 2.5, 1e-12); /* the same blocks, planned */
    TU_CHECK_EQ(evict_plan_load_all(&cm, blk, 5, -1, &pl), -EINVAL);
}

/* Against brute force over all 2^n load sets: the greedy is never worse than all-recompute,
 * its reported totals are consistent, and it is within one block's time of the optimum. */
static void test_plan_random(tu_rng *r)
{
    evict_costmodel cm;
    plan_model(&cm);
    cm.tier[1].latency_s = 0.05;
    cm.tier[2].latency_s = 0.2;
    for (int it = 0; it < 3000; it++) {
        evict_plan_block blk[10];
        evict_plan pl;
        size_t n = (size_t)tu_below(r, 11);
        double suffix = (double)tu_below(r, 40) * 0.1, maxt = 0;
        for (size_t i = 0; i < n; i++) {
            blk[i] = (evict_plan_block){.bytes = 1 + tu_below(r, 200),
                                        .recompute_s = (double)tu_below(r, 40) * 0.1,
                                        .tier = (int)tu_below(r, 4) - 1};
        }
        TU_CHECK_EQ(evict_plan_match(&cm, blk, n, suffix, &pl), 0);
        TU_CHECK(pl.total_s <= pl.all_recompute_s + 1e-12);
        /* recompute the plan's figures from its flags */
        double load = 0, lat = 0, comp = suffix;
        size_t nl = 0;
        for (size_t i = 0; i < n; i++) {
            if (blk[i].tier < 0)
                TU_CHECK(!blk[i].load);
            if (blk[i].load) {
                nl++;
                if (blk[i].tier > 0) {
                    load += (double)blk[i].bytes / cm.tier[blk[i].tier].read_bw;
                    lat = fmax(lat, cm.tier[blk[i].tier].latency_s);
                }
            } else {
                comp += blk[i].recompute_s;
            }
        }
        TU_CHECK_EQ(nl, pl.n_load);
        TU_NEAR(pl.compute_s, comp, 1e-9);
        TU_NEAR(pl.load_s, load > 0 ? lat + load : pl.load_s, 1e-9);
        TU_NEAR(pl.total_s, fmax(pl.load_s, comp), 1e-9);
        /* brute force */
        double best = INFINITY;
        for (unsigned mask = 0; mask < (1u << n); mask++) {
            double l = 0, lt = 0, c = suffix;
            int ok = 1;
            for (size_t i = 0; i < n; i++) {
                int tr = blk[i].tier;
                int ld = (mask >> i & 1) || tr == 0;
                if (ld && tr < 0) {
                    ok = 0;
                    break;
                }
                if (ld && tr > 0) {
                    l += (double)blk[i].bytes / cm.tier[tr].read_bw;
                    lt = fmax(lt, cm.tier[tr].latency_s);
                } else if (!ld) {
                    c += blk[i].recompute_s;
                }
                if (tr > 0)
                    maxt = fmax(maxt, fmax((double)blk[i].bytes / cm.tier[tr].read_bw +
                                               cm.tier[tr].latency_s,
                                           blk[i].recompute_s));
            }
            if (ok)
                best = fmin(best, fmax(l > 0 ? l + lt : 0, c));
        }
        TU_CHECK(pl.total_s >= best - 1e-9);
        TU_CHECK(pl.total_s <= best + maxt + 1e-9);
    }
}

/* ---------------------------------------------------------------- the docs table */
static void print_table(void)
{
    evict_costmodel cm;
    evict_model m8;
    evict_costmodel_default(&cm);
    evict_model_llama3_8b(&m8);
    printf("\ntiers (defaults)\n%-5s %12s %10s %10s %12s %7s %12s\n", "tier", "capacity B",
           "eff GB/s", "drain s", "$/GiB-h", "kappa", "balance s");
    for (unsigned i = 0; i < cm.n_tiers; i++) {
        const evict_tier *t = &cm.tier[i];
        printf("%-5s %12.4g %10.4g %10.4g %12.4g %7.3f %12.4g\n", t->name, (double)t->capacity,
               evict_tier_eff_bw(t) / 1e9, evict_tier_drain_s(t), t->cost_byte_s * 3600 * EVICT_GIB,
               evict_tier_kappa(&cm, i), evict_tier_balance_s(&cm, i));
    }
    const uint64_t pos[3] = {0, 32768, 131072};
    for (int k = 0; k < 3; k++) {
        double rs = evict_recompute_s(&cm, &m8, pos[k], 16);
        evict_window w[EVICT_MAX_TIERS + 1];
        evict_breakeven(&cm, 2 * MIB, rs, w);
        printf("\nLlama-3-8B, 2 MiB block at position %llu: recompute %.3f ms = $%.3g\n",
               (unsigned long long)pos[k], rs * 1e3, rs * cm.gpu_usd_s);
        printf("%-9s %12s %12s %12s %22s %12s\n", "option", "hold $/s", "retrieve ms",
               "retrieve $", "cheapest for t in [s]", "beats R < s");
        for (unsigned i = 0; i <= cm.n_tiers; i++) {
            int is_r = i == cm.n_tiers;
            double ld = is_r ? rs : evict_tier_load_s(&cm.tier[i], 2 * MIB);
            char win[64];
            if (isnan(w[i].lo_s))
                snprintf(win, sizeof win, "never");
            else
                snprintf(win, sizeof win, "[%.4g, %.4g)", w[i].lo_s, w[i].hi_s);
            printf("%-9s %12.3g %12.4g %12.3g %22s %12.4g\n", is_r ? "recompute" : cm.tier[i].name,
                   is_r ? 0 : evict_tier_hold_usd_s(&cm.tier[i], 2 * MIB), ld * 1e3,
                   ld * cm.gpu_usd_s, win, w[i].vs_recompute_s);
        }
    }
}

int main(int argc, char **argv)
{
    tu_rng r;
    tu_rng_init(&r, tu_seed("test_cost", 4));
    test_defaults();
    test_recompute();
    test_toy();
    test_envelope_random(&r);
    test_rule_of_thumb();
    test_too_slow();
    test_ttl_parse();
    test_history();
    test_decide_drain();
    test_decide_lru_lfu();
    test_score();
    test_plan_hand();
    test_plan_random(&r);
    if (argc > 1 && !strcmp(argv[1], "-v"))
        print_table();
    printf("test_cost: ok\n");
    return 0;
}
