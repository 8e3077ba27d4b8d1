"""A GPU link (PCIe or CXL): per direction, `dma_engines` copy engines serving transfers in order.

A transfer occupies one engine for latency + bytes / effective bandwidth (costs.link_time). Requests
queue on a SimPy PriorityResource: on-demand transfers (priority 0) are served before prefetches
(priority 1); service is not preempted. Bytes are counted when a transfer is issued; busy time counts
engine-seconds inside the measurement window (open_window/close_window), so busy <= engines x wall.
"""

from __future__ import annotations

import heapq

import simpy

from simulator import costs
from simulator.config.system import LinkSpec
from simulator.hardware.log import EventLog

DEMAND, PREFETCH = 0, 1


class LinkDirection:
    def __init__(self, env: simpy.Environment, spec: LinkSpec, direction: str, log: EventLog | None = None):
        self.env, self.spec, self.direction, self.log = env, spec, direction, log
        self.engines = spec.dma_engines
        self._res = simpy.PriorityResource(env, capacity=self.engines)
        self._free = list(range(self.engines))   # engine ids (timeline thread per engine)
        self._in_service: dict[int, float] = {}  # engine id -> end time
        self._tracks = ([log.track(f"link {spec.name}", f"{direction} #{i}") for i in range(self.engines)]
                        if log is not None else [])
        self.bytes = 0.0
        self.transfers = 0
        self.busy = 0.0  # engine-seconds inside the window

    def transfer(self, nbytes: float, priority: int = DEMAND, name: str = "copy", layer: int = -1,
                 expert: int = -1) -> simpy.Process:
        """Issue a transfer; the returned process event fires when the bytes have arrived."""
        self.bytes += nbytes
        self.transfers += 1
        return self.env.process(self._serve(nbytes, priority, name, layer, expert))

    def _serve(self, nbytes, priority, name, layer, expert):
        with self._res.request(priority=priority) as req:
            yield req
            start = self.env.now
            seconds = costs.link_time(self.spec, self.direction, nbytes)
            engine = heapq.heappop(self._free)
            self._in_service[engine] = start + seconds
            self.busy += seconds
            yield self.env.timeout(seconds)
            del self._in_service[engine]
            heapq.heappush(self._free, engine)
            if self.log is not None:
                self.log.add(self._tracks[engine], name, layer, expert, start, start + seconds, nbytes)

    def open_window(self) -> None:
        """Start measuring now: only the remaining part of transfers in service counts."""
        now = self.env.now
        self.busy = sum(end - now for end in self._in_service.values())

    def close_window(self) -> None:
        """Stop measuring now: drop the part of in-service transfers that lies beyond now."""
        now = self.env.now
        self.busy -= sum(max(0.0, end - now) for end in self._in_service.values())


class Link:
    """Both directions of one link."""

    def __init__(self, env: simpy.Environment, spec: LinkSpec, log: EventLog | None = None):
        self.spec = spec
        self.to_gpu = LinkDirection(env, spec, costs.TO_GPU, log)
        self.from_gpu = LinkDirection(env, spec, costs.FROM_GPU, log)
        self.directions = {costs.TO_GPU: self.to_gpu, costs.FROM_GPU: self.from_gpu}
