"""A GPU link (PCIe or CXL), per direction: `dma_engines` copy engines sharing one wire.

A transfer takes a copy engine, pays the link latency (DMA setup and completion; engines overlap their
latencies), then moves its bytes over the direction's wire at the effective bandwidth; the wire carries
one transfer at a time, so concurrent copies share the bandwidth instead of multiplying it. Uncontended,
a transfer takes costs.link_time = latency + bytes / bandwidth. Engines and wire are SimPy
PriorityResources: on-demand transfers (priority 0) are served before prefetches (priority 1); service
is not preempted. Bytes are counted when a transfer is issued; `busy` counts wire-seconds inside the
measurement window (open_window / close_window), so utilization = busy / wall <= 1.
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
        self._engines = simpy.PriorityResource(env, capacity=spec.dma_engines)
        self._wire = simpy.PriorityResource(env, capacity=1)
        self._free = list(range(spec.dma_engines))  # engine ids (a timeline thread per engine)
        self._wire_end: float | None = None          # end of the wire transfer in progress
        self._tracks = ([log.track(f"link {spec.name}", f"{direction} #{i}") for i in range(spec.dma_engines)]
                        if log is not None else [])
        self.bytes = 0.0
        self.transfers = 0
        self.busy = 0.0  # wire-seconds inside the window
        self._measuring = True

    def transfer(self, nbytes: float, priority: int = DEMAND, name: str = "copy", layer: int = -1,
                 expert: int = -1) -> simpy.Process:
        """Issue a transfer; the returned process event fires when the bytes have arrived."""
        self.bytes += nbytes
        self.transfers += 1
        return self.env.process(self._serve(nbytes, priority, name, layer, expert))

    def _serve(self, nbytes, priority, name, layer, expert):
        env = self.env
        with self._engines.request(priority=priority) as engine_req:
            yield engine_req
            start = env.now
            engine = heapq.heappop(self._free)
            yield env.timeout(self.spec.latency)
            with self._wire.request(priority=priority) as wire_req:
                yield wire_req
                seconds = costs.wire_time(self.spec, self.direction, nbytes)
                self._wire_end = env.now + seconds
                if self._measuring:
                    self.busy += seconds
                yield env.timeout(seconds)
                self._wire_end = None
            heapq.heappush(self._free, engine)
            if self.log is not None:
                self.log.add(self._tracks[engine], name, layer, expert, start, env.now, nbytes)

    def open_window(self) -> None:
        """Start measuring now: only the remaining part of a wire transfer in progress counts."""
        self.busy = max(0.0, self._wire_end - self.env.now) if self._wire_end is not None else 0.0

    def close_window(self) -> None:
        """Stop measuring now: drop the part of a wire transfer in progress that lies beyond now."""
        if self._wire_end is not None:
            self.busy -= max(0.0, self._wire_end - self.env.now)
        self._measuring = False


class Link:
    """Both directions of one link."""

    def __init__(self, env: simpy.Environment, spec: LinkSpec, log: EventLog | None = None):
        self.spec = spec
        self.to_gpu = LinkDirection(env, spec, costs.TO_GPU, log)
        self.from_gpu = LinkDirection(env, spec, costs.FROM_GPU, log)
        self.directions = {costs.TO_GPU: self.to_gpu, costs.FROM_GPU: self.from_gpu}
