#!/usr/bin/env python3
"""test_restart — the persistent tiers behind the service.

1. SIGTERM flushes: values (inline and chained) and KVT prefixes stored before it are found
   again by a server restarted on the same data_dir (warm restart: from nvme, none in DRAM),
   with the service's namespace registry and key count; KVT.MATCH reports the blocks' real
   tier; KVT.PREFETCH promotes them.
2. kill -9 after KVT.FLUSH (and SAVE) keeps everything stored before the flush.
3. A byte flipped in the nvme slot file: KVT.GET returns the intact blocks before the bad
   one plus a CORRUPT error (never bad bytes); the engine drops the bad block; a Redis value
   whose block is bad is a miss.
usage: test_restart.py path/to/kvtier-serve [path/to/kvtier]"""
import glob
import os
import struct
import time

from kvtharness import Err, Server, binary_arg, check

binary = binary_arg()
ARGS = ["--dram-bytes", "64M", "--nvme-bytes", "32M", "--disk-bytes", "128M"]


def start(dir=None):
    return Server(binary, args=ARGS, dir=dir)


def toks(a, n):
    return struct.pack("<%dI" % n, *range(a, a + n))


BB = 4096  # 1 layer, 1 head, head_dim 64, fp16, 16 tokens
small, big = b"hello", os.urandom(100000)
p1 = toks(0, 64)
kv1 = os.urandom(4 * BB)

# ---- 1. SIGTERM, restart
a = start()
d = a.dir
try:
    c = a.raw()
    check(c.call("SET", "small", small) == "OK" and c.call("SET", "big", big) == "OK", "SET two values")
    check(c.call("SET", "ttl", "x", "EX", "1000") == "OK", "SET with a TTL")
    check(c.call("KVT.NS.CREATE", "m", 1, 1, 64, "fp16", 16) == "OK", "KVT.NS.CREATE")
    check(c.call("KVT.PUT", "m", p1, kv1) == 4, "KVT.PUT 4 blocks")
    m = c.call("KVT.MATCH", "m", p1)
    check(m[7] == [[b"dram", 0, 4]], "before the restart the blocks are in DRAM: %r" % (m[7],))
finally:
    a.stop(keep=True)
check(os.path.exists(os.path.join(d, "data", "serve-registry")), "the registry is in the data dir")

b = start(d)
try:
    c = b.raw()
    check(c.call("GET", "small") == small, "warm restart: the inline value")
    check(c.call("GET", "big") == big, "warm restart: the 100 kB chained value, byte-identical")
    check(0 < c.call("TTL", "ttl") <= 1000, "the TTL survives")
    check(c.call("DBSIZE") == 3, "DBSIZE survives (the registry's key count)")
    check(c.call("KVT.NS.LIST") == [b"m"], "the KVT namespace is reopened from the registry")
    m = c.call("KVT.MATCH", "m", p1)
    check(m[1] == 64, "KVT.MATCH hits the whole prefix after the restart")
    check(m[7] == [[b"nvme", 0, 4]], "its blocks are reported on nvme (none in DRAM): %r" % (m[7],))
    st = c.call("KVT.STATS")
    st = dict(zip(st[::2], st[1::2]))
    check(st[b"engine_restored_blocks"] > 0, "KVT.STATS: restored blocks (%d)" % st[b"engine_restored_blocks"])
    check(st[b"tenant_prefix_hit_tokens_nvme"] == 64, "KVT.STATS: the hit counted on nvme")
    check(c.call("KVT.PREFETCH", "m", p1) == 4, "KVT.PREFETCH: 4 blocks")
    tiers = None
    for _ in range(100):
        tiers = c.call("KVT.MATCH", "m", p1)[7]
        if tiers == [[b"dram", 0, 4]]:
            break
        time.sleep(0.02)
    check(tiers == [[b"dram", 0, 4]], "after the prefetch the blocks are in DRAM: %r" % (tiers,))
    check(c.call("KVT.GET", "m", p1) == kv1, "KVT.GET: the prefix's bytes")
    # ---- 2. durability point, then kill -9
    p2 = toks(5000, 48)
    kv2 = os.urandom(3 * BB)
    check(c.call("KVT.PUT", "m", p2, kv2) == 3, "KVT.PUT a second prefix")
    check(c.call("SET", "after", b"flushed") == "OK", "SET a new value")
    check(c.call("KVT.FLUSH") == "OK", "KVT.FLUSH")
    check(c.call("SAVE") == "OK", "SAVE maps to the same flush")
    check(abs(c.call("LASTSAVE") - time.time()) < 60, "LASTSAVE: the last flush's time")
    check(c.call("INFO", "persistence").find(b"rdb_last_bgsave_status:ok") >= 0, "INFO persistence")
finally:
    b.kill9()

e = start(d)
try:
    c = e.raw()
    check(c.call("GET", "after") == b"flushed", "kill -9 after KVT.FLUSH: the new value is kept")
    check(c.call("GET", "big") == big, "... and the older ones")
    check(c.call("KVT.GET", "m", p2) == kv2, "... and the second prefix")
    check(c.call("KVT.MATCH", "m", p1)[1] == 64, "... and the first")
finally:
    e.stop(keep=True)

# ---- 3. corruption: flip a byte of kv1's block 2 in the nvme slot file
files = [f for f in glob.glob(os.path.join(d, "data", "nvme", "**"), recursive=True) if os.path.isfile(f)]
flipped = False
for f in files:
    with open(f, "r+b") as fh:
        data = fh.read()
        at = data.find(kv1[2 * BB:2 * BB + 64])
        if at >= 0:
            fh.seek(at + 100)
            fh.write(bytes([data[at + 100] ^ 0xFF]))
            flipped = True
            break
check(flipped, "found block 2 of the prefix in the nvme slot file and flipped a byte")

g = start(d)
try:
    c = g.raw()
    r = c.call("KVT.GET", "m", p1)
    check(isinstance(r, list) and len(r) == 2, "KVT.GET over a corrupt block: [intact bytes, error]")
    check(r[0] == kv1[:2 * BB], "the first element is exactly the 2 intact blocks before it")
    check(isinstance(r[1], Err) and r[1].startswith("CORRUPT block 2"),
          "the second is a CORRUPT error naming the block: %s" % r[1])
    m = c.call("KVT.MATCH", "m", p1)
    check(m[1] == 32, "the engine dropped the bad block and what follows: the prefix is 2 blocks")
    check(c.call("KVT.GET", "m", p1) == kv1[:2 * BB], "a KVT.GET now returns the 2 intact blocks")
    check(c.call("GET", "big") == big, "the other data is intact")
    st = c.call("KVT.STATS")
    st = dict(zip(st[::2], st[1::2]))
    check(st[b"tenant_prefix_corrupt_reads"] == 1 and st[b"engine_checksum_failures"] >= 1,
          "KVT.STATS counts the corrupt read")
finally:
    g.stop()
print("PASS")
