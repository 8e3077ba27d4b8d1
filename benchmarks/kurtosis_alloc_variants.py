"""Rank-allocation rules side by side on the real MiniLM-MoE weights, at equal rank (= byte) budget.

Every rule splits the same total round(R x layers x experts) rank units; all use fp16 factors, so equal
total rank is equal factor bytes. Rules, fixed before measuring (none tuned on the metric):
    uniform           as equal as possible
    kurtosis          r_e ~ kurtosis_e (the documented default, alpha = 1)
    kurtosis^0.5      r_e ~ sqrt(kurtosis_e)
    log-kurtosis      r_e ~ ln(kurtosis_e)
    kurtosis cap 2R   r_e ~ kurtosis_e, but no expert above twice the average rank
    energy (oracle)   greedy on each expert's measured singular values (needs the SVDs)
Printed: mean relative MoE-layer output error at n = k (all selected experts restored; lower is better)
and end-to-end sentence-embedding cosine (higher is better), per (bits, R). Usage:
    python benchmarks/kurtosis_alloc_variants.py [--bits 2 3 4] [--budgets 8 16 32]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from simulator.accuracy.api import evaluate, open_source
from simulator.accuracy.pipeline import Settings, allocate, max_rank
from simulator.accuracy.ranks import allocate_kurtosis, allocate_uniform


def variants(kurt: np.ndarray, total: int, top: int, budget: float, energy: list[int]) -> dict[str, list[int]]:
    cap = min(top, int(2 * budget))
    return {"uniform": allocate_uniform(len(kurt), total, 0, top),
            "kurtosis": allocate_kurtosis(kurt, total, 0, top),
            "kurtosis^0.5": allocate_kurtosis(kurt, total, 0, top, alpha=0.5),
            "log-kurtosis": allocate_kurtosis(np.log(kurt), total, 0, top),
            "kurtosis cap 2R": allocate_kurtosis(kurt, total, 0, cap),
            "energy (oracle)": energy}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--budgets", type=float, nargs="+", default=[8, 16, 32])
    ap.add_argument("--group", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)  # small matrices: one thread is faster on a shared machine
    source = open_source("minilm")
    layers, experts = source.layers, source.layer(0).num_experts
    top_k = source.layer(0).top_k
    rows = []
    for bits in args.bits:
        for budget in args.budgets:
            s = Settings(bits=bits, group=args.group, rank_budget=budget, alloc="energy")
            energy, kurt = allocate(source, s)
            flat_k = np.array([k for row in kurt for k in row])
            total = round(budget * len(flat_k))
            rules = variants(flat_k, total, max_rank(source, s), budget, [r for row in energy for r in row])
            for name, ranks in rules.items():
                assert sum(ranks) == total
                plan = pd.DataFrame({"layer": np.repeat(np.arange(layers), experts),
                                     "expert": np.tile(np.arange(experts), layers), "rank": ranks,
                                     "bits": bits, "group": args.group})
                r = evaluate("minilm", bits=bits, group=args.group, rank_budget=budget, top_n=top_k, plan=plan)
                rows.append({"bits": bits, "R": budget, "rule": name, "max_rank": max(ranks),
                             "rel_output_error": r["rel_output_error"], "cosine": r["cosine"]})
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print("\nmean rel_output_error over the grid (and rank of each rule per point, 1 = best):")
        df["place"] = df.groupby(["bits", "R"])["rel_output_error"].rank()
        print(df.groupby("rule")[["rel_output_error", "cosine", "place"]].mean()
              .sort_values("rel_output_error").to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"\nkurtosis over experts at {args.bits[-1]} bits: min {flat_k.min():.2f}, median {np.median(flat_k):.2f}, "
          f"max {flat_k.max():.1f}")


if __name__ == "__main__":
    main()
