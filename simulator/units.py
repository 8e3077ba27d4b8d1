"""Strict parsing of quantities with units: "64 GB/s", "989 TFLOPS", "250 ns", "80 GiB", "0.6 pJ",
"3.9 pJ/bit", "70 W".

Everything inside the simulator is SI: seconds, bytes, bytes/s, FLOP/s. YAML files carry strings with
units, and a bare number where a unit is required is an error (it is too easy to mean GB and write GiB).
Decimal prefixes are powers of 1000, binary prefixes (Ki, Mi, Gi, Ti) powers of 1024.
Every quantity is finite and non-negative; rates (bandwidth, FLOP/s) are strictly positive, since the
simulator divides by them (a zero rate would be an infinite time).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_DECIMAL = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_TIME_DIVISOR = {"s": 1, "ms": 10**3, "us": 10**6, "µs": 10**6, "ns": 10**9, "ps": 10**12}

_NUMBER = r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_QTY = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[A-Za-zµ/]+)\s*$")


def _split(text: object, kind: str, example: str) -> tuple[Decimal, str]:
    if isinstance(text, bool) or not isinstance(text, str):
        # ValueError, not TypeError: pydantic turns only the former into a field error
        raise ValueError(f"expected a {kind} as a string with a unit, like '{example}', got {text!r}")  # noqa: TRY004
    m = _QTY.match(text)
    if not m:
        raise ValueError(f"expected a {kind} like '{example}', got {text!r}")
    value = Decimal(m.group("num"))  # exact decimal, so "2.039 TB/s" is exactly 2039e9
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a finite non-negative {kind}, got {text!r}")
    return value, m.group("unit")

MIN_RATE = 1.0  # smallest rate accepted (bytes or FLOP per second): a tinier one is a typo and overflows times


def _checked(value: Decimal, scale: int | Decimal, text: object, kind: str, positive: bool = False,
             divide: bool = False) -> float:
    """value x scale (or / scale) as a float that is finite, and >= MIN_RATE when `positive` (a rate)."""
    result = float(value / scale if divide else value * scale)
    if not math.isfinite(result):
        raise ValueError(f"{kind} {text!r} is too large (not a finite number of SI units)")
    if positive and result < MIN_RATE:
        raise ValueError(f"expected a positive {kind} of at least {MIN_RATE:g} per second (the simulator divides by it; "
                         f"below that times overflow), got {text!r}")
    return result


def _prefixed(unit: str, base_units: tuple[str, ...], allow_binary: bool) -> int | None:
    for base in base_units:
        if unit.endswith(base):
            prefix = unit[: -len(base)]
            if prefix in _DECIMAL:
                return _DECIMAL[prefix]
            if allow_binary and prefix in _BINARY:
                return _BINARY[prefix]
    return None


def parse_bytes(text: object) -> float:
    """'80 GiB' -> 85899345920.0 bytes. Accepts B, kB..PB, KiB..TiB."""
    value, unit = _split(text, "size", "80 GiB")
    scale = _prefixed(unit, ("B",), allow_binary=True)
    if scale is None:
        raise ValueError(f"unknown size unit {unit!r} in {text!r}; expected B, KB, MB, GB, TB, KiB, MiB, GiB, TiB")
    return _checked(value, scale, text, "size")


def parse_bandwidth(text: object) -> float:
    """'64 GB/s' -> 6.4e10 bytes/s. Accepts B/s with decimal or binary prefixes."""
    value, unit = _split(text, "bandwidth", "64 GB/s")
    if not unit.endswith("/s"):
        raise ValueError(f"expected a bandwidth unit ending in '/s' (e.g. 'GB/s'), got {text!r}")
    scale = _prefixed(unit[:-2], ("B",), allow_binary=True)
    if scale is None:
        raise ValueError(f"unknown bandwidth unit {unit!r} in {text!r}; expected B/s, GB/s, TB/s, GiB/s, ...")
    return _checked(value, scale, text, "bandwidth", positive=True)


def parse_flops(text: object) -> float:
    """'989 TFLOPS' -> 9.89e14 FLOP/s. Accepts FLOPS, FLOP/s and OPS/TOPS (integer ops)."""
    value, unit = _split(text, "compute rate", "989 TFLOPS")
    scale = _prefixed(unit, ("FLOPS", "FLOP/s", "OPS", "OP/s"), allow_binary=False)
    if scale is None:
        raise ValueError(f"unknown compute unit {unit!r} in {text!r}; expected FLOPS, GFLOPS, TFLOPS, TOPS")
    return _checked(value, scale, text, "compute rate", positive=True)


def parse_time(text: object) -> float:
    """'250 ns' -> 2.5e-7 seconds. Accepts s, ms, us (or µs), ns, ps."""
    value, unit = _split(text, "duration", "250 ns")
    if unit not in _TIME_DIVISOR:
        raise ValueError(f"unknown time unit {unit!r} in {text!r}; expected s, ms, us, ns")
    return _checked(value, _TIME_DIVISOR[unit], text, "duration", divide=True)


_SMALL = {"": Decimal(1), "m": Decimal(10) ** -3, "u": Decimal(10) ** -6, "µ": Decimal(10) ** -6,
          "n": Decimal(10) ** -9, "p": Decimal(10) ** -12, "f": Decimal(10) ** -15, "k": Decimal(10) ** 3}


def _small_prefixed(text: object, kind: str, example: str, base: str) -> float:
    value, unit = _split(text, kind, example)
    prefix = unit[: -len(base)] if unit.endswith(base) else None
    if prefix not in _SMALL:
        raise ValueError(f"unknown {kind} unit {unit!r} in {text!r}; expected {base} with a prefix f, p, n, u, m "
                         f"or none (e.g. '{example}')")
    return _checked(value, _SMALL[prefix], text, kind)


def parse_energy(text: object) -> float:
    """'0.6 pJ' -> 6e-13 joules (energy per operation). Accepts fJ, pJ, nJ, uJ, mJ, J."""
    return _small_prefixed(text, "energy", "0.6 pJ", "J")


def parse_energy_per_bit(text: object) -> float:
    """'3.9 pJ/bit' -> 3.9e-12 joules per bit moved or accessed."""
    if isinstance(text, str) and not text.strip().endswith("/bit"):
        raise ValueError(f"expected an energy per bit like '3.9 pJ/bit', got {text!r}")
    try:
        return _small_prefixed(text.strip()[:-4] if isinstance(text, str) else text, "energy per bit", "3.9 pJ", "J")
    except ValueError as exc:  # name what was written, unit included
        raise ValueError(str(exc).replace(repr(text.strip()[:-4]), repr(text)) if isinstance(text, str)
                         else str(exc)) from None


def parse_power(text: object) -> float:
    """'70 W' -> 70.0 watts. Accepts mW, W, kW."""
    return _small_prefixed(text, "power", "70 W", "W")


def _fmt(value: float, unit: str) -> str:
    return f"{value!r} {unit}"


# pydantic field types: parse strings with units on input, serialise back to SI strings.
Bytes = Annotated[float, BeforeValidator(parse_bytes), PlainSerializer(lambda v: _fmt(v, "B"))]
Bandwidth = Annotated[float, BeforeValidator(parse_bandwidth), PlainSerializer(lambda v: _fmt(v, "B/s"))]
FlopRate = Annotated[float, BeforeValidator(parse_flops), PlainSerializer(lambda v: _fmt(v, "FLOPS"))]
Seconds = Annotated[float, BeforeValidator(parse_time), PlainSerializer(lambda v: _fmt(v, "s"))]
Joules = Annotated[float, BeforeValidator(parse_energy), PlainSerializer(lambda v: _fmt(v, "J"))]
JoulesPerBit = Annotated[float, BeforeValidator(parse_energy_per_bit), PlainSerializer(lambda v: _fmt(v, "J/bit"))]
Watts = Annotated[float, BeforeValidator(parse_power), PlainSerializer(lambda v: _fmt(v, "W"))]
