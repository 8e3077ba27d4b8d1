"""Engine cost per simulated event vs a bare SimPy process loop of the same event count (target <= 2x).

A simulated event is one thing that happens in the modelled machine: a GPU kernel, a copy, an NDP op or
an idle wait of the GPU stream (one EventLog record each, counted in a separate recording run). The
floor is a bare SimPy process that pays one timeout and appends one record per simulated event. Also
printed: SimPy events the engine processed (Environment.step calls, counted in another untimed run);
the engine needs far fewer of them than simulated events: kernels advance the stream's clock, and
without prefetch copies and NDP ops are timed when issued (one timeout per decode step). Best of
--repeat wall times, engine and floor measured alternately in one run.
Run: python benchmarks/engine_overhead.py [--tokens N] [--repeat R]
"""

from __future__ import annotations

import argparse

import simpy
from _common import bare_simpy, wall

from simulator.config.run import RunSpec
from simulator.des.engine import run
from simulator.simulate import build_scenario

POINTS = ({"policy": "ndp-lrc"},
          {"policy": "offload-lrc", "hwconfig": "h100-pcie5"},
          {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 8})


def simpy_steps(sc) -> int:
    """Environment.step calls of one run of `sc` (counted by a subclass; untimed)."""
    count = [0]

    class Counting(simpy.Environment):
        def step(self):
            count[0] += 1
            return super().step()

    from simulator.des import engine

    env_cls, engine.simpy.Environment = engine.simpy.Environment, Counting
    try:
        run(sc)
    finally:
        engine.simpy.Environment = env_cls
    return count[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for kw in POINTS:
        spec = RunSpec(tokens=args.tokens, **kw)
        sc = build_scenario(spec)
        events = len(run(sc, record_events=True).log)
        steps = simpy_steps(sc)
        t_engine = t_bare = float("inf")
        for _ in range(args.repeat):
            t_engine = min(t_engine, wall(run, sc)[0])
            t_bare = min(t_bare, wall(bare_simpy, events)[0])
        label = ", ".join(f"{k}={v}" for k, v in kw.items())
        print(f"{events:7d} simulated events ({steps:7d} SimPy steps)  engine {1e6 * t_engine / events:5.2f} us/event"
              f"  bare SimPy {1e6 * t_bare / events:4.2f} us/event  ratio {t_engine / t_bare:4.2f}x  [{label}]")


if __name__ == "__main__":
    main()
