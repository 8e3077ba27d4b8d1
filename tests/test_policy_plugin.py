"""A policy is one file plus one registry line: a throwaway policy written into a temporary package and
registered with one line is simulated on both engines, swept with accuracy columns and plotted in its
declared style, with no other edit anywhere.

The throwaway policy restores every (token, expert) pair whatever --top-n says, so it must simulate
exactly like offload-lrc at top-n = k (where every routed token is restored) and its accuracy key must
be offload-lrc's at top-n = k: exact expectations that go through the declarations, not the name.
"""

from __future__ import annotations

import importlib
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.markers import MarkerStyle
from sweep_fakes import fake_accuracy

from simulator.config.run import RunSpec
from simulator.policies import registry
from simulator.precision import accuracy_bits_problem
from simulator.simulate import run_spec
from simulator.sweep import SweepSpec, expand, run_sweep
from simulator.sweep.accuracy import evaluate_accuracy

POLICY_FILE = '''
"""toy-restore-all: every token routed to an expert is restored (low-bit + factors) on the GPU."""

from simulator.policies.base import Placement, PlotStyle, Policy


class ToyRestoreAll(Policy):
    name = "toy-restore-all"
    label = "toy: every pair restored"
    style = PlotStyle("tab:cyan", "h", method=True)
    expert_blind = True
    compensates = True
    slot_forms = ("lowbit", "factors")
    top_n_runs = rest_runs = "restored"

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        return Placement(gpu_tokens=tokens, gpu_form="lowbit", comp_tokens=tokens)
'''
NAME, LABEL, K = "toy-restore-all", "toy: every pair restored", 6   # K: deepseek-v2-lite's top-k
BASE = {"hwconfig": "h100-pcie5", "model": "deepseek-v2-lite", "trace": None, "synthetic_tokens": 32,
        "tokens": 8, "rank": 16}
COMPARED = ("tokens_per_s", "ms_per_token", "bytes_per_token", "link_bytes_per_token",
            "breakdown_ms_per_token", "cache_hit_rate")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    pkg = tmp_path_factory.mktemp("plugin") / "toy_policies"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "restore_all.py").write_text(textwrap.dedent(POLICY_FILE))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(pkg.parent))
        cls = importlib.import_module("toy_policies.restore_all").ToyRestoreAll
        mp.setitem(registry.POLICIES, cls.name, cls)          # the one registry line
        yield cls


@pytest.mark.parametrize("engine", ["des", "analytic"])
def test_simulated_on_both_engines_like_offload_lrc_restoring_every_token(toy, engine):
    _, got = run_spec(RunSpec(**BASE, policy=NAME, bits=3, top_n=1, engine=engine))
    _, want = run_spec(RunSpec(**BASE, policy="offload-lrc", bits=3, top_n=K, engine=engine))
    assert got["tokens"] == want["tokens"] == 8
    assert got["bytes_per_token"] > 0 and got["breakdown_ms_per_token"]["compensation"] > 0
    for key in COMPARED:
        assert got[key] == want[key], key


def test_both_engines_agree_exactly(toy):
    runs = [run_spec(RunSpec(**BASE, policy=NAME, bits=2, engine=e))[1] for e in ("des", "analytic")]
    for key in COMPARED:
        assert runs[0][key] == runs[1][key], key


def _accuracy(key: dict) -> dict:
    """The fake accuracy model where the real one can measure, the real check where it cannot."""
    return evaluate_accuracy(key) if accuracy_bits_problem(key["bits"]) else fake_accuracy(key)


@pytest.fixture(scope="module")
def swept(toy, tmp_path_factory):
    spec = SweepSpec.model_validate({
        "name": "plugin", "base": BASE, "accuracy": {"weights": "minilm", "alloc": "kurtosis"},
        "policies": [{"policy": NAME, "grid": {"bits": [2, 3, 12]}},
                     {"policy": "offload-lrc", "bits": 3, "top_n": K}]})
    points = expand(spec)
    out = tmp_path_factory.mktemp("sweep")
    with ThreadPoolExecutor(1) as ex:   # threads: the workers see the registry line
        first = run_sweep(points, out, ex, accuracy_fn=_accuracy, progress=False)
        again = run_sweep(points, out, ex, accuracy_fn=_accuracy, progress=False)
    return points, first, again


def test_swept_with_accuracy_columns_from_its_declared_mapping(swept):
    points, first, again = swept
    toy2, toy3, toy12, lrc = points
    assert (toy2.accuracy["top_n"], toy2.accuracy["rank"], toy2.accuracy["alloc"]) == (K, 16, "kurtosis")
    assert toy12.accuracy["bits"] == 12                             # measured as asked, refused with a reason
    assert toy3.accuracy_id == lrc.accuracy_id                      # the same measurement as lrc at n = k
    assert not first.failed and first.ran == 4 + 3                  # 4 points, 3 distinct accuracy keys
    t = first.table
    assert list(t["status"]) == ["ok"] * 4
    err = t["accuracy.rel_output_error"].tolist()
    assert err[:2] == [2.0 ** -2 / 7, 2.0 ** -3 / 7] and err[3] == err[1]   # fake: 2^-b / (1 + r n / 16)
    assert np.isnan(err[2])
    assert t["accuracy.reason"].tolist()[2] == ("accuracy: the accuracy model quantizes to 1-8 bits or runs "
                                                "full precision (16); 12 bits cannot be measured")
    for key in ("tokens_per_s", "bytes_per_token"):
        assert t[key][1] == t[key][3]                               # toy at n=2 simulates as lrc at n=k
    assert again.ran == 0 and not again.failed                      # the invalid accuracy is not retried
    pd.testing.assert_frame_equal(again.table, t)


def test_plotted_in_its_declared_style(swept, tmp_path):
    from simulator.plots.breakdown import bar_labels, breakdown_figure
    from simulator.plots.pareto import pareto_figure
    from simulator.plots.style import save

    table = swept[1].table
    fig = pareto_figure(table)
    for ax in fig.axes[:2]:
        (dots,) = [c for c in ax.collections if c.get_label() == LABEL]
        assert np.allclose(dots.get_facecolor()[0], to_rgba("tab:cyan", 0.75))   # a method: translucent
        marker = MarkerStyle("h")
        assert np.allclose(dots.get_paths()[0].vertices, marker.get_path().transformed(marker.get_transform()).vertices)
        assert len(dots.get_offsets()) == 2                          # bits 12 has no accuracy to draw
        texts = {t.get_text() for t in ax.texts}
        assert {"2b r16", "3b r16"} <= texts                         # its front labelled with its parameters
    assert LABEL in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert [p.name for p in save(fig, tmp_path / "pareto")] == ["pareto.png", "pareto.svg"]
    assert bar_labels(table) == [f"{LABEL}\nb2", f"{LABEL}\nb3", f"{LABEL}\nb12", "offload-lrc\nb3\nn6"]
    assert [p.name for p in save(breakdown_figure(table), tmp_path / "bars")] == ["bars.png", "bars.svg"]
