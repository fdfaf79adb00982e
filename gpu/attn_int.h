/*
 * attn_int.h — what the two attention files share (C++ linkage, gpu/ only): the kernel
 * parameter block, element conversions, and the tensor-core (mma) launchers of attn_mma.cu
 * that gpu_attn_run (attn.cu) dispatches to.
 *
 * Partial results of split-K (workspace, fp32):
 *   tmp_o   [total_q * Hq][partials][D]   normalised partial output of each partial range
 *   tmp_lse [total_q * Hq][partials]      its log2-sum-exp (-inf: the range was empty)
 * merged by attn.cu's merge_kernel. The mma decode kernel merges the splits of one cluster
 * in the kernel (distributed shared memory), so its partials = splits / cluster.
 */
#ifndef KVT_GPU_ATTN_INT_H
#define KVT_GPU_ATTN_INT_H

#include <stdint.h>
#include <string.h>

#include <atomic>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gpu/paged.h"

struct attn_kparams {
    const void *q;
    void *out;
    const void *pool;
    const int32_t *qo_indptr;
    const int32_t *kv_indptr;
    const int32_t *kv_indices;
    const int32_t *kv_lens;
    float *tmp_o;   /* [total_q, Hq, partials, D] or NULL (not split) */
    float *tmp_lse; /* [total_q, Hq, partials] */
    float qscale;   /* sm_scale * log2(e) */
    uint32_t Hq, H, G, layers, layer, bt_shift, q_tile, splits, chunk;
    uint32_t hparts, gpart; /* SIMT decode, group > 4: the group in hparts CTAs of gpart */
    uint32_t cluster;       /* mma decode: splits merged in-kernel per cluster (1..16) */
    uint32_t warps;         /* mma decode: warps per CTA (4 or 8) */
};

__device__ __forceinline__ float2 attn_f2(__nv_bfloat162 h) { return __bfloat1622float2(h); }
__device__ __forceinline__ float2 attn_f2(__half2 h) { return __half22float2(h); }

/* Conversions for T = __nv_bfloat16 or __half (round to nearest even). */
template <typename T> struct attn_cvt {
    using T2 = typename std::conditional<std::is_same<T, __half>::value, __half2,
                                         __nv_bfloat162>::type;
    /* one register (two elements, lo first) -> two floats */
    static __device__ __forceinline__ float2 to2(uint32_t u)
    {
        T2 h;
        memcpy(&h, &u, 4);
        return attn_f2(h);
    }
    static __device__ __forceinline__ T from(float f) { return T(f); }
    /* two floats -> one register, lo in the low half (the mma operand order) */
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        const T2 h{T(lo), T(hi)};
        uint32_t u;
        memcpy(&u, &h, 4);
        return u;
    }
};

/* exp2 of a - b where b is a running max; -inf max means "nothing yet" (weights 0). */
__device__ __forceinline__ float attn_safe_max(float m) { return m == -INFINITY ? 0.0f : m; }

/* Per-device attributes, queried once per process and device (attn.cu; thread-safe: relaxed
 * atomics, a racing first use queries twice and stores the same value). dev = the caller's
 * current device (cudaGetDevice), so kernels, plans and caches follow a multi-GPU caller. */
constexpr int ATTN_MAX_DEV = 64; /* devices with cached entries; others query every call */
struct attn_dev_info {
    int sms;   /* multiprocessors */
    int major; /* compute capability major */
};
/* The current device and its attributes; false (error cleared) without a usable device. */
bool attn_device(int *dev, attn_dev_info *info);

/* attn_mma.cu. Launchers return cudaSuccess or the launch error (not cleared); dev is the
 * current device (attn_device): the kernel's attributes are set once per device. */
constexpr uint32_t ATTN_MMA_EXT_ROWS = 64; /* extend: query rows (token x head) per CTA */
/* Resident CTAs per SM of the mma decode (decode != 0) or extend kernel; -1 on error. */
int attn_mma_occupancy(int dev, int decode, kvt_dtype dt, uint32_t D);
/* Largest cluster the mma decode kernel (warps 4 or 8 per CTA) may use on this device: 16
 * when enough 16-CTA clusters fit at once to cover the SMs, else 8; 1 (no clusters) before
 * sm_90; -1 on error. */
int attn_mma_max_cluster(int dev, kvt_dtype dt, uint32_t D, uint32_t warps);
/* grid = (splits, kv_heads, seqs), cluster (kp.cluster, 1, 1). */
cudaError_t attn_mma_decode_launch(int dev, const attn_kparams &kp, kvt_dtype dt, uint32_t D,
                                   dim3 grid, cudaStream_t st);
/* grid = (splits, query tiles * kv_heads, seqs). */
cudaError_t attn_mma_extend_launch(int dev, const attn_kparams &kp, kvt_dtype dt, uint32_t D,
                                   dim3 grid, cudaStream_t st);

#endif
