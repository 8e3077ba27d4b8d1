"""Accuracy figures (the seed's Figure 4 a/b) from DataFrames.

- error_vs_rank: mean relative residual ||W - W_hat - U V^T||_F / ||W||_F vs compensation rank, one line
  per bit width (rank 0 = before compensation).
- kurtosis_vs_error: per expert, weight kurtosis vs relative quantization error, with Pearson and
  Spearman correlation in the title.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd


def error_vs_rank(df: pd.DataFrame, title: str = ""):
    """df: columns bits, rank, err."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for bits, part in df.sort_values("rank").groupby("bits"):
        line, = ax.plot(part["rank"], part["err"], marker="o", label=f"{bits}-bit + rank r")
        ax.axhline(part.loc[part["rank"] == 0, "err"].iloc[0] if (part["rank"] == 0).any() else float("nan"),
                   color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("compensation rank r per matrix")
    ax.set_ylabel("relative residual ||E - UV^T|| / ||W||")
    ax.set_title(title or "residual before (dotted) and after compensation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def correlation(df: pd.DataFrame, x: str = "kurtosis", y: str = "err_before") -> tuple[float, float]:
    """(Pearson, Spearman) correlation of two plan columns."""
    return float(df[x].corr(df[y])), float(df[x].rank().corr(df[y].rank()))


def kurtosis_vs_error(plan: pd.DataFrame, title: str = ""):
    """plan: columns kurtosis, err_before (one row per expert), optionally layer for colours."""
    pearson, spearman = correlation(plan)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sc = ax.scatter(plan["kurtosis"], plan["err_before"], c=plan.get("layer"), s=12, cmap="viridis")
    if "layer" in plan:
        fig.colorbar(sc, ax=ax, label="MoE layer")
    ax.set_xscale("log")
    ax.set_xlabel("expert weight kurtosis")
    ax.set_ylabel("relative quantization error ||E|| / ||W||")
    ax.set_title(f"{title} Pearson {pearson:.2f}, Spearman {spearman:.2f}".strip())
    fig.tight_layout()
    return fig


def write_figures(weights: str, settings, out_dir: str | Path) -> list[Path]:
    """Compute both figures' data for `weights` at `settings.bits`/`group` and write PNGs into out_dir."""
    from dataclasses import replace

    from simulator.accuracy.api import compensate, rank_sweep

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sweep = rank_sweep(weights, sorted({2, 3, 4, settings.bits}), settings.group, [0, 4, 8, 16, 32, 64],
                       method=settings.method, hqq=settings.hqq)
    plan, _ = compensate(weights, replace(settings, rank_budget=0.0))
    paths = []
    for name, fig in (("error_vs_rank.png", error_vs_rank(sweep)),
                      ("kurtosis_vs_error.png", kurtosis_vs_error(plan, f"{settings.bits}-bit, g{settings.group}:"))):
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        paths.append(out / name)
    return paths
