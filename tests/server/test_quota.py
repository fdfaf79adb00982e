#!/usr/bin/env python3
"""test_quota — per-tenant quotas. DRAM only (data_dir = none): a tenant over its quota
evicts only its own least recently used data; another tenant's values and prefixes survive;
a value larger than the quota gets a clear -OOM error. With the persistent tiers: a DRAM
quota demotes the tenant's blocks to disk (they stay readable), its disk quota
(quota_disk, kvt_tenant_set_quota) bounds what it keeps there, and the other tenant is
untouched. usage: test_quota.py path/to/kvtier-serve"""
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
srv = Server(binary, config=CONF, metrics=True, data_dir=None)
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

# persistent tiers: a DRAM quota demotes (values stay readable from disk); quota_disk bounds
CONF2 = """
[server]
dram_bytes = 16M
disk_bytes = 256M
[tenant:small]
password = s
quota_dram = 1M
quota_disk = 3M
[tenant:mid]
password = m
quota_dram = 1M
[tenant:big]
password = b
"""
srv = Server(binary, config=CONF2, metrics=True)
try:
    s = redis.Redis(port=srv.port, username="small", password="s")
    m = redis.Redis(port=srv.port, username="mid", password="m")
    b = redis.Redis(port=srv.port, username="big", password="b")
    bvals = {"b%d" % i: os.urandom(60000) for i in range(40)}
    for k, v in bvals.items():
        b.set(k, v)
    mvals = {"m%d" % i: os.urandom(60000) for i in range(48)}  # ~3 MiB into a 1 MiB DRAM quota
    for k, v in mvals.items():
        m.set(k, v)
    m.execute_command("KVT.FLUSH")
    present = [k for k, v in mvals.items() if m.get(k) == v]
    check(len(present) == 48, "beyond its DRAM quota a tenant's values are demoted to disk, not "
          "lost (%d of 48 readable)" % len(present))
    check(m.info("stats")["tenant_keyspace_hits_disk"] > 0, "INFO: hits served from disk")
    svals = {"s%d" % i: os.urandom(60000) for i in range(128)}  # ~8 MiB: DRAM 1M + disk 3M
    for k, v in svals.items():
        s.set(k, v)
    try:
        s.execute_command("KVT.FLUSH")
    except redis.exceptions.ResponseError as e:  # a full quota may leave blocks DRAM-only
        check("no space" in str(e), "KVT.FLUSH over the disk quota says why: %s" % e)
    present = [k for k, v in svals.items() if s.get(k) == v]
    check(0 < len(present) <= 70, "its disk quota of 3 MiB bounds what it keeps (%d of 128 values)"
          % len(present))
    bad = [k for k, v in svals.items() if s.get(k) not in (None, v)]
    check(not bad, "a dropped value is a miss, never partial or wrong data")
    check(all(b.get(k) == v for k, v in bvals.items()), "the other tenants' values are all intact")
    check(all(m.get(k) == v for k, v in mvals.items()), "... and the mid tenant's too")
    info = s.info("kvtier")
    check(info.get("tenant_quota_disk") == 3 << 20 and info.get("tenant_quota_dram") == 1 << 20,
          "INFO kvtier shows the tenant's quotas per tier")
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.metrics_port, timeout=5).read().decode()
    check('kvtier_tenant_quota_bytes{tenant="small",tier="disk"} 3145728' in body,
          "/metrics shows the disk quota")
    check('kvtier_engine_tier_used_bytes{tier="disk"}' in body, "/metrics has per-tier figures")
finally:
    srv.stop()
print("PASS")
