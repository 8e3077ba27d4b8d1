"""Run-parameter quantities: a unit string or a bare number, the same rule on the command line and in YAML.

Hardware YAML is strict (simulator.units: every figure carries its unit). Run parameters that are
quantities (RunSpec.cache_bytes) accept both forms wherever they are given, so `--cache-bytes "4 GB"`,
`--cache-bytes 4e9`, `cache_bytes: 4 GB` and `cache_bytes: 4.0e+9` all mean the same:

    a number, or a string that is only a number  ->  the SI base unit (bytes, seconds, bytes/s)
    a string with a unit                         ->  parsed by simulator.units ("4 GB", "3.5 GiB")

The value is stored and serialised as a plain float in the base unit, so sweep point ids do not depend
on how a quantity was written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

from pydantic import BeforeValidator

from simulator.units import parse_bandwidth, parse_bytes, parse_time


def number_or_unit(parse: Callable[[object], float], kind: str, example: str) -> Callable[[object], float]:
    """A validator for one kind of quantity: bare numbers are in the base unit, strings with a unit go
    to `parse` (one of simulator.units' parsers). None passes through (optional fields)."""
    def validate(value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool):  # ValueError, not TypeError: pydantic turns only the former into a field error
            raise ValueError(f"expected a {kind} like '{example}' or a number, got {value!r}")  # noqa: TRY004
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return parse(value)  # raises ValueError with the unit parser's message
        else:
            raise ValueError(f"expected a {kind} like '{example}' or a number, got {value!r}")  # noqa: TRY004
        if not math.isfinite(number):
            raise ValueError(f"expected a finite {kind}, got {value!r}")
        return number
    validate.__name__ = f"{kind.replace(' ', '_')}_or_number"
    return validate


bytes_or_number = number_or_unit(parse_bytes, "size", "4 GB")
seconds_or_number = number_or_unit(parse_time, "duration", "250 ns")
bandwidth_or_number = number_or_unit(parse_bandwidth, "bandwidth", "64 GB/s")

# pydantic field types, and what the CLI's --help says about each one's unit (keyed by validator)
ByteCount = Annotated[float, BeforeValidator(bytes_or_number)]
Duration = Annotated[float, BeforeValidator(seconds_or_number)]
Rate = Annotated[float, BeforeValidator(bandwidth_or_number)]
UNIT_OF = {bytes_or_number: "bytes, e.g. '4 GB' or 4e9", seconds_or_number: "seconds, e.g. '250 ns' or 2.5e-7",
           bandwidth_or_number: "bytes/s, e.g. '64 GB/s' or 6.4e10"}
