/*
 * disk.h — the capacity tier: checksummed, LZ4-compressed records appended to segment files.
 *
 * On disk, in one directory:
 *
 *   <dir>/LOCK             flock(LOCK_EX) while a tier has the directory open
 *   <dir>/seg.00000000     [record][record]...    at most segment_bytes, appended only
 *   <dir>/seg.00000001     ...                    ids are reused once a segment is deleted
 *
 * A record, padded to whole 4096-byte pages so segments are read and written with O_DIRECT:
 *
 *   [disk_hdr 40 B][payload: stored_len bytes][zero pad to a 4096 multiple]
 *   disk_hdr = [magic u32 "KVD1"][version u16 = 1][flags u16: DISK_REC_LZ4]
 *              [raw_len u32][stored_len u32][tag u64][data_sum u64][hdr_sum u32][pad u32]
 *   data_sum = XXH3-64 of the raw (uncompressed) bytes; hdr_sum = XXH32 (seed 0) of the
 *   header's first 32 bytes; fields in host byte order (little-endian machines).
 *
 * The payload is LZ4 when raw_len / compressed_len >= min_ratio (1.1 by default), else the raw
 * bytes: incompressible KV blocks (bf16 noise) cost no decompression on read. Padding costs
 * < 4 KiB per record (< 0.2% of a 2 MiB block); page-cache bypass is worth it because the
 * DRAM tier is the cache above this one.
 *
 * A location packs into a uint64 (disk_loc), 0 is never a valid location:
 *   bits 63..40 segment id (24)   bits 39..20 first page (20)   bits 19..0 pages (20)
 * (room for 4 GiB segments; segment_bytes is capped at 1 GiB so one read(2) moves a record).
 *
 * In memory, per segment: fd, append cursor (pages), live bytes, and recs[] — every record
 * {first page, pages | DEAD} in file order (binary searched by free/get). A tier holds at most
 * max_segments = floor(capacity / segment_bytes) segment files of <= segment_bytes each, so
 * the directory never holds more than capacity bytes. Puts may open segments only while
 * fewer than max_segments - 1 exist: the last one is kept for compaction, which must copy
 * live records out before it can delete a segment. A sealed segment whose last live record is
 * freed is deleted at once; partly dead ones wait for disk_compact().
 *
 * Reads verify everything: header magic/hdr_sum/lengths against the location, the tag given
 * at put, the LZ4 stream, and data_sum of the decompressed bytes. Any mismatch is -EBADMSG
 * (or -ESTALE for a wrong tag) and the caller's buffer must then be treated as garbage —
 * a corrupt block is a miss, never data.
 *
 * Nothing but the records is persistent: the catalog stores (tag, disk_loc). Reopening finds
 * the segment files and treats every record as dead until disk_mark_live() is called for the
 * locations the catalog knows; disk_compact() then reclaims the rest. Call disk_sync() before
 * committing a location to the catalog.
 *
 * Thread safety: disk_get() may run concurrently with other disk_get() calls; disk_encode()
 * touches no tier and runs anywhere. Every other call needs exclusive access (the engine
 * holds a rwlock: shared for get, exclusive else; it encodes before taking it).
 */
#ifndef KVT_DISK_H
#define KVT_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "io/io.h"

typedef struct disk_tier disk_tier;
typedef uint64_t disk_loc;

#define DISK_LOC_NONE ((disk_loc)0)
#define DISK_HDR_BYTES 40u
#define DISK_REC_LZ4 0x1u /* disk_hdr.flags: the payload is an LZ4 block */

static inline uint32_t disk_loc_seg(disk_loc l) { return (uint32_t)(l >> 40); }
static inline uint64_t disk_loc_off(disk_loc l) { return ((l >> 20) & 0xfffffu) * 4096u; } /* bytes */
static inline uint64_t disk_loc_len(disk_loc l) { return (l & 0xfffffu) * 4096u; } /* padded bytes */

#define DISK_NO_DIRECT 0x1u /* buffered segment I/O */
#define DISK_NO_LZ4 0x2u    /* never compress (benchmarks, CPU-bound hosts) */

typedef struct disk_opts {
    uint64_t segment_bytes; /* multiple of 4096 in [64 KiB, 1 GiB]; 0 = 64 MiB */
    double min_ratio;       /* compress only if raw/compressed >= this; 0 = 1.1 */
    unsigned flags;         /* DISK_NO_DIRECT, DISK_NO_LZ4 */
} disk_opts;

/*
 * Open (creating as needed) the tier in `dir`. capacity: bytes, >= 2 segments.
 * opts may be NULL. Existing seg.* files are adopted (all records dead until marked).
 * Returns 0 and *out; -EINVAL; -EBUSY (directory held by another tier); -ENOMEM; -errno.
 */
int disk_open(const char *dir, uint64_t capacity, const disk_opts *opts, disk_tier **out);
/* Close files, free the tier (no sync). NULL is a no-op. */
void disk_close(disk_tier *t);

/*
 * Store len bytes of src as one record tagged `tag` (the block key: checked by disk_get).
 * Returns 0 and *loc; -EINVAL (len 0 or NULL); -EFBIG (record larger than a segment);
 * -ENOSPC (capacity reached: free and compact first, or the file system is full);
 * -ENOMEM; -EIO or another -errno from the write (the tier stays consistent: the space is
 * reused by the next put).
 */
int disk_put(disk_tier *t, uint64_t tag, const void *src, size_t len, disk_loc *loc);

/*
 * disk_put in two steps, so the CPU work runs outside the tier's exclusive section:
 * disk_encode is pure (any thread, no tier): it checksums, compresses when it pays
 * (min_ratio 0 = 1.1; flags DISK_NO_LZ4) and pads; *rec is an IO_ALIGN-aligned record of
 * *rec_bytes bytes (a 4096 multiple) that the caller frees with io_buf_free.
 * Returns 0; -EINVAL; -EFBIG (len > 1 GiB - header); -ENOMEM.
 * disk_append (exclusive) writes such a record: the errors of disk_put, and -EINVAL when
 * rec is not one record made by disk_encode.
 */
int disk_encode(uint64_t tag, const void *src, size_t len, double min_ratio, unsigned flags,
                void **rec, size_t *rec_bytes);
int disk_append(disk_tier *t, const void *rec, size_t rec_bytes, disk_loc *loc);

/*
 * Read the record at loc into dst[0..cap) after verifying it (see above); *len = raw bytes.
 * Returns 0; -ENOENT (no live record at loc); -ESTALE (tag differs: the location was reused);
 * -EBADMSG (checksum, header or LZ4 stream corrupt); -ERANGE (cap < raw length, *len set);
 * -ENOMEM; -EIO/-ENODATA/... from the read. On any error dst holds no valid data.
 */
int disk_get(disk_tier *t, disk_loc loc, uint64_t tag, void *dst, size_t cap, size_t *len);

/* Mark the record at loc dead. 0; -ENOENT (not a live record). */
int disk_free(disk_tier *t, disk_loc loc);
/* Warm restart: the record at loc is live (no I/O; disk_get verifies). Mark every location
 * the catalog knows before any disk_free/disk_put/disk_compact: a segment left with no live
 * record is deleted by those. 0; -ENOENT (no such segment or beyond its end); -EEXIST
 * (overlaps a live record); -ENOMEM. */
int disk_mark_live(disk_tier *t, disk_loc loc);

/*
 * Called by disk_compact for each live record it copied: the caller repoints tag's entry
 * from old_loc to new_loc. Return 0 to accept; a negative errno refuses (e.g. the block is
 * pinned): the new copy is dropped, old_loc stays valid and compaction stops with that error.
 */
typedef int (*disk_move_fn)(void *arg, uint64_t tag, disk_loc old_loc, disk_loc new_loc);

typedef struct disk_compact_stats {
    uint32_t segments_freed;
    uint64_t records_moved;
    uint64_t bytes_moved;   /* padded bytes copied */
    uint64_t bytes_freed;   /* segment file bytes deleted */
} disk_compact_stats;

/*
 * Compact every sealed segment whose garbage ratio (1 - live bytes / file bytes) is >=
 * min_garbage (0..1): copy its live records to the append segment, report each move through
 * fn, delete the file. stats may be NULL. Returns 0; -ENOSPC (no room even in the reserve:
 * moves made so far stand); fn's error; -EIO.. from I/O; -ENOMEM.
 */
int disk_compact(disk_tier *t, double min_garbage, disk_move_fn fn, void *arg,
                 disk_compact_stats *stats);

/* fdatasync every segment written since the last sync: 0 or -errno. */
int disk_sync(disk_tier *t);

uint64_t disk_capacity(const disk_tier *t);   /* max_segments * segment_bytes */
uint64_t disk_file_bytes(const disk_tier *t); /* bytes in segment files now */
uint64_t disk_live_bytes(const disk_tier *t); /* padded bytes of live records */
uint32_t disk_segments(const disk_tier *t);   /* segment files now */
int disk_direct(const disk_tier *t);

/* Tests: consult `fn` before each read and write attempt (see io_fault_fn): inject -EIO,
 * -ENOSPC or short transfers. NULL removes it. Exclusive call. */
void disk_set_fault(disk_tier *t, io_fault_fn fn, void *arg);

#endif
