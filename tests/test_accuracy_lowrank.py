"""Compensators: exact SVD reaches the Eckart-Young optimum, randomized SVD is close and seeded."""

import torch

from simulator.accounting import factor_bytes
from simulator.accuracy.lowrank import eckart_young_residual, factor_basis, lowrank_factors


def _matrix(seed=0, m=48, n=80):
    g = torch.Generator().manual_seed(seed)
    # decaying spectrum, like a quantization residual with some structure
    return (torch.randn(m, 12, generator=g) @ torch.randn(12, n, generator=g)) + 0.1 * torch.randn(m, n, generator=g)


def test_exact_factors_hit_eckart_young():
    e = _matrix()
    s = torch.linalg.svdvals(e)
    for r in (0, 1, 5, 12, 48):
        u, v = lowrank_factors(e, r)
        assert u.shape == (48, r) and v.shape == (80, r)
        got = float((e - u @ v.T).norm())
        assert abs(got - eckart_young_residual(s, r)) <= 1e-3 * float(e.norm())  # fp16 storage only


def test_randomized_close_to_optimum_and_deterministic():
    e = _matrix(1)
    s = torch.linalg.svdvals(e)
    u1, v1 = lowrank_factors(e, 8, "randomized", seed=3)
    u2, v2 = lowrank_factors(e, 8, "randomized", seed=3)
    assert torch.equal(u1, u2) and torch.equal(v1, v2)
    assert float((e - u1 @ v1.T).norm()) <= 1.05 * eckart_young_residual(s, 8)


def test_activation_aware_wins_on_its_own_objective():
    e = _matrix(2)
    a = torch.linspace(0.1, 10.0, 80)  # input-channel RMS
    plain_u, plain_v = lowrank_factors(e, 4)
    aw_u, aw_v = lowrank_factors(e, 4, act_rms=a)
    weighted = lambda u, v: float(((e - u @ v.T) * a).norm())
    assert weighted(aw_u, aw_v) < weighted(plain_u, plain_v)


def test_basis_slices_match_direct_factors_and_bytes():
    e = _matrix(3)
    basis = factor_basis(e, 10)
    u, v = basis.factors(6)
    du, dv = lowrank_factors(e, 6)
    assert torch.allclose(u @ v.T, du @ dv.T, atol=1e-3)
    assert (u.numel() + v.numel()) * 2 == factor_bytes(80, 48, 6)
