"""`moesim profile --device cpu` writes a hwconfig and runtime profile that load and that `moesim simulate`
accepts; `moesim measure --json` gives measured vs predicted per configuration with identical bookkeeping;
bad input is one line and exit 2. Timings are not asserted (a shared CI box), only their presence."""

from __future__ import annotations

import json

import pytest
import torch

from simulator.cli import main
from simulator.config.runtime import load_runtime
from simulator.config.system import load_system
from simulator.fileio import MARKER

TINY = ["--layers", "2", "--hidden", "256", "--expert-ffn", "128", "--vocab", "256", "--heads", "2", "--kv-heads",
        "1", "--head-dim", "64"]


@pytest.fixture(scope="module")
def prof(tmp_path_factory):
    out = tmp_path_factory.mktemp("p") / "prof"
    assert main(["profile", "--device", "cpu", "--quick", "--bits", "2,3,4", "--rank", "8", "--group", "64",
                 "--context", "64", "--out", str(out), *TINY]) == 0
    return out


def test_profile_writes_a_hwconfig_and_runtime_that_load_and_simulate(prof, capsys):
    assert {p.name for p in prof.iterdir()} == {"hwconfig.yaml", "runtime.yaml", "model.yaml", "profile.json", MARKER}
    system, runtime = load_system(prof / "hwconfig.yaml"), load_runtime(prof / "runtime.yaml")
    text = (prof / "hwconfig.yaml").read_text() + (prof / "runtime.yaml").read_text()
    assert f"measured by moesim profile on {system.gpu.name}" in text and f"torch {torch.__version__}" in text
    assert runtime.copies.host_memory == "pageable" and runtime.copies.stream == "compute"
    assert set(runtime.dequant.efficiency) == {2, 3, 4}
    assert system.links[0].pageable_bandwidth_to_gpu is not None and system.gpu.launch_overhead > 0
    raw = json.loads((prof / "profile.json").read_text())
    assert raw["raw"]["settings"]["shape"]["hidden"] == 256 and raw["loadavg_after"]
    capsys.readouterr()
    assert main(["simulate", str(prof / "hwconfig.yaml"), "--runtime", str(prof / "runtime.yaml"),
                 "--policy", "offload-lrc", "--tokens", "4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["hwconfig"] == "measured-cpu" and summary["ms_per_token"] > 0


def test_measure_compares_each_configuration(prof, tmp_path, capsys):
    out = tmp_path / "meas"
    code = main(["measure", "--profile", str(prof), "--tokens", "3", "--repeats", "1", "--json", "--out", str(out),
                 "--config", "offload-fp16,cache=2", "--config", "offload-lrc,bits=3,top_n=2,cache=2,batch=4",
                 "--config", "offload-lowbit,bits=4,cache=2,cache_policy=lfu"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["rows"]) == 3 and result["summary"]["bookkeeping_equal"]
    for row in result["rows"]:
        assert row["measured_ms_per_token"] > 0 and row["predicted_ms_per_token"] > 0
        assert row["rel_error"] == pytest.approx((row["predicted_ms_per_token"] - row["measured_ms_per_token"])
                                                 / row["measured_ms_per_token"])
        assert set(row["measured_breakdown_ms_per_token"]) == set(row["predicted_breakdown_ms_per_token"])
    assert {p.name for p in out.iterdir()} >= {"results.json", "table.md", "model.yaml", "trace", MARKER}


@pytest.mark.parametrize("argv, words", [
    (["profile", "--device", "tpu"], "unknown device 'tpu'"),
    (["measure", "--device", "tpu"], "unknown device 'tpu'"),
    (["measure", "--config", "offload-fp16,cache=x"], "cache must be a number"),
    (["measure", "--config", "offload-fp16,colour=red"], "bad configuration item"),
    (["profile", "--bits", "2,12"], "code widths must lie in 1-8"),
    (["profile", "--layers", "99"], "--layers must lie in"),
])
def test_bad_input_is_one_line_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_asked_but_absent_is_one_line(capsys):
    assert main(["profile", "--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA was asked for" in err


def test_an_existing_folder_that_is_not_a_profile_is_refused_untouched(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["profile", "--quick", "--out", str(mine), *TINY]) == 2
    assert "refusing to replace it" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert main(["measure", "--profile", str(mine), "--tokens", "1"]) == 2
    assert "not a moesim profile output" in capsys.readouterr().err
