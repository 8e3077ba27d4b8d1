"""Low-rank compensation of a quantization residual E = W - W_hat [d_out, d_in].

Rank-r factors U [d_out, r], V [d_in, r] with E ~ U V^T, from a truncated SVD: exact (torch.linalg.svd)
or randomized (torch.svd_lowrank, Halko et al. 2011, seeded). The Eckart-Young theorem gives the best
possible rank-r residual, sqrt(sum of the tail singular values squared), which tests and the benchmark
compare against. The activation-aware variant (LQER / EoRA style) minimizes ||(E - U V^T) diag(a)||_F,
where a [d_in] is the RMS of each input channel over real activations: SVD of E diag(a), then V /= a.
Factors are stored in fp16, or in int8 with one fp16 scale per column of U and of V (symmetric absmax:
scale_j = max_i |M_ij| / 127, codes round(M / scale) in [-127, 127]); either way they are returned already
rounded through their storage format, as float32. Bytes: simulator.accounting.FACTOR_FORMATS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Method = Literal["exact", "randomized"]
FactorDtype = Literal["fp16", "int8"]


def store_factor(m: torch.Tensor, dtype: FactorDtype = "fp16") -> torch.Tensor:
    """m [d, r] rounded through its storage format (fp16, or int8 with an fp16 scale per column)."""
    if dtype == "fp16":
        return m.half().float()
    if dtype != "int8":
        raise ValueError(f"unknown factor dtype {dtype!r}")
    scale = (m.abs().amax(dim=0) / 127).half().float().clamp_min(2.0 ** -24)  # [r]
    return torch.clamp(torch.round(m / scale), -127, 127) * scale


def truncated_svd(e: torch.Tensor, rank: int, method: Method = "exact", seed: int = 0,
                  oversample: int = 8, niter: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-`rank` singular triplets (U [m, r], S [r], V [n, r]) of e [m, n]."""
    if rank == 0:
        return e.new_zeros(e.shape[0], 0), e.new_zeros(0), e.new_zeros(e.shape[1], 0)
    if method == "exact":
        u, s, vh = torch.linalg.svd(e, full_matrices=False)
        return u[:, :rank], s[:rank], vh[:rank].T
    if method != "randomized":
        raise ValueError(f"unknown SVD method {method!r}")
    q = min(rank + oversample, *e.shape)
    with torch.random.fork_rng(devices=[]):  # svd_lowrank draws from the global generator
        torch.manual_seed(seed)
        u, s, v = torch.svd_lowrank(e, q=q, niter=niter)
    return u[:, :rank], s[:rank], v[:, :rank]


@dataclass(frozen=True)
class FactorBasis:
    """Truncated SVD of the (optionally activation-scaled) residual; factors of any rank <= kept."""

    u: torch.Tensor                    # [d_out, q]
    s: torch.Tensor                    # [q] descending
    v: torch.Tensor                    # [d_in, q]
    act_scale: torch.Tensor | None     # [d_in] activation RMS the residual was scaled by, or None

    def factors(self, rank: int, dtype: FactorDtype = "fp16") -> tuple[torch.Tensor, torch.Tensor]:
        """(U [d_out, r], V [d_in, r]) with U V^T ~ E, rounded through their storage format."""
        rank = min(rank, self.s.numel())
        root = self.s[:rank].sqrt()
        u, v = self.u[:, :rank] * root, self.v[:, :rank] * root
        if self.act_scale is not None:
            v = v / self.act_scale[:, None]
        return store_factor(u, dtype), store_factor(v, dtype)


def factor_basis(e: torch.Tensor, keep: int, method: Method = "exact", seed: int = 0,
                 act_rms: torch.Tensor | None = None) -> FactorBasis:
    """Keep the top `keep` singular triplets of e [d_out, d_in] (scaled by act_rms [d_in] if given)."""
    keep = max(0, min(keep, *e.shape))
    scale = None if act_rms is None else act_rms.float().clamp_min(1e-6)
    target = e.float() if scale is None else e.float() * scale
    u, s, v = truncated_svd(target, keep, method, seed)
    return FactorBasis(u, s, v, scale)


def lowrank_factors(e: torch.Tensor, rank: int, method: Method = "exact", seed: int = 0,
                    act_rms: torch.Tensor | None = None, dtype: FactorDtype = "fp16") -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (U [d_out, r], V [d_in, r]) with U V^T ~ e, rounded through their storage format."""
    return factor_basis(e, rank, method, seed, act_rms).factors(rank, dtype)


def eckart_young_residual(singular_values: torch.Tensor, rank: int) -> float:
    """Frobenius norm of the best rank-`rank` approximation's residual."""
    return float(singular_values[rank:].double().pow(2).sum().sqrt())
