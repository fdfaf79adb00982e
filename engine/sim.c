/*
 * sim.c — the data-free simulation mode (kvt_options_set_simulate): the tiers as accounting.
 *
 *   DRAM   the slot allocator of tiers/dram.c without an arena (dram_open_virtual): a slot
 *          is a number; 1 TiB of 64 MiB blocks is 16,384 slots = 128 KiB of side tables.
 *   nvme   fixed slots of round_up_4k(DRAM slot) bytes, like the real tier: a counter of
 *          fresh slots and a stack of freed ones (memory grows with slots freed, never with
 *          the capacity), so a 1 TiB tier costs nothing until used.
 *   disk   a byte budget; a copy is a disk_loc whose length field is the 4 KiB-padded block
 *          (segment 1, offset 0: never read) in the engine's dlocs table, like a real record.
 *
 * The placement code is the real one: blocks get copies through blk_add_copy, lose them
 * through blk_drop_copy (which gives simulated space back at once: there is no catalog to
 * wait for), DRAM eviction is tiered_evict_dram (demote persisted copies, then drop), a full
 * nvme tier is nvme_make_room (its move to disk is done inline instead of through I/O), a
 * full disk tier is disk_make_room, with the same per-tenant lists, pins and quotas. The
 * write-through is instant: sim_persist runs where the real engine queues the blocks, so
 * a simulated block is persisted by the time kvt_put returns (the real one some
 * milliseconds later). kvt_read() promotes (accounting) and returns -ENODATA. Time is the
 * caller's: kvt_engine_set_clock (policy_now_s reads it).
 *
 * Lock: everything here runs under the engine lock except sim_read, which takes it.
 */
#include <errno.h>
#include <string.h>

#include "engine/internal.h"

static uint64_t sim_round4k(uint64_t x) { return (x + 4095) & ~(uint64_t)4095; }

int sim_open(kvt_engine *e)
{
    e->sim_disk_cap = e->opts->tier_capacity[RADIX_TIER_DISK];
    return 0;
}

void sim_close(kvt_engine *e)
{
    util_free(e->sim_nvme_free);
    e->sim_nvme_free = NULL;
    e->sim_nvme_nfree = e->sim_nvme_capfree = 0;
}

/* The nvme geometry, fixed by the first namespace (the DRAM slot size). 0 if unknown. */
static int sim_nvme_ready(kvt_engine *e)
{
    uint64_t cap = e->opts->tier_capacity[RADIX_TIER_NVME];
    if (e->sim_nvme_slots)
        return 1;
    if (!cap || !dram_slot_bytes(e->dram))
        return 0;
    e->nvme_slot_bytes = sim_round4k(dram_slot_bytes(e->dram));
    uint64_t n = cap / e->nvme_slot_bytes;
    e->sim_nvme_slots = n > UINT32_MAX - 1 ? UINT32_MAX - 1 : n;
    return e->sim_nvme_slots > 0;
}

int sim_nvme_alloc(kvt_engine *e, tenant *tn, uint32_t *slot)
{
    if (!sim_nvme_ready(e))
        return -ENOSPC;
    if (tn->tquota[RADIX_TIER_NVME] &&
        tn->tused[RADIX_TIER_NVME] + e->nvme_slot_bytes > tn->tquota[RADIX_TIER_NVME])
        return -ENOSPC;
    if (e->sim_nvme_nfree)
        *slot = e->sim_nvme_free[--e->sim_nvme_nfree];
    else if (e->sim_nvme_fresh < e->sim_nvme_slots)
        *slot = (uint32_t)e->sim_nvme_fresh++;
    else
        return -ENOSPC;
    e->sim_nvme_used++;
    return 0;
}

void sim_nvme_free(kvt_engine *e, uint32_t slot)
{
    if (e->sim_nvme_nfree == e->sim_nvme_capfree) {
        uint64_t cap = e->sim_nvme_capfree ? e->sim_nvme_capfree * 2 : 1024;
        uint32_t *f = util_realloc(e->sim_nvme_free, cap * sizeof *f);
        if (!f) { /* the slot is lost to the simulation; the counts stay right */
            e->sim_nvme_used--;
            return;
        }
        e->sim_nvme_free = f;
        e->sim_nvme_capfree = cap;
    }
    e->sim_nvme_free[e->sim_nvme_nfree++] = slot;
    e->sim_nvme_used--;
}

int sim_disk_alloc(kvt_engine *e, tenant *tn, uint64_t bytes, uint32_t *h)
{
    uint64_t len = sim_round4k(bytes);
    if (!e->sim_disk_cap || len > e->sim_disk_cap || len / 4096 > 0xfffffu)
        return -ENOSPC;
    for (int attempt = 0;; attempt++) {
        int quota_ok = !tn->tquota[RADIX_TIER_DISK] ||
                       tn->tused[RADIX_TIER_DISK] + len <= tn->tquota[RADIX_TIER_DISK];
        if (quota_ok && e->sim_disk_used + len <= e->sim_disk_cap)
            break;
        /* as disk_write_jobs: make room once from the tenant's own least recently used */
        if (attempt == 1 || !tiers_disk_make_room(e, tn, len))
            return -ENOSPC;
    }
    disk_loc loc = ((disk_loc)1 << 40) | (len / 4096);
    int rc = dloc_get(e, loc, h);
    if (rc)
        return rc;
    e->sim_disk_used += len;
    return 0;
}

/* Place one block's persistent copy: nvme (making room there as the flusher would), else
 * disk. 0, or -ENOSPC when neither has room for the tenant. */
static int sim_place(kvt_ns *ns, radix_node *leaf, radix_block *b)
{
    kvt_engine *e = ns->eng;
    tenant *tn = ns->tn;
    uint32_t slot;
    uint64_t len = sim_round4k(ns->block_bytes);
    if (sim_nvme_ready(e) && len <= e->nvme_slot_bytes) {
        int rc = sim_nvme_alloc(e, tn, &slot);
        if (rc == -ENOSPC && tiers_nvme_make_room(e, tn, 1))
            rc = sim_nvme_alloc(e, tn, &slot);
        if (rc == 0) {
            blk_add_copy(ns, leaf, b, RADIX_TIER_NVME, slot);
            e->t_writes[RADIX_TIER_NVME]++;
            e->t_bytes_written[RADIX_TIER_NVME] += len;
            return 0;
        }
    }
    if (sim_disk_alloc(e, tn, ns->block_bytes, &slot) == 0) {
        blk_add_copy(ns, leaf, b, RADIX_TIER_DISK, slot);
        e->t_writes[RADIX_TIER_DISK]++;
        e->t_bytes_written[RADIX_TIER_DISK] += len;
        return 0;
    }
    return -ENOSPC;
}

void sim_persist(kvt_ns *ns, radix_node *leaf, uint32_t first, uint32_t n)
{
    kvt_engine *e = ns->eng;
    int lower = (sim_nvme_ready(e) || e->sim_disk_cap);
    if (!lower)
        return; /* DRAM only: nothing to write through */
    path_pin(leaf); /* the victim searches must not pick the blocks being placed */
    for (uint32_t i = first; i < first + n && i < leaf->n_blocks; i++) {
        radix_block *b = &leaf->blocks[i];
        if (b->flags & BLK_NOPERSIST) /* drain: recomputing is cheaper */
            continue;
        if (sim_place(ns, leaf, b) == 0) {
            e->persisted++;
        } else {
            b->flags |= BLK_NOPERSIST;
            e->wt_failures++;
        }
    }
    path_unpin(leaf);
    /* drain placed these below DRAM: free the DRAM copy now that they are persisted */
    for (uint32_t i = first; i < first + n && i < leaf->n_blocks; i++) {
        radix_block *b = &leaf->blocks[i];
        if (!(b->flags & BLK_DEMOTE))
            continue;
        b->flags &= ~BLK_DEMOTE;
        if (!leaf->pins && b->slot[RADIX_TIER_DRAM] != RADIX_NO_SLOT &&
            (b->slot[RADIX_TIER_NVME] != RADIX_NO_SLOT || b->slot[RADIX_TIER_DISK] != RADIX_NO_SLOT)) {
            blk_drop_copy(ns, leaf, b, RADIX_TIER_DRAM);
            e->demotions++;
        }
    }
}

int sim_read(kvt_lease *l, size_t first, size_t n)
{
    kvt_ns *ns = l->ns;
    kvt_engine *e = ns->eng;
    pthread_mutex_lock(&e->lock);
    for (size_t i = first; i < first + n; i++) {
        radix_node *node;
        radix_block *b = blk_at_depth(l->deepest, i, &node);
        if (b->slot[RADIX_TIER_DRAM] != RADIX_NO_SLOT || (b->flags & BLK_BAD))
            continue;
        int t = b->slot[RADIX_TIER_NVME] != RADIX_NO_SLOT ? RADIX_TIER_NVME : RADIX_TIER_DISK;
        e->t_reads[t]++;
        e->t_bytes_read[t] += ns->block_bytes;
        uint32_t ps;
        if (tiered_alloc_dram(ns, &ps, 0) == 0) { /* best effort, as a real read */
            b = blk_at_depth(l->deepest, i, &node);
            blk_add_copy(ns, node, b, RADIX_TIER_DRAM, ps);
            l->blocks[i].slot[RADIX_TIER_DRAM] = ps;
            e->promotions++;
        }
    }
    atomic_fetch_add(&e->bytes_read, n * ns->block_bytes);
    pthread_mutex_unlock(&e->lock);
    return -ENODATA;
}

void sim_stats(kvt_engine *e, kvt_stats *s)
{
    uint64_t ncap = e->opts ? e->opts->tier_capacity[RADIX_TIER_NVME] : 0;
    if (sim_nvme_ready(e))
        ncap = e->sim_nvme_slots * e->nvme_slot_bytes;
    s->tier_capacity[KVT_TIER_NVME] = ncap;
    s->tier_used[KVT_TIER_NVME] = e->sim_nvme_used * e->nvme_slot_bytes;
    s->tier_capacity[KVT_TIER_DISK] = e->sim_disk_cap;
    s->tier_used[KVT_TIER_DISK] = e->sim_disk_used;
}

int sim_tier_full(kvt_engine *e, int t)
{
    if (t == RADIX_TIER_NVME)
        return sim_nvme_ready(e) && !e->sim_nvme_nfree && e->sim_nvme_fresh >= e->sim_nvme_slots;
    if (t == RADIX_TIER_DISK)
        return e->sim_disk_cap && e->sim_disk_used + 4096 > e->sim_disk_cap;
    return 0;
}
