"""Library entry points: build a compensation plan, evaluate accuracy (used by the CLI and the sweep).

`evaluate(weights="minilm", bits=3, group=128, rank_budget=8, alloc="kurtosis", top_n=2, seed=0)` returns
one flat dict of metrics. Expensive parts (the MoEfied model and its reference activations, quantized
experts, SVD bases) are cached per process, so a sweep over ranks and n costs little after the first call.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from simulator.accuracy.pipeline import (
    Settings,
    allocate,
    build_plan,
    compensated_layer,
    layer_error,
    mean,
    ranks_from_plan,
)
from simulator.accuracy.restore import restored_weights
from simulator.errors import UserError

DEFAULT_MAX_TOKENS = 1024


@lru_cache(maxsize=2)
def open_source(weights: str = "minilm"):
    """'minilm' (the shipped default) or a directory holding a Hugging Face MoE checkpoint (safetensors,
    read a layer at a time; no activations, no transformers needed)."""
    if weights == "minilm":
        from simulator.accuracy.minilm import MiniLMSource

        return MiniLMSource()
    from simulator.accuracy.weights import HFCheckpoint

    return HFCheckpoint(Path(weights))


@lru_cache(maxsize=1)
def open_model_source(weights: str, text: str | None = None, tokenizer: str | None = None,
                      max_tokens: int = DEFAULT_MAX_TOKENS):
    """A source with real activations and an end-to-end metric: 'minilm', or a checkpoint directory run
    with transformers on `text` (default: the shipped sample) with its tokenizer (or `tokenizer`)."""
    if weights == "minilm":
        if text or tokenizer:
            raise UserError("applies to checkpoints only (minilm runs the shipped sample)",
                            field="--text" if text else "--tokenizer")
        return open_source("minilm")
    from simulator.accuracy.hf_model import HFModelSource
    from simulator.accuracy.minilm import SAMPLE

    return HFModelSource(Path(weights), text or SAMPLE, tokenizer, max_tokens)


def compensate(weights: str, settings: Settings, **text_options) -> tuple[pd.DataFrame, dict]:
    """The plan; activation-aware factors on a checkpoint need the model run on text (transformers)."""
    source = open_model_source(weights, **text_options) if settings.act_aware else open_source(weights)
    return build_plan(source, settings)


def evaluate(weights: str = "minilm", bits: int = 3, group: int = 128, rank_budget: float = 0.0,
             alloc: str = "kurtosis", top_n: int = 0, seed: int = 0, plan: pd.DataFrame | None = None,
             plan_source: str = "plan", text: str | None = None, tokenizer: str | None = None,
             max_tokens: int = DEFAULT_MAX_TOKENS, per_layer: bool = False, **options) -> dict:
    """Accuracy of the low-bit + compensated model at top-n restoration.

    Ranks come from `plan` when given (its bits and group must match), else from the allocation rule.
    Keys: rel_output_error (mean over MoE layers), layer_cosine, cosine (end to end: sentence-embedding
    cosine for minilm, final-hidden-state cosine for a checkpoint), kl and ppl / ppl_full (checkpoint only:
    KL(full || compressed) per token and perplexities on the text; NaN for minilm), bytes_per_expert_mean
    (low-bit + factors), mean_rank, and the inputs; with per_layer, also `layers`: per MoE layer
    {layer, rel_output_error, cosine} on that layer's full-precision input.
    """
    source = open_model_source(weights, text, tokenizer, max_tokens)
    s = Settings(bits=bits, group=group, rank_budget=rank_budget, alloc=alloc, seed=seed, **options)
    top_k = source.layer(0).top_k
    if not 0 <= top_n <= top_k:
        raise UserError(f"must be in [0, {top_k}] (the model's top-k)", field="--top-n")
    if plan is not None:
        ranks = ranks_from_plan(plan, source, bits, group, plan_source)
    else:
        ranks, _ = allocate(source, s)
    layers, lowbit, restored, bytes_total, count = [], [], [], 0.0, 0
    for i in range(source.layers):
        qes, factors = compensated_layer(source, i, s, ranks[i])
        bytes_total += sum(qe.bytes_lowbit() + qe.bytes_factors(r, s.factor_dtype) for qe, r in zip(qes, ranks[i]))
        count += len(qes)
        lowbit.append([qe.lowbit for qe in qes])
        restored.append([restored_weights(qe.lowbit, f) for qe, f in zip(qes, factors)])
        layers.append(layer_error(source.layer(i), source.activations(i), lowbit[i], restored[i], top_n))
    nan = float("nan")
    end = {"cosine": nan, "kl": nan, "ppl": nan, "ppl_full": nan, **source.end_to_end(lowbit, restored, top_n)}
    out = {"weights": source.name, "bits": bits, "group": group, "rank_budget": rank_budget, "alloc": alloc,
           "top_n": top_n, "top_k": top_k, "seed": seed, "factor_dtype": s.factor_dtype,
           "rel_output_error": mean(r["rel_output_error"] for r in layers),
           "layer_cosine": mean(r["cosine"] for r in layers), **end,
           "bytes_per_expert_mean": bytes_total / count, "mean_rank": sum(map(sum, ranks)) / count}
    return {**out, "layers": layers} if per_layer else out


def rank_sweep(weights: str, bits_list: list[int], group: int, ranks: list[int], **options) -> pd.DataFrame:
    """Mean relative weight error ||E - U V^T||_F / ||W||_F over experts, at uniform rank r, per bits.

    Rows: bits, rank, err (rank 0 is the error before compensation).
    """
    source = open_source(weights)
    rows = []
    for bits in bits_list:
        s = Settings(bits=bits, group=group, **options)
        for r in ranks:
            errs = []
            for i in range(source.layers):
                qes, factors = compensated_layer(source, i, s, [r] * source.layer(i).num_experts)
                errs += [qe.rel_error(f) for qe, f in zip(qes, factors)]
            rows.append({"bits": bits, "rank": r, "err": mean(errs)})
    return pd.DataFrame(rows)
