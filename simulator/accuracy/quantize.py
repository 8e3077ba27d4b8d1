"""Group-wise asymmetric uniform quantization of a weight matrix along its input dimension.

A matrix W [d_out, d_in] is cut into groups of `group` consecutive input columns (the last group may be
shorter). Each (row, group) stores one scale s and one zero z, both fp16 (the zero is a real number in
code space, as in HQQ), and b-bit codes q in [0, 2^b - 1]:  W_hat = s * (q - z).
With s = (max - min) / (2^b - 1) and z = -min / s every weight is within s/2 of its reconstruction
(the fp16 rounding of z moves the code range by far less than half a step). `hqq_refine` optionally
improves the zeros with a few half-quadratic iterations (Badri & Shaji 2023, HQQ) under an l_p<1 loss.
Codes pack to ceil(d_in * d_out * b / 8) bytes, which is what simulator.accounting charges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from simulator.precision import QUANTIZER_BITS


@dataclass(frozen=True)
class Quantized:
    codes: torch.Tensor   # uint8   [d_out, d_in]
    scales: torch.Tensor  # float16 [d_out, n_groups]
    zeros: torch.Tensor   # float16 [d_out, n_groups]
    bits: int
    group: int

    def dequantize(self) -> torch.Tensor:
        """W_hat float32 [d_out, d_in]."""
        s = _expand(self.scales.float(), self.group, self.codes.shape[1])
        z = _expand(self.zeros.float(), self.group, self.codes.shape[1])
        return s * (self.codes.float() - z)


def _expand(per_group: torch.Tensor, group: int, d_in: int) -> torch.Tensor:
    """[d_out, n_groups] -> [d_out, d_in] by repeating each group's value over its columns."""
    return per_group.repeat_interleave(group, dim=1)[:, :d_in]


def _group_min_max(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    parts = torch.split(w, group, dim=1)
    lo = torch.stack([p.amin(dim=1) for p in parts], dim=1)
    hi = torch.stack([p.amax(dim=1) for p in parts], dim=1)
    return lo, hi  # [d_out, n_groups] each


def _check(bits: int, group: int) -> None:
    if bits not in QUANTIZER_BITS:
        raise ValueError(f"bits must be in {QUANTIZER_BITS.start}..{QUANTIZER_BITS.stop - 1}, got {bits}")
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")


def quantize(w: torch.Tensor, bits: int, group: int) -> Quantized:
    """Round-to-nearest min-max quantization of w [d_out, d_in]."""
    _check(bits, group)
    w = w.float()
    levels = 2 ** bits - 1
    lo, hi = _group_min_max(w, group)
    tiny = torch.maximum(torch.maximum(lo.abs(), hi.abs()) * 2.0 ** -14, torch.tensor(2.0 ** -24))
    scales = torch.maximum((hi - lo) / levels, tiny).half()
    zeros = (-lo / scales.float()).half()
    return _encode(w, scales, zeros, bits, group)


def _encode(w: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: int, group: int) -> Quantized:
    s = _expand(scales.float(), group, w.shape[1])
    z = _expand(zeros.float(), group, w.shape[1])
    codes = torch.clamp(torch.round(w / s + z), 0, 2 ** bits - 1).to(torch.uint8)
    return Quantized(codes, scales, zeros, bits, group)


def hqq_refine(w: torch.Tensor, q: Quantized, iters: int = 20, p: float = 0.7, beta: float = 10.0,
               kappa: float = 1.01) -> Quantized:
    """Half-quadratic refinement of the zeros (scales fixed), after HQQ's proximal solver.

    Alternates: codes from the current zeros; sparse error e = shrink_p(W - W_hat) (generalized soft
    threshold for the l_p norm, p < 1); zero = mean over the group of (q - (W - e) / s); beta grows by kappa.
    Keeps the iterate with the lowest squared error (never worse than the input).
    """
    w = w.float()
    d_in = w.shape[1]
    s = _expand(q.scales.float(), q.group, d_in)
    best, best_err = q, float(((w - q.dequantize()) ** 2).sum())
    zeros = q.zeros.float()
    for _ in range(iters):
        z = _expand(zeros, q.group, d_in)
        codes = torch.clamp(torch.round(w / s + z), 0, 2 ** q.bits - 1)
        r = w - s * (codes - z)
        e = torch.sign(r) * torch.relu(r.abs() - (1.0 / beta) * r.abs().clamp_min(1e-12) ** (p - 1))
        target = codes - (w - e) / s  # [d_out, d_in]; the zero that fits each weight
        zeros = torch.stack([t.mean(dim=1) for t in torch.split(target, q.group, dim=1)], dim=1)
        beta *= kappa
        cand = _encode(w, q.scales, zeros.half(), q.bits, q.group)
        err = float(((w - cand.dequantize()) ** 2).sum())
        if err < best_err:
            best, best_err = cand, err
    return best


def pack_codes(codes: torch.Tensor, bits: int) -> np.ndarray:
    """Pack b-bit codes (any shape) into uint8 bytes, little-endian bit order: ceil(n * b / 8) bytes."""
    flat = codes.reshape(-1).numpy().astype(np.uint8)
    bit_planes = (flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1  # [n, b]
    return np.packbits(bit_planes.reshape(-1), bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    n = int(np.prod(shape))
    bit_planes = np.unpackbits(packed, bitorder="little")[: n * bits].reshape(n, bits)
    values = (bit_planes.astype(np.uint8) << np.arange(bits, dtype=np.uint8)).sum(axis=1, dtype=np.uint8)
    return torch.from_numpy(values.reshape(shape))


def stored_bytes(q: Quantized) -> int:
    """Bytes of the packed codes plus the fp16 scales and zeros, as they would be stored."""
    return int(pack_codes(q.codes, q.bits).nbytes + q.scales.numel() * 2 + q.zeros.numel() * 2)
