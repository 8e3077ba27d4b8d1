"""What the fast timer's compiled kernel reads and writes: named tuples of arrays, and the column indices.

numba compiles functions over these tuples as structs (one compiled signature as long as every field keeps
its type: the callers cast scalars), so a stage of simulator.fast.kernel names what it reads.
"""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np

# columns of the per-step float output
(START, END, EXPERT_GPU, COMPENSATION, EXPERT_NDP, STALL, BYTES_EXPERT, BYTES_ACT, BYTES_RESULT,  # the
 GPU_FLOPS, GPU_BYTES, NDP_FLOPS_INT4, NDP_FLOPS_INT8, NDP_FLOPS_FP16, NDP_BYTES) = range(15)  # routed experts' work
STEP_FLOATS = 15
# columns of the per-step int output: demand hits, first uses of prefetched entries, misses, GPU and NDP items
HITS, MISSES, N_GPU, N_NDP, PF_HITS = range(5)
STEP_INTS = 5
# slots of the run totals
(BUSY_EXPERT_LINK, BUSY_ACT, BUSY_RESULT, FETCHED_LOWBIT, FETCHED_FACTORS, FETCHED_FULL, PREFETCH_BYTES,
 PREFETCH_WASTED, EVICTIONS) = range(9)
TOTALS = 9
# A chunk's routing: experts [tokens, L, k] of its tokens, step after step, lens [P] tokens per step; the
# run's step index of its first step; the model's shape; NDP units (1 without NDP); what its tokens guess
# for each layer (simulator.prefetch.predicted: pred [tokens, L, W] int64, -1 none; W = 0 when the
# prefetcher guesses from no predicted routing) and how many leading places count as restored (pred_top).
Routing = namedtuple("Routing", "experts lens step_base L E top_n first_dense units pred pred_top")
# The prefetcher (simulator.prefetch): mode (NONE: no prefetch), recall, and the wrong recall guesses'
# weights [L, E] int64 (calibration popularity + 1).
Prefetcher = namedtuple("Prefetcher", "mode recall weight")
# Per step [P]: seconds of attention, router, dense FFN, shared experts, LM head; activations to the NDP
# units: wire seconds and bytes.
StepOps = namedtuple("StepOps", "att router dense shared head act_wire act_bytes")
# Latencies and DMA engines: activations (GPU->CXL), expert link (to the GPU), NDP results (CXL->GPU);
# whether results share the expert link; whether a layer's experts wait for all its on-demand loads.
Links = namedtuple("Links", "a_lat e_lat e_engines r_lat r_engines shared_link block")
# What the kernel writes: out [P, STEP_FLOATS], counts [P, STEP_INTS], totals [TOTALS], NDP busy [units],
# the clock now [1] (where the next step starts), copy_step / copy_end [keys] (run step and arrival of
# each key's latest copy), pending [keys] (prefetched, no demand lookup has used it yet), the prefetch
# decision log [cap, 5] (run step, layer, expert, form, copied: 1 / refreshed: 0; cap 0: none) and its
# length n_log [1].
Out = namedtuple("Out", "out counts totals ndp_busy now copy_step copy_end pending log n_log")
# Scratch of one chunk (make_scratch)
Scratch = namedtuple("Scratch", "cnt rst mask used_by_next items rows n_items j_arr j_wire j_end j_prio j_key done "
                                "r_arr r_wire r_end r_order r_pos s_arr s_wire s_prio g_items g_w g_f ufree unit_of "
                                "u_count u_head u_ops act_units e_free e_wire r_free r_wire_t p_items p_rows p_n "
                                "q_exp q_row q_own")


@numba.njit(cache=True)
def make_scratch(rt, e_engines, r_engines):
    """Buffers for the chunk's steps: M = the most items a layer can have, G the most guessed items."""
    M = G = 0
    for p in range(len(rt.lens)):
        M = max(M, min(rt.E, rt.experts.shape[2] * rt.lens[p]))
        G = max(G, min(rt.E, rt.pred.shape[2] * rt.lens[p]))
    G = max(G, M)  # recall guesses one per item
    J, U = 3 * M + 2 * G + 1, max(rt.units, 1)  # transfers a layer can have on the expert link: 2 M copies,
    # 2 G prefetches, M results
    return Scratch(np.zeros(rt.E, np.int64), np.zeros(rt.E, np.int64), np.zeros((rt.E + 63) // 64, np.uint64),
                   np.zeros(rt.E, np.bool_), np.zeros((rt.L, max(M, 1)), np.int64), np.zeros((rt.L, max(M, 1)), np.int64),
                   np.zeros(rt.L, np.int64), np.zeros(J), np.zeros(J), np.zeros(J), np.zeros(J, np.int64),
                   np.zeros(J, np.int64), np.zeros(J, np.bool_), np.zeros(M + 1), np.zeros(M + 1),
                   np.zeros(M + 1), np.zeros(M + 1, np.int64), np.zeros(M + 1, np.int64), np.zeros(M + 1),
                   np.zeros(M + 1), np.zeros(M + 1, np.int64), np.zeros(M + 1, np.int64), np.zeros(M + 1),
                   np.zeros(M + 1), np.zeros(U), np.arange(rt.E) % U, np.zeros(U, np.int64), np.zeros(U, np.int64),
                   np.zeros((U, M + 1), np.int64), np.zeros(U, np.int64), np.zeros(e_engines), np.zeros(1),
                   np.zeros(r_engines), np.zeros(1), np.zeros((rt.L, G + 1), np.int64),
                   np.zeros((rt.L, G + 1), np.int64), np.zeros(rt.L, np.int64), np.zeros(G + 1, np.int64),
                   np.zeros(G + 1, np.int64), np.zeros(G + 1, np.bool_))
