"""Moving kvtier blocks to and from torch tensors, on the CPU or a CUDA GPU.

Shapes (bt = block_tokens, H = kv_heads, D = head_dim, L = layers):

    blocks          [n, L, 2, bt, H, D]     kvtier's block layout, n blocks in a row
    per-layer K, V  [1, H, n*bt, D]         Hugging Face past_key_values (batch 1)

Loading to a GPU (DeviceLoader.load): the leased blocks are copied by kvt_read_contig,
from several threads, straight into a reused page-locked (pinned) host buffer; each chunk
goes to the GPU with one asynchronous copy as soon as it is complete, so the host copy of
later chunks overlaps the PCIe transfer of earlier ones. Bytes cross memory twice in all:
engine DRAM -> pinned staging (CPU memcpy), staging -> HBM (DMA); no other copy is made.
blocks_to_layers() then turns the blocks into per-layer K/V with one copy on the GPU.

Storing (StoreStager.put): the reverse. layers_to_blocks() gathers the new tokens' K/V
into block layout on the GPU (one strided copy), one copy to pinned host memory, then
kvt_put with one pointer per block.
"""

from __future__ import annotations

import threading
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .core import DType, Lease, Namespace

__all__ = ["PinnedBuffer", "DeviceLoader", "StoreStager", "read_torch", "blocks_to_layers",
           "layers_to_blocks", "put_torch"]


class PinnedBuffer:
    """A growable host byte buffer, page-locked when CUDA is available, reused across calls.

    Allocating pinned memory is slow (cudaHostAlloc: ~0.3 s per GiB), so loaders keep one.
    ``event`` is recorded after the last GPU copy that reads or writes it; :meth:`get` waits
    on it before handing the memory out again.
    """

    def __init__(self, pin: Optional[bool] = None):
        self.pin = torch.cuda.is_available() if pin is None else pin
        self.buf: Optional[torch.Tensor] = None
        self.event = None
        self.lock = threading.Lock()

    def get(self, nbytes: int) -> torch.Tensor:
        """A uint8 tensor of exactly nbytes (a view of the buffer, grown if needed)."""
        if self.event is not None:
            self.event.synchronize()
            self.event = None
        if self.buf is None or self.buf.numel() < nbytes:
            self.buf = None
            size = max(nbytes, 1 << 20)
            size = 1 << (size - 1).bit_length() if size < (1 << 30) else -(-size // (1 << 28)) * (1 << 28)
            self.buf = torch.empty(size, dtype=torch.uint8, pin_memory=self.pin)
        return self.buf[:nbytes]

    def reserve(self, nbytes: int) -> None:
        """Allocate ahead of time (keeps the first load's latency free of cudaHostAlloc)."""
        with self.lock:
            self.get(nbytes)


def _view_blocks(raw: torch.Tensor, ns: Namespace, n: int) -> torch.Tensor:
    return raw.view(DType.torch(ns.layout.dtype)).view((n,) + ns.layout.block_shape)


class DeviceLoader:
    """Loads leased blocks into a device tensor ``[n, L, 2, bt, H, D]`` (see module doc).

    :param device: a torch device ('cuda', 'cuda:1', 'cpu').
    :param threads: host threads running kvt_read_contig in parallel.
    :param chunk_bytes: host->GPU copy granularity (a copy starts when a chunk is read).
    Thread-safe: concurrent loads take turns on the staging buffer.
    """

    def __init__(self, device: Any = "cuda", threads: int = 8, chunk_bytes: int = 64 << 20):
        self.device = torch.device(device)
        self.threads = threads
        self.chunk_bytes = chunk_bytes
        self.staging = PinnedBuffer(pin=self.device.type == "cuda")
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def load(self, lease: Lease, first: int = 0, n: Optional[int] = None,
             out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Blocks ``[first, first + n)`` of the lease as a tensor on ``self.device``.

        :param out: optional destination ``[n, L, 2, bt, H, D]`` of the namespace's dtype,
            contiguous, on the device (e.g. a slice of a larger tensor).
        The result is ready for work queued on the current stream afterwards.
        """
        ns = lease.namespace
        n = lease.blocks - first if n is None else n
        shape = (n,) + ns.layout.block_shape
        dt = DType.torch(ns.layout.dtype)
        if out is None:
            out = torch.empty(shape, dtype=dt, device=self.device)
        elif tuple(out.shape) != shape or out.dtype != dt or not out.is_contiguous():
            raise ValueError(f"out must be a contiguous {dt} tensor of shape {shape}")
        if n == 0:
            return out
        bb = ns.block_bytes
        if self.device.type == "cpu":
            lease.read_into(out, first, n, threads=self.threads)
            return out
        chunk = max(1, self.chunk_bytes // bb)
        with self.staging.lock:
            host = self.staging.get(n * bb)
            hview = _view_blocks(host, ns, n)
            stream = self.stream
            stream.wait_stream(torch.cuda.current_stream(self.device))  # out may be fresh

            def to_gpu(a: int, b: int) -> None:
                with torch.cuda.stream(stream):
                    out[a:b].copy_(hview[a:b], non_blocking=True)

            lease.read_chunks(host.data_ptr(), first, n, self.threads, chunk, to_gpu)
            ev = torch.cuda.Event()
            ev.record(stream)
            self.staging.event = ev
            torch.cuda.current_stream(self.device).wait_event(ev)
            out.record_stream(stream)
        return out


def read_torch(lease: Lease, first: int = 0, n: Optional[int] = None, device: Any = None,
               threads: int = 4, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Lease.read_torch: see there. A CUDA device uses a per-device cached DeviceLoader."""
    dev = torch.device(device) if device is not None else (out.device if out is not None else torch.device("cpu"))
    n = lease.blocks - first if n is None else n
    ns = lease.namespace
    if dev.type == "cpu":
        if out is None:
            out = torch.empty((n,) + ns.layout.block_shape, dtype=DType.torch(ns.layout.dtype))
        lease.read_into(out, first, n, threads=threads)
        return out
    return _loader(dev, threads).load(lease, first, n, out)


_loaders: dict = {}
_loaders_lock = threading.Lock()


def _loader(dev: torch.device, threads: int) -> DeviceLoader:
    key = (str(dev), threads)
    with _loaders_lock:
        if key not in _loaders:
            _loaders[key] = DeviceLoader(dev, threads)
        return _loaders[key]


def blocks_to_layers(blocks: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """``[n, L, 2, bt, H, D]`` -> L pairs (K, V) of ``[1, H, n*bt, D]`` (one copy; K and V
    are contiguous views of one tensor ``[L, 2, 1, H, n*bt, D]``)."""
    n, L, two, bt, H, D = blocks.shape
    y = blocks.permute(1, 2, 4, 0, 3, 5).reshape(L, 2, 1, H, n * bt, D)
    return [(y[l, 0], y[l, 1]) for l in range(L)]


def layers_to_blocks(keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor], start: int,
                     n_blocks: int, block_tokens: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Tokens ``[start, start + n_blocks*bt)`` of per-layer K/V ``[1, H, S, D]`` (batch 1)
    as blocks ``[n_blocks, L, 2, bt, H, D]`` on their device (one strided copy per layer
    and K/V)."""
    L = len(keys)
    _, H, _, D = keys[0].shape
    bt = block_tokens
    end = start + n_blocks * bt
    if out is None:
        out = torch.empty((n_blocks, L, 2, bt, H, D), dtype=keys[0].dtype, device=keys[0].device)
    for l in range(L):
        for kv, src in ((0, keys[l]), (1, values[l])):
            if src.shape[0] != 1:
                raise ValueError("only batch size 1 is stored")
            s = src[0, :, start:end, :].reshape(H, n_blocks, bt, D)  # [H, n, bt, D]
            out[:, l, kv].copy_(s.permute(1, 2, 0, 3))  # -> [n, bt, H, D]
    return out


class StoreStager:
    """Copies device blocks to a reused pinned buffer and stores them with kvt_put."""

    def __init__(self, pin: Optional[bool] = None):
        self.staging = PinnedBuffer(pin)

    def put(self, ns: Namespace, tokens: Any, blocks: torch.Tensor, start_block: int) -> int:
        """Store ``blocks`` ``[n, L, 2, bt, H, D]`` (any device) as blocks
        ``[start_block, start_block + n)`` of ``tokens`` (whose whole blocks must number
        ``start_block + n``). Returns blocks newly stored."""
        if blocks.device.type == "cpu" and blocks.is_contiguous():
            return ns.put(tokens, blocks, start_block)
        with self.staging.lock:
            host = self.staging.get(blocks.numel() * blocks.element_size())
            h = host.view(blocks.dtype).view(blocks.shape)
            h.copy_(blocks, non_blocking=True)
            if blocks.device.type == "cuda":
                torch.cuda.current_stream(blocks.device).synchronize()
            return ns.put(tokens, h, start_block)


def put_torch(ns: Namespace, tokens: Any, blocks: torch.Tensor, start_block: int = 0) -> int:
    """ns.put for a tensor on any device (staged through pinned memory from a GPU)."""
    return StoreStager().put(ns, tokens, blocks, start_block)
