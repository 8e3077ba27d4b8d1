"""Sweep throughput (points per minute) for the shipped sweeps (sweeps/*.yaml), DES vs analytic, on a
process pool: every point is simulated without the accuracy join, results discarded. The pool's workers
start (imports, the analytic kernel's load) before the clock does: each first runs one point untimed.
Run: python benchmarks/sweep_throughput.py [--workers N] [--limit N]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from simulator.errors import UserError
from simulator.sweep import expand, load_sweep, simulate_point

ROOT = Path(__file__).resolve().parents[1]


def point(run: dict) -> bool:
    """Simulate one point; False when the spec is invalid (e.g. experts that do not fit)."""
    try:
        simulate_point(run)
    except UserError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N points of each sweep")
    args = ap.parse_args()
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        points = expand(load_sweep(path), path)[: args.limit]
        runs = [dict(p.run) for p in points]
        for eng in ("des", "analytic"):
            with ProcessPoolExecutor(args.workers) as pool:
                list(pool.map(point, [{**runs[0], "engine": eng}] * args.workers * 2))  # warm every worker
                t = time.perf_counter()
                ok = sum(pool.map(point, [{**r, "engine": eng} for r in runs]))
                dt = time.perf_counter() - t
            print(f"{path.name:16s} {eng:8s} {len(runs):4d} points ({len(runs) - ok} invalid)  {dt:7.1f} s  "
                  f"{60 * len(runs) / dt:7.1f} points/min")


if __name__ == "__main__":
    main()
