"""The GPU expert cache of the fast timer: an exact byte-capacity LRU or LFU over integer cache keys.

The rules are simulator.des.cache.ExpertCache's (a hit refreshes the key; a miss inserts it, evicting
victims until it fits; a key larger than its partition streams through; LFU counts accesses for ever and
evicts the fewest, then the least recent), kept as flat arrays so the compiled kernel can run them:
a cache key is (layer E + expert) N_FORMS + form (simulator.placement), a partition is a MoE layer or
the one shared cache. Tests hold these against ExpertCache access by access (property tests).
"""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np

# The cache of one run: key_size and key_wire [keys] (bytes, seconds on the expert link's wire), the
# partitions' capacity, per_layer / lfu flags, then the LRU's state (lru_access) and the LFU's own (lfu_access).
Cache = namedtuple("Cache", "key_size key_wire per_layer capacity lfu last resident used queue q_head q_tail "
                            "clock freq members n_members member_at")


def new_cache(key_size: np.ndarray, key_wire: np.ndarray, layers: int, per_layer: bool, capacity: float,
              lfu: bool) -> Cache:
    """An empty cache over keys 0 .. len(key_size) - 1: a partition of `capacity` bytes per MoE layer
    (`per_layer`, `layers` of them) or one shared."""
    return Cache(np.ascontiguousarray(key_size, dtype=float), np.ascontiguousarray(key_wire, dtype=float),
                 bool(per_layer), float(capacity), bool(lfu), *cache_state(len(key_size), layers if per_layer else 1))


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


@numba.njit(cache=True, _nrt=False, inline="always")
def access(c, key, part):
    """One access of cache key `key` in partition `part` of Cache `c`: (hit, evictions)."""
    if c.lfu:
        return lfu_access(key, c.key_size, part, c.capacity, c.last, c.resident, c.used, c.clock, c.freq,
                          c.members, c.n_members, c.member_at)
    return lru_access(key, c.key_size, part, c.capacity, c.last, c.resident, c.used, c.queue, c.q_head,
                      c.q_tail, c.clock)


@numba.njit(cache=True, _nrt=False, inline="always")
def make_room(c, part, need):
    """Before `need` accesses in partition `part`: an LRU's queue gets room for them (lru_room)."""
    if not c.lfu and c.q_tail[part] + need > c.queue.shape[1]:
        lru_room(part, need, c.last, c.resident, c.queue, c.q_head, c.q_tail)
