"""Bad inputs through the command line, in process (simulator.cli.main): hardware configs, model files,
traces, plans, checkpoints, YAML and flags, listed cases plus hypothesis. For every case:

- no traceback: main returns or exits (argparse) and nothing else escapes;
- a failure is exit status 2 with one line (argparse's usage line aside) naming what is wrong;
- a success prints sane results: strict JSON, finite numbers, positive throughput, a breakdown that adds
  up to ms/token, utilizations and hit rates within [0, 1];
- no file outside the output changed (the inputs' tree is hashed before and after every case).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
import shutil
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import yaml
from file_state import DELETE, set_path, tree_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.config.system import HWCONFIG_DIR
from simulator.routing.trace import ARRAYS

REPO = Path(__file__).resolve().parents[1]
BASE_HW = yaml.safe_load((HWCONFIG_DIR / "h100-cxl-ndp.yaml").read_text())
BASE_MODEL = yaml.safe_load((REPO / "simulator/config/presets/olmoe-1b-7b.yaml").read_text())
SIM = ["simulate", "--tokens", "2", "--json"]
HYP = settings(max_examples=60, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------- harness

def _reject_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def _finite(obj, where="") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _finite(v, f"{where}[{i}]")
    elif isinstance(obj, float):
        assert math.isfinite(obj), f"non-finite {where}"


def check_summary(s: dict) -> None:
    """A simulate summary that makes sense."""
    assert s["tokens_per_s"] > 0 and s["ms_per_token"] > 0 and s["tokens"] >= 1 and s["steps"] >= 1
    assert math.isclose(sum(s["breakdown_ms_per_token"].values()), s["ms_per_token"], rel_tol=1e-6)
    assert all(v >= 0 for v in s["breakdown_ms_per_token"].values())
    assert all(v >= 0 for v in s["link_bytes_per_token"].values())
    assert all(0 <= u <= 1 + 1e-9 for d in s["link_utilization"].values() for u in d.values())
    assert s["cache_hit_rate"] is None or 0 <= s["cache_hit_rate"] <= 1
    assert 0 <= s["gpu_utilization"] <= 1 + 1e-9 and s["cache_capacity_bytes"] >= 0
    assert all(0 <= u <= 1 + 1e-9 for u in s["ndp_utilization"])


OUTPUT_FLAGS = ("--out", "--trace-out", "--figures")


def _outputs(argv) -> list[str]:
    return [os.path.abspath(v) for f, v in itertools.pairwise(argv) if f in OUTPUT_FLAGS]


class Runner:
    """Runs argv through main and checks the rules. `watch`: the trees that must not change, except, on
    success, under the command's own output paths (on failure nothing may change at all)."""

    def __init__(self, *watch: Path):
        self.watch = watch

    def state(self) -> dict[str, str]:
        return {os.path.join(w, k): v for w in self.watch for k, v in tree_state(w).items()}

    def __call__(self, *argv: str, expect: int | None = None, match: str | None = None) -> tuple[int, str, str]:
        before = self.state()
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                rc = main(list(argv))
            except SystemExit as exc:  # argparse
                rc = exc.code if isinstance(exc.code, int) else 2
            except Exception:  # noqa: BLE001 -- exactly what must not happen
                pytest.fail(f"traceback for moesim {' '.join(argv)}:\n{traceback.format_exc()}")
        out, err = out.getvalue(), err.getvalue()
        after = self.state()
        if rc == 0:  # the outputs may change, nothing else
            outs = _outputs(argv)
            def keep(state):
                return {k: v for k, v in state.items() if not any(k == o or k.startswith(o + os.sep) for o in outs)}
            before, after = keep(before), keep(after)
        assert after == before, f"moesim {' '.join(argv)} changed a file that is not its output"
        assert "Traceback" not in err and "Traceback" not in out
        assert rc in (0, 2), (argv, rc, err)
        if rc == 2:
            lines = err.strip().splitlines()
            assert lines and lines[-1].startswith("moesim") and ": error: " in lines[-1], err
            assert len(lines) == 1 or lines[0].startswith("usage:"), err  # ours: exactly one line
        elif "--json" in argv:
            obj = json.loads(out, parse_constant=_reject_constant)
            _finite(obj)
            if argv[0] == "simulate":
                check_summary(obj)
        if expect is not None:
            assert rc == expect, (argv, rc, err)
        if match is not None:
            assert match in err, (argv, err)
        return rc, out, err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Valid inputs to break: a hwconfig, a model, a trace, a MiniLM plan."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "hw.yaml").write_text(yaml.safe_dump(BASE_HW))
    (root / "model.yaml").write_text(yaml.safe_dump(BASE_MODEL))
    devnull = io.StringIO()
    with redirect_stdout(devnull), redirect_stderr(devnull):
        assert main(["trace", "synth", "--model", "deepseek-v2-lite", "--tokens", "12", "--sequences", "3",
                     "--out", str(root / "trace")]) == 0
    _write_minilm_plan(root / "plan.csv")
    return root


def _write_minilm_plan(path: Path) -> None:
    """A valid rank-2 plan for minilm-moe at 3 bits (what `moesim compensate` writes, made by hand: fast)."""
    import pandas as pd

    from simulator.accounting import expert_factor_bytes, expert_lowbit_bytes
    from simulator.accuracy.plan import save_plan

    layers, experts, hidden, ffn = 6, 16, 384, 96
    df = pd.DataFrame({"layer": np.repeat(np.arange(layers), experts), "expert": np.tile(np.arange(experts), layers),
                       "bits": 3, "group": 128, "rank": 2, "kurtosis": 3.0,
                       "bytes_lowbit": expert_lowbit_bytes(hidden, ffn, 3, 128, gated=False),
                       "bytes_factors": expert_factor_bytes(hidden, ffn, 2, gated=False),
                       "err_before": 0.2, "err_after": 0.15})
    meta = {"model": "minilm-moe", "weights": "minilm", "bits": 3, "group": 128, "layers": layers,
            "num_experts": experts, "hidden": hidden, "ffn": ffn, "top_k": 4, "matrices_per_expert": 2,
            "alloc": "uniform", "rank_budget": 2.0}
    save_plan(df, meta, path)


@pytest.fixture
def run(inputs, tmp_path):
    """A Runner watching the shared inputs and the case's own folder (the shipped data: module fixture)."""
    return Runner(inputs, tmp_path)


@pytest.fixture(scope="module", autouse=True)
def shipped_data_unchanged():
    watched = [REPO / "hwconfigs", REPO / "simulator/config/presets", REPO / "traces/minilm-moe-sample",
               REPO / "simulator/data", REPO / "README.md"]

    def state():
        return {str(p): tree_state(p) if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
                for p in watched}

    before = state()
    yield
    assert state() == before




def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


# -------------------------------------------------------------------------------------------- hwconfigs

HW_CASES = [
    (("gpu", "hbm_bandwidth"), "0 TB/s", "positive bandwidth"),
    (("gpu", "hbm_bandwidth"), "-3 TB/s", "non-negative"),
    (("gpu", "hbm_bandwidth"), "nan TB/s", "gpu.hbm_bandwidth"),
    (("gpu", "hbm_bandwidth"), "inf TB/s", "gpu.hbm_bandwidth"),
    (("gpu", "hbm_bandwidth"), "1e999 TB/s", "gpu.hbm_bandwidth"),
    (("gpu", "hbm_bandwidth"), "3.35 TB", "/s"),
    (("gpu", "hbm_bandwidth"), 3.35e12, "with a unit"),
    (("gpu", "hbm_bandwidth"), None, "gpu.hbm_bandwidth"),
    (("gpu", "hbm_bandwidth"), True, "gpu.hbm_bandwidth"),
    (("gpu", "hbm_bandwidth"), [1, 2], "gpu.hbm_bandwidth"),
    (("gpu", "hbm_bandwidth"), DELETE, "gpu.hbm_bandwidth"),
    (("gpu", "peak_flops", "fp16"), "0 TFLOPS", "positive compute rate"),
    (("gpu", "peak_flops", "bf16"), "0 TFLOPS", "positive compute rate"),
    (("gpu", "peak_flops", "fp8"), "-1 TFLOPS", "gpu.peak_flops.fp8"),
    (("gpu", "peak_flops", "int8"), "5 ns", "gpu.peak_flops.int8"),
    (("gpu", "peak_flops"), {}, "fp16 or bf16"),
    (("gpu", "peak_flops"), {"fp64": "60 TFLOPS", "fp16": "1 TFLOPS"}, "gpu.peak_flops.fp64"),
    (("gpu", "hbm_capacity"), "0 GB", "gpu.hbm_capacity"),
    (("gpu", "hbm_capacity"), "1e308 TB", "too large"),
    (("gpu", "launch_overhead"), "-4 us", "gpu.launch_overhead"),
    (("gpu", "launch_overhead"), "4 parsecs", "gpu.launch_overhead"),
    (("gpu", "compute_efficiency"), 0, "gpu.compute_efficiency"),
    (("gpu", "compute_efficiency"), 1.5, "gpu.compute_efficiency"),
    (("gpu", "compute_efficiency"), float("nan"), "gpu.compute_efficiency"),
    (("gpu", "memory_efficiency"), -0.1, "gpu.memory_efficiency"),
    (("gpu", "memory_efficiency"), "high", "gpu.memory_efficiency"),
    (("gpu", "reserved_memory"), "-6 GiB", "gpu.reserved_memory"),
    (("gpu", "extra_field"), 1, "gpu.extra_field"),
    (("host", "memory_bandwidth"), "0 GB/s", "host.memory_bandwidth"),
    (("host", "memory_capacity"), "0 B", "host.memory_capacity"),
    (("links", 0, "bandwidth_to_gpu"), "0 GB/s", "links.0.bandwidth_to_gpu"),
    (("links", 1, "bandwidth_from_gpu"), "0 GB/s", "links.1.bandwidth_from_gpu"),
    (("links", 1, "bandwidth_to_gpu"), "1e-400 GB/s", "links.1.bandwidth_to_gpu"),
    (("links", 0, "latency"), "-2 us", "links.0.latency"),
    (("links", 0, "dma_engines"), 0, "links.0.dma_engines"),
    (("links", 0, "dma_engines"), 2.5, "links.0.dma_engines"),
    (("links", 0, "kind"), "nvlink", "links.0.kind"),
    (("links", 0, "name"), "cxl", "link names must be unique"),
    (("links",), [], "links"),
    (("links", 1, "memory"), "host", "ndp units needs a link with memory: cxl"),
    (("ndp", "units"), 0, "ndp.units"),
    (("ndp", "peak_flops"), {}, "ndp.peak_flops"),
    (("ndp", "peak_flops", "fp16"), "0 TFLOPS", "ndp.peak_flops.fp16"),
    (("ndp", "memory_bandwidth"), "0 GB/s", "ndp.memory_bandwidth"),
    (("ndp", "capacity"), "0 GB", "ndp.capacity"),
    (("ndp", "op_overhead"), "fast", "ndp.op_overhead"),
    (("ndp", "compute_efficiency"), 2, "ndp.compute_efficiency"),
    (("name",), DELETE, "name"),
    (("gpu",), "H100", "gpu"),
]


@pytest.mark.parametrize("path, value, message", HW_CASES, ids=[f"{'.'.join(map(str, p))}={v!r}"[:60]
                                                                  for p, v, _ in HW_CASES])
def test_hwconfig_field(run, tmp_path, path, value, message):
    hw = write_yaml(tmp_path / "hw.yaml", set_path(BASE_HW, path, value))
    run(*SIM, str(hw), expect=2, match=message)
    run("plot", "roofline", "--hwconfig", str(hw), "--out", str(tmp_path / "fig"), expect=2, match=message)


HW_TEXTS = {
    "empty": ("", "expected a YAML mapping"),
    "list": ("- 1\n- 2\n", "expected a YAML mapping"),
    "scalar": ("h100\n", "expected a YAML mapping"),
    "tabs": ("gpu:\n\tname: x\n", "malformed YAML"),
    "unclosed": ("gpu: {name: x\n", "malformed YAML"),
    "duplicate top key": (yaml.safe_dump(BASE_HW) + "name: again\n", "duplicate key 'name'"),
    "duplicate nested key": (yaml.safe_dump(BASE_HW).replace("  hbm_bandwidth:", "  hbm_bandwidth: 1 TB/s\n"
                                                            "  hbm_bandwidth:", 1), "duplicate key 'hbm_bandwidth'"),
    "alias bomb": ("a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")), "alias bomb"),
    "recursive alias": ("a: &a\n  b: *a\n", "recursive"),
    "undefined alias": ("a: *nope\n", "malformed YAML"),
    "python tag": ("!!python/object/apply:os.system ['echo pwned']\n", "malformed YAML"),
    "deep nesting": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "hw.yaml"),
    "binary": ("\x00\x01\x02\xff", "hw.yaml"),
}


@pytest.mark.parametrize("name", sorted(HW_TEXTS))
def test_hwconfig_text(run, tmp_path, name):
    text, message = HW_TEXTS[name]
    hw = tmp_path / "hw.yaml"
    hw.write_bytes(text.encode("utf-8", "surrogateescape") if name != "binary" else b"\x00\x01\x02\xff\xfe")
    run(*SIM, str(hw), expect=2, match=message)


def test_hwconfig_paths(run, tmp_path):
    run(*SIM, str(tmp_path / "missing.yaml"), expect=2, match="file not found")
    run(*SIM, "no-such-box", expect=2, match="unknown hardware config 'no-such-box'")
    (tmp_path / "dir.yaml").mkdir()
    run(*SIM, str(tmp_path / "dir.yaml"), expect=2, match="is a directory")


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["0 GB/s", "-1 GB/s", "nan GB/s", "1e999 GB/s", "0 TFLOPS", "1 TFLOPS", "0 ns", "5",
                     "5 GB", "1e308 TB", "0 B", "1e-300 B/s", "64 GiB/s", "250 ns", "0.5", "1e3 TOPS"]),
    st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.sampled_from(["fp16", "x"]), st.just("1 TFLOPS"),
                                                             max_size=2))
HW_LEAVES = [p for p, _, _ in HW_CASES if p[-1] not in ("extra_field",) and len(p) > 1] + [
    ("gpu", "name"), ("description",), ("ndp", "memory_efficiency"), ("links", 1, "latency")]


@HYP
@given(path=st.sampled_from(HW_LEAVES), value=JUNK)
def test_hwconfig_hypothesis(run, tmp_path, path, value):
    hw = write_yaml(tmp_path / "hw.yaml", set_path(BASE_HW, path, value))
    run(*SIM, str(hw))


@HYP
@given(text=st.text(max_size=80))
def test_hwconfig_random_text(run, tmp_path, text):
    hw = tmp_path / "hw.yaml"
    hw.write_text(text, encoding="utf-8", errors="surrogateescape")
    run(*SIM, str(hw), expect=2)


# ---------------------------------------------------------------------------------------------- models

MODEL_CASES = [
    (("num_experts",), 0, "num_experts"), (("top_k",), 0, "top_k"), (("top_k",), 65, "exceeds num_experts"),
    (("layers",), 0, "layers"), (("hidden",), -1, "hidden"), (("expert_ffn",), 1.5, "expert_ffn"),
    (("vocab",), "big", "vocab"), (("weight_bytes",), 0, "weight_bytes"), (("attention", "kind"), "mamba", "kind"),
    (("attention", "heads"), 0, "attention.heads"), (("attention", "kv_heads"), DELETE, "needs kv_heads"),
    (("first_dense_layers",), 16, "at least one MoE layer"), (("first_dense_layers",), 1, "dense_ffn"),
    (("shared_experts",), -1, "shared_experts"), (("unknown",), 3, "unknown"), (("name",), DELETE, "name"),
    (("attention",), None, "attention"), (("hidden",), "wide", "hidden"),
]


@pytest.mark.parametrize("path, value, message", MODEL_CASES, ids=[f"{'.'.join(p)}={v!r}" for p, v, _ in MODEL_CASES])
def test_model_field(run, tmp_path, path, value, message):
    model = write_yaml(tmp_path / "model.yaml", set_path(BASE_MODEL, path, value))
    run(*SIM, "h100-pcie5", "--policy", "offload-lowbit", "--model", str(model), "--synthetic-tokens", "8",
        expect=2, match=message)
    run("trace", "synth", "--model", str(model), "--tokens", "8", "--out", str(tmp_path / "t"), expect=2,
        match=message)


def test_model_names(run, tmp_path):
    run(*SIM, "--model", "gpt-5", expect=2, match="unknown")
    dup = tmp_path / "m.yaml"
    dup.write_text(yaml.safe_dump(BASE_MODEL) + "top_k: 2\n")
    run(*SIM, "--model", str(dup), expect=2, match="duplicate key 'top_k'")


# ---------------------------------------------------------------------------------------------- traces

def _copy_trace(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit(name: str, fn):
    def apply(d: Path):
        arr = np.load(d / f"{name}.npy")
        np.save(d / f"{name}.npy", fn(arr.copy()))
    return apply


def _set(name, index, value):
    def fn(a):
        a[index] = value
        return a
    return _edit(name, fn)


def _meta(**changes):
    def apply(d: Path):
        meta = json.loads((d / "meta.json").read_text())
        meta.update(changes)
        (d / "meta.json").write_text(json.dumps(meta))
    return apply


TRACE_CASES = {
    "negative position": (_set("position", 0, -5), "position: negative position -5 at token 0"),
    "repeated position": (_set("position", 1, 0), "positions must increase within a sequence: token 1"),
    "decreasing position": (_edit("position", lambda a: a[::-1].copy()), "positions must increase"),
    "expert id too large": (_set("expert_ids", (0, 0, 0), 64), "expert id 64 out of range"),
    "negative expert id": (_set("expert_ids", (3, 2, 1), -1), "expert id -1 out of range"),
    "duplicate expert": (_edit("expert_ids", lambda a: np.where(np.arange(6) == 1, a[..., :1], a).astype(a.dtype)),
                         "duplicate expert id"),
    "nan score": (_set("scores", (2, 0, 0), np.nan), "non-finite score"),
    "inf score": (_set("scores", (2, 0, 0), np.inf), "non-finite score"),
    "unsorted scores": (_edit("scores", lambda a: a[..., ::-1].copy()), "sorted descending"),
    "ids as int64": (_edit("expert_ids", lambda a: a.astype(np.int64)), "expected dtype int16"),
    "scores as float64": (_edit("scores", lambda a: a.astype(np.float64)), "expected dtype float32"),
    "2-d ids": (_edit("expert_ids", lambda a: a[:, 0, :].copy()), "expected 3 dimensions"),
    "short seq_id": (_edit("seq_id", lambda a: a[:-1].copy()), "seq_id: expected shape"),
    "interleaved sequences": (_edit("seq_id", lambda a: np.resize(np.array([0, 1], a.dtype), a.shape)),
                              "contiguous"),
    "no tokens": (lambda d: [np.save(d / f"{n}.npy", np.load(d / f"{n}.npy")[:0]) for n in ARRAYS], "no tokens"),
    "missing scores": (lambda d: (d / "scores.npy").unlink(), "missing scores.npy"),
    "truncated ids": (lambda d: (d / "expert_ids.npy").write_bytes((d / "expert_ids.npy").read_bytes()[:200]),
                      "not a readable .npy array"),
    "garbage ids": (lambda d: (d / "expert_ids.npy").write_bytes(b"not numpy at all"), "not a readable .npy"),
    "pickled ids": (lambda d: np.save(d / "expert_ids.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True),
                    "expert_ids.npy"),
    "meta not json": (lambda d: (d / "meta.json").write_text("{"), "not valid JSON"),
    "meta list": (lambda d: (d / "meta.json").write_text("[]"), "expected a JSON object"),
    "meta missing": (lambda d: (d / "meta.json").unlink(), "missing meta.json"),
    "meta top_k": (_meta(top_k=4), "top_k=4"),
    "meta layers": (_meta(layers=3), "layers=3"),
    "meta experts zero": (_meta(num_experts=0), "num_experts"),
    "meta extra": (_meta(surprise=1), "surprise"),
    "meta score kind": (_meta(score_kind="votes"), "score_kind"),
    "meta experts fewer": (_meta(num_experts=8), "out of range [0, 8)"),
}


@pytest.mark.parametrize("name", sorted(TRACE_CASES))
def test_trace(run, inputs, tmp_path, name):
    mutate, message = TRACE_CASES[name]
    trace = _copy_trace(inputs / "trace", tmp_path / "bad")
    mutate(trace)
    run("trace", "stats", str(trace), "--json", expect=2, match=message)
    run(*SIM, "--trace", str(trace), expect=2, match=message)


def test_trace_paths(run, inputs, tmp_path):
    run("trace", "stats", str(tmp_path / "nope"), expect=2, match="not a trace directory")
    run("trace", "stats", str(inputs / "hw.yaml"), expect=2, match="not a trace directory")
    run(*SIM, "--trace", str(tmp_path / "nope"), expect=2, match="nope")
    run(*SIM, "--trace", "traces/minilm-moe-sample", expect=2, match="experts")  # a trace of another model


def _write_trace(d: Path, seq: list[int], pos: list[int]) -> None:
    t = len(seq)
    d.mkdir()
    ids = np.tile(np.array([3, 1], np.int16), (t, 1, 1))
    scores = np.tile(np.array([0.6, 0.4], np.float32), (t, 1, 1))
    for name, arr in (("expert_ids", ids), ("scores", scores), ("seq_id", np.array(seq, np.int32)),
                      ("position", np.array(pos, np.int32))):
        np.save(d / f"{name}.npy", arr)
    (d / "meta.json").write_text(json.dumps({"name": "h", "model": "x", "num_experts": 4, "top_k": 2, "layers": 1,
                                             "source": "test"}))


@HYP
@given(runs=st.lists(st.lists(st.integers(-3, 6), min_size=1, max_size=4), min_size=1, max_size=3))
def test_trace_positions_hypothesis(run, tmp_path, runs):
    """Exactly the traces whose positions are >= 0 and increase within each sequence load."""
    seq = [i for i, r in enumerate(runs) for _ in r]
    pos = [p for r in runs for p in r]
    d = tmp_path / f"t{abs(hash(str(runs)))}"
    _write_trace(d, seq, pos)
    valid = all(p >= 0 for p in pos) and all(b > a for r in runs for a, b in itertools.pairwise(r))
    rc, _out, err = run("trace", "stats", str(d), "--json")
    assert rc == (0 if valid else 2) and (valid or "position" in err), (runs, err)
    shutil.rmtree(d)


# ----------------------------------------------------------------------------------------------- plans

PLAN_SIM = [*SIM, "h100-pcie5", "--model", "minilm-moe", "--trace", "traces/minilm-moe-sample",
            "--policy", "offload-lrc", "--bits", "3", "--top-n", "2"]


def _plan_lines(inputs: Path) -> list[str]:
    return (inputs / "plan.csv").read_text().splitlines()


def _plan_edit(column: str, value: str, row: int = 1):
    def fn(lines):
        header = lines[0].split(",")
        cells = lines[row].split(",")
        cells[header.index(column)] = value
        return [*lines[:row], ",".join(cells), *lines[row + 1:]]
    return fn


PLAN_CASES = {
    "nan rank": (_plan_edit("rank", "nan"), "rank"),
    "negative rank": (_plan_edit("rank", "-3"), "rank"),
    "text rank": (_plan_edit("rank", "many"), "rank"),
    "negative bytes": (_plan_edit("bytes_factors", "-1"), "bytes_factors"),
    "inf error": (_plan_edit("err_after", "inf"), "err_after"),
    "zero bits": (_plan_edit("bits", "0"), "bits"),
    "zero group": (_plan_edit("group", "0"), "group"),
    "duplicate row": (lambda lines: [*lines, lines[1]], "duplicate (layer, expert)"),
    "missing column": (lambda lines: [",".join(c for c in ln.split(",")[:-1]) for ln in lines], "err_after"),
    "header only": (lambda lines: lines[:1], "plan"),
    "empty file": (lambda lines: [], "plan"),
    "bits mismatch": (lambda lines: [lines[0]] + [ln.replace(",3,", ",4,", 1) for ln in lines[1:]], "bits"),
    "expert out of range": (_plan_edit("expert", "99"), "expert"),
    "layer out of range": (_plan_edit("layer", "99"), "layer"),
    "missing rows": (lambda lines: lines[:-5], "plan"),
    "binary": (lambda lines: ["\x00\x01PAR1"], "plan"),
}


@pytest.mark.parametrize("name", sorted(PLAN_CASES))
def test_plan(run, inputs, tmp_path, name):
    edit, message = PLAN_CASES[name]
    plan = tmp_path / "plan.csv"
    plan.write_text("\n".join(edit(_plan_lines(inputs))) + "\n")
    shutil.copy(inputs / "plan.csv.meta.json", tmp_path / "plan.csv.meta.json")
    run(*PLAN_SIM, "--plan", str(plan), expect=2, match=message)
    if name not in ("expert out of range", "layer out of range", "missing rows"):  # these load the weights first
        run("accuracy", "--bits", "3", "--plan", str(plan), "--json", expect=2, match=message)


def test_plan_files(run, inputs, tmp_path):
    run(*PLAN_SIM, "--plan", str(inputs / "plan.csv"))  # the valid plan runs
    run(*PLAN_SIM, "--plan", str(tmp_path / "none.csv"), expect=2)
    (tmp_path / "p.txt").write_text((inputs / "plan.csv").read_text())
    run(*PLAN_SIM, "--plan", str(tmp_path / "p.txt"), expect=2, match=".parquet or .csv")
    (tmp_path / "p.parquet").write_bytes(b"PAR1garbagePAR1")
    run(*PLAN_SIM, "--plan", str(tmp_path / "p.parquet"), expect=2, match="p.parquet")
    shutil.copy(inputs / "plan.csv", tmp_path / "nometa.csv")
    run(*PLAN_SIM, "--plan", str(tmp_path / "nometa.csv"), expect=2, match="nometa.csv")
    (tmp_path / "bad.csv").write_text((inputs / "plan.csv").read_text())
    (tmp_path / "bad.csv.meta.json").write_text("{not json")
    run(*PLAN_SIM, "--plan", str(tmp_path / "bad.csv"), expect=2, match="bad.csv")


# ------------------------------------------------------------------------------------------ checkpoints

def _checkpoint(path: Path, shards: int = 1) -> Path:
    from test_accuracy_weights import write_checkpoint

    write_checkpoint(path, "mixtral", layers=2, shards=shards)
    return path


def _tensors(d: Path) -> tuple[dict, Path]:
    from safetensors.torch import load_file

    f = d / "model.safetensors"
    return load_file(f), f


def _nan_weight(d):
    from safetensors.torch import save_file

    t, f = _tensors(d)
    key = "model.layers.1.block_sparse_moe.experts.2.w3.weight"
    t[key] = t[key].clone()
    t[key][0, 0] = float("nan")
    save_file(t, f)


def _reshape(d):
    from safetensors.torch import save_file

    t, f = _tensors(d)
    t["model.layers.0.block_sparse_moe.experts.1.w2.weight"] = t["model.layers.0.block_sparse_moe.experts.1.w2.weight"][:3]
    save_file(t, f)


def _index(edit):
    def apply(d):
        p = d / "model.safetensors.index.json"
        p.write_text(edit(p.read_text()))
    return apply


def _drop_first_expert_tensor(text):
    data = json.loads(text)
    del data["weight_map"]["model.layers.1.block_sparse_moe.experts.0.w1.weight"]
    return json.dumps(data)


CKPT_CASES = {
    "truncated": (1, lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:999]),
                  "not a readable safetensors file"),
    "garbage": (1, lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 64), "not a readable safetensors file"),
    "empty": (1, lambda d: (d / "model.safetensors").write_bytes(b""), "not a readable safetensors file"),
    "nan weight": (1, _nan_weight, "experts.2.w3.weight: non-finite weights"),
    "wrong shape": (1, _reshape, "experts.1.w2.weight: shape (3, 8)"),
    "no safetensors": (1, lambda d: (d / "model.safetensors").unlink(), "no *.safetensors files"),
    "config not json": (1, lambda d: (d / "config.json").write_text("{"), "not valid JSON"),
    "config top_k": (1, lambda d: (d / "config.json").write_text(json.dumps(
        {**json.loads((d / "config.json").read_text()), "num_experts_per_tok": 0})), "num_experts_per_tok"),
    "index not json": (2, _index(lambda t: t[:-3]), "model.safetensors.index.json: not valid JSON"),
    "index no weight_map": (2, _index(lambda t: "{}"), "weight_map: expected a non-empty object"),
    "index incomplete": (2, _index(_drop_first_expert_tensor), "not listed (incomplete index)"),
    "index missing shard": (2, _index(lambda t: t.replace("model-1.safetensors", "model-9.safetensors")),
                            "shard 'model-9.safetensors' not found"),
    "index escapes": (2, _index(lambda t: t.replace("model-1.safetensors", "../../x.safetensors")),
                      "outside the checkpoint directory"),
    "index wrong shard": (2, _index(lambda t: t.replace("model-1.safetensors", "model-0.safetensors")),
                          "not in this shard"),
    "shard truncated": (2, lambda d: (d / "model-1.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}"),
                        "model-1.safetensors: not a readable safetensors file"),
}


@pytest.mark.parametrize("name", sorted(CKPT_CASES))
def test_checkpoint(run, tmp_path, name):
    shards, mutate, message = CKPT_CASES[name]
    ckpt = _checkpoint(tmp_path / "ckpt", shards)
    mutate(ckpt)
    run("compensate", "--weights", str(ckpt), "--bits", "3", "--group", "8", "--out", str(tmp_path / "p.csv"),
        expect=2, match=message)
    assert not (tmp_path / "p.csv").exists()


def test_checkpoint_directory_is_a_file(run, inputs, tmp_path):
    run("compensate", "--weights", str(inputs / "hw.yaml"), "--bits", "3", "--out", str(tmp_path / "p.csv"),
        expect=2, match="not a directory")


# ------------------------------------------------------------------------------------------- CLI flags

SIM_FLAGS = [
    ("--batch", "0"), ("--batch", "-1"), ("--tokens", "-5"), ("--top-n", "-1"), ("--top-n", "99"),
    ("--bits", "0"), ("--bits", "-3"), ("--bits", "x"), ("--group", "0"), ("--group", "-128"),
    ("--rank", "-1"), ("--cache-bytes", "-4 GB"), ("--cache-bytes", "abc"), ("--cache-bytes", "1e999 B"),
    ("--cache-bytes", "nan"), ("--prefetch-hit-rate", "2"), ("--prefetch-hit-rate", "nan"),
    ("--prefetch-hit-rate", "-0.5"), ("--context", "-1"), ("--prompt", "-1"), ("--attention-bits", "0"),
    ("--policy", "nope"), ("--model", "nope"), ("--engine", "quantum"), ("--synthetic-tokens", "0"),
    ("--synthetic-tokens", "-1"), ("--cache-experts-per-layer", "-1"), ("--cache-policy", "fifo"),
    ("--tokens", "1.5"), ("--batch", "1e3"), ("--seed", "x"), ("--plan", "missing.csv"),
]


@pytest.mark.parametrize("flag, value", SIM_FLAGS, ids=[f"{f}={v}" for f, v in SIM_FLAGS])
@pytest.mark.parametrize("policy", [[], ["--policy", "offload-lrc", "h100-pcie5"]], ids=["ndp-lrc", "offload-lrc"])
def test_simulate_flag(run, flag, value, policy):
    run(*SIM, *policy, flag, value, expect=2)


OTHER_FLAGS = [
    ["compensate", "--bits", "0", "--out", "{tmp}/p.csv"], ["compensate", "--bits", "9", "--out", "{tmp}/p.csv"],
    ["compensate", "--bits", "3", "--group", "0", "--out", "{tmp}/p.csv"],
    ["compensate", "--bits", "3", "--rank-budget", "-1", "--out", "{tmp}/p.csv"],
    ["compensate", "--bits", "3", "--out", "{tmp}/p.txt"],
    ["compensate", "--bits", "3", "--weights", "{tmp}/none", "--out", "{tmp}/p.csv"],
    ["compensate", "--bits", "3", "--alloc", "magic", "--out", "{tmp}/p.csv"],
    ["compensate", "--bits", "3", "--out", "{tmp}"],
    ["accuracy", "--bits", "3", "--top-n", "-1"], ["accuracy", "--bits", "3", "--top-n", "99"],
    ["accuracy", "--bits", "3", "--plan", "{tmp}/none.csv"], ["accuracy", "--bits", "3", "--weights", "{tmp}"],
    ["accuracy", "--bits", "3", "--trace-out", "{tmp}"],
    ["trace", "synth", "--model", "nope", "--tokens", "8", "--out", "{tmp}/t"],
    ["trace", "synth", "--model", "olmoe-1b-7b", "--tokens", "0", "--out", "{tmp}/t"],
    ["trace", "synth", "--model", "olmoe-1b-7b", "--tokens", "-8", "--out", "{tmp}/t"],
    ["trace", "synth", "--model", "olmoe-1b-7b", "--tokens", "8", "--sequences", "0", "--out", "{tmp}/t"],
    ["trace", "synth", "--model", "olmoe-1b-7b", "--tokens", "8", "--sequences", "9", "--out", "{tmp}/t"],
    ["trace", "synth", "--model", "olmoe-1b-7b", "--tokens", "8", "--params", "{tmp}/none.yaml",
     "--out", "{tmp}/t"],
    ["trace", "synth", "--model", "olmoe-1b-7b", "--tokens", "8", "--out", "{tmp}"],
    ["trace", "stats"], ["trace", "plot", "traces/minilm-moe-sample", "--layer", "99", "--out", "{tmp}/f"],
    ["trace", "plot", "traces/minilm-moe-sample", "--tokens", "0", "--out", "{tmp}/f"],
    ["simulate", "--out", "{tmp}"], ["simulate", "--out", "."], ["simulate", "--out", ".."],
    ["simulate", "--out", "README.md"], ["nope"], ["simulate", "--nope"],
]


@pytest.mark.parametrize("argv", OTHER_FLAGS, ids=[" ".join(a)[:70] for a in OTHER_FLAGS])
def test_other_flags(run, tmp_path, argv):
    run(*[a.replace("{tmp}", str(tmp_path)) for a in argv], expect=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, not even a temporary


SIM_NUMERIC = ["--batch", "--tokens", "--top-n", "--bits", "--group", "--context", "--prompt", "--attention-bits",
               "--cache-experts-per-layer", "--prefetch-hit-rate", "--cache-bytes"]


@HYP
@given(flag=st.sampled_from(SIM_NUMERIC),
       value=st.one_of(st.integers(-3, 3), st.integers(-10**9, 10**9).map(str), st.floats().map(str),
                       st.text(max_size=6), st.sampled_from(["0", "1", "16", "1e9", "4 GB", "0 GB", "-1 GB"])))
def test_simulate_flag_hypothesis(run, flag, value):
    value = str(value)
    if flag in ("--tokens", "--context", "--prompt") and value.lstrip("-").isdigit() and int(value) > 64:
        value = "64"  # keep runs short; the parser sees the same kind of value
    run(*SIM, "--policy", "offload-lrc", "h100-pcie5", flag, value)


# ---------------------------------------------------------------------------------------- strict JSON

def test_accuracy_json_is_strict(run, monkeypatch):
    """The MiniLM source has no logits, so kl and ppl are NaN: --json prints null (it printed NaN)."""
    from simulator.accuracy import api

    def fake_evaluate(*args, **kwargs):
        return {"rel_output_error": 0.35, "kl": math.nan, "ppl": math.nan, "ppl_full": math.inf,
                "cosine": np.float32(0.9), "layers": [{"layer": 0, "rel_output_error": np.float64("nan")}]}

    monkeypatch.setattr(api, "evaluate", fake_evaluate)
    _rc, out, _ = run("accuracy", "--bits", "3", "--json", expect=0)
    assert json.loads(out, parse_constant=_reject_constant) == {
        "rel_output_error": 0.35, "kl": None, "ppl": None, "ppl_full": None, "cosine": pytest.approx(0.9),
        "layers": [{"layer": 0, "rel_output_error": None}]}


# ------------------------------------------------------------------------------------ real processes

@pytest.mark.parametrize("argv, message", [
    (["simulate", "--out", "."], "it is the current directory"),
    (["simulate", "--out", "README.md"], "README.md: --out: exists and is a file"),
    (["simulate", "hw.yaml"], "hw.yaml: gpu.hbm_bandwidth: Value error, expected a positive bandwidth"),
    (["trace", "synth", "--model", "olmoe-1b-7b", "--tokens", "8", "--out", "README.md/t"], "is a file, not a directory"),
])
def test_in_a_real_process(tmp_path, argv, message):
    import subprocess
    import sys

    (tmp_path / "README.md").write_text("mine\n")
    write_yaml(tmp_path / "hw.yaml", set_path(BASE_HW, ("gpu", "hbm_bandwidth"), "0 GB/s"))
    before = tree_state(tmp_path)
    done = subprocess.run([sys.executable, "-m", "simulator.cli", *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert tree_state(tmp_path) == before
