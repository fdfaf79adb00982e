/*
 * benchutil.h — shared helpers for bench/bench_*.c.
 *
 * Every benchmark warms up, repeats, reports median and p99, prints one header line
 * (commit, machine, arguments) and a fixed-width table that puts the peer and the physical
 * limit measured in the same run next to kvtier, with the ratio. `--quick` runs a tiny
 * configuration (ctest runs each benchmark that way as a smoke test).
 */
#ifndef KVT_BENCHUTIL_H
#define KVT_BENCHUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Print "# <prog> commit=<c> machine=<cpu model>, <n> cores, <mem> GiB args=<argv...>". */
void bu_header(int argc, char **argv);
uint64_t bu_now_ns(void);
/* Sort xs[0..n) in place and return the q-quantile (0..1), nearest rank. */
double bu_quantile(double *xs, size_t n, double q);
/* 1 if argv has the flag (exact match). */
int bu_flag(int argc, char **argv, const char *flag);
/* The value after "--name" as an integer, or def. */
long long bu_opt(int argc, char **argv, const char *name, long long def);
/* Keep the compiler from optimising a value away. */
void bu_sink(const void *p);

#endif
