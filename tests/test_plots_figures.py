"""Figures: Pareto-front selection, roofline operating points against their roofs, breakdown bars that
add up, and `moesim plot` writing PNG + SVG (or one clear error line)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sweep_fakes import FAKE_SWEEP, fake_accuracy, fake_point

from simulator import costs
from simulator.cli import main
from simulator.config.model import load_model
from simulator.config.system import load_system
from simulator.plots.breakdown import PREFIX, bar_labels, breakdown_figure
from simulator.plots.pareto import pareto_figure, pareto_mask
from simulator.plots.roofline import operating_points
from simulator.sweep import SweepSpec, expand, run_sweep
from simulator.sweep.store import Store


def test_pareto_mask_small_cases():
    x = np.array([1.0, 2.0, 3.0, 2.0, 4.0])
    y = np.array([5.0, 3.0, 3.0, 4.0, 1.0])
    assert pareto_mask(x, y).tolist() == [True, True, False, False, True]
    # maximising x (throughput): the highest x with the lowest y wins
    assert pareto_mask(x, y, maximize_x=True).tolist() == [False, False, False, False, True]
    assert pareto_mask(np.array([1.0, 1.0]), np.array([2.0, 2.0])).tolist() == [True, False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=30), st.booleans())
def test_pareto_front_is_undominated_and_covers_every_point(pts, maximize):
    x, y = (np.array(v, float) for v in zip(*pts))
    sx = -x if maximize else x
    mask = pareto_mask(x, y, maximize)
    for i in range(len(x)):
        at_least_as_good = (sx <= sx[i]) & (y <= y[i])
        dominated = at_least_as_good & ((sx < sx[i]) | (y < y[i]))
        if mask[i]:
            assert not dominated.any()
        else:
            assert (mask & at_least_as_good).any()


@pytest.mark.parametrize("hw", ["h100-cxl-ndp", "h100-pcie5"])
def test_roofline_points_lie_under_their_roofs_with_the_engine_work(hw):
    system, model = load_system(hw), load_model("deepseek-v2-lite")
    pts = operating_points(system, model, bits=3, group=128, rank=32, tokens=4, context=512)
    assert [p["unit"] for p in pts] == ["gpu"] * 4 + (["ndp"] if system.ndp else [])
    gpu, ndp = system.gpu, system.ndp
    for p in pts:
        if p["unit"] == "gpu":
            peak, bw = gpu.flops("fp16") * gpu.compute_efficiency, gpu.hbm_bandwidth * gpu.memory_efficiency
        else:
            peak, bw = ndp.flops("int4") * ndp.compute_efficiency, ndp.memory_bandwidth * ndp.memory_efficiency
        attained, intensity = p["flops"] / p["seconds"], p["flops"] / p["bytes"]
        assert attained <= min(peak, intensity * bw) * (1 + 1e-12)
    fp16 = next(p for p in pts if p["op"] == "expert fp16 GEMM")
    assert fp16["bytes"] == 3 * 2048 * 1408 * 2 and fp16["flops"] == 4 * 2 * 3 * 2048 * 1408
    low = next(p for p in pts if p["op"].startswith("expert 3-bit"))
    assert low["bytes"] == model.expert_bytes(3, 128) and low["seconds"] == costs.gpu_time(gpu, low["flops"],
                                                                                          low["bytes"])


def test_breakdown_bars_stack_to_the_step_time_and_labels_show_what_varies():
    df = pd.DataFrame({"policy": ["offload-fp16", "offload-lrc"], "bits": [4, 3], "hwconfig": ["h", "h"],
                       PREFIX + "attention": [1.0, 1.0], PREFIX + "transfer_stall": [16.0, 2.0],
                       PREFIX + "compensation": [0.0, 0.5], "ms_per_token": [17.0, 3.5]})
    assert bar_labels(df) == ["offload-fp16", "offload-lrc\nb3"]   # bits mean nothing to fp16
    fig = breakdown_figure(df)
    ax = fig.axes[0]
    tops = {}
    for bar in ax.patches:
        x = round(bar.get_x() + bar.get_width() / 2)
        tops[x] = max(tops.get(x, 0.0), bar.get_y() + bar.get_height())
    assert tops == {0: 17.0, 1: 3.5}


@pytest.fixture(scope="module")
def fake_table(tmp_path_factory):
    from concurrent.futures import ThreadPoolExecutor

    out = tmp_path_factory.mktemp("sweep")
    with ThreadPoolExecutor(2) as ex:
        run_sweep(expand(SweepSpec.model_validate(FAKE_SWEEP)), out, ex, point_fn=fake_point,
                  accuracy_fn=fake_accuracy, progress=False)
    return out


def test_pareto_figure_has_both_panels_and_the_front(fake_table):
    table = Store(fake_table).out / "results.parquet"
    fig = pareto_figure(pd.read_parquet(table))
    left, right = fig.axes
    assert left.get_xlabel() == "link bytes per token (MB, log scale)" and right.get_xlabel() == "decode throughput (tokens/s)"
    labels = left.get_legend_handles_labels()[1]
    assert {"offload-fp16", "offload-lowbit", "offload-lrc", "front (all offloading)"} <= set(labels)


@pytest.mark.parametrize("argv, names", [
    (["roofline"], ["x.png", "x.svg"]),
    (["pareto", "TABLE"], ["x.png", "x.svg"]),
    (["breakdown", "TABLE"], ["x.png", "x.svg"]),
])
def test_plot_command_writes_png_and_svg(tmp_path, fake_table, argv, names):
    argv = [str(fake_table) if a == "TABLE" else a for a in argv]
    assert main(["plot", *argv, "--out", str(tmp_path / "x")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_bad_table_is_one_line(tmp_path, capsys):
    bad = tmp_path / "t.parquet"
    bad.write_text("not parquet")
    assert main(["plot", "pareto", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"moesim plot: error: {bad}: not a Parquet table (ArrowInvalid)"
