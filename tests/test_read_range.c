// ctest: labels=unit timeout=120
/*
 * test_read_range — kvt_read_range (a byte range of one leased block), the DRAM prefault
 * option, and a single put larger than the DRAM tier.
 *
 *  1. read_range, DRAM: every (offset, len) in a grid of odd sizes over 3 blocks of a
 *     prompt, block size not a multiple of the 4 KiB slot (2 slots per block), compared with
 *     the bytes put; len 0; the error cases (-EINVAL, -ERANGE, KVT_ESIZE). Same again on an
 *     engine opened with kvt_options_set_dram_prefault (and its -EINVAL on NULL).
 *     kvt_lease_block_ptr: a fresh tier's blocks are contiguous, the pointer shows the bytes
 *     put; -EINVAL, -ERANGE.
 *  2. read_range, nvme: blocks evicted from DRAM to nvme read back by range (verified read
 *     of the whole block, then the range); kvt_lease_block_ptr refuses them (-ENOENT) and
 *     shows the bytes of every block it does hand out.
 *  3. one put of 3x the DRAM tier's blocks with nvme below: every block stored (regression:
 *     the put failed with -ENOSPC because its own pending blocks could not leave DRAM) and
 *     every byte reads back.
 * Fails if a range read returns other bytes than the range put, if an error case is not
 * reported, or if the oversized put stores less than all of it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define BT 16u

static tu_rng rng;
static char root[512];

int kvt__engine_check(kvt_engine *e, const char **why); /* engine/tiering.c, tests only */

/* kvt_lease_block_ptr of every leased block: the bytes put, or -ENOENT for a block with no
 * DRAM copy. Returns the blocks handed out. */
static size_t check_ptrs(kvt_lease *l, const tu_prompt *p, size_t nb)
{
    size_t out = 0;
    for (size_t b = 0; b < nb; b++) {
        const void *ptr = (const void *)1;
        kvt_tier t = KVT_TIER_DRAM;
        int rc = kvt_lease_block_ptr(l, b, &ptr);
        TU_CHECK_EQ(kvt_lease_block_tier(l, b, &t), 0);
        if (rc == 0) {
            TU_CHECK(ptr && memcmp(ptr, p->data + b * p->bb, p->bb) == 0);
            out++;
        } else {
            TU_CHECK_EQ(rc, -ENOENT);
            TU_CHECK(ptr == NULL);
            TU_CHECK(t != KVT_TIER_DRAM); /* fresh tiers: DRAM copies are contiguous */
        }
    }
    return out;
}

/* Compare every range of a grid over the leased blocks [0, nb) with p's bytes. */
static void check_ranges(kvt_lease *l, const tu_prompt *p, size_t nb)
{
    static const size_t offs[] = {0, 1, 63, 64, 100, 4095, 4096, 4097, 6000};
    static const size_t lens[] = {0, 1, 7, 100, 200, 4096, 5000};
    unsigned char *buf = malloc(p->bb + 1);
    TU_CHECK(buf != NULL);
    for (size_t b = 0; b < nb; b++)
        for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
            for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++) {
                size_t off = offs[i], len = lens[j];
                if (off + len > p->bb) {
                    TU_CHECK_EQ(kvt_read_range(l, b, off, buf, len), KVT_ESIZE);
                    continue;
                }
                memset(buf, 0xa5, p->bb + 1);
                TU_CHECK_EQ(kvt_read_range(l, b, off, buf, len), 0);
                TU_CHECK(memcmp(buf, p->data + b * p->bb + off, len) == 0);
                TU_CHECK_EQ(buf[len], 0xa5); /* nothing past the range */
            }
    free(buf);
}

static void case_dram(int prefault)
{
    /* 6 KiB blocks in 4 KiB slots: a block spans two slots */
    kvt_layout l = tu_layout(1, 1, 1536, KVT_DTYPE_FP16, 1);
    size_t bb = kvt_layout_block_bytes(&l);
    TU_CHECK_EQ(bb, 6144);
    kvt_options *o = tu_dram_options(64ull << 20, 4096);
    TU_CHECK_EQ(kvt_options_set_dram_prefault(NULL, 1), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_dram_prefault(o, prefault), 0);
    kvt_engine *e = tu_open_engine(o, "dram");
    kvt_ns *ns;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, &ns), 0);
    tu_prompt p = {0};
    tu_prompt_gen(&p, &rng, 3, 1, bb);
    size_t st = 0, matched = 0;
    TU_CHECK_EQ(tu_prompt_put(ns, &p, &st), 0);
    TU_CHECK_EQ(st, 3);
    kvt_lease *ls = NULL;
    TU_CHECK_EQ(kvt_match(ns, p.tok, 3, &matched, &ls), 0);
    TU_CHECK_EQ(matched, 3);
    check_ranges(ls, &p, 3);
    TU_CHECK_EQ(check_ptrs(ls, &p, 3), 3);
    const void *ptr;
    TU_CHECK_EQ(kvt_lease_block_ptr(NULL, 0, &ptr), -EINVAL);
    TU_CHECK_EQ(kvt_lease_block_ptr(ls, 0, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_lease_block_ptr(ls, 3, &ptr), -ERANGE);
    unsigned char one;
    TU_CHECK_EQ(kvt_read_range(NULL, 0, 0, &one, 1), -EINVAL);
    TU_CHECK_EQ(kvt_read_range(ls, 0, 0, NULL, 1), -EINVAL);
    TU_CHECK_EQ(kvt_read_range(ls, 0, 0, NULL, 0), 0);
    TU_CHECK_EQ(kvt_read_range(ls, 3, 0, &one, 1), -ERANGE);
    TU_CHECK_EQ(kvt_read_range(ls, 0, bb, &one, 1), KVT_ESIZE);
    TU_CHECK_EQ(kvt_read_range(ls, 0, bb + 1, &one, 0), KVT_ESIZE);
    TU_CHECK_EQ(kvt_read_range(ls, 0, bb, &one, 0), 0);
    kvt_release(ls);
    free(p.tok);
    free(p.data);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
    printf("dram (prefault %d): ranges ok\n", prefault);
}

/* A tiered engine under root/name: DRAM of dram_blocks 16 KiB blocks over a 64-block nvme
 * tier, and its namespace "m" in *ns; *bb the block size. */
static kvt_engine *tier_engine(const char *name, size_t dram_blocks, kvt_ns **ns, size_t *bb)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    kvt_layout l = tu_layout(2, 2, 64, KVT_DTYPE_FP16, BT);
    *bb = kvt_layout_block_bytes(&l);
    tu_tier_cfg c = {.dram_bytes = dram_blocks * *bb, .nvme_bytes = 64 * *bb};
    kvt_engine *e = tu_tier_engine(dir, &c);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "a", &l, 0, ns), 0);
    return e;
}

static void case_nvme(void)
{
    size_t bb;
    kvt_ns *ns;
    kvt_engine *e = tier_engine("nvme", 4, &ns, &bb);
    tu_prompt p[4] = {{0}};
    for (int i = 0; i < 4; i++) {
        size_t st = 0;
        tu_prompt_gen(&p[i], &rng, 3, BT, bb);
        TU_CHECK_EQ(tu_prompt_put(ns, &p[i], &st), 0);
        TU_CHECK_EQ(st, 3);
    }
    TU_CHECK_EQ(kvt_flush(e), 0);
    /* the first prompts' blocks left DRAM for nvme: read them by range */
    int off_dram = 0;
    size_t ptrs = 0;
    for (int i = 0; i < 4; i++) {
        size_t matched = 0;
        kvt_lease *ls = NULL;
        TU_CHECK_EQ(kvt_match(ns, p[i].tok, 3 * BT, &matched, &ls), 0);
        TU_CHECK_EQ(matched, 3 * BT);
        for (size_t b = 0; b < 3; b++) {
            kvt_tier t = KVT_TIER_DRAM;
            TU_CHECK_EQ(kvt_lease_block_tier(ls, b, &t), 0);
            off_dram += t != KVT_TIER_DRAM;
        }
        check_ptrs(ls, &p[i], 3); /* before the range reads promote anything */
        check_ranges(ls, &p[i], 3);
        ptrs += check_ptrs(ls, &p[i], 3); /* promoted copies are handed out, right bytes */
        kvt_release(ls);
    }
    TU_CHECK(off_dram > 0);
    printf("nvme: %d blocks read by range from below DRAM; %zu handed out in place\n", off_dram,
           ptrs);
    for (int i = 0; i < 4; i++) {
        free(p[i].tok);
        free(p[i].data);
    }
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

static void case_big_put(void)
{
    size_t bb;
    kvt_ns *ns;
    kvt_engine *e = tier_engine("big", 8, &ns, &bb);
    tu_prompt p = {0};
    tu_prompt_gen(&p, &rng, 24, BT, bb);
    size_t st = 0;
    TU_CHECK_EQ(tu_prompt_put(ns, &p, &st), 0);
    TU_CHECK_EQ(st, 24);
    const char *why = NULL;
    TU_CHECK_EQ(kvt__engine_check(e, &why), 0);
    int rc;
    TU_CHECK_EQ(tu_prompt_match_read(ns, &p, &rc), 24);
    TU_CHECK_EQ(rc, 0);
    kvt_stats s = tu_stats(e);
    TU_CHECK(s.dram_used <= 8 * bb);
    printf("big put: 24 blocks into an 8-block DRAM tier, nvme %llu\n",
           (unsigned long long)s.tier_blocks[KVT_TIER_NVME]);
    free(p.tok);
    free(p.data);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_read_range", 11));
    tu_fresh_dir(root, sizeof root, "read_range");
    case_dram(0);
    case_dram(1);
    case_nvme();
    case_big_put();
    tu_rm_tree(root);
    printf("ok\n");
    return 0;
}
