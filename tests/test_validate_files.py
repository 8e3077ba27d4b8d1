"""Validation files: the shipped points load into RunSpecs; bad files fail with one line naming the field."""

from __future__ import annotations

import pytest

from simulator.config.system import load_system
from simulator.errors import UserError
from simulator.validate import error_summary, load_validation, validation_files


def test_shipped_points_load_with_their_hardware():
    paths = validation_files()
    assert [p.name for p in paths][:1] == ["eliseev2023.yaml"]
    vfile, specs = load_validation(paths[0])
    assert [p.name for p in vfile.points] == [
        "rtx3060/lru+prefetch", "rtx3060/lru", "rtx3060/no-cache", "t4/lru+prefetch", "t4/lru", "t4/no-cache"]
    assert [s.cache_experts_per_layer for s in specs] == [2, 2, 0, 4, 4, 0]
    assert [s.prefetch for s in specs] == [True, False, False, True, False, False]
    assert [p.calibrates for p in vfile.points] == [None, None, "gpu.launch_overhead"] * 2
    assert {s.model for s in specs} == {"mixtral-8x7b"}
    for s in specs:
        load_system(s.hwconfig)  # every hardware config exists and parses


def _write(tmp_path, text):
    path = tmp_path / "v.yaml"
    path.write_text(text)
    return path


def test_unknown_run_field_names_file_point_and_field(tmp_path):
    path = _write(tmp_path, "source: s\nunit: tokens/s\npoints:\n"
                            "  - {name: a, hwconfig: t4-pcie3, measured: 1.0, run: {bogus: 3}}\n")
    with pytest.raises(UserError) as exc:
        load_validation(path)
    assert exc.value.render().startswith(f"{path}: points.0.run.bogus: ")


def test_duplicate_names_and_bad_unit_are_rejected(tmp_path):
    dup = _write(tmp_path, "source: s\nunit: tokens/s\npoints:\n"
                           "  - {name: a, hwconfig: t4-pcie3, measured: 1.0}\n"
                           "  - {name: a, hwconfig: t4-pcie3, measured: 2.0}\n")
    with pytest.raises(UserError, match="unique"):
        load_validation(dup)
    unit = _write(tmp_path, "source: s\nunit: furlongs\npoints:\n  - {name: a, hwconfig: x, measured: 1.0}\n")
    with pytest.raises(UserError, match="unit"):
        load_validation(unit)


def test_error_summary_is_median_and_worst_of_absolute_errors():
    rows = [{"rel_error": e, "calibrates": c} for e, c in ((0.1, None), (-0.3, None), (0.0, "gpu.x"), (0.05, None))]
    assert error_summary(rows) == pytest.approx({"points": 4, "median_abs_rel_error": 0.075,
                                                 "worst_abs_rel_error": 0.3, "held_out_points": 3,
                                                 "held_out_median_abs_rel_error": 0.1,
                                                 "held_out_worst_abs_rel_error": 0.3})


def test_one_calibration_point_per_hwconfig(tmp_path):
    path = _write(tmp_path, "source: s\nunit: tokens/s\npoints:\n"
                            "  - {name: a, hwconfig: t4-pcie3, measured: 1.0, calibrates: gpu.launch_overhead}\n"
                            "  - {name: b, hwconfig: t4-pcie3, measured: 2.0, calibrates: gpu.launch_overhead}\n")
    with pytest.raises(UserError, match="at most one calibration point per hwconfig"):
        load_validation(path)


def test_expert_bytes_match_the_hqq_storage_the_implementation_copies():
    """validation/eliseev2023.yaml: HQQ 2-bit g16 with 8-bit scale and zero (fp16 scale+zero per 128
    scales, one per tensor for the zeros) is within 1% of our (bits 2, group 32, fp16 scale+zero)."""
    from simulator.config.model import load_model

    model = load_model("mixtral-8x7b")
    weights = [i * o for i, o in model.expert_shapes]  # gate, up, down
    hqq = sum(n / 4 + n / 16 + n / 16 + (n / 16 / 128) * 4 + 2 * 2 for n in weights)  # W_q, scale_q, zero_q, metas
    assert hqq == pytest.approx(model.expert_bytes(2, 32), rel=0.01)
    assert hqq > model.expert_bytes(2, 32)


def test_calibrated_figures_still_reproduce_their_points():
    """A hardware figure calibrated on a point (hwconfigs/rtx3060-pcie3.yaml, t4-pcie3.yaml) must still
    reproduce it: a cost-model change that moves these points means the figure needs fitting again."""
    from simulator.validate import validate

    rows = validate(validation_files()[:1], engine="analytic")
    fitted = [r for r in rows if r["calibrates"]]
    assert [r["name"] for r in fitted] == ["rtx3060/no-cache", "t4/no-cache"]
    for r in fitted:
        assert abs(r["rel_error"]) < 0.005, r["name"]


def test_fit_recovers_the_shipped_calibration_and_rejects_unknown_figures(tmp_path):
    """`moesim validate --fit` solves for each calibration point's figure: on the shipped file it lands on
    the shipped launch overheads (34.2 us, 66.1 us, rounded to 0.1 us in the hwconfigs)."""
    from simulator.validate import fit

    fits = fit(validation_files()[:1], engine="analytic")
    assert [(f["hwconfig"], f["figure"]) for f in fits] == [("rtx3060-pcie3", "gpu.launch_overhead"),
                                                           ("t4-pcie3", "gpu.launch_overhead")]
    for f in fits:
        assert f["fitted"] == pytest.approx(f["shipped"], abs=0.05e-6)
    bad = _write(tmp_path, "source: s\nunit: tokens/s\npoints:\n"
                           "  - {name: a, hwconfig: t4-pcie3, measured: 1.0, calibrates: gpu.hbm_bandwidth}\n")
    with pytest.raises(UserError) as exc:
        load_validation(bad)
    assert exc.value.render().startswith(f"{bad}: points.0.calibrates: ")
