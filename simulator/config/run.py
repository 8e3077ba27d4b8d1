"""Run parameters: everything that selects one simulation point, shared by the CLI and sweeps.

A RunSpec is plain data (names and numbers); `simulator.simulate.simulate(spec)` resolves the names
(hardware config, model preset, trace path, policy) and runs the engine.

RunSpec is the one list of run parameters: `moesim simulate`'s flags (simulator.commands.simulate,
built by `add_run_arguments`) and a sweep file's fields (simulator.sweep.spec) are derived from its
fields, so a new field is settable everywhere by adding it here, with a `description` (its --help).
Field name -> --kebab-name; a bool -> --name / --no-name; a Literal -> choices; an optional field also
takes `none` on the command line; quantities (cache_bytes) take a unit string or a bare number in the
base unit (simulator.config.quantity). `hwconfig` is the command's positional argument.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from simulator.config.quantity import ByteCount
from simulator.config.runtime import DEFAULT_RUNTIME
from simulator.formats import DEFAULT_FORMAT, FAMILY_NAMES
from simulator.policies.registry import DEFAULT_POLICY
from simulator.precision import FULL_PRECISION_BITS

DEFAULT_HWCONFIG = "h100-cxl-ndp"
DEFAULT_MODEL = "deepseek-v2-lite"
DEFAULT_TRACE = "traces/esft-intent"
DEFAULT_TOKENS = 256  # decode steps: keeps the default run to seconds; None runs the whole trace
FormatFamily = Literal[FAMILY_NAMES]  # simulator.formats.FAMILIES: a byte layout that takes (bits, group)
POSITIONAL = {"cli": "positional"}  # json_schema_extra of the field the CLI takes as its positional argument


def _zero_is_none(value: object) -> object:
    """tokens: 0 means the whole trace, like None (`--tokens 0`, `tokens: 0`)."""
    if isinstance(value, str) and value.strip().isdigit() and int(value) == 0:
        return None
    return None if value == 0 and not isinstance(value, bool) else value


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    hwconfig: str = Field(default=DEFAULT_HWCONFIG, description="hardware config name or YAML",
                          json_schema_extra=POSITIONAL)
    model: str = Field(default=DEFAULT_MODEL, description="model preset or YAML")
    trace: str | None = Field(default=DEFAULT_TRACE, description="routing trace directory")
    synthetic_tokens: int | None = Field(default=None, ge=1,
                                         description="use a synthetic trace of N tokens (batch sequences) "
                                                     "instead of --trace")
    policy: str = Field(default=DEFAULT_POLICY, description="placement policy")
    bits: int = Field(default=4, ge=1, le=FULL_PRECISION_BITS, description="low-bit expert width")
    group: int = Field(default=128, ge=1, description="quantization group size")
    weight_format: FormatFamily = Field(default=DEFAULT_FORMAT, description="byte layout of the low-bit experts "
                                        "at --bits and --group (simulator.formats: packing, scale and zero bits)")
    top_n: int = Field(default=2, ge=0, description="experts restored per token")
    rank: int | None = Field(default=None, ge=0,
                             description="uniform compensator rank of the lrc policies (none: 32)")
    plan: str | None = Field(default=None, description="compensation plan file with per-expert ranks and bytes")
    runtime: str = Field(default=DEFAULT_RUNTIME, description="runtime profile (software stack) name or YAML")
    cache_policy: Literal["lru", "lfu"] | None = Field(default=None, description="GPU expert cache replacement "
                                                       "rule (none: the runtime's)")
    cache_bytes: ByteCount | None = Field(default=None, ge=0,
                                          description="GPU expert cache size instead of the derived one")
    cache_experts_per_layer: int | None = Field(default=None, ge=0,
                                                description="per-layer caches of K experts instead")
    prefetch: bool | None = Field(default=None, description="speculatively copy the next layer's experts "
                                                           "(none: as the runtime does)")
    prefetch_hit_rate: float | None = Field(default=None, ge=0, le=1, description="recall prefetcher: share of "
                                            "the next layer's experts guessed right (none: the runtime's recall)")
    prefetcher: Literal["recall", "previous-token", "transitions"] | None = Field(
        default=None, description="how prefetches guess (none: the runtime's; recall when it has none)")
    prefetch_calibration_tokens: int | None = Field(
        default=None, ge=0, description="the trace's first N tokens the recall/transitions prefetchers learn from; "
                                        "the timed decode starts after them (none: the runtime's)")
    prefetch_successors: int | None = Field(default=None, ge=1, description="transitions prefetcher: successors "
                                            "guessed per current expert (none: the runtime's)")
    attention_bits: int = Field(default=FULL_PRECISION_BITS, ge=1, le=FULL_PRECISION_BITS, description="attention weights stored at this many bits")
    attention_format: FormatFamily = Field(default=DEFAULT_FORMAT, description="byte layout of low-bit attention "
                                           "weights at --attention-bits and --attention-group")
    attention_group: int = Field(default=128, ge=1, description="quantization group size of low-bit attention "
                                                                "weights")
    batch: int = Field(default=1, ge=1, description="sequences decoded in lockstep")
    tokens: Annotated[int | None, BeforeValidator(_zero_is_none)] = Field(
        default=DEFAULT_TOKENS, ge=1, description="decode steps; 0 or none = the whole trace")
    prompt: int = Field(default=0, ge=0, description="prefill length; 0 = no prefill")
    context: int = Field(default=512, ge=0, description="KV context length at the first decode step")
    seed: int = Field(default=0, description="random seed (synthetic trace, prefetch guesses)")
    engine: Literal["des", "analytic"] = Field(
        default="des", description="des: SimPy discrete-event model; analytic: the compiled fast path of the "
                                   "same cost model")
