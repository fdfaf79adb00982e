#!/usr/bin/env python3
"""test_ingest — SET values of 32 KiB and up are read from the socket straight into their
DRAM blocks (server.c "Ingest"). Checks, each against a running server:
  - values of many sizes round-trip byte for byte, and the path was taken
    (values_received_in_place in INFO grows);
  - a value sent in small pieces, slowly, with other clients served meanwhile;
  - a value whose request ends badly (bad option, NX on a live key, wrong CRLF) leaves the
    old value and gives its DRAM back; a client that disconnects mid-value too;
  - pipelined commands after an ingested value run in order;
  - an unauthenticated client's big SET is refused (NOAUTH) and ingests nothing;
  - a value over the tenant's DRAM quota takes the buffered path (stored in passes).
usage: test_ingest.py path/to/kvtier-serve"""
import os
import socket
import time

from kvtharness import Err, Server, binary_arg, check, need_redis_py

need_redis_py()
import redis  # noqa: E402

binary = binary_arg()
cfg = ("[server]\ndram_bytes = 256M\n[tenant:default]\nnopass = yes\nadmin = yes\n"
       "[tenant:small]\npassword = pw\nquota_dram = 1M\n")
srv = Server(binary, config=cfg)


def info(r, key):
    return int(r.info("all")[key])


def setcmd(key, val, *opts):
    parts = [b"SET", key.encode(), val] + [o.encode() for o in opts]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


try:
    r = redis.Redis(port=srv.port)
    kv = r.info("kvtier")
    check(kv["persist_delay_ms"] == 1000 and kv["ingest_min_bytes"] == 32768,
          "INFO kvtier shows the write-back window (1000 ms) and ingest_min_bytes (32768)")
    n0 = info(r, "values_received_in_place")
    sizes = [32 << 10, (32 << 10) + 1, 100000, 131072, 131073, 1 << 20, 3_000_007]
    vals = {s: os.urandom(s) for s in sizes}
    for s, v in vals.items():
        check(r.set("v%d" % s, v) is True, "SET of %d bytes" % s)
    for s, v in vals.items():
        check(r.get("v%d" % s) == v, "GET of the %d-byte value is byte-identical" % s)
    n1 = info(r, "values_received_in_place")
    check(n1 > n0, "values were received in place (%d of %d SETs)" % (n1 - n0, len(sizes)))

    # slowly, in pieces, while another client is served
    other = redis.Redis(port=srv.port)
    other.set("small", "x")
    big = os.urandom(200_000)
    c = srv.raw()
    msg = setcmd("slow", big)
    lat = []
    served = 0
    for i in range(0, len(msg), 7000):
        c.send(msg[i:i + 7000])
        t0 = time.perf_counter()
        served += other.get("small") == b"x"
        lat.append(time.perf_counter() - t0)
        time.sleep(0.002)
    check(served == len(lat), "another client is served during a slow SET (%d GETs)" % served)
    check(c.reply() == "OK", "a value sent in pieces is stored")
    check(r.get("slow") == big, "and reads back byte-identical")
    check(max(lat) < 0.5, "other clients waited at most %.1f ms" % (max(lat) * 1e3))

    # requests that end badly: old value kept, DRAM given back
    r.set("keep", b"old")
    used0 = info(r, "dram_used")
    c.send(setcmd("keep", os.urandom(300_000), "BOGUS"))
    check(isinstance(c.reply(), Err), "a bad option after an ingested value is an error")
    c.send(setcmd("keep", os.urandom(300_000), "EX", "notanumber"))
    check(isinstance(c.reply(), Err), "a bad expiry after an ingested value is an error")
    r.set("live", b"L")
    c.send(setcmd("live", os.urandom(300_000), "NX"))
    check(c.reply() is None, "SET NX of a live key with a big value: not stored")
    check(r.get("keep") == b"old" and r.get("live") == b"L", "the old values are intact")
    check(info(r, "dram_used") <= used0 + 4096, "the reservations were given back (%d -> %d)"
          % (used0, info(r, "dram_used")))
    bad = setcmd("keep", os.urandom(100_000))
    bad = bad[:-2] + b"XX"  # not CRLF after the value
    c.send(bad)
    check(c.closed(), "a value not ended by CRLF: protocol error, connection closed")
    check(r.get("keep") == b"old", "the old value survives the protocol error")

    # disconnect in the middle of a value
    for cut in (10, 5000, 250_000):
        d = srv.raw()
        d.send(setcmd("cut", os.urandom(300_000))[:cut])
        time.sleep(0.05)
        d.close()
    time.sleep(0.2)
    check(r.get("cut") is None, "values cut off by a disconnect are not stored")
    check(info(r, "dram_used") <= used0 + 4096, "their reservations were given back")
    check(r.ping(), "the server keeps serving")

    # pipelined after an ingested value
    p = srv.raw()
    p.send(setcmd("pa", vals[131072]) + setcmd("pb", b"small") + b"*2\r\n$3\r\nGET\r\n$2\r\npa\r\n"
           + setcmd("pa", vals[100000]) + b"*2\r\n$3\r\nGET\r\n$2\r\npa\r\n")
    out = [p.reply() for _ in range(5)]
    check(out == ["OK", "OK", vals[131072], "OK", vals[100000]], "pipelined commands run in order")

    # no authentication, no ingest
    srv2 = Server(binary, config="[server]\nrequirepass = secret\n", data_dir=None)
    try:
        u = srv2.raw()
        u.send(setcmd("x", os.urandom(500_000)))
        check(str(u.reply()).startswith("NOAUTH"), "unauthenticated big SET: NOAUTH")
        a = redis.Redis(port=srv2.port, password="secret")
        check(info(a, "values_received_in_place") == 0, "and nothing was received in place")
    finally:
        srv2.stop()

    # over the tenant's DRAM quota: not reserved in place; the buffered path stores it in
    # passes through the persistent tiers (kvt_put), as before
    t = redis.Redis(port=srv.port, username="small", password="pw")
    before = info(r, "values_received_in_place")
    huge = os.urandom(2 << 20)
    check(t.set("huge", huge) is True, "a value over the 1 MiB DRAM quota is stored (in passes)")
    check(info(r, "values_received_in_place") == before, "without an in-place reservation")
    check(t.get("huge") == huge, "and reads back byte-identical")
    check(t.set("fits", vals[100000]) is True and t.get("fits") == vals[100000],
          "a value within the quota is stored")
finally:
    srv.stop()
print("PASS")
