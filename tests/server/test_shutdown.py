#!/usr/bin/env python3
"""test_shutdown — SIGTERM: the listeners close at once, a command in flight (a SET whose
value is still arriving) completes and is answered, the access log is flushed, and the
process exits 0. Also checks the access log's JSON lines against the contract of
docs/analytics.md and, when the kvtier program is given and built, replays the log with
`kvtier analyze`. usage: test_shutdown.py path/to/kvtier-serve [path/to/kvtier]"""
import json
import os
import signal
import socket
import struct
import time

from kvtharness import Server, binary_arg, check

binary = binary_arg()
import tempfile  # noqa: E402
alog_dir = tempfile.mkdtemp(prefix="kvs-alog-", dir=os.environ.get("KVT_TEST_DIR") or None)
alog = os.path.join(alog_dir, "access.jsonl")
srv = Server(binary, config="[server]\naccess_log = %s\n" % alog)
try:
    c = srv.raw()
    check(c.call("KVT.NS.CREATE", "m", 1, 1, 8, "fp16", 4) == "OK", "namespace")
    toks = struct.pack("<12I", *range(12))
    check(c.call("KVT.PUT", "m", toks[:32], os.urandom(2 * 128)) == 2, "KVT.PUT 2 blocks")
    m = c.call("KVT.MATCH", "m", toks)
    check(m[1] == 8, "KVT.MATCH 8 of 12 tokens")
    check(len(c.call("KVT.GET", "m", toks)) == 256, "KVT.GET of the same request (not logged again)")
    toks14 = struct.pack("<14I", *range(14))
    check(len(c.call("KVT.GET", "m", toks14)) == 256, "KVT.GET of 14 tokens (a partial block)")

    # a SET whose 8 MiB value is only half sent when SIGTERM arrives
    val = os.urandom(8 << 20)
    head = b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$%d\r\n" % len(val)
    c.send(head + val[: len(val) // 2])
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = False
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    except OSError:
        refused = True
    check(refused, "no new connections after SIGTERM")
    c.send(val[len(val) // 2:] + b"\r\n")
    check(c.reply() == "OK", "the in-flight SET completes and is answered")
    check(c.closed(timeout=10), "then the connection is closed")
    rc = srv.proc.wait(20)
    check(rc == 0, "exit status 0 after SIGTERM")
finally:
    srv.stop()
lines = [json.loads(l) for l in open(alog)]
ops = [l["op"] for l in lines]
check(ops == ["match", "get"], "access log: one line per request lookup (PUT is not one; a GET "
      "repeating the MATCH before it is the same request): %s" % ops)
m, g = lines
for l in lines:
    check(isinstance(l["ts_ms"], int) and l["tenant"] == "default" and l["ns"] == "m" and
          l["block_tokens"] == 4, "contract fields ts_ms, tenant, ns, block_tokens")
    bt, n = l["block_tokens"], len(l["block_keys"])
    check((n - 1) * bt < l["tokens"] <= n * bt and all(len(k) == 16 for k in l["block_keys"]),
          "block_keys (16 hex digits) fit tokens=%d, the partial block included" % l["tokens"])
check(m["tokens"] == 12 and len(m["block_keys"]) == 3 and m["matched_tokens"] == 8, "match line")
check(m["matched"] == {"dram": 2, "nvme": 0, "disk": 0}, "matched: hit blocks per tier")
check(g["tokens"] == 14 and len(g["block_keys"]) == 4 and g["block_keys"][:3] == m["block_keys"],
      "get line: the same chained block keys, plus the partial block's")
import subprocess, sys  # noqa: E402
cli = sys.argv[2] if len(sys.argv) > 2 else ""
if cli and os.access(cli, os.X_OK):
    r = subprocess.run([cli, "analyze", "--format", "log", "--block-size", "4", "--json",
                        "--strict", "--quiet", "--nodes", "0", "--sweep-points", "0", alog],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "kvtier analyze --strict replays the access log (exit %d: %s)"
          % (r.returncode, r.stderr.strip()[-300:]))
    rep = json.loads(r.stdout)
    check("2" in json.dumps(rep), "analyze produced a report")
else:
    print("(kvtier analyze not given or not built: replay check skipped)")
os.remove(alog)
os.rmdir(alog_dir)
print("PASS")
