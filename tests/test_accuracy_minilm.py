"""The one test on the real shipped weights (MoEfied all-MiniLM-L6-v2): invariants, not timings."""

import pytest
from accuracy_threads import one_thread  # noqa: F401

from simulator.accounting import expert_factor_bytes, expert_lowbit_bytes
from simulator.accuracy.api import evaluate, open_source
from simulator.accuracy.minilm import routing_trace
from simulator.config.model import load_model
from simulator.routing.trace import check_trace_matches_model, validate_arrays


@pytest.fixture(scope="module")
def source():
    return open_source("minilm")


def test_minilm_compensation_restoration_and_trace(source):
    assert source.layers == 6 and source.layer(0).num_experts == 16
    groups = source.model.neurons[0]
    assert sorted(groups.reshape(-1).tolist()) == list(range(1536))  # a partition into 16 x 96 neurons
    full = evaluate("minilm", bits=3, group=128, rank_budget=96, alloc="uniform", top_n=4)
    none = evaluate("minilm", bits=3, group=128, rank_budget=8, alloc="uniform", top_n=0)
    some = evaluate("minilm", bits=3, group=128, rank_budget=8, alloc="uniform", top_n=4)
    assert full["rel_output_error"] < 2e-3 and full["cosine"] > 0.9999  # full rank restores everything
    assert some["rel_output_error"] < none["rel_output_error"]
    # bytes are charged for the stored factors whatever n is: rank 96 vs 8 = 88 more per matrix (fp16)
    assert none["bytes_per_expert_mean"] == some["bytes_per_expert_mean"] == full["bytes_per_expert_mean"] - \
        88 * 2 * (384 + 96) * 2
    # the plan's bytes are the simulator's for the minilm-moe preset (ungated experts, ffn 96)
    m = load_model("minilm-moe")
    assert none["bytes_per_expert_mean"] == expert_lowbit_bytes(m.hidden, m.expert_ffn, 3, 128, gated=False) + \
        expert_factor_bytes(m.hidden, m.expert_ffn, 8, gated=False) == m.expert_bytes(3, 128) + \
        m.expert_factor_bytes(8)
    trace = routing_trace(source)
    validate_arrays(trace.meta, trace.expert_ids, trace.scores, trace.seq_id, trace.position, "minilm")
    check_trace_matches_model(trace, load_model("minilm-moe"))
