"""`moesim sweep SWEEP.yaml --out DIR [--confirm]`: run a parameter sweep resumably into one Parquet table;
with --confirm, every point on the analytic engine first, then the points that could be on a Pareto
front again on the DES (simulator.sweep.front).

The whole file is checked before anything runs or any directory is made: fields, names, the accuracy
section, and the number of points (at most --max-points, counted before generating them). One sweep at
a time writes to an output directory: a second one into the same --out refuses (simulator.sweep.store)."""

from __future__ import annotations

import argparse
import sys

from simulator.commands.run_flags import describe
from simulator.config.run import RunSpec
from simulator.errors import UserError
from simulator.sweep import expand, load_sweep, run_sweep
from simulator.sweep.executors import open_executor
from simulator.sweep.front import confirmation_pairs, confirmation_points
from simulator.sweep.spec import MAX_POINTS
from simulator.sweep.store import TABLE, lock_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid of simulation points (joined with accuracy) into Parquet",
                       description="Run every point of a sweep file; rerunning skips finished points.")
    p.add_argument("sweep", help="sweep YAML file (see sweeps/*.yaml)")
    p.add_argument("--out", required=True, help="output directory (resumable: rerun to continue)")
    p.add_argument("--scheduler", help="address of a Dask scheduler, tcp://HOST:PORT (default: local pool)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    p.add_argument("--engine", choices=describe(RunSpec.model_fields["engine"])["choices"],
                   help="override the engine of every point")
    p.add_argument("--confirm", action="store_true",
                   help="two passes: every point on the analytic engine, then the Pareto points on the DES")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="with --confirm: also confirm points within this relative throughput/bytes of a "
                        "front (default 0.01, the analytic engine's error bound with contention)")
    p.add_argument("--max-points", type=int, default=MAX_POINTS,
                   help=f"refuse a sweep of more points than this, counted before any runs ({MAX_POINTS})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_sweep(args.sweep)
    if args.workers is not None and args.workers < 1:
        raise UserError("expected a positive number of workers", field="--workers")
    if args.confirm and args.engine == "des":
        raise UserError("--confirm runs the first pass on the analytic engine; leave out --engine des",
                        field="--confirm")
    if not args.tolerance >= 0:
        raise UserError(f"expected a relative tolerance >= 0, got {args.tolerance}", field="--tolerance")
    if args.max_points < 1:
        raise UserError(f"expected a positive number of points, got {args.max_points}", field="--max-points")
    engine = "analytic" if args.confirm else args.engine
    points = expand(spec, source=args.sweep, overrides={"engine": engine} if engine else None,
                    max_points=args.max_points, check_names=True)
    with lock_output(args.out), open_executor(args.scheduler, args.workers) as executor:
        result = run_sweep(points, args.out, executor, progress=not args.no_progress)
        ran, confirmed = result.ran, []
        if args.confirm and not result.failed:
            confirmed = confirmation_points(points, result.table, args.tolerance)
            result = run_sweep(points + confirmed, args.out, executor, progress=not args.no_progress)
            ran += result.ran
    table = result.table
    invalid = int((table["status"] == "invalid").sum()) if len(table) else 0
    print(f"{spec.name}: {len(table)}/{len(points) + len(confirmed)} points ({ran} tasks run now, {invalid} "
          f"invalid) -> {args.out}/{TABLE}")
    if confirmed:
        diff = confirmation_pairs(table)["tokens_per_s_rel_diff"].abs()
        print(f"confirmed {len(confirmed)} points that could be on a Pareto front with the DES: analytic "
              f"tokens/s off by {diff.median():.2e} median, {diff.max():.2e} worst")
    for line in result.failed:
        print(f"failed: {line}", file=sys.stderr)
    if result.failed:
        print(f"{len(result.failed)} tasks failed; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0
