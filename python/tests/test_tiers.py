"""The newer engine functions through the package: persistent tiers (data_dir, nvme/disk,
flush, warm restart), prefetch, per-block tier reporting, TTLs (kvt_put_ex), policies,
plans, and the HBM tier's functions (-ENODEV without a GPU; a real load where there is one).

Data directories go under $KVT_TEST_DIR (else the system temporary directory); the nvme
tier opens its files with O_DIRECT, which tmpfs refuses: point KVT_TEST_DIR at a disk then.
"""

from __future__ import annotations

import ctypes
import errno
import shutil
import tempfile
import threading
import time
import unittest

from kvt_testutil import SEED, SMALL, blocks_for, rng

import numpy as np

import kvtier
from kvtier import _lib

try:
    import torch

    HAVE_GPU = torch.cuda.is_available()
except ImportError:  # pragma: no cover - test_python.sh requires torch
    torch = None
    HAVE_GPU = False

BB = SMALL.block_bytes


def _tmpdir() -> str:
    import os

    return tempfile.mkdtemp(prefix="kvt-py-", dir=os.environ.get("KVT_TEST_DIR") or None)


def need(*names):
    missing = [n for n in names if not kvtier.features().get(n)]
    return unittest.skipIf(missing, f"library lacks {missing}")


@need("kvt_options_set_data_dir", "kvt_flush", "kvt_lease_block_tier", "kvt_prefetch")
class TestPersistent(unittest.TestCase):
    def setUp(self):
        self.dir = _tmpdir()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def open(self, dram_blocks: int = 64, **kw) -> kvtier.Cache:
        cfg = dict(dram_bytes=dram_blocks * BB, slot_bytes=BB, hugepages="off", cuda_pin=False,
                   data_dir=self.dir, nvme=1 << 20, disk=0)
        cfg.update(kw)
        return kvtier.Cache(**cfg)

    def test_round_trip_through_restart(self):
        t = rng(1).integers(0, 1 << 30, 40 * SMALL.block_tokens)
        with self.open() as c:
            ns = c.namespace("m", SMALL)
            want = blocks_for(ns, t)
            self.assertEqual(ns.put(t, want), 40)
            c.flush()
            st = c.stats()
            self.assertEqual(st.persistent, 1)
            self.assertGreaterEqual(st.persisted_blocks, 40)
            self.assertEqual(st.unpersisted_blocks, 0)
            self.assertGreaterEqual(st.flushes, 1)
            self.assertIn(st.io_backend, ("io_uring", "pool"))
            with ns.lease(t) as lease:  # freshly put: still in DRAM
                self.assertEqual(set(lease.tiers()), {kvtier.Tier.DRAM})
        with self.open() as c:  # warm restart: catalogued blocks on nvme, none in DRAM
            self.assertEqual(c.stats().restored_blocks, 40)
            ns = c.namespace("m", SMALL)
            self.assertEqual(ns.match(t), t.size)
            with ns.lease(t) as lease:
                self.assertEqual(lease.tiers(), [kvtier.Tier.NVME] * 40)
                got = lease.read_numpy()
                self.assertEqual(got.tobytes(), want.tobytes())
                self.assertEqual(lease.tier(0), kvtier.Tier.DRAM)  # promoted by the read
                with self.assertRaises(kvtier.RangeError):
                    lease.tier(40)
            st = c.stats()
            self.assertGreaterEqual(st.tier_reads[kvtier.Tier.NVME], 40)
            self.assertGreaterEqual(st.promotions, 1)

    def test_prefetch(self):
        t = rng(2).integers(0, 1 << 30, 24 * SMALL.block_tokens)
        with self.open() as c:
            ns = c.namespace("m", SMALL)
            want = blocks_for(ns, t)
            ns.put(t, want)
        with self.open() as c:
            ns = c.namespace("m", SMALL)
            ns.prefetch(t)  # returns at once; promotion in the background
            deadline = time.monotonic() + 10
            while c.stats().promotions < 24 and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertEqual(c.stats().promotions, 24)
            with ns.lease(t) as lease:
                self.assertEqual(set(lease.tiers()), {kvtier.Tier.DRAM})
                self.assertEqual(lease.read_numpy().tobytes(), want.tobytes())
            self.assertEqual(c.stats().tier_reads[kvtier.Tier.NVME], 24)  # no second read
            ns.prefetch(rng(3).integers(0, 1 << 30, 64))  # a miss: nothing to do
            ns.prefetch([])

    def test_demotion_with_small_dram(self):
        """DRAM smaller than the prefix: persisted blocks lose their DRAM copy (demotion),
        the tier report says NVME for them, and reads still return the right bytes."""
        n = 48
        t = rng(4).integers(0, 1 << 30, n * SMALL.block_tokens)
        with self.open(dram_blocks=8) as c:
            ns = c.namespace("m", SMALL)
            want = blocks_for(ns, t)
            # A single put larger than the DRAM tier goes through: the engine publishes what
            # fits, writes it through and demotes it, then stores the rest (kvt_put).
            self.assertEqual(ns.put(t, want), n)
            c.flush()
            with ns.lease(t) as lease:
                tiers = lease.tiers()
                self.assertEqual(len(tiers), n)
                self.assertLessEqual(tiers.count(kvtier.Tier.DRAM), 8)  # which ones: LRU order
                self.assertEqual(tiers.count(kvtier.Tier.NVME), n - tiers.count(kvtier.Tier.DRAM))
                self.assertEqual(lease.read_numpy(threads=4).tobytes(), want.tobytes())
            st = c.stats()
            self.assertGreater(st.demotions, 0)
            self.assertEqual(st.tier_blocks[kvtier.Tier.NVME], n)

    def test_threads_on_persistent_tiers(self):
        """8 threads put / lease / read / prefetch with a DRAM tier of 8 blocks over nvme:
        every byte read must be the one its tokens name."""
        bt = SMALL.block_tokens
        c = self.open(dram_blocks=8, backpressure_ms=5000)
        ns = c.namespace("m", SMALL)
        base = rng(5).integers(0, 1 << 20, 32 * bt)
        prompts = []
        for f in range(6):
            p = base.copy()
            p[8 * bt + f:] = rng(200 + f).integers(0, 1 << 20, p.size - 8 * bt - f)
            prompts.append(p)
        errors, reads = [], [0]
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def run(w: int) -> None:
            r = rng(2000 + w)
            try:
                barrier.wait()
                for _ in range(60):
                    p = prompts[r.integers(0, len(prompts))][: bt * int(r.integers(1, 33))]
                    op = r.integers(0, 4)
                    if op == 0:
                        try:
                            ns.put(p, blocks_for(ns, p))
                        except kvtier.NoSpaceError:
                            pass
                    elif op == 1:
                        ns.prefetch(p)
                    else:
                        with ns.lease(p) as lease:
                            if lease.blocks:
                                lease.tiers()
                                got = lease.read_numpy(threads=int(r.integers(1, 3)))
                                if got.tobytes() != blocks_for(ns, p[: lease.tokens]).tobytes():
                                    raise AssertionError("a block's bytes differ from its tokens'")
                                with lock:
                                    reads[0] += 1
            except BaseException as e:
                errors.append(e)

        ts = [threading.Thread(target=run, args=(w,)) for w in range(8)]
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        self.assertEqual(errors, [])
        self.assertGreater(reads[0], 20)
        c.flush()
        st = c.stats()
        self.assertEqual(st.leases_open, 0)
        self.assertEqual(st.checksum_failures, 0)
        self.assertEqual(st.io_errors, 0)
        c.close()

    def test_tier_config_and_quota(self):
        with self.open(nvme={"path": self.dir + "/flash", "capacity": "2M"}, disk="128M",
                       io_depth=8, io_force_pool=True) as c:
            c.namespace("m", SMALL)
            names = [ti.name for ti in c.tiers()]
            self.assertEqual(names[:4], ["hbm", "dram", "nvme", "disk"])
            self.assertEqual(c.stats().io_backend, "pool")
            self.assertEqual(c.stats().tier_capacity[kvtier.Tier.NVME] >> 20, 2)
            c.set_tenant_quota("t", "1M", "nvme")
            c.set_tenant_quota("t", "1M", kvtier.Tier.DISK)
            with self.assertRaises(kvtier.InvalidArgumentError):
                c.set_tenant_quota("t", "1M", "hbm")
            with self.assertRaises(ValueError):
                c.set_tenant_quota("t", "1M", "tape")


class TestTTLPolicyPlan(unittest.TestCase):
    def setUp(self):
        self.cache = kvtier.Cache(dram_bytes="4M", hugepages="off", cuda_pin=False)
        self.ns = self.cache.namespace("m", SMALL)

    def tearDown(self):
        self.cache.close()

    @need("kvt_put_ex", "kvt_ttl_parse")
    def test_put_with_ttl(self):
        self.assertEqual(kvtier.parse_ttl("2h30m"), 9000.0)
        self.assertEqual(kvtier.parse_ttl(1.5), 1.5)
        for bad in ("5x", "", "0s", 0, -1):
            with self.assertRaises(ValueError):
                kvtier.parse_ttl(bad)
        with self.assertRaises(kvtier.RangeError):
            kvtier.parse_ttl("1234567890s")
        a = rng(6).integers(0, 1 << 30, 16)
        b = rng(7).integers(0, 1 << 30, 16)
        self.assertEqual(self.ns.put(a, blocks_for(self.ns, a), ttl=0.3), 4)
        self.assertEqual(self.ns.put(b, blocks_for(self.ns, b), ttl="5m"), 4)
        with self.assertRaises(kvtier.InvalidArgumentError):
            self.ns.put(b, blocks_for(self.ns, b), ttl="soon")
        self.assertEqual(self.ns.match(a), 16)
        time.sleep(0.5)
        self.assertEqual(self.ns.match(a), 0)  # expired: a miss
        self.assertEqual(self.ns.match(b), 16)
        kns = self.cache.namespace("k", SMALL, keys=True)
        self.assertEqual(kns.put_keys([1, 2], np.zeros((2, BB), np.uint8), ttl=60), 2)

    @need("kvt_options_set_policy")
    def test_policy(self):
        for p in ("lru", "lfu", "drain"):
            with kvtier.Cache(dram_bytes="1M", hugepages="off", policy=p) as c:
                ns = c.namespace("m", SMALL)
                t = np.arange(32)
                ns.put(t, blocks_for(ns, t))
                self.assertEqual(ns.match(t), 32)
        with self.assertRaises(kvtier.InvalidArgumentError):
            kvtier.Cache(policy="mru")

    @need("kvt_lease_plan", "kvt_engine_tiers")
    def test_plan_and_tiers(self):
        t = np.arange(64)
        self.ns.put(t, blocks_for(self.ns, t))
        with self.ns.lease(t) as lease:
            plan = lease.plan(suffix_tokens=16)
            self.assertEqual(plan.n_blocks, 16)
            self.assertEqual(plan.n_load + plan.n_recompute, 16)
            self.assertLessEqual(plan.total_s, plan.all_recompute_s + 1e-12)
            self.assertEqual(len(plan.blocks), 16)
            self.assertEqual(plan.blocks[0][0], kvtier.Tier.DRAM)
            p2 = lease.plan(0, model=dict(active_params=70.6e9, layers=80, hidden=8192))
            self.assertEqual(p2.n_blocks, 16)
        tiers = self.cache.tiers()
        self.assertEqual(tiers[0].tier, kvtier.Tier.HBM)
        self.assertEqual(tiers[1].name, "dram")
        with self.ns.lease([]) as empty, self.assertRaises(kvtier.ClosedError):
            empty.plan()


@need("kvt_options_set_hbm_bytes", "kvt_hbm_pool", "kvt_lease_load_hbm", "kvt_lease_gather_layer")
class TestHBM(unittest.TestCase):
    LAY = kvtier.Layout(layers=2, kv_heads=2, head_dim=64, dtype="bf16", block_tokens=16)

    @unittest.skipIf(HAVE_GPU, "a GPU is present: the -ENODEV paths are not reachable")
    def test_unavailable_without_gpu(self):
        """Documented: without a usable GPU (or a CUDA build) every HBM function returns
        -ENODEV, and kvt_options_set_hbm_bytes(required=0) is ignored (hbm_state 2)."""
        with self.assertRaises(kvtier.DeviceUnavailableError) as cm:
            kvtier.Cache(dram_bytes="8M", hugepages="off", hbm_bytes="64M", hbm_required=True)
        self.assertEqual(cm.exception.status, -errno.ENODEV)
        for kw in ({"hbm_bytes": "64M"}, {}):
            with kvtier.Cache(dram_bytes="8M", hugepages="off", **kw) as c:
                self.assertEqual(c.stats().hbm_state, 2 if kw else 0)
                ns = c.namespace("m", self.LAY)
                t = np.arange(64)
                ns.put(t, blocks_for(ns, t))
                with self.assertRaises(kvtier.DeviceUnavailableError):
                    ns.hbm_pool()
                with ns.lease(t) as lease:
                    with self.assertRaises(kvtier.DeviceUnavailableError):
                        lease.load_hbm_numpy()
                    if torch is not None:
                        with self.assertRaises(kvtier.DeviceUnavailableError):
                            lease.load_hbm()
                    L = _lib.lib()  # the C calls directly: no CUDA tensors exist here
                    buf = (ctypes.c_uint8 * 64)()
                    self.assertEqual(L.kvt_lease_gather_layer(lease._h, 0, 4, 0, buf, buf, 64 * 64, 0, None),
                                     -errno.ENODEV)
                    if _lib.FEATURES.get("kvt_lease_copy_layer"):
                        self.assertEqual(L.kvt_lease_copy_layer(lease._h, 0, 4, 0, buf, buf, None), -errno.ENODEV)
                        self.assertEqual(L.kvt_lease_copy_layer(lease._h, 0, 5, 0, buf, buf, None), -errno.ERANGE)
                        self.assertEqual(L.kvt_lease_copy_layer(lease._h, 0, 4, 2, buf, buf, None), -errno.EINVAL)
                    with self.assertRaises(ValueError):  # the Python check: CPU tensors
                        k = torch.zeros(1, 2, 64, 64, dtype=torch.bfloat16)
                        lease.gather_layer(0, k, k.clone())
        a = _lib.AttnArgs_c()
        a.layout = self.LAY._c()
        a.num_qo_heads, a.num_seqs, a.total_q, a.max_q_len, a.max_kv_len, a.num_blocks = 2, 1, 1, 1, 64, 4
        a.pool = a.q = a.out = a.kv_indptr = a.kv_indices = a.kv_lens = 4096
        self.assertEqual(_lib.lib().kvt_attn_run(ctypes.byref(a), None, 0, None), -errno.ENODEV)

    @unittest.skipUnless(HAVE_GPU, "no CUDA device")
    def test_load_gather_attention_on_gpu(self):
        from kvtier.hbm import paged_attention
        from kvtier.torch_io import blocks_to_layers

        lay = self.LAY
        g = torch.Generator().manual_seed(SEED)
        with kvtier.Cache(dram_bytes="16M", hugepages="off", hbm_bytes="8M", hbm_required=True) as c:
            ns = c.namespace("m", lay)
            t = np.arange(7 * 16)
            kv = torch.randn((7,) + lay.block_shape, generator=g).bfloat16()
            ns.put(t, kv)
            pool = ns.hbm_pool()
            self.assertEqual(pool.layout, lay)
            with ns.lease(t) as lease:
                table = lease.load_hbm()
                self.assertEqual((table.dtype, table.device.type, table.numel()), (torch.int32, "cuda", 7))
                self.assertEqual(lease.tiers(), [kvtier.Tier.HBM] * 7)
                pt = pool.as_tensor()
                torch.cuda.synchronize()
                self.assertTrue(torch.equal(pt[table.long()].cpu(), kv))
                ref = blocks_to_layers(kv.cuda())
                for layer, (k, v) in enumerate(lease.gather()):
                    self.assertTrue(torch.equal(k, ref[layer][0]))
                    self.assertTrue(torch.equal(v, ref[layer][1]))
                if _lib.FEATURES.get("kvt_lease_copy_layer"):  # the copy engines, from the pool
                    for layer in range(lay.layers):
                        k, v = self._copy_layer(lease, layer, 0, 7)
                        self.assertTrue(torch.equal(k, ref[layer][0]))
                        self.assertTrue(torch.equal(v, ref[layer][1]))
                # decode attention of one query over the 112 cached tokens, vs torch in fp32
                q = torch.randn((1, 4, 64), generator=g).bfloat16().cuda()
                out = paged_attention(pool, 1, q, torch.tensor([0, 7], dtype=torch.int32, device="cuda"),
                                      table, torch.tensor([112], dtype=torch.int32, device="cuda"))
                k, v = ref[1]
                kk = k[0].float().repeat_interleave(2, 0)  # [4, 112, 64]
                vv = v[0].float().repeat_interleave(2, 0)
                w = torch.softmax(torch.einsum("hd,htd->ht", q[0].float(), kk) / 8.0, -1)
                want = torch.einsum("ht,htd->hd", w, vv)
                rel = float((out[0].float() - want).norm() / want.norm())
                self.assertLess(rel, 2e-2, rel)
                torch.cuda.synchronize()
            st = c.stats()
            self.assertEqual(st.hbm_state, 1)
            self.assertEqual(st.hbm_loads, 7)


    def _copy_layer(self, lease, layer, first, n):
        """kvt_lease_copy_layer into NaN-filled [1, T, H, D] buffers; their [1, H, T, D] view."""
        lay = self.LAY
        k = torch.full((1, n * lay.block_tokens, lay.kv_heads, lay.head_dim), float("nan"),
                       dtype=torch.bfloat16, device="cuda")
        v = torch.full_like(k, float("nan"))
        torch.cuda.synchronize()
        rc = _lib.lib().kvt_lease_copy_layer(lease._h, first, n, layer, k.data_ptr(), v.data_ptr(), None)
        self.assertEqual(rc, 0)
        torch.cuda.synchronize()
        return k.transpose(1, 2), v.transpose(1, 2)

    @unittest.skipUnless(HAVE_GPU, "no CUDA device")
    @need("kvt_lease_copy_layer")
    def test_copy_layer_from_dram(self):
        """kvt_lease_copy_layer reads the registered arena with the copy engines: the same
        K/V as blocks_to_layers, whole leases and sub-ranges, blocks adjacent or not."""
        from kvtier.torch_io import blocks_to_layers

        lay = self.LAY
        g = torch.Generator().manual_seed(SEED + 1)
        with kvtier.Cache(dram_bytes="16M", hugepages="off") as c:
            if not c.stats().dram_cuda_pinned:
                self.skipTest("the DRAM arena is not CUDA-registered")
            ns = c.namespace("m", lay)
            t = np.arange(9 * 16)
            kv = torch.randn((9,) + lay.block_shape, generator=g).bfloat16()
            ns.put(t[: 4 * 16], kv[:4])
            other = c.namespace("other", lay)  # blocks between the two halves in the arena
            other.put(np.arange(3 * 16) + 7, torch.zeros((3,) + lay.block_shape, dtype=torch.bfloat16))
            ns.put(t, kv[4:], start_block=4)
            ref = blocks_to_layers(kv.cuda())
            with ns.lease(t) as lease:
                self.assertEqual(lease.blocks, 9)
                for first, n in ((0, 9), (2, 5), (8, 1)):
                    for layer in range(lay.layers):
                        k, v = self._copy_layer(lease, layer, first, n)
                        sl = slice(first * 16, (first + n) * 16)
                        self.assertTrue(torch.equal(k, ref[layer][0][:, :, sl]), (first, n, layer))
                        self.assertTrue(torch.equal(v, ref[layer][1][:, :, sl]), (first, n, layer))


if __name__ == "__main__":
    unittest.main()
