"""A GPU link (PCIe or CXL), per direction: `dma_engines` copy engines sharing one wire.

A transfer takes a copy engine, pays the link latency (DMA setup and completion; engines overlap their
latencies), then moves its bytes over the direction's wire at the effective bandwidth; the wire carries
one transfer at a time, so concurrent copies share the bandwidth instead of multiplying it. Uncontended,
a transfer takes costs.link_time = latency + bytes / bandwidth. Engines and wire are queues ordered like
SimPy PriorityResources: on-demand transfers (priority 0) are served before prefetches (priority 1), then
by request time; service is not preempted. A transfer is two timeouts (latency, wire) chained by
callbacks plus its completion event, not a process holding two resources (a third of the SimPy events).
Bytes are counted when a transfer is issued; `busy` counts wire-seconds inside the measurement window
(open_window / close_window), so utilization = busy / wall <= 1.
"""

from __future__ import annotations

import heapq

import simpy

from simulator import costs
from simulator.config.system import LinkSpec
from simulator.hardware.log import EventLog

DEMAND, PREFETCH = 0, 1


class LinkDirection:
    """One direction: transfers queue for a copy engine, then for the wire, each queue ordered by
    (priority, request time, issue order) like a SimPy PriorityResource; served without a process per
    transfer (two timeouts and the completion event per transfer)."""

    def __init__(self, env: simpy.Environment, spec: LinkSpec, direction: str, log: EventLog | None = None):
        self.env, self.spec, self.direction, self.log = env, spec, direction, log
        self._free = list(range(spec.dma_engines))  # idle engine ids, a heap (a timeline thread per engine)
        self._engine_queue: list[tuple] = []        # heap of (priority, request time, seq, job)
        self._wire_queue: list[tuple] = []          # same, for the wire
        self._wire_idle = True
        self._seq = 0
        self._wire_end: float | None = None          # end of the wire transfer in progress
        self._tracks = ([log.track(f"link {spec.name}", f"{direction} #{i}") for i in range(spec.dma_engines)]
                        if log is not None else [])
        self.bytes = 0.0
        self.transfers = 0
        self.busy = 0.0  # wire-seconds inside the window
        self._measuring = True

    def transfer(self, nbytes: float, priority: int = DEMAND, name: str = "copy", layer: int = -1,
                 expert: int = -1) -> simpy.Event:
        """Issue a transfer; the returned event fires when the bytes have arrived."""
        self.bytes += nbytes
        self.transfers += 1
        done = simpy.Event(self.env)
        job = [nbytes, priority, name, layer, expert, done, 0, 0.0]  # ..., engine id, start
        if self._free and not self._engine_queue:
            self._take_engine(job)
        else:
            self._seq += 1
            heapq.heappush(self._engine_queue, (priority, self.env.now, self._seq, job))
        return done

    def _take_engine(self, job: list) -> None:
        job[6] = heapq.heappop(self._free)
        job[7] = self.env.now
        self.env.timeout(self.spec.latency, job).callbacks.append(self._latency_done)

    def _latency_done(self, event: simpy.Timeout) -> None:
        job = event.value
        if self._wire_idle and not self._wire_queue:
            self._take_wire(job)
        else:
            self._seq += 1
            heapq.heappush(self._wire_queue, (job[1], self.env.now, self._seq, job))

    def _take_wire(self, job: list) -> None:
        self._wire_idle = False
        seconds = costs.wire_time(self.spec, self.direction, job[0])
        self._wire_end = self.env.now + seconds
        if self._measuring:
            self.busy += seconds
        self.env.timeout(seconds, job).callbacks.append(self._wire_done)

    def _wire_done(self, event: simpy.Timeout) -> None:
        nbytes, _prio, name, layer, expert, done, engine, start = event.value
        self._wire_end = None
        self._wire_idle = True
        heapq.heappush(self._free, engine)
        if self.log is not None:
            self.log.add(self._tracks[engine], name, layer, expert, start, self.env.now, nbytes)
        if self._wire_queue:
            self._take_wire(heapq.heappop(self._wire_queue)[3])
        if self._engine_queue:
            self._take_engine(heapq.heappop(self._engine_queue)[3])
        done.succeed()

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
