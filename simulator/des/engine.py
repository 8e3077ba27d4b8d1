"""The discrete-event timer: a routing trace drives kernels, copies and NDP ops through SimPy.

One decode process plays the GPU compute stream (simulator.des.gpu). Per step (one token for each active
sequence, simulator.schedule) and decoder layer:

    attention (weights + KV of the current contexts)          GPU kernel
    dense layer:  dense FFN                                    GPU kernel ("other")
    MoE layer:    router                                       GPU kernel
                  the experts of the batch's union S, each placed by its row of the placement table
                  (simulator.placement): see simulator.des.moe_layer
    after the last layer: LM head                              GPU kernel ("other")

Every instant of a step is a kernel or an attributed idle gap, so the breakdown adds up to the step time
exactly. Experts of offload policies live in CXL memory when the system has one, else host DRAM
(SystemSpec.expert_memory); their copies use the link to that memory.

Outputs (no per-event objects): per-step rows in typed arrays, the run counters (simulator.scenario),
and when asked an EventLog for the timeline.
"""

from __future__ import annotations

import sys
from itertools import pairwise

import numpy as np
import simpy

from simulator import costs
from simulator import prefetch as prefetchers
from simulator.des.cache import PartitionedCache
from simulator.des.gpu import GPU
from simulator.des.link import Link
from simulator.des.log import EventLog
from simulator.des.moe_layer import MoELayers
from simulator.des.ndp import NDPUnits
from simulator.placement import PlacementTable
from simulator.scenario import (
    ATTENTION,
    CATEGORIES,
    OTHER,
    ROUTER,
    STEP_COUNTERS,
    RunResult,
    Scenario,
    link_byte_columns,
    new_counters,
    new_step_rows,
    run_rng,
)
from simulator.schedule import BatchSchedule, steps_bound

RELEASE_EVERY = 4096  # decode steps between drops of the memory-mapped trace pages read so far


class DecodeEngine(MoELayers):
    """The machine of one scenario as SimPy components, and the decode process that drives it."""

    def __init__(self, env: simpy.Environment, sc: Scenario, table: PlacementTable, log: EventLog | None):
        self.env, self.sc, self.table, self.log = env, sc, table, log
        system, model = sc.system, sc.model
        self.model = model
        self.gpu = GPU(env, system.gpu, log)
        # Without prefetch a link carries on-demand copies only, in issue order (fifo): each copy is known
        # whole when issued (simulator.des.link.Copy) and the stream waits for known arrivals without a
        # SimPy event. Measured (benchmarks/engine_overhead.py): 1.7x a bare SimPy loop per simulated
        # event this way, 2.3-3.8x with every copy as SimPy events; prefetch needs the events.
        self.fifo = not sc.prefetch
        self.links = {spec.name: Link(env, spec, log, fifo=self.fifo) for spec in system.links}
        self.expert_link = self.links[table.expert_link.name].to_gpu
        self.ndp = NDPUnits(env, system.ndp, log) if system.ndp is not None else None
        self.cxl = self.links[table.cxl.name] if table.cxl is not None else None
        self.cache = PartitionedCache(sc.cache_capacity, sc.cache_policy,
                                      model.moe_layers if sc.cache_per_layer else None)
        self.rng = run_rng(sc.seed)
        self.c = new_counters()
        self.rows = new_step_rows(system)
        self.dirs = [(col, self.links[name].directions[d]) for col, name, d in link_byte_columns(system)]
        self._layer_offsets = np.arange(model.moe_layers, dtype=np.int64)[None, :, None] * model.num_experts
        self.prefill_time = self.decode_time = 0.0
        self._token_ops: dict[int, tuple] = {}
        self.run_step = 0  # steps run so far, prefill included (the prefetch decision log's step)
        self.init_layers()
        self.init_prefetch()

    # ---- step driver ----
    def decode(self, progress: bool):
        """The decode process: the prompt's prefill step (if any), then decode steps until done."""
        sc, env = self.sc, self.env
        sched = BatchSchedule(sc.decode_bounds(), sc.batch)
        if sc.prompt:
            idx = sched.prefill(sc.prompt)
            if len(idx):
                self.new_table(len(idx))  # placement codes of a step of that many tokens
                yield from self.step(idx)
                self.new_table(sc.batch)
                self.prefill_time = env.now
        self.open_window()
        t_start = env.now
        bar = self.progress_bar() if progress else None
        step = 0
        while sc.steps is None or step < sc.steps:
            idx = sched.next_step()
            if idx is None:
                break
            t0, before = env.now, self.snapshot()
            yield from self.step(idx)
            self.record_step(step, len(idx), t0, before)
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

    def progress_bar(self):
        from tqdm import tqdm

        sc = self.sc
        return tqdm(total=steps_bound(sc.decode_bounds(), sc.batch, sc.steps), unit="step", file=sys.stderr,
                    leave=False)

    def open_window(self) -> None:
        """Start measuring the decode: counters, busy times and link windows from zero."""
        self.gpu.take()
        self.gpu.busy = 0.0
        self.c = new_counters()
        for link in self.links.values():
            for d in link.directions.values():
                d.open_window()
        if self.ndp is not None:
            self.ndp.busy = [0.0] * self.ndp.count

    def snapshot(self) -> list[float]:
        """Cumulative bytes per link direction and step counters (a step's row is the difference)."""
        return [d.bytes for _, d in self.dirs] + [self.c[k] for k in STEP_COUNTERS]

    def record_step(self, step: int, tokens: int, t0: float, before: list[float]) -> None:
        rows = self.rows
        for name, value in zip(("step", "tokens", "start_s", "end_s"), (step, tokens, t0, self.env.now)):
            rows[name].append(value)
        for name, value in zip(CATEGORIES, self.gpu.take()):
            rows[name].append(value)
        names = [col for col, _ in self.dirs] + list(STEP_COUNTERS)
        for name, b, a in zip(names, before, self.snapshot()):
            rows[name].append(a - b)

    def step(self, idx: np.ndarray):
        """One forward pass over all layers for the trace tokens `idx` [n]."""
        sc, model, gpu = self.sc, self.model, self.gpu
        n = len(idx)
        routing = self.route(idx)
        guesses = routing  # what layer l's prefetch reads of layer l+1 (recall: the true routing, simulator.prefetch)
        if self.pf_mode in (prefetchers.PREVIOUS, prefetchers.TRANSITIONS):
            guesses = self.route_guesses(idx)
        context_sum = float(n * sc.context + np.asarray(sc.trace.position[idx], dtype=np.int64).sum())
        k = sc.op_overhead
        # the same ops in every layer of the step: (seconds, bytes)
        att_work = costs.attention_work(model, n, context_sum, sc.attention_bits, sc.attention_group,
                                        sc.attention_dequant_bytes_per_weight, sc.attention_format)
        att = gpu.seconds(*att_work, k["attention"]), att_work[1]
        router_work, shared_work, dense_work, head_work = self.token_ops(n)
        router = gpu.seconds(*router_work, k["router"]), router_work[1]
        shared = (gpu.seconds(*shared_work, k["other"]), shared_work[1]) if model.shared_experts else None
        flops, nbytes = costs.step_work(model, att_work, router_work, shared_work, dense_work, head_work)
        self.c["gpu_flops"] += flops
        self.c["gpu_bytes"] += nbytes
        dense = model.first_dense_layers
        for layer in range(dense):
            gpu.kernel(ATTENTION, *att, "attention", layer)
            gpu.launch(OTHER, *dense_work, "dense ffn", layer, overhead=k["other"])
        for moe, nxt in enumerate([*guesses[1:], None]):
            gpu.kernel(ATTENTION, *att, "attention", moe + dense)
            gpu.kernel(ROUTER, *router, "router", moe + dense)
            yield from self.moe_layer(moe, routing[moe], nxt, n, shared)
        gpu.launch(OTHER, *head_work, "lm head", overhead=k["other"])
        self.run_step += 1
        ev = gpu.sync()
        if ev is not None:
            yield ev

    def token_ops(self, n: int) -> tuple:
        """(FLOPs, bytes) of the router, shared experts, dense FFN and LM head for `n` tokens (memoised)."""
        ops = self._token_ops.get(n)
        if ops is None:
            model = self.model
            ops = self._token_ops[n] = (costs.router_work(model, n), costs.shared_work(model, n) if
                                        model.shared_experts else (0.0, 0.0), costs.dense_ffn_work(model, n),
                                        costs.lm_head_work(model, n))
        return ops

    def route(self, idx: np.ndarray) -> list[tuple[list[int], list[int], list[int], list[int]]]:
        """Per MoE layer: (experts of the union S ascending, tokens per expert, restored tokens per expert,
        the first placement row of each), its placement codes tabled."""
        layers, experts, top_n = self.model.moe_layers, self.model.num_experts, self.sc.top_n
        ids = np.asarray(self.sc.trace.expert_ids[idx], dtype=np.int64)  # [n, L, k], descending score
        ids += self._layer_offsets                                       # flat (layer, expert) ids
        counts = np.bincount(ids.ravel(), minlength=layers * experts)      # [L * E]
        restored = np.bincount(ids[:, :, :top_n].ravel(), minlength=layers * experts)
        return self.items(counts, restored)

    def route_guesses(self, idx: np.ndarray) -> list[tuple[list[int], list[int], list[int], list[int]]]:
        """route()'s tuples for what the tokens `idx` guess per layer (simulator.prefetch.predicted: per
        guessed expert, the tokens guessing it and of them those in a restored place), codes tabled."""
        layers, experts = self.model.moe_layers, self.model.num_experts
        pred, top = prefetchers.predicted(self.sc.trace, idx, self.pf_mode, self.pf_succ, self.sc.top_n)  # one step
        valid = pred >= 0
        ids = pred + self._layer_offsets
        counts = np.bincount(ids[valid], minlength=layers * experts)
        restored = np.bincount(ids[:, :, :top][valid[:, :, :top]], minlength=layers * experts)
        return self.items(counts, restored)

    def items(self, counts: np.ndarray, restored: np.ndarray) -> list[tuple[list[int], list[int], list[int], list[int]]]:
        """route()'s tuples from tokens [L * E] and restored tokens [L * E] per (layer, expert)."""
        experts, table = self.model.num_experts, self.table
        flat = np.flatnonzero(counts)                                     # ascending (layer, expert)
        codes = table.code(flat, counts[flat], restored[flat])
        table.ensure(codes)
        rows = table.slot[codes] if len(table.slot) else [table.first_row(c) for c in codes.tolist()]
        cuts = [0, *np.searchsorted(flat, self._layer_offsets.ravel()[1:]).tolist(), len(flat)]
        union, tokens, top = (flat % experts).tolist(), counts[flat].tolist(), restored[flat].tolist()
        rows = np.asarray(rows).tolist()
        return [(union[a:b], tokens[a:b], top[a:b], rows[a:b]) for a, b in pairwise(cuts)]

    def result(self) -> RunResult:
        return RunResult(
            scenario=self.sc, steps=self.rows, decode_time=self.decode_time, prefill_time=self.prefill_time,
            gpu_busy=self.gpu.busy,
            link_busy={name: {d: ld.busy for d, ld in link.directions.items()} for name, link in self.links.items()},
            ndp_busy=list(self.ndp.busy) if self.ndp is not None else [],
            counters={**self.c, "prefetch_wasted_bytes": self.c["prefetch_wasted_bytes"] + self.unused_prefetch_bytes(),
                      "cache_evictions": self.cache.evictions,
                      "cache_capacity_bytes": self.cache.capacity}, log=self.log)


def run(scenario: Scenario, *, record_events: bool = False, progress: bool = False) -> RunResult:
    """Simulate `scenario`; `record_events` keeps an EventLog for the timeline."""
    env = simpy.Environment()
    scenario.policy.prepare(scenario)
    engine = DecodeEngine(env, scenario, PlacementTable(scenario), EventLog() if record_events else None)
    env.process(engine.decode(progress))
    env.run()
    return engine.result()
