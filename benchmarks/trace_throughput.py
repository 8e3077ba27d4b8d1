"""Simulated decode tokens per wall second on each shipped real trace (traces/esft-*), for ndp-lrc and
offload-lrc, with the DES and the analytic fast path side by side (and their agreement).
The analytic path's compiled kernel is loaded once per process before timing (printed apart).
Run: python benchmarks/trace_throughput.py [--tokens N]   (default: the whole trace)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import wall

from simulator.config.run import RunSpec
from simulator.des import engine
from simulator.fast import engine as analytic
from simulator.metrics import summarize
from simulator.simulate import build_scenario

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=None)
    args = ap.parse_args()
    print(f"analytic once per process (compiled kernel load): {wall(analytic.run, build_scenario(RunSpec(tokens=4)))[0]:.2f} s")
    print(f"{'trace':18s} {'policy':12s} {'DES tok/wall-s':>15s} {'analytic tok/wall-s':>20s} {'speedup':>8s} {'tps diff':>9s}")
    for trace in sorted((ROOT / "traces").glob("esft-*")):
        for kw in ({"policy": "ndp-lrc"}, {"policy": "offload-lrc", "hwconfig": "h100-pcie5"}):
            spec = RunSpec(trace=str(trace), tokens=args.tokens, **kw)
            t_des, des = wall(engine.run, build_scenario(spec))
            t_ana, ana = wall(analytic.run, build_scenario(spec))
            d, a = summarize(des), summarize(ana)
            print(f"{trace.name:18s} {spec.policy:12s} {d['tokens'] / t_des:15.0f} {a['tokens'] / t_ana:20.0f} "
                  f"{t_des / t_ana:7.1f}x {a['tokens_per_s'] / d['tokens_per_s'] - 1:+9.2e}")


if __name__ == "__main__":
    main()
