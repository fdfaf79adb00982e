#!/usr/bin/env python3
"""test_garbage — bad input gets a clear error and the server keeps serving (invariant 6):
malformed RESP, random garbage (fixed seed), unknown commands, wrong arity, bad auth,
oversize values and keys, bad KVT blobs; after each, PING still works.
usage: test_garbage.py path/to/kvtier-serve"""
import os
import random
import socket
import struct

from kvtharness import Err, Server, binary_arg, check

SEED = 1234
print("seed", SEED)
rng = random.Random(SEED)
binary = binary_arg()
srv = Server(binary, config="[server]\nmax_value_bytes = 100K\nproto_max_bulk_len = 1M\n")


def alive():
    c = srv.raw()
    ok = c.call("PING") == "PONG"
    c.close()
    return ok


try:
    # protocol errors: an error reply, then the connection is closed (cannot resync)
    bad = [
        (b"*2\r\n$3\r\nGET\r\n+oops\r\n", "expected '$'"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$99999999999\r\n", "invalid bulk length"),
        (b"*1\r\n$2000000\r\n", "invalid bulk length"),  # over proto_max_bulk_len
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*99999999\r\n", "invalid multibulk length"),
        (b"*1\r\n$3\r\nPINGX\r\n", "not terminated by CRLF"),
        (b"*" + b"9" * 40, "invalid multibulk length"),
        (b'GET "unbalanced\r\n', "unbalanced quotes"),
    ]
    for data, want in bad:
        c = srv.raw()
        c.send(data)
        r = c.reply()
        check(isinstance(r, Err) and want in r and c.closed(), "malformed %r -> %s" % (data[:24], r))
        c.close()
    c = srv.raw()
    c.send(b"x" * 70000)
    check("too big inline request" in c.reply(), "an endless inline line is refused")
    c.close()
    check(alive(), "PING works after the protocol errors")

    # command-level errors keep the connection open
    c = srv.raw()
    check(c.call("NOSUCH").startswith("ERR unknown command"), "unknown command")
    check(c.call("GET").startswith("ERR wrong number of arguments"), "wrong arity")
    check(c.call("SET", "k", "v", "EX").startswith("ERR syntax error"), "SET with a dangling option")
    check(c.call("SET", "k", "v", "EX", "abc").startswith("ERR value is not an integer"), "SET EX abc")
    check(c.call("SET", "k", "v", "NX", "XX").startswith("ERR syntax error"), "SET NX XX")
    check(c.call("EXPIRE", "k", "x").startswith("ERR value is not an integer"), "EXPIRE x")
    check(c.call("AUTH", "nobody", "x").startswith("WRONGPASS"), "bad auth")
    check(c.call("SET", "big", b"v" * 200000).startswith("ERR value of 200000 bytes exceeds"),
          "oversize value: clear error")
    check(c.call("SET", "k" * 5000, "v").startswith("ERR key of 5000 bytes"), "oversize key: clear error")
    check(c.call("GET", "k" * 5000) is None, "GET of an impossible key is a miss")
    check(c.call("SELECT", "3").startswith("ERR DB index"), "SELECT 3")
    check(c.call("KVT.MATCH", "none", b"1234").startswith("ERR no namespace"), "KVT on a missing namespace")
    c.call("KVT.NS.CREATE", "m", 1, 1, 8, "fp16", 4)
    check(c.call("KVT.MATCH", "m", b"123").startswith("ERR token blob of 3 bytes"), "token blob not a multiple of 4")
    check(c.call("KVT.PUT", "m", struct.pack("<8I", *range(8)), b"x" * 10).startswith("ERR kv blob"),
          "KVT.PUT with a wrong-sized kv blob")
    check(c.call("KVT.NS.CREATE", "m2", 1, 1, 8, "fp16", 3).startswith("ERR invalid KV layout"),
          "block_tokens not a power of two")
    check(c.call("KVT.NS.CREATE", "m", 1, 1, 16, "fp16", 4).startswith("ERR namespace 'm' exists"),
          "re-creating a namespace with another layout")
    check(c.call("KVT.PREFETCH", "m", b"1234") == 0, "KVT.PREFETCH of an uncached prefix: 0 blocks")
    check(c.call("KVT.PREFETCH", "m", b"123").startswith("ERR token blob"), "KVT.PREFETCH: bad blob")
    check(c.call("KVT.PUT", "m", struct.pack("<4I", *range(4)), b"x" * 64, "TTL", "5 minutes")
          .startswith("ERR TTL hint"), "KVT.PUT TTL: a malformed hint is refused")
    check(c.call("KVT.PUT", "m", struct.pack("<4I", *range(4)), b"x" * 64, "TTL", "")
          .startswith("ERR TTL hint"), "KVT.PUT TTL: an empty hint is refused")
    check(c.call("PING") == "PONG", "the same connection still works")
    # inline commands (telnet style)
    c.send(b"SET inl value\r\nGET inl\r\n")
    check(c.reply() == "OK" and c.reply() == b"value", "inline commands")
    c.close()

    # a truncated frame, then the client shuts its side: the complete requests before it
    # are answered, then an error says the incomplete one was dropped
    for frame in (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc", b"*2\r\n$3\r\nGE", b"PING"):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"*1\r\n$4\r\nPING\r\n" + frame)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        s.close()
        check(got.startswith(b"+PONG\r\n-ERR Protocol error: connection closed in the middle of a request")
              and got.endswith(b"\r\n"), "truncated frame %r: PONG, then an error reply (%r)" % (frame[:12], got[:90]))
    # random garbage, many connections; some get errors, none may kill the server
    for i in range(200):
        n = rng.randrange(1, 2000)
        data = bytes(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.5:  # garbage that looks like RESP
            parts = [b"*%d\r\n" % rng.randrange(-2, 6)]
            for _ in range(rng.randrange(0, 6)):
                ln = rng.randrange(-1, 40)
                parts.append(b"$%d\r\n" % ln + os.urandom(max(ln, 0)) + rng.choice([b"\r\n", b"", b"\n", b"xx"]))
            data = b"".join(parts) + data[: rng.randrange(0, 50)]
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            while s.recv(65536):
                pass
        except OSError:
            pass
        s.close()
    check(alive(), "PING works after 200 connections of random garbage")
    c = srv.raw()
    check(c.call("GET", "inl") == b"value", "data intact after the garbage")
    c.close()
finally:
    srv.stop()
print("PASS")
