"""The Pythonic API over libkvtier: Cache (an engine), Namespace, Lease, Layout, Stats.

Shapes: one block is ``[layers][2 (K, V)][block_tokens][kv_heads][head_dim]`` elements of
the namespace's dtype (kvtier.h, "Block layout"); arrays of blocks here are
``[n_blocks, layers, 2, block_tokens, kv_heads, head_dim]``, C-contiguous.

Threads: every method may be called from any number of threads (the C engine is
thread-safe and ctypes drops the GIL during calls, so copies run in parallel). A Lease is
guarded by its own lock (the C API allows one thread at a time per lease). ``Cache.close``
waits for calls in flight and then refuses new ones.
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import errno
import json
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from ctypes import byref, c_size_t, c_uint64, c_void_p
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib
from .errors import ClosedError, FeatureUnavailableError, RangeError, check

__all__ = ["DType", "Layout", "Stats", "Cache", "Namespace", "Lease", "Tier", "TierInfo",
           "HbmPool", "Plan", "parse_size", "parse_ttl", "version", "features"]


class Tier(enum.IntEnum):
    """kvt_tier: the tiers, fastest first. A block may have copies in several."""

    HBM = 0
    DRAM = 1
    NVME = 2
    DISK = 3

    @classmethod
    def of(cls, t: Union["Tier", int, str]) -> "Tier":
        """A Tier from a Tier, its int value or its name ('nvme', 'DRAM', ...)."""
        if isinstance(t, str):
            try:
                return cls[t.upper()]
            except KeyError:
                raise ValueError(f"unknown tier {t!r} (hbm, dram, nvme or disk)") from None
        return cls(int(t))

# ---------------------------------------------------------------- dtypes


class DType:
    """kvt_dtype values and name handling."""

    FP16 = 1
    BF16 = 2
    FP32 = 3
    FP8 = 4
    SIZE = {1: 2, 2: 2, 3: 4, 4: 1}
    NAME = {1: "fp16", 2: "bf16", 3: "fp32", 4: "fp8"}
    _ALIASES = {
        "fp16": 1, "float16": 1, "half": 1, "f16": 1,
        "bf16": 2, "bfloat16": 2,
        "fp32": 3, "float32": 3, "float": 3, "f32": 3,
        "fp8": 4, "float8": 4, "float8_e4m3fn": 4, "float8_e5m2": 4, "e4m3": 4, "e5m2": 4,
    }
    # numpy has no bfloat16 or fp8: their bytes are shown as uint16 / uint8.
    NUMPY = {1: np.float16, 2: np.uint16, 3: np.float32, 4: np.uint8}

    @classmethod
    def of(cls, dtype: Any) -> int:
        """kvt_dtype for an int, a name ('bf16', 'float16', ...), a torch or numpy dtype."""
        if isinstance(dtype, bool):
            raise TypeError("dtype must not be a bool")
        if isinstance(dtype, int):
            if dtype not in cls.SIZE:
                raise ValueError(f"unknown kvt_dtype {dtype}")
            return dtype
        name = str(dtype).lower()
        for prefix in ("torch.", "<class 'numpy.", "numpy."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        name = name.rstrip("'>")
        if name in cls._ALIASES:
            return cls._ALIASES[name]
        raise ValueError(f"unknown KV dtype {dtype!r} (use fp16, bf16, fp32 or fp8)")

    @classmethod
    def torch(cls, code: int):
        """The torch dtype for a kvt_dtype (fp8: torch.uint8 bytes)."""
        import torch

        return {1: torch.float16, 2: torch.bfloat16, 3: torch.float32, 4: torch.uint8}[code]


# ---------------------------------------------------------------- layout


@dataclasses.dataclass(frozen=True)
class Layout:
    """A model's KV layout (struct kvt_layout).

    :param layers: transformer layers holding KV.
    :param kv_heads: KV heads per layer.
    :param head_dim: elements per head.
    :param dtype: 'fp16', 'bf16', 'fp32', 'fp8', a torch/numpy dtype or a kvt_dtype int.
    :param block_tokens: tokens per block, a power of two in [1, 4096].
    """

    layers: int
    kv_heads: int
    head_dim: int
    dtype: Any = "bf16"
    block_tokens: int = 16

    def __post_init__(self):
        object.__setattr__(self, "dtype", DType.of(self.dtype))
        for f in ("layers", "kv_heads", "head_dim", "block_tokens"):
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 0 <= v < 2**32:
                raise ValueError(f"Layout.{f} must be an integer in [0, 2**32), got {v!r}")
            object.__setattr__(self, f, int(v))

    @classmethod
    def from_model_config(cls, config: Any, dtype: Any = None, block_tokens: int = 16) -> "Layout":
        """The layout of a Hugging Face-style model configuration (object or dict).

        Reads ``num_hidden_layers``, ``num_key_value_heads`` (default
        ``num_attention_heads``), ``head_dim`` (default ``hidden_size //
        num_attention_heads``) and, unless ``dtype`` is given, ``torch_dtype``/``dtype``
        (default bf16).
        """
        get = config.get if isinstance(config, Mapping) else lambda k, d=None: getattr(config, k, d)
        layers = get("num_hidden_layers") or get("n_layer") or get("num_layers")
        heads = get("num_attention_heads") or get("n_head")
        kv_heads = get("num_key_value_heads") or heads
        head_dim = get("head_dim")
        if not head_dim and heads:
            head_dim = get("hidden_size", get("n_embd", 0)) // heads
        if not (layers and kv_heads and head_dim):
            raise ValueError("model configuration lacks num_hidden_layers / heads / head_dim")
        if dtype is None:
            dtype = get("torch_dtype", None) or get("dtype", None) or "bf16"
        return cls(int(layers), int(kv_heads), int(head_dim), dtype, block_tokens)

    @property
    def dtype_name(self) -> str:
        return DType.NAME[self.dtype]

    @property
    def itemsize(self) -> int:
        return DType.SIZE[self.dtype]

    @property
    def block_shape(self) -> Tuple[int, int, int, int, int]:
        """(layers, 2, block_tokens, kv_heads, head_dim): one block's element shape."""
        return (self.layers, 2, self.block_tokens, self.kv_heads, self.head_dim)

    @property
    def block_bytes(self) -> int:
        """kvt_layout_block_bytes: bytes per block, 0 if the layout is invalid."""
        return int(_lib.lib().kvt_layout_block_bytes(byref(self._c())))

    @property
    def bytes_per_token(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * self.itemsize

    def _c(self) -> _lib.Layout_c:
        return _lib.Layout_c(self.layers, self.kv_heads, self.head_dim, self.dtype, self.block_tokens)


# ---------------------------------------------------------------- helpers

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.I)


def parse_size(v: Union[int, str]) -> int:
    """Bytes from an int or a string like '512M', '8G', '1TiB' (powers of 1024)."""
    if isinstance(v, bool):
        raise TypeError("size must not be a bool")
    if isinstance(v, (int, np.integer)):
        return int(v)
    m = _SIZE_RE.match(str(v))
    if not m:
        raise ValueError(f"bad size {v!r} (an integer, optionally with K, M, G or T)")
    return int(m.group(1)) << (10 * " KMGT".index((m.group(2) or " ").upper()))


def version() -> str:
    """kvt_version(): the loaded library's version string."""
    return _lib.lib().kvt_version().decode()


def parse_ttl(ttl: Union[str, int, float]) -> float:
    """Seconds of a TTL: a number, or kvt_ttl_parse's "<digits><unit>" groups ("5m", "2h30m")."""
    if isinstance(ttl, bool):
        raise TypeError("ttl must not be a bool")
    if isinstance(ttl, (int, float, np.integer, np.floating)):
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0, got {ttl!r}")
        return float(ttl)
    out = ctypes.c_double()
    check(_lib.require("kvt_ttl_parse")(str(ttl).encode(), byref(out)), "kvt_ttl_parse", repr(ttl))
    return out.value


def _stream(stream: Any) -> c_void_p:
    """A cudaStream_t for the GPU calls: None = torch's current stream when torch is loaded
    (else the legacy default stream), an int handle, or a torch.cuda.Stream."""
    if stream is None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return c_void_p(torch.cuda.current_stream().cuda_stream or None)
        return c_void_p(0)
    if isinstance(stream, int):
        return c_void_p(stream or None)
    return c_void_p(int(stream.cuda_stream) or None)


def features() -> dict:
    """Which optional C functions the loaded library exports and this package binds."""
    _lib.load()
    return {k: v for k, v in _lib.FEATURES.items() if not k.endswith(".exported")}


def _as_u32(tokens: Any) -> np.ndarray:
    """Token ids as a C-contiguous uint32 array (a view when already one)."""
    if hasattr(tokens, "detach") and hasattr(tokens, "cpu"):  # a torch tensor
        tokens = tokens.detach().cpu().numpy()
    a = np.asarray(tokens)
    if a.ndim != 1:
        a = a.reshape(-1) if a.ndim == 2 and a.shape[0] == 1 else a
        if a.ndim != 1:
            raise ValueError(f"tokens must be one sequence, got shape {a.shape}")
    if a.dtype == np.uint32:
        return np.ascontiguousarray(a)
    if a.size == 0:
        return np.zeros(0, np.uint32)
    if a.dtype.kind not in "iu":
        raise TypeError(f"token ids must be integers, got {a.dtype}")
    if a.min() < 0 or a.max() > 0xFFFFFFFF:
        raise ValueError("token ids must be in [0, 2**32)")
    return np.ascontiguousarray(a, dtype=np.uint32)


def _as_u64(keys: Any) -> np.ndarray:
    a = np.asarray(keys)
    if a.size == 0:
        return np.zeros(0, np.uint64)
    if a.dtype.kind not in "iu" or (a.dtype.kind == "i" and a.min() < 0):
        raise ValueError("block keys must be unsigned 64-bit integers")
    return np.ascontiguousarray(a.reshape(-1), dtype=np.uint64)


def _ptr(a: np.ndarray) -> c_void_p:
    return c_void_p(a.ctypes.data) if a.size else c_void_p(0)


def _buffer(obj: Any, writable: bool) -> Tuple[int, int, Any]:
    """(address, nbytes, keep-alive) of a C-contiguous host buffer.

    Accepts numpy arrays, CPU torch tensors and buffer-protocol objects (bytearray,
    memoryview, mmap, ...). No copy is ever made: a non-contiguous or device buffer is a
    ValueError.
    """
    if hasattr(obj, "data_ptr") and hasattr(obj, "is_contiguous"):  # torch.Tensor
        if obj.device.type != "cpu":
            raise ValueError(f"a host buffer is needed, got a tensor on {obj.device}")
        if not obj.is_contiguous():
            raise ValueError("tensor must be contiguous")
        return obj.data_ptr(), obj.numel() * obj.element_size(), obj
    if isinstance(obj, np.ndarray):
        if not obj.flags.c_contiguous:
            raise ValueError("array must be C-contiguous")
        if writable and not obj.flags.writeable:
            raise ValueError("array is read-only")
        return obj.ctypes.data, obj.nbytes, obj
    mv = memoryview(obj)
    if not mv.c_contiguous:
        raise ValueError("buffer must be C-contiguous")
    if writable and mv.readonly:
        raise ValueError("buffer is read-only")
    if mv.nbytes == 0:
        return 0, 0, mv
    arr = np.frombuffer(mv.cast("B"), dtype=np.uint8)
    return arr.ctypes.data, mv.nbytes, (mv, arr)


# ---------------------------------------------------------------- stats


@dataclasses.dataclass(frozen=True)
class Stats:
    """Engine counters since open (struct kvt_stats)."""

    lookups: int
    lookup_tokens: int
    hit_tokens: int
    puts: int
    blocks_stored: int
    blocks_evicted: int
    bytes_read: int
    bytes_written: int
    blocks_cached: int
    dram_capacity: int
    dram_used: int
    index_bytes: int
    leases_open: int
    namespaces: int
    dram_hugepages: int
    dram_cuda_pinned: int
    # persistent tiers (0 / empty with an older library); tier_* are indexed by Tier
    tier_capacity: Tuple[int, int, int, int] = (0, 0, 0, 0)
    tier_used: Tuple[int, int, int, int] = (0, 0, 0, 0)
    tier_blocks: Tuple[int, int, int, int] = (0, 0, 0, 0)
    tier_reads: Tuple[int, int, int, int] = (0, 0, 0, 0)
    tier_writes: Tuple[int, int, int, int] = (0, 0, 0, 0)
    tier_bytes_read: Tuple[int, int, int, int] = (0, 0, 0, 0)
    tier_bytes_written: Tuple[int, int, int, int] = (0, 0, 0, 0)
    demotions: int = 0
    promotions: int = 0
    checksum_failures: int = 0
    io_errors: int = 0
    blocks_dropped_bad: int = 0
    persisted_blocks: int = 0
    wt_failures: int = 0
    unpersisted_blocks: int = 0
    flushes: int = 0
    restored_blocks: int = 0
    restore_dropped: int = 0
    persistent: int = 0
    simulate: int = 0
    io_backend: str = ""
    # the HBM tier: hbm_state 0 not asked for, 1 on, 2 asked for but no usable GPU
    hbm_state: int = 0
    hbm_capacity: int = 0
    hbm_used: int = 0
    hbm_pinned_blocks: int = 0
    hbm_loads: int = 0
    hbm_load_bytes: int = 0
    hbm_hits: int = 0
    hbm_evictions: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.lookup_tokens if self.lookup_tokens else 0.0

    @classmethod
    def _from_c(cls, s: "_lib.Stats_c") -> "Stats":
        kw = {}
        for name, _ in _lib.Stats_c._fields_:
            if name == "hbm_pad_":
                continue
            v = getattr(s, name)
            if name == "io_backend":
                v = v.decode("utf-8", "replace")
            elif isinstance(v, ctypes.Array):
                v = tuple(int(x) for x in v)
            else:
                v = int(v)
            kw[name] = v
        return cls(**kw)


@dataclasses.dataclass(frozen=True)
class TierInfo:
    """A tier as the engine's cost model sees it (struct kvt_tier_info; kvt_engine_tiers)."""

    tier: Tier
    name: str
    capacity: int
    read_bw: float
    write_bw: float
    link_bw: float
    latency_s: float
    usd_per_byte_s: float
    drain_s: float


@dataclasses.dataclass(frozen=True)
class Plan:
    """kvt_lease_plan: per block load or recompute (``blocks``: (tier, load, time_s))."""

    n_blocks: int
    n_load: int
    n_recompute: int
    load_s: float
    compute_s: float
    total_s: float
    all_recompute_s: float
    blocks: Tuple[Tuple[Tier, bool, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class HbmPool:
    """The engine's HBM pool as kernels see it (struct kvt_hbm_pool_info; kvt_hbm_pool).

    ``base`` is a device pointer to block 0 of ``[num_blocks][layers][2][bt][H][D]`` elements
    of the layout's dtype on CUDA device ``device`` (the host block layout, block-major).
    """

    base: int
    block_bytes: int
    num_blocks: int
    device: int
    layout: Layout

    def as_tensor(self):
        """A torch view (no copy) of the pool: ``[num_blocks, layers, 2, bt, H, D]`` on
        ``cuda:device``. Valid while the engine is open; the engine writes into it."""
        import torch

        lay = self.layout
        shape = (self.num_blocks,) + lay.block_shape
        typestr = {1: "<f2", 2: "<i2", 3: "<f4", 4: "|u1"}[lay.dtype]

        class _Dev:
            __cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (self.base, False),
                                        "version": 2, "strides": None}

        with torch.cuda.device(self.device):
            t = torch.as_tensor(_Dev(), device=f"cuda:{self.device}")
        return t.view(DType.torch(lay.dtype)) if lay.dtype == DType.BF16 else t


# ---------------------------------------------------------------- the cache


_HUGEPAGES = {"auto": 0, "off": 1, "on": 2, False: 1, True: 2, 0: 0, 1: 1, 2: 2}
_CONFIG_KEYS = ("dram_bytes", "slot_bytes", "hugepages", "cuda_pin", "tenant_quotas", "data_dir",
                "nvme", "disk", "io_depth", "io_force_pool", "backpressure_ms", "persist_delay_ms",
                "simulate", "policy", "hbm_bytes", "hbm_required")


def _tier_cfg(v: Any) -> Tuple[Optional[str], int, int]:
    """(path, capacity, bw) from a size ('4G') or a mapping {path, capacity, bw}."""
    if isinstance(v, Mapping):
        unknown = set(v) - {"path", "capacity", "bw"}
        if unknown:
            raise ValueError(f"unknown tier keys {sorted(unknown)} (path, capacity, bw)")
        path = v.get("path")
        return (os.fspath(path) if path else None, parse_size(v.get("capacity", 0)),
                parse_size(v.get("bw", 0)))
    return None, parse_size(v), 0


def _load_config(config: Union[None, str, os.PathLike, Mapping[str, Any]]) -> dict:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    path = os.fspath(config)
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".toml"):
        import tomllib  # Python >= 3.11

        data = tomllib.loads(raw.decode())
    else:
        data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the configuration must be a table/object")
    return data.get("kvtier", data) if isinstance(data.get("kvtier"), dict) else data


class Cache:
    """A kvtier engine (kvt_engine): tiers, the prefix index, namespaces.

    ``Cache(config=None, **overrides)`` opens an engine. ``config`` is a mapping or the path
    of a ``.json``/``.toml`` file (a top-level ``[kvtier]`` table is used if present) with
    these keys, all optional:

    - ``dram_bytes``: DRAM tier capacity (int or '8G'; default 1 GiB);
    - ``slot_bytes``: DRAM slot size (0 = the first namespace's block size);
    - ``hugepages``: 'auto' | 'off' | 'on';
    - ``cuda_pin``: register the DRAM arena with CUDA when a GPU is present (default True);
    - ``tenant_quotas``: {tenant: bytes} DRAM quotas, or {tenant: {tier: bytes}};
    - ``data_dir``: make the engine persistent (catalog, nvme and disk tiers under it);
    - ``nvme``, ``disk``: a capacity ('4G'; 0 disables the tier) or a mapping
      ``{path, capacity, bw}`` (kvt_options_set_tier; defaults: nvme off, disk 1 GiB);
    - ``io_depth``, ``io_force_pool``, ``backpressure_ms``, ``persist_delay_ms`` (the
      write-back window): persistent-tier I/O options;
    - ``simulate``: data-free simulation (no bytes stored);
    - ``policy``: 'lru' (default), 'lfu' or 'drain' (kvt_options_set_policy);
    - ``hbm_bytes``: GPU memory for the engine's HBM tier (0: none); ``hbm_required``: fail
      with DeviceUnavailableError instead of ignoring it when no GPU is usable.

    Options the loaded library lacks raise FeatureUnavailableError.

    Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, config: Union[None, str, os.PathLike, Mapping[str, Any]] = None, **overrides: Any):
        cfg = _load_config(config)
        cfg.update(overrides)
        unknown = set(cfg) - set(_CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unknown kvtier configuration keys: {sorted(unknown)}")
        L = _lib.lib()
        self._eng = c_void_p()
        self._cond = threading.Condition()
        self._inflight = 0
        self._closed = False
        self._closing = False
        self._ns: dict = {}
        self.config = cfg
        opts = c_void_p()
        check(L.kvt_options_create(byref(opts)), "kvt_options_create")
        try:
            if "dram_bytes" in cfg:
                check(L.kvt_options_set_dram_bytes(opts, parse_size(cfg["dram_bytes"])),
                      "kvt_options_set_dram_bytes")
            if "slot_bytes" in cfg:
                check(L.kvt_options_set_dram_slot_bytes(opts, parse_size(cfg["slot_bytes"])),
                      "kvt_options_set_dram_slot_bytes")
            if "hugepages" in cfg:
                hp = cfg["hugepages"]
                mode = _HUGEPAGES.get(hp.lower() if isinstance(hp, str) else hp)
                if mode is None:
                    raise ValueError(f"hugepages must be auto, off or on, got {hp!r}")
                check(L.kvt_options_set_hugepages(opts, mode), "kvt_options_set_hugepages")
            if "cuda_pin" in cfg:
                check(L.kvt_options_set_cuda_pin(opts, 1 if cfg["cuda_pin"] else 0),
                      "kvt_options_set_cuda_pin")
            if cfg.get("data_dir") is not None:
                check(_lib.require("kvt_options_set_data_dir")(opts, os.fsencode(cfg["data_dir"])),
                      "kvt_options_set_data_dir")
            for name, tier in (("nvme", Tier.NVME), ("disk", Tier.DISK)):
                if name in cfg:
                    path, cap, bw = _tier_cfg(cfg[name])
                    check(_lib.require("kvt_options_set_tier")(
                        opts, int(tier), os.fsencode(path) if path else None, cap, bw),
                        "kvt_options_set_tier", name)
            for key, fn, conv in (("io_depth", "kvt_options_set_io_depth", int),
                                  ("io_force_pool", "kvt_options_set_io_force_pool", lambda v: 1 if v else 0),
                                  ("backpressure_ms", "kvt_options_set_backpressure_ms", int),
                                  ("persist_delay_ms", "kvt_options_set_persist_delay_ms", int),
                                  ("simulate", "kvt_options_set_simulate", lambda v: 1 if v else 0),
                                  ("policy", "kvt_options_set_policy", lambda v: str(v).encode())):
                if key in cfg:
                    check(_lib.require(fn)(opts, conv(cfg[key])), fn, repr(cfg[key]))
            if cfg.get("hbm_bytes"):
                check(_lib.require("kvt_options_set_hbm_bytes")(
                    opts, parse_size(cfg["hbm_bytes"]), 1 if cfg.get("hbm_required") else 0),
                    "kvt_options_set_hbm_bytes")
            check(L.kvt_engine_open(opts, byref(self._eng)), "kvt_engine_open")
        finally:
            L.kvt_options_destroy(opts)
        try:
            for tenant, q in (cfg.get("tenant_quotas") or {}).items():
                if isinstance(q, Mapping):
                    for tier, b in q.items():
                        self.set_tenant_quota(tenant, b, tier)
                else:
                    self.set_tenant_quota(tenant, q)
        except BaseException:
            self._closed = True
            L.kvt_engine_close(self._eng)
            raise

    # -- in-flight accounting: close() must not free the engine under a running call
    def _enter(self, releasing: bool = False) -> c_void_p:
        with self._cond:
            # While close() waits for the calls in flight, new calls are refused (else
            # threads calling in a loop could keep it waiting forever); lease releases are
            # still let through, since they are what a close may be waiting for.
            if self._closed or (self._closing and not releasing):
                raise ClosedError("the cache is closed")
            self._inflight += 1
        return self._eng

    def _exit(self) -> None:
        with self._cond:
            self._inflight -= 1
            if self._inflight == 0:
                self._cond.notify_all()

    class _Call:
        __slots__ = ("c", "r")

        def __init__(self, cache: "Cache", releasing: bool = False):
            self.c = cache
            self.r = releasing

        def __enter__(self):
            return self.c._enter(self.r)

        def __exit__(self, *exc):
            self.c._exit()

    def _call(self, releasing: bool = False) -> "Cache._Call":
        return Cache._Call(self, releasing)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the engine (kvt_engine_close). Idempotent.

        :raises LeasesOpenError: leases are still open (the cache stays open).
        """
        with self._cond:
            if self._closed:
                return
            self._closing = True
            try:
                while self._inflight:
                    self._cond.wait()
                check(_lib.lib().kvt_engine_close(self._eng), "kvt_engine_close")
            finally:
                self._closing = False
            self._closed = True
            self._ns.clear()

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            if not self._closed and _lib._lib is not None:
                _lib.lib().kvt_engine_close(self._eng)  # fails harmlessly with leases open
        except Exception:
            pass

    def namespace(self, name: str, layout: Layout, tenant: str = "default", keys: bool = False) -> "Namespace":
        """Open (create if absent) the namespace (name, tenant) with this layout.

        :param keys: index external 64-bit block keys instead of token ids (KVT_NS_KEYS).
        :raises BadLayoutError: invalid layout, or the namespace exists with another one.
        :raises InvalidNameError: empty or over-long name/tenant.
        """
        if not isinstance(layout, Layout):
            raise TypeError("layout must be a kvtier.Layout")
        h = c_void_p()
        with self._call() as eng:
            check(_lib.lib().kvt_ns_open(eng, name.encode(), tenant.encode(), byref(layout._c()),
                                         1 if keys else 0, byref(h)), "kvt_ns_open", f"{tenant}/{name}")
        with self._cond:
            ns = self._ns.get(h.value)
            if ns is None:
                ns = self._ns[h.value] = Namespace(self, h, name, tenant, layout, keys)
        return ns

    def namespace_for_model(self, config: Any, name: Optional[str] = None, tenant: str = "default",
                            dtype: Any = None, block_tokens: int = 16) -> "Namespace":
        """The namespace of a model from its (Hugging Face) configuration.

        ``name`` defaults to the configuration's ``_name_or_path`` or ``model_type``. The name
        must identify the weights: two models with one configuration but different weights
        need different names (the engine cannot tell them apart).
        """
        layout = Layout.from_model_config(config, dtype=dtype, block_tokens=block_tokens)
        if name is None:
            get = config.get if isinstance(config, Mapping) else lambda k, d=None: getattr(config, k, d)
            name = get("_name_or_path", None) or get("model_type", None) or "model"
        return self.namespace(str(name), layout, tenant=tenant)

    def set_tenant_quota(self, tenant: str, nbytes: Union[int, str], tier: Union[Tier, int, str] = Tier.DRAM) -> None:
        """Limit a tenant's bytes in a tier (0 removes the limit): kvt_tenant_set_dram_quota
        for DRAM, kvt_tenant_set_quota for nvme/disk."""
        t = Tier.of(tier)
        with self._call() as eng:
            if t == Tier.DRAM:
                check(_lib.lib().kvt_tenant_set_dram_quota(eng, tenant.encode(), parse_size(nbytes)),
                      "kvt_tenant_set_dram_quota", tenant)
            else:
                check(_lib.require("kvt_tenant_set_quota")(eng, tenant.encode(), int(t), parse_size(nbytes)),
                      "kvt_tenant_set_quota", f"{tenant} {t.name.lower()}")

    def flush(self) -> None:
        """kvt_flush, the durability point: returns once every block stored by a put that
        returned before this call is durable on its persistent tier and catalogued (a
        reopened engine finds it byte-identical). A no-op without a data directory.

        :raises TierIOError, NoSpaceError, CatalogError: the first write-through error since
            the previous flush (those blocks stay in DRAM but are not persistent).
        """
        fn = _lib.require("kvt_flush")
        with self._call() as eng:
            check(fn(eng), "kvt_flush")

    def tiers(self) -> List[TierInfo]:
        """kvt_engine_tiers: the engine's tiers, fastest first (HBM modeled, not managed)."""
        fn = _lib.require("kvt_engine_tiers")
        n = c_size_t()
        with self._call() as eng:
            check(fn(eng, None, 0, byref(n)), "kvt_engine_tiers")
            arr = (_lib.TierInfo_c * max(n.value, 1))()
            check(fn(eng, arr, n.value, byref(n)), "kvt_engine_tiers")
        return [TierInfo(Tier(a.tier), (a.name or b"").decode(), int(a.capacity), a.read_bw, a.write_bw,
                         a.link_bw, a.latency_s, a.usd_per_byte_s, a.drain_s) for a in arr[: n.value]]

    def stats(self) -> Stats:
        """kvt_engine_stats."""
        s = _lib.Stats_c()
        with self._call() as eng:
            check(_lib.lib().kvt_engine_stats(eng, byref(s), ctypes.sizeof(s)), "kvt_engine_stats")
        return Stats._from_c(s)


# ---------------------------------------------------------------- namespaces


class Namespace:
    """One model KV layout plus one tenant (kvt_ns). Get it from :meth:`Cache.namespace`."""

    def __init__(self, cache: Cache, handle: c_void_p, name: str, tenant: str, layout: Layout, keys: bool):
        self.cache = cache
        self._h = handle
        self.name = name
        self.tenant = tenant
        self.layout = layout
        self.keys_mode = keys
        self.block_bytes = layout.block_bytes

    def __repr__(self) -> str:
        return (f"Namespace({self.tenant}/{self.name}, {self.layout.layers}x{self.layout.kv_heads}x"
                f"{self.layout.head_dim} {self.layout.dtype_name}, {self.layout.block_tokens} tok/block)")

    @property
    def block_tokens(self) -> int:
        return self.layout.block_tokens

    # -- lookups
    def match(self, tokens: Any) -> int:
        """Matched tokens of the longest cached block-aligned prefix (kvt_match without a
        lease: measures only, pins and touches nothing)."""
        t = _as_u32(tokens)
        m = c_size_t()
        with self.cache._call():
            check(_lib.lib().kvt_match(self._h, _ptr(t), t.size, byref(m), None), "kvt_match")
        return m.value

    def lease(self, tokens: Any) -> "Lease":
        """Match and pin the longest cached prefix (kvt_match with a lease).

        Returns a :class:`Lease` (possibly of 0 blocks); use it as a context manager so the
        blocks are unpinned (kvt_release) when done.
        """
        t = _as_u32(tokens)
        return self._lease(t, keys=False)

    def _lease(self, units: np.ndarray, keys: bool) -> "Lease":
        m = c_size_t()
        h = c_void_p()
        L = _lib.lib()
        with self.cache._call():
            if keys:
                check(L.kvt_match_keys(self._h, _ptr(units), units.size, byref(m), byref(h)), "kvt_match_keys")
            else:
                check(L.kvt_match(self._h, _ptr(units), units.size, byref(m), byref(h)), "kvt_match")
        return Lease(self, h, units, keys)

    def match_keys(self, keys: Any) -> int:
        """Matched blocks for a sequence of block keys (KVT_NS_KEYS namespaces)."""
        k = _as_u64(keys)
        m = c_size_t()
        with self.cache._call():
            check(_lib.lib().kvt_match_keys(self._h, _ptr(k), k.size, byref(m), None), "kvt_match_keys")
        return m.value

    def lease_keys(self, keys: Any) -> "Lease":
        """kvt_match_keys with a lease (KVT_NS_KEYS namespaces)."""
        return self._lease(_as_u64(keys), keys=True)

    def block_keys(self, tokens: Any) -> np.ndarray:
        """kvt_block_keys: the chained 64-bit keys of the tokens' whole blocks (uint64 array)."""
        t = _as_u32(tokens)
        out = np.zeros(t.size // self.block_tokens, np.uint64)
        with self.cache._call():
            check(_lib.lib().kvt_block_keys(self._h, _ptr(t), t.size, _ptr(out)), "kvt_block_keys")
        return out

    # -- storing
    def _block_ptrs(self, n_blocks: int, data: Any, start: int) -> Tuple[ctypes.Array, Any]:
        """(void *[n_blocks], keep-alive) for put: NULL for blocks < start."""
        ptrs = (c_void_p * max(n_blocks, 1))()
        bb = self.block_bytes
        keep: List[Any] = []
        if isinstance(data, (list, tuple)):
            if len(data) != n_blocks - start:
                raise ValueError(f"{len(data)} block buffers given, {n_blocks - start} needed")
            for i, b in enumerate(data):
                if b is None:
                    continue
                addr, nbytes, k = _buffer(b, writable=False)
                if nbytes != bb:
                    raise ValueError(f"block {start + i}: {nbytes} bytes, the layout needs {bb}")
                ptrs[start + i] = addr
                keep.append(k)
        else:
            addr, nbytes, k = _buffer(data, writable=False)
            need = (n_blocks - start) * bb
            if nbytes != need:
                raise ValueError(f"{nbytes} bytes given for {n_blocks - start} blocks of {bb} bytes ({need})")
            for i in range(start, n_blocks):
                ptrs[i] = addr + (i - start) * bb
            keep.append(k)
        return ptrs, keep

    def prefetch(self, tokens: Any) -> None:
        """kvt_prefetch: start promoting the cached prefix of ``tokens`` from nvme/disk into
        DRAM in the background and return at once (a later read of a block in flight waits
        for that block only). A no-op without persistent tiers."""
        t = _as_u32(tokens)
        fn = _lib.require("kvt_prefetch")
        with self.cache._call():
            check(fn(self._h, _ptr(t), t.size), "kvt_prefetch")

    def prefetch_keys(self, keys: Any) -> None:
        """kvt_prefetch_keys (KVT_NS_KEYS namespaces)."""
        k = _as_u64(keys)
        fn = _lib.require("kvt_prefetch_keys")
        with self.cache._call():
            check(fn(self._h, _ptr(k), k.size), "kvt_prefetch_keys")

    def hbm_pool(self) -> HbmPool:
        """kvt_hbm_pool: the engine's HBM pool (created now with this namespace's layout if
        it does not exist yet).

        :raises DeviceUnavailableError: no HBM tier (not asked for with ``hbm_bytes``, no
            usable GPU, or a library built without CUDA). :raises BadLayoutError: the pool
            has another namespace's layout.
        """
        fn = _lib.require("kvt_hbm_pool")
        info = _lib.HbmPoolInfo_c()
        with self.cache._call():
            check(fn(self._h, byref(info)), "kvt_hbm_pool")
        lc = info.layout
        return HbmPool(int(info.base or 0), int(info.block_bytes), int(info.num_blocks), int(info.device),
                       Layout(lc.layers, lc.kv_heads, lc.head_dim, lc.dtype, lc.block_tokens))

    @staticmethod
    def _put_opts(ttl: Any) -> Optional[_lib.PutOpts_c]:
        if ttl is None:
            return None
        if isinstance(ttl, str):
            parse_ttl(ttl)  # the C parser's error, raised before anything is stored
            return _lib.PutOpts_c(ttl.encode(), 0.0)
        return _lib.PutOpts_c(None, parse_ttl(ttl))

    def put(self, tokens: Any, blocks: Any, start_block: int = 0, ttl: Any = None) -> int:
        """Store the KV of the tokens' whole blocks that are not yet cached (kvt_put).

        :param blocks: the bytes of blocks ``[start_block, len(tokens) // block_tokens)``:
            one C-contiguous array/tensor/buffer of ``n * block_bytes`` bytes (e.g. shape
            ``[n, layers, 2, block_tokens, kv_heads, head_dim]``), or a list of one buffer per
            block (None for a block known to be cached).
        :param start_block: blocks before it are given no bytes; they must be cached already
            (typically ``lease.blocks`` after a match), else NoDataError.
        :param ttl: TTL hint for the newly stored blocks (kvt_put_ex): seconds or "5m",
            "2h30m". A block's deadline is its last use + TTL; after it, it is a miss.
        :return: blocks newly stored by this call.
        :raises NoSpaceError, NoDataError, OutOfMemoryError: as kvt_put. Blocks before the
            failing one stay stored.
        """
        t = _as_u32(tokens)
        nb = t.size // self.block_tokens
        if not 0 <= start_block <= nb:
            raise ValueError(f"start_block {start_block} outside [0, {nb}]")
        opts = self._put_opts(ttl)
        fn = _lib.require("kvt_put_ex") if opts is not None else None
        ptrs, keep = self._block_ptrs(nb, blocks, start_block)
        stored = c_size_t()
        with self.cache._call():
            if fn is None:
                check(_lib.lib().kvt_put(self._h, _ptr(t), t.size, ptrs, byref(stored)), "kvt_put")
            else:
                check(fn(self._h, _ptr(t), t.size, ptrs, byref(opts), byref(stored)), "kvt_put_ex")
        del keep
        return stored.value

    def put_keys(self, keys: Any, blocks: Any, start_block: int = 0, ttl: Any = None) -> int:
        """kvt_put_keys (kvt_put_keys_ex with ``ttl``): store blocks named by external keys
        (KVT_NS_KEYS namespaces)."""
        k = _as_u64(keys)
        if not 0 <= start_block <= k.size:
            raise ValueError(f"start_block {start_block} outside [0, {k.size}]")
        opts = self._put_opts(ttl)
        fn = _lib.require("kvt_put_keys_ex") if opts is not None else None
        ptrs, keep = self._block_ptrs(k.size, blocks, start_block)
        stored = c_size_t()
        with self.cache._call():
            if fn is None:
                check(_lib.lib().kvt_put_keys(self._h, _ptr(k), k.size, ptrs, byref(stored)), "kvt_put_keys")
            else:
                check(fn(self._h, _ptr(k), k.size, ptrs, byref(opts), byref(stored)), "kvt_put_keys_ex")
        del keep
        return stored.value

    def remove(self, tokens: Any) -> int:
        """kvt_remove: invalidate the prefix's last block and everything cached after it.

        :raises NotFoundError: the prefix is not cached in full. :raises BusyError: pinned.
        """
        t = _as_u32(tokens)
        n = c_size_t()
        with self.cache._call():
            check(_lib.lib().kvt_remove(self._h, _ptr(t), t.size, byref(n)), "kvt_remove")
        return n.value

    def remove_keys(self, keys: Any) -> int:
        """kvt_remove_keys (KVT_NS_KEYS namespaces)."""
        k = _as_u64(keys)
        n = c_size_t()
        with self.cache._call():
            check(_lib.lib().kvt_remove_keys(self._h, _ptr(k), k.size, byref(n)), "kvt_remove_keys")
        return n.value


# ---------------------------------------------------------------- leases

_pool_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 4),
                                       thread_name_prefix="kvtier-read")
        return _pool


class Lease:
    """Pinned matched blocks (kvt_lease). Blocks stay in place until :meth:`release`.

    ``with ns.lease(tokens) as lease: ...`` releases on exit. ``lease.tokens`` is the matched
    length; reading copies block bytes into caller buffers (kvt_read / kvt_read_contig).
    """

    def __init__(self, ns: Namespace, handle: c_void_p, units: np.ndarray, keys: bool):
        self.namespace = ns
        self._h = handle
        self._units = units
        self._keys_mode = keys
        self._lock = threading.Lock()
        L = _lib.lib()
        self.blocks: int = int(L.kvt_lease_blocks(handle)) if handle.value else 0
        self.tokens: int = int(L.kvt_lease_tokens(handle)) if handle.value else 0
        self._released = not handle.value

    def __repr__(self) -> str:
        state = ", released" if self._released and self.blocks else ""
        return f"Lease({self.blocks} blocks, {self.tokens} tokens{state})"

    def __len__(self) -> int:
        return self.blocks

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass

    @property
    def released(self) -> bool:
        """True once released (an empty lease counts as released: it pins nothing)."""
        return self._released

    def release(self) -> None:
        """kvt_release: unpin the blocks. Idempotent."""
        with self._lock:
            if self._released:
                return
            self._released = True
            # An open lease makes kvt_engine_close fail, so the engine is still open here;
            # the in-flight count keeps close() from racing this call.
            with self.namespace.cache._call(releasing=True):
                _lib.lib().kvt_release(self._h)
            self._h = c_void_p()

    def _check_range(self, first: int, n: Optional[int]) -> int:
        if n is None:
            n = self.blocks - first
        if first < 0 or n < 0:
            raise ValueError("first and n must be >= 0")
        if self._released and self.blocks:
            raise ClosedError("the lease was released")
        if first + n > self.blocks:  # what kvt_read says, also for an empty (NULL) lease
            raise RangeError(-errno.ERANGE, "kvt_read", f"blocks [{first}, {first + n}) of {self.blocks}")
        return n

    def key(self, i: int) -> int:
        """kvt_lease_block_key: block i's 64-bit key."""
        k = c_uint64()
        with self._lock:
            if self._released:
                raise ClosedError("the lease was released")
            check(_lib.lib().kvt_lease_block_key(self._h, i, byref(k)), "kvt_lease_block_key")
        return k.value

    def keys(self) -> List[int]:
        """The keys of all leased blocks, in order."""
        return [self.key(i) for i in range(self.blocks)]

    # -- tiers and plans
    def _live(self) -> c_void_p:
        """The handle, under self._lock by the caller; ClosedError once released."""
        if self._released:
            raise ClosedError("the lease was released" if self.blocks else "the lease is empty")
        return self._h

    def tier(self, i: int) -> Tier:
        """kvt_lease_block_tier: the fastest tier holding block i now (HBM, DRAM, NVME, DISK)."""
        fn = _lib.require("kvt_lease_block_tier")
        if not 0 <= i < self.blocks:
            raise RangeError(-errno.ERANGE, "kvt_lease_block_tier", f"block {i} of {self.blocks}")
        t = ctypes.c_int()
        with self._lock:
            check(fn(self._live(), i, byref(t)), "kvt_lease_block_tier")
        return Tier(t.value)

    def tiers(self) -> List[Tier]:
        """The fastest tier of every leased block, in order."""
        return [self.tier(i) for i in range(self.blocks)]

    def plan(self, suffix_tokens: int = 0, model: Optional[Mapping[str, float]] = None) -> Plan:
        """kvt_lease_plan: per block, load it from its fastest tier or recompute it.

        :param suffix_tokens: tokens computed anyway after the lease's blocks.
        :param model: None (the engine's model) or a mapping of kvt_model_desc fields
            (active_params, layers, hidden, prefill_tok_s, gpu_flops, gpu_usd_per_hour).
        """
        fn = _lib.require("kvt_lease_plan")
        md = None
        if model is not None:
            md = _lib.ModelDesc_c()
            for k, v in model.items():
                setattr(md, k, v)
        out = _lib.Plan_c()
        blocks = (_lib.PlanBlock_c * max(self.blocks, 1))()
        with self._lock:
            check(fn(self._live(), byref(md) if md is not None else None, int(suffix_tokens), byref(out), blocks),
                  "kvt_lease_plan")
        return Plan(int(out.n_blocks), int(out.n_load), int(out.n_recompute), out.load_s, out.compute_s,
                    out.total_s, out.all_recompute_s,
                    tuple((Tier(b.tier), bool(b.load), b.time_s) for b in blocks[: self.blocks]))

    # -- the HBM tier (GPU)
    def load_hbm_numpy(self, first: int = 0, n: Optional[int] = None, stream: Any = None) -> np.ndarray:
        """kvt_lease_load_hbm: make blocks ``[first, first + n)`` resident in the engine's HBM
        pool (pinned there until :meth:`release`) and return their pool indices, an int32
        host array (a block-table row). Copies are queued on ``stream`` (None: torch's
        current stream if torch is in use, else the legacy default stream).

        Release the lease only after the stream has passed the copies and every kernel
        using the table.

        :raises DeviceUnavailableError: no HBM tier / GPU / CUDA build (-ENODEV).
        :raises NoSpaceError: the pool is full of pinned or other tenants' blocks.
        """
        fn = _lib.require("kvt_lease_load_hbm")
        n = self._check_range(first, n)
        table = np.zeros(max(n, 1), np.int32)
        st = _stream(stream)
        with self._lock:
            check(fn(self._live(), first, n, c_void_p(table.ctypes.data), st), "kvt_lease_load_hbm")
        return table[:n]

    def load_hbm(self, first: int = 0, n: Optional[int] = None, stream: Any = None):
        """:meth:`load_hbm_numpy` returning the block table as a torch int32 tensor on the
        pool's GPU (copied on ``stream``, after the loads), ready for paged kernels
        (e.g. :func:`kvtier.hbm.paged_attention`) and for ``HbmPool.as_tensor()[table]``."""
        import torch

        table = self.load_hbm_numpy(first, n, stream)
        dev = torch.device("cuda", self.namespace.hbm_pool().device)
        src = torch.from_numpy(table)
        if stream is None:
            return src.to(dev)
        s = stream if isinstance(stream, torch.cuda.Stream) else torch.cuda.ExternalStream(_stream(stream).value or 0)
        with torch.cuda.stream(s):
            return src.to(dev)

    def gather_layer(self, layer: int, k: Any, v: Any, first: int = 0, n: Optional[int] = None,
                     ctas: int = 0, stream: Any = None) -> None:
        """kvt_lease_gather_layer: copy layer ``layer`` of blocks ``[first, first + n)`` into
        device tensors ``k``, ``v`` shaped like a Hugging Face cache layer
        (``[1, kv_heads, T >= n*bt, head_dim]`` or ``[kv_heads, T, head_dim]``, contiguous in
        the last two dims; the head stride is taken from the tensor), permuting on the GPU.
        Each block is read from its HBM copy if this lease loaded it, else straight from the
        CUDA-registered DRAM arena, else it is loaded first. Asynchronous on ``stream``.

        :raises DeviceUnavailableError: no GPU / CUDA build (-ENODEV).
        """
        fn = _lib.require("kvt_lease_gather_layer")
        n = self._check_range(first, n)
        lay = self.namespace.layout
        for name, t in (("k", k), ("v", v)):
            if not hasattr(t, "data_ptr") or t.device.type != "cuda":
                raise ValueError(f"{name} must be a CUDA tensor")
            if t.dim() not in (3, 4) or (t.dim() == 4 and t.shape[0] != 1):
                raise ValueError(f"{name} must be [1, H, T, D] or [H, T, D], got {tuple(t.shape)}")
            H, T, D = t.shape[-3:]
            if (H, D) != (lay.kv_heads, lay.head_dim) or T < n * lay.block_tokens:
                raise ValueError(f"{name} {tuple(t.shape)} cannot hold {n} blocks of {lay}")
            if t.stride(-1) != 1 or t.stride(-2) != D or t.element_size() != lay.itemsize:
                raise ValueError(f"{name} must be contiguous in [T, D] with the layout's dtype")
        if k.stride(-3) != v.stride(-3):
            raise ValueError("k and v must have the same head stride")
        with self._lock:
            check(fn(self._live(), first, n, int(layer), c_void_p(k.data_ptr()), c_void_p(v.data_ptr()),
                     int(k.stride(-3)), int(ctas), _stream(stream)), "kvt_lease_gather_layer")

    def gather(self, first: int = 0, n: Optional[int] = None, device: Any = "cuda", dtype: Any = None,
               ctas: int = 0, stream: Any = None) -> list:
        """All layers of blocks ``[first, first + n)`` as Hugging Face K/V: a list of
        ``(K, V)`` per layer, each ``[1, kv_heads, n*bt, head_dim]`` on ``device``
        (kvt_lease_gather_layer once per layer, on ``stream``)."""
        import torch

        n = self._check_range(first, n)
        lay = self.namespace.layout
        dt = dtype if dtype is not None else DType.torch(lay.dtype)
        T = n * lay.block_tokens
        out = []
        for layer in range(lay.layers):
            k = torch.empty((1, lay.kv_heads, T, lay.head_dim), dtype=dt, device=device)
            v = torch.empty_like(k)
            self.gather_layer(layer, k, v, first, n, ctas, stream)
            out.append((k, v))
        return out

    def read_into(self, dst: Any, first: int = 0, n: Optional[int] = None, threads: int = 1) -> Any:
        """Copy blocks ``[first, first + n)`` into one contiguous host buffer (kvt_read_contig).

        :param dst: numpy array, CPU torch tensor (pinned or not) or writable buffer of
            exactly ``n * block_bytes`` bytes; written in place, no intermediate copy.
        :param threads: split the copy over this many threads. Each extra thread takes its
            own lease on the same prefix (the C API allows one thread per lease), which the
            first lease's pin guarantees to cover the same blocks.
        :return: dst.
        """
        n = self._check_range(first, n)
        addr, nbytes, keep = _buffer(dst, writable=True)
        bb = self.namespace.block_bytes
        if nbytes != n * bb:
            raise ValueError(f"dst holds {nbytes} bytes; {n} blocks need {n * bb}")
        if n == 0:
            return dst
        threads = max(1, min(int(threads), n))
        if threads == 1:
            with self._lock:
                if self._released:
                    raise ClosedError("the lease was released")
                check(_lib.lib().kvt_read_contig(self._h, first, n, c_void_p(addr), nbytes), "kvt_read_contig")
        else:
            self.read_chunks(addr, first, n, threads)
        del keep
        return dst

    def read_chunks(self, addr: int, first: int, n: int, threads: int,
                    chunk_blocks: Optional[int] = None, on_chunk=None) -> None:
        """Parallel kvt_read_contig of blocks ``[first, first + n)`` to host address ``addr``.

        The range is cut into chunks of ``chunk_blocks`` (default: one per thread); worker w
        reads chunks w, w + threads, ... through its own lease (the C API allows one thread
        per lease; this lease's pin guarantees the others match the same blocks).
        ``on_chunk(a, b)`` (block offsets relative to ``first``) is called in the caller's
        thread, in order, as soon as chunk [a, b) is complete: the torch loader starts that
        chunk's host->GPU copy there while later chunks are still being read.
        The caller must keep the memory at ``addr`` alive and writable until this returns.
        """
        if n <= 0:
            return
        if self._released:
            raise ClosedError("the lease was released")
        bb = self.namespace.block_bytes
        threads = max(1, min(int(threads), n))
        step = max(1, int(chunk_blocks) if chunk_blocks else -(-n // threads))
        bounds = [(a, min(a + step, n)) for a in range(0, n, step)]
        threads = min(threads, len(bounds))
        done = [threading.Event() for _ in bounds]
        errors: List[BaseException] = []
        ns = self.namespace
        L = _lib.lib()
        per_unit = 1 if self._keys_mode else ns.block_tokens

        def worker(w: int) -> None:
            mine = list(range(w, len(bounds), threads))
            try:
                end = first + bounds[mine[-1]][1]
                with ns._lease(self._units[: end * per_unit], self._keys_mode) as l2:
                    if l2.blocks < end:
                        raise RuntimeError("kvtier: a pinned prefix was not matched again")
                    for c in mine:
                        a, b = bounds[c]
                        check(L.kvt_read_contig(l2._h, first + a, b - a, c_void_p(addr + a * bb),
                                                (b - a) * bb), "kvt_read_contig")
                        done[c].set()
            except BaseException as e:  # reported by the caller
                errors.append(e)
            finally:
                for c in mine:
                    done[c].set()

        futs = [_executor().submit(worker, w) for w in range(threads)]
        try:
            for c, (a, b) in enumerate(bounds):
                done[c].wait()
                if errors:
                    raise errors[0]
                if on_chunk:
                    on_chunk(a, b)
        finally:
            for f in futs:  # never return while a worker may still write into addr
                f.result()
        if errors:
            raise errors[0]

    def read_blocks(self, dsts: Sequence[Any], first: int = 0) -> None:
        """kvt_read: copy blocks ``[first, first + len(dsts))`` into one buffer each."""
        n = self._check_range(first, len(dsts))
        bb = self.namespace.block_bytes
        ptrs = (c_void_p * max(n, 1))()
        keep = []
        for i, d in enumerate(dsts):
            addr, nbytes, k = _buffer(d, writable=True)
            if nbytes != bb:
                raise ValueError(f"dst[{i}] holds {nbytes} bytes; a block is {bb}")
            ptrs[i] = addr
            keep.append(k)
        with self._lock:
            if self._released:
                raise ClosedError("the lease was released")
            check(_lib.lib().kvt_read(self._h, first, n, ptrs), "kvt_read")

    def read_numpy(self, first: int = 0, n: Optional[int] = None, threads: int = 1) -> np.ndarray:
        """Blocks as a new numpy array ``[n, layers, 2, block_tokens, kv_heads, head_dim]``
        (bf16 shown as uint16 bits, fp8 as uint8)."""
        n = self._check_range(first, n)
        lay = self.namespace.layout
        out = np.empty((n,) + lay.block_shape, DType.NUMPY[lay.dtype])
        return self.read_into(out, first, n, threads)

    def read_torch(self, first: int = 0, n: Optional[int] = None, device: Any = None,
                   threads: int = 4, out: Any = None):
        """Blocks as a torch tensor ``[n, layers, 2, block_tokens, kv_heads, head_dim]``.

        On the CPU the blocks are read straight into the result (or ``out``). For a CUDA
        ``device`` they are read into a reused pinned staging buffer and copied to the GPU
        chunk by chunk while later chunks are still being read (see
        :class:`kvtier.torch_io.DeviceLoader`).
        """
        from . import torch_io

        return torch_io.read_torch(self, first, n, device=device, threads=threads, out=out)
