// ctest: labels=unit timeout=120
/*
 * test_persist_delay — the write-back window (kvt_options_set_persist_delay_ms):
 *   a block waits in the queue for the window, then is written (persisted_blocks, nvme
 *   writes); a block replaced or removed within the window never costs a write; kvt_flush
 *   writes everything at once, long before the window ends; closing the engine writes what
 *   is queued, so a warm restart finds it; with DRAM nearly full the window is ignored and
 *   puts go on without waiting for it. The write-through runs at niceness 10 (as in
 *   kvtier serve) throughout; kvt_options_set_background_nice checks its range.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define BB 4096u

static tu_rng rng;
static char dir[512];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static kvt_engine *open_engine(uint32_t delay_ms, uint64_t dram_blocks)
{
    tu_tier_cfg c = {.dram_bytes = dram_blocks * BB, .nvme_bytes = 4096ull * BB,
                     .disk_bytes = 64ull << 20};
    kvt_options *o = tu_tier_options(dir, &c);
    TU_CHECK_EQ(kvt_options_set_persist_delay_ms(o, delay_ms), 0);
    TU_CHECK_EQ(kvt_options_set_background_nice(o, 10), 0); /* as kvtier serve runs it */
    return tu_open_engine(o, dir);
}

static kvt_ns *open_ns(kvt_engine *e)
{
    kvt_layout l = tu_layout(1, 1, 1024, KVT_DTYPE_FP16, 1); /* 4 KiB blocks */
    kvt_ns *ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "kv", "t", &l, KVT_NS_KEYS, &ns), 0);
    return ns;
}

static void put(kvt_ns *ns, uint64_t k, const void *d)
{
    const void *b[1] = {d};
    size_t st = 0;
    TU_CHECK_EQ(kvt_put_keys(ns, &k, 1, b, &st), 0);
    TU_CHECK_EQ(st, 1);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_persist_delay", 0xde1a7));
    tu_fresh_dir(dir, sizeof dir, "persist_delay");
    static unsigned char d[BB], got[BB];
    tu_fill(&rng, d, BB);
    TU_CHECK_EQ(kvt_options_set_persist_delay_ms(NULL, 5), -EINVAL);
    kvt_options *bo = NULL;
    TU_CHECK_EQ(kvt_options_create(&bo), 0);
    TU_CHECK_EQ(kvt_options_set_background_nice(NULL, 5), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_background_nice(bo, -1), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_background_nice(bo, 20), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_background_nice(bo, 19), 0);
    kvt_options_destroy(bo);

    /* 1. the window (1 s): not written at 100 ms, written soon after 1 s + 1/8 */
    kvt_engine *e = open_engine(1000, 1024);
    kvt_ns *ns = open_ns(e);
    put(ns, 1, d);
    sleep_ms(100);
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.persisted_blocks, 0);
    TU_CHECK_EQ(s.unpersisted_blocks, 1);
    for (int i = 0; i < 400 && tu_stats(e).persisted_blocks == 0; i++)
        sleep_ms(10);
    s = tu_stats(e);
    TU_CHECK_EQ(s.persisted_blocks, 1);
    TU_CHECK_EQ(s.tier_writes[KVT_TIER_NVME], 1);

    /* 2. overwritten and removed within the window: never written */
    for (int i = 0; i < 50; i++)
        TU_CHECK_EQ(kvt_replace_key(ns, 2, d, 1 + (size_t)i), 0);
    put(ns, 3, d);
    TU_CHECK_EQ(kvt_remove_keys(ns, (uint64_t[]){3}, 1, NULL), 0);
    for (int i = 0; i < 400 && tu_stats(e).persisted_blocks < 2; i++)
        sleep_ms(10);
    sleep_ms(200); /* nothing more comes */
    s = tu_stats(e);
    TU_CHECK_EQ(s.persisted_blocks, 2); /* key 1, and key 2's last version */
    TU_CHECK_EQ(s.tier_writes[KVT_TIER_NVME], 2);

    /* 3. kvt_flush does not wait for the window */
    for (uint64_t k = 10; k < 20; k++)
        put(ns, k, d);
    double t0 = now_s();
    TU_CHECK_EQ(kvt_flush(e), 0);
    double took = now_s() - t0;
    s = tu_stats(e);
    TU_CHECK_EQ(s.persisted_blocks, 12);
    TU_CHECK_EQ(s.unpersisted_blocks, 0);
    TU_CHECK(took < 0.8); /* not the 1 s window */
    kvt_engine_close(e);

    /* 4. a long window: close writes what is queued; a restart finds it */
    e = open_engine(60000, 1024);
    ns = open_ns(e);
    put(ns, 100, d);
    TU_CHECK_EQ(kvt_replace_key(ns, 101, d, 100), 0);
    t0 = now_s();
    kvt_engine_close(e);
    TU_CHECK(now_s() - t0 < 10);
    e = open_engine(60000, 1024);
    ns = open_ns(e);
    TU_CHECK_EQ(kvt_read_key(ns, 100, 0, got, BB, NULL), 0);
    TU_CHECK(memcmp(got, d, BB) == 0);
    TU_CHECK_EQ(kvt_read_key(ns, 101, 0, got, 100, NULL), 0);
    TU_CHECK(memcmp(got, d, 100) == 0);
    TU_CHECK_EQ(kvt_read_key(ns, 1, 0, got, BB, NULL), 0); /* from part 1 */

    /* 5. DRAM of 64 blocks, puts of 200 distinct blocks within the window: DRAM runs low,
     * the window is ignored, the puts go through quickly, and every block is readable */
    kvt_engine_close(e);
    e = open_engine(60000, 64);
    ns = open_ns(e);
    for (uint64_t k = 2000; k < 2060; k++) /* 60 of 64 slots: less than an eighth free */
        put(ns, k, d);
    for (int i = 0; i < 100 && tu_stats(e).persisted_blocks == 0; i++)
        sleep_ms(10);
    TU_CHECK(tu_stats(e).persisted_blocks > 0); /* written long before the 60 s window */
    t0 = now_s();
    for (uint64_t k = 1000; k < 1200; k++) {
        memcpy(d, &k, sizeof k);
        put(ns, k, d);
    }
    TU_CHECK(now_s() - t0 < 20); /* not 200 backpressure waits of 2 s */
    for (uint64_t k = 1000; k < 1200; k++) {
        TU_CHECK_EQ(kvt_read_key(ns, k, 0, got, sizeof k, NULL), 0);
        TU_CHECK(memcmp(got, &k, sizeof k) == 0);
    }
    kvt_engine_close(e);
    tu_rm_tree(dir);
    printf("test_persist_delay: ok\n");
    return 0;
}
