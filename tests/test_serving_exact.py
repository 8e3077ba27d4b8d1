"""The serving loop on tiny cases with fixed step costs: every admission, TTFT, TPOT and finish by hand."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.serving.kv import KVBudget
from simulator.serving.metrics import request_table
from simulator.serving.runner import serve_loop
from simulator.serving.scheduler import Scheduler
from simulator.serving.timers import FixedCostTimer
from simulator.workloads.table import Workload


def run(arrival, prompt, output, cost, *, max_batch=2, max_tokens=4, kv_tokens=10_000, block=1, chunked=True):
    w = Workload(np.array(arrival, dtype=float), np.array(prompt), np.array(output), "hand")
    kv = KVBudget(kv_tokens * 1.0, 1.0, block)
    sched = Scheduler(w.arrival_s, w.prompt, w.output, max_batch, max_tokens, kv)
    steps, t = serve_loop(w, sched, FixedCostTimer(cost), chunked=chunked)
    req = request_table(w.arrival_s, t["admitted"], t["first"], t["finish"], w.prompt, w.output, 5.0, 1.0)
    return steps, req


@pytest.mark.parametrize("chunked", [True, False])
def test_two_requests_chunked_prefill_by_hand(chunked):
    # A arrives at 0 (prompt 6, output 3), B at 1.5 (prompt 2, output 2); a step costs 1 s + 0.5 s per prefill token
    # step 0 [0, 3]:  A prefill tokens 0-3 (4 tokens)                 B arrives meanwhile
    # step 1 [3, 6]:  A prefill 4-5, B admitted, B prefill 0-1        A and B first token at 6
    # step 2 [6, 7]:  decode A (pos 6), B (pos 2)                      B finishes (2 tokens)
    # step 3 [7, 8]:  decode A (pos 7)                                 A finishes (3 tokens)
    steps, req = run([0.0, 1.5], [6, 2], [3, 2], lambda d, p: 1.0 + 0.5 * p, chunked=chunked)
    assert steps["start_s"].tolist() == [0, 3, 6, 7]
    assert steps["end_s"].tolist() == [3, 6, 7, 8]
    assert steps["decode_tokens"].tolist() == [0, 0, 2, 1]
    assert steps["prefill_tokens"].tolist() == [4, 4, 0, 0]
    assert steps["batch"].tolist() == [1, 2, 2, 1]
    assert req["admitted_s"].tolist() == [0, 3]
    assert req["first_token_s"].tolist() == [6, 6]
    assert req["finish_s"].tolist() == [8, 7]
    assert req["ttft_s"].tolist() == [6, 4.5]
    assert req["tpot_s"].tolist() == [1, 1]     # A: (8 - 6) / 2, B: (7 - 6) / 1
    assert req["queue_s"].tolist() == [0, 1.5]
    assert req["within_slo"].tolist() == [False, True]  # SLO TTFT 5 s, TPOT 1 s


def test_plan_positions_are_contexts():
    w = Workload(np.array([0.0, 0.5]), np.array([6, 2]), np.array([3, 2]), "hand")
    sched = Scheduler(w.arrival_s, w.prompt, w.output, 2, 4, KVBudget(1e4, 1.0, 1))
    sched.arrive(1.0)
    plan = sched.plan(10)
    # step 0: both admitted: A's first 4 prompt tokens; step 1: A's last 2, B's 2; then decodes
    assert plan.lens.tolist() == [4, 4, 2, 1]
    assert plan.tok_req.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0]
    assert plan.tok_pos.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 6, 2, 7]
    assert plan.first == [(1, 0), (1, 1)] and plan.finished == [(2, 1), (3, 0)]


def test_full_kv_makes_admission_wait():
    # KV holds 8 tokens: A (4 + 2) fits, B (3 + 2) does not until A finishes; steps cost 1 s each
    # step 0 [0,1] A prefill 4 -> first token 1; step 1 [1,2] A decode -> finish 2; B admitted at 2
    # step 2 [2,3] B prefill 3 -> first token 3; step 3 [3,4] B decode -> finish 4
    steps, req = run([0.0, 0.1], [4, 3], [2, 2], lambda d, p: 1.0, kv_tokens=8)
    assert req["admitted_s"].tolist() == [0, 2]
    assert req["first_token_s"].tolist() == [1, 3]
    assert req["finish_s"].tolist() == [2, 4]
    assert (steps["kv_bytes"] <= 8).all() and steps["kv_bytes"].tolist() == [6, 6, 5, 5]
    assert steps["waiting"].tolist() == [0, 1, 0, 0]  # B arrives after step 0 starts


def test_kv_blocks_round_up():
    kv = KVBudget(64.0, 1.0, 16)  # 4 blocks of 16 tokens
    assert kv.blocks(17) == 2 and kv.fits_ever(64) and not kv.fits_ever(65)
    got = kv.reserve(17)
    assert kv.used_bytes == 32 and not kv.can_reserve(33)
    kv.free(got)
    assert kv.free_blocks == 4


def test_idle_gap_jumps_to_the_next_arrival():
    steps, req = run([0.0, 10.0], [2, 2], [1, 2], lambda d, p: 1.0)
    assert req["finish_s"].tolist() == [1, 12]
    assert req["ttft_s"].tolist() == [1, 1]
    assert np.isnan(req["tpot_s"][0])  # one output token: no TPOT, within the SLO by TTFT alone
    assert steps["start_s"].tolist() == [0, 10, 11]


def test_max_batch_limits_running_requests():
    steps, req = run([0.0, 0.1, 0.2], [1, 1, 1], [3, 3, 3], lambda d, p: 1.0, max_batch=2)
    assert (steps["batch"] <= 2).all()
    assert req["admitted_s"].tolist() == [0, 1, 3]  # C waits for A's finish (end of step 2 at 3)
