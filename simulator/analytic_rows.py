"""Compiled per-row kernel of the analytic fast path when nothing crosses a (step, layer) boundary.

Without prefetch every copy and NDP op that a MoE layer issues ends within that layer, so each
(step, layer) row starts with idle links and NDP units and can be timed on its own from 0. This kernel
walks the rows of a chunk in the DES's order (step-major, then layer) and, per row:
1. looks up the cache entries of its GPU items in item order (weights, then factors): an exact
   byte-capacity LRU (simulator.hardware.cache.ExpertCache: a hit refreshes the key; a miss inserts it,
   evicting least-recently-used keys until it fits; a key larger than its partition streams through),
   with one partition per MoE layer or one shared by all; every miss is a copy on the expert link;
2. times the row as simulator.engine times a MoE layer: activations out to the NDP units, their ops FIFO
   per unit, results back; the copies on the expert link's DMA engines and wire (FIFO: copies issued at
   the row start in issue order, NDP results when their op ends, on the same link when the experts live
   in the NDP memory); then the GPU stream: shared experts, [the layer's loads block it], ready experts
   first, each later one waiting for its copies, and finally the last NDP result.

Everything that does not depend on the cache state (op seconds of each placement, bytes and wire seconds
of each cache key, per-step activation and shared-expert times) is computed before, in numpy, from
simulator.costs. numba compiles the kernel on first use and caches it next to this file
(`__pycache__`), so later processes only load it (a few hundred ms, once per process).
"""

from __future__ import annotations

import numba
import numpy as np

# columns of the per-row float output
DUR, EXPERT_GPU, COMPENSATION, EXPERT_NDP, STALL, BYTES_EXPERT, BYTES_ACT, BYTES_RESULT = range(8)
ROW_FLOATS = 8
# columns of the per-row int output
HITS, MISSES, N_GPU, N_NDP = range(4)
ROW_INTS = 4
# slots of the busy-seconds accumulator (then one per NDP unit)
BUSY_EXPERT_LINK, BUSY_ACT, BUSY_RESULT = range(3)


def lru_state(keys: int, parts: int) -> tuple:
    """Empty LRU state of `parts` partitions over cache keys 0 .. keys - 1 (see lru_access)."""
    Q = 4 * (keys // parts) + 64  # queue slots per partition: > its keys + a row's accesses (lru_room)
    return (np.zeros(keys, dtype=np.int64), np.zeros(keys, dtype=bool), np.zeros(parts),
            np.zeros((parts, Q), dtype=np.int64), np.zeros((parts, Q), dtype=np.int64),
            np.zeros(parts, dtype=np.int64), np.zeros(parts, dtype=np.int64), np.zeros(1, dtype=np.int64))


@numba.njit(cache=True)
def lru_access(key, key_size, part, capacity, last, resident, used, q_key, q_stamp, q_head, q_tail, clock):
    """One access of cache key `key` in partition `part`: (hit, evictions). Recency is a stamp per key
    (last [K]); each partition queues (key, stamp) per access in stamp order (q_key/q_stamp [parts, Q],
    live slots q_head:q_tail), so its least recently used resident key is the first queued entry whose
    stamp is still its key's (older entries of a key are stale and skipped). `resident` [K] and `used`
    [parts] bytes are updated in place; key_size [K] bytes per key. The queue must have a free slot
    (lru_room). No calls in here: a call would cost each access reference counts on every array."""
    if resident[key]:
        clock[0] += 1
        last[key] = clock[0]
        t = q_tail[part]
        q_key[part, t] = key
        q_stamp[part, t] = clock[0]
        q_tail[part] = t + 1
        return True, 0
    size = key_size[key]
    if size > capacity:  # streams through: never resident
        return False, 0
    u, h, evicted = used[part], q_head[part], 0
    while u + size > capacity and h < q_tail[part]:  # ExpertCache.insert's arithmetic: used -= victim,
        victim = q_key[part, h]                          # then used + size
        if resident[victim] and q_stamp[part, h] == last[victim]:
            u -= key_size[victim]
            resident[victim] = False
            evicted += 1
        h += 1
    q_head[part] = h
    used[part] = u + size
    resident[key] = True
    clock[0] += 1
    last[key] = clock[0]
    t = q_tail[part]
    q_key[part, t] = key
    q_stamp[part, t] = clock[0]
    q_tail[part] = t + 1
    return False, evicted


@numba.njit(cache=True)
def lru_room(part, need, last, resident, q_key, q_stamp, q_head, q_tail):
    """Make room for `need` more accesses in partition `part`'s queue: when it lacks them, keep only the
    live entries (one per resident key), in order, at its front."""
    if q_tail[part] + need <= q_key.shape[1]:
        return
    t = 0
    for i in range(q_head[part], q_tail[part]):
        k = q_key[part, i]
        if resident[k] and q_stamp[part, i] == last[k]:
            q_key[part, t] = k
            q_stamp[part, t] = q_stamp[part, i]
            t += 1
    q_head[part], q_tail[part] = 0, t


@numba.njit(cache=True)
def _serve_in_order(arr, wtime, n, lat, engines, out):
    """`n` transfers served in the order given (arrivals `arr` [n] ascending, wire seconds `wtime` [n]) by
    `engines` DMA engines idle at the row start and one wire (simulator.hardware.link): transfer j takes
    the engine that transfer j - engines frees. Writes the arrival times into `out` [n]."""
    wire = 0.0
    for j in range(n):
        t = arr[j] + lat if j < engines else max(out[j - engines], arr[j]) + lat
        t = max(t, wire)
        t += wtime[j]
        out[j] = t
        wire = t


@numba.njit(cache=True)
def _by_end(end, ahead, n, order):
    """order[:n] = the NDP ops 0 .. n-1 (ends `end`, `ahead`: the op each queued behind on its unit, -1:
    none) in the order SimPy ends them (simulator.hardware.ndp.NDPUnits.run): by end; at equal ends an op
    that started on an idle unit first, two of those in submission order, two queued ones in the order
    of the ops they queued behind. An insertion sort (rows are short), the comparison inline."""
    for i in range(n):
        j = i
        while j > 0:
            a, b = i, order[j - 1]  # does a end before b?
            while end[a] == end[b] and ahead[a] >= 0 and ahead[b] >= 0:
                a, b = ahead[a], ahead[b]
            if end[a] != end[b]:
                before = end[a] < end[b]
            elif (ahead[a] < 0) != (ahead[b] < 0):
                before = ahead[a] < 0
            else:
                before = a < b
            if not before:
                break
            order[j] = order[j - 1]
            j -= 1
        order[j] = i


@numba.njit(cache=True)
def time_rows(experts, lens, g0, L, E, K, top_n, U, slot, known, known_at, new,  # the chunk's routing
              gpu, look, fac, wform, ndp, op_e, op_c, op_n, res_wire, rbytes,  # per placement (slot's rows)
              key_size, key_wire, per_layer, capacity,                       # the cache
              last, resident, used, q_key, q_stamp, q_head, q_tail, clock,   # its LRU state (lru_state)
              act_time, act_wire, act_bytes, shared,                         # per step [P]
              e_lat, e_engines, r_lat, r_engines, shared_link, block,
              out, counts, fetched, busy):
    """Rows g = step L + layer from g0 on, P = len(lens) steps of lens[p] tokens (experts [tokens, L, k]
    of the chunk's tokens, step after step): per row its items, the union S of its tokens' experts
    (ascending), each with the row of its placement code ((layer E + expert) K + tokens) K + restored in
    the placement columns: slot[code] when the dense table `slot` is used (non-empty), else by binary
    search in the sorted codes `known` (rows known_at). Writes out [P L, ROW_FLOATS] and counts
    [P L, ROW_INTS]; adds fetched bytes per form [3] and busy seconds [3 + U]. Returns (the row it
    stopped at, the evictions, m): P L when done (m = 0); else the first row with placement codes not
    asked yet, before any state changed for it, and the m codes of it and the rows after that are not
    asked yet, into new (with repeats).
    Cache key of an item's weights: (layer E + expert) 3 + form, of its factors: ... 3 + 1; partition:
    its layer (or 0 when shared)."""
    G = len(lens) * L
    M = min(E, experts.shape[2] * max(lens.max(), 1)) if len(lens) else 0  # most items a row can have
    first = np.zeros(len(lens) + 1, dtype=np.int64)
    for p in range(len(lens)):
        first[p + 1] = first[p] + lens[p]
    cnt, rst = np.zeros(E, dtype=np.int64), np.zeros(E, dtype=np.int64)
    items, rows = np.zeros(E, dtype=np.int64), np.zeros(E, dtype=np.int64)
    j_arr = np.zeros(2 * M + M)          # transfers of a row on the expert link: copies, then NDP results
    j_wire = np.zeros(2 * M + M)
    j_end = np.zeros(2 * M + M)
    r_arr, r_wire = np.zeros(M), np.zeros(M)  # NDP results of a row, in op order
    r_order = np.zeros(M, dtype=np.int64)
    r_ahead = np.zeros(M, dtype=np.int64)    # the op each NDP op queued behind on its unit (-1: none)
    s_arr, s_wire, s_end = np.zeros(M), np.zeros(M), np.zeros(M)
    w_copy = np.zeros(M, dtype=np.int64)  # per GPU item: index of its weights' copy among the row's (-1: none)
    f_copy = np.zeros(M, dtype=np.int64)
    g_items = np.zeros(M, dtype=np.int64)
    ufree = np.zeros(max(U, 1))
    u_last = np.zeros(max(U, 1), dtype=np.int64)
    evictions = 0
    stop, m = G, 0
    for g in range(g0, G):
        step, layer = g // L, g % L
        part = layer if per_layer else 0
        n_items = 0  # the union S of the step's tokens' experts at this layer, ascending
        scan = 4 * lens[step] * experts.shape[2] >= E  # many: count, then scan the experts in order
        for i in range(first[step], first[step + 1]):
            for j in range(experts.shape[2]):
                e = experts[i, layer, j]
                if cnt[e] == 0 and not scan:  # few: insertion
                    k = n_items
                    while k > 0 and items[k - 1] > e:
                        items[k] = items[k - 1]
                        k -= 1
                    items[k] = e
                    n_items += 1
                cnt[e] += 1
                if j < top_n:
                    rst[e] += 1
        if scan:
            for e in range(E):
                if cnt[e]:
                    items[n_items] = e
                    n_items += 1
        for i in range(n_items):
            e = items[i]
            code = ((layer * E + e) * K + cnt[e]) * K + rst[e]
            if len(slot):
                rows[i] = slot[code]
            else:  # binary search (no call: see lru_access)
                lo, hi = 0, len(known)
                while lo < hi:
                    mid = (lo + hi) // 2
                    if known[mid] < code:
                        lo = mid + 1
                    else:
                        hi = mid
                rows[i] = known_at[lo] if lo < len(known) and known[lo] == code else -1
            if rows[i] < 0:
                new[m] = code
                m += 1
            cnt[e] = rst[e] = 0
        if m:  # placements not asked yet: collect those of the rows left, then return
            if stop == G:
                stop = g
            continue
        # -- cache lookups of the GPU items, in item order: weights, then factors
        if q_tail[part] + 2 * M > q_key.shape[1]:
            lru_room(part, 2 * M, last, resident, q_key, q_stamp, q_head, q_tail)
        nj = n_gpu = n_ndp = hits = 0
        for a in range(n_items):
            t = rows[a]
            if gpu[t]:
                w_copy[n_gpu] = f_copy[n_gpu] = -1
                if look[t]:
                    for which in range(2):
                        if which == 1 and not fac[t]:
                            break
                        key = (layer * E + items[a]) * 3 + (wform[t] if which == 0 else 1)
                        hit, ev = lru_access(key, key_size, part, capacity, last, resident, used, q_key, q_stamp,
                                             q_head, q_tail, clock)
                        evictions += ev
                        if hit:
                            hits += 1
                        else:
                            j_arr[nj] = 0.0
                            j_wire[nj] = key_wire[key]
                            fetched[key % 3] += key_size[key]
                            busy[BUSY_EXPERT_LINK] += key_wire[key]
                            out[g, BYTES_EXPERT] += key_size[key]
                            if which == 0:
                                w_copy[n_gpu] = nj
                            else:
                                f_copy[n_gpu] = nj
                            nj += 1
                g_items[n_gpu] = a
                n_gpu += 1
            if ndp[t]:
                n_ndp += 1
        counts[g, HITS] = hits
        counts[g, MISSES] = nj
        counts[g, N_GPU] = n_gpu
        counts[g, N_NDP] = n_ndp
        # -- NDP: activations out, ops FIFO per unit, results back
        act_end = 0.0
        ops_end = -np.inf
        if n_ndp:
            act_end = act_time[step]
            out[g, BYTES_ACT] = act_bytes[step]
            busy[BUSY_ACT] += act_wire[step]
            ufree[:] = 0.0
            u_last[:] = -1
            k = 0
            for a in range(n_items):
                t = rows[a]
                if ndp[t]:
                    u = items[a] % U
                    e = max(act_end, ufree[u]) + op_n[t]
                    ufree[u] = e
                    r_ahead[k] = u_last[u]
                    u_last[u] = k
                    busy[3 + u] += op_n[t]
                    busy[BUSY_RESULT] += res_wire[t]
                    out[g, BYTES_RESULT] += rbytes[t]
                    ops_end = max(ops_end, e)
                    r_arr[k] = e
                    r_wire[k] = res_wire[t]
                    k += 1
        # -- transfers: copies at the row start in issue order; NDP results when their op ends
        done = -np.inf
        n = nj
        if n_ndp:
            _by_end(r_arr, r_ahead, n_ndp, r_order)  # results are sent as their ops end
            if shared_link:  # behind the copies (issued at 0) on the same link direction
                for k in range(n_ndp):
                    j_arr[nj + k] = r_arr[r_order[k]]
                    j_wire[nj + k] = r_wire[r_order[k]]
                n = nj + n_ndp
            else:
                for k in range(n_ndp):
                    s_arr[k] = r_arr[r_order[k]]
                    s_wire[k] = r_wire[r_order[k]]
                _serve_in_order(s_arr, s_wire, n_ndp, r_lat, r_engines, s_end)
                for k in range(n_ndp):
                    done = max(done, s_end[k])
        _serve_in_order(j_arr, j_wire, n, e_lat, e_engines, j_end)
        for k in range(nj, n):
            done = max(done, j_end[k])
        # -- GPU stream
        T = shared[step]
        block_stall = 0.0
        if block and nj:  # no expert starts before the layer's last load has arrived
            latest = 0.0
            for k in range(nj):
                latest = max(latest, j_end[k])
            blocked = max(T, latest)
            block_stall = blocked - T
            T = blocked
        sum_e = sum_c = stall = 0.0
        late = False
        for i in range(n_gpu):
            w = max(0.0, j_end[w_copy[i]]) if w_copy[i] >= 0 else 0.0
            f = max(0.0, j_end[f_copy[i]]) if f_copy[i] >= 0 else 0.0
            if max(w, f) > T:
                late = True
        if late:  # ready experts first, then the others in order, each waiting for its copies
            T0 = T
            for ready in (True, False):
                for i in range(n_gpu):
                    w = max(0.0, j_end[w_copy[i]]) if w_copy[i] >= 0 else 0.0
                    f = max(0.0, j_end[f_copy[i]]) if f_copy[i] >= 0 else 0.0
                    if (max(w, f) > T0) == ready:
                        continue
                    t = rows[g_items[i]]
                    wait = max(w - T, 0.0)
                    stall += wait
                    T += wait + op_e[t]
                    wait = max(f - T, 0.0) if op_c[t] > 0 else 0.0
                    stall += wait
                    T += wait + op_c[t]
                    sum_e += op_e[t]
                    sum_c += op_c[t]
        else:
            for i in range(n_gpu):
                t = rows[g_items[i]]
                T += op_e[t]
                T += op_c[t]
                sum_e += op_e[t]
                sum_c += op_c[t]
        out[g, EXPERT_GPU] = sum_e
        out[g, COMPENSATION] = sum_c
        if n_ndp:  # the last NDP result; the units were busy over [act_end, last op end]
            gap = max(done - T, 0.0)
            ndp_busy = max(ops_end - max(act_end, T), 0.0) if gap > 0 else 0.0
            out[g, EXPERT_NDP] = ndp_busy
            stall += gap - ndp_busy
            T = max(T, done)
        out[g, STALL] = stall + block_stall
        out[g, DUR] = T
    return stop, evictions, m
