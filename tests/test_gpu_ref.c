// ctest: labels=unit timeout=120
/*
 * test_gpu_ref — the CPU half of gpu/: runs everywhere, GPU or not (the GPU tests compare
 * the kernels against these references, so the references are checked on their own):
 *  - bf16 and fp16 conversions: every 16-bit pattern round-trips; ties between neighbours
 *    round to even, just above a tie rounds up; overflow and subnormals;
 *  - gpu_attn_ref on cases with known answers: one key -> its V; equal keys -> the mean of
 *    the Vs; a causal extend row sees only its prefix; a block table permutation and the
 *    layer offset are honoured; GQA maps query heads to their KV head;
 *  - without a GPU, every GPU entry point returns -ENODEV.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu.h"
#include "gpu/paged.h"
#include "testutil.h"

static void test_conversions(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = gpu_f16_to_f32((uint16_t)h);
        if (!isnan(f))
            TU_CHECK_EQ(gpu_f32_to_f16(f), h);
        float b = gpu_bf16_to_f32((uint16_t)h);
        if (!isnan(b))
            TU_CHECK_EQ(gpu_f32_to_bf16(b), h);
        else
            TU_CHECK(isnan(gpu_bf16_to_f32(gpu_f32_to_bf16(b))));
    }
    /* ties: every positive finite neighbour pair below the largest finite value */
    for (uint32_t h = 0; h < 0x7bff; h++) {
        double lo = gpu_f16_to_f32((uint16_t)h), hi = gpu_f16_to_f32((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2); /* exact: halves have 11 significant bits */
        TU_CHECK_EQ(gpu_f32_to_f16(mid), (h & 1) ? h + 1 : h);
        TU_CHECK_EQ(gpu_f32_to_f16(nextafterf(mid, INFINITY)), h + 1);
        TU_CHECK_EQ(gpu_f32_to_f16(-nextafterf(mid, 0)), 0x8000u | h);
    }
    for (uint32_t h = 0; h < 0x7f7f; h++) {
        double lo = gpu_bf16_to_f32((uint16_t)h), hi = gpu_bf16_to_f32((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2);
        TU_CHECK_EQ(gpu_f32_to_bf16(mid), (h & 1) ? h + 1 : h);
        TU_CHECK_EQ(gpu_f32_to_bf16(nextafterf(mid, INFINITY)), h + 1);
    }
    TU_CHECK_EQ(gpu_f32_to_f16(65519.0f), 0x7bff);
    TU_CHECK_EQ(gpu_f32_to_f16(65520.0f), 0x7c00);
    TU_CHECK_EQ(gpu_f32_to_f16(1e-8f), 0);            /* below half the smallest subnormal */
    TU_CHECK_EQ(gpu_f32_to_f16(5.9604645e-8f), 1);    /* 2^-24 */
    TU_CHECK_EQ(gpu_f32_to_f16(-INFINITY), 0xfc00);
    TU_CHECK(isnan(gpu_f16_to_f32(gpu_f32_to_f16(NAN))));
    printf("conversions: all 65536 patterns of fp16 and bf16, ties to even\n");
}

/* Layout: 2 layers, 2 KV heads, head_dim 64, block_tokens 4; 4 query heads (group 2). */
enum { LY = 2, H = 2, D = 64, BT = 4, HQ = 4, NB = 6 };
static uint16_t pool[NB * LY * 2 * BT * H * D];

static uint16_t *kv_at(int blk, int layer, int kv, int t, int h)
{
    return pool + ((((size_t)blk * LY + layer) * 2 + kv) * BT + t) * H * D + (size_t)h * D;
}

static void test_reference(void)
{
    tu_rng r;
    tu_rng_init(&r, 3);
    for (size_t i = 0; i < sizeof pool / 2; i++)
        pool[i] = gpu_f32_to_bf16((float)((int)tu_below(&r, 2001) - 1000) / 1000.0f);
    uint16_t q[3 * HQ * D];
    for (size_t i = 0; i < sizeof q / 2; i++)
        q[i] = gpu_f32_to_bf16((float)((int)tu_below(&r, 2001) - 1000) / 500.0f);
    /* seq 0: 1 token in block 4; seq 1: 6 tokens in blocks (5, 2), keys all equal */
    int32_t indptr[3] = {0, 1, 3}, indices[3] = {4, 5, 2}, lens[2] = {1, 6};
    for (int t = 0; t < 6; t++)
        for (int h = 0; h < H; h++)
            memcpy(kv_at(t < 4 ? 5 : 2, 1, 0, t % 4, h), kv_at(5, 1, 0, 0, h), D * 2);
    gpu_attn_params p;
    memset(&p, 0, sizeof p);
    p.dtype = KVT_DTYPE_BF16;
    p.num_qo_heads = HQ;
    p.num_kv_heads = H;
    p.head_dim = D;
    p.block_tokens = BT;
    p.layers = LY;
    p.layer = 1;
    p.num_blocks = NB;
    p.num_seqs = 2;
    p.q = q;
    p.pool = pool;
    p.kv_indptr = indptr;
    p.kv_indices = indices;
    p.kv_lens = lens;
    float out[3 * HQ * D];
    TU_CHECK_EQ(gpu_attn_ref(&p, 2, out), 0);
    for (int hq = 0; hq < HQ; hq++)
        for (int d = 0; d < D; d++) {
            /* seq 0: softmax over one key is 1: out = V of (block 4, layer 1, token 0) */
            TU_CHECK(out[hq * D + d] == gpu_bf16_to_f32(kv_at(4, 1, 1, 0, hq / 2)[d]));
            /* seq 1: equal keys: the mean of the 6 Vs, in table order */
            double m = 0;
            for (int t = 0; t < 6; t++)
                m += gpu_bf16_to_f32(kv_at(t < 4 ? 5 : 2, 1, 1, t % 4, hq / 2)[d]);
            TU_CHECK(fabs(out[(HQ + hq) * D + d] - m / 6) < 1e-6);
        }
    /* extend: seq 1 with 2 new tokens (rows 1, 2): row 1 sees positions 0..4, row 2 0..5 */
    int32_t qo[3] = {0, 1, 3};
    p.qo_indptr = qo;
    TU_CHECK_EQ(gpu_attn_ref(&p, 3, out), 0);
    for (int hq = 0; hq < HQ; hq++)
        for (int d = 0; d < D; d++) {
            double m5 = 0, m6 = 0;
            for (int t = 0; t < 6; t++) {
                double v = gpu_bf16_to_f32(kv_at(t < 4 ? 5 : 2, 1, 1, t % 4, hq / 2)[d]);
                m6 += v;
                if (t < 5)
                    m5 += v;
            }
            TU_CHECK(fabs(out[(HQ + hq) * D + d] - m5 / 5) < 1e-6);
            TU_CHECK(fabs(out[(2 * HQ + hq) * D + d] - m6 / 6) < 1e-6);
        }
    /* a row with no key (q_len > kv_len) gets zeros */
    lens[1] = 1;
    TU_CHECK_EQ(gpu_attn_ref(&p, 3, out), 0);
    for (int d = 0; d < HQ * D; d++)
        TU_CHECK(out[HQ * D + d] == 0.0f);
    p.layer = LY;
    TU_CHECK_EQ(gpu_attn_ref(&p, 3, out), -EINVAL);
    printf("reference: one key, equal keys, causal extend rows, empty rows, GQA heads\n");
}

static void test_nodev(void)
{
    if (gpu_device_count() > 0)
        return;
    kvt_layout L = {2, 2, 64, KVT_DTYPE_BF16, 16};
    gpu_pool *pl = NULL;
    TU_CHECK_EQ(gpu_pool_create(&L, 4, &pl), -ENODEV);
    TU_CHECK(pl == NULL);
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
    TU_CHECK_EQ(gpu_attn_plan_make(&p, 1, 1, 100, 0, &plan), -ENODEV);
    const void *s[1] = {&p};
    void *d[1] = {&plan};
    TU_CHECK_EQ(gpu_copy_blocks(s, d, 1, 16, GPU_XFER_AUTO, 0, NULL), -ENODEV);
    printf("no GPU: the GPU entry points return -ENODEV\n");
}

int main(void)
{
    test_conversions();
    test_reference();
    test_nodev();
    printf("test_gpu_ref: passed\n");
    return 0;
}
