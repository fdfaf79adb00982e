/*
 * probe.h — measure the bandwidths the cost model assumes (`kvtier probe`, docs/cost-model.md
 * §2): a tier directory's write and read bandwidth through the engine's I/O path (io/:
 * O_DIRECT, io_uring or the pread pool, the tiers' request size and depth), and the
 * host<->GPU link with the gpu/ copy functions.
 *
 * Layering: cli/probe.c includes this header directly (an engine-internal entry point, as
 * analytics includes evict/cost.h) until the probe is part of kvtier.h.
 *
 * Method (probe_dir): a scratch file of `bytes` (rounded down to whole requests) in the
 * directory, written once front to back at queue depth qd (then fdatasync: the write is
 * counted when durable), then read back in a shuffled request order at the same depth
 * (a tier's reads land wherever its blocks are); the file is removed. With O_DIRECT refused
 * by the file system (tmpfs), the reads come from the page cache: `direct` says so and the
 * figures are not the device's.
 *
 * Thread safety: none needed; each call owns what it opens. Errors: negative errno.
 */
#ifndef KVT_ENGINE_PROBE_H
#define KVT_ENGINE_PROBE_H

#include <stdint.h>

typedef struct probe_opts {
    uint64_t bytes;   /* scratch file size per directory, bytes; 0: 1 GiB */
    uint32_t block;   /* request size, bytes, a multiple of 4096; 0: 2 MiB (a 16-token block
                       * of Llama-3-8B) */
    unsigned qd;      /* requests in flight, 1..4096; 0: 32 */
    /* progress (may be NULL): phase "write" or "read", fraction done 0..1 */
    void (*progress)(void *arg, const char *phase, double frac);
    void *arg;
} probe_opts;

typedef struct probe_io {
    double write_bw, read_bw; /* bytes/s */
    uint64_t bytes;           /* bytes moved each way */
    int direct;               /* 1: O_DIRECT (device speed); 0: buffered (page cache) */
    const char *backend;      /* "io_uring" or "pool" */
} probe_io;

/*
 * Measure directory dir (it must exist). Returns 0 and *out; -EINVAL (bad options);
 * -ENOSPC (the file system has no room for the scratch file); -ENOMEM; any -errno of
 * open/write/read/fdatasync (the scratch file is removed in every case).
 */
int probe_dir(const char *dir, const probe_opts *o, probe_io *out);

/*
 * Host<->GPU over the link: `bytes` copied reps times each way between a page-locked host
 * buffer and device memory (gpu_memcpy, synchronised), best of the reps. Returns 0 and
 * *h2d, *d2h in bytes/s; -ENODEV without a usable GPU or a CUDA build; -ENOMEM; -EIO.
 */
int probe_gpu_link(uint64_t bytes, unsigned reps, double *h2d, double *d2h);

#endif
