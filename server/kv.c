/*
 * kv.c — Redis values (GET/SET family) stored as blocks in a tenant's "kv" key namespace.
 *
 * Layout (B = kv_block_bytes, 4 KiB by default; every block is exactly B bytes):
 *
 *   meta block, key M = XXH3-64(redis key):
 *     [kv_meta: magic "KVTV" fmt flags key_len 0 value_len expire_ms version created_ms]
 *     [redis key bytes][value bytes if INLINE][zero padding to B]
 *   data chain (values that do not fit inline), a separate root of the namespace:
 *     keys D_i = XXH3-64({M, version, i}) for i < ceil(value_len / B)
 *     block i = value bytes [i*B, min((i+1)*B, value_len)) + zero padding
 *
 * Why two roots: EXPIRE rewrites only the meta block (remove + put of one block) and the
 * data chain of a large value is written straight from the client's input buffer, block
 * pointers into it, with no copy but the engine's. The version (random per SET) ties a meta
 * block to its chain: a reader that sees meta version v only ever reads chain v, so a
 * concurrent overwrite can make it miss (and retry) but never mix two values.
 *
 * A hit requires the magic, the stored key equal to the requested key byte for byte (a
 * 64-bit hash collision is a miss, never another key's value: invariant 1), not expired,
 * and every data block present (eviction of a tail block makes the value a miss, never
 * partial data). Expired and broken values are deleted lazily when a command finds them.
 *
 * Writers of one key (SET, DEL, EXPIRE, lazy deletes) serialise on a stripe mutex held
 * only around the meta block's read-remove-put (microseconds): the data chain is stored
 * before taking it. A replaced data chain that a reader still has pinned (a GET streaming
 * it) cannot be removed yet (-EBUSY): it goes on the deferred-removal list that the cron
 * retries every 100 ms.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "srv.h"

#define KV_MAGIC 0x5654564bu /* "KVTV" */
#define KV_FMT 1
#define KV_INLINE 0x1

typedef struct kv_meta {
    uint32_t magic;
    uint16_t fmt;
    uint16_t flags;
    uint32_t key_len;
    uint32_t reserved;
    uint64_t value_len;
    uint64_t expire_ms; /* absolute, Unix ms; 0 = none */
    uint64_t version;
    uint64_t created_ms;
} kv_meta;
_Static_assert(sizeof(kv_meta) == 48, "kv_meta is 48 bytes (config.c KV_META_BYTES)");

enum { KV_MISSING = 0, KV_FOUND = 1, KV_OTHER = 2 }; /* OTHER: a meta slot not ours */

static uint64_t meta_key(const srv_arg *k) { return XXH3_64bits(k->p, k->n); }

static void chain_keys(uint64_t m, uint64_t version, size_t n, uint64_t *out)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v[3] = {m, version, (uint64_t)i};
        out[i] = XXH3_64bits(v, sizeof(v));
    }
}

static uint64_t new_version(void)
{
    /* unique across restarts too (values persist): a counter under a per-process base taken
     * from both clocks at the first call (no clock read per SET) */
    static _Atomic uint64_t ctr, base;
    uint64_t b = atomic_load_explicit(&base, memory_order_relaxed);
    if (!b) {
        uint64_t seed[2] = {now_ns_mono(), now_ms_real()};
        uint64_t want = XXH3_64bits(seed, sizeof(seed)) | 1, zero = 0;
        b = atomic_compare_exchange_strong(&base, &zero, want) ? want : zero;
    }
    uint64_t v[2] = {atomic_fetch_add_explicit(&ctr, 1, memory_order_relaxed), b};
    return XXH3_64bits(v, sizeof(v)) | 1;
}

static size_t nblocks(uint64_t len, uint64_t B) { return (size_t)((len + B - 1) / B); }

static pthread_mutex_t *stripe(srv *s, uint64_t m) { return &s->stripe[m & 255]; }

/* The shard of the tenant's "kv" namespaces that holds key M's meta block and data chain:
 * the high byte of M (the stripes use the low byte). Sharding keeps the engine's root nodes
 * narrow: a million keys in one namespace would make every root insert and remove move a
 * sorted array of a million children (measured: SET fell from 420k/s at 1,000 keys to
 * 36k/s at 200,000 keys in one namespace). */
#define KVNS(t, m) ((t)->kv[(m) >> (64 - SRV_KV_SHARD_BITS)])

/* A kv_block_bytes scratch block (a meta block being read or built): on the stack for the
 * default 4 KiB blocks, so a GET/SET/DEL allocates nothing; on the heap when larger. */
#define SCRATCH_STACK 4096
#define SCRATCH(var, B)                                                                 \
    char var##_stk[SCRATCH_STACK] __attribute__((aligned(64)));                          \
    char *var = (B) <= SCRATCH_STACK ? var##_stk : malloc(B)
#define SCRATCH_FREE(var)                                                               \
    do {                                                                                \
        if ((var) != var##_stk)                                                         \
            free(var);                                                                  \
    } while (0)

/* Bytes of a meta block a lookup reads first when it wants an inline value: the header, the
 * key and this many value bytes (one range read for a small value; a longer inline value
 * takes a second read of the rest under the same lease). */
#define META_VALUE_GUESS 256

/*
 * Read the meta block of key k into buf (B bytes): only its header and key, and with
 * want_value an inline value too (kvt_read_range: a 100-byte value costs ~200 bytes of
 * copying, not the whole block); the rest of buf is left as it was.
 * KV_FOUND: buf holds our meta (magic ok, same key); KV_OTHER: the slot M holds something
 * else (another key with the same 64-bit hash, or not a meta block); KV_MISSING; <0 error.
 */
static int read_meta_t(srv *s, srv_tenant *t, const srv_arg *k, uint64_t m, char *buf,
                       kv_meta *meta, int *tier, int want_value)
{
    uint64_t B = s->cfg.kv_block_bytes, head = sizeof(kv_meta) + k->n;
    if (want_value)
        head += META_VALUE_GUESS;
    if (head > B)
        head = B;
    /* kvt_read_key: one engine call, bytes of one version of the block (a DRAM block is
     * copied under the engine lock, no lease) */
    kvt_tier tr = KVT_TIER_DRAM;
    int rc = kvt_read_key(KVNS(t, m), m, 0, buf, head, &tr);
    if (rc == 0 && want_value) { /* an inline value longer than the guess: read it whole */
        kv_meta hm;
        memcpy(&hm, buf, sizeof(hm));
        uint64_t end = sizeof(kv_meta) + (uint64_t)k->n + hm.value_len;
        if (hm.magic == KV_MAGIC && (hm.flags & KV_INLINE) && hm.key_len == k->n &&
            hm.value_len <= B && end <= B && end > head)
            rc = kvt_read_key(KVNS(t, m), m, 0, buf, end, &tr); /* the header again: the
                                                                  * same version as the value */
    }
    if (rc == -ENOENT)
        return KV_MISSING;
    if (rc == KVT_ECORRUPT) {
        /* the engine dropped the block: the value is gone (never served) */
        atomic_fetch_add_explicit(&t->kv_corrupt, 1, memory_order_relaxed);
        atomic_fetch_sub(&t->keys, 1);
        srv_log(s, 0, "tenant %s: a value's meta block failed verification; dropped (a miss)",
                t->name);
        return KV_MISSING;
    }
    if (rc)
        return rc;
    if (tier)
        *tier = (int)tr;
    memcpy(meta, buf, sizeof(*meta));
    if (meta->magic != KV_MAGIC || meta->fmt != KV_FMT || meta->key_len != k->n ||
        sizeof(kv_meta) + meta->key_len > s->cfg.kv_block_bytes ||
        memcmp(buf + sizeof(kv_meta), k->p, k->n) != 0)
        return KV_OTHER;
    if ((meta->flags & KV_INLINE) &&
        (meta->value_len > B || sizeof(kv_meta) + meta->key_len + meta->value_len > B))
        return KV_OTHER; /* not a meta block we wrote */
    return KV_FOUND;
}

size_t kv_lookahead(srv *s, srv_tenant *t, int first, int last, int step, const srv_arg *argv,
                    int argc, kvt_ns **ns, uint64_t *keys, size_t room)
{
    size_t n = 0;
    if (last < 0)
        last += argc;
    for (int i = first; i > 0 && i <= last && i < argc && n < room; i += step) {
        if (argv[i].n > s->cfg.max_key_bytes)
            continue;
        uint64_t m = meta_key(&argv[i]);
        if (!(ns[n] = KVNS(t, m)))
            continue;
        keys[n++] = m;
    }
    return n;
}

/* The meta of key k without its inline value (writers: SET, DEL). */
static int read_meta(srv *s, srv_tenant *t, const srv_arg *k, uint64_t m, char *buf, kv_meta *meta)
{
    return read_meta_t(s, t, k, m, buf, meta, NULL, 0);
}

static int expired(const kv_meta *m, uint64_t now) { return m->expire_ms && m->expire_ms <= now; }

/* Run op until it stops failing with -EBUSY (a reader pins the key's block, or the
 * write-through, persistent tiers, is writing and syncing a block just stored): spin
 * briefly, then sleep with backoff, for at most ~3 s. */
static int retry_busy(int (*op)(void *ctx), void *ctx)
{
    int rc = -EBUSY;
    for (int i = 0; i < 200 && rc == -EBUSY; i++) {
        rc = op(ctx);
        if (rc == -EBUSY)
            sched_yield();
    }
    long us = 20, waited = 0;
    while (rc == -EBUSY && waited < 3000000) {
        struct timespec ts = {0, us * 1000};
        nanosleep(&ts, NULL);
        waited += us;
        if (us < 1000)
            us *= 2;
        rc = op(ctx);
    }
    return rc;
}

typedef struct key_op {
    kvt_ns *ns;
    const uint64_t *keys;
    size_t n;
    const void *block; /* replace: the new block's first len bytes */
    size_t len;
} key_op;

static int op_remove(void *ctx)
{
    key_op *o = ctx;
    return kvt_remove_keys(o->ns, o->keys, o->n, NULL);
}

static int op_replace(void *ctx)
{
    key_op *o = ctx;
    return kvt_replace_key(o->ns, o->keys[0], o->block, o->len);
}

/* Remove a one-block or chain prefix (gone already: 0), retrying while it is busy. */
static int remove_retry(kvt_ns *ns, const uint64_t *keys, size_t n)
{
    key_op o = {.ns = ns, .keys = keys, .n = n};
    int rc = retry_busy(op_remove, &o);
    return rc == -ENOENT ? 0 : rc;
}

/* Remove the data chain rooted at d0; defer it when a reader still has it pinned. */
static void remove_chain(srv *s, srv_tenant *t, uint64_t m, uint64_t d0)
{
    int rc = kvt_remove_keys(KVNS(t, m), &d0, 1, NULL);
    if (rc != -EBUSY)
        return;
    defer_rm *d = malloc(sizeof(*d));
    if (!d)
        return; /* left to LRU eviction: nothing reads it any more */
    d->ns = KVNS(t, m);
    d->key = d0;
    d->tries = 0;
    pthread_mutex_lock(&s->defer_mu);
    d->next = s->defer;
    s->defer = d;
    s->n_defer++;
    pthread_mutex_unlock(&s->defer_mu);
    atomic_fetch_add(&s->deferred_removals, 1);
}

void kv_defer_retry(srv *s)
{
    pthread_mutex_lock(&s->defer_mu);
    defer_rm *list = s->defer;
    s->defer = NULL;
    s->n_defer = 0;
    pthread_mutex_unlock(&s->defer_mu);
    defer_rm *keep = NULL;
    size_t nkeep = 0;
    while (list) {
        defer_rm *d = list;
        list = d->next;
        int rc = kvt_remove_keys(d->ns, &d->key, 1, NULL);
        if (rc == -EBUSY && ++d->tries < 100000) {
            d->next = keep;
            keep = d;
            nkeep++;
        } else {
            free(d);
        }
    }
    if (keep) {
        pthread_mutex_lock(&s->defer_mu);
        defer_rm *tail = keep;
        while (tail->next)
            tail = tail->next;
        tail->next = s->defer;
        s->defer = keep;
        s->n_defer += nkeep;
        pthread_mutex_unlock(&s->defer_mu);
    }
}

static uint64_t data_root(const kv_meta *meta, uint64_t m)
{
    uint64_t d0;
    chain_keys(m, meta->version, 1, &d0);
    return d0;
}

/*
 * Delete key k if it exists (and, when want_version != 0, only if its meta still has that
 * version: lazy deletes must not remove a value written since they looked).
 * Returns 1 if a live (unexpired) value was deleted, 0 otherwise, <0 on error.
 */
static int kv_delete(srv *s, srv_tenant *t, const srv_arg *k, uint64_t want_version, int trylock)
{
    uint64_t m = meta_key(k);
    pthread_mutex_t *mu = stripe(s, m);
    if (trylock) {
        if (pthread_mutex_trylock(mu))
            return 0; /* a writer is on this key right now: it will decide */
    } else {
        pthread_mutex_lock(mu);
    }
    SCRATCH(buf, s->cfg.kv_block_bytes);
    int ret = -ENOMEM;
    if (!buf)
        goto out;
    kv_meta meta;
    int r = read_meta(s, t, k, m, buf, &meta);
    if (r != KV_FOUND) {
        ret = r < 0 ? r : 0;
        goto out;
    }
    if (want_version && meta.version != want_version) {
        ret = 0;
        goto out;
    }
    ret = remove_retry(KVNS(t, m), &m, 1);
    if (ret)
        goto out;
    if (!(meta.flags & KV_INLINE))
        remove_chain(s, t, m, data_root(&meta, m));
    atomic_fetch_sub(&t->keys, 1);
    ret = expired(&meta, now_ms_real()) ? 0 : 1;
out:
    pthread_mutex_unlock(mu);
    SCRATCH_FREE(buf);
    return ret;
}

/* Store the meta block of key k in place of whatever key M's block holds now (the caller
 * holds the stripe): header, key and inline value, the rest of the block zeros, in one
 * engine call (kvt_replace_key). */
static int put_meta(srv_tenant *t, uint64_t m, const srv_arg *k, const kv_meta *meta,
                    const void *inline_val, char *buf)
{
    size_t used = sizeof(*meta) + k->n;
    memcpy(buf, meta, sizeof(*meta));
    memcpy(buf + sizeof(*meta), k->p, k->n);
    if (meta->flags & KV_INLINE) {
        memcpy(buf + used, inline_val, meta->value_len);
        used += meta->value_len;
    }
    key_op o = {.ns = KVNS(t, m), .keys = &m, .n = 1, .block = buf, .len = used};
    return retry_busy(op_replace, &o);
}

enum { SET_NX = 1, SET_XX = 2, SET_KEEPTTL = 4 };

int kv_ingest_begin(srv *s, srv_tenant *t, const srv_arg *k, uint64_t len, kv_ingest *ig)
{
    uint64_t B = s->cfg.kv_block_bytes, m = meta_key(k);
    memset(ig, 0, sizeof *ig);
    if (sizeof(kv_meta) + k->n + len <= B || k->n > s->cfg.max_key_bytes)
        return -EINVAL; /* an inline value: no chain */
    ig->n = nblocks(len, B);
    ig->block = B;
    ig->len = len;
    ig->version = new_version();
    uint64_t *keys = malloc(ig->n * sizeof *keys);
    ig->ptrs = malloc(ig->n * sizeof *ig->ptrs);
    int rc = -ENOMEM;
    if (keys && ig->ptrs) {
        chain_keys(m, ig->version, ig->n, keys);
        rc = kvt_put_keys_begin(KVNS(t, m), keys, ig->n, ig->ptrs, &ig->txn);
    }
    free(keys);
    if (rc)
        kv_ingest_end(ig);
    return rc;
}

void kv_ingest_end(kv_ingest *ig)
{
    kvt_put_abort(ig->txn);
    free(ig->ptrs);
    memset(ig, 0, sizeof *ig);
}

/* Outcome of kv_store: 1 stored, 0 not stored (NX/XX), <0 status. With ig (a SET whose value
 * arrived in place, v->p NULL) the chain is its reservation, committed here. */
static int kv_store(srv *s, srv_tenant *t, const srv_arg *k, const srv_arg *v, uint64_t expire_ms,
                    unsigned flags, kv_ingest *ig)
{
    uint64_t B = s->cfg.kv_block_bytes;
    uint64_t m = meta_key(k), now_ms = now_ms_real();
    int is_inline = !ig && sizeof(kv_meta) + k->n + v->n <= B;
    kv_meta meta = {.magic = KV_MAGIC, .fmt = KV_FMT, .flags = is_inline ? KV_INLINE : 0,
                    .key_len = (uint32_t)k->n, .value_len = v->n, .expire_ms = expire_ms,
                    .version = ig ? ig->version : new_version(), .created_ms = now_ms};
    size_t n = is_inline ? 0 : nblocks(v->n, B);
    uint64_t *keys = NULL;
    const void **blocks = NULL;
    char *tail = NULL;
    SCRATCH(buf, B);
    int rc = -ENOMEM;
    if (!buf)
        goto out;
    if (n && ig) { /* received in place: publish the reserved chain */
        keys = malloc(sizeof(*keys));
        if (!keys)
            goto out;
        chain_keys(m, meta.version, 1, keys);
        rc = kvt_put_commit(ig->txn);
        ig->txn = NULL;
        if (rc)
            goto out;
    } else if (n) {
        /* Data chain first, straight from the caller's buffer; only the last, partial
         * block is copied (the engine reads whole blocks). Invisible until the meta block
         * that names its version is published below. */
        keys = malloc(n * sizeof(*keys));
        blocks = malloc(n * sizeof(*blocks));
        if (!keys || !blocks)
            goto out;
        chain_keys(m, meta.version, n, keys);
        for (size_t i = 0; i < n; i++)
            blocks[i] = v->p + i * B;
        if (v->n % B) {
            tail = calloc(1, B);
            if (!tail)
                goto out;
            memcpy(tail, v->p + (n - 1) * B, v->n % B);
            blocks[n - 1] = tail;
        }
        size_t stored = 0;
        rc = kvt_put_keys(KVNS(t, m), keys, n, blocks, &stored);
        if (rc || stored != n) {
            if (stored)
                kvt_remove_keys(KVNS(t, m), keys, 1, NULL);
            if (!rc)
                rc = -EEXIST;
            goto out;
        }
    }
    pthread_mutex_t *mu = stripe(s, m);
    pthread_mutex_lock(mu);
    kv_meta old;
    int r = read_meta(s, t, k, m, buf, &old);
    int live = r == KV_FOUND && !expired(&old, now_ms); /* the stripe wait is microseconds */
    if (r < 0 || ((flags & SET_NX) && live) || ((flags & SET_XX) && !live)) {
        pthread_mutex_unlock(mu);
        if (n)
            kvt_remove_keys(KVNS(t, m), keys, 1, NULL);
        rc = r < 0 ? r : 0;
        goto out;
    }
    if (live && (flags & SET_KEEPTTL))
        meta.expire_ms = old.expire_ms;
    rc = put_meta(t, m, k, &meta, v->p, buf); /* replaces the old meta block */
    if (rc == -EBUSY) { /* still pinned after the retries: nothing changed */
        pthread_mutex_unlock(mu);
        if (n)
            kvt_remove_keys(KVNS(t, m), keys, 1, NULL);
        goto out;
    }
    pthread_mutex_unlock(mu);
    if (r == KV_FOUND && !(old.flags & KV_INLINE))
        remove_chain(s, t, m, data_root(&old, m));
    if (rc) {
        if (n)
            kvt_remove_keys(KVNS(t, m), keys, 1, NULL);
        if (r == KV_FOUND)
            atomic_fetch_sub(&t->keys, 1); /* the old value is gone too */
        goto out;
    }
    if (r != KV_FOUND)
        atomic_fetch_add(&t->keys, 1);
    rc = 1;
out:
    free(keys);
    free(blocks);
    free(tail);
    SCRATCH_FREE(buf);
    return rc;
}

static void reply_store_error(cmdctx *x, int rc)
{
    if (rc == -ENOSPC)
        rp_err(x->out, "OOM not enough space for the value in tenant '%s''s DRAM quota or the "
               "tier (its own least recently used values were evicted first)", x->t->name);
    else if (rc == -EBUSY)
        rp_err(x->out, "TRYAGAIN the key is being read; retry");
    else
        rp_err(x->out, "storing the value failed: %s", kvt_strerror(rc));
}

/* ---------------------------------------------------------------- reads */

/*
 * Look key k up. On a hit: emits the bulk reply when emit (streamed from the engine for
 * chained values), returns 1 and fills *meta_out. Miss: 0 (emits nil when emit). Error: <0.
 * check_only: measure the chain without a lease (EXISTS).
 * A chain with blocks on nvme/disk is read before the reply (a block failing verification
 * makes the value a miss, never partial or bad data); with can_offload the command is
 * first moved to a worker (KV_OFFLOADED: nothing emitted).
 */
#define KV_OFFLOADED 2
static int kv_lookup(cmdctx *x, const srv_arg *k, int emit, kv_meta *meta_out, int can_offload)
{
    srv *s = x->s;
    srv_tenant *t = x->t;
    uint64_t B = s->cfg.kv_block_bytes;
    uint64_t m = meta_key(k);
    SCRATCH(buf, B);
    int ret = -ENOMEM, hit_tier = -1;
    if (!buf)
        goto out;
    for (int attempt = 0; attempt < 4; attempt++) {
        kv_meta meta;
        int mtier = KVT_TIER_DRAM;
        int r = read_meta_t(s, t, k, m, buf, &meta, &mtier, emit);
        if (r < 0) {
            ret = r;
            goto out;
        }
        if (r != KV_FOUND) {
            ret = 0;
            goto out;
        }
        if (expired(&meta, now_ms_real())) {
            kv_delete(s, t, k, meta.version, 1);
            ret = 0;
            goto out;
        }
        if (meta_out)
            *meta_out = meta;
        if (emit && meta.value_len > s->cfg.output_buffer_limit) {
            ret = -EFBIG; /* refused before anything is emitted */
            goto out;
        }
        hit_tier = mtier;
        if (meta.flags & KV_INLINE) {
            if (emit)
                rp_bulk(x->out, buf + sizeof(kv_meta) + k->n, meta.value_len);
            ret = 1;
            goto out;
        }
        size_t n = nblocks(meta.value_len, B);
        uint64_t *keys = malloc(n * sizeof(*keys));
        if (!keys) {
            ret = -ENOMEM;
            goto out;
        }
        chain_keys(m, meta.version, n, keys);
        size_t matched = 0;
        kvt_lease *l = NULL;
        int rc = kvt_match_keys(KVNS(t, m), keys, n, &matched, emit ? &l : NULL);
        free(keys);
        if (rc) {
            ret = rc;
            goto out;
        }
        if (matched == n) {
            if (!emit) {
                kvt_release(l);
                ret = 1;
                goto out;
            }
            int worst = KVT_TIER_DRAM; /* a hit counts in the slowest tier it read */
            for (size_t i = 0; i < n; i++) {
                const void *p;
                kvt_tier tr = KVT_TIER_DRAM;
                if (kvt_lease_block_ptr(l, i, &p) == 0)
                    continue; /* in DRAM (no engine lock to ask) */
                if (kvt_lease_block_tier(l, i, &tr) == 0 && (int)tr > worst && (int)tr < 4)
                    worst = (int)tr;
            }
            if (worst > hit_tier)
                hit_tier = worst;
            int all_dram = worst == KVT_TIER_DRAM;
            if (all_dram) {
                rp_bulk_stream(x->out, l, 0, n, B, meta.value_len);
                ret = 1;
                goto out;
            }
            if (can_offload && cmd_offload(x)) { /* nvme/disk reads: not on the loop */
                kvt_release(l);
                SCRATCH_FREE(buf);
                return KV_OFFLOADED;
            }
            char *val = malloc(n * B);
            rc = val ? kvt_read_contig(l, 0, n, val, n * B) : -ENOMEM;
            kvt_release(l);
            if (rc == 0) {
                rp_bulk(x->out, val, meta.value_len);
                free(val);
                ret = 1;
                goto out;
            }
            free(val);
            if (rc != KVT_ECORRUPT && rc != -EIO) {
                ret = rc;
                goto out;
            }
            /* a chain block failed verification (the engine dropped it): a miss */
            atomic_fetch_add_explicit(&t->kv_corrupt, 1, memory_order_relaxed);
            srv_log(s, 0, "tenant %s: a value's data block failed to read (%s); the value is "
                    "dropped (a miss, never partial data)", t->name, kvt_strerror(rc));
            kv_delete(s, t, k, meta.version, 1);
            ret = 0;
            goto out;
        }
        kvt_release(l);
        /* Part of the chain is gone: replaced since we read the meta (retry), or evicted
         * (the value is broken: delete it if nobody rewrote it meanwhile). */
        kv_meta again;
        r = read_meta(s, t, k, m, buf, &again);
        if (r == KV_FOUND && again.version == meta.version) {
            if (kv_delete(s, t, k, meta.version, 1) < 0)
                break;
            ret = 0;
            goto out;
        }
    }
    ret = 0;
out:
    SCRATCH_FREE(buf);
    if (ret == 0 && emit)
        rp_nil(x->out, x->resp);
    if (ret == 1 && emit && hit_tier >= 0 && hit_tier < 4)
        atomic_fetch_add_explicit(&t->kv_hits_tier[hit_tier], 1, memory_order_relaxed);
    return ret;
}

static int key_ok(cmdctx *x, const srv_arg *k)
{
    if (k->n > x->s->cfg.max_key_bytes) {
        rp_err(x->out, "key of %zu bytes is longer than the limit of %" PRIu64
               " bytes (kv_block_bytes minus the 48-byte header)", k->n, x->s->cfg.max_key_bytes);
        return 0;
    }
    return 1;
}

static void count_get(cmdctx *x, int r, const kv_meta *meta)
{
    if (r == 1) {
        atomic_fetch_add_explicit(&x->t->kv_hits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&x->t->kv_bytes_out, meta->value_len, memory_order_relaxed);
    } else if (r == 0) {
        atomic_fetch_add_explicit(&x->t->kv_misses, 1, memory_order_relaxed);
    }
}

void cmd_get(cmdctx *x)
{
    const srv_arg *k = &x->argv[1];
    if (k->n > x->s->cfg.max_key_bytes) { /* cannot exist */
        atomic_fetch_add_explicit(&x->t->kv_misses, 1, memory_order_relaxed);
        rp_nil(x->out, x->resp);
        return;
    }
    kv_meta meta;
    int r = kv_lookup(x, k, 1, &meta, 1);
    if (r == KV_OFFLOADED)
        return; /* runs again on a worker */
    if (r == -EFBIG)
        rp_err(x->out, "reply of %" PRIu64 " bytes exceeds the output buffer limit (%" PRIu64
               " bytes, output_buffer_limit)", meta.value_len, x->s->cfg.output_buffer_limit);
    else if (r < 0)
        rp_err(x->out, "reading the value failed: %s", kvt_strerror(r));
    count_get(x, r, &meta);
}

void cmd_mget(cmdctx *x)
{
    rp_arr(x->out, x->argc - 1);
    for (int i = 1; i < x->argc; i++) {
        const srv_arg *k = &x->argv[i];
        kv_meta meta;
        int r;
        if (k->n > x->s->cfg.max_key_bytes) {
            rp_nil(x->out, x->resp);
            r = 0;
        } else {
            r = kv_lookup(x, k, 1, &meta, 0);
            if (r < 0)
                rp_nil(x->out, x->resp); /* an array element cannot carry the error */
        }
        count_get(x, r, &meta);
    }
}

/* ---------------------------------------------------------------- writes */

static int value_ok(cmdctx *x, const srv_arg *v)
{
    if (v->n > x->s->cfg.max_value_bytes) {
        rp_err(x->out, "value of %zu bytes exceeds max_value_bytes (%" PRIu64 " bytes)", v->n,
               x->s->cfg.max_value_bytes);
        return 0;
    }
    return 1;
}

static int add_ms(uint64_t now, long long v, long long unit_ms, uint64_t *out)
{
    if (v <= 0 || v > (long long)(INT64_MAX / unit_ms) / 2)
        return -1;
    *out = now + (uint64_t)v * (uint64_t)unit_ms;
    return 0;
}

void cmd_set(cmdctx *x)
{
    const srv_arg *k = &x->argv[1], *v = &x->argv[2];
    unsigned flags = 0;
    uint64_t exp = 0;
    int have_exp = 0;
    for (int i = 3; i < x->argc; i++) {
        const srv_arg *o = &x->argv[i];
        long long n;
        if (arg_eq(o, "NX") && !(flags & SET_XX)) {
            flags |= SET_NX;
        } else if (arg_eq(o, "XX") && !(flags & SET_NX)) {
            flags |= SET_XX;
        } else if (arg_eq(o, "KEEPTTL") && !have_exp) {
            flags |= SET_KEEPTTL;
        } else if ((arg_eq(o, "EX") || arg_eq(o, "PX") || arg_eq(o, "EXAT") || arg_eq(o, "PXAT")) &&
                   !have_exp && !(flags & SET_KEEPTTL) && i + 1 < x->argc) {
            if (arg_ll(&x->argv[i + 1], &n)) {
                rp_err(x->out, "value is not an integer or out of range");
                return;
            }
            int bad;
            if (arg_eq(o, "EX"))
                bad = add_ms(now_ms_real(), n, 1000, &exp);
            else if (arg_eq(o, "PX"))
                bad = add_ms(now_ms_real(), n, 1, &exp);
            else if (arg_eq(o, "EXAT"))
                bad = add_ms(0, n, 1000, &exp);
            else
                bad = add_ms(0, n, 1, &exp);
            if (bad) {
                rp_err(x->out, "invalid expire time in 'set' command");
                return;
            }
            have_exp = 1;
            i++;
        } else if (arg_eq(o, "GET")) {
            rp_err(x->out, "SET ... GET is not supported by kvtier (use GET, then SET)");
            return;
        } else {
            rp_err(x->out, "syntax error");
            return;
        }
    }
    if (!key_ok(x, k) || !value_ok(x, v))
        return;
    int rc = kv_store(x->s, x->t, k, v, exp, flags, x->ig && x->ig->txn ? x->ig : NULL);
    if (rc == 1) {
        atomic_fetch_add_explicit(&x->t->kv_sets, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&x->t->kv_bytes_in, v->n, memory_order_relaxed);
        rp_ok(x->out);
    } else if (rc == 0) {
        rp_nil(x->out, x->resp);
    } else {
        atomic_fetch_add_explicit(&x->t->kv_set_fail, 1, memory_order_relaxed);
        reply_store_error(x, rc);
    }
}

void cmd_mset(cmdctx *x)
{
    if ((x->argc - 1) % 2) {
        rp_err(x->out, "wrong number of arguments for 'mset' command");
        return;
    }
    for (int i = 1; i < x->argc; i += 2)
        if (!key_ok(x, &x->argv[i]) || !value_ok(x, &x->argv[i + 1]))
            return;
    for (int i = 1; i < x->argc; i += 2) {
        int rc = kv_store(x->s, x->t, &x->argv[i], &x->argv[i + 1], 0, 0, NULL);
        if (rc < 0) {
            atomic_fetch_add_explicit(&x->t->kv_set_fail, 1, memory_order_relaxed);
            if (i > 1)
                rp_err(x->out, "OOM MSET stopped at pair %d: %s (the earlier pairs were stored)",
                       (i + 1) / 2, rc == -ENOSPC ? "no space in the tenant's quota or the tier"
                                                  : kvt_strerror(rc));
            else
                reply_store_error(x, rc);
            return;
        }
        atomic_fetch_add_explicit(&x->t->kv_sets, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&x->t->kv_bytes_in, x->argv[i + 1].n, memory_order_relaxed);
    }
    rp_ok(x->out);
}

void cmd_del(cmdctx *x)
{
    long long n = 0;
    for (int i = 1; i < x->argc; i++) {
        if (x->argv[i].n > x->s->cfg.max_key_bytes)
            continue;
        int r = kv_delete(x->s, x->t, &x->argv[i], 0, 0);
        if (r < 0) {
            rp_err(x->out, "TRYAGAIN deleting a key failed: %s", kvt_strerror(r));
            return;
        }
        n += r;
    }
    rp_int(x->out, n);
}

void cmd_exists(cmdctx *x)
{
    long long n = 0;
    for (int i = 1; i < x->argc; i++) {
        if (x->argv[i].n > x->s->cfg.max_key_bytes)
            continue;
        int r = kv_lookup(x, &x->argv[i], 0, NULL, 0);
        if (r > 0)
            n++;
    }
    rp_int(x->out, n);
}

enum { EXP_NX = 1, EXP_XX = 2, EXP_GT = 4, EXP_LT = 8 };

/* Set (at_ms != 0) or clear (at_ms == 0, PERSIST) the expiry. 1 done, 0 not, <0 error. */
static int kv_set_expire(cmdctx *x, const srv_arg *k, uint64_t at_ms, unsigned cond, int persist)
{
    srv *s = x->s;
    srv_tenant *t = x->t;
    uint64_t m = meta_key(k);
    pthread_mutex_t *mu = stripe(s, m);
    pthread_mutex_lock(mu);
    SCRATCH(buf, s->cfg.kv_block_bytes);
    int ret = -ENOMEM;
    kv_meta meta;
    if (!buf)
        goto out;
    int r = read_meta_t(s, t, k, m, buf, &meta, NULL, 1); /* keeps the inline value */
    uint64_t now = now_ms_real();
    if (r != KV_FOUND || expired(&meta, now)) {
        ret = r < 0 ? r : 0;
        goto out;
    }
    if (persist) {
        if (!meta.expire_ms) {
            ret = 0;
            goto out;
        }
        at_ms = 0;
    } else {
        uint64_t cur = meta.expire_ms; /* 0 = no expiry = infinite for GT/LT */
        if (((cond & EXP_NX) && cur) || ((cond & EXP_XX) && !cur) ||
            ((cond & EXP_GT) && (!cur || at_ms <= cur)) || ((cond & EXP_LT) && cur && at_ms >= cur)) {
            ret = 0;
            goto out;
        }
    }
    /* keep the inline value: copy it out of buf before put_meta rewrites buf */
    char *val = NULL;
    if (meta.flags & KV_INLINE) {
        val = malloc(meta.value_len ? meta.value_len : 1);
        if (!val)
            goto out;
        memcpy(val, buf + sizeof(kv_meta) + k->n, meta.value_len);
    }
    if (!persist && at_ms <= now) {
        /* an expiry in the past deletes the key (as Redis does) */
        ret = remove_retry(KVNS(t, m), &m, 1);
        if (!ret) {
            if (!(meta.flags & KV_INLINE))
                remove_chain(s, t, m, data_root(&meta, m));
            atomic_fetch_sub(&t->keys, 1);
            ret = 1;
        }
    } else {
        meta.expire_ms = at_ms;
        ret = put_meta(t, m, k, &meta, val, buf); /* replaces the meta block */
        if (ret && ret != -EBUSY) { /* the value is lost with its meta block */
            if (!(meta.flags & KV_INLINE))
                remove_chain(s, t, m, data_root(&meta, m));
            atomic_fetch_sub(&t->keys, 1);
        } else if (!ret) {
            ret = 1;
        }
    }
    free(val);
out:
    pthread_mutex_unlock(mu);
    SCRATCH_FREE(buf);
    return ret;
}

static void expire_common(cmdctx *x, long long unit_ms, int absolute)
{
    long long v;
    if (arg_ll(&x->argv[2], &v)) {
        rp_err(x->out, "value is not an integer or out of range");
        return;
    }
    unsigned cond = 0;
    for (int i = 3; i < x->argc; i++) {
        if (arg_eq(&x->argv[i], "NX"))
            cond |= EXP_NX;
        else if (arg_eq(&x->argv[i], "XX"))
            cond |= EXP_XX;
        else if (arg_eq(&x->argv[i], "GT"))
            cond |= EXP_GT;
        else if (arg_eq(&x->argv[i], "LT"))
            cond |= EXP_LT;
        else {
            rp_err(x->out, "Unsupported option %.*s", (int)(x->argv[i].n > 32 ? 32 : x->argv[i].n),
                   x->argv[i].p);
            return;
        }
    }
    if ((cond & EXP_NX) && (cond & ~EXP_NX)) {
        rp_err(x->out, "NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if ((cond & EXP_GT) && (cond & EXP_LT)) {
        rp_err(x->out, "GT and LT options at the same time are not compatible");
        return;
    }
    if (v > (long long)(INT64_MAX / 4 / unit_ms) || v < -(long long)(INT64_MAX / 4 / unit_ms)) {
        rp_err(x->out, "invalid expire time in '%.*s' command", (int)x->argv[0].n, x->argv[0].p);
        return;
    }
    long long at = v * unit_ms + (absolute ? 0 : (long long)now_ms_real());
    if (at < 1)
        at = 1; /* in the past: the key is deleted */
    if (x->argv[1].n > x->s->cfg.max_key_bytes) {
        rp_int(x->out, 0);
        return;
    }
    int r = kv_set_expire(x, &x->argv[1], (uint64_t)at, cond, 0);
    if (r < 0)
        reply_store_error(x, r);
    else
        rp_int(x->out, r);
}

void cmd_expire(cmdctx *x)
{
    if (arg_eq(&x->argv[0], "EXPIREAT"))
        expire_common(x, 1000, 1);
    else
        expire_common(x, 1000, 0);
}

void cmd_pexpire(cmdctx *x)
{
    if (arg_eq(&x->argv[0], "PEXPIREAT"))
        expire_common(x, 1, 1);
    else
        expire_common(x, 1, 0);
}

void cmd_persist(cmdctx *x)
{
    if (x->argv[1].n > x->s->cfg.max_key_bytes) {
        rp_int(x->out, 0);
        return;
    }
    int r = kv_set_expire(x, &x->argv[1], 0, 0, 1);
    if (r < 0)
        reply_store_error(x, r);
    else
        rp_int(x->out, r);
}

static void ttl_common(cmdctx *x, int ms)
{
    kv_meta meta;
    if (x->argv[1].n > x->s->cfg.max_key_bytes) {
        rp_int(x->out, -2);
        return;
    }
    int r = kv_lookup(x, &x->argv[1], 0, &meta, 0);
    if (r < 0) {
        rp_err(x->out, "reading the key failed: %s", kvt_strerror(r));
        return;
    }
    if (r == 0) {
        rp_int(x->out, -2);
        return;
    }
    if (!meta.expire_ms) {
        rp_int(x->out, -1);
        return;
    }
    uint64_t now = now_ms_real();
    long long left = meta.expire_ms > now ? (long long)(meta.expire_ms - now) : 0;
    rp_int(x->out, ms ? left : (left + 500) / 1000);
}

void cmd_ttl(cmdctx *x) { ttl_common(x, 0); }
void cmd_pttl(cmdctx *x) { ttl_common(x, 1); }

void cmd_dbsize(cmdctx *x)
{
    int64_t n = atomic_load(&x->t->keys);
    rp_int(x->out, n < 0 ? 0 : n);
}
