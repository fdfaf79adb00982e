#!/usr/bin/env python3
"""test_shutdown — SIGTERM: the listeners close at once, a command in flight (a SET whose
value is still arriving) completes and is answered, the access log is flushed, and the
process exits 0. Also checks the access log's JSON lines.
usage: test_shutdown.py path/to/kvtier-serve"""
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
check(ops == ["put", "match"], "access log has the KVT requests in order: %s" % ops)
m = lines[1]
check(m["tenant"] == "default" and m["ns"] == "m" and m["tokens"] == 12 and m["matched_tokens"] == 8
      and m["matched_by_tier"] == {"dram": 8} and len(m["hash_ids"]) == 3 and m["block_tokens"] == 4,
      "access log line: tenant, ns, tokens, matched per tier, block hash ids")
check(lines[0]["hash_ids"] == m["hash_ids"][:2], "hash ids are the engine's chained block keys")
os.remove(alog)
os.rmdir(alog_dir)
print("PASS")
