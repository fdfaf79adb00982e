// ctest: labels=unit;remote timeout=180
/*
 * test_remote.c — the remote tier against a real local Redis Cluster (3 masters, 3 replicas on
 * free loopback ports, started with tests/redis-cluster.sh under $KVT_TEST_DIR or /tmp):
 *   - remote_slot against CLUSTER KEYSLOT (hash tags included);
 *   - two contexts ("two engines", one seeded through a replica) share blocks byte-exactly;
 *   - misses: absent, wrong capacity (-ERANGE), another namespace, a key collision (same key,
 *     other units: -ESTALE), corrupt values (-EBADMSG), TTL expiry, delete;
 *   - ASK then MOVED while one slot is migrated between masters;
 *   - publish/holders: longest prefix first, removal, expiry;
 *   - durable puts (WAIT 1), then SIGKILL of a master mid-run: its blocks miss with no error,
 *     the others hit, the engines keep serving; after the replica's failover the durable blocks
 *     hit again and new puts succeed;
 *   - two threads sharing one context; OOM injection on every call.
 * Skips (77) when redis-server or redis-cli is not installed.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <xxhash.h>

#include "testutil.h"
#include "tiers/remote.h"
#include "util/util.h"

#define NB 48    /* blocks of the shared prompt */
#define BT 16    /* tokens per block */
#define NS 7u    /* namespace id */
#define MAXLEN (300u << 10)

static char dir[PATH_MAX], seeds[256], salt[64];
static int base_port, n_ports = 6;
static tu_rng rng, port_rng; /* port_rng: per process, so parallel runs pick apart */
static uint32_t tokens[NB * BT];
static uint64_t keys[NB];
static unsigned char *data[NB];
static size_t lens[NB];

/* ---------------------------------------------------------------- cluster plumbing */

static unsigned key_slot(uint64_t ns, uint64_t key)
{
    char k[REMOTE_KEY_MAX];
    int kl = remote_key(salt, ns, key, k, sizeof k);
    TU_CHECK(kl > 0);
    return remote_slot(k, (size_t)kl);
}

/* ---------------------------------------------------------------- the blocks */

static void make_blocks(void)
{
    for (size_t i = 0; i < NB * BT; i++)
        tokens[i] = (uint32_t)tu_below(&rng, 128256);
    uint64_t parent = 0;
    for (int i = 0; i < NB; i++) {
        keys[i] = parent = XXH3_64bits_withSeed(tokens + i * BT, BT * 4, parent);
        lens[i] = i == 0 ? 1 : i == 1 ? 4095 : 1 + (size_t)tu_below(&rng, MAXLEN);
        data[i] = malloc(lens[i]);
        TU_CHECK(data[i]);
        tu_fill(&rng, data[i], lens[i]);
    }
}

static void put_req(remote_req *q, int i)
{
    memset(q, 0, sizeof *q);
    q->ns = NS;
    q->key = keys[i];
    q->units = tokens;
    q->n_units = (uint32_t)(i + 1) * BT; /* the identity: the whole prefix */
    q->buf = data[i];
    q->len = lens[i];
}

static unsigned char *gbuf[NB];

static void get_req_into(remote_req *q, int i, unsigned char **bufs)
{
    put_req(q, i);
    q->buf = bufs[i];
    q->len = MAXLEN;
    memset(bufs[i], 0xa5, 64);
}

static void get_req(remote_req *q, int i) { get_req_into(q, i, gbuf); }

/* Get every block through r into bufs: returns the hit count; res[] per block. Hits are
 * checked byte for byte. */
static int get_all_into(remote_ctx *r, int *res, unsigned char **bufs)
{
    remote_req q[NB];
    for (int i = 0; i < NB; i++)
        get_req_into(&q[i], i, bufs);
    int hits = remote_get_batch(r, q, NB);
    TU_CHECK(hits >= 0); /* never an error while any master is up */
    int counted = 0;
    for (int i = 0; i < NB; i++) {
        res[i] = q[i].res;
        if (q[i].res == 0) {
            counted++;
            TU_CHECK_EQ(q[i].len, lens[i]);
            TU_CHECK(memcmp(bufs[i], data[i], lens[i]) == 0);
        }
    }
    TU_CHECK_EQ(hits, counted);
    return hits;
}

static int get_all(remote_ctx *r, int *res) { return get_all_into(r, res, gbuf); }

/* The reader that runs through the kill: its own context and buffers, batch after batch. */
typedef struct reader_arg {
    remote_ctx *r;
    const int *on_victim;
    volatile int stop;
    int batches, min_hits, victim_misses;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *ra = p;
    unsigned char *bufs[NB];
    int res[NB];
    for (int i = 0; i < NB; i++)
        TU_CHECK((bufs[i] = malloc(MAXLEN)));
    ra->min_hits = NB;
    while (!ra->stop) {
        int hits = get_all_into(ra->r, res, bufs); /* checks hits >= 0: never an error */
        for (int i = 0; i < NB; i++) {
            if (!ra->on_victim[i])
                TU_CHECK_EQ(res[i], 0); /* the live shards keep serving, even mid-batch */
            else
                ra->victim_misses += res[i] != 0;
        }
        if (hits < ra->min_hits)
            ra->min_hits = hits;
        ra->batches++;
        usleep(20 * 1000);
    }
    for (int i = 0; i < NB; i++)
        free(bufs[i]);
    return NULL;
}

/* Overwrite the stored value of block i with a modified copy (corruption, truncation). */
static void tamper(int i, int what)
{
    char k[REMOTE_KEY_MAX];
    int kl = remote_key(salt, NS, keys[i], k, sizeof k);
    int port = tu_cluster_owner(base_port, remote_slot(k, (size_t)kl), NULL);
    TU_CHECK(port > 0);
    redisContext *c = redisConnect("127.0.0.1", port);
    TU_CHECK(c && !c->err);
    redisReply *g = redisCommand(c, "GET %b", k, (size_t)kl);
    TU_CHECK(g && g->type == REDIS_REPLY_STRING);
    size_t len = g->len;
    if (what == 0)
        g->str[len - 1] ^= 0x40; /* last payload byte */
    else if (what == 1)
        g->str[0] ^= 1;          /* magic */
    else
        len = 30;                /* truncated header */
    redisReply *s = redisCommand(c, "SET %b %b", k, (size_t)kl, g->str, len);
    TU_CHECK(s && s->type == REDIS_REPLY_STATUS);
    freeReplyObject(s);
    freeReplyObject(g);
    redisFree(c);
}

/* ---------------------------------------------------------------- the parts */

static void test_slots(void)
{
    const char *ks[] = {"foo", "123456789", "{user1000}.following", "{user1000}.followers",
                        "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "kvt:s:0:1"};
    char out[64];
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        TU_CHECK_EQ(tu_sh_out(out, sizeof out, "redis-cli -p %d cluster keyslot '%s'", base_port, ks[i]), 0);
        TU_CHECK_EQ(remote_slot(ks[i], strlen(ks[i])), atoi(out));
    }
    TU_CHECK_EQ(remote_slot("123456789", 9), 0x31c3 % 16384); /* CRC16-XMODEM check value */
    char k[REMOTE_KEY_MAX];
    TU_CHECK_EQ(remote_key("a{b", 1, 2, k, sizeof k), -EINVAL);
    TU_CHECK_EQ(remote_key("", 1, 2, k, sizeof k), -EINVAL);
    TU_CHECK_EQ(remote_key("ok", 1, 2, k, 10), -ERANGE);
    TU_CHECK(remote_key("ok", 1, 2, k, sizeof k) > 0);
    TU_CHECK(strcmp(k, "kvt:ok:0000000000000001:0000000000000002") == 0);
    printf("slots: remote_slot agrees with CLUSTER KEYSLOT\n");
}

static void test_open_errors(void)
{
    remote_ctx *r = NULL;
    TU_CHECK_EQ(remote_open("127.0.0.1", salt, NULL, &r), -EINVAL);
    TU_CHECK_EQ(remote_open("127.0.0.1:0", salt, NULL, &r), -EINVAL);
    TU_CHECK_EQ(remote_open("", salt, NULL, &r), -EINVAL);
    TU_CHECK_EQ(remote_open(seeds, "bad salt", NULL, &r), -EINVAL);
    TU_CHECK_EQ(remote_open(seeds, NULL, NULL, &r), -EINVAL);
    /* nothing listens on a free port: -ENOTCONN, fast */
    int p = tu_pick_ports(&port_rng, n_ports);
    char s[64];
    snprintf(s, sizeof s, "127.0.0.1:%d", p);
    TU_CHECK_EQ(remote_open(s, salt, NULL, &r), -ENOTCONN);
    TU_CHECK(r == NULL);
    remote_close(NULL);
    printf("open: argument and connection errors\n");
}

static void test_share(remote_ctx *a, remote_ctx *b)
{
    remote_req q[NB];
    int res[NB];
    for (int i = 0; i < NB; i++)
        put_req(&q[i], i);
    TU_CHECK_EQ(remote_put_batch(a, q, NB, 0, 0), NB);
    for (int i = 0; i < NB; i++)
        TU_CHECK_EQ(q[i].res, 0);
    TU_CHECK_EQ(get_all(b, res), NB); /* put via A, get via B: byte-identical */
    TU_CHECK_EQ(get_all(a, res), NB);

    /* bad arguments send nothing */
    put_req(&q[0], 0);
    q[0].len = 0;
    TU_CHECK_EQ(remote_put_batch(a, q, 1, 0, 0), -EINVAL);
    put_req(&q[0], 0);
    TU_CHECK_EQ(remote_put_batch(a, q, 1, 0, 0x80), -EINVAL);
    TU_CHECK_EQ(remote_get_batch(a, NULL, 1), -EINVAL);
    TU_CHECK_EQ(remote_get_batch(a, q, 0), 0);

    /* capacity too small: -ERANGE with the size, buffer untouched */
    get_req(&q[0], 5);
    q[0].len = lens[5] - 1;
    TU_CHECK_EQ(remote_get_batch(b, q, 1), 0);
    TU_CHECK_EQ(q[0].res, -ERANGE);
    TU_CHECK_EQ(q[0].len, lens[5]);
    TU_CHECK_EQ(gbuf[5][0], 0xa5);

    /* another namespace never sees these blocks */
    get_req(&q[0], 3);
    q[0].ns = NS + 1;
    TU_CHECK_EQ(remote_get_batch(b, q, 1), 0);
    TU_CHECK_EQ(q[0].res, -ENOENT);

    /* a key collision: same (ns, key), another prefix (units) -> never data */
    uint32_t other[4 * BT];
    memcpy(other, tokens, sizeof other);
    other[5] ^= 1;
    get_req(&q[0], 3);
    q[0].units = other;
    TU_CHECK_EQ(remote_get_batch(b, q, 1), 0);
    TU_CHECK_EQ(q[0].res, -ESTALE);
    get_req(&q[0], 3);
    q[0].n_units -= BT; /* identity of another length */
    TU_CHECK_EQ(remote_get_batch(b, q, 1), 0);
    TU_CHECK_EQ(q[0].res, -ESTALE);

    /* corruption is a miss, never data */
    for (int what = 0; what < 3; what++) {
        int i = 10 + what;
        tamper(i, what);
        get_req(&q[0], i);
        TU_CHECK_EQ(remote_get_batch(b, q, 1), 0);
        TU_CHECK_EQ(q[0].res, -EBADMSG);
        put_req(&q[0], i); /* repair */
        TU_CHECK_EQ(remote_put_batch(a, q, 1, 0, 0), 1);
    }

    /* delete */
    put_req(&q[0], 20);
    TU_CHECK_EQ(remote_del_batch(a, q, 1), 1);
    TU_CHECK_EQ(q[0].res, 0);
    TU_CHECK_EQ(remote_del_batch(a, q, 1), 0);
    TU_CHECK_EQ(q[0].res, -ENOENT);
    get_req(&q[0], 20);
    TU_CHECK_EQ(remote_get_batch(b, q, 1), 0);
    TU_CHECK_EQ(q[0].res, -ENOENT);

    /* TTL */
    put_req(&q[0], 20);
    TU_CHECK_EQ(remote_put_batch(a, q, 1, 300, 0), 1);
    get_req(&q[0], 20);
    TU_CHECK_EQ(remote_get_batch(b, q, 1), 1);
    usleep(500 * 1000);
    get_req(&q[0], 20);
    TU_CHECK_EQ(remote_get_batch(b, q, 1), 0);
    TU_CHECK_EQ(q[0].res, -ENOENT);
    put_req(&q[0], 20);
    TU_CHECK_EQ(remote_put_batch(a, q, 1, 0, 0), 1);

    /* a big batch through a small window: several rounds, same results */
    TU_CHECK_EQ(get_all(b, res), NB);
    remote_stats st;
    remote_get_stats(b, &st);
    TU_CHECK(st.read_bw > 0);
    TU_CHECK_EQ(st.masters, 3);
    TU_CHECK_EQ(st.slots_covered, 16384);
    TU_CHECK(st.miss_stale == 2 && st.miss_corrupt == 3 && st.miss_range == 1);
    printf("share: %d blocks put via A hit via B; misses: absent/stale/corrupt/range/ttl ok; "
           "read %.2f GB/s\n", NB, st.read_bw / 1e9);
}

static void test_window(void)
{
    remote_opts o;
    remote_opts_init(&o);
    o.window_bytes = 256 << 10; /* forces one or two blocks per round */
    remote_ctx *c = NULL;
    TU_CHECK_EQ(remote_open(seeds, salt, &o, &c), 0);
    int res[NB];
    TU_CHECK_EQ(get_all(c, res), NB);
    remote_close(c);
    printf("window: a batch split into rounds of 256 KiB returns the same blocks\n");
}

static void test_redirects(remote_ctx *a, remote_ctx *b)
{
    int i = 7;
    char k[REMOTE_KEY_MAX], src_id[64], dst_id[64], out[256];
    int kl = remote_key(salt, NS, keys[i], k, sizeof k);
    unsigned slot = remote_slot(k, (size_t)kl);
    int src = tu_cluster_owner(base_port, slot, src_id);
    TU_CHECK(src > 0);
    int dst = -1;
    for (unsigned s = 0; s < 16384 && dst < 0; s += 97) {
        int p = tu_cluster_owner(base_port, s, dst_id);
        if (p > 0 && p != src)
            dst = p;
    }
    TU_CHECK(dst > 0);
    remote_req q;
    get_req(&q, i);
    TU_CHECK_EQ(remote_get_batch(a, &q, 1), 1); /* both contexts learn the old owner */
    get_req(&q, i);
    TU_CHECK_EQ(remote_get_batch(b, &q, 1), 1);
    remote_stats s0;
    remote_get_stats(a, &s0);

    TU_CHECK_EQ(tu_sh_out(out, sizeof out, "redis-cli -p %d cluster setslot %u importing %s", dst, slot, src_id), 0);
    TU_CHECK(strstr(out, "OK"));
    TU_CHECK_EQ(tu_sh_out(out, sizeof out, "redis-cli -p %d cluster setslot %u migrating %s", src, slot, dst_id), 0);
    TU_CHECK(strstr(out, "OK"));
    TU_CHECK_EQ(tu_sh_out(out, sizeof out, "redis-cli -p %d migrate 127.0.0.1 %d '' 0 5000 keys %s", src, dst, k), 0);
    TU_CHECK(strstr(out, "OK"));
    /* the key moved, the slot did not: the source answers ASK */
    get_req(&q, i);
    TU_CHECK_EQ(remote_get_batch(a, &q, 1), 1);
    TU_CHECK(memcmp(gbuf[i], data[i], lens[i]) == 0);
    remote_stats s1;
    remote_get_stats(a, &s1);
    TU_CHECK(s1.asked > s0.asked);
    TU_CHECK_EQ(s1.moved, s0.moved);

    for (int p = base_port; p < base_port + n_ports; p++)
        tu_sh_out(NULL, 0, "redis-cli -p %d cluster setslot %u node %s", p, slot, dst_id);
    /* the slot moved: B's map is stale, the old owner answers MOVED */
    get_req(&q, i);
    TU_CHECK_EQ(remote_get_batch(b, &q, 1), 1);
    TU_CHECK(memcmp(gbuf[i], data[i], lens[i]) == 0);
    remote_stats s2;
    remote_get_stats(b, &s2);
    TU_CHECK(s2.moved >= 1);
    /* puts follow too */
    remote_req p;
    put_req(&p, i);
    TU_CHECK_EQ(remote_put_batch(b, &p, 1, 0, 0), 1);
    printf("redirects: slot %u migrated %d -> %d: ASK followed (asked=%llu), MOVED followed "
           "(moved=%llu)\n", slot, src, dst, (unsigned long long)s1.asked,
           (unsigned long long)s2.moved);
}

static void test_holders(remote_ctx *a, remote_ctx *b)
{
    remote_holder h[4];
    size_t n = 99;
    TU_CHECK_EQ(remote_publish(a, "engine-A", NS, keys, 10, 5000, 0), 0);
    TU_CHECK_EQ(remote_publish(b, "engine-B", NS, keys, 4, 5000, 0), 0);
    TU_CHECK_EQ(remote_publish(b, "engine-C", NS, keys + 1, 9, 300, 0), 0); /* no keys[0] */
    TU_CHECK_EQ(remote_publish(b, "engine-D", NS, keys, 2, 300, 0), 0);
    TU_CHECK_EQ(remote_publish(a, "bad id!", NS, keys, 1, 0, 0), -EINVAL);
    TU_CHECK_EQ(remote_publish(a, "x", NS, keys, 1, 0, REMOTE_PUB_REPLACE | REMOTE_PUB_REMOVE), -EINVAL);
    TU_CHECK_EQ(remote_holders(b, NS, keys, 12, h, 4, &n), 0);
    TU_CHECK_EQ(n, 3);
    TU_CHECK(strcmp(h[0].engine, "engine-A") == 0 && h[0].blocks == 10);
    TU_CHECK(strcmp(h[1].engine, "engine-B") == 0 && h[1].blocks == 4);
    TU_CHECK(strcmp(h[2].engine, "engine-D") == 0 && h[2].blocks == 2);
    TU_CHECK_EQ(remote_holders(b, NS + 1, keys, 12, h, 4, &n), 0); /* other namespace */
    TU_CHECK_EQ(n, 0);
    /* eviction: A drops block 5 -> its prefix is 5 blocks */
    TU_CHECK_EQ(remote_publish(a, "engine-A", NS, keys + 5, 1, 5000, REMOTE_PUB_REMOVE), 0);
    TU_CHECK_EQ(remote_holders(b, NS, keys, 12, h, 1, &n), 0);
    TU_CHECK_EQ(n, 3);
    TU_CHECK(strcmp(h[0].engine, "engine-A") == 0 && h[0].blocks == 5);
    /* replace: B now holds exactly keys[0..8) */
    TU_CHECK_EQ(remote_publish(b, "engine-B", NS, keys, 8, 5000, REMOTE_PUB_REPLACE), 0);
    usleep(400 * 1000); /* C and D expire */
    TU_CHECK_EQ(remote_holders(a, NS, keys, 12, h, 4, &n), 0);
    TU_CHECK_EQ(n, 2);
    TU_CHECK(strcmp(h[0].engine, "engine-B") == 0 && h[0].blocks == 8);
    TU_CHECK(strcmp(h[1].engine, "engine-A") == 0 && h[1].blocks == 5);
    printf("holders: longest prefix first, removal, replace and expiry\n");
}

typedef struct thr_arg {
    remote_ctx *r;
    int hits;
} thr_arg;

static void *thr_get(void *p)
{
    thr_arg *t = p;
    unsigned char *buf = malloc(MAXLEN);
    TU_CHECK(buf);
    for (int round = 0; round < 10; round++)
        for (int i = 0; i < NB; i += 3) {
            remote_req q;
            put_req(&q, i);
            q.buf = buf;
            q.len = MAXLEN;
            if (remote_get_batch(t->r, &q, 1) == 1 && q.len == lens[i] &&
                memcmp(buf, data[i], lens[i]) == 0)
                t->hits++;
        }
    free(buf);
    return NULL;
}

static void test_threads(remote_ctx *a)
{
    pthread_t th[2];
    thr_arg ta[2] = {{a, 0}, {a, 0}};
    for (int i = 0; i < 2; i++)
        TU_CHECK_EQ(pthread_create(&th[i], NULL, thr_get, &ta[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    TU_CHECK_EQ(ta[0].hits, 10 * ((NB + 2) / 3));
    TU_CHECK_EQ(ta[1].hits, 10 * ((NB + 2) / 3));
    printf("threads: two threads share one context\n");
}

static void test_oom(void)
{
    int opened = 0, ops = 0;
    for (long k = 0; k < 40; k++) {
        remote_ctx *c = NULL;
        util_alloc_fail_after(k);
        int rc = remote_open(seeds, salt, NULL, &c);
        util_alloc_fail_after(-1);
        TU_CHECK(rc == 0 || rc == -ENOMEM);
        if (rc)
            continue;
        opened++;
        remote_req q[4];
        for (int i = 0; i < 4; i++)
            get_req(&q[i], i);
        util_alloc_fail_after(k / 4);
        rc = remote_get_batch(c, q, 4);
        int rc2 = remote_publish(c, "oom", NS, keys, 3, 1000, 0);
        size_t n;
        remote_holder h[2];
        int rc3 = remote_holders(c, NS, keys, 3, h, 2, &n);
        util_alloc_fail_after(-1);
        TU_CHECK(rc == 4 || rc == -ENOMEM || rc >= 0);
        TU_CHECK(rc2 == 0 || rc2 == -ENOMEM);
        TU_CHECK(rc3 == 0 || rc3 == -ENOMEM);
        ops += rc == 4;
        for (int i = 0; i < 4; i++)
            get_req(&q[i], i);
        TU_CHECK_EQ(remote_get_batch(c, q, 4), 4); /* usable after the failures */
        remote_close(c);
    }
    TU_CHECK(opened > 0);
    printf("oom: %d opens survived injected failures, %d batches completed\n", opened, ops);
}

static void test_failover(remote_ctx *a, remote_ctx *b)
{
    remote_req q[NB];
    int res[NB];
    /* durable puts: every block is on a replica before the kill */
    for (int i = 0; i < NB; i++)
        put_req(&q[i], i);
    TU_CHECK_EQ(remote_put_batch(a, q, NB, 0, REMOTE_PUT_DURABLE), NB);

    /* the victim: the master of block 0's slot */
    int victim = tu_cluster_owner(base_port, key_slot(NS, keys[0]), NULL);
    TU_CHECK(victim > 0);
    int on_victim[NB], n_victim = 0;
    for (int i = 0; i < NB; i++) {
        on_victim[i] = tu_cluster_owner(base_port == victim ? base_port + 1 : base_port,
                                key_slot(NS, keys[i]), NULL) == victim;
        n_victim += on_victim[i];
    }
    char pidf[PATH_MAX + 32], pidbuf[32];
    snprintf(pidf, sizeof pidf, "%s/%d/redis.pid", dir, victim);
    FILE *f = fopen(pidf, "r");
    TU_CHECK(f && fgets(pidbuf, sizeof pidbuf, f));
    fclose(f);
    pid_t pid = (pid_t)atoi(pidbuf);
    TU_CHECK(pid > 0);
    /* a reader on its own context runs through the kill */
    remote_ctx *c = NULL;
    TU_CHECK_EQ(remote_open(seeds, salt, NULL, &c), 0);
    reader_arg ra = {.r = c, .on_victim = on_victim};
    pthread_t th;
    TU_CHECK_EQ(pthread_create(&th, NULL, reader_main, &ra), 0);
    usleep(150 * 1000);
    TU_CHECK_EQ(kill(pid, SIGKILL), 0);
    uint64_t t_kill = util_now_ns();

    /* right after the kill: its blocks miss, no error, the rest hit */
    int hits = get_all(a, res);
    TU_CHECK_EQ(hits, NB - n_victim);
    for (int i = 0; i < NB; i++)
        TU_CHECK(on_victim[i] ? res[i] != 0 : res[i] == 0);
    hits = get_all(b, res);
    TU_CHECK_EQ(hits, NB - n_victim);

    /* keep serving until the replica takes over (cluster-node-timeout 1000 ms) */
    int rounds = 0, min_hits = NB, recovered = 0;
    double t_back = 0;
    unsigned char extra[4096];
    tu_fill(&rng, extra, sizeof extra);
    while ((util_now_ns() - t_kill) < 20000000000ull) {
        hits = get_all(rounds & 1 ? a : b, res);
        if (hits < min_hits)
            min_hits = hits;
        /* puts keep being accepted for the live shards (never an error) */
        remote_req p = {.ns = NS + 2, .key = (uint64_t)rounds, .units = tokens, .n_units = 1,
                        .buf = extra, .len = sizeof extra};
        TU_CHECK(remote_put_batch(a, &p, 1, 0, 0) >= 0);
        remote_probe(a);
        rounds++;
        if (hits == NB) {
            recovered = 1;
            t_back = (double)(util_now_ns() - t_kill) / 1e9;
            break;
        }
        usleep(100 * 1000);
    }
    TU_CHECK(recovered);
    TU_CHECK(min_hits >= NB - n_victim); /* the other shards never stopped serving */
    /* both engines see every durable block again (the other one within a map refresh) */
    int b_hits = 0;
    for (int t = 0; t < 30 && (b_hits = get_all(rounds & 1 ? b : a, res)) != NB; t++)
        usleep(100 * 1000);
    TU_CHECK_EQ(b_hits, NB);
    ra.stop = 1;
    pthread_join(th, NULL);
    TU_CHECK(ra.batches > 5 && ra.victim_misses > 0);
    remote_close(c);
    /* the promoted replica has no replica of its own: a durable put there is stored but
     * reported unreplicated (-ETIME), elsewhere it is 0 */
    int stored = 0;
    for (int t = 0; t < 20; t++) { /* nodes learn the failover by gossip: maps converge */
        for (int i = 0; i < NB; i++)
            put_req(&q[i], i);
        stored = remote_put_batch(a, q, NB, 0, REMOTE_PUT_DURABLE);
        int unsettled = 0;
        for (int i = 0; i < NB; i++)
            unsettled += q[i].res == -ENOTCONN || q[i].res == -EAGAIN;
        if (!unsettled)
            break;
        usleep(100 * 1000);
    }
    TU_CHECK_EQ(stored, NB - n_victim);
    for (int i = 0; i < NB; i++)
        TU_CHECK_EQ(q[i].res, on_victim[i] ? -ETIME : 0);
    /* new puts succeed everywhere */
    remote_req p[NB];
    unsigned char *fresh = malloc(NB * 1024);
    TU_CHECK(fresh);
    tu_fill(&rng, fresh, NB * 1024);
    for (int i = 0; i < NB; i++)
        p[i] = (remote_req){.ns = NS + 3, .key = keys[i], .units = tokens, .n_units = BT,
                            .buf = fresh + i * 1024, .len = 1024};
    int n_ok = 0;
    for (int t = 0; t < 20 && (n_ok = remote_put_batch(a, p, NB, 0, 0)) != NB; t++)
        usleep(100 * 1000);
    TU_CHECK_EQ(n_ok, NB);
    for (int t = 0; t < 20; t++) {
        for (int i = 0; i < NB; i++)
            p[i].buf = gbuf[i], p[i].len = MAXLEN;
        if ((n_ok = remote_get_batch(b, p, NB)) == NB)
            break;
        usleep(100 * 1000);
    }
    TU_CHECK_EQ(n_ok, NB);
    for (int i = 0; i < NB; i++)
        TU_CHECK(memcmp(gbuf[i], fresh + i * 1024, 1024) == 0);
    free(fresh);
    remote_stats st;
    remote_get_stats(a, &st);
    TU_CHECK(st.miss_down > 0);
    TU_CHECK_EQ(st.masters, 3);
    TU_CHECK_EQ(st.slots_covered, 16384);
    printf("failover: killed master :%d (%d of %d blocks) under a running reader (%d batches, "
           "%d victim misses, min hits %d); they missed with no error while the rest hit; all hit "
           "again %.1f s after the kill (%d rounds); unreplicated durable puts -ETIME; misses "
           "down=%llu timeout=%llu cluster=%llu, reconnects=%llu refreshes=%llu\n",
           victim, n_victim, NB, ra.batches, ra.victim_misses, ra.min_hits, t_back, rounds,
           (unsigned long long)st.miss_down,
           (unsigned long long)st.miss_timeout, (unsigned long long)st.miss_cluster,
           (unsigned long long)st.reconnects, (unsigned long long)st.map_refreshes);
}

int main(void)
{
    uint64_t seed = tu_seed("test_remote", 0x5eed7e11);
    tu_rng_init(&rng, seed);
    tu_rng_init(&port_rng, (uint64_t)getpid() ^ util_now_ns());
    snprintf(salt, sizeof salt, "t%d", (int)getpid());
    uint64_t t0 = util_now_ns();
    base_port = tu_cluster_start(&port_rng, "test_remote", 3, 1, dir);
    signal(SIGPIPE, SIG_DFL); /* the library must not need SIGPIPE ignored */

    make_blocks();
    for (int i = 0; i < NB; i++)
        TU_CHECK((gbuf[i] = malloc(MAXLEN)));
    test_slots();
    test_open_errors();

    /* engine A seeds through a replica (a non-owner for every slot), B through a master */
    remote_ctx *a = NULL, *b = NULL;
    snprintf(seeds, sizeof seeds, "127.0.0.1:%d", base_port + 4);
    TU_CHECK_EQ(remote_open(seeds, salt, NULL, &a), 0);
    snprintf(seeds, sizeof seeds, "127.0.0.1:%d,127.0.0.1:%d", base_port, base_port + 1);
    TU_CHECK_EQ(remote_open(seeds, salt, NULL, &b), 0);
    TU_CHECK_EQ(remote_probe(a), 3);

    test_share(a, b);
    test_window();
    test_redirects(a, b);
    test_holders(a, b);
    test_threads(a);
    test_oom();
    test_failover(a, b);

    remote_stats st;
    remote_get_stats(a, &st);
    printf("stats A: gets=%llu hits=%llu puts=%llu ok=%llu moved=%llu asked=%llu read %.2f GB/s "
           "write %.2f GB/s rtt %.0f us\n",
           (unsigned long long)st.gets, (unsigned long long)st.hits, (unsigned long long)st.puts,
           (unsigned long long)st.puts_ok, (unsigned long long)st.moved,
           (unsigned long long)st.asked, st.read_bw / 1e9, st.write_bw / 1e9, st.latency_s * 1e6);
    remote_close(a);
    /* everything down: the only case a batch itself fails (every request still says why) */
    tu_cluster_stop();
    remote_req q[4];
    for (int i = 0; i < 4; i++)
        get_req(&q[i], i);
    TU_CHECK_EQ(remote_get_batch(b, q, 4), -ENOTCONN);
    for (int i = 0; i < 4; i++)
        TU_CHECK_EQ(q[i].res, -ENOTCONN);
    TU_CHECK_EQ(remote_probe(b), 0);
    remote_close(b);
    printf("down: with every master gone a batch returns -ENOTCONN\n");
    for (int i = 0; i < NB; i++) {
        free(data[i]);
        free(gbuf[i]);
    }
    printf("test_remote: ok in %.1f s\n", (double)(util_now_ns() - t0) / 1e9);
    return 0;
}
