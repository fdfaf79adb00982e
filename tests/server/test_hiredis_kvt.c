/*
 * test_hiredis_kvt.c — the native prefix commands (KVT.*) through hiredis against a running
 * kvtier-serve: namespaces, MATCH (matched tokens, tiers, load plan), PUT (whole and FROM),
 * GET (streamed bytes), PREFETCH, TTL hints (expiry after the last use), the load plan, STATS, and a seeded random
 * workload checked against a reference model ("a dumb table that always tells the truth"),
 * including invariant 1: a prefix that differs in one token never matches past it.
 *
 * usage: test_hiredis_kvt path/to/kvtier-serve      exit 0 pass, 1 fail, 77 skip
 */
#include <errno.h>
#include <hiredis.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEED 20251122u

static int fails;
static pid_t server_pid;
static char sock_path[256];
static char dir_path[200];
static char data_path[256];

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (cond) {                                                                           \
            printf("ok - ");                                                                  \
        } else {                                                                              \
            printf("FAIL (%s:%d) - ", __FILE__, __LINE__);                                    \
            fails++;                                                                          \
        }                                                                                     \
        printf(__VA_ARGS__);                                                                  \
        printf("\n");                                                                         \
    } while (0)

static uint64_t rng_state = SEED;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

static void le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint8_t *blob_of(const uint32_t *t, size_t n)
{
    uint8_t *b = malloc(n * 4 + 1);
    for (size_t i = 0; i < n; i++)
        le32(b + 4 * i, t[i]);
    return b;
}

/* a reply to one command, argv built from (ptr, len) pairs */
static redisReply *cmd(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (!r) {
        fprintf(stderr, "connection error: %s\n", c->errstr);
        exit(1);
    }
    return r;
}

static redisReply *kvt3(redisContext *c, const char *name, const char *ns, const void *a, size_t an)
{
    const char *argv[3] = {name, ns, a};
    size_t lens[3] = {strlen(name), strlen(ns), an};
    return cmd(c, 3, argv, lens);
}

/* a field of a RESP2 flat map reply */
static redisReply *field(redisReply *r, const char *key)
{
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, key) == 0)
            return r->element[i + 1];
    return NULL;
}

static long long match_tokens(redisContext *c, const char *ns, const uint32_t *t, size_t n)
{
    uint8_t *b = blob_of(t, n);
    redisReply *r = kvt3(c, "KVT.MATCH", ns, b, n * 4);
    redisReply *f = field(r, "matched_tokens");
    long long v = f && f->type == REDIS_REPLY_INTEGER ? f->integer : -1;
    freeReplyObject(r);
    free(b);
    return v;
}

static long long put(redisContext *c, const char *ns, const uint32_t *t, size_t n, const uint8_t *kv,
                     size_t kvn, long from, char *err, size_t errn)
{
    uint8_t *b = blob_of(t, n);
    char fromv[32];
    snprintf(fromv, sizeof(fromv), "%ld", from);
    const char *argv[6] = {"KVT.PUT", ns, (const char *)b, (const char *)kv, "FROM", fromv};
    size_t lens[6] = {7, strlen(ns), n * 4, kvn, 4, strlen(fromv)};
    redisReply *r = cmd(c, from >= 0 ? 6 : 4, argv, lens);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (err)
        snprintf(err, errn, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    freeReplyObject(r);
    free(b);
    return v;
}

/* KVT.GET: returns the bytes (malloc'd) and their count */
static uint8_t *get(redisContext *c, const char *ns, const uint32_t *t, size_t n, size_t *len)
{
    uint8_t *b = blob_of(t, n);
    redisReply *r = kvt3(c, "KVT.GET", ns, b, n * 4);
    free(b);
    if (r->type != REDIS_REPLY_STRING) {
        printf("KVT.GET: %s\n", r->type == REDIS_REPLY_ERROR ? r->str : "not a string");
        freeReplyObject(r);
        *len = (size_t)-1;
        return NULL;
    }
    uint8_t *out = malloc(r->len + 1);
    memcpy(out, r->str, r->len);
    *len = r->len;
    freeReplyObject(r);
    return out;
}

static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* ---------------------------------------------------------------- reference model */
/* Every cached block: the token prefix up to and including it, and its bytes. */
typedef struct ref_block {
    uint32_t *tokens;
    size_t n; /* tokens up to the end of this block */
    uint8_t *bytes;
} ref_block;
static ref_block *refs;
static size_t n_refs;

static ref_block *ref_find(const uint32_t *t, size_t n)
{
    for (size_t i = 0; i < n_refs; i++)
        if (refs[i].n == n && memcmp(refs[i].tokens, t, n * 4) == 0)
            return &refs[i];
    return NULL;
}

static void ref_put(const uint32_t *t, size_t n, size_t bt, size_t bb, const uint8_t *kv)
{
    for (size_t b = 0; b < n / bt; b++) {
        size_t len = (b + 1) * bt;
        if (ref_find(t, len))
            continue; /* the engine keeps the first copy; puts skip cached blocks */
        refs = realloc(refs, (n_refs + 1) * sizeof(*refs));
        refs[n_refs].tokens = malloc(len * 4);
        memcpy(refs[n_refs].tokens, t, len * 4);
        refs[n_refs].n = len;
        refs[n_refs].bytes = malloc(bb);
        memcpy(refs[n_refs].bytes, kv + b * bb, bb);
        n_refs++;
    }
}

/* ---------------------------------------------------------------- server */

static void start_server(const char *bin)
{
    const char *base = getenv("KVT_TEST_DIR");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(dir_path, sizeof(dir_path), "%s/kvs-hiredis-XXXXXX", base);
    if (strlen(dir_path) > 80)
        snprintf(dir_path, sizeof(dir_path), "/tmp/kvs-hiredis-XXXXXX");
    if (!mkdtemp(dir_path)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(sock_path, sizeof(sock_path), "%s/kvtier.sock", dir_path);
    snprintf(data_path, sizeof(data_path), "%s/data", dir_path);
    server_pid = fork();
    if (server_pid == 0) {
        execl(bin, bin, "--port", "0", "--unixsocket", sock_path, "--dram-bytes", "64M",
              "--data-dir", data_path, "--loglevel", "warning", (char *)NULL);
        perror("exec");
        _exit(127);
    }
}

static int stop_server(void)
{
    kill(server_pid, SIGTERM);
    int st = 0;
    waitpid(server_pid, &st, 0);
    unlink(sock_path);
    char cmd[sizeof(dir_path) + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir_path);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv)
{
    if (argc < 2 || access(argv[1], X_OK)) {
        fprintf(stderr, "usage: %s path/to/kvtier-serve\n", argv[0]);
        return 2;
    }
    printf("seed %u\n", SEED);
    start_server(argv[1]);
    redisContext *c = NULL;
    for (int i = 0; i < 200; i++) {
        c = redisConnectUnix(sock_path);
        if (c && !c->err)
            break;
        if (c)
            redisFree(c);
        c = NULL;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (!c) {
        fprintf(stderr, "could not connect to %s\n", sock_path);
        stop_server();
        return 1;
    }

    /* namespaces */
    redisReply *r = redisCommand(c, "KVT.NS.CREATE llama 2 2 4 bf16 4");
    CHECK(r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "OK"), "KVT.NS.CREATE llama");
    freeReplyObject(r);
    r = redisCommand(c, "KVT.NS.CREATE llama 2 2 4 bf16 4");
    CHECK(r->type == REDIS_REPLY_STATUS, "KVT.NS.CREATE again with the same layout is OK");
    freeReplyObject(r);
    r = redisCommand(c, "KVT.NS.INFO llama");
    redisReply *f = field(r, "block_bytes");
    const size_t bt = 4, bb = 2 * 2 * 4 * 2 * 4 * 2; /* layers*2*bt*kv_heads*head_dim*2 = 256 */
    CHECK(f && f->integer == (long long)bb, "KVT.NS.INFO block_bytes = %zu", bb);
    f = field(r, "dtype");
    CHECK(f && !strcmp(f->str, "bf16"), "KVT.NS.INFO dtype");
    freeReplyObject(r);
    r = redisCommand(c, "KVT.NS.LIST");
    CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 1 && !strcmp(r->element[0]->str, "llama"),
          "KVT.NS.LIST");
    freeReplyObject(r);

    /* MATCH, PUT, GET */
    uint32_t t[14];
    for (size_t i = 0; i < 14; i++)
        t[i] = 1000 + (uint32_t)i;
    uint8_t *b = blob_of(t, 14);
    r = kvt3(c, "KVT.MATCH", "llama", b, 14 * 4);
    CHECK(field(r, "matched_tokens")->integer == 0, "MATCH on an empty namespace: 0 tokens");
    CHECK(field(r, "load_plan")->type == REDIS_REPLY_NIL, "nothing matched: load_plan is nil");
    freeReplyObject(r);
    uint8_t kv[3 * 256];
    fill(kv, sizeof(kv));
    char err[256];
    CHECK(put(c, "llama", t, 14, kv, 3 * bb, -1, err, sizeof(err)) == 3, "PUT 14 tokens: 3 whole blocks stored");
    ref_put(t, 14, bt, bb, kv);
    r = kvt3(c, "KVT.MATCH", "llama", b, 14 * 4);
    CHECK(field(r, "matched_tokens")->integer == 12, "MATCH: 12 tokens");
    CHECK(field(r, "matched_blocks")->integer == 3, "MATCH: 3 blocks");
    f = field(r, "tiers");
    CHECK(f && f->elements == 1 && !strcmp(f->element[0]->element[0]->str, "dram") &&
              f->element[0]->element[1]->integer == 0 && f->element[0]->element[2]->integer == 3,
          "MATCH: tiers = [[dram, 0, 3]]");
    /* the engine's load plan: 3 small DRAM blocks load far faster than a recompute */
    f = field(r, "load_plan");
    redisReply *lb = field(f, "load_blocks"), *rb = field(f, "recompute_blocks");
    redisReply *ts = field(f, "total_s"), *ar = field(f, "all_recompute_s"), *st = field(f, "steps");
    CHECK(lb && rb && lb->integer + rb->integer == 3 && lb->integer == 3, "load_plan: load 3 blocks");
    CHECK(ts && ar && strtod(ts->str, NULL) <= strtod(ar->str, NULL) && strtod(ar->str, NULL) > 0,
          "load_plan: total_s <= all_recompute_s (never slower than recomputing)");
    CHECK(st && st->elements == 1 && !strcmp(st->element[0]->element[0]->str, "load") &&
              !strcmp(st->element[0]->element[1]->str, "dram") && st->element[0]->element[3]->integer == 3,
          "load_plan: steps = [[load, dram, 0, 3]]");
    freeReplyObject(r);
    size_t len;
    uint8_t *got = get(c, "llama", t, 14, &len);
    CHECK(got && len == 3 * bb && !memcmp(got, kv, len), "GET returns the 3 blocks' bytes");
    free(got);

    /* invariant 1: a token that differs in block 2 stops the match at block 2 */
    uint32_t t2[14];
    memcpy(t2, t, sizeof(t));
    t2[9] ^= 1;
    CHECK(match_tokens(c, "llama", t2, 14) == 8, "one token changed in block 2: only 8 tokens match");
    got = get(c, "llama", t2, 14, &len);
    CHECK(got && len == 2 * bb && !memcmp(got, kv, len), "and GET returns only the 2 common blocks");
    free(got);
    t2[0] ^= 1;
    CHECK(match_tokens(c, "llama", t2, 14) == 0, "first token changed: nothing matches");

    /* PUT FROM: only the new blocks travel */
    uint32_t t3[20];
    memcpy(t3, t, 12 * 4);
    for (size_t i = 12; i < 20; i++)
        t3[i] = 5000 + (uint32_t)i;
    uint8_t kv3[5 * 256];
    memcpy(kv3, kv, 3 * bb);
    fill(kv3 + 3 * bb, 2 * bb);
    CHECK(put(c, "llama", t3, 20, kv3 + 3 * bb, 2 * bb, 3, err, sizeof(err)) == 2,
          "PUT FROM 3: 2 new blocks stored from 2 blocks of bytes");
    ref_put(t3, 20, bt, bb, kv3);
    got = get(c, "llama", t3, 20, &len);
    CHECK(got && len == 5 * bb && !memcmp(got, kv3, len), "GET of the 5-block prefix");
    free(got);
    uint32_t t4[8] = {7, 7, 7, 7, 8, 8, 8, 8};
    CHECK(put(c, "llama", t4, 8, kv, bb, 1, err, sizeof(err)) == -1 && strstr(err, "not cached"),
          "PUT FROM over an uncached block is refused: %s", err);

    /* PREFETCH: the cached prefix's blocks (promoted in the background when not in DRAM) */
    r = kvt3(c, "KVT.PREFETCH", "llama", b, 14 * 4);
    CHECK(r->type == REDIS_REPLY_INTEGER && r->integer == 3, "PREFETCH: 3 cached blocks");
    freeReplyObject(r);
    r = kvt3(c, "KVT.PREFETCH", "nope", b, 14 * 4);
    CHECK(r->type == REDIS_REPLY_ERROR, "PREFETCH of an unknown namespace: an error");
    freeReplyObject(r);
    /* TTL hints: a block unused for longer than its TTL is a miss */
    {
        uint32_t tt[8];
        for (size_t i = 0; i < 8; i++)
            tt[i] = 900000 + (uint32_t)i;
        uint8_t *tb = blob_of(tt, 8);
        const char *av[6] = {"KVT.PUT", "llama", (const char *)tb, (const char *)kv, "TTL", "1s"};
        size_t ln[6] = {7, 5, 32, 2 * bb, 3, 2};
        r = cmd(c, 6, av, ln);
        CHECK(r->type == REDIS_REPLY_INTEGER && r->integer == 2, "PUT with TTL 1s: 2 blocks stored");
        freeReplyObject(r);
        CHECK(match_tokens(c, "llama", tt, 8) == 8, "TTL 1s: a hit at once");
        usleep(1300 * 1000);
        CHECK(match_tokens(c, "llama", tt, 8) == 0, "TTL 1s: a miss 1.3 s after the last use");
        av[5] = "5x";
        r = cmd(c, 6, av, ln);
        CHECK(r->type == REDIS_REPLY_ERROR && strstr(r->str, "TTL hint"), "malformed TTL: %s",
              r->type == REDIS_REPLY_ERROR ? r->str : "(not an error)");
        freeReplyObject(r);
        free(tb);
    }
    free(b);

    /* seeded random workload against the reference model: shared prefixes from a small
     * alphabet, puts of random lengths, every GET checked block by block */
    int bad = 0;
    for (int op = 0; op < 300; op++) {
        size_t n = 1 + rnd() % 24;
        uint32_t tk[24];
        for (size_t i = 0; i < n; i++)
            tk[i] = rnd() % 3;
        if (rnd() % 2) {
            size_t nb = n / bt;
            uint8_t *data = malloc(nb * bb + 1);
            fill(data, nb * bb);
            if (put(c, "llama", tk, n, data, nb * bb, -1, err, sizeof(err)) < 0)
                bad++;
            else
                ref_put(tk, n, bt, bb, data);
            free(data);
        } else {
            size_t want = 0;
            while (want + bt <= n && ref_find(tk, want + bt))
                want += bt;
            got = get(c, "llama", tk, n, &len);
            if (!got || len != want / bt * bb) {
                bad++;
            } else {
                for (size_t k = 0; k < want / bt; k++)
                    if (memcmp(got + k * bb, ref_find(tk, (k + 1) * bt)->bytes, bb))
                        bad++;
            }
            free(got);
        }
    }
    CHECK(bad == 0, "300 random PUT/GET ops agree with the reference model (%zu blocks)", n_refs);

    /* a big streamed GET: 64 blocks of 64 KiB */
    r = redisCommand(c, "KVT.NS.CREATE big 1 1 8192 fp16 2"); /* 1*2*2*1*8192*2 = 64 KiB */
    freeReplyObject(r);
    size_t nbig = 64, bbig = 64 * 1024;
    uint32_t *tb = malloc(nbig * 2 * 4);
    for (size_t i = 0; i < nbig * 2; i++)
        tb[i] = (uint32_t)i * 7u;
    uint8_t *kvb = malloc(nbig * bbig);
    fill(kvb, nbig * bbig);
    CHECK(put(c, "big", tb, nbig * 2, kvb, nbig * bbig, -1, err, sizeof(err)) == (long long)nbig,
          "PUT 4 MiB (64 blocks of 64 KiB)");
    got = get(c, "big", tb, nbig * 2, &len);
    CHECK(got && len == nbig * bbig && !memcmp(got, kvb, len), "streamed GET of 4 MiB is identical");
    free(got);
    free(kvb);
    free(tb);

    r = redisCommand(c, "KVT.STATS");
    f = field(r, "tenant_prefix_lookups");
    CHECK(f && f->integer > 100, "KVT.STATS counts lookups (%lld)", f ? f->integer : -1);
    freeReplyObject(r);
    r = redisCommand(c, "PING");
    CHECK(r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG"), "PING at the end");
    freeReplyObject(r);

    redisFree(c);
    for (size_t i = 0; i < n_refs; i++) {
        free(refs[i].tokens);
        free(refs[i].bytes);
    }
    free(refs);
    int rc = stop_server();
    CHECK(rc == 0, "server exit status after SIGTERM: %d", rc);
    printf(fails ? "FAIL: %d\n" : "PASS\n", fails);
    return fails ? 1 : 0;
}
