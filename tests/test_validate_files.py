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
    assert [s.prefetch for s in specs] == [True, None, None, True, None, None]  # None: the runtime's (off)
    assert [p.calibrates for p in vfile.points] == [None, None, "runtime.host.per_kernel", None, None, None]
    assert {s.runtime for s in specs} == {"mixtral-offloading"}
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
    rows = [{"rel_error": e, "kind": k, "runtime": rt} for e, k, rt in
            ((0.1, "prediction", "a"), (-0.3, "prediction", "b"), (0.0, "calibration", "a"), (0.05, "prediction", "a"))]
    s = error_summary(rows)
    assert {k: v for k, v in s.items() if k != "by_runtime"} == pytest.approx(
        {"points": 4, "median_abs_rel_error": 0.075, "worst_abs_rel_error": 0.3, "held_out_points": 3,
         "held_out_median_abs_rel_error": 0.1, "held_out_worst_abs_rel_error": 0.3})
    assert s["by_runtime"]["a"]["prediction"] == pytest.approx(
        {"points": 2, "median_abs_rel_error": 0.075, "worst_abs_rel_error": 0.1})
    assert s["by_runtime"]["a"]["calibration"]["points"] == 1
    assert list(s["by_runtime"]["b"]) == ["prediction"]


def test_one_calibration_point_per_runtime_and_host_cpu(tmp_path):
    from simulator.validate import validate

    path = _write(tmp_path, "source: s\nunit: tokens/s\nrun: {runtime: mixtral-offloading}\npoints:\n"
                            "  - {name: a, hwconfig: t4-pcie3, measured: 1.0, calibrates: runtime.host.per_kernel}\n"
                            "  - {name: b, hwconfig: t4-pcie3, measured: 2.0, calibrates: runtime.host.per_kernel}\n")
    with pytest.raises(UserError, match="a second calibration point for runtime 'mixtral-offloading' on host CPU") as exc:
        validate([path])
    assert exc.value.render().startswith(f"{path}: points.1.calibrates: ")


def test_expert_bytes_match_the_hqq_storage_the_implementation_copies():
    """validation/eliseev2023.yaml: HQQ 2-bit g16 with 8-bit scale and zero (fp16 scale+zero per 128
    scales, one per tensor for the zeros) is the `hqq` weight format, byte for byte; attention is
    4-bit g64 `hqq-meta256` with its own group (tests/test_formats.py has the hand counts)."""
    from simulator.config.model import load_model
    from simulator.validate import load_validation

    model = load_model("mixtral-8x7b")
    weights = [i * o for i, o in model.expert_shapes]  # gate, up, down
    hqq = sum(n / 4 + n / 16 + n / 16 + (n / 16 / 128) * 4 + 2 * 2 for n in weights)  # W_q, scale_q, zero_q, metas
    spec = load_validation(validation_files()[0])[1][0]
    assert (spec.weight_format, spec.bits, spec.group) == ("hqq", 2, 16)
    assert (spec.attention_format, spec.attention_bits, spec.attention_group) == ("hqq-meta256", 4, 64)
    assert model.expert_bytes(spec.bits, spec.group, spec.weight_format) == hqq == 66_404_364


def test_calibrated_figures_still_reproduce_their_points():
    """A runtime figure calibrated on a point (runtimes/mixtral-offloading.yaml host.per_kernel) must still
    reproduce it: a cost-model change that moves the point means the figure needs fitting again."""
    from simulator.validate import validate

    rows = validate(validation_files()[:1], engine="analytic")
    fitted = [r for r in rows if r["kind"] == "calibration"]
    assert [(r["name"], r["runtime"]) for r in fitted] == [("rtx3060/no-cache", "mixtral-offloading")]
    for r in fitted:
        assert abs(r["rel_error"]) < 0.005, r["name"]
    assert {r["kind"] for r in rows if r not in fitted} == {"prediction"}


def test_fit_recovers_the_shipped_calibration_and_rejects_unknown_figures(tmp_path):
    """`moesim validate --fit` solves for each calibration point's figure: on the shipped file it lands on
    the shipped host time per kernel (29.0 us on the reference CPU, rounded to 0.1 us in the profile), and
    the fitted profile writes out and loads back."""
    from simulator.config.runtime import load_runtime
    from simulator.validate import fit, write_fitted_profiles

    fits = fit(validation_files()[:1], engine="analytic")
    assert [(f["hwconfig"], f["figure"], f["runtime"]) for f in fits] == [
        ("rtx3060-pcie3", "runtime.host.per_kernel", "mixtral-offloading")]
    for f in fits:
        assert f["fitted"] == pytest.approx(f["shipped"], abs=0.05e-6)
    [written] = write_fitted_profiles(fits, tmp_path / "fitted")
    back = load_runtime(written)
    assert (back.name, back.host.per_kernel) == ("mixtral-offloading-fitted-rtx3060-pcie3", fits[0]["fitted"])
    assert back.kernels == fits[0]["profile"].kernels
    bad = _write(tmp_path, "source: s\nunit: tokens/s\npoints:\n"
                           "  - {name: a, hwconfig: t4-pcie3, measured: 1.0, calibrates: gpu.launch_overhead}\n")
    with pytest.raises(UserError) as exc:
        load_validation(bad)
    assert exc.value.render().startswith(f"{bad}: points.0.calibrates: ")


def test_ms_per_step_is_the_decode_time_per_step():
    """unit ms/step (inter-token latency): the decode wall time over the steps, whatever the batch."""
    from simulator.validate import predicted_time

    summary = {"sim_time_s": 0.5, "steps": 40, "tokens": 320, "tokens_per_s": 640.0, "ms_per_token": 1.5625}
    assert predicted_time(summary, "ms/step") == 12.5
    assert (predicted_time(summary, "tokens/s"), predicted_time(summary, "ms/token")) == (640.0, 1.5625)
