"""Sweeps under faults: two sweeps into one --out, corrupted task files, SIGKILL of the sweep process
alone, a huge grid, and a sweep file whose accuracy section or names are wrong (checked up front)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from sweep_fakes import FAKE_SWEEP, fake_accuracy, fake_point

from simulator.cli import main
from simulator.errors import UserError
from simulator.sweep import SweepSpec, expand, run_sweep
from simulator.sweep.spec import count_points, iter_points
from simulator.sweep.store import TABLE, Store

POINTS = expand(SweepSpec.model_validate(FAKE_SWEEP))
HOLD_LOCK = ("import sys, time\nfrom simulator.sweep.store import lock_output\n"
             "with lock_output(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n")


def run(out):
    with ThreadPoolExecutor(2) as ex:  # the fakes are pure functions: threads keep these tests fast
        return run_sweep(POINTS, out, ex, point_fn=fake_point, accuracy_fn=fake_accuracy, progress=False)


def write_sweep(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def sweep_cli(capsys, *argv) -> tuple[int, str]:
    rc = main(["sweep", *argv, "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    return rc, err


def test_a_second_sweep_into_the_same_out_refuses_with_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError) as exc:
            run(out)
        assert exc.value.render() == (f"{out}: --out: another sweep (pid {holder.pid}) is writing to this "
                                      "directory; wait for it or use another --out")
        path = write_sweep(tmp_path, {"name": "t", "base": {"hwconfig": "h100-pcie5", "tokens": 2}})
        rc, err = sweep_cli(capsys, path, "--out", str(out))
        assert rc == 2 and err.count("\n") == 1 and "another sweep" in err
        assert not (out / "points").exists() and not (out / TABLE).exists()
    finally:
        holder.kill()
        holder.wait()
    assert len(run(out).table) == len(POINTS)  # the lock dies with its holder, even killed


def test_corrupted_point_and_accuracy_files_are_recomputed_and_reported(tmp_path, capsys):
    first = run(tmp_path).table
    store = Store(tmp_path)
    broken = [store.point_path(POINTS[0].id), store.point_path(POINTS[3].id),
              store.accuracy_path(POINTS[3].accuracy_id)]
    broken[0].write_text('{"run": {"policy": "offl')          # truncated
    broken[1].write_text("[1, 2]")                            # JSON, but not a point record
    broken[2].write_bytes(b"\xff\xfe\x00")                    # not even text
    capsys.readouterr()
    again = run(tmp_path)
    err = capsys.readouterr().err.splitlines()
    assert again.ran == 3 and not again.failed
    assert err == [f"sweep: {broken[0]}: unreadable (JSONDecodeError); recomputing point 0",
                   f"sweep: {broken[2]}: unreadable (UnicodeDecodeError); recomputing this accuracy measurement",
                   f"sweep: {broken[1]}: no 'run' mapping; recomputing point 3"]
    pd.testing.assert_frame_equal(again.table, first)


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _running(p: psutil.Process) -> bool:
    """Alive and not a zombie (an exited orphan the container's init may never reap)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkill_of_the_sweep_process_leaves_no_worker_running(tmp_path):
    out, log = tmp_path / "out", tmp_path / "log"
    script = Path(__file__).with_name("sweep_fakes.py")
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(log)],
                            env={**os.environ, "SWEEP_FAKE_SLEEP": "0.3"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (log.exists() and len(log.read_text().split()) >= 2):   # both workers busy
        assert proc.poll() is None and time.monotonic() < deadline, "sweep ended before it was killed"
        time.sleep(0.05)
    children = _descendants(proc.pid)
    assert len(children) >= 3  # forkserver + 2 workers
    os.kill(proc.pid, signal.SIGKILL)                       # the sweep process only, not its group
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (alive := [p for p in children if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in alive:
        p.kill()
    assert alive == [], f"{len(alive)} of {len(children)} worker processes outlived the sweep"


def test_a_huge_grid_is_counted_and_refused_before_it_is_built(tmp_path, capsys):
    grid = {"batch": list(range(1, 1001)), "seed": list(range(1000))}
    path = write_sweep(tmp_path, {"name": "huge", "base": {"hwconfig": "h100-pcie5"}, "grid": grid})
    out = tmp_path / "out"
    start = time.monotonic()
    rc, err = sweep_cli(capsys, path, "--out", str(out))
    assert rc == 2 and time.monotonic() - start < 5
    assert err == (f"moesim sweep: error: {path}: grid: the sweep has 1000000 points, more than the limit of "
                   "10000; raise --max-points to run it\n")
    assert not out.exists()
    rc, err = sweep_cli(capsys, path, "--out", str(out), "--max-points", "0")
    assert rc == 2 and "--max-points: expected a positive number of points, got 0" in err
    spec = SweepSpec.model_validate({"name": "huge", "grid": grid})
    assert count_points(spec) == 10**6
    first = list(itertools.islice(iter_points(spec), 3))    # streamed: the grid is never materialised
    assert [(p.run.batch, p.run.seed) for p in first] == [(1, 0), (1, 1), (1, 2)]


def test_count_points_counts_every_entry_and_point():
    spec = SweepSpec.model_validate(FAKE_SWEEP)
    assert count_points(spec) == 2 * (1 + 3 + 8) + 1 == len(POINTS)


BASE = {"hwconfig": "h100-pcie5", "tokens": 2}


@pytest.mark.parametrize("accuracy, field, words", [
    ({"options": {"act_awre": True}}, "accuracy.options.act_awre",
     "'act_awre' is not an option of the accuracy model; expected one of act_aware, alpha,"),
    ({"options": {"hqq": "yes"}}, "accuracy.options.hqq", "Input should be a valid boolean"),
    ({"options": {"bits": 3}}, "accuracy.options.bits", "is set by the sweep"),
    ({"options": {"text": "no/such/file.txt"}}, "accuracy.options.text", "'no/such/file.txt' not found"),
    ({"allco": "uniform"}, "accuracy.allco", "Extra inputs are not permitted"),
    ({"weights": "no/such/checkpoint"}, "accuracy.weights",
     "weights directory 'no/such/checkpoint' not found; expected 'minilm' or a Hugging Face checkpoint"),
])
def test_a_bad_accuracy_section_fails_up_front_in_one_line(tmp_path, capsys, accuracy, field, words):
    path = write_sweep(tmp_path, {"name": "t", "base": BASE, "policies": [{"policy": "offload-lrc"}],
                                  "accuracy": accuracy})
    out = tmp_path / "out"
    rc, err = sweep_cli(capsys, path, "--out", str(out))
    assert rc == 2 and err.count("\n") == 1 and not out.exists()
    assert err.startswith(f"moesim sweep: error: {path}: {field}: {words}"), err


@pytest.mark.parametrize("entry, field, words", [
    ({"policies": [{"policy": "offload-lrc"}, {"policy": "ndp-lcr"}]}, "policies[1].policy", "unknown policy"),
    ({"points": [{"hwconfig": "nowhere-gpu"}]}, "points[0].hwconfig", "unknown hardware config 'nowhere-gpu'"),
    ({"grid": {"model": ["deepseek-v2-lite", "mixtral-9x9b"]}}, "grid.model", "mixtral-9x9b"),
    ({"points": [{"trace": "no/such/trace"}]}, "points[0].trace", "trace directory 'no/such/trace' not found"),
])
def test_names_that_do_not_resolve_fail_up_front(tmp_path, capsys, entry, field, words):
    path = write_sweep(tmp_path, {"name": "t", "base": BASE, **entry})
    rc, err = sweep_cli(capsys, path, "--out", str(tmp_path / "out"))
    assert rc == 2 and err.count("\n") == 1 and not (tmp_path / "out").exists()
    assert err.startswith(f"moesim sweep: error: {path}: {field}: ") and words in err, err
