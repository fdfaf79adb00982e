#!/usr/bin/env python3
"""test_big — 64 MiB values round-trip while other clients keep getting fast answers:
the big SET's value is read into its DRAM blocks at most 8 MiB per wake-up (or, when it
cannot be, runs on a worker thread) and the big GET is streamed from a pinned lease
window by window, so neither stalls the event loop.
usage: test_big.py path/to/kvtier-serve"""
import hashlib
import os
import threading
import time

from kvtharness import Server, binary_arg, check, need_redis_py

need_redis_py()
import redis  # noqa: E402

binary = binary_arg()
srv = Server(binary, config="[server]\ndram_bytes = 400M\n")
try:
    r = redis.Redis(port=srv.port)
    big = os.urandom(64 << 20)
    digest = hashlib.sha256(big).digest()
    lat = []
    stop = threading.Event()

    def pinger():
        p = redis.Redis(port=srv.port)
        p.set("small", "v")
        while not stop.is_set():
            t0 = time.perf_counter()
            assert p.get("small") == b"v"
            lat.append(time.perf_counter() - t0)
            time.sleep(0.002)

    th = threading.Thread(target=pinger)
    th.start()
    time.sleep(0.2)
    t0 = time.time()
    for i in range(3):
        check(r.set("big%d" % i, big) is True, "SET of a 64 MiB value (%d)" % i)
    for i in range(3):
        got = r.get("big%d" % i)
        check(got is not None and len(got) == len(big) and hashlib.sha256(got).digest() == digest,
              "GET of the 64 MiB value is byte-identical (%d)" % i)
    took = time.time() - t0
    stop.set()
    th.join()
    lat.sort()
    worst = lat[-1] if lat else 0
    p99 = lat[int(len(lat) * 0.99)] if lat else 0
    print("big transfers took %.2f s; concurrent small GETs: %d, p99 %.1f ms, max %.1f ms"
          % (took, len(lat), p99 * 1e3, worst * 1e3))
    # the small client's worst wait must be far below the time of one big transfer
    check(len(lat) > 20 and p99 < 0.1, "small GETs were served while 64 MiB values moved (p99 %.1f ms)" % (p99 * 1e3))
    r.set("big0", "shrunk")
    check(r.get("big0") == b"shrunk", "overwrite a 64 MiB value with a small one")
    check(r.delete("big1", "big2") == 2 and r.get("big1") is None, "DEL of big values")
finally:
    srv.stop()
print("PASS")
