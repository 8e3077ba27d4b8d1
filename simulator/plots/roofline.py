"""Roofline of the GPU and of one NDP unit with the decode operating points (the seed's Figure 1 right).

Each roof is min(peak x compute_eff, intensity x bandwidth x memory_eff) (simulator.costs). The points
are the decode ops of one MoE layer, with their work from the engine's own cost functions:

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
from simulator.plots.style import figure
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


def _roof(ax, peak: float, bandwidth: float, label: str, style: str = "-") -> None:
    x = np.logspace(-1, 4, 200)                        # FLOP/byte
    ax.loglog(x, np.minimum(peak, x * bandwidth), style, color="black", lw=1.5, label=label)
    ax.axvline(peak / bandwidth, color="black", lw=0.5, ls=":")


def roofline_figure(system: SystemSpec, model: ModelSpec, bits: int = 3, group: int = 128, rank: int = 32,
                    tokens: tuple[int, ...] = (1, 16), context: int = 512):
    """GPU roofline (left) and NDP-unit roofline (right, when the system has NDP) with operating points."""
    has_ndp = system.ndp is not None
    fig, axes = figure(ncols=2 if has_ndp else 1)
    gpu = system.gpu
    _roof(axes[0], gpu.flops("fp16") * gpu.compute_efficiency, gpu.hbm_bandwidth * gpu.memory_efficiency,
          f"{gpu.name} fp16 roof")
    if has_ndp:
        ndp = system.ndp
        prec = costs.ndp_precision(bits)
        bw = ndp.memory_bandwidth * ndp.memory_efficiency
        _roof(axes[1], ndp.flops(prec) * ndp.compute_efficiency, bw, f"NDP unit {prec} roof")
        if prec != "fp16":
            _roof(axes[1], ndp.flops("fp16") * ndp.compute_efficiency, bw, "NDP unit fp16 roof", "--")
    markers = {"attention": "o", "expert": "s", "compensation": "^", "NDP": "D"}
    colours = dict(zip(("attention", "expert", "compensation", "NDP"), ("tab:blue", "tab:orange", "tab:red",
                                                                        "tab:purple")))
    for i, n in enumerate(tokens):
        for p in operating_points(system, model, bits, group, rank, n, context):
            kind = p["op"].split()[0]
            ax = axes[1] if p["unit"] == "ndp" else axes[0]
            x, y = p["flops"] / p["bytes"], p["flops"] / p["seconds"]
            ax.scatter(x, y, marker=markers[kind], s=45, zorder=3, edgecolors=colours[kind],
                       facecolors="none" if "fp16" in p["op"] else colours[kind],
                       label=p["op"] if i == 0 else None)
            ax.annotate(f"{n} tok", (x, y), xytext=(4, -9), textcoords="offset points", fontsize=7)
    names = [f"{gpu.name} (GPU)"] + ([f"NDP unit ({system.name})"] if has_ndp else [])
    for ax, name in zip(axes, names):
        ax.set_xlabel("arithmetic intensity (FLOP/byte)")
        ax.set_ylabel("attainable performance (FLOP/s)")
        ax.set_title(f"{name}: {model.name}, decode, ctx {context}")
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig
