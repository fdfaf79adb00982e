// ctest: labels=unit timeout=120
/*
 * test_tier_prefetch — kvt_prefetch promotes blocks from nvme/disk into DRAM in the
 * background; a read right after it waits for the blocks in flight and gets the right
 * bytes; once promotions finish, kvt_lease_block_tier reports DRAM and a read does no tier
 * I/O. Runs on io_uring and then with KVT_IO_NO_URING=1 (the pool fallback, as on machines
 * where io_uring is blocked), checking the backend the stats report.
 * Fails if prefetch does not promote, serves wrong bytes, or the pool path breaks.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define BT 16u
#define MAXB 16

static tu_rng rng;
static char root[512];
static uint64_t bb;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static void make_root(const char *name)
{
    const char *base = getenv("KVT_TEST_DIR");
    if (!base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(root, sizeof root, "%s/%s.%d", base, name, (int)getpid());
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    TU_CHECK(mkdir(root, 0755) == 0);
}

static kvt_layout layout(void)
{
    kvt_layout l;
    memset(&l, 0, sizeof l);
    l.layers = 2;
    l.kv_heads = 2;
    l.head_dim = 64;
    l.dtype = KVT_DTYPE_FP16;
    l.block_tokens = BT; /* 16 KiB blocks */
    return l;
}

typedef struct prompt {
    uint32_t tok[MAXB * BT];
    size_t nb;
    unsigned char data[MAXB][16384];
} prompt;

static void gen(prompt *p, size_t nb)
{
    p->nb = nb;
    for (size_t i = 0; i < nb * BT; i++)
        p->tok[i] = (uint32_t)tu_next(&rng);
    tu_fill(&rng, p->data, nb * bb);
}

typedef struct cfg {
    uint64_t dram_blocks, nvme_bytes, disk_bytes;
    int pool;
    uint32_t backpressure_ms;
} cfg;

static kvt_engine *open_cfg(const char *dir, const cfg *c)
{
    kvt_options *o;
    kvt_engine *e = NULL;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, c->dram_blocks * bb), 0);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, KVT_HUGEPAGES_OFF), 0);
    TU_CHECK_EQ(kvt_options_set_cuda_pin(o, 0), 0);
    TU_CHECK_EQ(kvt_options_set_data_dir(o, dir), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_NVME, NULL, c->nvme_bytes, 0), 0);
    TU_CHECK_EQ(kvt_options_set_tier(o, KVT_TIER_DISK, NULL, c->disk_bytes, 0), 0);
    TU_CHECK_EQ(kvt_options_set_io_force_pool(o, c->pool), 0);
    if (c->backpressure_ms)
        TU_CHECK_EQ(kvt_options_set_backpressure_ms(o, c->backpressure_ms), 0);
    int rc = kvt_engine_open(o, &e);
    if (rc)
        fprintf(stderr, "kvt_engine_open(%s): %s\n", dir, kvt_strerror(rc));
    TU_CHECK_EQ(rc, 0);
    kvt_options_destroy(o);
    return e;
}

static int put(kvt_ns *ns, const prompt *p, size_t *stored)
{
    const void *ptr[MAXB];
    for (size_t i = 0; i < p->nb; i++)
        ptr[i] = p->data[i];
    return kvt_put(ns, p->tok, p->nb * BT, ptr, stored);
}

/* Match and read; every block served must be the prompt's own. Returns blocks matched,
 * *rc the read's status (the blocks before a failed one are checked too). */
static size_t match_read(kvt_ns *ns, const prompt *p, int *rc_out)
{
    kvt_lease *l = NULL;
    size_t m = 0;
    TU_CHECK_EQ(kvt_match(ns, p->tok, p->nb * BT, &m, &l), 0);
    size_t nb = m / BT;
    static unsigned char out[MAXB][16384];
    int rc = 0;
    for (size_t i = 0; i < nb; i++) {
        void *d = out[i];
        memset(d, 0xee, bb);
        rc = kvt_read(l, i, 1, &d);
        if (rc)
            break;
        if (memcmp(out[i], p->data[i], bb) != 0) {
            fprintf(stderr, "block %zu: wrong bytes served\n", i);
            exit(1);
        }
    }
    kvt_release(l);
    if (rc_out)
        *rc_out = rc;
    return nb;
}

static kvt_stats stats(kvt_engine *e)
{
    kvt_stats s;
    memset(&s, 0, sizeof s);
    TU_CHECK_EQ(kvt_engine_stats(e, &s, sizeof s), 0);
    return s;
}

#include <time.h>

static void run(const char *name, int expect_pool)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    cfg c = {.dram_blocks = 64, .nvme_bytes = 8 * bb, .disk_bytes = 16 << 20};
    kvt_layout l = layout();
    static prompt p;
    gen(&p, 12); /* 8 blocks fit nvme, the rest goes to disk */
    kvt_engine *e = open_cfg(dir, &c);
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, &ns), 0);
    TU_CHECK_EQ(put(ns, &p, NULL), 0);
    TU_CHECK_EQ(kvt_flush(e), 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    e = open_cfg(dir, &c);
    kvt_stats s = stats(e);
    if (expect_pool)
        TU_CHECK(strcmp(s.io_backend, "pool") == 0);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, &ns), 0);
    TU_CHECK_EQ(s.dram_used, 0);
    /* prefetch, then read at once: waits only for blocks in flight */
    TU_CHECK_EQ(kvt_prefetch(ns, p.tok, 12 * BT), 0);
    int rc;
    TU_CHECK_EQ(match_read(ns, &p, &rc), 12);
    TU_CHECK_EQ(rc, 0);
    /* a second prefetch of a cached prompt: everything ends in DRAM */
    TU_CHECK_EQ(kvt_prefetch(ns, p.tok, 12 * BT), 0);
    for (int spin = 0; spin < 2000; spin++) {
        kvt_lease *ls = NULL;
        size_t m;
        TU_CHECK_EQ(kvt_match(ns, p.tok, 12 * BT, &m, &ls), 0);
        int all = 1;
        for (size_t i = 0; i < 12; i++) {
            kvt_tier t;
            TU_CHECK_EQ(kvt_lease_block_tier(ls, i, &t), 0);
            all &= t == KVT_TIER_DRAM;
        }
        kvt_release(ls);
        if (all)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    uint64_t r0 = stats(e).tier_reads[KVT_TIER_NVME] + stats(e).tier_reads[KVT_TIER_DISK];
    TU_CHECK_EQ(match_read(ns, &p, &rc), 12);
    TU_CHECK_EQ(rc, 0);
    s = stats(e);
    TU_CHECK_EQ(s.tier_reads[KVT_TIER_NVME] + s.tier_reads[KVT_TIER_DISK], r0); /* from DRAM */
    TU_CHECK_EQ(s.promotions, 12);
    TU_CHECK(s.tier_reads[KVT_TIER_DISK] >= 4);
    /* prefetch of nothing cached, and of a key call on a token namespace */
    static prompt z;
    gen(&z, 2);
    TU_CHECK_EQ(kvt_prefetch(ns, z.tok, 2 * BT), 0);
    uint64_t k = 1;
    TU_CHECK_EQ(kvt_prefetch_keys(ns, &k, 1), KVT_EMODE);
    TU_CHECK_EQ(kvt_prefetch(NULL, z.tok, 2 * BT), -EINVAL);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    printf("%s: backend %s, promotions %llu\n", name, s.io_backend,
           (unsigned long long)s.promotions);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_tier_prefetch", 13));
    kvt_layout l = layout();
    bb = kvt_layout_block_bytes(&l);
    make_root("tier_prefetch");
    run("uring", 0);
    setenv("KVT_IO_NO_URING", "1", 1);
    run("pool", 1);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    printf("ok\n");
    return 0;
}
