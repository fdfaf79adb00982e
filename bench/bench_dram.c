/*
 * bench_dram.c — put and read of 2 MiB blocks through the public API against a plain
 * single-thread memcpy of the same blocks, measured in the same run.
 *
 * Layout: Llama-3-8B, bf16: 32 layers, 8 KV heads, head_dim 128, 16-token blocks ->
 * 32*2*16*8*128*2 = 2 MiB per block. Each operation moves one prompt of --prompt-blocks
 * blocks (default 4, 8 MiB).
 *
 * Buffers (N = --blocks, default 256: 512 MiB each, well past any LLC):
 *   src    [N][block_bytes]  what kvt_put stores and memcpy copies from
 *   dst    [N][block_bytes]  where kvt_read writes and memcpy copies to
 *   arena  N slots of block_bytes (the engine's DRAM tier, exactly N blocks)
 * src and dst are mapped like the arena (2 MiB aligned; MADV_HUGEPAGE when the arena got
 * huge pages) and every page of all three is touched before timing, so the peer pays the
 * same page faults and TLB reach: none.
 *
 * One repetition = four passes over N blocks, interleaved so that drift hits all rows alike:
 *   memcpy     src -> dst, one memcpy per 2 MiB block
 *   kvt_put    a fresh prompt per operation; the arena holds exactly N blocks, so from the
 *              second repetition on every put evicts the previous repetition's LRU blocks
 *              (steady state of a full cache)
 *   read_contig  kvt_match + kvt_read_contig + kvt_release of each prompt just put
 *   read       kvt_match + kvt_read (one pointer per block) + kvt_release
 * Repetition 0 is a warm-up and not recorded. Every repetition stamps the source blocks and
 * checks all bytes read back (untimed).
 *
 * GB/s = block bytes moved one way / time (1 GB = 1e9 bytes); "p99" is the bandwidth of the
 * 99th-percentile slowest operation.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "benchutil.h"
#include "kvtier/kvtier.h"

#define HUGE_2M (2ull << 20)

enum { OP_MEMCPY, OP_PUT, OP_READ_CONTIG, OP_READ, N_OPS };
static const char *const op_name[N_OPS] = {"memcpy (peer)", "kvt_put", "kvt_read_contig",
                                           "kvt_read"};

/* len bytes (a multiple of 2 MiB), 2 MiB aligned like the arena; every page touched. */
static void *map_buf(size_t len, int thp)
{
    unsigned char *raw = mmap(NULL, len + HUGE_2M, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1);
    size_t head = start - (uintptr_t)raw;
    if (head)
        munmap(raw, head);
    munmap((unsigned char *)start + len, HUGE_2M - head);
    if (thp)
        madvise((void *)start, len, MADV_HUGEPAGE);
    memset((void *)start, 0x11, len);
    return (void *)start;
}

/* Tokens of prompt i of repetition r: unique per (r, i), so every put stores new blocks. */
static void prompt_tokens(uint32_t *tok, size_t n, uint64_t r, uint64_t i)
{
    uint64_t s = (r << 32 | i) * 0x9e3779b97f4a7c15ull + 1;
    for (size_t j = 0; j < n; j++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        tok[j] = (uint32_t)(s % 128256);
    }
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "bench_dram: %s: %s (%d)\n", what, kvt_strerror(rc), rc);
    return 1;
}

int main(int argc, char **argv)
{
    int quick = bu_flag(argc, argv, "--quick");
    size_t n_blocks = (size_t)bu_opt(argc, argv, "--blocks", quick ? 16 : 256);
    size_t pb = (size_t)bu_opt(argc, argv, "--prompt-blocks", 4);
    int reps = (int)bu_opt(argc, argv, "--reps", quick ? 2 : 6);
    int hp_off = bu_flag(argc, argv, "--hugepages-off");
    if (pb < 1 || n_blocks < pb || n_blocks % pb || reps < 1) {
        fprintf(stderr, "usage: bench_dram [--quick] [--blocks N] [--prompt-blocks P, "
                        "dividing N] [--reps R] [--hugepages-off]\n");
        return 2;
    }

    const kvt_layout layout = {.layers = 32, .kv_heads = 8, .head_dim = 128,
                               .dtype = KVT_DTYPE_BF16, .block_tokens = 16};
    const uint64_t bb = kvt_layout_block_bytes(&layout); /* 2 MiB */
    const size_t n_prompts = n_blocks / pb, pt = pb * layout.block_tokens;
    const size_t total = n_blocks * bb;

    int rc = 1, e;
    kvt_options *opts = NULL;
    kvt_engine *eng = NULL;
    kvt_ns *ns = NULL;
    unsigned char *src = NULL, *dst = NULL;
    uint32_t *tok = malloc(pt * sizeof *tok);
    const void **bp = malloc(pb * sizeof *bp);
    void **dp = malloc(pb * sizeof *dp);
    double *lat[N_OPS] = {0};
    size_t n_lat = (size_t)(reps > 1 ? reps - 1 : 1) * n_prompts;
    for (int o = 0; o < N_OPS; o++)
        lat[o] = malloc(n_lat * sizeof *lat[o]);
    if (!tok || !bp || !dp || !lat[0] || !lat[1] || !lat[2] || !lat[3]) {
        fprintf(stderr, "bench_dram: out of memory\n");
        goto out;
    }

    if ((e = kvt_options_create(&opts)) || (e = kvt_options_set_dram_bytes(opts, total)) ||
        (e = kvt_options_set_dram_slot_bytes(opts, bb)) ||
        (e = kvt_options_set_hugepages(opts, hp_off ? KVT_HUGEPAGES_OFF : KVT_HUGEPAGES_AUTO))) {
        rc = fail("options", e);
        goto out;
    }
    if ((e = kvt_engine_open(opts, &eng))) {
        rc = fail("kvt_engine_open", e);
        goto out;
    }
    if ((e = kvt_ns_open(eng, "llama-3-8b", "bench", &layout, 0, &ns))) {
        rc = fail("kvt_ns_open", e);
        goto out;
    }
    kvt_stats st;
    if ((e = kvt_engine_stats(eng, &st, sizeof st))) {
        rc = fail("kvt_engine_stats", e);
        goto out;
    }
    src = map_buf(total, st.dram_hugepages != 0);
    dst = map_buf(total, st.dram_hugepages != 0);
    if (!src || !dst) {
        fprintf(stderr, "bench_dram: cannot map 2 x %zu bytes\n", total);
        goto out;
    }

    bu_header(argc, argv);
    printf("# block %llu bytes (32 layers, 8 kv heads, d 128, bf16, 16 tokens); %zu blocks "
           "= %.0f MiB per buffer and arena; %zu blocks per op; %d reps (1 warm-up); arena "
           "hugepages=%u (1 hugetlb, 2 THP, 0 none)\n",
           (unsigned long long)bb, n_blocks, (double)total / (1 << 20), pb, reps,
           st.dram_hugepages);

    size_t k = 0; /* recorded samples per op */
    for (int r = 0; r < reps; r++) {
        int rec = r > 0 || reps == 1;
        /* a stamp per (repetition, block): a stale or misplaced block shows on readback */
        for (size_t b = 0; b < n_blocks; b++) {
            uint64_t stamp = (uint64_t)r << 32 | b;
            memcpy(src + b * bb, &stamp, sizeof stamp);
            memcpy(src + b * bb + bb - sizeof stamp, &stamp, sizeof stamp);
        }

        for (size_t i = 0; i < n_prompts; i++) {
            unsigned char *s = src + i * pb * bb, *d = dst + i * pb * bb;
            uint64_t t0 = bu_now_ns();
            for (size_t j = 0; j < pb; j++)
                memcpy(d + j * bb, s + j * bb, bb);
            uint64_t dt = bu_now_ns() - t0;
            bu_sink(d);
            if (rec)
                lat[OP_MEMCPY][k + i] = (double)dt;
        }

        for (size_t i = 0; i < n_prompts; i++) {
            prompt_tokens(tok, pt, (uint64_t)r, i);
            for (size_t j = 0; j < pb; j++)
                bp[j] = src + (i * pb + j) * bb;
            size_t stored = 0;
            uint64_t t0 = bu_now_ns();
            e = kvt_put(ns, tok, pt, bp, &stored);
            uint64_t dt = bu_now_ns() - t0;
            if (e || stored != pb) {
                rc = fail("kvt_put", e ? e : -ENOSPC);
                goto out;
            }
            if (rec)
                lat[OP_PUT][k + i] = (double)dt;
        }

        for (int op = OP_READ_CONTIG; op <= OP_READ; op++) {
            memset(dst, 0, total); /* so the check below sees only what this pass read */
            for (size_t i = 0; i < n_prompts; i++) {
                prompt_tokens(tok, pt, (uint64_t)r, i);
                unsigned char *d = dst + i * pb * bb;
                for (size_t j = 0; j < pb; j++)
                    dp[j] = d + j * bb;
                size_t matched = 0;
                kvt_lease *lease = NULL;
                uint64_t t0 = bu_now_ns();
                e = kvt_match(ns, tok, pt, &matched, &lease);
                if (!e && matched == pt)
                    e = op == OP_READ_CONTIG ? kvt_read_contig(lease, 0, pb, d, pb * bb)
                                             : kvt_read(lease, 0, pb, (void *const *)dp);
                kvt_release(lease);
                uint64_t dt = bu_now_ns() - t0;
                if (e || matched != pt) {
                    fprintf(stderr, "bench_dram: rep %d prompt %zu: matched %zu of %zu tokens\n",
                            r, i, matched, pt);
                    rc = e ? fail(op_name[op], e) : 1;
                    goto out;
                }
                if (rec)
                    lat[op][k + i] = (double)dt;
            }
            if (memcmp(dst, src, total) != 0) {
                fprintf(stderr, "bench_dram: %s: bytes read differ from bytes put\n",
                        op_name[op]);
                goto out;
            }
        }
        if (rec)
            k += n_prompts;
    }

    /* bandwidth quantiles: the p99 op is the slowest 1%, so take latency quantiles */
    double med[N_OPS], p99[N_OPS];
    double op_bytes = (double)(pb * bb);
    for (int o = 0; o < N_OPS; o++) {
        med[o] = op_bytes / bu_quantile(lat[o], k, 0.5);
        p99[o] = op_bytes / bu_quantile(lat[o], k, 0.99);
    }
    printf("%-22s %12s %12s %14s %14s\n", "operation", "median GB/s", "p99 GB/s",
           "median/memcpy", "p99/memcpy");
    for (int o = 0; o < N_OPS; o++)
        printf("%-22s %12.2f %12.2f %14.3f %14.3f\n", op_name[o], med[o], p99[o],
               med[o] / med[OP_MEMCPY], p99[o] / p99[OP_MEMCPY]);
    printf("# target: put and read >= 0.80 of memcpy (median): put %s, read_contig %s, read %s\n",
           med[OP_PUT] >= 0.8 * med[OP_MEMCPY] ? "met" : "MISSED",
           med[OP_READ_CONTIG] >= 0.8 * med[OP_MEMCPY] ? "met" : "MISSED",
           med[OP_READ] >= 0.8 * med[OP_MEMCPY] ? "met" : "MISSED");
    if ((e = kvt_engine_stats(eng, &st, sizeof st)) == 0)
        printf("# engine: %llu blocks stored, %llu evicted, %llu cached, %.0f MiB written, "
               "%.0f MiB read\n",
               (unsigned long long)st.blocks_stored, (unsigned long long)st.blocks_evicted,
               (unsigned long long)st.blocks_cached, (double)st.bytes_written / (1 << 20),
               (double)st.bytes_read / (1 << 20));
    rc = 0;
out:
    if (eng && (e = kvt_engine_close(eng)))
        rc = fail("kvt_engine_close", e);
    kvt_options_destroy(opts);
    if (src)
        munmap(src, total);
    if (dst)
        munmap(dst, total);
    free(tok);
    free(bp);
    free(dp);
    for (int o = 0; o < N_OPS; o++)
        free(lat[o]);
    return rc;
}
