"""Prefix reuse with a Hugging Face model (a tiny random Llama here; any causal LM works).

    KVTIER_LIB=build/libkvtier.so PYTHONPATH=python python3 python/examples/hf_generate.py
"""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import kvtier
from kvtier.hf import PrefixCache

cfg = LlamaConfig(vocab_size=1000, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2)
model = LlamaForCausalLM(cfg).eval()
pc = PrefixCache(model, kvtier.Cache(dram_bytes="256M"), name="tiny-llama-example")
system = torch.randint(3, 1000, (1, 200))  # a shared "system prompt"
for question in range(3):
    ids = torch.cat([system, torch.randint(3, 1000, (1, 20))], dim=1)
    out = pc.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=0)
    print(f"request {question}: reused {pc.last.cached_tokens} of {ids.shape[1]} prompt tokens, "
          f"stored {pc.last.stored_blocks} blocks -> {out[0, ids.shape[1]:].tolist()}")
