/*
 * policy.c — the engine's placement policies (lru, lfu, drain), TTL hints, load plans and the
 * public face of the cost model (kvtier.h, "placement policies, TTLs, plans").
 *
 * State: every radix node carries an evict_hist (radix_node.ph_*, one history per node by
 * the radix history rule), updated by touch_path() through policy_touch(). The engine's cost
 * model (e->cm) holds only the tiers this engine has, fastest first: hbm (modeled, never
 * managed), dram, then nvme and disk when configured; e->cm_idx[kvt tier] maps a kvt_tier to
 * its index there (-1: absent). Everything here runs under the engine lock unless stated.
 *
 * Victim choice (policy_pick): lru keeps the list order of tiering.c and engine.c unchanged;
 * lfu and drain look at the first POLICY_WINDOW evictable nodes from the stale end of the
 * tenant's list for the tier and take the lowest evict_score() of each node's last block
 * (the block an eviction would take). A window, not a heap: O(window) per eviction, and the
 * stale end is where every reasonable policy finds its victims; the window only reorders
 * within it. Tenant isolation holds because the lists are per tenant; pins because pinned
 * and pending nodes are never candidates.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "engine/internal.h"
#include "evict/belady.h"

#define POLICY_WINDOW 8u        /* lfu, and drain's nvme/disk choices */
#define POLICY_WALK 8u          /* a pick looks at most this many windows of nodes */

/* ---------------------------------------------------------------- models */

KVT_EXPORT void kvt_model_desc_llama3_8b(kvt_model_desc *m)
{
    if (m)
        *m = (kvt_model_desc){.active_params = 8.03e9, .layers = 32, .hidden = 4096};
}

KVT_EXPORT void kvt_model_desc_llama3_70b(kvt_model_desc *m)
{
    if (m)
        *m = (kvt_model_desc){.active_params = 70.6e9, .layers = 80, .hidden = 8192};
}

static int model_ok(const kvt_model_desc *m)
{
    return m && ((m->active_params > 0 && m->layers && m->hidden) || m->prefill_tok_s > 0) &&
           !(m->gpu_flops < 0) && !(m->gpu_usd_per_hour < 0);
}

/* The GPU part of a cost model from a model description. */
static void model_apply(const kvt_model_desc *m, evict_costmodel *cm, evict_model *em)
{
    *em = (evict_model){.active_params = m->active_params, .layers = m->layers,
                        .hidden = m->hidden, .prefill_tok_s = m->prefill_tok_s};
    if (m->gpu_flops > 0)
        cm->gpu_flops = m->gpu_flops;
    if (m->gpu_usd_per_hour > 0)
        cm->gpu_usd_s = m->gpu_usd_per_hour / 3600.0;
}

KVT_EXPORT double kvt_recompute_seconds(const kvt_model_desc *m, uint64_t pos, uint32_t tokens)
{
    if (!model_ok(m))
        return -1.0;
    evict_costmodel cm;
    evict_model em;
    evict_costmodel_default(&cm);
    model_apply(m, &cm, &em);
    return evict_recompute_s(&cm, &em, pos, tokens);
}

KVT_EXPORT int kvt_ttl_parse(const char *s, double *ttl_s)
{
    if (!ttl_s)
        return -EINVAL;
    return evict_ttl_parse(s, ttl_s);
}

KVT_EXPORT int kvt_belady_hits(const uint64_t *ids, size_t n, size_t capacity, size_t *hits)
{
    return evict_belady_hits(ids, n, capacity, NULL, hits);
}

KVT_EXPORT int kvt_lru_trace_hits(const uint64_t *ids, size_t n, size_t capacity, size_t *hits)
{
    return evict_lru_trace_hits(ids, n, capacity, NULL, hits);
}

/* ---------------------------------------------------------------- options */

KVT_EXPORT int kvt_options_set_policy(kvt_options *o, const char *name)
{
    evict_policy p;
    if (!o || !name || evict_policy_parse(name, &p))
        return -EINVAL;
    o->policy = (int)p;
    return 0;
}

KVT_EXPORT int kvt_options_set_capacity_priced(kvt_options *o, int priced)
{
    if (!o || (priced != 0 && priced != 1))
        return -EINVAL;
    o->capacity_priced = priced;
    return 0;
}

KVT_EXPORT int kvt_options_set_model(kvt_options *o, const kvt_model_desc *m)
{
    if (!o || !model_ok(m))
        return -EINVAL;
    o->model = *m;
    o->have_model = 1;
    return 0;
}

KVT_EXPORT int kvt_options_set_tier_perf(kvt_options *o, kvt_tier tier, double rbw, double wbw)
{
    if (!o || (tier != KVT_TIER_DRAM && tier != KVT_TIER_NVME && tier != KVT_TIER_DISK) ||
        !(rbw >= 0) || !(wbw >= 0))
        return -EINVAL;
    o->tier_read_bw[tier] = rbw;
    o->tier_write_bw[tier] = wbw;
    return 0;
}

/* ---------------------------------------------------------------- the engine's model */

double policy_now_s(const kvt_engine *e)
{
    /* simulation: the trace's clock (kvt_engine_set_clock, ns); else monotonic time at the
     * kernel tick's resolution (ms: gaps and TTLs are seconds; a fine clock read was ~5 % of
     * a pipelined 100-byte SET, three reads each) */
    return e->simulate ? (double)e->clock * 1e-9 : (double)util_now_coarse_ns() * 1e-9;
}

void policy_init(kvt_engine *e, const kvt_options *o)
{
    evict_costmodel def;
    kvt_model_desc md;
    evict_costmodel_default(&def);
    e->policy = o->policy;
    evict_params_default(&e->pp);
    e->pp.policy = (evict_policy)o->policy;
    e->pp.capacity_priced = o->capacity_priced;
    if (o->have_model)
        md = o->model;
    else
        kvt_model_desc_llama3_8b(&md);
    e->cm = def;
    e->cm.n_tiers = 0;
    model_apply(&md, &e->cm, &e->em);
    for (int t = 0; t < RADIX_TIERS; t++)
        e->cm_idx[t] = -1;
    int persistent = o->data_dir || o->simulate;
    for (int t = RADIX_TIER_HBM; t < RADIX_TIERS; t++) {
        uint64_t cap = t == RADIX_TIER_HBM    ? def.tier[0].capacity
                       : t == RADIX_TIER_DRAM ? o->dram_bytes
                       : persistent           ? o->tier_capacity[t]
                                              : 0;
        if (!cap)
            continue;
        evict_tier tr = def.tier[t];
        tr.capacity = cap;
        if (t != RADIX_TIER_HBM) {
            if (o->tier_bw[t]) /* a configured cap: the tier cannot go faster */
                tr.read_bw = tr.write_bw = (double)o->tier_bw[t];
            if (o->tier_read_bw[t] > 0)
                tr.read_bw = o->tier_read_bw[t];
            if (o->tier_write_bw[t] > 0)
                tr.write_bw = o->tier_write_bw[t];
        }
        e->cm_idx[t] = (int)e->cm.n_tiers;
        e->cm.tier[e->cm.n_tiers++] = tr;
    }
}

/* ---------------------------------------------------------------- history */

static void hist_get(const radix_node *n, evict_hist *h)
{
    *h = (evict_hist){.last_s = n->ph_last_s, .gap_s = n->ph_gap_s, .freq = n->ph_freq,
                      .ttl_s = n->ph_ttl_s, .hits = n->ph_hits};
}

static void hist_set(radix_node *n, const evict_hist *h)
{
    n->ph_last_s = h->last_s;
    n->ph_gap_s = h->gap_s;
    n->ph_freq = h->freq;
    n->ph_ttl_s = h->ttl_s;
    n->ph_hits = h->hits;
}

void policy_touch(kvt_ns *ns, radix_node *n, double now_s)
{
    evict_hist h;
    hist_get(n, &h);
    evict_hist_touch(&h, now_s, &ns->eng->pp); /* hits == 0: init, keeping the TTL */
    hist_set(n, &h);
}

/* The policy's view of block j of node n. */
void policy_block(const kvt_ns *ns, const radix_node *n, uint32_t j, evict_block *out)
{
    const kvt_engine *e = ns->eng;
    const radix_block *b = &n->blocks[j];
    memset(out, 0, sizeof *out);
    out->bytes = ns->block_bytes;
    out->recompute_s = evict_recompute_s(&e->cm, &e->em, (n->depth + j) * ns->bt, ns->bt);
    for (int t = RADIX_TIER_DRAM; t < RADIX_TIERS; t++)
        if (b->slot[t] != RADIX_NO_SLOT && e->cm_idx[t] >= 0)
            out->tiers |= 1u << e->cm_idx[t];
    out->pinned = n->pins > 0;
    hist_get(n, &out->hist);
}

static int lru_evictable(radix_node *n)
{
    return n->pins == 0 && !(n->flags & RADIX_PENDING) && n->n_kids == 0 && n->n_blocks > 0;
}

radix_node *policy_pick_n(kvt_engine *e, tenant *tn, int t, int (*ok)(radix_node *n),
                          unsigned window)
{
    util_list *h = t < 0 ? &tn->lru.head : &tn->tl[t];
    int ct = e->cm_idx[t < 0 ? RADIX_TIER_DRAM : t];
    double now = policy_now_s(e), best_sc = INFINITY;
    radix_node *best = NULL;
    unsigned seen = 0, walked = 0;
    if (!ok)
        ok = lru_evictable;
    /* walked: nodes skipped as not ok count too, up to POLICY_WALK windows, so that a stale
     * end full of pinned or in-flight nodes costs O(window), not O(list) (the caller then
     * falls back to its list scan) */
    for (util_list *l = h->next; l != h && seen < window && walked < POLICY_WALK * window;
         l = l->next, walked++) {
        radix_node *n = t < 0 ? UTIL_CONTAINER_OF(l, radix_node, lru)
                              : UTIL_CONTAINER_OF(l, radix_node, tlink[t]);
        if (!ok(n) || !n->owner)
            continue;
        seen++;
        evict_block b;
        policy_block(n->owner, n, n->n_blocks - 1, &b);
        double sc = ct >= 0 ? evict_score(&e->cm, &e->pp, &b, (unsigned)ct, now) : b.hist.last_s;
        if (isnan(sc))
            sc = b.hist.last_s;
        if (!best || sc < best_sc) { /* ties: the staler one */
            best = n;
            best_sc = sc;
        }
    }
    return best;
}

radix_node *policy_pick(kvt_engine *e, tenant *tn, int t, int (*ok)(radix_node *n))
{
    return policy_pick_n(e, tn, t, ok, POLICY_WINDOW);
}

/* ---------------------------------------------------------------- puts: TTL and placement */

/* The first persistent tier (kvt index), or -1 without one. */
static int first_lower_tier(const kvt_engine *e)
{
    return e->cm_idx[RADIX_TIER_NVME] >= 0 ? RADIX_TIER_NVME
           : e->cm_idx[RADIX_TIER_DISK] >= 0 ? RADIX_TIER_DISK
                                             : -1;
}

/* Is persistent tier t (kvt index) out of room? */
static int tier_full(kvt_engine *e, int t)
{
    if (e->simulate)
        return sim_tier_full(e, t);
    if (t == RADIX_TIER_NVME)
        return e->nvme && nvme_free_slots(e->nvme) == 0;
    return 0; /* disk: a log; its room is made by disk_make_room */
}

/* The expected reuse interval of the block a full tier t would push out for tenant tn: its
 * stalest unpinned node's (nvme and disk victims go in LRU order under every policy);
 * INFINITY if there is none. */
static double displaced_reuse_s(kvt_engine *e, tenant *tn, int t, double now)
{
    util_list *h = &tn->tl[t];
    for (util_list *l = h->next; l != h; l = l->next) {
        radix_node *n = UTIL_CONTAINER_OF(l, radix_node, tlink[t]);
        if (n->pins || !n->owner || !n->n_blocks)
            continue;
        evict_hist hh;
        hist_get(n, &hh);
        return evict_reuse_s(&hh, now, &e->pp);
    }
    return INFINITY;
}

/*
 * drain, provisioned capacity: write a fresh block through to the first persistent tier if a
 * copy there saves GPU time (evict_admit: for the marginal model every block, r²/(r+l) > 0)
 * and, when the tier is full, the block it would push out (the tier's LRU victim) is not
 * expected back sooner than the fresh block: t(displaced) >= t(fresh), t = evict_reuse_s
 * (fresh: the TTL hint, else the prior_s prior). A tier whose turnover is shorter than the
 * prior is being scanned by one-shot blocks: refusing them keeps what is reused (on a
 * generated trace with a small nvme, 63.3% hit rate against lru's 60.0%). Only intervals
 * are compared: ranking by value density (saving / t, the rule before) also favoured deep
 * blocks over recent ones and cost a quarter of drain's DRAM hits on the Mooncake trace
 * (docs/cost-model.md §8). A refused block keeps its DRAM copy, unbacked (NOPERSIST).
 */
static void policy_put_marginal(kvt_ns *ns, radix_node *leaf, uint32_t n, double now)
{
    kvt_engine *e = ns->eng;
    int t = first_lower_tier(e);
    if (t < 0)
        return;
    double td = tier_full(e, t) ? displaced_reuse_s(e, ns->tn, t, now) : INFINITY;
    for (uint32_t j = 0; j < n && j < leaf->n_blocks; j++) {
        evict_block b;
        policy_block(ns, leaf, j, &b);
        b.tiers = 0;
        b.pinned = 0;
        if (td < evict_reuse_s(&b.hist, now, &e->pp) ||
            evict_admit(&e->cm, &e->pp, &b, (unsigned)e->cm_idx[t], now, 0) == 0) {
            leaf->blocks[j].flags |= BLK_NOPERSIST;
            e->wt_skipped++;
        }
    }
}

void policy_put(kvt_ns *ns, radix_node *leaf, uint32_t n, double ttl_s)
{
    kvt_engine *e = ns->eng;
    if (ttl_s > 0) {
        leaf->ph_ttl_s = ttl_s;
        e->has_ttl = 1;
    }
    if (e->policy != EVICT_POLICY_DRAIN || !e->tiered)
        return;
    double now = policy_now_s(e);
    if (!e->pp.capacity_priced) {
        policy_put_marginal(ns, leaf, n, now);
        return;
    }
    for (uint32_t j = 0; j < n && j < leaf->n_blocks; j++) {
        evict_block b;
        evict_action a;
        policy_block(ns, leaf, j, &b);
        b.tiers = 0; /* fresh KV: where should it go? */
        b.pinned = 0;
        if (evict_decide(&e->cm, &e->pp, &b, now, &a))
            continue;
        if (a.verb == EVICT_DROP) {
            /* recomputing is cheaper than keeping it anywhere: keep the DRAM copy it already
             * has while there is room, but spend no write bandwidth on it */
            leaf->blocks[j].flags |= BLK_NOPERSIST;
            e->wt_skipped++;
        } else if (a.verb == EVICT_PROMOTE && a.tier > e->cm_idx[RADIX_TIER_DRAM]) {
            leaf->blocks[j].flags |= BLK_DEMOTE;
            e->placed_low++;
        }
    }
}

/* ---------------------------------------------------------------- TTL expiry */

static int node_expired(const radix_node *n, double now)
{
    return n->ph_ttl_s > 0 && n->ph_hits && now >= n->ph_last_s + n->ph_ttl_s;
}

void policy_cut_expired(kvt_ns *ns, radix_path *p, int drop)
{
    kvt_engine *e = ns->eng;
    double now = policy_now_s(e);
    uint64_t blocks = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        radix_node *n = p->nodes[i];
        uint32_t use = i + 1 == p->n ? p->last_blocks : n->n_blocks;
        if (!node_expired(n, now)) {
            blocks += use;
            continue;
        }
        p->n = i;
        p->last_blocks = i ? p->nodes[i - 1]->n_blocks : 0;
        p->blocks = blocks;
        /* lazily dropped with everything cached after it by a match with a lease (a bare
         * measurement changes nothing); -EBUSY (pinned, or a put or the write-through on
         * it): a later match retries */
        long r = drop ? remove_blocks(ns, n, 0) : 0;
        if (r > 0)
            e->expired += (uint64_t)r;
        return;
    }
}

/* ---------------------------------------------------------------- put_ex */

static int put_ttl(const kvt_put_opts *o, double *ttl)
{
    *ttl = 0;
    if (!o)
        return 0;
    if (o->ttl)
        return evict_ttl_parse(o->ttl, ttl) ? -EINVAL : 0;
    if (!(o->ttl_s >= 0))
        return -EINVAL;
    *ttl = o->ttl_s;
    return 0;
}

KVT_EXPORT int kvt_put_ex(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens,
                          const void *const *blocks, const kvt_put_opts *o, size_t *stored)
{
    double ttl;
    if (stored)
        *stored = 0;
    if (!ns || (n_tokens && (!tokens || (!blocks && !ns->eng->simulate))))
        return -EINVAL;
    if (put_ttl(o, &ttl))
        return -EINVAL;
    if (ns->flags & KVT_NS_KEYS)
        return KVT_EMODE;
    if (n_tokens < ns->bt)
        return 0;
    return put_units(ns, tokens, n_tokens / ns->bt, blocks, ttl, stored);
}

KVT_EXPORT int kvt_put_keys_ex(kvt_ns *ns, const uint64_t *keys, size_t n_keys,
                               const void *const *blocks, const kvt_put_opts *o, size_t *stored)
{
    double ttl;
    if (stored)
        *stored = 0;
    if (!ns || (n_keys && (!keys || (!blocks && !ns->eng->simulate))))
        return -EINVAL;
    if (put_ttl(o, &ttl))
        return -EINVAL;
    if (!(ns->flags & KVT_NS_KEYS))
        return KVT_EMODE;
    if (!n_keys)
        return 0;
    return put_units(ns, (const uint32_t *)(const void *)keys, n_keys, blocks, ttl, stored);
}

/* ---------------------------------------------------------------- tiers and plans */

KVT_EXPORT int kvt_engine_tiers(kvt_engine *e, kvt_tier_info *out, size_t n, size_t *count)
{
    if (!e || (n && !out))
        return -EINVAL;
    size_t k = 0;
    for (int t = RADIX_TIER_HBM; t < RADIX_TIERS; t++) {
        int c = e->cm_idx[t];
        if (c < 0)
            continue;
        const evict_tier *tr = &e->cm.tier[c];
        if (k < n)
            out[k] = (kvt_tier_info){.tier = (kvt_tier)t, .name = tr->name,
                                     .capacity = tr->capacity, .read_bw = tr->read_bw,
                                     .write_bw = tr->write_bw, .link_bw = tr->link_bw,
                                     .latency_s = tr->latency_s,
                                     .usd_per_byte_s = tr->cost_byte_s,
                                     .drain_s = evict_tier_drain_s(tr)};
        k++;
    }
    if (count)
        *count = k;
    return 0;
}

KVT_EXPORT int kvt_lease_plan(const kvt_lease *l, const kvt_model_desc *model,
                              size_t suffix_tokens, kvt_plan *out, kvt_plan_block *blocks)
{
    if (!l || !out || (model && !model_ok(model)))
        return -EINVAL;
    kvt_ns *ns = l->ns;
    kvt_engine *e = ns->eng;
    evict_costmodel cm = e->cm;
    evict_model em = e->em;
    if (model)
        model_apply(model, &cm, &em);
    size_t n = l->n_blocks;
    evict_plan_block *pb = n ? util_calloc(n, sizeof *pb) : NULL;
    if (n && !pb)
        return -ENOMEM;
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; i < n; i++) {
        radix_block *b = blk_at_depth(l->deepest, i, NULL);
        int t = RADIX_TIER_DRAM;
        while (t < RADIX_TIER_DISK && b->slot[t] == RADIX_NO_SLOT)
            t++;
        pb[i] = (evict_plan_block){.bytes = ns->block_bytes,
                                   .recompute_s = evict_recompute_s(&cm, &em, i * ns->bt, ns->bt),
                                   .tier = e->cm_idx[t]};
    }
    pthread_mutex_unlock(&e->lock);
    /* the uncached tail after the lease: its compute hides the loads */
    double suffix_s = suffix_tokens ? evict_recompute_s(&cm, &em, n * ns->bt,
                                                        (uint32_t)(suffix_tokens > UINT32_MAX
                                                                       ? UINT32_MAX
                                                                       : suffix_tokens))
                                    : 0;
    evict_plan p;
    int rc = evict_plan_match(&cm, pb, n, suffix_s, &p);
    if (rc == 0) {
        *out = (kvt_plan){.n_blocks = n, .n_load = p.n_load, .n_recompute = p.n_recompute,
                          .load_s = p.load_s, .compute_s = p.compute_s, .total_s = p.total_s,
                          .all_recompute_s = p.all_recompute_s};
        if (blocks)
            for (size_t i = 0; i < n; i++) {
                int t = RADIX_TIER_DRAM;
                for (int k = 0; k < RADIX_TIERS; k++)
                    if (e->cm_idx[k] == pb[i].tier)
                        t = k;
                blocks[i] = (kvt_plan_block){.tier = (kvt_tier)t, .load = pb[i].load,
                                             .time_s = pb[i].time_s};
            }
    }
    util_free(pb);
    return rc;
}
