"""The analytic fast path vs the DES on the same points: wall time, speedup (target >= 50x) and the
difference in simulated tokens/s, measured side by side in one run (best of --repeat runs each, on a
fresh scenario each time). The analytic path's compiled kernel is loaded (or, on a fresh clone,
compiled) once per process: a tiny run of each engine first pays that, and its time is printed apart.
Run: python benchmarks/analytic_speedup.py [--tokens N] [--repeat R]
"""

from __future__ import annotations

import argparse
import time

from simulator.config.run import RunSpec
from simulator.des import engine
from simulator.fast import engine as analytic
from simulator.metrics import summarize
from simulator.simulate import build_scenario

POINTS = [
    {"policy": "ndp-lrc"},
    {"policy": "ndp-lrc", "batch": 8},
    {"policy": "offload-lrc", "hwconfig": "h100-pcie5"},
    {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 8},
    {"policy": "offload-lowbit", "hwconfig": "t4-pcie3", "model": "mixtral-8x7b", "trace": None,
     "synthetic_tokens": 2048, "bits": 2, "group": 32, "attention_bits": 4, "cache_experts_per_layer": 4},
    {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 8, "prefetch": True,
     "prefetch_hit_rate": 0.8},
]


def best_of(run, spec: RunSpec, repeat: int):
    """(best wall seconds of `run` over `repeat` fresh scenarios of `spec`, the last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        sc = build_scenario(spec)
        t0 = time.perf_counter()
        result = run(sc)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for name, run in (("DES", engine.run), ("analytic", analytic.run)):
        print(f"{name} once per process (imports, compiled kernel load): {best_of(run, RunSpec(tokens=4), 1)[0]:.2f} s")
    for kw in POINTS:
        spec = RunSpec(**{"tokens": args.tokens, **kw})
        t_des, des = best_of(engine.run, spec, args.repeat)
        t_ana, ana = best_of(analytic.run, spec, args.repeat)
        d, a = summarize(des), summarize(ana)
        label = ", ".join(f"{k}={v}" for k, v in kw.items() if k not in ("trace", "bits", "group", "attention_bits"))
        print(f"DES {t_des:7.2f} s  analytic {t_ana:6.3f} s  speedup {t_des / t_ana:6.1f}x  "
              f"tok/s diff {a['tokens_per_s'] / d['tokens_per_s'] - 1:+.2e}  [{label}]")


if __name__ == "__main__":
    main()
