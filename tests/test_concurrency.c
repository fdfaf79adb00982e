// ctest: labels=unit;concurrency timeout=120
/*
 * test_concurrency — 4 threads for ~2 s of random match / read / release / put on shared
 * prefixes in a small cache (24 blocks) under constant eviction pressure, in three
 * namespaces of two tenants with quotas.
 *
 * Every block's bytes are a function of (namespace, token prefix), so every read is checked
 * exactly: a torn, stale, overwritten or foreign block fails the test (invariants 1, 3, 4,
 * 5). Leases are sometimes held across other operations and re-read later (a pinned block
 * must not change). At the end: counters agree with what the threads did, every cached
 * block is reachable and correct, leases_open is 0, quotas held, close succeeds.
 *
 * Blocks of 512 bytes (layers 2, kv_heads 2, head_dim 8, fp16, block_tokens 4), slot = block.
 * KVT_CONC_MS overrides the run time (milliseconds).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define BT 4u
#define BB 512u
#define CAP 24u
#define QUOTA 12u
#define NTHREADS 4
#define NNS 3
#define POOL 32
#define MAXB 6
#define HOLD 2

static const char *ns_name[NNS] = {"m", "m", "m2"};
static const char *ns_tenant[NNS] = {"t0", "t1", "t0"};

static kvt_engine *eng;
static kvt_ns *ns_main[NNS];
static uint32_t pool[POOL][MAXB * BT];
static size_t pool_nb[POOL];
static uint64_t run_ns;
static atomic_int go;

static kvt_layout small_layout(void) { return tu_layout(2, 2, 8, KVT_DTYPE_FP16, BT); }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The bytes of block b of tokens tok in namespace n. */
static void block_bytes(int n, const uint32_t *tok, size_t b, unsigned char *out)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(n + 1) * 0x9e3779b97f4a7c15ull;
    for (size_t t = 0; t < (b + 1) * BT; t++)
        h = (h ^ tok[t]) * 1099511628211ull;
    tu_rng r;
    tu_rng_init(&r, h);
    tu_fill(&r, out, BB);
}

typedef struct held {
    kvt_lease *lease;
    int n;
    const uint32_t *tok;
    size_t blocks;
} held;

typedef struct worker {
    int id;
    pthread_t th;
    tu_rng rng;
    kvt_ns *ns[NNS]; /* as this thread opened them */
    uint64_t lookups, puts, bytes_read, stored, enospc, reads, hits;
    held hold[HOLD];
    int failed;
    char why[256];
} worker;

#define W_CHECK(w, c)                                                                      \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            snprintf((w)->why, sizeof (w)->why, "%s:%d: %s", __FILE__, __LINE__, #c);      \
            (w)->failed = 1;                                                               \
            return -1;                                                                     \
        }                                                                                  \
    } while (0)

/* Read blocks [first, first+n) of a lease one of three ways and check every byte. */
static int verify_lease(worker *w, kvt_lease *l, int n_ns, const uint32_t *tok, size_t first,
                        size_t n)
{
    unsigned char buf[MAXB][BB], want[BB];
    int how = (int)tu_below(&w->rng, 3);
    if (how == 0) {
        W_CHECK(w, kvt_read_contig(l, first, n, buf, n * BB) == 0);
    } else if (how == 1) {
        void *dst[MAXB];
        for (size_t i = 0; i < n; i++)
            dst[i] = buf[n - 1 - i]; /* scattered, reversed */
        W_CHECK(w, kvt_read(l, first, n, dst) == 0);
        unsigned char tmp[MAXB][BB];
        for (size_t i = 0; i < n; i++)
            memcpy(tmp[i], buf[n - 1 - i], BB);
        memcpy(buf, tmp, n * BB);
    } else {
        for (size_t i = 0; i < n; i++) {
            void *d = buf[i];
            W_CHECK(w, kvt_read(l, first + i, 1, &d) == 0);
        }
    }
    w->bytes_read += n * BB;
    w->reads++;
    for (size_t i = 0; i < n; i++) {
        block_bytes(n_ns, tok, first + i, want);
        if (memcmp(buf[i], want, BB) != 0) {
            snprintf(w->why, sizeof w->why, "ns %d: block %zu: wrong bytes (torn/stale/foreign)",
                     n_ns, first + i);
            w->failed = 1;
            return -1;
        }
    }
    return 0;
}

static int put_seq(worker *w, int n, const uint32_t *tok, size_t nb, size_t have)
{
    unsigned char data[MAXB][BB];
    const void *p[MAXB];
    for (size_t b = 0; b < nb; b++) {
        if (b < have) {
            p[b] = NULL; /* pinned by a lease this thread holds */
        } else {
            block_bytes(n, tok, b, data[b]);
            p[b] = data[b];
        }
    }
    size_t stored = 999;
    int rc = kvt_put(w->ns[n], tok, nb * BT, p, &stored);
    w->puts++;
    if (rc == -ENOSPC) {
        w->enospc++;
    } else if (rc != 0) {
        snprintf(w->why, sizeof w->why, "put: rc %d (%s)", rc, kvt_strerror(rc));
        w->failed = 1;
        return -1;
    }
    W_CHECK(w, stored <= nb - have);
    w->stored += stored;
    return 0;
}

static int one_op(worker *w)
{
    int n = (int)tu_below(&w->rng, NNS);
    size_t pi = (size_t)tu_below(&w->rng, POOL);
    const uint32_t *tok = pool[pi];
    size_t nb = 1 + (size_t)tu_below(&w->rng, pool_nb[pi]);
    size_t extra = (size_t)tu_below(&w->rng, BT);
    int op = (int)tu_below(&w->rng, 10);
    size_t m = 999;

    if (op == 0) { /* measure only */
        W_CHECK(w, kvt_match(w->ns[n], tok, nb * BT + extra, &m, NULL) == 0);
        W_CHECK(w, m % BT == 0 && m <= nb * BT);
        return 0;
    }
    if (op == 1) { /* put everything, no lease */
        return put_seq(w, n, tok, nb, 0);
    }
    if (op == 2) { /* re-read a held lease, or drop it */
        held *h = &w->hold[tu_below(&w->rng, HOLD)];
        if (!h->lease)
            return 0;
        if (verify_lease(w, h->lease, h->n, h->tok, 0, h->blocks))
            return -1;
        if (tu_below(&w->rng, 2)) {
            kvt_release(h->lease);
            h->lease = NULL;
        }
        return 0;
    }
    /* match with a lease, read, maybe put the rest, release or hold */
    kvt_lease *l = NULL;
    W_CHECK(w, kvt_match(w->ns[n], tok, nb * BT + extra, &m, &l) == 0);
    w->lookups++;
    W_CHECK(w, m % BT == 0 && m <= nb * BT);
    size_t have = m / BT;
    W_CHECK(w, (have == 0) == (l == NULL));
    if (l) {
        w->hits++;
        W_CHECK(w, kvt_lease_blocks(l) == have);
        W_CHECK(w, kvt_lease_tokens(l) == m);
        uint64_t keys[MAXB], k = 0;
        W_CHECK(w, kvt_block_keys(w->ns[n], tok, m, keys) == 0);
        size_t kb = (size_t)tu_below(&w->rng, have);
        W_CHECK(w, kvt_lease_block_key(l, kb, &k) == 0);
        W_CHECK(w, k == keys[kb]);
        size_t first = (size_t)tu_below(&w->rng, have);
        size_t cnt = 1 + (size_t)tu_below(&w->rng, have - first);
        if (verify_lease(w, l, n, tok, first, cnt))
            return -1;
    }
    if (op >= 6 && have < nb && put_seq(w, n, tok, nb, have))
        return -1;
    if (l && op == 9) {
        held *h = &w->hold[tu_below(&w->rng, HOLD)];
        if (h->lease)
            kvt_release(h->lease);
        h->lease = l;
        h->n = n;
        h->tok = tok;
        h->blocks = have;
        return 0;
    }
    kvt_release(l);
    return 0;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    kvt_layout lay = small_layout();
    while (!atomic_load(&go))
        ;
    /* All threads open the same namespaces at once: each gets the one handle. */
    for (int n = 0; n < NNS; n++) {
        int rc = kvt_ns_open(eng, ns_name[n], ns_tenant[n], &lay, 0, &w->ns[n]);
        if (rc) {
            snprintf(w->why, sizeof w->why, "ns_open: %d", rc);
            w->failed = 1;
            return NULL;
        }
    }
    uint64_t end = now_ns() + run_ns;
    uint64_t ops = 0;
    while (!w->failed) {
        if (one_op(w))
            break;
        if ((++ops & 15) == 0 && now_ns() > end)
            break;
    }
    for (int i = 0; i < HOLD; i++) {
        if (w->hold[i].lease && !w->failed)
            verify_lease(w, w->hold[i].lease, w->hold[i].n, w->hold[i].tok, 0,
                         w->hold[i].blocks);
        kvt_release(w->hold[i].lease);
        w->hold[i].lease = NULL;
    }
    return NULL;
}

int main(void)
{
    uint64_t seed = tu_seed("test_concurrency", 7);
    tu_rng rng;
    tu_rng_init(&rng, seed);
    const char *ms = getenv("KVT_CONC_MS");
    run_ns = (uint64_t)(ms && *ms ? strtoull(ms, NULL, 0) : 2000) * 1000000ull;

    /* Sequences over tokens {0,1,2}: shared prefixes and one-token differences. */
    for (size_t i = 0; i < POOL; i++) {
        pool_nb[i] = 1 + (size_t)tu_below(&rng, MAXB);
        if (i && tu_below(&rng, 3)) {
            memcpy(pool[i], pool[tu_below(&rng, i)], sizeof pool[i]);
            for (size_t t = (size_t)tu_below(&rng, MAXB * BT); t < MAXB * BT; t++)
                pool[i][t] = (uint32_t)tu_below(&rng, 3);
        } else {
            for (size_t t = 0; t < MAXB * BT; t++)
                pool[i][t] = (uint32_t)tu_below(&rng, 3);
        }
    }

    eng = tu_dram_engine(CAP * BB, BB);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(eng, "t0", QUOTA * BB), 0);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(eng, "t1", QUOTA * BB), 0);

    static worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i].id = i;
        tu_rng_init(&w[i].rng, seed * 1000003ull + (uint64_t)i);
        TU_CHECK_EQ(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
    }
    atomic_store(&go, 1);
    int failed = 0;
    uint64_t lookups = 0, puts = 0, bytes_read = 0, stored = 0, enospc = 0, reads = 0, hits = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(w[i].th, NULL);
        if (w[i].failed) {
            fprintf(stderr, "thread %d: %s\n", i, w[i].why);
            failed = 1;
        }
        lookups += w[i].lookups;
        puts += w[i].puts;
        bytes_read += w[i].bytes_read;
        stored += w[i].stored;
        enospc += w[i].enospc;
        reads += w[i].reads;
        hits += w[i].hits;
    }
    if (failed)
        return 1;
    printf("lookups %llu (hits %llu), reads %llu, puts %llu (-ENOSPC %llu), stored %llu\n",
           (unsigned long long)lookups, (unsigned long long)hits, (unsigned long long)reads,
           (unsigned long long)puts, (unsigned long long)enospc, (unsigned long long)stored);

    kvt_layout lay = small_layout();
    for (int n = 0; n < NNS; n++) {
        TU_CHECK_EQ(kvt_ns_open(eng, ns_name[n], ns_tenant[n], &lay, 0, &ns_main[n]), 0);
        for (int i = 0; i < NTHREADS; i++)
            TU_CHECK(w[i].ns[n] == ns_main[n]);
    }
    TU_CHECK(ns_main[0] != ns_main[1] && ns_main[0] != ns_main[2] && ns_main[1] != ns_main[2]);

    kvt_stats s = tu_stats(eng);
    TU_CHECK_EQ(s.leases_open, 0);
    TU_CHECK_EQ(s.namespaces, NNS);
    TU_CHECK_EQ(s.lookups, lookups);
    TU_CHECK_EQ(s.puts, puts);
    TU_CHECK_EQ(s.bytes_read, bytes_read);
    TU_CHECK_EQ(s.blocks_stored, stored);
    TU_CHECK_EQ(s.bytes_written, stored * BB);
    TU_CHECK_EQ(s.blocks_cached, s.blocks_stored - s.blocks_evicted);
    TU_CHECK(s.blocks_cached <= CAP);
    TU_CHECK_EQ(s.dram_used, s.blocks_cached * BB);
    TU_CHECK_EQ(s.dram_capacity, CAP * BB);
    TU_CHECK(hits > 100 && s.blocks_evicted > 100); /* the run did share and evict */

    /* Every cached block is reachable from the pool (nothing else was ever put), holds the
     * right bytes, and each tenant stays within its quota. */
    uint64_t reach[NNS] = {0};
    for (int n = 0; n < NNS; n++) {
        size_t len[POOL];
        for (size_t i = 0; i < POOL; i++) {
            size_t m = 0;
            kvt_lease *l = NULL;
            TU_CHECK_EQ(kvt_match(ns_main[n], pool[i], pool_nb[i] * BT, &m, &l), 0);
            len[i] = m / BT;
            if (l) {
                worker v;
                memset(&v, 0, sizeof v);
                tu_rng_init(&v.rng, 1);
                if (verify_lease(&v, l, n, pool[i], 0, len[i])) {
                    fprintf(stderr, "final check: ns %d pool %zu: %s\n", n, i, v.why);
                    return 1;
                }
                kvt_release(l);
            }
            /* Count blocks not already counted for an earlier sequence with that prefix. */
            for (size_t b = 0; b < len[i]; b++) {
                int seen = 0;
                for (size_t j = 0; j < i && !seen; j++)
                    seen = b < len[j] && memcmp(pool[j], pool[i], (b + 1) * BT * 4) == 0;
                reach[n] += !seen;
            }
        }
    }
    TU_CHECK_EQ(reach[0] + reach[1] + reach[2], s.blocks_cached);
    TU_CHECK(reach[0] + reach[2] <= QUOTA);
    TU_CHECK(reach[1] <= QUOTA);
    TU_CHECK_EQ(kvt_engine_close(eng), 0);
    printf("test_concurrency: ok\n");
    return 0;
}
