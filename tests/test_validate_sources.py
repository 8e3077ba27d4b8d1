"""The published-measurement files and the profiles they name: every shipped validation file loads, each point's
hardware config and runtime profile exist (with the host CPU a host-bound runtime needs), at most one figure is
calibrated per runtime and host CPU, and `moesim validate --json` gives every row the fields the issue asks for,
over at least three runtimes."""

from __future__ import annotations

import json

import pytest

from simulator.cli import main
from simulator.config.runtime import list_runtimes, load_runtime
from simulator.config.system import list_hwconfigs, load_system
from simulator.validate import check_calibrations, load_validation, validation_files

ROW_FIELDS = {"name", "source", "runtime", "hwconfig", "measured", "predicted", "unit", "rel_error", "kind"}
FILES = validation_files()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_point_names_a_shipped_box_and_runtime(path):
    vfile, specs = load_validation(path)
    assert vfile.source.strip()
    for point, spec in zip(vfile.points, specs):
        system = load_system(spec.hwconfig)
        runtime = load_runtime(spec.runtime)
        assert spec.runtime in list_runtimes(), f"{point.name}: runtime {spec.runtime!r} is not shipped"
        assert spec.hwconfig in list_hwconfigs(), f"{point.name}: hwconfig {spec.hwconfig!r} is not shipped"
        if runtime.host.on_critical_path:
            assert system.host.cpu is not None, f"{point.name}: {spec.runtime} needs {spec.hwconfig}'s host.cpu"


def test_at_most_one_calibration_per_runtime_and_host_cpu():
    check_calibrations([(path, *load_validation(path)) for path in FILES])  # raises on a second one


def test_every_shipped_box_names_its_host_cpu():
    for name in list_hwconfigs():
        cpu = load_system(name).host.cpu
        assert cpu is not None and cpu.single_thread > 0, name


def test_runtimes_share_the_reference_cpu_of_rtx3060():
    """Every shipped profile states its host figures on the rtx3060-pcie3 host (the Ryzen 5 5600X assumption)."""
    reference = load_system("rtx3060-pcie3").host.cpu.single_thread
    for name in list_runtimes():
        assert load_runtime(name).host.reference_single_thread == reference, name


def test_the_moe_infinity_rows():
    vfile, specs = load_validation(next(p for p in FILES if p.name == "moe-infinity.yaml"))
    assert vfile.unit == "ms/token"
    assert [p.measured for p in vfile.points] == [100.0, 735.0, 150.0]  # README 00181f1f, seconds x 1000
    assert {s.runtime for s in specs} == {"moe-infinity"} and {s.hwconfig for s in specs} == {"a5000-pcie4"}
    assert [s.model for s in specs] == ["deepseek-v2-lite", "mixtral-8x7b", "qwen3-30b-a3b"]
    assert sum(p.calibrates is not None for p in vfile.points) == 1


def test_validate_json_rows_carry_the_reported_fields(capsys):
    assert main(["validate", "--json", "--engine", "analytic"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows
    for row in rows:
        missing = ROW_FIELDS - row.keys()
        assert not missing, f"{row.get('name')}: no {sorted(missing)}"
        assert row["kind"] in ("prediction", "calibration")
    time_rows = [r for r in rows if r["unit"] != "J/token"]
    assert len({r["runtime"] for r in time_rows}) >= 2
    assert len({r["runtime"] for r in rows}) >= 3
