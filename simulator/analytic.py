"""The analytic fast path (`--engine analytic`): the DES's cost model evaluated without SimPy.

The trace runs in chunks of decode steps (after the prompt, one step of all its tokens). Per chunk, the
compiled kernel simulator.analytic_kernel does what the DES does per step and MoE layer, in its order:
routing, placements (tabled per code from Policy.place, _KernelState), the exact LRU or LFU cache,
prefetch with the draws from the DES's own Generator, and the timing of each layer. Cache state never
depends on timing, so hits, misses, evictions and prefetch decisions are the DES's exactly; every op
time comes from simulator.costs (the formulas the DES calls); this module adds the per-step ops outside
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

from array import array
from itertools import islice

import numpy as np
import simpy

from simulator import analytic_kernel as kernel
from simulator import costs
from simulator.engine import RunResult, Scenario, _Engine
from simulator.errors import UserError
from simulator.hardware.cache import FORMS
from simulator.hardware.gpu import CATEGORIES
from simulator.schedule import BatchSchedule

CHUNK = 2048  # batch slots x decode steps per kernel call (per chunk: Python overhead; arrays ~ KB per step)
BLIND_UP_FRONT = 1 << 18  # placement codes tabled before the first step (expert_blind policies)
NOTHING: frozenset = frozenset()  # the cache a policy that reads none of it is shown


class _KernelState:
    """What the compiled kernel (simulator.analytic_kernel.run_steps) runs on across chunks: the placement
    table, the cache and prefetch state, the counters' totals. Placements are asked once per (layer, expert,
    tokens, restored) code of the run and tabled (placements); a policy whose place() ignores the layer
    and expert (Policy.expert_blind) is asked once per (tokens, restored), all up front when few.
    """

    def __init__(self, eng: AnalyticEngine):
        self.eng = eng
        sc, model = eng.sc, eng.model
        self.L, self.E = model.moe_layers, model.num_experts
        self.sizes = np.stack([sc.sizes.of(f) for f in FORMS], axis=-1).reshape(-1)  # [L E 3] bytes by key
        self.key_wire = costs.wire_time(eng.elink, costs.TO_GPU, self.sizes)         # [L E 3] seconds
        K, parts = len(self.sizes), self.L if sc.cache_per_layer else 1
        self.cache = kernel.cache_state(K, parts)  # see analytic_kernel.lru_access, lfu_access
        self.copy_step = np.full(K, -1, dtype=np.int64)  # per key: run step of its latest copy ...
        self.copy_end = np.zeros(K)                       # ... and its arrival from that step's start
        self.totals = np.zeros(kernel.TOTALS)
        self.U = sc.system.ndp.units if sc.system.ndp is not None else 1
        self.steps_done = 0  # run steps so far (prefill included)
        self.clock = np.zeros(1)  # the DES's clock: where the next step starts
        self.read_forms = np.array([FORMS.index(f) for f in sc.policy.reads_forms], dtype=np.int64)
        self.codes(sc.batch)

    def codes(self, most: int) -> None:
        """Start the placement table for steps of at most `most` tokens: codes ((layer E + expert) K +
        tokens) K + restored with K = most + 1 (> tokens per (step, layer, expert): a token's top-k are
        distinct experts)."""
        sc = self.eng.sc
        self.K = most + 1
        # placement rows so far (see _rows): flags ti [R, 5] and seconds/bytes tf [R, 5], analytic_kernel's columns
        self.ti, self.tf = np.zeros((0, 5), dtype=np.int8), np.zeros((0, 5))
        # placement code -> its first row (-1: not asked yet): a dense table when small, else sorted codes
        n_codes = self.L * self.E * self.K * self.K
        self.slot = np.full(n_codes if n_codes <= 1 << 22 else 0, -1, dtype=np.int32)
        self.known = np.zeros(0, dtype=np.int64)             # (sparse) sorted codes seen so far
        self.known_at = np.zeros(0, dtype=np.int64)          # (sparse) their rows
        # an expert_blind policy: table the codes of up to BLIND_UP_FRONT (tokens, restored) pairs now, the
        # fewest tokens first (most experts get few of a step's tokens); the kernel stops for the others
        pairs = list(islice(((t, r) for t in range(1, most + 1) for r in range(t + 1)),
                            BLIND_UP_FRONT // (self.L * self.E)))
        if sc.policy.expert_blind and len(self.slot) and pairs:
            # a placement row depends on the expert only through its bytes per form, bits and rank: one
            # set of rows per class of experts alike, shared by the class's codes (fewer rows, in cache)
            z = sc.sizes
            _, rep, cls = np.unique(np.stack([z.lowbit, z.factors, z.full, z.bits, z.rank], axis=-1).reshape(-1, 5),
                                    axis=0, return_index=True, return_inverse=True)     # [C], [LE]
            t, r = np.array(pairs).T[:, None, :]                              # [1, Q] each
            first = self._rows(rep[:, None], t, r)                            # rows [C, Q, V]
            V, Q = 1 << len(sc.policy.reads_forms), len(pairs)
            le = np.arange(self.L * self.E)[:, None]                          # [LE, 1]
            self._point(((le * self.K + t) * self.K + r).ravel(),
                        (first + (cls.reshape(-1, 1) * Q + np.arange(Q)) * V).ravel())

    def steps(self, tok: np.ndarray, lens: np.ndarray, n: np.ndarray, ops: dict[str, np.ndarray]) -> np.ndarray:
        """Run the chunk's steps (token indices `tok` [n], tokens per step `lens` [P]; per step its tokens
        `n` [P] and the seconds of its attention, router, dense FFN, shared experts and LM head `ops`,
        each [P]) from the clock self.clock: updates the counters and busy totals, sets self.per_step
        (per-step counters) and returns the steps' figures [P, analytic_kernel.STEP_FLOATS]."""
        eng, sc = self.eng, self.eng.sc
        L, E, P = self.L, self.E, len(lens)
        experts = sc.trace.expert_ids[tok]                                      # [n, L, k]
        if len(experts) and not (0 <= int(experts.min()) and int(experts.max()) < E):  # the kernel indexes
            raise UserError(f"expert id out of range [0, {E})", source=sc.trace.meta.name,  # by them unchecked
                            field="expert_ids")
        lens = lens.astype(np.int64)
        act_b = costs.activation_bytes(eng.model, 1) * n                        # [P] bytes out to the NDP units
        if eng.cxl is not None:
            act_wire = costs.wire_time(eng.cxl, costs.FROM_GPU, act_b)
            r_lat, r_engines = eng.cxl.latency, eng.cxl.dma_engines
        else:
            act_wire = np.zeros(P)
            r_lat, r_engines = 0.0, 1
        out, counts = np.zeros((P, kernel.STEP_FLOATS)), np.zeros((P, kernel.STEP_INTS), dtype=np.int64)
        totals, ndp_busy = np.zeros(kernel.TOTALS), np.zeros(self.U)
        new = np.empty(P * L * min(E, experts.shape[2] * int(lens.max())), dtype=np.int64)  # codes not tabled
        f64 = lambda x: np.array(np.broadcast_to(x, (P,)), dtype=float)  # a writable copy: one array type
        s = 0
        while s < P:
            s, m = kernel.run_steps(  # scalars cast: one compiled signature whatever the config's types
                experts, lens, s, self.steps_done, L, E, self.K, int(sc.top_n), self.U, self.slot, self.known,
                self.known_at, new, self.read_forms, self.ti, self.tf, self.sizes, self.key_wire,
                bool(sc.cache_per_layer), float(sc.cache_capacity), *self.cache[:7], sc.cache_policy == "lfu",
                *self.cache[7:], bool(sc.prefetch and L > 1),
                float(sc.prefetch_hit_rate), eng.logic.rng, self.copy_step, self.copy_end,
                *(f64(ops[k]) for k in ("attention", "router", "dense", "shared", "head")),
                int(eng.model.first_dense_layers), f64(act_wire), f64(act_b), self.clock,
                float(eng.cxl.latency if eng.cxl is not None else 0.0), float(eng.elink.latency),
                int(eng.elink.dma_engines), float(r_lat), int(r_engines),
                bool(eng.cxl is not None and eng.cxl.name == eng.elink.name), bool(sc.loads_block_layer), out,
                counts, totals, ndp_busy)
            if m:  # ask the policy, then go on from the step that stopped
                self.placements(np.unique(new[:m]))
        self.steps_done += P
        self.totals += totals
        c = eng.logic.c
        self.per_step = {}
        for name, col in (("cache_hits", kernel.HITS), ("cache_misses", kernel.MISSES),
                          ("experts_gpu", kernel.N_GPU), ("experts_ndp", kernel.N_NDP)):
            self.per_step[name] = counts[:, col].astype(float)
            c[name] += float(counts[:, col].sum())
        for f, name in enumerate(FORMS):
            c[f"fetched_{name}_bytes"] += float(totals[kernel.FETCHED_LOWBIT + f])
        if sc.prefetch:
            c["prefetch_bytes"] += float(totals[kernel.PREFETCH_BYTES])
            c["prefetch_wasted_bytes"] += float(totals[kernel.PREFETCH_WASTED])
        eng.link_busy[eng.elink.name][costs.TO_GPU] += float(totals[kernel.BUSY_EXPERT_LINK])
        if eng.cxl is not None:
            eng.link_busy[eng.cxl.name][costs.FROM_GPU] += float(totals[kernel.BUSY_ACT])
            eng.link_busy[eng.cxl.name][costs.TO_GPU] += float(totals[kernel.BUSY_RESULT])
            eng.ndp_busy = [b + float(x) for b, x in zip(eng.ndp_busy, ndp_busy)]
        return out

    @property
    def evictions(self) -> int:
        return int(self.totals[kernel.EVICTIONS])

    def placements(self, new: np.ndarray) -> None:
        """Table the placements of codes ((layer E + expert) K + tokens) K + restored `new` [n] (not asked
        before) as placement rows, slot[code] -> row (see _table)."""
        rest, restored = np.divmod(new, self.K)
        le, tokens = np.divmod(rest, self.K)
        self._table(new, le, tokens, restored)

    def _table(self, new: np.ndarray, le: np.ndarray, tokens: np.ndarray, restored: np.ndarray) -> None:
        """Table codes `new` [n] of experts `le`, `tokens` and `restored` (as _rows, in the order of `new`):
        slot[code] -> the first of its rows."""
        ids = self._rows(le, tokens, restored) + (1 << len(self.eng.sc.policy.reads_forms)) * np.arange(len(new))
        self._point(new, ids)

    def _point(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Placement codes [n] -> their first rows ids [n]."""
        if len(self.slot):
            self.slot[codes] = ids
        else:
            known, known_at = np.concatenate([self.known, codes]), np.concatenate([self.known_at, ids])
            order = np.argsort(known, kind="stable")
            self.known, self.known_at = known[order], known_at[order]

    def _rows(self, le: np.ndarray, tokens: np.ndarray, restored: np.ndarray) -> int:
        """Append the placement rows of experts layer E + expert `le` with `tokens` and `restored`
        (broadcasting together: [n] each, or experts [LE, 1] by (tokens, restored) [1, Q]), in their
        ravel order, V = 2^len(Policy.reads_forms) rows each, one per residency of those forms of the
        expert (bit j: form reads_forms[j] resident); returns the first row's index. The policy answers
        each (expert, tokens, restored, residency) once, an expert_blind one once per (tokens, restored,
        residency). Per row (analytic_kernel's columns): whether the GPU part exists, looks up
        its weights (look, of form wform) and the factors (fac) in the cache, whether an NDP part exists
        (ndp), the op seconds (expert GEMMs on the GPU, compensation, NDP op; 0: none), the wire seconds
        and bytes of the NDP result."""
        sc, eng = self.eng.sc, self.eng
        shape = np.broadcast_shapes(np.shape(le), np.shape(tokens), np.shape(restored))
        read, place = sc.policy.reads_forms, sc.policy.place
        V = 1 << len(read)

        def cache(layer: int, expert: int, v: int) -> frozenset:  # what place() may see of the cache
            return frozenset((layer, expert, form) for j, form in enumerate(read) if v >> j & 1) if read else NOTHING

        if sc.policy.expert_blind:  # one answer per (tokens, restored), spread over the codes
            pairs, back = np.unique(np.ravel(tokens * self.K + restored), return_inverse=True)
            back = back.reshape(np.shape(tokens * self.K + restored))
            ps = [place(0, 0, t, rs, cache(0, 0, v)) for t, rs in zip(*np.divmod(pairs, self.K)) for v in range(V)]
        else:
            lay, ex = np.divmod(np.broadcast_to(le, shape).ravel(), self.E)
            ps = [place(layer, expert, t, rs, cache(layer, expert, v)) for layer, expert, t, rs in
                  zip(lay.tolist(), ex.tolist(), np.broadcast_to(tokens, shape).ravel().tolist(),
                      np.broadcast_to(restored, shape).ravel().tolist()) for v in range(V)]
            back = np.arange(len(ps) // V).reshape(shape)
        form_of = {f: i for i, f in enumerate(FORMS)}.__getitem__
        g_tok, g_form, c_tok, n_tok, n_form, pinned = zip(*ps)
        g_tok, c_tok, n_tok, pinned = (np.array(x, dtype=np.int64).reshape(-1, V)[back]  # [..., V]
                                       for x in (g_tok, c_tok, n_tok, pinned))
        g_form, n_form = (np.fromiter(map(form_of, x), np.int64, len(x)).reshape(-1, V)[back] for x in (g_form, n_form))
        le = np.asarray(le)[..., None]
        look = (g_tok > 0) & (pinned == 0)
        fac = look & (c_tok > 0) & (sc.sizes.rank.ravel()[le] > 0) & (sc.sizes.factors.ravel()[le] > 0)
        ops = self._op_seconds(le, g_tok, g_form, c_tok, n_tok, n_form)
        rbytes = costs.activation_bytes(eng.model, 1) * n_tok.astype(float)
        res_wire = costs.wire_time(eng.cxl, costs.TO_GPU, rbytes) if eng.cxl is not None else 0 * rbytes
        first = len(self.ti)

        def rows(*cols) -> np.ndarray:  # [n V, len(cols)], rows in the order of (new, residency)
            return np.stack([np.broadcast_to(c, (*shape, V)).ravel() for c in cols], axis=1)

        self.ti = np.concatenate([self.ti, rows(g_tok > 0, look, fac, g_form, n_tok > 0).astype(np.int8)])
        self.tf = np.concatenate([self.tf, rows(*ops, res_wire, rbytes)])
        return first

    def _op_seconds(self, le: np.ndarray, g_tok: np.ndarray, g_form: np.ndarray, c_tok: np.ndarray,
                    n_tok: np.ndarray, n_form: np.ndarray) -> np.ndarray:
        """Op seconds (expert GEMMs on the GPU, compensation, NDP op; 0: none) of placements of
        experts layer E + expert `le`; the arguments broadcast together (e.g. [n] each, or experts [LE, 1]
        by placements [1, Q]): pure functions of the placement code."""
        sc, model, gpu = self.eng.sc, self.eng.model, self.eng.gpu
        rank, factors, bits = (x.ravel() for x in (sc.sizes.rank, sc.sizes.factors, sc.sizes.bits))  # [L E]
        wsz = self.sizes[le * 3 + g_form]
        if sc.dequant_bytes_per_weight:  # an unfused dequantization reads more than a low-bit form
            wsz = wsz + np.where(g_form != FORMS.index("full"), self.eng.logic.dequant_bytes, 0.0)
        op_e = np.where(g_tok > 0, costs.gpu_time(gpu, *costs.expert_work(model, g_tok, wsz), sc.kernels["expert"]), 0.0)
        ranks, rank_of = np.unique(rank, return_inverse=True)  # FLOPs per token by rank: a table, not a loop
        per_token = np.array([model.factor_flops_per_token(int(rk)) for rk in ranks])[rank_of]  # [L E]
        comp = (g_tok > 0) & (c_tok > 0) & (rank[le] > 0)
        op_c = np.where(comp, costs.gpu_time(gpu, per_token[le] * c_tok, factors[le]), 0.0)
        n_bits = np.where(n_form == FORMS.index("full"), 16, bits[le])
        n_sz = self.sizes[le * 3 + n_form]
        op_n = np.zeros(np.broadcast_shapes(np.shape(le), np.shape(n_tok)))
        for b in np.unique(np.append(bits, 16)) if sc.system.ndp is not None else ():  # by the unit's precision
            on = (n_tok > 0) & (n_bits == b)
            if on.any():
                op_n = np.where(on, costs.ndp_time(sc.system.ndp, *costs.expert_work(model, n_tok, n_sz), int(b)), op_n)
        return op_e, op_c, op_n


class AnalyticEngine:
    def __init__(self, sc: Scenario):
        self.sc = sc
        self.logic = _Engine(simpy.Environment(), sc, None)  # the DES's counters, cache spec and Generator
        system = sc.system
        self.gpu = system.gpu
        self.elink = system.link_to(system.expert_memory)
        self.cxl = system.link_to("cxl") if system.ndp is not None else None
        self.rows = {name: array("d") for name in _Engine.STEP_COLUMNS}
        self.link_cols = [(f"bytes_{link.name}_{d}", link.name, d) for link in system.links
                          for d in (costs.TO_GPU, costs.FROM_GPU)]
        for col, _, _ in self.link_cols:
            self.rows[col] = array("d")
        self.link_busy = {link.name: {costs.TO_GPU: 0.0, costs.FROM_GPU: 0.0} for link in system.links}
        self.ndp_busy = [0.0] * (system.ndp.units if system.ndp is not None else 0)
        self.gpu_busy = 0.0
        self.time = 0.0

    @property
    def model(self):
        return self.sc.model

    def timing(self, tok: np.ndarray, lens: np.ndarray, state: _KernelState) -> dict[str, np.ndarray]:
        """Per-step start and end (the DES's clock), seconds per category and link bytes of a chunk (token
        indices `tok` [n], step after step, `lens` [P] tokens per step): the per-step ops outside the MoE
        layers here, the steps in the kernel (state.steps)."""
        sc, model, gpu = self.sc, self.model, self.gpu
        P = len(lens)
        n = lens.astype(np.float64)                                                  # [P] tokens
        pos = np.asarray(sc.trace.position[tok], dtype=np.int64)                     # [n] positions
        ctx = (n * sc.context + np.add.reduceat(pos, np.cumsum(n, dtype=np.int64) - n.astype(np.int64))
               ).astype(np.float64)                                                 # [P] context sums
        k = sc.kernels
        ops = {"attention": costs.gpu_time(gpu, *costs.attention_work(model, n, ctx, sc.attention_bits, sc.group,
                                                                       sc.attention_dequant_bytes_per_weight),
                                           k["attention"]),
               "router": costs.gpu_time(gpu, *costs.router_work(model, n), k["router"]),
               "shared": (costs.gpu_time(gpu, *costs.shared_work(model, n), k["other"])
                          if model.shared_experts else 0.0),
               "dense": costs.gpu_time(gpu, *costs.dense_ffn_work(model, n), k["other"]),
               "head": costs.gpu_time(gpu, *costs.lm_head_work(model, n), k["other"])}
        ops = {name: np.broadcast_to(np.asarray(v, dtype=float), (P,)) for name, v in ops.items()}
        steps = state.steps(tok, lens, n, ops)
        out = {cat: np.zeros(P) for cat in CATEGORIES}
        for _ in range(model.first_dense_layers):  # the DES's additions, in its order (see step())
            out["attention"] += ops["attention"]
            out["other"] += ops["dense"]
        for _ in range(model.moe_layers):
            out["attention"] += ops["attention"]
            out["router"] += ops["router"]
            if model.shared_experts:
                out["other"] += ops["shared"]
        out["other"] += ops["head"]
        for cat, col in (("expert_gpu", kernel.EXPERT_GPU), ("compensation", kernel.COMPENSATION),
                         ("expert_ndp", kernel.EXPERT_NDP), ("transfer_stall", kernel.STALL)):
            out[cat] += steps[:, col]
        out["start"], out["end"] = steps[:, kernel.START], steps[:, kernel.END]
        out["latency"] = out["end"] - out["start"]
        for col, _, _ in self.link_cols:
            out[col] = np.zeros(P)
        out[f"bytes_{self.elink.name}_{costs.TO_GPU}"] += steps[:, kernel.BYTES_EXPERT]
        if self.cxl is not None:
            out[f"bytes_{self.cxl.name}_{costs.FROM_GPU}"] += steps[:, kernel.BYTES_ACT]
            out[f"bytes_{self.cxl.name}_{costs.TO_GPU}"] += steps[:, kernel.BYTES_RESULT]
        return out

    def run(self) -> RunResult:
        sc = self.sc
        sched = BatchSchedule(sc.trace.sequence_bounds(), sc.batch)
        state = _KernelState(self)
        prefill = 0.0
        if sc.prompt:
            idx = sched.prefill(sc.prompt)
            if len(idx):  # one step of all prompt tokens (its own placement codes), then the decode's
                state.codes(len(idx))
                prefill = float(self.timing(idx, np.array([len(idx)]), state)["end"][0])
                state.codes(sc.batch)
                self.logic.c = dict.fromkeys(self.logic.c, 0.0)
                self.link_busy = {k: dict.fromkeys(v, 0.0) for k, v in self.link_busy.items()}
                self.ndp_busy = [0.0] * len(self.ndp_busy)
        self.decode_start = float(state.clock[0])
        done, per_chunk = 0, max(1, CHUNK // sc.batch)
        while sc.steps is None or done < sc.steps:
            want = per_chunk if sc.steps is None else min(per_chunk, sc.steps - done)
            tok, lens = sched.take(want)
            if not len(lens):
                break
            self._append(done, lens, self.timing(tok, lens, state), state.per_step)
            sc.trace.release()  # stream: keep only this chunk's trace pages resident
            done += len(lens)
            if len(lens) < want:
                break
        return self._result(prefill, state.evictions)

    def _append(self, first: int, lens: np.ndarray, t: dict, per_step: dict) -> None:
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
        for key, col in per_step.items():
            put(key, col)
        for col, _, _ in self.link_cols:
            put(col, t[col])

    def _result(self, prefill: float, evictions: int) -> RunResult:
        return RunResult(
            scenario=self.sc, steps=self.rows, decode_time=self.time, prefill_time=prefill,
            gpu_busy=self.gpu_busy, link_busy=self.link_busy, ndp_busy=self.ndp_busy,
            counters={**self.logic.c, "cache_evictions": evictions, "cache_capacity_bytes": self.logic.cache.capacity})


def run(scenario: Scenario) -> RunResult:
    """Evaluate `scenario` analytically; same RunResult shape as simulator.engine.run."""
    scenario.policy.prepare(scenario)
    return AnalyticEngine(scenario).run()

