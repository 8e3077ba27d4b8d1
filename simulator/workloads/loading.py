"""A workload by name or path: a CSV file (relative to the current folder first), else a shipped one
("azure-conv" or "workloads/azure-conv.csv.gz"; the repository's workloads/ folder, installed with the
package as simulator/_shipped/workloads)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from simulator.config.loading import resolve_shipped, shipped_dir, shipped_names
from simulator.config.serve import DEFAULT_WORKLOAD
from simulator.errors import UserError
from simulator.workloads.parse import load_csv
from simulator.workloads.table import Workload

SUFFIX = ".csv.gz"


def shipped_workloads() -> list[str]:
    return sorted(p.name[: -len(SUFFIX)] for p in shipped_dir("workloads").glob(f"*{SUFFIX}"))


def resolve_workload(name_or_path: str | Path) -> Path:
    path = resolve_shipped(name_or_path, shipped_dir("workloads"), SUFFIX)
    if path is None:
        raise UserError(f"no workload file {str(name_or_path)!r} here, nor a shipped one (shipped: "
                        f"{', '.join(shipped_workloads()) or 'none'})", field="workload")
    return path


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> Workload:
    return load_csv(path)


def load_workload(name_or_path: str | Path) -> Workload:
    """The parsed workload (cached per file version: a rate sweep reads it once)."""
    path = resolve_workload(name_or_path)
    return _load(str(path), path.stat().st_mtime_ns)


__all__ = ["DEFAULT_WORKLOAD", "load_workload", "resolve_workload", "shipped_names", "shipped_workloads"]
