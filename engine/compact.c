/*
 * compact.c — reclaiming dead disk records (issue 3: "dead records reclaimed by compaction").
 *
 * Records die on the disk tier when their block is dropped or removed (quarantine drain ->
 * disk_free) and, after a warm restart, when no catalog record claims them. A sealed segment
 * whose last record dies is deleted by the disk module at once; partly dead ones wait for
 * disk_compact(), which copies their live records into the append segment and reports each
 * move through a callback. This file runs it for the engine:
 *
 *   1. under e->lock: drain the quarantine (dead records are freed, not copied), then collect
 *      every disk copy of the index {disk_loc, node, depth} from the tenants' disk lists and
 *      pin each node's path (the nodes cannot go while compaction may look them up); sort by
 *      location. Our own pins are counted, so a node pinned by anyone else is recognised.
 *   2. disk_compact under disk_rw (exclusive). For each moved record, move_cb:
 *        - finds the block by old location; refuses (-EBUSY) a record the index does not
 *          hold at that location, a block pinned by a lease or prefetch (pins beyond ours),
 *          and a block being read, moved or bad (BLK_PROMO | BLK_MOVING | BLK_BAD);
 *        - disk_sync (the copy's bytes are durable), then puts the block's disk record with
 *          the new location (CATALOG_SYNC: the same catalog key, so the old location's
 *          record is replaced atomically) while the block is BLK_MOVING (readers wait);
 *        - repoints the index (dlocs[h] = new location) under e->lock.
 *      disk_compact kills the old record only when the callback accepted, and deletes the
 *      old segment only after every record in it moved: a crash at any point leaves the
 *      catalog naming a location whose bytes are durable (the old until the put, the new
 *      after). A refusal stops this compaction (the new copy is dropped, the old stands);
 *      the next attempt retries.
 *   3. under e->lock: unpin.
 * Lock order: disk_rw (exclusive, held by disk_compact's caller) -> e->lock inside the
 * callback; nobody takes disk_rw while holding e->lock (internal.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compact.h"

typedef struct centry {
    disk_loc loc;
    kvt_ns *ns;
    radix_node *node; /* pinned for the compaction */
    uint64_t depth;
    uint32_t own_pins; /* node->pins that are ours */
} centry;

typedef struct cctx {
    kvt_engine *e;
    centry *v;
    size_t n, cap;
    uint64_t refused, moved;
} cctx;

static int by_loc(const void *a, const void *b)
{
    disk_loc x = ((const centry *)a)->loc, y = ((const centry *)b)->loc;
    return x < y ? -1 : x > y;
}

static uint64_t parent_key(radix_node *n, uint32_t j)
{
    if (j > 0)
        return n->blocks[j - 1].key;
    radix_node *p = n->parent;
    return p && p->parent ? p->blocks[p->n_blocks - 1].key : 0;
}

/* Step 1 (lock held): collect and pin. */
static int collect(cctx *c)
{
    kvt_engine *e = c->e;
    for (tenant *tn = e->tenants; tn; tn = tn->next) {
        util_list *h = &tn->tl[RADIX_TIER_DISK];
        for (util_list *l = h->next; l != h; l = l->next) {
            radix_node *n = UTIL_CONTAINER_OF(l, radix_node, tlink[RADIX_TIER_DISK]);
            for (uint32_t j = 0; j < n->n_blocks; j++) {
                uint32_t s = n->blocks[j].slot[RADIX_TIER_DISK];
                if (s == RADIX_NO_SLOT)
                    continue;
                if (c->n == c->cap) {
                    size_t cap = c->cap ? c->cap * 2 : 1024;
                    centry *v = util_realloc(c->v, cap * sizeof *v);
                    if (!v)
                        return -ENOMEM;
                    c->v = v;
                    c->cap = cap;
                }
                c->v[c->n++] = (centry){.loc = e->dlocs[s], .ns = n->owner, .node = n,
                                        .depth = n->depth + j};
            }
        }
    }
    /* pin each distinct node once; own pins = pins after - before, all under the lock */
    for (size_t i = 0; i < c->n; i++)
        c->v[i].own_pins = c->v[i].node->pins;
    for (size_t i = 0; i < c->n; i++)
        if (i == 0 || c->v[i].node != c->v[i - 1].node)
            path_pin(c->v[i].node);
    for (size_t i = 0; i < c->n; i++)
        c->v[i].own_pins = c->v[i].node->pins - c->v[i].own_pins;
    if (c->n > 1) /* c->v is NULL when nothing was collected: qsort(NULL, 0) is UB */
        qsort(c->v, c->n, sizeof *c->v, by_loc);
    return 0;
}

static void release(cctx *c)
{
    /* the same distinct nodes as pinned (sorting changed the order: unpin by marking) */
    for (size_t i = 0; i < c->n; i++)
        c->v[i].node->eflags |= 0x80000000u;
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].node->eflags & 0x80000000u) {
            c->v[i].node->eflags &= ~0x80000000u;
            path_unpin(c->v[i].node);
        }
    util_free(c->v);
    c->v = NULL;
    c->n = c->cap = 0;
}

static int move_cb(void *arg, uint64_t tag, disk_loc old_loc, disk_loc new_loc)
{
    cctx *c = arg;
    kvt_engine *e = c->e;
    centry key = {.loc = old_loc};
    centry *ce = bsearch(&key, c->v, c->n, sizeof *c->v, by_loc);
    pthread_mutex_lock(&e->lock);
    radix_node *nd = NULL;
    radix_block *b = ce ? blk_at_depth(ce->node, ce->depth, &nd) : NULL;
    uint32_t h = b ? b->slot[RADIX_TIER_DISK] : RADIX_NO_SLOT;
    if (!b || b->key != tag || h == RADIX_NO_SLOT || e->dlocs[h] != old_loc ||
        nd->pins > ce->own_pins || (b->flags & (BLK_PROMO | BLK_MOVING | BLK_BAD))) {
        c->refused++;
        pthread_mutex_unlock(&e->lock);
        return -EBUSY;
    }
    kvt_ns *ns = ce->ns;
    uint32_t j = (uint32_t)(ce->depth - nd->depth);
    uint32_t *units = util_malloc((size_t)ns->bu * sizeof *units);
    if (!units) {
        pthread_mutex_unlock(&e->lock);
        return -ENOMEM;
    }
    memcpy(units, nd->units + (size_t)j * ns->bu, (size_t)ns->bu * sizeof *units);
    catalog_record r;
    memset(&r, 0, sizeof r);
    r.key = b->key;
    r.parent_key = parent_key(nd, j);
    r.location = new_loc;
    r.checksum = b->checksum;
    r.last_access = realtime_ns();
    r.ns_id = ns->id;
    r.length = (uint32_t)ns->block_bytes;
    r.depth = (uint32_t)ce->depth;
    r.n_units = ns->bu;
    r.tier = CATALOG_TIER_DISK;
    r.compression = CATALOG_COMP_NONE;
    r.units = units;
    if (nd->ph_ttl_s > 0) {
        double left = nd->ph_last_s + nd->ph_ttl_s - policy_now_s(e);
        r.ttl_deadline = realtime_ns() + (uint64_t)(left > 0 ? left * 1e9 : 1);
    }
    b->flags |= BLK_MOVING; /* readers wait: the location changes under them */
    pthread_mutex_unlock(&e->lock);

    int rc = disk_sync(e->disk); /* the copy's bytes before its record */
    if (rc == 0)
        rc = catalog_status(catalog_put_batch(e->cat, &r, 1, CATALOG_SYNC, NULL));
    util_free(units);

    pthread_mutex_lock(&e->lock);
    b = blk_at_depth(ce->node, ce->depth, &nd);
    b->flags &= ~BLK_MOVING;
    if (rc == 0) {
        e->dlocs[h] = new_loc;
        ns->tn->tused[RADIX_TIER_DISK] += disk_loc_len(new_loc);
        ns->tn->tused[RADIX_TIER_DISK] -= disk_loc_len(old_loc);
        c->moved++;
    }
    pthread_cond_broadcast(&e->promo_cv);
    pthread_mutex_unlock(&e->lock);
    if (rc)
        io_log(IO_LOG_WARN, "compaction: record of block %016llx not repointed: %s",
               (unsigned long long)tag, kvt_strerror(rc));
    return rc;
}

int engine_compact(kvt_engine *e, double min_garbage, disk_compact_stats *st)
{
    disk_compact_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    if (!e->tiered || e->simulate || !e->disk)
        return 0;
    cctx c = {.e = e};
    pthread_mutex_lock(&e->lock);
    tiers_quarantine_drain(e);
    int rc = collect(&c);
    pthread_mutex_unlock(&e->lock);
    if (rc == 0) {
        pthread_rwlock_wrlock(&e->disk_rw);
        uint64_t before = disk_file_bytes(e->disk);
        rc = disk_compact(e->disk, min_garbage, move_cb, &c, st);
        uint64_t after = disk_file_bytes(e->disk), live = disk_live_bytes(e->disk);
        pthread_rwlock_unlock(&e->disk_rw);
        if (st->records_moved || st->segments_freed || rc)
            io_log(rc ? IO_LOG_WARN : IO_LOG_INFO,
                   "disk compaction: %llu records moved, %u segments freed, file bytes %llu -> "
                   "%llu (live %llu)%s%s",
                   (unsigned long long)st->records_moved, st->segments_freed,
                   (unsigned long long)before, (unsigned long long)after,
                   (unsigned long long)live, rc ? ", stopped: " : "",
                   rc ? kvt_strerror(rc) : "");
    }
    pthread_mutex_lock(&e->lock);
    release(&c);
    e->compactions++;
    e->compact_moved += st->records_moved;
    e->compact_refused += c.refused;
    pthread_mutex_unlock(&e->lock);
    return rc;
}

int compact_maybe(kvt_engine *e)
{
    if (!e->disk || e->stop)
        return 0;
    /* Decide without dropping e->lock (a wakeup of the flusher must not be lost meanwhile):
     * the counters need disk_rw, which is never waited for under e->lock, so only tried. */
    if (pthread_rwlock_tryrdlock(&e->disk_rw) != 0)
        return 0; /* the disk is busy: decide at the next idle moment */
    uint64_t file = disk_file_bytes(e->disk), live = disk_live_bytes(e->disk);
    pthread_rwlock_unlock(&e->disk_rw);
    if (!file || 1.0 - (double)live / (double)file < COMPACT_TRIGGER ||
        (file == e->compact_last_file && live == e->compact_last_live))
        return 0;
    e->compacting = 1;
    pthread_mutex_unlock(&e->lock);
    disk_compact_stats st;
    engine_compact(e, COMPACT_SEG_MIN_GARBAGE, &st);
    pthread_rwlock_rdlock(&e->disk_rw);
    uint64_t f2 = disk_file_bytes(e->disk), l2 = disk_live_bytes(e->disk);
    pthread_rwlock_unlock(&e->disk_rw);
    pthread_mutex_lock(&e->lock);
    e->compact_last_file = f2; /* flusher-only fields: retried only once they change */
    e->compact_last_live = l2;
    e->compacting = 0;
    pthread_cond_broadcast(&e->wt_done);
    return 1; /* the caller looks for work again: any wakeup meanwhile is not lost */
}

/* Tests: compact now (min_garbage as disk_compact), keeping the flusher out of a batch.
 * Hidden in the shared library, like kvt__engine_set_fault. */
int kvt__engine_compact(kvt_engine *e, double min_garbage, uint64_t *moved, uint32_t *freed);
int kvt__engine_compact(kvt_engine *e, double min_garbage, uint64_t *moved,
                                   uint32_t *freed)
{
    pthread_mutex_lock(&e->lock);
    e->wt_busy++; /* no batch and no compaction of the flusher's own start meanwhile */
    while (e->wt_active || e->compacting || e->quar_draining)
        pthread_cond_wait(&e->wt_done, &e->lock);
    e->compacting = 1;
    pthread_mutex_unlock(&e->lock);
    disk_compact_stats st;
    int rc = engine_compact(e, min_garbage, &st);
    pthread_mutex_lock(&e->lock);
    e->compacting = 0;
    e->wt_busy--;
    pthread_cond_signal(&e->wt_work);
    pthread_mutex_unlock(&e->lock);
    if (moved)
        *moved = st.records_moved;
    if (freed)
        *freed = st.segments_freed;
    return rc;
}
