/*
 * dram.h — the DRAM tier: a fixed-size slot allocator over one large arena.
 *
 * Arena layout:  [slot 0][slot 1] ... [slot n-1]       each slot_bytes, 64-byte aligned
 * Side tables:   next[n]  chain of a block's slots (DRAM_END ends a chain)
 *                free[n]  stack of free slot numbers
 *
 * A block of b bytes takes ceil(b / slot_bytes) slots, chained through next[] (not
 * necessarily contiguous); its location is its first ("head") slot. With slot_bytes equal to
 * the block size every block is one slot. The arena is mapped once at open: MAP_HUGETLB 2 MiB
 * pages when available (KVT_HUGEPAGES_AUTO/ON), else plain pages with MADV_HUGEPAGE.
 * The slot size may be fixed later than open (dram_set_slot_bytes), once, before any alloc.
 *
 * Thread safety: dram_alloc/dram_free/dram_set_slot_bytes mutate the free stack: the caller
 * serialises them (the engine lock). dram_write/dram_read touch only the slots of one chain
 * and the read-only next[] entries of that chain, so they run without the lock on chains the
 * caller owns (allocated and not freed, or pinned).
 */
#ifndef KVT_DRAM_H
#define KVT_DRAM_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"

#define DRAM_END UINT32_MAX

typedef struct dram_tier dram_tier;

/* Map an arena of `capacity` bytes (rounded down to whole slots once the slot size is known;
 * rounded up to the page size for the mapping). slot_bytes: a multiple of 64 in [64, 1 GiB],
 * or 0 to set it later. Returns 0, -EINVAL, -ENOMEM. */
int dram_open(uint64_t capacity, uint64_t slot_bytes, kvt_hugepages mode, dram_tier **out);
void dram_close(dram_tier *t);
/* Fault in the whole arena now (writable, zero-filled): MADV_POPULATE_WRITE, or a write to
 * every page where the kernel lacks it (< 5.14). The first touch of a fresh 4 KiB slot (a
 * 2 MiB page under THP) otherwise costs a page fault and the kernel's zeroing on the path of
 * the put that takes it. Returns 0, or -ENOMEM (the memory is not there: the pages faulted so
 * far stay). Not for a virtual tier. */
int dram_prefault(dram_tier *t);
/* Slot accounting only (the engine's data-free simulation): the same allocator with no arena
 * mapped (dram_base() is NULL; dram_write/dram_read must not be called). Same errors. */
int dram_open_virtual(uint64_t capacity, uint64_t slot_bytes, dram_tier **out);

/* Fix the slot size and allocate the side tables. 0 (also when set again to the same size);
 * -EBUSY if already set to another size; -EINVAL (bad size, or fewer than one slot fits);
 * -ENOMEM (the size stays unset; the call may be retried). */
int dram_set_slot_bytes(dram_tier *t, uint64_t slot_bytes);
uint64_t dram_slot_bytes(const dram_tier *t); /* 0 while unset */

uint32_t dram_slots_for(const dram_tier *t, uint64_t bytes);
/* All-or-nothing: 0 and *head, or -ENOSPC if fewer free slots than needed, -EINVAL if the
 * slot size is unset or bytes == 0. */
int dram_alloc(dram_tier *t, uint64_t bytes, uint32_t *head);
void dram_free(dram_tier *t, uint32_t head);

/* Copy bytes into / out of the chain starting at head (bytes <= its allocation). */
void dram_write(dram_tier *t, uint32_t head, const void *src, uint64_t bytes);
/* dram_write of `bytes` from src, then zeros up to `total` (>= bytes): a short block. The
 * arena remembers how far each slot was written, so zeros are written only over old bytes. */
void dram_write_pad(dram_tier *t, uint32_t head, const void *src, uint64_t bytes, uint64_t total);
void dram_read(const dram_tier *t, uint32_t head, void *dst, uint64_t bytes);
/* The address of the chain at head when its first `bytes` bytes are one contiguous run of
 * the arena (every slot's successor is the next slot), else NULL. */
const void *dram_chain_ptr(const dram_tier *t, uint32_t head, uint64_t bytes);
/* Copy bytes [offset, offset + bytes) of the chain at head (which must hold them) to dst. */
void dram_read_at(const dram_tier *t, uint32_t head, uint64_t offset, void *dst, uint64_t bytes);

/* Whoever writes a chain's slots through a pointer into the arena (an O_DIRECT read into
 * DRAM) says so first: their bytes count as non-zero. */
void dram_mark_written(dram_tier *t, uint32_t head);
/* Prefetch the first `bytes` (at most a slot) of slot head's bytes into the CPU caches. */
void dram_hint(const dram_tier *t, uint32_t head, uint64_t bytes);
uint64_t dram_capacity(const dram_tier *t); /* whole slots, bytes (0 while unset) */
uint64_t dram_used(const dram_tier *t);     /* slots in use * slot_bytes */
uint32_t dram_free_slots(const dram_tier *t);
void *dram_base(const dram_tier *t);        /* the arena mapping */
uint64_t dram_map_bytes(const dram_tier *t);
int dram_hugepages(const dram_tier *t);     /* 1 MAP_HUGETLB, 2 THP advised, 0 none */

#endif
