"""Compiled kernel of the fast timer: decode steps timed as the DES times them, from the placement table.

Per step (its tokens' routing), one MoE layer after the other, the kernel does what simulator.des does,
in the same order, in four stages (one compiled function each):
1. route (route_step, simulator.fast.route): the union S of each layer's experts (ascending, from a bitmask) and each one's
   placement row (simulator.placement; one row per residency of the forms the policy reads, picked as
   the expert is placed); a step whose codes are not all tabled stops the kernel before it starts;
2. look up (lookup_layer): the cache lookups of the GPU items in item order (weights, then factors) in
   the exact LRU or LFU of simulator.fast.cache; every miss is an on-demand copy on the expert link;
3. prefetch (prefetch_layer, simulator.fast.prefetch), with prefetch: the DES's prefetch for the next layer (simulator.prefetch:
   the prefetcher's guesses, recall's drawn from the run's Generator in the DES's order, previous-token's
   and transitions' from the predicted routing stage 1 placed; their resident forms refreshed, then
   their missing entries copied at prefetch priority and inserted, until the next copy would exceed the
   budget); a prefetched entry is pending until a demand lookup uses it (a prefetch hit) or finds it
   evicted (wasted bytes);
4. time (ndp_layer, transfers_layer, gpu_layer): from the layer start t0, activations out to the NDP
   units, their ops FIFO per unit, results back as they end (equal ends in SimPy's order); copies
   (issued at t0: on-demand first, then prefetches) and, when the experts live in the NDP memory, the
   results share the expert link's DMA engines and wire (simulator.fast.links); the link state carries
   over to the next layer (prefetches overlap it) and is dropped at the step's end; the GPU stream runs
   the shared experts (after the layer's on-demand loads when those are on the compute stream), then the
   ready experts first and each other one as its copies arrive (a copy issued at an earlier layer of the step counts from its
   arrival, one from an earlier step is resident), and waits for the last NDP result: idle time while
   an NDP unit computes is expert_ndp, the rest transfer_stall.

Inputs are a few named tuples of arrays (simulator.fast.buffers' Routing, StepOps, Links, Out;
simulator.placement's Rows; simulator.fast.cache's Cache); constants come from simulator.scenario,
simulator.placement and simulator.fast.buffers. numba compiles the functions on first use and caches
them under __pycache__, so later processes only load them (about 0.4 s).

How the stages are compiled (measured on benchmarks/analytic_speedup.py, 2,048 tokens of ndp-lrc): a call
that passes a named tuple of arrays increfs and decrefs every array in it (180 ns per call for 13 arrays,
micro-benchmark), and a struct passed by value is copied; as plain calls the stages made the kernel 30x
slower (0.42 s against 0.014 s). So the stages are compiled without reference counting (_nrt=False: they
allocate nothing; make_scratch and run_steps do) and inlined (inline="always") into time_step, one
compiled function per decode step: 0.017 s.
"""

from __future__ import annotations

import numba
import numpy as np

from simulator.fast.buffers import (
    BUSY_EXPERT_LINK,
    BYTES_EXPERT,
    COMPENSATION,
    END,
    EVICTIONS,
    EXPERT_GPU,
    EXPERT_NDP,
    FETCHED_LOWBIT,
    GPU_BYTES,
    GPU_FLOPS,
    HITS,
    MISSES,
    N_GPU,
    N_NDP,
    NDP_BYTES,
    NDP_FLOPS_INT4,
    PF_HITS,
    PREFETCH_WASTED,
    STALL,
    START,
    make_scratch,
)
from simulator.fast.cache import access, make_room
from simulator.fast.links import schedule, serve_idle
from simulator.fast.ndp import ndp_layer
from simulator.fast.prefetch import prefetch_layer
from simulator.fast.route import resident_row, route_step
from simulator.placement import (
    B_C,
    B_E,
    B_N,
    FAC,
    GPU,
    LOOK,
    NDP,
    NPREC,
    OP_C,
    OP_E,
    W_GFLOPS,
    W_NFLOPS,
    WFORM,
)
from simulator.scenario import DEMAND, FACTORS, N_FORMS


@numba.njit(cache=True, _nrt=False, inline="always")
def lookup_layer(rt, tb, c, x, o, s, layer, t0, part):
    """Stage 2: the demand lookups of the layer's GPU items, in item order (weights, then factors); each
    miss is a copy at t0 in x.j_*. Returns (copies, GPU items, NDP items)."""
    nj = n_gpu = n_ndp = hits = pf_hits = 0
    for a in range(x.n_items[layer]):
        le = layer * rt.E + x.items[layer, a]
        t = x.rows[layer, a] = resident_row(tb, c, le, x.rows[layer, a])
        if tb.ti[t, GPU]:
            if tb.ti[t, LOOK]:
                for which in range(2):
                    if which == 1 and not tb.ti[t, FAC]:
                        break
                    form = tb.ti[t, WFORM] if which == 0 else FACTORS
                    key = le * N_FORMS + form
                    hit, ev = access(c, key, part)
                    o.totals[EVICTIONS] += ev
                    if o.pending[key]:  # brought by a prefetch, not used yet
                        o.pending[key] = False
                        if hit:
                            pf_hits += 1
                        else:  # evicted unused
                            o.totals[PREFETCH_WASTED] += c.key_size[key]
                    elif hit:
                        hits += 1
                    if not hit:
                        x.j_arr[nj], x.j_wire[nj], x.j_prio[nj], x.j_key[nj] = t0, c.key_wire[key], DEMAND, key
                        o.totals[FETCHED_LOWBIT + form] += c.key_size[key]
                        nj += 1
            x.g_items[n_gpu] = a
            n_gpu += 1
            o.out[s, GPU_FLOPS] += tb.tw[t, W_GFLOPS]
            o.out[s, GPU_BYTES] += tb.tb[t, B_E] + tb.tb[t, B_C]
        if tb.ti[t, NDP]:
            n_ndp += 1
            o.out[s, NDP_FLOPS_INT4 + tb.ti[t, NPREC]] += tb.tw[t, W_NFLOPS]
            o.out[s, NDP_BYTES] += tb.tb[t, B_N]
    o.counts[s, HITS] += hits
    o.counts[s, PF_HITS] += pf_hits
    o.counts[s, MISSES] += nj
    o.counts[s, N_GPU] += n_gpu
    o.counts[s, N_NDP] += n_ndp
    return nj, n_gpu, n_ndp


@numba.njit(cache=True, _nrt=False, inline="always")
def transfers_layer(c, x, o, lk, prefetch, s, gs, nj, n_ndp):
    """Stage 4b: the layer's copies (x.j_*, `nj`) and NDP results on their links; records each copied key's
    arrival. Returns the last NDP result's arrival (-inf without)."""
    wire_sum = bytes_sum = 0.0
    for j in range(nj):
        wire_sum += x.j_wire[j]
        bytes_sum += c.key_size[x.j_key[j]]
    o.totals[BUSY_EXPERT_LINK] += wire_sum
    o.out[s, BYTES_EXPERT] += bytes_sum
    done_t = -np.inf
    n = nj
    if n_ndp:
        if lk.shared_link:  # behind the copies on the same link direction
            for k in range(n_ndp):
                op = x.r_order[k]
                x.j_arr[nj + k], x.j_wire[nj + k], x.j_prio[nj + k] = x.r_arr[op], x.r_wire[op], DEMAND
            n = nj + n_ndp
        else:
            for k in range(n_ndp):
                op = x.r_order[k]
                x.s_arr[k], x.s_wire[k], x.s_prio[k] = x.r_arr[op], x.r_wire[op], DEMAND
            if prefetch:
                schedule(x.s_arr, x.s_prio, x.s_wire, n_ndp, lk.r_lat, x.r_free, x.r_wire_t, x.r_end, x.done)
            else:
                serve_idle(x.s_arr, x.s_wire, n_ndp, lk.r_lat, x.r_free, x.r_wire_t, x.r_end)
            for k in range(n_ndp):
                done_t = max(done_t, x.r_end[k])
    if prefetch:
        schedule(x.j_arr, x.j_prio, x.j_wire, n, lk.e_lat, x.e_free, x.e_wire, x.j_end, x.done)
    else:  # every copy and result of the layer before has arrived: the link is idle
        serve_idle(x.j_arr, x.j_wire, n, lk.e_lat, x.e_free, x.e_wire, x.j_end)
    for k in range(nj, n):
        done_t = max(done_t, x.j_end[k])
    for j in range(nj):  # the keys' latest copies
        o.copy_step[x.j_key[j]] = gs
        o.copy_end[x.j_key[j]] = x.j_end[j]
    return done_t


@numba.njit(cache=True, _nrt=False, inline="always")
def copy_waits(rt, tb, x, o, layer, gs, n_gpu, T):
    """When each GPU item's copies arrive (x.g_w weights, x.g_f factors; 0: resident before the step).
    Returns whether any arrives after T."""
    late = False
    for i in range(n_gpu):
        a = x.g_items[i]
        t = x.rows[layer, a]
        w = f = 0.0
        if tb.ti[t, LOOK]:
            key = (layer * rt.E + x.items[layer, a]) * N_FORMS + tb.ti[t, WFORM]
            if o.copy_step[key] == gs:
                w = o.copy_end[key]
            fkey = key - tb.ti[t, WFORM] + FACTORS
            if tb.ti[t, FAC] and o.copy_step[fkey] == gs:
                f = o.copy_end[fkey]
        x.g_w[i], x.g_f[i] = w, f
        late = late or max(w, f) > T
    return late


@numba.njit(cache=True, _nrt=False, inline="always")
def gpu_layer(tb, x, o, lk, s, layer, T, late, n_demand, n_gpu, shared):
    """Stage 4c: the GPU stream from T (after the shared experts, or before them when loads block the
    stream): [the on-demand loads, then the shared experts' `shared` seconds], then the ready experts first
    and each other one as its copies arrive (simulator.des.gpu: a wait sets the clock to the arrival).
    Returns the stream's clock."""
    T0 = T  # the ready/waiting split is made here, before the loads block the stream (as the DES)
    if lk.block:  # loads issued on the stream: each on-demand one waited for, in issue order, and only
        for k in range(n_demand):  # then the shared experts (one in-order stream)
            if x.j_end[k] > T:
                o.out[s, STALL] += x.j_end[k] - T
                T = x.j_end[k]
        T += shared
    for ready in (True, False):  # ready experts first, then the others in order, each as its copies arrive
        if ready and not late:
            continue
        for i in range(n_gpu):
            if late and (max(x.g_w[i], x.g_f[i]) > T0) == ready:
                continue
            t = x.rows[layer, x.g_items[i]]
            if late and x.g_w[i] > T:
                o.out[s, STALL] += x.g_w[i] - T
                T = x.g_w[i]
            T += tb.tf[t, OP_E]
            o.out[s, EXPERT_GPU] += tb.tf[t, OP_E]
            if tb.tf[t, OP_C] > 0:
                if late and x.g_f[i] > T:
                    o.out[s, STALL] += x.g_f[i] - T
                    T = x.g_f[i]
                T += tb.tf[t, OP_C]
                o.out[s, COMPENSATION] += tb.tf[t, OP_C]
    return T


@numba.njit(cache=True, _nrt=False, inline="always")
def moe_layer(rt, tb, c, x, o, ops, lk, rng, pf, s, gs, layer, T):
    """One MoE layer of step s from the stream clock T (after its attention and router): look up,
    prefetch, time. Returns the stream's clock at its end."""
    t0 = T
    part = layer if c.per_layer else 0
    M = max(x.items.shape[1], x.q_exp.shape[0])
    prefetch = pf.mode > 0
    make_room(c, part, 8 * M + 8)  # a layer's accesses in a partition are fewer than 8 M
    if c.per_layer and prefetch and layer + 1 < rt.L:
        make_room(c, layer + 1, 8 * M + 8)
    nj, n_gpu, n_ndp = lookup_layer(rt, tb, c, x, o, s, layer, t0, part)
    n_demand = nj
    if prefetch and layer + 1 < rt.L:
        nj = prefetch_layer(rt, tb, c, x, o, rng, pf, layer + 1, t0, nj, gs)
    act_end, ops_end = ndp_layer(rt, tb, x, o, ops, lk, s, layer, t0) if n_ndp else (t0, -np.inf)
    done_t = transfers_layer(c, x, o, lk, prefetch, s, gs, nj, n_ndp)
    if not lk.block:
        T += ops.shared[s]
    late = copy_waits(rt, tb, x, o, layer, gs, n_gpu, T) if nj or prefetch else False
    T = gpu_layer(tb, x, o, lk, s, layer, T, late, n_demand, n_gpu, ops.shared[s])
    if n_ndp and done_t >= T:  # the last NDP result; the units were busy over [act_end, last op end]
        gap = done_t - T
        if gap > 0:  # the DES's overlap() of the ops' intervals in closed form (the same value in
            busy_ndp = max(ops_end - max(act_end, T), 0.0)  # every case tested; else ~1 ulp)
            o.out[s, EXPERT_NDP] += busy_ndp
            o.out[s, STALL] += gap - busy_ndp
        T = done_t
    return T


@numba.njit(cache=True, _nrt=False)
def time_step(rt, tb, c, x, o, ops, lk, rng, pf, s):
    """Step s of the chunk, its placements all tabled, from the clock o.now[0] (updated to its end): the GPU
    ops in the DES's order (per dense layer attention, dense FFN; per MoE layer attention, router, the layer;
    the LM head)."""
    T = o.now[0]
    o.out[s, START] = T
    for _ in range(rt.first_dense):
        T += ops.att[s]
        T += ops.dense[s]
    x.e_free[:] = 0.0
    x.e_wire[0] = 0.0
    x.r_free[:] = 0.0
    x.r_wire_t[0] = 0.0
    for layer in range(rt.L):
        T += ops.att[s]
        T += ops.router[s]
        T = moe_layer(rt, tb, c, x, o, ops, lk, rng, pf, s, rt.step_base + s, layer, T)
    T += ops.head[s]
    o.out[s, END] = T
    o.now[0] = T


# error_model="numpy": the one division in the inlined stages (find_row's code -> (expert, tokens,
# restored), by K >= 1) gets no zero check; a possible raise inside the step loop made the loop 4x slower.
@numba.njit(cache=True, error_model="numpy")
def run_steps(rt, tb, c, ops, lk, o, rng, pf, s0, new):
    """Steps s0 .. P-1 of a chunk (P = len(rt.lens)); time is absolute, as the DES's clock: the chunk starts
    at o.now[0] (updated to its end), and each step runs its GPU ops as the DES issues them (time_step).
    Returns (the
    step it stopped at, m): P and 0 when done; else the first step with placement codes not tabled yet
    (before any state changed for it), and the m codes of it and of the steps after it that are not
    tabled, into `new` (with repeats)."""
    P = len(rt.lens)
    x = make_scratch(rt, lk.e_engines, lk.r_engines)
    first = np.zeros(P + 1, dtype=np.int64)
    for p in range(P):
        first[p + 1] = first[p] + rt.lens[p]
    stop, m = P, 0
    for s in range(s0, P):
        m = route_step(rt, tb, x, s, first, new, m)  # every layer first: layer l's prefetch needs l + 1's rows
        if m:  # placements not tabled: collect those of the steps left, then return
            if stop == P:
                stop = s
            continue
        time_step(rt, tb, c, x, o, ops, lk, rng, pf, s)
    return stop, m
