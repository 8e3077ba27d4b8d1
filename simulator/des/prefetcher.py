"""The prefetching half of a DES MoE layer (simulator.des.moe_layer.MoELayers): what the runtime's
prefetcher guesses for layer l+1 while layer l computes, and the copies that follow.

Prefetch (deterministic; what each prefetcher knows: simulator.prefetch): while layer l computes, the
prefetcher makes its guesses for layer l+1 (recall: per expert l+1 routes to, ascending, one draw u from
the run's Generator (simulator.scenario.run_rng): u < recall guesses it, else a second draw picks a wrong
expert by the layer's calibration popularity; previous-token / transitions: the experts their predicted
routing gives, ascending, each placed as its predicted tokens say). Every resident form of a guessed
expert is refreshed (the guess marks it used; its bytes come off the prefetch budget), then each guess's
missing entries (the forms its placement row needs; a wrong recall guess takes its slot's row) are
copied at prefetch priority and inserted, until the next copy would exceed the capacity of layer l+1's
cache partition (it would only evict its own prefetches). Nothing is refreshed or kept because l+1
really needs it. A prefetched entry's first demand lookup is a prefetch hit (the GPU still waits if its
copy has not arrived), not a cache hit; its bytes are wasted when it is evicted before that, or still
unused at the run's end (counted when next looked up or copied, and at the end: the same total).
"""

from __future__ import annotations

from simulator import prefetch as prefetchers
from simulator.scenario import FORMS, PREFETCH

PREFETCH_NAME = {form: f"prefetch {form}" for form in FORMS}  # event name of a prefetched copy per form


class Prefetching:
    """Mixed into MoELayers (which provides sc, model, cache, expert_link, rng, c, ready, size, read_forms,
    run_step, work and read_row)."""

    def init_prefetch(self) -> None:
        sc, model = self.sc, self.model
        self.pf_mode = sc.prefetch_mode if model.moe_layers > 1 else prefetchers.NONE
        self.pending: dict[tuple[int, int, str], float] = {}  # prefetched entries not used yet -> bytes
        self.decisions: list[tuple] | None = None  # when a list: (run step, layer, expert, form, copied) per guess
        self.pf_pop, self.pf_succ = None, None
        if self.pf_mode in (prefetchers.RECALL, prefetchers.TRANSITIONS):
            pop, trans = prefetchers.calibrate(sc.trace, sc.prefetch_calibration_tokens, model.moe_layers,
                                               model.num_experts)
            self.pf_pop = (pop + 1).tolist()  # wrong recall guesses' weights: popularity + 1
            if self.pf_mode == prefetchers.TRANSITIONS:
                self.pf_succ = prefetchers.successors(trans, sc.prefetch_successors)

    def unused_prefetch_bytes(self) -> float:
        """Bytes of prefetched entries no demand lookup has used (wasted at the run's end)."""
        return float(sum(self.pending.values()))

    def prefetch(self, moe: int, routing) -> None:
        """Speculatively copy what the prefetcher guesses layer `moe` will need (see the module docstring);
        `routing`: route()'s tuple of layer `moe`, true (recall) or guessed (previous-token, transitions)."""
        part = self.cache.part(moe)
        size, lookup, log = self.size, part.lookup, self.decisions
        guesses = self.recall_guesses(moe, routing) if self.pf_mode == prefetchers.RECALL else \
            [(expert, tokens, restored, row, True) for expert, tokens, restored, row in zip(*routing)]
        budget = part.capacity  # never prefetch more than the cache holds (it would evict its own prefetches)
        for guess in guesses:  # what a guess finds resident is refreshed: prefetches evict other entries
            for form in FORMS:
                if lookup((moe, guess[0], form)):
                    budget -= size[form][moe][guess[0]]
                    if log is not None:
                        log.append((self.run_step, moe, guess[0], form, False))
        for expert, tokens, restored, row, own in guesses:  # placed one by one: a policy that reads the cache
            w = self.work(moe, expert, tokens, restored, row, part) if own else self.slot_work(moe, expert, row, part)
            for key, nbytes, counter in w.entries:  # sees the prefetches so far
                if key in part:
                    continue
                if nbytes > budget:
                    return
                budget -= nbytes
                self.prefetch_copy(key, nbytes, counter)

    def recall_guesses(self, moe: int, routing) -> list[tuple[int, int, int, int, bool]]:
        """The recall prefetcher's guesses for layer `moe`: per expert it routes to (a slot), right with
        probability recall, else a wrong expert drawn by popularity among those it does not route to and
        not guessed yet: (expert, the slot's tokens, restored and first row, right)."""
        rng, recall, weight, num = self.rng, self.sc.prefetch_hit_rate, self.pf_pop[moe], self.model.num_experts
        taken = set(routing[0])
        out = []
        for expert, tokens, restored, row in zip(*routing):
            if rng.random() < recall:
                out.append((expert, tokens, restored, row, True))
                continue
            total = sum(weight[j] for j in range(num) if j not in taken)
            if not total:
                continue
            target, acc = int(rng.random() * total), 0
            for j in range(num):
                if j not in taken:
                    acc += weight[j]
                    if acc > target:
                        break
            taken.add(j)
            out.append((j, tokens, restored, row, False))
        return out

    def slot_work(self, moe: int, expert: int, row: int, part) -> tuple:  # a moe_layer._Work
        """What a wrong recall guess `expert` copies: its slot's placement (first row `row`) with its own
        residency, its own entries (not memoised: the row is another expert's)."""
        v = 0
        for j, form in enumerate(self.read_forms):
            if (moe, expert, form) in part:
                v |= 1 << j
        return self.read_row(moe, expert, row + v)

    def prefetch_copy(self, key: tuple[int, int, str], nbytes: float, counter: str) -> None:
        """Copy `key` at prefetch priority and insert it; it is pending until a demand lookup uses it."""
        moe, expert, form = key
        self.ready[moe][key] = self.expert_link.transfer(nbytes, PREFETCH, PREFETCH_NAME[form],
                                                         moe + self.model.first_dense_layers, expert)
        self.cache.part(moe).insert(key, nbytes)
        c = self.c
        c[counter] += nbytes
        c["copied_bytes"] += nbytes
        c["prefetch_bytes"] += nbytes
        was = self.pending.get(key)
        if was is not None:  # copied before, evicted unused
            c["prefetch_wasted_bytes"] += was
        self.pending[key] = nbytes
        if self.decisions is not None:
            self.decisions.append((self.run_step, moe, expert, form, True))
