/*
 * rt.cu — gpu.h runtime helpers (copies, streams, events) and the layer gather kernel that
 * turns engine blocks ([layers][2][bt][H][D], in the pinned arena or in the HBM pool) into
 * per-layer K/V buffers ([H][T][D]) in one pass over PCIe (or HBM), no staging copy.
 *
 * Napkin math (Llama-3-8B, bf16, 16-token blocks): one layer of one block is 2*16*8*128*2 =
 * 64 KiB in 256-byte rows; an 8k prefix is 512 blocks = 32 MiB per layer, 1 GiB in all:
 * 19.5 ms at the measured 55 GB/s pinned host->GPU rate, 0.6 ms per layer. Reads are
 * 16 B per thread, consecutive threads on consecutive source bytes (the block's layer slice
 * is contiguous), writes land in 256-byte rows. Enough loads must be in flight to cover the
 * PCIe round trip (~1-2 us x 55 GB/s ~ 110 KB): each thread keeps 4 x 16 B loads in flight,
 * 2 CTAs x 256 threads per SM -> ~2 MB on an H100.
 */
#include <errno.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "gpu/dev.h"
#include "gpu/gpu.h"
#include "util/util.h"

namespace {

constexpr uint32_t GB_MAX = 1024; /* blocks per launch (kernel parameter array) */
constexpr int GT = 256;
constexpr int GU = 4; /* 16-byte units in flight per thread */

struct gather_list {
    const uint4 *src[GB_MAX];
};

struct gather_k {
    uint4 *k, *v;
    uint64_t hs16;    /* head stride in uint4 */
    uint64_t tok0;
    uint32_t v16;     /* uint4 per (token, head) row: D * es / 16 */
    uint32_t heads;
    uint32_t bt;
    uint64_t layer16; /* offset of the layer inside a block slab, uint4 */
    uint64_t half;    /* uint4 in one K (or V) page: bt * H * v16 */
};

__global__ void __launch_bounds__(GT) gather_kernel(const __grid_constant__ gather_list L,
                                                    uint32_t n, const gather_k p)
{
    const uint64_t upb = 2 * p.half;
    const uint64_t total = upb * n;
    const uint64_t step = (uint64_t)gridDim.x * GT * GU;
    for (uint64_t base = (uint64_t)blockIdx.x * GT * GU + threadIdx.x; base < total; base += step) {
        uint4 r[GU];
        uint4 *d[GU];
#pragma unroll
        for (int k = 0; k < GU; k++) {
            const uint64_t u = base + (uint64_t)k * GT;
            d[k] = nullptr;
            if (u < total) {
                const uint32_t b = (uint32_t)(u / upb);
                const uint64_t rr = u - (uint64_t)b * upb;
                const bool isv = rr >= p.half;
                const uint64_t rem = isv ? rr - p.half : rr;
                const uint64_t row = rem / p.v16;
                const uint32_t v = (uint32_t)(rem - row * p.v16);
                const uint64_t t = row / p.heads;
                const uint32_t h = (uint32_t)(row - t * p.heads);
                r[k] = L.src[b][p.layer16 + rr];
                d[k] = (isv ? p.v : p.k) + h * p.hs16 + (p.tok0 + (uint64_t)b * p.bt + t) * p.v16 + v;
            }
        }
#pragma unroll
        for (int k = 0; k < GU; k++)
            if (d[k])
                *d[k] = r[k];
    }
}

int io_rc(cudaError_t e)
{
    if (e == cudaSuccess)
        return 0;
    cudaGetLastError();
    return e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ? -ENODEV : -EIO;
}

/* gpu_gather_layer's and gpu_copy_layer's pointer checks (n > 0): every source set (and
 * 16-byte aligned if align16), and the device able to address the sources and destinations.
 * A pointer the GPU cannot dereference would fault the context: the sources are sampled
 * (first, middle, last; all for small batches), as gpu_copy_blocks does. */
int layer_pointers_ok(const void *const *src, uint32_t n, const gpu_gather_params *p, bool align16)
{
    int rc = gpu_dev_info();
    if (rc)
        return rc;
    for (uint32_t i = 0; i < n; i++)
        if (!src[i] || (align16 && ((uintptr_t)src[i] & 15)))
            return -EINVAL;
    for (uint32_t i = 0; i < n; i = (n <= 64 || i == n - 1) ? i + 1 : (i == 0 ? n / 2 : n - 1))
        if (!gpu_dev_addressable(src[i]))
            return -EINVAL;
    if (!gpu_dev_addressable(p->k_dst) || !gpu_dev_addressable(p->v_dst))
        return -EINVAL;
    return 0;
}

} // namespace

extern "C" int gpu_memcpy(void *dst, const void *src, size_t n, struct CUstream_st *s)
{
    if (!dst || !src)
        return -EINVAL;
    if (!n)
        return 0;
    return io_rc(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, reinterpret_cast<cudaStream_t>(s)));
}

extern "C" int gpu_stream_sync(struct CUstream_st *s)
{
    return io_rc(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(s)));
}

extern "C" int gpu_event_create(void **ev)
{
    if (!ev)
        return -EINVAL;
    cudaEvent_t e = nullptr;
    int rc = io_rc(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    *ev = rc ? nullptr : reinterpret_cast<void *>(e);
    return rc;
}

extern "C" void gpu_event_destroy(void *ev)
{
    if (ev && cudaEventDestroy(reinterpret_cast<cudaEvent_t>(ev)) != cudaSuccess)
        cudaGetLastError();
}

extern "C" int gpu_event_record(void *ev, struct CUstream_st *s)
{
    if (!ev)
        return -EINVAL;
    return io_rc(cudaEventRecord(reinterpret_cast<cudaEvent_t>(ev), reinterpret_cast<cudaStream_t>(s)));
}

extern "C" int gpu_stream_wait_event(struct CUstream_st *s, void *ev)
{
    if (!ev)
        return -EINVAL;
    return io_rc(cudaStreamWaitEvent(reinterpret_cast<cudaStream_t>(s),
                                     reinterpret_cast<cudaEvent_t>(ev), 0));
}

extern "C" int gpu_current_device(int *dev)
{
    if (!dev)
        return -EINVAL;
    return io_rc(cudaGetDevice(dev));
}

extern "C" int gpu_gather_layer(const void *const *src, uint32_t n, const gpu_gather_params *p,
                                struct CUstream_st *s)
{
    if (!p || (n && !src) || !p->k_dst || !p->v_dst || !p->layers || p->layer >= p->layers ||
        !p->block_tokens || !p->kv_heads || !p->head_dim || !p->elem_bytes)
        return -EINVAL;
    const uint64_t row = (uint64_t)p->head_dim * p->elem_bytes;
    if (row % 16 || (p->head_stride * p->elem_bytes) % 16 ||
        (((uintptr_t)p->k_dst | (uintptr_t)p->v_dst) & 15) ||
        p->head_stride < (p->tok0 + (uint64_t)n * p->block_tokens) * p->head_dim)
        return -EINVAL;
    if (n == 0)
        return 0;
    int rc = layer_pointers_ok(src, n, p, true);
    if (rc)
        return rc;
    gather_list *L = static_cast<gather_list *>(util_malloc(sizeof *L));
    if (!L)
        return -ENOMEM;
    gather_k k;
    k.k = static_cast<uint4 *>(p->k_dst);
    k.v = static_cast<uint4 *>(p->v_dst);
    k.hs16 = p->head_stride * p->elem_bytes / 16;
    k.v16 = (uint32_t)(row / 16);
    k.heads = p->kv_heads;
    k.bt = p->block_tokens;
    k.half = (uint64_t)p->block_tokens * p->kv_heads * k.v16;
    k.layer16 = (uint64_t)p->layer * 2 * k.half;
    const uint32_t ctas_max = p->ctas ? p->ctas : 2u * (uint32_t)gpu_dev_sms;
    cudaStream_t st = reinterpret_cast<cudaStream_t>(s);
    for (uint32_t first = 0; first < n && !rc; first += GB_MAX) {
        const uint32_t m = n - first < GB_MAX ? n - first : GB_MAX;
        for (uint32_t i = 0; i < m; i++)
            L->src[i] = static_cast<const uint4 *>(src[first + i]);
        k.tok0 = p->tok0 + (uint64_t)first * p->block_tokens;
        const uint64_t items = (2 * k.half * m + GT * GU - 1) / (GT * GU);
        const uint32_t grid = items < ctas_max ? (uint32_t)items : ctas_max;
        gather_kernel<<<grid, GT, 0, st>>>(*L, m, k);
        rc = io_rc(cudaGetLastError());
    }
    util_free(L);
    return rc;
}

extern "C" int gpu_copy_layer(const void *const *src, uint32_t n, const gpu_gather_params *p,
                              struct CUstream_st *s)
{
    if (!p || (n && !src) || !p->k_dst || !p->v_dst || !p->layers || p->layer >= p->layers ||
        !p->block_tokens || !p->kv_heads || !p->head_dim || !p->elem_bytes)
        return -EINVAL;
    if (n == 0)
        return 0;
    /* only memory the device can address: a pageable source would make the copy a
     * synchronous staged one */
    int rc = layer_pointers_ok(src, n, p, false);
    if (rc)
        return rc;
    const size_t page = (size_t)p->block_tokens * p->kv_heads * p->head_dim * p->elem_bytes;
    const size_t off = (size_t)p->layer * 2 * page;
    const size_t tok_bytes = page / p->block_tokens;
    char *k = static_cast<char *>(p->k_dst) + p->tok0 * tok_bytes;
    char *v = static_cast<char *>(p->v_dst) + p->tok0 * tok_bytes;
    cudaStream_t st = reinterpret_cast<cudaStream_t>(s);
    for (uint32_t a = 0; a < n && !rc;) {
        const char *s0 = static_cast<const char *>(src[a]);
        uint32_t b = a + 1;
        size_t pitch = page;
        if (b < n && static_cast<const char *>(src[b]) > s0) {
            const size_t d = (size_t)(static_cast<const char *>(src[b]) - s0);
            if (d >= 2 * page && d <= (size_t)INT32_MAX) { /* blocks never overlap: d >= block */
                pitch = d;
                while (b < n && static_cast<const char *>(src[b]) == s0 + (size_t)(b - a) * pitch)
                    b++;
            }
        }
        const size_t rows = b - a;
        rc = io_rc(cudaMemcpy2DAsync(k + a * page, page, s0 + off, pitch, page, rows,
                                     cudaMemcpyDefault, st));
        if (!rc)
            rc = io_rc(cudaMemcpy2DAsync(v + a * page, page, s0 + off + page, pitch, page, rows,
                                         cudaMemcpyDefault, st));
        a = b;
    }
    return rc;
}
