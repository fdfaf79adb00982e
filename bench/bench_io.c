/*
 * bench_io.c — 2 MiB O_DIRECT block reads and writes through the nvme tier (tiers/nvme.h
 * slot files, requests built by nvme_req, run by an io/ context on io_uring as the engine
 * does) at queue depths 1..64, next to fio (io_uring and psync engines: the better of the two
 * at each depth is the "roofline") and next to a plain pread/pwrite thread pool (one thread
 * per request in flight).
 *
 *   bench_io [--quick] [--mib N] [--reps N] [--block-kib N] [--no-fio] [--fio-own-file]
 *            [--no-layout] [--reads-only | --writes-only] [--qd N (one depth)] [--fio-mem M]
 *            [--raw (every pass, in run order)]
 *   directory: $KVT_BENCH_DIR, else $KVT_TEST_DIR, else /tmp
 *
 * Like with like: the tier is one slot file of --mib MiB, laid out (nvme_layout_wait) before
 * anything is timed, and fio runs on that same file (--filename=<dir>/slots.000000, same size,
 * block, O_DIRECT, random order over the same 2 MiB-aligned offsets), so every engine sees the
 * same file state and the same blocks on the host's disk. --fio-own-file gives fio its own
 * file in the same directory instead (fio lays it out); --no-layout keeps the slot file
 * fallocated-unwritten (NVME_NO_LAYOUT) until the first write pass fills it. --fio-mem M passes
 * --mem=M to fio (default malloc): shmhuge gives fio huge-page buffers like io_buf_alloc's
 * (needs /proc/sys/vm/nr_hugepages >= 320 for 64 psync jobs of 2 MiB; a failed fio run
 * shows as "-").
 *
 * Each pass moves the whole file once, blocks in a random order; GB/s = 1e9 bytes / s of the
 * pass. Per rep, op and depth the four engines run back to back in an order rotated by rep and
 * depth (no engine always runs first or after the same one); --reps 5 by default (1 with
 * --quick). Reported: the median GB/s of each engine; "% roof" = median kvtier / the better
 * of the two fio medians; "paired" = the median over reps of kvtier / max(fio io_uring, fio
 * psync) of the same rep (passes seconds apart, not minutes: drift on a shared virtual disk
 * cancels; max of two noisy fio passes against one kvtier pass leans against kvtier). The
 * summary's targets use "% roof" at the best depth and at every depth. CPU s/GB: user +
 * system CPU seconds of this process (getrusage RUSAGE_SELF: includes the io_uring worker
 * threads and the pool's threads) per 1e9 bytes moved. fio runs as a child
 * (--output-format=json; bandwidth from its "bw_bytes"); without fio on PATH its columns read
 * "-" and a note says so. Exit 77 when the directory refuses O_DIRECT.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "benchutil.h"
#include "io/io.h"
#include "tiers/nvme.h"
#include "util/util.h"

#define MAXQD 64
#define MAXREPS 9

static nvme_tier *tier;
static uint64_t blk, nblk;
static unsigned char *bufs; /* [MAXQD][blk] */
static uint32_t *order;     /* [nblk] */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void shuffle(void)
{
    for (uint64_t i = 0; i < nblk; i++)
        order[i] = (uint32_t)i;
    for (uint64_t i = nblk - 1; i > 0; i--) {
        uint64_t j = rnd() % (i + 1);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

typedef struct cell {
    double gbs, cpu; /* GB/s, CPU s per GB */
} cell;

/* ---------------------------------------------------------------- kvtier: nvme tier + io/ */

static int pass_tier(io_ctx *c, int op, cell *out)
{
    unsigned qd = io_ctx_queue_depth(c);
    uint64_t next = 0, done = 0;
    io_cqe cq[MAXQD];
    unsigned slots[MAXQD], n_free = qd;
    for (unsigned i = 0; i < qd; i++)
        slots[i] = i;
    shuffle();
    double c0 = cpu_s();
    uint64_t t0 = bu_now_ns();
    while (done < nblk) {
        io_req rq[MAXQD];
        unsigned k = 0;
        while (next + k < nblk && n_free) {
            unsigned s = slots[--n_free];
            int e = nvme_req(tier, order[next + k], op, bufs + (size_t)s * blk, (uint32_t)blk, s,
                             &rq[k]);
            if (e)
                return e;
            k++;
        }
        if (k) {
            int sub = io_submit(c, rq, k);
            if (sub < 0)
                return sub;
            for (unsigned i = (unsigned)sub; i < k; i++)
                slots[n_free++] = (unsigned)rq[i].user_data;
            next += (unsigned)sub;
        }
        int got = io_wait(c, cq, MAXQD, 1);
        if (got < 0)
            return got;
        for (int i = 0; i < got; i++) {
            if (cq[i].res != (int)blk)
                return cq[i].res < 0 ? cq[i].res : -EIO;
            slots[n_free++] = (unsigned)cq[i].user_data;
            done++;
        }
    }
    double secs = (double)(bu_now_ns() - t0) * 1e-9, gb = (double)(nblk * blk) * 1e-9;
    out->gbs = gb / secs;
    out->cpu = (cpu_s() - c0) / gb;
    return 0;
}

static int run_tier(int op, unsigned qd, cell *out)
{
    io_opts o;
    io_opts_init(&o);
    o.queue_depth = qd;
    io_ctx *c = NULL;
    int e = io_ctx_open(&o, &c);
    if (e)
        return e;
    e = pass_tier(c, op, out);
    io_ctx_close(c);
    return e;
}

/* ---------------------------------------------------------------- plain pread/pwrite pool */

static atomic_uint_fast64_t pool_next;
static int pool_op;
static atomic_int pool_err;

static void *pool_worker(void *arg)
{
    unsigned char *buf = arg;
    for (;;) {
        uint64_t i = atomic_fetch_add(&pool_next, 1);
        if (i >= nblk)
            break;
        int fd;
        uint64_t off;
        if (nvme_slot_loc(tier, order[i], &fd, &off))
            break;
        ssize_t got = pool_op == IO_OP_READ ? pread(fd, buf, blk, (off_t)off)
                                            : pwrite(fd, buf, blk, (off_t)off);
        if (got != (ssize_t)blk) {
            atomic_store(&pool_err, got < 0 ? -errno : -EIO);
            break;
        }
    }
    return NULL;
}

static int run_pool(int op, unsigned threads, cell *out)
{
    pthread_t th[MAXQD];
    shuffle();
    atomic_store(&pool_next, 0);
    atomic_store(&pool_err, 0);
    pool_op = op;
    double c0 = cpu_s();
    uint64_t t0 = bu_now_ns();
    unsigned n = 0;
    for (; n < threads; n++)
        if (pthread_create(&th[n], NULL, pool_worker, bufs + (size_t)n * blk))
            break;
    for (unsigned i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(bu_now_ns() - t0) * 1e-9, gb = (double)(nblk * blk) * 1e-9;
    out->gbs = gb / secs;
    out->cpu = (cpu_s() - c0) / gb;
    return n < threads ? -EAGAIN : atomic_load(&pool_err);
}

/* ---------------------------------------------------------------- fio */

static int have_fio(void)
{
    return system("fio --version > /dev/null 2>&1") == 0;
}

static const char *fio_mem = "malloc"; /* --fio-mem: fio's --mem (buffer memory) */

/* fio on `file`: same size, block, O_DIRECT, random order, the file moved once. psync: qd
 * jobs of one request each, io_size split between them. GB/s or -1. */
static double run_fio(const char *file, int op, unsigned qd, int psync, uint64_t mib)
{
    char cmd[PATH_MAX + 512];
    unsigned jobs = psync ? qd : 1;
    uint64_t per = mib / jobs ? mib / jobs : 1;
    snprintf(cmd, sizeof cmd,
             "fio --name=kvt --filename=%s --filesize=%lluM --io_size=%lluM --bs=%lluk "
             "--direct=1 --rw=%s --ioengine=%s --iodepth=%u --numjobs=%u --group_reporting "
             "--randrepeat=0 --fallocate=none --mem=%s --output-format=json 2>/dev/null",
             file, (unsigned long long)mib, (unsigned long long)per,
             (unsigned long long)(blk >> 10), op == IO_OP_READ ? "randread" : "randwrite",
             psync ? "psync" : "io_uring", psync ? 1u : qd, jobs, fio_mem);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    static char out[1 << 20];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    if (pclose(p) != 0)
        return -1;
    const char *sec = strstr(out, op == IO_OP_READ ? "\"read\" :" : "\"write\" :");
    const char *bw = sec ? strstr(sec, "\"bw_bytes\" :") : NULL;
    if (!bw)
        return -1;
    return strtod(bw + strlen("\"bw_bytes\" :"), NULL) * 1e-9;
}

/* ---------------------------------------------------------------- main */

static void rm_dir(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
}

/* One engine's pass: 0 kvtier, 1 pool, 2 fio io_uring, 3 fio psync. 0 or -errno. */
static int run_engine(int k, int op, unsigned qd, const char *fio_file, uint64_t mib, cell *c)
{
    c->gbs = c->cpu = -1;
    if (k == 0)
        return run_tier(op, qd, c);
    if (k == 1)
        return run_pool(op, qd, c);
    c->gbs = fio_file ? run_fio(fio_file, op, qd, k == 3, mib) : -1;
    return 0;
}

int main(int argc, char **argv)
{
    int quick = bu_flag(argc, argv, "--quick");
    uint64_t mib = (uint64_t)bu_opt(argc, argv, "--mib", quick ? 32 : 1024);
    unsigned reps = (unsigned)bu_opt(argc, argv, "--reps", quick ? 1 : 5);
    blk = (uint64_t)bu_opt(argc, argv, "--block-kib", 2048) * 1024;
    int fio = !bu_flag(argc, argv, "--no-fio");
    int own = bu_flag(argc, argv, "--fio-own-file"), layout = !bu_flag(argc, argv, "--no-layout");
    int raw = bu_flag(argc, argv, "--raw");
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--fio-mem") == 0)
            fio_mem = argv[i + 1];
    int op_lo = bu_flag(argc, argv, "--writes-only") ? IO_OP_WRITE : IO_OP_READ;
    int op_hi = bu_flag(argc, argv, "--reads-only") ? IO_OP_READ : IO_OP_WRITE;
    if (blk == 0 || blk % IO_ALIGN || blk > (64u << 20) || mib * (1u << 20) < blk * 8 ||
        reps == 0 || reps > MAXREPS) {
        fprintf(stderr, "bench_io: bad arguments\n");
        return 2;
    }
    nblk = mib * (1u << 20) / blk;
    const char *d = getenv("KVT_BENCH_DIR");
    if (!d || !*d)
        d = getenv("KVT_TEST_DIR");
    if (!d || !*d)
        d = "/tmp";
    mkdir(d, 0755);
    char dir[PATH_MAX], fio_file[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/bench_io.%d", d, (int)getpid());
    /* one slot file holding every slot: fio gets that very file */
    nvme_opts no = {.file_bytes = nblk * blk, .flags = layout ? 0 : NVME_NO_LAYOUT};
    uint64_t t0 = bu_now_ns();
    int e = nvme_open(dir, nblk * blk, blk, &no, &tier);
    if (e) {
        fprintf(stderr, "bench_io: nvme_open %s: %s\n", dir, strerror(-e));
        return 1;
    }
    double open_s = (double)(bu_now_ns() - t0) * 1e-9;
    e = nvme_layout_wait(tier);
    double layout_s = (double)(bu_now_ns() - t0) * 1e-9;
    if (e)
        fprintf(stderr, "bench_io: layout: %s\n", strerror(-e));
    if (!nvme_direct(tier)) {
        fprintf(stderr, "skip: %s refuses O_DIRECT\n", d);
        nvme_close(tier);
        rm_dir(dir);
        return 77;
    }
    bufs = io_buf_alloc((size_t)MAXQD * blk);
    order = malloc(nblk * sizeof *order);
    if (!bufs || !order)
        return 1;
    for (size_t i = 0; i < (size_t)MAXQD * blk; i++)
        bufs[i] = (unsigned char)(rnd() >> 56);
    if (fio && !have_fio()) {
        fio = 0;
        printf("# fio not found on PATH: fio columns skipped (Debian: apt-get install fio)\n");
    }
    snprintf(fio_file, sizeof fio_file, own ? "%s/fio.data" : "%s/slots.000000", dir);
    if (fio && own) { /* fio's own file, laid out by fio (a sequential write) */
        char cmd[PATH_MAX + 256];
        snprintf(cmd, sizeof cmd, "fio --name=layout --filename=%s --size=%lluM --bs=%lluk "
                 "--direct=1 --rw=write --output-format=terse > /dev/null 2>&1", fio_file,
                 (unsigned long long)mib, (unsigned long long)(blk >> 10));
        if (system(cmd))
            fio = 0;
    }

    static const unsigned qds_full[] = {1, 2, 4, 8, 16, 32, 64}, qds_quick[] = {1, 8, 64};
    const unsigned *qds = quick ? qds_quick : qds_full;
    unsigned nq = quick ? 3 : 7, one_qd[1] = {(unsigned)bu_opt(argc, argv, "--qd", 0)};
    if (one_qd[0] >= 1 && one_qd[0] <= MAXQD)
        qds = one_qd, nq = 1;
    static double v[2][7][5][2][MAXREPS]; /* [op][qd][kvt, pool, fio_uring, fio_psync, ratio]
                                             [gbs, cpu][rep] */
    int rc = 0;
    for (unsigned rep = 0; rep < reps && !rc; rep++)
        for (int op = op_hi; op >= op_lo && !rc; op--) /* writes first */
            for (unsigned q = 0; q < nq && !rc; q++) {
                for (unsigned j = 0; j < 4 && !rc; j++) {
                    int k = (int)((j + rep + q) % 4);
                    cell c = {-1, -1};
                    if ((e = run_engine(k, op, qds[q], fio ? fio_file : NULL, mib, &c))) {
                        fprintf(stderr, "bench_io: %s qd %u: %s\n", k ? "pool" : "kvtier",
                                qds[q], strerror(-e));
                        rc = 1;
                    }
                    v[op][q][k][0][rep] = c.gbs, v[op][q][k][1][rep] = c.cpu;
                    if (raw)
                        printf("# raw rep %u %s qd %u %s %.3f GB/s\n", rep,
                               op == IO_OP_READ ? "read" : "write", qds[q],
                               (const char *[]){"kvtier", "pool", "fio-uring", "fio-psync"}[k],
                               c.gbs);
                }
                double roof = v[op][q][2][0][rep] > v[op][q][3][0][rep] ? v[op][q][2][0][rep]
                                                                        : v[op][q][3][0][rep];
                v[op][q][4][0][rep] = roof > 0 ? v[op][q][0][0][rep] / roof : -1;
            }

    bu_header(argc, argv);
    printf("# dir %s, one slot file of %llu MiB (laid out: %s; open %.3f s, layout done at "
           "%.2f s), block %llu KiB, O_DIRECT, random order, whole file per pass, %u reps, "
           "engines in rotated order; GB/s = 1e9 B/s, median; CPU = CPU s per GB (getrusage)\n",
           d, (unsigned long long)mib, layout ? "yes" : "no (--no-layout)", open_s, layout_s,
           (unsigned long long)(blk >> 10), reps);
    printf("# kvtier = nvme tier + io/ (io_uring) on io_buf_alloc buffers (2 MiB-aligned, "
           "MADV_HUGEPAGE); pool = plain pread/pwrite on the same buffers, one thread per "
           "request in flight; fio on %s, --mem=%s; %% roof = median kvtier / max(median fio "
           "io_uring, median fio psync); paired = median over reps of kvtier / max(fio "
           "io_uring, fio psync) of the same rep\n",
           own ? "its own laid-out file in the same directory" : "the tier's slot file", fio_mem);
    printf("%-6s %3s | %8s %7s | %8s %7s | %9s %9s | %6s %6s\n", "op", "qd", "kvtier", "CPU",
           "pool", "CPU", "fio uring", "fio psync", "% roof", "paired");
    double best_k[2] = {0, 0}, best_f[2] = {0, 0}, min_r[2] = {1e9, 1e9};
    for (int op = op_hi; op >= op_lo && !rc; op--)
        for (unsigned q = 0; q < nq; q++) {
            double m[5][2];
            for (int k = 0; k < 5; k++)
                for (int j = 0; j < 2; j++)
                    m[k][j] = bu_quantile(v[op][q][k][j], reps, 0.5); /* median (odd reps) */
            double roof = m[2][0] > m[3][0] ? m[2][0] : m[3][0];
            char fu[16] = "-", fp[16] = "-", pc[16] = "-", pp[16] = "-";
            if (m[2][0] > 0)
                snprintf(fu, sizeof fu, "%.3f", m[2][0]);
            if (m[3][0] > 0)
                snprintf(fp, sizeof fp, "%.3f", m[3][0]);
            if (roof > 0)
                snprintf(pc, sizeof pc, "%.0f%%", 100 * m[0][0] / roof);
            if (m[4][0] > 0)
                snprintf(pp, sizeof pp, "%.0f%%", 100 * m[4][0]);
            printf("%-6s %3u | %8.3f %7.3f | %8.3f %7.3f | %9s %9s | %6s %6s\n",
                   op == IO_OP_READ ? "read" : "write", qds[q], m[0][0], m[0][1], m[1][0],
                   m[1][1], fu, fp, pc, pp);
            if (m[0][0] > best_k[op])
                best_k[op] = m[0][0];
            if (roof > best_f[op])
                best_f[op] = roof;
            if (roof > 0 && m[0][0] / roof < min_r[op])
                min_r[op] = m[0][0] / roof;
        }
    if (fio && !rc)
        for (int op = op_hi; op >= op_lo; op--)
            printf("# %s: best kvtier %.3f GB/s vs best fio %.3f GB/s = %.0f%% of the roofline "
                   "(target >= 90%%: %s); lowest per-depth %% roof %.0f%% (%s)\n",
                   op == IO_OP_READ ? "read" : "write", best_k[op], best_f[op],
                   100 * best_k[op] / best_f[op],
                   best_k[op] >= 0.9 * best_f[op] ? "met" : "NOT met", 100 * min_r[op],
                   min_r[op] >= 0.9 ? ">= 90% at every depth" : "below 90% at some depth");
    nvme_close(tier);
    rm_dir(dir);
    io_buf_free(bufs);
    free(order);
    return rc;
}
