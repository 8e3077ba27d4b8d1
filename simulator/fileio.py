"""Atomic writes: a file or directory appears whole at its final path or not at all.

Everything the tool writes goes through here, so an interrupted run never leaves a half-written file:
the content is written beside the target under a hidden temporary name, then renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], object]) -> None:
    """Call write(tmp_path) and rename the result to `path` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` (mode 0755)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp creates 0700
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_text(path: str | Path, field: str | None = None) -> str:
    """A UTF-8 text file's content; a missing or unreadable file is a one-line UserError."""
    from simulator.errors import UserError

    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found", source=path, field=field) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read file ({exc.__class__.__name__})", source=path, field=field) from None
