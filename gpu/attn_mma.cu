/*
 * attn_mma.cu — tensor-core (mma.sync m16n8k16, bf16/fp16 operands, fp32 accumulation)
 * paged attention: batched decode and extend, reading K/V through the block table (paged.h)
 * with cp.async into shared memory. attn.cu plans and dispatches; its CUDA-core kernel is the
 * other path (GPU_ATTN_SIMT).
 *
 * Shared-memory tiles: [keys][D] elements, one 16-byte chunk c of row t stored at chunk
 * c ^ (t & 7) (XOR swizzle), so the 8 row addresses of an ldmatrix hit 8 distinct bank groups.
 *
 * Decode (mma_decode_kernel): a CTA owns (sequence, KV head, split) and DW warps (4, two
 * CTAs per SM; or 8, one per SM, for few sequences: the plan's choice); each warp
 * streams its own 16-key tiles (tiles w, w+DW, ... of the split) through a DST-deep cp.async
 * ring in its own shared memory (no CTA barrier in the loop). The GQA group's query heads are
 * the M rows of the mma (G <= 8 of 16 rows; the rest are zero and rows 8..15 are never
 * stored): S[8x16] = Q K^T is 2 n8 tiles x D/16 k-steps, P V is D/8 n8 tiles x 1 k-step, the
 * P fragment is the S accumulator repacked in registers (FlashAttention-2's layout). Warps
 * merge through shared memory; the splits of a cluster (up to 16 CTAs, sm_90) merge through
 * distributed shared memory, so a call whose splits fit one cluster is ONE launch.
 * Napkin math (Llama-3-8B, bf16): a 16-key tile is 8 KiB of K+V and 32 mma per warp; the
 * HBM rate (3 TB/s / 132 SMs = 23 GB/s per SM) needs ~3 tiles per us per SM: a few percent
 * of the mma issue rate, so decode stays bound by bytes for every group size.
 *
 * Extend (mma_extend_kernel): FlashAttention-2 tiles: a CTA owns 64 query rows (q_tile =
 * 64/G tokens x G heads of one KV head: every K/V tile serves the whole group), EW = 4
 * warps of 16 rows; 64-key tiles of K and V double-buffered by cp.async over the CTA; the
 * causal mask only on tiles that reach past the first row's position or the range's end.
 */
#include <math.h>
#include <stdint.h>

#include <cooperative_groups.h>

#include "gpu/attn_int.h"

namespace {

/* decode: warps per CTA (DW) is a template parameter: 4, or 8 when each warp has few tiles */
constexpr int DST = 3;  /* decode: cp.async stages per warp */
constexpr int KT = 16;  /* decode: keys per tile */
constexpr int EW = 4;   /* extend: warps per CTA (16 query rows each) */
constexpr int EKT = 64; /* extend: keys per tile */
static_assert(EW * 16 == (int)ATTN_MMA_EXT_ROWS, "extend rows");

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, asynchronously; valid == false writes 16 zero bytes. */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

/* Byte offset of chunk ch (16 B) of row t in a swizzled [rows][D] tile. */
template <int D> __device__ __forceinline__ uint32_t swz(int t, int ch)
{
    return (uint32_t)(t * D * 2 + ((ch ^ (t & 7)) << 4));
}

/* c[4] += A[16x16] * B[16x8] (row.col), fp32 accumulators; TY is the operand type's PTX
 * name. half(): rows 8..15 of A are zero, only c0, c1 (row lane/4) are kept. */
template <typename T> struct mma_t;
#define KVT_MMA_T(CT, TY)                                                                     \
    template <> struct mma_t<CT> {                                                           \
        static __device__ __forceinline__ void run(float c[4], uint32_t a0, uint32_t a1,     \
                                                   uint32_t a2, uint32_t a3, uint32_t b0,    \
                                                   uint32_t b1)                              \
        {                                                                                    \
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TY "." TY ".f32 "          \
                         "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"           \
                         : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                    \
                         : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));            \
        }                                                                                    \
        static __device__ __forceinline__ void half(float &c0, float &c1, uint32_t a0,       \
                                                    uint32_t a2, uint32_t b0, uint32_t b1)   \
        {                                                                                    \
            [[maybe_unused]] float d2, d3;                                                   \
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TY "." TY ".f32 "          \
                         "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%10,%10};\n"         \
                         : "+f"(c0), "+f"(c1), "=f"(d2), "=f"(d3)                            \
                         : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1), "f"(0.0f)); \
        }                                                                                    \
    };
KVT_MMA_T(__nv_bfloat16, "bf16")
KVT_MMA_T(__half, "f16")
#undef KVT_MMA_T

/* Cluster helpers: clusters exist from sm_90; older targets only ever see cluster == 1. */
__device__ __forceinline__ void cluster_barrier()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;\n" ::
                     : "memory");
#endif
}
__device__ __forceinline__ int cluster_rank()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    return (int)cooperative_groups::this_cluster().block_rank();
#else
    return 0;
#endif
}
__device__ __forceinline__ const float *cluster_peer(const float *p, int rank)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    return cooperative_groups::this_cluster().map_shared_rank(p, (unsigned)rank);
#else
    (void)rank;
    return p;
#endif
}

/* Pool addressing of one layer and KV head: K of token t = base + blk*slab + (t & bt-1)*tok;
 * V = that + page. */
struct pool_view {
    const char *base; /* bytes */
    size_t slab, page, tok; /* bytes */
    uint32_t bt_mask;
};
template <int D> __device__ __forceinline__ pool_view make_view(const attn_kparams &p, int kvh)
{
    pool_view v;
    const size_t bt = (size_t)1 << p.bt_shift;
    v.tok = (size_t)p.H * D * 2;
    v.page = bt * v.tok;
    v.slab = (size_t)p.layers * 2 * v.page;
    v.base = static_cast<const char *>(p.pool) + (size_t)p.layer * 2 * v.page + (size_t)kvh * D * 2;
    v.bt_mask = (uint32_t)bt - 1;
    return v;
}

template <int D, int DW> constexpr int decode_smem()
{
    return DW * DST * 2 * KT * D * 2 + (8 * D + 16) * 4;
}

template <typename T, int D, int DW>
__global__ void __launch_bounds__(DW * 32) mma_decode_kernel(const attn_kparams p)
{
    constexpr int CPT = D / 8;            /* 16-byte chunks per token row */
    constexpr int TILE_B = KT * D * 2;    /* bytes of one K (or V) tile */
    constexpr int STAGE_B = 2 * TILE_B;
    constexpr int LOADS = KT * CPT / 32;  /* cp.async per lane per K tile */
    constexpr int TSTEP = 32 / CPT;       /* tokens covered by one cp.async of the warp */
    extern __shared__ __align__(128) unsigned char smem[];
    __shared__ float sm_wm[DW][8], sm_wl[DW][8];
    float *cta_o = reinterpret_cast<float *>(smem + DW * DST * STAGE_B); /* [8][D] */
    float *cta_m = cta_o + 8 * D, *cta_l = cta_m + 8;                     /* [8], [8] */

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int split = blockIdx.x, kvh = blockIdx.y, seq = blockIdx.z;
    const int G = (int)p.G;
    int qrow = seq, qn = 1;
    if (p.qo_indptr) {
        qrow = p.qo_indptr[seq];
        qn = p.qo_indptr[seq + 1] - qrow; /* 0 or 1 (max_q_len 1) */
    }
    const int kv_len = p.kv_lens[seq];
    const int kv_begin = split * (int)p.chunk;
    const int kv_end = qn > 0 ? min(kv_begin + (int)p.chunk, kv_len) : kv_begin;
    const int ntiles = kv_end > kv_begin ? (kv_end - kv_begin + KT - 1) / KT : 0;
    const int nmine = ntiles > warp ? (ntiles - warp + DW - 1) / DW : 0;

    /* Q fragment of row g = lane/4 (query head kvh*G + g), d = 16ks + qd (+8) */
    const int g = lane >> 2, qd = (lane & 3) * 2;
    uint32_t qa[D / 16][2];
    {
        const T *qp = static_cast<const T *>(p.q) + ((size_t)qrow * p.Hq + (size_t)kvh * G + g) * D + qd;
        const bool ok = g < G && qn > 0;
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            qa[ks][0] = ok ? *reinterpret_cast<const uint32_t *>(qp + 16 * ks) : 0u;
            qa[ks][1] = ok ? *reinterpret_cast<const uint32_t *>(qp + 16 * ks + 8) : 0u;
        }
    }

    const pool_view pv = make_view<D>(p, kvh);
    const int32_t *table = p.kv_indices + p.kv_indptr[seq];
    unsigned char *wbuf = smem + warp * DST * STAGE_B;
    const uint32_t wbuf_s = smem_u32(wbuf);
    const int ch = lane % CPT, tl = lane / CPT;

    /* lane j (mod 16) holds the block id of token j of the tile: one load per tile, read
     * ahead one tile, spread by shuffles (any block_tokens) */
    auto load_pref = [&](int k) -> int32_t {
        const int t = kv_begin + (warp + DW * k) * KT + (lane & 15);
        return (k < nmine && t < kv_end) ? __ldg(table + (t >> p.bt_shift)) : 0;
    };
    auto issue = [&](int k, int32_t pref) {
        const int tile0 = kv_begin + (warp + DW * k) * KT;
        const uint32_t dst0 = wbuf_s + (uint32_t)((k % DST) * STAGE_B);
#pragma unroll
        for (int i = 0; i < LOADS; i++) {
            const int tt = tl + i * TSTEP, pos = tile0 + tt;
            const int32_t blk = __shfl_sync(0xffffffffu, pref, tt);
            const bool valid = pos < kv_end;
            const char *src = valid ? pv.base + (size_t)blk * pv.slab +
                                          (size_t)((uint32_t)pos & pv.bt_mask) * pv.tok + ch * 16
                                    : pv.base;
            const uint32_t dst = dst0 + swz<D>(tt, ch);
            cp_async16(dst, src, valid);
            cp_async16(dst + TILE_B, valid ? src + pv.page : pv.base, valid);
        }
    };

    int32_t pref = load_pref(0);
#pragma unroll
    for (int s = 0; s < DST - 1; s++) {
        if (s < nmine) {
            issue(s, pref);
            pref = load_pref(s + 1);
        }
        cp_commit();
    }

    float m = -INFINITY, l = 0.0f, acc[D / 8][2];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
        acc[i][0] = acc[i][1] = 0.0f;

    for (int k = 0; k < nmine; k++) {
        if (k + DST - 1 < nmine) {
            issue(k + DST - 1, pref);
            pref = load_pref(k + DST);
        }
        cp_commit();
        cp_wait<DST - 1>();
        __syncwarp();
        const uint32_t kb = wbuf_s + (uint32_t)((k % DST) * STAGE_B), vb = kb + TILE_B;
        float s[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            uint32_t r[4];
            const int key = (lane & 7) + ((lane >> 4) << 3);
            ldsm_x4(r, kb + swz<D>(key, 2 * ks + ((lane >> 3) & 1)));
            mma_t<T>::half(s[0][0], s[0][1], qa[ks][0], qa[ks][1], r[0], r[1]);
            mma_t<T>::half(s[1][0], s[1][1], qa[ks][0], qa[ks][1], r[2], r[3]);
        }
        const int tile0 = kv_begin + (warp + DW * k) * KT;
        float x[4], mx = -INFINITY;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int pos = tile0 + (i >> 1) * 8 + qd + (i & 1);
            x[i] = pos < kv_end ? s[i >> 1][i & 1] * p.qscale : -INFINITY;
            mx = fmaxf(mx, x[i]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mn = fmaxf(m, mx), sc = exp2f(m - attn_safe_max(mn));
        m = mn;
        float ps = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            x[i] = exp2f(x[i] - attn_safe_max(mn));
            ps += x[i];
        }
        l = l * sc + ps;
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            acc[i][0] *= sc;
            acc[i][1] *= sc;
        }
        const uint32_t pa0 = attn_cvt<T>::pack(x[0], x[1]), pa2 = attn_cvt<T>::pack(x[2], x[3]);
#pragma unroll
        for (int dn = 0; dn < D / 8; dn += 2) {
            uint32_t r[4];
            const int key = (lane & 7) + (((lane >> 3) & 1) << 3);
            ldsm_x4_t(r, vb + swz<D>(key, dn + (lane >> 4)));
            mma_t<T>::half(acc[dn][0], acc[dn][1], pa0, pa2, r[0], r[1]);
            mma_t<T>::half(acc[dn + 1][0], acc[dn + 1][1], pa0, pa2, r[2], r[3]);
        }
        __syncwarp();
    }
    cp_wait<0>();
    __syncwarp();
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);

    /* warp partials into the warp's own (now idle) stage 0: [8][D] floats */
    float *wo = reinterpret_cast<float *>(wbuf);
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++)
        *reinterpret_cast<float2 *>(wo + g * D + dn * 8 + qd) = make_float2(acc[dn][0], acc[dn][1]);
    if ((lane & 3) == 0) {
        sm_wm[warp][g] = m;
        sm_wl[warp][g] = l;
    }
    __syncthreads();

    /* merge the warps: CTA partial (max, sum, unnormalised o) per row */
    for (int e = threadIdx.x; e < G * D; e += DW * 32) {
        const int r = e / D;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < DW; w++)
            mx = fmaxf(mx, sm_wm[w][r]);
        float ls = 0.0f, o = 0.0f;
#pragma unroll
        for (int w = 0; w < DW; w++) {
            const float f = exp2f(sm_wm[w][r] - attn_safe_max(mx));
            ls += sm_wl[w][r] * f;
            o += reinterpret_cast<const float *>(smem + w * DST * STAGE_B)[e] * f;
        }
        cta_o[e] = o;
        if (e % D == 0) {
            cta_m[r] = mx;
            cta_l[r] = ls;
        }
    }

    /* merge the cluster's splits (distributed shared memory); CTA rank c writes elements
     * c*NT.., so the cluster writes its G*D outputs once */
    const int cs = (int)p.cluster;
    if (cs > 1)
        cluster_barrier();
    else
        __syncthreads();
    const int rank = cs > 1 ? cluster_rank() : 0;
    const int part = split / cs;
    for (int e = rank * DW * 32 + (int)threadIdx.x; e < G * D && qn > 0; e += cs * DW * 32) {
        const int r = e / D, d = e % D;
        float mx = -INFINITY;
        for (int c = 0; c < cs; c++)
            mx = fmaxf(mx, cluster_peer(cta_m, c)[r]);
        float ls = 0.0f, o = 0.0f;
        for (int c = 0; c < cs; c++) {
            const float f = exp2f(cluster_peer(cta_m, c)[r] - attn_safe_max(mx));
            if (f == 0.0f)
                continue;
            ls += cluster_peer(cta_l, c)[r] * f;
            o += cluster_peer(cta_o, c)[e] * f;
        }
        const float val = ls > 0.0f ? o / ls : 0.0f;
        const size_t row = (size_t)qrow * p.Hq + (size_t)kvh * G + r;
        if (p.tmp_o) {
            p.tmp_o[(row * p.splits + part) * D + d] = val;
            if (d == 0)
                p.tmp_lse[row * p.splits + part] = ls > 0.0f ? mx + log2f(ls) : -INFINITY;
        } else {
            static_cast<T *>(p.out)[row * D + d] = attn_cvt<T>::from(val);
        }
    }
    if (cs > 1)
        cluster_barrier(); /* peers read this CTA's shared memory until here */
}

template <typename T, int D> constexpr int extend_smem() { return 2 * 2 * EKT * D * 2; }

template <typename T, int D>
__global__ void __launch_bounds__(EW * 32) mma_extend_kernel(const attn_kparams p)
{
    constexpr int CPT = D / 8;
    constexpr int TILE_B = EKT * D * 2;
    constexpr int STAGE_B = 2 * TILE_B;
    constexpr int NT = EW * 32;
    constexpr int LOADS = EKT * CPT / NT;
    constexpr int NS = EKT / 8; /* n8 tiles of S per warp */
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int split = blockIdx.x, kvh = blockIdx.y % p.H, qtile = blockIdx.y / p.H;
    const int seq = blockIdx.z;
    const int q0 = p.qo_indptr[seq], qn = p.qo_indptr[seq + 1] - q0;
    const int t0 = qtile * (int)p.q_tile;
    if (t0 >= qn)
        return; /* a tile past this sequence's queries: nothing to write (whole CTA) */
    const int nt = min((int)p.q_tile, qn - t0);
    const int kv_len = p.kv_lens[seq];
    const int prefix = kv_len - qn; /* position of query 0 */
    const int G = (int)p.G;

    /* this thread's rows: A = warp*16 + lane/4, B = A + 8; row r = token r/G, head r%G */
    const int qd = (lane & 3) * 2;
    int rt[2], rg[2], lim[2];
    uint32_t qa[D / 16][4];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int r = warp * 16 + (lane >> 2) + 8 * h;
        rt[h] = r / G;
        rg[h] = r % G;
        const bool ok = rt[h] < nt; /* r >= q_tile*G gives rt >= q_tile >= nt */
        lim[h] = ok ? prefix + t0 + rt[h] : -1;
        const T *qp = static_cast<const T *>(p.q) +
                      ((size_t)(q0 + t0 + rt[h]) * p.Hq + (size_t)kvh * G + rg[h]) * D + qd;
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            qa[ks][h] = ok ? *reinterpret_cast<const uint32_t *>(qp + 16 * ks) : 0u;
            qa[ks][h + 2] = ok ? *reinterpret_cast<const uint32_t *>(qp + 16 * ks + 8) : 0u;
        }
    }

    const int kv_hi = min(kv_len, prefix + t0 + nt); /* exclusive bound for every row */
    const int kv_begin = split * (int)p.chunk;
    const int kv_end = min(kv_begin + (int)p.chunk, kv_hi);
    const int ntiles = kv_end > kv_begin ? (kv_end - kv_begin + EKT - 1) / EKT : 0;
    const int mask_from = min(kv_end, prefix + t0 + 1); /* keys >= this need the mask */

    const pool_view pv = make_view<D>(p, kvh);
    const int32_t *table = p.kv_indices + p.kv_indptr[seq];
    const uint32_t sbase = smem_u32(smem);
    auto issue = [&](int k) {
        const int tile0 = kv_begin + k * EKT;
        const uint32_t dst0 = sbase + (uint32_t)((k & 1) * STAGE_B);
#pragma unroll
        for (int i = 0; i < LOADS; i++) {
            const int c = tid + i * NT, tt = c / CPT, ch = c % CPT, pos = tile0 + tt;
            const bool valid = pos < kv_end;
            const char *src = pv.base;
            if (valid) {
                const int32_t blk = __ldg(table + (pos >> p.bt_shift));
                src += (size_t)blk * pv.slab + (size_t)((uint32_t)pos & pv.bt_mask) * pv.tok +
                       ch * 16;
            }
            const uint32_t dst = dst0 + swz<D>(tt, ch);
            cp_async16(dst, src, valid);
            cp_async16(dst + TILE_B, valid ? src + pv.page : pv.base, valid);
        }
    };

    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, acc[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

    if (ntiles > 0)
        issue(0);
    cp_commit();
    for (int k = 0; k < ntiles; k++) {
        if (k + 1 < ntiles)
            issue(k + 1);
        cp_commit();
        cp_wait<1>();
        __syncthreads();
        const uint32_t kb = sbase + (uint32_t)((k & 1) * STAGE_B), vb = kb + TILE_B;
        float s[NS][4];
#pragma unroll
        for (int n = 0; n < NS; n++)
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
#pragma unroll
            for (int np = 0; np < NS / 2; np++) {
                uint32_t r[4];
                const int key = np * 16 + (lane & 7) + ((lane >> 4) << 3);
                ldsm_x4(r, kb + swz<D>(key, 2 * ks + ((lane >> 3) & 1)));
                mma_t<T>::run(s[2 * np], qa[ks][0], qa[ks][1], qa[ks][2], qa[ks][3], r[0], r[1]);
                mma_t<T>::run(s[2 * np + 1], qa[ks][0], qa[ks][1], qa[ks][2], qa[ks][3], r[2],
                              r[3]);
            }
        }
        const int tile0 = kv_begin + k * EKT;
        const bool need_mask = tile0 + EKT > mask_from;
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int n = 0; n < NS; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int h = i >> 1, pos = tile0 + n * 8 + qd + (i & 1);
                float x = s[n][i] * p.qscale;
                if (need_mask && (pos >= kv_end || pos > lim[h]))
                    x = -INFINITY;
                s[n][i] = x;
                mx[h] = fmaxf(mx[h], x);
            }
        float sc[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
            const float mn = fmaxf(m[h], mx[h]);
            sc[h] = exp2f(m[h] - attn_safe_max(mn));
            m[h] = mn;
            l[h] *= sc[h];
        }
#pragma unroll
        for (int n = 0; n < NS; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int h = i >> 1;
                s[n][i] = exp2f(s[n][i] - attn_safe_max(m[h]));
                l[h] += s[n][i];
            }
#pragma unroll
        for (int dn = 0; dn < D / 8; dn++) {
            acc[dn][0] *= sc[0];
            acc[dn][1] *= sc[0];
            acc[dn][2] *= sc[1];
            acc[dn][3] *= sc[1];
        }
#pragma unroll
        for (int j = 0; j < EKT / 16; j++) {
            const uint32_t a0 = attn_cvt<T>::pack(s[2 * j][0], s[2 * j][1]);
            const uint32_t a1 = attn_cvt<T>::pack(s[2 * j][2], s[2 * j][3]);
            const uint32_t a2 = attn_cvt<T>::pack(s[2 * j + 1][0], s[2 * j + 1][1]);
            const uint32_t a3 = attn_cvt<T>::pack(s[2 * j + 1][2], s[2 * j + 1][3]);
#pragma unroll
            for (int dn = 0; dn < D / 8; dn += 2) {
                uint32_t r[4];
                const int key = j * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
                ldsm_x4_t(r, vb + swz<D>(key, dn + (lane >> 4)));
                mma_t<T>::run(acc[dn], a0, a1, a2, a3, r[0], r[1]);
                mma_t<T>::run(acc[dn + 1], a0, a1, a2, a3, r[2], r[3]);
            }
        }
        __syncthreads();
    }
    cp_wait<0>();

#pragma unroll
    for (int h = 0; h < 2; h++) {
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
        if (lim[h] < 0)
            continue;
        const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        const size_t row = (size_t)(q0 + t0 + rt[h]) * p.Hq + (size_t)kvh * G + rg[h];
        if (p.tmp_o) {
            float *po = p.tmp_o + (row * p.splits + split) * D + qd;
#pragma unroll
            for (int dn = 0; dn < D / 8; dn++)
                *reinterpret_cast<float2 *>(po + dn * 8) =
                    make_float2(acc[dn][2 * h] * inv, acc[dn][2 * h + 1] * inv);
            if ((lane & 3) == 0)
                p.tmp_lse[row * p.splits + split] =
                    l[h] > 0.0f ? m[h] + log2f(l[h]) : -INFINITY;
        } else {
            T *po = static_cast<T *>(p.out) + row * D + qd;
#pragma unroll
            for (int dn = 0; dn < D / 8; dn++)
                *reinterpret_cast<uint32_t *>(po + dn * 8) =
                    attn_cvt<T>::pack(acc[dn][2 * h] * inv, acc[dn][2 * h + 1] * inv);
        }
    }
}

/* Raise the dynamic shared-memory limit (and allow 16-CTA clusters from sm_90) once per
 * kernel and device: `done` holds a bit per device (function attributes are per device).
 * A racing first use sets the same attributes twice, which is harmless. */
template <typename K>
cudaError_t prepare(int dev, K kernel, int smem, bool cluster16, std::atomic<uint64_t> &done)
{
    const uint64_t bit = dev < ATTN_MAX_DEV ? 1ull << dev : 0;
    if (bit && (done.load(std::memory_order_acquire) & bit))
        return cudaSuccess;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e == cudaSuccess && cluster16)
        e = cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (e == cudaSuccess && bit)
        done.fetch_or(bit, std::memory_order_release);
    return e;
}

template <typename T, int D, int DW> cudaError_t decode_prepare(int dev)
{
    static std::atomic<uint64_t> done{0};
    if (dev < ATTN_MAX_DEV && (done.load(std::memory_order_acquire) >> dev & 1))
        return cudaSuccess; /* the per-call path: one load */
    int major = 0;
    const cudaError_t e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e != cudaSuccess)
        return e;
    return prepare(dev, mma_decode_kernel<T, D, DW>, decode_smem<D, DW>(), major >= 9, done);
}
template <typename T, int D> cudaError_t extend_prepare(int dev)
{
    static std::atomic<uint64_t> done{0};
    return prepare(dev, mma_extend_kernel<T, D>, extend_smem<T, D>(), false, done);
}

template <typename T, int D, int DW>
cudaError_t decode_launch(int dev, const attn_kparams &kp, dim3 grid, cudaStream_t st)
{
    cudaError_t e = decode_prepare<T, D, DW>(dev);
    if (e != cudaSuccess)
        return e;
    if (kp.cluster <= 1) {
        mma_decode_kernel<T, D, DW><<<grid, DW * 32, decode_smem<D, DW>(), st>>>(kp);
        return cudaGetLastError();
    }
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = kp.cluster;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.gridDim = grid;
    cfg.blockDim = dim3(DW * 32);
    cfg.dynamicSmemBytes = decode_smem<D, DW>();
    cfg.stream = st;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, mma_decode_kernel<T, D, DW>, kp);
}
template <typename T, int D>
cudaError_t decode_launch_w(int dev, const attn_kparams &kp, dim3 grid, cudaStream_t st)
{
    return kp.warps == 8 ? decode_launch<T, D, 8>(dev, kp, grid, st)
                         : decode_launch<T, D, 4>(dev, kp, grid, st);
}

template <typename T, int D>
cudaError_t extend_launch(int dev, const attn_kparams &kp, dim3 grid, cudaStream_t st)
{
    cudaError_t e = extend_prepare<T, D>(dev);
    if (e != cudaSuccess)
        return e;
    mma_extend_kernel<T, D><<<grid, EW * 32, extend_smem<T, D>(), st>>>(kp);
    return cudaGetLastError();
}

template <typename T, int D> int occ_t_d(int dev, int decode)
{
    int n = 0;
    cudaError_t e = decode ? decode_prepare<T, D, 4>(dev) : extend_prepare<T, D>(dev);
    if (e == cudaSuccess)
        e = decode ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                         &n, mma_decode_kernel<T, D, 4>, 4 * 32, decode_smem<D, 4>())
                   : cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                         &n, mma_extend_kernel<T, D>, EW * 32, extend_smem<T, D>());
    if (e != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return n;
}

/* 16 if enough 16-CTA clusters are resident at once to cover the SMs, else 8. */
template <typename T, int D, int DW> int max_cluster_t_d(int dev, int sms)
{
    if (decode_prepare<T, D, DW>(dev) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    int n = 0;
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 16;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.gridDim = dim3(16, 1, 1);
    cfg.blockDim = dim3(DW * 32);
    cfg.dynamicSmemBytes = decode_smem<D, DW>();
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    if (cudaOccupancyMaxActiveClusters(&n, mma_decode_kernel<T, D, DW>, &cfg) != cudaSuccess) {
        cudaGetLastError();
        n = 0;
    }
    return n * 16 >= sms ? 16 : 8;
}

} // namespace

int attn_mma_occupancy(int dev, int decode, kvt_dtype dt, uint32_t D)
{
    static std::atomic<int> cache[ATTN_MAX_DEV][2][2][2];
    const int a = dt == KVT_DTYPE_BF16, b = D == 128, c = decode != 0;
    std::atomic<int> *slot = dev < ATTN_MAX_DEV ? &cache[dev][a][b][c] : nullptr;
    int n = slot ? slot->load(std::memory_order_relaxed) : 0;
    if (n > 0)
        return n;
    n = a ? (b ? occ_t_d<__nv_bfloat16, 128>(dev, c) : occ_t_d<__nv_bfloat16, 64>(dev, c))
          : (b ? occ_t_d<__half, 128>(dev, c) : occ_t_d<__half, 64>(dev, c));
    if (n > 0 && slot)
        slot->store(n, std::memory_order_relaxed);
    return n;
}

int attn_mma_max_cluster(int dev, kvt_dtype dt, uint32_t D, uint32_t warps)
{
    static std::atomic<int> cache[ATTN_MAX_DEV][2][2][2];
    int d;
    attn_dev_info di;
    if (!attn_device(&d, &di) || d != dev)
        return -1;
    if (di.major < 9)
        return 1;
    const int a = dt == KVT_DTYPE_BF16, b = D == 128, c = warps == 8;
    std::atomic<int> *slot = dev < ATTN_MAX_DEV ? &cache[dev][a][b][c] : nullptr;
    int n = slot ? slot->load(std::memory_order_relaxed) : 0;
    if (n > 0)
        return n;
    const int s = di.sms;
    if (c)
        n = a ? (b ? max_cluster_t_d<__nv_bfloat16, 128, 8>(dev, s) : max_cluster_t_d<__nv_bfloat16, 64, 8>(dev, s))
              : (b ? max_cluster_t_d<__half, 128, 8>(dev, s) : max_cluster_t_d<__half, 64, 8>(dev, s));
    else
        n = a ? (b ? max_cluster_t_d<__nv_bfloat16, 128, 4>(dev, s) : max_cluster_t_d<__nv_bfloat16, 64, 4>(dev, s))
              : (b ? max_cluster_t_d<__half, 128, 4>(dev, s) : max_cluster_t_d<__half, 64, 4>(dev, s));
    if (n > 0 && slot)
        slot->store(n, std::memory_order_relaxed);
    return n;
}

cudaError_t attn_mma_decode_launch(int dev, const attn_kparams &kp, kvt_dtype dt, uint32_t D,
                                   dim3 grid, cudaStream_t st)
{
    const bool bf = dt == KVT_DTYPE_BF16;
    if (D == 128)
        return bf ? decode_launch_w<__nv_bfloat16, 128>(dev, kp, grid, st)
                  : decode_launch_w<__half, 128>(dev, kp, grid, st);
    return bf ? decode_launch_w<__nv_bfloat16, 64>(dev, kp, grid, st)
              : decode_launch_w<__half, 64>(dev, kp, grid, st);
}

cudaError_t attn_mma_extend_launch(int dev, const attn_kparams &kp, kvt_dtype dt, uint32_t D,
                                   dim3 grid, cudaStream_t st)
{
    const bool bf = dt == KVT_DTYPE_BF16;
    if (D == 128)
        return bf ? extend_launch<__nv_bfloat16, 128>(dev, kp, grid, st)
                  : extend_launch<__half, 128>(dev, kp, grid, st);
    return bf ? extend_launch<__nv_bfloat16, 64>(dev, kp, grid, st)
              : extend_launch<__half, 64>(dev, kp, grid, st);
}
