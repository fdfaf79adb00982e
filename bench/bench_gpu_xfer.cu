/*
 * bench_gpu_xfer — batched scattered block copies between pinned host memory and HBM
 * (gpu_copy_blocks), per mechanism, against the physical limit measured in the same run:
 * one contiguous pinned cudaMemcpyAsync of the same total bytes.
 *
 *   bench_gpu_xfer [--quick] [--total-mib 512] [--reps 10]
 *
 * Blocks are scattered on both sides (random permutations of host slots and HBM slots), so
 * no two copies coalesce. Rows: block size x direction x method; GB/s = total bytes / time
 * (median and p99 over reps, CUDA events). Exit 77 without a GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static uint64_t rs = 88172645463325252ull;
static uint64_t xr(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static void perm(uint32_t *a, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        a[i] = i;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(xr() % (i + 1)), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

struct stat2 {
    double med, p99; /* GB/s (p99 = the slow tail: 99th percentile of time) */
};

typedef int (*copy_fn)(void *ctx, cudaStream_t st);

static stat2 time_it(copy_fn f, void *ctx, uint64_t bytes, int reps, cudaStream_t st)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    double *ms = (double *)malloc(reps * sizeof(double));
    for (int w = 0; w < 2; w++)
        if (f(ctx, st)) {
            fprintf(stderr, "copy failed\n");
            exit(1);
        }
    CK(cudaStreamSynchronize(st));
    for (int r = 0; r < reps; r++) {
        CK(cudaEventRecord(a, st));
        if (f(ctx, st)) {
            fprintf(stderr, "copy failed\n");
            exit(1);
        }
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float t;
        CK(cudaEventElapsedTime(&t, a, b));
        ms[r] = t;
    }
    stat2 s;
    s.med = bytes / (bu_quantile(ms, reps, 0.5) * 1e6);
    s.p99 = bytes / (bu_quantile(ms, reps, 0.99) * 1e6);
    free(ms);
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return s;
}

struct contig_ctx {
    void *dst;
    const void *src;
    uint64_t bytes;
};
static int contig(void *c, cudaStream_t st)
{
    contig_ctx *x = (contig_ctx *)c;
    return cudaMemcpyAsync(x->dst, x->src, x->bytes, cudaMemcpyDefault, st) != cudaSuccess;
}

struct blocks_ctx {
    const void **src;
    void **dst;
    uint32_t n;
    uint64_t bs;
    gpu_xfer_method m;
    uint32_t ctas;
};
static int blocks(void *c, cudaStream_t st)
{
    blocks_ctx *x = (blocks_ctx *)c;
    return gpu_copy_blocks(x->src, x->dst, x->n, x->bs, x->m, x->ctas, st);
}

/* An SM-bound stand-in for attention running beside the copies: FMAs in registers. */
__global__ void busy_kernel(float *out, int iters)
{
    float a = threadIdx.x * 1e-3f, b = 1.0001f;
    for (int i = 0; i < iters; i++)
        a = fmaf(a, b, 1e-7f);
    if (a == 12345.0f)
        out[threadIdx.x] = a;
}

/* Compute time alone vs while a 64 KiB-block h2d batch runs on another stream, per method. */
static void overlap(const void **src, void **dst, uint32_t n, uint64_t bs, int sms)
{
    cudaStream_t cs, xs;
    CK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&xs, cudaStreamNonBlocking));
    cudaEvent_t a, b, xa, xb;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaEventCreate(&xa));
    CK(cudaEventCreate(&xb));
    const int iters = 1000000; /* ~9 ms on an H100: about the copy's time */
    busy_kernel<<<sms * 8, 256, 0, cs>>>(NULL, iters);
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(cs));
    printf("# overlap: compute kernel (%d CTAs of FMAs) beside a %u x %llu KiB h2d batch\n",
           sms * 8, n, (unsigned long long)(bs >> 10));
    printf("%-16s %10s %10s %10s\n", "copy_method", "compute_ms", "copy_ms", "copy_GB/s");
    const char *names[3] = {"none", "ce_batch", "sm_kernel_2/SM"};
    const gpu_xfer_method ms[3] = {GPU_XFER_AUTO, GPU_XFER_CE_BATCH, GPU_XFER_SM};
    for (int m = 0; m < 3; m++) {
        CK(cudaEventRecord(a, cs));
        busy_kernel<<<sms * 8, 256, 0, cs>>>(NULL, iters);
        CK(cudaGetLastError());
        CK(cudaEventRecord(b, cs));
        float cms = 0, xms = 0;
        if (m) {
            CK(cudaEventRecord(xa, xs));
            if (gpu_copy_blocks(src, dst, n, bs, ms[m], 0, xs)) {
                fprintf(stderr, "copy failed\n");
                exit(1);
            }
            CK(cudaEventRecord(xb, xs));
        }
        CK(cudaDeviceSynchronize());
        CK(cudaEventElapsedTime(&cms, a, b));
        if (m)
            CK(cudaEventElapsedTime(&xms, xa, xb));
        printf("%-16s %10.3f %10.3f %10.2f\n", names[m], cms, xms,
               m ? (double)n * bs / (xms * 1e6) : 0.0);
    }
    CK(cudaStreamDestroy(cs));
    CK(cudaStreamDestroy(xs));
}

int main(int argc, char **argv)
{
    if (gpu_device_count() <= 0) {
        fprintf(stderr, "skip: no GPU\n");
        return 77;
    }
    const bool quick = bu_flag(argc, argv, "--quick");
    const uint64_t total = (uint64_t)bu_opt(argc, argv, "--total-mib", quick ? 8 : 512) << 20;
    const int reps = (int)bu_opt(argc, argv, "--reps", quick ? 2 : 10);
    bu_header(argc, argv);
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("# device %s, %d SMs; total %llu MiB per copy batch, %d reps\n", prop.name,
           prop.multiProcessorCount, (unsigned long long)(total >> 20), reps);

    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    char *h, *d, *hreg;
    CK(cudaHostAlloc((void **)&h, total, cudaHostAllocDefault));
    CK(cudaMalloc((void **)&d, total));
    memset(h, 0x3c, total);
    CK(cudaMemset(d, 0x3c, total));
    /* the engine's arena: plain memory registered through gpu_host_register */
    hreg = (char *)aligned_alloc(1 << 21, total);
    memset(hreg, 0x3c, total);
    const bool have_reg = gpu_host_register(hreg, total) == 0;

    contig_ctx c = {d, h, total};
    const stat2 lim_h2d = time_it(contig, &c, total, reps, st);
    c.dst = h, c.src = d;
    const stat2 lim_d2h = time_it(contig, &c, total, reps, st);

    printf("%-8s %-4s %-6s %-16s %7s %8s %8s %9s %6s\n", "block", "dir", "host", "method",
           "copies", "GB/s", "p99GB/s", "limitGB/s", "ratio");
    const uint64_t sizes[5] = {16 << 10, 64 << 10, 256 << 10, 2 << 20, 8 << 20};
    for (int si = 0; si < 5; si++) {
        const uint64_t bs = sizes[si];
        const uint32_t n = (uint32_t)(total / bs);
        if (n < 2)
            continue;
        uint32_t *hp = (uint32_t *)malloc(n * 4), *dp = (uint32_t *)malloc(n * 4);
        perm(hp, n);
        perm(dp, n);
        const void **src = (const void **)malloc(n * sizeof(void *));
        void **dst = (void **)malloc(n * sizeof(void *));
        for (int hk = 0; hk < (have_reg ? 2 : 1); hk++) {
            char *hb = hk ? hreg : h;
            for (int dir = 0; dir < 2; dir++) {
                for (uint32_t i = 0; i < n; i++) {
                    char *hs = hb + (uint64_t)hp[i] * bs, *ds = d + (uint64_t)dp[i] * bs;
                    src[i] = dir ? ds : hs;
                    dst[i] = dir ? hs : ds;
                }
                struct {
                    const char *name;
                    gpu_xfer_method m;
                    uint32_t ctas;
                } ms[5] = {{"ce_loop", GPU_XFER_CE_LOOP, 0},
                           {"ce_batch", GPU_XFER_CE_BATCH, 0},
                           {"sm_kernel_2/SM", GPU_XFER_SM, 0},
                           {"sm_kernel_16cta", GPU_XFER_SM, 16},
                           {"auto", GPU_XFER_AUTO, 0}};
                for (int mi = 0; mi < 5; mi++) {
                    if (hk && mi == 0)
                        continue; /* registered memory: batch, SM and auto rows only */
                    blocks_ctx b = {src, dst, n, bs, ms[mi].m, ms[mi].ctas};
                    const stat2 s = time_it(blocks, &b, total, reps, st);
                    const double lim = dir ? lim_d2h.med : lim_h2d.med;
                    printf("%-8llu %-4s %-6s %-16s %7u %8.2f %8.2f %9.2f %6.2f\n",
                           (unsigned long long)(bs >> 10), dir ? "d2h" : "h2d",
                           hk ? "regist" : "alloc", ms[mi].name, n, s.med, s.p99, lim,
                           s.med / lim);
                }
            }
        }
        if (bs == (64 << 10) && !quick) {
            for (uint32_t i = 0; i < n; i++) {
                src[i] = h + (uint64_t)hp[i] * bs;
                dst[i] = d + (uint64_t)dp[i] * bs;
            }
            overlap(src, dst, n, bs, prop.multiProcessorCount);
            printf("%-8s %-4s %-6s %-16s %7s %8s %8s %9s %6s\n", "block", "dir", "host",
                   "method", "copies", "GB/s", "p99GB/s", "limitGB/s", "ratio");
        }
        free(hp), free(dp), free(src), free(dst);
    }
    printf("# block in KiB; limit = one contiguous %llu MiB pinned cudaMemcpyAsync: h2d %.2f "
           "GB/s (p99 %.2f), d2h %.2f GB/s (p99 %.2f)\n",
           (unsigned long long)(total >> 20), lim_h2d.med, lim_h2d.p99, lim_d2h.med,
           lim_d2h.p99);
    if (have_reg)
        gpu_host_unregister(hreg);
    free(hreg);
    CK(cudaFreeHost(h));
    CK(cudaFree(d));
    CK(cudaStreamDestroy(st));
    return 0;
}
