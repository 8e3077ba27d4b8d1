"""Routing statistics of a trace: expert popularity skew, temporal locality and router-score levels.

Definitions (per MoE layer l; a "selection" is one (token, expert) pair of a token's top-k set S_t):
- popularity p_l[e] = selections of expert e / (tokens * k); sums to 1 over the experts.
- entropy: Shannon entropy of p_l in bits, NOT normalised (uniform routing gives log2(num_experts),
  reported as `max_entropy`). Same definition as mbolt's `heat_entropy_bits`.
- hottest_share: max_e p_l[e], the hottest expert's share of all selections (uniform: 1 / num_experts;
  the fraction of tokens routed to it is k times this).
- consecutive_overlap: mean over consecutive token pairs (t-1, t) of the same sequence of
  |S_t ∩ S_{t-1}| / k.
- chance_overlap: k / num_experts, the expected overlap of two independent uniformly random k-sets.
- independent_overlap: k * sum_e p_l[e]^2, the overlap expected if tokens were drawn independently with
  the observed popularity (separates popularity skew from true temporal locality; an approximation that
  is exact when every expert's inclusion probability k*p_l[e] is independent of the others).
- mean_scores: mean router score at rank 1..k over all tokens and layers.

Arrays are read in chunks of tokens, so memory-mapped traces are never loaded whole.
"""

from __future__ import annotations

import numpy as np

from simulator.routing.trace import Trace

CHUNK_ELEMENTS = 1 << 22  # elements of the [chunk, L, k, k] comparison tensor per step


def popularity_stats(counts: np.ndarray) -> dict[str, list[float]]:
    """Entropy (bits) and hottest share per layer from selection counts [layers, experts]."""
    counts = np.asarray(counts, dtype=np.float64)
    p = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)  # [L, E]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log2(p), 0.0)
    return {"entropy": (-plogp.sum(axis=1)).tolist(), "hottest_share": p.max(axis=1).tolist(),
            "sum_sq": (p ** 2).sum(axis=1).tolist()}


def _chunks(tokens: int, per_token: int):
    step = max(1, CHUNK_ELEMENTS // max(per_token, 1))
    for start in range(0, tokens, step):
        yield start, min(tokens, start + step)


def selection_counts(trace: Trace) -> np.ndarray:
    """Selections per expert and layer: int64 [layers, experts]."""
    layers, k, experts = trace.meta.layers, trace.meta.top_k, trace.meta.num_experts
    counts = np.zeros(layers * experts, np.int64)
    offset = (np.arange(layers) * experts)[None, :, None]  # [1, L, 1]
    for a, b in _chunks(trace.tokens, layers * k):
        ids = np.asarray(trace.expert_ids[a:b], dtype=np.int64) + offset  # [n, L, k]
        counts += np.bincount(ids.ravel(), minlength=layers * experts)
    return counts.reshape(layers, experts)


def consecutive_overlap(trace: Trace) -> tuple[list[float], int]:
    """Per-layer mean |S_t ∩ S_{t-1}| / k over consecutive pairs within a sequence, and the pair count."""
    layers, k = trace.meta.layers, trace.meta.top_k
    shared = np.zeros(layers, np.int64)
    pairs = 0
    for a, b in _chunks(trace.tokens, layers * k * k):
        lo = max(a - 1, 0)
        ids = np.asarray(trace.expert_ids[lo:b])   # [n, L, k]
        seq = np.asarray(trace.seq_id[lo:b])       # [n]
        same = seq[1:] == seq[:-1]                 # [n-1] pair (t-1, t) within one sequence
        cur, prev = ids[1:][same], ids[:-1][same]  # [m, L, k]
        shared += (cur[:, :, :, None] == prev[:, :, None, :]).sum(axis=(0, 2, 3))
        pairs += int(same.sum())
    return (shared / max(pairs, 1) / k).tolist(), pairs


def mean_scores(trace: Trace) -> list[float]:
    """Mean router score at each rank 1..k over all tokens and layers."""
    layers, k = trace.meta.layers, trace.meta.top_k
    total = np.zeros(k, np.float64)
    for a, b in _chunks(trace.tokens, layers * k):
        total += np.asarray(trace.scores[a:b], dtype=np.float64).sum(axis=(0, 1))
    return (total / (trace.tokens * layers)).tolist()


def trace_stats(trace: Trace) -> dict:
    """All routing statistics of `trace` as a JSON-ready dict (per-layer lists indexed by MoE layer)."""
    m = trace.meta
    pop = popularity_stats(selection_counts(trace))
    overlap, pairs = consecutive_overlap(trace)
    return {
        "name": m.name, "model": m.model, "score_kind": m.score_kind,
        "tokens": trace.tokens, "sequences": trace.sequences, "layers": m.layers, "top_k": m.top_k,
        "num_experts": m.num_experts, "consecutive_pairs": pairs,
        "max_entropy": float(np.log2(m.num_experts)),
        "chance_overlap": m.top_k / m.num_experts,
        "entropy": pop["entropy"],
        "hottest_share": pop["hottest_share"],
        "consecutive_overlap": overlap,
        "independent_overlap": [m.top_k * s for s in pop["sum_sq"]],
        "mean_scores": mean_scores(trace),
    }


def format_stats(stats: dict) -> str:
    """A readable table of `trace_stats` output: a header, one row per MoE layer and the means."""
    head = (f"{stats['name']} ({stats['model']}): {stats['tokens']} tokens in {stats['sequences']} sequences, "
            f"{stats['layers']} MoE layers x {stats['num_experts']} experts, top-{stats['top_k']}\n"
            f"entropy in bits (uniform {stats['max_entropy']:.2f}); shares and overlaps as fractions; "
            f"chance overlap k/E = {stats['chance_overlap']:.3f}\n"
            f"mean router score by rank: " + " ".join(f"{s:.4f}" for s in stats["mean_scores"]))
    cols = ("entropy", "hottest_share", "consecutive_overlap", "independent_overlap")
    rows = [f"{'layer':>5} {'entropy':>8} {'hottest':>8} {'overlap':>8} {'indep.':>8}"]
    for layer, values in enumerate(zip(*(stats[c] for c in cols))):
        rows.append(f"{layer:>5} " + " ".join(f"{v:>8.3f}" for v in values))
    rows.append(f"{'mean':>5} " + " ".join(f"{np.mean(stats[c]):>8.3f}" for c in cols))
    return head + "\n" + "\n".join(rows)
