"""Shared helpers for the benchmark scripts: timing and a bare SimPy event loop as the floor."""

from __future__ import annotations

import time

import simpy


def wall(fn, *args, repeat: int = 1, **kwargs):
    """(best wall seconds over `repeat` runs, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, result


def bare_simpy(events: int) -> int:
    """A bare SimPy process loop: one process, `events` timeouts, each appending a plain record (what the
    engine does per op at the very least). Returns the events SimPy processed."""
    env = simpy.Environment()
    log: list[tuple] = []

    def loop():
        for i in range(events):
            start = env.now
            yield env.timeout(1e-6)
            log.append(("op", start, env.now, i))

    env.process(loop())
    env.run()
    return len(log)
