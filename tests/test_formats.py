"""Weight formats (simulator.formats): stored bytes against hand counts of each implementation's tensors,
the properties every layout has, the 3-bit vs 2-bit point of issue 13, and one-line errors for formats
that cannot be packed as declared."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.accounting import matrix_bytes
from simulator.config.model import load_model
from simulator.config.run import RunSpec
from simulator.errors import UserError
from simulator.formats import FAMILIES, FormatError, weight_format
from simulator.simulate import build_scenario

MIXTRAL = load_model("mixtral-8x7b")  # experts 4096 -> 14336 (w1, w3) and 14336 -> 4096 (w2); attention 4096-wide


# ---- hand counts, one per shipped family ----

def test_moesim_is_one_bitstream_per_matrix_with_fp16_scale_and_zero_per_row_group():
    # 100 -> 3 at 3 bits, group 64: codes ceil(300 x 3 / 8) = ceil(112.5) = 113 B (pack_codes);
    # groups 3 rows x ceil(100 / 64) = 6, each an fp16 scale + fp16 zero: 6 x 4 = 24 B
    assert matrix_bytes(100, 3, 3, 64) == 113 + 24
    # Mixtral expert at 4 bits, group 128: per matrix n/2 + (n/128) x 4 = 4.25 bits per weight
    assert MIXTRAL.expert_bytes(4, 128) == 3 * 4096 * 14336 * 4.25 / 8 == 93_585_408


def test_moesim_equals_what_the_quantizer_stores():
    import torch

    from simulator.accuracy.quantize import quantize, stored_bytes

    for d_in, d_out, bits, group in ((100, 3, 3, 64), (37, 5, 5, 8), (64, 16, 2, 16)):
        q = quantize(torch.randn(d_out, d_in, generator=torch.Generator().manual_seed(0)), bits, group)
        assert stored_bytes(q) == matrix_bytes(d_in, d_out, bits, group, "moesim")


def test_hqq_mixtral_offloading_expert_is_the_storage_a_load_copies():
    # dvmazur/mixtral-offloading: nbits 2, group 16, quant_scale + quant_zero, scale meta group 128.
    # per matrix of n = 4096 x 14336 = 58,720,256 weights:
    #   W_q      2-bit, 4 per uint8            n / 4           = 14,680,064
    #   scale_q  uint8 per group of 16         n / 16          =  3,670,016
    #   meta_scale fp16 scale + zero per 128 scales  3,670,016 / 128 x 4 = 114,688
    #   zero_q   uint8 per group               n / 16          =  3,670,016
    #   meta_zero  fp16 scale + zero, per tensor                 =          4
    per_matrix = 14_680_064 + 3_670_016 + 114_688 + 3_670_016 + 4
    assert per_matrix == 22_134_788
    fmt = weight_format("hqq", 2, 16)
    assert fmt.tensors(4096, 14336) == {"codes": 14_680_064, "scales": 3_670_016 + 114_688,
                                        "zeros": 3_670_016 + 4, "index": 0}
    assert MIXTRAL.expert_bytes(2, 16, "hqq") == 3 * per_matrix == 66_404_364   # 3.016 bits per weight
    assert fmt.bits_per_weight(4096, 14336) == pytest.approx(3.0156, abs=1e-4)


def test_hqq_meta256_mixtral_offloading_attention():
    # attn_config: nbits 4, group 64, quant_scale + quant_zero, scale_quant_params group_size 256.
    # q_proj / o_proj 4096 x 4096 (n = 16,777,216): W_q n / 2 = 8,388,608; 262,144 groups:
    #   scale_q 262,144 + 262,144 / 256 x 4 = 4,096 meta; zero_q 262,144 + 4 -> 8,916,996
    # k_proj / v_proj 4096 -> 1024 (n = 4,194,304): 2,097,152 + (65,536 + 256 x 4) + (65,536 + 4) = 2,229,252
    assert matrix_bytes(4096, 4096, 4, 64, "hqq-meta256") == 8_916_996
    assert matrix_bytes(4096, 1024, 4, 64, "hqq-meta256") == 2_229_252
    assert MIXTRAL.attention_weight_bytes(4, 64, "hqq-meta256") == 2 * 8_916_996 + 2 * 2_229_252


def test_hqq_three_bits_pack_ten_codes_per_int32_per_group():
    # 1024 -> 16 at 3 bits, group 64: 16,384 weights in 256 groups (flattened); each group's 64 codes pad to
    # 70 = 7 int32 (10 codes each, 2 bits unused): 256 x 28 = 7,168 B (a dense 3-bit stream: 6,144 B);
    # scale_q 256 + 2 meta pairs x 4 = 264; zero_q 256 + 4 = 260
    fmt = weight_format("hqq", 3, 64)
    assert fmt.codes_per_word == 10
    assert fmt.tensors(1024, 16) == {"codes": 7_168, "scales": 264, "zeros": 260, "index": 0}


def test_gptq_int4_buffers():
    # AutoGPTQ QuantLinear, bits 4, group 128, w1 4096 -> 14336:
    #   qweight int32 [4096 / 32 x 4, 14336] = 512 x 14336 x 4     = 29,360,128
    #   qzeros  int32 [32, 14336 / 32 x 4]   = 32 x 1792 x 4       =    229,376  (4-bit zeros, 8 per int32)
    #   scales  fp16  [32, 14336]            = 32 x 14336 x 2      =    917,504
    #   g_idx   int32 [4096]                                       =     16,384
    w1 = 29_360_128 + 229_376 + 917_504 + 16_384
    # w2 14336 -> 4096: qweight 1792 x 4096 x 4; qzeros 112 x 512 x 4; scales 112 x 4096 x 2; g_idx 14336 x 4
    w2 = 29_360_128 + 229_376 + 917_504 + 57_344
    assert matrix_bytes(4096, 14336, 4, 128, "gptq") == w1 == 30_523_392
    assert matrix_bytes(14336, 4096, 4, 128, "gptq") == w2
    assert MIXTRAL.expert_bytes(4, 128, "gptq") == 2 * w1 + w2 == 91_611_136
    # 3 bits: 32 codes per 3 int32 (a 96-bit stream), no waste: 64 -> 32, group 32:
    #   qweight [64 / 32 x 3, 32] = 6 x 32 x 4 = 768 (= 2048 x 3 / 8); qzeros [2, 3] x 4 = 24;
    #   scales [2, 32] x 2 = 128; g_idx 64 x 4 = 256
    assert weight_format("gptq", 3, 32).tensors(64, 32) == {"codes": 768, "scales": 128, "zeros": 24, "index": 256}


def test_awq_gemm_buffers():
    # AutoAWQ WQLinear_GEMM, 4 bits, group 128, w1 4096 -> 14336:
    #   qweight int32 [4096, 14336 / 8] = 4096 x 1792 x 4 = 29,360,128
    #   qzeros  int32 [32, 1792] x 4 = 229,376;  scales fp16 [32, 14336] x 2 = 917,504;  no g_idx
    per = 29_360_128 + 229_376 + 917_504
    assert matrix_bytes(4096, 14336, 4, 128, "awq") == matrix_bytes(14336, 4096, 4, 128, "awq") == per
    assert MIXTRAL.expert_bytes(4, 128, "awq") == 3 * per == 91_521_024


@pytest.mark.parametrize("family", ["fp16", "bf16", "moesim", "hqq", "gptq", "awq"])
def test_full_precision_is_two_bytes_per_weight_in_every_family(family):
    assert matrix_bytes(4096, 14336, 16, 128, family) == 4096 * 14336 * 2


# ---- the point of the issue: an odd width in a word costs its unused bits ----

def test_three_bit_int32_packing_costs_more_than_two_bit_and_more_than_three_eighths():
    n = 4096 * 14336
    three, two = weight_format("hqq", 3, 64), weight_format("hqq", 2, 64)
    assert three.stored_bytes(4096, 14336) > two.stored_bytes(4096, 14336)
    assert three.code_bytes(4096, 14336) > n * 3 / 8              # 10 codes per int32, 2 bits unused
    # HQQ pads each group of 64 to 70 codes = 7 int32: 224 bits per 64 weights = 3.5 bits per weight;
    # a group that is a multiple of 10 (80) wastes only the 2 bits of each word: 3.2 bits per weight
    assert three.code_bytes(4096, 14336) * 8 / n == 3.5
    assert weight_format("hqq", 3, 80).tensors(1280, 1024)["codes"] * 8 / (1280 * 1024) == 3.2
    assert two.code_bytes(4096, 14336) == n * 2 / 8               # 4 per uint8: no waste
    # the project's own layout is a dense bitstream: 3 bits cost exactly 3/8 byte per weight
    assert weight_format("moesim", 3, 64).code_bytes(4096, 14336) == n * 3 / 8


# ---- properties of every layout ----

PACKABLE = [(family, bits) for family, fam in FAMILIES.items() for bits in fam.bits]


@st.composite
def packable(draw):
    family, bits = draw(st.sampled_from(PACKABLE))
    fam = FAMILIES[family]
    group = fam.group_multiple * draw(st.integers(1, 16))
    fmt = weight_format(family, bits, group)
    d_in = fmt.in_multiple * draw(st.integers(1, 24))
    d_out = fmt.out_multiple * draw(st.integers(1, 24))
    if fmt.group_divides_in:
        d_in = group * draw(st.integers(1, 8))
    if fmt.flat_groups:  # HQQ: groups divide the matrix, 8-bit scales' meta groups divide the groups
        d_in, d_out = group * draw(st.sampled_from([256, 512])), draw(st.integers(1, 4))
    return fmt, d_in, d_out


def _runs(fmt, d_in, d_out) -> int:
    """Packing runs: each is padded to a whole word at its end."""
    return {"tensor": 1, "row": d_out, "column": d_in,
            "group": fmt.groups(d_in, d_out) if fmt.flat_groups else d_out * math.ceil(d_in / fmt.group)}[fmt.run]


@settings(max_examples=300, deadline=None)
@given(packable())
def test_stored_bytes_cover_the_codes_and_waste_less_than_a_word_per_run(case):
    fmt, d_in, d_out = case
    n = d_in * d_out
    codes, total = fmt.code_bytes(d_in, d_out), fmt.stored_bytes(d_in, d_out)
    assert total >= codes >= n * fmt.bits / 8                       # nothing stores less than its codes
    per_code = fmt.bits if fmt.stream else fmt.word_bits / fmt.codes_per_word  # bits a code occupies
    assert codes * 8 >= n * per_code
    assert codes * 8 < n * per_code + _runs(fmt, d_in, d_out) * fmt.word_bits  # < one word of padding per run
    assert total == sum(fmt.tensors(d_in, d_out).values()) and isinstance(total, int)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([f for f in FAMILIES if FAMILIES[f].bits]), st.integers(1, 4), st.integers(1, 6),
       st.integers(1, 3))
def test_bytes_never_decrease_with_bits_in_a_family(family, k_group, k_in, d_out):
    """Within a family at a fixed group and shape, more bits never cost fewer bytes (not strictly: HQQ's
    3-bit g16 packs 16 codes into two int32, as many bytes as 4 bits)."""
    fam = FAMILIES[family]
    group = fam.group_multiple * k_group * 8
    d_in, d_out = group * 128 * k_in, d_out * 32
    sizes = [weight_format(family, b, group).stored_bytes(d_in, d_out) for b in fam.bits]
    assert sizes == sorted(sizes)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(1, 40), st.integers(1, 15), st.integers(1, 200))
def test_moesim_word_aligned_cases_are_exact(d_in, d_out, bits, group):
    n = d_in * d_out
    b = matrix_bytes(d_in, d_out, bits, group)
    scales = d_out * math.ceil(d_in / group) * 4
    assert b == math.ceil(n * bits / 8) + scales
    if (n * bits) % 8 == 0:
        assert b == n * bits / 8 + scales


# ---- formats that cannot be packed as declared ----

@pytest.mark.parametrize("family, bits, group, field, message", [
    ("awq", 3, 128, "bits", "format awq stores 4 bits, not 3"),
    ("gptq", 5, 128, "bits", "format gptq stores 2, 3, 4, 8 bits, not 5"),
    ("hqq", 2, 12, "group", "format hqq needs a group that is a positive multiple of 8, got 12"),
    ("fp16", 4, 128, "bits", "format fp16 stores only 16 bits, not 4"),
    ("nf4", 4, 64, "family", "unknown weight format 'nf4'"),
])
def test_bad_formats_name_their_field(family, bits, group, field, message):
    with pytest.raises(FormatError, match=message) as exc:
        weight_format(family, bits, group)
    assert exc.value.field == field


@pytest.mark.parametrize("family, bits, group, shape, field, message", [
    ("gptq", 4, 128, (100, 64), "shape", "d_in is a multiple of 32"),
    ("awq", 4, 96, (128, 64), "group", "group 96 does not divide 128"),
    ("awq", 4, 64, (128, 12), "shape", "d_out of 8"),
    ("hqq", 2, 16, (20, 2), "group", "group 16 does not divide its 40 weights"),
    ("hqq", 2, 16, (1016, 16), "group", "quantizes its 1016 scales in groups of 128"),  # 1016 groups of 16
])
def test_shapes_the_implementation_cannot_pack(family, bits, group, shape, field, message):
    fmt = weight_format(family, bits, group)
    with pytest.raises(FormatError, match=message) as exc:
        fmt.stored_bytes(*shape)
    assert exc.value.field == field


@pytest.mark.parametrize("fields, field, message", [
    ({"weight_format": "awq", "bits": 3}, "bits", "expert weights of deepseek-v2-lite: format awq stores 4 bits"),
    ({"weight_format": "hqq", "bits": 2, "group": 12}, "group", "multiple of 8, got 12"),
    ({"attention_format": "gptq", "attention_bits": 5}, "attention_bits", "attention weights of deepseek-v2-lite"),
    ({"attention_format": "awq", "attention_bits": 4, "attention_group": 96}, "attention_group",
     "group 96 does not divide 2048"),
    ({"weight_format": "fp16"}, "bits", "format fp16 stores only 16 bits, not 4"),
])
def test_run_parameters_name_the_flag(fields, field, message):
    with pytest.raises(UserError, match=message) as exc:
        build_scenario(RunSpec(tokens=2, **fields))
    assert exc.value.field == field
    assert "\n" not in exc.value.render()


def test_cli_rejects_a_bad_format_in_one_line(capsys):
    from simulator.cli import main

    assert main(["simulate", "--tokens", "2", "--weight-format", "awq", "--bits", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bits" in err and "awq stores 4 bits, not 3" in err
    with pytest.raises(SystemExit) as exc:  # an unknown family is not a choice of the flag
        main(["simulate", "--weight-format", "nf4"])
    assert exc.value.code == 2


# ---- run parameters reach the bytes ----

def test_expert_and_attention_formats_reach_the_scenario():
    spec = RunSpec(model="mixtral-8x7b", synthetic_tokens=4, trace=None, tokens=2, hwconfig="rtx3060-pcie3",
                   policy="offload-lowbit", bits=2, group=16, weight_format="hqq", attention_bits=4,
                   attention_group=64, attention_format="hqq-meta256", cache_experts_per_layer=0)
    sc = build_scenario(spec)
    assert (sc.sizes.lowbit == 66_404_364).all()
    assert (sc.attention_format, sc.attention_group, sc.group) == ("hqq-meta256", 64, 16)
    from simulator import costs

    att = costs.attention_work(sc.model, 1, 0.0, sc.attention_bits, sc.attention_group, 0.0, sc.attention_format)
    assert att[1] == MIXTRAL.attention_weight_bytes(4, 64, "hqq-meta256") + MIXTRAL.kv_bytes_per_token
    # attention no longer takes the experts' group: the same run with group 32 has the same attention bytes
    other = build_scenario(spec.model_copy(update={"group": 32}))
    assert other.free_hbm == sc.free_hbm


def test_the_gemm_reads_the_formats_stored_bytes():
    """The placement's GPU expert op reads the stored bytes of the format (packing waste included): at the
    same bits, HQQ 3-bit (10 codes per int32) reads more than the dense moesim 3-bit layout, and takes longer."""
    import numpy as np

    from simulator.placement import PlacementTable
    from simulator.scenario import LOWBIT

    base = {"model": "mixtral-8x7b", "synthetic_tokens": 4, "trace": None, "tokens": 2, "hwconfig": "rtx3060-pcie3",
            "policy": "offload-lowbit", "bits": 3, "group": 64, "cache_experts_per_layer": 0}
    read, seconds = {}, {}
    for family in ("moesim", "hqq"):
        table = PlacementTable(build_scenario(RunSpec(**base, weight_format=family)))
        one = np.array([1])  # expert (0, 0) with one token on the GPU; no compensation, nothing on NDP
        (op_e, _, _), (bytes_e, _, _), _ = table._ops(one * 0, one, np.array([LOWBIT]), one * 0, one * 0,
                                                      np.array([LOWBIT]))
        read[family], seconds[family] = float(bytes_e[0]), float(op_e[0])
    assert read["hqq"] == MIXTRAL.expert_bytes(3, 64, "hqq") > read["moesim"] == MIXTRAL.expert_bytes(3, 64)
    assert seconds["hqq"] > seconds["moesim"]
