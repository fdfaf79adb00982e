/*
 * an.h — the analytics module's internal interface (`kvtier analyze`). Prefix: an_.
 *
 * The module sits above the engine (DESIGN.md §5): it drives a kvtier engine through the
 * public API (include/kvtier/kvtier.h) only. The offline bounds (Belady) and the cost model
 * come from evict/ through two includes marked "layering" until kvtier.h exports them.
 *
 * Data flow:
 *
 *   JSONL file --an_trace_load--> an_trace (all requests in memory, sorted by time)
 *        --an_replay(cfg)--> an_result (counts, miss classes, tiers, reuse, cost, tenants)
 *        --an_sweep / an_multinode--> capacity curves, multi-node hit rates
 *   (gen_trace.py writes Mooncake-shaped test traces of any size from a seed)
 *        --an_report_{text,json,html}--> terminal tables, JSON, a self-contained HTML file
 *
 * Trace layout. Every request's block keys live in one array, request r owning
 *   keys[r.keys_off .. r.keys_off + r.n_blocks)          [n_blocks] uint64 block keys
 * and, for token traces, its tokens in
 *   tokens[r.tok_off .. r.tok_off + r.input_tokens)      [input_tokens] uint32 token ids
 * Block i of a request covers tokens [i*bt, min((i+1)*bt, input_tokens)); the last block is
 * partial when input_tokens is not a multiple of bt (r.last_tokens < bt). Only whole blocks
 * are cached (DESIGN.md §2), so a partial block is never a hit; its key (token traces: 0,
 * unused) is never stored.
 *
 * Thread safety: one thread runs an analysis, except that an_sweep_run runs its independent
 * replays (one engine each) on cfg->threads threads; the trace is read-only meanwhile.
 * Nothing here prints to stdout except the report functions, which write to the FILE they
 * are given.
 */
#ifndef KVT_ANALYTICS_AN_H
#define KVT_ANALYTICS_AN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kvtier/kvtier.h"

/* The engine's data-free simulation API (engine/, being added): the build defines
 * KVT_AN_HAVE_SIM=1 when kvtier.h declares kvt_options_set_simulate, kvt_engine_set_clock,
 * kvt_lease_block_tier and kvt_options_set_tier (analytics/CMakeLists.txt checks). Without
 * it the replay runs a real DRAM engine over a tiny layout and scales capacities to blocks. */
#ifndef KVT_AN_HAVE_SIM
#define KVT_AN_HAVE_SIM 0
#endif

/* Tiers as reported (the order of kvt_tier and of the cost model's tier[]). */
enum { AN_HBM = 0, AN_DRAM = 1, AN_NVME = 2, AN_DISK = 3, AN_TIERS = 4 };
extern const char *const an_tier_name[AN_TIERS];

/* Why a block missed (DESIGN: a block hits only if every block before it in its request
 * hit; the blocks after the first miss of a request are misses of the class of their own). */
typedef enum an_miss {
    AN_MISS_FIRST = 0,   /* first use: never requested before in this namespace */
    AN_MISS_CAPACITY,    /* requested before, not expired, but not cached: evicted (or never
                            admitted) for capacity, or an earlier block of the request was */
    AN_MISS_TTL,         /* requested before, but its TTL ran out since its last use */
    AN_MISS_PARTIAL,     /* the request's final partial block: only whole blocks are cached */
    AN_MISS_OTHER_NS,    /* first use in this namespace, but another tenant's namespace used
                            the same block (same key) before: a hit if namespaces were shared */
    AN_MISS_N
} an_miss;
extern const char *const an_miss_name[AN_MISS_N];

typedef enum an_format { AN_FMT_AUTO = 0, AN_FMT_MOONCAKE, AN_FMT_TOKENS, AN_FMT_LOG } an_format;

/* ---------------------------------------------------------------- trace */

typedef struct an_req {
    uint64_t ts_ms;         /* arrival, ms from the trace's start */
    uint64_t input_tokens;  /* prompt tokens */
    uint64_t keys_off;      /* into an_trace.keys */
    uint64_t tok_off;       /* into an_trace.tokens (token traces) */
    int64_t ttl_ms;         /* TTL given with this request (log "ttl_s"), -1: none */
    uint32_t n_blocks;      /* blocks, the final partial one included */
    uint32_t last_tokens;   /* tokens of the final block, 1..bt */
    uint32_t output_tokens;
    uint32_t tenant;        /* index into an_trace.tenants */
    uint32_t ns;            /* index into an_trace.ns_name / ns_tenant */
    uint32_t line;          /* line number in the input file (1-based) */
    int32_t obs_matched[AN_TIERS]; /* log "matched": blocks per tier the service saw; -1 */
} an_req;

typedef struct an_trace {
    an_format format;       /* the format read (never AUTO after a load) */
    int keyed;              /* 1: block keys are the identity (Mooncake, logs): KVT_NS_KEYS */
    uint32_t bt;            /* tokens per block */
    an_req *req;
    size_t n_req, cap_req;
    uint64_t *keys;
    size_t n_keys, cap_keys;
    uint32_t *tokens;
    size_t n_tokens, cap_tokens;
    char **tenants;         /* tenant names */
    size_t n_tenants;
    char **ns_name;         /* namespace (model) names; a namespace is (name, tenant) */
    uint32_t *ns_tenant;
    size_t n_ns;
    size_t lines, bad_lines; /* lines read, lines skipped as malformed */
} an_trace;

typedef struct an_load_opts {
    an_format format;       /* AUTO: decided by the first valid line */
    uint32_t block_tokens;  /* 0: 512 for Mooncake and logs, 16 for token traces */
    int strict;             /* 1: the first malformed line fails the load */
    FILE *errs;             /* where malformed lines are reported (stderr) */
    int no_fast;            /* 1: every line through jansson (tests: the fast path agrees) */
} an_load_opts;

/* Read a JSONL trace. Returns 0; -ENOENT/-errno (open/read); -EINVAL (strict and a malformed
 * line, or no valid request); -ENOMEM. Malformed lines are reported as "file:line: why" and
 * skipped. The trace is sorted by timestamp (stable). Free with an_trace_free. */
int an_trace_load(const char *path, const an_load_opts *o, an_trace *t);
void an_trace_free(an_trace *t);

/* ---------------------------------------------------------------- configuration */

typedef enum an_policy { AN_POL_LRU = 0, AN_POL_LFU, AN_POL_DRAIN, AN_POL_N } an_policy;
extern const char *const an_policy_name[AN_POL_N];
/* 1 if the engine implements the policy (lru always; lfu and drain in simulation mode). */
int an_policy_in_engine(an_policy p);

typedef enum an_tenant_mode {
    AN_TENANT_POOL = 0,  /* one engine tenant: per-tenant namespaces share one LRU pool */
    AN_TENANT_QUOTA,     /* one engine tenant per trace tenant, each quota capacity/n */
} an_tenant_mode;

typedef struct an_model {
    const char *name;       /* "llama3-8b" */
    uint64_t kv_bytes_per_token;
    double active_params;
    uint32_t layers, hidden;
} an_model;
int an_model_lookup(const char *name, an_model *m); /* 0; -ENOENT */

typedef struct an_config {
    an_model model;
    uint64_t cap[AN_TIERS];  /* bytes of each tier (modeled layout); cap[AN_HBM] unused */
    an_policy policy;
    int64_t ttl_ms;          /* default TTL of every block, -1: none */
    an_tenant_mode tenant_mode;
    uint32_t nodes;          /* multi-node simulation: N nodes (0: skip) */
    uint64_t seed;           /* random routing */
    size_t top;              /* most shared prefixes to list */
    uint32_t sweep_points;   /* capacity points (0: skip the sweep) */
    uint32_t threads;        /* sweep threads (0: 2 when there are 2+ CPUs, else 1) */
    int load_all;            /* 1: every hit is loaded whatever its tier ("always load", the
                              * reference); 0: the engine's load plan (evict_plan_match) */
    double bw[AN_TIERS];     /* read and write bandwidth of nvme/disk for the cost model and
                              * the plan, bytes/s; 0: the defaults (docs/cost-model.md §2) */
} an_config;

/* Modeled bytes of one block of bt tokens. */
static inline uint64_t an_block_bytes(const an_config *c, uint32_t bt)
{
    return c->model.kv_bytes_per_token * bt;
}

/* ---------------------------------------------------------------- results */

typedef struct an_counts {
    uint64_t requests, input_tokens, hit_tokens, blocks, hit_blocks;
    uint64_t miss_blocks[AN_MISS_N], miss_tokens[AN_MISS_N];
} an_counts;

#define AN_REUSE_BINS 40 /* log10 bins of 1/4 decade from 1 ms: [1e-3 s, 1e7 s), + over/under */

typedef struct an_prefix {
    uint64_t key;
    uint32_t ns, depth;     /* depth in blocks: the prefix covers depth*bt tokens */
    uint64_t uses;          /* requests that used it */
    uint64_t first_ms, last_ms;
} an_prefix;

typedef struct an_result {
    /* capacity actually simulated, in blocks of the engine (whole blocks) */
    uint64_t cap_blocks[AN_TIERS];
    int simulated;               /* 1: engine's data-free mode; 0: tiny-layout DRAM engine */
    an_counts total;
    an_counts *tenant;           /* [trace.n_tenants] */
    uint64_t inf_hit_tokens, inf_hit_blocks;   /* infinite capacity, same trace */
    uint64_t tier_hit_blocks[AN_TIERS], tier_hit_tokens[AN_TIERS];
    uint64_t tier_read_bytes[AN_TIERS];        /* modeled bytes loaded from each tier on hits */
    uint64_t tier_write_bytes[AN_TIERS];       /* modeled bytes written to nvme/disk (write-
                                                * through, demotion; kvt_stats) */
    uint64_t stored_blocks, write_bytes;       /* modeled bytes written by puts */
    uint64_t evicted_blocks;
    uint64_t put_nospace;        /* puts that stopped short: nothing of the tenant evictable */
    /* modeled time (evict/cost.h): per-request load plans */
    double prefill_all_s;        /* prefill seconds with no cache (all recomputed) */
    double prefill_cache_s;      /* with the cache: max(load, compute) per request */
    double compute_saved_s;      /* GPU recompute seconds of the blocks the plans loaded */
    double *ttft_saved_s;        /* [total.requests] per request, for percentiles */
    uint64_t plan_declined_blocks; /* hits the plan chose to recompute (loading was slower) */
    double usd_nocache, usd_cache_gpu, usd_hold, duration_s;
    /* reuse intervals: time since the block's previous use, per access of a seen block */
    uint64_t reuse_hist[AN_REUSE_BINS + 2]; /* [0]: < 1 ms, [1..BINS], [BINS+1]: >= 1e7 s */
    uint64_t reuse_n;
    uint64_t reuse_within[AN_TIERS]; /* reuses with interval <= the tier's drain time */
    double drain_s[AN_TIERS];        /* the configured tiers' drain times (0: tier absent) */
    an_prefix *top;
    size_t n_top;
    /* access logs: what the service itself reported */
    uint64_t obs_requests, obs_hit_blocks, obs_tier_blocks[AN_TIERS];
} an_result;

/* Progress reporting for long runs: a bar on stderr when it is a terminal. */
typedef struct an_progress {
    int on;
    uint64_t total, done;
    int last_permille;
    const char *what;
} an_progress;
void an_progress_step(an_progress *p, uint64_t n);
void an_progress_end(an_progress *p);

/* Replay the trace through an engine with cfg's tiers and policy. [out] res (zeroed here;
 * free with an_result_free). p may be NULL. Returns 0; -ENOTSUP (a tier or policy this
 * engine build cannot simulate: res explains nothing, the caller reports it); -ENOMEM; an
 * engine status. */
int an_replay(const an_trace *t, const an_config *cfg, an_result *res, an_progress *p);
void an_result_free(an_result *res);

/* Hit counts only: one engine with `cap_blocks` DRAM blocks (the same blocks the full replay
 * uses), no bookkeeping. For the capacity sweep and the multi-node simulation. */
int an_replay_hits(const an_trace *t, const an_config *cfg, uint64_t cap_blocks,
                   uint64_t *hit_tokens, uint64_t *hit_blocks, an_progress *p);

/* ---------------------------------------------------------------- sweep, multi-node */

typedef struct an_sweep_point {
    uint64_t cap_blocks;               /* capacity in blocks */
    double hit_rate[AN_POL_N];         /* token hit rate; NAN: policy not in engine yet */
    double belady;                     /* Belady bound (token hit rate) */
    double lru_flat;                   /* LRU over block ids, prefix-unaware (cross-check) */
} an_sweep_point;

typedef struct an_sweep {
    an_sweep_point *pt;
    size_t n;
    double inf_hit_rate;               /* infinite capacity */
    uint64_t distinct_blocks;          /* cacheable distinct (ns, key) blocks */
} an_sweep;

/* Capacities: cfg->sweep_points points, doubling up to distinct_blocks, plus the configured
 * DRAM capacity. Returns 0; -ENOMEM; an engine status. Free with an_sweep_free. */
int an_sweep_run(const an_trace *t, const an_config *cfg, uint64_t cfg_cap_blocks,
                 an_sweep *sw, an_progress *p);
void an_sweep_free(an_sweep *sw);

typedef struct an_multinode {
    uint32_t nodes;
    uint64_t node_cap_blocks;          /* each node's capacity; the pool has nodes× this */
    double hit_random, hit_prefix, hit_pool;   /* token hit rates */
    double imbalance_random, imbalance_prefix; /* max / mean requests per node */
    uint64_t seed;
} an_multinode;

int an_multinode_run(const an_trace *t, const an_config *cfg, uint64_t node_cap_blocks,
                     an_multinode *mn, an_progress *p);

/* ---------------------------------------------------------------- reports */

typedef struct an_report {
    const char *input;
    const an_trace *trace;
    const an_config *cfg;
    const an_result *res;
    const an_sweep *sweep;          /* NULL: not run */
    const an_multinode *mn;         /* NULL: not run */
} an_report;

void an_report_text(FILE *f, const an_report *r);
int an_report_json(FILE *f, const an_report *r);  /* 0; -ENOMEM */
int an_report_html(FILE *f, const an_report *r);  /* 0; -ENOMEM */

/* helpers shared by the reports */
double an_rate(uint64_t num, uint64_t den);        /* num/den, 0 when den == 0 */
void an_fmt_bytes(char *buf, size_t n, double bytes);
void an_fmt_secs(char *buf, size_t n, double s);

#endif
