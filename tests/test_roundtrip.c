// ctest: labels=unit;fuzz timeout=120
/*
 * test_roundtrip — put, match, read: bytes come back exactly, matches are block-aligned and
 * exact (invariant 1: no false hit), block keys are the documented XXH3 chain, a lease-less
 * match measures only, and the stats counters are exact. Ends with a fuzz of random
 * put/match over a tiny token alphabet (many shared prefixes and near misses) against a
 * reference model that keeps every sequence put.
 *
 * Layout: layers 2, kv_heads 2, head_dim 8, fp16, block_tokens 4 -> 512 bytes per block.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define BT 4u
#define BB 512u
#define GUARD 64u

static tu_rng rng;

static kvt_layout small_layout(void) { return tu_layout(2, 2, 8, KVT_DTYPE_FP16, BT); }

static kvt_engine *open_engine(uint64_t blocks) { return tu_dram_engine(blocks * BB, BB); }

/* Reference block keys: XXH3-64 of the block's tokens (little-endian u32) seeded with the
 * previous block's key, 0 for the first. */
static void ref_keys(const uint32_t *tok, size_t n_blocks, uint64_t *keys)
{
    uint64_t seed = 0;
    for (size_t b = 0; b < n_blocks; b++) {
        unsigned char le[4 * BT];
        for (size_t i = 0; i < BT; i++) {
            uint32_t v = tok[b * BT + i];
            le[4 * i] = (unsigned char)v;
            le[4 * i + 1] = (unsigned char)(v >> 8);
            le[4 * i + 2] = (unsigned char)(v >> 16);
            le[4 * i + 3] = (unsigned char)(v >> 24);
        }
        seed = keys[b] = XXH3_64bits_withSeed(le, sizeof le, seed);
    }
}

/* Read every block of a lease three ways (kvt_read per block into guarded buffers, kvt_read
 * of all blocks at once, kvt_read_contig) and compare with want[i]. */
static void check_lease_bytes(kvt_lease *lease, unsigned char (*want)[BB], size_t n)
{
    TU_CHECK_EQ(kvt_lease_blocks(lease), n);
    unsigned char *buf = malloc(n * (BB + GUARD) + 1);
    unsigned char *contig = malloc(n * BB + GUARD);
    void **dst = malloc((n + 1) * sizeof *dst);
    TU_CHECK(buf && contig && dst);
    memset(buf, 0xEE, n * (BB + GUARD));
    for (size_t i = 0; i < n; i++) {
        dst[i] = buf + i * (BB + GUARD);
        TU_CHECK_EQ(kvt_read(lease, i, 1, &dst[i]), 0);
    }
    for (size_t i = 0; i < n; i++) {
        if (memcmp(dst[i], want[i], BB) != 0) {
            fprintf(stderr, "block %zu: bytes read differ from bytes put\n", i);
            exit(1);
        }
        for (size_t g = 0; g < GUARD; g++)
            TU_CHECK(((unsigned char *)dst[i])[BB + g] == 0xEE); /* no overrun */
    }
    memset(buf, 0, n * (BB + GUARD));
    TU_CHECK_EQ(kvt_read(lease, 0, n, dst), 0);
    for (size_t i = 0; i < n; i++)
        TU_CHECK(memcmp(dst[i], want[i], BB) == 0);
    memset(contig, 0xEE, n * BB + GUARD);
    TU_CHECK_EQ(kvt_read_contig(lease, 0, n, contig, n * BB), 0);
    for (size_t i = 0; i < n; i++)
        TU_CHECK(memcmp(contig + i * BB, want[i], BB) == 0);
    for (size_t g = 0; g < GUARD; g++)
        TU_CHECK(contig[n * BB + g] == 0xEE);
    free(buf);
    free(contig);
    free(dst);
}

static const void **ptrs(unsigned char (*blocks)[BB], size_t n)
{
    const void **p = malloc((n ? n : 1) * sizeof *p);
    TU_CHECK(p);
    for (size_t i = 0; i < n; i++)
        p[i] = blocks[i];
    return p;
}

/* ---------------------------------------------------------------- basic round trip */

#define NB 10
#define NBX 14

static void test_basic(void)
{
    kvt_engine *e = open_engine(64);
    kvt_layout l = small_layout();
    kvt_ns *ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "llama", "acme", &l, 0, &ns), 0);

    /* NBX blocks of tokens plus a partial trailing block of 3 tokens. */
    uint32_t tok[NBX * BT + 3];
    tu_fill_tokens(&rng, tok, NBX * BT + 3);
    static unsigned char data[NBX][BB], data2[NBX][BB];
    tu_fill(&rng, data, sizeof data);
    tu_fill(&rng, data2, sizeof data2);

    kvt_stats s0 = tu_stats(e);
    TU_CHECK_EQ(s0.blocks_cached, 0);
    TU_CHECK_EQ(s0.namespaces, 1);
    TU_CHECK_EQ(s0.dram_capacity, 64 * BB);

    /* Put NB blocks + 3 tokens: the partial block is ignored. */
    const void **p = ptrs(data, NBX);
    size_t stored = 99, matched = 99;
    TU_CHECK_EQ(kvt_put(ns, tok, NB * BT + 3, p, &stored), 0);
    TU_CHECK_EQ(stored, NB);
    kvt_stats s1 = tu_stats(e);
    TU_CHECK_EQ(s1.puts, 1);
    TU_CHECK_EQ(s1.blocks_stored, NB);
    TU_CHECK_EQ(s1.bytes_written, (uint64_t)NB * BB);
    TU_CHECK_EQ(s1.blocks_cached, NB);
    TU_CHECK_EQ(s1.dram_used, (uint64_t)NB * BB);
    TU_CHECK_EQ(s1.blocks_evicted, 0);
    TU_CHECK(s1.index_bytes > 0);

    /* Lease-less matches: the longest block-aligned prefix; no counters move. */
    for (size_t n = 0; n <= NBX * BT + 3; n++) {
        TU_CHECK_EQ(kvt_match(ns, tok, n, &matched, NULL), 0);
        size_t want = (n / BT < NB ? n / BT : NB) * BT;
        if (matched != want) {
            fprintf(stderr, "match(%zu tokens) = %zu, want %zu\n", n, matched, want);
            exit(1);
        }
    }
    kvt_stats s2 = tu_stats(e);
    TU_CHECK_EQ(s2.lookups, 0);
    TU_CHECK_EQ(s2.leases_open, 0);
    TU_CHECK_EQ(s2.bytes_read, 0);

    /* A match with a lease: the lease covers exactly the matched blocks. */
    kvt_lease *lease = NULL;
    TU_CHECK_EQ(kvt_match(ns, tok, NB * BT + 3, &matched, &lease), 0);
    TU_CHECK_EQ(matched, NB * BT);
    TU_CHECK(lease != NULL);
    TU_CHECK_EQ(kvt_lease_blocks(lease), NB);
    TU_CHECK_EQ(kvt_lease_tokens(lease), NB * BT);
    kvt_stats s3 = tu_stats(e);
    TU_CHECK_EQ(s3.lookups, 1);
    TU_CHECK_EQ(s3.lookup_tokens, NB * BT);
    TU_CHECK_EQ(s3.hit_tokens, NB * BT);
    TU_CHECK_EQ(s3.leases_open, 1);
    check_lease_bytes(lease, data, NB);
    /* check_lease_bytes reads each block 3 times. */
    TU_CHECK_EQ(tu_stats(e).bytes_read, 3ull * NB * BB);

    /* Keys: kvt_block_keys == the lease's keys == a chained XXH3. */
    uint64_t want_keys[NBX], keys[NBX];
    ref_keys(tok, NBX, want_keys);
    memset(keys, 0, sizeof keys);
    TU_CHECK_EQ(kvt_block_keys(ns, tok, NBX * BT + 3, keys), 0);
    for (size_t i = 0; i < NBX; i++) {
        if (keys[i] != want_keys[i]) {
            fprintf(stderr, "kvt_block_keys[%zu] = %016llx, want %016llx\n", i,
                    (unsigned long long)keys[i], (unsigned long long)want_keys[i]);
            exit(1);
        }
    }
    for (size_t i = 0; i < NB; i++) {
        uint64_t k = 0;
        TU_CHECK_EQ(kvt_lease_block_key(lease, i, &k), 0);
        TU_CHECK_EQ(k, want_keys[i]);
    }
    /* kvt_block_keys writes only n_tokens / block_tokens keys. */
    uint64_t few[3] = {0, 0, 0xdeadbeefull};
    TU_CHECK_EQ(kvt_block_keys(ns, tok, 2 * BT + 1, few), 0);
    TU_CHECK_EQ(few[0], want_keys[0]);
    TU_CHECK_EQ(few[1], want_keys[1]);
    TU_CHECK_EQ(few[2], 0xdeadbeefull);
    kvt_release(lease);
    TU_CHECK_EQ(tu_stats(e).leases_open, 0);

    /* A shorter query: a lease on its first blocks only. */
    TU_CHECK_EQ(kvt_match(ns, tok, 7 * BT + 2, &matched, &lease), 0);
    TU_CHECK_EQ(matched, 7 * BT);
    check_lease_bytes(lease, data, 7);
    /* Reading a middle range. */
    unsigned char mid[2 * BB];
    TU_CHECK_EQ(kvt_read_contig(lease, 3, 2, mid, sizeof mid), 0);
    TU_CHECK(memcmp(mid, data[3], BB) == 0 && memcmp(mid + BB, data[4], BB) == 0);
    kvt_release(lease);

    /* Extension: only the new blocks are stored; cached ones are not overwritten even when
     * the caller passes other bytes for them. */
    const void **p2 = ptrs(data2, NBX);
    for (size_t i = NB; i < NBX; i++)
        memcpy(data2[i], data[i], BB); /* what must end up cached */
    tu_fill(&rng, data2, NB * BB);      /* different bytes for the cached blocks */
    kvt_stats s4 = tu_stats(e);
    TU_CHECK_EQ(kvt_put(ns, tok, NBX * BT + 3, p2, &stored), 0);
    TU_CHECK_EQ(stored, NBX - NB);
    kvt_stats s5 = tu_stats(e);
    TU_CHECK_EQ(s5.puts, s4.puts + 1);
    TU_CHECK_EQ(s5.blocks_stored, s4.blocks_stored + (NBX - NB));
    TU_CHECK_EQ(s5.bytes_written, s4.bytes_written + (uint64_t)(NBX - NB) * BB);
    TU_CHECK_EQ(s5.blocks_cached, NBX);
    TU_CHECK_EQ(s5.dram_used, (uint64_t)NBX * BB);
    TU_CHECK_EQ(kvt_match(ns, tok, NBX * BT + 3, &matched, &lease), 0);
    TU_CHECK_EQ(matched, NBX * BT);
    check_lease_bytes(lease, data, NBX);
    for (size_t i = 0; i < NBX; i++) {
        uint64_t k = 0;
        TU_CHECK_EQ(kvt_lease_block_key(lease, i, &k), 0);
        TU_CHECK_EQ(k, want_keys[i]);
    }
    kvt_release(lease);

    /* Putting it all again stores nothing and writes nothing. */
    kvt_stats s6 = tu_stats(e);
    TU_CHECK_EQ(kvt_put(ns, tok, NBX * BT, p2, &stored), 0);
    TU_CHECK_EQ(stored, 0);
    kvt_stats s7 = tu_stats(e);
    TU_CHECK_EQ(s7.puts, s6.puts + 1);
    TU_CHECK_EQ(s7.blocks_stored, s6.blocks_stored);
    TU_CHECK_EQ(s7.bytes_written, s6.bytes_written);
    TU_CHECK_EQ(s7.blocks_cached, NBX);

    /* Invariant 1: a query differing in one token of block k matches exactly k blocks,
     * wherever the token is in the block and however small the change. */
    uint64_t lookups = s7.lookups, hit = s7.hit_tokens, asked = s7.lookup_tokens;
    for (size_t k = 0; k < NBX; k++) {
        for (size_t pos = 0; pos < BT; pos++) {
            const uint32_t deltas[] = {1, 0x80000000u, 0x100u, (uint32_t)tu_next(&rng) | 1};
            for (size_t d = 0; d < sizeof deltas / sizeof deltas[0]; d++) {
                uint32_t q[NBX * BT];
                memcpy(q, tok, sizeof q);
                q[k * BT + pos] ^= deltas[d];
                TU_CHECK_EQ(kvt_match(ns, q, NBX * BT, &matched, NULL), 0);
                if (matched != k * BT) {
                    fprintf(stderr, "false hit: token %zu changed, matched %zu, want %zu\n",
                            k * BT + pos, matched, k * BT);
                    exit(1);
                }
                kvt_lease *ql = NULL;
                TU_CHECK_EQ(kvt_match(ns, q, NBX * BT, &matched, &ql), 0);
                TU_CHECK_EQ(matched, k * BT);
                lookups++;
                asked += NBX * BT;
                hit += k * BT;
                if (k == 0) {
                    TU_CHECK(ql == NULL);
                } else {
                    TU_CHECK_EQ(kvt_lease_blocks(ql), k);
                    if (pos == 0 && d == 0)
                        check_lease_bytes(ql, data, k);
                    kvt_release(ql);
                }
            }
        }
    }
    /* A query whose blocks are the cached blocks in another order: no hit past the first. */
    uint32_t sw[NBX * BT];
    memcpy(sw, tok, sizeof sw);
    memcpy(sw + BT, tok + 2 * BT, BT * sizeof *sw);
    memcpy(sw + 2 * BT, tok + BT, BT * sizeof *sw);
    TU_CHECK_EQ(kvt_match(ns, sw, NBX * BT, &matched, NULL), 0);
    TU_CHECK_EQ(matched, BT);
    /* A query that starts at block 1 of a cached sequence: no hit. */
    TU_CHECK_EQ(kvt_match(ns, tok + BT, (NBX - 1) * BT, &matched, NULL), 0);
    TU_CHECK_EQ(matched, 0);

    kvt_stats s8 = tu_stats(e);
    TU_CHECK_EQ(s8.lookups, lookups);
    TU_CHECK_EQ(s8.lookup_tokens, asked);
    TU_CHECK_EQ(s8.hit_tokens, hit);
    TU_CHECK_EQ(s8.leases_open, 0);
    TU_CHECK_EQ(s8.blocks_cached, NBX);
    TU_CHECK_EQ(s8.blocks_evicted, 0);

    free(p);
    free(p2);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* ---------------------------------------------------------------- lease-less matches */

/* A lease-less match neither pins nor refreshes: the block stays evictable and keeps its
 * place in LRU order. The same sequence with a lease does both. */
static void test_measure_only(void)
{
    kvt_layout l = small_layout();
    static unsigned char d[6][BB];
    tu_fill(&rng, d, sizeof d);
    const void *p[6] = {d[0], d[1], d[2], d[3], d[4], d[5]};
    uint32_t a[2 * BT], b[2 * BT], c[2 * BT], big[4 * BT];
    tu_fill_tokens(&rng, a, 2 * BT);
    tu_fill_tokens(&rng, b, 2 * BT);
    tu_fill_tokens(&rng, c, 2 * BT);
    tu_fill_tokens(&rng, big, 4 * BT);
    size_t m = 0, stored = 0;

    for (int with_lease = 0; with_lease < 2; with_lease++) {
        kvt_engine *e = open_engine(4);
        kvt_ns *ns = NULL;
        TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
        TU_CHECK_EQ(kvt_put(ns, a, 2 * BT, p, &stored), 0);
        TU_CHECK_EQ(stored, 2);
        TU_CHECK_EQ(kvt_put(ns, b, 2 * BT, p + 2, &stored), 0);
        TU_CHECK_EQ(stored, 2);
        /* a is the least recently used; refresh it only with a lease. */
        if (with_lease) {
            kvt_lease *ls = NULL;
            TU_CHECK_EQ(kvt_match(ns, a, 2 * BT, &m, &ls), 0);
            TU_CHECK_EQ(m, 2 * BT);
            kvt_release(ls);
        } else {
            TU_CHECK_EQ(kvt_match(ns, a, 2 * BT, &m, NULL), 0);
            TU_CHECK_EQ(m, 2 * BT);
        }
        TU_CHECK_EQ(tu_stats(e).leases_open, 0);
        TU_CHECK_EQ(kvt_put(ns, c, 2 * BT, p + 4, &stored), 0);
        TU_CHECK_EQ(stored, 2);
        TU_CHECK_EQ(tu_stats(e).blocks_evicted, 2);
        size_t ma, mb;
        TU_CHECK_EQ(kvt_match(ns, a, 2 * BT, &ma, NULL), 0);
        TU_CHECK_EQ(kvt_match(ns, b, 2 * BT, &mb, NULL), 0);
        if (with_lease) {
            TU_CHECK_EQ(ma, 2 * BT); /* refreshed: b was evicted */
            TU_CHECK_EQ(mb, 0);
        } else {
            TU_CHECK_EQ(ma, 0); /* not refreshed: a was evicted */
            TU_CHECK_EQ(mb, 2 * BT);
        }
        /* Lease-less match does not pin: a 4-block put can evict everything matched. */
        TU_CHECK_EQ(kvt_match(ns, c, 2 * BT, &m, NULL), 0);
        TU_CHECK_EQ(m, 2 * BT);
        TU_CHECK_EQ(kvt_put(ns, big, 4 * BT, p, &stored), 0);
        TU_CHECK_EQ(stored, 4);
        TU_CHECK_EQ(kvt_match(ns, c, 2 * BT, &m, NULL), 0);
        TU_CHECK_EQ(m, 0);
        kvt_stats s = tu_stats(e);
        TU_CHECK_EQ(s.blocks_cached, 4);
        TU_CHECK_EQ(s.blocks_evicted, 6);
        TU_CHECK_EQ(s.blocks_stored, 10);
        TU_CHECK_EQ(s.lookups, (uint64_t)with_lease);
        TU_CHECK_EQ(kvt_engine_close(e), 0);
    }
}

/* ---------------------------------------------------------------- multi-slot blocks */

/* A slot smaller than a block: each block spans several (chained) slots. The bytes must come
 * back exactly and dram_used counts whole slots. Layout of 3*2*4*5*7*1 = 840 bytes with
 * 256-byte slots: 4 slots per block. */
static void test_multislot(void)
{
    kvt_layout l = {.layers = 3, .kv_heads = 5, .head_dim = 7, .dtype = KVT_DTYPE_FP8,
                    .block_tokens = 4};
    const uint64_t bb = kvt_layout_block_bytes(&l);
    TU_CHECK_EQ(bb, 840);
    kvt_engine *e = tu_dram_engine(40 * 256, 256);
    kvt_ns *ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "odd", "t", &l, 0, &ns), 0);

    enum { N = 10 }; /* 10 blocks * 4 slots = the whole arena */
    uint32_t tok[N * 4];
    tu_fill_tokens(&rng, tok, N * 4);
    unsigned char *data = malloc(N * bb), *out = malloc(N * bb);
    TU_CHECK(data && out);
    tu_fill(&rng, data, N * bb);
    const void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = data + i * bb;
    size_t stored = 0, m = 0;
    TU_CHECK_EQ(kvt_put(ns, tok, N * 4, p, &stored), 0);
    TU_CHECK_EQ(stored, N);
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.dram_capacity, 40 * 256);
    TU_CHECK_EQ(s.dram_used, 40 * 256);
    TU_CHECK_EQ(s.blocks_cached, N);
    kvt_lease *ls = NULL;
    TU_CHECK_EQ(kvt_match(ns, tok, N * 4, &m, &ls), 0);
    TU_CHECK_EQ(m, N * 4);
    TU_CHECK_EQ(kvt_read_contig(ls, 0, N, out, N * bb), 0);
    TU_CHECK(memcmp(out, data, N * bb) == 0);
    TU_CHECK_EQ(kvt_read_contig(ls, 0, N, out, N * 1024), KVT_ESIZE); /* slot-rounded: wrong */
    kvt_release(ls);
    /* One more block evicts exactly one block (4 slots). */
    uint32_t t2[4];
    tu_fill_tokens(&rng, t2, 4);
    TU_CHECK_EQ(kvt_put(ns, t2, 4, p, &stored), 0);
    TU_CHECK_EQ(stored, 1);
    s = tu_stats(e);
    TU_CHECK_EQ(s.blocks_evicted, 1);
    TU_CHECK_EQ(s.blocks_cached, N);
    TU_CHECK_EQ(s.dram_used, 40 * 256);
    TU_CHECK_EQ(kvt_match(ns, tok, N * 4, &m, &ls), 0);
    TU_CHECK_EQ(m, (N - 1) * 4);
    TU_CHECK_EQ(kvt_read_contig(ls, 0, N - 1, out, (N - 1) * bb), 0);
    TU_CHECK(memcmp(out, data, (N - 1) * bb) == 0);
    kvt_release(ls);
    free(data);
    free(out);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* ---------------------------------------------------------------- fuzz vs reference */

/* Tokens from {0,1,2}: 81 distinct blocks, so sequences share prefixes and differ by one
 * token all the time. Block bytes are a function of the block's token prefix, so the model
 * needs no storage: block b of sequence s holds fill(seed = key chain of s[0..b]). */
#define FZ_OPS 3000
#define FZ_MAXB 6

typedef struct fz_seq {
    uint32_t tok[FZ_MAXB * BT];
    size_t nb;
} fz_seq;

static void block_bytes_for(const uint32_t *tok, size_t b, unsigned char *out)
{
    uint64_t k[FZ_MAXB];
    ref_keys(tok, b + 1, k);
    tu_rng r;
    tu_rng_init(&r, k[b] ^ 0x5eedull);
    tu_fill(&r, out, BB);
}

static size_t common_blocks(const uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb, i = 0;
    while (i < n && memcmp(a + i * BT, b + i * BT, BT * sizeof *a) == 0)
        i++;
    return i;
}

static void test_fuzz(void)
{
    kvt_engine *e = open_engine(FZ_OPS * FZ_MAXB); /* never evicts */
    kvt_layout l = small_layout();
    kvt_ns *ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "fuzz", "t", &l, 0, &ns), 0);
    fz_seq *model = calloc(FZ_OPS, sizeof *model);
    TU_CHECK(model);
    size_t n_model = 0;
    uint64_t cached = 0;
    static unsigned char blk[FZ_MAXB][BB], got[FZ_MAXB][BB];

    for (int op = 0; op < FZ_OPS; op++) {
        fz_seq q;
        q.nb = 1 + (size_t)tu_below(&rng, FZ_MAXB);
        size_t extra = (size_t)tu_below(&rng, BT);
        uint32_t tk[FZ_MAXB * BT + BT];
        if (n_model && tu_below(&rng, 2)) {
            /* Derive from a cached sequence: keep a prefix, then perturb. */
            const fz_seq *src = &model[tu_below(&rng, n_model)];
            memcpy(tk, src->tok, sizeof src->tok);
            for (size_t i = src->nb * BT; i < FZ_MAXB * BT; i++)
                tk[i] = (uint32_t)tu_below(&rng, 3);
            if (tu_below(&rng, 2))
                tk[tu_below(&rng, q.nb * BT)] = (uint32_t)tu_below(&rng, 3);
        } else {
            for (size_t i = 0; i < FZ_MAXB * BT; i++)
                tk[i] = (uint32_t)tu_below(&rng, 3);
        }
        for (size_t i = 0; i < BT; i++)
            tk[FZ_MAXB * BT + i] = 7;
        memcpy(q.tok, tk, sizeof q.tok);

        /* Expected match: longest common whole-block prefix with anything put. */
        size_t want = 0;
        for (size_t i = 0; i < n_model; i++) {
            size_t c = common_blocks(q.tok, q.nb, model[i].tok, model[i].nb);
            if (c > want)
                want = c;
        }
        size_t m = 99;
        kvt_lease *ls = NULL;
        TU_CHECK_EQ(kvt_match(ns, tk, q.nb * BT + extra, &m, &ls), 0);
        if (m != want * BT) {
            fprintf(stderr, "fuzz op %d: matched %zu tokens, model says %zu\n", op, m,
                    want * BT);
            exit(1);
        }
        if (want) {
            TU_CHECK(ls != NULL);
            TU_CHECK_EQ(kvt_read_contig(ls, 0, want, got, want * BB), 0);
            uint64_t keys[FZ_MAXB], k;
            ref_keys(tk, want, keys);
            for (size_t b = 0; b < want; b++) {
                block_bytes_for(tk, b, blk[b]);
                if (memcmp(got[b], blk[b], BB) != 0) {
                    fprintf(stderr, "fuzz op %d: block %zu content wrong\n", op, b);
                    exit(1);
                }
                TU_CHECK_EQ(kvt_lease_block_key(ls, b, &k), 0);
                TU_CHECK_EQ(k, keys[b]);
            }
        } else {
            TU_CHECK(ls == NULL);
        }

        if (tu_below(&rng, 4) != 0) {
            /* Put, passing NULL for the matched blocks (pinned by the lease) half the time. */
            const void *p[FZ_MAXB];
            for (size_t b = 0; b < q.nb; b++) {
                block_bytes_for(tk, b, blk[b]);
                p[b] = (b < want && tu_below(&rng, 2)) ? NULL : blk[b];
            }
            size_t stored = 99;
            TU_CHECK_EQ(kvt_put(ns, tk, q.nb * BT + extra, p, &stored), 0);
            TU_CHECK_EQ(stored, q.nb - want);
            cached += stored;
            model[n_model++] = q;
        }
        kvt_release(ls);
    }
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.blocks_cached, cached);
    TU_CHECK_EQ(s.blocks_stored, cached);
    TU_CHECK_EQ(s.blocks_evicted, 0);
    TU_CHECK_EQ(s.leases_open, 0);
    TU_CHECK_EQ(s.lookups, FZ_OPS);
    printf("fuzz: %zu sequences, %llu blocks\n", n_model, (unsigned long long)cached);
    free(model);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_roundtrip", 2));
    test_basic();
    test_measure_only();
    test_multislot();
    test_fuzz();
    printf("test_roundtrip: ok\n");
    return 0;
}
