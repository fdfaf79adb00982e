/*
 * analyze.h — `kvtier analyze`: replay a request trace through the engine and explain every
 * hit and miss (docs/analytics.md is the manual).
 *
 * The program's entry point, for cli/kvtier.c to dispatch to. argv[0] is the subcommand's
 * name ("analyze"), options and the trace file follow; getopt's state is reset on entry, so
 * it may be called more than once in one process (the tests do).
 *
 * Output: tables (or --json) on stdout, --html FILE, diagnostics and the progress bar on
 * stderr. Exit codes: 0 ok; 1 the replay failed (engine error, out of memory, an unwritable
 * report); 2 usage or input error (bad option, unreadable trace, no valid request, a
 * malformed line under --strict, a tier or policy this engine build cannot simulate).
 */
#ifndef KVT_ANALYTICS_ANALYZE_H
#define KVT_ANALYTICS_ANALYZE_H

#ifdef __cplusplus
extern "C" {
#endif

int analyze_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
