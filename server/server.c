/*
 * server.c — `kvtier serve`: start-up, the epoll loop, client I/O (requests are parsed by
 * resp.c), worker threads, the graceful shutdown, and an in-process driver of the same
 * request path without sockets (srv_embed_*, for server/fuzz_resp.c). Threads and data
 * guards are described in srv.h.
 *
 * A client's input buffer:
 *
 *   in: [ consumed ........ | parsed-not-yet-run? no: commands run as they parse | partial ]
 *        0            in_pos                                                  in_len   in_cap
 *
 * Commands are parsed and run one by one from in_pos; argv points into the buffer, so the
 * buffer is never moved or compacted while a command of this client runs on a worker. When
 * a bulk string's length is known but its bytes have not all arrived, `need` (bytes from
 * in_pos) lets the loop skip re-parsing until they have, and the buffer is grown once to
 * hold exactly the command: a 64 MiB SET is read in place, without copies or rescans.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server.h"
#include "srv.h"

#define IN_INITIAL (16u * 1024)
#define READ_BUDGET (8u << 20)   /* bytes read from one client per event (fairness) */
#define WRITE_BUDGET (8u << 20)  /* bytes written to one client per event */
#define MAX_LISTENERS 16

enum { EP_LISTEN = 1, EP_CLIENT, EP_SIGNAL, EP_EVENT, EP_TIMER };

typedef struct ep_obj {
    int type;
    int fd;
} ep_obj;

typedef struct listener {
    ep_obj o;
    int is_unix;
} listener;

struct srv_client {
    ep_obj o;
    uint64_t id;
    char addr[96];
    char name[128];
    srv_tenant *tenant;
    int resp;
    char *in;
    size_t in_pos, in_len, in_cap;
    resp_req rq; /* the command being parsed/run: argv points into in */
    kv_ingest ig; /* a SET value being read into its DRAM blocks (ingest_*) */
    outq out;
    int busy, dead, close_after, eof, registered, ready;
    srv_client *ready_next; /* L.ready list */
    uint32_t ev_mask;
    uint64_t last_ms;
    uint64_t last_match; /* client_last_match */
    srv_client *prev, *next;
};

typedef struct job {
    struct job *next;
    srv_client *c;
    const srv_cmd *cmd;
    int argc;
    srv_arg *argv;
    srv_tenant *t;
    int resp;
    outq out;
    uint64_t t0;
} job;

/* Loop state: one server per process. */
static struct {
    srv s;
    int epfd;
    listener lis[MAX_LISTENERS];
    int n_lis;
    ep_obj sig, evt, tim;
    srv_client *clients; /* doubly linked, all live clients */
    srv_client *ready;   /* clients with runnable input and no event to wake them */
    /* worker pool */
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t jmu;
    pthread_cond_t jcv;
    job *jq_head, *jq_tail;
    job *done;
    int jstop;
    int jobs_in_flight;
    uint64_t stop_deadline_ms;
    /* monotonic ns at which the previous command of the current input batch ended (0: none
     * yet): a pipelined command's latency starts there, one clock read per command instead
     * of two (clock_gettime was 2-4 % of a pipelined SET's CPU on the development VM) */
    uint64_t cmd_end_ns;
    resp_req la; /* lookahead()'s parse of the commands ahead (loop thread) */
} L;

/* ---------------------------------------------------------------- small helpers */

uint64_t now_ms_real(void)
{
    /* the kernel tick's wall clock (1-4 ms resolution, no TSC read): expiry is ms, and
     * Redis itself compares against a time cached once per event-loop round */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t now_ns_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms_mono(void) { return now_ns_mono() / 1000000u; }

void srv_log(const srv *s, int level, const char *fmt, ...)
{
    if (s && level > s->cfg.loglevel)
        return;
    char ts[64];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%d %b %Y %H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%d:M %s %c %s\n", (int)getpid(), ts, level == 0 ? '#' : level == 1 ? '*' : '.',
            msg);
}

int arg_eq(const srv_arg *a, const char *s)
{
    size_t n = strlen(s);
    return a->n == n && strncasecmp(a->p, s, n) == 0;
}

int arg_ll(const srv_arg *a, long long *out)
{
    char b[32];
    if (a->n == 0 || a->n >= sizeof(b))
        return -1;
    memcpy(b, a->p, a->n);
    b[a->n] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(b, &end, 10);
    if (errno || *end || end == b || b[0] == ' ' || b[0] == '+')
        return -1;
    *out = v;
    return 0;
}

int arg_u64(const srv_arg *a, uint64_t *out)
{
    long long v;
    if (arg_ll(a, &v) || v < 0)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

void client_set_name(srv_client *c, const char *p, size_t n)
{
    if (n >= sizeof(c->name))
        n = sizeof(c->name) - 1;
    memcpy(c->name, p, n);
    c->name[n] = 0;
}
const char *client_name(const srv_client *c) { return c->name; }
uint64_t client_id(const srv_client *c) { return c->id; }
uint64_t *client_last_match(srv_client *c) { return &c->last_match; }

/* Per-tenant connection counts follow the client's tenant (accept as "default", AUTH). */
static void client_tenant_move(srv_client *c, srv_tenant *t)
{
    if (c->tenant == t)
        return;
    if (c->tenant)
        atomic_fetch_sub(&c->tenant->conn_open, 1);
    if (t) {
        atomic_fetch_add(&t->conn_open, 1);
        atomic_fetch_add(&t->conn_total, 1);
    }
    c->tenant = t;
}
void client_set_auth(srv_client *c, srv_tenant *t) { client_tenant_move(c, t); }
void client_set_resp(srv_client *c, int resp) { c->resp = resp; }
void client_close_after_reply(srv_client *c) { c->close_after = 1; }
const char *client_addr(const srv_client *c) { return c->addr; }

static srv_tenant *default_tenant(srv *s)
{
    for (int i = 0; i < s->cfg.n_tenants; i++)
        if (s->cfg.tenants[i]->nopass && strcmp(s->cfg.tenants[i]->name, "default") == 0)
            return s->cfg.tenants[i];
    return NULL;
}

/* ---------------------------------------------------------------- epoll interest */

static void client_update_events(srv_client *c)
{
    if (c->dead)
        return;
    srv *s = &L.s;
    uint32_t m = 0;
    int partial = c->in_len > c->in_pos;
    int want_in = !c->busy && !c->close_after && !c->eof && c->out.bytes < s->cfg.output_buffer_limit &&
                  (!s->stopping || partial);
    if (want_in)
        m |= EPOLLIN | EPOLLRDHUP; /* RDHUP only with IN: level-triggered, it would spin */
    if (c->out.bytes)
        m |= EPOLLOUT;
    if (c->registered && m == c->ev_mask)
        return;
    struct epoll_event ev = {.events = m, .data.ptr = c};
    if (epoll_ctl(L.epfd, c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->o.fd, &ev) == 0) {
        c->registered = 1;
        c->ev_mask = m;
    }
}

/* ---------------------------------------------------------------- clients */

static void client_free(srv_client *c)
{
    kv_ingest_end(&c->ig); /* a value cut off mid-way: its reservation goes back */
    outq_free(&c->out);
    free(c->in);
    resp_req_free(&c->rq);
    free(c);
}

static void client_close(srv_client *c, const char *why)
{
    srv *s = &L.s;
    if (c->dead)
        return;
    srv_log(s, 2, "client id=%" PRIu64 " addr=%s closed: %s", c->id, c->addr, why);
    if (c->registered)
        epoll_ctl(L.epfd, EPOLL_CTL_DEL, c->o.fd, NULL);
    close(c->o.fd);
    c->o.fd = -1;
    c->dead = 1;
    if (!c->busy)
        kv_ingest_end(&c->ig); /* a value cut off: its DRAM goes back now, not at free */
    if (c->prev)
        c->prev->next = c->next;
    else
        L.clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    atomic_fetch_sub(&s->n_clients, 1);
    if (c->tenant)
        atomic_fetch_sub(&c->tenant->conn_open, 1); /* c->tenant stays: a job may read it */
    if (!c->busy && !c->ready)
        client_free(c); /* else the job's completion or the ready list frees it */
}

static uint64_t args_bytes(const srv_client *c)
{
    uint64_t t = 0;
    for (int i = 0; i < c->rq.argc; i++)
        t += c->rq.argv[i].n;
    return t;
}

static void submit_job(srv_client *c, const srv_cmd *cmd)
{
    job *j = calloc(1, sizeof(*j));
    srv_arg *av = j ? malloc((size_t)c->rq.argc * sizeof(*av)) : NULL;
    if (!j || !av) {
        free(j);
        rp_err(&c->out, "OOM out of memory queueing the command");
        return;
    }
    memcpy(av, c->rq.argv, (size_t)c->rq.argc * sizeof(*av));
    j->c = c;
    j->cmd = cmd;
    j->argc = c->rq.argc;
    j->argv = av;
    j->t = c->tenant;
    j->resp = c->resp;
    j->t0 = now_ns_mono();
    c->busy = 1;
    atomic_fetch_add(&L.s.offloaded, 1);
    pthread_mutex_lock(&L.jmu);
    if (L.jq_tail)
        L.jq_tail->next = j;
    else
        L.jq_head = j;
    L.jq_tail = j;
    L.jobs_in_flight++;
    pthread_cond_signal(&L.jcv);
    pthread_mutex_unlock(&L.jmu);
}

static void run_command(srv_client *c)
{
    srv *s = &L.s;
    if (c->rq.argc == 0)
        return;
    atomic_fetch_add(&s->cmds_total, 1);
    const srv_cmd *cmd = cmd_lookup(c->rq.argv[0].p, c->rq.argv[0].n);
    if (!cmd) {
        char name[64], args[160] = "";
        size_t nn = c->rq.argv[0].n < 48 ? c->rq.argv[0].n : 48;
        memcpy(name, c->rq.argv[0].p, nn);
        name[nn] = 0;
        size_t al = 0;
        for (int i = 1; i < c->rq.argc && al < 120; i++) {
            size_t k = c->rq.argv[i].n < 24 ? c->rq.argv[i].n : 24;
            int w = snprintf(args + al, sizeof(args) - al, "'%.*s' ", (int)k, c->rq.argv[i].p);
            if (w > 0)
                al += (size_t)w;
        }
        for (char *p = name; *p; p++)
            if ((unsigned char)*p < 32 || *p == '\'')
                *p = '?';
        for (char *p = args; *p; p++)
            if ((unsigned char)*p < 32)
                *p = '?';
        atomic_fetch_add(&s->cmd_errors, 1);
        rp_err(&c->out, "unknown command '%s', with args beginning with: %s", name, args);
        return;
    }
    if (!c->tenant && !(cmd->flags & CF_NOAUTH)) {
        atomic_fetch_add(&s->cmd_errors, 1);
        rp_err(&c->out, "NOAUTH Authentication required.");
        return;
    }
    if ((cmd->arity > 0 && c->rq.argc != cmd->arity) || (cmd->arity < 0 && c->rq.argc < -cmd->arity)) {
        atomic_fetch_add(&s->cmd_errors, 1);
        rp_err(&c->out, "wrong number of arguments for '%s' command", cmd->name);
        return;
    }
    if (c->tenant)
        atomic_fetch_add_explicit(&c->tenant->commands, 1, memory_order_relaxed);
    if ((cmd->flags & CF_OFFLOAD) && L.n_threads > 0 && !L.jstop && !c->rq.ext_len &&
        args_bytes(c) >= s->cfg.offload_bytes) {
        submit_job(c, cmd);
        return;
    }
    cmdctx x = {.s = s, .c = c, .t = c->tenant, .resp = c->resp, .out = &c->out,
                .argc = c->rq.argc, .argv = c->rq.argv, .on_worker = 0,
                .ig = c->rq.ext_len ? &c->ig : NULL};
    uint64_t t0 = L.cmd_end_ns ? L.cmd_end_ns : now_ns_mono();
    cmd->fn(&x);
    if (x.offload) { /* the command wants a worker (I/O on nvme/disk, a flush) */
        L.cmd_end_ns = 0;
        submit_job(c, cmd);
        return;
    }
    L.cmd_end_ns = now_ns_mono();
    hist_observe(&s->hist[cmd->hclass], L.cmd_end_ns - t0);
}

int cmd_offload(cmdctx *x)
{
    if (x->on_worker || L.n_threads == 0 || L.jstop)
        return 0;
    x->offload = 1;
    return 1;
}

/* Make room for c->rq.need bytes from in_pos (or double when unknown). -1 over the limit. */
static int in_reserve(srv_client *c)
{
    srv *s = &L.s;
    if (c->in_pos) {
        memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
        c->in_len -= c->in_pos;
        c->in_pos = 0;
    }
    size_t want = c->in_cap ? c->in_cap : IN_INITIAL;
    if (c->rq.need && c->rq.need > want)
        want = c->rq.need;
    else if (c->in_len == c->in_cap)
        want = c->in_cap ? c->in_cap * 2 : IN_INITIAL;
    if (want > s->cfg.query_buffer_limit + INLINE_MAX)
        return -1;
    if (want != c->in_cap) {
        char *p = realloc(c->in, want);
        if (!p)
            return -1;
        c->in = p;
        c->in_cap = want;
    }
    return 0;
}

/*
 * Ingest: a SET whose value is large (ingest_min_bytes, 32 KiB, and up) and still arriving has its data
 * chain reserved in engine DRAM (kv_ingest_begin), and the rest of the value is read from
 * the socket straight into those blocks, as Redis reads a big argument straight into its
 * string: the bytes are copied once, by the kernel, not through the input buffer and then
 * into the arena. The input buffer keeps the request without the value's bytes; the parser
 * is told where they were (resp_req.ext_at/ext_len) and the SET commits the chain.
 * On the loop thread (socket clients: readv into the blocks; the in-process driver of the
 * fuzzer: copies); anything unusual (inline value, quota, no DRAM, a value already in the
 * buffer) takes the buffered path.
 */

/* Where byte off of ig's value goes: its address, and in *len how many bytes from there lie
 * in the same block (up to the value's end). */
static char *ingest_span(const kv_ingest *ig, uint64_t off, uint64_t *len)
{
    uint64_t bo = off % ig->block;
    *len = ig->block - bo < ig->len - off ? ig->block - bo : ig->len - off;
    return (char *)ig->ptrs[off / ig->block] + bo;
}

static void ingest_copy(kv_ingest *ig, const char *p, uint64_t n)
{
    while (n) {
        uint64_t k;
        char *d = ingest_span(ig, ig->got, &k);
        if (k > n)
            k = n;
        memcpy(d, p, k);
        ig->got += k;
        p += k;
        n -= k;
    }
}

/* The value is complete: zero the last block's tail, tell the parser where it was. */
static void ingest_done(srv_client *c)
{
    kv_ingest *ig = &c->ig;
    uint64_t tail = ig->len % ig->block;
    if (tail)
        memset((char *)ig->ptrs[ig->n - 1] + tail, 0, ig->block - tail);
    c->rq.ext_at = ig->at;
    c->rq.ext_len = ig->len;
}

/* A read(2) or readv(2) of c's socket returned r. The bytes are counted (net_in) and r
 * returned; 0: nothing there now (EAGAIN, EINTR: the level-triggered loop comes back);
 * -1: the peer ended its side (c->eof) or the socket failed (c is closed). */
static ssize_t sock_got(srv_client *c, ssize_t r)
{
    srv *s = &L.s;
    if (r < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        client_close(c, strerror(errno));
        return -1;
    }
    if (r == 0) {
        c->eof = 1;
        return -1;
    }
    atomic_fetch_add_explicit(&s->net_in, (uint64_t)r, memory_order_relaxed);
    if (c->tenant)
        atomic_fetch_add_explicit(&c->tenant->net_in, (uint64_t)r, memory_order_relaxed);
    return r;
}

static void ingest_start(srv_client *c)
{
    srv *s = &L.s;
    resp_req *q = &c->rq;
    if (!c->tenant || c->busy || c->ig.txn || q->ext_len || q->part_len < s->cfg.ingest_min_bytes ||
        q->part_idx != 2 || q->part_argc < 3 || !arg_eq(&q->argv[0], "set") ||
        q->part_len > s->cfg.max_value_bytes)
        return;
    size_t have = c->in_len - c->in_pos - q->part_at; /* value bytes already buffered */
    if (have >= q->part_len || kv_ingest_begin(s, c->tenant, &q->argv[1], q->part_len, &c->ig))
        return;
    ingest_copy(&c->ig, c->in + c->in_pos + q->part_at, have);
    c->ig.at = q->part_at;
    c->in_len = c->in_pos + q->part_at; /* the buffer keeps the request up to the value */
    q->need = 0;
    atomic_fetch_add_explicit(&s->values_in_place, 1, memory_order_relaxed);
}

/* Read more of an ingest's value into its blocks. 1: read something; 0: nothing there
 * (EAGAIN); -1: the client was closed (error) or sent EOF (c->eof). */
static int ingest_read(srv_client *c)
{
    kv_ingest *ig = &c->ig;
    struct iovec iov[64];
    int k = 0;
    for (uint64_t off = ig->got, len; off < ig->len && k < 64; k++, off += len) {
        iov[k].iov_base = ingest_span(ig, off, &len);
        iov[k].iov_len = len;
    }
    ssize_t r = sock_got(c, readv(c->o.fd, iov, k));
    if (r <= 0)
        return (int)r;
    ig->got += (uint64_t)r;
    if (ig->got == ig->len)
        ingest_done(c);
    return 1;
}

/*
 * Pipelined input: before running the complete commands in c's buffer one by one, tell the
 * engine which keys they will look up (kvt_lookahead_keys), so the cache misses of their
 * lookups overlap instead of coming one command after another. Parses ahead with its own
 * request (argv into c->in, nothing copied); stops at the first incomplete command. Only a
 * hint: the commands are parsed again and run in order as before.
 */
#define LOOKAHEAD_KEYS 32
#define LOOKAHEAD_BYTES 320 /* a meta block's header, key and small value */
static void lookahead(srv_client *c)
{
    srv *s = &L.s;
    kvt_ns *ns[LOOKAHEAD_KEYS];
    uint64_t keys[LOOKAHEAD_KEYS];
    size_t n = 0, pos = c->in_pos;
    if (!c->tenant)
        return;
    for (int k = 0; n < LOOKAHEAD_KEYS && pos < c->in_len; k++) {
        size_t consumed = 0;
        const char *err = NULL;
        if (resp_parse(&L.la, c->in + pos, c->in_len - pos, s->cfg.proto_max_bulk_len,
                       &consumed, &err) <= 0)
            break;
        pos += consumed;
        if (k == 0 && pos == c->in_len)
            return; /* one command: nothing to overlap */
        if (L.la.argc == 0)
            continue;
        const srv_cmd *cmd = cmd_lookup(L.la.argv[0].p, L.la.argv[0].n);
        if (cmd && cmd->first_key > 0)
            n += kv_lookahead(s, c->tenant, cmd->first_key, cmd->last_key, cmd->step,
                              L.la.argv, L.la.argc, ns + n, keys + n, LOOKAHEAD_KEYS - n);
    }
    if (n > 1)
        kvt_lookahead_keys(ns, keys, n, LOOKAHEAD_BYTES);
}

/* Run the complete commands in the input buffer (loop thread, client not busy).
 * Returns 1 when it stopped with complete input left (output full, busy, closing), 0 when
 * the input is used up or ends in an incomplete command. */
static int process_input(srv_client *c)
{
    srv *s = &L.s;
    int blocked = 0;
    L.cmd_end_ns = 0; /* a batch's first command starts its own clock */
    if (!c->busy && !c->dead && !c->rq.need && !c->ig.txn)
        lookahead(c);
    for (;;) {
        if (c->busy || c->dead || c->close_after || c->out.bytes >= s->cfg.output_buffer_limit) {
            blocked = c->in_len > c->in_pos;
            break;
        }
        if (c->ig.txn && c->ig.got < c->ig.len)
            break; /* the value is still arriving into its blocks */
        if (c->rq.need && c->in_len - c->in_pos < c->rq.need)
            break;
        size_t consumed = 0;
        const char *err = NULL;
        int r = resp_parse(&c->rq, c->in + c->in_pos, c->in_len - c->in_pos,
                           s->cfg.proto_max_bulk_len, &consumed, &err);
        if (r == 0) {
            ingest_start(c);
            break;
        }
        if (r < 0) {
            atomic_fetch_add(&s->proto_errors, 1);
            rp_err(&c->out, "%s", err);
            srv_log(s, 2, "client id=%" PRIu64 " protocol error: %s", c->id, err);
            c->close_after = 1;
            c->in_pos = c->in_len;
            break;
        }
        c->in_pos += consumed;
        run_command(c);
        if (c->rq.ext_len) { /* the request whose value came in place is done */
            c->rq.ext_len = 0;
            kv_ingest_end(&c->ig); /* unused if the SET failed before storing */
        }
    }
    if (!c->busy && c->eof && !c->close_after && !blocked) {
        c->close_after = 1; /* the peer shut its side: answer what it sent, then close */
        if (c->in_len > c->in_pos) { /* and say why its last request got no answer */
            atomic_fetch_add(&s->proto_errors, 1);
            rp_err(&c->out, "Protocol error: connection closed in the middle of a request "
                   "(%zu bytes of an incomplete request dropped)", c->in_len - c->in_pos);
            c->in_pos = c->in_len;
        }
    }
    if (!c->busy && c->in_pos == c->in_len) {
        c->in_pos = c->in_len = 0;
        if (c->in_cap > 4 * IN_INITIAL) { /* give big buffers back after a large value */
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
    return blocked;
}

/* Write what is queued; -1 when the client was closed. */
static int client_write(srv_client *c)
{
    srv *s = &L.s;
    size_t budget = WRITE_BUDGET;
    while (c->out.head && budget) {
        struct iovec iov[64];
        int n = 0;
        size_t tot = 0;
        for (ochunk *ch = c->out.head; ch && n < 64; ch = ch->next) {
            if (ch->off == ch->len) {
                if (ch->kind == OC_STREAM && ch->left) {
                    int rc = outq_refill(ch);
                    if (rc) {
                        srv_log(s, 0, "stream read failed: %s", kvt_strerror(rc));
                        client_close(c, "stream read failed");
                        return -1;
                    }
                } else {
                    continue;
                }
            }
            int m = ochunk_iov(ch, iov + n, 64 - n);
            for (int i = 0; i < m; i++)
                tot += iov[n + i].iov_len;
            n += m;
            if (ch->kind == OC_STREAM || tot >= budget)
                break; /* refill a stream only when its window is sent */
        }
        if (n == 0)
            break;
        ssize_t w = writev(c->o.fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return 0;
            client_close(c, strerror(errno));
            return -1;
        }
        atomic_fetch_add_explicit(&s->net_out, (uint64_t)w, memory_order_relaxed);
        if (c->tenant)
            atomic_fetch_add_explicit(&c->tenant->net_out, (uint64_t)w, memory_order_relaxed);
        c->out.bytes -= (uint64_t)w;
        c->last_ms = now_ms_mono(); /* a client that reads its replies is not idle */
        budget = (size_t)w >= budget ? 0 : budget - (size_t)w;
        size_t left = (size_t)w;
        while (c->out.head) {
            ochunk *ch = c->out.head;
            size_t avail = ch->len - ch->off;
            size_t k = left < avail ? left : avail;
            ch->off += k;
            left -= k;
            if (ch->off < ch->len || (ch->kind == OC_STREAM && ch->left))
                break;
            c->out.head = ch->next;
            if (!c->out.head)
                c->out.tail = NULL;
            ochunk_free(ch);
        }
        if ((size_t)w < tot)
            return 0; /* socket full */
    }
    if (!c->out.head && c->close_after && !c->busy) {
        client_close(c, "closed after reply");
        return -1;
    }
    return 0;
}

/* Parse/run, write, repeat while writing made room for more work. A client that still has
 * runnable input after its share of rounds goes on the ready list, which the loop serves
 * before it sleeps again (its socket may have nothing new to wake it). */
static void client_pump(srv_client *c)
{
    srv *s = &L.s;
    int more = 0;
    for (int round = 0; round < 16 && !c->dead; round++) {
        int blocked = process_input(c);
        if (client_write(c) < 0)
            return;
        more = blocked && !c->busy && !c->close_after && !c->dead &&
               c->out.bytes < s->cfg.output_buffer_limit;
        if (!more)
            break;
    }
    if (more && !c->ready) {
        c->ready = 1;
        c->ready_next = L.ready;
        L.ready = c;
    }
    client_update_events(c);
}

static void client_read(srv_client *c)
{
    srv *s = &L.s;
    size_t got = 0;
    if (c->busy || c->eof)
        return; /* never move the buffer under a worker's argv */
    while (c->ig.txn && c->ig.got < c->ig.len && got < READ_BUDGET) {
        uint64_t before = c->ig.got;
        int r = ingest_read(c);
        if (r < 0 && !c->eof)
            return; /* closed */
        got += (size_t)(c->ig.got - before);
        if (r <= 0)
            break;
    }
    while (got < READ_BUDGET && !c->eof && !(c->ig.txn && c->ig.got < c->ig.len)) {
        if (c->in_cap - c->in_len == 0 || (c->rq.need && c->in_cap - c->in_pos < c->rq.need)) {
            if (in_reserve(c)) {
                rp_err(&c->out, "Protocol error: query buffer limit (%" PRIu64 " bytes) exceeded",
                       s->cfg.query_buffer_limit);
                atomic_fetch_add(&s->proto_errors, 1);
                c->close_after = 1;
                c->in_pos = c->in_len;
                break;
            }
        }
        ssize_t r = sock_got(c, read(c->o.fd, c->in + c->in_len, c->in_cap - c->in_len));
        if (r < 0 && !c->eof)
            return; /* closed */
        if (r <= 0)
            break;
        c->in_len += (size_t)r;
        got += (size_t)r;
        if (c->rq.need && c->in_len - c->in_pos < c->rq.need)
            continue; /* keep filling the big bulk string */
        break;
    }
    c->last_ms = now_ms_mono();
    client_pump(c);
}

static void accept_clients(listener *l)
{
    srv *s = &L.s;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(l->o.fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                srv_log(s, 0, "accept: %s", strerror(errno));
            return;
        }
        atomic_fetch_add(&s->conn_total, 1);
        if (atomic_load(&s->n_clients) >= s->cfg.maxclients) {
            static const char msg[] = "-ERR max number of clients reached\r\n";
            ssize_t w = write(fd, msg, sizeof(msg) - 1);
            (void)w;
            close(fd);
            atomic_fetch_add(&s->conn_rejected, 1);
            continue;
        }
        srv_client *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->o.type = EP_CLIENT;
        c->o.fd = fd;
        c->id = atomic_fetch_add(&s->next_client_id, 1) + 1;
        c->resp = 2;
        client_tenant_move(c, default_tenant(s));
        c->last_ms = now_ms_mono();
        if (l->is_unix) {
            snprintf(c->addr, sizeof(c->addr), "%s:0", s->cfg.unixsocket);
        } else {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            char h[64] = "?", p[16] = "?";
            getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
                        NI_NUMERICHOST | NI_NUMERICSERV);
            snprintf(c->addr, sizeof(c->addr), "%s:%s", h, p);
        }
        c->next = L.clients;
        if (L.clients)
            L.clients->prev = c;
        L.clients = c;
        atomic_fetch_add(&s->n_clients, 1);
        client_update_events(c);
    }
}

/* ---------------------------------------------------------------- workers */

static void *worker_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&L.jmu);
        while (!L.jq_head && !L.jstop)
            pthread_cond_wait(&L.jcv, &L.jmu);
        if (!L.jq_head) {
            pthread_mutex_unlock(&L.jmu);
            return NULL;
        }
        job *j = L.jq_head;
        L.jq_head = j->next;
        if (!L.jq_head)
            L.jq_tail = NULL;
        pthread_mutex_unlock(&L.jmu);
        j->next = NULL;
        cmdctx x = {.s = &L.s, .c = j->c, .t = j->t, .resp = j->resp, .out = &j->out,
                    .argc = j->argc, .argv = j->argv, .on_worker = 1};
        j->cmd->fn(&x);
        pthread_mutex_lock(&L.jmu);
        j->next = L.done;
        L.done = j;
        pthread_mutex_unlock(&L.jmu);
        uint64_t one = 1;
        ssize_t w = write(L.evt.fd, &one, sizeof(one));
        (void)w;
    }
}

static void jobs_complete(void)
{
    uint64_t v;
    ssize_t r = read(L.evt.fd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&L.jmu);
    job *d = L.done;
    L.done = NULL;
    pthread_mutex_unlock(&L.jmu);
    while (d) {
        job *j = d;
        d = d->next;
        srv_client *c = j->c;
        hist_observe(&L.s.hist[j->cmd->hclass], now_ns_mono() - j->t0);
        pthread_mutex_lock(&L.jmu);
        L.jobs_in_flight--;
        pthread_mutex_unlock(&L.jmu);
        c->busy = 0;
        if (c->dead) {
            outq_free(&j->out);
            if (!c->ready)
                client_free(c);
        } else {
            outq_splice(&c->out, &j->out);
            c->last_ms = now_ms_mono();
            client_pump(c);
        }
        free(j->argv);
        free(j);
    }
}

/* ---------------------------------------------------------------- listeners */

static int add_listener(int fd, int is_unix)
{
    if (L.n_lis >= MAX_LISTENERS) {
        close(fd);
        return -1;
    }
    listener *l = &L.lis[L.n_lis++];
    l->o.type = EP_LISTEN;
    l->o.fd = fd;
    l->is_unix = is_unix;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
    return epoll_ctl(L.epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int listen_tcp(srv *s)
{
    if (s->cfg.port <= 0)
        return 0;
    char list[256];
    snprintf(list, sizeof(list), "%s", s->cfg.bind);
    char *save = NULL;
    int n = 0;
    for (char *a = strtok_r(list, ", ", &save); a; a = strtok_r(NULL, ", ", &save)) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
        struct addrinfo *res = NULL;
        char port[16];
        snprintf(port, sizeof(port), "%d", s->cfg.port);
        int g = getaddrinfo(strcmp(a, "*") == 0 ? NULL : a, port, &hints, &res);
        if (g) {
            srv_log(s, 0, "bind address '%s': %s", a, gai_strerror(g));
            return -1;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0)
                continue;
            int one = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (ai->ai_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
            if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 511)) {
                srv_log(s, 0, "could not listen on %s:%d: %s", a, s->cfg.port, strerror(errno));
                close(fd);
                freeaddrinfo(res);
                return -1;
            }
            if (add_listener(fd, 0)) {
                freeaddrinfo(res);
                return -1;
            }
            n++;
        }
        freeaddrinfo(res);
    }
    if (n)
        srv_log(s, 1, "listening on %s port %d (RESP2/RESP3)", s->cfg.bind, s->cfg.port);
    return 0;
}

static int listen_unix(srv *s)
{
    if (!s->cfg.unixsocket[0])
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(s->cfg.unixsocket) >= sizeof(sa.sun_path)) {
        srv_log(s, 0, "unixsocket path too long: %s", s->cfg.unixsocket);
        return -1;
    }
    strcpy(sa.sun_path, s->cfg.unixsocket);
    struct stat st;
    if (lstat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(sa.sun_path); /* a stale socket from a previous run */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 511)) {
        srv_log(s, 0, "could not listen on unix socket %s: %s", sa.sun_path, strerror(errno));
        close(fd);
        return -1;
    }
    if (s->cfg.unixsocketperm)
        chmod(sa.sun_path, s->cfg.unixsocketperm);
    srv_log(s, 1, "listening on unix socket %s", sa.sun_path);
    return add_listener(fd, 1);
}

static void close_listeners(srv *s)
{
    for (int i = 0; i < L.n_lis; i++) {
        epoll_ctl(L.epfd, EPOLL_CTL_DEL, L.lis[i].o.fd, NULL);
        close(L.lis[i].o.fd);
        if (L.lis[i].is_unix)
            unlink(s->cfg.unixsocket);
    }
    L.n_lis = 0;
}

/* ---------------------------------------------------------------- cron, shutdown */

static int shutdown_done(void)
{
    pthread_mutex_lock(&L.jmu);
    int inflight = L.jobs_in_flight;
    pthread_mutex_unlock(&L.jmu);
    if (inflight)
        return 0;
    for (srv_client *c = L.clients; c; c = c->next)
        if (c->out.bytes || c->in_len > c->in_pos)
            return 0;
    return 1;
}

static void cron(srv *s)
{
    uint64_t exp;
    ssize_t r = read(L.tim.fd, &exp, sizeof(exp));
    (void)r;
    uint64_t now = now_ms_mono();
    if (s->cfg.timeout_s > 0) {
        srv_client *c = L.clients;
        while (c) {
            srv_client *n = c->next;
            if (!c->busy && !c->out.bytes && now - c->last_ms > (uint64_t)s->cfg.timeout_s * 1000u) {
                atomic_fetch_add(&s->idle_closed, 1);
                client_close(c, "idle timeout");
            }
            c = n;
        }
    }
    kv_defer_retry(s);
    static uint64_t last_flush;
    if (s->alog && now - last_flush >= 1000) {
        pthread_mutex_lock(&s->alog_mu);
        fflush(s->alog);
        pthread_mutex_unlock(&s->alog_mu);
        last_flush = now;
    }
}

static void begin_shutdown(srv *s, int sig)
{
    if (s->stopping)
        return;
    srv_log(s, 1, "received %s: shutting down (no new connections; finishing in-flight "
                  "commands and replies, at most %d s)", strsignal(sig), s->cfg.shutdown_timeout_s);
    s->stopping = 1;
    L.stop_deadline_ms = now_ms_mono() + (uint64_t)s->cfg.shutdown_timeout_s * 1000u;
    close_listeners(s);
    for (srv_client *c = L.clients; c; c = c->next)
        client_update_events(c);
}

static int loop_run(srv *s)
{
    struct epoll_event evs[256];
    for (;;) {
        if (s->stopping && (shutdown_done() || now_ms_mono() >= L.stop_deadline_ms))
            break;
        while (L.ready) { /* serve the clients left with runnable input */
            srv_client *list = L.ready;
            L.ready = NULL;
            while (list) {
                srv_client *c = list;
                list = c->ready_next;
                c->ready = 0;
                if (c->dead) {
                    if (!c->busy)
                        client_free(c);
                } else if (!c->busy) {
                    client_pump(c);
                }
            }
            break; /* then look at the sockets again */
        }
        int n = epoll_wait(L.epfd, evs, 256, L.ready ? 0 : 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            srv_log(s, 0, "epoll_wait: %s", strerror(errno));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            ep_obj *o = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            switch (o->type) {
            case EP_LISTEN:
                accept_clients((listener *)o);
                break;
            case EP_SIGNAL: {
                struct signalfd_siginfo si;
                if (read(o->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                    begin_shutdown(s, (int)si.ssi_signo);
                break;
            }
            case EP_EVENT:
                jobs_complete();
                break;
            case EP_TIMER:
                cron(s);
                break;
            case EP_CLIENT: {
                srv_client *c = (srv_client *)o;
                if (c->dead)
                    break;
                if (e & EPOLLOUT) {
                    if (client_write(c) < 0)
                        break;
                    if (!c->busy)
                        client_pump(c);
                    else
                        client_update_events(c);
                    if (c->dead)
                        break;
                }
                if (e & (EPOLLIN | EPOLLRDHUP))
                    client_read(c);
                else if (e & (EPOLLHUP | EPOLLERR))
                    client_close(c, "hangup");
                break;
            }
            default:
                break;
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- start-up */

static void usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s serve [--config FILE] [--KEY VALUE ...]\n"
            "\n"
            "Run the prompt-caching service: the Redis protocol (RESP2, RESP3 via HELLO) over TCP\n"
            "and Unix sockets, tenants, TTLs, Prometheus /metrics. See docs/service.md.\n"
            "\n"
            "Every configuration key can be given as a flag (--KEY VALUE or --KEY=VALUE), in the\n"
            "[server] section of the file, or as KVTIER_<KEY> in the environment (flags win,\n"
            "then the environment, then the file). Main keys (default):\n"
            "  --config FILE              INI file (KVTIER_CONFIG)\n"
            "  --bind ADDRS               TCP addresses, comma-separated (127.0.0.1)\n"
            "  --port N                   TCP port, 0 = none (6379)\n"
            "  --unixsocket PATH          Unix socket (none)    --unixsocketperm OCTAL (700)\n"
            "  --metrics-port N           Prometheus /metrics over HTTP, 0 = off (0)\n"
            "  --metrics-bind ADDR        (127.0.0.1)\n"
            "  --dram-bytes SIZE          DRAM tier capacity (1G)\n"
            "  --kv-block-bytes SIZE      block size of Redis values (4K)\n"
            "  --requirepass PASS         password of the 'default' user\n"
            "  --workers N                threads for large commands (2)\n"
            "  --maxclients N (10000)  --timeout SECONDS (0 = never)\n"
            "  --max-value-bytes SIZE (512M)  --output-buffer-limit SIZE (1G)\n"
            "  --data-dir DIR             persistent tiers and catalog; none = DRAM only (./data)\n"
            "  --nvme-bytes SIZE (0 = off)  --nvme-path DIR (DATA_DIR/nvme)\n"
            "  --disk-bytes SIZE (1G)       --disk-path DIR (DATA_DIR/disk)  --io-depth N (32)\n"
            "  --persist-delay-ms N       write a value to nvme/disk once it lived N ms; sooner\n"
            "                             overwrites cost no I/O; SAVE and SIGTERM write all (1000)\n"
            "  --access-log PATH          JSON-lines log of KVT.* requests (off)\n"
            "  --shutdown-timeout SECONDS (10)  --loglevel warning|notice|verbose (notice)\n"
            "Tenants ([tenant:NAME] sections: password, namespaces, quota_dram, quota_nvme,\n"
            "quota_disk, admin) only in the file.\n",
            prog);
}

static int apply_env(srv_config *cfg, char *err, size_t errlen)
{
    extern char **environ;
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "KVTIER_", 7) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        char key[64];
        size_t kn = (size_t)(eq - *e) - 7;
        if (kn == 0 || kn >= sizeof(key))
            continue;
        for (size_t i = 0; i < kn; i++) {
            char ch = (*e)[7 + i];
            key[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        key[kn] = 0;
        if (strcmp(key, "config") == 0 || strncmp(key, "test", 4) == 0)
            continue;
        if (cfg_set(cfg, key, eq + 1, err, errlen)) {
            /* unknown KVTIER_* variables belong to other tools; bad values are errors */
            if (strstr(err, "unknown configuration key"))
                continue;
            return -1;
        }
    }
    return 0;
}

/* Flags: pass 0 finds --config, pass 1 applies the rest. */
static int apply_flags(srv_config *cfg, int argc, char **argv, int pass, const char **config,
                       char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (flags are --KEY VALUE)", a);
            return -1;
        }
        char key[64];
        const char *val;
        const char *eq = strchr(a + 2, '=');
        if (eq) {
            size_t kn = (size_t)(eq - a - 2);
            if (kn >= sizeof(key))
                kn = sizeof(key) - 1;
            memcpy(key, a + 2, kn);
            key[kn] = 0;
            val = eq + 1;
        } else {
            snprintf(key, sizeof(key), "%s", a + 2);
            if (i + 1 >= argc) {
                snprintf(err, errlen, "flag --%s needs a value", key);
                return -1;
            }
            val = argv[++i];
        }
        if (strcmp(key, "config") == 0) {
            *config = val;
            continue;
        }
        if (pass == 1 && cfg_set(cfg, key, val, err, errlen))
            return -1;
    }
    return 0;
}

static int open_engine(srv *s)
{
    kvt_options *o = NULL;
    int rc = kvt_options_create(&o);
    if (!rc)
        rc = kvt_options_set_dram_bytes(o, s->cfg.dram_bytes);
    if (!rc)
        rc = kvt_options_set_dram_slot_bytes(o, s->cfg.kv_block_bytes);
    if (!rc)
        rc = kvt_options_set_hugepages(o, s->cfg.hugepages);
    if (!rc)
        rc = kvt_options_set_dram_prefault(o, s->cfg.dram_prefault);
    const srv_config *cf = &s->cfg;
    for (kvt_tier t = KVT_TIER_DRAM; !rc && t <= KVT_TIER_DISK; t++)
        if (cf->tier_read_bw[t] || cf->tier_write_bw[t])
            rc = kvt_options_set_tier_perf(o, t, (double)cf->tier_read_bw[t],
                                           (double)cf->tier_write_bw[t]);
    if (!rc && cf->data_dir[0]) {
        rc = kvt_options_set_data_dir(o, cf->data_dir);
        if (!rc)
            rc = kvt_options_set_tier(o, KVT_TIER_NVME, cf->nvme_path[0] ? cf->nvme_path : NULL,
                                      cf->nvme_bytes, cf->nvme_bw);
        if (!rc)
            rc = kvt_options_set_tier(o, KVT_TIER_DISK, cf->disk_path[0] ? cf->disk_path : NULL,
                                      cf->disk_bytes, cf->disk_bw);
        if (!rc)
            rc = kvt_options_set_io_depth(o, cf->io_depth);
        if (!rc && cf->backpressure_ms >= 0)
            rc = kvt_options_set_backpressure_ms(o, (uint32_t)cf->backpressure_ms);
        if (!rc)
            rc = kvt_options_set_persist_delay_ms(o, (uint32_t)cf->persist_delay_ms);
        if (!rc)
            rc = kvt_options_set_background_nice(o, cf->background_nice);
    }
    if (!rc)
        rc = kvt_engine_open(o, &s->eng);
    kvt_options_destroy(o);
    if (rc) {
        if (rc == -EBUSY)
            srv_log(s, 0, "could not open the engine: data_dir %s is in use by another "
                          "process (another kvtier serve?)", cf->data_dir);
        else
            srv_log(s, 0, "could not open the engine%s%s: %s", cf->data_dir[0] ? " on data_dir " : "",
                    cf->data_dir, kvt_strerror(rc));
        return -1;
    }
    /* The "kv" namespace of Redis values: one block = kv_block_bytes
     * (1 layer * 2 * 1 token * 1 head * head_dim * 2 bytes). */
    kvt_layout lay = {.layers = 1, .kv_heads = 1, .head_dim = (uint32_t)(s->cfg.kv_block_bytes / 4),
                      .dtype = KVT_DTYPE_FP16, .block_tokens = 1};
    for (int i = 0; i < s->cfg.n_tenants; i++) {
        srv_tenant *t = s->cfg.tenants[i];
        const struct { kvt_tier tier; uint64_t bytes; } q[3] = {
            {KVT_TIER_DRAM, t->quota_dram}, {KVT_TIER_NVME, t->quota_nvme},
            {KVT_TIER_DISK, t->quota_disk}};
        for (int j = 0; j < 3; j++)
            if (q[j].bytes && (rc = kvt_tenant_set_quota(s->eng, t->name, q[j].tier, q[j].bytes))) {
                srv_log(s, 0, "tenant %s: %s quota: %s", t->name, tier_name(q[j].tier),
                        kvt_strerror(rc));
                return -1;
            }
        for (unsigned k = 0; k < (1u << SRV_KV_SHARD_BITS); k++) {
            char name[16];
            snprintf(name, sizeof(name), "kv/%02x", k);
            if ((rc = kvt_ns_open(s->eng, name, t->name, &lay, KVT_NS_KEYS, &t->kv[k]))) {
                srv_log(s, 0, "tenant %s: namespace %s: %s", t->name, name, kvt_strerror(rc));
                return -1;
            }
        }
    }
    if (registry_load(s))
        return -1;
    kvt_stats st;
    memset(&st, 0, sizeof(st));
    kvt_engine_stats(s->eng, &st, sizeof(st));
    if (st.persistent)
        srv_log(s, 1, "persistent tiers in %s (nvme %" PRIu64 " bytes, disk %" PRIu64 " bytes, "
                      "I/O %s): %s start, %" PRIu64 " block(s) restored from the catalog%s",
                cf->data_dir, st.tier_capacity[KVT_TIER_NVME], st.tier_capacity[KVT_TIER_DISK],
                st.io_backend[0] ? st.io_backend : "?", st.restored_blocks ? "warm" : "cold",
                st.restored_blocks, st.restore_dropped ? " (some catalog records dropped)" : "");
    else
        srv_log(s, 1, "DRAM only (data_dir = none): nothing is persisted, every start is cold");
    return 0;
}

static int setup_fds(srv *s)
{
    L.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (L.epfd < 0)
        return -1;
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    L.sig.type = EP_SIGNAL;
    L.sig.fd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    L.evt.type = EP_EVENT;
    L.evt.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    L.tim.type = EP_TIMER;
    L.tim.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (L.sig.fd < 0 || L.evt.fd < 0 || L.tim.fd < 0) {
        srv_log(s, 0, "signalfd/eventfd/timerfd: %s", strerror(errno));
        return -1;
    }
    struct itimerspec its = {.it_interval = {0, 100000000}, .it_value = {0, 100000000}};
    timerfd_settime(L.tim.fd, 0, &its, NULL);
    ep_obj *objs[3] = {&L.sig, &L.evt, &L.tim};
    for (int i = 0; i < 3; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = objs[i]};
        if (epoll_ctl(L.epfd, EPOLL_CTL_ADD, objs[i]->fd, &ev))
            return -1;
    }
    return 0;
}

/* The server's locks and its start time, before the engine opens (serve and embedded). */
static void srv_init_sync(srv *s)
{
    pthread_mutex_init(&s->defer_mu, NULL);
    pthread_mutex_init(&s->alog_mu, NULL);
    pthread_mutex_init(&s->reg_mu, NULL);
    for (int i = 0; i < 256; i++)
        pthread_mutex_init(&s->stripe[i], NULL);
    pthread_mutex_init(&L.jmu, NULL);
    pthread_cond_init(&L.jcv, NULL);
    s->start_ms = now_ms_real();
}

int server_main(int argc, char **argv)
{
    /* `kvtier serve ARGS` calls server_main(argc - 1, argv + 1): argv[0] is then "serve" */
    const char *prog = argc > 0 && strcmp(argv[0], "serve") != 0 ? argv[0] : "kvtier";
    memset(&L, 0, sizeof(L));
    L.epfd = L.sig.fd = L.evt.fd = L.tim.fd = -1;
    srv *s = &L.s;
    char err[512] = "";
    const char *config = getenv("KVTIER_CONFIG");
    int exit_code = 1;

    cfg_defaults(&s->cfg);
    int fr = apply_flags(&s->cfg, argc, argv, 0, &config, err, sizeof(err));
    if (fr == 1) {
        usage(stdout, prog);
        cfg_free(&s->cfg);
        return 0;
    }
    if (fr < 0)
        goto usage_err;
    if (config && config[0] && cfg_load_file(&s->cfg, config, err, sizeof(err)))
        goto usage_err;
    if (apply_env(&s->cfg, err, sizeof(err)))
        goto usage_err;
    if (apply_flags(&s->cfg, argc, argv, 1, &config, err, sizeof(err)))
        goto usage_err;
    if (cfg_finish(&s->cfg, err, sizeof(err)))
        goto usage_err;

    signal(SIGPIPE, SIG_IGN);
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    pthread_sigmask(SIG_BLOCK, &ss, NULL); /* every thread started below inherits this */

    srv_init_sync(s);

    if (open_engine(s))
        goto out;
    if (s->cfg.access_log[0]) {
        s->alog = fopen(s->cfg.access_log, "a");
        if (!s->alog) {
            srv_log(s, 0, "access log %s: %s", s->cfg.access_log, strerror(errno));
            goto out;
        }
    }
    if (setup_fds(s) || listen_tcp(s) || listen_unix(s))
        goto out;
    if (L.n_lis == 0) {
        srv_log(s, 0, "nothing to listen on: set port and/or unixsocket");
        goto out;
    }
    if (metrics_start(s))
        goto out;
    if (s->cfg.workers > 0) {
        L.threads = calloc((size_t)s->cfg.workers, sizeof(pthread_t));
        for (int i = 0; L.threads && i < s->cfg.workers; i++) {
            if (pthread_create(&L.threads[i], NULL, worker_main, NULL))
                break;
            L.n_threads++;
        }
    }
    s->n_workers = L.n_threads;
    srv_log(s, 1, "kvtier %s serve ready: %d tenant(s), DRAM %" PRIu64 " bytes, kv blocks %" PRIu64
                  " bytes, %d worker(s)",
            kvt_version(), s->cfg.n_tenants, s->cfg.dram_bytes, s->cfg.kv_block_bytes, L.n_threads);
    exit_code = loop_run(s) ? 1 : 0;
    resp_req_free(&L.la);

out:
    /* stop workers (the loop waited for their jobs unless the deadline passed) */
    pthread_mutex_lock(&L.jmu);
    L.jstop = 1;
    pthread_cond_broadcast(&L.jcv);
    pthread_mutex_unlock(&L.jmu);
    for (int i = 0; i < L.n_threads; i++)
        pthread_join(L.threads[i], NULL);
    free(L.threads);
    if (L.evt.fd >= 0)
        jobs_complete(); /* splice, then free below */
    while (L.clients)
        client_close(L.clients, "shutdown");
    while (L.ready) {
        srv_client *c = L.ready;
        L.ready = c->ready_next;
        client_free(c); /* closed above, kept only for this list */
    }
    close_listeners(s);
    metrics_stop(s);
    if (s->alog) {
        fclose(s->alog);
        s->alog = NULL;
    }
    /* deferred removals: nothing is pinned any more */
    kv_defer_retry(s);
    while (s->defer) {
        defer_rm *d = s->defer;
        s->defer = d->next;
        free(d);
    }
    if (s->eng) {
        if (s->cfg.data_dir[0]) {
            /* the durability point: every value and prefix stored before SIGTERM is on its
             * persistent tier and in the catalog; the next start is warm */
            uint64_t t0 = now_ms_mono();
            if (srv_flush(s))
                exit_code = 1;
            else
                srv_log(s, 1, "flushed to %s in %" PRIu64 " ms: the next start with this "
                              "data_dir is warm", s->cfg.data_dir, now_ms_mono() - t0);
        }
        int rc = kvt_engine_close(s->eng);
        if (rc) {
            srv_log(s, 0, "engine close: %s", kvt_strerror(rc));
            exit_code = 1;
        }
        s->eng = NULL;
    }
    srv_ns_free_all(s);
    if (L.sig.fd >= 0)
        close(L.sig.fd);
    if (L.evt.fd >= 0)
        close(L.evt.fd);
    if (L.tim.fd >= 0)
        close(L.tim.fd);
    if (L.epfd >= 0)
        close(L.epfd);
    if (exit_code == 0)
        srv_log(s, 1, "kvtier serve stopped cleanly%s", s->cfg.data_dir[0] ? "" :
                " (data_dir = none: DRAM contents are not persisted, the next start is cold)");
    free(s->reg_orphans);
    s->reg_orphans = NULL;
    cfg_free(&s->cfg);
    return exit_code;

usage_err:
    fprintf(stderr, "%s serve: %s (try: %s serve --help)\n", prog, err, prog);
    cfg_free(&s->cfg);
    return 2;
}

/* ---------------------------------------------------------------- in-process driver */

/* srv.h: the request path without sockets (fuzzing). Nothing listens, no worker threads:
 * commands that would be offloaded run inline, as they do with workers = 0. */
int srv_embed_open(int argc, char **argv)
{
    memset(&L, 0, sizeof(L));
    L.epfd = L.sig.fd = L.evt.fd = L.tim.fd = -1;
    srv *s = &L.s;
    char err[512] = "";
    const char *config = NULL;
    cfg_defaults(&s->cfg);
    if (apply_flags(&s->cfg, argc, argv, 0, &config, err, sizeof(err)) ||
        (config && config[0] && cfg_load_file(&s->cfg, config, err, sizeof(err))) ||
        apply_flags(&s->cfg, argc, argv, 1, &config, err, sizeof(err)) ||
        cfg_finish(&s->cfg, err, sizeof(err))) {
        fprintf(stderr, "srv_embed_open: %s\n", err);
        cfg_free(&s->cfg);
        return -1;
    }
    s->cfg.workers = 0;
    srv_init_sync(s);
    if (open_engine(s)) {
        srv_embed_close();
        return -1;
    }
    return 0;
}

void srv_embed_close(void)
{
    srv *s = &L.s;
    while (L.clients)
        client_close(L.clients, "shutdown");
    kv_defer_retry(s);
    while (s->defer) {
        defer_rm *d = s->defer;
        s->defer = d->next;
        free(d);
    }
    if (s->eng)
        kvt_engine_close(s->eng);
    s->eng = NULL;
    srv_ns_free_all(s);
    free(s->reg_orphans);
    s->reg_orphans = NULL;
    cfg_free(&s->cfg);
    resp_req_free(&L.la);
}

srv_client *srv_embed_client(void)
{
    srv *s = &L.s;
    srv_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->o.type = EP_CLIENT;
    c->o.fd = -1;
    c->id = atomic_fetch_add(&s->next_client_id, 1) + 1;
    c->resp = 2;
    snprintf(c->addr, sizeof(c->addr), "embedded:0");
    client_tenant_move(c, default_tenant(s));
    c->last_ms = now_ms_mono();
    c->next = L.clients;
    if (L.clients)
        L.clients->prev = c;
    L.clients = c;
    atomic_fetch_add(&s->n_clients, 1);
    return c;
}

/* Hand the queued replies to sink (streams refilled window by window) and free them. */
static void embed_drain(srv_client *c, void (*sink)(void *, const void *, size_t), void *ctx)
{
    while (c->out.head) {
        ochunk *ch = c->out.head;
        for (;;) {
            struct iovec iov[64];
            int m;
            while ((m = ochunk_iov(ch, iov, 64)) > 0)
                for (int i = 0; i < m; i++) {
                    sink(ctx, iov[i].iov_base, iov[i].iov_len);
                    ch->off += iov[i].iov_len;
                }
            ch->off = ch->len;
            if (ch->kind != OC_STREAM || !ch->left)
                break;
            if (outq_refill(ch)) {
                c->close_after = 1; /* the socket path closes the client */
                break;
            }
        }
        c->out.head = ch->next;
        if (!c->out.head)
            c->out.tail = NULL;
        ch->next = NULL;
        outq tmp = {ch, ch, 0};
        outq_free(&tmp);
    }
    c->out.bytes = 0;
}

static void embed_pump(srv_client *c, void (*sink)(void *, const void *, size_t), void *ctx)
{
    for (;;) {
        int blocked = process_input(c);
        embed_drain(c, sink, ctx);
        if (!blocked || c->close_after || c->dead)
            break;
    }
}

int srv_embed_feed(srv_client *c, const void *p, size_t n,
                   void (*sink)(void *ctx, const void *p, size_t n), void *ctx)
{
    srv *s = &L.s;
    size_t off = 0;
    while (off < n && !c->close_after) {
        if (c->ig.txn && c->ig.got < c->ig.len) { /* a value arriving in place (ingest) */
            uint64_t k = c->ig.len - c->ig.got < n - off ? c->ig.len - c->ig.got : n - off;
            ingest_copy(&c->ig, (const char *)p + off, k);
            off += k;
            if (c->ig.got == c->ig.len)
                ingest_done(c);
            continue;
        }
        if (c->in_cap - c->in_len == 0 || (c->rq.need && c->in_cap - c->in_pos < c->rq.need)) {
            if (in_reserve(c)) { /* as client_read */
                rp_err(&c->out, "Protocol error: query buffer limit (%" PRIu64 " bytes) exceeded",
                       s->cfg.query_buffer_limit);
                atomic_fetch_add(&s->proto_errors, 1);
                c->close_after = 1;
                c->in_pos = c->in_len;
                break;
            }
        }
        size_t k = n - off < c->in_cap - c->in_len ? n - off : c->in_cap - c->in_len;
        memcpy(c->in + c->in_len, (const char *)p + off, k);
        c->in_len += k;
        off += k;
        if (c->rq.need && c->in_len - c->in_pos < c->rq.need)
            continue;
        embed_pump(c, sink, ctx);
    }
    embed_pump(c, sink, ctx);
    return c->close_after || c->dead;
}

void srv_embed_client_free(srv_client *c, void (*sink)(void *ctx, const void *p, size_t n),
                           void *ctx)
{
    if (!c->close_after && !c->dead) {
        c->eof = 1;
        embed_pump(c, sink, ctx);
    }
    client_close(c, "embedded client done");
}
