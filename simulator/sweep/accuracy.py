"""Which accuracy measurement belongs to a simulation point, and running it.

The accuracy model (simulator.accuracy) usually runs on other weights than the simulated model (the
shipped default is MiniLM turned into 16 experts, top-4, matrices 96 x 384, while DeepSeek-V2-Lite has
64 experts, top-6, matrices 1408 x 2048). A point's accuracy is therefore measured for the same recipe
carried over in relative terms:

    bits, group     the same
    top-n           the same share of k: n_w = round(n * k_w / k_m), at least 1 when n >= 1
    rank            the same share of the smaller matrix dimension: average rank budget
                    R_w = r * dmin_w / dmin_m (a float), allocated over experts by `alloc`

What a policy does to the weights decides the key:

    gpu-resident, offload-fp16, ndp-hot  full precision: the reference itself (error 0, cosine 1)
    offload-lowbit, ndp-lowbit           every expert at `bits`, nothing restored
    offload-lrc, ndp-lrc                 `bits`, each token's top-n experts restored with rank r
                                         (r = the simulator's default when the point gives none)
    offload-mixed                        worst case, every fetch a miss: the top-n at full precision
                                         (full-rank restoration), the rest at `bits`

Points with a per-expert plan file, or a policy not listed here, get no accuracy columns. Points that
share a key share one measurement (computed once per sweep, cached on disk); the measured inputs
(accuracy.top_n, accuracy.rank_budget, ...) are columns of the table, so the mapping stays visible.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulator.config.run import RunSpec

FULL_PRECISION = frozenset({"gpu-resident", "offload-fp16", "ndp-hot"})
LOW_BIT = frozenset({"offload-lowbit", "ndp-lowbit"})
RESTORED = frozenset({"offload-lrc", "ndp-lrc"})
MIXED = frozenset({"offload-mixed"})
FULL_RANK = -1  # rank marker: restore with every singular value (the weights at full precision)


def weight_parameters(policy: str) -> tuple[str, ...]:
    """The run parameters that change what a policy does to the weights (for labels and keys)."""
    if policy in FULL_PRECISION:
        return ()
    if policy in LOW_BIT:
        return ("bits",)
    if policy in MIXED:
        return ("bits", "top_n")
    return ("bits", "top_n", "rank")


class AccuracySection(BaseModel):
    """The `accuracy:` section of a sweep file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str = Field(default="minilm", description="'minilm' (shipped) or a Hugging Face checkpoint dir")
    alloc: Literal["kurtosis", "uniform", "energy"] = "kurtosis"
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="further keyword arguments of simulator.accuracy.api.evaluate")


def accuracy_key(run: RunSpec, section: AccuracySection) -> dict[str, Any] | None:
    """The accuracy evaluation a point needs, in the simulated model's terms (None: not modelled)."""
    from simulator.config.model import load_model
    from simulator.simulate import DEFAULT_RANK

    if run.plan is not None:
        return None
    if run.policy in FULL_PRECISION:
        return {"weights": section.weights, "bits": 16}
    model = load_model(run.model)
    key = {"weights": section.weights, "bits": run.bits, "group": run.group, "seed": section.seed,
           "model_top_k": model.top_k, "model_rank_dim": min(model.hidden, model.expert_ffn),
           "alloc": "uniform", "rank": 0, "top_n": 0, **section.options}
    if run.policy in LOW_BIT:
        return key
    if run.policy in RESTORED:
        rank = DEFAULT_RANK if run.rank is None else run.rank
        return {**key, "alloc": section.alloc, "rank": rank, "top_n": run.top_n}
    if run.policy in MIXED:
        return {**key, "rank": FULL_RANK, "top_n": run.top_n}
    return None


def evaluate_accuracy(key: dict[str, Any]) -> dict[str, Any]:
    """Run the accuracy model for one key (in a worker): map n and r onto the weights, then evaluate."""
    if key["bits"] >= 16:
        return {"rel_output_error": 0.0, "layer_cosine": 1.0, "cosine": 1.0}
    from simulator.accuracy.api import evaluate, open_source

    key = dict(key)
    k_m, dmin_m, rank, top_n = (key.pop(n) for n in ("model_top_k", "model_rank_dim", "rank", "top_n"))
    layer = open_source(key["weights"]).layer(0)
    dmin_w = min(min(w.shape) for w in layer.experts[0].values())
    n_w = min(layer.top_k, max(round(top_n * layer.top_k / k_m), 1 if top_n else 0))
    budget = float(dmin_w) if rank == FULL_RANK else rank * dmin_w / dmin_m
    return evaluate(**key, rank_budget=budget, top_n=n_w)
