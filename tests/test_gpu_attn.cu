// ctest: labels=gpu timeout=600
/*
 * test_gpu_attn — paged attention kernels (gpu/attn.cu: CUDA cores; gpu/attn_mma.cu: tensor
 * cores) against the float64 CPU reference (gpu/attn_ref.c), on fresh random data for every
 * case, each case run by BOTH kernels (GPU_ATTN_SIMT and GPU_ATTN_MMA, forced; MMA decode
 * plans with 8 warps per CTA are rerun with 4, the variant the plan takes for > 64
 * (sequence, KV head) pairs, which a 10-sequence x 8-KV-head case also takes by itself):
 *   decode: bf16/fp16 x head_dim 64/128 x group 1..8 x block_tokens 8/16/64/256, sequence
 *           lengths 1, 17, 54, 97, 1000+r and a random one, split-K auto / 1 / 5 / 37 (MMA:
 *           5 = one cluster merged in the kernel; 37 = clusters + workspace + merge kernel);
 *           also through qo_indptr with q_len 0 or 1 per sequence;
 *   extend: the same dtypes, dims and groups, block_tokens 16/256, (prefix, new) pairs
 *           (0,1) (0,17) (17,54) (97,97) (1000+r,33) (r,7), split-K auto / 1 / 3.
 * Block tables are random permutations of a pool with spare blocks; the layer is random.
 * Outputs and the split-K workspace are poisoned (0xFF: NaN) before every run and every
 * element must be written; rel error ||out-ref||/||ref|| <= 1e-2; a rerun must give the
 * same bits (a moving result would mean a race).
 * KVT_GPU_QUICK=1 runs a subset (for compute-sanitizer); KVT_GPU_MMA_DECODE=1 only the
 * tensor-core decode runs (racecheck of that kernel alone). Exit 77 without a GPU.
 */
#include <errno.h>
#include <math.h>
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
static double worst_rel[3];
static int cases[3];
static uint32_t g_kv_heads = 2;
static bool g_mma_decode_only; /* KVT_GPU_MMA_DECODE=1: tensor-core decode runs only */

static float frand(float lo, float hi)
{
    return lo + (hi - lo) * (float)((tu_next(&rng) >> 11) * (1.0 / 9007199254740992.0));
}

static uint16_t to_dt(kvt_dtype dt, float f)
{
    return dt == KVT_DTYPE_BF16 ? gpu_f32_to_bf16(f) : gpu_f32_to_f16(f);
}
static float from_dt(kvt_dtype dt, uint16_t h)
{
    return dt == KVT_DTYPE_BF16 ? gpu_bf16_to_f32(h) : gpu_f16_to_f32(h);
}

struct seqspec {
    int prefix, qlen; /* kv_len = prefix + qlen */
};

/* One call: build a pool, block tables, q; run for each split setting; compare. */
/* extend: pass qo_indptr (q_len per sequence from ss); a max q_len of 1 plans a decode */
static void run_case(kvt_dtype dt, uint32_t D, uint32_t G, uint32_t bt, const seqspec *ss,
                     int nseq, bool extend, const uint32_t *splits, int nsplits)
{
    const uint32_t H = g_kv_heads, Hq = H * G, layers = 3, layer = (uint32_t)tu_below(&rng, layers);
    int32_t *qo = (int32_t *)malloc((nseq + 1) * sizeof(int32_t));
    int32_t *kvp = (int32_t *)malloc((nseq + 1) * sizeof(int32_t));
    int32_t *lens = (int32_t *)malloc(nseq * sizeof(int32_t));
    qo[0] = kvp[0] = 0;
    uint32_t max_q = 0, max_kv = 0;
    for (int s = 0; s < nseq; s++) {
        lens[s] = ss[s].prefix + ss[s].qlen;
        qo[s + 1] = qo[s] + ss[s].qlen;
        kvp[s + 1] = kvp[s] + (int32_t)((lens[s] + bt - 1) / bt);
        if ((uint32_t)ss[s].qlen > max_q)
            max_q = ss[s].qlen;
        if ((uint32_t)lens[s] > max_kv)
            max_kv = lens[s];
    }
    const uint32_t total_q = qo[nseq], used = kvp[nseq];
    const uint32_t nblocks = used + 7; /* spare blocks: the table never covers the pool */
    /* random permutation of block ids; the table uses the first `used` */
    int32_t *perm = (int32_t *)malloc(nblocks * sizeof(int32_t));
    for (uint32_t i = 0; i < nblocks; i++)
        perm[i] = i;
    for (uint32_t i = nblocks - 1; i > 0; i--) {
        uint32_t j = (uint32_t)tu_below(&rng, i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    const size_t slab = (size_t)layers * 2 * bt * H * D;
    const size_t pool_n = slab * nblocks, q_n = (size_t)total_q * Hq * D;
    uint16_t *hpool = (uint16_t *)malloc(pool_n * 2), *hq = (uint16_t *)malloc(q_n * 2);
    uint16_t *hout = (uint16_t *)malloc(q_n * 2), *hout2 = (uint16_t *)malloc(q_n * 2);
    float *ref = (float *)malloc(q_n * sizeof(float));
    for (size_t i = 0; i < pool_n; i++)
        hpool[i] = to_dt(dt, frand(-1.0f, 1.0f));
    const float qamp = 1.0f + 3.0f * frand(0.0f, 1.0f); /* vary how peaked the softmax is */
    for (size_t i = 0; i < q_n; i++)
        hq[i] = to_dt(dt, frand(-qamp, qamp));

    gpu_attn_params p;
    memset(&p, 0, sizeof p);
    p.dtype = dt;
    p.num_qo_heads = Hq;
    p.num_kv_heads = H;
    p.head_dim = D;
    p.block_tokens = bt;
    p.layers = layers;
    p.layer = layer;
    p.num_blocks = nblocks;
    p.num_seqs = nseq;
    p.sm_scale = 0.0f;
    /* host view for the reference */
    p.q = hq;
    p.pool = hpool;
    p.qo_indptr = extend ? qo : NULL;
    p.kv_indptr = kvp;
    p.kv_indices = perm;
    p.kv_lens = lens;
    TU_CHECK_EQ(gpu_attn_ref(&p, total_q, ref), 0);

    void *dpool, *dq, *dout;
    int32_t *dqo, *dkvp, *dperm, *dlens;
    CK(cudaMalloc(&dpool, pool_n * 2));
    CK(cudaMalloc(&dq, q_n * 2));
    CK(cudaMalloc(&dout, q_n * 2));
    CK(cudaMalloc(&dqo, (nseq + 1) * sizeof(int32_t)));
    CK(cudaMalloc(&dkvp, (nseq + 1) * sizeof(int32_t)));
    CK(cudaMalloc(&dperm, nblocks * sizeof(int32_t)));
    CK(cudaMalloc(&dlens, nseq * sizeof(int32_t)));
    CK(cudaMemcpy(dpool, hpool, pool_n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dq, hq, q_n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dqo, qo, (nseq + 1) * sizeof(int32_t), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dkvp, kvp, (nseq + 1) * sizeof(int32_t), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dperm, perm, nblocks * sizeof(int32_t), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dlens, lens, nseq * sizeof(int32_t), cudaMemcpyHostToDevice));
    p.q = dq;
    p.out = dout;
    p.pool = dpool;
    p.qo_indptr = extend ? dqo : NULL;
    p.kv_indptr = dkvp;
    p.kv_indices = dperm;
    p.kv_lens = dlens;

    /* per split setting: MMA as planned; MMA decode planned with 8 warps per CTA rerun with
     * 4 (the many-sequence variant, same splits and cluster); SIMT */
    for (int run = 0; run < 3 * nsplits; run++) {
        const int si = run / 3, variant = run % 3;
        const gpu_attn_kernel kern = variant == 2 ? GPU_ATTN_SIMT : GPU_ATTN_MMA;
        if (g_mma_decode_only && (kern != GPU_ATTN_MMA || max_q != 1))
            continue;
        gpu_attn_plan plan;
        TU_CHECK_EQ(gpu_attn_plan_make_ex(&p, total_q, max_q, max_kv, splits[si], kern, &plan), 0);
        TU_CHECK_EQ(plan.kernel, (uint32_t)kern);
        if (variant == 1) {
            if (kern != GPU_ATTN_MMA || max_q != 1 || plan.warps != 8)
                continue;
            plan.warps = 4;
        }
        void *ws = NULL;
        if (plan.workspace_bytes) {
            CK(cudaMalloc(&ws, plan.workspace_bytes));
        }
        double rel = 0;
        for (int rep = 0; rep < 2; rep++) {
            CK(cudaMemset(dout, 0xFF, q_n * 2));
            if (ws)
                CK(cudaMemset(ws, 0xFF, plan.workspace_bytes));
            int rc = gpu_attn_run(&p, &plan, ws, plan.workspace_bytes, NULL);
            if (rc) {
                fprintf(stderr, "gpu_attn_run: %d\n", rc);
                exit(1);
            }
            CK(cudaGetLastError());
            CK(cudaDeviceSynchronize());
            CK(cudaMemcpy(rep ? hout2 : hout, dout, q_n * 2, cudaMemcpyDeviceToHost));
        }
        double num = 0, den = 0;
        size_t unwritten = 0;
        for (size_t i = 0; i < q_n; i++) {
            float o = from_dt(dt, hout[i]);
            if (!isfinite(o)) {
                unwritten++;
                continue;
            }
            num += ((double)o - ref[i]) * ((double)o - ref[i]);
            den += (double)ref[i] * ref[i];
        }
        rel = sqrt(num / (den > 0 ? den : 1));
        const bool same = memcmp(hout, hout2, q_n * 2) == 0;
        if (unwritten || !(rel <= 1e-2) || !same) {
            fprintf(stderr,
                    "FAIL %s %s %s D=%u G=%u bt=%u splits=%u(plan %u, cluster %u, warps %u, "
                    "chunk %u) layer=%u: rel=%.3g unwritten=%zu rerun_same=%d\n",
                    kern == GPU_ATTN_MMA ? "mma" : "simt", extend ? "extend" : "decode",
                    dt == KVT_DTYPE_BF16 ? "bf16" : "fp16", D, G, bt, splits[si], plan.num_splits,
                    plan.cluster, plan.warps, plan.chunk_tokens, layer, rel, unwritten, same);
            exit(1);
        }
        if (rel > worst_rel[kern])
            worst_rel[kern] = rel;
        cases[kern]++;
        if (ws)
            CK(cudaFree(ws));
    }
    CK(cudaFree(dpool));
    CK(cudaFree(dq));
    CK(cudaFree(dout));
    CK(cudaFree(dqo));
    CK(cudaFree(dkvp));
    CK(cudaFree(dperm));
    CK(cudaFree(dlens));
    free(qo), free(kvp), free(lens), free(perm), free(hpool), free(hq), free(hout), free(hout2);
    free(ref);
}

/* Bad arguments are refused, never launched. */
static void check_errors(void)
{
    gpu_attn_params p;
    memset(&p, 0, sizeof p);
    p.dtype = KVT_DTYPE_BF16;
    p.num_qo_heads = 8;
    p.num_kv_heads = 2;
    p.head_dim = 128;
    p.block_tokens = 16;
    p.layers = 1;
    p.num_seqs = 1;
    gpu_attn_plan plan;
    TU_CHECK_EQ(gpu_attn_plan_make(&p, 1, 1, 100, 0, &plan), 0);
    p.head_dim = 96;
    TU_CHECK_EQ(gpu_attn_plan_make(&p, 1, 1, 100, 0, &plan), -EINVAL);
    p.head_dim = 128;
    p.num_qo_heads = 18; /* group 9 */
    TU_CHECK_EQ(gpu_attn_plan_make(&p, 1, 1, 100, 0, &plan), -EINVAL);
    p.num_qo_heads = 8;
    p.block_tokens = 24;
    TU_CHECK_EQ(gpu_attn_plan_make(&p, 1, 1, 100, 0, &plan), -EINVAL);
    p.block_tokens = 16;
    p.dtype = KVT_DTYPE_FP32;
    TU_CHECK_EQ(gpu_attn_plan_make(&p, 1, 1, 100, 0, &plan), -EINVAL);
    p.dtype = KVT_DTYPE_BF16;
    TU_CHECK_EQ(gpu_attn_plan_make(&p, 1, 2, 100, 0, &plan), -EINVAL); /* decode, q_len 2 */
    TU_CHECK_EQ(gpu_attn_run(&p, &plan, NULL, 0, NULL), -EINVAL);      /* NULL buffers */
}

int main(void)
{
    if (gpu_device_count() <= 0)
        TU_SKIP("no GPU");
    tu_rng_init(&rng, tu_seed("test_gpu_attn", 20261122));
    const bool quick = getenv("KVT_GPU_QUICK") && atoi(getenv("KVT_GPU_QUICK"));
    g_mma_decode_only = getenv("KVT_GPU_MMA_DECODE") && atoi(getenv("KVT_GPU_MMA_DECODE"));
    check_errors();

    const kvt_dtype dts[2] = {KVT_DTYPE_BF16, KVT_DTYPE_FP16};
    const uint32_t dims[2] = {64, 128};
    const uint32_t bts[4] = {16, 64, 256, 8};
    const uint32_t dec_splits[4] = {0, 1, 5, 37}, ext_splits[3] = {0, 1, 3};
    const uint32_t quick_groups[3] = {1, 3, 8};
    for (int di = 0; di < 2; di++)
        for (int hi = 0; hi < 2; hi++)
            for (uint32_t gi = 0; gi < (quick ? 3u : 8u); gi++) {
                const uint32_t G = quick ? quick_groups[gi] : gi + 1;
                for (int bi = 0; bi < (quick ? 1 : 4); bi++) {
                    const uint32_t bt = quick ? bts[gi % 3] : bts[bi];
                    seqspec dec[6] = {{0, 1},   {16, 1},  {53, 1},
                                      {96, 1},  {999 + (int)tu_below(&rng, 200), 1},
                                      {(int)tu_below(&rng, quick ? 600 : 3000), 1}};
                    run_case(dts[di], dims[hi], G, bt, dec, 6, false, dec_splits, 4);
                }
                /* decode through qo_indptr: q_len 1 or 0 per sequence */
                seqspec dq[4] = {{0, 1}, {(int)tu_below(&rng, 700), 0}, {16, 1},
                                 {300 + (int)tu_below(&rng, 900), 1}};
                run_case(dts[di], dims[hi], G, quick ? 16 : bts[gi % 4], dq, 4, true, dec_splits,
                         4);
                for (int bi = 0; bi < (quick ? 1 : 2) && !g_mma_decode_only; bi++) {
                    const uint32_t bt = bi ? 256 : 16;
                    seqspec ext[6] = {{0, 1},   {0, 17},  {17, 54}, {97, 97},
                                      {(quick ? 300 : 1000) + (int)tu_below(&rng, 100), 33},
                                      {(int)tu_below(&rng, quick ? 300 : 1500), 7}};
                    run_case(dts[di], dims[hi], G, bt, ext, 6, true, ext_splits, 3);
                }
            }
    {
        /* many (sequence, KV head) pairs (10 x 8 = 80 > 64): the plan's 4-warp MMA decode */
        seqspec many[10];
        for (int i = 0; i < 10; i++)
            many[i] = {(int)tu_below(&rng, quick ? 100 : 2500), 1};
        g_kv_heads = 8;
        for (int di = 0; di < (quick ? 1 : 2); di++)
            for (int hi = quick ? 1 : 0; hi < 2; hi++)
                run_case(dts[di], dims[hi], hi ? 4 : 1, hi ? 16 : 64, many, 10, false,
                         dec_splits, 4);
        g_kv_heads = 2;
    }
    if (!quick) {
        /* Llama-3-8B shape: 32 q heads over 8 KV heads, long contexts, few sequences */
        seqspec big[3] = {{8191, 1}, {4095, 1}, {1, 1}};
        g_kv_heads = 8;
        run_case(KVT_DTYPE_BF16, 128, 4, 16, big, 3, false, dec_splits, 4);
        /* extend, Llama-3-8B shape: 2 sequences with long prefixes and 300+ new tokens */
        seqspec ebig[2] = {{4000 + (int)tu_below(&rng, 100), 300}, {777, 129}};
        run_case(KVT_DTYPE_BF16, 128, 4, 16, ebig, 2, true, ext_splits, 3);
    }
    printf("test_gpu_attn: %d mma runs passed (worst rel error %.3g), %d simt runs passed "
           "(worst %.3g); limit 1e-2\n",
           cases[GPU_ATTN_MMA], worst_rel[GPU_ATTN_MMA], cases[GPU_ATTN_SIMT],
           worst_rel[GPU_ATTN_SIMT]);
    return 0;
}
