/* util.c — see util.h. */
#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

static atomic_long fail_countdown = -1;
static atomic_ulong failures;

/* Returns 1 when this allocation must fail. */
static int inject(void)
{
    long v = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    while (v >= 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &v, v - 1)) {
            if (v == 0) {
                atomic_fetch_add(&failures, 1);
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

void util_alloc_fail_after(long n) { atomic_store(&fail_countdown, n < 0 ? -1 : n); }
uint64_t util_alloc_failures(void) { return atomic_load(&failures); }

void *util_malloc(size_t size) { return inject() ? NULL : malloc(size); }
void *util_calloc(size_t n, size_t size) { return inject() ? NULL : calloc(n, size); }
void *util_realloc(void *p, size_t size) { return inject() ? NULL : realloc(p, size); }
void util_free(void *p) { free(p); }

uint64_t util_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t util_now_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Parse a byte size: digits with an optional binary suffix K, M, G or T (also KiB, MB, ...;
 * case-insensitive; all powers of 1024). 0 and -EINVAL/-ERANGE on bad input.
 */
int util_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !out || !*s || *s == '-' || *s == '+')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s)
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (shift && (*end == 'i' || *end == 'I'))
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}
