"""The on-disk result store of a sweep: one JSON file per finished task, one Parquet table at the end.

    OUT/points/<point id>.json       {"run": RunSpec fields, "status": "ok"|"invalid", "reason", "summary"}
    OUT/accuracy/<accuracy id>.json  {"key": accuracy key, "status", "result": metrics | "reason"}
    OUT/results.parquet              one row per point: inputs, status, flattened outputs, accuracy

    OUT/.sweep.lock                  held (fcntl.flock) while a sweep writes here; holds its pid

Ids are hashes of canonical JSON, so a rerun finds the work already done. Every file is written to a
temporary file beside its target and moved into place with os.replace, so a killed sweep leaves only
whole files behind. A task file that is nonetheless unreadable (a disk fault, a hand edit) counts as not
done: `Store.load_point`/`load_accuracy` say why and the runner recomputes the task. One sweep writes to
a directory at a time (`lock_output`); the lock dies with its process, so a killed sweep never leaves
a stale lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.config.run import RunSpec
from simulator.errors import UserError
from simulator.fileio import atomic_write

TABLE = "results.parquet"
LOCK = ".sweep.lock"
_held: dict[str, tuple[int, int]] = {}  # resolved output dir -> (lock file descriptor, nesting depth)


@contextlib.contextmanager
def lock_output(out: str | Path) -> Iterator[None]:
    """Hold OUT's lock file for the block (creating OUT); another process holding it is a UserError.
    Re-entrant within a process (the command holds it over both passes of --confirm; run_sweep too)."""
    import fcntl

    out = Path(out)
    key = str(out.resolve())
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot create the output directory or its lock file ({exc.strerror})",
                        source=out, field="--out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UserError(f"another sweep (pid {holder}) is writing to this directory; wait for it or use "
                        "another --out", source=out, field="--out") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[key] = (fd, 1)
        yield
    finally:
        _held.pop(key, None)
        os.close(fd)  # releases the lock


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def stable_id(obj: Any) -> str:
    """16 hex digits identifying `obj` (a JSON-able mapping) independently of key order."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def write_json(path: Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj, sort_keys=True, indent=1, allow_nan=True))
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists -> one level with dotted keys: {"a": {"b": 1}, "u": [5]} -> {"a.b": 1, "u.0": 5}."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, (list, tuple)):
            value = {str(i): v for i, v in enumerate(value)}
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class Store:
    """Finished-task files of one sweep output directory."""

    def __init__(self, out: str | Path):
        self.out = Path(out)

    def point_path(self, point_id: str) -> Path:
        return self.out / "points" / f"{point_id}.json"

    def accuracy_path(self, accuracy_id: str) -> Path:
        return self.out / "accuracy" / f"{accuracy_id}.json"

    def has_point(self, point_id: str) -> bool:
        return self.point_path(point_id).is_file()

    def has_accuracy(self, accuracy_id: str) -> bool:
        return self.accuracy_path(accuracy_id).is_file()

    def load_point(self, point_id: str) -> tuple[dict | None, str]:
        """(record, "") of a finished point; (None, "") when it has no file; (None, why) when its file
        cannot be used."""
        return _load(self.point_path(point_id), "run", "summary")

    def load_accuracy(self, accuracy_id: str) -> tuple[dict | None, str]:
        """Like load_point, for an accuracy measurement."""
        return _load(self.accuracy_path(accuracy_id), "key", "result")

    def table(self, points) -> pd.DataFrame:
        """One row per finished point (in sweep order) joined with its accuracy, when measured."""
        rows = []
        for p in points:
            rec, _ = self.load_point(p.id)
            if rec is None:  # not finished, or unreadable (the runner has said so)
                continue
            row = {"point": p.index, "point_id": p.id, **rec["run"], "status": rec["status"],
                   "reason": rec.get("reason", "")}
            row.update(flatten(rec.get("summary") or {}))
            acc, _ = self.load_accuracy(p.accuracy_id) if p.accuracy_id else (None, "")
            if acc is not None:
                row.update(flatten(acc.get("result") or {"reason": acc.get("reason", "")}, "accuracy."))
            rows.append(row)
        head = ["point", "point_id", *RunSpec.model_fields, "status", "reason"]
        df = pd.DataFrame(rows, columns=head if not rows else None)
        return df[head + sorted(c for c in df.columns if c not in head)]


def _load(path: Path, inputs: str, outputs: str) -> tuple[dict | None, str]:
    """A task file's record if it is whole: JSON holding `inputs` (a mapping), a status and, for "ok",
    `outputs` (a mapping) or, for "invalid", a reason."""
    try:
        rec = read_json(path)
    except FileNotFoundError:
        return None, ""
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"unreadable ({exc.__class__.__name__})"
    if not isinstance(rec, dict) or not isinstance(rec.get(inputs), dict):
        return None, f"no {inputs!r} mapping"
    status = rec.get("status")
    if status == "ok" and isinstance(rec.get(outputs), dict):
        return rec, ""
    if status == "invalid" and isinstance(rec.get("reason"), str):
        return rec, ""
    return None, f"status {status!r} without its {outputs if status == 'ok' else 'reason'}"
