// ctest: labels=unit timeout=120
/*
 * test_tier_faults — fault injection on the persistent tiers (issue 3): each fault gives
 * errors or misses and a clear log line (captured with kvt_options_set_log), never a crash
 * or wrong data.
 *
 *  1. disk full: -ENOSPC injected on every write (nvme and disk). The write-through fails
 *     cleanly: kvt_flush reports -ENOSPC, a log line says the blocks stay in DRAM only, DRAM
 *     keeps serving them byte-identical. Once space returns (fault removed) new blocks
 *     persist, kvt_flush returns 0, and they survive a restart.
 *  2. -EIO on reads (nvme, then a disk-only engine): kvt_read returns the error for that
 *     block, never its bytes; a log line names the block; the block is then dropped (a miss)
 *     and the blocks before it still read right.
 *  3. a disk segment truncated between runs: the records past the new end are dropped at
 *     the warm restart (log line, restore_dropped > 0); what still matches reads back
 *     byte-identical.
 *  4. an nvme slot file truncated between runs: every block either reads back identical or
 *     fails (an error and a log line: a miss), never wrong bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"
#include "kvtier/kvtier.h"
#include "testutil.h"

void kvt__engine_set_fault(kvt_engine *e, io_fault_fn fn, void *arg); /* tests only */

#define BT 16u
#define NB 8

static tu_rng rng;
static uint64_t bb;

/* ---------------------------------------------------------------- log capture */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1 << 16];
static size_t log_len;

static void log_hook(void *arg, int level, const char *msg)
{
    (void)arg;
    pthread_mutex_lock(&log_mu);
    int n = snprintf(log_buf + log_len, sizeof log_buf - log_len, "[%d] %s\n", level, msg);
    if (n > 0 && log_len + (size_t)n < sizeof log_buf)
        log_len += (size_t)n;
    pthread_mutex_unlock(&log_mu);
}

static void log_clear(void)
{
    pthread_mutex_lock(&log_mu);
    log_len = 0;
    log_buf[0] = 0;
    pthread_mutex_unlock(&log_mu);
}

static int log_has(const char *s)
{
    pthread_mutex_lock(&log_mu);
    int r = strstr(log_buf, s) != NULL;
    pthread_mutex_unlock(&log_mu);
    return r;
}

static void log_show(const char *what)
{
    pthread_mutex_lock(&log_mu);
    printf("%s: log:\n%s", what, log_buf);
    pthread_mutex_unlock(&log_mu);
}

/* ---------------------------------------------------------------- helpers */

static kvt_layout layout(void) { return tu_layout(2, 2, 64, KVT_DTYPE_FP16, BT); } /* 16 KiB */

static kvt_engine *open_engine(const char *dir, uint64_t nvme, uint64_t disk)
{
    tu_tier_cfg c = {.dram_bytes = 64 * bb, .nvme_bytes = nvme, .disk_bytes = disk};
    kvt_options *o = tu_tier_options(dir, &c);
    TU_CHECK_EQ(kvt_options_set_log(o, log_hook, NULL), 0);
    return tu_open_engine(o, dir);
}

static kvt_ns *ns_of(kvt_engine *e)
{
    kvt_layout l = layout();
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
    return ns;
}

static size_t matched_blocks(kvt_ns *ns, const tu_prompt *p, kvt_lease **l)
{
    size_t m = 0;
    TU_CHECK_EQ(kvt_match(ns, p->tok, p->nb * BT, &m, l), 0);
    return m / BT;
}

/* Read block by block: each is either identical (counted in *ok) or an error (*bad). */
static void read_each(kvt_ns *ns, const tu_prompt *p, size_t *nm, size_t *ok, size_t *bad)
{
    kvt_lease *l = NULL;
    *nm = matched_blocks(ns, p, &l);
    *ok = *bad = 0;
    unsigned char *out = malloc(bb);
    TU_CHECK(out);
    for (size_t i = 0; i < *nm; i++) {
        memset(out, 0xa5, bb);
        int rc = kvt_read_contig(l, i, 1, out, bb);
        if (rc == 0) {
            if (memcmp(out, p->data + i * bb, bb) != 0) {
                fprintf(stderr, "block %zu: wrong bytes served\n", i);
                exit(1);
            }
            (*ok)++;
        } else {
            (*bad)++;
        }
    }
    free(out);
    kvt_release(l);
}

static void put_flush(kvt_engine *e, kvt_ns *ns, const tu_prompt *p, int want)
{
    size_t stored = 0;
    TU_CHECK_EQ(tu_prompt_put(ns, p, &stored), 0);
    TU_CHECK_EQ(kvt_flush(e), want);
}

/* ---------------------------------------------------------------- faults */

static int fault_enospc_writes(void *arg, uint64_t seq, unsigned attempt, const io_req *req,
                               uint32_t *len)
{
    (void)arg, (void)seq, (void)attempt, (void)len;
    return req->op == IO_OP_WRITE ? -ENOSPC : 0;
}

static int fault_eio_reads(void *arg, uint64_t seq, unsigned attempt, const io_req *req,
                           uint32_t *len)
{
    (void)arg, (void)seq, (void)attempt, (void)len;
    return req->op == IO_OP_READ ? -EIO : 0;
}

/* 1. disk full */
static void test_enospc(const char *root)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/enospc", root);
    log_clear();
    kvt_engine *e = open_engine(dir, 256 * bb, 64ull << 20);
    kvt_ns *ns = ns_of(e);
    tu_prompt a = {0}, b = {0};
    tu_prompt_gen(&a, &rng, NB, BT, bb);
    tu_prompt_gen(&b, &rng, NB, BT, bb);
    kvt__engine_set_fault(e, fault_enospc_writes, NULL);
    put_flush(e, ns, &a, -ENOSPC);
    TU_CHECK(log_has("write-through"));
    TU_CHECK(log_has("No space") || log_has("space"));
    kvt_stats s = tu_stats(e);
    TU_CHECK(s.wt_failures >= NB);
    size_t nm, ok, bad;
    read_each(ns, &a, &nm, &ok, &bad); /* DRAM keeps serving */
    TU_CHECK_EQ(nm, NB);
    TU_CHECK_EQ(ok, NB);
    kvt__engine_set_fault(e, NULL, NULL); /* space returns */
    put_flush(e, ns, &b, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    e = open_engine(dir, 256 * bb, 64ull << 20);
    ns = ns_of(e);
    read_each(ns, &b, &nm, &ok, &bad);
    TU_CHECK_EQ(nm, NB);
    TU_CHECK_EQ(ok, NB);
    read_each(ns, &a, &nm, &ok, &bad); /* never persisted: a miss, not an error */
    TU_CHECK_EQ(nm, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    log_show("enospc");
    free(a.tok), free(a.data), free(b.tok), free(b.data);
}

/* 2. EIO on reads; nvme != 0: nvme engine, else disk-only */
static void test_eio(const char *root, int nvme)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/eio%d", root, nvme);
    uint64_t nb_ = nvme ? 256 * bb : 0, db = nvme ? 0 : 64ull << 20;
    kvt_engine *e = open_engine(dir, nb_, db);
    kvt_ns *ns = ns_of(e);
    tu_prompt a = {0};
    tu_prompt_gen(&a, &rng, NB, BT, bb);
    put_flush(e, ns, &a, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    log_clear();
    e = open_engine(dir, nb_, db); /* blocks below DRAM only */
    ns = ns_of(e);
    kvt__engine_set_fault(e, fault_eio_reads, NULL);
    kvt_lease *l = NULL;
    TU_CHECK_EQ(matched_blocks(ns, &a, &l), NB);
    unsigned char *out = malloc(NB * bb);
    TU_CHECK(out);
    memset(out, 0, NB * bb);
    int rc = kvt_read_contig(l, 0, NB, out, NB * bb);
    TU_CHECK(rc == -EIO || rc == KVT_ECORRUPT);
    TU_CHECK(memcmp(out, a.data, bb) != 0); /* block 0's bytes never delivered */
    kvt_release(l);
    TU_CHECK(log_has("served as a miss"));
    kvt__engine_set_fault(e, NULL, NULL);
    kvt_stats s = tu_stats(e);
    TU_CHECK(s.io_errors >= 1);
    TU_CHECK_EQ(s.checksum_failures, 0);
    size_t nm, ok, bad;
    read_each(ns, &a, &nm, &ok, &bad); /* the failed block and its descendants: gone */
    TU_CHECK_EQ(nm, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    log_show(nvme ? "eio nvme" : "eio disk");
    free(out);
    free(a.tok), free(a.data);
}

static void truncate_file(const char *path, double frac)
{
    struct stat st;
    TU_CHECK(stat(path, &st) == 0);
    off_t to = (off_t)((double)st.st_size * frac) & ~(off_t)4095;
    TU_CHECK(truncate(path, to) == 0);
    printf("truncated %s: %lld -> %lld bytes\n", path, (long long)st.st_size, (long long)to);
}

/* 3. disk segment truncated between runs */
static void test_trunc_disk(const char *root)
{
    char dir[600], seg[700];
    snprintf(dir, sizeof dir, "%s/trdisk", root);
    kvt_engine *e = open_engine(dir, 0, 64ull << 20);
    kvt_ns *ns = ns_of(e);
    tu_prompt a = {0};
    tu_prompt_gen(&a, &rng, NB, BT, bb);
    put_flush(e, ns, &a, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    snprintf(seg, sizeof seg, "%s/disk/seg.00000000", dir);
    truncate_file(seg, 0.5);
    log_clear();
    e = open_engine(dir, 0, 64ull << 20);
    ns = ns_of(e);
    kvt_stats s = tu_stats(e);
    TU_CHECK(s.restore_dropped > 0);
    TU_CHECK(log_has("warm restart"));
    size_t nm, ok, bad;
    read_each(ns, &a, &nm, &ok, &bad);
    printf("disk segment truncated: %zu of %d blocks restored, %zu read back, %zu errors, "
           "%llu records dropped\n", nm, NB, ok, bad, (unsigned long long)s.restore_dropped);
    TU_CHECK(nm < NB);
    TU_CHECK(nm >= 1);
    TU_CHECK_EQ(ok, nm);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    log_show("truncated segment");
    free(a.tok), free(a.data);
}

/* 4. nvme slot file truncated between runs */
static void test_trunc_nvme(const char *root)
{
    char dir[600], f[700];
    snprintf(dir, sizeof dir, "%s/trnvme", root);
    kvt_engine *e = open_engine(dir, 256 * bb, 0);
    kvt_ns *ns = ns_of(e);
    tu_prompt a = {0};
    tu_prompt_gen(&a, &rng, NB, BT, bb);
    put_flush(e, ns, &a, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    snprintf(f, sizeof f, "%s/nvme/slots.000000", dir);
    truncate_file(f, 0.0);
    log_clear();
    kvt_options *o = NULL;
    (void)o;
    tu_tier_cfg c = {.dram_bytes = 64 * bb, .nvme_bytes = 256 * bb};
    kvt_options *opt = tu_tier_options(dir, &c);
    TU_CHECK_EQ(kvt_options_set_log(opt, log_hook, NULL), 0);
    int rc = kvt_engine_open(opt, &e);
    kvt_options_destroy(opt);
    if (rc != 0) { /* refusing to open is also clean: an error and a log line */
        printf("nvme slot file truncated: open refused: %s\n", kvt_strerror(rc));
        TU_CHECK(log_len > 0);
        log_show("truncated nvme");
        free(a.tok), free(a.data);
        return;
    }
    ns = ns_of(e);
    size_t nm, ok, bad;
    read_each(ns, &a, &nm, &ok, &bad);
    kvt_stats s = tu_stats(e);
    printf("nvme slot file truncated: %zu of %d blocks matched, %zu read back, %zu errors "
           "(misses), %llu checksum failures, %llu io errors, %llu records dropped\n",
           nm, NB, ok, bad, (unsigned long long)s.checksum_failures,
           (unsigned long long)s.io_errors, (unsigned long long)s.restore_dropped);
    TU_CHECK_EQ(ok, 0); /* the bytes are gone: none may be served */
    TU_CHECK(bad == 0 || log_has("served as a miss"));
    TU_CHECK(nm == 0 || bad > 0);
    /* the failed blocks are dropped: the prompt is a miss now, and can be stored again */
    read_each(ns, &a, &nm, &ok, &bad);
    TU_CHECK_EQ(nm, 0);
    put_flush(e, ns, &a, 0);
    read_each(ns, &a, &nm, &ok, &bad);
    TU_CHECK_EQ(ok, NB);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    log_show("truncated nvme");
    free(a.tok), free(a.data);
}

int main(void)
{
    kvt_layout l = layout();
    bb = kvt_layout_block_bytes(&l);
    tu_rng_init(&rng, tu_seed("test_tier_faults", 5));
    char root[512];
    tu_fresh_dir(root, sizeof root, "tier_faults");
    test_enospc(root);
    test_eio(root, 1);
    test_eio(root, 0);
    test_trunc_disk(root);
    test_trunc_nvme(root);
    tu_rm_tree(root);
    printf("ok\n");
    return 0;
}
