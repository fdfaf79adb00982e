/* testutil.c — see testutil.h. */
#include "testutil.h"
#include <limits.h>
#include <signal.h>

#include "util/util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

uint64_t tu_seed(const char *prog, uint64_t fallback)
{
    const char *e = getenv("KVT_SEED");
    uint64_t seed = e && *e ? strtoull(e, NULL, 0) : fallback;
    printf("%s: seed=%llu\n", prog, (unsigned long long)seed);
    fflush(stdout);
    return seed;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void tu_rng_init(tu_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tu_next(tu_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

uint64_t tu_below(tu_rng *r, uint64_t n) { return tu_next(r) % n; }

void tu_fill(tu_rng *r, void *p, size_t n)
{
    unsigned char *b = p;
    while (n >= 8) {
        uint64_t v = tu_next(r) | 1;
        memcpy(b, &v, 8);
        b += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = tu_next(r);
        memcpy(b, &v, n);
    }
}

void tu_fill_tokens(tu_rng *r, uint32_t *tok, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tok[i] = (uint32_t)tu_next(r);
}

/* ---------------------------------------------------------------- scratch directories */

void tu_test_dir(char *out, size_t cap, const char *name)
{
    const char *base = getenv("KVT_TEST_DIR");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(out, cap, "%s/%s.%d", base, name, (int)getpid());
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

int tu_rm_tree(const char *path) { return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

void tu_fresh_dir(char *out, size_t cap, const char *name)
{
    tu_test_dir(out, cap, name);
    tu_rm_tree(out);
    TU_CHECK(mkdir(out, 0755) == 0);
}

void tu_wipe_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

/* ---------------------------------------------------------------- engines */

kvt_layout tu_layout(uint32_t layers, uint32_t kv_heads, uint32_t head_dim, kvt_dtype dtype,
                     uint32_t block_tokens)
{
    kvt_layout l;
    memset(&l, 0, sizeof l);
    l.layers = layers;
    l.kv_heads = kv_heads;
    l.head_dim = head_dim;
    l.dtype = dtype;
    l.block_tokens = block_tokens;
    return l;
}

kvt_options *tu_dram_options(uint64_t dram_bytes, uint64_t slot_bytes)
{
    kvt_options *o = NULL;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, dram_bytes), 0);
    if (slot_bytes)
        TU_CHECK_EQ(kvt_options_set_dram_slot_bytes(o, slot_bytes), 0);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, KVT_HUGEPAGES_OFF), 0);
    return o;
}

kvt_engine *tu_open_engine(kvt_options *o, const char *what)
{
    kvt_engine *e = NULL;
    int rc = kvt_engine_open(o, &e);
    if (rc)
        fprintf(stderr, "kvt_engine_open(%s): %s\n", what, kvt_strerror(rc));
    TU_CHECK_EQ(rc, 0);
    TU_CHECK(e != NULL);
    kvt_options_destroy(o);
    return e;
}

kvt_engine *tu_dram_engine(uint64_t dram_bytes, uint64_t slot_bytes)
{
    return tu_open_engine(tu_dram_options(dram_bytes, slot_bytes), "dram");
}

kvt_stats tu_stats(kvt_engine *e)
{
    kvt_stats s;
    memset(&s, 0, sizeof s);
    TU_CHECK_EQ(kvt_engine_stats(e, &s, sizeof s), 0);
    return s;
}

kvt_options *tu_tier_options(const char *dir, const tu_tier_cfg *c)
{
    kvt_options *o = tu_dram_options(c->dram_bytes, 0);
    TU_CHECK_EQ(kvt_options_set_cuda_pin(o, c->cuda_pin), 0);
    TU_CHECK_EQ(kvt_options_set_data_dir(o, dir), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_NVME, NULL, c->nvme_bytes, 0), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_DISK, NULL, c->disk_bytes, 0), 0);
    TU_CHECK_EQ(kvt_options_set_io_force_pool(o, c->pool), 0);
    if (c->backpressure_ms)
        TU_CHECK_EQ(kvt_options_set_backpressure_ms(o, c->backpressure_ms), 0);
    return o;
}

kvt_engine *tu_tier_engine(const char *dir, const tu_tier_cfg *c)
{
    return tu_open_engine(tu_tier_options(dir, c), dir);
}

/* ---------------------------------------------------------------- prompts */

void tu_prompt_gen(tu_prompt *p, tu_rng *r, size_t nb, size_t bt, size_t bb)
{
    p->nb = nb;
    p->bt = bt;
    p->bb = bb;
    p->tok = realloc(p->tok, (nb * bt + 1) * sizeof *p->tok);
    p->data = realloc(p->data, nb * bb + 1);
    TU_CHECK(p->tok && p->data);
    tu_fill_tokens(r, p->tok, nb * bt);
    tu_fill(r, p->data, nb * bb);
}

int tu_prompt_put(kvt_ns *ns, const tu_prompt *p, size_t *stored)
{
    const void **ptr = malloc((p->nb ? p->nb : 1) * sizeof *ptr);
    TU_CHECK(ptr);
    for (size_t i = 0; i < p->nb; i++)
        ptr[i] = p->data + i * p->bb;
    int rc = kvt_put(ns, p->tok, p->nb * p->bt, ptr, stored);
    free(ptr);
    return rc;
}

size_t tu_prompt_match_read(kvt_ns *ns, const tu_prompt *p, int *rc_out)
{
    kvt_lease *l = NULL;
    size_t m = 0;
    TU_CHECK_EQ(kvt_match(ns, p->tok, p->nb * p->bt, &m, &l), 0);
    size_t nb = m / p->bt;
    unsigned char *out = malloc(p->bb ? p->bb : 1);
    TU_CHECK(out);
    int rc = 0;
    for (size_t i = 0; i < nb; i++) {
        void *d = out;
        memset(out, 0xee, p->bb);
        rc = kvt_read(l, i, 1, &d);
        if (rc)
            break;
        if (memcmp(out, p->data + i * p->bb, p->bb) != 0) {
            fprintf(stderr, "block %zu: wrong bytes served\n", i);
            exit(1);
        }
    }
    free(out);
    kvt_release(l);
    if (rc_out)
        *rc_out = rc;
    return nb;
}

/* ---------------------------------------------------------------- loopback clusters */

int tu_port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

int tu_pick_ports(tu_rng *r, int n)
{
    for (int tries = 0; tries < 200; tries++) {
        int b = 20000 + (int)tu_below(r, 25000);
        int ok = 1;
        for (int i = 0; i < n && ok; i++)
            ok = tu_port_free(b + i) && tu_port_free(b + i + 10000);
        if (ok)
            return b;
    }
    return -1;
}

int tu_sh_out(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    TU_CHECK(p);
    size_t n = 0;
    if (out && cap) {
        n = fread(out, 1, cap - 1, p);
        out[n] = 0;
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0)
            ;
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int tu_cluster_owner(int port, unsigned slot, char *id_out)
{
    static char buf[16384];
    if (tu_sh_out(buf, sizeof buf, "redis-cli -p %d cluster nodes", port) != 0)
        return -1;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char id[64], addr[128], flags[128];
        int off = 0;
        if (sscanf(line, "%63s %127s %127s %*s %*s %*s %*s %*s%n", id, addr, flags, &off) < 3)
            continue;
        if (!strstr(flags, "master") || strstr(flags, "fail"))
            continue;
        char *rest = line + off, *tok, *save = NULL;
        for (tok = strtok_r(rest, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            unsigned a, b;
            if (tok[0] == '[')
                continue;
            int k = sscanf(tok, "%u-%u", &a, &b);
            if (k == 1)
                b = a;
            if (k >= 1 && slot >= a && slot <= b) {
                if (id_out)
                    strcpy(id_out, id);
                return atoi(strchr(addr, ':') + 1);
            }
        }
    }
    return -1;
}

static char cl_dir[PATH_MAX], cl_script[PATH_MAX];
static int cl_up;

void tu_cluster_stop(void)
{
    if (!cl_up)
        return;
    cl_up = 0;
    if (tu_sh_out(NULL, 0, "bash '%s' stop '%s'", cl_script, cl_dir) != 0)
        fprintf(stderr, "warning: cluster stop failed\n");
}

static void cl_on_signal(int sig)
{
    tu_cluster_stop();
    signal(sig, SIG_DFL);
    raise(sig);
}

int tu_cluster_start(tu_rng *port_rng, const char *name, int masters, int replicas, char *dir)
{
    if (system("command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1") != 0)
        TU_SKIP("redis-server/redis-cli not installed");
    const char *env = getenv("KVT_REDIS_CLUSTER_SH");
    if (env && *env) {
        snprintf(cl_script, sizeof cl_script, "%s", env);
    } else { /* beside this file */
        snprintf(cl_script, sizeof cl_script, "%s", __FILE__);
        char *slash = strrchr(cl_script, '/');
        size_t at = slash ? (size_t)(slash + 1 - cl_script) : 0;
        snprintf(cl_script + at, sizeof cl_script - at, "redis-cluster.sh");
    }
    if (access(cl_script, R_OK) != 0)
        TU_SKIP("%s not found (set KVT_REDIS_CLUSTER_SH)", cl_script);
    const char *base = getenv("KVT_TEST_DIR");
    if (!base || !*base)
        base = "/tmp";
    TU_CHECK_EQ(tu_sh_out(NULL, 0, "mkdir -p '%s'", base), 0);
    snprintf(cl_dir, sizeof cl_dir, "%s/%s.%d", base, name, (int)getpid());
    snprintf(dir, PATH_MAX, "%s", cl_dir);
    int n = masters * (1 + replicas);
    int base_port = tu_pick_ports(port_rng, n);
    TU_CHECK(base_port > 0);
    atexit(tu_cluster_stop);
    signal(SIGINT, cl_on_signal);
    signal(SIGTERM, cl_on_signal);
    uint64_t t0 = util_now_ns();
    int rc = tu_sh_out(NULL, 0, "KVT_REDIS_OWNER_PID=%d bash '%s' start %d %d %d '%s'",
                       (int)getpid(), cl_script, masters, replicas, base_port, cl_dir);
    if (rc == 77)
        TU_SKIP("redis-cluster.sh: no redis-server");
    TU_CHECK_EQ(rc, 0);
    cl_up = 1;
    printf("cluster: %d masters + %d replicas on 127.0.0.1:%d-%d, up in %.1f s\n", masters,
           masters * replicas, base_port, base_port + n - 1, (double)(util_now_ns() - t0) / 1e9);
    return base_port;
}
