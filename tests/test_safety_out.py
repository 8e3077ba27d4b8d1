"""--out never destroys data: what exists at an output path is left exactly as it was unless it is a
previous output of the same moesim command and --force is given (simulator/fileio.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from file_state import tree_state

from simulator import fileio
from simulator.cli import main
from simulator.errors import UserError

SYNTH = ["trace", "synth", "--model", "deepseek-v2-lite", "--tokens", "40", "--sequences", "2"]
SIM = ["simulate", "--engine", "analytic", "--tokens", "4", "--json"]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A user's working directory with a README, a source folder and a data folder, as the cwd."""
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "data" / "nested").mkdir(parents=True)
    (work / "README.md").write_text("# my project\n")
    (work / "src" / "a.py").write_text("print('hi')\n")
    (work / "data" / "nested" / "x.bin").write_bytes(bytes(range(256)))
    (work / "link-to-data").symlink_to(work / "data")
    (work / "link-to-readme").symlink_to(work / "README.md")
    monkeypatch.chdir(work)
    return work


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(err: str, command: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"moesim {command}: error: "), err
    assert "Traceback" not in err


EXISTING = ["README.md", ".", "./", "..", "src", "src/..", "data", "data/nested", "link-to-data",
            "link-to-readme", "README.md/sub", "data/nested/x.bin"]


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("target", EXISTING)
@pytest.mark.parametrize("command", [
    SYNTH + ["--out"], SIM + ["--out"], ["accuracy", "--bits", "3", "--trace-out"], ["compensate", "--bits", "3", "--out"]],
    ids=["trace-synth", "simulate", "accuracy-trace-out", "compensate"])
def test_an_existing_user_path_is_refused_and_left_untouched(capsys, sandbox, command, target, force):
    before = tree_state(sandbox.parent)
    rc, out, err = cli(capsys, *command, target, *(["--force"] if force else []))
    assert rc == 2 and out == ""
    assert_one_line_error(err, command[0])
    assert tree_state(sandbox.parent) == before


def test_messages_say_why(capsys, sandbox):
    expect = {
        "README.md": "exists and is a file, not a previous moesim output directory",
        ".": "it is the current directory",
        "..": "it is a parent of the current directory",
        "data": "not a previous moesim output (no .moesim-output.json)",
        "link-to-data": "is a symbolic link",
        "README.md/sub": "README.md is a file, not a directory",
    }
    for target, why in expect.items():
        rc, _, err = cli(capsys, *SYNTH, "--out", target, "--force")
        assert rc == 2 and why in err, (target, err)
        assert f"{target}: --out: " in err  # names the path and the flag
    rc, _, err = cli(capsys, "compensate", "--bits", "3", "--out", "src")
    assert rc == 2 and "src: --out: is a directory; expected a file path to write" in err


def test_the_repository_and_home_are_never_replaced(capsys, sandbox):
    for target in (fileio.REPO_ROOT, Path.home(), Path("/")):
        with pytest.raises(UserError, match="refusing to replace it"):
            fileio.check_output_dir(target, "trace", force=True)


def test_a_previous_trace_needs_force_and_is_then_replaced(capsys, sandbox):
    before = tree_state(sandbox)
    rc, out, _ = cli(capsys, *SYNTH, "--seed", "1", "--out", "runs/t")
    assert rc == 0 and out.strip() == "runs/t"
    marker = json.loads((sandbox / "runs/t" / fileio.MARKER).read_text())
    assert marker == {"kind": "trace", "command": "moesim trace synth"}
    first = tree_state(sandbox)
    assert {k: v for k, v in first.items() if not k.startswith("runs")} == before

    rc, _, err = cli(capsys, *SYNTH, "--seed", "2", "--out", "runs/t")  # no --force: refused, untouched
    assert rc == 2 and "holds a previous moesim trace output; pass --force to replace it" in err
    assert tree_state(sandbox) == first

    rc, _, _ = cli(capsys, *SYNTH, "--seed", "2", "--out", "runs/t", "--force")
    assert rc == 0
    second = tree_state(sandbox)
    assert set(second) == set(first)  # same files, no temporary siblings left behind
    assert second["runs/t/expert_ids.npy"] != first["runs/t/expert_ids.npy"]  # really replaced
    assert {k: v for k, v in second.items() if not k.startswith("runs")} == before


def test_a_trace_written_before_markers_is_a_previous_trace(capsys, sandbox):
    rc, _, _ = cli(capsys, *SYNTH, "--out", "t")
    (sandbox / "t" / fileio.MARKER).unlink()  # as the shipped traces: meta.json + arrays only
    rc, _, err = cli(capsys, *SYNTH, "--out", "t")
    assert rc == 2 and "pass --force" in err
    (sandbox / "t" / "notes.txt").write_text("mine")  # anything else in it: no longer just a trace
    rc, _, err = cli(capsys, *SYNTH, "--out", "t", "--force")
    assert rc == 2 and "not a previous moesim output" in err and (sandbox / "t" / "notes.txt").exists()


def test_outputs_of_another_command_are_not_replaced(capsys, sandbox):
    with fileio.output_directory("sim", "simulate", command="moesim simulate") as tmp:
        (tmp / "summary.json").write_text("{}")
    before = tree_state(sandbox)
    rc, _, err = cli(capsys, *SYNTH, "--out", "sim", "--force")
    assert rc == 2 and "is a moesim simulate output, not a trace output" in err
    rc, _, _ = cli(capsys, *SYNTH, "--out", "t")
    rc, _, err = cli(capsys, *SIM, "--out", "t", "--force")
    assert rc == 2 and "is a moesim trace output, not a simulate output" in err
    assert {k: v for k, v in tree_state(sandbox).items() if not k.startswith("t")} == before


def test_simulate_out_needs_force_to_replace_its_previous_output(capsys, sandbox):
    rc, _, _ = cli(capsys, *SIM, "--out", "run")
    assert rc == 0 and sorted(p.name for p in (sandbox / "run").iterdir()) == [
        fileio.MARKER, "steps.parquet", "summary.json"]
    first = tree_state(sandbox)
    rc, _, err = cli(capsys, *SIM, "--out", "run")
    assert rc == 2 and "pass --force" in err and tree_state(sandbox) == first
    rc, _, _ = cli(capsys, *SIM[:-3], "--tokens", "6", "--json", "--out", "run", "--force")
    assert rc == 0 and set(tree_state(sandbox)) == set(first)
    assert json.loads((sandbox / "run" / "summary.json").read_text())["steps"] == 6


def test_compensate_replaces_only_its_own_plan_with_force(capsys, sandbox):
    (sandbox / "user.parquet").write_bytes(b"PAR1 not a plan")
    (sandbox / "user.csv").write_text("a,b\n1,2\n")
    before = tree_state(sandbox)
    for name in ("user.parquet", "user.csv"):
        rc, _, err = cli(capsys, "compensate", "--bits", "3", "--out", name, "--force")
        assert rc == 2 and "file exists and is not a previous moesim output" in err
    assert tree_state(sandbox) == before
    rc, _, _ = cli(capsys, "compensate", "--bits", "3", "--out", "plan.csv")
    assert rc == 0 and (sandbox / "plan.csv.meta.json").is_file()
    first = tree_state(sandbox)
    rc, _, err = cli(capsys, "compensate", "--bits", "3", "--out", "plan.csv")
    assert rc == 2 and "pass --force" in err and tree_state(sandbox) == first
    rc, _, _ = cli(capsys, "compensate", "--bits", "4", "--out", "plan.csv", "--force")
    assert rc == 0 and set(tree_state(sandbox)) == set(first)
    assert "\n0,0,4," in (sandbox / "plan.csv").read_text()  # layer 0, expert 0 at 4 bits now


def test_an_interrupted_write_leaves_nothing_behind_and_the_previous_output_intact(sandbox):
    with fileio.output_directory("out", "trace") as tmp:
        (tmp / "meta.json").write_text('{"num_experts": 1, "top_k": 1, "layers": 1}')
    first = tree_state(sandbox)
    for exc in (KeyboardInterrupt, RuntimeError, OSError):
        with pytest.raises(exc), fileio.output_directory("out", "trace", force=True) as tmp:
            (tmp / "meta.json").write_text("half")
            raise exc
        assert tree_state(sandbox) == first
        with pytest.raises(exc), fileio.output_directory("new", "trace") as tmp:
            (tmp / "x").write_text("half")
            raise exc
        assert tree_state(sandbox) == first


def test_a_failed_swap_puts_the_previous_output_back(sandbox, monkeypatch):
    with fileio.output_directory("out", "simulate") as tmp:
        (tmp / "summary.json").write_text("old")
    first = tree_state(sandbox)
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new output moving into place
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", flaky)
    with pytest.raises(OSError), fileio.output_directory("out", "simulate", force=True) as tmp:
        (tmp / "summary.json").write_text("new")
    monkeypatch.setattr(fileio.os, "replace", real)
    assert len(calls) == 3 and tree_state(sandbox) == first


def test_save_trace_interrupted_midway_leaves_nothing(capsys, sandbox, monkeypatch):
    real = np.save
    count = [0]

    def dying(path, arr, *a, **k):
        count[0] += 1
        if count[0] == 3:
            raise KeyboardInterrupt
        return real(path, arr, *a, **k)

    monkeypatch.setattr(np, "save", dying)
    before = tree_state(sandbox)
    assert main([*SYNTH, "--out", "t"]) == 130
    assert tree_state(sandbox) == before


def test_atomic_write_keeps_the_old_file_on_failure(sandbox):
    def boom(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("disk died")

    with pytest.raises(RuntimeError):
        fileio.atomic_write("README.md", boom)
    assert (sandbox / "README.md").read_text() == "# my project\n"
    assert sorted(p.name for p in sandbox.iterdir()) == ["README.md", "data", "link-to-data", "link-to-readme", "src"]
    with pytest.raises(UserError, match="is a directory"):
        fileio.atomic_write("src", lambda tmp: None)


def test_an_unwritable_parent_is_one_line(capsys, sandbox, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fileio.tempfile, "mkdtemp", denied)
    before = tree_state(sandbox)
    rc, _, err = cli(capsys, *SYNTH, "--out", "new/t")
    assert rc == 2 and "new/t: cannot write (Permission denied)" in err
    assert_one_line_error(err, "trace")
    assert {k: v for k, v in tree_state(sandbox).items() if k != "new"} == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_refused_before_any_work(capsys, sandbox):
    (sandbox / "ro").mkdir(mode=0o555)
    rc, _, err = cli(capsys, *SYNTH, "--out", "ro/t")
    assert rc == 2 and "is not writable" in err


def test_strict_json():
    obj = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": np.float32("nan"),
           "d": np.arange(3), "e": np.int64(7), "f": {"g": (np.float64(2.0), None, True)}}
    text = fileio.dumps_json(obj, sort_keys=True)
    assert text == '{"a": null, "b": [null, null, 1.5], "c": null, "d": [0, 1, 2], "e": 7, "f": {"g": [2.0, null, true]}}'


@pytest.mark.parametrize("argv, field", [
    (["trace", "plot", "traces/esft-intent", "--out", "README.md"], "--out"),
    (["accuracy", "--weights", "minilm", "--bits", "3", "--figures", "README.md"], "--figures"),
])
def test_figures_into_a_file_refuse_before_any_work(capsys, monkeypatch, argv, field):
    """Figures go into a directory: a file there is one line naming the flag, checked before the evaluation
    (accuracy used to run for about 30 s, then fail with a bare "File exists")."""
    from simulator.accuracy import api
    from simulator.cli import main

    def evaluated(*_a, **_k):
        raise AssertionError("evaluated before the --figures check")

    monkeypatch.setattr(api, "evaluate", evaluated)
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert err.strip().endswith(f"README.md: {field}: exists and is not a directory; expected a directory for the "
                                "figures") and err.count("\n") == 1, err
