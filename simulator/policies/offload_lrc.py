"""offload-lrc (the method, GPU only): b-bit experts copied on demand; an expert some token ranks in its
top-n also needs its low-rank factors on the GPU, and those tokens get the compensation GEMMs."""

from __future__ import annotations

from simulator.policies.base import Placement, PlotStyle, Policy


class OffloadLRC(Policy):
    name = "offload-lrc"
    style = PlotStyle("tab:red", "o", method=True)
    top_n_runs = "restored"
    expert_blind = True
    compensates = True
    slot_forms = ("lowbit", "factors")

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        return Placement(gpu_tokens=tokens, gpu_form="lowbit", comp_tokens=restored)
