"""Atomic, non-destructive writes: an output appears whole at its final path or not at all, and nothing
the user did not make with moesim is ever removed or modified.

Everything the tool writes goes through here, so an interrupted run never leaves a half-written file:
the content is written beside the target under a hidden temporary name, then renamed into place.

Outputs that are directories (`simulate --out`, traces) carry a marker file, MARKER, naming the kind of
output and the command that wrote it. An existing path at the target is replaced only when it is a
previous output of the same kind and the user passed --force; anything else (a user's file or folder, the
current directory or one of its parents, the home directory, the repository) is refused with a one-line
UserError and left exactly as it was.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

MARKER = ".moesim-output.json"
REPO_ROOT = Path(__file__).resolve().parents[1]
TRACE_FILES = frozenset({"meta.json", "expert_ids.npy", "scores.npy", "seq_id.npy", "position.npy"})


def _user_error(message: str, path, field: str | None = None):
    from simulator.errors import UserError

    return UserError(message, source=path, field=field)


def _protected(path: Path) -> str | None:
    """Why `path` (resolved) may never be replaced, or None."""
    cwd = Path.cwd().resolve()
    if path == cwd:
        return "it is the current directory"
    if path in cwd.parents:
        return "it is a parent of the current directory"
    if path == Path.home().resolve() or path == Path(path.anchor):
        return "it is the home or root directory"
    if path == REPO_ROOT or path in REPO_ROOT.parents:
        return "it is the moesim repository or one of its parents"
    return None


def read_marker(path: str | Path) -> dict | None:
    """The marker of a moesim output directory, or None when `path` is not one."""
    try:
        data = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def _is_plain_trace(path: Path) -> bool:
    """A trace directory written before markers existed: meta.json with the trace's fields and only the
    trace's own files (so replacing it loses nothing but a trace)."""
    try:
        names = {p.name for p in path.iterdir()}
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not names <= TRACE_FILES | {MARKER} or "meta.json" not in names:
        return False
    if not all(not (path / n).is_symlink() and (path / n).is_file() for n in names):
        return False
    return isinstance(meta, dict) and {"num_experts", "top_k", "layers"} <= meta.keys()


def is_previous_output(path: str | Path, kind: str) -> bool:
    """True when `path` is a directory moesim wrote as an output of `kind` ("simulate", "trace")."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    marker = read_marker(path)
    if marker is not None:
        return marker["kind"] == kind
    return kind == "trace" and _is_plain_trace(path)


def _check_parent(absolute: Path, given: Path, field: str) -> None:
    """The first existing ancestor of `absolute` must be a writable directory (the output goes below it)."""
    for anc in absolute.parents:
        if anc.exists() or anc.is_symlink():
            if not anc.is_dir():
                raise _user_error(f"{anc} is a file, not a directory; cannot create the output below it",
                                  given, field)
            if not os.access(anc, os.W_OK | os.X_OK):
                raise _user_error(f"{anc} is not writable", given, field)
            return


def check_output_dir(path: str | Path, kind: str, force: bool = False, field: str = "--out") -> Path:
    """Raise a one-line UserError unless `path` may be written as an output directory of `kind`:
    it does not exist, or it is a previous output of `kind` and force is set. Returns the absolute path."""
    given = Path(path)
    if str(path).strip() == "":
        raise _user_error("empty path; expected a directory to write", given, field)
    absolute = Path(os.path.abspath(given))
    if given.is_symlink():
        raise _user_error("is a symbolic link; refusing to replace it (choose a new directory)", given, field)
    _check_parent(absolute, given, field)
    if not (absolute.exists() or absolute.is_symlink()):
        return absolute
    why = _protected(absolute.resolve())
    if why is not None:
        raise _user_error(f"{why}; refusing to replace it (choose a new directory)", given, field)
    if not absolute.is_dir():
        raise _user_error("exists and is a file, not a previous moesim output directory; refusing to "
                          "replace it (choose a new directory)", given, field)
    if not is_previous_output(absolute, kind):
        marker = read_marker(absolute)
        what = (f"a moesim {marker['kind']} output, not a {kind} output" if marker
                else "not a previous moesim output (no .moesim-output.json)")
        raise _user_error(f"directory exists and is {what}; refusing to replace it (choose a new directory)",
                          given, field)
    if not force:
        raise _user_error(f"holds a previous moesim {kind} output; pass --force to replace it", given, field)
    return absolute


def check_figure_dir(path: str | Path, field: str = "--out") -> Path:
    """Raise a one-line UserError unless figures can be written into directory `path`: it is an existing
    directory (figures are written into it file by file, atomically; other files are left alone) or can be
    created. Returns the absolute path."""
    given = Path(path)
    if str(path).strip() == "":
        raise _user_error("empty path; expected a directory for the figures", given, field)
    absolute = Path(os.path.abspath(given))
    if absolute.exists() and not absolute.is_dir():
        raise _user_error("exists and is not a directory; expected a directory for the figures", given, field)
    _check_parent(absolute, given, field)
    if absolute.is_dir() and not os.access(absolute, os.W_OK | os.X_OK):
        raise _user_error("is not writable", given, field)
    return absolute


def check_output_file(path: str | Path, force: bool = False, field: str = "--out",
                      is_previous: Callable[[Path], bool] | None = None) -> Path:
    """Raise a one-line UserError unless `path` may be written as an output file: it does not exist, or
    is_previous(path) says it is a previous moesim output and force is set. Returns the absolute path."""
    given = Path(path)
    if str(path).strip() == "":
        raise _user_error("empty path; expected a file to write", given, field)
    absolute = Path(os.path.abspath(given))
    _check_parent(absolute, given, field)
    if not (absolute.exists() or absolute.is_symlink()):
        return absolute
    if absolute.is_dir():
        raise _user_error("is a directory; expected a file path to write", given, field)
    if given.is_symlink() or not absolute.is_file():
        raise _user_error("is not a regular file; refusing to replace it", given, field)
    if is_previous is None or not is_previous(absolute):
        raise _user_error("file exists and is not a previous moesim output; refusing to replace it "
                          "(choose a new file name)", given, field)
    if not force:
        raise _user_error("holds a previous moesim output; pass --force to replace it", given, field)
    return absolute


def _os_error(exc: OSError, path: Path):
    reason = exc.strerror or exc.__class__.__name__
    return _user_error(f"cannot write ({reason})", path)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> None:
    """Call write(tmp_path) and rename the result to `path` (mode 0644). Callers that take a user's
    path check it first with check_output_file; this never replaces a directory."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            raise _user_error("is a directory; expected a file path to write", path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _os_error(exc, path) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def output_directory(path: str | Path, kind: str, *, force: bool = False, command: str | None = None,
                     field: str = "--out") -> Iterator[Path]:
    """Yield a temporary directory beside `path` to fill; on success it gets the marker and takes the
    place of `path`. `path` must pass check_output_dir(path, kind, force) (checked here, at the start, and
    again just before the rename). On any error or interrupt the temporary directory is removed and
    `path` is left as it was."""
    target = check_output_dir(path, kind, force, field)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise _os_error(exc, Path(path)) from None
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"kind": kind, "command": command or kind}) + "\n",
                                  encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp creates 0700
        check_output_dir(path, kind, force, field)  # nothing else appeared there meanwhile
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / target.name)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / target.name, target)  # put the previous output back
                old.rmdir()
                raise
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
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
    except IsADirectoryError:
        raise UserError("is a directory; expected a file", source=path, field=field) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read file ({exc.__class__.__name__})", source=path, field=field) from None


def strict_json(obj):
    """`obj` with every non-finite float (NaN, inf) replaced by None and numpy scalars and arrays made
    plain Python, so json.dumps(..., allow_nan=False) accepts it."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (str, int, float, bool)) and k is not None else k: strict_json(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return obj
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return strict_json(tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def dumps_json(obj, **kwargs) -> str:
    """Strict JSON (RFC 8259): NaN and inf become null; never emits NaN/Infinity tokens."""
    return json.dumps(strict_json(obj), allow_nan=False, **kwargs)
