"""offload-mixed (HOBBIT-like, arXiv 2411.01433): mixed-precision expert loading.

An expert that some token of the batch ranks in its top-n (by router score) is important: it runs at
full precision, copied on a miss even if its low-bit form is cached. An unimportant expert uses whatever
is cached (full precision preferred); on a miss only its low-bit form is loaded. Uses --top-n as the
importance threshold (HOBBIT uses a score threshold; top-n is the rank-based equivalent).
"""

from __future__ import annotations

from simulator.policies.base import Placement, PlotStyle, Policy


class OffloadMixed(Policy):
    name = "offload-mixed"
    label = "offload-mixed (HOBBIT-like)"
    style = PlotStyle("tab:green", "D")
    # accuracy: the worst case, every fetch a miss: the top-n at full precision, the rest low-bit (an
    # unimportant expert that happens to be cached at full precision only does better)
    top_n_runs = "full"
    slot_forms = ("full",)
    reads_forms = ("full",)

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        if restored or (layer, expert, "full") in cache:
            return Placement(gpu_tokens=tokens, gpu_form="full")
        return Placement(gpu_tokens=tokens, gpu_form="lowbit")
