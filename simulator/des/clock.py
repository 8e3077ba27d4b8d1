"""Landing SimPy timeouts on a given time bit for bit (SimPy schedules a timeout at `now + delay`)."""

from __future__ import annotations

import math


def delay_to(now: float, t: float) -> float:
    """The delay d >= 0 with now + d == t exactly for t >= now (t - now may round; step it by ulps)."""
    delay = t - now
    while now + delay < t:
        delay = math.nextafter(delay, math.inf)
    while now + delay > t:
        delay = math.nextafter(delay, -math.inf)
    return delay
