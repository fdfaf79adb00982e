/*
 * bench_tiers.c — what persistence costs: kvt_read bandwidth of 2 MiB blocks from DRAM, nvme
 * and disk against a raw O_DIRECT pread of the same tier files (the physical limit of this
 * machine's device, measured in the same run), and kvt_put throughput with write-through
 * against a DRAM-only engine.
 *
 *   bench_tiers [--quick] [--blocks N] [--reps N]
 *   directory: $KVT_BENCH_DIR, else $KVT_TEST_DIR, else /tmp
 *
 * Layout: Llama-3-8B bf16, 16-token blocks = 2 MiB. Reads: one kvt_read of one block per
 * sample, every block of a prompt in turn, DRAM sized so that each tier read really comes
 * from that tier (a promoted copy evicts an older persisted one: no page cache, O_DIRECT).
 * "raw" is a dd-like loop: one 2 MiB O_DIRECT pread per block of the same slot / segment
 * files. Puts: whole prompts of 4 blocks; "write-through" includes the kvt_flush that makes
 * them durable. Exit 77 when the directory refuses O_DIRECT.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "benchutil.h"
#include "io/io.h"
#include "kvtier/kvtier.h"

#define PB 4 /* blocks per prompt */

static kvt_layout lay;
static uint64_t bb;
static size_t nblocks, reps;
static uint32_t *toks;       /* [nblocks / PB][PB * 16] */
static unsigned char *data;  /* [nblocks][bb] */
static unsigned char *out;   /* [bb] */
static char root[512];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static kvt_engine *open_engine(const char *dir, uint64_t dram_blocks, uint64_t nvme, uint64_t disk)
{
    kvt_options *o;
    kvt_engine *e = NULL;
    if (kvt_options_create(&o))
        exit(1);
    kvt_options_set_dram_bytes(o, dram_blocks * bb);
    kvt_options_set_cuda_pin(o, 0);
    if (dir) {
        kvt_options_set_data_dir(o, dir);
        kvt_options_set_tier(o, KVT_TIER_NVME, NULL, nvme, 0);
        kvt_options_set_tier(o, KVT_TIER_DISK, NULL, disk, 0);
        kvt_options_set_backpressure_ms(o, 60000);
    }
    int rc = kvt_engine_open(o, &e);
    kvt_options_destroy(o);
    if (rc) {
        fprintf(stderr, "kvt_engine_open: %s\n", kvt_strerror(rc));
        exit(1);
    }
    return e;
}

static double put_all(kvt_engine *e, int flush)
{
    kvt_ns *ns;
    if (kvt_ns_open(e, "llama3-8b", "bench", &lay, 0, &ns))
        exit(1);
    uint64_t t0 = bu_now_ns();
    for (size_t p = 0; p < nblocks / PB; p++) {
        const void *ptr[PB];
        for (size_t i = 0; i < PB; i++)
            ptr[i] = data + (p * PB + i) * bb;
        size_t st = 0;
        int rc = kvt_put(ns, toks + p * PB * 16, PB * 16, ptr, &st);
        if (rc || st != PB) {
            fprintf(stderr, "put: %s (stored %zu)\n", kvt_strerror(rc), st);
            exit(1);
        }
    }
    if (flush && kvt_flush(e)) {
        fprintf(stderr, "flush failed\n");
        exit(1);
    }
    return (double)(nblocks * bb) / ((double)(bu_now_ns() - t0) * 1e-9) / 1e6;
}

/* MB/s of every single-block kvt_read, reps passes over all prompts. */
static void read_all(kvt_engine *e, double *mbs, size_t *n, int want_tier)
{
    kvt_ns *ns;
    if (kvt_ns_open(e, "llama3-8b", "bench", &lay, 0, &ns))
        exit(1);
    for (size_t r = 0; r < reps; r++)
        for (size_t p = 0; p < nblocks / PB; p++) {
            kvt_lease *l = NULL;
            size_t m = 0;
            if (kvt_match(ns, toks + p * PB * 16, PB * 16, &m, &l) || m != PB * 16) {
                fprintf(stderr, "prompt %zu: matched %zu\n", p, m);
                exit(1);
            }
            for (size_t i = 0; i < PB; i++) {
                kvt_tier t;
                kvt_lease_block_tier(l, i, &t);
                void *d = out;
                uint64_t t0 = bu_now_ns();
                int rc = kvt_read(l, i, 1, &d);
                uint64_t dt = bu_now_ns() - t0;
                if (rc || memcmp(out, data + (p * PB + i) * bb, 64)) {
                    fprintf(stderr, "read: %s\n", kvt_strerror(rc));
                    exit(1);
                }
                if ((int)t == want_tier)
                    mbs[(*n)++] = (double)bb / ((double)dt * 1e-9) / 1e6;
            }
            kvt_release(l);
        }
}

/* dd-like: 2 MiB O_DIRECT preads over the files dir/prefix*, reps passes. */
static void raw_read(const char *dir, const char *prefix, double *mbs, size_t *n)
{
    unsigned char *buf = io_buf_alloc(bb + 4096);
    for (size_t r = 0; r < reps; r++)
        for (int f = 0; f < 64; f++) {
            char fp[1100];
            if (prefix[1] == 'l')
                snprintf(fp, sizeof fp, "%s/%s%06d", dir, prefix, f);
            else
                snprintf(fp, sizeof fp, "%s/%s%08d", dir, prefix, f);
            int direct = 0;
            int fd = io_file_open(fp, O_RDONLY, 0, 1, &direct);
            if (fd < 0)
                continue;
            struct stat st;
            fstat(fd, &st);
            for (off_t off = 0; off + (off_t)bb <= st.st_size; off += (off_t)bb) {
                io_req q = {.buf = buf, .off = (uint64_t)off, .len = (uint32_t)bb, .fd = fd,
                            .op = IO_OP_READ};
                uint64_t t0 = bu_now_ns();
                int rc = io_sync_rw(&q, NULL, NULL, 0);
                uint64_t dt = bu_now_ns() - t0;
                if (rc != (int)bb)
                    break;
                mbs[(*n)++] = (double)bb / ((double)dt * 1e-9) / 1e6;
            }
            close(fd);
        }
    io_buf_free(buf);
}

static void row(const char *what, double *xs, size_t n, double ref)
{
    if (!n) {
        printf("%-34s %10s %10s %8s %8s\n", what, "-", "-", "-", "-");
        return;
    }
    double med = bu_quantile(xs, n, 0.5), p99 = bu_quantile(xs, n, 0.01);
    char r[32] = "-";
    if (ref > 0)
        snprintf(r, sizeof r, "%.2f", med / ref);
    printf("%-34s %10.0f %10.0f %8zu %8s\n", what, med, p99, n, r);
}

int main(int argc, char **argv)
{
    int quick = bu_flag(argc, argv, "--quick");
    nblocks = (size_t)bu_opt(argc, argv, "--blocks", quick ? 16 : 128);
    reps = (size_t)bu_opt(argc, argv, "--reps", quick ? 1 : 3);
    nblocks = (nblocks + PB - 1) / PB * PB;
    lay = (kvt_layout){.layers = 32, .kv_heads = 8, .head_dim = 128, .dtype = KVT_DTYPE_BF16,
                       .block_tokens = 16};
    bb = kvt_layout_block_bytes(&lay);
    const char *base = getenv("KVT_BENCH_DIR");
    if (!base)
        base = getenv("KVT_TEST_DIR");
    if (!base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(root, sizeof root, "%s/bench_tiers.%d", base, (int)getpid());
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (mkdir(root, 0755)) {
        perror(root);
        return 1;
    }
    { /* O_DIRECT or skip */
        char p[600];
        snprintf(p, sizeof p, "%s/probe", root);
        int direct = 0, fd = io_file_open(p, O_RDWR | O_CREAT, 0644, 1, &direct);
        if (fd >= 0)
            close(fd);
        if (fd < 0 || !direct) {
            fprintf(stderr, "skip: %s refuses O_DIRECT\n", root);
            nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
            return 77;
        }
    }
    bu_header(argc, argv);
    toks = malloc(nblocks * 16 * sizeof *toks);
    data = malloc(nblocks * bb);
    out = io_buf_alloc(bb);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < nblocks * 16; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (uint32_t)(s >> 32);
    }
    for (size_t i = 0; i < nblocks * bb / 8; i++)
        ((uint64_t *)data)[i] = (s = s * 6364136223846793005ull + 1442695040888963407ull);

    size_t cap = reps * nblocks + 8;
    double *x = malloc(cap * 64 * sizeof *x);
    size_t n;
    char nvdir[700], dkdir[700], dir1[600], dir2[600];
    snprintf(dir1, sizeof dir1, "%s/nv", root);
    snprintf(dir2, sizeof dir2, "%s/dk", root);
    uint64_t nvcap = (nblocks + 8) * bb, dkcap = (nblocks * bb + (64u << 20)) * 2;

    /* puts */
    double put_ps[5], put_wt[5];
    int prep = quick ? 1 : 3;
    for (int r = 0; r < prep; r++) {
        kvt_engine *e = open_engine(NULL, nblocks + 8, 0, 0);
        put_ps[r] = put_all(e, 0);
        kvt_engine_close(e);
        char d[700];
        snprintf(d, sizeof d, "%s/put%d", root, r);
        e = open_engine(d, nblocks + 8, nvcap, dkcap);
        put_wt[r] = put_all(e, 1);
        kvt_engine_close(e);
        nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }

    /* the tiers' contents: nvme + disk engine, and a disk-only engine */
    kvt_engine *e = open_engine(dir1, nblocks + 8, nvcap, dkcap);
    put_all(e, 1);
    kvt_engine_close(e);
    e = open_engine(dir2, nblocks + 8, 0, dkcap);
    put_all(e, 1);
    kvt_engine_close(e);

    printf("\n%-34s %10s %10s %8s %8s\n", "read path (2 MiB blocks)", "med MB/s", "p1 MB/s",
           "samples", "vs raw");
    /* raw first (cold device, no cache either way) */
    double raw_nv, raw_dk;
    snprintf(nvdir, sizeof nvdir, "%s/nvme", dir1);
    snprintf(dkdir, sizeof dkdir, "%s/disk", dir2);
    double *rx = malloc(cap * 64 * sizeof *rx);
    size_t rn = 0;
    raw_read(nvdir, "slots.", rx, &rn);
    raw_nv = rn ? bu_quantile(rx, rn, 0.5) : 0;
    row("raw pread O_DIRECT, nvme slots", rx, rn, 0);
    rn = 0;
    raw_read(dkdir, "seg.", rx, &rn);
    raw_dk = rn ? bu_quantile(rx, rn, 0.5) : 0;
    row("raw pread O_DIRECT, disk segments", rx, rn, 0);

    /* DRAM: everything fits; first pass promotes, later passes are DRAM hits */
    e = open_engine(dir1, nblocks + 8, nvcap, dkcap);
    n = 0;
    read_all(e, x, &n, KVT_TIER_NVME);
    size_t n_nv_first = n;
    n = 0;
    read_all(e, x, &n, KVT_TIER_DRAM);
    row("kvt_read from DRAM", x, n, 0);
    kvt_engine_close(e);
    (void)n_nv_first;
    /* nvme: 4 DRAM blocks, so every read comes from nvme */
    e = open_engine(dir1, 4, nvcap, dkcap);
    n = 0;
    read_all(e, x, &n, KVT_TIER_NVME);
    row("kvt_read from nvme (verify+promote)", x, n, raw_nv);
    kvt_engine_close(e);
    e = open_engine(dir2, 4, 0, dkcap);
    n = 0;
    read_all(e, x, &n, KVT_TIER_DISK);
    row("kvt_read from disk (verify+promote)", x, n, raw_dk);
    kvt_engine_close(e);

    printf("\n%-34s %10s %8s\n", "put path (prompts of 4 blocks)", "med MB/s", "vs DRAM");
    double mp = bu_quantile(put_ps, (size_t)prep, 0.5), mw = bu_quantile(put_wt, (size_t)prep, 0.5);
    printf("%-34s %10.0f %8s\n", "kvt_put, DRAM only", mp, "1.00");
    printf("%-34s %10.0f %8.2f\n", "kvt_put + kvt_flush, write-through", mw, mw / mp);
    printf("%-34s %10.0f\n", "(raw pread nvme, for scale)", raw_nv);

    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(x);
    free(rx);
    free(toks);
    free(data);
    io_buf_free(out);
    return 0;
}
