/*
 * restart.c — warm restart: rebuild the namespaces and each namespace's index from the
 * catalog (tiers/catalog.h, "Engine order of operations", Restart).
 *
 * Per namespace:
 *   1. scan (CATALOG_SCAN_PURGE: garbled entries and orphaned access entries go) and keep the
 *      records that verify: n_units and length match the layout, tier is nvme or disk, no
 *      TTL passed, and the key is the block's own: XXH3-64(units, seed parent_key) in a token
 *      namespace, the unit pair in a key namespace;
 *   2. merge the copies of one block (adjacent: the scan is ordered by key, tier) and claim
 *      their space: nvme_mark_used / disk_mark_live; a copy whose space is gone or already
 *      claimed is dropped (the first claimant keeps it; every read is verified anyway);
 *   3. sort by depth and link each block to its parent by parent_key (a block whose parent
 *      was dropped is dropped: it could never be matched);
 *   4. insert every leaf's whole chain with radix_insert (shared prefixes are walked, not
 *      copied), oldest leaf first so the LRU lists start in last-access order, set each new
 *      block's copies and checksum, publish;
 *   5. delete the dropped records (synced), then free the space they had claimed.
 * Cost: O(records log records) plus the units of every leaf's chain.
 * Runs single-threaded inside kvt_engine_open (no other thread exists yet).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/internal.h"

/* ---------------------------------------------------------------- namespaces */

static int ns_fn(void *ctx, const catalog_ns *cn)
{
    kvt_engine *e = ctx;
    if (cn->id >= e->next_ns_id)
        e->next_ns_id = cn->id + 1;
    if (!kvt_layout_block_bytes(&cn->layout) || (cn->flags & ~KVT_NS_KEYS)) {
        e->restore_dropped++;
        return 0;
    }
    for (kvt_ns *ns = e->nss; ns; ns = ns->next)
        if (ns->id == cn->id || (!strcmp(ns->name, cn->name) && !strcmp(ns->tn->name, cn->tenant)))
            return 0;
    kvt_ns *ns = NULL;
    pthread_mutex_lock(&e->lock);
    int rc = ns_create_locked(e, cn->name, cn->tenant, &cn->layout, cn->flags, cn->id, &ns);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

int restart_namespaces(kvt_engine *e)
{
    uint64_t garbled = 0;
    int rc = catalog_ns_scan(e->cat, ns_fn, e, &garbled);
    e->restore_dropped += garbled;
    return rc > 0 ? -EIO : catalog_status(rc);
}

/* ---------------------------------------------------------------- blocks */

typedef struct rblk {
    uint64_t key, parent, sum, last;
    uint32_t depth, uoff;
    uint32_t nvme;     /* slot, or RADIX_NO_SLOT */
    uint32_t pad;
    disk_loc dloc;     /* or DISK_LOC_NONE */
    int64_t parent_idx;
    uint8_t valid, has_child, nvme_marked, disk_marked;
} rblk;

typedef struct rctx {
    kvt_engine *e;
    kvt_ns *ns;
    uint64_t now;
    rblk *b;
    size_t n, cap;
    uint32_t *units;
    size_t n_units, cap_units;
    catalog_del *dels;
    size_t n_dels, cap_dels;
    int err;
} rctx;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *q = util_realloc(*p, c * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int del_add(rctx *x, uint32_t tier, uint64_t key)
{
    if (grow((void **)&x->dels, &x->cap_dels, x->n_dels + 1, sizeof *x->dels))
        return -ENOMEM;
    x->dels[x->n_dels++] = (catalog_del){.ns_id = x->ns->id, .tier = tier, .key = key};
    x->e->restore_dropped++;
    return 0;
}

static int rec_verifies(const rctx *x, const catalog_record *r)
{
    const kvt_ns *ns = x->ns;
    if (r->n_units != ns->bu || r->length != ns->block_bytes)
        return 0;
    if (r->tier != CATALOG_TIER_NVME && r->tier != CATALOG_TIER_DISK)
        return 0;
    if (r->ttl_deadline && r->ttl_deadline <= x->now)
        return 0;
    if (ns->flags & KVT_NS_KEYS)
        return ((uint64_t)r->units[0] | (uint64_t)r->units[1] << 32) == r->key;
    return XXH3_64bits_withSeed(r->units, (size_t)ns->bu * 4, r->parent_key) == r->key;
}

static int collect_fn(void *ctx, const catalog_record *r)
{
    rctx *x = ctx;
    if (!rec_verifies(x, r))
        return del_add(x, r->tier, r->key);
    /* copies of one block are adjacent (scan order: key, tier) */
    if (x->n && x->b[x->n - 1].key == r->key) {
        rblk *b = &x->b[x->n - 1];
        if (b->parent != r->parent_key || b->depth != r->depth || b->sum != r->checksum)
            return del_add(x, r->tier, r->key); /* disagrees with the first copy */
        if (r->tier == CATALOG_TIER_NVME)
            b->nvme = r->location <= UINT32_MAX ? (uint32_t)r->location : RADIX_NO_SLOT;
        else
            b->dloc = r->location;
        if (r->last_access > b->last)
            b->last = r->last_access;
        return 0;
    }
    if (grow((void **)&x->b, &x->cap, x->n + 1, sizeof *x->b) ||
        grow((void **)&x->units, &x->cap_units, x->n_units + r->n_units, sizeof *x->units))
        return -ENOMEM;
    rblk *b = &x->b[x->n++];
    memset(b, 0, sizeof *b);
    b->key = r->key;
    b->parent = r->parent_key;
    b->sum = r->checksum;
    b->last = r->last_access;
    b->depth = r->depth;
    b->uoff = (uint32_t)x->n_units;
    b->nvme = RADIX_NO_SLOT;
    b->dloc = DISK_LOC_NONE;
    b->parent_idx = -1;
    if (r->tier == CATALOG_TIER_NVME)
        b->nvme = r->location <= UINT32_MAX ? (uint32_t)r->location : RADIX_NO_SLOT;
    else
        b->dloc = r->location;
    memcpy(x->units + x->n_units, r->units, (size_t)r->n_units * sizeof(uint32_t));
    x->n_units += r->n_units;
    return 0;
}

static int by_depth(const void *a, const void *b)
{
    const rblk *x = a, *y = b;
    if (x->depth != y->depth)
        return x->depth < y->depth ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

/* leaf order: oldest access first */
/* qsort_r comparator (glibc): ctx is the block array, so concurrent restarts of several
 * engines in one process do not share state. */
static int by_last(const void *a, const void *b, void *ctx)
{
    const rblk *blocks = ctx;
    const rblk *x = &blocks[*(const size_t *)a], *y = &blocks[*(const size_t *)b];
    return x->last < y->last ? -1 : x->last > y->last;
}

static uint64_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

/* Drop block i: its records are deleted; its claimed space freed after the delete. */
static int blk_drop(rctx *x, rblk *b)
{
    b->valid = 0;
    int rc = 0;
    if (b->nvme != RADIX_NO_SLOT)
        rc |= del_add(x, CATALOG_TIER_NVME, b->key);
    if (b->dloc != DISK_LOC_NONE)
        rc |= del_add(x, CATALOG_TIER_DISK, b->key);
    return rc ? -ENOMEM : 0;
}

static int rebuild(rctx *x)
{
    kvt_engine *e = x->e;
    kvt_ns *ns = x->ns;
    size_t n = x->n;
    int rc = 0;
    size_t *hash = NULL, *leaves = NULL, *chain = NULL;
    uint32_t *seq = NULL;
    radix_path path;
    radix_path_init(&path);

    /* 2. claim space */
    for (size_t i = 0; i < n; i++) {
        rblk *b = &x->b[i];
        b->valid = 1;
        if (b->nvme != RADIX_NO_SLOT) {
            if (e->nvme && nvme_mark_used(e->nvme, b->nvme) == 0) {
                b->nvme_marked = 1;
            } else {
                del_add(x, CATALOG_TIER_NVME, b->key);
                b->nvme = RADIX_NO_SLOT;
            }
        }
        if (b->dloc != DISK_LOC_NONE) {
            if (e->disk && disk_mark_live(e->disk, b->dloc) == 0) {
                b->disk_marked = 1;
            } else {
                del_add(x, CATALOG_TIER_DISK, b->key);
                b->dloc = DISK_LOC_NONE;
            }
        }
        if (b->nvme == RADIX_NO_SLOT && b->dloc == DISK_LOC_NONE)
            b->valid = 0;
    }

    /* 3. link by parent key, shallowest first */
    if (n)
        qsort(x->b, n, sizeof *x->b, by_depth);
    size_t hcap = 16;
    while (hcap < 2 * n)
        hcap *= 2;
    hash = util_malloc(hcap * sizeof *hash);
    if (!hash) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < hcap; i++)
        hash[i] = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        rblk *b = &x->b[i];
        if (b->valid && b->depth > 0) {
            int64_t p = -1;
            for (size_t h = mix(b->parent) & (hcap - 1); hash[h] != SIZE_MAX; h = (h + 1) & (hcap - 1))
                if (x->b[hash[h]].key == b->parent) {
                    p = (int64_t)hash[h];
                    break;
                }
            if (p < 0 || !x->b[p].valid || x->b[p].depth + 1 != b->depth) {
                blk_drop(x, b);
            } else {
                b->parent_idx = p;
                x->b[p].has_child = 1;
            }
        } else if (b->valid && b->parent != 0) {
            blk_drop(x, b);
        }
        if (b->valid) {
            size_t h = mix(b->key) & (hcap - 1);
            while (hash[h] != SIZE_MAX)
                h = (h + 1) & (hcap - 1);
            hash[h] = i;
        }
    }

    /* 4. insert leaves' chains, oldest first */
    size_t nl = 0;
    uint32_t maxd = 0;
    leaves = util_malloc((n ? n : 1) * sizeof *leaves);
    if (!leaves) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (x->b[i].valid && !x->b[i].has_child) {
            leaves[nl++] = i;
            if (x->b[i].depth > maxd)
                maxd = x->b[i].depth;
        }
    qsort_r(leaves, nl, sizeof *leaves, by_last, x->b);
    chain = util_malloc(((size_t)maxd + 1) * sizeof *chain);
    seq = util_malloc(((size_t)maxd + 1) * ns->bu * sizeof *seq);
    if (nl && (!chain || !seq)) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t li = 0; li < nl; li++) {
        size_t len = (size_t)x->b[leaves[li]].depth + 1;
        int64_t c = (int64_t)leaves[li];
        for (size_t d = len; d-- > 0; c = x->b[c].parent_idx) {
            chain[d] = (size_t)c;
            memcpy(seq + d * ns->bu, x->units + x->b[c].uoff, (size_t)ns->bu * sizeof *seq);
        }
        radix_node *leaf = NULL;
        pthread_mutex_lock(&e->lock);
        rc = radix_insert(ns->tree, seq, len, &path, &leaf);
        if (rc == 0 && leaf) {
            for (uint32_t i = 0; i < leaf->n_blocks; i++) {
                rblk *rb = &x->b[chain[leaf->depth + i]];
                radix_block *b = &leaf->blocks[i];
                b->size = (uint32_t)ns->block_bytes;
                b->checksum = rb->sum;
                if (rb->nvme != RADIX_NO_SLOT) {
                    blk_add_copy(ns, leaf, b, RADIX_TIER_NVME, rb->nvme);
                    rb->nvme_marked = 0; /* owned by the index now */
                }
                uint32_t h;
                if (rb->dloc != DISK_LOC_NONE) {
                    if (dloc_get(e, rb->dloc, &h) == 0) {
                        blk_add_copy(ns, leaf, b, RADIX_TIER_DISK, h);
                        rb->disk_marked = 0;
                    }
                }
            }
            radix_publish(ns->tree, leaf);
            touch_path(ns, &path, false);
            e->blocks_cached += leaf->n_blocks;
            e->restored += leaf->n_blocks;
        }
        pthread_mutex_unlock(&e->lock);
        if (rc)
            goto out;
    }
out:
    /* 5. space claimed by dropped blocks: freed below after the deletes are durable */
    radix_path_free(&path);
    util_free(hash);
    util_free(leaves);
    util_free(chain);
    util_free(seq);
    return rc;
}

int restart_blocks(kvt_engine *e)
{
    int rc = 0;
    for (kvt_ns *ns = e->nss; ns && rc == 0; ns = ns->next) {
        rctx x;
        memset(&x, 0, sizeof x);
        x.e = e;
        x.ns = ns;
        x.now = realtime_ns();
        catalog_scan_stats st;
        memset(&st, 0, sizeof st);
        rc = catalog_scan(e->cat, ns->id, CATALOG_SCAN_PURGE, collect_fn, &x, &st);
        e->restore_dropped += st.garbled;
        if (rc > 0)
            rc = -EIO;
        rc = catalog_status(rc);
        if (rc == 0)
            rc = rebuild(&x);
        if (rc == 0 && x.n_dels) {
            int drc = catalog_delete_batch(e->cat, x.dels, x.n_dels, CATALOG_SYNC);
            if (drc == 0) {
                for (size_t i = 0; i < x.n; i++) {
                    if (x.b[i].nvme_marked)
                        nvme_free(e->nvme, x.b[i].nvme);
                    if (x.b[i].disk_marked)
                        disk_free(e->disk, x.b[i].dloc);
                }
            }
        }
        if (x.n_dels || st.garbled)
            io_log(IO_LOG_WARN, "warm restart: namespace %s: %zu catalog records dropped (bad, "
                   "expired, orphaned or space gone), %llu garbled",
                   ns->name, x.n_dels, (unsigned long long)st.garbled);
        util_free(x.b);
        util_free(x.units);
        util_free(x.dels);
    }
    return rc;
}
