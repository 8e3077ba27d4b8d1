"""The sweep runner on a real process pool with stand-in point functions: table shape, joins, resume,
invalid points, retried failures; and killing a sweep (SIGINT, SIGKILL) then rerunning it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sweep_fakes import FAKE_SWEEP, fake_accuracy, fake_point, fake_raising

from simulator.sweep import SweepSpec, expand, run_sweep
from simulator.sweep.executors import open_executor
from simulator.sweep.store import TABLE

POINTS = expand(SweepSpec.model_validate(FAKE_SWEEP))
N_ACC = len({p.accuracy_id for p in POINTS})


def run(out, point_fn=fake_point):
    with open_executor(workers=2) as ex:
        return run_sweep(POINTS, out, ex, point_fn=point_fn, accuracy_fn=fake_accuracy, progress=False)


def test_table_has_one_row_per_point_with_inputs_outputs_and_accuracy(tmp_path):
    res = run(tmp_path)
    t = res.table
    assert res.ran == len(POINTS) + N_ACC and not res.failed
    assert list(t["point"]) == list(range(len(POINTS)))
    assert list(t["point_id"]) == [p.id for p in POINTS]
    lrc = t[(t.policy == "offload-lrc") & (t.bits == 2) & (t.top_n == 2) & (t["rank"] == 32)].iloc[0]
    assert lrc["link_bytes_per_token.pcie"] == 2e6 + 64e3
    assert lrc["breakdown_ms_per_token.attention"] == 1.0
    assert lrc["accuracy.rel_output_error"] == 0.25 / 5
    fp16 = t[t.policy == "offload-fp16"]
    assert list(fp16["accuracy.rel_output_error"]) == [0.0, 0.0]
    bad = t[t.status == "invalid"]
    assert len(bad) == 1 and bad.iloc[0]["reason"] == "rank: rank needs an lrc policy"
    assert (t.status == "ok").sum() == len(POINTS) - 1
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / TABLE), t)


def test_rerun_runs_nothing_and_gives_the_same_table(tmp_path):
    first = run(tmp_path).table
    again = run(tmp_path)
    assert again.ran == 0
    pd.testing.assert_frame_equal(again.table, first)


def test_failures_are_reported_not_stored_and_retried(tmp_path):
    res = run(tmp_path, point_fn=fake_raising)
    assert len(res.failed) == sum(p.run.batch == 2 for p in POINTS)
    assert all("RuntimeError: boom" in f for f in res.failed)
    assert len(res.table) == len(POINTS) - len(res.failed)
    done = run(tmp_path)
    assert done.ran == len(res.failed) and len(done.table) == len(POINTS)


def _driver(out: Path, log: Path, sleep: str) -> subprocess.Popen:
    env = {**os.environ, "SWEEP_FAKE_SLEEP": sleep}
    script = Path(__file__).with_name("sweep_fakes.py")
    return subprocess.Popen([sys.executable, str(script), str(out), str(log)], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_sweep_loses_nothing_and_runs_nothing_twice(tmp_path, sig):
    out = tmp_path / "out"
    proc = _driver(out, tmp_path / "log1", sleep="0.3")
    deadline = time.monotonic() + 60
    while len(list((out / "points").glob("*.json"))) < 4:   # wait until some points are finished
        assert proc.poll() is None and time.monotonic() < deadline, "sweep ended before it was killed"
        time.sleep(0.05)
    os.killpg(proc.pid, sig)                                 # like Ctrl-C / kill -9 on the job
    proc.wait(timeout=30)
    assert proc.returncode != 0
    finished = {p.stem for p in (out / "points").glob("*.json")}
    assert 4 <= len(finished) < len(POINTS)

    rerun = _driver(out, tmp_path / "log2", sleep="0")
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read().decode()
    started = (tmp_path / "log2").read_text().split()
    assert len(started) == len(set(started))                 # nothing twice within the rerun
    assert finished.isdisjoint(started)                      # nothing finished before is run again
    assert finished | set(started) == {p.id for p in POINTS}
    table = pd.read_parquet(out / TABLE)
    assert sorted(table["point_id"]) == sorted(p.id for p in POINTS)   # exactly one row per point
