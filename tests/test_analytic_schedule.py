"""The analytic link scheduler's fixed-order pass (_serve_in_order, with and without its idle-engine
shortcut) agrees with plain list scheduling, copy by copy and in the engines' and wire's final state."""

import numpy as np
import pytest

from simulator import analytic


@pytest.mark.parametrize("seed", range(4))
def test_fixed_order_pass_matches_list_scheduling(seed):
    rng = np.random.default_rng(seed)
    for trial in range(50):
        P, J, c = rng.integers(1, 30), rng.integers(1, 9), rng.integers(1, 4)
        valid = np.arange(J) < rng.integers(0, J + 1, P)[:, None]         # copies lead each row
        arr = np.round(rng.random((P, J)) * 5, 1) + 1.0 if trial % 2 else np.ones((P, J))
        wtime = np.round(rng.random((P, J)), 2)
        engines = np.round(rng.random((P, c)), 1) * (3.0 if trial % 3 == 0 else 1.0)  # 3.0: some busy
        wire = np.round(rng.random(P), 1)
        got_e, got_w = engines.copy(), wire.copy()
        got = analytic._schedule(got_e, got_w, arr, None, 0.3, wtime, valid)
        want_e, want_w = engines.copy(), wire.copy()
        want = analytic._list_schedule(want_e, want_w, arr, np.zeros((P, J), dtype=np.int64), 0.3, wtime, valid)
        assert np.array_equal(got, want)
        assert np.array_equal(np.sort(got_e, axis=1), np.sort(want_e, axis=1))  # engines are interchangeable
        assert np.array_equal(got_w, want_w)
