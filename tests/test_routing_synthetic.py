"""Synthetic traces: determinism, validity, the knobs do what they say, calibration and recovery."""

import numpy as np
import pytest

from simulator.cli import main
from simulator.config.model import list_presets, load_model
from simulator.errors import UserError
from simulator.routing import calibrate as cal
from simulator.routing.stats import selection_counts, trace_stats
from simulator.routing.synthetic import SynthParams, load_params, synthesize
from simulator.routing.trace import check_trace_matches_model, load_trace, validate_arrays


def flat(model, skew, locality, scale=1.0):
    n = model.moe_layers
    return SynthParams(model=model.name, score_scale=scale, skew=[skew] * n, locality=[locality] * n)


def test_same_seed_same_trace_other_seed_other_trace():
    m = load_model("mixtral-8x7b")
    a, b, c = (synthesize(m, 50, seed, sequences=3) for seed in (7, 7, 8))
    for name in ("expert_ids", "scores", "seq_id", "position"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.expert_ids, c.expert_ids)


def test_valid_trace_shape_and_sequences(tmp_path):
    m = load_model("qwen3-30b-a3b")
    t = synthesize(m, 11, seed=0, sequences=3)
    validate_arrays(t.meta, t.expert_ids, t.scores, t.seq_id, t.position, "synthetic")
    check_trace_matches_model(t, m)
    assert t.expert_ids.shape == (11, 48, 8) and t.meta.score_kind == "synthetic"
    assert t.seq_id.tolist() == [0] * 4 + [1] * 4 + [2] * 3
    assert t.position.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]


def test_knobs_move_their_statistic():
    m = load_model("olmoe-1b-7b")
    base = trace_stats(synthesize(m, 600, 0, 2, flat(m, 0.5, 0.0)))
    skewed = trace_stats(synthesize(m, 600, 0, 2, flat(m, 1.5, 0.0)))
    local = trace_stats(synthesize(m, 600, 0, 2, flat(m, 0.5, 0.9)))
    sharp = trace_stats(synthesize(m, 600, 0, 2, flat(m, 0.5, 0.0, scale=3.0)))
    assert max(skewed["entropy"]) < min(base["entropy"])
    assert min(local["consecutive_overlap"]) > max(base["consecutive_overlap"])
    # without locality the overlap is what independent tokens with this popularity give
    assert np.mean(base["consecutive_overlap"]) == pytest.approx(np.mean(base["independent_overlap"]), abs=0.02)
    assert sharp["mean_scores"][0] > base["mean_scores"][0]
    assert np.mean(local["entropy"]) == pytest.approx(np.mean(base["entropy"]), abs=0.1)  # marginals kept


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_has_shipped_parameters(name):
    m = load_model(name)
    assert len(load_params(m).skew) == m.moe_layers


def test_shipped_deepseek_fit_reproduces_esft_statistics():
    real = cal.reference_targets(cal.load_reference()["models"]["deepseek-v2-lite"])
    s = trace_stats(synthesize(load_model("deepseek-v2-lite"), 3000, seed=0, sequences=20))
    assert np.mean(s["entropy"]) == pytest.approx(np.mean(real["entropy"]), abs=0.03)
    assert np.mean(s["consecutive_overlap"]) == pytest.approx(np.mean(real["consecutive_overlap"]), abs=0.02)
    assert sum(s["mean_scores"]) == pytest.approx(sum(real["mean_scores"]), abs=0.02)


def test_fit_recovers_known_parameters(monkeypatch):
    monkeypatch.setattr(cal, "FIT_SAMPLES", 3000)
    m = load_model("deepseek-v2-lite")
    truth = SynthParams(model=m.name, score_scale=1.5, skew=list(np.linspace(0.3, 0.8, 26)),
                        locality=list(np.linspace(0.1, 0.6, 26)))
    t = synthesize(m, 6000, seed=3, sequences=10, params=truth)
    s = trace_stats(t)
    pick = [0, 25]
    reference = {"models": {m.name: {
        "source": "test", "commit": "0" * 12, "license": "MIT", "layer_index": pick, "workloads": {
            "w": {"tokens": 6000, "counts": selection_counts(t)[pick].tolist(),
                  "consecutive_overlap": [s["consecutive_overlap"][i] for i in pick],
                  "mean_scores": s["mean_scores"]}}}}}
    fitted, _ = cal.fit_params(m, reference)
    assert fitted.skew[0] == pytest.approx(0.3, abs=0.05) and fitted.skew[-1] == pytest.approx(0.8, abs=0.05)
    assert fitted.locality[0] == pytest.approx(0.1, abs=0.06)
    assert fitted.locality[-1] == pytest.approx(0.6, abs=0.06)
    assert fitted.score_scale == pytest.approx(1.5, rel=0.1)


def test_cli_synth_writes_loadable_trace(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["trace", "synth", "--model", "olmoe-1b-7b", "--tokens", "20", "--seed", "1",
                 "--sequences", "2", "--out", str(out)]) == 0
    assert load_trace(out).tokens == 20
    assert main(["trace", "synth", "--model", "olmoe-1b-7b", "--tokens", "5", "--sequences", "9",
                 "--out", str(tmp_path / "x")]) == 2
    assert "sequences must lie in [1, tokens=5]" in capsys.readouterr().err
    with pytest.raises(UserError, match="skew: has 3 layers"):
        p = tmp_path / "p.yaml"
        p.write_text("model: olmoe-1b-7b\nscore_scale: 1\nskew: [1, 1, 1]\nlocality: [0, 0, 0]\n")
        load_params(load_model("olmoe-1b-7b"), p)
