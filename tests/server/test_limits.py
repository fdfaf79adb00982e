#!/usr/bin/env python3
"""test_limits — maxclients, idle timeout, output buffer limit, max value size: each
with a clear error (or, for the idle timeout, a close) while other clients keep working.
usage: test_limits.py path/to/kvtier-serve"""
import os
import time

from kvtharness import Err, Server, binary_arg, check

binary = binary_arg()
srv = Server(binary, config="[server]\nmaxclients = 4\ntimeout = 1\noutput_buffer_limit = 64K\n"
             "max_value_bytes = 1M\n")
try:
    held = [srv.raw() for _ in range(3)]  # the harness's readiness probe is gone by now
    for h in held:
        check(h.call("PING") == "PONG", "client within maxclients")
    c4 = srv.raw()
    check(c4.call("PING") == "PONG", "4th client (maxclients = 4)")
    c5 = srv.raw()
    r = c5.reply()
    check(isinstance(r, Err) and "max number of clients" in r, "5th client: %s" % r)
    c5.close()

    # idle timeout: silent clients are closed after ~1 s; an active one is not
    t0 = time.time()
    for _ in range(6):
        c4.call("PING")
        time.sleep(0.4)
    check(c4.call("PING") == "PONG", "an active client outlives the idle timeout")
    check(all(h.closed(timeout=3) for h in held), "idle clients closed by the timeout (%.1f s)" % (time.time() - t0))
    c4.close()
    time.sleep(1.5)

    c = srv.raw()
    check(c.call("SET", "v", os.urandom(100000)) == "OK", "a 100 KB value is stored")
    r = c.call("GET", "v")
    check(isinstance(r, Err) and "exceeds the output buffer limit" in r, "GET over the output limit: %s" % r)
    r = c.call("SET", "w", os.urandom((1 << 20) + 1))
    check(isinstance(r, Err) and "exceeds max_value_bytes" in r, "value over max_value_bytes: %s" % r)
    check(c.call("SET", "small", "x") == "OK" and c.call("GET", "small") == b"x",
          "the connection keeps working after limit errors")
    # back-pressure: 2000 pipelined GETs of 60 KB (120 MB of replies) with a 64 KB limit:
    # the server stops reading while the output is full, and every reply arrives in order
    c.call("SET", "sixty", b"z" * 60000)
    c.send(b"".join(b"*2\r\n$3\r\nGET\r\n$5\r\nsixty\r\n" for _ in range(2000)))
    ok = all(c.reply() == b"z" * 60000 for _ in range(2000))
    check(ok, "2000 pipelined 60 KB replies under a 64 KB output limit arrive in order")
    c.close()
finally:
    srv.stop()
print("PASS")
