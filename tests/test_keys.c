// ctest: labels=unit;fuzz timeout=120
/*
 * test_keys — KVT_NS_KEYS namespaces: sequences of caller-given 64-bit block keys.
 * put_keys/match_keys round trip; *matched counts blocks; keys are compared exactly, all 64
 * bits (a sequence differing in one key at index k matches k blocks, also when the keys
 * differ only in their high or low 32 bits); the lease's keys are the given keys; eviction
 * works as in token namespaces. Ends with a fuzz against a reference model over a 4-key
 * alphabet whose keys share their low or high halves.
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

static tu_rng rng;

static kvt_layout small_layout(void) { return tu_layout(2, 2, 8, KVT_DTYPE_FP16, BT); }

static kvt_engine *open_engine(uint64_t blocks) { return tu_dram_engine(blocks * BB, BB); }

static kvt_ns *keys_ns(kvt_engine *e, const char *name)
{
    kvt_layout l = small_layout();
    kvt_ns *ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, name, "t", &l, KVT_NS_KEYS, &ns), 0);
    return ns;
}

static size_t kmatch(kvt_ns *ns, const uint64_t *k, size_t n)
{
    size_t m = 999;
    TU_CHECK_EQ(kvt_match_keys(ns, k, n, &m, NULL), 0);
    return m;
}

static void check_read(kvt_ns *ns, const uint64_t *k, size_t n, unsigned char (*want)[BB])
{
    size_t m = 999;
    kvt_lease *l = NULL;
    TU_CHECK_EQ(kvt_match_keys(ns, k, n, &m, &l), 0);
    TU_CHECK_EQ(m, n);
    TU_CHECK(l != NULL);
    TU_CHECK_EQ(kvt_lease_blocks(l), n);
    TU_CHECK_EQ(kvt_lease_tokens(l), n * BT);
    unsigned char (*out)[BB] = malloc(n * BB);
    TU_CHECK(out);
    TU_CHECK_EQ(kvt_read_contig(l, 0, n, out, n * BB), 0);
    for (size_t i = 0; i < n; i++) {
        uint64_t key = 0;
        TU_CHECK_EQ(kvt_lease_block_key(l, i, &key), 0);
        TU_CHECK_EQ(key, k[i]);
        if (memcmp(out[i], want[i], BB) != 0) {
            fprintf(stderr, "key block %zu: bytes differ\n", i);
            exit(1);
        }
    }
    free(out);
    kvt_release(l);
}

static void test_roundtrip_keys(void)
{
    kvt_engine *e = open_engine(64);
    kvt_ns *ns = keys_ns(e, "trace");
    enum { N = 8 };
    uint64_t k[N];
    for (int i = 0; i < N; i++)
        k[i] = tu_next(&rng);
    k[2] = 0;          /* zero and all-ones are ordinary keys */
    k[5] = UINT64_MAX;
    static unsigned char d[N][BB], other[N][BB];
    tu_fill(&rng, d, sizeof d);
    tu_fill(&rng, other, sizeof other);
    const void *p[N], *po[N];
    for (int i = 0; i < N; i++) {
        p[i] = d[i];
        po[i] = other[i];
    }
    size_t stored = 999;
    TU_CHECK_EQ(kvt_put_keys(ns, k, 0, p, &stored), 0);
    TU_CHECK_EQ(stored, 0);
    TU_CHECK_EQ(kvt_put_keys(ns, k, 5, p, &stored), 0);
    TU_CHECK_EQ(stored, 5);
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.blocks_stored, 5);
    TU_CHECK_EQ(s.blocks_cached, 5);
    TU_CHECK_EQ(s.bytes_written, 5 * BB);
    for (size_t n = 0; n <= N; n++)
        TU_CHECK_EQ(kmatch(ns, k, n), n < 5 ? n : 5);
    check_read(ns, k, 5, d);
    TU_CHECK_EQ(tu_stats(e).bytes_read, 5 * BB);

    /* Extension: only new blocks stored, cached ones not overwritten. */
    TU_CHECK_EQ(kvt_put_keys(ns, k, N, po, &stored), 0);
    TU_CHECK_EQ(stored, N - 5);
    for (int i = 5; i < N; i++)
        memcpy(d[i], other[i], BB);
    check_read(ns, k, N, d);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, N);

    /* One key differs at index j: exactly j blocks match — whichever bits differ. */
    const uint64_t flips[] = {1, 1ull << 31, 1ull << 32, 1ull << 63, 0xffffffffull,
                              0xffffffff00000000ull};
    for (size_t j = 0; j < N; j++) {
        for (size_t f = 0; f < sizeof flips / sizeof flips[0]; f++) {
            uint64_t q[N];
            memcpy(q, k, sizeof q);
            q[j] ^= flips[f];
            size_t m = kmatch(ns, q, N);
            if (m != j) {
                fprintf(stderr, "false key hit: key %zu ^ %llx, matched %zu, want %zu\n", j,
                        (unsigned long long)flips[f], m, j);
                exit(1);
            }
        }
    }
    /* Keys are not tokens: a key sequence starting at block 1 does not hit. */
    TU_CHECK_EQ(kmatch(ns, k + 1, N - 1), 0);

    /* Siblings under one parent that share one 32-bit half with each other. */
    uint64_t base = 0x0123456789abcdefull;
    uint64_t sib[4] = {base, base ^ (1ull << 40), base ^ 1, base ^ (1ull << 40) ^ 1};
    static unsigned char ds[4][BB];
    tu_fill(&rng, ds, sizeof ds);
    for (int i = 0; i < 4; i++) {
        uint64_t q[2] = {k[0], sib[i]};
        const void *pp[2] = {NULL, ds[i]};
        TU_CHECK_EQ(kvt_put_keys(ns, q, 2, pp, &stored), 0);
        TU_CHECK_EQ(stored, 1);
    }
    for (int i = 0; i < 4; i++) {
        uint64_t q[2] = {k[0], sib[i]};
        unsigned char want[2][BB];
        memcpy(want[0], d[0], BB);
        memcpy(want[1], ds[i], BB);
        check_read(ns, q, 2, want);
    }
    /* Same for first blocks (children of the root). */
    static unsigned char dr[4][BB];
    tu_fill(&rng, dr, sizeof dr);
    for (int i = 0; i < 4; i++) {
        const void *pp[1] = {dr[i]};
        TU_CHECK_EQ(kvt_put_keys(ns, &sib[i], 1, pp, &stored), 0);
        TU_CHECK_EQ(stored, 1);
    }
    for (int i = 0; i < 4; i++)
        check_read(ns, &sib[i], 1, &dr[i]);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, N + 8);

    /* Another key namespace with the same keys: no hit. */
    kvt_ns *ns2 = keys_ns(e, "trace2");
    TU_CHECK_EQ(kmatch(ns2, k, N), 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* LRU eviction in a key namespace: capacity 8. */
static void test_evict_keys(void)
{
    kvt_engine *e = open_engine(8);
    kvt_ns *ns = keys_ns(e, "trace");
    uint64_t a[8], b[2];
    for (int i = 0; i < 8; i++)
        a[i] = tu_next(&rng);
    b[0] = tu_next(&rng);
    b[1] = tu_next(&rng);
    static unsigned char d[8][BB];
    tu_fill(&rng, d, sizeof d);
    const void *p[8];
    for (int i = 0; i < 8; i++)
        p[i] = d[i];
    size_t stored = 0, m = 0;
    TU_CHECK_EQ(kvt_put_keys(ns, a, 8, p, &stored), 0);
    TU_CHECK_EQ(stored, 8);
    kvt_lease *l = NULL;
    TU_CHECK_EQ(kvt_match_keys(ns, a, 3, &m, &l), 0); /* pins a[0..3) */
    TU_CHECK_EQ(m, 3);
    TU_CHECK_EQ(kvt_put_keys(ns, b, 2, p, &stored), 0);
    TU_CHECK_EQ(stored, 2);
    TU_CHECK_EQ(kmatch(ns, a, 8), 6); /* tail-first */
    TU_CHECK_EQ(tu_stats(e).blocks_evicted, 2);
    uint64_t c[6];
    for (int i = 0; i < 6; i++)
        c[i] = tu_next(&rng);
    /* 6 needed; unpinned: a[3..6) and b: stores 5, stops (a[0..3) pinned, c pending). */
    TU_CHECK_EQ(kvt_put_keys(ns, c, 6, p, &stored), -ENOSPC);
    TU_CHECK_EQ(stored, 5);
    TU_CHECK_EQ(kmatch(ns, a, 8), 3);
    TU_CHECK_EQ(kmatch(ns, b, 2), 0);
    TU_CHECK_EQ(kmatch(ns, c, 6), 5);
    unsigned char out[3][BB];
    TU_CHECK_EQ(kvt_read_contig(l, 0, 3, out, sizeof out), 0);
    TU_CHECK(memcmp(out, d, sizeof out) == 0);
    kvt_release(l);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* ---------------------------------------------------------------- fuzz vs model */

#define FZ_OPS 3000
#define FZ_MAXB 6

static const uint64_t alpha[4] = {0x0000000100000001ull, 0x0000000100000002ull,
                                  0x0000000200000001ull, 0x0000000200000002ull};

static void key_bytes(const uint64_t *k, size_t b, unsigned char *out)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i <= b; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    tu_rng r;
    tu_rng_init(&r, h);
    tu_fill(&r, out, BB);
}

static void test_fuzz(void)
{
    kvt_engine *e = open_engine(FZ_OPS * FZ_MAXB);
    kvt_ns *ns = keys_ns(e, "fuzz");
    typedef struct {
        uint64_t k[FZ_MAXB];
        size_t n;
    } mseq;
    mseq *model = calloc(FZ_OPS, sizeof *model);
    TU_CHECK(model);
    size_t n_model = 0;
    uint64_t total = 0;
    static unsigned char blk[FZ_MAXB][BB], got[FZ_MAXB][BB];
    for (int op = 0; op < FZ_OPS; op++) {
        mseq q;
        q.n = 1 + (size_t)tu_below(&rng, FZ_MAXB);
        if (n_model && tu_below(&rng, 2)) {
            q = model[tu_below(&rng, n_model)];
            size_t n = 1 + (size_t)tu_below(&rng, FZ_MAXB);
            for (size_t i = q.n; i < n; i++)
                q.k[i] = alpha[tu_below(&rng, 4)];
            q.n = n;
            if (tu_below(&rng, 2))
                q.k[tu_below(&rng, n)] = alpha[tu_below(&rng, 4)];
        } else {
            for (size_t i = 0; i < q.n; i++)
                q.k[i] = alpha[tu_below(&rng, 4)];
        }
        size_t want = 0;
        for (size_t i = 0; i < n_model; i++) {
            size_t c = 0, lim = q.n < model[i].n ? q.n : model[i].n;
            while (c < lim && q.k[c] == model[i].k[c])
                c++;
            if (c > want)
                want = c;
        }
        size_t m = 999;
        kvt_lease *l = NULL;
        TU_CHECK_EQ(kvt_match_keys(ns, q.k, q.n, &m, &l), 0);
        if (m != want) {
            fprintf(stderr, "fuzz op %d: matched %zu, model %zu\n", op, m, want);
            exit(1);
        }
        for (size_t b = 0; b < q.n; b++)
            key_bytes(q.k, b, blk[b]);
        if (want) {
            TU_CHECK_EQ(kvt_read_contig(l, 0, want, got, want * BB), 0);
            TU_CHECK(memcmp(got, blk, want * BB) == 0);
        }
        if (tu_below(&rng, 4)) {
            const void *p[FZ_MAXB];
            for (size_t b = 0; b < q.n; b++)
                p[b] = b < want ? NULL : blk[b];
            size_t st = 999;
            TU_CHECK_EQ(kvt_put_keys(ns, q.k, q.n, p, &st), 0);
            TU_CHECK_EQ(st, q.n - want);
            total += st;
            model[n_model++] = q;
        }
        kvt_release(l);
    }
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.blocks_cached, total);
    TU_CHECK_EQ(s.leases_open, 0);
    printf("fuzz: %zu sequences, %llu blocks\n", n_model, (unsigned long long)total);
    free(model);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_keys", 6));
    test_roundtrip_keys();
    test_evict_keys();
    test_fuzz();
    printf("test_keys: ok\n");
    return 0;
}
