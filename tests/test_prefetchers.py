"""Prefetchers decide from what the running system knows (simulator.prefetch), the same way in both timers.

- Perturbing routing the prefetcher has not reached (later steps, and layer l+1 of step t itself when
  the guess for it is made at layer l) leaves every prefetch decision up to that guess unchanged, for
  each prefetcher in the DES and the compiled timer (and the two timers' decisions are the same list).
- Tiny exact cases (tests/engine_tiny.py numbers: copy 1 s + 44 B / 10 B/s = 5.4 s, expert 1.44 s): a right
  guess is a prefetch hit, not a cache hit; a wrong guess takes link time and a cache slot and evicts an
  entry the next layer needs; wasted bytes are the prefetched entries evicted or never used.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import simpy

from simulator import prefetch
from simulator.config.run import RunSpec
from simulator.des.engine import DecodeEngine
from simulator.des.engine import run as run_des
from simulator.errors import UserError
from simulator.fast.engine import AnalyticEngine
from simulator.fast.engine import run as run_fast
from simulator.placement import PlacementTable
from simulator.routing.trace import Trace
from simulator.schedule import BatchSchedule
from simulator.simulate import build_scenario
from tests.engine_tiny import make_trace, timeline, tiny_model, tiny_scenario


def des_decisions(sc) -> list[tuple]:
    sc.policy.prepare(sc)
    env = simpy.Environment()
    engine = DecodeEngine(env, sc, PlacementTable(sc), None)
    engine.decisions = []
    env.process(engine.decode(False))
    env.run()
    return engine.decisions


def fast_decisions(sc) -> list[tuple]:
    sc.policy.prepare(sc)
    engine = AnalyticEngine(sc, PlacementTable(sc), log_decisions=1 << 16)
    engine.run()
    assert engine.out.n_log[0] < 1 << 16
    return engine.decisions()


PREFETCHERS = {
    "previous-token": {"prefetcher": "previous-token"},
    "transitions": {"prefetcher": "transitions", "prefetch_calibration_tokens": 48, "prefetch_successors": 2},
    "recall": {"prefetcher": "recall", "prefetch_calibration_tokens": 48, "prefetch_hit_rate": 0.6},
}
STEP, LAYER = 5, 3  # the guess for MoE layer LAYER + 1 made at layer LAYER of decode step STEP


def _perturbed(trace: Trace, steps: list[np.ndarray], from_layer: int, num_experts: int) -> Trace:
    """`trace` with the routing of every token after step STEP, and of step STEP's tokens from MoE layer
    `from_layer` on, replaced (each id shifted by one: still k distinct experts)."""
    ids = np.array(trace.expert_ids)
    later = np.concatenate(steps[STEP + 1:])
    ids[later] = (ids[later] + 1) % num_experts
    ids[steps[STEP], from_layer:] = (ids[steps[STEP], from_layer:] + 1) % num_experts
    return dataclasses.replace(trace, expert_ids=ids)


@pytest.mark.parametrize("kind", list(PREFETCHERS))
def test_perturbing_unreached_routing_leaves_earlier_decisions(kind):
    spec = RunSpec(policy="offload-lrc", hwconfig="h100-pcie5", trace=None, synthetic_tokens=160, batch=2,
                   tokens=10, cache_experts_per_layer=3, prefetch=True, **PREFETCHERS[kind])
    sc = build_scenario(spec)
    sched = BatchSchedule(sc.decode_bounds(), sc.batch)
    steps = [sched.next_step() for _ in range(sc.steps)]
    # recall is told, per slot, whether it guessed layer l+1 right (a published recall, simulator.prefetch):
    # its guess for l+1 reads l+1's true set, so only what comes after that can change
    first = LAYER + 2 if kind == "recall" else LAYER + 1
    other = dataclasses.replace(sc, trace=_perturbed(sc.trace, steps, first, sc.model.num_experts))

    def upto(log):  # decisions made up to the guess for layer LAYER + 1 at step STEP
        return [d for d in log if d[0] < STEP or (d[0] == STEP and d[1] <= LAYER + 1)]

    logs = {}
    for name, decide in (("des", des_decisions), ("fast", fast_decisions)):
        base, moved = decide(dataclasses.replace(sc)), decide(dataclasses.replace(other))
        assert any(d[0] == STEP and d[1] == LAYER + 1 for d in base), "no decision at the checked guess"
        assert upto(moved) == upto(base), name
        assert moved != base, f"{name}: the perturbation changed nothing (the test would prove nothing)"
        logs[name] = base
    assert logs["fast"] == logs["des"]


def test_calibration_prefix_is_not_timed():
    spec = RunSpec(policy="offload-lrc", hwconfig="h100-pcie5", trace=None, synthetic_tokens=100, batch=2,
                   tokens=None, cache_experts_per_layer=3, prefetch=True, prefetcher="transitions",
                   prefetch_calibration_tokens=60)
    sc = build_scenario(spec)
    assert sc.trace.sequence_bounds() == [(0, 50), (50, 100)]
    assert sc.decode_bounds() == [(60, 100)]  # the first sequence lies in the prefix; the second starts at 60
    res = run_fast(sc)
    assert sum(res.steps["tokens"]) == 40
    assert sc.steps is None


def test_calibration_counts_and_successors():
    trace = make_trace([[[0, 1], [2, 1]], [[0, 2], [2, 0]], [[1, 2], [0, 1]]], num_experts=3)
    pop, trans = prefetch.calibrate(trace, 2, layers=2, experts=3)
    assert pop.tolist() == [[2, 1, 1], [1, 1, 2]]
    # token 0: {0, 1} -> {2, 1}; token 1: {0, 2} -> {2, 0}
    assert trans[0].tolist() == [[1, 1, 2], [0, 1, 1], [1, 0, 1]]
    assert prefetch.successors(trans, 2)[0].tolist() == [[2, 0], [1, 2], [0, 2]]
    pred, top = prefetch.predicted(trace, np.array([2]), prefetch.TRANSITIONS, prefetch.successors(trans, 2), 1)
    # token 2 routes layer 0 to {1, 2} (1 first): successors 1 -> [1, 2], 2 -> [0, 2] (2 repeated: dropped)
    assert pred.tolist() == [[[-1, -1, -1, -1], [1, 2, 0, -1]]] and top == 2


def test_previous_token_reads_only_the_same_sequence():
    trace = make_trace([[[0], [1]], [[1], [2]], [[2], [0]]], seq_id=[0, 0, 1], num_experts=3)
    pred, top = prefetch.predicted(trace, np.array([0, 1, 2]), prefetch.PREVIOUS, None, 1, np.array([1, 1, 1]))
    assert pred[:, 1, 0].tolist() == [-1, 1, -1]  # token 1 guesses token 0's layer 1; tokens 0, 2 start sequences
    assert (pred[:, 0] == -1).all() and top == 1
    one_step, _ = prefetch.predicted(trace, np.array([0, 1, 2]), prefetch.PREVIOUS, None, 1)  # a prefill:
    assert (one_step == -1).all()  # token 0 is in token 1's own forward pass, not reached at layer 1


def test_prefetcher_selection_and_bad_input():
    base = {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 4}
    sc = build_scenario(RunSpec(**base, runtime="mixtral-offloading", prefetch=True))
    assert (sc.prefetcher, sc.prefetch_hit_rate, sc.prefetch_calibration_tokens) == ("recall", 0.85, 64)
    sc = build_scenario(RunSpec(**base, prefetcher="previous-token"))  # a prefetcher named turns prefetch on
    assert (sc.prefetch, sc.prefetcher, sc.prefetch_mode) == (True, "previous-token", prefetch.PREVIOUS)
    assert build_scenario(RunSpec(**base, prefetcher="previous-token", prefetch=False)).prefetch_mode == prefetch.NONE
    with pytest.raises(UserError, match="calibration"):
        build_scenario(RunSpec(**base, prefetcher="transitions"))
    with pytest.raises(UserError, match="covers the whole trace"):
        run_des(build_scenario(RunSpec(**base, trace=None, synthetic_tokens=16, prefetcher="transitions",
                                       prefetch_calibration_tokens=16)))


# ---- tiny exact cases: 2 MoE layers, 3 experts ----

def test_right_guess_is_a_prefetch_hit_not_a_cache_hit():
    """One token: layer 0 -> expert 1 (demand copy), layer 1 -> expert 0, guessed right (recall 1) and copied
    at prefetch priority behind the demand copy; the GPU waits for it at layer 1."""
    model = tiny_model(layers=2, num_experts=3)
    sc = tiny_scenario("offload-lowbit", make_trace([[[1], [0]]], num_experts=3), model=model,
                       cache_capacity=1000.0, prefetch=True)
    res = run_des(sc, record_events=True)
    # router over 3 experts 1.24 s; layer 1: attention 2.44 + router 1.24 from 10.52 -> 14.2; copy ends 14.48
    assert [r[2:] for r in timeline(res)] == [
        ("attention", 0.0, 2.44), ("router", 2.44, 3.68), ("wait copy", 3.68, 9.08), ("fetch lowbit", 3.68, 9.08),
        ("expert", 9.08, 10.52), ("prefetch lowbit", 9.08, 14.48), ("attention", 10.52, 12.96),
        ("router", 12.96, 14.2), ("wait copy", 14.2, 14.48), ("expert", 14.48, 15.92), ("lm head", 15.92, 17.0)]
    for r in (res, run_fast(dataclasses.replace(sc))):
        c = r.counters
        assert (c["cache_hits"], c["prefetch_hits"], c["cache_misses"]) == (0, 1, 1)
        assert (c["prefetch_bytes"], c["prefetch_wasted_bytes"]) == (44, 0)


def _polluting(prefetch_on: bool):
    """Two tokens, each routing both layers to {0, 1}; per-layer caches of two experts (88 B). recall 0: each
    slot's guess is wrong, and the only expert layer 1 does not use is 2 (so the draw cannot pick another)."""
    model = tiny_model(layers=2, top_k=2, num_experts=3)
    trace = make_trace([[[0, 1], [0, 1]], [[0, 1], [0, 1]]], num_experts=3)
    return tiny_scenario("offload-lowbit", trace, model=model, cache_capacity=88.0, cache_per_layer=True,
                         prefetch=prefetch_on, prefetch_hit_rate=0.0)


def test_wrong_guess_takes_link_time_and_evicts_what_the_next_layer_needs():
    res = run_des(_polluting(True), record_events=True)
    token1 = [r[2:] for r in timeline(res) if r[3] >= res.steps["start_s"][1] - 1e-9]
    # token 1: layer 0 hits both; the wrong guess (expert 2) is copied into layer 1's cache, evicting
    # expert 0 (least recent); layer 1 then misses 0 (evicting 1) and 1 (evicting 2): two demand copies
    assert token1 == [
        ("attention", 33.2, 35.8), ("router", 35.8, 37.04), ("expert", 37.04, 38.48),
        ("prefetch lowbit", 37.04, 42.44), ("expert", 38.48, 39.92), ("attention", 39.92, 42.52),
        ("router", 42.52, 43.76), ("wait copy", 43.76, 49.16), ("fetch lowbit", 43.76, 49.16),
        ("expert", 49.16, 50.6), ("fetch lowbit", 49.16, 54.56), ("wait copy", 50.6, 54.56),
        ("expert", 54.56, 56.0), ("lm head", 56.0, 57.08)]
    # token 0: layer 1's first demand copy queues behind the wasted prefetch (ends 19.88, not 19.6)
    assert ("fetch lowbit", 19.88, 25.28) in [r[2:] for r in timeline(res)]
    without = run_des(_polluting(False))
    assert list(without.steps["cache_hits"]) == [0, 4] and without.steps["end_s"][1] == pytest.approx(47.44)
    for r in (res, run_fast(_polluting(True))):
        assert list(r.steps["cache_hits"]) == [0, 2] and list(r.steps["cache_misses"]) == [4, 2]
        assert list(r.steps["prefetch_hits"]) == [0, 0]
        c = r.counters
        # both copies of expert 2 are wasted: the first evicted unused, the second unused at the end
        assert (c["prefetch_bytes"], c["prefetch_wasted_bytes"], c["cache_evictions"]) == (88, 88, 4)
        assert list(r.steps["end_s"]) == pytest.approx([33.2, 57.08])


def test_demand_and_prefetch_hits_are_counted_apart():
    """recall 1, one-expert caches per layer. Token 0: layer 1's expert 1 is prefetched, its use a prefetch hit;
    token 1: layer 0's 0 and layer 1's 1 (guessed again: resident, refreshed) are demand hits; token 2: layer
    1 moves to expert 2, prefetched (evicting 1), a prefetch hit again."""
    model = tiny_model(layers=2, num_experts=3)
    trace = make_trace([[[0], [1]], [[0], [1]], [[0], [2]]], num_experts=3)
    sc = tiny_scenario("offload-lowbit", trace, model=model, cache_capacity=44.0, cache_per_layer=True,
                       prefetch=True)
    for r in (run_des(sc), run_fast(dataclasses.replace(sc))):
        assert list(r.steps["cache_hits"]) == [0, 2, 1]
        assert list(r.steps["prefetch_hits"]) == [1, 0, 1]
        assert list(r.steps["cache_misses"]) == [1, 0, 0]
        assert (r.counters["prefetch_bytes"], r.counters["prefetch_wasted_bytes"]) == (88, 0)
