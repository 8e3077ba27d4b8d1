"""Figures: Pareto-front selection, roofline operating points against their roofs, breakdown bars that
add up, and `moesim plot` writing PNG + SVG (or one clear error line)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.text import Text
from sweep_fakes import FAKE_SWEEP, fake_accuracy, fake_point

from simulator import costs
from simulator.cli import main
from simulator.config.model import load_model
from simulator.config.system import load_system
from simulator.plots.breakdown import PREFIX, bar_labels, breakdown_figure
from simulator.plots.pareto import pareto_figure, pareto_mask, point_label
from simulator.plots.roofline import operating_points, roofline_figure
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


ERR = "accuracy.rel_output_error"


def _crowded_table() -> pd.DataFrame:
    """108 method points (3 bits x 6 n x 6 ranks) whose fronts hold ~30 points each within a few
    millimetres of one another, plus uniform low-bit and the fp16 offload."""
    rows = []
    for bits in (2, 3, 4):
        for n in range(1, 7):
            for r in (8, 16, 32, 64, 128, 256):
                link = 1e6 * bits + 2e3 * r * n
                rows.append({"policy": "offload-lrc", "bits": bits, "top_n": n, "rank": r, "bytes_per_token": link,
                             "tokens_per_s": 1e3 / (1 + link / 1e6), ERR: 2.0 ** -bits / (1 + r * n / 64)})
        rows.append({"policy": "offload-lowbit", "bits": bits, "bytes_per_token": 1e6 * bits,
                     "tokens_per_s": 1e3 / (1 + bits), ERR: 2.0 ** -bits})
    rows.append({"policy": "offload-fp16", "bytes_per_token": 16e6, "tokens_per_s": 1e3 / 17, ERR: 0.0})
    return pd.DataFrame(rows).assign(hwconfig="h100-pcie5", model="deepseek-v2-lite", status="ok")



def _text_boxes(ax):
    """Display-coordinate boxes of the axes' annotation texts (the text alone, not its leader line)."""
    renderer = ax.figure.canvas.get_renderer()
    return [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts]


def test_pareto_labels_of_a_crowded_front_do_not_overlap(tmp_path):
    df = _crowded_table()
    fig = pareto_figure(df)
    fig.savefig(tmp_path / "crowded.png", bbox_inches="tight")   # saving must not move the layout either
    fig.canvas.draw()                              # text boxes as drawn (a text's box is updated by drawing)
    for ax, x, maximize in zip(fig.axes, ("bytes_per_token", "tokens_per_s"), (False, True)):
        boxes = _text_boxes(ax)
        lrc = df[df["policy"] == "offload-lrc"]
        front = {point_label(r) for _, r in lrc[pareto_mask(lrc[x], lrc[ERR], maximize)].iterrows()}
        allowed = front | {point_label(r) for _, r in df[df["policy"] != "offload-lrc"].iterrows()}
        names = [name for name, _ in boxes]
        assert set(names) <= allowed and len(names) == len(set(names))   # front and baseline points only
        assert len(front & set(names)) >= 0.6 * len(front) >= 15         # most of a crowded front is labelled
        area = ax.get_window_extent()
        legend = ax.get_legend().get_window_extent() if ax.get_legend() else None
        for i, (a, box) in enumerate(boxes):
            assert area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1, a
            assert legend is None or not box.overlaps(legend), a
            for b, other in boxes[i + 1:]:
                assert not box.overlaps(other), (a, b)


def test_roofline_says_its_roof_is_derated_with_the_efficiency_values():
    system = load_system("h100-cxl-ndp")
    gpu = system.gpu.model_copy(update={"compute_efficiency": 0.55, "memory_efficiency": 0.65})
    ndp = system.ndp.model_copy(update={"compute_efficiency": 0.45, "memory_efficiency": 0.35})
    system = system.model_copy(update={"gpu": gpu, "ndp": ndp})
    fig = roofline_figure(system, load_model("deepseek-v2-lite"))
    left, right = fig.axes
    texts = {ax: " ".join([ax.get_title(), ax.get_ylabel(), *(t.get_text() for t in ax.get_legend().get_texts())])
             for ax in (left, right)}
    assert "compute_efficiency 0.55" in texts[left] and "memory_efficiency 0.65" in texts[left]
    assert "compute_efficiency 0.45" in texts[right] and "memory_efficiency 0.35" in texts[right]
    assert "derated" in left.get_ylabel()
    peak, bw = gpu.flops("fp16"), gpu.hbm_bandwidth
    assert f"peak {peak / 1e12:.3g} TFLOP/s x 0.55" in texts[left] and f"{bw / 1e12:.3g} TB/s x 0.65" in texts[left]
    assert f"{peak * 0.55 / 1e12:.3g} TFLOP/s" in texts[left]
    roof = left.get_lines()[0]
    assert roof.get_ydata().max() == pytest.approx(peak * 0.55)
    x, y = roof.get_xdata(), roof.get_ydata()
    assert y[0] == pytest.approx(x[0] * bw * 0.65)
    int4 = right.get_lines()[0]
    assert int4.get_ydata().max() == pytest.approx(ndp.flops("int4") * 0.45)


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
