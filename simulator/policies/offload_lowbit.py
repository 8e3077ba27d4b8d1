"""offload-lowbit: experts stored at b bits off the GPU, copied on demand, dequantised in the GEMM."""

from __future__ import annotations

from simulator.policies.base import Placement, PlotStyle, Policy


class OffloadLowbit(Policy):
    name = "offload-lowbit"
    style = PlotStyle("tab:blue", "s")
    expert_blind = True

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        return Placement(gpu_tokens=tokens, gpu_form="lowbit")
