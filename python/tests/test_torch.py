"""kvtier with torch tensors: round trips (bit-exact, bf16 included), layout conversions,
the device loader, the HBM block cache's exact verification. CUDA cases run where a GPU is."""

from __future__ import annotations

import unittest

from kvt_testutil import SEED, rng

import numpy as np

import kvtier

try:
    import torch
except ImportError:  # pragma: no cover - tests/test_python.sh skips (77) before this
    torch = None


@unittest.skipIf(torch is None, "torch is not installed")
class TestTorch(unittest.TestCase):
    LAY = kvtier.Layout(layers=3, kv_heads=2, head_dim=16, dtype="bf16", block_tokens=8)

    def setUp(self):
        torch.manual_seed(SEED)
        self.cache = kvtier.Cache(dram_bytes="32M", hugepages="off")
        self.ns = self.cache.namespace("t", self.LAY)
        from kvtier import torch_io
        self.tio = torch_io

    def tearDown(self):
        self.cache.close()

    def blocks(self, n):
        return torch.randn((n,) + self.LAY.block_shape).to(torch.bfloat16)

    def test_bf16_round_trip(self):
        t = torch.arange(7 * 8 + 5)
        data = self.blocks(7)
        self.assertEqual(self.ns.put(t, data), 7)
        with self.ns.lease(t) as lease:
            got = lease.read_torch()
            self.assertEqual(got.dtype, torch.bfloat16)
            self.assertTrue(torch.equal(got, data))
            self.assertTrue(torch.equal(lease.read_torch(2, 3, threads=3), data[2:5]))
            out = torch.empty_like(data)
            lease.read_into(out, threads=2)  # straight into the tensor's memory
            self.assertTrue(torch.equal(out, data))
            bits = lease.read_numpy()
            self.assertEqual(bits.dtype, np.uint16)
            self.assertTrue(torch.equal(torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16), data))

    def test_layer_conversions(self):
        n, bt = 5, self.LAY.block_tokens
        blocks = self.blocks(n)
        layers = self.tio.blocks_to_layers(blocks)
        self.assertEqual(len(layers), self.LAY.layers)
        k, v = layers[1]
        self.assertEqual(tuple(k.shape), (1, 2, n * bt, 16))
        # token 13 = block 1, slot 5; head 1
        self.assertTrue(torch.equal(k[0, 1, 13], blocks[1, 1, 0, 5, 1]))
        self.assertTrue(torch.equal(v[0, 0, 39], blocks[4, 1, 1, 7, 0]))
        back = self.tio.layers_to_blocks([k for k, _ in layers], [v for _, v in layers], 0, n, bt)
        self.assertTrue(torch.equal(back, blocks))
        part = self.tio.layers_to_blocks([k for k, _ in layers], [v for _, v in layers], 2 * bt, 2, bt)
        self.assertTrue(torch.equal(part, blocks[2:4]))

    def test_put_from_layers_and_loader(self):
        t = torch.arange(100, 100 + 6 * 8)
        blocks = self.blocks(6)
        layers = self.tio.blocks_to_layers(blocks)
        ks, vs = [k for k, _ in layers], [v for _, v in layers]
        self.assertEqual(self.tio.put_torch(self.ns, t[:16], self.tio.layers_to_blocks(ks, vs, 0, 2, 8)), 2)
        self.assertEqual(self.tio.StoreStager(pin=False).put(
            self.ns, t, self.tio.layers_to_blocks(ks, vs, 16, 4, 8), 2), 4)
        loader = self.tio.DeviceLoader("cpu", threads=3)
        with self.ns.lease(t) as lease:
            self.assertTrue(torch.equal(loader.load(lease), blocks))
            out = torch.zeros((3,) + self.LAY.block_shape, dtype=torch.bfloat16)
            loader.load(lease, 3, 3, out=out)
            self.assertTrue(torch.equal(out, blocks[3:]))

    @unittest.skipUnless(torch is not None and torch.cuda.is_available(), "no CUDA device")
    def test_cuda_loader(self):
        t = torch.arange(64 * 8)
        data = self.blocks(64)
        self.ns.put(t, data)
        loader = self.tio.DeviceLoader("cuda", threads=4, chunk_bytes=4 * self.ns.block_bytes)
        with self.ns.lease(t) as lease:
            for _ in range(3):  # the staging buffer is reused
                got = loader.load(lease)
                self.assertEqual(got.device.type, "cuda")
                self.assertTrue(torch.equal(got.cpu(), data))
        stager = self.tio.StoreStager()
        t2 = torch.arange(10**6, 10**6 + 16 * 8)
        self.assertEqual(stager.put(self.ns, t2, data[:16].cuda(), 0), 16)
        with self.ns.lease(t2) as lease:
            self.assertTrue(torch.equal(lease.read_torch(device="cuda").cpu(), data[:16]))

    def test_hbm_cache_verifies_tokens(self):
        from kvtier.hbm import HBMBlockCache
        hbm = HBMBlockCache(self.LAY, 4 * self.ns.block_bytes, "cpu")
        self.assertEqual(hbm.capacity, 4)
        t = np.arange(48, dtype=np.uint32)
        keys = list(self.ns.block_keys(t))
        data = self.blocks(6)
        self.assertEqual(hbm.insert(keys[:3], t, [0, 1, 2], data[:3]), 3)
        self.assertEqual(hbm.lookup(keys[:4], t)[3], None)
        rows = hbm.lookup(keys[:3], t)
        self.assertTrue(all(r is not None for r in rows))
        self.assertTrue(torch.equal(hbm.gather(rows), data[:3]))
        u = t.copy()
        u[9] = 999  # other tokens presented with the same keys: block 1 on must miss
        self.assertEqual(hbm.lookup(keys[:3], u)[1:], [None, None])
        self.assertIsNotNone(hbm.lookup(keys[:1], u)[0])
        # eviction: inserting 3 more evicts the least recently used
        hbm.insert(keys[3:6], t, [3, 4, 5], data[3:6])
        self.assertEqual(len(hbm), 4)
        rows = hbm.lookup(keys, t)
        self.assertEqual(sum(r is not None for r in rows), 4)
        for i, r in enumerate(rows):
            if r is not None:
                self.assertTrue(torch.equal(hbm.pool[r], data[i]))


if __name__ == "__main__":
    unittest.main()
