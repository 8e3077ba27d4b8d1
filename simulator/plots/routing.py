"""Routing figures: which experts each token uses in one layer, and how router scores fall with rank.

- expert_heatmap: experts (rows) x tokens (columns) for one MoE layer; a cell shows the router score of
  a selected expert (blank if not selected), sequence boundaries as dashed lines (the seed's "decoding
  expert router patterns").
- score_distribution: distribution of the rank-1..rank-k router scores (box = quartiles, whiskers =
  5th-95th percentile, dot = mean) (the seed's "router score distribution").
Both take plain arrays and return a matplotlib Figure; trace_figures builds both from a Trace.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from simulator.errors import UserError


def expert_heatmap(expert_ids: np.ndarray, scores: np.ndarray, num_experts: int,
                   seq_id: np.ndarray | None = None, first_token: int = 0, title: str = ""):
    """expert_ids, scores: [tokens, k] for one layer; seq_id: [tokens] (optional)."""
    tokens = expert_ids.shape[0]
    grid = np.full((num_experts, tokens), np.nan)                       # [E, tokens]
    cols = np.broadcast_to(np.arange(tokens)[:, None], expert_ids.shape)
    grid[expert_ids.astype(np.int64), cols] = scores
    fig, ax = plt.subplots(figsize=(min(3 + tokens / 25, 14), min(2 + num_experts / 10, 9)))
    extent = (first_token - 0.5, first_token + tokens - 0.5, num_experts - 0.5, -0.5)
    positive = scores.size and float(scores.min()) > 0                 # probabilities: log colour scale
    norm = LogNorm(vmin=float(scores.min()), vmax=float(scores.max())) if positive else None
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", interpolation="nearest", cmap="viridis",
                      extent=extent, norm=norm)
    if seq_id is not None:
        for cut in np.flatnonzero(np.diff(seq_id)) + 1:
            ax.axvline(first_token + cut - 0.5, color="0.4", ls="--", lw=0.8)
    ax.set_xlabel("token index in trace (dashed: sequence boundary)")
    ax.set_ylabel("expert id")
    ax.set_title(title or "routed experts per token")
    fig.colorbar(image, ax=ax, label="router score of selected expert" + (" (log scale)" if positive else ""))
    fig.tight_layout()
    return fig


def score_distribution(scores: np.ndarray, title: str = "", score_label: str = "router score"):
    """scores: [n, k] router scores sorted descending along k (e.g. one layer, or layers flattened)."""
    k = scores.shape[1]
    ranks = np.arange(1, k + 1)
    fig, ax = plt.subplots(figsize=(max(4, 1 + 0.6 * k), 3.5))
    ax.boxplot([scores[:, r] for r in range(k)], positions=ranks, whis=(5, 95), showfliers=False,
               widths=0.6)
    ax.plot(ranks, scores.mean(axis=0), "o", color="C1", label="mean")
    ax.set_xlabel("rank of expert by router score (1 = top-1)")
    ax.set_ylabel(score_label)
    ax.set_title(title or "router score by rank")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def trace_figures(trace, layer: int, first_token: int = 0, tokens: int = 200) -> dict:
    """Both figures for MoE layer `layer` of a Trace: {"expert_heatmap": Figure, "score_distribution": ...}."""
    m = trace.meta
    if not 0 <= layer < m.layers:
        raise UserError(f"layer {layer} out of range [0, {m.layers})", field="layer")
    if not 0 <= first_token < trace.tokens:
        raise UserError(f"first token {first_token} out of range [0, {trace.tokens})", field="first_token")
    end = min(trace.tokens, first_token + max(tokens, 1))
    label = "router score" + (" (softmax probability)" if m.score_kind == "softmax" else f" ({m.score_kind})")
    return {
        "expert_heatmap": expert_heatmap(
            np.asarray(trace.expert_ids[first_token:end, layer]), np.asarray(trace.scores[first_token:end, layer]),
            m.num_experts, np.asarray(trace.seq_id[first_token:end]), first_token,
            title=f"{m.name}: MoE layer {layer}, tokens {first_token}-{end - 1}, top-{m.top_k} of "
                  f"{m.num_experts}"),
        "score_distribution": score_distribution(
            np.asarray(trace.scores[:, layer]), score_label=label,
            title=f"{m.name}: MoE layer {layer}, {trace.tokens} tokens"),
    }


def save_figures(figures: dict, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Write each figure as <prefix><name>.png and .svg in out_dir; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        for ext in ("png", "svg"):
            path = out / f"{prefix}{name}.{ext}"
            tmp = out / f".{prefix}{name}.tmp.{ext}"
            fig.savefig(tmp, dpi=120)
            tmp.replace(path)
            paths.append(path)
        plt.close(fig)
    return paths
