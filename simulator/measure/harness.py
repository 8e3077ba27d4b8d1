"""A real offloaded MoE decode loop in torch: the thing moesim models, run and timed.

Built from the same Scenario moesim simulates (simulator.simulate.build_scenario): model shape, routing
trace, policy, per-expert bytes, cache capacity and rule, batch, steps, context, top-n and the runtime's
copy mode. Per decode step (B sequences in lockstep, simulator.schedule.BatchSchedule) and MoE layer:

    attention            GQA over each sequence's KV cache (context + position entries)     attention
    router               norm, router GEMM, softmax, top-k (the trace decides the routing)   router
    cache lookups        (host bookkeeping, counted in expert_gpu as the experts' fixed cost)
                         the experts of the batch's union ascending; per expert its stored form, then its
                         factors when a token restores it (policy.place): lookups and inserts in the very
                         cache class moesim uses (simulator.des.cache), so hits, misses and evictions are
                         moesim's by construction; every miss is copied host -> device slot
    copies               on the compute stream (runtime copies.stream: compute; the only kind a single-
                         threaded CPU device has) -> transfer_stall; or on a side stream (CUDA), each
                         expert waiting for its own copy (the wait -> transfer_stall)
    shared experts                                                                             other
    experts              cached first, then in copy order: dequant (low-bit) + GEMMs            expert_gpu
                         + the restored tokens' low-rank terms                                   compensation
    LM head (last layer)                                                                         other

Experts live in host memory (pinned on CUDA when the runtime says pinned) as the byte layouts of
simulator.measure.kernels, one buffer per (layer, expert, form) of exactly the bytes moesim counts (the
layout is padded up to moesim's figure if a format counts more; a format that counts fewer is refused).
The device cache is a pool of slots of each form; an entry evicted while its layer still needs it keeps
its slot until the layer ends, and an entry larger than the cache streams through a transient slot.

Timing: simulator.measure.device.StreamClock (the thread's CPU time on CPU, CUDA events on the compute
stream); the wall time of every step is kept too.
The host-side preparation of a step's routing tensors from the trace happens before the step's clock
starts (a real system's router produces them on the device; its GEMM, softmax and top-k are timed).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch

from simulator.des.cache import PartitionedCache
from simulator.errors import UserError
from simulator.measure import kernels as K
from simulator.measure.device import StreamClock, synchronize
from simulator.precision import FULL_PRECISION_BITS
from simulator.scenario import CATEGORIES, FORMS, Scenario
from simulator.schedule import BatchSchedule


@dataclass
class Bookkeeping:
    """What the harness did, in moesim's counter names (checked against the simulator's, exactly)."""

    cache_hits: int = 0
    cache_misses: int = 0
    cache_evictions: int = 0
    copied_bytes: float = 0.0
    fetched: dict = field(default_factory=lambda: dict.fromkeys(FORMS, 0.0))
    experts_gpu: int = 0
    copies: int = 0

    def as_dict(self) -> dict:
        return {"cache_hits": self.cache_hits, "cache_misses": self.cache_misses,
                "cache_evictions": self.cache_evictions, "copied_bytes": self.copied_bytes,
                "fetched_bytes": dict(self.fetched), "experts_gpu": self.experts_gpu, "copies": self.copies}


@dataclass
class RunTiming:
    seconds: float                       # decode wall time of all steps
    tokens: int
    breakdown: dict[str, float]          # seconds per category
    step_seconds: list[float]
    wall_seconds: float = 0.0            # perf_counter over the steps (on CPU includes waits for a core)

    @property
    def ms_per_token(self) -> float:
        return 1e3 * self.seconds / self.tokens


def check_supported(sc: Scenario) -> None:
    """One-line errors for what the harness does not run."""
    p = sc.policy
    if p.needs_ndp or p.reads_forms:
        from simulator.policies.registry import POLICIES

        ok = [n for n, c in POLICIES.items() if not c.needs_ndp and not c.reads_forms]
        raise UserError(f"the harness runs GPU-side policies that do not read the cache ({', '.join(ok)}); "
                        f"not {p.name}", field="policy")
    if sc.prefetch:
        raise UserError("the harness has no prefetcher; run without --prefetch", field="prefetch")
    if sc.prompt:
        raise UserError("the harness decodes only; run with --prompt 0", field="prompt")
    for name in ("bits", "rank", "lowbit", "factors"):
        arr = getattr(sc.sizes, name)
        if np.unique(arr).size != 1:
            raise UserError("the harness needs uniform expert sizes (no per-expert plan)", field="plan")
    bits = int(sc.sizes.bits[0, 0])
    if not (1 <= bits <= K.MAX_LOWBIT or bits >= FULL_PRECISION_BITS):
        raise UserError(f"the harness stores 1-{K.MAX_LOWBIT} bit codes or full precision, not {bits} bits",
                        field="bits")


class Harness:
    """The decode loop of one scenario on `device` (see the module docstring)."""

    def __init__(self, sc: Scenario, device: torch.device, seed: int = 0):
        check_supported(sc)
        self.sc, self.device = sc, device
        self.cuda = device.type == "cuda"
        model = sc.model
        self.L, self.E, self.k = model.moe_layers, model.num_experts, model.top_k
        a = model.attention
        self.shape = K.Shape(model.hidden, model.expert_ffn, a.heads, a.kv_heads, a.head_dim, model.vocab,
                             model.shared_experts * model.expert_ffn)
        self.bits, self.rank = int(sc.sizes.bits[0, 0]), int(sc.sizes.rank[0, 0])
        self.group = sc.group
        gen = torch.Generator().manual_seed(seed)
        positions = np.asarray(sc.trace.position)
        self.max_len = sc.context + int(positions.max()) + 2
        self.layers = [K.Layer(self.shape, self.E, sc.batch, self.max_len, device, gen) for _ in range(self.L)]
        self.head = (torch.randn(model.vocab, model.hidden, generator=gen) * 0.02).to(K.DT).to(device).t()
        self.final_norm = torch.ones(model.hidden, dtype=K.DT, device=device)
        self.x0 = (torch.randn(sc.batch, model.hidden, generator=gen)).to(K.DT).to(device)
        self.scratch = K.Scratch(self.shape, device)
        self.placements = {}
        self.forms = self._forms()
        self.size = {f: float(sc.sizes.of(f)[0, 0]) for f in self.forms}
        self.pinned_policy = self._place(1, 0).pinned
        self.host = {f: self._host_pool(f, gen) for f in self.forms}
        if self.cuda:
            self.copy_stream = torch.cuda.Stream(device) if sc.runtime.copies.stream == "copy" else None
        self.reset()

    # ---- setup ----
    def _place(self, tokens: int, restored: int):
        key = (tokens, restored)
        p = self.placements.get(key)
        if p is None:
            p = self.placements[key] = self.sc.policy.place(0, 0, tokens, restored, frozenset())
            if p.ndp_tokens or p.gpu_tokens != tokens:
                raise UserError(f"policy {self.sc.policy.name} places tokens off the GPU; the harness runs "
                                "GPU-side policies only", field="policy")
        return p

    def _forms(self) -> list[str]:
        p = self._place(1, 1)
        forms = [p.gpu_form]
        if p.comp_tokens and self.rank > 0 and float(self.sc.sizes.factors[0, 0]) > 0:
            forms.append("factors")
        return forms

    def _layout_bytes(self, form: str) -> int:
        return K.form_bytes(form, self.shape, self.bits, self.group, self.rank)

    def _host_pool(self, form: str, gen: torch.Generator) -> torch.Tensor:
        """[L E, bytes] uint8 in host memory: every expert's `form`, random contents of the right kind."""
        nbytes, layout = self.size[form], self._layout_bytes(form)
        if int(nbytes) != nbytes or nbytes < layout:
            raise UserError(f"moesim counts {nbytes:.0f} bytes for an expert's {form} form but the harness's "
                            f"layout needs {layout}; the format's byte layout changed (simulator.accounting) "
                            "and simulator/measure/kernels.py must follow it", field="bits")
        pool = torch.empty((self.L * self.E, int(nbytes)), dtype=torch.uint8)
        K.fill_random(pool[0], form, self.shape, self.bits, self.group, self.rank, gen)
        pool[1:].copy_(pool[0].expand(self.L * self.E - 1, -1))  # timing does not depend on the values
        if self.cuda and self.sc.runtime.copies.host_memory == "pinned":
            pool = pool.pin_memory()
        return pool

    def _slot(self, form: str, buf: torch.Tensor) -> K.Slot:
        return K.Slot(buf, form, self.shape, self.bits, self.group, self.rank)

    def reset(self) -> None:
        """A cold cache and fresh counters (before each timed pass)."""
        sc = self.sc
        self.cache = PartitionedCache(sc.cache_capacity, sc.cache_policy, self.L if sc.cache_per_layer else None)
        self.book = Bookkeeping()
        self.where: dict[tuple, K.Slot] = {}
        if self.pinned_policy:
            if not hasattr(self, "resident"):
                self.resident = {f: self.host[f].to(self.device) for f in self.forms}
            for f in self.forms:
                for le in range(self.L * self.E):
                    self.where[(le // self.E, le % self.E, f)] = self._slot(f, self.resident[f][le])
            return
        if not hasattr(self, "pool"):
            per_layer = self.k * sc.batch  # the most entries of one form a layer can need
            parts = self.L if sc.cache_per_layer else 1
            self.pool, self.transient = {}, {}
            for f in self.forms:
                fits = int(sc.cache_capacity // self.size[f]) if self.size[f] > 0 else 0
                count = min(self.L * self.E, parts * fits) + per_layer
                bufs = torch.zeros((count, int(self.size[f])), dtype=torch.uint8, device=self.device)
                self.pool[f] = [self._slot(f, bufs[i]) for i in range(count)]
                tbufs = torch.zeros((per_layer, int(self.size[f])), dtype=torch.uint8, device=self.device)
                self.transient[f] = [self._slot(f, tbufs[i]) for i in range(per_layer)]
        self.free = {f: list(reversed(self.pool[f])) for f in self.forms}
        if self.cuda:
            self.last_use: dict[int, torch.cuda.Event] = {}

    # ---- one step ----
    def routing(self, idx: np.ndarray):
        """Per MoE layer: [(expert, rows tensor, weights tensor, restored positions tensor | None, tokens,
        restored)] for the trace tokens `idx`, experts ascending; tensors on the device, made before timing."""
        sc = self.sc
        ids = np.asarray(sc.trace.expert_ids[idx], dtype=np.int64)      # [B, L, k], descending score
        scores = np.asarray(sc.trace.scores[idx], dtype=np.float32)
        rows_all, w_all, r_all, plan = [], [], [], []
        at = rat = 0
        for layer in range(self.L):
            items = []
            lid, lsc = ids[:, layer], scores[:, layer]
            for e in np.unique(lid).tolist():
                rows, cols = np.nonzero(lid == e)
                restored = np.flatnonzero(cols < sc.top_n)
                rows_all.append(rows)
                w_all.append(lsc[rows, cols])
                r_all.append(restored)
                items.append((e, at, at + len(rows), rat, rat + len(restored), len(rows), len(restored)))
                at += len(rows)
                rat += len(restored)
            plan.append(items)
        dev = self.device
        rows_t = torch.from_numpy(np.concatenate(rows_all)).to(dev)
        w_t = torch.from_numpy(np.concatenate(w_all)).to(K.DT).view(-1, 1).to(dev)
        r_t = torch.from_numpy(np.concatenate(r_all).astype(np.int64)).to(dev)
        return [[(e, rows_t[a:b], w_t[a:b], r_t[ra:rb], t, r) for e, a, b, ra, rb, t, r in items] for items in plan]

    def _assign(self, key: tuple) -> K.Slot:
        """The slot of missed `key` (just inserted in the cache, or streaming through when it is not)."""
        layer, _, form = key
        part = self.cache.part(layer)
        if key in part:
            slot = self.free[form].pop()
            self.where[key] = slot
            return slot
        slot = self.transient[form][self._transient_used[form]]
        self._transient_used[form] += 1
        return slot

    def lookups(self, layer: int, items) -> tuple[list, list]:
        """Cache lookups of the layer's experts in moesim's order; returns (GPU work in compute order,
        copies to issue [(key, slot)])."""
        part = self.cache.part(layer)
        needed = set()
        work, copies, deferred = [], [], []
        self._transient_used = dict.fromkeys(self.forms, 0)
        book = self.book
        for e, rows, wts, ridx, tokens, restored in items:
            p = self._place(tokens, restored)
            comp = p.comp_tokens > 0 and "factors" in self.forms
            keys = [(layer, e, p.gpu_form)] + ([(layer, e, "factors")] if comp else [])
            slots, missed = [], False
            for key in keys:
                needed.add(key)
                if p.pinned:
                    slots.append(self.where[key])
                    continue
                if part.lookup(key):
                    book.cache_hits += 1
                    slots.append(self.where[key])
                    continue
                book.cache_misses += 1
                before = part.evictions
                evicted = part.insert(key, self.size[key[2]])
                book.cache_evictions += part.evictions - before
                for old in evicted:  # a slot the layer still reads is freed when the layer ends
                    slot = self.where.pop(old)
                    if old in needed:
                        deferred.append((old[2], slot))
                    else:
                        self.free[old[2]].append(slot)
                slot = self._assign(key)
                slots.append(slot)
                copies.append((key, slot))
                missed = True
            work.append((missed, slots[0], slots[1] if comp else None, rows, wts, ridx if comp else None))
        for form, slot in deferred:
            self.free[form].append(slot)
        book.experts_gpu += len(work)
        work.sort(key=lambda w: w[0])  # stable: cached experts first, then the others in copy order
        return work, copies

    def copy(self, key: tuple, slot: K.Slot) -> torch.cuda.Event | None:
        layer, e, form = key
        src = self.host[form][layer * self.E + e]
        self.book.copies += 1
        self.book.copied_bytes += slot.nbytes
        self.book.fetched[form] += slot.nbytes
        if not self.cuda:
            slot.buf.copy_(src)
            return None
        stream = self.copy_stream
        if stream is None:
            slot.buf.copy_(src, non_blocking=True)
            return None
        prev = self.last_use.get(id(slot))
        with torch.cuda.stream(stream):
            if prev is not None:
                stream.wait_event(prev)
            slot.buf.copy_(src, non_blocking=True)
            done = torch.cuda.Event()
            done.record(stream)
        return done

    def step(self, idx: np.ndarray, clock: StreamClock) -> float:
        """One decode step over trace tokens `idx`; returns its seconds."""
        sc, b = self.sc, len(idx)
        plan = self.routing(idx)
        pos_np = sc.context + np.asarray(sc.trace.position[idx], dtype=np.int64)
        length = int(pos_np.max()) + 1
        dev = self.device
        pos = torch.from_numpy(pos_np).to(dev)
        rows = torch.arange(b, device=dev)
        mask = (torch.arange(length, device=dev)[None, :] <= pos[:, None]).view(b, 1, 1, length)
        x = self.x0[:b].clone()
        synchronize(dev)
        mark = clock.mark
        clock.start()
        for layer, items in enumerate(plan):
            lw = self.layers[layer]
            K.attention(x, lw, rows, pos, mask, length)
            mark("attention")
            xn = K.router(x, lw, self.k)
            mark("router")
            work, copies = self.lookups(layer, items)
            mark("expert_gpu")  # the host's bookkeeping per expert: part of the expert op's fixed cost
            events = {}
            for key, slot in copies:
                events[id(slot)] = self.copy(key, slot)
            if copies and (not self.cuda or self.copy_stream is None):
                mark("transfer_stall")
            if lw.shared is not None:
                K.shared_expert(xn, x, lw)
                mark("other")
            for _missed, slot, comp, rws, wts, ridx in work:
                if self.cuda and self.copy_stream is not None:
                    waited = False
                    for s in (slot, comp):
                        ev = events.get(id(s)) if s is not None else None
                        if ev is not None:
                            torch.cuda.current_stream(dev).wait_event(ev)
                            waited = True
                    if waited:
                        mark("transfer_stall")
                K.expert(xn, x, rws, wts, slot, self.scratch, comp, ridx, mark)
                if self.cuda and self.copy_stream is not None:
                    for s in (slot, comp):
                        if s is not None:
                            ev = torch.cuda.Event()
                            ev.record()
                            self.last_use[id(s)] = ev
        K.lm_head(x, self.final_norm, self.head)
        mark("other")
        return clock.close()

    def run(self, warmup: bool = False) -> RunTiming:
        """All the scenario's decode steps from a cold cache; `warmup`: a pass whose figures are dropped."""
        sc = self.sc
        self.reset()
        sched = BatchSchedule(sc.trace.sequence_bounds(), sc.batch)
        clock = StreamClock(self.device)
        total, tokens, steps, wall = 0.0, 0, [], 0.0
        acc: dict[str, float] = defaultdict(float)
        step = 0
        while sc.steps is None or step < sc.steps:
            idx = sched.next_step()
            if idx is None:
                break
            w0 = time.perf_counter()
            seconds = self.step(idx, clock)
            wall += time.perf_counter() - w0
            for cat, s in clock.take().items():
                acc[cat] += s
            total += seconds
            tokens += len(idx)
            steps.append(seconds)
            step += 1
        return RunTiming(total, tokens, {c: acc[c] for c in CATEGORIES}, steps, wall)
