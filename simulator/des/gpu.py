"""The GPU compute stream: in-order kernels timed by the roofline, idle gaps attributed to a cause.

One CUDA stream executes kernels in order, so the stream is the decode process itself: each kernel
lasts `costs.gpu_time(...)` seconds on the stream clock, and the stream idles while it waits for a copy
or an NDP result. Kernels need no event of their own: `launch`/`kernel` advance the stream clock, which
may run ahead of SimPy's; one `sync` timeout catches SimPy up when something must happen at the stream's
time. A wait for something whose arrival time is known moves the clock without an event (`wait_until`,
`idled(..., until=)`); otherwise the process blocks on the event and `idled` attributes the gap. Because
only that one process issues kernels, no SimPy Resource is needed; copies run on the link's copy
engines (simulator.des.link), concurrently.

Every instant of a step is attributed to exactly one breakdown category: a kernel's duration to its
category, an idle gap to expert_ndp while an NDP unit computes what the stream waits for, else to transfer_stall.
"""

from __future__ import annotations

import simpy

from simulator import costs
from simulator.config.system import GPUSpec
from simulator.des.clock import delay_to
from simulator.des.log import EventLog
from simulator.scenario import CATEGORIES, EXPERT_NDP, TRANSFER_STALL


class GPU:
    def __init__(self, env: simpy.Environment, spec: GPUSpec, log: EventLog | None = None):
        self.env, self.spec, self.log = env, spec, log
        self.t = env.now                         # stream clock: when the kernels launched so far end
        self.busy = 0.0                          # seconds of kernels since the window opened
        self.acc = [0.0] * len(CATEGORIES)       # seconds per category since the last take()
        self._track = log.track("GPU", "compute stream") if log is not None else -1
        self._seconds: dict[tuple[float, float, float], float] = {}  # memo of costs.gpu_time

    def seconds(self, flops: float, nbytes: float, overhead: float | None = None) -> float:
        """costs.gpu_time of one op with the runtime's fixed `overhead` seconds (memoised: ops repeat)."""
        key = (flops, nbytes, overhead)
        seconds = self._seconds.get(key)
        if seconds is None:
            seconds = self._seconds[key] = costs.gpu_time(self.spec, flops, nbytes, overhead)
        return seconds

    def launch(self, category: int, flops: float, nbytes: float, name: str, layer: int = -1,
               expert: int = -1, overhead: float | None = None) -> None:
        """Enqueue one op (with `overhead` fixed seconds) timed by the roofline; see kernel()."""
        self.kernel(category, self.seconds(flops, nbytes, overhead), nbytes, name, layer, expert)

    def kernel(self, category: int, seconds: float, nbytes: float, name: str, layer: int = -1,
               expert: int = -1) -> None:
        """Enqueue one op of `seconds` (from seconds()): it starts when the stream is free and advances the
        stream clock `t`. No SimPy event: the caller yields `sync()` before anything that must happen at
        the stream's time."""
        t, now = self.t, self.env.now
        start = now if now > t else t  # noqa: FURB136 -- max() is a slow call, and this runs per kernel
        end = self.t = start + seconds
        self.busy += seconds
        self.acc[category] += seconds
        if self.log is not None:
            self.log.add(self._track, name, layer, expert, start, end, nbytes)

    def op(self, category: int, flops: float, nbytes: float, name: str, layer: int = -1,
           expert: int = -1, overhead: float | None = None) -> simpy.Timeout | None:
        """Launch one op (with `overhead` fixed seconds) and return sync() (the caller yields it)."""
        self.launch(category, flops, nbytes, name, layer, expert, overhead)
        return self.sync()

    def sync(self) -> simpy.Timeout | None:
        """A timeout that ends exactly when the launched kernels have run (None when they already have).
        Its delay is nudged so that SimPy's `now + delay` lands on the stream clock bit for bit, as if
        each kernel had been its own timeout."""
        now, t = self.env.now, self.t
        if t <= now:
            return None
        return self.env.timeout(delay_to(now, t))

    def idled(self, since: float, name: str, layer: int = -1, ndp_busy: float = 0.0,
              until: float | None = None) -> None:
        """Attribute the idle gap [since, until] (until: now by default, else a known arrival time; the
        stream resumes then): `ndp_busy` seconds of it (an NDP unit was computing what the stream waits
        for) to expert_ndp, the rest (copies, queueing) to transfer_stall."""
        end = self.t = self.env.now if until is None else until
        gap = end - since
        if gap > 0:
            self.acc[EXPERT_NDP] += ndp_busy
            self.acc[TRANSFER_STALL] += gap - ndp_busy
            if self.log is not None:
                self.log.add(self._track, name, layer, -1, since, end)

    def wait_until(self, end: float, name: str, layer: int = -1) -> None:
        """Idle the stream until `end` (a copy whose arrival time is known) without a SimPy event; the
        same attribution as idled() to transfer_stall."""
        t, now = self.t, self.env.now
        since = now if now > t else t  # noqa: FURB136 -- as in kernel()
        if end > since:
            self.acc[TRANSFER_STALL] += end - since
            self.t = end
            if self.log is not None:
                self.log.add(self._track, name, layer, -1, since, end)

    def take(self) -> list[float]:
        """Seconds per category since the last call (one step), and reset."""
        out, self.acc = self.acc, [0.0] * len(CATEGORIES)
        return out
