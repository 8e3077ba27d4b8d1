"""Pareto fronts with the analytic engine's slack, and the two-pass sweep (`moesim sweep --confirm`) that
re-runs the points that could be on a front with the DES."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.sweep.front import front_rows, near_front_mask, pareto_mask, prefer_des

# throughput (higher is better) and error (lower is better) of five points A..E
X = np.array([100.0, 99.5, 90.0, 100.0, 80.0])
Y = np.array([0.5, 0.5, 0.5, 0.6, 0.1])


def test_near_front_small_case():
    assert pareto_mask(X, Y, maximize_x=True).tolist() == [True, False, False, False, True]
    # 1% slack: B (0.5% slower than A) and D (as fast as A, worse error) could beat A with the DES;
    # C (10% slower at the same error) could not
    assert near_front_mask(X, Y, 0.01, maximize_x=True).tolist() == [True, True, False, True, True]
    assert near_front_mask(X, Y, 0.0, maximize_x=True).tolist() == [True, False, False, False, True]
    # minimising x (bytes): the slack works the other way round
    assert near_front_mask(np.array([100.0, 100.5, 110.0]), np.array([1.0, 0.9, 0.8]), 0.0).tolist() == [True, True, True]
    assert near_front_mask(np.array([100.0, 100.5, 110.0]), np.array([1.0, 1.0, 1.0]), 0.01).tolist() == [True, True, False]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 20)), min_size=1, max_size=25, unique=True),
       st.booleans(), st.floats(0.0, 0.5))
def test_near_front_contains_the_front_and_grows_with_tolerance(pts, maximize, tol):
    x, y = (np.array(v, float) for v in zip(*pts))
    front = pareto_mask(x, y, maximize)
    assert np.array_equal(near_front_mask(x, y, 0.0, maximize), front)   # distinct points: no ties
    near = near_front_mask(x, y, tol, maximize)
    assert (near | ~front).all()
    assert (near_front_mask(x, y, tol + 0.1, maximize) | ~near).all()


def test_front_rows_per_config_and_prefer_des():
    t = pd.DataFrame({"point": range(5), "status": ["ok", "ok", "ok", "invalid", "ok"],
                      "hwconfig": ["a", "a", "b", "a", "a"], "model": "m", "engine": "analytic",
                      "policy": ["offload-lrc"] * 4 + ["gpu-resident"], "bits": [2, 3, 4, 5, 16],
                      "tokens_per_s": [10.0, 5.0, 1.0, 99.0, 50.0], "bytes_per_token": [1.0, 2.0, 9.0, 0.0, 0.0]})
    # in config a, point 1 is slower and moves more bytes than point 0; point 2 is alone in config b;
    # gpu-resident (point 4) would dominate them all: a reference, confirmed but outside the fronts
    assert front_rows(t, 0.01).tolist() == [True, False, True, False, True]
    des = t.iloc[[0]].assign(engine="des", point=5, tokens_per_s=10.5)
    both = prefer_des(pd.concat([t, des], ignore_index=True))
    assert both["point"].tolist() == [1, 2, 3, 4, 5]


SWEEP = """
name: confirm
base: {hwconfig: h100-pcie5, model: deepseek-v2-lite, trace: traces/esft-intent, tokens: 4, cache_bytes: 4.0e+9}
policies:
  - {policy: offload-fp16}
  - {policy: offload-lowbit, grid: {bits: [2, 3, 4]}}
  - {policy: offload-lrc, grid: {bits: [3], top_n: [1, 2], rank: [16, 64]}}
"""


def test_sweep_confirm_reruns_exactly_the_front_on_the_des(tmp_path, capsys):
    path = tmp_path / "confirm.yaml"
    path.write_text(SWEEP)
    argv = ["sweep", str(path), "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress", "--confirm"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    t = pd.read_parquet(tmp_path / "out" / "results.parquet")
    ana, des = t[t.engine == "analytic"], t[t.engine == "des"]
    assert len(ana) == 8 and list(des["point"]) == list(range(8, 8 + len(des)))
    # without accuracy the front is tokens/s vs bytes/token: more bits cost both, so only 2-bit lowbit
    # remains (the lrc points move 3-bit bytes plus factors and are slower than 3-bit lowbit)
    front = ana[front_rows(ana, 0.01)]
    assert front["policy"].tolist() == ["offload-lowbit"] and front["bits"].tolist() == [2]
    assert des[["policy", "bits"]].values.tolist() == [["offload-lowbit", 2]]
    assert np.isclose(des["tokens_per_s"].iloc[0], front["tokens_per_s"].iloc[0], rtol=1e-9)
    assert "confirmed 1 points that could be on a Pareto front with the DES" in out
    assert main(argv) == 0
    assert "(0 tasks run now, 0 invalid)" in capsys.readouterr().out


def test_sweep_confirm_rejects_des_first_pass(tmp_path, capsys):
    path = tmp_path / "confirm.yaml"
    path.write_text(SWEEP)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--confirm", "--engine", "des"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moesim sweep: error: --confirm: --confirm runs the first pass on the analytic engine")
    assert not (tmp_path / "o").exists()
