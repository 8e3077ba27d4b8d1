"""Pure cost formulas: roofline op times, link transfer times and the work (FLOPs, bytes) of each op.

This module is the cost model; the discrete-event engine and any analytic fast path both evaluate
these functions and nothing else, so they agree exactly when nothing contends. All inputs and outputs
are SI floats (FLOPs, bytes, seconds). Every function works on Python scalars; `roofline` also accepts
numpy arrays (element-wise), so a vectorised caller reuses the same formula.

Op time (GPU or NDP unit):   max(FLOPs / (peak x compute_eff), bytes / (bandwidth x memory_eff)) + overhead
GPU overhead = the runtime profile's fixed seconds for the op (simulator.config.runtime Runtime.op_overhead:
    kernels issued x (gpu.launch_overhead + the host's issue time when that is on the critical path)).
    A low-bit expert GEMM's memory side runs at the runtime's dequant efficiency for its code width.
Transfer time (one link direction):   latency + bytes / bandwidth   (the YAML bandwidths are effective;
    copy engines overlap latencies, the bytes share the direction's bandwidth: simulator.des.link)

Work per op (tokens = tokens in the op, activations fp16 = ACT_BYTES per value):
  attention   FLOPs = sum over tokens of AttentionSpec.flops_per_token(hidden, context_i)
              bytes = attention weights at attention_bits in their format and group (simulator.formats, the
                      stored bytes) + KV read (sum of contexts) + KV write (tokens)
                      [+ the runtime's dequant.attention_extra_bytes_per_weight x params when low-bit]
  router      FLOPs = 2 hidden E tokens,               bytes = router weights (full precision)
  shared      FLOPs = 2 shared_params tokens,          bytes = shared expert weights (full precision)
  dense FFN   FLOPs = 2 dense_ffn_params tokens,       bytes = dense FFN weights
  LM head     FLOPs = 2 vocab hidden tokens,           bytes = vocab x hidden weights
  expert      FLOPs = 2 expert_params tokens,          bytes = the stored form read: the weight format's stored
              bytes, packing waste, scales, zeros and meta included (low-bit: dequant is fused into the
              GEMM and not costed separately; decode GEMMs are memory-bound)
                      [+ the runtime's dequant.extra_bytes_per_weight x expert_params for a low-bit form: the
                      traffic of a stack that dequantizes scales or weights in separate kernels]
  compensation FLOPs = ModelSpec.factor_flops_per_token(rank) tokens (x V, then (x V) U^T, three matrices),
              bytes = the factors
Dense GEMMs on the GPU run at its fp16 rate. An NDP unit computes at the precision its weights are stored
in: <= 4 bits -> int4, <= 8 bits -> int8, else fp16 (NDPSpec.flops falls back to its best rate).
"""

from __future__ import annotations

import numpy as np

from simulator.config.model import ModelSpec
from simulator.config.system import GPUSpec, LinkSpec, NDPSpec
from simulator.formats import DEFAULT_FORMAT
from simulator.precision import FULL_PRECISION_BITS, is_full_precision

ACT_BYTES = 2  # bytes per activation value (fp16) moved between GPU and NDP
TO_GPU, FROM_GPU = "to_gpu", "from_gpu"  # link directions


def roofline(flops, nbytes, flop_rate: float, bandwidth: float, overhead: float):
    """max(compute time, memory time) + fixed overhead; scalars or numpy arrays."""
    compute, memory = flops / flop_rate, nbytes / bandwidth
    if isinstance(compute, np.ndarray) or isinstance(memory, np.ndarray):
        return np.maximum(compute, memory) + overhead
    return max(compute, memory) + overhead


def gpu_time(gpu: GPUSpec, flops: float, nbytes: float, overhead: float | None = None,
             efficiency: float = 1.0):
    """Seconds of one op on the GPU compute stream (16-bit GEMMs): its roofline time, with the memory side at
    `efficiency` of the streaming bandwidth (a dequant-GEMM's, by code width), plus `overhead` seconds (the
    runtime's kernels x per-kernel cost, Runtime.op_overhead; None: one kernel's gpu.launch_overhead)."""
    return roofline(flops, nbytes, gpu.flops("fp16") * gpu.compute_efficiency,
                    gpu.hbm_bandwidth * gpu.memory_efficiency * efficiency,
                    gpu.launch_overhead if overhead is None else overhead)


NDP_PRECISIONS = ("int4", "int8", "fp16")  # what an NDP unit computes at, by the bits of its weights


def ndp_precision(bits: float) -> str:
    return "int4" if bits <= 4 else "int8" if bits <= 8 else "fp16"


def ndp_time(ndp: NDPSpec, flops: float, nbytes: float, bits: float) -> float:
    """Seconds of one expert op on one NDP unit with weights stored at `bits`."""
    return roofline(flops, nbytes, ndp.flops(ndp_precision(bits)) * ndp.compute_efficiency,
                    ndp.memory_bandwidth * ndp.memory_efficiency, ndp.op_overhead)


def wire_time(link: LinkSpec, direction: str, nbytes: float) -> float:
    """Seconds `nbytes` occupy the wire of `link` in `direction`."""
    return nbytes / (link.bandwidth_to_gpu if direction == TO_GPU else link.bandwidth_from_gpu)


def link_time(link: LinkSpec, direction: str, nbytes: float) -> float:
    """Seconds of one uncontended transfer: latency + bytes / bandwidth."""
    return link.latency + wire_time(link, direction, nbytes)


# ---- work of each op: (FLOPs, bytes) ----

def attention_work(model: ModelSpec, tokens: int, context_sum: float,
                   attention_bits: float = FULL_PRECISION_BITS,
                   group: int = 128, dequant_bytes_per_weight: float = 0.0,
                   fmt: str = DEFAULT_FORMAT) -> tuple[float, float]:
    """One layer's attention for `tokens` tokens whose contexts add up to `context_sum`, its weights stored at
    `attention_bits` in format `fmt` with `group` (the attention's own: RunSpec.attention_group); a low-bit
    stack that dequantizes unfused moves `dequant_bytes_per_weight` more HBM bytes per weight and call."""
    att, h = model.attention, model.hidden
    base = att.flops_per_token(h, 0)  # flops_per_token is affine in the context
    per_ctx = att.flops_per_token(h, 1) - base
    flops = tokens * base + context_sum * per_ctx
    nbytes = model.attention_weight_bytes(attention_bits, group, fmt) + model.kv_bytes_per_token * (context_sum + tokens)
    if not is_full_precision(attention_bits) and dequant_bytes_per_weight:
        nbytes += dequant_bytes_per_weight * model.attention_params
    return flops, nbytes


def router_work(model: ModelSpec, tokens: int) -> tuple[float, float]:
    return 2.0 * model.router_params * tokens, model.router_params * model.weight_bytes


def shared_work(model: ModelSpec, tokens: int) -> tuple[float, float]:
    return 2.0 * model.shared_params * tokens, model.shared_params * model.weight_bytes


def dense_ffn_work(model: ModelSpec, tokens: int) -> tuple[float, float]:
    return 2.0 * model.dense_ffn_params * tokens, model.dense_ffn_params * model.weight_bytes


def lm_head_work(model: ModelSpec, tokens: int) -> tuple[float, float]:
    params = model.vocab * model.hidden
    return 2.0 * params * tokens, params * model.weight_bytes


def expert_work(model: ModelSpec, tokens: int, weight_bytes: float) -> tuple[float, float]:
    return model.expert_flops_per_token() * tokens, weight_bytes


def compensation_work(model: ModelSpec, tokens: int, rank: int, factor_bytes: float) -> tuple[float, float]:
    return model.factor_flops_per_token(rank) * tokens, factor_bytes


def step_work(model: ModelSpec, attention, router, shared, dense, head):
    """(FLOPs, HBM bytes) of a step's GPU ops outside the routed experts, from their (FLOPs, bytes):
    attention in every layer, router and shared experts in every MoE layer, the dense FFN of the dense
    layers, one LM head. Scalars (the DES) or numpy arrays per step (the fast path), the same arithmetic."""
    moe, layers = model.moe_layers, model.first_dense_layers
    return tuple(model.layers * attention[i] + moe * (router[i] + shared[i]) + layers * dense[i] + head[i]
                 for i in (0, 1))


def activation_bytes(model: ModelSpec, tokens: int) -> float:
    """Bytes of `tokens` hidden-state vectors (sent to NDP, or an NDP expert's output sent back)."""
    return float(tokens * model.hidden * ACT_BYTES)
