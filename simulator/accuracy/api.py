"""Library entry points: build a compensation plan, evaluate accuracy (used by the CLI and the sweep).

`evaluate(weights="minilm", bits=3, group=128, rank_budget=8, alloc="kurtosis", top_n=2, seed=0)` returns
one flat dict of metrics. Expensive parts (the MoEfied model and its reference activations, quantized
experts, SVD bases) are cached per process, so a sweep over ranks and n costs little after the first call.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from simulator.accuracy.pipeline import Settings, allocate, build_plan, layer_errors, mean, ranks_from_plan
from simulator.accuracy.restore import restore_forward, restored_weights
from simulator.errors import UserError


@lru_cache(maxsize=2)
def open_source(weights: str = "minilm"):
    """'minilm' (the shipped default) or a directory holding a Hugging Face MoE checkpoint."""
    if weights == "minilm":
        from simulator.accuracy.minilm import MiniLMSource

        return MiniLMSource()
    from simulator.accuracy.weights import HFCheckpoint

    return HFCheckpoint(Path(weights))


def compensate(weights: str, settings: Settings) -> tuple[pd.DataFrame, dict]:
    return build_plan(open_source(weights), settings)


def evaluate(weights: str = "minilm", bits: int = 3, group: int = 128, rank_budget: float = 0.0,
             alloc: str = "kurtosis", top_n: int = 0, seed: int = 0, plan: pd.DataFrame | None = None,
             plan_source: str = "plan", **options) -> dict:
    """Accuracy of the low-bit + compensated model at top-n restoration.

    Ranks come from `plan` when given (its bits and group must match), else from the allocation rule.
    Keys: rel_output_error (mean over MoE layers), layer_cosine, cosine (end to end: embedding cosine for
    minilm, NaN when unavailable), bytes_per_expert_mean (low-bit + factors), mean_rank, and the inputs.
    """
    source = open_source(weights)
    s = Settings(bits=bits, group=group, rank_budget=rank_budget, alloc=alloc, seed=seed, **options)
    top_k = source.layer(0).top_k
    if not 0 <= top_n <= top_k:
        raise UserError(f"must be in [0, {top_k}] (the model's top-k)", field="--top-n")
    if plan is not None:
        ranks = ranks_from_plan(plan, source, bits, group, plan_source)
    else:
        ranks, _ = allocate(source, s)
    from simulator.accuracy.pipeline import compensated_layer

    layers = layer_errors(source, s, ranks, top_n)
    bytes_total, count = 0.0, 0
    ffns = []
    for i in range(source.layers):
        qes, factors = compensated_layer(source, i, s, ranks[i])
        bytes_total += sum(qe.bytes_lowbit() + qe.bytes_factors(r) for qe, r in zip(qes, ranks[i]))
        count += len(qes)
        ffns.append(([qe.lowbit for qe in qes], [restored_weights(qe.lowbit, f) for qe, f in zip(qes, factors)]))
    cosine = float("nan")
    if hasattr(source, "end_to_end_cosine"):
        cosine = source.end_to_end_cosine(
            lambda i, x: restore_forward(source.layer(i), x, ffns[i][0], ffns[i][1], top_n))
    return {"weights": source.name, "bits": bits, "group": group, "rank_budget": rank_budget, "alloc": alloc,
            "top_n": top_n, "top_k": top_k, "seed": seed,
            "rel_output_error": mean(r["rel_output_error"] for r in layers),
            "layer_cosine": mean(r["cosine"] for r in layers), "cosine": cosine,
            "bytes_per_expert_mean": bytes_total / count,
            "mean_rank": sum(map(sum, ranks)) / count}


def rank_sweep(weights: str, bits_list: list[int], group: int, ranks: list[int], **options) -> pd.DataFrame:
    """Mean relative weight error ||E - U V^T||_F / ||W||_F over experts, at uniform rank r, per bits.

    Rows: bits, rank, err (rank 0 is the error before compensation).
    """
    from simulator.accuracy.pipeline import compensated_layer

    source = open_source(weights)
    rows = []
    for bits in bits_list:
        s = Settings(bits=bits, group=group, **options)
        for r in ranks:
            errs = []
            for i in range(source.layers):
                qes, factors = compensated_layer(source, i, s, [r] * source.layer(i).num_experts)
                errs += [qe.rel_error(f) for qe, f in zip(qes, factors)]
            rows.append({"bits": bits, "rank": r, "err": mean(errs)})
    return pd.DataFrame(rows)
