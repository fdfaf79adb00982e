/*
 * pool.cu — the HBM block pool and batched scattered block copies (paged.h).
 *
 * Pool bookkeeping (host):  state[num_blocks]  0 free, 1 allocated
 *                           pins[num_blocks]   pin count of an allocated block
 *                           free_ids[]         stack of free block ids (top = n_free-1)
 * guarded by one mutex, never held across a CUDA call.
 *
 * Copies. Three mechanisms, chosen per call (measured in bench_gpu_xfer, RESULTS_GPU.md):
 *  - CE_LOOP: one cudaMemcpyAsync per run of blocks contiguous on both sides.
 *  - CE_BATCH: all runs in one cudaMemcpyBatchAsync (CUDA 12.8+): one driver call, the
 *    copy engines take the list.
 *  - SM: copy_kernel, each CTA copying 32 KiB pieces with 16-byte loads, 8 in flight per
 *    thread; the block pointer lists travel in the kernel's parameter space (16 KiB per
 *    launch of up to XB blocks), so no staging copy precedes it. It needs the host memory
 *    mapped into the GPU's address space and costs SMs that attention could use.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "gpu/dev.h"
#include "gpu/paged.h"
#include "util/util.h"

namespace {

constexpr uint32_t XB = 1024;            /* blocks per copy_kernel launch */
constexpr uint32_t PIECE = 32 * 1024;    /* bytes per CTA work item: 256 thr x 8 x 16 B */
constexpr int XT = 256;

struct xfer_list {
    const uint4 *src[XB];
    uint4 *dst[XB];
};

__global__ void __launch_bounds__(XT) copy_kernel(const __grid_constant__ xfer_list L, uint32_t n,
                                                  uint64_t bytes)
{
    const uint64_t pieces_per = (bytes + PIECE - 1) / PIECE;
    const uint64_t items = pieces_per * n;
    const uint64_t vecs = bytes / 16;
    for (uint64_t it = blockIdx.x; it < items; it += gridDim.x) {
        const uint32_t b = (uint32_t)(it / pieces_per);
        const uint64_t v0 = (it % pieces_per) * (PIECE / 16) + threadIdx.x;
        const uint4 *s = L.src[b];
        uint4 *d = L.dst[b];
        uint4 r[8];
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const uint64_t v = v0 + (uint64_t)k * XT;
            if (v < vecs)
                r[k] = s[v];
        }
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const uint64_t v = v0 + (uint64_t)k * XT;
            if (v < vecs)
                d[v] = r[k];
        }
    }
}

} // namespace

/* Device facts shared by the CUDA files of gpu/ (gpu/dev.h). */
int gpu_dev_sms = 0;
int gpu_dev_host_ptr_ok = -1; /* device can use registered host memory at the host address */

int gpu_dev_info(void)
{
    if (gpu_dev_sms > 0)
        return 0;
    int dev = 0, n = 0, ok = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&ok, cudaDevAttrCanUseHostPointerForRegisteredMem, dev) !=
            cudaSuccess) {
        cudaGetLastError();
        return -ENODEV;
    }
    gpu_dev_host_ptr_ok = ok;
    gpu_dev_sms = n;
    return 0;
}

bool gpu_dev_addressable(const void *p)
{
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    if (a.type == cudaMemoryTypeDevice)
        return true;
    return a.type == cudaMemoryTypeHost && gpu_dev_host_ptr_ok == 1;
}

namespace {

struct run {
    const char *src;
    char *dst;
    uint64_t bytes;
};

int cmp_run(const void *a, const void *b)
{
    const run *x = static_cast<const run *>(a), *y = static_cast<const run *>(b);
    return (x->src > y->src) - (x->src < y->src);
}

/* Sort by source and merge pairs contiguous on both sides. Returns the run count. */
uint32_t coalesce(const void *const *src, void *const *dst, uint32_t n, uint64_t bytes, run *r)
{
    for (uint32_t i = 0; i < n; i++)
        r[i] = run{static_cast<const char *>(src[i]), static_cast<char *>(dst[i]), bytes};
    qsort(r, n, sizeof *r, cmp_run);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (m && r[m - 1].src + r[m - 1].bytes == r[i].src &&
            r[m - 1].dst + r[m - 1].bytes == r[i].dst)
            r[m - 1].bytes += bytes;
        else
            r[m++] = r[i];
    }
    return m;
}

int copy_ce(const void *const *src, void *const *dst, uint32_t n, uint64_t bytes, bool batch,
            cudaStream_t st)
{
    run *r = static_cast<run *>(util_malloc((size_t)n * sizeof *r));
    if (!r)
        return -ENOMEM;
    const uint32_t m = coalesce(src, dst, n, bytes, r);
    int rc = 0;
    if (batch && st != nullptr && m > 1) {
        void **d = static_cast<void **>(util_malloc((size_t)m * sizeof *d));
        const void **s = static_cast<const void **>(util_malloc((size_t)m * sizeof *s));
        size_t *sz = static_cast<size_t *>(util_malloc((size_t)m * sizeof *sz));
        if (!d || !s || !sz) {
            rc = -ENOMEM;
        } else {
            for (uint32_t i = 0; i < m; i++) {
                d[i] = r[i].dst;
                s[i] = r[i].src;
                sz[i] = r[i].bytes;
            }
            cudaMemcpyAttributes attr;
            memset(&attr, 0, sizeof attr);
            attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
            attr.flags = cudaMemcpyFlagPreferOverlapWithCompute;
            size_t idx = 0;
            if (cudaMemcpyBatchAsync(d, s, sz, m, &attr, &idx, 1, st) != cudaSuccess) {
                cudaGetLastError();
                rc = -EIO;
            }
        }
        util_free(d);
        util_free(s);
        util_free(sz);
    } else {
        for (uint32_t i = 0; i < m && !rc; i++)
            if (cudaMemcpyAsync(r[i].dst, r[i].src, r[i].bytes, cudaMemcpyDefault, st) !=
                cudaSuccess) {
                cudaGetLastError();
                rc = -EIO;
            }
    }
    util_free(r);
    return rc;
}

int copy_sm(const void *const *src, void *const *dst, uint32_t n, uint64_t bytes, uint32_t ctas,
            cudaStream_t st)
{
    if (bytes % 16)
        return -EINVAL;
    xfer_list *L = static_cast<xfer_list *>(util_malloc(sizeof *L));
    if (!L)
        return -ENOMEM;
    if (!ctas)
        ctas = 2u * (uint32_t)gpu_dev_sms;
    int rc = 0;
    for (uint32_t first = 0; first < n && !rc; first += XB) {
        const uint32_t k = n - first < XB ? n - first : XB;
        for (uint32_t i = 0; i < k; i++) {
            if (((uintptr_t)src[first + i] | (uintptr_t)dst[first + i]) & 15) {
                rc = -EINVAL;
                break;
            }
            L->src[i] = static_cast<const uint4 *>(src[first + i]);
            L->dst[i] = static_cast<uint4 *>(dst[first + i]);
        }
        if (rc)
            break;
        const uint64_t items = (bytes + PIECE - 1) / PIECE * k;
        const uint32_t grid = items < ctas ? (uint32_t)items : ctas;
        copy_kernel<<<grid, XT, 0, st>>>(*L, k, bytes);
        if (cudaGetLastError() != cudaSuccess)
            rc = -EIO;
    }
    util_free(L);
    return rc;
}

} // namespace

extern "C" int gpu_copy_blocks(const void *const *src, void *const *dst, uint32_t n,
                               uint64_t bytes, gpu_xfer_method method, uint32_t sm_ctas,
                               struct CUstream_st *stream)
{
    if (!src || !dst || !bytes)
        return -EINVAL;
    if (n == 0)
        return 0;
    for (uint32_t i = 0; i < n; i++)
        if (!src[i] || !dst[i])
            return -EINVAL;
    int rc = gpu_dev_info();
    if (rc)
        return rc;
    cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    if (method == GPU_XFER_AUTO || method == GPU_XFER_SM) {
        /* The SM path dereferences host pointers on the GPU: only pinned memory the device
         * can address at the host address. A pageable pointer there would fault the whole
         * context, so sample the batch (first, middle, last; all when n <= 64). */
        bool ok = gpu_dev_host_ptr_ok == 1 && bytes % 16 == 0;
        for (uint32_t i = 0; ok && i < n; i++)
            ok = !(((uintptr_t)src[i] | (uintptr_t)dst[i]) & 15);
        for (uint32_t i = 0; ok && i < n; i = (n <= 64 || i == n - 1) ? i + 1
                                             : (i == 0 ? n / 2 : n - 1))
            ok = gpu_dev_addressable(src[i]) && gpu_dev_addressable(dst[i]);
        if (method == GPU_XFER_SM && !ok)
            return -EINVAL;
        /* measured (bench_gpu_xfer, H100, 512 MiB scattered): SM kernel 0.91-0.97 of the
         * pinned limit at 16-256 KiB blocks, where the copy engines reach 0.07-0.86;
         * CE batch 0.99-1.0 from 2 MiB, where the SM kernel gives 0.92-0.97 */
        if (method == GPU_XFER_AUTO)
            method = ok && bytes < (1u << 20) ? GPU_XFER_SM : GPU_XFER_CE_BATCH;
    }
    switch (method) {
    case GPU_XFER_CE_LOOP: return copy_ce(src, dst, n, bytes, false, st);
    case GPU_XFER_CE_BATCH: return copy_ce(src, dst, n, bytes, true, st);
    case GPU_XFER_SM: return copy_sm(src, dst, n, bytes, sm_ctas, st);
    default: return -EINVAL;
    }
}

/* ---------------------------------------------------------------- the pool */

/* kvt_layout_block_bytes, restated so gpu/ does not depend on the engine's module. */
static uint64_t layout_bytes(const kvt_layout *l)
{
    uint64_t es = l->dtype == KVT_DTYPE_FP32 ? 4
                  : (l->dtype == KVT_DTYPE_FP16 || l->dtype == KVT_DTYPE_BF16) ? 2
                  : l->dtype == KVT_DTYPE_FP8 ? 1 : 0;
    if (!es || !l->layers || !l->kv_heads || !l->head_dim || !l->block_tokens ||
        l->block_tokens > 4096 || (l->block_tokens & (l->block_tokens - 1)))
        return 0;
    uint64_t b = (uint64_t)l->layers * 2 * l->block_tokens * l->kv_heads * l->head_dim * es;
    return b > (1ull << 32) ? 0 : b;
}

struct gpu_pool {
    pthread_mutex_t mu;
    char *base;           /* device: [num_blocks][layers][2][bt][H][D] */
    uint64_t block_bytes;
    uint32_t num_blocks;
    uint32_t n_free;
    int32_t *free_ids;    /* [num_blocks] stack */
    uint8_t *state;       /* [num_blocks] 0 free, 1 allocated */
    uint32_t *pins;       /* [num_blocks] */
};

extern "C" int gpu_pool_create(const kvt_layout *layout, uint32_t num_blocks, gpu_pool **out)
{
    if (!layout || !out || !num_blocks || num_blocks > INT32_MAX)
        return -EINVAL;
    *out = nullptr;
    const uint64_t bb = layout_bytes(layout);
    if (!bb)
        return KVT_EBADLAYOUT;
    if (gpu_dev_info())
        return -ENODEV;
    gpu_pool *p = static_cast<gpu_pool *>(util_calloc(1, sizeof *p));
    if (!p)
        return -ENOMEM;
    p->block_bytes = bb;
    p->num_blocks = num_blocks;
    p->free_ids = static_cast<int32_t *>(util_malloc((size_t)num_blocks * sizeof(int32_t)));
    p->state = static_cast<uint8_t *>(util_calloc(num_blocks, 1));
    p->pins = static_cast<uint32_t *>(util_calloc(num_blocks, sizeof(uint32_t)));
    if (!p->free_ids || !p->state || !p->pins)
        goto fail;
    if (cudaMalloc(reinterpret_cast<void **>(&p->base), bb * num_blocks) != cudaSuccess) {
        cudaGetLastError();
        p->base = nullptr;
        goto fail;
    }
    /* pop order: block 0 first, so fresh pools hand out ascending, contiguous ids */
    for (uint32_t i = 0; i < num_blocks; i++)
        p->free_ids[i] = (int32_t)(num_blocks - 1 - i);
    p->n_free = num_blocks;
    pthread_mutex_init(&p->mu, nullptr);
    *out = p;
    return 0;
fail:
    util_free(p->free_ids);
    util_free(p->state);
    util_free(p->pins);
    util_free(p);
    return -ENOMEM;
}

extern "C" void gpu_pool_destroy(gpu_pool *p)
{
    if (!p)
        return;
    if (cudaFree(p->base) != cudaSuccess)
        cudaGetLastError();
    pthread_mutex_destroy(&p->mu);
    util_free(p->free_ids);
    util_free(p->state);
    util_free(p->pins);
    util_free(p);
}

extern "C" void *gpu_pool_base(const gpu_pool *p) { return p ? p->base : nullptr; }
extern "C" uint64_t gpu_pool_block_bytes(const gpu_pool *p) { return p ? p->block_bytes : 0; }
extern "C" uint32_t gpu_pool_num_blocks(const gpu_pool *p) { return p ? p->num_blocks : 0; }

extern "C" uint32_t gpu_pool_free_blocks(const gpu_pool *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(const_cast<pthread_mutex_t *>(&p->mu));
    uint32_t n = p->n_free;
    pthread_mutex_unlock(const_cast<pthread_mutex_t *>(&p->mu));
    return n;
}

extern "C" void *gpu_pool_block_ptr(const gpu_pool *p, int32_t id)
{
    if (!p || id < 0 || (uint32_t)id >= p->num_blocks)
        return nullptr;
    return p->base + (uint64_t)id * p->block_bytes;
}

extern "C" int gpu_pool_alloc(gpu_pool *p, uint32_t n, int32_t *ids)
{
    if (!p || (n && !ids))
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    if (n > p->n_free) {
        pthread_mutex_unlock(&p->mu);
        return -ENOSPC;
    }
    for (uint32_t i = 0; i < n; i++) {
        int32_t id = p->free_ids[--p->n_free];
        p->state[id] = 1;
        p->pins[id] = 0;
        ids[i] = id;
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* Check ids are allocated (and, with no_pins, unpinned); mark[] detects repeats. Caller
 * holds the lock. Leaves state[] as it found it. */
static int check_ids(gpu_pool *p, uint32_t n, const int32_t *ids, bool no_pins, bool unique)
{
    int rc = 0;
    uint32_t i;
    for (i = 0; i < n; i++) {
        const int32_t id = ids[i];
        if (id < 0 || (uint32_t)id >= p->num_blocks || p->state[id] != 1) {
            rc = -EINVAL;
            break;
        }
        if (no_pins && p->pins[id]) {
            rc = -EBUSY;
            break;
        }
        if (unique)
            p->state[id] = 2; /* seen */
    }
    if (unique)
        for (uint32_t j = 0; j < i; j++)
            p->state[ids[j]] = 1;
    return rc;
}

extern "C" int gpu_pool_free(gpu_pool *p, uint32_t n, const int32_t *ids)
{
    if (!p || (n && !ids))
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int rc = check_ids(p, n, ids, true, true);
    if (!rc)
        for (uint32_t i = 0; i < n; i++) {
            p->state[ids[i]] = 0;
            p->free_ids[p->n_free++] = ids[i];
        }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

extern "C" int gpu_pool_pin(gpu_pool *p, uint32_t n, const int32_t *ids)
{
    if (!p || (n && !ids))
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int rc = check_ids(p, n, ids, false, false);
    if (!rc)
        for (uint32_t i = 0; i < n; i++)
            p->pins[ids[i]]++;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

extern "C" int gpu_pool_unpin(gpu_pool *p, uint32_t n, const int32_t *ids)
{
    if (!p || (n && !ids))
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int rc = check_ids(p, n, ids, false, false);
    /* a repeated id must have as many pins as repeats: count down, roll back on shortfall */
    uint32_t i = 0;
    for (; !rc && i < n; i++) {
        if (!p->pins[ids[i]])
            rc = -EINVAL;
        else
            p->pins[ids[i]]--;
    }
    if (rc)
        for (uint32_t j = 0; j + 1 < i; j++)
            p->pins[ids[j]]++;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

extern "C" uint32_t gpu_pool_pins(const gpu_pool *p, int32_t id)
{
    if (!p || id < 0 || (uint32_t)id >= p->num_blocks)
        return 0;
    pthread_mutex_lock(const_cast<pthread_mutex_t *>(&p->mu));
    uint32_t n = p->state[id] ? p->pins[id] : 0;
    pthread_mutex_unlock(const_cast<pthread_mutex_t *>(&p->mu));
    return n;
}

static int pool_copy(gpu_pool *p, uint32_t n, const int32_t *ids, const void *const *host,
                     bool in, gpu_xfer_method m, cudaStream_t st)
{
    void **dev = static_cast<void **>(util_malloc((size_t)n * sizeof *dev));
    if (!dev)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        dev[i] = p->base + (uint64_t)ids[i] * p->block_bytes;
    int rc = in ? gpu_copy_blocks(host, dev, n, p->block_bytes, m, 0, st)
                : gpu_copy_blocks(const_cast<const void *const *>(dev),
                                  const_cast<void *const *>(host), n, p->block_bytes, m, 0, st);
    util_free(dev);
    return rc;
}

extern "C" int gpu_pool_load(gpu_pool *p, uint32_t n, const int32_t *ids, const void *const *src,
                             gpu_xfer_method m, struct CUstream_st *stream)
{
    if (!p || (n && (!ids || !src)))
        return -EINVAL;
    if (!n)
        return 0;
    pthread_mutex_lock(&p->mu);
    int rc = check_ids(p, n, ids, true, false);
    pthread_mutex_unlock(&p->mu);
    if (rc)
        return rc;
    return pool_copy(p, n, ids, src, true, m, reinterpret_cast<cudaStream_t>(stream));
}

extern "C" int gpu_pool_load_new(gpu_pool *p, uint32_t n, const void *const *src, int32_t *ids_out,
                                 gpu_xfer_method m, struct CUstream_st *stream)
{
    if (!p || (n && (!src || !ids_out)))
        return -EINVAL;
    if (!n)
        return 0;
    int rc = gpu_pool_alloc(p, n, ids_out);
    if (rc)
        return rc;
    rc = pool_copy(p, n, ids_out, src, true, m, reinterpret_cast<cudaStream_t>(stream));
    if (rc)
        gpu_pool_free(p, n, ids_out);
    return rc;
}

extern "C" int gpu_pool_store(gpu_pool *p, uint32_t n, const int32_t *ids, void *const *dst,
                              gpu_xfer_method m, struct CUstream_st *stream)
{
    if (!p || (n && (!ids || !dst)))
        return -EINVAL;
    if (!n)
        return 0;
    pthread_mutex_lock(&p->mu);
    int rc = check_ids(p, n, ids, false, false);
    pthread_mutex_unlock(&p->mu);
    if (rc)
        return rc;
    return pool_copy(p, n, ids, const_cast<const void *const *>(dst), false, m,
                     reinterpret_cast<cudaStream_t>(stream));
}
