"""Run a sweep's unfinished tasks on any concurrent.futures Executor and assemble its table.

Two kinds of task go to the executor: simulations (one per point) and accuracy measurements (one per
unique accuracy key). The parent process writes each result the moment it arrives (atomically, see
store.py) and the workers only compute, so the workers need no shared file system (a Dask cluster works
as well as a local process pool). A rerun submits only what has no file yet; a killed run therefore
loses nothing finished and repeats nothing finished. A point the simulator rejects (UserError) is a
finished task with status "invalid" and the reason; any other exception is reported and retried on
the next run. A task file that cannot be read back (corrupted) is recomputed, with one line on stderr
saying which. The output directory is locked for the duration (store.lock_output).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor, Future, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from simulator.errors import UserError
from simulator.sweep.accuracy import evaluate_accuracy
from simulator.sweep.spec import SweepPoint
from simulator.sweep.store import TABLE, Store, lock_output, write_json, write_parquet

PointFn = Callable[[dict[str, Any]], dict[str, Any]]      # RunSpec fields -> summary dict
AccuracyFn = Callable[[dict[str, Any]], dict[str, Any]]   # accuracy key -> metrics dict


def simulate_point(run: dict[str, Any]) -> dict[str, Any]:
    """The default point function: the engine's summary of one RunSpec (less its echo of the inputs)."""
    from simulator.config.run import RunSpec
    from simulator.simulate import simulate

    spec = RunSpec.model_validate(run)
    summary = simulate(spec)
    return {k: v for k, v in summary.items() if k != "spec" and k not in run}


def _guarded(fn: Callable[[dict], dict], arg: dict) -> tuple[str, Any]:
    """Run fn(arg) in a worker; a UserError comes back as data so the point is recorded as invalid."""
    try:
        return "ok", fn(arg)
    except UserError as exc:
        return "invalid", exc.render()


@dataclass
class SweepResult:
    table: pd.DataFrame
    ran: int = 0                                        # tasks run now (the rest were on disk)
    failed: list[str] = field(default_factory=list)     # "task: error" for tasks to retry


def _unfinished(points: list[SweepPoint], store: Store) -> tuple[dict[str, dict], list[SweepPoint]]:
    """The accuracy keys (by id) and points with no usable file; a corrupted file is reported on stderr
    and its task recomputed."""
    acc: dict[str, dict] = {}
    sim: list[SweepPoint] = []
    checked: set[str] = set()
    for p in points:
        if p.accuracy_id and p.accuracy_id not in checked:
            checked.add(p.accuracy_id)
            rec, why = store.load_accuracy(p.accuracy_id)
            if rec is None:
                acc[p.accuracy_id] = p.accuracy
            if why:
                print(f"sweep: {store.accuracy_path(p.accuracy_id)}: {why}; recomputing this accuracy "
                      "measurement", file=sys.stderr)
        rec, why = store.load_point(p.id)
        if rec is None:
            sim.append(p)
        if why:
            print(f"sweep: {store.point_path(p.id)}: {why}; recomputing point {p.index}", file=sys.stderr)
    return acc, sim


def run_sweep(points: list[SweepPoint], out: str | Path, executor: Executor, *,
              point_fn: PointFn = simulate_point, accuracy_fn: AccuracyFn = evaluate_accuracy,
              progress: bool = True) -> SweepResult:
    """Run every unfinished task of `points`, write OUT/results.parquet, return the table. Holds OUT's
    lock throughout: another sweep writing there is a UserError."""
    with lock_output(out):
        return _run(points, Store(out), executor, point_fn, accuracy_fn, progress)


def _run(points: list[SweepPoint], store: Store, executor: Executor, point_fn: PointFn,
         accuracy_fn: AccuracyFn, progress: bool) -> SweepResult:
    """run_sweep's body, under the lock."""
    todo_acc, todo_sim = _unfinished(points, store)
    futures: dict[Future, tuple[str, Any]] = {}
    result = SweepResult(table=pd.DataFrame())
    bar = tqdm(total=len(todo_acc) + len(todo_sim), desc="sweep", unit="task", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        for aid, key in sorted(todo_acc.items()):   # accuracy first: fewer, longer tasks
            futures[executor.submit(_guarded, accuracy_fn, key)] = ("accuracy", (aid, key))
        for p in todo_sim:
            futures[executor.submit(_guarded, point_fn, p.run.model_dump())] = ("point", p)
        for fut in as_completed(futures):
            kind, what = futures.pop(fut)
            try:
                status, value = fut.result()
            except BrokenExecutor:
                raise  # the workers are gone: stop; what finished is on disk
            except Exception as exc:  # noqa: BLE001 -- a bug in one point: report it, retry on the next run
                name = what.id if kind == "point" else what[0]
                result.failed.append(f"{kind} {name}: {exc.__class__.__name__}: {exc}")
                continue
            finally:
                bar.update()
            if kind == "point":
                rec = {"run": what.run.model_dump(), "status": status}
                rec.update({"summary": value} if status == "ok" else {"reason": value})
                write_json(store.point_path(what.id), rec)
            else:
                aid, key = what
                rec = {"key": key, "status": status}
                rec.update({"result": value} if status == "ok" else {"reason": value})
                write_json(store.accuracy_path(aid), rec)
            result.ran += 1
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    finally:
        bar.close()
    result.table = store.table(points)
    write_parquet(store.out / TABLE, result.table)
    return result
