#!/usr/bin/env python3
"""bench_gpu_attn_torch — the PyTorch peer for bench_gpu_attn: decode attention with torch SDPA
on contiguous K/V, and gather-then-attend (index the paged pool through the block table into
contiguous K/V, then SDPA), for the same shapes (Llama-3-8B: 32 q heads over 8 KV heads,
head_dim 128, bf16, block_tokens 16, random block permutation).

    python3 bench/bench_gpu_attn_torch.py [--quick]

TB/s = K/V bytes of one layer / time (median of 20 CUDA-event timings after warm-up; inputs
rotate among copies so the working set exceeds the 50 MB L2)."""
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


x = torch.empty(512 << 20, dtype=torch.uint8, device=dev)
y = torch.empty_like(x)
cp_us = timeit(lambda i: y.copy_(x), 1)
copy_tbs = 2 * x.numel() / (cp_us * 1e6)
del x, y
print(f"# torch {torch.__version__}, {torch.cuda.get_device_name()}; HBM copy limit "
      f"{copy_tbs*1e3:.0f} GB/s (d2d 512 MiB, read+write)")
print(f"{'B':<5} {'L':<6} {'KV_MiB':>8} {'sdpa_us':>8} {'TB/s':>6} {'gath+sdpa':>9} {'TB/s':>6}")
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
    print(f"{B:<5} {L:<6} {kvb/2**20:8.1f} {sdpa:8.1f} {kvb/(sdpa*1e6):6.2f} {ga:9.1f} "
          f"{kvb/(ga*1e6):6.2f}", flush=True)
