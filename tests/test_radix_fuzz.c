// ctest: labels=unit;fuzz timeout=300
/*
 * test_radix_fuzz.c — the prefix index against a dumb reference model.
 *
 * The reference is a hash set of cached block-prefixes, hash-consed: an entry is
 * (parent entry, one block of units), so two entries are the same prefix exactly when their
 * parents are and their blocks compare equal. Each entry carries what the tree should say
 * about that block: pending or visible, and its pin count. Every answer of the tree (matched
 * blocks, keys, insert status and leaf size, trim and remove effects, -EBUSY) is predicted
 * from the reference alone; every 1000 operations the whole tree is walked and each of its
 * blocks is looked up in the reference (pending flag and pins must agree) and the counts
 * must be equal, so a block lost, duplicated or altered shows up.
 *
 * Four trees run in turn: token trees with 1, 4 and 16 units per block and a RADIX_KEYS tree
 * (2 units). Prompts come from a few shared "system prompts", prefixes of earlier prompts cut
 * anywhere (so sequences diverge inside nodes and inside blocks) and random tails over a
 * small alphabet (so siblings often share their first unit and differ later in the block).
 * The engine's usage is mimicked: leases pin every node from the root to a path's deepest
 * node and unpin by walking up from it (splits keep that right because the lower part keeps
 * the node identity); eviction trims unpinned leaves from the tail.
 *
 * Wide runs (a token tree of 4 units and a key tree): first 20,000 distinct root blocks are
 * inserted, their first units drawn from only 16 values (siblings share first units and
 * differ later in the block), so the root's kids go through the sorted form and then the
 * hashed form of a wide node (radix.c); then the usual mix of operations runs with 60% of
 * prompts starting at one of those roots, a few hot roots fanning out to 2,000 distinct
 * second blocks (wide nodes below the root, which get split, trimmed and removed), and
 * removes of everything emptying a wide root that then refills.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "radix/radix.h"
#include "testutil.h"
#include "util/util.h"

#define MAX_BLOCKS 48          /* longest prompt, blocks */
#define MAX_UNITS (MAX_BLOCKS * 16)
#define N_SYSTEM 6
#define N_HISTORY 64
#define N_LEASES 12
#define N_PENDING 6
#define CHECK_EVERY 1000
#define OUTSIDE 0x80000000u    /* units at or above this are never inserted */

/* ---------------------------------------------------------------- reference model */

typedef struct ref_ent {
    uint32_t parent; /* entry id of the prefix one block shorter; 0 = the empty prefix */
    uint32_t next;   /* hash chain */
    uint32_t n_kids;
    uint32_t pins;
    uint32_t depth;  /* blocks before this one */
    uint8_t pending, live;
} ref_ent;

typedef struct ref {
    uint32_t bu;
    ref_ent *e;      /* [cap]; id 0 is the empty prefix */
    uint32_t *units; /* [cap * bu] */
    uint32_t n_ids, cap;
    uint32_t *free_ids;
    uint32_t n_free;
    uint32_t *bucket; /* [REF_BUCKETS] chain heads */
    uint64_t live;    /* live entries other than id 0 */
    uint32_t *memo;   /* [cap] stamp*2 + in-subtree, for ref_subtree */
    uint32_t stamp;
} ref;

#define REF_BUCKETS (1u << 16)

static void ref_init(ref *r, uint32_t bu)
{
    memset(r, 0, sizeof(*r));
    r->bu = bu;
    r->cap = 1024;
    r->e = calloc(r->cap, sizeof(*r->e));
    r->units = calloc((size_t)r->cap * bu, sizeof(uint32_t));
    r->memo = calloc(r->cap, sizeof(uint32_t));
    r->free_ids = calloc(r->cap, sizeof(uint32_t));
    r->bucket = calloc(REF_BUCKETS, sizeof(uint32_t));
    TU_CHECK(r->e && r->units && r->memo && r->free_ids && r->bucket);
    r->n_ids = 1;
    r->e[0].live = 1;
}

static void ref_fini(ref *r)
{
    free(r->e);
    free(r->units);
    free(r->memo);
    free(r->free_ids);
    free(r->bucket);
}

static uint32_t ref_hash(const ref *r, uint32_t parent, const uint32_t *blk)
{
    return (uint32_t)XXH3_64bits_withSeed(blk, r->bu * 4, parent) & (REF_BUCKETS - 1);
}

static uint32_t ref_find(const ref *r, uint32_t parent, const uint32_t *blk)
{
    for (uint32_t id = r->bucket[ref_hash(r, parent, blk)]; id; id = r->e[id].next)
        if (r->e[id].parent == parent && !memcmp(r->units + (size_t)id * r->bu, blk, r->bu * 4))
            return id;
    return 0;
}

static uint32_t ref_add(ref *r, uint32_t parent, const uint32_t *blk, int pending)
{
    uint32_t id, h = ref_hash(r, parent, blk);

    TU_CHECK(ref_find(r, parent, blk) == 0);
    if (r->n_free) {
        id = r->free_ids[--r->n_free];
    } else {
        if (r->n_ids == r->cap) {
            r->cap *= 2;
            r->e = realloc(r->e, r->cap * sizeof(*r->e));
            r->units = realloc(r->units, (size_t)r->cap * r->bu * sizeof(uint32_t));
            r->memo = realloc(r->memo, r->cap * sizeof(uint32_t));
            r->free_ids = realloc(r->free_ids, r->cap * sizeof(uint32_t));
            TU_CHECK(r->e && r->units && r->memo && r->free_ids);
            memset(r->memo + r->n_ids, 0, (r->cap - r->n_ids) * sizeof(uint32_t));
        }
        id = r->n_ids++;
    }
    r->e[id] = (ref_ent){.parent = parent, .next = r->bucket[h], .pending = (uint8_t)pending,
                         .live = 1, .depth = parent ? r->e[parent].depth + 1 : 0};
    memcpy(r->units + (size_t)id * r->bu, blk, r->bu * 4);
    r->bucket[h] = id;
    r->e[parent].n_kids++;
    r->live++;
    return id;
}

static void ref_del(ref *r, uint32_t id)
{
    ref_ent *e = &r->e[id];
    uint32_t *link = &r->bucket[ref_hash(r, e->parent, r->units + (size_t)id * r->bu)];

    TU_CHECK(id && e->live && e->n_kids == 0);
    while (*link != id)
        link = &r->e[*link].next;
    *link = e->next;
    r->e[e->parent].n_kids--;
    e->live = 0;
    r->live--;
    r->free_ids[r->n_free++] = id;
}

/* Entry ids of the prefixes of units[0 .. n*bu) that are cached, pending or not: ids[i] for
 * the first i+1 blocks. Returns how many leading prefixes are cached. */
static size_t ref_walk(const ref *r, const uint32_t *units, size_t n, uint32_t *ids)
{
    uint32_t id = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        id = ref_find(r, id, units + i * r->bu);
        if (!id)
            break;
        ids[i] = id;
    }
    return i;
}

/* Longest cached and visible prefix, in blocks. */
static size_t ref_match(const ref *r, const uint32_t *units, size_t n)
{
    uint32_t ids[MAX_BLOCKS];
    size_t k = ref_walk(r, units, n, ids);

    for (size_t i = 0; i < k; i++)
        if (r->e[ids[i]].pending)
            return i;
    return k;
}

/* Mark every live entry in the subtree of `top` (top included) in out[]; returns the count
 * and whether any is pinned or pending. */
static size_t ref_subtree(ref *r, uint32_t top, uint32_t *out, int *busy)
{
    size_t n = 0;
    uint32_t chain[MAX_BLOCKS + 1];

    r->stamp++;
    *busy = 0;
    for (uint32_t id = 1; id < r->n_ids; id++) {
        uint32_t x = id, k = 0, in = 0;

        if (!r->e[id].live)
            continue;
        /* climb to top (in), to the root (out) or to an entry already decided */
        for (;;) {
            if (x == top) {
                in = 1;
                break;
            }
            if (x == 0)
                break;
            if (r->memo[x] >> 1 == r->stamp) {
                in = r->memo[x] & 1;
                break;
            }
            chain[k++] = x;
            x = r->e[x].parent;
        }
        for (uint32_t i = 0; i < k; i++)
            r->memo[chain[i]] = r->stamp << 1 | in;
        if (in) {
            out[n++] = id;
            if (r->e[id].pins || r->e[id].pending)
                *busy = 1;
        }
    }
    return n;
}

/* ---------------------------------------------------------------- test state */

typedef struct lease {
    radix_node *deepest; /* pins run from here up to the root */
    uint32_t units[MAX_UNITS];
    size_t n_blocks; /* blocks from the root to the end of `deepest` */
} lease;

typedef struct pend {
    radix_node *leaf;
} pend;

typedef struct stats {
    long ops, inserts, new_leaves, splits_seen, eagain, ebusy, removes, removed_blocks, evicts,
        lru_evicts, pins, false_hit_probes, long_paths, pending_probes, trims_pending,
        abandoned, insert_splits, pending_removes, wide_seen, wide_inner, max_kids;
} stats;

typedef struct fuzz {
    tu_rng rng;
    uint32_t bu, alphabet, max_blocks;
    uint32_t wide_roots; /* wide runs: distinct root blocks; 0 otherwise */
    int store_all;       /* publish leaves whole (no partial-store trims) */
    unsigned tflags;
    radix_tree *t;
    ref r;
    util_list lru; /* the test's own recency list through node->lru */
    uint64_t clock;
    uint32_t sys[N_SYSTEM][MAX_UNITS];
    size_t sys_units[N_SYSTEM];
    uint32_t hist[N_HISTORY][MAX_UNITS];
    size_t hist_units[N_HISTORY];
    lease leases[N_LEASES];
    size_t n_leases;
    pend pending[N_PENDING];
    size_t n_pending;
    uint64_t freed_nodes; /* node_free hook calls */
    uint32_t *scratch;    /* ids for ref_subtree */
    size_t scratch_cap;
    stats st;
} fuzz;

static void hook_free(void *ctx, radix_node *n)
{
    fuzz *f = ctx;

    /* a node is freed only with no kids, never while a lease or a pending record holds it */
    TU_CHECK(n->n_kids == 0);
    for (size_t i = 0; i < f->n_leases; i++)
        TU_CHECK(f->leases[i].deepest != n);
    for (size_t i = 0; i < f->n_pending; i++)
        TU_CHECK(f->pending[i].leaf != n);
    if (util_list_linked(&n->lru))
        util_list_del(&n->lru);
    f->freed_nodes++;
}

static uint32_t rnd_unit(fuzz *f) { return (uint32_t)tu_below(&f->rng, f->alphabet); }

/* The full sequence from the root to the end of node n; returns its blocks. */
static size_t node_seq(fuzz *f, const radix_node *n, uint32_t *out)
{
    size_t total = n->depth + n->n_blocks;

    TU_CHECK(total <= MAX_BLOCKS);
    for (const radix_node *x = n; x->parent; x = x->parent)
        memcpy(out + x->depth * f->bu, x->units, (size_t)x->n_blocks * f->bu * 4);
    return total;
}

/* Wide runs: root block r (its first unit one of 16 shared by all), or a block of the chain
 * below a hot root r < WIDE_HOT, whose last node fans out to WIDE_FAN distinct blocks. */
#define WIDE_FIRSTS 16
#define WIDE_HOT 4
#define WIDE_FAN 2000
static void wide_block(const fuzz *f, uint32_t r, uint32_t *blk)
{
    blk[0] = r % WIDE_FIRSTS;
    for (uint32_t i = 1; i < f->bu; i++)
        blk[i] = i == 1 ? r : (r * 2654435761u + i) % 1000;
}

/* After hot root r's block in q: two fixed blocks, then fan block v (as far as units go).
 * Returns the units written, the root's included. */
static size_t hot_chain(const fuzz *f, uint32_t r, uint32_t v, uint32_t *q, size_t units)
{
    size_t u = f->bu;

    for (uint32_t i = 0; i < 3 && u < units; i++, u += f->bu)
        wide_block(f, i < 2 ? 2000000 + 2 * r + i : 1000000 + v, q + u);
    return u;
}

/* A prompt of *n blocks in q. */
static void gen_query(fuzz *f, uint32_t *q, size_t *n)
{
    size_t nb = 1 + tu_below(&f->rng, f->max_blocks), units = nb * f->bu, u = 0;
    uint64_t how = tu_below(&f->rng, 10);

    if (f->wide_roots && how < 6) { /* a wide root, maybe the hot chain, a short tail */
        uint32_t r = (uint32_t)tu_below(&f->rng, f->wide_roots);

        if (tu_below(&f->rng, 3) == 0)
            r %= WIDE_HOT;
        nb = 1 + tu_below(&f->rng, r < WIDE_HOT ? 6 : 4);
        units = nb * f->bu;
        wide_block(f, r, q);
        u = f->bu;
        if (r < WIDE_HOT && tu_below(&f->rng, 4))
            u = hot_chain(f, r, (uint32_t)tu_below(&f->rng, WIDE_FAN), q, units);
        how = 10;
    }
    if (how < 4) { /* system prompt + tail */
        size_t s = tu_below(&f->rng, N_SYSTEM), len = f->sys_units[s];
        u = len < units ? len : units;
        memcpy(q, f->sys[s], u * 4);
    } else if (how < 8) { /* an earlier prompt cut anywhere + tail */
        size_t h = tu_below(&f->rng, N_HISTORY), len = f->hist_units[h];
        if (len) {
            u = tu_below(&f->rng, len + 1);
            if (u > units)
                u = units;
            memcpy(q, f->hist[h], u * 4);
        }
        if (how == 7 && u < units) { /* sometimes the whole earlier prompt, longer */
            u = len < units ? len : units;
            memcpy(q, f->hist[h], u * 4);
        }
    }
    for (; u < units; u++)
        q[u] = rnd_unit(f);
    *n = nb;
    if (tu_below(&f->rng, 2)) {
        size_t h = tu_below(&f->rng, N_HISTORY);
        memcpy(f->hist[h], q, units * 4);
        f->hist_units[h] = units;
    }
}

/* The path must run from the root, hold exactly q's first path->blocks blocks, and carry
 * their chained keys. */
static void check_path(fuzz *f, const radix_path *p, const uint32_t *q, size_t n)
{
    uint64_t keys[MAX_BLOCKS];
    const radix_node *parent = radix_root(f->t);
    size_t b = 0;

    TU_CHECK(p->blocks <= n);
    TU_CHECK_EQ(p->n == 0, p->blocks == 0);
    if (p->n > RADIX_PATH_INLINE)
        f->st.long_paths++;
    radix_keys(f->t, q, p->blocks, keys);
    for (uint32_t i = 0; i < p->n; i++) {
        const radix_node *x = p->nodes[i];
        uint32_t used = i + 1 == p->n ? p->last_blocks : x->n_blocks;

        TU_CHECK(x->parent == parent);
        TU_CHECK_EQ(x->depth, b);
        TU_CHECK(used >= 1 && used <= x->n_blocks);
        TU_CHECK(!memcmp(x->units, q + b * f->bu, (size_t)used * f->bu * 4));
        for (uint32_t j = 0; j < used; j++)
            TU_CHECK(x->blocks[j].key == keys[b + j]);
        b += used;
        parent = x;
    }
    TU_CHECK_EQ(b, p->blocks);
}

static void lru_touch(fuzz *f, radix_node *n)
{
    if (util_list_linked(&n->lru))
        util_list_del(&n->lru);
    util_list_add_tail(&f->lru, &n->lru);
    n->last_access = ++f->clock;
}

/* ---------------------------------------------------------------- operations */

/* u was just split off the top of its kid other than `leaf`: it shares that kid's history. */
static void check_split(const radix_node *u, const radix_node *leaf)
{
    const radix_node *low = NULL;

    TU_CHECK(u->n_kids == 1 + (leaf != NULL));
    for (uint32_t i = 0; i < u->n_kids; i++)
        if (u->kids[i].node != leaf)
            low = u->kids[i].node;
    TU_CHECK(low && !(u->flags & RADIX_PENDING) && !util_list_linked(&u->lru));
    TU_CHECK_EQ(u->last_access, low->last_access);
    TU_CHECK_EQ(u->hits, low->hits);
    TU_CHECK_EQ(u->pins, low->pins);
    TU_CHECK_EQ(low->depth, u->depth + u->n_blocks);
}

static void op_match(fuzz *f, radix_path *p)
{
    uint32_t q[MAX_UNITS];
    size_t n, want;
    unsigned flags = tu_below(&f->rng, 2) ? RADIX_SPLIT : 0;
    uint64_t blocks = radix_blocks(f->t), nodes = radix_nodes(f->t);

    gen_query(f, q, &n);
    want = ref_match(&f->r, q, n);
    TU_CHECK_EQ(radix_match(f->t, q, n, flags, p), 0);
    TU_CHECK_EQ(p->blocks, want);
    check_path(f, p, q, n);
    TU_CHECK_EQ(radix_blocks(f->t), blocks);
    if (flags & RADIX_SPLIT) {
        TU_CHECK(p->n == 0 || p->last_blocks == p->nodes[p->n - 1]->n_blocks);
        if (radix_nodes(f->t) != nodes) {
            check_split(p->nodes[p->n - 1], NULL);
            f->st.splits_seen++;
        }
        TU_CHECK(radix_nodes(f->t) - nodes <= 1);
    } else {
        TU_CHECK_EQ(radix_nodes(f->t), nodes);
    }
    for (uint32_t i = p->n; i-- > 0;) {
        lru_touch(f, p->nodes[i]);
        p->nodes[i]->hits++;
    }
}

/* One token changed in block k of a fully cached prompt: at most k blocks may match. */
static void probe_false_hit(fuzz *f, radix_path *p, const uint32_t *q, size_t n)
{
    uint32_t m[MAX_UNITS];
    size_t k = tu_below(&f->rng, n), at = k * f->bu;

    memcpy(m, q, n * f->bu * 4);
    switch (tu_below(&f->rng, 3)) {
    case 0: break;                                    /* first unit of the block */
    case 1: at += f->bu - 1; break;                   /* last */
    default: at += tu_below(&f->rng, f->bu); break;   /* anywhere */
    }
    m[at] = OUTSIDE | (uint32_t)tu_below(&f->rng, 1u << 30);
    TU_CHECK_EQ(ref_match(&f->r, q, n), n);
    TU_CHECK_EQ(radix_match(f->t, m, n, tu_below(&f->rng, 2) ? RADIX_SPLIT : 0, p), 0);
    TU_CHECK(p->blocks <= k);
    TU_CHECK_EQ(p->blocks, k);
    check_path(f, p, m, n);
    f->st.false_hit_probes++;
}

static void ref_set_pending(fuzz *f, const uint32_t *seq, size_t from, size_t to, int pending)
{
    uint32_t ids[MAX_BLOCKS];

    TU_CHECK(ref_walk(&f->r, seq, to, ids) == to);
    for (size_t i = from; i < to; i++) {
        TU_CHECK(f->r.e[ids[i]].pending == !pending);
        f->r.e[ids[i]].pending = (uint8_t)pending;
    }
}

/* Trim leaf n (no kids) to keep blocks in the tree and the reference. */
static void trim_leaf(fuzz *f, radix_node *n, uint32_t keep)
{
    uint32_t seq[MAX_UNITS], ids[MAX_BLOCKS];
    size_t total = node_seq(f, n, seq), first = n->depth + keep;
    uint64_t blocks = radix_blocks(f->t);

    TU_CHECK(ref_walk(&f->r, seq, total, ids) == total);
    TU_CHECK_EQ(radix_trim(f->t, n, keep), 0);
    for (size_t i = total; i-- > first;) {
        TU_CHECK(f->r.e[ids[i]].pins == 0);
        ref_del(&f->r, ids[i]); /* fails unless the tree's leaf is the reference's leaf */
    }
    TU_CHECK_EQ(radix_blocks(f->t), blocks - (total - first));
}

static void publish(fuzz *f, size_t i)
{
    radix_node *leaf = f->pending[i].leaf;
    uint32_t seq[MAX_UNITS];
    size_t total;

    f->pending[i] = f->pending[--f->n_pending];
    if (!f->store_all && tu_below(&f->rng, 5) == 0) { /* only part of it could be stored */
        uint32_t keep = (uint32_t)tu_below(&f->rng, leaf->n_blocks + 1);
        f->st.trims_pending++;
        if (keep == 0) { /* nothing stored: the engine drops the leaf */
            trim_leaf(f, leaf, 0);
            f->st.abandoned++;
            return;
        }
        trim_leaf(f, leaf, keep);
    }
    total = node_seq(f, leaf, seq);
    ref_set_pending(f, seq, leaf->depth, total, 0);
    radix_publish(f->t, leaf);
    TU_CHECK(!(leaf->flags & RADIX_PENDING));
    lru_touch(f, leaf);
}

/* Insert q[0 .. n blocks) (q is modified by probes). */
static void insert_query(fuzz *f, radix_path *p, uint32_t *q, size_t n)
{
    uint32_t ids[MAX_BLOCKS];
    uint64_t keys[MAX_BLOCKS];
    size_t have;
    radix_node *leaf = (radix_node *)1;
    uint64_t blocks = radix_blocks(f->t), nodes;
    int rc, expect_again = 0;

    have = ref_walk(&f->r, q, n, ids);
    for (size_t i = 0; i < have; i++)
        if (f->r.e[ids[i]].pending) {
            expect_again = 1;
            have = i;
            break;
        }
    nodes = radix_nodes(f->t);
    rc = radix_insert(f->t, q, n, p, &leaf);
    f->st.inserts++;
    if (expect_again) {
        TU_CHECK_EQ(rc, -EAGAIN);
        TU_CHECK(leaf == NULL);
        TU_CHECK_EQ(p->blocks, have);
        check_path(f, p, q, n);
        TU_CHECK_EQ(radix_blocks(f->t), blocks);
        f->st.eagain++;
        return;
    }
    TU_CHECK_EQ(rc, 0);
    TU_CHECK_EQ(p->blocks, n);
    if (have == n) {
        TU_CHECK(leaf == NULL);
        check_path(f, p, q, n);
        TU_CHECK_EQ(radix_blocks(f->t), blocks);
        if (tu_below(&f->rng, 4) == 0)
            probe_false_hit(f, p, q, n);
        return;
    }
    f->st.new_leaves++;
    TU_CHECK(leaf != NULL && p->n >= 1 && p->nodes[p->n - 1] == leaf);
    TU_CHECK(leaf->flags & RADIX_PENDING);
    TU_CHECK_EQ(leaf->n_blocks, n - have);
    TU_CHECK_EQ(leaf->depth, have);
    TU_CHECK(leaf->n_kids == 0 && leaf->pins == 0 && leaf->hits == 0);
    TU_CHECK_EQ(p->last_blocks, leaf->n_blocks);
    /* the path is the whole prompt; its keys come from the chain (check_path) */
    check_path(f, p, q, n);
    radix_keys(f->t, q, n, keys);
    for (uint32_t i = 0; i < leaf->n_blocks; i++) {
        const radix_block *b = &leaf->blocks[i];
        TU_CHECK(b->key == keys[have + i] && b->checksum == 0 && b->size == 0 && b->flags == 0);
        for (int s = 0; s < RADIX_TIERS; s++)
            TU_CHECK(b->slot[s] == RADIX_NO_SLOT);
    }
    TU_CHECK_EQ(radix_blocks(f->t), blocks + (n - have));
    /* a divergence inside a node split it: one node more than the leaf */
    TU_CHECK(radix_nodes(f->t) - nodes <= 2);
    if (radix_nodes(f->t) - nodes == 2) {
        TU_CHECK(p->n >= 2);
        check_split(p->nodes[p->n - 2], leaf);
        f->st.insert_splits++;
    }
    for (size_t i = have; i < n; i++)
        ids[i] = ref_add(&f->r, i ? ids[i - 1] : 0, q + i * f->bu, 1);

    /* pending: invisible to match, and a second insert of it must back off */
    if (tu_below(&f->rng, 4) == 0) {
        radix_node *again = NULL;

        TU_CHECK_EQ(radix_match(f->t, q, n, RADIX_SPLIT, p), 0);
        TU_CHECK_EQ(p->blocks, have);
        check_path(f, p, q, n);
        TU_CHECK_EQ(radix_insert(f->t, q, n, p, &again), -EAGAIN);
        TU_CHECK(again == NULL);
        TU_CHECK_EQ(p->blocks, have);
        f->st.pending_probes++;
    }
    if (f->n_pending == N_PENDING)
        publish(f, tu_below(&f->rng, f->n_pending));
    f->pending[f->n_pending++].leaf = leaf;
    if (tu_below(&f->rng, 4) != 0) {
        int whole = leaf->n_blocks == n - have;

        publish(f, f->n_pending - 1);
        /* published in full: the whole prompt is cached now */
        if (whole && ref_match(&f->r, q, n) == n && tu_below(&f->rng, 3) == 0)
            probe_false_hit(f, p, q, n);
    }
}

static void op_insert(fuzz *f, radix_path *p)
{
    uint32_t q[MAX_UNITS];
    size_t n;

    gen_query(f, q, &n);
    insert_query(f, p, q, n);
}

/* Matches with RADIX_SPLIT ending at every block of a cached prompt, in random order, leave
 * one node per block: the full match then needs a path longer than the inline array. */
static void op_split_ladder(fuzz *f, radix_path *p)
{
    uint32_t q[MAX_UNITS], order[MAX_BLOCKS];
    size_t n = ref_match(&f->r, f->hist[0], f->hist_units[0] / f->bu);

    if (n < 2)
        return;
    memcpy(q, f->hist[0], n * f->bu * 4);
    for (uint32_t i = 0; i < n; i++)
        order[i] = i + 1;
    for (size_t i = n; i > 1; i--) {
        size_t j = tu_below(&f->rng, i);
        uint32_t x = order[i - 1];
        order[i - 1] = order[j];
        order[j] = x;
    }
    for (size_t i = 0; i < n; i++) {
        TU_CHECK_EQ(radix_match(f->t, q, order[i], RADIX_SPLIT, p), 0);
        TU_CHECK_EQ(p->blocks, order[i]);
        TU_CHECK_EQ(p->last_blocks, p->nodes[p->n - 1]->n_blocks);
        check_path(f, p, q, order[i]);
    }
    TU_CHECK_EQ(radix_match(f->t, q, n, 0, p), 0);
    TU_CHECK_EQ(p->n, n); /* one node per block */
    check_path(f, p, q, n);
}

static int evictable(const radix_node *n)
{
    return n->n_kids == 0 && n->pins == 0 && !(n->flags & RADIX_PENDING);
}

static void op_evict(fuzz *f)
{
    radix_node *root = radix_root(f->t), *n = NULL;

    if (tu_below(&f->rng, 2)) { /* the least recently used evictable node, as the engine */
        for (util_list *e = f->lru.next; e != &f->lru; e = e->next) {
            radix_node *x = UTIL_CONTAINER_OF(e, radix_node, lru);
            if (evictable(x)) {
                n = x;
                break;
            }
        }
        if (n)
            f->st.lru_evicts++;
    } else { /* a random leaf */
        radix_node *x = root;
        while (x->n_kids)
            x = x->kids[tu_below(&f->rng, x->n_kids)].node;
        if (x != root && evictable(x))
            n = x;
    }
    if (!n)
        return;
    /* a node with kids is not a leaf */
    if (n->parent != root)
        TU_CHECK_EQ(radix_trim(f->t, n->parent, 0), -EINVAL);
    TU_CHECK_EQ(radix_trim(f->t, root, 0), -EINVAL);
    trim_leaf(f, n,
              tu_below(&f->rng, 4) ? n->n_blocks - 1 : (uint32_t)tu_below(&f->rng, n->n_blocks));
    f->st.evicts++;
}

typedef struct remove_ctx {
    long calls;
} remove_ctx;

static void on_remove(void *ctx, radix_node *n, radix_block *b)
{
    remove_ctx *c = ctx;

    TU_CHECK(b >= n->blocks && b < n->blocks + n->n_blocks);
    c->calls++;
}

static void op_remove(fuzz *f, radix_path *p)
{
    uint32_t q[MAX_UNITS], ids[MAX_BLOCKS];
    size_t n, b, cnt, k;
    radix_node *node;
    uint32_t from;
    int busy;
    long rc;
    remove_ctx c = {0};
    uint64_t blocks = radix_blocks(f->t);

    if (f->scratch_cap < f->r.n_ids) {
        f->scratch_cap = f->r.n_ids * 2;
        f->scratch = realloc(f->scratch, f->scratch_cap * sizeof(uint32_t));
        TU_CHECK(f->scratch);
    }
    if (tu_below(&f->rng, 200) == 0) { /* everything */
        node = radix_root(f->t);
        from = 0;
        cnt = ref_subtree(&f->r, 0, f->scratch, &busy); /* every live entry but the root */
    } else {
        gen_query(f, q, &n);
        TU_CHECK_EQ(radix_match(f->t, q, n, 0, p), 0);
        if (p->blocks == 0)
            return;
        /* mostly near the end: a remove near the root would empty the tree too often */
        if (tu_below(&f->rng, 8))
            b = p->blocks - 1 - tu_below(&f->rng, p->blocks < 4 ? p->blocks : 4);
        else
            b = tu_below(&f->rng, p->blocks);
        for (k = 0; k + 1 < p->n && p->nodes[k + 1]->depth <= b; k++)
            ;
        node = p->nodes[k];
        from = (uint32_t)(b - node->depth);
        TU_CHECK(ref_walk(&f->r, q, b + 1, ids) == b + 1);
        cnt = ref_subtree(&f->r, ids[b], f->scratch, &busy);
    }
    if (f->n_pending && tu_below(&f->rng, 8) == 0) { /* a pending leaf is never removed */
        radix_node *pl = f->pending[tu_below(&f->rng, f->n_pending)].leaf;
        uint32_t at = (uint32_t)tu_below(&f->rng, pl->n_blocks);
        TU_CHECK_EQ(radix_remove(f->t, pl, at, on_remove, &c), -EBUSY);
        TU_CHECK_EQ(c.calls, 0);
        f->st.pending_removes++;
    }
    if (tu_below(&f->rng, 50) == 0) /* past the node's end */
        TU_CHECK_EQ(radix_remove(f->t, node, node->n_blocks + 1, on_remove, &c), -EINVAL);
    rc = radix_remove(f->t, node, from, on_remove, &c);
    f->st.removes++;
    if (busy) {
        TU_CHECK_EQ(rc, -EBUSY);
        TU_CHECK_EQ(c.calls, 0);
        TU_CHECK_EQ(radix_blocks(f->t), blocks);
        f->st.ebusy++;
        return;
    }
    TU_CHECK_EQ(rc, (long)cnt);
    TU_CHECK_EQ(c.calls, (long)cnt);
    TU_CHECK_EQ(radix_blocks(f->t), blocks - cnt);
    f->st.removed_blocks += rc;
    /* children before parents */
    for (uint32_t d = MAX_BLOCKS; d-- > 0;)
        for (size_t i = 0; i < cnt; i++)
            if (f->r.e[f->scratch[i]].depth == d)
                ref_del(&f->r, f->scratch[i]);
}

static void op_pin(fuzz *f, radix_path *p)
{
    uint32_t q[MAX_UNITS], ids[MAX_BLOCKS];
    size_t n;
    lease *l;

    if (f->n_leases == N_LEASES)
        return;
    gen_query(f, q, &n);
    TU_CHECK_EQ(radix_match(f->t, q, n, tu_below(&f->rng, 2) ? RADIX_SPLIT : 0, p), 0);
    if (p->blocks == 0)
        return;
    l = &f->leases[f->n_leases++];
    l->deepest = p->nodes[p->n - 1];
    l->n_blocks = node_seq(f, l->deepest, l->units);
    for (radix_node *x = l->deepest; x->parent; x = x->parent)
        x->pins++;
    TU_CHECK(ref_walk(&f->r, l->units, l->n_blocks, ids) == l->n_blocks);
    for (size_t i = 0; i < l->n_blocks; i++)
        f->r.e[ids[i]].pins++;
    f->st.pins++;
}

static void op_unpin(fuzz *f)
{
    uint32_t seq[MAX_UNITS], ids[MAX_BLOCKS];
    size_t i;
    lease *l;

    if (!f->n_leases)
        return;
    i = tu_below(&f->rng, f->n_leases);
    l = &f->leases[i];
    /* splits since the pin moved blocks into new upper nodes; the sequence is the same */
    TU_CHECK_EQ(node_seq(f, l->deepest, seq), l->n_blocks);
    TU_CHECK(!memcmp(seq, l->units, l->n_blocks * f->bu * 4));
    for (radix_node *x = l->deepest; x->parent; x = x->parent) {
        TU_CHECK(x->pins > 0);
        x->pins--;
    }
    TU_CHECK(ref_walk(&f->r, l->units, l->n_blocks, ids) == l->n_blocks);
    for (size_t j = 0; j < l->n_blocks; j++)
        f->r.e[ids[j]].pins--;
    *l = f->leases[--f->n_leases];
}

/* The whole tree against the reference: every block found, same pending flag and pins. */
static void check_all(fuzz *f)
{
    const char *why = NULL;
    struct item {
        radix_node *n;
        uint32_t parent_id;
    } *stack;
    size_t sp = 0, cap = 1024;
    uint64_t blocks = 0, nodes = 0;

    if (radix_check(f->t, &why)) {
        fprintf(stderr, "radix_check: %s\n", why);
        TU_CHECK(!"radix_check failed");
    }
    stack = malloc(cap * sizeof(*stack));
    TU_CHECK(stack);
    stack[sp++] = (struct item){radix_root(f->t), 0};
    while (sp) {
        struct item it = stack[--sp];
        radix_node *n = it.n;
        uint32_t id = it.parent_id;

        for (uint32_t i = 0; i < n->n_blocks; i++) {
            id = ref_find(&f->r, id, n->units + (size_t)i * f->bu);
            TU_CHECK(id != 0);
            TU_CHECK_EQ(f->r.e[id].pending, !!(n->flags & RADIX_PENDING));
            TU_CHECK_EQ(f->r.e[id].pins, n->pins);
            TU_CHECK_EQ(f->r.e[id].depth, n->depth + i);
        }
        /* a leaf of the tree is a leaf of the reference */
        TU_CHECK(n->n_kids || n->n_blocks == 0 || f->r.e[id].n_kids == 0);
        /* as many kids as the reference has distinct next blocks */
        TU_CHECK_EQ(n->n_kids, f->r.e[id].n_kids);
        if (n->n_kids > 64) {
            f->st.wide_seen++;
            f->st.wide_inner += n->parent != NULL;
        }
        if (n->n_kids > f->st.max_kids)
            f->st.max_kids = n->n_kids;
        blocks += n->n_blocks;
        nodes += n->parent != NULL;
        if (sp + n->n_kids > cap) {
            cap = (sp + n->n_kids) * 2;
            stack = realloc(stack, cap * sizeof(*stack));
            TU_CHECK(stack);
        }
        for (uint32_t i = 0; i < n->n_kids; i++)
            stack[sp++] = (struct item){n->kids[i].node, id};
    }
    free(stack);
    TU_CHECK_EQ(blocks, f->r.live);
    TU_CHECK_EQ(radix_blocks(f->t), f->r.live);
    TU_CHECK_EQ(radix_nodes(f->t), nodes);
}

static void run(uint64_t seed, uint32_t bu, unsigned tflags, uint32_t alphabet,
                uint32_t max_blocks, long n_ops, uint64_t cap_blocks, uint32_t wide_roots)
{
    fuzz *f = calloc(1, sizeof(*f));
    radix_hooks hooks = {hook_free, f, NULL};
    radix_path path;
    uint64_t nodes_at_end;

    TU_CHECK(f);
    tu_rng_init(&f->rng, seed ^ (bu * 0x9e3779b97f4a7c15ull) ^ tflags);
    f->bu = bu;
    f->tflags = tflags;
    f->alphabet = alphabet;
    f->max_blocks = max_blocks;
    f->wide_roots = wide_roots;
    util_list_init(&f->lru);
    ref_init(&f->r, bu);
    TU_CHECK_EQ(radix_create(bu, tflags, &hooks, &f->t), 0);
    TU_CHECK_EQ(radix_bu(f->t), bu);
    radix_path_init(&path);
    for (int s = 0; s < N_SYSTEM; s++) {
        f->sys_units[s] = tu_below(&f->rng, (max_blocks / 2 + 1) * bu);
        for (size_t u = 0; u < f->sys_units[s]; u++)
            f->sys[s][u] = rnd_unit(f);
    }
    if (wide_roots) { /* every root block once, one or two blocks each */
        uint32_t q[MAX_UNITS];
        radix_node *root = radix_root(f->t);

        for (uint32_t r = 0; r < wide_roots; r++) {
            size_t n = 1 + tu_below(&f->rng, 2);

            wide_block(f, r, q);
            for (size_t u = bu; u < n * bu; u++)
                q[u] = rnd_unit(f);
            f->store_all = 1;
            insert_query(f, &path, q, n);
            f->store_all = 0;
            if (r == 64 || r == 128 || r % 4999 == 0)
                check_all(f);
            TU_CHECK_EQ(root->n_kids, r + 1);
        }
        for (uint32_t r = 0; r < WIDE_HOT; r++) /* the hot roots fan out */
            for (uint32_t v = 0; v < 150; v++) {
                size_t n = 4 + tu_below(&f->rng, 2);

                wide_block(f, r, q);
                hot_chain(f, r, v, q, n * bu);
                for (size_t u = 4 * bu; u < n * bu; u++)
                    q[u] = rnd_unit(f);
                f->store_all = 1;
                insert_query(f, &path, q, n);
                while (f->n_pending) /* the next one walks through this one */
                    publish(f, 0);
                f->store_all = 0;
            }
        check_all(f);
        TU_CHECK(f->st.wide_inner >= WIDE_HOT);
    }

    for (long op = 0; op < n_ops; op++) {
        uint64_t r = tu_below(&f->rng, 100);

        f->st.ops++;
        if (f->r.live > cap_blocks && r < 40)
            r = 80; /* over budget: evict instead of insert */
        if (r < 30)
            op_insert(f, &path);
        else if (r < 55)
            op_match(f, &path);
        else if (r < 60)
            op_pin(f, &path);
        else if (r < 65)
            op_unpin(f);
        else if (r < 70) {
            if (f->n_pending)
                publish(f, tu_below(&f->rng, f->n_pending));
        } else if (r < 74)
            op_remove(f, &path);
        else if (r < 75)
            op_split_ladder(f, &path);
        else
            op_evict(f);
        if (op % CHECK_EVERY == 0)
            check_all(f);
    }
    check_all(f);

    /* drain: publish, unpin, then everything can go */
    while (f->n_pending)
        publish(f, 0);
    while (f->n_leases)
        op_unpin(f);
    check_all(f);
    printf("bu=%u%s: ops=%ld inserts=%ld leaves=%ld splits(match)=%ld eagain=%ld ebusy=%ld "
            "removes=%ld removed=%ld evicts=%ld (lru %ld) pins=%ld false-hit probes=%ld "
            "paths>%d=%ld pending probes=%ld pending trims=%ld abandoned=%ld insert splits=%ld "
            "wide nodes seen=%ld (below the root %ld) max kids=%ld blocks=%llu "
            "nodes=%llu bytes=%llu\n",
            bu, tflags & RADIX_KEYS ? " keys" : "", f->st.ops, f->st.inserts, f->st.new_leaves,
            f->st.splits_seen, f->st.eagain, f->st.ebusy, f->st.removes, f->st.removed_blocks,
            f->st.evicts, f->st.lru_evicts, f->st.pins, f->st.false_hit_probes,
            RADIX_PATH_INLINE, f->st.long_paths, f->st.pending_probes, f->st.trims_pending,
            f->st.abandoned, f->st.insert_splits, f->st.wide_seen, f->st.wide_inner, f->st.max_kids,
            (unsigned long long)radix_blocks(f->t),
            (unsigned long long)radix_nodes(f->t), (unsigned long long)radix_bytes(f->t));
    /* every interesting outcome happened, or the run proved little */
    TU_CHECK(f->st.new_leaves > 100 && f->st.splits_seen > 10 && f->st.eagain > 0 &&
             f->st.ebusy > 0 && f->st.removed_blocks > 0 && f->st.lru_evicts > 0 &&
             f->st.false_hit_probes > 100 && f->st.pending_probes > 0 && f->st.abandoned > 0 &&
             f->st.insert_splits > 10 && f->st.pending_removes > 0);
    if (bu == 1)
        TU_CHECK(f->st.long_paths > 0);
    if (wide_roots)
        TU_CHECK(f->st.wide_seen > 0 && f->st.wide_inner > 0);

    nodes_at_end = radix_nodes(f->t);
    f->freed_nodes = 0;
    radix_path_free(&path);
    radix_destroy(f->t);
    TU_CHECK_EQ(f->freed_nodes, nodes_at_end); /* node_free on every node */
    TU_CHECK(util_list_empty(&f->lru));
    ref_fini(&f->r);
    free(f->scratch);
    free(f);
}

int main(void)
{
    uint64_t seed = tu_seed("test_radix_fuzz", 20240611);

    /* bu, flags, alphabet, longest prompt (blocks), ops, block budget, wide roots */
    run(seed, 1, 0, 6, MAX_BLOCKS, 100000, 3000, 0);
    run(seed, 4, 0, 3, 32, 100000, 3000, 0);
    run(seed, 16, 0, 2, 24, 100000, 2500, 0);
    run(seed, 2, RADIX_KEYS, 4, MAX_BLOCKS, 100000, 3000, 0);
    /* wide: 20k distinct roots sharing 16 first units */
    run(seed, 4, 0, 3, 16, 100000, 40000, 20000);
    run(seed, 2, RADIX_KEYS, 4, 16, 100000, 40000, 20000);
    printf("test_radix_fuzz: ok\n");
    return 0;
}
