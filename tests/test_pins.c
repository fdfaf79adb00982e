// ctest: labels=unit timeout=120
/*
 * test_pins — invariant 4: a pinned block (held by a lease) is never evicted, moved or
 * overwritten, however much put pressure there is; after the last lease on it is released
 * it becomes evictable again.
 *
 * Capacity 8 blocks of 512 bytes (layers 2, kv_heads 2, head_dim 8, fp16, block_tokens 4).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define BT 4u
#define BB 512u
#define CAP 8u

static tu_rng rng;

static kvt_layout small_layout(void) { return tu_layout(2, 2, 8, KVT_DTYPE_FP16, BT); }

static kvt_engine *open_engine(uint64_t blocks) { return tu_dram_engine(blocks * BB, BB); }

static size_t cached(kvt_ns *ns, const uint32_t *tok, size_t nb)
{
    size_t m = 999;
    TU_CHECK_EQ(kvt_match(ns, tok, nb * BT, &m, NULL), 0);
    return m / BT;
}

static void check_lease(kvt_lease *l, const unsigned char (*want)[BB], size_t n, const char *what)
{
    static unsigned char out[CAP][BB];
    TU_CHECK_EQ(kvt_lease_blocks(l), n);
    memset(out, 0, sizeof out);
    TU_CHECK_EQ(kvt_read_contig(l, 0, n, out, n * BB), 0);
    for (size_t b = 0; b < n; b++) {
        if (memcmp(out[b], want[b], BB) != 0) {
            fprintf(stderr, "%s: pinned block %zu changed under pressure\n", what, b);
            exit(1);
        }
    }
}

/* Random 1..3-block puts of fresh sequences, and re-puts of `pinned_tok` with other bytes.
 * Returns how many blocks were stored. */
static uint64_t pressure(kvt_ns *ns, int rounds, const uint32_t *pinned_tok, size_t pinned_nb,
                         size_t free_slots)
{
    static unsigned char junk[CAP][BB];
    const void *p[CAP];
    uint64_t total = 0;
    for (int r = 0; r < rounds; r++) {
        tu_fill(&rng, junk, sizeof junk);
        for (size_t i = 0; i < CAP; i++)
            p[i] = junk[i];
        size_t stored = 999;
        if (r % 7 == 0) {
            /* Same tokens as the pinned sequence, other bytes: must not overwrite. */
            TU_CHECK_EQ(kvt_put(ns, pinned_tok, pinned_nb * BT, p, &stored), 0);
            TU_CHECK_EQ(stored, 0);
            continue;
        }
        uint32_t tok[CAP * BT];
        size_t nb = 1 + (size_t)tu_below(&rng, free_slots < 3 ? free_slots : 3);
        tu_fill_tokens(&rng, tok, nb * BT);
        /* Half of them extend the pinned prefix (a branch under a pinned node). */
        if (r % 2 && nb > 1 && pinned_nb) {
            size_t share = 1 + (size_t)tu_below(&rng, pinned_nb < nb ? pinned_nb : nb - 1);
            if (share >= nb)
                share = nb - 1;
            memcpy(tok, pinned_tok, share * BT * sizeof *tok);
            for (size_t i = 0; i < share; i++)
                p[i] = NULL; /* cached and pinned: may be NULL */
            TU_CHECK_EQ(kvt_put(ns, tok, nb * BT, p, &stored), 0);
            TU_CHECK_EQ(stored, nb - share);
        } else {
            TU_CHECK_EQ(kvt_put(ns, tok, nb * BT, p, &stored), 0);
            TU_CHECK_EQ(stored, nb);
        }
        total += stored;
    }
    return total;
}

/* One lease on a whole 4-block sequence; heavy pressure; bytes unchanged; release; then it
 * goes. */
static void test_pin_whole(void)
{
    kvt_engine *e = open_engine(CAP);
    kvt_layout l = small_layout();
    kvt_ns *ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
    uint32_t a[4 * BT];
    tu_fill_tokens(&rng, a, 4 * BT);
    static unsigned char da[4][BB];
    tu_fill(&rng, da, sizeof da);
    const void *pa[4] = {da[0], da[1], da[2], da[3]};
    size_t stored = 0, m = 0;
    TU_CHECK_EQ(kvt_put(ns, a, 4 * BT, pa, &stored), 0);
    TU_CHECK_EQ(stored, 4);

    kvt_lease *la = NULL;
    TU_CHECK_EQ(kvt_match(ns, a, 4 * BT, &m, &la), 0);
    TU_CHECK_EQ(m, 4 * BT);
    uint64_t keys_before[4];
    for (size_t i = 0; i < 4; i++)
        TU_CHECK_EQ(kvt_lease_block_key(la, i, &keys_before[i]), 0);

    kvt_stats s0 = tu_stats(e);
    uint64_t st = pressure(ns, 400, a, 4, CAP - 4);
    kvt_stats s1 = tu_stats(e);
    TU_CHECK(s1.blocks_evicted - s0.blocks_evicted >= st - (CAP - 4)); /* pressure happened */
    TU_CHECK(s1.blocks_evicted > 300);
    TU_CHECK_EQ(cached(ns, a, 4), 4);
    check_lease(la, da, 4, "whole");
    for (size_t i = 0; i < 4; i++) {
        uint64_t k = 0;
        TU_CHECK_EQ(kvt_lease_block_key(la, i, &k), 0);
        TU_CHECK_EQ(k, keys_before[i]);
    }
    /* A second, lease-based reader sees the same bytes. */
    kvt_lease *la2 = NULL;
    TU_CHECK_EQ(kvt_match(ns, a, 4 * BT, &m, &la2), 0);
    TU_CHECK_EQ(m, 4 * BT);
    check_lease(la2, da, 4, "whole, second lease");
    kvt_release(la2);

    /* Everything but the pinned blocks is evictable: a 4-block put fits, a 5-block put
     * stores 4 and then fails with -ENOSPC. */
    uint32_t b[5 * BT];
    tu_fill_tokens(&rng, b, 5 * BT);
    const void *pb[5] = {da[0], da[1], da[2], da[3], da[0]};
    TU_CHECK_EQ(kvt_put(ns, b, 5 * BT, pb, &stored), -ENOSPC);
    TU_CHECK_EQ(stored, 4);
    TU_CHECK_EQ(cached(ns, a, 4), 4);
    check_lease(la, da, 4, "whole, after -ENOSPC");

    /* Released: A can now be evicted. */
    kvt_release(la);
    TU_CHECK_EQ(tu_stats(e).leases_open, 0);
    pressure(ns, 50, a, 0, CAP);
    TU_CHECK_EQ(cached(ns, a, 4), 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* A lease on a prefix (2 of 4 blocks) pins exactly that prefix: the other 2 blocks go, the
 * pinned 2 stay; two leases on one block: it stays until both are released. */
static void test_pin_prefix_and_count(void)
{
    kvt_engine *e = open_engine(CAP);
    kvt_layout l = small_layout();
    kvt_ns *ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
    uint32_t a[4 * BT];
    tu_fill_tokens(&rng, a, 4 * BT);
    static unsigned char da[4][BB];
    tu_fill(&rng, da, sizeof da);
    const void *pa[4] = {da[0], da[1], da[2], da[3]};
    size_t stored = 0, m = 0;
    TU_CHECK_EQ(kvt_put(ns, a, 4 * BT, pa, &stored), 0);

    kvt_lease *l1 = NULL, *l2 = NULL;
    TU_CHECK_EQ(kvt_match(ns, a, 2 * BT + 3, &m, &l1), 0); /* 2 blocks + a partial */
    TU_CHECK_EQ(m, 2 * BT);
    TU_CHECK_EQ(kvt_match(ns, a, 1 * BT, &m, &l2), 0);
    TU_CHECK_EQ(m, 1 * BT);
    TU_CHECK_EQ(tu_stats(e).leases_open, 2);

    pressure(ns, 300, a, 2, CAP - 2);
    TU_CHECK_EQ(cached(ns, a, 4), 2); /* the unpinned tail was evicted */
    check_lease(l1, da, 2, "prefix l1");
    check_lease(l2, da, 1, "prefix l2");

    /* Release l1: block 1 is unpinned, block 0 is still held by l2. */
    kvt_release(l1);
    pressure(ns, 300, a, 1, CAP - 1);
    TU_CHECK_EQ(cached(ns, a, 4), 1);
    check_lease(l2, da, 1, "prefix l2 after l1 released");

    kvt_release(l2);
    pressure(ns, 50, a, 0, CAP);
    TU_CHECK_EQ(cached(ns, a, 4), 0);
    TU_CHECK_EQ(tu_stats(e).leases_open, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* A put of a sequence whose prefix the caller holds a lease on (the usual match -> put
 * cycle), with NULL for the leased blocks, under pressure from other sequences: the leased
 * blocks are never dropped between the match and the put, so the put never sees -ENODATA. */
static void test_match_then_put(void)
{
    kvt_engine *e = open_engine(CAP);
    kvt_layout l = small_layout();
    kvt_ns *ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
    static unsigned char d[CAP][BB];
    for (int round = 0; round < 200; round++) {
        uint32_t a[3 * BT];
        tu_fill_tokens(&rng, a, 3 * BT);
        tu_fill(&rng, d, sizeof d);
        const void *p[3] = {d[0], d[1], d[2]};
        size_t stored = 0, m = 0;
        TU_CHECK_EQ(kvt_put(ns, a, 1 * BT, p, &stored), 0);
        kvt_lease *ls = NULL;
        TU_CHECK_EQ(kvt_match(ns, a, 3 * BT, &m, &ls), 0);
        TU_CHECK_EQ(m, BT);
        /* Fill the cache with others: 7 blocks (all that is unpinned). */
        uint32_t o[7 * BT];
        tu_fill_tokens(&rng, o, 7 * BT);
        const void *po[7] = {d[1], d[2], d[3], d[4], d[5], d[6], d[7]};
        TU_CHECK_EQ(kvt_put(ns, o, 7 * BT, po, &stored), 0);
        TU_CHECK_EQ(stored, 7);
        const void *pn[3] = {NULL, d[1], d[2]};
        /* Needs 2 slots: evicts 2 of o's, never a (pinned). */
        TU_CHECK_EQ(kvt_put(ns, a, 3 * BT, pn, &stored), 0);
        TU_CHECK_EQ(stored, 2);
        kvt_release(ls);
        TU_CHECK_EQ(kvt_match(ns, a, 3 * BT, &m, &ls), 0);
        TU_CHECK_EQ(m, 3 * BT);
        unsigned char out[3][BB];
        TU_CHECK_EQ(kvt_read_contig(ls, 0, 3, out, sizeof out), 0);
        TU_CHECK(memcmp(out, d, sizeof out) == 0);
        kvt_release(ls);
    }
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_pins", 4));
    test_pin_whole();
    test_pin_prefix_and_count();
    test_match_then_put();
    printf("test_pins: ok\n");
    return 0;
}
