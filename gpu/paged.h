/*
 * paged.h — the HBM tier: a block pool in GPU memory, batched host<->HBM block copies, and
 * attention kernels that read K/V from the pool's blocks where they lie (no gather).
 *
 * ---------------------------------------------------------------- the pool's layout
 *
 * One cudaMalloc holds num_blocks block slabs. A slab has exactly the engine's host block
 * layout (kvtier.h, "Block layout"), so a host block reaches HBM in ONE contiguous copy:
 *
 *   pool   [num_blocks][layers][2 (K, V)][block_tokens][kv_heads][head_dim]   dtype
 *
 *   slab(b)            = pool + b * block_elems          block_elems = layers*2*bt*H*D
 *   K(b, l, t, h, :)   = pool + ((b*layers + l)*2 + 0)*bt*H*D + (t*H + h)*D
 *   V(b, l, t, h, :)   = K(b, l, t, h, :) + bt*H*D
 *
 * (bt = block_tokens, H = kv_heads, D = head_dim.) A kernel for layer l therefore sees,
 * per block, a [2][bt][H][D] page at stride layers*2*bt*H*D elements: FlashInfer's
 * "[max_num_pages, 2, page_size, num_heads, head_dim]" with a page stride that skips the
 * other layers. Per (token, head) the D elements are contiguous (256 B for D=128 bf16),
 * which is what the kernels load 16 bytes per thread at a time.
 * Why block-major, not layer-major ([layers][num_blocks][2][bt][H][D], one pool per layer):
 * layer-major makes one host block `layers` scattered copies of bt*H*D*2 elements (64 KiB
 * for Llama-3-8B) instead of one 2 MiB copy; the copy engines lose most of their rate on
 * such small pieces (bench/RESULTS_GPU.md), while the kernels do not care about the stride.
 *
 * Block ids are int32 indices into the pool. A block table is FlashInfer's CSR pair:
 *   kv_indptr  [num_seqs + 1]         row s of the table is kv_indices[kv_indptr[s] ..
 *   kv_indices [kv_indptr[num_seqs]]  kv_indptr[s+1]); entry j holds tokens [j*bt, (j+1)*bt)
 *   kv_lens    [num_seqs]             tokens cached for sequence s (the last block may be
 *                                     partly filled); needs ceil(kv_lens[s]/bt) entries.
 *
 * ---------------------------------------------------------------- pins
 *
 * A block is free, allocated, or allocated and pinned (pin count > 0). gpu_pool_free,
 * gpu_pool_load and gpu_pool_store refuse pinned blocks with -EBUSY. The pool never moves a
 * block: a block id is its place for its whole life, so a pinned block (in use by a kernel)
 * is never moved or overwritten. Pin before launching a kernel over a block table; unpin
 * after the stream has passed the kernel (an event or a stream callback).
 *
 * ---------------------------------------------------------------- threads, errors, streams
 *
 * Pool functions may be called from any thread; a mutex guards the allocator and pin
 * counts (held for bookkeeping only, never across a CUDA call). Functions return 0, a
 * negative errno (-EINVAL bad argument, -ENOMEM, -ENOSPC pool full, -EBUSY pinned, -ENODEV no
 * GPU or no CUDA build, -EIO a CUDA error, which is cleared), never print, never exit.
 * Copies and kernels are asynchronous on the given stream (NULL = the legacy default stream);
 * host buffers must stay valid until the stream has passed the call.
 *
 * The *_cuda.c / *.cu half implements these; paged_nocuda.c returns -ENODEV without CUDA.
 * The CPU references (attn_ref.c) work in both builds.
 */
#ifndef KVT_GPU_PAGED_H
#define KVT_GPU_PAGED_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st; /* cudaStream_t is struct CUstream_st *; no CUDA header needed here */

/* ---------------------------------------------------------------- batched block copies */

/** How a batch of scattered block copies is carried out (measured: bench_gpu_xfer). */
typedef enum gpu_xfer_method {
    GPU_XFER_AUTO = 0,     /**< the measured best for the size (see gpu_copy_blocks) */
    GPU_XFER_CE_LOOP = 1,  /**< copy engine, one cudaMemcpyAsync per (coalesced) run */
    GPU_XFER_CE_BATCH = 2, /**< copy engine, one cudaMemcpyBatchAsync for the whole batch */
    GPU_XFER_SM = 3,       /**< a copy kernel: SMs load/store 16 B per thread over PCIe */
} gpu_xfer_method;

/**
 * Copy n blocks of `bytes` bytes each: src[i] -> dst[i], in any order, asynchronously.
 * Directions: host->device, device->host, device->device (host memory must be pinned:
 * cudaHostAlloc, or cudaHostRegister on a GPU whose host pointers are device-usable, e.g.
 * the engine's registered arena on an H100). Runs where both src and dst are contiguous
 * are merged first (CE methods), so consecutive blocks cost one copy.
 * @param[in] src, dst  n pointers each; pairs must not overlap. Host arrays: read before
 *                      return (they may be freed after).
 * @param[in] method    GPU_XFER_AUTO picks the SM kernel for blocks under 1 MiB when
 *                      every pointer is 16-byte aligned and the host memory is pinned and
 *                      device-addressable (sampled: first, middle, last pointer; every one
 *                      up to 64), else CE_BATCH. Measured on the H100 (RESULTS_GPU.md):
 *                      scattered 16-256 KiB blocks: SM 0.91-0.97 of the pinned limit, copy
 *                      engines 0.07-0.86; 2-8 MiB: CE_BATCH 0.99-1.0, SM 0.92-0.97. The
 *                      copy engines leave the SMs to compute; the SM kernel takes some.
 *                      GPU_XFER_SM on memory that fails those checks: -EINVAL.
 * @param[in] sm_ctas   CTAs for GPU_XFER_SM; 0 = the default (2 per SM).
 * @param[in] stream    the stream to run on; CE_BATCH falls back to CE_LOOP on NULL.
 * @return 0; -EINVAL (NULL array/pointer, bytes 0; for SM: bytes % 16, misaligned or
 *         pageable memory); -ENOMEM; -ENODEV; -EIO.
 */
int gpu_copy_blocks(const void *const *src, void *const *dst, uint32_t n, uint64_t bytes,
                    gpu_xfer_method method, uint32_t sm_ctas, struct CUstream_st *stream);

/* ---------------------------------------------------------------- the HBM block pool */

typedef struct gpu_pool gpu_pool;

/**
 * Allocate a pool of num_blocks blocks of the layout's block size in one cudaMalloc on the
 * current device.
 * @return 0; -EINVAL (NULL, num_blocks 0 or > INT32_MAX); KVT_EBADLAYOUT; -ENOMEM (host or
 *         GPU memory); -ENODEV.
 */
int gpu_pool_create(const kvt_layout *layout, uint32_t num_blocks, gpu_pool **out);
/** Free the pool (NULL: no-op). The caller makes sure no kernel or copy still uses it. */
void gpu_pool_destroy(gpu_pool *pool);

/** Device pointer to block 0: [num_blocks][layers][2][bt][H][D] elements. */
void *gpu_pool_base(const gpu_pool *pool);
uint64_t gpu_pool_block_bytes(const gpu_pool *pool);
uint32_t gpu_pool_num_blocks(const gpu_pool *pool);
uint32_t gpu_pool_free_blocks(const gpu_pool *pool);
/** Device pointer to block id's slab, or NULL if id is out of range. */
void *gpu_pool_block_ptr(const gpu_pool *pool, int32_t id);

/** Allocate n blocks, all or nothing. ids: [n] out. @return 0; -EINVAL; -ENOSPC. */
int gpu_pool_alloc(gpu_pool *pool, uint32_t n, int32_t *ids);
/** Free n blocks, all or nothing. @return 0; -EINVAL (an id not allocated, or repeated);
 *  -EBUSY (one is pinned; nothing freed). */
int gpu_pool_free(gpu_pool *pool, uint32_t n, const int32_t *ids);
/** Pin / unpin n allocated blocks (counts nest). @return 0; -EINVAL (not allocated, or
 *  unpin of an unpinned block; nothing changed). */
int gpu_pool_pin(gpu_pool *pool, uint32_t n, const int32_t *ids);
int gpu_pool_unpin(gpu_pool *pool, uint32_t n, const int32_t *ids);
/** Pin count of a block (0 if free or out of range). */
uint32_t gpu_pool_pins(const gpu_pool *pool, int32_t id);

/**
 * Copy n host blocks into allocated, unpinned pool blocks: src[i] -> block ids[i].
 * @return 0; -EINVAL; -EBUSY (a block is pinned; nothing copied); -ENODEV; -EIO.
 */
int gpu_pool_load(gpu_pool *pool, uint32_t n, const int32_t *ids, const void *const *src,
                  gpu_xfer_method method, struct CUstream_st *stream);
/**
 * The match path: allocate n blocks, copy src[i] into them, and return their ids in
 * ids_out (the block-table row for these blocks). All or nothing.
 * @return as gpu_pool_alloc and gpu_pool_load.
 */
int gpu_pool_load_new(gpu_pool *pool, uint32_t n, const void *const *src, int32_t *ids_out,
                      gpu_xfer_method method, struct CUstream_st *stream);
/** Copy n pool blocks out to host memory: block ids[i] -> dst[i]. Pinned blocks may be
 *  read (a read does not move them). @return 0; -EINVAL; -ENODEV; -EIO. */
int gpu_pool_store(gpu_pool *pool, uint32_t n, const int32_t *ids, void *const *dst,
                   gpu_xfer_method method, struct CUstream_st *stream);

/* ---------------------------------------------------------------- paged attention */

/**
 * One attention call over one layer of paged K/V. Shapes (elements of dtype unless said):
 *
 *   q          [total_q, num_qo_heads, head_dim]   device; 16-byte aligned
 *   out        [total_q, num_qo_heads, head_dim]   device; 16-byte aligned
 *   pool       [num_blocks, layers, 2, block_tokens, num_kv_heads, head_dim]   device
 *   qo_indptr  [num_seqs + 1] int32, device: sequence s's queries are rows
 *              qo_indptr[s] .. qo_indptr[s+1]-1 of q; NULL = decode (one query per
 *              sequence: row s, total_q = num_seqs)
 *   kv_indptr  [num_seqs + 1] int32, device;  kv_indices [...] int32, device (block ids)
 *   kv_lens    [num_seqs] int32, device: tokens in the cache for sequence s, INCLUDING its
 *              q_len new tokens, whose K/V the caller has already written to the pool
 *              (FlashInfer's append-then-attend convention).
 *
 * Query i of sequence s (0-based among its q_len = qo_indptr[s+1]-qo_indptr[s] rows) sits at
 * position kv_lens[s] - q_len + i and attends to cache positions 0 .. that position
 * (causal; for decode: the whole cache). Query head hq uses KV head hq / (num_qo_heads /
 * num_kv_heads) (GQA). out = softmax(q·K^T * sm_scale) · V with fp32 accumulation; a row
 * with no key to attend to (kv_lens[s] - q_len + i < 0) gets zeros.
 * The caller guarantees kv_indptr rows long enough and block ids < num_blocks.
 */
typedef struct gpu_attn_params {
    kvt_dtype dtype;       /**< KVT_DTYPE_BF16 or KVT_DTYPE_FP16: q, out and the pool */
    uint32_t num_qo_heads; /**< a multiple of num_kv_heads; group = qo/kv in 1..8 */
    uint32_t num_kv_heads;
    uint32_t head_dim;     /**< 64 or 128 */
    uint32_t block_tokens; /**< a power of two in 1..4096 */
    uint32_t layers;       /**< layers per block slab */
    uint32_t layer;        /**< the layer to attend over, < layers */
    uint32_t num_blocks;   /**< blocks in the pool (for documentation and checks) */
    uint32_t num_seqs;
    float sm_scale;        /**< 0 = 1/sqrt(head_dim) */
    const void *q;
    void *out;
    const void *pool;
    const int32_t *qo_indptr;
    const int32_t *kv_indptr;
    const int32_t *kv_indices;
    const int32_t *kv_lens;
} gpu_attn_params;

/**
 * Which kernels run a call.
 * GPU_ATTN_MMA: tensor cores (mma.sync m16n8k16, bf16/fp16 operands, fp32 accumulation;
 *   sm_80 and newer), K/V tiles streamed into shared memory by cp.async. Decode: the GQA
 *   group's query heads are the mma's M rows, 16-key tiles per warp; split-K CTAs of one
 *   cluster (sm_90, up to 16) merge in the kernel, so a call whose splits fit one cluster is
 *   one launch. Extend: FlashAttention-2 tiles of 64 query rows (tokens x group heads) x 64
 *   keys, causal mask on the diagonal tiles only. Covers every configuration below.
 * GPU_ATTN_SIMT: the CUDA-core kernel (fp32 FMAs, 16-byte loads straight from the pool);
 *   kept as the reference implementation on the GPU and for GPUs older than sm_80.
 * GPU_ATTN_AUTO: MMA on sm_80 and newer, else SIMT.
 */
typedef enum gpu_attn_kernel {
    GPU_ATTN_AUTO = 0,
    GPU_ATTN_SIMT = 1,
    GPU_ATTN_MMA = 2,
} gpu_attn_kernel;

/** The host-side plan: kernel, grid shape and split-K, computed from scalars only. */
typedef struct gpu_attn_plan {
    uint32_t total_q;        /**< rows of q (num_seqs for decode) */
    uint32_t max_q_len;      /**< longest q_len (1 for decode) */
    uint32_t q_tile;         /**< query tokens per CTA */
    uint32_t hparts;         /**< CTAs sharing one KV head's query heads (SIMT decode, group>4: 2) */
    uint32_t rows;           /**< query rows per CTA: q_tile * ceil(group / hparts) */
    uint32_t num_splits;     /**< split-K factor: CTAs per (query tile, kv head) */
    uint32_t chunk_tokens;   /**< cache tokens per split */
    uint32_t kernel;         /**< GPU_ATTN_SIMT or GPU_ATTN_MMA */
    uint32_t cluster;        /**< splits merged inside the kernel (MMA decode; else 1); the
                                  workspace holds num_splits / cluster partials per row */
    uint32_t warps;          /**< warps per CTA of the MMA decode kernel: 8 (one CTA per
                                  SM) for <= 64 (sequence, KV head) pairs, else 4 */
    size_t workspace_bytes;  /**< device scratch gpu_attn_run needs (0 when not split, or when
                                  every split is merged in its cluster) */
} gpu_attn_plan;

/**
 * Plan a call (kernel GPU_ATTN_AUTO). MMA decode with at most 64 (sequence, KV head) pairs:
 * 8-warp CTAs, 64 / pairs splits (at least 64 cache tokens each) merged in one cluster, i.e.
 * one launch; otherwise split-K by wave quantisation against the kernel's measured resident
 * CTAs per SM (MMA decode: splits beyond the largest cluster come in multiples of it and
 * their clusters' partials are merged by a second kernel through the workspace).
 * @param[in]  p            the call (pointers are not read; only shapes).
 * @param[in]  total_q      rows of q.
 * @param[in]  max_q_len    longest q_len over the sequences (1 for decode).
 * @param[in]  max_kv_len   longest kv_lens[s].
 * @param[in]  force_splits 0 = choose; else this many splits (tests).
 * @param[out] plan
 * @return 0; -EINVAL (unsupported dtype, head_dim, group, block_tokens, layer, sizes);
 *         -ENODEV.
 */
int gpu_attn_plan_make(const gpu_attn_params *p, uint32_t total_q, uint32_t max_q_len,
                       uint32_t max_kv_len, uint32_t force_splits, gpu_attn_plan *plan);
/** gpu_attn_plan_make with the kernel chosen by the caller (tests, benchmarks); the same
 *  errors, and -EINVAL for GPU_ATTN_MMA on a GPU older than sm_80. */
int gpu_attn_plan_make_ex(const gpu_attn_params *p, uint32_t total_q, uint32_t max_q_len,
                          uint32_t max_kv_len, uint32_t force_splits, gpu_attn_kernel kernel,
                          gpu_attn_plan *plan);

/**
 * Launch the paged attention kernel (and, when split beyond one cluster, the merge kernel) on
 * stream, on the calling thread's current device. Thread-safe; no memset; per call one
 * cudaGetDevice and no attribute query (device attributes, kernel attributes and occupancy
 * are cached per process and device). The plan must come from the same kind of device.
 * @param[in] workspace  device scratch of at least plan->workspace_bytes (may be NULL when 0).
 * @return 0; -EINVAL (params inconsistent with the plan, misaligned q/out/pool, workspace
 *         too small, a tensor-core plan on a GPU older than sm_80); -ENODEV; -EIO (launch
 *         failed).
 */
int gpu_attn_run(const gpu_attn_params *p, const gpu_attn_plan *plan, void *workspace,
                 size_t workspace_bytes, struct CUstream_st *stream);

/* ---------------------------------------------------------------- CPU references */

/**
 * Float64 reference for gpu_attn_run, on host copies of every buffer (same shapes; the
 * pool as host bytes). out_ref: [total_q, num_qo_heads, head_dim] floats.
 * @return 0; -EINVAL.
 */
int gpu_attn_ref(const gpu_attn_params *p_host, uint32_t total_q, float *out_ref);

/* Element conversions (round to nearest even), for tests and references. */
float gpu_bf16_to_f32(uint16_t h);
uint16_t gpu_f32_to_bf16(float f);
float gpu_f16_to_f32(uint16_t h);
uint16_t gpu_f32_to_f16(float f);

#ifdef __cplusplus
}
#endif
#endif /* KVT_GPU_PAGED_H */
