"""Runtime profiles' per-op overheads (simulator.config.runtime): kernels x (GPU launch + host issue time
scaled by the host CPU) + syncs on the router, in the DES and the analytic path alike.

Tiny system (tests/engine_tiny.py, launch_overhead 1 s): attention 144 B / 100 = 1.44 s of memory time,
router 0.16 s, expert 0.44 s, LM head 0.08 s, copy 1 + 44 / 10 = 5.4 s. The profile below states 0.5 s of
host time per kernel and 0.25 s per sync on a reference CPU rated 2; the tiny host's CPU is rated 1, so
each kernel costs 1 s (GPU) + 1 s (host) = 2 s and each sync 0.5 s.
"""

import pytest

from simulator.config.runtime import Runtime
from simulator.config.system import SystemSpec
from simulator.des.engine import run
from simulator.errors import UserError
from simulator.fast.engine import run as run_analytic
from tests.engine_tiny import make_trace, timeline, tiny_scenario, tiny_system

PROFILE = {
    "name": "eager-test", "source": "test", "cache": "lru", "prefetch": {"kind": "none"},
    "host": {"reference_cpu": "ref", "reference_single_thread": 2, "per_kernel": "0.5 s", "per_sync": "0.25 s",
             "on_critical_path": True},
    "kernels": {"attention": 2, "router": 3, "expert": 4, "compensation": 1, "other": 5},
    "syncs_per_moe_layer": 1, "copies": {"host_memory": "pinned", "stream": "copy"},
}


def _system(rating: float = 1.0):
    raw = tiny_system().model_dump()
    raw["host"]["cpu"] = {"name": "slow", "single_thread": rating}
    return SystemSpec.model_validate(raw)


def _scenario(trace, runtime: Runtime, **kw):
    system = _system()
    return tiny_scenario("offload-lowbit", trace, system=system, op_overhead=runtime.op_overhead(system), **kw)


def test_each_kernel_adds_launch_and_host_time_and_the_router_the_syncs():
    res = run(_scenario(make_trace([[[1]]]), Runtime.model_validate(PROFILE)), record_events=True)
    assert [r[2:] for r in timeline(res)] == [
        ("attention", 0.0, 5.44),         # 1.44 + 2 x 2
        ("router", 5.44, 12.1),           # 0.16 + 3 x 2 + 1 sync x 0.5
        ("wait copy", 12.1, 17.5),
        ("fetch lowbit", 12.1, 17.5),
        ("expert", 17.5, 25.94),          # 0.44 + 4 x 2
        ("lm head", 25.94, 36.02),        # 0.08 + 5 x 2
    ]


def test_a_host_off_the_critical_path_costs_only_the_gpu_launch():
    hidden = Runtime.model_validate({**PROFILE, "host": {**PROFILE["host"], "on_critical_path": False}})
    assert hidden.op_overhead(_system()) == {"attention": 2.0, "router": 3.0, "expert": 4.0, "compensation": 1.0,
                                             "other": 5.0}


def test_a_faster_host_cpu_shortens_the_host_part_in_proportion():
    rt = Runtime.model_validate(PROFILE)
    assert rt.op_overhead(_system(rating=4.0))["expert"] == pytest.approx(4 * (1 + 0.5 * 2 / 4))
    assert rt.op_overhead(_system(rating=4.0))["router"] == pytest.approx(3 * 1.25 + 0.25 * 2 / 4)


def test_host_time_on_the_critical_path_needs_the_host_cpu():
    with pytest.raises(UserError, match="host.cpu"):
        Runtime.model_validate(PROFILE).op_overhead(tiny_system())


def test_analytic_path_charges_the_same_overheads():
    trace = make_trace([[[1]], [[0]], [[1]]])
    rt = Runtime.model_validate(PROFILE)
    des = run(_scenario(trace, rt, cache_capacity=44.0))
    fast = run_analytic(_scenario(trace, rt, cache_capacity=44.0))
    assert list(fast.steps["end_s"]) == pytest.approx(list(des.steps["end_s"]))
    assert des.steps["end_s"][0] == pytest.approx(36.02)
