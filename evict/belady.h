/*
 * belady.h — offline reference policies over a trace of block ids: Belady's optimum (MIN)
 * and LRU, for `kvtier analyze` and for judging the online policies.
 *
 * Model: one tier holding `capacity` equal-size blocks (for equal-size blocks of B bytes a
 * byte capacity C is C / B blocks). An access hits if the block is cached. On a miss the
 * block may be admitted, evicting another; Belady may also decline to admit (bypass), which
 * a KV cache can do: the block is in HBM after prefill either way, storing it is optional.
 *   belady: keep the blocks whose next use is soonest; on a miss with a full cache, admit the
 *           block and evict the cached one with the furthest next use, unless the new block's
 *           own next use is further still (then bypass). Optimal for this model: no policy,
 *           online or offline, gets more hits.
 *   lru:    demand LRU (always admit, evict the least recently used).
 *
 * Prefix-aware caveat: real requests are prefix-closed. Block k of a prompt is useful only if
 * blocks 0..k-1 also hit (a prefix cache stops at the first miss), and a request touches a
 * whole root path. Belady over block ids ignores that dependency: it may keep a child whose
 * parent it evicted, counting a hit that the prefix cache could not use. So Belady's count is
 * an upper bound on the block hits of any prefix-cache policy, not necessarily attainable.
 *
 * Cost: O(n log capacity) time, two hash probes per access. Memory: a hash table of the
 * distinct ids (12 bytes per slot, load <= 0.7: 17-34 bytes per distinct id), 4 bytes per
 * access (next-use index) and 8 bytes per cache slot; 10^7 accesses over 10^6 distinct ids
 * take ~65 MB beyond the trace and 3-5 s on the 2-core development machine. LRU: the table
 * plus 8 bytes per slot of list links.
 *
 * Thread safety: reentrant; allocates through util_malloc and frees before returning.
 */
#ifndef KVT_EVICT_BELADY_H
#define KVT_EVICT_BELADY_H

#include <stddef.h>
#include <stdint.h>

/* [in] ids[n]: the trace, block ids (any uint64 values). capacity: blocks (0: no hits).
 * [out] hit_out[n] (optional): 1 where access i hits, else 0. [out] *hits: the hit count.
 * Returns 0; -EINVAL (hits NULL, or ids NULL with n > 0); -E2BIG (n > UINT32_MAX - 2);
 * -ENOMEM. Outputs are untouched on error. */
int evict_belady_hits(const uint64_t *ids, size_t n, size_t capacity, uint8_t *hit_out,
                      size_t *hits);
int evict_lru_trace_hits(const uint64_t *ids, size_t n, size_t capacity, uint8_t *hit_out,
                         size_t *hits);

#endif
