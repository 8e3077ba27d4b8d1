"""Regression goldens: each shipped real trace x fixed configurations -> stored summary figures.

A failure lists every figure that moved; if the change is deliberate, regenerate with
`python tests/goldens/regenerate.py` (prints the same diff) and commit the new goldens with it.
"""

from __future__ import annotations

import json

import pytest
from goldens.regenerate import CASES, compute, differences, golden_path, traces


def test_every_shipped_trace_has_goldens_for_every_case():
    assert traces(), "no shipped traces/esft-* found"
    for trace in traces():
        stored = json.loads(golden_path(trace).read_text())
        assert set(stored["cases"]) == set(CASES)
        assert all(len(c["figures"]) >= 10 for c in stored["cases"].values())


@pytest.mark.parametrize("trace", traces())
def test_summary_figures_match_the_goldens(trace):
    stored = json.loads(golden_path(trace).read_text())
    diff = differences(stored, compute(trace), stored["rel_tol"])
    assert not diff, "figures moved (regenerate deliberately with python tests/goldens/regenerate.py):\n" + \
        "\n".join(diff)


def test_differences_reports_moves_beyond_tolerance_only():
    old = {"cases": {"c": {"figures": {"a": 1.0, "b": 2.0, "gone": 1.0}}}}
    new = {"cases": {"c": {"figures": {"a": 1.0 + 1e-9, "b": 2.2, "new": 0.0}}}}
    assert differences(old, new, 1e-6) == ["c: b: 2 -> 2.2 (+10.00%)", "c: gone: 1.0 -> absent",
                                           "c: new: absent -> 0.0"]
