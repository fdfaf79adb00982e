"""kvtier.core over libkvtier: round trips, leases, errors, configuration, threads (numpy)."""

from __future__ import annotations

import errno
import json
import os
import pickle
import tempfile
import threading
import unittest

from kvt_testutil import SEED, SMALL, blocks_for, rng

import numpy as np

import kvtier
from kvtier import _lib
from kvtier.errors import check

print(f"kvtier python tests: seed {SEED}, library {kvtier.library_path()} {kvtier.version()}")


class Base(unittest.TestCase):
    def setUp(self):
        self.cache = kvtier.Cache(dram_bytes="16M", hugepages="off")
        self.ns = self.cache.namespace("m", SMALL)

    def tearDown(self):
        self.cache.close()


class TestBasics(Base):
    def test_version_features(self):
        self.assertRegex(kvtier.version(), r"^\d+\.\d+\.\d+$")
        f = kvtier.features()
        for name in ("kvt_flush", "kvt_prefetch", "kvt_options_set_data_dir", "kvt_lease_block_tier"):
            self.assertIn(name, f)

    def test_layout(self):
        self.assertEqual(SMALL.block_bytes, 2 * 2 * 4 * 2 * 8 * 2)
        self.assertEqual(SMALL.block_shape, (2, 2, 4, 2, 8))
        cfg = dict(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32,
                   num_key_value_heads=8, torch_dtype="bfloat16")
        lay = kvtier.Layout.from_model_config(cfg)
        self.assertEqual((lay.layers, lay.kv_heads, lay.head_dim, lay.dtype_name), (32, 8, 128, "bf16"))
        self.assertEqual(lay.block_bytes, 2 << 20)  # the header's Llama-3-8B example

        class Cfg:
            num_hidden_layers, num_attention_heads, hidden_size, head_dim = 4, 4, 64, 32
        lay = kvtier.Layout.from_model_config(Cfg(), dtype="fp32", block_tokens=8)
        self.assertEqual((lay.kv_heads, lay.head_dim, lay.itemsize), (4, 32, 4))
        with self.assertRaises(ValueError):
            kvtier.Layout(1, 1, 1, "int7")
        self.assertEqual(kvtier.Layout(1, 1, 1, "fp16", 3).block_bytes, 0)  # invalid: 0

    def test_parse_size(self):
        self.assertEqual(kvtier.parse_size("8G"), 8 << 30)
        self.assertEqual(kvtier.parse_size("512MiB"), 512 << 20)
        self.assertEqual(kvtier.parse_size(123), 123)
        with self.assertRaises(ValueError):
            kvtier.parse_size("lots")


class TestRoundTrip(Base):
    def test_numpy_round_trip(self):
        t = rng(1).integers(0, 50000, 4 * 10 + 3)  # a trailing partial block is ignored
        data = rng(2).standard_normal((10,) + SMALL.block_shape).astype(np.float16)
        self.assertEqual(self.ns.match(t), 0)
        self.assertEqual(self.ns.put(t, data), 10)
        self.assertEqual(self.ns.put(t, data), 0)  # already cached
        self.assertEqual(self.ns.match(t), 40)
        self.assertEqual(self.ns.match(t[:23]), 20)
        with self.ns.lease(t) as lease:
            self.assertEqual((lease.blocks, lease.tokens, len(lease)), (10, 40, 10))
            np.testing.assert_array_equal(lease.read_numpy(), data)
            np.testing.assert_array_equal(lease.read_numpy(3, 4), data[3:7])
            np.testing.assert_array_equal(lease.read_numpy(threads=4), data)
            np.testing.assert_array_equal(lease.read_numpy(1, 9, threads=3), data[1:])
            bufs = [bytearray(self.ns.block_bytes) for _ in range(3)]
            lease.read_blocks(bufs, first=5)
            for i, b in enumerate(bufs):
                self.assertEqual(bytes(b), data[5 + i].tobytes())
            raw = bytearray(10 * self.ns.block_bytes)
            lease.read_into(raw)
            self.assertEqual(bytes(raw), data.tobytes())
            self.assertEqual(lease.keys(), list(self.ns.block_keys(t)))

    def test_put_list_and_start_block(self):
        t = rng(3).integers(0, 1000, 32)
        data = blocks_for(self.ns, t)
        self.assertEqual(self.ns.put(t[:12], [data[i] for i in range(3)]), 3)
        with self.assertRaises(kvtier.NoDataError):  # blocks 3..4 are not cached
            self.ns.put(t[:28], data[5:7], start_block=5)
        self.assertEqual(self.ns.put(t, data[3:], start_block=3), 5)
        self.assertEqual(self.ns.match(t), 32)
        with self.ns.lease(t) as lease:
            self.assertEqual(lease.read_numpy().tobytes(), data.tobytes())

    def test_tokens_inputs(self):
        t = list(range(8))
        data = blocks_for(self.ns, np.arange(8))
        self.ns.put(t, data)
        self.assertEqual(self.ns.match(np.arange(8, dtype=np.int64)), 8)
        self.assertEqual(self.ns.match(np.arange(8, dtype=np.uint32).reshape(1, 8)), 8)
        self.assertEqual(self.ns.match([]), 0)
        with self.assertRaises(ValueError):
            self.ns.match([-1, 2, 3, 4])
        with self.assertRaises(ValueError):
            self.ns.match([2**32, 2, 3, 4])
        with self.assertRaises(TypeError):
            self.ns.match([0.5, 1.0, 2, 3])
        with self.assertRaises(ValueError):  # wrong byte count: caught before the C call
            self.ns.put(t, data[:1])

    def test_no_false_hit(self):
        t = np.arange(16)
        self.ns.put(t, blocks_for(self.ns, t))
        u = t.copy()
        u[9] += 1  # differs inside block 2
        self.assertEqual(self.ns.match(u), 8)
        other = self.cache.namespace("m", SMALL, tenant="other")
        self.assertEqual(other.match(t), 0)  # tenants are isolated

    def test_keys_namespace(self):
        kns = self.cache.namespace("trace", SMALL, keys=True)
        keys = np.array([11, 22, 33, 2**63 + 5], np.uint64)
        data = rng(4).integers(0, 255, (4, SMALL.block_bytes), dtype=np.uint8)
        self.assertEqual(kns.put_keys(keys, data), 4)
        self.assertEqual(kns.match_keys(keys), 4)
        self.assertEqual(kns.match_keys([11, 22, 99]), 2)
        with kns.lease_keys(keys) as lease:
            self.assertEqual(lease.blocks, 4)
            self.assertEqual(lease.read_numpy(threads=2).tobytes(), data.tobytes())
        self.assertEqual(kns.remove_keys(keys[:3]), 2)
        self.assertEqual(kns.match_keys(keys), 2)

    def test_remove(self):
        t = np.arange(20)
        self.ns.put(t, blocks_for(self.ns, t))
        self.assertEqual(self.ns.remove(t[:12]), 3)
        self.assertEqual(self.ns.match(t), 8)

    def test_eviction(self):
        cache = kvtier.Cache(dram_bytes=8 * SMALL.block_bytes, slot_bytes=SMALL.block_bytes, hugepages="off")
        try:
            ns = cache.namespace("m", SMALL)
            a, b = np.arange(0, 24), np.arange(1000, 1024)
            self.assertEqual(ns.put(a, blocks_for(ns, a)), 6)
            self.assertEqual(ns.put(b, blocks_for(ns, b)), 6)  # evicts a's LRU blocks
            st = cache.stats()
            self.assertEqual(st.blocks_evicted, 4)
            self.assertLessEqual(st.blocks_cached, 8)
            self.assertEqual(ns.match(b), 24)
        finally:
            cache.close()


class TestLeases(Base):
    def test_context_manager(self):
        t = np.arange(12)
        self.ns.put(t, blocks_for(self.ns, t))
        with self.ns.lease(t) as lease:
            self.assertEqual(self.cache.stats().leases_open, 1)
            with self.assertRaises(kvtier.BusyError) as cm:  # pinned blocks cannot go
                self.ns.remove(t)
            self.assertEqual(cm.exception.status, -errno.EBUSY)
        self.assertTrue(lease.released)
        self.assertEqual(self.cache.stats().leases_open, 0)
        lease.release()  # idempotent
        with self.assertRaises(kvtier.ClosedError):
            lease.read_numpy()
        self.assertEqual(self.ns.remove(t), 1)  # the last block (and what extends it)
        self.assertEqual(self.ns.remove(t[:4]), 2)

    def test_empty_lease(self):
        with self.ns.lease(np.arange(100, 120)) as lease:
            self.assertEqual((lease.blocks, lease.tokens), (0, 0))
            self.assertEqual(lease.read_numpy().shape, (0,) + SMALL.block_shape)
        self.assertEqual(self.cache.stats().leases_open, 0)

    def test_gc_releases(self):
        t = np.arange(8)
        self.ns.put(t, blocks_for(self.ns, t))
        lease = self.ns.lease(t)
        self.assertEqual(self.cache.stats().leases_open, 1)
        del lease
        self.assertEqual(self.cache.stats().leases_open, 0)

    def test_close_with_open_lease(self):
        t = np.arange(8)
        self.ns.put(t, blocks_for(self.ns, t))
        lease = self.ns.lease(t)
        with self.assertRaises(kvtier.LeasesOpenError) as cm:
            self.cache.close()
        self.assertEqual(cm.exception.status, kvtier.errors.KVT_ELEASES)
        self.assertFalse(self.cache.closed)
        lease.release()
        self.cache.close()
        with self.assertRaises(kvtier.ClosedError):
            self.ns.match(t)
        with self.assertRaises(kvtier.ClosedError):
            self.cache.stats()
        self.cache.close()  # idempotent; tearDown calls it again


class TestErrors(Base):
    def test_every_status_has_a_class(self):
        cases = {
            -errno.EINVAL: kvtier.InvalidArgumentError, -errno.ENOMEM: kvtier.OutOfMemoryError,
            -errno.ENOSPC: kvtier.NoSpaceError, -errno.EBUSY: kvtier.BusyError,
            -errno.ERANGE: kvtier.RangeError, -errno.ENOENT: kvtier.NotFoundError,
            -errno.ENODATA: kvtier.NoDataError, -30900: kvtier.BadLayoutError,
            -30901: kvtier.SizeError, -30902: kvtier.ModeError, -30903: kvtier.InvalidNameError,
            -30904: kvtier.LeasesOpenError, -errno.EIO: kvtier.TierIOError,
            -errno.ENODEV: kvtier.DeviceUnavailableError, -30905: kvtier.CorruptBlockError,
            -30906: kvtier.CatalogError, -errno.EPERM: kvtier.KvtierError,
        }
        for status, cls in cases.items():
            with self.assertRaises(cls) as cm:
                check(status, "kvt_test")
            e = cm.exception
            self.assertIsInstance(e, kvtier.KvtierError)
            self.assertEqual(e.status, status)
            self.assertEqual(e.func, "kvt_test")
            self.assertIn(kvtier.strerror(status), str(e))
            if status != -errno.EPERM:
                self.assertNotIn("unknown", kvtier.strerror(status))
            again = pickle.loads(pickle.dumps(e))
            self.assertEqual((type(again), again.status), (cls, status))
        self.assertEqual(check(0, "x"), 0)
        self.assertTrue(issubclass(kvtier.RangeError, IndexError))
        self.assertTrue(issubclass(kvtier.InvalidArgumentError, ValueError))

    def test_statuses_from_the_library(self):
        t = np.arange(16)
        with self.assertRaises(kvtier.InvalidArgumentError):
            kvtier.Cache(dram_bytes=0)
        with self.assertRaises(kvtier.InvalidNameError):
            self.cache.namespace("", SMALL)
        with self.assertRaises(kvtier.InvalidNameError):
            self.cache.namespace("m", SMALL, tenant="t" * 256)
        with self.assertRaises(kvtier.BadLayoutError):
            self.cache.namespace("bad", kvtier.Layout(1, 1, 1, "fp16", 3))
        with self.assertRaises(kvtier.BadLayoutError):  # exists with another layout
            self.cache.namespace("m", kvtier.Layout(2, 2, 8, "fp16", 8))
        kns = self.cache.namespace("k", SMALL, keys=True)
        with self.assertRaises(kvtier.ModeError):
            kns.match(t)
        with self.assertRaises(kvtier.ModeError):
            self.ns.match_keys([1, 2])
        with self.assertRaises(kvtier.NotFoundError):
            self.ns.remove(t)
        self.ns.put(t, blocks_for(self.ns, t))
        with self.ns.lease(t) as lease:
            with self.assertRaises(kvtier.RangeError):
                lease.key(4)
            with self.assertRaises(kvtier.SizeError):  # the C check, under the Python one
                buf = np.zeros(SMALL.block_bytes, np.uint8)
                check(_lib.lib().kvt_read_contig(lease._h, 0, 1, buf.ctypes.data, buf.nbytes - 1),
                      "kvt_read_contig")
            with self.assertRaises(kvtier.RangeError):
                check(_lib.lib().kvt_read_contig(lease._h, 3, 2, buf.ctypes.data, 2 * buf.nbytes),
                      "kvt_read_contig")
        self.cache.set_tenant_quota("tiny", SMALL.block_bytes - 1)
        tiny = self.cache.namespace("m", SMALL, tenant="tiny")
        with self.assertRaises(kvtier.NoSpaceError):
            tiny.put(t, blocks_for(tiny, t))
        with self.assertRaises(kvtier.OutOfMemoryError):
            kvtier.Cache(dram_bytes=1 << 50, hugepages="on")

    def test_python_side_errors(self):
        with self.assertRaises(TypeError):
            self.cache.namespace("m", (2, 2, 8))
        with self.ns.lease([]) as lease, self.assertRaises(kvtier.RangeError):
            lease.read_into(np.zeros(3, np.uint8), 0, 1)
        t = np.arange(8)
        self.ns.put(t, blocks_for(self.ns, t))
        with self.ns.lease(t) as lease:
            with self.assertRaises(ValueError):  # wrong size: caught before the C call
                lease.read_into(np.zeros(3, np.uint8), 0, 1)
            with self.assertRaises(ValueError):  # not contiguous
                lease.read_into(np.zeros((2, SMALL.block_bytes * 2), np.uint8)[:, ::2])
            with self.assertRaises(ValueError):  # read-only
                lease.read_into(bytes(2 * SMALL.block_bytes))


class TestConfig(unittest.TestCase):
    def test_mapping_and_files(self):
        with kvtier.Cache({"dram_bytes": "8M", "hugepages": "off", "cuda_pin": False,
                           "tenant_quotas": {"a": "1M"}}) as c:
            c.namespace("m", SMALL)  # slot size (so capacity) is set by the first namespace
            self.assertEqual(c.stats().dram_capacity, 8 << 20)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "kv.json")
            with open(p, "w") as f:
                json.dump({"dram_bytes": 4 << 20}, f)
            with kvtier.Cache(p, hugepages="off") as c:
                c.namespace("m", SMALL)
                self.assertEqual(c.stats().dram_capacity, 4 << 20)
            p = os.path.join(d, "kv.toml")
            with open(p, "w") as f:
                f.write('[kvtier]\ndram_bytes = "2M"\nhugepages = "off"\n')
            with kvtier.Cache(p) as c:
                c.namespace("m", SMALL)
                self.assertEqual(c.stats().dram_capacity, 2 << 20)
        with self.assertRaises(ValueError):
            kvtier.Cache(dram_byts="1G")
        with self.assertRaises(ValueError):
            kvtier.Cache(hugepages="sometimes")
        if not kvtier.features()["kvt_options_set_data_dir"]:
            with self.assertRaises(kvtier.FeatureUnavailableError):
                kvtier.Cache(data_dir="/tmp")
        with self.assertRaises(ValueError):
            kvtier.Cache(nvme={"size": "1G"})


class TestThreads(unittest.TestCase):
    """Threads hammer put / match / lease / read on shared prefixes in a cache small enough
    to evict; every block read must be the one its tokens name (invariant 1)."""

    def test_hammer(self):
        bt = SMALL.block_tokens
        cache = kvtier.Cache(dram_bytes=64 * SMALL.block_bytes, slot_bytes=SMALL.block_bytes, hugepages="off")
        ns = cache.namespace("m", SMALL)
        base = rng(5).integers(0, 1 << 20, 48 * bt)
        # 8 families of prompts sharing prefixes: a common head, then per-family tails
        prompts = []
        for f in range(8):
            p = base.copy()
            p[16 * bt + f:] = rng(100 + f).integers(0, 1 << 20, p.size - 16 * bt - f)
            prompts.append(p)
        errors, counts = [], {"reads": 0, "puts": 0}
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def run(w: int) -> None:
            r = rng(1000 + w)
            try:
                barrier.wait()
                for _ in range(300):
                    p = prompts[r.integers(0, len(prompts))][: bt * int(r.integers(1, 49))]
                    op = r.integers(0, 4)
                    if op == 0:
                        with lock:
                            counts["puts"] += 1
                        try:
                            ns.put(p, blocks_for(ns, p))
                        except kvtier.NoSpaceError:
                            pass  # everything else pinned by other threads
                    elif op == 1:
                        ns.match(p)
                    else:
                        with ns.lease(p) as lease:
                            if lease.blocks:
                                got = lease.read_numpy(threads=int(r.integers(1, 4)))
                                want = blocks_for(ns, p[: lease.tokens])
                                if got.tobytes() != want.tobytes():
                                    raise AssertionError("a block's bytes differ from its tokens'")
                                with lock:
                                    counts["reads"] += 1
            except BaseException as e:
                errors.append(e)

        ts = [threading.Thread(target=run, args=(w,)) for w in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])
        st = cache.stats()
        self.assertEqual(st.leases_open, 0)
        self.assertGreater(counts["reads"], 50)
        self.assertGreater(st.blocks_evicted, 0)
        cache.close()

    def test_close_waits_for_calls(self):
        cache = kvtier.Cache(dram_bytes="4M", hugepages="off")
        ns = cache.namespace("m", SMALL)
        stop = threading.Event()
        seen = []

        def spin():
            t = np.arange(64)
            while not stop.is_set():
                try:
                    ns.match(t)
                except kvtier.ClosedError:
                    seen.append(1)
                    return

        ts = [threading.Thread(target=spin) for _ in range(4)]
        for t in ts:
            t.start()
        cache.close()
        stop.set()
        for t in ts:
            t.join()
        self.assertEqual(len(seen), 4)


if __name__ == "__main__":
    unittest.main()
