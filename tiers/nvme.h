/*
 * nvme.h — the NVMe tier: fixed-size slots in preallocated files, one block per slot.
 *
 * On disk, in one directory:
 *
 *   <dir>/LOCK            empty; flock(LOCK_EX) while a tier has the directory open
 *   <dir>/slots.000000    [slot 0][slot 1] ... [slot k-1]        k = slots_per_file
 *   <dir>/slots.000001    [slot k] ... [slot 2k-1]
 *   ...                   the last file holds the remaining n_slots - (files-1)*k slots
 *
 * Slot s lives in file s / k at byte offset (s % k) * slot_bytes. n_slots =
 * floor(capacity / slot_bytes); every file is fallocate()d to exactly its slots' bytes at
 * open, so the directory holds at most n_slots * slot_bytes <= capacity bytes of slot files
 * and writes through io/ never extend a file (capacity is enforced, not only counted).
 * Files are opened O_DIRECT (buffered, with one log line, where the file system refuses it).
 *
 * In memory: used[] bitmap, one bit per slot (1 = used), 64 slots per word; alloc takes the
 * lowest free slot (first word from `hint` with a zero bit), so freed slots are reused first
 * and a full tier answers -ENOSPC in O(n_slots / 64).
 *
 * Nothing else is persistent: which block a slot holds is the catalog's record. Reopening a
 * directory (same slot_bytes and file_bytes!) keeps the files' contents and starts with every
 * slot free; the engine re-marks the slots its catalog knows with nvme_mark_used(). Reopening
 * with a smaller capacity truncates the last file and deletes surplus slot files.
 *
 * Layout: fallocate() reserves the blocks as *unwritten* extents. A write into one costs the
 * file system an extent conversion (journalled; with io_uring the write is also punted to a
 * kernel worker): on ext4 on the dev VM first writes ran 30-50% slower than overwrites (see
 * bench/RESULTS.md, "Storage tiers"). So nvme_open also starts one background thread that
 * writes zeros over whatever FIEMAP reports as not yet written (unwritten extents, holes),
 * LAYOUT_CHUNK (8 MiB) at a time, from the last slot down (the allocator takes the lowest
 * free slot, so the two meet only when the tier is nearly full). A chunk covers only free
 * slots: the slots under it are "claimed" while its write is in flight, and nvme_alloc waits
 * for that one write when the lowest free slot is claimed (allocation order is unchanged);
 * used slots are skipped. Only bytes that read as zeros anyway are written, so a slot that
 * the catalog knows but restart has not re-marked yet keeps its contents. Reopening a laid-out
 * directory finds nothing to do (one FIEMAP per file); a close stops the thread after the
 * write in flight and the next open resumes. Without FIEMAP (tmpfs, ...) nothing is laid out
 * (logged once); NVME_NO_LAYOUT keeps the files unwritten (benchmark ablation, tests).
 *
 * Durability: data written into fallocated (unwritten) extents needs the extent conversion
 * journalled: call nvme_sync() before committing a slot in the catalog.
 *
 * Bandwidth caps live in io/ (io_opts.bw_bytes_per_s on the context that serves this tier).
 *
 * Thread safety: nvme_alloc, nvme_free and nvme_mark_used mutate the bitmap: the caller
 * serialises them (the engine lock); inside, they take the tier's mutex that the layout
 * thread shares. nvme_slot_loc, nvme_req and the getters read immutable geometry and run
 * concurrently with anything but close; nvme_layout_left/nvme_layout_wait with anything but
 * close.
 */
#ifndef KVT_NVME_H
#define KVT_NVME_H

#include <stdint.h>

#include "io/io.h"

typedef struct nvme_tier nvme_tier;

#define NVME_NO_DIRECT 0x1u /* open the slot files buffered (tests on tmpfs-like systems) */
#define NVME_NO_LAYOUT 0x2u /* do not lay out (zero-fill) unwritten extents: fallocate only */

typedef struct nvme_opts {
    uint64_t file_bytes; /* bytes per slot file, rounded down to whole slots (>= 1); 0 = 1 GiB */
    unsigned flags;      /* NVME_NO_DIRECT | NVME_NO_LAYOUT */
} nvme_opts;

/*
 * Open (creating as needed) the tier in directory `dir` (created if missing, mode 0755).
 * capacity: bytes, >= slot_bytes. slot_bytes: a multiple of IO_ALIGN in [4096, 1 GiB].
 * opts may be NULL (defaults).
 * Returns at once after fallocate and a FIEMAP per file: the layout (above) runs behind.
 * Returns 0 and *out; -EINVAL (bad size, or more than UINT32_MAX - 1 slots); -EBUSY (another
 * tier holds the directory); -ENOMEM; -EAGAIN (no thread for the layout); -ENOSPC (the file
 * system cannot preallocate the capacity: files already extended stay, a smaller capacity
 * can be opened); other -errno from mkdir/open/fallocate/FIEMAP.
 */
int nvme_open(const char *dir, uint64_t capacity, uint64_t slot_bytes, const nvme_opts *opts,
              nvme_tier **out);
/* Close the files and free the tier (no sync). NULL is a no-op. */
void nvme_close(nvme_tier *t);

/* Take the lowest free slot: 0 and *slot, or -ENOSPC when every slot is used. May wait for
 * one layout write (<= 8 MiB) when that slot is under it. */
int nvme_alloc(nvme_tier *t, uint32_t *slot);
/* Return a used slot. 0; -ERANGE (no such slot); -EINVAL (slot is free: a double free). */
int nvme_free(nvme_tier *t, uint32_t slot);
/* Warm restart: mark a slot the catalog knows as used. 0; -ERANGE; -EEXIST (already used). */
int nvme_mark_used(nvme_tier *t, uint32_t slot);
int nvme_is_used(const nvme_tier *t, uint32_t slot); /* 1, 0, or -ERANGE */

/* Where slot lives: 0, *fd and *off (bytes); -ERANGE. The fd belongs to the tier. */
int nvme_slot_loc(const nvme_tier *t, uint32_t slot, int *fd, uint64_t *off);
/*
 * Fill *r with a request for io/ on slot: op IO_OP_READ/IO_OP_WRITE, buf of len bytes
 * (1..slot_bytes; a multiple of IO_ALIGN and an aligned buf when nvme_direct()), user_data.
 * 0; -ERANGE (slot); -EINVAL (len, op).
 */
int nvme_req(const nvme_tier *t, uint32_t slot, int op, void *buf, uint32_t len,
             uint64_t user_data, io_req *r);

/* Bytes of the slot files not laid out yet (0: done, or nothing to do, or no FIEMAP). */
uint64_t nvme_layout_left(nvme_tier *t);
/* Wait until the layout thread has finished (at once when none runs). 0, or the -errno of
 * the layout write that stopped it (the tier works regardless; that part stays unwritten). */
int nvme_layout_wait(nvme_tier *t);

/* fdatasync every slot file: 0 or the first -errno. */
int nvme_sync(nvme_tier *t);

uint64_t nvme_slot_bytes(const nvme_tier *t);
uint32_t nvme_slots(const nvme_tier *t);      /* n_slots */
uint32_t nvme_free_slots(const nvme_tier *t);
uint64_t nvme_capacity(const nvme_tier *t);   /* n_slots * slot_bytes */
int nvme_direct(const nvme_tier *t);          /* 1 when the files are O_DIRECT */
/* The slot files' fds ([n] in file order), e.g. for io_ctx_register_files. */
const int *nvme_fds(const nvme_tier *t, unsigned *n);

#endif
