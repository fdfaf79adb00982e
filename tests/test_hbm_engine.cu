// ctest: labels=gpu timeout=300
/*
 * test_hbm_engine — the engine's HBM tier end to end (kvtier.h, "the HBM tier"):
 *  1. put blocks, match, kvt_lease_load_hbm, copy the pool blocks back with cudaMemcpy:
 *     byte-exact; kvt_lease_block_tier says HBM;
 *  2. decode and extend attention through kvt_attn_run over the returned block table equal
 *     the float64 reference (gpu/attn_ref.c) within 1e-2 (relative L2);
 *  3. pinned HBM copies survive pool pressure from another lease (-ENOSPC, bytes intact);
 *  4. after kvt_release they are evicted LRU by the other lease's load; a re-load reuses
 *     what is still resident (hits); kvt_remove frees a block's HBM copy;
 *  5. kvt_lease_gather_layer from the DRAM arena and from HBM equals the host permutation;
 *  6. nvme-only blocks (warm restart from $KVT_TEST_DIR) load correctly.
 * Exit 77 without a GPU.
 */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cuda_runtime.h>

extern "C" {
#include "gpu/gpu.h"
#include "testutil.h"
}
#include "gpu/paged.h"
#include "kvtier/kvtier.h"

#define CK(x)                                                                              \
    do {                                                                                   \
        cudaError_t e_ = (x);                                                              \
        if (e_ != cudaSuccess) {                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static tu_rng rng;
static kvt_layout L;
static uint64_t bb;
static const uint32_t BT = 16, NB = 6;

struct prompt {
    uint32_t tok[NB * BT];
    unsigned char *data; /* [NB][bb] bf16 in [-1, 1] */
};

static void make_prompt(prompt *p)
{
    for (uint32_t i = 0; i < NB * BT; i++)
        p->tok[i] = (uint32_t)tu_below(&rng, 1u << 30);
    p->data = (unsigned char *)malloc(NB * bb);
    uint16_t *h = (uint16_t *)p->data;
    for (uint64_t i = 0; i < NB * bb / 2; i++)
        h[i] = gpu_f32_to_bf16((float)((double)tu_below(&rng, 1u << 20) / (1u << 19) - 1.0));
}

static void put_prompt(kvt_ns *ns, const prompt *p)
{
    const void *blocks[NB];
    for (uint32_t i = 0; i < NB; i++)
        blocks[i] = p->data + i * bb;
    size_t stored = 0;
    TU_CHECK_EQ(kvt_put(ns, p->tok, NB * BT, blocks, &stored), 0);
}

/* pool blocks table[0..n) equal p's blocks first.. first+n */
static void check_pool(const kvt_hbm_pool_info *info, const int32_t *table, size_t first, size_t n,
                       const prompt *p)
{
    unsigned char *buf = (unsigned char *)malloc(bb);
    for (size_t i = 0; i < n; i++) {
        TU_CHECK(table[i] >= 0 && (uint32_t)table[i] < info->num_blocks);
        CK(cudaMemcpy(buf, (char *)info->base + (uint64_t)table[i] * bb, bb, cudaMemcpyDeviceToHost));
        TU_CHECK(memcmp(buf, p->data + (first + i) * bb, bb) == 0);
    }
    free(buf);
}

static kvt_stats stats(kvt_engine *e)
{
    kvt_stats s;
    TU_CHECK_EQ(kvt_engine_stats(e, &s, sizeof s), 0);
    return s;
}

static double attn_check(const kvt_hbm_pool_info *info, const int32_t *table, uint32_t nblk,
                         uint32_t kv_len, uint32_t q_len, uint32_t layer)
{
    const uint32_t QH = 8, D = L.head_dim;
    const size_t qn = (size_t)q_len * QH * D;
    uint16_t *q = (uint16_t *)malloc(qn * 2), *o = (uint16_t *)malloc(qn * 2);
    for (size_t i = 0; i < qn; i++)
        q[i] = gpu_f32_to_bf16((float)((double)tu_below(&rng, 1u << 20) / (1u << 19) - 1.0));
    int32_t qo[2] = {0, (int32_t)q_len}, kvp[2] = {0, (int32_t)nblk}, lens[1] = {(int32_t)kv_len};
    void *dq, *dout, *dqo, *dkvp, *dind, *dlens, *ws = nullptr;
    CK(cudaMalloc(&dq, qn * 2));
    CK(cudaMalloc(&dout, qn * 2));
    CK(cudaMalloc(&dqo, 8));
    CK(cudaMalloc(&dkvp, 8));
    CK(cudaMalloc(&dind, nblk * 4));
    CK(cudaMalloc(&dlens, 4));
    CK(cudaMemcpy(dq, q, qn * 2, cudaMemcpyHostToDevice));
    CK(cudaMemset(dout, 0xff, qn * 2)); /* poison: NaN in bf16 */
    CK(cudaMemcpy(dqo, qo, 8, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dkvp, kvp, 8, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dind, table, nblk * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dlens, lens, 4, cudaMemcpyHostToDevice));
    kvt_attn_args a;
    memset(&a, 0, sizeof a);
    a.layout = info->layout;
    a.layer = layer;
    a.num_qo_heads = QH;
    a.num_seqs = 1;
    a.total_q = q_len;
    a.max_q_len = q_len;
    a.max_kv_len = kv_len;
    a.num_blocks = info->num_blocks;
    a.pool = info->base;
    a.q = dq;
    a.out = dout;
    a.qo_indptr = q_len > 1 ? (const int32_t *)dqo : nullptr;
    a.kv_indptr = (const int32_t *)dkvp;
    a.kv_indices = (const int32_t *)dind;
    a.kv_lens = (const int32_t *)dlens;
    size_t wsb = 0;
    TU_CHECK_EQ(kvt_attn_workspace_bytes(&a, &wsb), 0);
    if (wsb)
        CK(cudaMalloc(&ws, wsb));
    TU_CHECK_EQ(kvt_attn_run(&a, ws, wsb, nullptr), 0);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(o, dout, qn * 2, cudaMemcpyDeviceToHost));
    /* the reference on host copies of everything */
    uint64_t pool_bytes = (uint64_t)info->num_blocks * bb;
    void *hpool = malloc(pool_bytes);
    CK(cudaMemcpy(hpool, info->base, pool_bytes, cudaMemcpyDeviceToHost));
    gpu_attn_params p;
    memset(&p, 0, sizeof p);
    p.dtype = KVT_DTYPE_BF16;
    p.num_qo_heads = QH;
    p.num_kv_heads = L.kv_heads;
    p.head_dim = D;
    p.block_tokens = BT;
    p.layers = L.layers;
    p.layer = layer;
    p.num_blocks = info->num_blocks;
    p.num_seqs = 1;
    p.q = q;
    p.pool = hpool;
    p.qo_indptr = q_len > 1 ? qo : nullptr;
    p.kv_indptr = kvp;
    p.kv_indices = table;
    p.kv_lens = lens;
    float *ref = (float *)malloc(qn * sizeof(float));
    TU_CHECK_EQ(gpu_attn_ref(&p, q_len, ref), 0);
    double num = 0, den = 0;
    for (size_t i = 0; i < qn; i++) {
        double g = gpu_bf16_to_f32(o[i]);
        TU_CHECK(!isnan(g));
        num += (g - ref[i]) * (g - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    free(q), free(o), free(hpool), free(ref);
    cudaFree(dq), cudaFree(dout), cudaFree(dqo), cudaFree(dkvp), cudaFree(dind), cudaFree(dlens);
    if (ws)
        cudaFree(ws);
    return sqrt(num / den);
}

/* gather layer `layer` of lease blocks [0, NB) and compare with the host permutation */
static void gather_check(kvt_lease *l, const prompt *p, uint32_t layer)
{
    const uint32_t H = L.kv_heads, D = L.head_dim, T = NB * BT, TS = T + 32; /* stride > T */
    const size_t n = (size_t)H * TS * D;
    void *dk, *dv;
    CK(cudaMalloc(&dk, n * 2));
    CK(cudaMalloc(&dv, n * 2));
    CK(cudaMemset(dk, 0, n * 2));
    CK(cudaMemset(dv, 0, n * 2));
    TU_CHECK_EQ(kvt_lease_gather_layer(l, 0, NB, layer, dk, dv, (uint64_t)TS * D, 0, nullptr), 0);
    CK(cudaDeviceSynchronize());
    uint16_t *k = (uint16_t *)malloc(n * 2), *v = (uint16_t *)malloc(n * 2);
    CK(cudaMemcpy(k, dk, n * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(v, dv, n * 2, cudaMemcpyDeviceToHost));
    const uint16_t *src = (const uint16_t *)p->data;
    const uint64_t be = bb / 2, page = (uint64_t)BT * H * D;
    for (uint32_t h = 0; h < H; h++)
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t d = 0; d < D; d++) {
                uint32_t b = t / BT, tt = t % BT;
                uint64_t s = b * be + (uint64_t)layer * 2 * page + ((uint64_t)tt * H + h) * D + d;
                uint64_t o = ((uint64_t)h * TS + t) * D + d;
                TU_CHECK_EQ(k[o], src[s]);
                TU_CHECK_EQ(v[o], src[s + page]);
            }
    free(k), free(v);
    cudaFree(dk), cudaFree(dv);
}

static char root[512];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void test_nvme(const prompt *p)
{
    const char *base = getenv("KVT_TEST_DIR");
    if (!base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(root, sizeof root, "%s/test_hbm_engine.%d", base, (int)getpid());
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    TU_CHECK(mkdir(root, 0755) == 0);
    for (int round = 0; round < 2; round++) {
        kvt_options *o;
        kvt_engine *e;
        TU_CHECK_EQ(kvt_options_create(&o), 0);
        TU_CHECK_EQ(kvt_options_set_dram_bytes(o, 64 * bb), 0);
        TU_CHECK_EQ(kvt_options_set_data_dir(o, root), 0);
        TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_NVME, NULL, 256 * bb, 0), 0);
        TU_CHECK_EQ(kvt_options_set_hbm_bytes(o, 16 * bb, 1), 0);
        TU_CHECK_EQ(kvt_engine_open(o, &e), 0);
        kvt_options_destroy(o);
        kvt_ns *ns;
        TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &L, 0, &ns), 0);
        if (round == 0) {
            put_prompt(ns, p);
            TU_CHECK_EQ(kvt_flush(e), 0);
        } else { /* warm restart: the blocks are on nvme only */
            kvt_lease *l;
            size_t matched = 0;
            TU_CHECK_EQ(kvt_match(ns, p->tok, NB * BT, &matched, &l), 0);
            TU_CHECK_EQ(matched, NB * BT);
            kvt_tier t;
            TU_CHECK_EQ(kvt_lease_block_tier(l, 0, &t), 0);
            TU_CHECK_EQ(t, KVT_TIER_NVME);
            kvt_hbm_pool_info info;
            TU_CHECK_EQ(kvt_hbm_pool(ns, &info), 0);
            int32_t table[NB];
            TU_CHECK_EQ(kvt_lease_load_hbm(l, 0, NB, table, nullptr), 0);
            CK(cudaDeviceSynchronize());
            check_pool(&info, table, 0, NB, p);
            TU_CHECK_EQ(kvt_lease_block_tier(l, 0, &t), 0);
            TU_CHECK_EQ(t, KVT_TIER_HBM);
            kvt_stats s = stats(e);
            TU_CHECK(s.tier_reads[KVT_TIER_NVME] >= NB);
            TU_CHECK_EQ(s.hbm_loads, NB);
            kvt_release(l);
        }
        TU_CHECK_EQ(kvt_engine_close(e), 0);
    }
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    if (gpu_device_count() <= 0)
        TU_SKIP("no GPU");
    tu_rng_init(&rng, tu_seed("test_hbm_engine", 4242));
    memset(&L, 0, sizeof L);
    L.layers = 4, L.kv_heads = 2, L.head_dim = 128, L.dtype = KVT_DTYPE_BF16, L.block_tokens = BT;
    bb = kvt_layout_block_bytes(&L); /* 4*2*16*2*128*2 = 64 KiB */

    kvt_options *o;
    kvt_engine *e;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, 64 * bb), 0);
    TU_CHECK_EQ(kvt_options_set_hbm_bytes(o, 8 * bb, 1), 0);
    TU_CHECK_EQ(kvt_engine_open(o, &e), 0);
    kvt_options_destroy(o);
    kvt_stats s = stats(e);
    TU_CHECK_EQ(s.hbm_state, 1);
    TU_CHECK_EQ(s.dram_cuda_pinned, 1);
    kvt_ns *ns, *other;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &L, 0, &ns), 0);
    kvt_layout L2 = L;
    L2.layers = 2;
    TU_CHECK_EQ(kvt_ns_open(e, "m2", "t", &L2, 0, &other), 0);
    kvt_hbm_pool_info info;
    TU_CHECK_EQ(kvt_hbm_pool(ns, &info), 0);
    TU_CHECK_EQ(info.num_blocks, 8);
    TU_CHECK_EQ(info.block_bytes, bb);
    TU_CHECK_EQ(kvt_hbm_pool(other, &info), KVT_EBADLAYOUT);
    TU_CHECK_EQ(kvt_hbm_pool(ns, &info), 0);

    prompt A, B;
    make_prompt(&A);
    make_prompt(&B);
    put_prompt(ns, &A);
    put_prompt(ns, &B);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));

    /* 1. load, bytes, tier */
    kvt_lease *la, *lb;
    size_t matched = 0;
    TU_CHECK_EQ(kvt_match(ns, A.tok, NB * BT, &matched, &la), 0);
    TU_CHECK_EQ(matched, NB * BT);
    int32_t ta[NB], tb[NB];
    TU_CHECK_EQ(kvt_lease_load_hbm(la, 0, NB, ta, st), 0);
    CK(cudaStreamSynchronize(st));
    check_pool(&info, ta, 0, NB, &A);
    for (size_t i = 0; i < NB; i++) {
        kvt_tier t;
        TU_CHECK_EQ(kvt_lease_block_tier(la, i, &t), 0);
        TU_CHECK_EQ(t, KVT_TIER_HBM);
    }
    s = stats(e);
    TU_CHECK_EQ(s.hbm_loads, NB);
    TU_CHECK_EQ(s.hbm_pinned_blocks, NB);
    TU_CHECK_EQ(s.hbm_used, NB * bb);
    TU_CHECK_EQ(s.tier_blocks[KVT_TIER_HBM], NB);

    /* 2. attention over the block table: decode (partial last block), extend (causal) */
    double r1 = attn_check(&info, ta, NB, NB * BT - 5, 1, 1);
    double r2 = attn_check(&info, ta, NB, NB * BT, 7, 3);
    printf("attention rel. L2 error: decode %.2e, extend %.2e\n", r1, r2);
    TU_CHECK(r1 < 1e-2 && r2 < 1e-2);

    /* 5. gather from the arena, then from HBM (the lease's HBM copies are preferred) */
    TU_CHECK_EQ(kvt_match(ns, B.tok, NB * BT, &matched, &lb), 0);
    gather_check(lb, &B, 2); /* B is DRAM only: read over PCIe from the arena */
    gather_check(la, &A, 1); /* A is in HBM */

    /* 3. pinned copies survive pressure: 2 free slabs, 6 pinned by la */
    TU_CHECK_EQ(kvt_lease_load_hbm(lb, 0, 2, tb, st), 0);
    TU_CHECK_EQ(kvt_lease_load_hbm(lb, 2, 4, tb + 2, st), -ENOSPC);
    CK(cudaStreamSynchronize(st));
    check_pool(&info, ta, 0, NB, &A);
    check_pool(&info, tb, 0, 2, &B);
    s = stats(e);
    TU_CHECK_EQ(s.hbm_pinned_blocks, NB + 2);
    TU_CHECK_EQ(s.hbm_evictions, 0);

    /* 4. release, then eviction makes room; the re-load reuses what is left */
    kvt_release(la);
    TU_CHECK_EQ(kvt_lease_load_hbm(lb, 2, 4, tb + 2, st), 0);
    CK(cudaStreamSynchronize(st));
    check_pool(&info, tb, 0, NB, &B);
    s = stats(e);
    TU_CHECK_EQ(s.hbm_evictions, 4);
    TU_CHECK_EQ(s.hbm_pinned_blocks, NB);
    TU_CHECK_EQ(kvt_match(ns, A.tok, NB * BT, &matched, &la), 0);
    int in_hbm = 0;
    for (size_t i = 0; i < NB; i++) {
        kvt_tier t;
        TU_CHECK_EQ(kvt_lease_block_tier(la, i, &t), 0);
        in_hbm += t == KVT_TIER_HBM;
    }
    TU_CHECK_EQ(in_hbm, 2); /* the 4 least recently used went; which 4 is LRU order */
    kvt_release(lb);
    uint64_t hits0 = stats(e).hbm_hits;
    TU_CHECK_EQ(kvt_lease_load_hbm(la, 0, NB, ta, st), 0);
    CK(cudaStreamSynchronize(st));
    check_pool(&info, ta, 0, NB, &A);
    TU_CHECK_EQ(stats(e).hbm_hits - hits0, 2);
    kvt_release(la);
    /* kvt_remove drops the HBM copies of the removed blocks */
    size_t removed = 0;
    uint64_t used0 = stats(e).hbm_used;
    TU_CHECK_EQ(kvt_remove(ns, A.tok, 4 * BT, &removed), 0);
    TU_CHECK_EQ(removed, 3);
    TU_CHECK_EQ(stats(e).hbm_used, used0 - 3 * bb);
    TU_CHECK_EQ(stats(e).hbm_pinned_blocks, 0);
    CK(cudaStreamDestroy(st));
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    /* 6. nvme-only blocks */
    test_nvme(&A);
    free(A.data);
    free(B.data);
    printf("test_hbm_engine: ok\n");
    return 0;
}
