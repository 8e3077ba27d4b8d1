"""Which accuracy measurement belongs to a simulation point, and running it.

The accuracy model (simulator.accuracy) runs on a weight source that is usually not the simulated model
(the shipped default is MiniLM turned into experts), so a point's accuracy is measured for the same
numerical recipe: bits, group, top-n and rank, with the rank budget allocated across experts by `alloc`.
What a policy does to the weights decides the key:

    gpu-resident, offload-fp16, ndp-hot  full precision: no error (measured at 16 bits, no factors)
    offload-lowbit, ndp-lowbit           every expert at `bits`, nothing restored
    offload-lrc, ndp-lrc                 `bits`, the top-n experts of each token restored with rank r
    offload-mixed                        worst case (every fetch a miss): top-n at full precision, rest at bits

Points that share a key share one measurement (the sweep computes it once and caches it on disk).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulator.config.run import RunSpec

FULL_PRECISION = frozenset({"gpu-resident", "offload-fp16", "ndp-hot"})
LOW_BIT = frozenset({"offload-lowbit", "ndp-lowbit"})
RESTORED = frozenset({"offload-lrc", "ndp-lrc"})
MIXED = frozenset({"offload-mixed"})


class AccuracySection(BaseModel):
    """The `accuracy:` section of a sweep file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str = Field(default="minilm", description="'minilm' (shipped) or a Hugging Face checkpoint dir")
    alloc: Literal["kurtosis", "uniform", "energy"] = "kurtosis"
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="further keyword arguments of the accuracy evaluation")


def accuracy_key(run: RunSpec, section: AccuracySection) -> dict[str, Any] | None:
    """The accuracy evaluation a point needs (None for a policy whose accuracy is not modelled)."""
    common = {"weights": section.weights, "group": run.group, "seed": section.seed, **section.options}
    if run.policy in FULL_PRECISION:
        return {**common, "bits": 16, "rank": 0, "top_n": 0, "alloc": "uniform"}
    if run.policy in LOW_BIT:
        return {**common, "bits": run.bits, "rank": 0, "top_n": 0, "alloc": "uniform"}
    if run.policy in RESTORED:
        return {**common, "bits": run.bits, "rank": run.rank or 0, "top_n": run.top_n, "alloc": section.alloc}
    if run.policy in MIXED:
        return {**common, "bits": run.bits, "rank": "full", "top_n": run.top_n, "alloc": "uniform"}
    return None


def evaluate_accuracy(key: dict[str, Any]) -> dict[str, Any]:
    """Run the accuracy model for one key (in a worker); returns its metrics."""
    from simulator.accuracy.api import evaluate

    return evaluate(**key)
