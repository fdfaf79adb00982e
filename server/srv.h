/*
 * srv.h — internal header of server/ (`kvtier serve`). Uses only the public engine API.
 *
 * Threads
 *   loop      one epoll thread: accepts, reads and parses RESP, runs commands, writes
 *             replies, streams large replies from engine leases, runs the 100 ms cron
 *             (idle timeouts, deferred removals, access-log flush) and the shutdown.
 *   workers   `workers` threads run commands whose arguments exceed `offload_bytes`
 *             (SET/MSET/KVT.PUT of large values) so a 64 MiB copy never stalls the loop.
 *             A client with a job in flight is "busy": the loop neither reads nor parses
 *             its input until the job's reply is spliced back, which keeps replies in order.
 *   metrics   libmicrohttpd's own thread serves GET /metrics from atomic counters.
 *
 * Shared state and its guards
 *   srv_tenant counters          _Atomic, relaxed (metrics only)
 *   srv_tenant.ns_list           tenant->ns_mu (KVT.NS.CREATE may race with readers)
 *   value stripes                kv_stripe_lock(): serialises SET/DEL/EXPIRE of one key
 *   deferred removals            srv.defer_mu
 *   access log                   srv.alog_mu
 *   everything in srv_client     the loop thread, except while busy (then the worker
 *                                reads c->tenant, c->resp and argv; the loop leaves it alone)
 *
 * Value layout in the engine (docs/service.md has the picture): per tenant one KVT_NS_KEYS
 * namespace "kv/XX" (one of 256 shards, XX = the high byte of M) whose blocks are
 * kv_block_bytes (4 KiB by default):
 *
 *   meta block   key M = XXH3-64(redis key)
 *                [kv_meta 48 B][redis key][inline value bytes if they fit][zero padding]
 *   data chain   keys D_i = XXH3-64({M, version, i}), i < ceil(value_len / B), a separate
 *                root in the namespace; block i holds value bytes [i*B, (i+1)*B).
 *
 * A hit needs: the meta block, its magic, the stored key equal to the requested key byte
 * for byte, not expired, and (for a chain) every data block of the meta's version.
 */
#ifndef KVT_SRV_H
#define KVT_SRV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

#include "kvtier/kvtier.h"

/* ---------------------------------------------------------------- configuration */

#define SRV_MAX_TENANTS 64
#define SRV_KV_SHARD_BITS 8 /* Redis values spread over 256 key namespaces per tenant */
#define SRV_MAX_NS_PER_TENANT_DEFAULT 64
#define SRV_PATH_MAX 512

typedef struct srv_ns srv_ns;

typedef struct srv_tenant {
    char name[KVT_NAME_MAX + 1];
    char *password;   /* NULL with nopass */
    int nopass;       /* unauthenticated clients act as this tenant (only "default") */
    int ns_any;       /* namespaces = * */
    char **ns_allow;  /* names it may create with KVT.NS.CREATE */
    size_t n_ns_allow;
    uint64_t quota_dram; /* 0 = no quota */
    uint64_t quota_nvme, quota_disk; /* persistent tiers (kvt_tenant_set_quota); 0 = none */
    unsigned max_ns;
    int admin;            /* sees engine-wide figures in INFO and KVT.STATS */
    /* runtime */
    kvt_ns *kv[1u << SRV_KV_SHARD_BITS]; /* "kv/00".."kv/ff": key namespaces of Redis values */
    pthread_mutex_t ns_mu;
    srv_ns *ns_list;      /* KVT namespaces, guarded by ns_mu; never freed before shutdown */
    unsigned n_ns;
    _Atomic int64_t keys; /* DBSIZE: keys written minus keys deleted/expired/found evicted */
    /* metrics (relaxed atomics) */
    _Atomic uint64_t kv_hits, kv_misses, kv_bytes_in, kv_bytes_out, kv_sets, kv_set_fail;
    _Atomic uint64_t px_lookups, px_tokens, px_hit_tokens, px_puts, px_blocks_stored,
        px_bytes_in, px_bytes_out;
    _Atomic uint64_t commands, auth_fail;
    /* by tier (indexed by kvt_tier): meta blocks of GET hits, prefix tokens of KVT hits */
    _Atomic uint64_t kv_hits_tier[4], px_hit_tier[4];
    _Atomic uint64_t kv_corrupt, px_corrupt; /* reads that failed verification (dropped) */
    _Atomic uint64_t px_prefetches;
    /* this tenant's connections and network bytes (INFO shows a tenant only these) */
    _Atomic int64_t conn_open;
    _Atomic uint64_t conn_total, net_in, net_out;
} srv_tenant;

/* A tenant's token namespace (KVT.NS.CREATE). */
struct srv_ns {
    srv_ns *next;
    char name[KVT_NAME_MAX + 1];
    kvt_layout layout;
    uint64_t block_bytes;
    kvt_ns *ns;
};

typedef struct srv_config {
    char bind[256];           /* comma-separated addresses for TCP */
    int port;                 /* 0 = no TCP listener */
    char unixsocket[SRV_PATH_MAX];
    unsigned unixsocketperm;
    char metrics_bind[256];
    int metrics_port;         /* 0 = no /metrics */
    uint64_t dram_bytes;
    uint64_t kv_block_bytes;  /* block (= DRAM slot) size of the "kv" namespaces */
    kvt_hugepages hugepages;
    int dram_prefault; /* fault the DRAM arena in at start (kvt_options_set_dram_prefault) */
    int workers;
    int maxclients;
    int timeout_s;            /* idle timeout, 0 = none */
    uint64_t max_value_bytes;
    uint64_t max_key_bytes;   /* derived: kv_block_bytes - header */
    uint64_t proto_max_bulk_len;
    uint64_t query_buffer_limit;
    uint64_t output_buffer_limit;
    uint64_t offload_bytes;
    uint64_t ingest_min_bytes; /* SET values this large and up are received in place */
    /* persistent tiers: data_dir "" = DRAM only (the value "none" in the configuration) */
    char data_dir[SRV_PATH_MAX];
    char nvme_path[SRV_PATH_MAX], disk_path[SRV_PATH_MAX]; /* "" = DATA_DIR/nvme, /disk */
    uint64_t nvme_bytes, disk_bytes, nvme_bw, disk_bw;
    /* the cost model's bandwidths, bytes/s, by kvt_tier (DRAM, NVME, DISK; `kvtier probe
     * --write-config`'s <tier>_read_bandwidth / <tier>_write_bandwidth); 0 = the default */
    uint64_t tier_read_bw[4], tier_write_bw[4];
    unsigned io_depth;
    int backpressure_ms;      /* -1 = the engine's default */
    int persist_delay_ms;     /* write-back window (kvt_options_set_persist_delay_ms) */
    int background_nice;      /* the write-through's niceness (kvt_options_set_background_nice) */
    char access_log[SRV_PATH_MAX];
    int access_log_hash_ids;
    int shutdown_timeout_s;
    int loglevel;             /* 0 warning, 1 notice, 2 verbose */
    char config_file[SRV_PATH_MAX];
    srv_tenant *tenants[SRV_MAX_TENANTS];
    int n_tenants;
} srv_config;

int cfg_defaults(srv_config *c);
/* Set one key (config-file spelling, '-' and '_' equivalent). 0, or -1 with err filled. */
int cfg_set(srv_config *c, const char *key, const char *value, char *err, size_t errlen);
int cfg_load_file(srv_config *c, const char *path, char *err, size_t errlen);
int cfg_finish(srv_config *c, char *err, size_t errlen); /* validation, default tenant */
void cfg_free(srv_config *c);
srv_tenant *cfg_tenant(srv_config *c, const char *name, size_t len);

/* ---------------------------------------------------------------- output queue */

enum { OC_BUF = 0, OC_STREAM = 1 };

/* One piece of a client's pending output. OC_BUF: data[off..len). OC_STREAM: the bytes of
 * a lease's blocks [next_block, nblocks), cut to `left` bytes, refilled window by window
 * into data (the lease stays pinned until the stream ends). */
typedef struct ochunk {
    struct ochunk *next;
    int kind;
    char *data; /* bytes [off, len) go out next, from here when nseg == 0 (data is own) */
    char *own;  /* the chunk's heap buffer, cap bytes (NULL: none yet) */
    size_t off, len, cap;
    /* OC_STREAM, a window sent in place: bytes [0, len) are the nseg runs seg[] of the
     * engine's DRAM arena, borrowed through the lease (kvt_lease_block_ptr) */
    struct iovec *seg;
    int nseg;
    kvt_lease *lease;
    size_t next_block, nblocks, block_bytes;
    uint64_t left;
} ochunk;

typedef struct outq {
    ochunk *head, *tail;
    uint64_t bytes; /* bytes still to send, streams included */
} outq;

void outq_free(outq *q);
void ochunk_free(ochunk *ch); /* its lease released, its buffers freed */
/* Fill iov[0 .. return) with the chunk's unsent bytes [off, len), at most max entries. */
int ochunk_iov(const ochunk *ch, struct iovec *iov, int max);
void outq_splice(outq *dst, outq *src);
int outq_refill(ochunk *ch); /* OC_STREAM: next window; 0 or an engine status */

/* Reply builders: every call appends to q (allocation failure is fatal: abort is avoided by
 * a preallocated fallback? no: the server treats OOM in reply building like Redis does). */
void rp_raw(outq *q, const void *p, size_t n);
void rp_fmt(outq *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rp_ok(outq *q);
void rp_simple(outq *q, const char *s);
void rp_err(outq *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rp_int(outq *q, long long v);
void rp_bulk(outq *q, const void *p, size_t n);
void rp_bulkstr(outq *q, const char *s);
void rp_nil(outq *q, int resp);
void rp_arr(outq *q, long long n);
void rp_map(outq *q, int resp, long long n);
void rp_dbl(outq *q, int resp, double v);
void rp_verbatim(outq *q, int resp, const char *s, size_t n);
/* A bulk string whose payload is streamed from a lease: `bytes` bytes of blocks
 * [first, first+nblocks). Takes ownership of the lease (released when the stream ends or
 * the client goes away). */
void rp_bulk_stream(outq *q, kvt_lease *lease, size_t first, size_t nblocks,
                    size_t block_bytes, uint64_t bytes);

/* ---------------------------------------------------------------- the server */

typedef struct srv_arg {
    const char *p;
    size_t n;
} srv_arg;

typedef struct srv srv;
typedef struct srv_client srv_client;

/* ---------------------------------------------------------------- RESP requests (resp.c) */

#define INLINE_MAX (64u * 1024) /* longest inline command line */

/* One parsed request: argv points into the caller's buffer. need: when the request is
 * incomplete but a bulk length is known, the bytes (from the start of the request) that
 * must be buffered before parsing again; 0 when unknown. */
typedef struct resp_req {
    srv_arg *argv;
    int argc, argv_cap;
    size_t need;
    /* After an incomplete parse that stopped inside a bulk string's bytes (part_len > 0):
     * argv[0 .. part_idx) are the complete arguments before it (argc is 0), the bulk is
     * argument part_idx of part_argc, part_len bytes starting part_at bytes into the
     * request. Set by resp_parse. */
    int part_idx, part_argc;
    size_t part_at;
    uint64_t part_len;
    /* Set by the caller: the bulk whose bytes start ext_at bytes into the request was
     * received elsewhere (server.c's ingest): the buffer holds only its CRLF; its argv
     * entry gets p = NULL, n = ext_len. 0: none. */
    size_t ext_at;
    uint64_t ext_len;
} resp_req;

/* Parse one request from b[0..n). 1: argc/argv set, *consumed bytes (argc 0 for an empty
 * multibulk: skip it); 0: incomplete (need set when known); -1: protocol error, *err set
 * (the stream cannot be resynchronised: reply *err and close). */
int resp_parse(resp_req *r, const char *b, size_t n, uint64_t max_bulk, size_t *consumed,
               const char **err);
void resp_req_free(resp_req *r);

/* ---------------------------------------------------------------- in-process driver
 * (server.c) The whole request path — input buffering, parsing, dispatch, commands, reply
 * building, streamed replies — without sockets, epoll or worker threads: for
 * server/fuzz_resp.c. srv_embed_open takes the same flags as `kvtier serve` (port and
 * unixsocket are ignored: nothing listens). */
int srv_embed_open(int argc, char **argv);
void srv_embed_close(void);
srv_client *srv_embed_client(void);
/* Append bytes to the client's input and run what is complete; the replies (streams
 * drained) are passed to sink(ctx, bytes, n) in order. 1 when the server closed the
 * client (QUIT, protocol error, limit): free it, later bytes would be ignored. */
int srv_embed_feed(srv_client *c, const void *p, size_t n,
                   void (*sink)(void *ctx, const void *p, size_t n), void *ctx);
/* End of input (the peer shut its side), then free the client. */
void srv_embed_client_free(srv_client *c, void (*sink)(void *ctx, const void *p, size_t n),
                           void *ctx);

/* A SET's value received from the socket straight into the DRAM blocks of its data chain
 * (server.c reads it there; kv.c reserves and commits the chain): no copy through the
 * input buffer. */
typedef struct kv_ingest {
    kvt_put_txn *txn; /* the reserved chain; NULL: none */
    uint64_t version; /* the value's version (names the chain's keys) */
    void **ptrs;      /* [n] block addresses */
    size_t n;
    uint64_t block;   /* bytes per block */
    uint64_t len, got; /* value bytes, received so far */
    size_t at;        /* offset of the value's bytes from the request's start */
} kv_ingest;

/* Reserve the data chain of a SET of key k with a len-byte value that will be received in
 * place: 0, or <0 when the value cannot take this path (inline, quota, no room: the caller
 * buffers it as usual). */
int kv_ingest_begin(srv *s, srv_tenant *t, const srv_arg *k, uint64_t len, kv_ingest *ig);
/* Give back what an ingest holds (an unfinished or unused reservation) and clear it. */
void kv_ingest_end(kv_ingest *ig);

/* The context a command runs in (loop or worker). */
typedef struct cmdctx {
    srv *s;
    srv_client *c;
    srv_tenant *t; /* NULL before authentication */
    int resp;      /* 2 or 3 */
    outq *out;
    int argc;
    const srv_arg *argv;
    int on_worker;
    int offload; /* set by a command on the loop that emitted nothing: run me on a worker */
    kv_ingest *ig; /* SET: its value (argv[2].p NULL) arrived in place; else NULL */
} cmdctx;

/* A command on the loop thread asks to be re-run on a worker (it must not have emitted
 * anything). 1: asked (return at once); 0: run here (already on a worker, or none). */
int cmd_offload(cmdctx *x);

typedef void cmd_fn(cmdctx *x);

enum {
    CF_NOAUTH = 1,   /* allowed before authentication */
    CF_OFFLOAD = 2,  /* may run on a worker when its arguments are large */
    CF_WRITE = 4,
};

enum { HC_GET, HC_SET, HC_KVT_MATCH, HC_KVT_GET, HC_KVT_PUT, HC_OTHER, HC_N };

typedef struct srv_cmd {
    const char *name;
    cmd_fn *fn;
    int arity; /* > 0 exact, < 0 at least -arity (the name counts) */
    unsigned flags;
    int hclass;
    int first_key, last_key, step;
    const char *sflags; /* for COMMAND */
} srv_cmd;

const srv_cmd *cmd_lookup(const char *name, size_t n);
const srv_cmd *cmd_table(size_t *n);

#define HIST_N 20
typedef struct srv_hist {
    _Atomic uint64_t bucket[HIST_N + 1]; /* last = +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} srv_hist;
extern const double hist_bounds_s[HIST_N];
void hist_observe(srv_hist *h, uint64_t ns);

typedef struct defer_rm {
    struct defer_rm *next;
    kvt_ns *ns;
    uint64_t key;
    int tries;
} defer_rm;

struct srv {
    srv_config cfg;
    kvt_engine *eng;
    uint64_t start_ms;
    /* clients */
    _Atomic int64_t n_clients;
    _Atomic uint64_t next_client_id;
    _Atomic uint64_t conn_total, conn_rejected, net_in, net_out, cmds_total, proto_errors,
        idle_closed, offloaded, cmd_errors, deferred_removals,
        values_in_place; /* SET values read straight into their DRAM blocks (ingest) */
    srv_hist hist[HC_N];
    /* deferred removals of data chains that were pinned when they were replaced */
    pthread_mutex_t defer_mu;
    defer_rm *defer;
    size_t n_defer;
    /* access log */
    pthread_mutex_t alog_mu;
    FILE *alog;
    /* key stripes */
    pthread_mutex_t stripe[256];
    void *metrics_daemon;
    int stopping;
    int n_workers;
    /* persistence: the service's registry of KVT namespaces and key counts (registry.c) */
    pthread_mutex_t reg_mu;
    char *reg_orphans; /* registry lines of tenants not configured now, kept verbatim */
    _Atomic uint64_t flushes, flush_errors, last_flush_ms;
    _Atomic int last_flush_status;
};

/* Logging to stderr: level 0 warning, 1 notice, 2 verbose. */
void srv_log(const srv *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t now_ms_real(void);
uint64_t now_ns_mono(void);

/* client operations the commands need (loop thread only) */
void client_set_name(srv_client *c, const char *p, size_t n);
const char *client_name(const srv_client *c);
uint64_t client_id(const srv_client *c);
void client_set_auth(srv_client *c, srv_tenant *t);
void client_set_resp(srv_client *c, int resp);
void client_close_after_reply(srv_client *c);
const char *client_addr(const srv_client *c);
/* The last KVT.MATCH of this client (namespace + token hash): a KVT.GET of the same request
 * right after it is not logged again (docs/analytics.md: one access-log line per request). */
uint64_t *client_last_match(srv_client *c);

/* kv.c: Redis values */
void cmd_get(cmdctx *x);
void cmd_set(cmdctx *x);
void cmd_mget(cmdctx *x);
void cmd_mset(cmdctx *x);
void cmd_exists(cmdctx *x);
void cmd_del(cmdctx *x);
void cmd_expire(cmdctx *x);
void cmd_pexpire(cmdctx *x);
void cmd_ttl(cmdctx *x);
void cmd_pttl(cmdctx *x);
void cmd_persist(cmdctx *x);
void cmd_dbsize(cmdctx *x);
void kv_defer_retry(srv *s); /* cron */
/* The engine namespaces and meta-block keys of a command's keys argv[first..last] (last < 0:
 * from the end) by step, at most room of them: for kvt_lookahead_keys. Returns how many. */
size_t kv_lookahead(srv *s, srv_tenant *t, int first, int last, int step, const srv_arg *argv,
                    int argc, kvt_ns **ns, uint64_t *keys, size_t room);

/* kvt.c: native prefix commands */
void cmd_kvt_ns_create(cmdctx *x);
void cmd_kvt_ns_info(cmdctx *x);
void cmd_kvt_ns_list(cmdctx *x);
void cmd_kvt_match(cmdctx *x);
void cmd_kvt_put(cmdctx *x);
void cmd_kvt_get(cmdctx *x);
void cmd_kvt_prefetch(cmdctx *x);
void cmd_kvt_stats(cmdctx *x);
void cmd_kvt_flush(cmdctx *x); /* also SAVE */
void cmd_lastsave(cmdctx *x);
const char *tier_name(int tier);
void srv_ns_free_all(srv *s);

/* misc.c: connection and server commands */
void cmd_ping(cmdctx *x);
void cmd_echo(cmdctx *x);
void cmd_auth(cmdctx *x);
void cmd_hello(cmdctx *x);
void cmd_client(cmdctx *x);
void cmd_quit(cmdctx *x);
void cmd_select(cmdctx *x);
void cmd_command(cmdctx *x);
void cmd_config(cmdctx *x);
void cmd_info(cmdctx *x);
void cmd_time(cmdctx *x);
srv_tenant *auth_check(srv *s, const char *user, size_t ulen, const char *pass, size_t plen);

/* registry.c: DATA_DIR/serve-registry (namespaces, key counts), written atomically */
int registry_load(srv *s);  /* at start, after the engine opened: reopens the namespaces */
int registry_save(srv *s);  /* after KVT.NS.CREATE, KVT.FLUSH and at shutdown */
srv_ns *srv_ns_add(srv *s, srv_tenant *t, const char *name, const kvt_layout *lay, int *rc);
/* Flush: kvt_flush + registry; 0 or an engine status (counted, logged) */
int srv_flush(srv *s);

/* metrics.c */
int metrics_start(srv *s);
void metrics_stop(srv *s);
/* INFO text (Redis format, "\r\n" lines) for the caller's tenant; malloc'd. */
char *info_text(srv *s, srv_tenant *t, const char *section, size_t *len);

/* Helpers for commands */
int arg_eq(const srv_arg *a, const char *s);
int arg_ll(const srv_arg *a, long long *out);
int arg_u64(const srv_arg *a, uint64_t *out);

#endif
