/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <string.h>

uint64_t tu_seed(const char *prog, uint64_t fallback)
{
    const char *e = getenv("KVT_SEED");
    uint64_t seed = e && *e ? strtoull(e, NULL, 0) : fallback;
    printf("%s: seed=%llu\n", prog, (unsigned long long)seed);
    fflush(stdout);
    return seed;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void tu_rng_init(tu_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tu_next(tu_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

uint64_t tu_below(tu_rng *r, uint64_t n) { return tu_next(r) % n; }

void tu_fill(tu_rng *r, void *p, size_t n)
{
    unsigned char *b = p;
    while (n >= 8) {
        uint64_t v = tu_next(r) | 1;
        memcpy(b, &v, 8);
        b += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = tu_next(r);
        memcpy(b, &v, n);
    }
}
