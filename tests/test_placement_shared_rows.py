"""The placement table's code -> row maps agree: a dense code map (small steps), rows shared by (class of
experts alike, tokens, restored) for expert-blind policies with large steps (serving's prefill chunks), and
the sorted sparse map of other policies, give the same rows for the same placements."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config.run import RunSpec
from simulator.placement import PlacementTable
from simulator.simulate import build_scenario


def _row(table: PlacementTable, le: int, tokens: int, restored: int) -> tuple:
    code = int(table.code(le, tokens, restored))
    table.ensure(np.array([code]))
    r = table.first_row(code)
    rows = table.rows()
    return tuple(np.concatenate([rows.ti[r:r + table.V].ravel(), rows.tf[r:r + table.V].ravel(),
                                 rows.tb[r:r + table.V].ravel(), rows.tw[r:r + table.V].ravel()]).tolist())


@pytest.mark.parametrize("policy, shared", [("offload-lrc", True), ("ndp-lrc", True), ("offload-mixed", False)])
def test_large_steps_give_the_rows_small_steps_give(policy, shared):
    sc = build_scenario(RunSpec(policy=policy, hwconfig="h100-cxl-ndp", tokens=2, cache_bytes="4 GB"))
    small, large = PlacementTable(sc), PlacementTable(sc)
    small.start(20)    # dense code map
    large.start(600)   # too many codes for a dense map
    assert len(small.slot) and not len(large.slot) and large.shared_rows == shared
    rng = np.random.default_rng(0)
    picks = [(int(le), int(t), int(rng.integers(0, t + 1))) for le, t in
             zip(rng.integers(0, small.L * small.E, 40), rng.integers(1, 21, 40))]
    for le, t, r in picks + picks[:5]:  # repeats find the rows tabled before
        assert _row(large, le, t, r) == _row(small, le, t, r), (le, t, r)
    if shared:  # nothing tabled per expert: rows only per distinct (class, tokens, restored)
        assert len(large.known) == 0
        assert len(large.rows().ti) == large.V * len({(int(large.cls[le]), t, r) for le, t, r in picks})
    else:
        assert list(large.known) == sorted(large.known) and len(large.known) == len(set(picks))
