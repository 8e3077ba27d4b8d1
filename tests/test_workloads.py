"""Workloads: the shipped Azure trace, the CSV parser (property tests), generators, the KV allocator, and
`moesim serve` on bad input (one line naming file, row and field; exit 2; nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.errors import UserError
from simulator.serving.kv import KVBudget
from simulator.workloads.convert import to_csv
from simulator.workloads.generate import make_workload
from simulator.workloads.loading import load_workload
from simulator.workloads.parse import parse_workload
from simulator.workloads.table import Workload


def test_shipped_azure_conv():
    w = load_workload("azure-conv")
    assert len(w) == 19366 and w.span_s == pytest.approx(3501.721937)
    assert int(w.prompt.max()) == 14050 and int(w.output.max()) == 1000
    assert np.all(np.diff(w.arrival_s) > 0)
    assert len(load_workload("workloads/azure-code.csv.gz")) == 8819


rows = st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 20000), st.integers(1, 4000)), min_size=1,
                max_size=40)


@given(rows)
@settings(max_examples=60, deadline=None)
def test_csv_round_trip(data):
    times = np.cumsum([g for g, _, _ in data]) / 1e6  # strictly increasing, microsecond resolution
    w = Workload(times, np.array([p for _, p, _ in data]), np.array([o for _, _, o in data]), "gen")
    back = parse_workload(to_csv(w), "gen.csv")
    np.testing.assert_allclose(back.arrival_s, w.arrival_s, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(back.prompt, w.prompt)
    np.testing.assert_array_equal(back.output, w.output)


BAD = st.sampled_from(["-3", "0", "abc", "1.5", "", "nan", "1e3x"])


@given(rows, st.data(), BAD, st.sampled_from(["prompt_tokens", "output_tokens"]))
@settings(max_examples=60, deadline=None)
def test_bad_token_cell_names_its_row_and_column(data, pick, bad, column):
    times = np.cumsum([g for g, _, _ in data]) / 1e6
    w = Workload(times, np.array([p for _, p, _ in data]), np.array([o for _, _, o in data]), "gen")
    lines = to_csv(w).splitlines()
    row = pick.draw(st.integers(1, len(data)))
    cells = lines[row].split(",")
    cells[1 if column == "prompt_tokens" else 2] = bad
    lines[row] = ",".join(cells)
    with pytest.raises(UserError) as err:
        parse_workload("\n".join(lines) + "\n", "w.csv")
    assert err.value.render().startswith(f"w.csv: row {row}: {column}: ")


@given(rows, st.data())
@settings(max_examples=40, deadline=None)
def test_unsorted_or_repeated_time_is_refused(data, pick):
    if len(data) < 2:
        return
    times = np.cumsum([g for g, _, _ in data]) / 1e6
    w = Workload(times, np.array([p for _, p, _ in data]), np.array([o for _, _, o in data]), "gen")
    lines = to_csv(w).splitlines()
    row = pick.draw(st.integers(2, len(data)))
    prev = lines[row - 1].split(",")[0]
    back = f"{max(float(prev) - pick.draw(st.sampled_from([0.0, 0.5])), 0.0):.6f}"
    lines[row] = ",".join([back if float(back) < float(prev) else prev, *lines[row].split(",")[1:]])
    with pytest.raises(UserError, match=f"row {row}: arrival_s: time .* (repeats|comes before)"):
        parse_workload("\n".join(lines) + "\n", "w.csv")


def test_missing_column_and_azure_layout():
    with pytest.raises(UserError, match="w.csv: header: missing column output_tokens"):
        parse_workload("arrival_s,prompt_tokens\n0,1\n", "w.csv")
    w = parse_workload("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
                       "2023-11-16 18:15:50.9951690,396,109\n", "az.csv")
    assert w.arrival_s.tolist() == pytest.approx([0.0, 4.314579]) and w.prompt.tolist() == [374, 396]


def test_generators_rate_burstiness_and_seed():
    base = load_workload("azure-conv")
    p = make_workload(base, kind="poisson", rate=20.0, duration=500.0, seed=1)
    g = make_workload(base, kind="gamma", rate=20.0, duration=500.0, cv=3.0, seed=1)
    assert p.rate == pytest.approx(20.0, rel=0.05) and g.rate == pytest.approx(20.0, rel=0.15)
    cv = [np.diff(x.arrival_s).std() / np.diff(x.arrival_s).mean() for x in (p, g)]
    assert cv[0] == pytest.approx(1.0, abs=0.1) and cv[1] == pytest.approx(3.0, rel=0.2)
    again = make_workload(base, kind="gamma", rate=20.0, duration=500.0, cv=3.0, seed=1)
    np.testing.assert_array_equal(g.arrival_s, again.arrival_s)
    np.testing.assert_array_equal(g.prompt, again.prompt)
    # rescaling the trace keeps its shape: the same requests, times scaled by (its rate / R)
    native = make_workload(base, duration=600.0)
    fast = make_workload(base, rate=2 * base.rate, duration=300.0)
    np.testing.assert_array_equal(fast.prompt, native.prompt[: len(fast)])
    np.testing.assert_allclose(fast.arrival_s, native.arrival_s[: len(fast)] / 2)


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 200)), max_size=60), st.integers(1, 32),
       st.integers(0, 2000))
@settings(max_examples=80, deadline=None)
def test_kv_allocator_never_exceeds_its_budget(ops, block, budget_tokens):
    kv = KVBudget(float(budget_tokens), 1.0, block)
    held = []
    for reserve, tokens in ops:
        if reserve and kv.can_reserve(tokens):
            held.append(kv.reserve(tokens))
        elif not reserve and held:
            kv.free(held.pop(0))
        elif reserve:
            with pytest.raises(ValueError):
                kv.reserve(tokens)
        assert 0 <= kv.used_bytes <= budget_tokens
        assert kv.free_blocks + sum(held) == kv.total_blocks
    for b in held:
        kv.free(b)
    assert kv.used_bytes == 0


def _serve(args, capsys):
    code = main(["serve", "h100-pcie5", "--policy", "offload-lrc", "--duration", "2", *args])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("content,where", [
    ("arrival_s,prompt_tokens\n0,5\n", "header: missing column output_tokens"),
    ("arrival_s,prompt_tokens,output_tokens\n0,5,3\n1,-4,3\n", "row 2: prompt_tokens: -4 tokens"),
    ("arrival_s,prompt_tokens,output_tokens\n0,5,3\n1,5,many\n", "row 2: output_tokens: 'many' is not"),
    ("arrival_s,prompt_tokens,output_tokens\n0,5,3\n2,5,3\n1,5,3\n", "row 3: arrival_s: time '1' comes before"),
    ("arrival_s,prompt_tokens,output_tokens\n0,5,3\n0,5,3\n", "row 2: arrival_s: time '0' repeats"),
])
def test_serve_bad_workload_file(tmp_path, capsys, content, where):
    path = tmp_path / "w.csv"
    path.write_text(content)
    out = tmp_path / "out"
    code, err = _serve(["--workload", str(path), "--out", str(out)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{path}: {where}" in err
    assert not out.exists()


@pytest.mark.parametrize("flags,where", [
    (["--rate", "0"], "--rate: Input should be greater than 0"),
    (["--rate", "-2"], "--rate: Input should be greater than 0"),
    (["--slo-ttft", "2 kg"], "--slo-ttft: Value error, unknown time unit 'kg'"),
    (["--slo-tpot", "fast"], "--slo-tpot:"),
    (["--rates", "1,x"], "--rates: 'x' is not a number"),
    (["--batch", "4"], "--batch: does not apply to serving"),
    (["--workload", "nope"], "workload: no workload file 'nope'"),
])
def test_serve_bad_flags(capsys, flags, where):
    code, err = _serve(flags, capsys)
    assert code == 2 and len(err.splitlines()) == 1 and where in err


def test_serve_out_and_rates_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["serve", "h100-pcie5", "--policy", "offload-lrc", "--duration", "3", "--start", "600",
                 "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    import pandas as pd

    req = pd.read_parquet(out / "requests.parquet")
    assert len(req) == summary["requests"] > 0 and (out / "steps.parquet").exists()
    sweep = tmp_path / "sweep"
    assert main(["serve", "h100-pcie5", "--policy", "offload-lrc", "--duration", "3", "--arrivals", "poisson",
                 "--rates", "1,4", "--out", str(sweep)]) == 0
    assert "max sustainable rate" in capsys.readouterr().out
    assert len(pd.read_parquet(sweep / "rates.parquet")) == 2
    assert main(["plot", "latency", str(sweep), "--out", str(tmp_path / "fig" / "lat")]) == 0
    assert (tmp_path / "fig" / "lat.png").exists()


def test_serve_refuses_the_transitions_prefetcher(capsys):
    """transitions learns from a calibration prefix of the routing trace, whose tokens requests replay: refused
    in one line rather than timed with a leak."""
    from simulator.cli import main

    flags = ["--prefetcher", "transitions", "--prefetch-calibration-tokens", "64"]
    assert main(["serve", "h100-pcie5", "--policy", "offload-lrc", "--duration", "2", *flags]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("moesim serve: error: prefetcher: the transitions") and err.count("\n") == 1, err
