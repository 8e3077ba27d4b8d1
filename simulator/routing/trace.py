"""The routing-trace format: per token and MoE layer, top-k expert ids and router scores.

On disk a trace is a directory holding plain numpy arrays (memory-mapped on load, so traces larger than
RAM stream) and a JSON metadata sidecar:

    meta.json          TraceMeta: model, num_experts, top_k, layers, score_kind, source, commit, license
    expert_ids.npy     int16   [tokens, layers, top_k]  expert ids, ordered by descending score
    scores.npy         float32 [tokens, layers, top_k]  router scores (softmax probabilities or raw logits)
    seq_id.npy         int32   [tokens]                 sequence each token belongs to
    position.npy       int32   [tokens]                 position of the token within its sequence

Tokens are stored sequence by sequence, in position order. `layers` counts MoE layers only (a model's
dense leading layers are not in the trace). No pickle anywhere: np.load(allow_pickle=False).
"""

from __future__ import annotations

import itertools
import json
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.errors import UserError, format_validation_error

FORMAT_VERSION = 1
ARRAYS = {  # name -> (dtype, number of dimensions)
    "expert_ids": (np.int16, 3),
    "scores": (np.float32, 3),
    "seq_id": (np.int32, 1),
    "position": (np.int32, 1),
}


class TraceMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    name: str
    model: str = Field(description="model preset name the trace was recorded on")
    num_experts: int = Field(ge=1)
    top_k: int = Field(ge=1)
    layers: int = Field(ge=1, description="MoE layers in the trace")
    score_kind: Literal["softmax", "logit", "synthetic"] = "softmax"
    source: str = Field(description="repository, paper or generator the routing came from")
    commit: str = ""
    license: str = ""
    notes: str = ""


@dataclass(frozen=True)
class Trace:
    """A loaded (possibly memory-mapped) trace."""

    meta: TraceMeta
    expert_ids: np.ndarray  # int16   [T, L, k]
    scores: np.ndarray      # float32 [T, L, k], descending along k
    seq_id: np.ndarray      # int32   [T]
    position: np.ndarray    # int32   [T]

    @property
    def tokens(self) -> int:
        return int(self.expert_ids.shape[0])

    @property
    def sequences(self) -> int:
        return int(np.unique(self.seq_id).size)

    def sequence_bounds(self) -> list[tuple[int, int]]:
        """[start, end) token index ranges of each sequence, in storage order."""
        if self.tokens == 0:
            return []
        cuts = np.flatnonzero(np.diff(self.seq_id)) + 1
        edges = np.concatenate(([0], cuts, [self.tokens]))
        return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]

    def release(self) -> None:
        """Drop the pages read so far from this process's resident set (see release_pages)."""
        release_pages(self.expert_ids, self.scores, self.seq_id, self.position)


def release_pages(*arrays: np.ndarray) -> None:
    """Unmap the resident pages of memory-mapped arrays from this process (MADV_DONTNEED: they stay in
    the page cache and fault back in when read again), so reading a trace larger than RAM streams instead
    of accumulating every page read. In-memory arrays are left alone."""
    advice = getattr(mmap, "MADV_DONTNEED", None)
    for arr in arrays:
        mapping = getattr(arr, "_mmap", None)  # np.memmap's mmap.mmap; None for in-memory arrays
        if advice is not None and mapping is not None and not mapping.closed:
            mapping.madvise(advice)


def validate_arrays(meta: TraceMeta, expert_ids, scores, seq_id, position, source: str | Path) -> None:
    """Raise a one-line UserError for the first inconsistency found."""
    def bad(field: str, msg: str) -> UserError:
        return UserError(msg, source=source, field=field)

    if expert_ids.ndim != 3:
        raise bad("expert_ids", f"expected 3 dimensions [tokens, layers, top_k], got shape {expert_ids.shape}")
    t, layers, k = expert_ids.shape
    if scores.shape != expert_ids.shape:
        raise bad("scores", f"expected shape {expert_ids.shape} like expert_ids, got {scores.shape}")
    if layers != meta.layers:
        raise bad("expert_ids", f"has {layers} layers but meta.json says layers={meta.layers}")
    if k != meta.top_k:
        raise bad("expert_ids", f"has k={k} per token but meta.json says top_k={meta.top_k}")
    for name, arr in (("seq_id", seq_id), ("position", position)):
        if arr.shape != (t,):
            raise bad(name, f"expected shape ({t},), got {arr.shape}")
    if t == 0:
        raise bad("expert_ids", "trace has no tokens")
    chunk = 1 << 16  # validate in chunks so memory-mapped traces are never fully loaded
    for start in range(0, t, chunk):
        ids = np.asarray(expert_ids[start:start + chunk])
        sc = np.asarray(scores[start:start + chunk])
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= meta.num_experts:
            off = lo if lo < 0 else hi
            raise bad("expert_ids", f"expert id {off} out of range [0, {meta.num_experts})")
        srt = np.sort(ids, axis=-1)
        dup = np.argwhere(srt[..., 1:] == srt[..., :-1])
        if dup.size:
            tok, layer = int(dup[0][0]) + start, int(dup[0][1])
            raise bad("expert_ids", f"duplicate expert id in token {tok}, layer {layer}")
        if not np.isfinite(sc).all():
            tok = int(np.argwhere(~np.isfinite(sc))[0][0]) + start
            raise bad("scores", f"non-finite score (NaN or inf) in token {tok}")
        if (np.diff(sc, axis=-1) > 0).any():
            tok = int(np.argwhere(np.diff(sc, axis=-1) > 0)[0][0]) + start
            raise bad("scores", f"scores must be sorted descending within a token (token {tok})")
        release_pages(expert_ids, scores)
    if np.unique(seq_id).size != len(sequence_runs(seq_id)):
        raise bad("seq_id", "tokens of a sequence must be contiguous")
    pos = np.asarray(position)
    if int(pos.min()) < 0:
        tok = int(np.argmax(pos < 0))
        raise bad("position", f"negative position {int(pos[tok])} at token {tok} (expected >= 0)")
    same = np.diff(np.asarray(seq_id)) == 0  # token i+1 continues token i's sequence
    step = np.diff(pos.astype(np.int64))
    wrong = same & (step <= 0)
    if wrong.any():
        tok = int(np.argmax(wrong)) + 1
        raise bad("position", f"positions must increase within a sequence: token {tok} has position "
                              f"{int(pos[tok])} after {int(pos[tok - 1])} (sequence {int(seq_id[tok])})")


def sequence_runs(seq_id: np.ndarray) -> list[int]:
    return [int(v) for v in seq_id[np.concatenate(([True], np.diff(seq_id) != 0))]]


def save_trace(trace: Trace, path: str | Path, *, force: bool = False, command: str = "moesim trace",
               field: str = "--out") -> Path:
    """Write `trace` atomically to directory `path` (written beside it, then renamed into place).

    An existing `path` is replaced only when it is a previous trace (simulator.fileio.check_output_dir)
    and force is set; anything else there is refused with a UserError and left untouched."""
    from simulator.fileio import check_output_dir, output_directory

    path = Path(path)
    check_output_dir(path, "trace", force, field)  # before validating: refuse fast, touch nothing
    validate_arrays(trace.meta, trace.expert_ids, trace.scores, trace.seq_id, trace.position, path)
    with output_directory(path, "trace", force=force, command=command, field=field) as tmp:
        for name, (dtype, _) in ARRAYS.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(trace, name), dtype=dtype))
        (tmp / "meta.json").write_text(json.dumps(trace.meta.model_dump(), indent=2) + "\n")
    return path


def resolve_trace_path(path: str | Path) -> Path:
    """`path` as given when it exists here, else the shipped trace it names (`traces/esft-intent` or
    `esft-intent`, installed with the package), so the default trace works from any working directory."""
    from simulator.config.loading import resolve_shipped, shipped_dir

    return resolve_shipped(path, shipped_dir("traces")) or Path(path)


def _shipped_traces() -> str:
    from simulator.config.loading import shipped_dir, shipped_names

    base = shipped_dir("traces")
    return ", ".join(f"traces/{name}" for name in shipped_names(base) if (base / name / "meta.json").is_file())


def load_meta(path: str | Path) -> TraceMeta:
    path = resolve_trace_path(path)
    meta_path = path / "meta.json"
    if not path.is_dir():
        shipped = "" if path.exists() else f"; shipped: {_shipped_traces()}"
        raise UserError(f"not a trace directory (expected meta.json and .npy arrays){shipped}", source=path)
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("missing meta.json", source=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"meta.json is not valid JSON ({exc.__class__.__name__})", source=meta_path) from None
    except OSError as exc:
        raise UserError(f"cannot read meta.json ({exc.__class__.__name__})", source=meta_path) from None
    if not isinstance(raw, dict):
        raise UserError("expected a JSON object", source=meta_path)
    try:
        return TraceMeta.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(exc, source=meta_path) from None


def load_trace(path: str | Path, *, mmap: bool = True, validate: bool = True) -> Trace:
    """Load and validate a trace directory; arrays are memory-mapped unless mmap=False."""
    path = resolve_trace_path(path)
    meta = load_meta(path)
    arrays = {}
    for name, (dtype, ndim) in ARRAYS.items():
        file = path / f"{name}.npy"
        try:
            arr = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise UserError(f"missing {name}.npy", source=path) from None
        except (ValueError, OSError, EOFError, SyntaxError) as exc:  # bad magic/header, truncated, pickled
            raise UserError(f"not a readable .npy array ({exc.__class__.__name__}: {exc})",
                            source=file) from None
        if arr.dtype != dtype:
            raise UserError(f"expected dtype {np.dtype(dtype).name}, got {arr.dtype}", source=file)
        if arr.ndim != ndim:
            raise UserError(f"expected {ndim} dimensions, got shape {arr.shape}", source=file)
        arrays[name] = arr
    if validate:
        stamp = _fingerprint(path)
        if stamp not in _VALIDATED:  # a sweep loads one trace per point: validate each file version once
            validate_arrays(meta, **arrays, source=path)
            _VALIDATED.add(stamp)
    return Trace(meta=meta, **arrays)


_VALIDATED: set[tuple] = set()  # fingerprints of the trace files validated in this process


def _fingerprint(path: Path) -> tuple:
    """The trace directory's files as (name, inode, size, mtime and ctime in ns): a file rewritten or
    replaced validates again."""
    return (str(path), *((f.name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                         for f in sorted(path.iterdir()) if f.is_file() for st in (f.stat(),)))


def check_trace_matches_model(trace: Trace, model, source: str | Path = "trace") -> None:
    """The trace must have been recorded on a model of the same shape as `model` (a ModelSpec)."""
    m = trace.meta
    if m.num_experts != model.num_experts:
        raise UserError(f"trace has {m.num_experts} experts per layer but model {model.name} has "
                        f"{model.num_experts}", source=source, field="num_experts")
    if m.top_k != model.top_k:
        raise UserError(f"trace has top_k={m.top_k} but model {model.name} routes top_k={model.top_k}",
                        source=source, field="top_k")
    if m.layers != model.moe_layers:
        raise UserError(f"trace has {m.layers} MoE layers but model {model.name} has {model.moe_layers}",
                        source=source, field="layers")
