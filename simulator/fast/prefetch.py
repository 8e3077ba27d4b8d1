"""Stage 3 of the compiled timer (simulator.fast.kernel): the prefetcher's guesses for layer l+1, made while
layer l runs (simulator.prefetch says what each prefetcher knows): recall draws per routed slot (a wrong
guess by calibration popularity), previous-token and transitions take their predicted routing; each guess
refreshes what it finds resident and queues the copies of what is missing at prefetch priority, as the DES
does (simulator.des.prefetcher.Prefetching.prefetch), logging decisions when asked."""

from __future__ import annotations

import numba
import numpy as np

from simulator.fast.buffers import (
    EVICTIONS,
    FETCHED_LOWBIT,
    PREFETCH_BYTES,
    PREFETCH_WASTED,
)
from simulator.fast.cache import access
from simulator.fast.route import resident_row
from simulator.placement import (
    FAC,
    GPU,
    LOOK,
    WFORM,
)
from simulator.prefetch import RECALL
from simulator.scenario import FACTORS, N_FORMS, PREFETCH


@numba.njit(cache=True, _nrt=False, inline="always")
def recall_guesses(rt, x, rng, pf, nxt):
    """The recall prefetcher's guesses for layer `nxt` into x.q_* (simulator.prefetch; the DES's
    recall_guesses): per item, right with probability recall, else a wrong expert drawn by pf.weight among
    those the layer does not route to and not guessed yet, with the item's row. Returns how many."""
    n, ng, total = x.n_items[nxt], 0, -1
    for i in range(n):
        e = x.items[nxt, i]
        if rng.random() < pf.recall:
            x.q_exp[ng], x.q_row[ng], x.q_own[ng] = e, x.rows[nxt, i], True
            ng += 1
            continue
        if total < 0:  # the weight of the experts the layer does not route to (integers: any order is exact)
            total = 0
            for j in range(rt.E):
                total += pf.weight[nxt, j]
            for k in range(n):
                x.used_by_next[x.items[nxt, k]] = True
                total -= pf.weight[nxt, x.items[nxt, k]]
        if total == 0:
            continue
        target, acc, w = np.int64(rng.random() * total), 0, 0
        for j in range(rt.E):
            if not x.used_by_next[j]:
                acc += pf.weight[nxt, j]
                if acc > target:
                    w = j
                    break
        x.used_by_next[w] = True
        total -= pf.weight[nxt, w]
        x.q_exp[ng], x.q_row[ng], x.q_own[ng] = w, x.rows[nxt, i], False
        ng += 1
    if total >= 0:
        for i in range(n):
            x.used_by_next[x.items[nxt, i]] = False
        for g in range(ng):
            x.used_by_next[x.q_exp[g]] = False
    return ng


@numba.njit(cache=True, _nrt=False, inline="always")
def log_decision(o, gs, layer, e, form, copied):
    """One prefetch decision into the log, while it has room (simulator.fast.buffers.Out)."""
    k = o.n_log[0]
    if k < o.log.shape[0]:
        o.log[k, 0], o.log[k, 1], o.log[k, 2], o.log[k, 3], o.log[k, 4] = gs, layer, e, form, copied
        o.n_log[0] = k + 1


@numba.njit(cache=True, _nrt=False, inline="always")
def prefetch_layer(rt, tb, c, x, o, rng, pf, nxt, t0, nj, gs):
    """Stage 3: the prefetch copies for layer `nxt` (the DES's prefetch, simulator.des.moe_layer), appended
    to x.j_* after the `nj` demand copies: the prefetcher's guesses (recall: drawn now; else the layer's
    predicted routing, x.p_*), their resident forms refreshed, then their missing entries copied until the
    next one would exceed the partition. Returns the number of copies."""
    part = nxt if c.per_layer else 0
    E = rt.E
    if pf.mode == RECALL:
        ng = recall_guesses(rt, x, rng, pf, nxt)
    else:
        ng = x.p_n[nxt]
        for g in range(ng):
            x.q_exp[g], x.q_row[g], x.q_own[g] = x.p_items[nxt, g], x.p_rows[nxt, g], True
    budget = c.capacity
    for g in range(ng):  # what a guess finds resident: refreshed, off the budget
        e = x.q_exp[g]
        for form in range(N_FORMS):
            key = (nxt * E + e) * N_FORMS + form
            if c.resident[key]:
                access(c, key, part)
                budget -= c.key_size[key]
                log_decision(o, gs, nxt, e, form, 0)
    for g in range(ng):
        e = x.q_exp[g]
        t = resident_row(tb, c, nxt * E + e, x.q_row[g])  # placed at its turn, as the DES places it (a wrong
        if not (tb.ti[t, GPU] and tb.ti[t, LOOK]):          # guess: its slot's row, its own residency)
            continue
        for which in range(2):
            if which == 1 and not tb.ti[t, FAC]:
                break
            form = tb.ti[t, WFORM] if which == 0 else FACTORS
            key = (nxt * E + e) * N_FORMS + form
            if c.resident[key]:
                continue
            nbytes = c.key_size[key]
            if nbytes > budget:
                return nj
            budget -= nbytes
            x.j_arr[nj], x.j_wire[nj], x.j_prio[nj], x.j_key[nj] = t0, c.key_wire[key], PREFETCH, key
            nj += 1
            _, ev = access(c, key, part)
            o.totals[EVICTIONS] += ev
            o.totals[FETCHED_LOWBIT + form] += nbytes
            o.totals[PREFETCH_BYTES] += nbytes
            if o.pending[key]:  # copied before, evicted unused
                o.totals[PREFETCH_WASTED] += nbytes
            o.pending[key] = True
            log_decision(o, gs, nxt, e, form, 1)
    return nj
