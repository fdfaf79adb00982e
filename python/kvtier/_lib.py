"""Loading libkvtier and declaring its C API (include/kvtier/kvtier.h) for ctypes.

Only the public header's functions are used. Functions that newer libraries add (tiers,
flush, prefetch) are looked up at load time and bound only if the loaded library exports
them; :data:`FEATURES` says which are there. Nothing is emulated.

Where the library is found, first hit wins:

1. ``$KVTIER_LIB``: a path to ``libkvtier.so`` (or a directory holding it);
2. ``libkvtier.so*`` beside this file (a wheel or ``pip install`` that bundled it);
3. the dynamic loader's search path (``ldconfig``, ``LD_LIBRARY_PATH``) as
   ``libkvtier.so.0``, then ``libkvtier.so``.

ctypes releases the GIL around every foreign call, so byte copies in kvt_read/kvt_put run
in parallel when several Python threads call them.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from ctypes import POINTER, c_char_p, c_int, c_size_t, c_uint, c_uint32, c_uint64, c_void_p
from typing import Dict, Optional

__all__ = ["lib", "load", "library_path", "FEATURES", "Layout_c", "Stats_c"]

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_path: Optional[str] = None

#: Optional functions bound when present: {C name: bound}. Filled by :func:`load`.
FEATURES: Dict[str, bool] = {}


class Layout_c(ctypes.Structure):
    """struct kvt_layout"""

    _fields_ = [
        ("layers", c_uint32),
        ("kv_heads", c_uint32),
        ("head_dim", c_uint32),
        ("dtype", c_int),  # enum kvt_dtype: int-sized on every ABI we build for
        ("block_tokens", c_uint32),
    ]


# struct kvt_stats, in header order. Later library versions append fields; the library
# fills min(size, its sizeof) bytes, so this prefix stays valid.
_STATS_FIELDS = [
    "lookups", "lookup_tokens", "hit_tokens", "puts", "blocks_stored", "blocks_evicted",
    "bytes_read", "bytes_written", "blocks_cached", "dram_capacity", "dram_used",
    "index_bytes", "leases_open", "namespaces",
]


class Stats_c(ctypes.Structure):
    """struct kvt_stats (the fields of kvtier.h 0.1)."""

    _fields_ = [(n, c_uint64) for n in _STATS_FIELDS] + [
        ("dram_hugepages", c_uint32),
        ("dram_cuda_pinned", c_uint32),
    ]


_P = c_void_p  # opaque handles are passed as void *
_REQUIRED = {
    # name: (restype, argtypes)
    "kvt_strerror": (c_char_p, [c_int]),
    "kvt_version": (c_char_p, []),
    "kvt_layout_block_bytes": (c_uint64, [POINTER(Layout_c)]),
    "kvt_options_create": (c_int, [POINTER(_P)]),
    "kvt_options_destroy": (None, [_P]),
    "kvt_options_set_dram_bytes": (c_int, [_P, c_uint64]),
    "kvt_options_set_dram_slot_bytes": (c_int, [_P, c_uint64]),
    "kvt_options_set_hugepages": (c_int, [_P, c_int]),
    "kvt_options_set_cuda_pin": (c_int, [_P, c_int]),
    "kvt_engine_open": (c_int, [_P, POINTER(_P)]),
    "kvt_engine_close": (c_int, [_P]),
    "kvt_tenant_set_dram_quota": (c_int, [_P, c_char_p, c_uint64]),
    "kvt_ns_open": (c_int, [_P, c_char_p, c_char_p, POINTER(Layout_c), c_uint, POINTER(_P)]),
    "kvt_block_keys": (c_int, [_P, _P, c_size_t, _P]),
    "kvt_match": (c_int, [_P, _P, c_size_t, POINTER(c_size_t), POINTER(_P)]),
    "kvt_match_keys": (c_int, [_P, _P, c_size_t, POINTER(c_size_t), POINTER(_P)]),
    "kvt_lease_blocks": (c_size_t, [_P]),
    "kvt_lease_tokens": (c_size_t, [_P]),
    "kvt_lease_block_key": (c_int, [_P, c_size_t, POINTER(c_uint64)]),
    "kvt_read": (c_int, [_P, c_size_t, c_size_t, _P]),
    "kvt_read_contig": (c_int, [_P, c_size_t, c_size_t, _P, c_size_t]),
    "kvt_release": (None, [_P]),
    "kvt_put": (c_int, [_P, _P, c_size_t, _P, POINTER(c_size_t)]),
    "kvt_put_keys": (c_int, [_P, _P, c_size_t, _P, POINTER(c_size_t)]),
    "kvt_remove": (c_int, [_P, _P, c_size_t, POINTER(c_size_t)]),
    "kvt_remove_keys": (c_int, [_P, _P, c_size_t, POINTER(c_size_t)]),
    "kvt_engine_stats": (c_int, [_P, POINTER(Stats_c), c_size_t]),
}

# Functions being added to kvtier.h (tiers, flush, prefetch). Their prototypes are declared
# here only once the header documents them; until then they are reported by name alone
# (FEATURES[name] says whether the loaded library exports the symbol) and never called.
_OPTIONAL: Dict[str, Optional[tuple]] = {
    "kvt_options_set_data_dir": None,
    "kvt_flush": None,
    "kvt_prefetch": None,
    "kvt_lease_block_tier": None,
    # the HBM tier (kvtier.h, "the HBM tier")
    "kvt_options_set_hbm_bytes": (c_int, [_P, c_uint64, c_int]),
    "kvt_lease_load_hbm": (c_int, [_P, c_size_t, c_size_t, _P, _P]),
    "kvt_lease_gather_layer": (c_int, [_P, c_size_t, c_size_t, c_uint32, _P, _P, c_uint64, c_uint32, _P]),
}


def _candidates() -> list:
    env = os.environ.get("KVTIER_LIB")
    if env:
        if os.path.isdir(env):
            return sorted(glob.glob(os.path.join(env, "libkvtier.so*")))[:1] or [env]
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    beside = sorted(glob.glob(os.path.join(here, "libkvtier.so*")))
    return beside + ["libkvtier.so.0", "libkvtier.so"]


def load() -> ctypes.CDLL:
    """Load libkvtier once (thread-safe) and declare its prototypes; return the CDLL.

    :raises OSError: no library was found or it lacks a required function; the message
        lists where it looked and how to point at one (``KVTIER_LIB``).
    """
    global _lib, _path
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for cand in _candidates():
            try:
                handle = ctypes.CDLL(cand)
            except OSError as e:
                tried.append(f"{cand}: {e}")
                continue
            for name, (res, args) in _REQUIRED.items():
                try:
                    fn = getattr(handle, name)
                except AttributeError:
                    raise OSError(f"{cand} lacks {name}: not a libkvtier of this API") from None
                fn.restype = res
                fn.argtypes = args
            for name, proto in _OPTIONAL.items():
                present = hasattr(handle, name)
                if present and proto is not None:
                    fn = getattr(handle, name)
                    fn.restype, fn.argtypes = proto
                FEATURES[name] = present and proto is not None
                FEATURES[name + ".exported"] = present
            _lib, _path = handle, cand
            return handle
        raise OSError(
            "libkvtier not found; build it (cmake --build build --target kvtier) and set "
            "KVTIER_LIB=/path/to/libkvtier.so, or install it. Tried:\n  " + "\n  ".join(tried)
        )


def lib() -> ctypes.CDLL:
    """The loaded library (loading it on first use)."""
    return _lib if _lib is not None else load()


def library_path() -> str:
    """Path (or soname) of the library that was loaded."""
    load()
    assert _path is not None
    return _path
