"""Step timers: how long each planned serving step takes, on one clock shared with the arrivals.

A timer runs a Plan's steps in order from its clock (`now`) and stops before the first step that would
start at or after `until` (the next arrival: that step would have been composed with the new request),
never before the first. `run(plan, until) -> (k, start [k], end [k])` for the k steps it kept; `advance(t)`
idles to t. Three timers:

- FixedCostTimer: step seconds from a function of (decode tokens, prefill tokens): hand-computable tests.
- AnalyticTimer: the compiled fast path (simulator.fast.engine.AnalyticEngine), a chunk of steps per
  kernel call. Its steps are planned ahead of the next arrival; when one would start after it, the
  engine's state is put back to the chunk's start (a deep copy taken before the chunk: cache, copies on
  the links, clock, counters, random stream) and only the steps before it are run again, so the result is
  the one of timing step by step.
- DESTimer: the SimPy DES (simulator.des.engine.DecodeEngine), one step at a time: the reference.
Both engine timers read the same placement table (simulator.placement) for steps of up to `most` tokens
and hand the engine the chunk's tokens as a trace view (simulator.serving.routing.StepTokens), so a
serving step is timed by exactly the code that times a decode step; their per-step rows are the engines'
(simulator.scenario.STEP_COLUMNS and link byte columns).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import numpy as np

from simulator.placement import PlacementTable
from simulator.scenario import Scenario
from simulator.serving.routing import RequestRouting
from simulator.serving.scheduler import Plan

# Rows the placement table may hold before it starts afresh: a table for steps of hundreds of tokens has a
# code per (expert, tokens, restored) met, stored sparse and grown by copying, so its cost per new code
# grows with its size; starting afresh (the same rows are remade when met again) bounds it.
TABLE_ROWS_CAP = 1 << 16


def _cut(start: np.ndarray, until: float) -> int:
    """Steps kept: those before the first (after the first) that starts at or after `until`."""
    late = np.flatnonzero(start[1:] >= until)
    return int(late[0]) + 1 if len(late) else len(start)


class FixedCostTimer:
    """Each step takes step_seconds(decode tokens, prefill tokens)."""

    rows = None

    def __init__(self, step_seconds: Callable[[int, int], float]):
        self.step_seconds = step_seconds
        self.now = 0.0

    def advance(self, t: float) -> None:
        self.now = max(self.now, t)

    def run(self, plan: Plan, until: float) -> tuple[int, np.ndarray, np.ndarray]:
        dur = np.array([self.step_seconds(int(d), int(n - d)) for d, n in zip(plan.decode, plan.lens)], dtype=float)
        end = self.now + np.cumsum(dur)
        start = np.r_[self.now, end[:-1]]
        k = _cut(start, until)
        self.now = float(end[k - 1])
        return k, start[:k], end[:k]


class AnalyticTimer:
    def __init__(self, sc: Scenario, routing: RequestRouting, most: int):
        from simulator.fast.engine import AnalyticEngine

        self.sc = dataclasses.replace(sc, context=0)  # the engine's own scenario: its trace becomes the views
        self.routing = routing
        table = PlacementTable(self.sc)
        table.start(most)  # codes for steps of up to `most` tokens
        self.engine = AnalyticEngine(self.sc, table)
        self.engine.decode_start = 0.0  # step times are on the serving clock
        self.rows = self.engine.rows
        self.steps, self.most = 0, most

    @property
    def now(self) -> float:
        return float(self.engine.out.now[0])

    def advance(self, t: float) -> None:
        if t > self.now:
            self.engine.out.now[0] = t  # the next step starts at t (the kernel's clock is absolute)

    def _time(self, plan: Plan, steps: int, tokens: int):
        self.sc.trace = self.routing.view(plan.tok_req[:tokens], plan.tok_pos[:tokens])
        return self.engine.timing(np.arange(tokens), plan.lens[:steps])

    def run(self, plan: Plan, until: float) -> tuple[int, np.ndarray, np.ndarray]:
        P, n = plan.steps, len(plan.tok_req)
        keep = {id(x): x for x in (self.sc, self.engine.table, self.rows, self.sc.system, self.routing)}
        saved = copy.deepcopy(self.engine, memo=dict(keep)) if P > 1 and until < float("inf") else None
        t, counts = self._time(plan, P, n)
        k = _cut(t["start"], until)
        if k < P:  # a request arrives before step k starts: back to the chunk's start, run the k steps
            self.engine = saved
            t, counts = self._time(plan, k, int(plan.lens[:k].sum()))
        self.engine.append(self.steps, plan.lens[:k], t, counts)
        self.steps += k
        if len(self.engine.table.rows().ti) > TABLE_ROWS_CAP:
            self.engine.table.start(self.most)
        return k, t["start"][:k], t["end"][:k]


class DESTimer:
    def __init__(self, sc: Scenario, routing: RequestRouting, most: int):
        import simpy

        from simulator.des.engine import DecodeEngine

        self.sc = dataclasses.replace(sc, context=0)
        self.routing = routing
        self.env = simpy.Environment()
        self.engine = DecodeEngine(self.env, self.sc, PlacementTable(self.sc), None)
        self.engine.new_table(most)
        self.engine.open_window()
        self.rows = self.engine.rows
        self.steps, self.most = 0, most

    @property
    def now(self) -> float:
        return float(self.env.now)

    def advance(self, t: float) -> None:
        if t > self.env.now:
            self.env.run(until=t)

    def run(self, plan: Plan, until: float) -> tuple[int, np.ndarray, np.ndarray]:
        self.sc.trace = self.routing.view(plan.tok_req, plan.tok_pos)
        env, eng = self.env, self.engine
        starts, ends, a = [], [], 0
        for s, n in enumerate(plan.lens.tolist()):
            if s and env.now >= until:
                break
            before, t0 = eng.snapshot(), env.now
            env.run(until=env.process(eng.step(np.arange(a, a + n))))
            eng.record_step(self.steps, n, t0, before)
            starts.append(t0)
            ends.append(env.now)
            self.steps += 1
            a += n
        if len(eng.table.rows().ti) > TABLE_ROWS_CAP:
            eng.new_table(self.most)
        return len(starts), np.array(starts), np.array(ends)
