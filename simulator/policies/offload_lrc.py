"""offload-lrc (the method, GPU only): b-bit experts copied on demand; an expert some token ranks in its
top-n also needs its low-rank factors on the GPU, and those tokens get the compensation GEMMs."""

from __future__ import annotations

from simulator.policies.base import Placement, Policy


class OffloadLRC(Policy):
    name = "offload-lrc"
    expert_blind = True
    compensates = True
    slot_forms = ("lowbit", "factors")

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        return Placement(gpu_tokens=tokens, gpu_form="lowbit", comp_tokens=restored)
