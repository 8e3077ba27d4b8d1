"""The vectorised path times one (step, layer) row per class of identical rows; timing every row instead
must give the same per-step columns, bit for bit."""

import numpy as np
import pytest

from simulator import analytic
from simulator.config.run import RunSpec
from simulator.simulate import build_scenario


@pytest.mark.parametrize("kw", [{"policy": "ndp-lrc"},
                                {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 8}])
def test_classed_rows_time_like_every_row(monkeypatch, kw):
    spec = RunSpec(tokens=128, **kw)
    timed = []
    chunk = analytic._VectorSource.chunk

    def spy(self, tok, lens):
        per = chunk(self, tok, lens)
        timed.append((len(self.flat.step), len(self.flat.of)))
        return per

    monkeypatch.setattr(analytic._VectorSource, "chunk", spy)
    classed = analytic.run(build_scenario(spec))
    assert timed and all(d < rows for d, rows in timed)  # rows repeated: fewer were timed
    init = analytic._VectorSource.__init__

    def no_classes(self, eng):
        init(self, eng)
        self.repeats = False

    monkeypatch.setattr(analytic._VectorSource, "__init__", no_classes)
    timed.clear()
    every = analytic.run(build_scenario(spec))
    assert all(d == rows for d, rows in timed)
    assert classed.steps.keys() == every.steps.keys()
    for col in classed.steps:
        assert np.array_equal(np.asarray(classed.steps[col]), np.asarray(every.steps[col])), col
    assert classed.decode_time == every.decode_time
    assert classed.counters == every.counters
