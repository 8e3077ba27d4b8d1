"""Continuous batching: which tokens of which requests each serving step runs.

Rules (FCFS, iteration-level scheduling with chunked prefill, as Orca / vLLM / Sarathi-Serve):
- A step is composed at its start time t. Requests that arrived by t wait in arrival order. Admission is
  strict FCFS: the oldest waiting request is admitted while fewer than `max_batch` requests run and the
  KV budget has the blocks of its whole sequence (prompt + output tokens, simulator.serving.kv); when it
  does not fit, admission waits (head-of-line) until a running request finishes and frees its blocks.
  Nothing is preempted: a request once admitted runs to its end, so no work is ever redone, and the KV
  bytes in use never exceed the budget. (The scheduler knows each request's output length, as a server
  that reserves max_new_tokens would when the lengths are capped there.)
- Every running request past its prefill decodes one token; the rest of the step's `max_tokens` go to
  prefill chunks of running requests still in prefill, in admission order (a request's prompt may span
  several steps). The step in which a request's last prompt token runs produces its first output token
  (its TTFT ends with that step); each decode step then produces one more; the step producing the last
  one finishes the request and frees its KV blocks.
- A token at position j of its request (prompt tokens 0 .. prompt-1, then the generated ones fed back)
  attends to the j tokens before it: its KV context is j.

`plan(max_steps)` composes the next steps as if no request arrived meanwhile (the runner keeps only the
steps that start before the next arrival and re-plans the rest; simulator.serving.runner). Runs of
identical decode steps (no prefill, no admission possible, until the first finish) are built whole.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from simulator.serving.kv import KVBudget


@dataclass
class Plan:
    """Steps composed by Scheduler.plan: per token [n] (step after step) and per step [P]."""

    tok_req: np.ndarray   # [n] int64 request of each token
    tok_pos: np.ndarray   # [n] int64 position of each token in its request (= its KV context)
    lens: np.ndarray      # [P] int64 tokens per step
    decode: np.ndarray    # [P] int64 decode tokens per step (the rest are prefill tokens)
    batch: np.ndarray     # [P] int64 requests in the step
    waiting: np.ndarray   # [P] int64 requests arrived and not admitted when the step starts
    kv_bytes: np.ndarray  # [P] float64 KV bytes reserved during the step
    admitted: list[tuple[int, int]] = field(default_factory=list)  # (step, request) admitted at its start
    first: list[tuple[int, int]] = field(default_factory=list)     # (step, request) first token at its end
    finished: list[tuple[int, int]] = field(default_factory=list)  # (step, request) finished at its end

    @property
    def steps(self) -> int:
        return len(self.lens)


class Scheduler:
    def __init__(self, arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray, max_batch: int,
                 max_tokens: int, kv: KVBudget):
        if max_batch > max_tokens:
            raise ValueError(f"max_batch {max_batch} > max_tokens {max_tokens}: decodes alone could overflow a step")
        self.arrival = arrival.tolist()
        self.prompt, self.output = prompt.tolist(), output.tolist()
        self.n = len(self.arrival)
        self.max_batch, self.max_tokens, self.kv = max_batch, max_tokens, kv
        self.arrived = 0      # requests with arrival <= the scheduler's time
        self.head = 0         # the next request to admit (admission is in arrival order)
        self.running: list[int] = []  # admitted and unfinished, in admission order
        self.prefilled: dict[int, int] = {}  # running request -> prompt tokens run
        self.generated: dict[int, int] = {}  # running request -> output tokens produced
        self.blocks: dict[int, int] = {}     # running request -> KV blocks reserved
        self.done = 0

    # ---- time ----
    def arrive(self, now: float) -> None:
        """Requests arriving by `now` join the queue."""
        while self.arrived < self.n and self.arrival[self.arrived] <= now:
            self.arrived += 1

    def next_arrival(self) -> float:
        return self.arrival[self.arrived] if self.arrived < self.n else float("inf")

    @property
    def idle(self) -> bool:
        """Nothing runs or waits (the next step needs the next arrival)."""
        return not self.running and self.head == self.arrived

    @property
    def finished(self) -> bool:
        return self.done == self.n

    def copy(self) -> Scheduler:
        other = copy.copy(self)
        other.running, other.prefilled, other.generated, other.blocks = (
            list(self.running), dict(self.prefilled), dict(self.generated), dict(self.blocks))
        other.kv = self.kv.copy()
        return other

    # ---- composing steps ----
    def _admit(self, step: int, admitted: list) -> None:
        while self.head < self.arrived and len(self.running) < self.max_batch:
            r = self.head
            need = self.prompt[r] + self.output[r]
            if not self.kv.can_reserve(need):
                break  # head-of-line: later requests wait behind it
            self.blocks[r] = self.kv.reserve(need)
            self.prefilled[r], self.generated[r] = 0, 0
            self.running.append(r)
            admitted.append((step, r))
            self.head += 1

    def _finish(self, r: int, step: int, finished: list) -> None:
        self.kv.free(self.blocks.pop(r))
        del self.prefilled[r], self.generated[r]
        self.running.remove(r)
        self.done += 1
        finished.append((step, r))

    def plan(self, max_steps: int) -> Plan:
        """Compose up to `max_steps` steps (fewer when everything admitted finishes and nothing waits);
        updates the scheduler as if they ran."""
        reqs, poss, lens, dec, bat, wait, kvb = [], [], [], [], [], [], []
        admitted, first, finished = [], [], []
        P = 0
        prompt, output, pre, gen = self.prompt, self.output, self.prefilled, self.generated
        while P < max_steps:
            self._admit(P, admitted)
            if not self.running:
                break
            decode = [r for r in self.running if pre[r] == prompt[r]]
            filling = [r for r in self.running if pre[r] < prompt[r]]
            waiting, kv_now = self.arrived - self.head, self.kv.used_bytes
            if not filling:  # identical decode steps until the first finish (nobody can be admitted before)
                run = min(max_steps - P, min(output[r] - gen[r] for r in decode))
                d = np.array(decode, dtype=np.int64)
                base = np.array([prompt[r] + gen[r] - 1 for r in decode], dtype=np.int64)
                reqs.append(np.tile(d, run))
                poss.append((np.arange(run, dtype=np.int64)[:, None] + base).ravel())
                lens += [len(d)] * run
                dec += [len(d)] * run
                bat += [len(d)] * run
                wait += [waiting] * run
                kvb += [kv_now] * run
                P += run
                for r in decode:
                    gen[r] += run
                    if gen[r] == output[r]:
                        self._finish(r, P - 1, finished)
                continue
            req = list(decode)
            pos = [prompt[r] + gen[r] - 1 for r in decode]
            budget = self.max_tokens - len(decode)
            chunks = []
            for r in filling:
                if budget <= 0:
                    break
                c = min(prompt[r] - pre[r], budget)
                chunks.append((r, c))
                budget -= c
            parts_r = [np.array(req, dtype=np.int64)] + [np.full(c, r, dtype=np.int64) for r, c in chunks]
            parts_p = [np.array(pos, dtype=np.int64)] + [np.arange(pre[r], pre[r] + c, dtype=np.int64)
                                                         for r, c in chunks]
            reqs.append(np.concatenate(parts_r))
            poss.append(np.concatenate(parts_p))
            lens.append(len(req) + sum(c for _, c in chunks))
            dec.append(len(req))
            bat.append(len(req) + len(chunks))
            wait.append(waiting)
            kvb.append(kv_now)
            for r in decode:
                gen[r] += 1
                if gen[r] == output[r]:
                    self._finish(r, P, finished)
            for r, c in chunks:
                pre[r] += c
                if pre[r] == prompt[r]:  # the prompt's last token ran: the first output token comes out
                    gen[r] = 1
                    first.append((P, r))
                    if output[r] == 1:
                        self._finish(r, P, finished)
            P += 1

        def cat(parts) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

        return Plan(cat(reqs), cat(poss), np.array(lens, dtype=np.int64), np.array(dec, dtype=np.int64),
                    np.array(bat, dtype=np.int64), np.array(wait, dtype=np.int64), np.array(kvb, dtype=np.float64),
                    admitted, first, finished)
