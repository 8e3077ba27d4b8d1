"""Runtime profiles: the software stack that runs the model, apart from the machine it runs on.

A hardware config (simulator.config.system) says what the machine can do; a runtime profile (runtimes/*.yaml)
says what a software stack makes of it:

  host       CPU time per kernel issued and per host-device synchronisation, stated on a reference CPU and
             scaled to the hwconfig's host CPU by single-thread performance (time x reference / host), and
             whether that time is on the decode's critical path (an eager stack that syncs every layer) or
             hidden behind the GPU (CUDA graphs, a host that runs ahead)
  kernels    kernels issued per op kind (attention block, router + dispatch, expert, compensation, other)
  syncs      host-device synchronisations per MoE layer (e.g. `.tolist()` of the routed experts)
  copies     pinned or pageable host memory; on their own stream, or on the compute stream (a layer's
             experts then wait for all of the layer's on-demand loads)
  dequant    the dequant-GEMM's share of the HBM bandwidth per code width (odd widths unpack slower), and
             the extra HBM bytes of a stack that dequantizes outside the GEMM
  cache, prefetch   the expert cache's replacement rule and the prefetcher

`Runtime.resolve(system)` turns a profile into the per-op seconds and factors the cost model uses
(simulator.scenario.Scenario); nothing else reads a profile. Every figure in a shipped profile carries its
source (code path at a commit, paper section, or `moesim profile`) or is labelled an assumption.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.config.loading import load_named_yaml, shipped_dir, shipped_names
from simulator.config.system import SystemSpec
from simulator.errors import UserError
from simulator.precision import FULL_PRECISION_BITS
from simulator.units import Seconds

RUNTIME_DIR = shipped_dir("runtimes")  # the installed copy, or the repository's runtimes/ (editable install)
DEFAULT_RUNTIME = "fused"
Share = Annotated[float, Field(gt=0, le=1)]  # a fraction of a peak figure
OP_KINDS = ("attention", "router", "expert", "compensation", "other")  # the GPU ops a profile counts kernels of


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class HostCosts(_Strict):
    reference_cpu: str = Field(min_length=1, description="the CPU the per-op figures were stated on")
    reference_single_thread: float = Field(gt=0, description="its single-thread score (PassMark CPU Mark "
                                                             "single-thread rating, as hwconfig host.cpu)")
    per_kernel: Seconds = Field(description="host time to issue one kernel on the reference CPU")
    per_sync: Seconds = Field(default=0.0, description="host time of one host-device synchronisation on the "
                                                       "reference CPU, beyond waiting for the GPU")
    on_critical_path: bool = Field(description="true: the host issues each op just in time (an eager stack that "
                                               "syncs every layer), so its time adds to the op's; false: it runs "
                                               "ahead of the GPU (CUDA graphs) and only the GPU's own launch "
                                               "overhead counts")


class Kernels(_Strict):
    attention: float = Field(ge=0, description="per layer's attention block (norms, projections, rotary, attention)")
    router: float = Field(ge=0, description="per MoE layer's router and dispatch")
    expert: float = Field(ge=0, description="per expert computed on the GPU")
    compensation: float = Field(ge=0, description="per expert's low-rank compensation GEMMs")
    other: float = Field(ge=0, description="per shared expert / dense FFN / LM head op")


class Copies(_Strict):
    host_memory: Literal["pinned", "pageable"] = Field(description="offloaded experts in pinned or pageable memory")
    stream: Literal["copy", "compute"] = Field(description="copies on their own stream, or in order on the "
                                                           "compute stream")


class Dequant(_Strict):
    efficiency: dict[int, Share] = Field(default_factory=dict, description="per code width (bits): the share of "
                                         "the GPU's streaming bandwidth its dequant-GEMM reaches on the stored bytes")
    default_efficiency: float = Field(default=1.0, gt=0, le=1, description="for widths not listed")
    extra_bytes_per_weight: float = Field(default=0.0, ge=0, description="HBM bytes per low-bit expert weight "
                                          "and call moved by dequantization outside the GEMM")
    attention_extra_bytes_per_weight: float = Field(default=0.0, ge=0, description="the same for attention weights")

    def at(self, bits: int) -> float:
        """The dequant-GEMM efficiency of `bits`-wide codes (1 at full precision: no dequantization)."""
        return 1.0 if bits >= FULL_PRECISION_BITS else self.efficiency.get(int(bits), self.default_efficiency)


PrefetchKind = Literal["none", "recall", "previous-token", "transitions"]  # simulator.prefetch.KINDS


class Prefetch(_Strict):
    """How the stack guesses layer l+1's experts while layer l runs (simulator.prefetch says what each kind
    knows)."""

    kind: PrefetchKind = Field(description="none; recall: a published lookahead recall, wrong guesses drawn by "
                                           "popularity; previous-token: the experts the same sequences used at "
                                           "l+1 one token before; transitions: top successors (l -> l+1) "
                                           "learned from a calibration prefix")
    recall: float = Field(default=1.0, ge=0, le=1, description="recall: share of the next layer's experts "
                                                               "guessed right")
    calibration_tokens: int = Field(default=0, ge=0, description="recall, transitions: the trace's first N "
                                    "tokens they learn from (popularity, transitions); the timed decode "
                                    "starts after them")
    successors: int = Field(default=1, ge=1, description="transitions: guessed successors per expert of the "
                                                         "current layer")

    @model_validator(mode="after")
    def _transitions_learn(self) -> Prefetch:
        if self.kind == "transitions" and self.calibration_tokens == 0:
            raise ValueError("the transitions prefetcher learns from calibration_tokens > 0 tokens")
        return self


class Runtime(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    source: str = Field(min_length=1, description="where the profile's mechanisms come from")
    host: HostCosts
    kernels: Kernels
    syncs_per_moe_layer: float = Field(default=0.0, ge=0, description="host-device syncs per MoE layer")
    copies: Copies
    dequant: Dequant = Field(default_factory=Dequant)
    cache: Literal["lru", "lfu"] = Field(description="expert cache replacement rule")
    prefetch: Prefetch

    def host_seconds(self, seconds: float, system: SystemSpec) -> float:
        """`seconds` of host time on the reference CPU, on `system`'s host CPU."""
        cpu = system.host.cpu
        if cpu is None:
            raise UserError(f"runtime {self.name!r} puts host time on the critical path, so the hardware config "
                            f"needs host.cpu (name, single_thread)", source=system.name, field="host.cpu")
        return seconds * self.host.reference_single_thread / cpu.single_thread

    def per_kernel(self, system: SystemSpec) -> float:
        """Seconds one kernel adds to its op on `system`: the GPU's launch overhead, plus the host's issue
        time when that is on the critical path."""
        host = self.host_seconds(self.host.per_kernel, system) if self.host.on_critical_path else 0.0
        return system.gpu.launch_overhead + host

    def op_overhead(self, system: SystemSpec) -> dict[str, float]:
        """Fixed seconds per op of each kind (OP_KINDS) on `system`; the router carries the layer's syncs."""
        per = self.per_kernel(system)
        out = {op: getattr(self.kernels, op) * per for op in OP_KINDS}
        if self.syncs_per_moe_layer and self.host.on_critical_path:
            out["router"] += self.syncs_per_moe_layer * self.host_seconds(self.host.per_sync, system)
        return out


def list_runtimes() -> list[str]:
    """Names of the shipped runtime profiles (file stems in runtimes/)."""
    return shipped_names(RUNTIME_DIR, ".yaml")


def load_runtime(name_or_path: str | Path) -> Runtime:
    """Load a runtime profile from a YAML path or the name of a shipped one."""
    return load_named_yaml(name_or_path, RUNTIME_DIR, "runtime", Runtime)
