"""Each SimPy component alone, SimPy style: log (what, env.now) and assert the list."""

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.des.cache import ExpertCache, PartitionedCache
from simulator.des.gpu import GPU
from simulator.des.link import Link
from simulator.des.ndp import NDPUnits
from simulator.scenario import DEMAND, EXPERT_NDP, OTHER, PREFETCH, TRANSFER_STALL
from tests.engine_tiny import tiny_system


def test_link_serves_demand_before_queued_prefetches():
    env, log = simpy.Environment(), []
    link = Link(env, tiny_system().links[0]).to_gpu  # 1 engine, 1 s + bytes / 10

    def client(name, nbytes, priority, delay):
        yield env.timeout(delay)
        yield link.transfer(nbytes, priority)
        log.append((name, env.now))

    env.process(client("first", 10, PREFETCH, 0))      # latency 0 -> 1, wire 1 -> 2
    env.process(client("prefetch", 20, PREFETCH, 0.5))  # queued; served after the demand
    env.process(client("demand", 30, DEMAND, 1))        # engine at 2, wire 3 -> 6
    env.run()
    assert log == [("first", 2), ("demand", 6), ("prefetch", 9)]
    assert link.bytes == 60 and link.transfers == 3 and link.busy == 1 + 3 + 2  # wire seconds


def test_link_engines_overlap_latencies_but_share_the_wire_and_window_clips_busy_time():
    env, log = simpy.Environment(), []
    link = Link(env, tiny_system(dma_engines=2).links[0]).from_gpu

    def client(name):
        yield link.transfer(40)  # 1 s latency + 4 s on the wire
        log.append((name, env.now))

    for name in "abc":
        env.process(client(name))

    def window():
        yield env.timeout(2)
        link.open_window()   # a's wire 1 -> 5 has 3 s left
        yield env.timeout(6)
        link.close_window()  # b's wire 5 -> 9: 1 s of it lies beyond 8

    env.process(window())
    env.run()
    # a, b: latency 0 -> 1 together; wire a 1 -> 5, b 5 -> 9; c takes a's engine at 5, wire 9 -> 13
    assert log == [("a", 5), ("b", 9), ("c", 13)]
    assert link.busy == 3 + 3


def test_gpu_kernel_is_the_roofline_plus_launch_overhead():
    env, log = simpy.Environment(), []
    gpu = GPU(env, tiny_system().gpu)  # 1000 FLOP/s, 100 B/s, 1 s per kernel

    def stream():
        yield gpu.op(OTHER, 5000, 100, "compute-bound")   # max(5, 1) + 1
        log.append(("compute-bound", env.now))
        yield gpu.op(OTHER, 1000, 300, "memory-bound")    # max(1, 3) + 1
        log.append(("memory-bound", env.now))
        t0 = env.now
        yield env.timeout(2.5)
        gpu.idled(t0, "wait", ndp_busy=1.0)
        log.append(("waited", env.now))

    env.process(stream())
    env.run()
    assert log == [("compute-bound", 6), ("memory-bound", 10), ("waited", 12.5)]
    acc = gpu.take()
    assert acc[OTHER] == 10 and acc[EXPERT_NDP] == 1.0 and acc[TRANSFER_STALL] == 1.5
    assert gpu.busy == 10 and gpu.take() == [0.0] * 7


def test_ndp_units_contend_and_compute_at_the_precision_of_the_bits():
    env, log = simpy.Environment(), []
    ndp = NDPUnits(env, tiny_system().ndp)  # 2 units; fp16 100, int4 400 FLOP/s; 10 B/s; 1 s per op

    def op(name, expert, flops, nbytes, bits):
        yield from ndp.compute(expert, flops, nbytes, bits)
        log.append((name, env.now))

    env.process(op("e0 int4", 0, 800, 10, 4))   # unit 0: max(2, 1) + 1 = 3
    env.process(op("e2 fp16", 2, 800, 10, 16))  # unit 0, queued: max(8, 1) + 1 -> 3 + 9 = 12
    env.process(op("e1 int8", 1, 800, 10, 8))   # unit 1: int8 absent -> best rate 400: 3
    env.run()
    assert log == [("e0 int4", 3), ("e1 int8", 3), ("e2 fp16", 12)]
    assert ndp.busy == [12, 3] and sorted(ndp.intervals) == [(0, 3), (0, 3), (3, 12)]


def test_lru_evicts_least_recently_used():
    cache = ExpertCache(100, "lru")
    cache.insert("a", 40)
    cache.insert("b", 40)
    assert cache.lookup("a")
    assert cache.insert("c", 40) == ["b"]
    assert cache.keys() == ["a", "c"] and not cache.lookup("b")
    assert cache.insert("big", 101) == [] and "big" not in cache  # larger than the cache: streams through


def test_lfu_evicts_least_frequently_used_and_remembers_counts():
    cache = ExpertCache(80, "lfu")
    cache.insert("a", 40)
    cache.lookup("a")
    cache.lookup("a")          # a: 3 accesses
    cache.insert("b", 40)      # b: 1
    assert cache.insert("c", 40) == ["b"]   # residents a (3) and b (1): b goes
    assert cache.insert("b", 40) == ["c"]   # b: 2 accesses now beats c's 1
    assert sorted(cache.keys()) == ["a", "b"]


def test_per_layer_partitions_are_independent():
    cache = PartitionedCache(50, "lru", layers=2)
    cache.part(0).insert((0, 1, "lowbit"), 50)
    cache.part(1).insert((1, 1, "lowbit"), 50)
    assert (0, 1, "lowbit") in cache.part(0) and cache.capacity == 100 and cache.evictions == 0


@settings(max_examples=60, deadline=None)
@given(policy=st.sampled_from(["lru", "lfu"]), capacity=st.integers(0, 300),
       ops=st.lists(st.tuples(st.integers(0, 9), st.booleans()), max_size=80))
def test_cache_never_exceeds_capacity_and_accounts_bytes(policy, capacity, ops):
    cache = ExpertCache(capacity, policy)
    size = {k: 10 + 17 * k for k in range(10)}
    for key, look in ops:
        if look:
            assert cache.lookup(key) == (key in cache)
        else:
            evicted = cache.insert(key, size[key])
            assert key not in evicted
            assert (key in cache) == (size[key] <= capacity)
        assert cache.used == sum(size[k] for k in cache) <= capacity
