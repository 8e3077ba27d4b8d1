"""The placement table: what placing one expert asks of the machine, per placement code, built once.

Per decode step and MoE layer, each expert of the batch's union S is placed by the policy
(Policy.place(layer, expert, tokens, restored, cache)). Everything that follows from a placement and not
from the moment it happens is in this table, which both timers read: the DES (simulator.des) and the
compiled fast path (simulator.fast). They only do time.

A placement code is ((layer E + expert) K + tokens) K + restored, K = the most tokens a step has + 1 (a
token's top-k experts are distinct, so an expert gets at most that many). Each code has V = 2^len(
Policy.reads_forms) rows, one per residency of the forms the policy reads (bit j: form reads_forms[j] of
the expert is resident as it is placed); a policy that reads nothing of the cache has one row. A row:
    ti [R, 6] int8   GPU part; LOOK: looks its weights up in the cache (not pinned); FAC: also its factors;
                     WFORM: the form of its weights (scenario.FORMS index); NDP part; NPREC: the precision
                     the NDP unit computes at (costs.NDP_PRECISIONS index)
    tf [R, 5] float  seconds of the GPU expert GEMM, of the compensation GEMMs, of the NDP op (0: none);
                     wire seconds and bytes of the NDP result sent back to the GPU
    tb [R, 3] float  HBM bytes the GPU GEMM reads, bytes of the factors, bytes the NDP op reads (the timeline)
    tw [R, 2] float  FLOPs of the GPU GEMMs (expert + compensation) and of the NDP op: with tb's bytes, the
                     work energy is made of
Cache keys are ((layer E + expert) N_FORMS + form), with key_size [keys] bytes and key_wire [keys] seconds on
the expert link's wire. Every figure comes from simulator.costs; the factor rule (compensated when tokens
are restored and the expert has a rank and factor bytes), the NDP precision (full precision for the full
form, else the expert's bits) and the dequantization traffic are written here once.

Rows are made lazily: a code is asked of the policy the first time it occurs (`ensure`), an expert-blind
policy (Policy.expert_blind) once per (tokens, restored) for a class of experts alike (bytes per form,
bits and rank), the first few thousand up front. Codes find their first row through a dense array while
there are few enough codes (steps of a few tokens); past that, an expert-blind policy's codes find it by
(class, tokens, restored) alone (`shared_rows`: serving's prefill chunks of hundreds of tokens would
otherwise table one row set per expert), and other policies' through sorted codes.
"""

from __future__ import annotations

from collections import namedtuple
from itertools import islice

import numpy as np

from simulator import costs
from simulator.precision import FULL_PRECISION_BITS
from simulator.scenario import FORMS, FULL, N_FORMS, Scenario

GPU, LOOK, FAC, WFORM, NDP, NPREC = range(6)   # columns of ti
OP_E, OP_C, OP_N, RES_WIRE, RBYTES = range(5)  # columns of tf
B_E, B_C, B_N = range(3)                       # columns of tb
W_GFLOPS, W_NFLOPS = range(2)                  # columns of tw
BLIND_UP_FRONT = 1 << 18  # placement codes tabled up front (expert_blind policies)
DENSE_CODES = 1 << 22     # up to this many codes the code -> row map is a dense array, else sorted codes
NOTHING: frozenset = frozenset()  # the cache a policy that reads none of it is shown

# The table as the compiled timer reads it: code -> first row (slot, or sorted known codes -> known_at),
# the rows' columns, the forms the policy reads (scenario.FORMS indices) and K.
Rows = namedtuple("Rows", "slot known known_at cls blind ti tf tb tw read_forms K")
NO_CLASSES = np.zeros(0, dtype=np.int64)


class PlacementTable:
    """Placement rows of one scenario (see the module docstring), for steps of at most `most` tokens;
    `start(most)` begins a table for another step size (the prefill's) with the same cache keys."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.L, self.E = sc.model.moe_layers, sc.model.num_experts
        self.V = 1 << len(sc.policy.reads_forms)
        self.read_forms = np.array([FORMS.index(f) for f in sc.policy.reads_forms], dtype=np.int64)
        self.key_size = np.stack([sc.sizes.of(f) for f in FORMS], axis=-1).reshape(-1)  # [L E N_FORMS] bytes
        self.expert_link = sc.system.link_to(sc.system.expert_memory)
        self.cxl = sc.system.link_to("cxl") if sc.system.ndp is not None else None
        self.key_wire = costs.wire_time(self.expert_link, costs.TO_GPU, self.key_size)  # [keys] seconds
        self.dequant_bytes = sc.dequant_bytes_per_weight * sc.model.expert_params  # per low-bit GPU call
        if sc.policy.expert_blind:  # experts alike in every size are one class: their rows are shared
            z = sc.sizes
            _, self.rep, self.cls = np.unique(np.stack([z.lowbit, z.factors, z.full, z.bits, z.rank], axis=-1)
                                              .reshape(-1, 5), axis=0, return_index=True, return_inverse=True)
            self.cls = self.cls.reshape(-1)  # [L E] class of each expert; rep [C]: one expert of each class
        self.start(sc.batch)

    def rows(self) -> Rows:
        """The table as it stands, for the compiled timer (arrays are replaced as rows are added)."""
        shared = self.shared_rows
        return Rows(self.slot, self.known, self.known_at, self.cls if shared else NO_CLASSES,
                    self.blind if shared else NO_CLASSES, self.ti, self.tf, self.tb, self.tw, self.read_forms,
                    int(self.K))

    @property
    def shared_rows(self) -> bool:
        """Codes find their rows by (class, tokens, restored) alone (an expert-blind policy whose class map
        is dense and whose code map is not): nothing is tabled per expert."""
        return (self.sc.policy.expert_blind and isinstance(self.blind, np.ndarray) and len(self.blind) > 0
                and not len(self.slot))

    # ---- codes -> rows ----
    def start(self, most: int) -> None:
        """An empty table for steps of at most `most` tokens (K = most + 1)."""
        self.K = most + 1
        self.ti, self.tf = np.zeros((0, 6), dtype=np.int8), np.zeros((0, 5))
        self.tb, self.tw = np.zeros((0, 3)), np.zeros((0, 2))
        n_codes = self.L * self.E * self.K * self.K
        self.slot = np.full(n_codes if n_codes <= DENSE_CODES else 0, -1, dtype=np.int32)  # code -> first row
        self.known = np.zeros(0, dtype=np.int64)     # (sparse) sorted codes tabled so far ...
        self.known_at = np.zeros(0, dtype=np.int64)  # ... and their first rows
        self.blind = NO_CLASSES
        if self.sc.policy.expert_blind:  # (class, tokens, restored) -> first row, so codes alike share rows
            n_keys = len(self.rep) * self.K * self.K
            self.blind = np.full(n_keys, -1, dtype=np.int64) if n_keys <= DENSE_CODES else {}  # many classes: a dict
            if len(self.slot):
                self._blind_up_front(most)

    def code(self, le, tokens, restored):
        """Placement code of experts layer E + expert `le` with `tokens` and `restored` (broadcasting)."""
        return (le * self.K + tokens) * self.K + restored

    def first_row(self, code: int) -> int:
        """The first row of a tabled code (-1: not tabled)."""
        if len(self.slot):
            return int(self.slot[code])
        if self.shared_rows:
            return int(self.blind[self._class_key(np.int64(code))])
        i = int(np.searchsorted(self.known, code))
        return int(self.known_at[i]) if i < len(self.known) and self.known[i] == code else -1

    def _class_key(self, codes):
        """(class, tokens, restored) keys of placement codes (an expert-blind policy's rows depend on no more)."""
        rest, restored = np.divmod(codes, self.K)
        le, tokens = np.divmod(rest, self.K)
        return (self.cls[le] * self.K + tokens) * self.K + restored

    def ensure(self, codes: np.ndarray) -> None:
        """Table the codes [n] (any order, repeats allowed) that are not tabled yet."""
        codes = np.unique(codes)
        if self.shared_rows:  # nothing per code: only the (class, tokens, restored) rows
            self._blind_rows(self._class_key(codes))
            return
        if len(self.slot):
            new = codes[self.slot[codes] < 0]
        else:
            at = np.searchsorted(self.known, codes)
            hit = at < len(self.known)
            hit[hit] = self.known[at[hit]] == codes[hit]
            new = codes[~hit]
        if not len(new):
            return
        rest, restored = np.divmod(new, self.K)
        le, tokens = np.divmod(rest, self.K)
        if not self.sc.policy.expert_blind:
            self._point(new, self._rows(le, tokens, restored) + self.V * np.arange(len(new)))
            return
        self._point(new, self._blind_rows(self._class_key(new)))

    def _blind_rows(self, keys: np.ndarray) -> np.ndarray:
        """First rows [n] of (class, tokens, restored) keys [n], tabling the keys not tabled yet (asked of the
        policy for one expert of the class)."""
        def first(keys: np.ndarray) -> np.ndarray:
            if isinstance(self.blind, dict):
                return np.fromiter((self.blind.get(k, -1) for k in keys.tolist()), np.int64, len(keys))
            return self.blind[keys]

        unseen = np.unique(keys[first(keys) < 0])
        if len(unseen):
            rest, r = np.divmod(unseen, self.K)
            c, t = np.divmod(rest, self.K)
            self._set_blind(unseen, self._rows(self.rep[c], t, r) + self.V * np.arange(len(unseen)))
        return first(keys)

    def _set_blind(self, keys: np.ndarray, rows: np.ndarray) -> None:
        if isinstance(self.blind, dict):
            self.blind.update(zip(keys.tolist(), rows.tolist()))
        else:
            self.blind[keys] = rows

    def _blind_up_front(self, most: int) -> None:
        """Table the codes of as many (tokens, restored) pairs as BLIND_UP_FRONT allows, the fewest tokens
        first (most experts get few of a step's tokens), one set of rows per class of experts alike."""
        pairs = list(islice(((t, r) for t in range(1, most + 1) for r in range(t + 1)),
                            BLIND_UP_FRONT // (self.L * self.E)))
        if not pairs:
            return
        rep, cls = self.rep, self.cls                                               # [C], [LE]
        t, r = np.array(pairs).T[:, None, :]                                        # [1, Q] each
        first = self._rows(rep[:, None], t, r)                                      # rows [C, Q, V]
        Q = len(pairs)
        c = np.arange(len(rep))[:, None]                                            # [C, 1]
        self._set_blind(((c * self.K + t) * self.K + r).ravel(), (first + (c * Q + np.arange(Q)) * self.V).ravel())
        le = np.arange(self.L * self.E)[:, None]                                    # [LE, 1]
        self._point(self.code(le, t, r).ravel(), (first + (cls.reshape(-1, 1) * Q + np.arange(Q)) * self.V).ravel())

    def _point(self, codes: np.ndarray, rows: np.ndarray) -> None:
        """Placement codes [n] -> their first rows [n]."""
        if len(self.slot):
            self.slot[codes] = rows
        else:
            order = np.argsort(codes, kind="stable")  # new codes, none tabled yet: merged in, no re-sort
            codes, rows = codes[order], rows[order]
            at = np.searchsorted(self.known, codes)
            self.known, self.known_at = np.insert(self.known, at, codes), np.insert(self.known_at, at, rows)

    # ---- rows ----
    def _ask(self, le, tokens, restored, shape) -> tuple[list, np.ndarray]:
        """The policy's placements, V per (expert, tokens, restored) (an expert-blind policy's once per
        (tokens, restored)), and for each of the broadcast codes [shape] the index of its V answers."""
        policy, read, V = self.sc.policy, self.sc.policy.reads_forms, self.V

        def cache(layer: int, expert: int, v: int) -> frozenset:  # what place() may see of the cache
            return frozenset((layer, expert, form) for j, form in enumerate(read) if v >> j & 1) if read else NOTHING

        if policy.expert_blind:
            pairs, back = np.unique(np.ravel(tokens * self.K + restored), return_inverse=True)
            back = back.reshape(np.shape(tokens * self.K + restored))
            answers = [policy.place(0, 0, t, rs, cache(0, 0, v))
                       for t, rs in zip(*np.divmod(pairs, self.K)) for v in range(V)]
            return answers, back
        lay, ex = np.divmod(np.broadcast_to(le, shape).ravel(), self.E)
        answers = [policy.place(layer, expert, t, rs, cache(layer, expert, v)) for layer, expert, t, rs in
                   zip(lay.tolist(), ex.tolist(), np.broadcast_to(tokens, shape).ravel().tolist(),
                       np.broadcast_to(restored, shape).ravel().tolist()) for v in range(V)]
        return answers, np.arange(len(answers) // V).reshape(shape)

    def _rows(self, le, tokens, restored) -> int:
        """Append the rows of experts layer E + expert `le` with `tokens` and `restored` (broadcasting
        together: [n] each, or experts [LE, 1] by pairs [1, Q]), V per code in ravel order; returns the
        index of the first."""
        sc, V = self.sc, self.V
        shape = np.broadcast_shapes(np.shape(le), np.shape(tokens), np.shape(restored))
        answers, back = self._ask(le, tokens, restored, shape)
        g_tok, g_form, c_tok, n_tok, n_form, pinned = zip(*answers)
        g_tok, c_tok, n_tok, pinned = (np.array(x, dtype=np.int64).reshape(-1, V)[back]  # [..., V]
                                       for x in (g_tok, c_tok, n_tok, pinned))
        g_form, n_form = (np.fromiter(map(FORMS.index, x), np.int64, len(x)).reshape(-1, V)[back]
                          for x in (g_form, n_form))
        le = np.asarray(le)[..., None]
        look = (g_tok > 0) & (pinned == 0)
        fac = look & (c_tok > 0) & (sc.sizes.rank.ravel()[le] > 0) & (sc.sizes.factors.ravel()[le] > 0)
        (op_e, op_c, op_n), (b_e, b_c, b_n), (f_g, f_n, n_prec) = self._ops(le, g_tok, g_form, c_tok, n_tok, n_form)
        rbytes = costs.activation_bytes(sc.model, 1) * n_tok.astype(float)
        res_wire = costs.wire_time(self.cxl, costs.TO_GPU, rbytes) if self.cxl is not None else 0 * rbytes
        first = len(self.ti)

        def rows(*cols) -> np.ndarray:  # [n V, len(cols)], in the order of (code, residency)
            return np.stack([np.broadcast_to(c, (*shape, V)).ravel() for c in cols], axis=1)

        self.ti = np.concatenate([self.ti, rows(g_tok > 0, look, fac, g_form, n_tok > 0, n_prec).astype(np.int8)])
        self.tf = np.concatenate([self.tf, rows(op_e, op_c, op_n, res_wire, rbytes)])
        self.tb = np.concatenate([self.tb, rows(b_e, b_c, b_n).astype(float)])
        self.tw = np.concatenate([self.tw, rows(f_g, f_n).astype(float)])
        return first

    def _ops(self, le, g_tok, g_form, c_tok, n_tok, n_form):
        """(seconds, bytes read) of the GPU expert GEMM, the compensation GEMMs and the NDP op of placements
        of experts `le` (0 where there is none), and (GPU FLOPs, NDP FLOPs, NDP precision index); the
        arguments broadcast together."""
        sc, model, gpu = self.sc, self.sc.model, self.sc.system.gpu
        rank, factors, bits = (x.ravel() for x in (sc.sizes.rank, sc.sizes.factors, sc.sizes.bits))  # [L E]
        wsz = self.key_size[le * N_FORMS + g_form]
        if sc.dequant_bytes_per_weight:  # an unfused dequantization reads more than a low-bit form
            wsz = wsz + np.where(g_form != FULL, self.dequant_bytes, 0.0)
        gpu_on = g_tok > 0
        flops_e = np.where(gpu_on, costs.expert_work(model, g_tok, wsz)[0], 0.0)
        g_bits = np.where(g_form == FULL, FULL_PRECISION_BITS, bits[le])  # the GEMM's code width
        eff = np.asarray(sc.dequant_efficiency)[g_bits]                   # its share of the HBM bandwidth
        op_e = np.where(gpu_on, costs.gpu_time(gpu, *costs.expert_work(model, g_tok, wsz), sc.op_overhead["expert"],
                                               eff), 0.0)
        ranks, rank_of = np.unique(rank, return_inverse=True)  # FLOPs per token by rank: a table, not a loop
        per_token = np.array([model.factor_flops_per_token(int(rk)) for rk in ranks])[rank_of]  # [L E]
        comp = gpu_on & (c_tok > 0) & (rank[le] > 0)
        flops_c = np.where(comp, per_token[le] * c_tok, 0.0)
        op_c = np.where(comp, costs.gpu_time(gpu, per_token[le] * c_tok, factors[le], sc.op_overhead["compensation"]),
                        0.0)
        n_bits = np.where(n_form == FULL, FULL_PRECISION_BITS, bits[le])
        n_sz = self.key_size[le * N_FORMS + n_form]
        op_n = np.zeros(np.broadcast_shapes(np.shape(le), np.shape(n_tok)))
        for b in np.unique(np.append(bits, FULL_PRECISION_BITS)) if sc.system.ndp is not None else ():  # per precision
            on = (n_tok > 0) & (n_bits == b)
            if on.any():
                op_n = np.where(on, costs.ndp_time(sc.system.ndp, *costs.expert_work(model, n_tok, n_sz), int(b)), op_n)
        n_prec = np.select([n_bits <= 4, n_bits <= 8], [0, 1], 2)  # costs.ndp_precision as an index
        flops_n = np.where(n_tok > 0, costs.expert_work(model, n_tok, n_sz)[0], 0.0)
        return ((op_e, op_c, op_n), (np.where(gpu_on, wsz, 0.0), np.where(comp, factors[le], 0.0),
                                     np.where(n_tok > 0, n_sz, 0.0)), (flops_e + flops_c, flops_n, n_prec))
