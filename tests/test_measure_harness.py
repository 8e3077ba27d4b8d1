"""The measure harness's bookkeeping is moesim's, exactly: for the same trace, cache and policy, the bytes it
copies equal the simulator's link bytes (per form), and its cache hits, misses and evictions equal the
simulator's counters; the packed low-bit layout holds exactly the bytes moesim counts and its dequant kernel
recovers the codes. No timing is asserted."""

from __future__ import annotations

import pytest
import torch

from simulator.config.run import RunSpec
from simulator.errors import UserError
from simulator.measure import kernels as K
from simulator.measure.harness import Harness
from simulator.measure.shape import HarnessShape, harness_trace, write_model
from simulator.routing.trace import save_trace
from simulator.simulate import build_scenario, simulate

SHAPE = HarnessShape(layers=2, hidden=256, expert_ffn=128, vocab=256, heads=2, kv_heads=1, head_dim=64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("harness")
    write_model(SHAPE.model_spec(), d / "model.yaml")
    save_trace(harness_trace(SHAPE, "traces/esft-intent", None, 8), d / "esft")
    save_trace(harness_trace(SHAPE, None, 96, 8, seed=3), d / "synth")
    return d


def spec(files, trace="esft", **kw) -> RunSpec:
    base = {"hwconfig": "h100-pcie5", "model": str(files / "model.yaml"), "trace": str(files / trace),
            "runtime": "mixtral-offloading", "group": 64, "tokens": 6}
    return RunSpec(**{**base, **kw})


CASES = [
    {"policy": "offload-fp16", "cache_experts_per_layer": 3},
    {"policy": "offload-lowbit", "bits": 3, "cache_experts_per_layer": 4, "batch": 8, "trace": "synth"},
    {"policy": "offload-lrc", "bits": 2, "rank": 8, "top_n": 2, "cache_experts_per_layer": 2, "batch": 4,
     "trace": "synth"},
    {"policy": "offload-lrc", "bits": 4, "rank": 8, "top_n": 1, "cache_bytes": 3e6, "cache_policy": "lfu"},
    {"policy": "offload-lowbit", "bits": 8, "cache_bytes": 1e5},        # smaller than an expert: streams through
    {"policy": "offload-fp16", "cache_experts_per_layer": 1, "cache_policy": "lfu", "batch": 8, "trace": "synth"},
    {"policy": "gpu-resident", "bits": 4},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_bytes_hits_and_misses_are_the_simulators(files, case):
    s = spec(files, **case)
    h = Harness(build_scenario(s), torch.device("cpu"))
    run = h.run()
    summary = simulate(s)
    book = h.book
    assert run.tokens == summary["tokens"]
    assert book.cache_hits == summary["cache_hits"]
    assert book.cache_misses == summary["cache_misses"]
    assert book.cache_evictions == summary["cache_evictions"]
    assert book.copied_bytes == summary["link_bytes"]["pcie"]["to_gpu"]
    assert book.fetched == summary["fetched_bytes"]
    assert book.experts_gpu == summary["experts_gpu_per_step"] * summary["steps"]
    if case["policy"] != "gpu-resident":
        assert book.cache_misses > 0 and book.copied_bytes > 0  # the case exercises copies
    # a second pass starts cold again: the same bookkeeping
    h.run()
    assert h.book.as_dict() == book.as_dict()
    assert set(run.breakdown) >= {"attention", "router", "expert_gpu", "transfer_stall", "other"}
    assert sum(run.breakdown.values()) == pytest.approx(run.seconds, rel=1e-9)


@pytest.mark.parametrize("bits", range(1, 9))
def test_packed_layout_is_moesims_bytes_and_dequant_recovers_the_codes(bits):
    model = SHAPE.model_spec()
    ts = SHAPE.torch_shape()
    n = ts.expert_weights
    lay = K.lowbit_layout(n, bits, 64)
    assert lay["total"] == model.expert_bytes(bits, 64)
    assert K.form_bytes("full", ts, 16, 64, 0) == model.expert_bytes(16)
    assert K.form_bytes("factors", ts, bits, 64, 8) == model.expert_factor_bytes(8)
    gen = torch.Generator().manual_seed(bits)
    codes = torch.randint(0, 1 << bits, (n,), generator=gen, dtype=torch.uint8)
    buf = torch.zeros(lay["total"], dtype=torch.uint8)
    packed = K.pack_codes(codes, bits)
    assert packed.numel() == n * bits // 8
    buf[: packed.numel()] = packed
    scale = (torch.rand(n // 64, generator=gen) + 0.5).to(K.DT)
    offset = torch.randn(n // 64, generator=gen).to(K.DT)
    buf[slice(*lay["scale"])].view(K.DT).copy_(scale)
    buf[slice(*lay["offset"])].view(K.DT).copy_(offset)
    s = K.Scratch(ts, torch.device("cpu"))
    wg, wu, wd = K.dequant(K.Slot(buf, "lowbit", ts, bits, 64), s)
    assert torch.equal(s.q, codes.to(K.DT))
    ref = (codes.view(-1, 64).float() * scale.float().view(-1, 1) + offset.float().view(-1, 1)).view(-1)
    torch.testing.assert_close(s.w.float(), ref, rtol=1e-2, atol=1e-2)
    h, f = ts.hidden, ts.ffn
    assert wg.shape == (h, f) and wu.shape == (h, f) and wd.shape == (f, h)
    torch.testing.assert_close(wd.t().reshape(-1), s.w[2 * f * h:])


def test_expert_op_computes_the_restored_mixture(files):
    """kernels.expert adds wts x expert(x) (+ the low-rank terms of the restored rows) into out."""
    ts = SHAPE.torch_shape()
    gen = torch.Generator().manual_seed(0)
    full = torch.empty(K.form_bytes("full", ts, 16, 64, 0), dtype=torch.uint8)
    K.fill_random(full, "full", ts, 16, 64, 0, gen)
    fac = torch.empty(K.form_bytes("factors", ts, 16, 64, 4), dtype=torch.uint8)
    K.fill_random(fac, "factors", ts, 16, 64, 4, gen)
    slot, comp = K.Slot(full, "full", ts), K.Slot(fac, "factors", ts, rank=4)
    x = torch.randn(3, ts.hidden, generator=gen).to(K.DT)
    out = torch.zeros_like(x)
    idx, ridx = torch.tensor([0, 2]), torch.tensor([1])
    wts = torch.tensor([[0.25], [0.5]]).to(K.DT)
    K.expert(x, out, idx, wts, slot, K.Scratch(ts, torch.device("cpu")), comp, ridx, lambda cat: None)
    (wg, wu, wd), ((vg, ug), (vu, uu), (vd, ud)) = slot.w, comp.factors
    xf = x.float()

    def ref(row, restored):
        xr = xf[row:row + 1]
        g, u = xr @ wg.float(), xr @ wu.float()
        if restored:
            g, u = g + xr @ vg.float() @ ug.float(), u + xr @ vu.float() @ uu.float()
        hh = torch.nn.functional.silu(g) * u
        y = hh @ wd.float()
        return y + hh @ vd.float() @ ud.float() if restored else y

    torch.testing.assert_close(out[0].float(), 0.25 * ref(0, False)[0], rtol=0.05, atol=2e-3)
    torch.testing.assert_close(out[2].float(), 0.5 * ref(2, True)[0], rtol=0.05, atol=2e-3)
    assert torch.count_nonzero(out[1]) == 0


def test_what_the_harness_does_not_run_is_one_line(files):
    for kwargs, field in (({"policy": "offload-lowbit", "bits": 12, "cache_experts_per_layer": 2}, "bits"),
                          ({"policy": "offload-lowbit", "cache_experts_per_layer": 2, "prefetch": True}, "prefetch"),
                          ({"policy": "offload-mixed", "cache_experts_per_layer": 2}, "policy")):
        with pytest.raises(UserError) as err:
            Harness(build_scenario(spec(files, **kwargs)), torch.device("cpu"))
        assert err.value.field == field
