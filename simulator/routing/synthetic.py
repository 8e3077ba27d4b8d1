"""Synthetic routing traces for any model preset, with calibrated skew, locality and score levels.

Generative model, per MoE layer l, token t of a sequence and expert e (E experts, top-k):

    z[t, l, e] = skew[l] * u[l, e] + eps[t, l, e]                     router logit (noise units)
    u[l, :]    = standard-normal quantiles Phi^-1((r + 0.5) / E), r = 0..E-1, randomly permuted per layer
                 (which expert is hot is random; how skewed the popularity is is fixed by skew[l])
    eps[0]     ~ N(0, 1);   eps[t] = locality[l] * eps[t-1] + sqrt(1 - locality[l]^2) * N(0, 1)
                 (AR(1) noise: stationary N(0, 1), so locality changes the consecutive-token overlap
                 without changing the popularity)
    S_t        = top-k of z[t, l, :]; scores = the top-k values of softmax(score_scale * z[t, l, :])

skew sets the popularity entropy and hottest share, locality the consecutive-token overlap, score_scale
the router-score levels. The fitted values per preset live in simulator/data/routing-synth-<model>.yaml
(see simulator/routing/calibrate.py, which also refits them). Same (model, tokens, seed, sequences,
params) -> bit-identical trace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.config.loading import load_yaml_file
from simulator.config.model import ModelSpec
from simulator.errors import UserError
from simulator.routing.trace import Trace, TraceMeta

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class SynthParams(BaseModel):
    """Per-layer generator parameters for one model (lists indexed by MoE layer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    reference: str = Field(default="", description="what the parameters were fitted to")
    score_scale: float = Field(gt=0, description="softmax sharpness applied to the logits")
    skew: list[float] = Field(min_length=1, description="per-layer spread of the expert logit bias")
    locality: list[float] = Field(min_length=1, description="per-layer AR(1) coefficient of the noise")

    @model_validator(mode="after")
    def _check(self) -> SynthParams:
        if len(self.skew) != len(self.locality):
            raise ValueError(f"skew has {len(self.skew)} layers but locality has {len(self.locality)}")
        if any(s < 0 for s in self.skew):
            raise ValueError("skew values must be >= 0")
        if any(not 0 <= p < 1 for p in self.locality):
            raise ValueError("locality values must lie in [0, 1)")
        return self


def params_path(model: str) -> Path:
    return DATA_DIR / f"routing-synth-{model}.yaml"


def load_params(model: ModelSpec, path: str | Path | None = None) -> SynthParams:
    """The shipped parameters for `model` (or those in `path`), checked against its layer count."""
    path = Path(path) if path else params_path(model.name)
    if not path.exists():
        raise UserError(f"no synthetic-routing parameters for model {model.name!r} (expected {path}); "
                        "fit them with `moesim trace calibrate`", source=path)
    params = load_yaml_file(path, SynthParams)
    if len(params.skew) != model.moe_layers:
        raise UserError(f"has {len(params.skew)} layers but model {model.name} has {model.moe_layers} MoE "
                        "layers", source=path, field="skew")
    return params


def popularity_shape(experts: int) -> np.ndarray:
    """Standard-normal quantiles at (r + 0.5) / E, descending: float64 [E]."""
    from statistics import NormalDist

    q = (np.arange(experts) + 0.5) / experts
    return -np.array([NormalDist().inv_cdf(float(x)) for x in q])


def topk_scores(z: np.ndarray, k: int, score_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ids (descending logit) and their softmax(score_scale * z) scores; z [..., E]."""
    part = np.argpartition(-z, k - 1, axis=-1)[..., :k]                  # [..., k] unordered
    zk = np.take_along_axis(z, part, axis=-1)
    order = np.argsort(-zk, axis=-1, kind="stable")
    ids = np.take_along_axis(part, order, axis=-1)                       # [..., k]
    zmax = z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(score_scale * (z - zmax)).sum(axis=-1, keepdims=True))
    scores = np.exp(score_scale * (np.take_along_axis(zk, order, axis=-1) - zmax) - log_norm)
    return ids, scores


def synthesize(model: ModelSpec, tokens: int, seed: int, sequences: int = 1,
               params: SynthParams | None = None) -> Trace:
    """A synthetic trace of `tokens` tokens split into `sequences` near-equal sequences."""
    if tokens < 1:
        raise UserError(f"need at least one token, got {tokens}", field="tokens")
    if not 1 <= sequences <= tokens:
        raise UserError(f"sequences must lie in [1, tokens={tokens}], got {sequences}", field="sequences")
    params = params or load_params(model)
    layers, experts, k = model.moe_layers, model.num_experts, model.top_k
    if len(params.skew) != layers:
        raise UserError(f"parameters have {len(params.skew)} layers, model {model.name} has {layers}",
                        field="skew")
    rng = np.random.Generator(np.random.PCG64(seed))
    skew = np.asarray(params.skew)[:, None]                               # [L, 1]
    phi = np.asarray(params.locality)[:, None]                            # [L, 1]
    shape = popularity_shape(experts)
    bias = skew * np.stack([rng.permutation(shape) for _ in range(layers)])  # [L, E]

    lengths = np.full(sequences, tokens // sequences)
    lengths[: tokens % sequences] += 1
    ids = np.empty((tokens, layers, k), np.int16)
    scores = np.empty((tokens, layers, k), np.float32)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    eps = rng.standard_normal((sequences, layers, experts))               # [S, L, E]
    innov = np.sqrt(1.0 - phi ** 2)
    for step in range(int(lengths.max())):
        live = np.flatnonzero(lengths > step)                             # sequences still running
        if step:
            eps[live] = phi * eps[live] + innov * rng.standard_normal((live.size, layers, experts))
        i, s = topk_scores(bias + eps[live], k, params.score_scale)
        ids[starts[live] + step] = i
        scores[starts[live] + step] = s
    seq_id = np.repeat(np.arange(sequences, dtype=np.int32), lengths)
    position = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])
    meta = TraceMeta(name=f"synth-{model.name}-s{seed}", model=model.name, num_experts=experts, top_k=k,
                     layers=layers, score_kind="synthetic",
                     source=f"simulator.routing.synthetic (seed {seed}; {params.reference})",
                     license="generated by moesim (MIT)",
                     notes=f"{tokens} tokens in {sequences} sequences")
    return Trace(meta=meta, expert_ids=ids, scores=scores, seq_id=seq_id, position=position)
