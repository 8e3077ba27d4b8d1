"""Sweep files: a base RunSpec, a cartesian `grid`, per-policy parameter sets and explicit `points`.

    name: gpu-only
    base: {hwconfig: h100-pcie5, tokens: 32}        # RunSpec fields shared by every point
    grid: {batch: [1, 4]}                             # crossed with every policy entry below
    policies:                                         # one entry per policy; fixed fields + its own grid
      - {policy: offload-fp16}
      - {policy: offload-lrc, grid: {bits: [2, 3], top_n: [1, 2], rank: [16, 64]}}
    points:                                           # explicit extra points (overrides of base)
      - {policy: gpu-resident}
    accuracy: {weights: minilm, alloc: kurtosis}      # optional: join measured accuracy

A policy entry's grid overrides a top-level grid key of the same name, so parameters that a policy does
not take (rank on offload-lowbit) are simply not in its grid. Any combination the simulator still rejects
is kept as a row with status "invalid" and the reason. Expansion order is deterministic: policy entries
in file order, grid keys in file order, values in file order (last key fastest), then `points`; duplicate
points (same RunSpec) are kept once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator.config.loading import read_yaml_mapping
from simulator.config.run import RunSpec
from simulator.errors import UserError, format_validation_error
from simulator.sweep.accuracy import AccuracySection, accuracy_key
from simulator.sweep.store import stable_id

RUN_FIELDS = tuple(RunSpec.model_fields)


def _check_fields(keys, what: str) -> None:
    unknown = [k for k in keys if k not in RUN_FIELDS]
    if unknown:
        raise ValueError(f"{what} {', '.join(map(repr, unknown))} is not a run parameter; "
                         f"expected one of {', '.join(RUN_FIELDS)}")


def _check_grid(grid: dict[str, list]) -> dict[str, list]:
    _check_fields(grid, "grid key")
    empty = [k for k, v in grid.items() if not v]
    if empty:
        raise ValueError(f"grid key {empty[0]!r} has no values")
    return grid


class PolicyEntry(BaseModel):
    """One policy with its fixed run parameters (any RunSpec field, inline) and its own grid."""

    model_config = ConfigDict(extra="allow", frozen=True)

    policy: str
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("grid")
    @classmethod
    def _grid_fields(cls, v: dict) -> dict:
        return _check_grid(v)

    @model_validator(mode="after")
    def _known_fields(self) -> PolicyEntry:
        _check_fields(self.model_extra or {}, "field")
        return self

    def fixed(self) -> dict[str, Any]:
        return {"policy": self.policy, **(self.model_extra or {})}


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict, description="RunSpec fields shared by all points")
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    policies: list[PolicyEntry] = Field(default_factory=list)
    points: list[dict[str, Any]] = Field(default_factory=list)
    accuracy: AccuracySection | None = None

    @field_validator("grid")
    @classmethod
    def _grid_fields(cls, v: dict) -> dict:
        return _check_grid(v)

    @field_validator("base")
    @classmethod
    def _base_fields(cls, v: dict) -> dict:
        _check_fields(v, "base field")
        return v

    @field_validator("points")
    @classmethod
    def _point_fields(cls, v: list[dict]) -> list[dict]:
        for p in v:
            _check_fields(p, "point field")
        return v


@dataclass(frozen=True)
class SweepPoint:
    """One simulation point, with the accuracy evaluation joined to it (None: nothing to measure)."""

    index: int
    run: RunSpec
    id: str                          # stable hash of the full RunSpec
    accuracy: dict[str, Any] | None  # accuracy key (see simulator.sweep.accuracy)
    accuracy_id: str | None


def _product(grid: dict[str, list]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _overrides(spec: SweepSpec) -> list[tuple[str, dict[str, Any]]]:
    """(where, overrides of base) for every point, in expansion order."""
    out = []
    entries = spec.policies or ([PolicyEntry(policy=spec.base.get("policy", RunSpec().policy))]
                                if spec.grid or not spec.points else [])
    for i, entry in enumerate(entries):
        where = f"policies[{i}]" if spec.policies else "grid"
        for combo in _product({**spec.grid, **entry.grid}):
            out.append((where, {**entry.fixed(), **combo}))
    out += [(f"points[{i}]", p) for i, p in enumerate(spec.points)]
    return out


def expand(spec: SweepSpec, source: str | Path = "sweep",
           overrides: dict[str, Any] | None = None) -> list[SweepPoint]:
    """All points of a sweep, deduplicated, in deterministic order; `overrides` (e.g. the command
    line's --engine) win over everything in the file."""
    points: list[SweepPoint] = []
    seen: set[str] = set()
    for where, over in _overrides(spec):
        try:
            run = RunSpec.model_validate({**spec.base, **over, **(overrides or {})})
        except ValidationError as exc:
            err = format_validation_error(exc)
            raise UserError(err.detail, source=source, field=f"{where}.{err.field}") from None
        pid = stable_id(run.model_dump())
        if pid in seen:
            continue
        seen.add(pid)
        key = accuracy_key(run, spec.accuracy) if spec.accuracy else None
        points.append(SweepPoint(len(points), run, pid, key, stable_id(key) if key else None))
    return points


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; problems become one line naming the file and the field."""
    data = read_yaml_mapping(path)
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, source=path) from None
