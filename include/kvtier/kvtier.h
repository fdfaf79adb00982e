/*
 * kvtier.h — the public C API of libkvtier, a tiered KV-cache storage engine.
 *
 * This header is the manual. Every function documents its parameters ([in]/[out]),
 * ownership, lifecycle and every status it can return.
 *
 * @section overview Overview
 *
 * An engine (kvt_engine) holds KV-cache blocks in tiers (this version: host DRAM) and
 * indexes them by token prefix in one radix tree per namespace. A namespace (kvt_ns) is one
 * model KV layout plus one tenant; lookups never cross namespaces.
 *
 * The caller's cycle, per request:
 *
 *   kvt_match()    how much of this prompt is cached?  -> matched tokens + a lease
 *   kvt_read()     copy the leased blocks' KV bytes into the caller's buffers
 *   kvt_release()  end the lease (the blocks may be evicted again)
 *   kvt_put()      after prefill, store the KV bytes of the blocks not yet cached
 *
 * @section layout Block layout
 *
 * A block is block_tokens consecutive tokens and their KV for every layer. Its bytes are
 * opaque to the engine, but the engine, the Python package and the paged kernels agree on
 * one layout, and callers must use it:
 *
 *   block bytes = [layers][2 (K then V)][block_tokens][kv_heads][head_dim] elements of dtype
 *
 * so a block is layers * 2 * block_tokens * kv_heads * head_dim * dtype_size bytes
 * (Llama-3-8B, bf16, 16 tokens: 32*2*16*8*128*2 = 2 MiB). kvt_layout_block_bytes() computes it.
 *
 * @section keys Block keys
 *
 * Each cached block has a 64-bit key: XXH3-64 of the block's tokens (little-endian uint32)
 * seeded with its parent block's key; the first block is seeded with 0. Keys are for
 * interoperability with systems that only know block hashes; a hit on real tokens is always
 * decided by comparing the token ids themselves, never by a key alone.
 * A namespace opened with KVT_NS_KEYS indexes sequences of caller-given 64-bit keys instead
 * of tokens (traces such as Mooncake's that carry only hash_ids); there the keys are the
 * exact identity of a block.
 *
 * @section threads Threads and locking
 *
 * Every function is safe to call from any number of threads at once on the same engine.
 * One engine-wide mutex guards the index, the tier allocators and the eviction lists; it is
 * held for index work only (microseconds). Byte copies in kvt_put() and kvt_read() run
 * outside it: a lease pins its blocks, and blocks being written are invisible to lookups
 * until their bytes are complete. A kvt_lease may be used by one thread at a time.
 *
 * @section errors Errors
 *
 * Functions return int: 0 (KVT_OK) on success, a negative errno value for OS-level or
 * argument failures (-EINVAL, -ENOMEM, -ENOSPC, -EBUSY, -ERANGE), or one of the library's
 * own codes (KVT_E*, in the range [KVT_ERR_LAST, KVT_ERR_BASE]). kvt_strerror() describes
 * both. The library never prints to stdout, never exits and never aborts on bad input.
 */
#ifndef KVTIER_H
#define KVTIER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVT_VERSION_MAJOR 0
#define KVT_VERSION_MINOR 1
#define KVT_VERSION_PATCH 0

/* ---------------------------------------------------------------- status codes */

#define KVT_OK 0
#define KVT_ERR_BASE (-30900)
/** The KV layout is invalid (a zero field, block_tokens not a power of two, unknown dtype),
 *  or differs from the layout the namespace was created with. */
#define KVT_EBADLAYOUT (-30900)
/** A buffer's size does not match what the namespace's layout requires. */
#define KVT_ESIZE (-30901)
/** A token call on a key namespace, or a key call on a token namespace. */
#define KVT_EMODE (-30902)
/** A name or tenant string is empty or longer than KVT_NAME_MAX bytes. */
#define KVT_ENAME (-30903)
/** The engine still has open leases (kvt_engine_close). */
#define KVT_ELEASES (-30904)
#define KVT_ERR_LAST (-30904)

/** Longest namespace or tenant name, in bytes, without the terminating NUL. */
#define KVT_NAME_MAX 255

/**
 * Describe a status code.
 * @param[in] status  any value a kvt_ function returned (0, -errno, KVT_E*).
 * @return a static string; never NULL. Unknown codes get "unknown kvtier status".
 */
const char *kvt_strerror(int status);

/** @return the library version as "MAJOR.MINOR.PATCH" (static string). */
const char *kvt_version(void);

/* ---------------------------------------------------------------- layouts */

typedef enum kvt_dtype {
    KVT_DTYPE_FP16 = 1,
    KVT_DTYPE_BF16 = 2,
    KVT_DTYPE_FP32 = 3,
    KVT_DTYPE_FP8 = 4, /* e4m3 or e5m2: one byte, the engine does not care which */
} kvt_dtype;

/** A model's KV layout. Zero-initialise, then fill every field. */
typedef struct kvt_layout {
    uint32_t layers;       /**< transformer layers holding KV, >= 1 */
    uint32_t kv_heads;     /**< KV heads per layer (GQA: fewer than query heads), >= 1 */
    uint32_t head_dim;     /**< elements per head, >= 1 */
    kvt_dtype dtype;       /**< element type */
    uint32_t block_tokens; /**< tokens per block: a power of two in [1, 4096]; 16 is usual */
} kvt_layout;

/**
 * Bytes of one block in the documented block layout.
 * @param[in] layout  the layout.
 * @return layers*2*block_tokens*kv_heads*head_dim*dtype_size, or 0 if the layout is invalid
 *         or the size does not fit in 4 GiB.
 */
uint64_t kvt_layout_block_bytes(const kvt_layout *layout);

/* ---------------------------------------------------------------- options */

typedef struct kvt_options kvt_options;

/** Hugepage use for the DRAM arena. */
typedef enum kvt_hugepages {
    KVT_HUGEPAGES_AUTO = 0, /**< try MAP_HUGETLB 2 MiB pages, else transparent huge pages */
    KVT_HUGEPAGES_OFF = 1,  /**< plain pages */
    KVT_HUGEPAGES_ON = 2,   /**< MAP_HUGETLB or fail kvt_engine_open with -ENOMEM */
} kvt_hugepages;

/**
 * Create an options object holding the defaults:
 * DRAM tier 1 GiB, slot size 0 (= the block size of the first namespace opened),
 * hugepages AUTO, CUDA pinning on when a GPU is present.
 * @param[out] out  the new object; the caller owns it and frees it with kvt_options_destroy().
 * @return 0; -EINVAL if out is NULL; -ENOMEM.
 */
int kvt_options_create(kvt_options **out);

/** Free an options object. NULL is a no-op. Engines opened from it do not depend on it. */
void kvt_options_destroy(kvt_options *opts);

/**
 * Set the DRAM tier's capacity, in bytes (rounded down to whole slots; at least one slot).
 * @return 0; -EINVAL if opts is NULL or bytes is 0.
 */
int kvt_options_set_dram_bytes(kvt_options *opts, uint64_t bytes);

/**
 * Set the DRAM tier's slot size in bytes: a multiple of 64 in [64, 1 GiB], or 0 for the block
 * size of the first namespace opened. A block occupies ceil(block_bytes / slot_bytes) slots;
 * choose the slot size equal to the usual block size to waste nothing.
 * @return 0; -EINVAL.
 */
int kvt_options_set_dram_slot_bytes(kvt_options *opts, uint64_t slot_bytes);

/** Set hugepage use for the DRAM arena. @return 0; -EINVAL. */
int kvt_options_set_hugepages(kvt_options *opts, kvt_hugepages mode);

/**
 * Register the DRAM arena with CUDA (page-locked, for fast DMA) when a GPU is present and the
 * library was built with CUDA. On by default. Without a GPU it is silently skipped.
 * @return 0; -EINVAL.
 */
int kvt_options_set_cuda_pin(kvt_options *opts, int on);

/* ---------------------------------------------------------------- engine */

typedef struct kvt_engine kvt_engine;

/**
 * Open an engine: maps the DRAM arena and starts with an empty index.
 * @param[in]  opts  options, or NULL for the defaults. Not retained.
 * @param[out] out   the engine; close it with kvt_engine_close().
 * @return 0; -EINVAL if out is NULL; -ENOMEM if the arena cannot be mapped (or hugepages were
 *         required and are not available).
 */
int kvt_engine_open(const kvt_options *opts, kvt_engine **out);

/**
 * Close an engine, freeing its namespaces, blocks and arena. All leases must have been
 * released first; namespace handles become invalid.
 * @return 0; -EINVAL if eng is NULL; KVT_ELEASES if leases are open (the engine stays open).
 */
int kvt_engine_close(kvt_engine *eng);

/**
 * Limit how many bytes of a tier one tenant may hold. A tenant over its quota evicts its own
 * least recently used blocks. Tenants never evict each other's blocks: a put that needs space
 * evicts only blocks of the same tenant, so with quotas that add up to at most the capacity
 * every tenant can always use its quota.
 * @param[in] eng     the engine.
 * @param[in] tenant  tenant name (1..KVT_NAME_MAX bytes).
 * @param[in] bytes   the quota for the DRAM tier; 0 removes the limit.
 * @return 0; -EINVAL; KVT_ENAME; -ENOMEM.
 */
int kvt_tenant_set_dram_quota(kvt_engine *eng, const char *tenant, uint64_t bytes);

/* ---------------------------------------------------------------- namespaces */

typedef struct kvt_ns kvt_ns;

/** kvt_ns_open flags */
#define KVT_NS_KEYS 0x1u /**< index sequences of external 64-bit block keys, not tokens */

/**
 * Open (create if absent) the namespace (name, tenant). Opening an existing namespace with
 * the same layout and flags returns the same handle.
 * @param[in]  eng     the engine.
 * @param[in]  name    namespace name, usually the model (1..KVT_NAME_MAX bytes).
 * @param[in]  tenant  tenant name (1..KVT_NAME_MAX bytes).
 * @param[in]  layout  the KV layout; copied.
 * @param[in]  flags   0 or KVT_NS_KEYS.
 * @param[out] out     the handle, owned by the engine and valid until kvt_engine_close().
 * @return 0; -EINVAL (NULL argument, unknown flag); KVT_ENAME; KVT_EBADLAYOUT (invalid
 *         layout, or the namespace exists with another layout or flags); -ENOMEM.
 */
int kvt_ns_open(kvt_engine *eng, const char *name, const char *tenant, const kvt_layout *layout,
                unsigned flags, kvt_ns **out);

/**
 * The block keys a token sequence would have in this namespace (see Block keys), for its
 * n_tokens / block_tokens whole blocks. Pure: does not look at or change the cache.
 * @param[in]  ns        a token namespace.
 * @param[in]  tokens    n_tokens token ids.
 * @param[out] keys      room for n_tokens / block_tokens keys.
 * @return 0; -EINVAL; KVT_EMODE on a key namespace.
 */
int kvt_block_keys(const kvt_ns *ns, const uint32_t *tokens, size_t n_tokens, uint64_t *keys);

/* ---------------------------------------------------------------- match, read, release */

typedef struct kvt_lease kvt_lease;

/**
 * Find the longest cached block-aligned prefix of a token sequence.
 *
 * Token ids are compared exactly. With a lease, the matched blocks count as used now (LRU,
 * hit counts) and stay pinned (never evicted, moved or overwritten) until kvt_release().
 * Without a lease (lease == NULL) the call only measures: nothing is pinned or touched.
 *
 * @param[in]  ns        a token namespace.
 * @param[in]  tokens    n_tokens token ids; a trailing partial block is ignored.
 * @param[in]  n_tokens  number of tokens; 0 matches nothing.
 * @param[out] matched   matched tokens, a multiple of block_tokens. May be NULL.
 * @param[out] lease     NULL, or where to store the lease: NULL when nothing matched.
 * @return 0 (also when nothing matched); -EINVAL; KVT_EMODE; -ENOMEM (lease allocation;
 *         nothing pinned).
 */
int kvt_match(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens, size_t *matched,
              kvt_lease **lease);

/** kvt_match for a KVT_NS_KEYS namespace: keys are whole blocks; *matched counts blocks. */
int kvt_match_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys, size_t *matched,
                   kvt_lease **lease);

/** @return the number of blocks the lease holds (0 for NULL). */
size_t kvt_lease_blocks(const kvt_lease *lease);

/** @return the number of tokens the lease covers: blocks * block_tokens (0 for NULL). */
size_t kvt_lease_tokens(const kvt_lease *lease);

/**
 * The key of the lease's block i.
 * @return 0; -EINVAL; -ERANGE if i >= kvt_lease_blocks().
 */
int kvt_lease_block_key(const kvt_lease *lease, size_t i, uint64_t *key);

/**
 * Copy n leased blocks, starting at block first, into dst[0..n). Each dst[i] must hold one
 * block (kvt_layout_block_bytes bytes) in the documented block layout. Runs without the
 * engine lock; the lease's pin keeps the bytes stable.
 * @param[in]  lease  a lease from kvt_match().
 * @param[in]  first  first block index.
 * @param[in]  n      number of blocks.
 * @param[out] dst    n block buffers; they may not overlap the engine's memory.
 * @return 0; -EINVAL (NULL lease or dst, a NULL dst[i]); -ERANGE if first + n exceeds the lease.
 */
int kvt_read(kvt_lease *lease, size_t first, size_t n, void *const *dst);

/**
 * kvt_read into one contiguous buffer of n blocks: block i goes to dst + i * block_bytes.
 * @param[in] dst_bytes  the buffer's size; must be exactly n * block_bytes.
 * @return as kvt_read(); KVT_ESIZE if dst_bytes is wrong.
 */
int kvt_read_contig(kvt_lease *lease, size_t first, size_t n, void *dst, size_t dst_bytes);

/**
 * End a lease: unpin its blocks and free it. NULL is a no-op. The lease may not be used after.
 */
void kvt_release(kvt_lease *lease);

/* ---------------------------------------------------------------- put */

/**
 * Store the KV bytes of a token sequence's whole blocks that are not yet cached.
 *
 * blocks[i] points at block i's bytes (kvt_layout_block_bytes, block layout), for
 * i < n_tokens / block_tokens. Entries for blocks the caller knows to be cached (e.g. the
 * first matched/block_tokens after a kvt_match) may be NULL; they are not read. The new
 * blocks become visible to lookups only after all their bytes are copied.
 *
 * When the tier is full, the tenant's least recently used unpinned blocks are evicted
 * (dropped). Blocks are stored in order; the put stops at the first block that cannot be
 * stored and returns why, leaving the blocks before it cached.
 * When another thread is storing the same prefix at the same time, the put stops where that
 * other put's blocks begin and returns 0 with *stored counting only its own blocks.
 *
 * @param[in]  ns        a token namespace.
 * @param[in]  tokens    n_tokens token ids; a trailing partial block is ignored.
 * @param[in]  blocks    n_tokens / block_tokens pointers (see above).
 * @param[out] stored    number of blocks this call newly stored. May be NULL.
 * @return 0; -EINVAL (NULL argument); KVT_EMODE; -ENODATA if a needed blocks[i] is NULL;
 *         -ENOSPC if the tenant has nothing left to evict, or its quota is smaller than one
 *         block; -ENOMEM.
 */
int kvt_put(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens, const void *const *blocks,
            size_t *stored);

/** kvt_put for a KVT_NS_KEYS namespace: n_keys blocks, blocks[i] for keys[i]. */
int kvt_put_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys, const void *const *blocks,
                 size_t *stored);

/* ---------------------------------------------------------------- remove */

/**
 * Invalidate a cached prefix's last block and every block cached after it (all sequences
 * that extend it). Earlier blocks stay cached. Used to delete or overwrite data and to drop
 * blocks that failed verification.
 * @param[in]  ns        a token namespace.
 * @param[in]  tokens    n_tokens token ids naming the prefix; a trailing partial block is
 *                       ignored; the prefix must be cached in full.
 * @param[out] removed   blocks removed. May be NULL.
 * @return 0; -EINVAL; KVT_EMODE; -ENOENT if the prefix is not cached in full (nothing
 *         removed); -EBUSY if a lease pins, or a put is storing, any block concerned (nothing
 *         removed).
 */
int kvt_remove(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens, size_t *removed);

/** kvt_remove for a KVT_NS_KEYS namespace: keys[n_keys - 1] and everything after it. */
int kvt_remove_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys, size_t *removed);

/* ---------------------------------------------------------------- stats */

/** Counters since kvt_engine_open. Pass sizeof(kvt_stats): later versions append fields. */
typedef struct kvt_stats {
    uint64_t lookups;          /**< kvt_match calls with a lease */
    uint64_t lookup_tokens;    /**< tokens asked for (whole blocks) */
    uint64_t hit_tokens;       /**< tokens matched */
    uint64_t puts;             /**< kvt_put calls */
    uint64_t blocks_stored;    /**< blocks newly stored */
    uint64_t blocks_evicted;   /**< blocks dropped to make room */
    uint64_t bytes_read;       /**< bytes copied out by kvt_read */
    uint64_t bytes_written;    /**< bytes copied in by kvt_put */
    uint64_t blocks_cached;    /**< blocks cached now */
    uint64_t dram_capacity;    /**< DRAM tier capacity, bytes (whole slots) */
    uint64_t dram_used;        /**< DRAM tier bytes in use (whole slots) */
    uint64_t index_bytes;      /**< heap bytes of all radix trees */
    uint64_t leases_open;      /**< leases not yet released */
    uint64_t namespaces;       /**< namespaces open */
    uint32_t dram_hugepages;   /**< 1 if the arena is on MAP_HUGETLB pages, 2 THP, 0 none */
    uint32_t dram_cuda_pinned; /**< 1 if the arena is registered with CUDA */
} kvt_stats;

/**
 * Read the engine's counters.
 * @param[in]  eng       the engine.
 * @param[out] out       filled with min(size, sizeof(kvt_stats)) bytes.
 * @param[in]  size      sizeof(kvt_stats) as the caller compiled it.
 * @return 0; -EINVAL.
 */
int kvt_engine_stats(kvt_engine *eng, kvt_stats *out, size_t size);

#ifdef __cplusplus
}
#endif
#endif /* KVTIER_H */
