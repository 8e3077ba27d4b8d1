"""The measurements of `moesim profile`: the machine's copies, memory, per-op cost and GEMM rate, and every
op kind of the harness timed in isolation at the harness's shape.

Each measurement is `repeats` timed runs of `iters` calls (after a warm-up); a Figure keeps the median
seconds per call and the spread, (max - min) / median over the runs. Sources rotate over buffers larger
than the last-level cache where a cold read is what the decode loop does (copies from host memory,
experts read from the device). On CUDA the runs are timed with events on the stream (copies: pinned and
pageable host memory, host -> device and device -> host); on CPU with the thread's CPU time
(simulator.measure.device.cpu_clock), one thread.

Nothing here looks at a decode loop, a cache or a routing trace: `moesim measure` checks how these figures
compose, so none of them may be fitted to its runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from simulator.measure import kernels as K
from simulator.measure.device import StreamClock, cpu_clock, synchronize

MB = 1 << 20


@dataclass
class Figure:
    seconds: float                 # median seconds per call
    spread: float                  # (max - min) / median over the repeats
    runs: list[float]

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "spread": self.spread, "runs": self.runs}


@dataclass
class Settings:
    repeats: int = 5
    iters: int = 20
    cold_bytes: int = 768 * MB      # buffers a cold-read measurement rotates over (> last-level cache)
    copy_sizes: tuple[int, ...] = (256 << 10, 1 * MB, 4 * MB, 16 * MB)

    @classmethod
    def quick(cls) -> Settings:
        return cls(repeats=3, iters=4, cold_bytes=32 * MB, copy_sizes=(64 << 10, 1 * MB))


def timed(fn: Callable[[int], object], device: torch.device, s: Settings, iters: int | None = None) -> Figure:
    """Time fn(i) for i = 0 .. iters-1, `s.repeats` times after one warm-up pass."""
    iters = iters or s.iters
    runs = []
    for r in range(s.repeats + 1):
        synchronize(device)
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for i in range(iters):
                fn(i)
            b.record()
            b.synchronize()
            dt = a.elapsed_time(b) / 1e3
        else:
            t0 = cpu_clock()
            for i in range(iters):
                fn(i)
            dt = cpu_clock() - t0
        if r:
            runs.append(dt / iters)
    med = statistics.median(runs)
    return Figure(med, (max(runs) - min(runs)) / med if med > 0 else 0.0, runs)


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope of y = a + b x."""
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def per_op(device: torch.device, s: Settings) -> Figure:
    """Seconds of one tiny torch op (Python call, dispatch, launch; output allocated as the ops do)."""
    a = torch.ones(1, device=device)
    return timed(lambda i: torch.mul(a, a), device, s, iters=200)


def host_issue(device: torch.device, s: Settings) -> Figure:
    """CUDA: host seconds to issue one tiny kernel (perf_counter around launches, the GPU not awaited)."""
    a = torch.ones(1, device=device)
    runs = []
    for r in range(s.repeats + 1):
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(200):
            torch.mul(a, a)
        dt = (time.perf_counter() - t0) / 200
        if r:
            runs.append(dt)
    med = statistics.median(runs)
    return Figure(med, (max(runs) - min(runs)) / med, runs)


def gpu_launch(device: torch.device, s: Settings) -> Figure:
    """CUDA: device seconds per tiny kernel back to back (captured in a CUDA graph: no host in the way)."""
    a = torch.ones(1, device=device)
    out = torch.empty_like(a)
    stream = torch.cuda.Stream(device)
    with torch.cuda.stream(stream):
        torch.mul(a, a, out=out)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(100):
            torch.mul(a, a, out=out)
    fig = timed(lambda i: graph.replay(), device, s, iters=5)
    return Figure(fig.seconds / 100, fig.spread, [r / 100 for r in fig.runs])


def host_sync(device: torch.device, s: Settings) -> Figure:
    """CUDA: seconds of a synchronize on an idle device."""
    return timed(lambda i: torch.cuda.synchronize(device), torch.device("cpu"), s, iters=50)


def device_copy_bandwidth(device: torch.device, s: Settings) -> tuple[float, Figure]:
    """Bytes/s read + written by a large device-to-device copy (the device memory's streaming rate)."""
    n = max(s.cold_bytes // 4, 8 * MB)
    src = torch.ones(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    fig = timed(lambda i: dst.copy_(src), device, s, iters=3)
    return 2 * n / fig.seconds, fig


def copy_curve(device: torch.device, s: Settings, direction: str, pinned: bool) -> dict:
    """Copy seconds over s.copy_sizes (sources rotating over cold buffers); the fit latency + bytes / bw."""
    results = {}
    for size in s.copy_sizes:
        count = max(2, s.cold_bytes // size)
        host = torch.ones((count, size), dtype=torch.uint8)
        if pinned:
            host = host.pin_memory()
        dev = torch.ones((min(count, 8), size), dtype=torch.uint8, device=device)
        if direction == "to_device":
            fn = lambda i, h=host, d=dev, c=count: d[i % len(d)].copy_(h[i % c], non_blocking=pinned)
        else:
            fn = lambda i, h=host, d=dev, c=count: h[i % c].copy_(d[i % len(d)], non_blocking=pinned)
        results[size] = timed(fn, device, s, iters=min(s.iters, count))
        del host, dev
    sizes = list(results)
    latency, slope = fit_line(sizes, [results[z].seconds for z in sizes])
    return {"figures": results, "latency": max(latency, 0.0), "bandwidth": 1.0 / slope if slope > 0 else float("nan")}


def gemm_rate(shape: K.Shape, device: torch.device, s: Settings, tokens: int = 256) -> tuple[float, Figure]:
    """FLOP/s of a 16-bit GEMM of `tokens` tokens through an expert's gate matrix (compute-bound)."""
    w = torch.randn(shape.ffn, shape.hidden, device=device).to(K.DT).t()
    x = torch.randn(tokens, shape.hidden, device=device).to(K.DT)
    fig = timed(lambda i: torch.mm(x, w), device, s)
    return 2.0 * tokens * shape.hidden * shape.ffn / fig.seconds, fig


def _slots(form: str, shape: K.Shape, bits: int, group: int, rank: int, device, s: Settings,
           gen: torch.Generator) -> list[K.Slot]:
    nbytes = K.form_bytes(form, shape, bits, group, rank)
    count = int(max(2, min(256, s.cold_bytes // nbytes)))
    host = torch.empty(nbytes, dtype=torch.uint8)
    K.fill_random(host, form, shape, bits, group, rank, gen)
    bufs = host.to(device).expand(count, -1).contiguous()
    return [K.Slot(bufs[i], form, shape, bits, group, rank) for i in range(count)]


def expert_op(shape: K.Shape, bits: int, group: int, device, s: Settings, tokens: int = 1,
              rank: int = 0) -> dict[str, Figure]:
    """The harness's expert op (kernels.expert) on cold slots: seconds per call in expert_gpu and, with
    rank > 0 (all tokens restored), in compensation."""
    gen = torch.Generator().manual_seed(1)
    form = "full" if bits >= 16 else "lowbit"
    slots = _slots(form, shape, bits, group, 0, device, s, gen)
    comps = _slots("factors", shape, bits, group, rank, device, s, gen) if rank else None
    scratch = K.Scratch(shape, device)
    x = torch.randn(tokens, shape.hidden, generator=gen).to(K.DT).to(device)
    out = torch.zeros_like(x)
    idx = torch.arange(tokens, device=device)
    wts = torch.full((tokens, 1), 0.5, dtype=K.DT, device=device)
    clock = StreamClock(device)
    per_cat: dict[str, list[float]] = {"expert_gpu": [], "compensation": []}
    n = len(slots)
    for r in range(s.repeats + 1):
        clock.start()
        for i in range(s.iters):
            K.expert(x, out, idx, wts, slots[i % n], scratch, comps[i % len(comps)] if comps else None,
                     idx if comps else None, clock.mark)
        clock.close()
        acc = clock.take()
        if r:
            for cat, runs in per_cat.items():
                runs.append(acc[cat] / s.iters)
    return {cat: Figure(statistics.median(v), (max(v) - min(v)) / max(statistics.median(v), 1e-12), v)
            for cat, v in per_cat.items() if any(v)}


def layer_ops(shape: K.Shape, experts: int, top_k: int, context: int, device, s: Settings) -> dict[str, Figure]:
    """Attention (one token at KV length context + 1), router, shared expert and LM head at batch 1, each
    timed in the order a decode layer runs them (attention, router, shared experts, then a 16-bit expert
    op, whose time is not used, so each op follows the kind of work it follows in a step; alone, an op
    finds the caches warm with its own code and data and runs faster), rotating over enough layers' weights
    to read them cold. The LM head runs after every layer here and is timed apart."""
    gen = torch.Generator().manual_seed(2)
    per_layer = 2 * (shape.hidden * (shape.heads + 2 * shape.kv_heads) * shape.head_dim * 2 + 3 * shape.hidden
                     * max(shape.shared_ffn, 1))
    count = int(max(2, min(16, s.cold_bytes // max(per_layer, 1))))
    layers = [K.Layer(shape, experts, 1, context + 2, device, gen) for _ in range(count)]
    x = torch.randn(1, shape.hidden, generator=gen).to(K.DT).to(device)
    rows = torch.zeros(1, dtype=torch.long, device=device)
    pos = torch.full((1,), context, dtype=torch.long, device=device)
    mask = torch.ones(1, 1, 1, context + 1, dtype=torch.bool, device=device)
    head = (torch.randn(shape.vocab, shape.hidden, generator=gen) * 0.02).to(K.DT).to(device).t()
    norm = torch.ones(shape.hidden, dtype=K.DT, device=device)
    slots = _slots("full", shape, 16, 128, 0, device, Settings(cold_bytes=64 * MB), gen)[:8]
    scratch = K.Scratch(shape, device)
    idx = torch.zeros(1, dtype=torch.long, device=device)
    wts = torch.full((1, 1), 0.5, dtype=K.DT, device=device)
    clock = StreamClock(device)
    names = {"attention": "attention", "router": "router", "other": "shared", "compensation": "lm_head"}
    runs: dict[str, list[float]] = {n: [] for n in names.values()}
    for r in range(s.repeats + 1):
        clock.start()
        for i in range(s.iters):
            layer = layers[i % count]
            K.attention(x, layer, rows, pos, mask, context + 1)
            clock.mark("attention")
            xn = K.router(x, layer, top_k)
            clock.mark("router")
            if layer.shared is not None:
                K.shared_expert(xn, x, layer)
                clock.mark("other")
            K.expert(xn, x, idx, wts, slots[i % len(slots)], scratch, None, None, lambda cat: None)
            clock.mark("expert_gpu")
            K.lm_head(x, norm, head)
            clock.mark("compensation")  # (the LM head's time, kept apart)
            x.mul_(0.5)  # keep the residual stream bounded
            clock.mark("expert_gpu")
        clock.close()
        acc = clock.take()
        if r:
            for cat, name in names.items():
                runs[name].append(acc[cat] / s.iters)
    out = {}
    for name, v in runs.items():
        if name == "shared" and not shape.shared_ffn:
            continue
        med = statistics.median(v)
        out[name] = Figure(med, (max(v) - min(v)) / med if med > 0 else 0.0, v)
    return out


def bookkeeping(shape, s: Settings) -> Figure:
    """Host seconds of the harness's cache bookkeeping per expert (Harness.lookups: cache lookups and
    inserts, slot assignment, the copy list), on the preset's routing (a synthetic trace) with a small cache;
    the widths do not matter to it, so the experts are tiny."""
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    from simulator.config.run import RunSpec
    from simulator.measure.harness import Harness
    from simulator.measure.shape import harness_trace, write_model
    from simulator.policies.registry import POLICIES
    from simulator.routing.trace import save_trace
    from simulator.schedule import BatchSchedule
    from simulator.simulate import build_scenario

    tiny = replace(shape, hidden=64, expert_ffn=64, shared_experts=0, vocab=64, heads=1, kv_heads=1, head_dim=64)
    steps = max(8, s.iters)
    policy = next(n for n, c in POLICIES.items()  # an offloading policy of one low-bit form per expert
                  if c.slot_forms == ("lowbit",) and not (c.needs_ndp or c.reads_forms or c.reference or c.compensates))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_model(tiny.model_spec(), d / "model.yaml")
        save_trace(harness_trace(tiny, None, steps, 1), d / "trace")
        sc = build_scenario(RunSpec(hwconfig="h100-pcie5", runtime="fused", model=str(d / "model.yaml"),
                                    trace=str(d / "trace"), policy=policy, bits=4, group=64,
                                    cache_experts_per_layer=max(1, tiny.model_spec().top_k), tokens=steps))
        h = Harness(sc, torch.device("cpu"))
        sched = BatchSchedule(sc.trace.sequence_bounds(), 1)
        plans = [h.routing(sched.next_step()) for _ in range(steps)]
        runs = []
        for r in range(s.repeats + 1):
            h.reset()
            t0 = cpu_clock()
            for plan in plans:
                for layer, items in enumerate(plan):
                    h.lookups(layer, items)
            if r:
                runs.append((cpu_clock() - t0) / h.book.experts_gpu)
    med = statistics.median(runs)
    return Figure(med, (max(runs) - min(runs)) / med, runs)
