"""Serving parameters: the workload, the scheduler's limits, the KV-cache budget and the SLO.

A ServeSpec goes with a RunSpec (the model, hardware, policy, runtime and cache of `moesim simulate`): the
RunSpec says what machine serves and how each step is timed, the ServeSpec what requests arrive and how
they are batched (simulator.serving). `moesim serve` derives its flags from both; durations take a unit
("2 s", "100 ms") or a bare number of seconds, sizes "8 GB" or a number of bytes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simulator.config.quantity import ByteCount, Duration

DEFAULT_WORKLOAD = "azure-conv"  # workloads/azure-conv.csv.gz: the Azure LLM inference trace 2023, conversation


class ServeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    workload: str = Field(default=DEFAULT_WORKLOAD, description="request workload: a shipped name or a CSV file")
    arrivals: Literal["trace", "poisson", "gamma"] = Field(
        default="trace", description="arrival process: the workload's own times (rescaled by --rate), or "
                                     "generated with lengths drawn from the workload")
    rate: float | None = Field(default=None, gt=0, description="mean arrival rate in requests/s (none: the "
                                                               "trace's own)")
    cv: float = Field(default=2.0, gt=0, description="coefficient of variation of gamma inter-arrival times")
    duration: Duration = Field(default=60.0, gt=0, description="seconds of arrivals served")
    start: Duration = Field(default=0.0, ge=0, description="where the window of arrivals starts")
    prompt_tokens: int | None = Field(default=None, ge=1, description="every request's prompt length "
                                                                     "(none: the workload's)")
    output_tokens: int | None = Field(default=None, ge=1, description="every request's output length "
                                                                     "(none: the workload's)")
    max_batch: int = Field(default=64, ge=1, description="most requests in one step")
    max_tokens_per_step: int = Field(default=512, ge=1,
                                     description="most tokens in one step (decodes + prefill chunks)")
    kv_bytes: ByteCount | None = Field(default=None, gt=0,
                                       description="KV-cache budget (none: --kv-share of the free HBM)")
    kv_share: float = Field(default=0.5, gt=0, lt=1, description="share of the HBM left after resident weights "
                                                                  "and reserve given to the KV cache")
    kv_block: int = Field(default=16, ge=1, description="tokens per KV-cache block")
    slo_ttft: Duration = Field(default=2.0, gt=0, description="time-to-first-token SLO")
    slo_tpot: Duration = Field(default=0.1, gt=0, description="time-per-output-token SLO")
    slo_attainment: float = Field(default=0.9, gt=0, le=1,
                                  description="share of requests within both SLOs for a rate to count as "
                                              "sustainable")
