"""Stacked decode-time breakdown per policy / configuration (the seed's Figure 1 left).

Input: a table with one row per run and columns breakdown_ms_per_token.<category> (a sweep's
results.parquet, or flattened simulate summaries). Each row is one bar; the bar's label lists the input
columns that differ between rows (hwconfig, policy by its declared display name, bits, top_n, rank,
batch, ...).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.errors import UserError
from simulator.plots.style import CATEGORIES, figure, policy_label
from simulator.sweep.accuracy import weight_parameters

PREFIX = "breakdown_ms_per_token."
LABEL_COLUMNS = ("hwconfig", "policy", "bits", "top_n", "rank", "batch", "cache_experts_per_layer",
                 "cache_bytes", "engine")
SHORT = {"bits": "b", "top_n": "n", "rank": "r", "batch": "B", "cache_experts_per_layer": "cache/layer "}


def bar_labels(df: pd.DataFrame) -> list[str]:
    """One label per row from the label columns whose values differ between rows (bits, top_n and rank
    only where the row's policy uses them)."""
    cols = [c for c in LABEL_COLUMNS if c in df and df[c].astype(str).nunique() > 1] or ["policy"]
    unused = {"bits", "top_n", "rank"}

    def part(row, c) -> str:
        v = row[c]
        if v is None or (isinstance(v, float) and np.isnan(v)) or (
                c in unused and c not in weight_parameters(row.get("policy", ""))):
            return ""
        v = int(v) if isinstance(v, float) and v.is_integer() else v
        if c == "policy":
            return policy_label(v)
        return f"{SHORT[c]}{v}" if c in SHORT else str(v)
    return ["\n".join(p for c in cols if (p := part(row, c))) for _, row in df.iterrows()]


def breakdown_figure(df: pd.DataFrame, title: str = "decode time per token"):
    """Stacked bars of ms per token by category, one bar per row of `df`."""
    cats = [c for c in CATEGORIES if PREFIX + c in df]
    if not cats:
        raise UserError(f"the table has no {PREFIX}* columns (is it a sweep or simulate table?)", field="table")
    df = df[df.get("status", pd.Series("ok", index=df.index)) == "ok"].reset_index(drop=True)
    return stacked_bars(df, {PREFIX + c: (c.replace("_", " "), CATEGORIES[c]) for c in cats},
                        "ms_per_token" if "ms_per_token" in df else None, "ms per token",
                        "time per decode step (ms per token)", title)


def stacked_bars(df: pd.DataFrame, parts: dict[str, tuple[str, str]], total: str | None, total_label: str,
                 ylabel: str, title: str):
    """One bar per row of `df`, stacked by the columns of `parts` (column -> (legend label, colour)) in
    order, the column `total` marked on each bar; bars labelled by bar_labels."""
    fig, (ax,) = figure(width=max(5.0, 0.75 * len(df) + 2.5), height=4.5)
    x = np.arange(len(df))
    bottom = np.zeros(len(df))
    for column, (label, colour) in parts.items():
        values = df[column].fillna(0).to_numpy(dtype=float) if column in df else np.zeros(len(df))
        ax.bar(x, values, bottom=bottom, color=colour, label=label, width=0.7)
        bottom += values
    if total is not None:
        ax.scatter(x, df[total], marker="_", color="black", s=200, zorder=3, label=total_label)
    ax.set_xticks(x, bar_labels(df), fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncols=2)
    ax.grid(axis="x", visible=False)
    fig.tight_layout()
    return fig
