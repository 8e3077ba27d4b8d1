"""previous-token guesses only from a token that ran in an earlier step: not from an earlier token of the same
prefill (same forward pass: its layer l+1 is not routed when layer l guesses), and in serving from the
request's own previous token, not a neighbour's in the step."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import prefetch as prefetchers
from simulator.config.run import RunSpec
from simulator.config.serve import ServeSpec
from simulator.serving.routing import RequestRouting
from simulator.serving.runner import serve
from tests.engine_tiny import make_trace


def test_a_previous_token_in_the_same_step_does_not_count():
    seq, pos = np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 4, 5])
    assert prefetchers.previous_in_same_step(seq, pos, np.array([5])).tolist() == [False, True, True, False, True]
    assert not prefetchers.previous_in_same_step(seq, pos, np.array([1, 1, 1, 1, 1])).any()
    # a prefill step [0, 1, 2] of sequence 0 then decode steps: only the decode tokens see their previous one
    assert prefetchers.previous_in_same_step(np.array([0, 0, 0, 0]), np.array([0, 1, 2, 3]),
                                             np.array([3, 1])).tolist() == [False, True, True, False]


def test_predicted_rows_of_a_prefill_and_of_decode_steps():
    trace = make_trace([[[1], [0]], [[0], [1]], [[1], [1]]], num_experts=2)  # one sequence, 3 tokens, 2 layers
    idx = np.arange(3)
    one_step, _ = prefetchers.predicted(trace, idx, prefetchers.PREVIOUS, None, 0, np.array([3]))
    steps, _ = prefetchers.predicted(trace, idx, prefetchers.PREVIOUS, None, 0, np.array([1, 1, 1]))
    assert (one_step[:, 1] == -1).all()                   # the prefill's tokens guess nothing from each other
    assert steps[:, 1, 0].tolist() == [-1, 0, 1]          # decode: layer 1 of the token before
    assert (steps[:, 0] == -1).all()                      # layer 0 is never guessed


def test_serving_view_reads_the_requests_own_previous_token():
    trace = make_trace([[[0]], [[1]], [[0]], [[1]]], seq_id=[0, 0, 1, 1], num_experts=2)
    routing = RequestRouting(trace, 2)
    view = routing.view(np.array([1, 0]), np.array([1, 1]))  # request 1 then request 0, both at position 1
    assert view.seq_id.tolist() == [1, 0]
    assert view.previous_ids[:, 0, 0].tolist() == [0, 0]     # each request's own token 0 (trace tokens 2, 0)
    assert view.expert_ids[:, 0, 0].tolist() == [1, 1]


@pytest.mark.parametrize("hw,policy", [("h100-pcie5", "offload-lrc")])
def test_serving_with_previous_token_both_timers_agree(hw, policy):
    spec = ServeSpec(duration=3.0, start=600.0, max_tokens_per_step=128)
    kw = {"hwconfig": hw, "policy": policy, "cache_bytes": 2e9, "prefetcher": "previous-token"}
    a = serve(RunSpec(engine="analytic", **kw), spec)
    d = serve(RunSpec(engine="des", **kw), spec)
    assert len(a.requests) == len(d.requests) > 3
    for col in ("cache_hits", "prefetch_hits", "cache_misses"):
        np.testing.assert_array_equal(a.steps[col], d.steps[col])
    assert a.steps["prefetch_hits"].sum() > 0
    np.testing.assert_allclose(a.requests["finish_s"], d.requests["finish_s"], rtol=0.05)
