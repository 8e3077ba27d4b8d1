"""The analytic path's shared-cache fast path hands over to the replay mid-run when the cache would
start evicting; hits, evictions and times must still match the DES."""

import pytest

from simulator import analytic
from simulator.config.run import RunSpec
from simulator.simulate import run_spec


def test_shared_cache_hand_over_mid_run_matches_des(monkeypatch):
    monkeypatch.setattr(analytic, "CHUNK", 16)
    stamps = []
    hand_over = analytic._VectorSource.hand_over

    def spy(self):
        stamps.append(self.stamp)
        hand_over(self)

    monkeypatch.setattr(analytic._VectorSource, "hand_over", spy)
    kw = {"policy": "offload-fp16", "hwconfig": "h100-pcie5", "cache_bytes": 24e9, "tokens": 200}
    des = run_spec(RunSpec(**kw))[1]
    ana = run_spec(RunSpec(engine="analytic", **kw))[1]
    assert len(stamps) == 1 and stamps[0] > 0  # some chunks ran vectorised, then the replay took over
    assert ana["cache_evictions"] > 0
    for key in ("cache_hits", "cache_misses", "cache_evictions"):
        assert ana[key] == des[key], key
    assert ana["tokens_per_s"] == pytest.approx(des["tokens_per_s"], rel=1e-9)
