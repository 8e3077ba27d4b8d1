"""The analytic fast path against the DES: same cost model, so the same answers.

Uncontended configurations (no prefetch: every copy and NDP op of a layer ends within the layer) must
be the DES's bit for bit; contended ones (prefetch spilling across layers) are reported with their
error and held to a loose bound.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.config.run import RunSpec
from simulator.des import engine
from simulator.fast import engine as analytic
from simulator.simulate import build_scenario, simulate

UNCONTENDED = [
    {"policy": "ndp-lrc", "tokens": 24},
    {"policy": "ndp-lowbit", "tokens": 24},
    {"policy": "ndp-hot", "tokens": 24},
    {"policy": "ndp-lrc", "batch": 4, "tokens": 12},
    {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 8, "tokens": 24},
    {"policy": "offload-lowbit", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 4, "tokens": 24},
    {"policy": "offload-mixed", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 4, "tokens": 24},
    {"policy": "offload-fp16", "hwconfig": "a100-pcie4", "cache_experts_per_layer": 8, "cache_policy": "lfu", "tokens": 16},
    {"policy": "gpu-resident", "hwconfig": "h100-pcie5", "tokens": 16, "prompt": 8},
    {"policy": "offload-lowbit", "hwconfig": "t4-pcie3", "model": "mixtral-8x7b", "trace": None, "synthetic_tokens": 32,
         "bits": 2, "group": 32, "attention_bits": 4, "cache_experts_per_layer": 2, "tokens": 32},
    # the validated software stack: loads on the compute stream, unfused dequantization traffic
    {"policy": "offload-lrc", "hwconfig": "rtx3060-pcie3", "model": "mixtral-8x7b", "trace": None,
         "synthetic_tokens": 32, "bits": 2, "group": 32, "attention_bits": 4, "cache_experts_per_layer": 2,
         "tokens": 32, "runtime": "mixtral-offloading"},
]


COMPUTE_STREAM = str(Path(__file__).parent / "runtimes" / "fused-compute-stream.yaml")  # loads block the layer


def _both(kw):
    spec = RunSpec(**kw)
    return simulate(spec), simulate(spec.model_copy(update={"engine": "analytic"}))


@pytest.mark.parametrize("kw", UNCONTENDED, ids=lambda kw: f"{kw['policy']}-{kw.get('hwconfig', 'ndp')}")
def test_uncontended_is_the_des_bit_for_bit(kw):
    """Nothing contends across layers: the analytic kernel runs the DES's clock through the same ops in
    the same order, so every per-step column and counter is the DES's, bit for bit; run totals summed in
    another order (link and GPU busy time) agree to rounding."""
    spec = RunSpec(**kw)
    des, ana = engine.run(build_scenario(spec)), analytic.run(build_scenario(spec))
    assert ana.steps.keys() == des.steps.keys()
    for col in des.steps:
        assert list(ana.steps[col]) == list(des.steps[col]), col
    assert (ana.decode_time, ana.prefill_time) == (des.decode_time, des.prefill_time)
    assert ana.counters == des.counters
    assert ana.ndp_busy == pytest.approx(des.ndp_busy, rel=1e-12)
    assert ana.gpu_busy == pytest.approx(des.gpu_busy, rel=1e-12)
    for link, by_dir in des.link_busy.items():
        assert ana.link_busy[link] == pytest.approx(by_dir, rel=1e-12), link


# simulator.prefetch; previous-token copies only what the cache lost since the previous token (a per-layer
# cache of >= k experts keeps a batch-1 token's experts): a shared cache smaller than a step's experts
PREFETCHERS = {"previous-token": {"prefetcher": "previous-token", "cache_experts_per_layer": None, "cache_bytes": 5e8},
               "transitions": {"prefetcher": "transitions", "prefetch_calibration_tokens": 64, "prefetch_successors": 2},
               "recall-calibrated": {"prefetcher": "recall", "prefetch_calibration_tokens": 64}}


@pytest.mark.parametrize("extra", [{}, {"runtime": COMPUTE_STREAM},
                                   {"cache_policy": "lfu"},
                                   {"policy": "offload-mixed"},             # replayed: placement reads the cache
                                   *PREFETCHERS.values(),
                                   {"policy": "offload-mixed", **PREFETCHERS["previous-token"]}],
                         ids=["overlapped", "loads-block-layer", "lfu", "mixed-replay", *PREFETCHERS, "mixed-previous"])
def test_contended_prefetch_error_is_reported_and_small(capsys, extra):
    des, ana = _both({"policy": "offload-lrc", "hwconfig": "h100-pcie5", "cache_experts_per_layer": 8,
                      "prefetch": True, "prefetch_hit_rate": 0.8, "tokens": 24, **extra})
    err = ana["tokens_per_s"] / des["tokens_per_s"] - 1
    with capsys.disabled():
        print(f"\nanalytic vs DES, offload-lrc + prefetch (contended link) {extra}: {err:+.2%}")
    for key in ("cache_hits", "prefetch_hits", "cache_misses", "prefetch_bytes", "prefetch_wasted_bytes"):
        assert ana[key] == des[key], key
    assert des["prefetch_bytes"] > 0
    assert abs(err) < 0.05


MODEL_CASES = [
    {"policy": "ndp-lrc", "hwconfig": "h100-cxl-ndp", "batch": 4},
    {"policy": "offload-mixed", "hwconfig": "a100-pcie4", "batch": 3, "cache_policy": "lfu", "prompt": 8},
    {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "batch": 16, "prefetch": True, "prefetch_hit_rate": 0.5},
    {"policy": "offload-lrc", "hwconfig": "h100-pcie5", "batch": 4, "prefetch": True, "prefetcher": "transitions",
     "prefetch_calibration_tokens": 32},
]


@pytest.mark.parametrize("model", ["mixtral-8x7b", "olmoe-1b-7b", "qwen3-30b-a3b"])  # 8, 64, 128 experts
@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: f"{c['policy']}-{c.get('prefetcher', '')}")
def test_every_model_preset_agrees(model, case):
    """Expert counts below, at and above one 64-bit word, batches up to 16, every cache and prefetch: the
    same counters as the DES, times within float rounding (1% bound with prefetch)."""
    des, ana = _both({"model": model, "trace": None, "synthetic_tokens": 128, "tokens": 24, **case})
    for key in ("cache_hits", "prefetch_hits", "cache_misses", "cache_evictions", "prefetch_bytes",
                "prefetch_wasted_bytes", "fetched_bytes", "experts_gpu_per_step", "experts_ndp_per_step"):
        assert ana[key] == des[key], key
    if case.get("prefetch"):
        assert ana["tokens_per_s"] == pytest.approx(des["tokens_per_s"], rel=0.01)
    else:
        assert ana["tokens_per_s"] == des["tokens_per_s"]
