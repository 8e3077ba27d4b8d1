"""Test-only helpers for the safety tests: a folder's state by hash, and a copy of nested data with one
entry set or deleted (bad-input cases)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

DELETE = object()  # set_path value: remove the entry


def tree_state(root: Path) -> dict[str, str]:
    """Every entry under root (hidden ones too): relative path -> sha256 of a file, 'dir' or the link."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                state[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                state[rel] = "dir"
            else:
                state[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return state


def set_path(data: dict, path: tuple, value) -> dict:
    """A deep copy of `data` with the entry at `path` (keys and list indices) set to `value`, or removed
    when `value` is DELETE."""
    data = json.loads(json.dumps(data))
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data
