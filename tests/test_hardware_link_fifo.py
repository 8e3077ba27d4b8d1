"""A fifo link direction (no prefetches: copies known whole when issued, no SimPy event unless asked for)
gives the event-driven direction's arrival times, windowed busy time and log; it refuses prefetches."""

import pytest
import simpy

from simulator.des.link import Link
from simulator.des.log import EventLog
from simulator.scenario import PREFETCH
from tests.engine_tiny import tiny_system


def run_clients(fifo: bool, engines: int, window: tuple[float, float]):
    env, log, events = simpy.Environment(), [], EventLog()
    link = Link(env, tiny_system(dma_engines=engines).links[0], events, fifo=fifo).from_gpu  # 1 s + bytes / 10

    def client(name, nbytes, delay):
        yield env.timeout(delay)
        yield link.event(link.transfer(nbytes))
        log.append((name, env.now))

    for name, nbytes, delay in (("a", 40, 0), ("b", 40, 0), ("c", 40, 0), ("d", 10, 20), ("e", 20, 20.5)):
        env.process(client(name, nbytes, delay))

    def measure():
        yield env.timeout(window[0])
        link.open_window()
        yield env.timeout(window[1] - window[0])
        link.close_window()

    env.process(measure())
    env.run()
    per_engine = {track: [(s, e, b) for t, s, e, b in zip(events.track_id, events.start, events.end, events.nbytes)
                          if t == track] for track in range(len(events.tracks))}
    return log, link.busy, per_engine


@pytest.mark.parametrize("window", [(2, 8), (0, 30), (5, 22.5), (9, 21.5)])
@pytest.mark.parametrize("engines", [1, 2])
def test_fifo_direction_matches_the_event_driven_one(engines, window):
    assert run_clients(True, engines, window) == run_clients(False, engines, window)


def test_fifo_direction_times_by_hand():
    log, busy, _ = run_clients(True, 2, (2, 8))
    # a, b: latency 0 -> 1 together; wire a 1 -> 5, b 5 -> 9; c takes a's engine at 5, wire 9 -> 13;
    # d: 21 -> 22; e: latency 20.5 -> 21.5, waits for d's wire, 22 -> 24
    assert log == [("a", 5), ("b", 9), ("c", 13), ("d", 22), ("e", 24)]
    assert busy == 3 + 3  # a's last 3 s after 2, b's first 3 s before 8


def test_fifo_direction_refuses_prefetches():
    link = Link(simpy.Environment(), tiny_system().links[0], fifo=True).to_gpu
    with pytest.raises(ValueError, match="on-demand"):
        link.transfer(10, PREFETCH)


def test_fifo_transfer_says_when_it_arrives_and_the_stream_can_idle_until_then():
    from simulator.des.gpu import GPU
    from simulator.scenario import TRANSFER_STALL

    env, seen = simpy.Environment(), []
    link = Link(env, tiny_system().links[0], fifo=True).to_gpu
    gpu = GPU(env, tiny_system().gpu)
    copy = link.transfer(30)  # 1 s latency + 3 s wire
    link.event(copy).callbacks.append(lambda ev: seen.append((ev.end, env.now)))
    gpu.t = 1.5
    gpu.wait_until(copy.end, "wait copy")  # no event: the stream clock jumps to the arrival
    env.run()
    assert seen == [(4, 4)] and gpu.t == 4 and gpu.take()[TRANSFER_STALL] == 2.5
