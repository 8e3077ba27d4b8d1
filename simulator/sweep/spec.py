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

A sweep's fields are RunSpec's fields (simulator.config.run), with the same values as the command line:
quantities take a unit string or a bare number (`cache_bytes: 4 GB` or `4.0e+9`), `tokens: 0` is the
whole trace. The whole file is checked before anything runs (`load_sweep`, then `expand` with
check_names): every point's fields, the names it uses (hardware config, model, policy, trace and plan
paths), and the accuracy section (its weights, and every option against what the accuracy model takes).
Points are generated lazily from the grids (`iter_points`); `count_points` counts them without
generating any, so a huge grid is refused (`max_points`) before it costs memory.
"""

from __future__ import annotations

import inspect
import itertools
import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from simulator.config.loading import read_yaml_mapping
from simulator.config.run import RunSpec
from simulator.errors import UserError, format_validation_error
from simulator.sweep.accuracy import AccuracySection, accuracy_key
from simulator.sweep.store import stable_id

RUN_FIELDS = tuple(RunSpec.model_fields)
MAX_POINTS = 10_000  # default limit on a sweep's points (moesim sweep --max-points)
# evaluate() arguments a sweep sets itself, from the section's own fields or from each point
SET_BY_SWEEP = ("weights", "bits", "group", "seed", "alloc", "rank_budget", "top_n", "plan", "plan_source",
                "rank", "model_top_k", "model_rank_dim", "unsupported")


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


def _product(grid: dict[str, list]) -> Iterator[dict[str, Any]]:
    keys = list(grid)
    return (dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys)))


def _entries(spec: SweepSpec) -> list[tuple[str, PolicyEntry]]:
    """(where, policy entry) in file order; a grid without policies uses the base policy."""
    if spec.policies:
        return [(f"policies[{i}]", e) for i, e in enumerate(spec.policies)]
    if spec.grid or not spec.points:
        return [("grid", PolicyEntry(policy=spec.base.get("policy", RunSpec().policy)))]
    return []


def _overrides(spec: SweepSpec) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, overrides of base) for every point, in expansion order, generated lazily."""
    for where, entry in _entries(spec):
        for combo in _product({**spec.grid, **entry.grid}):
            yield where, {**entry.fixed(), **combo}
    for i, p in enumerate(spec.points):
        yield f"points[{i}]", p


def count_points(spec: SweepSpec) -> int:
    """Points the sweep generates before duplicates are dropped (an upper bound), without generating any."""
    return sum(math.prod(len(v) for v in {**spec.grid, **e.grid}.values()) for _, e in _entries(spec)) \
        + len(spec.points)


def _name_checks() -> dict[str, Callable[[RunSpec], None]]:
    """RunSpec field -> a check that the name it holds resolves (raises UserError when not)."""
    from simulator.config.model import load_model
    from simulator.config.system import load_system
    from simulator.policies.registry import get_policy

    def path(kind: str, test: Callable[[Path], bool], value: str | None) -> None:
        if value is not None and not test(Path(value)):
            raise UserError(f"{kind} {value!r} not found")

    return {
        "hwconfig": lambda run: load_system(run.hwconfig),
        "model": lambda run: load_model(run.model),
        "policy": lambda run: get_policy(run.policy),
        "trace": lambda run: path("trace directory", Path.is_dir,
                                  run.trace if run.synthetic_tokens is None else None),
        "plan": lambda run: path("plan file", Path.is_file, run.plan),
    }


def iter_points(spec: SweepSpec, source: str | Path = "sweep", overrides: dict[str, Any] | None = None,
                check_names: bool = False) -> Iterator[SweepPoint]:
    """The sweep's points one at a time, deduplicated, in deterministic order; `overrides` (e.g. the
    command line's --engine) win over everything in the file. With `check_names`, a name that does not
    resolve (unknown hardware config, model or policy; missing trace or plan) is a UserError naming the
    entry and field, each distinct value checked once."""
    seen: set[str] = set()
    checks = _name_checks() if check_names else {}
    checked: set[tuple[str, Any]] = set()
    index = 0
    for where, over in _overrides(spec):
        try:
            run = RunSpec.model_validate({**spec.base, **over, **(overrides or {})})
        except ValidationError as exc:
            err = format_validation_error(exc)
            raise UserError(err.detail, source=source, field=f"{where}.{err.field}") from None
        for name, check in checks.items():
            value = (name, getattr(run, name), run.synthetic_tokens is None)
            if value not in checked:
                try:
                    check(run)
                except UserError as exc:
                    raise UserError(exc.render(), source=source, field=f"{where}.{name}") from None
                checked.add(value)
        pid = stable_id(run.model_dump())
        if pid in seen:
            continue
        seen.add(pid)
        key = accuracy_key(run, spec.accuracy) if spec.accuracy else None
        yield SweepPoint(index, run, pid, key, stable_id(key) if key else None)
        index += 1


def expand(spec: SweepSpec, source: str | Path = "sweep", overrides: dict[str, Any] | None = None, *,
           max_points: int | None = None, check_names: bool = False) -> list[SweepPoint]:
    """All points of a sweep (iter_points) as a list. With `max_points`, a sweep of more points (counted
    first, see count_points) is a UserError before any point is generated."""
    if max_points is not None:
        n = count_points(spec)
        if n > max_points:
            raise UserError(f"the sweep has {n} points, more than the limit of {max_points}; raise "
                            "--max-points to run it", source=source, field="grid")
    return list(iter_points(spec, source, overrides, check_names))


def _option_types() -> dict[str, Any]:
    """Option name -> type of the keyword arguments simulator.accuracy.api.evaluate accepts: its own
    parameters and, through **options, the fields of the accuracy Settings."""
    from simulator.accuracy import api
    from simulator.accuracy.pipeline import Settings

    params = inspect.signature(api.evaluate).parameters
    hints = typing.get_type_hints(api.evaluate)
    types = {n: hints.get(n, Any) for n, p in params.items() if p.kind is not p.VAR_KEYWORD}
    settings = typing.get_type_hints(Settings)
    types.update({f.name: settings.get(f.name, Any) for f in fields(Settings)})
    return {n: t for n, t in types.items() if n not in SET_BY_SWEEP}


def check_accuracy(section: AccuracySection, source: str | Path) -> None:
    """The accuracy section can be measured: its weights exist, and each option is one the accuracy model
    takes, with a value of the right type and (text, tokenizer) an existing path. UserError otherwise."""
    weights = section.weights
    if weights != "minilm" and not Path(weights).is_dir():
        raise UserError(f"weights directory {weights!r} not found; expected 'minilm' or a Hugging Face "
                        "checkpoint directory", source=source, field="accuracy.weights")
    if not section.options:
        return
    types = _option_types()
    for name, value in section.options.items():
        field = f"accuracy.options.{name}"
        if name in SET_BY_SWEEP:
            raise UserError("is set by the sweep (from the section's fields and each point), not an option",
                            source=source, field=field)
        if name not in types:
            raise UserError(f"{name!r} is not an option of the accuracy model; expected one of "
                            f"{', '.join(sorted(types))}", source=source, field=field)
        try:
            TypeAdapter(types[name]).validate_python(value, strict=True)
        except ValidationError as exc:
            raise UserError(format_validation_error(exc).detail, source=source, field=field) from None
        test = {"text": Path.is_file, "tokenizer": Path.is_dir}.get(name)
        if test is not None and value is not None and not test(Path(value)):
            raise UserError(f"{value!r} not found", source=source, field=field)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file (its fields and its accuracy section); problems become one line
    naming the file and the field."""
    data = read_yaml_mapping(path)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, source=path) from None
    if spec.accuracy is not None:
        check_accuracy(spec.accuracy, path)
    return spec
