// ctest: labels=unit timeout=60
/*
 * test_hbm_nodev — the HBM tier's API without a GPU (the CI machines): every new function
 * answers -ENODEV (or -EINVAL / -ERANGE for bad arguments, checked first), an engine asked
 * for an HBM tier opens without one and says so in its stats (hbm_state 2), an engine that
 * requires one fails with -ENODEV, and the DRAM path is unchanged (block tier DRAM, reads
 * byte-exact). Exit 77 on a machine with a GPU (test_hbm_engine covers it there).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu.h"
#include "kvtier/kvtier.h"
#include "testutil.h"

int main(void)
{
    if (gpu_device_count() > 0)
        TU_SKIP("a GPU is present: test_hbm_engine covers the HBM tier");
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_hbm_nodev", 77));

    kvt_layout L;
    memset(&L, 0, sizeof L);
    L.layers = 2, L.kv_heads = 2, L.head_dim = 64, L.dtype = KVT_DTYPE_BF16, L.block_tokens = 16;
    const uint64_t bb = kvt_layout_block_bytes(&L);

    TU_CHECK_EQ(kvt_options_set_hbm_bytes(NULL, 1 << 20, 0), -EINVAL);
    kvt_options *o;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, 64 * bb), 0);

    /* required: the open fails, nothing leaks */
    kvt_engine *e = NULL;
    TU_CHECK_EQ(kvt_options_set_hbm_bytes(o, 16 * bb, 1), 0);
    TU_CHECK_EQ(kvt_engine_open(o, &e), -ENODEV);
    TU_CHECK(e == NULL);

    /* not required: opens DRAM-only, the stat says the HBM tier was asked for and is off */
    TU_CHECK_EQ(kvt_options_set_hbm_bytes(o, 16 * bb, 0), 0);
    TU_CHECK_EQ(kvt_engine_open(o, &e), 0);
    kvt_stats st;
    TU_CHECK_EQ(kvt_engine_stats(e, &st, sizeof st), 0);
    TU_CHECK_EQ(st.hbm_state, 2);
    TU_CHECK_EQ(st.hbm_capacity, 0);
    TU_CHECK_EQ(st.tier_capacity[KVT_TIER_HBM], 0);

    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &L, 0, &ns), 0);
    uint32_t tok[64];
    for (int i = 0; i < 64; i++)
        tok[i] = (uint32_t)tu_below(&rng, 50000);
    unsigned char *data = malloc(4 * bb), *back = malloc(4 * bb);
    TU_CHECK(data && back);
    tu_fill(&rng, data, 4 * bb);
    const void *blocks[4] = {data, data + bb, data + 2 * bb, data + 3 * bb};
    size_t stored = 0, matched = 0;
    TU_CHECK_EQ(kvt_put(ns, tok, 64, blocks, &stored), 0);
    TU_CHECK_EQ(stored, 4);
    kvt_lease *l = NULL;
    TU_CHECK_EQ(kvt_match(ns, tok, 64, &matched, &l), 0);
    TU_CHECK_EQ(matched, 64);

    kvt_hbm_pool_info info;
    TU_CHECK_EQ(kvt_hbm_pool(NULL, &info), -EINVAL);
    TU_CHECK_EQ(kvt_hbm_pool(ns, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_hbm_pool(ns, &info), -ENODEV);

    int32_t table[4];
    TU_CHECK_EQ(kvt_lease_load_hbm(NULL, 0, 1, table, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_lease_load_hbm(l, 0, 1, NULL, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_lease_load_hbm(l, 3, 2, table, NULL), -ERANGE);
    TU_CHECK_EQ(kvt_lease_load_hbm(l, 0, 4, table, NULL), -ENODEV);

    char k[64], v[64];
    TU_CHECK_EQ(kvt_lease_gather_layer(NULL, 0, 1, 0, k, v, 64, 0, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_lease_gather_layer(l, 0, 1, 0, NULL, v, 64, 0, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_lease_gather_layer(l, 2, 3, 0, k, v, 64, 0, NULL), -ERANGE);
    TU_CHECK_EQ(kvt_lease_gather_layer(l, 0, 1, 2, k, v, 64, 0, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_lease_gather_layer(l, 0, 4, 0, k, v, 4 * 16 * 64, 0, NULL), -ENODEV);
    /* the copy-engine variant: the same checks, the same -ENODEV without a GPU */
    TU_CHECK_EQ(kvt_lease_copy_layer(NULL, 0, 1, 0, k, v, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_lease_copy_layer(l, 0, 1, 0, k, NULL, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_lease_copy_layer(l, 2, 3, 0, k, v, NULL), -ERANGE);
    TU_CHECK_EQ(kvt_lease_copy_layer(l, 0, 1, 2, k, v, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_lease_copy_layer(l, 0, 4, 0, k, v, NULL), -ENODEV);

    kvt_attn_args a;
    memset(&a, 0, sizeof a);
    a.layout = L;
    a.num_qo_heads = 8;
    a.num_seqs = 1;
    a.max_kv_len = 64;
    a.num_blocks = 4;
    size_t ws = 0;
    TU_CHECK_EQ(kvt_attn_workspace_bytes(NULL, &ws), -EINVAL);
    TU_CHECK_EQ(kvt_attn_workspace_bytes(&a, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_attn_workspace_bytes(&a, &ws), -ENODEV);
    TU_CHECK_EQ(kvt_attn_run(NULL, NULL, 0, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_attn_run(&a, NULL, 16, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_attn_run(&a, NULL, 0, NULL), -ENODEV);

    /* the DRAM path is unchanged */
    for (size_t i = 0; i < 4; i++) {
        kvt_tier t;
        TU_CHECK_EQ(kvt_lease_block_tier(l, i, &t), 0);
        TU_CHECK_EQ(t, KVT_TIER_DRAM);
    }
    TU_CHECK_EQ(kvt_read_contig(l, 0, 4, back, 4 * bb), 0);
    TU_CHECK(memcmp(back, data, 4 * bb) == 0);
    kvt_release(l);
    TU_CHECK_EQ(kvt_engine_stats(e, &st, sizeof st), 0);
    TU_CHECK_EQ(st.hbm_loads, 0);
    TU_CHECK_EQ(st.leases_open, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    /* an engine that never asked: state 0 */
    TU_CHECK_EQ(kvt_options_set_hbm_bytes(o, 0, 0), 0);
    TU_CHECK_EQ(kvt_engine_open(o, &e), 0);
    TU_CHECK_EQ(kvt_engine_stats(e, &st, sizeof st), 0);
    TU_CHECK_EQ(st.hbm_state, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    kvt_options_destroy(o);
    free(data);
    free(back);
    printf("test_hbm_nodev: ok\n");
    return 0;
}
