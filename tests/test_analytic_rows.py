"""The compiled row kernel of the analytic path (simulator.analytic_rows): its LRU against the DES's
ExpertCache on arbitrary access sequences, and whole runs whose caches evict against the DES."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import analytic
from simulator import analytic_kernel as analytic_rows
from simulator.config.run import RunSpec
from simulator.hardware.cache import PartitionedCache
from simulator.simulate import run_spec


@settings(max_examples=80, deadline=None)
@given(parts=st.integers(1, 3), per_part=st.integers(1, 6), capacity=st.integers(0, 24),
       sizes=st.lists(st.integers(1, 12), min_size=18, max_size=18),
       accesses=st.lists(st.integers(0, 17), max_size=300))
def test_lru_matches_expert_cache(parts, per_part, capacity, sizes, accesses):
    K = parts * per_part
    key_size = np.array(sizes[:K], dtype=float)
    ref = PartitionedCache(capacity, "lru", layers=parts)
    state = analytic_rows.lru_state(K, parts)  # small queues: 300 accesses compact them several times
    last, resident, used, q_key, q_stamp, q_head, q_tail, _clock = state
    for k in (a % K for a in accesses):
        part = k // per_part
        cache = ref.part(part)
        before = cache.evictions
        want_hit = not cache.access([(k, float(key_size[k]))])
        analytic_rows.lru_room(part, 1, last, resident, q_key, q_stamp, q_head, q_tail)
        hit, evicted = analytic_rows.lru_access(k, key_size, part, float(capacity), *state)
        assert (hit, evicted) == (want_hit, cache.evictions - before)
    for p in range(parts):
        assert sorted(ref.part(p).keys()) == [k for k in range(p * per_part, (p + 1) * per_part) if resident[k]]
        assert used[p] == ref.part(p).used


@pytest.mark.parametrize("kw", [
    {"policy": "offload-fp16", "hwconfig": "h100-pcie5", "cache_bytes": 24e9},    # one shared cache, evicting
    {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 3},  # per layer
    {"policy": "ndp-lrc", "cache_experts_per_layer": 2, "batch": 4},            # NDP results on the same link
])
def test_evicting_caches_run_in_the_kernel_and_match_the_des(monkeypatch, kw):
    def no_replay(*a):
        raise AssertionError("replayed by the DES's code")

    monkeypatch.setattr(analytic.AnalyticEngine, "logical", no_replay)
    spec = {"tokens": 200, **kw}
    des = run_spec(RunSpec(**spec))[1]
    ana = run_spec(RunSpec(engine="analytic", **spec))[1]
    assert ana["cache_evictions"] > 0
    for key in ("cache_hits", "cache_misses", "cache_evictions", "experts_gpu", "experts_ndp", "fetched_bytes"):
        assert ana.get(key) == des.get(key), key
    assert ana["tokens_per_s"] == pytest.approx(des["tokens_per_s"], rel=1e-9)
    for link, by_dir in des["link_bytes"].items():
        assert ana["link_bytes"][link] == pytest.approx(by_dir, rel=1e-12), link
