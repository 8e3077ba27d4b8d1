"""Read a YAML file into a pydantic model with one-line errors naming the file and the field.

The loader is YAML's safe loader (plain types only) made stricter: a key given twice in one mapping is an
error naming the key and both lines (YAML says keys are unique; PyYAML silently kept the last), and a
document whose aliases would expand to more than MAX_EXPANDED_NODES nodes (a "billion laughs" bomb: a
few lines of anchors that expand exponentially once walked) or that refers to itself is refused before
anything is built from it.

Shipped files (the hardware configs in hwconfigs/, the routing traces in traces/) are found by one rule,
`resolve_shipped`: what the user gives is first a path relative to the current directory; otherwise it is
the name of a shipped file, looked up in `shipped_dir`: the installed copy (pyproject.toml maps the
repository's top-level hwconfigs/ and traces/ into the wheel as simulator/_shipped/<kind>), or, in a source
checkout or an editable install, the repository's own folder.
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


_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # simulator/


def shipped_dir(kind: str) -> Path:
    """The folder of shipped `kind` files ("hwconfigs" or "traces"): simulator/_shipped/<kind> in an installed
    wheel, else the repository's top-level <kind>/ (source checkout, editable install)."""
    installed = _PACKAGE_DIR / "_shipped" / kind
    return installed if installed.is_dir() else _PACKAGE_DIR.parent / kind


def resolve_shipped(name_or_path: str | Path, directory: Path, suffix: str = "") -> Path | None:
    """`name_or_path` as a path (relative to the current directory) when it exists there; else the shipped
    file it names in `directory`: "h100-pcie5", "h100-pcie5.yaml" or "hwconfigs/h100-pcie5.yaml" (a leading
    folder named like `directory` is dropped; `suffix` is added to a name without one). None when neither."""
    path = Path(name_or_path)
    if path.exists() or path.is_absolute() or ".." in path.parts or not path.parts:
        return path if path.exists() else None
    parts = path.parts[1:] if len(path.parts) > 1 and path.parts[0] == directory.name else path.parts
    rel = Path(*parts)
    candidates = [directory / rel] + ([directory / f"{rel}{suffix}"] if suffix and not rel.suffix else [])
    return next((c for c in candidates if c.exists()), None)


def shipped_names(directory: Path, suffix: str = "") -> list[str]:
    """What `directory` ships: the stems of its `suffix` files, or (no suffix) its subfolders."""
    if suffix:
        return sorted(p.stem for p in directory.glob(f"*{suffix}"))
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def load_named_yaml(name_or_path: str | Path, directory: Path, what: str, model: type[M]) -> M:
    """Load `name_or_path` as `model`: a YAML path, or the name of a shipped file in `directory`."""
    path = resolve_shipped(name_or_path, directory, ".yaml")
    if path is None:
        if Path(name_or_path).suffix:
            path = Path(name_or_path)  # a missing file: read_text names it
        else:
            shipped = ", ".join(shipped_names(directory, ".yaml"))
            raise UserError(f"unknown {what} {str(name_or_path)!r}; shipped: {shipped}")
    return load_yaml_file(path, model)


def load_yaml_file(path: str | Path, model: type[M]) -> M:
    """Load and validate `path` as `model`; any problem becomes a one-line UserError."""
    data = read_yaml_mapping(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, source=path) from None
