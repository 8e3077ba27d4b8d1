"""Byte accounting for expert weights: the one function both the simulator and the accuracy model use.

A d_in x d_out matrix quantized to b bits with group size g is stored in a weight format
(simulator.formats): `matrix_bytes` is the exact byte count of that format's layout: packed codes (with
the packing's unused bits and partial words), scales and zeros per group (fp16, or 8-bit with their own
fp16 meta), packed zero points, group indices. The project's own format ("moesim", what
simulator.accuracy.quantize stores) costs
    ceil(d_in * d_out * b / 8)                                 codes, one dense bitstream per matrix
  + d_out * ceil(d_in / g) * (2 + 2)                           an fp16 scale and an fp16 zero per group
and its rank-r compensator U (d_out x r), V (d_in x r) costs r * (d_in + d_out) * bytes_per_value, plus
2 * r * scale_bytes when the factors are integers with one scale per column of U and of V
(FACTOR_FORMATS: fp16 = 2 bytes per value, no scales; int8 = 1 byte per value + an fp16 scale per column).
At b >= FULL_PRECISION_BITS (simulator.precision) the matrix is stored in full precision (2 bytes per
weight) with no scales, whatever the format.
A gated (SwiGLU) expert is three matrices: gate and up (hidden -> ffn) and down (ffn -> hidden); an
ungated (GELU MLP) expert, e.g. a MoEfied BERT FFN slice, is two: up (hidden -> ffn) and down.
"""

from __future__ import annotations

from simulator.formats import DEFAULT_FORMAT, WeightFormat, weight_format

FACTOR_FORMATS = {  # factor storage -> keyword arguments of factor_bytes / expert_factor_bytes
    "fp16": {"bytes_per_value": 2, "scale_bytes": 0},
    "int8": {"bytes_per_value": 1, "scale_bytes": 2},
}


def matrix_bytes(d_in: int, d_out: int, bits: float, group: int = 128,
                 fmt: str | WeightFormat = DEFAULT_FORMAT) -> int:
    """Bytes of one quantized matrix [d_out, d_in] stored in format family `fmt` at `bits` and `group`
    (simulator.formats.WeightFormat.stored_bytes; a FormatError, a ValueError, when it cannot be stored)."""
    if bits <= 0:
        raise ValueError(f"bits must be positive, got {bits}")
    return weight_format(fmt, bits, group).stored_bytes(d_in, d_out)


def factor_bytes(d_in: int, d_out: int, rank: int, bytes_per_value: int = 2, scale_bytes: int = 0) -> float:
    """Bytes of the rank-r factors U [d_out, r] and V [d_in, r] of one matrix (+ per-column scales)."""
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    return rank * (d_in + d_out) * bytes_per_value + 2 * rank * scale_bytes


def expert_shapes(hidden: int, ffn: int, gated: bool = True) -> list[tuple[int, int]]:
    """(d_in, d_out) of an expert's projections: gate, up, down when gated, else up, down."""
    up, down = (hidden, ffn), (ffn, hidden)
    return [up, up, down] if gated else [up, down]


def expert_lowbit_bytes(hidden: int, ffn: int, bits: float, group: int = 128,
                        fmt: str | WeightFormat = DEFAULT_FORMAT, gated: bool = True) -> int:
    """Bytes of one expert's matrices at `bits` in format `fmt` (full precision when bits >= 16)."""
    return sum(matrix_bytes(i, o, bits, group, fmt) for i, o in expert_shapes(hidden, ffn, gated))


def expert_factor_bytes(hidden: int, ffn: int, rank: int, bytes_per_value: int = 2, gated: bool = True,
                        scale_bytes: int = 0) -> float:
    """Bytes of one expert's compensator: rank-r factors for each of its matrices."""
    return sum(factor_bytes(i, o, rank, bytes_per_value, scale_bytes) for i, o in expert_shapes(hidden, ffn, gated))
