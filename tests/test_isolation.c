// ctest: labels=unit timeout=120
/*
 * test_isolation — invariant 5 in the DRAM tier: namespaces never hit across (same name
 * with another tenant, another name with the same tenant, (name, tenant) pairs that
 * concatenate alike), each reads back its own bytes; a put evicts only its own tenant's
 * blocks; tenant quotas (kvt_tenant_set_dram_quota) bound a tenant and let it evict only
 * its own least recently used blocks, across all of its namespaces.
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

#define BT 4u
#define BB 512u
#define MAXB 8

static tu_rng rng;

static kvt_layout small_layout(void) { return tu_layout(2, 2, 8, KVT_DTYPE_FP16, BT); }

static kvt_engine *open_engine(uint64_t blocks) { return tu_dram_engine(blocks * BB, BB); }

static kvt_ns *ns_open(kvt_engine *e, const char *name, const char *tenant)
{
    kvt_layout l = small_layout();
    kvt_ns *ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, name, tenant, &l, 0, &ns), 0);
    return ns;
}

typedef struct seq {
    uint32_t tok[MAXB * BT];
    size_t nb;
    unsigned char data[MAXB][BB];
} seq;

static void seq_init(seq *s, size_t nb)
{
    s->nb = nb;
    for (size_t i = 0; i < MAXB * BT; i++)
        s->tok[i] = (uint32_t)tu_next(&rng);
    tu_fill(&rng, s->data, sizeof s->data);
}

static size_t put(kvt_ns *ns, const seq *s, int want_rc)
{
    const void *p[MAXB];
    for (size_t i = 0; i < s->nb; i++)
        p[i] = s->data[i];
    size_t stored = 999;
    int rc = kvt_put(ns, s->tok, s->nb * BT, p, &stored);
    if (rc != want_rc) {
        fprintf(stderr, "put: rc %d (%s), want %d\n", rc, kvt_strerror(rc), want_rc);
        exit(1);
    }
    return stored;
}

static size_t cached(kvt_ns *ns, const seq *s)
{
    size_t m = 999;
    TU_CHECK_EQ(kvt_match(ns, s->tok, s->nb * BT, &m, NULL), 0);
    return m / BT;
}

/* The cached blocks of s in ns hold s's bytes (read through a lease: refreshes them). */
static void verify(kvt_ns *ns, const seq *s, size_t want_blocks)
{
    size_t m = 999;
    kvt_lease *l = NULL;
    TU_CHECK_EQ(kvt_match(ns, s->tok, s->nb * BT, &m, &l), 0);
    TU_CHECK_EQ(m, want_blocks * BT);
    if (!want_blocks)
        return;
    static unsigned char out[MAXB][BB];
    TU_CHECK_EQ(kvt_read_contig(l, 0, want_blocks, out, want_blocks * BB), 0);
    TU_CHECK(memcmp(out, s->data, want_blocks * BB) == 0);
    kvt_release(l);
}

/* ---------------------------------------------------------------- no hit across */

static void test_no_cross_hit(void)
{
    kvt_engine *e = open_engine(64);
    const char *pairs[][2] = {
        {"m", "tA"}, {"m", "tB"},  /* same name, another tenant */
        {"m2", "tA"},              /* another name, same tenant */
        {"ab", "c"}, {"a", "bc"},  /* concatenate alike */
        {"tA", "m"},               /* name and tenant swapped */
    };
    enum { N = 6 };
    kvt_ns *ns[N];
    for (int i = 0; i < N; i++)
        ns[i] = ns_open(e, pairs[i][0], pairs[i][1]);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++)
            TU_CHECK(ns[i] != ns[j]);
    TU_CHECK_EQ(tu_stats(e).namespaces, N);

    /* The same tokens everywhere, different bytes per namespace. */
    static seq s[N];
    seq_init(&s[0], 4);
    for (int i = 1; i < N; i++) {
        seq_init(&s[i], 4);
        memcpy(s[i].tok, s[0].tok, sizeof s[0].tok);
    }
    /* Put in namespace 0 only: nobody else hits. */
    TU_CHECK_EQ(put(ns[0], &s[0], 0), 4);
    for (int i = 1; i < N; i++) {
        if (cached(ns[i], &s[i]) != 0) {
            fprintf(stderr, "namespace (%s,%s) hits the blocks of (%s,%s)\n", pairs[i][0],
                    pairs[i][1], pairs[0][0], pairs[0][1]);
            exit(1);
        }
        kvt_lease *l = (kvt_lease *)(uintptr_t)1;
        size_t m = 999;
        TU_CHECK_EQ(kvt_match(ns[i], s[i].tok, 4 * BT, &m, &l), 0);
        TU_CHECK_EQ(m, 0);
        TU_CHECK(l == NULL);
    }
    /* Each namespace stores its own copy (stored counts all 4 blocks) and reads back its own
     * bytes. */
    for (int i = 1; i < N; i++)
        TU_CHECK_EQ(put(ns[i], &s[i], 0), 4);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, 4 * N);
    for (int i = 0; i < N; i++)
        verify(ns[i], &s[i], 4);
    /* Keys are a function of the tokens alone: equal across namespaces. */
    uint64_t k0[4], ki[4];
    TU_CHECK_EQ(kvt_block_keys(ns[0], s[0].tok, 4 * BT, k0), 0);
    for (int i = 1; i < N; i++) {
        TU_CHECK_EQ(kvt_block_keys(ns[i], s[i].tok, 4 * BT, ki), 0);
        TU_CHECK(memcmp(k0, ki, sizeof k0) == 0);
    }
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* ---------------------------------------------------------------- eviction, no quotas */

static void test_no_cross_evict(void)
{
    kvt_engine *e = open_engine(8);
    kvt_ns *a = ns_open(e, "m", "tA"), *b = ns_open(e, "m", "tB");
    static seq sb, sa, big;
    seq_init(&sb, 3);
    TU_CHECK_EQ(put(b, &sb, 0), 3);
    /* A churns through the cache: it only ever evicts its own. */
    for (int r = 0; r < 200; r++) {
        seq x;
        seq_init(&x, 1 + (size_t)tu_below(&rng, 2));
        TU_CHECK_EQ(put(a, &x, 0), x.nb);
        TU_CHECK_EQ(cached(b, &sb), 3);
    }
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.blocks_cached, 8);
    TU_CHECK(s.blocks_evicted > 100);
    verify(b, &sb, 3);
    /* A needs 6 and owns 5: stores 5 and stops with -ENOSPC rather than touching B. */
    seq_init(&big, 6);
    TU_CHECK_EQ(put(a, &big, -ENOSPC), 5);
    TU_CHECK_EQ(cached(a, &big), 5);
    verify(b, &sb, 3);
    verify(a, &big, 5);

    /* A tenant with nothing of its own and no free space: -ENOSPC, nothing stored. */
    kvt_ns *c = ns_open(e, "m", "tC");
    seq_init(&sa, 1);
    uint64_t ev = tu_stats(e).blocks_evicted;
    TU_CHECK_EQ(put(c, &sa, -ENOSPC), 0);
    TU_CHECK_EQ(tu_stats(e).blocks_evicted, ev);
    TU_CHECK_EQ(cached(c, &sa), 0);
    verify(b, &sb, 3);
    verify(a, &big, 5);
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    /* Same with the whole cache held by B. */
    e = open_engine(8);
    a = ns_open(e, "m", "tA");
    b = ns_open(e, "m", "tB");
    seq_init(&sb, 8);
    TU_CHECK_EQ(put(b, &sb, 0), 8);
    TU_CHECK_EQ(put(a, &sa, -ENOSPC), 0);
    TU_CHECK_EQ(tu_stats(e).blocks_evicted, 0);
    verify(b, &sb, 8);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* ---------------------------------------------------------------- quotas */

static uint64_t cached_all(kvt_ns *ns, seq *s, size_t n)
{
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += cached(ns, &s[i]);
    return t;
}

static void test_quotas(void)
{
    kvt_engine *e = open_engine(8);
    /* Quotas adding up to the capacity; A's is 3.5 blocks = 3 whole blocks. */
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "tA", 3 * BB + BB / 2), 0);
    kvt_ns *a1 = ns_open(e, "m", "tA"), *a2 = ns_open(e, "m2", "tA");
    kvt_ns *b = ns_open(e, "m", "tB");
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "tB", 5 * BB), 0); /* after the ns exists */

    /* A alone, across both its namespaces: never more than 3 blocks although 8 are free. */
    enum { NA = 40 };
    static seq sa[NA];
    for (int i = 0; i < NA; i++) {
        seq_init(&sa[i], 1 + (size_t)tu_below(&rng, 3));
        kvt_ns *ns = (i % 2) ? a2 : a1;
        TU_CHECK_EQ(put(ns, &sa[i], 0), sa[i].nb);
        kvt_stats s = tu_stats(e);
        TU_CHECK(s.blocks_cached <= 3);
        TU_CHECK_EQ(s.dram_used, s.blocks_cached * BB);
        TU_CHECK_EQ(cached(ns, &sa[i]), sa[i].nb); /* the newest is always fully there */
    }
    TU_CHECK_EQ(tu_stats(e).blocks_cached, 3);

    /* The tenant's LRU spans its namespaces: 2 blocks in a1, then 2 in a2 -> a1 loses one. */
    static seq x1, x2;
    seq_init(&x1, 2);
    seq_init(&x2, 2);
    TU_CHECK_EQ(put(a1, &x1, 0), 2);
    TU_CHECK_EQ(put(a2, &x2, 0), 2);
    TU_CHECK_EQ(cached(a1, &x1), 1);
    TU_CHECK_EQ(cached(a2, &x2), 2);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, 3);

    /* B uses its 5 blocks without evicting anything of A's. */
    static seq sb[5];
    uint64_t ev0 = tu_stats(e).blocks_evicted;
    for (int i = 0; i < 5; i++) {
        seq_init(&sb[i], 1);
        TU_CHECK_EQ(put(b, &sb[i], 0), 1);
    }
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.blocks_evicted, ev0);
    TU_CHECK_EQ(s.blocks_cached, 8);
    TU_CHECK_EQ(cached(a1, &x1), 1);
    TU_CHECK_EQ(cached(a2, &x2), 2);

    /* A keeps churning: B's 5 blocks stay, A stays at 3. */
    for (int r = 0; r < 100; r++) {
        seq x;
        seq_init(&x, 1 + (size_t)tu_below(&rng, 3));
        TU_CHECK_EQ(put(r % 2 ? a1 : a2, &x, 0), x.nb);
        TU_CHECK_EQ(cached_all(b, sb, 5), 5);
        TU_CHECK_EQ(tu_stats(e).blocks_cached, 8);
    }
    for (int i = 0; i < 5; i++)
        verify(b, &sb[i], 1);
    /* B churns: A's blocks stay. Capture A's current three blocks by a 3-block put. */
    static seq a3;
    seq_init(&a3, 3);
    TU_CHECK_EQ(put(a1, &a3, 0), 3);
    for (int r = 0; r < 100; r++) {
        seq x;
        seq_init(&x, 1 + (size_t)tu_below(&rng, 5));
        TU_CHECK_EQ(put(b, &x, 0), x.nb);
        TU_CHECK_EQ(cached(a1, &a3), 3);
    }
    verify(a1, &a3, 3);

    /* A sequence longer than A's quota: 3 stored, then -ENOSPC. */
    static seq a4;
    seq_init(&a4, 4);
    TU_CHECK_EQ(put(a2, &a4, -ENOSPC), 3);
    TU_CHECK_EQ(cached(a2, &a4), 3);
    verify(a2, &a4, 3);

    /* A quota smaller than one block: -ENOSPC, nothing stored, nobody evicted. */
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "tC", BB - 64), 0);
    kvt_ns *c = ns_open(e, "m", "tC");
    static seq sc;
    seq_init(&sc, 1);
    uint64_t ev1 = tu_stats(e).blocks_evicted;
    TU_CHECK_EQ(put(c, &sc, -ENOSPC), 0);
    TU_CHECK_EQ(tu_stats(e).blocks_evicted, ev1);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, 8);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* Quota 0 removes the limit. */
static void test_quota_removed(void)
{
    kvt_engine *e = open_engine(8);
    kvt_ns *a = ns_open(e, "m", "tA");
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "tA", 2 * BB), 0);
    static seq s;
    seq_init(&s, 6);
    TU_CHECK_EQ(put(a, &s, -ENOSPC), 2);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "tA", 0), 0);
    TU_CHECK_EQ(put(a, &s, 0), 4);
    TU_CHECK_EQ(tu_stats(e).blocks_evicted, 0);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, 6);
    verify(a, &s, 6);
    /* Raising a quota lets the tenant grow into free space without evicting. */
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "tA", 8 * BB), 0);
    static seq t;
    seq_init(&t, 2);
    TU_CHECK_EQ(put(a, &t, 0), 2);
    TU_CHECK_EQ(tu_stats(e).blocks_evicted, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    /* A quota smaller than one block fails with -ENOSPC even when the tier is empty. */
    e = open_engine(8);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "tD", BB - 64), 0);
    kvt_ns *d = ns_open(e, "m", "tD");
    TU_CHECK_EQ(put(d, &t, -ENOSPC), 0);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, 0);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "tD", BB), 0);
    TU_CHECK_EQ(put(d, &t, -ENOSPC), 1);
    verify(d, &t, 1);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_isolation", 5));
    test_no_cross_hit();
    test_no_cross_evict();
    test_quotas();
    test_quota_removed();
    printf("test_isolation: ok\n");
    return 0;
}
