"""Arrival processes and request lengths: a real trace's own times (optionally rescaled to a target rate),
or Poisson / Gamma arrivals at a rate; lengths from a workload's empirical distribution or fixed.

- trace: the workload's arrivals; with a target rate R every time is multiplied by (its rate / R), so the
  inter-arrival times keep their shape (burstiness: coefficient of variation) and only the scale changes.
- poisson: exponential inter-arrival times with mean 1/R (CV 1).
- gamma: Gamma inter-arrival times with mean 1/R and coefficient of variation `cv` (shape 1/cv^2; cv > 1
  is burstier than Poisson, cv = 1 is Poisson).
Generated requests take (prompt, output) pairs drawn with replacement from the workload's rows (the pair
kept together: long prompts and long answers stay correlated as in the trace), or fixed lengths.
A window [start, start + duration) of arrivals is served; its times are shifted to start at 0.
All draws come from numpy's default_rng(seed): the same seed gives the same requests.
"""

from __future__ import annotations

import numpy as np

from simulator.errors import UserError
from simulator.workloads.table import Workload

ARRIVALS = ("trace", "poisson", "gamma")


def arrival_times(kind: str, rate: float | None, duration: float, rng: np.random.Generator, cv: float = 1.0,
                  trace: Workload | None = None) -> np.ndarray:
    """Arrival times [N] in [0, duration): of `trace` (rescaled to `rate` when given) or generated."""
    if kind == "trace":
        times = trace.arrival_s - trace.arrival_s[0]
        if rate is not None:
            times = times * (trace.rate / rate)
        return times[times < duration]
    if rate is None:
        raise UserError(f"{kind} arrivals need a rate", field="rate")
    mean = 1.0 / rate
    shape = 1.0 / (cv * cv) if kind == "gamma" else 1.0
    chunk = max(16, int(duration * rate * 1.2) + 16)
    gaps: list[np.ndarray] = []
    total = 0.0
    while total < duration:  # draw in chunks until past the window: the draws do not depend on the chunking
        g = rng.gamma(shape, mean / shape, chunk) if kind == "gamma" else rng.exponential(mean, chunk)
        gaps.append(g)
        total += float(g.sum())
    times = np.cumsum(np.concatenate(gaps)) - np.concatenate(gaps)[0]  # the first request at 0
    times = times[times < duration]
    bad = np.flatnonzero(np.diff(times) <= 0)
    for i in range(int(bad[0]) + 1 if len(bad) else len(times), len(times)):  # gaps below the float resolution
        times[i] = max(times[i], np.nextafter(times[i - 1], np.inf))  # (bursty gamma): the next instant
    return times


def make_workload(base: Workload, *, kind: str = "trace", rate: float | None = None, duration: float,
                  start: float = 0.0, cv: float = 1.0, prompt: int | None = None, output: int | None = None,
                  seed: int = 0) -> Workload:
    """The requests of one serving run: arrivals of `kind` within [start, start + duration) (shifted to 0),
    lengths from `base` (its own rows for trace arrivals, drawn for generated ones) unless fixed."""
    if kind not in ARRIVALS:
        raise UserError(f"unknown arrival process {kind!r}; expected one of {', '.join(ARRIVALS)}", field="arrivals")
    if rate is not None and not rate > 0:
        raise UserError(f"rate {rate!r}: expected requests per second > 0", field="rate")
    if not duration > 0:
        raise UserError(f"duration {duration!r}: expected seconds > 0", field="duration")
    rng = np.random.default_rng(seed)
    times = arrival_times(kind, rate, start + duration, rng, cv, base)
    keep = times >= start
    if kind == "trace":
        idx = np.flatnonzero(np.r_[keep, np.zeros(len(base) - len(times), dtype=bool)])
        p, o = base.prompt[idx], base.output[idx]
    else:
        pick = rng.integers(0, len(base), int(keep.sum()))
        p, o = base.prompt[pick], base.output[pick]
    times = times[keep] - start
    if not len(times):
        raise UserError(f"no request arrives within [{start:g}, {start + duration:g}) s of {base.source} "
                        f"({kind} arrivals)", field="duration")
    if prompt is not None:
        p = np.full(len(times), prompt, dtype=np.int64)
    if output is not None:
        o = np.full(len(times), output, dtype=np.int64)
    label = base.source if kind == "trace" else f"{kind}({base.source})"
    return Workload(times.astype(np.float64), p.astype(np.int64), o.astype(np.int64), label)
