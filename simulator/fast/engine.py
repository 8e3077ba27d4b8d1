"""The fast timer (`--engine analytic`): the DES's cost model evaluated without SimPy.

The trace runs in chunks of decode steps (after the prompt, one step of all its tokens). Per chunk, the
compiled kernel simulator.fast.kernel does what the DES does per step and MoE layer, in its order:
routing, placements (rows of the placement table, simulator.placement, the one the DES reads), the exact
LRU or LFU cache, prefetch with the draws from the run's Generator, and the timing of each layer. Cache
state never depends on timing, so hits, misses, evictions and prefetch decisions are the DES's exactly;
every op time comes from simulator.costs (through the table); this module adds the per-step ops outside
the MoE layers and assembles the RunResult. About 50-130x faster than the DES
(benchmarks/analytic_speedup.py).

A layer is timed as the DES times it: copies are scheduled on the link's `dma_engines` servers
(non-preemptive: an engine that frees takes the best copy arrived by then: demand before prefetch, then
arrival, then issue order), NDP ops queue FIFO per unit and their results go back in the order SimPy
ends them, and the GPU stream runs ready experts first, then waits for each copy. The kernel keeps the
DES's clock (absolute time) and issues the step's GPU ops in the DES's order, so without prefetch, where
every copy and NDP op of a layer ends within the layer and nothing contends across layers, every
per-step column and counter is the DES's bit for bit (run totals summed in another order, link and GPU
busy time, agree to rounding).

Queueing approximations (prefetch only):
- a layer's prefetch copies are scheduled right after its demand copies; copies still queued when the
  next layer issues its demand copies keep their place (the DES lets the new demand copies overtake
  them), and copies still in flight at the end of a step are dropped from the next step's link state
  (the DES keeps them); tests hold the result within 5% of the DES (measured: 0.1-1.7%).
"""

from __future__ import annotations

import numpy as np

from simulator import costs
from simulator import prefetch as prefetchers
from simulator.errors import UserError
from simulator.fast import buffers, kernel
from simulator.fast.cache import new_cache
from simulator.placement import PlacementTable
from simulator.scenario import (
    CATEGORIES,
    FETCHED,
    FORMS,
    WORK_COLUMNS,
    RunResult,
    Scenario,
    link_byte_columns,
    new_counters,
    new_step_rows,
    run_rng,
)
from simulator.schedule import BatchSchedule

CHUNK = 2048  # batch slots x decode steps per kernel call (per chunk: Python overhead; arrays ~ KB per step)
STEP_INT_COLUMNS = {"cache_hits": buffers.HITS, "prefetch_hits": buffers.PF_HITS, "cache_misses": buffers.MISSES,
                    "experts_gpu": buffers.N_GPU, "experts_ndp": buffers.N_NDP}


class AnalyticEngine:
    """The run's state across chunks: placement table, cache, copies, clock, counters and step rows."""

    def __init__(self, sc: Scenario, table: PlacementTable, log_decisions: int = 0):
        """`log_decisions`: keep the first that many prefetch decisions (decisions())."""
        self.sc, self.table = sc, table
        system = sc.system
        self.elink, self.cxl = table.expert_link, table.cxl
        self.cache = new_cache(table.key_size, table.key_wire, sc.model.moe_layers, sc.cache_per_layer,
                               sc.cache_capacity, sc.cache_policy == "lfu")
        keys = len(table.key_size)
        self.units = system.ndp.units if system.ndp is not None else 1
        self.out = buffers.Out(None, None, np.zeros(buffers.TOTALS), None, np.zeros(1),
                              np.full(keys, -1, dtype=np.int64), np.zeros(keys), np.zeros(keys, dtype=bool),
                              np.zeros((log_decisions, 5), dtype=np.int64),
                              np.zeros(1, dtype=np.int64))  # per chunk: out, counts, ndp_busy
        self.init_prefetch()
        self.links = buffers.Links(
            float(self.cxl.latency if self.cxl is not None else 0.0), float(self.elink.latency),
            int(self.elink.dma_engines), float(self.cxl.latency if self.cxl is not None else 0.0),
            int(self.cxl.dma_engines if self.cxl is not None else 1),
            bool(self.cxl is not None and self.cxl.name == self.elink.name), bool(sc.loads_block_layer))
        self.rng = run_rng(sc.seed)
        self.counters = new_counters()
        self.rows = new_step_rows(system)
        self.link_cols = link_byte_columns(system)
        self.link_busy = {link.name: {costs.TO_GPU: 0.0, costs.FROM_GPU: 0.0} for link in system.links}
        self.ndp_busy = [0.0] * (system.ndp.units if system.ndp is not None else 0)
        self.gpu_busy = self.time = 0.0
        self.steps_done = 0  # run steps so far (prefill included)

    def init_prefetch(self) -> None:
        """The prefetcher's mode and what it learned from the calibration prefix (simulator.prefetch)."""
        sc, model = self.sc, self.sc.model
        mode = sc.prefetch_mode if model.moe_layers > 1 else prefetchers.NONE
        weight, self.pf_succ = np.ones((model.moe_layers, model.num_experts), dtype=np.int64), None
        if mode in (prefetchers.RECALL, prefetchers.TRANSITIONS):
            pop, trans = prefetchers.calibrate(sc.trace, sc.prefetch_calibration_tokens, model.moe_layers,
                                               model.num_experts)
            weight = pop + 1
            if mode == prefetchers.TRANSITIONS:
                self.pf_succ = prefetchers.successors(trans, sc.prefetch_successors)
        self.pf = buffers.Prefetcher(int(mode), float(sc.prefetch_hit_rate), weight)
        self.no_pred = np.zeros((1, model.moe_layers, 0), dtype=np.int64)

    def predicted(self, tok: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, int]:
        """What the chunk's tokens (steps of `lens` tokens) guess per layer (simulator.prefetch.predicted),
        or an empty guess."""
        if self.pf.mode in (prefetchers.PREVIOUS, prefetchers.TRANSITIONS):
            pred, top = prefetchers.predicted(self.sc.trace, tok, self.pf.mode, self.pf_succ, self.sc.top_n, lens)
            return np.ascontiguousarray(pred, dtype=np.int64), int(top)
        return self.no_pred, 0

    def decisions(self) -> list[tuple[int, int, int, str, bool]]:
        """The logged prefetch decisions: (run step, MoE layer, expert, form, copied), as the DES logs them."""
        log = self.out.log[:int(self.out.n_log[0])]
        return [(int(a), int(b), int(e), FORMS[int(f)], bool(cp)) for a, b, e, f, cp in log]

    def unused_prefetch_bytes(self) -> float:
        """Bytes of prefetched entries no demand lookup has used (wasted at the run's end)."""
        return float(self.table.key_size[self.out.pending].sum())

    def step_ops(self, tok: np.ndarray, lens: np.ndarray) -> tuple[buffers.StepOps, tuple]:
        """Seconds of the ops outside the MoE layers and the activations sent to the NDP units, and the
        (FLOPs, bytes) of those ops (costs.step_work), per step of the chunk (token indices `tok` [n], step
        after step, `lens` [P] tokens per step): each [P]."""
        sc, model, gpu = self.sc, self.sc.model, self.sc.system.gpu
        P = len(lens)
        n = lens.astype(np.float64)                                                  # [P] tokens
        pos = np.asarray(sc.trace.position[tok], dtype=np.int64)                     # [n] positions
        ctx = (n * sc.context + np.add.reduceat(pos, np.cumsum(n, dtype=np.int64) - n.astype(np.int64))
               ).astype(np.float64)                                                 # [P] context sums (floats, as the DES's)
        k = sc.op_overhead
        works = (costs.attention_work(model, n, ctx, sc.attention_bits, sc.attention_group,
                                     sc.attention_dequant_bytes_per_weight, sc.attention_format),
                 costs.router_work(model, n), costs.shared_work(model, n) if model.shared_experts else (0.0, 0.0),
                 costs.dense_ffn_work(model, n), costs.lm_head_work(model, n))
        att, router, shared, dense, head = works

        def each(x) -> np.ndarray:  # [P] float, writable: one array type for the kernel
            return np.array(np.broadcast_to(x, (P,)), dtype=float)

        act_b = costs.activation_bytes(model, 1) * n                                 # [P] bytes out to NDP
        act_wire = costs.wire_time(self.cxl, costs.FROM_GPU, act_b) if self.cxl is not None else np.zeros(P)
        ops = buffers.StepOps(
            each(costs.gpu_time(gpu, *att, k["attention"])), each(costs.gpu_time(gpu, *router, k["router"])),
            each(costs.gpu_time(gpu, *dense, k["other"])),
            each(costs.gpu_time(gpu, *shared, k["other"]) if model.shared_experts else 0.0),
            each(costs.gpu_time(gpu, *head, k["other"])), each(act_wire), each(act_b))
        return ops, costs.step_work(model, *works)

    def run_chunk(self, tok: np.ndarray, lens: np.ndarray, ops: buffers.StepOps) -> tuple[np.ndarray, np.ndarray]:
        """Run the chunk's steps in the kernel, tabling placements when it stops for them: updates the
        counters and busy totals; returns the per-step figures [P, STEP_FLOATS] and counts [P, STEP_INTS]."""
        sc, table, model = self.sc, self.table, self.sc.model
        P = len(lens)
        experts = sc.trace.expert_ids[tok]                                      # [n, L, k]
        E = model.num_experts
        if len(experts) and not (0 <= int(experts.min()) and int(experts.max()) < E):  # the kernel indexes
            raise UserError(f"expert id out of range [0, {E})", source=sc.trace.meta.name,  # by them unchecked
                            field="expert_ids")
        lens = lens.astype(np.int64)
        pred, pred_top = self.predicted(tok, lens)
        rt = buffers.Routing(experts, lens, int(self.steps_done), int(model.moe_layers), int(E), int(sc.top_n),
                            int(model.first_dense_layers), int(self.units), pred, pred_top)
        totals = np.zeros(buffers.TOTALS)
        o = self.out._replace(out=np.zeros((P, buffers.STEP_FLOATS)),
                              counts=np.zeros((P, buffers.STEP_INTS), dtype=np.int64), totals=totals,
                              ndp_busy=np.zeros(self.units))
        most = int(lens.max())
        new = np.empty(P * model.moe_layers * (min(E, experts.shape[2] * most) + min(E, pred.shape[2] * most)),
                       dtype=np.int64)
        s = 0
        while s < P:
            s, m = kernel.run_steps(rt, table.rows(), self.cache, ops, self.links, o, self.rng, self.pf, s, new)
            if m:  # ask the policy, then go on from the step that stopped
                table.ensure(new[:m])
        self.steps_done += P
        self.out.totals[:] += totals
        self.add_totals(o.counts, totals, o.ndp_busy)
        return o.out, o.counts

    def add_totals(self, counts: np.ndarray, totals: np.ndarray, ndp_busy: np.ndarray) -> None:
        c = self.counters
        for name, col in STEP_INT_COLUMNS.items():
            c[name] += float(counts[:, col].sum())
        for f, name in enumerate(FORMS):
            c[FETCHED[name]] += float(totals[buffers.FETCHED_LOWBIT + f])
        if self.sc.prefetch:
            c["prefetch_bytes"] += float(totals[buffers.PREFETCH_BYTES])
            c["prefetch_wasted_bytes"] += float(totals[buffers.PREFETCH_WASTED])
        self.link_busy[self.elink.name][costs.TO_GPU] += float(totals[buffers.BUSY_EXPERT_LINK])
        if self.cxl is not None:
            self.link_busy[self.cxl.name][costs.FROM_GPU] += float(totals[buffers.BUSY_ACT])
            self.link_busy[self.cxl.name][costs.TO_GPU] += float(totals[buffers.BUSY_RESULT])
            self.ndp_busy = [b + float(x) for b, x in zip(self.ndp_busy, ndp_busy)]

    def timing(self, tok: np.ndarray, lens: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-step start and end (the DES's clock), seconds per category and link bytes of a chunk, and its
        per-step counts [P, STEP_INTS]."""
        model, P = self.sc.model, len(lens)
        ops, (flops, nbytes) = self.step_ops(tok, lens)
        steps, counts = self.run_chunk(tok, lens, ops)
        out = {cat: np.zeros(P) for cat in CATEGORIES}
        for _ in range(model.first_dense_layers):  # the DES's additions, in its order (see its step())
            out["attention"] += ops.att
            out["other"] += ops.dense
        for _ in range(model.moe_layers):
            out["attention"] += ops.att
            out["router"] += ops.router
            if model.shared_experts:
                out["other"] += ops.shared
        out["other"] += ops.head
        for cat, col in (("expert_gpu", buffers.EXPERT_GPU), ("compensation", buffers.COMPENSATION),
                         ("expert_ndp", buffers.EXPERT_NDP), ("transfer_stall", buffers.STALL)):
            out[cat] += steps[:, col]
        out["start"], out["end"] = steps[:, buffers.START], steps[:, buffers.END]
        for col, _, _ in self.link_cols:
            out[col] = np.zeros(P)
        out[f"bytes_{self.elink.name}_{costs.TO_GPU}"] += steps[:, buffers.BYTES_EXPERT]
        if self.cxl is not None:
            out[f"bytes_{self.cxl.name}_{costs.FROM_GPU}"] += steps[:, buffers.BYTES_ACT]
            out[f"bytes_{self.cxl.name}_{costs.TO_GPU}"] += steps[:, buffers.BYTES_RESULT]
        out["gpu_flops"] = flops + steps[:, buffers.GPU_FLOPS]  # the DES's order: the step's own ops first
        out["gpu_bytes"] = nbytes + steps[:, buffers.GPU_BYTES]
        for i, prec in enumerate(costs.NDP_PRECISIONS):
            out[f"ndp_flops_{prec}"] = steps[:, buffers.NDP_FLOPS_INT4 + i]
        out["ndp_bytes"] = steps[:, buffers.NDP_BYTES]
        out["copied_bytes"] = steps[:, buffers.BYTES_EXPERT]
        return out, counts

    def run(self) -> RunResult:
        sc = self.sc
        sched = BatchSchedule(sc.decode_bounds(), sc.batch)
        prefill = 0.0
        if sc.prompt:
            idx = sched.prefill(sc.prompt)
            if len(idx):  # one step of all prompt tokens (its own placement codes), then the decode's
                self.table.start(len(idx))
                prefill = float(self.timing(idx, np.array([len(idx)]))[0]["end"][0])
                self.table.start(sc.batch)
                self.counters = new_counters()
                self.link_busy = {k: dict.fromkeys(v, 0.0) for k, v in self.link_busy.items()}
                self.ndp_busy = [0.0] * len(self.ndp_busy)
        self.decode_start = float(self.out.now[0])
        done, per_chunk = 0, max(1, CHUNK // sc.batch)
        while sc.steps is None or done < sc.steps:
            want = per_chunk if sc.steps is None else min(per_chunk, sc.steps - done)
            tok, lens = sched.take(want)
            if not len(lens):
                break
            self.append(done, lens, *self.timing(tok, lens))
            sc.trace.release()  # stream: keep only this chunk's trace pages resident
            done += len(lens)
            if len(lens) < want:
                break
        return RunResult(
            scenario=sc, steps=self.rows, decode_time=self.time, prefill_time=prefill, gpu_busy=self.gpu_busy,
            link_busy=self.link_busy, ndp_busy=self.ndp_busy,
            counters={**self.counters,
                      "prefetch_wasted_bytes": self.counters["prefetch_wasted_bytes"] + self.unused_prefetch_bytes(),
                      "cache_evictions": int(self.out.totals[buffers.EVICTIONS]),
                      "cache_capacity_bytes": sc.cache_total_bytes})

    def append(self, first: int, lens: np.ndarray, t: dict, counts: np.ndarray) -> None:
        def put(name: str, x) -> None:  # the step column `name` (array "d") takes the per-step values x [P]
            self.rows[name].frombytes(np.ascontiguousarray(x, dtype=np.float64).tobytes())

        self.time = float(t["end"][-1]) - self.decode_start
        put("step", np.arange(first, first + len(lens)))
        put("tokens", lens)
        put("start_s", t["start"])
        put("end_s", t["end"])
        for cat in CATEGORIES:
            put(cat, t[cat])
            if cat not in ("expert_ndp", "transfer_stall"):
                self.gpu_busy += float(t[cat].sum())
        for name, col in STEP_INT_COLUMNS.items():
            put(name, counts[:, col].astype(float))
        for name in WORK_COLUMNS:
            put(name, t[name])
            self.counters[name] += float(t[name].sum())
        for col, _, _ in self.link_cols:
            put(col, t[col])


def run(scenario: Scenario) -> RunResult:
    """Evaluate `scenario` with the compiled kernel; the same RunResult as simulator.des.engine.run."""
    scenario.policy.prepare(scenario)
    return AnalyticEngine(scenario, PlacementTable(scenario)).run()
