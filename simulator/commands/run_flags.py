"""Command-line flags derived from RunSpec's fields, and the RunSpec they give back.

Every RunSpec field becomes one argument (see simulator.config.run): `--kebab-name` with the field's
description and default as its help, a bool as a --name / --no-name pair, a Literal as choices, the
field marked positional (hwconfig) as an optional positional argument. Argparse only collects strings;
RunSpec validates them, so the command line and sweep files follow one rule (quantities with or without
a unit, `tokens` 0 = the whole trace), and a bad value is one line naming the flag.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any

from pydantic import BeforeValidator, ValidationError
from pydantic.fields import FieldInfo

from simulator.config.quantity import UNIT_OF
from simulator.config.run import RunSpec
from simulator.errors import UserError, format_validation_error

NONE_WORDS = ("none", "null")  # an optional field given one of these on the command line is None


def flag(name: str) -> str:
    """The command-line spelling of a RunSpec field: top_n -> --top-n (hwconfig: HWCONFIG)."""
    return name.upper() if is_positional(RunSpec.model_fields[name]) else "--" + name.replace("_", "-")


def is_positional(info: FieldInfo) -> bool:
    return (info.json_schema_extra or {}).get("cli") == "positional"


def describe(info: FieldInfo) -> dict[str, Any]:
    """What the CLI needs of a field's type: the base type, whether None is allowed, Literal choices,
    and the unit help of a quantity (from its validator; None when not a quantity)."""
    optional, base, choices, unit = False, None, None, None
    todo = [info.annotation, *info.metadata]
    while todo:
        t = todo.pop()
        if isinstance(t, BeforeValidator):
            unit = UNIT_OF.get(t.func, unit)
            continue
        origin = typing.get_origin(t)
        if origin in (typing.Annotated, typing.Union, types.UnionType):
            todo += list(typing.get_args(t))
        elif origin is typing.Literal:
            base, choices = str, [str(c) for c in typing.get_args(t)]
        elif t is type(None):
            optional = True
        elif isinstance(t, type):
            base = t
    return {"type": base, "optional": optional, "choices": choices, "unit": unit}


def _help(name: str, info: FieldInfo, kind: dict[str, Any]) -> str:
    default = info.default
    shown = "none" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
    extra = [f"in {kind['unit']}"] if kind["unit"] else []
    if kind["optional"] and default is not None and "none" not in (info.description or ""):
        extra.append("'none' to unset")
    extra.append(f"default {shown}")
    text = (info.description or name.replace("_", " ")).replace("%", "%%")
    return f"{text} ({'; '.join(extra)})"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """One argument per RunSpec field; a flag not given stays None and the field keeps its default."""
    for name, info in RunSpec.model_fields.items():
        kind = describe(info)
        help_text = _help(name, info, kind)
        if is_positional(info):
            parser.add_argument(name, nargs="?", default=None, metavar=name.upper(), help=help_text)
        elif kind["type"] is bool:
            parser.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            metavar = "SIZE" if kind["unit"] else {int: "N", float: "X"}.get(kind["type"], name.upper())
            parser.add_argument(flag(name), dest=name, default=None, choices=kind["choices"],
                                metavar=None if kind["choices"] else metavar, help=help_text)


def run_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The RunSpec fields given on the command line (strings; `none` for an optional field is None)."""
    fields = {}
    for name, info in RunSpec.model_fields.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if isinstance(value, str) and value.strip().lower() in NONE_WORDS and describe(info)["optional"]:
            value = None
        fields[name] = value
    return fields


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """Validate the given flags as a RunSpec ;
    a bad value is a one-line UserError naming the flag."""
    try:
        spec = RunSpec.model_validate(run_fields(args))
    except ValidationError as exc:
        err = format_validation_error(exc)
        name = (err.field or "").split(".")[0]
        field = flag(name) if name in RunSpec.model_fields else err.field
        raise UserError(err.detail, field=field) from None
    return spec
