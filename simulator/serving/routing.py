"""Which routing-trace tokens a request's tokens take, and the step's tokens as the timers read them.

Request i takes sequence i mod S of the trace (S sequences, storage order) and walks it from an offset
(0 on the first pass over the sequences, then (pass x OFFSET_STRIDE) mod its length, so two requests on the
same sequence do not route alike); its token at position j is the sequence's token (offset + j) mod its
length: a prompt longer than the sequence wraps around. So a step's experts are the union of its requests'
real routing (real ESFT routing for DeepSeek-V2-Lite; a synthetic trace for other presets).

Both timers read a step's tokens the way they read a decode step's: token indices into `scenario.trace`,
whose `expert_ids` [n, L, k] give the routing and `position` [n] the KV context (with Scenario.context 0).
StepTokens is that view of one planned chunk: expert_ids gathered from the trace, position = the tokens'
positions in their requests, seq_id = their requests, and previous_ids = the routing of each request's
previous token (what the previous-token prefetcher reads; simulator.prefetch.predicted uses it only when
that token ran in an earlier step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.routing.trace import Trace

OFFSET_STRIDE = 97  # tokens between the starts of two passes' requests on one sequence (a prime)


@dataclass
class StepTokens:
    """A trace-shaped view of a chunk's tokens (what the engines read of Scenario.trace)."""

    expert_ids: np.ndarray  # [n, L, k] int16 routed experts, descending score
    position: np.ndarray    # [n] int64 KV context of each token (its position in its request)
    meta: object            # the routing trace's TraceMeta (names it in errors)
    seq_id: np.ndarray      # [n] int64 the token's request
    previous_ids: np.ndarray  # [n, L, k] int16 its request's previous token's routing (position 0: its own)

    def release(self) -> None:
        """Nothing to drop: the view is in memory (the engines call this on memory-mapped traces)."""


class RequestRouting:
    def __init__(self, trace: Trace, requests: int):
        bounds = np.array(trace.sequence_bounds(), dtype=np.int64).reshape(-1, 2)  # [S, 2]
        i = np.arange(requests, dtype=np.int64)
        seq = i % len(bounds)
        self.start = bounds[seq, 0]                                    # [N] first trace token
        self.length = bounds[seq, 1] - bounds[seq, 0]                  # [N] tokens of the sequence
        self.offset = (i // len(bounds)) * OFFSET_STRIDE % self.length  # [N]
        self.expert_ids = np.ascontiguousarray(trace.expert_ids)       # [T, L, k] in memory: gathered per chunk
        self.meta = trace.meta

    def tokens(self, req: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Trace token [n] of each request token (request ids `req` [n], positions `pos` [n])."""
        return self.start[req] + (self.offset[req] + pos) % self.length[req]

    def view(self, req: np.ndarray, pos: np.ndarray) -> StepTokens:
        req, pos = np.asarray(req, dtype=np.int64), np.asarray(pos, dtype=np.int64)
        return StepTokens(self.expert_ids[self.tokens(req, pos)], pos, self.meta, req,
                          self.expert_ids[self.tokens(req, np.maximum(pos - 1, 0))])
