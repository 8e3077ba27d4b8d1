"""A workload: N requests, each an arrival time, prompt tokens and output tokens.

Arrays [N], sorted by arrival, strictly increasing (two requests never arrive at the same instant, so the
FCFS order is the arrival order): arrival_s float64 seconds from the workload's start, prompt int64 >= 1
tokens of context the request brings (prefilled), output int64 >= 1 tokens it generates (the first comes
out of the prefill's last step). `source` names where it came from (a file or a generator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.errors import UserError


@dataclass(frozen=True)
class Workload:
    arrival_s: np.ndarray  # [N] float64 seconds, strictly increasing, >= 0
    prompt: np.ndarray     # [N] int64 tokens >= 1
    output: np.ndarray     # [N] int64 tokens >= 1
    source: str

    def __post_init__(self) -> None:
        a, p, o = self.arrival_s, self.prompt, self.output
        if not (a.shape == p.shape == o.shape and a.ndim == 1):
            raise ValueError(f"workload arrays must be [N] alike, got {a.shape}, {p.shape}, {o.shape}")
        bad = np.flatnonzero(~np.isfinite(a) | (a < 0))
        if len(bad):
            raise UserError(f"arrival {float(a[bad[0]])!r} is not a finite time >= 0", source=self.source,
                            field=f"request {bad[0]}: arrival_s")
        for name, x in (("prompt_tokens", p), ("output_tokens", o)):
            bad = np.flatnonzero(x < 1)
            if len(bad):
                raise UserError(f"{int(x[bad[0]])} tokens; expected at least 1", source=self.source,
                                field=f"request {bad[0]}: {name}")
        bad = np.flatnonzero(np.diff(a) <= 0)
        if len(bad):
            raise UserError(f"arrival {float(a[bad[0] + 1])!r} does not come after {float(a[bad[0]])!r}; arrivals must be sorted "
                            "and distinct", source=self.source, field=f"request {bad[0] + 1}: arrival_s")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def span_s(self) -> float:
        """Seconds from the first arrival to the last."""
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) > 1 else 0.0

    @property
    def rate(self) -> float:
        """Mean arrival rate (requests/s): intervals / span (nan with fewer than two requests)."""
        return (len(self) - 1) / self.span_s if self.span_s > 0 else float("nan")

    def take(self, mask: np.ndarray, source: str | None = None) -> Workload:
        return Workload(self.arrival_s[mask], self.prompt[mask], self.output[mask], source or self.source)
