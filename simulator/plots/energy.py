"""Energy per token from a sweep table: stacked joules per token by component, and its Pareto against
accuracy error.

Input: a table with one row per run and the flattened energy summary (simulator.energy, via
simulator.metrics.summarize): `energy.joules_per_token` and `energy.breakdown_j_per_token.<component>`
for the seven components, which add up to joules_per_token. Rows whose hwconfig gives no energy figures
have no energy (NaN columns) and are left out, as are failed rows.

    energy_bars_figure     one bar per row, stacked by component (gpu_compute ... static), the total
                           marked; labels list the input columns that differ between rows, policies by
                           their declared display names (breakdown.bar_labels)
    energy_pareto_figure   per hwconfig, J/token vs accuracy error (lower-left is better): each policy's
                           points in its declared style with its own front, the dashed front over all
                           non-reference policies; labels as in the bytes/throughput Pareto (pareto._panel)
"""

from __future__ import annotations

import pandas as pd

from simulator.energy import COMPONENTS
from simulator.errors import UserError
from simulator.plots.breakdown import stacked_bars
from simulator.plots.pareto import _panel
from simulator.plots.style import figure, place_axes_labels
from simulator.sweep.front import ERROR, prefer_des

TOTAL = "energy.joules_per_token"
PREFIX = "energy.breakdown_j_per_token."
# component colours in stacking order: the GPU's own work first, then data movement, then idle power
COLOURS = {"gpu_compute": "tab:orange", "gpu_memory": "tab:blue", "link": "tab:red", "host_memory": "tab:olive",
           "cxl_memory": "tab:pink", "ndp_compute": "tab:purple", "static": "lightgray"}
assert tuple(COLOURS) == tuple(COMPONENTS), "one colour per energy component, in simulator.energy's order"


def energy_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that ran and have an energy estimate (one clear error when there are none)."""
    if TOTAL not in df:
        raise UserError(f"the table has no {TOTAL} column (a sweep or simulate table from a moesim with energy)",
                        field="table")
    ok = df.get("status", pd.Series("ok", index=df.index)) == "ok"
    rows = df[ok & df[TOTAL].notna()]
    if rows.empty:
        where = ", ".join(dict.fromkeys(df["hwconfig"])) if "hwconfig" in df else "the table"
        raise UserError(f"no row has an energy estimate ({where}: no energy figures in the hwconfig?)",
                        field="table")
    return rows.reset_index(drop=True)


def energy_bars_figure(df: pd.DataFrame, title: str = "energy per token"):
    """Stacked bars of joules per generated token by component, one bar per row with energy."""
    df = energy_rows(df)
    return stacked_bars(df, {PREFIX + c: (c.replace("_", " "), COLOURS[c]) for c in COMPONENTS}, TOTAL,
                        "J per token", "energy per generated token (J)", title)


def energy_pareto_figure(df: pd.DataFrame, error: str = ERROR):
    """J/token vs accuracy error, one panel per hwconfig (log x when the energies span a decade)."""
    need = [c for c in (error, "policy", "hwconfig") if c not in df]
    if need:
        raise UserError(f"the table lacks column(s) {', '.join(need)}; run a sweep with an accuracy: section",
                        field="table")
    df = energy_rows(prefer_des(df))
    df = df[df[error].notna()]
    if df.empty:
        raise UserError("no rows with both an energy estimate and accuracy results", field="table")
    configs = list(dict.fromkeys(df["hwconfig"]))
    fig, axes = figure(ncols=len(configs), width=6.0, height=4.5)
    labels = []
    for ax, hw in zip(axes, configs):
        g = df[df["hwconfig"] == hw]
        model = ", ".join(dict.fromkeys(g["model"])) if "model" in g else ""
        labels.append((ax, _panel(ax, g, TOTAL, error, False, "energy per generated token (J)", 1.0)))
        if g[TOTAL].max() > 10 * g[TOTAL].min() > 0:
            ax.set_xscale("log")
        ax.set_title(f"{hw} / {model}: energy vs error".replace(" / :", ":"))
        ax.legend(fontsize=7)
    fig.tight_layout()
    place_axes_labels(fig, labels)
    return fig
