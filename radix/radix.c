/*
 * radix.c — the prefix index. Layout, split rule and contract: radix.h.
 *
 * Allocation discipline: every fallible allocation of an operation happens before its first
 * change to the tree, so -ENOMEM always leaves the tree as it was. The one exception is the
 * shrinking realloc after a split, whose failure is absorbed (the node keeps its larger
 * buffer and the layout that goes with it).
 *
 * Accounting: t->bytes is the sum of the sizes requested for every allocation the tree holds
 * (tree struct, node headers, data buffers sized by cap_blocks, kid arrays sized by cap_kids);
 * radix_check() recomputes it from the structure.
 *
 * Walks never recurse: a pre-order step goes to the first kid, else to the next sibling of
 * the nearest ancestor that has one (its index found by kid_index), so a degenerate chain of
 * many thousands of one-block nodes costs no stack.
 *
 * Kids: a kid array of capacity <= KIDS_SORTED_MAX is kept sorted (radix.h) and searched by
 * binary search; adding or removing a kid moves at most that many entries. A wider array
 * ("wide node": cap_kids > KIDS_SORTED_MAX, a node that grew past 64 kids) holds its kids
 * densely in no particular order (append; removal moves the last kid into the hole) and is
 * followed, in the same allocation, by an open-addressing table of 2 * cap_kids 16-byte slots
 * (load <= 1/2, linear probing, backward-shift deletion, no tombstones):
 *
 *   [radix_kid kids[cap_kids]][wide_slot slot[2 * cap_kids]]
 *   slot = {hi, node}: hi = 0 (empty) or (h << 32 | (index in kids + 1)),
 *          h = kid_hash(first block) (also kept in kids[i].hash), node = kids[i].node
 *
 * h is 32 bits of the tree-seeded XXH3 of the kid's whole first block, so siblings sharing a
 * first unit are distinct entries. A probe compares h, then the kid's first block (through
 * the slot's node pointer) with memcmp: the hash only locates a candidate, a hit is always an
 * exact compare. The node pointer in the slot spares a lookup the dependent load of kids[i]
 * (measured: wide_probe's time was three equal cache misses, slot, kid entry and the kid's
 * units; the kid's units are needed by the caller anyway), and kids[i].hash lets a removal
 * re-point the slot of the kid that fills the hole without hashing (touching) that kid.
 * Growth (2x, in kid_reserve) builds a fresh buffer and rehashes from the old slots' h (or,
 * when the array first turns wide, from the kids' blocks); it allocates before changing
 * anything. A wide node stays wide when it shrinks (like any kid array it keeps its capacity
 * until the node is freed or radix_remove drops what is below it), so removals never allocate.
 */
#include "radix/radix.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <xxhash.h>

struct radix_tree {
    radix_node root; /* the sentinel: no blocks, never freed on its own */
    uint32_t bu;     /* uint32 units per block */
    unsigned flags;  /* RADIX_KEYS */
    radix_hooks hooks;
    uint64_t bytes;    /* requested heap bytes held, this struct included */
    uint64_t n_blocks; /* blocks in the tree, pending included */
    uint64_t n_nodes;  /* nodes, root excluded */
    uint64_t kid_seed; /* seed of kid_hash (per tree, so sibling layouts cannot be forced) */
};

/* Kid arrays of up to this capacity are sorted; larger ones are hashed (a wide node). */
#define KIDS_SORTED_MAX 64u

/* ---------------------------------------------------------------- accounting allocator */

static void *tree_alloc(radix_tree *t, size_t size)
{
    void *p = util_malloc(size);
    if (p)
        t->bytes += size;
    return p;
}

static void tree_free(radix_tree *t, void *p, size_t size)
{
    if (!p)
        return;
    t->bytes -= size;
    util_free(p);
}

static void *tree_realloc(radix_tree *t, void *p, size_t old_size, size_t size)
{
    void *q = util_realloc(p, size);
    if (q)
        t->bytes = t->bytes - old_size + size;
    return q;
}

/* ---------------------------------------------------------------- node data layout */

/* Bytes of the units region of a data buffer for cap blocks, padded so blocks[] is 8-aligned. */
static size_t units_size(const radix_tree *t, uint32_t cap)
{
    return ((size_t)cap * t->bu * sizeof(uint32_t) + 7) & ~(size_t)7;
}

static size_t data_size(const radix_tree *t, uint32_t cap)
{
    return units_size(t, cap) + (size_t)cap * sizeof(radix_block);
}

/* One slot of a wide node's hash table (radix.c header comment). */
typedef struct wide_slot {
    uint64_t hi;      /* 0: empty; else h << 32 | (kid index + 1) */
    radix_node *node; /* that kid's node */
} wide_slot;

/* Bytes of a kid buffer of capacity cap: the array, and for a wide node its slot table. */
static size_t kids_size(uint32_t cap)
{
    return (size_t)cap * sizeof(radix_kid) +
           (cap > KIDS_SORTED_MAX ? 2 * (size_t)cap * sizeof(wide_slot) : 0);
}

static void node_set_data(const radix_tree *t, radix_node *n, void *data, uint32_t cap)
{
    n->units = data;
    n->blocks = (radix_block *)((char *)data + units_size(t, cap));
    n->cap_blocks = cap;
}

/*
 * A detached node with room for exactly n_blocks blocks (n_blocks >= 1), n_blocks set, the
 * units and block metadata left for the caller to fill. Not counted in n_nodes/n_blocks
 * until linked. NULL on allocation failure, nothing held.
 */
static radix_node *node_new(radix_tree *t, size_t n_blocks)
{
    radix_node *n = NULL;
    void *data = NULL;

    /* 48 >= the per-block bytes of data_size() beyond the units, padding included */
    if (n_blocks > UINT32_MAX || n_blocks > (SIZE_MAX / 2) / ((size_t)t->bu * 4 + 48))
        goto fail;
    n = tree_alloc(t, sizeof(*n));
    if (!n)
        goto fail;
    data = tree_alloc(t, data_size(t, (uint32_t)n_blocks));
    if (!data)
        goto fail;
    memset(n, 0, sizeof(*n));
    node_set_data(t, n, data, (uint32_t)n_blocks);
    n->n_blocks = (uint32_t)n_blocks;
    util_list_init(&n->lru);
    for (int i = 0; i < RADIX_TIERS; i++)
        util_list_init(&n->tlink[i]);
    util_list_init(&n->wlink);
    return n;
fail:
    tree_free(t, n, sizeof(*n));
    return NULL;
}

/* Free the memory of a node that was never linked (no hook: the caller never saw it). */
static void node_discard(radix_tree *t, radix_node *n)
{
    tree_free(t, n->kids, kids_size(n->cap_kids));
    tree_free(t, n->units, data_size(t, n->cap_blocks));
    tree_free(t, n, sizeof(*n));
}

/* Free a node already unlinked from its parent, with no kids left. */
static void node_release(radix_tree *t, radix_node *n)
{
    if (t->hooks.node_free)
        t->hooks.node_free(t->hooks.ctx, n);
    t->n_blocks -= n->n_blocks;
    t->n_nodes--;
    node_discard(t, n);
}

/* ---------------------------------------------------------------- kids */

static int kids_wide(const radix_node *p) { return p->cap_kids > KIDS_SORTED_MAX; }

/* The slot table of a wide node (after kids[cap_kids]; radix_kid is 8-aligned). */
static wide_slot *kid_tab(const radix_node *p) { return (wide_slot *)(p->kids + p->cap_kids); }

static wide_slot slot_make(uint32_t h, uint32_t i, radix_node *n)
{
    return (wide_slot){(uint64_t)h << 32 | (uint64_t)(i + 1), n};
}

static uint32_t kid_mask(const radix_node *p) { return 2 * p->cap_kids - 1; }

/*
 * RADIX_KID_HASH_BITS (tests only, tests/test_radix_collide.c): keep only that many bits of
 * the hash, spread over 32 so probe runs stay short, so that many siblings share a hash and
 * every lookup has to tell them apart by their units.
 */
static uint32_t kid_hash(const radix_tree *t, const uint32_t *blk)
{
    uint64_t h = XXH3_64bits_withSeed(blk, (size_t)t->bu * sizeof(uint32_t), t->kid_seed);
#ifdef RADIX_KID_HASH_BITS
    return (uint32_t)(h & ((1u << RADIX_KID_HASH_BITS) - 1)) * 2654435761u;
#else
    return (uint32_t)h;
#endif
}

/* Order of sibling first blocks: first unit numerically, then the rest of the block bytewise
 * (any total order does; this one decides most probes from the kid array alone). */
static int block_cmp(const radix_tree *t, const uint32_t *a, const uint32_t *b)
{
    if (a[0] != b[0])
        return a[0] < b[0] ? -1 : 1;
    return t->bu == 1 ? 0 : memcmp(a + 1, b + 1, ((size_t)t->bu - 1) * sizeof(uint32_t));
}

/*
 * Wide node p: the slot holding the kid whose first block is blk (h = kid_hash(blk)), with
 * *found = 1; else the empty slot that ends the probe run, with *found = 0. Touches the
 * table and, on a hash match, the candidate's units (exact compare).
 */
static uint32_t wide_probe(const radix_tree *t, const radix_node *p, const uint32_t *blk,
                           uint32_t h, int *found)
{
    const wide_slot *tab = kid_tab(p);
    uint32_t mask = kid_mask(p);

    for (uint32_t j = h & mask;; j = (j + 1) & mask) {
        uint64_t s = tab[j].hi;

        if (!s) {
            *found = 0;
            return j;
        }
        if ((uint32_t)(s >> 32) == h &&
            memcmp(tab[j].node->units, blk, (size_t)t->bu * sizeof(uint32_t)) == 0) {
            *found = 1;
            return j;
        }
    }
}

/* Wide node p: the slot of kid node n, whose first block hashes to h (present). Compares
 * node pointers only. */
static uint32_t wide_slot_of(const radix_node *p, uint32_t h, const radix_node *n)
{
    const wide_slot *tab = kid_tab(p);
    uint32_t mask = kid_mask(p), j = h & mask;

    while (tab[j].node != n) {
        assert(tab[j].hi);
        j = (j + 1) & mask;
    }
    return j;
}

/* Add slot s to a table with a free slot and no equal key. */
static void tab_put(wide_slot *tab, uint32_t mask, wide_slot s)
{
    uint32_t j = (uint32_t)(s.hi >> 32) & mask;

    while (tab[j].hi)
        j = (j + 1) & mask;
    tab[j] = s;
}

/* Empty slot j, shifting back later entries of its probe run so every entry stays reachable. */
static void tab_delete(wide_slot *tab, uint32_t mask, uint32_t j)
{
    for (uint32_t i = (j + 1) & mask; tab[i].hi; i = (i + 1) & mask) {
        uint32_t home = (uint32_t)(tab[i].hi >> 32) & mask;

        /* the entry at i may fill hole j unless its home lies cyclically in (j, i] */
        if (((i - home) & mask) >= ((i - j) & mask)) {
            tab[j] = tab[i];
            j = i;
        }
    }
    tab[j] = (wide_slot){0, NULL};
}

/*
 * Sorted node: binary search of p's kids for the child whose first block is blk[0 .. bu).
 * Returns its index with *found = 1, or the index where such a child would be inserted with
 * *found = 0. Only probes whose first unit equals blk[0] touch the child's units.
 */
static uint32_t kid_search(const radix_tree *t, const radix_node *p, const uint32_t *blk,
                           int *found)
{
    uint32_t lo = 0, hi = p->n_kids, f = blk[0];

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint32_t kf = p->kids[mid].first;
        int c;

        if (kf != f)
            c = kf < f ? -1 : 1;
        else if (t->bu == 1)
            c = 0;
        else
            c = memcmp(p->kids[mid].node->units + 1, blk + 1,
                       ((size_t)t->bu - 1) * sizeof(uint32_t));
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static radix_node *kid_find(const radix_tree *t, const radix_node *p, const uint32_t *blk)
{
    int found;
    uint32_t i;

    if (kids_wide(p)) {
        i = wide_probe(t, p, blk, kid_hash(t, blk), &found);
        return found ? kid_tab(p)[i].node : NULL;
    }
    i = kid_search(t, p, blk, &found);
    return found ? p->kids[i].node : NULL;
}

void radix_hint_slot(const radix_tree *t, const uint32_t *blk)
{
    const radix_node *p = &t->root;
    if (kids_wide(p))
        __builtin_prefetch(&kid_tab(p)[kid_hash(t, blk) & kid_mask(p)]);
}

radix_node *radix_hint_kid(const radix_tree *t, const uint32_t *blk)
{
    const radix_node *p = &t->root;
    radix_node *n = NULL;
    if (kids_wide(p)) {
        const wide_slot *tab = kid_tab(p);
        uint32_t h = kid_hash(t, blk), mask = kid_mask(p);
        for (uint32_t j = h & mask; tab[j].hi; j = (j + 1) & mask)
            if ((uint32_t)(tab[j].hi >> 32) == h) {
                n = tab[j].node;
                break;
            }
    } else {
        uint32_t lo = 0, hi = p->n_kids;
        while (lo < hi) { /* the first kid whose first unit is blk[0] */
            uint32_t mid = lo + (hi - lo) / 2;
            if (p->kids[mid].first < blk[0])
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < p->n_kids && p->kids[lo].first == blk[0])
            n = p->kids[lo].node;
    }
    if (n)
        __builtin_prefetch(n);
    return n;
}

/* Index of child n in its parent's kids (n must be linked). */
static uint32_t kid_index(const radix_tree *t, const radix_node *n)
{
    const radix_node *p = n->parent;
    int found;
    uint32_t i;

    if (kids_wide(p)) {
        i = (uint32_t)kid_tab(p)[wide_slot_of(p, kid_hash(t, n->units), n)].hi - 1;
        found = 1;
    } else {
        i = kid_search(t, p, n->units, &found);
    }
    assert(found && p->kids[i].node == n);
    (void)found;
    return i;
}

/*
 * Make room for one more kid in p. 0 or -ENOMEM (p unchanged). Capacity doubles; past
 * KIDS_SORTED_MAX the array moves to a fresh buffer with a slot table (a wide node).
 */
static int kid_reserve(radix_tree *t, radix_node *p)
{
    uint32_t cap;
    radix_kid *k;
    wide_slot *tab;

    if (p->n_kids < p->cap_kids)
        return 0;
    if (p->cap_kids > UINT32_MAX / 4)
        return -ENOMEM;
    cap = p->cap_kids ? p->cap_kids * 2 : 2;
    if (cap <= KIDS_SORTED_MAX) {
        k = tree_realloc(t, p->kids, kids_size(p->cap_kids), kids_size(cap));
        if (!k)
            return -ENOMEM;
        p->kids = k;
        p->cap_kids = cap;
        return 0;
    }
    if (kids_size(cap) / (sizeof(radix_kid) + 2 * sizeof(wide_slot)) != cap) /* overflow */
        return -ENOMEM;
    k = tree_alloc(t, kids_size(cap));
    if (!k)
        return -ENOMEM;
    tab = (wide_slot *)(k + cap);
    memcpy(k, p->kids, (size_t)p->n_kids * sizeof(radix_kid));
    memset(tab, 0, 2 * (size_t)cap * sizeof(wide_slot));
    if (kids_wide(p)) { /* rehash from the old slots: their h is all a slot's place needs */
        const wide_slot *old = kid_tab(p);
        for (uint32_t j = 0; j <= kid_mask(p); j++)
            if (old[j].hi)
                tab_put(tab, 2 * cap - 1, old[j]);
    } else {
        for (uint32_t i = 0; i < p->n_kids; i++) {
            k[i].hash = kid_hash(t, k[i].node->units);
            tab_put(tab, 2 * cap - 1, slot_make(k[i].hash, i, k[i].node));
        }
    }
    tree_free(t, p->kids, kids_size(p->cap_kids));
    p->kids = k;
    p->cap_kids = cap;
    return 0;
}

/* Add child n (linked nowhere, no sibling with its first block) to p; room reserved. */
static void kid_add(radix_tree *t, radix_node *p, radix_node *n)
{
    uint32_t i, h = 0;

    if (kids_wide(p)) {
        i = p->n_kids;
        h = kid_hash(t, n->units);
        tab_put(kid_tab(p), kid_mask(p), slot_make(h, i, n));
    } else {
        int found;

        i = kid_search(t, p, n->units, &found);
        assert(!found);
        (void)found;
        memmove(p->kids + i + 1, p->kids + i, (size_t)(p->n_kids - i) * sizeof(radix_kid));
    }
    p->kids[i] = (radix_kid){.first = n->units[0], .hash = h, .node = n};
    p->n_kids++;
    n->parent = p;
}

static void kid_unlink(radix_tree *t, radix_node *n)
{
    radix_node *p = n->parent;
    uint32_t i, last = p->n_kids - 1;

    if (!kids_wide(p)) {
        i = kid_index(t, n);
        memmove(p->kids + i, p->kids + i + 1, (size_t)(last - i) * sizeof(radix_kid));
        p->n_kids--;
        return;
    }
    {
        wide_slot *tab = kid_tab(p);
        uint32_t j;

        j = wide_slot_of(p, kid_hash(t, n->units), n);
        i = (uint32_t)tab[j].hi - 1;
        assert(p->kids[i].node == n);
        if (i != last) { /* the last kid fills the hole; its slot follows it */
            const radix_kid *lk = &p->kids[last];

            tab[wide_slot_of(p, lk->hash, lk->node)] = slot_make(lk->hash, i, lk->node);
            p->kids[i] = *lk;
        }
        tab_delete(tab, kid_mask(p), j);
        p->n_kids--;
    }
}

/* Forget every kid of p (their nodes are gone or going); p keeps its buffer. */
static void kids_clear(radix_node *p)
{
    if (kids_wide(p))
        memset(kid_tab(p), 0, 2 * (size_t)p->cap_kids * sizeof(wide_slot));
    p->n_kids = 0;
}

/* ---------------------------------------------------------------- walks */

/* Pre-order successor of n within the subtree of top, or NULL. */
static radix_node *next_preorder(const radix_tree *t, radix_node *n, const radix_node *top)
{
    if (n->n_kids)
        return n->kids[0].node;
    while (n != top) {
        radix_node *p = n->parent;
        uint32_t i = kid_index(t, n);

        if (i + 1 < p->n_kids)
            return p->kids[i + 1].node;
        n = p;
    }
    return NULL;
}

/*
 * Free every node below top, deepest-last-kid first, calling fn on each block first.
 * Leaves top with no kids (its kid array kept). Returns the blocks freed.
 */
static long free_below(radix_tree *t, radix_node *top,
                       void (*fn)(void *ctx, radix_node *n, radix_block *b), void *ctx)
{
    radix_node *n = top;
    long freed = 0;

    for (;;) {
        radix_node *p;

        if (n->n_kids) {
            n = n->kids[n->n_kids - 1].node;
            continue;
        }
        if (n == top) {
            kids_clear(top);
            return freed;
        }
        p = n->parent;
        if (fn)
            for (uint32_t i = 0; i < n->n_blocks; i++)
                fn(ctx, n, &n->blocks[i]);
        freed += n->n_blocks;
        p->n_kids--; /* n was p's last kid (p's table, if wide, is cleared or freed later) */
        node_release(t, n);
        n = p;
    }
}

/* ---------------------------------------------------------------- compare */

/* Index of the first unit where a and b differ; they are known to differ within n units. */
static size_t first_diff(const uint32_t *a, const uint32_t *b, size_t n)
{
    size_t i = 0;

    while (n - i > 1024 && memcmp(a + i, b + i, 1024 * sizeof(uint32_t)) == 0)
        i += 1024;
    while (n - i > 16 && memcmp(a + i, b + i, 16 * sizeof(uint32_t)) == 0)
        i += 16;
    while (a[i] == b[i])
        i++;
    return i;
}

/*
 * Leading blocks of n equal to q[0 .. max*bu), max >= 1, given that n's first block equals
 * q's (the kid search compared it). One memcmp over the whole overlap; the mismatch is only
 * located when there is one.
 */
static uint32_t common_blocks(const radix_tree *t, const radix_node *n, const uint32_t *q,
                              size_t max)
{
    size_t bu = t->bu, span = n->n_blocks < max ? n->n_blocks : max;
    size_t len = (span - 1) * bu;

    if (len == 0 || memcmp(q + bu, n->units + bu, len * sizeof(uint32_t)) == 0)
        return (uint32_t)span;
    return (uint32_t)(first_diff(q + bu, n->units + bu, len) / bu + 1);
}

/* ---------------------------------------------------------------- keys */

static uint64_t block_key(const radix_tree *t, const uint32_t *blk, uint64_t prev)
{
    if (t->flags & RADIX_KEYS)
        return (uint64_t)blk[0] | (uint64_t)blk[1] << 32;
    return XXH3_64bits_withSeed(blk, (size_t)t->bu * sizeof(uint32_t), prev);
}

void radix_keys(const radix_tree *t, const uint32_t *units, size_t n_blocks, uint64_t *keys)
{
    uint64_t prev = 0;

    for (size_t i = 0; i < n_blocks; i++)
        keys[i] = prev = block_key(t, units + i * t->bu, prev);
}

/* ---------------------------------------------------------------- paths */

void radix_path_init(radix_path *p)
{
    p->nodes = p->inline_nodes;
    p->cap = RADIX_PATH_INLINE;
    p->n = 0;
    p->last_blocks = 0;
    p->blocks = 0;
}

void radix_path_free(radix_path *p)
{
    if (p->nodes != p->inline_nodes)
        util_free(p->nodes);
    p->nodes = p->inline_nodes;
    p->cap = RADIX_PATH_INLINE;
    p->n = 0;
}

/* Room for `want` nodes. 0 or -ENOMEM (path unchanged). */
static int path_reserve(radix_path *p, size_t want)
{
    radix_node **nodes;
    size_t cap = p->cap;

    if (want <= cap)
        return 0;
    while (cap < want)
        cap *= 2;
    if (cap > UINT32_MAX)
        return -ENOMEM;
    if (p->nodes == p->inline_nodes) {
        nodes = util_malloc(cap * sizeof(*nodes));
        if (!nodes)
            return -ENOMEM;
        memcpy(nodes, p->nodes, (size_t)p->n * sizeof(*nodes));
    } else {
        nodes = util_realloc(p->nodes, cap * sizeof(*nodes));
        if (!nodes)
            return -ENOMEM;
    }
    p->nodes = nodes;
    p->cap = (uint32_t)cap;
    return 0;
}

static void path_reset(radix_path *p)
{
    p->n = 0;
    p->last_blocks = 0;
    p->blocks = 0;
}

/* ---------------------------------------------------------------- split */

/* Give n the smallest buffer for its blocks; on failure it keeps the one it has. */
static void node_shrink(radix_tree *t, radix_node *n)
{
    uint32_t cap = n->cap_blocks, nb = n->n_blocks;
    char *data = (char *)n->units, *q;

    if (nb == cap)
        return;
    /* [units nb*bu | pad | ... | blocks at units_size(cap)] -> [units | pad | blocks] */
    memmove(data + units_size(t, nb), n->blocks, (size_t)nb * sizeof(radix_block));
    q = tree_realloc(t, data, data_size(t, cap), data_size(t, nb));
    if (!q) {
        memmove(data + units_size(t, cap), data + units_size(t, nb),
                (size_t)nb * sizeof(radix_block));
        return;
    }
    node_set_data(t, n, q, nb);
}

/*
 * Split n (linked, not pending) at block j, 0 < j < n->n_blocks: a new node U with n's first
 * j blocks takes n's place under its parent; n keeps the rest and becomes U's only kid.
 * U gets room for two kids so an insert can hang its leaf there without allocating.
 * Returns U, or NULL (-ENOMEM) with nothing changed.
 *
 *   before: parent -> n[b0 .. bj-1 bj .. bk] -> kids of n
 *   after:  parent -> U[b0 .. bj-1] -> n[bj .. bk] -> kids of n
 *
 * Only the smaller part is copied into a fresh buffer (fresh memory costs page faults); the
 * larger part stays in n's old buffer, which goes to whichever node holds that part and is
 * then shrunk to fit.
 */
static radix_node *node_split(radix_tree *t, radix_node *n, uint32_t j)
{
    size_t bu = t->bu, rest = n->n_blocks - j;
    int upper_fresh = j <= rest;
    radix_node *u = node_new(t, upper_fresh ? j : rest);
    radix_kid *kids = NULL;

    assert(j > 0 && j < n->n_blocks && !(n->flags & RADIX_PENDING) && n->parent);
    if (!u)
        return NULL;
    kids = tree_alloc(t, kids_size(2));
    if (!kids) {
        node_discard(t, u);
        return NULL;
    }
    { /* u takes n's place: same first block, same kid entry and slot */
        radix_node *p = n->parent;
        uint32_t i = kid_index(t, n);

        if (kids_wide(p))
            kid_tab(p)[wide_slot_of(p, p->kids[i].hash, n)].node = u;
        p->kids[i].node = u;
    }
    if (upper_fresh) {
        memcpy(u->units, n->units, (size_t)j * bu * sizeof(uint32_t));
        memcpy(u->blocks, n->blocks, (size_t)j * sizeof(radix_block));
        memmove(n->units, n->units + j * bu, rest * bu * sizeof(uint32_t));
        memmove(n->blocks, n->blocks + j, rest * sizeof(radix_block));
        n->n_blocks = (uint32_t)rest;
    } else {
        void *old = n->units, *fresh = u->units;
        uint32_t old_cap = n->cap_blocks;

        memcpy(u->units, n->units + j * bu, rest * bu * sizeof(uint32_t));
        memcpy(u->blocks, n->blocks + j, rest * sizeof(radix_block));
        node_set_data(t, n, fresh, (uint32_t)rest);
        n->n_blocks = (uint32_t)rest;
        node_set_data(t, u, old, old_cap);
        u->n_blocks = j;
    }
    u->parent = n->parent;
    u->kids = kids;
    u->cap_kids = 2;
    u->depth = n->depth;
    u->last_access = n->last_access;
    u->hits = n->hits;
    u->pins = n->pins;
    u->kids[0] = (radix_kid){.first = n->units[0], .node = n};
    u->n_kids = 1;
    n->depth += j;
    n->parent = u;
    t->n_nodes++;
    node_shrink(t, upper_fresh ? n : u);
    if (t->hooks.split)
        t->hooks.split(t->hooks.ctx, u, n);
    return u;
}

/* ---------------------------------------------------------------- tree */

int radix_create(uint32_t bu, unsigned flags, const radix_hooks *hooks, radix_tree **out)
{
    radix_tree *t;

    *out = NULL;
    if (bu < 1 || bu > 65536 || (flags & ~RADIX_KEYS) || ((flags & RADIX_KEYS) && bu != 2))
        return -EINVAL;
    t = util_calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->bu = bu;
    t->flags = flags;
    if (hooks)
        t->hooks = *hooks;
    t->bytes = sizeof(*t);
    t->kid_seed = XXH3_64bits_withSeed(&t, sizeof(t), util_now_ns());
    util_list_init(&t->root.lru);
    for (int i = 0; i < RADIX_TIERS; i++)
        util_list_init(&t->root.tlink[i]);
    util_list_init(&t->root.wlink);
    *out = t;
    return 0;
}

void radix_destroy(radix_tree *t)
{
    if (!t)
        return;
    free_below(t, &t->root, NULL, NULL);
    util_free(t->root.kids);
    util_free(t);
}

uint32_t radix_bu(const radix_tree *t) { return t->bu; }
radix_node *radix_root(radix_tree *t) { return &t->root; }
uint64_t radix_bytes(const radix_tree *t) { return t->bytes; }
uint64_t radix_blocks(const radix_tree *t) { return t->n_blocks; }
uint64_t radix_nodes(const radix_tree *t) { return t->n_nodes; }

/* ---------------------------------------------------------------- match and insert */

int radix_match(radix_tree *t, const uint32_t *units, size_t n_blocks, unsigned flags,
                radix_path *path)
{
    const size_t bu = t->bu;
    radix_node *n = &t->root, *kid;
    size_t pos = 0;

    path_reset(path);
    while (pos < n_blocks) {
        uint32_t m;

        kid = kid_find(t, n, units + pos * bu);
        if (!kid || (kid->flags & RADIX_PENDING))
            break;
        if (path->n == path->cap && path_reserve(path, (size_t)path->n + 1))
            return -ENOMEM;
        m = common_blocks(t, kid, units + pos * bu, n_blocks - pos);
        path->nodes[path->n++] = kid;
        path->last_blocks = m;
        path->blocks += m;
        pos += m;
        if (m < kid->n_blocks) {
            radix_node *u;

            if (!(flags & RADIX_SPLIT))
                break;
            u = node_split(t, kid, m);
            if (!u)
                return -ENOMEM;
            path->nodes[path->n - 1] = u;
            break;
        }
        n = kid;
    }
    return 0;
}

int radix_insert(radix_tree *t, const uint32_t *units, size_t n_blocks, radix_path *path,
                 radix_node **leaf)
{
    const size_t bu = t->bu;
    radix_node *n = &t->root, *kid = NULL, *nl = NULL, *parent;
    size_t pos = 0;
    uint32_t m = 0;
    uint64_t seed;
    int rc;

    *leaf = NULL;
    path_reset(path);
    /* Walk the cached prefix; stop at its end (kid == NULL) or inside kid after m blocks. */
    while (pos < n_blocks) {
        kid = kid_find(t, n, units + pos * bu);
        if (!kid)
            break;
        if (kid->flags & RADIX_PENDING)
            return -EAGAIN;
        if (path->n == path->cap && path_reserve(path, (size_t)path->n + 1))
            return -ENOMEM;
        m = common_blocks(t, kid, units + pos * bu, n_blocks - pos);
        path->nodes[path->n++] = kid;
        path->last_blocks = m;
        path->blocks += m;
        pos += m;
        if (m < kid->n_blocks)
            break;
        n = kid;
        kid = NULL;
    }
    if (pos == n_blocks)
        return 0;

    /* Everything that can fail, before the first change. */
    rc = path_reserve(path, (size_t)path->n + 1);
    if (rc)
        return rc;
    if (!kid) {
        rc = kid_reserve(t, n);
        if (rc)
            return rc;
    }
    nl = node_new(t, n_blocks - pos);
    if (!nl)
        return -ENOMEM;
    memcpy(nl->units, units + pos * bu, (n_blocks - pos) * bu * sizeof(uint32_t));
    memset(nl->blocks, 0, (n_blocks - pos) * sizeof(radix_block));
    seed = path->n ? path->nodes[path->n - 1]->blocks[path->last_blocks - 1].key : 0;
    for (uint32_t i = 0; i < nl->n_blocks; i++) {
        radix_block *b = &nl->blocks[i];

        b->key = seed = block_key(t, nl->units + i * bu, seed);
        for (int s = 0; s < RADIX_TIERS; s++)
            b->slot[s] = RADIX_NO_SLOT;
    }
    nl->flags = RADIX_PENDING;
    if (kid) {
        /* diverges inside kid after m blocks: kid splits and the leaf hangs off the upper part */
        parent = node_split(t, kid, m);
        if (!parent) {
            node_discard(t, nl);
            return -ENOMEM;
        }
        path->nodes[path->n - 1] = parent;
    } else {
        parent = n;
    }
    nl->depth = pos;
    kid_add(t, parent, nl);
    t->n_nodes++;
    t->n_blocks += nl->n_blocks;
    path->nodes[path->n++] = nl;
    path->last_blocks = nl->n_blocks;
    path->blocks = n_blocks;
    *leaf = nl;
    return 0;
}

void radix_publish(radix_tree *t, radix_node *node)
{
    (void)t;
    node->flags &= ~RADIX_PENDING;
}

/* ---------------------------------------------------------------- trim and remove */

int radix_trim(radix_tree *t, radix_node *node, uint32_t keep)
{
    if (node == &t->root || node->n_kids)
        return -EINVAL;
    if (keep >= node->n_blocks)
        return 0;
    if (keep > 0) {
        t->n_blocks -= node->n_blocks - keep;
        node->n_blocks = keep;
        return 0;
    }
    kid_unlink(t, node);
    node_release(t, node);
    return 0;
}

long radix_remove(radix_tree *t, radix_node *node, uint32_t from,
                  void (*fn)(void *ctx, radix_node *n, radix_block *b), void *ctx)
{
    long removed;

    if (!node || from > node->n_blocks)
        return -EINVAL;
    /* pass 1: is anything concerned pinned or pending? node's own blocks only if some go */
    if (from < node->n_blocks && (node->pins || (node->flags & RADIX_PENDING)))
        return -EBUSY;
    for (radix_node *n = next_preorder(t, node, node); n; n = next_preorder(t, n, node))
        if (n->pins || (n->flags & RADIX_PENDING))
            return -EBUSY;

    /* pass 2: nothing below can refuse now */
    removed = free_below(t, node, fn, ctx);
    if (node != &t->root && node->cap_kids) {
        tree_free(t, node->kids, kids_size(node->cap_kids));
        node->kids = NULL;
        node->cap_kids = 0;
    }
    if (fn)
        for (uint32_t i = from; i < node->n_blocks; i++)
            fn(ctx, node, &node->blocks[i]);
    removed += node->n_blocks - from;
    if (from == 0 && node != &t->root) {
        kid_unlink(t, node);
        node_release(t, node);
    } else {
        t->n_blocks -= node->n_blocks - from;
        node->n_blocks = from;
    }
    return removed;
}

/* ---------------------------------------------------------------- check */

#define CHECK(c, msg)                                                                      \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            *why = msg;                                                                    \
            return -1;                                                                     \
        }                                                                                  \
    } while (0)

/* One node's own invariants, its kids' links and order included. */
static int check_node(const radix_tree *t, const radix_node *n, const char **why)
{
    const radix_node *p = n->parent;
    uint64_t key;

    if (n == &t->root) {
        CHECK(!p && n->n_blocks == 0 && n->depth == 0 && n->flags == 0, "root: bad fields");
    } else {
        CHECK(p, "node without parent");
        CHECK(n->n_blocks >= 1, "empty non-root node");
        CHECK(n->n_blocks <= n->cap_blocks, "n_blocks > cap_blocks");
        CHECK(n->units && (char *)n->blocks == (char *)n->units + units_size(t, n->cap_blocks),
              "data layout does not match cap_blocks");
        CHECK(n->depth == p->depth + p->n_blocks, "depth != blocks above the node");
        CHECK(!(n->flags & ~RADIX_PENDING), "unknown node flag");
        CHECK(!(n->flags & RADIX_PENDING) || n->n_kids == 0, "pending node with kids");
        CHECK(!(p->flags & RADIX_PENDING), "child of a pending node");
        key = p == &t->root ? 0 : p->blocks[p->n_blocks - 1].key;
        for (uint32_t i = 0; i < n->n_blocks; i++) {
            key = block_key(t, n->units + (size_t)i * t->bu, key);
            CHECK(n->blocks[i].key == key, "block key breaks the chain");
        }
    }
    CHECK(n->n_kids <= n->cap_kids && (n->kids || !n->cap_kids), "kid array counts");
    for (uint32_t i = 0; i < n->n_kids; i++) {
        const radix_node *k = n->kids[i].node;

        CHECK(k && k->parent == n, "kid's parent link");
        CHECK(k->n_blocks >= 1 && k->units, "empty kid");
        CHECK(n->kids[i].first == k->units[0], "kid.first != kid's first unit");
        CHECK(kids_wide(n) || i == 0 || block_cmp(t, n->kids[i - 1].node->units, k->units) < 0,
              "kids not sorted or first blocks not distinct");
    }
    if (kids_wide(n)) {
        const wide_slot *tab = kid_tab(n);
        uint64_t used = 0;

        /* every slot names a kid whose block has the slot's hash ... */
        for (uint32_t j = 0; j <= kid_mask(n); j++) {
            uint32_t i = (uint32_t)tab[j].hi;

            if (!tab[j].hi)
                continue;
            used++;
            CHECK(i >= 1 && i <= n->n_kids, "wide node: slot names no kid");
            CHECK(tab[j].node == n->kids[i - 1].node, "wide node: slot node != kid's node");
            CHECK((uint32_t)(tab[j].hi >> 32) == kid_hash(t, n->kids[i - 1].node->units) &&
                      n->kids[i - 1].hash == (uint32_t)(tab[j].hi >> 32),
                  "wide node: slot or kid hash != hash of the kid's first block");
        }
        CHECK(used == n->n_kids, "wide node: slot count != n_kids");
        /* ... and a probe for each kid's block finds that kid's own slot: no kid unreachable
         * (a gap in its probe run), none named twice, no two kids with one first block */
        for (uint32_t i = 0; i < n->n_kids; i++) {
            const uint32_t *blk = n->kids[i].node->units;
            int found;
            uint32_t j = wide_probe(t, n, blk, kid_hash(t, blk), &found);

            CHECK(found && (uint32_t)tab[j].hi == i + 1,
                  "wide node: kid not found, or first blocks not distinct");
        }
    }
    return 0;
}

int radix_check(const radix_tree *t, const char **why)
{
    const char *dummy;
    uint64_t blocks = 0, nodes = 0, bytes = sizeof(*t);
    radix_node *root = (radix_node *)&t->root;

    if (!why)
        why = &dummy;
    for (radix_node *n = root; n; n = next_preorder(t, n, root)) {
        if (check_node(t, n, why))
            return -1;
        bytes += kids_size(n->cap_kids);
        if (n != root) {
            blocks += n->n_blocks;
            nodes++;
            bytes += sizeof(*n) + data_size(t, n->cap_blocks);
        }
    }
    CHECK(blocks == t->n_blocks, "block count");
    CHECK(nodes == t->n_nodes, "node count");
    CHECK(bytes == t->bytes, "byte count");
    *why = NULL;
    return 0;
}
