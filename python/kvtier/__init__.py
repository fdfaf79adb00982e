"""kvtier: a tiered KV-cache store for LLM inference, over libkvtier through ctypes.

    import kvtier
    with kvtier.Cache(dram_bytes="8G") as cache:
        ns = cache.namespace("llama-3-8b", kvtier.Layout(32, 8, 128, "bf16", 16))
        ns.put(tokens, blocks)                 # blocks: [n, 32, 2, 16, 8, 128] bf16
        with ns.lease(tokens) as lease:        # longest cached prefix, pinned
            kv = lease.read_torch(device="cuda")

Modules: :mod:`kvtier.core` (Cache, Namespace, Lease, Layout; numpy only),
:mod:`kvtier.errors` (status codes -> exceptions), :mod:`kvtier.torch_io` (torch tensors,
pinned staging, GPU loads), :mod:`kvtier.hbm` (device-resident blocks), :mod:`kvtier.hf`
(Hugging Face transformers: PrefixCache). The last three import torch; they are loaded on
first use. The library is found through $KVTIER_LIB, beside this package, or the loader.
"""

from __future__ import annotations

from ._lib import library_path
from .core import (Cache, DType, HbmPool, Layout, Lease, Namespace, Plan, Stats, Tier, TierInfo, features,
                   parse_size, parse_ttl, version)
from .errors import (BadLayoutError, BusyError, CatalogError, ClosedError, CorruptBlockError,
                     DeviceUnavailableError, FeatureUnavailableError, InvalidArgumentError,
                     InvalidNameError, KvtierError, LeasesOpenError, ModeError, NoDataError,
                     NoSpaceError, NotFoundError, OutOfMemoryError, RangeError, SizeError,
                     TierIOError, error_class, strerror)

__version__ = "0.1.0"

__all__ = [
    "Cache", "Namespace", "Lease", "Layout", "DType", "Stats", "Tier", "TierInfo", "HbmPool",
    "Plan", "version", "features", "parse_size", "parse_ttl", "library_path", "strerror",
    "error_class", "DeviceUnavailableError", "CorruptBlockError", "CatalogError", "TierIOError",
    "KvtierError", "InvalidArgumentError", "OutOfMemoryError", "NoSpaceError", "BusyError",
    "RangeError", "NotFoundError", "NoDataError", "BadLayoutError", "SizeError", "ModeError",
    "InvalidNameError", "LeasesOpenError", "ClosedError", "FeatureUnavailableError",
]


def __getattr__(name: str):
    # torch-dependent submodules load lazily so numpy-only users never import torch
    if name in ("torch_io", "hbm", "hf"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name == "PrefixCache":
        from .hf import PrefixCache

        return PrefixCache
    raise AttributeError(f"module 'kvtier' has no attribute {name!r}")
