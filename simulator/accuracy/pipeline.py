"""From weights to a compensation plan and to error metrics, one MoE layer at a time.

A source provides `name`, `layers` (number of MoE layers), `layer(i) -> MoELayer`, `describe()` (plan
metadata) and `activations(i) -> x [T, hidden] | None` (the reference input of MoE layer i on real text).
Small sources (the shipped default) set `cacheable` so quantized experts and SVD bases are reused
across calls in one process; checkpoints are read layer by layer and nothing is kept.

Rank budget R: the average rank per routed expert, over all MoE layers. The total, round(R * L * E)
units, is split over experts by the allocation rule; an expert's rank applies to each of its matrices.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import pandas as pd
import torch

from simulator.accuracy import ranks as alloc_rules
from simulator.accuracy.compress import (
    QuantizedExpert,
    energy_gains,
    expert_bases,
    expert_input_rms,
    quantize_expert,
)
from simulator.accuracy.lowrank import FactorDtype, Method
from simulator.accuracy.restore import restore_forward
from simulator.formats import DEFAULT_FORMAT

Alloc = Literal["kurtosis", "uniform", "energy"]


@dataclass(frozen=True)
class Settings:
    bits: int
    group: int = 128
    rank_budget: float = 0.0          # average rank per expert (see module docstring)
    alloc: Alloc = "kurtosis"
    alpha: float = 1.0                # kurtosis rule exponent
    min_rank: int = 0
    max_rank: int | None = None       # default: the smallest dimension of the expert's matrices
    hqq: bool = False
    act_aware: bool = False
    method: Method = "exact"
    factor_dtype: FactorDtype = "fp16"
    seed: int = 0


def _cached(source, key, make):
    if not getattr(source, "cacheable", False):
        return make()
    cache = source.__dict__.setdefault("_cache", {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


def quantized_layer(source, i: int, s: Settings) -> list[QuantizedExpert]:
    layer = source.layer(i)
    return _cached(source, ("q", i, s.bits, s.group, s.hqq),
                   lambda: [quantize_expert(m, s.bits, s.group, s.hqq) for m in layer.experts])


def _bases(source, i: int, s: Settings, keep: int):
    def make():
        layer = source.layer(i)
        qes = quantized_layer(source, i, s)
        x = source.activations(i) if s.act_aware else None
        rms = expert_input_rms(layer, x) if x is not None else [None] * len(qes)
        return [expert_bases(qe, keep, s.method, s.seed, r) for qe, r in zip(qes, rms)]
    return _cached(source, ("b", i, s.bits, s.group, s.hqq, s.act_aware, s.method, s.seed, keep), make)


def max_rank(source, s: Settings) -> int:
    layer = source.layer(0)
    smallest = min(min(w.shape) for w in layer.experts[0].values())
    return smallest if s.max_rank is None else min(s.max_rank, smallest)


def allocate(source, s: Settings) -> tuple[list[list[int]], list[list[float]]]:
    """Ranks [layer][expert] under the budget, and kurtosis [layer][expert]."""
    top = max_rank(source, s)
    kurt = [[qe.kurtosis for qe in quantized_layer(source, i, s)] for i in range(source.layers)]
    n = sum(len(k) for k in kurt)
    total = round(s.rank_budget * n)
    try:
        if s.alloc == "uniform":
            flat = alloc_rules.allocate_uniform(n, total, s.min_rank, top)
        elif s.alloc == "kurtosis":
            flat = alloc_rules.allocate_kurtosis([k for row in kurt for k in row], total, s.min_rank, top, s.alpha)
        elif s.alloc == "energy":
            gains = [energy_gains(qe, b).numpy() for i in range(source.layers)
                     for qe, b in zip(quantized_layer(source, i, s), _bases(source, i, s, top))]
            flat = alloc_rules.allocate_energy(gains, total, s.min_rank, top)
        else:
            raise ValueError(f"unknown allocation rule {s.alloc!r}")
    except ValueError as exc:
        from simulator.errors import UserError
        raise UserError(str(exc), field="--rank-budget") from None
    out, pos = [], 0
    for row in kurt:
        out.append(flat[pos:pos + len(row)])
        pos += len(row)
    return out, kurt


def compensated_layer(source, i: int, s: Settings, layer_ranks: list[int]):
    """(quantized experts, factors per expert {matrix: (U, V)}) for MoE layer i at the given ranks."""
    qes = quantized_layer(source, i, s)
    keep = max_rank(source, s) if getattr(source, "cacheable", False) else max(layer_ranks, default=0)
    bases = _bases(source, i, s, keep)
    factors = [{name: b.factors(r, s.factor_dtype) for name, b in bs.items()} for bs, r in zip(bases, layer_ranks)]
    return qes, factors


def build_plan(source, s: Settings) -> tuple[pd.DataFrame, dict]:
    """One row per (MoE layer, expert); see simulator.accuracy.plan for the columns."""
    ranks, kurt = allocate(source, s)
    rows = []
    for i in range(source.layers):
        qes, factors = compensated_layer(source, i, s, ranks[i])
        for e, (qe, f) in enumerate(zip(qes, factors)):
            rows.append({"layer": i, "expert": e, "bits": s.bits, "group": s.group, "rank": ranks[i][e],
                         "kurtosis": kurt[i][e], "bytes_lowbit": qe.bytes_lowbit(),
                         "bytes_factors": qe.bytes_factors(ranks[i][e], s.factor_dtype),
                         "err_before": qe.rel_error(), "err_after": qe.rel_error(f)})
    # bytes_lowbit are the project's own layout (what simulator.accuracy.quantize stores): a run with the plan
    # simulates that format (simulator.simulate.with_plan_format checks it)
    meta = {**source.describe(), **{k: v for k, v in asdict(s).items()}, "weight_format": DEFAULT_FORMAT}
    return pd.DataFrame(rows), meta


def ranks_from_plan(df: pd.DataFrame, source, bits: int, group: int, src: str) -> list[list[int]]:
    """Ranks [layer][expert] from a plan, checked against the source's shape and the requested bits."""
    from simulator.errors import UserError

    layer0 = source.layer(0)
    if int(df["layer"].max()) + 1 != source.layers or int(df["expert"].max()) + 1 != layer0.num_experts \
            or len(df) != source.layers * layer0.num_experts:
        raise UserError(f"plan covers {df['layer'].nunique()} layers x {df['expert'].nunique()} experts but "
                        f"{source.name} has {source.layers} x {layer0.num_experts}", source=src, field="layer")
    for col, want in (("bits", bits), ("group", group)):
        if set(df[col].unique()) != {want}:
            raise UserError(f"plan has {col}={sorted(df[col].unique())} but {want} was requested",
                            source=src, field=col)
    grid = df.pivot(index="layer", columns="expert", values="rank").sort_index()
    return [[int(r) for r in row] for row in grid.to_numpy()]


def layer_error(layer, x: torch.Tensor, lowbit: list[dict], restored: list[dict], top_n: int) -> dict:
    """One MoE layer on its reference input x [T, hidden]: ||y - y_ref|| / ||y_ref|| and mean token cosine."""
    y_ref = layer.forward(x)
    y = restore_forward(layer, x, lowbit, restored, top_n)
    cos = torch.nn.functional.cosine_similarity(y, y_ref, dim=-1).mean()
    return {"layer": layer.index, "rel_output_error": float((y - y_ref).norm() / y_ref.norm()), "cosine": float(cos)}


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan
