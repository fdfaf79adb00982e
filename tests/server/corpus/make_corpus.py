#!/usr/bin/env python3
"""Regenerate the seed corpus of server/fuzz_resp.c (tests/server/corpus/resp/) and its
dictionary (resp.dict): valid requests of every command, pipelines, RESP3 HELLO, inline
commands, bulk strings with wrong lengths, truncated and oversize frames. Deterministic."""
import os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "resp")


def cmd(*args):
    b = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        b += b"$%d\r\n%s\r\n" % (len(a), a)
    return b


def toks(*t):
    return b"".join(struct.pack("<I", x) for x in t)


# namespace "m": 1 layer, 1 head, head_dim 4, fp16, 2 tokens/block -> 1*2*2*1*4*2 = 32 B
NS = cmd("KVT.NS.CREATE", "m", 1, 1, 4, "fp16", 2)
seeds = {
    "ping": cmd("PING"),
    "ping_msg": cmd("PING", "hello"),
    "echo": cmd("ECHO", b"\x00\xff\r\n"),
    "set_get": cmd("SET", "k", "v") + cmd("GET", "k"),
    "set_opts": cmd("SET", "k", "v", "EX", 100) + cmd("SET", "k", "w", "PX", 5000, "XX")
    + cmd("SET", "n", "1", "NX") + cmd("SET", "k", "z", "KEEPTTL") + cmd("SET", "k", "v", "EXAT", 4102444800)
    + cmd("SET", "k", "v", "PXAT", 4102444800000) + cmd("SET", "k", "v", "GET") + cmd("TTL", "k"),
    "set_chain": cmd("SET", "big", b"x" * 1500) + cmd("GET", "big") + cmd("SET", "big", b"y" * 700) + cmd("GET", "big"),
    "ingest": cmd("SET", "g", b"i" * 2000) + cmd("GET", "g") + cmd("SET", "g", b"j" * 3000, "NX")
    + cmd("SET", "g", b"k" * 1000, "BOGUS") + cmd("SET", "g", b"l" * 800, "EX", "x") + cmd("GET", "g"),
    "ingest_badcrlf": b"*3\r\n$3\r\nSET\r\n$1\r\nh\r\n$900\r\n" + b"z" * 900 + b"XX",
    "ingest_cut": b"*3\r\n$3\r\nSET\r\n$1\r\nh\r\n$5000\r\n" + b"z" * 1000,
    "set_boundary": cmd("SET", "b", b"q" * 460) + cmd("SET", "c", b"q" * 512) + cmd("MGET", "b", "c", "nope"),
    "mset_mget": cmd("MSET", "a", "1", "b", "2", "c", b"3" * 900) + cmd("MGET", "a", "b", "c", "d"),
    "exists_del": cmd("SET", "a", "1") + cmd("EXISTS", "a", "b", "a") + cmd("DEL", "a", "b") + cmd("UNLINK", "a"),
    "expire": cmd("SET", "a", "1") + cmd("EXPIRE", "a", 100) + cmd("PEXPIRE", "a", 100000, "GT")
    + cmd("EXPIREAT", "a", 4102444800, "NX") + cmd("PEXPIREAT", "a", 4102444800000, "LT")
    + cmd("TTL", "a") + cmd("PTTL", "a") + cmd("PERSIST", "a") + cmd("EXPIRE", "a", 0) + cmd("GET", "a"),
    "expire_neg": cmd("SET", "a", "1") + cmd("EXPIRE", "a", -5) + cmd("EXISTS", "a") + cmd("DBSIZE"),
    "hello3": cmd("HELLO", 3) + cmd("SET", "k", "v") + cmd("GET", "k") + cmd("GET", "nil")
    + cmd("INFO", "keyspace") + cmd("CONFIG", "GET", "maxclients") + cmd("KVT.STATS"),
    "hello3_auth": cmd("HELLO", 3, "AUTH", "alice", "pw", "SETNAME", "w1") + cmd("CLIENT", "INFO") + cmd("KVT.STATS"),
    "hello2": cmd("HELLO", 2) + cmd("HELLO") + cmd("HELLO", 4),
    "auth": cmd("AUTH", "alice", "pw") + cmd("SET", "x", "y") + cmd("AUTH", "alice", "bad") + cmd("AUTH", "pw"),
    "client": cmd("CLIENT", "SETNAME", "abc") + cmd("CLIENT", "GETNAME") + cmd("CLIENT", "ID")
    + cmd("CLIENT", "SETINFO", "lib-name", "x") + cmd("CLIENT", "LIST"),
    "command": cmd("COMMAND", "COUNT") + cmd("COMMAND", "INFO", "get", "set") + cmd("COMMAND", "DOCS", "get"),
    "command_all": cmd("COMMAND"),
    "info": cmd("INFO") + cmd("INFO", "all") + cmd("INFO", "kvtier") + cmd("TIME") + cmd("SELECT", 0) + cmd("SELECT", 1),
    "config": cmd("CONFIG", "GET", "*") + cmd("CONFIG", "SET", "x", "y"),
    "quit": cmd("SET", "a", "b") + cmd("QUIT") + cmd("GET", "a"),
    "lastsave": cmd("LASTSAVE") + cmd("SAVE") + cmd("KVT.FLUSH"),
    "kvt_ns": NS + cmd("KVT.NS.INFO", "m") + cmd("KVT.NS.LIST") + NS + cmd("KVT.NS.CREATE", "m", 2, 1, 4, "bf16", 2),
    "kvt_put_get": NS + cmd("KVT.PUT", "m", toks(1, 2, 3, 4), bytes(range(64)))
    + cmd("KVT.MATCH", "m", toks(1, 2, 3, 4, 5)) + cmd("KVT.GET", "m", toks(1, 2, 3, 4, 5))
    + cmd("KVT.PREFETCH", "m", toks(1, 2)) + cmd("KVT.STATS", "m"),
    "kvt_put_from": NS + cmd("KVT.PUT", "m", toks(1, 2), b"a" * 32) + cmd("KVT.PUT", "m", toks(1, 2, 3, 4), b"b" * 32, "FROM", 1)
    + cmd("KVT.PUT", "m", toks(9, 9, 3, 4), b"b" * 32, "FROM", 1) + cmd("KVT.GET", "m", toks(1, 2, 3, 4)),
    "kvt_put_ttl": NS + cmd("KVT.PUT", "m", toks(1, 2), b"a" * 32, "TTL", "5m"),
    "kvt_bad": NS + cmd("KVT.PUT", "m", toks(1, 2, 3), b"a" * 31) + cmd("KVT.MATCH", "m", b"abc")
    + cmd("KVT.GET", "zz", toks(1)) + cmd("KVT.NS.CREATE", "q", 0, 1, 4, "fp99", 0),
    "kvt_alice": cmd("AUTH", "alice", "pw") + cmd("KVT.NS.CREATE", "llama", 1, 1, 4, "fp8", 4)
    + cmd("KVT.NS.CREATE", "forbidden", 1, 1, 4, "fp16", 2) + cmd("KVT.PUT", "llama", toks(1, 2, 3, 4), b"z" * 16),
    "pipeline": b"".join(cmd("SET", "k%d" % i, "v" * i) for i in range(20)) + b"".join(cmd("GET", "k%d" % i) for i in range(20)),
    "inline": b"PING\r\nSET a b\r\nGET a\r\nSET \"q k\" 'v v'\r\nECHO \"unbalanced\r\n",
    "inline_lf": b"PING\nGET a\n\n  \nDEL a\n",
    "empty_multibulk": b"*0\r\n*-1\r\n" + cmd("PING"),
    "unknown": cmd("FLUSHALL") + cmd("get") + cmd("GET", "a", "b") + cmd("KEYS", "*") + cmd("MULTI"),
    "noauth_then": cmd("AUTH", "nobody", "x") + cmd("PING"),
    # malformed frames: each ends the connection with an error reply
    "bad_bulk_len_short": b"*2\r\n$3\r\nGET\r\n$5\r\nab\r\n",
    "bad_bulk_len_long": b"*2\r\n$3\r\nGET\r\n$1\r\nabc\r\n",
    "bad_bulk_neg": b"*2\r\n$3\r\nGET\r\n$-1\r\n",
    "bad_bulk_huge": b"*2\r\n$3\r\nSET\r\n$99999999999\r\n",
    "bad_bulk_junk": b"*1\r\n$x\r\nPING\r\n",
    "bad_mbulk_junk": b"*x\r\n",
    "bad_mbulk_huge": b"*99999999\r\n",
    "bad_mbulk_long": b"*" + b"1" * 40 + b"\r\n",
    "bad_dollar": b"*1\r\n:1\r\n",
    "bad_crlf": b"*1\r\n$4\r\nPINGxx",
    "oversize_value": cmd("SET", "big", b"v" * 70000)[:65536],
    "oversize_bulk": b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$300000\r\n" + b"x" * 1000,
    "oversize_key": cmd("SET", b"k" * 600, "v") + cmd("GET", b"k" * 600),
    "oversize_inline": b"PING" + b" " * 66000,
    "truncated_header": b"*3\r\n$3\r\nSE",
    "truncated_bulk": b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc",
    "truncated_pipeline": cmd("SET", "a", "1") + cmd("GET", "a")[:-3],
    "truncated_cr": b"*1\r\n$4\r\nPING\r",
    "binary_key": cmd("SET", b"\x00\r\n\xff", b"\x00" * 513) + cmd("GET", b"\x00\r\n\xff"),
    "nested_resp3_types": b"%1\r\n+a\r\n:1\r\n",
    "arity": cmd("SET") + cmd("SET", "a") + cmd("MSET", "a") + cmd("EXPIRE", "a") + cmd("MGET"),
    "bad_numbers": cmd("EXPIRE", "a", "x") + cmd("SET", "a", "b", "EX", "-1") + cmd("SET", "a", "b", "EX", "99999999999999999999")
    + cmd("SET", "a", "b", "PX", "0") + cmd("SET", "a", "b", "NX", "XX") + cmd("SELECT", "x"),
    "overwrite_race": b"".join(cmd("SET", "k", b"%d" % i * (i * 37 % 1200)) for i in range(30)) + cmd("GET", "k"),
    "many_args": cmd("DEL", *["k%d" % i for i in range(300)]),
}
os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    os.unlink(os.path.join(out, f))
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
words = ["*1\\r\\n", "*2\\r\\n", "*3\\r\\n", "$1\\r\\n", "$3\\r\\n", "\\r\\n", "$-1\\r\\n", "*0\\r\\n",
         "GET", "SET", "MGET", "MSET", "DEL", "EXISTS", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT",
         "TTL", "PTTL", "PERSIST", "DBSIZE", "UNLINK", "PING", "ECHO", "HELLO", "AUTH", "CLIENT",
         "SETNAME", "GETNAME", "SETINFO", "QUIT", "SELECT", "COMMAND", "CONFIG", "INFO", "TIME", "SAVE", "LASTSAVE",
         "KVT.NS.CREATE", "KVT.NS.INFO", "KVT.NS.LIST", "KVT.MATCH", "KVT.PUT", "KVT.GET",
         "KVT.PREFETCH", "KVT.STATS", "KVT.FLUSH", "FROM", "EX", "PX", "EXAT", "PXAT", "NX", "XX", "GT", "LT",
         "KEEPTTL", "fp16", "bf16", "fp32", "fp8", "alice", "pw", "llama"]
with open(os.path.join(here, "resp.dict"), "w") as f:
    for i, w in enumerate(words):
        w = w.replace("\\r", "\\x0D").replace("\\n", "\\x0A")
        f.write('w%d="%s"\n' % (i, w))
print("%d seeds, %d bytes" % (len(seeds), sum(len(v) for v in seeds.values())))
