"""Loading libkvtier and declaring its C API (include/kvtier/kvtier.h) for ctypes.

Only the public header's functions are used. Functions that newer libraries add (persistent
tiers, flush, prefetch, TTLs, policies, the HBM tier, paged attention) are looked up at load
time and bound only if the loaded library exports them; :data:`FEATURES` says which are
there. Nothing is emulated.

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
from ctypes import (POINTER, c_char, c_char_p, c_double, c_float, c_int, c_size_t, c_uint, c_uint32,
                    c_uint64, c_void_p)
from typing import Dict, Optional

__all__ = ["lib", "load", "library_path", "FEATURES", "Layout_c", "Stats_c", "TierInfo_c",
           "HbmPoolInfo_c", "PutOpts_c", "ModelDesc_c", "Plan_c", "PlanBlock_c", "AttnArgs_c",
           "require"]

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
# fills min(size, its sizeof) bytes, so a prefix stays valid and fields an older library
# does not know stay 0.
_STATS_FIELDS = [
    "lookups", "lookup_tokens", "hit_tokens", "puts", "blocks_stored", "blocks_evicted",
    "bytes_read", "bytes_written", "blocks_cached", "dram_capacity", "dram_used",
    "index_bytes", "leases_open", "namespaces",
]
#: kvt_stats arrays indexed by kvt_tier (appended in 0.2)
STATS_TIER_ARRAYS = ["tier_capacity", "tier_used", "tier_blocks", "tier_reads", "tier_writes",
                     "tier_bytes_read", "tier_bytes_written"]
STATS_U64_2 = ["demotions", "promotions", "checksum_failures", "io_errors", "blocks_dropped_bad",
               "persisted_blocks", "wt_failures", "unpersisted_blocks", "flushes",
               "restored_blocks", "restore_dropped"]
STATS_HBM = ["hbm_capacity", "hbm_used", "hbm_pinned_blocks", "hbm_loads", "hbm_load_bytes",
             "hbm_hits", "hbm_evictions"]


class Stats_c(ctypes.Structure):
    """struct kvt_stats (kvtier.h, with the persistent-tier and HBM fields)."""

    _fields_ = [(n, c_uint64) for n in _STATS_FIELDS] + [
        ("dram_hugepages", c_uint32),
        ("dram_cuda_pinned", c_uint32),
    ] + [(n, c_uint64 * 4) for n in STATS_TIER_ARRAYS] + [(n, c_uint64) for n in STATS_U64_2] + [
        ("persistent", c_uint32),
        ("simulate", c_uint32),
        ("io_backend", c_char * 16),
        ("hbm_state", c_uint32),
        ("hbm_pad_", c_uint32),
    ] + [(n, c_uint64) for n in STATS_HBM]


class TierInfo_c(ctypes.Structure):
    """struct kvt_tier_info"""

    _fields_ = [("tier", c_int), ("name", c_char_p), ("capacity", c_uint64), ("read_bw", c_double),
                ("write_bw", c_double), ("link_bw", c_double), ("latency_s", c_double),
                ("usd_per_byte_s", c_double), ("drain_s", c_double)]


class HbmPoolInfo_c(ctypes.Structure):
    """struct kvt_hbm_pool_info"""

    _fields_ = [("base", c_void_p), ("block_bytes", c_uint64), ("num_blocks", c_uint32),
                ("device", c_int), ("layout", Layout_c)]


class PutOpts_c(ctypes.Structure):
    """struct kvt_put_opts"""

    _fields_ = [("ttl", c_char_p), ("ttl_s", c_double)]


class ModelDesc_c(ctypes.Structure):
    """struct kvt_model_desc"""

    _fields_ = [("active_params", c_double), ("layers", c_uint32), ("hidden", c_uint32),
                ("prefill_tok_s", c_double), ("gpu_flops", c_double), ("gpu_usd_per_hour", c_double)]


class Plan_c(ctypes.Structure):
    """struct kvt_plan"""

    _fields_ = [("n_blocks", c_size_t), ("n_load", c_size_t), ("n_recompute", c_size_t),
                ("load_s", c_double), ("compute_s", c_double), ("total_s", c_double),
                ("all_recompute_s", c_double)]


class PlanBlock_c(ctypes.Structure):
    """struct kvt_plan_block"""

    _fields_ = [("tier", c_int), ("load", c_int), ("time_s", c_double)]


class AttnArgs_c(ctypes.Structure):
    """struct kvt_attn_args"""

    _fields_ = [("layout", Layout_c), ("layer", c_uint32), ("num_qo_heads", c_uint32),
                ("num_seqs", c_uint32), ("total_q", c_uint32), ("max_q_len", c_uint32),
                ("max_kv_len", c_uint32), ("num_blocks", c_uint32), ("sm_scale", c_float),
                ("pool", c_void_p), ("q", c_void_p), ("out", c_void_p), ("qo_indptr", c_void_p),
                ("kv_indptr", c_void_p), ("kv_indices", c_void_p), ("kv_lens", c_void_p)]


# sizeof() of the header's structs on x86-64 / aarch64 (LP64), checked at import
_SIZES = {Stats_c: 520, TierInfo_c: 72, HbmPoolInfo_c: 48, PutOpts_c: 16, Plan_c: 56,
          PlanBlock_c: 16, ModelDesc_c: 40, AttnArgs_c: 112}
if ctypes.sizeof(c_void_p) == 8:
    for _cls, _n in _SIZES.items():
        assert ctypes.sizeof(_cls) == _n, (_cls.__name__, ctypes.sizeof(_cls), _n)


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

# Functions newer libraries add (persistent tiers, flush, prefetch, TTLs, policies, plans,
# the HBM tier, paged attention). Each is bound only if the loaded library exports it;
# FEATURES[name] says so, and the wrappers raise FeatureUnavailableError otherwise.
_OPTIONAL: Dict[str, Optional[tuple]] = {
    # persistent tiers (kvtier.h, "persistent tiers")
    "kvt_options_set_data_dir": (c_int, [_P, c_char_p]),
    "kvt_options_set_tier": (c_int, [_P, c_int, c_char_p, c_uint64, c_uint64]),
    "kvt_options_set_io_depth": (c_int, [_P, c_uint]),
    "kvt_options_set_io_force_pool": (c_int, [_P, c_int]),
    "kvt_options_set_backpressure_ms": (c_int, [_P, c_uint32]),
    "kvt_options_set_persist_delay_ms": (c_int, [_P, c_uint32]),
    "kvt_options_set_simulate": (c_int, [_P, c_int]),
    "kvt_flush": (c_int, [_P]),
    "kvt_tenant_set_quota": (c_int, [_P, c_char_p, c_int, c_uint64]),
    "kvt_lease_block_tier": (c_int, [_P, c_size_t, POINTER(c_int)]),
    "kvt_prefetch": (c_int, [_P, _P, c_size_t]),
    "kvt_prefetch_keys": (c_int, [_P, _P, c_size_t]),
    # policies, TTLs, plans
    "kvt_options_set_policy": (c_int, [_P, c_char_p]),
    "kvt_options_set_model": (c_int, [_P, POINTER(ModelDesc_c)]),
    "kvt_options_set_tier_perf": (c_int, [_P, c_int, c_double, c_double]),
    "kvt_model_desc_llama3_8b": (None, [POINTER(ModelDesc_c)]),
    "kvt_model_desc_llama3_70b": (None, [POINTER(ModelDesc_c)]),
    "kvt_recompute_seconds": (c_double, [POINTER(ModelDesc_c), c_uint64, c_uint32]),
    "kvt_ttl_parse": (c_int, [c_char_p, POINTER(c_double)]),
    "kvt_put_ex": (c_int, [_P, _P, c_size_t, _P, POINTER(PutOpts_c), POINTER(c_size_t)]),
    "kvt_put_keys_ex": (c_int, [_P, _P, c_size_t, _P, POINTER(PutOpts_c), POINTER(c_size_t)]),
    "kvt_engine_tiers": (c_int, [_P, POINTER(TierInfo_c), c_size_t, POINTER(c_size_t)]),
    "kvt_lease_plan": (c_int, [_P, POINTER(ModelDesc_c), c_size_t, POINTER(Plan_c), POINTER(PlanBlock_c)]),
    # the HBM tier (kvtier.h, "the HBM tier")
    "kvt_options_set_hbm_bytes": (c_int, [_P, c_uint64, c_int]),
    "kvt_hbm_pool": (c_int, [_P, POINTER(HbmPoolInfo_c)]),
    "kvt_lease_load_hbm": (c_int, [_P, c_size_t, c_size_t, _P, _P]),
    "kvt_lease_gather_layer": (c_int, [_P, c_size_t, c_size_t, c_uint32, _P, _P, c_uint64, c_uint32, _P]),
    "kvt_lease_copy_layer": (c_int, [_P, c_size_t, c_size_t, c_uint32, _P, _P, _P]),
    "kvt_attn_workspace_bytes": (c_int, [POINTER(AttnArgs_c), POINTER(c_size_t)]),
    "kvt_attn_run": (c_int, [POINTER(AttnArgs_c), _P, c_size_t, _P]),
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


def require(name: str):
    """The bound optional function ``name``; FeatureUnavailableError if the library lacks it."""
    L = lib()
    if not FEATURES.get(name):
        from .errors import FeatureUnavailableError

        raise FeatureUnavailableError(name)
    return getattr(L, name)
