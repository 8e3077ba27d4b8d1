"""Which accuracy measurement belongs to a simulation point, and running it.

The accuracy model (simulator.accuracy) usually runs on other weights than the simulated model (the
shipped default is MiniLM turned into 16 experts, top-4, matrices 96 x 384, while DeepSeek-V2-Lite has
64 experts, top-6, matrices 1408 x 2048). A point's accuracy is therefore measured for the same recipe
carried over in relative terms:

    bits, group     the same
    top-n           the same share of k: n_w = round(n * k_w / k_m), at least 1 when n >= 1
    rank            the same share of the smaller matrix dimension: average rank budget
                    R_w = r * dmin_w / dmin_m (a float), allocated over experts by `alloc`

What a policy does to the weights decides the key: each policy declares its accuracy mapping
(`Policy.accuracy_mix(bits, top_n, k)`: how each of a token's top-k pairs runs, best router score first:
"restored", "lowbit" or "full"), and the mix becomes one of the measurements the accuracy model makes:

    every pair full                  the reference itself (error 0, cosine 1); also any policy at full
                                     precision bits (simulator.precision), e.g. a 16-bit gpu-resident run
    every pair lowbit                every expert at `bits`, nothing restored (a 4-bit gpu-resident run
                                     included: a reference point carries the error of the bits it runs)
    first m restored, rest lowbit    `bits`, each token's top-m experts restored with rank r
                                     (r = the simulator's default when the point gives none)
    first m full, rest lowbit        the top-m at full precision (full-rank restoration), the rest at `bits`

A mix the accuracy model cannot make (another order or three kinds of pair), or bits its quantizer does
not produce (9-15), gets a key that records why: measuring it is an invalid accuracy result with that
reason (a UserError, so the sweep stores it and never retries it). Points with a per-expert plan file,
or a policy that is not registered, get no accuracy columns. Points that share a key share one
measurement (computed once per sweep, cached on disk); the measured inputs (accuracy.top_n,
accuracy.rank_budget, ...) are columns of the table, so the mapping stays visible.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulator.config.run import RunSpec
from simulator.errors import UserError
from simulator.policies.registry import POLICIES, declared
from simulator.precision import FULL_PRECISION_BITS, accuracy_bits_problem, is_full_precision

FULL_RANK = -1  # rank marker: restore with every singular value (the weights at full precision)


def weight_parameters(policy: str) -> tuple[str, ...]:
    """The run parameters that change what a policy does to the weights (for labels and keys)."""
    return declared(policy).weight_parameters()


class AccuracySection(BaseModel):
    """The `accuracy:` section of a sweep file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str = Field(default="minilm", description="'minilm' (shipped) or a Hugging Face checkpoint dir")
    alloc: Literal["kurtosis", "uniform", "energy"] = "kurtosis"
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="further keyword arguments of simulator.accuracy.api.evaluate")


def _split(runs: tuple[str, ...]) -> tuple[str, int] | None:
    """(kind, m) when `runs` is m pairs of `kind` then only lowbit pairs, the shapes the accuracy model
    measures; None otherwise."""
    m = next((i for i, r in enumerate(runs) if r != runs[0]), len(runs))
    return (runs[0], m) if all(r == "lowbit" for r in runs[m:]) else None


def accuracy_key(run: RunSpec, section: AccuracySection) -> dict[str, Any] | None:
    """The accuracy evaluation a point needs, in the simulated model's terms (None: not modelled)."""
    from simulator.config.model import load_model
    from simulator.simulate import DEFAULT_RANK

    if run.plan is not None or run.policy not in POLICIES:
        return None
    model = load_model(run.model)
    runs = POLICIES[run.policy].accuracy_mix(run.bits, run.top_n, model.top_k)
    if all(r == "full" for r in runs):
        return {"weights": section.weights, "bits": FULL_PRECISION_BITS}
    key = {"weights": section.weights, "bits": run.bits, "group": run.group, "seed": section.seed,
           "model_top_k": model.top_k, "model_rank_dim": min(model.hidden, model.expert_ffn),
           "alloc": "uniform", "rank": 0, "top_n": 0, **section.options}
    split = _split(runs)
    if split is None:
        return {**key, "unsupported": f"policy {run.policy} runs a token's top-{model.top_k} pairs as "
                                      f"{'/'.join(runs)}: the accuracy model measures m pairs restored or "
                                      "full precision and the rest low-bit"}
    kind, m = split
    if kind == "restored":
        rank = DEFAULT_RANK if run.rank is None else run.rank
        return {**key, "alloc": section.alloc, "rank": rank, "top_n": m}
    if kind == "full":
        return {**key, "rank": FULL_RANK, "top_n": m}
    return key


def evaluate_accuracy(key: dict[str, Any]) -> dict[str, Any]:
    """Run the accuracy model for one key (in a worker): map n and r onto the weights, then evaluate.
    A key the model cannot measure raises a UserError with the reason (an invalid result, not retried)."""
    if is_full_precision(key["bits"]):
        return {"rel_output_error": 0.0, "layer_cosine": 1.0, "cosine": 1.0}
    problem = key.get("unsupported") or accuracy_bits_problem(key["bits"])
    if problem:
        raise UserError(problem, field="accuracy")
    from simulator.accuracy.api import evaluate, open_source

    key = dict(key)
    k_m, dmin_m, rank, top_n = (key.pop(n) for n in ("model_top_k", "model_rank_dim", "rank", "top_n"))
    layer = open_source(key["weights"]).layer(0)
    dmin_w = min(min(w.shape) for w in layer.experts[0].values())
    n_w = min(layer.top_k, max(round(top_n * layer.top_k / k_m), 1 if top_n else 0))
    budget = float(dmin_w) if rank == FULL_RANK else rank * dmin_w / dmin_m
    return evaluate(**key, rank_budget=budget, top_n=n_w)
