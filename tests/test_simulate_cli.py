"""`moesim simulate` end to end: JSON keys, --out files (Chrome trace format), and one-line errors."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from simulator.cli import main
from simulator.routing.trace import Trace, TraceMeta, save_trace

FAST = ["--tokens", "8"]
BREAKDOWN = {"attention", "router", "expert_gpu", "compensation", "expert_ndp", "transfer_stall", "other"}


def run_cli(capsys, *argv):
    rc = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_has_the_promised_keys(capsys):
    rc, out, err = run_cli(capsys, *FAST, "--json")
    assert rc == 0 and err == ""
    s = json.loads(out)
    assert s["policy"] == "ndp-lrc" and s["hwconfig"] == "h100-cxl-ndp" and s["tokens"] == 8
    assert set(s["breakdown_ms_per_token"]) == BREAKDOWN
    assert sum(s["breakdown_ms_per_token"].values()) == pytest.approx(s["ms_per_token"])
    assert s["tokens_per_s"] == pytest.approx(1e3 / s["ms_per_token"])
    assert set(s["link_bytes_per_token"]) == {"pcie", "cxl"}
    assert set(s["link_utilization"]["cxl"]) == {"to_gpu", "from_gpu"}
    assert 0 <= s["cache_hit_rate"] <= 1


def test_default_prints_a_readable_table(capsys):
    rc, out, _ = run_cli(capsys, *FAST)
    assert rc == 0 and "ndp-lrc on h100-cxl-ndp" in out and "transfer_stall" in out


def test_out_writes_steps_summary_and_a_chrome_trace(capsys, tmp_path):
    out_dir = tmp_path / "run"
    rc, _, _ = run_cli(capsys, *FAST, "--batch", "2", "--out", str(out_dir), "--json")
    assert rc == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temp leftovers
    assert sorted(p.name for p in out_dir.iterdir()) == [".moesim-output.json", "steps.parquet", "summary.json",
                                                         "timeline.json"]
    steps = pd.read_parquet(out_dir / "steps.parquet")
    assert len(steps) == 8 and (steps["tokens"] == 2).all()
    events = json.loads((out_dir / "timeline.json").read_text())["traceEvents"]
    meta = [e for e in events if e["ph"] == "M"]
    spans = [e for e in events if e["ph"] == "X"]
    names = {e["args"]["name"] for e in meta}
    assert {"GPU", "compute stream", "link cxl", "to_gpu #0", "from_gpu #0", "NDP", "unit 0"} <= names
    assert all({"name", "ts", "dur", "pid", "tid"} <= set(e) and e["dur"] >= 0 for e in spans)
    declared = {(e["pid"], e["tid"]) for e in meta if e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in spans} <= declared
    for track in declared:  # complete events on one thread never overlap
        ts = sorted((e["ts"], e["ts"] + e["dur"]) for e in spans if (e["pid"], e["tid"]) == track)
        assert all(a[1] <= b[0] + 1e-6 for a, b in itertools.pairwise(ts))
    rc, _, err = run_cli(capsys, *FAST, "--out", str(out_dir), "--json")  # a previous output: needs --force
    assert rc == 2 and "pass --force" in err and len(pd.read_parquet(out_dir / "steps.parquet")) == 8
    rc, _, _ = run_cli(capsys, *FAST, "--out", str(out_dir), "--json", "--force")  # overwrite in place
    assert rc == 0 and len(pd.read_parquet(out_dir / "steps.parquet")) == 8


def test_synthetic_mixtral_runs(capsys):
    rc, out, _ = run_cli(capsys, "a100-pcie4", "--model", "mixtral-8x7b", "--synthetic-tokens", "64",
                         "--policy", "offload-fp16", "--cache-experts-per-layer", "2", "--json", *FAST)
    s = json.loads(out)
    assert rc == 0 and s["model"] == "mixtral-8x7b" and s["tokens"] == 8 and s["cache_per_layer"]


def _wrong_k_trace(path):
    ids = np.tile(np.arange(4, dtype=np.int16), (3, 26, 1))  # [3, 26, 4]: k = 4, the model routes 6
    scores = np.tile(np.array([0.4, 0.3, 0.2, 0.1], dtype=np.float32), (3, 26, 1))
    meta = TraceMeta(name="k4", model="deepseek-v2-lite", num_experts=64, top_k=4, layers=26, source="test")
    save_trace(Trace(meta, ids, scores, np.zeros(3, np.int32), np.arange(3, dtype=np.int32)), path)
    return str(path)


def _small_plan(path):
    from simulator.accuracy.plan import save_plan

    rows = [{"layer": layer, "expert": e, "bits": 4, "group": 128, "rank": 8, "kurtosis": 3.0,
             "bytes_lowbit": 1e6, "bytes_factors": 1e4, "err_before": 0.1, "err_after": 0.05}
            for layer in range(2) for e in range(8)]
    save_plan(pd.DataFrame(rows), {"model": "toy"}, path)
    return str(path)


@pytest.mark.parametrize("argv,expected", [
    (["--policy", "offload-lowbit", "--rank", "8"], "rank: policy offload-lowbit has no low-rank compensation"),
    (["--top-n", "7"], "top_n: top-n 7 exceeds the model's top-k 6"),
    (["h100-pcie5", "--policy", "ndp-hot"], "policy: policy ndp-hot needs NDP units but h100-pcie5 has none"),
    (["--policy", "fancy"], "policy: unknown policy 'fancy'"),
    (["--model", "mixtral-8x7b"], "num_experts: trace has 64 experts per layer but model mixtral-8x7b has 8"),
    (["h100-pcie5", "--model", "mixtral-8x7b", "--synthetic-tokens", "16", "--policy", "gpu-resident",
      "--bits", "16"], "policy: the routed experts need 90.2 GB of HBM"),
    (["nowhere-gpu"], "unknown hardware config 'nowhere-gpu'"),
    (["--batch", "0"], "batch: Input should be greater than or equal to 1"),
])
def test_bad_combinations_fail_with_one_line(capsys, argv, expected):
    rc, out, err = run_cli(capsys, *argv, *FAST)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and expected in err, err


def test_trace_with_another_k_and_plan_for_another_shape_fail_with_one_line(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "--trace", _wrong_k_trace(tmp_path / "k4"), *FAST)
    assert rc == 2 and "top_k: trace has top_k=4 but model deepseek-v2-lite routes top_k=6" in err
    rc, _, err = run_cli(capsys, "--plan", _small_plan(tmp_path / "plan.parquet"), *FAST)
    assert rc == 2 and err.count("\n") == 1 and "plan covers 16 (layer, expert) pairs over 2 layers x 8" in err


def test_the_installed_command_prints_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "simulate", "h100-pcie5", "--policy", "ndp-lrc"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    line = ("moesim simulate: error: policy: policy ndp-lrc needs NDP units but h100-pcie5 has none "
            "(try hwconfig h100-cxl-ndp)")
    assert proc.stderr.strip().splitlines() == [line]


def test_engine_flag_selects_the_analytic_path(tmp_path):
    out = tmp_path / "run"
    assert main(["simulate", "--engine", "analytic", "--tokens", "8", "--out", str(out), "--json"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spec"]["engine"] == "analytic"
    assert (out / "steps.parquet").exists() and not (out / "timeline.json").exists()
