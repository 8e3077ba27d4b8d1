"""User-facing errors: one clear line naming the file, the field and what was expected.

The CLI catches :class:`UserError` (and pydantic's ValidationError via :func:`format_validation_error`)
and prints a single line to stderr with a non-zero exit, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input from the user: a file, a flag or a combination that cannot be simulated."""

    def __init__(self, message: str, *, source: str | Path | None = None, field: str | None = None):
        self.source = str(source) if source is not None else None
        self.field = field
        self.detail = message
        super().__init__(self.render())

    def render(self) -> str:
        parts = [p for p in (self.source, self.field) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.detail}" if prefix else self.detail


def format_validation_error(exc, source: str | Path | None = None) -> UserError:
    """Turn a pydantic ValidationError into a one-line UserError naming the first offending field."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
    msg = err.get("msg", "invalid value")
    extra = len(exc.errors()) - 1
    more = f" (and {extra} more error{'s' if extra > 1 else ''})" if extra else ""
    return UserError(f"{msg}{more}", source=source, field=loc or None)
