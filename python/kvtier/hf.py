"""Prefix reuse for Hugging Face transformers causal LMs, backed by kvtier.

    pc = PrefixCache(model, kvtier.Cache(dram_bytes="16G"))
    out = pc.generate(input_ids, max_new_tokens=32)   # reuse, prefill the rest, store

For a prompt (batch 1) it asks kvtier for the longest cached block-aligned prefix (kept at
least one token short of the prompt: the model must compute the last position's logits),
builds the model's ``past_key_values`` (a ``DynamicCache``) from the blocks, taking them
from the device-resident HBMBlockCache where present and from kvtier's DRAM tier otherwise,
runs the model only on the rest, and stores the prompt's new whole blocks.

Per-layer K/V in a DynamicCache are ``[batch=1, kv_heads, seq, head_dim]`` after RoPE, so a
cached prefix is valid exactly for the same model, the same token ids at the same positions
(the namespace must name the weights).
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
import time
from typing import Any, List, Optional, Tuple

import numpy as np
import torch

from .core import Cache, Layout, Namespace, _as_u32
from .errors import NoDataError
from .hbm import HBMBlockCache
from .torch_io import DeviceLoader, StoreStager, blocks_to_layers, layers_to_blocks

__all__ = ["PrefixCache", "LoadInfo", "new_dynamic_cache", "cache_layers"]


def new_dynamic_cache(model: Any = None):
    """An empty transformers DynamicCache (with the model's config where supported)."""
    from transformers import DynamicCache

    if model is not None:
        try:
            return DynamicCache(config=model.config)
        except TypeError:
            pass
    return DynamicCache()


def cache_layers(pkv: Any) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """(K, V) per layer of a transformers cache (4.x key_cache lists, 5.x layers, or the
    legacy tuple format)."""
    if hasattr(pkv, "layers"):
        return [(layer.keys, layer.values) for layer in pkv.layers]
    if hasattr(pkv, "key_cache"):
        return list(zip(pkv.key_cache, pkv.value_cache))
    return [(k, v) for k, v in pkv]


@dataclasses.dataclass
class LoadInfo:
    """What one load did: tokens reused, blocks from HBM / DRAM, seconds spent."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    hbm_blocks: int = 0
    dram_blocks: int = 0
    stored_blocks: int = 0
    load_s: float = 0.0
    store_s: float = 0.0


class PrefixCache:
    """kvtier prefix reuse for one Hugging Face causal LM (see module doc).

    :param model: a transformers causal LM (LlamaForCausalLM and friends), on its device.
    :param cache: a :class:`kvtier.Cache`; one is opened with ``dram_bytes`` if None.
    :param namespace: the namespace to use; default ``cache.namespace_for_model(model.config,
        name)`` with the model's dtype.
    :param name: namespace name (default: config._name_or_path or model_type). It must
        identify the weights.
    :param hbm_bytes: device memory for the HBMBlockCache (0: load from DRAM every time).
    :param threads: host threads copying blocks out of kvtier.
    Thread-safety: one PrefixCache per serving thread, or serialise calls; several may share
    one Cache and Namespace.
    """

    def __init__(self, model: Any, cache: Optional[Cache] = None, namespace: Optional[Namespace] = None, *,
                 name: Optional[str] = None, tenant: str = "default", block_tokens: int = 16,
                 dram_bytes: Any = "4G", hbm_bytes: int = 0, threads: int = 8):
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.cache = cache if cache is not None else Cache(dram_bytes=dram_bytes)
        self.ns = namespace if namespace is not None else self.cache.namespace_for_model(
            model.config, name=name, tenant=tenant, dtype=self.dtype, block_tokens=block_tokens)
        want = Layout.from_model_config(model.config, dtype=self.dtype, block_tokens=self.ns.block_tokens)
        if want != self.ns.layout:
            raise ValueError(f"namespace layout {self.ns.layout} does not fit the model ({want})")
        self.loader = DeviceLoader(self.device, threads=threads)
        self.stager = StoreStager(pin=self.device.type == "cuda")
        self.hbm = HBMBlockCache(self.ns.layout, hbm_bytes, self.device) if hbm_bytes else None
        params = inspect.signature(model.forward).parameters
        self._keep_kw = ("logits_to_keep" if "logits_to_keep" in params else
                         "num_logits_to_keep" if "num_logits_to_keep" in params else None)
        self.last = LoadInfo()

    def reserve(self, tokens: int) -> None:
        """Allocate the pinned staging buffers for prompts of up to ``tokens`` tokens now, so
        that the first request does not pay for cudaHostAlloc."""
        nb = -(-tokens // self.ns.block_tokens)
        self.loader.staging.reserve(nb * self.ns.block_bytes)
        self.stager.staging.reserve(nb * self.ns.block_bytes)

    # ------------------------------------------------------------------ lookup and load
    def _ids(self, input_ids: Any) -> np.ndarray:
        if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and input_ids.shape[0] != 1:
            raise ValueError("PrefixCache handles batch size 1")
        return _as_u32(input_ids)

    def _limit(self, n_tokens: int) -> int:
        """Most tokens reusable: whole blocks, at least one prompt token left to compute."""
        bt = self.ns.block_tokens
        return max(0, (n_tokens - 1) // bt) * bt

    def lookup(self, input_ids: Any) -> int:
        """Tokens of the prompt that a load would reuse (measures only; pins nothing)."""
        t = self._ids(input_ids)
        return self.ns.match(t[: self._limit(t.size)])

    def load(self, input_ids: Any) -> Tuple[int, Any]:
        """(cached_tokens, past_key_values): a DynamicCache holding the longest cached
        prefix's K/V on the model's device (empty, with 0, on a miss)."""
        t0 = time.perf_counter()
        t = self._ids(input_ids)
        info = LoadInfo(prompt_tokens=int(t.size))
        pkv = new_dynamic_cache(self.model)
        with self.ns.lease(t[: self._limit(t.size)]) as lease:
            n = lease.blocks
            if n:
                blocks = self._load_blocks(lease, t, info)
                for l, (k, v) in enumerate(blocks_to_layers(blocks)):
                    pkv.update(k, v, l)
            info.cached_tokens = lease.tokens
        info.load_s = time.perf_counter() - t0
        self.last = info
        return info.cached_tokens, pkv

    def _load_blocks(self, lease, tokens: np.ndarray, info: LoadInfo) -> torch.Tensor:
        n = lease.blocks
        lay = self.ns.layout
        if self.hbm is None:
            info.dram_blocks = n
            return self.loader.load(lease)
        keys = lease.keys()
        rows = self.hbm.lookup(keys, tokens)
        hit = [i for i, r in enumerate(rows) if r is not None]
        info.hbm_blocks = len(hit)
        info.dram_blocks = n - len(hit)
        if len(hit) == n:
            return self.hbm.gather(rows)
        out = torch.empty((n,) + lay.block_shape, dtype=self.dtype, device=self.device)
        if hit:
            out.index_copy_(0, torch.tensor(hit, device=self.device),
                            self.hbm.gather([rows[i] for i in hit]))
        miss = [i for i, r in enumerate(rows) if r is None]
        a = 0
        while a < len(miss):  # contiguous runs of misses: one loader call each
            b = a
            while b + 1 < len(miss) and miss[b + 1] == miss[b] + 1:
                b += 1
            lo, hi = miss[a], miss[b] + 1
            self.loader.load(lease, lo, hi - lo, out=out[lo:hi])
            a = b + 1
        self.hbm.insert([keys[i] for i in miss], tokens, miss,
                        out.index_select(0, torch.tensor(miss, device=self.device)))
        return out

    # ------------------------------------------------------------------ store
    def store(self, input_ids: Any, past_key_values: Any, cached_tokens: int = 0) -> int:
        """Store the prompt's whole blocks past ``cached_tokens`` from ``past_key_values``
        (which must hold K/V for at least those tokens). Returns blocks newly stored."""
        t0 = time.perf_counter()
        t = self._ids(input_ids)
        bt = self.ns.block_tokens
        layers = cache_layers(past_key_values)
        have = layers[0][0].shape[-2] if layers else 0
        end_blocks = min(t.size, have) // bt
        first = min(cached_tokens // bt, end_blocks)
        stored = 0
        if end_blocks > first:
            ks = [k for k, _ in layers]
            vs = [v for _, v in layers]
            blocks = layers_to_blocks(ks, vs, first * bt, end_blocks - first, bt)
            try:
                stored = self.stager.put(self.ns, t[: end_blocks * bt], blocks, first)
            except NoDataError:  # the reused prefix was evicted meanwhile: store it all
                blocks = layers_to_blocks(ks, vs, 0, end_blocks, bt)
                stored = self.stager.put(self.ns, t[: end_blocks * bt], blocks, 0)
            if self.hbm is not None:  # newly computed blocks are likely reused soon
                keys = self.ns.block_keys(t[: end_blocks * bt])[first:]
                self.hbm.insert(list(keys), t, list(range(first, end_blocks)), blocks[-(end_blocks - first):])
        self.last.stored_blocks = stored
        self.last.store_s = time.perf_counter() - t0
        return stored

    # ------------------------------------------------------------------ model calls
    @torch.no_grad()
    def prefill(self, input_ids: Any, store: bool = True, **kwargs: Any):
        """Run the prompt through the model reusing the cached prefix: returns the model's
        output (``logits`` of the last position only where the model supports it, and
        ``past_key_values`` covering the whole prompt). Stores new blocks if ``store``."""
        ids = self._as_tensor(input_ids)
        n, pkv = self.load(ids)
        if self._keep_kw and self._keep_kw not in kwargs:
            kwargs[self._keep_kw] = 1
        out = self.model(input_ids=ids[:, n:], past_key_values=pkv, use_cache=True, **kwargs)
        if store:
            self.store(ids, out.past_key_values, n)
        return out

    @torch.no_grad()
    def generate(self, input_ids: Any, store: bool = True, **generate_kwargs: Any):
        """``model.generate`` reusing the cached prefix; stores the prompt's new blocks after.
        Returns what model.generate returns (the full sequence, prompt included)."""
        ids = self._as_tensor(input_ids)
        n, pkv = self.load(ids)
        out = self.model.generate(ids, past_key_values=pkv, use_cache=True, **generate_kwargs)
        if store:
            self.store(ids, pkv, n)
        return out

    def _as_tensor(self, input_ids: Any) -> torch.Tensor:
        ids = input_ids if isinstance(input_ids, torch.Tensor) else torch.as_tensor(np.asarray(input_ids))
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        if ids.shape[0] != 1:
            raise ValueError("PrefixCache handles batch size 1")
        return ids.to(self.device, torch.long)
