"""Read a YAML file into a pydantic model with one-line errors naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from simulator.errors import UserError, format_validation_error
from simulator.fileio import read_text

M = TypeVar("M", bound=BaseModel)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser (~10x faster) when built in


def read_yaml_mapping(path: str | Path) -> dict:
    """Parse a YAML file that must hold a mapping; errors name the file and the line."""
    path = Path(path)
    text = read_text(path)
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)  # safe: plain YAML types only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{where}malformed YAML ({problem})", source=path) from None
    if not isinstance(data, dict):
        raise UserError(f"expected a YAML mapping at the top level, got {type(data).__name__}", source=path)
    return data


def load_named_yaml(name_or_path: str | Path, directory: Path, what: str, model: type[M]) -> M:
    """Load `name_or_path` as `model`: a YAML path, or the stem of a shipped file in `directory`."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = directory / f"{name_or_path}.yaml"
        if not path.exists():
            shipped = ", ".join(sorted(p.stem for p in directory.glob("*.yaml")))
            raise UserError(f"unknown {what} {str(name_or_path)!r}; shipped: {shipped}")
    return load_yaml_file(path, model)


def load_yaml_file(path: str | Path, model: type[M]) -> M:
    """Load and validate `path` as `model`; any problem becomes a one-line UserError."""
    data = read_yaml_mapping(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, source=path) from None
