/*
 * catalog.h — the persistent catalog of blocks held on nvme/disk (RocksDB), for warm restarts.
 *
 * The catalog records, for every copy of a block on a persistent tier, where its bytes are
 * and everything the engine needs to put the block back into its namespace's radix tree after
 * a restart: the block's own units, its parent's key and its depth. It also keeps the
 * namespace table, so a restart recreates the namespaces before their blocks.
 *
 * @section keys RocksDB keys (big-endian integers, so a namespace's blocks sort by key and
 * the entries of one block are adjacent)
 *
 *   'M' "format"                                    -> [format u32 LE] = CATALOG_FORMAT
 *   'N' [ns_id u32 BE]                              -> namespace value
 *   'B' [ns_id u32 BE] [block_key u64 BE] [0x00]    -> access value (last access, touch)
 *   'B' [ns_id u32 BE] [block_key u64 BE] [1+tier]  -> block record: one copy, tier 0..3
 *
 * A block has one record per tier holding a copy (nvme and disk copies are separate records
 * with their own location, length, checksum and compression) and at most one access entry,
 * which sorts just before its records. Touches are blind writes to the access entry: they
 * never read-modify-write a record, so a touch racing a delete cannot resurrect the record
 * (at worst it leaves an access entry with no record: an "orphan", ignored and counted by
 * catalog_scan, removed by CATALOG_SCAN_PURGE or the block's next CATALOG_TIER_ALL delete).
 *
 * @section record Block record value, version 1 (integers little-endian), 64 + 4*n bytes:
 *
 *   off  0 [version u8 = 1][compression u8][reserved u16 = 0]
 *   off  4 [length u32]         bytes stored on the tier (after compression)
 *   off  8 [location u64]       where on the tier: the tier's own unit (slot or byte offset)
 *   off 16 [checksum u64]       XXH3-64 of the stored bytes, verified by the tier on read
 *   off 24 [parent_key u64]     key of the block before it on its path; 0 at depth 0
 *   off 32 [last_access u64]    CLOCK_REALTIME ns when put
 *   off 40 [ttl_deadline u64]   CLOCK_REALTIME ns after which the block is dead; 0 = none
 *   off 48 [depth u32]          blocks before this one on its path (0 = first block)
 *   off 52 [n_units u32]        n: block_tokens token ids, or 2 in a key namespace
 *   off 56 [units u32 * n]      the block's own token ids (key namespace: the key, low word
 *                               first, as radix.h stores it)
 *   off 56+4n [check u64]       XXH3-64 of bytes [0, 56+4n), seeded with XXH3-64 of the key
 *
 * Access value (17 bytes): [version u8 = 1][last_access u64][check u64 as above over 9 bytes].
 * Namespace value (36 + nl + tl bytes):
 *   [version u8 = 1][reserved u8][nl u8][tl u8][flags u32][layers u32][kv_heads u32]
 *   [head_dim u32][dtype u32][block_tokens u32][name: nl bytes][tenant: tl bytes][check u64]
 *
 * Times are wall-clock (CLOCK_REALTIME) nanoseconds because they must survive a restart; the
 * engine converts to and from its monotonic clock.
 *
 * The check word makes a garbled value (bit rot, a value under the wrong key, a record
 * written by a future version) detectable; catalog_scan and catalog_ns_scan skip and count
 * such entries and never pass them on. RocksDB itself never yields a torn record: a
 * WriteBatch is applied atomically on WAL recovery (point-in-time recovery drops a torn tail).
 *
 * @section collisions Key collisions
 *
 * A block's identity is (parent_key, depth, units); (ns_id, block_key) must name one identity
 * so that children can find their parent by key on rebuild. catalog_put_batch() refuses,
 * with CATALOG_ECOLLISION and nothing written, a batch in which a record's key is already
 * used in its namespace (in the catalog or earlier in the batch) by a different identity.
 * Re-putting the same identity (another tier's copy, or a new location) is allowed. With 64-bit
 * XXH3 keys this needs ~2^32 blocks in one namespace to become likely; the engine keeps such
 * a block uncatalogued (it is lost at restart, which a cache may do).
 *
 * @section durability Durability
 *
 * Every write goes to RocksDB's WAL with write(2) before the call returns, so it survives the
 * process being killed; it survives power loss once fsync'd. Writes are not fsync'd by default:
 * catalog_flush() is the durability point (FlushWAL(sync): everything written before it, by
 * any thread, is on stable storage when it returns). CATALOG_SYNC on a put or delete batch
 * does the same flush for that call. catalog_ns_put/ns_delete and catalog_close always sync.
 * A record must only be put after the block's bytes are durable on its tier (invariant 3):
 * see "Engine order of operations" at the end of this header.
 *
 * @section threads Threads
 *
 * Every function may be called from any number of threads on one catalog, except
 * catalog_close (no call may be in flight or follow). Put batches and namespace changes are
 * serialised by a catalog mutex (the collision check reads then writes); the WAL fsync of a
 * CATALOG_SYNC put runs outside it. Deletes, touches, scans and flushes take no catalog lock.
 * A scan sees a consistent snapshot taken when it starts.
 *
 * @section errors Errors
 *
 * 0 ok; -EINVAL (bad argument); -ENOMEM (our allocations; RocksDB's own allocations are not
 * hooked); -ENOENT; -EEXIST; -EBUSY (the directory is open, by this or another process);
 * -ENOSPC (RocksDB reported a full device); the CATALOG_E* codes below. Whenever RocksDB
 * fails, its message is kept: catalog_last_error() returns the latest, and the log hook of
 * catalog_opts (if set) receives every one. Nothing is printed.
 */
#ifndef KVT_CATALOG_H
#define KVT_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"

/* The catalog's own status codes. They sit outside kvtier.h's public range until the engine
 * maps them (or kvtier.h reserves them); catalog_strerror() describes them. */
#define CATALOG_EROCKS (-30940)     /* RocksDB failed; see catalog_last_error() */
#define CATALOG_ECORRUPT (-30941)   /* RocksDB reported corruption (open, read or write) */
#define CATALOG_ECOLLISION (-30942) /* a block key is taken by a different block */
#define CATALOG_EFORMAT (-30943)    /* the directory holds a catalog of an unknown format */

#define CATALOG_FORMAT 1u
#define CATALOG_RECORD_VERSION 1u

enum { CATALOG_TIER_HBM = 0, CATALOG_TIER_DRAM = 1, CATALOG_TIER_NVME = 2, CATALOG_TIER_DISK = 3,
       CATALOG_TIERS = 4 };     /* numbered as radix.h's RADIX_TIER_* */
#define CATALOG_TIER_ALL 0xffu  /* catalog_del: every copy and the access entry */

enum { CATALOG_COMP_NONE = 0, CATALOG_COMP_LZ4 = 1, CATALOG_COMPS = 2 };

#define CATALOG_MAX_UNITS 65536u /* radix.h's largest block, in uint32 units */

/* flags for catalog_put_batch / catalog_delete_batch */
#define CATALOG_SYNC 0x1u /* fsync the WAL before returning (as catalog_flush) */
/* flags for catalog_scan */
#define CATALOG_SCAN_PURGE 0x1u /* delete the garbled entries and orphans it finds (no sync) */

typedef struct catalog catalog;

/* One copy of one block: a record. 72 bytes + the units it points at. */
typedef struct catalog_record {
    uint64_t key;          /* chained block key (or the external key of a key namespace) */
    uint64_t parent_key;   /* 0 when depth == 0 */
    uint64_t location;     /* on the tier, in the tier's unit */
    uint64_t checksum;     /* XXH3-64 of the stored bytes */
    uint64_t last_access;  /* CLOCK_REALTIME ns; scan: max(record's, latest touch) */
    uint64_t ttl_deadline; /* CLOCK_REALTIME ns, 0 = no TTL */
    uint32_t ns_id;
    uint32_t length;       /* stored bytes */
    uint32_t depth;        /* 0 for the first block of a sequence */
    uint32_t n_units;      /* 1..CATALOG_MAX_UNITS */
    uint8_t tier;          /* CATALOG_TIER_*, < CATALOG_TIERS */
    uint8_t compression;   /* CATALOG_COMP_* */
    const uint32_t *units; /* [n_units]. put: read during the call; scan: valid only inside
                            * the callback (copy what you keep) */
} catalog_record;

/* catalog_delete_batch item */
typedef struct catalog_del {
    uint32_t ns_id;
    uint32_t tier; /* the copy to delete, or CATALOG_TIER_ALL */
    uint64_t key;
} catalog_del;

/* catalog_touch_batch item */
typedef struct catalog_touch {
    uint32_t ns_id;
    uint64_t key;
    uint64_t last_access; /* CLOCK_REALTIME ns */
} catalog_touch;

/* A namespace. name and tenant are NUL-terminated, 1..KVT_NAME_MAX bytes. */
typedef struct catalog_ns {
    uint32_t id;       /* the engine's choice; never reused while records of it exist */
    uint32_t flags;    /* kvt_ns_open flags (KVT_NS_KEYS) */
    kvt_layout layout; /* fields stored as given; the engine validates layouts */
    char name[KVT_NAME_MAX + 1];
    char tenant[KVT_NAME_MAX + 1];
} catalog_ns;

/* What a scan saw besides the records it passed on. */
typedef struct catalog_scan_stats {
    uint64_t records; /* valid records passed to the callback */
    uint64_t garbled; /* entries skipped: bad key shape, short value, unknown version, bad
                       * check word, out-of-range field */
    uint64_t orphans; /* access entries with no record */
    uint64_t purged;  /* entries deleted by CATALOG_SCAN_PURGE */
} catalog_scan_stats;

/* Receives RocksDB's message of every failure (and why an open failed). Called on the
 * failing thread, possibly several threads at once; msg is valid during the call only. */
typedef void (*catalog_log_fn)(void *ctx, int status, const char *msg);

typedef struct catalog_opts {
    catalog_log_fn log; /* may be NULL */
    void *log_ctx;
    int no_create;      /* 1: fail with -ENOENT when dir holds no catalog */
} catalog_opts;

/*
 * Open (create if absent) the catalog in directory dir (created if absent, parent must
 * exist). Replays RocksDB's WAL, so everything written before a crash of the process, and
 * everything flushed before a crash of the machine, is there.
 * @param[in]  dir   directory path.
 * @param[in]  opts  NULL for defaults; not retained (log and log_ctx are copied).
 * @param[out] out   the catalog; close with catalog_close().
 * @return 0; -EINVAL; -ENOMEM; -ENOENT (no_create and none there); -EBUSY (open elsewhere);
 *         CATALOG_EFORMAT; CATALOG_ECORRUPT; CATALOG_EROCKS; -ENOSPC.
 */
int catalog_open(const char *dir, const catalog_opts *opts, catalog **out);

/* Sync the WAL, then close. NULL is a no-op. Returns the sync's status; the catalog is
 * closed and freed either way. */
int catalog_close(catalog *cat);

/*
 * Record a batch of block copies, atomically (all or none, also across a crash).
 * The engine calls it only after each record's bytes are durable on its tier.
 * @param[in]  recs   n records (see catalog_record: tier < CATALOG_TIERS, compression known,
 *                    1 <= n_units <= CATALOG_MAX_UNITS, parent_key == 0 when depth == 0).
 * @param[in]  flags  0 or CATALOG_SYNC.
 * @param[out] bad    may be NULL; on -EINVAL, -ENOENT or CATALOG_ECOLLISION the index of the
 *                    first offending record.
 * @return 0; -EINVAL; -ENOENT (a record's namespace is not in the table); CATALOG_ECOLLISION
 *         (nothing written; see Key collisions); -ENOMEM; RocksDB failures (see Errors).
 *         With CATALOG_SYNC, a failure of the sync leaves the batch written but not durable.
 */
int catalog_put_batch(catalog *cat, const catalog_record *recs, size_t n, unsigned flags,
                      size_t *bad);

/*
 * Deletes and records in one atomic batch (all or none, also across a crash): dels[0..n_dels)
 * as catalog_delete_batch, then recs[0..n) as catalog_put_batch (a record whose key a delete
 * of the same batch names survives). The write-through's round: the quarantine's deletes and
 * the round's records in one write and, with CATALOG_SYNC, one WAL sync.
 * @param[out] bad  as catalog_put_batch (an index into recs).
 * @return as catalog_put_batch; -EINVAL also for a delete's tier as catalog_delete_batch.
 *         Nothing is written when the records fail their checks.
 */
int catalog_write_batch(catalog *cat, const catalog_del *dels, size_t n_dels,
                        const catalog_record *recs, size_t n, unsigned flags, size_t *bad);

/* Delete a batch of copies (tier) or whole blocks (CATALOG_TIER_ALL: every copy and the
 * access entry), atomically. Deleting what is absent is not an error.
 * @return 0; -EINVAL (tier neither < CATALOG_TIERS nor CATALOG_TIER_ALL); -ENOMEM; RocksDB. */
int catalog_delete_batch(catalog *cat, const catalog_del *dels, size_t n, unsigned flags);

/* Record last-access times, atomically, never synced (durable at the next flush or sync
 * batch). A touch of a block with no record leaves an orphan (see above).
 * @return 0; -EINVAL; -ENOMEM; RocksDB. */
int catalog_touch_batch(catalog *cat, const catalog_touch *touches, size_t n);

/* The durability point: returns when everything written before it (any thread) is on
 * stable storage. @return 0; RocksDB failures. */
int catalog_flush(catalog *cat);

/*
 * Pass every valid record of namespace ns_id to fn, ordered by (block_key, tier): the copies
 * of one block are adjacent. Parent-before-child order is impossible with hashed keys; the
 * engine collects the records, sorts them by depth and links each to its parent by
 * parent_key (and verifies, for a token namespace, key == XXH3(units, seed parent_key)).
 * Garbled entries and orphans are skipped and counted (removed with CATALOG_SCAN_PURGE).
 * @param[in]  fn     returns 0 to go on; anything else stops the scan, which returns it.
 *                    It may call other catalog functions (the scan holds no catalog lock);
 *                    what they write is not seen by this scan.
 * @param[out] stats  may be NULL.
 * @return 0; fn's nonzero value; -EINVAL; -ENOMEM; RocksDB failures.
 */
typedef int (*catalog_scan_fn)(void *ctx, const catalog_record *rec);
int catalog_scan(catalog *cat, uint32_t ns_id, unsigned flags, catalog_scan_fn fn, void *ctx,
                 catalog_scan_stats *stats);

/*
 * Add a namespace to the table (synced). Re-adding an identical entry is a no-op.
 * @return 0; -EINVAL; KVT_ENAME (name or tenant empty or too long); -EEXIST (the id holds
 *         another namespace, or (name, tenant) has another id); -ENOMEM; RocksDB.
 */
int catalog_ns_put(catalog *cat, const catalog_ns *ns);

/* Delete a namespace and all its records (synced). Absent is not an error. */
int catalog_ns_delete(catalog *cat, uint32_t ns_id);

/* Pass every valid namespace to fn in id order; garbled entries are counted in *garbled (may
 * be NULL). fn as for catalog_scan. @return 0; fn's value; -EINVAL; RocksDB. */
typedef int (*catalog_ns_fn)(void *ctx, const catalog_ns *ns);
int catalog_ns_scan(catalog *cat, catalog_ns_fn fn, void *ctx, uint64_t *garbled);

/* Copy the latest RocksDB error message (any thread) into buf (NUL-terminated, truncated to
 * size). "" if none. */
void catalog_last_error(catalog *cat, char *buf, size_t size);

/* Describe a catalog status (its own codes; other values get strerror-like text or
 * kvt_strerror's domain: "not a catalog status"). Never NULL. */
const char *catalog_strerror(int status);

/*
 * Engine order of operations
 *
 * Store a block on nvme/disk:  write bytes -> fdatasync (or O_DIRECT + fsync/RWF_DSYNC) ->
 *     catalog_put_batch (CATALOG_SYNC, or plain and a catalog_flush before acknowledging
 *     durability to the user). Never put before the bytes are durable: a record must never
 *     point at bytes that may not be there after a power loss.
 * Drop or move a copy:  catalog_delete_batch for the copy -> only after that delete is
 *     durable (CATALOG_SYNC, or the next catalog_flush) return the slot to the free list;
 *     until then the slot is quarantined. Otherwise a power loss could leave the old record
 *     pointing at a new block's bytes (the checksum would catch it, invariant 2, but two
 *     records would claim one slot). Moving nvme -> disk: put the disk copy (after its bytes
 *     are durable), then delete the nvme copy.
 * Hit:  catalog_touch_batch now and then (batched; losing touches only ages blocks).
 * kvt flush (user durability point):  finish the data writes in flight, fdatasync them, put
 *     their records, then catalog_flush().
 * Restart:  catalog_ns_scan -> recreate namespaces; catalog_scan each -> collect, drop expired
 *     (ttl_deadline) and records whose units or key chain do not verify, sort by depth, insert
 *     each under its parent (a record whose parent is missing is dropped and deleted), mark
 *     its slots used; every slot no record claims is free. Two records claiming one
 *     (tier, location): keep neither without a checksum read.
 */

#endif
