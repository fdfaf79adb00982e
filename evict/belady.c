/* belady.c — see belady.h. */
#include "belady.h"

#include <errno.h>
#include <string.h>

#include "util/util.h"

/* ---------------------------------------------------------------- id -> slot hash table
 * Open addressing, linear probing, power-of-two size, load <= 0.7.
 *   key[size]  the id in a slot
 *   val[size]  EVICT_EMPTY for a free slot, else the caller's 32-bit value
 * A slot index is a stable handle for an id once all ids are inserted (no more growth). */
#define EVICT_EMPTY UINT32_MAX
#define EVICT_NONE (UINT32_MAX - 1)

typedef struct evict_idmap {
    uint64_t *key;
    uint32_t *val;
    size_t size, used;
} evict_idmap;

static size_t evict_hash(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return (size_t)(x ^ (x >> 31));
}

static int evict_idmap_alloc(evict_idmap *m, size_t size)
{
    m->key = util_malloc(size * sizeof *m->key);
    m->val = util_malloc(size * sizeof *m->val);
    if (!m->key || !m->val) {
        util_free(m->key);
        util_free(m->val);
        return -ENOMEM;
    }
    memset(m->val, 0xff, size * sizeof *m->val); /* all EVICT_EMPTY */
    m->size = size;
    m->used = 0;
    return 0;
}

static void evict_idmap_free(evict_idmap *m)
{
    util_free(m->key);
    util_free(m->val);
}

static size_t evict_idmap_find(const evict_idmap *m, uint64_t id)
{
    size_t mask = m->size - 1, s = evict_hash(id) & mask;
    while (m->val[s] != EVICT_EMPTY && m->key[s] != id)
        s = (s + 1) & mask;
    return s; /* the id's slot, or the empty slot where it would go */
}

static int evict_idmap_grow(evict_idmap *m)
{
    evict_idmap g;
    int err = evict_idmap_alloc(&g, m->size * 2);
    if (err)
        return err;
    for (size_t s = 0; s < m->size; s++) {
        if (m->val[s] == EVICT_EMPTY)
            continue;
        size_t d = evict_idmap_find(&g, m->key[s]);
        g.key[d] = m->key[s];
        g.val[d] = m->val[s];
    }
    g.used = m->used;
    evict_idmap_free(m);
    *m = g;
    return 0;
}

/* The slot of id, inserted with value v if new. Returns 0 or -ENOMEM. */
static int evict_idmap_put(evict_idmap *m, uint64_t id, uint32_t v, size_t *slot)
{
    int err;
    if ((m->used + 1) * 10 > m->size * 7 && (err = evict_idmap_grow(m)))
        return err;
    size_t s = evict_idmap_find(m, id);
    if (m->val[s] == EVICT_EMPTY) {
        m->key[s] = id;
        m->val[s] = v;
        m->used++;
    }
    *slot = s;
    return 0;
}

static int evict_trace_args(const uint64_t *ids, size_t n, size_t *hits)
{
    if (!hits || (n && !ids))
        return -EINVAL;
    if (n > (size_t)UINT32_MAX - 2)
        return -E2BIG;
    return 0;
}

/* ---------------------------------------------------------------- Belady
 * Max-heap of the cached blocks keyed by next-use index:
 *   hk[j] next use of the block in heap position j (n: never)     hk[0] is the furthest
 *   hs[j] its hash slot; val[hs[j]] == j (val EVICT_NONE: not cached) */

typedef struct evict_heap {
    uint32_t *hk, *hs;
    size_t len;
    evict_idmap *m;
} evict_heap;

static void evict_heap_set(evict_heap *h, size_t j, uint32_t k, uint32_t s)
{
    h->hk[j] = k;
    h->hs[j] = s;
    h->m->val[s] = (uint32_t)j;
}

static void evict_heap_up(evict_heap *h, size_t j)
{
    uint32_t k = h->hk[j], s = h->hs[j];
    while (j > 0) {
        size_t p = (j - 1) / 2;
        if (h->hk[p] >= k)
            break;
        evict_heap_set(h, j, h->hk[p], h->hs[p]);
        j = p;
    }
    evict_heap_set(h, j, k, s);
}

static void evict_heap_down(evict_heap *h, size_t j)
{
    uint32_t k = h->hk[j], s = h->hs[j];
    for (;;) {
        size_t c = 2 * j + 1;
        if (c >= h->len)
            break;
        if (c + 1 < h->len && h->hk[c + 1] > h->hk[c])
            c++;
        if (h->hk[c] <= k)
            break;
        evict_heap_set(h, j, h->hk[c], h->hs[c]);
        j = c;
    }
    evict_heap_set(h, j, k, s);
}

int evict_belady_hits(const uint64_t *ids, size_t n, size_t capacity, uint8_t *hit_out,
                      size_t *hits)
{
    evict_idmap m = {0};
    evict_heap h = {0};
    uint32_t *next = NULL;
    size_t nhits = 0;
    int err;

    if ((err = evict_trace_args(ids, n, hits)))
        return err;
    if (capacity > n)
        capacity = n;
    if ((err = evict_idmap_alloc(&m, 1024)))
        return err;
    err = -ENOMEM;
    if (n && !(next = util_malloc(n * sizeof *next)))
        goto fail;
    if (capacity && (!(h.hk = util_malloc(capacity * sizeof *h.hk)) ||
                     !(h.hs = util_malloc(capacity * sizeof *h.hs))))
        goto fail;
    h.m = &m;

    /* Backward: next[i] = the next index holding ids[i], n if none (val: last index seen). */
    for (size_t i = n; i-- > 0;) {
        size_t s;
        if ((err = evict_idmap_put(&m, ids[i], (uint32_t)n, &s)))
            goto fail;
        next[i] = m.val[s];
        m.val[s] = (uint32_t)i;
    }
    for (size_t s = 0; s < m.size; s++)
        if (m.val[s] != EVICT_EMPTY)
            m.val[s] = EVICT_NONE;

    for (size_t i = 0; i < n; i++) {
        uint32_t s = (uint32_t)evict_idmap_find(&m, ids[i]), v = m.val[s], nu = next[i];
        int hit = v != EVICT_NONE;
        if (hit) {
            nhits++;
            h.hk[v] = nu; /* was i, the smallest key; now later: sift toward the root */
            evict_heap_up(&h, v);
        } else if (capacity && nu != n) {
            if (h.len < capacity) {
                h.len++;
                evict_heap_set(&h, h.len - 1, nu, s);
                evict_heap_up(&h, h.len - 1);
            } else if (nu < h.hk[0]) {
                m.val[h.hs[0]] = EVICT_NONE;
                evict_heap_set(&h, 0, nu, s);
                evict_heap_down(&h, 0);
            }
        }
        if (hit_out)
            hit_out[i] = (uint8_t)hit;
    }
    *hits = nhits;
    err = 0;
fail:
    util_free(h.hk);
    util_free(h.hs);
    util_free(next);
    evict_idmap_free(&m);
    return err;
}

/* ---------------------------------------------------------------- LRU
 * A circular list through hash slots: prv[s]/nxt[s]; the sentinel is slot index m.size
 * (the arrays have m.size + 1 entries). nxt[sentinel] is the least recently used.
 * val[s]: 1 cached, 0 not. */

int evict_lru_trace_hits(const uint64_t *ids, size_t n, size_t capacity, uint8_t *hit_out,
                         size_t *hits)
{
    evict_idmap m = {0};
    uint32_t *prv = NULL, *nxt = NULL, head;
    size_t nhits = 0, len = 0;
    int err;

    if ((err = evict_trace_args(ids, n, hits)))
        return err;
    if ((err = evict_idmap_alloc(&m, 1024)))
        return err;
    for (size_t i = 0; i < n; i++) {
        size_t s;
        if ((err = evict_idmap_put(&m, ids[i], 0, &s)))
            goto fail;
    }
    err = -ENOMEM;
    if (m.size > (size_t)UINT32_MAX - 1)
        goto fail;
    if (!(prv = util_malloc((m.size + 1) * sizeof *prv)) ||
        !(nxt = util_malloc((m.size + 1) * sizeof *nxt)))
        goto fail;
    head = (uint32_t)m.size;
    prv[head] = nxt[head] = head;

    for (size_t i = 0; i < n; i++) {
        uint32_t s = (uint32_t)evict_idmap_find(&m, ids[i]);
        int hit = m.val[s] == 1;
        if (hit) {
            nhits++;
            nxt[prv[s]] = nxt[s]; /* unlink; relinked at the tail below */
            prv[nxt[s]] = prv[s];
        } else if (capacity) {
            if (len == capacity) {
                uint32_t v = nxt[head];
                nxt[head] = nxt[v];
                prv[nxt[v]] = head;
                m.val[v] = 0;
            } else {
                len++;
            }
            m.val[s] = 1;
        }
        if (m.val[s] == 1) {
            prv[s] = prv[head];
            nxt[s] = head;
            nxt[prv[head]] = s;
            prv[head] = s;
        }
        if (hit_out)
            hit_out[i] = (uint8_t)hit;
    }
    *hits = nhits;
    err = 0;
fail:
    util_free(prv);
    util_free(nxt);
    evict_idmap_free(&m);
    return err;
}
