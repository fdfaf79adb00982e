/*
 * tiering.c — the persistent tiers behind the DRAM cache: per-tier bookkeeping and victim
 * search, the write-through thread, demotion (DRAM -> nvme -> disk -> dropped), verified
 * reads and promotion, prefetch, the quarantine of freed nvme/disk space, flush and close.
 * State and lock rules: engine/internal.h. Design and flows: docs/architecture.md.
 *
 * Victim search: each tenant has one LRU list per tier (tenant.tl[t]) of the radix nodes
 * holding at least one block with a copy in tier t (radix_node.tlink[t], tcount[t]); the
 * split hook recounts both halves and links the upper half next to the lower one, so the
 * lists survive splits without a scan. touch_path() moves a node to the fresh end of every
 * list it is on, deepest first, so an ancestor is fresher than its descendants. A victim is
 * found from the stale end, skipping pinned and pending nodes (and, for DRAM, nodes whose
 * DRAM blocks still wait for the write-through): no walk over the tier's other blocks.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/compact.h"
#include "engine/internal.h"

#define WT_BATCH 16u /* blocks per write-through batch: one fdatasync + one catalog batch */

static uint64_t round_up4k(uint64_t x) { return (x + IO_ALIGN - 1) & ~(uint64_t)(IO_ALIGN - 1); }

uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int catalog_status(int rc)
{
    if (rc == CATALOG_EROCKS || rc == CATALOG_ECORRUPT || rc == CATALOG_ECOLLISION ||
        rc == CATALOG_EFORMAT)
        return KVT_ECATALOG;
    return rc;
}

uint64_t dram_block_bytes(const kvt_ns *ns)
{
    const dram_tier *d = ns->eng->dram;
    return (uint64_t)dram_slots_for(d, ns->block_bytes) * dram_slot_bytes(d);
}

/* ---------------------------------------------------------------- paths and pins */

radix_block *blk_at_depth(radix_node *deepest, uint64_t depth, radix_node **node)
{
    radix_node *n = deepest;
    while (n->depth > depth)
        n = n->parent;
    if (node)
        *node = n;
    return &n->blocks[depth - n->depth];
}

void path_pin(radix_node *n)
{
    for (; n && n->parent; n = n->parent)
        n->pins++;
}

void path_unpin(radix_node *n)
{
    for (; n && n->parent; n = n->parent)
        n->pins--;
}

static uint64_t parent_key_of(radix_node *n, uint32_t j)
{
    if (j > 0)
        return n->blocks[j - 1].key;
    radix_node *p = n->parent;
    return p && p->parent ? p->blocks[p->n_blocks - 1].key : 0;
}

/* ---------------------------------------------------------------- disk location table */

int dloc_get(kvt_engine *e, disk_loc loc, uint32_t *h)
{
    if (e->n_dloc_free) {
        *h = e->dloc_free[--e->n_dloc_free];
    } else {
        if (e->n_dlocs == e->cap_dlocs) {
            uint32_t cap = e->cap_dlocs ? e->cap_dlocs * 2 : 1024;
            disk_loc *d = util_realloc(e->dlocs, cap * sizeof *d);
            if (!d)
                return -ENOMEM;
            e->dlocs = d;
            uint32_t *f = util_realloc(e->dloc_free, cap * sizeof *f);
            if (!f)
                return -ENOMEM;
            e->dloc_free = f;
            e->cap_dlocs = cap;
        }
        *h = e->n_dlocs++;
    }
    e->dlocs[*h] = loc;
    return 0;
}

static void dloc_put(kvt_engine *e, uint32_t h)
{
    e->dlocs[h] = DISK_LOC_NONE;
    e->dloc_free[e->n_dloc_free++] = h;
}

/* ---------------------------------------------------------------- copies */

static void tier_link(tenant *tn, radix_node *n, int t)
{
    if (n->tcount[t]++ == 0)
        util_list_add_tail(&tn->tl[t], &n->tlink[t]);
}

static void tier_unlink(radix_node *n, int t)
{
    if (--n->tcount[t] == 0)
        util_list_del(&n->tlink[t]);
}

void blk_add_copy(kvt_ns *ns, radix_node *n, radix_block *b, int tier, uint32_t slot)
{
    kvt_engine *e = ns->eng;
    b->slot[tier] = slot;
    tier_link(ns->tn, n, tier);
    e->tier_blocks[tier]++;
    if (tier == RADIX_TIER_NVME)
        ns->tn->tused[tier] += e->nvme_slot_bytes;
    else if (tier == RADIX_TIER_DISK)
        ns->tn->tused[tier] += disk_loc_len(e->dlocs[slot]);
}

static int quar_add(kvt_engine *e, const quar *q)
{
    if (e->n_quar == e->cap_quar) {
        size_t cap = e->cap_quar ? e->cap_quar * 2 : 64;
        quar *nq = util_realloc(e->quar, cap * sizeof *nq);
        if (!nq)
            return -ENOMEM; /* the space leaks until restart; the record is deleted then */
        e->quar = nq;
        e->cap_quar = cap;
    }
    e->quar[e->n_quar++] = *q;
    return 0;
}

/* Remove one copy. nvme/disk space goes to the quarantine: it is reused only after the
 * catalog delete of its record is durable (catalog.h, engine order of operations). */
void blk_drop_copy(kvt_ns *ns, radix_node *n, radix_block *b, int tier)
{
    kvt_engine *e = ns->eng;
    uint32_t s = b->slot[tier];
    if (s == RADIX_NO_SLOT)
        return;
    if (tier == RADIX_TIER_DRAM) {
        dram_free(e->dram, s);
        ns->tn->used -= dram_block_bytes(ns);
    } else if (e->simulate) { /* accounting only: no catalog, space back at once */
        if (tier == RADIX_TIER_NVME) {
            sim_nvme_free(e, s);
            ns->tn->tused[tier] -= e->nvme_slot_bytes;
        } else {
            uint64_t len = disk_loc_len(e->dlocs[s]);
            ns->tn->tused[tier] -= len;
            e->sim_disk_used -= len;
            dloc_put(e, s);
        }
    } else {
        quar q = {.del = {.ns_id = ns->id, .tier = (uint32_t)tier, .key = b->key}, .tier = tier};
        if (tier == RADIX_TIER_NVME) {
            q.loc = s;
            ns->tn->tused[tier] -= e->nvme_slot_bytes;
        } else {
            q.loc = e->dlocs[s];
            ns->tn->tused[tier] -= disk_loc_len(e->dlocs[s]);
            dloc_put(e, s);
        }
        quar_add(e, &q);
    }
    b->slot[tier] = RADIX_NO_SLOT;
    tier_unlink(n, tier);
    e->tier_blocks[tier]--;
}

/* ---------------------------------------------------------------- write-through epochs */

static void epoch_advance(kvt_engine *e)
{
    while (e->epoch_base < e->epoch && e->epoch_pending[e->epoch_base % WT_EPOCHS] == 0)
        e->epoch_base++;
}

/* A DIRTY block left the write-through (persisted, given up, or removed). Lock held. */
static void wt_block_done(kvt_ns *ns, radix_block *b)
{
    kvt_engine *e = ns->eng;
    uint64_t ep = (b->flags >> BLK_EPOCH_SHIFT) & BLK_EPOCH_MASK;
    e->epoch_pending[ep % WT_EPOCHS]--;
    b->flags &= ~(BLK_DIRTY | BLK_WT | (BLK_EPOCH_MASK << BLK_EPOCH_SHIFT));
    ns->tn->unpersisted--;
    epoch_advance(e);
    pthread_cond_broadcast(&e->wt_done);
}

/* Less than an eighth of DRAM free: the write-through ignores its window. Lock held. */
static int dram_low(kvt_engine *e)
{
    uint64_t sb = dram_slot_bytes(e->dram);
    return sb && (uint64_t)dram_free_slots(e->dram) * 8 < dram_capacity(e->dram) / sb;
}

void wt_enqueue(kvt_ns *ns, radix_node *leaf, uint32_t first, uint32_t n)
{
    kvt_engine *e = ns->eng;
    if (n == 0)
        return;
    if (e->simulate) { /* instant, accounting-only write-through (engine/sim.c) */
        sim_persist(ns, leaf, first, n);
        return;
    }
    uint32_t ep = (uint32_t)(e->epoch & BLK_EPOCH_MASK);
    uint32_t q = 0;
    for (uint32_t i = first; i < first + n; i++)
        if (!(leaf->blocks[i].flags & BLK_NOPERSIST)) { /* drain: not worth writing */
            leaf->blocks[i].flags |= BLK_DIRTY | (ep << BLK_EPOCH_SHIFT);
            q++;
        }
    if ((n = q) == 0)
        return;
    e->epoch_pending[e->epoch % WT_EPOCHS] += n;
    ns->tn->unpersisted += n;
    int was_empty = util_list_empty(&e->dirty);
    if (leaf->n_dirty == 0) {
        util_list_add_tail(&e->dirty, &leaf->wlink);
        leaf->wq_ns = util_now_coarse_ns(); /* the queue stays in age order */
    }
    leaf->n_dirty += n;
    /* With a write-back window the flusher sleeps until the oldest node is ripe: a younger
     * one changes nothing (waking it per put cost a futex wake and two context switches). */
    if (!e->opts->persist_delay_ms || was_empty || dram_low(e))
        pthread_cond_signal(&e->wt_work);
}

void blk_release_all(kvt_ns *ns, radix_node *n, radix_block *b)
{
    hbm_block_released(ns, b); /* its HBM copy, if any (engine/hbm.c) */
    for (int t = RADIX_TIER_DRAM; t < RADIX_TIERS; t++)
        blk_drop_copy(ns, n, b, t);
    if (b->flags & BLK_DIRTY) {
        if (!(b->flags & BLK_WT))
            n->n_dirty--;
        wt_block_done(ns, b);
    }
}

void node_tiers_unlink(radix_node *n)
{
    for (int t = 0; t < RADIX_TIERS; t++)
        util_list_del(&n->tlink[t]);
    util_list_del(&n->wlink);
}

void on_node_split(void *ctx, radix_node *u, radix_node *n)
{
    (void)ctx;
    for (int t = RADIX_TIER_DRAM; t < RADIX_TIERS; t++) {
        uint32_t c = 0;
        for (uint32_t i = 0; i < u->n_blocks; i++)
            c += u->blocks[i].slot[t] != RADIX_NO_SLOT;
        u->tcount[t] = c;
        n->tcount[t] -= c;
        if (c) /* right after n: same recency, the ancestor on the fresher side */
            util_list_add_tail(n->tlink[t].next, &u->tlink[t]);
        if (n->tcount[t] == 0)
            util_list_del(&n->tlink[t]);
    }
    uint32_t d = 0;
    for (uint32_t i = 0; i < u->n_blocks; i++)
        d += (u->blocks[i].flags & (BLK_DIRTY | BLK_WT)) == BLK_DIRTY;
    u->n_dirty = d;
    n->n_dirty -= d;
    if (d) {
        util_list_add_tail(n->wlink.next, &u->wlink);
        u->wq_ns = n->wq_ns; /* its place in the queue: the same age */
    }
    if (n->n_dirty == 0)
        util_list_del(&n->wlink);
    u->owner = n->owner;
    u->eflags = n->eflags;
    u->ph_last_s = n->ph_last_s; /* one history per node: both parts keep it */
    u->ph_gap_s = n->ph_gap_s;
    u->ph_freq = n->ph_freq;
    u->ph_ttl_s = n->ph_ttl_s;
    u->ph_hits = n->ph_hits;
}

/* ---------------------------------------------------------------- removal */

static void on_block_removed(void *ctx, radix_node *n, radix_block *b)
{
    kvt_ns *ns = ctx;
    if (b->flags & BLK_BAD)
        ns->eng->blocks_dropped_bad++;
    blk_release_all(ns, n, b);
    ns->eng->blocks_cached--;
}

long remove_blocks(kvt_ns *ns, radix_node *n, uint32_t from)
{
    return radix_remove(ns->tree, n, from, on_block_removed, ns);
}

int reuse_leaf(kvt_ns *ns, radix_node *n)
{
    radix_block *b = &n->blocks[0];
    if (n->n_blocks != 1 || n->n_kids || n->pins || (n->flags & RADIX_PENDING) ||
        (b->flags & (BLK_WT | BLK_PROMO | BLK_MOVING)))
        return 0;
    on_block_removed(ns, n, b); /* every copy, the write-through queue, the counts */
    if (n->n_dirty == 0) /* out of the queue until the new bytes are published */
        util_list_del(&n->wlink);
    uint64_t key = b->key;
    memset(b, 0, sizeof *b);
    b->key = key;
    for (int t = 0; t < RADIX_TIERS; t++)
        b->slot[t] = RADIX_NO_SLOT;
    n->eflags &= ~NODE_HAS_BAD;
    /* a new value: no history, no TTL hint, as a fresh node would have */
    n->hits = 0;
    n->ph_last_s = n->ph_gap_s = n->ph_freq = n->ph_ttl_s = 0;
    n->ph_hits = 0;
    n->flags |= RADIX_PENDING; /* invisible until radix_publish */
    return 1;
}

void drop_bad_locked(kvt_ns *ns, radix_node *deepest)
{
    /* the shallowest bad block on the path goes, with everything below it */
    radix_node *at = NULL;
    uint32_t j = 0;
    for (radix_node *n = deepest; n && n->parent; n = n->parent) {
        if (!(n->eflags & NODE_HAS_BAD))
            continue;
        for (uint32_t i = 0; i < n->n_blocks; i++)
            if (n->blocks[i].flags & BLK_BAD) {
                at = n;
                j = i;
                break;
            }
    }
    if (at)
        remove_blocks(ns, at, j); /* -EBUSY: another lease pins it; its release retries */
}

/* ---------------------------------------------------------------- DRAM eviction */

static int blk_persisted(const radix_block *b)
{
    return b->slot[RADIX_TIER_NVME] != RADIX_NO_SLOT || b->slot[RADIX_TIER_DISK] != RADIX_NO_SLOT;
}

/*
 * Make room in DRAM for tenant tn, one block's worth. Lock held. From the stale end of the
 * tenant's DRAM list: free the DRAM copy of a persisted block (demotion, free); a block the
 * write-through gave up on (NOPERSIST) or, with allow_drop, any unpersisted block is dropped
 * with everything after it. Returns 1 if something was freed, 0 if nothing could be.
 */
/* One node's part of tiered_evict_dram: 1 if it freed something. */
static int evict_dram_node(kvt_engine *e, radix_node *n, int pass, int allow_drop)
{
    kvt_ns *ns = n->owner;
    for (uint32_t j = n->n_blocks; j-- > 0;) {
        radix_block *b = &n->blocks[j];
        if (b->slot[RADIX_TIER_DRAM] == RADIX_NO_SLOT || (b->flags & (BLK_PROMO | BLK_WT)))
            continue;
        if (pass == 0 && blk_persisted(b)) {
            blk_drop_copy(ns, n, b, RADIX_TIER_DRAM);
            e->demotions++;
            return 1;
        }
        if (pass == 1 && (allow_drop || (b->flags & BLK_NOPERSIST) || e->simulate)) {
            long r = remove_blocks(ns, n, j);
            if (r > 0) {
                e->blocks_evicted += (uint64_t)r;
                return 1;
            }
            return 0; /* a pinned or pending descendant: next node */
        }
    }
    return 0;
}

static int dram_candidate(radix_node *n)
{
    return !n->pins && !(n->flags & RADIX_PENDING);
}

/* The block of n a DRAM eviction would act on: its last DRAM copy that no read or write is
 * using; NULL if none. */
static radix_block *dram_victim_block(radix_node *n, uint32_t *jo)
{
    for (uint32_t j = n->n_blocks; j-- > 0;) {
        radix_block *b = &n->blocks[j];
        if (b->slot[RADIX_TIER_DRAM] == RADIX_NO_SLOT || (b->flags & (BLK_PROMO | BLK_WT)))
            continue;
        *jo = j;
        return b;
    }
    return NULL;
}

/* Can policy_evict act on n at once? Its victim block is persisted (demote: free its DRAM
 * copy), or it is the last block of a leaf that may go (a copy the write-through gave up or
 * was told to skip, any block in simulation, any with allow_drop): dropping it loses no
 * other block. A block whose drop would take persisted descendants is not a candidate. */
static int dram_actionable(radix_node *n, int allow_drop)
{
    uint32_t j;
    radix_block *b;
    if (!dram_candidate(n) || !n->owner || !(b = dram_victim_block(n, &j)))
        return 0;
    if (blk_persisted(b))
        return 1;
    return j + 1 == n->n_blocks && n->n_kids == 0 &&
           (allow_drop || (b->flags & BLK_NOPERSIST) || ((kvt_ns *)n->owner)->eng->simulate);
}

static int dram_actionable_keep(radix_node *n) { return dram_actionable(n, 0); }
static int dram_actionable_drop(radix_node *n) { return dram_actionable(n, 1); }

/*
 * drain: the policy's pick (the lowest value density among the POLICY_DRAM_WINDOW stalest
 * actionable nodes, engine/policy.c), acted on at once: a persisted block loses its DRAM copy
 * (demotion), an unpersisted one (its lower copy was never written or was evicted below) is
 * dropped: the model ranked it least valuable of the window, whatever copies it has. O(window)
 * per eviction. (Before: the pick was used only if persisted, else the whole DRAM list was
 * scanned for any persisted block; unpersisted blocks, whose density is high because nothing
 * below backs them, then stayed in DRAM for good: 72% of the replay's time, 10k fewer DRAM
 * hits on the Mooncake trace.)
 */
static int policy_evict_dram(kvt_engine *e, tenant *tn, int allow_drop)
{
    radix_node *n = policy_pick_n(e, tn, RADIX_TIER_DRAM,
                                  allow_drop ? dram_actionable_drop : dram_actionable_keep,
                                  POLICY_DRAM_WINDOW);
    uint32_t j;
    radix_block *b;
    if (!n || !(b = dram_victim_block(n, &j)))
        return 0;
    kvt_ns *ns = n->owner;
    if (blk_persisted(b)) {
        blk_drop_copy(ns, n, b, RADIX_TIER_DRAM);
        e->demotions++;
        return 1;
    }
    long r = remove_blocks(ns, n, j);
    if (r > 0) {
        e->blocks_evicted += (uint64_t)r;
        return 1;
    }
    return 0;
}

int tiered_evict_dram(kvt_engine *e, tenant *tn, int allow_drop)
{
    /* Without a tier below DRAM nothing is ever persisted: pass 0 (demote a persisted copy)
     * would scan the whole DRAM list for nothing on every eviction, quadratic in capacity. */
    int lower = e->simulate ? (e->opts->tier_capacity[RADIX_TIER_NVME] || e->sim_disk_cap)
                            : (e->nvme || e->disk);
    if (e->policy == EVICT_POLICY_DRAIN && lower && policy_evict_dram(e, tn, allow_drop))
        return 1;
    /* lru; lfu and drain without a lower tier (their pick first: DRAM alone, every victim is
     * dropped with what is cached after it); drain when nothing near the stale end could be
     * acted on (pinned, pending or in flight): demote the stalest persisted copy, else drop */
    for (int pass = lower ? 0 : 1; pass < 2; pass++) {
        radix_node *pick = e->policy != EVICT_POLICY_LRU
                               ? policy_pick(e, tn, RADIX_TIER_DRAM, dram_candidate)
                               : NULL;
        if (pick && evict_dram_node(e, pick, pass, allow_drop))
            return 1;
        util_list *h = &tn->tl[RADIX_TIER_DRAM];
        for (util_list *l = h->next; l != h; l = l->next) {
            radix_node *n = UTIL_CONTAINER_OF(l, radix_node, tlink[RADIX_TIER_DRAM]);
            if (!dram_candidate(n) || n == pick)
                continue;
            if (evict_dram_node(e, n, pass, allow_drop))
                return 1;
        }
    }
    return 0;
}

static uint64_t deadline_ns(uint32_t ms) { return util_now_ns() + (uint64_t)ms * 1000000ull; }

static void cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *m, uint64_t mono_deadline)
{
    /* the condvars use CLOCK_MONOTONIC (tiers_open) */
    struct timespec ts = {(time_t)(mono_deadline / 1000000000ull),
                          (long)(mono_deadline % 1000000000ull)};
    pthread_cond_timedwait(cv, m, &ts);
}

int tiered_alloc_dram(kvt_ns *ns, uint32_t *slot, int may_wait)
{
    kvt_engine *e = ns->eng;
    tenant *tn = ns->tn;
    uint64_t until = 0;
    if (tn->quota && dram_block_bytes(ns) > tn->quota)
        return -ENOSPC;
    for (;;) {
        int rc = dram_alloc_once(ns, slot);
        if (rc != -ENOSPC)
            return rc;
        if (tiered_evict_dram(e, tn, 0))
            continue;
        if (!may_wait)
            return -ENOSPC;
        /* Backpressure: the tenant's DRAM holds blocks the write-through can still save. */
        if (tn->unpersisted && e->threads_started && !e->stop && e->opts->backpressure_ms) {
            uint64_t now = util_now_ns();
            if (!until)
                until = deadline_ns(e->opts->backpressure_ms);
            if (now < until) {
                e->wt_urgent++; /* the write-through ignores its delay meanwhile */
                pthread_cond_signal(&e->wt_work);
                cond_wait_until(&e->wt_done, &e->lock, until);
                e->wt_urgent--;
                continue;
            }
        }
        if (!tiered_evict_dram(e, tn, 1))
            return -ENOSPC;
    }
}

/* ---------------------------------------------------------------- io contexts for readers */

static io_ctx *rd_ctx_get(kvt_engine *e)
{
    io_pool *p = &e->rd_pool;
    io_ctx *c = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->n_free)
        c = p->free[--p->n_free];
    pthread_mutex_unlock(&p->lock);
    if (!c && io_ctx_open(&p->opts, &c) != 0)
        c = NULL;
    if (c) {
        pthread_mutex_lock(&p->lock);
        io_ctx_set_fault(c, p->fault, p->fault_arg);
        pthread_mutex_unlock(&p->lock);
    }
    return c;
}

static void rd_ctx_put(kvt_engine *e, io_ctx *c)
{
    io_pool *p = &e->rd_pool;
    pthread_mutex_lock(&p->lock);
    if (p->n_free == p->cap) {
        unsigned cap = p->cap ? p->cap * 2 : 8;
        io_ctx **f = util_realloc(p->free, cap * sizeof *f);
        if (!f) {
            pthread_mutex_unlock(&p->lock);
            io_ctx_close(c);
            return;
        }
        p->free = f;
        p->cap = cap;
    }
    p->free[p->n_free++] = c;
    pthread_mutex_unlock(&p->lock);
}

/* Tests: install a fault hook on every io context of the engine (nvme I/O) and on the disk
 * tier. Declared in tests that use it; not part of the public API: hidden in the shared
 * library, linked by the tests from the static one. */
void kvt__engine_set_fault(kvt_engine *e, io_fault_fn fn, void *arg);
void kvt__engine_set_fault(kvt_engine *e, io_fault_fn fn, void *arg)
{
    io_pool *p = &e->rd_pool;
    pthread_mutex_lock(&p->lock);
    p->fault = fn;
    p->fault_arg = arg;
    pthread_mutex_unlock(&p->lock);
    /* the flusher's context: only touched by the flusher under this lock's protocol */
    pthread_mutex_lock(&e->lock);
    e->wt_busy++; /* keeps the flusher from starting a batch meanwhile */
    while (e->wt_active)
        pthread_cond_wait(&e->wt_done, &e->lock);
    pthread_mutex_unlock(&e->lock);
    if (e->wt_io)
        io_ctx_set_fault(e->wt_io, fn, arg);
    if (e->disk) {
        pthread_rwlock_wrlock(&e->disk_rw);
        disk_set_fault(e->disk, fn, arg);
        pthread_rwlock_unlock(&e->disk_rw);
    }
    pthread_mutex_lock(&e->lock);
    e->wt_busy--;
    pthread_cond_signal(&e->wt_work);
    pthread_mutex_unlock(&e->lock);
}

/* ---------------------------------------------------------------- disk bandwidth cap */

static void disk_bw_charge(kvt_engine *e, uint64_t bytes)
{
    uint64_t rate = e->opts->tier_bw[RADIX_TIER_DISK];
    if (!rate)
        return;
    pthread_mutex_lock(&e->disk_bw_lock);
    uint64_t now = util_now_ns();
    double burst = rate / 20.0 > (1 << 20) ? rate / 20.0 : (double)(1 << 20);
    e->disk_bw_tokens += (double)(now - e->disk_bw_last_ns) * 1e-9 * (double)rate;
    if (e->disk_bw_tokens > burst)
        e->disk_bw_tokens = burst;
    e->disk_bw_last_ns = now;
    e->disk_bw_tokens -= (double)bytes;
    double debt = -e->disk_bw_tokens;
    pthread_mutex_unlock(&e->disk_bw_lock);
    if (debt > 0) {
        double s = debt / (double)rate;
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* ---------------------------------------------------------------- quarantine */

/* Take the quarantine for one catalog delete batch: *n copies (NULL, 0 when empty). The
 * caller deletes their records, then calls quar_done. Lock held. */
static quar *quar_take(kvt_engine *e, size_t *n)
{
    *n = e->n_quar;
    if (!*n)
        return NULL;
    quar *q = e->quar;
    e->quar = NULL;
    e->n_quar = e->cap_quar = 0;
    e->quar_draining++; /* compaction waits for it (engine/compact.c) */
    return q;
}

/* Copies q[0..n) of quar_take: their records' deletes are durable (rc == 0): free their
 * space; else they stay quarantined. Called unlocked; returns with the lock held. */
static void quar_done(kvt_engine *e, quar *q, size_t n, int rc)
{
    if (rc == 0 && n && e->disk) {
        pthread_rwlock_wrlock(&e->disk_rw);
        for (size_t i = 0; i < n; i++)
            if (q[i].tier == RADIX_TIER_DISK)
                disk_free(e->disk, q[i].loc);
        pthread_rwlock_unlock(&e->disk_rw);
    }
    pthread_mutex_lock(&e->lock);
    if (!n)
        return;
    e->quar_draining--;
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            if (q[i].tier == RADIX_TIER_NVME)
                nvme_free(e->nvme, (uint32_t)q[i].loc);
        pthread_cond_broadcast(&e->wt_done);
    } else {
        io_log(IO_LOG_WARN, "catalog delete failed (%d): %zu copies stay quarantined", rc, n);
        for (size_t i = 0; i < n; i++)
            quar_add(e, &q[i]);
    }
    util_free(q);
}

/* Delete the quarantined copies' records (synced), then free their space. Flusher thread
 * (and close) only, so a delete can never overtake a later put of the same key. Lock held;
 * dropped while the catalog and the disk tier work. */
static void quarantine_drain(kvt_engine *e)
{
    size_t n;
    quar *q = quar_take(e, &n);
    if (!n)
        return;
    pthread_mutex_unlock(&e->lock);
    int rc = -ENOMEM;
    catalog_del *dels = util_malloc(n * sizeof *dels);
    if (dels) {
        for (size_t i = 0; i < n; i++)
            dels[i] = q[i].del;
        rc = catalog_delete_batch(e->cat, dels, n, CATALOG_SYNC);
        util_free(dels);
    }
    quar_done(e, q, n, rc);
}

void tiers_quarantine_drain(kvt_engine *e) { quarantine_drain(e); } /* engine/compact.c */

/* ---------------------------------------------------------------- write-through */

typedef struct wt_job {
    kvt_ns *ns;
    radix_node *node; /* pinned path */
    uint64_t depth;
    uint64_t key, parent_key, sum;
    uint32_t dram_slot;
    uint32_t nvme_slot;
    uint32_t dloc_h;
    int tier; /* target */
    int err;
    disk_loc dloc;
    uint32_t *units;
    uint64_t ttl_deadline; /* CLOCK_REALTIME ns, 0: none (catalog record) */
} wt_job;

typedef struct wt_bufs {
    void *buf[WT_BATCH];
    uint64_t bytes;
} wt_bufs;

static int bufs_reserve(wt_bufs *wb, uint64_t bytes)
{
    if (bytes <= wb->bytes)
        return 0;
    for (unsigned i = 0; i < WT_BATCH; i++) {
        io_buf_free(wb->buf[i]);
        wb->buf[i] = io_buf_alloc(bytes);
        if (!wb->buf[i]) {
            for (unsigned k = 0; k < WT_BATCH; k++) {
                io_buf_free(wb->buf[k]);
                wb->buf[k] = NULL;
            }
            wb->bytes = 0;
            return -ENOMEM;
        }
    }
    wb->bytes = bytes;
    return 0;
}

/* Claim up to max DIRTY blocks in queue order, pinning their paths, from nodes queued at
 * or before ripe_ns (the queue is in age order: it stops at the first younger one). Lock
 * held. */
static unsigned wt_collect(kvt_engine *e, wt_job *jobs, unsigned max, uint64_t ripe_ns)
{
    unsigned k = 0;
    util_list *h = &e->dirty;
    for (util_list *l = h->next, *next; l != h && k < max; l = next) {
        next = l->next;
        radix_node *n = UTIL_CONTAINER_OF(l, radix_node, wlink);
        if (n->wq_ns > ripe_ns)
            break;
        kvt_ns *ns = n->owner;
        for (uint32_t j = 0; j < n->n_blocks && k < max; j++) {
            radix_block *b = &n->blocks[j];
            if ((b->flags & (BLK_DIRTY | BLK_WT)) != BLK_DIRTY)
                continue;
            uint32_t *units = util_malloc((size_t)ns->bu * sizeof(uint32_t));
            if (!units)
                return k;
            b->flags |= BLK_WT;
            n->n_dirty--;
            memcpy(units, n->units + (size_t)j * ns->bu, (size_t)ns->bu * sizeof(uint32_t));
            jobs[k] = (wt_job){.ns = ns, .node = n, .depth = n->depth + j, .key = b->key,
                               .parent_key = parent_key_of(n, j),
                               .dram_slot = b->slot[RADIX_TIER_DRAM], .nvme_slot = RADIX_NO_SLOT,
                               .dloc_h = RADIX_NO_SLOT, .units = units};
            if (n->ph_ttl_s > 0) { /* the deadline on the realtime clock the catalog keeps */
                double left = n->ph_last_s + n->ph_ttl_s - policy_now_s(e);
                jobs[k].ttl_deadline = realtime_ns() + (uint64_t)(left > 0 ? left * 1e9 : 1);
            }
            path_pin(n);
            k++;
        }
        if (n->n_dirty == 0)
            util_list_del(&n->wlink);
    }
    return k;
}

static int tenant_nvme_alloc(kvt_engine *e, tenant *tn, uint32_t *slot)
{
    if (!e->nvme)
        return -ENOSPC;
    if (tn->tquota[RADIX_TIER_NVME] &&
        tn->tused[RADIX_TIER_NVME] + e->nvme_slot_bytes > tn->tquota[RADIX_TIER_NVME])
        return -ENOSPC;
    return nvme_alloc(e->nvme, slot);
}

static void fill_record(catalog_record *r, const wt_job *j, int tier, uint64_t loc)
{
    memset(r, 0, sizeof *r);
    r->key = j->key;
    r->parent_key = j->parent_key;
    r->location = loc;
    r->checksum = j->sum;
    r->last_access = realtime_ns();
    r->ns_id = j->ns->id;
    r->length = (uint32_t)j->ns->block_bytes;
    r->depth = (uint32_t)j->depth;
    r->n_units = j->ns->bu;
    r->tier = (uint8_t)tier;
    r->compression = CATALOG_COMP_NONE;
    r->units = j->units;
    r->ttl_deadline = j->ttl_deadline;
}

/* Put the records of the jobs with err == 0 (tier/location from each job) in one catalog
 * batch, after the deletes of the quarantined copies q[0..nq) (quar_take; the batch is then
 * synced: their space may be reused only once the deletes are durable). A job whose record
 * cannot be put gets err. Returns the status of the deletes (for quar_done). Unlocked. */
static int wt_catalog(kvt_engine *e, wt_job *jobs, unsigned n, const quar *q, size_t nq)
{
    catalog_record recs[WT_BATCH];
    unsigned idx[WT_BATCH], k = 0;
    for (unsigned i = 0; i < n; i++)
        if (!jobs[i].err) {
            fill_record(&recs[k], &jobs[i], jobs[i].tier,
                        jobs[i].tier == RADIX_TIER_NVME ? jobs[i].nvme_slot : jobs[i].dloc);
            idx[k++] = i;
        }
    catalog_del *dels = NULL;
    if (nq && !(dels = util_malloc(nq * sizeof *dels))) {
        for (unsigned i = 0; i < k; i++) /* not recorded; retried by no one: DRAM only */
            jobs[idx[i]].err = -ENOMEM;
        return -ENOMEM;
    }
    for (size_t i = 0; i < nq; i++)
        dels[i] = q[i].del;
    int rc;
    for (;;) {
        size_t bad = SIZE_MAX;
        rc = catalog_write_batch(e->cat, dels, nq, recs, k, nq ? CATALOG_SYNC : 0, &bad);
        if (rc && (rc == CATALOG_ECOLLISION || rc == -EINVAL || rc == -ENOENT) && bad < k) {
            /* that block stays uncatalogued (DRAM only); the others go again */
            jobs[idx[bad]].err = catalog_status(rc);
            memmove(&recs[bad], &recs[bad + 1], (k - bad - 1) * sizeof recs[0]);
            memmove(&idx[bad], &idx[bad + 1], (k - bad - 1) * sizeof idx[0]);
            k--;
            continue;
        }
        break;
    }
    if (rc)
        for (unsigned i = 0; i < k; i++)
            jobs[idx[i]].err = catalog_status(rc);
    util_free(dels);
    return rc;
}

/* Write records to the disk tier: jobs[i].err/dloc set. bufs[i] hold the raw bytes. */
static void disk_write_jobs(kvt_engine *e, wt_job *jobs, void **bufs, unsigned n);

/*
 * Move up to `want` of tenant tn's least recently used nvme blocks to disk (or, without a
 * disk tier, drop their nvme copies: the block leaves the index when that was its last
 * copy). Lock held, dropped during I/O. Returns the slots freed.
 */
static unsigned nvme_make_room(kvt_engine *e, tenant *tn, unsigned want, wt_bufs *wb)
{
    wt_job mv[WT_BATCH];
    unsigned k = 0, freed = 0;
    if (want > WT_BATCH)
        want = WT_BATCH;
    util_list *h = &tn->tl[RADIX_TIER_NVME];
restart:
    for (util_list *l = h->next; l != h && k + freed < want; l = l->next) {
        radix_node *n = UTIL_CONTAINER_OF(l, radix_node, tlink[RADIX_TIER_NVME]);
        if (n->pins || (n->flags & RADIX_PENDING))
            continue;
        kvt_ns *ns = n->owner;
        for (uint32_t j = n->n_blocks; j-- > 0 && k + freed < want;) {
            radix_block *b = &n->blocks[j];
            if (b->slot[RADIX_TIER_NVME] == RADIX_NO_SLOT ||
                (b->flags & (BLK_PROMO | BLK_MOVING | BLK_WT | BLK_BAD)))
                continue;
            int has_disk = e->simulate ? e->sim_disk_cap > 0 : e->disk != NULL;
            if (!has_disk || (!e->simulate && ns->block_bytes > wb->bytes)) {
                if (b->slot[RADIX_TIER_DRAM] != RADIX_NO_SLOT ||
                    b->slot[RADIX_TIER_DISK] != RADIX_NO_SLOT) {
                    blk_drop_copy(ns, n, b, RADIX_TIER_NVME);
                    if (!blk_persisted(b))
                        b->flags |= BLK_NOPERSIST;
                    freed++;
                    if (n->tcount[RADIX_TIER_NVME] == 0)
                        goto restart; /* n left the list */
                    continue;
                }
                long r = remove_blocks(ns, n, j);
                if (r > 0) {
                    e->blocks_evicted += (uint64_t)r;
                    freed++;
                    goto restart; /* the list changed under us */
                }
                break;
            }
            if (e->simulate) { /* the move, accounting only: disk copy, then nvme freed */
                uint32_t hd;
                path_pin(n); /* making disk room must not drop n's subtree under us */
                int arc = sim_disk_alloc(e, tn, ns->block_bytes, &hd);
                path_unpin(n);
                if (arc)
                    break;
                blk_add_copy(ns, n, b, RADIX_TIER_DISK, hd);
                blk_drop_copy(ns, n, b, RADIX_TIER_NVME);
                e->t_reads[RADIX_TIER_NVME]++;
                e->t_bytes_read[RADIX_TIER_NVME] += round_up4k(ns->block_bytes);
                e->t_writes[RADIX_TIER_DISK]++;
                e->t_bytes_written[RADIX_TIER_DISK] += round_up4k(ns->block_bytes);
                e->demotions++;
                freed++;
                goto restart; /* the lists changed (and disk room may have dropped blocks) */
            }
            uint32_t *units = util_malloc((size_t)ns->bu * sizeof(uint32_t));
            if (!units)
                break;
            memcpy(units, n->units + (size_t)j * ns->bu, (size_t)ns->bu * sizeof(uint32_t));
            b->flags |= BLK_MOVING;
            mv[k] = (wt_job){.ns = ns, .node = n, .depth = n->depth + j, .key = b->key,
                             .parent_key = parent_key_of(n, j), .sum = b->checksum,
                             .nvme_slot = b->slot[RADIX_TIER_NVME], .dloc_h = RADIX_NO_SLOT,
                             .tier = RADIX_TIER_DISK, .units = units};
            path_pin(n);
            k++;
        }
    }
    if (k) {
        pthread_mutex_unlock(&e->lock);
        io_req reqs[WT_BATCH];
        for (unsigned i = 0; i < k; i++)
            nvme_req(e->nvme, mv[i].nvme_slot, IO_OP_READ, wb->buf[i],
                     (uint32_t)round_up4k(mv[i].ns->block_bytes), i, &reqs[i]);
        io_rw_batch(e->wt_io, reqs, k);
        for (unsigned i = 0; i < k; i++) {
            mv[i].err = reqs[i].res < 0 ? reqs[i].res : 0;
            if (!mv[i].err && XXH3_64bits(wb->buf[i], mv[i].ns->block_bytes) != mv[i].sum)
                mv[i].err = KVT_ECORRUPT;
        }
        disk_write_jobs(e, mv, wb->buf, k);
        wt_catalog(e, mv, k, NULL, 0);
        pthread_mutex_lock(&e->lock);
        for (unsigned i = 0; i < k; i++) {
            radix_node *n;
            radix_block *b = blk_at_depth(mv[i].node, mv[i].depth, &n);
            b->flags &= ~BLK_MOVING;
            e->t_reads[RADIX_TIER_NVME]++;
            e->t_bytes_read[RADIX_TIER_NVME] += mv[i].ns->block_bytes;
            if (mv[i].err == 0) {
                blk_add_copy(mv[i].ns, n, b, RADIX_TIER_DISK, mv[i].dloc_h);
                blk_drop_copy(mv[i].ns, n, b, RADIX_TIER_NVME);
                e->demotions++;
                freed++;
            } else {
                if (mv[i].dloc_h != RADIX_NO_SLOT) { /* written, not catalogued */
                    quar q = {.del = {.ns_id = mv[i].ns->id, .tier = CATALOG_TIER_DISK,
                                      .key = mv[i].key},
                              .tier = RADIX_TIER_DISK, .loc = mv[i].dloc};
                    /* the catalog has no disk record of it: deleting nothing is harmless,
                     * and the quarantine is how disk space is given back */
                    if (b->slot[RADIX_TIER_DISK] == RADIX_NO_SLOT)
                        q.del.tier = CATALOG_TIER_DISK;
                    quar_add(e, &q);
                    dloc_put(e, mv[i].dloc_h);
                }
                if (mv[i].err == KVT_ECORRUPT) {
                    e->checksum_failures++;
                    b->flags |= BLK_BAD;
                    n->eflags |= NODE_HAS_BAD;
                } else {
                    e->io_errors++;
                }
            }
            path_unpin(mv[i].node);
            util_free(mv[i].units);
        }
        pthread_cond_broadcast(&e->promo_cv);
        /* corrupt victims are dropped now that they are unpinned */
        for (unsigned i = 0; i < k; i++)
            if (mv[i].err == KVT_ECORRUPT)
                drop_bad_locked(mv[i].ns, mv[i].node);
    }
    quarantine_drain(e);
    return freed;
}

unsigned tiers_nvme_make_room(kvt_engine *e, tenant *tn, unsigned want)
{
    return nvme_make_room(e, tn, want, NULL);
}

/* Drop tenant tn's least recently used disk copies until `bytes` are freed. Lock held. */
static uint64_t disk_make_room(kvt_engine *e, tenant *tn, uint64_t bytes)
{
    uint64_t freed = 0;
    util_list *h = &tn->tl[RADIX_TIER_DISK];
restart:
    for (util_list *l = h->next; l != h && freed < bytes; l = l->next) {
        radix_node *n = UTIL_CONTAINER_OF(l, radix_node, tlink[RADIX_TIER_DISK]);
        if (n->pins || (n->flags & RADIX_PENDING))
            continue;
        kvt_ns *ns = n->owner;
        for (uint32_t j = n->n_blocks; j-- > 0 && freed < bytes;) {
            radix_block *b = &n->blocks[j];
            if (b->slot[RADIX_TIER_DISK] == RADIX_NO_SLOT || (b->flags & (BLK_PROMO | BLK_MOVING)))
                continue;
            uint64_t len = disk_loc_len(e->dlocs[b->slot[RADIX_TIER_DISK]]);
            if (b->slot[RADIX_TIER_DRAM] != RADIX_NO_SLOT ||
                b->slot[RADIX_TIER_NVME] != RADIX_NO_SLOT) {
                blk_drop_copy(ns, n, b, RADIX_TIER_DISK);
                if (!blk_persisted(b))
                    b->flags |= BLK_NOPERSIST;
                freed += len;
                if (n->tcount[RADIX_TIER_DISK] == 0)
                    goto restart; /* n left the list */
                continue;
            }
            long r = remove_blocks(ns, n, j);
            if (r > 0) {
                e->blocks_evicted += (uint64_t)r;
                freed += len;
                goto restart;
            }
            break;
        }
    }
    quarantine_drain(e);
    return freed;
}

uint64_t tiers_disk_make_room(kvt_engine *e, tenant *tn, uint64_t bytes)
{
    return disk_make_room(e, tn, bytes);
}

static void disk_write_jobs(kvt_engine *e, wt_job *jobs, void **bufs, unsigned n)
{
    int wrote = 0;
    for (unsigned i = 0; i < n; i++) {
        wt_job *j = &jobs[i];
        if (j->err || j->tier != RADIX_TIER_DISK)
            continue;
        if (!e->disk) {
            j->err = -ENOSPC;
            continue;
        }
        void *rec = NULL;
        size_t rec_bytes = 0;
        int rc = disk_encode(j->key, bufs[i], j->ns->block_bytes, 0, 0, &rec, &rec_bytes);
        for (int attempt = 0; rc == 0; attempt++) {
            tenant *tn = j->ns->tn;
            if (tn->tquota[RADIX_TIER_DISK] &&
                tn->tused[RADIX_TIER_DISK] + rec_bytes > tn->tquota[RADIX_TIER_DISK]) {
                rc = -ENOSPC;
            } else {
                disk_bw_charge(e, rec_bytes);
                pthread_rwlock_wrlock(&e->disk_rw);
                rc = disk_append(e->disk, rec, rec_bytes, &j->dloc);
                pthread_rwlock_unlock(&e->disk_rw);
            }
            if (rc != -ENOSPC || attempt == 1)
                break;
            pthread_mutex_lock(&e->lock);
            uint64_t got = disk_make_room(e, tn, rec_bytes);
            pthread_mutex_unlock(&e->lock);
            if (!got)
                break;
        }
        io_buf_free(rec);
        if (rc == 0) {
            wrote = 1;
            pthread_mutex_lock(&e->lock);
            rc = dloc_get(e, j->dloc, &j->dloc_h);
            e->t_writes[RADIX_TIER_DISK]++;
            e->t_bytes_written[RADIX_TIER_DISK] += rec_bytes;
            pthread_mutex_unlock(&e->lock);
        }
        j->err = rc;
    }
    if (wrote) {
        pthread_rwlock_wrlock(&e->disk_rw);
        int rc = disk_sync(e->disk);
        pthread_rwlock_unlock(&e->disk_rw);
        if (rc)
            for (unsigned i = 0; i < n; i++)
                if (jobs[i].tier == RADIX_TIER_DISK && !jobs[i].err)
                    jobs[i].err = rc; /* not durable: never catalogued; space quarantined */
    }
}

/* One batch: claimed under the lock, written, synced and catalogued without it, installed
 * under it. Lock held on entry and exit. */
static void wt_run(kvt_engine *e, wt_job *jobs, unsigned n, wt_bufs *wb)
{
    uint64_t need = 0;
    for (unsigned i = 0; i < n; i++)
        if (round_up4k(jobs[i].ns->block_bytes) > need)
            need = round_up4k(jobs[i].ns->block_bytes);
    int brc = bufs_reserve(wb, need);

    /* targets: nvme when it has (or can make) room, else disk */
    for (unsigned i = 0; i < n; i++) {
        wt_job *j = &jobs[i];
        j->err = brc;
        j->tier = RADIX_TIER_DISK;
        if (brc || !e->nvme || round_up4k(j->ns->block_bytes) > e->nvme_slot_bytes)
            continue;
        int rc = tenant_nvme_alloc(e, j->ns->tn, &j->nvme_slot);
        if (rc == -ENOSPC) {
            unsigned more = 0;
            for (unsigned k = i; k < n; k++)
                more += jobs[k].ns->tn == j->ns->tn;
            if (nvme_make_room(e, j->ns->tn, more, wb))
                rc = tenant_nvme_alloc(e, j->ns->tn, &j->nvme_slot);
        }
        if (rc == 0)
            j->tier = RADIX_TIER_NVME;
    }
    pthread_mutex_unlock(&e->lock);

    /* bytes: checksum, write, sync; straight from the DRAM slot (pinned: its bytes cannot
     * change) when it is one aligned slot of whole 4 KiB pages, else through staging */
    io_req reqs[WT_BATCH];
    void *from[WT_BATCH];
    unsigned nr = 0;
    uint64_t sb = dram_slot_bytes(e->dram);
    for (unsigned i = 0; i < n; i++) {
        wt_job *j = &jobs[i];
        from[i] = wb->buf[i];
        if (j->err)
            continue;
        uint64_t bb = j->ns->block_bytes, len = round_up4k(bb);
        if (len == bb && dram_slots_for(e->dram, bb) == 1 && sb % IO_ALIGN == 0) {
            from[i] = (char *)dram_base(e->dram) + (uint64_t)j->dram_slot * sb;
        } else {
            dram_read(e->dram, j->dram_slot, wb->buf[i], bb);
            memset((char *)wb->buf[i] + bb, 0, len - bb);
        }
        j->sum = XXH3_64bits(from[i], bb);
        if (j->tier == RADIX_TIER_NVME)
            nvme_req(e->nvme, j->nvme_slot, IO_OP_WRITE, from[i], (uint32_t)len, i, &reqs[nr++]);
    }
    if (nr) {
        io_rw_batch(e->wt_io, reqs, nr);
        int ok = 0;
        for (unsigned r = 0; r < nr; r++) {
            jobs[reqs[r].user_data].err = reqs[r].res < 0 ? reqs[r].res : 0;
            ok |= reqs[r].res >= 0;
        }
        int src = ok ? nvme_sync(e->nvme) : 0;
        if (src)
            for (unsigned i = 0; i < n; i++)
                if (jobs[i].tier == RADIX_TIER_NVME && !jobs[i].err)
                    jobs[i].err = src;
    }
    disk_write_jobs(e, jobs, from, n);

    /* records only for durable bytes, in one batch with the quarantine's deletes (first:
     * a reused key's new record survives its old copy's delete) */
    pthread_mutex_lock(&e->lock);
    size_t nq;
    quar *qs = quar_take(e, &nq);
    pthread_mutex_unlock(&e->lock);
    int qrc = wt_catalog(e, jobs, n, qs, nq);
    quar_done(e, qs, nq, qrc); /* locks */

    unsigned nfail = 0;
    int ferr = 0;
    for (unsigned i = 0; i < n; i++) {
        wt_job *j = &jobs[i];
        radix_node *nd;
        radix_block *b = blk_at_depth(j->node, j->depth, &nd);
        if (j->err == 0) {
            b->checksum = j->sum;
            blk_add_copy(j->ns, nd, b, j->tier,
                         j->tier == RADIX_TIER_NVME ? j->nvme_slot : j->dloc_h);
            e->persisted++;
            if (j->tier == RADIX_TIER_NVME) {
                e->t_writes[RADIX_TIER_NVME]++;
                e->t_bytes_written[RADIX_TIER_NVME] += round_up4k(j->ns->block_bytes);
            }
        } else {
            /* never catalogued: space back without waiting (quarantine for the disk) */
            if (j->nvme_slot != RADIX_NO_SLOT)
                nvme_free(e->nvme, j->nvme_slot);
            if (j->dloc_h != RADIX_NO_SLOT) {
                quar q = {.del = {.ns_id = j->ns->id, .tier = CATALOG_TIER_DISK, .key = j->key},
                          .tier = RADIX_TIER_DISK, .loc = j->dloc};
                /* the catalog may hold no disk record of this key: the delete is a no-op */
                quar_add(e, &q);
                dloc_put(e, j->dloc_h);
            }
            b->flags |= BLK_NOPERSIST;
            if (!nfail++)
                ferr = j->err;
            e->wt_failures++;
            if (j->err != -ENOSPC && j->err != -ENOMEM)
                e->io_errors++;
            if (!e->wt_last_err)
                e->wt_last_err = j->err;
        }
        wt_block_done(j->ns, b);
        path_unpin(j->node);
        util_free(j->units);
    }
    if (nfail)
        io_log(IO_LOG_WARN, "write-through: %u of %u blocks not persisted: %s (kept in DRAM only)",
               nfail, n, kvt_strerror(ferr));
    /* drain placed these below DRAM: the DRAM copy was only the write-through's source.
     * Freed once the whole batch is unpinned, unless a reader pins or promotes it. Lock
     * held since the unpins: every job's node is still there. */
    for (unsigned i = 0; i < n; i++) {
        radix_node *nd;
        radix_block *b = blk_at_depth(jobs[i].node, jobs[i].depth, &nd);
        if (!(b->flags & BLK_DEMOTE))
            continue;
        b->flags &= ~BLK_DEMOTE;
        if (jobs[i].err == 0 && !nd->pins && !(nd->flags & RADIX_PENDING) &&
            !(b->flags & BLK_PROMO) && b->slot[RADIX_TIER_DRAM] != RADIX_NO_SLOT) {
            blk_drop_copy(jobs[i].ns, nd, b, RADIX_TIER_DRAM);
            e->demotions++;
        }
    }
}

/*
 * The write-through's age bound (kvt_options_set_persist_delay_ms): blocks queued at or
 * before the returned time may be written now. Everything is, at once, while a kvt_flush
 * waits for older epochs, a put waits for DRAM (backpressure), DRAM is nearly full (less
 * than an eighth free) or the engine closes. Lock held.
 */
static uint64_t wt_ripe_ns(kvt_engine *e)
{
    uint64_t delay = (uint64_t)e->opts->persist_delay_ms * 1000000ull;
    if (!delay || e->stop || e->wt_urgent || e->epoch_base < e->epoch || dram_low(e))
        return UINT64_MAX;
    uint64_t now = util_now_coarse_ns();
    return now > delay ? now - delay : 0;
}

static void *flusher_main(void *arg)
{
    kvt_engine *e = arg;
    wt_job jobs[WT_BATCH];
    wt_bufs wb;
    memset(&wb, 0, sizeof wb);
    if (e->opts->wt_nice > 0) /* background work yields the CPU to the threads serving */
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), e->opts->wt_nice);
    pthread_mutex_lock(&e->lock);
    for (;;) {
        /* a round's catalog batch carries the quarantine's deletes; without a round they
         * go on their own, and what came meanwhile is collected again (no lost wakeup) */
        unsigned max = e->opts->wt_batch ? e->opts->wt_batch : WT_BATCH;
        unsigned n = e->wt_busy ? 0 : wt_collect(e, jobs, max, wt_ripe_ns(e));
        if (!n && e->n_quar) {
            quarantine_drain(e);
            n = e->wt_busy ? 0 : wt_collect(e, jobs, max, wt_ripe_ns(e));
        }
        if (n) {
            e->wt_active = 1;
            wt_run(e, jobs, n, &wb);
            e->wt_active = 0;
            pthread_cond_broadcast(&e->wt_done);
            continue;
        }
        if (e->stop)
            break;
        if (!e->wt_busy && compact_maybe(e)) /* idle: reclaim dead disk records */
            continue;
        if (!e->wt_busy && !util_list_empty(&e->dirty)) {
            /* the oldest queued node is younger than the delay: until it is ripe, plus an
             * eighth of the delay so that a round finds the nodes that ripened meanwhile
             * (nodes ripen one by one: rounds of one or two blocks each paid a sync); a
             * flush, backpressure or nearly full DRAM signal wt_work sooner */
            radix_node *old = UTIL_CONTAINER_OF(e->dirty.next, radix_node, wlink);
            uint64_t d = (uint64_t)e->opts->persist_delay_ms * 1000000ull;
            uint64_t ripe = old->wq_ns + d + d / 8, now = util_now_coarse_ns();
            uint32_t ms = ripe > now ? (uint32_t)((ripe - now) / 1000000u) + 1 : 1;
            cond_wait_until(&e->wt_work, &e->lock, deadline_ns(ms));
            continue;
        }
        pthread_cond_wait(&e->wt_work, &e->lock);
    }
    pthread_mutex_unlock(&e->lock);
    for (unsigned i = 0; i < WT_BATCH; i++)
        io_buf_free(wb.buf[i]);
    return NULL;
}

int engine_flush(kvt_engine *e)
{
    pthread_mutex_lock(&e->lock);
    e->flushes++;
    while (e->epoch + 1 - e->epoch_base >= WT_EPOCHS)
        pthread_cond_wait(&e->wt_done, &e->lock);
    uint64_t my = e->epoch++;
    epoch_advance(e);
    pthread_cond_signal(&e->wt_work);
    while (e->epoch_base <= my)
        pthread_cond_wait(&e->wt_done, &e->lock);
    int rc = e->wt_last_err;
    e->wt_last_err = 0;
    pthread_mutex_unlock(&e->lock);
    int crc = catalog_flush(e->cat);
    if (crc && !rc)
        rc = catalog_status(crc);
    return rc;
}

/* ---------------------------------------------------------------- reads and promotion */

/* Read the block (key, sum, bb bytes) from nvme slot `ns_slot` or disk `loc` into buf
 * (capacity cap, IO_ALIGN-aligned, >= round_up4k(bb)). Returns 0 with verified bytes, or the
 * error of the last copy tried; *tier the tier read. Unlocked. */
static int read_copy(kvt_engine *e, uint32_t ns_slot, disk_loc loc, uint64_t key, uint64_t sum,
                     uint64_t bb, void *buf, uint64_t cap, int *tier, int *corrupt)
{
    int rc = -ENOENT;
    *corrupt = 0;
    if (ns_slot != RADIX_NO_SLOT) {
        *tier = RADIX_TIER_NVME;
        io_ctx *c = rd_ctx_get(e);
        io_req r;
        rc = c ? nvme_req(e->nvme, ns_slot, IO_OP_READ, buf, (uint32_t)round_up4k(bb), 0, &r)
               : -ENOMEM;
        if (rc == 0)
            rc = io_rw_batch(c, &r, 1);
        if (c)
            rd_ctx_put(e, c);
        if (rc == 0 && XXH3_64bits(buf, bb) != sum) {
            rc = KVT_ECORRUPT;
            *corrupt = 1;
        }
        if (rc == 0)
            return 0;
    }
    if (loc != DISK_LOC_NONE) {
        *tier = RADIX_TIER_DISK;
        size_t len = 0;
        disk_bw_charge(e, disk_loc_len(loc));
        pthread_rwlock_rdlock(&e->disk_rw);
        rc = disk_get(e->disk, loc, key, buf, cap, &len);
        pthread_rwlock_unlock(&e->disk_rw);
        if (rc == -EBADMSG || rc == -ESTALE || (rc == 0 && len != bb) ||
            (rc == 0 && XXH3_64bits(buf, bb) != sum)) {
            rc = KVT_ECORRUPT;
            *corrupt = 1;
        }
    }
    return rc;
}

/* Address of a DRAM slot usable as an O_DIRECT read target for len bytes, else NULL. */
static void *dram_direct_ptr(kvt_engine *e, kvt_ns *ns, uint32_t slot, uint64_t len)
{
    uint64_t sb = dram_slot_bytes(e->dram);
    if (dram_slots_for(e->dram, ns->block_bytes) != 1 || sb % IO_ALIGN || sb < len)
        return NULL;
    dram_mark_written(e->dram, slot); /* the read writes the slot behind the arena's back */
    return (char *)dram_base(e->dram) + (uint64_t)slot * sb;
}

/* Get block i of lease l into dst (NULL: promote only). prefetch: skip instead of waiting
 * for another reader, and do nothing when DRAM has no room. */
static int fetch(kvt_lease *l, size_t i, void *dst, int prefetch)
{
    kvt_ns *ns = l->ns;
    kvt_engine *e = ns->eng;
    uint64_t bb = ns->block_bytes, len = round_up4k(bb);
    radix_node *node;
    radix_block *b;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        b = blk_at_depth(l->deepest, i, &node);
        if (b->flags & BLK_BAD) {
            pthread_mutex_unlock(&e->lock);
            return KVT_ECORRUPT;
        }
        if (b->slot[RADIX_TIER_DRAM] != RADIX_NO_SLOT) {
            uint32_t s = b->slot[RADIX_TIER_DRAM];
            l->blocks[i].slot[RADIX_TIER_DRAM] = s; /* stable while pinned */
            pthread_mutex_unlock(&e->lock);
            if (dst)
                dram_read(e->dram, s, dst, bb);
            return 0;
        }
        if (!(b->flags & (BLK_PROMO | BLK_MOVING)))
            break;
        if (prefetch) {
            pthread_mutex_unlock(&e->lock);
            return 0;
        }
        pthread_cond_wait(&e->promo_cv, &e->lock);
    }
    uint32_t nslot = b->slot[RADIX_TIER_NVME];
    disk_loc loc = b->slot[RADIX_TIER_DISK] != RADIX_NO_SLOT ? e->dlocs[b->slot[RADIX_TIER_DISK]]
                                                             : DISK_LOC_NONE;
    if (nslot == RADIX_NO_SLOT && loc == DISK_LOC_NONE) { /* cannot happen: index invariant */
        pthread_mutex_unlock(&e->lock);
        return -ENOENT;
    }
    uint64_t key = b->key, sum = b->checksum;
    uint32_t ps = RADIX_NO_SLOT;
    if (tiered_alloc_dram(ns, &ps, 0) != 0)
        ps = RADIX_NO_SLOT;
    if (prefetch && ps == RADIX_NO_SLOT) {
        pthread_mutex_unlock(&e->lock);
        return 0;
    }
    b->flags |= BLK_PROMO;
    pthread_mutex_unlock(&e->lock);

    void *ptr = ps != RADIX_NO_SLOT ? dram_direct_ptr(e, ns, ps, len) : NULL;
    void *stage = NULL;
    uint64_t cap = len;
    if (!ptr) {
        ptr = stage = io_buf_alloc(len);
    } else {
        cap = dram_slot_bytes(e->dram);
    }
    int tier = RADIX_TIER_NVME, corrupt = 0;
    int rc = ptr ? read_copy(e, nslot, loc, key, sum, bb, ptr, cap, &tier, &corrupt) : -ENOMEM;
    if (rc == 0) {
        if (stage && ps != RADIX_NO_SLOT)
            dram_write(e->dram, ps, stage, bb);
        if (dst)
            memcpy(dst, ptr, bb);
    }
    io_buf_free(stage);

    pthread_mutex_lock(&e->lock);
    b = blk_at_depth(l->deepest, i, &node);
    b->flags &= ~BLK_PROMO;
    if (rc == 0) {
        e->t_reads[tier]++;
        e->t_bytes_read[tier] += tier == RADIX_TIER_NVME ? len : bb;
        if (ps != RADIX_NO_SLOT) {
            blk_add_copy(ns, node, b, RADIX_TIER_DRAM, ps);
            l->blocks[i].slot[RADIX_TIER_DRAM] = ps;
            e->promotions++;
        }
    } else {
        if (ps != RADIX_NO_SLOT) {
            dram_free(e->dram, ps);
            ns->tn->used -= dram_block_bytes(ns);
        }
        if (rc != -ENOMEM) {
            if (corrupt)
                e->checksum_failures++;
            else
                e->io_errors++;
            b->flags |= BLK_BAD;
            node->eflags |= NODE_HAS_BAD;
        }
    }
    pthread_cond_broadcast(&e->promo_cv);
    if (rc && rc != -ENOMEM)
        io_log(IO_LOG_WARN, "read of block %016llx from %s: %s: served as a miss, block dropped",
               (unsigned long long)key, tier == RADIX_TIER_NVME ? "nvme" : "disk",
               corrupt ? "failed verification" : kvt_strerror(rc));
    pthread_mutex_unlock(&e->lock);
    return rc;
}

int tier_fetch(kvt_lease *l, size_t i, void *dst) { return fetch(l, i, dst, 0); }

static void *prefetcher_main(void *arg)
{
    kvt_engine *e = arg;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        prefetch_job *j = e->pf_head;
        if (!j) {
            if (e->stop)
                break;
            pthread_cond_wait(&e->pf_cv, &e->lock);
            continue;
        }
        e->pf_head = j->next;
        if (!e->pf_head)
            e->pf_tail = NULL;
        e->pf_busy = 1;
        pthread_mutex_unlock(&e->lock);
        kvt_lease *l = j->lease;
        for (size_t i = 0; i < l->n_blocks; i++)
            if (l->blocks[i].slot[RADIX_TIER_DRAM] == RADIX_NO_SLOT)
                fetch(l, i, NULL, 1);
        pthread_mutex_lock(&e->lock);
        lease_release_locked(l);
        util_free(l);
        util_free(j);
        e->pf_busy = 0;
        pthread_cond_broadcast(&e->pf_cv);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

int prefetch_units(kvt_ns *ns, const uint32_t *units, size_t nb)
{
    kvt_engine *e = ns->eng;
    if (!e->tiered || e->simulate || !e->threads_started || nb == 0)
        return 0;
    kvt_lease *l = NULL;
    int rc = match_units_lease(ns, units, nb, NULL, &l, 1);
    if (rc || !l)
        return rc;
    size_t lower = 0;
    for (size_t i = 0; i < l->n_blocks; i++)
        lower += l->blocks[i].slot[RADIX_TIER_DRAM] == RADIX_NO_SLOT;
    prefetch_job *j = lower ? util_calloc(1, sizeof *j) : NULL;
    pthread_mutex_lock(&e->lock);
    if (!j) {
        lease_release_locked(l);
        pthread_mutex_unlock(&e->lock);
        util_free(l);
        return lower ? -ENOMEM : 0;
    }
    j->lease = l;
    if (e->pf_tail)
        e->pf_tail->next = j;
    else
        e->pf_head = j;
    e->pf_tail = j;
    pthread_cond_signal(&e->pf_cv);
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/* ---------------------------------------------------------------- open, close */

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = util_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* nvme slot size: fixed by the first open of a directory, kept in <nvme>/GEOMETRY. */
static uint64_t geometry_read(const char *dir)
{
    char *p = path_join(dir, "GEOMETRY");
    unsigned long long v = 0;
    FILE *f = p ? fopen(p, "r") : NULL;
    if (f) {
        if (fscanf(f, "slot_bytes=%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    util_free(p);
    return v;
}

static int geometry_write(const char *dir, uint64_t slot)
{
    char *p = path_join(dir, "GEOMETRY");
    if (!p)
        return -ENOMEM;
    int rc = 0;
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
    } else {
        char buf[64];
        int n = snprintf(buf, sizeof buf, "slot_bytes=%llu\n", (unsigned long long)slot);
        if (write(fd, buf, (size_t)n) != n || fsync(fd) != 0)
            rc = -EIO;
        close(fd);
    }
    util_free(p);
    return rc;
}

int tiers_nvme_ready(kvt_engine *e)
{
    uint64_t cap = e->opts->tier_capacity[RADIX_TIER_NVME];
    if (e->nvme || e->simulate || !cap || !dram_slot_bytes(e->dram))
        return 0;
    uint64_t slot = e->nvme_slot_bytes ? e->nvme_slot_bytes : round_up4k(dram_slot_bytes(e->dram));
    if (cap < slot) {
        io_log(IO_LOG_WARN, "nvme tier of %llu bytes holds no slot of %llu bytes: disabled",
               (unsigned long long)cap, (unsigned long long)slot);
        return -EINVAL;
    }
    if (mkdir(e->nvme_dir, 0755) != 0 && errno != EEXIST)
        return -errno;
    int rc = 0;
    if (!geometry_read(e->nvme_dir))
        rc = geometry_write(e->nvme_dir, slot);
    nvme_tier *t = NULL;
    if (rc == 0)
        rc = nvme_open(e->nvme_dir, cap, slot, NULL, &t);
    if (rc) {
        io_log(IO_LOG_WARN, "nvme tier %s: %s", e->nvme_dir, kvt_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&e->lock);
    e->nvme = t;
    e->nvme_slot_bytes = slot;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

static void threads_stop(kvt_engine *e)
{
    if (e->threads_started) {
        pthread_mutex_lock(&e->lock);
        e->stop = 1;
        pthread_cond_broadcast(&e->wt_work);
        pthread_cond_broadcast(&e->pf_cv);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->flusher, NULL);
        pthread_join(e->prefetcher, NULL);
        e->threads_started = 0;
    }
}

static void tiers_teardown(kvt_engine *e)
{
    threads_stop(e);
    sim_close(e);
    if (e->cat) {
        pthread_mutex_lock(&e->lock);
        quarantine_drain(e);
        pthread_mutex_unlock(&e->lock);
    }
    io_ctx_close(e->wt_io);
    for (unsigned i = 0; i < e->rd_pool.n_free; i++)
        io_ctx_close(e->rd_pool.free[i]);
    util_free(e->rd_pool.free);
    nvme_close(e->nvme);
    disk_close(e->disk);
    if (e->cat)
        catalog_close(e->cat);
    util_free(e->quar);
    util_free(e->dlocs);
    util_free(e->dloc_free);
    util_free(e->nvme_dir);
    util_free(e->disk_dir);
    util_free(e->cat_dir);
    pthread_cond_destroy(&e->wt_work);
    pthread_cond_destroy(&e->wt_done);
    pthread_cond_destroy(&e->promo_cv);
    pthread_cond_destroy(&e->pf_cv);
    pthread_mutex_destroy(&e->ns_lock);
    pthread_mutex_destroy(&e->rd_pool.lock);
    pthread_mutex_destroy(&e->disk_bw_lock);
    pthread_rwlock_destroy(&e->disk_rw);
    kvt_options_destroy(e->opts);
    e->opts = NULL;
}

int tiers_start(kvt_engine *e)
{
    if (pthread_create(&e->flusher, NULL, flusher_main, e))
        return -EAGAIN;
    if (pthread_create(&e->prefetcher, NULL, prefetcher_main, e)) {
        pthread_mutex_lock(&e->lock);
        e->stop = 1;
        pthread_cond_broadcast(&e->wt_work);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->flusher, NULL);
        return -EAGAIN;
    }
    e->threads_started = 1;
    return 0;
}

static void cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

int tiers_open(kvt_engine *e)
{
    const kvt_options *o = e->opts;
    int rc;
    pthread_mutex_init(&e->ns_lock, NULL);
    pthread_mutex_init(&e->rd_pool.lock, NULL);
    pthread_mutex_init(&e->disk_bw_lock, NULL);
    pthread_rwlock_init(&e->disk_rw, NULL);
    cond_init_mono(&e->wt_work);
    cond_init_mono(&e->wt_done);
    cond_init_mono(&e->promo_cv);
    cond_init_mono(&e->pf_cv);
    util_list_init(&e->dirty);
    e->disk_bw_last_ns = util_now_ns();
    if (e->simulate)
        return sim_open(e); /* data-free: no files, no threads (engine/sim.c) */

    uint64_t ncap = o->tier_capacity[RADIX_TIER_NVME], dcap = o->tier_capacity[RADIX_TIER_DISK];
    if (!ncap && !dcap) {
        rc = -EINVAL;
        goto fail;
    }
    if (mkdir(o->data_dir, 0755) != 0 && errno != EEXIST) {
        rc = -errno;
        goto fail;
    }
    rc = -ENOMEM;
    e->cat_dir = path_join(o->data_dir, "catalog");
    e->nvme_dir = o->tier_path[RADIX_TIER_NVME] ? dup_str(o->tier_path[RADIX_TIER_NVME])
                                                : path_join(o->data_dir, "nvme");
    e->disk_dir = o->tier_path[RADIX_TIER_DISK] ? dup_str(o->tier_path[RADIX_TIER_DISK])
                                                : path_join(o->data_dir, "disk");
    if (!e->cat_dir || !e->nvme_dir || !e->disk_dir)
        goto fail;
    if ((rc = catalog_open(e->cat_dir, NULL, &e->cat))) {
        rc = catalog_status(rc);
        goto fail;
    }
    io_opts_init(&e->rd_pool.opts);
    e->rd_pool.opts.queue_depth = o->io_depth;
    e->rd_pool.opts.flags = o->force_pool ? IO_FORCE_POOL : 0;
    e->rd_pool.opts.bw_bytes_per_s = o->tier_bw[RADIX_TIER_NVME];
    if ((rc = io_ctx_open(&e->rd_pool.opts, &e->wt_io)))
        goto fail;
    e->io_backend = io_ctx_backend(e->wt_io);
    if (dcap) {
        disk_opts dopt;
        memset(&dopt, 0, sizeof dopt);
        uint64_t seg = (dcap / 8) & ~(uint64_t)(IO_ALIGN - 1);
        dopt.segment_bytes = seg < (64u << 10) ? (64u << 10) : seg > (64u << 20) ? (64u << 20) : seg;
        if ((rc = disk_open(e->disk_dir, dcap, &dopt, &e->disk)))
            goto fail;
    }
    if (ncap)
        e->nvme_slot_bytes = geometry_read(e->nvme_dir);
    pthread_mutex_lock(&e->ns_lock);
    rc = restart_namespaces(e);
    if (rc == 0) {
        tiers_nvme_ready(e);
        rc = restart_blocks(e);
    }
    pthread_mutex_unlock(&e->ns_lock);
    if (rc)
        goto fail;
    if ((rc = tiers_start(e)))
        goto fail;
    return 0;
fail:
    /* namespaces restored so far are freed by the caller with the engine */
    for (kvt_ns *ns = e->nss, *next; ns; ns = next) {
        next = ns->next;
        radix_destroy(ns->tree);
        util_free(ns->name);
        util_free(ns);
    }
    e->nss = NULL;
    for (tenant *t = e->tenants, *next; t; t = next) {
        next = t->next;
        util_free(t->name);
        util_free(t);
    }
    e->tenants = NULL;
    tiers_teardown(e);
    return rc;
}

int tiers_close(kvt_engine *e)
{
    int rc = 0;
    if (!e->simulate) {
        pthread_mutex_lock(&e->lock);
        while (e->pf_head || e->pf_busy)
            pthread_cond_wait(&e->pf_cv, &e->lock);
        pthread_mutex_unlock(&e->lock);
        if (e->threads_started)
            rc = engine_flush(e);
    }
    threads_stop(e);
    /* namespaces go first (their trees' hooks touch engine lists), then the tiers */
    for (kvt_ns *ns = e->nss, *next; ns; ns = next) {
        next = ns->next;
        radix_destroy(ns->tree);
        util_free(ns->name);
        util_free(ns);
    }
    e->nss = NULL;
    tiers_teardown(e);
    return rc;
}

/* ---------------------------------------------------------------- checks (tests) */

/* Recount every tenant's tier lists and the write-through queue against the blocks: 0, or
 * -1 with *why. Tests only (hidden in the shared library, like kvt__engine_set_fault). */
int kvt__engine_check(kvt_engine *e, const char **why);
int kvt__engine_check(kvt_engine *e, const char **why)
{
    int rc = 0;
    pthread_mutex_lock(&e->lock);
    uint64_t sum[RADIX_TIERS] = {0};
    for (tenant *tn = e->tenants; tn && !rc; tn = tn->next)
        for (int t = RADIX_TIER_DRAM; t < RADIX_TIERS && !rc; t++) {
            uint64_t guard = 0;
            for (util_list *l = tn->tl[t].next; l != &tn->tl[t]; l = l->next) {
                radix_node *n = UTIL_CONTAINER_OF(l, radix_node, tlink[t]);
                uint32_t c = 0;
                for (uint32_t i = 0; i < n->n_blocks; i++)
                    c += n->blocks[i].slot[t] != RADIX_NO_SLOT;
                if (c != n->tcount[t] || c == 0) {
                    *why = "tcount differs from the node's copies";
                    rc = -1;
                    break;
                }
                if (l->next->prev != l) {
                    *why = "broken tier list link";
                    rc = -1;
                    break;
                }
                sum[t] += c;
                if (++guard > (1u << 26)) {
                    *why = "tier list cycle";
                    rc = -1;
                    break;
                }
            }
        }
    for (int t = RADIX_TIER_DRAM; t < RADIX_TIERS && !rc; t++)
        if (sum[t] != e->tier_blocks[t]) {
            *why = "tier_blocks differs from the lists";
            rc = -1;
        }
    /* the write-through queue: each node once, with its count of queued blocks, in age order */
    uint64_t guard = 0, prev_ns = 0;
    for (util_list *l = e->tiered ? e->dirty.next : &e->dirty; l != &e->dirty && !rc;
         l = l->next) {
        radix_node *n = UTIL_CONTAINER_OF(l, radix_node, wlink);
        uint32_t d = 0;
        for (uint32_t i = 0; i < n->n_blocks; i++)
            d += (n->blocks[i].flags & (BLK_DIRTY | BLK_WT)) == BLK_DIRTY;
        if (l->next->prev != l || l->prev->next != l) {
            *why = "broken write-through queue link";
            rc = -1;
        } else if (d != n->n_dirty || d == 0) {
            *why = "n_dirty differs from the node's queued blocks";
            rc = -1;
        } else if (n->wq_ns < prev_ns) {
            *why = "write-through queue out of age order";
            rc = -1;
        } else if (++guard > (1u << 26)) {
            *why = "write-through queue cycle";
            rc = -1;
        }
        prev_ns = n->wq_ns;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}
