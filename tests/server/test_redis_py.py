#!/usr/bin/env python3
"""test_redis_py — redis-py (Debian's python3-redis) against kvtier-serve: the GET/SET
family, EXPIRE/TTL, AUTH, INFO, CLIENT, COMMAND, pipelining, the Unix socket, RESP3 via
HELLO, values of odd sizes around the block boundaries, and /metrics.
usage: test_redis_py.py path/to/kvtier-serve"""
import os
import random
import time
import urllib.request

from kvtharness import Server, binary_arg, check, need_redis_py

need_redis_py()
import redis  # noqa: E402

SEED = 6
print("seed", SEED)
rng = random.Random(SEED)
binary = binary_arg()

srv = Server(binary, config="[server]\nrequirepass = s3cret\n", metrics=True)
try:
    # ---- AUTH
    r0 = redis.Redis(port=srv.port)
    try:
        r0.get("x")
        check(False, "commands before AUTH are refused")
    except redis.exceptions.AuthenticationError:
        check(True, "commands before AUTH are refused (NOAUTH)")
    except redis.exceptions.ResponseError as e:
        check("NOAUTH" in str(e), "commands before AUTH are refused (NOAUTH)")
    try:
        redis.Redis(port=srv.port, password="wrong").ping()
        check(False, "a wrong password is refused")
    except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError) as e:
        check("WRONGPASS" in str(e) or "invalid" in str(e), "a wrong password is refused")
    r = redis.Redis(port=srv.port, password="s3cret")
    check(r.ping() is True, "AUTH <password> then PING")
    ru = redis.Redis(port=srv.port, username="default", password="s3cret")
    check(ru.ping() is True, "AUTH default <password> (user + password)")

    # ---- GET/SET family
    check(r.set("foo", "bar") is True, "SET")
    check(r.get("foo") == b"bar", "GET")
    check(r.get("nope") is None, "GET of a missing key is nil")
    check(r.set("foo", "x", nx=True) is None, "SET NX on an existing key does nothing")
    check(r.set("new", "1", xx=True) is None, "SET XX on a missing key does nothing")
    check(r.set("new", "1", nx=True) is True and r.get("new") == b"1", "SET NX on a missing key")
    check(r.set("new", "2", xx=True) is True and r.get("new") == b"2", "SET XX on an existing key")
    check(r.mset({"a": "1", "b": "2", "c": "3"}) is True, "MSET")
    check(r.mget("a", "b", "nope", "c") == [b"1", b"2", None, b"3"], "MGET with a missing key")
    check(r.exists("a", "b", "nope", "a") == 3, "EXISTS counts repeats, skips missing")
    check(r.delete("a", "nope") == 1 and r.get("a") is None, "DEL")
    check(r.dbsize() == 4, "DBSIZE (foo, new, b, c)")
    check(r.ttl("b") == -1 and r.ttl("nope") == -2, "TTL: -1 without expiry, -2 when missing")
    check(r.expire("b", 100) is True and 99 <= r.ttl("b") <= 100, "EXPIRE then TTL")
    check(r.get("b") == b"2", "the value survives EXPIRE (meta block rewritten)")
    check(r.pexpire("c", 150) is True and 0 < r.pttl("c") <= 150, "PEXPIRE then PTTL")
    time.sleep(0.3)
    check(r.get("c") is None and r.exists("c") == 0, "an expired key is gone")
    check(r.persist("b") is True and r.ttl("b") == -1, "PERSIST")
    check(r.set("ex", "v", ex=100) and 99 <= r.ttl("ex") <= 100, "SET EX")
    check(r.set("px", "v", px=100000) and 99000 < r.pttl("px") <= 100000, "SET PX")
    check(r.set("ex", "w", keepttl=True) and r.ttl("ex") > 90 and r.get("ex") == b"w", "SET KEEPTTL")
    check(r.set("ex", "z") and r.ttl("ex") == -1, "SET without options clears the TTL")
    check(r.expire("ex", -1) is True and r.get("ex") is None, "EXPIRE in the past deletes")
    check(r.expire("nope", 10) is False, "EXPIRE of a missing key")
    try:
        r.set("k", "v", ex=0)
        check(False, "SET EX 0 is an error")
    except redis.exceptions.ResponseError as e:
        check("invalid expire" in str(e), "SET EX 0 is an error: %s" % e)

    # ---- values of odd sizes, binary, around the 4 KiB block and the inline limit
    B = 4096
    sizes = [0, 1, 2, B - 48 - 3 - 1, B - 48 - 3, B - 48 - 2, B - 1, B, B + 1, 2 * B, 3 * B + 7,
             100000, (1 << 20) + 3]
    vals = {}
    for i, n in enumerate(sizes):
        k = "v%d" % i
        vals[k] = os.urandom(n) if n else b""
        r.set(k, vals[k])
    check(all(r.get(k) == v for k, v in vals.items()), "odd-sized binary values round-trip (%d sizes)" % len(sizes))
    check(r.mget(list(vals)) == list(vals.values()), "MGET of odd-sized values")
    # overwrite with shorter/longer values (chain replaced, no stale tail)
    for k in list(vals):
        n = rng.randrange(0, 3 * B)
        vals[k] = os.urandom(n)
        r.set(k, vals[k])
    check(all(r.get(k) == v for k, v in vals.items()), "overwrites with other sizes")
    kb = b"\x00\xffkey\r\nwith binary"
    r.set(kb, b"binary key")
    check(r.get(kb) == b"binary key", "binary-safe keys")

    # ---- pipelining
    p = r.pipeline(transaction=False)
    for i in range(5000):
        p.set("p%d" % i, str(i))
    for i in range(5000):
        p.get("p%d" % i)
    res = p.execute()
    check(all(x is True for x in res[:5000]) and res[5000:] == [str(i).encode() for i in range(5000)],
          "pipelined 5000 SET + 5000 GET")

    # ---- INFO, CLIENT, COMMAND, CONFIG
    info = r.info()
    check(info.get("redis_version") and "connected_clients" in info and "keyspace_hits" in info,
          "INFO parses (redis_version, connected_clients, keyspace_hits)")
    check(info["db0"]["keys"] >= 5000, "INFO keyspace db0 keys")
    ik = r.info("kvtier")
    check(ik["tiers"] == "dram,disk" and ik["disk_capacity"] > 0 and "disk_used" in ik,
          "INFO kvtier section: tiers and per-tier figures")
    check(r.info("persistence")["kvtier_persistent"] == 1, "INFO persistence: persistent tiers")
    check(r.client_setname("worker-1") and r.client_getname() == "worker-1", "CLIENT SETNAME/GETNAME")
    check(isinstance(r.client_id(), int), "CLIENT ID")
    check(r.command_count() > 20, "COMMAND COUNT")
    cmds = r.command()
    check(len(cmds) > 20 and cmds["get"]["arity"] == 2, "COMMAND lists commands (redis-py parses them)")
    check(r.config_get("maxclients") == {"maxclients": "10000"}, "CONFIG GET maxclients")
    check(r.echo("hi") == b"hi", "ECHO")
    try:
        r.execute_command("NOSUCH", "a")
        check(False, "unknown command")
    except redis.exceptions.ResponseError as e:
        check("unknown command" in str(e), "unknown command error: %s" % e)
    try:
        r.execute_command("GET")
        check(False, "wrong arity")
    except redis.exceptions.ResponseError as e:
        check("wrong number of arguments" in str(e), "wrong arity error")

    # ---- Unix socket
    rs = redis.Redis(unix_socket_path=srv.sock, password="s3cret")
    check(rs.get("foo") == b"bar", "the Unix socket serves the same data")

    # ---- RESP3 via HELLO (redis-py 4.3 speaks RESP2 only: raw client)
    c = srv.raw()
    h = c.call("HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "r3")
    check(isinstance(h, dict) and h[b"proto"] == 3 and h[b"server"] == b"redis", "HELLO 3 returns a map")
    check(c.call("GET", "nope") is None and c.buf == b"", "RESP3 null for a missing key")
    m = c.call("KVT.STATS")
    check(isinstance(m, dict) and b"tenant_kv_hits" in m, "KVT.STATS is a map in RESP3")
    check(c.call("HELLO", "4").startswith("NOPROTO"), "HELLO 4: NOPROTO")
    c.close()

    # ---- QUIT
    c = srv.raw()
    c.call("AUTH", "s3cret")
    check(c.call("QUIT") == "OK" and c.closed(), "QUIT replies OK and closes")

    # ---- /metrics
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.metrics_port, timeout=5).read().decode()
    hits = [l for l in body.splitlines() if l.startswith('kvtier_kv_hits_total{tenant="default"')]
    check(hits and int(hits[0].split()[-1]) > 5000, "/metrics: hits by tenant and tier")
    check('kvtier_command_duration_seconds_bucket{cmd="get",le="+Inf"}' in body, "/metrics: latency histogram")
    check("kvtier_engine_blocks_evicted_total" in body and "kvtier_engine_tier_read_bytes_total" in body,
          "/metrics: evictions and tier I/O")
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/nope" % srv.metrics_port, timeout=5)
        check(False, "/nope is 404")
    except urllib.error.HTTPError as e:
        check(e.code == 404, "/nope is 404")
finally:
    srv.stop()
print("PASS")
