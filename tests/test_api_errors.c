// ctest: labels=unit timeout=120
/*
 * test_api_errors — every error the public header documents, and that the engine stays
 * usable after each one.
 *
 * Layout used: layers 2, kv_heads 2, head_dim 8, fp16, block_tokens 4
 *   -> 2 * 2 * 4 * 2 * 8 * 2 = 512 bytes per block.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

#define BT 4u
#define BB 512u

static tu_rng rng;

static kvt_layout small_layout(void) { return tu_layout(2, 2, 8, KVT_DTYPE_FP16, BT); }

static kvt_engine *open_engine(uint64_t blocks) { return tu_dram_engine(blocks * BB, BB); }

/* ---------------------------------------------------------------- strerror, version */

static void test_strerror(void)
{
    const int codes[] = {0,          -EINVAL,    -ENOMEM,   -ENOSPC,       -EBUSY,
                         -ERANGE,    -ENODATA,   KVT_ESIZE, KVT_EBADLAYOUT, KVT_EMODE,
                         KVT_ENAME,  KVT_ELEASES};
    const size_t n = sizeof codes / sizeof codes[0];
    const char *unknown = "unknown kvtier status";
    for (size_t i = 0; i < n; i++) {
        const char *s = kvt_strerror(codes[i]);
        TU_CHECK(s != NULL);
        TU_CHECK(s[0] != '\0');
        TU_CHECK(strcmp(s, unknown) != 0);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(s, kvt_strerror(codes[j])) == 0) {
                fprintf(stderr, "kvt_strerror(%d) == kvt_strerror(%d) == \"%s\"\n", codes[i],
                        codes[j], s);
                exit(1);
            }
        }
    }
    /* Codes in and next to the reserved range that no function returns. */
    const int unknowns[] = {KVT_ERR_LAST - 1, KVT_ERR_BASE + 1, INT_MIN};
    for (size_t i = 0; i < sizeof unknowns / sizeof unknowns[0]; i++) {
        const char *s = kvt_strerror(unknowns[i]);
        TU_CHECK(s != NULL);
        if (strcmp(s, unknown) != 0) {
            fprintf(stderr, "kvt_strerror(%d) = \"%s\", want \"%s\"\n", unknowns[i], s, unknown);
            exit(1);
        }
    }
    /* Anything at all gets a non-NULL string. */
    const int odd[] = {1, 12345, INT_MAX, -100000, -EIO, INT_MIN + 1};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
        TU_CHECK(kvt_strerror(odd[i]) != NULL);

    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", KVT_VERSION_MAJOR, KVT_VERSION_MINOR,
             KVT_VERSION_PATCH);
    TU_CHECK(kvt_version() != NULL);
    TU_CHECK(strcmp(kvt_version(), want) == 0);
}

/* ---------------------------------------------------------------- layouts */

static void test_layout_bytes(void)
{
    kvt_layout l = small_layout();
    TU_CHECK_EQ(kvt_layout_block_bytes(&l), 512);
    TU_CHECK_EQ(kvt_layout_block_bytes(NULL), 0);

    /* Llama-3-8B, bf16, 16 tokens: 32*2*16*8*128*2 = 2 MiB. */
    kvt_layout ll = {.layers = 32, .kv_heads = 8, .head_dim = 128, .dtype = KVT_DTYPE_BF16,
                     .block_tokens = 16};
    TU_CHECK_EQ(kvt_layout_block_bytes(&ll), 2u << 20);
    ll.dtype = KVT_DTYPE_FP32;
    TU_CHECK_EQ(kvt_layout_block_bytes(&ll), 4u << 20);
    ll.dtype = KVT_DTYPE_FP8;
    TU_CHECK_EQ(kvt_layout_block_bytes(&ll), 1u << 20);
    ll.dtype = KVT_DTYPE_FP16;
    TU_CHECK_EQ(kvt_layout_block_bytes(&ll), 2u << 20);

    /* Odd (non power of two) sizes in the other fields are fine: 3*2*1*5*7*1 = 210. */
    kvt_layout odd = {.layers = 3, .kv_heads = 5, .head_dim = 7, .dtype = KVT_DTYPE_FP8,
                      .block_tokens = 1};
    TU_CHECK_EQ(kvt_layout_block_bytes(&odd), 210);
    odd.block_tokens = 4096;
    TU_CHECK_EQ(kvt_layout_block_bytes(&odd), 210ull * 4096);

    /* Invalid layouts give 0. */
    kvt_layout bad;
    bad = l; bad.layers = 0;        TU_CHECK_EQ(kvt_layout_block_bytes(&bad), 0);
    bad = l; bad.kv_heads = 0;      TU_CHECK_EQ(kvt_layout_block_bytes(&bad), 0);
    bad = l; bad.head_dim = 0;      TU_CHECK_EQ(kvt_layout_block_bytes(&bad), 0);
    bad = l; bad.block_tokens = 0;  TU_CHECK_EQ(kvt_layout_block_bytes(&bad), 0);
    bad = l; bad.block_tokens = 3;  TU_CHECK_EQ(kvt_layout_block_bytes(&bad), 0);
    bad = l; bad.block_tokens = 12; TU_CHECK_EQ(kvt_layout_block_bytes(&bad), 0);
    bad = l; bad.block_tokens = 4097; TU_CHECK_EQ(kvt_layout_block_bytes(&bad), 0);
    bad = l; bad.block_tokens = 8192; TU_CHECK_EQ(kvt_layout_block_bytes(&bad), 0);
    bad = l; bad.dtype = (kvt_dtype)0; TU_CHECK_EQ(kvt_layout_block_bytes(&bad), 0);
    bad = l; bad.dtype = (kvt_dtype)5; TU_CHECK_EQ(kvt_layout_block_bytes(&bad), 0);

    /* Sizes that do not fit in 4 GiB give 0 — including ones whose product wraps a
     * 32-bit or a 64-bit multiplication to a small value. */
    kvt_layout big = {.layers = 64, .kv_heads = 64, .head_dim = 1024, .dtype = KVT_DTYPE_FP32,
                      .block_tokens = 4096}; /* 2^6*2*2^12*2^6*2^10*4 = 2^37 */
    TU_CHECK_EQ(kvt_layout_block_bytes(&big), 0);
    kvt_layout wrap32 = {.layers = 0x80000001u, .kv_heads = 1, .head_dim = 1,
                         .dtype = KVT_DTYPE_FP8, .block_tokens = 1}; /* 2^32 + 2 */
    TU_CHECK_EQ(kvt_layout_block_bytes(&wrap32), 0);
    kvt_layout wrap64 = {.layers = 0x80000000u, .kv_heads = 0x80000000u, .head_dim = 4,
                         .dtype = KVT_DTYPE_FP8, .block_tokens = 1}; /* 2^65 -> 0 mod 2^64 */
    TU_CHECK_EQ(kvt_layout_block_bytes(&wrap64), 0);
    kvt_layout wrap64b = {.layers = 0x80000000u, .kv_heads = 0x80000000u, .head_dim = 5,
                          .dtype = KVT_DTYPE_FP8, .block_tokens = 1}; /* 5*2^63 wraps */
    TU_CHECK_EQ(kvt_layout_block_bytes(&wrap64b), 0);
    /* 1 GiB fits. */
    kvt_layout gib = {.layers = 1, .kv_heads = 1, .head_dim = 1u << 17, .dtype = KVT_DTYPE_FP8,
                      .block_tokens = 4096}; /* 2 * 4096 * 2^17 = 2^30 */
    TU_CHECK_EQ(kvt_layout_block_bytes(&gib), 1ull << 30);
}

/* ---------------------------------------------------------------- options */

static void test_options(void)
{
    kvt_options *o = NULL;
    TU_CHECK_EQ(kvt_options_create(NULL), -EINVAL);
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK(o != NULL);

    TU_CHECK_EQ(kvt_options_set_dram_bytes(NULL, 1 << 20), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, 0), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, 1 << 20), 0);

    TU_CHECK_EQ(kvt_options_set_dram_slot_bytes(NULL, 512), -EINVAL);
    const uint64_t bad_slots[] = {1, 32, 63, 65, 100, 96 + 1, 1000, (1ull << 30) + 64, 2ull << 30,
                                  UINT64_MAX, UINT64_MAX - 63};
    for (size_t i = 0; i < sizeof bad_slots / sizeof bad_slots[0]; i++) {
        int rc = kvt_options_set_dram_slot_bytes(o, bad_slots[i]);
        if (rc != -EINVAL) {
            fprintf(stderr, "set_dram_slot_bytes(%llu) = %d, want -EINVAL\n",
                    (unsigned long long)bad_slots[i], rc);
            exit(1);
        }
    }
    const uint64_t good_slots[] = {0, 64, 128, 192, 512, 1ull << 30};
    for (size_t i = 0; i < sizeof good_slots / sizeof good_slots[0]; i++)
        TU_CHECK_EQ(kvt_options_set_dram_slot_bytes(o, good_slots[i]), 0);

    TU_CHECK_EQ(kvt_options_set_hugepages(NULL, KVT_HUGEPAGES_OFF), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, (kvt_hugepages)3), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, (kvt_hugepages)-1), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, KVT_HUGEPAGES_AUTO), 0);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, KVT_HUGEPAGES_ON), 0);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, KVT_HUGEPAGES_OFF), 0);

    TU_CHECK_EQ(kvt_options_set_cuda_pin(NULL, 1), -EINVAL);
    TU_CHECK_EQ(kvt_options_set_cuda_pin(o, 0), 0);
    TU_CHECK_EQ(kvt_options_set_cuda_pin(o, 1), 0);

    kvt_options_destroy(o);
    kvt_options_destroy(NULL);

    /* Options are not retained: destroy them before using the engine. */
    kvt_engine *e = open_engine(8);
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.dram_capacity, 8 * BB);
    TU_CHECK_EQ(s.dram_used, 0);
    TU_CHECK_EQ(s.dram_hugepages, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    /* Capacity is rounded down to whole slots. */
    e = tu_dram_engine(8 * BB + BB - 1, BB);
    TU_CHECK_EQ(tu_stats(e).dram_capacity, 8 * BB);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* ---------------------------------------------------------------- engine */

static void test_engine_args(void)
{
    kvt_options *o = NULL;
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, KVT_HUGEPAGES_OFF), 0);
    TU_CHECK_EQ(kvt_engine_open(o, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_engine_open(NULL, NULL), -EINVAL);
    kvt_options_destroy(o);

    /* NULL options: the defaults (1 GiB arena, slot size from the first namespace). */
    kvt_engine *e = NULL;
    TU_CHECK_EQ(kvt_engine_open(NULL, &e), 0);
    TU_CHECK(e != NULL);
    kvt_stats s = tu_stats(e);
    TU_CHECK_EQ(s.blocks_cached, 0);
    TU_CHECK_EQ(s.leases_open, 0);
    TU_CHECK_EQ(s.namespaces, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    TU_CHECK_EQ(kvt_engine_close(NULL), -EINVAL);

    /* Hugepages required: an engine on MAP_HUGETLB pages, or -ENOMEM — nothing else. */
    TU_CHECK_EQ(kvt_options_create(&o), 0);
    TU_CHECK_EQ(kvt_options_set_dram_bytes(o, 4u << 20), 0);
    TU_CHECK_EQ(kvt_options_set_hugepages(o, KVT_HUGEPAGES_ON), 0);
    e = NULL;
    int rc = kvt_engine_open(o, &e);
    kvt_options_destroy(o);
    if (rc == 0) {
        TU_CHECK_EQ(tu_stats(e).dram_hugepages, 1);
        TU_CHECK_EQ(kvt_engine_close(e), 0);
    } else {
        TU_CHECK_EQ(rc, -ENOMEM);
    }
    /* Hugepages off: plain pages. */
    e = open_engine(8);
    TU_CHECK_EQ(tu_stats(e).dram_hugepages, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);

    e = open_engine(8);
    kvt_stats st;
    TU_CHECK_EQ(kvt_engine_stats(NULL, &st, sizeof st), -EINVAL);
    TU_CHECK_EQ(kvt_engine_stats(e, NULL, sizeof st), -EINVAL);

    /* A caller compiled against an older, shorter kvt_stats gets only its bytes; a newer,
     * longer one gets sizeof(kvt_stats) and the rest untouched. */
    unsigned char buf[sizeof(kvt_stats) + 64];
    memset(buf, 0xA5, sizeof buf);
    TU_CHECK_EQ(kvt_engine_stats(e, (kvt_stats *)(void *)buf, 16), 0);
    for (size_t i = 16; i < sizeof buf; i++)
        TU_CHECK(buf[i] == 0xA5);
    memset(buf, 0xA5, sizeof buf);
    TU_CHECK_EQ(kvt_engine_stats(e, (kvt_stats *)(void *)buf, sizeof buf), 0);
    for (size_t i = sizeof(kvt_stats); i < sizeof buf; i++)
        TU_CHECK(buf[i] == 0xA5);
    kvt_stats full = tu_stats(e);
    TU_CHECK(memcmp(buf, &full, sizeof full) == 0);

    /* Quotas: argument and name checks. */
    char name255[KVT_NAME_MAX + 1], name256[KVT_NAME_MAX + 2];
    memset(name255, 'q', KVT_NAME_MAX);
    name255[KVT_NAME_MAX] = 0;
    memset(name256, 'q', KVT_NAME_MAX + 1);
    name256[KVT_NAME_MAX + 1] = 0;
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(NULL, "t", 4096), -EINVAL);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, NULL, 4096), -EINVAL);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "", 4096), KVT_ENAME);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, name256, 4096), KVT_ENAME);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, name255, 4096), 0);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, name255, 0), 0);
    TU_CHECK_EQ(kvt_tenant_set_dram_quota(e, "t", 4096), 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* ---------------------------------------------------------------- namespaces */

static void test_ns_open(void)
{
    kvt_engine *e = open_engine(8);
    kvt_layout l = small_layout();
    kvt_ns *ns = NULL, *ns2 = NULL;

    TU_CHECK_EQ(kvt_ns_open(NULL, "m", "t", &l, 0, &ns), -EINVAL);
    TU_CHECK_EQ(kvt_ns_open(e, NULL, "t", &l, 0, &ns), -EINVAL);
    TU_CHECK_EQ(kvt_ns_open(e, "m", NULL, &l, 0, &ns), -EINVAL);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", NULL, 0, &ns), -EINVAL);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0x2u, &ns), -EINVAL);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0x80000000u, &ns), -EINVAL);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, KVT_NS_KEYS | 0x4u, &ns), -EINVAL);

    char name255[KVT_NAME_MAX + 1], name256[KVT_NAME_MAX + 2];
    memset(name255, 'n', KVT_NAME_MAX);
    name255[KVT_NAME_MAX] = 0;
    memset(name256, 'n', KVT_NAME_MAX + 1);
    name256[KVT_NAME_MAX + 1] = 0;
    TU_CHECK_EQ(kvt_ns_open(e, "", "t", &l, 0, &ns), KVT_ENAME);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "", &l, 0, &ns), KVT_ENAME);
    TU_CHECK_EQ(kvt_ns_open(e, name256, "t", &l, 0, &ns), KVT_ENAME);
    TU_CHECK_EQ(kvt_ns_open(e, "m", name256, &l, 0, &ns), KVT_ENAME);
    TU_CHECK_EQ(tu_stats(e).namespaces, 0);

    /* Invalid layouts. */
    kvt_layout bad;
    kvt_layout bads[10];
    int nb = 0;
    bad = l; bad.layers = 0;          bads[nb++] = bad;
    bad = l; bad.kv_heads = 0;        bads[nb++] = bad;
    bad = l; bad.head_dim = 0;        bads[nb++] = bad;
    bad = l; bad.block_tokens = 0;    bads[nb++] = bad;
    bad = l; bad.block_tokens = 3;    bads[nb++] = bad;
    bad = l; bad.block_tokens = 6;    bads[nb++] = bad;
    bad = l; bad.block_tokens = 8192; bads[nb++] = bad;
    bad = l; bad.block_tokens = 4097; bads[nb++] = bad;
    bad = l; bad.dtype = (kvt_dtype)0; bads[nb++] = bad;
    bad = l; bad.dtype = (kvt_dtype)9; bads[nb++] = bad;
    for (int i = 0; i < nb; i++) {
        int rc = kvt_ns_open(e, "bad", "t", &bads[i], 0, &ns);
        if (rc != KVT_EBADLAYOUT) {
            fprintf(stderr, "ns_open with bad layout #%d = %d, want KVT_EBADLAYOUT\n", i, rc);
            exit(1);
        }
        rc = kvt_ns_open(e, "badk", "t", &bads[i], KVT_NS_KEYS, &ns);
        if (rc != KVT_EBADLAYOUT) {
            fprintf(stderr, "ns_open(keys) with bad layout #%d = %d, want KVT_EBADLAYOUT\n", i,
                    rc);
            exit(1);
        }
    }
    TU_CHECK_EQ(tu_stats(e).namespaces, 0);

    /* Open, reopen: same handle. Longest names work. */
    ns = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
    TU_CHECK(ns != NULL);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns2), 0);
    TU_CHECK(ns2 == ns);
    kvt_layout lcopy = l; /* a different object with equal contents */
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &lcopy, 0, &ns2), 0);
    TU_CHECK(ns2 == ns);
    TU_CHECK_EQ(tu_stats(e).namespaces, 1);

    /* The same namespace with another layout or flags. */
    kvt_layout other = l;
    other.head_dim = 16;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &other, 0, &ns2), KVT_EBADLAYOUT);
    other = l;
    other.dtype = KVT_DTYPE_BF16; /* same size, another dtype: still another layout */
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &other, 0, &ns2), KVT_EBADLAYOUT);
    other = l;
    other.block_tokens = 8;
    other.layers = 1; /* same block bytes, another shape */
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &other, 0, &ns2), KVT_EBADLAYOUT);
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, KVT_NS_KEYS, &ns2), KVT_EBADLAYOUT);
    TU_CHECK_EQ(tu_stats(e).namespaces, 1);

    kvt_ns *nk = NULL, *nk2 = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "k", "t", &l, KVT_NS_KEYS, &nk), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "k", "t", &l, KVT_NS_KEYS, &nk2), 0);
    TU_CHECK(nk2 == nk && nk != ns);
    TU_CHECK_EQ(kvt_ns_open(e, "k", "t", &l, 0, &nk2), KVT_EBADLAYOUT);

    kvt_ns *nl = NULL, *nl2 = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, name255, name255, &l, 0, &nl), 0);
    TU_CHECK_EQ(kvt_ns_open(e, name255, name255, &l, 0, &nl2), 0);
    TU_CHECK(nl == nl2 && nl != ns && nl != nk);

    /* (name, tenant) pairs that concatenate to the same string are different namespaces:
     * a different layout for the second one must be accepted. */
    kvt_ns *c1 = NULL, *c2 = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "ab", "c", &l, 0, &c1), 0);
    kvt_layout l2 = l;
    l2.head_dim = 16;
    TU_CHECK_EQ(kvt_ns_open(e, "a", "bc", &l2, 0, &c2), 0);
    TU_CHECK(c1 != c2);
    /* Name and tenant are not interchangeable either. */
    kvt_ns *s1 = NULL, *s2 = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "x", "y", &l, 0, &s1), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "y", "x", &l2, 0, &s2), 0);
    TU_CHECK(s1 != s2);
    TU_CHECK_EQ(tu_stats(e).namespaces, 7);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

/* ---------------------------------------------------------------- calls on a namespace */

static void test_ns_calls(void)
{
    kvt_engine *e = open_engine(8);
    kvt_layout l = small_layout();
    kvt_ns *ns = NULL, *nk = NULL;
    TU_CHECK_EQ(kvt_ns_open(e, "m", "t", &l, 0, &ns), 0);
    TU_CHECK_EQ(kvt_ns_open(e, "k", "t", &l, KVT_NS_KEYS, &nk), 0);

    uint32_t tok[4 * BT];
    tu_fill_tokens(&rng, tok, 4 * BT);
    uint64_t keys[4] = {11, 22, 33, 44};
    static unsigned char data[4][BB];
    tu_fill(&rng, data, sizeof data);
    const void *blocks[4] = {data[0], data[1], data[2], data[3]};
    size_t matched = 99, stored = 99;
    kvt_lease *lease = (kvt_lease *)(uintptr_t)1;
    uint64_t kout[4];

    /* kvt_block_keys */
    TU_CHECK_EQ(kvt_block_keys(NULL, tok, 4 * BT, kout), -EINVAL);
    TU_CHECK_EQ(kvt_block_keys(ns, NULL, 4 * BT, kout), -EINVAL);
    TU_CHECK_EQ(kvt_block_keys(ns, tok, 4 * BT, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_block_keys(nk, tok, 4 * BT, kout), KVT_EMODE);
    TU_CHECK_EQ(kvt_block_keys(ns, tok, 4 * BT, kout), 0);

    /* kvt_match / kvt_match_keys */
    TU_CHECK_EQ(kvt_match(NULL, tok, 4 * BT, &matched, &lease), -EINVAL);
    TU_CHECK_EQ(kvt_match(ns, NULL, 4 * BT, &matched, &lease), -EINVAL);
    TU_CHECK_EQ(kvt_match(nk, tok, 4 * BT, &matched, &lease), KVT_EMODE);
    TU_CHECK_EQ(kvt_match_keys(NULL, keys, 4, &matched, &lease), -EINVAL);
    TU_CHECK_EQ(kvt_match_keys(nk, NULL, 4, &matched, &lease), -EINVAL);
    TU_CHECK_EQ(kvt_match_keys(ns, keys, 4, &matched, &lease), KVT_EMODE);
    TU_CHECK_EQ(tu_stats(e).leases_open, 0);

    /* Nothing matched: 0, *matched 0, *lease NULL. */
    matched = 99;
    lease = (kvt_lease *)(uintptr_t)1;
    TU_CHECK_EQ(kvt_match(ns, tok, 4 * BT, &matched, &lease), 0);
    TU_CHECK_EQ(matched, 0);
    TU_CHECK(lease == NULL);
    matched = 99;
    lease = (kvt_lease *)(uintptr_t)1;
    TU_CHECK_EQ(kvt_match(ns, tok, 0, &matched, &lease), 0);
    TU_CHECK_EQ(matched, 0);
    TU_CHECK(lease == NULL);
    TU_CHECK_EQ(kvt_match(ns, tok, 4 * BT, NULL, NULL), 0);
    matched = 99;
    lease = (kvt_lease *)(uintptr_t)1;
    TU_CHECK_EQ(kvt_match_keys(nk, keys, 4, &matched, &lease), 0);
    TU_CHECK_EQ(matched, 0);
    TU_CHECK(lease == NULL);

    /* kvt_put / kvt_put_keys */
    TU_CHECK_EQ(kvt_put(NULL, tok, 4 * BT, blocks, &stored), -EINVAL);
    TU_CHECK_EQ(kvt_put(ns, NULL, 4 * BT, blocks, &stored), -EINVAL);
    TU_CHECK_EQ(kvt_put(ns, tok, 4 * BT, NULL, &stored), -EINVAL);
    TU_CHECK_EQ(kvt_put(nk, tok, 4 * BT, blocks, &stored), KVT_EMODE);
    TU_CHECK_EQ(kvt_put_keys(NULL, keys, 4, blocks, &stored), -EINVAL);
    TU_CHECK_EQ(kvt_put_keys(nk, NULL, 4, blocks, &stored), -EINVAL);
    TU_CHECK_EQ(kvt_put_keys(nk, keys, 4, NULL, &stored), -EINVAL);
    TU_CHECK_EQ(kvt_put_keys(ns, keys, 4, blocks, &stored), KVT_EMODE);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, 0);

    /* Fewer tokens than a block: nothing to store, no error. */
    stored = 99;
    TU_CHECK_EQ(kvt_put(ns, tok, BT - 1, blocks, &stored), 0);
    TU_CHECK_EQ(stored, 0);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, 0);

    /* A needed NULL block: -ENODATA, the blocks before it stored, none after. */
    const void *holes[4] = {data[0], data[1], NULL, data[3]};
    stored = 99;
    TU_CHECK_EQ(kvt_put(ns, tok, 4 * BT, holes, &stored), -ENODATA);
    TU_CHECK_EQ(stored, 2);
    TU_CHECK_EQ(kvt_match(ns, tok, 4 * BT, &matched, NULL), 0);
    TU_CHECK_EQ(matched, 2 * BT);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, 2);
    /* NULL for the cached blocks is fine; the rest is stored. */
    const void *tail[4] = {NULL, NULL, data[2], data[3]};
    stored = 99;
    TU_CHECK_EQ(kvt_put(ns, tok, 4 * BT, tail, &stored), 0);
    TU_CHECK_EQ(stored, 2);
    TU_CHECK_EQ(kvt_match(ns, tok, 4 * BT, &matched, NULL), 0);
    TU_CHECK_EQ(matched, 4 * BT);
    /* Everything cached: all-NULL blocks are fine, stored NULL allowed. */
    const void *none[4] = {NULL, NULL, NULL, NULL};
    TU_CHECK_EQ(kvt_put(ns, tok, 4 * BT, none, NULL), 0);
    /* A NULL first block of an uncached sequence. */
    uint32_t tok2[2 * BT];
    tu_fill_tokens(&rng, tok2, 2 * BT);
    stored = 99;
    TU_CHECK_EQ(kvt_put(ns, tok2, 2 * BT, none, &stored), -ENODATA);
    TU_CHECK_EQ(stored, 0);
    TU_CHECK_EQ(kvt_match(ns, tok2, 2 * BT, &matched, NULL), 0);
    TU_CHECK_EQ(matched, 0);
    /* Same for keys. */
    const void *kholes[4] = {data[0], NULL, data[2], data[3]};
    stored = 99;
    TU_CHECK_EQ(kvt_put_keys(nk, keys, 4, kholes, &stored), -ENODATA);
    TU_CHECK_EQ(stored, 1);
    TU_CHECK_EQ(kvt_match_keys(nk, keys, 4, &matched, NULL), 0);
    TU_CHECK_EQ(matched, 1);
    TU_CHECK_EQ(tu_stats(e).blocks_cached, 5);

    /* Leases. */
    TU_CHECK_EQ(kvt_lease_blocks(NULL), 0);
    TU_CHECK_EQ(kvt_lease_tokens(NULL), 0);
    TU_CHECK_EQ(kvt_lease_block_key(NULL, 0, kout), -EINVAL);
    kvt_release(NULL);

    lease = NULL;
    TU_CHECK_EQ(kvt_match(ns, tok, 4 * BT, &matched, &lease), 0);
    TU_CHECK(lease != NULL);
    TU_CHECK_EQ(matched, 4 * BT);
    TU_CHECK_EQ(kvt_lease_blocks(lease), 4);
    TU_CHECK_EQ(kvt_lease_tokens(lease), 4 * BT);
    TU_CHECK_EQ(kvt_lease_block_key(lease, 0, NULL), -EINVAL);
    TU_CHECK_EQ(kvt_lease_block_key(lease, 4, kout), -ERANGE);
    TU_CHECK_EQ(kvt_lease_block_key(lease, SIZE_MAX, kout), -ERANGE);
    TU_CHECK_EQ(kvt_lease_block_key(lease, 3, kout), 0);

    /* kvt_read */
    static unsigned char out[4][BB];
    void *dst[4] = {out[0], out[1], out[2], out[3]};
    TU_CHECK_EQ(kvt_read(NULL, 0, 1, dst), -EINVAL);
    TU_CHECK_EQ(kvt_read(lease, 0, 1, NULL), -EINVAL);
    void *dnull[4] = {out[0], NULL, out[2], out[3]};
    TU_CHECK_EQ(kvt_read(lease, 0, 4, dnull), -EINVAL);
    void *dnull0[1] = {NULL};
    TU_CHECK_EQ(kvt_read(lease, 3, 1, dnull0), -EINVAL);
    TU_CHECK_EQ(kvt_read(lease, 0, 5, dst), -ERANGE);
    TU_CHECK_EQ(kvt_read(lease, 4, 1, dst), -ERANGE);
    TU_CHECK_EQ(kvt_read(lease, 3, 2, dst), -ERANGE);
    TU_CHECK_EQ(kvt_read(lease, SIZE_MAX, 2, dst), -ERANGE); /* first + n wraps */
    TU_CHECK_EQ(kvt_read(lease, 2, SIZE_MAX, dst), -ERANGE);
    TU_CHECK_EQ(kvt_read(lease, 0, 4, dst), 0);
    for (int i = 0; i < 4; i++)
        TU_CHECK(memcmp(out[i], data[i], BB) == 0);

    /* kvt_read_contig */
    static unsigned char contig[4 * BB + 1];
    TU_CHECK_EQ(kvt_read_contig(NULL, 0, 1, contig, BB), -EINVAL);
    TU_CHECK_EQ(kvt_read_contig(lease, 0, 1, NULL, BB), -EINVAL);
    TU_CHECK_EQ(kvt_read_contig(lease, 0, 2, contig, 2 * BB - 1), KVT_ESIZE);
    TU_CHECK_EQ(kvt_read_contig(lease, 0, 2, contig, 2 * BB + 1), KVT_ESIZE);
    TU_CHECK_EQ(kvt_read_contig(lease, 0, 2, contig, 0), KVT_ESIZE);
    TU_CHECK_EQ(kvt_read_contig(lease, 0, 1, contig, 4 * BB), KVT_ESIZE);
    TU_CHECK_EQ(kvt_read_contig(lease, 0, 5, contig, 5 * BB), -ERANGE);
    TU_CHECK_EQ(kvt_read_contig(lease, 4, 1, contig, BB), -ERANGE);
    TU_CHECK_EQ(kvt_read_contig(lease, 1, 3, contig, 3 * BB), 0);
    for (int i = 0; i < 3; i++)
        TU_CHECK(memcmp(contig + (size_t)i * BB, data[i + 1], BB) == 0);
    TU_CHECK_EQ(tu_stats(e).leases_open, 1);

    /* Close with an open lease: KVT_ELEASES, and the engine keeps working. */
    TU_CHECK_EQ(kvt_engine_close(e), KVT_ELEASES);
    TU_CHECK_EQ(tu_stats(e).leases_open, 1);
    TU_CHECK_EQ(kvt_read(lease, 0, 4, dst), 0);
    for (int i = 0; i < 4; i++)
        TU_CHECK(memcmp(out[i], data[i], BB) == 0);
    kvt_lease *l2 = NULL;
    TU_CHECK_EQ(kvt_match(ns, tok, 4 * BT, &matched, &l2), 0);
    TU_CHECK(l2 != NULL);
    TU_CHECK_EQ(tu_stats(e).leases_open, 2);
    TU_CHECK_EQ(kvt_engine_close(e), KVT_ELEASES);
    kvt_release(lease);
    TU_CHECK_EQ(kvt_engine_close(e), KVT_ELEASES);
    kvt_release(l2);
    stored = 99;
    TU_CHECK_EQ(kvt_put(ns, tok2, 2 * BT, blocks, &stored), 0);
    TU_CHECK_EQ(stored, 2);
    TU_CHECK_EQ(tu_stats(e).leases_open, 0);
    TU_CHECK_EQ(kvt_engine_close(e), 0);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_api_errors", 1));
    test_strerror();
    test_layout_bytes();
    test_options();
    test_engine_args();
    test_ns_open();
    test_ns_calls();
    printf("test_api_errors: ok\n");
    return 0;
}
