"""A GPU link (PCIe or CXL), per direction: `dma_engines` copy engines sharing one wire.

A transfer takes a copy engine, pays the link latency (DMA setup and completion; engines overlap their
latencies), then moves its bytes over the direction's wire at the effective bandwidth; the wire carries
one transfer at a time, so concurrent copies share the bandwidth instead of multiplying it. Uncontended,
a transfer takes costs.link_time = latency + bytes / bandwidth. Engines and wire are queues ordered like
SimPy PriorityResources: on-demand transfers (priority 0) are served before prefetches (priority 1), then
by request time; service is not preempted. A transfer is two timeouts (latency, wire) chained by
callbacks plus its completion event, not a process holding two resources (a third of the SimPy events).
A direction built with fifo=True carries no prefetches: transfers then take engines and the wire in
request order and end in that order, so a transfer that finds every engine busy takes the engine of the
transfer `dma_engines` ahead of it when that one ends; its engine, its start and its end (the wire is a
clock, `_wire_tail`) are all known when it is issued (same times, same float arithmetic). Such a transfer
is a Copy, no SimPy event: it is logged when issued, and the direction retires the copies the clock has
passed (frees their engines, counts their wire time) whenever it is used; whoever must react to its
arrival asks for an event at its end (event(): one timeout instead of three events).
Bytes are counted when a transfer is issued; `busy` counts wire-seconds inside the measurement window
(open_window / close_window), so utilization = busy / wall <= 1.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import simpy

from simulator import costs
from simulator.config.system import LinkSpec
from simulator.des.clock import delay_to
from simulator.des.log import EventLog
from simulator.scenario import DEMAND


class Copy:
    """A transfer on a fifo direction, known whole when issued: it arrives at `end` (no SimPy event)."""

    __slots__ = ("end", "engine", "handoff", "seconds", "start")

    def __init__(self, engine: int, start: float, seconds: float):
        self.engine = engine                              # its copy engine
        self.start, self.seconds = start, seconds         # on the wire from `start` for `seconds`
        self.end = start + seconds
        self.handoff = False                              # the transfer `dma_engines` behind takes its engine


class Arrival(simpy.Timeout):
    """A timeout at the end of a Copy (`end`, bit for bit), for whoever must react to its arrival."""

    def __init__(self, env: simpy.Environment, delay: float, end: float):
        super().__init__(env, delay)
        self.end = end


class LinkDirection:
    """One direction: transfers queue for a copy engine, then for the wire, each queue ordered by
    (priority, request time, issue order) like a SimPy PriorityResource; served without a process per
    transfer (two timeouts and the completion event per transfer)."""

    def __init__(self, env: simpy.Environment, spec: LinkSpec, direction: str, log: EventLog | None = None,
                 fifo: bool = False):
        self.env, self.spec, self.direction, self.log = env, spec, direction, log
        self.fifo = fifo
        self._engines, self._latency = spec.dma_engines, spec.latency
        self._wire_seconds: dict[float, float] = {}  # memo of costs.wire_time by bytes
        self._wire_tail = -math.inf                  # fifo: end of the last transfer issued
        self._on_wire: deque[Copy] = deque()         # fifo: copies issued and not retired, in wire order
        self._open_head: Copy | None = None          # fifo: the copy on the wire when the window opened
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
                 expert: int = -1, at: float | None = None) -> simpy.Event | Copy:
        """Issue a transfer: on a fifo direction the Copy (see event()), else an event that fires when the
        bytes have arrived. `at` (fifo only): issue it as if at that later time (nothing else may be
        issued on this direction in between)."""
        self.bytes += nbytes
        self.transfers += 1
        if self.fifo:  # known whole when issued: its engine, its wire slot, its end
            if priority != DEMAND:
                raise ValueError("a fifo link direction carries on-demand transfers only")
            now, on_wire, engines = self.env.now if at is None else at, self._on_wire, self._engines
            if on_wire and on_wire[0].end <= now:
                self._retire(now)
            if len(on_wire) < engines:  # an engine is idle (busy ones = transfers not ended, at most `engines`)
                engine, grant = heapq.heappop(self._free), now
            else:  # the engine of the transfer `engines` ahead, when that one ends
                ahead = on_wire[-engines]
                ahead.handoff = True
                engine, grant = ahead.engine, ahead.end
            # wire from arrival (grant + latency, as SimPy adds it) or when the transfer ahead ends
            seconds = self._wire_seconds.get(nbytes) or self._wire_time(nbytes)
            start, tail = grant + self._latency, self._wire_tail
            copy = Copy(engine, tail if tail > start else start, seconds)  # noqa: FURB136 -- max() is a slow call
            self._wire_tail = copy.end
            on_wire.append(copy)
            if self.log is not None:
                self.log.add(self._tracks[engine], name, layer, expert, grant, copy.end, nbytes)
            return copy
        if at is not None:
            raise ValueError("only a fifo link direction issues transfers ahead of time")
        done = simpy.Event(self.env)
        job = [nbytes, priority, name, layer, expert, done, 0, 0.0]  # ..., engine id, start
        if self._free and not self._engine_queue:
            self._take_engine(job)
        else:
            self._seq += 1
            heapq.heappush(self._engine_queue, (priority, self.env.now, self._seq, job))
        return done

    def _wire_time(self, nbytes: float) -> float:
        """costs.wire_time on this direction (memoised: copy sizes repeat)."""
        seconds = self._wire_seconds.get(nbytes)
        if seconds is None:
            seconds = self._wire_seconds[nbytes] = costs.wire_time(self.spec, self.direction, nbytes)
        return seconds

    def event(self, transfer: simpy.Event | Copy) -> simpy.Event:
        """An event that fires when `transfer` (from transfer()) has arrived: itself on an event-driven
        direction, an Arrival at its end for a Copy."""
        if not isinstance(transfer, Copy):
            return transfer
        return Arrival(self.env, delay_to(self.env.now, transfer.end), transfer.end)

    def _retire(self, now: float) -> None:
        """fifo: the copies that have ended by `now` give back their engines and count their wire time."""
        on_wire = self._on_wire
        while on_wire and on_wire[0].end <= now:
            copy = on_wire.popleft()
            if self._measuring and copy is not self._open_head:
                self.busy += copy.seconds  # (the one in progress when the window opened counted its remainder)
            if not copy.handoff:
                heapq.heappush(self._free, copy.engine)

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
        seconds = self._wire_time(job[0])
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
        now = self.env.now
        if self.fifo:
            self._retire(now)
            self._open_head = self._on_wire[0] if self._on_wire and self._on_wire[0].start <= now else None
            wire_end = self._open_head.end if self._open_head is not None else None
        else:
            wire_end = self._wire_end
        self.busy = max(0.0, wire_end - now) if wire_end is not None else 0.0

    def close_window(self) -> None:
        """Stop measuring now: drop the part of a wire transfer in progress that lies beyond now."""
        now = self.env.now
        wire_end = self._wire_end
        if self.fifo:
            self._retire(now)
            wire_end = None
            if self._on_wire and self._on_wire[0].start <= now:  # in progress: counted as if from its start
                wire = self._on_wire[0]
                wire_end = wire.end
                if wire is not self._open_head:
                    self.busy += wire.seconds
        if wire_end is not None:
            self.busy -= max(0.0, wire_end - now)
        self._measuring = False


class Link:
    """Both directions of one link."""

    def __init__(self, env: simpy.Environment, spec: LinkSpec, log: EventLog | None = None, fifo: bool = False):
        self.spec = spec
        self.to_gpu = LinkDirection(env, spec, costs.TO_GPU, log, fifo)
        self.from_gpu = LinkDirection(env, spec, costs.FROM_GPU, log, fifo)
        self.directions = {costs.TO_GPU: self.to_gpu, costs.FROM_GPU: self.from_gpu}
