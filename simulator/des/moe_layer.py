"""One MoE layer of a decode step in the DES: the experts' cache lookups, copies, NDP ops and GPU kernels.

Per MoE layer, for each expert of the batch's union S (ascending id), its row of the placement table
(simulator.placement; the row of the residency the policy reads, as the expert is placed) says what it
needs (_Work): the cache entries of its GPU part, its GPU kernels and its NDP op. Then

    NDP part:  activations GPU->CXL (one copy of the step's hidden states), then per expert an op on unit
               (expert mod units), then its output CXL->GPU
    GPU part:  cache lookups; each missing (layer, expert, form) is copied over the expert link (on
               demand, priority 0) and inserted into the cache
    prefetch (optional): copies for layer l+1 issued now at priority 1
    shared experts                                             GPU kernel ("other")
    loads_block_layer (a stack that issues its loads on the compute stream): wait until every on-demand
               copy of this layer has arrived, and run the shared experts only then (one in-order stream)
    GPU experts, cached ones first, then in copy-issue order: wait for the copies (idle ->
               transfer_stall), expert GEMM (expert_gpu), compensation GEMMs for the restored tokens
               (compensation) when the row has them
    wait for all NDP outputs: idle time while some NDP unit computes this layer's experts -> expert_ndp,
               the rest (CXL copies, queueing) -> transfer_stall

Prefetch: simulator.des.prefetcher (the Prefetching half of the layer).

Copies on a fifo link (no prefetch) are known whole when issued (simulator.des.link.Copy): the stream
issues them at its own clock and waits for their known arrivals without SimPy events. With prefetch they
are SimPy events and the stream syncs to its clock before issuing copies and waits on them. The layer's
code is the same for both; `wait_copy` and `stream_now` are where they differ.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import simpy

from simulator import costs
from simulator.des.clock import delay_to
from simulator.des.link import Copy
from simulator.des.prefetcher import Prefetching
from simulator.scenario import COMPENSATION, DEMAND, EXPERT_GPU, FETCHED, FORMS, OTHER

NDP_FLOPS = [f"ndp_flops_{p}" for p in costs.NDP_PRECISIONS]  # work counter per NDP precision index
FETCH_NAME = {form: f"fetch {form}" for form in FORMS}  # event name of an on-demand copy per form


def overlap(t0: float, t1: float, intervals: list[tuple[float, float]]) -> float:
    """Length of [t0, t1] covered by the union of `intervals`."""
    covered, reach = 0.0, t0
    for start, end in sorted(intervals):
        if reach > start:  # noqa: PLR1730 -- max() and min() are slow calls, and this runs per NDP op
            start = reach
        if t1 < end:  # noqa: PLR1730
            end = t1
        if end > start:
            covered += end - start
            reach = end
    return covered


class _Work(NamedTuple):
    """What placing one expert of one layer asks of the engine, read off its placement row once: the cache
    entries its GPU part needs and its ops, as the arguments of the calls that issue them. Memoised per
    (layer, expert, tokens, restored, residency read)."""

    entries: tuple[tuple[tuple[int, int, str], float, str], ...]  # (cache key, bytes, counter): the stored
                                # form, then the factors when compensated; () when pinned or no GPU part
    keys: tuple[tuple[int, int, str], ...]  # the cache keys of entries
    gpu: tuple | None    # GPU.kernel arguments of the expert GEMM; None without GPU tokens
    comp: tuple | None   # GPU.kernel arguments of the compensation GEMMs; None when not compensated
    ndp: tuple | None    # NDPUnits.run op (expert, seconds, bytes read, name, layer); None without NDP tokens
    out_bytes: float     # bytes of the NDP op's output
    gpu_flops: float     # work of its ops (simulator.energy): GPU FLOPs and HBM bytes of its GEMMs, ...
    gpu_bytes: float
    ndp_prec: int        # ... the precision its NDP op computes at (costs.NDP_PRECISIONS index), its FLOPs
    ndp_flops: float     # and the bytes it reads (0 without the part)
    ndp_bytes: float


class MoELayers(Prefetching):
    """The MoE-layer half of simulator.des.engine.DecodeEngine (which provides env, sc, table, gpu,
    links, expert_link, cxl, ndp, cache, rng, c)."""

    def init_layers(self) -> None:
        model, sc = self.model, self.sc
        self.ready: list[dict] = [{} for _ in range(model.moe_layers)]  # per layer: cache key -> its copy
        self.fetches: list[tuple[tuple[int, int, str], float]] = []  # (key, bytes) misses not yet copied
        self.size = {form: sc.sizes.of(form).tolist() for form in FORMS}  # form -> [L][E] bytes
        self.works: list[dict[tuple, _Work]] = [{} for _ in range(model.moe_layers)]
        self.read_forms = sc.policy.reads_forms
        self.row_lists: dict[int, tuple] = {}  # placement row -> its columns as Python numbers (new_table clears)

    def new_table(self, most: int) -> None:
        """Start the placement table for steps of at most `most` tokens (its rows are renumbered)."""
        self.table.start(most)
        self.row_lists.clear()

    def stream_now(self) -> float:
        """Where the stream's next op starts: its clock, or SimPy's when that is later."""
        t, now = self.gpu.t, self.env.now
        return t if t > now else now  # noqa: FURB136 -- max() is a slow call

    def moe_layer(self, moe: int, routing, next_routing, n: int, shared: tuple[float, float] | None):
        """Layer `moe` for `n` tokens routed as `routing` (DecodeEngine.route's tuple); `shared`: the shared
        experts' op (seconds, bytes), None without."""
        sc, gpu = self.sc, self.gpu
        layer = moe + self.model.first_dense_layers
        gpu_items, ndp_items = self.place_layer(moe, routing)
        prefetch = self.pf_mode and next_routing is not None
        at, loads = None, []  # copies start at the stream's time: issued ahead of SimPy's on fifo links
        if self.fetches or ndp_items or prefetch:
            if self.fifo:
                at = self.stream_now()
            else:
                ev = gpu.sync()
                if ev is not None:
                    yield ev
            if self.fetches:
                loads = self.fetch(layer, at)
        ndp_done = self.issue_ndp(moe, ndp_items, n, at) if ndp_items else None
        if prefetch:
            self.prefetch(moe + 1, next_routing)
        block = sc.loads_block_layer
        if shared is not None and not block:
            gpu.kernel(OTHER, *shared, "shared experts", layer)
        gpu_items = yield from self.order_gpu_items(moe, gpu_items)
        wait = self.wait_copy
        if block:  # loads issued on the compute stream: nothing after them starts before the last arrives,
            for copy in loads:  # the shared experts included (one in-order stream)
                if (g := wait(copy, layer)) is not None:
                    yield from g
            if shared is not None:
                gpu.kernel(OTHER, *shared, "shared experts", layer)
        for w, waits in gpu_items:
            if waits and waits[0] is not None and (g := wait(waits[0], layer)) is not None:  # the weights' copy
                yield from g
            gpu.kernel(*w.gpu)
            if w.comp is not None:
                if len(waits) > 1 and waits[1] is not None and (g := wait(waits[1], layer)) is not None:
                    yield from g  # the factors' copy
                gpu.kernel(*w.comp)
        if ndp_done is not None:
            yield from self.wait_ndp(ndp_done, layer)

    def place_layer(self, moe: int, routing) -> tuple[list[_Work], list[tuple[int, _Work]]]:
        """The works of the layer's GPU items and (expert, work) of its NDP items, in expert order, with the
        GPU items' cache lookups done (one by one when the policy reads the cache: the next placement may
        depend on this lookup)."""
        part = self.cache.part(moe)
        gpu_items, ndp_items, entries = [], [], []
        c = self.c
        gpu_flops = gpu_bytes = ndp_bytes = 0.0  # the layer's work, added to the counters at its end
        ndp_flops = [0.0] * len(NDP_FLOPS)
        works, blind = self.works[moe], not self.read_forms  # a policy that reads no residency: memo by
        for expert, tokens, restored, row in zip(*routing):    # (expert, tokens, restored)
            w = works.get((expert, tokens, restored)) if blind else None
            if w is None:
                w = self.work(moe, expert, tokens, restored, row, part)
            if w.ndp is not None:
                ndp_items.append((expert, w))
                ndp_flops[w.ndp_prec] += w.ndp_flops
                ndp_bytes += w.ndp_bytes
            if w.gpu is not None:
                gpu_flops += w.gpu_flops
                gpu_bytes += w.gpu_bytes
                entries += w.entries
                if self.read_forms:
                    self.lookup(entries, part)
                    entries = []
                gpu_items.append(w)
        if entries:
            self.lookup(entries, part)
        c["experts_gpu"] += len(gpu_items)
        c["experts_ndp"] += len(ndp_items)
        c["gpu_flops"] += gpu_flops
        c["gpu_bytes"] += gpu_bytes
        if ndp_items:
            c["ndp_bytes"] += ndp_bytes
            for counter, flops in zip(NDP_FLOPS, ndp_flops):
                c[counter] += flops
        return gpu_items, ndp_items

    def order_gpu_items(self, moe: int, works: list[_Work]):
        """(work, copies it waits for: weights', factors', None = arrived) per GPU item, the ready ones first,
        each group in order (a generator: it may sync the stream to learn which copies are still pending)."""
        copies = self.ready[moe]
        if copies:  # drop the copies that have arrived by the stream's clock: nothing to wait for
            t = self.stream_now()
            for key in [key for key, copy in copies.items() if (copy.end <= t if self.fifo else copy.processed)]:
                del copies[key]
        if not copies:
            return [(w, ()) for w in works]
        items = [(w, list(map(copies.get, w.keys))) for w in works]
        pending = [ev for _, waits in items for ev in waits if ev is not None]
        if not pending:
            return items
        if self.fifo:  # all end after the stream's clock (one ending right then was dropped above)
            late = set(pending)
        else:
            ev = self.gpu.sync()
            if ev is not None:
                yield ev
            late = {copy for copy in pending if not copy.processed}
        ready, waiting = [], []
        for item in items:
            (ready if late.isdisjoint(item[1]) else waiting).append(item)
        return ready + waiting

    def wait_copy(self, copy, layer: int):
        """Idle the stream until `copy` has arrived: a Copy's known end moves the stream clock now (returns
        None); for a pending event, returns the generator that waits for it (the caller yields from it)."""
        if copy.__class__ is Copy:
            self.gpu.wait_until(copy.end, "wait copy", layer)
            return None
        return None if copy.processed else self.await_event(copy, layer)

    def await_event(self, copy: simpy.Event, layer: int):
        """Sync the stream to its clock; if `copy` has still not arrived, idle until it has."""
        sync = self.gpu.sync()
        if sync is not None:
            yield sync
        if not copy.processed:
            t0 = self.env.now
            yield copy
            self.gpu.idled(t0, "wait copy", layer)

    def wait_ndp(self, ndp_done, layer: int):
        """The stream idles from its clock t0 until the last NDP output arrives (a known time or an event);
        if the outputs arrive before t0 nothing idles."""
        t0 = self.stream_now()
        end = (yield ndp_done) if isinstance(ndp_done, simpy.Event) else ndp_done
        if end >= t0:
            self.gpu.idled(t0, "wait ndp", layer, overlap(t0, end, self.ndp.intervals), until=end)
        self.ndp.intervals.clear()

    def work(self, moe: int, expert: int, tokens: int, restored: int, row: int, part) -> _Work:
        """What expert `expert` of layer `moe` with `tokens` routed tokens (`restored` of them in their top-n)
        asks of the engine: its placement row (`row` + the residency its policy reads), memoised."""
        v = 0
        for j, form in enumerate(self.read_forms):  # the residency the policy reads, as it places
            if (moe, expert, form) in part:
                v |= 1 << j
        key = (expert, tokens, restored, v) if self.read_forms else (expert, tokens, restored)
        w = self.works[moe].get(key)
        if w is None:
            w = self.works[moe][key] = self.read_row(moe, expert, row + v)
        return w

    def read_row(self, moe: int, expert: int, row: int) -> _Work:
        """_Work of placement row `row` for expert `expert` of layer `moe`."""
        layer = moe + self.model.first_dense_layers
        cols = self.row_lists.get(row)
        if cols is None:  # rows repeat across experts alike: read each off the table once
            table = self.table
            cols = self.row_lists[row] = (*table.ti[row].tolist(), *table.tf[row].tolist(), *table.tb[row].tolist(),
                                          *table.tw[row].tolist())
        has_gpu, look, fac, wform, has_ndp, nprec, op_e, op_c, op_n, _, rbytes, b_e, b_c, b_n, gpu_flops, ndp_flops = cols
        entries, keys = (), ()
        if has_gpu and look:  # the stored form, then the factors when compensated
            form = FORMS[wform]
            keys = ((moe, expert, form),)
            entries = ((keys[0], self.size[form][moe][expert], FETCHED[form]),)
            if fac:
                keys += ((moe, expert, "factors"),)
                entries += ((keys[1], self.size["factors"][moe][expert], FETCHED["factors"]),)
        gpu_op = (EXPERT_GPU, op_e, b_e, "expert", layer, expert) if has_gpu else None
        comp_op = (COMPENSATION, op_c, b_c, "compensation", layer, expert) if has_gpu and op_c > 0 else None
        ndp_op = (expert, op_n, b_n, "expert", layer) if has_ndp else None
        return _Work(entries, keys, gpu_op, comp_op, ndp_op, rbytes if has_ndp else 0.0, gpu_flops, b_e + b_c, nprec,
                     ndp_flops, b_n)

    def lookup(self, entries, part) -> None:
        """Look up `entries` (_Work.entries) in cache partition `part`: count hits and misses, insert the
        misses and queue their copies for fetch()."""
        c, pending = self.c, self.pending
        if pending:  # one by one: an earlier miss may evict a prefetched entry looked up after it
            missed, first_uses = [], 0
            for entry in entries:
                key = entry[0]
                nbytes = pending.pop(key, None)
                if nbytes is not None:
                    if key in part:
                        first_uses += 1
                    else:  # evicted before any use
                        c["prefetch_wasted_bytes"] += nbytes
                missed += part.access((entry,))
            c["prefetch_hits"] += first_uses
            c["cache_hits"] += len(entries) - len(missed) - first_uses
        else:
            missed = part.access(entries)
            c["cache_hits"] += len(entries) - len(missed)  # whole counts: the same floats as one by one
        c["cache_misses"] += len(missed)
        for key, size, counter in missed:
            c[counter] += size
            c["copied_bytes"] += size
            self.fetches.append((key, size))

    def fetch(self, layer: int, at: float | None = None) -> list:
        """Issue the on-demand copies lookup() queued, in lookup order (on a fifo link as if at `at`);
        returns them."""
        ready, transfer = self.ready, self.expert_link.transfer
        issued = []
        for key, size in self.fetches:
            copy = ready[key[0]][key] = transfer(size, DEMAND, FETCH_NAME[key[2]], layer, key[1], at)
            issued.append(copy)
        self.fetches.clear()
        return issued

    def issue_ndp(self, moe: int, items, n: int, at: float | None = None) -> float | simpy.Event:
        """Activations GPU->CXL (on a fifo link as if at `at`); when they arrive, one op per item on its NDP
        unit; each op's output CXL->GPU as the op ends. Returns the arrival time of the last output: on a
        fifo link everything is known now (outputs arrive in the order they are sent), else an event fires
        then with it as value."""
        env, cxl = self.env, self.cxl
        layer = moe + self.model.first_dense_layers
        ops = [w.ndp for _, w in items]
        activations = cxl.from_gpu.transfer(costs.activation_bytes(self.model, n), DEMAND, "activations", layer, at=at)
        if isinstance(activations, Copy):
            for end, i in self.ndp.run(activations.end, ops):
                expert, w = items[i]
                last = cxl.to_gpu.transfer(w.out_bytes, DEMAND, "result", layer, expert, end)
            return last.end
        done = env.event()
        left = [len(items)]

        def arrived(_ev):
            left[0] -= 1
            if not left[0]:
                done.succeed(env.now)

        def send(expert: int, out_bytes: float, _ev):
            cxl.to_gpu.transfer(out_bytes, DEMAND, "result", layer, expert).callbacks.append(arrived)

        def start(_ev):
            for end, i in self.ndp.run(env.now, ops):
                expert, w = items[i]
                env.timeout(delay_to(env.now, end)).callbacks.append(partial(send, expert, w.out_bytes))

        activations.callbacks.append(start)
        return done

