"""Serving latency against the offered rate: p50 and p99 TTFT and TPOT, one line per policy (and box).

Input: rate-sweep tables of `moesim serve --rates ... --out DIR` (DIR/rates.parquet), one row per rate
with `rate`, `policy`, `hwconfig`, `ttft_s.p50`, `ttft_s.p99`, `tpot_s.p50`, `tpot_s.p99` and
`slo.ttft_s`, `slo.tpot_s`. Two panels (TTFT, TPOT), log y; each (policy, hwconfig) a line in the
policy's declared style, p50 solid, p99 dashed; the SLO as a dotted horizontal line.
"""

from __future__ import annotations

import pandas as pd

from simulator.errors import UserError
from simulator.plots.style import figure, policy_label, policy_style

NEEDED = ("rate", "policy", "hwconfig", "ttft_s.p50", "ttft_s.p99", "tpot_s.p50", "tpot_s.p99")
LINES = {"p50": "-", "p99": "--"}


def latency_figure(df: pd.DataFrame, title: str = "serving latency vs offered rate"):
    missing = [c for c in NEEDED if c not in df]
    if missing:
        raise UserError(f"the table lacks {', '.join(missing)} (a `moesim serve --rates ... --out DIR` rates.parquet)",
                        field="table")
    fig, (ax_ttft, ax_tpot) = figure(ncols=2, width=5.0, height=3.8)
    boxes = list(dict.fromkeys(df["hwconfig"]))
    for (hw, policy), g in df.sort_values("rate").groupby(["hwconfig", "policy"], sort=False):
        style = policy_style(policy)
        label = policy_label(policy) + (f" ({hw})" if len(boxes) > 1 else "")
        for ax, metric in ((ax_ttft, "ttft_s"), (ax_tpot, "tpot_s")):
            for q, ls in LINES.items():
                ax.plot(g["rate"], g[f"{metric}.{q}"], ls=ls, color=style.color, marker=style.marker, ms=4,
                        label=f"{label} {q}" if ax is ax_ttft else None, alpha=1.0 if hw == boxes[0] else 0.6)
    for ax, metric, name in ((ax_ttft, "ttft_s", "TTFT"), (ax_tpot, "tpot_s", "TPOT")):
        slo = f"slo.{metric}"
        if slo in df and df[slo].notna().any():
            ax.axhline(float(df[slo].iloc[0]), color="k", ls=":", lw=1, label="SLO" if ax is ax_ttft else None)
        ax.set_xlabel("offered rate (requests/s)")
        ax.set_ylabel(f"{name} (s)")
        ax.set_yscale("log")
        ax.set_title(f"{name}: p50 solid, p99 dashed")
    ax_ttft.legend(loc="upper left", fontsize=6, ncol=1)
    fig.suptitle(title)
    return fig
