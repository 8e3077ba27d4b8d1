"""build_scenario's checks of what a run asks against the model, the hardware and a plan: each is one line
naming the field, before anything is simulated."""

from __future__ import annotations

import pandas as pd
import pytest

from simulator.accuracy.plan import save_plan
from simulator.cli import main
from simulator.config.run import RunSpec
from simulator.errors import UserError
from simulator.simulate import build_scenario, run_spec


def plan_file(tmp_path, bits: int = 3, group: int = 64, rank: int = 8):
    rows = [{"layer": layer, "expert": e, "bits": bits, "group": group, "rank": rank, "kurtosis": 3.0,
             "bytes_lowbit": 1e6, "bytes_factors": 1e4 * (rank > 0), "err_before": 0.1, "err_after": 0.05}
            for layer in range(26) for e in range(64)]
    path = tmp_path / "plan.parquet"
    save_plan(pd.DataFrame(rows), {"model": "deepseek-v2-lite"}, path)
    return str(path)


@pytest.mark.parametrize("argv, expected", [
    (["--cache-experts-per-layer", "65"],
     ("moesim simulate: error: cache_experts_per_layer: 65 cached experts per layer but deepseek-v2-lite has 64 "
     "per layer")),
    (["--cache-bytes", "200 GB"], "moesim simulate: error: cache_bytes: the expert cache needs 200.00 GB but only "),
    (["--rank", "1409"],
     ("moesim simulate: error: rank: rank 1409 exceeds 1408, the smaller dimension of deepseek-v2-lite's expert "
     "matrices (2048 x 1408)")),
])
def test_impossible_requests_are_one_line_errors(capsys, argv, expected):
    assert main(["simulate", "h100-pcie5", "--policy", "offload-lrc", "--tokens", "2", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(expected) and err.count("\n") == 1, err


def test_the_largest_possible_rank_and_cache_still_run():
    spec = RunSpec(hwconfig="h100-pcie5", policy="offload-lrc", rank=1408, cache_experts_per_layer=64, tokens=2)
    sc = build_scenario(spec)
    assert sc.sizes.rank.max() == 1408 and sc.cache_per_layer
    assert sc.cache_total_bytes <= sc.free_hbm


def test_a_cache_of_exactly_the_free_hbm_runs_and_one_byte_more_does_not():
    free = build_scenario(RunSpec(tokens=2)).free_hbm
    assert build_scenario(RunSpec(tokens=2, cache_bytes=free)).cache_capacity == free
    with pytest.raises(UserError, match="the expert cache needs"):
        build_scenario(RunSpec(tokens=2, cache_bytes=free * (1 + 1e-9)))


def test_a_plan_gives_bits_and_group_unless_given(tmp_path):
    plan = plan_file(tmp_path, bits=3, group=64)
    _, summary = run_spec(RunSpec(policy="ndp-lrc", plan=plan, tokens=2))
    assert (summary["spec"]["bits"], summary["spec"]["group"]) == (3, 64)
    _, summary = run_spec(RunSpec(policy="ndp-lrc", plan=plan, bits=3, group=64, tokens=2))  # agreeing: fine
    assert (summary["spec"]["bits"], summary["spec"]["group"]) == (3, 64)


@pytest.mark.parametrize("given, field, message", [
    ({"bits": 4}, "bits", "--bits 4 disagrees with the plan's bits 3; leave --bits out to take the plan's"),
    ({"group": 128}, "group", "--group 128 disagrees with the plan's group 64; leave --group out to take the plan's"),
])
def test_a_plan_rejects_bits_or_group_that_disagree(tmp_path, given, field, message):
    with pytest.raises(UserError) as exc:
        build_scenario(RunSpec(policy="ndp-lrc", plan=plan_file(tmp_path, bits=3, group=64), tokens=2, **given))
    assert exc.value.field == field and exc.value.detail == message


def test_a_plan_with_a_rank_above_the_matrices_is_rejected(tmp_path):
    with pytest.raises(UserError, match="rank 2000 exceeds 1408") as exc:
        build_scenario(RunSpec(policy="ndp-lrc", plan=plan_file(tmp_path, rank=2000), tokens=2))
    assert exc.value.field == "rank"


def test_every_scenario_field_comes_from_the_runspec_or_is_resolved_from_it():
    """build_scenario copies RunSpec fields by name: a Scenario field added without a RunSpec field of its
    name (or a resolution in build_scenario) fails here instead of silently keeping its default."""
    from dataclasses import fields

    from simulator.scenario import Scenario

    spec = RunSpec(hwconfig="rtx3060-pcie3", policy="offload-lrc", batch=3, prompt=5, context=77, top_n=1, attention_bits=8, group=64,
                   prefetch=True, prefetch_hit_rate=0.25, prefetcher="recall", prefetch_calibration_tokens=16,
                   prefetch_successors=2, seed=9, cache_policy="lfu", tokens=7, runtime="mixtral-offloading")
    sc = build_scenario(spec)
    for f in fields(Scenario):
        if f.name in RunSpec.model_fields and f.name not in ("model", "trace", "policy", "runtime"):
            assert getattr(sc, f.name) == getattr(spec, f.name), f.name
    assert (sc.steps, sc.model.name, sc.policy.name, sc.runtime.name) == (7, spec.model, spec.policy, spec.runtime)
    # the runtime's figures: 43 kernels per expert at 5 us (GPU) + 29.0 us (host, the reference CPU's own)
    assert sc.op_overhead["expert"] == pytest.approx(43 * (5e-6 + 29.0e-6), rel=1e-12)
    assert (sc.dequant_bytes_per_weight, sc.attention_dequant_bytes_per_weight, sc.loads_block_layer) == (1.5, 0.375, True)
