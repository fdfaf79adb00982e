#!/usr/bin/env bash
# bench_vs_redis.sh — kept for old command lines: the benchmark is bench/bench_serve.sh now
# (kvtier serve next to redis-server, 100 B / 128 KiB values, -P 1 / -P 16, 8 MiB GETs,
# 3 repetitions, medians; docs/service.md, "Benchmark").
# usage: server/bench_vs_redis.sh path/to/kvtier-serve [--quick] [--repeat N]
exec bash "$(dirname "$0")/../bench/bench_serve.sh" "$@"
