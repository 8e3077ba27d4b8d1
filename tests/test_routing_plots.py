"""Routing figures: the heat map holds exactly the selected scores; the CLI writes PNG and SVG."""

import numpy as np

from simulator.cli import main
from simulator.plots.routing import expert_heatmap, score_distribution
from simulator.routing.trace import Trace, TraceMeta, save_trace


def test_heatmap_cells_are_selected_scores():
    ids = np.array([[0, 2], [2, 1]])
    scores = np.array([[0.5, 0.2], [0.6, 0.1]])
    fig = expert_heatmap(ids, scores, num_experts=3, seq_id=np.array([0, 1]), first_token=10)
    ax = fig.axes[0]
    grid = ax.images[0].get_array()
    assert grid.mask.tolist() == [[False, True], [True, False], [False, False]]
    assert grid.filled(0).tolist() == [[0.5, 0], [0, 0.1], [0.2, 0.6]]
    assert ax.get_xlabel().startswith("token index") and ax.get_ylabel() == "expert id"
    assert [line.get_xdata()[0] for line in ax.lines] == [10.5]   # boundary between the two sequences


def test_score_distribution_marks_rank_means():
    scores = np.array([[0.5, 0.2], [0.3, 0.1]])
    ax = score_distribution(scores).axes[0]
    means = next(line for line in ax.lines if line.get_label() == "mean")
    assert means.get_xdata().tolist() == [1, 2] and np.allclose(means.get_ydata(), [0.4, 0.15])


def test_cli_plot_writes_png_and_svg(tmp_path, capsys):
    ids = np.array([[[0, 1]], [[1, 2]], [[2, 3]]], np.int16)
    scores = np.array([[[0.6, 0.4]], [[0.5, 0.5]], [[0.7, 0.3]]], np.float32)
    meta = TraceMeta(name="tiny", model="toy", num_experts=4, top_k=2, layers=1, source="test")
    save_trace(Trace(meta, ids, scores, np.zeros(3, np.int32), np.arange(3, dtype=np.int32)), tmp_path / "t")
    assert main(["trace", "plot", str(tmp_path / "t"), "--layer", "0", "--out", str(tmp_path / "f")]) == 0
    names = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert names == [f"tiny-layer0-{n}.{e}" for n in ("expert_heatmap", "score_distribution")
                     for e in ("png", "svg")]
    assert (tmp_path / "f" / "tiny-layer0-expert_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["trace", "plot", str(tmp_path / "t"), "--layer", "1", "--out", str(tmp_path / "g")]) == 2
    assert capsys.readouterr().err.strip().endswith("layer: layer 1 out of range [0, 1)")
