"""A prefetch refreshes what its guess names, never what the next layer will really need (Eliseev & Mazur's
2-slot caches).

Tiny system (tests/engine_tiny.py): 2 MoE layers, 3 experts, top-2, a per-layer cache of 2 experts
(2 x 44 B); every token routes layer 0 to {0, 1}.
"""

import dataclasses

from simulator.des.engine import run
from simulator.fast.engine import run as run_fast
from tests.engine_tiny import make_trace, timeline, tiny_model, tiny_scenario

MODEL = tiny_model(layers=2, top_k=2, num_experts=3)


def _scenario(layer1: list[list[int]], **kw):
    trace = make_trace([[[0, 1], experts] for experts in layer1], num_experts=3)
    return tiny_scenario("offload-lowbit", trace, model=MODEL, cache_capacity=88.0, cache_per_layer=True,
                         prefetch=True, **kw)


def test_a_right_guess_refreshes_what_it_names():
    """Token 0 routes layer 1 to {0, 2}, token 1 to {0, 1}. recall 1: token 1's guess {0, 1} finds 0 resident
    (refreshed) and copies 1, which evicts 2 (unused by token 1), not 0."""
    res = run(_scenario([[0, 2], [0, 1]]), record_events=True)
    # token 0: layer 0 misses 0 and 1; layer 1's 0 and 2 are prefetched (prefetch hits). token 1: layer 0
    # hits both, layer 1 hits 0 (resident) and uses the prefetched 1
    assert list(res.steps["cache_misses"]) == [2, 0]
    assert list(res.steps["cache_hits"]) == [0, 3]
    assert list(res.steps["prefetch_hits"]) == [2, 1]
    assert res.counters["cache_evictions"] == 1
    copies = [r[2] for r in timeline(res) if r[0] == "link cxl"]
    assert copies == ["fetch lowbit", "fetch lowbit", "prefetch lowbit", "prefetch lowbit", "prefetch lowbit"]


def test_nothing_is_kept_because_the_next_layer_needs_it():
    """previous-token: token 1 (layer 1 {1, 2}) guesses token 0's {0, 2}; token 2 (layer 1 {0, 1}) guesses
    token 1's {1, 2}: both resident, refreshed, so 0 is not resident and its demand copy evicts 1, the least
    recent after the refresh, which token 2 then needs too (protecting 1 because layer 1 needs it would
    have evicted 2 and hit 1)."""
    sc = _scenario([[0, 2], [1, 2], [0, 1]], prefetcher="previous-token")
    for res in (run(sc), run_fast(dataclasses.replace(sc))):
        assert list(res.steps["cache_misses"]) == [4, 1, 2]
        assert list(res.steps["cache_hits"]) == [0, 3, 2]
        assert res.counters["prefetch_bytes"] == 0 and res.counters["prefetch_hits"] == 0
