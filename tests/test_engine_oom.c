// ctest: labels=unit;fuzz timeout=120
/*
 * test_engine_oom — out-of-memory injection (util_alloc_fail_after) into every allocation of
 * kvt_options_create, kvt_engine_open, kvt_ns_open, kvt_put, kvt_put_keys, kvt_match,
 * kvt_match_keys and kvt_tenant_set_dram_quota.
 *
 * For each operation, k = 0, 1, 2, ...: arm the k-th allocation to fail, run the operation,
 * disarm. While an injected failure happened the call must return -ENOMEM (or succeed
 * completely), and the engine must stay consistent: everything cached before still matches
 * and reads back byte-exact, nothing half-made is visible (a put that failed shows exactly
 * the blocks it reports stored, all complete; a failed match pins nothing), the counters
 * agree. Two modes per operation: retry on the same engine until success (the state a
 * failure leaves is retryable), and a fresh engine per k until an attempt sees no injected
 * failure (every allocation site is covered). Leaks are ASan's to find (KVT_SANITIZE=ON);
 * leaked arena mappings are caught by watching VmSize.
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
#include "util/util.h"

#define BT 4u
#define BB 512u
#define MAXK 100000

static tu_rng rng;

static kvt_layout small_layout(void) { return tu_layout(2, 2, 8, KVT_DTYPE_FP16, BT); }

static kvt_options *make_opts(uint64_t cap_blocks) { return tu_dram_options(cap_blocks * BB, BB); }

static kvt_engine *open_engine(uint64_t blocks) { return tu_dram_engine(blocks * BB, BB); }

/* Arm injection at k. Returns the failure count before. */
static uint64_t arm(long k)
{
    uint64_t f = util_alloc_failures();
    util_alloc_fail_after(k);
    return f;
}

/* Disarm; 1 if a failure was injected since arm(). */
static int disarm(uint64_t before)
{
    util_alloc_fail_after(-1);
    return util_alloc_failures() != before;
}

static void expect_enomem(int rc, const char *op, long k)
{
    if (rc != -ENOMEM) {
        fprintf(stderr, "%s with allocation %ld failing: rc %d (%s), want -ENOMEM or 0\n", op, k,
                rc, kvt_strerror(rc));
        exit(1);
    }
}

typedef struct seq {
    uint32_t tok[8 * BT];
    uint64_t keys[8];
    size_t nb;
    unsigned char data[8][BB];
} seq;

static void seq_init(seq *s, size_t nb, const seq *prefix, size_t shared)
{
    s->nb = nb;
    for (size_t i = 0; i < 8 * BT; i++)
        s->tok[i] = (uint32_t)tu_next(&rng);
    for (size_t i = 0; i < 8; i++)
        s->keys[i] = tu_next(&rng);
    tu_fill(&rng, s->data, sizeof s->data);
    if (prefix) {
        memcpy(s->tok, prefix->tok, shared * BT * 4);
        memcpy(s->keys, prefix->keys, shared * 8);
        memcpy(s->data, prefix->data, shared * BB);
    }
}

static int put(kvt_ns *ns, const seq *s, int keys, size_t *stored)
{
    const void *p[8];
    for (size_t i = 0; i < s->nb; i++)
        p[i] = s->data[i];
    *stored = 999;
    return keys ? kvt_put_keys(ns, s->keys, s->nb, p, stored)
                : kvt_put(ns, s->tok, s->nb * BT, p, stored);
}

/* Blocks of s cached (lease-less). */
static size_t cached(kvt_ns *ns, const seq *s, int keys)
{
    size_t m = 999;
    if (keys) {
        TU_CHECK_EQ(kvt_match_keys(ns, s->keys, s->nb, &m, NULL), 0);
        return m;
    }
    TU_CHECK_EQ(kvt_match(ns, s->tok, s->nb * BT, &m, NULL), 0);
    TU_CHECK(m % BT == 0);
    return m / BT;
}

/* Exactly `want` blocks of s are cached and hold s's bytes. */
static void check_seq(kvt_ns *ns, const seq *s, int keys, size_t want, const char *what)
{
    size_t got = cached(ns, s, keys);
    if (got != want) {
        fprintf(stderr, "%s: %zu blocks cached, want %zu\n", what, got, want);
        exit(1);
    }
    if (!want)
        return;
    size_t m = 0;
    kvt_lease *l = NULL;
    if (keys)
        TU_CHECK_EQ(kvt_match_keys(ns, s->keys, s->nb, &m, &l), 0);
    else
        TU_CHECK_EQ(kvt_match(ns, s->tok, s->nb * BT, &m, &l), 0);
    TU_CHECK(l != NULL);
    static unsigned char out[8][BB];
    TU_CHECK_EQ(kvt_read_contig(l, 0, want, out, want * BB), 0);
    if (memcmp(out, s->data, want * BB) != 0) {
        fprintf(stderr, "%s: cached bytes differ\n", what);
        exit(1);
    }
    kvt_release(l);
}

static uint64_t vm_size_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %llu", (unsigned long long *)&kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* Every cached block can still be evicted (nothing leaked out of the eviction lists): fresh
 * sequences totalling the capacity store completely and leave none of `old` cached. */
static void check_all_evictable(kvt_engine *e, kvt_ns *ns, int keys, uint64_t cap,
                                const seq *const *old, size_t n_old, const char *what)
{
    for (uint64_t done = 0; done < cap;) {
        static seq f;
        size_t nb = cap - done < 8 ? (size_t)(cap - done) : 8;
        seq_init(&f, nb, NULL, 0);
        size_t st = 999;
        int rc = put(ns, &f, keys, &st);
        if (rc != 0 || st != nb) {
            fprintf(stderr, "%s: filling the cache with fresh blocks: rc %d (%s), stored %zu of "
                    "%zu: blocks leaked out of the eviction order\n", what, rc, kvt_strerror(rc),
                    st, nb);
            exit(1);
        }
        done += nb;
    }
    for (size_t i = 0; i < n_old; i++)
        TU_CHECK_EQ(cached(ns, old[i], keys), 0);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, cap);
}

/* ---------------------------------------------------------------- open */

static void test_open(void)
{
    long k, fails = 0;
    for (k = 0; k < MAXK; k++) {
        kvt_options *o = NULL;
        uint64_t b = arm(k);
        int rc = kvt_options_create(&o);
        int inj = disarm(b);
        if (rc == 0) {
            kvt_options_destroy(o);
            if (!inj)
                break;
            continue;
        }
        expect_enomem(rc, "kvt_options_create", k);
        fails++;
    }
    TU_CHECK(k < MAXK);

    /* A 64 MiB arena: a mapping leaked by each failed open would show in VmSize. */
    kvt_options *o = make_opts((64u << 20) / BB);
    uint64_t vm0 = vm_size_kb();
    for (k = 0; k < MAXK; k++) {
        kvt_engine *e = NULL;
        uint64_t b = arm(k);
        int rc = kvt_engine_open(o, &e);
        int inj = disarm(b);
        if (rc == 0) {
            kvt_stats s = tu_stats(e);
            TU_CHECK_EQ(s.dram_capacity, 64u << 20);
            TU_CHECK_EQ(s.blocks_cached, 0);
            TU_CHECK_EQ(s.namespaces, 0);
            TU_CHECK_EQ(kvt_engine_close(e), 0);
            if (!inj)
                break;
            continue;
        }
        expect_enomem(rc, "kvt_engine_open", k);
        fails++;
    }
    TU_CHECK(k < MAXK);
    uint64_t vm1 = vm_size_kb();
    kvt_options_destroy(o);
    printf("open: done at k=%ld, %ld failures in all, VmSize %+lld KiB\n", k, fails,
           (long long)(vm1 - vm0));
    if (vm0 && vm1 > vm0 + (48u << 10)) {
        fprintf(stderr, "failed kvt_engine_open leaks its arena mapping (VmSize +%llu KiB)\n",
                (unsigned long long)(vm1 - vm0));
        exit(1);
    }
}

/* ---------------------------------------------------------------- ns_open */

/* Open a new namespace ("new", tenant) next to "base" (tenant t0, 4 blocks cached), and
 * reopen "base" (must give the same handle) under the same injection. */
static void ns_case(int mode, const char *tenant, int keys)
{
    kvt_layout l = small_layout();
    static seq base, s2;
    seq_init(&base, 4, NULL, 0);
    seq_init(&s2, 3, NULL, 0);
    kvt_engine *e = NULL;
    kvt_ns *ns0 = NULL;
    long k;
    for (k = 0; k < MAXK; k++) {
        if (!e) {
            e = open_engine(16);
            TU_CHECK_EQ(kvt_ns_open(e, "base", "t0", &l, 0, &ns0), 0);
            size_t st;
            TU_CHECK_EQ(put(ns0, &base, 0, &st), 0);
        }
        kvt_stats s0 = tu_stats(e);
        kvt_ns *nn = NULL, *again = NULL;
        uint64_t b = arm(k);
        int rc = kvt_ns_open(e, "new", tenant, &l, keys ? KVT_NS_KEYS : 0, &nn);
        int rc2 = kvt_ns_open(e, "base", "t0", &l, 0, &again);
        int inj = disarm(b);
        if (rc2 == 0)
            TU_CHECK(again == ns0);
        else
            expect_enomem(rc2, "kvt_ns_open (existing)", k);
        check_seq(ns0, &base, 0, 4, "ns_open: base after");
        kvt_stats s1 = tu_stats(e);
        if (rc == 0) {
            TU_CHECK(nn != NULL && nn != ns0);
            TU_CHECK_EQ(s1.namespaces, s0.namespaces + 1);
            /* The new namespace works and is isolated. */
            TU_CHECK_EQ(cached(nn, &base, keys), 0);
            size_t st;
            TU_CHECK_EQ(put(nn, &s2, keys, &st), 0);
            TU_CHECK_EQ(st, 3);
            check_seq(nn, &s2, keys, 3, "ns_open: new ns");
            check_seq(ns0, &base, 0, 4, "ns_open: base after new put");
            TU_CHECK_EQ(kvt_engine_close(e), 0);
            e = NULL;
            if (mode == 0 || !inj)
                break;
            continue;
        }
        expect_enomem(rc, "kvt_ns_open", k);
        TU_CHECK(inj);
        TU_CHECK_EQ(s1.namespaces, s0.namespaces); /* nothing half-made */
        TU_CHECK_EQ(s1.blocks_cached, 4);
        TU_CHECK_EQ(s1.leases_open, 0);
        if (mode == 1) {
            TU_CHECK_EQ(kvt_engine_close(e), 0);
            e = NULL;
        }
    }
    TU_CHECK(k < MAXK);
    if (e)
        TU_CHECK_EQ(kvt_engine_close(e), 0);
    printf("ns_open mode %d tenant %s keys %d: done at k=%ld\n", mode, tenant, keys, k);
}

static void test_ns_open(void)
{
    for (int mode = 0; mode < 2; mode++) { /* 0: retry on one engine, 1: fresh engine per k */
        ns_case(mode, "t0", 0);   /* the tenant exists */
        ns_case(mode, "tNew", 0); /* a new tenant */
        ns_case(mode, "tNew", 1); /* a key namespace */
    }
}

/* ---------------------------------------------------------------- put */

/* Put Y = X[0..2) + 3 new blocks (a split of X's node and a new leaf) into a cache that
 * holds X (4) and Z (2), with capacity `cap`: with cap 6 the put must also evict. */
static void put_case(int keys, uint64_t cap)
{
    kvt_layout l = small_layout();
    static seq X, Y, Z;
    seq_init(&X, 4, NULL, 0);
    seq_init(&Y, 5, &X, 2);
    seq_init(&Z, 2, NULL, 0);

    for (int mode = 0; mode < 2; mode++) {
        kvt_engine *e = NULL;
        kvt_ns *ns = NULL;
        size_t y_have = 2; /* blocks of Y cached (mode 0 accumulates) */
        long k;
        for (k = 0; k < MAXK; k++) {
            if (!e) {
                e = open_engine(cap);
                TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, keys ? KVT_NS_KEYS : 0, &ns), 0);
                size_t st;
                TU_CHECK_EQ(put(ns, &X, keys, &st), 0);
                TU_CHECK_EQ(put(ns, &Z, keys, &st), 0);
                y_have = 2;
            }
            kvt_stats s0 = tu_stats(e);
            size_t stored = 999;
            uint64_t b = arm(k);
            int rc = put(ns, &Y, keys, &stored);
            int inj = disarm(b);
            if (rc != 0)
                expect_enomem(rc, keys ? "kvt_put_keys" : "kvt_put", k);
            else
                TU_CHECK_EQ(y_have + stored, 5);
            TU_CHECK(stored <= 5 - y_have);
            y_have += stored;
            kvt_stats s1 = tu_stats(e);
            TU_CHECK_EQ(s1.blocks_stored, s0.blocks_stored + stored);
            TU_CHECK_EQ(s1.bytes_written, s0.bytes_written + stored * BB);
            TU_CHECK_EQ(s1.leases_open, 0);
            /* Exactly the reported blocks are visible, complete and correct. */
            check_seq(ns, &Y, keys, y_have, "put: Y");
            size_t xc = cached(ns, &X, keys), zc = cached(ns, &Z, keys);
            TU_CHECK(xc >= 2);
            check_seq(ns, &X, keys, xc, "put: X");
            check_seq(ns, &Z, keys, zc, "put: Z");
            /* Every cached block is reachable: X and Y share 2. */
            TU_CHECK_EQ(s1.blocks_cached, xc + zc + y_have - 2);
            TU_CHECK_EQ(s1.dram_used, s1.blocks_cached * BB);
            if (cap >= 9)
                TU_CHECK(xc == 4 && zc == 2); /* no reason to evict */
            if (mode == 1 || rc == 0) {
                const seq *old[3] = {&X, &Y, &Z};
                check_all_evictable(e, ns, keys, cap, old, 3, "put");
            }
            if (rc == 0 && (mode == 0 || !inj)) {
                TU_CHECK_EQ(kvt_engine_close(e), 0);
                e = NULL;
                break;
            }
            if (mode == 1) {
                TU_CHECK_EQ(kvt_engine_close(e), 0);
                e = NULL;
            }
        }
        TU_CHECK(k < MAXK);
        if (e)
            TU_CHECK_EQ(kvt_engine_close(e), 0);
        printf("put keys=%d cap=%llu mode %d: done at k=%ld\n", keys, (unsigned long long)cap,
               mode, k);
    }
}

/* ---------------------------------------------------------------- match */

/* Match 2 of X's 4 blocks with a lease (a split and a lease allocation). A failed match
 * pins nothing: a 4-block put into the 4-block cache then evicts all of X. */
static void match_case(int keys)
{
    kvt_layout l = small_layout();
    static seq X;
    seq_init(&X, 4, NULL, 0);
    long k;
    for (k = 0; k < MAXK; k++) {
        kvt_engine *e = open_engine(4);
        kvt_ns *ns = NULL;
        TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, keys ? KVT_NS_KEYS : 0, &ns), 0);
        size_t st;
        TU_CHECK_EQ(put(ns, &X, keys, &st), 0);
        kvt_stats s0 = tu_stats(e);
        size_t m = 999;
        kvt_lease *ls = (kvt_lease *)(uintptr_t)1;
        uint64_t b = arm(k);
        int rc = keys ? kvt_match_keys(ns, X.keys, 2, &m, &ls)
                      : kvt_match(ns, X.tok, 2 * BT + 1, &m, &ls);
        int inj = disarm(b);
        kvt_stats s1 = tu_stats(e);
        if (rc == 0) {
            TU_CHECK(ls != NULL && ls != (kvt_lease *)(uintptr_t)1);
            TU_CHECK_EQ(m, keys ? 2 : 2 * BT); /* a match that succeeds is the longest one */
            TU_CHECK_EQ(kvt_lease_blocks(ls), 2);
            TU_CHECK_EQ(s1.leases_open, 1);
            unsigned char out[2][BB];
            TU_CHECK_EQ(kvt_read_contig(ls, 0, 2, out, sizeof out), 0);
            TU_CHECK(memcmp(out, X.data, sizeof out) == 0);
            kvt_release(ls);
            check_seq(ns, &X, keys, 4, "match: X after");
            const seq *old[1] = {&X};
            check_all_evictable(e, ns, keys, 4, old, 1, "match");
            TU_CHECK_EQ(kvt_engine_close(e), 0);
            if (!inj)
                break;
            continue;
        }
        expect_enomem(rc, keys ? "kvt_match_keys" : "kvt_match", k);
        TU_CHECK_EQ(s1.leases_open, 0);
        TU_CHECK_EQ(s1.blocks_cached, s0.blocks_cached);
        TU_CHECK_EQ(cached(ns, &X, keys), 4);
        /* Nothing pinned, nothing leaked: fresh blocks replace all of X. */
        const seq *old[1] = {&X};
        check_all_evictable(e, ns, keys, 4, old, 1, "match failed with -ENOMEM");
        TU_CHECK_EQ(kvt_engine_close(e), 0);
    }
    TU_CHECK(k < MAXK);
    printf("match keys=%d: done at k=%ld\n", keys, k);
}

/* A match whose path has more nodes than a path holds without allocating (40 nodes: a
 * 40-block sequence with a branch after each of its blocks), so the path itself must grow:
 * a failure there is -ENOMEM with nothing pinned, never a shorter "successful" match. */
#define DEEP 40
static void deep_match_case(void)
{
    kvt_layout l = small_layout();
    static uint32_t tok[DEEP * BT], br[DEEP * BT];
    static unsigned char data[DEEP][BB], out[DEEP][BB];
    for (size_t i = 0; i < DEEP * BT; i++)
        tok[i] = (uint32_t)tu_next(&rng);
    tu_fill(&rng, data, sizeof data);
    const void *p[DEEP];
    for (size_t i = 0; i < DEEP; i++)
        p[i] = data[i];
    const uint64_t cap = 2 * DEEP;
    long k;
    for (k = 0; k < MAXK; k++) {
        kvt_engine *e = open_engine(cap);
        kvt_ns *ns = NULL;
        TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
        size_t st = 0, m = 0;
        TU_CHECK_EQ(kvt_put(ns, tok, DEEP * BT, p, &st), 0);
        TU_CHECK_EQ(st, DEEP);
        for (size_t b = 1; b < DEEP; b++) { /* a one-block branch after block b */
            memcpy(br, tok, b * BT * sizeof *br);
            for (size_t i = 0; i < BT; i++)
                br[b * BT + i] = tok[b * BT + i] ^ 0x5a5a5a5au;
            TU_CHECK_EQ(kvt_put(ns, br, (b + 1) * BT, p, &st), 0);
            TU_CHECK_EQ(st, 1);
        }
        kvt_lease *ls = NULL;
        uint64_t b0 = arm(k);
        int rc = kvt_match(ns, tok, DEEP * BT, &m, &ls);
        int inj = disarm(b0);
        if (rc == 0) {
            TU_CHECK_EQ(m, DEEP * BT);
            TU_CHECK_EQ(kvt_lease_blocks(ls), DEEP);
            TU_CHECK_EQ(kvt_read_contig(ls, 0, DEEP, out, sizeof out), 0);
            TU_CHECK(memcmp(out, data, sizeof out) == 0);
            kvt_release(ls);
        } else {
            expect_enomem(rc, "kvt_match (deep path)", k);
            TU_CHECK(ls == NULL);
        }
        TU_CHECK_EQ(tu_stats(e).leases_open, 0);
        TU_CHECK_EQ(kvt_match(ns, tok, DEEP * BT, &m, NULL), 0);
        TU_CHECK_EQ(m, DEEP * BT);
        /* Nothing pinned or leaked: 2*DEEP fresh blocks replace everything. */
        for (int r = 0; r < 2; r++) {
            for (size_t i = 0; i < DEEP * BT; i++)
                br[i] = (uint32_t)tu_next(&rng);
            int prc = kvt_put(ns, br, DEEP * BT, p, &st);
            if (prc != 0 || st != DEEP) {
                fprintf(stderr, "deep match (k=%ld, rc %d): refilling: put rc %d stored %zu of "
                        "%d: blocks pinned or leaked out of the eviction order\n", k, rc, prc,
                        st, DEEP);
                exit(1);
            }
        }
        TU_CHECK_EQ(kvt_match(ns, tok, DEEP * BT, &m, NULL), 0);
        TU_CHECK_EQ(m, 0);
        TU_CHECK_EQ(kvt_engine_close(e), 0);
        if (!inj)
            break;
    }
    TU_CHECK(k < MAXK);
    printf("match (deep path): done at k=%ld\n", k);
}

/* ---------------------------------------------------------------- quota */

static void quota_case(int exists)
{
    kvt_layout l = small_layout();
    static seq X;
    seq_init(&X, 4, NULL, 0);
    long k;
    for (k = 0; k < MAXK; k++) {
        kvt_engine *e = open_engine(8);
        kvt_ns *ns = NULL;
        if (exists)
            TU_CHECK_EQ(kvt_ns_open(e, "m", "tq", &l, 0, &ns), 0);
        uint64_t b = arm(k);
        int rc = kvt_tenant_set_dram_quota(e, "tq", 2 * BB);
        int inj = disarm(b);
        if (!ns)
            TU_CHECK_EQ(kvt_ns_open(e, "m", "tq", &l, 0, &ns), 0);
        size_t st;
        if (rc == 0) {
            TU_CHECK_EQ(put(ns, &X, 0, &st), -ENOSPC); /* the quota is in force */
            TU_CHECK_EQ(st, 2);
        } else {
            expect_enomem(rc, "kvt_tenant_set_dram_quota", k);
            TU_CHECK_EQ(put(ns, &X, 0, &st), 0); /* no quota */
            TU_CHECK_EQ(st, 4);
        }
        TU_CHECK_EQ(kvt_engine_close(e), 0);
        if (rc == 0 && !inj)
            break;
    }
    TU_CHECK(k < MAXK);
    printf("quota (tenant exists %d): done at k=%ld\n", exists, k);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_engine_oom", 8));
    test_open();
    test_ns_open();
    put_case(0, 16);
    put_case(0, 6);
    put_case(1, 16);
    put_case(1, 6);
    match_case(0);
    match_case(1);
    deep_match_case();
    quota_case(0);
    quota_case(1);
    printf("test_engine_oom: ok\n");
    return 0;
}
