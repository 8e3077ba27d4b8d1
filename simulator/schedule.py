"""Which trace tokens each decode step processes: B sequences decode in lockstep.

The batch has B slots. Slot i starts on sequence i of the trace (storage order) and takes that
sequence's tokens in order, one per step; when its sequence ends, the slot takes the next sequence no
slot has used yet; when none is left the slot retires and the batch shrinks. Optional prefill: before
decoding, the first `prompt` tokens of each starting sequence form one large step (sequences that join a
slot later start decoding at their first token; their prompt is not modelled). A token's KV context is
RunSpec.context + its position in its sequence.
"""

from __future__ import annotations

import numpy as np


def steps_bound(bounds: list[tuple[int, int]], batch: int, tokens: int | None) -> int:
    """Decode steps a run takes at most (the KV bound, the progress bar): the requested count, capped by the
    trace's tokens spread over the batch (exact at batch 1)."""
    lengths = [b - a for a, b in bounds]
    upper = -(-sum(lengths) // max(1, min(batch, len(lengths))))  # ceil: lockstep with refills
    return min(tokens, upper) if tokens is not None else upper


class BatchSchedule:
    def __init__(self, bounds: list[tuple[int, int]], batch: int):
        """`bounds`: [start, end) token ranges of the trace's sequences, in storage order."""
        self._bounds = bounds
        self._next = min(batch, len(bounds))
        self._slots = [list(b) for b in bounds[:batch]]  # [cursor, end] per active slot

    def prefill(self, prompt: int) -> np.ndarray:
        """Token indices [P_total] of the first `prompt` tokens of every starting sequence."""
        parts = []
        for slot in self._slots:
            stop = min(slot[0] + prompt, slot[1])
            parts.append(np.arange(slot[0], stop))
            slot[0] = stop
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _refill(self) -> list[list[int]]:
        """Slots whose sequence ended take the next unused sequences, or retire; returns the active ones."""
        active = []
        for slot in self._slots:
            while slot[0] >= slot[1] and self._next < len(self._bounds):
                slot[:] = self._bounds[self._next]
                self._next += 1
            if slot[0] < slot[1]:
                active.append(slot)
        self._slots = active
        return active

    def next_step(self) -> np.ndarray | None:
        """Token indices [B_active] of the next decode step, or None when the trace is exhausted."""
        active = self._refill()
        if not active:
            return None
        idx = np.fromiter((s[0] for s in active), dtype=np.int64, count=len(active))
        for slot in active:
            slot[0] += 1
        return idx

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The next `count` decode steps (fewer when the trace ends) at once, as next_step() would give
        them: their token indices [n], step after step, and the tokens of each step [P]. Runs of steps in
        which no slot's sequence ends are built whole."""
        toks, lens, done = [], [], 0
        while done < count:
            active = self._refill()
            if not active:
                break
            run = min(count - done, *(end - cursor for cursor, end in active))  # no sequence ends within
            cursors = np.array([cursor for cursor, _ in active], dtype=np.int64)
            toks.append((np.arange(run, dtype=np.int64)[:, None] + cursors).ravel())  # [run, B] step-major
            lens.append(np.full(run, len(active), dtype=np.int64))
            for slot in active:
                slot[0] += run
            done += run
        if not toks:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(toks), np.concatenate(lens)
