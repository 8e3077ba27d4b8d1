"""Run parameters: everything that selects one simulation point, shared by the CLI and sweeps.

A RunSpec is plain data (names and numbers); `simulator.simulate.simulate(spec)` resolves the names
(hardware config, model preset, trace path, policy) and runs the engine.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_HWCONFIG = "h100-cxl-ndp"
DEFAULT_MODEL = "deepseek-v2-lite"
DEFAULT_TRACE = "traces/esft-intent"
DEFAULT_POLICY = "ndp-lrc"
DEFAULT_TOKENS = 256  # decode steps: keeps the default run to seconds; None runs the whole trace


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hwconfig: str = DEFAULT_HWCONFIG
    model: str = DEFAULT_MODEL
    trace: str | None = DEFAULT_TRACE
    synthetic_tokens: int | None = Field(default=None, ge=1,
                                        description="synthesize a trace of this many tokens (batch sequences)")
    policy: str = DEFAULT_POLICY
    bits: int = Field(default=4, ge=1, le=16)
    group: int = Field(default=128, ge=1)
    top_n: int = Field(default=2, ge=0)
    rank: int | None = Field(default=None, ge=0, description="uniform rank; None = policy default")
    plan: str | None = Field(default=None, description="compensation plan file (per-expert ranks and bytes)")
    cache_policy: Literal["lru", "lfu"] = "lru"
    cache_bytes: float | None = Field(default=None, ge=0, description="override the derived cache capacity")
    cache_experts_per_layer: int | None = Field(default=None, ge=0)
    prefetch: bool = False
    prefetch_hit_rate: float = Field(default=1.0, ge=0, le=1, description="share of prefetches that guess right")
    attention_bits: int = Field(default=16, ge=1, le=16, description="attention weights stored at this many bits")
    batch: int = Field(default=1, ge=1)
    tokens: int | None = Field(default=DEFAULT_TOKENS, ge=1, description="decode steps; None = the whole trace")
    prompt: int = Field(default=0, ge=0, description="prefill length; 0 = no prefill")
    context: int = Field(default=512, ge=0, description="KV context length at the first decode step")
    # kernels the software stack launches per op (each costs the GPU's launch_overhead): 1 = one fused
    # kernel per op; an eager framework issues many (norms, projections, rotary, routing bookkeeping)
    kernels_attention: float = Field(default=1, ge=0, description="kernels per layer's attention block")
    kernels_router: float = Field(default=1, ge=0, description="kernels per MoE layer's router and dispatch")
    kernels_expert: float = Field(default=1, ge=0, description="kernels per expert computed on the GPU")
    kernels_other: float = Field(default=1, ge=0, description="kernels per shared/dense FFN and per LM head")
    # HBM traffic of a software stack that dequantizes outside the GEMM (e.g. eager scale/zero dequant
    # before a Triton kernel): extra bytes per weight per GPU call of a low-bit matrix; 0 = fused
    dequant_bytes_per_weight: float = Field(default=0, ge=0, description="extra HBM bytes per low-bit expert weight per call")
    attention_dequant_bytes_per_weight: float = Field(default=0, ge=0,
                                                      description="extra HBM bytes per low-bit attention weight per call")
    # a stack that issues a layer's expert loads on its compute stream (no copy stream) starts the
    # layer's experts only when all of its on-demand loads have arrived; prefetches still overlap
    loads_block_layer: bool = Field(default=False, description="a layer's experts wait for all its on-demand loads")
    seed: int = 0
    engine: Literal["des", "analytic"] = "des"
