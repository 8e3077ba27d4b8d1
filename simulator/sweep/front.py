"""Pareto fronts of a sweep table, and the two-pass sweep that confirms them with the DES.

A sweep can run every point on the analytic engine (fast; exact where nothing contends, within ~1% with
prefetch) and re-run only the points that could be on a front with the DES. A front is taken per
(hwconfig, model) over the objective pairs that matter to the trade-off:

    with accuracy:     (tokens/s up, error down) and (link bytes/token down, error down)
    without accuracy:  (tokens/s up, link bytes/token down)

Reference policies (those that declare `reference`, e.g. every expert in HBM: no bytes moved) would
dominate every offloading point, so fronts are taken over the other policies and reference rows are
confirmed as well.
"Could be on a front" allows for the analytic engine's error: a point is kept unless another point beats
its engine-dependent objective (tokens/s or bytes/token) by more than a relative `tolerance` while being
at least as good in the other objective. Accuracy does not depend on the engine, so it gets no slack.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.config.run import RunSpec
from simulator.policies.registry import declared
from simulator.sweep.spec import SweepPoint
from simulator.sweep.store import stable_id

ERROR = "accuracy.rel_output_error"
THROUGHPUT, BYTES = "tokens_per_s", "bytes_per_token"


def is_reference(policies: pd.Series) -> pd.Series:
    """True where the row's policy declares itself a reference point (unregistered names: False)."""
    return policies.map(lambda name: declared(name).reference).astype(bool)


def pareto_mask(x: np.ndarray, y: np.ndarray, maximize_x: bool = False) -> np.ndarray:
    """True where no other point is at least as good in both (x low or high, y low) and better in one."""
    x = -np.asarray(x, float) if maximize_x else np.asarray(x, float)
    y = np.asarray(y, float)
    order = np.lexsort((y, x))             # by x, then y
    mask = np.zeros(len(x), bool)
    best = np.inf
    for i in order:
        if y[i] < best:
            mask[i], best = True, y[i]
    return mask


def near_front_mask(x: np.ndarray, y: np.ndarray, tolerance: float, maximize_x: bool = False) -> np.ndarray:
    """True where point i is on the front once its x is improved by the relative `tolerance` (x >= 0):
    no point has x better than that by any amount at a y no worse, or x at least as good at a lower y.
    With tolerance 0 this is the front with ties kept; it always contains pareto_mask(x, y)."""
    x, y = np.asarray(x, float), np.asarray(y, float)                # [n] each
    if maximize_x:
        xi, xj = -x * (1 + tolerance), -x                            # lower is better from here on
    else:
        xi, xj = x * (1 - tolerance), x
    better_x = xj[None, :] < xi[:, None]                             # [n, n]: j's x beats i's improved x
    same_x = xj[None, :] <= xi[:, None]
    dominated = (better_x & (y[None, :] <= y[:, None])) | (same_x & (y[None, :] < y[:, None]))
    return ~dominated.any(axis=1)


def _pairs(group: pd.DataFrame) -> list[tuple[str, str, bool]]:
    """(x column, y column, maximize x) of the fronts of one (hwconfig, model) group."""
    if ERROR in group and group[ERROR].notna().any():
        return [(THROUGHPUT, ERROR, True), (BYTES, ERROR, False)]
    return [(THROUGHPUT, BYTES, True)]


def front_rows(table: pd.DataFrame, tolerance: float) -> pd.Series:
    """Boolean Series over `table`'s index: finished rows that could be on a front (module docstring)."""
    ok = table["status"] == "ok"
    reference = is_reference(table["policy"])
    keep = ok & reference
    for _, group in table[ok & ~reference].groupby(["hwconfig", "model"], sort=False, dropna=False):
        for x, y, maximize in _pairs(group):
            g = group[group[x].notna() & group[y].notna()]
            if len(g):
                tol_x = tolerance if x in (THROUGHPUT, BYTES) else 0.0
                near = near_front_mask(g[x].to_numpy(), g[y].to_numpy(), tol_x, maximize)
                keep[g.index[near]] = True
    return keep


def _run_key(table: pd.DataFrame) -> pd.Series:
    """One string per row from every RunSpec field but the engine: equal keys = the same point."""
    fields = [f for f in RunSpec.model_fields if f != "engine" and f in table]
    return pd.Series(["|".join(map(str, row)) for row in table[fields].itertuples(index=False)],
                     index=table.index, dtype=object)


def prefer_des(table: pd.DataFrame) -> pd.DataFrame:
    """The table with each analytic row that a DES row confirms (same point, engine des) left out."""
    if "engine" not in table or table["engine"].nunique() < 2:
        return table
    key = _run_key(table)
    des = (table["engine"] == "des") & (table["status"] == "ok")
    return table[~((table["engine"] == "analytic") & key.isin(set(key[des])))]


def confirmation_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """Analytic rows joined with the DES rows confirming them: point, policy, both tokens/s and bytes/token
    and the relative tokens/s difference (analytic / DES - 1)."""
    key = _run_key(table)
    ok = table["status"] == "ok"
    cols = ["point", "policy", THROUGHPUT, BYTES]
    ana = table.loc[ok & (table["engine"] == "analytic"), cols].assign(key=key)
    des = table.loc[ok & (table["engine"] == "des"), [THROUGHPUT, BYTES]].assign(key=key)
    both = ana.merge(des, on="key", suffixes=("_analytic", "_des")).drop(columns="key")
    both["tokens_per_s_rel_diff"] = both[f"{THROUGHPUT}_analytic"] / both[f"{THROUGHPUT}_des"] - 1
    return both


def confirmation_points(points: list[SweepPoint], table: pd.DataFrame, tolerance: float) -> list[SweepPoint]:
    """DES twins of the analytic points of `table` that could be on a front (`points` are the sweep's
    points, `table` their results); they take indices after the sweep's own."""
    rows = table[front_rows(table, tolerance) & (table["engine"] == "analytic")]
    out = []
    for index in rows["point"].tolist():
        p = points[int(index)]
        run = p.run.model_copy(update={"engine": "des"})
        out.append(SweepPoint(len(points) + len(out), run, stable_id(run.model_dump()), p.accuracy, p.accuracy_id))
    return out
