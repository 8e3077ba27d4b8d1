"""Serving on the real timers: the DES and the fast path agree, chunked planning equals step-by-step,
runs are deterministic, and the invariants hold on the real Azure workload with real ESFT routing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator.config.run import RunSpec
from simulator.config.serve import ServeSpec
from simulator.serving.runner import serve

FAST = RunSpec(hwconfig="h100-pcie5", policy="offload-lrc", engine="analytic", cache_bytes=2e9)
WINDOW = ServeSpec(duration=6.0, start=600.0, max_tokens_per_step=256)  # ~20 requests of azure-conv


@pytest.fixture(scope="module")
def fast():
    return serve(FAST, WINDOW)


TIMES = ["admitted_s", "first_token_s", "finish_s"]


@pytest.mark.parametrize("hw,policy", [("h100-pcie5", "offload-lrc"), ("h100-cxl-ndp", "ndp-lrc")])
def test_des_and_fast_path_agree(hw, policy):
    spec = ServeSpec(duration=3.0, start=600.0, max_tokens_per_step=128)
    a = serve(RunSpec(hwconfig=hw, policy=policy, engine="analytic", cache_bytes=2e9), spec)
    d = serve(RunSpec(hwconfig=hw, policy=policy, engine="des", cache_bytes=2e9), spec)
    assert len(a.requests) == len(d.requests) > 3
    for col in TIMES:  # without prefetch the decode engines agree bit for bit; allow rounding of run sums
        np.testing.assert_allclose(a.requests[col], d.requests[col], rtol=1e-9)
    for col in ("tokens", "cache_hits", "cache_misses", "bytes_pcie_to_gpu" if hw == "h100-pcie5" else "experts_ndp"):
        np.testing.assert_array_equal(a.steps[col], d.steps[col])


def test_chunked_planning_equals_step_by_step(fast):
    one = serve(FAST, WINDOW, chunked=False)
    pd.testing.assert_frame_equal(fast.requests, one.requests)
    pd.testing.assert_frame_equal(fast.steps, one.steps)


def test_deterministic(fast):
    again = serve(FAST, WINDOW)
    pd.testing.assert_frame_equal(fast.requests, again.requests)
    pd.testing.assert_frame_equal(fast.steps, again.steps)


def test_invariants_on_the_real_workload(fast):
    req, steps, s = fast.requests, fast.steps, fast.summary
    assert len(req) > 10 and req["finish_s"].notna().all() and req["first_token_s"].notna().all()
    assert s["requests"] == len(req) and req["request"].is_unique
    # every generated token is produced once: the first by the last prefill step, the rest by decodes
    assert int(steps["decode_tokens"].sum()) == int((req["output_tokens"] - 1).sum())
    assert int(steps["prefill_tokens"].sum()) == int(req["prompt_tokens"].sum())
    assert (steps["tokens"] <= WINDOW.max_tokens_per_step).all() and (steps["batch"] <= WINDOW.max_batch).all()
    assert (steps["kv_bytes"] <= s["kv_budget_bytes"]).all()
    assert (steps["start_s"].to_numpy()[1:] >= steps["end_s"].to_numpy()[:-1] - 1e-12).all()
    assert (req["arrival_s"] <= req["admitted_s"]).all() and (req["admitted_s"] < req["first_token_s"]).all()
    assert (req["first_token_s"] <= req["finish_s"]).all()
    # TTFT is at least the prefill of the prompt: the steps that ran its tokens, each no shorter than a
    # step of that many tokens alone, and at least one step
    shortest = float((steps["end_s"] - steps["start_s"]).min())
    chunks = np.ceil(req["prompt_tokens"] / WINDOW.max_tokens_per_step)
    assert (req["ttft_s"] >= chunks * shortest - 1e-12).all()


def test_ttft_at_least_the_prompts_prefill_alone():
    """One request alone: its TTFT is its prefill; the same request among others waits at least as long."""
    spec = ServeSpec(duration=1.0, prompt_tokens=300, output_tokens=4, max_tokens_per_step=128, arrivals="poisson",
                     rate=0.5)
    alone = serve(FAST, spec)
    assert len(alone.requests) == 1
    prefill = alone.steps[alone.steps["prefill_tokens"] > 0]
    assert len(prefill) == 3  # 300 tokens in chunks of 128
    assert alone.requests["ttft_s"][0] == pytest.approx(float(prefill["end_s"].max() - prefill["start_s"].min()))
    busy = serve(FAST, spec.model_copy(update={"rate": 40.0}))
    assert (busy.requests["ttft_s"] >= alone.requests["ttft_s"][0] * (1 - 1e-9)).all()


def test_latency_grows_with_the_rate():
    spec = ServeSpec(duration=4.0, arrivals="poisson", max_tokens_per_step=256)
    low, high = (serve(FAST, spec.model_copy(update={"rate": r})).summary for r in (2.0, 40.0))
    assert high["requests"] > low["requests"]
    assert high["ttft_s"]["p50"] > low["ttft_s"]["p50"]
    assert high["e2e_s"]["p90"] > low["e2e_s"]["p90"]
    assert high["mean_batch"] > low["mean_batch"]
