// ctest: labels=gpu timeout=300
/*
 * test_gpu_pool — the HBM block pool and batched block copies (gpu/pool.cu).
 *  - allocator: all-or-nothing alloc (-ENOSPC), free of unallocated/repeated ids (-EINVAL),
 *    pins nest, a pinned block is never freed or overwritten (-EBUSY), against a trivial
 *    reference model over a random operation sequence;
 *  - copies: every method (CE loop, CE batch, SM kernel, auto) moves random blocks
 *    host->HBM into a random permutation of block ids and back out into another random
 *    permutation of host slots, byte-exact; contiguous runs (coalesced copies); host memory
 *    from cudaHostAlloc and from gpu_host_register (the engine's arena path); sizes that
 *    are not a multiple of 16 (SM refuses, CE copies).
 * Exit 77 without a GPU.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

extern "C" {
#include "gpu/gpu.h"
#include "testutil.h"
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

static tu_rng rng;

static void shuffle(int32_t *a, uint32_t n)
{
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)tu_below(&rng, i + 1);
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void test_allocator(void)
{
    kvt_layout L = {};
    L.layers = 2, L.kv_heads = 2, L.head_dim = 64, L.dtype = KVT_DTYPE_BF16, L.block_tokens = 16;
    gpu_pool *p;
    TU_CHECK_EQ(gpu_pool_create(&L, 0, &p), -EINVAL);
    kvt_layout bad = L;
    bad.block_tokens = 24;
    TU_CHECK_EQ(gpu_pool_create(&bad, 4, &p), KVT_EBADLAYOUT);
    const uint32_t N = 64;
    TU_CHECK_EQ(gpu_pool_create(&L, N, &p), 0);
    TU_CHECK_EQ(gpu_pool_block_bytes(p), 2ull * 2 * 16 * 2 * 64 * 2);
    TU_CHECK_EQ(gpu_pool_num_blocks(p), N);
    TU_CHECK(gpu_pool_block_ptr(p, (int32_t)N) == NULL && gpu_pool_block_ptr(p, -1) == NULL);

    /* reference model: state (0 free / 1 allocated) and pin count per block */
    int state[64] = {0};
    uint32_t pins[64] = {0};
    for (int step = 0; step < 20000; step++) {
        int op = (int)tu_below(&rng, 5);
        uint32_t n = 1 + (uint32_t)tu_below(&rng, 6);
        int32_t ids[8];
        if (op == 0) { /* alloc */
            uint32_t nfree = 0;
            for (uint32_t i = 0; i < N; i++)
                nfree += state[i] == 0;
            int rc = gpu_pool_alloc(p, n, ids);
            if (n > nfree) {
                TU_CHECK_EQ(rc, -ENOSPC);
            } else {
                TU_CHECK_EQ(rc, 0);
                for (uint32_t i = 0; i < n; i++) {
                    TU_CHECK(state[ids[i]] == 0);
                    state[ids[i]] = 1;
                    pins[ids[i]] = 0;
                }
            }
            continue;
        }
        for (uint32_t i = 0; i < n; i++)
            ids[i] = (int32_t)tu_below(&rng, N + 1) - (tu_below(&rng, 50) == 0); /* -1..N */
        bool valid = true, pinned = false, repeat = false;
        for (uint32_t i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= (int32_t)N || !state[ids[i]])
                valid = false;
            else if (pins[ids[i]])
                pinned = true;
            for (uint32_t j = 0; j < i; j++)
                repeat |= ids[j] == ids[i];
        }
        if (op == 1) { /* free: all or nothing */
            int rc = gpu_pool_free(p, n, ids);
            int want = !valid || repeat ? -EINVAL : pinned ? -EBUSY : 0;
            if (pinned && (!valid || repeat)) /* either reason may be found first */
                TU_CHECK(rc == -EINVAL || rc == -EBUSY);
            else
                TU_CHECK_EQ(rc, want);
            if (!rc)
                for (uint32_t i = 0; i < n; i++)
                    state[ids[i]] = 0;
        } else if (op == 2) { /* pin */
            TU_CHECK_EQ(gpu_pool_pin(p, n, ids), valid ? 0 : -EINVAL);
            if (valid)
                for (uint32_t i = 0; i < n; i++)
                    pins[ids[i]]++;
        } else if (op == 3) { /* unpin */
            bool enough = valid;
            uint32_t need[64] = {0};
            for (uint32_t i = 0; valid && i < n; i++)
                if (++need[ids[i]] > pins[ids[i]])
                    enough = false;
            TU_CHECK_EQ(gpu_pool_unpin(p, n, ids), enough ? 0 : -EINVAL);
            if (enough)
                for (uint32_t i = 0; i < n; i++)
                    pins[ids[i]]--;
        } else { /* load into blocks: refused while pinned (pins are never overwritten) */
            if (valid && !repeat) {
                int rc = gpu_pool_load(p, n, ids, NULL, GPU_XFER_AUTO, NULL);
                TU_CHECK_EQ(rc, -EINVAL); /* NULL src: argument check comes first */
            }
        }
        for (uint32_t i = 0; i < N; i++)
            TU_CHECK_EQ(gpu_pool_pins(p, (int32_t)i), state[i] ? pins[i] : 0);
    }
    /* a pinned block refuses a load; an unpinned one takes it */
    for (uint32_t i = 0; i < N; i++) {
        while (pins[i]) {
            int32_t id = (int32_t)i;
            TU_CHECK_EQ(gpu_pool_unpin(p, 1, &id), 0);
            pins[i]--;
        }
        if (state[i]) {
            int32_t id = (int32_t)i;
            TU_CHECK_EQ(gpu_pool_free(p, 1, &id), 0);
        }
    }
    TU_CHECK_EQ(gpu_pool_free_blocks(p), N);
    int32_t id;
    TU_CHECK_EQ(gpu_pool_alloc(p, 1, &id), 0);
    void *hb;
    CK(cudaHostAlloc(&hb, gpu_pool_block_bytes(p), cudaHostAllocDefault));
    memset(hb, 0x5a, gpu_pool_block_bytes(p));
    const void *src[1] = {hb};
    TU_CHECK_EQ(gpu_pool_pin(p, 1, &id), 0);
    TU_CHECK_EQ(gpu_pool_load(p, 1, &id, src, GPU_XFER_AUTO, NULL), -EBUSY);
    TU_CHECK_EQ(gpu_pool_free(p, 1, &id), -EBUSY);
    TU_CHECK_EQ(gpu_pool_unpin(p, 1, &id), 0);
    TU_CHECK_EQ(gpu_pool_load(p, 1, &id, src, GPU_XFER_AUTO, NULL), 0);
    CK(cudaDeviceSynchronize());
    TU_CHECK_EQ(gpu_pool_free(p, 1, &id), 0);
    CK(cudaFreeHost(hb));
    gpu_pool_destroy(p);
    printf("allocator: 20000 random operations match the reference model\n");
}

/* Round trip n blocks host -> pool (perm A) -> host (perm B) with `method`. */
static void round_trip(gpu_pool *p, unsigned char *hsrc, unsigned char *hdst, uint32_t n,
                       gpu_xfer_method method, bool scattered, cudaStream_t st)
{
    const uint64_t bb = gpu_pool_block_bytes(p);
    int32_t *ids = (int32_t *)malloc(n * sizeof(int32_t));
    int32_t *hs = (int32_t *)malloc(n * sizeof(int32_t)), *hd = (int32_t *)malloc(n * sizeof(int32_t));
    for (uint32_t i = 0; i < n; i++)
        hs[i] = hd[i] = (int32_t)i;
    if (scattered) {
        shuffle(hs, n);
        shuffle(hd, n);
    }
    const void **src = (const void **)malloc(n * sizeof(void *));
    void **dst = (void **)malloc(n * sizeof(void *));
    tu_fill(&rng, hsrc, (size_t)n * bb);
    memset(hdst, 0xEE, (size_t)n * bb);
    for (uint32_t i = 0; i < n; i++) {
        src[i] = hsrc + (size_t)hs[i] * bb;
        dst[i] = hdst + (size_t)hd[i] * bb;
    }
    if (scattered) {
        TU_CHECK_EQ(gpu_pool_alloc(p, n, ids), 0);
        shuffle(ids, n); /* the table need not be in allocation order */
        TU_CHECK_EQ(gpu_pool_load(p, n, ids, src, method, st), 0);
    } else {
        TU_CHECK_EQ(gpu_pool_load_new(p, n, src, ids, method, st), 0);
    }
    TU_CHECK_EQ(gpu_pool_store(p, n, ids, dst, method, st), 0);
    CK(cudaStreamSynchronize(st));
    for (uint32_t i = 0; i < n; i++)
        if (memcmp(src[i], dst[i], bb)) {
            fprintf(stderr, "block %u differs after round trip (method %d, scattered %d)\n", i,
                    (int)method, (int)scattered);
            exit(1);
        }
    TU_CHECK_EQ(gpu_pool_free(p, n, ids), 0);
    free(ids), free(hs), free(hd), free(src), free(dst);
}

static void test_copies(void)
{
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const uint32_t btoks[3] = {16, 64, 256};
    for (int bi = 0; bi < 3; bi++) {
        kvt_layout L = {};
        L.layers = 3, L.kv_heads = 2, L.head_dim = 64, L.dtype = KVT_DTYPE_FP16;
        L.block_tokens = btoks[bi];
        const uint32_t n = 37;
        gpu_pool *p;
        TU_CHECK_EQ(gpu_pool_create(&L, n + 5, &p), 0);
        const size_t bytes = (size_t)n * gpu_pool_block_bytes(p);
        unsigned char *a, *b;
        CK(cudaHostAlloc((void **)&a, bytes, cudaHostAllocDefault));
        CK(cudaHostAlloc((void **)&b, bytes, cudaHostAllocDefault));
        const gpu_xfer_method ms[4] = {GPU_XFER_CE_LOOP, GPU_XFER_CE_BATCH, GPU_XFER_SM,
                                       GPU_XFER_AUTO};
        for (int mi = 0; mi < 4; mi++)
            for (int sc = 0; sc < 2; sc++)
                round_trip(p, a, b, n, ms[mi], sc, st);
        CK(cudaFreeHost(a));
        CK(cudaFreeHost(b));
        /* the engine's path: malloc'd memory registered with gpu_host_register */
        unsigned char *ra = (unsigned char *)aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
        unsigned char *rb = (unsigned char *)aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
        TU_CHECK_EQ(gpu_host_register(ra, bytes), 0);
        TU_CHECK_EQ(gpu_host_register(rb, bytes), 0);
        for (int mi = 0; mi < 4; mi++)
            round_trip(p, ra, rb, n, ms[mi], true, st);
        gpu_host_unregister(ra);
        gpu_host_unregister(rb);
        /* pageable memory (pinning off): the copy engines stage it; the SM kernel, which
         * would fault on it, refuses, and auto falls back to the copy engines */
        for (int mi = 0; mi < 4; mi++) {
            if (ms[mi] == GPU_XFER_SM) {
                int32_t ids[1];
                const void *s1[1] = {ra};
                TU_CHECK_EQ(gpu_pool_alloc(p, 1, ids), 0);
                TU_CHECK_EQ(gpu_pool_load(p, 1, ids, s1, GPU_XFER_SM, st), -EINVAL);
                TU_CHECK_EQ(gpu_pool_free(p, 1, ids), 0);
                continue;
            }
            round_trip(p, ra, rb, n, ms[mi], true, st);
        }
        free(ra), free(rb);
        gpu_pool_destroy(p);
    }
    /* gpu_copy_blocks on sizes that are not a multiple of 16: SM refuses, CE copies */
    const uint64_t odd = 4100;
    unsigned char *h, *d;
    CK(cudaHostAlloc((void **)&h, 8 * odd, cudaHostAllocDefault));
    CK(cudaMalloc((void **)&d, 8 * odd));
    tu_fill(&rng, h, 8 * odd);
    const void *src[8];
    void *dst[8];
    for (int i = 0; i < 8; i++) {
        src[i] = h + (size_t)(7 - i) * odd;
        dst[i] = d + (size_t)i * odd;
    }
    TU_CHECK_EQ(gpu_copy_blocks(src, dst, 8, odd, GPU_XFER_SM, 0, st), -EINVAL);
    TU_CHECK_EQ(gpu_copy_blocks(src, dst, 8, odd, GPU_XFER_AUTO, 0, st), 0);
    unsigned char *back = (unsigned char *)malloc(8 * odd);
    CK(cudaStreamSynchronize(st));
    CK(cudaMemcpy(back, d, 8 * odd, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 8; i++)
        TU_CHECK(memcmp(back + (size_t)i * odd, h + (size_t)(7 - i) * odd, odd) == 0);
    TU_CHECK_EQ(gpu_copy_blocks(NULL, dst, 8, odd, GPU_XFER_AUTO, 0, st), -EINVAL);
    TU_CHECK_EQ(gpu_copy_blocks(src, dst, 8, 0, GPU_XFER_AUTO, 0, st), -EINVAL);
    free(back);
    CK(cudaFreeHost(h));
    CK(cudaFree(d));
    CK(cudaStreamDestroy(st));
    printf("copies: 3 block sizes x 4 methods x scattered/contiguous x pinned/registered/"
           "pageable host memory round-trip byte-exact\n");
}

int main(void)
{
    if (gpu_device_count() <= 0)
        TU_SKIP("no GPU");
    tu_rng_init(&rng, tu_seed("test_gpu_pool", 5));
    test_allocator();
    test_copies();
    printf("test_gpu_pool: passed\n");
    return 0;
}
