"""Hardware system description: GPU, host memory, links (PCIe / CXL) and optional NDP units.

All quantities are SI floats after validation (bytes, bytes/s, FLOP/s, seconds); the YAML gives strings
with units. A link connects the GPU to one memory ("host" DRAM or "cxl" expander memory); NDP units, if
present, compute inside the CXL memory and reach the GPU over the link whose memory is "cxl".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.config.loading import shipped_dir
from simulator.errors import UserError
from simulator.units import Bandwidth, Bytes, FlopRate, Joules, JoulesPerBit, Seconds, Watts

HWCONFIG_DIR = shipped_dir("hwconfigs")  # the installed copy, or the repository's hwconfigs/ (editable install)

Precision = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GPUSpec(_Strict):
    name: str
    peak_flops: dict[Precision, FlopRate] = Field(description="dense peak per precision")
    hbm_bandwidth: Bandwidth
    hbm_capacity: Bytes = Field(gt=0)
    launch_overhead: Seconds = Field(description="fixed cost added to every kernel")
    compute_efficiency: float = Field(gt=0, le=1, description="fraction of peak FLOP/s reached by GEMMs")
    memory_efficiency: float = Field(gt=0, le=1, description="fraction of HBM bandwidth reached by streaming")
    reserved_memory: Bytes = Field(default=0.0, description="HBM taken by the runtime, activations, workspace")

    @field_validator("peak_flops")
    @classmethod
    def _needs_half(cls, v: dict) -> dict:  # (each rate is > 0: simulator.units.parse_flops)
        if "fp16" not in v and "bf16" not in v:
            raise ValueError("needs at least an fp16 or bf16 entry")
        return v

    def flops(self, precision: str = "fp16") -> float:
        """Peak FLOP/s at `precision`, falling back to the 16-bit figure (dequantised GEMMs run at 16 bit)."""
        return self.peak_flops.get(precision) or self.peak_flops.get("fp16") or self.peak_flops["bf16"]


class CPUSpec(_Strict):
    name: str = Field(min_length=1)
    single_thread: float = Field(gt=0, description="PassMark CPU Mark single-thread rating: scales a runtime "
                                                   "profile's host time per op (simulator.config.runtime)")


class HostSpec(_Strict):
    memory_capacity: Bytes = Field(gt=0)
    memory_bandwidth: Bandwidth
    cpu: CPUSpec | None = Field(default=None, description="the host CPU; needed by runtimes whose host time "
                                                          "is on the critical path")


class LinkSpec(_Strict):
    name: str
    kind: Literal["pcie", "cxl"]
    memory: Literal["host", "cxl"] = Field(description="which memory this link connects the GPU to")
    bandwidth_to_gpu: Bandwidth = Field(description="effective bandwidth, memory -> GPU")
    bandwidth_from_gpu: Bandwidth = Field(description="effective bandwidth, GPU -> memory")
    latency: Seconds
    dma_engines: int = Field(ge=1, description="concurrent transfers per direction")
    pageable_bandwidth_to_gpu: Bandwidth | None = Field(
        default=None, description="memory -> GPU from pageable (not pinned) host memory: the driver stages "
                                  "through a pinned bounce buffer; used by runtimes with pageable copies")


class NDPSpec(_Strict):
    units: int = Field(ge=1)
    peak_flops: dict[Precision, FlopRate] = Field(min_length=1, description="per unit, per supported precision")
    memory_bandwidth: Bandwidth = Field(description="per unit, internal")
    capacity: Bytes = Field(gt=0, description="CXL device memory, all units together")
    op_overhead: Seconds = Field(description="fixed cost per expert op on a unit")
    compute_efficiency: float = Field(default=1.0, gt=0, le=1)
    memory_efficiency: float = Field(default=1.0, gt=0, le=1)

    def flops(self, precision: str) -> float:
        """FLOP/s of one unit at `precision`; an unsupported precision falls back to the best supported."""
        if precision in self.peak_flops:
            return self.peak_flops[precision]
        return max(self.peak_flops.values())


class StaticPower(_Strict):
    gpu: Watts = Field(description="GPU board power while the run lasts and the GPU idles (not per op)")
    ndp: Watts = Field(default=0.0, description="all NDP units together, idle")
    cxl_device: Watts = Field(default=0.0, description="the CXL memory device (controller, DRAM refresh), idle")


class EnergySpec(_Strict):
    """Energy figures of the machine (each sourced in the YAML): dynamic energy per operation and per bit,
    and static (idle) power. simulator.energy turns a run's FLOPs, bytes and time into joules with them."""

    gpu_flop: dict[Precision, Joules] = Field(min_length=1, description="per FLOP of a GPU GEMM, by precision")
    hbm: JoulesPerBit = Field(description="GPU memory (HBM/GDDR) access, per bit read or written")
    host_memory: JoulesPerBit = Field(description="host DRAM access, per bit")
    cxl_memory: JoulesPerBit | None = Field(default=None, description="CXL device memory access, per bit")
    links: dict[str, JoulesPerBit] = Field(min_length=1, description="per link name: energy per bit moved")
    ndp_op: dict[Precision, Joules] = Field(default_factory=dict, description="per NDP operation, by precision")
    static: StaticPower

    def gpu_joules_per_flop(self, precision: str = "fp16") -> float:
        """Energy per FLOP at `precision`, falling back to the 16-bit figure (dequantised GEMMs run at 16 bit)."""
        f = self.gpu_flop
        return f.get(precision) or f.get("fp16") or f.get("bf16") or max(f.values())

    def ndp_joules_per_op(self, precision: str) -> float:
        """Energy per NDP operation at `precision` (an unsupported one: the most expensive given)."""
        return self.ndp_op[precision] if precision in self.ndp_op else max(self.ndp_op.values())


class SystemSpec(_Strict):
    name: str
    description: str = ""
    gpu: GPUSpec
    host: HostSpec
    links: list[LinkSpec] = Field(min_length=1)
    ndp: NDPSpec | None = None
    energy: EnergySpec | None = Field(default=None, description="energy figures; without them no joules")

    @model_validator(mode="after")
    def _consistent(self) -> SystemSpec:
        names = [link.name for link in self.links]
        if len(set(names)) != len(names):
            raise ValueError(f"link names must be unique, got {names}")
        if self.energy is not None:
            missing = [n for n in names if n not in self.energy.links]
            if missing or set(self.energy.links) - set(names):
                raise ValueError(f"energy.links must give one energy per bit for each link, by its name: link "
                                 f"names {names}, given {sorted(self.energy.links)}")
            if self.ndp is not None and (not self.energy.ndp_op or self.energy.cxl_memory is None):
                raise ValueError("a system with ndp units needs energy.ndp_op and energy.cxl_memory")
            if self.expert_memory == "cxl" and self.energy.cxl_memory is None:
                raise ValueError("a system with CXL memory needs energy.cxl_memory")
        if self.ndp is not None and not any(link.memory == "cxl" for link in self.links):
            raise ValueError("a system with ndp units needs a link with memory: cxl")
        return self

    def link_to(self, memory: str) -> LinkSpec:
        """The link that connects the GPU to `memory` ('host' or 'cxl')."""
        for link in self.links:
            if link.memory == memory:
                return link
        raise UserError(f"system {self.name!r} has no link to {memory} memory")

    @property
    def expert_memory(self) -> str:
        """Where offloaded experts live: CXL memory when the system has one, else host DRAM."""
        return "cxl" if any(link.memory == "cxl" for link in self.links) else "host"


def list_hwconfigs() -> list[str]:
    """Names of the shipped hardware configs (file stems in hwconfigs/)."""
    return sorted(p.stem for p in HWCONFIG_DIR.glob("*.yaml"))


def load_system(name_or_path: str | Path) -> SystemSpec:
    """Load a system from a YAML path or the name of a shipped config."""
    from simulator.config.loading import load_named_yaml

    return load_named_yaml(name_or_path, HWCONFIG_DIR, "hardware config", SystemSpec)
