"""`moesim sweep` end to end on the real engine: a tiny sweep file, an illegal point kept with the
engine's reason, a rerun that runs nothing, and bad input as one line."""

from __future__ import annotations

import pandas as pd

from simulator.cli import main

SWEEP = """
name: tiny
base: {hwconfig: h100-pcie5, model: deepseek-v2-lite, trace: traces/esft-intent, tokens: 4, cache_bytes: 4.0e+9}
policies:
  - {policy: offload-lowbit, grid: {bits: [3, 4]}}
  - {policy: offload-lrc, bits: 3, top_n: 2, rank: 16}
points:
  - {policy: offload-lowbit, rank: 16}     # rank on a policy without compensation
"""


def test_sweep_command_runs_resumes_and_records_invalid_points(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(SWEEP)
    argv = ["sweep", str(path), "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress"]
    assert main(argv) == 0
    assert "tiny: 4/4 points (4 tasks run now, 1 invalid)" in capsys.readouterr().out
    t = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert list(t["policy"]) == ["offload-lowbit", "offload-lowbit", "offload-lrc", "offload-lowbit"]
    ok = t[t.status == "ok"]
    assert (ok["tokens_per_s"] > 0).all() and (ok["breakdown_ms_per_token.attention"] > 0).all()
    assert ok["bytes_per_token"].iloc[0] < ok["bytes_per_token"].iloc[1]        # 3 bits move less than 4
    assert t.iloc[3]["reason"].startswith("rank: policy offload-lowbit has no low-rank compensation")
    assert main(argv) == 0
    assert "(0 tasks run now, 1 invalid)" in capsys.readouterr().out


def test_sweep_command_bad_input_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\npolicies: [{policy: offload-lrc, grid: {top_n: [-1]}}]\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"moesim sweep: error: {path}: policies[0].top_n: Input should be greater than")
    assert "\n" not in err and not (tmp_path / "out").exists()
