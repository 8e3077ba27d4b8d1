"""Transfers on one link direction of the fast timer: `dma_engines` copy engines sharing one wire.

The rules are simulator.des.link's: a transfer takes the engine freed first (each engine takes the best
transfer arrived by then: lower priority value, on-demand before prefetch, then arrival, then issue
order), pays the link latency, then holds the wire for its bytes; not preempted. `serve_idle` is the
common case without prefetch (one priority, every engine and the wire free by the first arrival: no
search); `schedule` is the general list scheduler. Property tests hold both against a plain scheduler.
"""

from __future__ import annotations

import numba


@numba.njit(cache=True)
def serve_idle(arr, wire_s, n, lat, engines, wire, end):
    """schedule of transfers of one priority on a link whose DMA engines and wire are all free by the
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
def schedule(arr, prio, wire_s, n, lat, engines, wire, end, done):
    """Transfers 0 .. n-1 (arrival `arr`, priority `prio`, wire seconds `wire_s`; listed by arrival, ties in
    issue order) on one link direction whose DMA engines are free at `engines` [c] and wire at wire[0]
    (simulator.des.link), both updated: each engine freed first takes the best transfer arrived by
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
