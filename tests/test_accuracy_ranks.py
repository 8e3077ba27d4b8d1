"""Rank allocators: exact small cases and hypothesis properties (sum, bounds, monotone)."""

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simulator.accuracy.ranks import allocate_energy, allocate_kurtosis, allocate_uniform, kurtosis


def test_hand_computed_allocations():
    assert allocate_uniform(4, 10) == [3, 3, 2, 2]
    assert allocate_kurtosis([3.0, 9.0], 8) == [2, 6]          # proportional 1:3
    assert allocate_kurtosis([3.0, 9.0], 8, max_rank=5) == [3, 5]
    assert allocate_kurtosis([3.0, 9.0], 8, min_rank=3) == [3, 5]
    # energy: gains of expert 0 fall slowly, expert 1 fast
    assert allocate_energy([np.array([4, 3, 2, 1.0]), np.array([5, 0.5, 0.1, 0.0])], 4) == [3, 1]
    with pytest.raises(ValueError, match="outside"):
        allocate_uniform(2, 5, max_rank=2)


def test_kurtosis_of_known_distributions():
    assert kurtosis(torch.tensor([-1.0, 1.0] * 50)) == pytest.approx(1.0)
    assert kurtosis(torch.randn(200_000, generator=torch.Generator().manual_seed(0))) == pytest.approx(3.0, abs=0.05)


bounds = st.tuples(st.integers(0, 4), st.integers(0, 12)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=200, deadline=None)
@given(kurt=st.lists(st.floats(1.0, 50.0), min_size=1, max_size=30), b=bounds, frac=st.floats(0, 1),
       alpha=st.sampled_from([0.5, 1.0, 2.0]))
@example(kurt=[1.0, 1.0000000000000002], b=(0, 1), frac=0.5, alpha=0.5)  # equal after ** 0.5
def test_kurtosis_rule_properties(kurt, b, frac, alpha):
    lo, hi = b
    n = len(kurt)
    budget = n * lo + round(frac * n * (hi - lo))
    r = allocate_kurtosis(kurt, budget, lo, hi, alpha)
    assert sum(r) == budget and all(lo <= x <= hi for x in r)
    for i in range(n):
        for j in range(n):
            if kurt[i] > kurt[j]:
                assert r[i] >= r[j]


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 30), b=bounds, frac=st.floats(0, 1))
def test_uniform_rule_properties(n, b, frac):
    lo, hi = b
    budget = n * lo + round(frac * n * (hi - lo))
    r = allocate_uniform(n, budget, lo, hi)
    assert sum(r) == budget and max(r) - min(r) <= 1 and all(lo <= x <= hi for x in r)


@settings(max_examples=100, deadline=None)
@given(sv=st.lists(st.lists(st.floats(0, 10), min_size=1, max_size=8), min_size=1, max_size=10),
       frac=st.floats(0, 1))
def test_energy_rule_properties(sv, frac):
    gains = [np.sort(np.array(s))[::-1] ** 2 for s in sv]
    hi = 8
    budget = round(frac * len(sv) * hi)
    r = allocate_energy(gains, budget, 0, hi)
    assert sum(r) == budget and all(0 <= x <= hi for x in r)
