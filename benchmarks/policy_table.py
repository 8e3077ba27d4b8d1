"""Print a markdown table of all eight policies on the GPU-NDP and H100-PCIe5 configs.

DeepSeek-V2-Lite runs on the real ESFT intent trace, Mixtral-8x7B on a synthetic trace; batch 1, 4-bit
experts, top-n 2 (DeepSeek, k = 6) or 1 (Mixtral, k = 2), rank 32, default (derived) GPU cache. A second table checks plausibility against the
published naive-offload figure (Mixtral-8x7B fp16 over PCIe 4.0 at batch 1 with a small cache: about
0.5-1 token/s). Usage: python benchmarks/policy_table.py [--tokens N]
"""

from __future__ import annotations

import argparse

from simulator.config.run import RunSpec
from simulator.errors import UserError
from simulator.policies.registry import POLICIES
from simulator.scenario import CATEGORIES
from simulator.simulate import simulate

MODELS = {"deepseek-v2-lite": {"trace": "traces/esft-intent", "top_n": 2},
          "mixtral-8x7b": {"trace": None, "synthetic_tokens": 2048, "top_n": 1}}  # top-n < k = 2


def row(label: str, spec: RunSpec) -> str:
    try:
        s = simulate(spec)
    except UserError as exc:
        return f"| {label} | n/a: {exc.detail} |" + " |" * (3 + len(CATEGORIES))
    hit = "-" if s["cache_hit_rate"] is None else f"{s['cache_hit_rate']:.0%}"
    cats = " | ".join(f"{s['breakdown_ms_per_token'][c]:.3f}" for c in CATEGORIES)
    return f"| {label} | {s['tokens_per_s']:.1f} | {s['bytes_per_token'] / 1e6:.1f} | {hit} | {cats} |"


def header(first: str) -> list[str]:
    cols = ["tokens/s", "MB/token", "cache hit", *(f"{c} ms" for c in CATEGORIES)]
    return [f"| {first} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128, help="decode steps per run (128)")
    tokens = ap.parse_args().tokens
    for hw in ("h100-cxl-ndp", "h100-pcie5"):
        for model, source in MODELS.items():
            print(f"\n### {hw}, {model}\n")
            print("\n".join(header("policy")))
            for policy in POLICIES:
                print(row(policy, RunSpec(hwconfig=hw, model=model, policy=policy, tokens=tokens, **source)))
    print("\n### Plausibility: Mixtral-8x7B, naive fp16 offload, batch 1 (published: ~0.5-1 token/s)\n")
    print("\n".join(header("config")))
    for hw in ("a100-pcie4", "rtx4090-pcie4", "h100-pcie5"):
        for per_layer in (0, 2):
            spec = RunSpec(hwconfig=hw, model="mixtral-8x7b", policy="offload-fp16", tokens=tokens,
                           cache_experts_per_layer=per_layer, **MODELS["mixtral-8x7b"])
            print(row(f"{hw}, cache {per_layer} experts/layer", spec))


if __name__ == "__main__":
    main()
