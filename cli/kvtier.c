/*
 * kvtier.c — the `kvtier` program: version, info (configuration + self-check), help.
 *
 * `probe` (cli/probe.c) measures the tiers' bandwidths for the cost model.
 * `info` uses only the public API (kvtier/kvtier.h): it opens the engine on embedded defaults,
 * prints its configuration and proves put -> match -> read -> release (and, with a data
 * folder, flush -> warm restart -> read back) works on this machine. `serve` (server/) and
 * `analyze` (analytics/) are dispatched to their modules' entry points when CMake builds them.
 *
 * Exit codes: 0 ok; 1 the engine or the self-check failed; 2 usage error (bad command/option).
 * Build-time facts come from compile definitions: KVT_GIT_COMMIT (the commit, "" if unknown),
 * KVT_CLI_HAVE_CUDA (1 when the library it links was built with CUDA), KVT_HAVE_SERVER and
 * KVT_HAVE_ANALYTICS (the modules behind `serve` and `analyze` are linked in).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kvtier/kvtier.h"

#ifndef KVT_GIT_COMMIT
#define KVT_GIT_COMMIT ""
#endif
#ifndef KVT_CLI_HAVE_CUDA
#define KVT_CLI_HAVE_CUDA 0
#endif

#define EXIT_USAGE 2

static const char *prog = "kvtier";

static const char *git_commit(void)
{
    return KVT_GIT_COMMIT[0] ? KVT_GIT_COMMIT : "unknown";
}

/* "kvtier: <message>" on stderr. */
static void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---------------------------------------------------------------- sizes */

/* Human-readable binary size into buf: "512 B", "2.00 MiB", "1.00 GiB". */
const char *fmt_size(char *buf, size_t n, uint64_t bytes)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof *units) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, n, "%" PRIu64 " B", bytes);
    else
        snprintf(buf, n, "%.2f %s", v, units[u]);
    return buf;
}

/* A duration in seconds as "850 us", "12.3 ms", "4.5 s", "3.2 min", "1.5 h". */
const char *fmt_secs(char *buf, size_t n, double s)
{
    if (s < 1e-3)
        snprintf(buf, n, "%.0f us", s * 1e6);
    else if (s < 1)
        snprintf(buf, n, "%.1f ms", s * 1e3);
    else if (s < 120)
        snprintf(buf, n, "%.1f s", s);
    else if (s < 7200)
        snprintf(buf, n, "%.1f min", s / 60);
    else
        snprintf(buf, n, "%.1f h", s / 3600);
    return buf;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* ---------------------------------------------------------------- JSON output */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* ---------------------------------------------------------------- help */

static void usage_main(FILE *f);

static void usage_version(FILE *f)
{
    fprintf(f,
            "usage: kvtier version [--json]\n"
            "\n"
            "Print the library version, the git commit it was built from and whether the\n"
            "CUDA parts (pinned host memory, GPU kernels) were built in.\n"
            "\n"
            "  --json   one JSON object instead of text\n");
}

static void usage_info(FILE *f)
{
    fprintf(f,
            "usage: kvtier info [--dram-bytes N] [--slot-bytes N] [--data-dir D\n"
            "                   [--nvme-bytes N] [--disk-bytes N]] [--json]\n"
            "\n"
            "Open the engine (embedded defaults unless overridden), print its configuration\n"
            "(tiers, capacity, slot size, huge pages, CUDA pinning, GPUs) and run a self-check:\n"
            "store 4 blocks in a Llama-3-8B-shaped namespace (bf16, 16-token blocks, 2 MiB\n"
            "each), match them back (whole, partial, diverging, unknown), read and verify the\n"
            "bytes, release, check the engine's counters and remove the blocks again.\n"
            "With --data-dir the engine is persistent and the self-check also flushes the\n"
            "blocks to the persistent tier, reopens the engine (a warm restart from the\n"
            "catalog), reads them back from nvme/disk and verifies them; it removes them at\n"
            "the end, so the data folder keeps nothing of it. Exits 0 when all of it passes.\n"
            "\n"
            "  --dram-bytes N   DRAM tier capacity (default 1G). Sizes take K, M, G, T\n"
            "                   suffixes, powers of 1024: 512M, 4G.\n"
            "  --slot-bytes N   DRAM slot size: a multiple of 64 (default 0 = the block size of\n"
            "                   the first namespace opened, here 2M).\n"
            "  --data-dir D     persistent engine in folder D (it must exist): the catalog and\n"
            "                   the nvme and disk tiers live under it. Default: DRAM only.\n"
            "  --nvme-bytes N   nvme tier capacity, preallocated under D (default 0: off)\n"
            "  --disk-bytes N   disk tier capacity under D (default 1G; 0: off)\n"
            "  --json           one JSON object instead of tables\n");
}

/* ---------------------------------------------------------------- version */

static int cmd_version(int argc, char **argv)
{
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_version(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            err("version: unknown option '%s' (try: kvtier version --help)", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (json) {
        printf("{\"version\": ");
        json_str(stdout, kvt_version());
        printf(", \"commit\": ");
        json_str(stdout, git_commit());
        printf(", \"cuda\": %s}\n", KVT_CLI_HAVE_CUDA ? "true" : "false");
    } else {
        printf("kvtier %s (commit %s, CUDA %s)\n", kvt_version(), git_commit(),
               KVT_CLI_HAVE_CUDA ? "built in" : "not built in");
    }
    return 0;
}

/* ---------------------------------------------------------------- info: self-check */

enum {
    SC_BLOCKS = 4,              /* blocks stored by the self-check */
    SC_BT = 16,                 /* tokens per block */
    SC_NT = SC_BLOCKS * SC_BT,  /* tokens of the self-check's prompt */
    SC_MAX_STEPS = 20,          /* room for the steps self_check() runs (at most 16) */
};

static const char *const tier_names[4] = {"hbm", "dram", "nvme", "disk"};

typedef struct sc_step {
    const char *name;
    int ok;
    double us;
    char detail[200];
} sc_step;

typedef struct info_run {
    /* inputs */
    const kvt_options *opts;
    uint64_t dram_bytes, slot_bytes, nvme_bytes, disk_bytes;
    int dram_set, slot_set, nvme_set, disk_set;
    const char *data_dir;
    /* results */
    char data_dir_abs[PATH_MAX];
    uint64_t data_free;
    kvt_layout layout;
    uint64_t block_bytes;
    uint64_t slot;            /* the DRAM slot size, 0 if unknown (see self_check) */
    uint64_t block_footprint; /* bytes of DRAM slots one block takes (block_bytes if unknown) */
    kvt_stats st;             /* with the self-check's blocks stored (shown in the tables) */
    int have_st;
    kvt_tier_info tiers[4];   /* the cost model's view of the tiers, fastest first */
    size_t n_tiers;
    sc_step steps[SC_MAX_STEPS];
    int n_steps;
    int passed;
} info_run;

/* Everything the self-check works with; self_check() frees it. */
typedef struct sc_ctx {
    info_run *r;
    kvt_engine *eng; /* owned by cmd_info; replaced by the reopen step */
    kvt_ns *ns;
    kvt_lease *lease;
    uint8_t *src, *dst;       /* [SC_BLOCKS][block_bytes] each */
    uint32_t tokens[SC_NT];
    kvt_stats base;           /* counters before the self-check's blocks */
    double t0;
} sc_ctx;

static sc_step *step_begin(sc_ctx *c, const char *name)
{
    info_run *r = c->r;
    assert(r->n_steps < SC_MAX_STEPS);
    sc_step *s = &r->steps[r->n_steps++];
    s->name = name;
    s->ok = 0;
    s->detail[0] = 0;
    c->t0 = now_us();
    return s;
}

/* Finish a step; returns ok. */
static int step_end(sc_ctx *c, sc_step *s, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int step_end(sc_ctx *c, sc_step *s, int ok, const char *fmt, ...)
{
    va_list ap;
    s->us = now_us() - c->t0;
    s->ok = ok;
    va_start(ap, fmt);
    vsnprintf(s->detail, sizeof s->detail, fmt, ap);
    va_end(ap);
    return ok;
}

/* Block i's byte pattern: a function of (i, offset) so a misplaced block fails too. */
static void fill_block(uint8_t *p, uint64_t n, size_t i)
{
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)(i + 1) * 0xbf58476d1ce4e5b9ull;
    for (uint64_t k = 0; k < n; k += 8) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 29;
        uint64_t left = n - k < 8 ? n - k : 8;
        memcpy(p + k, &x, left);
    }
}

/* Read all SC_BLOCKS leased blocks into dst and compare with src. 0, or the status / -EIO. */
static int read_verify(sc_ctx *c, size_t *bad)
{
    uint64_t bb = c->r->block_bytes;
    memset(c->dst, 0, SC_BLOCKS * bb);
    int rc = kvt_read_contig(c->lease, 0, SC_BLOCKS, c->dst, SC_BLOCKS * bb);
    if (rc)
        return rc;
    for (size_t i = 0; i < SC_BLOCKS; i++) {
        if (memcmp(c->dst + i * bb, c->src + i * bb, bb)) {
            *bad = i;
            return -EIO;
        }
    }
    return 0;
}

/* Match the whole prompt with a lease; 0 when all SC_BLOCKS blocks are leased. */
static int match_all(sc_ctx *c, size_t *matched)
{
    int rc = kvt_match(c->ns, c->tokens, SC_NT, matched, &c->lease);
    if (rc)
        return rc;
    return *matched == SC_NT && kvt_lease_blocks(c->lease) == SC_BLOCKS ? 0 : -ENOENT;
}

static int ns_open(sc_ctx *c)
{
    return kvt_ns_open(c->eng, "kvtier-selfcheck", "kvtier-info", &c->r->layout, 0, &c->ns);
}

/* The DRAM-only part: put, match, keys, read, release, counters. 1 if all passed. */
static int sc_core(sc_ctx *c)
{
    info_run *r = c->r;
    uint64_t bb = r->block_bytes;
    uint32_t other[SC_NT];
    const void *blocks[SC_BLOCKS];
    size_t matched = 0, stored = 0, bad = 0;
    sc_step *s;
    int rc;

    s = step_begin(c, "put 4 blocks");
    for (size_t i = 0; i < SC_BLOCKS; i++) {
        fill_block(c->src + i * bb, bb, i);
        blocks[i] = c->src + i * bb;
    }
    rc = kvt_put(c->ns, c->tokens, SC_NT, blocks, &stored);
    if (!step_end(c, s, rc == 0 && stored == SC_BLOCKS, "%s: %zu of %d stored",
                  kvt_strerror(rc), stored, SC_BLOCKS))
        return 0;

    s = step_begin(c, "put again (no-op)");
    rc = kvt_put(c->ns, c->tokens, SC_NT, blocks, &stored);
    if (!step_end(c, s, rc == 0 && stored == 0, "%s: %zu stored (want 0: all cached)",
                  kvt_strerror(rc), stored))
        return 0;

    s = step_begin(c, "match, no lease");
    rc = kvt_match(c->ns, c->tokens, SC_NT - 5, &matched, NULL);
    if (!step_end(c, s, rc == 0 && matched == SC_NT - SC_BT,
                  "%zu of %d tokens (want %d: a partial block is ignored)", matched, SC_NT - 5,
                  SC_NT - SC_BT))
        return 0;

    s = step_begin(c, "match, diverging");
    memcpy(other, c->tokens, sizeof other);
    other[2 * SC_BT + 3] ^= 1; /* one token of block 2 differs: blocks 0-1 only */
    rc = kvt_match(c->ns, other, SC_NT, &matched, NULL);
    if (!step_end(c, s, rc == 0 && matched == 2 * SC_BT,
                  "%zu of %d tokens (want %d: token ids compared exactly)", matched, SC_NT,
                  2 * SC_BT))
        return 0;

    s = step_begin(c, "match, unknown");
    for (size_t i = 0; i < SC_NT; i++)
        other[i] = c->tokens[i] + 1;
    rc = kvt_match(c->ns, other, SC_NT, &matched, NULL);
    if (!step_end(c, s, rc == 0 && matched == 0, "%zu of %d tokens (want 0)", matched, SC_NT))
        return 0;

    s = step_begin(c, "match + lease");
    rc = match_all(c, &matched);
    if (!step_end(c, s, rc == 0, "%s: %zu of %d tokens, %zu blocks leased", kvt_strerror(rc),
                  matched, SC_NT, kvt_lease_blocks(c->lease)))
        return 0;

    s = step_begin(c, "block keys");
    {
        uint64_t keys[SC_BLOCKS], k;
        int same = 1;
        rc = kvt_block_keys(c->ns, c->tokens, SC_NT, keys);
        for (size_t i = 0; rc == 0 && i < SC_BLOCKS; i++) {
            rc = kvt_lease_block_key(c->lease, i, &k);
            same &= rc == 0 && k == keys[i];
        }
        if (!step_end(c, s, rc == 0 && same, "%s: lease keys %s kvt_block_keys", kvt_strerror(rc),
                      same ? "equal" : "DIFFER from"))
            return 0;
    }

    s = step_begin(c, "read + verify");
    rc = read_verify(c, &bad);
    if (rc == -EIO) {
        step_end(c, s, 0, "block %zu's bytes differ from what was put", bad);
        return 0;
    }
    if (!step_end(c, s, rc == 0, "%s: 4 blocks read, byte-identical to what was put",
                  kvt_strerror(rc)))
        return 0;

    s = step_begin(c, "release");
    kvt_release(c->lease);
    c->lease = NULL;
    kvt_engine_stats(c->eng, &r->st, sizeof r->st);
    r->have_st = 1;
    if (!step_end(c, s, r->st.leases_open == 0, "%" PRIu64 " leases open (want 0)",
                  r->st.leases_open))
        return 0;

    /* Differences since the self-check began, so that blocks of other namespaces (a data
     * folder shared with other users of the engine) do not matter. */
    s = step_begin(c, "counters");
    {
        const kvt_stats *a = &c->base, *b = &r->st;
        uint64_t d_cached = b->blocks_cached - a->blocks_cached;
        uint64_t d_stored = b->blocks_stored - a->blocks_stored;
        uint64_t d_lookups = b->lookups - a->lookups;
        uint64_t d_hits = b->hit_tokens - a->hit_tokens;
        uint64_t d_used = b->dram_used - a->dram_used;
        int ok = d_cached == SC_BLOCKS && d_stored == SC_BLOCKS && d_lookups == 1 &&
                 d_hits >= SC_NT && b->bytes_read - a->bytes_read == SC_BLOCKS * bb &&
                 b->bytes_written - a->bytes_written == SC_BLOCKS * bb &&
                 (r->slot ? d_used == SC_BLOCKS * r->block_footprint
                          : d_used >= SC_BLOCKS * r->block_bytes);
        if (!step_end(c, s, ok,
                      "+%" PRIu64 " cached, +%" PRIu64 " stored, +%" PRIu64 " lookups, +%" PRIu64
                      " hit tokens, +%" PRIu64 " B of DRAM",
                      d_cached, d_stored, d_lookups, d_hits, d_used))
            return 0;
    }
    return 1;
}

/* Persistent engines: flush, warm restart, read back from nvme/disk. 1 if all passed. */
static int sc_persist(sc_ctx *c)
{
    info_run *r = c->r;
    kvt_stats st;
    size_t matched = 0, bad = 0;
    sc_step *s;
    int rc;

    s = step_begin(c, "flush");
    rc = kvt_flush(c->eng);
    kvt_engine_stats(c->eng, &r->st, sizeof r->st);
    {
        uint64_t persisted = r->st.persisted_blocks - c->base.persisted_blocks;
        uint64_t on_nvme = r->st.tier_blocks[KVT_TIER_NVME];
        uint64_t on_disk = r->st.tier_blocks[KVT_TIER_DISK];
        if (!step_end(c, s, rc == 0 && persisted >= SC_BLOCKS,
                      "%s: +%" PRIu64 " blocks durable and catalogued; nvme holds %" PRIu64
                      ", disk %" PRIu64 " blocks",
                      kvt_strerror(rc), persisted, on_nvme, on_disk))
            return 0;
    }

    s = step_begin(c, "close + reopen");
    c->ns = NULL;
    rc = kvt_engine_close(c->eng);
    c->eng = NULL;
    if (rc) {
        step_end(c, s, 0, "kvt_engine_close: %s", kvt_strerror(rc));
        return 0;
    }
    rc = kvt_engine_open(r->opts, &c->eng);
    if (rc) {
        step_end(c, s, 0, "kvt_engine_open: %s", kvt_strerror(rc));
        return 0;
    }
    rc = ns_open(c);
    kvt_engine_stats(c->eng, &st, sizeof st);
    if (!step_end(c, s, rc == 0 && st.restored_blocks >= SC_BLOCKS,
                  "%s: %" PRIu64 " blocks restored from the catalog (want >= %d), %" PRIu64
                  " records dropped",
                  kvt_strerror(rc), st.restored_blocks, SC_BLOCKS, st.restore_dropped))
        return 0;
    c->base = st; /* the reopened engine's counters start again */

    s = step_begin(c, "read after restart");
    rc = match_all(c, &matched);
    if (rc) {
        step_end(c, s, 0, "kvt_match: %s: %zu of %d tokens", kvt_strerror(rc), matched, SC_NT);
        return 0;
    }
    kvt_tier tier = KVT_TIER_DRAM;
    kvt_lease_block_tier(c->lease, 0, &tier);
    rc = read_verify(c, &bad);
    kvt_release(c->lease);
    c->lease = NULL;
    kvt_engine_stats(c->eng, &st, sizeof st);
    if (rc == -EIO) {
        step_end(c, s, 0, "block %zu's bytes differ from what was put", bad);
        return 0;
    }
    return step_end(c, s, rc == 0 && tier != KVT_TIER_DRAM && st.checksum_failures == 0,
                    "%s: 4 blocks read from %s (checksums verified), byte-identical",
                    kvt_strerror(rc), (unsigned)tier < 4 ? tier_names[tier] : "?");
}

/*
 * The self-check. Each step records ok/detail; the first failed step ends the run.
 * *eng may be replaced (the persistent check reopens the engine) or NULL on return.
 */
static void self_check(info_run *r, kvt_engine **eng)
{
    sc_ctx *c = calloc(1, sizeof *c);
    size_t removed = 0, matched = 0;
    sc_step *s;
    int rc;

    if (!c) {
        snprintf(r->steps[0].detail, sizeof r->steps[0].detail, "out of memory");
        r->steps[0].name = "start";
        r->n_steps = 1;
        r->passed = 0;
        return;
    }
    c->r = r;
    c->eng = *eng;
    /* Llama-3-8B's KV layout: 32 layers x 2 x 16 tokens x 8 KV heads x 128 dims, bf16. */
    r->layout = (kvt_layout){.layers = 32, .kv_heads = 8, .head_dim = 128,
                             .dtype = KVT_DTYPE_BF16, .block_tokens = SC_BT};
    r->block_bytes = kvt_layout_block_bytes(&r->layout);
    for (size_t i = 0; i < SC_NT; i++)
        c->tokens[i] = (uint32_t)(128000 + 7 * i); /* arbitrary, non-repeating ids */

    s = step_begin(c, "open namespace");
    if ((rc = ns_open(c))) {
        step_end(c, s, 0, "kvt_ns_open: %s", kvt_strerror(rc));
        goto out;
    }
    /* A persistent engine may hold the blocks of an interrupted earlier run: remove them. */
    rc = kvt_remove(c->ns, c->tokens, SC_BT, &removed);
    if (rc && rc != -ENOENT) {
        step_end(c, s, 0, "removing an earlier run's blocks: kvt_remove: %s", kvt_strerror(rc));
        goto out;
    }
    kvt_engine_stats(c->eng, &c->base, sizeof c->base);
    r->st = c->base; /* for the tables, until the self-check's blocks are stored */
    r->have_st = 1;
    /* The slot size is --slot-bytes, else the block size of the first namespace opened:
     * ours, unless a warm restart brought back others (their order is not visible). */
    r->slot = r->slot_set ? r->slot_bytes : c->base.namespaces == 1 ? r->block_bytes : 0;
    r->block_footprint =
        r->slot ? (r->block_bytes + r->slot - 1) / r->slot * r->slot : r->block_bytes;
    if (c->base.dram_capacity - c->base.dram_used < SC_BLOCKS * r->block_footprint) {
        char a[32], b[32];
        step_end(c, s, 0,
                 "DRAM tier has %s free; the self-check needs %s (4 blocks): raise --dram-bytes",
                 fmt_size(a, sizeof a, c->base.dram_capacity - c->base.dram_used),
                 fmt_size(b, sizeof b, SC_BLOCKS * r->block_footprint));
        goto out;
    }
    c->src = malloc(SC_BLOCKS * r->block_bytes);
    c->dst = malloc(SC_BLOCKS * r->block_bytes);
    if (!c->src || !c->dst) {
        step_end(c, s, 0, "out of memory for %d test blocks", 2 * SC_BLOCKS);
        goto out;
    }
    {
        char a[32];
        step_end(c, s, 1, "Llama-3-8B layout, %s blocks%s", fmt_size(a, sizeof a, r->block_bytes),
                 removed ? "; removed an earlier run's blocks" : "");
    }

    if (!sc_core(c))
        goto out;
    if (c->base.persistent && !sc_persist(c))
        goto out;

    s = step_begin(c, "remove");
    /* Removing the 3-block prefix drops its last block and all after it (blocks 2, 3); the
     * 1-block prefix then drops the rest. */
    rc = kvt_remove(c->ns, c->tokens, 3 * SC_BT, &removed);
    int rc2 = rc ? rc : kvt_match(c->ns, c->tokens, SC_NT, &matched, NULL);
    if (!step_end(c, s, rc2 == 0 && removed == 2 && matched == 2 * SC_BT,
                  "%s: %zu blocks removed (want 2), then %zu of %d tokens match (want %d)",
                  kvt_strerror(rc2), removed, rc ? 0 : matched, SC_NT, 2 * SC_BT))
        goto out;

    s = step_begin(c, "remove all");
    rc = kvt_remove(c->ns, c->tokens, SC_BT, &removed);
    rc2 = rc ? rc : kvt_match(c->ns, c->tokens, SC_NT, &matched, NULL);
    if (rc2 == 0 && c->base.persistent)
        rc2 = kvt_flush(c->eng); /* the removal is durable: the data folder keeps nothing */
    step_end(c, s, rc2 == 0 && removed == 2 && matched == 0,
             "%s: %zu blocks removed (want 2), then %zu tokens match (want 0)%s",
             kvt_strerror(rc2), removed, rc ? 0 : matched,
             c->base.persistent ? ", flushed" : "");

out:
    kvt_release(c->lease);
    free(c->src);
    free(c->dst);
    *eng = c->eng;
    free(c);
    r->passed = r->n_steps > 0;
    for (int i = 0; i < r->n_steps; i++)
        r->passed &= r->steps[i].ok;
}

/* ---------------------------------------------------------------- info: output */

static const char *hugepages_name(uint32_t h)
{
    switch (h) {
    case 1: return "MAP_HUGETLB 2 MiB";
    case 2: return "transparent (THP)";
    case 0: return "none (4 KiB pages)";
    default: return "unknown";
    }
}

static const char *gpu_text(const kvt_stats *st)
{
    /* The public API reports GPUs only through the pinned arena: pinning happens when a
     * GPU is present and the library has CUDA, so "pinned" means at least one GPU. */
    if (!KVT_CLI_HAVE_CUDA)
        return "not checked (built without CUDA)";
    return st->dram_cuda_pinned ? ">= 1 (DRAM arena pinned for DMA)" : "none usable (arena not pinned)";
}

static void print_text(const info_run *r)
{
    const kvt_stats *st = &r->st;
    char a[32], b[32], c[32];

    printf("kvtier %s (commit %s, CUDA %s)\n\n", kvt_version(), git_commit(),
           KVT_CLI_HAVE_CUDA ? "built in" : "not built in");

    printf("configuration\n");
    printf("  %-13s %s\n", "DRAM", r->dram_set ? fmt_size(a, sizeof a, r->dram_bytes)
                                               : "1.00 GiB (default)");
    printf("  %-13s %s\n", "slot size", r->slot_set ? fmt_size(a, sizeof a, r->slot_bytes)
                                                    : "the first namespace's block size (default)");
    printf("  %-13s %s\n", "CUDA pinning", KVT_CLI_HAVE_CUDA ? "on (default)" : "n/a (no CUDA)");
    printf("  %-13s %s\n", "GPUs", r->have_st ? gpu_text(st) : "?");
    if (r->data_dir) {
        printf("  %-13s %s (%s free)\n", "data dir", r->data_dir_abs,
               fmt_size(a, sizeof a, r->data_free));
        printf("  %-13s %s\n", "persistence",
               st->persistent ? "on: write-through to nvme/disk, catalog, warm restart" : "off");
        printf("  %-13s %s\n", "I/O", st->io_backend[0] ? st->io_backend : "-");
    } else {
        printf("  %-13s %s\n", "data dir", "none: DRAM only, nothing persistent (--data-dir D)");
    }
    printf("\n");

    printf("tiers%s\n", r->have_st ? " (used: with the self-check's 4 blocks stored)" : "");
    printf("  %-5s %-9s %10s %10s %7s %10s %7s  %-19s %s\n", "tier", "state", "capacity",
           "slot", "slots", "used", "blocks", "huge pages", "CUDA pinned");
    if (r->have_st && st->hbm_state == 1 && st->hbm_capacity)
        printf("  %-5s %-9s %10s %10s %7s %10s %7" PRIu64 "\n", "hbm", "on",
               fmt_size(a, sizeof a, st->hbm_capacity), "-", "-",
               fmt_size(b, sizeof b, st->hbm_used), st->tier_blocks[KVT_TIER_HBM]);
    else
        printf("  %-5s %s\n", "hbm", !r->have_st ? "?" : st->hbm_state == 1 ? "on (no pool yet)"
                                 : st->hbm_state == 2 ? "off (asked for, no usable GPU)"
                                                       : "off (not asked for)");
    if (r->have_st && st->dram_capacity) {
        char slots[24] = "?";
        if (r->slot)
            snprintf(slots, sizeof slots, "%" PRIu64, st->dram_capacity / r->slot);
        printf("  %-5s %-9s %10s %10s %7s %10s %7" PRIu64 "  %-19s %s\n", "dram", "on",
               fmt_size(a, sizeof a, st->dram_capacity),
               r->slot ? fmt_size(b, sizeof b, r->slot) : "?", slots,
               fmt_size(c, sizeof c, st->dram_used),
               st->tier_blocks[KVT_TIER_DRAM], hugepages_name(st->dram_hugepages),
               st->dram_cuda_pinned ? "yes" : "no");
    } else {
        printf("  %-5s %-9s\n", "dram", "on");
    }
    for (int t = KVT_TIER_NVME; t <= KVT_TIER_DISK; t++) {
        if (r->have_st && st->persistent && st->tier_capacity[t]) {
            printf("  %-5s %-9s %10s %10s %7s %10s %7" PRIu64 "\n", tier_names[t], "on",
                   fmt_size(a, sizeof a, st->tier_capacity[t]), "-", "-",
                   fmt_size(b, sizeof b, st->tier_used[t]), st->tier_blocks[t]);
        } else {
            printf("  %-5s %s\n", tier_names[t],
                   r->data_dir ? "off (capacity 0)" : "off (needs --data-dir)");
        }
    }
    printf("\n");

    if (r->n_tiers) {
        printf("cost model (what placement assumes per tier; drain = capacity / read rate)\n");
        printf("  %-5s %10s %11s %11s %9s %10s %9s\n", "tier", "capacity", "read GB/s",
               "link GB/s", "latency", "$/GiB-mo", "drain");
        for (size_t i = 0; i < r->n_tiers; i++) {
            const kvt_tier_info *t = &r->tiers[i];
            char lk[32], lat[32], dr[32];
            if (t->link_bw > 0)
                snprintf(lk, sizeof lk, "%.1f", t->link_bw / 1e9);
            else
                snprintf(lk, sizeof lk, "-");
            /* hold price per GiB and 30-day month, the unit storage is usually priced in */
            printf("  %-5s %10s %11.1f %11s %9s %10.3g %9s\n", t->name ? t->name : "?",
                   fmt_size(a, sizeof a, t->capacity), t->read_bw / 1e9, lk,
                   fmt_secs(lat, sizeof lat, t->latency_s),
                   t->usd_per_byte_s * 1073741824.0 * 86400.0 * 30.0,
                   fmt_secs(dr, sizeof dr, t->drain_s));
        }
        printf("\n");
    }

    printf("self-check (namespace kvtier-selfcheck, %u layers x %u KV heads x %u dims, bf16, "
           "%u-token blocks of %s)\n",
           r->layout.layers, r->layout.kv_heads, r->layout.head_dim, r->layout.block_tokens,
           fmt_size(a, sizeof a, r->block_bytes));
    printf("  %-18s %-6s %10s  %s\n", "step", "result", "time", "detail");
    for (int i = 0; i < r->n_steps; i++) {
        const sc_step *s = &r->steps[i];
        if (s->us < 1000)
            snprintf(a, sizeof a, "%.1f us", s->us);
        else
            snprintf(a, sizeof a, "%.2f ms", s->us / 1e3);
        printf("  %-18s %-6s %10s  %s\n", s->name, s->ok ? "ok" : "FAIL", a, s->detail);
    }
    printf("\n");
    if (r->passed)
        printf("self-check passed\n");
    else
        printf("self-check FAILED: see the step marked FAIL above\n");
}

static void print_json(const info_run *r)
{
    const kvt_stats *st = &r->st;

    printf("{\n  \"version\": ");
    json_str(stdout, kvt_version());
    printf(",\n  \"commit\": ");
    json_str(stdout, git_commit());
    printf(",\n  \"cuda_built\": %s,\n", KVT_CLI_HAVE_CUDA ? "true" : "false");
    printf("  \"gpu_present\": %s,\n",
           !KVT_CLI_HAVE_CUDA ? "null" : st->dram_cuda_pinned ? "true" : "false");
    printf("  \"data_dir\": ");
    if (r->data_dir) {
        json_str(stdout, r->data_dir_abs);
        printf(",\n  \"data_dir_free_bytes\": %" PRIu64 ",\n", r->data_free);
    } else {
        printf("null,\n");
    }
    printf("  \"persistent\": %s,\n  \"io_backend\": ", st->persistent ? "true" : "false");
    json_str(stdout, st->io_backend);
    printf(",\n  \"tiers\": [\n");
    printf("    {\"name\": \"hbm\", \"on\": %s, \"state\": %u, \"capacity_bytes\": %" PRIu64
           ", \"used_bytes\": %" PRIu64 ", \"blocks\": %" PRIu64 "},\n",
           st->hbm_state == 1 ? "true" : "false", st->hbm_state, st->hbm_capacity, st->hbm_used,
           st->tier_blocks[KVT_TIER_HBM]);
    char slot[24] = "null"; /* unknown: fixed by a namespace a warm restart brought back */
    if (r->slot)
        snprintf(slot, sizeof slot, "%" PRIu64, r->slot);
    printf("    {\"name\": \"dram\", \"on\": true, \"capacity_bytes\": %" PRIu64
           ", \"slot_bytes\": %s, \"used_bytes\": %" PRIu64 ", \"blocks\": %" PRIu64
           ", \"hugepages\": \"%s\", \"cuda_pinned\": %s},\n",
           st->dram_capacity, slot, st->dram_used,
           st->tier_blocks[KVT_TIER_DRAM],
           st->dram_hugepages == 1 ? "hugetlb" : st->dram_hugepages == 2 ? "thp" : "none",
           st->dram_cuda_pinned ? "true" : "false");
    for (int t = KVT_TIER_NVME; t <= KVT_TIER_DISK; t++) {
        int on = st->persistent && st->tier_capacity[t];
        printf("    {\"name\": \"%s\", \"on\": %s, \"capacity_bytes\": %" PRIu64
               ", \"used_bytes\": %" PRIu64 ", \"blocks\": %" PRIu64 "}%s\n",
               tier_names[t], on ? "true" : "false", on ? st->tier_capacity[t] : 0,
               on ? st->tier_used[t] : 0, on ? st->tier_blocks[t] : 0,
               t == KVT_TIER_DISK ? "" : ",");
    }
    printf("  ],\n  \"cost_model\": [\n");
    for (size_t i = 0; i < r->n_tiers; i++) {
        const kvt_tier_info *t = &r->tiers[i];
        printf("    {\"tier\": ");
        json_str(stdout, t->name ? t->name : "?");
        printf(", \"capacity_bytes\": %" PRIu64 ", \"read_bw\": %.6g, \"write_bw\": %.6g"
               ", \"link_bw\": %.6g, \"latency_s\": %.6g, \"usd_per_byte_s\": %.6g"
               ", \"drain_s\": %.6g}%s\n",
               t->capacity, t->read_bw, t->write_bw, t->link_bw, t->latency_s, t->usd_per_byte_s,
               t->drain_s, i + 1 < r->n_tiers ? "," : "");
    }
    printf("  ],\n");
    printf("  \"self_check\": {\n    \"passed\": %s,\n    \"block_bytes\": %" PRIu64
           ",\n    \"steps\": [\n",
           r->passed ? "true" : "false", r->block_bytes);
    for (int i = 0; i < r->n_steps; i++) {
        const sc_step *s = &r->steps[i];
        printf("      {\"step\": ");
        json_str(stdout, s->name);
        printf(", \"ok\": %s, \"us\": %.1f, \"detail\": ", s->ok ? "true" : "false", s->us);
        json_str(stdout, s->detail);
        printf("}%s\n", i + 1 < r->n_steps ? "," : "");
    }
    printf("    ]\n  }\n}\n");
}

/* ---------------------------------------------------------------- info */

/* The value of option argv[*i] ("--x V" or "--x=V"); NULL (after an error message) if none. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (!strncmp(argv[*i], name, n) && argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 >= argc) {
        err("info: %s needs a value (try: kvtier info --help)", name);
        return NULL;
    }
    return argv[++*i];
}

static int is_opt(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return !strncmp(arg, name, n) && (arg[n] == 0 || arg[n] == '=');
}

/* The size options of `info`: name, where the value goes, whether 0 is allowed. */
typedef struct size_opt {
    const char *name;
    size_t value, set; /* offsetof into info_run */
    int zero_ok;
} size_opt;

static const size_opt size_opts[] = {
    {"--dram-bytes", offsetof(info_run, dram_bytes), offsetof(info_run, dram_set), 0},
    {"--slot-bytes", offsetof(info_run, slot_bytes), offsetof(info_run, slot_set), 1},
    {"--nvme-bytes", offsetof(info_run, nvme_bytes), offsetof(info_run, nvme_set), 1},
    {"--disk-bytes", offsetof(info_run, disk_bytes), offsetof(info_run, disk_set), 1},
};

/* Parse info's arguments into r. 0 to go on, 1 after --help, or EXIT_USAGE. */
static int info_args(int argc, char **argv, info_run *r, int *json)
{
    for (int i = 1; i < argc; i++) {
        const size_opt *so = NULL;
        for (size_t k = 0; k < sizeof size_opts / sizeof *size_opts; k++)
            if (is_opt(argv[i], size_opts[k].name))
                so = &size_opts[k];
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_info(stdout);
            return 1;
        } else if (!strcmp(argv[i], "--json")) {
            *json = 1;
        } else if (so) {
            const char *v = opt_value(argc, argv, &i, so->name);
            uint64_t x;
            if (!v)
                return EXIT_USAGE;
            if (kvt_parse_size(v, &x) || (x == 0 && !so->zero_ok)) {
                err("info: %s '%s' is not a size: give bytes with an optional K, M, G or T "
                    "suffix (e.g. 512M, 4G)%s", so->name, v, so->zero_ok ? "" : ", more than 0");
                return EXIT_USAGE;
            }
            memcpy((char *)r + so->value, &x, sizeof x);
            *(int *)((char *)r + so->set) = 1;
        } else if (is_opt(argv[i], "--data-dir")) {
            if (!(r->data_dir = opt_value(argc, argv, &i, "--data-dir")))
                return EXIT_USAGE;
        } else {
            err("info: unknown option '%s' (try: kvtier info --help)", argv[i]);
            return EXIT_USAGE;
        }
    }
    if ((r->nvme_set || r->disk_set) && !r->data_dir) {
        err("info: --nvme-bytes and --disk-bytes need --data-dir D (the tiers' files live "
            "under D)");
        return EXIT_USAGE;
    }
    return 0;
}

/* Check the data folder and record its absolute path and free space. 0 or 1 (failure). */
static int check_data_dir(info_run *r)
{
    struct stat sb;
    struct statvfs vfs;
    if (stat(r->data_dir, &sb) || !S_ISDIR(sb.st_mode)) {
        err("info: data dir '%s' is not a directory: create it (mkdir -p %s) or leave out "
            "--data-dir", r->data_dir, r->data_dir);
        return 1;
    }
    if (access(r->data_dir, W_OK | X_OK)) {
        err("info: data dir '%s' is not writable by this user: fix its permissions or run "
            "as its owner", r->data_dir);
        return 1;
    }
    if (!realpath(r->data_dir, r->data_dir_abs))
        snprintf(r->data_dir_abs, sizeof r->data_dir_abs, "%s", r->data_dir);
    if (statvfs(r->data_dir, &vfs) == 0)
        r->data_free = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    return 0;
}

/* Options from r. 0, or EXIT_USAGE / 1 after a message. */
static int info_options(const info_run *r, kvt_options *opts)
{
    char a[32];
    int rc;
    if (r->dram_set && (rc = kvt_options_set_dram_bytes(opts, r->dram_bytes))) {
        err("info: --dram-bytes %s: %s", fmt_size(a, sizeof a, r->dram_bytes), kvt_strerror(rc));
        return EXIT_USAGE;
    }
    if (r->slot_set && (rc = kvt_options_set_dram_slot_bytes(opts, r->slot_bytes))) {
        err("info: --slot-bytes %" PRIu64 ": %s (a multiple of 64 in [64, 1G], or 0)",
            r->slot_bytes, kvt_strerror(rc));
        return EXIT_USAGE;
    }
    if (r->data_dir && (rc = kvt_options_set_data_dir(opts, r->data_dir))) {
        err("info: --data-dir %s: %s", r->data_dir, kvt_strerror(rc));
        return 1;
    }
    if (r->nvme_set && (rc = kvt_options_set_tier(opts, KVT_TIER_NVME, NULL, r->nvme_bytes, 0))) {
        err("info: --nvme-bytes: %s", kvt_strerror(rc));
        return EXIT_USAGE;
    }
    if (r->disk_set && (rc = kvt_options_set_tier(opts, KVT_TIER_DISK, NULL, r->disk_bytes, 0))) {
        err("info: --disk-bytes: %s", kvt_strerror(rc));
        return EXIT_USAGE;
    }
    return 0;
}

/* Say why kvt_engine_open failed and what to do. */
static void open_failed(const info_run *r, int rc)
{
    char a[32], b[32];
    fmt_size(a, sizeof a, r->dram_set ? r->dram_bytes : 1ull << 30);
    if (rc == -EINVAL && r->slot_set)
        err("info: kvt_engine_open: %s: a DRAM tier of %s holds no slot of %s; make "
            "--slot-bytes at most --dram-bytes", kvt_strerror(rc), a,
            fmt_size(b, sizeof b, r->slot_bytes));
    else if (rc == -EBUSY && r->data_dir)
        err("info: kvt_engine_open: %s: another kvtier process has %s open; stop it or use "
            "another --data-dir", kvt_strerror(rc), r->data_dir);
    else if (rc == -ENOSPC && r->data_dir)
        err("info: kvt_engine_open: %s: the nvme tier's files do not fit in %s; lower "
            "--nvme-bytes or free space", kvt_strerror(rc), r->data_dir);
    else if (r->data_dir && rc != -ENOMEM)
        err("info: kvt_engine_open on data dir %s: %s (see %s/catalog/LOG for catalog errors)",
            r->data_dir, kvt_strerror(rc), r->data_dir);
    else
        err("info: kvt_engine_open: %s: could not map a DRAM tier of %s; try a smaller "
            "--dram-bytes or free memory", kvt_strerror(rc), a);
}

static int cmd_info(int argc, char **argv)
{
    info_run *r = calloc(1, sizeof *r);
    kvt_options *opts = NULL;
    kvt_engine *eng = NULL;
    int json = 0, ret = 1, rc;

    if (!r) {
        err("info: out of memory");
        return 1;
    }
    if ((ret = info_args(argc, argv, r, &json))) {
        ret = ret == 1 ? 0 : ret; /* --help */
        goto out;
    }
    ret = 1;
    if (r->data_dir && check_data_dir(r))
        goto out;
    if ((rc = kvt_options_create(&opts))) {
        err("info: kvt_options_create: %s", kvt_strerror(rc));
        goto out;
    }
    if ((ret = info_options(r, opts)))
        goto out;
    ret = 1;
    r->opts = opts;
    if ((rc = kvt_engine_open(opts, &eng))) {
        open_failed(r, rc);
        goto out;
    }

    self_check(r, &eng);
    if (eng) {
        size_t n = 0;
        if (kvt_engine_tiers(eng, r->tiers, 4, &n) == 0)
            r->n_tiers = n < 4 ? n : 4;
    }

    if (json)
        print_json(r);
    else
        print_text(r);
    ret = r->passed ? 0 : 1;

out:
    if (eng && (rc = kvt_engine_close(eng))) {
        err("info: kvt_engine_close: %s", kvt_strerror(rc));
        ret = 1;
    }
    kvt_options_destroy(opts);
    free(r);
    return ret;
}

/* ---------------------------------------------------------------- main */

/* `serve` and `analyze` live in their modules (server/, analytics/), linked in when CMake
 * builds them (KVT_HAVE_SERVER, KVT_HAVE_ANALYTICS). Each takes argv[0] = its name and
 * prints its own --help. */
#ifdef KVT_HAVE_SERVER
#include "server/server.h"
#define SERVE_MAIN server_main
#else
#define SERVE_MAIN NULL
#endif
#ifdef KVT_HAVE_ANALYTICS
#include "analytics/analyze.h"
#define ANALYZE_MAIN analyze_main
#else
#define ANALYZE_MAIN NULL
#endif

typedef struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* NULL: not built into this program */
    void (*usage)(FILE *f);            /* NULL: `run` prints its own help for --help */
} command;

static int cmd_help(int argc, char **argv);

static const command commands[] = {
    {"info", "open the engine, print its configuration and run a self-check", cmd_info,
     usage_info},
    {"serve", "the prompt-caching service (many workers share one cache)", SERVE_MAIN, NULL},
    {"analyze", "replay a request trace: hit rates, bytes moved, cost per tier setup",
     ANALYZE_MAIN, NULL},
    {"probe", "measure each tier's read/write bandwidth and the host-GPU link; drain times",
     probe_main, NULL},
    {"version", "print the library version, git commit and whether CUDA is built in",
     cmd_version, usage_version},
    {"help", "print this help, or `kvtier help <command>` for a command's help", cmd_help,
     usage_main},
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

static void usage_main(FILE *f)
{
    int missing = 0;
    fprintf(f, "kvtier — tiered KV-cache storage engine for LLM inference\n\n"
               "usage: kvtier <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (commands[i].run)
            fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
        else
            missing = 1;
    }
    if (missing) {
        fprintf(f, "\nnot built into this program (see README.md, Status):");
        for (size_t i = 0; i < N_COMMANDS; i++)
            if (!commands[i].run)
                fprintf(f, " %s", commands[i].name);
        fprintf(f, "\n");
    }
    fprintf(f, "\nEvery command takes --help. Exit status: 0 ok, 1 failure, 2 usage error.\n");
}

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

/* The command's names, for error messages: "info, serve, version, help". */
static const char *command_list(void)
{
    static char buf[128];
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (commands[i].run && n < sizeof buf)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? ", " : "",
                                  commands[i].name);
    return buf;
}

static int not_built(const command *c)
{
    err("'%s' is not built into this program: CMake left it out (serve: -DKVT_SERVER=ON, needs "
        "libmicrohttpd and libinih; analyze: -DKVT_ANALYTICS=ON, needs jansson; bash "
        "scripts/start installs them). Commands: %s", c->name, command_list());
    return EXIT_USAGE;
}

static int cmd_help(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage_main(stdout);
        return 0;
    }
    const command *c = find_command(argv[1]);
    if (!c) {
        err("help: unknown command '%s' (commands: %s)", argv[1], command_list());
        return EXIT_USAGE;
    }
    if (!c->run)
        return not_built(c);
    if (c->usage) {
        c->usage(stdout);
        return 0;
    }
    char help_flag[] = "--help";
    char *help_argv[] = {argv[1], help_flag, NULL};
    return c->run(2, help_argv);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage_main(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))
        return cmd_version(1, argv + 1);
    const command *c = find_command(argv[1]);
    if (c)
        return c->run ? c->run(argc - 1, argv + 1) : not_built(c);
    if (argv[1][0] == '-')
        err("unknown option '%s'; options go after the command (try: kvtier --help)", argv[1]);
    else
        err("unknown command '%s' (commands: %s; try: kvtier --help)", argv[1], command_list());
    return EXIT_USAGE;
}
