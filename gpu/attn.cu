/*
 * attn.cu — paged attention over the HBM pool (paged.h): batched decode and extend (a chunk
 * of new queries attending causally to a cached paged prefix and to themselves), read from
 * the blocks in place through the block table. This file holds the plan (gpu_attn_plan_make*),
 * the dispatch (gpu_attn_run), the split-K merge kernel, and the CUDA-core kernel
 * (GPU_ATTN_SIMT); the tensor-core kernels that run by default (GPU_ATTN_MMA, sm_80+) are in
 * attn_mma.cu. The CUDA-core kernel is kept as the path for pre-sm_80 GPUs and as a second,
 * independent implementation that the tests run on every case.
 *
 * The CUDA-core kernel serves both decode and extend: a CTA owns R query rows that share one KV head: q_tile query tokens
 * x group query heads (decode: 1 token x group heads, R = group; extend: R = 8). Every K/V
 * element it loads is used by all R rows, so a KV head's cache is read once per query tile
 * (GQA costs no extra bytes). Decode with group > 4 splits the group over 2 CTAs (hparts)
 * whose second K/V read mostly hits L2: 8 rows in one CTA are bound by FP32 issue.
 * Grid = (splits, query tiles * kv_heads * hparts, seqs).
 *
 * Work inside a CTA (NW = 4 warps). A token's D elements are split across LPT = D/8 lanes,
 * 16 bytes (8 elements) each, so a warp covers TPW = 32/LPT tokens per step and the CTA
 * STEP = NW*TPW tokens; each lane issues U tokens' K and V loads before using any (U*32 bytes
 * in flight per thread). Per token: a partial dot per row, an xor-shuffle sum over the LPT
 * lanes, then an online softmax (base 2, q pre-scaled by sm_scale*log2 e) whose running max
 * is rescaled once per U tokens. Each token slot keeps its own (m, l, acc); slots are merged
 * by shuffles, warps through shared memory. With split-K each split writes a normalised
 * partial o and its log-sum-exp to the workspace, and merge_kernel combines them.
 *
 * Napkin math (Llama-3-8B decode, bf16, D=128, H_kv=8): a token costs 2*8*128*2 = 4 KiB of
 * K/V per layer; B*L = 128k tokens = 512 MiB per layer, 0.18 ms at 2.95 TB/s. FLOPs:
 * 4*group*D per token-head = 2 KiB FLOP per 512 B; from group 4 up this kernel is bound by
 * FP32 issue (0.47-0.51 of the HBM copy limit at group 8), the mma kernel by bytes.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>

#include <atomic>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gpu/attn_int.h"
#include "gpu/paged.h"

namespace {

constexpr int NW = 4; /* warps per CTA */
constexpr int EXTEND_ROWS = 8;

template <typename T> __device__ __forceinline__ void unpack8(const uint4 &u, float f[8])
{
    float2 a = attn_cvt<T>::to2(u.x), b = attn_cvt<T>::to2(u.y), c = attn_cvt<T>::to2(u.z), d = attn_cvt<T>::to2(u.w);
    f[0] = a.x, f[1] = a.y, f[2] = b.x, f[3] = b.y, f[4] = c.x, f[5] = c.y, f[6] = d.x, f[7] = d.y;
}

__device__ __forceinline__ uint4 ldg16(const void *p)
{
    return __ldg(reinterpret_cast<const uint4 *>(p));
}

template <typename T, int D, int R, int U>
__global__ void __launch_bounds__(NW * 32) paged_attn_kernel(const attn_kparams p)
{
    constexpr int LPT = D / 8;
    constexpr int TPW = 32 / LPT;
    constexpr int STEP = NW * TPW;
    __shared__ float sm_acc[NW][R][D];
    __shared__ float sm_m[NW][R], sm_l[NW][R];

    const int split = blockIdx.x;
    const int hpart = blockIdx.y % p.hparts;
    const int kvh = (blockIdx.y / p.hparts) % p.H;
    const int qtile = blockIdx.y / p.hparts / p.H;
    const int seq = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int slot = lane / LPT, dl = lane % LPT;

    int q0, qn;
    if (p.qo_indptr) {
        q0 = p.qo_indptr[seq];
        qn = p.qo_indptr[seq + 1] - q0;
    } else {
        q0 = seq;
        qn = 1;
    }
    const int t0 = qtile * (int)p.q_tile;
    if (t0 >= qn)
        return; /* a tile past this sequence's queries: nothing to write */
    const int nt = min((int)p.q_tile, qn - t0);
    const int kv_len = p.kv_lens[seq];
    const int prefix = kv_len - qn; /* position of query 0 */
    const int G = (int)p.G, Gp = (int)p.gpart, g0 = hpart * Gp;

    /* rows: r -> query token t0 + r / Gp, query head kvh*G + g0 + r % Gp; valid if the token
     * is < nt and the head < G (hparts = 1, g0 = 0, Gp = G except for decode with G > 4) */
    float q[R][8], acc[R][8], m[R], l[R];
    int lim[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int qi = r / Gp, g = g0 + r % Gp;
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++)
            acc[r][j] = 0.0f;
        if (qi < nt && g < G) {
            const T *qp = static_cast<const T *>(p.q) +
                          ((size_t)(q0 + t0 + qi) * p.Hq + (size_t)kvh * G + g) * D + dl * 8;
            float f[8];
            unpack8<T>(ldg16(qp), f);
#pragma unroll
            for (int j = 0; j < 8; j++)
                q[r][j] = f[j] * p.qscale;
            lim[r] = prefix + t0 + qi; /* last cache position this row sees */
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++)
                q[r][j] = 0.0f;
            lim[r] = -1;
        }
    }

    const int kv_hi = min(kv_len, prefix + t0 + nt); /* exclusive bound for every row */
    const int kv_begin = split * (int)p.chunk;
    const int kv_end = min(kv_begin + (int)p.chunk, kv_hi);

    const uint32_t bt = 1u << p.bt_shift;
    const size_t page = (size_t)bt * p.H * D;          /* K (or V) of one layer of a block */
    const size_t slab = (size_t)p.layers * 2 * page;   /* one block */
    const T *base = static_cast<const T *>(p.pool) + (size_t)p.layer * 2 * page +
                    (size_t)kvh * D + dl * 8;
    const int32_t *table = p.kv_indices + p.kv_indptr[seq];
    const size_t tok_stride = (size_t)p.H * D;

    /* The loop bound is warp-uniform (it depends on warp, not slot) so every shuffle below
     * has all 32 lanes present. */
    for (int it = kv_begin + warp * TPW; it < kv_end; it += U * STEP) {
        uint4 kr[U], vr[U];
        int pos[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            pos[u] = it + u * STEP + slot;
            if (pos[u] < kv_end) {
                const int32_t blk = __ldg(table + (pos[u] >> p.bt_shift));
                const T *kp = base + (size_t)blk * slab + (size_t)(pos[u] & (bt - 1)) * tok_stride;
                kr[u] = ldg16(kp);
                vr[u] = ldg16(kp + page);
            } else {
                kr[u] = make_uint4(0, 0, 0, 0);
                vr[u] = make_uint4(0, 0, 0, 0);
            }
        }
        float s[U][R];
#pragma unroll
        for (int u = 0; u < U; u++) {
            float k[8];
            unpack8<T>(kr[u], k);
#pragma unroll
            for (int r = 0; r < R; r++) {
                float d = 0.0f;
#pragma unroll
                for (int j = 0; j < 8; j++)
                    d = fmaf(q[r][j], k[j], d);
#pragma unroll
                for (int o = LPT / 2; o > 0; o >>= 1)
                    d += __shfl_xor_sync(0xffffffffu, d, o);
                s[u][r] = (pos[u] < kv_end && pos[u] <= lim[r]) ? d : -INFINITY;
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            float mx = m[r];
#pragma unroll
            for (int u = 0; u < U; u++)
                mx = fmaxf(mx, s[u][r]);
            const float sc = exp2f(m[r] - attn_safe_max(mx));
            m[r] = mx;
            l[r] *= sc;
#pragma unroll
            for (int j = 0; j < 8; j++)
                acc[r][j] *= sc;
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            float v[8];
            unpack8<T>(vr[u], v);
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float pr = exp2f(s[u][r] - attn_safe_max(m[r]));
                l[r] += pr;
#pragma unroll
                for (int j = 0; j < 8; j++)
                    acc[r][j] = fmaf(pr, v[j], acc[r][j]);
            }
        }
    }

    /* Merge the TPW token slots of the warp (lanes dl, dl+LPT, ...). */
#pragma unroll
    for (int o = LPT; o < 32; o <<= 1) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[r], o);
            const float lo = __shfl_xor_sync(0xffffffffu, l[r], o);
            const float mx = fmaxf(m[r], mo);
            const float a = exp2f(m[r] - attn_safe_max(mx)), b = exp2f(mo - attn_safe_max(mx));
            l[r] = l[r] * a + lo * b;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float ao = __shfl_xor_sync(0xffffffffu, acc[r][j], o);
                acc[r][j] = acc[r][j] * a + ao * b;
            }
            m[r] = mx;
        }
    }
    if (slot == 0) {
#pragma unroll
        for (int r = 0; r < R; r++) {
#pragma unroll
            for (int j = 0; j < 8; j++)
                sm_acc[warp][r][dl * 8 + j] = acc[r][j];
            if (dl == 0) {
                sm_m[warp][r] = m[r];
                sm_l[warp][r] = l[r];
            }
        }
    }
    __syncthreads();

    /* Merge the warps and write: thread i handles elements i, i+NW*32, ... of [R][D]. */
    for (int e = threadIdx.x; e < R * D; e += NW * 32) {
        const int r = e / D, d = e % D;
        if (r / Gp >= nt || g0 + r % Gp >= G)
            continue;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < NW; w++)
            mx = fmaxf(mx, sm_m[w][r]);
        float lsum = 0.0f, o = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; w++) {
            const float f = exp2f(sm_m[w][r] - attn_safe_max(mx));
            lsum += sm_l[w][r] * f;
            o += sm_acc[w][r][d] * f;
        }
        const float val = lsum > 0.0f ? o / lsum : 0.0f;
        const size_t row = (size_t)(q0 + t0 + r / Gp) * p.Hq + (size_t)kvh * G + g0 + r % Gp;
        if (p.tmp_o) {
            p.tmp_o[(row * p.splits + split) * D + d] = val;
            if (d == 0)
                p.tmp_lse[row * p.splits + split] =
                    lsum > 0.0f ? mx + log2f(lsum) : -INFINITY;
        } else {
            static_cast<T *>(p.out)[row * D + d] = attn_cvt<T>::from(val);
        }
    }
}

/* One warp per (query row, head): combine the splits' partial outputs by their LSEs. */
template <typename T, int D>
__global__ void __launch_bounds__(256) merge_kernel(const float *tmp_o, const float *tmp_lse,
                                                   T *out, uint32_t rows, uint32_t splits)
{
    constexpr int PER = D / 32;
    const uint32_t row = blockIdx.x * 8 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows)
        return;
    const float *lse = tmp_lse + (size_t)row * splits;
    float mx = -INFINITY;
    for (uint32_t s = 0; s < splits; s++)
        mx = fmaxf(mx, lse[s]);
    float o[PER], wsum = 0.0f;
#pragma unroll
    for (int j = 0; j < PER; j++)
        o[j] = 0.0f;
    for (uint32_t s = 0; s < splits; s++) {
        const float w = exp2f(lse[s] - attn_safe_max(mx));
        if (w == 0.0f)
            continue; /* an empty split: its o may be anything finite, skip reading it */
        wsum += w;
        const float *po = tmp_o + ((size_t)row * splits + s) * D;
#pragma unroll
        for (int j = 0; j < PER; j++)
            o[j] = fmaf(w, po[lane + 32 * j], o[j]);
    }
#pragma unroll
    for (int j = 0; j < PER; j++)
        out[(size_t)row * D + lane + 32 * j] = attn_cvt<T>::from(wsum > 0.0f ? o[j] / wsum : 0.0f);
}

} // namespace

/* Per-device cache: 0 = not queried yet (an H100 has 132 SMs; no device has 0). */
static std::atomic<int> g_sms[ATTN_MAX_DEV], g_major[ATTN_MAX_DEV];

bool attn_device(int *dev, attn_dev_info *info)
{
    int d = 0;
    if (cudaGetDevice(&d) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    *dev = d;
    if (d < ATTN_MAX_DEV) {
        info->sms = g_sms[d].load(std::memory_order_relaxed);
        info->major = g_major[d].load(std::memory_order_relaxed);
        if (info->sms > 0 && info->major > 0)
            return true;
    }
    if (cudaDeviceGetAttribute(&info->sms, cudaDevAttrMultiProcessorCount, d) != cudaSuccess ||
        cudaDeviceGetAttribute(&info->major, cudaDevAttrComputeCapabilityMajor, d) !=
            cudaSuccess ||
        info->sms <= 0 || info->major <= 0) {
        cudaGetLastError();
        return false;
    }
    if (d < ATTN_MAX_DEV) {
        g_sms[d].store(info->sms, std::memory_order_relaxed);
        g_major[d].store(info->major, std::memory_order_relaxed);
    }
    return true;
}

namespace {

int ilog2(uint32_t x)
{
    int s = 0;
    while ((1u << s) < x)
        s++;
    return s;
}

int check_shapes(const gpu_attn_params *p)
{
    if (!p || (p->dtype != KVT_DTYPE_BF16 && p->dtype != KVT_DTYPE_FP16))
        return -EINVAL;
    if (p->head_dim != 64 && p->head_dim != 128)
        return -EINVAL;
    if (!p->num_kv_heads || !p->num_qo_heads || p->num_qo_heads % p->num_kv_heads)
        return -EINVAL;
    uint32_t g = p->num_qo_heads / p->num_kv_heads;
    if (g < 1 || g > 8)
        return -EINVAL;
    if (!p->block_tokens || p->block_tokens > 4096 || (p->block_tokens & (p->block_tokens - 1)))
        return -EINVAL;
    if (!p->layers || p->layer >= p->layers || !p->num_seqs || p->num_seqs > 65535)
        return -EINVAL;
    return 0;
}

template <typename T, int D, int R>
cudaError_t launch_rows(const attn_kparams &kp, dim3 grid, cudaStream_t st)
{
    constexpr int U = R <= 4 ? 4 : 2;
    paged_attn_kernel<T, D, R, U><<<grid, NW * 32, 0, st>>>(kp);
    return cudaGetLastError();
}

template <typename T, int D>
cudaError_t launch_t_d(const attn_kparams &kp, uint32_t rows, dim3 grid, cudaStream_t st)
{
    switch (rows) {
    case 1: return launch_rows<T, D, 1>(kp, grid, st);
    case 2: return launch_rows<T, D, 2>(kp, grid, st);
    case 3: return launch_rows<T, D, 3>(kp, grid, st);
    case 4: return launch_rows<T, D, 4>(kp, grid, st);
    case 5: return launch_rows<T, D, 5>(kp, grid, st);
    case 6: return launch_rows<T, D, 6>(kp, grid, st);
    case 7: return launch_rows<T, D, 7>(kp, grid, st);
    default: return launch_rows<T, D, 8>(kp, grid, st);
    }
}

template <typename T, int D>
cudaError_t launch_merge(const attn_kparams &kp, uint32_t total_q, cudaStream_t st)
{
    const uint32_t rows = total_q * kp.Hq;
    merge_kernel<T, D><<<(rows + 7) / 8, 256, 0, st>>>(kp.tmp_o, kp.tmp_lse,
                                                       static_cast<T *>(kp.out), rows, kp.splits);
    return cudaGetLastError();
}

template <typename T, int D> int occ_t_d(uint32_t rows)
{
    int n = 0;
    cudaError_t e;
#define KVT_OCC(R)                                                                         \
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(                                     \
        &n, paged_attn_kernel<T, D, R, (R <= 4 ? 4 : 2)>, NW * 32, 0)
    switch (rows) {
    case 1: KVT_OCC(1); break;
    case 2: KVT_OCC(2); break;
    case 3: KVT_OCC(3); break;
    case 4: KVT_OCC(4); break;
    case 5: KVT_OCC(5); break;
    case 6: KVT_OCC(6); break;
    case 7: KVT_OCC(7); break;
    default: KVT_OCC(8); break;
    }
#undef KVT_OCC
    if (e != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return n;
}

/* Resident CTAs per SM of the kernel for (dtype, head_dim, rows), cached per device. */
int occupancy(int dev, kvt_dtype dt, uint32_t D, uint32_t rows)
{
    static std::atomic<int> cache[ATTN_MAX_DEV][2][2][9];
    const int a = dt == KVT_DTYPE_BF16, b = D == 128, r = rows > 8 ? 8 : (int)rows;
    std::atomic<int> *c = dev < ATTN_MAX_DEV ? &cache[dev][a][b][r] : nullptr;
    int n = c ? c->load(std::memory_order_relaxed) : 0;
    if (n > 0)
        return n;
    n = a ? (b ? occ_t_d<__nv_bfloat16, 128>(rows) : occ_t_d<__nv_bfloat16, 64>(rows))
          : (b ? occ_t_d<__half, 128>(rows) : occ_t_d<__half, 64>(rows));
    if (n > 0 && c)
        c->store(n, std::memory_order_relaxed);
    return n;
}

} // namespace

/* Split-K by wave quantisation (FlashAttention-2's heuristic, with the measured number of
 * resident CTAs): efficiency(s) = waves / ceil(waves), waves = ctas*s / capacity; take the
 * smallest allowed s within 95% of the best (allowed: s <= step or a multiple of step). The
 * first SIMT plan (~4 CTAs per SM, ignoring occupancy) gave B=8 L=4k 9 splits = 1.45 waves:
 * 1.55 TB/s (bench/RESULTS.md). From 4 waves up the tail costs < 20%: no split. */
static uint32_t pick_splits(uint64_t ctas, double cap, uint32_t kv, uint32_t step)
{
    const uint32_t min_chunk = 64;
    uint32_t smax = (kv + min_chunk - 1) / min_chunk;
    if (smax > 128)
        smax = 128;
    if ((double)ctas >= 4.0 * cap || smax <= 1)
        return 1;
    double eff[129], best = 0;
    for (uint32_t s = 1; s <= smax; s++) {
        const double waves = (double)ctas * s / cap;
        eff[s] = (s <= step || s % step == 0) ? waves / ceil(waves) : 0.0;
        if (eff[s] > best)
            best = eff[s];
    }
    for (uint32_t s = 1; s <= smax; s++)
        if (eff[s] >= 0.95 * best)
            return s;
    return 1;
}

extern "C" int gpu_attn_plan_make_ex(const gpu_attn_params *p, uint32_t total_q,
                                     uint32_t max_q_len, uint32_t max_kv_len,
                                     uint32_t force_splits, gpu_attn_kernel kernel,
                                     gpu_attn_plan *plan)
{
    int rc = check_shapes(p);
    if (rc)
        return rc;
    if (!plan || !total_q || !max_q_len || (!p->qo_indptr && max_q_len != 1) ||
        (!p->qo_indptr && total_q != p->num_seqs) || force_splits > 65535 ||
        (kernel != GPU_ATTN_AUTO && kernel != GPU_ATTN_SIMT && kernel != GPU_ATTN_MMA))
        return -EINVAL;
    int dev;
    attn_dev_info di;
    if (!attn_device(&dev, &di))
        return -ENODEV;
    const int sms = di.sms, mma_ok = di.major >= 8;
    if (kernel == GPU_ATTN_AUTO)
        kernel = mma_ok ? GPU_ATTN_MMA : GPU_ATTN_SIMT;
    if (kernel == GPU_ATTN_MMA && !mma_ok)
        return -EINVAL;
    const uint32_t G = p->num_qo_heads / p->num_kv_heads;
    const bool mma = kernel == GPU_ATTN_MMA;
    gpu_attn_plan pl = {};
    pl.total_q = total_q;
    pl.max_q_len = max_q_len;
    pl.kernel = kernel;
    pl.cluster = 1;
    pl.hparts = 1;
    if (max_q_len == 1) {
        /* SIMT, group > 4: two CTAs of ceil(G/2) heads each read the same K/V (the second
         * read mostly hits L2); at R = 8 one CTA is bound by its FP32 issue rate. MMA: the
         * group is the M rows of one CTA. */
        pl.q_tile = 1;
        pl.hparts = (!mma && G > 4) ? 2 : 1;
        pl.rows = (G + pl.hparts - 1) / pl.hparts;
    } else if (mma) {
        pl.q_tile = ATTN_MMA_EXT_ROWS / G;
        pl.rows = pl.q_tile * G;
    } else {
        pl.q_tile = EXTEND_ROWS / G;
        pl.rows = EXTEND_ROWS;
    }
    const uint64_t tiles = (uint64_t)(max_q_len + pl.q_tile - 1) / pl.q_tile;
    if (tiles * p->num_kv_heads * pl.hparts > 65535)
        return -EINVAL; /* grid.y limit: split the call into smaller query chunks */
    const uint64_t ctas = tiles * p->num_kv_heads * pl.hparts * p->num_seqs;
    const uint32_t kv = max_kv_len ? max_kv_len : 1;
    /* MMA decode: splits up to maxc share a cluster and merge in the kernel */
    /* MMA decode with few (sequence, KV head) pairs (<= 64): CTAs of 8 warps, 1 per SM,
     * about 64 of them in all (splits = 64 / pairs, merged in one cluster). Measured on the
     * H100 (bench_gpu_attn --sweep, bench/RESULTS.md): B=1 L=32k 57 us at 8 splits x 8
     * warps against 70 us at 32 x 4 (256 CTAs, 2 per SM); B=8 L=4k 57 us unsplit x 8 warps
     * against 68 us at 4 splits x 4 warps. More, smaller CTAs lose to their start-up and
     * merge. From 64 pairs up: 4 warps, 2 CTAs per SM, splits by wave quantisation. */
    const bool few = mma && max_q_len == 1 && ctas <= 64;
    pl.warps = few ? 8 : 4;
    int maxc = 1; /* MMA decode: splits up to maxc share a cluster and merge in the kernel */
    if (mma && max_q_len == 1 &&
        (maxc = attn_mma_max_cluster(dev, p->dtype, p->head_dim, pl.warps)) <= 0)
        return -ENODEV;
    uint32_t splits = force_splits;
    if (!splits && few) {
        const uint32_t smax = (kv + 63) / 64; /* at least 64 tokens per split */
        splits = (uint32_t)(64 / ctas);
        if (splits > (uint32_t)maxc)
            splits = (uint32_t)maxc;
        if (splits > smax)
            splits = smax;
        if (splits < 1)
            splits = 1;
    } else if (!splits) {
        const int occ = mma ? attn_mma_occupancy(dev, max_q_len == 1, p->dtype, p->head_dim)
                            : occupancy(dev, p->dtype, p->head_dim, pl.rows);
        if (occ <= 0)
            return -ENODEV;
        splits = pick_splits(ctas, (double)sms * occ, kv, (uint32_t)maxc);
    }
    /* chunks are rounded to 16 tokens (the MMA decode tile; the SIMT step) so splits start
     * aligned; a forced count keeps its trailing empty splits (tests), a chosen one drops
     * them */
    pl.chunk_tokens = splits > 1 ? (((kv + splits - 1) / splits + 15) & ~15u) : kv;
    pl.num_splits = force_splits ? splits : (kv + pl.chunk_tokens - 1) / pl.chunk_tokens;
    if (maxc > 1 && pl.num_splits > 1) {
        if (pl.num_splits <= (uint32_t)maxc) {
            pl.cluster = pl.num_splits;
        } else {
            pl.cluster = (uint32_t)maxc;
            pl.num_splits = (pl.num_splits + maxc - 1) / maxc * maxc; /* empty tail splits */
        }
    }
    const uint32_t partials = pl.num_splits / pl.cluster;
    if (partials > 1)
        pl.workspace_bytes = (size_t)total_q * p->num_qo_heads * partials *
                             (p->head_dim + 1) * sizeof(float);
    *plan = pl;
    return 0;
}

extern "C" int gpu_attn_plan_make(const gpu_attn_params *p, uint32_t total_q, uint32_t max_q_len,
                                  uint32_t max_kv_len, uint32_t force_splits, gpu_attn_plan *plan)
{
    return gpu_attn_plan_make_ex(p, total_q, max_q_len, max_kv_len, force_splits, GPU_ATTN_AUTO,
                                 plan);
}

/* The plan's shape fits the call and the kernel. */
static bool plan_ok(const gpu_attn_params *p, const gpu_attn_plan *pl)
{
    const uint32_t G = p->num_qo_heads / p->num_kv_heads;
    if (!pl->num_splits || !pl->cluster || pl->num_splits % pl->cluster || !pl->q_tile ||
        (!p->qo_indptr && pl->max_q_len != 1))
        return false;
    if (pl->kernel == GPU_ATTN_MMA) {
        if (pl->max_q_len == 1)
            return pl->q_tile == 1 && pl->hparts == 1 && pl->cluster <= 16 &&
                   (pl->warps == 4 || pl->warps == 8);
        return pl->q_tile == ATTN_MMA_EXT_ROWS / G && pl->hparts == 1 && pl->cluster == 1;
    }
    return pl->kernel == GPU_ATTN_SIMT && pl->cluster == 1 && pl->hparts && pl->hparts <= G &&
           pl->q_tile * ((G + pl->hparts - 1) / pl->hparts) <= pl->rows && pl->rows <= 8 &&
           (pl->hparts == 1 || pl->q_tile == 1);
}

extern "C" int gpu_attn_run(const gpu_attn_params *p, const gpu_attn_plan *plan, void *workspace,
                            size_t workspace_bytes, struct CUstream_st *stream)
{
    int rc = check_shapes(p);
    if (rc)
        return rc;
    if (!plan || !p->q || !p->out || !p->pool || !p->kv_indptr || !p->kv_indices || !p->kv_lens)
        return -EINVAL;
    if (((uintptr_t)p->q | (uintptr_t)p->out | (uintptr_t)p->pool) & 15)
        return -EINVAL;
    if (!plan_ok(p, plan))
        return -EINVAL;
    const uint32_t partials = plan->num_splits / plan->cluster;
    if (partials > 1 && (!workspace || workspace_bytes < plan->workspace_bytes ||
                         ((uintptr_t)workspace & 15)))
        return -EINVAL;
    int dev;
    attn_dev_info di;
    if (!attn_device(&dev, &di))
        return -ENODEV;
    if (plan->kernel == GPU_ATTN_MMA && di.major < 8)
        return -EINVAL;
    const uint32_t G = p->num_qo_heads / p->num_kv_heads;

    attn_kparams kp = {};
    kp.q = p->q;
    kp.out = p->out;
    kp.pool = p->pool;
    kp.qo_indptr = p->qo_indptr;
    kp.kv_indptr = p->kv_indptr;
    kp.kv_indices = p->kv_indices;
    kp.kv_lens = p->kv_lens;
    kp.Hq = p->num_qo_heads;
    kp.H = p->num_kv_heads;
    kp.G = G;
    kp.hparts = plan->hparts;
    kp.gpart = (G + plan->hparts - 1) / plan->hparts;
    kp.layers = p->layers;
    kp.layer = p->layer;
    kp.bt_shift = (uint32_t)ilog2(p->block_tokens);
    kp.q_tile = plan->q_tile;
    kp.splits = partials;
    kp.cluster = plan->cluster;
    kp.warps = plan->warps;
    kp.chunk = plan->chunk_tokens;
    const float scale = p->sm_scale != 0.0f ? p->sm_scale : 1.0f / sqrtf((float)p->head_dim);
    kp.qscale = scale * 1.4426950408889634f;
    if (partials > 1) {
        kp.tmp_o = static_cast<float *>(workspace);
        kp.tmp_lse = kp.tmp_o + (size_t)plan->total_q * p->num_qo_heads * partials *
                                    p->head_dim;
    }
    const uint32_t tiles = (plan->max_q_len + plan->q_tile - 1) / plan->q_tile;
    cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    cudaError_t e;
    const bool bf = p->dtype == KVT_DTYPE_BF16;
    if (plan->kernel == GPU_ATTN_MMA) {
        if (plan->max_q_len == 1)
            e = attn_mma_decode_launch(dev, kp, p->dtype, p->head_dim,
                                       dim3(plan->num_splits, p->num_kv_heads, p->num_seqs), st);
        else
            e = attn_mma_extend_launch(dev, kp, p->dtype, p->head_dim,
                                       dim3(plan->num_splits, tiles * p->num_kv_heads, p->num_seqs),
                                       st);
    } else {
        dim3 grid(plan->num_splits, tiles * p->num_kv_heads * plan->hparts, p->num_seqs);
        const uint32_t rows = plan->rows;
        if (p->head_dim == 128)
            e = bf ? launch_t_d<__nv_bfloat16, 128>(kp, rows, grid, st)
                   : launch_t_d<__half, 128>(kp, rows, grid, st);
        else
            e = bf ? launch_t_d<__nv_bfloat16, 64>(kp, rows, grid, st)
                   : launch_t_d<__half, 64>(kp, rows, grid, st);
    }
    if (e == cudaSuccess && partials > 1) {
        if (p->head_dim == 128)
            e = bf ? launch_merge<__nv_bfloat16, 128>(kp, plan->total_q, st)
                   : launch_merge<__half, 128>(kp, plan->total_q, st);
        else
            e = bf ? launch_merge<__nv_bfloat16, 64>(kp, plan->total_q, st)
                   : launch_merge<__half, 64>(kp, plan->total_q, st);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return -EIO;
    }
    return 0;
}
