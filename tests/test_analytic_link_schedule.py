"""The analytic kernel's link scheduling (simulator.fast.links.schedule, serve_idle) against a plain
list scheduler written for clarity: an engine that frees takes the best transfer arrived by then (lower
priority value, then arrival, then list order), pays the latency, then holds the one wire."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.fast import links as kernel

LAT = 0.3


def list_schedule(arr, prio, wire_s, engines, wire):
    engines, end, left = list(engines), [0.0] * len(arr), set(range(len(arr)))
    while left:
        srv = min(range(len(engines)), key=lambda e: (engines[e], e))
        tf = engines[srv]
        tstar = max(tf, min(arr[j] for j in left))
        pick = min((j for j in left if arr[j] <= tstar), key=lambda j: (prio[j], arr[j], j))
        t = max(max(tf, arr[pick]) + LAT, wire) + wire_s[pick]
        end[pick], engines[srv], wire = t, t, t
        left.remove(pick)
    return end, sorted(engines), wire


transfers = st.lists(st.tuples(st.integers(0, 8), st.integers(0, 1), st.integers(1, 9)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(items=transfers, engines=st.lists(st.integers(0, 6), min_size=1, max_size=3), wire=st.integers(0, 6))
def test_schedule_is_list_scheduling(items, engines, wire):
    items = sorted(items, key=lambda x: x[0])  # the kernel's lists are by arrival
    arr, prio, wire_s = (np.array([x[i] for x in items], dtype=dt) / d for i, dt, d in
                         ((0, float, 2), (1, np.int64, 1), (2, float, 4)))
    prio = prio.astype(np.int64)
    n = len(items)
    eng, w, end = np.array(engines, dtype=float) / 2, np.array([wire / 2]), np.zeros(n)
    want_end, want_eng, want_wire = list_schedule(arr, prio, wire_s, eng.copy(), w[0])
    kernel.schedule(arr, prio, wire_s, n, LAT, eng, w, end, np.zeros(n, dtype=bool))
    assert end.tolist() == want_end
    assert sorted(eng.tolist()) == want_eng and w[0] == want_wire


@settings(max_examples=200, deadline=None)
@given(items=transfers, engines=st.integers(1, 3))
def test_idle_service_is_list_scheduling_of_one_priority(items, engines):
    items = sorted(items, key=lambda x: x[0])
    arr = np.array([x[0] for x in items], dtype=float) / 2
    wire_s = np.array([x[2] for x in items], dtype=float) / 4
    n = len(items)
    eng, w, end = np.zeros(engines), np.zeros(1), np.zeros(n)  # idle: free at 0 <= every arrival
    want_end, want_eng, want_wire = list_schedule(arr, np.zeros(n, dtype=np.int64), wire_s, eng.copy(), 0.0)
    kernel.serve_idle(arr, wire_s, n, LAT, eng, w, end)
    assert end.tolist() == want_end
    assert w[0] == want_wire
    assert sorted(eng.tolist())[-min(n, engines):] == want_eng[-min(n, engines):]  # the engines it used
