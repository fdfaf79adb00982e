/*
 * test_analyze.c — `kvtier analyze` on small hand-built traces whose hit rates, per-tier
 * splits and miss classes are computed by hand below (block size 4 tokens throughout), for
 * each policy the analysis reports: lru, lfu and drain (the engine), the Belady bound, flat
 * LRU over block ids, infinite capacity; a DRAM + nvme split; the Mooncake fast path against
 * jansson; plus TTL expiry, tenants and the "other namespace" class, token
 * traces, access logs, the multi-node simulation, malformed lines, and the program's JSON and
 * HTML output. Exit 0 pass, 1 fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "an.h"
#include "analyze.h"

#define CHECK(c)                                                                           \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);          \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)
#define CHECK_EQ(a, b)                                                                     \
    do {                                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                                \
        if (a_ != b_) {                                                                    \
            fprintf(stderr, "%s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, \
                    a_, b_);                                                               \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)
#define CHECK_NEAR(a, b) CHECK(fabs((double)(a) - (double)(b)) < 1e-9)

static char dir[512];

static const char *write_file(const char *name, const char *text)
{
    static char path[4][640];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CHECK(f);
    fputs(text, f);
    CHECK(fclose(f) == 0);
    return p;
}

static void load(const char *path, uint32_t bt, an_trace *t)
{
    an_load_opts o = {.format = AN_FMT_AUTO, .block_tokens = bt, .errs = stderr};
    CHECK_EQ(an_trace_load(path, &o, t), 0);
}

static an_config config(uint64_t dram_blocks, uint32_t bt)
{
    an_config c = {.policy = AN_POL_LRU, .ttl_ms = -1, .seed = 1, .top = 5, .sweep_points = 4};
    CHECK_EQ(an_model_lookup("llama3-8b", &c.model), 0);
    c.cap[AN_DRAM] = dram_blocks * an_block_bytes(&c, bt);
    return c;
}

/*
 * Trace A (Mooncake format, 4 tokens per block; "3p" marks a partial final block):
 *   r1 t=0   [1 2 3p]    10 tokens      r4 t=3s  [1 2 4 6p]  14 tokens
 *   r2 t=1s  [1 2 4]     12 tokens      r5 t=4s  [1 2 3p]    10 tokens
 *   r3 t=2s  [1 5]        8 tokens
 * 54 input tokens, 15 blocks (3 partial, never cached).
 */
static const char *trace_a =
    "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 5, \"hash_ids\": [1, 2, 3]}\n"
    "{\"timestamp\": 1000, \"input_length\": 12, \"output_length\": 5, \"hash_ids\": [1, 2, 4]}\n"
    "\n"
    "{\"timestamp\": 2000, \"input_length\": 8, \"output_length\": 5, \"hash_ids\": [1, 5]}\n"
    "{\"timestamp\": 3000, \"input_length\": 14, \"output_length\": 5, \"hash_ids\": [1, 2, 4, 6]}\n"
    "{\"timestamp\": 4000, \"input_length\": 10, \"output_length\": 5, \"hash_ids\": [1, 2, 3]}\n";

/*
 * Capacity 3 blocks, LRU (leaf-first, the engine's):
 *   r1  miss 1,2 (first use), 3p partial; store 1,2                       cached {1,2}
 *   r2  hit 1,2 (8 tokens); 4 first use; store 4                          cached {1,2,4}
 *   r3  hit 1 (4); 5 first use; store 5 evicting leaf 4 (2 has a child)    cached {1,2,5}
 *   r4  hit 1,2 (8); 4 evicted for capacity; 6p partial; store 4 evicting
 *       leaf 5 (leaf 2 is pinned by the request's lease)                  cached {1,2,4}
 *   r5  hit 1,2 (8); 3p partial
 * hits 28 tokens / 7 blocks; first use 4 blocks (16 tokens); capacity 1 (4); partial 3 (6).
 * Infinite capacity: r2 1,2; r3 1; r4 1,2,4; r5 1,2 = 32 tokens, 8 blocks.
 * Belady, 3 blocks, over the whole-block ids 1 2 | 1 2 4 | 1 5 | 1 2 4 | 1 2: bypasses 5
 * (never reused) and hits everything else seen before: 8 hits = 32 tokens.
 * Flat LRU, 3 blocks: 1m 2m 1h 2h 4m 1h 5m(evicts 2) 1h 2m(evicts 4) 4m(evicts 5) 1h 2h = 6
 * hits = 24 tokens: below the engine's 28, which keeps the prefix's inner nodes.
 */
static void test_trace_a_cap3(void)
{
    an_trace t;
    an_result r;
    load(write_file("a.jsonl", trace_a), 4, &t);
    CHECK_EQ(t.format, AN_FMT_MOONCAKE);
    CHECK_EQ(t.n_req, 5);
    CHECK_EQ(t.bad_lines, 0);
    an_config c = config(3, 4);
    CHECK_EQ(an_replay(&t, &c, &r, NULL), 0);
    CHECK_EQ(r.cap_blocks[AN_DRAM], 3);
    CHECK_EQ(r.total.requests, 5);
    CHECK_EQ(r.total.input_tokens, 54);
    CHECK_EQ(r.total.blocks, 15);
    CHECK_EQ(r.total.hit_tokens, 28);
    CHECK_EQ(r.total.hit_blocks, 7);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_FIRST], 4);
    CHECK_EQ(r.total.miss_tokens[AN_MISS_FIRST], 16);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_CAPACITY], 1);
    CHECK_EQ(r.total.miss_tokens[AN_MISS_CAPACITY], 4);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_PARTIAL], 3);
    CHECK_EQ(r.total.miss_tokens[AN_MISS_PARTIAL], 6);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_TTL], 0);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_OTHER_NS], 0);
    /* per tier: no nvme/disk configured, so every hit is a DRAM hit */
    CHECK_EQ(r.tier_hit_blocks[AN_DRAM], 7);
    CHECK_EQ(r.tier_hit_tokens[AN_DRAM], 28);
    CHECK_EQ(r.tier_hit_blocks[AN_HBM] + r.tier_hit_blocks[AN_NVME] + r.tier_hit_blocks[AN_DISK], 0);
    CHECK_EQ(r.inf_hit_tokens, 32);
    CHECK_EQ(r.inf_hit_blocks, 8);
    /* stored: r1 2, r2 1, r3 1, r4 1 = 5; evicted 4 and 5 */
    CHECK_EQ(r.stored_blocks, 5);
    CHECK_EQ(r.evicted_blocks, 2);
    CHECK_EQ(r.write_bytes, 5 * an_block_bytes(&c, 4));
    CHECK_EQ(r.put_nospace, 0);
    /* reuses: every access of a whole block requested before: r2 1,2; r3 1; r4 1,2,4; r5 1,2 */
    CHECK_EQ(r.reuse_n, 8);
    /* the most shared prefix by tokens saved: [1 2] used 4 times (3 reuses x 8 tokens = 24) */
    CHECK(r.n_top >= 1);
    CHECK_EQ(r.top[0].key, 2);
    CHECK_EQ(r.top[0].uses, 4);
    CHECK_EQ(r.top[0].depth, 2);
    /* modeled time: the cache never makes prefill slower (the plan may decline to load) */
    CHECK(r.prefill_cache_s <= r.prefill_all_s);
    CHECK(r.compute_saved_s > 0);

    an_sweep sw;
    CHECK_EQ(an_sweep_run(&t, &c, 3, &sw, NULL), 0);
    CHECK_EQ(sw.distinct_blocks, 4); /* 1 2 4 5 (3p and 6p are partial) */
    CHECK_NEAR(sw.inf_hit_rate, 32.0 / 54);
    int seen3 = 0;
    for (size_t i = 0; i < sw.n; i++) {
        const an_sweep_point *p = &sw.pt[i];
        /* issue 4: lfu and drain run in the engine now (NAN meant "not in engine yet");
         * in the tiny-layout fallback only lru does. Belady bounds every policy. */
        for (int pol = 0; pol < AN_POL_N; pol++) {
            CHECK(isnan(p->hit_rate[pol]) == !an_policy_in_engine((an_policy)pol));
            if (an_policy_in_engine((an_policy)pol))
                CHECK(p->belady + 1e-12 >= p->hit_rate[pol]);
        }
        CHECK(p->belady <= sw.inf_hit_rate + 1e-12);
        if (i)
            CHECK(p->cap_blocks > sw.pt[i - 1].cap_blocks);
        if (p->cap_blocks == 3) {
            seen3 = 1;
            CHECK_NEAR(p->hit_rate[AN_POL_LRU], 28.0 / 54);
            CHECK_NEAR(p->belady, 32.0 / 54);
            CHECK_NEAR(p->lru_flat, 24.0 / 54);
        }
    }
    CHECK(seen3);
    CHECK_NEAR(sw.pt[sw.n - 1].hit_rate[AN_POL_LRU], 32.0 / 54); /* capacity = distinct */
    for (int pol = 0; pol < AN_POL_N; pol++) /* every policy: nothing evicted, all hit */
        if (an_policy_in_engine((an_policy)pol))
            CHECK_NEAR(sw.pt[sw.n - 1].hit_rate[pol], 32.0 / 54);
    an_sweep_free(&sw);
    an_result_free(&r);
    an_trace_free(&t);
}

/*
 * Trace P (Mooncake format, 4 tokens per block, every request one whole block; 28 tokens):
 *   r1 t=0 A   r2 t=1s A   r3 t=2s A   r4 t=3s B   r5 t=4s C   r6 t=5s A   r7 t=6s B
 * Each key is its own root node (a leaf), so a victim is always a whole request's block.
 * Infinite capacity: r2 r3 r6 r7 hit = 4 blocks, 16 tokens. First use: A, B, C = 3 blocks.
 */
static const char *trace_p =
    "{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [10]}\n"
    "{\"timestamp\": 1000, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [10]}\n"
    "{\"timestamp\": 2000, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [10]}\n"
    "{\"timestamp\": 3000, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [11]}\n"
    "{\"timestamp\": 4000, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [12]}\n"
    "{\"timestamp\": 5000, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [10]}\n"
    "{\"timestamp\": 6000, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [11]}\n";

static void policy_run(const an_trace *t, an_policy pol, uint64_t dram, uint64_t nvme,
                       an_result *r)
{
    an_config c = config(dram, 4);
    c.policy = pol;
    c.cap[AN_NVME] = nvme * an_block_bytes(&c, 4);
    CHECK_EQ(an_replay(t, &c, r, NULL), 0);
    CHECK_EQ(r->total.requests, 7);
    CHECK_EQ(r->total.input_tokens, 28);
    CHECK_EQ(r->total.blocks, 7);
    CHECK_EQ(r->inf_hit_blocks, 4);
    CHECK_EQ(r->inf_hit_tokens, 16);
    CHECK_EQ(r->total.miss_blocks[AN_MISS_FIRST], 3);
    CHECK_EQ(r->total.miss_tokens[AN_MISS_FIRST], 12);
    CHECK_EQ(r->total.miss_blocks[AN_MISS_PARTIAL] + r->total.miss_blocks[AN_MISS_TTL] +
                 r->total.miss_blocks[AN_MISS_OTHER_NS], 0);
    /* every block is a hit or exactly one miss class */
    uint64_t m = 0;
    for (int k = 0; k < AN_MISS_N; k++)
        m += r->total.miss_blocks[k];
    CHECK_EQ(r->total.hit_blocks + m, 7);
}

/*
 * Trace P, DRAM of 2 blocks, one policy at a time (issue 7: each policy by hand).
 *
 * lru (victim: least recently used):
 *   r1 A first {A}; r2, r3 A hit; r4 B first {A,B}; r5 C first, evicts A (last use 2 s
 *   against B's 3 s) {B,C}; r6 A capacity miss, evicts B (3 s < C's 4 s) {C,A};
 *   r7 B capacity miss, evicts C {A,B}.
 *   hits 2 blocks = 8 tokens (8/28 = 28.6%); first 3 (12 tokens); capacity 2 (8 tokens).
 *
 * lfu (victim: the lowest count, halved every 600 idle s, among the 8 stalest nodes):
 *   counts: A 1 at r1, +1 at r2 and r3 -> 3 (decay over 1 s: x 2^(-1/600) = 0.9988, so the
 *   counts stay within 0.01 of the integers); B 1 at r4.
 *   r5 C first: A 2.99 vs B 1.00 -> evict B {A,C}; r6 A hit (count 4);
 *   r7 B capacity miss: A 3.99 vs C 1.00 -> evict C {A,B}.
 *   hits 3 blocks = 12 tokens (12/28 = 42.9%); first 3 (12); capacity 1 (4).
 *
 * drain (victim: the lowest value density (saving - holding cost) / (bytes x t), t the
 *   expected reuse time: a block used >= 2 times has t = max(EWMA of its gaps, idle); a block
 *   used once has t = the 300 s prior):
 *   r5: A's t = max(1 s, 2 s) = 2 s: recomputing its 4 tokens (Llama-3-8B, 2 x 8e9 x 4 FLOP
 *   at 494.5 TFLOP/s = 0.13 ms, $1.1e-7 at $3/h) saves more than holding 512 KiB of DRAM
 *   for 2 s costs (~$1e-9): density > 0. B's t = 300 s: holding costs more than the
 *   saving, density < 0 -> evict B. r7 likewise evicts C (once used) over A (t = 1 s).
 *   Same victims as lfu: hits 3 blocks = 12 tokens; first 3; capacity 1.
 *
 * Belady over the ids A A A B C A B, 2 blocks: A m h h, B m, C m (bypass: never used
 * again), A h, B h = 4 hits = 16 tokens = infinite capacity.
 */
static void test_policies(void)
{
    an_trace t;
    an_result r;
    load(write_file("p.jsonl", trace_p), 4, &t);
    CHECK_EQ(t.n_req, 7);

    policy_run(&t, AN_POL_LRU, 2, 0, &r);
    CHECK_EQ(r.total.hit_blocks, 2);
    CHECK_EQ(r.total.hit_tokens, 8);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_CAPACITY], 2);
    CHECK_EQ(r.total.miss_tokens[AN_MISS_CAPACITY], 8);
    CHECK_EQ(r.tier_hit_blocks[AN_DRAM], 2);
    CHECK_EQ(r.evicted_blocks, 3);
    an_result_free(&r);

    if (an_policy_in_engine(AN_POL_LFU)) {
        policy_run(&t, AN_POL_LFU, 2, 0, &r);
        CHECK_EQ(r.total.hit_blocks, 3);
        CHECK_EQ(r.total.hit_tokens, 12);
        CHECK_EQ(r.total.miss_blocks[AN_MISS_CAPACITY], 1);
        CHECK_EQ(r.total.miss_tokens[AN_MISS_CAPACITY], 4);
        CHECK_EQ(r.tier_hit_blocks[AN_DRAM], 3);
        CHECK_EQ(r.evicted_blocks, 2); /* B at r5, C at r7 */
        an_result_free(&r);
    }
    if (an_policy_in_engine(AN_POL_DRAIN)) {
        policy_run(&t, AN_POL_DRAIN, 2, 0, &r);
        CHECK_EQ(r.total.hit_blocks, 3);
        CHECK_EQ(r.total.hit_tokens, 12);
        CHECK_EQ(r.total.miss_blocks[AN_MISS_CAPACITY], 1);
        CHECK_EQ(r.tier_hit_blocks[AN_DRAM], 3);
        an_result_free(&r);
    }

    /* the sweep at 2 blocks: the same three figures, and Belady 16/28 */
    an_config c = config(2, 4);
    an_sweep sw;
    CHECK_EQ(an_sweep_run(&t, &c, 2, &sw, NULL), 0);
    int seen = 0;
    for (size_t i = 0; i < sw.n; i++)
        if (sw.pt[i].cap_blocks == 2) {
            seen = 1;
            CHECK_NEAR(sw.pt[i].hit_rate[AN_POL_LRU], 8.0 / 28);
            if (an_policy_in_engine(AN_POL_LFU))
                CHECK_NEAR(sw.pt[i].hit_rate[AN_POL_LFU], 12.0 / 28);
            if (an_policy_in_engine(AN_POL_DRAIN))
                CHECK_NEAR(sw.pt[i].hit_rate[AN_POL_DRAIN], 12.0 / 28);
            CHECK_NEAR(sw.pt[i].belady, 16.0 / 28);
        }
    CHECK(seen);
    /* the sweep's threads do not change its figures */
    an_sweep one;
    c.threads = 1;
    CHECK_EQ(an_sweep_run(&t, &c, 2, &one, NULL), 0);
    CHECK_EQ(one.n, sw.n);
    for (size_t i = 0; i < sw.n; i++) {
        for (int pol = 0; pol < AN_POL_N; pol++)
            CHECK(memcmp(&one.pt[i].hit_rate[pol], &sw.pt[i].hit_rate[pol], sizeof(double)) == 0);
        CHECK(one.pt[i].belady == sw.pt[i].belady && one.pt[i].lru_flat == sw.pt[i].lru_flat);
    }
    an_sweep_free(&one);
    an_sweep_free(&sw);

#if KVT_AN_HAVE_SIM
    /*
     * lru with DRAM of 1 block and an nvme tier of 4 (per-tier split). Every put is written
     * through to nvme at once (simulation), so a DRAM eviction only drops the DRAM copy:
     *   r1 A first: DRAM {A}, nvme {A}; r2, r3 A hit in DRAM;
     *   r4 B first: A's DRAM copy dropped, DRAM {B}, nvme {A,B}; r5 C first: DRAM {C};
     *   r6 A hit in nvme (read: promoted, C's DRAM copy dropped); r7 B hit in nvme.
     *   hits 4 = infinite capacity: DRAM 2 blocks (8 tokens), nvme 2 (8 tokens); no capacity
     *   miss; nvme bytes loaded = 2 blocks when the load plan loads them.
     */
    policy_run(&t, AN_POL_LRU, 1, 4, &r);
    CHECK_EQ(r.total.hit_blocks, 4);
    CHECK_EQ(r.total.hit_tokens, 16);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_CAPACITY], 0);
    CHECK_EQ(r.tier_hit_blocks[AN_DRAM], 2);
    CHECK_EQ(r.tier_hit_tokens[AN_DRAM], 8);
    CHECK_EQ(r.tier_hit_blocks[AN_NVME], 2);
    CHECK_EQ(r.tier_hit_tokens[AN_NVME], 8);
    CHECK_EQ(r.tier_hit_blocks[AN_DISK] + r.tier_hit_blocks[AN_HBM], 0);
    an_result_free(&r);
#endif
    an_trace_free(&t);
}

/* The Mooncake fast path (trace.c) and jansson read the same requests and reject the same
 * lines, with the same messages, whatever the spacing, key order and odd values. */
static void test_fast_path(void)
{
    static const char *text =
        "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": 5, \"hash_ids\": [1, 2, 3]}\n"
        "{\"hash_ids\":[1,2],\"input_length\":8,\"timestamp\":3}\n"
        "  { \"timestamp\" : 4 , \"input_length\" : 5 , \"hash_ids\" : [ 7 , 8 ] }  \r\n"
        "{\"timestamp\": 6, \"input_length\": 4, \"hash_ids\": [9], \"tenant\": \"t1\"}\n"
        "{\"timestamp\": 7.0, \"input_length\": 4, \"hash_ids\": [9]}\n"
        "{\"timestamp\": 8, \"input_length\": 4, \"hash_ids\": [1234567890123456789]}\n"
        "{\"timestamp\": 9, \"input_length\": 4, \"hash_ids\": [012]}\n"
        "{\"timestamp\": 10, \"input_length\": 9, \"hash_ids\": [1, 2]}\n"
        "{\"timestamp\": 11, \"input_length\": 4, \"hash_ids\": []}\n"
        "{\"timestamp\": 12, \"input_length\": 4, \"hash_ids\": [-1]}\n"
        "{\"timestamp\": 13, \"input_length\": 4, \"hash_ids\": [1], \"timestamp\": 14}\n"
        "{\"timestamp\": 15, \"input_length\": 4, \"output_length\": 4294967296, \"hash_ids\": [1]}\n"
        "{\"timestamp\": 16, \"input_length\": 4, \"hash_ids\": [1]} x\n"
        "{\"timestamp\": 17, \"input_length\": 4, \"hash_ids\": [1,]}\n"
        "{\"t\\u0069mestamp\": 18, \"input_length\": 4, \"hash_ids\": [1]}\n"
        "{\"timestamp\": 19, \"hash_ids\": [1]}\n";
    const char *path = write_file("fast.jsonl", text);
    an_trace a, b;
    char ea[4096] = "", eb[4096] = "";
    FILE *fa = fmemopen(ea, sizeof ea, "w"), *fb = fmemopen(eb, sizeof eb, "w");
    CHECK(fa && fb);
    an_load_opts oa = {.format = AN_FMT_AUTO, .block_tokens = 4, .errs = fa};
    an_load_opts ob = {.format = AN_FMT_AUTO, .block_tokens = 4, .errs = fb, .no_fast = 1};
    CHECK_EQ(an_trace_load(path, &oa, &a), 0);
    CHECK_EQ(an_trace_load(path, &ob, &b), 0);
    fclose(fa);
    fclose(fb);
    CHECK(strcmp(ea, eb) == 0);
    CHECK_EQ(a.n_req, b.n_req);
    CHECK_EQ(a.bad_lines, b.bad_lines);
    CHECK_EQ(a.n_keys, b.n_keys);
    CHECK_EQ(a.n_tenants, b.n_tenants);
    CHECK_EQ(a.n_ns, b.n_ns);
    CHECK(memcmp(a.req, b.req, a.n_req * sizeof *a.req) == 0);
    CHECK(memcmp(a.keys, b.keys, a.n_keys * sizeof *a.keys) == 0);
    /* accepted: lines 1-6 (tenant and 7.0 through jansson), the duplicate key (jansson keeps
     * the last value) and the escaped key name; rejected: 012, 9 tokens in 2 blocks, [],
     * -1, 2^32 output tokens, trailing text, [1,], no input_length */
    CHECK_EQ(a.n_req, 8);
    CHECK_EQ(a.bad_lines, 8);
    CHECK_EQ(a.req[0].ts_ms, 3); /* sorted by time */
    CHECK_EQ(a.req[0].input_tokens, 8);
    an_trace_free(&a);
    an_trace_free(&b);
}

/*
 * Trace A, capacity 2 blocks:
 *   r1  miss 1,2 first, 3p partial; store 1,2                              cached {1,2}
 *   r2  hit 1,2 (8); 4 first; no room: 1,2 is pinned and an inner node -> put short of space
 *   r3  hit 1 (4); 5 first; store 5 evicting leaf 2                        cached {1,5}
 *   r4  hit 1 (4); 2, 4 capacity; 6p partial; store 2 evicting 5, then no room for 4
 *   r5  hit 1,2 (8); 3p partial
 * hits 24 tokens / 6 blocks; first 4 (16); capacity 2 (8); partial 3 (6); 2 puts short.
 * Belady, 2 blocks: 1m 2m 1h 2h 4b(bypass: next use later than 1's and 2's) 1h 5b 1h 2h 4m
 * 1h 2h = 7 hits = 28 tokens.
 */
static void test_trace_a_cap2(void)
{
    an_trace t;
    an_result r;
    load(write_file("a.jsonl", trace_a), 4, &t);
    an_config c = config(2, 4);
    CHECK_EQ(an_replay(&t, &c, &r, NULL), 0);
    CHECK_EQ(r.total.hit_tokens, 24);
    CHECK_EQ(r.total.hit_blocks, 6);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_FIRST], 4);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_CAPACITY], 2);
    CHECK_EQ(r.total.miss_tokens[AN_MISS_CAPACITY], 8);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_PARTIAL], 3);
    CHECK_EQ(r.put_nospace, 2);
    CHECK_EQ(r.tier_hit_tokens[AN_DRAM], 24);
    uint64_t ht, hb;
    CHECK_EQ(an_replay_hits(&t, &c, 2, &ht, &hb, NULL), 0); /* the sweep's path agrees */
    CHECK_EQ(ht, 24);
    CHECK_EQ(hb, 6);
    an_sweep sw;
    CHECK_EQ(an_sweep_run(&t, &c, 2, &sw, NULL), 0);
    for (size_t i = 0; i < sw.n; i++)
        if (sw.pt[i].cap_blocks == 2)
            CHECK_NEAR(sw.pt[i].belady, 28.0 / 54);
    an_sweep_free(&sw);
    an_result_free(&r);
    an_trace_free(&t);
}

/*
 * TTL 1 s (sliding: refreshed by each use), capacity ample:
 *   r1 t=0     [1 2]    miss first x2                  deadlines 1,2: 1 s
 *   r2 t=0.5s  [1 2 3]  hit 1,2 (8); 3 first            deadlines 1,2,3: 1.5 s
 *   r3 t=2s    [1 2]    1,2 expired (removed with 3)    deadlines 1,2: 3 s
 *   r4 t=2.5s  [1 2 3]  hit 1,2 (8); 3 expired
 * 40 tokens; hits 16; first 3 blocks (12); expired 3 blocks (12).
 */
static void test_ttl(void)
{
    const char *tr =
        "{\"timestamp\": 0, \"input_length\": 8, \"hash_ids\": [1, 2]}\n"
        "{\"timestamp\": 500, \"input_length\": 12, \"hash_ids\": [1, 2, 3]}\n"
        "{\"timestamp\": 2000, \"input_length\": 8, \"hash_ids\": [1, 2]}\n"
        "{\"timestamp\": 2500, \"input_length\": 12, \"hash_ids\": [1, 2, 3]}\n";
    an_trace t;
    an_result r;
    load(write_file("ttl.jsonl", tr), 4, &t);
    an_config c = config(100, 4);
    c.ttl_ms = 1000;
    CHECK_EQ(an_replay(&t, &c, &r, NULL), 0);
    CHECK_EQ(r.total.input_tokens, 40);
    CHECK_EQ(r.total.hit_tokens, 16);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_FIRST], 3);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_TTL], 3);
    CHECK_EQ(r.total.miss_tokens[AN_MISS_TTL], 12);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_CAPACITY], 0);
    uint64_t ht, hb;
    CHECK_EQ(an_replay_hits(&t, &c, r.cap_blocks[AN_DRAM], &ht, &hb, NULL), 0);
    CHECK_EQ(ht, 16);
    /* without the TTL everything seen before hits */
    an_result_free(&r);
    c.ttl_ms = -1;
    CHECK_EQ(an_replay(&t, &c, &r, NULL), 0);
    CHECK_EQ(r.total.hit_tokens, 8 + 8 + 12);
    an_result_free(&r);
    an_trace_free(&t);
}

/*
 * Token trace, two tenants (one namespace each), 4 tokens per block:
 *   r1 t=0 a  1..10              miss [1-4] [5-8] first; [9 10] partial
 *   r2 t=1 b  1..8               miss both: other namespace (tenant a used them)
 *   r3 t=2 a  1..8 100..103      hit 2 blocks (8); [100-103] first
 *   r4 t=3 b  1..4 7 7 7 7       hit 1 block (4); [7 7 7 7] first (its key is new everywhere)
 * a: 22 tokens, hits 8, first 3 blocks, partial 1 (2 tokens)
 * b: 16 tokens, hits 4, other namespace 2 blocks (8), first 1 (4)
 */
static void test_tokens_tenants(void)
{
    const char *tr =
        "{\"timestamp\": 0, \"tokens\": [1,2,3,4,5,6,7,8,9,10], \"output_length\": 3, \"tenant\": \"a\"}\n"
        "{\"timestamp\": 1, \"tokens\": [1,2,3,4,5,6,7,8], \"output_length\": 3, \"tenant\": \"b\"}\n"
        "{\"timestamp\": 2, \"tokens\": [1,2,3,4,5,6,7,8,100,101,102,103], \"tenant\": \"a\"}\n"
        "{\"timestamp\": 3, \"tokens\": [1,2,3,4,7,7,7,7], \"tenant\": \"b\"}\n";
    an_trace t;
    an_result r;
    load(write_file("tok.jsonl", tr), 4, &t);
    CHECK_EQ(t.format, AN_FMT_TOKENS);
    CHECK_EQ(t.n_tenants, 2);
    CHECK_EQ(t.n_ns, 2);
    for (int mode = 0; mode < 2; mode++) {
        an_config c = config(100, 4);
        c.tenant_mode = mode ? AN_TENANT_QUOTA : AN_TENANT_POOL;
        CHECK_EQ(an_replay(&t, &c, &r, NULL), 0);
        CHECK_EQ(r.total.input_tokens, 38);
        CHECK_EQ(r.total.hit_tokens, 12);
        const an_counts *a = &r.tenant[0], *b = &r.tenant[1];
        CHECK(strcmp(t.tenants[0], "a") == 0);
        CHECK_EQ(a->input_tokens, 22);
        CHECK_EQ(a->hit_tokens, 8);
        CHECK_EQ(a->miss_blocks[AN_MISS_FIRST], 3);
        CHECK_EQ(a->miss_blocks[AN_MISS_PARTIAL], 1);
        CHECK_EQ(a->miss_tokens[AN_MISS_PARTIAL], 2);
        CHECK_EQ(a->miss_blocks[AN_MISS_OTHER_NS], 0);
        CHECK_EQ(b->input_tokens, 16);
        CHECK_EQ(b->hit_tokens, 4);
        CHECK_EQ(b->miss_blocks[AN_MISS_OTHER_NS], 2);
        CHECK_EQ(b->miss_tokens[AN_MISS_OTHER_NS], 8);
        CHECK_EQ(b->miss_blocks[AN_MISS_FIRST], 1);
        CHECK_EQ(r.inf_hit_tokens, 12);
        an_result_free(&r);
    }
    an_trace_free(&t);
}

/*
 * Access log: two namespaces of one tenant, keys as hex strings and integers, the service's
 * own "matched" kept for comparison.
 *   r1 t=0  x/m1 [a b]    first x2
 *   r2 t=1  x/m2 [a b]    other namespace x2 (same keys, another namespace)
 *   r3 t=2  x/m1 [a b c]  hit 2 (8); c first; the log says dram 2
 * "other namespace" counts any other namespace, of this tenant or another.
 */
static void test_access_log(void)
{
    const char *tr =
        "{\"ts_ms\": 0, \"tenant\": \"x\", \"ns\": \"m1\", \"tokens\": 8, \"block_keys\": [\"00000000000000aa\", \"bb\"], \"matched\": {\"dram\": 0}}\n"
        "{\"ts_ms\": 1, \"tenant\": \"x\", \"ns\": \"m2\", \"tokens\": 8, \"block_keys\": [170, 187]}\n"
        "{\"ts_ms\": 2, \"tenant\": \"x\", \"ns\": \"m1\", \"tokens\": 12, \"block_keys\": [\"0xaa\", \"0xBB\", \"cc\"], \"matched\": {\"dram\": 2, \"nvme\": 0}, \"ttl_s\": 300}\n";
    an_trace t;
    an_result r;
    load(write_file("log.jsonl", tr), 4, &t);
    CHECK_EQ(t.format, AN_FMT_LOG);
    CHECK_EQ(t.n_ns, 2);
    CHECK_EQ(t.n_tenants, 1);
    CHECK_EQ(t.req[2].ttl_ms, 300000);
    an_config c = config(100, 4);
    CHECK_EQ(an_replay(&t, &c, &r, NULL), 0);
    CHECK_EQ(r.total.hit_tokens, 8);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_FIRST], 3);
    CHECK_EQ(r.total.miss_blocks[AN_MISS_OTHER_NS], 2);
    CHECK_EQ(r.obs_requests, 2);
    CHECK_EQ(r.obs_hit_blocks, 2);
    CHECK_EQ(r.obs_tier_blocks[AN_DRAM], 2);
    an_result_free(&r);
    an_trace_free(&t);
}

/*
 * Multi-node: prefixes P=[1 2] and Q=[3 4] alternate six times, 8 tokens each (48).
 * Pool of 2 x 2 blocks holds both: hits r3..r6 = 8 blocks = 32 tokens.
 * Prefix-aware routing over 2 nodes of 2 blocks: P -> node 0, Q -> node 1 (tie on an empty
 * match goes to the less loaded node), then each prefix follows its node: also 32 tokens,
 * loads 3 and 3.
 */
static void test_multinode(void)
{
    const char *tr =
        "{\"timestamp\": 0, \"input_length\": 8, \"hash_ids\": [1, 2]}\n"
        "{\"timestamp\": 1, \"input_length\": 8, \"hash_ids\": [3, 4]}\n"
        "{\"timestamp\": 2, \"input_length\": 8, \"hash_ids\": [1, 2]}\n"
        "{\"timestamp\": 3, \"input_length\": 8, \"hash_ids\": [3, 4]}\n"
        "{\"timestamp\": 4, \"input_length\": 8, \"hash_ids\": [1, 2]}\n"
        "{\"timestamp\": 5, \"input_length\": 8, \"hash_ids\": [3, 4]}\n";
    an_trace t;
    load(write_file("mn.jsonl", tr), 4, &t);
    an_config c = config(2, 4);
    c.nodes = 2;
    an_multinode mn;
    CHECK_EQ(an_multinode_run(&t, &c, 2, &mn, NULL), 0);
    CHECK_NEAR(mn.hit_pool, 32.0 / 48);
    CHECK_NEAR(mn.hit_prefix, 32.0 / 48);
    CHECK_NEAR(mn.imbalance_prefix, 1.0);
    CHECK(mn.hit_random >= 0 && mn.hit_random <= mn.hit_pool + 1e-12);
    /* one node of 2 blocks: P and Q evict each other (each put needs the other's 2 blocks) */
    uint64_t ht, hb;
    CHECK_EQ(an_replay_hits(&t, &c, 2, &ht, &hb, NULL), 0);
    CHECK_EQ(ht, 0);
    an_trace_free(&t);
}

/* Malformed lines are reported with their line number and skipped; --strict fails. */
static void test_malformed(void)
{
    const char *tr =
        "{\"timestamp\": 0, \"input_length\": 8, \"hash_ids\": [1, 2]}\n" /* 1 ok */
        "this is not json\n"                                                /* 2 */
        "[1, 2, 3]\n"                                                       /* 3 */
        "{\"timestamp\": -5, \"input_length\": 8, \"hash_ids\": [1, 2]}\n"  /* 4 */
        "{\"timestamp\": 1, \"input_length\": 100, \"hash_ids\": [1]}\n"    /* 5: too long */
        "{\"timestamp\": 1, \"input_length\": 4, \"hash_ids\": [1, 2]}\n"   /* 6: too short */
        "{\"timestamp\": 1, \"input_length\": 8, \"hash_ids\": []}\n"       /* 7 */
        "{\"timestamp\": 1, \"input_length\": 8, \"hash_ids\": [1, \"zz\"]}\n" /* 8 */
        "{\"timestamp\": 1, \"tokens\": [1, 2, 3, 4]}\n"                   /* 9: other format */
        "{\"timestamp\": 1e400, \"input_length\": 8, \"hash_ids\": [1, 2]}\n" /* 10 */
        "{\"timestamp\": 1, \"input_length\": 8, \"hash_ids\": [1, 2], \"tenant\": 7}\n" /* 11 */
        "{\"timestamp\": 99999999999999999999999, \"input_length\": 8, \"hash_ids\": [1,2]}\n" /* 12 */
        "{\"timestamp\": 2, \"input_length\": 8, \"hash_ids\": [1, 2]}";   /* 13 ok, no \n */
    const char *p = write_file("bad.jsonl", tr);
    char errpath[640];
    snprintf(errpath, sizeof errpath, "%s/bad.err", dir);
    FILE *errs = fopen(errpath, "w+");
    CHECK(errs);
    an_load_opts o = {.format = AN_FMT_AUTO, .block_tokens = 4, .errs = errs};
    an_trace t;
    CHECK_EQ(an_trace_load(p, &o, &t), 0);
    CHECK_EQ(t.n_req, 2);
    CHECK_EQ(t.bad_lines, 11);
    CHECK_EQ(t.lines, 13);
    rewind(errs);
    char line[512];
    int n = 0, saw2 = 0, saw12 = 0;
    while (fgets(line, sizeof line, errs)) {
        n++;
        saw2 |= strstr(line, "bad.jsonl:2: ") != NULL;
        saw12 |= strstr(line, "bad.jsonl:12: ") != NULL;
    }
    CHECK_EQ(n, 11);
    CHECK(saw2 && saw12);
    an_trace_free(&t);
    o.strict = 1;
    CHECK_EQ(an_trace_load(p, &o, &t), -EINVAL);
    /* nothing valid at all */
    o.strict = 0;
    CHECK_EQ(an_trace_load(write_file("none.jsonl", "{}\n\n42\n"), &o, &t), -EINVAL);
    CHECK_EQ(an_trace_load(write_file("empty.jsonl", ""), &o, &t), -EINVAL);
    char missing[640];
    snprintf(missing, sizeof missing, "%s/does-not-exist.jsonl", dir);
    CHECK_EQ(an_trace_load(missing, &o, &t), -ENOENT);
    fclose(errs);
}

/* Mutated traces (fixed seed, printed): loading never crashes, and whatever loads replays.
 * Run under ASan+UBSan in CI. */
static void test_fuzz(void)
{
    const char *seeds[] = {
        trace_a,
        "{\"timestamp\": 0, \"tokens\": [1,2,3,4,5,6,7,8,9], \"tenant\": \"a\"}\n"
        "{\"timestamp\": 1, \"tokens\": [1,2,3,4,5,6,7,8], \"tenant\": \"b\"}\n",
        "{\"ts_ms\": 0, \"tenant\": \"x\", \"ns\": \"m\", \"tokens\": 8, \"block_keys\": [\"aa\", 3], "
        "\"matched\": {\"dram\": 1}, \"ttl_s\": 1}\n"
        "{\"ts_ms\": 9, \"tenant\": \"y\", \"ns\": \"m\", \"tokens\": 5, \"hash_ids\": [170, 3]}\n",
    };
    const char alphabet[] = "{}[]\",:0123456789-eE. \n\\xnul\x01";
    uint64_t x = 0x9e3779b97f4a7c15ull;
    const char *env = getenv("KVT_SEED");
    if (env)
        x = strtoull(env, NULL, 0) | 1;
    printf("test_analyze: fuzz seed=%llu\n", (unsigned long long)x);
    char path[640], buf[1024];
    snprintf(path, sizeof path, "%s/fuzz.jsonl", dir);
    FILE *devnull = fopen("/dev/null", "w");
    CHECK(devnull);
    for (int it = 0; it < 600; it++) {
        const char *s = seeds[it % 3];
        size_t n = strlen(s);
        CHECK(n < sizeof buf);
        memcpy(buf, s, n);
        int muts = 1 + it % 4;
        for (int m = 0; m < muts; m++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t pos = (size_t)(x % n);
            if ((x >> 32) % 4 == 0 && n > 1)
                memmove(&buf[pos], &buf[pos + 1], n - pos - 1), n--; /* delete */
            else
                buf[pos] = alphabet[(x >> 40) % (sizeof alphabet - 1)];
        }
        FILE *f = fopen(path, "w");
        CHECK(f && fwrite(buf, 1, n, f) == n && fclose(f) == 0);
        an_load_opts o = {.format = AN_FMT_AUTO, .block_tokens = 4, .errs = devnull};
        an_trace t;
        int rc = an_trace_load(path, &o, &t);
        CHECK(rc == 0 || rc == -EINVAL);
        if (rc)
            continue;
        an_config c = config(2, 4);
        c.nodes = 2;
        an_result r;
        CHECK_EQ(an_replay(&t, &c, &r, NULL), 0);
        uint64_t sum = r.total.hit_blocks;
        for (int k = 0; k < AN_MISS_N; k++)
            sum += r.total.miss_blocks[k];
        CHECK_EQ(sum, r.total.blocks); /* every block is a hit or has exactly one class */
        an_sweep sw;
        CHECK_EQ(an_sweep_run(&t, &c, r.cap_blocks[AN_DRAM], &sw, NULL), 0);
        an_multinode mn;
        CHECK_EQ(an_multinode_run(&t, &c, 2, &mn, NULL), 0);
        an_sweep_free(&sw);
        an_result_free(&r);
        an_trace_free(&t);
    }
    fclose(devnull);
}

/* Run analyze_main with stdout and stderr sent to files. */
static int run_main(const char *out, int argc, char **argv)
{
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char errp[700];
    snprintf(errp, sizeof errp, "%s.err", out);
    int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(so >= 0 && se >= 0 && fd >= 0 && fe >= 0);
    dup2(fd, 1);
    dup2(fe, 2);
    int rc = analyze_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    close(fd);
    close(fe);
    return rc;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    CHECK(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    CHECK(b && fread(b, 1, (size_t)n, f) == (size_t)n);
    b[n] = 0;
    fclose(f);
    return b;
}

/* The program: --json (parsed back), --html (self-contained), text, usage errors. */
static void test_program(void)
{
    const char *tp = write_file("a.jsonl", trace_a);
    char out[640], html[640];
    snprintf(out, sizeof out, "%s/a.json", dir);
    snprintf(html, sizeof html, "%s/a.html", dir);
    /* 3 blocks of Llama-3-8B x 4 tokens = 3 x 512 KiB */
    char *argv[] = {"analyze", "--block-size", "4", "--dram", "1536K", "--nodes", "2",
                    "--sweep-points", "3", "--json", "--html", html, "--quiet", (char *)tp, NULL};
    CHECK_EQ(run_main(out, 14, argv), 0);
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    CHECK(j);
    json_t *tot = json_object_get(j, "total");
    CHECK_EQ(json_integer_value(json_object_get(tot, "hit_tokens")), 28);
    CHECK_EQ(json_integer_value(json_object_get(tot, "input_tokens")), 54);
    CHECK_NEAR(json_real_value(json_object_get(tot, "token_hit_rate")), 28.0 / 54);
    CHECK_NEAR(json_real_value(json_object_get(tot, "block_hit_rate")), 7.0 / 15);
    json_t *mb = json_object_get(tot, "miss_blocks");
    CHECK_EQ(json_integer_value(json_object_get(mb, "first_use")), 4);
    CHECK_EQ(json_integer_value(json_object_get(mb, "evicted_capacity")), 1);
    CHECK_EQ(json_integer_value(json_object_get(mb, "partial_block")), 3);
    json_t *dram = json_object_get(json_object_get(j, "tiers"), "dram");
    CHECK_EQ(json_integer_value(json_object_get(dram, "hit_tokens")), 28);
    CHECK(json_object_get(json_object_get(j, "definitions"), "hit"));
    json_t *sw = json_object_get(j, "capacity_sweep");
    CHECK(json_array_size(json_object_get(sw, "points")) >= 3);
    json_t *p0 = json_array_get(json_object_get(sw, "points"), 0);
    /* issue 4: lfu is a number now that the engine runs it (null: not in the engine) */
    CHECK(an_policy_in_engine(AN_POL_LFU) ? json_is_real(json_object_get(p0, "lfu"))
                                          : json_is_null(json_object_get(p0, "lfu")));
    CHECK(json_is_real(json_object_get(p0, "lru")));
    CHECK(json_object_get(j, "multi_node"));
    json_decref(j);

    char *h = slurp(html);
    CHECK(strstr(h, "<!DOCTYPE html>") && strstr(h, "</html>"));
    CHECK(strstr(h, "<svg") && strstr(h, "polyline") && strstr(h, "drain"));
    CHECK(!strstr(h, "<script") && !strstr(h, "src=") && !strstr(h, "href="));
    free(h);

    /* text tables */
    char *argv2[] = {"analyze", "--block-size", "4", "--dram", "12tok", "--nodes", "0",
                     "--sweep-points", "0", "--ttl", "5m", (char *)tp, NULL};
    snprintf(out, sizeof out, "%s/a.txt", dir);
    CHECK_EQ(run_main(out, 12, argv2), 0);
    char *txt = slurp(out);
    CHECK(strstr(txt, "token hit rate") && strstr(txt, "51.85%")); /* 28/54 */
    CHECK(strstr(txt, "evicted_capacity") && strstr(txt, "Per tenant"));
    free(txt);

    /* token sizes with a decimal multiplier (issue 7: --dram 3Mtok): 3M tokens = 750,000
     * blocks of 4 tokens, more than the trace's 4 distinct blocks: everything seen hits,
     * 32 of 54 tokens = 59.26% (infinite capacity); on 1 and 2 threads alike */
    char *argv3[] = {"analyze", "--block-size", "4", "--dram", "3Mtok", "--nodes", "0",
                     "--sweep-points", "2", "--threads", "1", (char *)tp, NULL};
    CHECK_EQ(run_main(out, 12, argv3), 0);
    txt = slurp(out);
    CHECK(strstr(txt, "token hit rate             59.26%"));
    free(txt);
    char *bad7[] = {"analyze", "--dram", "3Xtok", (char *)tp, NULL};
    CHECK_EQ(run_main(out, 4, bad7), 2);
    char *bad8[] = {"analyze", "--threads", "0", (char *)tp, NULL};
    CHECK_EQ(run_main(out, 4, bad8), 2);

    /* usage errors: exit 2 */
    /* an unknown policy is a usage error (was: lfu, "not in engine yet" before issue 4) */
    char *bad1[] = {"analyze", "--policy", "arc", (char *)tp, NULL};
    CHECK_EQ(run_main(out, 4, bad1), 2);
    char *bad2[] = {"analyze", "--dram", "12parsecs", (char *)tp, NULL};
    CHECK_EQ(run_main(out, 4, bad2), 2);
    char *bad3[] = {"analyze", "--block-size", "3", (char *)tp, NULL};
    CHECK_EQ(run_main(out, 4, bad3), 2);
    char *bad4[] = {"analyze", NULL};
    CHECK_EQ(run_main(out, 1, bad4), 2);
    char *bad5[] = {"analyze", "--strict", "--block-size", "4",
                    (char *)write_file("bad2.jsonl", "{\"timestamp\": 0, \"input_length\": 8, "
                                                      "\"hash_ids\": [1, 2]}\nnope\n"), NULL};
    CHECK_EQ(run_main(out, 5, bad5), 2);
    char *bad6[] = {"analyze", "--bogus", (char *)tp, NULL};
    CHECK_EQ(run_main(out, 3, bad6), 2);
    char *ok[] = {"analyze", "--help", NULL};
    CHECK_EQ(run_main(out, 2, ok), 0);
}

int main(void)
{
    const char *base = getenv("KVT_TEST_DIR");
    snprintf(dir, sizeof dir, "%s/test_analyze.%d", base && *base ? base : "/tmp", (int)getpid());
    char cmd[600];
    for (char *p = dir + 1; *p; p++) /* mkdir -p */
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0755);
            *p = '/';
        }
    if (mkdir(dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "cannot create %s\n", dir);
        return 1;
    }
    printf("test_analyze: engine %s\n", KVT_AN_HAVE_SIM ? "simulation mode" : "tiny-layout DRAM");
    test_trace_a_cap3();
    test_trace_a_cap2();
    test_policies();
    test_fast_path();
    test_ttl();
    test_tokens_tenants();
    test_access_log();
    test_multinode();
    test_malformed();
    test_fuzz();
    test_program();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    printf("test_analyze: ok\n");
    return 0;
}
