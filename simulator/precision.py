"""Bit widths: what "full precision" means, and which widths each half of moesim can model.

Weights stored at FULL_PRECISION_BITS or more are full precision (fp16/bf16): no quantization scales in
their bytes (simulator.accounting), no quantization error in the accuracy model (error 0, cosine 1), the
fp16 rate on an NDP unit (simulator.costs). Below that, a width is a quantized ("low-bit") form.

The two halves take different widths, and a sweep joins them:
    simulator (cost model, RunSpec.bits)   SIMULATED_BITS: 1 .. FULL_PRECISION_BITS
    accuracy model (its quantizer)         QUANTIZER_BITS: 1 .. 8, plus full precision
so a point at 9-15 bits simulates, but its accuracy cannot be measured: `accuracy_bits_problem` says why
in one line, and a sweep records that as the reason of an invalid accuracy result (never a crash).
"""

from __future__ import annotations

FULL_PRECISION_BITS = 16
QUANTIZER_BITS = range(1, 9)                          # what simulator.accuracy.quantize produces
SIMULATED_BITS = range(1, FULL_PRECISION_BITS + 1)    # what the cost model takes


def is_full_precision(bits: float) -> bool:
    """Weights stored at `bits` are the full-precision originals."""
    return bits >= FULL_PRECISION_BITS


def accuracy_bits_problem(bits: float) -> str | None:
    """None when the accuracy model can measure weights at `bits`; else the reason, in one line."""
    if is_full_precision(bits) or bits in QUANTIZER_BITS:
        return None
    return (f"the accuracy model quantizes to {QUANTIZER_BITS.start}-{QUANTIZER_BITS.stop - 1} bits or runs "
            f"full precision ({FULL_PRECISION_BITS}); {bits} bits cannot be measured")
