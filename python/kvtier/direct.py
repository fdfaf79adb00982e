"""Prefix K/V straight from kvtier's pinned DRAM arena into a transformers DynamicCache,
layer by layer, overlapped with the suffix forward.

``kvt_lease_gather_layer`` (kvtier.h) reads one layer of a lease's blocks from the engine's
CUDA-registered arena with a GPU kernel (the SMs read host memory over PCIe: no host memcpy,
no staging buffer) and writes per-layer K/V ``[1, kv_heads, T, head_dim]`` directly. The
loader issues all layers on a side stream (16 CTAs by default: measured best on the H100,
leaving the other SMs to the forward), one event per layer, and a forward pre-hook on
decoder layer ``l`` makes the compute stream wait for event ``l`` only, then hands the layer
its K/V: layer l's attention runs while layers l+1.. are still in flight. Layer 0 is waited
for before the forward starts (the model reads the cache length from it).

Requires a CUDA build of libkvtier on a machine with a GPU and the arena registered
(``kvt_stats.dram_cuda_pinned``).
"""

from __future__ import annotations

from typing import Any, List, Optional

import torch

from ._lib import FEATURES, lib
from .errors import check

__all__ = ["DirectLoader", "available"]


def available() -> bool:
    lib()
    return bool(FEATURES.get("kvt_lease_gather_layer")) and torch.cuda.is_available()


def _decoder_layers(model: Any) -> List[Any]:
    for path in ("model.layers", "model.decoder.layers", "transformer.h"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return list(obj)
        except AttributeError:
            continue
    raise ValueError("cannot find the decoder layers of this model")


class DirectLoader:
    """One per model (not thread-safe: one request at a time)."""

    def __init__(self, model: Any, layout: Any, ctas: int = 16):
        self.model = model
        self.layout = layout
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.stream = torch.cuda.Stream(self.device)
        self.ctas = int(ctas)
        self.layers = _decoder_layers(model)
        self.events = [torch.cuda.Event() for _ in self.layers]
        self._pending: List[Optional[tuple]] = [None] * len(self.layers)
        self._pkv = None
        self._hooks = [m.register_forward_pre_hook(self._make_hook(i)) for i, m in enumerate(self.layers)]

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _make_hook(self, i: int):
        def hook(module, args):
            self._deliver(i)
        return hook

    def _deliver(self, i: int) -> None:
        p = self._pending[i]
        if p is None:
            return
        self._pending[i] = None
        k, v = p
        torch.cuda.current_stream(self.device).wait_event(self.events[i])
        self._pkv.update(k, v, i)

    def load(self, lease: Any, pkv: Any) -> int:
        """Start copying the lease's blocks into ``pkv`` (an empty DynamicCache); returns
        the tokens it will hold. Layer 0 is in place on return (the compute stream waits
        for it on the GPU); the other layers arrive through the pre-hooks during the next
        forward. The lease must stay held until that forward has been queued and the
        stream has passed it (the caller's ``with lease`` around the forward does this
        when the forward ends with a synchronising .item()/.cpu())."""
        n = lease.blocks
        if n == 0:
            return 0
        L = self.layout
        T = n * L.block_tokens
        cur = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(cur)  # the K/V buffers below are allocated on `cur`
        self._pkv = pkv
        fn = lib().kvt_lease_gather_layer
        for i in range(len(self.layers)):
            k = torch.empty((1, L.kv_heads, T, L.head_dim), dtype=self.dtype, device=self.device)
            v = torch.empty_like(k)
            k.record_stream(self.stream)
            v.record_stream(self.stream)
            check(fn(lease._h, 0, n, i, k.data_ptr(), v.data_ptr(), T * L.head_dim, self.ctas,
                     self.stream.cuda_stream), "kvt_lease_gather_layer")
            self.events[i].record(self.stream)
            self._pending[i] = (k, v)
        self._deliver(0)
        return T
