/*
 * bench_radix.c — the prefix index (radix/radix.h) against a vLLM-style hash chain.
 *
 * Two workloads, each filled to --blocks cached blocks of 16 tokens (default 1M; --quick 10k):
 *
 *   mooncake   prompts shaped like the Mooncake FAST'25 conversation trace: every prompt
 *              starts with one shared 512-token block, ~39% of prompts continue an earlier
 *              prompt (all its whole 512-token blocks, then 1..20 new ones), the rest are
 *              fresh conversations of lognormal length (median ~7k tokens, tail to 126k).
 *              --trace PATH uses the real conversation_trace.jsonl instead.
 *              Each 512-token id expands to pseudo-random tokens keyed by the id, so equal
 *              id prefixes are equal token prefixes (a partial last block is a prefix of the
 *              id's 512 tokens).
 *   sysprompt  8 system prompts of 1-4k tokens, each followed by many distinct user
 *              continuations of 1-12k tokens.
 *
 * Queries are 8192-token prompts (512 blocks): 75% replay a cached prompt (a full 8k hit),
 * 25% diverge (mooncake: one token changed in a random block; sysprompt: a new user after
 * a system prompt). A query's tokens are generated into one buffer just before it is timed,
 * so they are warm in cache as a tokenizer's fresh output would be; the index is not.
 *
 * Baseline ("hash chain", what vLLM's prefix cache does): block key = XXH3_64bits_withSeed(
 * 16 tokens, 64 bytes, parent key) (first block seed 0); an open-addressing table key ->
 * block id (16-byte slots {key, id}, linear probing, grows at 3/4 load); per-block metadata
 * in an array of the same 40-byte record the radix tree keeps (radix_block). Matching hashes
 * block by block and probes until the first miss. It stores no tokens, so its hits are by
 * hash only (not exact); the radix tree stores the tokens (the key, 4 bytes/token) and
 * compares them. Its XXH3 is inlined (XXH_INLINE_ALL), the strongest form of the baseline.
 *
 * Columns: p50/p99 µs per 8k-token match; match Gtok/s = the median over queries of matched
 * tokens / that query's time (a median, so one preempted query cannot move it);
 * insert Mtok/s = tokens newly indexed / total insert time (inserts also walk the cached
 * prefix); B/block = heap bytes per cached block beyond 4 bytes/token of key (the hash chain
 * stores no key, so that is all its bytes). "memcmp floor": comparing the 32 KiB query with
 * an equal copy (both in cache), the least work any exact matcher does.
 *
 * --wide N: a micro-benchmark of one node with N children instead (see run_wide).
 */
#define _POSIX_C_SOURCE 200809L
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "radix/radix.h"

#define BT 16             /* tokens per block */
#define SEG 512           /* tokens per Mooncake hash id */
#define QTOK 8192         /* tokens per query */
#define QBLK (QTOK / BT)
#define VOCAB 128256u     /* Llama-3 vocabulary */
#define MAX_REQ_TOK (256 * SEG)

/* ---------------------------------------------------------------- workloads */

/* len tokens of the pseudo-random stream of id */
typedef struct seg {
    uint64_t id;
    uint32_t len;
} seg;

typedef struct req {
    size_t first_seg;
    uint32_t n_seg;
    uint32_t tokens;
} req;

typedef struct workload workload;
struct workload {
    const char *name;
    seg *segs;
    size_t n_segs, cap_segs;
    req *reqs;
    size_t n_reqs, cap_reqs;
    uint64_t rng;
    uint64_t next_id;
    int (*more)(workload *w); /* append one request; 0 when exhausted, -1 on OOM */
    /* trace: everything parsed up front, handed out in order */
    seg *t_segs;
    req *t_reqs;
    size_t t_n_reqs, t_next;
    /* sysprompt */
    uint32_t sys_len[8];
};

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *x) { return (double)(splitmix(x) >> 11) * 0x1p-53; }

static double gauss(uint64_t *x)
{
    double u = unit(x), v = unit(x);
    return sqrt(-2 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static void gen_tokens(uint64_t id, uint32_t len, uint32_t *out)
{
    uint64_t s = id * 0xd1b54a32d192ed03ull ^ 0x6b76746965720000ull; /* "kvtier" */
    for (uint32_t i = 0; i < len; i++)
        out[i] = (uint32_t)((splitmix(&s) >> 32) % VOCAB);
}

/* Tokens of request r, at most max; returns the count. */
static uint32_t expand(const workload *w, const req *r, uint32_t *out, uint32_t max)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_seg && n < max; i++) {
        const seg *s = &w->segs[r->first_seg + i];
        uint32_t k = s->len < max - n ? s->len : max - n;
        gen_tokens(s->id, k, out + n);
        n += k;
    }
    return n;
}

static int push_seg(workload *w, uint64_t id, uint32_t len)
{
    if (w->n_segs == w->cap_segs) {
        size_t cap = w->cap_segs ? 2 * w->cap_segs : 4096;
        seg *p = realloc(w->segs, cap * sizeof *p);
        if (!p)
            return -1;
        w->segs = p;
        w->cap_segs = cap;
    }
    w->segs[w->n_segs++] = (seg){id, len};
    return 0;
}

static int push_req(workload *w, size_t first, uint32_t tokens)
{
    if (w->n_reqs == w->cap_reqs) {
        size_t cap = w->cap_reqs ? 2 * w->cap_reqs : 1024;
        req *p = realloc(w->reqs, cap * sizeof *p);
        if (!p)
            return -1;
        w->reqs = p;
        w->cap_reqs = cap;
    }
    w->reqs[w->n_reqs++] = (req){first, (uint32_t)(w->n_segs - first), tokens};
    return 0;
}

/*
 * Synthetic Mooncake: measured on conversation_trace.jsonl, 39% of requests continue an
 * earlier one (its whole 512-token blocks, not its partial last one, then a median of 2 new
 * blocks, p90 ~20); request length median 14 blocks, p90 54, max 247; every request starts
 * with hash id 0.
 */
static int more_mooncake_synth(workload *w)
{
    size_t first = w->n_segs;
    uint32_t n_new;
    if (push_seg(w, 0, SEG))
        return -1;
    if (w->n_reqs > 0 && unit(&w->rng) < 0.39) {
        size_t back = (size_t)(splitmix(&w->rng) % (w->n_reqs < 256 ? w->n_reqs : 256));
        const req *p = &w->reqs[w->n_reqs - 1 - back];
        for (uint32_t i = 1; i + 1 < p->n_seg && w->n_segs - first < 240; i++)
            if (push_seg(w, w->segs[p->first_seg + i].id, SEG))
                return -1;
        double g = exp(0.7 + 1.3 * gauss(&w->rng));
        n_new = g < 1 ? 1 : g > 20 ? 20 : (uint32_t)g;
    } else {
        double g = exp(log(13.0) + 0.95 * gauss(&w->rng));
        n_new = g < 1 ? 1 : g > 246 ? 246 : (uint32_t)g;
    }
    for (uint32_t i = 0; i < n_new; i++) {
        uint32_t len = i + 1 < n_new ? SEG : 1 + (uint32_t)(splitmix(&w->rng) % SEG);
        if (push_seg(w, ++w->next_id, len))
            return -1;
    }
    uint32_t tokens = 0;
    for (size_t i = first; i < w->n_segs; i++)
        tokens += w->segs[i].len;
    return push_req(w, first, tokens) ? -1 : 1;
}

static int more_trace(workload *w)
{
    if (w->t_next == w->t_n_reqs)
        return 0;
    const req *r = &w->t_reqs[w->t_next++];
    size_t first = w->n_segs;
    for (uint32_t i = 0; i < r->n_seg; i++)
        if (push_seg(w, w->t_segs[r->first_seg + i].id, w->t_segs[r->first_seg + i].len))
            return -1;
    return push_req(w, first, r->tokens) ? -1 : 1;
}

/* Trace ids are offset so they never meet the synthetic ids used for fresh queries. */
#define TRACE_ID_BASE (1ull << 40)

static int load_trace(workload *w, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_radix: %s: %s\n", path, strerror(errno));
        return -1;
    }
    workload tmp = {0}; /* parse with the push helpers, then move to t_* */
    char *line = NULL;
    size_t cap = 0;
    size_t bad = 0;
    while (getline(&line, &cap, f) > 0) {
        char *il = strstr(line, "\"input_length\""), *h = strstr(line, "\"hash_ids\"");
        char *c1 = il ? strchr(il, ':') : NULL, *br = h ? strchr(h, '[') : NULL;
        if (!c1 || !br) {
            bad++;
            continue;
        }
        long long in_len = strtoll(c1 + 1, NULL, 10);
        size_t first = tmp.n_segs;
        char *p = br + 1, *end;
        for (;;) {
            while (*p == ' ' || *p == ',')
                p++;
            if (*p == ']' || !*p)
                break;
            unsigned long long id = strtoull(p, &end, 10);
            if (end == p)
                break;
            if (push_seg(&tmp, TRACE_ID_BASE + id, SEG))
                goto oom;
            p = end;
        }
        size_t n = tmp.n_segs - first;
        if (n == 0 || n > 256 || in_len <= (long long)(n - 1) * SEG ||
            in_len > (long long)n * SEG) {
            tmp.n_segs = first;
            bad++;
            continue;
        }
        tmp.segs[tmp.n_segs - 1].len = (uint32_t)(in_len - (long long)(n - 1) * SEG);
        if (push_req(&tmp, first, (uint32_t)in_len))
            goto oom;
    }
    free(line);
    fclose(f);
    if (bad)
        fprintf(stderr, "bench_radix: %s: skipped %zu malformed lines\n", path, bad);
    w->t_segs = tmp.segs;
    w->t_reqs = tmp.reqs;
    w->t_n_reqs = tmp.n_reqs;
    return tmp.n_reqs ? 0 : -1;
oom:
    free(line);
    fclose(f);
    free(tmp.segs);
    free(tmp.reqs);
    return -1;
}

static int more_sysprompt(workload *w)
{
    size_t first = w->n_segs;
    uint32_t s = (uint32_t)(splitmix(&w->rng) % 8);
    uint32_t user = 1024 + 16 * (uint32_t)(splitmix(&w->rng) % ((12288 - 1024) / 16 + 1));
    if (push_seg(w, 1000 + s, w->sys_len[s]) || push_seg(w, ++w->next_id, user))
        return -1;
    return push_req(w, first, w->sys_len[s] + user) ? -1 : 1;
}

static void workload_free(workload *w)
{
    free(w->segs);
    free(w->reqs);
    free(w->t_segs);
    free(w->t_reqs);
}

/* ---------------------------------------------------------------- hash-chain baseline */

#define HC_EMPTY UINT32_MAX

typedef struct hc_slot {
    uint64_t key;
    uint32_t id; /* index into meta[], HC_EMPTY when the slot is free */
} hc_slot;

typedef struct hchain {
    hc_slot *tab; /* [mask + 1] */
    uint64_t mask;
    uint64_t n;
    radix_block *meta; /* [cap_meta]: the same per-block record the radix tree keeps */
    uint64_t cap_meta;
} hchain;

static int hc_init(hchain *h)
{
    memset(h, 0, sizeof *h);
    h->mask = 1023;
    h->tab = malloc((h->mask + 1) * sizeof *h->tab);
    if (!h->tab)
        return -ENOMEM;
    for (uint64_t i = 0; i <= h->mask; i++)
        h->tab[i].id = HC_EMPTY;
    return 0;
}

static void hc_free(hchain *h)
{
    free(h->tab);
    free(h->meta);
}

static uint64_t hc_bytes(const hchain *h)
{
    return (h->mask + 1) * sizeof *h->tab + h->cap_meta * sizeof *h->meta;
}

static int hc_grow(hchain *h)
{
    uint64_t nm = 2 * h->mask + 1;
    hc_slot *t = malloc((nm + 1) * sizeof *t);
    if (!t)
        return -ENOMEM;
    for (uint64_t i = 0; i <= nm; i++)
        t[i].id = HC_EMPTY;
    for (uint64_t i = 0; i <= h->mask; i++) {
        if (h->tab[i].id == HC_EMPTY)
            continue;
        uint64_t j = h->tab[i].key & nm;
        while (t[j].id != HC_EMPTY)
            j = (j + 1) & nm;
        t[j] = h->tab[i];
    }
    free(h->tab);
    h->tab = t;
    h->mask = nm;
    return 0;
}

/* Blocks of tokens[0 .. n_blocks*BT) found, chaining from the first. */
static size_t hc_match(const hchain *h, const uint32_t *tokens, size_t n_blocks)
{
    uint64_t parent = 0;
    for (size_t b = 0; b < n_blocks; b++) {
        uint64_t k = XXH3_64bits_withSeed(tokens + b * BT, BT * 4, parent);
        for (uint64_t j = k & h->mask;; j = (j + 1) & h->mask) {
            if (h->tab[j].id == HC_EMPTY)
                return b;
            if (h->tab[j].key == k)
                break;
        }
        parent = k;
    }
    return n_blocks;
}

/* Insert the blocks not yet present; returns blocks added, or -ENOMEM. */
static long hc_insert(hchain *h, const uint32_t *tokens, size_t n_blocks)
{
    uint64_t parent = 0;
    long added = 0;
    for (size_t b = 0; b < n_blocks; b++) {
        uint64_t k = XXH3_64bits_withSeed(tokens + b * BT, BT * 4, parent);
        uint64_t j = k & h->mask;
        for (; h->tab[j].id != HC_EMPTY; j = (j + 1) & h->mask)
            if (h->tab[j].key == k)
                break;
        if (h->tab[j].id == HC_EMPTY) {
            if ((h->n + 1) * 4 > (h->mask + 1) * 3) {
                if (hc_grow(h))
                    return -ENOMEM;
                for (j = k & h->mask; h->tab[j].id != HC_EMPTY; j = (j + 1) & h->mask)
                    ;
            }
            if (h->n == h->cap_meta) {
                uint64_t cap = h->cap_meta ? 2 * h->cap_meta : 1024;
                radix_block *m = realloc(h->meta, cap * sizeof *m);
                if (!m)
                    return -ENOMEM;
                h->meta = m;
                h->cap_meta = cap;
            }
            radix_block *m = &h->meta[h->n];
            memset(m, 0, sizeof *m);
            m->key = k;
            for (int t = 0; t < RADIX_TIERS; t++)
                m->slot[t] = RADIX_NO_SLOT;
            h->tab[j].key = k;
            h->tab[j].id = (uint32_t)h->n++;
            added++;
        }
        parent = k;
    }
    return added;
}

/* Single keys in the same table (the --wide baseline): find, add, delete by key. */
static int hc_has(const hchain *h, uint64_t k)
{
    for (uint64_t j = k & h->mask;; j = (j + 1) & h->mask) {
        if (h->tab[j].id == HC_EMPTY)
            return 0;
        if (h->tab[j].key == k)
            return 1;
    }
}

static int hc_add(hchain *h, uint64_t k)
{
    if (hc_has(h, k))
        return 0;
    if ((h->n + 1) * 4 > (h->mask + 1) * 3 && hc_grow(h))
        return -ENOMEM;
    if (h->n == h->cap_meta) {
        uint64_t cap = h->cap_meta ? 2 * h->cap_meta : 1024;
        radix_block *m = realloc(h->meta, cap * sizeof *m);
        if (!m)
            return -ENOMEM;
        h->meta = m;
        h->cap_meta = cap;
    }
    uint64_t j = k & h->mask;
    while (h->tab[j].id != HC_EMPTY)
        j = (j + 1) & h->mask;
    radix_block *m = &h->meta[h->n];
    memset(m, 0, sizeof *m);
    m->key = k;
    for (int t = 0; t < RADIX_TIERS; t++)
        m->slot[t] = RADIX_NO_SLOT;
    h->tab[j].key = k;
    h->tab[j].id = (uint32_t)h->n++;
    return 1;
}

static uint64_t hc_slot_of(const hchain *h, uint64_t k)
{
    uint64_t j = k & h->mask;
    while (h->tab[j].key != k || h->tab[j].id == HC_EMPTY)
        j = (j + 1) & h->mask;
    return j;
}

/* Delete key k (present): backward-shift the probe run, move the last record into the hole. */
static void hc_del(hchain *h, uint64_t k)
{
    uint64_t j = hc_slot_of(h, k), i = j;
    uint32_t id = h->tab[j].id, last = (uint32_t)(h->n - 1);

    if (id != last) {
        h->meta[id] = h->meta[last];
        h->tab[hc_slot_of(h, h->meta[id].key)].id = id;
    }
    h->n--;
    for (;;) {
        i = (i + 1) & h->mask;
        if (h->tab[i].id == HC_EMPTY)
            break;
        uint64_t home = h->tab[i].key & h->mask;
        if (((i - home) & h->mask) >= ((i - j) & h->mask)) {
            h->tab[j] = h->tab[i];
            j = i;
        }
    }
    h->tab[j].id = HC_EMPTY;
}

/* ---------------------------------------------------------------- --wide N */

/*
 * One node with N children, every child a single-block root chain: a key namespace where
 * every Redis value is its own root (key tree, 2 units per block) and a token tree whose root
 * has N distinct first blocks of 16 tokens, all starting with the same token (BOS), so the
 * first unit never tells siblings apart. Per structure and tree kind: insert the N roots in
 * one random order, match each (a full hit) in another, remove each in a third (the radix
 * tree: radix_match to find the node, then radix_remove, as a DEL does). Each phase is timed
 * as a whole and divided by N (no per-op clock reads); the median over --builds runs. The
 * baseline is the hash chain's table holding one key per root (XXH3 of the block).
 */
typedef struct wide_row {
    double ins_ns, match_ns, rm_ns, bytes;
} wide_row;

static void shuffle(uint32_t *a, uint32_t n, uint64_t *rng)
{
    for (uint32_t i = 0; i < n; i++)
        a[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)(splitmix(rng) % i), x = a[i - 1];
        a[i - 1] = a[j];
        a[j] = x;
    }
}

static int run_wide_kind(uint32_t n, int keys, int builds, uint64_t seed, wide_row *rr,
                         wide_row *rh)
{
    uint32_t bu = keys ? 2 : BT;
    uint32_t *units = malloc((size_t)n * bu * sizeof *units);
    uint32_t *ord = malloc((size_t)n * sizeof *ord);
    double r_ins[8], r_match[8], r_rm[8], h_ins[8], h_match[8], h_rm[8];
    radix_path path;
    int rc = -1;

    radix_path_init(&path);
    if (!units || !ord)
        goto out;
    if (builds > 8)
        builds = 8;
    uint64_t g = seed ^ (keys ? 0x4b455953ull : 0x544f4b53ull);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t *b = units + (size_t)i * bu;
        if (keys) {
            uint64_t k = splitmix(&g);
            b[0] = (uint32_t)k;
            b[1] = (uint32_t)(k >> 32);
        } else {
            gen_tokens(splitmix(&g), BT, b);
            b[0] = 128000; /* BOS */
        }
    }
    for (int r = 0; r < builds; r++) {
        radix_tree *t = NULL;
        uint64_t t0, ns;

        if (radix_create(bu, keys ? RADIX_KEYS : 0, NULL, &t))
            goto out;
        shuffle(ord, n, &g);
        t0 = bu_now_ns();
        for (uint32_t i = 0; i < n; i++) {
            radix_node *leaf = NULL;
            if (radix_insert(t, units + (size_t)ord[i] * bu, 1, &path, &leaf) || !leaf) {
                fprintf(stderr, "bench_radix: --wide: radix_insert failed\n");
                radix_destroy(t);
                goto out;
            }
            radix_publish(t, leaf);
        }
        ns = bu_now_ns() - t0;
        r_ins[r] = (double)ns / n;
        rr->bytes = (double)radix_bytes(t) / n;
        if (r == 0 && n <= 200000) {
            const char *why = NULL;
            if (radix_check(t, &why)) {
                fprintf(stderr, "bench_radix: --wide: radix_check: %s\n", why ? why : "?");
                radix_destroy(t);
                goto out;
            }
        }
        shuffle(ord, n, &g);
        uint64_t hit = 0;
        t0 = bu_now_ns();
        for (uint32_t i = 0; i < n; i++) {
            radix_match(t, units + (size_t)ord[i] * bu, 1, 0, &path);
            hit += path.blocks;
        }
        ns = bu_now_ns() - t0;
        r_match[r] = (double)ns / n;
        shuffle(ord, n, &g);
        t0 = bu_now_ns();
        for (uint32_t i = 0; i < n; i++) {
            radix_match(t, units + (size_t)ord[i] * bu, 1, 0, &path);
            hit += radix_remove(t, path.nodes[0], 0, NULL, NULL);
        }
        ns = bu_now_ns() - t0;
        r_rm[r] = (double)ns / n;
        if (hit != 2ull * n || radix_blocks(t) != 0) {
            fprintf(stderr, "bench_radix: --wide: radix: %llu of %u hits/removals\n",
                    (unsigned long long)hit, 2 * n);
            radix_destroy(t);
            goto out;
        }
        radix_destroy(t);

        hchain h;
        if (hc_init(&h))
            goto out;
        shuffle(ord, n, &g);
        t0 = bu_now_ns();
        for (uint32_t i = 0; i < n; i++)
            if (hc_add(&h, XXH3_64bits_withSeed(units + (size_t)ord[i] * bu, bu * 4, 0)) != 1) {
                fprintf(stderr, "bench_radix: --wide: hash chain insert failed\n");
                hc_free(&h);
                goto out;
            }
        ns = bu_now_ns() - t0;
        h_ins[r] = (double)ns / n;
        rh->bytes = (double)hc_bytes(&h) / n;
        shuffle(ord, n, &g);
        hit = 0;
        t0 = bu_now_ns();
        for (uint32_t i = 0; i < n; i++)
            hit += hc_has(&h, XXH3_64bits_withSeed(units + (size_t)ord[i] * bu, bu * 4, 0));
        ns = bu_now_ns() - t0;
        h_match[r] = (double)ns / n;
        shuffle(ord, n, &g);
        t0 = bu_now_ns();
        for (uint32_t i = 0; i < n; i++)
            hc_del(&h, XXH3_64bits_withSeed(units + (size_t)ord[i] * bu, bu * 4, 0));
        ns = bu_now_ns() - t0;
        h_rm[r] = (double)ns / n;
        if (hit != n || h.n != 0) {
            fprintf(stderr, "bench_radix: --wide: hash chain: %llu hits of %u\n",
                    (unsigned long long)hit, n);
            hc_free(&h);
            goto out;
        }
        hc_free(&h);
    }
    rr->ins_ns = bu_quantile(r_ins, (size_t)builds, 0.5);
    rr->match_ns = bu_quantile(r_match, (size_t)builds, 0.5);
    rr->rm_ns = bu_quantile(r_rm, (size_t)builds, 0.5);
    rh->ins_ns = bu_quantile(h_ins, (size_t)builds, 0.5);
    rh->match_ns = bu_quantile(h_match, (size_t)builds, 0.5);
    rh->rm_ns = bu_quantile(h_rm, (size_t)builds, 0.5);
    rc = 0;
out:
    radix_path_free(&path);
    free(units);
    free(ord);
    return rc;
}

static void print_wide(const char *kind, uint32_t n, const char *what, const wide_row *r)
{
    printf("%-13s %9u %-16s %12.1f %12.1f %12.1f %10.1f\n", kind, n, what, r->ins_ns,
           r->match_ns, r->rm_ns, r->bytes);
}

static int run_wide(uint32_t n, int builds, uint64_t seed)
{
    printf("# --wide: %u single-block roots under one node; ns per op, median of %d runs; "
           "remove = match + radix_remove\n",
           n, builds);
    printf("%-13s %9s %-16s %12s %12s %12s %10s\n", "tree", "roots", "structure", "insert ns",
           "match ns", "remove ns", "B/root");
    for (int keys = 1; keys >= 0; keys--) {
        wide_row r, h;
        const char *kind = keys ? "keys(bu=2)" : "tokens(bu=16)";
        if (run_wide_kind(n, keys, builds, seed, &r, &h))
            return 1;
        wide_row ratio = {r.ins_ns / h.ins_ns, r.match_ns / h.match_ns, r.rm_ns / h.rm_ns,
                          r.bytes / h.bytes};
        print_wide(kind, n, "kvtier radix", &r);
        print_wide(kind, n, "hash chain", &h);
        printf("%-13s %9u %-16s %12.2f %12.2f %12.2f %10.2f\n", kind, n, "ratio radix/hash",
               ratio.ins_ns, ratio.match_ns, ratio.rm_ns, ratio.bytes);
    }
    return 0;
}

/* ---------------------------------------------------------------- measurement */

typedef struct row {
    double p50_us, p99_us, match_gtok, insert_mtok, bytes_beyond_key;
} row;

typedef struct query {
    size_t req;       /* request whose tokens it replays, or SIZE_MAX for a fresh user */
    uint32_t sys;     /* sysprompt: system prompt of a fresh user */
    uint32_t diverge; /* block where a token is changed; QBLK for none */
    uint64_t fresh;   /* id of a fresh user's continuation */
} query;

/* Tokens of query q into buf[QTOK]; returns the token count (a multiple of BT). */
static uint32_t query_tokens(const workload *w, const query *q, uint32_t *buf)
{
    uint32_t n;
    if (q->req == SIZE_MAX) {
        uint32_t s = w->sys_len[q->sys];
        gen_tokens(1000 + q->sys, s, buf);
        gen_tokens(q->fresh, QTOK - s, buf + s);
        n = QTOK;
    } else {
        n = expand(w, &w->reqs[q->req], buf, QTOK) / BT * BT;
    }
    if (q->diverge < n / BT)
        buf[q->diverge * BT + q->diverge % BT] = VOCAB + 7; /* outside the vocabulary */
    return n;
}


/*
 * Run one workload: build both structures (builds times, first one generating the
 * workload), time n_q queries on each, cross-check every query, fill rows[0..2].
 */
static int run_workload(workload *w, uint64_t target_blocks, int n_q, int builds, row *rows,
                        uint64_t seed)
{
    int rc = -1;
    uint32_t *buf = malloc((MAX_REQ_TOK > QTOK ? MAX_REQ_TOK : QTOK) * sizeof *buf);
    uint32_t *copy = malloc(QTOK * sizeof *copy);
    query *qs = NULL;
    double *lat = NULL, *rate = NULL;
    size_t *radix_len = NULL;
    double ins_r[8], ins_h[8];
    radix_tree *t = NULL;
    hchain h = {0};
    radix_path path;
    radix_path_init(&path);
    if (!buf || !copy)
        goto out;
    if (builds > 8)
        builds = 8;

    /* ---- radix inserts; build 0 also decides how many requests the workload has */
    uint64_t new_tokens = 0;
    for (int b = 0; b < builds; b++) {
        radix_destroy(t);
        t = NULL;
        if (radix_create(BT, 0, NULL, &t)) {
            fprintf(stderr, "bench_radix: radix_create failed\n");
            goto out;
        }
        uint64_t ns = 0;
        size_t i = 0;
        for (;; i++) {
            if (b == 0) {
                if (radix_blocks(t) >= target_blocks)
                    break;
                if (i == w->n_reqs) {
                    int m = w->more(w);
                    if (m < 0)
                        goto out;
                    if (m == 0)
                        break;
                }
            } else if (i == w->n_reqs) {
                break;
            }
            uint32_t n = expand(w, &w->reqs[i], buf, MAX_REQ_TOK);
            radix_node *leaf = NULL;
            uint64_t t0 = bu_now_ns();
            int e = radix_insert(t, buf, n / BT, &path, &leaf);
            if (e == 0 && leaf)
                radix_publish(t, leaf);
            ns += bu_now_ns() - t0;
            if (e) {
                fprintf(stderr, "bench_radix: radix_insert: %d\n", e);
                goto out;
            }
        }
        new_tokens = radix_blocks(t) * BT;
        ins_r[b] = (double)new_tokens / ((double)ns * 1e-9) / 1e6;
    }

    /* ---- hash-chain inserts over the same requests */
    for (int b = 0; b < builds; b++) {
        hc_free(&h);
        if (hc_init(&h))
            goto out;
        uint64_t ns = 0;
        for (size_t i = 0; i < w->n_reqs; i++) {
            uint32_t n = expand(w, &w->reqs[i], buf, MAX_REQ_TOK);
            uint64_t t0 = bu_now_ns();
            long e = hc_insert(&h, buf, n / BT);
            ns += bu_now_ns() - t0;
            if (e < 0)
                goto out;
        }
        ins_h[b] = (double)(h.n * BT) / ((double)ns * 1e-9) / 1e6;
    }
    if (h.n != radix_blocks(t)) {
        fprintf(stderr, "bench_radix: %s: radix holds %llu blocks, hash chain %llu\n", w->name,
                (unsigned long long)radix_blocks(t), (unsigned long long)h.n);
        goto out;
    }

    /* ---- the workload's shape, for comparison with the real trace */
    uint64_t all_blocks = 0, long_reqs = 0;
    for (size_t i = 0; i < w->n_reqs; i++) {
        all_blocks += w->reqs[i].tokens / BT;
        long_reqs += w->reqs[i].tokens >= QTOK;
    }
    printf("# %-10s %zu prompts, %.0f tokens/prompt, %llu cached blocks (%.1f%% of prompt "
           "blocks shared), %llu radix nodes, %llu prompts >= 8k tokens\n",
           w->name, w->n_reqs, (double)all_blocks * BT / (double)w->n_reqs,
           (unsigned long long)radix_blocks(t),
           100.0 * (1.0 - (double)radix_blocks(t) / (double)all_blocks),
           (unsigned long long)radix_nodes(t), (unsigned long long)long_reqs);

    /* ---- queries: 75% cached prompts (full 8k hits where the prompt is that long), 25%
     * diverging ones. Prompts of >= 8k tokens are preferred; short ones only if none are. */
    uint64_t qs_rng = seed ^ 0x5155455259ull;
    qs = malloc((size_t)n_q * sizeof *qs);
    lat = malloc((size_t)n_q * sizeof *lat);
    rate = malloc((size_t)n_q * sizeof *rate);
    radix_len = malloc((size_t)n_q * sizeof *radix_len);
    if (!qs || !lat || !rate || !radix_len)
        goto out;
    for (int k = 0; k < n_q; k++) {
        query *q = &qs[k];
        size_t r;
        do
            r = (size_t)(splitmix(&qs_rng) % w->n_reqs);
        while (long_reqs && w->reqs[r].tokens < QTOK);
        *q = (query){r, 0, QBLK, 0};
        if (unit(&qs_rng) < 0.25) {
            if (w->more == more_sysprompt) {
                q->req = SIZE_MAX;
                q->sys = (uint32_t)(splitmix(&qs_rng) % 8);
                q->fresh = (1ull << 62) + (uint64_t)k;
            } else {
                uint32_t nb = w->reqs[r].tokens < QTOK ? w->reqs[r].tokens / BT : QBLK;
                q->diverge = nb > 1 ? 1 + (uint32_t)(splitmix(&qs_rng) % (nb - 1)) : 0;
            }
        }
    }

    /* ---- matches: a warm-up pass over a tenth of the queries, then all of them timed */
    uint64_t matched_r = 0, ns_r = 0, matched_h = 0, ns_h = 0;
    for (int k = 0; k < n_q / 10; k++) {
        uint32_t n = query_tokens(w, &qs[k], buf);
        radix_match(t, buf, n / BT, 0, &path);
        bu_sink(&path);
    }
    for (int k = 0; k < n_q; k++) {
        uint32_t n = query_tokens(w, &qs[k], buf);
        uint64_t t0 = bu_now_ns();
        int e = radix_match(t, buf, n / BT, 0, &path);
        uint64_t dt = bu_now_ns() - t0;
        if (e) {
            fprintf(stderr, "bench_radix: radix_match: %d\n", e);
            goto out;
        }
        lat[k] = (double)dt * 1e-3;
        rate[k] = (double)(path.blocks * BT) / (double)(dt ? dt : 1);
        ns_r += dt;
        radix_len[k] = (size_t)path.blocks;
        matched_r += path.blocks * BT;
    }
    rows[0].p50_us = bu_quantile(lat, (size_t)n_q, 0.5);
    rows[0].p99_us = bu_quantile(lat, (size_t)n_q, 0.99);
    rows[0].match_gtok = bu_quantile(rate, (size_t)n_q, 0.5);

    for (int k = 0; k < n_q / 10; k++) {
        uint32_t n = query_tokens(w, &qs[k], buf);
        size_t m = hc_match(&h, buf, n / BT);
        bu_sink(&m);
    }
    for (int k = 0; k < n_q; k++) {
        uint32_t n = query_tokens(w, &qs[k], buf);
        uint64_t t0 = bu_now_ns();
        size_t m = hc_match(&h, buf, n / BT);
        uint64_t dt = bu_now_ns() - t0;
        lat[k] = (double)dt * 1e-3;
        rate[k] = (double)(m * BT) / (double)(dt ? dt : 1);
        ns_h += dt;
        matched_h += m * BT;
        if (m != radix_len[k]) {
            fprintf(stderr,
                    "bench_radix: %s: query %d: radix matched %zu blocks, hash chain %zu\n",
                    w->name, k, radix_len[k], m);
            goto out;
        }
    }
    rows[1].p50_us = bu_quantile(lat, (size_t)n_q, 0.5);
    rows[1].p99_us = bu_quantile(lat, (size_t)n_q, 0.99);
    rows[1].match_gtok = bu_quantile(rate, (size_t)n_q, 0.5);

    /* ---- the floor: memcmp of an 8k-token query with an equal copy, both in cache */
    for (int k = 0; k < n_q; k++) {
        uint32_t n = query_tokens(w, &qs[k], buf);
        memcpy(copy, buf, n * sizeof *buf);
        uint64_t t0 = bu_now_ns();
        int c = memcmp(buf, copy, n * sizeof *buf);
        uint64_t dt = bu_now_ns() - t0;
        bu_sink(&c);
        lat[k] = (double)dt * 1e-3;
    }
    rows[2].p50_us = bu_quantile(lat, (size_t)n_q, 0.5);
    rows[2].p99_us = bu_quantile(lat, (size_t)n_q, 0.99);
    rows[2].match_gtok = (double)QTOK / (rows[2].p50_us * 1e3);

    rows[0].insert_mtok = bu_quantile(ins_r, (size_t)builds, 0.5);
    rows[1].insert_mtok = bu_quantile(ins_h, (size_t)builds, 0.5);
    rows[2].insert_mtok = NAN;
    rows[0].bytes_beyond_key = (double)radix_bytes(t) / (double)radix_blocks(t) - 4.0 * BT;
    rows[1].bytes_beyond_key = (double)hc_bytes(&h) / (double)h.n;
    rows[2].bytes_beyond_key = NAN;

    const char *why = NULL;
    if (radix_blocks(t) <= 200000 && radix_check(t, &why) != 0) {
        fprintf(stderr, "bench_radix: %s: radix_check: %s\n", w->name, why ? why : "?");
        goto out;
    }
    rc = 0;
out:
    radix_path_free(&path);
    radix_destroy(t);
    hc_free(&h);
    free(buf);
    free(copy);
    free(qs);
    free(lat);
    free(rate);
    free(radix_len);
    return rc;
}

static const char *opt_str(int argc, char **argv, const char *name)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

static void print_row(const char *wl, const char *what, const row *r)
{
    char ins[16], bytes[16];
    if (isnan(r->insert_mtok))
        snprintf(ins, sizeof ins, "%s", "-");
    else
        snprintf(ins, sizeof ins, "%.1f", r->insert_mtok);
    if (isnan(r->bytes_beyond_key))
        snprintf(bytes, sizeof bytes, "%s", "-");
    else
        snprintf(bytes, sizeof bytes, "%.1f", r->bytes_beyond_key);
    printf("%-14s %-16s %9.2f %9.2f %12.3f %13s %9s\n", wl, what, r->p50_us, r->p99_us,
           r->match_gtok, ins, bytes);
}

int main(int argc, char **argv)
{
    int quick = bu_flag(argc, argv, "--quick");
    uint64_t blocks = (uint64_t)bu_opt(argc, argv, "--blocks", quick ? 10000 : 1000000);
    int n_q = (int)bu_opt(argc, argv, "--queries", quick ? 200 : 2000);
    int builds = (int)bu_opt(argc, argv, "--builds", quick ? 1 : 3);
    uint64_t seed = (uint64_t)bu_opt(argc, argv, "--seed", 42);
    const char *trace = opt_str(argc, argv, "--trace");
    long long wide = bu_opt(argc, argv, "--wide", 0);
    if (n_q < 10 || builds < 1 || blocks < 1 || wide < 0 || wide > UINT32_MAX / 2) {
        fprintf(stderr, "usage: bench_radix [--quick] [--blocks N] [--queries N>=10] "
                        "[--builds N] [--seed N] [--trace conversation_trace.jsonl] "
                        "[--wide N]\n");
        return 2;
    }
    if (wide) {
        bu_header(argc, argv);
        return run_wide((uint32_t)wide, builds, seed);
    }

    workload ws[2] = {{0}, {0}};
    if (trace && load_trace(&ws[0], trace))
        return 1;
    bu_header(argc, argv);
    printf("# %llu cached blocks of %d tokens per workload; %d queries of %d tokens (75%% "
           "cached, 25%% diverging); insert: median of %d builds\n",
           (unsigned long long)blocks, BT, n_q, QTOK, builds);

    ws[0].rng = seed;
    if (trace) {
        ws[0].name = "mooncake-trace";
        ws[0].more = more_trace;
    } else {
        ws[0].name = "mooncake-synth";
        ws[0].more = more_mooncake_synth;
    }
    ws[1].name = "sysprompt";
    ws[1].more = more_sysprompt;
    ws[1].rng = seed * 31 + 7;
    for (int s = 0; s < 8; s++)
        ws[1].sys_len[s] = 1024 + 16 * (uint32_t)(splitmix(&ws[1].rng) % ((4096 - 1024) / 16 + 1));
    ws[1].next_id = 1ull << 32;

    row rows[2][3];
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++)
        if (run_workload(&ws[i], blocks, n_q, builds, rows[i], seed))
            rc = 1;
    if (rc == 0) {
        printf("%-14s %-16s %9s %9s %12s %13s %9s\n", "workload", "structure", "p50 us",
               "p99 us", "match Gtok/s", "insert Mtok/s", "B/block");
        for (int i = 0; i < 2; i++) {
            const row *r = rows[i];
            row ratio = {r[0].p50_us / r[1].p50_us, r[0].p99_us / r[1].p99_us,
                         r[0].match_gtok / r[1].match_gtok, r[0].insert_mtok / r[1].insert_mtok,
                         r[0].bytes_beyond_key / r[1].bytes_beyond_key};
            print_row(ws[i].name, "kvtier radix", &r[0]);
            print_row(ws[i].name, "hash chain", &r[1]);
            print_row(ws[i].name, "ratio radix/hash", &ratio);
            print_row(ws[i].name, "memcmp floor", &r[2]);
        }
        printf("# targets: p50 <= 8 us, match >= 1 Gtok/s, insert >= 100 Mtok/s, <= 64 B/block "
               "beyond key, faster than the hash chain\n");
        for (int i = 0; i < 2; i++) {
            const row *r = rows[i];
            printf("# %-14s p50 %s, match %s, insert %s, bytes %s, vs hash %s\n", ws[i].name,
                   r[0].p50_us <= 8 ? "met" : "MISSED", r[0].match_gtok >= 1 ? "met" : "MISSED",
                   r[0].insert_mtok >= 100 ? "met" : "MISSED",
                   r[0].bytes_beyond_key <= 64 ? "met" : "MISSED",
                   r[0].p50_us < r[1].p50_us ? "faster" : "SLOWER");
        }
    }
    for (int i = 0; i < 2; i++)
        workload_free(&ws[i]);
    return rc;
}
