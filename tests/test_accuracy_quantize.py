"""Group-wise quantization: error bounds, exactness at 8 bits, packing sizes equal the accounting."""

import pytest
import torch

from simulator.accounting import matrix_bytes
from simulator.accuracy.quantize import _expand, hqq_refine, pack_codes, quantize, stored_bytes, unpack_codes


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("group", [16, 24, 64])
def test_round_trip_within_half_a_step(bits, group):
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(bits)) * 0.05
    q = quantize(w, bits, group)
    err = (w - q.dequantize()).abs()
    half_step = _expand(q.scales.float(), group, 64) / 2
    assert (err <= half_step * (1 + 1e-5)).all()
    assert q.codes.max() <= 2 ** bits - 1
    assert q.scales.shape == (8, -(-64 // group))


def test_eight_bits_exact_on_representable_input():
    s, z = 2.0 ** -6, 37.0  # fp16-exact scale and zero; each row holds codes 0 and 255
    codes = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0)).float()
    codes[:, 0], codes[:, 1] = 0, 255
    w = s * (codes - z)
    q = quantize(w, 8, 32)
    assert torch.equal(q.dequantize(), w)
    assert torch.equal(q.codes.float(), codes)


def test_hand_computed_two_bit_group():
    q = quantize(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), 2, 4)
    assert q.scales.tolist() == [[1.0]] and q.zeros.tolist() == [[0.0]]
    assert q.codes.tolist() == [[0, 1, 2, 3]]


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8])
def test_packed_bytes_equal_accounting(bits):
    d_out, d_in, group = 16, 64, 32
    q = quantize(torch.randn(d_out, d_in), bits, group)
    packed = pack_codes(q.codes, bits)
    assert torch.equal(unpack_codes(packed, bits, q.codes.shape), q.codes)
    assert stored_bytes(q) == matrix_bytes(d_in, d_out, bits, group)


def test_hqq_never_worse_and_usually_better():
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(1)) ** 3  # heavy tails
    q = quantize(w, 3, 64)
    h = hqq_refine(w, q)
    plain, refined = (w - q.dequantize()).norm(), (w - h.dequantize()).norm()
    assert refined < plain
