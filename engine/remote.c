/*
 * remote.c — the engine's remote tier (issue 9): kvtier engines on many machines share one
 * pool of blocks in a Redis/Valkey cluster through tiers/remote.h.
 *
 *   put   kvt_put stores a block locally as always; under the engine lock the put hook
 *         (eremote_on_put) pins the new leaf's path and queues a write-through job with a copy
 *         of the token prefix. The engine's remote thread copies each block out of its
 *         (pinned) DRAM slot, remote_put_batch()es it with identity units = the whole token
 *         prefix through that block (DESIGN.md invariant 1: a chained key alone is never
 *         trusted), publishes the stored keys in the engine's holder set, and unpins.
 *   match kvt_match/kvt_match_keys with a lease first call eremote_fill: a measuring match
 *         finds the local prefix m; the next consecutive blocks are fetched with
 *         remote_get_batch (8 per round, stopping at the first miss) and inserted through
 *         put_units — a pending leaf, bytes copied into DRAM slots, then published (invariant
 *         3) — so the lease that follows includes them. They are DRAM blocks from then on
 *         (kvt_lease_block_tier says KVT_TIER_DRAM); a thread-local flag stops the put hook
 *         from writing them back. Their keys are published (the engine now holds them).
 *   errors every remote failure (down master, timeout, CLUSTERDOWN, corrupt, stale, no
 *         connection at all) is a miss or a dropped write-through, counted in kvt_stats'
 *         remote_* fields; nothing reaches the caller.
 *
 * Namespace identity on the wire: XXH3-64 of (name, tenant, layout fields, flags), the same on
 * every machine (eremote_ns_id). Two contexts: `fg` serves the callers' gets and holders
 * queries (serialised by its own mutex), `bg` the thread's puts, publishes and probes, so a
 * slow write-through never delays a match. If the cluster is unreachable at open, the thread
 * keeps trying to connect every second; until then remote lookups are misses.
 *
 * Locks: e->lock -> rem->mu (the put hook enqueues with both held); the thread never holds
 * rem->mu while it takes e->lock. No lock is held across network I/O.
 *
 * Queue bound: pinned write-through jobs hold DRAM; at most max(8 blocks, DRAM capacity / 4)
 * of block bytes may be queued, more is dropped (remote_put_dropped).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "engine/internal.h"
#include "tiers/remote.h"

#define FILL_BATCH 8u           /* blocks per remote get round of a match */
#define PUT_BATCH 8u            /* blocks per remote put batch of the thread */
#define HOLDER_TTL_MS 60000u    /* holder set TTL, renewed by every publish and heartbeat */
#define HEARTBEAT_NS 10000000000ull /* probe + holder heartbeat every 10 s */
#define RECONNECT_NS 1000000000ull  /* retry remote_open every 1 s while unconnected */

struct remote_cfg {
    char *seeds, *salt, *engine_id;
    unsigned flags;
};

typedef struct rjob {
    struct rjob *next;
    kvt_ns *ns;
    radix_node *leaf;   /* pinned path (write-through), or NULL: publish only */
    uint32_t first, n;  /* blocks first .. first+n-1 (depths) */
    uint32_t *units;    /* write-through: the prefix through block first+n-1 */
    uint64_t bytes;     /* queue accounting */
    uint64_t keys[];    /* [n] */
} rjob;

struct eng_remote {
    kvt_engine *e;
    char *seeds, *salt;
    char engine_id[REMOTE_ENGINE_MAX + 1];
    unsigned put_flags;
    _Atomic(remote_ctx *) fg;
    remote_ctx *bg; /* the thread's */
    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    rjob *head, *tail;
    uint64_t queued_bytes;
    uint64_t enq, done;
    int stop;
    pthread_t th;
    atomic_uint_fast64_t hits, misses, errors, bytes_read, puts, put_failures, put_dropped,
        bytes_written, publishes;
};

static _Thread_local int filling; /* eremote_fill's own put: no write-back */

/* ---------------------------------------------------------------- options */

void eremote_opts_free(kvt_options *o)
{
    struct remote_cfg *c = o->rcfg;
    if (!c)
        return;
    util_free(c->seeds);
    util_free(c->salt);
    util_free(c->engine_id);
    util_free(c);
    o->rcfg = NULL;
}

static struct remote_cfg *cfg_get(kvt_options *o)
{
    if (!o->rcfg)
        o->rcfg = util_calloc(1, sizeof(struct remote_cfg));
    return o->rcfg;
}

static int valid_engine_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REMOTE_ENGINE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

KVT_EXPORT int kvt_options_set_remote(kvt_options *o, const char *seeds, const char *salt,
                                      unsigned flags)
{
    char k[REMOTE_KEY_MAX];
    if (!o || (flags & ~KVT_REMOTE_DURABLE))
        return -EINVAL;
    if (!seeds) { /* remove the remote tier, keep an engine id */
        if (o->rcfg) {
            util_free(o->rcfg->seeds);
            util_free(o->rcfg->salt);
            o->rcfg->seeds = o->rcfg->salt = NULL;
        }
        return 0;
    }
    if (!seeds[0] || !salt || remote_key(salt, 0, 0, k, sizeof k) < 0)
        return -EINVAL;
    struct remote_cfg *c = cfg_get(o);
    char *s1 = dup_str(seeds), *s2 = dup_str(salt);
    if (!c || !s1 || !s2) {
        util_free(s1);
        util_free(s2);
        return -ENOMEM;
    }
    util_free(c->seeds);
    util_free(c->salt);
    c->seeds = s1;
    c->salt = s2;
    c->flags = flags;
    return 0;
}

KVT_EXPORT int kvt_options_set_engine_id(kvt_options *o, const char *id)
{
    if (!o || (id && !valid_engine_id(id)))
        return -EINVAL;
    struct remote_cfg *c = cfg_get(o);
    char *d = id ? dup_str(id) : NULL;
    if (!c || (id && !d))
        return -ENOMEM;
    util_free(c->engine_id);
    c->engine_id = d;
    return 0;
}

/* ---------------------------------------------------------------- identity */

uint64_t eremote_ns_id(const kvt_ns *ns)
{
    /* name NUL tenant NUL [layers kv_heads head_dim dtype block_tokens flags version] u32 */
    unsigned char buf[2 * (KVT_NAME_MAX + 1) + 7 * sizeof(uint32_t)];
    uint32_t f[7] = {ns->layout.layers, ns->layout.kv_heads, ns->layout.head_dim,
                     (uint32_t)ns->layout.dtype, ns->layout.block_tokens, ns->flags, 1u};
    size_t a = strlen(ns->name) + 1, b = strlen(ns->tn->name) + 1;
    memcpy(buf, ns->name, a);
    memcpy(buf + a, ns->tn->name, b);
    memcpy(buf + a + b, f, sizeof f);
    return XXH3_64bits(buf, a + b + sizeof f);
}

/* ---------------------------------------------------------------- the thread */

static void job_free(rjob *j)
{
    util_free(j->units);
    util_free(j);
}

/* Write-through of one job (no lock held on entry). */
static void job_put(struct eng_remote *r, rjob *j)
{
    kvt_engine *e = r->e;
    kvt_ns *ns = j->ns;
    uint64_t bb = ns->block_bytes;
    unsigned char *stage = r->bg ? util_malloc((size_t)(PUT_BATCH * bb)) : NULL;
    uint64_t ok_keys[PUT_BATCH];
    if (!stage) {
        atomic_fetch_add(&r->put_dropped, j->n);
        goto unpin;
    }
    uint64_t nsid = eremote_ns_id(ns);
    for (uint32_t base = 0; base < j->n; base += PUT_BATCH) {
        uint32_t k = j->n - base < PUT_BATCH ? j->n - base : PUT_BATCH;
        remote_req q[PUT_BATCH];
        uint32_t slots[PUT_BATCH], nq = 0;
        pthread_mutex_lock(&e->lock);
        for (uint32_t i = 0; i < k; i++) {
            uint32_t d = j->first + base + i;
            radix_block *b = blk_at_depth(j->leaf, d, NULL);
            uint32_t slot = b->slot[RADIX_TIER_DRAM];
            if (slot == RADIX_NO_SLOT || (b->flags & BLK_BAD))
                continue; /* pinned blocks keep their DRAM copy; defensive */
            /* pinned: never evicted or demoted, so the slot chain stays this block's and
             * is copied below without the lock */
            q[nq] = (remote_req){.ns = nsid, .key = b->key, .units = j->units,
                                 .n_units = (d + 1) * ns->bu, .buf = stage + (size_t)nq * bb,
                                 .len = (size_t)bb};
            slots[nq++] = slot;
        }
        pthread_mutex_unlock(&e->lock);
        for (uint32_t i = 0; i < nq; i++)
            dram_read(e->dram, slots[i], q[i].buf, bb);
        if (!nq)
            continue;
        int rc = remote_put_batch(r->bg, q, nq, 0, r->put_flags);
        uint32_t nok = 0;
        for (uint32_t i = 0; i < nq; i++) {
            if (rc >= 0 && (q[i].res == 0 || q[i].res == -ETIME)) {
                ok_keys[nok++] = q[i].key;
                atomic_fetch_add(&r->bytes_written, bb);
            }
        }
        atomic_fetch_add(&r->puts, nok);
        atomic_fetch_add(&r->put_failures, nq - nok);
        if (nok && remote_publish(r->bg, r->engine_id, nsid, ok_keys, nok, HOLDER_TTL_MS, 0) == 0)
            atomic_fetch_add(&r->publishes, 1);
    }
    util_free(stage);
unpin:
    pthread_mutex_lock(&e->lock);
    int bad = 0;
    for (radix_node *n = j->leaf; n && n->parent; n = n->parent)
        bad |= (n->eflags & NODE_HAS_BAD) != 0;
    path_unpin(j->leaf);
    if (bad)
        drop_bad_locked(ns, j->leaf);
    pthread_cond_broadcast(&e->wt_done); /* a put may wait for unpinned DRAM (tiered) */
    pthread_mutex_unlock(&e->lock);
}

static void try_connect(struct eng_remote *r)
{
    remote_ctx *a = NULL, *b = NULL;
    if (remote_open(r->seeds, r->salt, NULL, &a) != 0)
        return;
    if (remote_open(r->seeds, r->salt, NULL, &b) != 0) {
        remote_close(a);
        return;
    }
    r->bg = b;
    atomic_store(&r->fg, a);
}

static void *remote_main(void *arg)
{
    struct eng_remote *r = arg;
    uint64_t next_beat = util_now_ns(), next_conn = 0;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->head && !r->stop) {
            uint64_t now = util_now_ns();
            if (now >= next_beat || (!r->bg && now >= next_conn))
                break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        rjob *j = r->head;
        if (j) {
            r->head = j->next;
            if (!r->head)
                r->tail = NULL;
        }
        int stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        uint64_t now = util_now_ns();
        if (!r->bg && now >= next_conn && !stop) {
            try_connect(r);
            next_conn = now + RECONNECT_NS;
        }
        if (j) {
            if (j->leaf) {
                job_put(r, j); /* not connected: dropped (counted), unpinned */
            } else if (r->bg && remote_publish(r->bg, r->engine_id, eremote_ns_id(j->ns), j->keys,
                                               j->n, HOLDER_TTL_MS, 0) == 0) {
                atomic_fetch_add(&r->publishes, 1);
            }
        } else if (r->bg && now >= next_beat && !stop) {
            remote_probe(r->bg);
            if (remote_publish(r->bg, r->engine_id, 0, NULL, 0, HOLDER_TTL_MS, 0) == 0)
                atomic_fetch_add(&r->publishes, 1);
            next_beat = util_now_ns() + HEARTBEAT_NS;
        }
        pthread_mutex_lock(&r->mu);
        if (j) {
            r->queued_bytes -= j->bytes;
            r->done++;
            pthread_cond_broadcast(&r->done_cv);
            job_free(j);
        } else if (stop) {
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---------------------------------------------------------------- open, close */

int eremote_open(kvt_engine *e, const kvt_options *o)
{
    struct remote_cfg *c = o->rcfg;
    if (!c || !c->seeds || o->simulate)
        return 0;
    struct eng_remote *r = util_calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->e = e;
    r->put_flags = (c->flags & KVT_REMOTE_DURABLE) ? REMOTE_PUT_DURABLE : 0;
    if (c->engine_id) {
        snprintf(r->engine_id, sizeof r->engine_id, "%s", c->engine_id);
    } else { /* hostname:pid, cleaned to the allowed characters */
        char host[64] = "kvtier";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        snprintf(r->engine_id, sizeof r->engine_id, "%.40s:%d", host, (int)getpid());
        for (char *p = r->engine_id; *p; p++)
            if (!valid_engine_id((char[]){*p, 0}))
                *p = '-';
    }
    int rc = -ENOMEM;
    if (!(r->seeds = dup_str(c->seeds)) || !(r->salt = dup_str(c->salt)))
        goto fail;
    remote_ctx *a = NULL, *b = NULL;
    rc = remote_open(r->seeds, r->salt, NULL, &a);
    if (rc == 0 && (rc = remote_open(r->seeds, r->salt, NULL, &b)) != 0)
        remote_close(a);
    if (rc == 0) {
        r->bg = b;
        atomic_store(&r->fg, a);
    } else if (rc != -ENOTCONN) { /* malformed seeds, not a cluster, AUTH: configuration */
        goto fail;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_cond_init(&r->done_cv, NULL);
    if ((rc = -pthread_create(&r->th, NULL, remote_main, r))) {
        pthread_cond_destroy(&r->cv);
        pthread_cond_destroy(&r->done_cv);
        pthread_mutex_destroy(&r->mu);
        remote_close(r->bg);
        remote_close(atomic_load(&r->fg));
        goto fail;
    }
    e->rem = r;
    return 0;
fail:
    util_free(r->seeds);
    util_free(r->salt);
    util_free(r);
    return rc;
}

void eremote_close(kvt_engine *e)
{
    struct eng_remote *r = e->rem;
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1; /* the thread finishes the queue (unpinning every job), then exits */
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->th, NULL);
    remote_close(r->bg);
    remote_close(atomic_load(&r->fg));
    pthread_cond_destroy(&r->cv);
    pthread_cond_destroy(&r->done_cv);
    pthread_mutex_destroy(&r->mu);
    util_free(r->seeds);
    util_free(r->salt);
    util_free(r);
    e->rem = NULL;
}

/* ---------------------------------------------------------------- hooks */

/* Queue a job (lock held by the caller for write-through jobs). 0 or -ENOMEM/-ENOSPC. */
static int enqueue(struct eng_remote *r, rjob *j, uint64_t limit)
{
    pthread_mutex_lock(&r->mu);
    if (r->stop || (j->leaf && r->queued_bytes + j->bytes > limit && r->queued_bytes > 0)) {
        pthread_mutex_unlock(&r->mu);
        return -ENOSPC;
    }
    r->queued_bytes += j->bytes;
    r->enq++;
    if (r->tail)
        r->tail->next = j;
    else
        r->head = j;
    r->tail = j;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

void eremote_on_put(kvt_ns *ns, radix_node *leaf, uint32_t n, const uint32_t *units)
{
    struct eng_remote *r = ns->eng->rem;
    if (!r || filling || !n || ns->eng->simulate)
        return;
    rjob *j = util_calloc(1, sizeof *j + n * sizeof(uint64_t));
    size_t nu = (size_t)(leaf->depth + n) * ns->bu;
    if (!j || !(j->units = util_malloc(nu * sizeof(uint32_t)))) {
        util_free(j);
        atomic_fetch_add(&r->put_dropped, n);
        return;
    }
    memcpy(j->units, units, nu * sizeof(uint32_t));
    j->ns = ns;
    j->leaf = leaf;
    j->first = (uint32_t)leaf->depth;
    j->n = n;
    j->bytes = (uint64_t)n * ns->block_bytes;
    for (uint32_t i = 0; i < n; i++)
        j->keys[i] = leaf->blocks[i].key;
    path_pin(leaf);
    uint64_t limit = dram_capacity(ns->eng->dram) / 4;
    if (limit < 8 * ns->block_bytes)
        limit = 8 * ns->block_bytes;
    if (enqueue(r, j, limit)) {
        path_unpin(leaf);
        job_free(j);
        atomic_fetch_add(&r->put_dropped, n);
    }
}

static void publish_async(struct eng_remote *r, kvt_ns *ns, const uint64_t *keys, uint32_t n)
{
    rjob *j = util_calloc(1, sizeof *j + n * sizeof(uint64_t));
    if (!j)
        return;
    j->ns = ns;
    j->n = n;
    memcpy(j->keys, keys, n * sizeof(uint64_t));
    if (enqueue(r, j, 0))
        job_free(j);
}

void eremote_fill(kvt_ns *ns, const uint32_t *units, size_t nb)
{
    kvt_engine *e = ns->eng;
    struct eng_remote *r = e->rem;
    remote_ctx *fg = r ? atomic_load(&r->fg) : NULL;
    size_t m = 0;
    if (!r || !nb || e->simulate)
        return;
    if (!fg) { /* not connected (yet): a miss */
        atomic_fetch_add(&r->misses, 1);
        atomic_fetch_add(&r->errors, 1);
        return;
    }
    if (match_units_lease(ns, units, nb, &m, NULL, 0) || m >= nb)
        return;
    uint64_t bb = ns->block_bytes, nsid = eremote_ns_id(ns);
    uint64_t *keys = util_malloc(nb * sizeof(uint64_t));
    const void **ptrs = util_calloc(nb, sizeof(void *));
    unsigned char *bufs = util_malloc((size_t)(FILL_BATCH * bb));
    if (!keys || !ptrs || !bufs)
        goto out;
    radix_keys(ns->tree, units, nb, keys); /* reads immutable tree fields */
    for (size_t pos = m; pos < nb;) {
        uint32_t k = nb - pos < FILL_BATCH ? (uint32_t)(nb - pos) : FILL_BATCH;
        remote_req q[FILL_BATCH];
        for (uint32_t i = 0; i < k; i++)
            q[i] = (remote_req){.ns = nsid, .key = keys[pos + i], .units = units,
                                .n_units = (uint32_t)((pos + i + 1) * ns->bu),
                                .buf = bufs + (size_t)i * bb, .len = (size_t)bb};
        int rc = remote_get_batch(fg, q, k);
        uint32_t h = 0;
        while (rc > 0 && h < k && q[h].res == 0 && q[h].len == bb)
            h++;
        if (h < k) { /* the first miss ends the match */
            int why = rc < 0 ? rc : q[h].res;
            atomic_fetch_add(&r->misses, 1);
            if (why != -ENOENT && why != 0)
                atomic_fetch_add(&r->errors, 1);
        }
        if (h == 0)
            break;
        for (uint32_t i = 0; i < h; i++)
            ptrs[pos + i] = bufs + (size_t)i * bb;
        size_t stored = 0;
        filling = 1;
        int prc = put_units(ns, units, pos + h, (const void *const *)ptrs, 0, &stored);
        filling = 0;
        for (uint32_t i = 0; i < h; i++)
            ptrs[pos + i] = NULL;
        atomic_fetch_add(&r->hits, h);
        atomic_fetch_add(&r->bytes_read, h * bb);
        if (stored)
            publish_async(r, ns, keys + pos + h - stored, (uint32_t)stored);
        if (prc || h < k)
            break;
        pos += h;
    }
out:
    util_free(keys);
    util_free(ptrs);
    util_free(bufs);
}

void eremote_stats(kvt_engine *e, kvt_stats *s)
{
    struct eng_remote *r = e->rem;
    if (!r)
        return;
    remote_ctx *fg = atomic_load(&r->fg);
    s->remote_state = fg ? 1 : 2;
    if (fg) {
        remote_stats rs;
        remote_get_stats(fg, &rs);
        s->remote_masters_up = rs.masters_up;
        s->remote_read_bw = rs.read_bw;
        s->remote_latency_s = rs.latency_s;
    }
    s->remote_hits = atomic_load(&r->hits);
    s->remote_misses = atomic_load(&r->misses);
    s->remote_errors = atomic_load(&r->errors);
    s->remote_bytes_read = atomic_load(&r->bytes_read);
    s->remote_puts = atomic_load(&r->puts);
    s->remote_put_failures = atomic_load(&r->put_failures);
    s->remote_put_dropped = atomic_load(&r->put_dropped);
    s->remote_bytes_written = atomic_load(&r->bytes_written);
    s->remote_publishes = atomic_load(&r->publishes);
}

/* ---------------------------------------------------------------- public calls */

KVT_EXPORT int kvt_remote_sync(kvt_engine *e)
{
    if (!e)
        return -EINVAL;
    struct eng_remote *r = e->rem;
    if (!r)
        return -ENODEV;
    pthread_mutex_lock(&r->mu);
    uint64_t target = r->enq;
    while (r->done < target)
        pthread_cond_wait(&r->done_cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static int holders(kvt_ns *ns, const uint32_t *units, size_t nb, kvt_remote_holder *out,
                   size_t cap, size_t *n_out)
{
    struct eng_remote *r = ns->eng->rem;
    if (!r)
        return -ENODEV;
    remote_ctx *fg = atomic_load(&r->fg);
    if (!fg)
        return -ENOTCONN;
    if (nb == 0) {
        *n_out = 0;
        return 0;
    }
    uint64_t *keys = util_malloc(nb * sizeof(uint64_t));
    remote_holder *h = cap ? util_calloc(cap, sizeof *h) : NULL;
    int rc = -ENOMEM;
    if (!keys || (cap && !h))
        goto out;
    radix_keys(ns->tree, units, nb, keys);
    rc = remote_holders(fg, eremote_ns_id(ns), keys, nb, h, cap, n_out);
    if (rc == 0)
        for (size_t i = 0; i < cap && i < *n_out; i++) {
            snprintf(out[i].engine, sizeof out[i].engine, "%s", h[i].engine);
            out[i].blocks = h[i].blocks;
        }
out:
    util_free(keys);
    util_free(h);
    return rc;
}

KVT_EXPORT int kvt_remote_holders(kvt_ns *ns, const uint32_t *tokens, size_t n_tokens,
                                  kvt_remote_holder *out, size_t cap, size_t *n_out)
{
    if (!ns || !n_out || (n_tokens && !tokens) || (cap && !out))
        return -EINVAL;
    if (ns->flags & KVT_NS_KEYS)
        return KVT_EMODE;
    return holders(ns, tokens, n_tokens / ns->bt, out, cap, n_out);
}

KVT_EXPORT int kvt_remote_holders_keys(kvt_ns *ns, const uint64_t *keys, size_t n_keys,
                                       kvt_remote_holder *out, size_t cap, size_t *n_out)
{
    if (!ns || !n_out || (n_keys && !keys) || (cap && !out))
        return -EINVAL;
    if (!(ns->flags & KVT_NS_KEYS))
        return KVT_EMODE;
    return holders(ns, (const uint32_t *)(const void *)keys, n_keys, out, cap, n_out);
}

KVT_EXPORT int kvt_engine_id(kvt_engine *e, char *buf, size_t cap)
{
    if (!e || !buf || !cap)
        return -EINVAL;
    if (!e->rem)
        return -ENODEV;
    if (strlen(e->rem->engine_id) >= cap)
        return -ERANGE;
    snprintf(buf, cap, "%s", e->rem->engine_id);
    return 0;
}
