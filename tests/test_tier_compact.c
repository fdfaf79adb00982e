// ctest: labels=unit timeout=120
/*
 * test_tier_compact — dead disk records are reclaimed by compaction (issue 3), and no move
 * ever serves a stale location or loses a block.
 *
 * A disk-only engine (1 MiB segments, 16 KiB blocks, small DRAM so reads go to disk) stores
 * 210 one-block prompts and flushes; a lease pins prompt 0 (the first record of segment 0);
 * two prompts of every three (not prompt 0) are removed and the flush drains their deletes,
 * so every sealed segment is about 2/3 dead.
 *  1. compaction refuses to move the pinned block: kvt__engine_compact returns -EBUSY, the
 *     pinned block still reads back identical;
 *  2. released, compaction moves the live records (catalogued at their new place, index
 *     repointed) and frees segments: every surviving prompt reads back identical, every
 *     removed one is a miss;
 *  3. close and reopen: every surviving block is restored from its new location (no record
 *     dropped) and reads back identical.
 * The flusher may compact on its own meanwhile (the garbage ratio passes its trigger): the
 * moves are counted from the engine's log lines either way.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

int kvt__engine_compact(kvt_engine *e, double min_garbage, uint64_t *moved, uint32_t *freed);

#define BT 16u
#define N 210

static uint64_t bb;
static uint32_t tok[N][BT];
static unsigned char *data;
static uint64_t log_moved, log_freed;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void log_hook(void *arg, int level, const char *msg)
{
    (void)arg, (void)level;
    unsigned long long m;
    unsigned f;
    if (sscanf(msg, "disk compaction: %llu records moved, %u segments freed", &m, &f) == 2) {
        pthread_mutex_lock(&mu);
        log_moved += m;
        log_freed += f;
        pthread_mutex_unlock(&mu);
    }
    printf("log: %s\n", msg);
}

static kvt_engine *open_engine(const char *dir)
{
    tu_tier_cfg c = {.dram_bytes = 16 * bb, .disk_bytes = 8ull << 20}; /* 1 MiB segments */
    kvt_options *o = tu_tier_options(dir, &c);
    TU_CHECK_EQ(kvt_options_set_log(o, log_hook, NULL), 0);
    return tu_open_engine(o, dir);
}

static kvt_ns *ns_of(kvt_engine *e)
{
    kvt_layout l = tu_layout(2, 2, 64, KVT_DTYPE_FP16, BT);
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
    return ns;
}

static int removed(int i) { return i != 0 && i % 3 != 0; }

/* 1 if prompt i matches and reads back identical, 0 if it is a miss; exits otherwise. */
static int check(kvt_ns *ns, int i)
{
    kvt_lease *l = NULL;
    size_t m = 0;
    TU_CHECK_EQ(kvt_match(ns, tok[i], BT, &m, &l), 0);
    if (m == 0)
        return 0;
    TU_CHECK_EQ(m, BT);
    unsigned char *out = malloc(bb);
    TU_CHECK(out);
    int rc = kvt_read_contig(l, 0, 1, out, bb);
    if (rc != 0 || memcmp(out, data + (size_t)i * bb, bb) != 0) {
        fprintf(stderr, "prompt %d: %s\n", i, rc ? kvt_strerror(rc) : "bytes differ");
        exit(1);
    }
    free(out);
    kvt_release(l);
    return 1;
}

static void check_all(kvt_ns *ns)
{
    for (int i = 0; i < N; i++)
        TU_CHECK_EQ(check(ns, i), !removed(i));
}

int main(void)
{
    kvt_layout lay = tu_layout(2, 2, 64, KVT_DTYPE_FP16, BT);
    bb = kvt_layout_block_bytes(&lay);
    tu_rng r;
    tu_rng_init(&r, tu_seed("test_tier_compact", 9));
    data = malloc((size_t)N * bb);
    TU_CHECK(data);
    for (int i = 0; i < N; i++)
        tu_fill_tokens(&r, tok[i], BT);
    tu_fill(&r, data, (size_t)N * bb);
    char dir[512];
    tu_fresh_dir(dir, sizeof dir, "tier_compact");

    kvt_engine *e = open_engine(dir);
    kvt_ns *ns = ns_of(e);
    for (int i = 0; i < N; i++) {
        const void *p = data + (size_t)i * bb;
        TU_CHECK_EQ(kvt_put(ns, tok[i], BT, &p, NULL), 0);
    }
    TU_CHECK_EQ(kvt_flush(e), 0);
    kvt_lease *pin = NULL;
    size_t m = 0;
    TU_CHECK_EQ(kvt_match(ns, tok[0], BT, &m, &pin), 0);
    TU_CHECK_EQ(m, BT);
    int live = 0;
    for (int i = 0; i < N; i++) {
        if (removed(i)) {
            size_t rm = 0;
            TU_CHECK_EQ(kvt_remove(ns, tok[i], BT, &rm), 0);
            TU_CHECK_EQ(rm, 1);
        } else {
            live++;
        }
    }
    TU_CHECK_EQ(kvt_flush(e), 0);

    /* 1. pinned: refused */
    uint64_t moved = 0;
    uint32_t freed = 0;
    int rc = kvt__engine_compact(e, 0.5, &moved, &freed);
    printf("compaction with prompt 0 pinned: %s, %llu moved, %u segments freed\n",
           kvt_strerror(rc), (unsigned long long)moved, freed);
    TU_CHECK_EQ(rc, -EBUSY);
    unsigned char *out = malloc(bb);
    TU_CHECK(out);
    TU_CHECK_EQ(kvt_read_contig(pin, 0, 1, out, bb), 0);
    TU_CHECK(memcmp(out, data, bb) == 0);
    free(out);
    kvt_release(pin);
    check_all(ns);

    /* 2. compaction */
    rc = kvt__engine_compact(e, 0.5, &moved, &freed);
    printf("compaction: %s, %llu moved, %u segments freed\n", kvt_strerror(rc),
           (unsigned long long)moved, freed);
    TU_CHECK_EQ(rc, 0);
    pthread_mutex_lock(&mu);
    printf("all compactions (log): %llu records moved, %llu segments freed\n",
           (unsigned long long)log_moved, (unsigned long long)log_freed);
    TU_CHECK(log_moved >= (uint64_t)live / 2);
    TU_CHECK(log_freed >= 2);
    pthread_mutex_unlock(&mu);
    check_all(ns);
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.checksum_failures, 0);
    TU_CHECK_EQ(s.io_errors, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    /* 3. restart from the new locations */
    e = open_engine(dir);
    ns = ns_of(e);
    s = tu_stats(e);
    TU_CHECK_EQ(s.restored_blocks, (uint64_t)live);
    TU_CHECK_EQ(s.restore_dropped, 0);
    check_all(ns);
    s = tu_stats(e);
    TU_CHECK_EQ(s.checksum_failures, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    tu_rm_tree(dir);
    free(data);
    printf("ok\n");
    return 0;
}
