// ctest: labels=unit timeout=120
/*
 * test_radix_oom.c — every allocation of the prefix index can fail without harm.
 *
 * Each scenario builds a tree, then runs one operation (an insert, possibly splitting where
 * the sequence diverges inside a node and growing a kid array or a long path, or a match with
 * RADIX_SPLIT) with util_alloc_fail_after(k) for k = 0, 1, 2, ... on a freshly built tree
 * each time, until the operation succeeds with no failure injected. After an attempt that
 * returns -ENOMEM the tree must pass radix_check and answer every probe query (matched
 * blocks and their keys) exactly as before the attempt: no block lost, none added; only a
 * split is allowed to remain. The same operation is then retried without injection (as the
 * engine would) and must reach the state a run without any failure reaches. An attempt that
 * succeeds while a failure was injected (one the tree absorbs) must reach that state too.
 *
 * Wide nodes (radix.c: past 64 kids a node's kids are found through a hash table in the same
 * allocation) are covered where their buffer is built: the 65th kid turning a node wide (the
 * root, and a node below it), the 129th growing a wide table, an insert into a wide node with
 * room, and splits of a wide node's kid and of a wide node itself. Siblings share first units.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radix/radix.h"
#include "testutil.h"
#include "util/util.h"

#define MAX_SEQS 160
#define MAX_UNITS 512
#define MAX_ACTIONS 256

enum { ACT_INSERT, ACT_MATCH_SPLIT };

typedef struct action {
    int kind;
    int seq;       /* which sequence */
    size_t blocks; /* how many of its blocks */
} action;

typedef struct scenario {
    const char *name;
    uint32_t bu;
    unsigned flags;
    uint32_t seq[MAX_SEQS][MAX_UNITS];
    size_t seq_blocks[MAX_SEQS];
    int n_seqs;
    action setup[MAX_ACTIONS];
    int n_setup;
    action op;
    /* where set (cap_after != 0): kid capacity of the last node of the match of the first
     * probe_blocks blocks of seq probe_seq (the root for 0 blocks), before and after op */
    int probe_seq;
    size_t probe_blocks;
    uint32_t cap_before, cap_after;
} scenario;

/* What the tree answers for every prefix length of every sequence. */
typedef struct answers {
    size_t matched[MAX_SEQS][MAX_UNITS];
    uint64_t keys[MAX_SEQS][MAX_UNITS]; /* keys along the full-length match */
    uint64_t blocks;
} answers;

static tu_rng rng;

static uint32_t unit(void) { return (uint32_t)tu_below(&rng, 1000); }

/* seq s: a random sequence of n blocks */
static void seq_random(scenario *sc, int s, size_t n)
{
    for (size_t u = 0; u < n * sc->bu; u++)
        sc->seq[s][u] = unit();
    sc->seq_blocks[s] = n;
    if (s >= sc->n_seqs)
        sc->n_seqs = s + 1;
}

/* seq s: seq `from`'s first `unit_at` units, then one different unit, then random, n blocks */
static void seq_fork(scenario *sc, int s, int from, size_t unit_at, size_t n)
{
    seq_random(sc, s, n);
    memcpy(sc->seq[s], sc->seq[from], unit_at * sizeof(uint32_t));
    sc->seq[s][unit_at] = sc->seq[from][unit_at] + 1;
}

/* seq s: n random blocks whose first block starts with unit `first` and is told apart from
 * every other such block by its second unit (units 1000 + s never come from unit()). With
 * bu == 1 the first unit itself is 1000 + s. */
static void seq_root(scenario *sc, int s, size_t n, uint32_t first)
{
    seq_random(sc, s, n);
    if (sc->bu == 1) {
        sc->seq[s][0] = 1000 + (uint32_t)s;
        return;
    }
    sc->seq[s][0] = first;
    sc->seq[s][1] = 1000 + (uint32_t)s;
}

/* seq s: seq `from`'s first `blocks` blocks, then a block like seq_root's, then random. */
static void seq_below(scenario *sc, int s, int from, size_t blocks, size_t n, uint32_t first)
{
    seq_root(sc, s, n, first);
    memmove(sc->seq[s] + blocks * sc->bu, sc->seq[s], (n - blocks) * sc->bu * sizeof(uint32_t));
    memcpy(sc->seq[s], sc->seq[from], blocks * sc->bu * sizeof(uint32_t));
}

static void add_setup(scenario *sc, int kind, int s, size_t blocks)
{
    TU_CHECK(sc->n_setup < MAX_ACTIONS);
    sc->setup[sc->n_setup++] = (action){kind, s, blocks};
}

static void check_tree(radix_tree *t)
{
    const char *why = NULL;

    if (radix_check(t, &why)) {
        fprintf(stderr, "radix_check: %s\n", why);
        TU_CHECK(!"radix_check failed");
    }
}

/* The path holds exactly the first p->blocks blocks of q. */
static void check_path(const scenario *sc, const radix_path *p, const uint32_t *q)
{
    size_t b = 0;

    for (uint32_t i = 0; i < p->n; i++) {
        const radix_node *x = p->nodes[i];
        uint32_t used = i + 1 == p->n ? p->last_blocks : x->n_blocks;

        TU_CHECK(used >= 1 && used <= x->n_blocks && x->depth == b);
        TU_CHECK(!memcmp(x->units, q + b * sc->bu, (size_t)used * sc->bu * 4));
        b += used;
    }
    TU_CHECK_EQ(b, p->blocks);
}

static void ask(radix_tree *t, const scenario *sc, answers *a)
{
    radix_path p;

    radix_path_init(&p);
    for (int s = 0; s < sc->n_seqs; s++)
        for (size_t n = 1; n <= sc->seq_blocks[s]; n++) {
            TU_CHECK_EQ(radix_match(t, sc->seq[s], n, 0, &p), 0);
            check_path(sc, &p, sc->seq[s]);
            a->matched[s][n - 1] = p.blocks;
            if (n == sc->seq_blocks[s]) {
                size_t b = 0;
                for (uint32_t i = 0; i < p.n; i++) {
                    uint32_t used = i + 1 == p.n ? p.last_blocks : p.nodes[i]->n_blocks;
                    for (uint32_t j = 0; j < used; j++)
                        a->keys[s][b++] = p.nodes[i]->blocks[j].key;
                }
            }
        }
    a->blocks = radix_blocks(t);
    radix_path_free(&p);
}

static void same_answers(const scenario *sc, const answers *a, const answers *b)
{
    TU_CHECK_EQ(a->blocks, b->blocks);
    for (int s = 0; s < sc->n_seqs; s++) {
        size_t n = sc->seq_blocks[s];
        TU_CHECK(!memcmp(a->matched[s], b->matched[s], n * sizeof(size_t)));
        TU_CHECK(!memcmp(a->keys[s], b->keys[s], a->matched[s][n - 1] * sizeof(uint64_t)));
    }
}

static uint32_t probe_cap(radix_tree *t, const scenario *sc)
{
    radix_path p;
    radix_node *n = radix_root(t);

    radix_path_init(&p);
    if (sc->probe_blocks) {
        TU_CHECK_EQ(radix_match(t, sc->seq[sc->probe_seq], sc->probe_blocks, 0, &p), 0);
        TU_CHECK(p.blocks == sc->probe_blocks && p.last_blocks == p.nodes[p.n - 1]->n_blocks);
        n = p.nodes[p.n - 1];
    }
    radix_path_free(&p);
    return n->cap_kids;
}

/* Run an action; the status of radix_insert / radix_match. */
static int act(radix_tree *t, const scenario *sc, const action *ac, radix_path *p)
{
    const uint32_t *q = sc->seq[ac->seq];
    radix_node *leaf = NULL;
    int rc;

    if (ac->kind == ACT_MATCH_SPLIT) {
        rc = radix_match(t, q, ac->blocks, RADIX_SPLIT, p);
        check_path(sc, p, q);
        return rc;
    }
    rc = radix_insert(t, q, ac->blocks, p, &leaf);
    if (rc == 0 && leaf)
        radix_publish(t, leaf);
    if (rc)
        TU_CHECK(leaf == NULL);
    return rc;
}

static radix_tree *build(const scenario *sc)
{
    radix_tree *t;
    radix_path p;

    TU_CHECK_EQ(radix_create(sc->bu, sc->flags, NULL, &t), 0);
    radix_path_init(&p);
    for (int i = 0; i < sc->n_setup; i++)
        TU_CHECK_EQ(act(t, sc, &sc->setup[i], &p), 0);
    radix_path_free(&p);
    check_tree(t);
    return t;
}

static void run(scenario *sc)
{
    answers *before = calloc(1, sizeof(*before)), *after = calloc(1, sizeof(*after)),
            *now = calloc(1, sizeof(*now));
    radix_tree *t;
    radix_path p;
    long k, failed = 0, absorbed = 0;
    uint64_t nodes_before;

    TU_CHECK(before && after && now);
    radix_path_init(&p);

    /* the truth: the operation with no failure */
    t = build(sc);
    ask(t, sc, before);
    nodes_before = radix_nodes(t);
    if (sc->cap_after)
        TU_CHECK_EQ(probe_cap(t, sc), sc->cap_before);
    TU_CHECK_EQ(act(t, sc, &sc->op, &p), 0);
    check_tree(t);
    if (sc->cap_after)
        TU_CHECK_EQ(probe_cap(t, sc), sc->cap_after);
    ask(t, sc, after);
    if (sc->op.kind == ACT_MATCH_SPLIT) {
        TU_CHECK_EQ(radix_nodes(t), nodes_before + 1); /* the scenario does split */
        same_answers(sc, before, after);
    } else {
        TU_CHECK(after->blocks > before->blocks);
    }
    radix_destroy(t);

    for (k = 0;; k++) {
        uint64_t fails = util_alloc_failures();
        int rc, injected;

        t = build(sc);
        nodes_before = radix_nodes(t);
        radix_path_free(&p); /* a grown path would hide the path's own allocation */
        util_alloc_fail_after(k);
        rc = act(t, sc, &sc->op, &p);
        util_alloc_fail_after(-1);
        injected = util_alloc_failures() != fails;
        check_tree(t);
        if (rc == 0 && !injected) {
            ask(t, sc, now);
            same_answers(sc, after, now);
            radix_destroy(t);
            break;
        }
        TU_CHECK(injected);
        if (rc == 0) { /* the failure was absorbed: the result must be whole */
            absorbed++;
            ask(t, sc, now);
            same_answers(sc, after, now);
            radix_destroy(t);
            continue;
        }
        TU_CHECK_EQ(rc, -ENOMEM);
        failed++;
        /* nothing lost, nothing added; at most one harmless split */
        TU_CHECK(radix_nodes(t) <= nodes_before + 1);
        ask(t, sc, now);
        same_answers(sc, before, now);
        if (sc->op.kind == ACT_MATCH_SPLIT) /* the path is still a correct prefix match */
            TU_CHECK(p.blocks <= before->matched[sc->op.seq][sc->op.blocks - 1]);
        /* the engine retries */
        TU_CHECK_EQ(act(t, sc, &sc->op, &p), 0);
        check_tree(t);
        ask(t, sc, now);
        same_answers(sc, after, now);
        radix_destroy(t);
    }
    printf("%-44s bu=%-2u allocations=%ld enomem=%ld absorbed=%ld\n", sc->name, sc->bu, k,
           failed, absorbed);
    TU_CHECK(failed > 0);
    radix_path_free(&p);
    free(before);
    free(after);
    free(now);
}

static scenario *new_scenario(const char *name, uint32_t bu, unsigned flags)
{
    scenario *sc = calloc(1, sizeof(*sc));

    TU_CHECK(sc);
    sc->name = name;
    sc->bu = bu;
    sc->flags = flags;
    return sc;
}

/* seq 0 of `blocks` blocks, split by matches into one node per `step` blocks */
static void ladder(scenario *sc, size_t blocks, size_t step)
{
    seq_random(sc, 0, blocks);
    add_setup(sc, ACT_INSERT, 0, blocks);
    for (size_t b = step; b < blocks; b += step)
        add_setup(sc, ACT_MATCH_SPLIT, 0, b);
}

int main(void)
{
    scenario *sc;

    tu_rng_init(&rng, tu_seed("test_radix_oom", 7));

    /* create */
    for (long k = 0;; k++) {
        radix_tree *t = (radix_tree *)1;
        uint64_t fails = util_alloc_failures();
        int rc;

        util_alloc_fail_after(k);
        rc = radix_create(16, 0, NULL, &t);
        util_alloc_fail_after(-1);
        if (rc == -ENOMEM) {
            TU_CHECK(t == NULL && util_alloc_failures() == fails + 1);
            continue;
        }
        TU_CHECK_EQ(rc, 0);
        check_tree(t);
        radix_destroy(t);
        break;
    }

#define NAME(s) (keys ? "keys: " s : s)
    for (int keys = 0; keys < 2; keys++) {
        uint32_t bu = keys ? 2 : 16;
        unsigned fl = keys ? RADIX_KEYS : 0;

        sc = new_scenario(NAME("insert into an empty tree"), bu, fl);
        seq_random(sc, 0, 10);
        sc->op = (action){ACT_INSERT, 0, 10};
        run(sc);
        free(sc);

        /* diverging inside block 7, its first unit shared: split + leaf */
        sc = new_scenario(NAME("insert diverging inside a node"), bu, fl);
        seq_random(sc, 0, 20);
        seq_fork(sc, 1, 0, 7 * bu + 1, 12);
        add_setup(sc, ACT_INSERT, 0, 20);
        sc->op = (action){ACT_INSERT, 1, 12};
        run(sc);
        free(sc);

        /* a third kid where two are: the kid array grows */
        sc = new_scenario(NAME("insert growing a kid array"), bu, fl);
        seq_random(sc, 0, 20);
        seq_fork(sc, 1, 0, 7 * bu + 1, 12);
        seq_fork(sc, 2, 0, 7 * bu + 1, 9);
        sc->seq[2][7 * bu + 1] += 7;
        add_setup(sc, ACT_INSERT, 0, 20);
        add_setup(sc, ACT_INSERT, 1, 12);
        sc->op = (action){ACT_INSERT, 2, 9};
        run(sc);
        free(sc);

        /* extending a cached sequence at a node's end: a leaf's first kid */
        sc = new_scenario(NAME("insert extending a leaf"), bu, fl);
        seq_random(sc, 0, 20);
        add_setup(sc, ACT_INSERT, 0, 12);
        sc->op = (action){ACT_INSERT, 0, 20};
        run(sc);
        free(sc);

        sc = new_scenario(NAME("match RADIX_SPLIT inside a node"), bu, fl);
        seq_random(sc, 0, 20);
        seq_fork(sc, 1, 0, 5 * bu, 9);
        add_setup(sc, ACT_INSERT, 0, 20);
        add_setup(sc, ACT_INSERT, 1, 9);
        sc->op = (action){ACT_MATCH_SPLIT, 0, 13};
        run(sc);
        free(sc);

        /* a query diverging inside a node: the match ends there and splits it */
        sc = new_scenario(NAME("match RADIX_SPLIT at a divergence"), bu, fl);
        seq_random(sc, 0, 20);
        seq_fork(sc, 1, 0, 11 * bu + bu - 1, 15);
        add_setup(sc, ACT_INSERT, 0, 20);
        sc->op = (action){ACT_MATCH_SPLIT, 1, 15};
        run(sc);
        free(sc);

        /* wide nodes: roots 0..w-1 in the setup (first units 0..3 shared), root w inserted */
        static const struct {
            const char *name, *keys_name;
            int roots;
            uint32_t cap_before, cap_after;
        } wide[] = {
            {"insert the 65th root: the root turns wide", "keys: insert the 65th root", 64, 64,
             128},
            {"insert the 129th root: a wide root grows", "keys: insert the 129th root", 128, 128,
             256},
            {"insert into a wide root with room", "keys: insert into a wide root", 100, 128, 128},
        };
        for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++) {
            sc = new_scenario(keys ? wide[i].keys_name : wide[i].name, bu, fl);
            for (int s = 0; s <= wide[i].roots; s++) {
                seq_root(sc, s, 1 + s % 3, (uint32_t)s % 4);
                if (s < wide[i].roots)
                    add_setup(sc, ACT_INSERT, s, sc->seq_blocks[s]);
            }
            sc->op = (action){ACT_INSERT, wide[i].roots, sc->seq_blocks[wide[i].roots]};
            sc->cap_before = wide[i].cap_before;
            sc->cap_after = wide[i].cap_after;
            run(sc);
            free(sc);
        }

        /* 100 roots; root 50 (3 blocks) is split by an insert diverging in its block 2 */
        sc = new_scenario(NAME("insert splitting a kid of a wide root"), bu, fl);
        for (int s = 0; s < 100; s++) {
            seq_root(sc, s, 3, (uint32_t)s % 4);
            add_setup(sc, ACT_INSERT, s, 3);
        }
        seq_fork(sc, 100, 50, bu + bu / 2, 4);
        sc->op = (action){ACT_INSERT, 100, 4};
        sc->cap_before = sc->cap_after = 128;
        run(sc);
        free(sc);

        sc = new_scenario(NAME("match RADIX_SPLIT in a kid of a wide root"), bu, fl);
        for (int s = 0; s < 100; s++) {
            seq_root(sc, s, 3, (uint32_t)s % 4);
            add_setup(sc, ACT_INSERT, s, 3);
        }
        sc->op = (action){ACT_MATCH_SPLIT, 50, 2};
        sc->cap_before = sc->cap_after = 128;
        run(sc);
        free(sc);

        /* a node below the root (seq 0's 3 blocks) with 64 kids gets its 65th */
        sc = new_scenario(NAME("insert the 65th kid of an inner node"), bu, fl);
        seq_random(sc, 0, 3);
        add_setup(sc, ACT_INSERT, 0, 3);
        for (int s = 1; s <= 65; s++) {
            seq_below(sc, s, 0, 3, 4 + s % 2, 7);
            if (s < 65)
                add_setup(sc, ACT_INSERT, s, sc->seq_blocks[s]);
        }
        sc->op = (action){ACT_INSERT, 65, sc->seq_blocks[65]};
        sc->probe_blocks = 3;
        sc->cap_before = 64;
        sc->cap_after = 128;
        run(sc);
        free(sc);

        /* that wide node itself split: the upper part is new, the wide kid table stays */
        sc = new_scenario(NAME("match RADIX_SPLIT of a wide node"), bu, fl);
        seq_random(sc, 0, 3);
        add_setup(sc, ACT_INSERT, 0, 3);
        for (int s = 1; s <= 100; s++) {
            seq_below(sc, s, 0, 3, 4, 7);
            add_setup(sc, ACT_INSERT, s, 4);
        }
        sc->op = (action){ACT_MATCH_SPLIT, 0, 1};
        sc->probe_blocks = 3;
        sc->cap_before = sc->cap_after = 128;
        run(sc);
        free(sc);
    }

    /* paths longer than the inline array: the path grows during the walk */
    sc = new_scenario("insert below a 40-node path", 1, 0);
    ladder(sc, 40, 1);
    seq_random(sc, 1, 45);
    memcpy(sc->seq[1], sc->seq[0], 40 * sizeof(uint32_t));
    sc->op = (action){ACT_INSERT, 1, 45};
    run(sc);
    free(sc);

    sc = new_scenario("insert diverging inside node 36 of 40", 4, 0);
    ladder(sc, 80, 2);
    seq_fork(sc, 1, 0, 71 * 4 + 2, 90);
    sc->op = (action){ACT_INSERT, 1, 90};
    run(sc);
    free(sc);

    sc = new_scenario("match RADIX_SPLIT inside node 36 of 40", 4, 0);
    ladder(sc, 80, 2);
    sc->op = (action){ACT_MATCH_SPLIT, 0, 71};
    run(sc);
    free(sc);

    /* trim and remove never allocate */
    {
        radix_tree *t;
        radix_path p;
        radix_node *leaf;
        uint32_t q[64];
        uint64_t fails;

        for (int i = 0; i < 64; i++)
            q[i] = unit();
        radix_path_init(&p);
        TU_CHECK_EQ(radix_create(4, 0, NULL, &t), 0);
        TU_CHECK_EQ(radix_insert(t, q, 16, &p, &leaf), 0);
        radix_publish(t, leaf);
        q[20]++;
        TU_CHECK_EQ(radix_insert(t, q, 16, &p, &leaf), 0);
        radix_publish(t, leaf);
        fails = util_alloc_failures();
        util_alloc_fail_after(0); /* the next allocation would fail */
        TU_CHECK_EQ(radix_trim(t, leaf, 3), 0);
        TU_CHECK_EQ(radix_trim(t, leaf, 0), 0);
        TU_CHECK_EQ(radix_remove(t, radix_root(t), 0, NULL, NULL), 16);
        util_alloc_fail_after(-1);
        TU_CHECK_EQ(util_alloc_failures(), fails);
        check_tree(t);
        TU_CHECK_EQ(radix_blocks(t), 0);

        /* the same on a wide root: trim a kid away, remove one, then everything */
        for (uint32_t r = 0; r < 100; r++) {
            q[0] = r % 4;
            q[1] = 1000 + r;
            TU_CHECK_EQ(radix_insert(t, q, 2, &p, &leaf), 0);
            radix_publish(t, leaf);
        }
        TU_CHECK(radix_root(t)->cap_kids > 64);
        q[0] = 1;
        q[1] = 1000 + 41;
        TU_CHECK_EQ(radix_match(t, q, 2, 0, &p), 0);
        TU_CHECK_EQ(p.blocks, 2);
        fails = util_alloc_failures();
        util_alloc_fail_after(0);
        TU_CHECK_EQ(radix_trim(t, p.nodes[0], 0), 0);
        q[1] = 1000 + 45;
        TU_CHECK_EQ(radix_match(t, q, 2, 0, &p), 0);
        TU_CHECK_EQ(radix_remove(t, p.nodes[0], 0, NULL, NULL), 2);
        check_tree(t);
        TU_CHECK_EQ(radix_remove(t, radix_root(t), 0, NULL, NULL), 196);
        util_alloc_fail_after(-1);
        TU_CHECK_EQ(util_alloc_failures(), fails);
        check_tree(t);
        TU_CHECK_EQ(radix_blocks(t), 0);
        radix_destroy(t);
        radix_path_free(&p);
    }
    printf("test_radix_oom: ok\n");
    return 0;
}
