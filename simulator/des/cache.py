"""The GPU expert cache: byte-capacity LRU or LFU over entries keyed by (layer, expert, form).

A form is how an expert's bytes are stored: "lowbit" (b-bit codes + scales), "factors" (its low-rank
compensator) or "full" (16-bit). Entries have a size in bytes; inserting evicts victims until the new
entry fits; an entry larger than the whole capacity is not inserted (it streams through). Policies:
  lru  evict the least recently used entry;
  lfu  evict the entry with the fewest accesses (counts persist across evictions, "perfect" LFU), ties
       broken by least recent use.
`ExpertCache` is one partition; `PartitionedCache` gives each MoE layer its own partition (the per-layer
caches of "k experts per layer", Eliseev & Mazur 2023) or shares one partition across layers.
Deterministic: no hashing of unordered sets, ties broken by an access counter.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Hashable
from typing import Literal

CachePolicy = Literal["lru", "lfu"]


class ExpertCache:
    def __init__(self, capacity: float, policy: CachePolicy = "lru"):
        if policy not in ("lru", "lfu"):
            raise ValueError(f"cache policy must be lru or lfu, got {policy!r}")
        self.capacity = float(capacity)
        self.policy = policy
        self._lfu = policy == "lfu"
        self.used = 0.0
        self.evictions = 0
        self._sizes: OrderedDict[Hashable, float] = OrderedDict()  # resident key -> bytes, LRU order
        self._freq: dict[Hashable, int] = {}    # lfu: accesses per key ever seen
        self._stamp: dict[Hashable, int] = {}   # lfu: last access tick per resident key
        self._heap: list[tuple[int, int, Hashable]] = []  # lfu: (freq, tick, key), lazily invalidated
        self._tick = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    def __iter__(self):
        """Resident keys, least recently used first."""
        return iter(list(self._sizes))

    def keys(self) -> list[Hashable]:
        return list(self._sizes)

    def lookup(self, key: Hashable) -> bool:
        """Access `key`: True (and refresh it) when resident; False on a miss."""
        sizes = self._sizes
        if key not in sizes:
            return False
        sizes.move_to_end(key)
        if self._lfu:
            self._count(key)
        return True

    def access(self, entries) -> list:
        """lookup() each (key, size, ...) of `entries` in order and insert() the misses; returns the missed
        entries, in order."""
        sizes, lfu, missed = self._sizes, self._lfu, []
        for entry in entries:
            key = entry[0]
            if key in sizes:
                sizes.move_to_end(key)
                if lfu:
                    self._count(key)
            else:
                self.insert(key, entry[1])
                missed.append(entry)
        return missed

    def insert(self, key: Hashable, size: float) -> list[Hashable]:
        """Make `key` resident (counts as an access); returns the evicted keys."""
        if key in self._sizes:
            self._touch(key)
            return []
        if size > self.capacity:
            if self._lfu:
                self._freq[key] = self._freq.get(key, 0) + 1
            return []
        sizes, used, capacity, evicted = self._sizes, self.used, self.capacity, []
        if self._lfu:
            while used + size > capacity:
                victim = self._victim()
                used -= sizes.pop(victim)
                self._stamp.pop(victim, None)
                evicted.append(victim)
        else:
            while used + size > capacity:  # the least recently used
                victim, victim_size = sizes.popitem(last=False)
                used -= victim_size
                evicted.append(victim)
        self.evictions += len(evicted)
        sizes[key] = size  # a new key: most recently used
        self.used = used + size
        if self._lfu:
            self._count(key)
        return evicted

    def _touch(self, key: Hashable) -> None:
        self._sizes.move_to_end(key)
        if self._lfu:
            self._count(key)

    def _count(self, key: Hashable) -> None:
        """lfu: one more access of resident `key`."""
        self._tick += 1
        freq = self._freq[key] = self._freq.get(key, 0) + 1
        self._stamp[key] = self._tick
        heapq.heappush(self._heap, (freq, self._tick, key))
        if len(self._heap) > 4 * len(self._sizes) + 64:
            self._heap = [(self._freq[k], self._stamp[k], k) for k in self._sizes]
            heapq.heapify(self._heap)

    def _victim(self) -> Hashable:
        """lfu: the resident key with the fewest accesses, least recently used among those."""
        while True:
            _freq, tick, key = heapq.heappop(self._heap)
            if self._stamp.get(key) == tick and key in self._sizes:
                return key


class PartitionedCache:
    """Routes (layer, ...) keys to per-layer partitions, or everything to one shared partition."""

    def __init__(self, capacity: float, policy: CachePolicy = "lru", layers: int | None = None):
        """`layers=None`: one cache of `capacity` bytes; else `layers` caches of `capacity` bytes each."""
        self.per_layer = layers is not None
        self.parts = [ExpertCache(capacity, policy) for _ in range(layers if self.per_layer else 1)]

    def part(self, layer: int) -> ExpertCache:
        return self.parts[layer] if self.per_layer else self.parts[0]

    @property
    def capacity(self) -> float:
        return sum(p.capacity for p in self.parts)

    @property
    def evictions(self) -> int:
        return sum(p.evictions for p in self.parts)
