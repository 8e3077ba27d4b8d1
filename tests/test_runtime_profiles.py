"""Runtime profiles on disk: the shipped ones load and say where their figures come from; a bad profile or
an unknown name is one line naming the file and the field (exit 2); copies from pageable memory need the
link's pageable figure; RunSpec's cache and prefetch flags override the profile's."""

from __future__ import annotations

import pytest
import yaml

from simulator.cli import main
from simulator.config.run import RunSpec
from simulator.config.runtime import RUNTIME_DIR, list_runtimes, load_runtime
from simulator.errors import UserError
from simulator.simulate import build_scenario


def test_the_shipped_profiles_load_and_cite_their_sources():
    assert {"fused", "mixtral-offloading", "vllm"} <= set(list_runtimes())
    for name in list_runtimes():
        rt = load_runtime(name)
        assert rt.name == name and rt.source.strip()
        text = (RUNTIME_DIR / f"{name}.yaml").read_text()
        assert text.count("#") >= 5, f"{name}: every figure carries its source or says it is an assumption"


def test_fused_is_the_one_kernel_bound_the_defaults_always_were():
    sc = build_scenario(RunSpec(tokens=2))
    assert sc.runtime.name == "fused"
    assert set(sc.op_overhead.values()) == {sc.system.gpu.launch_overhead}
    assert (sc.loads_block_layer, sc.dequant_bytes_per_weight, sc.cache_policy, sc.prefetch) == (False, 0.0, "lru", False)
    assert set(sc.dequant_efficiency) == {1.0}


def _profile(tmp_path, **changes):
    data = yaml.safe_load((RUNTIME_DIR / "mixtral-offloading.yaml").read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[leaf] = value
    path = tmp_path / "rt.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("change, field", [
    ({"host.per_kernel": "29 furlongs"}, "host.per_kernel"),
    ({"host.per_kernel": "-3 us"}, "host.per_kernel"),
    ({"kernels.expert": -1}, "kernels.expert"),
    ({"copies.stream": "sideways"}, "copies.stream"),
    ({"dequant.efficiency": {3: 1.5}}, "dequant.efficiency.3"),
    ({"cache": "fifo"}, "cache"),
])
def test_a_bad_profile_is_one_line_naming_file_and_field(tmp_path, capsys, change, field):
    path = _profile(tmp_path, **{k.replace("__", "."): v for k, v in change.items()})
    assert main(["simulate", "rtx3060-pcie3", "--policy", "offload-lowbit", "--runtime", str(path), "--tokens", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"moesim simulate: error: {path}: {field}"), err


def test_pageable_copies_need_the_links_pageable_bandwidth(tmp_path):
    path = _profile(tmp_path, **{"copies.host_memory": "pageable"})
    with pytest.raises(UserError, match="pageable_bandwidth_to_gpu") as exc:
        build_scenario(RunSpec(hwconfig="rtx3060-pcie3", policy="offload-lowbit", runtime=str(path), tokens=1))
    assert exc.value.render().startswith("rtx3060-pcie3: links.pcie: ")


def test_pageable_copies_run_at_the_pageable_figure(tmp_path):
    from simulator.config.system import load_system

    path = _profile(tmp_path, **{"copies.host_memory": "pageable"})
    raw = load_system("rtx3060-pcie3").model_dump()
    raw["links"][0]["pageable_bandwidth_to_gpu"] = "6 GB/s"
    hw = tmp_path / "hw.yaml"
    hw.write_text(yaml.safe_dump(raw))
    sc = build_scenario(RunSpec(hwconfig=str(hw), policy="offload-lowbit", runtime=str(path), tokens=1))
    assert sc.system.links[0].bandwidth_to_gpu == 6e9 and sc.system.links[0].bandwidth_from_gpu == 12e9


def test_run_flags_override_the_profiles_cache_and_prefetch():
    spec = RunSpec(hwconfig="rtx3060-pcie3", policy="offload-lowbit", runtime="mixtral-offloading", tokens=1)
    sc = build_scenario(spec)
    assert (sc.cache_policy, sc.prefetch, sc.prefetch_hit_rate) == ("lru", False, 0.85)
    sc = build_scenario(spec.model_copy(update={"cache_policy": "lfu", "prefetch": True, "prefetch_hit_rate": 0.5}))
    assert (sc.cache_policy, sc.prefetch, sc.prefetch_hit_rate) == ("lfu", True, 0.5)
