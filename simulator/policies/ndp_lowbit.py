"""ndp-lowbit: every routed expert computed in place by its NDP unit at b bits; no weight copies."""

from __future__ import annotations

from simulator.policies.base import Placement, PlotStyle, Policy


class NDPLowbit(Policy):
    name = "ndp-lowbit"
    style = PlotStyle("tab:blue", "s")
    expert_blind = True
    needs_ndp = True

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        return Placement(ndp_tokens=tokens, ndp_form="lowbit")
