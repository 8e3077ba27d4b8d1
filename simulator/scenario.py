"""The run contract: what one simulation is given and what it gives back, shared by both timers.

Both timers, the SimPy DES (simulator.des) and the compiled fast path (simulator.fast), import this
module and neither imports the other. It holds
- the names every part agrees on: stored forms of an expert, breakdown categories, transfer
  priorities, kernel op kinds, per-step columns and run counters;
- Scenario: everything one run needs, resolved from a RunSpec (simulator.simulate.build_scenario);
- ExpertSizes: per (MoE layer, expert) bytes, bits and rank;
- RunResult: the raw outcome that simulator.metrics turns into tables and a summary;
- the run's random stream (run_rng): the prefetcher's draws come from it, in the same order in both timers.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from simulator import prefetch as prefetchers
from simulator.config.runtime import OP_KINDS
from simulator.costs import FROM_GPU, TO_GPU
from simulator.precision import FULL_PRECISION_BITS

if TYPE_CHECKING:
    from simulator.config.model import ModelSpec
    from simulator.config.runtime import Runtime
    from simulator.config.system import SystemSpec
    from simulator.policies.base import Policy
    from simulator.routing.trace import Trace

# How an expert's bytes are stored: b-bit codes + scales, its low-rank compensator, 16-bit weights. A
# cache key is (MoE layer, expert, form); the fast path numbers it ((layer E + expert) N_FORMS + form).
FORMS = ("lowbit", "factors", "full")
LOWBIT, FACTORS, FULL = range(len(FORMS))
N_FORMS = len(FORMS)

# Where every instant of the GPU stream goes: the breakdown categories, which add up to the step time.
CATEGORIES = ("attention", "router", "expert_gpu", "compensation", "expert_ndp", "transfer_stall", "other")
ATTENTION, ROUTER, EXPERT_GPU, COMPENSATION, EXPERT_NDP, TRANSFER_STALL, OTHER = range(len(CATEGORIES))

DEMAND, PREFETCH = 0, 1  # transfer priorities on a link: on-demand copies are served before prefetches


# What a step's ops did, the energy model's input (simulator.energy): GPU FLOPs and HBM bytes of its kernels,
# NDP FLOPs by the precision the unit computes at (costs.NDP_PRECISIONS) and bytes the units read, bytes
# copied into the GPU expert cache (read from the expert memory).
WORK_COLUMNS = ("gpu_flops", "gpu_bytes", "ndp_flops_int4", "ndp_flops_int8", "ndp_flops_fp16", "ndp_bytes",
                "copied_bytes")
# Cache lookups of the layers' own (demand) accesses: cache_hits found an entry that was not brought by a
# prefetch still unused (a demand hit), prefetch_hits the first use of an entry a prefetch brought, and
# cache_misses copied it on demand; lookups = the three together.
STEP_COUNTERS = ("cache_hits", "prefetch_hits", "cache_misses", "experts_gpu", "experts_ndp",
                 *WORK_COLUMNS)  # per step and run
STEP_COLUMNS = ("step", "tokens", "start_s", "end_s", *CATEGORIES, *STEP_COUNTERS)  # + link byte columns
FETCHED = {form: f"fetched_{form}_bytes" for form in FORMS}  # counter of the bytes copied per form
# prefetch_bytes: bytes copied by prefetches; prefetch_wasted_bytes: of those, the entries evicted before any
# demand lookup used them or still unused when the run ends (simulator.prefetch)
RUN_COUNTERS = (*STEP_COUNTERS, "prefetch_bytes", "prefetch_wasted_bytes", *FETCHED.values())


def new_counters() -> dict[str, float]:
    """The run counters, all zero (RunResult.counters adds cache_evictions and cache_capacity_bytes)."""
    return dict.fromkeys(RUN_COUNTERS, 0.0)


def link_byte_columns(system: SystemSpec) -> list[tuple[str, str, str]]:
    """(step column, link name, direction) of the bytes issued per step on each link direction."""
    return [(f"bytes_{link.name}_{d}", link.name, d) for link in system.links for d in (TO_GPU, FROM_GPU)]


def new_step_rows(system: SystemSpec) -> dict[str, array]:
    """Empty per-step columns (RunResult.steps): STEP_COLUMNS, then the link byte columns."""
    return {name: array("d") for name in (*STEP_COLUMNS, *(col for col, _, _ in link_byte_columns(system)))}


def run_rng(seed: int) -> np.random.Generator:
    """The run's random stream (prefetch guesses draw from it in the order the DES places experts)."""
    return np.random.default_rng(seed)


@dataclass(frozen=True)
class ExpertSizes:
    """Per (MoE layer, expert) storage: arrays [L, E]."""

    lowbit: np.ndarray   # float64 bytes of the b-bit form
    factors: np.ndarray  # float64 bytes of the low-rank factors (0 without compensation)
    full: np.ndarray     # float64 bytes at full precision
    bits: np.ndarray     # int64 bits of the low-bit form
    rank: np.ndarray     # int64 compensator rank

    def of(self, form: str) -> np.ndarray:
        return getattr(self, form)


@dataclass
class Scenario:
    """Everything one simulation needs, resolved (simulator.simulate builds it from a RunSpec; the fields
    that share a RunSpec field's name take its value)."""

    system: SystemSpec
    model: ModelSpec
    trace: Trace
    policy: Policy
    sizes: ExpertSizes
    cache_capacity: float          # bytes: of the shared cache, or of each layer's cache when per-layer
    cache_per_layer: bool = False
    free_hbm: float = 0.0          # HBM bytes left after resident weights, KV and reserve
    cache_policy: str = "lru"
    batch: int = 1
    steps: int | None = 256        # decode steps; None = until the trace is exhausted (RunSpec.tokens)
    prompt: int = 0
    context: int = 512
    top_n: int = 0
    attention_bits: int = FULL_PRECISION_BITS
    attention_format: str = "moesim"  # simulator.formats family of the attention weights (RunSpec's)
    attention_group: int = 128
    group: int = 128
    weight_format: str = "moesim"     # of the low-bit experts (their bytes are in `sizes`)
    prefetch: bool = False
    prefetch_hit_rate: float = 1.0  # the recall prefetcher's recall
    prefetcher: str = "recall"      # simulator.prefetch.KINDS: how guesses are made when prefetch is on
    prefetch_calibration_tokens: int = 0  # the trace's first N tokens: what recall/transitions learn from
    prefetch_successors: int = 1    # transitions: guesses per expert of the current layer
    seed: int = 0
    runtime: Runtime | None = None   # the software stack's profile (what the fields below were resolved from)
    op_overhead: dict[str, float] = field(default_factory=dict)  # seconds per GPU op of each OP_KINDS kind
                                                                 # (empty: one gpu.launch_overhead each)
    dequant_efficiency: tuple[float, ...] = (1.0,) * (FULL_PRECISION_BITS + 1)  # by code width: HBM bw share
    dequant_bytes_per_weight: float = 0.0            # extra HBM bytes per low-bit expert weight per GPU call
    attention_dequant_bytes_per_weight: float = 0.0  # same for low-bit attention weights
    loads_block_layer: bool = False                  # a layer's experts wait for all its on-demand loads

    def __post_init__(self) -> None:
        self.op_overhead = {op: self.op_overhead.get(op, self.system.gpu.launch_overhead) for op in OP_KINDS}

    @property
    def prefetch_mode(self) -> int:
        """simulator.prefetch's mode number (NONE when prefetch is off)."""
        return prefetchers.mode(self.prefetcher, self.prefetch)

    def decode_bounds(self) -> list[tuple[int, int]]:
        """The trace's sequence bounds the decode takes: after the prefetcher's calibration prefix, if it
        learns from one (simulator.prefetch)."""
        bounds = self.trace.sequence_bounds()
        if self.prefetch and prefetchers.learns(self.prefetcher, self.prefetch_calibration_tokens):
            return prefetchers.decode_bounds(bounds, self.prefetch_calibration_tokens)
        return bounds

    @property
    def cache_partitions(self) -> int:
        """Partitions of the GPU expert cache: one per MoE layer, or one shared."""
        return self.model.moe_layers if self.cache_per_layer else 1

    @property
    def cache_total_bytes(self) -> float:
        """Bytes of all partitions together (summed one by one, as the cache sums them)."""
        return sum([float(self.cache_capacity)] * self.cache_partitions)


@dataclass
class RunResult:
    """Raw outcome of one run; simulator.metrics turns it into tables and a summary."""

    scenario: Scenario
    steps: dict[str, array]          # per-step columns (STEP_COLUMNS + link byte columns)
    decode_time: float               # seconds from the first decode step to the end of the last
    prefill_time: float
    gpu_busy: float
    link_busy: dict[str, dict[str, float]]     # link -> direction -> wire-seconds in the window
    ndp_busy: list[float]
    counters: dict[str, float] = field(default_factory=dict)
    log: object | None = None        # simulator.des.log.EventLog when the DES recorded events
