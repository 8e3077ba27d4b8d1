"""Near-data-processing units inside CXL memory: each runs one expert op at a time.

Placement: routed expert e lives on unit e mod units (consecutive expert ids spread over the units, so a
layer's experts run in parallel unless two share a unit). An op reads the expert's stored weights at
the unit's internal bandwidth and computes at the precision its bits allow (costs.ndp_time); units
contend through one SimPy Resource each (FIFO in submission order). Moving activations over CXL is the
engine's job (it uses the cxl link).
"""

from __future__ import annotations

import simpy

from simulator import costs
from simulator.config.system import NDPSpec
from simulator.hardware.log import EventLog


class NDPUnits:
    def __init__(self, env: simpy.Environment, spec: NDPSpec, log: EventLog | None = None):
        self.env, self.spec, self.log = env, spec, log
        self.count = spec.units
        self._units = [simpy.Resource(env, capacity=1) for _ in range(spec.units)]
        self._tracks = [log.track("NDP", f"unit {i}") for i in range(spec.units)] if log is not None else []
        self.busy = [0.0] * spec.units
        self.ops = 0
        self.intervals: list[tuple[float, float]] = []  # (start, end) of ops since the engine last cleared it

    def unit_of(self, expert: int) -> int:
        return expert % self.count

    def compute(self, expert: int, flops: float, nbytes: float, bits: float, name: str = "expert",
                layer: int = -1):
        """Generator: queue on the expert's unit, then compute; use as `yield from units.compute(...)`."""
        unit = self.unit_of(expert)
        with self._units[unit].request() as req:
            yield req
            start = self.env.now
            seconds = costs.ndp_time(self.spec, flops, nbytes, bits)
            self.busy[unit] += seconds
            self.ops += 1
            self.intervals.append((start, start + seconds))
            yield self.env.timeout(seconds)
            if self.log is not None:
                self.log.add(self._tracks[unit], name, layer, expert, start, start + seconds, nbytes)
