/*
 * cost.h — the placement cost model of DESIGN.md §3: tiers, recompute cost, the cheapest
 * option for a reuse interval, break-even intervals, and the load plan of a match.
 *
 * Pure arithmetic over caller-owned descriptors: no allocation except evict_plan_match()'s
 * scratch array, no clock, no engine state. Thread safety: every function is reentrant; the
 * descriptors are read-only to it.
 *
 * Units everywhere: bytes, seconds, bytes/s, FLOP, FLOP/s, US dollars ($). A reuse interval
 * t is the expected time in seconds until the block is next needed (reuse.h estimates it).
 *
 * The model. Three ways to have a block's KV when a request needs it (DESIGN.md §3):
 *
 *   option        hold $/s while stored          retrieve $ (once, into HBM)
 *   recompute     0                              recompute_s × gpu_usd_s
 *   tier T        bytes × T.cost_byte_s          load_s(T, bytes) × gpu_usd_s   (0 if resident)
 *
 *   load_s(T, B) = T.latency_s + B / min(T.read_bw, T.link_bw)
 *   cost(option, t) = hold × t + retrieve                 choose argmin over the options
 *
 * Retrieval is valued at the GPU's $/s because the GPU idles while it waits for KV (and
 * recomputation is GPU time by definition). HBM's hold price is the whole GPU's $/s spread
 * over its capacity: KV in HBM displaces batch, which is what the GPU is rented for.
 *
 * Rule of thumb (evict_tier_balance_s): per byte, tier T's hold cost over t equals its
 * retrieve cost at t_bal = (gpu_usd_s / bw_eff) / cost_byte_s = drain_s / kappa, where
 * kappa = T.cost_byte_s × capacity / gpu_usd_s is the tier's price relative to the GPU's.
 * In a "balanced" hierarchy (every tier costs what the GPU costs, kappa = 1, each tier >= 2x
 * larger and >= 2x slower than the one above) the cheapest tier for t = drain_s(T) is T
 * exactly. Real prices give kappa << 1 for DRAM/flash/disk, so their windows sit later than
 * their drain times, and recompute (a fixed retrieve cost with no hold cost) caps every
 * window from above. docs/cost-model.md has the worked numbers.
 */
#ifndef KVT_EVICT_COST_H
#define KVT_EVICT_COST_H

#include <stddef.h>
#include <stdint.h>

#define EVICT_MAX_TIERS 8
#define EVICT_RECOMPUTE (-1) /* the option "drop it and recompute on next use" */

/* ---------------------------------------------------------------- documented defaults
 * Sources (docs/cost-model.md repeats them with the arithmetic):
 *  GPU $/hour    3.00  H100 SXM 80GB on-demand, specialty clouds (Lambda, CoreWeave, Crusoe,
 *                      RunPod) list $2.49-$3.99/GPU-hour in 2026 (pricegpu.pages.dev "H100 vs
 *                      A100 cloud pricing"; mercatus-ai.com "cloud GPU pricing": $2.50-$3.50).
 *  GPU FLOP/s    989e12 × MFU 0.5: H100 SXM dense BF16 tensor peak (NVIDIA datasheet); 0.5 is a
 *                      typical prefill MFU for large batches of long prompts.
 *  HBM           80 GiB; 2,950 GB/s device copy measured on the GPU machine (DESIGN.md §4).
 *  DRAM          256 GiB per GPU (DGX H100: 2 TB host memory for 8 GPUs); 55.2 GB/s pinned
 *                      host->GPU, 55.0 GB/s GPU->host measured (§4); 12 µs per request: the
 *                      2,048 × 64 KiB scattered copies ran at 4.9 GB/s = 13.4 µs each, of which
 *                      64 KiB / 55.2 GB/s = 1.2 µs is transfer. $0.004237 per GiB-hour: GCP N2
 *                      on-demand memory price (us-central1, resource-based billing).
 *  NVMe          3.84 TB per GPU (DGX H100: 8 × 3.84 TB cache drives); 3.0 GB/s read (2.7-3.4
 *                      measured, io_uring O_DIRECT 1 MiB qd32), 2.6 GB/s write (2.4-2.8); 100 µs
 *                      per request (typical data-centre NVMe random read; not measured).
 *                      $0.080 per GiB-month: GCP Local SSD list price.
 *  disk          16 TiB, 0.2 GB/s (one HDD streams ~0.2 GB/s; AWS EBS sc1 caps a volume at
 *                      250 MiB/s and 16 TiB); 10 ms per request (seek + rotation, or a network
 *                      volume round trip). $0.015 per GB-month: AWS EBS sc1 (Cold HDD) list
 *                      price, us-east-1.
 *  A month is 730 hours (both clouds bill by it). */
#define EVICT_GPU_USD_PER_HOUR 3.00
#define EVICT_GPU_PEAK_FLOPS 989e12
#define EVICT_GPU_MFU 0.5
#define EVICT_HOURS_PER_MONTH 730.0
#define EVICT_GIB 1073741824.0

/* A tier: where a block's bytes can live. tier[0] of a cost model is the GPU's own memory. */
typedef struct evict_tier {
    const char *name;     /* "hbm", "dram", "nvme", "disk" (not owned; static storage) */
    uint64_t capacity;    /* bytes */
    double read_bw;       /* bytes/s the tier delivers toward the GPU */
    double write_bw;      /* bytes/s it absorbs (demotions, stores) */
    double link_bw;       /* bytes/s of the host/PCIe link a load also crosses; 0: none */
    double latency_s;     /* per request, seconds (paid once per pipeline of requests) */
    double cost_byte_s;   /* $ per byte-second held */
    int resident;         /* 1: the GPU reads it in place (HBM): retrieve costs nothing */
} evict_tier;

/* The GPU that waits for loads and recomputes drops, and the tiers below it. */
typedef struct evict_costmodel {
    double gpu_usd_s;     /* $/s, e.g. 3.00 / 3600 */
    double gpu_flops;     /* effective FLOP/s = peak × MFU, e.g. 494.5e12 */
    unsigned n_tiers;     /* 1..EVICT_MAX_TIERS */
    evict_tier tier[EVICT_MAX_TIERS]; /* fastest first; tier[0] resident */
} evict_costmodel;

/* The model whose KV is cached: what a block costs to recompute.
 *   FLOPs(block of n tokens at positions s .. s+n-1)
 *     = 2 × active_params × n                                  (every matmul, once per token)
 *     + 4 × layers × hidden × Σ_{i<n} (s + i + 1)              (QK^T and AV over the prefix)
 *     = 2·P·n + 4·L·d·(n·s + n(n+1)/2)
 * hidden is the attention width n_heads × head_dim (GQA shares K/V, not the query width).
 * If prefill_tok_s > 0 it overrides the FLOP model: recompute_s = n / prefill_tok_s. */
typedef struct evict_model {
    double active_params; /* parameters touched per token (MoE: the active ones) */
    uint32_t layers;
    uint32_t hidden;      /* n_heads × head_dim */
    double prefill_tok_s; /* measured prefill tokens/s; 0: use the FLOP model */
} evict_model;

/* [out] fills H100 + hbm/dram/nvme/disk with the defaults above. */
void evict_costmodel_default(evict_costmodel *cm);
/* 0, or -EINVAL: n_tiers out of range, a tier with capacity 0, non-positive read_bw, negative
 * or NaN field, tier[0] not resident, gpu_usd_s or gpu_flops not positive. */
int evict_costmodel_check(const evict_costmodel *cm);

/* Llama-3-8B (8.03e9 params, 32 layers, 4096 wide) and Llama-3-70B (70.6e9, 80, 8192). */
void evict_model_llama3_8b(evict_model *m);
void evict_model_llama3_70b(evict_model *m);

/* ---------------------------------------------------------------- per-tier figures */
double evict_tier_eff_bw(const evict_tier *t);    /* min(read_bw, link_bw) bytes/s */
/* capacity / eff_bw: seconds to read the whole tier toward the GPU once. */
double evict_tier_drain_s(const evict_tier *t);
/* Seconds to bring `bytes` to the GPU: latency + bytes / eff_bw; 0 if resident. */
double evict_tier_load_s(const evict_tier *t, uint64_t bytes);
/* bytes × cost_byte_s: $/s to keep `bytes` in the tier. */
double evict_tier_hold_usd_s(const evict_tier *t, uint64_t bytes);
/* The tier's price relative to the GPU: cost_byte_s × capacity / gpu_usd_s (HBM: 1). */
double evict_tier_kappa(const evict_costmodel *cm, unsigned tier);
/* The interval at which holding a byte costs what retrieving it does, latency ignored:
 * (gpu_usd_s / eff_bw) / cost_byte_s = drain_s / kappa; 0 for a resident tier, INFINITY for a
 * free one. */
double evict_tier_balance_s(const evict_costmodel *cm, unsigned tier);

/* ---------------------------------------------------------------- recompute */
double evict_recompute_flops(const evict_model *m, uint64_t pos, uint32_t tokens);
/* GPU seconds to recompute `tokens` tokens starting at prompt position pos (0-based). */
double evict_recompute_s(const evict_costmodel *cm, const evict_model *m, uint64_t pos,
                         uint32_t tokens);

/* ---------------------------------------------------------------- choosing */
/* $ of one option for a block of `bytes` reused after t seconds:
 * option EVICT_RECOMPUTE: recompute_s × gpu_usd_s; a tier index: hold × t + retrieve.
 * t = INFINITY (never reused) makes a tier cost INFINITY unless it is free (0 × inf is taken as
 * 0), so recompute (= drop) wins. Returns NAN for a bad option index. */
double evict_option_usd(const evict_costmodel *cm, int option, uint64_t bytes,
                        double recompute_s, double t);

/* The cheapest option for reuse after t seconds among recompute and the tiers whose bit is
 * set in tier_mask (bit i: tier i; ~0u: all). Ties go to the slower option (cheaper to hold).
 * recompute_s = INFINITY forbids recomputing (if no tier is allowed either, recompute is still
 * returned). [out] usd (optional): the chosen option's cost. */
int evict_choose(const evict_costmodel *cm, uint64_t bytes, double recompute_s, double t,
                 uint32_t tier_mask, double *usd);

/* The reuse intervals over which an option is the cheapest: [lo_s, hi_s). Empty: lo_s = hi_s
 * = NAN (the option is never the cheapest). vs_recompute_s: the interval below which this tier
 * beats recomputing (0: never, its load alone is slower; INFINITY: always). */
typedef struct evict_window {
    double lo_s, hi_s;
    double vs_recompute_s;
} evict_window;

/* [out] win[0..n_tiers-1] for the tiers, win[n_tiers] for recompute (vs_recompute_s = NAN).
 * Exact lower envelope of the n_tiers + 1 cost lines; returns the number of options that
 * own a non-empty window, or -EINVAL. */
int evict_breakeven(const evict_costmodel *cm, uint64_t bytes, double recompute_s,
                    evict_window win[EVICT_MAX_TIERS + 1]);

/* ---------------------------------------------------------------- online (marginal) placement
 * The functions above price capacity per byte-second: the right model for SIZING (what
 * capacity to buy, or capacity rented per use). Capacity you already have is paid whether it
 * is used or not: holding a block in a tier with free space costs nothing, and in a full tier
 * it costs the value of the block it displaces. The online decision (reuse.h: evict_admit,
 * evict_value_density, the drain policy's default) uses only these two figures:
 *
 *   saving_s(T)  GPU seconds a hit from T saves against recomputing, with the load overlapped
 *                with the compute of the rest of the prompt (evict_plan_match's pipeline):
 *                  resident:   r
 *                  otherwise:  r^2 / (r + l),  l = evict_tier_load_s(T, bytes)
 *                r^2/(r+l) is what the block saves when its own load and the recompute of
 *                other blocks share the time optimally (a fraction r/(r+l) loaded): a lower
 *                bound (a long uncached suffix hides the whole load and saves r) that is
 *                positive for every tier, and small for a tier slower than recompute (l >> r).
 *   value rate   saving_s × gpu_usd_s / t: $ per second the copy earns at one reuse per t. */
double evict_hit_saving_s(const evict_costmodel *cm, int tier, uint64_t bytes,
                          double recompute_s);

/* ---------------------------------------------------------------- load plan
 * Given the matched blocks of a request, which to load and which to recompute.
 *
 * Legality: a prefix hit needs the KV of every earlier block, but the KV of block i depends
 * only on the tokens 0..i, not on whether blocks < i were loaded or recomputed; so any mix is
 * legal: recompute block 3, load blocks 4..9.
 *
 * Timing model (documented choice): loads run on the copy engine / I/O path concurrently with
 * compute, layer-wise pipelined (layer l's KV for the loaded blocks arrives while layer l-1
 * computes), so
 *   total_s   = max(load_s, compute_s)
 *   load_s    = max latency of the tiers used + Σ_loaded bytes_i / eff_bw(tier_i)
 *               (requests are issued together; transfers share the link into the GPU, so they
 *               add up — conservative when DRAM and NVMe could overlap)
 *   compute_s = suffix_s + Σ_recomputed recompute_s_i
 * where suffix_s is the compute the request needs anyway (its uncached tail), behind which
 * loads hide. Resident blocks cost nothing and are always used in place. The optimiser sorts
 * the loadable blocks by load time per recompute second saved and takes the best prefix of
 * that order (the fractional-knapsack greedy: within one block's time of the optimum, exact
 * for equal ratios). Since "load nothing" is a candidate, total_s <= all_recompute_s: the
 * caller never waits on a load slower than recomputation. */
typedef struct evict_plan_block {
    uint64_t bytes;      /* [in] */
    double recompute_s;  /* [in] evict_recompute_s() of this block */
    int tier;            /* [in] the fastest tier holding it, or -1: not cached */
    int load;            /* [out] 1: load (or use in place), 0: recompute */
    double time_s;       /* [out] its load transfer time (load) or recompute time (not) */
} evict_plan_block;

typedef struct evict_plan {
    double load_s, compute_s, total_s; /* as above */
    double all_recompute_s;            /* suffix_s + Σ recompute_s of every block */
    size_t n_load, n_recompute;        /* n_load counts resident blocks too */
} evict_plan;

/* [in,out] blk[n] (n may be 0); suffix_s >= 0. Returns 0, -EINVAL (bad tier index, NaN or
 * negative input), -ENOMEM (scratch allocation; blk untouched then). */
int evict_plan_match(const evict_costmodel *cm, evict_plan_block *blk, size_t n,
                     double suffix_s, evict_plan *out);

/* "Always load", the reference the plan is measured against (what a cache without a load
 * plan does: LMCache, HiCache): every cached block (tier >= 0) is loaded from its tier
 * whatever the tier's speed, only uncached blocks (tier -1) are recomputed; the same timing
 * model and figures as evict_plan_match (total_s may exceed all_recompute_s). Same
 * arguments and returns, never -ENOMEM. */
int evict_plan_load_all(const evict_costmodel *cm, evict_plan_block *blk, size_t n,
                        double suffix_s, evict_plan *out);

#endif
