"""Calibration against published measurements: simulate each measured point and report the error.

validation/*.yaml each hold one source's points (ValidationFile): the source, the unit, RunSpec fields
shared by every point (`run`) and the points, each with a name, a hardware config, the measured value
and its own RunSpec fields. A point is simulated with exactly the shipped figures of its hardware
config and runtime profile: nothing is fitted per point. A runtime figure no datasheet gives (the host's
time per kernel) may be calibrated on one point per runtime and host CPU (`calibrates:
runtime.host.per_kernel`, documented in the profile); that point's row is a "calibration" row whose error
is zero by construction, and every other row is a "prediction" (reported apart, per runtime). The predicted
value is the summary field the unit names.

Energy: a point may also carry a measured energy per generated token (`measured_joules_per_token`, with
`energy_scope` saying what the meter covered), or a whole file may be in J/token. Such a point gives an
energy row beside its time row: measured vs the run's predicted joules per token (summary energy, from the
hwconfig's energy figures; None where the hwconfig has none). Energy rows are summarised apart from the
time rows; no energy figure is calibrated on any point.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator.config.loading import load_yaml_file
from simulator.config.run import RunSpec
from simulator.config.runtime import Runtime, load_runtime
from simulator.config.system import load_system
from simulator.errors import UserError, format_validation_error

VALIDATION_DIR = Path(__file__).resolve().parents[1] / "validation"
TIME_UNITS = ("tokens/s", "ms/token", "ms/step")  # ms/step: time per decode step (inter-token latency)


def predicted_time(summary: dict, unit: str) -> float:
    """The run's figure in a time unit: tokens/s and ms/token as the summary gives them; ms/step the decode
    wall time per step (a step emits one token per sequence, so this is the inter-token latency)."""
    if unit == "ms/step":
        return 1e3 * float(summary["sim_time_s"]) / int(summary["steps"])
    return float(summary["tokens_per_s" if unit == "tokens/s" else "ms_per_token"])
ENERGY_UNIT = "J/token"   # predicted by simulate()["energy"]["joules_per_token"]
# what a published energy measurement covered (moesim predicts the GPU board's dynamic energy for the ops
# it models, the links, host/CXL memory and NDP, plus the static power the hwconfig gives)
EnergyScope = Literal["gpu", "gpu+cpu+dram", "node"]


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    hwconfig: str
    measured: float = Field(gt=0, description="the measured value, in the file's unit")
    run: dict[str, Any] = Field(default_factory=dict, description="RunSpec fields of this point")
    calibrates: Literal["runtime.host.per_kernel"] | None = Field(
        default=None, description="the runtime figure fitted to this point, if any (see fit())")
    measured_joules_per_token: float | None = Field(
        default=None, gt=0, description="measured energy per generated token (J), beside a time measurement")
    energy_scope: EnergyScope | None = Field(
        default=None, description="what the energy meter covered: the GPU board (NVML), GPU + CPU + DRAM "
                                  "(NVML + RAPL) or the whole node (wall/BMC)")

    @model_validator(mode="after")
    def _scope_with_energy(self) -> Point:
        if (self.measured_joules_per_token is None) != (self.energy_scope is None):
            raise ValueError("measured_joules_per_token and energy_scope go together (give both or neither)")
        return self


class ValidationFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1, description="paper/table/code the measured values come from")
    unit: Literal["tokens/s", "ms/token", "ms/step", "J/token"]
    energy_scope: EnergyScope | None = Field(
        default=None, description="with unit J/token: what the meter covered (as Point.energy_scope)")
    run: dict[str, Any] = Field(default_factory=dict, description="RunSpec fields shared by all points")
    points: list[Point] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> ValidationFile:
        if (self.unit == ENERGY_UNIT) != (self.energy_scope is not None):
            raise ValueError("energy_scope is given exactly when unit is J/token (what the meter covered)")
        if self.unit == ENERGY_UNIT and any(p.measured_joules_per_token is not None for p in self.points):
            raise ValueError("in a J/token file `measured` is the energy; measured_joules_per_token is for "
                             "time files")
        if self.unit == ENERGY_UNIT and any(p.calibrates for p in self.points):
            raise ValueError("no figure is calibrated on an energy point (calibrates: only in time files)")
        names = [p.name for p in self.points]
        if len(set(names)) != len(names):
            raise ValueError(f"point names must be unique, got {names}")
        return self


def load_validation(path: str | Path) -> tuple[ValidationFile, list[RunSpec]]:
    """Read one validation file and build each point's RunSpec (errors name the file and point)."""
    vfile = load_yaml_file(path, ValidationFile)
    specs = []
    for i, point in enumerate(vfile.points):
        fields = {**vfile.run, **point.run, "hwconfig": point.hwconfig}
        try:
            specs.append(RunSpec.model_validate(fields))
        except ValidationError as exc:
            err = format_validation_error(exc, source=path)
            key = (err.field or "").split(".")[0]
            where = "run" if key in vfile.run and key not in point.run else f"points.{i}.run"
            raise UserError(err.detail, source=path, field=f"{where}.{err.field}") from None
    return vfile, specs


def validation_files(directory: str | Path = VALIDATION_DIR) -> list[Path]:
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise UserError("no validation files (*.yaml)", source=directory)
    return files


def _energy_row(base: dict, measured: float, scope: str, summary: dict) -> dict:
    """One J/token record: predicted from the summary's energy (None, with rel_error None, where the
    hwconfig gives no energy figures), with the predicted breakdown by component."""
    energy = summary.get("energy")
    predicted = None if energy is None else float(energy["joules_per_token"])
    return {**base, "unit": ENERGY_UNIT, "measured": measured, "predicted": predicted,
            "rel_error": None if predicted is None else (predicted - measured) / measured,
            "energy_scope": scope, "predicted_breakdown_j_per_token": None if energy is None else
            {k: float(v) for k, v in energy["breakdown_j_per_token"].items()}}


def _short_source(vfile: ValidationFile) -> str:
    """The first clause of the file's source (authors, title), for a row."""
    return vfile.source.split(",")[0].strip() + (", " + vfile.source.split(",")[1].strip()
                                                 if "," in vfile.source else "")


def validate(paths: list[Path], engine: str | None = None) -> list[dict]:
    """Simulate every point of every file; one record per point (a time point with a measured energy gives
    a second, J/token record right after it), in file then point order. `kind` is "calibration" for the
    point a runtime figure was fitted to (its error is zero by construction) and "prediction" otherwise."""
    from simulator.simulate import simulate

    loaded = [(path, *load_validation(path)) for path in paths]
    check_calibrations(loaded)
    rows = []
    for path, vfile, specs in loaded:
        for point, spec in zip(vfile.points, specs):
            if engine:
                spec = spec.model_copy(update={"engine": engine})
            summary = simulate(spec)
            base = {"name": point.name, "file": path.name, "source": _short_source(vfile),
                    "runtime": spec.runtime, "hwconfig": point.hwconfig, "calibrates": point.calibrates,
                    "kind": "calibration" if point.calibrates else "prediction"}
            if vfile.unit == ENERGY_UNIT:
                rows.append(_energy_row(base, point.measured, vfile.energy_scope, summary))
                continue
            predicted = predicted_time(summary, vfile.unit)
            rows.append({**base, "unit": vfile.unit, "measured": point.measured, "predicted": predicted,
                         "rel_error": (predicted - point.measured) / point.measured})
            if point.measured_joules_per_token is not None:
                rows.append(_energy_row(base, point.measured_joules_per_token, point.energy_scope, summary))
    return rows


def check_calibrations(loaded: list[tuple[Path, ValidationFile, list[RunSpec]]]) -> None:
    """At most one calibrated figure per runtime and host CPU, over all the files: a second calibration point
    of the same (runtime, host CPU) would fit the figure twice."""
    seen: dict[tuple[str, str], str] = {}
    for path, vfile, specs in loaded:
        for i, (point, spec) in enumerate(zip(vfile.points, specs)):
            if point.calibrates:
                cpu = load_system(spec.hwconfig).host.cpu
                key = (spec.runtime, cpu.name if cpu is not None else spec.hwconfig)
                if key in seen:
                    raise UserError(f"a second calibration point for runtime {key[0]!r} on host CPU {key[1]!r} "
                                    f"(the first: {seen[key]}); calibrate at most one figure per runtime and "
                                    "host CPU", source=path, field=f"points.{i}.calibrates")
                seen[key] = f"{path.name} {point.name}"


def _gap(spec: RunSpec, runtime: Runtime, unit: str, measured: float) -> float:
    """Predicted minus measured time per token (s/token for tokens/s, ms for ms/token) with `runtime`."""
    from simulator.simulate import simulate

    value = predicted_time(simulate(spec, runtime=runtime), unit)
    return 1 / value - 1 / measured if unit == "tokens/s" else value - measured


def fit_per_kernel(spec: RunSpec, unit: str, measured: float) -> tuple[Runtime, Runtime]:
    """(shipped, fitted) runtime profile of `spec`, the fitted one's host.per_kernel set so that `spec`
    predicts `measured` and restated on spec.hwconfig's host CPU (its reference). Time per token is affine
    in the per-kernel time wherever launches are on the critical path, so secant steps converge in two or
    three simulations."""
    shipped = load_runtime(spec.runtime)
    cpu = load_system(spec.hwconfig).host.cpu
    if not shipped.host.on_critical_path or cpu is None:
        raise UserError(f"runtime {shipped.name!r} has no host time on the critical path to fit on "
                        f"{spec.hwconfig}", field="calibrates")

    def with_per_kernel(seconds: float) -> Runtime:  # restated on this host's CPU
        host = shipped.host.model_copy(update={"per_kernel": seconds, "reference_cpu": cpu.name,
                                               "reference_single_thread": cpu.single_thread})
        return shipped.model_copy(update={"host": host})

    scale = 1 / measured if unit == "tokens/s" else measured
    x0 = shipped.host_seconds(shipped.host.per_kernel, load_system(spec.hwconfig))
    x1 = 2 * x0 + 1e-6
    f0, f1 = (_gap(spec, with_per_kernel(x), unit, measured) for x in (x0, x1))
    for _ in range(6):
        if f1 == f0 or abs(f1) <= 1e-9 * scale:
            break
        x0, f0, x1 = x1, f1, x1 - f1 * (x1 - x0) / (f1 - f0)
        f1 = _gap(spec, with_per_kernel(x1), unit, measured)
    return shipped, with_per_kernel(max(x1, 0.0))


def fit(paths: list[Path], engine: str | None = None) -> list[dict]:
    """Each point's `calibrates:` figure fitted to its measurement (fit_per_kernel), one record per
    calibration point with the shipped value beside the fitted one (both on the point's host CPU) and the
    fitted profile."""
    out = []
    for path in paths:
        vfile, specs = load_validation(path)
        for point, spec in zip(vfile.points, specs):
            if point.calibrates:  # (only in time files: ValidationFile forbids it in J/token ones)
                spec = spec.model_copy(update={"engine": engine}) if engine else spec
                shipped, fitted = fit_per_kernel(spec, vfile.unit, point.measured)
                system = load_system(spec.hwconfig)
                out.append({"name": point.name, "file": path.name, "hwconfig": point.hwconfig,
                            "runtime": shipped.name, "figure": point.calibrates,
                            "shipped": shipped.host_seconds(shipped.host.per_kernel, system),
                            "fitted": fitted.host.per_kernel, "profile": fitted})
    return out


def write_fitted_profiles(fits: list[dict], out: Path, force: bool = False) -> list[Path]:
    """Write each fit's profile as `out`/<runtime>-fitted-<hwconfig>.yaml (source and per_kernel say where the
    figure comes from); the folder is checked and marked as moesim's (simulator.fileio)."""
    from datetime import date

    import yaml

    from simulator.fileio import output_directory

    written = []
    with output_directory(out, "fitted-runtimes", force=force, command="validate --fit") as folder:
        for f in fits:
            profile = f["profile"]
            data = profile.model_dump(mode="json")
            data["name"] = f"{profile.name}-fitted-{f['hwconfig']}"
            data["source"] = (f"{profile.source}; host.per_kernel fitted by `moesim validate --fit` on "
                              f"{f['file']} point {f['name']} ({date.today().isoformat()})")
            (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            written.append(out / f"{data['name']}.yaml")
    return written


def error_summary(rows: list[dict]) -> dict:
    """Median and worst absolute relative error of the time rows: over all of them, over the prediction rows
    (held_out_*: no figure was fitted to them; None when there are none), and per runtime
    (`by_runtime`: runtime -> {kind -> {points, median, worst}}). Where there are energy (J/token) rows,
    the same over them under energy_* keys: energy_points counts every energy row, energy_predicted_points
    those whose hwconfig has energy figures (the errors are over these)."""
    time_rows = [r for r in rows if r.get("unit") != ENERGY_UNIT]
    out = {}
    for prefix, subset in (("", time_rows), ("held_out_", [r for r in time_rows if r.get("kind") == "prediction"])):
        errors = [abs(r["rel_error"]) for r in subset]
        out[f"{prefix}points"] = len(subset)
        out[f"{prefix}median_abs_rel_error"] = statistics.median(errors) if errors else None
        out[f"{prefix}worst_abs_rel_error"] = max(errors) if errors else None
    by_runtime: dict[str, dict] = {}
    for r in time_rows:
        by_runtime.setdefault(r["runtime"], {}).setdefault(r["kind"], []).append(abs(r["rel_error"]))
    out["by_runtime"] = {rt: {kind: {"points": len(e), "median_abs_rel_error": statistics.median(e),
                                     "worst_abs_rel_error": max(e)} for kind, e in sorted(kinds.items())}
                         for rt, kinds in sorted(by_runtime.items())}
    energy_rows = [r for r in rows if r.get("unit") == ENERGY_UNIT]
    if energy_rows:
        errors = [abs(r["rel_error"]) for r in energy_rows if r["rel_error"] is not None]
        out["energy_points"] = len(energy_rows)
        out["energy_predicted_points"] = len(errors)
        out["energy_median_abs_rel_error"] = statistics.median(errors) if errors else None
        out["energy_worst_abs_rel_error"] = max(errors) if errors else None
    return out
