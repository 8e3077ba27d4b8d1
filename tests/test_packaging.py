"""A plain (non-editable) install carries the shipped hwconfigs and traces: build the wheel, unpack it and run
`moesim simulate` with no arguments from a folder outside the repository. Also: the one resolution rule
(a path relative to the current directory first, then the shipped name)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from simulator.config import load_system
from simulator.config.loading import resolve_shipped, shipped_dir
from simulator.routing.trace import resolve_trace_path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "MANIFEST.in", "simulator", "hwconfigs", "traces", "runtimes", "workloads"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (the build leaves build/ and egg-info beside them)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.exists():
            shutil.copy2(path, src / name)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(tmp / "dist"), str(src)],
                          check=False, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = (tmp / "dist").glob("moesim-*.whl")
    return whl


def _shipped_files(folder: str) -> set[str]:
    root = REPO / folder
    return {f"simulator/_shipped/{folder}/{p.relative_to(root).as_posix()}" for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_wheel_lists_hwconfigs_traces_and_every_subpackage(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    hw, traces = _shipped_files("hwconfigs"), _shipped_files("traces")
    assert "simulator/_shipped/hwconfigs/h100-cxl-ndp.yaml" in hw
    runtimes = _shipped_files("runtimes")
    assert "simulator/_shipped/runtimes/fused.yaml" in runtimes and runtimes <= names, sorted(runtimes - names)
    workloads = _shipped_files("workloads")
    assert {"simulator/_shipped/workloads/azure-conv.csv.gz", "simulator/_shipped/workloads/README.md",
            "simulator/_shipped/workloads/LICENSES/CC-BY-4.0.txt"} <= workloads <= names, sorted(workloads - names)
    assert {"simulator/_shipped/traces/README.md", "simulator/_shipped/traces/LICENSES/ESFT-LICENSE-CODE.txt",
            "simulator/_shipped/traces/esft-intent/meta.json",
            "simulator/_shipped/traces/minilm-moe-sample/expert_ids.npy"} <= traces
    assert hw | traces <= names, sorted((hw | traces) - names)
    # pyproject.toml lists the packages (package-dir mapping): a subpackage missing there is missing here
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "simulator").rglob("*.py")
               if "__pycache__" not in p.parts}
    presets = {p.relative_to(REPO).as_posix() for p in (REPO / "simulator/config/presets").glob("*.yaml")}
    assert modules | presets <= names, f"not in the wheel (add to pyproject.toml): {sorted((modules | presets) - names)}"


SCRIPT = """
import sys
from pathlib import Path
import simulator
from simulator.cli import main
from simulator.config.loading import shipped_dir
site = Path(sys.argv[1]).resolve()
assert Path(simulator.__file__).resolve().is_relative_to(site), simulator.__file__
assert shipped_dir("traces").resolve() == site / "simulator/_shipped/traces", shipped_dir("traces")
sys.exit(main(sys.argv[2:]))
"""


def test_unpacked_wheel_simulates_defaults_outside_the_repository(wheel, tmp_path):
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "MPLBACKEND": "Agg"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", SCRIPT, str(site), *args], cwd=elsewhere, env=env,
                              check=False, capture_output=True, text=True, timeout=120)

    proc = run("simulate", "--tokens", "4", "--engine", "des")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"tokens/s\s*\S\s*\d+\.\d", proc.stdout), proc.stdout
    assert "traces/esft-intent" in proc.stdout and "h100-cxl-ndp" in proc.stdout

    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "trace", "stats", "traces/esft-law"],
                          cwd=elsewhere, env=env, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("esft-law (deepseek-v2-lite)"), proc.stderr

    proc = run("simulate", "no-such-box")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "unknown hardware config 'no-such-box'; shipped:" in lines[0] and "h100-cxl-ndp" in lines[0]
    assert list(elsewhere.iterdir()) == []


def test_a_path_here_comes_before_the_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped_hw, shipped_traces = shipped_dir("hwconfigs"), shipped_dir("traces")
    assert load_system("h100-cxl-ndp").name == load_system(shipped_hw / "h100-cxl-ndp.yaml").name
    assert resolve_shipped("hwconfigs/h100-pcie5.yaml", shipped_hw, ".yaml") == shipped_hw / "h100-pcie5.yaml"
    assert resolve_trace_path("traces/esft-intent") == shipped_traces / "esft-intent"
    assert resolve_trace_path("esft-intent") == shipped_traces / "esft-intent"
    assert resolve_shipped("../hwconfigs/h100-pcie5.yaml", shipped_hw, ".yaml") is None

    (tmp_path / "hwconfigs").mkdir()
    text = (shipped_hw / "h100-cxl-ndp.yaml").read_text()
    (tmp_path / "hwconfigs/h100-cxl-ndp.yaml").write_text(re.sub(r"(?m)^name: .*$", "name: my-box", text))
    (tmp_path / "h100-pcie5.yaml").write_text(re.sub(r"(?m)^name: .*$", "name: my-pcie", text))
    assert load_system("hwconfigs/h100-cxl-ndp.yaml").name == "my-box"
    assert load_system("h100-pcie5.yaml").name == "my-pcie"
    assert load_system("h100-pcie5").name != "my-pcie"  # a bare name is not a file here: the shipped one
    shutil.copytree(shipped_traces / "minilm-moe-sample", tmp_path / "traces/esft-intent")
    assert resolve_trace_path("traces/esft-intent") == Path("traces/esft-intent")
