// ctest: labels=unit timeout=120
/*
 * test_dram.c — the DRAM tier's slot allocator against a reference model.
 *
 * The model is the truth about which arena slots each live chain owns. The test learns a
 * chain's slots from the arena itself: right after an alloc it writes the whole allocation
 * with a tag {chain uid, segment index} at the start of every slot-sized segment, then scans
 * every slot of the arena (dram_base) for that uid. A correct allocator shows each segment
 * exactly once, segment 0 at the returned head, and only in slots the model holds free.
 * Then it writes random payload and keeps a copy; every live chain's bytes are read back
 * (dram_read, and straight from the arena through the learned slot map) and compared.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tiers/dram.h"
#include "util/util.h"

/* A payload shorter than a tag leaves a tag's tail behind in a slot: the check word (a hash
 * of uid and segment) keeps such a half-overwritten stale tag from passing for a new one. */
typedef struct tag {
    uint64_t uid;
    uint32_t seg;
    uint32_t check;
} tag;

static uint32_t tag_check(uint64_t uid, uint32_t seg)
{
    uint64_t z = uid * 0x9e3779b97f4a7c15ull ^ ((uint64_t)seg << 32 | 0x7a6d6172u);
    z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(z ^ (z >> 29));
}

typedef struct chain {
    uint64_t uid;    /* never reused, so stale tags in freed slots never match */
    uint32_t head;
    uint32_t n_slots;
    uint64_t bytes;  /* payload written, <= n_slots * slot_bytes */
    uint32_t *slots; /* [n_slots], learned from the arena */
    unsigned char *data; /* [bytes], the expected payload */
} chain;

typedef struct model {
    dram_tier *t;
    uint64_t sb;
    uint32_t n;     /* slots */
    int32_t *owner; /* [n]: index into live[], -1 when free */
    chain *live;    /* [n] at most one chain per slot */
    uint32_t n_live;
    uint32_t used;  /* slots held by live chains */
    uint64_t next_uid;
} model;

static unsigned char *slot_ptr(const model *m, uint32_t s)
{
    return (unsigned char *)dram_base(m->t) + (uint64_t)s * m->sb;
}

static void check_accounting(const model *m)
{
    TU_CHECK_EQ(dram_free_slots(m->t), m->n - m->used);
    TU_CHECK_EQ(dram_used(m->t), (uint64_t)m->used * m->sb);
    TU_CHECK_EQ(dram_capacity(m->t), (uint64_t)m->n * m->sb);
}

/* Find the slots of a freshly allocated chain by tagging and scanning; record ownership.
 * Returns the tagged image of the whole allocation (caller frees). */
static unsigned char *learn_slots(model *m, chain *c, uint32_t idx)
{
    uint64_t alloc = (uint64_t)c->n_slots * m->sb;
    unsigned char *buf = malloc(alloc);
    TU_CHECK(buf);
    memset(buf, 0xa5, alloc);
    for (uint32_t j = 0; j < c->n_slots; j++) {
        tag g = {c->uid, j, tag_check(c->uid, j)};
        memcpy(buf + (uint64_t)j * m->sb, &g, sizeof g);
    }
    dram_write(m->t, c->head, buf, alloc); /* the whole allocation is writable */

    for (uint32_t j = 0; j < c->n_slots; j++)
        c->slots[j] = UINT32_MAX;
    for (uint32_t s = 0; s < m->n; s++) {
        tag g;
        memcpy(&g, slot_ptr(m, s), sizeof g);
        if (g.uid != c->uid || g.check != tag_check(g.uid, g.seg))
            continue;
        TU_CHECK(g.seg < c->n_slots);
        TU_CHECK(c->slots[g.seg] == UINT32_MAX); /* each segment in one slot */
        TU_CHECK(m->owner[s] == -1);             /* never a slot of another live chain */
        c->slots[g.seg] = s;
        m->owner[s] = (int32_t)idx;
    }
    for (uint32_t j = 0; j < c->n_slots; j++)
        TU_CHECK(c->slots[j] != UINT32_MAX);
    TU_CHECK_EQ(c->slots[0], c->head);
    return buf;
}

/* Compare a chain's bytes through dram_read and straight from its slots in the arena. */
static void verify_chain(const model *m, const chain *c)
{
    unsigned char *buf = malloc(c->bytes ? c->bytes : 1);
    TU_CHECK(buf);
    memset(buf, 0, c->bytes);
    dram_read(m->t, c->head, buf, c->bytes);
    TU_CHECK(memcmp(buf, c->data, c->bytes) == 0);
    free(buf);
    for (uint64_t off = 0, j = 0; off < c->bytes; off += m->sb, j++) {
        uint64_t k = c->bytes - off < m->sb ? c->bytes - off : m->sb;
        TU_CHECK(memcmp(slot_ptr(m, c->slots[j]), c->data + off, k) == 0);
    }
}

static void drop_chain(model *m, uint32_t idx)
{
    chain *c = &m->live[idx];
    dram_free(m->t, c->head);
    for (uint32_t j = 0; j < c->n_slots; j++)
        m->owner[c->slots[j]] = -1;
    m->used -= c->n_slots;
    free(c->slots);
    free(c->data);
    /* move the last live chain into the hole and renumber its slots */
    if (idx != m->n_live - 1) {
        m->live[idx] = m->live[m->n_live - 1];
        for (uint32_t j = 0; j < m->live[idx].n_slots; j++)
            m->owner[m->live[idx].slots[j]] = (int32_t)idx;
    }
    m->n_live--;
}

/* Random alloc/free/rewrite against the model. Sizes: mostly one slot or less, some
 * multi-slot chains, a few large; byte counts not multiples of anything. */
static void fuzz(tu_rng *r, uint64_t capacity, uint64_t sb, int ops)
{
    model m = {0};
    TU_CHECK_EQ(dram_open(capacity, sb, KVT_HUGEPAGES_OFF, &m.t), 0);
    m.sb = sb;
    m.n = (uint32_t)(capacity / sb);
    m.owner = malloc(m.n * sizeof *m.owner);
    m.live = calloc(m.n, sizeof *m.live);
    TU_CHECK(m.owner && m.live);
    for (uint32_t s = 0; s < m.n; s++)
        m.owner[s] = -1;
    check_accounting(&m);

    int n_enospc = 0, n_multi = 0;
    for (int op = 0; op < ops; op++) {
        uint64_t k = tu_below(r, 100);
        if (k < 55) {
            uint64_t bytes;
            uint64_t shape = tu_below(r, 10);
            if (shape < 5)
                bytes = 1 + tu_below(r, sb); /* one slot */
            else if (shape < 9)
                bytes = 1 + tu_below(r, 4 * sb); /* up to 4 slots */
            else
                bytes = 1 + tu_below(r, (uint64_t)m.n * sb / 4 + 1);
            uint32_t need = (uint32_t)((bytes + sb - 1) / sb);
            TU_CHECK_EQ(dram_slots_for(m.t, bytes), need);
            uint32_t head = 12345;
            int rc = dram_alloc(m.t, bytes, &head);
            if (need > m.n - m.used) {
                TU_CHECK_EQ(rc, -ENOSPC); /* all-or-nothing: nothing taken */
                TU_CHECK_EQ(head, 12345);
                check_accounting(&m);
                n_enospc++;
                continue;
            }
            TU_CHECK_EQ(rc, 0);
            TU_CHECK(head < m.n);
            n_multi += need > 1;
            uint32_t idx = m.n_live++;
            chain *c = &m.live[idx];
            c->uid = ++m.next_uid;
            c->head = head;
            c->n_slots = need;
            c->slots = malloc(need * sizeof *c->slots);
            TU_CHECK(c->slots);
            m.used += need;
            unsigned char *image = learn_slots(&m, c, idx);
            /* payload: the requested bytes, or sometimes fewer (bytes <= the allocation) */
            c->bytes = tu_below(r, 4) ? bytes : tu_below(r, bytes + 1);
            c->data = malloc(c->bytes ? c->bytes : 1);
            TU_CHECK(c->data);
            tu_fill(r, c->data, c->bytes);
            dram_write(m.t, c->head, c->data, c->bytes);
            verify_chain(&m, c);
            /* a short write leaves the rest of the allocation alone */
            for (uint64_t off = c->bytes; off < (uint64_t)need * sb; off++)
                TU_CHECK(slot_ptr(&m, c->slots[off / sb])[off % sb] == image[off]);
            free(image);
        } else if (k < 90) {
            if (!m.n_live)
                continue;
            uint32_t idx = (uint32_t)tu_below(r, m.n_live);
            verify_chain(&m, &m.live[idx]);
            drop_chain(&m, idx);
        } else if (k < 97) {
            if (!m.n_live)
                continue;
            chain *c = &m.live[tu_below(r, m.n_live)];
            tu_fill(r, c->data, c->bytes);
            dram_write(m.t, c->head, c->data, c->bytes);
        } else {
            for (uint32_t i = 0; i < m.n_live; i++)
                verify_chain(&m, &m.live[i]);
        }
        check_accounting(&m);
    }
    for (uint32_t i = 0; i < m.n_live; i++)
        verify_chain(&m, &m.live[i]);
    /* fill to the last slot, then one more must fail */
    while (m.n_live)
        drop_chain(&m, m.n_live - 1);
    check_accounting(&m);
    uint32_t head;
    TU_CHECK_EQ(dram_alloc(m.t, (uint64_t)m.n * sb, &head), 0);
    TU_CHECK_EQ(dram_free_slots(m.t), 0);
    TU_CHECK_EQ(dram_alloc(m.t, 1, &head), -ENOSPC);
    dram_free(m.t, head);
    TU_CHECK_EQ(dram_free_slots(m.t), m.n);

    printf("  fuzz slot=%llu slots=%u ops=%d: %d multi-slot allocs, %d ENOSPC\n",
           (unsigned long long)sb, m.n, ops, n_multi, n_enospc);
    TU_CHECK(n_enospc > 0 && n_multi > 0);
    free(m.owner);
    free(m.live);
    dram_close(m.t);
}

/* A fresh tier hands out ascending contiguous slots; a freed chain comes back in order. */
static void test_order(void)
{
    const uint64_t sb = 256;
    dram_tier *t;
    TU_CHECK_EQ(dram_open(64 * sb, sb, KVT_HUGEPAGES_OFF, &t), 0);
    unsigned char *base = dram_base(t);
    uint32_t h;
    for (uint32_t i = 0; i < 4; i++) {
        TU_CHECK_EQ(dram_alloc(t, sb, &h), 0);
        TU_CHECK_EQ(h, i);
    }
    /* a 5-slot chain on the fresh remainder is slots 4..8: one contiguous run */
    unsigned char buf[5 * 256], back[5 * 256];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + 1);
    TU_CHECK_EQ(dram_alloc(t, sizeof buf, &h), 0);
    TU_CHECK_EQ(h, 4);
    dram_write(t, h, buf, sizeof buf);
    TU_CHECK(memcmp(base + 4 * sb, buf, sizeof buf) == 0);
    dram_free(t, h);
    TU_CHECK_EQ(dram_alloc(t, sizeof buf, &h), 0); /* LIFO: same slots, same order */
    TU_CHECK_EQ(h, 4);
    dram_write(t, h, buf, sizeof buf);
    TU_CHECK(memcmp(base + 4 * sb, buf, sizeof buf) == 0);
    dram_read(t, h, back, sizeof back);
    TU_CHECK(memcmp(back, buf, sizeof buf) == 0);
    dram_close(t);
}

static void test_args(void)
{
    dram_tier *t = (dram_tier *)&t; /* must be cleared on failure */
    TU_CHECK_EQ(dram_open(1 << 20, 64, KVT_HUGEPAGES_OFF, NULL), -EINVAL);
    TU_CHECK_EQ(dram_open(0, 64, KVT_HUGEPAGES_OFF, &t), -EINVAL);
    TU_CHECK(t == NULL);
    TU_CHECK_EQ(dram_open(1 << 20, 63, KVT_HUGEPAGES_OFF, &t), -EINVAL);
    TU_CHECK_EQ(dram_open(1 << 20, 32, KVT_HUGEPAGES_OFF, &t), -EINVAL);
    TU_CHECK_EQ(dram_open(1 << 20, 100, KVT_HUGEPAGES_OFF, &t), -EINVAL);
    TU_CHECK_EQ(dram_open(4ull << 30, (1ull << 30) + 64, KVT_HUGEPAGES_OFF, &t), -EINVAL);
    TU_CHECK_EQ(dram_open(1000, 1024, KVT_HUGEPAGES_OFF, &t), -EINVAL); /* no slot fits */
    TU_CHECK_EQ(dram_open(1 << 20, 64, (kvt_hugepages)7, &t), -EINVAL);
    TU_CHECK_EQ(dram_open(1 << 20, 64, (kvt_hugepages)-1, &t), -EINVAL);

    /* capacity rounds down to whole slots; the mapping rounds up to pages */
    TU_CHECK_EQ(dram_open(10 * 192 + 100, 192, KVT_HUGEPAGES_OFF, &t), 0);
    TU_CHECK_EQ(dram_capacity(t), 10 * 192);
    TU_CHECK_EQ(dram_free_slots(t), 10);
    TU_CHECK(dram_map_bytes(t) >= 10 * 192 + 100 && dram_map_bytes(t) % 4096 == 0);
    TU_CHECK(((uintptr_t)dram_base(t) & 63) == 0);
    TU_CHECK_EQ(dram_hugepages(t), 0);
    uint32_t h = 77;
    TU_CHECK_EQ(dram_alloc(t, 0, &h), -EINVAL);
    TU_CHECK_EQ(dram_alloc(t, 1, NULL), -EINVAL);
    TU_CHECK_EQ(dram_alloc(NULL, 1, &h), -EINVAL);
    TU_CHECK_EQ(dram_alloc(t, 10 * 192 + 1, &h), -ENOSPC); /* 11 slots of 10 */
    TU_CHECK_EQ(dram_alloc(t, UINT64_MAX, &h), -ENOSPC);
    TU_CHECK_EQ(h, 77);
    TU_CHECK_EQ(dram_slots_for(t, UINT64_MAX), UINT32_MAX);
    TU_CHECK_EQ(dram_slots_for(t, 0), 0);
    TU_CHECK_EQ(dram_slots_for(t, 192), 1);
    TU_CHECK_EQ(dram_slots_for(t, 193), 2);
    TU_CHECK_EQ(dram_set_slot_bytes(t, 192), 0); /* same size again: fine */
    TU_CHECK_EQ(dram_set_slot_bytes(t, 256), -EBUSY);
    TU_CHECK_EQ(dram_set_slot_bytes(t, 100), -EINVAL);
    TU_CHECK_EQ(dram_set_slot_bytes(NULL, 192), -EINVAL);
    TU_CHECK_EQ(dram_slot_bytes(t), 192);
    TU_CHECK_EQ(dram_alloc(t, 10 * 192, &h), 0); /* exactly full */
    TU_CHECK_EQ(h, 0);
    TU_CHECK_EQ(dram_used(t), 10 * 192);
    TU_CHECK_EQ(dram_free_slots(t), 0);
    dram_free(t, h);
    dram_close(t);
    dram_close(NULL);
}

/* Slot size fixed after open, once. */
static void test_deferred(void)
{
    dram_tier *t;
    uint32_t h;
    TU_CHECK_EQ(dram_open(1 << 20, 0, KVT_HUGEPAGES_OFF, &t), 0);
    TU_CHECK_EQ(dram_slot_bytes(t), 0);
    TU_CHECK_EQ(dram_capacity(t), 0);
    TU_CHECK_EQ(dram_used(t), 0);
    TU_CHECK_EQ(dram_free_slots(t), 0);
    TU_CHECK_EQ(dram_slots_for(t, 100), 0);
    TU_CHECK(dram_map_bytes(t) >= 1 << 20);
    TU_CHECK_EQ(dram_alloc(t, 100, &h), -EINVAL); /* no slot size yet */
    TU_CHECK_EQ(dram_set_slot_bytes(t, 0), -EINVAL);
    TU_CHECK_EQ(dram_set_slot_bytes(t, 96), -EINVAL);
    TU_CHECK_EQ(dram_set_slot_bytes(t, 2 << 20), -EINVAL); /* fewer than one slot fits */
    TU_CHECK_EQ(dram_slot_bytes(t), 0);
    TU_CHECK_EQ(dram_set_slot_bytes(t, 3 * 64 * 1024), 0);
    TU_CHECK_EQ(dram_slot_bytes(t), 3 * 64 * 1024);
    TU_CHECK_EQ(dram_free_slots(t), 5); /* 1 MiB / 192 KiB */
    TU_CHECK_EQ(dram_capacity(t), 5 * 3 * 64 * 1024);
    TU_CHECK_EQ(dram_set_slot_bytes(t, 64 * 1024), -EBUSY);
    TU_CHECK_EQ(dram_set_slot_bytes(t, 3 * 64 * 1024), 0);
    TU_CHECK_EQ(dram_alloc(t, 2 * 3 * 64 * 1024, &h), 0);
    TU_CHECK_EQ(h, 0);
    TU_CHECK_EQ(dram_free_slots(t), 3);
    dram_free(t, h);
    dram_close(t);
}

static void test_hugepages(void)
{
    const uint64_t cap = 3 << 20; /* not a multiple of 2 MiB */
    dram_tier *t;
    TU_CHECK_EQ(dram_open(cap, 1 << 20, KVT_HUGEPAGES_AUTO, &t), 0);
    int huge = dram_hugepages(t);
    TU_CHECK(huge == 0 || huge == 1 || huge == 2);
    TU_CHECK(dram_map_bytes(t) >= cap);
    if (huge)
        TU_CHECK(dram_map_bytes(t) % (2 << 20) == 0 && (uintptr_t)dram_base(t) % (2 << 20) == 0);
    TU_CHECK_EQ(dram_capacity(t), cap);
    uint32_t h;
    TU_CHECK_EQ(dram_alloc(t, cap, &h), 0); /* every slot is writable */
    memset(dram_base(t), 0x5a, cap);
    dram_free(t, h);
    dram_close(t);
    printf("  AUTO: hugepages=%d (1 MAP_HUGETLB, 2 THP advised, 0 none)\n", huge);

    int rc = dram_open(cap, 1 << 20, KVT_HUGEPAGES_ON, &t);
    TU_CHECK(rc == 0 || rc == -ENOMEM);
    if (rc == 0) {
        TU_CHECK_EQ(dram_hugepages(t), 1);
        TU_CHECK_EQ(dram_map_bytes(t), 4 << 20);
        dram_close(t);
    } else {
        TU_CHECK(t == NULL);
    }
    printf("  ON: %s\n", rc == 0 ? "MAP_HUGETLB" : "-ENOMEM (no hugetlb pages reserved)");
}

/* AnonHugePages (kB) of the mapping that holds p, from /proc/self/smaps; -1 unreadable. */
static long anon_huge_kb(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in = 0;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb;
}

/* Regression (storage helper): O_DIRECT reads into a 2 MiB buffer over scattered 4 KiB pages
 * ran at a third of the speed on the dev VM's disk. With 2 MiB slots every slot must start
 * on a 2 MiB boundary of a huge-page-backed arena (AUTO: hugetlb, else THP). */
static void test_slots_on_huge_pages(void)
{
    const uint64_t slot = 2 << 20, cap = 4 * slot;
    dram_tier *t;
    TU_CHECK_EQ(dram_open(cap, slot, KVT_HUGEPAGES_AUTO, &t), 0);
    int huge = dram_hugepages(t);
    uint32_t h[4];
    for (int i = 0; i < 4; i++) {
        TU_CHECK_EQ(dram_alloc(t, slot, &h[i]), 0);
        const void *p = dram_chain_ptr(t, h[i], slot);
        TU_CHECK(p != NULL);
        if (huge)
            TU_CHECK((uintptr_t)p % slot == 0);
    }
    TU_CHECK_EQ(dram_prefault(t), 0);
    long kb = anon_huge_kb(dram_base(t));
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char thp[128] = "";
    if (f) {
        if (!fgets(thp, sizeof thp, f))
            thp[0] = 0;
        fclose(f);
    }
    /* THP advised and the kernel allows it: the faulted-in arena is on huge pages (the
     * kernel compacts for MADV_HUGEPAGE regions, defrag=madvise, so it should always get
     * some); hugetlb pages do not show as AnonHugePages */
    if (huge == 2 && kb >= 0 && !strstr(thp, "[never]"))
        TU_CHECK(kb >= 2048);
    printf("  2 MiB slots: hugepages=%d, AnonHugePages %ld kB of %llu kB, THP %s", huge, kb,
           (unsigned long long)(cap >> 10), thp[0] ? thp : "?\n");
    for (int i = 0; i < 4; i++)
        dram_free(t, h[i]);
    dram_close(t);
}

/* Number of lines in /proc/self/maps, or -1: an unmapped arena on a failure path shows. */
static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    long n = 0;
    int ch;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

/* Every allocation of dram_open and dram_set_slot_bytes fails in turn: -ENOMEM, nothing
 * leaked (LeakSanitizer under ASan; the mapping count here), and the next try succeeds. */
static void test_oom(void)
{
    long maps0 = count_maps();
    int injected = 0;
    for (long n = 0;; n++) {
        uint64_t f0 = util_alloc_failures();
        dram_tier *t = (dram_tier *)&t;
        util_alloc_fail_after(n);
        int rc = dram_open(1 << 20, 4096, KVT_HUGEPAGES_AUTO, &t);
        util_alloc_fail_after(-1);
        if (util_alloc_failures() == f0) { /* the countdown outlived dram_open */
            TU_CHECK_EQ(rc, 0);
            TU_CHECK_EQ(dram_free_slots(t), 256);
            dram_close(t);
            break;
        }
        TU_CHECK_EQ(rc, -ENOMEM);
        TU_CHECK(t == NULL);
        injected++;
    }
    TU_CHECK(injected >= 3); /* the tier, next[] and free[] */

    for (long n = 0;; n++) {
        dram_tier *t;
        TU_CHECK_EQ(dram_open(1 << 20, 0, KVT_HUGEPAGES_OFF, &t), 0);
        uint64_t f0 = util_alloc_failures();
        util_alloc_fail_after(n);
        int rc = dram_set_slot_bytes(t, 4096);
        util_alloc_fail_after(-1);
        if (util_alloc_failures() == f0) {
            TU_CHECK_EQ(rc, 0);
            dram_close(t);
            break;
        }
        /* an allocation failure leaves the size unset, so the set can be retried */
        TU_CHECK_EQ(rc, -ENOMEM);
        TU_CHECK_EQ(dram_slot_bytes(t), 0);
        TU_CHECK_EQ(dram_free_slots(t), 0);
        TU_CHECK_EQ(dram_set_slot_bytes(t, 4096), 0);
        TU_CHECK_EQ(dram_free_slots(t), 256);
        dram_close(t);
    }
    if (maps0 >= 0)
        TU_CHECK_EQ(count_maps(), maps0);
}

int main(void)
{
    tu_rng r;
    tu_rng_init(&r, tu_seed("test_dram", 20240611));

    test_args();
    test_deferred();
    test_order();
    test_hugepages();
    test_slots_on_huge_pages();
    test_oom();
    fuzz(&r, 64 * 64, 64, 20000);       /* smallest slots, 64 of them */
    fuzz(&r, 300 * 4096 + 17, 4096, 20000);
    fuzz(&r, 1000 * 192, 192, 10000);   /* odd slot size */
    fuzz(&r, 7 * (1 << 16), 1 << 16, 3000);
    printf("test_dram: ok\n");
    return 0;
}
