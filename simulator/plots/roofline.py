"""Roofline of the GPU and of one NDP unit with the decode operating points (the seed's Figure 1 right).

Each roof is min(peak x compute_efficiency, intensity x bandwidth x memory_efficiency), derated as
simulator.costs times every op, and the figure says so: the legend gives both products and their
factors, each title the efficiencies, the y axis "derated roof". The points are the decode ops of one
MoE layer, with their work from the engine's own cost functions:

    attention            costs.attention_work at `context` (weights + KV read), on the GPU
    expert dequant+GEMM  costs.expert_work on the low-bit bytes, on the GPU
    expert fp16 GEMM     costs.expert_work on the full-precision bytes, on the GPU (a full-precision offload)
    compensation         costs.compensation_work with rank r, on the GPU
    NDP expert           costs.expert_work on the low-bit bytes, on an NDP unit at its precision

x = arithmetic intensity (FLOP per byte read), y = attained FLOP/s = FLOPs / op time, where op time is
the costs module's roofline time including the fixed launch/op overhead, so a point below its roof
shows what the overhead costs at that size. One point per token count in `tokens`.
"""

from __future__ import annotations

import numpy as np

from simulator import costs
from simulator.config.model import ModelSpec
from simulator.config.system import SystemSpec
from simulator.plots.style import figure, place_axes_labels
from simulator.precision import FULL_PRECISION_BITS


def operating_points(system: SystemSpec, model: ModelSpec, bits: int, group: int, rank: int,
                     tokens: int, context: int) -> list[dict]:
    """[{op, unit, flops, bytes, seconds}] for one MoE layer's decode ops at `tokens` tokens."""
    gpu = system.gpu
    lowbit = model.expert_bytes(bits, group)
    ops = [("attention", "gpu", costs.attention_work(model, tokens, tokens * context)),
           (f"expert {bits}-bit dequant+GEMM", "gpu", costs.expert_work(model, tokens, lowbit)),
           ("expert fp16 GEMM", "gpu", costs.expert_work(model, tokens, model.expert_bytes(FULL_PRECISION_BITS))),
           (f"compensation rank {rank}", "gpu",
            costs.compensation_work(model, tokens, rank, model.expert_factor_bytes(rank)))]
    points = [{"op": op, "unit": unit, "flops": f, "bytes": b, "seconds": costs.gpu_time(gpu, f, b)}
              for op, unit, (f, b) in ops]
    if system.ndp is not None:
        f, b = costs.expert_work(model, tokens, lowbit)
        points.append({"op": f"NDP expert {bits}-bit", "unit": "ndp", "flops": f, "bytes": b,
                       "seconds": costs.ndp_time(system.ndp, f, b, bits)})
    for p in points:
        p["tokens"] = tokens
    return points


def _rate(value: float, unit: str) -> str:
    """'989 TFLOP/s', '3.35 TB/s': three significant figures with an SI prefix."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def derating(peak: float, compute_eff: float, bandwidth: float, memory_eff: float) -> str:
    """'peak 989 TFLOP/s x 0.7, bandwidth 3.35 TB/s x 0.8': what the roof is made of."""
    return (f"peak {_rate(peak, 'FLOP/s')} x {compute_eff:g}, "
            f"bandwidth {_rate(bandwidth, 'B/s')} x {memory_eff:g}")


def _roof(ax, peak: float, compute_eff: float, bandwidth: float, memory_eff: float, label: str,
          style: str = "-") -> None:
    """The derated roof min(peak x compute_eff, x x bandwidth x memory_eff), its ridge, and a legend entry
    that gives both products."""
    x = np.logspace(-1, 4, 200)                        # FLOP/byte
    top, slope = peak * compute_eff, bandwidth * memory_eff
    ax.loglog(x, np.minimum(top, x * slope), style, color="black", lw=1.5,
              label=f"{label}: {_rate(top, 'FLOP/s')}, {_rate(slope, 'B/s')}\n"
                    f"= {derating(peak, compute_eff, bandwidth, memory_eff)}")
    ax.axvline(top / slope, color="black", lw=0.5, ls=":")


def roofline_figure(system: SystemSpec, model: ModelSpec, bits: int = 3, group: int = 128, rank: int = 32,
                    tokens: tuple[int, ...] = (1, 16), context: int = 512):
    """GPU roofline (left) and NDP-unit roofline (right, when the system has NDP) with operating points.

    Every roof is derated as the cost model times ops: peak x compute_efficiency and bandwidth x
    memory_efficiency, both given in the legend, the efficiencies in each title; the y axis says the roof is derated."""
    has_ndp = system.ndp is not None
    fig, axes = figure(ncols=2 if has_ndp else 1, height=4.5)
    gpu = system.gpu
    effs = [(gpu.compute_efficiency, gpu.memory_efficiency)]
    _roof(axes[0], gpu.flops("fp16"), gpu.compute_efficiency, gpu.hbm_bandwidth, gpu.memory_efficiency,
          f"{gpu.name} fp16 roof")
    if has_ndp:
        ndp = system.ndp
        prec = costs.ndp_precision(bits)
        effs.append((ndp.compute_efficiency, ndp.memory_efficiency))
        _roof(axes[1], ndp.flops(prec), ndp.compute_efficiency, ndp.memory_bandwidth, ndp.memory_efficiency,
              f"NDP unit {prec} roof")
        if prec != "fp16":
            _roof(axes[1], ndp.flops("fp16"), ndp.compute_efficiency, ndp.memory_bandwidth,
                  ndp.memory_efficiency, "NDP unit fp16 roof", "--")
    markers = {"attention": "o", "expert": "s", "compensation": "^", "NDP": "D"}
    colours = dict(zip(("attention", "expert", "compensation", "NDP"), ("tab:blue", "tab:orange", "tab:red",
                                                                        "tab:purple")))
    labels = {id(ax): (ax, []) for ax in axes}
    for i, n in enumerate(tokens):
        for p in operating_points(system, model, bits, group, rank, n, context):
            kind = p["op"].split()[0]
            ax = axes[1] if p["unit"] == "ndp" else axes[0]
            x, y = p["flops"] / p["bytes"], p["flops"] / p["seconds"]
            ax.scatter(x, y, marker=markers[kind], s=45, zorder=3, edgecolors=colours[kind],
                       facecolors="none" if "fp16" in p["op"] else colours[kind],
                       label=p["op"] if i == 0 else None)
            labels[id(ax)][1].append((x, y, f"{n} tok", "black"))
    names = [f"{gpu.name} (GPU)"] + ([f"NDP unit ({system.name})"] if has_ndp else [])
    for ax, name, (ce, me) in zip(axes, names, effs):
        ax.set_xlabel("arithmetic intensity (FLOP/byte)")
        ax.set_ylabel("attainable FLOP/s (derated roof)")
        ax.set_title(f"{name}: {model.name}, decode, ctx {context}\n"
                     f"roof = peak x compute_efficiency {ce:g}, bandwidth x memory_efficiency {me:g}",
                     fontsize=9)
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    place_axes_labels(fig, list(labels.values()))
    return fig
