/*
 * kvtier.h — the public C API of libkvtier, a tiered KV-cache storage engine.
 *
 * This header is the manual. Every function documents its parameters ([in]/[out]),
 * ownership, lifecycle and every status it can return.
 *
 * @section overview Overview
 *
 * An engine (kvt_engine) holds KV-cache blocks in tiers (host DRAM; with a data directory
 * also nvme and disk, persistent across restarts: see kvt_options_set_data_dir and
 * kvt_flush) and indexes them by token prefix in one radix tree per namespace. A namespace (kvt_ns) is one
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
/** A block read from nvme/disk failed verification (checksum, record header, tag): it was
 *  not served, and it and every block cached after it are dropped from the index. */
#define KVT_ECORRUPT (-30905)
/** The persistent catalog (RocksDB) failed: see the data directory's catalog/LOG. */
#define KVT_ECATALOG (-30906)
#define KVT_ERR_LAST (-30906)

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

/**
 * Parse a byte size as the kvtier program, the service and configuration files write it:
 * decimal digits with an optional binary suffix K, M, G or T (case-insensitive, optionally
 * followed by "i" and/or "B": "512", "64K", "4G", "8GiB", "1tb"; all powers of 1024).
 * @param[in]  s      the text.
 * @param[out] bytes  the value.
 * @return 0; -EINVAL (NULL, empty, a sign, other characters); -ERANGE (over 2^64 - 1).
 */
int kvt_parse_size(const char *s, uint64_t *bytes);

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
 * size of the first namespace opened (rounded up to a multiple of 64; kvt_ns_open then fails
 * with KVT_EBADLAYOUT if not even one such block fits the tier). A block occupies
 * ceil(block_bytes / slot_bytes) slots; choose the slot size equal to the usual block size to
 * waste nothing.
 * @return 0; -EINVAL.
 */
int kvt_options_set_dram_slot_bytes(kvt_options *opts, uint64_t slot_bytes);

/** Set hugepage use for the DRAM arena. @return 0; -EINVAL. */
int kvt_options_set_hugepages(kvt_options *opts, kvt_hugepages mode);

/**
 * Fault the whole DRAM arena in at kvt_engine_open (off by default): the engine then holds
 * dram_bytes of resident memory from the start, and open takes the time the kernel needs to
 * zero it (4 GiB took 18 s on a loaded 2-vCPU VM), instead of every put that takes a fresh slot
 * paying a page fault and that zeroing (under THP, 2 MiB at a time). For a dedicated cache
 * server that is to run at its steady-state speed from the first request. No effect in
 * simulation. kvt_engine_open fails with -ENOMEM when the memory cannot be had.
 * @param[in] on  nonzero: prefault; 0: fault on first touch (the default).
 * @return 0; -EINVAL if opts is NULL.
 */
int kvt_options_set_dram_prefault(kvt_options *opts, int on);

/**
 * Register the DRAM arena with CUDA (page-locked, for fast DMA) when a GPU is present and the
 * library was built with CUDA. On by default. Without a GPU it is silently skipped.
 * @return 0; -EINVAL.
 */
int kvt_options_set_cuda_pin(kvt_options *opts, int on);

/* ---------------------------------------------------------------- persistent tiers */

/** Tiers, fastest first. A block may have copies in several. */
typedef enum kvt_tier {
    KVT_TIER_HBM = 0,  /**< GPU memory: the pool of kvt_options_set_hbm_bytes */
    KVT_TIER_DRAM = 1, /**< host memory: the arena of kvt_options_set_dram_bytes */
    KVT_TIER_NVME = 2, /**< local flash: fixed slots in preallocated O_DIRECT files */
    KVT_TIER_DISK = 3, /**< capacity tier: checksummed, LZ4-compressed records in segments */
} kvt_tier;

/**
 * Make the engine persistent: DIR holds the catalog (DIR/catalog, RocksDB) and, unless
 * kvt_options_set_tier() names other paths, the nvme tier (DIR/nvme) and the disk tier
 * (DIR/disk). Directories are created as needed (the parent of DIR must exist).
 *
 * With a data directory, every block stored by kvt_put() is also written, in the background,
 * to the first persistent tier (nvme if it has a capacity, else disk): its bytes are written
 * with O_DIRECT, checksummed (XXH3-64), fdatasync'd, and only then recorded in the catalog
 * (see kvt_flush). DRAM becomes a cache of the persistent tiers: a full DRAM tier frees the
 * DRAM copy of a persisted block (demotion), a full nvme tier moves its least recently used
 * blocks to disk (or drops them without a disk tier), a full disk tier drops its least
 * recently used blocks. kvt_engine_open() on a directory written before (clean close or a
 * crash) rebuilds the namespaces and the index from the catalog: a warm restart.
 * With no data directory (the default) the engine is DRAM only and nothing is persistent.
 *
 * @param[in] dir  a path (copied), or NULL to remove the setting.
 * @return 0; -EINVAL (opts NULL, empty path); -ENOMEM.
 */
int kvt_options_set_data_dir(kvt_options *opts, const char *dir);

/**
 * Configure a persistent tier.
 * @param[in] tier      KVT_TIER_NVME or KVT_TIER_DISK.
 * @param[in] path      its directory (copied), or NULL for DIR/nvme, DIR/disk.
 * @param[in] capacity  bytes; 0 disables the tier. The nvme tier preallocates its files to
 *                      whole slots (fallocate) at open; the disk tier grows segment files
 *                      (at least 2 segments of 64 MiB; one is kept for compaction).
 *                      Defaults: nvme 0 (off), disk 1 GiB.
 * @param[in] bw        bandwidth cap in bytes/s over the tier's reads and writes (emulating a
 *                      slower device; per I/O context for nvme), 0 = none.
 * @return 0; -EINVAL (other tier, empty path); -ENOMEM.
 */
int kvt_options_set_tier(kvt_options *opts, kvt_tier tier, const char *path, uint64_t capacity,
                         uint64_t bw);

/** Queue depth of each I/O context (1..4096; default 32). @return 0; -EINVAL. */
int kvt_options_set_io_depth(kvt_options *opts, unsigned depth);

/** Use the pread/pwrite thread pool instead of io_uring (tests; the environment variable
 *  KVT_IO_NO_URING=1 does the same for every context). @return 0; -EINVAL. */
int kvt_options_set_io_force_pool(kvt_options *opts, int on);

/**
 * How long a kvt_put() may wait for the write-through when DRAM is full of blocks not yet
 * persisted (backpressure), in milliseconds (default 2000). When the wait runs out, the
 * tenant's least recently used unpersisted blocks are dropped instead, as without a data
 * directory. 0 never waits. @return 0; -EINVAL.
 */
int kvt_options_set_backpressure_ms(kvt_options *opts, uint32_t ms);

/**
 * Write-back window of the write-through, in milliseconds (default 0: a new block is queued
 * for nvme/disk as soon as it is visible). With ms > 0 a block is written once it has been
 * in the queue that long: a block removed or replaced sooner (an overwritten value) never
 * costs an nvme write or a catalog record. The window is ignored — everything queued is
 * written at once — while kvt_flush() waits, a put waits for DRAM (backpressure), DRAM is
 * more than seven eighths full, and at kvt_engine_close(). A crash loses at most the
 * blocks of the last `ms` milliseconds not yet covered by a kvt_flush(), the same bound an
 * append-only log synced every second gives. @return 0; -EINVAL.
 */
int kvt_options_set_persist_delay_ms(kvt_options *opts, uint32_t ms);

/**
 * Scheduling niceness (0..19, Linux setpriority of the thread) of the write-through thread
 * (default 0: that of the thread that opened the engine). A positive value lets threads
 * serving requests take the CPU first when the machine is busy; the write-through catches
 * up when they wait, and a put that waits for DRAM (backpressure) leaves it the CPU.
 * @return 0; -EINVAL (out of range).
 */
int kvt_options_set_background_nice(kvt_options *opts, int nice);

/**
 * Data-free simulation (for trace replay, `kvtier analyze`): the engine keeps capacities,
 * the index, LRU order and demotion decisions as a real one would, but stores no bytes,
 * does no I/O and persists nothing (any data directory is ignored). kvt_put() then accepts
 * blocks == NULL (and NULL entries), kvt_read() returns -ENODATA, kvt_flush() returns 0, and
 * kvt_engine_set_clock() drives the access clock. Tiers are configured with
 * kvt_options_set_tier() (their paths are not used). @return 0; -EINVAL.
 */
int kvt_options_set_simulate(kvt_options *opts, int on);

/** Log levels passed to a kvt_log_fn. */
enum { KVT_LOG_DEBUG = 0, KVT_LOG_INFO = 1, KVT_LOG_WARN = 2, KVT_LOG_ERROR = 3 };
/** A log hook: one message (no trailing newline) per call, one call at a time. */
typedef void (*kvt_log_fn)(void *arg, int level, const char *msg);
/**
 * Send the library's log lines (the engine's own: failed write-through, blocks that fail
 * verification or hit an I/O error and are served as misses, records dropped at a warm
 * restart, compaction; and the I/O layer's: io_uring fallback, O_DIRECT refused) to fn
 * instead of stderr ("kvtier: <level>: <msg>"). The hook is process-wide: kvt_engine_open
 * installs it (the last engine opened with one wins) and kvt_engine_close of that engine
 * restores the default. fn NULL: leave the hook as it is. It may be called from the
 * engine's threads, never concurrently with itself. @return 0; -EINVAL.
 */
int kvt_options_set_log(kvt_options *opts, kvt_log_fn fn, void *arg);

/* ---------------------------------------------------------------- engine */

typedef struct kvt_engine kvt_engine;

/**
 * Open an engine: maps the DRAM arena and starts with an empty index, or, with a data
 * directory, opens the catalog and the persistent tiers, rebuilds the namespaces and the
 * index from the catalog (warm restart: catalogued blocks are on nvme/disk, none in DRAM)
 * and starts the write-through thread. Catalog records that do not verify (units against
 * their key chain, parent missing, slot claimed twice, location gone) are dropped and
 * deleted; nothing torn is ever served because every read is verified.
 * @param[in]  opts  options, or NULL for the defaults. Not retained.
 * @param[out] out   the engine; close it with kvt_engine_close().
 * @return 0; -EINVAL if out is NULL; -ENOMEM if the arena cannot be mapped (or hugepages were
 *         required and are not available); with a data directory also -EBUSY (another
 *         engine has it open), -ENOSPC (the nvme files cannot be preallocated), KVT_ECATALOG,
 *         and -errno from creating the directories or files.
 */
int kvt_engine_open(const kvt_options *opts, kvt_engine **out);

/**
 * Close an engine, freeing its namespaces, blocks and arena. All leases must have been
 * released first; namespace handles become invalid. With a data directory, close first
 * finishes the prefetches in flight and does kvt_flush(): every block stored before the
 * close is durable and catalogued (and found again by the next open) unless that flush
 * reports an error, which close then returns (the engine is closed anyway).
 * @return 0; -EINVAL if eng is NULL; KVT_ELEASES if leases are open (the engine stays open);
 *         the flush's error.
 */
int kvt_engine_close(kvt_engine *eng);

/**
 * The durability point. Returns when every block stored by a kvt_put() that returned before
 * this call is durable on its persistent tier (written, fdatasync'd) and recorded in the
 * catalog, and the catalog is synced: after a crash of the process or the machine, a
 * reopened engine matches and reads those blocks byte-identical. Blocks stored after the
 * call started may or may not be included. Without a data directory, and in simulation,
 * returns 0 at once.
 * @return 0; -EINVAL; the first write-through error since the previous kvt_flush (-EIO,
 *         -ENOSPC when neither tier had room for this tenant, KVT_ECATALOG): those blocks
 *         stay cached in DRAM but are not persistent; KVT_ECATALOG if the catalog sync fails.
 */
int kvt_flush(kvt_engine *eng);

/**
 * Simulation only: set the access clock (nanoseconds, any epoch; should not go backwards)
 * used for the blocks' last access from now on. @return 0; -EINVAL (no simulation engine).
 */
int kvt_engine_set_clock(kvt_engine *eng, uint64_t now_ns);

/**
 * Limit how many bytes of a tier one tenant may hold (generalises
 * kvt_tenant_set_dram_quota). Over its nvme quota a tenant's write-through demotes its own
 * least recently used nvme blocks to disk (or drops them); over its disk quota it drops its
 * own least recently used disk blocks. Tenants never evict each other's blocks in any tier.
 * @param[in] tier   KVT_TIER_DRAM, KVT_TIER_NVME or KVT_TIER_DISK.
 * @param[in] bytes  0 removes the limit.
 * @return 0; -EINVAL; KVT_ENAME; -ENOMEM.
 */
int kvt_tenant_set_quota(kvt_engine *eng, const char *tenant, kvt_tier tier, uint64_t bytes);

/**
 * Limit how many bytes of a tier one tenant may hold. A tenant over its quota evicts its own
 * least recently used blocks. Tenants never evict each other's blocks: a put that needs space
 * evicts only blocks of the same tenant, so with quotas that add up to at most the capacity
 * every tenant can always use its quota. Lowering a quota below what the tenant holds evicts
 * (demotes) its least recently used unpinned blocks at once until it fits.
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
typedef struct kvt_put_txn kvt_put_txn; /* a reservation of kvt_put_keys_begin */

/**
 * Find the longest cached block-aligned prefix of a token sequence.
 *
 * Token ids are compared exactly. With a lease, the matched blocks count as used now (LRU,
 * hit counts) and stay pinned (never evicted, moved or overwritten) until kvt_release().
 * Without a lease (lease == NULL) the call only measures: nothing is pinned or touched, and
 * the lookup counters of kvt_stats do not count it. (A kvt_put also counts as a use of the
 * cached prefix it extends.) When the match ends inside an index node, the node is split
 * there so recency and pins stay exact per block; if that split cannot allocate, the match
 * still succeeds and the lease pins the whole node, a few blocks more than it covers.
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
 *
 * A block not in DRAM is read from nvme (else disk) by the calling thread, which waits for
 * that block only (if a prefetch or another reader is already reading it, it waits for that
 * read); its bytes are verified against the checksum recorded when it was persisted, then
 * promoted into DRAM when there is room (best effort). A block that fails verification or
 * whose read fails is never copied: the call returns the error for the first such block,
 * with every block before it copied; the block and all blocks cached after it are dropped
 * from the index (once no lease pins them; later matches already stop before it).
 *
 * @param[in]  lease  a lease from kvt_match().
 * @param[in]  first  first block index.
 * @param[in]  n      number of blocks.
 * @param[out] dst    n block buffers; they may not overlap the engine's memory.
 * @return 0; -EINVAL (NULL lease or dst, a NULL dst[i]); -ERANGE if first + n exceeds the
 *         lease; KVT_ECORRUPT (checksum or record verification failed); -EIO (or another
 *         -errno) from the tier's read; -ENOMEM (staging buffer); -ENODATA in simulation.
 */
int kvt_read(kvt_lease *lease, size_t first, size_t n, void *const *dst);

/**
 * kvt_read into one contiguous buffer of n blocks: block i goes to dst + i * block_bytes.
 * @param[in] dst_bytes  the buffer's size; must be exactly n * block_bytes.
 * @return as kvt_read(); KVT_ESIZE if dst_bytes is wrong.
 */
int kvt_read_contig(kvt_lease *lease, size_t first, size_t n, void *dst, size_t dst_bytes);

/**
 * Copy bytes [offset, offset + len) of the lease's block `block` into dst: a part of one
 * block, for callers that keep small records at the start of a block (a key-value store's
 * 100-byte value in a 4 KiB block) and would otherwise copy the whole block to read them.
 * Same rules as kvt_read() for that block: no engine lock, the lease's pin keeps the bytes
 * stable; a DRAM copy is read in place (only len bytes are touched); a block not in DRAM is
 * read whole from nvme (else disk), verified against its checksum and promoted as by
 * kvt_read(), then the range is copied. Ranges of one block read under one lease are
 * consistent with each other (the same stored bytes).
 *
 * @param[in]  lease   a lease from kvt_match() or kvt_match_keys().
 * @param[in]  block   block index within the lease.
 * @param[in]  offset  first byte within the block.
 * @param[out] dst     len bytes; may not overlap the engine's memory. May be NULL if len == 0.
 * @param[in]  len     bytes to copy; offset + len <= kvt_layout_block_bytes().
 * @return 0; -EINVAL (NULL lease, NULL dst with len > 0); -ERANGE (block >= the lease's
 *         blocks); KVT_ESIZE (offset + len beyond the block); as kvt_read() for a block read
 *         from nvme or disk (KVT_ECORRUPT, -EIO, -ENOMEM); -ENODATA in simulation.
 */
int kvt_read_range(kvt_lease *lease, size_t block, size_t offset, void *dst, size_t len);

/**
 * Read bytes [offset, offset + len) of the block of one key: kvt_match_keys of {key},
 * kvt_read_range of block 0 and kvt_release in one call. A block with a DRAM copy is copied
 * under the engine's lock in one round trip (no lease, no pin: keep len small, e.g. a
 * header); a block only on nvme or disk is read and verified as kvt_read_range does. Counted
 * in kvt_stats like that match (a lookup; a hit touches the block's recency) and its read.
 * The bytes come from one version of the block: a concurrent put of the same key is seen
 * either wholly or not at all.
 *
 * @param[in]  ns      a KVT_NS_KEYS namespace.
 * @param[in]  key     the block's key.
 * @param[in]  offset  first byte, at most the block size.
 * @param[out] dst     len bytes.
 * @param[in]  len     bytes to read; offset + len at most the block size.
 * @param[out] tier    where the bytes came from (KVT_TIER_DRAM, _NVME or _DISK). May be NULL.
 * @return 0; -ENOENT (no such key, or it expired); -EINVAL; KVT_EMODE (a token namespace);
 *         KVT_ESIZE (the range leaves the block); KVT_ECORRUPT (the block failed
 *         verification and was dropped), -EIO, -ENOMEM (as kvt_read_range).
 */
int kvt_read_key(kvt_ns *ns, uint64_t key, size_t offset, void *dst, size_t len,
                 kvt_tier *tier);

/**
 * Announce lookups of these keys that the caller is about to make (a server that has parsed
 * a batch of pipelined requests): the engine fetches what the lookups will touch first (the
 * index entries, and the first `bytes` bytes of each block with a DRAM copy) into the CPU
 * caches for all of them together, so their cache misses overlap instead of coming one after
 * another. Changes nothing that any call can observe; a hint for a missing key costs little.
 * One engine-lock round trip per call.
 *
 * @param[in]  ns     n namespaces (KVT_NS_KEYS, all of one engine); ns[i] holds keys[i].
 * @param[in]  keys   n keys.
 * @param[in]  n      keys; 0 does nothing.
 * @param[in]  bytes  bytes at the start of each block to fetch (0: the index only).
 * @return 0; -EINVAL (NULL arrays, a NULL namespace or namespaces of different engines);
 *         KVT_EMODE (a token namespace).
 */
int kvt_lookahead_keys(kvt_ns *const *ns, const uint64_t *keys, size_t n, size_t bytes);

/**
 * The address of the lease's block i in the engine's DRAM tier, for reading it in place (a
 * server that sends a value from the cache with writev, no copy): valid, and its bytes
 * unchanged, until kvt_release(lease). Only a block that had a DRAM copy when the lease was
 * taken and whose copy is one contiguous run of the arena (always so when the DRAM slot size
 * is at least the block size); otherwise -ENOENT, and kvt_read() is the way to read it (a
 * block on nvme or disk is never handed out unverified). Not counted in kvt_stats'
 * bytes_read (the engine does not see what is read). The memory is the engine's: never
 * write to it.
 *
 * @param[in]  lease  a lease from kvt_match() or kvt_match_keys().
 * @param[in]  i      block index within the lease.
 * @param[out] ptr    the block's kvt_layout_block_bytes() bytes; NULL on failure.
 * @return 0; -EINVAL (NULL lease or ptr); -ERANGE (i >= the lease's blocks); -ENOENT (no
 *         contiguous DRAM copy, or in simulation).
 */
int kvt_lease_block_ptr(kvt_lease *lease, size_t i, const void **ptr);

/**
 * The fastest tier holding the lease's block i now (KVT_TIER_HBM when it has an HBM copy,
 * else KVT_TIER_DRAM, KVT_TIER_NVME or KVT_TIER_DISK; a promotion may move it up while the
 * lease is held).
 * @return 0; -EINVAL; -ERANGE if i >= kvt_lease_blocks().
 */
int kvt_lease_block_tier(const kvt_lease *lease, size_t i, kvt_tier *tier);

/**
 * End a lease: unpin its blocks and free it. NULL is a no-op. The lease may not be used after.
 * Blocks of the lease that failed verification are dropped now if no other lease pins them.
 */
void kvt_release(kvt_lease *lease);

/**
 * Start promoting the cached prefix of a token sequence into DRAM in the background and
 * return at once. The matched blocks are pinned until their promotion ends (kvt_remove may
 * answer -EBUSY meanwhile); a kvt_read() of a block whose promotion is in flight waits for
 * that block only. Counts no lookup and no hit. Without persistent tiers there is nothing to
 * promote and it returns 0.
 * @return 0; -EINVAL; KVT_EMODE; -ENOMEM.
 */
int kvt_prefetch(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens);

/** kvt_prefetch for a KVT_NS_KEYS namespace. */
int kvt_prefetch_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys);

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
 * (dropped). With a data directory, eviction first frees DRAM copies of blocks already
 * persisted (demotion: they stay cached on nvme/disk); when every candidate still waits for
 * the write-through, the put waits for it (see kvt_options_set_backpressure_ms) before
 * dropping unpersisted blocks. New blocks are queued for write-through once visible.
 * A put of more new blocks than DRAM (or the tenant's DRAM quota) has room for: with a data
 * directory the blocks that fit are made visible and queued, and the put goes on with the
 * rest, waiting for the write-through as above so that the earlier ones can leave DRAM for
 * nvme/disk (it stops with -ENOSPC only when the tiers below cannot hold the sequence
 * either); without a data directory it stops at the first block that finds no room.
 * In simulation blocks may be NULL (no bytes are stored). Blocks are stored in order; the put stops at the first block that cannot be
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

/**
 * Store blocks without a copy: the caller writes their bytes straight into the engine's DRAM
 * tier (a server receiving a large value from a socket reads it into place). Three steps:
 *
 *   kvt_put_keys_begin  reserves a DRAM block for each of keys[0..n_keys) (all of them new
 *                       keys after the cached prefix, if any) and gives their addresses; the
 *                       blocks are invisible to lookups and never evicted meanwhile;
 *   (the caller writes all kvt_layout_block_bytes() bytes of every block: pad with zeros)
 *   kvt_put_commit      makes them visible and queues them for the write-through, as
 *                       kvt_put_keys would have; or
 *   kvt_put_abort       gives the blocks back; nothing was stored.
 *
 * A reservation holds DRAM until it ends: commit or abort each one, from any thread, before
 * kvt_engine_close(). Only when a block is one DRAM slot (the slot size is at least the block
 * size) and not in simulation.
 *
 * @param[in]  ns      a KVT_NS_KEYS namespace.
 * @param[in]  keys    the n_keys keys of a sequence (copied).
 * @param[out] ptrs    n_keys writable addresses, block i at ptrs[i].
 * @param[out] txn     the reservation; NULL on failure.
 * @return 0; -EINVAL (NULL arguments, n_keys 0); KVT_EMODE (a token namespace); -ENOTSUP (a
 *         block spans several slots, or simulation); -EEXIST (some key of the sequence is
 *         cached: nothing reserved); -EBUSY (another put is storing this sequence);
 *         -ENOSPC (DRAM, or the tenant's quota, cannot hold them all now); -ENOMEM.
 */
int kvt_put_keys_begin(kvt_ns *ns, const uint64_t *keys, size_t n_keys, void **ptrs,
                       kvt_put_txn **txn);
/** Publish a reservation's blocks (see kvt_put_keys_begin); frees txn. @return 0; -EINVAL. */
int kvt_put_commit(kvt_put_txn *txn);
/** Give a reservation's blocks back (see kvt_put_keys_begin); frees txn. NULL is a no-op. */
void kvt_put_abort(kvt_put_txn *txn);

/* ---------------------------------------------------------------- remove */

/**
 * Invalidate a cached prefix's last block and every block cached after it (all sequences
 * that extend it). Earlier blocks stay cached. Used to delete or overwrite data and to drop
 * blocks that failed verification.
 * @param[in]  ns        a token namespace.
 * @param[in]  tokens    n_tokens token ids naming the prefix; a trailing partial block is
 *                       ignored; the prefix must be cached in full.
 * @param[out] removed   blocks removed. May be NULL.
 * With a data directory the removed blocks' catalog records are deleted and their nvme/disk
 * space is reused once that delete is durable.
 * @return 0; -EINVAL; KVT_EMODE; -ENOENT if the prefix is not cached in full (nothing
 *         removed); -EBUSY if a lease pins, or a put is storing, any block concerned, or the
 *         write-through or a prefetch is working on one (nothing removed).
 */
int kvt_remove(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens, size_t *removed);

/** kvt_remove for a KVT_NS_KEYS namespace: keys[n_keys - 1] and everything after it. */
int kvt_remove_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys, size_t *removed);

/**
 * Store one block under key in place of the block the key has now, if any: what
 * kvt_remove_keys(ns, &key, 1) followed by kvt_put_keys(ns, &key, 1, &block) do, in one call
 * whose removal and insert share a critical section (a key-value server overwriting a
 * value). The block is `len` bytes; the rest of the namespace's block size reads as zeros.
 * Blocks cached after the key (a sequence that extends it) are removed with it. The new
 * block becomes visible once all its bytes are copied; until then a lookup misses.
 *
 * @param[in]  ns     a KVT_NS_KEYS namespace.
 * @param[in]  key    the key.
 * @param[in]  block  len bytes (read during the call). NULL only in simulation.
 * @param[in]  len    1 .. the block size.
 * @return 0; -EINVAL; KVT_EMODE (a token namespace); KVT_ESIZE (len 0 or larger than a
 *         block); -EBUSY (a lease pins the old block, or a put, the write-through or a
 *         prefetch is working on it: nothing changed; retry); -ENOSPC, -ENOMEM and the
 *         other errors of kvt_put_keys (the new block was not stored and the old one is
 *         gone).
 */
int kvt_replace_key(kvt_ns *ns, uint64_t key, const void *block, size_t len);

/* ---------------------------------------------------------------- stats */

/** Counters since kvt_engine_open. Pass sizeof(kvt_stats): later versions append fields. */
typedef struct kvt_stats {
    uint64_t lookups;          /**< kvt_match calls with a lease */
    uint64_t lookup_tokens;    /**< tokens asked for by those calls (whole blocks; key
                                    namespaces: blocks * block_tokens) */
    uint64_t hit_tokens;       /**< tokens matched by those calls */
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
    /* ---- appended in 0.2 (persistent tiers); arrays are indexed by kvt_tier */
    uint64_t tier_capacity[4];      /**< bytes (nvme: whole slots; disk: segment budget) */
    uint64_t tier_used[4];          /**< bytes (nvme: used slots; disk: live records, padded) */
    uint64_t tier_blocks[4];        /**< blocks with a copy in the tier */
    uint64_t tier_reads[4];         /**< blocks read from the tier (nvme/disk) */
    uint64_t tier_writes[4];        /**< blocks written to the tier (nvme/disk) */
    uint64_t tier_bytes_read[4];    /**< bytes read from the tier */
    uint64_t tier_bytes_written[4]; /**< bytes written to the tier (disk: padded records) */
    uint64_t demotions;          /**< copies moved down: DRAM copy freed, nvme -> disk moves */
    uint64_t promotions;         /**< blocks copied up into DRAM by reads and prefetches */
    uint64_t checksum_failures;  /**< blocks that failed verification on read */
    uint64_t io_errors;          /**< failed tier reads and writes */
    uint64_t blocks_dropped_bad; /**< blocks dropped from the index after a failed read */
    uint64_t persisted_blocks;   /**< write-through completions (durable and catalogued) */
    uint64_t wt_failures;        /**< blocks the write-through gave up on (DRAM only) */
    uint64_t unpersisted_blocks; /**< blocks queued or in flight for write-through now */
    uint64_t flushes;            /**< kvt_flush calls */
    uint64_t restored_blocks;    /**< blocks rebuilt from the catalog at open */
    uint64_t restore_dropped;    /**< catalog records dropped at open (orphans, bad, expired) */
    uint32_t persistent;         /**< 1 with a data directory */
    uint32_t simulate;           /**< 1 in data-free simulation */
    char io_backend[16];         /**< "io_uring", "pool", or "" without persistent tiers */
    /* ---- appended with the HBM tier (kvt_options_set_hbm_bytes); also tier_*[KVT_TIER_HBM] */
    uint32_t hbm_state;          /**< 0 not asked for, 1 on, 2 asked for but no usable GPU */
    uint32_t hbm_pad_;
    uint64_t hbm_capacity;       /**< pool bytes (0 until the pool exists: kvt_hbm_pool) */
    uint64_t hbm_used;           /**< pool bytes holding block copies */
    uint64_t hbm_pinned_blocks;  /**< HBM copies pinned by leases now */
    uint64_t hbm_loads;          /**< blocks copied into HBM by kvt_lease_load_hbm */
    uint64_t hbm_load_bytes;     /**< bytes copied into HBM */
    uint64_t hbm_hits;           /**< blocks kvt_lease_load_hbm found already in HBM */
    uint64_t hbm_evictions;      /**< HBM copies dropped to make room (never pinned ones) */
    /* ---- appended with the remote tier (kvt_options_set_remote, issue 9) */
    uint32_t remote_state;         /**< 0 none, 1 connected, 2 configured, not connected yet */
    uint32_t remote_masters_up;    /**< cluster masters connected now */
    uint64_t remote_hits;          /**< blocks matched through the remote tier (now in DRAM) */
    uint64_t remote_misses;        /**< remote lookups that ended a match (first miss) */
    uint64_t remote_errors;        /**< of them not plain absence: master down, timeout,
                                        cluster refusal, corrupt/stale, not connected */
    uint64_t remote_bytes_read;    /**< bytes fetched from the remote tier */
    uint64_t remote_puts;          /**< blocks written through to the remote tier */
    uint64_t remote_put_failures;  /**< blocks the cluster refused or could not take */
    uint64_t remote_put_dropped;   /**< blocks not written: queue full, not connected, OOM */
    uint64_t remote_bytes_written; /**< bytes written through */
    uint64_t remote_publishes;     /**< holder-set publishes and heartbeats that succeeded */
    double remote_read_bw;         /**< measured get bandwidth, bytes/s (0: no sample) */
    double remote_latency_s;       /**< measured PING round trip (0: no sample) */
} kvt_stats;

/**
 * Read the engine's counters.
 * @param[in]  eng       the engine.
 * @param[out] out       filled with min(size, sizeof(kvt_stats)) bytes.
 * @param[in]  size      sizeof(kvt_stats) as the caller compiled it.
 * @return 0; -EINVAL.
 */
int kvt_engine_stats(kvt_engine *eng, kvt_stats *out, size_t size);

/* ---------------------------------------------------------------- the remote tier (issue 9)
 *
 * Engines on many machines share one pool of blocks in a Redis/Valkey cluster (docs/remote.md,
 * tiers/remote.h). With kvt_options_set_remote():
 *  - every block kvt_put() stores is also written, in the background, to the cluster under
 *    a cluster-wide namespace id (XXH3 of namespace name, tenant, layout and flags: the same
 *    on every machine) with the whole token prefix through it as its identity (compared
 *    exactly on every get: a key collision is never data);
 *  - kvt_match()/kvt_match_keys() with a lease, when the local match ends before the request
 *    does, fetch the next consecutive blocks from the cluster (stopping at the first miss),
 *    store them in DRAM like a put (visible only once complete) and include them in the
 *    lease: they are DRAM blocks from then on (kvt_lease_block_tier says KVT_TIER_DRAM,
 *    kvt_stats.remote_hits counts them; they also count in puts/blocks_stored);
 *  - every remote failure (a dead master, a timeout, the cluster unreachable, even at open)
 *    is a miss or a dropped write-through counted in kvt_stats.remote_*, never an error of
 *    kvt_match/kvt_put;
 *  - the engine publishes the keys of the blocks it holds (stored or fetched) under its
 *    engine id, with a 60 s TTL renewed by a heartbeat every 10 s, so kvt_remote_holders()
 *    can route a request to the engine holding its longest prefix. Evicted blocks are not
 *    unpublished (a holder answer is a hint: the engine chosen still matches exactly).
 * Without it nothing of this exists. Not with simulation (ignored).
 */

#define KVT_REMOTE_DURABLE 0x1u /**< a write-through counts only once a replica has it (WAIT 1) */

/**
 * Share blocks through a Redis/Valkey cluster.
 * @param[in] seeds  "host:port[,host:port...]": any few cluster nodes (copied); NULL removes
 *                   the setting.
 * @param[in] salt   [A-Za-z0-9_.-]{1,64}: one per deployment; engines with different salts
 *                   never see each other's blocks.
 * @param[in] flags  0 or KVT_REMOTE_DURABLE.
 * kvt_engine_open then connects (if no seed answers it opens anyway and keeps retrying every
 * second; a malformed seed list, a node that is not a cluster node or failed AUTH make the
 * open fail with -EINVAL / -EPROTO).
 * @return 0; -EINVAL (NULL opts, malformed salt, empty seeds, unknown flag); -ENOMEM.
 */
int kvt_options_set_remote(kvt_options *opts, const char *seeds, const char *salt,
                           unsigned flags);

/**
 * The id this engine publishes its holdings under: [A-Za-z0-9_.:-]{1,63}, unique per engine
 * of a deployment (e.g. the server's host:port). NULL or unset: "<hostname>:<pid>".
 * @return 0; -EINVAL; -ENOMEM.
 */
int kvt_options_set_engine_id(kvt_options *opts, const char *id);

/** The engine's id as published (buf of cap bytes). @return 0; -EINVAL; -ENODEV (no remote
 *  tier); -ERANGE (cap too small: 64 always suffices). */
int kvt_engine_id(kvt_engine *eng, char *buf, size_t cap);

/**
 * Wait until every write-through and publish queued before the call has been done (stored,
 * refused or dropped). For tests and orderly hand-overs; puts never need it.
 * @return 0; -EINVAL; -ENODEV (no remote tier).
 */
int kvt_remote_sync(kvt_engine *eng);

/** An engine holding a prefix of a request (kvt_remote_holders). */
typedef struct kvt_remote_holder {
    char engine[64];  /**< its engine id */
    uint32_t blocks;  /**< leading blocks of the request it holds */
} kvt_remote_holder;

/**
 * Which live engines hold the longest prefixes of a token sequence in their local tiers:
 * out[0..cap) sorted by blocks held, longest first (ties by engine id); *n_out says how many
 * engines hold at least the first block (may exceed cap). A routing hint from published
 * holder sets, never a hit.
 * @return 0; -EINVAL; KVT_EMODE; -ENODEV (no remote tier); -ENOTCONN (not connected, or
 *         the holder sets' masters are down); -EAGAIN, -EPROTO (the cluster refused);
 *         -ENOMEM.
 */
int kvt_remote_holders(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens,
                       kvt_remote_holder *out, size_t cap, size_t *n_out);
/** kvt_remote_holders for a KVT_NS_KEYS namespace. */
int kvt_remote_holders_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys,
                            kvt_remote_holder *out, size_t cap, size_t *n_out);

/* ---------------------------------------------------------------- placement policies, TTLs, plans
 * (issue 4; the cost model is DESIGN.md §3, docs/cost-model.md has the numbers) */

/** The model whose KV blocks are cached and the GPU that would recompute them: what a block
 *  costs to recompute (FLOPs = 2 × active_params × tokens + 4 × layers × hidden × Σ positions;
 *  prefill_tok_s > 0 overrides the FLOP model) and what a second of GPU time costs. */
typedef struct kvt_model_desc {
    double active_params;    /**< parameters touched per token (MoE: the active ones) */
    uint32_t layers;         /**< transformer layers */
    uint32_t hidden;         /**< attention width: n_heads × head_dim */
    double prefill_tok_s;    /**< measured prefill tokens/s; 0: the FLOP model */
    double gpu_flops;        /**< effective FLOP/s (peak × MFU); 0: H100 989e12 × 0.5 */
    double gpu_usd_per_hour; /**< GPU price, $/h; 0: 3.00 */
} kvt_model_desc;

/** [out] Llama-3-8B (8.03e9 params, 32 layers, hidden 4096) on the default H100. */
void kvt_model_desc_llama3_8b(kvt_model_desc *m);
/** [out] Llama-3-70B (70.6e9 params, 80 layers, hidden 8192) on the default H100. */
void kvt_model_desc_llama3_70b(kvt_model_desc *m);

/**
 * GPU seconds to recompute `tokens` tokens at prompt positions pos .. pos+tokens-1.
 * @return seconds (> 0), or -1.0 if m is NULL or has neither params nor prefill_tok_s.
 */
double kvt_recompute_seconds(const kvt_model_desc *m, uint64_t pos, uint32_t tokens);

/**
 * Choose the engine's placement policy (default "lru"):
 *  - "lru":   each tenant's least recently used blocks are evicted first (per tier).
 *  - "lfu":   among the 8 stalest evictable candidates of the tier, the one with the lowest
 *             access count, aged with a 600 s half-life, goes first.
 *  - "drain": among the same candidates, the one whose place in the tier saves the least
 *             money per byte-second under the cost model goes first; and at each put the
 *             cost model decides per block: a block whose cheapest option for its expected
 *             reuse interval (TTL hint, else 300 s) is recomputation is not written through
 *             (it stays in DRAM only, the first to go), and a block cheapest on nvme/disk
 *             (e.g. a "5m" hint on a large model) has its DRAM copy freed as soon as it is
 *             persisted. Without persistent tiers drain only changes the victim order.
 * Every policy evicts only the tenant's own unpinned blocks (invariants 4 and 5).
 * @param[in] policy  "lru", "lfu" or "drain".
 * @return 0; -EINVAL (NULL, unknown name).
 */
int kvt_options_set_policy(kvt_options *opts, const char *policy);

/**
 * How drain prices capacity (docs/cost-model.md §8). 0 (default): provisioned capacity, paid
 * whether used or not: a block is written through whenever loading it would save GPU time and
 * the tier has room (or it is worth more than the block it displaces), and a full tier
 * evicts the lowest value density. 1: capacity priced per byte-second held (elastic or shared
 * capacity): the cheapest option for the expected reuse interval, hold cost included.
 * @return 0; -EINVAL (NULL, priced not 0 or 1).
 */
int kvt_options_set_capacity_priced(kvt_options *opts, int priced);

/** The model the policies cost recomputation with (copied; default Llama-3-8B).
 *  @return 0; -EINVAL (NULL, no params and no prefill_tok_s). */
int kvt_options_set_model(kvt_options *opts, const kvt_model_desc *model);

/**
 * A tier's bandwidths as the cost model and kvt_lease_plan() see them (measured ones, e.g.
 * from `kvtier probe --write`), bytes/s; 0 keeps the default (the tier's bandwidth cap if
 * kvt_options_set_tier gave one, else the documented figures: DRAM 55.2 GB/s over PCIe,
 * nvme 3.0 GB/s, disk 0.2 GB/s). Does not limit any I/O.
 * @return 0; -EINVAL (tier not DRAM/NVME/DISK, negative or NaN).
 */
int kvt_options_set_tier_perf(kvt_options *opts, kvt_tier tier, double read_bw, double write_bw);

/**
 * Parse a TTL: <digits><unit> groups, units d, h, m, s in that order ("5m", "1h", "2h30m").
 * @param[out] ttl_s seconds (> 0).
 * @return 0; -EINVAL (malformed, zero); -ERANGE (a group of more than 9 digits).
 */
int kvt_ttl_parse(const char *s, double *ttl_s);

/** Options of kvt_put_ex(). Zero-initialise. */
typedef struct kvt_put_opts {
    const char *ttl; /**< TTL hint as kvt_ttl_parse() reads it ("5m"), or NULL */
    double ttl_s;    /**< TTL hint in seconds, used when ttl is NULL; 0: none */
} kvt_put_opts;

/**
 * kvt_put with a TTL hint for the blocks this call newly stores. A block's deadline is its
 * last use (match with a lease, or put through it) + TTL: after it the block is a miss for
 * every match and is dropped lazily, with the blocks cached after it, when a match reaches
 * it (unless a lease pins it). The deadline is recorded in the catalog (a warm restart drops
 * expired blocks). The drain policy also uses the TTL as the block's expected reuse interval.
 * With o == NULL it is kvt_put().
 * @return as kvt_put(); -EINVAL also for a malformed o->ttl or a negative/NaN o->ttl_s.
 */
int kvt_put_ex(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens, const void *const *blocks,
               const kvt_put_opts *o, size_t *stored);
/** kvt_put_ex for a KVT_NS_KEYS namespace. */
int kvt_put_keys_ex(kvt_ns *ns, const uint64_t *keys, size_t n_keys, const void *const *blocks,
                    const kvt_put_opts *o, size_t *stored);

/** A tier as the engine's cost model sees it. */
typedef struct kvt_tier_info {
    kvt_tier tier;
    const char *name;      /**< "hbm", "dram", "nvme", "disk" (static) */
    uint64_t capacity;     /**< bytes (configured; HBM: the modeled GPU's 80 GiB) */
    double read_bw;        /**< bytes/s toward the GPU, before the link */
    double write_bw;       /**< bytes/s */
    double link_bw;        /**< bytes/s of the host->GPU link a load crosses (0: none) */
    double latency_s;      /**< per request */
    double usd_per_byte_s; /**< hold price */
    double drain_s;        /**< capacity / min(read_bw, link_bw) */
} kvt_tier_info;

/**
 * The engine's tiers as the cost model sees them, fastest first. HBM is always included with
 * the model's defaults (an 80 GB H100) for the load-versus-recompute arithmetic, whether or
 * not an HBM pool is configured; kvt_stats reports the pool itself.
 * @param[out] out    room for n entries (may be NULL with n == 0).
 * @param[out] count  the number of tiers (may exceed n: only n are written).
 * @return 0; -EINVAL.
 */
int kvt_engine_tiers(kvt_engine *eng, kvt_tier_info *out, size_t n, size_t *count);

/** One block of a load plan. */
typedef struct kvt_plan_block {
    kvt_tier tier; /**< the fastest tier holding it when planned */
    int load;      /**< 1: load it, 0: recompute it (loading would not be faster) */
    double time_s; /**< its transfer time (load) or recompute time */
} kvt_plan_block;

/** A load plan (kvt_lease_plan). */
typedef struct kvt_plan {
    size_t n_blocks, n_load, n_recompute;
    double load_s;          /**< latency + Σ loaded bytes / bandwidth */
    double compute_s;       /**< suffix + Σ recomputed blocks */
    double total_s;         /**< max(load_s, compute_s): loads overlap compute layer-wise */
    double all_recompute_s; /**< with no cache at all: suffix + every block recomputed */
} kvt_plan;

/**
 * Plan a lease: for each block, load it from its fastest tier or recompute it, minimising
 * max(load, compute) with the engine's tier bandwidths (kvt_engine_tiers) and the model's
 * recompute cost; total_s <= all_recompute_s always: a caller never waits on a load slower
 * than recomputation. The plan is advice; kvt_read() still reads whatever it is asked.
 * @param[in]  lease          a lease (blocks 0 .. kvt_lease_blocks()-1).
 * @param[in]  model          NULL: the engine's model (kvt_options_set_model).
 * @param[in]  suffix_tokens  tokens the request computes anyway after the lease's blocks
 *                            (its uncached tail); loads hide behind that compute.
 * @param[out] out            totals.
 * @param[out] blocks         NULL, or room for kvt_lease_blocks() entries.
 * @return 0; -EINVAL; -ENOMEM.
 */
int kvt_lease_plan(const kvt_lease *lease, const kvt_model_desc *model, size_t suffix_tokens,
                   kvt_plan *out, kvt_plan_block *blocks);

/**
 * Offline bounds over a trace of block ids (`kvtier analyze`): Belady's optimum (MIN with
 * bypass: no policy gets more hits in one tier of `capacity` equal blocks) and demand LRU.
 * @param[in]  ids       n block ids.
 * @param[out] hits      the hit count.
 * @return 0; -EINVAL; -E2BIG; -ENOMEM.
 */
int kvt_belady_hits(const uint64_t *ids, size_t n, size_t capacity, size_t *hits);
int kvt_lru_trace_hits(const uint64_t *ids, size_t n, size_t capacity, size_t *hits);

/* ---------------------------------------------------------------- the HBM tier (GPU)
 *
 * With kvt_options_set_hbm_bytes() the engine keeps a block pool in GPU memory, its fourth
 * tier: kvt_lease_load_hbm() makes a lease's blocks resident there and hands back their pool
 * indices (a block-table row), which the paged attention launchers below (or the caller's
 * own kernels) use directly. The pool has exactly the host block layout, block-major:
 *
 *   pool  [num_blocks][layers][2 (K, V)][block_tokens][kv_heads][head_dim]   dtype, device
 *
 *   K(b, l, t, h, :) = pool + ((b*layers + l)*2 + 0)*bt*H*D + (t*H + h)*D   (elements)
 *   V(b, l, t, h, :) = K(b, l, t, h, :) + bt*H*D
 *
 * so a DRAM block reaches HBM in one contiguous copy (straight from the CUDA-registered
 * arena: no staging) and a kernel for layer l sees per block a [2][bt][H][D] page at a
 * stride of layers*2*bt*H*D elements (FlashInfer's paged layout with a page stride).
 *
 * The pool takes the layout of the first namespace that calls kvt_hbm_pool() or
 * kvt_lease_load_hbm() (as the DRAM slot size follows the first namespace); namespaces of
 * another layout get KVT_EBADLAYOUT from both. HBM copies are pinned while a lease that
 * loaded them lives (kvt_release unpins); unpinned copies stay cached for later leases and
 * are evicted least recently used when the pool is full, only the loading tenant's own
 * (never pinned ones: invariant 4; never another tenant's: invariant 5). A block dropped
 * from the index (eviction, kvt_remove) loses its HBM copy with it.
 *
 * Streams: every GPU call takes a cudaStream_t as void * (NULL: the legacy default stream)
 * and is asynchronous on it. The caller must not kvt_release() the lease before the stream
 * has passed the load's copies and every kernel that uses its block table (e.g.
 * cudaStreamSynchronize or an event): the release makes the blocks evictable and their DRAM
 * slots reusable. Another lease's load on another stream that finds a block resident makes
 * its stream wait for the copy that brought it in (an event), so kernels never see a block
 * before its bytes.
 *
 * Without a CUDA build or without a usable GPU every function in this section returns
 * -ENODEV (kvt_options_set_hbm_bytes excepted: see there).
 */

/**
 * Give the engine an HBM tier of `bytes` of GPU memory (whole blocks of the first layout;
 * the pool is allocated on the device current at the first kvt_hbm_pool/kvt_lease_load_hbm
 * call). 0 (the default): no HBM tier.
 * @param[in] required  0: without a usable GPU (or in simulation) kvt_engine_open ignores
 *                      the setting and kvt_stats.hbm_state reports 2; 1: kvt_engine_open
 *                      fails with -ENODEV instead.
 * @return 0; -EINVAL (opts NULL).
 */
int kvt_options_set_hbm_bytes(kvt_options *opts, uint64_t bytes, int required);

/** The HBM pool as kernels see it. */
typedef struct kvt_hbm_pool_info {
    void *base;           /**< device pointer to block 0 (layout above); 256-byte aligned */
    uint64_t block_bytes; /**< bytes of one block slab (kvt_layout_block_bytes) */
    uint32_t num_blocks;  /**< pool indices are 0 .. num_blocks - 1 */
    int device;           /**< CUDA device ordinal */
    kvt_layout layout;    /**< the pool's block layout */
} kvt_hbm_pool_info;

/**
 * Describe the HBM pool, creating it now (with ns's layout) if this is the first call.
 * @return 0; -EINVAL; -ENODEV (no HBM tier: not asked for, no GPU, or no CUDA build);
 *         KVT_EBADLAYOUT (the pool has another layout); -ENOMEM (GPU memory).
 */
int kvt_hbm_pool(kvt_ns *ns, kvt_hbm_pool_info *out);

/**
 * Make blocks [first, first + n) of a lease resident in HBM and return their pool indices.
 * For each block: an HBM copy already there is reused (and its stream dependency honoured);
 * else the block is copied from its DRAM slot (a batched copy from the registered arena at
 * PCIe speed; through a pageable copy when the arena is not registered); a block only on
 * nvme/disk is first read and verified by the same path as kvt_read() (promoted into DRAM
 * when there is room) and then copied. New copies evict the tenant's least recently used
 * unpinned HBM copies when the pool is full. Every returned block is pinned in HBM until
 * kvt_release(lease). Loads are serialised engine-wide (they share one PCIe link).
 * @param[in]  lease        a lease from kvt_match().
 * @param[out] block_table  [n] int32 pool indices, block i of the range at block_table[i]
 *                          (host memory; copy it to the device for kernels).
 * @param[in]  cuda_stream  the stream the copies run on.
 * @return 0; -EINVAL; -ERANGE (first + n beyond the lease); -ENODEV; KVT_EBADLAYOUT;
 *         -ENOSPC (the pool is full of pinned or other tenants' blocks; nothing of this call
 *         stays pinned); KVT_ECORRUPT / -EIO as kvt_read(); -ENOMEM.
 */
int kvt_lease_load_hbm(kvt_lease *lease, size_t first, size_t n, int32_t *block_table,
                       void *cuda_stream);

/**
 * Copy one layer of blocks [first, first + n) of a lease into per-layer K and V device
 * buffers laid out heads-outer (Hugging Face DynamicCache: [1][kv_heads][T][head_dim]),
 * permuting on the GPU in the same pass:
 *
 *   k_dst[h*head_stride + (i*bt + t)*head_dim + d] = K of block first+i, token t, head h
 *   v_dst[...]                                     = V of the same
 *
 * Each block is read where it is fastest: its HBM copy (if this lease loaded it), else its
 * DRAM slot straight from the registered arena (the SMs read host memory over PCIe: no
 * staging, no host copy), else it is loaded into HBM first (kvt_lease_load_hbm) or, without
 * an HBM tier, promoted into DRAM. One call per layer lets a caller start layer l's compute
 * while layer l+1 is still in flight (record an event after each call).
 * @param[in] layer        < layout.layers.
 * @param[in] head_stride  elements between heads in k_dst/v_dst, >= n*bt*head_dim.
 * @param[in] ctas         CTAs of the copy kernel (0: two per SM; fewer leave room for
 *                         concurrent kernels).
 * @return 0; -EINVAL (NULL, misaligned buffers, head_dim*dtype not a multiple of 16 bytes,
 *         the arena not device-addressable); -ERANGE; -ENODEV; -ENOSPC; as kvt_read().
 */
int kvt_lease_gather_layer(kvt_lease *lease, size_t first, size_t n, uint32_t layer,
                           void *k_dst, void *v_dst, uint64_t head_stride, uint32_t ctas,
                           void *cuda_stream);

/**
 * kvt_lease_gather_layer's copy with the GPU's copy engines instead of a kernel, into K and V
 * device buffers laid out tokens outer, each block's page as it is stored:
 *
 *   k_dst[((i*bt + t)*kv_heads + h)*head_dim + d] = K of block first+i, token t, head h
 *   v_dst[...]                                    = V of the same
 *
 * so [T][kv_heads][head_dim], n*bt tokens; its transpose(1, 2) as a [1][T][H][D] tensor is
 * the Hugging Face [1][kv_heads][T][head_dim] view (a DynamicCache's next update makes it
 * contiguous). No SM runs the copy: concurrent kernels keep the whole GPU, which a kernel
 * reading host memory over PCIe does not leave them (its CTAs hold their SMs for the whole
 * copy). One cudaMemcpy2DAsync per K/V and per run of blocks evenly spaced in memory (the
 * blocks of one put usually are). Blocks are read from the same places as
 * kvt_lease_gather_layer reads them.
 * @return as kvt_lease_gather_layer (no alignment condition).
 */
int kvt_lease_copy_layer(kvt_lease *lease, size_t first, size_t n, uint32_t layer,
                         void *k_dst, void *v_dst, void *cuda_stream);

/**
 * One paged attention call over one layer of the HBM pool (or any device buffer in the
 * pool layout). Shapes, in elements of the layout's dtype unless said (device memory):
 *
 *   q          [total_q][num_qo_heads][head_dim]             16-byte aligned
 *   out        [total_q][num_qo_heads][head_dim]             16-byte aligned
 *   pool       kvt_hbm_pool_info.base
 *   qo_indptr  [num_seqs + 1] int32: sequence s's queries are rows qo_indptr[s] ..
 *              qo_indptr[s+1]-1 of q; NULL = decode (one query per sequence, row s)
 *   kv_indptr  [num_seqs + 1] int32; kv_indices [kv_indptr[num_seqs]] int32 pool indices
 *              (the tables kvt_lease_load_hbm returned, concatenated): entry j of row s
 *              holds the sequence's tokens [j*bt, (j+1)*bt)
 *   kv_lens    [num_seqs] int32: tokens in the cache for sequence s INCLUDING its q_len new
 *              tokens, whose K/V the caller has written to the pool first
 *
 * Query i of sequence s (q_len = qo_indptr[s+1] - qo_indptr[s]) is at position
 * kv_lens[s] - q_len + i and attends causally to positions 0 .. that position (decode: the
 * whole cache). GQA: query head hq uses KV head hq / (num_qo_heads / kv_heads).
 * out = softmax(q K^T * sm_scale) V, fp32 accumulation. dtype BF16 or FP16; head_dim 64 or
 * 128; num_qo_heads / kv_heads in 1..8.
 */
typedef struct kvt_attn_args {
    kvt_layout layout;     /**< the pool's layout (kvt_hbm_pool_info.layout) */
    uint32_t layer;        /**< < layout.layers */
    uint32_t num_qo_heads;
    uint32_t num_seqs;
    uint32_t total_q;      /**< rows of q (num_seqs for decode) */
    uint32_t max_q_len;    /**< longest q_len (1 for decode) */
    uint32_t max_kv_len;   /**< longest kv_lens[s] (host-side scalar: sizes the split) */
    uint32_t num_blocks;   /**< blocks in the pool (checks) */
    float sm_scale;        /**< 0 = 1/sqrt(head_dim) */
    const void *pool;
    const void *q;
    void *out;
    const int32_t *qo_indptr;
    const int32_t *kv_indptr;
    const int32_t *kv_indices;
    const int32_t *kv_lens;
} kvt_attn_args;

/**
 * Device scratch kvt_attn_run can use for split-K (long caches, few sequences).
 * @return 0; -EINVAL (unsupported shapes); -ENODEV.
 */
int kvt_attn_workspace_bytes(const kvt_attn_args *args, size_t *bytes);

/**
 * Launch paged attention (decode when args->qo_indptr is NULL, else extend/prefill) on a
 * stream. With less workspace than kvt_attn_workspace_bytes() it runs without split-K
 * (correct, slower for long caches at small batch).
 * @param[in] workspace  device memory, or NULL with workspace_bytes 0.
 * @return 0; -EINVAL (unsupported or inconsistent shapes, misaligned q/out/pool); -ENODEV;
 *         -EIO (the launch failed).
 */
int kvt_attn_run(const kvt_attn_args *args, void *workspace, size_t workspace_bytes,
                 void *cuda_stream);

#ifdef __cplusplus
}
#endif
#endif /* KVTIER_H */
