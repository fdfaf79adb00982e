/* reuse.c — see reuse.h. */
#include "reuse.h"

#include <errno.h>
#include <math.h>
#include <string.h>

void evict_params_default(evict_params *p)
{
    *p = (evict_params){
        .policy = EVICT_POLICY_DRAIN,
        .ewma_alpha = 0.25,
        .prior_s = 300,
        .lfu_half_life_s = 600,
        .hysteresis = 0.1,
    };
    for (unsigned i = 0; i < EVICT_MAX_TIERS; i++) {
        p->lru_idle_s[i] = INFINITY;
        p->lfu_min_freq[i] = 0;
    }
}

static const char *const evict_policy_names[] = {
    [EVICT_POLICY_LRU] = "lru", [EVICT_POLICY_LFU] = "lfu", [EVICT_POLICY_DRAIN] = "drain",
};

int evict_policy_parse(const char *name, evict_policy *out)
{
    if (!name || !out)
        return -EINVAL;
    for (unsigned i = 0; i < sizeof evict_policy_names / sizeof *evict_policy_names; i++)
        if (!strcmp(name, evict_policy_names[i])) {
            *out = (evict_policy)i;
            return 0;
        }
    return -EINVAL;
}

const char *evict_policy_name(evict_policy p)
{
    return (unsigned)p < sizeof evict_policy_names / sizeof *evict_policy_names
               ? evict_policy_names[p]
               : "?";
}

/* ---------------------------------------------------------------- TTL hints */

int evict_ttl_parse(const char *s, double *ttl_s)
{
    static const struct {
        char unit;
        double sec;
    } units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
    const unsigned nunits = sizeof units / sizeof *units;
    unsigned next = 0; /* the first unit still allowed: enforces order and uniqueness */
    double total = 0;

    if (!s || !ttl_s || !*s)
        return -EINVAL;
    while (*s) {
        uint64_t v = 0;
        int digits = 0;
        unsigned u;
        for (; *s >= '0' && *s <= '9'; s++) {
            if (++digits > 9)
                return -ERANGE;
            v = v * 10 + (uint64_t)(*s - '0');
        }
        if (!digits)
            return -EINVAL;
        for (u = next; u < nunits && units[u].unit != *s; u++)
            ;
        if (u == nunits)
            return -EINVAL; /* missing, unknown, repeated or out-of-order unit */
        total += (double)v * units[u].sec;
        next = u + 1;
        s++;
    }
    if (!(total > 0))
        return -EINVAL;
    *ttl_s = total;
    return 0;
}

/* ---------------------------------------------------------------- history */

void evict_hist_init(evict_hist *h, double now_s, double ttl_s)
{
    *h = (evict_hist){.last_s = now_s, .freq = 1, .ttl_s = ttl_s > 0 ? ttl_s : 0, .hits = 1};
}

double evict_lfu_count(const evict_hist *h, double now_s, const evict_params *p)
{
    double idle = now_s - h->last_s;
    if (!(idle > 0) || !(p->lfu_half_life_s > 0))
        return h->freq;
    return h->freq * exp2(-idle / p->lfu_half_life_s);
}

void evict_hist_touch(evict_hist *h, double now_s, const evict_params *p)
{
    if (h->hits == 0) {
        evict_hist_init(h, now_s, h->ttl_s);
        return;
    }
    double gap = now_s > h->last_s ? now_s - h->last_s : 0;
    h->freq = evict_lfu_count(h, now_s, p) + 1;
    h->gap_s = h->hits >= 2 ? (1 - p->ewma_alpha) * h->gap_s + p->ewma_alpha * gap : gap;
    if (h->hits < UINT32_MAX)
        h->hits++;
    if (now_s > h->last_s)
        h->last_s = now_s;
}

double evict_hist_deadline_s(const evict_hist *h)
{
    return h->ttl_s > 0 ? h->last_s + h->ttl_s : INFINITY;
}

int evict_hist_expired(const evict_hist *h, double now_s)
{
    return now_s >= evict_hist_deadline_s(h);
}

double evict_reuse_s(const evict_hist *h, double now_s, const evict_params *p)
{
    double idle = now_s > h->last_s ? now_s - h->last_s : 0, base, t;
    if (evict_hist_expired(h, now_s))
        return INFINITY;
    base = h->hits >= 2 ? h->gap_s : h->ttl_s > 0 ? h->ttl_s : p->prior_s;
    t = base > idle ? base : idle;
    if (h->ttl_s > 0 && t > h->ttl_s)
        t = h->ttl_s;
    return t;
}

/* ---------------------------------------------------------------- decisions */

static int evict_params_ok(const evict_params *p)
{
    return p && (unsigned)p->policy <= EVICT_POLICY_DRAIN && p->ewma_alpha > 0 &&
           p->ewma_alpha <= 1 && p->prior_s > 0 && p->hysteresis >= 0;
}

static int evict_block_ok(const evict_costmodel *cm, const evict_block *b)
{
    uint32_t all = cm->n_tiers >= 32 ? UINT32_MAX : (1u << cm->n_tiers) - 1;
    return b && !(b->tiers & ~all) && b->recompute_s >= 0;
}

static int evict_fastest(uint32_t tiers) { return tiers ? __builtin_ctz(tiers) : -1; }

/* The option drain picks for reuse interval t, with hysteresis against the current copy. */
static int evict_drain_target(const evict_costmodel *cm, const evict_params *p,
                              const evict_block *b, int cur, double t, double *usd)
{
    double best_usd;
    int best = evict_choose(cm, b->bytes, b->recompute_s, t, UINT32_MAX, &best_usd);
    if (cur >= 0 && best != cur) {
        double cur_usd = evict_option_usd(cm, cur, b->bytes, b->recompute_s, t);
        if (cur_usd <= (1 + p->hysteresis) * best_usd) {
            *usd = cur_usd;
            return cur;
        }
    }
    *usd = best_usd;
    return best;
}

int evict_decide(const evict_costmodel *cm, const evict_params *p, const evict_block *b,
                 double now_s, evict_action *out)
{
    int cur, target = EVICT_RECOMPUTE;

    if (evict_costmodel_check(cm) || !evict_params_ok(p) || !evict_block_ok(cm, b) || !out)
        return -EINVAL;
    cur = evict_fastest(b->tiers);
    *out = (evict_action){.verb = EVICT_KEEP, .tier = cur, .reuse_s = NAN};
    if (b->pinned)
        return 0;
    if (evict_hist_expired(&b->hist, now_s)) {
        *out = (evict_action){.verb = EVICT_DROP, .tier = -1, .reuse_s = INFINITY};
        return 0;
    }
    switch (p->policy) {
    case EVICT_POLICY_LRU: {
        double idle = now_s - b->hist.last_s;
        for (unsigned i = 0; i < cm->n_tiers && target == EVICT_RECOMPUTE; i++)
            if (idle < p->lru_idle_s[i])
                target = (int)i;
        break;
    }
    case EVICT_POLICY_LFU: {
        double f = evict_lfu_count(&b->hist, now_s, p);
        for (unsigned i = 0; i < cm->n_tiers && target == EVICT_RECOMPUTE; i++)
            if (f >= p->lfu_min_freq[i])
                target = (int)i;
        break;
    }
    case EVICT_POLICY_DRAIN:
        out->reuse_s = evict_reuse_s(&b->hist, now_s, p);
        if (p->capacity_priced) {
            target = evict_drain_target(cm, p, b, cur, out->reuse_s, &out->usd);
        } else if (cur >= 0) {
            target = cur; /* room is the engine's business: pressure evicts by density */
        } else { /* fresh: the fastest managed tier whose copy saves GPU time */
            for (unsigned i = 1; i < cm->n_tiers && target == EVICT_RECOMPUTE; i++)
                if (evict_hit_saving_s(cm, (int)i, b->bytes, b->recompute_s) > 0)
                    target = (int)i;
        }
        break;
    }
    /* lru/lfu promote on a hit only (the engine calls right after evict_hist_touch, so the
     * idle time is 0): a block demoted under pressure is not pulled back up by a sweep. */
    if (p->policy != EVICT_POLICY_DRAIN && cur >= 0 && target >= 0 && target < cur &&
        now_s > b->hist.last_s)
        target = cur;
    if (target == EVICT_RECOMPUTE) {
        out->verb = EVICT_DROP;
        out->tier = -1;
    } else if (target == cur) {
        out->verb = EVICT_KEEP;
    } else {
        out->verb = cur < 0 || target < cur ? EVICT_PROMOTE : EVICT_DEMOTE;
        out->tier = target;
    }
    return 0;
}

static double evict_density_raw(const evict_costmodel *cm, const evict_params *p,
                                const evict_block *b, unsigned tier, double now_s);

/* Tiers strictly slower than `tier`, as a mask. */
static uint32_t evict_below(unsigned tier) { return tier >= 31 ? 0 : UINT32_MAX << (tier + 1); }

double evict_score(const evict_costmodel *cm, const evict_params *p, const evict_block *b,
                   unsigned tier, double now_s)
{
    if (evict_costmodel_check(cm) || !evict_params_ok(p) || !evict_block_ok(cm, b) ||
        tier >= cm->n_tiers)
        return NAN;
    if (b->pinned)
        return INFINITY;
    if (evict_hist_expired(&b->hist, now_s))
        return -INFINITY;
    switch (p->policy) {
    case EVICT_POLICY_LRU:
        return b->hist.last_s;
    case EVICT_POLICY_LFU:
        return evict_lfu_count(&b->hist, now_s, p);
    case EVICT_POLICY_DRAIN:
        if (!p->capacity_priced) /* checked above: the victim search's hot path */
            return evict_density_raw(cm, p, b, tier, now_s);
        break;
    }
    /* Napkin: a 70B 5 MiB block, t = 300 s, in DRAM (cost 1.8e-6 $) vs NVMe (1.6e-6 $):
     * density = -0.2e-6 / (5.2e6 B × 300 s) = -1.3e-16 $/(B·s): the first to go. */
    double t = evict_reuse_s(&b->hist, now_s, p), alt_usd;
    double bytes = b->bytes ? (double)b->bytes : 1;
    if (t < 1e-6)
        t = 1e-6; /* about to be used: very valuable, but finite */
    evict_choose(cm, b->bytes, b->recompute_s, t, evict_below(tier), &alt_usd);
    double here = evict_option_usd(cm, (int)tier, b->bytes, b->recompute_s, t);
    return (alt_usd - here) / (bytes * t);
}

int evict_victim_target(const evict_costmodel *cm, const evict_params *p, const evict_block *b,
                        unsigned tier, double now_s)
{
    if (evict_costmodel_check(cm) || !evict_params_ok(p) || !evict_block_ok(cm, b) ||
        tier >= cm->n_tiers)
        return -EINVAL;
    if (p->policy != EVICT_POLICY_DRAIN)
        return tier + 1 < cm->n_tiers ? (int)tier + 1 : EVICT_RECOMPUTE;
    if (!p->capacity_priced) {
        for (unsigned i = tier + 1; i < cm->n_tiers; i++)
            if (evict_hit_saving_s(cm, (int)i, b->bytes, b->recompute_s) > 0)
                return (int)i;
        return EVICT_RECOMPUTE;
    }
    double t = evict_reuse_s(&b->hist, now_s, p);
    return evict_choose(cm, b->bytes, b->recompute_s, t, evict_below(tier), NULL);
}

/* ---------------------------------------------------------------- online (marginal) */

/* No argument checks: the engine's hot path (policy.c) calls it per victim candidate. */
static double evict_density_raw(const evict_costmodel *cm, const evict_params *p,
                                const evict_block *b, unsigned tier, double now_s)
{
    if (b->pinned)
        return INFINITY;
    double t = evict_reuse_s(&b->hist, now_s, p);
    if (!(t < INFINITY))
        return 0; /* expired or never reused: worth nothing */
    if (t < 1e-6)
        t = 1e-6;
    double here = evict_hit_saving_s(cm, (int)tier, b->bytes, b->recompute_s), below = 0;
    for (unsigned i = tier + 1; i < cm->n_tiers; i++)
        if (b->tiers & (1u << i)) {
            double s = evict_hit_saving_s(cm, (int)i, b->bytes, b->recompute_s);
            if (s > below)
                below = s;
        }
    double bytes = b->bytes ? (double)b->bytes : 1;
    return (here - below) * cm->gpu_usd_s / (bytes * t);
}

double evict_value_density(const evict_costmodel *cm, const evict_params *p,
                           const evict_block *b, unsigned tier, double now_s)
{
    if (evict_costmodel_check(cm) || !evict_params_ok(p) || !evict_block_ok(cm, b) ||
        tier >= cm->n_tiers)
        return NAN;
    return evict_density_raw(cm, p, b, tier, now_s);
}

int evict_admit(const evict_costmodel *cm, const evict_params *p, const evict_block *b,
                unsigned tier, double now_s, double displaced_density)
{
    if (evict_costmodel_check(cm) || !evict_params_ok(p) || !evict_block_ok(cm, b) ||
        tier >= cm->n_tiers || isnan(displaced_density))
        return -EINVAL;
    evict_block c = *b;
    c.pinned = 0;
    c.tiers &= ~(1u << tier);
    double d = evict_density_raw(cm, p, &c, tier, now_s);
    if (!(d > 0))
        return 0;
    return displaced_density <= 0 || d > displaced_density;
}
