"""The discrete-event engine: a routing trace drives kernels, copies and NDP ops through SimPy.

One decode process plays the GPU compute stream (simulator.hardware.gpu). Per step (one token for each
active sequence, simulator.schedule) and decoder layer:

    attention (weights + KV of the current contexts)          GPU kernel
    dense layer:  dense FFN                                    GPU kernel ("other")
    MoE layer:    router                                       GPU kernel
                  policy.place(...) for each expert of the batch's union S (sorted by expert id), resolved
                    into cache entries and op seconds (_Work) and memoised unless the policy reads the cache
                  NDP part: activations GPU->CXL (one copy of the step's hidden states), then per
                    expert an op on unit (expert mod units), then its output CXL->GPU
                  GPU part: cache lookups; each missing (layer, expert, form) is copied over the
                    expert link (on demand, priority 0) and inserted into the cache
                  prefetch (optional): copies for layer l+1 issued now at priority 1
                  shared experts                               GPU kernel ("other")
                  loads_block_layer (a stack that issues its loads on the compute stream): wait until
                    every on-demand copy of this layer has arrived
                  GPU experts, cached ones first, then in copy-issue order: wait for the copies
                    (idle -> transfer_stall), expert GEMM (expert_gpu; reads the stored form, plus
                    dequant_bytes_per_weight per weight of a low-bit form), compensation GEMMs for the
                    restored tokens (compensation) when the expert has a rank > 0
                  wait for all NDP outputs: idle time while some NDP unit computes this layer's
                    experts -> expert_ndp, the rest (CXL copies, queueing) -> transfer_stall
    after the last layer: LM head                              GPU kernel ("other")

Every instant of a step is thus a kernel or an attributed idle gap, so the breakdown adds up to the
step time exactly. Experts of offload policies live in CXL memory when the system has one, else host
DRAM (SystemSpec.expert_memory); their copies use the link to that memory.

Prefetch (deterministic): while layer l computes, for every (expert, form) layer l+1 will need and the
cache lacks, one draw u ~ U[0,1) from a numpy Generator seeded by RunSpec.seed decides: u < hit_rate
-> the right entry is copied; else a wrong one (the next expert id, cyclically, that l+1 does not use
and the cache lacks; same form) is copied and inserted, wasting its bytes, and the right one is
fetched on demand at layer l+1. Entries l+1 needs that are already resident are refreshed first (the
guess marks them used, as a demand lookup would), so prefetches evict other entries, never those; their
bytes come off the prefetch budget. Prefetching stops once it would exceed the capacity of layer l+1's
cache partition (it would only evict its own prefetches). A prefetched entry found by a later lookup is
a cache hit (the GPU still waits if its copy has not arrived).

Without prefetch the links are fifo (simulator.hardware.link): a copy is known whole when issued and
can be issued ahead of SimPy's clock, and NDP ops are timed when submitted, so the stream issues its
copies at its own clock and waits for known arrivals without SimPy events: a decode step then costs
one SimPy timeout (its end). With prefetch, copies are SimPy events and the stream syncs to its clock
before issuing copies and waits on them.

Outputs (no per-event objects): per-step rows in typed arrays, aggregate counters, and when asked an
EventLog for the timeline.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field
from functools import cache, partial
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import simpy

from simulator import costs
from simulator.config.model import ModelSpec
from simulator.config.system import SystemSpec
from simulator.hardware.cache import FORMS, PartitionedCache
from simulator.hardware.clock import delay_to
from simulator.hardware.gpu import ATTENTION, CATEGORIES, COMPENSATION, EXPERT_GPU, GPU, OTHER, ROUTER
from simulator.hardware.link import DEMAND, PREFETCH, Copy, Link
from simulator.hardware.log import EventLog
from simulator.hardware.ndp import NDPUnits
from simulator.policies.base import Policy
from simulator.routing.trace import Trace
from simulator.schedule import BatchSchedule

RELEASE_EVERY = 4096  # decode steps between drops of the memory-mapped trace pages read so far

FETCHED = {form: f"fetched_{form}_bytes" for form in FORMS}  # counter of the bytes copied per form
FETCH_NAME = {form: f"fetch {form}" for form in FORMS}  # event name of an on-demand copy per form
PREFETCH_NAME = {form: f"prefetch {form}" for form in FORMS}  # and of a prefetched one
KERNEL_OPS = ("attention", "router", "expert", "other")  # Scenario.kernels keys (RunSpec.kernels_*)


@dataclass(frozen=True)
class ExpertSizes:
    """Per (MoE layer, expert) storage: arrays [L, E]."""

    lowbit: np.ndarray   # float64 bytes of the b-bit form
    factors: np.ndarray  # float64 bytes of the low-rank factors (0 without compensation)
    full: np.ndarray     # float64 bytes at full precision
    bits: np.ndarray     # int64 bits of the low-bit form
    rank: np.ndarray     # int64 compensator rank

    def of(self, form: str) -> np.ndarray:
        return getattr(self, form)


@dataclass
class Scenario:
    """Everything one simulation needs, resolved (simulator.simulate builds it from a RunSpec)."""

    system: SystemSpec
    model: ModelSpec
    trace: Trace
    policy: Policy
    sizes: ExpertSizes
    cache_capacity: float          # bytes: of the shared cache, or of each layer's cache when per-layer
    cache_per_layer: bool = False
    free_hbm: float = 0.0          # HBM bytes left after resident weights, KV and reserve
    cache_policy: str = "lru"
    batch: int = 1
    steps: int | None = 256        # decode steps; None = until the trace is exhausted
    prompt: int = 0
    context: int = 512
    top_n: int = 0
    attention_bits: int = 16
    group: int = 128
    prefetch: bool = False
    prefetch_hit_rate: float = 1.0
    seed: int = 0
    kernels: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KERNEL_OPS, 1.0))  # launches per op
    dequant_bytes_per_weight: float = 0.0            # extra HBM bytes per low-bit expert weight per GPU call
    attention_dequant_bytes_per_weight: float = 0.0  # same for low-bit attention weights
    loads_block_layer: bool = False                  # a layer's experts wait for all its on-demand loads


@dataclass
class RunResult:
    """Raw outcome of one run; simulator.metrics turns it into tables and a summary."""

    scenario: Scenario
    steps: dict[str, array]          # per-step columns (see _Engine.STEP_COLUMNS + link byte columns)
    decode_time: float               # seconds from the first decode step to the end of the last
    prefill_time: float
    gpu_busy: float
    link_busy: dict[str, dict[str, float]]     # link -> direction -> wire-seconds in the window
    ndp_busy: list[float]
    counters: dict[str, float] = field(default_factory=dict)
    log: EventLog | None = None


def overlap(t0: float, t1: float, intervals: list[tuple[float, float]]) -> float:
    """Length of [t0, t1] covered by the union of `intervals`."""
    covered, reach = 0.0, t0
    for start, end in sorted(intervals):
        if reach > start:  # noqa: PLR1730 -- max() and min() are slow calls, and this runs per NDP op
            start = reach
        if t1 < end:  # noqa: PLR1730
            end = t1
        if end > start:
            covered += end - start
            reach = end
    return covered


class _Work(NamedTuple):
    """What placing one expert of one layer asks of the engine, resolved once: the cache entries its GPU
    part needs and its ops, as the arguments of the calls that issue them. Memoised per (layer, expert,
    tokens, restored) when the policy's place() ignores the cache (the same routing, the same work)."""

    entries: tuple[tuple[tuple[int, int, str], float, str], ...]  # (cache key, bytes, counter): the stored
                                # form, then the factors when compensated; () when pinned or no GPU part
    keys: tuple[tuple[int, int, str], ...]  # the cache keys of entries
    gpu: tuple | None    # GPU.kernel arguments of the expert GEMM; None without GPU tokens
    comp: tuple | None   # GPU.kernel arguments of the compensation GEMMs; None when not compensated
    ndp: tuple | None    # NDPUnits.run op (expert, seconds, bytes read, name, layer); None without NDP tokens
    out_bytes: float     # bytes of the NDP op's output


class _Copies:
    """Cache key (layer, expert, form) -> the copy that brings the entry, one dict per MoE layer (the engine
    drops arrived copies of a layer when it runs it: absent = nothing to wait for)."""

    def __init__(self, layers: int):
        self.layers: list[dict[tuple[int, int, str], simpy.Event]] = [{} for _ in range(layers)]

    def __setitem__(self, key: tuple[int, int, str], copy: simpy.Event) -> None:
        self.layers[key[0]][key] = copy

    def get(self, key: tuple[int, int, str]) -> simpy.Event | None:
        return self.layers[key[0]].get(key)


class _Engine:
    STEP_COLUMNS = ("step", "tokens", "start_s", "end_s", *CATEGORIES, "cache_hits", "cache_misses",
                    "experts_gpu", "experts_ndp")

    def __init__(self, env: simpy.Environment, sc: Scenario, log: EventLog | None):
        self.env, self.sc, self.log = env, sc, log
        system, model = sc.system, sc.model
        self.model = model
        self.gpu = GPU(env, system.gpu, log)
        self.fifo = not sc.prefetch  # links carry no prefetches: fifo directions (see the module docstring)
        self.links = {spec.name: Link(env, spec, log, fifo=self.fifo) for spec in system.links}
        self.expert_link = self.links[system.link_to(system.expert_memory).name].to_gpu
        self.ndp = NDPUnits(env, system.ndp, log) if system.ndp is not None else None
        self.cxl = self.links[system.link_to("cxl").name] if system.ndp is not None else None
        self.cache = PartitionedCache(sc.cache_capacity, sc.cache_policy,
                                      model.moe_layers if sc.cache_per_layer else None)
        self.ready = _Copies(model.moe_layers)  # cache key -> copy that brings it
        self.fetches: list[tuple[tuple[int, int, str], float]] = []  # (key, bytes) misses not yet copied
        self.rng = np.random.default_rng(sc.seed)
        self.size = {form: sc.sizes.of(form).tolist() for form in FORMS}  # form -> [L][E] bytes
        self.bits = sc.sizes.bits.tolist()
        self.rank = sc.sizes.rank.tolist()
        self.expert_work = cache(partial(costs.expert_work, model))  # (tokens, bytes) -> (FLOPs, bytes)
        self.dequant_bytes = sc.dequant_bytes_per_weight * model.expert_params  # per low-bit expert call
        self.compensation_work = cache(partial(costs.compensation_work, model))
        self.works: list[dict[tuple[int, int, int], _Work]] = [{} for _ in range(model.moe_layers)]
        self._layer_offsets = np.arange(model.moe_layers, dtype=np.int64)[None, :, None] * model.num_experts
        self.c = dict.fromkeys(("cache_hits", "cache_misses", "prefetch_bytes", "prefetch_wasted_bytes",
                                "experts_gpu", "experts_ndp", *FETCHED.values()), 0.0)
        self.rows = {name: array("d") for name in self.STEP_COLUMNS}
        self.dirs = [(f"bytes_{name}_{d}", link.directions[d])
                     for name, link in self.links.items() for d in (costs.TO_GPU, costs.FROM_GPU)]
        for col, _ in self.dirs:
            self.rows[col] = array("d")
        self.prefill_time = 0.0
        self.decode_time = 0.0

    STEP_COUNTERS = ("cache_hits", "cache_misses", "experts_gpu", "experts_ndp")

    def _snapshot(self) -> list[float]:
        """Cumulative bytes per link direction and step counters (a step's row is the difference)."""
        return [d.bytes for _, d in self.dirs] + [self.c[k] for k in self.STEP_COUNTERS]

    @property
    def _snapshot_names(self) -> list[str]:
        return [col for col, _ in self.dirs] + list(self.STEP_COUNTERS)

    # ---- step driver ----
    def decode(self, progress: bool):
        sc, env = self.sc, self.env
        sched = BatchSchedule(sc.trace.sequence_bounds(), sc.batch)
        if sc.prompt:
            idx = sched.prefill(sc.prompt)
            if len(idx):
                yield from self.step(idx)
                self.prefill_time = env.now
        self.gpu.take()
        self.gpu.busy = 0.0
        self.c = dict.fromkeys(self.c, 0.0)
        for link in self.links.values():
            for d in link.directions.values():
                d.open_window()
        if self.ndp is not None:
            self.ndp.busy = [0.0] * self.ndp.count
        t_start = env.now
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=sc.steps, unit="step", file=sys.stderr, leave=False)
        step = 0
        while sc.steps is None or step < sc.steps:
            idx = sched.next_step()
            if idx is None:
                break
            t0, before = env.now, self._snapshot()
            yield from self.step(idx)
            rows = self.rows
            for name, value in zip(("step", "tokens", "start_s", "end_s"), (step, len(idx), t0, env.now)):
                rows[name].append(value)
            for name, value in zip(CATEGORIES, self.gpu.take()):
                rows[name].append(value)
            for name, b, a in zip(self._snapshot_names, before, self._snapshot()):
                rows[name].append(a - b)
            step += 1
            if step % RELEASE_EVERY == 0:
                sc.trace.release()  # stream: keep only recently read trace pages resident
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        for link in self.links.values():
            for d in link.directions.values():
                d.close_window()
        self.decode_time = env.now - t_start

    def step(self, idx: np.ndarray):
        """One forward pass over all layers for the trace tokens `idx` [n]."""
        sc, model, gpu = self.sc, self.model, self.gpu
        n = len(idx)
        routing = self.route(idx)
        context_sum = float(n * sc.context + np.asarray(sc.trace.position[idx], dtype=np.int64).sum())
        k = sc.kernels
        # the same ops in every layer of the step: (seconds, bytes)
        flops, att_bytes = costs.attention_work(model, n, context_sum, sc.attention_bits, sc.group,
                                                sc.attention_dequant_bytes_per_weight)
        att = gpu.seconds(flops, att_bytes, k["attention"]), att_bytes
        flops, router_bytes = costs.router_work(model, n)
        router = gpu.seconds(flops, router_bytes, k["router"]), router_bytes
        shared = None
        if model.shared_experts:
            flops, shared_bytes = costs.shared_work(model, n)
            shared = gpu.seconds(flops, shared_bytes, k["other"]), shared_bytes
        dense = model.first_dense_layers
        for layer in range(dense):
            gpu.kernel(ATTENTION, *att, "attention", layer)
            gpu.launch(OTHER, *costs.dense_ffn_work(model, n), "dense ffn", layer, launches=k["other"])
        for moe, nxt in enumerate([*routing[1:], None]):
            gpu.kernel(ATTENTION, *att, "attention", moe + dense)
            gpu.kernel(ROUTER, *router, "router", moe + dense)
            yield from self.moe_layer(moe, routing[moe], nxt, n, shared)
        gpu.launch(OTHER, *costs.lm_head_work(model, n), "lm head", launches=k["other"])
        ev = gpu.sync()
        if ev is not None:
            yield ev

    def route(self, idx: np.ndarray) -> list[tuple[list[int], list[int], list[int]]]:
        """Per MoE layer: (experts of the union S ascending, tokens per expert, restored tokens per expert)."""
        layers, experts, top_n = self.model.moe_layers, self.model.num_experts, self.sc.top_n
        ids = np.asarray(self.sc.trace.expert_ids[idx], dtype=np.int64)  # [n, L, k], descending score
        ids += self._layer_offsets                                       # flat (layer, expert) ids
        counts = np.bincount(ids.ravel(), minlength=layers * experts)      # [L * E]
        restored = np.bincount(ids[:, :, :top_n].ravel(), minlength=layers * experts)
        flat = np.flatnonzero(counts)                                     # ascending (layer, expert)
        cuts = [0, *np.searchsorted(flat, self._layer_offsets.ravel()[1:]).tolist(), len(flat)]
        union, tokens, top = (flat % experts).tolist(), counts[flat].tolist(), restored[flat].tolist()
        return [(union[a:b], tokens[a:b], top[a:b]) for a, b in pairwise(cuts)]

    # ---- one MoE layer ----
    def moe_layer(self, moe: int, routing, next_routing, n: int, shared: tuple[float, float] | None):
        """Layer `moe` for `n` tokens routed as `routing` (route()'s tuple); `shared`: the shared experts' op
        (seconds, bytes), None without."""
        env, gpu, sc, model = self.env, self.gpu, self.sc, self.model
        layer = moe + model.first_dense_layers
        part = self.cache.part(moe)
        works, reads_cache = self.works[moe], sc.policy.reads_cache
        gpu_items, ndp_items, entries = [], [], []
        for expert, tokens, restored in zip(*routing):
            w = works.get((expert, tokens, restored)) or self.work(moe, expert, tokens, restored, part)
            if w.ndp is not None:
                ndp_items.append((expert, w))
            if w.gpu is not None:
                entries += w.entries
                if reads_cache:  # the next placement may depend on this lookup
                    self.lookup(entries, part)
                    entries = []
                gpu_items.append((expert, w, ()))
        if entries:
            self.lookup(entries, part)
        self.c["experts_gpu"] += len(gpu_items)
        self.c["experts_ndp"] += len(ndp_items)
        prefetch = sc.prefetch and next_routing is not None
        at = None  # copies start at the stream's time: issued ahead of SimPy's on fifo links, else synced
        loads = []
        if self.fetches or ndp_items or prefetch:
            if self.fifo:
                at = gpu.t if gpu.t > env.now else env.now  # noqa: FURB136 -- max() is a slow call
            else:
                ev = gpu.sync()
                if ev is not None:
                    yield ev
            if self.fetches:
                loads = self.fetch(layer, at)
        ndp_done = self.issue_ndp(moe, ndp_items, n, at) if ndp_items else None
        if prefetch:
            self.prefetch(moe + 1, next_routing)
        if shared is not None:
            gpu.kernel(OTHER, *shared, "shared experts", layer)
        copies = self.ready.layers[moe]
        if copies:
            if self.fifo:  # a copy that ends by the stream's clock needs no wait (nor would it be late)
                t = gpu.t if gpu.t > env.now else env.now  # noqa: FURB136
                arrived = [key for key, copy in copies.items() if copy.end <= t]
            else:
                arrived = [key for key, copy in copies.items() if copy.processed]
            for key in arrived:
                del copies[key]
        pending = None
        if copies:  # the copies this layer's experts wait for: (weights', factors') per item, None = arrived
            gpu_items = [(expert, w, list(map(copies.get, w.keys))) for expert, w, _ in gpu_items]
            pending = [ev for _, _, waits in gpu_items for ev in waits if ev is not None]
        if pending:  # still pending at the stream's time? Known arrivals need no event to tell
            if self.fifo:  # all end after the stream's clock (one ending right then was dropped above: ready,
                late = set(pending)  # as a sync to the clock would see it)
            else:
                ev = gpu.sync()
                if ev is not None:
                    yield ev
                late = {copy for copy in pending if not copy.processed}
            ready, waiting = [], []
            for item in gpu_items:
                (ready if late.isdisjoint(item[2]) else waiting).append(item)
            gpu_items = ready + waiting  # ready first, in order
        kernel, wait_until = gpu.kernel, gpu.wait_until
        if sc.loads_block_layer:  # loads issued on the compute stream: no expert starts before the last
            for copy in loads:
                if isinstance(copy, Copy):
                    wait_until(copy.end, "wait copy", layer)
                else:
                    yield from self.await_copy(copy, layer)
        for expert, w, waits in gpu_items:
            if waits and waits[0] is not None:  # the weights' copy
                if isinstance(waits[0], Copy):  # known arrival: the stream clock idles until then
                    wait_until(waits[0].end, "wait copy", layer)
                else:
                    yield from self.await_copy(waits[0], layer)
            kernel(*w.gpu)
            if w.comp is not None:
                if len(waits) > 1 and waits[1] is not None:  # the factors' copy
                    if isinstance(waits[1], Copy):
                        wait_until(waits[1].end, "wait copy", layer)
                    else:
                        yield from self.await_copy(waits[1], layer)
                kernel(*w.comp)
        if ndp_done is not None:  # the stream idles from its clock t0 until the last output arrives
            t0 = gpu.t if gpu.t > env.now else env.now  # noqa: FURB136
            end = (yield ndp_done) if isinstance(ndp_done, simpy.Event) else ndp_done  # no sync to t0 first:
            # if the outputs arrive before t0 nothing idles
            if end >= t0:
                gpu.idled(t0, "wait ndp", layer, overlap(t0, end, self.ndp.intervals), until=end)
            self.ndp.intervals.clear()

    def work(self, moe: int, expert: int, tokens: int, restored: int, part) -> _Work:
        """Place expert `expert` of layer `moe` for `tokens` routed tokens (`restored` of them in their
        top-n) and resolve what that asks of the engine (memoised unless the policy reads the cache)."""
        model, policy, kernels, size = self.model, self.sc.policy, self.sc.kernels, self.size
        p = policy.place(moe, expert, tokens, restored, part)
        layer = moe + model.first_dense_layers
        entries, keys, gpu_op, comp_op, ndp_op, out_bytes = (), (), None, None, None, 0.0
        if p.gpu_tokens:
            form = p.gpu_form
            weights = stored = size[form][moe][expert]
            if form != "full":  # an unfused dequantization reads more than the stored form
                weights += self.dequant_bytes
            flops, nbytes = self.expert_work(p.gpu_tokens, weights)
            gpu_op = (EXPERT_GPU, self.gpu.seconds(flops, nbytes, kernels["expert"]), nbytes, "expert", layer, expert)
            rank, factors = self.rank[moe][expert], size["factors"][moe][expert]
            if p.comp_tokens and rank:
                flops, nbytes = self.compensation_work(p.comp_tokens, rank, factors)
                comp_op = (COMPENSATION, self.gpu.seconds(flops, nbytes), nbytes, "compensation", layer, expert)
            if not p.pinned:  # cache entries: the stored form, then the factors when compensated (and stored)
                keys = ((moe, expert, form),)
                entries = ((keys[0], stored, FETCHED[form]),)
                if comp_op is not None and factors:
                    keys += ((moe, expert, "factors"),)
                    entries += ((keys[1], factors, FETCHED["factors"]),)
        if p.ndp_tokens:
            bits = 16 if p.ndp_form == "full" else self.bits[moe][expert]
            flops, nbytes = self.expert_work(p.ndp_tokens, size[p.ndp_form][moe][expert])
            ndp_op = (expert, self.ndp.seconds(flops, nbytes, bits), nbytes, "expert", layer)
            out_bytes = costs.activation_bytes(model, p.ndp_tokens)
        w = _Work(entries, keys, gpu_op, comp_op, ndp_op, out_bytes)
        if not policy.reads_cache:
            self.works[moe][expert, tokens, restored] = w
        return w

    def await_copy(self, copy: simpy.Event, layer: int):
        """Run the stream up to its clock; if event-driven `copy` has still not arrived, idle until it has."""
        if copy.processed:
            return
        sync = self.gpu.sync()
        if sync is not None:
            yield sync
        if not copy.processed:
            t0 = self.env.now
            yield copy
            self.gpu.idled(t0, "wait copy", layer)

    def lookup(self, entries, part) -> None:
        """Look up `entries` (_Work.entries) in cache partition `part`: count hits and misses, insert the
        misses and queue their copies for fetch()."""
        missed = part.access(entries)
        c = self.c
        c["cache_hits"] += len(entries) - len(missed)  # whole counts: the same floats as one by one
        c["cache_misses"] += len(missed)
        for key, size, counter in missed:
            c[counter] += size
            self.fetches.append((key, size))

    def fetch(self, layer: int, at: float | None = None) -> list:
        """Issue the on-demand copies lookup() queued, in lookup order (on a fifo link as if at `at`);
        returns them."""
        ready, transfer = self.ready, self.expert_link.transfer
        issued = []
        for key, size in self.fetches:
            if at is None:
                copy = ready[key] = transfer(size, DEMAND, FETCH_NAME[key[2]], layer, key[1])
            else:
                copy = ready.layers[key[0]][key] = transfer(size, DEMAND, FETCH_NAME[key[2]], layer, key[1], at)
            issued.append(copy)
        self.fetches.clear()
        return issued

    def prefetch(self, moe: int, routing) -> None:
        """Speculatively copy what layer `moe` will need (see the module docstring)."""
        part = self.cache.part(moe)
        experts = routing[0]
        num = self.model.num_experts
        size, lookup = self.size, part.lookup
        budget = part.capacity  # never prefetch more than the cache holds (it would evict its own prefetches)
        for expert in experts:  # what l+1 needs and holds counts as used: prefetches evict other entries
            for form in FORMS:
                if lookup((moe, expert, form)):
                    budget -= size[form][moe][expert]
        works, work = self.works[moe], self.work
        hit_rate, random = self.sc.prefetch_hit_rate, self.rng.random
        used, copies, c = None, self.ready.layers[moe], self.c
        transfer, insert, layer = self.expert_link.transfer, part.insert, moe + self.model.first_dense_layers
        for item in zip(*routing):  # placed one by one: a policy that reads the cache sees the prefetches so far
            for key, nbytes, counter in (works.get(item) or work(moe, *item, part)).entries:
                if key in part:
                    continue
                _, expert, form = key
                if random() >= hit_rate:
                    if used is None:
                        used = set(experts)
                    for j in range(expert + 1, expert + num):  # the next expert id, cyclically, ...
                        key = (moe, j % num, form)
                        if key[1] not in used and key not in part:  # ... l+1 does not use and the cache lacks
                            break
                    else:
                        continue
                    nbytes = size[form][moe][key[1]]
                if nbytes > budget:
                    return
                budget -= nbytes
                copies[key] = transfer(nbytes, PREFETCH, PREFETCH_NAME[form], layer, key[1])
                insert(key, nbytes)
                c[counter] += nbytes
                c["prefetch_bytes"] += nbytes
                if key[1] != expert:
                    c["prefetch_wasted_bytes"] += nbytes

    def issue_ndp(self, moe: int, items, n: int, at: float | None = None) -> float | simpy.Event:
        """Activations GPU->CXL (on a fifo link as if at `at`); when they arrive, one op per item on its NDP
        unit; each op's output CXL->GPU as the op ends. Returns the arrival time of the last output: on a
        fifo link everything is known now (outputs arrive in the order they are sent), else an event fires
        then with it as value."""
        env, model, cxl = self.env, self.model, self.cxl
        layer = moe + model.first_dense_layers
        ops = [w.ndp for _, w in items]
        activations = cxl.from_gpu.transfer(costs.activation_bytes(model, n), DEMAND, "activations", layer,
                                            at=at)
        if isinstance(activations, Copy):
            for end, i in self.ndp.run(activations.end, ops):
                expert, w = items[i]
                last = cxl.to_gpu.transfer(w.out_bytes, DEMAND, "result", layer, expert, end)
            return last.end
        done = env.event()
        left = [len(items)]

        def arrived(_ev):
            left[0] -= 1
            if not left[0]:
                done.succeed(env.now)

        def send(expert: int, out_bytes: float, _ev):
            cxl.to_gpu.transfer(out_bytes, DEMAND, "result", layer, expert).callbacks.append(arrived)

        def start(_ev):
            for end, i in self.ndp.run(env.now, ops):
                expert, w = items[i]
                env.timeout(delay_to(env.now, end)).callbacks.append(partial(send, expert, w.out_bytes))

        activations.callbacks.append(start)
        return done

    def result(self) -> RunResult:
        return RunResult(
            scenario=self.sc, steps=self.rows, decode_time=self.decode_time, prefill_time=self.prefill_time,
            gpu_busy=self.gpu.busy,
            link_busy={name: {d: ld.busy for d, ld in link.directions.items()} for name, link in self.links.items()},
            ndp_busy=list(self.ndp.busy) if self.ndp is not None else [],
            counters={**self.c, "cache_evictions": self.cache.evictions,
                      "cache_capacity_bytes": self.cache.capacity}, log=self.log)


def run(scenario: Scenario, *, record_events: bool = False, progress: bool = False) -> RunResult:
    """Simulate `scenario`; `record_events` keeps an EventLog for the timeline."""
    env = simpy.Environment()
    engine = _Engine(env, scenario, EventLog() if record_events else None)
    scenario.policy.prepare(scenario)
    env.process(engine.decode(progress))
    env.run()
    return engine.result()
