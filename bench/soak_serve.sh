#!/usr/bin/env bash
# soak_serve.sh — 60 s (default) of 64 clients mixing SET/GET/MGET/DEL/EXPIRE/KVT.PUT/
# KVT.MATCH/KVT.GET against one `kvtier serve` (tiers on, under a temp dir), checking every
# reply against what that client wrote (each client owns its keys and token prefixes), with
# the server's RSS sampled every 5 s.
# Pass: zero errors (exceptions, wrong values, partial data), the server exits 0 on SIGTERM,
# and memory is stable: the largest RSS of the second half of the run is at most 10 % above
# the largest RSS of the first half (after a 10 s warm-up in which the DRAM tier's pages and
# the clients' buffers are first touched).
# usage: bench/soak_serve.sh path/to/kvtier-serve [SECONDS (60)] [CLIENTS (64)]
set -euo pipefail
BIN=${1:?usage: soak_serve.sh path/to/kvtier-serve [SECONDS] [CLIENTS]}
secs=${2:-60} clients=${3:-64}
PY=/usr/bin/python3
$PY -c 'import redis' 2>/dev/null || { echo "needs python3-redis"; exit 77; }
dir=$(mktemp -d /tmp/kvs-soak-XXXXXX)
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" --port "$port" --dram-bytes 256M --data-dir "$dir/data" --nvme-bytes 512M --disk-bytes 1G \
    --loglevel warning >"$dir/kvtier.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
set +e
$PY - "$port" "$pid" "$secs" "$clients" <<'PY'
import random, struct, sys, threading, time
import redis
port, pid, secs, nclients = map(int, sys.argv[1:5])
stop = time.time() + secs
errors, ops, lock = [], [0], threading.Lock()
def err(msg):
    with lock:
        if len(errors) < 20: print("ERROR", msg, flush=True)
        errors.append(msg)
def toks(seq): return b"".join(struct.pack("<I", t) for t in seq)
BT, BB = 4, 1 * 2 * 4 * 2 * 8 * 2  # block_tokens 4; 1 layer, 2 heads, head_dim 8, fp16: 256 B
redis.Redis(port=port).execute_command("KVT.NS.CREATE", "soak", 1, 2, 8, "fp16", BT)
def client(cid):
    r = redis.Redis(port=port, socket_timeout=30)
    rnd = random.Random(cid)
    model, n = {}, 0
    while time.time() < stop:
        try:
            k = "c%d:k%d" % (cid, rnd.randrange(200))
            op = rnd.random()
            if op < 0.30:
                v = rnd.randbytes(rnd.choice([10, 100, 1000, 5000, 40000]))
                r.set(k, v); model[k] = v
            elif op < 0.55:
                got = r.get(k)
                if got is not None and got != model.get(k):
                    err("client %d GET %s: wrong value (%d bytes)" % (cid, k, len(got)))
            elif op < 0.62:
                ks = ["c%d:k%d" % (cid, rnd.randrange(200)) for _ in range(8)]
                for kk, got in zip(ks, r.mget(ks)):
                    if got is not None and got != model.get(kk):
                        err("client %d MGET %s: wrong value" % (cid, kk))
            elif op < 0.70:
                r.delete(k); model.pop(k, None)
            elif op < 0.76:
                r.expire(k, rnd.choice([1, 100]))
            else:
                # a prompt: this client's prefix + a random continuation, whole blocks
                p = rnd.randrange(16)
                seq = [cid, p] + [rnd.randrange(1 << 20) if rnd.random() < 0.3 else (p * 31 + i) % 997
                                  for i in range(rnd.choice([2, 6, 14, 30]))]
                seq = seq[:len(seq) // BT * BT]
                kv = bytes((t * 7 + j) & 0xff for t in seq[::BT] for j in range(BB))
                if op < 0.84:
                    r.execute_command("KVT.PUT", "soak", toks(seq), kv)
                elif op < 0.92:
                    m = r.execute_command("KVT.MATCH", "soak", toks(seq))
                    if not isinstance(m, list) or b"matched_tokens" not in m:
                        err("client %d KVT.MATCH: %r" % (cid, m))
                else:
                    got = r.execute_command("KVT.GET", "soak", toks(seq))
                    if not isinstance(got, bytes) or len(got) % BB or got != kv[:len(got)]:
                        err("client %d KVT.GET: wrong bytes" % cid)
            n += 1
        except Exception as e:
            err("client %d: %r" % (cid, e))
    with lock: ops[0] += n
def rss():
    for l in open("/proc/%d/status" % pid):
        if l.startswith("VmRSS:"): return int(l.split()[1]) // 1024
th = [threading.Thread(target=client, args=(i,)) for i in range(nclients)]
t0 = time.time()
for t in th: t.start()
samples = []
while time.time() < stop:
    time.sleep(5)
    samples.append((round(time.time() - t0), rss()))
    print("t=%3ds rss=%d MiB" % samples[-1], flush=True)
for t in th: t.join()
late = [m for t, m in samples if t > 10]
half = len(late) // 2
first, second = max(late[:half]), max(late[half:])
growth = second / first - 1
print("ops %d (%.0f/s), errors %d, rss after warm-up: first half max %d MiB, second half max %d MiB (%+.1f %%): %s"
      % (ops[0], ops[0] / secs, len(errors), first, second, growth * 100,
         "stable" if growth <= 0.10 else "GROWING"))
sys.exit(1 if errors or growth > 0.10 else 0)
PY
rc=$?
set -e
kill -TERM $pid
src=0
wait $pid || src=$?
echo "# server exit status $src"
[[ $src == 0 ]] || { tail -20 "$dir/kvtier.log"; exit 1; }
exit $rc
