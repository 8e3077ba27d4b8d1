"""The on-disk result store of a sweep: one JSON file per finished task, one Parquet table at the end.

    OUT/points/<point id>.json       {"run": RunSpec fields, "status": "ok"|"invalid", "reason", "summary"}
    OUT/accuracy/<accuracy id>.json  {"key": accuracy key, "status", "result": metrics | "reason"}
    OUT/results.parquet              one row per point: inputs, status, flattened outputs, accuracy

Ids are hashes of canonical JSON, so a rerun finds the work already done. Every file is written to a
temporary file beside its target and moved into place with os.replace, so a killed sweep leaves only
whole files behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.config.run import RunSpec
from simulator.fileio import atomic_write

TABLE = "results.parquet"


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

    def table(self, points) -> pd.DataFrame:
        """One row per finished point (in sweep order) joined with its accuracy, when measured."""
        rows = []
        for p in points:
            if not self.has_point(p.id):
                continue
            rec = read_json(self.point_path(p.id))
            row = {"point": p.index, "point_id": p.id, **rec["run"], "status": rec["status"],
                   "reason": rec.get("reason", "")}
            row.update(flatten(rec.get("summary") or {}))
            if p.accuracy_id and self.has_accuracy(p.accuracy_id):
                acc = read_json(self.accuracy_path(p.accuracy_id))
                row.update(flatten(acc.get("result") or {"reason": acc.get("reason", "")}, "accuracy."))
            rows.append(row)
        head = ["point", "point_id", *RunSpec.model_fields, "status", "reason"]
        df = pd.DataFrame(rows, columns=head if not rows else None)
        return df[head + sorted(c for c in df.columns if c not in head)]
