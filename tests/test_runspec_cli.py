"""RunSpec is the one list of run parameters: every field is settable from `moesim simulate`'s flags and
from a sweep file, with one rule for quantities (unit string or bare number) in both; flag spellings in
use stay valid; bad values and a batch larger than the trace are one-line errors."""

from __future__ import annotations

import pytest
import yaml

from simulator.cli import build_parser, main
from simulator.commands.run_flags import describe, flag, spec_from_args
from simulator.config.run import RunSpec
from simulator.errors import UserError
from simulator.sweep import SweepSpec, expand, load_sweep

# candidate non-default values per kind, tried in order until one differs from the default and validates
CANDIDATES = {int: [3, 8, 2], float: [0.5, 2.0], str: ["h100-pcie5", "somewhere"]}


def other_value(name: str):
    """A valid value of field `name` other than its default, as (command-line text, Python value)."""
    info = RunSpec.model_fields[name]
    kind = describe(info)
    if kind["type"] is bool:
        return None, not info.default
    if kind["choices"]:
        choice = next(c for c in kind["choices"] if c != info.default)
        return choice, choice
    if kind["unit"]:
        return "2 GB", 2e9
    for value in CANDIDATES[kind["type"]]:
        if value != info.default:
            try:
                RunSpec.model_validate({name: value})
            except ValueError:
                continue
            return str(value), value
    raise AssertionError(f"no candidate value for {name}")


def parse(*argv: str) -> RunSpec:
    return spec_from_args(build_parser().parse_args(["simulate", *argv]))


@pytest.mark.parametrize("name", list(RunSpec.model_fields))
def test_every_field_is_settable_from_the_command_line(name):
    text, value = other_value(name)
    if text is None:  # bool: --name / --no-name
        argv = [flag(name) if value else "--no-" + flag(name)[2:]]
    elif flag(name).startswith("--"):
        argv = [flag(name), text]
    else:  # the positional HWCONFIG
        argv = [text]
    spec = parse(*argv)
    assert getattr(spec, name) == value
    assert spec == RunSpec(**{name: value})  # nothing else changed


@pytest.mark.parametrize("name", list(RunSpec.model_fields))
def test_every_field_is_settable_from_a_sweep_base_and_grid(name):
    _, value = other_value(name)
    for spec in (SweepSpec(name="s", base={name: value}), SweepSpec(name="s", grid={name: [value]})):
        (point,) = expand(spec)
        assert getattr(point.run, name) == value


def test_defaults_are_runspecs_and_every_field_is_in_help():
    assert parse() == RunSpec()
    text = build_parser()._subparsers._group_actions[0].choices["simulate"].format_help()
    for name in RunSpec.model_fields:
        assert flag(name) in text, name


def test_optional_fields_take_none_and_tokens_zero_is_the_whole_trace():
    assert parse("--tokens", "0").tokens is None
    assert parse("--tokens", "none").tokens is None
    assert parse("--trace", "none", "--synthetic-tokens", "64").trace is None
    assert RunSpec(tokens=0).tokens is None
    (point,) = expand(SweepSpec(name="s", base={"tokens": 0}))
    assert point.run.tokens is None


@pytest.mark.parametrize("text", ["4 GB", "4e9", "4000000000", "4.0e+9", "3.7252902984619140625 GiB"])
def test_quantities_take_units_or_bare_numbers_in_the_cli_and_in_yaml(text, tmp_path):
    assert parse("--cache-bytes", text).cache_bytes == 4e9
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nbase: {{cache_bytes: {text}}}\n")
    (point,) = expand(load_sweep(path))
    assert point.run.cache_bytes == 4e9
    assert point.id == expand(SweepSpec(name="s", base={"cache_bytes": 4e9}))[0].id  # same point, same id


# every flag spelling used in README.md, notebooks/, benchmarks/, sweeps/ and the tests
IN_USE = [["h100-pcie5", "--policy", "offload-lrc", "--top-n", "2", "--rank", "32", "--json"],
          ["a100-pcie4", "--model", "mixtral-8x7b", "--synthetic-tokens", "2048", "--policy", "offload-fp16",
           "--cache-experts-per-layer", "2", "--prefetch", "--prefetch-hit-rate", "0.8"],
          ["--batch", "8", "--prompt", "128", "--out", "runs/x"], ["--engine", "analytic", "--tokens", "0"],
          ["--model", "minilm-moe", "--trace", "traces/minilm-moe-sample", "--bits", "3", "--plan", "p.parquet"],
          ["--cache-bytes", "20 GB", "--cache-policy", "lfu", "--attention-bits", "4", "--context", "64",
           "--seed", "3", "--group", "64", "--force"]]


@pytest.mark.parametrize("argv", IN_USE)
def test_flag_spellings_in_use_still_parse(argv):
    args = build_parser().parse_args(["simulate", *argv])
    RunSpec.model_validate({k: v for k, v in vars(args).items() if k in RunSpec.model_fields and v is not None})


@pytest.mark.parametrize("argv, expected", [
    (["--cache-bytes", "4 XB"], "moesim simulate: error: --cache-bytes: Value error, unknown size unit 'XB'"),
    (["--cache-bytes", "-1"], "moesim simulate: error: --cache-bytes: Input should be greater than or equal to 0"),
    (["--batch", "two"], "moesim simulate: error: --batch: Input should be a valid integer"),
    (["--prefetch-hit-rate", "inf"], "moesim simulate: error: --prefetch-hit-rate: Input should be a finite number"),
    (["--runtime", "nosuch"], "moesim simulate: error: unknown runtime 'nosuch'; shipped: fused, "),
    (["--batch", "500"], ("moesim simulate: error: batch: batch 500 exceeds the 127 sequences of trace "
                          "traces/esft-intent; at most 127 can decode in lockstep")),
])
def test_bad_values_are_one_line_naming_the_flag(capsys, argv, expected):
    assert main(["simulate", "--tokens", "2", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(expected) and err.count("\n") == 1, err


def test_batch_larger_than_the_trace_is_an_invalid_sweep_point():
    from simulator.sweep.runner import simulate_point

    with pytest.raises(UserError, match="batch 500 exceeds the 127 sequences"):
        simulate_point(RunSpec(batch=500, tokens=2).model_dump())


def test_sweep_yaml_quantity_with_a_bad_unit_names_the_file_and_field(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "grid": {"cache_bytes": ["4 GB", "4 XB"]}}))
    with pytest.raises(UserError) as exc:
        expand(load_sweep(path), source=path)
    line = exc.value.render()
    assert line.startswith(f"{path}: grid.cache_bytes: Value error, unknown size unit 'XB'") and "\n" not in line
