"""Device memory (HBM) and kvtier blocks.

The engine's own HBM tier (``Cache(hbm_bytes=...)``, kvtier.h "the HBM tier") is used through
:meth:`kvtier.Lease.load_hbm` (pool indices as a torch int32 block table on the GPU),
:meth:`kvtier.Lease.gather_layer` / :meth:`~kvtier.Lease.gather` (Hugging Face-shaped K/V),
:meth:`kvtier.Namespace.hbm_pool` (``HbmPool.as_tensor()``: a torch view of the pool) and
:func:`paged_attention` here (kvt_attn_run over that pool and block table).

:class:`HBMBlockCache` is the older Python-side alternative for libraries without an HBM
tier: the Hugging Face integration's own GPU tensor ``pool [capacity, L, 2, bt, H, D]``
(the same layout), evicted least-recently-used. Blocks are found through the keys of a
kvtier lease, and every hit is then verified on the token ids themselves (DESIGN invariant
1: a key is never the sole basis of a hit): each entry keeps the token sequence it was
stored for.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from . import _lib
from .core import DType, HbmPool, Layout, _stream
from .errors import check

__all__ = ["HBMBlockCache", "paged_attention", "attn_workspace_bytes"]


def _attn_args(pool: HbmPool, layer: int, q: torch.Tensor, out: torch.Tensor, kv_indptr: torch.Tensor,
               kv_indices: torch.Tensor, kv_lens: torch.Tensor, qo_indptr: Optional[torch.Tensor],
               num_qo_heads: int, max_q_len: int, max_kv_len: int, sm_scale: float) -> "_lib.AttnArgs_c":
    lay = pool.layout
    num_seqs = kv_lens.numel()
    a = _lib.AttnArgs_c()
    a.layout = lay._c()
    a.layer, a.num_qo_heads, a.num_seqs = int(layer), int(num_qo_heads), int(num_seqs)
    a.total_q = int(q.shape[0])
    a.max_q_len, a.max_kv_len, a.num_blocks = int(max_q_len), int(max_kv_len), int(pool.num_blocks)
    a.sm_scale = float(sm_scale)
    a.pool, a.q, a.out = pool.base, q.data_ptr(), out.data_ptr()
    a.qo_indptr = qo_indptr.data_ptr() if qo_indptr is not None else None
    a.kv_indptr, a.kv_indices, a.kv_lens = kv_indptr.data_ptr(), kv_indices.data_ptr(), kv_lens.data_ptr()
    return a


def _check_i32(name: str, t: Optional[torch.Tensor], dev: torch.device) -> None:
    if t is not None and (t.dtype != torch.int32 or t.device != dev or not t.is_contiguous()):
        raise ValueError(f"{name} must be a contiguous int32 tensor on {dev}")


def paged_attention(pool: HbmPool, layer: int, q: torch.Tensor, kv_indptr: torch.Tensor,
                    kv_indices: torch.Tensor, kv_lens: torch.Tensor, qo_indptr: Optional[torch.Tensor] = None,
                    max_kv_len: Optional[int] = None, max_q_len: Optional[int] = None, sm_scale: float = 0.0,
                    out: Optional[torch.Tensor] = None, workspace: Optional[torch.Tensor] = None,
                    stream: Any = None) -> torch.Tensor:
    """kvt_attn_run: paged attention of ``q`` over layer ``layer`` of the engine's HBM pool.

    :param q: ``[total_q, num_qo_heads, head_dim]`` of the pool's dtype (bf16/fp16) on the
        pool's GPU; decode (``qo_indptr`` None): one query per sequence.
    :param kv_indptr, kv_indices: the CSR block table, int32 on the GPU: sequence s's blocks
        are ``kv_indices[kv_indptr[s]:kv_indptr[s+1]]`` (rows from :meth:`Lease.load_hbm`).
    :param kv_lens: int32 ``[num_seqs]``: tokens in the cache per sequence, the q_len new
        ones included (whose K/V the caller wrote to the pool first).
    :param qo_indptr: int32 ``[num_seqs + 1]`` for extend/prefill (causal), None for decode.
    :param max_kv_len, max_q_len: host scalars sizing the split (computed with a device
        sync when omitted).
    :return: ``out`` ``[total_q, num_qo_heads, head_dim]``, written asynchronously on
        ``stream`` (None: torch's current stream).
    :raises InvalidArgumentError: unsupported shapes (head_dim 64/128, GQA ratio 1..8).
    :raises DeviceUnavailableError: no GPU / CUDA build.
    """
    dev = torch.device("cuda", pool.device)
    if q.dim() != 3 or q.device != dev or not q.is_contiguous():
        raise ValueError(f"q must be a contiguous [total_q, heads, head_dim] tensor on {dev}")
    for name, t in (("kv_indptr", kv_indptr), ("kv_indices", kv_indices), ("kv_lens", kv_lens),
                    ("qo_indptr", qo_indptr)):
        _check_i32(name, t, dev)
    if max_kv_len is None:
        max_kv_len = int(kv_lens.max().item())
    if max_q_len is None:
        max_q_len = int((qo_indptr[1:] - qo_indptr[:-1]).max().item()) if qo_indptr is not None else 1
    if out is None:
        out = torch.empty_like(q)
    args = _attn_args(pool, layer, q, out, kv_indptr, kv_indices, kv_lens, qo_indptr, q.shape[1],
                      max_q_len, max_kv_len, sm_scale)
    need = ctypes.c_size_t()
    check(_lib.require("kvt_attn_workspace_bytes")(ctypes.byref(args), ctypes.byref(need)),
          "kvt_attn_workspace_bytes")
    if workspace is None and need.value:
        workspace = torch.empty(need.value, dtype=torch.uint8, device=dev)
    ws_ptr = workspace.data_ptr() if workspace is not None else None
    ws_bytes = workspace.numel() * workspace.element_size() if workspace is not None else 0
    check(_lib.require("kvt_attn_run")(ctypes.byref(args), ws_ptr, ws_bytes, _stream(stream)), "kvt_attn_run")
    return out


def attn_workspace_bytes(pool: HbmPool, layer: int, num_qo_heads: int, num_seqs: int, max_kv_len: int,
                         total_q: Optional[int] = None, max_q_len: int = 1) -> int:
    """kvt_attn_workspace_bytes for these shapes (split-K scratch; 0 if none helps)."""
    a = _lib.AttnArgs_c()
    a.layout = pool.layout._c()
    a.layer, a.num_qo_heads, a.num_seqs = layer, num_qo_heads, num_seqs
    a.total_q = total_q if total_q is not None else num_seqs
    a.max_q_len, a.max_kv_len, a.num_blocks = max_q_len, max_kv_len, pool.num_blocks
    a.qo_indptr = 1 if max_q_len > 1 else None  # only its NULL-ness matters for sizing
    need = ctypes.c_size_t()
    check(_lib.require("kvt_attn_workspace_bytes")(ctypes.byref(a), ctypes.byref(need)),
          "kvt_attn_workspace_bytes")
    return need.value


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
