"""Near-data-processing units inside CXL memory: each runs one expert op at a time.

Placement: routed expert e lives on unit e mod units (consecutive expert ids spread over the units, so a
layer's experts run in parallel unless two share a unit). An op reads the expert's stored weights at
the unit's internal bandwidth and computes at the precision its bits allow (costs.ndp_time); ops queue
per unit FIFO in submission order (a timeout per op and a callback, no process or Resource). Moving
activations over CXL is the engine's job (it uses the cxl link).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import simpy

from simulator import costs
from simulator.config.system import NDPSpec
from simulator.hardware.log import EventLog


class NDPUnits:
    def __init__(self, env: simpy.Environment, spec: NDPSpec, log: EventLog | None = None):
        self.env, self.spec, self.log = env, spec, log
        self.count = spec.units
        self._idle = [True] * spec.units
        self._queues: list[deque] = [deque() for _ in range(spec.units)]  # waiting ops per unit, FIFO
        self._tracks = [log.track("NDP", f"unit {i}") for i in range(spec.units)] if log is not None else []
        self.busy = [0.0] * spec.units
        self._seconds: dict[tuple[float, float, float], float] = {}  # memo of costs.ndp_time
        self.ops = 0
        self.intervals: list[tuple[float, float]] = []  # (start, end) of ops since the engine last cleared it

    def unit_of(self, expert: int) -> int:
        return expert % self.count

    def seconds(self, flops: float, nbytes: float, bits: float) -> float:
        """costs.ndp_time of one op (memoised: ops repeat)."""
        key = (flops, nbytes, bits)
        seconds = self._seconds.get(key)
        if seconds is None:
            seconds = self._seconds[key] = costs.ndp_time(self.spec, flops, nbytes, bits)
        return seconds

    def submit(self, expert: int, seconds: float, nbytes: float, name: str, layer: int,
               on_done: Callable[[], object]) -> None:
        """Queue an op of `seconds` (from seconds()) reading `nbytes` on the expert's unit (FIFO); `on_done()`
        is called when it ends. One timeout per op."""
        unit = self.unit_of(expert)
        op = (unit, expert, seconds, nbytes, name, layer, on_done)
        if self._idle[unit]:
            self._start(op)
        else:
            self._queues[unit].append(op)

    def compute(self, expert: int, flops: float, nbytes: float, bits: float, name: str = "expert",
                layer: int = -1):
        """Generator: queue on the expert's unit, then compute; use as `yield from units.compute(...)`."""
        done = self.env.event()
        self.submit(expert, self.seconds(flops, nbytes, bits), nbytes, name, layer, done.succeed)
        yield done

    def _start(self, op: tuple) -> None:
        unit, seconds = op[0], op[2]
        self._idle[unit] = False
        start = self.env.now
        self.busy[unit] += seconds
        self.ops += 1
        self.intervals.append((start, start + seconds))
        self.env.timeout(seconds, (op, start, seconds)).callbacks.append(self._end)

    def _end(self, event: simpy.Timeout) -> None:
        op, start, seconds = event.value
        unit, expert, _seconds, nbytes, name, layer, on_done = op
        if self.log is not None:
            self.log.add(self._tracks[unit], name, layer, expert, start, start + seconds, nbytes)
        self._idle[unit] = True
        on_done()  # before the next op starts, as a released SimPy Resource grants it
        queue = self._queues[unit]
        if queue and self._idle[unit]:
            self._start(queue.popleft())
