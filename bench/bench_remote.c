/*
 * bench_remote.c — 2 MiB KV blocks through the remote tier (tiers/remote: pipelined SET/GET
 * batches over hiredis, checksummed, identity-verified) next to redis-benchmark's SET/GET of
 * the same size with the same pipeline depth against the same Redis Cluster, in one run.
 *
 *   bench_remote [--quick] [--seed host:port] [--blocks N] [--batches N] [--block-kib N]
 *                [--masters N] [--replicas N] [--clients N] [--bench-n N]
 *
 * Without --seed it starts a cluster (tests/redis-cluster.sh; default 3 masters, 0 replicas)
 * on free loopback ports under $KVT_BENCH_DIR, else $KVT_TEST_DIR, else /tmp, and stops it at
 * exit. A batch is --blocks blocks (default 16: the same depth as redis-benchmark -P 16)
 * spread over the masters by key; the working set is 4 batches of distinct keys, cycled.
 * "med" is the median batch bandwidth (payload bytes / batch wall time), "p99" the bandwidth
 * 99% of batches beat (the slow tail). redis-benchmark reports one aggregate rate per test
 * (requests/s × value bytes), shown in both columns. "vs peer" divides kvtier's median by
 * redis-benchmark's rate for the same operation. The memcpy row is the single-core copy
 * bandwidth of 2 MiB buffers on this machine: the remote tier copies each byte at least once
 * in the kernel per direction, so it is a physical ceiling for one client thread.
 * Exit 77 when redis-server (or redis-benchmark) is not installed.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"
#include "tiers/remote.h"
#include "util/util.h"

static char dir[PATH_MAX], script[PATH_MAX];
static int started;

static void stop_cluster(void)
{
    if (!started)
        return;
    started = 0;
    char cmd[2 * PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "bash '%s' stop '%s'", script, dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_remote: cluster stop failed\n");
}

static void on_signal(int sig)
{
    stop_cluster();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static const char *str_opt(int argc, char **argv, const char *name)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

typedef struct row {
    const char *op, *who;
    double med, p99; /* bytes/s */
} row;

/* redis-benchmark --csv: "SET","<rps>",... and "GET","<rps>",... Returns 0 and the rates. */
static int run_redis_benchmark(const char *host, int port, size_t bytes, int clients, long n,
                               double *set_rps, double *get_rps, char *cmd, size_t cmdcap)
{
    snprintf(cmd, cmdcap,
             "redis-benchmark -h %s -p %d --cluster -t set,get -d %zu -P 16 -c %d -n %ld --csv",
             host, port, bytes, clients, n);
    char full[1024];
    snprintf(full, sizeof full, "%s 2>/dev/null", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -errno;
    char line[512];
    *set_rps = *get_rps = 0;
    while (fgets(line, sizeof line, p)) {
        double v;
        if (sscanf(line, "\"SET\",\"%lf\"", &v) == 1)
            *set_rps = v;
        else if (sscanf(line, "\"GET\",\"%lf\"", &v) == 1)
            *get_rps = v;
    }
    int st = pclose(p);
    return (WIFEXITED(st) && WEXITSTATUS(st) == 0 && *set_rps > 0 && *get_rps > 0) ? 0 : -EIO;
}

static unsigned char *blocks_mem;

int main(int argc, char **argv)
{
    int quick = bu_flag(argc, argv, "--quick");
    size_t bytes = (size_t)bu_opt(argc, argv, "--block-kib", 2048) << 10;
    int per_batch = (int)bu_opt(argc, argv, "--blocks", 16);
    int batches = (int)bu_opt(argc, argv, "--batches", quick ? 6 : 60);
    int masters = (int)bu_opt(argc, argv, "--masters", 3);
    int replicas = (int)bu_opt(argc, argv, "--replicas", 0);
    int clients = (int)bu_opt(argc, argv, "--clients", 3);
    long bench_n = (long)bu_opt(argc, argv, "--bench-n", quick ? 96 : 1920);
    const char *seed = str_opt(argc, argv, "--seed");
    if (bytes == 0 || per_batch < 1 || per_batch > 4096 || batches < 1 || masters < 3 ||
        replicas < 0 || clients < 1 || bench_n < 16) {
        fprintf(stderr, "bench_remote: bad arguments\n");
        return 2;
    }
    bu_header(argc, argv);
    if (system("command -v redis-benchmark >/dev/null 2>&1") != 0 ||
        (!seed && system("command -v redis-server >/dev/null 2>&1 && "
                         "command -v redis-cli >/dev/null 2>&1") != 0)) {
        fprintf(stderr, "skip: redis-server/redis-cli/redis-benchmark not installed\n");
        return 77;
    }

    char seeds[256], host[128] = "127.0.0.1";
    int port = 0;
    if (seed) {
        snprintf(seeds, sizeof seeds, "%s", seed);
        const char *colon = strrchr(seed, ':');
        if (!colon || (size_t)(colon - seed) >= sizeof host)
            return 2;
        memcpy(host, seed, (size_t)(colon - seed));
        host[colon - seed] = 0;
        port = atoi(colon + 1);
        printf("# cluster: given, seed %s\n", seed);
    } else {
        snprintf(script, sizeof script, "%s", __FILE__);
        char *slash = strrchr(script, '/');
        size_t off = slash ? (size_t)(slash - script) + 1 : 0;
        snprintf(script + off, sizeof script - off, "../tests/redis-cluster.sh");
        if (getenv("KVT_REDIS_CLUSTER_SH"))
            snprintf(script, sizeof script, "%s", getenv("KVT_REDIS_CLUSTER_SH"));
        const char *base = getenv("KVT_BENCH_DIR");
        if (!base || !*base)
            base = getenv("KVT_TEST_DIR");
        if (!base || !*base)
            base = "/tmp";
        snprintf(dir, sizeof dir, "%s/bench_remote.%d", base, (int)getpid());
        int total = masters * (1 + replicas);
        srand((unsigned)(getpid() ^ bu_now_ns()));
        for (int tries = 0; tries < 200 && !port; tries++) {
            int b = 20000 + rand() % 25000, ok = 1;
            for (int i = 0; i < total && ok; i++)
                ok = port_free(b + i) && port_free(b + i + 10000);
            if (ok)
                port = b;
        }
        if (!port)
            return 1;
        atexit(stop_cluster);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        char cmd[2 * PATH_MAX + 128];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s' && KVT_REDIS_OWNER_PID=%d bash '%s' start %d %d %d '%s' >/dev/null",
                 base, (int)getpid(), script, masters, replicas, port, dir);
        uint64_t t0 = bu_now_ns();
        int st = system(cmd);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
            return 77;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "bench_remote: could not start a cluster (%s)\n", cmd);
            return 1;
        }
        started = 1;
        snprintf(seeds, sizeof seeds, "127.0.0.1:%d", port);
        printf("# cluster: %d masters, %d replicas per master, 127.0.0.1:%d-%d (started in %.1f s: "
               "tests/redis-cluster.sh)\n", masters, replicas, port, port + total - 1,
               (double)(bu_now_ns() - t0) / 1e9);
    }

    remote_ctx *r = NULL;
    char salt[32];
    snprintf(salt, sizeof salt, "bench%d", (int)getpid());
    int rc = remote_open(seeds, salt, NULL, &r);
    if (rc) {
        fprintf(stderr, "bench_remote: remote_open(%s): %s\n", seeds, strerror(-rc));
        return 1;
    }

    /* working set: 4 batches of distinct blocks; identities of 16 tokens each */
    int nblocks = 4 * per_batch;
    blocks_mem = malloc((size_t)nblocks * bytes);
    unsigned char *dst = malloc((size_t)per_batch * bytes);
    remote_req *q = calloc((size_t)per_batch, sizeof *q);
    double *put_bw = calloc((size_t)batches, sizeof(double));
    double *get_bw = calloc((size_t)batches, sizeof(double));
    uint32_t units[16];
    if (!blocks_mem || !dst || !q || !put_bw || !get_bw)
        return 1;
    for (size_t i = 0; i < (size_t)nblocks * bytes; i += 8) {
        uint64_t v = (i * 0x9e3779b97f4a7c15ull) ^ (i >> 13);
        memcpy(blocks_mem + i, &v, (size_t)nblocks * bytes - i < 8 ? (size_t)nblocks * bytes - i : 8);
    }
    for (int i = 0; i < 16; i++)
        units[i] = (uint32_t)i * 7919u;

    for (int pass = 0; pass < 2; pass++) { /* pass 0: warm-up (fills the working set) */
        int nb = pass == 0 ? 4 : batches;
        for (int b = 0; b < nb; b++) {
            int set = b % 4;
            for (int i = 0; i < per_batch; i++) {
                int k = set * per_batch + i;
                q[i] = (remote_req){.ns = 1, .key = (uint64_t)k * 0x100000001b3ull + 1,
                                    .units = units, .n_units = 16,
                                    .buf = blocks_mem + (size_t)k * bytes, .len = bytes};
            }
            uint64_t t0 = bu_now_ns();
            rc = remote_put_batch(r, q, (size_t)per_batch, 0, 0);
            double dt = (double)(bu_now_ns() - t0) / 1e9;
            if (rc != per_batch) {
                fprintf(stderr, "bench_remote: put batch stored %d of %d\n", rc, per_batch);
                return 1;
            }
            if (pass)
                put_bw[b] = (double)per_batch * (double)bytes / dt;
        }
        for (int b = 0; b < nb; b++) {
            int set = b % 4;
            for (int i = 0; i < per_batch; i++) {
                int k = set * per_batch + i;
                q[i] = (remote_req){.ns = 1, .key = (uint64_t)k * 0x100000001b3ull + 1,
                                    .units = units, .n_units = 16,
                                    .buf = dst + (size_t)i * bytes, .len = bytes};
            }
            uint64_t t0 = bu_now_ns();
            rc = remote_get_batch(r, q, (size_t)per_batch);
            double dt = (double)(bu_now_ns() - t0) / 1e9;
            if (rc != per_batch) {
                fprintf(stderr, "bench_remote: get batch hit %d of %d\n", rc, per_batch);
                return 1;
            }
            if (pass && b == 0 &&
                memcmp(dst, blocks_mem + (size_t)set * per_batch * bytes, bytes) != 0) {
                fprintf(stderr, "bench_remote: data mismatch\n");
                return 1;
            }
            if (pass)
                get_bw[b] = (double)per_batch * (double)bytes / dt;
        }
    }
    remote_stats st;
    remote_get_stats(r, &st);
    remote_probe(r);
    remote_stats st2;
    remote_get_stats(r, &st2);

    /* the peer: redis-benchmark, same cluster, same value size, same pipeline depth */
    double set_rps = 0, get_rps = 0;
    char bcmd[512];
    rc = run_redis_benchmark(host, port, bytes, clients, bench_n, &set_rps, &get_rps, bcmd,
                             sizeof bcmd);
    if (rc)
        fprintf(stderr, "bench_remote: redis-benchmark failed: %s\n", bcmd);

    /* the limit: single-core memcpy of 2 MiB buffers */
    double mc[16];
    for (int i = 0; i < 16; i++) {
        uint64_t t0 = bu_now_ns();
        for (int k = 0; k < per_batch; k++)
            memcpy(dst + (size_t)k * bytes, blocks_mem + (size_t)((k + i) % nblocks) * bytes, bytes);
        bu_sink(dst);
        mc[i] = (double)per_batch * (double)bytes / ((double)(bu_now_ns() - t0) / 1e9);
    }

    row rows[5] = {
        {"put", "kvtier remote", bu_quantile(put_bw, (size_t)batches, 0.5),
         bu_quantile(put_bw, (size_t)batches, 0.01)},
        {"get", "kvtier remote", bu_quantile(get_bw, (size_t)batches, 0.5),
         bu_quantile(get_bw, (size_t)batches, 0.01)},
        {"SET", "redis-benchmark", set_rps * (double)bytes, set_rps * (double)bytes},
        {"GET", "redis-benchmark", get_rps * (double)bytes, get_rps * (double)bytes},
        {"memcpy", "limit, 1 core", bu_quantile(mc, 16, 0.5), bu_quantile(mc, 16, 0.01)},
    };
    printf("# block %zu KiB, %d blocks per batch (%d batches), kvtier: 1 thread, 1 context; "
           "peer: %s\n", bytes >> 10, per_batch, batches, bcmd);
    printf("%-7s %-16s %10s %10s %9s\n", "op", "who", "med GB/s", "p99 GB/s", "vs peer");
    for (int i = 0; i < 5; i++) {
        double peer = i == 0 ? rows[2].med : i == 1 ? rows[3].med : 0;
        char ratio[16] = "";
        if (peer > 0)
            snprintf(ratio, sizeof ratio, "%.2fx", rows[i].med / peer);
        printf("%-7s %-16s %10.3f %10.3f %9s\n", rows[i].op, rows[i].who, rows[i].med / 1e9,
               rows[i].p99 / 1e9, ratio);
    }
    printf("# cost-model figures from remote_stats: read_bw %.3f GB/s, write_bw %.3f GB/s "
           "(moving averages), PING rtt %.0f us, masters up %u/%u\n",
           st.read_bw / 1e9, st.write_bw / 1e9, st2.latency_s * 1e6, st2.masters_up, st2.masters);

    remote_close(r);
    free(blocks_mem);
    free(dst);
    free(q);
    free(put_bw);
    free(get_bw);
    stop_cluster();
    return 0;
}
