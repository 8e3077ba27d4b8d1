"""The shipped hwconfigs' energy figures: every box has them, every link has a figure, each GPU's per-FLOP
energy is consistent with its board power, and a bad figure is refused in one line naming file and field."""

from __future__ import annotations

import pytest
import yaml
from file_state import DELETE, set_path

from simulator.cli import main
from simulator.config.system import HWCONFIG_DIR, list_hwconfigs, load_system

BOXES = list_hwconfigs()

# Board power (TDP / total graphics power) of each shipped GPU, in watts, from its datasheet.
TDP_W = {
    "H100 SXM": 700.0,               # NVIDIA H100 Tensor Core GPU datasheet: H100 SXM max TDP up to 700 W
    "H100 PCIe": 350.0,              # NVIDIA H100 datasheet: H100 PCIe (NVL form factor) 300-350 W; the top taken
    "A100 80GB": 400.0,              # NVIDIA A100 datasheet: A100 80GB SXM 400 W (the box's 2.039 TB/s is the SXM's)
    "RTX 4090": 450.0,               # NVIDIA GeForce RTX 4090 specifications: total graphics power 450 W
    "GeForce RTX 3060 12GB": 170.0,  # NVIDIA GeForce RTX 3060 family specifications: graphics card power 170 W
    "Tesla T4": 70.0,                # NVIDIA T4 datasheet: max power consumption 70 W
    "RTX A5000": 230.0,              # NVIDIA RTX A5000 datasheet: max power consumption 230 W
}


def test_every_shipped_hwconfig_has_energy_figures():
    assert set(BOXES) >= {"a100-pcie4", "h100-cxl-ndp", "h100-pcie5", "rtx3060-pcie3", "rtx4090-pcie4", "t4-pcie3"}
    for name in BOXES:
        e = load_system(name).energy
        assert e is not None, f"{name}: no energy section"
        assert e.hbm > 0 and e.host_memory > 0 and e.static.gpu > 0, name
        assert all(v > 0 for v in e.gpu_flop.values()), name


@pytest.mark.parametrize("name", BOXES)
def test_every_link_has_a_figure(name):
    system = load_system(name)
    assert sorted(system.energy.links) == sorted(link.name for link in system.links)
    assert all(v > 0 for v in system.energy.links.values())
    if system.ndp is not None or system.expert_memory == "cxl":
        assert system.energy.cxl_memory and system.energy.cxl_memory > 0
        assert system.energy.ndp_op and all(v > 0 for v in system.energy.ndp_op.values())
        assert system.energy.static.ndp > 0 and system.energy.static.cxl_device > 0


@pytest.mark.parametrize("name", BOXES)
def test_per_flop_energy_fits_the_board_power(name):
    """At the dense peak of every precision the GPU lists: FLOP/s x J/FLOP + HBM at full bandwidth x J/bit
    + static power <= TDP (the arithmetic each hwconfig writes in its comments)."""
    system = load_system(name)
    gpu, e = system.gpu, system.energy
    tdp = TDP_W[gpu.name]
    memory_w = gpu.hbm_bandwidth * 8 * e.hbm
    for precision, rate in gpu.peak_flops.items():
        assert precision in e.gpu_flop, f"{name}: no energy per FLOP for {precision}"
        watts = rate * e.gpu_joules_per_flop(precision) + memory_w + e.static.gpu
        assert watts <= tdp, f"{name} {precision}: {watts:.1f} W at peak > TDP {tdp} W"
        assert watts >= 0.9 * tdp, f"{name} {precision}: {watts:.1f} W at peak, far below TDP {tdp} W"


def _write(tmp_path, data) -> str:
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


BASE = yaml.safe_load((HWCONFIG_DIR / "h100-cxl-ndp.yaml").read_text())
BAD = [
    (("energy", "hbm"), "-3.6 pJ/bit", "energy.hbm"),
    (("energy", "hbm"), None, "energy.hbm"),                 # missing
    (("energy", "gpu_flop", "fp16"), "-0.5 pJ", "energy.gpu_flop.fp16"),
    (("energy", "host_memory"), "17 pJ", "energy.host_memory"),  # no /bit
    (("energy", "links", "cxl"), "-5 pJ/bit", "energy.links.cxl"),
    (("energy", "links", "cxl"), None, "energy.links"),        # a link without a figure
    (("energy", "cxl_memory"), None, "cxl_memory"),            # NDP box without CXL memory energy
    (("energy", "ndp_op", "int4"), "-0.016 pJ", "energy.ndp_op.int4"),
    (("energy", "static", "gpu"), "-70 W", "energy.static.gpu"),
    (("energy", "static", "gpu"), None, "energy.static.gpu"),
    (("energy", "static", "ndp"), "10 J", "energy.static.ndp"),
]


@pytest.mark.parametrize("path, value, field", BAD, ids=[f"{'.'.join(p)}={v!r}" for p, v, _ in BAD])
def test_bad_energy_figure_is_one_line_naming_file_and_field(tmp_path, capsys, path, value, field):
    data = set_path(BASE, path, DELETE if value is None else value)
    hw = _write(tmp_path, data)
    assert main(["simulate", hw, "--tokens", "2", "--json"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "hw.yaml" in lines[0] and field in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
