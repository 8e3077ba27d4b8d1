"""The device the harness runs on, and the stream clock that attributes its time to moesim's categories.

`resolve_device("cpu" | "cuda")` returns a torch.device or raises a one-line UserError (unknown device,
CUDA asked but absent). On CPU the "device" is the CPU itself: device memory and host memory are both
RAM, a "copy" is a memcpy between a host buffer and a device buffer, and one thread does everything in
order (torch.set_num_threads(1) unless told otherwise), so the clock is that thread's CPU time
(time.thread_time: the seconds the device actually ran; on a machine shared with other work, the time the
thread waited to be scheduled is not the device's, and counting it would make every figure depend on the
neighbours' load). Memory stalls are CPU time, so copies and memory-bound GEMVs are timed in full; the
wall time of each run is reported beside it.

StreamClock: `mark(category)` attributes the time since the previous mark to `category` (one of
simulator.scenario.CATEGORIES). On CPU the marks read cpu_clock; on CUDA each mark records an event on
the compute stream and `close()` (after one synchronize per step) turns consecutive events into
durations, so the categories add up to the step's device time exactly in both cases.
"""

from __future__ import annotations

import time

import torch

from simulator.errors import UserError
from simulator.scenario import CATEGORIES

DEVICES = ("cpu", "cuda")
COMPUTE_DTYPE = torch.bfloat16
cpu_clock = time.thread_time  # the CPU device's clock (see the module docstring)  # 16-bit weights and activations (2 bytes per weight, as moesim counts them)


def resolve_device(name: str, threads: int | None = 1) -> torch.device:
    """The torch device named `name` (cpu or cuda); `threads`: CPU threads torch may use (None: leave)."""
    if tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 5):
        raise UserError(f"the measure harness needs torch >= 2.5 (scaled_dot_product_attention with enable_gqa, "
                        f"rms_norm); this is torch {torch.__version__}", field="--device")
    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}", field="--device")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA was asked for but torch sees no CUDA device (torch "
                        f"{torch.__version__}{', built without CUDA' if torch.version.cuda is None else ''}); "
                        "use --device cpu", field="--device")
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """What the device is, in words (the GPU's name, or the CPU's model name)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StreamClock:
    """Attributes consecutive intervals of the compute stream to breakdown categories (see module doc)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.acc = dict.fromkeys(CATEGORIES, 0.0)
        self._events: list[tuple[str, object]] = []
        self._last = None

    def start(self) -> None:
        """Begin a step: the next mark measures from now."""
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._events = [("", ev)]
        else:
            self._last = self._start = cpu_clock()

    def mark(self, category: str) -> None:
        """The time since the previous mark (or start) was spent on `category`."""
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._events.append((category, ev))
        else:
            now = cpu_clock()
            self.acc[category] += now - self._last
            self._last = now

    def close(self) -> float:
        """End the step (synchronizing a CUDA device); returns its seconds (all categories added)."""
        if self.cuda:
            self._events[-1][1].synchronize()
            total = 0.0
            for (_, a), (cat, b) in zip(self._events, self._events[1:]):
                dt = a.elapsed_time(b) / 1e3
                self.acc[cat] += dt
                total += dt
            self._events = []
            return total
        return self._last - self._start

    def take(self) -> dict[str, float]:
        out, self.acc = self.acc, dict.fromkeys(CATEGORIES, 0.0)
        return out
