/*
 * cli.h — what the `kvtier` program's files share: the formatting helpers of kvtier.c and the
 * entry points of commands that live in their own file (argv[0] = the command's name).
 */
#ifndef KVT_CLI_H
#define KVT_CLI_H

#include <stddef.h>
#include <stdint.h>

/* Human-readable binary size into buf: "512 B", "2.00 MiB", "1.00 GiB". */
const char *fmt_size(char *buf, size_t n, uint64_t bytes);
/* A duration in seconds as "850 us", "12.3 ms", "4.5 s", "3.2 min", "1.5 h". */
const char *fmt_secs(char *buf, size_t n, double s);

int probe_main(int argc, char **argv); /* cli/probe.c */

#endif
