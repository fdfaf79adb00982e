/*
 * bench_io.c — 2 MiB O_DIRECT block reads and writes: io_uring at queue depth 1..32 against
 * the pread/pwrite pool and a dd-like single-thread loop, all on one file in one run.
 *
 *   bench_io [--quick] [--mib N] [--reps N] [--block-kib N] [--threads N]
 *   directory: $KVT_BENCH_DIR, else $KVT_TEST_DIR, else /tmp
 *
 * Each pass moves the whole file once, blocks in a random order (KV blocks are scattered).
 * Samples are windows of 8 consecutive completions: bytes of the window / time between the
 * completion before it and its last one. "med" is the median window bandwidth, "p99" the
 * window bandwidth that 99% of windows beat (the slow tail). "vs dd" divides the median by
 * the dd loop's median for the same operation. Exit 77 when the directory refuses O_DIRECT.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "benchutil.h"
#include "io/io.h"
#include "util/util.h"

#define WIN 8 /* completions per bandwidth sample */

typedef struct run {
    const char *name;
    int op;
    unsigned qd, threads;
    int kind; /* 0 dd loop, 1 io_uring, 2 pool */
    double med, p99;
} run;

static int fd;
static uint64_t blk, nblk;
static unsigned reps;
static unsigned char *bufs; /* [32][blk] */
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

/* Window samples from completion times t[0..n] (t[0] = start). */
static size_t windows(const uint64_t *t, size_t n, double *out)
{
    size_t k = 0;
    for (size_t i = WIN; i <= n; i += WIN)
        out[k++] = (double)(WIN * blk) / ((double)(t[i] - t[i - WIN]) * 1e-9);
    return k;
}

static int pass_dd(int op, uint64_t *t)
{
    t[0] = bu_now_ns();
    for (uint64_t i = 0; i < nblk; i++) {
        io_req r = {.buf = bufs, .off = (uint64_t)order[i] * blk, .len = (uint32_t)blk, .fd = fd,
                    .op = op};
        ssize_t got = op == IO_OP_READ ? pread(fd, r.buf, blk, (off_t)r.off)
                                       : pwrite(fd, r.buf, blk, (off_t)r.off);
        if (got != (ssize_t)blk)
            return got < 0 ? -errno : -EIO;
        t[i + 1] = bu_now_ns();
    }
    return 0;
}

static int pass_ctx(io_ctx *c, int op, uint64_t *t)
{
    unsigned qd = io_ctx_queue_depth(c);
    uint64_t next = 0, done = 0;
    io_cqe cq[32];
    /* Buffer slots: a free list of qd 2 MiB buffers; user_data carries a request's slot. */
    unsigned slots[32], n_free = qd;
    for (unsigned i = 0; i < qd; i++)
        slots[i] = i;
    t[0] = bu_now_ns();
    while (done < nblk) {
        io_req rq[32];
        unsigned k = 0;
        while (next + k < nblk && n_free) {
            unsigned s = slots[--n_free];
            rq[k] = (io_req){.buf = bufs + (size_t)s * blk, .off = (uint64_t)order[next + k] * blk,
                             .len = (uint32_t)blk, .fd = fd, .op = op, .user_data = s};
            k++;
        }
        if (k) {
            int sub = io_submit(c, rq, k);
            if (sub < 0)
                return sub;
            for (unsigned i = (unsigned)sub; i < k; i++) /* not accepted: slots back */
                slots[n_free++] = (unsigned)rq[i].user_data;
            next += (unsigned)sub;
        }
        int got = io_wait(c, cq, 32, 1);
        if (got < 0)
            return got;
        uint64_t now = bu_now_ns();
        for (int i = 0; i < got; i++) {
            if (cq[i].res != (int)blk)
                return cq[i].res < 0 ? cq[i].res : -EIO;
            slots[n_free++] = (unsigned)cq[i].user_data;
            t[++done] = now;
        }
    }
    return 0;
}

static int measure(run *r)
{
    io_ctx *c = NULL;
    if (r->kind) {
        io_opts o;
        io_opts_init(&o);
        o.queue_depth = r->qd;
        o.pool_threads = r->threads;
        o.flags = r->kind == 2 ? IO_FORCE_POOL : 0;
        int e = io_ctx_open(&o, &c);
        if (e)
            return e;
        if (r->kind == 1 && io_ctx_backend(c) != IO_BACKEND_URING) {
            io_ctx_close(c);
            return -ENOSYS;
        }
        struct iovec iov = {bufs, (size_t)32 * blk};
        if (r->kind == 1 && iov.iov_len <= (1u << 30))
            io_ctx_register_buffers(c, &iov, 1); /* best effort: memlock may forbid it */
        if (r->kind == 1)
            io_ctx_register_files(c, &fd, 1);
    }
    uint64_t *t = malloc((nblk + 1) * sizeof *t);
    double *s = malloc(((nblk / WIN + 1) * (reps + 1)) * sizeof *s);
    size_t ns = 0;
    int err = t && s ? 0 : -ENOMEM;
    for (unsigned rep = 0; rep <= reps && !err; rep++) { /* rep 0 warms up */
        shuffle();
        err = r->kind ? pass_ctx(c, r->op, t) : pass_dd(r->op, t);
        if (!err && rep > 0)
            ns += windows(t, nblk, s + ns);
    }
    if (!err) {
        r->med = bu_quantile(s, ns, 0.5);
        r->p99 = bu_quantile(s, ns, 0.01);
    }
    free(t);
    free(s);
    io_ctx_close(c);
    return err;
}

int main(int argc, char **argv)
{
    int quick = bu_flag(argc, argv, "--quick");
    uint64_t mib = (uint64_t)bu_opt(argc, argv, "--mib", quick ? 32 : 1024);
    reps = (unsigned)bu_opt(argc, argv, "--reps", quick ? 1 : 5);
    blk = (uint64_t)bu_opt(argc, argv, "--block-kib", 2048) * 1024;
    unsigned threads = (unsigned)bu_opt(argc, argv, "--threads", 4);
    if (blk == 0 || blk % IO_ALIGN || blk > (64u << 20) || mib * (1u << 20) < blk * WIN ||
        threads == 0 || threads > 256 || reps == 0) {
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
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/bench_io.%d", d, (int)getpid());
    int direct = 0;
    fd = io_file_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600, 1, &direct);
    if (fd < 0) {
        fprintf(stderr, "bench_io: open %s: %s\n", path, strerror(-fd));
        return 1;
    }
    unlink(path); /* the file goes away with the fd, whatever happens */
    if (!direct) {
        fprintf(stderr, "skip: %s refuses O_DIRECT\n", d);
        close(fd);
        return 77;
    }
    if (fallocate(fd, 0, 0, (off_t)(nblk * blk)) != 0 && errno != EOPNOTSUPP) {
        fprintf(stderr, "bench_io: fallocate %llu MiB: %s\n", (unsigned long long)mib,
                strerror(errno));
        close(fd);
        return 1;
    }
    bufs = io_buf_alloc((size_t)32 * blk);
    order = malloc(nblk * sizeof *order);
    if (!bufs || !order)
        return 1;
    for (size_t i = 0; i < (size_t)32 * blk; i++)
        bufs[i] = (unsigned char)(rnd() >> 56);

    bu_header(argc, argv);
    printf("# file %llu MiB, block %llu KiB, %u reps + warm-up, random order, O_DIRECT; "
           "GB/s = 1e9 bytes/s over windows of %d blocks; p99 = slow tail\n",
           (unsigned long long)mib, (unsigned long long)(blk >> 10), reps, WIN);
    printf("%-6s %-9s %4s %7s %10s %10s %7s\n", "op", "engine", "qd", "threads", "GB/s med",
           "GB/s p99", "vs dd");
    static const unsigned qds[] = {1, 2, 4, 8, 16, 32};
    int uring_ok = 1, rc = 0;
    for (int op = IO_OP_WRITE; op >= IO_OP_READ; op--) { /* write first: reads need data */
        run dd = {"dd", op, 1, 1, 0, 0, 0};
        int e = measure(&dd);
        if (e) {
            fprintf(stderr, "bench_io: dd: %s\n", strerror(-e));
            rc = 1;
            break;
        }
        const char *opn = op == IO_OP_READ ? "read" : "write";
        printf("%-6s %-9s %4u %7u %10.3f %10.3f %7.2f\n", opn, "dd", 1u, 1u, dd.med / 1e9,
               dd.p99 / 1e9, 1.0);
        for (unsigned i = 0; i < sizeof qds / sizeof *qds && uring_ok; i++) {
            run r = {"io_uring", op, qds[i], 1, 1, 0, 0};
            e = measure(&r);
            if (e == -ENOSYS) {
                printf("# io_uring unavailable here: its rows are skipped\n");
                uring_ok = 0;
                break;
            }
            if (e) {
                fprintf(stderr, "bench_io: io_uring qd %u: %s\n", qds[i], strerror(-e));
                rc = 1;
                continue;
            }
            printf("%-6s %-9s %4u %7s %10.3f %10.3f %7.2f\n", opn, "io_uring", r.qd, "-",
                   r.med / 1e9, r.p99 / 1e9, r.med / dd.med);
        }
        run p = {"pool", op, 32, threads, 2, 0, 0};
        e = measure(&p);
        if (e) {
            fprintf(stderr, "bench_io: pool: %s\n", strerror(-e));
            rc = 1;
            continue;
        }
        printf("%-6s %-9s %4u %7u %10.3f %10.3f %7.2f\n", opn, "pool", p.qd, p.threads,
               p.med / 1e9, p.p99 / 1e9, p.med / dd.med);
        fflush(stdout);
    }
    io_buf_free(bufs);
    free(order);
    close(fd);
    return rc;
}
