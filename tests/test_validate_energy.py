"""`moesim validate` with measured energy: a time point with measured_joules_per_token gives a J/token
row right after its time row, a J/token file gives J/token rows, the prediction is the summary's
energy.joules_per_token, a hwconfig without energy figures gives null (not 0) and is left out of the
error summary, --json stays strict, and inconsistent files fail with one line naming the field."""

from __future__ import annotations

import json

import pytest

import simulator.simulate
from simulator.cli import main
from simulator.errors import UserError
from simulator.validate import ENERGY_UNIT, error_summary, load_validation, validate, validation_files

BREAKDOWN = {"gpu_compute": 0.1, "gpu_memory": 0.2, "link": 0.3, "host_memory": 0.05, "cxl_memory": 0.0,
             "ndp_compute": 0.0, "static": 0.35}


def _summary(spec, system=None) -> dict:
    """A simulate() summary shaped like the engine's: 10 tokens/s; 1 J/token where the hwconfig is the
    'energetic' one (h100-pcie5 here), no energy elsewhere."""
    energy = None
    if spec.hwconfig == "h100-pcie5":
        energy = {"total_j": 10.0, "joules_per_token": sum(BREAKDOWN.values()), "tokens_per_joule": 1.0,
                  "average_power_w": 10.0, "breakdown_j_per_token": dict(BREAKDOWN)}
    return {"tokens_per_s": 10.0, "ms_per_token": 100.0, "energy": energy}


@pytest.fixture
def fake_simulate(monkeypatch):
    monkeypatch.setattr(simulator.simulate, "simulate", _summary)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_time_point_with_energy_gives_an_energy_row_after_it(tmp_path, fake_simulate):
    path = _write(tmp_path, "t.yaml", "source: s\nunit: tokens/s\npoints:\n"
                  "  - {name: a, hwconfig: h100-pcie5, measured: 8.0, measured_joules_per_token: 2.0, energy_scope: gpu}\n"
                  "  - {name: b, hwconfig: h100-pcie5, measured: 12.5}\n")
    rows = validate([path])
    assert [(r["name"], r["unit"]) for r in rows] == [("a", "tokens/s"), ("a", ENERGY_UNIT), ("b", "tokens/s")]
    energy = rows[1]
    assert energy["measured"] == 2.0 and energy["predicted"] == pytest.approx(1.0)
    assert energy["rel_error"] == pytest.approx(-0.5) and energy["energy_scope"] == "gpu"
    assert energy["predicted_breakdown_j_per_token"] == BREAKDOWN
    assert rows[0]["rel_error"] == pytest.approx(0.25)
    s = error_summary(rows)
    assert s["points"] == 2 and s["median_abs_rel_error"] == pytest.approx((0.25 + 0.2) / 2)   # time rows only
    assert s["energy_points"] == 1 and s["energy_median_abs_rel_error"] == pytest.approx(0.5)


def test_joules_per_token_file_and_a_hwconfig_without_energy(tmp_path, fake_simulate, capsys):
    path = _write(tmp_path, "e.yaml", "source: s\nunit: J/token\nenergy_scope: node\npoints:\n"
                  "  - {name: with, hwconfig: h100-pcie5, measured: 0.8}\n"
                  "  - {name: without, hwconfig: t4-pcie3, measured: 0.8}\n")
    rows = validate([path])
    assert [r["unit"] for r in rows] == [ENERGY_UNIT] * 2
    assert rows[0]["rel_error"] == pytest.approx(0.25)
    assert rows[1]["predicted"] is None and rows[1]["rel_error"] is None
    assert rows[1]["predicted_breakdown_j_per_token"] is None
    s = error_summary(rows)
    assert s["points"] == 0 and s["median_abs_rel_error"] is None
    assert (s["energy_points"], s["energy_predicted_points"]) == (2, 1)
    assert s["energy_worst_abs_rel_error"] == pytest.approx(0.25)

    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "t4-pcie3 has no energy figures" in out and "(measured: node)" in out
    assert "1 energy points (J/token): median |error| 25.0%" in out

    assert main(["validate", str(path), "--json"]) == 0
    def no_constant(name):
        raise AssertionError(f"non-strict JSON constant {name}")
    parsed = json.loads(capsys.readouterr().out, parse_constant=no_constant)
    assert parsed[1]["predicted"] is None and parsed[0]["energy_scope"] == "node"


@pytest.mark.parametrize("text, match", [
    ("unit: tokens/s\npoints:\n  - {name: a, hwconfig: t4-pcie3, measured: 1.0, measured_joules_per_token: 1.0}\n",
     "go together"),
    ("unit: tokens/s\npoints:\n  - {name: a, hwconfig: t4-pcie3, measured: 1.0, energy_scope: gpu}\n", "go together"),
    ("unit: J/token\npoints:\n  - {name: a, hwconfig: t4-pcie3, measured: 1.0}\n", "energy_scope"),
    ("unit: tokens/s\nenergy_scope: gpu\npoints:\n  - {name: a, hwconfig: t4-pcie3, measured: 1.0}\n", "energy_scope"),
    (("unit: J/token\nenergy_scope: gpu\npoints:\n  - {name: a, hwconfig: t4-pcie3, measured: 1.0, "
     "calibrates: runtime.host.per_kernel}\n"), "calibrated"),
    (("unit: tokens/s\npoints:\n  - {name: a, hwconfig: t4-pcie3, measured: 1.0, measured_joules_per_token: -1, "
     "energy_scope: gpu}\n"), "measured_joules_per_token"),
    (("unit: tokens/s\npoints:\n  - {name: a, hwconfig: t4-pcie3, measured: 1.0, measured_joules_per_token: 1, "
     "energy_scope: wall}\n"), "energy_scope"),
])
def test_inconsistent_energy_files_are_one_line(tmp_path, text, match):
    path = _write(tmp_path, "bad.yaml", "source: s\n" + text)
    with pytest.raises(UserError, match=match) as exc:
        load_validation(path)
    assert "\n" not in exc.value.render() and exc.value.render().startswith(str(path))


def test_shipped_energy_points_load():
    """Every shipped file parses; the energy points name a scope and a hwconfig that exists."""
    from simulator.config.system import load_system

    energy_points = 0
    for path in validation_files():
        vfile, specs = load_validation(path)
        for point, spec in zip(vfile.points, specs):
            load_system(spec.hwconfig)
            if vfile.unit == ENERGY_UNIT or point.measured_joules_per_token is not None:
                energy_points += 1
                assert (vfile.energy_scope or point.energy_scope) in ("gpu", "gpu+cpu+dram", "node")
    assert energy_points >= 2
