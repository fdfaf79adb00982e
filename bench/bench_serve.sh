#!/usr/bin/env bash
# bench_serve.sh — `kvtier serve` next to Debian's redis-server, same machine, same run
# (docs/service.md, "Benchmark"). Both servers are started here; for every shape and every
# repetition redis-benchmark runs against kvtier, then against Redis; the table gives the
# median requests/s of each and the ratio of the medians.
#   shapes  SET and GET, 50 clients, 100-byte and 128 KiB values, -P 1 and -P 16
#   big     GET of an 8 MiB value over loopback into a preallocated buffer (GB/s), 1 and
#           4 connections, both servers
# usage: bench/bench_serve.sh path/to/kvtier-serve [--repeat N (3)] [--quick]
#        KVTIER_BENCH_DATA_DIR=none: kvtier DRAM only (default: tiers on, under a temp dir)
#        KVTIER_BENCH_ARGS="--persist-delay-ms 0 ...": more flags for kvtier serve
#        KVTIER_BENCH_PREFAULT=no: kvtier's DRAM arena faulted on first touch (default: yes,
#        dram_prefault = yes, so the shapes measure the steady state, not the kernel zeroing
#        4 GiB of fresh pages during the first shapes)
set -euo pipefail
BIN=${1:?usage: bench_serve.sh path/to/kvtier-serve [--repeat N] [--quick]}
shift
rep=3 quick=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --repeat) rep=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
command -v redis-benchmark >/dev/null && command -v redis-server >/dev/null ||
    { echo "needs redis-tools and redis-server"; exit 77; }
PY=/usr/bin/python3
n_small=1000000 n_p1=200000 n_big=20000 n_big_p1=10000
if [[ $quick == 1 ]]; then n_small=100000 n_p1=20000 n_big=2000 n_big_p1=1000; fi
dir=$(mktemp -d /tmp/kvs-bench-XXXXXX)
port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kp=$(port) rp=$(port)
data=${KVTIER_BENCH_DATA_DIR:-$dir/data}
prefault=${KVTIER_BENCH_PREFAULT:-yes}
# tiers on: DRAM 4G in front of nvme (1G of slot files) and disk (4G) under $dir/data
"$BIN" --port "$kp" --dram-bytes 4G --data-dir "$data" --nvme-bytes 1G --disk-bytes 4G \
    --dram-prefault "$prefault" --loglevel warning ${KVTIER_BENCH_ARGS:-} >"$dir/kvtier.log" 2>&1 &
kpid=$!
redis-server --port "$rp" --save "" --appendonly no --daemonize no --logfile "$dir/redis.log" &
rpid=$!
trap 'kill -TERM $kpid $rpid 2>/dev/null; wait; rm -rf "$dir"' EXIT
for p in "$kp" "$rp"; do # a prefaulted 4 GiB arena takes seconds (~18 s on the dev VM)
    for _ in $(seq 1200); do redis-cli -p "$p" PING >/dev/null 2>&1 && break; sleep 0.1; done
done
commit=$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "# bench_serve commit=$commit (+ working tree) host=$(hostname) cpus=$(nproc) $(redis-server --version | cut -d' ' -f1-3)"
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# kvtier data_dir: $data; dram_prefault: $prefault; extra flags: ${KVTIER_BENCH_ARGS:-none}; repetitions: $rep (medians)"
results=$dir/results.txt
: >"$results"
shape() { # name, then redis-benchmark args
    local name=$1
    shift
    for i in $(seq "$rep"); do
        local k r
        k=$(redis-benchmark -p "$kp" --csv "$@" | tail -1)
        r=$(redis-benchmark -p "$rp" --csv "$@" | tail -1)
        printf '%s|%s|%s\n' "$name" "$k" "$r" >>"$results"
    done
}
shape "SET 100 B, P1" -t set -d 100 -c 50 -n "$n_p1" -r 100000
shape "GET 100 B, P1" -t get -d 100 -c 50 -n "$n_p1" -r 100000
shape "SET 100 B, P16" -t set -d 100 -c 50 -P 16 -n "$n_small" -r 100000
shape "GET 100 B, P16" -t get -d 100 -c 50 -P 16 -n "$n_small" -r 100000
shape "SET 128 KiB, P1" -t set -d 131072 -c 50 -n "$n_big_p1" -r 1000
shape "GET 128 KiB, P1" -t get -d 131072 -c 50 -n "$n_big_p1" -r 1000
shape "SET 128 KiB, P16" -t set -d 131072 -c 50 -P 16 -n "$n_big" -r 1000
shape "GET 128 KiB, P16" -t get -d 131072 -c 50 -P 16 -n "$n_big" -r 1000
echo "# load after the shapes: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$results" <<'PY'
import csv, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, k, r = line.rstrip("\n").split("|")
    k, r = next(csv.reader([k])), next(csv.reader([r]))
    rows.setdefault(name, []).append((float(k[1]), float(k[6]), float(r[1]), float(r[6])))
print("| shape (50 clients) | kvtier req/s | p99 ms | redis req/s | p99 ms | ratio | runs (ratio) |")
print("|---|---:|---:|---:|---:|---:|---|")
for name, v in rows.items():
    med = lambda i: statistics.median(x[i] for x in v)
    print("| %s | %.0f | %.2f | %.0f | %.2f | %.2f | %s |" % (name, med(0), med(1), med(2), med(3),
          med(0) / med(2), " ".join("%.2f" % (x[0] / x[2]) for x in v)))
PY
# GET of 8 MiB values: a client that reads each reply into one preallocated buffer
$PY - "$kp" "$rp" "$rep" <<'PY'
import socket, statistics, sys, threading, time
kp, rp, rep = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
V = 8 << 20
def conn(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return s
def readline(s):
    b = b""
    while not b.endswith(b"\r\n"):
        b += s.recv(1)
    return b
def setbig(port):
    s = conn(port)
    val = bytes(range(256)) * (V // 256)
    s.sendall(b"*3\r\n$3\r\nSET\r\n$7\r\nbig8mib\r\n$%d\r\n" % V + val + b"\r\n")
    assert readline(s) == b"+OK\r\n"
    s.close()
def getter(port, n, out):
    s = conn(port)
    buf = bytearray(V + 2)
    mv = memoryview(buf)
    req = b"*2\r\n$3\r\nGET\r\n$7\r\nbig8mib\r\n"
    got = 0
    for _ in range(n):
        s.sendall(req)
        hdr = readline(s)
        assert hdr == b"$%d\r\n" % V, hdr
        off = 0
        while off < V + 2:
            off += s.recv_into(mv[off:], V + 2 - off)
        got += V
    out.append(got)
    s.close()
def run(port, conns, n):
    out, th = [], [threading.Thread(target=getter, args=(port, n, [])) for _ in range(conns)]
    res = []
    th = [threading.Thread(target=getter, args=(port, n, res)) for _ in range(conns)]
    t0 = time.perf_counter()
    for t in th: t.start()
    for t in th: t.join()
    return sum(res) / (time.perf_counter() - t0) / 1e9
setbig(kp); setbig(rp)
print("\n| GET 8 MiB (loopback, preallocated buffer) | kvtier GB/s | redis GB/s | ratio | runs kvtier |")
print("|---|---:|---:|---:|---|")
for conns in (1, 4):
    k = [run(kp, conns, 64 // conns) for _ in range(rep)]
    r = [run(rp, conns, 64 // conns) for _ in range(rep)]
    print("| %d connection%s | %.2f | %.2f | %.2f | %s |" % (conns, "s" if conns > 1 else "",
          statistics.median(k), statistics.median(r), statistics.median(k) / statistics.median(r),
          " ".join("%.2f" % x for x in k)))
PY
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
