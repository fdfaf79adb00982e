/* remote.c — the remote tier on a Redis/Valkey cluster. See remote.h for the manual. */
#include "tiers/remote.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "util/util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "remote values are stored in host byte order: little-endian machines only"
#endif

#define REMOTE_MAGIC 0x3152564bu /* "KVR1" read as a little-endian u32 */
#define REMOTE_VERSION 1u
#define NO_NODE 0xffffu
#define MAX_NODES 1024u
#define MAX_SEEDS 64u
#define RB_CAP (64u << 10)      /* data-path receive buffer per node, bytes */
#define CMD_SLOT 384u           /* per-request scratch: RESP prefix + header, suffix */
#define CMD_SUFFIX_OFF 320u     /* where the suffix starts inside a CMD_SLOT */
#define IOV_PER_OP 5u           /* [ASKING][prefix+hdr][units][payload][suffix] */
#define REFRESH_MIN_NS 100000000ull /* 100 ms between slot map refreshes */
#define BW_MIN_SAMPLE (256u << 10)
#define EWMA_ALPHA 0.25
#define PUB_CHUNK 1024u         /* members per SADD/SREM/SMISMEMBER */
#define REGISTRY_PRUNE_MS 600000ull

/* The value header, 56 bytes (layout in remote.h). */
typedef struct remote_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t flags;
    uint32_t n_units;
    uint32_t pad0;
    uint64_t ns;
    uint64_t key;
    uint64_t payload_len;
    uint64_t data_sum;
    uint32_t hdr_sum; /* XXH32 of bytes 0..48 */
    uint32_t pad1;
} remote_hdr;
_Static_assert(sizeof(remote_hdr) == REMOTE_HDR_BYTES, "remote_hdr is 56 bytes");

enum { OP_GET, OP_SET, OP_DEL };
enum { RES_REDIRECT = 1 }; /* internal: the op goes another round */

typedef struct rnode {
    char host[256];
    int port;
    int is_master;           /* owns slots in the current map */
    int ever_connected;
    redisContext *c;         /* NULL while down */
    uint64_t retry_at;       /* ns (monotonic): no reconnect before */
    uint32_t backoff_ms;
    char *rb;                /* data-path receive buffer [RB_CAP] */
    size_t rpos, rlen;
    /* the round's queue: op indices linked through rop.next */
    uint32_t q_head, q_tail, q_n;
    int q_err;               /* connection error met this round (then every queued op fails) */
    char wait_cmd[64];       /* "WAIT 1 <ms>" of durable puts */
    size_t wait_len;
} rnode;

typedef struct rop {
    uint32_t next;     /* queue link */
    uint16_t slot;
    uint16_t ask;      /* NO_NODE or the node an ASK sent it to */
    uint16_t klen;
    uint8_t rounds;
    uint8_t done;
} rop;

struct remote_ctx {
    pthread_mutex_t mu;
    char salt[REMOTE_SALT_MAX + 1];
    remote_opts o;
    rnode **nodes; /* stable addresses: node_find may grow the array mid-batch */
    uint32_t n_nodes, cap_nodes;
    uint16_t slot[REMOTE_SLOTS]; /* slot -> node index or NO_NODE */
    uint64_t last_refresh;
    int need_refresh;
    remote_stats st;
    XXH3_state_t xs;
    /* batch scratch, grown on demand */
    rop *ops;
    char *keys;  /* [n][REMOTE_KEY_MAX] */
    char *cmds;  /* [n][CMD_SLOT] */
    size_t scratch_n;
    struct iovec *iov;
    size_t iov_cap;
    unsigned char *cmpbuf; /* [RB_CAP]: units read back for comparison */
};

static const char ASKING_CMD[] = "*1\r\n$6\r\nASKING\r\n";

/* ---------------------------------------------------------------- pure helpers */

/* CRC16-CCITT (XMODEM: poly 0x1021, init 0), the Redis Cluster key hash. Bitwise: keys are
 * ~60 bytes, so a table would save nothing measurable next to a network round trip. */
static uint16_t crc16(const unsigned char *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned remote_slot(const void *key, size_t len)
{
    const unsigned char *k = key;
    size_t s, e;
    for (s = 0; s < len && k[s] != '{'; s++)
        ;
    if (s < len) {
        for (e = s + 1; e < len && k[e] != '}'; e++)
            ;
        if (e < len && e > s + 1) /* a non-empty {tag}: hash only the tag */
            return crc16(k + s + 1, e - s - 1) & (REMOTE_SLOTS - 1);
    }
    return crc16(k, len) & (REMOTE_SLOTS - 1);
}

static int salt_ok(const char *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '.' && s[n] != '-')
            return 0;
    return n >= 1 && n <= REMOTE_SALT_MAX;
}

static int engine_ok(const char *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && !strchr("_.:-", s[n]))
            return 0;
    return n >= 1 && n <= REMOTE_ENGINE_MAX;
}

int remote_key(const char *salt, uint64_t ns, uint64_t key, char *buf, size_t cap)
{
    if (!salt_ok(salt) || !buf)
        return -EINVAL;
    int n = snprintf(buf, cap, "kvt:%s:%016llx:%016llx", salt, (unsigned long long)ns,
                     (unsigned long long)key);
    if (n < 0 || (size_t)n >= cap)
        return -ERANGE;
    return n;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void ewma(double *avg, double sample)
{
    *avg = *avg == 0.0 ? sample : *avg + EWMA_ALPHA * (sample - *avg);
}

/* ---------------------------------------------------------------- nodes and connections */

static int node_find(remote_ctx *r, const char *host, int port, int create)
{
    for (uint32_t i = 0; i < r->n_nodes; i++)
        if (r->nodes[i]->port == port && strcmp(r->nodes[i]->host, host) == 0)
            return (int)i;
    if (!create)
        return -ENOENT;
    if (strlen(host) >= sizeof r->nodes[0]->host || port <= 0 || port > 65535)
        return -EINVAL;
    if (r->n_nodes == MAX_NODES)
        return -ENOSPC;
    if (r->n_nodes == r->cap_nodes) {
        uint32_t cap = r->cap_nodes ? r->cap_nodes * 2 : 8;
        rnode **nn = util_realloc(r->nodes, cap * sizeof *nn);
        if (!nn)
            return -ENOMEM;
        r->nodes = nn;
        r->cap_nodes = cap;
    }
    rnode *n = util_calloc(1, sizeof *n);
    if (!n)
        return -ENOMEM;
    r->nodes[r->n_nodes] = n;
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    n->backoff_ms = r->o.backoff_min_ms;
    n->wait_len = (size_t)snprintf(n->wait_cmd, sizeof n->wait_cmd,
                                   "*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$%d\r\n%u\r\n",
                                   snprintf(NULL, 0, "%u", r->o.wait_timeout_ms),
                                   r->o.wait_timeout_ms);
    return (int)r->n_nodes++;
}

/* Drop a node's connection after an error; reconnects wait for the backoff. */
static void node_down(remote_ctx *r, rnode *n)
{
    if (n->c) {
        redisFree(n->c);
        n->c = NULL;
    }
    n->rpos = n->rlen = 0;
    uint64_t now = util_now_ns();
    n->retry_at = now + (uint64_t)n->backoff_ms * 1000000u;
    n->backoff_ms = n->backoff_ms * 2 > r->o.backoff_max_ms ? r->o.backoff_max_ms
                                                            : n->backoff_ms * 2;
    r->need_refresh = 1;
}

static int send_all(int fd, struct iovec *iov, size_t cnt)
{
    while (cnt) {
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = cnt > IOV_MAX ? IOV_MAX : cnt;
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -ENOTCONN;
        }
        size_t left = (size_t)w;
        while (cnt && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (left) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Control path: send a hiredis-formatted command (never through hiredis' write(), which
 * could raise SIGPIPE) and read replies with redisGetReply. */
static int ctl_send(rnode *n, int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0)
        return -ENOMEM;
    struct iovec v = {cmd, (size_t)len};
    int rc = send_all(n->c->fd, &v, 1);
    redisFreeCommand(cmd);
    return rc;
}

static int ctl_recv(rnode *n, redisReply **rep)
{
    void *p = NULL;
    errno = 0;
    if (redisGetReply(n->c, &p) != REDIS_OK || !p) {
        int e = errno;
        if (n->c->err == REDIS_ERR_OOM)
            return -ENOMEM;
        return (e == EAGAIN || e == EWOULDBLOCK) ? -ETIMEDOUT : -ENOTCONN;
    }
    *rep = p;
    return 0;
}

static int node_conn(remote_ctx *r, rnode *n)
{
    if (n->c)
        return 0;
    if (util_now_ns() < n->retry_at)
        return -ENOTCONN;
    struct timeval ct = {r->o.connect_timeout_ms / 1000, (r->o.connect_timeout_ms % 1000) * 1000};
    struct timeval it = {r->o.io_timeout_ms / 1000, (r->o.io_timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(n->host, n->port, ct);
    if (!c || c->err || redisSetTimeout(c, it) != REDIS_OK) {
        if (c)
            redisFree(c);
        r->st.connect_failures++;
        node_down(r, n);
        return -ENOTCONN;
    }
    redisEnableKeepAlive(c);
    n->c = c;
    n->rpos = n->rlen = 0;
    if (!n->rb && !(n->rb = util_malloc(RB_CAP))) {
        redisFree(c);
        n->c = NULL;
        return -ENOMEM;
    }
    if (r->o.password) {
        const char *argv[3] = {"AUTH", r->o.user ? r->o.user : "default", r->o.password};
        size_t lens[3] = {4, strlen(argv[1]), strlen(argv[2])};
        redisReply *rep = NULL;
        int rc = ctl_send(n, 3, argv, lens);
        if (rc == 0)
            rc = ctl_recv(n, &rep);
        if (rc == 0 && rep->type == REDIS_REPLY_ERROR)
            rc = -EPROTO;
        if (rep)
            freeReplyObject(rep);
        if (rc) {
            r->st.connect_failures++;
            node_down(r, n);
            return rc == -EPROTO ? -EPROTO : -ENOTCONN;
        }
    }
    if (n->ever_connected)
        r->st.reconnects++;
    n->ever_connected = 1;
    n->backoff_ms = r->o.backoff_min_ms;
    return 0;
}

/* ---------------------------------------------------------------- slot map */

/* CLUSTER SLOTS from node n into r->slot. 0; -EPROTO (not a cluster / malformed); -errno. */
static int refresh_from(remote_ctx *r, rnode *n)
{
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    size_t lens[2] = {7, 5};
    redisReply *rep = NULL;
    int rc = node_conn(r, n);
    if (rc)
        return rc;
    if ((rc = ctl_send(n, 2, argv, lens)) || (rc = ctl_recv(n, &rep))) {
        if (rc != -ENOMEM)
            node_down(r, n);
        return rc;
    }
    if (rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return -EPROTO;
    }
    char qhost[256];
    snprintf(qhost, sizeof qhost, "%s", n->host);
    uint16_t *map = util_malloc(sizeof r->slot);
    if (!map) {
        freeReplyObject(rep);
        return -ENOMEM;
    }
    for (unsigned s = 0; s < REMOTE_SLOTS; s++)
        map[s] = NO_NODE;
    rc = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
            rc = -EPROTO;
            break;
        }
        long long a = e->element[0]->integer, b = e->element[1]->integer;
        const char *h = e->element[2]->element[0]->str;
        if (!*h || strcmp(h, "?") == 0) /* unknown endpoint: the node we asked */
            h = qhost;
        int ni = node_find(r, h, (int)e->element[2]->element[1]->integer, 1);
        if (ni < 0) {
            rc = ni;
            break;
        }
        if (a < 0 || b >= REMOTE_SLOTS || a > b) {
            rc = -EPROTO;
            break;
        }
        for (long long s = a; s <= b; s++)
            map[s] = (uint16_t)ni;
    }
    freeReplyObject(rep);
    if (rc == 0) {
        memcpy(r->slot, map, sizeof r->slot);
        for (uint32_t i = 0; i < r->n_nodes; i++)
            r->nodes[i]->is_master = 0;
        for (unsigned s = 0; s < REMOTE_SLOTS; s++)
            if (map[s] != NO_NODE)
                r->nodes[map[s]]->is_master = 1;
        /* a map that still routes to a master known down may come from a node that has not
         * heard of the failover yet (gossip): keep refreshing until the maps converge */
        r->need_refresh = 0;
        uint64_t now = util_now_ns();
        for (uint32_t i = 0; i < r->n_nodes; i++)
            if (r->nodes[i]->is_master && !r->nodes[i]->c && r->nodes[i]->retry_at > now)
                r->need_refresh = 1;
        r->st.map_refreshes++;
    }
    util_free(map);
    return rc;
}

/* Refresh through any node that answers: connected masters, then the rest (seeds included). */
static int refresh_map(remote_ctx *r)
{
    int rc = -ENOTCONN;
    r->last_refresh = util_now_ns();
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < r->n_nodes; i++) {
            rnode *n = r->nodes[i];
            if (pass == 0 ? !(n->is_master && n->c) : (n->is_master && n->c))
                continue;
            rc = refresh_from(r, n);
            if (rc == 0 || rc == -ENOMEM)
                return rc;
        }
    return rc;
}

static void maybe_refresh(remote_ctx *r)
{
    if (r->need_refresh && util_now_ns() - r->last_refresh >= REFRESH_MIN_NS)
        refresh_map(r);
}

/* ---------------------------------------------------------------- data-path reader */

static int rd_err(ssize_t got)
{
    if (got == 0)
        return -ENOTCONN; /* EOF: the server closed or died */
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -ENOTCONN;
}

static int rd_fill(rnode *n)
{
    if (n->rpos == n->rlen)
        n->rpos = n->rlen = 0;
    else if (n->rpos > 0 && n->rlen == RB_CAP) {
        memmove(n->rb, n->rb + n->rpos, n->rlen - n->rpos);
        n->rlen -= n->rpos;
        n->rpos = 0;
    }
    for (;;) {
        ssize_t g = read(n->c->fd, n->rb + n->rlen, RB_CAP - n->rlen);
        if (g > 0) {
            n->rlen += (size_t)g;
            return 0;
        }
        if (g < 0 && errno == EINTR)
            continue;
        return rd_err(g);
    }
}

/* One reply line without its CRLF into out[0..cap) (NUL-terminated). -EPROTO if longer. */
static int rd_line(rnode *n, char *out, size_t cap)
{
    size_t scanned = 0;
    for (;;) {
        char *b = n->rb + n->rpos;
        size_t avail = n->rlen - n->rpos;
        char *lf = scanned < avail ? memchr(b + scanned, '\n', avail - scanned) : NULL;
        if (lf) {
            size_t len = (size_t)(lf - b);
            if (len == 0 || b[len - 1] != '\r' || len > cap)
                return -EPROTO;
            memcpy(out, b, len - 1);
            out[len - 1] = 0;
            n->rpos += len + 1;
            return 0;
        }
        scanned = avail;
        if (avail >= cap + 2)
            return -EPROTO;
        int rc = rd_fill(n);
        if (rc)
            return rc;
    }
}

/* len bytes into dst: buffered bytes first, the rest read straight into dst. */
static int rd_bytes(rnode *n, void *dst, size_t len)
{
    size_t avail = n->rlen - n->rpos, take = avail < len ? avail : len;
    memcpy(dst, n->rb + n->rpos, take);
    n->rpos += take;
    char *d = (char *)dst + take;
    len -= take;
    while (len) {
        ssize_t g = read(n->c->fd, d, len);
        if (g > 0) {
            d += g;
            len -= (size_t)g;
        } else if (!(g < 0 && errno == EINTR))
            return rd_err(g);
    }
    return 0;
}

static int rd_skip(rnode *n, size_t len)
{
    while (len) {
        if (n->rpos == n->rlen) {
            int rc = rd_fill(n);
            if (rc)
                return rc;
        }
        size_t avail = n->rlen - n->rpos, take = avail < len ? avail : len;
        n->rpos += take;
        len -= take;
    }
    return 0;
}

static int parse_ll(const char *s, long long *v)
{
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return (errno || end == s || *end) ? -EPROTO : 0;
}

/* An error reply: MOVED/ASK redirect the op (RES_REDIRECT), the rest map to a miss code. */
static int on_error(remote_ctx *r, rnode *from, rop *op, const char *msg)
{
    int moved = strncmp(msg, "MOVED ", 6) == 0, ask = strncmp(msg, "ASK ", 4) == 0;
    if (moved || ask) {
        const char *p = strchr(msg, ' ') + 1;
        char *end;
        long slot = strtol(p, &end, 10);
        const char *addr = end + 1, *colon = strrchr(addr, ':');
        if (*end != ' ' || !colon || slot < 0 || slot >= (long)REMOTE_SLOTS)
            return -EPROTO;
        char host[256];
        size_t hl = (size_t)(colon - addr);
        if (hl >= sizeof host)
            return -EPROTO;
        memcpy(host, addr, hl);
        host[hl] = 0;
        int ni = node_find(r, hl ? host : from->host, atoi(colon + 1), 1);
        if (ni < 0)
            return -EAGAIN;
        if (moved) {
            r->slot[slot] = (uint16_t)ni;
            r->nodes[ni]->is_master = 1;
            r->need_refresh = 1; /* a MOVED means resharding or failover: learn the rest */
            op->ask = NO_NODE;
            r->st.moved++;
        } else {
            op->ask = (uint16_t)ni;
            r->st.asked++;
        }
        return RES_REDIRECT;
    }
    if (!strncmp(msg, "CLUSTERDOWN", 11) || !strncmp(msg, "TRYAGAIN", 8) ||
        !strncmp(msg, "LOADING", 7) || !strncmp(msg, "MASTERDOWN", 10))
        return -EAGAIN;
    if (!strncmp(msg, "READONLY", 8)) { /* the map is stale: that node is a replica now */
        r->need_refresh = 1;
        return -EAGAIN;
    }
    return -EPROTO;
}

/* The value of a GET: verify into q->buf. *res = 0 or a miss code. Returns 0 or a
 * connection error (the stream is then lost). */
static int read_value(remote_ctx *r, rnode *n, remote_req *q, size_t bulk, int *res)
{
    remote_hdr h;
    int rc;
    if (bulk < REMOTE_HDR_BYTES) {
        *res = -EBADMSG;
        return rd_skip(n, bulk);
    }
    if ((rc = rd_bytes(n, &h, sizeof h)))
        return rc;
    bulk -= sizeof h;
    if (h.magic != REMOTE_MAGIC || h.version != REMOTE_VERSION ||
        h.hdr_sum != XXH32(&h, offsetof(remote_hdr, hdr_sum), 0) ||
        (uint64_t)h.n_units * 4u + h.payload_len != bulk) {
        *res = -EBADMSG;
        return rd_skip(n, bulk);
    }
    if (h.ns != q->ns || h.key != q->key || h.n_units != q->n_units) {
        *res = -ESTALE;
        return rd_skip(n, bulk);
    }
    XXH3_64bits_reset(&r->xs);
    size_t ub = (size_t)h.n_units * 4u, off = 0;
    int same = 1;
    while (off < ub) {
        size_t k = ub - off < RB_CAP ? ub - off : RB_CAP;
        if ((rc = rd_bytes(n, r->cmpbuf, k)))
            return rc;
        same = same && memcmp(r->cmpbuf, (const char *)q->units + off, k) == 0;
        XXH3_64bits_update(&r->xs, r->cmpbuf, k);
        off += k;
    }
    if (!same) {
        *res = -ESTALE; /* a key collision: another prefix's block under this key */
        return rd_skip(n, h.payload_len);
    }
    if (h.payload_len > q->len) {
        q->len = h.payload_len;
        *res = -ERANGE;
        return rd_skip(n, h.payload_len);
    }
    if ((rc = rd_bytes(n, q->buf, h.payload_len)))
        return rc;
    XXH3_64bits_update(&r->xs, q->buf, h.payload_len);
    q->len = h.payload_len;
    *res = XXH3_64bits_digest(&r->xs) == h.data_sum ? 0 : -EBADMSG;
    return 0;
}

/* One reply of op (kind) from node n. *res: 0, a miss/put code, or RES_REDIRECT.
 * Returns 0 or a connection/protocol error (the node must be dropped). */
static int read_reply(remote_ctx *r, rnode *n, int kind, rop *op, remote_req *q, int *res)
{
    char line[512];
    long long v;
    int rc;
    if (op->ask != NO_NODE && r->nodes[op->ask] == n) { /* the ASKING we sent first */
        if ((rc = rd_line(n, line, sizeof line)))
            return rc;
    }
    if ((rc = rd_line(n, line, sizeof line)))
        return rc;
    switch (line[0]) {
    case '-':
        *res = on_error(r, n, op, line + 1);
        return 0;
    case '+':
        *res = kind == OP_SET && strcmp(line, "+OK") == 0 ? 0 : -EPROTO;
        return 0;
    case ':':
        if (parse_ll(line + 1, &v))
            return -EPROTO;
        *res = kind == OP_DEL ? (v > 0 ? 0 : -ENOENT) : -EPROTO;
        return 0;
    case '$':
        if (parse_ll(line + 1, &v) || v < -1)
            return -EPROTO;
        if (v == -1) {
            *res = kind == OP_GET ? -ENOENT : -EPROTO;
            return 0;
        }
        if (kind == OP_GET)
            rc = read_value(r, n, q, (size_t)v, res);
        else {
            *res = -EPROTO;
            rc = rd_skip(n, (size_t)v);
        }
        if (rc)
            return rc;
        if ((rc = rd_line(n, line, sizeof line)) || line[0] != 0)
            return rc ? rc : -EPROTO;
        return 0;
    default:
        return -EPROTO; /* arrays and the rest never answer GET/SET/UNLINK */
    }
}

/* ---------------------------------------------------------------- batches */

static int scratch(remote_ctx *r, size_t n)
{
    if (n <= r->scratch_n)
        return 0;
    size_t m = n < 64 ? 64 : n;
    rop *ops = util_realloc(r->ops, m * sizeof *ops);
    if (!ops)
        return -ENOMEM;
    r->ops = ops;
    char *keys = util_realloc(r->keys, m * REMOTE_KEY_MAX);
    if (!keys)
        return -ENOMEM;
    r->keys = keys;
    char *cmds = util_realloc(r->cmds, m * CMD_SLOT);
    if (!cmds)
        return -ENOMEM;
    r->cmds = cmds;
    struct iovec *iov = util_realloc(r->iov, (m * IOV_PER_OP + 1) * sizeof *iov);
    if (!iov)
        return -ENOMEM;
    r->iov = iov;
    r->iov_cap = m * IOV_PER_OP + 1;
    r->scratch_n = m;
    return 0;
}

/* Build the RESP of op i into cmds[i] (prefix [+ header] at 0, suffix at CMD_SUFFIX_OFF).
 * Returns the prefix length; the suffix length goes to *slen. */
static size_t build_cmd(remote_ctx *r, int kind, size_t i, const remote_req *q, uint64_t ttl_ms,
                        size_t *slen)
{
    char *c = r->cmds + i * CMD_SLOT, *key = r->keys + i * REMOTE_KEY_MAX;
    size_t klen = r->ops[i].klen, p;
    *slen = 0;
    if (kind == OP_GET || kind == OP_DEL) {
        p = (size_t)sprintf(c, "*2\r\n%s\r\n$%zu\r\n", kind == OP_GET ? "$3\r\nGET" : "$6\r\nUNLINK",
                            klen);
        memcpy(c + p, key, klen);
        memcpy(c + p + klen, "\r\n", 2);
        return p + klen + 2;
    }
    size_t vlen = REMOTE_HDR_BYTES + (size_t)q->n_units * 4u + q->len;
    p = (size_t)sprintf(c, "*%d\r\n$3\r\nSET\r\n$%zu\r\n", ttl_ms ? 5 : 3, klen);
    memcpy(c + p, key, klen);
    p += klen;
    p += (size_t)sprintf(c + p, "\r\n$%zu\r\n", vlen);
    remote_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = REMOTE_MAGIC;
    h.version = REMOTE_VERSION;
    h.n_units = q->n_units;
    h.ns = q->ns;
    h.key = q->key;
    h.payload_len = q->len;
    XXH3_64bits_reset(&r->xs);
    if (q->n_units)
        XXH3_64bits_update(&r->xs, q->units, (size_t)q->n_units * 4u);
    XXH3_64bits_update(&r->xs, q->buf, q->len);
    h.data_sum = XXH3_64bits_digest(&r->xs);
    h.hdr_sum = XXH32(&h, offsetof(remote_hdr, hdr_sum), 0);
    memcpy(c + p, &h, sizeof h);
    p += sizeof h;
    char *s = c + CMD_SUFFIX_OFF;
    if (ttl_ms) {
        char t[24];
        int tl = sprintf(t, "%llu", (unsigned long long)ttl_ms);
        *slen = (size_t)sprintf(s, "\r\n$2\r\nPX\r\n$%d\r\n%s\r\n", tl, t);
    } else {
        *slen = (size_t)sprintf(s, "\r\n");
    }
    return p;
}

static size_t op_bytes(int kind, const remote_req *q)
{
    return kind == OP_DEL ? 64 : q->len + (size_t)q->n_units * 4u + REMOTE_HDR_BYTES;
}

static void count_result(remote_ctx *r, int kind, int res)
{
    remote_stats *s = &r->st;
    if (kind == OP_GET) {
        switch (res) {
        case 0: s->hits++; break;
        case -ENOENT: s->miss_absent++; break;
        case -ESTALE: s->miss_stale++; break;
        case -EBADMSG: s->miss_corrupt++; break;
        case -ERANGE: s->miss_range++; break;
        case -ENOTCONN: s->miss_down++; break;
        case -ETIMEDOUT: s->miss_timeout++; break;
        case -EAGAIN: s->miss_cluster++; break;
        default: s->miss_error++; break;
        }
    } else if (kind == OP_SET) {
        if (res == 0)
            s->puts_ok++;
        else if (res == -ETIME)
            s->puts_unreplicated++;
        else
            s->puts_failed++;
    }
}

/* Whether some master answers a PING now (backoffs respected). Asked only when no request of
 * a batch got an answer, so its round trips are paid only in that rare case. */
static int any_master_up(remote_ctx *r)
{
    for (uint32_t i = 0; i < r->n_nodes; i++) {
        rnode *n = r->nodes[i];
        if (!n->is_master || node_conn(r, n))
            continue;
        const char *argv[1] = {"PING"};
        size_t lens[1] = {4};
        redisReply *rep = NULL;
        int rc = ctl_send(n, 1, argv, lens);
        if (!rc)
            rc = ctl_recv(n, &rep);
        if (rep)
            freeReplyObject(rep);
        if (!rc)
            return 1;
        if (rc != -ENOMEM)
            node_down(r, n);
    }
    return 0;
}

/* Run one batch. Returns the count of res == 0, or -ENOTCONN when no master answered and none
 * can be reached now. */
static int run_batch(remote_ctx *r, int kind, remote_req *reqs, size_t n, uint64_t ttl_ms,
                     unsigned flags)
{
    int rc = scratch(r, n);
    if (rc)
        return rc;
    maybe_refresh(r);
    uint64_t t0 = util_now_ns(), moved_bytes = 0;
    int answered = 0, ok = 0; /* answered: some master replied */
    for (size_t i = 0; i < n; i++) {
        rop *op = &r->ops[i];
        int kl = remote_key(r->salt, reqs[i].ns, reqs[i].key, r->keys + i * REMOTE_KEY_MAX,
                            REMOTE_KEY_MAX);
        op->klen = (uint16_t)kl;
        op->slot = (uint16_t)remote_slot(r->keys + i * REMOTE_KEY_MAX, (size_t)kl);
        op->ask = NO_NODE;
        op->rounds = 0;
        op->done = 0;
        reqs[i].res = -EAGAIN;
    }
    size_t w0 = 0;
    while (w0 < n) {
        size_t w1 = w0;
        uint64_t wbytes = 0;
        while (w1 < n && (w1 == w0 || wbytes + op_bytes(kind, &reqs[w1]) <= r->o.window_bytes))
            wbytes += op_bytes(kind, &reqs[w1++]);
        for (;;) {
            /* assign every pending op of the window to its node's queue */
            for (uint32_t k = 0; k < r->n_nodes; k++) {
                r->nodes[k]->q_head = r->nodes[k]->q_tail = UINT32_MAX;
                r->nodes[k]->q_n = 0;
                r->nodes[k]->q_err = 0;
            }
            size_t pending = 0;
            for (size_t i = w0; i < w1; i++) {
                rop *op = &r->ops[i];
                if (op->done)
                    continue;
                if (op->rounds++ > r->o.max_redirects) {
                    reqs[i].res = -EAGAIN;
                    op->done = 1;
                    continue;
                }
                uint16_t ni = op->ask != NO_NODE ? op->ask : r->slot[op->slot];
                if (ni == NO_NODE) {
                    reqs[i].res = -EAGAIN;
                    r->need_refresh = 1;
                    op->done = 1;
                    continue;
                }
                rnode *nd = r->nodes[ni];
                int c = node_conn(r, nd);
                if (c) {
                    r->need_refresh = 1; /* a replica may have taken over its slots */
                    reqs[i].res = c == -ENOMEM ? -ENOMEM : -ENOTCONN;
                    op->done = 1;
                    continue;
                }
                op->next = UINT32_MAX;
                if (nd->q_tail == UINT32_MAX)
                    nd->q_head = (uint32_t)i;
                else
                    r->ops[nd->q_tail].next = (uint32_t)i;
                nd->q_tail = (uint32_t)i;
                nd->q_n++;
                pending++;
            }
            if (!pending)
                break;
            /* send: every node's pipeline before reading any reply */
            for (uint32_t k = 0; k < r->n_nodes; k++) {
                rnode *nd = r->nodes[k];
                if (!nd->q_n)
                    continue;
                size_t v = 0;
                for (uint32_t i = nd->q_head; i != UINT32_MAX; i = r->ops[i].next) {
                    rop *op = &r->ops[i];
                    size_t plen, slen;
                    if (op->ask == k)
                        r->iov[v++] = (struct iovec){(void *)ASKING_CMD, sizeof ASKING_CMD - 1};
                    plen = build_cmd(r, kind, i, &reqs[i], ttl_ms, &slen);
                    r->iov[v++] = (struct iovec){r->cmds + i * CMD_SLOT, plen};
                    if (kind == OP_SET) {
                        if (reqs[i].n_units)
                            r->iov[v++] = (struct iovec){(void *)reqs[i].units,
                                                         (size_t)reqs[i].n_units * 4u};
                        r->iov[v++] = (struct iovec){reqs[i].buf, reqs[i].len};
                        r->iov[v++] = (struct iovec){r->cmds + i * CMD_SLOT + CMD_SUFFIX_OFF, slen};
                    }
                    if (v + IOV_PER_OP + 1 > r->iov_cap || i == nd->q_tail) {
                        int last = i == nd->q_tail;
                        if (last && kind == OP_SET && (flags & REMOTE_PUT_DURABLE))
                            r->iov[v++] = (struct iovec){nd->wait_cmd, nd->wait_len};
                        int e = send_all(nd->c->fd, r->iov, v);
                        v = 0;
                        if (e) {
                            nd->q_err = e;
                            break;
                        }
                    }
                }
            }
            /* receive, node by node, in queue order */
            for (uint32_t k = 0; k < r->n_nodes; k++) {
                rnode *nd = r->nodes[k];
                if (!nd->q_n)
                    continue;
                for (uint32_t i = nd->q_head; i != UINT32_MAX; i = r->ops[i].next) {
                    rop *op = &r->ops[i];
                    int res = 0;
                    if (!nd->q_err) {
                        int e = read_reply(r, nd, kind, op, &reqs[i], &res);
                        if (e)
                            nd->q_err = e == -ETIMEDOUT ? -ETIMEDOUT : -ENOTCONN;
                        else
                            answered = 1;
                    }
                    if (nd->q_err)
                        res = nd->q_err;
                    if (res == RES_REDIRECT)
                        continue; /* another round */
                    if (op->ask == k)
                        op->ask = NO_NODE;
                    reqs[i].res = res;
                    op->done = 1;
                }
                if (!nd->q_err && kind == OP_SET && (flags & REMOTE_PUT_DURABLE)) {
                    char line[64];
                    long long acks = 0;
                    int e = rd_line(nd, line, sizeof line);
                    if (e)
                        nd->q_err = e;
                    else if (line[0] != ':' || parse_ll(line + 1, &acks))
                        acks = 0;
                    if (acks < 1)
                        for (uint32_t i = nd->q_head; i != UINT32_MAX; i = r->ops[i].next)
                            if (r->ops[i].done && reqs[i].res == 0)
                                reqs[i].res = -ETIME;
                }
                if (nd->q_err || nd->rpos != nd->rlen) /* a lost or desynchronised stream */
                    node_down(r, nd);
            }
        }
        w0 = w1;
    }
    for (size_t i = 0; i < n; i++) {
        count_result(r, kind, reqs[i].res);
        if (reqs[i].res == 0) {
            ok++;
            if (kind != OP_DEL)
                moved_bytes += reqs[i].len;
        }
    }
    if (kind == OP_GET)
        r->st.bytes_read += moved_bytes;
    else if (kind == OP_SET)
        r->st.bytes_written += moved_bytes;
    uint64_t dt = util_now_ns() - t0;
    if (moved_bytes >= BW_MIN_SAMPLE && dt > 0 && kind != OP_DEL)
        ewma(kind == OP_GET ? &r->st.read_bw : &r->st.write_bw, (double)moved_bytes * 1e9 / (double)dt);
    if (!answered && n > 0 && !any_master_up(r))
        return -ENOTCONN;
    return ok;
}

static int check_reqs(const remote_req *reqs, size_t n, int kind)
{
    if (!reqs && n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        const remote_req *q = &reqs[i];
        if (kind == OP_DEL)
            continue;
        if (q->n_units > REMOTE_MAX_UNITS || (q->n_units && !q->units) || !q->buf)
            return -EINVAL;
        if (kind == OP_SET &&
            (q->len == 0 || q->len > (512ull << 20) - REMOTE_HDR_BYTES - (uint64_t)q->n_units * 4u))
            return -EINVAL;
    }
    if (n > UINT32_MAX / 2)
        return -EINVAL;
    return 0;
}

/* The public batch calls: check, count, run under the context's mutex. */
static int batch(remote_ctx *r, int op, remote_req *reqs, size_t n, uint64_t ttl_ms,
                 unsigned flags)
{
    int rc = check_reqs(reqs, n, op);
    if (rc)
        return rc;
    pthread_mutex_lock(&r->mu);
    *(op == OP_SET ? &r->st.puts : op == OP_GET ? &r->st.gets : &r->st.dels) += n;
    rc = run_batch(r, op, reqs, n, ttl_ms, flags);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int remote_put_batch(remote_ctx *r, remote_req *reqs, size_t n, uint64_t ttl_ms, unsigned flags)
{
    if (!r || (flags & ~REMOTE_PUT_DURABLE))
        return -EINVAL;
    return batch(r, OP_SET, reqs, n, ttl_ms, flags);
}

int remote_get_batch(remote_ctx *r, remote_req *reqs, size_t n)
{
    return r ? batch(r, OP_GET, reqs, n, 0, 0) : -EINVAL;
}

int remote_del_batch(remote_ctx *r, remote_req *reqs, size_t n)
{
    return r ? batch(r, OP_DEL, reqs, n, 0, 0) : -EINVAL;
}

/* ---------------------------------------------------------------- control commands */

/* A command built for ctl_run: argv/lens owned by the caller. */
typedef struct ctl_cmd {
    int argc;
    const char **argv;
    const size_t *lens;
} ctl_cmd;

/*
 * Run cmds[0..n) pipelined on the master of `key`'s slot, following MOVED/ASK. rep[0..n)
 * receive the replies (caller frees with freeReplyObject). 0; -ENOTCONN; -ETIMEDOUT;
 * -EAGAIN (no owner / redirects exhausted); -ENOMEM.
 */
static int ctl_run(remote_ctx *r, const char *key, size_t klen, const ctl_cmd *cmds, size_t n,
                   redisReply **rep)
{
    unsigned slot = remote_slot(key, klen);
    uint16_t ask = NO_NODE;
    for (unsigned round = 0; round <= r->o.max_redirects; round++) {
        uint16_t ni = ask != NO_NODE ? ask : r->slot[slot];
        if (ni == NO_NODE) {
            r->need_refresh = 1;
            return -EAGAIN;
        }
        rnode *nd = r->nodes[ni];
        int rc = node_conn(r, nd);
        if (rc)
            return rc;
        if (ask != NO_NODE) {
            struct iovec v = {(void *)ASKING_CMD, sizeof ASKING_CMD - 1};
            rc = send_all(nd->c->fd, &v, 1);
        }
        for (size_t i = 0; i < n && !rc; i++)
            rc = ctl_send(nd, cmds[i].argc, cmds[i].argv, cmds[i].lens);
        redisReply *tmp = NULL;
        if (!rc && ask != NO_NODE && !(rc = ctl_recv(nd, &tmp)))
            freeReplyObject(tmp);
        size_t got = 0;
        for (; got < n && !rc; got++)
            rc = ctl_recv(nd, &rep[got]);
        if (rc) {
            while (got)
                freeReplyObject(rep[--got]);
            if (rc != -ENOMEM)
                node_down(r, nd);
            return rc;
        }
        int redirect = 0;
        ask = NO_NODE;
        for (size_t i = 0; i < n; i++) {
            if (rep[i]->type == REDIS_REPLY_ERROR &&
                (!strncmp(rep[i]->str, "MOVED ", 6) || !strncmp(rep[i]->str, "ASK ", 4))) {
                rop tmpop = {.ask = NO_NODE};
                if (on_error(r, nd, &tmpop, rep[i]->str) == RES_REDIRECT) {
                    redirect = 1;
                    ask = tmpop.ask;
                }
                break;
            }
        }
        if (!redirect)
            return 0;
        for (size_t i = 0; i < n; i++)
            freeReplyObject(rep[i]);
    }
    return -EAGAIN;
}

static int reply_status(const redisReply *rp)
{
    if (rp->type != REDIS_REPLY_ERROR)
        return 0;
    return (!strncmp(rp->str, "CLUSTERDOWN", 11) || !strncmp(rp->str, "TRYAGAIN", 8) ||
            !strncmp(rp->str, "LOADING", 7))
               ? -EAGAIN
               : -EPROTO;
}

static void free_replies(redisReply **rep, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
}

int remote_publish(remote_ctx *r, const char *engine, uint64_t ns, const uint64_t *keys,
                   size_t n, uint64_t ttl_ms, unsigned flags)
{
    if (!r || !engine_ok(engine) || (n && !keys) ||
        (flags & ~(REMOTE_PUB_REPLACE | REMOTE_PUB_REMOVE)) ||
        (flags & (REMOTE_PUB_REPLACE | REMOTE_PUB_REMOVE)) == (REMOTE_PUB_REPLACE | REMOTE_PUB_REMOVE))
        return -EINVAL;
    if (!ttl_ms)
        ttl_ms = 60000;
    char hkey[REMOTE_KEY_MAX + REMOTE_ENGINE_MAX + 16], rkey[REMOTE_KEY_MAX + 16];
    char ttl_s[24], exp_s[24], prune_s[24];
    int hl = snprintf(hkey, sizeof hkey, "kvt:%s:holders:%s", r->salt, engine);
    int rl = snprintf(rkey, sizeof rkey, "kvt:%s:engines", r->salt);
    snprintf(ttl_s, sizeof ttl_s, "%llu", (unsigned long long)ttl_ms);
    uint64_t now = wall_ms();
    snprintf(exp_s, sizeof exp_s, "%llu", (unsigned long long)(now + ttl_ms));
    snprintf(prune_s, sizeof prune_s, "(%llu",
             (unsigned long long)(now > REGISTRY_PRUNE_MS ? now - REGISTRY_PRUNE_MS : 0));

    size_t chunks = (n + PUB_CHUNK - 1) / PUB_CHUNK;
    size_t ncmd = chunks + 2; /* [DEL] SADD/SREM... PEXPIRE */
    ctl_cmd *cmds = util_calloc(ncmd, sizeof *cmds);
    redisReply **rep = util_calloc(ncmd > 2 ? ncmd : 2, sizeof *rep);
    const char **argv = util_malloc((n + 2 * chunks + 1) * sizeof *argv);
    size_t *lens = util_malloc((n + 2 * chunks + 1) * sizeof *lens);
    unsigned char *mem = util_malloc(n * 16 + 1);
    int rc = 0;
    if (!cmds || !rep || !argv || !lens || !mem) {
        rc = -ENOMEM;
        goto out;
    }
    const char *dargv[2] = {"DEL", hkey};
    size_t dlens[2] = {3, (size_t)hl};
    size_t c = 0, a = 0;
    if (flags & REMOTE_PUB_REPLACE)
        cmds[c++] = (ctl_cmd){2, dargv, dlens};
    for (size_t k = 0; k < chunks; k++) {
        size_t lo = k * PUB_CHUNK, hi = lo + PUB_CHUNK < n ? lo + PUB_CHUNK : n;
        cmds[c] = (ctl_cmd){(int)(hi - lo + 2), argv + a, lens + a};
        argv[a] = (flags & REMOTE_PUB_REMOVE) ? "SREM" : "SADD";
        lens[a++] = 4;
        argv[a] = hkey;
        lens[a++] = (size_t)hl;
        for (size_t i = lo; i < hi; i++) {
            memcpy(mem + i * 16, &ns, 8);
            memcpy(mem + i * 16 + 8, &keys[i], 8);
            argv[a] = (const char *)mem + i * 16;
            lens[a++] = 16;
        }
        c++;
    }
    const char *pargv[3] = {"PEXPIRE", hkey, ttl_s};
    size_t plens[3] = {7, (size_t)hl, strlen(ttl_s)};
    cmds[c++] = (ctl_cmd){3, pargv, plens};
    pthread_mutex_lock(&r->mu);
    maybe_refresh(r);
    rc = ctl_run(r, hkey, (size_t)hl, cmds, c, rep);
    if (rc == 0) {
        for (size_t i = 0; i < c && !rc; i++)
            rc = reply_status(rep[i]);
        free_replies(rep, c);
        memset(rep, 0, c * sizeof *rep);
    }
    if (rc == 0) { /* the registry: who may hold anything; liveness is the set's TTL */
        const char *zargv[4] = {"ZADD", rkey, exp_s, engine};
        size_t zlens[4] = {4, (size_t)rl, strlen(exp_s), strlen(engine)};
        const char *xargv[4] = {"ZREMRANGEBYSCORE", rkey, "-inf", prune_s};
        size_t xlens[4] = {16, (size_t)rl, 4, strlen(prune_s)};
        ctl_cmd z[2] = {{4, zargv, zlens}, {4, xargv, xlens}};
        rc = ctl_run(r, rkey, (size_t)rl, z, 2, rep);
        if (rc == 0) {
            rc = reply_status(rep[0]);
            free_replies(rep, 2);
            memset(rep, 0, 2 * sizeof *rep);
        }
    }
    pthread_mutex_unlock(&r->mu);
out:
    util_free(cmds);
    util_free(rep);
    util_free(argv);
    util_free(lens);
    util_free(mem);
    return rc;
}

static int holder_cmp(const void *a, const void *b)
{
    const remote_holder *x = a, *y = b;
    if (x->blocks != y->blocks)
        return x->blocks > y->blocks ? -1 : 1;
    return strcmp(x->engine, y->engine);
}

int remote_holders(remote_ctx *r, uint64_t ns, const uint64_t *keys, size_t n,
                   remote_holder *out, size_t cap, size_t *n_out)
{
    if (!r || (n && !keys) || (cap && !out) || !n_out)
        return -EINVAL;
    *n_out = 0;
    if (n == 0)
        return 0;
    if (n > PUB_CHUNK)
        n = PUB_CHUNK; /* a routing hint: 1024 blocks (16k tokens at 16) is deep enough */
    char rkey[REMOTE_KEY_MAX + 16], lo_s[24];
    int rl = snprintf(rkey, sizeof rkey, "kvt:%s:engines", r->salt);
    uint64_t now = wall_ms();
    snprintf(lo_s, sizeof lo_s, "%llu", (unsigned long long)(now > 10000 ? now - 10000 : 0));
    const char **argv = util_malloc((n + 2) * sizeof *argv);
    size_t *lens = util_malloc((n + 2) * sizeof *lens);
    unsigned char *mem = util_malloc(n * 16);
    remote_holder *all = NULL;
    redisReply *eng = NULL;
    int rc = 0;
    if (!argv || !lens || !mem) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(mem + i * 16, &ns, 8);
        memcpy(mem + i * 16 + 8, &keys[i], 8);
        argv[i + 2] = (const char *)mem + i * 16;
        lens[i + 2] = 16;
    }
    pthread_mutex_lock(&r->mu);
    maybe_refresh(r);
    /* skew allowance: registry entries expired up to 10 s ago are still asked */
    const char *zargv[4] = {"ZRANGEBYSCORE", rkey, lo_s, "+inf"};
    size_t zlens[4] = {13, (size_t)rl, strlen(lo_s), 4};
    ctl_cmd z = {4, zargv, zlens};
    rc = ctl_run(r, rkey, (size_t)rl, &z, 1, &eng);
    if (rc == 0 && eng->type != REDIS_REPLY_ARRAY)
        rc = eng->type == REDIS_REPLY_ERROR ? reply_status(eng) : -EPROTO;
    if (rc == 0 && eng->elements &&
        !(all = util_calloc(eng->elements, sizeof *all)))
        rc = -ENOMEM;
    size_t found = 0;
    for (size_t e = 0; rc == 0 && e < eng->elements; e++) {
        redisReply *name = eng->element[e], *m = NULL;
        if (name->type != REDIS_REPLY_STRING || !engine_ok(name->str))
            continue;
        char hkey[REMOTE_KEY_MAX + REMOTE_ENGINE_MAX + 16];
        int hl = snprintf(hkey, sizeof hkey, "kvt:%s:holders:%s", r->salt, name->str);
        argv[0] = "SMISMEMBER";
        lens[0] = 10;
        argv[1] = hkey;
        lens[1] = (size_t)hl;
        ctl_cmd s = {(int)n + 2, argv, lens};
        int e2 = ctl_run(r, hkey, (size_t)hl, &s, 1, &m);
        if (e2 == -ENOMEM) {
            rc = e2;
            break;
        }
        if (e2) /* that engine's set lives on a master that is down: skip it */
            continue;
        if (m->type == REDIS_REPLY_ERROR) {
            rc = reply_status(m);
        } else if (m->type == REDIS_REPLY_ARRAY) {
            uint32_t lead = 0;
            while (lead < m->elements && m->element[lead]->type == REDIS_REPLY_INTEGER &&
                   m->element[lead]->integer == 1)
                lead++;
            if (lead) {
                snprintf(all[found].engine, sizeof all[found].engine, "%s", name->str);
                all[found++].blocks = lead;
            }
        }
        freeReplyObject(m);
    }
    pthread_mutex_unlock(&r->mu);
    if (rc == 0) {
        qsort(all, found, sizeof *all, holder_cmp);
        memcpy(out, all, (found < cap ? found : cap) * sizeof *all);
        *n_out = found;
    }
out:
    if (eng)
        freeReplyObject(eng);
    util_free(all);
    util_free(argv);
    util_free(lens);
    util_free(mem);
    return rc;
}

/* ---------------------------------------------------------------- lifecycle, probe, stats */

void remote_opts_init(remote_opts *o)
{
    memset(o, 0, sizeof *o);
}

static int parse_seeds(remote_ctx *r, const char *seeds)
{
    const char *p = seeds;
    unsigned count = 0;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char buf[300];
        if (len == 0 || len >= sizeof buf || ++count > MAX_SEEDS)
            return -EINVAL;
        memcpy(buf, p, len);
        buf[len] = 0;
        char *colon = strrchr(buf, ':'), *e;
        if (!colon || colon == buf)
            return -EINVAL;
        *colon = 0;
        long port = strtol(colon + 1, &e, 10);
        if (*e || port <= 0 || port > 65535)
            return -EINVAL;
        int ni = node_find(r, buf, (int)port, 1);
        if (ni < 0)
            return ni;
        p += len;
        if (*p == ',')
            p++;
    }
    return count ? 0 : -EINVAL;
}

int remote_open(const char *seeds, const char *salt, const remote_opts *opts, remote_ctx **out)
{
    if (!seeds || !out || !salt_ok(salt))
        return -EINVAL;
    *out = NULL;
    remote_ctx *r = util_calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    if (opts)
        r->o = *opts;
    if (!r->o.connect_timeout_ms)
        r->o.connect_timeout_ms = 1000;
    if (!r->o.io_timeout_ms)
        r->o.io_timeout_ms = 2000;
    if (!r->o.backoff_min_ms)
        r->o.backoff_min_ms = 50;
    if (!r->o.backoff_max_ms)
        r->o.backoff_max_ms = 2000;
    if (!r->o.max_redirects)
        r->o.max_redirects = 5;
    if (!r->o.wait_timeout_ms)
        r->o.wait_timeout_ms = 1000;
    if (!r->o.window_bytes)
        r->o.window_bytes = 64ull << 20;
    r->o.user = r->o.password = NULL; /* copied below: the caller's strings may go away */
    int rc = -EINVAL;
    if (r->o.backoff_max_ms < r->o.backoff_min_ms || r->o.max_redirects > 100)
        goto fail_free;
    if (opts && opts->password) {
        char *pw = util_malloc(strlen(opts->password) + 1);
        char *us = opts->user ? util_malloc(strlen(opts->user) + 1) : NULL;
        if (!pw || (opts->user && !us)) {
            util_free(pw);
            util_free(us);
            rc = -ENOMEM;
            goto fail_free;
        }
        strcpy(pw, opts->password);
        if (us)
            strcpy(us, opts->user);
        r->o.password = pw;
        r->o.user = us;
    }
    snprintf(r->salt, sizeof r->salt, "%s", salt);
    for (unsigned s = 0; s < REMOTE_SLOTS; s++)
        r->slot[s] = NO_NODE;
    if (pthread_mutex_init(&r->mu, NULL)) {
        rc = -ENOMEM;
        goto fail_opts;
    }
    if (!(r->cmpbuf = util_malloc(RB_CAP))) {
        rc = -ENOMEM;
        goto fail_mutex;
    }
    if ((rc = parse_seeds(r, seeds)))
        goto fail_mutex;
    rc = -ENOTCONN;
    for (uint32_t i = 0; i < r->n_nodes && rc != 0; i++) {
        int e = refresh_from(r, r->nodes[i]);
        if (e == -ENOMEM || e == -EPROTO || e == 0)
            rc = e;
    }
    if (rc)
        goto fail_mutex;
    r->last_refresh = util_now_ns();
    *out = r;
    return 0;
fail_mutex:
    pthread_mutex_destroy(&r->mu);
fail_opts:
    for (uint32_t i = 0; i < r->n_nodes; i++) {
        if (r->nodes[i]->c)
            redisFree(r->nodes[i]->c);
        util_free(r->nodes[i]->rb);
        util_free(r->nodes[i]);
    }
    util_free(r->nodes);
    util_free(r->cmpbuf);
    util_free((void *)r->o.password);
    util_free((void *)r->o.user);
fail_free:
    util_free(r);
    return rc;
}

void remote_close(remote_ctx *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->n_nodes; i++) {
        if (r->nodes[i]->c)
            redisFree(r->nodes[i]->c);
        util_free(r->nodes[i]->rb);
        util_free(r->nodes[i]);
    }
    pthread_mutex_destroy(&r->mu);
    util_free(r->nodes);
    util_free(r->ops);
    util_free(r->keys);
    util_free(r->cmds);
    util_free(r->iov);
    util_free(r->cmpbuf);
    util_free((void *)r->o.password);
    util_free((void *)r->o.user);
    util_free(r);
}

int remote_probe(remote_ctx *r)
{
    if (!r)
        return -EINVAL;
    pthread_mutex_lock(&r->mu);
    if (r->need_refresh || util_now_ns() - r->last_refresh >= 1000000000ull)
        if (util_now_ns() - r->last_refresh >= REFRESH_MIN_NS)
            refresh_map(r);
    int up = 0;
    for (uint32_t i = 0; i < r->n_nodes; i++) {
        rnode *n = r->nodes[i];
        if (!n->is_master || node_conn(r, n))
            continue;
        const char *argv[1] = {"PING"};
        size_t lens[1] = {4};
        redisReply *rep = NULL;
        uint64_t t0 = util_now_ns();
        int rc = ctl_send(n, 1, argv, lens);
        if (!rc)
            rc = ctl_recv(n, &rep);
        if (rc) {
            if (rc != -ENOMEM)
                node_down(r, n);
            continue;
        }
        ewma(&r->st.latency_s, (double)(util_now_ns() - t0) * 1e-9);
        freeReplyObject(rep);
        up++;
    }
    pthread_mutex_unlock(&r->mu);
    return up;
}

void remote_get_stats(remote_ctx *r, remote_stats *st)
{
    if (!r || !st)
        return;
    pthread_mutex_lock(&r->mu);
    *st = r->st;
    st->masters = st->masters_up = st->slots_covered = 0;
    for (uint32_t i = 0; i < r->n_nodes; i++)
        if (r->nodes[i]->is_master) {
            st->masters++;
            st->masters_up += r->nodes[i]->c != NULL;
        }
    for (unsigned s = 0; s < REMOTE_SLOTS; s++)
        st->slots_covered += r->slot[s] != NO_NODE;
    pthread_mutex_unlock(&r->mu);
}
