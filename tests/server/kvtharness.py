"""kvtharness.py — start and stop a `kvtier-serve` for the tests in tests/server/.

Each server gets a fresh folder under $KVT_TEST_DIR (or /tmp), a free TCP port, a Unix
socket, its persistent tiers in FOLDER/data (data_dir; data_dir=None: DRAM only) and
optionally a /metrics port; stop() sends SIGTERM and checks the exit status (0: a clean
shutdown; the sanitizer build also fails here on leaks). Servers left running by a failing
test are killed at exit. Server(..., dir=old.dir) after old.stop(keep=True) or old.kill9()
restarts on the same data directory (warm restart).
"""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77
_live = []


def skip(msg):
    print("SKIP:", msg)
    sys.exit(SKIP)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dir():
    base = os.environ.get("KVT_TEST_DIR") or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    # Unix socket paths are limited to 108 bytes: fall back to /tmp for deep build folders.
    d = tempfile.mkdtemp(prefix="kvs-", dir=base)
    if len(d) > 80:
        shutil.rmtree(d)
        d = tempfile.mkdtemp(prefix="kvs-")
    return d


class Server:
    def __init__(self, binary, config="", args=(), metrics=False, env=None, dir=None,
                 data_dir="data"):
        self.dir = dir or test_dir()
        self.data_dir = os.path.join(self.dir, data_dir) if data_dir else None
        self.port = free_port()
        self.sock = os.path.join(self.dir, "kvtier.sock")
        self.metrics_port = free_port() if metrics else 0
        self.log = os.path.join(self.dir, "server.log")
        cfg = os.path.join(self.dir, "kvtier.conf")
        with open(cfg, "w") as f:
            f.write(config)
        cmd = [binary, "--config", cfg, "--port", str(self.port), "--unixsocket", self.sock,
               "--metrics-port", str(self.metrics_port), "--loglevel", "verbose",
               "--data-dir", self.data_dir or "none"]
        cmd += list(args)
        e = dict(os.environ)
        e.update(env or {})
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=e)
        _live.append(self)
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.dump()
                raise RuntimeError("server exited during start-up, status %d" % self.proc.returncode)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64):
                        return
            except OSError:
                time.sleep(0.05)
        self.dump()
        raise RuntimeError("server did not start")

    def dump(self):
        try:
            self.logf.flush()
            with open(self.log) as f:
                sys.stdout.write("---- server log (%s)\n%s----\n" % (self.log, f.read()[-6000:]))
        except OSError:
            pass

    def kill9(self):
        """SIGKILL: no shutdown, no flush (a crash). The folder stays for a restart."""
        self.proc.kill()
        self.proc.wait()
        if self in _live:
            _live.remove(self)
        self.logf.close()

    def stop(self, timeout=30, expect_rc=0, keep=False):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.dump()
            raise AssertionError("server did not stop within %d s of SIGTERM" % timeout)
        if self in _live:
            _live.remove(self)
        self.logf.close()
        if expect_rc is not None and rc != expect_rc:
            self.dump()
            raise AssertionError("server exit status %d, expected %d" % (rc, expect_rc))
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def raw(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return RawConn(s)


@atexit.register
def _kill_all():
    for s in list(_live):
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        s.dump()


class RawConn:
    """A minimal RESP2/RESP3 client over a socket: for malformed input and RESP3 checks."""

    def __init__(self, s):
        self.s = s
        self.buf = b""

    def close(self):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.send(b"".join(out))

    def call(self, *args):
        self.cmd(*args)
        return self.reply()

    def _fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise ConnectionError("closed by the server")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n + 2:]
        return d

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return Err(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._bytes(n)
        if t == b"=":
            return self._bytes(int(rest))[4:]
        if t == b"_":
            return None
        if t == b",":
            return float(rest)
        if t in (b"*", b"~"):
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        if t == b"%":
            n = int(rest)
            d = {}
            for _ in range(n):
                k = self.reply()
                d[k] = self.reply()
            return d
        raise ValueError("bad reply type %r" % line[:40])

    def closed(self, timeout=5):
        """True if the server closes the connection (after any pending replies)."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True


class Err(str):
    pass


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)
    print("ok -", msg)


def need_redis_py():
    try:
        import redis  # noqa: F401
    except ImportError:
        skip("python3-redis (redis-py) is not installed")


def binary_arg():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: %s path/to/kvtier-serve" % sys.argv[0])
        sys.exit(2)
    return sys.argv[1]
