"""NDP units in the fast timer: a layer's NDP ops FIFO per unit, and the order SimPy ends them.

The rules are simulator.des.ndp's (expert e on unit e mod units; an op starts when the activations have
arrived and its unit is free) and simulator.des.link's for the activations (latency, then the wire).
"""

from __future__ import annotations

import numba
import numpy as np

from simulator.fast.buffers import BUSY_ACT, BUSY_RESULT, BYTES_ACT, BYTES_RESULT
from simulator.placement import NDP, OP_N, RBYTES, RES_WIRE


@numba.njit(cache=True, _nrt=False, inline="always")
def ndp_layer(rt, tb, x, o, ops, lk, s, layer, t0):
    """Stage 4a: activations out at t0, the layer's NDP ops FIFO per unit; each op's result (arrival at the
    op's end, wire seconds) into x.r_*, x.r_order the order SimPy ends them. Returns (activations'
    arrival, last op end)."""
    act_end = t0 + lk.a_lat  # as simulator.des.link adds it: latency, then the wire
    act_end += ops.act_wire[s]
    o.out[s, BYTES_ACT] += ops.act_bytes[s]
    o.totals[BUSY_ACT] += ops.act_wire[s]
    x.ufree[:] = 0.0
    x.u_count[:] = 0
    wire_sum = bytes_sum = 0.0
    ops_end = -np.inf
    k = 0
    for a in range(x.n_items[layer]):
        t = x.rows[layer, a]
        if tb.ti[t, NDP]:
            u = x.unit_of[x.items[layer, a]]
            e_ = max(act_end, x.ufree[u]) + tb.tf[t, OP_N]
            x.ufree[u] = e_
            o.ndp_busy[u] += tb.tf[t, OP_N]
            wire_sum += tb.tf[t, RES_WIRE]
            bytes_sum += tb.tf[t, RBYTES]
            ops_end = max(ops_end, e_)
            x.r_arr[k], x.r_wire[k] = e_, tb.tf[t, RES_WIRE]
            x.u_ops[u, x.u_count[u]] = k  # each unit's ops end in submission order
            x.u_count[u] += 1
            k += 1
    o.totals[BUSY_RESULT] += wire_sum
    o.out[s, BYTES_RESULT] += bytes_sum
    end_order(rt, x, k)
    return act_end, ops_end


@numba.njit(cache=True, _nrt=False, inline="always")
def end_order(rt, x, n_ndp):
    """x.r_order: the order SimPy ends the layer's NDP ops (simulator.des.ndp.NDPUnits.run), a merge of
    the units' lists: by end; at equal ends an op that started on an idle unit (its unit's first) first,
    two of those in submission order, two queued ones in the order of the ops they queued behind."""
    n_units = 0
    for u in range(rt.units):
        if x.u_count[u]:
            x.act_units[n_units] = u
            x.u_head[u] = 0
            n_units += 1
    for i in range(n_ndp):
        best, bu = -1, -1
        for q in range(n_units):
            u = x.act_units[q]
            if x.u_head[u] == x.u_count[u]:
                continue
            op = x.u_ops[u, x.u_head[u]]
            if best < 0 or x.r_arr[op] < x.r_arr[best]:
                best, bu = op, u
            elif x.r_arr[op] == x.r_arr[best]:
                o_idle, b_idle = x.u_head[u] == 0, x.u_head[bu] == 0
                if o_idle != b_idle:
                    better = o_idle
                elif o_idle:
                    better = op < best
                else:
                    better = x.r_pos[x.u_ops[u, x.u_head[u] - 1]] < x.r_pos[x.u_ops[bu, x.u_head[bu] - 1]]
                if better:
                    best, bu = op, u
        x.r_order[i] = best
        x.r_pos[best] = i
        x.u_head[bu] += 1
