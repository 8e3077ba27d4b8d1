"""ndp-hot (MoNDE-like, arXiv 2405.18832): hot experts pinned in HBM at full precision, cold experts
computed at full precision by the NDP units.

Hotness is offline profiling of the whole trace: (layer, expert) pairs ranked by how often tokens route
to them (ties: lower layer, then lower expert id), pinned in that order while their full-precision bytes
fit in the GPU cache capacity (HBM left after resident weights, KV and reserve, or --cache-bytes /
--cache-experts-per-layer).
"""

from __future__ import annotations

import numpy as np

from simulator.policies.base import Placement, PlotStyle, Policy


class NDPHot(Policy):
    name = "ndp-hot"
    label = "ndp-hot (MoNDE-like)"
    style = PlotStyle("tab:purple", "P")
    top_n_runs = rest_runs = "full"
    needs_ndp = True
    slot_forms = ("full",)

    def prepare(self, scenario) -> None:
        trace, layers, experts = scenario.trace, scenario.model.moe_layers, scenario.model.num_experts
        counts = np.zeros(layers * experts, dtype=np.int64)  # [L * E] routings per (layer, expert)
        offsets = np.arange(layers, dtype=np.int64)[None, :, None] * experts
        for start in range(0, trace.tokens, 1 << 15):  # chunks: traces may be memory-mapped and large
            ids = np.asarray(trace.expert_ids[start:start + (1 << 15)], dtype=np.int64)  # [t, L, k]
            counts += np.bincount((ids + offsets).ravel(), minlength=layers * experts)
        order = np.lexsort((np.arange(layers * experts), -counts))  # by count desc, then index asc
        full = scenario.sizes.full.ravel()[order]
        if scenario.cache_per_layer:
            per_layer = np.zeros(layers)
            hot = np.zeros(layers * experts, dtype=bool)
            for idx, size in zip(order, full):
                layer = idx // experts
                if per_layer[layer] + size <= scenario.cache_capacity:
                    per_layer[layer] += size
                    hot[idx] = True
        else:
            fits = np.cumsum(full) <= scenario.cache_capacity
            hot = np.zeros(layers * experts, dtype=bool)
            hot[order[fits]] = True
        self.hot = hot.reshape(layers, experts).tolist()  # [L][E] bool

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        if self.hot[layer][expert]:
            return Placement(gpu_tokens=tokens, gpu_form="full", pinned=True)
        return Placement(ndp_tokens=tokens, ndp_form="full")
