"""`moesim sweep SWEEP.yaml --out DIR`: run a parameter sweep resumably into one Parquet table."""

from __future__ import annotations

import argparse
import sys

from simulator.errors import UserError
from simulator.sweep import expand, load_sweep, run_sweep
from simulator.sweep.executors import open_executor
from simulator.sweep.store import TABLE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid of simulation points (joined with accuracy) into Parquet",
                       description="Run every point of a sweep file; rerunning skips finished points.")
    p.add_argument("sweep", help="sweep YAML file (see sweeps/*.yaml)")
    p.add_argument("--out", required=True, help="output directory (resumable: rerun to continue)")
    p.add_argument("--scheduler", help="address of a Dask scheduler, tcp://HOST:PORT (default: local pool)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    p.add_argument("--engine", choices=["des", "analytic"], help="override the engine of every point")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_sweep(args.sweep)
    if args.workers is not None and args.workers < 1:
        raise UserError("expected a positive number of workers", field="--workers")
    points = expand(spec, source=args.sweep, overrides={"engine": args.engine} if args.engine else None)
    with open_executor(args.scheduler, args.workers) as executor:
        result = run_sweep(points, args.out, executor, progress=not args.no_progress)
    table = result.table
    invalid = int((table["status"] == "invalid").sum()) if len(table) else 0
    print(f"{spec.name}: {len(table)}/{len(points)} points ({result.ran} tasks run now, {invalid} invalid) "
          f"-> {args.out}/{TABLE}")
    for line in result.failed:
        print(f"failed: {line}", file=sys.stderr)
    if result.failed:
        print(f"{len(result.failed)} tasks failed; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0
