"""One MoE layer's routed experts as plain tensors, and the layer's full-precision forward.

Two expert kinds:
- "glu"  (Mixtral, DeepSeek-V2, OLMoE, Qwen-MoE): y_e = down(silu(gate x) * up x); matrices gate, up
  [ffn, hidden] and down [hidden, ffn].
- "gelu" (a MoEfied BERT FFN): y_e = out(gelu(in x + b_in)); matrices in [n, hidden] (rows of W_in)
  and out [hidden, n] (columns of W_out); the FFN's output bias is added once per token.
Routing: logits = x R^T (+ router bias), probabilities p = softmax(logits), top-k experts by p. Combine
weights: "ones" (MoEfication: the selected experts' neurons simply fire), "softmax" (p of the selected,
times a scaling factor) or "softmax_renorm" (p renormalized over the top-k). A layer taken from a loaded
transformers model instead routes with that model's own router module (`route_fn`), so group-limited or
otherwise family-specific routing is reproduced exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F


@dataclass
class MoELayer:
    index: int                          # MoE-layer index 0..L-1
    router: torch.Tensor                # [E, hidden]
    experts: list[dict[str, torch.Tensor]]  # per expert: matrix name -> W [d_out, d_in]
    top_k: int
    kind: Literal["glu", "gelu"] = "glu"
    combine: Literal["ones", "softmax", "softmax_renorm"] = "softmax_renorm"
    scale: float = 1.0                  # routed scaling factor (DeepSeek)
    router_bias: torch.Tensor | None = None             # [E]
    expert_bias: list[torch.Tensor] = field(default_factory=list)  # gelu: b_in [n] per expert
    out_bias: torch.Tensor | None = None                # gelu: [hidden]
    route_fn: Callable | None = None    # x -> (ids, probs, weights) as route() returns; overrides the rule

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [T, hidden] -> (ids [T, k] by descending probability, probs [T, k], combine weights [T, k])."""
        if self.route_fn is not None:
            return self.route_fn(x)
        logits = x @ self.router.T
        if self.router_bias is not None:
            logits = logits + self.router_bias
        probs = torch.softmax(logits.float(), dim=-1)
        top_p, ids = torch.topk(probs, self.top_k, dim=-1)  # sorted descending
        if self.combine == "ones":
            weights = torch.ones_like(top_p)
        elif self.combine == "softmax_renorm":
            weights = top_p / top_p.sum(dim=-1, keepdim=True)
        else:
            weights = top_p * self.scale
        return ids, top_p, weights

    def expert_forward(self, e: int, x: torch.Tensor, mats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Expert e on tokens x [t, hidden] with the given matrices (original, low-bit or restored)."""
        if self.kind == "glu":
            return (F.silu(x @ mats["gate"].T) * (x @ mats["up"].T)) @ mats["down"].T
        return F.gelu(x @ mats["in"].T + self.expert_bias[e]) @ mats["out"].T

    def combine_outputs(self, x: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor,
                        mats_for) -> torch.Tensor:
        """y [T, hidden] = sum over each token's top-k of weight * expert output; `mats_for(e, slot_mask)`
        yields (token mask, matrices) pairs so callers can give different tokens different matrices."""
        y = torch.zeros(x.shape[0], self.router.shape[1], dtype=torch.float32)
        for e in range(self.num_experts):
            hit = ids == e  # [T, k]
            if not hit.any():
                continue
            for tokens, mats in mats_for(e, hit):
                if tokens.any():
                    w = (weights * hit)[tokens].sum(dim=-1, keepdim=True)
                    y[tokens] += w * self.expert_forward(e, x[tokens], mats)
        if self.out_bias is not None:
            y = y + self.out_bias
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full-precision routed-expert output [T, hidden]."""
        ids, _, weights = self.route(x)
        return self.combine_outputs(x, ids, weights, lambda e, hit: [(hit.any(dim=-1), self.experts[e])])
