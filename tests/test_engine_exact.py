"""Exact step times on tiny hand-computable systems, and a closed-form cross-check on a real model.

Tiny numbers (tests/engine_tiny.py): kernel = max(FLOPs / 1000, bytes / 100) + 1 s; copy = 1 s + bytes / 10;
NDP op = max(FLOPs / rate, bytes / 10) + 1 s. Expert: 44 B at 4 bit (48 FLOPs per token), 48 B at 16 bit.
Token 0, context 0: attention = 144 B / 100 + 1 = 2.44 s; router = 16 B / 100 + 1 = 1.16 s;
LM head = 8 B / 100 + 1 = 1.08 s.
"""

import pytest

from simulator import costs
from simulator.config.model import load_model
from simulator.config.run import RunSpec
from simulator.config.system import load_system
from simulator.des.engine import Scenario, run
from simulator.fast.engine import run as run_analytic
from simulator.policies.registry import get_policy
from simulator.routing.trace import load_trace
from simulator.simulate import expert_sizes
from tests.engine_tiny import make_trace, timeline, tiny_model, tiny_scenario


def test_offload_lowbit_without_cache_waits_for_the_copy():
    res = run(tiny_scenario("offload-lowbit", make_trace([[[1]]])), record_events=True)
    assert timeline(res) == [
        ("GPU", "compute stream", "attention", 0.0, 2.44),
        ("GPU", "compute stream", "router", 2.44, 3.6),
        ("GPU", "compute stream", "wait copy", 3.6, 9.0),            # copy 1 + 44 / 10 = 5.4 s
        ("link cxl", "to_gpu #0", "fetch lowbit", 3.6, 9.0),
        ("GPU", "compute stream", "expert", 9.0, 10.44),            # 44 B / 100 + 1
        ("GPU", "compute stream", "lm head", 10.44, 11.52),
    ]
    assert list(res.steps["end_s"]) == pytest.approx([11.52])
    assert list(res.steps["transfer_stall"]) == pytest.approx([5.4])
    assert res.steps["bytes_cxl_to_gpu"][0] == 44


def test_second_token_hits_the_cache_and_pays_more_kv():
    trace = make_trace([[[1]], [[1]]])
    res = run(tiny_scenario("offload-lowbit", trace, cache_capacity=44.0), record_events=True)
    second = [r for r in timeline(res) if r[3] >= 11.52 - 1e-9]
    # token 1: context 1 -> attention bytes 128 + 16 x (1 + 1) = 160 -> 2.6 s; no copy
    assert second == [
        ("GPU", "compute stream", "attention", 11.52, 14.12),
        ("GPU", "compute stream", "router", 14.12, 15.28),
        ("GPU", "compute stream", "expert", 15.28, 16.72),
        ("GPU", "compute stream", "lm head", 16.72, 17.8),
    ]
    assert list(res.steps["cache_hits"]) == [0, 1] and list(res.steps["cache_misses"]) == [1, 0]


def test_ndp_lowbit_splits_the_wait_into_ndp_compute_and_copies():
    res = run(tiny_scenario("ndp-lowbit", make_trace([[[1]]])), record_events=True)
    assert timeline(res) == [
        ("GPU", "compute stream", "attention", 0.0, 2.44),
        ("GPU", "compute stream", "router", 2.44, 3.6),
        ("GPU", "compute stream", "wait ndp", 3.6, 12.6),
        ("link cxl", "from_gpu #0", "activations", 3.6, 5.4),       # 8 B hidden state: 1 + 0.8
        ("NDP", "unit 1", "expert", 5.4, 10.8),                     # int4: max(48/400, 44/10) + 1
        ("link cxl", "to_gpu #0", "result", 10.8, 12.6),
        ("GPU", "compute stream", "lm head", 12.6, 13.68),
    ]
    assert res.steps["expert_ndp"][0] == pytest.approx(5.4)
    assert res.steps["transfer_stall"][0] == pytest.approx(3.6)


def test_two_experts_on_one_unit_queue_and_on_two_units_overlap():
    model = tiny_model(top_k=2, num_experts=3)
    same = run(tiny_scenario("ndp-lowbit", make_trace([[[0, 2]]], num_experts=3), model=model),
               record_events=True)
    ndp = [r for r in timeline(same) if r[0] == "NDP"]
    # 3 experts: router reads 12 x 2 B -> 1.24 s, ends 3.68; activations 3.68 -> 5.48
    assert ndp == [("NDP", "unit 0", "expert", 5.48, 10.88), ("NDP", "unit 0", "expert", 10.88, 16.28)]
    apart = run(tiny_scenario("ndp-lowbit", make_trace([[[0, 1]]], num_experts=3), model=model),
                record_events=True)
    ndp = [r for r in timeline(apart) if r[0] == "NDP"]
    assert ndp == [("NDP", "unit 0", "expert", 5.48, 10.88), ("NDP", "unit 1", "expert", 5.48, 10.88)]
    # the two results share the one to_gpu engine
    copies = [r[3:] for r in timeline(apart) if r[2] == "result"]
    assert copies == [(10.88, 12.68), (12.68, 14.48)]


def test_prefetch_copies_the_next_layer_at_low_priority():
    model = tiny_model(layers=2)
    trace = make_trace([[[1], [0]]])
    res = run(tiny_scenario("offload-lowbit", trace, model=model, cache_capacity=1000.0, prefetch=True),
              record_events=True)
    copies = [r[2:] for r in timeline(res) if r[0] == "link cxl"]
    # layer 0 demand copy at 3.6 (5.4 s); the prefetch of layer 1, expert 0 queues behind it
    assert copies == [("fetch lowbit", 3.6, 9.0), ("prefetch lowbit", 9.0, 14.4)]
    # the prefetched entry's first use is a prefetch hit, not a cache hit
    assert (res.counters["cache_hits"], res.counters["prefetch_hits"]) == (0, 1)
    assert res.counters["prefetch_wasted_bytes"] == 0


def test_wrong_prefetch_wastes_bytes_and_the_right_expert_is_fetched_on_demand():
    model = tiny_model(layers=2)
    res = run(tiny_scenario("offload-lowbit", make_trace([[[1], [0]]]), model=model, cache_capacity=1000.0,
                            prefetch=True, prefetch_hit_rate=0.0))
    assert res.counters["prefetch_wasted_bytes"] == 44 and res.counters["cache_misses"] == 2
    assert res.steps["bytes_cxl_to_gpu"][0] == 3 * 44


def test_compensation_runs_after_the_expert_for_restored_tokens():
    # rank 1 factors: 1 x (4 + 2) x 2 B x 3 matrices = 36 B -> copy 1 + 3.6; FLOPs 2 x 1 x 3 x 6 = 36
    res = run(tiny_scenario("offload-lrc", make_trace([[[1]]]), rank=1, top_n=1), record_events=True)
    rows = [r[2:] for r in timeline(res)]
    assert rows == [("attention", 0.0, 2.44), ("router", 2.44, 3.6), ("wait copy", 3.6, 9.0),
                    ("fetch lowbit", 3.6, 9.0), ("expert", 9.0, 10.44), ("fetch factors", 9.0, 13.6),
                    ("wait copy", 10.44, 13.6), ("compensation", 13.6, 14.96), ("lm head", 14.96, 16.04)]
    assert res.steps["compensation"][0] == pytest.approx(1.36)


def _closed_form_system(name: str, engines: int):
    system = load_system(name)
    links = [link.model_copy(update={"dma_engines": engines}) for link in system.links]
    ndp = system.ndp.model_copy(update={"units": 64}) if system.ndp is not None else None
    return system.model_copy(update={"links": links, "ndp": ndp})


@pytest.mark.parametrize("policy", ["offload-lowbit", "gpu-resident", "ndp-lowbit"])
def test_step_time_is_the_hand_sum_of_roofline_and_transfer_times(policy):
    """DeepSeek-V2-Lite on the real trace, batch 1, no cache, a copy engine and an NDP unit per expert:
    nothing queues except bytes on the wire, which the hand sum serializes."""
    model = load_model("deepseek-v2-lite")
    trace = load_trace("traces/esft-intent")
    system = _closed_form_system("h100-cxl-ndp", engines=model.top_k)
    spec = RunSpec(policy=policy, bits=4, top_n=0)
    sizes = expert_sizes(spec, model, compensates=False)
    sc = Scenario(system=system, model=model, trace=trace, policy=get_policy(policy), sizes=sizes,
                  cache_capacity=0.0, free_hbm=1e12, steps=3, context=512)
    res = run(sc)
    gpu, link, ndp, k = system.gpu, system.link_to("cxl"), system.ndp, model.top_k
    for step in range(3):
        ctx = 512 + int(trace.position[step])
        att = costs.gpu_time(gpu, *costs.attention_work(model, 1, ctx))
        expert = costs.gpu_time(gpu, *costs.expert_work(model, 1, sizes.lowbit[0, 0]))
        shared = costs.gpu_time(gpu, *costs.shared_work(model, 1))
        copy = costs.wire_time(link, "to_gpu", sizes.lowbit[0, 0])
        if policy == "offload-lowbit":  # k copies share the wire; the GPU takes each expert as it lands
            t = max(shared, link.latency + copy) + expert
            for i in range(2, k + 1):
                t = max(t, link.latency + i * copy) + expert
            moe = t
        elif policy == "gpu-resident":
            moe = shared + k * expert
        else:  # k NDP units in parallel; their k outputs share the to_gpu wire
            ndp_op = costs.ndp_time(ndp, *costs.expert_work(model, 1, sizes.lowbit[0, 0]), 4)
            moe = max(shared, costs.link_time(link, "from_gpu", model.hidden * 2) + ndp_op
                      + link.latency + k * costs.wire_time(link, "to_gpu", model.hidden * 2))
        expected = (model.layers * att + costs.gpu_time(gpu, *costs.dense_ffn_work(model, 1))
                    + model.moe_layers * (costs.gpu_time(gpu, *costs.router_work(model, 1)) + moe)
                    + costs.gpu_time(gpu, *costs.lm_head_work(model, 1)))
        got = res.steps["end_s"][step] - res.steps["start_s"][step]
        assert got == pytest.approx(expected, rel=1e-12)


def test_loads_block_layer_holds_cached_experts_until_the_layers_loads_arrive():
    """Two tokens, 3 experts, top-2, cache of two 44 B experts: token 1 hits expert 0 and loads expert 2.
    Overlapped (default), expert 0 runs during the copy; blocking (loads on the compute stream), both wait."""
    model = tiny_model(top_k=2, num_experts=3)
    trace = make_trace([[[0, 1]], [[0, 2]]], num_experts=3)

    def token1(block: bool) -> list:
        res = run(tiny_scenario("offload-lowbit", trace, model=model, cache_capacity=88.0, loads_block_layer=block),
                  record_events=True)
        return [r for r in timeline(res) if r[3] >= res.steps["start_s"][1] - 1e-9]

    # overlapped: token 0 ends at 17.0 (copies 5.4 s each, one engine); attention 2.6 s at context 1,
    # router 1.24 s over 3 experts, copy 1 + 44 / 10 = 5.4 s, expert 1.44 s, LM head 1.08 s
    assert token1(False) == [
        ("GPU", "compute stream", "attention", 17.0, 19.6),
        ("GPU", "compute stream", "router", 19.6, 20.84),
        ("GPU", "compute stream", "expert", 20.84, 22.28),
        ("link cxl", "to_gpu #0", "fetch lowbit", 20.84, 26.24),
        ("GPU", "compute stream", "wait copy", 22.28, 26.24),
        ("GPU", "compute stream", "expert", 26.24, 27.68),
        ("GPU", "compute stream", "lm head", 27.68, 28.76),
    ]
    # blocking: token 0 also runs its first expert only after both copies (ends 18.44)
    assert token1(True) == [
        ("GPU", "compute stream", "attention", 18.44, 21.04),
        ("GPU", "compute stream", "router", 21.04, 22.28),
        ("GPU", "compute stream", "wait copy", 22.28, 27.68),
        ("link cxl", "to_gpu #0", "fetch lowbit", 22.28, 27.68),
        ("GPU", "compute stream", "expert", 27.68, 29.12),
        ("GPU", "compute stream", "expert", 29.12, 30.56),
        ("GPU", "compute stream", "lm head", 30.56, 31.64),
    ]


def test_unfused_dequantization_adds_hbm_traffic_per_low_bit_weight():
    """1 extra byte per expert weight (24 weights): 44 + 24 = 68 B -> 1.68 s; attention at 4 bits/group 4
    stores 96 B, plus 0.25 B x 64 weights and 16 B of KV = 128 B -> 2.28 s (2.12 s fused). Full-precision
    experts pay none."""
    res = run(tiny_scenario("offload-lowbit", make_trace([[[1]]]), attention_bits=4, dequant_bytes_per_weight=1.0,
                            attention_dequant_bytes_per_weight=0.25), record_events=True)
    gpu = [r[2:] for r in timeline(res) if r[0] == "GPU"]
    assert gpu == [("attention", 0.0, 2.28), ("router", 2.28, 3.44), ("wait copy", 3.44, 8.84),
                   ("expert", 8.84, 10.52), ("lm head", 10.52, 11.6)]
    fp16 = run(tiny_scenario("offload-fp16", make_trace([[[1]]]), dequant_bytes_per_weight=1.0), record_events=True)
    assert [r[3:] for r in timeline(fp16) if r[2] == "expert"] == [(9.4, 10.88)]   # 48 B / 100 + 1


def test_loads_on_the_compute_stream_hold_the_shared_experts_too():
    """One token, a shared expert, the routed expert copied (1 + 44 / 10 = 5.4 s): overlapped, the shared
    expert (16-bit, 48 B / 100 B/s + 1 s = 1.48 s) runs during the copy; on one in-order stream (loads on the
    compute stream) it runs only after it."""
    model = tiny_model(shared_experts=1)
    trace = make_trace([[[1]]])

    def moe(block: bool) -> list:
        sc = tiny_scenario("offload-lowbit", trace, model=model, loads_block_layer=block)
        des = run(sc, record_events=True)
        fast = run_analytic(tiny_scenario("offload-lowbit", trace, model=model, loads_block_layer=block))
        assert list(fast.steps["end_s"]) == list(des.steps["end_s"])  # both timers, bit for bit
        return [r[2:] for r in timeline(des) if r[2] in ("shared experts", "wait copy", "expert")]

    # attention 1.44 + 1 = 2.44 s, router 0.16 + 1 = 1.16 s: the copy starts at 3.6; expert 0.44 + 1 = 1.44 s
    assert moe(False) == [("shared experts", 3.6, 5.08), ("wait copy", 5.08, 9.0), ("expert", 9.0, 10.44)]
    assert moe(True) == [("wait copy", 3.6, 9.0), ("shared experts", 9.0, 10.48), ("expert", 10.48, 11.92)]
