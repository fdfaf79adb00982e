// ctest: labels=unit timeout=120
/*
 * test_catalog.c — the RocksDB block catalog.
 *
 * The main test fuzzes the catalog against a reference model (an array of blocks, each with
 * its copies per tier and its access entry) through random put/delete/touch batches,
 * flushes and close/reopen cycles, and compares every namespace's scan with the model: the
 * same records, field for field, in (key, tier) order, and the same orphan count.
 * Targeted tests cover the namespace table, key collisions, garbled entries written straight
 * into RocksDB (skipped and counted, never passed on; purged on request), error mapping and
 * out-of-memory injection.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "testutil.h"
#include "tiers/catalog.h"
#include "util/util.h"

static char g_dir[4096];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh unique directory under $KVT_TEST_DIR (or /tmp) for one catalog. */
static void make_dir(char *out, size_t size, const char *tag)
{
    snprintf(out, size, "%s/%s", g_dir, tag);
    rm_rf(out);
}

static void setup_root(void)
{
    const char *base = getenv("KVT_TEST_DIR");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(g_dir, sizeof g_dir, "%s/test_catalog.XXXXXX", base);
    TU_CHECK(mkdtemp(g_dir) != NULL);
}

static catalog *open_ok(const char *dir)
{
    catalog *cat = NULL;
    TU_CHECK_EQ(catalog_open(dir, NULL, &cat), 0);
    TU_CHECK(cat);
    return cat;
}

static catalog_ns make_ns(uint32_t id, const char *name, const char *tenant, uint32_t bt,
                          uint32_t flags)
{
    catalog_ns ns;
    memset(&ns, 0, sizeof ns);
    ns.id = id;
    ns.flags = flags;
    ns.layout = (kvt_layout){.layers = 32, .kv_heads = 8, .head_dim = 128, .dtype = KVT_DTYPE_BF16,
                             .block_tokens = bt};
    snprintf(ns.name, sizeof ns.name, "%s", name);
    snprintf(ns.tenant, sizeof ns.tenant, "%s", tenant);
    return ns;
}

/* ---------------------------------------------------------------- collecting scans */

#define MAXU 16

typedef struct got_rec {
    catalog_record r;
    uint32_t units[MAXU];
} got_rec;

typedef struct got {
    got_rec *v;
    size_t n, cap;
} got;

static int collect(void *ctx, const catalog_record *r)
{
    got *g = ctx;
    TU_CHECK(r->n_units <= MAXU);
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 64;
        g->v = realloc(g->v, g->cap * sizeof *g->v);
        TU_CHECK(g->v);
    }
    got_rec *e = &g->v[g->n++];
    e->r = *r;
    memcpy(e->units, r->units, r->n_units * sizeof(uint32_t));
    e->r.units = NULL; /* g->v moves as it grows: got_units() points these after the scan */
    return 0;
}

static void got_units(got *g)
{
    for (size_t i = 0; i < g->n; i++)
        g->v[i].r.units = g->v[i].units;
}

static size_t scan_count(catalog *cat, uint32_t ns, catalog_scan_stats *st)
{
    got g = {0};
    TU_CHECK_EQ(catalog_scan(cat, ns, 0, collect, &g, st), 0);
    free(g.v);
    return g.n;
}

static void check_rec_eq(const catalog_record *a, const catalog_record *b)
{
    TU_CHECK_EQ(a->ns_id, b->ns_id);
    TU_CHECK(a->key == b->key);
    TU_CHECK_EQ(a->tier, b->tier);
    TU_CHECK(a->parent_key == b->parent_key);
    TU_CHECK(a->location == b->location);
    TU_CHECK(a->checksum == b->checksum);
    TU_CHECK(a->last_access == b->last_access);
    TU_CHECK(a->ttl_deadline == b->ttl_deadline);
    TU_CHECK_EQ(a->length, b->length);
    TU_CHECK_EQ(a->depth, b->depth);
    TU_CHECK_EQ(a->n_units, b->n_units);
    TU_CHECK_EQ(a->compression, b->compression);
    TU_CHECK(memcmp(a->units, b->units, a->n_units * sizeof(uint32_t)) == 0);
}

/* ---------------------------------------------------------------- the reference model */

#define MAXB 1500
#define MAXG 64

typedef struct mblock {
    uint32_t ns;
    uint32_t depth, n_units;
    uint64_t key, parent;
    uint32_t units[MAXU];
    int has[CATALOG_TIERS];
    catalog_record copy[CATALOG_TIERS]; /* units point at this block's units */
    int acc;
    uint64_t acc_v;
} mblock;

typedef struct ghost { /* a touch of a key that has no block */
    uint32_t ns;
    uint64_t key;
    uint64_t acc_v;
    int live;
} ghost;

typedef struct model {
    mblock *b;
    size_t nb;
    ghost g[MAXG];
    size_t ng;
} model;

typedef struct mns {
    uint32_t id, n_units, keys;
} mns;

static const mns NSS[3] = {{1, 16, 0}, {7, 2, 1}, {UINT32_MAX, 4, 0}};

static void fill_copy(tu_rng *r, mblock *b, unsigned tier, catalog_record *c)
{
    memset(c, 0, sizeof *c);
    c->ns_id = b->ns;
    c->key = b->key;
    c->parent_key = b->parent;
    c->depth = b->depth;
    c->n_units = b->n_units;
    c->units = b->units;
    c->tier = (uint8_t)tier;
    c->location = tu_next(r);
    c->checksum = tu_next(r);
    c->length = (uint32_t)tu_next(r);
    c->compression = (uint8_t)tu_below(r, CATALOG_COMPS);
    c->last_access = tu_below(r, 1ull << 40);
    c->ttl_deadline = tu_below(r, 2) ? 0 : tu_next(r);
}

/* A new block in namespace nsi: a child of a random block of it, or a first block. */
static mblock *model_new_block(model *m, tu_rng *r, const mns *ns)
{
    TU_CHECK(m->nb < MAXB);
    mblock *b = &m->b[m->nb++];
    memset(b, 0, sizeof *b);
    b->ns = ns->id;
    b->n_units = ns->n_units;
    mblock *parent = NULL;
    if (m->nb > 1 && tu_below(r, 10) < 7) {
        mblock *p = &m->b[tu_below(r, m->nb - 1)];
        if (p->ns == ns->id)
            parent = p;
    }
    b->parent = parent ? parent->key : 0;
    b->depth = parent ? parent->depth + 1 : 0;
    if (ns->keys) {
        b->key = tu_next(r);
        b->units[0] = (uint32_t)b->key;
        b->units[1] = (uint32_t)(b->key >> 32);
    } else {
        for (uint32_t i = 0; i < b->n_units; i++)
            b->units[i] = (uint32_t)tu_below(r, 128256);
        b->key = XXH3_64bits_withSeed(b->units, b->n_units * 4, b->parent);
    }
    return b;
}

static int cmp_rec(const void *a, const void *b)
{
    const catalog_record *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (int)x->tier - (int)y->tier;
}

static void model_verify(model *m, catalog *cat)
{
    for (int n = 0; n < 3; n++) {
        const mns *ns = &NSS[n];
        catalog_record *want = malloc((m->nb * CATALOG_TIERS + 1) * sizeof *want);
        TU_CHECK(want);
        size_t nw = 0;
        uint64_t orphans = 0;
        for (size_t i = 0; i < m->nb; i++) {
            mblock *b = &m->b[i];
            if (b->ns != ns->id)
                continue;
            int any = 0;
            for (unsigned t = 0; t < CATALOG_TIERS; t++) {
                if (!b->has[t])
                    continue;
                any = 1;
                want[nw] = b->copy[t];
                want[nw].units = b->units;
                if (b->acc && b->acc_v > want[nw].last_access)
                    want[nw].last_access = b->acc_v;
                nw++;
            }
            if (b->acc && !any)
                orphans++;
        }
        for (size_t i = 0; i < m->ng; i++)
            if (m->g[i].live && m->g[i].ns == ns->id)
                orphans++;
        qsort(want, nw, sizeof *want, cmp_rec);
        got g = {0};
        catalog_scan_stats st;
        TU_CHECK_EQ(catalog_scan(cat, ns->id, 0, collect, &g, &st), 0);
        got_units(&g);
        TU_CHECK_EQ(g.n, nw);
        TU_CHECK_EQ(st.records, nw);
        TU_CHECK_EQ(st.garbled, 0);
        TU_CHECK_EQ(st.orphans, orphans);
        for (size_t i = 0; i < nw; i++)
            check_rec_eq(&g.v[i].r, &want[i]);
        free(g.v);
        free(want);
    }
}

static void test_model(uint64_t seed)
{
    char dir[4200];
    make_dir(dir, sizeof dir, "model");
    tu_rng r;
    tu_rng_init(&r, seed);
    model m = {calloc(MAXB, sizeof(mblock)), 0, {{0}}, 0};
    TU_CHECK(m.b);
    catalog *cat = open_ok(dir);
    TU_CHECK_EQ(catalog_ns_put(cat, &(catalog_ns){0}), KVT_ENAME);
    for (int n = 0; n < 3; n++) {
        catalog_ns ns = make_ns(NSS[n].id, NSS[n].keys ? "trace" : "llama", n == 2 ? "t2" : "t0", NSS[n].n_units,
                                NSS[n].keys ? KVT_NS_KEYS : 0);
        TU_CHECK_EQ(catalog_ns_put(cat, &ns), 0);
    }
    int reopens = 0;
    for (int step = 0; step < 700; step++) {
        unsigned op = (unsigned)tu_below(&r, 100);
        if (op < 40 && m.nb + 8 < MAXB) {
            catalog_record recs[8];
            size_t n = 1 + tu_below(&r, 8);
            mblock *which[8];
            for (size_t i = 0; i < n; i++) {
                mblock *b;
                if (m.nb == 0 || tu_below(&r, 10) < 6)
                    b = model_new_block(&m, &r, &NSS[tu_below(&r, 3)]);
                else
                    b = &m.b[tu_below(&r, m.nb)];
                fill_copy(&r, b, (unsigned)tu_below(&r, CATALOG_TIERS), &recs[i]);
                which[i] = b;
            }
            size_t bad = 0;
            TU_CHECK_EQ(catalog_put_batch(cat, recs, n, tu_below(&r, 2) ? CATALOG_SYNC : 0, &bad), 0);
            for (size_t i = 0; i < n; i++) { /* in batch order: a later copy of a tier wins */
                which[i]->has[recs[i].tier] = 1;
                which[i]->copy[recs[i].tier] = recs[i];
            }
        } else if (op < 60 && m.nb) {
            catalog_del d[4];
            size_t n = 1 + tu_below(&r, 4);
            for (size_t i = 0; i < n; i++) {
                if (m.ng && tu_below(&r, 5) == 0) {
                    ghost *g = &m.g[tu_below(&r, m.ng)];
                    d[i] = (catalog_del){g->ns, CATALOG_TIER_ALL, g->key};
                    g->live = 0;
                    continue;
                }
                mblock *b = &m.b[tu_below(&r, m.nb)];
                unsigned t = tu_below(&r, 3) == 0 ? CATALOG_TIER_ALL : (unsigned)tu_below(&r, CATALOG_TIERS);
                d[i] = (catalog_del){b->ns, t, b->key};
                if (t == CATALOG_TIER_ALL) {
                    memset(b->has, 0, sizeof b->has);
                    b->acc = 0;
                } else {
                    b->has[t] = 0;
                }
            }
            TU_CHECK_EQ(catalog_delete_batch(cat, d, n, tu_below(&r, 2) ? CATALOG_SYNC : 0), 0);
        } else if (op < 80 && m.nb) {
            catalog_touch t[6];
            size_t n = 1 + tu_below(&r, 6);
            for (size_t i = 0; i < n; i++) {
                uint64_t v = tu_below(&r, 1ull << 41);
                if (m.ng < MAXG && tu_below(&r, 8) == 0) {
                    ghost *g = &m.g[m.ng++];
                    *g = (ghost){NSS[tu_below(&r, 3)].id, tu_next(&r), v, 1};
                    t[i] = (catalog_touch){g->ns, g->key, v};
                    continue;
                }
                mblock *b = &m.b[tu_below(&r, m.nb)];
                t[i] = (catalog_touch){b->ns, b->key, v};
                b->acc = 1;
                b->acc_v = v;
            }
            TU_CHECK_EQ(catalog_touch_batch(cat, t, n), 0);
        } else if (op < 84) {
            TU_CHECK_EQ(catalog_flush(cat), 0);
        } else if (op < 88) {
            TU_CHECK_EQ(catalog_close(cat), 0);
            cat = open_ok(dir);
            reopens++;
            model_verify(&m, cat);
        } else if (op < 92) {
            model_verify(&m, cat);
        }
    }
    TU_CHECK_EQ(catalog_close(cat), 0);
    cat = open_ok(dir);
    model_verify(&m, cat);
    printf("model: %zu blocks, %d reopens ok\n", m.nb, reopens);
    TU_CHECK_EQ(catalog_close(cat), 0);
    free(m.b);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- namespaces */

typedef struct ns_list {
    catalog_ns v[8];
    size_t n;
} ns_list;

static int ns_collect(void *ctx, const catalog_ns *ns)
{
    ns_list *l = ctx;
    TU_CHECK(l->n < 8);
    l->v[l->n++] = *ns;
    return 0;
}

static catalog_record simple_rec(uint32_t ns, uint64_t key, const uint32_t *units, uint32_t n)
{
    catalog_record r;
    memset(&r, 0, sizeof r);
    r.ns_id = ns;
    r.key = key;
    r.units = units;
    r.n_units = n;
    r.tier = CATALOG_TIER_NVME;
    r.location = key * 3;
    r.length = 2u << 20;
    r.checksum = ~key;
    return r;
}

static void test_namespaces(void)
{
    char dir[4200];
    make_dir(dir, sizeof dir, "ns");
    catalog *cat = open_ok(dir);
    catalog_ns a = make_ns(3, "llama-3-8b", "acme", 16, 0);
    catalog_ns b = make_ns(4, "llama-3-8b", "globex", 16, 0);
    catalog_ns k = make_ns(0, "mooncake", "acme", 16, KVT_NS_KEYS);
    TU_CHECK_EQ(catalog_ns_put(cat, &a), 0);
    TU_CHECK_EQ(catalog_ns_put(cat, &a), 0); /* identical: no-op */
    TU_CHECK_EQ(catalog_ns_put(cat, &b), 0);
    TU_CHECK_EQ(catalog_ns_put(cat, &k), 0);
    catalog_ns x = a;
    x.layout.block_tokens = 32; /* same id, other layout */
    TU_CHECK_EQ(catalog_ns_put(cat, &x), -EEXIST);
    x = a;
    x.id = 9; /* same (name, tenant), other id */
    TU_CHECK_EQ(catalog_ns_put(cat, &x), -EEXIST);
    x = a;
    memset(x.name, 'n', sizeof x.name); /* no NUL within KVT_NAME_MAX + 1 */
    TU_CHECK_EQ(catalog_ns_put(cat, &x), KVT_ENAME);
    x = a;
    memset(x.name, 'n', KVT_NAME_MAX);
    x.name[KVT_NAME_MAX] = 0;
    x.id = 10;
    TU_CHECK_EQ(catalog_ns_put(cat, &x), 0); /* longest name */

    uint32_t u[16] = {1, 2, 3};
    catalog_record r = simple_rec(5, 77, u, 16); /* namespace 5 does not exist */
    catalog_record rs[2] = {simple_rec(3, 1, u, 16), r};
    size_t bad = 0;
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 2, 0, &bad), -ENOENT);
    TU_CHECK_EQ(bad, 1);
    TU_CHECK_EQ(scan_count(cat, 3, NULL), 0); /* the batch is all or nothing */
    rs[1] = simple_rec(4, 1, u, 16);
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 2, CATALOG_SYNC, &bad), 0);
    TU_CHECK_EQ(catalog_close(cat), 0);

    cat = open_ok(dir);
    ns_list l = {.n = 0};
    uint64_t garbled = 9;
    TU_CHECK_EQ(catalog_ns_scan(cat, ns_collect, &l, &garbled), 0);
    TU_CHECK_EQ(garbled, 0);
    TU_CHECK_EQ(l.n, 4);
    TU_CHECK_EQ(l.v[0].id, 0); /* id order */
    TU_CHECK_EQ(l.v[0].flags, KVT_NS_KEYS);
    TU_CHECK(strcmp(l.v[0].name, "mooncake") == 0);
    TU_CHECK_EQ(l.v[1].id, 3);
    TU_CHECK(strcmp(l.v[1].tenant, "acme") == 0);
    TU_CHECK_EQ(l.v[1].layout.layers, 32);
    TU_CHECK_EQ(l.v[1].layout.dtype, KVT_DTYPE_BF16);
    TU_CHECK_EQ(l.v[2].id, 4);
    TU_CHECK_EQ(l.v[3].id, 10);
    TU_CHECK_EQ(strlen(l.v[3].name), KVT_NAME_MAX);

    /* Deleting a namespace removes its records, and only its records. */
    TU_CHECK_EQ(catalog_ns_delete(cat, 3), 0);
    TU_CHECK_EQ(scan_count(cat, 3, NULL), 0);
    TU_CHECK_EQ(scan_count(cat, 4, NULL), 1);
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 1, 0, &bad), -ENOENT);
    l.n = 0;
    TU_CHECK_EQ(catalog_ns_scan(cat, ns_collect, &l, NULL), 0);
    TU_CHECK_EQ(l.n, 3);
    /* The last id: its records' range ends at the end of all block keys. */
    catalog_ns last = make_ns(UINT32_MAX, "last", "acme", 16, 0);
    TU_CHECK_EQ(catalog_ns_put(cat, &last), 0);
    rs[0] = simple_rec(UINT32_MAX, 1, u, 16);
    rs[1] = simple_rec(UINT32_MAX, UINT64_MAX, u, 16);
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 2, 0, &bad), 0);
    TU_CHECK_EQ(scan_count(cat, UINT32_MAX, NULL), 2);
    TU_CHECK_EQ(catalog_ns_delete(cat, UINT32_MAX), 0);
    TU_CHECK_EQ(scan_count(cat, UINT32_MAX, NULL), 0);
    TU_CHECK_EQ(scan_count(cat, 4, NULL), 1);
    TU_CHECK_EQ(catalog_close(cat), 0);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- collisions */

/* A fresh catalog in dir (tag) holding namespace 1 (4 units per block). */
static catalog *open_with_ns1(char *dir, size_t size, const char *tag)
{
    make_dir(dir, size, tag);
    catalog *cat = open_ok(dir);
    catalog_ns ns = make_ns(1, "m", "t", 4, 0);
    TU_CHECK_EQ(catalog_ns_put(cat, &ns), 0);
    return cat;
}

static void test_collision(void)
{
    char dir[4200];
    catalog *cat = open_with_ns1(dir, sizeof dir, "collide");
    TU_CHECK_EQ(catalog_ns_put(cat, &(catalog_ns){.id = 2, .name = "m", .tenant = "u"}), 0);
    const uint32_t ua[4] = {10, 11, 12, 13}, ub[4] = {10, 11, 12, 14};
    const uint64_t K = 0x1234; /* one key for two different blocks: a forced collision */
    catalog_record a = simple_rec(1, K, ua, 4), b = simple_rec(1, K, ub, 4);
    size_t bad = 0;
    TU_CHECK_EQ(catalog_put_batch(cat, &a, 1, 0, &bad), 0);

    /* Against the catalog: refused, nothing of the batch written. */
    catalog_record other = simple_rec(1, 99, ub, 4);
    catalog_record batch[2] = {other, b};
    TU_CHECK_EQ(catalog_put_batch(cat, batch, 2, CATALOG_SYNC, &bad), CATALOG_ECOLLISION);
    TU_CHECK_EQ(bad, 1);
    TU_CHECK_EQ(scan_count(cat, 1, NULL), 1);
    /* Also in another tier: one key, one identity, whatever the tier. */
    b.tier = CATALOG_TIER_DISK;
    TU_CHECK_EQ(catalog_put_batch(cat, &b, 1, 0, &bad), CATALOG_ECOLLISION);
    TU_CHECK_EQ(bad, 0);
    /* Same units, another parent or depth: another block. */
    catalog_record c = a;
    c.depth = 1;
    c.parent_key = 5;
    TU_CHECK_EQ(catalog_put_batch(cat, &c, 1, 0, &bad), CATALOG_ECOLLISION);
    c = a;
    c.depth = 2;
    c.parent_key = 0;
    TU_CHECK_EQ(catalog_put_batch(cat, &c, 1, 0, &bad), CATALOG_ECOLLISION);
    /* Same units with more of them (n_units differs): another block. */
    const uint32_t ul[5] = {10, 11, 12, 13, 0};
    c = simple_rec(1, K, ul, 5);
    TU_CHECK_EQ(catalog_put_batch(cat, &c, 1, 0, &bad), CATALOG_ECOLLISION);

    /* Within one batch: the later one is refused, and the batch with it. */
    catalog_record d1 = simple_rec(1, 500, ua, 4), d2 = simple_rec(1, 500, ub, 4);
    d2.tier = CATALOG_TIER_DISK;
    catalog_record in[3] = {other, d1, d2};
    TU_CHECK_EQ(catalog_put_batch(cat, in, 3, 0, &bad), CATALOG_ECOLLISION);
    TU_CHECK_EQ(bad, 2);
    TU_CHECK_EQ(scan_count(cat, 1, NULL), 1);

    /* The same key in another namespace is another block. */
    b = simple_rec(2, K, ub, 4);
    TU_CHECK_EQ(catalog_put_batch(cat, &b, 1, 0, &bad), 0);

    /* The same identity: a second copy in another tier, a new location in the same tier,
     * and the same block twice in one batch are all fine. */
    catalog_record a2 = a;
    a2.tier = CATALOG_TIER_DISK;
    a2.compression = CATALOG_COMP_LZ4;
    a2.length = 12345;
    catalog_record a3 = a;
    a3.location = 4242;
    catalog_record same[2] = {a2, a3};
    TU_CHECK_EQ(catalog_put_batch(cat, same, 2, 0, &bad), 0);
    got g = {0};
    TU_CHECK_EQ(catalog_scan(cat, 1, 0, collect, &g, NULL), 0);
    TU_CHECK_EQ(g.n, 2);
    TU_CHECK_EQ(g.v[0].r.tier, CATALOG_TIER_NVME);
    TU_CHECK(g.v[0].r.location == 4242);
    TU_CHECK_EQ(g.v[1].r.tier, CATALOG_TIER_DISK);
    TU_CHECK_EQ(g.v[1].r.length, 12345);
    free(g.v);

    /* Once every copy is deleted the key is free for another block. */
    catalog_del del = {1, CATALOG_TIER_ALL, K};
    TU_CHECK_EQ(catalog_delete_batch(cat, &del, 1, 0), 0);
    b = simple_rec(1, K, ub, 4);
    TU_CHECK_EQ(catalog_put_batch(cat, &b, 1, 0, &bad), 0);
    g = (got){0};
    TU_CHECK_EQ(catalog_scan(cat, 1, 0, collect, &g, NULL), 0);
    TU_CHECK_EQ(g.n, 1);
    TU_CHECK_EQ(g.v[0].units[3], 14);
    free(g.v);
    TU_CHECK_EQ(catalog_close(cat), 0);
    rm_rf(dir);
}

/* catalog_write_batch: the write-through round's deletes and records in one batch. A record
 * whose copy the same batch deletes survives; a copy deleted first is no collision
 * reference (the old block of a reused key); checks fail the whole batch, deletes too. */
static void test_write_batch(void)
{
    char dir[4200];
    catalog *cat = open_with_ns1(dir, sizeof dir, "wbatch");
    const uint32_t ua[4] = {10, 11, 12, 13}, ub[4] = {10, 11, 12, 14};
    catalog_record a = simple_rec(1, 7, ua, 4), x = simple_rec(1, 8, ub, 4);
    size_t bad = 0;
    TU_CHECK_EQ(catalog_put_batch(cat, (catalog_record[]){a, x}, 2, 0, &bad), 0);

    /* delete a's nvme copy and put it again at a new location; delete x: one batch */
    catalog_record a2 = a;
    a2.location = 77;
    catalog_del dels[2] = {{1, CATALOG_TIER_NVME, 7}, {1, CATALOG_TIER_ALL, 8}};
    TU_CHECK_EQ(catalog_write_batch(cat, dels, 2, &a2, 1, CATALOG_SYNC, &bad), 0);
    got g = {0};
    TU_CHECK_EQ(catalog_scan(cat, 1, 0, collect, &g, NULL), 0);
    TU_CHECK_EQ(g.n, 1);
    TU_CHECK(g.v[0].r.key == 7 && g.v[0].r.location == 77);
    free(g.v);

    /* key 7 now holds another block: a collision, unless the batch deletes the old copy */
    catalog_record b = simple_rec(1, 7, ub, 4);
    TU_CHECK_EQ(catalog_write_batch(cat, NULL, 0, &b, 1, 0, &bad), CATALOG_ECOLLISION);
    catalog_del other = {1, CATALOG_TIER_DISK, 7}; /* not the copy that exists */
    TU_CHECK_EQ(catalog_write_batch(cat, &other, 1, &b, 1, 0, &bad), CATALOG_ECOLLISION);
    TU_CHECK_EQ(bad, 0);
    catalog_del old = {1, CATALOG_TIER_NVME, 7};
    TU_CHECK_EQ(catalog_write_batch(cat, &old, 1, &b, 1, CATALOG_SYNC, &bad), 0);
    g = (got){0};
    TU_CHECK_EQ(catalog_scan(cat, 1, 0, collect, &g, NULL), 0);
    TU_CHECK_EQ(g.n, 1);
    TU_CHECK_EQ(g.v[0].units[3], 14);
    free(g.v);

    /* a refused record: nothing written, the deletes neither */
    catalog_del d7 = {1, CATALOG_TIER_ALL, 7};
    catalog_record c = simple_rec(2, 9, ua, 4); /* namespace 2 does not exist */
    TU_CHECK_EQ(catalog_write_batch(cat, &d7, 1, &c, 1, 0, &bad), -ENOENT);
    TU_CHECK_EQ(scan_count(cat, 1, NULL), 1);
    /* deletes only; bad arguments */
    TU_CHECK_EQ(catalog_write_batch(cat, &d7, 1, NULL, 0, CATALOG_SYNC, &bad), 0);
    TU_CHECK_EQ(scan_count(cat, 1, NULL), 0);
    catalog_del badtier = {1, 99, 7};
    TU_CHECK_EQ(catalog_write_batch(cat, &badtier, 1, &a, 1, 0, &bad), -EINVAL);
    TU_CHECK_EQ(catalog_write_batch(cat, NULL, 1, &a, 1, 0, &bad), -EINVAL);
    TU_CHECK_EQ(scan_count(cat, 1, NULL), 0);
    TU_CHECK_EQ(catalog_close(cat), 0);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- garbage */

static void raw_put(rocksdb_t *db, const unsigned char *k, size_t kl, const unsigned char *v, size_t vl)
{
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char *err = NULL;
    rocksdb_put(db, wo, (const char *)k, kl, (const char *)v, vl, &err);
    TU_CHECK(err == NULL);
    rocksdb_writeoptions_destroy(wo);
}

static unsigned char *raw_get(rocksdb_t *db, const unsigned char *k, size_t kl, size_t *vl)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *err = NULL;
    char *v = rocksdb_get(db, ro, (const char *)k, kl, vl, &err);
    TU_CHECK(err == NULL && v);
    rocksdb_readoptions_destroy(ro);
    return (unsigned char *)v;
}

static rocksdb_t *raw_open(const char *dir)
{
    rocksdb_options_t *o = rocksdb_options_create();
    char *err = NULL;
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_t *db = rocksdb_open(o, dir, &err);
    TU_CHECK(err == NULL && db);
    rocksdb_options_destroy(o);
    return db;
}

static void bkey(unsigned char *k, uint32_t ns, uint64_t key, unsigned sub)
{
    k[0] = 'B';
    for (int i = 0; i < 4; i++)
        k[1 + i] = (unsigned char)(ns >> (24 - 8 * i));
    for (int i = 0; i < 8; i++)
        k[5 + i] = (unsigned char)(key >> (56 - 8 * i));
    k[13] = (unsigned char)sub;
}

static void test_garbage(uint64_t seed)
{
    char dir[4200];
    make_dir(dir, sizeof dir, "garbage");
    tu_rng r;
    tu_rng_init(&r, seed ^ 0x6a7262);
    catalog *cat = open_ok(dir);
    TU_CHECK_EQ(catalog_ns_put(cat, &(catalog_ns){.id = 1, .name = "m", .tenant = "t"}), 0);
    uint32_t u[16];
    tu_fill(&r, u, sizeof u);
    catalog_record good[4];
    for (int i = 0; i < 4; i++)
        good[i] = simple_rec(1, 100 + (uint64_t)i, u, 16);
    TU_CHECK_EQ(catalog_put_batch(cat, good, 4, 0, NULL), 0);
    for (int i = 0; i < 200; i++) { /* to be garbled below */
        catalog_record m = simple_rec(1, 2000 + (uint64_t)i, u, 16);
        m.depth = (uint32_t)i;
        m.parent_key = i ? tu_next(&r) : 0;
        m.ttl_deadline = tu_next(&r);
        TU_CHECK_EQ(catalog_put_batch(cat, &m, 1, 0, NULL), 0);
    }
    catalog_touch t = {1, 101, 1ull << 50};
    TU_CHECK_EQ(catalog_touch_batch(cat, &t, 1), 0);
    TU_CHECK_EQ(catalog_close(cat), 0);

    /* Write garbled entries straight into RocksDB, each a way a value can go wrong. */
    rocksdb_t *db = raw_open(dir);
    unsigned char k[20], gk[14];
    size_t vl;
    bkey(gk, 1, 100, 1 + CATALOG_TIER_NVME);
    unsigned char *gv = raw_get(db, gk, 14, &vl); /* a valid record to mutate */
    TU_CHECK_EQ(vl, 64 + 4 * 16);
    unsigned char v[256];
    int garbled = 0;
    bkey(k, 1, 200, 1);
    raw_put(db, k, 14, gv, 10), garbled++;                /* short value */
    memcpy(v, gv, vl);
    v[0] = 2;
    bkey(k, 1, 201, 1);
    raw_put(db, k, 14, v, vl), garbled++;                 /* unknown version */
    memcpy(v, gv, vl);
    v[60] ^= 1;
    bkey(k, 1, 100, 1 + CATALOG_TIER_NVME);
    raw_put(db, k, 14, v, vl), garbled++;                 /* a flipped unit bit: good[0] lost */
    bkey(k, 1, 202, 1 + CATALOG_TIER_DISK);
    raw_put(db, k, 14, gv, vl), garbled++;                /* a valid value under another key */
    memcpy(v, gv, vl);
    v[52] = 0, v[53] = 0, v[54] = 0, v[55] = 0;
    bkey(k, 1, 203, 1);
    raw_put(db, k, 14, v, vl), garbled++;                 /* n_units 0 */
    memcpy(v, gv, vl);
    v[55] = 0x40;
    bkey(k, 1, 204, 1);
    raw_put(db, k, 14, v, vl), garbled++;                 /* n_units huge, value short */
    bkey(k, 1, 205, 1);
    raw_put(db, k, 13, gv, vl), garbled++;                /* key too short */
    bkey(k, 1, 205, 1);
    raw_put(db, k, 17, gv, vl), garbled++;                /* key too long */
    bkey(k, 1, 206, 9);
    raw_put(db, k, 14, gv, vl), garbled++;                /* unknown sub-key */
    bkey(k, 1, 102, 0);
    raw_put(db, k, 14, gv, 17), garbled++;                /* access entry with a bad check */
    for (int i = 0; i < 200; i++) {                       /* random values of random lengths */
        size_t n = tu_below(&r, 200);
        tu_fill(&r, v, n);
        bkey(k, 1, 1000 + (uint64_t)i, (unsigned)tu_below(&r, CATALOG_TIERS + 1));
        raw_put(db, k, 14, v, n), garbled++;
    }
    /* One random byte of a valid record changed, under the record's own key. */
    for (int i = 0; i < 200; i++) {
        size_t ml;
        bkey(k, 1, 2000 + (uint64_t)i, 1 + CATALOG_TIER_NVME);
        unsigned char *mv = raw_get(db, k, 14, &ml);
        TU_CHECK_EQ(ml, vl);
        mv[tu_below(&r, ml)] ^= (unsigned char)(1 + tu_below(&r, 255));
        raw_put(db, k, 14, mv, ml), garbled++;
        rocksdb_free(mv);
    }
    /* namespace table: bad value, bad key length */
    unsigned char nk[6] = {'N', 0, 0, 0, 2, 0};
    raw_put(db, nk, 5, gv, 40);
    raw_put(db, nk, 6, gv, 40);
    rocksdb_free(gv);
    rocksdb_close(db);

    cat = open_ok(dir);
    got g = {0};
    catalog_scan_stats st;
    TU_CHECK_EQ(catalog_scan(cat, 1, 0, collect, &g, &st), 0);
    TU_CHECK_EQ(st.garbled, garbled);
    TU_CHECK_EQ(st.orphans, 0);
    TU_CHECK_EQ(g.n, 3); /* good[1..3] */
    got_units(&g);
    good[1].last_access = t.last_access; /* the touch shows through */
    for (size_t i = 0; i < g.n; i++)
        check_rec_eq(&g.v[i].r, &good[i + 1]);
    free(g.v);
    uint64_t ng = 0;
    ns_list l = {.n = 0};
    TU_CHECK_EQ(catalog_ns_scan(cat, ns_collect, &l, &ng), 0);
    TU_CHECK_EQ(ng, 2);
    TU_CHECK_EQ(l.n, 1);

    /* Purge removes exactly the garbled entries (and orphans). */
    catalog_del del = {1, CATALOG_TIER_NVME, 103};
    TU_CHECK_EQ(catalog_delete_batch(cat, &del, 1, 0), 0);
    t.key = 103;
    TU_CHECK_EQ(catalog_touch_batch(cat, &t, 1), 0); /* orphan */
    g = (got){0};
    TU_CHECK_EQ(catalog_scan(cat, 1, CATALOG_SCAN_PURGE, collect, &g, &st), 0);
    TU_CHECK_EQ(st.garbled, garbled);
    TU_CHECK_EQ(st.orphans, 1);
    TU_CHECK_EQ(st.purged, garbled + 1);
    TU_CHECK_EQ(g.n, 2);
    free(g.v);
    TU_CHECK_EQ(catalog_close(cat), 0);
    cat = open_ok(dir);
    TU_CHECK_EQ(scan_count(cat, 1, &st), 2);
    TU_CHECK_EQ(st.garbled, 0);
    TU_CHECK_EQ(st.orphans, 0);
    TU_CHECK_EQ(catalog_close(cat), 0);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- errors and arguments */

typedef struct logbuf {
    int calls, last_status;
    char msg[512];
} logbuf;

static void log_fn(void *ctx, int status, const char *msg)
{
    logbuf *l = ctx;
    l->calls++;
    l->last_status = status;
    snprintf(l->msg, sizeof l->msg, "%s", msg);
}

static void test_errors(void)
{
    char dir[4200], path[4300];
    make_dir(dir, sizeof dir, "errors");
    catalog *cat = NULL, *cat2 = NULL;
    logbuf lb = {0};
    catalog_opts o = {log_fn, &lb, 1};
    TU_CHECK_EQ(catalog_open(NULL, NULL, &cat), -EINVAL);
    TU_CHECK_EQ(catalog_open(dir, NULL, NULL), -EINVAL);
    TU_CHECK_EQ(catalog_open(dir, &o, &cat), -ENOENT); /* no_create */
    TU_CHECK(cat == NULL);
    TU_CHECK_EQ(lb.calls, 1);
    TU_CHECK_EQ(lb.last_status, -ENOENT);
    TU_CHECK(strlen(lb.msg) > 0);

    o.no_create = 0;
    TU_CHECK_EQ(catalog_open(dir, &o, &cat), 0);
    TU_CHECK_EQ(catalog_open(dir, &o, &cat2), -EBUSY); /* RocksDB's LOCK */
    TU_CHECK(cat2 == NULL);
    TU_CHECK_EQ(lb.last_status, -EBUSY);
    char buf[512];
    catalog_last_error(cat, buf, sizeof buf);
    TU_CHECK(strcmp(buf, "") == 0); /* this catalog had no error */

    uint32_t u[4] = {1, 2, 3, 4};
    catalog_record r = simple_rec(1, 5, u, 4);
    size_t bad = 0;
    TU_CHECK_EQ(catalog_ns_put(cat, &(catalog_ns){.id = 1, .name = "m", .tenant = "t"}), 0);
    catalog_record rs[2] = {r, r};
    rs[1].tier = CATALOG_TIERS;
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 2, 0, &bad), -EINVAL);
    TU_CHECK_EQ(bad, 1);
    rs[1] = r, rs[1].compression = CATALOG_COMPS;
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 2, 0, &bad), -EINVAL);
    rs[1] = r, rs[1].n_units = 0;
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 2, 0, &bad), -EINVAL);
    rs[1] = r, rs[1].n_units = CATALOG_MAX_UNITS + 1;
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 2, 0, &bad), -EINVAL);
    rs[1] = r, rs[1].units = NULL;
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 2, 0, &bad), -EINVAL);
    rs[1] = r, rs[1].parent_key = 1; /* depth 0 has no parent */
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 2, 0, &bad), -EINVAL);
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 2, 0x10, &bad), -EINVAL);
    TU_CHECK_EQ(catalog_put_batch(cat, NULL, 1, 0, &bad), -EINVAL);
    TU_CHECK_EQ(catalog_put_batch(cat, NULL, 0, CATALOG_SYNC, NULL), 0);
    TU_CHECK_EQ(scan_count(cat, 1, NULL), 0);
    TU_CHECK_EQ(catalog_delete_batch(cat, &(catalog_del){1, 4, 5}, 1, 0), -EINVAL);
    TU_CHECK_EQ(catalog_delete_batch(cat, NULL, 0, 0), 0);
    TU_CHECK_EQ(catalog_touch_batch(cat, NULL, 1), -EINVAL);
    TU_CHECK_EQ(catalog_scan(cat, 1, 0, NULL, NULL, NULL), -EINVAL);
    TU_CHECK_EQ(catalog_ns_scan(NULL, ns_collect, NULL, NULL), -EINVAL);
    TU_CHECK_EQ(catalog_flush(NULL), -EINVAL);
    TU_CHECK_EQ(catalog_close(NULL), 0);
    /* A callback's nonzero value stops the scan and comes back. */
    TU_CHECK_EQ(catalog_put_batch(cat, &r, 1, 0, NULL), 0);
    TU_CHECK_EQ(catalog_close(cat), 0);

    /* A RocksDB that is not a catalog, and a catalog of a future format. */
    make_dir(path, sizeof path, "foreign");
    rocksdb_t *db = raw_open(path);
    raw_put(db, (const unsigned char *)"hello", 5, (const unsigned char *)"x", 1);
    rocksdb_close(db);
    lb.calls = 0;
    TU_CHECK_EQ(catalog_open(path, &o, &cat), CATALOG_EFORMAT);
    TU_CHECK_EQ(lb.calls, 1);
    db = raw_open(dir);
    raw_put(db, (const unsigned char *)"Mformat", 7, (const unsigned char *)"\2\0\0\0", 4);
    rocksdb_close(db);
    TU_CHECK_EQ(catalog_open(dir, &o, &cat), CATALOG_EFORMAT);

    /* A path that is a regular file: RocksDB's error, mapped, with its message. */
    snprintf(path, sizeof path, "%s/plainfile", g_dir);
    FILE *f = fopen(path, "w");
    TU_CHECK(f);
    fclose(f);
    lb.calls = 0;
    int st = catalog_open(path, &o, &cat);
    TU_CHECK(st != 0);
    TU_CHECK_EQ(lb.calls, 1);
    TU_CHECK(strcmp(catalog_strerror(st), "not a catalog status") != 0);
    printf("errors: regular-file open -> %d (%s): %s\n", st, catalog_strerror(st), lb.msg);
    remove(path);
    for (int s = CATALOG_EFORMAT; s <= CATALOG_EROCKS; s++)
        TU_CHECK(catalog_strerror(s) != NULL);
    rm_rf(dir);
    make_dir(path, sizeof path, "foreign");
    rm_rf(path);
}

static int stop_at_two(void *ctx, const catalog_record *r)
{
    (void)r;
    return ++*(int *)ctx == 2 ? 42 : 0;
}

static void test_scan_stop(void)
{
    char dir[4200];
    make_dir(dir, sizeof dir, "stop");
    catalog *cat = open_ok(dir);
    TU_CHECK_EQ(catalog_ns_put(cat, &(catalog_ns){.id = 1, .name = "m", .tenant = "t"}), 0);
    uint32_t u[1] = {7};
    catalog_record rs[3] = {simple_rec(1, 1, u, 1), simple_rec(1, 2, u, 1), simple_rec(1, 3, u, 1)};
    TU_CHECK_EQ(catalog_put_batch(cat, rs, 3, 0, NULL), 0);
    int calls = 0;
    catalog_scan_stats st;
    TU_CHECK_EQ(catalog_scan(cat, 1, 0, stop_at_two, &calls, &st), 42);
    TU_CHECK_EQ(calls, 2);
    TU_CHECK_EQ(st.records, 2);
    TU_CHECK_EQ(catalog_close(cat), 0);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- out of memory */

static void test_oom(void)
{
    char dir[4200];
    make_dir(dir, sizeof dir, "oom");
    catalog *cat = NULL;
    long k;
    for (k = 0;; k++) {
        util_alloc_fail_after(k);
        int st = catalog_open(dir, NULL, &cat);
        util_alloc_fail_after(-1);
        if (st == 0)
            break;
        TU_CHECK_EQ(st, -ENOMEM);
        TU_CHECK(cat == NULL);
        TU_CHECK(k < 1000);
    }
    printf("oom: open succeeded after %ld injected failures\n", k);
    for (k = 0;; k++) {
        util_alloc_fail_after(k);
        int st = catalog_ns_put(cat, &(catalog_ns){.id = 1, .name = "m", .tenant = "t"});
        util_alloc_fail_after(-1);
        if (st == 0)
            break;
        TU_CHECK_EQ(st, -ENOMEM);
        TU_CHECK(k < 1000);
    }
    uint32_t u[16] = {0};
    catalog_record rs[8];
    for (int i = 0; i < 8; i++)
        rs[i] = simple_rec(1, 10 + (uint64_t)i, u, 16);
    for (k = 0;; k++) {
        util_alloc_fail_after(k);
        int st = catalog_put_batch(cat, rs, 8, 0, NULL);
        util_alloc_fail_after(-1);
        if (st == 0)
            break;
        TU_CHECK_EQ(st, -ENOMEM);
        TU_CHECK_EQ(scan_count(cat, 1, NULL), 0); /* nothing half written */
        TU_CHECK(k < 1000);
    }
    TU_CHECK_EQ(scan_count(cat, 1, NULL), 8);
    for (k = 0;; k++) {
        got g = {0};
        util_alloc_fail_after(k);
        int st = catalog_scan(cat, 1, 0, collect, &g, NULL);
        util_alloc_fail_after(-1);
        free(g.v);
        if (st == 0)
            break;
        TU_CHECK_EQ(st, -ENOMEM);
        TU_CHECK(k < 1000);
    }
    for (k = 0;; k++) {
        ns_list l = {.n = 0};
        util_alloc_fail_after(k);
        int st = catalog_ns_scan(cat, ns_collect, &l, NULL);
        util_alloc_fail_after(-1);
        if (st == 0)
            break;
        TU_CHECK_EQ(st, -ENOMEM);
        TU_CHECK(k < 1000);
    }
    TU_CHECK_EQ(catalog_close(cat), 0);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- threads */

#define NTHR 4
#define PER_THR 200

typedef struct thr_arg {
    catalog *cat;
    uint32_t id;
} thr_arg;

static void *thr_put(void *p)
{
    thr_arg *a = p;
    uint32_t u[4] = {a->id, 0, 0, 0};
    for (uint32_t i = 0; i < PER_THR; i += 4) {
        catalog_record rs[4];
        uint32_t us[4][4];
        for (int j = 0; j < 4; j++) {
            memcpy(us[j], u, sizeof u);
            us[j][1] = i + (uint32_t)j;
            rs[j] = simple_rec(1, (uint64_t)a->id << 32 | (i + (uint64_t)j), us[j], 4);
        }
        if (catalog_put_batch(a->cat, rs, 4, (i & 4) ? CATALOG_SYNC : 0, NULL) != 0)
            return (void *)1;
        catalog_touch t = {1, rs[0].key, 1000 + i};
        if (catalog_touch_batch(a->cat, &t, 1) != 0)
            return (void *)1;
        int calls = 0;
        if (i % 40 == 0) {
            int rc = catalog_scan(a->cat, 1, 0, stop_at_two, &calls, NULL);
            if (rc != 0 && rc != 42)
                return (void *)1;
        }
    }
    return NULL;
}

static void test_threads(void)
{
    char dir[4200];
    make_dir(dir, sizeof dir, "threads");
    catalog *cat = open_ok(dir);
    TU_CHECK_EQ(catalog_ns_put(cat, &(catalog_ns){.id = 1, .name = "m", .tenant = "t"}), 0);
    pthread_t th[NTHR];
    thr_arg args[NTHR];
    for (int i = 0; i < NTHR; i++) {
        args[i] = (thr_arg){cat, (uint32_t)i + 1};
        TU_CHECK_EQ(pthread_create(&th[i], NULL, thr_put, &args[i]), 0);
    }
    for (int i = 0; i < NTHR; i++) {
        void *rv;
        TU_CHECK_EQ(pthread_join(th[i], &rv), 0);
        TU_CHECK(rv == NULL);
    }
    TU_CHECK_EQ(catalog_close(cat), 0);
    cat = open_ok(dir);
    catalog_scan_stats st;
    TU_CHECK_EQ(scan_count(cat, 1, &st), NTHR * PER_THR);
    TU_CHECK_EQ(st.orphans, 0);
    TU_CHECK_EQ(catalog_close(cat), 0);
    rm_rf(dir);
}

int main(void)
{
    uint64_t seed = tu_seed("test_catalog", 20240611);
    setup_root();
    test_errors();
    test_namespaces();
    test_collision();
    test_write_batch();
    test_scan_stop();
    test_garbage(seed);
    test_oom();
    test_threads();
    test_model(seed);
    rm_rf(g_dir);
    printf("test_catalog: ok\n");
    return 0;
}
