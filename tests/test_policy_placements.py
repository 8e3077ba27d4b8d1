"""Each policy's placement decision on hand cases, and the policy-specific setup checks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.des.cache import ExpertCache
from simulator.des.engine import run
from simulator.errors import UserError
from simulator.policies.base import Placement
from simulator.policies.registry import POLICIES, get_policy
from tests.engine_tiny import make_trace, tiny_model, tiny_scenario

DESIGN_NAMES = ["gpu-resident", "offload-fp16", "offload-lowbit", "offload-lrc", "offload-mixed", "ndp-lowbit",
                "ndp-hot", "ndp-lrc"]


def test_registry_holds_exactly_the_design_names():
    assert sorted(POLICIES) == sorted(DESIGN_NAMES)
    with pytest.raises(UserError, match="unknown policy 'nope'"):
        get_policy("nope")


@pytest.mark.parametrize("name,expected", [
    ("gpu-resident", Placement(gpu_tokens=3, gpu_form="lowbit", pinned=True)),
    ("offload-fp16", Placement(gpu_tokens=3, gpu_form="full")),
    ("offload-lowbit", Placement(gpu_tokens=3, gpu_form="lowbit")),
    ("offload-lrc", Placement(gpu_tokens=3, gpu_form="lowbit", comp_tokens=1)),
    ("offload-mixed", Placement(gpu_tokens=3, gpu_form="full")),   # restored by one token: important
    ("ndp-lowbit", Placement(ndp_tokens=3, ndp_form="lowbit")),
    ("ndp-lrc", Placement(gpu_tokens=1, gpu_form="lowbit", comp_tokens=1, ndp_tokens=2, ndp_form="lowbit")),
])
def test_placement_of_an_expert_with_three_tokens_one_restored(name, expected):
    assert get_policy(name).place(0, 5, 3, 1, ExpertCache(0)) == expected


def test_mixed_uses_a_cached_full_copy_else_loads_low_bit_for_unimportant_experts():
    policy, cache = get_policy("offload-mixed"), ExpertCache(1e9)
    assert policy.place(0, 5, 2, 0, cache) == Placement(gpu_tokens=2, gpu_form="lowbit")
    cache.insert((0, 5, "full"), 10)
    assert policy.place(0, 5, 2, 0, cache) == Placement(gpu_tokens=2, gpu_form="full")


def test_ndp_hot_pins_the_most_routed_experts_that_fit():
    model = tiny_model(num_experts=4, top_k=1)
    trace = make_trace([[[2]], [[2]], [[1]], [[2]], [[1]], [[3]]], num_experts=4)  # 2: 3x, 1: 2x, 3: 1x
    sc = tiny_scenario("ndp-hot", trace, model=model, cache_capacity=2 * 48.0)  # two full experts fit
    res = run(sc)
    assert sc.policy.hot == [[False, True, True, False]]
    assert res.counters["experts_gpu"] == 5 and res.counters["experts_ndp"] == 1


def test_gpu_resident_refuses_experts_that_do_not_fit():
    sc = tiny_scenario("gpu-resident", make_trace([[[0]]]))
    sc.free_hbm = 50.0  # two 4-bit experts need 88 B
    with pytest.raises(UserError, match="need 0.0 GB of HBM but only 0.0 GB is free"):
        run(sc)


def test_mixed_loads_full_precision_only_for_top_n_experts():
    model = tiny_model(top_k=2, num_experts=2)
    trace = make_trace([[[0, 1]]])
    res = run(tiny_scenario("offload-mixed", trace, model=model, top_n=1))
    assert res.counters["fetched_full_bytes"] == 48 and res.counters["fetched_lowbit_bytes"] == 44
    assert np.isclose(res.steps["bytes_cxl_to_gpu"][0], 92)


BLIND = sorted(name for name in POLICIES if get_policy(name).expert_blind)


def test_expert_blind_policies_are_the_ones_without_per_expert_state():
    assert BLIND == ["gpu-resident", "ndp-lowbit", "ndp-lrc", "offload-fp16", "offload-lowbit", "offload-lrc"]


@pytest.mark.parametrize("name", BLIND)
@given(layer=st.integers(0, 1), expert=st.integers(0, 3), tokens=st.integers(1, 6), data=st.data())
@settings(max_examples=40, deadline=None)
def test_expert_blind_placements_ignore_layer_and_expert(name, layer, expert, tokens, data):
    """The analytic path asks an expert_blind policy once per (tokens, restored): its answer after
    prepare() must not depend on the layer or the expert."""
    restored = data.draw(st.integers(0, tokens))
    model = tiny_model(num_experts=4, top_k=2, layers=2)
    trace = make_trace([[[0, 1], [2, 3]], [[1, 2], [3, 0]]], num_experts=4)  # [T=2, L=2, k=2]
    sc = tiny_scenario(name, trace, model=model)
    sc.policy.prepare(sc)
    cache = ExpertCache(1e9)
    assert sc.policy.place(layer, expert, tokens, restored, cache) == sc.policy.place(0, 0, tokens, restored, cache)
