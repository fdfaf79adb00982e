// ctest: labels=unit timeout=60
/*
 * test_belady.c — Belady's offline optimum and the LRU trace simulator (evict/belady.h):
 * hand-computed sequences, an exhaustive search over every admission/eviction choice on tiny
 * traces (the reference model that always tells the truth), Belady >= LRU on random traces,
 * out-of-memory injection, and a 10^7-access trace for speed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "evict/belady.h"
#include "testutil.h"
#include "util/util.h"

static size_t sum8(const uint8_t *h, size_t n)
{
    size_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += h[i];
    return s;
}

static void test_hand(void)
{
    /* The textbook trace, 3 slots:  1 2 3 4 1 2 5 1 2 3 4 5
     * Belady: 1 2 3 miss (admit); 4 miss: next uses 1@4 2@5 3@9 4@10, 4 is furthest: bypass;
     * 1 hit, 2 hit; 5 miss: 1@7 2@8 3@9 5@11: bypass; 1 hit, 2 hit, 3 hit; 4, 5 miss (never
     * used again: bypass). Hits at 4 5 7 8 9: 5 (demand-paging OPT also has 5, 7 faults).
     * LRU: 1 2 3 miss; 4 evicts 1; 1 evicts 2; 2 evicts 3; 5 evicts 4; 1 hit; 2 hit; 3 evicts 5;
     * 4 evicts 1; 5 evicts 2: 2 hits. */
    const uint64_t t[12] = {1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5};
    const uint8_t want[12] = {0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0};
    uint8_t h[12];
    size_t hits = 99;
    TU_CHECK_EQ(evict_belady_hits(t, 12, 3, h, &hits), 0);
    TU_CHECK_EQ(hits, 5);
    TU_CHECK(!memcmp(h, want, 12));
    TU_CHECK_EQ(evict_lru_trace_hits(t, 12, 3, h, &hits), 0);
    TU_CHECK_EQ(hits, 2);
    TU_CHECK_EQ(sum8(h, 12), 2);
    TU_CHECK(h[7] && h[8]);
    /* 4 slots: Belady misses only the 5 first touches... and 4@10? 1 2 3 4 miss; 5 evicts 4
     * (next 4@10 is furthest) -> 1 2 hit... hits at 4 5 7 8 9 11: 6. */
    TU_CHECK_EQ(evict_belady_hits(t, 12, 4, NULL, &hits), 0);
    TU_CHECK_EQ(hits, 6);

    /* Bypass matters: a b a with one slot. Demand paging must admit b (evicting a): 0 hits.
     * A KV cache may decline b: a hits. */
    const uint64_t aba[3] = {7, 8, 7};
    TU_CHECK_EQ(evict_belady_hits(aba, 3, 1, h, &hits), 0);
    TU_CHECK_EQ(hits, 1);
    TU_CHECK(h[2] && !h[0] && !h[1]);
    TU_CHECK_EQ(evict_lru_trace_hits(aba, 3, 1, NULL, &hits), 0);
    TU_CHECK_EQ(hits, 0);

    /* Edges: empty trace, zero capacity, capacity >= distinct (hits = n - distinct), ids
     * 0 and UINT64_MAX. */
    TU_CHECK_EQ(evict_belady_hits(NULL, 0, 4, NULL, &hits), 0);
    TU_CHECK_EQ(hits, 0);
    TU_CHECK_EQ(evict_belady_hits(t, 12, 0, h, &hits), 0);
    TU_CHECK_EQ(hits, 0);
    TU_CHECK_EQ(sum8(h, 12), 0);
    TU_CHECK_EQ(evict_lru_trace_hits(t, 12, 0, NULL, &hits), 0);
    TU_CHECK_EQ(hits, 0);
    TU_CHECK_EQ(evict_belady_hits(t, 12, 100, NULL, &hits), 0);
    TU_CHECK_EQ(hits, 7);
    TU_CHECK_EQ(evict_lru_trace_hits(t, 12, 5, NULL, &hits), 0);
    TU_CHECK_EQ(hits, 7);
    const uint64_t ext[5] = {0, UINT64_MAX, 0, UINT64_MAX, 0};
    TU_CHECK_EQ(evict_belady_hits(ext, 5, 1, NULL, &hits), 0);
    TU_CHECK_EQ(hits, 2); /* keep 0: hits at 2 and 4 */
    TU_CHECK_EQ(evict_belady_hits(NULL, 3, 1, NULL, &hits), -EINVAL);
    TU_CHECK_EQ(evict_belady_hits(t, 12, 1, NULL, NULL), -EINVAL);
    TU_CHECK_EQ(evict_lru_trace_hits(t, 12, 1, NULL, NULL), -EINVAL);
}

/* ---------------------------------------------------------------- exhaustive reference
 * Every choice a cache may make on a miss: bypass, admit into a free slot, or admit evicting
 * any cached block. Returns the most hits from access i on. */
static size_t brute(const uint64_t *t, size_t n, size_t i, uint64_t *cache, size_t len,
                    size_t cap)
{
    if (i == n)
        return 0;
    for (size_t j = 0; j < len; j++)
        if (cache[j] == t[i])
            return 1 + brute(t, n, i + 1, cache, len, cap);
    size_t best = brute(t, n, i + 1, cache, len, cap); /* bypass */
    if (len < cap) {
        cache[len] = t[i];
        size_t h = brute(t, n, i + 1, cache, len + 1, cap);
        best = h > best ? h : best;
    } else {
        for (size_t j = 0; j < len; j++) {
            uint64_t old = cache[j];
            cache[j] = t[i];
            size_t h = brute(t, n, i + 1, cache, len, cap);
            best = h > best ? h : best;
            cache[j] = old;
        }
    }
    return best;
}

static void test_vs_brute(tu_rng *r)
{
    for (int it = 0; it < 3000; it++) {
        uint64_t t[10], cache[4];
        uint8_t h[10];
        size_t n = 1 + (size_t)tu_below(r, 10), cap = (size_t)tu_below(r, 4);
        uint64_t alphabet = 1 + tu_below(r, 6);
        for (size_t i = 0; i < n; i++)
            t[i] = tu_below(r, alphabet) * 0x9e3779b97f4a7c15ull; /* spread ids */
        size_t hits, lru, want = brute(t, n, 0, cache, 0, cap);
        TU_CHECK_EQ(evict_belady_hits(t, n, cap, h, &hits), 0);
        if (hits != want) {
            fprintf(stderr, "it %d n %zu cap %zu: belady %zu, optimum %zu; trace:", it, n, cap,
                    hits, want);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %llu", (unsigned long long)(t[i] % 1000));
            fputc('\n', stderr);
            exit(1);
        }
        TU_CHECK_EQ(sum8(h, n), hits);
        TU_CHECK_EQ(evict_lru_trace_hits(t, n, cap, NULL, &lru), 0);
        TU_CHECK(lru <= hits);
    }
}

/* A skewed trace: id = below(below(universe) + 1), so small ids are hot. */
static void skewed(tu_rng *r, uint64_t *t, size_t n, uint64_t universe)
{
    for (size_t i = 0; i < n; i++)
        t[i] = tu_below(r, tu_below(r, universe) + 1);
}

/* A reference LRU: an array ordered by recency, O(n · capacity). */
static size_t lru_ref(const uint64_t *t, size_t n, size_t cap)
{
    uint64_t *c = util_malloc((cap + 1) * sizeof *c);
    size_t len = 0, hits = 0;
    TU_CHECK(c);
    for (size_t i = 0; i < n; i++) {
        size_t j;
        for (j = 0; j < len && c[j] != t[i]; j++)
            ;
        if (j < len) {
            hits++;
            memmove(&c[1], &c[0], j * sizeof *c);
        } else if (cap) {
            if (len < cap)
                len++;
            memmove(&c[1], &c[0], (len - 1) * sizeof *c);
        } else {
            continue;
        }
        c[0] = t[i];
    }
    util_free(c);
    return hits;
}

static void test_random_traces(tu_rng *r)
{
    enum { N = 4000 };
    static uint64_t t[N];
    static uint8_t h[N];
    for (int it = 0; it < 200; it++) {
        size_t n = 1 + (size_t)tu_below(r, N), cap = (size_t)tu_below(r, 64);
        skewed(r, t, n, 1 + tu_below(r, 500));
        size_t b, l;
        TU_CHECK_EQ(evict_belady_hits(t, n, cap, h, &b), 0);
        TU_CHECK_EQ(sum8(h, n), b);
        TU_CHECK_EQ(evict_lru_trace_hits(t, n, cap, h, &l), 0);
        TU_CHECK_EQ(sum8(h, n), l);
        TU_CHECK_EQ(l, lru_ref(t, n, cap));
        TU_CHECK(b >= l);
        /* more room never hurts the optimum */
        size_t b2;
        TU_CHECK_EQ(evict_belady_hits(t, n, cap + 1, NULL, &b2), 0);
        TU_CHECK(b2 >= b);
    }
}

static void test_oom(tu_rng *r)
{
    enum { N = 5000 };
    static uint64_t t[N];
    skewed(r, t, N, 3000); /* > 1,024 distinct ids: the hash table grows */
    size_t want_b, want_l, hits;
    TU_CHECK_EQ(evict_belady_hits(t, N, 100, NULL, &want_b), 0);
    TU_CHECK_EQ(evict_lru_trace_hits(t, N, 100, NULL, &want_l), 0);
    for (long k = 0; k < 40; k++) {
        hits = 12345;
        util_alloc_fail_after(k);
        int rc = evict_belady_hits(t, N, 100, NULL, &hits);
        util_alloc_fail_after(-1);
        TU_CHECK(rc == 0 || rc == -ENOMEM);
        TU_CHECK_EQ(hits, rc ? 12345 : want_b);
        util_alloc_fail_after(k);
        rc = evict_lru_trace_hits(t, N, 100, NULL, &hits);
        util_alloc_fail_after(-1);
        TU_CHECK(rc == 0 || rc == -ENOMEM);
        TU_CHECK_EQ(hits, rc ? 12345 : want_l);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* 10^7 accesses over ~10^6 ids, 10^5 slots: O(n log n) must finish in seconds (2.7 s
 * Belady + 1.9 s LRU at -O2 on the 2-core development machine; 2·10^6 under ASan, which
 * runs it ~4x slower). */
#if defined(__SANITIZE_ADDRESS__)
#define LARGE_N 2000000
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LARGE_N 2000000
#endif
#endif
#ifndef LARGE_N
#define LARGE_N 10000000
#endif

static void test_large(tu_rng *r)
{
    const size_t n = LARGE_N;
    uint64_t *t = util_malloc(n * sizeof *t);
    size_t b, l;
    TU_CHECK(t);
    skewed(r, t, n, 1000000);
    double t0 = now_s();
    TU_CHECK_EQ(evict_belady_hits(t, n, 100000, NULL, &b), 0);
    double t1 = now_s();
    TU_CHECK_EQ(evict_lru_trace_hits(t, n, 100000, NULL, &l), 0);
    double t2 = now_s();
    printf("large: n=%zu capacity=100000 belady %zu hits (%.2f s), lru %zu hits (%.2f s)\n", n,
           b, t1 - t0, l, t2 - t1);
    TU_CHECK(b >= l);
    util_free(t);
}

int main(void)
{
    tu_rng r;
    tu_rng_init(&r, tu_seed("test_belady", 7));
    test_hand();
    test_vs_brute(&r);
    test_random_traces(&r);
    test_oom(&r);
    test_large(&r);
    printf("test_belady: ok\n");
    return 0;
}
