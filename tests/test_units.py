"""Strict unit parsing: exact values on hand-computable inputs, and property tests on junk."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.units import parse_bandwidth, parse_bytes, parse_flops, parse_time


@pytest.mark.parametrize("text, expected", [
    ("80 GiB", 80 * 2**30), ("80 GB", 80e9), ("1.5 KiB", 1536.0), ("512B", 512.0), ("2 TB", 2e12),
])
def test_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("64 GB/s", 64e9), ("2.039 TB/s", 2.039e12), ("1 GiB/s", 2**30), ("12 GB/s", 12e9),
])
def test_bandwidth(text, expected):
    assert parse_bandwidth(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("989 TFLOPS", 989e12), ("1979 TOPS", 1979e12), ("4 TFLOP/s", 4e12), ("65 TFLOPS", 65e12),
])
def test_flops(text, expected):
    assert parse_flops(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("250 ns", 250e-9), ("4 us", 4e-6), ("1.5 ms", 1.5e-3), ("2 s", 2.0), ("3 µs", 3e-6),
])
def test_time(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("bad", ["80", 80, 80.0, None, True, "GB", "80 parsecs", "-1 GB", "nan GB",
                                 "1e999 B", "80 GB/s", "", "8 0 GB"])
def test_bytes_rejects(bad):
    with pytest.raises(ValueError):
        parse_bytes(bad)


def test_wrong_kind_is_rejected():
    with pytest.raises(ValueError, match="/s"):
        parse_bandwidth("64 GB")
    with pytest.raises(ValueError):
        parse_time("64 GB/s")
    with pytest.raises(ValueError):
        parse_flops("5 ns")


@given(st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.none(), st.binary(max_size=8)))
def test_parsers_only_raise_valueerror(junk):
    for parse in (parse_bytes, parse_bandwidth, parse_flops, parse_time):
        try:
            value = parse(junk)
        except ValueError:
            continue
        assert isinstance(value, float) and value >= 0


def test_rates_below_one_per_second_are_rejected_and_one_is_accepted():
    """A positive but tiny rate (1e-300 B/s) made every time overflow to inf and a run report 0 tokens/s."""
    import pytest

    from simulator.units import parse_bandwidth, parse_flops

    assert parse_bandwidth("1 B/s") == 1.0 and parse_flops("1 FLOPS") == 1.0
    for bad in ("0.5 B/s", "1e-300 B/s"):
        with pytest.raises(ValueError, match="expected a positive bandwidth of at least 1 per second"):
            parse_bandwidth(bad)
    with pytest.raises(ValueError, match="expected a positive compute rate of at least 1 per second"):
        parse_flops("1e-3 FLOPS")
