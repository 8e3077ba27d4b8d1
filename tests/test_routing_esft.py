"""ESFT importer on hand-written files, its errors, and invariants of the shipped real traces."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.config.model import ModelSpec, load_model
from simulator.errors import UserError
from simulator.routing.esft import read_esft_task
from simulator.routing.stats import trace_stats
from simulator.routing.trace import check_trace_matches_model, load_trace

TRACES = Path(__file__).resolve().parent.parent / "traces"
TOY = ModelSpec(name="toy", layers=3, first_dense_layers=1, dense_ffn=8, hidden=4, expert_ffn=4,
                num_experts=8, top_k=2, vocab=10, attention={"kind": "gqa", "heads": 1, "kv_heads": 1,
                                                            "head_dim": 4})


def write_task(task: Path, layers: list[list[str]], gz: bool = False) -> None:
    task.mkdir(parents=True)
    for layer, lines in enumerate(layers, start=1):
        text = "\n".join(lines) + "\n"
        if gz:
            (task / f"expert_weights_{layer}.txt.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (task / f"expert_weights_{layer}.txt").write_text(text)


def line(ids, weights) -> str:
    return "\t".join(map(str, ids)) + "\t\t" + "\t".join(map(str, weights))


def test_join_layers_and_sort_scores(tmp_path):
    # sequence 0: 2 tokens, sequence 1: 1 token; ids unsorted by weight as in ESFT
    layer1 = [line([3, 5, 1, 0], [0.1, 0.3, 0.2, 0.05]), line([7, 2], [0.4, 0.4])]
    layer2 = [line([4, 6, 6, 2], [0.5, 0.1, 0.2, 0.3]), line([0, 1], [0.01, 0.02])]
    write_task(tmp_path / "law", [layer1, layer2], gz=True)
    t = read_esft_task(tmp_path / "law", model=TOY, commit="abc")
    assert t.meta.name == "esft-law" and t.meta.commit == "abc" and t.meta.layers == 2
    assert t.expert_ids.tolist() == [[[5, 3], [4, 6]], [[1, 0], [2, 6]], [[7, 2], [1, 0]]]
    np.testing.assert_allclose(t.scores[:, 0], [[0.3, 0.1], [0.2, 0.05], [0.4, 0.4]], rtol=1e-6)
    assert t.seq_id.tolist() == [0, 0, 1] and t.position.tolist() == [0, 1, 0]


def test_token_count_mismatch_names_file_and_line(tmp_path):
    write_task(tmp_path / "x", [[line([1, 2], [0.2, 0.1]), line([1, 2, 3, 4], [.4, .3, .2, .1])],
                                [line([1, 2], [0.2, 0.1]), line([1, 2], [0.2, 0.1])]])
    with pytest.raises(UserError, match=r"expert_weights_2.txt: line 2: 1 tokens but expert_weights_1"):
        read_esft_task(tmp_path / "x", model=TOY)


@pytest.mark.parametrize("bad, match", [
    ("1\t2\t0.2\t0.1", r"line 1: expected '<ids>"),
    ("1\t2\t3\t\t0.2\t0.1\t0.1", r"line 1: 3 ids and 3 weights"),
    ("1\tx\t\t0.2\t0.1", r"line 1: not a number"),
    ("1\t9\t\t0.2\t0.1", r"expert_ids: expert id 9 out of range \[0, 8\)"),
])
def test_malformed_lines(tmp_path, bad, match):
    write_task(tmp_path / "x", [[bad], [line([1, 2], [0.2, 0.1])]])
    with pytest.raises(UserError, match=match):
        read_esft_task(tmp_path / "x", model=TOY)


def test_cli_import_needs_every_layer(tmp_path, capsys):
    write_task(tmp_path / "esft" / "expert_scores" / "intent", [[line([1, 2], [.2, .1])]] * 25)
    assert main(["trace", "import-esft", str(tmp_path / "esft"), "--out", str(tmp_path / "out")]) == 2
    assert "missing expert_weights_26.txt[.gz]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_import_writes_provenance(tmp_path, capsys):
    ids = [0, 1, 2, 3, 4, 5]
    write_task(tmp_path / "esft" / "expert_scores" / "intent", [[line(ids, [.1] * 6)]] * 26)
    (tmp_path / "esft" / "SOURCE.txt").write_text("Commit     : 579a7711e4b3 (2024-09-22)\n")
    assert main(["trace", "import-esft", str(tmp_path / "esft"), "--out", str(tmp_path / "out")]) == 0
    t = load_trace(tmp_path / "out" / "esft-intent")
    assert t.meta.commit == "579a7711e4b3" and t.meta.source.endswith("results/expert_scores/intent")
    check_trace_matches_model(t, load_model("deepseek-v2-lite"))


@pytest.mark.parametrize("task, tokens, sequences", [
    ("intent", 8222, 127), ("law", 8327, 33), ("summary", 8479, 13), ("translation", 8251, 40)])
def test_real_esft_trace_invariants(task, tokens, sequences):
    trace = load_trace(TRACES / f"esft-{task}")       # validates ids, duplicates, sorted finite scores
    check_trace_matches_model(trace, load_model("deepseek-v2-lite"))
    s = trace_stats(trace)
    assert (s["tokens"], s["sequences"], s["layers"], s["num_experts"], s["top_k"]) == (
        tokens, sequences, 26, 64, 6)
    assert trace.meta.score_kind == "softmax" and trace.meta.commit.startswith("579a7711")
    # temporal locality: consecutive tokens share more experts than chance (6/64) in every layer
    assert min(s["consecutive_overlap"]) > s["chance_overlap"] == 6 / 64
    assert 0.12 < np.mean(s["consecutive_overlap"]) < 0.34
    # softmax probabilities over 64 experts, not renormalised over the top-6
    assert 0.3 < float(trace.scores.sum(axis=-1).mean()) < 0.45
    assert all(h < s["max_entropy"] for h in s["entropy"])


def test_shipped_trace_loads_from_any_working_directory(tmp_path, monkeypatch):
    from simulator.routing.trace import load_trace

    monkeypatch.chdir(tmp_path)
    assert load_trace("traces/esft-intent").meta.layers == 26
