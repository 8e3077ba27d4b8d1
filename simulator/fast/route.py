"""Stage 1 of the compiled timer (simulator.fast.kernel): route a step. Per MoE layer, the union of the
step's experts from the routing [n, L, k] (a bit set per layer, read lowest bit first), each expert's tokens
and restored tokens, its placement code and first placement row (simulator.placement: the dense code map,
rows shared by (class, tokens, restored), or sorted codes); codes not tabled yet are collected for the
caller to table. The same for the prefetcher's predicted routing (simulator.prefetch.predicted)."""

from __future__ import annotations

import numba
import numpy as np

from simulator.scenario import N_FORMS

# index of the lowest set bit of a 64-bit word w: DEBRUIJN[((w & -w) * DEBRUIJN_MUL) >> 58]
DEBRUIJN_MUL = np.uint64(0x03F79D71B4CB0A89)
DEBRUIJN = np.zeros(64, dtype=np.int64)
DEBRUIJN[[(int(DEBRUIJN_MUL) << i & (1 << 64) - 1) >> 58 for i in range(64)]] = np.arange(64)


@numba.njit(cache=True, _nrt=False, inline="always")
def find_row(tb, code):
    """First placement row of `code` (-1: not tabled): the dense map, else the rows shared by the code's
    (class, tokens, restored) (expert-blind policies), else a binary search."""
    if len(tb.slot):
        return tb.slot[code]
    if len(tb.blind):
        rest, restored = code // tb.K, code % tb.K
        le, tokens = rest // tb.K, rest % tb.K
        return tb.blind[(tb.cls[le] * tb.K + tokens) * tb.K + restored]
    lo, hi = 0, len(tb.known)
    while lo < hi:
        mid = (lo + hi) // 2
        if tb.known[mid] < code:
            lo = mid + 1
        else:
            hi = mid
    return tb.known_at[lo] if lo < len(tb.known) and tb.known[lo] == code else -1


@numba.njit(cache=True, _nrt=False, inline="always")
def route_layer(rt, tb, x, ids, top, lo, hi, layer, items, rows, new, m):
    """One layer's union of the experts ids[lo:hi, layer, :] (-1: none; the first `top` places restored):
    its experts ascending into items[layer], their first placement rows into rows[layer]; codes not tabled
    go to new[m ..]. Returns (items, the new m)."""
    for i in range(lo, hi):
        for j in range(ids.shape[2]):
            e = ids[i, layer, j]
            if e < 0:
                continue
            x.mask[e >> 6] |= np.uint64(1) << np.uint64(e & 63)
            x.cnt[e] += 1
            if j < top:
                x.rst[e] += 1
    n = 0
    for w in range(len(x.mask)):  # set bits low to high (de Bruijn: the lowest bit's index)
        word = x.mask[w]
        while word:
            low = word & (~word + np.uint64(1))
            items[layer, n] = w * 64 + DEBRUIJN[np.int64((low * DEBRUIJN_MUL) >> np.uint64(58))]
            n += 1
            word ^= low
        x.mask[w] = 0
    for i in range(n):
        e = items[layer, i]
        code = ((layer * rt.E + e) * tb.K + x.cnt[e]) * tb.K + x.rst[e]
        rows[layer, i] = find_row(tb, code)
        if rows[layer, i] < 0:
            new[m] = code
            m += 1
        x.cnt[e] = x.rst[e] = 0
    return n, m


@numba.njit(cache=True, _nrt=False, inline="always")
def route_step(rt, tb, x, s, first, new, m):
    """Stage 1: per layer of step s (tokens first[s] .. first[s + 1]), its items (experts ascending) and
    their first placement rows into x, and those of what its tokens guess for it (rt.pred: x.p_*);
    codes not tabled go to new[m ..]. Returns the new m."""
    for layer in range(rt.L):
        x.n_items[layer], m = route_layer(rt, tb, x, rt.experts, rt.top_n, first[s], first[s + 1], layer, x.items,
                                          x.rows, new, m)
        if rt.pred.shape[2]:
            x.p_n[layer], m = route_layer(rt, tb, x, rt.pred, rt.pred_top, first[s], first[s + 1], layer, x.p_items,
                                          x.p_rows, new, m)
    return m


@numba.njit(cache=True, _nrt=False, inline="always")
def resident_row(tb, c, le, row):
    """The row of an expert (layer E + expert `le`) placed now: `row` + the residency its policy reads."""
    for j in range(len(tb.read_forms)):
        if c.resident[le * N_FORMS + tb.read_forms[j]]:
            row += 1 << j
    return row
