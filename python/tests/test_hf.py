"""The Hugging Face integration (kvtier.hf.PrefixCache) on a tiny random Llama, CPU, fp32.

Skipped where transformers is not installed (Debian 12 does not package it); it runs on
the GPU machine, whose image has transformers.
"""

from __future__ import annotations

import unittest

from kvt_testutil import SEED

import kvtier

try:
    import torch
    import transformers  # noqa: F401
    from transformers import LlamaConfig, LlamaForCausalLM
except ImportError:
    transformers = None


@unittest.skipIf(transformers is None, "transformers is not installed (runs on the GPU machine)")
class TestPrefixCache(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(SEED)
        cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                          pad_token_id=0, bos_token_id=1, eos_token_id=2)
        cls.model = LlamaForCausalLM(cfg).eval()
        cls.gen = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)

    def setUp(self):
        self.cache = kvtier.Cache(dram_bytes="64M", hugepages="off")

    def tearDown(self):
        self.cache.close()

    def prompt(self, n, seed):
        g = torch.Generator().manual_seed(SEED + seed)
        return torch.randint(3, 512, (1, n), generator=g)

    def test_generate_reuses_prefix(self):
        from kvtier.hf import PrefixCache
        pc = PrefixCache(self.model, self.cache, name="tiny-llama", block_tokens=16)
        self.assertEqual(pc.ns.layout.block_shape, (3, 2, 16, 2, 16))
        p = self.prompt(70, 1)
        with torch.no_grad():
            ref = self.model.generate(p, **self.gen)
        out1 = pc.generate(p, **self.gen)
        self.assertEqual((pc.last.cached_tokens, pc.last.stored_blocks), (0, 4))
        self.assertTrue(torch.equal(out1, ref))
        self.assertEqual(pc.lookup(p), 64)
        out2 = pc.generate(p, **self.gen)
        self.assertEqual((pc.last.cached_tokens, pc.last.dram_blocks, pc.last.stored_blocks), (64, 4, 0))
        self.assertTrue(torch.equal(out2, ref))
        # a prompt sharing 40 tokens reuses 2 blocks, stores its own 3rd and 4th
        q = torch.cat([p[:, :40], self.prompt(30, 2)], dim=1)
        with torch.no_grad():
            ref_q = self.model.generate(q, **self.gen)
        self.assertTrue(torch.equal(pc.generate(q, **self.gen), ref_q))
        self.assertEqual((pc.last.cached_tokens, pc.last.stored_blocks), (32, 2))
        # a block-aligned prompt cached in full still computes its last block
        r = p[:, :64]
        with torch.no_grad():
            ref_r = self.model.generate(r, **self.gen)
        self.assertTrue(torch.equal(pc.generate(r, **self.gen), ref_r))
        self.assertEqual(pc.last.cached_tokens, 48)

    def test_prefill_logits_match(self):
        from kvtier.hf import PrefixCache
        pc = PrefixCache(self.model, self.cache, name="tiny-llama-2", block_tokens=8)
        p = self.prompt(77, 3)
        with torch.no_grad():
            ref = self.model(p).logits[:, -1]
        out = pc.prefill(p)
        self.assertEqual(pc.last.stored_blocks, 9)
        torch.testing.assert_close(out.logits[:, -1], ref, rtol=1e-4, atol=1e-4)
        out = pc.prefill(p)
        self.assertEqual(pc.last.cached_tokens, 72)
        torch.testing.assert_close(out.logits[:, -1], ref, rtol=1e-4, atol=1e-4)

    def test_hbm_blocks(self):
        from kvtier.hf import PrefixCache
        pc = PrefixCache(self.model, self.cache, name="tiny-llama-3", block_tokens=16,
                         hbm_bytes=8 * 3 * 2 * 16 * 2 * 16 * 4)
        p = self.prompt(100, 4)
        with torch.no_grad():
            ref = self.model.generate(p, **self.gen)
        pc.generate(p, **self.gen)  # stores 6 blocks, kept in HBM too
        self.assertTrue(torch.equal(pc.generate(p, **self.gen), ref))
        self.assertEqual((pc.last.cached_tokens, pc.last.hbm_blocks, pc.last.dram_blocks), (96, 6, 0))
        pc.hbm = type(pc.hbm)(pc.ns.layout, pc.hbm.capacity * pc.ns.block_bytes, "cpu")  # empty it
        self.assertTrue(torch.equal(pc.generate(p, **self.gen), ref))
        self.assertEqual((pc.last.hbm_blocks, pc.last.dram_blocks), (0, 6))
        pc.generate(p, **self.gen)
        self.assertEqual((pc.last.hbm_blocks, pc.last.dram_blocks), (6, 0))  # promoted


if __name__ == "__main__":
    unittest.main()
