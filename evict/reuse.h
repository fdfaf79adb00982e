/*
 * reuse.h — per-block reuse history, TTL hints, and the placement policies (lru, lfu,
 * drain) as decision functions over one block's state.
 *
 * The engine owns every data structure: it keeps an evict_hist per block (40 bytes, below),
 * calls evict_hist_touch() on each access, and asks evict_decide() / evict_score() when it
 * sweeps or when a tier is full. Nothing here allocates, reads a clock or keeps state.
 * Thread safety: reentrant; an evict_hist is guarded by whatever guards its block (the engine
 * lock).
 *
 * Times are seconds on the engine's monotonic clock (util_now_ns() * 1e-9 is fine: a double
 * keeps 0.1 ns resolution for 10^6 s of uptime).
 *
 * Reuse-interval estimate (evict_reuse_s), the t of cost.h:
 *   idle   = now - last_s
 *   base   = gap_s  (EWMA of inter-access gaps, weight ewma_alpha on the newest)   hits >= 2
 *          = ttl_s  (the client's hint is the only information)                    hits < 2, TTL
 *          = prior_s                                                               otherwise
 *   t      = max(base, idle)       a block idle longer than its mean gap has slowed down: for
 *                                  memoryless reuse the expected wait is the mean whatever the
 *                                  idle time; for heavy-tailed reuse it grows with idle time;
 *                                  max() covers both and makes demotion monotone in idle time
 *   t      = min(t, ttl_s)         a TTL caps the interval worth planning for
 *   t      = INFINITY              once now >= deadline = last_s + ttl_s: worthless, drop
 * The deadline slides with each access (last_s + ttl_s), as commercial prompt caches refresh
 * the 5-minute lifetime on every hit.
 */
#ifndef KVT_EVICT_REUSE_H
#define KVT_EVICT_REUSE_H

#include <stdint.h>

#include "cost.h"

/* One block's access history. Zero-initialised = never accessed, no TTL. */
typedef struct evict_hist {
    double last_s;   /* time of the latest access (the insert counts as one), seconds */
    double gap_s;    /* EWMA of the gaps between accesses, seconds; valid when hits >= 2 */
    double freq;     /* LFU count, decayed to last_s (see lfu_half_life_s) */
    double ttl_s;    /* TTL hint, seconds; 0: none */
    uint32_t hits;   /* accesses so far, the insert included */
} evict_hist;

typedef enum evict_policy {
    EVICT_POLICY_LRU,   /* recency: evict the least recently used */
    EVICT_POLICY_LFU,   /* frequency with exponential aging */
    EVICT_POLICY_DRAIN, /* the cost model: cheapest option for the expected reuse interval */
} evict_policy;

typedef struct evict_params {
    evict_policy policy;
    double ewma_alpha;      /* weight of the newest gap in gap_s, (0, 1]; default 0.25 */
    double prior_s;         /* reuse interval of a block with no gap and no TTL; default 300 s:
                             * a hint-less block is treated like the 5-minute prompt cache */
    double lfu_half_life_s; /* LFU counts halve every this many idle seconds; default 600 */
    /* drain: 0 (default): capacity is provisioned, paid whether used or not: the online
     * marginal model (cost.h, "online placement"): a copy in a tier with room costs nothing,
     * in a full tier the value of the block it displaces; victims by evict_value_density.
     * 1: capacity is priced per byte-second held (elastic or shared capacity): the sizing
     * model, cheapest option for the reuse interval (evict_choose), hold cost included. */
    int capacity_priced;
    double hysteresis;      /* drain moves a block only if its current option costs more than
                             * (1 + hysteresis) × the best one; default 0.1 */
    /* lru: a block belongs in the fastest tier i with idle < lru_idle_s[i] (none: drop).
     * Default INFINITY everywhere: everything in tier 0, demoted only under pressure. */
    double lru_idle_s[EVICT_MAX_TIERS];
    /* lfu: the fastest tier i with aged count >= lfu_min_freq[i] (none: drop). Default 0. */
    double lfu_min_freq[EVICT_MAX_TIERS];
} evict_params;

void evict_params_default(evict_params *p);
/* "lru", "lfu", "drain" -> 0 and *out; anything else -EINVAL. */
int evict_policy_parse(const char *name, evict_policy *out);
const char *evict_policy_name(evict_policy p); /* "?" for an unknown value */

/* ---------------------------------------------------------------- TTL hints */
/* Parse a TTL: one or more <digits><unit> groups, units d, h, m, s each at most once and in
 * that order, e.g. "5m", "1h", "30s", "90s", "2h30m", "1d12h". No sign, space, fraction or
 * bare number. [out] *ttl_s seconds (> 0). Returns 0; -EINVAL (NULL, empty, bad character,
 * missing/unknown/repeated/out-of-order unit, zero total); -ERANGE (a group of more than 9
 * digits). *ttl_s is untouched on error. */
int evict_ttl_parse(const char *s, double *ttl_s);

/* ---------------------------------------------------------------- history */
/* A new block: one access at now_s; ttl_s = 0 for none. */
void evict_hist_init(evict_hist *h, double now_s, double ttl_s);
/* Record an access at now_s (>= last_s; an earlier time counts as a zero gap). */
void evict_hist_touch(evict_hist *h, double now_s, const evict_params *p);
double evict_hist_deadline_s(const evict_hist *h); /* last_s + ttl_s, or INFINITY */
int evict_hist_expired(const evict_hist *h, double now_s);
/* The expected reuse interval t, seconds (see the top of this file); INFINITY if expired. */
double evict_reuse_s(const evict_hist *h, double now_s, const evict_params *p);
/* The LFU count aged to now: freq × 2^(-(now - last_s) / lfu_half_life_s). */
double evict_lfu_count(const evict_hist *h, double now_s, const evict_params *p);

/* ---------------------------------------------------------------- decisions */
/* What the engine tells the policy about one block. */
typedef struct evict_block {
    uint64_t bytes;
    double recompute_s; /* evict_recompute_s() at its position; fixed for a block */
    uint32_t tiers;     /* bit i: a complete copy in tier i; 0: not stored (fresh KV) */
    int pinned;         /* in use by a reader: never moved or dropped */
    evict_hist hist;
} evict_block;

typedef enum evict_verb {
    EVICT_KEEP,    /* leave it where it is */
    EVICT_PROMOTE, /* write a copy to the faster tier `tier` (or store a fresh block there) */
    EVICT_DEMOTE,  /* ensure a copy in the slower tier `tier`, then free the faster copies */
    EVICT_DROP,    /* free every copy (or do not store); recompute on next use */
} evict_verb;

typedef struct evict_action {
    evict_verb verb;
    int tier;       /* PROMOTE/DEMOTE: the target; KEEP: the fastest copy (-1 if none); DROP: -1 */
    double reuse_s; /* the reuse interval used (drain), INFINITY when expired */
    double usd;     /* drain: expected $ of the chosen option over reuse_s; else 0 */
} evict_action;

/* The policy's verdict on one block, on its fastest copy (copies in slower tiers than the
 * target are the engine's business: durability, warm restart). A pinned block is always
 * KEEP; an expired one (TTL deadline passed) always DROP. lru/lfu promote only on a hit
 * (now_s == hist.last_s: call right after evict_hist_touch); drain promotes whenever the
 * cost model says so. Returns 0 or -EINVAL (bad model or params, tiers naming a tier >=
 * n_tiers). */
int evict_decide(const evict_costmodel *cm, const evict_params *p, const evict_block *b,
                 double now_s, evict_action *out);

/* Victim order for a full tier: lower scores are evicted first; the engine sorts or heaps
 * its candidates (unpinned, and leaves of the prefix tree: a parent is needed by every child,
 * so it goes after them) by this number.
 *   lru:   last_s                          (seconds)
 *   lfu:   evict_lfu_count()               (accesses)
 *   drain: evict_value_density() (capacity_priced 0, the default), else
 *          (cost of the best option outside `tier` - cost in `tier`) /
 *          (bytes × t): $ saved per byte-second of occupancy   ($/(B·s); negative: the block
 *          is cheaper elsewhere already)
 * Pinned: +INFINITY. Expired: -INFINITY. */
double evict_score(const evict_costmodel *cm, const evict_params *p, const evict_block *b,
                   unsigned tier, double now_s);

/* ---------------------------------------------------------------- online (marginal) */
/* The value density of b's copy in `tier`, $ per byte-second:
 *   (saving_s(tier) - max saving_s over the slower tiers where b has a copy)
 *     × gpu_usd_s / (bytes × t)             t = evict_reuse_s (at least 1 µs)
 * what keeping this copy earns over what the block is still worth without it (a DRAM copy of
 * a block persisted on nvme is worth the DRAM-vs-nvme difference; an unpersisted one its whole
 * saving). 0 when expired; +INFINITY when pinned; NAN on bad arguments. Any policy. */
double evict_value_density(const evict_costmodel *cm, const evict_params *p,
                           const evict_block *b, unsigned tier, double now_s);

/* Should b get a copy in `tier` (a write-through, a demotion target)? 1 when the copy saves
 * GPU time over b's copies in slower tiers (evict_value_density > 0) and either the tier has
 * room (displaced_density <= 0: free space costs nothing) or its density beats the
 * displaced_density of the block it would push out; else 0. -EINVAL on bad arguments. */
int evict_admit(const evict_costmodel *cm, const evict_params *p, const evict_block *b,
                unsigned tier, double now_s, double displaced_density);

/* Where a victim evicted from `tier` should go: a slower tier index, or EVICT_RECOMPUTE (drop).
 * lru/lfu: the next tier down; drain: the fastest slower tier whose copy would save GPU time
 * (capacity_priced 0), else the cheapest slower option for its reuse interval.
 * -EINVAL (< EVICT_RECOMPUTE) on bad arguments. */
int evict_victim_target(const evict_costmodel *cm, const evict_params *p, const evict_block *b,
                        unsigned tier, double now_s);

#endif
