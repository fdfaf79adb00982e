/*
 * testutil.h — shared helpers for tests/test_*.c.
 *
 * Conventions (liburing's): a test program exits 0 on pass, 1 on failure, 77 when skipped.
 * Randomised tests take their seed from KVT_SEED (default: a fixed seed) and print it, so a
 * failure is reproduced with KVT_SEED=<seed> ./test_x.
 */
#ifndef KVT_TESTUTIL_H
#define KVT_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define TU_CHECK(c)                                                                        \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);          \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* Check that an int expression equals an expected status; prints both on failure. */
#define TU_CHECK_EQ(a, b)                                                                  \
    do {                                                                                   \
        long long tu_a_ = (long long)(a), tu_b_ = (long long)(b);                          \
        if (tu_a_ != tu_b_) {                                                              \
            fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", __FILE__,    \
                    __LINE__, #a, #b, tu_a_, tu_b_);                                       \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define TU_SKIP(...)                                                                       \
    do {                                                                                   \
        fprintf(stderr, "skip: " __VA_ARGS__);                                             \
        fputc('\n', stderr);                                                               \
        exit(77);                                                                          \
    } while (0)

typedef struct tu_rng {
    uint64_t s[4];
} tu_rng;

/* The test's seed: KVT_SEED if set, else `fallback`. Prints "<prog>: seed=<n>". */
uint64_t tu_seed(const char *prog, uint64_t fallback);
void tu_rng_init(tu_rng *r, uint64_t seed);
uint64_t tu_next(tu_rng *r);           /* xoshiro256** */
uint64_t tu_below(tu_rng *r, uint64_t n); /* uniform in [0, n), n > 0 */
/* Fill n bytes with random data (never all zeros for n >= 8). */
void tu_fill(tu_rng *r, void *p, size_t n);

#endif
