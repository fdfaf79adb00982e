/*
 * replay.c — drive a kvtier engine with a trace and explain every hit and miss.
 *
 * Per request (an_trace order = arrival order):
 *   1. TTL: blocks whose deadline passed are removed (kvt_remove_keys / kvt_remove) before
 *      the lookup — lazily, when a request next reaches them. With one TTL for all blocks
 *      this is what eager expiry gives under LRU: expired blocks are the least recently used,
 *      so they are also the first evicted. With per-request TTLs (log "ttl_s") an expired
 *      block may hold space a little longer than it would under eager expiry.
 *   2. kvt_match(_keys) with a lease: the longest cached prefix (the hit), touched (LRU).
 *   3. kvt_put(_keys) of the request's whole blocks: the engine stores the uncached suffix,
 *      evicting by its policy; -ENOSPC (nothing evictable: everything pinned) is counted.
 *   4. kvt_release.
 * and in analytics' own bookkeeping (one record per (namespace, block key) ever requested):
 * the miss class of every block after the hit, reuse intervals, shared prefixes.
 *
 * Engine modes. KVT_AN_HAVE_SIM: the engine's data-free mode with the modeled layout (real
 * bytes per block, no memory), trace time as the engine clock, each hit's tier from the
 * lease. Otherwise: a real DRAM engine over a tiny layout (1 layer, 1 head, head_dim 1, fp8:
 * 2 bytes per token, slots of 64 bytes) holding as many blocks as the modeled layout's
 * capacity would: capacities become block counts, every hit is a DRAM hit; the replay is the
 * same index and policy code, only the bytes differ.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "an.h"
#include "evict/cost.h"   /* layering: until exported through kvtier.h */

const char *const an_policy_name[AN_POL_N] = {"lru", "lfu", "drain"};

/* lfu and drain need the engine's policies (kvt_options_set_policy, always built) and, for
 * drain, its data-free mode: the tiny-layout fallback has no clock, so only lru there. */
int an_policy_in_engine(an_policy p)
{
    return p == AN_POL_LRU || (KVT_AN_HAVE_SIM && p < AN_POL_N);
}

/* KV bytes per token = layers × 2 × kv_heads × head_dim × bytes (DESIGN.md §2). */
static const struct {
    const char *name;
    uint32_t layers, kv_heads, head_dim, hidden;
    double params;
} models[] = {
    {"llama3-8b", 32, 8, 128, 4096, 8.03e9},   /* 128 KiB/token, bf16 */
    {"llama3-70b", 80, 8, 128, 8192, 70.6e9},  /* 320 KiB/token */
};

int an_model_lookup(const char *name, an_model *m)
{
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        if (strcmp(name, models[i].name) == 0) {
            m->name = models[i].name;
            m->kv_bytes_per_token = (uint64_t)models[i].layers * 2 * models[i].kv_heads *
                                    models[i].head_dim * 2;
            m->active_params = models[i].params;
            m->layers = models[i].layers;
            m->hidden = models[i].hidden;
            return 0;
        }
    return -ENOENT;
}

static void model_layout(const an_model *m, uint32_t bt, kvt_layout *l)
{
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        if (strcmp(m->name, models[i].name) == 0) {
            *l = (kvt_layout){.layers = models[i].layers, .kv_heads = models[i].kv_heads,
                              .head_dim = models[i].head_dim, .dtype = KVT_DTYPE_BF16,
                              .block_tokens = bt};
            return;
        }
}

/* The cost model of the replay: the defaults with cfg's capacities and bandwidths. */
static void an_costmodel(const an_config *cfg, evict_costmodel *cm)
{
    evict_costmodel_default(cm);
    for (int i = AN_DRAM; i < AN_TIERS; i++) {
        if (cfg->cap[i])
            cm->tier[i].capacity = cfg->cap[i];
        if (cfg->bw[i] > 0)
            cm->tier[i].read_bw = cm->tier[i].write_bw = cfg->bw[i];
    }
}

double an_rate(uint64_t num, uint64_t den) { return den ? (double)num / (double)den : 0.0; }

/* ---------------------------------------------------------------- progress */

void an_progress_step(an_progress *p, uint64_t n)
{
    if (!p)
        return;
    p->done += n;
    if (!p->on || !p->total)
        return;
    int pm = (int)(p->done * 1000 / p->total);
    if (pm > 1000)
        pm = 1000;
    if (pm / 5 == p->last_permille / 5)
        return;
    p->last_permille = pm;
    char bar[41];
    int fill = pm * 40 / 1000;
    for (int i = 0; i < 40; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[40] = 0;
    fprintf(stderr, "\r%-10s [%s] %5.1f%%", p->what ? p->what : "", bar, pm / 10.0);
    fflush(stderr);
}

void an_progress_end(an_progress *p)
{
    if (p && p->on && p->last_permille >= 0)
        fprintf(stderr, "\r%*s\r", 70, "");
}

/* ---------------------------------------------------------------- block records
 * One record per (namespace, key) requested as a whole block; ns == AN_ANY_NS records a key
 * used in any namespace (for the "other namespace" class). Open addressing, linear probing,
 * slots hold record index + 1 (0 empty), load <= 1/2. */

#define AN_ANY_NS UINT32_MAX

typedef struct blkrec {
    uint64_t key;
    uint32_t ns, depth;
    uint64_t uses, first_ms, last_ms, deadline_ms; /* deadline UINT64_MAX: no TTL */
} blkrec;

/* A slot keeps the key and namespace next to the record index, so that a probe touches one
 * cache line (the records are read only on a match). */
typedef struct bmslot {
    uint64_t key;
    uint32_t ns, idx; /* idx: record index + 1, 0: empty */
} bmslot;

typedef struct blkmap {
    bmslot *slot;
    size_t mask;
    blkrec *rec;
    size_t n, cap;
} blkmap;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t bm_hash(uint32_t ns, uint64_t key) { return (size_t)mix64(key ^ mix64(ns + 1ull)); }

static blkrec *bm_get(const blkmap *m, uint32_t ns, uint64_t key)
{
    if (!m->slot)
        return NULL;
    for (size_t i = bm_hash(ns, key) & m->mask;; i = (i + 1) & m->mask) {
        const bmslot *s = &m->slot[i];
        if (!s->idx)
            return NULL;
        if (s->key == key && s->ns == ns)
            return &m->rec[s->idx - 1];
    }
}

static int bm_grow(blkmap *m, size_t nsz)
{
    bmslot *ns = calloc(nsz, sizeof *ns);
    if (!ns)
        return -ENOMEM;
    for (size_t k = 0; k < m->n; k++) {
        size_t i = bm_hash(m->rec[k].ns, m->rec[k].key) & (nsz - 1);
        while (ns[i].idx)
            i = (i + 1) & (nsz - 1);
        ns[i] = (bmslot){.key = m->rec[k].key, .ns = m->rec[k].ns, .idx = (uint32_t)k + 1};
    }
    free(m->slot);
    m->slot = ns;
    m->mask = nsz - 1;
    return 0;
}

/* Room for n records without growing (a hint: 0, or -ENOMEM, which a later put reports). */
static int bm_reserve(blkmap *m, size_t n)
{
    size_t nsz = 1024;
    while (nsz / 2 < n)
        nsz *= 2;
    if ((!m->slot || m->mask + 1 < nsz) && bm_grow(m, nsz))
        return -ENOMEM;
    if (m->cap < n) {
        blkrec *q = realloc(m->rec, n * sizeof *q);
        if (!q)
            return -ENOMEM;
        m->rec = q;
        m->cap = n;
    }
    return 0;
}

/* The record, created (zeroed but for ns, key) if absent; *fresh says which. NULL: -ENOMEM.
 * A put may move the records: pointers from earlier gets are stale after it. */
static blkrec *bm_put(blkmap *m, uint32_t ns, uint64_t key, int *fresh)
{
    size_t i = 0;
    *fresh = 0;
    if (m->slot) {
        for (i = bm_hash(ns, key) & m->mask;; i = (i + 1) & m->mask) {
            const bmslot *s = &m->slot[i];
            if (!s->idx)
                break;
            if (s->key == key && s->ns == ns)
                return &m->rec[s->idx - 1];
        }
    }
    *fresh = 1;
    if (m->n >= UINT32_MAX - 1)
        return NULL;
    if (m->n + 1 > (m->slot ? (m->mask + 1) / 2 : 0)) {
        if (bm_grow(m, m->slot ? (m->mask + 1) * 2 : 1024))
            return NULL;
        for (i = bm_hash(ns, key) & m->mask; m->slot[i].idx; i = (i + 1) & m->mask)
            ;
    }
    if (m->n == m->cap) {
        size_t c = m->cap ? m->cap * 2 : 1024;
        blkrec *q = realloc(m->rec, c * sizeof *q);
        if (!q)
            return NULL;
        m->rec = q;
        m->cap = c;
    }
    blkrec *r = &m->rec[m->n];
    *r = (blkrec){.key = key, .ns = ns, .deadline_ms = UINT64_MAX};
    m->slot[i] = (bmslot){.key = key, .ns = ns, .idx = (uint32_t)++m->n};
    return r;
}

static void bm_free(blkmap *m)
{
    free(m->slot);
    free(m->rec);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- engine nodes */

typedef struct node {
    kvt_engine *e;
    kvt_ns **ns;        /* [trace.n_ns] */
    uint64_t requests;  /* routed here (multi-node) */
} node;

typedef struct sim {
    const an_trace *t;
    const an_config *cfg;
    int simulated;
    uint32_t ns_bt;          /* layout block_tokens of the engine's namespaces */
    const void **blocks;     /* [max blocks per request] -> one zero block (or NULL: sim) */
    void *zero;
    int *tiers;              /* [max blocks per request] scratch: each hit's tier (AN_*) */
    int ttl;                 /* TTLs apply: remove expired blocks before each lookup */
    blkmap *ttlmap;          /* deadlines (NULL: no TTL handling) */
} sim;

static uint32_t max_blocks(const an_trace *t)
{
    uint32_t m = 1;
    for (size_t r = 0; r < t->n_req; r++)
        if (t->req[r].n_blocks > m)
            m = t->req[r].n_blocks;
    return m;
}

static int trace_has_ttl(const an_trace *t, const an_config *c)
{
    if (c->ttl_ms >= 0)
        return 1;
    for (size_t r = 0; r < t->n_req; r++)
        if (t->req[r].ttl_ms >= 0)
            return 1;
    return 0;
}

static int sim_init(sim *s, const an_trace *t, const an_config *cfg)
{
    memset(s, 0, sizeof *s);
    s->t = t;
    s->cfg = cfg;
    s->simulated = KVT_AN_HAVE_SIM;
    s->ns_bt = t->keyed && !s->simulated ? 1 : t->bt;
    uint32_t mb = max_blocks(t);
    s->blocks = calloc(mb, sizeof *s->blocks);
    s->tiers = calloc(mb, sizeof *s->tiers);
    s->zero = s->simulated ? NULL : calloc(1, 2ull * t->bt + 64);
    if (!s->blocks || !s->tiers || (!s->simulated && !s->zero))
        return -ENOMEM;
    for (uint32_t i = 0; i < mb; i++)
        s->blocks[i] = s->zero;
    s->ttl = trace_has_ttl(t, cfg);
    return 0;
}

static void sim_fini(sim *s)
{
    free(s->blocks);
    free(s->tiers);
    free(s->zero);
}

static void sim_layout(const sim *s, kvt_layout *l)
{
    if (s->simulated) {
        model_layout(&s->cfg->model, s->t->bt, l);
        return;
    }
    *l = (kvt_layout){.layers = 1, .kv_heads = 1, .head_dim = 1, .dtype = KVT_DTYPE_FP8,
                      .block_tokens = s->ns_bt};
}

/* Open an engine holding cap_blocks DRAM blocks (and, simulated, cfg's nvme/disk tiers,
 * scaled by `scale` for a pool of several nodes). */
static int node_open(const sim *s, uint64_t cap_blocks, uint32_t scale, node *n)
{
    const an_trace *t = s->t;
    kvt_options *o = NULL;
    kvt_layout lay;
    int rc;
    memset(n, 0, sizeof *n);
    sim_layout(s, &lay);
    uint64_t bb = kvt_layout_block_bytes(&lay);
    uint64_t slot = (bb + 63) & ~63ull;
    if (!bb)
        return KVT_EBADLAYOUT;
    if (!cap_blocks)
        cap_blocks = 1;
    if ((rc = kvt_options_create(&o)))
        return rc;
    if ((rc = kvt_options_set_policy(o, an_policy_name[s->cfg->policy])))
        goto out;
    if ((rc = kvt_options_set_dram_slot_bytes(o, slot)) ||
        (rc = kvt_options_set_dram_bytes(o, cap_blocks * slot)) ||
        (rc = kvt_options_set_hugepages(o, KVT_HUGEPAGES_OFF)) ||
        (rc = kvt_options_set_cuda_pin(o, 0)))
        goto out;
#if KVT_AN_HAVE_SIM
    {
        kvt_model_desc md = {.active_params = s->cfg->model.active_params,
                             .layers = s->cfg->model.layers, .hidden = s->cfg->model.hidden};
        if ((rc = kvt_options_set_simulate(o, 1)) || (rc = kvt_options_set_model(o, &md)))
            goto out;
        /* always set both: capacity 0 turns a tier off (the disk tier's default is 1 GiB);
         * no bandwidth cap: a simulation does no I/O, the cost model has the defaults */
        if ((rc = kvt_options_set_tier(o, KVT_TIER_NVME, NULL, s->cfg->cap[AN_NVME] * scale, 0)) ||
            (rc = kvt_options_set_tier(o, KVT_TIER_DISK, NULL, s->cfg->cap[AN_DISK] * scale, 0)))
            goto out;
        /* the cost model's bandwidths (drain's placement, kvt_lease_plan), as the replay's */
        for (int i = AN_NVME; i < AN_TIERS; i++)
            if (s->cfg->bw[i] > 0 &&
                (rc = kvt_options_set_tier_perf(o, (kvt_tier)i, s->cfg->bw[i], s->cfg->bw[i])))
                goto out;
    }
#else
    (void)scale;
#endif
    if ((rc = kvt_engine_open(o, &n->e)))
        goto out;
    rc = -ENOMEM;
    if (!(n->ns = calloc(t->n_ns ? t->n_ns : 1, sizeof *n->ns)))
        goto out;
    for (size_t i = 0; i < t->n_ns; i++) {
        char name[32];
        const char *tenant = "analyze";
        snprintf(name, sizeof name, "ns%zu", i);
        if (s->cfg->tenant_mode == AN_TENANT_QUOTA)
            tenant = t->tenants[t->ns_tenant[i]];
        if ((rc = kvt_ns_open(n->e, name, tenant, &lay, t->keyed ? KVT_NS_KEYS : 0, &n->ns[i])))
            goto out;
    }
    if (s->cfg->tenant_mode == AN_TENANT_QUOTA) {
        uint64_t per = cap_blocks / (t->n_tenants ? t->n_tenants : 1);
        for (size_t i = 0; i < t->n_tenants; i++)
            if ((rc = kvt_tenant_set_dram_quota(n->e, t->tenants[i], (per ? per : 1) * slot)))
                goto out;
    }
    rc = 0;
out:
    kvt_options_destroy(o);
    if (rc && n->e) {
        kvt_engine_close(n->e);
        n->e = NULL;
    }
    if (rc) {
        free(n->ns);
        n->ns = NULL;
    }
    return rc;
}

static void node_close(node *n)
{
    if (n->e)
        kvt_engine_close(n->e);
    free(n->ns);
    memset(n, 0, sizeof *n);
}

static uint32_t whole_blocks(const an_trace *t, const an_req *q)
{
    return q->last_tokens == t->bt ? q->n_blocks : q->n_blocks - 1;
}

/* Cached prefix of q in n, in blocks, measured only (nothing touched). */
static int node_measure(const sim *s, node *n, const an_req *q, size_t *m)
{
    const an_trace *t = s->t;
    kvt_ns *ns = n->ns[q->ns];
    uint32_t nb = whole_blocks(t, q);
    if (t->keyed)
        return kvt_match_keys(ns, &t->keys[q->keys_off], nb, m, NULL);
    size_t tok = 0;
    int rc = kvt_match(ns, &t->tokens[q->tok_off], (size_t)nb * t->bt, &tok, NULL);
    *m = tok / t->bt;
    return rc;
}

/* One request through node n: TTL removal, match (lease), put, release.
 * [out] *m: blocks hit; s->tiers[0..m): their tiers. *nospace: the put ran out of space. */
static int node_request(sim *s, node *n, const an_req *q, size_t *m, int *nospace)
{
    const an_trace *t = s->t;
    kvt_ns *ns = n->ns[q->ns];
    const uint64_t *keys = &t->keys[q->keys_off];
    const uint32_t *tok = t->tokens ? &t->tokens[q->tok_off] : NULL;
    uint32_t nb = whole_blocks(t, q);
    kvt_lease *l = NULL;
    size_t got = 0, stored = 0;
    int rc;
    *m = 0;
    *nospace = 0;
#if KVT_AN_HAVE_SIM
    if ((rc = kvt_engine_set_clock(n->e, q->ts_ms * 1000000ull)))
        return rc;
#endif
    if (s->ttl && s->ttlmap && nb) {
        size_t have = 0;
        if ((rc = node_measure(s, n, q, &have)))
            return rc;
        for (size_t i = 0; i < have; i++) {
            blkrec *r = bm_get(s->ttlmap, q->ns, keys[i]);
            if (r && r->deadline_ms <= q->ts_ms) {
                size_t removed = 0;
                rc = t->keyed ? kvt_remove_keys(ns, keys, i + 1, &removed)
                              : kvt_remove(ns, tok, (i + 1) * t->bt, &removed);
                if (rc)
                    return rc;
                break;
            }
        }
    }
    if (nb == 0)
        return 0;
    if (t->keyed) {
        rc = kvt_match_keys(ns, keys, nb, &got, &l);
    } else {
        rc = kvt_match(ns, tok, (size_t)nb * t->bt, &got, &l);
        got /= t->bt;
    }
    if (rc)
        return rc;
    for (size_t i = 0; i < got; i++) {
        s->tiers[i] = AN_DRAM;
#if KVT_AN_HAVE_SIM
        kvt_tier tier;
        if ((rc = kvt_lease_block_tier(l, i, &tier))) {
            kvt_release(l);
            return rc;
        }
        s->tiers[i] = (int)tier < AN_TIERS ? (int)tier : AN_DISK;
#endif
    }
#if KVT_AN_HAVE_SIM
    /* the caller loads its hits: in simulation a read promotes them into DRAM (accounting)
     * and returns -ENODATA, as documented */
    if (got) {
        const void *dst[1] = {s};
        for (size_t i = 0; i < got; i++)
            if (s->tiers[i] != AN_DRAM)
                kvt_read(l, i, 1, (void *const *)dst);
    }
#endif
    if (got < nb) {
        rc = t->keyed ? kvt_put_keys(ns, keys, nb, s->blocks, &stored)
                      : kvt_put(ns, tok, (size_t)nb * t->bt, s->blocks, &stored);
        if (rc == -ENOSPC) {
            *nospace = 1;
            rc = 0;
        }
    }
    kvt_release(l);
    *m = got;
    return rc;
}

/* Engine capacity in blocks for `bytes` of the modeled layout; never more than the trace
 * could fill (distinct whole blocks + 1): more is the same as infinite and wastes memory. */
static uint64_t cap_blocks_for(const an_trace *t, const an_config *c, uint64_t bytes,
                               uint64_t distinct)
{
    uint64_t b = bytes / an_block_bytes(c, t->bt);
    if (distinct && b > distinct + 1)
        b = distinct + 1;
    return b ? b : 1;
}

static uint64_t distinct_blocks(const an_trace *t)
{
    blkmap m = {0};
    uint64_t d = 0;
    int fresh;
    for (size_t r = 0; r < t->n_req; r++) {
        const an_req *q = &t->req[r];
        uint32_t nb = whole_blocks(t, q);
        for (uint32_t i = 0; i < nb; i++) {
            if (!bm_put(&m, q->ns, t->keys[q->keys_off + i], &fresh)) {
                bm_free(&m);
                return 0;
            }
            d += fresh;
        }
    }
    bm_free(&m);
    return d;
}

/* ---------------------------------------------------------------- the full replay */

static void top_insert(an_result *res, size_t k, const blkrec *r, uint32_t bt)
{
    if (r->uses < 2 || !k)
        return;
    double sc = (double)(r->uses - 1) * r->depth * bt;
    size_t n = res->n_top;
    if (n == k) {
        const an_prefix *w = &res->top[n - 1];
        if ((double)(w->uses - 1) * w->depth * bt >= sc)
            return;
        n--;
    }
    size_t i = n;
    while (i > 0 && (double)(res->top[i - 1].uses - 1) * res->top[i - 1].depth * bt < sc) {
        res->top[i] = res->top[i - 1];
        i--;
    }
    res->top[i] = (an_prefix){.key = r->key, .ns = r->ns, .depth = r->depth, .uses = r->uses,
                              .first_ms = r->first_ms, .last_ms = r->last_ms};
    res->n_top = n + 1;
}

static int reuse_bin(double s)
{
    if (s < 1e-3)
        return 0;
    int b = (int)floor((log10(s) + 3.0) * 4.0) + 1;
    return b > AN_REUSE_BINS ? AN_REUSE_BINS + 1 : b;
}

int an_replay(const an_trace *t, const an_config *cfg, an_result *res, an_progress *p)
{
    sim s;
    node n = {0};
    blkmap bm = {0};
    evict_plan_block *pb = NULL;
    evict_costmodel cm;
    evict_model em = {.active_params = cfg->model.active_params, .layers = cfg->model.layers,
                      .hidden = cfg->model.hidden};
    int rc;
    memset(res, 0, sizeof *res);
    if (!an_policy_in_engine(cfg->policy))
        return -ENOTSUP;
    if (!KVT_AN_HAVE_SIM && (cfg->cap[AN_NVME] || cfg->cap[AN_DISK]))
        return -ENOTSUP;
    if ((rc = sim_init(&s, t, cfg)))
        goto out;
    s.ttlmap = &bm;
    const uint32_t bt = t->bt;
    const uint64_t bbytes = an_block_bytes(cfg, bt);
    uint64_t distinct = distinct_blocks(t);
    /* every record the replay will make, at once (no rehashing, no moves) */
    if (distinct && bm_reserve(&bm, (size_t)distinct * (t->n_ns > 1 ? 2 : 1) + 1)) {
        rc = -ENOMEM;
        goto out;
    }
    res->simulated = s.simulated;
    res->cap_blocks[AN_DRAM] = cap_blocks_for(t, cfg, cfg->cap[AN_DRAM], distinct);
    res->cap_blocks[AN_NVME] = cfg->cap[AN_NVME] / bbytes;
    res->cap_blocks[AN_DISK] = cfg->cap[AN_DISK] / bbytes;
    rc = -ENOMEM;
    if (!(res->tenant = calloc(t->n_tenants, sizeof *res->tenant)) ||
        !(res->ttft_saved_s = calloc(t->n_req, sizeof(double))) ||
        !(pb = calloc(max_blocks(t), sizeof *pb)) ||
        (cfg->top && !(res->top = calloc(cfg->top, sizeof *res->top))))
        goto out;
    if ((rc = node_open(&s, res->cap_blocks[AN_DRAM], 1, &n)))
        goto out;

    an_costmodel(cfg, &cm);
    res->drain_s[AN_HBM] = evict_tier_drain_s(&cm.tier[AN_HBM]);
    for (int i = AN_DRAM; i < AN_TIERS; i++)
        res->drain_s[i] = cfg->cap[i] ? evict_tier_drain_s(&cm.tier[i]) : 0;

    for (size_t r = 0; r < t->n_req; r++) {
        const an_req *q = &t->req[r];
        const uint64_t *keys = &t->keys[q->keys_off];
        an_counts *tc = &res->tenant[q->tenant];
        const uint32_t nb = whole_blocks(t, q);
        const uint64_t now = q->ts_ms;
        const int64_t ttl = q->ttl_ms >= 0 ? q->ttl_ms : cfg->ttl_ms;
        size_t m;
        int nospace;
        if ((rc = node_request(&s, &n, q, &m, &nospace)))
            goto out;
        res->put_nospace += nospace;

        /* explain each block; then update the records */
        int inf_ok = 1;
        double suffix_s = 0;
        for (uint32_t i = 0; i < q->n_blocks; i++) {
            const uint64_t tk = i + 1 == q->n_blocks ? q->last_tokens : bt;
            double rs = evict_recompute_s(&cm, &em, (uint64_t)i * bt, (uint32_t)tk);
            blkrec *rec = i < nb ? bm_get(&bm, q->ns, keys[i]) : NULL;
            inf_ok = inf_ok && rec;
            if (inf_ok) {
                res->inf_hit_blocks++;
                res->inf_hit_tokens += tk;
            }
            if (rec) {
                double gap = (double)(now - rec->last_ms) / 1000.0;
                res->reuse_hist[reuse_bin(gap)]++;
                res->reuse_n++;
                for (int ti = 0; ti < AN_TIERS; ti++)
                    res->reuse_within[ti] += res->drain_s[ti] > 0 && gap <= res->drain_s[ti];
            }
            if (i < m) {
                int tier = (int)s.tiers[i];
                res->tier_hit_blocks[tier]++;
                res->tier_hit_tokens[tier] += tk;
                tc->hit_blocks++;
                tc->hit_tokens += tk;
                pb[i] = (evict_plan_block){.bytes = bbytes, .recompute_s = rs, .tier = tier};
            } else {
                an_miss c;
                if (i >= nb)
                    c = AN_MISS_PARTIAL;
                else if (!rec)
                    c = t->n_ns > 1 && bm_get(&bm, AN_ANY_NS, keys[i]) ? AN_MISS_OTHER_NS
                                                                        : AN_MISS_FIRST;
                else if (rec->deadline_ms <= now)
                    c = AN_MISS_TTL;
                else
                    c = AN_MISS_CAPACITY;
                tc->miss_blocks[c]++;
                tc->miss_tokens[c] += tk;
                suffix_s += rs;
            }
        }
        for (uint32_t i = 0; i < nb; i++) {
            int fresh;
            /* the any-namespace record first: the second put may move the records. With one
             * namespace no block can be of another namespace, so none is kept. */
            if (t->n_ns > 1 && !bm_put(&bm, AN_ANY_NS, keys[i], &fresh)) {
                rc = -ENOMEM;
                goto out;
            }
            blkrec *rec = bm_put(&bm, q->ns, keys[i], &fresh);
            if (!rec) {
                rc = -ENOMEM;
                goto out;
            }
            if (!rec->uses)
                rec->first_ms = now;
            rec->uses++;
            rec->last_ms = now;
            rec->depth = i + 1;
            rec->deadline_ms = ttl >= 0 ? now + (uint64_t)ttl : UINT64_MAX;
        }
        tc->requests++;
        tc->input_tokens += q->input_tokens;
        tc->blocks += q->n_blocks;

        /* the engine's load plan, or the "always load" reference: the same cache either way */
        evict_plan plan;
        if ((rc = (cfg->load_all ? evict_plan_load_all : evict_plan_match)(&cm, pb, m, suffix_s,
                                                                            &plan)))
            goto out;
        res->prefill_all_s += plan.all_recompute_s;
        res->prefill_cache_s += plan.total_s;
        res->ttft_saved_s[r] = plan.all_recompute_s - plan.total_s;
        res->plan_declined_blocks += plan.n_recompute;
        for (size_t i = 0; i < m; i++)
            if (pb[i].load) {
                res->compute_saved_s += pb[i].recompute_s;
                res->tier_read_bytes[pb[i].tier] += bbytes;
            }
        if (q->obs_matched[0] >= 0 || q->obs_matched[1] >= 0 || q->obs_matched[2] >= 0 ||
            q->obs_matched[3] >= 0) {
            res->obs_requests++;
            for (int ti = 0; ti < AN_TIERS; ti++)
                if (q->obs_matched[ti] > 0) {
                    res->obs_tier_blocks[ti] += (uint64_t)q->obs_matched[ti];
                    res->obs_hit_blocks += (uint64_t)q->obs_matched[ti];
                }
        }
        an_progress_step(p, 1);
    }

    for (size_t i = 0; i < t->n_tenants; i++) {
        an_counts *a = &res->total, *b = &res->tenant[i];
        a->requests += b->requests;
        a->input_tokens += b->input_tokens;
        a->hit_tokens += b->hit_tokens;
        a->blocks += b->blocks;
        a->hit_blocks += b->hit_blocks;
        for (int c = 0; c < AN_MISS_N; c++) {
            a->miss_blocks[c] += b->miss_blocks[c];
            a->miss_tokens[c] += b->miss_tokens[c];
        }
    }
    kvt_stats st;
    if ((rc = kvt_engine_stats(n.e, &st, sizeof st)))
        goto out;
    res->stored_blocks = st.blocks_stored;
    for (int i = AN_NVME; i < AN_TIERS; i++)
        res->tier_write_bytes[i] = st.tier_bytes_written[i];
    res->evicted_blocks = st.blocks_evicted;
    res->write_bytes = st.blocks_stored * bbytes;
    res->duration_s = (double)(t->req[t->n_req - 1].ts_ms - t->req[0].ts_ms) / 1000.0;
    res->usd_nocache = res->prefill_all_s * cm.gpu_usd_s;
    res->usd_cache_gpu = res->prefill_cache_s * cm.gpu_usd_s;
    for (int i = AN_DRAM; i < AN_TIERS; i++)
        res->usd_hold += (double)cfg->cap[i] * cm.tier[i].cost_byte_s * res->duration_s;
    for (size_t k = 0; k < bm.n; k++)
        if (bm.rec[k].ns != AN_ANY_NS)
            top_insert(res, cfg->top, &bm.rec[k], bt);
    rc = 0;
out:
    node_close(&n);
    bm_free(&bm);
    free(pb);
    sim_fini(&s);
    if (rc)
        an_result_free(res);
    return rc;
}

void an_result_free(an_result *res)
{
    if (!res)
        return;
    free(res->tenant);
    free(res->ttft_saved_s);
    free(res->top);
    memset(res, 0, sizeof *res);
}

/* ---------------------------------------------------------------- hits only */

/* Replay with only the TTL deadlines kept; nodes[0..k) routed by `route`. */
typedef enum { ROUTE_ONE, ROUTE_RANDOM, ROUTE_PREFIX } route;
#define AN_ROUTE_SLACK 0.10 /* prefix-aware routing: a node may run 10% above the mean load */

static int replay_nodes(const an_trace *t, const an_config *cfg, node *nodes, uint32_t k,
                        route how, sim *s, uint64_t *hit_tokens, uint64_t *hit_blocks,
                        an_progress *p)
{
    blkmap bm = {0};
    uint64_t rng = cfg->seed ? cfg->seed : 1;
    int rc = 0;
    s->ttlmap = s->ttl && how == ROUTE_ONE ? &bm : NULL;
    *hit_tokens = *hit_blocks = 0;
    for (size_t r = 0; r < t->n_req; r++) {
        const an_req *q = &t->req[r];
        uint32_t pick = 0;
        if (how == ROUTE_RANDOM) {
            rng ^= rng << 13; /* xorshift64 */
            rng ^= rng >> 7;
            rng ^= rng << 17;
            pick = (uint32_t)(rng % k);
        } else if (how == ROUTE_PREFIX) {
            /* Longest cached prefix among the nodes whose load (requests routed so far) is
             * within AN_ROUTE_SLACK of the mean; ties to the least loaded. Without the load
             * bound every request would follow the prefix shared by all (a system prompt) to
             * one node. */
            double bound = (double)r / k * (1.0 + AN_ROUTE_SLACK) + 1.0;
            size_t best = 0;
            int found = 0;
            for (uint32_t i = 0; i < k; i++) {
                size_t have = 0;
                if ((double)nodes[i].requests > bound)
                    continue;
                if ((rc = node_measure(s, &nodes[i], q, &have)))
                    goto out;
                if (!found || have > best ||
                    (have == best && nodes[i].requests < nodes[pick].requests)) {
                    best = have;
                    pick = i;
                    found = 1;
                }
            }
        }
        nodes[pick].requests++;
        size_t m;
        int nospace;
        if ((rc = node_request(s, &nodes[pick], q, &m, &nospace)))
            goto out;
        *hit_blocks += m;
        *hit_tokens += (uint64_t)m * t->bt; /* hits are whole blocks */
        if (s->ttlmap) {
            const int64_t ttl = q->ttl_ms >= 0 ? q->ttl_ms : cfg->ttl_ms;
            uint32_t nb = whole_blocks(t, q);
            for (uint32_t i = 0; i < nb; i++) {
                int fresh;
                blkrec *rec = bm_put(&bm, q->ns, t->keys[q->keys_off + i], &fresh);
                if (!rec) {
                    rc = -ENOMEM;
                    goto out;
                }
                rec->deadline_ms = ttl >= 0 ? q->ts_ms + (uint64_t)ttl : UINT64_MAX;
            }
        }
        an_progress_step(p, 1);
    }
out:
    bm_free(&bm);
    s->ttlmap = NULL;
    return rc;
}

int an_replay_hits(const an_trace *t, const an_config *cfg, uint64_t cap_blocks,
                   uint64_t *hit_tokens, uint64_t *hit_blocks, an_progress *p)
{
    sim s;
    node n;
    int rc = sim_init(&s, t, cfg);
    if (!rc && !(rc = node_open(&s, cap_blocks, 1, &n))) {
        rc = replay_nodes(t, cfg, &n, 1, ROUTE_ONE, &s, hit_tokens, hit_blocks, p);
        node_close(&n);
    }
    sim_fini(&s);
    return rc;
}

/* ---------------------------------------------------------------- capacity sweep */

static uint64_t total_input(const an_trace *t)
{
    uint64_t n = 0;
    for (size_t r = 0; r < t->n_req; r++)
        n += t->req[r].input_tokens;
    return n;
}

typedef struct sweep_ctx {
    const an_trace *t;
    const an_config *cfg;
    an_sweep *sw;
    const uint64_t *ids;
    size_t n_ids;
    uint64_t in_tok, d;
    size_t n_jobs;
    atomic_size_t next;
    atomic_int err;     /* first failure's status (0: none) */
} sweep_ctx;

/* Job j: 0 infinite capacity; then point i = (j-1)/(AN_POL_N+1), k = (j-1)%(AN_POL_N+1):
 * k < AN_POL_N the engine with policy k, k == AN_POL_N Belady and flat LRU. */
static int sweep_job(sweep_ctx *x, size_t j, an_progress *p)
{
    const an_trace *t = x->t;
    uint64_t ht, hb;
    size_t hits;
    int rc;
    an_config c = *x->cfg;
    /* one tier of cap_blocks, as Belady's bound: the sweep varies DRAM alone */
    c.cap[AN_NVME] = c.cap[AN_DISK] = 0;
    if (j == 0) {
        if ((rc = an_replay_hits(t, &c, x->d + 1, &ht, &hb, p)))
            return rc;
        x->sw->inf_hit_rate = an_rate(ht, x->in_tok);
        return 0;
    }
    an_sweep_point *pt = &x->sw->pt[(j - 1) / (AN_POL_N + 1)];
    int k = (int)((j - 1) % (AN_POL_N + 1));
    if (k < AN_POL_N) {
        if (!an_policy_in_engine((an_policy)k))
            return 0;
        c.policy = (an_policy)k;
        if ((rc = an_replay_hits(t, &c, pt->cap_blocks, &ht, &hb, p)))
            return rc;
        pt->hit_rate[k] = an_rate(ht, x->in_tok);
        return 0;
    }
    if ((rc = kvt_belady_hits(x->ids, x->n_ids, pt->cap_blocks, &hits)))
        return rc;
    pt->belady = an_rate((uint64_t)hits * t->bt, x->in_tok);
    if ((rc = kvt_lru_trace_hits(x->ids, x->n_ids, pt->cap_blocks, &hits)))
        return rc;
    pt->lru_flat = an_rate((uint64_t)hits * t->bt, x->in_tok);
    return 0;
}

static void sweep_run_jobs(sweep_ctx *x, an_progress *p)
{
    for (;;) {
        size_t j = atomic_fetch_add(&x->next, 1);
        if (j >= x->n_jobs || atomic_load(&x->err))
            return;
        int rc = sweep_job(x, j, p);
        if (rc) {
            int z = 0;
            atomic_compare_exchange_strong(&x->err, &z, rc);
        }
    }
}

static void *sweep_worker(void *arg)
{
    sweep_run_jobs(arg, NULL);
    return NULL;
}


int an_sweep_run(const an_trace *t, const an_config *cfg, uint64_t cfg_cap_blocks,
                 an_sweep *sw, an_progress *p)
{
    uint64_t *ids = NULL;
    size_t n_ids = 0;
    int rc = -ENOMEM;
    memset(sw, 0, sizeof *sw);
    const uint64_t in_tok = total_input(t);
    sw->distinct_blocks = distinct_blocks(t);
    uint64_t d = sw->distinct_blocks ? sw->distinct_blocks : 1;
    uint32_t k = cfg->sweep_points ? cfg->sweep_points : 1;
    if (!(sw->pt = calloc(k + 1, sizeof *sw->pt)))
        goto out;
    /* d >> (k-1), ..., d >> 1, d, and the configured capacity, ascending and distinct */
    for (uint32_t i = k; i-- > 0;) {
        uint64_t c = i < 64 ? d >> i : 0;
        if (c == 0)
            c = 1;
        if (sw->n && sw->pt[sw->n - 1].cap_blocks >= c)
            continue;
        sw->pt[sw->n++].cap_blocks = c;
    }
    if (cfg_cap_blocks && cfg_cap_blocks < d) {
        size_t i = 0;
        while (i < sw->n && sw->pt[i].cap_blocks < cfg_cap_blocks)
            i++;
        if (i == sw->n || sw->pt[i].cap_blocks != cfg_cap_blocks) {
            memmove(&sw->pt[i + 1], &sw->pt[i], (sw->n - i) * sizeof *sw->pt);
            sw->pt[i] = (an_sweep_point){.cap_blocks = cfg_cap_blocks};
            sw->n++;
        }
    }
    /* the flat id sequence of every whole-block access, for Belady and flat LRU */
    for (size_t r = 0; r < t->n_req; r++)
        n_ids += whole_blocks(t, &t->req[r]);
    if (!(ids = malloc((n_ids ? n_ids : 1) * sizeof *ids)))
        goto out;
    n_ids = 0;
    for (size_t r = 0; r < t->n_req; r++) {
        const an_req *q = &t->req[r];
        uint32_t nb = whole_blocks(t, q);
        for (uint32_t i = 0; i < nb; i++) {
            uint64_t key = t->keys[q->keys_off + i];
            ids[n_ids++] = t->n_ns == 1 ? key : mix64(key ^ mix64(q->ns + 1ull));
        }
    }
    /* The jobs: infinite capacity, then per point each engine policy and the two id-sequence
     * bounds. Each is independent (its own engine) and writes its own result, so they run on
     * cfg->threads threads (0: the online CPUs, at most 2 by default: the replays are memory
     * bound). Progress is reported by the first thread only. */
    sweep_ctx x = {.t = t, .cfg = cfg, .sw = sw, .ids = ids, .n_ids = n_ids, .in_tok = in_tok,
                   .d = d};
    x.n_jobs = 1 + sw->n * (AN_POL_N + 1);
    for (size_t i = 0; i < sw->n; i++)
        for (int pol = 0; pol < AN_POL_N; pol++)
            sw->pt[i].hit_rate[pol] = NAN;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t nt = cfg->threads ? cfg->threads : (ncpu > 1 ? 2 : 1);
    if (nt > x.n_jobs)
        nt = (uint32_t)x.n_jobs;
    pthread_t th[64];
    if (nt > 64)
        nt = 64;
    uint32_t started = 0;
    for (uint32_t i = 1; i < nt; i++) {
        if (pthread_create(&th[i], NULL, sweep_worker, &x))
            break; /* fewer threads: the jobs still all run */
        started++;
    }
    sweep_run_jobs(&x, p);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(th[i + 1], NULL);
    if ((rc = atomic_load(&x.err)))
        goto out;
    rc = 0;
out:
    free(ids);
    if (rc)
        an_sweep_free(sw);
    return rc;
}

void an_sweep_free(an_sweep *sw)
{
    if (!sw)
        return;
    free(sw->pt);
    memset(sw, 0, sizeof *sw);
}

/* ---------------------------------------------------------------- multi-node */

static double imbalance(const node *nodes, uint32_t k, size_t n_req)
{
    uint64_t mx = 0;
    for (uint32_t i = 0; i < k; i++)
        if (nodes[i].requests > mx)
            mx = nodes[i].requests;
    return n_req ? (double)mx * k / (double)n_req : 0;
}

int an_multinode_run(const an_trace *t, const an_config *cfg, uint64_t node_cap_blocks,
                     an_multinode *mn, an_progress *p)
{
    sim s;
    node *nodes = NULL;
    uint32_t k = cfg->nodes;
    int rc;
    memset(mn, 0, sizeof *mn);
    mn->nodes = k;
    mn->node_cap_blocks = node_cap_blocks;
    mn->seed = cfg->seed ? cfg->seed : 1;
    if (!k)
        return 0;
    const uint64_t in_tok = total_input(t);
    if ((rc = sim_init(&s, t, cfg)))
        goto out;
    s.ttl = 0; /* TTLs are not simulated across nodes (docs/analytics.md) */
    uint64_t pool_cap = node_cap_blocks * k, d = distinct_blocks(t);
    if (pool_cap > d + 1)
        pool_cap = d + 1;
    rc = -ENOMEM;
    if (!(nodes = calloc(k, sizeof *nodes)))
        goto out;
    for (route how = ROUTE_RANDOM; how <= ROUTE_PREFIX; how++) {
        uint64_t ht = 0, hb = 0;
        for (uint32_t i = 0; i < k; i++)
            if ((rc = node_open(&s, node_cap_blocks, 1, &nodes[i])))
                goto out;
        rc = replay_nodes(t, cfg, nodes, k, how, &s, &ht, &hb, p);
        double imb = imbalance(nodes, k, t->n_req);
        for (uint32_t i = 0; i < k; i++)
            node_close(&nodes[i]);
        if (rc)
            goto out;
        if (how == ROUTE_RANDOM) {
            mn->hit_random = an_rate(ht, in_tok);
            mn->imbalance_random = imb;
        } else {
            mn->hit_prefix = an_rate(ht, in_tok);
            mn->imbalance_prefix = imb;
        }
    }
    {
        uint64_t ht = 0, hb = 0;
        if ((rc = node_open(&s, pool_cap, k, &nodes[0])))
            goto out;
        rc = replay_nodes(t, cfg, nodes, 1, ROUTE_ONE, &s, &ht, &hb, p);
        node_close(&nodes[0]);
        if (rc)
            goto out;
        mn->hit_pool = an_rate(ht, in_tok);
    }
out:
    if (nodes)
        for (uint32_t i = 0; i < k; i++)
            node_close(&nodes[i]);
    free(nodes);
    sim_fini(&s);
    return rc;
}
