#!/usr/bin/env python3
"""bench_gpu_attn_torch — the PyTorch peer for bench_gpu_attn: decode attention with torch SDPA
on contiguous K/V, and gather-then-attend (index the paged pool through the block table into
contiguous K/V, then SDPA), for the same shapes (Llama-3-8B: 32 q heads over 8 KV heads,
head_dim 128, bf16, block_tokens 16, random block permutation).

    python3 bench/bench_gpu_attn_torch.py [--quick]

TB/s = K/V bytes of one layer / time (median of 20 CUDA-event timings around one call after
warm-up; b2b = per call of 20 issued back to back; inputs rotate among copies so the working
set exceeds the 50 MB L2).

Extend (prefix hit): B sequences of L cached+new tokens, q new tokens each attending to the
prefix and causally to themselves (torch.nn.attention.bias.causal_lower_right), SDPA on
contiguous K/V; TFLOP/s = 4*D*Hq*keys attended / time, next to a bf16 8192^3 torch.matmul."""
import sys

import torch
import torch.nn.functional as F

quick = "--quick" in sys.argv
Hq, H, D, bt = 32, 8, 128, 16
dt = torch.bfloat16
dev = "cuda"
reps = 3 if quick else 20


def timeit(fn, n_inputs):
    for i in range(3):
        fn(i % n_inputs)
    torch.cuda.synchronize()
    ts = []
    for r in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(r % n_inputs)
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def timeit_b2b(fn, n_inputs, n=20):
    """per-call time of n calls issued back to back between two events (median over reps)"""
    for i in range(3):
        fn(i % n_inputs)
    torch.cuda.synchronize()
    ts = []
    for r in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for i in range(n):
            fn((r * n + i) % n_inputs)
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3 / n)
    ts.sort()
    return ts[len(ts) // 2]


x = torch.empty(512 << 20, dtype=torch.uint8, device=dev)
y = torch.empty_like(x)
cp_us = timeit(lambda i: y.copy_(x), 1)
copy_tbs = 2 * x.numel() / (cp_us * 1e6)
del x, y
print(f"# torch {torch.__version__}, {torch.cuda.get_device_name()}; HBM copy limit "
      f"{copy_tbs*1e3:.0f} GB/s (d2d 512 MiB, read+write)")
print(f"{'B':<5} {'L':<6} {'KV_MiB':>8} {'sdpa_us':>8} {'TB/s':>6} {'b2b_us':>7} {'gath+sdpa':>9} "
      f"{'TB/s':>6}")
configs = [(2, 256)] if quick else [(1, 4096), (1, 32768), (8, 4096), (32, 4096), (64, 2048),
                                    (128, 1024), (16, 16384), (64, 4096)]
g = torch.Generator(device=dev)
g.manual_seed(1)
for B, L in configs:
    kvb = B * L * H * D * 2 * 2
    nrot = max(1, (256 << 20) // kvb + 1) if not quick else 1
    q = [torch.randn(B, Hq, 1, D, device=dev, dtype=dt, generator=g) for _ in range(nrot)]
    k = [torch.randn(B, H, L, D, device=dev, dtype=dt, generator=g) for _ in range(nrot)]
    v = [torch.randn(B, H, L, D, device=dev, dtype=dt, generator=g) for _ in range(nrot)]
    sdpa = timeit(lambda i: F.scaled_dot_product_attention(q[i], k[i], v[i], enable_gqa=True), nrot)
    b2b = timeit_b2b(lambda i: F.scaled_dot_product_attention(q[i], k[i], v[i], enable_gqa=True),
                     nrot)
    del k, v
    nb = B * L // bt
    pools = [torch.randn(nb, 2, bt, H, D, device=dev, dtype=dt, generator=g) for _ in range(nrot)]
    table = torch.randperm(nb, device=dev, generator=g).view(B, L // bt)

    def gather_attend(i):
        kv = pools[i][table]  # [B, L/bt, 2, bt, H, D]
        kk = kv[:, :, 0].reshape(B, L, H, D).transpose(1, 2)
        vv = kv[:, :, 1].reshape(B, L, H, D).transpose(1, 2)
        return F.scaled_dot_product_attention(q[i], kk, vv, enable_gqa=True)

    ga = timeit(gather_attend, nrot)
    del pools
    print(f"{B:<5} {L:<6} {kvb/2**20:8.1f} {sdpa:8.1f} {kvb/(sdpa*1e6):6.2f} {b2b:7.1f} {ga:9.1f} "
          f"{kvb/(ga*1e6):6.2f}", flush=True)


# ---------------------------------------------------------------- extend and a matmul rate
from torch.nn.attention.bias import causal_lower_right

n = 8192
a = torch.randn(n, n, device=dev, dtype=dt, generator=g)
b = torch.randn(n, n, device=dev, dtype=dt, generator=g)
mm_us = timeit(lambda i: a @ b, 1)
print(f"# bf16 matmul {n}^3: {mm_us:.1f} us = {2 * n**3 / (mm_us * 1e6):.1f} TFLOP/s")
del a, b
print(f"{'B':<5} {'L':<6} {'q':<5} {'sdpa_us':>8} {'TFLOP/s':>8} {'how':>10}")
ext = [(1, 520, 8)] if quick else [(1, 8704, 512), (1, 10240, 2048), (4, 2176, 128)]
for B, L, qn in ext:
    q = torch.randn(B, Hq, qn, D, device=dev, dtype=dt, generator=g)
    k = torch.randn(B, H, L, D, device=dev, dtype=dt, generator=g)
    v = torch.randn(B, H, L, D, device=dev, dtype=dt, generator=g)
    mask = causal_lower_right(qn, L)
    keys = B * (qn * (L - qn) + qn * (qn + 1) / 2)
    try:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        fn, how = (lambda i: F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                            enable_gqa=True)), "gqa"
    except Exception:  # CausalBias without enable_gqa support: expand the KV heads first
        ke = k.repeat_interleave(Hq // H, dim=1)
        ve = v.repeat_interleave(Hq // H, dim=1)
        fn, how = (lambda i: F.scaled_dot_product_attention(q, ke, ve, attn_mask=mask)), "expanded"
    us = timeit(fn, 1)
    print(f"{B:<5} {L:<6} {qn:<5} {us:8.1f} {4 * D * Hq * keys / (us * 1e6):8.1f} {how:>10}",
          flush=True)
