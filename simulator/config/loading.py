"""Read a YAML file into a pydantic model with one-line errors naming the file and the field.

The loader is YAML's safe loader (plain types only) made stricter: a key given twice in one mapping is an
error naming the key and both lines (YAML says keys are unique; PyYAML silently kept the last), and a
document whose aliases would expand to more than MAX_EXPANDED_NODES nodes (a "billion laughs" bomb: a
few lines of anchors that expand exponentially once walked) or that refers to itself is refused before
anything is built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from simulator.errors import UserError, format_validation_error
from simulator.fileio import read_text

M = TypeVar("M", bound=BaseModel)
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser (~10x faster) when built in
MAX_EXPANDED_NODES = 1_000_000  # the shipped files have a few hundred; an alias bomb has 10^9


class StrictLoader(_BASE_LOADER):
    """Safe loader that rejects duplicate mapping keys."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` merges; explicit keys may override merged ones
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable key: the base constructor reports it
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first given at line {first})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


SAFE_LOADER = StrictLoader


def _expanded_size(root, limit: int) -> int:
    """Nodes in the document once every alias is expanded, counted without expanding (shared nodes are
    counted once per use, memoised by identity); raises a ComposerError past `limit` or on a cycle."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise yaml.composer.ComposerError(None, None, "an alias refers to the node that contains it "
                                              "(recursive document)", node.start_mark)
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                raise yaml.composer.ComposerError(
                    None, None, f"the document's aliases expand to more than {limit} nodes (an alias bomb?)",
                    node.start_mark)
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _load(text: str):
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, MAX_EXPANDED_NODES)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml_mapping(path: str | Path) -> dict:
    """Parse a YAML file that must hold a mapping; errors name the file and the line."""
    path = Path(path)
    text = read_text(path)
    try:
        data = _load(text)  # safe: plain YAML types only; no duplicate keys; bounded alias expansion
    except RecursionError:
        raise UserError("malformed YAML (nested too deeply)", source=path) from None
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
