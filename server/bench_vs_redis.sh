#!/usr/bin/env bash
# bench_vs_redis.sh — redis-benchmark against `kvtier serve` and against redis-server in
# the same run: GET/SET, small (100 B) and 1 MiB values, pipelined; throughput and p99 side
# by side, with the ratio. usage: server/bench_vs_redis.sh path/to/kvtier-serve [--quick]
set -euo pipefail
BIN=${1:?usage: bench_vs_redis.sh path/to/kvtier-serve [--quick]}
quick=${2:-}
command -v redis-benchmark >/dev/null && command -v redis-server >/dev/null ||
    { echo "needs redis-tools and redis-server"; exit 77; }
n_small=1000000 n_big=2000
[[ "$quick" == --quick ]] && n_small=50000 n_big=200
dir=$(mktemp -d /tmp/kvs-bench-XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kp=$(port) rp=$(port)
# tiers on: DRAM 4G in front of nvme (1G slot files) and disk (4G), all under $dir/data;
# KVTIER_BENCH_DATA_DIR=none benchmarks the DRAM-only service
"$BIN" --port "$kp" --dram-bytes 4G --data-dir "${KVTIER_BENCH_DATA_DIR:-$dir/data}" \
    --nvme-bytes 1G --disk-bytes 4G --loglevel warning >"$dir/kvtier.log" 2>&1 &
kpid=$!
redis-server --port "$rp" --save "" --appendonly no --daemonize no --logfile "$dir/redis.log" &
rpid=$!
trap 'kill -TERM $kpid $rpid 2>/dev/null; wait; rm -rf "$dir"' EXIT
for p in "$kp" "$rp"; do
    for _ in $(seq 100); do redis-cli -p "$p" PING >/dev/null 2>&1 && break; sleep 0.1; done
done
commit=$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "# bench_vs_redis commit=$commit host=$(hostname) cpus=$(nproc) $(redis-server --version | cut -d' ' -f1-3)"
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
printf '%-28s %12s %9s %12s %9s %8s\n' "test" "kvtier rps" "p99 ms" "redis rps" "p99 ms" "ratio"
run() { # name, then redis-benchmark args
    local name=$1
    shift
    local k r
    k=$(redis-benchmark -p "$kp" --csv "$@" | tail -1)
    r=$(redis-benchmark -p "$rp" --csv "$@" | tail -1)
    python3 - "$name" "$k" "$r" <<'PY'
import csv, sys
name, k, r = sys.argv[1], next(csv.reader([sys.argv[2]])), next(csv.reader([sys.argv[3]]))
kr, kp, rr, rp = float(k[1]), float(k[6]), float(r[1]), float(r[6])
print("%-28s %12.0f %9.3f %12.0f %9.3f %8.2f" % (name, kr, kp, rr, rp, kr / rr))
PY
}
run "SET 100 B, 50 clients, P16" -t set -d 100 -c 50 -P 16 -n "$n_small" -r 100000
run "GET 100 B, 50 clients, P16" -t get -d 100 -c 50 -P 16 -n "$n_small" -r 100000
run "SET 100 B, 50 clients, P1" -t set -d 100 -c 50 -n $((n_small / 5)) -r 100000
run "GET 100 B, 50 clients, P1" -t get -d 100 -c 50 -n $((n_small / 5)) -r 100000
run "SET 1 MiB, 8 clients, P4" -t set -d 1048576 -c 8 -P 4 -n "$n_big" -r 100
run "GET 1 MiB, 8 clients, P4" -t get -d 1048576 -c 8 -P 4 -n "$n_big" -r 100
