"""Energy per token (simulator.energy): hand-computed joules on the tiny system, the breakdown adding up,
both timers giving the same joules, and what a missing figure does."""

from __future__ import annotations

import pytest
from engine_tiny import TINY_SYSTEM, make_trace, tiny_scenario

from simulator.config.system import SystemSpec
from simulator.des.engine import run as run_des
from simulator.energy import COMPONENTS
from simulator.fast.engine import run as run_fast
from simulator.metrics import step_table, summarize

# Round binary figures so every product below is exact.
ENERGY = {"gpu_flop": {"fp16": "2 J"}, "hbm": "0.5 J/bit", "host_memory": "1 J/bit", "cxl_memory": "0.25 J/bit",
          "links": {"cxl": "0.125 J/bit"}, "ndp_op": {"int4": "1 J", "int8": "3 J", "fp16": "5 J"},
          "static": {"gpu": "1 W", "ndp": "2 W", "cxl_device": "4 W"}}


def system(**energy) -> SystemSpec:
    return SystemSpec.model_validate({**TINY_SYSTEM, "energy": {**ENERGY, **energy}})


def one_token(policy: str):
    return tiny_scenario(policy, make_trace([[[0]]]), system=system())


def test_offload_lowbit_one_token_by_hand():
    """GPU: attention 128 FLOPs / 144 B (128 B weights + 16 B KV), router 16 / 16, LM head 8 / 8, expert
    GEMM 48 / 44 (4-bit, group 4); the expert's 44 B are copied from CXL memory over the cxl link. The step
    lasts 11.52 s (tests/test_engine_exact.py)."""
    res = run_des(one_token("offload-lowbit"))
    work = {k: res.steps[k][0] for k in ("gpu_flops", "gpu_bytes", "copied_bytes", "ndp_bytes", "ndp_flops_int4")}
    assert work == {"gpu_flops": 200, "gpu_bytes": 212, "copied_bytes": 44, "ndp_bytes": 0, "ndp_flops_int4": 0}
    e = summarize(res)["energy"]
    assert e["breakdown_j_per_token"] == {
        "gpu_compute": 200 * 2.0,
        "gpu_memory": (212 + 44) * 8 * 0.5,          # kernels' bytes + the copy written into HBM
        "link": 44 * 8 * 0.125,
        "host_memory": 0.0,
        "cxl_memory": 44 * 8 * 0.25,                 # the copy read from CXL memory
        "ndp_compute": 0.0,
        "static": (1 + 2 + 4) * res.steps["end_s"][0],
    }
    assert res.steps["end_s"][0] == pytest.approx(11.52)


def test_ndp_lowbit_one_token_by_hand():
    """The expert runs on an NDP unit at int4 (48 FLOPs reading its 44 B in CXL memory); 8 B of activations
    go out and 8 B of result come back over the cxl link."""
    res = run_des(one_token("ndp-lowbit"))
    e = summarize(res)["energy"]["breakdown_j_per_token"]
    assert (res.steps["ndp_flops_int4"][0], res.steps["ndp_bytes"][0], res.steps["gpu_flops"][0]) == (48, 44, 152)
    assert e == {"gpu_compute": 152 * 2.0, "gpu_memory": (168 + 16) * 8 * 0.5, "link": 16 * 8 * 0.125,
                 "host_memory": 0.0, "cxl_memory": 44 * 8 * 0.25, "ndp_compute": 48 * 1.0,
                 "static": 7.0 * res.steps["end_s"][0]}


@pytest.mark.parametrize("policy", ["offload-lowbit", "ndp-lowbit", "gpu-resident", "offload-fp16"])
def test_the_breakdown_adds_up_and_both_timers_give_the_same_joules(policy):
    trace = make_trace([[[0]], [[1]], [[0]], [[1]], [[1]]], seq_id=[0, 0, 1, 1, 1])
    des = summarize(run_des(tiny_scenario(policy, trace, system=system(), batch=2)))["energy"]
    fast = summarize(run_fast(tiny_scenario(policy, trace, system=system(), batch=2)))["energy"]
    assert des == fast
    assert sum(des["breakdown_j_per_token"][k] for k in COMPONENTS) == des["joules_per_token"]
    assert list(des["breakdown_j_per_token"]) == list(COMPONENTS)


def test_a_policy_that_moves_no_bytes_has_no_link_energy():
    e = summarize(run_des(one_token("gpu-resident")))["energy"]["breakdown_j_per_token"]
    assert e["link"] == 0.0 and e["host_memory"] == 0.0 and e["cxl_memory"] == 0.0 and e["gpu_compute"] > 0


def test_link_joules_are_proportional_to_the_bytes_moved():
    for policy in ("offload-lowbit", "offload-fp16", "ndp-lowbit"):
        res = run_des(tiny_scenario(policy, make_trace([[[0]], [[1]]], seq_id=[0, 1]), system=system(), batch=2))
        table = step_table(res)
        moved = table["bytes_cxl_to_gpu"] + table["bytes_cxl_from_gpu"]
        assert (table["energy_link_j"] == moved * 8 * 0.125).all() and moved.sum() > 0


def test_without_energy_figures_there_are_no_joules_not_zeros():
    res = run_des(tiny_scenario("offload-lowbit", make_trace([[[0]]])))
    assert summarize(res)["energy"] is None
    assert not [c for c in step_table(res).columns if c.startswith("energy_")]


@pytest.mark.parametrize("energy, expected", [
    ({"hbm": "-1 J/bit"}, "energy.hbm: Value error, expected a finite non-negative energy per bit"),
    ({"links": {}}, "energy.links: Dictionary should have at least 1 item"),
    ({"links": {"pcie": "1 pJ/bit"}}, "energy.links must give one energy per bit for each link, by its name"),
    ({"cxl_memory": None}, "a system with ndp units needs energy.ndp_op and energy.cxl_memory"),
    ({"static": {"ndp": "1 W"}}, "energy.static.gpu: Field required"),
    ({"gpu_flop": {"fp16": "2 pJ/bit"}}, "unknown energy unit 'pJ/bit'"),
])
def test_a_bad_energy_figure_is_one_line_naming_the_field(tmp_path, capsys, energy, expected):
    import yaml

    from simulator.cli import main

    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump({**TINY_SYSTEM, "energy": {**ENERGY, **energy}}))
    assert main(["simulate", str(path), "--model", "olmoe-1b-7b", "--synthetic-tokens", "4", "--tokens", "1"]) == 2
    _, err = capsys.readouterr()
    assert expected in err and err.count("\n") == 1, err
