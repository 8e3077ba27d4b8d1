"""Engine cost per simulated event vs a bare SimPy process loop of the same event count (target <= 2x).

Events = SimPy events the engine processed (counted by wrapping Environment.step). Prints both costs
per event and their ratio, measured side by side in one run.
Run: python benchmarks/engine_overhead.py [--tokens N]
"""

from __future__ import annotations

import argparse

import simpy
from _common import bare_simpy, wall

from simulator.config.run import RunSpec
from simulator.engine import run
from simulator.simulate import build_scenario


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    for kw in ({"policy": "ndp-lrc"}, {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 8}):
        spec = RunSpec(tokens=args.tokens, **kw)
        count = [0]
        step = simpy.Environment.step

        def counting(env, _step=step, _count=count):
            _count[0] += 1
            return _step(env)

        simpy.Environment.step = counting
        try:
            sc = build_scenario(spec)
            t_engine, _ = wall(run, sc)
        finally:
            simpy.Environment.step = step
        t_bare, _ = wall(bare_simpy, count[0])
        print(f"{spec.policy:12s} {count[0]:8d} events  engine {1e6 * t_engine / count[0]:6.2f} us/event  "
              f"bare SimPy {1e6 * t_bare / count[0]:5.2f} us/event  ratio {t_engine / t_bare:4.2f}x")


if __name__ == "__main__":
    main()
