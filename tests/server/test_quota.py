#!/usr/bin/env python3
"""test_quota — per-tenant DRAM quotas: a tenant over its quota evicts only its own least
recently used data; another tenant's values and prefixes survive; a value larger than the
quota gets a clear -OOM error. usage: test_quota.py path/to/kvtier-serve"""
import os
import struct
import urllib.request

from kvtharness import Err, Server, binary_arg, check, need_redis_py

need_redis_py()
import redis  # noqa: E402

binary = binary_arg()
CONF = """
[server]
dram_bytes = 16M
[tenant:small]
password = s
quota_dram = 1M
[tenant:big]
password = b
quota_dram = 8M
"""
srv = Server(binary, config=CONF, metrics=True)
try:
    s = redis.Redis(port=srv.port, username="small", password="s")
    b = redis.Redis(port=srv.port, username="big", password="b")
    bvals = {"b%d" % i: os.urandom(60000) for i in range(40)}  # ~2.5 MiB with block rounding
    for k, v in bvals.items():
        b.set(k, v)
    svals = {"s%d" % i: os.urandom(60000) for i in range(64)}  # ~4 MiB into a 1 MiB quota
    for k, v in svals.items():
        s.set(k, v)  # must never fail: the tenant evicts its own oldest values
    present = [k for k, v in svals.items() if s.get(k) == v]
    check(0 < len(present) <= 17, "small tenant keeps at most its 1 MiB quota (%d of 64 values)" % len(present))
    check("s63" in present and "s0" not in present, "its least recently used values went first")
    bad = [k for k, v in svals.items() if s.get(k) not in (None, v)]
    check(not bad, "an evicted value is a miss, never partial or wrong data")
    check(all(b.get(k) == v for k, v in bvals.items()), "the other tenant's 40 values are all intact")
    try:
        s.set("huge", os.urandom(2 << 20))
        check(False, "a value larger than the quota is refused")
    except redis.exceptions.ResponseError as e:
        check(str(e).startswith("OOM") or "OOM" in str(e), "a value larger than the quota: %s" % e)
    check(all(b.get(k) == v for k, v in bvals.items()), "still intact after the refused value")

    # prefixes: the small tenant's KVT.PUT beyond its quota evicts its own blocks only
    c = srv.raw()
    c.call("AUTH", "big", "b")
    check(c.call("KVT.NS.CREATE", "m", 1, 1, 64, "fp16", 16) == "OK", "KVT.NS.CREATE (4 KiB blocks)")
    toks = struct.pack("<64I", *range(64))
    kv = os.urandom(4 * 4096)
    r = c.call("KVT.PUT", "m", toks, kv)
    check(r == 4, "big tenant stores a 4-block prefix (%r)" % (r,))
    d = srv.raw()
    d.call("AUTH", "small", "s")
    d.call("KVT.NS.CREATE", "m", 1, 1, 64, "fp16", 16)
    for i in range(8):
        t = struct.pack("<256I", *range(i * 1000, i * 1000 + 256))
        r = d.call("KVT.PUT", "m", t, os.urandom(16 * 4096))
        check(r == 16, "small tenant puts 16 blocks (round %d)" % i)
    check(c.call("KVT.GET", "m", toks) == kv, "big tenant's prefix survives the small tenant's churn")
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.metrics_port, timeout=5).read().decode()
    check('kvtier_tenant_quota_bytes{tenant="small",tier="dram"} 1048576' in body, "/metrics shows quotas")
finally:
    srv.stop()
print("PASS")
