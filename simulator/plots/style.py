"""Shared look of moesim's figures: each policy's declared colour, marker and name (Policy.style, .label),
readable sizes, PNG + SVG output."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from simulator.fileio import atomic_write
from simulator.policies.base import PlotStyle
from simulator.policies.registry import declared

# breakdown categories in stacking order, with their colours
CATEGORIES = {
    "attention": "tab:blue", "router": "tab:cyan", "expert_gpu": "tab:orange", "compensation": "tab:red",
    "expert_ndp": "tab:purple", "transfer_stall": "tab:gray", "other": "lightgray",
}
RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8,
      "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110, "savefig.bbox": "tight"}


def policy_style(policy: str) -> PlotStyle:
    """(colour, marker, method) as the policy declares them (Policy.style; the base defaults for a name
    that is not registered): the methods are filled circles in strong colours, baselines other shapes."""
    return declared(policy).style


def policy_label(policy: str) -> str:
    """The policy's display name (Policy.label, else its CLI name; an unregistered name as it is)."""
    cls = declared(policy)
    return cls.display_name() if cls.name == policy else policy


def figure(ncols: int = 1, width: float = 5.5, height: float = 4.0, nrows: int = 1):
    """A new figure with moesim's style: (fig, axes); axes is a flat list, row by row."""
    plt.rcParams.update(RC)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, list(axes.ravel())


def save(fig, prefix: str | Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write PREFIX.png and PREFIX.svg atomically; closes the figure; returns the paths."""
    prefix = Path(prefix)
    paths = []
    for ext in formats:
        path = prefix.with_name(f"{prefix.name}.{ext}")
        atomic_write(path, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight"))
        paths.append(path)
    plt.close(fig)
    return paths
