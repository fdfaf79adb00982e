/*
 * internal.h — the engine's shared state, split over engine.c (the facade: options, names,
 * match/read/put/remove, stats), tiering.c (tier bookkeeping, victim search, write-through,
 * demotion, reads from nvme/disk, prefetch) and restart.c (warm restart from the catalog).
 *
 * Ownership:  kvt_engine ─┬─ dram_tier (arena, slots)
 *                         ├─ nvme_tier, disk_tier, catalog    (only with a data directory)
 *                         ├─ tenants: name, quotas, bytes held, LRU lists (one per tier)
 *                         ├─ namespaces: id, name, tenant*, layout, radix_tree
 *                         ├─ the write-through thread (flusher) and the prefetch thread
 *                         └─ quarantine: nvme slots / disk records whose catalog delete is
 *                            not yet durable (freed only after it is)
 *
 * Locks, in the only order they may nest:  ns_lock -> lock;  disk_rw -> lock (only in disk
 * compaction's move callback, engine/compact.c); disk_rw and io_pool.lock are never waited
 * for with `lock` held (the flusher's compaction check only try-locks disk_rw).
 *  - lock (the engine mutex) guards the index, DRAM/nvme allocators, tenants, the lists, the
 *    quarantine and every counter that is not atomic. It is never held across I/O, a byte
 *    copy or a catalog call.
 *  - ns_lock serialises kvt_ns_open (its catalog write and a lazy nvme open run under it).
 *  - disk_rw: shared for disk_get, exclusive for every other disk_* call (disk.h).
 * Work on a block outside `lock` pins the node path root..node (pins += 1 each, as a lease
 * does; a split's upper node copies the pins) and finds the block again after relocking by
 * its depth: the block at depth d is in the deepest pinned node or one of its ancestors
 * (splits keep the lower part's identity and insert the upper part above it).
 *
 * Block state (radix_block.flags, BLK_*; the epoch of a dirty block in bits 8..31):
 *   published --(put)--> DIRTY --(flusher claims)--> WT --(bytes durable, catalogued)-->
 *   persisted (slot[NVME] or slot[DISK] set).  A failed write-through leaves NOPERSIST
 *   (DRAM only, dropped by DRAM eviction without waiting). PROMO: a read from nvme/disk is
 *   in flight (readers of that block wait on promo_cv). BAD: failed verification: hidden
 *   from matches, dropped with its descendants once unpinned.
 */
#ifndef KVT_ENGINE_INTERNAL_H
#define KVT_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "evict/lru.h"
#include "evict/reuse.h"
#include "io/io.h"
#include "kvtier/kvtier.h"
#include "radix/radix.h"
#include "tiers/catalog.h"
#include "tiers/disk.h"
#include "tiers/dram.h"
#include "tiers/nvme.h"
#include "util/util.h"

#define KVT_EXPORT __attribute__((visibility("default")))

/* radix_block.flags */
#define BLK_DIRTY 0x01u     /* published, queued for write-through */
#define BLK_WT 0x02u        /* write-through in flight (node path pinned) */
#define BLK_NOPERSIST 0x04u /* write-through failed or copy dropped: DRAM only, not retried */
#define BLK_PROMO 0x08u     /* a read from nvme/disk is in flight */
#define BLK_BAD 0x10u       /* failed verification: hidden, dropped when unpinned */
#define BLK_MOVING 0x20u    /* nvme -> disk move in flight (node path pinned) */
#define BLK_DEMOTE 0x40u    /* drain policy: free the DRAM copy once persisted (policy.c) */
#define BLK_EPOCH_SHIFT 8
#define BLK_EPOCH_MASK 0xffffffu

/* radix_node.eflags */
#define NODE_HAS_BAD 0x1u /* some block is BLK_BAD */

#define WT_EPOCHS 64u /* flush epochs that may be outstanding at once */

struct kvt_options {
    uint64_t dram_bytes;
    uint64_t dram_slot_bytes;
    kvt_hugepages hugepages;
    int cuda_pin;
    /* persistence (issue 3) */
    char *data_dir;
    char *tier_path[RADIX_TIERS];
    uint64_t tier_capacity[RADIX_TIERS];
    uint64_t tier_bw[RADIX_TIERS];
    unsigned io_depth;
    int force_pool;
    int no_direct;
    int simulate;
    uint32_t backpressure_ms;
    uint32_t persist_delay_ms; /* kvt_options_set_persist_delay_ms */
    int wt_nice;               /* kvt_options_set_background_nice */
    uint32_t wt_batch;
    /* the HBM tier (engine/hbm.c) */
    uint64_t hbm_bytes;
    int hbm_required;
    /* placement policy (issue 4, engine/policy.c) */
    int policy;                         /* evict_policy: 0 = lru */
    int have_model;
    int capacity_priced;                /* drain: 1 = hold cost per byte-second (policy.c) */
    kvt_model_desc model;               /* the model whose blocks are cached (recompute cost) */
    double tier_read_bw[RADIX_TIERS];   /* cost-model bandwidths, bytes/s; 0: default */
    double tier_write_bw[RADIX_TIERS];
    kvt_log_fn log_fn; /* kvt_options_set_log: installed with io_set_log at open */
    void *log_arg;
    struct remote_cfg *rcfg; /* the remote tier (engine/remote.c); not copied by options_dup */
    int dram_prefault; /* kvt_options_set_dram_prefault: fault the arena in at open */
};

typedef struct tenant {
    char *name;
    uint64_t quota; /* DRAM bytes, 0 = no limit */
    uint64_t used;  /* DRAM bytes held (whole slots) */
    uint64_t tquota[RADIX_TIERS]; /* nvme/disk quotas, bytes, 0 = none */
    uint64_t tused[RADIX_TIERS];  /* nvme: slots * slot_bytes; disk: padded record bytes */
    uint64_t unpersisted;         /* blocks DIRTY or WT: the write-through can still save */
    evict_lru lru;                /* DRAM-only engines: leaf-first LRU of nodes */
    util_list tl[RADIX_TIERS];    /* per tier: nodes with a copy there, LRU first */
    struct tenant *next;
} tenant;

struct kvt_ns {
    kvt_engine *eng;
    char *name;
    tenant *tn;
    kvt_layout layout;
    unsigned flags;
    uint32_t id;          /* catalog namespace id */
    uint32_t bt;          /* tokens per block (1 for key namespaces' accounting) */
    uint32_t bu;          /* radix units per block (bt, or 2 in a key namespace) */
    uint64_t block_bytes; /* bytes of one block in the documented block layout */
    radix_tree *tree;
    struct kvt_ns *next;
};

/* A pool of io contexts for reader threads (an io_ctx has one owner at a time). */
typedef struct io_pool {
    pthread_mutex_t lock;
    io_ctx **free;
    unsigned n_free, cap;
    io_opts opts;
    io_fault_fn fault;
    void *fault_arg;
} io_pool;

/* A quarantined copy: its catalog delete must be durable before its space is reused. */
typedef struct quar {
    catalog_del del;
    int tier;
    uint64_t loc; /* nvme slot or disk_loc */
} quar;

typedef struct prefetch_job {
    kvt_lease *lease;
    struct prefetch_job *next;
} prefetch_job;

struct kvt_engine {
    pthread_mutex_t lock;
    pthread_mutex_t ns_lock;
    dram_tier *dram;
    int cuda_pinned;
    struct hbm_tier *hbm; /* engine/hbm.c; NULL without an HBM tier */
    int hbm_state;        /* kvt_stats.hbm_state */
    tenant *tenants;
    kvt_ns *nss;
    uint64_t clock; /* logical access clock: one tick per match or put */
    uint64_t n_ns;
    uint64_t lookups, lookup_tokens, hit_tokens, puts, blocks_stored, blocks_evicted;
    uint64_t blocks_cached, leases_open;
    atomic_uint_fast64_t bytes_read, bytes_written;

    /* ---- tiers (tiered != 0 only with a data directory) */
    int tiered;
    int simulate;
    kvt_options *opts; /* a private copy */
    catalog *cat;
    nvme_tier *nvme;   /* opened once the slot size is known */
    disk_tier *disk;
    pthread_rwlock_t disk_rw;
    char *nvme_dir, *disk_dir, *cat_dir;
    uint64_t nvme_slot_bytes;
    uint32_t next_ns_id;
    io_ctx *wt_io;   /* the flusher's context (nvme writes, demotion reads) */
    io_pool rd_pool; /* readers' contexts */
    int io_backend;
    /* disk bandwidth cap (io/ caps nvme): token bucket charged per record */
    pthread_mutex_t disk_bw_lock;
    double disk_bw_tokens;
    uint64_t disk_bw_last_ns;
    /* disk locations: radix_block.slot[DISK] is an index into dlocs */
    disk_loc *dlocs;
    uint32_t n_dlocs, cap_dlocs;
    uint32_t *dloc_free;
    uint32_t n_dloc_free;
    /* write-through */
    pthread_t flusher, prefetcher;
    int threads_started;
    int stop;
    util_list dirty;          /* nodes with n_dirty > 0, oldest first */
    pthread_cond_t wt_work;   /* flusher: work arrived */
    pthread_cond_t wt_done;   /* progress: blocks persisted or given up, quarantine freed */
    pthread_cond_t promo_cv;  /* a BLK_PROMO block finished */
    uint64_t epoch, epoch_base;
    uint64_t epoch_pending[WT_EPOCHS];
    uint64_t wt_errors;
    int wt_last_err;
    int wt_busy;   /* > 0: the flusher starts no batch (tests swapping fault hooks) */
    int wt_urgent; /* > 0: puts wait for DRAM: the write-through ignores its delay */
    int wt_active; /* the flusher is running a batch */
    /* quarantine */
    quar *quar;
    size_t n_quar, cap_quar;
    /* prefetch */
    prefetch_job *pf_head, *pf_tail;
    pthread_cond_t pf_cv;
    int pf_busy;
    /* stats (under lock unless atomic) */
    uint64_t t_reads[RADIX_TIERS], t_writes[RADIX_TIERS];
    uint64_t t_bytes_read[RADIX_TIERS], t_bytes_written[RADIX_TIERS];
    uint64_t tier_blocks[RADIX_TIERS];
    uint64_t demotions, promotions, checksum_failures, io_errors, blocks_dropped_bad;
    uint64_t persisted, flushes, wt_failures, restored, restore_dropped;

    /* ---- placement policy (engine/policy.c); cm tiers: cm_idx[kvt tier] or -1 */
    int policy; /* evict_policy */
    evict_costmodel cm;
    evict_params pp;
    evict_model em;
    int cm_idx[RADIX_TIERS];
    int has_ttl;              /* some put gave a TTL: matches check deadlines */
    uint64_t expired, wt_skipped, placed_low;
    /* ---- simulation (engine/sim.c): accounting-only nvme slots and disk bytes */
    uint64_t sim_nvme_slots, sim_nvme_fresh, sim_nvme_used;
    uint32_t *sim_nvme_free;
    uint64_t sim_nvme_nfree, sim_nvme_capfree;
    uint64_t sim_disk_cap, sim_disk_used;
    /* ---- disk compaction (engine/compact.c): counters under lock; last_* flusher-only */
    uint64_t compactions, compact_moved, compact_refused;
    uint64_t compact_last_file, compact_last_live;
    int compacting;    /* a compaction runs (flusher or kvt__engine_compact) */
    int quar_draining; /* a quarantine drain has the lock dropped */
    int log_hooked; /* this engine installed the process's log hook (kvt_options_set_log) */
    struct eng_remote *rem; /* the shared remote tier (engine/remote.c), or NULL */
};

/* A lease pins `deepest` and all its ancestors (pins += 1 each) and snapshots the locations
 * of its blocks, which cannot change while pinned (a promotion may add a DRAM copy: the
 * snapshot is refreshed by the reader). Blocks [0, n_blocks) are at depths 0.. n_blocks-1. */
struct kvt_lease {
    kvt_ns *ns;
    radix_node *deepest;
    size_t n_blocks;
    int internal; /* a prefetch's lease: not counted in leases_open */
    struct hbm_pins *hbm; /* HBM copies this lease pinned (engine/hbm.c), or NULL */
    radix_block blocks[]; /* [n_blocks], path order */
};

/* ---- engine.c */
void touch_path(kvt_ns *ns, const radix_path *p, bool hit);
int put_units(kvt_ns *ns, const uint32_t *units, size_t nb, const void *const *blocks,
              double ttl_s, size_t *stored);
int match_units_lease(kvt_ns *ns, const uint32_t *units, size_t nb, size_t *matched,
                      kvt_lease **lease_out, int internal);
void lease_release_locked(kvt_lease *l);
int check_name(const char *s);
char *dup_str(const char *s);
tenant *tenant_get(kvt_engine *e, const char *name);
int ns_create_locked(kvt_engine *e, const char *name, const char *tenant_name,
                     const kvt_layout *layout, unsigned flags, uint32_t id, kvt_ns **out);
/* One DRAM allocation for a block of ns within the tenant's quota (lock held): 0 (slot set,
 * charged to the tenant), -ENOSPC (tier full or quota reached: evict and retry), or another
 * dram_alloc error. */
int dram_alloc_once(kvt_ns *ns, uint32_t *slot);

/* ---- tiering.c */
uint64_t dram_block_bytes(const kvt_ns *ns); /* whole DRAM slots of one block */
void blk_add_copy(kvt_ns *ns, radix_node *n, radix_block *b, int tier, uint32_t slot);
void blk_release_all(kvt_ns *ns, radix_node *n, radix_block *b); /* every copy; lock held */
void blk_drop_copy(kvt_ns *ns, radix_node *n, radix_block *b, int tier); /* lock held */
void node_tiers_unlink(radix_node *n);
void on_node_split(void *ctx, radix_node *upper, radix_node *lower);
radix_block *blk_at_depth(radix_node *deepest, uint64_t depth, radix_node **node);
void path_pin(radix_node *n);
void path_unpin(radix_node *n);
int tiered_alloc_dram(kvt_ns *ns, uint32_t *slot, int may_wait); /* lock held */
int tiered_evict_dram(kvt_engine *e, tenant *tn, int allow_drop); /* lock held */
void wt_enqueue(kvt_ns *ns, radix_node *leaf, uint32_t first, uint32_t n); /* lock held */
long remove_blocks(kvt_ns *ns, radix_node *n, uint32_t from); /* lock held */
/* kvt_replace_key in place: if n is an unpinned, published one-block leaf with nothing in
 * flight, release its block's copies (as a removal does) and its history, and make it
 * pending for the new bytes: 1; else 0 (unchanged). Lock held. */
int reuse_leaf(kvt_ns *ns, radix_node *n);
void drop_bad_locked(kvt_ns *ns, radix_node *deepest);
int tiers_open(kvt_engine *e);          /* at engine open, no lock */
int tiers_nvme_ready(kvt_engine *e);    /* once the DRAM slot size is known; ns_lock held */
int tiers_start(kvt_engine *e);         /* threads */
int tiers_close(kvt_engine *e);         /* stop threads, flush, close */
int tier_fetch(kvt_lease *l, size_t i, void *dst); /* block i from wherever it is */
unsigned tiers_nvme_make_room(kvt_engine *e, tenant *tn, unsigned want); /* lock held */
uint64_t tiers_disk_make_room(kvt_engine *e, tenant *tn, uint64_t bytes); /* lock held */
int prefetch_units(kvt_ns *ns, const uint32_t *units, size_t nb);
int engine_flush(kvt_engine *e);
int dloc_get(kvt_engine *e, disk_loc loc, uint32_t *h); /* lock held */
int catalog_status(int rc);
uint64_t realtime_ns(void);

/* ---- policy.c */
void policy_init(kvt_engine *e, const kvt_options *o);
double policy_now_s(const kvt_engine *e);
void policy_touch(kvt_ns *ns, radix_node *n, double now_s); /* lock held */
void policy_block(const kvt_ns *ns, const radix_node *n, uint32_t j, evict_block *out);
/* lfu/drain: the best victim among the first few evictable nodes at the stale end of the
 * tenant's list of tier t (t = -1: the DRAM-only engine's tn->lru); NULL if none. */
radix_node *policy_pick(kvt_engine *e, tenant *tn, int t, int (*ok)(radix_node *n));
/* policy_pick over `window` ok nodes (drain's DRAM victims: POLICY_DRAM_WINDOW). */
radix_node *policy_pick_n(kvt_engine *e, tenant *tn, int t, int (*ok)(radix_node *n),
                          unsigned window);
#define POLICY_DRAM_WINDOW 16u
void policy_put(kvt_ns *ns, radix_node *leaf, uint32_t n, double ttl_s); /* lock held */
void policy_cut_expired(kvt_ns *ns, radix_path *p, int drop); /* lock held */

/* ---- sim.c */
int sim_open(kvt_engine *e);
void sim_close(kvt_engine *e);
int sim_nvme_alloc(kvt_engine *e, tenant *tn, uint32_t *slot);
int sim_tier_full(kvt_engine *e, int t); /* 1: no free simulated slot/byte in nvme/disk */
void sim_nvme_free(kvt_engine *e, uint32_t slot);
int sim_disk_alloc(kvt_engine *e, tenant *tn, uint64_t bytes, uint32_t *h);
void sim_persist(kvt_ns *ns, radix_node *leaf, uint32_t first, uint32_t n); /* lock held */
int sim_read(kvt_lease *l, size_t first, size_t n);
void sim_stats(kvt_engine *e, kvt_stats *s); /* lock held */

/* ---- hbm.c (the HBM tier; every function is a no-op / -ENODEV without one) */
int hbm_open(kvt_engine *e, const kvt_options *o); /* at engine open */
void hbm_close(kvt_engine *e);
void hbm_lease_release(kvt_lease *l);                   /* lock held: unpin its copies */
void hbm_block_released(kvt_ns *ns, radix_block *b);    /* lock held: block leaves the index */
void hbm_on_split(kvt_ns *ns, radix_node *upper);       /* lock held: blocks moved to upper */
void hbm_stats(kvt_engine *e, kvt_stats *s);            /* lock held */

/* ---- restart.c */
int restart_namespaces(kvt_engine *e); /* ns_lock held */
int restart_blocks(kvt_engine *e);     /* ns_lock held */

/* ---- remote.c (the shared remote tier, issue 9; no-ops without one) */
void eremote_opts_free(kvt_options *o);
int eremote_open(kvt_engine *e, const kvt_options *o); /* at engine open */
void eremote_close(kvt_engine *e);                      /* at close: drain queue, stop thread */
void eremote_on_put(kvt_ns *ns, radix_node *leaf, uint32_t n, const uint32_t *units); /* lock */
void eremote_fill(kvt_ns *ns, const uint32_t *units, size_t nb); /* before a leasing match */
void eremote_stats(kvt_engine *e, kvt_stats *s);
uint64_t eremote_ns_id(const kvt_ns *ns); /* cluster-wide: XXH3 of name, tenant, layout */

#endif
