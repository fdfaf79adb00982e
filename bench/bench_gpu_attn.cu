/*
 * bench_gpu_attn — paged attention read in place (gpu_attn_run, tensor-core kernels: the
 * plan's default) against, in the same run: (1) the HBM copy limit (a 1 GiB device-to-device
 * cudaMemcpy, bytes read + written), (2) the CUDA-core kernel (GPU_ATTN_SIMT) on the same
 * paged K/V, (3) gather-then-attend: copy the sequence's paged K/V into contiguous buffers,
 * then attend over them, and (4) the attend step alone on contiguous K/V. Decode rows (q 1)
 * and extend rows (q new tokens per sequence after a cached prefix of L - q; TFLOP/s =
 * 4*D*Hq*(keys attended, causal) / time).
 *
 *   bench_gpu_attn [--quick] [--reps 20] [--bt 16] [--hq 32] [--hkv 8] [--sweep] [--launch]
 *
 * --launch: a single call's time taken apart (launch_mode): host time of the call, events
 * around one call, the same with the host's submission hidden, back to back; next to an
 * empty kernel (the floor) and for 1x4k under other (splits, cluster, warps).
 *
 * Shape: Llama-3-8B (32 query heads over 8 KV heads, head_dim 128, bf16), block_tokens 16
 * (--bt), random block permutation. KV bytes = B*L*8*128*2*2 per layer; TB/s = KV bytes /
 * time. Layers rotate between repetitions so the working set exceeds the 50 MB L2.
 * Exit 77 without a GPU.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

extern "C" {
#include "benchutil.h"
#include "gpu/gpu.h"
}
#include "gpu/paged.h"

#define CK(x)                                                                              \
    do {                                                                                   \
        cudaError_t e_ = (x);                                                              \
        if (e_ != cudaSuccess) {                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)
#define CKR(x)                                                                             \
    do {                                                                                   \
        int r_ = (x);                                                                      \
        if (r_) {                                                                          \
            fprintf(stderr, "%s:%d: %s: %d\n", __FILE__, __LINE__, #x, r_);                \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* Random bf16 in [-1, 1) from a hash of the index: never zeros, no host round trip. */
__global__ void fill_kernel(__nv_bfloat16 *p, size_t n, uint32_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 15;
        x *= 2246822519u;
        x ^= x >> 13;
        p[i] = __float2bfloat16((float)(x >> 8) * (2.0f / 16777216.0f) - 1.0f);
    }
}

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint64_t xr(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

struct stat2 {
    double med_us, p99_us;
};

/* Time per call of f(), n calls issued back to back between two events, reps times, after
 * 3 warm-ups: the median and the 99th percentile (us). With n = 1 the events surround ONE
 * call and include the host's launch cost; with n > 1 the launches overlap the previous
 * calls, as in a decode step that launches one layer after another. */
template <typename F> static stat2 time_calls_us(F f, int reps, cudaStream_t st, int n)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int w = 0; w < 3; w++)
        f(w);
    CK(cudaStreamSynchronize(st));
    double *us = (double *)malloc(reps * sizeof(double));
    for (int r = 0; r < reps; r++) {
        CK(cudaEventRecord(a, st));
        for (int i = 0; i < n; i++)
            f(r * n + i);
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        us[r] = ms * 1e3 / n;
    }
    stat2 s = {bu_quantile(us, reps, 0.5), bu_quantile(us, reps, 0.99)};
    free(us);
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return s;
}

/* One call between the events (f(r) for rep r). */
template <typename F> static stat2 time_us(F f, int reps, cudaStream_t st)
{
    return time_calls_us(f, reps, st, 1);
}

/* Per-call median of N = 20 calls back to back. */
template <typename F> static double time_b2b_us(F f, int reps, cudaStream_t st)
{
    return time_calls_us(f, reps, st, 20).med_us;
}

static void fill(void *p, size_t n_elems, uint32_t seed, cudaStream_t st)
{
    fill_kernel<<<1024, 256, 0, st>>>((__nv_bfloat16 *)p, n_elems, seed);
    CK(cudaGetLastError());
}

/* Time the MMA decode plan of p under forced (splits, cluster, warps); a plan the device
 * cannot launch (cluster too large) prints "fail". */
static void sweep_decode(gpu_attn_params p, uint32_t L, int reps, cudaStream_t st)
{
    const uint32_t ss[] = {1, 4, 8, 16, 32, 64}, cls[] = {1, 2, 4, 8, 16}, ws[] = {4, 8};
    const size_t wsb = (size_t)p.num_seqs * p.num_qo_heads * 64 * (p.head_dim + 1) * 4;
    void *w;
    CK(cudaMalloc(&w, wsb));
    for (uint32_t s : ss)
        for (uint32_t cl : cls)
            for (uint32_t wp : ws) {
                if (s % cl || cl > s)
                    continue;
                gpu_attn_plan q;
                if (gpu_attn_plan_make_ex(&p, p.num_seqs, 1, L, s, GPU_ATTN_MMA, &q) ||
                    q.num_splits != s)
                    continue;
                q.cluster = cl;
                q.warps = wp;
                q.workspace_bytes = s / cl > 1 ? (size_t)p.num_seqs * p.num_qo_heads * (s / cl) *
                                                     (p.head_dim + 1) * 4
                                               : 0;
                const int rc = gpu_attn_run(&p, &q, w, wsb, st);
                const cudaError_t e = cudaStreamSynchronize(st);
                if (rc || e != cudaSuccess) {
                    cudaGetLastError();
                    printf("# sweep B=%u L=%u splits=%u cluster=%u warps=%u: fail (%d, %s)\n",
                           p.num_seqs, L, s, cl, wp, rc, cudaGetErrorString(e));
                    continue;
                }
                const stat2 t = time_us(
                    [&](int r) {
                        p.layer = (uint32_t)r % p.layers;
                        CKR(gpu_attn_run(&p, &q, w, wsb, st));
                    },
                    reps, st);
                printf("# sweep B=%u L=%u splits=%u cluster=%u warps=%u: %.1f us (p99 %.1f)\n",
                       p.num_seqs, L, s, cl, wp, t.med_us, t.p99_us);
            }
    fflush(stdout);
    CK(cudaFree(w));
}

struct cfg {
    uint32_t B, L, qlen; /* qlen > 1: an extend (prefix hit) call */
};

/* --launch: where a single call's time goes. */
__global__ void empty_kernel() {}
struct param144 { /* the size of gpu/attn_int.h's attn_kparams, which gpu_attn_run passes */
    uint64_t w[18];
};
__global__ void empty_param_kernel(const param144 p)
{
    if (p.w[0] == 1) /* never: the parameter is used, so it is passed */
        asm volatile("trap;");
}

/* 1x4k's launch shape: grid 8x8, 256 threads, clusters of 8 (at: one attribute). */
static cudaLaunchConfig_t cluster8_shape(cudaLaunchAttribute *at, int smem, cudaStream_t st)
{
    cudaLaunchConfig_t lc = {};
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = 8;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    lc.gridDim = dim3(8, 8, 1);
    lc.blockDim = dim3(256);
    lc.dynamicSmemBytes = smem;
    lc.stream = st;
    lc.attrs = at;
    lc.numAttrs = 1;
    return lc;
}

/* Host time of one f(), averaged over n calls (nothing is launched by f). */
template <typename F> static double host_avg_us(F f, int n)
{
    const uint64_t t0 = bu_now_ns();
    for (int i = 0; i < n; i++)
        f();
    return (bu_now_ns() - t0) / 1e3 / n;
}
__global__ void spin_kernel(uint64_t ns) /* holds the stream for ns (globaltimer) */
{
    uint64_t t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (t - t0 < ns);
}

struct lstat {
    double host_us, one_us, gpu_us, b2b_us; /* medians */
};

/* host = wall time of the call f() alone; one = events around one call (idle GPU: the
 * host's submission + the GPU's launch + the run); gpu = the same events with the stream
 * held by a 100 us spin kernel, so the host has submitted before the GPU reaches event a
 * (the launch and run on the GPU alone); b2b = per call of 20 back to back. */
template <typename F> static lstat launch_stat(F f, int reps, cudaStream_t st)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int w = 0; w < 5; w++)
        f(w);
    CK(cudaStreamSynchronize(st));
    double *h = (double *)malloc(reps * sizeof(double)), *o = (double *)malloc(reps * sizeof(double));
    double *g = (double *)malloc(reps * sizeof(double)), *bb = (double *)malloc(reps * sizeof(double));
    /* us between events a and b recorded around body() */
    auto timed = [&](auto body) {
        float ms;
        CK(cudaEventRecord(a, st));
        body();
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms, a, b));
        return ms * 1e3;
    };
    for (int r = 0; r < reps; r++) {
        o[r] = timed([&] {
            const uint64_t t0 = bu_now_ns();
            f(r);
            h[r] = (bu_now_ns() - t0) / 1e3;
        });
        spin_kernel<<<1, 1, 0, st>>>(100000);
        g[r] = timed([&] { f(r); });
        bb[r] = timed([&] {
                    for (int i = 0; i < 20; i++)
                        f(r * 20 + i);
                }) / 20;
    }
    lstat s = {bu_quantile(h, reps, 0.5), bu_quantile(o, reps, 0.5), bu_quantile(g, reps, 0.5),
               bu_quantile(bb, reps, 0.5)};
    free(h), free(o), free(g), free(bb);
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return s;
}

static void print_lstat(const char *what, lstat s)
{
    printf("launch  %-58s host %6.2f  1call %6.2f  gpu %6.2f  b2b %6.2f us\n", what, s.host_us,
           s.one_us, s.gpu_us, s.b2b_us);
    fflush(stdout);
}

/* The floor (an empty kernel, plain and in 1x4k's launch shape), then gpu_attn_run decode
 * at B=1 (Llama-3-8B heads, bf16, block 16, 8 layers rotated) for L = 16 and 4096, and
 * 1x4k under other (splits, cluster, warps). */
static void launch_mode(int reps, cudaStream_t st)
{
    print_lstat("empty kernel <<<1,32>>>",
                launch_stat([&](int) { empty_kernel<<<1, 32, 0, st>>>(); }, reps, st));
    const int smem8 = 8 * 3 * 2 * 16 * 128 * 2 + (8 * 128 + 16) * 4; /* decode_smem<128, 8> */
    CK(cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem8));
    print_lstat("empty kernel <<<64,256,196KiB>>>", launch_stat([&](int) {
                    empty_kernel<<<64, 256, smem8, st>>>();
                }, reps, st));
    print_lstat("empty kernel, cudaLaunchKernelEx cluster 8, grid 8x8, 256, 196KiB",
                launch_stat(
                    [&](int) {
                        cudaLaunchAttribute at[1];
                        const cudaLaunchConfig_t lc = cluster8_shape(at, smem8, st);
                        CK(cudaLaunchKernelEx(&lc, empty_kernel));
                    },
                    reps, st));
    const param144 pz = {};
    CK(cudaFuncSetAttribute(empty_param_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem8));
    print_lstat("empty kernel, 144-byte parameter <<<64,256,196KiB>>>",
                launch_stat([&](int) { empty_param_kernel<<<64, 256, smem8, st>>>(pz); }, reps, st));
    print_lstat("empty kernel, 144-byte parameter, LaunchKernelEx cluster 8",
                launch_stat(
                    [&](int) {
                        cudaLaunchAttribute at[1];
                        const cudaLaunchConfig_t lc = cluster8_shape(at, smem8, st);
                        CK(cudaLaunchKernelEx(&lc, empty_param_kernel, pz));
                    },
                    reps, st));
    int dv = 0;
    printf("launch  host only: cudaGetDevice %.3f us per call\n",
           host_avg_us([&] { CK(cudaGetDevice(&dv)); }, 100000));
    const uint32_t Hq = 32, H = 8, D = 128, bt = 16, layers = 8, Ls[2] = {16, 4096};
    for (uint32_t L : Ls) {
        const uint32_t nb = (L + bt - 1) / bt;
        const size_t slab = (size_t)layers * 2 * bt * H * D;
        void *pool, *q, *out, *ws;
        CK(cudaMalloc(&pool, slab * nb * 2));
        fill(pool, slab * nb, 5, st);
        CK(cudaMalloc(&q, (size_t)Hq * D * 2));
        CK(cudaMalloc(&out, (size_t)Hq * D * 2));
        fill(q, (size_t)Hq * D, 6, st);
        const size_t wsb = (size_t)Hq * 64 * (D + 1) * 4;
        CK(cudaMalloc(&ws, wsb));
        int32_t *perm = (int32_t *)malloc(nb * 4), hdr[3] = {0, (int32_t)nb, (int32_t)L};
        for (uint32_t i = 0; i < nb; i++)
            perm[i] = (int32_t)i;
        for (uint32_t i = nb - 1; i > 0; i--) {
            const uint32_t j = (uint32_t)(xr() % (i + 1));
            const int32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        int32_t *dperm, *dhdr;
        CK(cudaMalloc(&dperm, nb * 4));
        CK(cudaMalloc(&dhdr, 3 * 4));
        CK(cudaMemcpy(dperm, perm, nb * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dhdr, hdr, 3 * 4, cudaMemcpyHostToDevice));
        gpu_attn_params p;
        memset(&p, 0, sizeof p);
        p.dtype = KVT_DTYPE_BF16;
        p.num_qo_heads = Hq;
        p.num_kv_heads = H;
        p.head_dim = D;
        p.block_tokens = bt;
        p.layers = layers;
        p.num_blocks = nb;
        p.num_seqs = 1;
        p.q = q;
        p.out = out;
        p.pool = pool;
        p.kv_indptr = dhdr;
        p.kv_indices = dperm;
        p.kv_lens = dhdr + 2;
        gpu_attn_plan plan;
        CKR(gpu_attn_plan_make(&p, 1, 1, L, 0, &plan));
        gpu_attn_plan bad = plan;
        bad.num_splits = 0;
        printf("launch  host only: gpu_attn_run refused after its checks (plan with 0 splits) "
               "%.3f us per call\n",
               host_avg_us([&] { (void)gpu_attn_run(&p, &bad, ws, wsb, st); }, 100000));
        struct {
            uint32_t s, cl, w;
        } vs[] = {{0, 0, 0}, {8, 8, 4}, {16, 16, 4}, {16, 16, 8}, {12, 12, 8}, {12, 12, 4},
                  {16, 8, 8}, {32, 16, 4}};
        for (size_t vi = 0; vi < (L == 4096 ? sizeof vs / sizeof vs[0] : 1); vi++) {
            gpu_attn_plan pl = plan;
            if (vi) {
                const uint32_t s = vs[vi].s;
                pl.num_splits = s;
                pl.chunk_tokens = ((L + s - 1) / s + 15) & ~15u;
                pl.cluster = vs[vi].cl;
                pl.warps = vs[vi].w;
                pl.workspace_bytes = s / pl.cluster > 1 ? (size_t)Hq * (s / pl.cluster) * (D + 1) * 4 : 0;
                const int rc = gpu_attn_run(&p, &pl, ws, wsb, st);
                const cudaError_t e = cudaStreamSynchronize(st);
                if (rc || e != cudaSuccess) {
                    cudaGetLastError();
                    printf("launch  gpu_attn_run B=1 L=%u splits %u cluster %u warps %u: fail (%d, %s)\n",
                           L, s, pl.cluster, pl.warps, rc, cudaGetErrorString(e));
                    continue;
                }
            }
            char what[96];
            snprintf(what, sizeof what, "gpu_attn_run B=1 L=%u splits %u cluster %u warps %u%s", L,
                     pl.num_splits, pl.cluster, pl.warps, vi ? "" : " (plan)");
            print_lstat(what, launch_stat(
                                  [&](int r) {
                                      p.layer = (uint32_t)r % layers;
                                      CKR(gpu_attn_run(&p, &pl, ws, wsb, st));
                                  },
                                  reps, st));
        }
        CK(cudaFree(pool));
        CK(cudaFree(q));
        CK(cudaFree(out));
        CK(cudaFree(ws));
        CK(cudaFree(dperm));
        CK(cudaFree(dhdr));
        free(perm);
    }
}

int main(int argc, char **argv)
{
    if (gpu_device_count() <= 0) {
        fprintf(stderr, "skip: no GPU\n");
        return 77;
    }
    const bool quick = bu_flag(argc, argv, "--quick");
    const int reps = (int)bu_opt(argc, argv, "--reps", quick ? 2 : 20);
    const uint32_t bt = (uint32_t)bu_opt(argc, argv, "--bt", 16);
    bu_header(argc, argv);
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

    /* the physical limit: device-to-device copy, bytes read + written */
    const size_t cbytes = quick ? (64u << 20) : (1u << 30);
    void *ca, *cb;
    CK(cudaMalloc(&ca, cbytes));
    CK(cudaMalloc(&cb, cbytes));
    fill(ca, cbytes / 2, 1, st);
    const stat2 cp = time_us(
        [&](int) { CK(cudaMemcpyAsync(cb, ca, cbytes, cudaMemcpyDeviceToDevice, st)); }, reps, st);
    const double copy_tbs = 2.0 * cbytes / (cp.med_us * 1e6);
    CK(cudaFree(ca));
    CK(cudaFree(cb));
    printf("# device %s, %d SMs; HBM copy limit %.0f GB/s (d2d %zu MiB, read+write, median of "
           "%d)\n",
           prop.name, prop.multiProcessorCount, copy_tbs * 1e3, cbytes >> 20, reps);

    if (bu_flag(argc, argv, "--launch")) {
        launch_mode(quick ? 20 : 200, st);
        CK(cudaStreamDestroy(st));
        return 0;
    }
    const uint32_t Hq = (uint32_t)bu_opt(argc, argv, "--hq", 32);
    const uint32_t H = (uint32_t)bu_opt(argc, argv, "--hkv", 8), D = 128;
    printf("# Hq=%u Hkv=%u D=%u bf16 block_tokens=%u\n", Hq, H, D, bt);
    const cfg full[] = {{1, 4096, 1},   {1, 32768, 1},  {8, 4096, 1},    {32, 4096, 1},
                        {64, 2048, 1},  {128, 1024, 1}, {16, 16384, 1},  {64, 4096, 1},
                        {1, 8704, 512}, {1, 10240, 2048}, {4, 2176, 128}};
    const cfg small[] = {{2, 300, 1}, {1, 200, 17}};
    /* --sweep: the few-sequence decode shapes under every (splits, cluster, warps) */
    const cfg sweepc[] = {{1, 16, 1}, {1, 4096, 1}, {1, 32768, 1}, {8, 4096, 1}};
    const bool sweep = bu_flag(argc, argv, "--sweep");
    const cfg *cs = sweep ? sweepc : quick ? small : full;
    const int ncfg = sweep ? 4 : quick ? 2 : (int)(sizeof full / sizeof full[0]);

    printf("%-5s %-6s %-4s %4s %3s %2s %8s %8s %8s %7s %7s %8s %8s %7s %9s %7s %6s %6s %7s\n",
           "B", "L", "q", "spl", "cl", "w", "KV_MiB", "paged_us", "p99_us", "TB/s", "b2b_us",
           "simt_us", "contig_us", "TB/s", "gath+att", "TB/s", "vs_g+a", "vs_cp", "TFLOP/s");
    for (int ci = 0; ci < ncfg; ci++) {
        const cfg c = cs[ci];
        const uint32_t bps = (c.L + bt - 1) / bt; /* blocks per sequence */
        const size_t layer_bytes = (size_t)c.B * c.L * H * D * 2 * 2;
        uint32_t layers = (uint32_t)((256ull << 20) / layer_bytes) + 1; /* >= 256 MiB total */
        if (layers > 8)
            layers = 8;
        const uint32_t nblocks = c.B * bps;
        const size_t slab = (size_t)layers * 2 * bt * H * D; /* elements */
        void *pool, *q, *out, *ws = NULL;
        CK(cudaMalloc(&pool, slab * nblocks * 2));
        fill(pool, slab * nblocks, 7 + ci, st);
        const uint32_t total_q = c.B * c.qlen;
        CK(cudaMalloc(&q, (size_t)total_q * Hq * D * 2));
        CK(cudaMalloc(&out, (size_t)total_q * Hq * D * 2));
        fill(q, (size_t)total_q * Hq * D, 99 + ci, st);
        /* block table: a random permutation of the pool */
        int32_t *perm = (int32_t *)malloc(nblocks * 4), *indptr = (int32_t *)malloc((c.B + 1) * 4);
        int32_t *lens = (int32_t *)malloc(c.B * 4), *qo = (int32_t *)malloc((c.B + 1) * 4);
        for (uint32_t i = 0; i < nblocks; i++)
            perm[i] = (int32_t)i;
        for (uint32_t i = nblocks - 1; i > 0; i--) {
            uint32_t j = (uint32_t)(xr() % (i + 1));
            int32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (uint32_t s = 0; s <= c.B; s++) {
            indptr[s] = (int32_t)(s * bps);
            qo[s] = (int32_t)(s * c.qlen);
        }
        for (uint32_t s = 0; s < c.B; s++)
            lens[s] = (int32_t)c.L;
        int32_t *dperm, *dindptr, *dlens, *dqo, *dident;
        CK(cudaMalloc(&dperm, nblocks * 4));
        CK(cudaMalloc(&dindptr, (c.B + 1) * 4));
        CK(cudaMalloc(&dlens, c.B * 4));
        CK(cudaMalloc(&dqo, (c.B + 1) * 4));
        CK(cudaMemcpy(dperm, perm, nblocks * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dindptr, indptr, (c.B + 1) * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dlens, lens, c.B * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dqo, qo, (c.B + 1) * 4, cudaMemcpyHostToDevice));

        gpu_attn_params p;
        memset(&p, 0, sizeof p);
        p.dtype = KVT_DTYPE_BF16;
        p.num_qo_heads = Hq;
        p.num_kv_heads = H;
        p.head_dim = D;
        p.block_tokens = bt;
        p.layers = layers;
        p.num_blocks = nblocks;
        p.num_seqs = c.B;
        p.q = q;
        p.out = out;
        p.pool = pool;
        p.qo_indptr = c.qlen > 1 ? dqo : NULL;
        p.kv_indptr = dindptr;
        p.kv_indices = dperm;
        p.kv_lens = dlens;
        gpu_attn_plan plan, plans;
        CKR(gpu_attn_plan_make(&p, total_q, c.qlen, c.L, 0, &plan));
        CKR(gpu_attn_plan_make_ex(&p, total_q, c.qlen, c.L, 0, GPU_ATTN_SIMT, &plans));

        /* contiguous copy for gather-then-attend: per sequence [L/256 pages][2][256][H][D]
         * with an identity table, one layer */
        const uint32_t cbt = 256, cps = (c.L + cbt - 1) / cbt;
        const size_t cslab = (size_t)2 * cbt * H * D;
        void *contig;
        CK(cudaMalloc(&contig, cslab * c.B * cps * 2));
        CK(cudaMemset(contig, 0, cslab * c.B * cps * 2));
        int32_t *ident = (int32_t *)malloc(c.B * cps * 4), *cindptr = (int32_t *)malloc((c.B + 1) * 4);
        for (uint32_t i = 0; i < c.B * cps; i++)
            ident[i] = (int32_t)i;
        for (uint32_t s = 0; s <= c.B; s++)
            cindptr[s] = (int32_t)(s * cps);
        int32_t *dcindptr;
        CK(cudaMalloc(&dident, c.B * cps * 4));
        CK(cudaMalloc(&dcindptr, (c.B + 1) * 4));
        CK(cudaMemcpy(dident, ident, c.B * cps * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dcindptr, cindptr, (c.B + 1) * 4, cudaMemcpyHostToDevice));
        gpu_attn_params pc = p;
        pc.block_tokens = cbt;
        pc.layers = 1;
        pc.layer = 0;
        pc.pool = contig;
        pc.num_blocks = c.B * cps;
        pc.kv_indptr = dcindptr;
        pc.kv_indices = dident;
        gpu_attn_plan planc;
        CKR(gpu_attn_plan_make(&pc, total_q, c.qlen, c.L, 0, &planc));
        size_t wsb = plan.workspace_bytes > planc.workspace_bytes ? plan.workspace_bytes
                                                                  : planc.workspace_bytes;
        if (plans.workspace_bytes > wsb)
            wsb = plans.workspace_bytes;
        if (wsb)
            CK(cudaMalloc(&ws, wsb));
        /* gather lists, per layer: K and V page of every table entry -> contiguous slot */
        const uint32_t npieces = 2 * nblocks;
        const uint64_t piece = (uint64_t)bt * H * D * 2;
        const void **gsrc = (const void **)malloc((size_t)layers * npieces * sizeof(void *));
        void **gdst = (void **)malloc((size_t)npieces * sizeof(void *));
        for (uint32_t l = 0; l < layers; l++)
            for (uint32_t s = 0; s < c.B; s++)
                for (uint32_t j = 0; j < bps; j++)
                    for (uint32_t kv = 0; kv < 2; kv++) {
                        const uint32_t k = (s * bps + j) * 2 + kv;
                        gsrc[(size_t)l * npieces + k] =
                            (const char *)pool +
                            (((size_t)perm[s * bps + j] * layers + l) * 2 + kv) * bt * H * D * 2;
                        const uint64_t tok = (uint64_t)j * bt; /* token within the sequence */
                        gdst[k] = (char *)contig +
                                  (((size_t)s * cps + tok / cbt) * 2 + kv) * cbt * H * D * 2 +
                                  (tok % cbt) * H * D * 2;
                    }

        const stat2 tp = time_us(
            [&](int r) {
                p.layer = (uint32_t)r % layers;
                CKR(gpu_attn_run(&p, &plan, ws, wsb, st));
            },
            reps, st);
        const double tb = time_b2b_us(
            [&](int r) {
                p.layer = (uint32_t)r % layers;
                CKR(gpu_attn_run(&p, &plan, ws, wsb, st));
            },
            reps, st);
        const stat2 ts = time_us(
            [&](int r) {
                p.layer = (uint32_t)r % layers;
                CKR(gpu_attn_run(&p, &plans, ws, wsb, st));
            },
            reps, st);
        const stat2 tc = time_us([&](int) { CKR(gpu_attn_run(&pc, &planc, ws, wsb, st)); }, reps, st);
        const stat2 tg = time_us(
            [&](int r) {
                const uint32_t l = (uint32_t)r % layers;
                CKR(gpu_copy_blocks(gsrc + (size_t)l * npieces, gdst, npieces, piece, GPU_XFER_SM,
                                    0, st));
                CKR(gpu_attn_run(&pc, &planc, ws, wsb, st));
            },
            reps, st);
        CK(cudaStreamSynchronize(st));
        CK(cudaGetLastError());
        if (sweep)
            sweep_decode(p, c.L, reps, st);
        const double kvb = (double)layer_bytes;
        /* keys attended, causal: query i of q sees L - q + i + 1 keys */
        const double keys = (double)c.B * ((double)c.qlen * (c.L - c.qlen) +
                                           (double)c.qlen * (c.qlen + 1) / 2);
        const double tflops = 4.0 * D * Hq * keys / (tp.med_us * 1e6);
        printf("%-5u %-6u %-4u %4u %3u %2u %8.1f %8.1f %8.1f %7.2f %7.1f %8.1f %8.1f %7.2f %9.1f "
               "%7.2f %6.2f %6.2f %7.1f\n",
               c.B, c.L, c.qlen, plan.num_splits, plan.cluster, plan.warps, kvb / (1 << 20),
               tp.med_us, tp.p99_us, kvb / (tp.med_us * 1e6), tb, ts.med_us, tc.med_us,
               kvb / (tc.med_us * 1e6),
               tg.med_us, kvb / (tg.med_us * 1e6), tg.med_us / tp.med_us,
               kvb / (tp.med_us * 1e6) / copy_tbs, tflops);
        fflush(stdout);
        if (ws)
            CK(cudaFree(ws));
        CK(cudaFree(pool));
        CK(cudaFree(q));
        CK(cudaFree(out));
        CK(cudaFree(contig));
        CK(cudaFree(dperm));
        CK(cudaFree(dindptr));
        CK(cudaFree(dlens));
        CK(cudaFree(dqo));
        CK(cudaFree(dident));
        CK(cudaFree(dcindptr));
        free(perm), free(indptr), free(lens), free(qo), free(ident), free(cindptr), free(gsrc),
            free(gdst);
    }
    printf("# paged = gpu_attn_run (tensor-core kernels) over the random block table (splits "
           "cluster and warps chosen by the plan), events around one call; b2b = per call of 20 "
           "issued back to back; simt = the CUDA-core kernel on the same table; "
           "contig = the tensor-core kernel over contiguous K/V; gath+att = SM gather of the "
           "paged K/V into contiguous buffers + contig; TB/s = KV bytes / time; vs_g+a = "
           "gath+att time / paged time; vs_cp = paged TB/s / HBM copy limit; TFLOP/s = "
           "4*D*Hq*keys attended / paged time\n");
    CK(cudaStreamDestroy(st));
    return 0;
}
