#!/usr/bin/env python3
"""ttft_overlap: where the time of the DRAM direct TTFT goes (issue 8).

The same model, prompt and cache as bench_ttft.py (a random-weight Llama-3-8B-shaped model,
an 8192-token prefix in kvtier's CUDA-registered DRAM arena, 64 new tokens). For each way of
moving the prefix (DirectLoader method "kernel" at several CTA counts, "copy" = copy
engines; the forward on the default or on a high-priority stream; the load overlapped or
finished before the forward) it times TTFT over --reps runs, twice in opposite orders, and
for one run of each it records per-layer CUDA events: when layer l's K/V landed (side
stream) and when decoder layer l started and ended on the compute stream, against the
floor's (the prefix's K/V already on the GPU). A layer that starts after its K/V landed
and runs longer than the floor's layer is slowed by contention, not by the load.

    KVTIER_LIB=build/libkvtier.so PYTHONPATH=python python3 bench/ttft_overlap.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import torch  # noqa: E402

import kvtier  # noqa: E402
import kvtier.direct as kd  # noqa: E402
from kvtier.direct import DirectLoader  # noqa: E402
from kvtier.hf import PrefixCache, new_dynamic_cache  # noqa: E402


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prefix", type=int, default=8192)
    p.add_argument("--suffix", type=int, default=64)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--ctas", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--json", default=None)
    return p.parse_args()


class Timeline:
    """Timing events per decoder layer: pre (after the wait for its K/V) and post."""

    def __init__(self, layers):
        self.on = False
        self.pre = [torch.cuda.Event(enable_timing=True) for _ in layers]
        self.post = [torch.cuda.Event(enable_timing=True) for _ in layers]
        self.cpu = [0.0] * len(layers)
        self.hooks = []
        for i, m in enumerate(layers):
            self.hooks.append(m.register_forward_pre_hook(self._pre(i)))
            self.hooks.append(m.register_forward_hook(self._post(i)))

    def _pre(self, i):
        def f(module, args):
            if self.on:
                self.cpu[i] = time.perf_counter()
                self.pre[i].record()
        return f

    def _post(self, i):
        def f(module, args, out):
            if self.on:
                self.post[i].record()
        return f

    def close(self):
        for h in self.hooks:
            h.remove()


def main():
    a = parse()
    from llama_random import random_llama

    dev = torch.device("cuda")
    cfg, model = random_llama(dev, layers=a.layers, max_positions=max(8192, 2 * (a.prefix + a.suffix)))
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(3, 128256, (1, a.prefix + a.suffix), generator=g).to(dev)
    lay = kvtier.Layout.from_model_config(cfg, dtype=torch.bfloat16, block_tokens=16)
    pb = a.prefix * lay.bytes_per_token
    cache = kvtier.Cache(dram_bytes=int(pb * 1.3) + (64 << 20))
    ns = cache.namespace("overlap-probe", lay)
    pc = PrefixCache(model, cache, ns, threads=16)
    pc.reserve(a.prefix + a.suffix)
    with torch.no_grad():
        pc.prefill(ids[:, : a.prefix])
    ids_np = ids[0].cpu().numpy()
    lim = a.prefix
    assert ns.match(ids_np[:lim]) == a.prefix and cache.stats().dram_cuda_pinned
    with ns.lease(ids_np[:lim]) as lease:  # how the blocks sit in the arena
        ptrs = []
        import ctypes
        from kvtier._lib import lib
        bp = lib().kvt_lease_block_ptr
        bp.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
        bp.restype = ctypes.c_int
        for i in range(lease.blocks):
            p = ctypes.c_void_p()
            bp(lease._h, i, ctypes.byref(p))
            ptrs.append(p.value or 0)
    steps = {ptrs[i + 1] - ptrs[i] for i in range(len(ptrs) - 1)}
    print(f"arena: {len(ptrs)} blocks, distinct spacings {sorted(steps)[:4]} (block {lay.block_bytes})", flush=True)
    layers = model.model.layers
    hp = torch.cuda.Stream(priority=-100)  # mapped to the highest the device has
    print(f"high-priority stream: priority {hp.priority} (default 0)", flush=True)

    def sync():
        torch.cuda.synchronize()

    # floor
    with torch.no_grad():
        floor_pkv = new_dynamic_cache(model)
        model(input_ids=ids[:, : a.prefix], past_key_values=floor_pkv, use_cache=True, logits_to_keep=1)

    def run_floor():
        out = model(input_ids=ids[:, a.prefix:], past_key_values=floor_pkv, use_cache=True, logits_to_keep=1)
        tok = int(out.logits[0, -1].argmax())
        floor_pkv.crop(-a.suffix)
        return tok

    loaders = {}

    def loader(method, ctas):
        key = (method, ctas)
        if key not in loaders:
            loaders[key] = DirectLoader(model, lay, ctas=ctas, method=method)
            loaders[key].close()  # hooks installed on demand below
        return loaders[key]

    active = [None]

    def use(ld):
        if active[0] is not ld:
            if active[0] is not None:
                active[0].close()
            ld._hooks = [m.register_forward_pre_hook(ld._make_hook(i)) for i, m in enumerate(ld.layers)]
            # the loader's pre-hooks must run before the timeline's: re-register the timeline
            tl.close()
            tl.__init__(layers)
            active[0] = ld

    tl = Timeline(layers)

    def run_direct(ld, stream=None, serial=False):
        s = stream or torch.cuda.current_stream()
        with torch.cuda.stream(s), ns.lease(ids_np[:lim]) as lease:
            pkv = new_dynamic_cache(model)
            n = ld.load(lease, pkv)
            if serial:
                ld.stream.synchronize()
            out = model(input_ids=ids[:, n:], past_key_values=pkv, use_cache=True, logits_to_keep=1)
            return int(out.logits[0, -1].argmax()), out.logits.float()

    def load_only(ld):
        with ns.lease(ids_np[:lim]) as lease:
            pkv = new_dynamic_cache(model)
            ld.load(lease, pkv)
            sync()
            ld._pending = [None] * len(ld._pending)

    place = kd._place  # the cache filled at load(); "update in hook": the earlier hand-over

    def no_place(*args):
        return False

    configs = [("floor", None, None, False)]
    for c in a.ctas:
        configs.append((f"kernel {c} CTAs", ("kernel", c), None, False))
    configs += [("kernel 16 CTAs, hi-prio fwd", ("kernel", 16), hp, False),
                ("kernel 16 CTAs, serial", ("kernel", 16), None, True),
                ("copy", ("copy", 0), None, False),
                ("copy, hi-prio fwd", ("copy", 0), hp, False),
                ("copy, serial", ("copy", 0), None, True),
                ("copy, update in hook (old)", ("copy", 0), None, False),
                ("kernel 16, update in hook (old)", ("kernel", 16), None, False)]
    res = {c[0]: [] for c in configs}
    loads = {}
    logits = {}
    with torch.no_grad():
        ref = None
        for order in (configs, configs[::-1]):
            for name, lk, stream, serial in order:
                kd._place = no_place if "update in hook" in name else place
                if lk is None:
                    fn = run_floor
                else:
                    ld = loader(*lk)
                    use(ld)
                    fn = (lambda ld=ld, stream=stream, serial=serial: run_direct(ld, stream, serial))
                for _ in range(a.warmup):
                    fn()
                for _ in range(a.reps):
                    sync()
                    t0 = time.perf_counter()
                    r = fn()
                    res[name].append(time.perf_counter() - t0)
                if lk is not None:
                    logits[name] = r[1]
                    if lk not in loads:
                        ts = []
                        for _ in range(5):
                            sync()
                            t0 = time.perf_counter()
                            load_only(ld)
                            ts.append(time.perf_counter() - t0)
                        loads[lk] = statistics.median(ts)
        # bit identity among the direct paths (and the two-step reference)
        ref_pkv = new_dynamic_cache(model)
        model(input_ids=ids[:, : a.prefix], past_key_values=ref_pkv, use_cache=True, logits_to_keep=1)
        ref = model(input_ids=ids[:, a.prefix:], past_key_values=ref_pkv, use_cache=True,
                    logits_to_keep=1).logits.float()
        ident = {k: bool(torch.equal(ref, v)) for k, v in logits.items()}
        print(f"bit-identical to the two-step reference: {ident}", flush=True)

        # timelines: one run each, after warm-up
        tlines = {}
        for name, lk, stream, serial in configs:
            kd._place = no_place if "update in hook" in name else place
            if lk is None:
                if active[0] is not None:
                    active[0].close()
                    active[0] = None
                    tl.close()
                    tl.__init__(layers)
                fn = run_floor
            else:
                ld = loader(*lk)
                use(ld)
                fn = (lambda ld=ld, stream=stream, serial=serial: run_direct(ld, stream, serial))
            fn()
            sync()
            if lk is not None:
                ld.events = [torch.cuda.Event(enable_timing=True) for _ in ld.layers]
            start = torch.cuda.Event(enable_timing=True)
            s = stream or torch.cuda.current_stream()
            tl.on = True
            with torch.cuda.stream(s):
                start.record()
            c0 = time.perf_counter()
            fn()
            sync()
            tl.on = False
            L = len(layers)
            landed = [start.elapsed_time(ld.events[i]) for i in range(L)] if lk is not None else [0.0] * L
            pre = [start.elapsed_time(tl.pre[i]) for i in range(L)]
            post = [start.elapsed_time(tl.post[i]) for i in range(L)]
            cpu = [(tl.cpu[i] - c0) * 1e3 for i in range(L)]
            tlines[name] = dict(landed=landed, pre=pre, post=post, cpu=cpu)
            if lk is not None:
                ld.events = [torch.cuda.Event() for _ in ld.layers]
    if active[0] is not None:
        active[0].close()
    tl.close()
    kd._place = place

    fl = tlines["floor"]
    fdur = [fl["post"][i] - fl["pre"][i] for i in range(len(layers))]
    print()
    print(f"{'config':<30}{'median':>8}{'min':>8}{'max':>8}{'1st half':>9}{'2nd half':>9}{'load':>7}"
          f"{'L0 start':>9}{'sum layer':>10}{'vs floor':>9}{'wait>0':>7}{'L31 end':>8}{'cpu L31':>8}")
    for name, lk, stream, serial in configs:
        ts = res[name]
        h1, h2 = statistics.median(ts[: a.reps]), statistics.median(ts[a.reps:])
        t = tlines[name]
        dur = [t["post"][i] - t["pre"][i] for i in range(len(layers))]
        # layers whose start came after their K/V landed by < 0.05 ms: they waited for the load
        waited = sum(1 for i in range(len(layers)) if lk is not None and 0 <= t["pre"][i] - t["landed"][i] < 0.05)
        ld = loads.get(lk)
        print(f"{name:<30}{statistics.median(ts) * 1e3:>8.1f}{min(ts) * 1e3:>8.1f}{max(ts) * 1e3:>8.1f}"
              f"{h1 * 1e3:>9.1f}{h2 * 1e3:>9.1f}{(ld * 1e3 if ld else 0):>7.1f}{t['pre'][0]:>9.2f}"
              f"{sum(dur):>10.2f}{sum(dur) / sum(fdur):>9.2f}{waited:>7}{t['post'][-1]:>8.2f}{t['cpu'][-1]:>8.2f}")
    shown = sorted({i for i in (0, 1, 2, 8, 16, len(layers) - 1) if i < len(layers)})
    print(f"per-layer (ms from start; landed / start / end) for layers {' '.join(map(str, shown))}:")
    for name in tlines:
        t = tlines[name]
        print(f"  {name:<28}" + " | ".join(f"{t['landed'][i]:.1f}/{t['pre'][i]:.1f}/{t['post'][i]:.1f}"
                                           for i in shown))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(times=res, loads={str(k): v for k, v in loads.items()}, timelines=tlines,
                           identical=ident, spacings=sorted(steps)[:8]), f, indent=1)
    return 0 if all(ident.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
