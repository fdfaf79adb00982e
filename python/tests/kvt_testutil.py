"""Shared helpers for the kvtier Python tests (stdlib unittest; fixed, printed seeds)."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # python/ : import the source tree

import numpy as np  # noqa: E402

import kvtier  # noqa: E402

SEED = int(os.environ.get("KVT_TEST_SEED", "20261122"))

SMALL = kvtier.Layout(layers=2, kv_heads=2, head_dim=8, dtype="fp16", block_tokens=4)


def rng(salt: int = 0) -> np.random.Generator:
    return np.random.default_rng(SEED + salt)


def blocks_for(ns: kvtier.Namespace, tokens: np.ndarray) -> np.ndarray:
    """Deterministic block bytes for a token sequence: block i is a function of its chained
    key (i.e. of tokens[:(i+1)*bt]), so any reader can verify what it got."""
    keys = ns.block_keys(tokens)
    n = keys.size
    bb = ns.block_bytes
    out = np.empty((n, bb // 8), np.uint64)
    for i, k in enumerate(keys):
        out[i] = np.uint64(k) ^ np.arange(bb // 8, dtype=np.uint64)
    return out.view(np.uint8).reshape(n, bb)
