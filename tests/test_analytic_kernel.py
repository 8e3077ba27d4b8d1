"""The compiled kernel of the analytic path (simulator.fast.kernel): its LRU against the DES's
ExpertCache on arbitrary access sequences, and whole runs through it (caches that evict, prefetch)
against the DES."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.run import RunSpec
from simulator.des.cache import PartitionedCache
from simulator.fast import cache as kernel
from simulator.fast.kernel import run_steps
from simulator.simulate import run_spec


@pytest.mark.parametrize("policy", ["lru", "lfu"])
@settings(max_examples=80, deadline=None)
@given(parts=st.integers(1, 3), per_part=st.integers(1, 6), capacity=st.integers(0, 24),
       sizes=st.lists(st.integers(1, 12), min_size=18, max_size=18),
       accesses=st.lists(st.integers(0, 17), max_size=300))
def test_cache_matches_expert_cache(policy, parts, per_part, capacity, sizes, accesses):
    K = parts * per_part
    key_size = np.array(sizes[:K], dtype=float)
    ref = PartitionedCache(capacity, policy, layers=parts)
    state = kernel.cache_state(K, parts)  # small LRU queues: 300 accesses compact them several times
    last, resident, used, queue, q_head, q_tail, clock, freq, members, n_members, member_at = state
    for k in (a % K for a in accesses):
        part = k // per_part
        cache = ref.part(part)
        before = cache.evictions
        want_hit = not cache.access([(k, float(key_size[k]))])
        if policy == "lru":
            kernel.lru_room(part, 1, last, resident, queue, q_head, q_tail)
            hit, evicted = kernel.lru_access(k, key_size, part, float(capacity), *state[:7])
        else:
            hit, evicted = kernel.lfu_access(k, key_size, part, float(capacity), last, resident, used, clock, freq,
                                             members, n_members, member_at)
        assert (hit, evicted) == (want_hit, cache.evictions - before)
    for p in range(parts):
        assert sorted(ref.part(p).keys()) == [k for k in range(p * per_part, (p + 1) * per_part) if resident[k]]
        assert used[p] == ref.part(p).used


@pytest.mark.parametrize("kw", [
    {"policy": "offload-fp16", "hwconfig": "h100-pcie5", "cache_bytes": 24e9},    # one shared cache, evicting
    {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 3},  # per layer
    {"policy": "ndp-lrc", "cache_experts_per_layer": 2, "batch": 4},            # NDP results on the same link
    {"policy": "offload-lowbit", "hwconfig": "a100-pcie4", "cache_experts_per_layer": 3, "cache_policy": "lfu"},
    {"policy": "offload-fp16", "hwconfig": "h100-pcie5", "cache_bytes": 24e9, "cache_policy": "lfu"},
])
def test_evicting_caches_match_the_des(kw):
    spec = {"tokens": 200, **kw}
    des = run_spec(RunSpec(**spec))[1]
    ana = run_spec(RunSpec(engine="analytic", **spec))[1]
    assert ana["cache_evictions"] > 0
    for key in ("cache_hits", "cache_misses", "cache_evictions", "experts_gpu_per_step", "experts_ndp_per_step",
                "fetched_bytes", "tokens_per_s"):
        assert ana.get(key) == des.get(key), key
    for link, by_dir in des["link_bytes"].items():
        assert ana["link_bytes"][link] == pytest.approx(by_dir, rel=1e-12), link


@pytest.mark.parametrize("kw", [
    {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 4, "prefetch_hit_rate": 0.7},
    {"policy": "offload-lowbit", "hwconfig": "h100-pcie5", "cache_bytes": 3e9, "prefetch_hit_rate": 0.5},  # shared
    {"policy": "ndp-lrc", "cache_experts_per_layer": 2, "batch": 4, "prefetch_hit_rate": 0.9},
    {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 4, "cache_policy": "lfu",
     "prefetch_hit_rate": 0.6},
])
def test_prefetch_uses_the_des_draws(kw):
    """Prefetch decisions use the DES's Generator in the DES's order: every counter equals the DES's;
    the times differ only by the documented queueing approximation (module docstring of analytic)."""
    spec = {"tokens": 160, "prefetch": True, **kw}
    des = run_spec(RunSpec(**spec))[1]
    ana = run_spec(RunSpec(engine="analytic", **spec))[1]
    assert ana["prefetch_bytes"] > 0 and ana["prefetch_wasted_bytes"] > 0
    for key in ("cache_hits", "cache_misses", "cache_evictions", "prefetch_bytes", "prefetch_wasted_bytes",
                "fetched_bytes", "experts_gpu_per_step", "experts_ndp_per_step"):
        assert ana.get(key) == des.get(key), key
    assert ana["tokens_per_s"] == pytest.approx(des["tokens_per_s"], rel=0.05)  # the contended bound


def test_summary_keys_compared_above_exist():
    summary = run_spec(RunSpec(tokens=4, prefetch=True, policy="offload-lrc", hwconfig="h100-pcie5"))[1]
    for key in ("cache_hits", "cache_misses", "cache_evictions", "prefetch_bytes", "prefetch_wasted_bytes",
                "fetched_bytes", "experts_gpu_per_step", "experts_ndp_per_step"):
        assert key in summary, key


@pytest.mark.parametrize("kw", [
    {"policy": "offload-lrc", "hwconfig": "rtx4090-pcie4", "prompt": 64, "batch": 2},
    {"policy": "ndp-lrc", "prompt": 32, "batch": 4, "cache_experts_per_layer": 4},
])
def test_prefill_leaves_the_des_cache(kw):
    """The prompt is one step of all its tokens (its own placement codes); the cache it leaves is the
    decode's starting cache, as in the DES."""
    spec = {"tokens": 96, **kw}
    des = run_spec(RunSpec(**spec))[1]
    ana = run_spec(RunSpec(engine="analytic", **spec))[1]
    for key in ("prefill_s", "cache_hits", "cache_misses", "cache_evictions", "fetched_bytes", "tokens_per_s"):
        assert ana[key] == des[key], key


def test_one_compiled_signature_whatever_the_configuration():
    """Every run passes the kernel the same argument types (scalars cast), so it compiles once per
    install, not once per configuration (each compile costs seconds)."""
    for kw in ({"policy": "ndp-lrc", "batch": 3, "prompt": 4}, {"policy": "offload-fp16", "hwconfig": "a100-pcie4"},
               {"policy": "offload-lrc", "hwconfig": "t4-pcie3", "prefetch": True, "cache_experts_per_layer": 2,
                "runtime": "mixtral-offloading"}):
        run_spec(RunSpec(engine="analytic", tokens=6, **kw))
    assert len(run_steps.signatures) == 1


@pytest.mark.parametrize("policy", ["offload-lrc", "ndp-lrc"])
def test_experts_that_differ_get_their_own_placement_rows(tmp_path, policy):
    """Placement rows are shared by experts alike (bytes per form, bits, rank): with a plan that makes
    them differ, every expert's op times and copies must still be its own."""
    import pandas as pd

    from simulator.accuracy.plan import save_plan

    rows = [{"layer": layer, "expert": e, "bits": 3 if e % 2 else 4, "group": 128, "rank": 8 * (e % 3),
             "kurtosis": 3.0, "bytes_lowbit": 1e6 + 1e3 * (e % 5), "bytes_factors": 1e4 * (e % 3),
             "err_before": 0.1, "err_after": 0.05} for layer in range(26) for e in range(64)]
    plan = tmp_path / "plan.parquet"
    save_plan(pd.DataFrame(rows), {"model": "deepseek-v2-lite"}, plan)
    spec = {"tokens": 48, "policy": policy, "plan": str(plan), "batch": 2, "cache_experts_per_layer": 3}
    des = run_spec(RunSpec(**spec))[1]
    ana = run_spec(RunSpec(engine="analytic", **spec))[1]
    for key in ("cache_hits", "cache_misses", "cache_evictions", "fetched_bytes", "tokens_per_s",
                "breakdown_ms_per_token"):
        assert ana[key] == des[key], key


def test_an_expert_id_out_of_range_is_an_error_not_a_stray_write():
    """The kernel indexes arrays by expert id without bounds checks: a trace built in memory (never
    validated on load) with an id out of range must stop with one clear error."""
    from simulator.errors import UserError
    from simulator.fast import engine as analytic
    from tests.engine_tiny import make_trace, tiny_model, tiny_scenario

    trace = make_trace([[[0]], [[5]]], num_experts=2)
    sc = tiny_scenario("offload-lowbit", trace, model=tiny_model())
    with pytest.raises(UserError, match=r"expert id out of range \[0, 2\)"):
        analytic.run(sc)
