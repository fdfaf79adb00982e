/*
 * util.h — allocation hook, clock and an intrusive doubly linked list.
 *
 * Every module allocates through util_malloc/util_calloc/util_realloc/util_free so that tests
 * can inject out-of-memory with util_alloc_fail_after(). Thread-safe: the failure countdown is
 * an atomic; the list functions are not (callers hold their own lock).
 */
#ifndef KVT_UTIL_H
#define KVT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void *util_malloc(size_t size);
void *util_calloc(size_t n, size_t size);
void *util_realloc(void *p, size_t size);
void util_free(void *p);

/*
 * Test hook: the allocation after the next n succeeding ones fails (returns NULL), and every
 * one after it succeeds again. n < 0 disables injection (the default).
 * util_alloc_failures() counts the failures injected so far.
 */
void util_alloc_fail_after(long n);
uint64_t util_alloc_failures(void);

/* kvt_parse_size (kvtier.h): digits with an optional K/M/G/T[i][B] binary suffix. */
int util_parse_size(const char *s, uint64_t *out);

/* Monotonic clock, nanoseconds. */
uint64_t util_now_ns(void);
/* CLOCK_MONOTONIC_COARSE: the kernel's tick (1-4 ms resolution) at a fraction of the cost
 * (no TSC read): for clocks that only rank or age things in seconds. */
uint64_t util_now_coarse_ns(void);

/* Intrusive circular doubly linked list. A head is a util_list whose next/prev point at
 * itself when empty. Elements embed a util_list and are recovered with UTIL_CONTAINER_OF. */
typedef struct util_list {
    struct util_list *prev, *next;
} util_list;

#define UTIL_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void util_list_init(util_list *h) { h->prev = h->next = h; }
static inline int util_list_empty(const util_list *h) { return h->next == h; }
static inline int util_list_linked(const util_list *e) { return e->next != NULL && e->next != e; }
static inline void util_list_del(util_list *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = e;
}
/* Insert e before h: at the tail of the list headed by h. */
static inline void util_list_add_tail(util_list *h, util_list *e)
{
    e->prev = h->prev;
    e->next = h;
    h->prev->next = e;
    h->prev = e;
}

#ifdef __cplusplus
}
#endif

#endif
