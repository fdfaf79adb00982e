// ctest: labels=unit timeout=120
/*
 * test_keys_replace — the key-value fast path of KVT_NS_KEYS namespaces (what `kvtier serve`
 * uses for every GET and SET):
 *   kvt_read_key      one-call range read: same bytes as match + read_range + release,
 *                     counted as a lookup, -ENOENT for a missing key, every bad argument;
 *   kvt_replace_key   remove-and-put in one call: short blocks read back as their bytes then
 *                     zeros, also in a slot an earlier, longer block of another key used (no
 *                     byte of an earlier occupant ever shows), a pinned key is -EBUSY with
 *                     nothing changed, successors are removed, sizes are checked;
 *   kvt_lookahead_keys  a hint: every bad argument, and nothing observable changes;
 *   kvt_put_keys_begin/commit/abort  blocks written in place: invisible until committed,
 *                     nothing left after an abort, -EEXIST/-ENOSPC reserve nothing;
 *   and with a data directory: short blocks persist, zeros included, across a restart;
 *   overwrites in place (queued, being written, persisted, pinned) keep the engine's
 *   lists and counts consistent and the last value of every key wins.
 *
 * Blocks of 512 bytes (layers 2, kv_heads 2, head_dim 8, fp16, block_tokens 4), slot = block.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

int kvt__engine_check(kvt_engine *e, const char **why); /* engine/tiering.c, tests only */

static void engine_check(kvt_engine *e)
{
    const char *why = NULL;
    if (kvt__engine_check(e, &why)) {
        fprintf(stderr, "engine check: %s\n", why);
        exit(1);
    }
}

#define BT 4u
#define BB 512u

static tu_rng rng;

static kvt_layout small_layout(void) { return tu_layout(2, 2, 8, KVT_DTYPE_FP16, BT); }

static kvt_ns *open_ns(kvt_engine *e, const char *name, unsigned flags)
{
    kvt_layout l = small_layout();
    kvt_ns *ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, name, "t", &l, flags, &ns), 0);
    return ns;
}

/* The whole block of key k, through a lease (kvt_read) and, in DRAM, in place. */
static void read_block(kvt_ns *ns, uint64_t k, unsigned char *out)
{
    size_t m = 0;
    kvt_lease *l = NULL;
    TU_CHECK_EQ(kvt_match_keys(ns, &k, 1, &m, &l), 0);
    TU_CHECK_EQ(m, 1);
    TU_CHECK_EQ(kvt_read_contig(l, 0, 1, out, BB), 0);
    const void *p = NULL;
    if (kvt_lease_block_ptr(l, 0, &p) == 0)
        TU_CHECK(memcmp(p, out, BB) == 0);
    kvt_release(l);
}

/* Block of k is want[0..len) then zeros. */
static void check_short(kvt_ns *ns, uint64_t k, const unsigned char *want, size_t len)
{
    unsigned char got[BB];
    read_block(ns, k, got);
    TU_CHECK(memcmp(got, want, len) == 0);
    for (size_t i = len; i < BB; i++)
        if (got[i]) {
            fprintf(stderr, "key %llx: byte %zu of a %zu-byte block is %u, not 0\n",
                    (unsigned long long)k, i, len, got[i]);
            exit(1);
        }
    unsigned char part[BB];
    TU_CHECK_EQ(kvt_read_key(ns, k, 0, part, len, NULL), 0);
    TU_CHECK(memcmp(part, want, len) == 0);
}

static void test_read_key(void)
{
    kvt_engine *e = tu_dram_engine(64 * BB, BB);
    kvt_ns *ns = open_ns(e, "kv", KVT_NS_KEYS), *tok = open_ns(e, "tok", 0);
    uint64_t k = tu_next(&rng), absent = k ^ 1;
    static unsigned char d[BB], got[BB];
    tu_fill(&rng, d, BB);
    const void *blocks[1] = {d};
    size_t stored = 0;
    TU_CHECK_EQ(kvt_put_keys(ns, &k, 1, blocks, &stored), 0);
    TU_CHECK_EQ(stored, 1);

    kvt_stats s0 = tu_stats(e);
    kvt_tier tier = KVT_TIER_DISK;
    TU_CHECK_EQ(kvt_read_key(ns, k, 100, got, 200, &tier), 0);
    TU_CHECK(memcmp(got, d + 100, 200) == 0);
    TU_CHECK_EQ(tier, KVT_TIER_DRAM);
    TU_CHECK_EQ(kvt_read_key(ns, k, 0, got, BB, NULL), 0);
    TU_CHECK(memcmp(got, d, BB) == 0);
    TU_CHECK_EQ(kvt_read_key(ns, k, BB, got, 0, NULL), 0); /* empty range at the end */
    TU_CHECK_EQ(kvt_read_key(ns, absent, 0, got, 8, NULL), -ENOENT);
    kvt_stats s1 = tu_stats(e);
    TU_CHECK_EQ(s1.lookups - s0.lookups, 4); /* counted as kvt_match_keys with a lease */
    TU_CHECK_EQ(s1.hit_tokens - s0.hit_tokens, 3 * BT);
    TU_CHECK_EQ(s1.bytes_read - s0.bytes_read, 200 + BB);
    TU_CHECK_EQ(s1.leases_open, 0);

    /* every bad argument */
    TU_CHECK_EQ(kvt_read_key(NULL, k, 0, got, 8, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_read_key(ns, k, 0, NULL, 8, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_read_key(tok, k, 0, got, 8, NULL), KVT_EMODE);
    TU_CHECK_EQ(kvt_read_key(ns, k, BB + 1, got, 0, NULL), KVT_ESIZE);
    TU_CHECK_EQ(kvt_read_key(ns, k, 1, got, BB, NULL), KVT_ESIZE);
    TU_CHECK_EQ(kvt_read_key(ns, k, 0, got, BB + 1, NULL), KVT_ESIZE);
    kvt_engine_close(e);
}

static void test_replace(void)
{
    kvt_engine *e = tu_dram_engine(64 * BB, BB);
    kvt_ns *ns = open_ns(e, "kv", KVT_NS_KEYS), *tok = open_ns(e, "tok", 0);
    static unsigned char full[BB], v1[BB], v2[BB];
    tu_fill(&rng, full, BB);
    tu_fill(&rng, v1, BB);
    tu_fill(&rng, v2, BB);
    uint64_t a = tu_next(&rng), b = a + 1;

    /* an absent key: stored; then shorter and longer replacements of a full block */
    TU_CHECK_EQ(kvt_replace_key(ns, a, full, BB), 0);
    check_short(ns, a, full, BB);
    TU_CHECK_EQ(kvt_replace_key(ns, a, v1, 10), 0);
    check_short(ns, a, v1, 10);
    TU_CHECK_EQ(kvt_replace_key(ns, a, v2, 300), 0);
    check_short(ns, a, v2, 300);
    TU_CHECK_EQ(kvt_replace_key(ns, a, v1, 20), 0);
    check_short(ns, a, v1, 20);
    TU_CHECK_EQ(kvt_replace_key(ns, a, v1, 64), 0); /* whole lines */
    check_short(ns, a, v1, 64);
    TU_CHECK_EQ(kvt_replace_key(ns, a, v2, 65), 0);
    check_short(ns, a, v2, 65);

    /* a slot that held another key's full block (the free list hands it back first) */
    const void *blk[1] = {full};
    size_t stored = 0;
    TU_CHECK_EQ(kvt_put_keys(ns, &b, 1, blk, &stored), 0);
    TU_CHECK_EQ(kvt_remove_keys(ns, &b, 1, NULL), 0);
    uint64_t c = b + 1;
    TU_CHECK_EQ(kvt_replace_key(ns, c, v1, 5), 0);
    check_short(ns, c, v1, 5);
    /* and many rounds of random lengths over a churning set of keys */
    for (int i = 0; i < 2000; i++) {
        uint64_t k = 1000 + tu_below(&rng, 40);
        size_t len = 1 + tu_below(&rng, BB);
        unsigned char *src = tu_below(&rng, 2) ? v1 : v2;
        if (tu_below(&rng, 4) == 0) {
            const void *bl[1] = {full};
            kvt_remove_keys(ns, &k, 1, NULL);
            TU_CHECK_EQ(kvt_put_keys(ns, &k, 1, bl, &stored), 0);
            check_short(ns, k, full, BB);
        } else {
            TU_CHECK_EQ(kvt_replace_key(ns, k, src, len), 0);
            check_short(ns, k, src, len);
        }
    }

    /* a pinned key: -EBUSY, nothing changed */
    size_t m = 0;
    kvt_lease *l = NULL;
    TU_CHECK_EQ(kvt_match_keys(ns, &a, 1, &m, &l), 0);
    TU_CHECK_EQ(m, 1);
    TU_CHECK_EQ(kvt_replace_key(ns, a, v1, BB), -EBUSY);
    kvt_release(l);
    check_short(ns, a, v2, 65);

    /* successors of the key go with it */
    uint64_t seq[2] = {tu_next(&rng), tu_next(&rng)};
    const void *two[2] = {full, v1};
    TU_CHECK_EQ(kvt_put_keys(ns, seq, 2, two, &stored), 0);
    TU_CHECK_EQ(stored, 2);
    TU_CHECK_EQ(kvt_replace_key(ns, seq[0], v2, 7), 0);
    TU_CHECK_EQ(kvt_match_keys(ns, seq, 2, &m, NULL), 0);
    TU_CHECK_EQ(m, 1);
    check_short(ns, seq[0], v2, 7);

    /* bad arguments */
    TU_CHECK_EQ(kvt_replace_key(NULL, a, v1, 8), -EINVAL);
    TU_CHECK_EQ(kvt_replace_key(ns, a, NULL, 8), -EINVAL);
    TU_CHECK_EQ(kvt_replace_key(tok, a, v1, 8), KVT_EMODE);
    TU_CHECK_EQ(kvt_replace_key(ns, a, v1, 0), KVT_ESIZE);
    TU_CHECK_EQ(kvt_replace_key(ns, a, v1, BB + 1), KVT_ESIZE);
    check_short(ns, a, v2, 65);
    TU_CHECK_EQ(tu_stats(e).leases_open, 0);
    kvt_engine_close(e);
}

static void test_put_in_place(void)
{
    kvt_engine *e = tu_dram_engine(8 * BB, BB);
    kvt_ns *ns = open_ns(e, "kv", KVT_NS_KEYS), *tok = open_ns(e, "tok", 0);
    static unsigned char d[3][BB], got[3][BB];
    uint64_t k[3] = {tu_next(&rng), tu_next(&rng), tu_next(&rng)};
    void *p[20];
    kvt_put_txn *t = NULL;
    size_t m = 9;

    TU_CHECK_EQ(kvt_put_keys_begin(ns, k, 3, p, &t), 0);
    TU_CHECK(t != NULL);
    for (int i = 0; i < 3; i++) {
        tu_fill(&rng, d[i], BB);
        memcpy(p[i], d[i], BB);
    }
    TU_CHECK_EQ(kvt_match_keys(ns, k, 3, &m, NULL), 0);
    TU_CHECK_EQ(m, 0); /* invisible until committed */
    TU_CHECK_EQ(tu_stats(e).dram_used, 3 * BB);
    TU_CHECK_EQ(kvt_put_commit(t), 0);
    kvt_lease *l = NULL;
    TU_CHECK_EQ(kvt_match_keys(ns, k, 3, &m, &l), 0);
    TU_CHECK_EQ(m, 3);
    TU_CHECK_EQ(kvt_read_contig(l, 0, 3, got, sizeof got), 0);
    TU_CHECK(memcmp(got, d, sizeof d) == 0);
    kvt_release(l);

    /* a sequence with a cached key: -EEXIST, nothing reserved */
    uint64_t k2[2] = {k[0], tu_next(&rng)};
    TU_CHECK_EQ(kvt_put_keys_begin(ns, k2, 2, p, &t), -EEXIST);
    TU_CHECK(t == NULL);
    TU_CHECK_EQ(tu_stats(e).dram_used, 3 * BB);
    /* more than DRAM holds: -ENOSPC, nothing reserved, nothing of the others evicted
     * needlessly beyond what the attempt freed */
    uint64_t many[20];
    for (int i = 0; i < 20; i++)
        many[i] = 1000 + (uint64_t)i;
    TU_CHECK_EQ(kvt_put_keys_begin(ns, many, 20, p, &t), -ENOSPC);
    TU_CHECK(t == NULL);
    TU_CHECK_EQ(kvt_match_keys(ns, many, 20, &m, NULL), 0);
    TU_CHECK_EQ(m, 0);
    /* abort: nothing stored, DRAM back */
    uint64_t used = tu_stats(e).dram_used;
    TU_CHECK_EQ(kvt_put_keys_begin(ns, many, 2, p, &t), 0);
    memset(p[0], 7, BB);
    TU_CHECK_EQ(tu_stats(e).dram_used, used + 2 * BB);
    kvt_put_abort(t);
    kvt_put_abort(NULL);
    TU_CHECK_EQ(tu_stats(e).dram_used, used);
    TU_CHECK_EQ(kvt_match_keys(ns, many, 2, &m, NULL), 0);
    TU_CHECK_EQ(m, 0);
    /* the aborted slot comes back zeroed for a short block */
    TU_CHECK_EQ(kvt_replace_key(ns, 4242, d[0], 3), 0);
    check_short(ns, 4242, d[0], 3);

    TU_CHECK_EQ(kvt_put_keys_begin(NULL, k, 1, p, &t), -EINVAL);
    TU_CHECK_EQ(kvt_put_keys_begin(ns, NULL, 1, p, &t), -EINVAL);
    TU_CHECK_EQ(kvt_put_keys_begin(ns, k, 1, NULL, &t), -EINVAL);
    TU_CHECK_EQ(kvt_put_keys_begin(ns, k, 1, p, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_put_keys_begin(ns, k, 0, p, &t), -EINVAL);
    TU_CHECK_EQ(kvt_put_keys_begin(tok, k, 1, p, &t), KVT_EMODE);
    TU_CHECK_EQ(kvt_put_commit(NULL), -EINVAL);
    engine_check(e);
    kvt_engine_close(e);
}

static void test_lookahead(void)
{
    kvt_engine *e = tu_dram_engine(256 * BB, BB), *e2 = tu_dram_engine(8 * BB, BB);
    kvt_ns *ns[2] = {open_ns(e, "kv0", KVT_NS_KEYS), open_ns(e, "kv1", KVT_NS_KEYS)};
    kvt_ns *tok = open_ns(e, "tok", 0), *other = open_ns(e2, "kv", KVT_NS_KEYS);
    enum { N = 100 }; /* more than a batch, and a root wide enough to be hashed */
    static unsigned char d[BB];
    tu_fill(&rng, d, BB);
    uint64_t keys[2 * N];
    kvt_ns *nss[2 * N];
    for (int i = 0; i < 2 * N; i++) {
        keys[i] = tu_next(&rng);
        nss[i] = ns[i & 1];
        if (i < N) { /* half of them cached, half absent */
            const void *b[1] = {d};
            size_t st = 0;
            TU_CHECK_EQ(kvt_put_keys(nss[i], &keys[i], 1, b, &st), 0);
        }
    }
    kvt_stats s0 = tu_stats(e);
    TU_CHECK_EQ(kvt_lookahead_keys(nss, keys, 2 * N, 320), 0);
    TU_CHECK_EQ(kvt_lookahead_keys(nss, keys, 2 * N, 0), 0);
    TU_CHECK_EQ(kvt_lookahead_keys(nss, keys, 2 * N, 1 << 20), 0); /* capped at a block */
    TU_CHECK_EQ(kvt_lookahead_keys(NULL, NULL, 0, 0), 0);
    kvt_stats s1 = tu_stats(e);
    TU_CHECK_EQ(s1.lookups, s0.lookups);
    TU_CHECK_EQ(s1.hit_tokens, s0.hit_tokens);
    TU_CHECK_EQ(s1.bytes_read, s0.bytes_read);
    TU_CHECK_EQ(s1.blocks_cached, s0.blocks_cached);
    for (int i = 0; i < 2 * N; i++) {
        unsigned char got[16];
        TU_CHECK_EQ(kvt_read_key(nss[i], keys[i], 0, got, sizeof got, NULL), i < N ? 0 : -ENOENT);
    }

    kvt_ns *mixed[2] = {ns[0], other}, *withtok[2] = {ns[0], tok}, *withnull[2] = {ns[0], NULL};
    TU_CHECK_EQ(kvt_lookahead_keys(NULL, keys, 2, 0), -EINVAL);
    TU_CHECK_EQ(kvt_lookahead_keys(nss, NULL, 2, 0), -EINVAL);
    TU_CHECK_EQ(kvt_lookahead_keys(mixed, keys, 2, 0), -EINVAL);
    TU_CHECK_EQ(kvt_lookahead_keys(withnull, keys, 2, 0), -EINVAL);
    TU_CHECK_EQ(kvt_lookahead_keys(withtok, keys, 2, 0), KVT_EMODE);
    kvt_engine_close(e2);
    kvt_engine_close(e);
}

/* With a data directory: short blocks are written through with their zeros, verified on
 * the way back from nvme, and come back after a restart. */
static void test_replace_persist(void)
{
    char dir[512];
    tu_fresh_dir(dir, sizeof dir, "keys_replace");
    tu_tier_cfg c = {.dram_bytes = 16 * BB, .nvme_bytes = 256 * BB, .disk_bytes = 8u << 20};
    enum { N = 40 }; /* more than DRAM holds: some are read back from nvme */
    static unsigned char v[N][BB], w[N][BB];
    size_t len[N];
    kvt_engine *e = tu_tier_engine(dir, &c);
    kvt_ns *ns = open_ns(e, "kv", KVT_NS_KEYS);
    for (int i = 0; i < N; i++) {
        tu_fill(&rng, v[i], BB);
        len[i] = 1 + tu_below(&rng, BB);
        TU_CHECK_EQ(kvt_replace_key(ns, 5000 + (uint64_t)i, v[i], BB), 0); /* full first */
        TU_CHECK_EQ(kvt_flush(e), 0);
        TU_CHECK_EQ(kvt_replace_key(ns, 5000 + (uint64_t)i, v[i], len[i]), 0);
    }
    for (int i = 0; i < N; i++) { /* full random blocks, for the slot reuse below */
        const void *b[1] = {w[i]};
        uint64_t k = 7000 + (uint64_t)i;
        size_t st = 0;
        tu_fill(&rng, w[i], BB);
        TU_CHECK_EQ(kvt_put_keys(ns, &k, 1, b, &st), 0);
        TU_CHECK_EQ(st, 1);
    }
    TU_CHECK_EQ(kvt_flush(e), 0);
    for (int i = 0; i < N; i++)
        check_short(ns, 5000 + (uint64_t)i, v[i], len[i]);
    engine_check(e);
    /* churn: overwrites of keys whose blocks are queued, being written (-EBUSY, retried),
     * persisted or on nvme only; a lease pinning one now and then */
    for (int i = 0; i < 3000; i++) {
        int j = (int)tu_below(&rng, N);
        uint64_t k = 5000 + (uint64_t)j;
        len[j] = 1 + tu_below(&rng, BB);
        tu_fill(&rng, v[j], len[j]);
        int rc;
        while ((rc = kvt_replace_key(ns, k, v[j], len[j])) == -EBUSY)
            ;
        TU_CHECK_EQ(rc, 0);
        if (i % 97 == 0)
            TU_CHECK_EQ(kvt_flush(e), 0);
        if (i % 50 == 0) {
            kvt_lease *l = NULL;
            size_t m = 0;
            TU_CHECK_EQ(kvt_match_keys(ns, &k, 1, &m, &l), 0);
            TU_CHECK_EQ(kvt_replace_key(ns, k, v[j], len[j]), -EBUSY);
            kvt_release(l);
            engine_check(e);
        }
    }
    TU_CHECK_EQ(kvt_flush(e), 0);
    engine_check(e);
    TU_CHECK_EQ(tu_stats(e).unpersisted_blocks, 0);
    for (int i = 0; i < N; i++)
        check_short(ns, 5000 + (uint64_t)i, v[i], len[i]);
    kvt_engine_close(e);

    e = tu_tier_engine(dir, &c);
    ns = open_ns(e, "kv", KVT_NS_KEYS);
    for (int i = 0; i < N; i++)
        check_short(ns, 5000 + (uint64_t)i, v[i], len[i]);
    /* DRAM slots that reads from nvme filled (O_DIRECT into the arena, behind its copy
     * routines) with full random blocks, freed, then reused by one-byte blocks of other
     * keys: zeros after the byte, never the earlier occupant's bytes */
    for (int i = 0; i < N; i++) {
        uint64_t k = 7000 + (uint64_t)i, k2 = 9000 + (uint64_t)i;
        unsigned char got[BB];
        read_block(ns, k, got);
        TU_CHECK(memcmp(got, w[i], BB) == 0);
        TU_CHECK_EQ(kvt_remove_keys(ns, &k, 1, NULL), 0);
        TU_CHECK_EQ(kvt_replace_key(ns, k2, v[i], 1), 0);
        check_short(ns, k2, v[i], 1);
    }
    kvt_engine_close(e);
    tu_rm_tree(dir);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_keys_replace", 0x5e7a11ce));
    test_read_key();
    test_replace();
    test_lookahead();
    test_put_in_place();
    test_replace_persist();
    printf("test_keys_replace: ok\n");
    return 0;
}
