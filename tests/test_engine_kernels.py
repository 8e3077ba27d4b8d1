"""Per-op kernel launches (RunSpec.kernels_*): each launch adds the GPU's launch_overhead, in the DES and
the analytic path alike.

Tiny system (tests/engine_tiny.py, launch_overhead 1 s): attention 144 B / 100 = 1.44 s of memory time,
router 0.16 s, expert 0.44 s, LM head 0.08 s, copy 1 + 44 / 10 = 5.4 s.
"""

import pytest

from simulator.des.engine import run
from simulator.fast.engine import run as run_analytic
from tests.engine_tiny import make_trace, timeline, tiny_scenario

KERNELS = {"attention": 2.0, "router": 3.0, "expert": 4.0, "other": 5.0}


def test_each_launch_adds_the_launch_overhead():
    res = run(tiny_scenario("offload-lowbit", make_trace([[[1]]]), kernels=KERNELS), record_events=True)
    assert [r[2:] for r in timeline(res)] == [
        ("attention", 0.0, 3.44),         # 1.44 + 2 x 1
        ("router", 3.44, 6.6),            # 0.16 + 3 x 1
        ("wait copy", 6.6, 12.0),
        ("fetch lowbit", 6.6, 12.0),
        ("expert", 12.0, 16.44),          # 0.44 + 4 x 1
        ("lm head", 16.44, 21.52),        # 0.08 + 5 x 1
    ]


def test_analytic_path_charges_the_same_launches():
    trace = make_trace([[[1]], [[0]], [[1]]])
    des = run(tiny_scenario("offload-lowbit", trace, cache_capacity=44.0, kernels=KERNELS))
    fast = run_analytic(tiny_scenario("offload-lowbit", trace, cache_capacity=44.0, kernels=KERNELS))
    assert list(fast.steps["end_s"]) == pytest.approx(list(des.steps["end_s"]))
    assert des.steps["end_s"][0] == pytest.approx(21.52)
