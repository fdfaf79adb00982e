/*
 * probe.c — `kvtier probe`'s measurements (probe.h: the method and its caveats).
 *
 * Napkin: 1 GiB at 2 MiB per request is 512 requests; at 3 GB/s a pass takes ~0.36 s, at
 * 0.2 GB/s ~5.4 s. Buffers: qd × block bytes (32 × 2 MiB = 64 MiB), one per request slot,
 * all filled with the same pseudo-random bytes: the figures are about moving bytes, the
 * content is never checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "engine/probe.h"
#include "gpu/gpu.h"
#include "gpu/paged.h"
#include "io/io.h"
#include "kvtier/kvtier.h"
#include "util/util.h"

#define PROBE_CHUNK 8u /* requests per io_rw_batch call, in queue depths (progress steps) */

static uint64_t probe_rng(uint64_t *s)
{
    *s ^= *s << 13; /* xorshift64 */
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* One pass over the n requests of order[] (block indices), qd in flight. 0 or -errno. */
static int probe_pass(io_ctx *c, int fd, int op, void *bufs, const probe_opts *o,
                      const uint32_t *order, uint32_t n, io_req *reqs, const char *phase)
{
    uint32_t chunk = o->qd * PROBE_CHUNK;
    for (uint32_t i = 0; i < n; i += chunk) {
        uint32_t k = n - i < chunk ? n - i : chunk;
        for (uint32_t j = 0; j < k; j++)
            reqs[j] = (io_req){.buf = (char *)bufs + (size_t)((i + j) % o->qd) * o->block,
                               .off = (uint64_t)order[i + j] * o->block,
                               .len = o->block, .fd = fd, .op = op};
        int rc = io_rw_batch(c, reqs, k);
        if (rc)
            return rc == -ENODATA ? -EIO : rc;
        if (o->progress)
            o->progress(o->arg, phase, (double)(i + k) / n);
    }
    return 0;
}

int probe_dir(const char *dir, const probe_opts *opts, probe_io *out)
{
    probe_opts o = opts ? *opts : (probe_opts){0};
    if (!dir || !out)
        return -EINVAL;
    if (!o.bytes)
        o.bytes = 1ull << 30;
    if (!o.block)
        o.block = 2u << 20;
    if (!o.qd)
        o.qd = 32;
    if (o.block % IO_ALIGN || o.block > IO_MAX_LEN || o.qd > IO_MAX_QD || o.bytes < o.block)
        return -EINVAL;
    uint64_t nb = o.bytes / o.block;
    if (nb > UINT32_MAX)
        return -EINVAL;
    uint32_t n = (uint32_t)nb;
    if (o.qd > n)
        o.qd = n;
    struct statvfs vfs;
    if (statvfs(dir, &vfs))
        return -errno;
    if ((uint64_t)vfs.f_bavail * vfs.f_frsize < nb * o.block + (64u << 20))
        return -ENOSPC; /* leave the file system 64 MiB */

    char path[4200];
    snprintf(path, sizeof path, "%s/.kvtier-probe.%d.tmp", dir, (int)getpid());
    io_ctx *c = NULL;
    void *bufs = NULL;
    uint32_t *order = NULL;
    io_req *reqs = NULL;
    int direct = 0, fd = -1, rc;
    io_opts io;
    io_opts_init(&io);
    io.queue_depth = o.qd;
    rc = -ENOMEM;
    if (!(bufs = io_buf_alloc((size_t)o.qd * o.block)) ||
        !(order = util_malloc((size_t)n * sizeof *order)) ||
        !(reqs = util_malloc((size_t)o.qd * PROBE_CHUNK * sizeof *reqs)))
        goto out;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < (size_t)o.qd * o.block / 8; i++)
        ((uint64_t *)bufs)[i] = probe_rng(&seed);
    if ((rc = io_ctx_open(&io, &c)))
        goto out;
    fd = io_file_open(path, O_RDWR | O_CREAT | O_EXCL, 0600, 1, &direct);
    if (fd < 0) {
        rc = fd;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++)
        order[i] = i;
    uint64_t t0 = util_now_ns();
    if ((rc = probe_pass(c, fd, IO_OP_WRITE, bufs, &o, order, n, reqs, "write")))
        goto out;
    if (fdatasync(fd)) {
        rc = -errno;
        goto out;
    }
    uint64_t t1 = util_now_ns();
    for (uint32_t i = n; i-- > 1;) { /* Fisher-Yates: reads in a shuffled order */
        uint32_t j = (uint32_t)(probe_rng(&seed) % (i + 1));
        uint32_t x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    uint64_t t2 = util_now_ns();
    if ((rc = probe_pass(c, fd, IO_OP_READ, bufs, &o, order, n, reqs, "read")))
        goto out;
    uint64_t t3 = util_now_ns();
    double bytes = (double)nb * o.block;
    *out = (probe_io){.write_bw = bytes / ((double)(t1 - t0) * 1e-9),
                      .read_bw = bytes / ((double)(t3 - t2 > 0 ? t3 - t2 : 1) * 1e-9),
                      .bytes = nb * o.block, .direct = direct,
                      .backend = io_backend_name(io_ctx_backend(c))};
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    io_ctx_close(c);
    io_buf_free(bufs);
    util_free(order);
    util_free(reqs);
    return rc;
}

int probe_gpu_link(uint64_t bytes, unsigned reps, double *h2d, double *d2h)
{
    /* device memory through the HBM block pool: 2 MiB blocks (Llama-3-8B, 16 tokens) */
    const kvt_layout lay = {.layers = 32, .kv_heads = 8, .head_dim = 128,
                            .dtype = KVT_DTYPE_BF16, .block_tokens = 16};
    const uint64_t bb = 2u << 20;
    if (!h2d || !d2h || bytes < bb)
        return -EINVAL;
    if (gpu_device_count() <= 0)
        return -ENODEV;
    if (!reps)
        reps = 3;
    uint64_t nblk = bytes / bb;
    if (nblk > INT32_MAX)
        return -EINVAL;
    bytes = nblk * bb;
    gpu_pool *pool = NULL;
    void *host = io_buf_alloc(bytes);
    int reg = 0, rc = -ENOMEM;
    if (!host)
        goto out;
    memset(host, 0x5a, bytes);
    if ((rc = gpu_host_register(host, bytes))) /* pinned: the engine's DRAM arena is */
        goto out;
    reg = 1;
    if ((rc = gpu_pool_create(&lay, (uint32_t)nblk, &pool)))
        goto out;
    void *dev = gpu_pool_base(pool);
    double best[2] = {0, 0};
    for (unsigned r = 0; r < reps + 1; r++) /* the first round warms up */
        for (int dir = 0; dir < 2; dir++) {
            uint64_t t0 = util_now_ns();
            rc = dir == 0 ? gpu_memcpy(dev, host, bytes, NULL) : gpu_memcpy(host, dev, bytes, NULL);
            if (rc || (rc = gpu_stream_sync(NULL)))
                goto out;
            double bw = (double)bytes / ((double)(util_now_ns() - t0) * 1e-9);
            if (r && bw > best[dir])
                best[dir] = bw;
        }
    *h2d = best[0];
    *d2h = best[1];
    rc = 0;
out:
    gpu_pool_destroy(pool);
    if (reg)
        gpu_host_unregister(host);
    io_buf_free(host);
    return rc;
}
