"""offload-fp16: experts in host/CXL memory at full precision, copied on demand into the GPU cache."""

from __future__ import annotations

from simulator.policies.base import Placement, PlotStyle, Policy


class OffloadFP16(Policy):
    name = "offload-fp16"
    style = PlotStyle("black", "X")
    top_n_runs = rest_runs = "full"
    expert_blind = True
    slot_forms = ("full",)

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        return Placement(gpu_tokens=tokens, gpu_form="full")
