"""Compiled kernel of the analytic fast path: decode steps with an LRU or LFU cache, with or without
prefetch.

Per step (its tokens' routing), one MoE layer after the other, the kernel does what simulator.engine
does, in the same order, with the arithmetic of simulator.analytic's timing:
1. the union S of the layer's experts (ascending) and each one's placement (tabled per code by the
   caller from Policy.place, one row per residency of the forms the policy reads, picked as the expert
   is placed; a step whose codes are not all tabled stops the kernel before it starts);
2. the cache lookups of its GPU items in item order (weights, then factors): an exact byte-capacity LRU
   or LFU (simulator.hardware.cache.ExpertCache: a hit refreshes the key; a miss inserts it, evicting
   victims until it fits; a key larger than its partition streams through), one partition per MoE layer
   or one shared; every miss is an on-demand copy on the expert link;
3. with prefetch, _Engine.prefetch for the next layer: refresh what it needs and holds (off the budget),
   then per entry it needs and lacks one draw from the DES's own numpy Generator (the same stream):
   below the hit rate the entry, else the next expert id (cyclically) the layer does not use and the
   cache lacks, copied at prefetch priority and inserted, until the next copy would exceed the budget;
4. timing from the layer start t0: activations out to the NDP units, their ops FIFO per unit, results
   back as they end (equal ends in SimPy's order); copies (issued at t0: on-demand first, then prefetches)
   and, when the experts live in the NDP memory, the results share the expert link's DMA engines and
   wire, which each pick the best transfer arrived (demand before prefetch, then arrival, then issue
   order); the link state carries over to the next layer (prefetches overlap it) and is dropped at the
   step's end; the GPU stream runs the shared experts, [waits for the layer's on-demand loads], then the
   ready experts first and each other one as its copies arrive (a copy issued at an earlier layer of
   the step counts from its arrival, one from an earlier step is resident), and waits for the last NDP
   result: idle time while an NDP unit computes is expert_ndp, the rest transfer_stall.

Everything that does not depend on the cache state (op seconds of each placement, bytes and wire seconds
of each cache key, per-step attention/router/shared/head seconds) comes from simulator.costs in numpy
before. numba compiles the kernel on first use and caches it under __pycache__, so later processes only
load it (about 0.4 s, once per process). Helpers on the hot path stay small so that LLVM inlines them
(measured: folding the list scheduler's idle case into it, or numba's inline="always", was slower).
"""

from __future__ import annotations

import numba
import numpy as np

DEMAND, PREFETCH = 0, 1  # transfer priorities (simulator.hardware.link)
# columns of a placement row: ti (int8) and tf (float) [rows, 5], one row per placement (and residency)
GPU, LOOK, FAC, WFORM, NDP = range(5)     # GPU part; looks up its weights (of form WFORM), factors; NDP part
OP_E, OP_C, OP_N, RES_WIRE, RBYTES = range(5)  # op seconds: expert GEMMs, compensation, NDP op; result
# columns of the per-step float output
START, END, EXPERT_GPU, COMPENSATION, EXPERT_NDP, STALL, BYTES_EXPERT, BYTES_ACT, BYTES_RESULT = range(9)
STEP_FLOATS = 9
# columns of the per-step int output
HITS, MISSES, N_GPU, N_NDP = range(4)
STEP_INTS = 4
# slots of the run totals (then one busy total per NDP unit)
(BUSY_EXPERT_LINK, BUSY_ACT, BUSY_RESULT, FETCHED_LOWBIT, FETCHED_FACTORS, FETCHED_FULL, PREFETCH_BYTES,
 PREFETCH_WASTED, EVICTIONS) = range(9)
TOTALS = 9
# index of the lowest set bit of a 64-bit word w: DEBRUIJN[((w & -w) * DEBRUIJN_MUL) >> 58]
DEBRUIJN_MUL = np.uint64(0x03F79D71B4CB0A89)
DEBRUIJN = np.zeros(64, dtype=np.int64)
DEBRUIJN[[(int(DEBRUIJN_MUL) << i & (1 << 64) - 1) >> 58 for i in range(64)]] = np.arange(64)


KEY_BITS = 24  # a queue entry is stamp << KEY_BITS | key
KEY_MASK = (1 << KEY_BITS) - 1


def cache_state(keys: int, parts: int) -> tuple:
    """Empty cache state of `parts` partitions over cache keys 0 .. keys - 1: the LRU's (lru_access:
    last, resident, used, queue, q_head, q_tail, clock), then the LFU's own (lfu_access: freq, members,
    n_members, member_at)."""
    if keys >= 1 << KEY_BITS:
        raise ValueError(f"{keys} cache keys: the LRU queue packs keys into {KEY_BITS} bits")
    per = keys // parts
    Q = 4 * per + 64  # queue slots per partition: > its keys + a step's accesses (lru_room)
    return (np.zeros(keys, dtype=np.int64), np.zeros(keys, dtype=bool), np.zeros(parts),
            np.zeros((parts, Q), dtype=np.int64), np.zeros(parts, dtype=np.int64), np.zeros(parts, dtype=np.int64),
            np.zeros(1, dtype=np.int64),
            np.zeros(keys, dtype=np.int64), np.zeros((parts, per), dtype=np.int64), np.zeros(parts, dtype=np.int64),
            np.zeros(keys, dtype=np.int64))


@numba.njit(cache=True)
def lfu_access(key, key_size, part, capacity, last, resident, used, clock, freq, members, n_members, member_at):
    """One access of cache key `key` in partition `part` of an LFU cache: (hit, evictions), with
    ExpertCache's rules: accesses per key counted for ever (freq [K], also when a key too large for the
    partition streams through), `last` [K] the clock at each key's latest counted access; the victim
    is the resident key with the fewest accesses, the least recently counted among those, found by a
    scan of the partition's resident keys (members [parts, keys per partition], n_members [parts],
    member_at [K]: a key's place there)."""
    if resident[key]:
        clock[0] += 1
        freq[key] += 1
        last[key] = clock[0]
        return True, 0
    size = key_size[key]
    if size > capacity:  # streams through: counted, never resident
        freq[key] += 1
        return False, 0
    u, evicted = used[part], 0
    while u + size > capacity and n_members[part]:  # ExpertCache.insert's arithmetic
        victim = members[part, 0]
        for i in range(1, n_members[part]):
            k = members[part, i]
            if freq[k] < freq[victim] or (freq[k] == freq[victim] and last[k] < last[victim]):
                victim = k
        u -= key_size[victim]
        resident[victim] = False
        n_members[part] -= 1  # its place takes the last member
        moved = members[part, n_members[part]]
        members[part, member_at[victim]] = moved
        member_at[moved] = member_at[victim]
        evicted += 1
    used[part] = u + size
    resident[key] = True
    members[part, n_members[part]] = key
    member_at[key] = n_members[part]
    n_members[part] += 1
    clock[0] += 1
    freq[key] += 1
    last[key] = clock[0]
    return False, evicted


@numba.njit(cache=True)
def lru_access(key, key_size, part, capacity, last, resident, used, queue, q_head, q_tail, clock):
    """One access of cache key `key` in partition `part`: (hit, evictions). Recency is a stamp per key
    (last [K]); each partition queues stamp << KEY_BITS | key per access, in stamp order (queue
    [parts, Q], live slots q_head:q_tail), so its least recently used resident key is the first queued
    entry whose stamp is still its key's (older entries of a key are stale and skipped). `resident` [K]
    and `used` [parts] bytes are updated in place; key_size [K] bytes per key. The queue must have a free
    slot (lru_room)."""
    if resident[key]:
        clock[0] += 1
        last[key] = clock[0]
        t = q_tail[part]
        queue[part, t] = clock[0] << KEY_BITS | key
        q_tail[part] = t + 1
        return True, 0
    size = key_size[key]
    if size > capacity:  # streams through: never resident
        return False, 0
    u, h, evicted = used[part], q_head[part], 0
    while u + size > capacity and h < q_tail[part]:  # ExpertCache.insert's arithmetic: used -= victim,
        victim = queue[part, h] & KEY_MASK               # then used + size
        if resident[victim] and queue[part, h] >> KEY_BITS == last[victim]:
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
    queue[part, t] = clock[0] << KEY_BITS | key
    q_tail[part] = t + 1
    return False, evicted


@numba.njit(cache=True)
def lru_room(part, need, last, resident, queue, q_head, q_tail):
    """Make room for `need` more accesses in partition `part`'s queue: when it lacks them, keep only the
    live entries (one per resident key), in order, at its front."""
    if q_tail[part] + need <= queue.shape[1]:
        return
    t = 0
    for i in range(q_head[part], q_tail[part]):
        k = queue[part, i] & KEY_MASK
        if resident[k] and queue[part, i] >> KEY_BITS == last[k]:
            queue[part, t] = queue[part, i]
            t += 1
    q_head[part], q_tail[part] = 0, t


@numba.njit(cache=True)
def _serve_idle(arr, wire_s, n, lat, engines, wire, end):
    """_schedule of transfers of one priority on a link whose DMA engines and wire are all free by the
    first arrival (no prefetch): transfer j takes the engine transfer j - c frees (no search)."""
    c = len(engines)
    w = wire[0]
    for j in range(n):
        t = arr[j] + lat if j < c else max(end[j - c], arr[j]) + lat
        t = max(t, w)
        t += wire_s[j]
        end[j] = t
        w = t
    wire[0] = w
    for i in range(min(n, c)):  # the engines free last
        engines[i] = end[n - 1 - i]


@numba.njit(cache=True)
def _schedule(arr, prio, wire_s, n, lat, engines, wire, end, done):
    """Transfers 0 .. n-1 (arrival `arr`, priority `prio`, wire seconds `wire_s`; listed by arrival, ties in
    issue order) on one link direction whose DMA engines are free at `engines` [c] and wire at wire[0]
    (simulator.hardware.link), both updated: each engine freed first takes the best transfer arrived by
    then (lower priority value, then list order), pays `lat`, then holds the wire. Writes the arrivals
    into `end`; `done` [>= n] is scratch."""
    c = len(engines)
    one_prio = True
    for j in range(1, n):
        one_prio = one_prio and prio[j] == prio[0]
    for j in range(n):
        done[j] = False
    first = 0  # the first transfer not served yet
    for _ in range(n):
        srv, tf = 0, engines[0]
        for e in range(1, c):
            if engines[e] < tf:
                srv, tf = e, engines[e]
        while done[first]:
            first += 1
        pick = first  # one priority: the first in the list (the earliest arrived) ...
        if not one_prio:  # ... else the best arrived by the time an engine takes one
            tstar = max(tf, arr[first])  # arr[first]: the earliest arrival not served (listed ascending)
            for j in range(first + 1, n):
                if arr[j] > tstar:
                    break
                if not done[j] and prio[j] < prio[pick]:
                    pick = j
        t = max(tf, arr[pick]) + lat
        t = max(t, wire[0])
        t += wire_s[pick]
        end[pick] = t
        engines[srv] = t
        wire[0] = t
        done[pick] = True


@numba.njit(cache=True)
def run_steps(experts, lens, s0, step_base, L, E, K, top_n, U, slot, known, known_at, new,  # routing
              read_forms, ti, tf,                                                          # placements
              key_size, key_wire, per_layer, capacity,                                    # the cache
              last, resident, used, queue, q_head, q_tail, clock,                         # LRU state
              lfu, freq, members, n_members, member_at,                                   # LFU's own
              prefetch, hit_rate, rng, copy_step, copy_end,                               # prefetch
              att, router, dense, shared, head, first_dense, act_wire, act_bytes, now,    # per step [P]
              a_lat, e_lat, e_engines, r_lat, r_engines, shared_link, block,
              out, counts, totals, ndp_busy):
    """Steps s0 .. P-1 of a chunk (P = len(lens) steps of lens[p] tokens; experts [tokens, L, k] of the
    chunk's tokens, step after step; the run's step index is step_base + p). An item's placement is the
    row of its code ((layer E + expert) K + tokens) K + restored in the placement columns: slot[code]
    when the dense table `slot` is used (non-empty), else by binary search in the sorted codes `known`
    (rows known_at), plus bit j when form read_forms[j] of the expert is resident as it is placed; its
    columns are ti[row] and tf[row]. Cache key: (layer E + expert) 3 + form (FORMS order); partition: its
    layer, or 0 when shared. copy_step/copy_end [K]: run step and arrival of each key's latest copy.
    Time is absolute, as the DES's clock: the chunk starts at now[0] (updated to its end), and each step
    runs its GPU ops as the DES issues them (per dense layer attention, dense FFN; per MoE layer
    attention, router, the layer; the LM head), so that times, and ties between them, are the DES's.
    Per step: out [P, STEP_FLOATS] (start and end, categories in the DES's order of additions, link
    bytes) and counts [P, STEP_INTS]; adds run totals (TOTALS slots) and NDP busy seconds per unit [U].
    Returns (the step it stopped at, m): P and 0 when done; else the first step with placement codes not
    tabled yet (before any state changed for it), and the m codes of it and of the steps after it that
    are not tabled, into `new` (with repeats)."""
    P = len(lens)
    k_slots = experts.shape[2]
    M = 0  # most items a layer can have
    for p in range(P):
        M = max(M, min(E, k_slots * lens[p]))
    first = np.zeros(P + 1, dtype=np.int64)
    for p in range(P):
        first[p + 1] = first[p] + lens[p]
    cnt, rst = np.zeros(E, dtype=np.int64), np.zeros(E, dtype=np.int64)
    mask = np.zeros((E + 63) // 64, dtype=np.uint64)  # experts of a (step, layer), a bit each
    used_by_next = np.zeros(E, dtype=np.bool_)
    items, rows = np.zeros((L, max(M, 1)), dtype=np.int64), np.zeros((L, max(M, 1)), dtype=np.int64)
    n_items = np.zeros(L, dtype=np.int64)
    J = 5 * M + 1  # transfers a layer can have on the expert link: 2 M copies, 2 M prefetches, M results
    j_arr, j_wire, j_end = np.zeros(J), np.zeros(J), np.zeros(J)
    j_prio, j_key = np.zeros(J, dtype=np.int64), np.zeros(J, dtype=np.int64)
    done = np.zeros(J, dtype=np.bool_)
    r_arr, r_wire, r_end = np.zeros(M + 1), np.zeros(M + 1), np.zeros(M + 1)  # NDP results, in op order
    r_order, r_pos = np.zeros(M + 1, dtype=np.int64), np.zeros(M + 1, dtype=np.int64)  # end order; position
    s_arr, s_wire, s_prio = np.zeros(M + 1), np.zeros(M + 1), np.zeros(M + 1, dtype=np.int64)
    g_items = np.zeros(M + 1, dtype=np.int64)  # per GPU item of a layer: its item, its copies' arrivals
    g_w, g_f = np.zeros(M + 1), np.zeros(M + 1)
    ufree = np.zeros(max(U, 1))
    unit_of = np.arange(E) % max(U, 1)  # NDP unit of each expert
    u_count, u_head = np.zeros(max(U, 1), dtype=np.int64), np.zeros(max(U, 1), dtype=np.int64)
    u_ops = np.zeros((max(U, 1), M + 1), dtype=np.int64)  # per unit: its ops of the layer, in order
    act_units = np.zeros(max(U, 1), dtype=np.int64)
    e_free, e_wire = np.zeros(e_engines), np.zeros(1)
    r_free, r_wire_t = np.zeros(r_engines), np.zeros(1)
    stop, m = P, 0
    for s in range(s0, P):
        gs = step_base + s
        # -- route every layer of the step (the prefetch of layer l needs layer l + 1's placements)
        for layer in range(L):
            n = 0  # the union S of the step's tokens' experts at this layer, ascending: a bit per expert
            for i in range(first[s], first[s + 1]):
                for j in range(k_slots):
                    e = experts[i, layer, j]
                    mask[e >> 6] |= np.uint64(1) << np.uint64(e & 63)
                    cnt[e] += 1
                    if j < top_n:
                        rst[e] += 1
            for w in range(len(mask)):  # set bits low to high (de Bruijn: the lowest bit's index)
                word = mask[w]
                while word:
                    low = word & (~word + np.uint64(1))
                    items[layer, n] = w * 64 + DEBRUIJN[np.int64((low * DEBRUIJN_MUL) >> np.uint64(58))]
                    n += 1
                    word ^= low
                mask[w] = 0
            n_items[layer] = n
            for i in range(n):
                e = items[layer, i]
                code = ((layer * E + e) * K + cnt[e]) * K + rst[e]
                if len(slot):
                    rows[layer, i] = slot[code]
                else:  # binary search
                    lo, hi = 0, len(known)
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if known[mid] < code:
                            lo = mid + 1
                        else:
                            hi = mid
                    rows[layer, i] = known_at[lo] if lo < len(known) and known[lo] == code else -1
                if rows[layer, i] < 0:
                    new[m] = code
                    m += 1
                cnt[e] = rst[e] = 0
        if m:  # placements not tabled: collect those of the steps left, then return
            if stop == P:
                stop = s
            continue
        T = now[0]
        out[s, START] = T
        for _ in range(first_dense):
            T += att[s]
            T += dense[s]
        e_free[:] = 0.0
        e_wire[0] = 0.0
        r_free[:] = 0.0
        r_wire_t[0] = 0.0
        for layer in range(L):
            T += att[s]
            T += router[s]
            t0 = T
            part = layer if per_layer else 0
            for p_ in (part, layer + 1 if per_layer and prefetch and layer + 1 < L else part):
                if not lfu and q_tail[p_] + 8 * M + 8 > queue.shape[1]:  # a layer's accesses in a partition
                    lru_room(p_, 8 * M + 8, last, resident, queue, q_head, q_tail)  # are fewer than 8 M
            # -- demand lookups of the GPU items, in item order: weights, then factors
            nj = n_gpu = n_ndp = hits = 0
            for a in range(n_items[layer]):
                t = rows[layer, a]
                for j in range(len(read_forms)):  # placed now: the residency it reads picks its row
                    if resident[(layer * E + items[layer, a]) * 3 + read_forms[j]]:
                        t += 1 << j
                rows[layer, a] = t
                if ti[t, GPU]:
                    if ti[t, LOOK]:
                        for which in range(2):
                            if which == 1 and not ti[t, FAC]:
                                break
                            key = (layer * E + items[layer, a]) * 3 + (ti[t, WFORM] if which == 0 else 1)
                            if lfu:
                                hit, ev = lfu_access(key, key_size, part, capacity, last, resident, used, clock,
                                                     freq, members, n_members, member_at)
                            else:
                                hit, ev = lru_access(key, key_size, part, capacity, last, resident, used, queue,
                                                     q_head, q_tail, clock)
                            if ev:
                                totals[EVICTIONS] += ev
                            if hit:
                                hits += 1
                            else:
                                j_arr[nj], j_wire[nj], j_prio[nj], j_key[nj] = t0, key_wire[key], DEMAND, key
                                totals[FETCHED_LOWBIT + (ti[t, WFORM] if which == 0 else 1)] += key_size[key]
                                nj += 1
                    g_items[n_gpu] = a
                    n_gpu += 1
                if ti[t, NDP]:
                    n_ndp += 1
            counts[s, HITS] += hits
            counts[s, MISSES] += nj
            counts[s, N_GPU] += n_gpu
            counts[s, N_NDP] += n_ndp
            n_demand = nj
            # -- prefetch for the next layer (simulator.engine._Engine.prefetch)
            if prefetch and layer + 1 < L:
                nxt = layer + 1
                p2 = nxt if per_layer else 0
                budget = capacity
                for i in range(n_items[nxt]):
                    e = items[nxt, i]
                    used_by_next[e] = True
                    for form in range(3):  # what the layer needs and holds: refreshed, off the budget
                        key = (nxt * E + e) * 3 + form
                        if resident[key]:
                            if lfu:
                                lfu_access(key, key_size, p2, capacity, last, resident, used, clock, freq, members,
                                           n_members, member_at)
                            else:
                                lru_access(key, key_size, p2, capacity, last, resident, used, queue, q_head,
                                           q_tail, clock)
                            budget -= key_size[key]
                full = False
                for i in range(n_items[nxt]):
                    t = rows[nxt, i]
                    e = items[nxt, i]
                    for j in range(len(read_forms)):  # placed at its turn, as the DES places it
                        if resident[(nxt * E + e) * 3 + read_forms[j]]:
                            t += 1 << j
                    if not (ti[t, GPU] and ti[t, LOOK]):
                        continue
                    for which in range(2):
                        if which == 1 and not ti[t, FAC]:
                            break
                        form = ti[t, WFORM] if which == 0 else 1
                        key = (nxt * E + e) * 3 + form
                        if resident[key]:
                            continue
                        if rng.random() >= hit_rate:  # a wrong guess: the next expert id (cyclically)
                            key = -1                    # the layer does not use and the cache lacks
                            for jj in range(e + 1, e + E):
                                cand = (nxt * E + jj % E) * 3 + form
                                if not used_by_next[jj % E] and not resident[cand]:
                                    key = cand
                                    break
                            if key < 0:
                                continue
                        nbytes = key_size[key]
                        if nbytes > budget:
                            full = True
                            break
                        budget -= nbytes
                        j_arr[nj], j_wire[nj], j_prio[nj], j_key[nj] = t0, key_wire[key], PREFETCH, key
                        nj += 1
                        if lfu:
                            hit, ev = lfu_access(key, key_size, p2, capacity, last, resident, used, clock, freq,
                                                 members, n_members, member_at)
                        else:
                            hit, ev = lru_access(key, key_size, p2, capacity, last, resident, used, queue, q_head,
                                                 q_tail, clock)
                        totals[EVICTIONS] += ev
                        totals[FETCHED_LOWBIT + form] += nbytes
                        totals[PREFETCH_BYTES] += nbytes
                        if (key // 3) % E != e:
                            totals[PREFETCH_WASTED] += nbytes
                    if full:
                        break
                for i in range(n_items[nxt]):
                    used_by_next[items[nxt, i]] = False
            wire_sum = bytes_sum = 0.0
            for j in range(nj):
                wire_sum += j_wire[j]
                bytes_sum += key_size[j_key[j]]
            totals[BUSY_EXPERT_LINK] += wire_sum
            out[s, BYTES_EXPERT] += bytes_sum
            # -- NDP: activations out, ops FIFO per unit, results back as they end
            act_end = t0
            ops_end = -np.inf
            if n_ndp:
                act_end = t0 + a_lat  # as simulator.hardware.link adds it: latency, then the wire
                act_end += act_wire[s]
                out[s, BYTES_ACT] += act_bytes[s]
                totals[BUSY_ACT] += act_wire[s]
                ufree[:] = 0.0
                u_count[:] = 0
                wire_sum = bytes_sum = 0.0
                k = 0
                for a in range(n_items[layer]):
                    t = rows[layer, a]
                    if ti[t, NDP]:
                        u = unit_of[items[layer, a]]
                        e_ = max(act_end, ufree[u]) + tf[t, OP_N]
                        ufree[u] = e_
                        ndp_busy[u] += tf[t, OP_N]
                        wire_sum += tf[t, RES_WIRE]
                        bytes_sum += tf[t, RBYTES]
                        ops_end = max(ops_end, e_)
                        r_arr[k], r_wire[k] = e_, tf[t, RES_WIRE]
                        u_ops[u, u_count[u]] = k  # each unit's ops end in submission order
                        u_count[u] += 1
                        k += 1
                totals[BUSY_RESULT] += wire_sum
                out[s, BYTES_RESULT] += bytes_sum
                # the order SimPy ends them (simulator.hardware.ndp.NDPUnits.run), a merge of the units'
                # lists: by end; at equal ends an op that started on an idle unit (its unit's first)
                # first, two of those in submission order, two queued ones in the order of the ops they
                # queued behind (already merged: they end earlier)
                n_units = 0
                for u in range(U):
                    if u_count[u]:
                        act_units[n_units] = u
                        u_head[u] = 0
                        n_units += 1
                for i in range(n_ndp):
                    best, bu = -1, -1
                    for q in range(n_units):
                        u = act_units[q]
                        if u_head[u] == u_count[u]:
                            continue
                        o = u_ops[u, u_head[u]]
                        if best < 0 or r_arr[o] < r_arr[best]:
                            best, bu = o, u
                        elif r_arr[o] == r_arr[best]:
                            o_idle, b_idle = u_head[u] == 0, u_head[bu] == 0
                            if o_idle != b_idle:
                                better = o_idle
                            elif o_idle:
                                better = o < best
                            else:
                                better = r_pos[u_ops[u, u_head[u] - 1]] < r_pos[u_ops[bu, u_head[bu] - 1]]
                            if better:
                                best, bu = o, u
                    r_order[i] = best
                    r_pos[best] = i
                    u_head[bu] += 1
            # -- transfers: copies at t0 (listed in issue order), NDP results as their ops end
            done_t = -np.inf
            n = nj
            if n_ndp:
                if shared_link:  # behind the copies on the same link direction
                    for k in range(n_ndp):
                        o = r_order[k]
                        j_arr[nj + k], j_wire[nj + k], j_prio[nj + k] = r_arr[o], r_wire[o], DEMAND
                    n = nj + n_ndp
                else:
                    for k in range(n_ndp):
                        o = r_order[k]
                        s_arr[k], s_wire[k], s_prio[k] = r_arr[o], r_wire[o], DEMAND
                    if prefetch:
                        _schedule(s_arr, s_prio, s_wire, n_ndp, r_lat, r_free, r_wire_t, r_end, done)
                    else:
                        _serve_idle(s_arr, s_wire, n_ndp, r_lat, r_free, r_wire_t, r_end)
                    for k in range(n_ndp):
                        done_t = max(done_t, r_end[k])
            if prefetch:
                _schedule(j_arr, j_prio, j_wire, n, e_lat, e_free, e_wire, j_end, done)
            else:  # every copy and result of the layer before has arrived: the link is idle
                _serve_idle(j_arr, j_wire, n, e_lat, e_free, e_wire, j_end)
            for k in range(nj, n):
                done_t = max(done_t, j_end[k])
            for j in range(nj):  # the keys' latest copies
                copy_step[j_key[j]] = gs
                copy_end[j_key[j]] = j_end[j]
            # -- GPU stream (simulator.hardware.gpu: a wait sets the clock to the arrival)
            T += shared[s]
            late = False
            for i in range(n_gpu if nj or prefetch else 0):  # when each GPU item's copies arrive (0: resident
                                                              # before the step; none issued: none pending)
                a = g_items[i]
                t = rows[layer, a]
                w = f = 0.0
                if ti[t, LOOK]:
                    key = (layer * E + items[layer, a]) * 3 + ti[t, WFORM]
                    if copy_step[key] == gs:
                        w = copy_end[key]
                    if ti[t, FAC] and copy_step[key - ti[t, WFORM] + 1] == gs:
                        f = copy_end[key - ti[t, WFORM] + 1]
                g_w[i], g_f[i] = w, f
                late = late or max(w, f) > T
            T0 = T  # the ready/waiting split is made here, before the loads block the stream (as the DES)
            if block:  # loads issued on the stream: each on-demand one waited for, in issue order
                for k in range(n_demand):
                    if j_end[k] > T:
                        out[s, STALL] += j_end[k] - T
                        T = j_end[k]
            for ready in (True, False):  # ready experts first, then the others in order, each as its copies
                if ready and not late:   # arrive
                    continue
                for i in range(n_gpu):
                    if late and (max(g_w[i], g_f[i]) > T0) == ready:
                        continue
                    t = rows[layer, g_items[i]]
                    if late and g_w[i] > T:
                        out[s, STALL] += g_w[i] - T
                        T = g_w[i]
                    T += tf[t, OP_E]
                    out[s, EXPERT_GPU] += tf[t, OP_E]
                    if tf[t, OP_C] > 0:
                        if late and g_f[i] > T:
                            out[s, STALL] += g_f[i] - T
                            T = g_f[i]
                        T += tf[t, OP_C]
                        out[s, COMPENSATION] += tf[t, OP_C]
            if n_ndp and done_t >= T:  # the last NDP result; the units were busy over [act_end, last op end]
                gap = done_t - T
                if gap > 0:  # the DES's overlap() of the ops' intervals in closed form (the same value in
                    busy_ndp = max(ops_end - max(act_end, T), 0.0)  # every case tested; else ~1 ulp)
                    out[s, EXPERT_NDP] += busy_ndp
                    out[s, STALL] += gap - busy_ndp
                T = done_t
        T += head[s]
        out[s, END] = T
        now[0] = T
    return stop, m
