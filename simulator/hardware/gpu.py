"""The GPU compute stream: in-order kernels timed by the roofline, idle gaps attributed to a cause.

One CUDA stream executes kernels in order, so the stream is the decode process itself: each kernel is a
timeout of `costs.gpu_time(...)` seconds, and the process blocks (the stream idles) while it waits for a
copy or an NDP result. Because only that one process issues kernels, no SimPy Resource is needed; copies
run on the link's copy engines (simulator.hardware.link), concurrently with the stream.

Every instant of a step is attributed to exactly one breakdown category: a kernel's duration to its
category, an idle gap to expert_ndp while an NDP unit computes what the stream waits for, else to transfer_stall.
"""

from __future__ import annotations

import simpy

from simulator import costs
from simulator.config.system import GPUSpec
from simulator.hardware.log import EventLog

CATEGORIES = ("attention", "router", "expert_gpu", "compensation", "expert_ndp", "transfer_stall", "other")
ATTENTION, ROUTER, EXPERT_GPU, COMPENSATION, EXPERT_NDP, TRANSFER_STALL, OTHER = range(len(CATEGORIES))


class GPU:
    def __init__(self, env: simpy.Environment, spec: GPUSpec, log: EventLog | None = None):
        self.env, self.spec, self.log = env, spec, log
        self.busy = 0.0                          # seconds of kernels since the window opened
        self.acc = [0.0] * len(CATEGORIES)       # seconds per category since the last take()
        self._track = log.track("GPU", "compute stream") if log is not None else -1

    def op(self, category: int, flops: float, nbytes: float, name: str, layer: int = -1,
           expert: int = -1, launches: float = 1.0) -> simpy.Timeout:
        """Launch one op (`launches` kernels); the caller yields the returned event."""
        return self.run(category, costs.gpu_time(self.spec, flops, nbytes, launches), name, layer, expert, nbytes)

    def run(self, category: int, seconds: float, name: str, layer: int = -1, expert: int = -1,
            nbytes: float = 0.0) -> simpy.Timeout:
        now = self.env.now
        self.busy += seconds
        self.acc[category] += seconds
        if self.log is not None:
            self.log.add(self._track, name, layer, expert, now, now + seconds, nbytes)
        return self.env.timeout(seconds)

    def idled(self, since: float, name: str, layer: int = -1, ndp_busy: float = 0.0) -> None:
        """Attribute the idle gap [since, now]: `ndp_busy` seconds of it (an NDP unit was computing what
        the stream waits for) to expert_ndp, the rest (copies, queueing) to transfer_stall."""
        gap = self.env.now - since
        if gap > 0:
            self.acc[EXPERT_NDP] += ndp_busy
            self.acc[TRANSFER_STALL] += gap - ndp_busy
            if self.log is not None:
                self.log.add(self._track, name, layer, -1, since, self.env.now)

    def take(self) -> list[float]:
        """Seconds per category since the last call (one step), and reset."""
        out, self.acc = self.acc, [0.0] * len(CATEGORIES)
        return out
