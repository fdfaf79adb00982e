// ctest: labels=unit;crash timeout=120
/*
 * test_catalog_crash.c — nothing acknowledged as durable is lost, nothing torn is seen, when
 * the process writing the catalog is SIGKILLed at a random moment.
 *
 * Each round forks a child (re-executed, so it starts without the parent's RocksDB threads)
 * that runs a deterministic plan of steps against a fresh catalog: put batches (synced, or
 * plain and then catalog_flush), whole-step deletes (synced) and touch batches (then flush).
 * After each step is durable the child writes the step number to a pipe. The parent kills
 * it after a random delay, reads the last acknowledged step k, replays the same plan to
 * know the state after step k and the one step that may have been in flight, reopens the
 * catalog and checks:
 *   - every record of the state after k is present and equal, field for field;
 *   - every record present is valid and one the plan has put and not yet deleted
 *     (or the in-flight step's);
 *   - the in-flight step is all or nothing (a batch is never torn), and last-access times
 *     are the state's, or for all of the in-flight touch's records its new value.
 * Seeds are fixed and printed: KVT_SEED=<n> reproduces the plans and the kill delays.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "testutil.h"
#include "tiers/catalog.h"
#include "util/util.h"

#define ROUNDS 12
#define MAX_STEPS 4000
#define MAX_PER_STEP 16
#define MAX_IDS (MAX_STEPS * MAX_PER_STEP)
#define MAX_LIVE 256
#define NS_A 1
#define NS_B 2

enum { PUT_SYNC, PUT_FLUSH, DEL_SYNC, TOUCH_FLUSH };

typedef struct step {
    int kind;
    uint32_t first, n; /* record ids [first, first + n) */
    uint64_t touch_v;
} step;

/* The plan: both processes run it from the same seed and get the same steps. */
typedef struct plan {
    uint64_t seed;
    uint32_t s; /* steps planned */
    uint32_t next_id;
    uint32_t n_live;
    struct {
        uint32_t first, n;
    } live[MAX_LIVE]; /* put steps not yet deleted */
} plan;

static void plan_next(plan *p, step *st)
{
    tu_rng r;
    tu_rng_init(&r, p->seed * 0x9e3779b97f4a7c15ull + ++p->s);
    unsigned roll = (unsigned)tu_below(&r, 100);
    memset(st, 0, sizeof *st);
    if (p->n_live == 0 || (roll < 60 && p->n_live < MAX_LIVE)) {
        st->kind = roll < 35 ? PUT_SYNC : PUT_FLUSH;
        st->first = p->next_id;
        st->n = 1 + (uint32_t)tu_below(&r, MAX_PER_STEP);
        p->next_id += st->n;
        p->live[p->n_live].first = st->first;
        p->live[p->n_live].n = st->n;
        p->n_live++;
        return;
    }
    uint32_t i = (uint32_t)tu_below(&r, p->n_live);
    st->first = p->live[i].first;
    st->n = p->live[i].n;
    if (roll < 80) {
        st->kind = DEL_SYNC;
        p->live[i] = p->live[--p->n_live];
    } else {
        st->kind = TOUCH_FLUSH;
        st->touch_v = (1ull << 40) + (uint64_t)p->s * 1000; /* above every earlier time */
    }
}

static uint64_t mix(uint64_t a, uint64_t b) { return XXH3_64bits_withSeed(&a, sizeof a, b); }

/* Record id's content: a pure function of (seed, id). Blocks chain in runs of up to 5. */
static uint32_t rec_units(uint32_t id) { return id % 2 ? 16 : 8; }

static uint64_t rec_key(uint64_t seed, uint32_t id, uint32_t *units)
{
    uint32_t n = rec_units(id), depth = id % 5;
    uint64_t parent = depth && id >= 2 ? rec_key(seed, id - 2, units) : 0; /* same parity */
    units[0] = id;
    for (uint32_t j = 1; j < n; j++)
        units[j] = (uint32_t)mix(seed, (uint64_t)id << 8 | j) % 128256u;
    return XXH3_64bits_withSeed(units, n * 4, parent);
}

static void rec_make(uint64_t seed, uint32_t id, catalog_record *r, uint32_t *units)
{
    memset(r, 0, sizeof *r);
    uint32_t depth = id % 5;
    r->ns_id = id % 2 ? NS_A : NS_B;
    r->depth = id >= 2 ? depth : 0;
    r->parent_key = r->depth ? rec_key(seed, id - 2, units) : 0;
    r->key = rec_key(seed, id, units);
    r->n_units = rec_units(id);
    r->units = units;
    r->tier = id % 3 ? CATALOG_TIER_NVME : CATALOG_TIER_DISK;
    r->compression = r->tier == CATALOG_TIER_DISK ? CATALOG_COMP_LZ4 : CATALOG_COMP_NONE;
    r->location = mix(seed, id * 4 + 1);
    r->checksum = mix(seed, id * 4 + 2);
    r->length = (uint32_t)mix(seed, id * 4 + 3);
    r->last_access = (uint64_t)id * 10;
    r->ttl_deadline = id % 7 ? 0 : mix(seed, id * 4);
}

/* ---------------------------------------------------------------- the child */

static int child_main(const char *dir, uint64_t seed, int fd)
{
    catalog *cat = NULL;
    if (catalog_open(dir, NULL, &cat))
        return 2;
    if (catalog_ns_put(cat, &(catalog_ns){.id = NS_A, .name = "m", .tenant = "a"}) ||
        catalog_ns_put(cat, &(catalog_ns){.id = NS_B, .name = "m", .tenant = "b"}))
        return 2;
    uint64_t ready = 0; /* step 0: open, the kill timer of later rounds starts here */
    if (write(fd, &ready, sizeof ready) != (ssize_t)sizeof ready)
        return 4;
    plan p = {.seed = seed};
    static catalog_record recs[MAX_PER_STEP];
    static uint32_t units[MAX_PER_STEP][16];
    for (uint64_t s = 1; s <= MAX_STEPS; s++) {
        step st;
        plan_next(&p, &st);
        int rc = 0;
        if (st.kind == PUT_SYNC || st.kind == PUT_FLUSH) {
            for (uint32_t i = 0; i < st.n; i++)
                rec_make(seed, st.first + i, &recs[i], units[i]);
            rc = catalog_put_batch(cat, recs, st.n, st.kind == PUT_SYNC ? CATALOG_SYNC : 0, NULL);
            if (!rc && st.kind == PUT_FLUSH)
                rc = catalog_flush(cat);
        } else if (st.kind == DEL_SYNC) {
            catalog_del d[MAX_PER_STEP];
            for (uint32_t i = 0; i < st.n; i++) {
                rec_make(seed, st.first + i, &recs[i], units[i]);
                d[i] = (catalog_del){recs[i].ns_id, CATALOG_TIER_ALL, recs[i].key};
            }
            rc = catalog_delete_batch(cat, d, st.n, CATALOG_SYNC);
        } else {
            catalog_touch t[MAX_PER_STEP];
            for (uint32_t i = 0; i < st.n; i++) {
                rec_make(seed, st.first + i, &recs[i], units[i]);
                t[i] = (catalog_touch){recs[i].ns_id, recs[i].key, st.touch_v};
            }
            rc = catalog_touch_batch(cat, t, st.n);
            if (!rc)
                rc = catalog_flush(cat);
        }
        if (rc)
            return 3;
        if (write(fd, &s, sizeof s) != (ssize_t)sizeof s)
            return 4;
    }
    catalog_close(cat);
    return 0;
}

/* ---------------------------------------------------------------- the parent */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

typedef struct seen {
    uint8_t *present;  /* [MAX_IDS] */
    uint64_t *la;      /* [MAX_IDS] last_access seen */
    uint64_t seed;
    uint32_t id_limit; /* ids ever planned up to the in-flight step */
    uint64_t n;
} seen;

static int on_rec(void *ctx, const catalog_record *r)
{
    seen *sn = ctx;
    TU_CHECK(r->n_units >= 1);
    uint32_t id = r->units[0];
    TU_CHECK(id < sn->id_limit);
    TU_CHECK(!sn->present[id]);
    catalog_record want;
    uint32_t wu[16];
    rec_make(sn->seed, id, &want, wu);
    TU_CHECK_EQ(r->ns_id, want.ns_id);
    TU_CHECK(r->key == want.key);
    TU_CHECK(r->parent_key == want.parent_key);
    TU_CHECK_EQ(r->depth, want.depth);
    TU_CHECK_EQ(r->tier, want.tier);
    TU_CHECK_EQ(r->compression, want.compression);
    TU_CHECK(r->location == want.location);
    TU_CHECK(r->checksum == want.checksum);
    TU_CHECK_EQ(r->length, want.length);
    TU_CHECK(r->ttl_deadline == want.ttl_deadline);
    TU_CHECK_EQ(r->n_units, want.n_units);
    TU_CHECK(memcmp(r->units, wu, r->n_units * 4) == 0);
    sn->present[id] = 1;
    sn->la[id] = r->last_access;
    sn->n++;
    return 0;
}

static void run_round(const char *self, const char *base, uint64_t seed, int round, tu_rng *timing)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/round%d", base, round);
    int pfd[2];
    TU_CHECK(pipe(pfd) == 0);
    pid_t pid = fork();
    TU_CHECK(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        char s_seed[32], s_fd[16];
        snprintf(s_seed, sizeof s_seed, "%llu", (unsigned long long)seed);
        snprintf(s_fd, sizeof s_fd, "%d", pfd[1]);
        execl(self, self, "--child", dir, s_seed, s_fd, (char *)NULL);
        _exit(5);
    }
    close(pfd[1]);
    /* Kill times: the first rounds within 30 ms of the start (during RocksDB's open, the
     * namespace puts and the first batches), the others up to 200 ms after the child
     * reported its catalog open, so that a slow machine still gets through many steps. */
    uint64_t v, acked = 0;
    int have_ready = 0;
    uint64_t delay_us = round < 2 ? tu_below(timing, 30000) : 1000 + tu_below(timing, 200000);
    if (round >= 2) {
        have_ready = read(pfd[0], &v, sizeof v) == (ssize_t)sizeof v;
        TU_CHECK(have_ready && v == 0);
    }
    struct timespec ts = {(time_t)(delay_us / 1000000), (long)(delay_us % 1000000) * 1000};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int wst = 0;
    TU_CHECK(waitpid(pid, &wst, 0) == pid);
    if (WIFEXITED(wst))
        TU_CHECK_EQ(WEXITSTATUS(wst), 0); /* finished the whole plan before the kill */
    while (read(pfd[0], &v, sizeof v) == (ssize_t)sizeof v) {
        if (!have_ready) {
            TU_CHECK_EQ(v, 0);
            have_ready = 1;
            continue;
        }
        TU_CHECK_EQ(v, acked + 1);
        acked = v;
    }
    close(pfd[0]);

    /* Replay the plan: the state after step `acked`, and the step that may be in flight. */
    static uint8_t alive[MAX_IDS];
    static uint64_t la[MAX_IDS];
    memset(alive, 0, sizeof alive);
    plan p = {.seed = seed};
    step st, fl = {.n = 0};
    for (uint64_t s = 1; s <= acked; s++) {
        plan_next(&p, &st);
        for (uint32_t i = st.first; i < st.first + st.n; i++) {
            if (st.kind == PUT_SYNC || st.kind == PUT_FLUSH) {
                alive[i] = 1;
                la[i] = (uint64_t)i * 10;
            } else if (st.kind == DEL_SYNC) {
                alive[i] = 0;
            } else {
                la[i] = st.touch_v > la[i] ? st.touch_v : la[i];
            }
        }
    }
    int in_flight = acked < MAX_STEPS;
    if (in_flight)
        plan_next(&p, &fl);

    catalog *cat = NULL;
    TU_CHECK_EQ(catalog_open(dir, NULL, &cat), 0);
    static uint8_t present[MAX_IDS];
    static uint64_t seen_la[MAX_IDS];
    memset(present, 0, sizeof present);
    seen sn = {present, seen_la, seed, p.next_id, 0};
    catalog_scan_stats ss;
    uint64_t garbled = 0;
    for (uint32_t ns = NS_A; ns <= NS_B; ns++) {
        TU_CHECK_EQ(catalog_scan(cat, ns, 0, on_rec, &sn, &ss), 0);
        garbled += ss.garbled + ss.orphans;
    }
    TU_CHECK_EQ(garbled, 0);

    uint32_t fl_present = 0, fl_new = 0;
    for (uint32_t id = 0; id < p.next_id; id++) {
        int in_fl = in_flight && id >= fl.first && id < fl.first + fl.n;
        if (!in_fl || fl.kind == TOUCH_FLUSH) {
            TU_CHECK_EQ(present[id], alive[id]);
        } else {
            fl_present += present[id];
        }
        if (!present[id])
            continue;
        if (in_fl && fl.kind == TOUCH_FLUSH && seen_la[id] != la[id]) {
            TU_CHECK(seen_la[id] == fl.touch_v);
            fl_new++;
        } else if (in_fl && (fl.kind == PUT_SYNC || fl.kind == PUT_FLUSH)) {
            TU_CHECK(seen_la[id] == (uint64_t)id * 10);
        } else {
            TU_CHECK(seen_la[id] == la[id]);
        }
    }
    const char *fate = "none";
    if (in_flight && fl.kind != TOUCH_FLUSH) { /* all or nothing */
        TU_CHECK(fl_present == 0 || fl_present == fl.n);
        fate = fl_present ? "applied" : "not applied";
    } else if (in_flight) {
        uint32_t differs = 0; /* records whose touch value is not already the new one */
        for (uint32_t i = fl.first; i < fl.first + fl.n; i++)
            differs += la[i] != fl.touch_v;
        TU_CHECK(fl_new == 0 || fl_new == differs);
        fate = fl_new ? "applied" : "not applied";
    }
    static const char *kinds[] = {"put+sync", "put+flush", "delete+sync", "touch+flush"};
    printf("round %d: killed after %llu us, %llu steps acknowledged, %llu records present, "
           "in flight: %s (%s)\n",
           round, (unsigned long long)delay_us, (unsigned long long)acked,
           (unsigned long long)sn.n, in_flight ? kinds[fl.kind] : "-", fate);
    TU_CHECK_EQ(catalog_close(cat), 0);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--child") == 0)
        return child_main(argv[2], strtoull(argv[3], NULL, 10), atoi(argv[4]));
    uint64_t seed = tu_seed("test_catalog_crash", 7031);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        TU_SKIP("no /proc/self/exe");
    self[n] = 0;
    const char *base = getenv("KVT_TEST_DIR");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    char root[4096];
    snprintf(root, sizeof root, "%s/test_catalog_crash.XXXXXX", base);
    TU_CHECK(mkdtemp(root) != NULL);
    tu_rng timing;
    /* Kill delays come from the seed too; where in the plan a delay lands depends on the
     * machine's speed, so rounds also report the step reached. */
    tu_rng_init(&timing, seed ^ 0x6b696c6cull);
    for (int round = 0; round < ROUNDS; round++)
        run_round(self, root, seed + (uint64_t)round, round, &timing);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    printf("test_catalog_crash: ok\n");
    return 0;
}
