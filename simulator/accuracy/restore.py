"""The MoE forward with router-guided restoration.

Every routed expert runs from its low-bit weights W_hat. For each token, the top-n of its top-k experts
by router probability are restored: they run with W_hat + U V^T (the same for every matrix of the
expert). n = 0 is the pure low-bit model, n = k restores every selected expert.
"""

from __future__ import annotations

import torch

from simulator.accuracy.layer import MoELayer


def restored_weights(lowbit: dict[str, torch.Tensor],
                     factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """W_hat + U V^T per matrix (matrices without factors stay low-bit)."""
    return {name: w + (factors[name][0] @ factors[name][1].T if name in factors else 0.0)
            for name, w in lowbit.items()}


def restore_forward(layer: MoELayer, x: torch.Tensor, lowbit: list[dict[str, torch.Tensor]],
                    restored: list[dict[str, torch.Tensor]], top_n: int) -> torch.Tensor:
    """Routed-expert output y [T, hidden] for x [T, hidden]; lowbit/restored: per-expert matrices."""
    ids, _, weights = layer.route(x)
    return restore_routed(layer, x, ids, weights, lowbit, restored, top_n)


def restore_routed(layer: MoELayer, x: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor,
                   lowbit: list[dict[str, torch.Tensor]], restored: list[dict[str, torch.Tensor]],
                   top_n: int) -> torch.Tensor:
    """As restore_forward, for a routing already made: ids [T, k] ordered by descending router score,
    combine weights [T, k]."""
    if not 0 <= top_n <= layer.top_k:
        raise ValueError(f"top_n must be in [0, {layer.top_k}], got {top_n}")

    def mats_for(e: int, hit: torch.Tensor):
        return [(hit[:, top_n:].any(dim=-1), lowbit[e]), (hit[:, :top_n].any(dim=-1), restored[e])]

    return layer.combine_outputs(x, ids, weights, mats_for)
