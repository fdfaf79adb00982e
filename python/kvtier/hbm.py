"""A device-memory (HBM) copy of kvtier blocks, kept by the Python integration.

kvtier.h does not expose an HBM tier yet (gpu/ holds the pool and paged kernels, used by
engines at the C level), so the Hugging Face integration keeps recently loaded blocks in a
GPU tensor of its own: ``pool [capacity, L, 2, bt, H, D]``, the same layout as gpu/paged.h's
pool, evicted least-recently-used. Blocks are found through the keys of a kvtier lease,
and every hit is then verified on the token ids themselves (DESIGN invariant 1: a key is
never the sole basis of a hit): each entry keeps the token sequence it was stored for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .core import DType, Layout

__all__ = ["HBMBlockCache"]


class _Entry:
    __slots__ = ("slot", "seq", "end")

    def __init__(self, slot: int, seq: np.ndarray, end: int):
        self.slot = slot  # row of the pool
        self.seq = seq    # uint32 tokens this block was stored for (shared by its run)
        self.end = end    # the block covers seq[end - bt : end]; its prefix is seq[:end]


class HBMBlockCache:
    """Up to ``capacity_bytes`` of blocks resident in device memory (see module doc).

    Thread-safe (one lock around the bookkeeping; copies are queued on the current stream).
    """

    def __init__(self, layout: Layout, capacity_bytes: int, device: torch.device | str = "cuda"):
        self.layout = layout
        self.device = torch.device(device)
        bb = layout.layers * 2 * layout.block_tokens * layout.kv_heads * layout.head_dim * layout.itemsize
        self.capacity = max(0, int(capacity_bytes) // bb)
        self.pool = torch.empty((self.capacity,) + layout.block_shape, dtype=DType.torch(layout.dtype),
                                device=self.device)
        self._free = list(range(self.capacity - 1, -1, -1))
        self._map: "OrderedDict[int, _Entry]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._map)

    def lookup(self, keys: Sequence[int], tokens: np.ndarray) -> List[Optional[int]]:
        """Pool rows of blocks 0..len(keys)-1 of ``tokens`` (None where absent), verified on
        the token ids. Found blocks become most recently used."""
        bt = self.layout.block_tokens
        out: List[Optional[int]] = []
        lcp: Dict[int, int] = {}  # id(seq) -> common prefix length with tokens
        with self._lock:
            for i, k in enumerate(keys):
                e = self._map.get(int(k))
                ok = False
                if e is not None and e.end == (i + 1) * bt:
                    c = lcp.get(id(e.seq))
                    if c is None:
                        m = min(e.seq.size, tokens.size)
                        neq = np.flatnonzero(e.seq[:m] != tokens[:m])
                        c = lcp[id(e.seq)] = int(neq[0]) if neq.size else m
                    ok = e.end <= c
                if ok:
                    self._map.move_to_end(int(k))
                    out.append(e.slot)
                    self.hits += 1
                else:
                    out.append(None)
                    self.misses += 1
        return out

    def insert(self, keys: Sequence[int], tokens: np.ndarray, blocks: Sequence[int],
               data: torch.Tensor) -> int:
        """Copy ``data[j]`` (device blocks ``[m, L, 2, bt, H, D]``) in as block ``blocks[j]``
        of ``tokens`` with key ``keys[j]``, evicting least recently used entries. Returns
        blocks inserted (fewer if the pool is smaller)."""
        bt = self.layout.block_tokens
        if not len(blocks) or not self.capacity:
            return 0
        blocks = list(blocks)[: self.capacity]  # never evict a block this call inserted
        seq = np.array(tokens[: (max(blocks) + 1) * bt], dtype=np.uint32)  # one copy per run
        rows, src = [], []
        with self._lock:
            for j, b in enumerate(blocks):
                k = int(keys[j])
                old = self._map.pop(k, None)  # replaced: its row is free again
                if old is not None:
                    self._free.append(old.slot)
                if not self._free:
                    if not self._map:
                        break
                    _, old = self._map.popitem(last=False)
                    self._free.append(old.slot)
                slot = self._free.pop()
                self._map[k] = _Entry(slot, seq, (b + 1) * bt)
                rows.append(slot)
                src.append(j)
        if rows:
            idx = torch.tensor(rows, device=self.device)
            sidx = torch.tensor(src, device=data.device)
            self.pool.index_copy_(0, idx, data.index_select(0, sidx))
        return len(rows)

    def gather(self, rows: Sequence[int], out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Pool rows as a new contiguous tensor ``[len(rows), L, 2, bt, H, D]``."""
        idx = torch.tensor(list(rows), device=self.device)
        return torch.index_select(self.pool, 0, idx, out=out) if out is not None else self.pool.index_select(0, idx)
