// ctest: labels=unit;remote timeout=180
/*
 * test_remote_engine.c — two kvtier ENGINES sharing blocks through the remote tier (issue 9)
 * on a real local Redis Cluster (3 masters + 3 replicas on free loopback ports, started with
 * tests/redis-cluster.sh; a watchdog stops it however this process ends):
 *   - open errors: malformed seeds fail the open; an unreachable cluster does not (misses);
 *   - engine A (durable write-through, id "engA") puts prompts; engine B (its own DRAM, no
 *     shared memory) matches them in full through the remote tier and reads byte-identical;
 *   - holders: B asks who holds a prompt's longest prefix -> engA (all blocks);
 *   - a master is SIGKILLed mid-run: B's matches stop exactly before the first block on that
 *     shard, with no error; both engines keep serving (puts, local matches);
 *   - after the failover the durable blocks match in full again and new puts round-trip.
 * Skips (77) when redis-server or redis-cli is not installed.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/internal.h"
#include "testutil.h"
#include "tiers/remote.h"
#include "util/util.h"

#define BT 16    /* tokens per block */
#define NBLK 8   /* blocks per prompt */
#define NP 8     /* prompts per set */
#define NSETS 4  /* 0: shared, 1: killed mid-run, 2: during the outage, 3..: after */
#define MAXP 64  /* prompts in all (set 3 grows with retries) */

static char dir[PATH_MAX], seeds[256], salt[64];
static int base_port;
static tu_rng rng, port_rng;
static uint32_t tok[MAXP][NBLK * BT];
static unsigned char *blk[MAXP][NBLK];
static uint64_t bb;
static kvt_layout lay;

/* ---------------------------------------------------------------- engines */

static kvt_engine *open_engine(const char *id, unsigned flags, kvt_ns **ns)
{
    kvt_options *o = tu_dram_options(64ull << 20, 0);
    TU_CHECK_EQ(kvt_options_set_remote(o, seeds, salt, flags), 0);
    TU_CHECK_EQ(kvt_options_set_engine_id(o, id), 0);
    kvt_engine *e = tu_open_engine(o, id);
    TU_CHECK_EQ(kvt_ns_open(e, "llama", "acme", &lay, 0, ns), 0);
    return e;
}

static void put_prompt(kvt_ns *ns, int p)
{
    size_t stored = 0;
    TU_CHECK_EQ(kvt_put(ns, tok[p], NBLK * BT, (const void *const *)blk[p], &stored), 0);
    TU_CHECK_EQ(stored, NBLK);
}

/* Match prompt p with a lease; check rc 0 and the bytes of every matched block. Returns the
 * matched blocks. */
static size_t match_check(kvt_ns *ns, int p)
{
    size_t matched = 99999;
    kvt_lease *l = NULL;
    TU_CHECK_EQ(kvt_match(ns, tok[p], NBLK * BT, &matched, &l), 0);
    TU_CHECK(matched % BT == 0 && matched <= NBLK * BT);
    size_t nb = matched / BT;
    TU_CHECK_EQ(kvt_lease_blocks(l), nb);
    if (nb) {
        unsigned char *buf = malloc(nb * bb);
        TU_CHECK(buf);
        TU_CHECK_EQ(kvt_read_contig(l, 0, nb, buf, nb * bb), 0);
        for (size_t i = 0; i < nb; i++) {
            TU_CHECK(memcmp(buf + i * bb, blk[p][i], bb) == 0);
            kvt_tier t;
            TU_CHECK_EQ(kvt_lease_block_tier(l, i, &t), 0);
            TU_CHECK_EQ(t, KVT_TIER_DRAM);
        }
        free(buf);
    }
    kvt_release(l);
    return nb;
}

static unsigned block_slot(kvt_ns *ns, int p, size_t i)
{
    uint64_t keys[NBLK];
    TU_CHECK_EQ(kvt_block_keys(ns, tok[p], NBLK * BT, keys), 0);
    char k[REMOTE_KEY_MAX];
    int kl = remote_key(salt, eremote_ns_id(ns), keys[i], k, sizeof k);
    TU_CHECK(kl > 0);
    return remote_slot(k, (size_t)kl);
}

static void test_open_errors(void)
{
    kvt_options *o = tu_dram_options(8ull << 20, 0);
    TU_CHECK_EQ(kvt_options_set_remote(o, "127.0.0.1:1", "bad salt!", 0), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_remote(o, "127.0.0.1:1", "ok", 0x8), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_engine_id(o, "no spaces"), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_remote(o, "not-a-seed-list", "ok", 0), 0);
    kvt_engine *e = NULL;
    TU_CHECK_EQ(kvt_engine_open(o, &e), -EINVAL);
    /* nothing listens there: the engine opens, remote lookups are misses, puts stay local */
    int port = tu_pick_ports(&port_rng, 6);
    char s[64];
    snprintf(s, sizeof s, "127.0.0.1:%d", port);
    TU_CHECK_EQ(kvt_options_set_remote(o, s, "ok", 0), 0);
    TU_CHECK_EQ(kvt_engine_open(o, &e), 0);
    kvt_options_destroy(o);
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "llama", "acme", &lay, 0, &ns), 0);
    TU_CHECK_EQ(match_check(ns, 0), 0);
    put_prompt(ns, 0);
    TU_CHECK_EQ(match_check(ns, 0), NBLK);
    TU_CHECK_EQ(kvt_remote_sync(e), 0);
    kvt_stats st = tu_stats(e);
    TU_CHECK_EQ(st.remote_state, 2);
    TU_CHECK(st.remote_errors >= 1);
    TU_CHECK_EQ(st.remote_put_dropped, NBLK);
    size_t n = 0;
    kvt_remote_holder h[2];
    TU_CHECK_EQ(kvt_remote_holders(ns, tok[0], NBLK * BT, h, 2, &n), -ENOTCONN);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    /* no remote tier at all */
    TU_CHECK_EQ(kvt_remote_sync(NULL), -EINVAL);
    printf("open: malformed seeds -EINVAL; unreachable cluster opens, misses, drops "
           "write-through\n");
}

int main(void)
{
    uint64_t seed = tu_seed("test_remote_engine", 0x9e9e7e11);
    tu_rng_init(&rng, seed);
    tu_rng_init(&port_rng, (uint64_t)getpid() ^ util_now_ns());
    lay = tu_layout(2, 2, 64, KVT_DTYPE_FP16, BT);
    bb = kvt_layout_block_bytes(&lay);
    for (int p = 0; p < MAXP; p++) {
        tu_fill_tokens(&rng, tok[p], NBLK * BT);
        for (int i = 0; i < NBLK; i++) {
            TU_CHECK((blk[p][i] = malloc(bb)));
            tu_fill(&rng, blk[p][i], bb);
        }
    }
    /* independent prompts, except prompt 1, which shares prompt 0's first 3 blocks */
    memcpy(tok[1], tok[0], 3 * BT * sizeof(uint32_t));
    for (int i = 0; i < 3; i++)
        memcpy(blk[1][i], blk[0][i], bb);

    test_open_errors();
    snprintf(salt, sizeof salt, "e%d", (int)getpid());
    uint64_t t0 = util_now_ns();
    base_port = tu_cluster_start(&port_rng, "test_remote_engine", 3, 1, dir);
    snprintf(seeds, sizeof seeds, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", base_port,
             base_port + 1, base_port + 2);

    kvt_ns *na, *nb;
    kvt_engine *A = open_engine("engA", KVT_REMOTE_DURABLE, &na);
    kvt_engine *B = open_engine("engB", 0, &nb);
    TU_CHECK_EQ(eremote_ns_id(na), eremote_ns_id(nb)); /* cluster-wide namespace identity */
    char id[64];
    TU_CHECK_EQ(kvt_engine_id(A, id, sizeof id), 0);
    TU_CHECK(strcmp(id, "engA") == 0);

    /* ---- set 0: A computes, B hits through the remote tier */
    put_prompt(na, 0);
    for (int p = 2; p < NP; p++)
        put_prompt(na, p);
    /* prompt 1 shares prompt 0's first 3 blocks: A stores 5 new ones */
    size_t stored = 0;
    TU_CHECK_EQ(kvt_put(na, tok[1], NBLK * BT, (const void *const *)blk[1], &stored), 0);
    TU_CHECK_EQ(stored, NBLK - 3);
    TU_CHECK_EQ(kvt_remote_sync(A), 0);
    kvt_stats sa = tu_stats(A);
    TU_CHECK_EQ(sa.remote_state, 1);
    TU_CHECK_EQ(sa.remote_puts, NP * NBLK - 3);
    TU_CHECK_EQ(sa.remote_put_failures + sa.remote_put_dropped, 0);
    for (int p = 0; p < NP; p++)
        TU_CHECK_EQ(match_check(nb, p), NBLK);
    kvt_stats sb = tu_stats(B);
    TU_CHECK_EQ(sb.remote_hits, NP * NBLK - 3);
    TU_CHECK_EQ(sb.remote_errors, 0);
    for (int p = 0; p < NP; p++) /* now local to B */
        TU_CHECK_EQ(match_check(nb, p), NBLK);
    TU_CHECK_EQ(tu_stats(B).remote_hits, sb.remote_hits);
    TU_CHECK_EQ(tu_stats(B).remote_puts, 0); /* fetched blocks are not written back */
    printf("share: A stored %d blocks; B matched all %d prompts in full through the remote "
           "tier, byte-identical (%llu remote hits), then locally\n",
           NP * NBLK - 3, NP, (unsigned long long)sb.remote_hits);

    /* ---- holders: set 1 only A holds */
    for (int p = NP; p < 2 * NP; p++)
        put_prompt(na, p);
    TU_CHECK_EQ(kvt_remote_sync(A), 0);
    TU_CHECK_EQ(kvt_remote_sync(B), 0);
    kvt_remote_holder h[4];
    size_t nh = 0;
    TU_CHECK_EQ(kvt_remote_holders(nb, tok[NP], NBLK * BT, h, 4, &nh), 0);
    TU_CHECK_EQ(nh, 1);
    TU_CHECK(strcmp(h[0].engine, "engA") == 0);
    TU_CHECK_EQ(h[0].blocks, NBLK);
    /* prompt 0: both hold it (B fetched it); ties by id: engA first */
    TU_CHECK_EQ(kvt_remote_holders(nb, tok[0], NBLK * BT, h, 4, &nh), 0);
    TU_CHECK_EQ(nh, 2);
    TU_CHECK(strcmp(h[0].engine, "engA") == 0 && strcmp(h[1].engine, "engB") == 0);
    TU_CHECK_EQ(h[0].blocks, NBLK);
    TU_CHECK_EQ(h[1].blocks, NBLK);
    printf("holders: B asks who holds set 1's prompt -> engA only (%d blocks); prompt 0 -> "
           "engA, engB (%u, %u blocks)\n", NBLK, h[0].blocks, h[1].blocks);

    /* ---- kill the master of set 1 prompt NP's block 2 mid-run */
    unsigned slot = block_slot(na, NP, 2);
    int victim = tu_cluster_owner(base_port + 3, slot, NULL);
    TU_CHECK(victim > 0);
    int alive = victim == base_port ? base_port + 1 : base_port;
    int expect[2 * NP];
    int stopped_early = 0;
    for (int p = NP; p < 2 * NP; p++) {
        expect[p] = NBLK;
        for (int i = 0; i < NBLK; i++)
            if (tu_cluster_owner(alive, block_slot(na, p, (size_t)i), NULL) == victim) {
                expect[p] = i;
                break;
            }
        stopped_early += expect[p] < NBLK;
    }
    TU_CHECK(expect[NP] <= 2 && stopped_early >= 1);
    char pidf[PATH_MAX + 32], pidbuf[32];
    snprintf(pidf, sizeof pidf, "%s/%d/redis.pid", dir, victim);
    FILE *f = fopen(pidf, "r");
    TU_CHECK(f && fgets(pidbuf, sizeof pidbuf, f));
    fclose(f);
    pid_t pid = (pid_t)atoi(pidbuf);
    TU_CHECK(pid > 0);
    TU_CHECK_EQ(kill(pid, SIGKILL), 0);
    uint64_t t_kill = util_now_ns();

    /* B's matches stop before the first block on the dead shard, no error */
    int short_matches = 0;
    for (int p = NP; p < 2 * NP; p++) {
        size_t got = match_check(nb, p);
        TU_CHECK((int)got >= expect[p]);
        short_matches += (int)got < NBLK;
        if ((util_now_ns() - t_kill) < 1000000000ull) /* before any failover can happen */
            TU_CHECK_EQ((int)got, expect[p]);
    }
    TU_CHECK(short_matches >= 1);
    /* both engines keep serving: A puts set 2 and matches it locally; B serves set 0 */
    for (int p = 2 * NP; p < 3 * NP; p++) {
        put_prompt(na, p);
        TU_CHECK_EQ(match_check(na, p), NBLK);
    }
    for (int p = 0; p < NP; p++)
        TU_CHECK_EQ(match_check(nb, p), NBLK);
    sb = tu_stats(B);
    TU_CHECK(sb.remote_errors >= 1);
    printf("kill: master :%d SIGKILLed; %d of %d set-1 prompts stopped early at the dead shard "
           "(exactly before its first block) with rc 0; A kept putting, both kept matching; "
           "B remote errors %llu\n",
           victim, short_matches, NP, (unsigned long long)sb.remote_errors);

    /* ---- failover: the durable set-1 blocks come back, then new puts round-trip */
    double t_back = -1;
    while ((util_now_ns() - t_kill) < 30000000000ull) {
        int full = 0;
        for (int p = NP; p < 2 * NP; p++)
            full += match_check(nb, p) == NBLK;
        if (full == NP) {
            t_back = (double)(util_now_ns() - t_kill) / 1e9;
            break;
        }
        usleep(250 * 1000);
    }
    TU_CHECK(t_back > 0);
    int p = 3 * NP, ok = 0;
    double t_new = -1;
    for (; p < MAXP && !ok; p++) {
        kvt_stats before = tu_stats(A);
        put_prompt(na, p);
        TU_CHECK_EQ(kvt_remote_sync(A), 0);
        kvt_stats after = tu_stats(A);
        ok = after.remote_puts - before.remote_puts == NBLK && match_check(nb, p) == NBLK;
        if (!ok)
            usleep(500 * 1000);
    }
    TU_CHECK(ok);
    t_new = (double)(util_now_ns() - t_kill) / 1e9;
    printf("failover: every durable set-1 block hit again %.1f s after the kill; a new prompt "
           "round-tripped A -> cluster -> B %.1f s after it (%d tries)\n",
           t_back, t_new, p - 3 * NP);
    sa = tu_stats(A);
    sb = tu_stats(B);
    printf("stats A: remote puts %llu failed %llu dropped %llu publishes %llu; B: hits %llu "
           "misses %llu errors %llu read %.1f MiB\n",
           (unsigned long long)sa.remote_puts, (unsigned long long)sa.remote_put_failures,
           (unsigned long long)sa.remote_put_dropped, (unsigned long long)sa.remote_publishes,
           (unsigned long long)sb.remote_hits, (unsigned long long)sb.remote_misses,
           (unsigned long long)sb.remote_errors, (double)sb.remote_bytes_read / 1048576.0);
    TU_CHECK_EQ(kvt_engine_close(A), 0);
    TU_CHECK_EQ(kvt_engine_close(B), 0);
    tu_cluster_stop();
    for (int q = 0; q < MAXP; q++)
        for (int i = 0; i < NBLK; i++)
            free(blk[q][i]);
    printf("test_remote_engine: ok in %.1f s\n", (double)(util_now_ns() - t0) / 1e9);
    return 0;
}
