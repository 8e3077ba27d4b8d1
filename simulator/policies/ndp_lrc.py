"""ndp-lrc (the method on GPU-NDP): an expert's non-restored tokens run on its NDP unit at b bits; its
restored tokens (the expert is in their top-n) run on the GPU from the b-bit weights plus the low-rank
factors, both copied over CXL into the GPU cache on a miss."""

from __future__ import annotations

from simulator.policies.base import Placement, PlotStyle, Policy


class NDPLRC(Policy):
    name = "ndp-lrc"
    style = PlotStyle("tab:red", "o", method=True)
    top_n_runs = "restored"
    expert_blind = True
    needs_ndp = True
    compensates = True
    slot_forms = ("lowbit", "factors")

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        return Placement(gpu_tokens=restored, gpu_form="lowbit", comp_tokens=restored,
                         ndp_tokens=tokens - restored, ndp_form="lowbit")
