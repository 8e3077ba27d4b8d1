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


# label offsets tried around a point, in points: rings of growing radius, 8 directions each, the diagonals
# first (a diagonal label clears its own marker at the smallest radius)
_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
_RADII = (5, 10, 16, 24, 34, 46, 60)
_LABEL_BOX = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75}   # within `pad`
_LEADER_FROM = 16          # a label this far (points) or further from its point gets a thin leader line


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _segment_hits_box(p, q, box) -> bool:
    """Whether the segment p-q (display coordinates) meets the box (Liang-Barsky clipping)."""
    (x0, y0), (x1, y1) = p, q
    t0, t1, dx, dy = 0.0, 1.0, x1 - x0, y1 - y0
    for d, lo, hi, v in ((dx, box.x0, box.x1, x0), (dy, box.y0, box.y1, y0)):
        if d == 0:
            if not lo <= v <= hi:
                return False
            continue
        a, b = (lo - v) / d, (hi - v) / d
        t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
        if t0 > t1:
            return False
    return True


def _marker_boxes(ax):
    """Display-coordinate boxes of every scatter marker in the axes (side = sqrt(size) points)."""
    from matplotlib.collections import PathCollection
    from matplotlib.transforms import Bbox

    to_px = ax.figure.dpi / 72.0
    boxes = []
    for coll in ax.collections:
        if not isinstance(coll, PathCollection):
            continue
        offsets = coll.get_offset_transform().transform(coll.get_offsets())
        sizes = coll.get_sizes()
        for i, (x, y) in enumerate(offsets):
            half = 0.5 * float(sizes[i % len(sizes)] if len(sizes) else 36.0) ** 0.5 * to_px
            boxes.append(Bbox.from_extents(x - half, y - half, x + half, y + half))
    return boxes


def _offset(radius: float, direction: tuple[int, int]) -> dict:
    """annotate() keywords putting a label `radius` points from its point, aligned away from it."""
    dx, dy = direction
    norm = (dx * dx + dy * dy) ** 0.5
    return {"xytext": (radius * dx / norm, radius * dy / norm),
            "ha": "left" if dx > 0 else "right" if dx < 0 else "center",
            "va": "bottom" if dy > 0 else "top" if dy < 0 else "center"}


def place_labels(ax, items, avoid=(), fontsize: float = 7, pad: float = 1.0) -> list:
    """Annotate points so that no two labels overlap (greedy, in display coordinates).

    items: [(x, y, text, colour)] in data coordinates, in order of priority. Call once the figure's layout
    is final (tight_layout done, legend position fixed): each label goes to the first offset (rings of
    growing radius around its point, nearest first) whose text box, grown by `pad` points, lies inside the
    axes and overlaps no label placed before and no box in `avoid` (display coordinates, e.g. the
    legend's), preferring one clear of every scatter marker. A label away from its point gets a thin
    leader line; one with no free place at all is left out. Returns the annotations placed."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    grow = pad * fig.dpi / 72.0
    area = ax.get_window_extent(renderer)
    markers, taken, leaders, placed = _marker_boxes(ax), list(avoid), [], []
    for x, y, text, colour in items:
        anchor = tuple(ax.transData.transform((x, y)))
        probe = ax.annotate(text, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=fontsize,
                            annotation_clip=False)
        best = None                                  # (radius, direction, box, leader, clear of markers)
        for radius in _RADII:
            for direction in _DIRECTIONS:
                kw = _offset(radius, direction)
                probe.set_position(kw["xytext"])
                probe.set_ha(kw["ha"])
                probe.set_va(kw["va"])
                b = probe.get_window_extent(renderer)
                box = Bbox.from_extents(b.x0 - grow, b.y0 - grow, b.x1 + grow, b.y1 + grow)
                inside = area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1
                if not inside or any(_boxes_overlap(box, t) for t in taken):
                    continue
                if any(_segment_hits_box(p, q, box) for p, q in leaders):
                    continue
                leader = (anchor, ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)) if radius >= _LEADER_FROM else None
                if leader is not None and any(_segment_hits_box(*leader, t) for t in taken):
                    continue
                clear = not any(_boxes_overlap(box, m) for m in markers)
                if best is None or (clear and not best[4]):
                    best = (radius, direction, box, leader, clear)
                if clear:
                    break
            if best is not None and best[4]:
                break
        probe.remove()
        if best is None:
            continue
        radius, direction, box, leader, _ = best
        arrow = ({"arrowprops": {"arrowstyle": "-", "color": colour, "lw": 0.5, "alpha": 0.7, "shrinkA": 0,
                                 "shrinkB": 2}} if leader is not None else {})
        placed.append(ax.annotate(text, (x, y), textcoords="offset points", fontsize=fontsize, color=colour,
                                  zorder=6, annotation_clip=False, bbox=_LABEL_BOX, **_offset(radius, direction),
                                  **arrow))
        taken.append(box)
        if leader is not None:
            leaders.append(leader)
    return placed


def place_axes_labels(fig, labels) -> list:
    """place_labels on each (ax, items) of `labels` once the figure's layout is final (call after
    tight_layout): each axes' legend is first pinned where "best" put it, so the labels cannot move it,
    and its box is kept clear. Returns all annotations placed."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for ax, items in labels:
        legend, avoid = ax.get_legend(), []
        if legend is not None:
            box = legend.get_window_extent(renderer)
            legend.set_loc(tuple(ax.transAxes.inverted().transform((box.x0, box.y0))))
            avoid.append(box)
        placed += place_labels(ax, items, avoid=avoid)
    return placed
