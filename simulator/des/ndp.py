"""Near-data-processing units inside CXL memory: each runs one expert op at a time.

Placement: routed expert e lives on unit e mod units (consecutive expert ids spread over the units, so a
layer's experts run in parallel unless two share a unit). An op reads the expert's stored weights at
the unit's internal bandwidth and computes at the precision its bits allow (costs.ndp_time); ops queue
per unit FIFO in submission order. Nothing else feeds a unit, so a batch of ops submitted together is
timed whole when submitted (run()), with no SimPy event: it returns when each op ends, in the order SimPy
would end them (by time, then by when each op was started, a SimPy timeout per op). Moving activations
over CXL is the engine's job (it uses the cxl link).
"""

from __future__ import annotations

import math

import simpy

from simulator import costs
from simulator.config.system import NDPSpec
from simulator.des.clock import delay_to
from simulator.des.log import EventLog


class NDPUnits:
    def __init__(self, env: simpy.Environment, spec: NDPSpec, log: EventLog | None = None):
        self.env, self.spec, self.log = env, spec, log
        self.count = spec.units
        self._free_at = [-math.inf] * spec.units  # when each unit ends the last op it was given
        self._tracks = [log.track("NDP", f"unit {i}") for i in range(spec.units)] if log is not None else []
        self.busy = [0.0] * spec.units
        self._seconds: dict[tuple[float, float, float], float] = {}  # memo of costs.ndp_time
        self.ops = 0
        self.intervals: list[tuple[float, float]] = []  # (start, end) of ops since the engine last cleared it

    def seconds(self, flops: float, nbytes: float, bits: float) -> float:
        """costs.ndp_time of one op (memoised: ops repeat)."""
        key = (flops, nbytes, bits)
        seconds = self._seconds.get(key)
        if seconds is None:
            seconds = self._seconds[key] = costs.ndp_time(self.spec, flops, nbytes, bits)
        return seconds

    def run(self, at: float, ops: list[tuple[int, float, float, str, int]]) -> list[tuple[float, int]]:
        """Submit `ops` [(expert, seconds from seconds(), bytes read, name, layer)] at time `at` (>= now): each
        queues on its expert's unit behind what that unit was given before. Returns (end, index into ops)
        per op in the order the ops end (equal ends: the op started first first)."""
        count, busy, free_at, intervals, log = self.count, self.busy, self._free_at, self.intervals, self.log
        # per op: (end, 0, index, start) when its unit is idle at `at`, else (end, 1, the op it queues behind,
        # index, start). Sorted, that is the order SimPy would end them: by end, then start order (ops on
        # idle units in submission order, then queued ones as their predecessors end)
        timed = []
        last = {}  # unit -> the last op given to it in this batch
        for i, (expert, seconds, nbytes, name, layer) in enumerate(ops):
            unit = expert % count
            ahead = last.get(unit)
            if ahead is None:
                start = free_at[unit]
                if at > start:  # noqa: PLR1730 -- max() is a slow call
                    start = at
                op = (start + seconds, 0, i, start)
            else:  # it starts as the op ahead of it ends
                start = ahead[0]
                op = (start + seconds, 1, ahead, i, start)
            timed.append(op)
            last[unit] = op
            end = free_at[unit] = op[0]
            busy[unit] += seconds
            intervals.append((start, end))
            if log is not None:
                log.add(self._tracks[unit], name, layer, expert, start, end, nbytes)
        self.ops += len(ops)
        return [(op[0], op[-2]) for op in sorted(timed)]

    def compute(self, expert: int, flops: float, nbytes: float, bits: float, name: str = "expert",
                layer: int = -1):
        """Generator: queue on the expert's unit, then compute; use as `yield from units.compute(...)`."""
        now = self.env.now
        [(end, _)] = self.run(now, [(expert, self.seconds(flops, nbytes, bits), nbytes, name, layer)])
        yield self.env.timeout(delay_to(now, end))
