"""BatchSchedule.take (the analytic path's chunk of steps) yields the DES's steps (next_step)."""

import random

import numpy as np
import pytest

from simulator.schedule import BatchSchedule


@pytest.mark.parametrize("seed", range(5))
def test_take_matches_next_step(seed):
    rng = random.Random(seed)
    for _ in range(60):
        bounds, pos = [], 0
        for _ in range(rng.randint(0, 8)):
            length = rng.randint(0, 6)
            bounds.append((pos, pos + length))
            pos += length
        batch, prompt = rng.randint(1, 4), rng.choice([0, 2])
        ref, got = BatchSchedule(bounds, batch), BatchSchedule(bounds, batch)
        if prompt:
            assert (ref.prefill(prompt) == got.prefill(prompt)).all()
        want = []
        while (idx := ref.next_step()) is not None:
            want.append(idx)
        steps = []
        while True:
            tok, lens = got.take(rng.randint(1, 5))
            if not len(lens):
                break
            steps += np.split(tok, np.cumsum(lens)[:-1])
        assert [s.tolist() for s in steps] == [s.tolist() for s in want], (bounds, batch)
