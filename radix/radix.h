/*
 * radix.h — the prefix index: a compressed, block-aligned radix tree over uint32 units.
 *
 * A tree indexes sequences of blocks. A block is `bu` uint32 units: block_tokens token ids
 * in a token tree, or 2 units (one 64-bit external key, low word first, i.e. a little-endian
 * uint64_t array read as uint32 pairs) in a key tree. Every edge holds whole blocks and nodes
 * split only at block boundaries, so the children of a node are told apart by their whole
 * first block; siblings may share a first unit and are then compared block-wide.
 * Matching compares units exactly (memcmp); a hash is never the basis of a hit.
 *
 * Memory layout of one node (a header allocation and one data allocation):
 *
 *   radix_node  [parent*][kids*][units*][blocks*][n_kids|cap_kids][n_blocks|cap_blocks]
 *               [depth][last_access][hits|pins][flags][lru link: 2 ptrs][owner*]
 *   data        [units: cap_blocks * bu uint32 | pad to 8][blocks: cap_blocks * radix_block]
 *                ^ units[i*bu .. (i+1)*bu) are block i's units; blocks[i] is its metadata
 *   kids        [radix_kid {first unit, hash, node*}] * cap_kids; kids[0 .. n_kids) are the node's
 *               children. Up to 64 (cap_kids <= 64): sorted by first unit, siblings with an
 *               equal first unit by the rest of their first block (bytewise), so one binary
 *               search finds a child even where all share a first token (BOS). A node that
 *               grows past 64 kids (a wide node: a key namespace of many root chains, a token
 *               root with 100k first blocks) keeps kids[] dense in no particular order and
 *               finds a child through a hash table of its whole first block that follows the
 *               array in the same allocation (radix.c); adding or removing a kid is then O(1)
 *               instead of a memmove of the array. The hash only locates a candidate: its
 *               block is compared exactly. A wide node stays wide when it shrinks.
 *
 * The root is a sentinel with no blocks. A node other than the root has >= 1 block.
 *
 * History rule: every block of a node shares one access history. radix_match() with
 * RADIX_SPLIT splits a node where a match ends inside it, and inserts split where sequences
 * diverge, so last_access, hits and pins are kept per node and hold for each of its blocks.
 * Callers touch every node of a matched path, so an ancestor's last_access is >= any
 * descendant's: least-recently-used order is leaf-first order.
 *
 * Splitting node N at block j creates a new node U holding N's first j blocks; U takes N's
 * place under N's parent and N (keeping its identity, children, LRU position) becomes U's
 * only child with the remaining blocks. Pointers to N stay valid, and U copies N's
 * last_access, hits and pins (a lease that pinned N pinned all of N's blocks). U's owner is
 * NULL and its lru link unlinked: the caller links it when it touches the path.
 *
 * Pending nodes: radix_insert() adds the new blocks of a sequence as one leaf flagged
 * RADIX_PENDING. Matches and inserts stop before a pending node (it is invisible), and it is
 * never split or evicted. radix_publish() makes it visible.
 *
 * Bytes per cached block: 4*bu bytes of units, sizeof(radix_block) (40) of metadata, plus the
 * node header (208 bytes on LP64, the engine's per-tier links included), kid entry (16; 48
 * in a wide node, its two 16-byte hash slots included) and allocator rounding shared by a node's blocks. radix_bytes() reports the exact heap bytes
 * the tree asked for.
 *
 * Thread safety: none. The engine serialises all calls on a tree under its lock.
 * Errors: -ENOMEM leaves the tree valid and unchanged (except where stated).
 */
#ifndef KVT_RADIX_H
#define KVT_RADIX_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

enum { RADIX_TIER_HBM = 0, RADIX_TIER_DRAM = 1, RADIX_TIER_NVME = 2, RADIX_TIER_DISK = 3, RADIX_TIERS = 4 };
#define RADIX_NO_SLOT UINT32_MAX

/* Per-block metadata, 40 bytes. Owned by the caller except `key`, set by the tree. */
typedef struct radix_block {
    uint64_t key;               /* chained XXH3-64 block key, or the external key */
    uint64_t checksum;          /* XXH3-64 of the block's bytes; 0 until stored */
    uint32_t slot[RADIX_TIERS]; /* location in each tier; RADIX_NO_SLOT where absent */
    uint32_t size;              /* bytes of the block */
    uint32_t flags;             /* the caller's */
} radix_block;

typedef struct radix_node radix_node;

typedef struct radix_kid {
    uint32_t first; /* first unit of the child's first block */
    uint32_t hash;  /* wide node: radix.c's hash of the child's first block; else 0 */
    radix_node *node;
} radix_kid;

/* node flags */
#define RADIX_PENDING 0x1u

struct radix_node {
    radix_node *parent;  /* NULL for the root */
    radix_kid *kids;     /* [cap_kids]: [0, n_kids) the children; order: see the layout above */
    uint32_t *units;     /* [cap_blocks * bu] */
    radix_block *blocks; /* [cap_blocks], inside the units allocation */
    uint32_t n_kids, cap_kids;
    uint32_t n_blocks, cap_blocks;
    uint64_t depth;       /* blocks on the path above this node */
    uint64_t last_access; /* the caller's clock */
    uint32_t hits;        /* matches that used this node */
    uint32_t pins;        /* leases holding this node's blocks */
    uint32_t flags;       /* RADIX_PENDING */
    util_list lru;        /* the eviction policy's link; initialised unlinked */
    void *owner;          /* the caller's */
    /* The engine's per-tier bookkeeping (radix.c only initialises the links unlinked and
     * zeroes the counts; the split hook lets the caller recount both parts):
     * tlink[t] links the node into its tenant's LRU list of tier t while tcount[t] > 0
     * (tcount[t] = blocks of this node with a copy in tier t); wlink links it into the
     * write-through queue while n_dirty > 0 (blocks published but not yet persisted). */
    util_list tlink[RADIX_TIERS];
    uint32_t tcount[RADIX_TIERS];
    util_list wlink;
    uint64_t wq_ns; /* the engine's: when it joined the write-through queue (coarse clock) */
    uint32_t n_dirty;
    uint32_t eflags; /* the caller's */
    /* The engine's placement-policy history (engine/policy.c: an evict_hist per node, by
     * the history rule; radix.c only zeroes it, the split hook copies it to the upper part):
     * last access and EWMA gap in seconds, aged LFU count, TTL hint in seconds (0: none),
     * accesses so far (0: never touched). */
    double ph_last_s, ph_gap_s, ph_freq, ph_ttl_s;
    uint32_t ph_hits;
};

typedef struct radix_tree radix_tree;

typedef struct radix_hooks {
    /* Called just before a node's memory is freed (trim to empty, remove, destroy), never
     * for the root; the caller unlinks it from its eviction lists. May be NULL. */
    void (*node_free)(void *ctx, radix_node *node);
    void *ctx;
    /* Called at the end of every split (radix_match with RADIX_SPLIT, radix_insert): upper
     * is the new node holding the first blocks, lower the old node (same identity) holding
     * the rest. The caller recounts its per-node bookkeeping of both. May be NULL. */
    void (*split)(void *ctx, radix_node *upper, radix_node *lower);
} radix_hooks;

/* Tree flags */
#define RADIX_KEYS 0x1u /* blocks are 2-unit external keys: block key = the unit pair */

/*
 * Create an empty tree of blocks of `bu` units (1..65536). hooks is copied; may be NULL.
 * For a token tree, block i's key = XXH3_64bits_withSeed(units of block i, 4*bu,
 * key of block i-1), with 0 as the seed of the first block.
 * Returns 0, -EINVAL or -ENOMEM.
 */
int radix_create(uint32_t bu, unsigned flags, const radix_hooks *hooks, radix_tree **out);

/* Free every node (calling hooks.node_free on each but the root) and the tree. NULL is a
 * no-op. */
void radix_destroy(radix_tree *t);

uint32_t radix_bu(const radix_tree *t);
radix_node *radix_root(radix_tree *t);
uint64_t radix_bytes(const radix_tree *t);  /* heap bytes the tree holds */
uint64_t radix_blocks(const radix_tree *t); /* blocks in the tree, pending included */
uint64_t radix_nodes(const radix_tree *t);  /* nodes, root excluded */

/* Compute the chained keys of n_blocks blocks (token trees: XXH3 chain from seed 0; key
 * trees: the unit pairs). Pure. */
void radix_keys(const radix_tree *t, const uint32_t *units, size_t n_blocks, uint64_t *keys);

/*
 * A path from the root down: nodes[0] is a child of the root, nodes[n-1] the deepest;
 * all blocks of nodes[0..n-1) are on the path and the first last_blocks of nodes[n-1].
 * A path holds RADIX_PATH_INLINE nodes without allocating.
 */
#define RADIX_PATH_INLINE 32
typedef struct radix_path {
    radix_node **nodes;
    uint32_t n, cap;
    uint32_t last_blocks; /* blocks of nodes[n-1] on the path (0 when n == 0) */
    uint64_t blocks;      /* blocks on the path */
    radix_node *inline_nodes[RADIX_PATH_INLINE];
} radix_path;

void radix_path_init(radix_path *p);
void radix_path_free(radix_path *p); /* frees a grown array; the path may be reused after init */

/* radix_match flags */
#define RADIX_SPLIT 0x1u /* split the deepest node where the match ends inside it */

/*
 * Longest prefix of units[0 .. n_blocks*bu) made of whole blocks present and not pending.
 * Fills *path (reset first); the matched block count is path->blocks. With RADIX_SPLIT and a
 * match ending inside a node, that node is split so the path ends on a node boundary
 * (path->last_blocks == nodes[n-1]->n_blocks). Never computes a key; does not touch
 * last_access or hits (the caller does). Returns 0, or -ENOMEM if the path could not grow or
 * the split could not allocate — the path is then still a correct (possibly shorter or not
 * split) prefix match and the tree is valid.
 */
int radix_match(radix_tree *t, const uint32_t *units, size_t n_blocks, unsigned flags,
                radix_path *path);

/*
 * Insert the blocks of units[0 .. n_blocks*bu) that are not in the tree.
 * Walks the cached prefix, splits a node where the sequence diverges inside it, and adds the
 * remaining blocks as one new leaf flagged RADIX_PENDING, with keys set, every other
 * radix_block field zero and slots RADIX_NO_SLOT. *path receives the whole path, the new leaf
 * last; *leaf the new leaf, or NULL if every block was already present.
 * Returns 0; -EAGAIN if the walk reached a pending node (another insert is in flight on this
 * prefix: nothing inserted, *leaf NULL, *path the prefix before it); -ENOMEM (nothing
 * inserted, tree unchanged apart from a possible split, which is harmless; this
 * implementation allocates before it changes anything, so it leaves no split either).
 */
int radix_insert(radix_tree *t, const uint32_t *units, size_t n_blocks, radix_path *path,
                 radix_node **leaf);

/* Clear RADIX_PENDING on a node made by radix_insert (or on a childless leaf the caller set
 * RADIX_PENDING on to hide it while it rewrote its blocks: the engine's kvt_replace_key). */
void radix_publish(radix_tree *t, radix_node *node);

/*
 * Keep the first `keep` blocks of a node that has no children (a leaf), dropping the rest.
 * The caller has already released the dropped blocks' tier slots. With keep == 0 the node
 * is unlinked from its parent and freed (hooks.node_free first). Used for eviction (leaf
 * first, one block at a time from the tail) and to shorten a pending leaf that could only
 * partly be stored. keep >= n_blocks changes nothing. Returns 0, or -EINVAL if the node has
 * children or is the root. Never allocates: a node keeps its buffer until it is freed, so
 * radix_bytes() only drops when a node goes.
 */
int radix_trim(radix_tree *t, radix_node *node, uint32_t keep);

/*
 * Remove blocks [from, n_blocks) of `node` and every block below it. Calls fn on each block
 * removed (before its node is freed) so the caller can release slots. Fails with -EBUSY and
 * removes nothing if any node concerned is pinned or pending: every node below, and `node`
 * itself when from < n_blocks. from == 0 removes the node; from == n_blocks only what is
 * below it (the root: from 0 empties the tree). Never allocates. Returns the number of
 * blocks removed (>= 0), -EBUSY, or -EINVAL (from > n_blocks).
 */
long radix_remove(radix_tree *t, radix_node *node, uint32_t from,
                  void (*fn)(void *ctx, radix_node *n, radix_block *b), void *ctx);

/*
 * Cache hints for a batch of root lookups of first blocks (the engine's kvt_lookahead_keys),
 * in dependent stages so that the cache misses of many lookups overlap instead of queueing:
 * radix_hint_slot prefetches the line a lookup of blk at the root probes first (a wide
 * root's hash slot); radix_hint_kid, called once the other lookups' slots were hinted too,
 * returns the root's kid that blk probably names (same hash in a wide root, same first unit
 * in a sorted one: a candidate, never compared in full, possibly wrong; NULL when none) and
 * prefetches that node. Read only, changes nothing; the caller holds the tree's lock.
 */
void radix_hint_slot(const radix_tree *t, const uint32_t *blk);
radix_node *radix_hint_kid(const radix_tree *t, const uint32_t *blk);

/*
 * Check every structural invariant: parent links, kids in the order above with distinct
 * first blocks (a wide node: every slot of its hash table names a kid under that kid's hash,
 * as many slots as kids, and a lookup of each kid's first block finds that very kid),
 * kid.first == the kid's first unit, no empty non-root node, no kids under a
 * pending node, depth, block, node and byte counts, keys consistent with the chain.
 * Returns 0, or -1 with *why (static text) set. O(size of the tree): for tests.
 */
int radix_check(const radix_tree *t, const char **why);

#endif
