"""Invariants of whole runs on the real ESFT trace (DeepSeek-V2-Lite), short runs to stay fast."""

import numpy as np
import pytest

from simulator.config.model import load_model
from simulator.config.run import RunSpec
from simulator.metrics import step_table
from simulator.policies.registry import POLICIES
from simulator.routing.trace import load_trace
from simulator.simulate import run_spec, simulate

TRACE = "traces/esft-intent"
STEPS = 24


def spec(**kw) -> RunSpec:
    return RunSpec(trace=TRACE, tokens=STEPS, **kw)


@pytest.fixture(scope="module")
def runs():
    out = {}
    for policy in POLICIES:
        for batch in (1, 4):
            out[policy, batch] = run_spec(spec(policy=policy, batch=batch, cache_bytes=2e9, prefetch=True,
                                               prefetch_hit_rate=0.7))
    return out


def test_breakdown_adds_up_per_step_and_per_token(runs):
    for (policy, batch), (result, s) in runs.items():
        df = step_table(result)
        cats = list(s["breakdown_ms_per_token"])
        assert np.allclose(df[cats].sum(axis=1), df["latency_s"], rtol=1e-12, atol=1e-15), policy
        assert sum(s["breakdown_ms_per_token"].values()) == pytest.approx(s["ms_per_token"], rel=1e-12)
        assert all(v >= 0 for v in s["breakdown_ms_per_token"].values())
        assert s["tokens"] == df["tokens"].sum() and (df["tokens"] == batch).all()


def test_busy_time_within_wall_time_and_utilization_at_most_one(runs):
    for (result, s) in runs.values():
        wall = result.decode_time
        assert 0 < result.gpu_busy <= wall and s["gpu_utilization"] <= 1
        assert all(0 <= b <= wall for b in result.ndp_busy)
        for name, dirs in result.link_busy.items():
            for d, busy in dirs.items():
                assert 0 <= busy <= wall
                assert 0 <= s["link_utilization"][name][d] <= 1


def test_link_bytes_equal_the_sizes_fetched_plus_ndp_activations(runs):
    act = load_model("deepseek-v2-lite").hidden * 2
    trace = load_trace(TRACE)
    for (policy, batch), (result, s) in runs.items():
        tokens = _scheduled_tokens(trace, batch)
        ndp_pairs = {"ndp-lowbit": 6, "ndp-lrc": 6 - 2}.get(policy, 0) * 26 * len(tokens)
        if policy == "ndp-hot":
            ndp_pairs = result.counters["experts_ndp"] and _ndp_hot_pairs(result, tokens)
        cxl = s["link_bytes"]["cxl"]
        assert cxl["to_gpu"] == pytest.approx(sum(s["fetched_bytes"].values()) + act * ndp_pairs, rel=1e-12)
        ndp_layers = 26 * STEPS if result.counters["experts_ndp"] else 0
        assert cxl["from_gpu"] == pytest.approx(act * batch * ndp_layers, rel=1e-12), policy
        assert s["link_bytes"]["pcie"] == {"to_gpu": 0.0, "from_gpu": 0.0}


def _ndp_hot_pairs(result, tokens) -> int:
    hot = np.array(result.scenario.policy.hot)  # [L, E]
    ids = np.asarray(load_trace(TRACE).expert_ids[tokens], dtype=np.int64)  # [n, L, k]
    return int((~hot[np.arange(26)[None, :, None], ids]).sum())


def _scheduled_tokens(trace, batch) -> np.ndarray:
    from simulator.schedule import BatchSchedule

    sched = BatchSchedule(trace.sequence_bounds(), batch)
    return np.concatenate([sched.next_step() for _ in range(STEPS)])


def _unions(batch: int) -> list[np.ndarray]:
    """Per step: the [L, E] bool mask of experts the batch uses, straight from the trace."""
    trace = load_trace(TRACE)
    from simulator.schedule import BatchSchedule

    sched = BatchSchedule(trace.sequence_bounds(), batch)
    out = []
    for _ in range(STEPS):
        ids = np.asarray(trace.expert_ids[sched.next_step()], dtype=np.int64)  # [b, L, k]
        mask = np.zeros((26, 64), dtype=bool)
        mask[np.broadcast_to(np.arange(26)[None, :, None], ids.shape), ids] = True
        out.append(mask)
    return out


@pytest.mark.parametrize("batch", [1, 3])
def test_without_cache_every_used_expert_is_copied_each_step(batch):
    s = simulate(spec(policy="offload-lowbit", batch=batch, cache_bytes=0))
    size = load_model("deepseek-v2-lite").expert_bytes(4, 128)
    used = sum(int(m.sum()) for m in _unions(batch))
    assert s["link_bytes"]["cxl"]["to_gpu"] == pytest.approx(used * size, rel=1e-12)
    assert s["cache_hit_rate"] == 0


def test_with_an_ample_cache_every_expert_is_copied_once():
    s = simulate(spec(policy="offload-fp16", batch=2))
    size = load_model("deepseek-v2-lite").expert_bytes(16)
    distinct = int(np.logical_or.reduce(_unions(2)).sum())
    assert s["link_bytes"]["cxl"]["to_gpu"] == pytest.approx(distinct * size, rel=1e-12)
    assert s["cache_misses"] == distinct and s["cache_evictions"] == 0


@pytest.mark.parametrize("hw", ["h100-cxl-ndp", "h100-pcie5"])
def test_lrc_with_top_n_zero_is_lowbit(hw):
    for lrc, plain in (("offload-lrc", "offload-lowbit"), ("ndp-lrc", "ndp-lowbit")):
        if hw == "h100-pcie5" and lrc == "ndp-lrc":
            continue
        a = simulate(spec(hwconfig=hw, policy=lrc, top_n=0, rank=64, cache_bytes=1e9))
        b = simulate(spec(hwconfig=hw, policy=plain, cache_bytes=1e9))
        assert a["sim_time_s"] == b["sim_time_s"] and a["link_bytes"] == b["link_bytes"]
        assert a["breakdown_ms_per_token"] == b["breakdown_ms_per_token"]


def test_bytes_per_token_grow_with_top_n_and_with_rank():
    by_n = [simulate(spec(policy="offload-lrc", top_n=n, rank=32, cache_bytes=0))["bytes_per_token"]
            for n in (0, 1, 2, 4, 6)]
    by_rank = [simulate(spec(policy="offload-lrc", top_n=2, rank=r, cache_bytes=0))["bytes_per_token"]
               for r in (0, 8, 32, 128)]
    assert by_n == sorted(set(by_n)) and by_rank == sorted(set(by_rank))
    ndp = [simulate(spec(policy="ndp-lrc", top_n=n, rank=32))["link_bytes_per_token"]["cxl"] for n in (0, 2, 6)]
    assert ndp == sorted(set(ndp))


@pytest.mark.parametrize("hw,cache", [("h100-pcie5", None), ("h100-pcie5", 2e9), ("a100-pcie4", 1e9)])
def test_resident_beats_lowbit_offload_beats_fp16_offload(hw, cache):
    tps = {p: simulate(spec(hwconfig=hw, policy=p, cache_bytes=cache))["tokens_per_s"]
           for p in ("gpu-resident", "offload-lowbit", "offload-fp16")}
    assert tps["gpu-resident"] >= tps["offload-lowbit"] >= tps["offload-fp16"]


def test_same_inputs_and_seed_give_identical_results():
    kw = {"policy": "offload-lrc", "batch": 3, "cache_experts_per_layer": 4, "prefetch": True, "prefetch_hit_rate": 0.5,
              "cache_policy": "lfu", "prompt": 8}
    assert simulate(spec(**kw, seed=3)) == simulate(spec(**kw, seed=3))
    assert simulate(spec(**kw, seed=3))["prefetch_wasted_bytes"] != simulate(spec(**kw, seed=4))[
        "prefetch_wasted_bytes"]


def test_prefetch_hit_rate_one_wastes_nothing_and_zero_wastes_bytes():
    perfect = simulate(spec(policy="offload-lowbit", cache_experts_per_layer=2, prefetch=True))
    wrong = simulate(spec(policy="offload-lowbit", cache_experts_per_layer=2, prefetch=True, prefetch_hit_rate=0))
    none = simulate(spec(policy="offload-lowbit", cache_experts_per_layer=2))
    assert perfect["prefetch_wasted_bytes"] == 0 < wrong["prefetch_wasted_bytes"]
    assert perfect["tokens_per_s"] > none["tokens_per_s"]
    assert none["cache_capacity_bytes"] == 26 * 2 * load_model("deepseek-v2-lite").expert_bytes(4, 128)


def test_prefill_is_reported_apart_from_decode():
    a = simulate(spec(policy="offload-lowbit", prompt=16))
    b = simulate(spec(policy="offload-lowbit"))
    assert a["prefill_s"] > 0 == b["prefill_s"] and a["tokens"] == b["tokens"]


def test_a_plan_sets_per_expert_bytes_and_ranks(tmp_path):
    import pandas as pd

    from simulator.accuracy.plan import save_plan

    rows = [{"layer": layer, "expert": e, "bits": 3 if e % 2 else 4, "group": 128, "rank": 8 * (e % 3),
             "kurtosis": 3.0, "bytes_lowbit": 1e6 + 1e3 * e, "bytes_factors": 1e4 * (e % 3), "err_before": 0.1,
             "err_after": 0.05} for layer in range(26) for e in range(64)]
    plan = tmp_path / "plan.parquet"
    save_plan(pd.DataFrame(rows), {"model": "deepseek-v2-lite"}, plan)
    result, s = run_spec(spec(policy="offload-lrc", plan=str(plan), cache_bytes=0, top_n=6))
    trace = load_trace(TRACE)
    ids = np.asarray(trace.expert_ids[_scheduled_tokens(trace, 1)], dtype=np.int64)  # [STEPS, L, k]
    expected_lowbit = float((1e6 + 1e3 * ids).sum())
    expected_factors = float((1e4 * (ids % 3)).sum())
    assert s["fetched_bytes"] == {"lowbit": expected_lowbit, "factors": expected_factors, "full": 0.0}
    assert s["link_bytes"]["cxl"]["to_gpu"] == pytest.approx(expected_lowbit + expected_factors, rel=1e-12)
    assert sum(result.steps["compensation"]) > 0
