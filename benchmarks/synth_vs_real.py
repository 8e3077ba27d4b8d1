"""Real vs synthetic routing statistics, side by side, for every model with reference data.

Runs from a fresh clone: the real figures come from the shipped reference file
(simulator/data/routing-reference.json: ESFT traces for deepseek-v2-lite, allenai/OLMoE counts for
mixtral-8x7b and olmoe-1b-7b at layers 0/7/15, mbolt decode heat for qwen3-30b-a3b), the synthetic ones
from `synthesize` with the shipped parameters. Real figures are means over the reference workloads
(ESFT tasks, OLMoE domains); a dash means the reference has no such figure.

    python benchmarks/synth_vs_real.py [--tokens 8000] [--sequences 40] [--seed 0] [--models a,b]
"""

from __future__ import annotations

import argparse

import numpy as np

from simulator.config.model import load_model
from simulator.routing.calibrate import load_reference, reference_targets
from simulator.routing.stats import trace_stats
from simulator.routing.synthetic import synthesize

MODELS = ["deepseek-v2-lite", "mixtral-8x7b", "qwen3-30b-a3b", "olmoe-1b-7b"]
STATS = [("entropy", "entropy (bits)"), ("hottest_share", "hottest share"),
         ("consecutive_overlap", "consec. overlap")]


def rows_for(layer_index: list[int]) -> list[int]:
    """Positions in layer_index to print: all when few, else first, quartiles and last."""
    n = len(layer_index)
    return list(range(n)) if n <= 5 else sorted({0, n // 4, n // 2, 3 * n // 4, n - 1})


def compare(name: str, tokens: int, sequences: int, seed: int, reference: dict) -> str:
    model = load_model(name)
    entry = reference["models"][name]
    real = reference_targets(entry)
    synth = trace_stats(synthesize(model, tokens, seed, sequences))
    idx = real["layer_index"]
    out = [(f"== {name}: {model.moe_layers} MoE layers x {model.num_experts} experts, top-{model.top_k}; "
           f"chance overlap k/E = {model.top_k / model.num_experts:.3f}"),
           (f"   real: {entry['source']} ({len(entry['workloads'])} workload(s), "
           f"{sum(w['tokens'] for w in entry['workloads'].values())} tokens)"),
           f"   synthetic: {tokens} tokens, {sequences} sequences, seed {seed}",
           f"   {'layer':>5} " + " ".join(f"{label:>17}" for _, label in STATS),
           f"   {'':>5} " + " ".join(f"{'real':>8} {'synth':>8}" for _ in STATS)]

    def cell(key: str, pos: int | None) -> str:
        pick = (lambda v: v[pos]) if pos is not None else np.mean
        s = pick([synth[key][i] for i in idx])
        r = f"{pick(real[key]):8.3f}" if key in real else f"{'-':>8}"
        return f"{r} {s:8.3f}"

    for pos in rows_for(idx):
        out.append(f"   {idx[pos]:>5} " + " ".join(cell(key, pos) for key, _ in STATS))
    out.append(f"   {'mean':>5} " + " ".join(cell(key, None) for key, _ in STATS))
    fmt = " ".join(f"{v:.4f}" for v in synth["mean_scores"])
    if "mean_scores" in real:
        out.append("   mean score by rank, real:  " + " ".join(f"{v:.4f}" for v in real["mean_scores"]))
    out.append(f"   mean score by rank, synth: {fmt}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=8000)
    parser.add_argument("--sequences", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    reference = load_reference()
    for name in args.models.split(","):
        print(compare(name, args.tokens, args.sequences, args.seed, reference))
        print()


if __name__ == "__main__":
    main()
