/*
 * engine.c — the facade: ties the prefix index (radix/), the DRAM tier (tiers/), the LRU
 * policy (evict/) and CUDA host pinning (gpu/) into the public API of kvtier.h.
 *
 * Ownership:  kvt_engine ─┬─ dram_tier (arena, slots)
 *                         ├─ tenants: name, quota, bytes held, LRU list of radix nodes
 *                         └─ namespaces: name, tenant*, layout, radix_tree (one per ns)
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
#include <string.h>

#include "evict/lru.h"
#include "gpu/gpu.h"
#include "kvtier/kvtier.h"
#include "radix/radix.h"
#include "tiers/dram.h"
#include "util/util.h"

#define KVT_EXPORT __attribute__((visibility("default")))

struct kvt_options {
    uint64_t dram_bytes;
    uint64_t dram_slot_bytes;
    kvt_hugepages hugepages;
    int cuda_pin;
};

typedef struct tenant {
    char *name;
    uint64_t quota; /* DRAM bytes, 0 = no limit */
    uint64_t used;  /* DRAM bytes held (whole slots) */
    evict_lru lru;
    struct tenant *next;
} tenant;

struct kvt_ns {
    kvt_engine *eng;
    char *name;
    tenant *tn;
    kvt_layout layout;
    unsigned flags;
    uint32_t bt;          /* tokens per block (1 for key namespaces' accounting) */
    uint64_t block_bytes; /* bytes of one block in the documented block layout */
    radix_tree *tree;
    struct kvt_ns *next;
};

struct kvt_engine {
    pthread_mutex_t lock;
    dram_tier *dram;
    int cuda_pinned;
    tenant *tenants;
    kvt_ns *nss;
    uint64_t clock; /* logical access clock: one tick per match or put */
    uint64_t n_ns;
    uint64_t lookups, lookup_tokens, hit_tokens, puts, blocks_stored, blocks_evicted;
    uint64_t blocks_cached, leases_open;
    atomic_uint_fast64_t bytes_read, bytes_written;
};

/* A lease pins `deepest` and all its ancestors (pins += 1 each) and snapshots the locations
 * of its blocks, which cannot change while pinned. */
struct kvt_lease {
    kvt_ns *ns;
    radix_node *deepest;
    size_t n_blocks;
    radix_block blocks[]; /* [n_blocks], path order */
};

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
    case -EINVAL: return "invalid argument (NULL pointer or out-of-range value)";
    case -ENOMEM: return "out of memory";
    case -ENOSPC: return "no space: the tier is full and nothing of this tenant can be evicted";
    case -EBUSY: return "busy: in use by a lease or a put in flight";
    case -ERANGE: return "block index outside the lease";
    case -ENODATA: return "a block needed by the put was not given (NULL)";
    case -ENODEV: return "no usable GPU";
    case -ENOENT: return "not cached";
    case -EIO: return "I/O error";
    case -EAGAIN: return "try again: another operation on this prefix is in flight";
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
    *out = o;
    return 0;
}

KVT_EXPORT void kvt_options_destroy(kvt_options *o) { util_free(o); }

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

KVT_EXPORT int kvt_options_set_cuda_pin(kvt_options *o, int on)
{
    if (!o)
        return -EINVAL;
    o->cuda_pin = !!on;
    return 0;
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
        kvt_options_destroy(dflt);
        opts = &defaults;
    }
    kvt_engine *e = util_calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    if ((rc = pthread_mutex_init(&e->lock, NULL))) {
        util_free(e);
        return -rc;
    }
    rc = dram_open(opts->dram_bytes, opts->dram_slot_bytes, opts->hugepages, &e->dram);
    if (rc)
        goto fail;
    if (opts->cuda_pin && gpu_host_register(dram_base(e->dram), dram_map_bytes(e->dram)) == 0)
        e->cuda_pinned = 1;
    *out = e;
    return 0;
fail:
    pthread_mutex_destroy(&e->lock);
    util_free(e);
    return rc;
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
    if (e->cuda_pinned)
        gpu_host_unregister(dram_base(e->dram));
    dram_close(e->dram);
    pthread_mutex_destroy(&e->lock);
    util_free(e);
    return 0;
}

static int check_name(const char *s)
{
    if (!s)
        return -EINVAL;
    size_t n = strnlen(s, KVT_NAME_MAX + 1);
    return n == 0 || n > KVT_NAME_MAX ? KVT_ENAME : 0;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = util_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* The tenant called name, created if absent. Lock held. NULL on -ENOMEM. */
static tenant *tenant_get(kvt_engine *e, const char *name)
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

/* Give a block's tier slots back. Lock held. */
static void block_release(kvt_ns *ns, radix_block *b)
{
    kvt_engine *e = ns->eng;
    if (b->slot[RADIX_TIER_DRAM] != RADIX_NO_SLOT) {
        dram_free(e->dram, b->slot[RADIX_TIER_DRAM]);
        ns->tn->used -= (uint64_t)dram_slots_for(e->dram, ns->block_bytes) * dram_slot_bytes(e->dram);
        b->slot[RADIX_TIER_DRAM] = RADIX_NO_SLOT;
    }
}

/* Drop the tenant's least recently used unpinned block. Lock held. 1 if one was dropped. */
static int evict_one(kvt_engine *e, tenant *tn)
{
    util_list *l = evict_lru_oldest(&tn->lru, evictable, NULL);
    if (!l)
        return 0;
    radix_node *n = UTIL_CONTAINER_OF(l, radix_node, lru);
    kvt_ns *ns = n->owner;
    block_release(ns, &n->blocks[n->n_blocks - 1]);
    radix_trim(ns->tree, n, n->n_blocks - 1);
    e->blocks_evicted++;
    e->blocks_cached--;
    return 1;
}

static void on_node_free(void *ctx, radix_node *n)
{
    kvt_ns *ns = ctx;
    evict_lru_remove(&ns->tn->lru, &n->lru);
}

/* Allocate DRAM for one block of ns, evicting the tenant's own blocks while the tier is full
 * or the tenant is over its quota. Lock held. */
static int alloc_block(kvt_ns *ns, uint32_t *slot)
{
    kvt_engine *e = ns->eng;
    tenant *tn = ns->tn;
    uint64_t need = (uint64_t)dram_slots_for(e->dram, ns->block_bytes) * dram_slot_bytes(e->dram);
    if (tn->quota && need > tn->quota)
        return -ENOSPC;
    for (;;) {
        if (!tn->quota || tn->used + need <= tn->quota) {
            int rc = dram_alloc(e->dram, ns->block_bytes, slot);
            if (rc != -ENOSPC) {
                if (rc == 0)
                    tn->used += need;
                return rc;
            }
        }
        if (!evict_one(e, tn))
            return -ENOSPC;
    }
}

KVT_EXPORT int kvt_tenant_set_dram_quota(kvt_engine *e, const char *name, uint64_t bytes)
{
    int rc;
    if (!e)
        return -EINVAL;
    if ((rc = check_name(name)))
        return rc;
    pthread_mutex_lock(&e->lock);
    tenant *t = tenant_get(e, name);
    if (!t) {
        rc = -ENOMEM;
    } else {
        t->quota = bytes;
        while (bytes && t->used > bytes && evict_one(e, t))
            ;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

/* ---------------------------------------------------------------- namespaces */

KVT_EXPORT int kvt_ns_open(kvt_engine *e, const char *name, const char *tenant_name,
                           const kvt_layout *layout, unsigned flags, kvt_ns **out)
{
    int rc;
    if (!e || !layout || !out || (flags & ~KVT_NS_KEYS))
        return -EINVAL;
    if ((rc = check_name(name)) || (rc = check_name(tenant_name)))
        return rc;
    uint64_t bb = kvt_layout_block_bytes(layout);
    if (!bb)
        return KVT_EBADLAYOUT;

    pthread_mutex_lock(&e->lock);
    for (kvt_ns *ns = e->nss; ns; ns = ns->next) {
        if (strcmp(ns->name, name) || strcmp(ns->tn->name, tenant_name))
            continue;
        bool same = ns->flags == flags && ns->layout.layers == layout->layers &&
                    ns->layout.kv_heads == layout->kv_heads &&
                    ns->layout.head_dim == layout->head_dim && ns->layout.dtype == layout->dtype &&
                    ns->layout.block_tokens == layout->block_tokens;
        *out = same ? ns : NULL;
        pthread_mutex_unlock(&e->lock);
        return same ? 0 : KVT_EBADLAYOUT;
    }
    kvt_ns *ns = util_calloc(1, sizeof *ns);
    rc = -ENOMEM;
    if (!ns)
        goto fail;
    ns->eng = e;
    ns->layout = *layout;
    ns->flags = flags;
    ns->bt = layout->block_tokens;
    ns->block_bytes = bb;
    if (!(ns->name = dup_str(name)) || !(ns->tn = tenant_get(e, tenant_name)))
        goto fail;
    radix_hooks hooks = {on_node_free, ns};
    if ((flags & KVT_NS_KEYS))
        rc = radix_create(2, RADIX_KEYS, &hooks, &ns->tree);
    else
        rc = radix_create(layout->block_tokens, 0, &hooks, &ns->tree);
    if (rc)
        goto fail;
    /* The first namespace fixes a deferred slot size: its block size, 64-byte aligned. */
    if (dram_slot_bytes(e->dram) == 0 && (rc = dram_set_slot_bytes(e->dram, (bb + 63) & ~63ull))) {
        rc = rc == -EINVAL ? KVT_EBADLAYOUT : rc;
        goto fail;
    }
    ns->next = e->nss;
    e->nss = ns;
    e->n_ns++;
    *out = ns;
    pthread_mutex_unlock(&e->lock);
    return 0;
fail:
    if (ns) {
        radix_destroy(ns->tree);
        util_free(ns->name);
        util_free(ns);
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
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

/* Mark a path used now: deepest node first, so ancestors end up fresher (leaf-first LRU). */
static void touch_path(kvt_ns *ns, const radix_path *p, bool hit)
{
    uint64_t now = ++ns->eng->clock;
    for (uint32_t i = p->n; i-- > 0;) {
        radix_node *n = p->nodes[i];
        n->owner = ns;
        n->last_access = now;
        n->hits += hit;
        evict_lru_touch(&ns->tn->lru, &n->lru);
    }
}

static int match_units(kvt_ns *ns, const uint32_t *units, size_t nb, size_t *matched,
                       kvt_lease **lease_out)
{
    kvt_engine *e = ns->eng;
    radix_path path;
    int rc;
    radix_path_init(&path);
    if (lease_out)
        *lease_out = NULL;
    pthread_mutex_lock(&e->lock);
    /* A lease splits the deepest node where the match ends so pins and recency stay exact
     * per node; a bare measurement changes nothing. A failed split (-ENOMEM) still leaves a
     * correct, unsplit match: the lease then pins that whole node, which is only stricter. */
    rc = radix_match(ns->tree, units, nb, lease_out ? RADIX_SPLIT : 0, &path);
    if (rc == -ENOMEM && path.n && path.last_blocks != path.nodes[path.n - 1]->n_blocks)
        rc = 0;
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
        size_t k = 0;
        for (uint32_t i = 0; i < path.n; i++) {
            radix_node *n = path.nodes[i];
            uint32_t use = i + 1 == path.n ? path.last_blocks : n->n_blocks;
            memcpy(&l->blocks[k], n->blocks, use * sizeof(radix_block));
            k += use;
            n->pins++;
        }
        touch_path(ns, &path, true);
        e->leases_open++;
        *lease_out = l;
    }
    if (lease_out) {
        e->lookups++;
        e->lookup_tokens += nb * ns->bt;
        e->hit_tokens += got * ns->bt;
    }
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
    int rc = match_units(ns, tokens, n_tokens / ns->bt, &blocks, lease);
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
    int rc = match_units(ns, (const uint32_t *)(const void *)keys, n_keys, &blocks, lease);
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
    for (size_t i = 0; i < n; i++) {
        void *to = dst ? dst[i] : base + i * bb;
        dram_read(e->dram, l->blocks[first + i].slot[RADIX_TIER_DRAM], to, bb);
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

KVT_EXPORT void kvt_release(kvt_lease *l)
{
    if (!l)
        return;
    kvt_engine *e = l->ns->eng;
    pthread_mutex_lock(&e->lock);
    /* Splits since the match inserted new ancestors that copied the pin: walk them all. */
    for (radix_node *n = l->deepest; n && n->parent; n = n->parent)
        n->pins--;
    e->leases_open--;
    pthread_mutex_unlock(&e->lock);
    util_free(l);
}

/* ---------------------------------------------------------------- put */

static int put_units(kvt_ns *ns, const uint32_t *units, size_t nb, const void *const *blocks,
                     size_t *stored)
{
    kvt_engine *e = ns->eng;
    radix_path path;
    radix_node *leaf = NULL;
    int rc;
    radix_path_init(&path);
    pthread_mutex_lock(&e->lock);
    e->puts++;
    rc = radix_insert(ns->tree, units, nb, &path, &leaf);
    if (rc == -EAGAIN) /* another put is storing this prefix: it wins */
        rc = 0;
    if (rc || !leaf)
        goto out;

    /* Blocks [first, first + want) are new; take slots for as many as have data and fit. */
    size_t first = nb - leaf->n_blocks, want = 0;
    while (want < leaf->n_blocks && blocks[first + want])
        want++;
    int why = want < leaf->n_blocks ? -ENODATA : 0;
    size_t got = 0;
    for (; got < want; got++) {
        radix_block *b = &leaf->blocks[got];
        b->size = (uint32_t)ns->block_bytes;
        int arc = alloc_block(ns, &b->slot[RADIX_TIER_DRAM]);
        if (arc) {
            why = arc;
            break;
        }
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
    for (size_t i = 0; i < got; i++)
        dram_write(e->dram, leaf->blocks[i].slot[RADIX_TIER_DRAM], blocks[first + i], ns->block_bytes);
    atomic_fetch_add(&e->bytes_written, got * ns->block_bytes);

    pthread_mutex_lock(&e->lock);
    radix_publish(ns->tree, leaf);
    e->blocks_stored += got;
    e->blocks_cached += got;
    if (stored)
        *stored = got;
    rc = why;
    pthread_mutex_unlock(&e->lock);
    radix_path_free(&path);
    return rc;
out:
    pthread_mutex_unlock(&e->lock);
    radix_path_free(&path);
    return rc;
}

KVT_EXPORT int kvt_put(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens,
                       const void *const *blocks, size_t *stored)
{
    if (stored)
        *stored = 0;
    if (!ns || (n_tokens && (!tokens || !blocks)))
        return -EINVAL;
    if (ns->flags & KVT_NS_KEYS)
        return KVT_EMODE;
    if (n_tokens < ns->bt)
        return 0;
    return put_units(ns, tokens, n_tokens / ns->bt, blocks, stored);
}

KVT_EXPORT int kvt_put_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys,
                            const void *const *blocks, size_t *stored)
{
    if (stored)
        *stored = 0;
    if (!ns || (n_keys && (!keys || !blocks)))
        return -EINVAL;
    if (!(ns->flags & KVT_NS_KEYS))
        return KVT_EMODE;
    if (!n_keys)
        return 0;
    return put_units(ns, (const uint32_t *)(const void *)keys, n_keys, blocks, stored);
}

/* ---------------------------------------------------------------- remove */

static void on_block_removed(void *ctx, radix_node *n, radix_block *b)
{
    (void)n;
    kvt_ns *ns = ctx;
    block_release(ns, b);
    ns->eng->blocks_cached--;
}

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
        long n = radix_remove(ns->tree, path.nodes[path.n - 1], path.last_blocks - 1,
                              on_block_removed, ns);
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

/* ---------------------------------------------------------------- stats */

KVT_EXPORT int kvt_engine_stats(kvt_engine *e, kvt_stats *out, size_t size)
{
    if (!e || !out || !size)
        return -EINVAL;
    kvt_stats s = {0};
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
    pthread_mutex_unlock(&e->lock);
    s.bytes_read = atomic_load(&e->bytes_read);
    s.bytes_written = atomic_load(&e->bytes_written);
    memcpy(out, &s, size < sizeof s ? size : sizeof s);
    return 0;
}
