/*
 * remote.h — the remote tier: blocks shared by many kvtier engines through a Redis (or Valkey)
 * cluster, over hiredis. Several engines on several machines open the same cluster with the
 * same salt; a block one of them stored is a hit for all of them (a prefix computed on one
 * machine hits on another). Engines also publish which blocks they hold locally, so a router
 * can send a request to the machine holding its longest prefix.
 *
 * Keys (ASCII, so redis-cli shows them and no binary byte pair can form an accidental hash
 * tag "{...}" that would pile blocks onto one shard):
 *
 *   kvt:<salt>:<ns 16 hex>:<key 16 hex>      one block (a Redis string)
 *   kvt:<salt>:holders:<engine>              a SET of 16-byte members [ns u64][key u64]:
 *                                            blocks <engine> holds locally; PEXPIREd (heartbeat)
 *   kvt:<salt>:engines                       a ZSET: member <engine>, score = expiry (unix ms)
 *
 * salt: [A-Za-z0-9_.-]{1,64}, the cluster-wide namespace of one kvtier deployment (engines
 * with different salts never see each other's blocks). ns: a cluster-wide namespace id — the
 * same model + KV layout + tenant must map to the same ns on every machine (the engine hashes
 * the namespace's name and layout; a process-local handle number would not do). There is no
 * hash tag in block keys on purpose: CRC16 of the whole key spreads blocks over all shards.
 *
 * A block's value:
 *
 *   [remote_hdr 56 B][units: n_units × u32][payload: payload_len bytes]
 *   remote_hdr = [magic u32 "KVR1"][version u16 = 1][flags u16 = 0][n_units u32][pad u32 = 0]
 *                [ns u64][key u64][payload_len u64][data_sum u64][hdr_sum u32][pad u32 = 0]
 *   data_sum = XXH3-64 over units bytes then payload; hdr_sum = XXH32 (seed 0) of bytes
 *   0..48. Host byte order (little-endian machines only, like disk records).
 *
 * units are the block's identity, compared exactly on every get (DESIGN.md invariant 1: a key
 * collision must never return another block). Because a block key chains its parent's key,
 * the identity of block i of a prompt is the whole prefix tokens[0 .. (i+1)·block_tokens):
 * the engine passes a pointer into the request's token array, no copy. That costs 4 bytes per
 * prefix token per stored block (a 2 MiB Llama-3-8B block at depth 8k tokens: +32 KiB, 1.6%).
 *
 * Cluster routing: slot = CRC16-XMODEM(key or its hash tag) % 16384 (remote_slot). The slot
 * map comes from CLUSTER SLOTS (seeds first, then any known master) and is refreshed after a
 * MOVED, a connection failure, or on remote_probe(), at most every 100 ms. MOVED updates the
 * slot's owner and retries there; ASK sends ASKING + the command to the target without
 * touching the map; at most max_redirects rounds per request.
 *
 * Data path. Per batch, requests are grouped by master; each master gets one pipelined
 * sendmsg() of all its commands (SET values are gathered from the caller's buffers: no copy
 * in user space), then its replies are read in order; all masters are written before any is
 * read, so they work in parallel. The data path frames RESP itself on the hiredis context's
 * socket and reads GET payloads straight into the caller's buffers (one copy, kernel to
 * caller); hiredis does connections, timeouts and every other command. A batch moves at most
 * window_bytes per round (payload lengths, GET capacities) so a huge batch cannot make the
 * servers buffer gigabytes.
 *
 * Failures are misses. A get whose master is down, times out, answers CLUSTERDOWN/TRYAGAIN/
 * LOADING, or whose value is absent, stale or corrupt is a miss for that block only (a
 * per-request code, counted in remote_stats); the batch still returns the number of hits.
 * Only when no master at all could be reached does a batch return -ENOTCONN (every request
 * then carries its miss code too). A failed connection is dropped and retried after a backoff
 * (backoff_min_ms doubling to backoff_max_ms), during which its slots miss at once without
 * network I/O. After a failover (a replica promoted by the cluster) the refreshed map routes
 * to the new master and the blocks that had reached the replica hit again. Redis replication
 * is asynchronous: puts acknowledged by a master in the last moment before it died may be
 * lost. REMOTE_PUT_DURABLE appends WAIT 1 <wait_timeout_ms> per master, so a put reports 0
 * only once at least one replica has the block.
 *
 * Measured bandwidth (for the cost model, evict/cost.h): every get/put batch moving >= 256 KiB
 * updates an exponential moving average (alpha 0.25) of payload bytes / wall time; every
 * remote_probe() updates the average PING round trip. remote_stats reports both; the engine
 * copies them into the tier's evict_tier (read_bw, write_bw, latency_s) so the tier sits
 * below or beside local flash as measured, not as configured.
 *
 * Allocation goes through util_malloc (OOM injectable); hiredis 0.14 allocates its contexts,
 * replies and command buffers with libc malloc (it has no allocator hook before 1.0). The
 * library never raises SIGPIPE: every write is send/sendmsg with MSG_NOSIGNAL.
 * No TLS (hiredis 0.14 has none): run the cluster on a trusted network; AUTH is supported.
 *
 * Thread safety: every call on one remote_ctx takes the context's mutex, so a context may be
 * shared by threads but serves one batch at a time. For parallel transfers open one context
 * per thread (each has its own connections). remote_key and remote_slot are pure.
 *
 * Errors are negative errno values; per-request codes are listed with remote_req.
 */
#ifndef KVT_REMOTE_H
#define KVT_REMOTE_H

#include <stddef.h>
#include <stdint.h>

typedef struct remote_ctx remote_ctx;

#define REMOTE_SLOTS 16384u
#define REMOTE_HDR_BYTES 56u
#define REMOTE_SALT_MAX 64u       /* salt bytes */
#define REMOTE_ENGINE_MAX 63u     /* engine id bytes */
#define REMOTE_KEY_MAX (4u + REMOTE_SALT_MAX + 1u + 16u + 1u + 16u + 1u) /* with the NUL */
#define REMOTE_MAX_UNITS (1u << 22) /* identity units per block (16 MiB of tokens) */

typedef struct remote_opts {
    unsigned connect_timeout_ms; /* per connect attempt; 0 = 1000 */
    unsigned io_timeout_ms;      /* per socket read/write (SO_RCVTIMEO/SNDTIMEO); 0 = 2000 */
    unsigned backoff_min_ms;     /* first reconnect delay after a failure; 0 = 50 */
    unsigned backoff_max_ms;     /* cap of the doubling delay; 0 = 2000 */
    unsigned max_redirects;      /* MOVED/ASK rounds per request; 0 = 5 */
    unsigned wait_timeout_ms;    /* WAIT of REMOTE_PUT_DURABLE; 0 = 1000 */
    uint64_t window_bytes;       /* payload bytes per round of a batch; 0 = 64 MiB */
    const char *user;            /* AUTH user (Redis 6 ACL); NULL: "default" */
    const char *password;        /* AUTH password; NULL: no AUTH */
} remote_opts;

/*
 * One block of a batch. In-fields are read, out-fields written; the struct is the caller's.
 *   put:  key, ns, units/n_units, buf/len (payload) in; res out.
 *   get:  key, ns, units/n_units, buf/len (capacity) in; len (payload bytes) and res out.
 *   del:  key, ns in; res out (units, buf ignored).
 * res after a get: 0 hit (buf[0..len) is the verified payload), or a miss:
 *   -ENOENT    not stored (never put, deleted, expired, or evicted by the cluster's maxmemory)
 *   -ESTALE    stored under this key but for another block (ns, key or units differ: a
 *              key collision or a reused key) — never returned as data
 *   -EBADMSG   corrupt value (header, length or checksum): buf holds garbage
 *   -ERANGE    payload larger than the capacity; len = its size; buf untouched
 *   -ENOTCONN  the master of its slot is down or its connection failed (backoff running)
 *   -ETIMEDOUT the master did not answer within io_timeout_ms (connection dropped)
 *   -EAGAIN    the cluster refused for now (CLUSTERDOWN, TRYAGAIN, LOADING) or redirects
 *              exceeded max_redirects
 *   -EPROTO    any other server error reply (e.g. ACL denial)
 * res after a put: 0 stored (with REMOTE_PUT_DURABLE: and on >= 1 replica), -ETIME stored on
 *   the master but no replica acknowledged within wait_timeout_ms (may be lost on failover),
 *   -ENOTCONN, -ETIMEDOUT, -EAGAIN, -EPROTO as above (OOM from a full cluster is -EPROTO).
 * res after a del: 0 deleted, -ENOENT absent, or a connection/cluster code as above.
 */
typedef struct remote_req {
    uint64_t ns;           /* [in] cluster-wide namespace id */
    uint64_t key;          /* [in] block key (chained XXH3 of tokens, DESIGN.md §2) */
    const uint32_t *units; /* [in] identity, n_units entries (the prefix's tokens) */
    uint32_t n_units;      /* [in] 0..REMOTE_MAX_UNITS */
    int res;               /* [out] 0 or a code above */
    void *buf;             /* [in] put: payload; get: [out] destination */
    size_t len;            /* put: [in] payload bytes; get: [in] capacity, [out] payload bytes */
} remote_req;

#define REMOTE_PUT_DURABLE 0x1u /* confirm with WAIT 1: the block reached a replica */

#define REMOTE_PUB_REPLACE 0x1u /* the list is the engine's whole holding: drop the old set */
#define REMOTE_PUB_REMOVE 0x2u  /* remove these keys (evicted blocks) instead of adding */

/* An engine that holds a prefix of the queried key chain (remote_holders). */
typedef struct remote_holder {
    char engine[REMOTE_ENGINE_MAX + 1];
    uint32_t blocks; /* leading blocks of the chain it holds: keys[0 .. blocks) */
} remote_holder;

typedef struct remote_stats {
    uint64_t gets, hits, puts, puts_ok, dels;
    /* misses by cause (gets): */
    uint64_t miss_absent, miss_stale, miss_corrupt, miss_range, miss_down, miss_timeout,
        miss_cluster, miss_error;
    uint64_t puts_failed, puts_unreplicated;
    uint64_t bytes_read, bytes_written; /* payload bytes of hits and of stored puts */
    uint64_t moved, asked, reconnects, connect_failures, map_refreshes;
    double read_bw;   /* bytes/s, moving average over get batches; 0: no sample yet */
    double write_bw;  /* bytes/s, over put batches */
    double latency_s; /* PING round trip, moving average; 0: no sample yet */
    uint32_t masters;    /* masters in the slot map */
    uint32_t masters_up; /* of them, connected now */
    uint32_t slots_covered; /* slots with a known owner */
} remote_stats;

/* Zero opts (or remote_opts_init) are the defaults above. */
void remote_opts_init(remote_opts *o);

/*
 * Connect to the cluster. seeds: "host:port[,host:port...]" (any nodes: masters or replicas,
 * IPv4 addresses or names; up to 64). salt: see above. opts may be NULL.
 * Discovers the slot map through the first seed that answers CLUSTER SLOTS.
 * Returns 0 and *out; -EINVAL (seeds or salt malformed, bad option); -ENOMEM; -ENOTCONN (no
 * seed answered); -EPROTO (a seed answered but is not a cluster node, or AUTH failed).
 */
int remote_open(const char *seeds, const char *salt, const remote_opts *opts, remote_ctx **out);
/* Close connections and free. NULL is a no-op. */
void remote_close(remote_ctx *r);

/*
 * Store reqs[0..n) (payloads buf[0..len), any size up to 512 MiB less the header, the Redis
 * bulk limit). ttl_ms > 0: the blocks expire after it (SET PX); 0: no expiry. flags:
 * REMOTE_PUT_DURABLE. Overwrites what the keys held.
 * Returns the number stored (res == 0), or -EINVAL (NULL, len 0, n_units too large, bad
 * flags: no request sent), -ENOMEM (nothing sent), -ENOTCONN (no master reachable).
 */
int remote_put_batch(remote_ctx *r, remote_req *reqs, size_t n, uint64_t ttl_ms, unsigned flags);

/*
 * Fetch reqs[0..n) into their buffers, verifying header, identity (ns, key, units exactly) and
 * checksum. Returns the number of hits, or -EINVAL, -ENOMEM, -ENOTCONN as for put. A miss of
 * any kind leaves buf[0..capacity) undefined.
 */
int remote_get_batch(remote_ctx *r, remote_req *reqs, size_t n);

/* Delete reqs[0..n) (UNLINK: the servers free big values in the background).
 * Returns the number deleted, or -EINVAL, -ENOMEM, -ENOTCONN. */
int remote_del_batch(remote_ctx *r, remote_req *reqs, size_t n);

/*
 * Publish that engine `engine` ([A-Za-z0-9_.:-]{1,63}) holds blocks (ns, keys[0..n)) in its
 * local tiers; n may be 0 (a heartbeat). Renews the holder set's TTL (ttl_ms > 0, else 60 s)
 * and the engine's registry entry. flags: REMOTE_PUB_REMOVE deletes these keys from the set
 * (blocks the engine evicted); REMOTE_PUB_REPLACE first drops the engine's whole set, of every
 * namespace (a start or a periodic full resync: publish the first namespace with REPLACE, the
 * others without). The set is one key: it lives on one master, and is lost (republish) if that
 * master fails before a replica has it.
 * Returns 0; -EINVAL; -ENOMEM; -ENOTCONN (the set's master is down); -ETIMEDOUT; -EAGAIN
 * (cluster down, redirects exhausted); -EPROTO (an error reply).
 */
int remote_publish(remote_ctx *r, const char *engine, uint64_t ns, const uint64_t *keys,
                   size_t n, uint64_t ttl_ms, unsigned flags);

/*
 * Which engines hold a prefix of the chain keys[0..n) (a request's block keys, in order) of
 * namespace ns. Fills out[0..cap) with the live engines holding at least keys[0], longest
 * prefix first (ties by engine id), and *n_out with how many there were (may exceed cap).
 * Engines whose holder set expired are skipped (and pruned from the registry after 10 min).
 * The answer is a routing hint (sets are published asynchronously), never a hit: the chosen
 * engine still matches tokens exactly. Returns 0; -EINVAL; -ENOMEM; -ENOTCONN; -EAGAIN;
 * -EPROTO (the cluster refused SMISMEMBER: Redis >= 6.2 / any Valkey is required).
 */
int remote_holders(remote_ctx *r, uint64_t ns, const uint64_t *keys, size_t n,
                   remote_holder *out, size_t cap, size_t *n_out);

/*
 * Health and latency probe (the engine calls it with its publish heartbeat): refresh the slot
 * map if due, reconnect masters whose backoff expired, PING every connected master and fold
 * the round trips into latency_s. Returns the number of masters that answered (>= 0).
 */
int remote_probe(remote_ctx *r);

/* A snapshot of the counters and measured figures. */
void remote_get_stats(remote_ctx *r, remote_stats *st);

/*
 * The key of block (ns, key) under salt into buf[0..cap): its length (without the NUL), or
 * -EINVAL (bad salt) / -ERANGE (cap too small; REMOTE_KEY_MAX always suffices). Pure.
 */
int remote_key(const char *salt, uint64_t ns, uint64_t key, char *buf, size_t cap);

/* The cluster slot of a key: CRC16-XMODEM of the key, or of its first non-empty "{tag}",
 * modulo 16384 (Redis Cluster spec). Pure. */
unsigned remote_slot(const void *key, size_t len);

#endif
