/*
 * catalog.c — see catalog.h for the key and value layouts, durability and threads.
 *
 * RocksDB handles are created once at open: two write options (plain, and sync for the
 * namespace table and CATALOG_SYNC deletes) and a default read option; scans make their own,
 * bounded to one namespace and not filling the block cache (a rebuild reads everything once).
 * Bloom filters, in SST files and in the memtable, serve the collision check of every put:
 * it looks up keys that are almost always absent. Every RocksDB failure goes through
 * rocks_fail(), which maps the message to a status, keeps it for catalog_last_error() and
 * hands it to the log hook.
 */
#include "catalog.h"

#include <errno.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util/util.h"

#define KEY_BLK_LEN 14 /* 'B' ns(4) key(8) sub(1) */
#define KEY_NS_LEN 5   /* 'N' ns(4) */
#define SUB_ACCESS 0u  /* sub byte of the access entry; copies use 1 + tier */
#define REC_HDR 56     /* record bytes before the units */
#define REC_FIXED 64   /* record bytes besides the units: header + check */
#define ACC_LEN 17
#define NS_HDR 28
#define ERR_MAX 512

static const char FORMAT_KEY[] = "Mformat";

struct catalog {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_env_t *env; /* the default environment, its pools at low CPU priority */
    rocksdb_writeoptions_t *wo;      /* WAL, no sync */
    rocksdb_writeoptions_t *wo_sync; /* WAL + fsync */
    rocksdb_readoptions_t *ro;
    catalog_log_fn log;
    void *log_ctx;
    pthread_mutex_t lock;     /* put batches and namespace changes: check-then-write */
    pthread_mutex_t err_lock; /* err[] */
    char err[ERR_MAX];
};

/* ---------------------------------------------------------------- byte helpers */

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_le32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static void put_be32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (24 - 8 * i));
}
static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (56 - 8 * i));
}
static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get_be64(const unsigned char *p) { return (uint64_t)get_be32(p) << 32 | get_be32(p + 4); }

/* The check word binds a value to its key, so a value copied under another key fails too. */
static uint64_t check_word(const unsigned char *k, size_t kl, const unsigned char *v, size_t vl)
{
    return XXH3_64bits_withSeed(v, vl, XXH3_64bits(k, kl));
}

static void blk_key(unsigned char *k, uint32_t ns, uint64_t key, unsigned sub)
{
    k[0] = 'B';
    put_be32(k + 1, ns);
    put_be64(k + 5, key);
    k[13] = (unsigned char)sub;
}

static void ns_key(unsigned char *k, uint32_t ns)
{
    k[0] = 'N';
    put_be32(k + 1, ns);
}

/* The exclusive upper bound of namespace ns's block keys: 'B' [ns+1], or "C" past the last. */
static size_t blk_upper(unsigned char *k, uint32_t ns)
{
    if (ns == UINT32_MAX) {
        k[0] = 'C';
        return 1;
    }
    k[0] = 'B';
    put_be32(k + 1, ns + 1);
    return 5;
}

/* ---------------------------------------------------------------- errors */

/* Map a RocksDB message to a status. The C API gives only text: "<Code>: <detail>". */
static int rocks_map(const char *msg)
{
    if (strncmp(msg, "Corruption", 10) == 0)
        return CATALOG_ECORRUPT;
    if (strstr(msg, "No space left"))
        return -ENOSPC;
    if (strstr(msg, "lock hold by current process") || strstr(msg, "While lock file"))
        return -EBUSY;
    if (strstr(msg, "does not exist (create_if_missing is false)"))
        return -ENOENT;
    return CATALOG_EROCKS;
}

static void note_error(catalog *cat, int status, const char *msg)
{
    pthread_mutex_lock(&cat->err_lock);
    snprintf(cat->err, sizeof cat->err, "%s", msg);
    pthread_mutex_unlock(&cat->err_lock);
    if (cat->log)
        cat->log(cat->log_ctx, status, msg);
}

/* Consume a RocksDB error string (freed here) and return its status. */
static int rocks_fail(catalog *cat, char *err)
{
    int st = rocks_map(err);
    note_error(cat, st, err);
    rocksdb_free(err);
    return st;
}

const char *catalog_strerror(int status)
{
    switch (status) {
    case 0: return "ok";
    case CATALOG_EROCKS: return "catalog: RocksDB failed (see catalog_last_error)";
    case CATALOG_ECORRUPT: return "catalog: RocksDB reported corruption";
    case CATALOG_ECOLLISION: return "catalog: block key taken by a different block";
    case CATALOG_EFORMAT: return "catalog: unknown catalog format";
    case -EINVAL: return "invalid argument";
    case -ENOMEM: return "out of memory";
    case -ENOENT: return "no such catalog or namespace";
    case -EEXIST: return "namespace id or name already taken";
    case -EBUSY: return "catalog directory is in use";
    case -ENOSPC: return "no space left on device";
    default: return "not a catalog status";
    }
}

void catalog_last_error(catalog *cat, char *buf, size_t size)
{
    if (!buf || size == 0)
        return;
    buf[0] = '\0';
    if (!cat)
        return;
    pthread_mutex_lock(&cat->err_lock);
    snprintf(buf, size, "%s", cat->err);
    pthread_mutex_unlock(&cat->err_lock);
}

/* ---------------------------------------------------------------- record codec */

static size_t rec_bytes(uint32_t n_units) { return REC_FIXED + 4 * (size_t)n_units; }

static int rec_valid_args(const catalog_record *r)
{
    return r->tier < CATALOG_TIERS && r->compression < CATALOG_COMPS && r->n_units >= 1 &&
           r->n_units <= CATALOG_MAX_UNITS && r->units && (r->depth != 0 || r->parent_key == 0);
}

/* Encode r's value for key k into v (rec_bytes(r->n_units) bytes). */
static void rec_encode(const catalog_record *r, const unsigned char *k, unsigned char *v)
{
    size_t body = REC_HDR + 4 * (size_t)r->n_units;
    v[0] = CATALOG_RECORD_VERSION;
    v[1] = r->compression;
    v[2] = v[3] = 0;
    put_le32(v + 4, r->length);
    put_le64(v + 8, r->location);
    put_le64(v + 16, r->checksum);
    put_le64(v + 24, r->parent_key);
    put_le64(v + 32, r->last_access);
    put_le64(v + 40, r->ttl_deadline);
    put_le32(v + 48, r->depth);
    put_le32(v + 52, r->n_units);
    for (uint32_t i = 0; i < r->n_units; i++)
        put_le32(v + REC_HDR + 4 * (size_t)i, r->units[i]);
    put_le64(v + body, check_word(k, KEY_BLK_LEN, v, body));
}

/* Is v (len bytes, stored under key k) a well-formed version-1 record? */
static int rec_check(const unsigned char *k, const unsigned char *v, size_t len)
{
    if (len < REC_FIXED || v[0] != CATALOG_RECORD_VERSION || v[1] >= CATALOG_COMPS || v[2] || v[3])
        return 0;
    uint32_t n = get_le32(v + 52);
    if (n < 1 || n > CATALOG_MAX_UNITS || len != rec_bytes(n))
        return 0;
    if (get_le32(v + 48) == 0 && get_le64(v + 24) != 0)
        return 0;
    size_t body = len - 8;
    return get_le64(v + body) == check_word(k, KEY_BLK_LEN, v, body);
}

/* Same block identity (parent_key, depth, n_units, units)? Both values are valid records. */
static int rec_same_identity(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    return alen == blen && memcmp(a + 24, b + 24, 8) == 0 &&
           memcmp(a + 48, b + 48, alen - 8 - 48) == 0;
}

/* Decode a checked record into r; units go to *ubuf (grown as needed, [*ucap] entries). */
static int rec_decode(const unsigned char *k, const unsigned char *v, size_t len, catalog_record *r,
                      uint32_t **ubuf, uint32_t *ucap)
{
    uint32_t n = get_le32(v + 52);
    if (n > *ucap) {
        uint32_t *nb = util_realloc(*ubuf, (size_t)n * sizeof *nb);
        if (!nb)
            return -ENOMEM;
        *ubuf = nb;
        *ucap = n;
    }
    (void)len;
    r->ns_id = get_be32(k + 1);
    r->key = get_be64(k + 5);
    r->tier = (uint8_t)(k[13] - 1);
    r->compression = v[1];
    r->length = get_le32(v + 4);
    r->location = get_le64(v + 8);
    r->checksum = get_le64(v + 16);
    r->parent_key = get_le64(v + 24);
    r->last_access = get_le64(v + 32);
    r->ttl_deadline = get_le64(v + 40);
    r->depth = get_le32(v + 48);
    r->n_units = n;
    for (uint32_t i = 0; i < n; i++)
        (*ubuf)[i] = get_le32(v + REC_HDR + 4 * (size_t)i);
    r->units = *ubuf;
    return 0;
}

static void acc_encode(uint64_t last_access, const unsigned char *k, unsigned char *v)
{
    v[0] = CATALOG_RECORD_VERSION;
    put_le64(v + 1, last_access);
    put_le64(v + 9, check_word(k, KEY_BLK_LEN, v, 9));
}

static int acc_check(const unsigned char *k, const unsigned char *v, size_t len)
{
    return len == ACC_LEN && v[0] == CATALOG_RECORD_VERSION &&
           get_le64(v + 9) == check_word(k, KEY_BLK_LEN, v, 9);
}

static int name_len(const char *s, size_t *len)
{
    size_t n = strnlen(s, KVT_NAME_MAX + 1);
    if (n == 0 || n > KVT_NAME_MAX)
        return KVT_ENAME;
    *len = n;
    return 0;
}

/* Encode a namespace value into v (NS_HDR + 255 + 255 + 8 bytes of room); returns its size. */
static size_t ns_encode(const catalog_ns *ns, size_t nl, size_t tl, const unsigned char *k,
                        unsigned char *v)
{
    v[0] = CATALOG_RECORD_VERSION;
    v[1] = 0;
    v[2] = (unsigned char)nl;
    v[3] = (unsigned char)tl;
    put_le32(v + 4, ns->flags);
    put_le32(v + 8, ns->layout.layers);
    put_le32(v + 12, ns->layout.kv_heads);
    put_le32(v + 16, ns->layout.head_dim);
    put_le32(v + 20, (uint32_t)ns->layout.dtype);
    put_le32(v + 24, ns->layout.block_tokens);
    memcpy(v + NS_HDR, ns->name, nl);
    memcpy(v + NS_HDR + nl, ns->tenant, tl);
    size_t body = NS_HDR + nl + tl;
    put_le64(v + body, check_word(k, KEY_NS_LEN, v, body));
    return body + 8;
}

/* Decode namespace value v under key k into ns; 0 if it is not a valid entry. */
static int ns_decode(const unsigned char *k, size_t kl, const unsigned char *v, size_t len,
                     catalog_ns *ns)
{
    if (kl != KEY_NS_LEN || len < NS_HDR + 8 || v[0] != CATALOG_RECORD_VERSION || v[1])
        return 0;
    size_t nl = v[2], tl = v[3];
    if (nl == 0 || tl == 0 || len != NS_HDR + nl + tl + 8)
        return 0;
    if (get_le64(v + len - 8) != check_word(k, KEY_NS_LEN, v, len - 8))
        return 0;
    if (memchr(v + NS_HDR, 0, nl + tl))
        return 0;
    memset(ns, 0, sizeof *ns);
    ns->id = get_be32(k + 1);
    ns->flags = get_le32(v + 4);
    ns->layout.layers = get_le32(v + 8);
    ns->layout.kv_heads = get_le32(v + 12);
    ns->layout.head_dim = get_le32(v + 16);
    ns->layout.dtype = (kvt_dtype)get_le32(v + 20);
    ns->layout.block_tokens = get_le32(v + 24);
    memcpy(ns->name, v + NS_HDR, nl);
    memcpy(ns->tenant, v + NS_HDR + nl, tl);
    return 1;
}

/* ---------------------------------------------------------------- open, close, flush */

static void cat_free(catalog *cat)
{
    if (cat->db)
        rocksdb_close(cat->db);
    if (cat->opts)
        rocksdb_options_destroy(cat->opts);
    if (cat->env)
        rocksdb_env_destroy(cat->env); /* the handle: the default environment lives on */
    if (cat->wo)
        rocksdb_writeoptions_destroy(cat->wo);
    if (cat->wo_sync)
        rocksdb_writeoptions_destroy(cat->wo_sync);
    if (cat->ro)
        rocksdb_readoptions_destroy(cat->ro);
    pthread_mutex_destroy(&cat->lock);
    pthread_mutex_destroy(&cat->err_lock);
    util_free(cat);
}

/* A fresh database gets the format key; an existing one must carry ours. A database with
 * data but no format key is not a catalog (someone else's RocksDB): refuse it. */
static int check_format(catalog *cat)
{
    char *err = NULL;
    size_t vl = 0;
    int st = 0;
    char *v = rocksdb_get(cat->db, cat->ro, FORMAT_KEY, sizeof FORMAT_KEY - 1, &vl, &err);
    if (err)
        return rocks_fail(cat, err);
    if (v) {
        if (vl != 4 || get_le32((const unsigned char *)v) != CATALOG_FORMAT) {
            note_error(cat, CATALOG_EFORMAT, "catalog: unknown format key");
            st = CATALOG_EFORMAT;
        }
        rocksdb_free(v);
        return st;
    }
    rocksdb_iterator_t *it = rocksdb_create_iterator(cat->db, cat->ro);
    rocksdb_iter_seek_to_first(it);
    int empty = !rocksdb_iter_valid(it);
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err)
        return rocks_fail(cat, err);
    if (!empty) {
        note_error(cat, CATALOG_EFORMAT, "catalog: directory holds a RocksDB without a format key");
        return CATALOG_EFORMAT;
    }
    unsigned char fv[4];
    put_le32(fv, CATALOG_FORMAT);
    rocksdb_put(cat->db, cat->wo_sync, FORMAT_KEY, sizeof FORMAT_KEY - 1, (const char *)fv, 4, &err);
    return err ? rocks_fail(cat, err) : 0;
}

int catalog_open(const char *dir, const catalog_opts *opts, catalog **out)
{
    if (!dir || !*dir || !out)
        return -EINVAL;
    *out = NULL;
    catalog *cat = util_calloc(1, sizeof *cat);
    if (!cat)
        return -ENOMEM;
    pthread_mutex_init(&cat->lock, NULL);
    pthread_mutex_init(&cat->err_lock, NULL);
    if (opts) {
        cat->log = opts->log;
        cat->log_ctx = opts->log_ctx;
    }
    int st;
    char *err = NULL;
    cat->opts = rocksdb_options_create();
    /* Memtable flushes and compactions are background work: on a busy machine the threads
     * serving requests get the CPU first (the engine's write-through is niced the same way
     * with kvt_options_set_background_nice); RocksDB slows its writers if they fall behind. */
    cat->env = rocksdb_create_default_env();
    rocksdb_env_lower_thread_pool_cpu_priority(cat->env);
    rocksdb_env_lower_high_priority_thread_pool_cpu_priority(cat->env);
    rocksdb_options_set_env(cat->opts, cat->env);
    rocksdb_options_set_create_if_missing(cat->opts, !(opts && opts->no_create));
    /* Point-in-time recovery: a WAL torn by a crash is replayed up to its last whole batch;
     * what was acknowledged as durable precedes the tear. Absolute consistency would refuse
     * to open after every crash during a write. */
    rocksdb_options_set_wal_recovery_mode(cat->opts, 2);
    /* RocksDB's own LOG file in dir: keep it small (a catalog is a side store). */
    rocksdb_options_set_keep_log_file_num(cat->opts, 4);
    rocksdb_options_set_max_log_file_size(cat->opts, 4u << 20);
    /* Bloom filters make the collision check's lookups of new (absent) keys cheap. The
     * table factory copies the table options; the filter policy belongs to them. */
    rocksdb_block_based_table_options_t *bbo = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_filter_policy(bbo, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_options_set_block_based_table_factory(cat->opts, bbo);
    rocksdb_block_based_options_destroy(bbo);
    rocksdb_options_set_memtable_whole_key_filtering(cat->opts, 1);
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(cat->opts, 0.05);
    cat->wo = rocksdb_writeoptions_create();
    cat->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(cat->wo_sync, 1);
    cat->ro = rocksdb_readoptions_create();
    cat->db = rocksdb_open(cat->opts, dir, &err);
    if (err) {
        cat->db = NULL;
        st = rocks_fail(cat, err);
        goto fail;
    }
    st = check_format(cat);
    if (st)
        goto fail;
    *out = cat;
    return 0;
fail:
    cat_free(cat);
    return st;
}

int catalog_flush(catalog *cat)
{
    if (!cat)
        return -EINVAL;
    char *err = NULL;
    rocksdb_flush_wal(cat->db, 1, &err);
    return err ? rocks_fail(cat, err) : 0;
}

int catalog_close(catalog *cat)
{
    if (!cat)
        return 0;
    /* A clean close is a durability point: RocksDB closes WAL files without syncing them. */
    int st = catalog_flush(cat);
    cat_free(cat);
    return st;
}

/* ---------------------------------------------------------------- put */

typedef struct put_ent {
    uint32_t ns;
    uint64_t key;
    size_t idx;
} put_ent;

static int put_ent_cmp(const void *a, const void *b)
{
    const put_ent *x = a, *y = b;
    if (x->ns != y->ns)
        return x->ns < y->ns ? -1 : 1;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Under cat->lock: is every record's namespace in the table? Sets *bad to the first
 * record (batch order) of a missing namespace. ord is sorted by (ns, key). */
static int put_check_ns(catalog *cat, const put_ent *ord, size_t n, size_t *bad)
{
    for (size_t g = 0; g < n;) {
        size_t end = g, lo = SIZE_MAX;
        for (; end < n && ord[end].ns == ord[g].ns; end++)
            lo = ord[end].idx < lo ? ord[end].idx : lo;
        unsigned char nk[KEY_NS_LEN];
        char *err = NULL;
        size_t vl = 0;
        ns_key(nk, ord[g].ns);
        char *v = rocksdb_get(cat->db, cat->ro, (const char *)nk, KEY_NS_LEN, &vl, &err);
        if (err)
            return rocks_fail(cat, err);
        if (!v) {
            *bad = lo;
            return -ENOENT;
        }
        rocksdb_free(v);
        g = end;
    }
    return 0;
}

/*
 * Under cat->lock: is any record's key taken by another identity, in the catalog or earlier
 * in the batch? Sets *bad to the first offending index. ord is sorted by (ns, key, idx).
 *
 * One MultiGet fetches the CATALOG_TIERS copy keys of every distinct key in the batch: point
 * lookups of mostly absent keys are answered by the SST files' bloom filters, where an
 * iterator seek per key would read an index and a data block of every file (measured 3x
 * slower per put on the development VM).
 */
static int put_check_keys(catalog *cat, const catalog_record *recs, const put_ent *ord, size_t n,
                          const catalog_del *dels, size_t n_dels, unsigned char *va,
                          unsigned char *vb, size_t *bad)
{
    size_t groups = 0;
    for (size_t i = 0; i < n; i++)
        groups += i == 0 || ord[i].ns != ord[i - 1].ns || ord[i].key != ord[i - 1].key;
    size_t nk = groups * CATALOG_TIERS;
    /* keys: [nk][KEY_BLK_LEN]; kp, vals, errs: [nk] pointers; ksz, vsz: [nk] sizes */
    unsigned char *keys = util_malloc(nk * KEY_BLK_LEN);
    const char **kp = util_malloc(nk * sizeof *kp);
    size_t *ksz = util_malloc(nk * sizeof *ksz);
    size_t *vsz = util_malloc(nk * sizeof *vsz);
    char **vals = util_calloc(nk, sizeof *vals);
    char **errs = util_calloc(nk, sizeof *errs);
    int st = 0;
    if (!keys || !kp || !ksz || !vsz || !vals || !errs) {
        st = -ENOMEM;
        goto out;
    }
    for (size_t i = 0, g = 0; i < n; i++) {
        if (i && ord[i].ns == ord[i - 1].ns && ord[i].key == ord[i - 1].key)
            continue;
        for (unsigned t = 0; t < CATALOG_TIERS; t++, g++) {
            blk_key(keys + g * KEY_BLK_LEN, ord[i].ns, ord[i].key, 1u + t);
            kp[g] = (const char *)(keys + g * KEY_BLK_LEN);
            ksz[g] = KEY_BLK_LEN;
        }
    }
    rocksdb_multi_get(cat->db, cat->ro, nk, kp, ksz, vals, vsz, errs);
    for (size_t j = 0; j < nk; j++) {
        if (errs[j] && st == 0) {
            st = rocks_fail(cat, errs[j]);
            errs[j] = NULL;
        }
    }
    if (st)
        goto out;
    /* a copy the same batch deletes first is no reference (catalog_write_batch) */
    for (size_t d = 0; d < n_dels; d++)
        for (size_t i = 0, g = 0; i < n; i++) {
            if (i && ord[i].ns == ord[i - 1].ns && ord[i].key == ord[i - 1].key)
                continue;
            if (ord[i].ns == dels[d].ns_id && ord[i].key == dels[d].key)
                for (unsigned t = 0; t < CATALOG_TIERS; t++)
                    if ((dels[d].tier == CATALOG_TIER_ALL || dels[d].tier == t) && vals[g + t]) {
                        rocksdb_free(vals[g + t]);
                        vals[g + t] = NULL;
                    }
            g += CATALOG_TIERS;
        }

    size_t first_bad = SIZE_MAX;
    for (size_t g = 0, i = 0; i < n; g++) {
        size_t end = i + 1;
        while (end < n && ord[end].ns == ord[i].ns && ord[end].key == ord[i].key)
            end++;
        /* The reference identity: the catalog's first valid copy of this key (a garbled one
         * counts as absent and is overwritten), else the group's first record in batch
         * order. The catalog never holds two identities under one key, so any copy will do. */
        const unsigned char *ref = NULL;
        size_t ref_len = 0;
        unsigned char k[KEY_BLK_LEN];
        for (unsigned t = 0; t < CATALOG_TIERS && !ref; t++) {
            size_t j = g * CATALOG_TIERS + t;
            const unsigned char *kj = keys + j * KEY_BLK_LEN;
            if (vals[j] && rec_check(kj, (const unsigned char *)vals[j], vsz[j])) {
                ref = (const unsigned char *)vals[j];
                ref_len = vsz[j];
            }
        }
        if (!ref) {
            const catalog_record *r = &recs[ord[i].idx];
            blk_key(k, r->ns_id, r->key, 1u + r->tier);
            rec_encode(r, k, va);
            ref = va;
            ref_len = rec_bytes(r->n_units);
        }
        for (size_t j = i; j < end; j++) {
            const catalog_record *r = &recs[ord[j].idx];
            blk_key(k, r->ns_id, r->key, 1u + r->tier);
            rec_encode(r, k, vb);
            if (!rec_same_identity(ref, ref_len, vb, rec_bytes(r->n_units)) && ord[j].idx < first_bad)
                first_bad = ord[j].idx;
        }
        i = end;
    }
    if (first_bad != SIZE_MAX) {
        *bad = first_bad;
        st = CATALOG_ECOLLISION;
    }
out:
    for (size_t j = 0; vals && j < nk; j++)
        if (vals[j])
            rocksdb_free(vals[j]);
    for (size_t j = 0; errs && j < nk; j++)
        if (errs[j])
            rocksdb_free(errs[j]);
    util_free(keys);
    util_free(kp);
    util_free(ksz);
    util_free(vsz);
    util_free(vals);
    util_free(errs);
    return st;
}

static int dels_valid(const catalog_del *dels, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (dels[i].tier >= CATALOG_TIERS && dels[i].tier != CATALOG_TIER_ALL)
            return 0;
    return 1;
}

/* Append the deletes of dels[0..n) to wb: one key per copy, every sub-key for TIER_ALL.
 * A copy's delete that one of recs[0..n_recs) puts again (a reused key's new copy in the
 * same tier) is left out: the put replaces the value, one memtable entry instead of two. */
static void batch_deletes(rocksdb_writebatch_t *wb, const catalog_del *dels, size_t n,
                          const catalog_record *recs, size_t n_recs)
{
    for (size_t i = 0; i < n; i++) {
        size_t r = dels[i].tier == CATALOG_TIER_ALL ? n_recs : 0;
        while (r < n_recs && (recs[r].ns_id != dels[i].ns_id || recs[r].key != dels[i].key ||
                              recs[r].tier != dels[i].tier))
            r++;
        if (r < n_recs)
            continue;
        unsigned char k[KEY_BLK_LEN];
        unsigned lo = dels[i].tier == CATALOG_TIER_ALL ? SUB_ACCESS : 1u + dels[i].tier;
        unsigned hi = dels[i].tier == CATALOG_TIER_ALL ? CATALOG_TIERS : 1u + dels[i].tier;
        for (unsigned sub = lo; sub <= hi; sub++) {
            blk_key(k, dels[i].ns_id, dels[i].key, sub);
            rocksdb_writebatch_delete(wb, (const char *)k, KEY_BLK_LEN);
        }
    }
}

int catalog_put_batch(catalog *cat, const catalog_record *recs, size_t n, unsigned flags,
                      size_t *bad)
{
    return catalog_write_batch(cat, NULL, 0, recs, n, flags, bad);
}

int catalog_write_batch(catalog *cat, const catalog_del *dels, size_t n_dels,
                        const catalog_record *recs, size_t n, unsigned flags, size_t *bad)
{
    size_t bad_dummy;
    if (!bad)
        bad = &bad_dummy;
    *bad = SIZE_MAX;
    if (!cat || (n && !recs) || (n_dels && !dels) || (flags & ~CATALOG_SYNC) ||
        !dels_valid(dels, n_dels))
        return -EINVAL;
    uint32_t max_units = 0;
    for (size_t i = 0; i < n; i++) {
        if (!rec_valid_args(&recs[i])) {
            *bad = i;
            return -EINVAL;
        }
        max_units = recs[i].n_units > max_units ? recs[i].n_units : max_units;
    }
    if (n == 0 && n_dels == 0)
        return (flags & CATALOG_SYNC) ? catalog_flush(cat) : 0;
    if (n == 0)
        return catalog_delete_batch(cat, dels, n_dels, flags);

    int st = 0;
    char *err = NULL;
    rocksdb_writebatch_t *wb = NULL;
    put_ent *ord = util_malloc(n * sizeof *ord);
    unsigned char *va = util_malloc(rec_bytes(max_units));
    unsigned char *vb = util_malloc(rec_bytes(max_units));
    if (!ord || !va || !vb) {
        st = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        ord[i] = (put_ent){recs[i].ns_id, recs[i].key, i};
    qsort(ord, n, sizeof *ord, put_ent_cmp);

    pthread_mutex_lock(&cat->lock);
    st = put_check_ns(cat, ord, n, bad);
    if (st == 0)
        st = put_check_keys(cat, recs, ord, n, dels, n_dels, va, vb, bad);
    if (st == 0) {
        wb = rocksdb_writebatch_create();
        batch_deletes(wb, dels, n_dels, recs, n); /* first: a put of a deleted copy's key wins */
        for (size_t i = 0; i < n; i++) {
            unsigned char k[KEY_BLK_LEN];
            blk_key(k, recs[i].ns_id, recs[i].key, 1u + recs[i].tier);
            rec_encode(&recs[i], k, va);
            rocksdb_writebatch_put(wb, (const char *)k, KEY_BLK_LEN, (const char *)va,
                                   rec_bytes(recs[i].n_units));
        }
        /* with deletes (the write-through's round) a synced write, as catalog_delete_batch:
         * one WAL append and fsync */
        int in_write = n_dels && (flags & CATALOG_SYNC);
        rocksdb_write(cat->db, in_write ? cat->wo_sync : cat->wo, wb, &err);
        if (err)
            st = rocks_fail(cat, err);
        else if (in_write)
            flags &= ~CATALOG_SYNC;
    }
    pthread_mutex_unlock(&cat->lock);
    /* Records only: the fsync runs outside the lock so that other batches can be checked
     * and written meanwhile; FlushWAL(sync) covers everything written before it. */
    if (st == 0 && (flags & CATALOG_SYNC))
        st = catalog_flush(cat);
fail:
    if (wb)
        rocksdb_writebatch_destroy(wb);
    util_free(ord);
    util_free(va);
    util_free(vb);
    return st;
}

/* ---------------------------------------------------------------- delete, touch */

int catalog_delete_batch(catalog *cat, const catalog_del *dels, size_t n, unsigned flags)
{
    if (!cat || (n && !dels) || (flags & ~CATALOG_SYNC) || !dels_valid(dels, n))
        return -EINVAL;
    char *err = NULL;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    batch_deletes(wb, dels, n, NULL, 0);
    /* Deletes take no catalog lock, so a sync write lets RocksDB group-commit them. */
    rocksdb_write(cat->db, (flags & CATALOG_SYNC) ? cat->wo_sync : cat->wo, wb, &err);
    rocksdb_writebatch_destroy(wb);
    return err ? rocks_fail(cat, err) : 0;
}

int catalog_touch_batch(catalog *cat, const catalog_touch *touches, size_t n)
{
    if (!cat || (n && !touches))
        return -EINVAL;
    char *err = NULL;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (size_t i = 0; i < n; i++) {
        unsigned char k[KEY_BLK_LEN], v[ACC_LEN];
        blk_key(k, touches[i].ns_id, touches[i].key, SUB_ACCESS);
        acc_encode(touches[i].last_access, k, v);
        rocksdb_writebatch_put(wb, (const char *)k, KEY_BLK_LEN, (const char *)v, ACC_LEN);
    }
    rocksdb_write(cat->db, cat->wo, wb, &err);
    rocksdb_writebatch_destroy(wb);
    return err ? rocks_fail(cat, err) : 0;
}

/* ---------------------------------------------------------------- scan */

typedef struct scan_state {
    catalog_scan_stats st;
    rocksdb_writebatch_t *purge; /* NULL without CATALOG_SCAN_PURGE */
    int have_cur;                /* cur_* describe the block being walked */
    uint64_t cur_key;
    int cur_access_valid, cur_records;
    uint64_t cur_access;
    unsigned char cur_access_key[KEY_BLK_LEN]; /* to purge an orphan */
} scan_state;

static void scan_drop(scan_state *s, const unsigned char *k, size_t kl, int orphan)
{
    if (orphan)
        s->st.orphans++;
    else
        s->st.garbled++;
    if (s->purge) {
        rocksdb_writebatch_delete(s->purge, (const char *)k, kl);
        s->st.purged++;
    }
}

/* The walk left the block cur_key: an access entry without a record is an orphan. */
static void scan_end_block(scan_state *s)
{
    if (s->have_cur && s->cur_access_valid && s->cur_records == 0)
        scan_drop(s, s->cur_access_key, KEY_BLK_LEN, 1);
    s->have_cur = 0;
}

int catalog_scan(catalog *cat, uint32_t ns_id, unsigned flags, catalog_scan_fn fn, void *ctx,
                 catalog_scan_stats *stats)
{
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (!cat || !fn || (flags & ~CATALOG_SCAN_PURGE))
        return -EINVAL;
    int st = 0;
    char *err = NULL;
    uint32_t *ubuf = NULL, ucap = 0;
    scan_state s;
    memset(&s, 0, sizeof s);
    unsigned char lo[5], hi[5];
    lo[0] = 'B';
    put_be32(lo + 1, ns_id);
    size_t hl = blk_upper(hi, ns_id);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, hl);
    rocksdb_iterator_t *it = rocksdb_create_iterator(cat->db, ro);
    if (flags & CATALOG_SCAN_PURGE)
        s.purge = rocksdb_writebatch_create();

    for (rocksdb_iter_seek(it, (const char *)lo, sizeof lo); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const unsigned char *k = (const unsigned char *)rocksdb_iter_key(it, &kl);
        const unsigned char *v = (const unsigned char *)rocksdb_iter_value(it, &vl);
        if (kl != KEY_BLK_LEN || k[13] > CATALOG_TIERS) {
            scan_drop(&s, k, kl, 0);
            continue;
        }
        uint64_t key = get_be64(k + 5);
        if (!s.have_cur || s.cur_key != key) {
            scan_end_block(&s);
            s.have_cur = 1;
            s.cur_key = key;
            s.cur_access_valid = 0;
            s.cur_records = 0;
        }
        if (k[13] == SUB_ACCESS) {
            if (!acc_check(k, v, vl)) {
                scan_drop(&s, k, kl, 0);
                continue;
            }
            s.cur_access_valid = 1;
            s.cur_access = get_le64(v + 1);
            memcpy(s.cur_access_key, k, KEY_BLK_LEN);
            continue;
        }
        if (!rec_check(k, v, vl)) {
            scan_drop(&s, k, kl, 0);
            continue;
        }
        catalog_record r;
        st = rec_decode(k, v, vl, &r, &ubuf, &ucap);
        if (st)
            goto out;
        if (s.cur_access_valid && s.cur_access > r.last_access)
            r.last_access = s.cur_access;
        s.cur_records++;
        s.st.records++;
        st = fn(ctx, &r);
        if (st)
            goto out;
    }
    scan_end_block(&s);
    rocksdb_iter_get_error(it, &err);
    if (err) {
        st = rocks_fail(cat, err);
        goto out;
    }
    if (s.purge && s.st.purged) {
        rocksdb_write(cat->db, cat->wo, s.purge, &err);
        if (err)
            st = rocks_fail(cat, err);
    }
out:
    if (st && s.purge)
        s.st.purged = 0; /* stopped early: nothing deleted */
    if (s.purge)
        rocksdb_writebatch_destroy(s.purge);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    util_free(ubuf);
    if (stats)
        *stats = s.st;
    return st;
}

/* ---------------------------------------------------------------- namespaces */

static int ns_equal(const catalog_ns *a, const catalog_ns *b)
{
    return a->id == b->id && a->flags == b->flags && a->layout.layers == b->layout.layers &&
           a->layout.kv_heads == b->layout.kv_heads && a->layout.head_dim == b->layout.head_dim &&
           a->layout.dtype == b->layout.dtype && a->layout.block_tokens == b->layout.block_tokens &&
           strcmp(a->name, b->name) == 0 && strcmp(a->tenant, b->tenant) == 0;
}

/* Iterate the namespace table: fn(ctx, ns) per valid entry; garbled entries counted. */
typedef int (*ns_walk_fn)(void *ctx, const catalog_ns *ns);
static int ns_walk(catalog *cat, ns_walk_fn fn, void *ctx, uint64_t *garbled)
{
    int st = 0;
    char *err = NULL;
    catalog_ns *ns = util_malloc(sizeof *ns); /* 520 bytes: kept off small thread stacks */
    if (!ns)
        return -ENOMEM;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, "O", 1);
    rocksdb_iterator_t *it = rocksdb_create_iterator(cat->db, ro);
    for (rocksdb_iter_seek(it, "N", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const unsigned char *k = (const unsigned char *)rocksdb_iter_key(it, &kl);
        const unsigned char *v = (const unsigned char *)rocksdb_iter_value(it, &vl);
        if (!ns_decode(k, kl, v, vl, ns)) {
            if (garbled)
                (*garbled)++;
            continue;
        }
        st = fn(ctx, ns);
        if (st)
            goto out;
    }
    rocksdb_iter_get_error(it, &err);
    if (err)
        st = rocks_fail(cat, err);
out:
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    util_free(ns);
    return st;
}

int catalog_ns_scan(catalog *cat, catalog_ns_fn fn, void *ctx, uint64_t *garbled)
{
    if (garbled)
        *garbled = 0;
    if (!cat || !fn)
        return -EINVAL;
    return ns_walk(cat, fn, ctx, garbled);
}

typedef struct ns_put_ctx {
    const catalog_ns *want;
    int same; /* an identical entry exists */
} ns_put_ctx;

static int ns_put_visit(void *ctx, const catalog_ns *ns)
{
    ns_put_ctx *c = ctx;
    if (ns->id == c->want->id) {
        if (!ns_equal(ns, c->want))
            return -EEXIST;
        c->same = 1;
    } else if (strcmp(ns->name, c->want->name) == 0 && strcmp(ns->tenant, c->want->tenant) == 0) {
        return -EEXIST;
    }
    return 0;
}

int catalog_ns_put(catalog *cat, const catalog_ns *ns)
{
    if (!cat || !ns)
        return -EINVAL;
    size_t nl, tl;
    if (name_len(ns->name, &nl) || name_len(ns->tenant, &tl))
        return KVT_ENAME;
    unsigned char k[KEY_NS_LEN];
    unsigned char *v = util_malloc(NS_HDR + 2 * KVT_NAME_MAX + 8);
    if (!v)
        return -ENOMEM;
    ns_key(k, ns->id);
    size_t vl = ns_encode(ns, nl, tl, k, v);
    /* Compare decoded entries, so that bytes after the NULs of name/tenant do not matter. */
    catalog_ns *canon = util_malloc(sizeof *canon);
    ns_put_ctx c = {canon, 0};
    int st = -ENOMEM;
    if (!canon)
        goto fail;
    ns_decode(k, KEY_NS_LEN, v, vl, canon);
    pthread_mutex_lock(&cat->lock);
    st = ns_walk(cat, ns_put_visit, &c, NULL);
    if (st == 0 && !c.same) {
        char *err = NULL;
        rocksdb_put(cat->db, cat->wo_sync, (const char *)k, KEY_NS_LEN, (const char *)v, vl, &err);
        if (err)
            st = rocks_fail(cat, err);
    }
    pthread_mutex_unlock(&cat->lock);
fail:
    util_free(canon);
    util_free(v);
    return st;
}

int catalog_ns_delete(catalog *cat, uint32_t ns_id)
{
    if (!cat)
        return -EINVAL;
    unsigned char k[KEY_NS_LEN], lo[5], hi[5];
    char *err = NULL;
    ns_key(k, ns_id);
    lo[0] = 'B';
    put_be32(lo + 1, ns_id);
    size_t hl = blk_upper(hi, ns_id);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete(wb, (const char *)k, KEY_NS_LEN);
    rocksdb_writebatch_delete_range(wb, (const char *)lo, sizeof lo, (const char *)hi, hl);
    /* Under the lock: a put batch checks the namespace exists, then writes; a delete must
     * not fall between the two and leave records of a namespace that is gone. */
    pthread_mutex_lock(&cat->lock);
    rocksdb_write(cat->db, cat->wo_sync, wb, &err);
    pthread_mutex_unlock(&cat->lock);
    rocksdb_writebatch_destroy(wb);
    return err ? rocks_fail(cat, err) : 0;
}
