"""`moesim plot energy`: bars stacked by the seven energy components (heights = the components, tops =
J/token), the J/token-vs-error Pareto holding exactly the front points, rows without energy left out,
PNG + SVG from the CLI, and one clear line for a table without energy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator.cli import main
from simulator.energy import COMPONENTS
from simulator.plots.energy import PREFIX, TOTAL, energy_bars_figure, energy_pareto_figure
from simulator.plots.style import policy_label
from simulator.sweep.front import ERROR, pareto_mask

POLICIES = ("offload-fp16", "offload-lowbit", "offload-lrc", "gpu-resident")


def _table() -> pd.DataFrame:
    """Fake sweep rows with deterministic energy components and accuracy errors (no engine involved)."""
    rows = []
    rng = np.random.default_rng(0)
    for i, (policy, bits, top_n, rank) in enumerate([
            ("offload-fp16", None, None, None), ("offload-lowbit", 2, None, None), ("offload-lowbit", 3, None, None),
            ("offload-lowbit", 4, None, None), ("offload-lrc", 2, 2, 32), ("offload-lrc", 3, 1, 16),
            ("offload-lrc", 3, 2, 64), ("offload-lrc", 2, 1, 8), ("gpu-resident", 16, None, None)]):
        parts = dict(zip(COMPONENTS, rng.uniform(0.01, 0.5, len(COMPONENTS)).round(3)))
        if policy == "gpu-resident":
            parts["link"] = 0.0
        row = {"policy": policy, "bits": bits, "top_n": top_n, "rank": rank, "hwconfig": "h100-pcie5",
               "model": "deepseek-v2-lite", "status": "ok", TOTAL: sum(parts.values()),
               ERROR: 0.0 if bits in (None, 16) else 2.0 ** -bits / (1 + (rank or 0) * (top_n or 0) / 16)}
        row.update({PREFIX + c: v for c, v in parts.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _stacks(ax) -> dict[int, list[tuple[float, float]]]:
    """Per bar position: [(bottom, height)] of its segments in drawing order."""
    out: dict[int, list] = {}
    for bar in ax.patches:
        out.setdefault(round(bar.get_x() + bar.get_width() / 2), []).append((bar.get_y(), bar.get_height()))
    return out


def test_bars_are_the_components_stacked_and_top_at_the_total():
    df = _table()
    ax = energy_bars_figure(df).axes[0]
    stacks = _stacks(ax)
    assert sorted(stacks) == list(range(len(df)))
    for i, row in df.iterrows():
        segments = stacks[i]
        assert [h for _, h in segments] == pytest.approx([row[PREFIX + c] for c in COMPONENTS])
        bottoms = np.cumsum([0.0] + [h for _, h in segments[:-1]])
        assert [b for b, _ in segments] == pytest.approx(bottoms)
        assert sum(h for _, h in segments) == pytest.approx(row[TOTAL])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(legend) == {c.replace("_", " ") for c in COMPONENTS} | {"J per token"}
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0] == policy_label("offload-fp16") and ticks[-1].startswith(policy_label("gpu-resident"))


def test_rows_without_energy_or_failed_are_left_out_and_none_left_is_one_error():
    df = _table()
    df.loc[0, TOTAL] = np.nan          # a hwconfig without energy figures
    df.loc[1, "status"] = "error"
    ax = energy_bars_figure(df).axes[0]
    assert len(_stacks(ax)) == len(df) - 2
    from simulator.errors import UserError

    with pytest.raises(UserError, match="no row has an energy estimate"):
        energy_bars_figure(df.assign(**{TOTAL: np.nan}))
    with pytest.raises(UserError, match=f"no {TOTAL} column"):
        energy_bars_figure(df.drop(columns=[TOTAL]))


def test_pareto_front_line_is_exactly_the_non_reference_front():
    df = _table()
    fig = energy_pareto_figure(df)
    (ax,) = fig.axes
    front_line = next(line for line in ax.get_lines() if line.get_label() == "front (all offloading)")
    offload = df[df["policy"] != "gpu-resident"]       # the reference policy is outside the front
    on = offload[pareto_mask(offload[TOTAL], offload[ERROR])]
    got = sorted(zip(front_line.get_xdata(), front_line.get_ydata()))
    want = sorted(zip(on[TOTAL], on[ERROR]))
    assert len(got) == len(want) > 0  # (pytest.approx takes no nested tuples in pytest >= 9: compare flat)
    assert [v for point in got for v in point] == pytest.approx([v for point in want for v in point])
    assert 0 < len(on) < len(offload)
    # every row is drawn once, in its policy's colour and name
    names = ax.get_legend_handles_labels()[1]
    assert {policy_label(p) for p in POLICIES} <= set(names)
    drawn = sum(len(c.get_offsets()) for c in ax.collections)
    assert drawn == len(df)
    assert ax.get_xlabel() == "energy per generated token (J)"


def test_pareto_needs_accuracy_columns():
    from simulator.errors import UserError

    with pytest.raises(UserError, match="accuracy"):
        energy_pareto_figure(_table().drop(columns=[ERROR]))


@pytest.mark.parametrize("accuracy, names", [
    (True, ["x-bars.png", "x-bars.svg", "x-pareto.png", "x-pareto.svg"]),
    (False, ["x-bars.png", "x-bars.svg"]),
])
def test_plot_energy_command_writes_the_figures(tmp_path, accuracy, names):
    table = tmp_path / "t" / "results.parquet"
    table.parent.mkdir()
    df = _table() if accuracy else _table().drop(columns=[ERROR])
    df.to_parquet(table)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["plot", "energy", str(table.parent), "--out", str(out / "x")]) == 0
    assert sorted(p.name for p in out.iterdir()) == names


def test_plot_energy_without_energy_columns_is_one_line(tmp_path, capsys):
    table = tmp_path / "results.parquet"
    _table().drop(columns=[TOTAL]).to_parquet(table)
    assert main(["plot", "energy", str(table), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"no {TOTAL} column" in err
