"""Prefix K/V straight from kvtier's pinned DRAM arena into a transformers DynamicCache,
layer by layer, overlapped with the suffix forward.

Two ways to move a layer, both reading the engine's CUDA-registered arena in place (no host
memcpy, no staging buffer) and writing per-layer K/V on the GPU:

* ``method="copy"`` (the default): ``kvt_lease_copy_layer``, the GPU's copy engines
  (cudaMemcpy2DAsync, one per K/V and per run of adjacent blocks) into ``[1, T, kv_heads,
  head_dim]`` buffers handed to the cache as their ``[1, kv_heads, T, head_dim]`` transpose;
  the cache's update (a copy it makes anyway) lays them out heads-outer. No SM takes part,
  so the forward beside it keeps the whole GPU.
* ``method="kernel"``: ``kvt_lease_gather_layer``, an SM kernel of ``ctas`` CTAs reading host
  memory over PCIe and permuting in the same pass. As fast here (H100, docs/python.md "TTFT
  on the H100"), but its CTAs hold SMs while the forward runs.

The loader issues all layers on a side stream, one event per layer, and puts every layer's
K/V tensors into the cache at once (transformers' DynamicLayer: as its contents, no copy; the
layer's own update appends the suffix). A forward pre-hook on decoder layer ``l`` only makes
the compute stream wait for event ``l``: layer l's attention runs while layers l+1.. are
still in flight. Layer 0 is waited for before the forward starts.

Why so little Python: at batch 1 with a short suffix the forward is bound by the host, not
the GPU (on the H100 the GPU starts each decoder layer within 0.1 ms of the CPU issuing it;
bench/ttft_overlap.py), so every host microsecond the loader adds is TTFT. Handing each layer
over through ``DynamicCache.update`` in the hook (two ``torch.cat`` and an allocation per
layer) cost about 0.18 ms of host time per layer, 6 ms in all; the copies themselves were
never late (no layer waited for its K/V).

Requires a CUDA build of libkvtier on a machine with a GPU and the arena registered
(``kvt_stats.dram_cuda_pinned``).
"""

from __future__ import annotations

from typing import Any, List, Optional

import torch

from ._lib import FEATURES, lib
from .errors import check

__all__ = ["DirectLoader", "available"]


def available(method: str = "copy") -> bool:
    lib()
    fn = "kvt_lease_copy_layer" if method == "copy" else "kvt_lease_gather_layer"
    return bool(FEATURES.get(fn)) and torch.cuda.is_available()


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
    """One per model (not thread-safe: one request at a time).

    :param method: ``"copy"`` (copy engines, the default) or ``"kernel"`` (the SM gather
        kernel); see the module doc.
    :param ctas: CTAs of the gather kernel (``method="kernel"`` only; 0: two per SM).
    :param priority: CUDA priority of the loader's side stream (0: the default priority).
    """

    def __init__(self, model: Any, layout: Any, ctas: int = 16, method: str = "copy", priority: int = 0):
        if method not in ("copy", "kernel"):
            raise ValueError(f"method must be 'copy' or 'kernel', not {method!r}")
        self.model = model
        self.layout = layout
        self.method = method
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.stream = torch.cuda.Stream(self.device, priority=priority)
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
        torch.cuda.current_stream(self.device).wait_event(self.events[i])
        if p is not True:  # not placed in the cache by load(): hand it over now
            self._pkv.update(p[0], p[1], i)

    def load(self, lease: Any, pkv: Any) -> int:
        """Start copying the lease's blocks into ``pkv`` (an empty DynamicCache); returns
        the tokens it will hold. The cache holds every layer's K/V tensors on return
        (transformers' DynamicLayer; older caches get them from the pre-hooks); the compute
        stream waits for layer 0 now and for layer l in decoder layer l's pre-hook, so
        nothing reads a layer before its copy is done. The lease must stay held until that
        forward has been queued and the stream has passed it (the caller's ``with lease``
        around the forward does this when the forward ends with a synchronising
        .item()/.cpu())."""
        n = lease.blocks
        if n == 0:
            return 0
        L = self.layout
        T = n * L.block_tokens
        H, D = L.kv_heads, L.head_dim
        nl = len(self.layers)
        cur = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(cur)  # the K/V buffers below are allocated on `cur`
        self._pkv = pkv
        copy = self.method == "copy"
        # one allocation per K and V for all layers; per-layer views of it go into the cache
        shape = (nl, 1, T, H, D) if copy else (nl, 1, H, T, D)
        kk = torch.empty(shape, dtype=self.dtype, device=self.device)
        vv = torch.empty_like(kk)
        kk.record_stream(self.stream)
        vv.record_stream(self.stream)
        kp, vp, lb = kk.data_ptr(), vv.data_ptr(), kk[0].numel() * kk.element_size()
        fn = lib().kvt_lease_copy_layer if copy else lib().kvt_lease_gather_layer
        st = self.stream.cuda_stream
        layers = getattr(pkv, "layers", None)
        for i in range(nl):
            if copy:
                check(fn(lease._h, 0, n, i, kp + i * lb, vp + i * lb, st), "kvt_lease_copy_layer")
                k, v = kk[i].transpose(1, 2), vv[i].transpose(1, 2)
            else:
                check(fn(lease._h, 0, n, i, kp + i * lb, vp + i * lb, T * D, self.ctas, st),
                      "kvt_lease_gather_layer")
                k, v = kk[i], vv[i]
            self.events[i].record(self.stream)
            self._pending[i] = True if _place(layers, i, k, v) else (k, v)
        self._deliver(0)
        return T


def _place(layers: Any, i: int, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Put K/V of layer i into an empty transformers DynamicLayer as its contents (no copy:
    the layer's next update concatenates the new tokens onto them, as it would onto what
    ``update`` stored). False where the cache is not of that kind (the caller then goes
    through ``update``)."""
    if layers is None or i >= len(layers):
        return False
    lay = layers[i]
    if type(lay).__name__ != "DynamicLayer" or getattr(lay, "is_initialized", True):
        return False
    lay.dtype, lay.device = k.dtype, k.device
    lay.keys, lay.values = k, v
    lay.is_initialized = True
    if lay.get_seq_length() == k.shape[-2]:
        return True
    lay.keys = lay.values = None  # not the layer this expects: leave it empty
    lay.is_initialized = False
    return False
