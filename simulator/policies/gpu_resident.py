"""gpu-resident: every routed expert pinned in HBM at --bits (16 = the fp16 baseline); no copies.

The no-offload bound: the same kernels as offload-lowbit at the same precision, without a byte over a
link. Fails with a clear error when the experts do not fit in the HBM left after resident weights, KV
cache and reserve. A reference point, not an offloading policy: its accuracy is that of the bits it runs
(the low-bit error below full precision), so a 4-bit run is not an error-free bound.
"""

from __future__ import annotations

from simulator.errors import UserError
from simulator.policies.base import Placement, PlotStyle, Policy


class GPUResident(Policy):
    name = "gpu-resident"
    label = "gpu-resident (reference)"
    style = PlotStyle("tab:gray", "*")
    reference = True              # moves no expert bytes: the bound the offloading policies approach
    # runs every pair at --bits: the 4-bit reference carries the 4-bit error, the 16-bit one none
    expert_blind = True

    def prepare(self, scenario) -> None:
        need = float(scenario.sizes.lowbit.sum())
        if need > scenario.free_hbm:
            raise UserError(f"the routed experts need {need / 1e9:.1f} GB of HBM but only "
                            f"{max(scenario.free_hbm, 0) / 1e9:.1f} GB is free on {scenario.system.name}; "
                            "use fewer --bits or an offload/NDP policy", field="policy")

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        return Placement(gpu_tokens=tokens, gpu_form="lowbit", pinned=True)
