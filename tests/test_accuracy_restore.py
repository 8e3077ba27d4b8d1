"""Router-guided restore: exact equivalences on tiny layers, and a hand-computed routing case."""

import pytest
import torch

from simulator.accuracy.compress import quantize_expert
from simulator.accuracy.layer import MoELayer
from simulator.accuracy.lowrank import lowrank_factors
from simulator.accuracy.restore import restore_forward, restored_weights


def tiny_layer(kind="glu", combine="softmax_renorm", seed=0):
    g = torch.Generator().manual_seed(seed)
    h, f, n = 8, 6, 4
    if kind == "glu":
        experts = [{"gate": torch.randn(f, h, generator=g), "up": torch.randn(f, h, generator=g),
                    "down": torch.randn(h, f, generator=g)} for _ in range(n)]
        extra = {}
    else:
        experts = [{"in": torch.randn(f, h, generator=g), "out": torch.randn(h, f, generator=g)} for _ in range(n)]
        extra = {"expert_bias": [torch.randn(f, generator=g) for _ in range(n)], "out_bias": torch.randn(h, generator=g)}
    return MoELayer(index=0, router=torch.randn(n, h, generator=g), experts=experts, top_k=2, kind=kind,
                    combine=combine, **extra), torch.randn(10, h, generator=g)


def compressed(layer, bits=2, rank=6):
    qes = [quantize_expert(m, bits, 4) for m in layer.experts]
    lowbit = [qe.lowbit for qe in qes]
    factors = [{k: lowrank_factors(qe.residual(k), rank) for k in qe.weights} for qe in qes]
    return lowbit, [restored_weights(lb, f) for lb, f in zip(lowbit, factors)]


@pytest.mark.parametrize("kind,combine", [("glu", "softmax_renorm"), ("glu", "softmax"), ("gelu", "ones")])
def test_n_equals_k_with_full_rank_is_full_precision(kind, combine):
    layer, x = tiny_layer(kind, combine)
    lowbit, restored = compressed(layer, rank=6)  # rank 6 = full rank of every 6x8 / 8x6 matrix
    y = restore_forward(layer, x, lowbit, restored, top_n=2)
    assert torch.allclose(y, layer.forward(x), atol=2e-3, rtol=1e-3)  # fp16 factor storage only


def test_n_zero_is_pure_lowbit():
    layer, x = tiny_layer()
    lowbit, restored = compressed(layer)
    lowbit_layer = MoELayer(index=0, router=layer.router, experts=lowbit, top_k=2)
    assert torch.equal(restore_forward(layer, x, lowbit, restored, 0), lowbit_layer.forward(x))


def test_only_top_n_slot_is_restored():
    # 2 experts, identity-like matrices; restoring adds exactly the top-1 expert's correction
    layer = MoELayer(index=0, router=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), top_k=2, kind="gelu",
                     combine="ones", experts=[{"in": torch.eye(2), "out": torch.eye(2)}] * 2,
                     expert_bias=[torch.full((2,), 10.0)] * 2)  # gelu(z) = z for z >= 9
    x = torch.tensor([[2.0, 1.0]])  # expert 0 ranks first
    lowbit = [{"in": torch.eye(2), "out": torch.eye(2)}] * 2
    restored = [{"in": torch.eye(2), "out": 2 * torch.eye(2)}, {"in": torch.eye(2), "out": 3 * torch.eye(2)}]
    z = torch.tensor([[12.0, 11.0]])
    assert torch.allclose(restore_forward(layer, x, lowbit, restored, 0), 2 * z)
    assert torch.allclose(restore_forward(layer, x, lowbit, restored, 1), 2 * z + z)
    assert torch.allclose(restore_forward(layer, x, lowbit, restored, 2), 2 * z + z + 2 * z)
    with pytest.raises(ValueError, match="top_n"):
        restore_forward(layer, x, lowbit, restored, 3)


def test_error_falls_as_n_grows():
    layer, x = tiny_layer(seed=1)
    lowbit, restored = compressed(layer, bits=2, rank=3)
    ref = layer.forward(x)
    errs = [float((restore_forward(layer, x, lowbit, restored, n) - ref).norm()) for n in (0, 1, 2)]
    assert errs[0] > errs[2]
