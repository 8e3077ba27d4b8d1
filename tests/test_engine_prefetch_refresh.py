"""Prefetch must not evict what the next layer needs and already holds (Eliseev & Mazur's 2-slot caches).

Tiny system (tests/engine_tiny.py): 2 MoE layers, 3 experts, top-2, a per-layer cache of 2 experts
(2 x 44 B). Token 0 routes layer 1 to {0, 2}; token 1 to {0, 1}. While token 1's layer 0 runs, layer 1's
cache holds [0 (least recent), 2]; expert 1 is prefetched. It must evict 2 (unused by token 1), not 0.
"""

from simulator.des.engine import run
from tests.engine_tiny import make_trace, timeline, tiny_model, tiny_scenario


def _run(prefetch: bool):
    model = tiny_model(layers=2, top_k=2, num_experts=3)
    trace = make_trace([[[0, 1], [0, 2]], [[0, 1], [0, 1]]], num_experts=3)
    return run(tiny_scenario("offload-lowbit", trace, model=model, cache_capacity=88.0, cache_per_layer=True,
                             prefetch=prefetch), record_events=True)


def test_prefetch_refreshes_resident_entries_the_next_layer_needs():
    res = _run(prefetch=True)
    # token 0: layer 0 misses 0 and 1; layer 1's 0 and 2 are prefetched (hits). token 1: all four hit,
    # the only copy is the prefetch of layer 1's expert 1, which evicts expert 2.
    assert list(res.steps["cache_misses"]) == [2, 0]
    assert list(res.steps["cache_hits"]) == [2, 4]
    assert res.counters["cache_evictions"] == 1
    copies = [r[2] for r in timeline(res) if r[0] == "link cxl"]
    assert copies == ["fetch lowbit", "fetch lowbit", "prefetch lowbit", "prefetch lowbit", "prefetch lowbit"]

