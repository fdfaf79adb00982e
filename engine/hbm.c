/*
 * hbm.c — the HBM tier: a gpu_pool (gpu/paged.h) as the engine's fastest tier, lease loads
 * into it, a per-layer gather straight from the pinned DRAM arena, and the public launchers
 * of the paged attention kernels (kvtier.h, "the HBM tier").
 *
 * State (struct hbm_tier, one per engine, created by kvt_engine_open when asked for and a
 * GPU is present; the pool itself is created by the first namespace that needs it):
 *
 *   pool           [num_blocks] block slabs in GPU memory, the host block layout
 *   meta[id]       per pool block: owner namespace, (node, depth) of the radix block whose
 *                  copy it is (node = the node that holds the block: hbm_on_split moves it
 *                  to the upper part of a split), pins (leases that loaded it), the fence
 *                  (event) of the copy that brought its bytes, an LRU link
 *   radix_block.slot[RADIX_TIER_HBM] = id    the forward link, published only once the copy
 *                  is enqueued and its fence recorded
 *
 * Life of a copy: free -> allocated by a load (pinned, unpublished) -> published (slot set,
 * fence) -> unpinned by kvt_release (on the LRU list, reusable by later leases) -> evicted
 * by a later load of the same tenant when the pool is full, or freed when its block leaves
 * the index (blk_release_all -> hbm_block_released). A pinned copy is never evicted or
 * overwritten (invariant 4): its radix node is pinned by the same lease, so the block cannot
 * leave the index either.
 *
 * Locking: meta, the LRU list, counters and slot[HBM] are guarded by the engine lock
 * (e->lock). load_lock serialises loads and the pool's creation (lock order: load_lock ->
 * lock); copies, reads from nvme/disk and CUDA calls run without e->lock. Because loads are
 * serialised, every published copy has its fence: a load that reuses a copy makes its stream
 * wait on that fence, and a load that evicts a copy makes its stream wait on the evicted
 * copy's fence before overwriting the slab.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "engine/internal.h"
#include "gpu/gpu.h"
#include "gpu/paged.h"

typedef struct hbm_fence {
    void *ev;      /* cudaEvent_t recorded after the copies of one load */
    uint32_t refs; /* meta entries and in-flight waits holding it */
} hbm_fence;

typedef struct hbm_meta {
    kvt_ns *ns;        /* NULL: free */
    radix_node *node;  /* holds the block; NULL: the block left the index while pinned */
    uint64_t depth;
    uint32_t pins;
    bool fresh;        /* allocated by a load in flight, not yet published */
    hbm_fence *fence;
    util_list lru;     /* on hbm_tier.lru while published and unpinned */
} hbm_meta;

struct hbm_pins {
    size_t n, cap;
    int32_t ids[];
};

typedef struct hbm_tier {
    pthread_mutex_t load_lock;
    gpu_pool *pool;
    kvt_layout layout;
    uint64_t bytes, block_bytes;
    uint32_t num_blocks;
    int device;
    hbm_meta *meta;
    util_list lru;
    uint64_t used, pinned, loads, load_bytes, hits, evictions;
} hbm_tier;

/* ---------------------------------------------------------------- options, open, close */

KVT_EXPORT int kvt_options_set_hbm_bytes(kvt_options *o, uint64_t bytes, int required)
{
    if (!o)
        return -EINVAL;
    o->hbm_bytes = bytes;
    o->hbm_required = !!required;
    return 0;
}

int hbm_open(kvt_engine *e, const kvt_options *o)
{
    e->hbm = NULL;
    e->hbm_state = 0;
    if (!o->hbm_bytes)
        return 0;
    if (o->simulate || gpu_device_count() <= 0) {
        if (o->hbm_required)
            return -ENODEV;
        e->hbm_state = 2;
        return 0;
    }
    hbm_tier *h = util_calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    int rc = pthread_mutex_init(&h->load_lock, NULL);
    if (rc) {
        util_free(h);
        return -rc;
    }
    h->bytes = o->hbm_bytes;
    util_list_init(&h->lru);
    e->hbm = h;
    e->hbm_state = 1;
    return 0;
}

static void fence_unref(hbm_fence *f)
{
    if (f && --f->refs == 0) {
        gpu_event_destroy(f->ev);
        util_free(f);
    }
}

void hbm_close(kvt_engine *e)
{
    hbm_tier *h = e->hbm;
    if (!h)
        return;
    if (h->pool) {
        gpu_stream_sync(NULL); /* copies the caller never waited for */
        for (uint32_t i = 0; i < h->num_blocks; i++)
            if (h->meta[i].ns)
                fence_unref(h->meta[i].fence);
        gpu_pool_destroy(h->pool);
    }
    util_free(h->meta);
    pthread_mutex_destroy(&h->load_lock);
    util_free(h);
    e->hbm = NULL;
}

static bool layout_eq(const kvt_layout *a, const kvt_layout *b)
{
    return a->layers == b->layers && a->kv_heads == b->kv_heads && a->head_dim == b->head_dim &&
           a->dtype == b->dtype && a->block_tokens == b->block_tokens;
}

/* The pool for ns's layout, created at the first call. load_lock held. */
static int pool_ready(hbm_tier *h, kvt_ns *ns)
{
    if (h->pool)
        return layout_eq(&h->layout, &ns->layout) ? 0 : KVT_EBADLAYOUT;
    uint64_t bb = ns->block_bytes, nb = h->bytes / bb;
    if (nb == 0)
        return -ENOSPC;
    if (nb > INT32_MAX)
        nb = INT32_MAX;
    hbm_meta *meta = util_calloc(nb, sizeof *meta);
    if (!meta)
        return -ENOMEM;
    for (uint64_t i = 0; i < nb; i++)
        util_list_init(&meta[i].lru);
    int rc = gpu_pool_create(&ns->layout, (uint32_t)nb, &h->pool);
    if (rc) {
        util_free(meta);
        h->pool = NULL;
        return rc;
    }
    gpu_current_device(&h->device);
    kvt_engine *e = ns->eng;
    pthread_mutex_lock(&e->lock);
    h->meta = meta;
    h->layout = ns->layout;
    h->block_bytes = bb;
    h->num_blocks = (uint32_t)nb;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

KVT_EXPORT int kvt_hbm_pool(kvt_ns *ns, kvt_hbm_pool_info *out)
{
    if (!ns || !out)
        return -EINVAL;
    hbm_tier *h = ns->eng->hbm;
    if (!h)
        return -ENODEV;
    pthread_mutex_lock(&h->load_lock);
    int rc = pool_ready(h, ns);
    if (rc == 0) {
        memset(out, 0, sizeof *out);
        out->base = gpu_pool_base(h->pool);
        out->block_bytes = h->block_bytes;
        out->num_blocks = h->num_blocks;
        out->device = h->device;
        out->layout = h->layout;
    }
    pthread_mutex_unlock(&h->load_lock);
    return rc;
}

/* ---------------------------------------------------------------- bookkeeping (lock held) */

static void meta_pin(hbm_tier *h, hbm_meta *m)
{
    if (m->pins++ == 0) {
        util_list_del(&m->lru);
        h->pinned++;
    }
}

/* Free pool block id (unpinned). */
static void meta_free(kvt_engine *e, hbm_tier *h, int32_t id)
{
    hbm_meta *m = &h->meta[id];
    util_list_del(&m->lru);
    fence_unref(m->fence);
    m->fence = NULL;
    m->ns = NULL;
    m->node = NULL;
    gpu_pool_free(h->pool, 1, &id);
    h->used--;
    e->tier_blocks[RADIX_TIER_HBM]--;
}

static void meta_unpin(kvt_engine *e, hbm_tier *h, int32_t id)
{
    hbm_meta *m = &h->meta[id];
    if (--m->pins)
        return;
    h->pinned--;
    if (!m->node) /* its block left the index meanwhile (cannot while a lease pins it) */
        meta_free(e, h, id);
    else
        util_list_add_tail(&h->lru, &m->lru);
}

void hbm_lease_release(kvt_lease *l)
{
    struct hbm_pins *p = l->hbm;
    if (!p)
        return;
    kvt_engine *e = l->ns->eng;
    for (size_t i = 0; i < p->n; i++)
        meta_unpin(e, e->hbm, p->ids[i]);
    util_free(p);
    l->hbm = NULL;
}

void hbm_block_released(kvt_ns *ns, radix_block *b)
{
    kvt_engine *e = ns->eng;
    hbm_tier *h = e->hbm;
    uint32_t id = b->slot[RADIX_TIER_HBM];
    if (!h || id == RADIX_NO_SLOT)
        return;
    b->slot[RADIX_TIER_HBM] = RADIX_NO_SLOT;
    hbm_meta *m = &h->meta[id];
    if (m->pins)
        m->node = NULL; /* freed at the last unpin */
    else
        meta_free(e, h, (int32_t)id);
}

void hbm_on_split(kvt_ns *ns, radix_node *upper)
{
    hbm_tier *h = ns->eng->hbm;
    if (!h || !h->meta)
        return;
    for (uint32_t i = 0; i < upper->n_blocks; i++) {
        uint32_t id = upper->blocks[i].slot[RADIX_TIER_HBM];
        if (id != RADIX_NO_SLOT)
            h->meta[id].node = upper;
    }
}

void hbm_stats(kvt_engine *e, kvt_stats *s)
{
    hbm_tier *h = e->hbm;
    s->hbm_state = (uint32_t)e->hbm_state;
    if (!h)
        return;
    s->hbm_capacity = (uint64_t)h->num_blocks * h->block_bytes;
    s->hbm_used = h->used * h->block_bytes;
    s->hbm_pinned_blocks = h->pinned;
    s->hbm_loads = h->loads;
    s->hbm_load_bytes = h->load_bytes;
    s->hbm_hits = h->hits;
    s->hbm_evictions = h->evictions;
    s->tier_capacity[KVT_TIER_HBM] = s->hbm_capacity;
    s->tier_used[KVT_TIER_HBM] = s->hbm_used;
}

/* Drop the least recently used unpinned copy of tenant tn; its fence (referenced) goes to
 * *wait for the stream to wait on before the slab is overwritten. 1 if one was dropped. */
static int evict_for(kvt_engine *e, hbm_tier *h, tenant *tn, hbm_fence **wait)
{
    for (util_list *it = h->lru.next; it != &h->lru; it = it->next) {
        hbm_meta *m = UTIL_CONTAINER_OF(it, hbm_meta, lru);
        if (m->ns->tn != tn)
            continue;
        int32_t id = (int32_t)(m - h->meta);
        radix_block *b = blk_at_depth(m->node, m->depth, NULL);
        if (b->slot[RADIX_TIER_HBM] == (uint32_t)id)
            b->slot[RADIX_TIER_HBM] = RADIX_NO_SLOT;
        *wait = m->fence;
        if (m->fence)
            m->fence->refs++;
        meta_free(e, h, id);
        h->evictions++;
        return 1;
    }
    return 0;
}

static int pins_reserve(kvt_lease *l, size_t more)
{
    struct hbm_pins *p = l->hbm;
    size_t need = (p ? p->n : 0) + more;
    if (p && need <= p->cap)
        return 0;
    size_t cap = p ? p->cap * 2 : 64;
    while (cap < need)
        cap *= 2;
    struct hbm_pins *q = util_realloc(p, sizeof *q + cap * sizeof(int32_t));
    if (!q)
        return -ENOMEM;
    if (!p)
        q->n = 0;
    q->cap = cap;
    l->hbm = q;
    return 0;
}

/* Address of a DRAM slot the GPU can read the whole block from, else NULL. */
static const void *arena_ptr(kvt_engine *e, kvt_ns *ns, uint32_t slot)
{
    if (slot == RADIX_NO_SLOT || !e->cuda_pinned || dram_slots_for(e->dram, ns->block_bytes) != 1)
        return NULL;
    return (const char *)dram_base(e->dram) + (uint64_t)slot * dram_slot_bytes(e->dram);
}

/* ---------------------------------------------------------------- load */

typedef struct load_new {
    size_t i;          /* block index in the lease */
    int32_t id;
    const void *src;   /* registered arena slot, or NULL: fetch through the read path */
} load_new;

static int load_locked(kvt_lease *l, size_t first, size_t n, int32_t *table, void *stream)
{
    kvt_ns *ns = l->ns;
    kvt_engine *e = ns->eng;
    hbm_tier *h = e->hbm;
    struct CUstream_st *st = stream;
    uint64_t bb = ns->block_bytes;
    int rc = pool_ready(h, ns);
    if (rc)
        return rc;
    if ((rc = pins_reserve(l, n)))
        return rc;
    load_new *nw = util_malloc(n * sizeof *nw);
    hbm_fence **waits = util_malloc(2 * n * sizeof *waits);
    const void **srcs = util_malloc(n * sizeof *srcs);
    void **dsts = util_malloc(n * sizeof *dsts);
    void *stage = NULL;
    size_t n_new = 0, n_wait = 0, n_dma = 0;
    size_t pins0 = l->hbm->n;
    if (!nw || !waits || !srcs || !dsts) {
        rc = -ENOMEM;
        goto out;
    }

    /* 1. under the lock: pin the resident copies first (so that making room for the rest
     * cannot evict them), then allocate (evicting) slabs for the others */
    pthread_mutex_lock(&e->lock);
    for (size_t k = 0; k < n; k++) {
        radix_block *b = blk_at_depth(l->deepest, first + k, NULL);
        if (b->flags & BLK_BAD) {
            rc = KVT_ECORRUPT;
            break;
        }
        table[k] = -1;
        if (b->slot[RADIX_TIER_HBM] != RADIX_NO_SLOT) {
            int32_t id = (int32_t)b->slot[RADIX_TIER_HBM];
            hbm_meta *m = &h->meta[id];
            meta_pin(h, m);
            if (m->fence) {
                m->fence->refs++;
                waits[n_wait++] = m->fence;
            }
            h->hits++;
            table[k] = id;
            l->hbm->ids[l->hbm->n++] = id;
        }
    }
    for (size_t k = 0; k < n && !rc; k++) {
        if (table[k] >= 0)
            continue;
        radix_node *node;
        radix_block *b = blk_at_depth(l->deepest, first + k, &node);
        int32_t id;
        {
            for (;;) {
                rc = gpu_pool_alloc(h->pool, 1, &id);
                if (rc != -ENOSPC)
                    break;
                hbm_fence *w = NULL;
                if (!evict_for(e, h, ns->tn, &w))
                    break;
                if (w)
                    waits[n_wait++] = w;
            }
            if (rc)
                break;
            hbm_meta *m = &h->meta[id];
            m->ns = ns;
            m->node = NULL; /* unpublished until the copy is enqueued */
            m->depth = first + k;
            m->fence = NULL;
            m->fresh = true;
            meta_pin(h, m);
            h->used++;
            e->tier_blocks[RADIX_TIER_HBM]++;
            nw[n_new].i = first + k;
            nw[n_new].id = id;
            nw[n_new].src = arena_ptr(e, ns, b->slot[RADIX_TIER_DRAM]);
            n_new++;
        }
        table[k] = id;
        l->hbm->ids[l->hbm->n++] = id;
    }
    pthread_mutex_unlock(&e->lock);
    if (rc)
        goto undo;

    /* 2. unlocked: order after copies this call depends on, then copy */
    for (size_t k = 0; k < n_wait && !rc; k++)
        rc = gpu_stream_wait_event(st, waits[k]->ev);
    for (size_t k = 0; k < n_new && !rc; k++)
        if (nw[k].src) {
            srcs[n_dma] = nw[k].src;
            dsts[n_dma++] = gpu_pool_block_ptr(h->pool, nw[k].id);
        }
    if (!rc && n_dma)
        rc = gpu_copy_blocks((const void *const *)srcs, (void *const *)dsts, (uint32_t)n_dma, bb,
                             GPU_XFER_AUTO, 0, st);
    for (size_t k = 0; k < n_new && !rc; k++) {
        if (nw[k].src)
            continue;
        /* not in a device-readable DRAM slot: the verified read path, then a pageable copy
         * (which returns once the staging buffer may be reused) */
        if (!stage && !(stage = util_malloc(bb))) {
            rc = -ENOMEM;
            break;
        }
        rc = tier_fetch(l, nw[k].i, stage);
        if (!rc)
            rc = gpu_memcpy(gpu_pool_block_ptr(h->pool, nw[k].id), stage, bb, st);
    }
    hbm_fence *f = NULL;
    if (!rc && n_new) {
        f = util_calloc(1, sizeof *f);
        if (!f)
            rc = -ENOMEM;
        else if ((rc = gpu_event_create(&f->ev)) || (rc = gpu_event_record(f->ev, st))) {
            gpu_event_destroy(f->ev);
            util_free(f);
            f = NULL;
        }
    }
    if (rc)
        goto undo;

    /* 3. publish */
    pthread_mutex_lock(&e->lock);
    for (size_t k = 0; k < n_new; k++) {
        radix_node *node;
        radix_block *b = blk_at_depth(l->deepest, nw[k].i, &node);
        hbm_meta *m = &h->meta[nw[k].id];
        b->slot[RADIX_TIER_HBM] = (uint32_t)nw[k].id;
        m->node = node;
        m->fresh = false;
        m->fence = f;
        f->refs++;
    }
    h->loads += n_new;
    h->load_bytes += n_new * bb;
    for (size_t k = 0; k < n_wait; k++)
        fence_unref(waits[k]);
    pthread_mutex_unlock(&e->lock);
    goto out;

undo:
    /* nothing of this call stays pinned; its unpublished slabs go back to the pool */
    pthread_mutex_lock(&e->lock);
    for (size_t k = pins0; k < l->hbm->n; k++) {
        int32_t id = l->hbm->ids[k];
        hbm_meta *m = &h->meta[id];
        if (m->fresh) { /* one of ours, never published (pinned by this call only) */
            m->fresh = false;
            m->pins = 0;
            h->pinned--;
            meta_free(e, h, id);
        } else {
            meta_unpin(e, h, id);
        }
    }
    l->hbm->n = pins0;
    for (size_t k = 0; k < n_wait; k++)
        fence_unref(waits[k]);
    pthread_mutex_unlock(&e->lock);
out:
    util_free(stage);
    util_free(nw);
    util_free(waits);
    util_free(srcs);
    util_free(dsts);
    return rc;
}

KVT_EXPORT int kvt_lease_load_hbm(kvt_lease *l, size_t first, size_t n, int32_t *table,
                                  void *stream)
{
    if (!l || (n && !table))
        return -EINVAL;
    if (first > l->n_blocks || n > l->n_blocks - first)
        return -ERANGE;
    hbm_tier *h = l->ns->eng->hbm;
    if (!h)
        return -ENODEV;
    if (n == 0)
        return 0;
    pthread_mutex_lock(&h->load_lock);
    int rc = load_locked(l, first, n, table, stream);
    pthread_mutex_unlock(&h->load_lock);
    return rc;
}

/* ---------------------------------------------------------------- per-layer gather */

static uint32_t dtype_bytes(kvt_dtype d)
{
    return d == KVT_DTYPE_FP32 ? 4 : d == KVT_DTYPE_FP8 ? 1 : 2;
}

/* Where each of blocks [first, first + n) of a lease is read from by the layer copies: its
 * HBM copy if this lease loaded it, else its DRAM slot in the registered arena, else it is
 * loaded into HBM (with an HBM tier) or promoted into DRAM first. */
static int layer_sources(kvt_lease *l, size_t first, size_t n, void *stream, const void **src)
{
    kvt_ns *ns = l->ns;
    kvt_engine *e = ns->eng;
    hbm_tier *h = e->hbm;
    int rc = 0;
    for (size_t k = 0; k < n && !rc; k++) {
        size_t i = first + k;
        bool hbm = false;
        if (h) {
            pthread_mutex_lock(&e->lock);
            hbm = blk_at_depth(l->deepest, i, NULL)->slot[RADIX_TIER_HBM] != RADIX_NO_SLOT;
            pthread_mutex_unlock(&e->lock);
        }
        /* the lease's snapshot of a DRAM slot stays valid while the lease pins the block */
        src[k] = hbm ? NULL : arena_ptr(e, ns, l->blocks[i].slot[RADIX_TIER_DRAM]);
        if (src[k])
            continue;
        if (h) { /* resident (pin it for this lease) or not host-readable: through HBM */
            int32_t id;
            if (!(rc = kvt_lease_load_hbm(l, i, 1, &id, stream)))
                src[k] = gpu_pool_block_ptr(h->pool, id);
        } else if (!(rc = tier_fetch(l, i, NULL))) { /* promote into DRAM */
            src[k] = arena_ptr(e, ns, l->blocks[i].slot[RADIX_TIER_DRAM]);
            if (!src[k])
                rc = e->cuda_pinned ? -ENOSPC : -EINVAL;
        }
    }
    return rc;
}

/* kvt_lease_gather_layer (SM kernel, heads outer) and kvt_lease_copy_layer (copy engines,
 * tokens outer): the same checks and sources. */
static int layer_copy(kvt_lease *l, size_t first, size_t n, uint32_t layer, void *k_dst,
                      void *v_dst, uint64_t head_stride, uint32_t ctas, void *stream, bool ce)
{
    if (!l || !k_dst || !v_dst)
        return -EINVAL;
    if (first > l->n_blocks || n > l->n_blocks - first)
        return -ERANGE;
    kvt_ns *ns = l->ns;
    kvt_engine *e = ns->eng;
    const kvt_layout *L = &ns->layout;
    if (layer >= L->layers || n > UINT32_MAX)
        return -EINVAL;
    if (e->simulate || gpu_device_count() <= 0)
        return -ENODEV;
    if (n == 0)
        return 0;
    const void **src = util_malloc(n * sizeof *src);
    if (!src)
        return -ENOMEM;
    int rc = layer_sources(l, first, n, stream, src);
    if (!rc) {
        gpu_gather_params p;
        memset(&p, 0, sizeof p);
        p.layers = L->layers;
        p.layer = layer;
        p.block_tokens = L->block_tokens;
        p.kv_heads = L->kv_heads;
        p.head_dim = L->head_dim;
        p.elem_bytes = dtype_bytes(L->dtype);
        p.k_dst = k_dst;
        p.v_dst = v_dst;
        p.head_stride = head_stride;
        p.ctas = ctas;
        rc = ce ? gpu_copy_layer(src, (uint32_t)n, &p, stream)
                : gpu_gather_layer(src, (uint32_t)n, &p, stream);
    }
    util_free(src);
    return rc;
}

KVT_EXPORT int kvt_lease_gather_layer(kvt_lease *l, size_t first, size_t n, uint32_t layer,
                                      void *k_dst, void *v_dst, uint64_t head_stride,
                                      uint32_t ctas, void *stream)
{
    return layer_copy(l, first, n, layer, k_dst, v_dst, head_stride, ctas, stream, false);
}

KVT_EXPORT int kvt_lease_copy_layer(kvt_lease *l, size_t first, size_t n, uint32_t layer,
                                    void *k_dst, void *v_dst, void *stream)
{
    return layer_copy(l, first, n, layer, k_dst, v_dst, 0, 0, stream, true);
}

/* ---------------------------------------------------------------- attention launchers */

static int attn_params(const kvt_attn_args *a, gpu_attn_params *p)
{
    if (!a)
        return -EINVAL;
    memset(p, 0, sizeof *p);
    p->dtype = a->layout.dtype;
    p->num_qo_heads = a->num_qo_heads;
    p->num_kv_heads = a->layout.kv_heads;
    p->head_dim = a->layout.head_dim;
    p->block_tokens = a->layout.block_tokens;
    p->layers = a->layout.layers;
    p->layer = a->layer;
    p->num_blocks = a->num_blocks;
    p->num_seqs = a->num_seqs;
    p->sm_scale = a->sm_scale;
    p->q = a->q;
    p->out = a->out;
    p->pool = a->pool;
    p->qo_indptr = a->qo_indptr;
    p->kv_indptr = a->kv_indptr;
    p->kv_indices = a->kv_indices;
    p->kv_lens = a->kv_lens;
    return 0;
}

static uint32_t total_q(const kvt_attn_args *a)
{
    return a->qo_indptr ? a->total_q : a->num_seqs;
}

KVT_EXPORT int kvt_attn_workspace_bytes(const kvt_attn_args *a, size_t *bytes)
{
    gpu_attn_params p;
    gpu_attn_plan plan;
    if (!bytes || attn_params(a, &p))
        return -EINVAL;
    int rc = gpu_attn_plan_make(&p, total_q(a), a->qo_indptr ? a->max_q_len : 1, a->max_kv_len,
                                0, &plan);
    if (rc == 0)
        *bytes = plan.workspace_bytes;
    return rc;
}

KVT_EXPORT int kvt_attn_run(const kvt_attn_args *a, void *workspace, size_t workspace_bytes,
                            void *stream)
{
    gpu_attn_params p;
    gpu_attn_plan plan;
    if (attn_params(a, &p) || (workspace_bytes && !workspace))
        return -EINVAL;
    uint32_t tq = total_q(a), mq = a->qo_indptr ? a->max_q_len : 1;
    int rc = gpu_attn_plan_make(&p, tq, mq, a->max_kv_len, 0, &plan);
    if (rc == 0 && plan.workspace_bytes > workspace_bytes)
        rc = gpu_attn_plan_make(&p, tq, mq, a->max_kv_len, 1, &plan); /* no split-K */
    if (rc)
        return rc;
    return gpu_attn_run(&p, &plan, workspace, workspace_bytes, stream);
}
