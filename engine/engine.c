/*
 * engine.c — the facade: ties the prefix index (radix/), the DRAM tier (tiers/), the LRU
 * policy (evict/) and CUDA host pinning (gpu/) into the public API of kvtier.h.
 *
 * Ownership and the persistent tiers: engine/internal.h; tiering in tiering.c, warm restart
 * in restart.c. This file keeps the DRAM-only path exactly as it was before the tiers.
 *
 * Locking: one mutex (eng->lock) guards everything above. Byte copies run outside it:
 *  - put: insert the new blocks as a pending leaf (invisible, unevictable), allocate their
 *    slots, unlock, copy, lock, publish. Invariant 3: visible only once complete.
 *  - read: a lease pins its nodes (pins > 0: never evicted, split nodes copy pins), and its
 *    snapshot of block locations stays valid while pinned. Invariant 4.
 * Counters changed outside the lock (bytes_read, bytes_written) are atomics.
 *
 * Eviction: each tenant's LRU list holds its nodes. Every access touches the whole path,
 * deepest first, so the stale end is always a leaf (see evict/lru.h); evict_one() drops the
 * last block of the least recently used unpinned, published leaf of the same tenant only
 * (invariant 5: tenants never evict each other's blocks).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "gpu/gpu.h"

/* ---------------------------------------------------------------- status, version */

KVT_EXPORT const char *kvt_strerror(int status)
{
    switch (status) {
    case KVT_OK: return "success";
    case KVT_EBADLAYOUT: return "invalid KV layout, or not the namespace's layout";
    case KVT_ESIZE: return "buffer size does not match the namespace's block size";
    case KVT_EMODE: return "token call on a key namespace, or key call on a token namespace";
    case KVT_ENAME: return "name or tenant is empty or longer than 255 bytes";
    case KVT_ELEASES: return "the engine still has open leases";
    case KVT_ECORRUPT: return "a block read from nvme/disk failed verification (dropped)";
    case KVT_ECATALOG: return "the persistent catalog failed";
    case -EINVAL: return "invalid argument (NULL pointer or out-of-range value)";
    case -ENOMEM: return "out of memory";
    case -ENOSPC: return "no space: the tier is full and nothing of this tenant can be evicted";
    case -EBUSY: return "busy: in use by a lease or a put in flight";
    case -ERANGE: return "block index outside the lease";
    case -ENODATA: return "no data: a block the put needs was NULL, or a simulation read";
    case -ENODEV: return "no usable GPU";
    case -ENOENT: return "not cached";
    case -EIO: return "I/O error";
    case -EAGAIN: return "try again: another operation on this prefix is in flight";
    case -EBADMSG: return "corrupt record";
    case -EEXIST: return "already exists";
    default: return "unknown kvtier status";
    }
}

KVT_EXPORT const char *kvt_version(void) { return "0.1.0"; }

/* ---------------------------------------------------------------- layouts */

static uint64_t dtype_size(kvt_dtype d)
{
    switch (d) {
    case KVT_DTYPE_FP16:
    case KVT_DTYPE_BF16: return 2;
    case KVT_DTYPE_FP32: return 4;
    case KVT_DTYPE_FP8: return 1;
    }
    return 0;
}

KVT_EXPORT int kvt_parse_size(const char *s, uint64_t *bytes) { return util_parse_size(s, bytes); }

KVT_EXPORT uint64_t kvt_layout_block_bytes(const kvt_layout *l)
{
    if (!l || !l->layers || !l->kv_heads || !l->head_dim || !dtype_size(l->dtype))
        return 0;
    if (l->block_tokens == 0 || l->block_tokens > 4096 || (l->block_tokens & (l->block_tokens - 1)))
        return 0;
    /* Each factor < 2^32, checked product against 2^32 step by step. */
    uint64_t b = dtype_size(l->dtype) * 2 * l->block_tokens;
    const uint32_t f[3] = {l->layers, l->kv_heads, l->head_dim};
    for (int i = 0; i < 3; i++) {
        if (b > UINT32_MAX / f[i])
            return 0;
        b *= f[i];
    }
    return b;
}

/* ---------------------------------------------------------------- options */

KVT_EXPORT int kvt_options_create(kvt_options **out)
{
    if (!out)
        return -EINVAL;
    kvt_options *o = util_calloc(1, sizeof *o);
    if (!o)
        return -ENOMEM;
    o->dram_bytes = 1ull << 30;
    o->hugepages = KVT_HUGEPAGES_AUTO;
    o->cuda_pin = 1;
    o->tier_capacity[RADIX_TIER_DISK] = 1ull << 30;
    o->backpressure_ms = 2000;
    *out = o;
    return 0;
}

KVT_EXPORT void kvt_options_destroy(kvt_options *o)
{
    if (!o)
        return;
    util_free(o->data_dir);
    for (int t = 0; t < RADIX_TIERS; t++)
        util_free(o->tier_path[t]);
    eremote_opts_free(o); /* engine/remote.c */
    util_free(o);
}

KVT_EXPORT int kvt_options_set_dram_bytes(kvt_options *o, uint64_t bytes)
{
    if (!o || !bytes)
        return -EINVAL;
    o->dram_bytes = bytes;
    return 0;
}

KVT_EXPORT int kvt_options_set_dram_slot_bytes(kvt_options *o, uint64_t slot)
{
    if (!o || (slot && (slot % 64 || slot > (1ull << 30))))
        return -EINVAL;
    o->dram_slot_bytes = slot;
    return 0;
}

KVT_EXPORT int kvt_options_set_hugepages(kvt_options *o, kvt_hugepages mode)
{
    if (!o || (mode != KVT_HUGEPAGES_AUTO && mode != KVT_HUGEPAGES_OFF && mode != KVT_HUGEPAGES_ON))
        return -EINVAL;
    o->hugepages = mode;
    return 0;
}

KVT_EXPORT int kvt_options_set_dram_prefault(kvt_options *o, int on)
{
    if (!o)
        return -EINVAL;
    o->dram_prefault = !!on;
    return 0;
}

KVT_EXPORT int kvt_options_set_cuda_pin(kvt_options *o, int on)
{
    if (!o)
        return -EINVAL;
    o->cuda_pin = !!on;
    return 0;
}

/* Replace *slot with a copy of s (NULL clears). */
static int set_str(char **slot, const char *s)
{
    char *d = NULL;
    if (s && !(d = dup_str(s)))
        return -ENOMEM;
    util_free(*slot);
    *slot = d;
    return 0;
}

KVT_EXPORT int kvt_options_set_data_dir(kvt_options *o, const char *dir)
{
    if (!o || (dir && !dir[0]))
        return -EINVAL;
    return set_str(&o->data_dir, dir);
}

KVT_EXPORT int kvt_options_set_tier(kvt_options *o, kvt_tier tier, const char *path,
                                    uint64_t capacity, uint64_t bw)
{
    if (!o || (tier != KVT_TIER_NVME && tier != KVT_TIER_DISK) || (path && !path[0]))
        return -EINVAL;
    int rc = set_str(&o->tier_path[tier], path);
    if (rc)
        return rc;
    o->tier_capacity[tier] = capacity;
    o->tier_bw[tier] = bw;
    return 0;
}

KVT_EXPORT int kvt_options_set_io_depth(kvt_options *o, unsigned depth)
{
    if (!o || depth < 1 || depth > IO_MAX_QD)
        return -EINVAL;
    o->io_depth = depth;
    return 0;
}

KVT_EXPORT int kvt_options_set_io_force_pool(kvt_options *o, int on)
{
    if (!o)
        return -EINVAL;
    o->force_pool = !!on;
    return 0;
}

KVT_EXPORT int kvt_options_set_background_nice(kvt_options *o, int nice)
{
    if (!o || nice < 0 || nice > 19)
        return -EINVAL;
    o->wt_nice = nice;
    return 0;
}

KVT_EXPORT int kvt_options_set_persist_delay_ms(kvt_options *o, uint32_t ms)
{
    if (!o)
        return -EINVAL;
    o->persist_delay_ms = ms;
    return 0;
}

KVT_EXPORT int kvt_options_set_backpressure_ms(kvt_options *o, uint32_t ms)
{
    if (!o)
        return -EINVAL;
    o->backpressure_ms = ms;
    return 0;
}

KVT_EXPORT int kvt_options_set_simulate(kvt_options *o, int on)
{
    if (!o)
        return -EINVAL;
    o->simulate = !!on;
    return 0;
}

KVT_EXPORT int kvt_options_set_log(kvt_options *o, kvt_log_fn fn, void *arg)
{
    if (!o)
        return -EINVAL;
    o->log_fn = fn;
    o->log_arg = arg;
    return 0;
}

/* A deep copy the engine keeps. */
static kvt_options *options_dup(const kvt_options *src)
{
    kvt_options *o = util_calloc(1, sizeof *o);
    if (!o)
        return NULL;
    *o = *src;
    o->data_dir = NULL;
    for (int t = 0; t < RADIX_TIERS; t++)
        o->tier_path[t] = NULL;
    o->rcfg = NULL; /* the remote tier reads the caller's options at open */
    if (set_str(&o->data_dir, src->data_dir))
        goto fail;
    for (int t = 0; t < RADIX_TIERS; t++)
        if (set_str(&o->tier_path[t], src->tier_path[t]))
            goto fail;
    return o;
fail:
    kvt_options_destroy(o);
    return NULL;
}

/* ---------------------------------------------------------------- engine */

KVT_EXPORT int kvt_engine_open(const kvt_options *opts, kvt_engine **out)
{
    kvt_options defaults;
    kvt_options *dflt = NULL;
    int rc;
    if (!out)
        return -EINVAL;
    if (!opts) {
        if ((rc = kvt_options_create(&dflt)))
            return rc;
        defaults = *dflt;
        util_free(dflt); /* holds no strings */
        opts = &defaults;
    }
    kvt_engine *e = util_calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    if (opts->log_fn) { /* before anything that may log (io/, restart) */
        io_set_log(opts->log_fn, opts->log_arg);
        e->log_hooked = 1;
    }
    if ((rc = pthread_mutex_init(&e->lock, NULL))) {
        util_free(e);
        return -rc;
    }
    /* simulation: slot accounting only, no arena (engine/sim.c) */
    rc = opts->simulate ? dram_open_virtual(opts->dram_bytes, opts->dram_slot_bytes, &e->dram)
                        : dram_open(opts->dram_bytes, opts->dram_slot_bytes, opts->hugepages,
                                    &e->dram);
    if (rc)
        goto fail;
    if (!opts->simulate && opts->dram_prefault && (rc = dram_prefault(e->dram)))
        goto fail;
    if (!opts->simulate && opts->cuda_pin &&
        gpu_host_register(dram_base(e->dram), dram_map_bytes(e->dram)) == 0)
        e->cuda_pinned = 1;
    policy_init(e, opts); /* engine/policy.c */
    if ((rc = hbm_open(e, opts))) /* the HBM tier (engine/hbm.c) */
        goto fail_dram;
    if ((rc = eremote_open(e, opts))) /* the shared remote tier (engine/remote.c) */
        goto fail_dram;
    if (opts->data_dir || opts->simulate) {
        /* The tiered engine: everything it adds lives in tiering.c and restart.c. */
        e->opts = options_dup(opts);
        if (!e->opts) {
            rc = -ENOMEM;
            goto fail_dram;
        }
        e->tiered = 1;
        e->simulate = opts->simulate;
        if ((rc = tiers_open(e))) /* closes what it opened on failure, frees e->opts */
            goto fail_dram;
    }
    *out = e;
    return 0;
fail_dram:
    eremote_close(e);
    hbm_close(e);
    if (e->cuda_pinned)
        gpu_host_unregister(dram_base(e->dram));
    dram_close(e->dram);
fail:
    pthread_mutex_destroy(&e->lock);
    if (e->log_hooked)
        io_set_log(NULL, NULL);
    util_free(e);
    return rc;
}

/* Free the namespaces, tenants and arena. */
static void engine_free(kvt_engine *e)
{
    for (kvt_ns *ns = e->nss, *next; ns; ns = next) {
        next = ns->next;
        radix_destroy(ns->tree);
        util_free(ns->name);
        util_free(ns);
    }
    for (tenant *t = e->tenants, *next; t; t = next) {
        next = t->next;
        util_free(t->name);
        util_free(t);
    }
    hbm_close(e); /* before the arena it may copy from is unregistered */
    if (e->cuda_pinned)
        gpu_host_unregister(dram_base(e->dram));
    dram_close(e->dram);
    pthread_mutex_destroy(&e->lock);
    util_free(e);
}

KVT_EXPORT int kvt_engine_close(kvt_engine *e)
{
    if (!e)
        return -EINVAL;
    pthread_mutex_lock(&e->lock);
    uint64_t open = e->leases_open;
    pthread_mutex_unlock(&e->lock);
    if (open)
        return KVT_ELEASES;
    eremote_close(e); /* finish the remote write-through queue, unpin */
    int rc = 0;
    if (e->tiered)
        rc = tiers_close(e); /* prefetches, flush, threads, catalog, tier files */
    int hooked = e->log_hooked;
    engine_free(e);
    if (hooked)
        io_set_log(NULL, NULL);
    return rc;
}

int check_name(const char *s)
{
    if (!s)
        return -EINVAL;
    size_t n = strnlen(s, KVT_NAME_MAX + 1);
    return n == 0 || n > KVT_NAME_MAX ? KVT_ENAME : 0;
}

char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = util_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* The tenant called name, created if absent. Lock held. NULL on -ENOMEM. */
tenant *tenant_get(kvt_engine *e, const char *name)
{
    for (tenant *t = e->tenants; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    tenant *t = util_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (!(t->name = dup_str(name))) {
        util_free(t);
        return NULL;
    }
    evict_lru_init(&t->lru);
    for (int i = 0; i < RADIX_TIERS; i++)
        util_list_init(&t->tl[i]);
    t->next = e->tenants;
    e->tenants = t;
    return t;
}

/* ---------------------------------------------------------------- eviction */

static int evictable(util_list *l, void *ctx)
{
    (void)ctx;
    radix_node *n = UTIL_CONTAINER_OF(l, radix_node, lru);
    return n->pins == 0 && !(n->flags & RADIX_PENDING) && n->n_kids == 0 && n->n_blocks > 0;
}

/* DRAM-only engines: drop the tenant's least recently used unpinned block (the last block of
 * the stalest leaf). Lock held. 1 if one was dropped. */
static int evict_one(kvt_engine *e, tenant *tn)
{
    radix_node *n;
    if (e->policy != EVICT_POLICY_LRU) { /* lfu, drain: engine/policy.c */
        if (!(n = policy_pick(e, tn, -1, NULL)))
            return 0;
    } else {
        util_list *l = evict_lru_oldest(&tn->lru, evictable, NULL);
        if (!l)
            return 0;
        n = UTIL_CONTAINER_OF(l, radix_node, lru);
    }
    kvt_ns *ns = n->owner;
    blk_release_all(ns, n, &n->blocks[n->n_blocks - 1]);
    radix_trim(ns->tree, n, n->n_blocks - 1);
    e->blocks_evicted++;
    e->blocks_cached--;
    return 1;
}

/* tiering.c's split bookkeeping, then the HBM tier's (engine/hbm.c) */
static void on_split(void *ctx, radix_node *upper, radix_node *lower)
{
    on_node_split(ctx, upper, lower);
    hbm_on_split(ctx, upper);
}

static void on_node_free(void *ctx, radix_node *n)
{
    kvt_ns *ns = ctx;
    evict_lru_remove(&ns->tn->lru, &n->lru);
    node_tiers_unlink(n);
}

int dram_alloc_once(kvt_ns *ns, uint32_t *slot)
{
    tenant *tn = ns->tn;
    uint64_t need = dram_block_bytes(ns);
    if (tn->quota && tn->used + need > tn->quota)
        return -ENOSPC;
    int rc = dram_alloc(ns->eng->dram, ns->block_bytes, slot);
    if (rc == 0)
        tn->used += need;
    return rc;
}

/* Allocate DRAM for one block of ns, evicting the tenant's own blocks while the tier is full
 * or the tenant is over its quota. Lock held (a tiered engine may wait on it). */
static int alloc_block(kvt_ns *ns, uint32_t *slot)
{
    kvt_engine *e = ns->eng;
    tenant *tn = ns->tn;
    if (e->tiered)
        return tiered_alloc_dram(ns, slot, 1);
    if (tn->quota && dram_block_bytes(ns) > tn->quota)
        return -ENOSPC;
    int rc;
    while ((rc = dram_alloc_once(ns, slot)) == -ENOSPC)
        if (!evict_one(e, tn))
            return -ENOSPC;
    return rc;
}

KVT_EXPORT int kvt_tenant_set_quota(kvt_engine *e, const char *name, kvt_tier tier,
                                    uint64_t bytes)
{
    int rc;
    if (!e || (tier != KVT_TIER_DRAM && tier != KVT_TIER_NVME && tier != KVT_TIER_DISK))
        return -EINVAL;
    if ((rc = check_name(name)))
        return rc;
    pthread_mutex_lock(&e->lock);
    tenant *t = tenant_get(e, name);
    if (!t) {
        rc = -ENOMEM;
    } else if (tier == KVT_TIER_DRAM) {
        t->quota = bytes;
        if (e->tiered)
            while (bytes && t->used > bytes && tiered_evict_dram(e, t, 1))
                ;
        else
            while (bytes && t->used > bytes && evict_one(e, t))
                ;
    } else {
        /* nvme/disk: enforced by the write-through when it next needs space there */
        t->tquota[tier] = bytes;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

KVT_EXPORT int kvt_tenant_set_dram_quota(kvt_engine *e, const char *name, uint64_t bytes)
{
    return kvt_tenant_set_quota(e, name, KVT_TIER_DRAM, bytes);
}

/* ---------------------------------------------------------------- namespaces */

/* Create namespace (name, tenant) with catalog id `id`. Lock held; the caller checked that
 * it does not exist. */
int ns_create_locked(kvt_engine *e, const char *name, const char *tenant_name,
                     const kvt_layout *layout, unsigned flags, uint32_t id, kvt_ns **out)
{
    int rc = -ENOMEM;
    uint64_t bb = kvt_layout_block_bytes(layout);
    if (!bb)
        return KVT_EBADLAYOUT;
    kvt_ns *ns = util_calloc(1, sizeof *ns);
    if (!ns)
        goto fail;
    ns->eng = e;
    ns->layout = *layout;
    ns->flags = flags;
    ns->id = id;
    ns->bt = layout->block_tokens;
    ns->bu = (flags & KVT_NS_KEYS) ? 2 : layout->block_tokens;
    ns->block_bytes = bb;
    if (!(ns->name = dup_str(name)) || !(ns->tn = tenant_get(e, tenant_name)))
        goto fail;
    radix_hooks hooks = {on_node_free, ns, on_split};
    if ((flags & KVT_NS_KEYS))
        rc = radix_create(2, RADIX_KEYS, &hooks, &ns->tree);
    else
        rc = radix_create(layout->block_tokens, 0, &hooks, &ns->tree);
    if (rc)
        goto fail;
    /* The first namespace fixes a deferred slot size: its block size, 64-byte aligned
     * (4096-aligned with persistent tiers, so a slot can take an O_DIRECT read). */
    uint64_t align = e->tiered && !e->simulate ? 4095 : 63;
    if (dram_slot_bytes(e->dram) == 0 &&
        (rc = dram_set_slot_bytes(e->dram, (bb + align) & ~align))) {
        rc = rc == -EINVAL ? KVT_EBADLAYOUT : rc;
        goto fail;
    }
    ns->next = e->nss;
    e->nss = ns;
    e->n_ns++;
    *out = ns;
    return 0;
fail:
    if (ns) {
        radix_destroy(ns->tree);
        util_free(ns->name);
        util_free(ns);
    }
    return rc;
}

/* The namespace (name, tenant) if open: 0 and *out, KVT_EBADLAYOUT (other layout), or 1 when
 * absent. Lock held. */
static int ns_find(kvt_engine *e, const char *name, const char *tenant_name,
                   const kvt_layout *layout, unsigned flags, kvt_ns **out)
{
    for (kvt_ns *ns = e->nss; ns; ns = ns->next) {
        if (strcmp(ns->name, name) || strcmp(ns->tn->name, tenant_name))
            continue;
        bool same = ns->flags == flags && ns->layout.layers == layout->layers &&
                    ns->layout.kv_heads == layout->kv_heads &&
                    ns->layout.head_dim == layout->head_dim && ns->layout.dtype == layout->dtype &&
                    ns->layout.block_tokens == layout->block_tokens;
        *out = same ? ns : NULL;
        return same ? 0 : KVT_EBADLAYOUT;
    }
    return 1;
}

KVT_EXPORT int kvt_ns_open(kvt_engine *e, const char *name, const char *tenant_name,
                           const kvt_layout *layout, unsigned flags, kvt_ns **out)
{
    int rc;
    if (!e || !layout || !out || (flags & ~KVT_NS_KEYS))
        return -EINVAL;
    if ((rc = check_name(name)) || (rc = check_name(tenant_name)))
        return rc;
    if (!kvt_layout_block_bytes(layout))
        return KVT_EBADLAYOUT;

    if (!e->tiered) {
        pthread_mutex_lock(&e->lock);
        rc = ns_find(e, name, tenant_name, layout, flags, out);
        if (rc == 1)
            rc = ns_create_locked(e, name, tenant_name, layout, flags, 0, out);
        pthread_mutex_unlock(&e->lock);
        return rc;
    }
    /* Tiered: ns_lock serialises creations; the catalog write runs without the engine lock. */
    pthread_mutex_lock(&e->ns_lock);
    pthread_mutex_lock(&e->lock);
    rc = ns_find(e, name, tenant_name, layout, flags, out);
    pthread_mutex_unlock(&e->lock);
    if (rc != 1)
        goto out;
    uint32_t id = e->next_ns_id;
    if (e->cat) {
        catalog_ns cn;
        memset(&cn, 0, sizeof cn);
        cn.id = id;
        cn.flags = flags;
        cn.layout = *layout;
        snprintf(cn.name, sizeof cn.name, "%s", name);
        snprintf(cn.tenant, sizeof cn.tenant, "%s", tenant_name);
        if ((rc = catalog_ns_put(e->cat, &cn)))
            goto out_cat;
    }
    pthread_mutex_lock(&e->lock);
    rc = ns_create_locked(e, name, tenant_name, layout, flags, id, out);
    pthread_mutex_unlock(&e->lock);
    if (rc == 0) {
        e->next_ns_id++;
        tiers_nvme_ready(e); /* failure leaves the engine on disk only (logged) */
    }
out:
    pthread_mutex_unlock(&e->ns_lock);
    return rc;
out_cat:
    pthread_mutex_unlock(&e->ns_lock);
    *out = NULL;
    return catalog_status(rc);
}

KVT_EXPORT int kvt_block_keys(const kvt_ns *ns, const uint32_t *tokens, size_t n_tokens,
                              uint64_t *keys)
{
    if (!ns || (n_tokens && (!tokens || !keys)))
        return -EINVAL;
    if (ns->flags & KVT_NS_KEYS)
        return KVT_EMODE;
    radix_keys(ns->tree, tokens, n_tokens / ns->bt, keys); /* reads immutable tree fields */
    return 0;
}

/* ---------------------------------------------------------------- match, read, release */

/* Mark a path used now: deepest node first, so ancestors end up fresher (leaf-first LRU),
 * in the tenant's list and in each tier list the node is on. */
void touch_path(kvt_ns *ns, const radix_path *p, bool hit)
{
    uint64_t now = ++ns->eng->clock;
    double now_s = policy_now_s(ns->eng);
    tenant *tn = ns->tn;
    for (uint32_t i = p->n; i-- > 0;) {
        radix_node *n = p->nodes[i];
        n->owner = ns;
        n->last_access = now;
        n->hits += hit;
        policy_touch(ns, n, now_s);
        evict_lru_touch(&tn->lru, &n->lru);
        for (int t = RADIX_TIER_DRAM; t < RADIX_TIERS; t++)
            if (n->tcount[t]) {
                util_list_del(&n->tlink[t]);
                util_list_add_tail(&tn->tl[t], &n->tlink[t]);
            }
    }
}

/* Cut a path before its first BLK_BAD block (a block that failed verification stays in the
 * index while pinned, but no new match may reach it). */
static void path_cut_bad(radix_path *p)
{
    uint64_t blocks = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        radix_node *n = p->nodes[i];
        uint32_t use = i + 1 == p->n ? p->last_blocks : n->n_blocks;
        if (n->eflags & NODE_HAS_BAD)
            for (uint32_t j = 0; j < use; j++)
                if (n->blocks[j].flags & BLK_BAD) {
                    if (j == 0) {
                        p->n = i;
                        p->last_blocks = i ? p->nodes[i - 1]->n_blocks : 0;
                    } else {
                        p->n = i + 1;
                        p->last_blocks = j;
                        blocks += j;
                    }
                    p->blocks = blocks;
                    return;
                }
        blocks += use;
    }
}

/*
 * The path of units[0 .. nb) that a lookup may use: matched (split where it ends when split:
 * a reader's recency and pins stay exact per node; a failed split, -ENOMEM, still leaves a
 * correct, unsplit match, which only makes a pin stricter), cut before a block that failed
 * verification and, past its TTL, before an expired one (dropped lazily when drop). Lock
 * held.
 */
static int match_path_locked(kvt_ns *ns, const uint32_t *units, size_t nb, int split, int drop,
                             radix_path *path)
{
    kvt_engine *e = ns->eng;
    int rc = radix_match(ns->tree, units, nb, split ? RADIX_SPLIT : 0, path);
    if (rc == -ENOMEM && path->n && path->last_blocks != path->nodes[path->n - 1]->n_blocks)
        rc = 0;
    if (rc)
        return rc;
    if (e->tiered)
        path_cut_bad(path);
    if (e->has_ttl)
        policy_cut_expired(ns, path, drop); /* a miss */
    return 0;
}

/* A lookup of nb blocks that matched got, in kvt_stats. Lock held. */
static void count_lookup(kvt_ns *ns, size_t nb, size_t got)
{
    kvt_engine *e = ns->eng;
    e->lookups++;
    e->lookup_tokens += nb * ns->bt;
    e->hit_tokens += got * ns->bt;
}

int match_units_lease(kvt_ns *ns, const uint32_t *units, size_t nb, size_t *matched,
                      kvt_lease **lease_out, int internal)
{
    kvt_engine *e = ns->eng;
    radix_path path;
    int rc;
    radix_path_init(&path);
    if (lease_out)
        *lease_out = NULL;
    pthread_mutex_lock(&e->lock);
    /* a lease splits and drops expired blocks; a bare measurement changes nothing */
    rc = match_path_locked(ns, units, nb, lease_out != NULL, lease_out != NULL, &path);
    if (rc)
        goto out;
    size_t got = path.blocks;
    if (lease_out && got) {
        kvt_lease *l = util_malloc(sizeof *l + got * sizeof(radix_block));
        if (!l) {
            touch_path(ns, &path, false); /* a split above must still join the LRU list */
            rc = -ENOMEM;
            goto out;
        }
        l->ns = ns;
        l->deepest = path.nodes[path.n - 1];
        l->n_blocks = got;
        l->internal = internal;
        l->hbm = NULL;
        size_t k = 0;
        for (uint32_t i = 0; i < path.n; i++) {
            radix_node *n = path.nodes[i];
            uint32_t use = i + 1 == path.n ? path.last_blocks : n->n_blocks;
            memcpy(&l->blocks[k], n->blocks, use * sizeof(radix_block));
            k += use;
            n->pins++;
        }
        if (!internal) {
            touch_path(ns, &path, true);
            e->leases_open++;
        }
        *lease_out = l;
    }
    if (lease_out && !internal)
        count_lookup(ns, nb, got);
    if (matched)
        *matched = got;
out:
    pthread_mutex_unlock(&e->lock);
    radix_path_free(&path);
    return rc;
}

KVT_EXPORT int kvt_match(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens, size_t *matched,
                         kvt_lease **lease)
{
    if (lease)
        *lease = NULL;
    if (!ns || (n_tokens && !tokens))
        return -EINVAL;
    if (ns->flags & KVT_NS_KEYS)
        return KVT_EMODE;
    size_t blocks = 0;
    if (lease && ns->eng->rem) /* fetch what the shared remote tier adds (engine/remote.c) */
        eremote_fill(ns, tokens, n_tokens / ns->bt);
    int rc = match_units_lease(ns, tokens, n_tokens / ns->bt, &blocks, lease, 0);
    if (matched)
        *matched = rc ? 0 : blocks * ns->bt;
    return rc;
}

KVT_EXPORT int kvt_match_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys, size_t *matched,
                              kvt_lease **lease)
{
    if (lease)
        *lease = NULL;
    if (!ns || (n_keys && !keys))
        return -EINVAL;
    if (!(ns->flags & KVT_NS_KEYS))
        return KVT_EMODE;
    size_t blocks = 0;
    /* A little-endian uint64_t array is the key tree's pairs of uint32 units, low word first. */
    if (lease && ns->eng->rem)
        eremote_fill(ns, (const uint32_t *)(const void *)keys, n_keys);
    int rc = match_units_lease(ns, (const uint32_t *)(const void *)keys, n_keys, &blocks, lease, 0);
    if (matched)
        *matched = rc ? 0 : blocks;
    return rc;
}

KVT_EXPORT size_t kvt_lease_blocks(const kvt_lease *l) { return l ? l->n_blocks : 0; }

KVT_EXPORT size_t kvt_lease_tokens(const kvt_lease *l)
{
    return l ? l->n_blocks * l->ns->bt : 0;
}

KVT_EXPORT int kvt_lease_block_key(const kvt_lease *l, size_t i, uint64_t *key)
{
    if (!l || !key)
        return -EINVAL;
    if (i >= l->n_blocks)
        return -ERANGE;
    *key = l->blocks[i].key;
    return 0;
}

KVT_EXPORT int kvt_lease_block_tier(const kvt_lease *l, size_t i, kvt_tier *tier)
{
    if (!l || !tier)
        return -EINVAL;
    if (i >= l->n_blocks)
        return -ERANGE;
    kvt_engine *e = l->ns->eng;
    pthread_mutex_lock(&e->lock);
    radix_block *b = blk_at_depth(l->deepest, i, NULL);
    int t = RADIX_TIER_HBM; /* slot[HBM] is set only with an HBM tier (engine/hbm.c) */
    while (t < RADIX_TIER_DISK && b->slot[t] == RADIX_NO_SLOT)
        t++;
    pthread_mutex_unlock(&e->lock);
    *tier = (kvt_tier)t;
    return 0;
}

/* Copy blocks [first, first+n) to dst[i] or, with dst == NULL, to base + i * block_bytes. */
static int read_blocks(kvt_lease *l, size_t first, size_t n, void *const *dst, char *base)
{
    if (first > l->n_blocks || n > l->n_blocks - first)
        return -ERANGE;
    if (dst)
        for (size_t i = 0; i < n; i++)
            if (!dst[i])
                return -EINVAL;
    kvt_engine *e = l->ns->eng;
    uint64_t bb = l->ns->block_bytes;
    if (e->simulate) /* promotions accounted, no bytes (engine/sim.c) */
        return n ? sim_read(l, first, n) : 0;
    for (size_t i = 0; i < n; i++) {
        void *to = dst ? dst[i] : base + i * bb;
        uint32_t slot = l->blocks[first + i].slot[RADIX_TIER_DRAM];
        if (slot != RADIX_NO_SLOT) {
            dram_read(e->dram, slot, to, bb);
        } else {
            int rc = tier_fetch(l, first + i, to);
            if (rc) {
                atomic_fetch_add(&e->bytes_read, i * bb);
                return rc;
            }
        }
    }
    atomic_fetch_add(&e->bytes_read, n * bb);
    return 0;
}

KVT_EXPORT int kvt_read(kvt_lease *l, size_t first, size_t n, void *const *dst)
{
    if (!l || (n && !dst))
        return -EINVAL;
    return read_blocks(l, first, n, dst, NULL);
}

KVT_EXPORT int kvt_read_contig(kvt_lease *l, size_t first, size_t n, void *dst, size_t dst_bytes)
{
    if (!l || (n && !dst))
        return -EINVAL;
    if (n > SIZE_MAX / l->ns->block_bytes || dst_bytes != n * l->ns->block_bytes)
        return KVT_ESIZE;
    return read_blocks(l, first, n, NULL, dst);
}

KVT_EXPORT int kvt_lease_block_ptr(kvt_lease *l, size_t i, const void **ptr)
{
    if (!l || !ptr)
        return -EINVAL;
    *ptr = NULL;
    if (i >= l->n_blocks)
        return -ERANGE;
    kvt_engine *e = l->ns->eng;
    uint32_t slot = l->blocks[i].slot[RADIX_TIER_DRAM];
    if (e->simulate || slot == RADIX_NO_SLOT)
        return -ENOENT;
    const void *p = dram_chain_ptr(e->dram, slot, l->ns->block_bytes);
    if (!p)
        return -ENOENT;
    *ptr = p;
    return 0;
}

KVT_EXPORT int kvt_read_range(kvt_lease *l, size_t block, size_t offset, void *dst, size_t len)
{
    if (!l || (len && !dst))
        return -EINVAL;
    if (block >= l->n_blocks)
        return -ERANGE;
    kvt_engine *e = l->ns->eng;
    uint64_t bb = l->ns->block_bytes;
    if (offset > bb || len > bb - offset)
        return KVT_ESIZE;
    if (e->simulate)
        return sim_read(l, block, 1);
    uint32_t slot = l->blocks[block].slot[RADIX_TIER_DRAM];
    if (slot != RADIX_NO_SLOT) {
        dram_read_at(e->dram, slot, offset, dst, len);
    } else { /* nvme/disk: the whole block is read and verified, then the range copied */
        char *tmp = util_malloc(bb);
        if (!tmp)
            return -ENOMEM;
        int rc = tier_fetch(l, block, tmp);
        if (rc == 0)
            memcpy(dst, tmp + offset, len);
        util_free(tmp);
        if (rc)
            return rc;
    }
    atomic_fetch_add(&e->bytes_read, len);
    return 0;
}

KVT_EXPORT int kvt_read_key(kvt_ns *ns, uint64_t key, size_t offset, void *dst, size_t len,
                            kvt_tier *tier)
{
    if (!ns || (len && !dst))
        return -EINVAL;
    if (!(ns->flags & KVT_NS_KEYS))
        return KVT_EMODE;
    if (offset > ns->block_bytes || len > ns->block_bytes - offset)
        return KVT_ESIZE;
    kvt_engine *e = ns->eng;
    const uint32_t *units = (const uint32_t *)(const void *)&key;
    if (!e->simulate && !e->rem) {
        /* One lock round trip: the lookup of a lease, the copy from DRAM under the lock
         * (bounded by one block; no pin, no lease allocation), the touch of a hit. */
        radix_path path;
        radix_path_init(&path);
        int rc, done = 0;
        pthread_mutex_lock(&e->lock);
        rc = match_path_locked(ns, units, 1, 1, 1, &path); /* as a lease's match */
        if (rc == 0) {
            if (path.blocks == 0) {
                rc = -ENOENT;
                done = 1;
            } else {
                uint32_t slot = path.nodes[0]->blocks[0].slot[RADIX_TIER_DRAM];
                if (slot != RADIX_NO_SLOT) {
                    dram_read_at(e->dram, slot, offset, dst, len);
                    touch_path(ns, &path, true);
                    done = 1;
                }
            }
            if (done) /* counted like a kvt_match_keys with a lease */
                count_lookup(ns, 1, path.blocks);
        }
        pthread_mutex_unlock(&e->lock);
        radix_path_free(&path);
        if (rc && rc != -ENOENT)
            return rc;
        if (done) {
            if (rc == 0) {
                atomic_fetch_add(&e->bytes_read, len);
                if (tier)
                    *tier = KVT_TIER_DRAM;
            }
            return rc;
        }
    }
    /* on nvme/disk only (read and verified), in simulation, or with a remote tier */
    kvt_lease *l = NULL;
    size_t m = 0;
    int rc = kvt_match_keys(ns, &key, 1, &m, &l);
    if (rc)
        return rc;
    if (!m || !l) {
        kvt_release(l);
        return -ENOENT;
    }
    kvt_tier tr = KVT_TIER_DRAM;
    kvt_lease_block_tier(l, 0, &tr);
    rc = kvt_read_range(l, 0, offset, dst, len);
    kvt_release(l);
    if (rc == 0 && tier)
        *tier = tr;
    return rc;
}

/* Lookups a kvt_lookahead_keys call prepares at once (its stages loop over this many). */
#define LOOKAHEAD_BATCH 32

KVT_EXPORT int kvt_lookahead_keys(kvt_ns *const *ns, const uint64_t *keys, size_t n, size_t bytes)
{
    if (!n)
        return 0;
    if (!ns || !keys || !ns[0])
        return -EINVAL;
    kvt_engine *e = ns[0]->eng;
    for (size_t i = 0; i < n; i++) {
        if (!ns[i] || ns[i]->eng != e)
            return -EINVAL;
        if (!(ns[i]->flags & KVT_NS_KEYS))
            return KVT_EMODE;
    }
    if (e->simulate)
        return 0;
    radix_node *cand[LOOKAHEAD_BATCH];
    pthread_mutex_lock(&e->lock);
    for (size_t base = 0; base < n; base += LOOKAHEAD_BATCH) {
        size_t m = n - base < LOOKAHEAD_BATCH ? n - base : LOOKAHEAD_BATCH;
        const uint64_t *k = keys + base;
        kvt_ns *const *s = ns + base;
        /* each stage reads only what the one before fetched for every key */
        for (size_t i = 0; i < m; i++)
            radix_hint_slot(s[i]->tree, (const uint32_t *)(const void *)&k[i]);
        for (size_t i = 0; i < m; i++)
            cand[i] = radix_hint_kid(s[i]->tree, (const uint32_t *)(const void *)&k[i]);
        for (size_t i = 0; i < m; i++) {
            radix_node *c = cand[i];
            if (!c)
                continue;
            for (size_t o = 64; o < sizeof *c; o += 64)
                __builtin_prefetch((const char *)c + o);
            __builtin_prefetch(c->units); /* its first block's units and radix_block */
            __builtin_prefetch(c->lru.prev); /* LRU neighbours a touch or removal relinks */
            __builtin_prefetch(c->lru.next);
        }
        for (size_t i = 0; i < m; i++) {
            radix_node *c = cand[i];
            if (!c || !c->n_blocks || !bytes)
                continue;
            uint32_t slot = c->blocks[0].slot[RADIX_TIER_DRAM];
            if (slot != RADIX_NO_SLOT)
                dram_hint(e->dram, slot, bytes);
        }
    }
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/* Unpin a lease's path (lock held) and drop blocks that failed verification once unpinned. */
void lease_release_locked(kvt_lease *l)
{
    kvt_engine *e = l->ns->eng;
    bool bad = false;
    hbm_lease_release(l); /* unpin its HBM copies (engine/hbm.c) */
    /* Splits since the match inserted new ancestors that copied the pin: walk them all. */
    for (radix_node *n = l->deepest; n && n->parent; n = n->parent) {
        n->pins--;
        bad |= (n->eflags & NODE_HAS_BAD) != 0;
    }
    if (bad)
        drop_bad_locked(l->ns, l->deepest);
    if (!l->internal)
        e->leases_open--;
}

KVT_EXPORT void kvt_release(kvt_lease *l)
{
    if (!l)
        return;
    kvt_engine *e = l->ns->eng;
    pthread_mutex_lock(&e->lock);
    lease_release_locked(l);
    pthread_mutex_unlock(&e->lock);
    util_free(l);
}

KVT_EXPORT int kvt_prefetch(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens)
{
    if (!ns || (n_tokens && !tokens))
        return -EINVAL;
    if (ns->flags & KVT_NS_KEYS)
        return KVT_EMODE;
    return prefetch_units(ns, tokens, n_tokens / ns->bt);
}

KVT_EXPORT int kvt_prefetch_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys)
{
    if (!ns || (n_keys && !keys))
        return -EINVAL;
    if (!(ns->flags & KVT_NS_KEYS))
        return KVT_EMODE;
    return prefetch_units(ns, (const uint32_t *)(const void *)keys, n_keys);
}

/* ---------------------------------------------------------------- put */

/* One pass of put_units: insert, store the new blocks that find DRAM, publish them. *stored:
 * blocks stored; *reach: blocks of units[] in the tree up to the end of what was stored.
 * count_put: the put's first pass (counted in the puts statistic). */
/* Make a pending leaf's first got blocks (bytes in DRAM) visible and hand them to the
 * write-through. Lock held. */
static void publish_leaf(kvt_ns *ns, radix_node *leaf, size_t got, double ttl_s,
                         const uint32_t *units)
{
    kvt_engine *e = ns->eng;
    radix_publish(ns->tree, leaf);
    policy_put(ns, leaf, (uint32_t)got, ttl_s); /* TTL hint, drain placement (policy.c) */
    if (e->tiered)
        wt_enqueue(ns, leaf, 0, (uint32_t)got);
    if (e->rem) /* remote write-through (engine/remote.c) */
        eremote_on_put(ns, leaf, (uint32_t)got, units);
    e->blocks_stored += got;
    e->blocks_cached += got;
}

/* What kvt_replace_key adds to a put (put_pass): remove the sequence first, in the same
 * critical section; the last block is last_len bytes (the rest of it zeros). */
typedef struct put_extra {
    int replace;
    uint64_t last_len;
} put_extra;

static int put_pass(kvt_ns *ns, const uint32_t *units, size_t nb, const void *const *blocks,
                    double ttl_s, int count_put, const put_extra *px, size_t *stored,
                    size_t *reach)
{
    kvt_engine *e = ns->eng;
    radix_path path;
    radix_node *leaf = NULL;
    int rc;
    *stored = *reach = 0;
    radix_path_init(&path);
    pthread_mutex_lock(&e->lock);
    e->puts += count_put != 0;
    if (px && px->replace) { /* what kvt_remove_keys does, without a second round trip */
        rc = radix_match(ns->tree, units, nb, 0, &path);
        if (rc == 0 && nb && path.blocks == nb) {
            radix_node *old = path.nodes[path.n - 1];
            if (nb == 1 && path.n == 1 && reuse_leaf(ns, old)) {
                /* a one-block leaf of its own (an overwritten value): the node stays where
                 * it is, pending, with no copies left; no unlink, free, alloc and relink */
                leaf = old;
                goto fill;
            }
            long n = remove_blocks(ns, old, path.last_blocks - 1);
            if (n < 0)
                rc = (int)n;
        }
        radix_path_free(&path);
        radix_path_init(&path);
        if (rc)
            goto out;
    }
    rc = radix_insert(ns->tree, units, nb, &path, &leaf);
    if (rc == -EAGAIN) /* another put is storing this prefix: it wins */
        rc = 0;
    if (rc || !leaf)
        goto out;

fill:;
    /* Blocks [first, first + want) are new; take slots for as many as have data and fit. */
    size_t first = nb - leaf->n_blocks, want = 0;
    if (!blocks) /* simulation only (checked by the callers) */
        want = leaf->n_blocks;
    while (want < leaf->n_blocks && (e->simulate || blocks[first + want]))
        want++;
    int why = want < leaf->n_blocks ? -ENODATA : 0;
    size_t got = 0;
    for (; got < want; got++) {
        radix_block *b = &leaf->blocks[got];
        uint32_t slot;
        b->size = (uint32_t)ns->block_bytes;
        int arc = alloc_block(ns, &slot);
        if (arc) {
            why = arc;
            break;
        }
        blk_add_copy(ns, leaf, b, RADIX_TIER_DRAM, slot);
    }
    /* Touch before any trim: a split made by the insert created a new upper node that must
     * join the LRU list (and get its owner) even if no new block could be stored. */
    touch_path(ns, &path, false);
    if (got == 0) {
        radix_trim(ns->tree, leaf, 0);
        rc = why;
        goto out;
    }
    if (got < leaf->n_blocks)
        radix_trim(ns->tree, leaf, (uint32_t)got);
    pthread_mutex_unlock(&e->lock);

    /* The leaf is pending: invisible to matches, never evicted or split. Copy unlocked. */
    if (!e->simulate) {
        for (size_t i = 0; i < got; i++)
            dram_write_pad(e->dram, leaf->blocks[i].slot[RADIX_TIER_DRAM], blocks[first + i],
                           px && px->last_len && first + i + 1 == nb ? px->last_len
                                                                     : ns->block_bytes,
                           ns->block_bytes);
        atomic_fetch_add(&e->bytes_written, got * ns->block_bytes);
    }

    pthread_mutex_lock(&e->lock);
    publish_leaf(ns, leaf, got, ttl_s, units);
    *stored = got;
    *reach = first + got;
    rc = why;
    pthread_mutex_unlock(&e->lock);
    radix_path_free(&path);
    return rc;
out:
    pthread_mutex_unlock(&e->lock);
    radix_path_free(&path);
    return rc;
}

/*
 * Store the blocks of units[0 .. nb) that are not cached. A put of more new blocks than DRAM
 * has room for: its blocks stay pending (and so in DRAM) until published, so the blocks past
 * the room find no slot. With tiers below DRAM, the pass publishes what fit and hands it to
 * the write-through; the next pass's allocations wait for that (backpressure), after which
 * those blocks may leave DRAM, and go on with the rest. It stops when a pass stores nothing
 * or gets no further into the sequence than the one before (its earlier blocks were dropped
 * from every tier: the tiers below are too small for the put).
 */
static int put_units_x(kvt_ns *ns, const uint32_t *units, size_t nb, const void *const *blocks,
                       double ttl_s, const put_extra *px, size_t *stored)
{
    size_t total = 0, reach = 0;
    int rc;
    for (;;) {
        size_t got = 0, r = 0;
        rc = put_pass(ns, units, nb, blocks, ttl_s, reach == 0, reach == 0 ? px : NULL, &got,
                      &r);
        total += got;
        if (rc != -ENOSPC || got == 0 || !ns->eng->tiered || ns->eng->simulate || r <= reach)
            break;
        reach = r;
    }
    if (stored)
        *stored = total;
    return rc;
}

int put_units(kvt_ns *ns, const uint32_t *units, size_t nb, const void *const *blocks,
              double ttl_s, size_t *stored)
{
    return put_units_x(ns, units, nb, blocks, ttl_s, NULL, stored);
}

KVT_EXPORT int kvt_replace_key(kvt_ns *ns, uint64_t key, const void *block, size_t len)
{
    if (!ns || (!block && !ns->eng->simulate))
        return -EINVAL;
    if (!(ns->flags & KVT_NS_KEYS))
        return KVT_EMODE;
    if (len > ns->block_bytes || (len == 0 && block))
        return KVT_ESIZE;
    put_extra px = {.replace = 1, .last_len = len};
    const void *blocks[1] = {block};
    size_t stored = 0;
    int rc = put_units_x(ns, (const uint32_t *)(const void *)&key, 1,
                         block ? blocks : NULL, 0, &px, &stored);
    if (rc == 0 && stored != 1)
        rc = -EBUSY; /* another put stored this key between the removal and the insert */
    return rc;
}

KVT_EXPORT int kvt_put(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens,
                       const void *const *blocks, size_t *stored)
{
    if (stored)
        *stored = 0;
    if (!ns || (n_tokens && (!tokens || (!blocks && !ns->eng->simulate))))
        return -EINVAL;
    if (ns->flags & KVT_NS_KEYS)
        return KVT_EMODE;
    if (n_tokens < ns->bt)
        return 0;
    return put_units(ns, tokens, n_tokens / ns->bt, blocks, 0, stored);
}

KVT_EXPORT int kvt_put_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys,
                            const void *const *blocks, size_t *stored)
{
    if (stored)
        *stored = 0;
    if (!ns || (n_keys && (!keys || (!blocks && !ns->eng->simulate))))
        return -EINVAL;
    if (!(ns->flags & KVT_NS_KEYS))
        return KVT_EMODE;
    if (!n_keys)
        return 0;
    return put_units(ns, (const uint32_t *)(const void *)keys, n_keys, blocks, 0, stored);
}

/* ---------------------------------------------------------------- put in place */

struct kvt_put_txn {
    kvt_ns *ns;
    radix_node *leaf; /* pending: invisible, never evicted or split */
    size_t n;
    uint64_t keys[]; /* [n]: the units eremote_on_put sends */
};

KVT_EXPORT int kvt_put_keys_begin(kvt_ns *ns, const uint64_t *keys, size_t n_keys, void **ptrs,
                                  kvt_put_txn **txn)
{
    if (txn)
        *txn = NULL;
    if (!ns || !keys || !ptrs || !txn || n_keys == 0 || n_keys > UINT32_MAX)
        return -EINVAL;
    if (!(ns->flags & KVT_NS_KEYS))
        return KVT_EMODE;
    kvt_engine *e = ns->eng;
    if (e->simulate || dram_slots_for(e->dram, ns->block_bytes) != 1)
        return -ENOTSUP; /* no bytes in simulation; a block must be one slot to be written */
    kvt_put_txn *t = util_malloc(sizeof *t + n_keys * sizeof(uint64_t));
    if (!t)
        return -ENOMEM;
    memcpy(t->keys, keys, n_keys * sizeof(uint64_t));
    const uint32_t *units = (const uint32_t *)(const void *)t->keys;
    radix_path path;
    radix_node *leaf = NULL;
    radix_path_init(&path);
    pthread_mutex_lock(&e->lock);
    e->puts++;
    int rc = radix_insert(ns->tree, units, n_keys, &path, &leaf);
    if (rc == -EAGAIN)
        rc = -EBUSY; /* another put is storing this prefix */
    size_t got = 0;
    if (rc == 0 && (!leaf || leaf->n_blocks != n_keys))
        rc = -EEXIST; /* some of the keys are cached already */
    for (; rc == 0 && got < n_keys; got++) {
        uint32_t slot;
        leaf->blocks[got].size = (uint32_t)ns->block_bytes;
        if ((rc = alloc_block(ns, &slot)))
            break;
        blk_add_copy(ns, leaf, &leaf->blocks[got], RADIX_TIER_DRAM, slot);
    }
    touch_path(ns, &path, false); /* before a trim: see put_pass */
    if (rc && leaf) {
        for (size_t i = 0; i < got; i++)
            blk_drop_copy(ns, leaf, &leaf->blocks[i], RADIX_TIER_DRAM);
        radix_trim(ns->tree, leaf, 0);
    }
    if (rc == 0) {
        uint64_t sb = dram_slot_bytes(e->dram);
        for (size_t i = 0; i < n_keys; i++) {
            uint32_t slot = leaf->blocks[i].slot[RADIX_TIER_DRAM];
            dram_mark_written(e->dram, slot); /* the caller writes it */
            ptrs[i] = (char *)dram_base(e->dram) + (uint64_t)slot * sb;
        }
    }
    pthread_mutex_unlock(&e->lock);
    radix_path_free(&path);
    if (rc) {
        util_free(t);
        return rc;
    }
    t->ns = ns;
    t->leaf = leaf;
    t->n = n_keys;
    *txn = t;
    return 0;
}

KVT_EXPORT int kvt_put_commit(kvt_put_txn *t)
{
    if (!t)
        return -EINVAL;
    kvt_engine *e = t->ns->eng;
    pthread_mutex_lock(&e->lock); /* also orders the caller's stores before the publication */
    publish_leaf(t->ns, t->leaf, t->n, 0, (const uint32_t *)(const void *)t->keys);
    pthread_mutex_unlock(&e->lock);
    atomic_fetch_add(&e->bytes_written, t->n * t->ns->block_bytes);
    util_free(t);
    return 0;
}

KVT_EXPORT void kvt_put_abort(kvt_put_txn *t)
{
    if (!t)
        return;
    kvt_engine *e = t->ns->eng;
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; i < t->n; i++)
        blk_drop_copy(t->ns, t->leaf, &t->leaf->blocks[i], RADIX_TIER_DRAM);
    radix_trim(t->ns->tree, t->leaf, 0);
    pthread_mutex_unlock(&e->lock);
    util_free(t);
}

/* ---------------------------------------------------------------- remove */

static int remove_units(kvt_ns *ns, const uint32_t *units, size_t nb, size_t *removed)
{
    kvt_engine *e = ns->eng;
    radix_path path;
    int rc;
    radix_path_init(&path);
    pthread_mutex_lock(&e->lock);
    rc = radix_match(ns->tree, units, nb, 0, &path);
    if (rc == 0 && (nb == 0 || path.blocks != nb))
        rc = -ENOENT;
    if (rc == 0) {
        long n = remove_blocks(ns, path.nodes[path.n - 1], path.last_blocks - 1);
        if (n < 0)
            rc = (int)n;
        else if (removed)
            *removed = (size_t)n;
    }
    pthread_mutex_unlock(&e->lock);
    radix_path_free(&path);
    return rc;
}

KVT_EXPORT int kvt_remove(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens, size_t *removed)
{
    if (removed)
        *removed = 0;
    if (!ns || (n_tokens && !tokens))
        return -EINVAL;
    if (ns->flags & KVT_NS_KEYS)
        return KVT_EMODE;
    return remove_units(ns, tokens, n_tokens / ns->bt, removed);
}

KVT_EXPORT int kvt_remove_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys, size_t *removed)
{
    if (removed)
        *removed = 0;
    if (!ns || (n_keys && !keys))
        return -EINVAL;
    if (!(ns->flags & KVT_NS_KEYS))
        return KVT_EMODE;
    return remove_units(ns, (const uint32_t *)(const void *)keys, n_keys, removed);
}

/* ---------------------------------------------------------------- flush, clock */

KVT_EXPORT int kvt_flush(kvt_engine *e)
{
    if (!e)
        return -EINVAL;
    if (!e->tiered || e->simulate)
        return 0;
    return engine_flush(e);
}

KVT_EXPORT int kvt_engine_set_clock(kvt_engine *e, uint64_t now_ns)
{
    if (!e || !e->simulate)
        return -EINVAL;
    pthread_mutex_lock(&e->lock);
    if (now_ns > e->clock)
        e->clock = now_ns;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/* ---------------------------------------------------------------- stats */

KVT_EXPORT int kvt_engine_stats(kvt_engine *e, kvt_stats *out, size_t size)
{
    if (!e || !out || !size)
        return -EINVAL;
    kvt_stats s;
    memset(&s, 0, sizeof s);
    pthread_mutex_lock(&e->lock);
    s.lookups = e->lookups;
    s.lookup_tokens = e->lookup_tokens;
    s.hit_tokens = e->hit_tokens;
    s.puts = e->puts;
    s.blocks_stored = e->blocks_stored;
    s.blocks_evicted = e->blocks_evicted;
    s.blocks_cached = e->blocks_cached;
    s.dram_capacity = dram_capacity(e->dram);
    s.dram_used = dram_used(e->dram);
    for (kvt_ns *ns = e->nss; ns; ns = ns->next)
        s.index_bytes += radix_bytes(ns->tree);
    s.leases_open = e->leases_open;
    s.namespaces = e->n_ns;
    s.dram_hugepages = (uint32_t)dram_hugepages(e->dram);
    s.dram_cuda_pinned = (uint32_t)e->cuda_pinned;
    s.tier_capacity[KVT_TIER_DRAM] = s.dram_capacity;
    s.tier_used[KVT_TIER_DRAM] = s.dram_used;
    if (e->nvme) {
        s.tier_capacity[KVT_TIER_NVME] = nvme_capacity(e->nvme);
        s.tier_used[KVT_TIER_NVME] =
            (uint64_t)(nvme_slots(e->nvme) - nvme_free_slots(e->nvme)) * nvme_slot_bytes(e->nvme);
    }
    for (int t = 0; t < RADIX_TIERS; t++) {
        s.tier_blocks[t] = e->tier_blocks[t];
        s.tier_reads[t] = e->t_reads[t];
        s.tier_writes[t] = e->t_writes[t];
        s.tier_bytes_read[t] = e->t_bytes_read[t];
        s.tier_bytes_written[t] = e->t_bytes_written[t];
    }
    s.demotions = e->demotions;
    s.promotions = e->promotions;
    s.checksum_failures = e->checksum_failures;
    s.io_errors = e->io_errors;
    s.blocks_dropped_bad = e->blocks_dropped_bad;
    s.persisted_blocks = e->persisted;
    s.wt_failures = e->wt_failures;
    for (tenant *t = e->tenants; t; t = t->next)
        s.unpersisted_blocks += t->unpersisted;
    s.flushes = e->flushes;
    s.restored_blocks = e->restored;
    s.restore_dropped = e->restore_dropped;
    if (e->simulate)
        sim_stats(e, &s); /* accounting-only nvme/disk capacities (engine/sim.c) */
    hbm_stats(e, &s); /* engine/hbm.c */
    s.persistent = e->tiered && !e->simulate;
    s.simulate = (uint32_t)e->simulate;
    if (e->wt_io)
        snprintf(s.io_backend, sizeof s.io_backend, "%s", io_backend_name(e->io_backend));
    pthread_mutex_unlock(&e->lock);
    if (e->disk) {
        pthread_rwlock_rdlock(&e->disk_rw);
        s.tier_capacity[KVT_TIER_DISK] = disk_capacity(e->disk);
        s.tier_used[KVT_TIER_DISK] = disk_live_bytes(e->disk);
        pthread_rwlock_unlock(&e->disk_rw);
    }
    s.bytes_read = atomic_load(&e->bytes_read);
    s.bytes_written = atomic_load(&e->bytes_written);
    eremote_stats(e, &s); /* engine/remote.c: unlocked (it may wait on a remote context) */
    memcpy(out, &s, size < sizeof s ? size : sizeof s);
    return 0;
}
