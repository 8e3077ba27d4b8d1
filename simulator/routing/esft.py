"""Importer for the real DeepSeek-V2-Lite routing published by deepseek-ai/ESFT.

ESFT's results/expert_scores/<task>/expert_weights_<L>.txt (L = 1..26, MoE layer L; optionally gzipped)
hold one line per sequence: "<ids tab-separated>\\t\\t<weights tab-separated>", token-major, k values per
token, not sorted by weight. Weights are softmax probabilities over all routed experts (not
renormalised over the top-k). Line i is the same sequence in every layer file, so the files of one task
join into a full multi-layer trace. Each task becomes one trace with scores sorted descending per token
(ids permuted alongside).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from simulator.config.model import ModelSpec, load_model
from simulator.errors import UserError
from simulator.routing.trace import Trace, TraceMeta, save_trace

MODEL = "deepseek-v2-lite"
REPOSITORY = "https://github.com/deepseek-ai/ESFT"
LICENSE = ("MIT for ESFT code and data (traces/LICENSES/ESFT-LICENSE-CODE.txt); the model that produced "
           "the routing is under the DeepSeek model license (traces/LICENSES/ESFT-LICENSE-MODEL.txt)")
NOTES = ("Teacher-forced forward of ESFT-vanilla-lite over prompt+response of the task's training data "
         "(scripts/expert/get_expert_scores.py): routed experts only (2 shared experts are always on and "
         "not logged); scores are softmax probabilities over 64 experts rounded to 4 decimals, not "
         "renormalised over the top-6.")


def _layer_file(task_dir: Path, layer: int) -> Path | None:
    for name in (f"expert_weights_{layer}.txt", f"expert_weights_{layer}.txt.gz"):
        if (task_dir / name).is_file():
            return task_dir / name
    return None


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read ({exc.__class__.__name__}: {exc})", source=path) from None
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _parse_line(line: str, k: int, path: Path, lineno: int) -> tuple[np.ndarray, np.ndarray]:
    """One sequence -> ids int64 [n, k], weights float64 [n, k]."""
    field = f"line {lineno}"
    if not line.strip():
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float64)
    parts = line.rstrip("\r").split("\t\t")
    if len(parts) != 2:
        raise UserError("expected '<ids>\\t\\t<weights>'", source=path, field=field)
    try:
        ids = np.array(parts[0].split("\t"), dtype=np.int64)
        weights = np.array(parts[1].split("\t"), dtype=np.float64)
    except ValueError as exc:
        raise UserError(f"not a number ({exc})", source=path, field=field) from None
    if ids.size != weights.size or ids.size % k:
        raise UserError(f"{ids.size} ids and {weights.size} weights; expected equal counts, a multiple "
                        f"of top_k={k}", source=path, field=field)
    return ids.reshape(-1, k), weights.reshape(-1, k)


def read_esft_task(task_dir: str | Path, model: ModelSpec | None = None,
                   commit: str = "", name: str | None = None) -> Trace:
    """Join the per-layer files of one ESFT task directory into a trace (scores sorted descending)."""
    task_dir = Path(task_dir)
    model = model or load_model(MODEL)
    k, layers = model.top_k, model.moe_layers
    files = [_layer_file(task_dir, layer) for layer in range(1, layers + 1)]
    missing = [i + 1 for i, f in enumerate(files) if f is None]
    if missing:
        raise UserError(f"missing expert_weights_{missing[0]}.txt[.gz] (need MoE layers 1..{layers})",
                        source=task_dir)
    per_layer = []  # per layer: list over sequences of (ids [n, k], weights [n, k])
    for path in files:
        per_layer.append([_parse_line(line, k, path, i + 1) for i, line in enumerate(_read_lines(path))])
    counts0 = [ids.shape[0] for ids, _ in per_layer[0]]
    for path, seqs in zip(files[1:], per_layer[1:]):
        counts = [ids.shape[0] for ids, _ in seqs]
        if len(counts) != len(counts0):
            raise UserError(f"{len(counts)} sequences but {files[0].name} has {len(counts0)}",
                            source=path, field="lines")
        for i, (a, b) in enumerate(zip(counts, counts0)):
            if a != b:
                raise UserError(f"{a} tokens but {files[0].name} has {b} for the same sequence",
                                source=path, field=f"line {i + 1}")
    ids = np.stack([np.concatenate([s[0] for s in seqs]) for seqs in per_layer], axis=1)  # [T, L, k]
    weights = np.stack([np.concatenate([s[1] for s in seqs]) for seqs in per_layer], axis=1)  # [T, L, k]
    order = np.argsort(-weights, axis=-1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=-1)
    weights = np.take_along_axis(weights, order, axis=-1)
    bad = (ids < 0) | (ids >= model.num_experts)
    if bad.any():
        t, layer, _ = np.argwhere(bad)[0]
        raise UserError(f"expert id {int(ids[t, layer].max())} out of range [0, {model.num_experts}) at "
                        f"token {int(t)}", source=files[layer], field="expert_ids")
    seq_id = np.repeat(np.arange(len(counts0), dtype=np.int32), counts0)
    position = np.concatenate([np.arange(n, dtype=np.int32) for n in counts0]) if counts0 else \
        np.zeros(0, np.int32)
    meta = TraceMeta(name=name or f"esft-{task_dir.name}", model=model.name, num_experts=model.num_experts,
                     top_k=k, layers=layers, score_kind="softmax",
                     source=f"{REPOSITORY} results/expert_scores/{task_dir.name}", commit=commit,
                     license=LICENSE, notes=NOTES)
    return Trace(meta=meta, expert_ids=ids.astype(np.int16), scores=weights.astype(np.float32),
                 seq_id=seq_id, position=position)


def _commit_from_source(root: Path) -> str:
    """The commit named in a SOURCE.txt in or above `root` (as in ../shared/traces_raw), else ''."""
    root = root.resolve()
    for src in (d / "SOURCE.txt" for d in (root, *root.parents[:3])):
        if src.is_file():
            text = src.read_text(encoding="utf-8", errors="replace")
            m = re.search(r"^Commit\s*:\s*([0-9a-f]{7,40})", text, re.MULTILINE)
            return m.group(1) if m else ""
    return ""


def find_task_dirs(root: str | Path) -> list[Path]:
    """Task directories under `root` (an ESFT checkout, its results/expert_scores, or one task)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError("not a directory", source=root)
    if _layer_file(root, 1):
        return [root]
    for base in (root / "results" / "expert_scores", root / "expert_scores", root):
        tasks = sorted(d for d in base.glob("*") if d.is_dir() and _layer_file(d, 1))
        if tasks:
            return tasks
    raise UserError("no ESFT task directories (expected <task>/expert_weights_1.txt[.gz])", source=root)


def import_esft(root: str | Path, out: str | Path, force: bool = False) -> list[Path]:
    """Convert every task under `root` into out/esft-<task>; returns the written trace directories."""
    root, out = Path(root), Path(out)
    commit = _commit_from_source(root)
    written = []
    for task_dir in find_task_dirs(root):
        trace = read_esft_task(task_dir, commit=commit)
        written.append(save_trace(trace, out / trace.meta.name, force=force, command="moesim trace import-esft"))
    return written
