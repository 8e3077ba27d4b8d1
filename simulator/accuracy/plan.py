"""The compensation plan: the bridge from the accuracy model to the simulator.

One row per (MoE layer, routed expert): how that expert is stored (bits, group, rank), its weight
kurtosis, its bytes (from simulator.accounting) and its relative residual ||W - W_hat||_F / ||W||_F
before and after low-rank compensation. Run-level metadata (weights source, shapes, allocation rule,
rank budget) travels in the Parquet schema metadata, or for CSV in a sidecar `<file>.meta.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import UserError
from simulator.fileio import atomic_write

COLUMNS = {  # name -> numpy dtype kind ("i" integer, "f" float)
    "layer": "i", "expert": "i", "bits": "i", "group": "i", "rank": "i",
    "kurtosis": "f", "bytes_lowbit": "f", "bytes_factors": "f", "err_before": "f", "err_after": "f",
}
META_KEY = b"moesim.plan"
SUFFIXES = (".parquet", ".csv")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def _normalize(df: pd.DataFrame) -> pd.DataFrame:
    out = df[list(COLUMNS)].copy()
    for name, kind in COLUMNS.items():
        out[name] = out[name].astype("int64" if kind == "i" else "float64")
    return out.sort_values(["layer", "expert"], kind="stable").reset_index(drop=True)


def save_plan(df: pd.DataFrame, meta: dict, path: str | Path) -> Path:
    """Validate and write the plan atomically; the format follows the suffix (.parquet or .csv)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise UserError(f"plan file must end in {' or '.join(SUFFIXES)}", source=path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"missing column(s) {', '.join(missing)}", source=path)
    df = _normalize(df)
    validate_plan(df, path)
    meta_text = json.dumps(meta, sort_keys=True)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: meta_text.encode()})
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    else:
        atomic_write(_sidecar(path), lambda tmp: Path(tmp).write_text(meta_text + "\n", encoding="utf-8"))
        atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, float_format="%.9g"))
    return path


def validate_plan(df: pd.DataFrame, source: str | Path) -> None:
    """Raise a one-line UserError naming the file and column of the first problem."""
    def bad(column: str, msg: str) -> UserError:
        return UserError(msg, source=source, field=column)

    for name, kind in COLUMNS.items():
        if name not in df.columns:
            raise bad(name, "missing column")
        col = df[name]
        if kind == "i" and col.dtype.kind not in "iu":
            raise bad(name, f"expected integers, got dtype {col.dtype}")
        if kind == "f" and col.dtype.kind not in "iuf":
            raise bad(name, f"expected numbers, got dtype {col.dtype}")
        if not np.isfinite(col.to_numpy(dtype="float64")).all():
            raise bad(name, "non-finite value (NaN or inf)")
    if len(df) == 0:
        raise bad("layer", "plan has no rows")
    for name in ("layer", "expert", "rank", "bytes_lowbit", "bytes_factors", "err_before", "err_after"):
        if (df[name] < 0).any():
            raise bad(name, f"negative value {df[name].min()} (expected >= 0)")
    for name in ("bits", "group"):
        if (df[name] < 1).any():
            raise bad(name, f"expected >= 1, got {df[name].min()}")
    dup = df.duplicated(["layer", "expert"])
    if dup.any():
        row = df[dup].iloc[0]
        raise bad("expert", f"duplicate (layer, expert) pair ({int(row['layer'])}, {int(row['expert'])})")


def load_plan(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read and validate a plan written by save_plan -> (rows sorted by layer, expert; metadata)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise UserError(f"plan file must end in {' or '.join(SUFFIXES)}", source=path)
    if not path.is_file():
        raise UserError("plan file not found", source=path)
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            df = table.to_pandas()
            raw = (table.schema.metadata or {}).get(META_KEY)
            if raw is None:
                raise UserError("no moesim plan metadata in the Parquet schema", source=path)
            meta = json.loads(raw)
        else:
            df = pd.read_csv(path)
            side = _sidecar(path)
            if not side.is_file():
                raise UserError(f"missing metadata sidecar {side.name}", source=path)
            meta = json.loads(side.read_text(encoding="utf-8"))
    except UserError:
        raise
    except (OSError, ValueError) as exc:  # pyarrow/pandas/json parse errors derive from these
        raise UserError(f"cannot read plan ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})",
                        source=path) from None
    if not isinstance(meta, dict):
        raise UserError("plan metadata must be a JSON object", source=path)
    validate_plan(df, path)
    return _normalize(df), meta

