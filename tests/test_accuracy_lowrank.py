"""Compensators: exact SVD reaches the Eckart-Young optimum, randomized SVD is close and seeded."""

import torch
from accuracy_threads import one_thread  # noqa: F401

from simulator.accounting import FACTOR_FORMATS, expert_factor_bytes, factor_bytes
from simulator.accuracy.lowrank import eckart_young_residual, factor_basis, lowrank_factors, store_factor
from simulator.accuracy.quantize import quantize


def _matrix(seed=0, m=48, n=80):
    g = torch.Generator().manual_seed(seed)
    # decaying spectrum, like a quantization residual with some structure
    return (torch.randn(m, 12, generator=g) @ torch.randn(12, n, generator=g)) + 0.1 * torch.randn(m, n, generator=g)


def _quant_residual():
    """E = W - W_hat of a heavy-tailed 96 x 384 matrix at 3 bits, group 128 (a flat-ish spectrum)."""
    w = torch.randn(96, 384, generator=torch.Generator().manual_seed(5)) ** 3 * 0.02
    return w - quantize(w, 3, 128).dequantize()


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


def test_int8_factors_per_column_scale_small_error_and_bytes():
    m = torch.tensor([[1.0, -0.5], [-2.54, 0.25], [0.0, 0.0]])
    q = store_factor(m, "int8")  # column scales 2.54 / 127 = 0.02 and 0.5 / 127 (fp16-rounded)
    scale = (m.abs().amax(dim=0) / 127).half().float()
    assert torch.equal(q, torch.round(m / scale) * scale) and ((q - m).abs() <= scale / 2 + 1e-7).all()
    for e in (_matrix(4, 96, 384), _quant_residual()):
        total, opt = float(e.norm()) ** 2, eckart_young_residual(torch.linalg.svdvals(e), 16)
        (u, v), (qu, qv) = lowrank_factors(e, 16), lowrank_factors(e, 16, dtype="int8")
        fp16, int8 = float((e - u @ v.T).norm()), float((e - qu @ qv.T).norm())
        # int8 gives back under 0.1% of the squared error the factors remove (measured: 1e-4 to 2e-4)
        assert fp16 <= int8 and int8 ** 2 - fp16 ** 2 < 1e-3 * (total - opt ** 2)
    # bytes: 1 per value + an fp16 scale per column of U and of V; fp16 results unchanged
    assert factor_bytes(384, 96, 16, **FACTOR_FORMATS["int8"]) == 16 * (384 + 96) + 2 * 16 * 2
    assert factor_bytes(384, 96, 16, **FACTOR_FORMATS["fp16"]) == factor_bytes(384, 96, 16) == 16 * 480 * 2
    assert expert_factor_bytes(384, 96, 8, gated=False, **FACTOR_FORMATS["int8"]) == 2 * (8 * 480 + 32)
