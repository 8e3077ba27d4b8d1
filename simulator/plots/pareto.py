"""Pareto fronts of the bandwidth-accuracy-throughput trade-off from a sweep table.

Two panels per hardware config: link bytes per token vs accuracy error (lower-left is better) and
tokens/s vs accuracy error (lower-right is better). Every point is one sweep row; colour, marker and
legend name are those the row's policy declares (Policy.style, Policy.label), so the methods (declared
`method`: small translucent points) read against uniform low-bit and the baselines. Each policy's own
front is a thin line in its colour; the dashed black line is the front over all offloading points.
Labels (bits / n / rank) go on every baseline and reference point and on the methods' front points only,
placed last by style.place_labels: no two labels overlap (greedy, in display coordinates, with leader
lines), and a label with no free place is left out rather than drawn over another. Reference policies (declared
`reference`, e.g. every expert in HBM) are labelled points outside it, at the error of the bits they
run; one that moves no bytes is left out of the bytes panel's log axis.
"""

from __future__ import annotations

import pandas as pd

from simulator.errors import UserError
from simulator.plots.style import figure, place_axes_labels, policy_label, policy_style
from simulator.sweep.accuracy import weight_parameters
from simulator.sweep.front import ERROR, is_reference, pareto_mask, prefer_des


def point_label(row: pd.Series) -> str:
    """'3b n2 r64' from the parameters that matter to the row's policy; its display name if none do."""
    short = {"bits": "{}b", "top_n": "n{}", "rank": "r{}"}
    parts = [short[p].format(int(row[p])) for p in weight_parameters(row["policy"]) if pd.notna(row.get(p))]
    return " ".join(parts) or policy_label(row["policy"])


def _front(df: pd.DataFrame, x: str, error: str, maximize_x: bool) -> pd.DataFrame:
    return df[pareto_mask(df[x], df[error], maximize_x)].sort_values(x)


def _panel(ax, df: pd.DataFrame, x: str, error: str, maximize_x: bool, xlabel: str, scale: float) -> list:
    """Draw one panel's points and fronts; return its labels [(x, y, text, colour)], most important first
    (baselines and references, then the methods' front points), for place_labels once the layout is final."""
    reference, method = is_reference(df["policy"]), df["policy"].map(lambda p: policy_style(p).method)
    labels = [(row[x] * scale, row[error], point_label(row), "black") for _, row in df[~method].iterrows()]
    for policy, g in df.groupby("policy", sort=False):
        colour, marker, is_method = policy_style(policy)
        ax.scatter(g[x] * scale, g[error], color=colour, marker=marker, s=40 if is_method else 70,
                   alpha=0.75 if is_method else 1.0, edgecolors="black" if not is_method else "none",
                   linewidths=0.5, label=policy_label(policy), zorder=3 if is_method else 4)
        if len(g) > 1 and not reference[g.index].any():   # the policy's own front, in its colour
            on = _front(g, x, error, maximize_x)
            ax.plot(on[x] * scale, on[error], color=colour, lw=1, alpha=0.6, zorder=2)
            if is_method:
                labels += [(row[x] * scale, row[error], point_label(row), colour) for _, row in on.iterrows()]
    on = _front(df[~reference], x, error, maximize_x)
    ax.plot(on[x] * scale, on[error], ls="--", color="black", lw=0.8, zorder=2, label="front (all offloading)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("relative output error (accuracy model)")
    return labels


def pareto_figure(df: pd.DataFrame, error: str = ERROR):
    """Both Pareto panels for each hwconfig in the table (one row of panels per hwconfig)."""
    need = [c for c in (error, "bytes_per_token", "tokens_per_s", "policy", "hwconfig") if c not in df]
    if need:
        raise UserError(f"the table lacks column(s) {', '.join(need)}; run a sweep with an accuracy: section",
                        field="table")
    df = prefer_des(df)  # a point the DES confirmed is drawn once, with the DES figures
    df = df[(df.get("status", "ok") == "ok") & df[error].notna()]
    if df.empty:
        raise UserError("no rows with both simulation and accuracy results", field="table")
    configs = list(dict.fromkeys(df["hwconfig"]))
    fig, axes = figure(ncols=2, nrows=len(configs), width=6.0, height=4.5)
    labels = []
    for i, hw in enumerate(configs):
        g = df[df["hwconfig"] == hw]
        model = ", ".join(dict.fromkeys(g["model"])) if "model" in g else ""
        left, right = axes[2 * i], axes[2 * i + 1]
        labels.append((left, _panel(left, g[g["bytes_per_token"] > 0], "bytes_per_token", error, False,
                                    "link bytes per token (MB, log scale)", 1e-6)))
        left.set_xscale("log")
        labels.append((right, _panel(right, g, "tokens_per_s", error, True, "decode throughput (tokens/s)", 1.0)))
        left.set_title(f"{hw} / {model}: bytes vs error")
        right.set_title(f"{hw} / {model}: throughput vs error")
        left.legend(fontsize=7)
    fig.tight_layout()
    place_axes_labels(fig, labels)        # on the final layout, clear of each other and of the legend
    return fig
