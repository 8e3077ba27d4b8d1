"""Prefetchers: what a running system can know when, at MoE layer l, it guesses layer l+1's experts.

Shared by both timers (simulator.des.moe_layer and simulator.fast.kernel make the same decisions in the same
order from what this module computes). A prefetcher never reads the routing of a token it has not reached,
nor layer l+1's routing of the tokens being decoded (not routed yet when the guess is made), except the
`recall` stand-in, which is told per slot whether its guess is right (below).

  previous-token  guess for layer l+1 the experts the same sequences used at layer l+1 in their previous
                  token (the trace's token before, same sequence: decoded or prefilled before this one);
                  a guessed expert's placement is that of the previous token's counts (tokens routing to it,
                  of them restored = in their top-n)
  transitions     per-layer transition counts (expert a at layer l -> expert b at layer l+1, over tokens)
                  learned from the calibration prefix; each token guesses the top-m successors of each of
                  its layer-l experts (ties: lower id; a never-seen expert guesses nothing); a successor of
                  one of its top-n experts counts as restored
  recall          a published lookahead recall (e.g. a router applied one layer ahead) as a statistic: for
                  each expert layer l+1 really routes to (a slot, ascending id), one draw decides whether
                  the guess is right (probability `recall`); a wrong slot guesses an expert drawn by the
                  layer's popularity in the calibration prefix (+1 each, so unseen experts stay possible)
                  among those layer l+1 does not route to and not already guessed. This mode knows the true
                  set only as far as deciding right/wrong per slot; which wrong expert, and whether it is
                  cached, is realistic.

The calibration prefix is the trace's first `calibration_tokens` tokens (storage order). When a prefetcher
learns from it (transitions, recall with calibration_tokens > 0) the timed decode starts after it: a
sequence inside the prefix is skipped, the one straddling it starts at token N (its positions, hence its
KV context, go on), later ones are whole (`decode_bounds`). So the timed steps are never calibration data.

What a guess does (simulator.des.prefetcher.Prefetching.prefetch, simulator.fast.prefetch.prefetch_layer): its
resident forms are refreshed (as the real cache would on a prefetch that finds them), then its missing
entries (the forms its placement needs) are copied at prefetch priority and inserted, evicting what the
cache rule says, until the next copy would exceed the layer's cache partition; a wrong guess's copy
takes link time, a cache slot, and may evict an entry the next layer needs. No entry is kept because the
true future routing needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.errors import UserError

if TYPE_CHECKING:
    from simulator.routing.trace import Trace

KINDS = ("none", "recall", "previous-token", "transitions")  # runtime profile / RunSpec names
NONE, RECALL, PREVIOUS, TRANSITIONS = range(len(KINDS))      # the timers' mode numbers


def mode(kind: str, on: bool) -> int:
    """The timers' mode number of prefetcher `kind` (NONE when prefetch is off)."""
    return KINDS.index(kind) if on else NONE


def learns(kind: str, calibration_tokens: int) -> bool:
    """Whether the prefetcher reads the calibration prefix (then the timed window starts after it)."""
    return calibration_tokens > 0 and kind in ("recall", "transitions")


def decode_bounds(bounds: list[tuple[int, int]], skip: int) -> list[tuple[int, int]]:
    """The [start, end) sequence bounds the decode takes when the first `skip` trace tokens are calibration;
    a prefix that leaves nothing to time is a UserError."""
    left = [(max(a, skip), b) for a, b in bounds if b > skip]
    if bounds and not left:
        raise UserError(f"the prefetcher's calibration prefix ({skip} tokens) covers the whole trace "
                        f"({bounds[-1][1]} tokens); nothing is left to time", field="prefetch_calibration_tokens")
    return left


def calibrate(trace: Trace, tokens: int, layers: int, experts: int) -> tuple[np.ndarray, np.ndarray]:
    """(popularity [L, E]: tokens routed to each expert, transitions [max(L-1, 0), E, E]: tokens routed to a
    at layer l and b at layer l+1) over the trace's first `tokens` tokens."""
    ids = np.asarray(trace.expert_ids[:tokens], dtype=np.int64)  # [N, L, k]
    pop = np.zeros((layers, experts), dtype=np.int64)
    trans = np.zeros((max(layers - 1, 0), experts, experts), dtype=np.int64)
    if not len(ids):
        return pop, trans
    layer = np.arange(layers, dtype=np.int64)[None, :, None]
    np.add.at(pop.reshape(-1), (layer * experts + ids).ravel(), 1)
    if layers > 1:
        a, b = ids[:, :-1, :, None], ids[:, 1:, None, :]  # [N, L-1, k, 1], [N, L-1, 1, k]
        flat = (layer[:, :-1, :, None] * experts + a) * experts + b
        np.add.at(trans.reshape(-1), flat.ravel(), 1)
    return pop, trans


def successors(trans: np.ndarray, m: int) -> np.ndarray:
    """[L-1, E, m]: each expert's m most frequent successors at the next layer (ties: lower id; -1 where
    fewer than m were seen)."""
    order = np.argsort(-trans, axis=2, kind="stable")[:, :, :m]    # descending count, then ascending id
    seen = np.take_along_axis(trans, order, axis=2) > 0
    return np.where(seen, order, -1).astype(np.int64)


def previous_in_same_step(seq: np.ndarray, pos: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """[n] bool: the token before each token of its sequence (sequence keys `seq` [n], positions `pos` [n])
    runs in the same step (tokens grouped in steps of `lens` [P] tokens): a prefill's tokens, whose earlier
    tokens are in the same forward pass and have not reached layer l+1 when layer l guesses."""
    step = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    seq, pos = np.asarray(seq, dtype=np.int64), np.asarray(pos, dtype=np.int64)
    order = np.lexsort((pos, seq, step))      # by step, then sequence, then position
    s, q, p = step[order], seq[order], pos[order]
    same = np.zeros(len(pos), dtype=bool)
    same[1:] = (s[1:] == s[:-1]) & (q[1:] == q[:-1]) & (p[1:] == p[:-1] + 1)  # its predecessor, in the step
    out = np.zeros(len(pos), dtype=bool)
    out[order] = same
    return out


def predicted(trace: Trace, idx: np.ndarray, kind: int, succ: np.ndarray | None, top_n: int,
              lens: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """What each token of `idx` [n] (grouped in steps of `lens` [P] tokens; None: one step) guesses for each
    layer (used for layer l+1 at layer l; layer 0's row is never used and is -1): (experts [n, L, W] int64,
    -1 = none, no repeats within a token's row; R: the first R positions count as restored).
    previous-token reads the token before of the same sequence when it ran in an earlier step (a trace's
    previous token in storage order; a serving view's own `previous_ids`); transitions reads the token's
    own layer l (routed when the guess for l+1 is made)."""
    idx = np.asarray(idx, dtype=np.int64)
    ids = trace.expert_ids
    L, k = ids.shape[1], ids.shape[2]
    if kind == PREVIOUS:
        pos = np.asarray(trace.position[idx], dtype=np.int64)
        seq = np.asarray(trace.seq_id[idx], dtype=np.int64)
        if hasattr(trace, "previous_ids"):  # a serving view: the previous token of the token's own request
            out = np.asarray(trace.previous_ids[idx], dtype=np.int64)
        else:                               # a trace: a sequence's tokens are consecutive
            out = np.asarray(ids[np.maximum(idx - 1, 0)], dtype=np.int64)
        has = (pos > 0) & ~previous_in_same_step(seq, pos, np.array([len(idx)]) if lens is None else lens)
        out[~has] = -1
        out[:, 0] = -1
        return out, top_n
    if kind != TRANSITIONS or succ is None:
        raise ValueError(f"prefetcher mode {kind} guesses from no predicted routing")
    m = succ.shape[2]
    own = np.asarray(ids[idx], dtype=np.int64)                      # [n, L, k]
    out = np.full((len(idx), L, k * m), -1, dtype=np.int64)
    if L > 1:
        layer = np.arange(L - 1)[None, :, None]
        out[:, 1:] = succ[layer, own[:, :-1]].reshape(len(idx), L - 1, k * m)  # successors of a, a's order
        for j in range(1, k * m):  # a repeat within a token's row: dropped (its first place counts)
            out[:, :, j][(out[:, :, :j] == out[:, :, j:j + 1]).any(axis=2)] = -1
    return out, top_n * m
