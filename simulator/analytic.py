"""The analytic fast path (`--engine analytic`): the DES's cost model evaluated without SimPy.

The trace runs in chunks of decode steps (after the prompt, one step of all its tokens). Cache state
never depends on timing, so hits, misses, evictions and prefetch decisions are the DES's exactly; every
op time comes from simulator.costs (the formulas the DES calls). Two ways to run a chunk:
- Every policy but offload-mixed (LRU or LFU, with or without prefetch, with a prompt): the compiled
  kernel simulator.analytic_kernel (_VectorSource) does the routing, the exact cache, the prefetch draws
  from the DES's own Generator, and the timing of each step one MoE layer after the other (about
  50-130x faster than the DES).
- offload-mixed (its placement reads the cache): a logical pass replays the DES's own code
  (simulator.engine._Engine.work/lookup/fetch/prefetch with a recording link in place of the SimPy copy
  engines), then numpy times the chunk's steps together, one MoE layer at a time (_moe_layer, _schedule).
Both time a layer alike: copies are scheduled on the link's `dma_engines` servers (non-preemptive: an
engine that frees takes the best copy arrived by then: demand before prefetch, then arrival, then issue
order), NDP ops queue FIFO per unit, and the GPU stream runs ready experts first, then waits for each
copy. Without prefetch every copy and NDP op of a layer ends within the layer, so nothing contends
across layers and the result is the DES's up to the order of the float additions (~1e-12 relative).

Queueing approximations (contended cases only):
- prefetch: a layer's prefetch copies are scheduled right after its demand copies; copies still queued
  when the next layer issues its demand copies keep their place (the DES lets the new demand copies
  overtake them), and copies still in flight at the end of a step are dropped from the next step's link
  state (the DES keeps them);
- ties between events at the same instant are resolved by issue order (SimPy by event-queue order),
  except NDP results, which the kernel orders as SimPy ends their ops.
"""

from __future__ import annotations

from array import array
from typing import NamedTuple

import numpy as np
import simpy

from simulator import analytic_kernel as kernel
from simulator import costs
from simulator.engine import RunResult, Scenario, _Engine
from simulator.hardware.cache import FORMS
from simulator.hardware.gpu import CATEGORIES
from simulator.hardware.link import DEMAND
from simulator.schedule import BatchSchedule

CHUNK = 256  # batch slots x decode steps evaluated together (CHUNK // batch steps: arrays stay cache-sized)
KERNEL_CHUNK = 2048  # the same for the compiled kernel (per chunk: Python overhead; arrays ~ KB per step)


class _RecordingLink:
    """Replaces a LinkDirection in the logical pass: records each transfer's bytes and priority; a copy is
    its index among the run's copies (the chunk's start at `base`)."""

    def __init__(self):
        self.base = 0                   # index of the chunk's first copy
        self.nbytes: list[float] = []   # per copy of the chunk
        self.prio: list[int] = []

    def transfer(self, nbytes, priority=DEMAND, name="copy", layer=-1, expert=-1) -> int:
        self.nbytes.append(nbytes)
        self.prio.append(priority)
        return self.base + len(self.nbytes) - 1

    def new_chunk(self) -> None:
        self.base += len(self.nbytes)
        self.nbytes, self.prio = [], []


def _reduce_rows(op: np.ufunc, x: np.ndarray, empty) -> np.ndarray:
    """`op` (add, maximum, logical_or) folded along each row of x [R, M], one column at a time (numpy's
    per-row reductions are slow on thin rows); `empty`: the result for M = 0. Float sums of 8 or more
    columns are left to numpy (its pairwise order); fewer numpy adds one by one from 0, as here."""
    if op is np.add and x.dtype.kind == "f" and x.shape[1] >= 8:
        return x.sum(axis=1)
    out = np.full(len(x), empty)
    for j in range(x.shape[1]):
        op(out, x[:, j], out=out)
    return out


def _schedule(engines: np.ndarray, wire: np.ndarray, arr: np.ndarray, prio: np.ndarray | None, lat: float,
              wtime: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Copies [P, J] on one link direction (simulator.hardware.link): a copy takes a free engine (free
    times `engines` [P, c]; a freed engine takes the best arrived copy by priority `prio` (None: one
    priority for all), arrival, column order), pays `lat`, then holds the wire (free time `wire` [P])
    for `wtime`; both are updated in place. Wire order = engine
    order (exact for FIFO traffic). Returns the arrival times [P, J].
    In a row whose copies share one priority the best arrived copy is always the earliest of the rest
    (arrival, then column), and in a row whose copies arrive together it is the first by (priority,
    column): such rows are served in that fixed order (_serve_in_order); rows mixing priorities and
    arrival times (prefetches beside NDP results) are list-scheduled (_list_schedule)."""
    P, J = arr.shape
    if not J:
        return np.zeros((P, J))
    a = np.where(valid, arr, np.inf)
    if prio is None:
        return _serve_in_order(engines, wire, arr, lat, wtime, valid, np.argsort(a, axis=1, kind="stable"))
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    one_prio = np.where(valid, prio, hi).min(axis=1) == np.where(valid, prio, lo).max(axis=1)
    one_arr = a.min(axis=1) == np.where(valid, arr, -np.inf).max(axis=1)
    mixed = ~(one_prio | one_arr) & valid.any(axis=1)
    m = np.flatnonzero(mixed)
    if len(m):
        eng_m, wire_m = engines[m], wire[m]
        end_m = _list_schedule(eng_m, wire_m, arr[m], prio[m], lat, wtime[m], valid[m])
        engines[m], wire[m] = eng_m, wire_m
        valid = valid & ~mixed[:, None]
    order = np.argsort(np.where(one_prio[:, None], a, np.where(valid, prio, np.inf)), axis=1, kind="stable")
    end = _serve_in_order(engines, wire, arr, lat, wtime, valid, order)
    if len(m):
        end[m] = end_m
    return end


def _serve_in_order(engines: np.ndarray, wire: np.ndarray, arr: np.ndarray, lat: float, wtime: np.ndarray,
                    valid: np.ndarray, order: np.ndarray) -> np.ndarray:
    """_schedule of rows served in a fixed order: per row, the copies `order` [P, J] lists, valid ones
    first; each takes the engine freed first. One pass over the columns, on the rows that still have
    copies (rows sorted by their number of copies, so those are a leading block). The wire serves one
    copy at a time, so the copies end in service order; when every engine is free by a row's first
    arrival (always, unless prefetches spill over from an earlier layer), copy j < c starts at its
    arrival and copy j >= c takes the engine copy j - c frees: no engine search."""
    P, J = arr.shape
    count = _reduce_rows(np.add, valid, 0)
    by_count = np.argsort(-count, kind="stable")
    flat = by_count[:, None] * J + order[by_count]                # [P, J] service slots -> flat [P, J]
    a, w = np.take(arr, flat), np.take(wtime, flat)
    eng, wir = engines[by_count], wire[by_count]
    live = P - np.cumsum(np.bincount(count, minlength=J + 1))    # [J + 1] rows with more than j copies
    c = eng.shape[1]
    rows = np.arange(P)
    out = np.zeros((P, J))
    idle = bool((_reduce_rows(np.maximum, eng, -np.inf) <= np.where(count[by_count] > 0, a[:, 0], np.inf)).all())
    for j in range(int(count.max())):
        n = live[j]
        if idle:
            t = a[:n, j] + lat if j < c else np.maximum(out[:n, j - c], a[:n, j]) + lat
        else:
            e, r = eng[:n], rows[:n]
            srv = e.argmin(axis=1)
            t = np.maximum(e[r, srv], a[:n, j])
            t += lat
        np.maximum(t, wir[:n], out=t)
        t += w[:n, j]
        out[:n, j] = t
        if not idle:
            e[r, srv] = t
        wir[:n] = t
    if idle:  # the engines free last: the last c of (earlier free times ascending, this row's ends)
        at = count[by_count, None] + np.arange(c)                # [P, c] in that sequence
        eng = np.where(at < c, np.take_along_axis(np.sort(eng, axis=1), np.minimum(at, c - 1), axis=1),
                       np.take_along_axis(out, np.maximum(at - c, 0), axis=1))
    engines[by_count], wire[by_count] = eng, wir
    end = np.zeros((P, J))
    end.reshape(-1)[flat] = out
    return end


def _list_schedule(engines: np.ndarray, wire: np.ndarray, arr: np.ndarray, prio: np.ndarray, lat: float,
                   wtime: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """_schedule by list scheduling: each freed engine picks the best copy arrived by then."""
    P, J = arr.shape
    rows = np.arange(P)
    end = np.zeros((P, J))
    done = ~valid
    rank = np.argsort(np.argsort(arr, axis=1, kind="stable"), axis=1)  # arrival order, ties by column
    key0 = prio * J + rank
    # rows are independent: work on the rows still scheduling (`idx`), dropping finished ones when many
    idx, eng, wir = rows, engines, wire
    for _ in range(J):
        live = ~done.all(axis=1)
        n_live = int(live.sum())
        if not n_live:
            break
        if n_live < 0.5 * len(idx):
            engines[idx], wire[idx] = eng, wir
            idx, eng, wir, arr, key0, wtime, done = (x[live] for x in (idx, eng, wir, arr, key0, wtime, done))
            live = np.ones(n_live, dtype=bool)
        rows = np.arange(len(idx))
        srv = eng.argmin(axis=1)
        tf = eng[rows, srv]
        tstar = np.maximum(tf, np.where(done, np.inf, arr).min(axis=1))
        key = np.where(~done & (arr <= tstar[:, None]), key0, np.iinfo(np.int64).max)
        pick = key.argmin(axis=1)
        wire_start = np.maximum(np.maximum(tf, arr[rows, pick]) + lat, wir)
        e = wire_start + wtime[rows, pick]
        r, p = rows[live], pick[live]
        end[idx[r], p] = e[live]
        eng[r, srv[live]] = e[live]
        wir[r] = e[live]
        done[r, p] = True
    engines[idx], wire[idx] = eng, wir
    return end


class LayerArrays(NamedTuple):
    """One MoE layer of every step in a chunk, padded to the largest row (P rows) with zeros."""

    g_e: np.ndarray      # float [P, G] expert GEMM seconds of the GPU items, in S order (0: padding)
    g_c: np.ndarray      # float [P, G] compensation seconds (0: none)
    wj: np.ndarray       # int   [P, G] 1 + column of the weights' copy among this layer's copies (0: none)
    fj: np.ndarray       # int   [P, G] 1 + column of the factors' copy (0: none)
    w_ext: np.ndarray    # float [P, G] arrival of a weights' copy issued by an earlier layer (0: none)
    f_ext: np.ndarray    # float [P, G] same for the factors
    j_bytes: np.ndarray  # float [P, J] copies issued on the expert link at this layer, in issue order (0: padding)
    j_prio: np.ndarray   # int   [P, J] DEMAND or PREFETCH
    j_valid: np.ndarray  # bool  [P, J]
    n_unit: np.ndarray   # int   [P, N] NDP unit of each NDP item, in S order
    n_dur: np.ndarray    # float [P, N] NDP op seconds (0: padding)
    n_rbytes: np.ndarray  # float [P, N] result bytes sent back (0: padding)
    n_valid: np.ndarray  # bool  [P, N]


class _Replay:
    """A chunk's logical replay (P steps x L MoE layers), fed to AnalyticEngine.timing one MoE layer at a
    time as LayerArrays; the copies' arrival times come back through scheduled()."""

    def __init__(self, P: int, L: int):
        self.P, self.L = P, L
        self.gpu: list[list] = [[] for _ in range(L)]  # per layer, flat: row, expert s, comp s, weights' copy,
                                                        # factors' copy per GPU item, rows ascending; copy -1: none
        self.ndp: list[list] = [[] for _ in range(L)]  # per layer, flat: row, unit, op s, result bytes per NDP item
        self.starts: list[int] = []  # chunk index of the first copy issued at each (row, layer), row-major

    def close(self, rec: _RecordingLink) -> None:
        """Index the chunk's copies (rec's) by layer: row, column among the (row, layer)'s copies."""
        self.base = rec.base
        self.nbytes, self.prio = np.array(rec.nbytes), np.array(rec.prio, dtype=np.int64)  # [C]
        starts = np.array([*self.starts, len(rec.nbytes)])
        seg = np.repeat(np.arange(self.P * self.L), np.diff(starts))  # [C] (row, layer) of each copy
        self.row, self.layer = seg // self.L, seg % self.L
        self.col = np.arange(len(seg)) - starts[seg]
        self.by_layer = np.argsort(self.layer, kind="stable")          # copies by layer, then row, column
        self.layer_cuts = np.searchsorted(self.layer[self.by_layer], np.arange(self.L + 1))
        self.end = np.zeros(len(seg))                                  # [C] arrival, once scheduled

    def __call__(self, moe: int, P: int) -> LayerArrays:
        jobs = self.by_layer[self.layer_cuts[moe]:self.layer_cuts[moe + 1]]
        _, (jb, jp, jv) = _padded(self.row[jobs], P, self.nbytes[jobs], self.prio[jobs], np.ones(len(jobs), bool))
        g = np.array(self.gpu[moe], dtype=np.float64).reshape(-1, 5)
        row = g[:, 0].astype(np.int64)
        cols, ext = [], []
        for copy in g[:, 3:].astype(np.int64).T:  # weights', factors' copy -> column + 1 here, or arrival
            col, arrival = np.zeros(len(copy), dtype=np.int64), np.zeros(len(copy))
            chunk = np.flatnonzero(copy >= self.base)  # issued in this chunk ...
            i = copy[chunk] - self.base
            now = self.row[i] == row[chunk]            # ... at this step (else resident before: no wait)
            here = now & (self.layer[i] == moe)        # at this layer, or prefetched at an earlier one
            col[chunk[here]] = self.col[i[here]] + 1
            arrival[chunk[now & ~here]] = self.end[i[now & ~here]]
            cols.append(col)
            ext.append(arrival)
        _, (g_e, g_c, wj, fj, w_ext, f_ext) = _padded(row, P, g[:, 1], g[:, 2], *cols, *ext)
        nd = np.array(self.ndp[moe], dtype=np.float64).reshape(-1, 4)
        _, (nu, ndur, nr, nv) = _padded(nd[:, 0].astype(np.int64), P, nd[:, 1].astype(np.int64), nd[:, 2],
                                        nd[:, 3], np.ones(len(nd), bool))
        return LayerArrays(g_e, g_c, wj, fj, w_ext, f_ext, jb, jp, jv, nu, ndur, nr, nv)

    def scheduled(self, moe: int, ends: np.ndarray) -> None:
        jobs = self.by_layer[self.layer_cuts[moe]:self.layer_cuts[moe + 1]]
        self.end[jobs] = ends[self.row[jobs], self.col[jobs]]


def _padded(group: np.ndarray, P: int, *values: np.ndarray):
    """Scatter per-item values into [P, M] rows padded with 0 (items sorted by row; M = the largest row);
    also returns each item's column."""
    counts = np.bincount(group, minlength=P)
    M = int(counts.max()) if len(group) else 0
    if len(group) == P * M:  # every row full: the items are the rows
        return np.tile(np.arange(M), P), [v.reshape(P, M) for v in values]
    col = np.arange(len(group)) - np.repeat(np.cumsum(counts) - counts, counts)
    at = group * M + col                                   # flat positions in [P, M]
    out = []
    for v in values:
        a = np.zeros((P, M), dtype=v.dtype)
        a.reshape(-1)[at] = v
        out.append(a)
    return col, out


def _routed(sc: Scenario, tok: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Routing of a chunk of steps (token indices `tok` [n], tokens per step `lens` [P]) as items: the
    distinct ((step L + MoE layer) E + expert) ascending [N], their tokens [N] and restored tokens [N]
    (tokens with the expert among their top-n) -- _Engine.route of every step at once."""
    L, E, P = sc.model.moe_layers, sc.model.num_experts, len(lens)
    dt = np.int32 if P * L * E * 2 < 1 << 31 else np.int64
    # one code per routed (token, layer, slot): ((step L + layer) E + expert) 2 + (not restored)
    grp = np.repeat(np.arange(0, P * L, L, dtype=dt), lens)[:, None] + np.arange(L, dtype=dt)  # [n, L]
    code = (grp[:, :, None] * E + sc.trace.expert_ids[tok]) * 2 + (np.arange(sc.model.top_k) >= sc.top_n)
    code = np.sort(code.ravel())
    item = code >> 1
    first = np.flatnonzero(np.concatenate(([True], item[1:] != item[:-1])))
    if len(first) == len(code):  # every expert once per (step, layer)
        return item, np.ones(len(code), dtype=dt), 1 - (code & 1)
    return item[first], np.diff(np.append(first, len(code))), np.add.reduceat(1 - (code & 1), first)


class _VectorSource:
    """Logical pass and timing of chunks for a policy whose placements do not read the cache (LRU or LFU,
    per-layer partitions or one shared, with or without prefetch) in the compiled kernel
    simulator.analytic_kernel.run_steps (routing, the exact cache, the prefetch draws from the DES's own
    Generator, then the timing of each step's layers). Placements are asked once per (layer, expert,
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
        self.read_forms = np.array([FORMS.index(f) for f in sc.policy.reads_forms], dtype=np.int64)
        self.codes(sc.batch)

    def codes(self, most: int) -> None:
        """Start the placement table for steps of at most `most` tokens: codes ((layer E + expert) K +
        tokens) K + restored with K = most + 1 (> tokens per (step, layer, expert): a token's top-k are
        distinct experts)."""
        sc = self.eng.sc
        self.K = most + 1
        # per placement code answered so far (rows of self.tab, see placements)
        self.tab = {name: np.zeros(0, dtype=t) for name, t in (
            ("gpu", bool), ("look", bool), ("fac", bool), ("wform", np.int64), ("ndp", bool),
            ("op_e", float), ("op_c", float), ("op_n", float), ("res_wire", float), ("rbytes", float))}
        # placement code -> row of self.tab (-1: not asked yet): a dense table when small, else sorted codes
        n_codes = self.L * self.E * self.K * self.K
        self.slot = np.full(n_codes if n_codes <= 1 << 22 else 0, -1, dtype=np.int64)
        self.known = np.zeros(0, dtype=np.int64)             # (sparse) sorted codes seen so far
        self.known_at = np.zeros(0, dtype=np.int64)          # (sparse) their rows
        pairs = [(t, r) for t in range(1, most + 1) for r in range(t + 1)]  # (tokens, restored)
        if sc.policy.expert_blind and len(self.slot) and self.L * self.E * len(pairs) <= 1 << 18:
            # few codes: table them all now (one call instead of one per chunk that meets new ones)
            t, r = np.array(pairs).T[:, None, :]                              # [1, Q] each
            le = np.arange(self.L * self.E)[:, None]                          # [LE, 1]
            self._table(((le * self.K + t) * self.K + r).ravel(), le, t, r)

    @staticmethod
    def usable(eng: AnalyticEngine) -> bool:
        sc = eng.sc
        return True

    def steps(self, tok: np.ndarray, lens: np.ndarray, n: np.ndarray, pre: np.ndarray, layer_pre: np.ndarray,
              shared: np.ndarray) -> np.ndarray:
        """Run the chunk's steps (token indices `tok` [n], tokens per step `lens` [P]; per step its tokens
        `n` [P] and the seconds before the first MoE layer `pre`, before each MoE layer's experts
        (attention + router) `layer_pre` and of the shared experts `shared`, all [P]): updates the counters and busy totals, sets self.per_step (per-step counters) and returns
        the steps' figures [P, analytic_kernel.STEP_FLOATS]."""
        eng, sc = self.eng, self.eng.sc
        L, E, P = self.L, self.E, len(lens)
        experts = sc.trace.expert_ids[tok]                                      # [n, L, k]
        lens = lens.astype(np.int64)
        act_b = costs.activation_bytes(eng.model, 1) * n                        # [P] bytes out to the NDP units
        if eng.cxl is not None:
            act_time = costs.link_time(eng.cxl, costs.FROM_GPU, act_b)
            act_wire = costs.wire_time(eng.cxl, costs.FROM_GPU, act_b)
            r_lat, r_engines = eng.cxl.latency, eng.cxl.dma_engines
        else:
            act_time = act_wire = np.zeros(P)
            r_lat, r_engines = 0.0, 1
        out, counts = np.zeros((P, kernel.STEP_FLOATS)), np.zeros((P, kernel.STEP_INTS), dtype=np.int64)
        totals, ndp_busy = np.zeros(kernel.TOTALS), np.zeros(self.U)
        new = np.empty(P * L * min(E, experts.shape[2] * int(lens.max())), dtype=np.int64)  # codes not tabled
        f64 = lambda x: np.ascontiguousarray(np.broadcast_to(x, (P,)), dtype=float)
        s = 0
        while s < P:
            tab = self.tab
            s, m = kernel.run_steps(  # scalars cast: one compiled signature whatever the config's types
                experts, lens, s, self.steps_done, L, E, self.K, int(sc.top_n), self.U, self.slot, self.known,
                self.known_at, new, self.read_forms, tab["gpu"], tab["look"], tab["fac"], tab["wform"], tab["ndp"], tab["op_e"],
                tab["op_c"], tab["op_n"], tab["res_wire"], tab["rbytes"], self.sizes, self.key_wire,
                bool(sc.cache_per_layer), float(sc.cache_capacity), *self.cache[:7], sc.cache_policy == "lfu",
                *self.cache[7:], bool(sc.prefetch and L > 1),
                float(sc.prefetch_hit_rate), eng.logic.rng, self.copy_step, self.copy_end, f64(pre),
                f64(layer_pre), f64(shared), f64(act_time), f64(act_wire), f64(act_b), float(eng.elink.latency),
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
        before) as rows of self.tab, slot[code] -> row (see _table)."""
        rest, restored = np.divmod(new, self.K)
        le, tokens = np.divmod(rest, self.K)
        self._table(new, le, tokens, restored)

    def _table(self, new: np.ndarray, le: np.ndarray, tokens: np.ndarray, restored: np.ndarray) -> None:
        """Table codes `new` [n] of experts layer E + expert `le`, `tokens` and `restored` (broadcasting
        together to an array whose ravel is in the order of `new`: [n] each, or experts [LE, 1] by
        (tokens, restored) [1, Q]). A code has V = 2^len(Policy.reads_forms) rows in a row, one per
        residency of those forms of its expert (bit j: form reads_forms[j] resident); slot[code] -> its
        first. The policy answers each (code, residency) once per run, an expert_blind one once per
        (tokens, restored, residency). Per row of self.tab: whether the GPU part exists (gpu), looks up
        its weights (look, of form wform) and the factors (fac) in the cache, whether an NDP part exists
        (ndp), the op seconds (expert GEMMs on the GPU, compensation, NDP op; 0: none), the wire seconds
        and bytes of the NDP result."""
        sc, eng = self.eng.sc, self.eng
        shape = np.broadcast_shapes(np.shape(le), np.shape(tokens), np.shape(restored))
        read, place = sc.policy.reads_forms, sc.policy.place
        V = 1 << len(read)

        def cache(layer: int, expert: int, v: int) -> frozenset:  # what place() may see of the cache
            return frozenset((layer, expert, form) for j, form in enumerate(read) if v >> j & 1)

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
        ids = len(self.tab["gpu"]) + V * np.arange(len(new))
        if len(self.slot):
            self.slot[new] = ids
        else:
            known, known_at = np.concatenate([self.known, new]), np.concatenate([self.known_at, ids])
            order = np.argsort(known, kind="stable")
            self.known, self.known_at = known[order], known_at[order]
        for name, v in zip(self.tab, (g_tok > 0, look, fac, g_form, n_tok > 0, *ops, res_wire, rbytes)):
            self.tab[name] = np.concatenate([self.tab[name], np.broadcast_to(v, (*shape, V)).ravel()])

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
        self.logic = _Engine(simpy.Environment(), sc, None)  # the DES's own routing/cache/prefetch code
        self.rec = _RecordingLink()
        self.logic.expert_link = self.rec
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

    # ---- logical pass for one chunk of steps ----
    def logical(self, tok: np.ndarray, lens: np.ndarray) -> tuple[_Replay, dict]:
        """Replay the chunk's placements, lookups, copies and prefetches by the DES's code (what
        _Engine.moe_layer does before it times anything)."""
        lg, sc, model, rec = self.logic, self.sc, self.model, self.rec
        P, L, E = len(lens), model.moe_layers, model.num_experts
        item, n_tok, n_rest = _routed(sc, tok, lens)
        cuts = np.searchsorted(item, np.arange(P * L + 1) * E).tolist()  # items of (step, layer)
        item, n_tok, n_rest = (item % E).tolist(), n_tok.tolist(), n_rest.tolist()
        rec.new_chunk()
        replay = _Replay(P, L)
        per_step = {k: np.zeros(P) for k in ("cache_hits", "cache_misses", "experts_gpu", "experts_ndp")}
        units = sc.system.ndp.units if sc.system.ndp is not None else 1
        c, reads_cache, work, lookup = lg.c, sc.policy.reads_cache, lg.work, lg.lookup
        prefetch = sc.prefetch and L > 1
        for r in range(P):
            routing = [(item[a:b], n_tok[a:b], n_rest[a:b]) for a, b in zip(cuts[r * L:(r + 1) * L], cuts[r * L + 1:])]
            before = (c["cache_hits"], c["cache_misses"])
            n_gpu = n_ndp = 0
            for moe in range(L):
                part, works = lg.cache.part(moe), lg.works[moe]
                replay.starts.append(len(rec.nbytes))
                entries, placed, ndp_rows = [], [], replay.ndp[moe]
                ndp_before = len(ndp_rows) // 4
                for it in zip(*routing[moe]):
                    w = works.get(it) or work(moe, *it, part)
                    if w.ndp is not None:
                        ndp_rows.extend((r, w.ndp[0] % units, w.ndp[1], w.out_bytes))
                    if w.gpu is not None:
                        placed.append(w)
                        if reads_cache:  # the next placement may depend on this lookup
                            lookup(w.entries, part)
                        else:
                            entries += w.entries
                if entries:
                    lookup(entries, part)
                lg.fetch(moe)
                get, gpu_rows = lg.ready.layers[moe].get, replay.gpu[moe]
                for w in placed:
                    keys = w.keys
                    gpu_rows.extend((r, w.gpu[1], 0.0 if w.comp is None else w.comp[1],
                                     get(keys[0], -1) if keys else -1, get(keys[1], -1) if len(keys) > 1 else -1))
                n_gpu, n_ndp = n_gpu + len(placed), n_ndp + len(ndp_rows) // 4 - ndp_before
                c["experts_gpu"] += len(placed)
                c["experts_ndp"] += len(ndp_rows) // 4 - ndp_before
                if prefetch and moe + 1 < L:
                    lg.prefetch(moe + 1, routing[moe + 1])
            per_step["experts_gpu"][r], per_step["experts_ndp"][r] = n_gpu, n_ndp
            per_step["cache_hits"][r] = c["cache_hits"] - before[0]
            per_step["cache_misses"][r] = c["cache_misses"] - before[1]
        replay.close(rec)
        return replay, per_step

    @property
    def model(self):
        return self.sc.model

    # ---- timing of one chunk ----
    def timing(self, tok: np.ndarray, lens: np.ndarray, source) -> dict[str, np.ndarray]:
        """Per-step seconds per category, latency and link bytes of a chunk (token indices `tok` [n], step
        after step, `lens` [P] tokens per step). `source` is either a replay
        (`source(moe, P)` gives each MoE layer's LayerArrays in layer order, `source.scheduled(moe, ends)`
        receives its copies' arrival times [P, J]), or a _VectorSource when every copy and NDP op of a
        layer ends within it (no prefetch): its compiled kernel times each (step, layer) row from 0, and
        the step's layers add up."""
        sc, model, gpu = self.sc, self.model, self.gpu
        P = len(lens)
        n = lens.astype(np.float64)                                                  # [P] tokens
        pos = np.asarray(sc.trace.position[tok], dtype=np.int64)                     # [n] positions
        ctx = (n * sc.context + np.add.reduceat(pos, np.cumsum(n, dtype=np.int64) - n.astype(np.int64))
               ).astype(np.float64)                                                 # [P] context sums
        k = sc.kernels
        att = costs.gpu_time(gpu, *costs.attention_work(model, n, ctx, sc.attention_bits, sc.group,
                                                           sc.attention_dequant_bytes_per_weight), k["attention"])
        att = np.broadcast_to(att, (P,)).astype(float)
        router = costs.gpu_time(gpu, *costs.router_work(model, n), k["router"]) * np.ones(P)
        shared = (costs.gpu_time(gpu, *costs.shared_work(model, n), k["other"]) * np.ones(P)
                  if model.shared_experts else 0 * n)
        dense = costs.gpu_time(gpu, *costs.dense_ffn_work(model, n), k["other"]) * np.ones(P)
        head = costs.gpu_time(gpu, *costs.lm_head_work(model, n), k["other"]) * np.ones(P)
        acc = {cat: np.zeros(P) for cat in CATEGORIES}
        acc["attention"] += att * model.layers
        acc["router"] += router * model.moe_layers
        acc["other"] += dense * model.first_dense_layers + shared * model.moe_layers + head
        T = (att + dense) * model.first_dense_layers
        link_bytes = {col: np.zeros(P) for col, _, _ in self.link_cols}
        if isinstance(source, _VectorSource):  # routing, cache, prefetch and timing in the compiled kernel
            steps = source.steps(tok, lens, n, T, att + router, shared)
            for cat, col in (("expert_gpu", kernel.EXPERT_GPU), ("compensation", kernel.COMPENSATION),
                             ("expert_ndp", kernel.EXPERT_NDP), ("transfer_stall", kernel.STALL)):
                acc[cat] += steps[:, col]
            link_bytes[f"bytes_{self.elink.name}_{costs.TO_GPU}"] += steps[:, kernel.BYTES_EXPERT]
            if self.cxl is not None:
                link_bytes[f"bytes_{self.cxl.name}_{costs.FROM_GPU}"] += steps[:, kernel.BYTES_ACT]
                link_bytes[f"bytes_{self.cxl.name}_{costs.TO_GPU}"] += steps[:, kernel.BYTES_RESULT]
            T = steps[:, kernel.LATENCY].copy()
        else:
            state = self._link_state(P)
            for moe in range(model.moe_layers):
                T += att + router
                la = source(moe, P)
                self._busy(la, n)
                T, j_end = self._moe_layer(la, T, n, shared, state, acc, link_bytes)
                source.scheduled(moe, j_end)
        T += head
        out = {cat: acc[cat] for cat in CATEGORIES}
        out["latency"] = T
        out.update(link_bytes)
        return out

    def _link_state(self, R: int) -> dict:
        """Free times of the expert link's engines and wire, and of the CXL link's, for R rows."""
        return {"efree": np.zeros((R, self.elink.dma_engines)), "ewire": np.zeros(R),
                "cfree": np.zeros((R, self.cxl.dma_engines)) if self.cxl is not None else None,
                "cwire": np.zeros(R)}

    def _busy(self, la: LayerArrays, n: np.ndarray) -> None:
        """Adds the busy seconds of rows `la` (tokens `n` [R]) to the links' and NDP units' totals."""
        if la.n_valid.shape[1]:
            has = la.n_valid[:, 0]  # whether the row has NDP items (they come first)
            act_b = costs.activation_bytes(self.model, 1) * n
            self.link_busy[self.cxl.name][costs.FROM_GPU] += float(
                np.where(has, costs.wire_time(self.cxl, costs.FROM_GPU, act_b), 0.0).sum())
            per_unit = np.bincount(la.n_unit.ravel(), la.n_dur.ravel(), minlength=len(self.ndp_busy))
            self.ndp_busy = [b + float(x) for b, x in zip(self.ndp_busy, per_unit)]
            self.link_busy[self.cxl.name][costs.TO_GPU] += float(costs.wire_time(self.cxl, costs.TO_GPU, la.n_rbytes).sum())
        self.link_busy[self.elink.name][costs.TO_GPU] += float(costs.wire_time(self.elink, costs.TO_GPU, la.j_bytes).sum())

    def _moe_layer(self, la: LayerArrays, T: np.ndarray, n: np.ndarray, shared: np.ndarray, state: dict,
                   acc: dict, link_bytes: dict) -> tuple[np.ndarray, np.ndarray]:
        """One MoE layer of R rows starting at T [R] (after the router): NDP work, copies, GPU stream.
        Updates the link state, `acc` and `link_bytes` (per-row arrays) in place; returns the end times
        [R] and the copies' arrival times [R, J]."""
        sc, model = self.sc, self.model
        P = len(T)
        efree, ewire, cfree, cwire = (state[k] for k in ("efree", "ewire", "cfree", "cwire"))
        ecol = f"bytes_{self.elink.name}_{costs.TO_GPU}"
        shared_link = self.cxl is not None and self.cxl.name == self.elink.name
        t0 = T.copy()
        res_valid, M_n = la.n_valid, la.n_valid.shape[1]
        if M_n:  # -- NDP: activations out, ops FIFO per unit, results back
            has = res_valid[:, 0]  # whether the row has NDP items (they come first)
            act_b = costs.activation_bytes(model, 1) * n
            act_end = np.where(has, t0 + costs.link_time(self.cxl, costs.FROM_GPU, act_b), t0)
            link_bytes[f"bytes_{self.cxl.name}_{costs.FROM_GPU}"] += np.where(has, act_b, 0.0)
            U = sc.system.ndp.units
            ufree = np.zeros(P * U)                                     # [P U] free time of each unit
            slot = np.arange(0, P * U, U)[:, None] + la.n_unit           # [P, N] its op's unit in ufree
            op_e = np.empty((P, M_n))
            for j in range(M_n):  # padding (after a row's ops) leaves its unit's free time as good as it was
                op_e[:, j] = ufree[slot[:, j]] = np.maximum(act_end, ufree[slot[:, j]]) + la.n_dur[:, j]
            res_arr = np.where(res_valid, op_e, 0.0)
            res_dur = costs.wire_time(self.cxl, costs.TO_GPU, la.n_rbytes)
            link_bytes[f"bytes_{self.cxl.name}_{costs.TO_GPU}"] += _reduce_rows(np.add, la.n_rbytes, 0.0)
        # -- copies on the expert link (demand + prefetch), issued at t0 in issue order
        j_valid, M_j = la.j_valid, la.j_valid.shape[1]
        j_dur = costs.wire_time(self.elink, costs.TO_GPU, la.j_bytes)
        link_bytes[ecol] += _reduce_rows(np.add, la.j_bytes, 0.0)
        t0s = np.broadcast_to(t0[:, None], (P, M_j))
        j_prio = la.j_prio if sc.prefetch else None  # without prefetch every copy is a demand one
        if shared_link and M_n:  # NDP results queue with the fetches on the same direction
            ends = _schedule(efree, ewire, np.concatenate([t0s, res_arr], axis=1),
                             None if j_prio is None else
                             np.concatenate([j_prio, np.full((P, M_n), DEMAND)], axis=1),
                             self.elink.latency, np.concatenate([j_dur, res_dur], axis=1),
                             np.concatenate([j_valid, res_valid], axis=1))
            j_end, r_end = ends[:, :M_j], ends[:, M_j:]
        else:
            j_end = _schedule(efree, ewire, t0s, j_prio, self.elink.latency, j_dur, j_valid)
            r_end = _schedule(cfree, cwire, res_arr, None, self.cxl.latency, res_dur, res_valid) if M_n else None
        # -- GPU stream: shared experts, then ready experts first, each waiting for its copies
        T += shared
        block_stall = 0.0
        if sc.loads_block_layer and M_j:  # no expert starts before the last on-demand load has arrived
            demand = j_valid if j_prio is None else j_valid & (j_prio == DEMAND)
            blocked = np.maximum(T, _reduce_rows(np.maximum, np.where(demand, j_end, 0.0), 0.0))
            T, block_stall = blocked, blocked - T
        w_w, w_f = la.w_ext, la.f_ext  # copies' arrival (weights, factors): from earlier layers, or
        if M_j:                        # from this layer's copies (column 0 of `padded`: none)
            padded = np.concatenate([np.zeros((P, 1)), j_end], axis=1)
            w_w = np.maximum(w_w, np.take_along_axis(padded, la.wj, axis=1))
            w_f = np.maximum(w_f, np.take_along_axis(padded, la.fj, axis=1))
        pending = np.maximum(w_w, w_f) > T[:, None]
        late = np.flatnonzero(_reduce_rows(np.logical_or, pending, False))  # rows waiting for some copy
        sum_e, sum_c = _reduce_rows(np.add, la.g_e, 0.0), _reduce_rows(np.add, la.g_c, 0.0)
        if len(late):  # their ready experts first, each waiting for its copies
            order = np.argsort(pending[late], axis=1, kind="stable")
            g_e, g_c, w_w, w_f = (np.take_along_axis(x[late], order, axis=1) for x in (la.g_e, la.g_c, w_w, w_f))
            T_late, stall_late = T[late], np.zeros(len(late))
            for j in range(g_e.shape[1]):
                wait = np.clip(w_w[:, j] - T_late, 0.0, None)
                stall_late += wait
                T_late += wait + g_e[:, j]
                wait = np.where(g_c[:, j] > 0, np.clip(w_f[:, j] - T_late, 0.0, None), 0.0)
                stall_late += wait
                T_late += wait + g_c[:, j]
            sum_e[late], sum_c[late] = _reduce_rows(np.add, g_e, 0.0), _reduce_rows(np.add, g_c, 0.0)
        for j in range(la.g_e.shape[1]):  # the other rows: the kernels back to back
            T += la.g_e[:, j]
            T += la.g_c[:, j]
        stall = np.zeros(P)
        if len(late):
            T[late], stall[late] = T_late, stall_late
        acc["expert_gpu"] += sum_e
        acc["compensation"] += sum_c
        if M_n:
            done = _reduce_rows(np.maximum, np.where(res_valid, r_end, -np.inf), -np.inf)
            gap = np.clip(done - T, 0.0, None)
            # every unit starts at act_end and runs its ops back to back: the units are busy over
            # [act_end, last op end], which ends before the last result arrives (done)
            ops_end = _reduce_rows(np.maximum, np.where(res_valid, op_e, -np.inf), -np.inf)
            busy = np.where(gap > 0, np.clip(ops_end - np.maximum(act_end, T), 0.0, None), 0.0)
            acc["expert_ndp"] += busy
            stall += gap - busy
            T = np.maximum(T, done)
        acc["transfer_stall"] += stall + block_stall
        return T, j_end

    # ---- driver ----
    def run(self) -> RunResult:
        sc = self.sc
        sched = BatchSchedule(sc.trace.sequence_bounds(), sc.batch)
        vec = _VectorSource(self) if _VectorSource.usable(self) else None
        prefill = 0.0
        if sc.prompt:
            idx = sched.prefill(sc.prompt)
            if len(idx):
                lens = np.array([len(idx)])
                if vec is not None:  # one step of all prompt tokens, then the table for decode steps
                    vec.codes(len(idx))
                    prefill = float(self.timing(idx, lens, vec)["latency"][0])
                    vec.codes(sc.batch)
                else:
                    replay, _ = self.logical(idx, lens)
                    prefill = float(self.timing(idx, lens, replay)["latency"][0])
                self.logic.c = dict.fromkeys(self.logic.c, 0.0)
                self.link_busy = {k: dict.fromkeys(v, 0.0) for k, v in self.link_busy.items()}
                self.ndp_busy = [0.0] * len(self.ndp_busy)
        done, per_chunk = 0, max(1, (CHUNK if vec is None else KERNEL_CHUNK) // sc.batch)
        while sc.steps is None or done < sc.steps:
            want = per_chunk if sc.steps is None else min(per_chunk, sc.steps - done)
            tok, lens = sched.take(want)
            if not len(lens):
                break
            if vec is not None:
                t, per_step = self.timing(tok, lens, vec), vec.per_step
            else:
                replay, per_step = self.logical(tok, lens)
                t = self.timing(tok, lens, replay)
            self._append(done, lens, t, per_step)
            sc.trace.release()  # stream: keep only this chunk's trace pages resident
            done += len(lens)
            if len(lens) < want:
                break
        return self._result(prefill, vec.evictions if vec is not None else None)

    def _append(self, first: int, lens: np.ndarray, t: dict, per_step: dict) -> None:
        def put(name: str, x) -> None:  # the step column `name` (array "d") takes the per-step values x [P]
            self.rows[name].frombytes(np.ascontiguousarray(x, dtype=np.float64).tobytes())

        start = self.time + np.concatenate(([0.0], np.cumsum(t["latency"])[:-1]))
        self.time += float(t["latency"].sum())
        put("step", np.arange(first, first + len(lens)))
        put("tokens", lens)
        put("start_s", start)
        put("end_s", start + t["latency"])
        for cat in CATEGORIES:
            put(cat, t[cat])
            if cat not in ("expert_ndp", "transfer_stall"):
                self.gpu_busy += float(t[cat].sum())
        for key, col in per_step.items():
            put(key, col)
        for col, _, _ in self.link_cols:
            put(col, t[col])

    def _result(self, prefill: float, evictions: int | None) -> RunResult:
        c = self.logic.c
        cache = self.logic.cache
        return RunResult(
            scenario=self.sc, steps=self.rows, decode_time=self.time, prefill_time=prefill,
            gpu_busy=self.gpu_busy, link_busy=self.link_busy,
            ndp_busy=self.ndp_busy,
            counters={**c, "cache_evictions": cache.evictions if evictions is None else evictions, "cache_capacity_bytes": cache.capacity})


def run(scenario: Scenario) -> RunResult:
    """Evaluate `scenario` analytically; same RunResult shape as simulator.engine.run."""
    scenario.policy.prepare(scenario)
    return AnalyticEngine(scenario).run()

