"""Compress one expert: quantize its matrices, measure the residual, build its low-rank factor basis.

An expert is a dict of matrices W [d_out, d_in] (gate/up/down, or in/out for a MoEfied BERT FFN).
Its kurtosis is taken over all its weights together; its relative error is
||E||_F / ||W||_F with both norms over all its matrices (E = W - W_hat, or E - U V^T after compensation).
Bytes come from simulator.accounting, matrix by matrix with each matrix's real shape, so experts whose
matrices differ from the 3-matrix gate/up/down layout are charged correctly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from simulator.accounting import FACTOR_FORMATS, factor_bytes, matrix_bytes
from simulator.accuracy.lowrank import FactorBasis, Method, factor_basis
from simulator.accuracy.quantize import hqq_refine, quantize
from simulator.accuracy.ranks import kurtosis


@dataclass
class QuantizedExpert:
    weights: dict[str, torch.Tensor]   # original W per matrix
    lowbit: dict[str, torch.Tensor]    # dequantized W_hat per matrix
    kurtosis: float
    bits: int
    group: int

    @property
    def weight_norm(self) -> float:
        return math.sqrt(sum(float(w.double().pow(2).sum()) for w in self.weights.values()))

    def residual(self, name: str) -> torch.Tensor:
        return self.weights[name] - self.lowbit[name]

    def rel_error(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> float:
        """||E - U V^T||_F / ||W||_F over all matrices (no factors: the plain quantization error)."""
        total = 0.0
        for name in self.weights:
            e = self.residual(name)
            if factors:
                u, v = factors[name]
                e = e - u @ v.T
            total += float(e.double().pow(2).sum())
        return math.sqrt(total) / max(self.weight_norm, 1e-30)

    def bytes_lowbit(self) -> float:
        return sum(matrix_bytes(w.shape[1], w.shape[0], self.bits, self.group) for w in self.weights.values())

    def bytes_factors(self, rank: int, dtype: str = "fp16") -> float:
        return sum(factor_bytes(w.shape[1], w.shape[0], min(rank, *w.shape), **FACTOR_FORMATS[dtype])
                   for w in self.weights.values())


def quantize_expert(weights: dict[str, torch.Tensor], bits: int, group: int, hqq: bool = False) -> QuantizedExpert:
    lowbit = {}
    for name, w in weights.items():
        q = quantize(w, bits, group)
        lowbit[name] = (hqq_refine(w, q) if hqq else q).dequantize()
    flat = torch.cat([w.reshape(-1) for w in weights.values()])
    return QuantizedExpert(weights, lowbit, kurtosis(flat), bits, group)


def expert_bases(qe: QuantizedExpert, keep: int, method: Method = "exact", seed: int = 0,
                 act_rms: dict[str, torch.Tensor] | None = None) -> dict[str, FactorBasis]:
    """Factor basis of each matrix's residual, `keep` singular triplets each."""
    return {name: factor_basis(qe.residual(name), keep, method, seed, (act_rms or {}).get(name))
            for name in qe.weights}


def energy_gains(qe: QuantizedExpert, bases: dict[str, FactorBasis]) -> torch.Tensor:
    """gain[r] = relative squared error removed by the (r+1)-th unit of rank (all matrices together)."""
    keep = max(b.s.numel() for b in bases.values())
    gain = torch.zeros(keep, dtype=torch.float64)
    for b in bases.values():
        gain[: b.s.numel()] += b.s.double() ** 2
    return gain / max(qe.weight_norm ** 2, 1e-30)


def expert_input_rms(layer, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """RMS of each expert matrix's input channels over the tokens routed to it (x [T, hidden]).

    Inputs: gate/up/in see x; down sees silu(gate x) * up x; out sees gelu(in x + b). Experts that no
    token reaches get no entry (their compensation falls back to the plain SVD).
    """
    ids, _, _ = layer.route(x)
    stats = []
    for e, mats in enumerate(layer.experts):
        xe = x[(ids == e).any(dim=-1)]
        if xe.shape[0] == 0:
            stats.append({})
            continue
        rms = xe.pow(2).mean(dim=0).sqrt()
        if layer.kind == "glu":
            hmid = torch.nn.functional.silu(xe @ mats["gate"].T) * (xe @ mats["up"].T)
            stats.append({"gate": rms, "up": rms, "down": hmid.pow(2).mean(dim=0).sqrt()})
        else:
            hmid = torch.nn.functional.gelu(xe @ mats["in"].T + layer.expert_bias[e])
            stats.append({"in": rms, "out": hmid.pow(2).mean(dim=0).sqrt()})
    return stats
