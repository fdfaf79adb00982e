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

#include "kvtier/kvtier.h"

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
/* Fill n tokens with random 32-bit values (the low halves of n tu_next draws). */
void tu_fill_tokens(tu_rng *r, uint32_t *tok, size_t n);

/* ---------------------------------------------------------------- scratch directories */

/* out = "$KVT_TEST_DIR/<name>.<pid>" ("/tmp" when unset or empty); creates the base, not out. */
void tu_test_dir(char *out, size_t cap, const char *name);
/* tu_test_dir, then remove any old tree there and create out afresh (checked). */
void tu_fresh_dir(char *out, size_t cap, const char *name);
/* Remove path and everything below it (nftw, links not followed); 0 on success. */
int tu_rm_tree(const char *path);
/* Unlink every entry of a flat directory whose name does not begin with '.'; keeps dir. */
void tu_wipe_dir(const char *dir);

/* ---------------------------------------------------------------- engines */

/* A layout from its five fields (everything else zero). */
kvt_layout tu_layout(uint32_t layers, uint32_t kv_heads, uint32_t head_dim, kvt_dtype dtype,
                     uint32_t block_tokens);
/* Options for a DRAM-only engine: dram_bytes, slot_bytes (0: the default), hugepages off. */
kvt_options *tu_dram_options(uint64_t dram_bytes, uint64_t slot_bytes);
/* Open an engine from o (checked; on failure prints `what` and the error), destroy o. */
kvt_engine *tu_open_engine(kvt_options *o, const char *what);
/* tu_open_engine(tu_dram_options(dram_bytes, slot_bytes), "dram"). */
kvt_engine *tu_dram_engine(uint64_t dram_bytes, uint64_t slot_bytes);
/* The engine's stats (checked). */
kvt_stats tu_stats(kvt_engine *e);

/* A tiered engine's settings: capacities in bytes; a zero tier is off. */
typedef struct tu_tier_cfg {
    uint64_t dram_bytes, nvme_bytes, disk_bytes;
    int pool;                 /* kvt_options_set_io_force_pool */
    uint32_t backpressure_ms; /* 0: the default */
    int cuda_pin;             /* kvt_options_set_cuda_pin (0: off, the usual in tests) */
} tu_tier_cfg;
/* Options for an engine on data directory dir with c's tiers (hugepages off). */
kvt_options *tu_tier_options(const char *dir, const tu_tier_cfg *c);
/* tu_open_engine(tu_tier_options(dir, c), dir). */
kvt_engine *tu_tier_engine(const char *dir, const tu_tier_cfg *c);

/* ---------------------------------------------------------------- prompts */

/* nb blocks of bt tokens and bb bytes each, in heap buffers that tu_prompt_gen reuses. */
typedef struct tu_prompt {
    size_t nb, bt, bb;
    uint32_t *tok;       /* nb * bt tokens */
    unsigned char *data; /* nb * bb bytes, block i at data + i * bb */
} tu_prompt;

/* (Re)make p: nb blocks of random tokens, then random bytes, both drawn from r. */
void tu_prompt_gen(tu_prompt *p, tu_rng *r, size_t nb, size_t bt, size_t bb);
/* kvt_put of the whole prompt; returns its status, *stored as kvt_put sets it. */
int tu_prompt_put(kvt_ns *ns, const tu_prompt *p, size_t *stored);
/* Match p, read it block by block (exits on bytes not p's); returns blocks matched, *rc status. */
size_t tu_prompt_match_read(kvt_ns *ns, const tu_prompt *p, int *rc);


/* Loopback ports and local Redis clusters (the remote-tier tests). */
int tu_port_free(int port);                 /* 1 if 127.0.0.1:port can be bound now */
int tu_pick_ports(tu_rng *r, int n);        /* base with base..base+n-1 and +10000 (cluster
                                               bus ports) free, or -1 */
/* Run a shell command (printf format), its stdout into out[0..cap) (NULL: discarded).
 * Returns its exit status, -1 if it did not exit normally. */
int tu_sh_out(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* From CLUSTER NODES asked at `port`: the port of the live master owning `slot` (its node id
 * into id_out when not NULL), or -1. */
int tu_cluster_owner(int port, unsigned slot, char *id_out);
/* Start a loopback Redis Cluster (tests/redis-cluster.sh, or $KVT_REDIS_CLUSTER_SH):
 * `masters` masters with `replicas` replicas each, on free ports from port_rng, data under
 * $KVT_TEST_DIR/<name>.<pid> (into dir, PATH_MAX bytes). Stopped at exit, on SIGINT/SIGTERM
 * and by tu_cluster_stop(). Returns the base port (the nodes are base .. base + n - 1);
 * exits 77 (skip) without redis-server/redis-cli or the script. One cluster per process. */
int tu_cluster_start(tu_rng *port_rng, const char *name, int masters, int replicas, char *dir);
void tu_cluster_stop(void);

#endif
