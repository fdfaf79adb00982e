"""Batch-invariant kernels for parity checks on the GPU (used by bench_ttft.py).

Why: in bf16, an engine that prefills the 64 new tokens of a prompt after loading a cached 8k
prefix runs its matrix products with M = 64 rows where a one-shot prefill runs them with
M = 8,256. cuBLAS picks a different kernel (tile shape, split-K) for each shape, so the same row
is rounded differently, and a 32-layer model turns that rounding into different logits and, at
near-ties, different greedy tokens, although both runs compute the same function of the same
inputs. That is a property of the GEMM library, not of the cache: with fp32 the two runs agree
to 1e-5 and token for token (bench/parity_probe.py).

`batch_invariant()` replaces, for the CUDA tensors of this process and while the context is
active, aten::mm, aten::addmm, aten::bmm and aten::mean.dim with Triton kernels whose reduction
order does not depend on the number of rows (fixed tiles, no split-K: one program owns an output
tile and walks K in order; a row mean is one program per row), and selects SDPA's math backend
(attention as two bmm and a row softmax). Under it, a row's result is a function of that row
alone, so "cached prefix + suffix" and "one prefill" must give bit-identical results; any
difference left is a defect of the cache. The idea is the one of Thinking Machines' "Defeating
Nondeterminism in LLM Inference" (2025); the kernels here are our own, written for this check.
Slow (a verification mode, not a serving mode). Needs Triton (shipped with CUDA PyTorch).
"""
import contextlib

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only PyTorch (the dev VM): the mode is unavailable
    triton = None

if triton is not None:
    @triton.jit
    def _mm_kernel(a, b, c, M, N, K, sab, sam, sak, sbb, sbk, sbn, scb, scm, scn,
                   BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, IEEE: tl.constexpr):
        pm = tl.program_id(0)
        pn = tl.program_id(1)
        z = tl.program_id(2).to(tl.int64)
        rm = (pm * BM + tl.arange(0, BM)).to(tl.int64)
        rn = (pn * BN + tl.arange(0, BN)).to(tl.int64)
        rk = tl.arange(0, BK).to(tl.int64)
        pa = a + z * sab + rm[:, None] * sam + rk[None, :] * sak
        pb = b + z * sbb + rk[:, None] * sbk + rn[None, :] * sbn
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k0 in range(0, K, BK):
            ta = tl.load(pa, mask=(rm[:, None] < M) & (rk[None, :] + k0 < K), other=0.0)
            tb = tl.load(pb, mask=(rk[:, None] + k0 < K) & (rn[None, :] < N), other=0.0)
            if IEEE:
                acc = tl.dot(ta, tb, acc, input_precision="ieee")
            else:
                acc = tl.dot(ta, tb, acc)
            pa += BK * sak
            pb += BK * sbk
        pc = c + z * scb + rm[:, None] * scm + rn[None, :] * scn
        tl.store(pc, acc.to(c.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))

    @triton.jit
    def _row_mean_kernel(x, y, N, sx, BLOCK: tl.constexpr):
        r = tl.program_id(0).to(tl.int64)
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for n0 in range(0, N, BLOCK):
            cols = n0 + tl.arange(0, BLOCK)
            acc += tl.load(x + r * sx + cols, mask=cols < N, other=0.0).to(tl.float32)
        tl.store(y + r, (tl.sum(acc, axis=0) / N).to(y.dtype.element_ty))


def _bmm3(a, b, out_dtype):
    """a [Z, M, K] @ b [Z, K, N] -> [Z, M, N] with a fixed reduction order."""
    z, m, k = a.shape
    n = b.shape[2]
    c = torch.empty((z, m, n), dtype=out_dtype, device=a.device)
    if m == 0 or n == 0 or z == 0:
        return c
    if k == 0:
        return c.zero_()
    bm, bn, bk = 64, 128, 32
    grid = (triton.cdiv(m, bm), triton.cdiv(n, bn), z)
    _mm_kernel[grid](a, b, c, m, n, k, a.stride(0), a.stride(1), a.stride(2),
                     b.stride(0), b.stride(1), b.stride(2), c.stride(0), c.stride(1), c.stride(2),
                     BM=bm, BN=bn, BK=bk, IEEE=a.dtype == torch.float32, num_warps=4, num_stages=3)
    return c


def _mm(a, b):
    return _bmm3(a.unsqueeze(0), b.unsqueeze(0), a.dtype)[0]


def _bmm(a, b):
    return _bmm3(a, b, a.dtype)


def _addmm(bias, a, b, beta=1, alpha=1):
    acc = _bmm3(a.unsqueeze(0), b.unsqueeze(0), torch.float32)[0]
    out = acc * alpha
    if beta != 0:
        out = out + beta * bias.float()
    return out.to(a.dtype)


def _mean_dim(x, dim, keepdim=False, dtype=None):
    dims = [d % x.dim() for d in (dim if dim is not None else range(x.dim()))]
    if dims != [x.dim() - 1] or x.numel() == 0 or not x.is_floating_point():
        out = torch.sum(x, dim, keepdim=keepdim, dtype=dtype)  # not a row mean: not needed here
        return out / (x.numel() // max(out.numel(), 1))
    xc = x.contiguous()
    n = xc.shape[-1]
    rows = xc.numel() // n
    y = torch.empty(rows, dtype=dtype or x.dtype, device=x.device)
    _row_mean_kernel[(rows,)](xc, y, n, n, BLOCK=512, num_warps=4)
    shape = list(x.shape[:-1]) + ([1] if keepdim else [])
    return y.view(shape)


@contextlib.contextmanager
def batch_invariant():
    """Run the body with row-count-invariant mm/addmm/bmm/mean and SDPA's math backend."""
    if triton is None:
        raise RuntimeError("batch_invariant() needs Triton (CUDA PyTorch); not available here")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    lib = torch.library.Library("aten", "IMPL")
    lib.impl("mm", _mm, "CUDA")
    lib.impl("bmm", _bmm, "CUDA")
    lib.impl("addmm", _addmm, "CUDA")
    lib.impl("mean.dim", _mean_dim, "CUDA")
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        lib._destroy()
