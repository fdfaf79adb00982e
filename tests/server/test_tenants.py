#!/usr/bin/env python3
"""test_tenants — tenant isolation (invariant 5) through the Redis protocol: two tenants
with the same key names and namespace names never see, read, delete or count each other's
data; unauthenticated access only when configured; namespace permissions.
usage: test_tenants.py path/to/kvtier-serve"""
import os
import struct

from kvtharness import Err, Server, binary_arg, check, need_redis_py

need_redis_py()
import redis  # noqa: E402

binary = binary_arg()
CONF = """
[server]
dram_bytes = 64M
[tenant:alice]
password = alice-pw
namespaces = llama, shared
[tenant:bob]
password = bob-pw
namespaces = *
"""


def toks(seq):
    return struct.pack("<%dI" % len(seq), *seq)


srv = Server(binary, config=CONF)
try:
    # no default tenant configured: unauthenticated clients can do nothing but AUTH/HELLO
    c = srv.raw()
    check(c.call("PING").startswith("NOAUTH"), "no unauthenticated access unless configured")
    check(c.call("AUTH", "alice", "bob-pw").startswith("WRONGPASS"), "another tenant's password is refused")
    check(c.call("AUTH", "mallory", "x").startswith("WRONGPASS"), "unknown user is refused")
    check(c.call("AUTH", "whatever").startswith("ERR AUTH <password> called without"),
          "AUTH <password> without a default user is refused")
    check(c.call("AUTH", "alice", "alice-pw") == "OK", "AUTH alice")
    c.close()

    a = redis.Redis(port=srv.port, username="alice", password="alice-pw")
    b = redis.Redis(port=srv.port, username="bob", password="bob-pw")
    a.set("k", "alice's value")
    b.set("k", "bob's value")
    a.set("only-a", "secret" * 1000)  # chained (> 4 KiB)
    check(a.get("k") == b"alice's value" and b.get("k") == b"bob's value", "same key, separate values")
    check(b.get("only-a") is None and b.exists("only-a") == 0, "bob cannot read or see alice's key")
    check(b.ttl("only-a") == -2 and b.expire("only-a", 1) is False, "bob cannot TTL or EXPIRE alice's key")
    check(b.delete("only-a") == 0 and a.get("only-a") == b"secret" * 1000, "bob cannot delete alice's key")
    check(a.dbsize() == 2 and b.dbsize() == 1, "DBSIZE is per tenant")
    b.set("only-a", "bob's own")
    check(a.get("only-a") == b"secret" * 1000, "bob writing the same key leaves alice's intact")
    check("used_memory" not in b.info("memory"), "INFO hides engine-wide usage from non-admin tenants")
    # connections and network bytes: per tenant, not server-wide (alice's traffic is hers)
    ai0 = a.info("stats")
    a.set("big", os.urandom(300000))
    check(len(a.get("big")) == 300000, "alice moves 600 kB")
    extra = [redis.Redis(port=srv.port, username="alice", password="alice-pw") for _ in range(3)]
    for e in extra:
        e.ping()
    bi = b.info()
    ai = a.info()
    check(ai["total_net_input_bytes"] - ai0["total_net_input_bytes"] >= 300000,
          "INFO net input bytes count the tenant's own traffic")
    check(bi["total_net_input_bytes"] < 100000 and bi["total_net_output_bytes"] < 100000,
          "another tenant's INFO does not show alice's bytes (%d in, %d out)"
          % (bi["total_net_input_bytes"], bi["total_net_output_bytes"]))
    check(bi["connected_clients"] == 1 and ai["connected_clients"] == 4,
          "connected_clients is the tenant's own (bob 1, alice 4)")
    check(bi["total_connections_received"] <= 2, "total_connections_received is the tenant's own")
    for e in extra:
        e.close()

    # KVT namespaces are per tenant
    ra, rb = srv.raw(), srv.raw()
    ra.call("AUTH", "alice", "alice-pw")
    rb.call("AUTH", "bob", "bob-pw")
    check(ra.call("KVT.NS.CREATE", "llama", 2, 1, 8, "fp16", 4) == "OK", "alice creates namespace llama")
    check(isinstance(ra.call("KVT.NS.CREATE", "other", 2, 1, 8, "fp16", 4), Err),
          "alice may not create a namespace outside her list (NOPERM)")
    check(isinstance(rb.call("KVT.MATCH", "llama", toks(range(8))), Err),
          "bob does not see alice's namespace")
    bb = 2 * 2 * 4 * 1 * 8 * 2  # layers*2*block_tokens*kv_heads*head_dim*2
    kv = bytes(range(256)) * (2 * bb // 256)
    check(ra.call("KVT.PUT", "llama", toks(range(8)), kv) == 2, "alice stores 2 blocks")
    check(rb.call("KVT.NS.CREATE", "llama", 2, 1, 8, "fp16", 4) == "OK", "bob creates his own llama")
    m = rb.call("KVT.MATCH", "llama", toks(range(8)))
    check(m[1] == 0, "bob's llama does not match alice's prefix")
    check(rb.call("KVT.GET", "llama", toks(range(8))) == b"", "bob's KVT.GET returns nothing")
    m = ra.call("KVT.MATCH", "llama", toks(range(8)))
    check(m[1] == 8, "alice still matches her 8 tokens")
    check(ra.call("KVT.GET", "llama", toks(range(8))) == kv, "alice reads her bytes back")
    check(rb.call("KVT.NS.LIST") == [b"llama"] and ra.call("KVT.NS.LIST") == [b"llama"],
          "KVT.NS.LIST shows only the tenant's namespaces")
    st = rb.call("KVT.STATS")
    d = dict(zip(st[::2], st[1::2]))
    check(b"engine_dram_used_bytes" not in d and d[b"tenant_prefix_lookups"] == 2,
          "KVT.STATS shows the tenant's own counters only")
finally:
    srv.stop()

# unauthenticated access when configured: a [tenant:default] with nopass
srv = Server(binary, config="[tenant:default]\nnopass = yes\n[tenant:carol]\npassword = c\n")
try:
    d = redis.Redis(port=srv.port)
    d.set("x", "default's")
    c = redis.Redis(port=srv.port, username="carol", password="c")
    check(d.get("x") == b"default's" and c.get("x") is None, "nopass default tenant is separate from carol")
finally:
    srv.stop()
print("PASS")
