/*
 * gpu.h — the CUDA side of kvtier, as seen by the engine.
 *
 * Built in two halves: *_cuda.c / *.cu when CMake found a CUDA toolkit (KVT_HAVE_CUDA), and
 * *_nocuda.c otherwise. Every function works in both builds and on machines without a GPU:
 * there it reports -ENODEV and the engine carries on without the GPU.
 *
 * Thread safety: all functions may be called from any thread.
 */
#ifndef KVT_GPU_H
#define KVT_GPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices: 0 without a GPU, a driver, or a CUDA build. */
int gpu_device_count(void);

/* Page-lock host memory [p, p+n) for DMA (cudaHostRegister). 0; -ENODEV without a usable
 * GPU; -EIO if CUDA refuses. */
int gpu_host_register(void *p, size_t n);
/* Undo gpu_host_register. */
void gpu_host_unregister(void *p);


/* ---------------------------------------------------------------- runtime helpers (rt.cu)
 * Thin wrappers so that engine/ (plain C) needs no CUDA header. Streams are cudaStream_t
 * (NULL = the legacy default stream); events are cudaEvent_t created without timing.
 * All return 0, -ENODEV (no GPU / no CUDA build), -EINVAL, -ENOMEM or -EIO (a CUDA error,
 * cleared). */
struct CUstream_st;
/* cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, s): any direction; from pageable host
 * memory it returns once the source has been staged (the buffer may be reused then). */
int gpu_memcpy(void *dst, const void *src, size_t n, struct CUstream_st *s);
int gpu_stream_sync(struct CUstream_st *s);
int gpu_event_create(void **ev);
void gpu_event_destroy(void *ev);          /* NULL: no-op; safe while still pending */
int gpu_event_record(void *ev, struct CUstream_st *s);
int gpu_stream_wait_event(struct CUstream_st *s, void *ev); /* later work on s waits for ev */
int gpu_current_device(int *dev);

/**
 * One layer of n blocks in the block layout ([layers][2][bt][H][D] per block, kvtier.h) into
 * per-layer K and V buffers in a "heads outer" layout (Hugging Face DynamicCache:
 * [batch=1][H][T][D]), permuting on the way:
 *
 *   k_dst[h*head_stride + (tok0 + i*bt + t)*D + d] = src[i][layer][0][t][h][d]
 *   v_dst[...same...]                            = src[i][layer][1][t][h][d]
 *
 * src[i] are device pointers or pinned host memory the device can address at the host
 * address (the engine's registered arena: it is read over PCIe by the SMs, no staging).
 * D * elem_bytes must be a multiple of 16 and every pointer 16-byte aligned.
 * ctas: CTAs to use (0: 2 per SM); fewer leave SMs to concurrent kernels.
 */
typedef struct gpu_gather_params {
    uint32_t layers, layer, block_tokens, kv_heads, head_dim, elem_bytes;
    void *k_dst, *v_dst;
    uint64_t head_stride; /* elements between heads in k_dst / v_dst (>= total tokens * D) */
    uint64_t tok0;        /* token index of block 0's first token in the destination */
    uint32_t ctas;
} gpu_gather_params;
int gpu_gather_layer(const void *const *src, uint32_t n, const gpu_gather_params *p,
                     struct CUstream_st *s);

/**
 * The same layer of the same n blocks into "tokens outer" K and V buffers, with the copy
 * engines (no SM work, so no contention with kernels running beside it):
 *
 *   k_dst[((tok0 + i*bt + t)*H + h)*D + d] = src[i][layer][0][t][h][d]
 *   v_dst[...same...]                      = src[i][layer][1][t][h][d]
 *
 * i.e. each block's K (V) page of the layer, bt*H*D elements, lands contiguously after the
 * previous block's. One cudaMemcpy2DAsync per run of blocks evenly spaced in memory (the
 * blocks of one put usually sit in adjacent arena slots) and per K/V: a run of m blocks is
 * m rows of one page each, source pitch the spacing. head_stride and ctas are not used.
 * src[i] as for gpu_gather_layer (pinned host memory the device can address, or device
 * memory); a Hugging Face [1][H][T][D] view of k_dst is its transpose(1, 2).
 */
int gpu_copy_layer(const void *const *src, uint32_t n, const gpu_gather_params *p,
                   struct CUstream_st *s);

#ifdef __cplusplus
}
#endif

#endif
