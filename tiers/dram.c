/*
 * dram.c — see dram.h.
 *
 * Side tables (allocated once the slot size is known; n = n_slots):
 *
 *   next[n]   next[s] = the slot after s in its chain, DRAM_END at a chain's tail,
 *             DRAM_FREE while s is on the free stack (lets asserts catch double frees and
 *             use of a freed chain; a slot number is therefore < DRAM_FREE)
 *   free[n]   free[0 .. n_free) is the free stack, free[n_free - 1] its top
 *   wr[n]     bytes at the start of slot s that may be non-zero (all beyond are zero): 0 for
 *             a fresh mapping. A short block (dram_write_pad of a value smaller than its
 *             slot) zeroes only [its length, wr[s]) instead of the whole rest of the slot,
 *             so a small value overwritten in place (its slot comes back from the LIFO free
 *             stack) costs a copy of its own bytes. Every write into a slot raises wr.
 *
 * Slot order: a fresh tier's stack is n-1 ... 1 0 (0 on top), and alloc pops a chain's slots
 * head first, so a fresh tier hands out 0, 1, 2, ... in ascending contiguous runs (one DMA
 * descriptor per run later). Free pushes a chain back tail first, so the head is on top again
 * and a same-sized alloc right after gets the same slots in the same order (LIFO keeps the
 * recently touched, cache- and TLB-warm slots in use).
 */
#include "dram.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__x86_64__) && defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "util/util.h"

#define DRAM_FREE (UINT32_MAX - 1)
#define DRAM_HUGE (2ull << 20)       /* the 2 MiB page of MAP_HUGETLB and THP */
#define DRAM_SLOT_MAX (1ull << 30)   /* largest slot, bytes */

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif

struct dram_tier {
    unsigned char *base; /* [map_bytes], slot s at base + s * slot_bytes */
    uint64_t map_bytes;
    uint64_t capacity;   /* as asked for at open, bytes; whole slots are carved from it */
    uint64_t slot_bytes; /* 0 until set */
    uint32_t n_slots;
    uint32_t n_free;
    uint32_t *next; /* [n_slots] */
    uint32_t *free; /* [n_slots] */
    uint32_t *wr;   /* [n_slots] */
    int huge;       /* 1 MAP_HUGETLB, 2 THP advised, 0 none */
};

static int slot_bytes_valid(uint64_t sb)
{
    return sb >= 64 && sb <= DRAM_SLOT_MAX && sb % 64 == 0;
}

static uint64_t round_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/*
 * Anonymous mapping of len bytes (a multiple of 2 MiB) whose start is 2 MiB aligned, so that
 * THP can back every 2 MiB extent of it: map 2 MiB more and cut off the unaligned ends.
 */
static void *map_aligned(uint64_t len)
{
    unsigned char *raw = mmap(NULL, len + DRAM_HUGE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + DRAM_HUGE - 1) & ~(uintptr_t)(DRAM_HUGE - 1);
    size_t head = start - (uintptr_t)raw, tail = DRAM_HUGE - head;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap((unsigned char *)start + len, tail);
    return (void *)start;
}

static int map_arena(dram_tier *t, uint64_t capacity, kvt_hugepages mode)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        page = 4096;
    if (capacity > UINT64_MAX - 2 * DRAM_HUGE || capacity > (uint64_t)SIZE_MAX / 2)
        return -ENOMEM;

    if (mode == KVT_HUGEPAGES_OFF) {
        uint64_t len = round_up(capacity, (uint64_t)page);
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -ENOMEM;
        t->base = p;
        t->map_bytes = len;
        t->huge = 0;
        return 0;
    }

    /* hugetlb pages are reserved at mmap time, so a shortage fails here, not on first touch */
    uint64_t len = round_up(capacity, DRAM_HUGE);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
    if (p != MAP_FAILED) {
        t->base = p;
        t->map_bytes = len;
        t->huge = 1;
        return 0;
    }
    if (mode == KVT_HUGEPAGES_ON)
        return -ENOMEM;

    /* AUTO without hugetlb pages: plain pages, 2 MiB aligned and sized so THP can fold all of
     * them; the slack past capacity is never touched, so it costs address space only. */
    p = map_aligned(len);
    if (!p)
        return -ENOMEM;
    t->base = p;
    t->map_bytes = len;
    t->huge = madvise(p, len, MADV_HUGEPAGE) == 0 ? 2 : 0;
    return 0;
}

/* Carve whole slots out of the capacity and build the side tables. 0, -EINVAL, -ENOMEM;
 * on failure t is unchanged. */
static int set_slots(dram_tier *t, uint64_t slot_bytes)
{
    uint64_t n = t->capacity / slot_bytes;
    if (n == 0)
        return -EINVAL;
    if (n > DRAM_FREE) /* slot numbers stay below the DRAM_FREE / DRAM_END markers */
        n = DRAM_FREE;

    uint32_t *next = util_malloc((size_t)n * sizeof *next);
    uint32_t *fr = util_malloc((size_t)n * sizeof *fr);
    uint32_t *wr = util_calloc((size_t)n, sizeof *wr);
    if (!next || !fr || !wr)
        goto fail;
    for (uint64_t i = 0; i < n; i++) {
        next[i] = DRAM_FREE;
        fr[i] = (uint32_t)(n - 1 - i); /* slot 0 on top */
    }
    t->next = next;
    t->free = fr;
    t->wr = wr;
    t->n_slots = (uint32_t)n;
    t->n_free = (uint32_t)n;
    t->slot_bytes = slot_bytes;
    return 0;

fail:
    util_free(next);
    util_free(fr);
    util_free(wr);
    return -ENOMEM;
}

int dram_open(uint64_t capacity, uint64_t slot_bytes, kvt_hugepages mode, dram_tier **out)
{
    dram_tier *t = NULL;
    int rc;

    if (out)
        *out = NULL;
    if (!out || capacity == 0 || (slot_bytes != 0 && !slot_bytes_valid(slot_bytes)) ||
        (slot_bytes != 0 && capacity < slot_bytes))
        return -EINVAL;
    if (mode != KVT_HUGEPAGES_AUTO && mode != KVT_HUGEPAGES_OFF && mode != KVT_HUGEPAGES_ON)
        return -EINVAL;

    t = util_calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->capacity = capacity;
    rc = map_arena(t, capacity, mode);
    if (rc)
        goto fail;
    if (slot_bytes) {
        rc = set_slots(t, slot_bytes);
        if (rc)
            goto fail;
    }
    *out = t;
    return 0;

fail:
    dram_close(t);
    return rc;
}

int dram_open_virtual(uint64_t capacity, uint64_t slot_bytes, dram_tier **out)
{
    dram_tier *t = NULL;
    int rc;
    if (out)
        *out = NULL;
    if (!out || capacity == 0 || (slot_bytes != 0 && !slot_bytes_valid(slot_bytes)) ||
        (slot_bytes != 0 && capacity < slot_bytes))
        return -EINVAL;
    t = util_calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->capacity = capacity;
    if (slot_bytes && (rc = set_slots(t, slot_bytes))) {
        dram_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

void dram_close(dram_tier *t)
{
    if (!t)
        return;
    if (t->base)
        munmap(t->base, t->map_bytes);
    util_free(t->next);
    util_free(t->free);
    util_free(t->wr);
    util_free(t);
}

int dram_set_slot_bytes(dram_tier *t, uint64_t slot_bytes)
{
    if (!t || !slot_bytes_valid(slot_bytes))
        return -EINVAL;
    if (t->slot_bytes)
        return t->slot_bytes == slot_bytes ? 0 : -EBUSY;
    return set_slots(t, slot_bytes);
}

uint64_t dram_slot_bytes(const dram_tier *t) { return t->slot_bytes; }

uint32_t dram_slots_for(const dram_tier *t, uint64_t bytes)
{
    if (!t->slot_bytes)
        return 0;
    uint64_t n = bytes / t->slot_bytes + (bytes % t->slot_bytes != 0);
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

int dram_alloc(dram_tier *t, uint64_t bytes, uint32_t *head)
{
    if (!t || !head || bytes == 0 || !t->slot_bytes)
        return -EINVAL;
    uint32_t need = dram_slots_for(t, bytes);
    if (need > t->n_free)
        return -ENOSPC;

    /* pop head first; each popped slot links to the one popped after it */
    uint32_t first = t->free[--t->n_free], prev = first;
    assert(t->next[first] == DRAM_FREE);
    for (uint32_t i = 1; i < need; i++) {
        uint32_t s = t->free[--t->n_free];
        assert(t->next[s] == DRAM_FREE);
        t->next[prev] = s;
        prev = s;
    }
    t->next[prev] = DRAM_END;
    *head = first;
    return 0;
}

void dram_free(dram_tier *t, uint32_t head)
{
    assert(head < t->n_slots && t->next[head] != DRAM_FREE);
    uint32_t len = 0;
    for (uint32_t s = head; s != DRAM_END; s = t->next[s])
        len++;
    assert(len <= t->n_slots - t->n_free);

    /* push tail first so the head ends on top: free[n_free + len - 1 - i] = i-th slot */
    uint32_t top = t->n_free + len, s = head;
    while (s != DRAM_END) {
        uint32_t nx = t->next[s];
        t->free[--top] = s;
        t->next[s] = DRAM_FREE;
        s = nx;
    }
    t->n_free += len;
}

/*
 * Copy n bytes to the arena at dst (64-byte aligned: slots are multiples of 64 from a
 * page-aligned base). x86-64: whole 64-byte lines with non-temporal stores, which write the
 * line without first reading it into the cache (a plain copy's read-for-ownership doubles the
 * memory traffic into cold arena pages: a put's slots are cold, the write-through or a later
 * GET reads them from memory anyway), then the tail with memcpy. The caller fences.
 */
static void arena_copy(unsigned char *dst, const unsigned char *src, uint64_t n)
{
#if defined(__x86_64__) && defined(__SSE2__)
    uint64_t lines = n / 64;
    for (uint64_t i = 0; i < lines; i++, dst += 64, src += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)src);
        __m128i b = _mm_loadu_si128((const __m128i *)(src + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(src + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(src + 48));
        _mm_stream_si128((__m128i *)dst, a);
        _mm_stream_si128((__m128i *)(dst + 16), b);
        _mm_stream_si128((__m128i *)(dst + 32), c);
        _mm_stream_si128((__m128i *)(dst + 48), d);
    }
    n -= lines * 64;
#endif
    memcpy(dst, src, n);
}

/* Zero n bytes at dst the same way (whole lines streamed, the tail with memset). */
static void arena_zero(unsigned char *dst, uint64_t n)
{
#if defined(__x86_64__) && defined(__SSE2__)
    uint64_t lines = n / 64;
    __m128i z = _mm_setzero_si128();
    for (uint64_t i = 0; i < lines; i++, dst += 64) {
        _mm_stream_si128((__m128i *)dst, z);
        _mm_stream_si128((__m128i *)(dst + 16), z);
        _mm_stream_si128((__m128i *)(dst + 32), z);
        _mm_stream_si128((__m128i *)(dst + 48), z);
    }
    n -= lines * 64;
#endif
    memset(dst, 0, n);
}

void dram_write_pad(dram_tier *t, uint32_t head, const void *src, uint64_t bytes, uint64_t total)
{
    const unsigned char *p = src;
    uint64_t sb = t->slot_bytes;
    if (bytes < total && total <= sb) {
        /* A short one-slot block: plain stores of its bytes (most often into the slot a
         * replace just freed, still in cache: streamed stores would have to drain to memory
         * before the lock that publishes the block), zeros only where earlier bytes were. */
        unsigned char *d = t->base + (uint64_t)head * sb;
        memcpy(d, src, bytes);
        if (t->wr[head] > bytes)
            memset(d + bytes, 0, t->wr[head] - bytes);
        t->wr[head] = (uint32_t)bytes;
        return;
    }
    for (uint32_t s = head; total;) {
        assert(s < t->n_slots && t->next[s] != DRAM_FREE);
        unsigned char *d = t->base + (uint64_t)s * sb;
        uint64_t n = total < sb ? total : sb;     /* bytes of this slot */
        uint64_t c = bytes < n ? bytes : n;       /* of them from src */
        uint64_t done = c & ~(uint64_t)63;        /* whole lines streamed from src */
        arena_copy(d, p, done);
        if (c > done) { /* the partial line: completed with zeros and streamed whole */
            unsigned char line[64];
            uint64_t l = n - done < 64 ? n - done : 64;
            memset(line, 0, sizeof line);
            memcpy(line, p + done, c - done);
            arena_copy(d + done, line, l);
            done += l;
        }
        if (t->wr[s] > done) /* zeros are written only over earlier bytes */
            arena_zero(d + done, (t->wr[s] < n ? t->wr[s] : n) - done);
        if (t->wr[s] <= n) /* else bytes past the block's end in its last slot remain */
            t->wr[s] = (uint32_t)c;
        p += c;
        bytes -= c;
        total -= n;
        if (total)
            s = t->next[s]; /* the chain's next link is read only when there is more */
    }
#if defined(__x86_64__) && defined(__SSE2__)
    _mm_sfence(); /* the streamed lines are visible before the caller publishes the block */
#endif
}

void dram_write(dram_tier *t, uint32_t head, const void *src, uint64_t bytes)
{
    dram_write_pad(t, head, src, bytes, bytes);
}

void dram_read(const dram_tier *t, uint32_t head, void *dst, uint64_t bytes)
{
    dram_read_at(t, head, 0, dst, bytes);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

int dram_prefault(dram_tier *t)
{
    uint64_t len = t->capacity < t->map_bytes ? t->capacity : t->map_bytes;
    long page = sysconf(_SC_PAGESIZE);
    if (!t->base || len == 0)
        return 0;
    if (page <= 0)
        page = 4096;
    len = round_up(len, (uint64_t)page);
    if (madvise(t->base, len, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno != EINVAL) /* ENOMEM, EFAULT, EHWPOISON: not all of it can be had */
        return -ENOMEM;
    for (uint64_t off = 0; off < len; off += (uint64_t)page) /* kernel without POPULATE_WRITE */
        ((volatile unsigned char *)t->base)[off] = 0;
    return 0;
}

const void *dram_chain_ptr(const dram_tier *t, uint32_t head, uint64_t bytes)
{
    uint64_t sb = t->slot_bytes;
    uint32_t s = head;
    assert(s < t->n_slots && t->next[s] != DRAM_FREE);
    for (uint64_t have = sb; have < bytes; have += sb, s++)
        if (t->next[s] != s + 1)
            return NULL;
    return t->base + (uint64_t)head * sb;
}

void dram_read_at(const dram_tier *t, uint32_t head, uint64_t offset, void *dst, uint64_t bytes)
{
    uint64_t sb = t->slot_bytes;
    uint32_t s = head;
    if (!bytes)
        return;
    for (; offset >= sb; offset -= sb) { /* whole slots before the range */
        assert(s < t->n_slots && t->next[s] != DRAM_FREE);
        s = t->next[s];
    }
    for (unsigned char *p = dst;; offset = 0) {
        assert(s < t->n_slots && t->next[s] != DRAM_FREE);
        uint64_t n = bytes < sb - offset ? bytes : sb - offset;
        memcpy(p, t->base + (uint64_t)s * sb + offset, n);
        p += n;
        bytes -= n;
        if (!bytes)
            break; /* the chain's next link is not touched after the last slot read */
        s = t->next[s];
    }
}

void dram_hint(const dram_tier *t, uint32_t head, uint64_t bytes)
{
    const unsigned char *p = t->base + (uint64_t)head * t->slot_bytes;
    if (bytes > t->slot_bytes)
        bytes = t->slot_bytes;
    for (uint64_t o = 0; o < bytes; o += 64)
        __builtin_prefetch(p + o);
    __builtin_prefetch(&t->next[head]); /* read by a removal's dram_free */
    __builtin_prefetch(&t->wr[head]);   /* and by the write that reuses the slot */
}

void dram_mark_written(dram_tier *t, uint32_t head)
{
    for (uint32_t s = head; s != DRAM_END; s = t->next[s]) {
        assert(s < t->n_slots && t->next[s] != DRAM_FREE);
        t->wr[s] = (uint32_t)t->slot_bytes;
    }
}

uint64_t dram_capacity(const dram_tier *t) { return (uint64_t)t->n_slots * t->slot_bytes; }
uint64_t dram_used(const dram_tier *t)
{
    return (uint64_t)(t->n_slots - t->n_free) * t->slot_bytes;
}
uint32_t dram_free_slots(const dram_tier *t) { return t->n_free; }
void *dram_base(const dram_tier *t) { return t->base; }
uint64_t dram_map_bytes(const dram_tier *t) { return t->map_bytes; }
int dram_hugepages(const dram_tier *t) { return t->huge; }
