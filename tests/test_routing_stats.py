"""Routing statistics on a hand-computable trace, chunk-size independence, and the CLI."""

import json
import math

import numpy as np
import pytest

from simulator.cli import main
from simulator.routing import stats as st
from simulator.routing.trace import Trace, TraceMeta, save_trace


def tiny_trace() -> Trace:
    """4 experts, k=2, 1 layer; sequence 0 routes {0,1} {1,2} {2,3}, sequence 1 routes {1,0}."""
    ids = np.array([[[0, 1]], [[1, 2]], [[2, 3]], [[1, 0]]], np.int16)          # [4, 1, 2]
    scores = np.array([[[0.6, 0.4]], [[0.5, 0.5]], [[0.7, 0.3]], [[0.9, 0.1]]], np.float32)
    meta = TraceMeta(name="tiny", model="toy", num_experts=4, top_k=2, layers=1, source="test")
    return Trace(meta, ids, scores, np.array([0, 0, 0, 1], np.int32), np.array([0, 1, 2, 0], np.int32))


def test_hand_computed_statistics():
    s = st.trace_stats(tiny_trace())
    p = np.array([2, 3, 2, 1]) / 8                                  # selections of experts 0..3
    assert s["tokens"] == 4 and s["sequences"] == 2 and s["layers"] == 1
    assert s["top_k"] == 2 and s["num_experts"] == 4
    assert s["entropy"] == [pytest.approx(-(p * np.log2(p)).sum())]
    assert s["hottest_share"] == [pytest.approx(3 / 8)]
    # pairs within a sequence: ({0,1},{1,2}) and ({1,2},{2,3}) share one expert each; the
    # sequence boundary (token 2 -> token 3) is not a pair
    assert s["consecutive_pairs"] == 2
    assert s["consecutive_overlap"] == [pytest.approx(0.5)]
    assert s["chance_overlap"] == 0.5
    assert s["independent_overlap"] == [pytest.approx(2 * (p ** 2).sum())]
    assert s["mean_scores"] == [pytest.approx(2.7 / 4), pytest.approx(1.3 / 4)]
    assert s["max_entropy"] == math.log2(4)


def test_chunking_does_not_change_results(monkeypatch):
    from simulator.config.model import load_model
    from simulator.routing.synthetic import synthesize

    trace = synthesize(load_model("olmoe-1b-7b"), 300, seed=1, sequences=7)
    whole = st.trace_stats(trace)
    monkeypatch.setattr(st, "CHUNK_ELEMENTS", 1)   # one token per chunk: every pair crosses a chunk edge
    assert st.trace_stats(trace) == whole


def test_cli_stats_json_and_table(tmp_path, capsys):
    save_trace(tiny_trace(), tmp_path / "t")
    assert main(["trace", "stats", str(tmp_path / "t"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["consecutive_overlap"] == [0.5] and out["tokens"] == 4
    assert main(["trace", "stats", str(tmp_path / "t")]) == 0
    table = capsys.readouterr().out
    assert "tiny (toy): 4 tokens in 2 sequences" in table
    assert "    0    1.906    0.375    0.500    0.562" in table
