"""Weight formats: the byte layout a quantized matrix is really stored in.

A format is a family (how an implementation lays out its tensors) taken at a code width `bits` and a
group size `group`. For a matrix W [d_out, d_in] (groups run along d_in) it says
  codes     `bits` per code, packed into storage words of `word_bits`: either `codes_per_word` whole
            codes per word with the rest of the word unused (10 three-bit codes per int32 waste 2 bits),
            or as a dense bitstream that runs across word boundaries (`stream`); each packing run
            (the whole tensor, one group, one output row along d_in, one input column along d_out) is
            padded to a whole word at its end
  scales    one per group: fp16 (16 bits), or 8 bits with a second level of fp16 (scale, zero) per
            `scale_meta_group` 8-bit scales (PER_TENSOR: one pair for the whole scale tensor)
  zeros     one per group: none (symmetric), fp16, 8 bits (+ their own fp16 meta), or `zero_bits` packed
            `zero_word_bits` per word along d_out (GPTQ/AWQ qzeros: 4-bit zeros 8 per int32)
  index     per input column (GPTQ's g_idx, an int32 group index per column)
and WeightFormat.stored_bytes(d_in, d_out) is the exact count of what the implementation stores, partial
words and groups rounded up. A shape the implementation cannot pack (AutoGPTQ needs d_in and d_out in
multiples of 32, AWQ a group that divides d_in, HQQ a group that divides the tensor) and a width or group
the family does not take raise FormatError naming the field; simulator.simulate turns it into a one-line
UserError naming the RunSpec field (--bits, --group, --weight-format, or their attention_ twins).

At bits >= FULL_PRECISION_BITS every family stores the full-precision originals (2 bytes per weight, no
scales), as every policy's "full" form does.

Families (FAMILIES; each entry's `source` says where the layout is read from):
  moesim       what simulator.accuracy.quantize stores: codes as one little-endian bitstream over the whole
               matrix (pack_codes: ceil(d_in d_out b / 8) bytes), an fp16 scale and an fp16 zero per (output
               row, group of d_in); any width 1-15, any group
  hqq          HQQ (mobiusml/hqq core/quantize.py, axis=0) with quant_scale and quant_zero, as
               dvmazur/mixtral-offloading configures its experts (src/build_model.py, notebooks/demo.ipynb:
               BaseQuantizeConfig(nbits=2, group_size=16, quant_zero=True, quant_scale=True)): groups over the
               flattened matrix, codes packed per group (8/uint8 at 1 bit, 4/uint8 at 2, 2/uint8 at 4,
               10/int32 at 3 with the group padded to a multiple of 10, 1/uint8 at 8); uint8 scale and zero per
               group; fp16 (scale, zero) per 128 scales (scale_quant_params group_size 128) and one fp16 pair
               for the zeros (zero_quant_params channel_wise False)
  hqq-meta256  the same with scale_quant_params group_size 256: mixtral-offloading's attention config
               (attn_config["scale_quant_params"]["group_size"] = 256, 4-bit g64)
  gptq         AutoGPTQ QuantLinear (auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py, qlinear_triton.py):
               qweight int32 [d_in / 32 * bits, d_out] (codes along d_in, 32 codes per `bits` words: 8 per
               int32 at 4 bits, a 96-bit stream per 32 codes at 3), qzeros int32 [ceil(d_in / g), d_out / 32 *
               bits], scales fp16 [ceil(d_in / g), d_out], g_idx int32 [d_in]; bits 2, 3, 4, 8; d_in and d_out
               multiples of 32
  awq          AutoAWQ WQLinear_GEMM (awq/modules/linear/gemm.py): qweight int32 [d_in, d_out / 8] (8 four-bit
               codes per int32 along d_out), qzeros int32 [d_in / g, d_out / 8], scales fp16 [d_in / g, d_out];
               4 bits only; g divides d_in, d_out a multiple of 8
  fp16, bf16   no quantization: 2 bytes per weight (bits must be 16)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from simulator.precision import FULL_PRECISION_BITS

DEFAULT_FORMAT = "moesim"
PER_TENSOR = 0   # a second-level (meta) group that spans the whole first-level tensor
META_PAIR_BYTES = 4  # an fp16 scale and an fp16 zero of one second-level group


class FormatError(ValueError):
    """A format that cannot be built or cannot pack a shape; `field` is bits, group, family or shape."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


Run = Literal["tensor", "group", "row", "column"]


@dataclass(frozen=True)
class WeightFormat:
    family: str
    bits: int                      # bits per code
    group: int                     # weights per scale/zero group (along d_in, or the flattened matrix)
    word_bits: int = 8             # storage word of the codes: 8 (uint8) or 32 (int32)
    stream: bool = True            # codes run across word boundaries; False: codes_per_word whole codes per word
    run: Run = "tensor"            # what is packed on its own and padded to a whole word at its end
    flat_groups: bool = False      # groups over the flattened matrix (numel / group, must divide) instead of
                                   # ceil(d_in / group) per output row
    scale_bits: int = 16           # 16: fp16 per group; 8: uint8 per group + fp16 meta per scale_meta_group
    scale_meta_group: int = PER_TENSOR
    zero_bits: int = 16            # 0: no zero (symmetric); 16: fp16; 8: uint8 + fp16 meta; else packed
    zero_meta_group: int = PER_TENSOR
    zero_word_bits: int = 0        # > 0: zeros packed into words of this many bits along d_out (GPTQ/AWQ qzeros)
    index_bits: int = 0            # bits per input column of a group index (GPTQ g_idx: int32)
    in_multiple: int = 1           # d_in must be a multiple of this (the implementation's packing)
    out_multiple: int = 1          # d_out likewise
    group_divides_in: bool = False  # the implementation needs d_in % group == 0
    source: str = ""

    @property
    def full_precision(self) -> bool:
        return self.bits >= FULL_PRECISION_BITS

    @property
    def codes_per_word(self) -> int:
        """Whole codes in one storage word (word packing; a stream's average is word_bits / bits)."""
        return self.word_bits // self.bits

    def check_shape(self, d_in: int, d_out: int) -> None:
        """FormatError (field 'shape') when the implementation cannot store a [d_out, d_in] matrix."""
        if self.full_precision:
            return
        if d_in % self.in_multiple or d_out % self.out_multiple:
            raise FormatError(f"{self.family} packs matrices whose d_in is a multiple of {self.in_multiple} and d_out "
                              f"of {self.out_multiple}; a {d_in} -> {d_out} matrix is not", "shape")
        if self.group_divides_in and d_in % self.group:
            raise FormatError(f"{self.family} needs a group that divides d_in; group {self.group} does not divide "
                              f"{d_in}", "group")
        if self.flat_groups and (d_in * d_out) % self.group:
            raise FormatError(f"{self.family} groups the flattened matrix; group {self.group} does not divide its "
                              f"{d_in * d_out} weights ({d_in} -> {d_out})", "group")
        groups = self.groups(d_in, d_out)
        for bits, meta, what in ((self.scale_bits, self.scale_meta_group, "scales"),
                                 (self.zero_bits, self.zero_meta_group, "zeros")):
            if bits == 8 and meta != PER_TENSOR and groups % meta:
                raise FormatError(f"{self.family} quantizes its {groups} {what} in groups of {meta}, which do not "
                                  f"divide them ({d_in} -> {d_out}, group {self.group})", "group")

    def groups(self, d_in: int, d_out: int) -> int:
        """Scale/zero groups of a [d_out, d_in] matrix."""
        if self.flat_groups:
            return math.ceil(d_in * d_out / self.group)
        return d_out * math.ceil(d_in / self.group)

    def _packed(self, count: int, length: int, bits: int, word_bits: int, stream: bool) -> int:
        """Bytes of `count` runs of `length` values of `bits` each, every run padded to a whole word."""
        if count == 0 or length == 0:
            return 0
        words = math.ceil(length * bits / word_bits) if stream else math.ceil(length / (word_bits // bits))
        return count * words * word_bits // 8

    def code_bytes(self, d_in: int, d_out: int) -> int:
        b, w, s = self.bits, self.word_bits, self.stream
        if self.run == "tensor":
            return self._packed(1, d_in * d_out, b, w, s)
        if self.run == "row":
            return self._packed(d_out, d_in, b, w, s)
        if self.run == "column":
            return self._packed(d_in, d_out, b, w, s)
        if self.flat_groups:  # run == "group"
            return self._packed(self.groups(d_in, d_out), self.group, b, w, s)
        full, rest = divmod(d_in, self.group)
        return self._packed(d_out * full, self.group, b, w, s) + self._packed(d_out, rest, b, w, s)

    def _per_group(self, bits: int, meta: int, groups: int) -> int:
        """Bytes of one value per group at `bits` (fp16, or uint8 + fp16 meta pairs)."""
        if bits == 0:
            return 0
        if bits == 8:
            return groups + META_PAIR_BYTES * (1 if meta == PER_TENSOR else math.ceil(groups / meta))
        return math.ceil(groups * bits / 8)

    def scale_bytes(self, d_in: int, d_out: int) -> int:
        return self._per_group(self.scale_bits, self.scale_meta_group, self.groups(d_in, d_out))

    def zero_bytes(self, d_in: int, d_out: int) -> int:
        if self.zero_word_bits:  # [ceil(d_in / g), d_out] zeros packed along d_out
            return self._packed(math.ceil(d_in / self.group), d_out, self.zero_bits, self.zero_word_bits, self.stream)
        return self._per_group(self.zero_bits, self.zero_meta_group, self.groups(d_in, d_out))

    def index_bytes(self, d_in: int, d_out: int) -> int:
        return d_in * self.index_bits // 8

    def tensors(self, d_in: int, d_out: int) -> dict[str, int]:
        """Bytes of each stored part of a [d_out, d_in] matrix (codes, scales, zeros, index)."""
        if self.full_precision:
            return {"weights": d_in * d_out * FULL_PRECISION_BITS // 8}
        self.check_shape(d_in, d_out)
        return {"codes": self.code_bytes(d_in, d_out), "scales": self.scale_bytes(d_in, d_out),
                "zeros": self.zero_bytes(d_in, d_out), "index": self.index_bytes(d_in, d_out)}

    def stored_bytes(self, d_in: int, d_out: int) -> int:
        """Exact bytes the implementation stores for a [d_out, d_in] matrix."""
        return sum(self.tensors(d_in, d_out).values())

    def bits_per_weight(self, d_in: int, d_out: int) -> float:
        return 8 * self.stored_bytes(d_in, d_out) / (d_in * d_out)


@dataclass(frozen=True)
class Family:
    """A named layout that takes (bits, group): `layout` are the WeightFormat fields beside them."""

    name: str
    bits: tuple[int, ...]          # widths the implementation packs (below FULL_PRECISION_BITS)
    source: str
    layout: dict
    group_multiple: int = 1        # the group must be a multiple of this
    per_bits: dict | None = None   # bits -> layout overrides (packing per width)

    def at(self, bits: int, group: int) -> WeightFormat:
        if bits >= FULL_PRECISION_BITS:
            return WeightFormat(self.name, FULL_PRECISION_BITS, 0, source=self.source)
        if bits not in self.bits:
            widths = ", ".join(map(str, self.bits)) if self.bits else f"only {FULL_PRECISION_BITS}"
            raise FormatError(f"format {self.name} stores {widths} bits, not {bits}", "bits")
        if group < 1 or group % self.group_multiple:
            raise FormatError(f"format {self.name} needs a group that is a positive multiple of {self.group_multiple}, "
                              f"got {group}", "group")
        return WeightFormat(self.name, bits, group, source=self.source,
                            **{**self.layout, **(self.per_bits or {}).get(bits, {})})


_HQQ_PACKING = {  # hqq core/bitpack.py: pack_8bit_u8, pack_4bit_u8, pack_3bit_32, pack_2bit_u8, pack_1bit_u8
    8: {"word_bits": 8}, 4: {"word_bits": 8}, 2: {"word_bits": 8}, 1: {"word_bits": 8}, 3: {"word_bits": 32},
}
_HQQ = {"stream": False, "run": "group", "flat_groups": True, "scale_bits": 8, "scale_meta_group": 128,
        "zero_bits": 8, "zero_meta_group": PER_TENSOR}

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("moesim", tuple(range(1, FULL_PRECISION_BITS)),
           "simulator/accuracy/quantize.py: pack_codes (one little-endian bitstream per matrix), fp16 scales and "
           "zeros [d_out, ceil(d_in / group)]",
           {"word_bits": 8, "stream": True, "run": "tensor"}),
    Family("hqq", (1, 2, 3, 4, 8),
           "mobiusml/hqq hqq/core/quantize.py (Quantizer.quantize axis=0, BaseQuantizeConfig quant_scale and "
           "quant_zero) as dvmazur/mixtral-offloading src/build_model.py configures its experts",
           _HQQ, group_multiple=8, per_bits=_HQQ_PACKING),
    Family("hqq-meta256", (1, 2, 3, 4, 8),
           "as hqq with scale_quant_params group_size 256: dvmazur/mixtral-offloading notebooks/demo.ipynb "
           "attn_config",
           {**_HQQ, "scale_meta_group": 256}, group_multiple=8, per_bits=_HQQ_PACKING),
    Family("gptq", (2, 3, 4, 8),
           "AutoGPTQ auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py QuantLinear buffers qweight, qzeros, "
           "scales, g_idx",
           {"word_bits": 32, "stream": True, "run": "row", "zero_word_bits": 32, "index_bits": 32,
            "in_multiple": 32, "out_multiple": 32}, per_bits={b: {"zero_bits": b} for b in (2, 3, 4, 8)}),
    Family("awq", (4,),
           "AutoAWQ awq/modules/linear/gemm.py WQLinear_GEMM buffers qweight, qzeros, scales",
           {"word_bits": 32, "stream": False, "run": "column", "zero_bits": 4, "zero_word_bits": 32, "out_multiple": 8,
            "group_divides_in": True}),
    Family("fp16", (), "no quantization: torch.float16, 2 bytes per weight", {}),
    Family("bf16", (), "no quantization: torch.bfloat16, 2 bytes per weight", {}),
)}
FAMILY_NAMES = tuple(FAMILIES)


def weight_format(family: str | WeightFormat, bits: int, group: int) -> WeightFormat:
    """The layout of `family` at `bits` and `group` (a WeightFormat is returned as is)."""
    if isinstance(family, WeightFormat):
        return family
    if family not in FAMILIES:
        raise FormatError(f"unknown weight format {family!r}; known: {', '.join(FAMILY_NAMES)}", "family")
    if int(bits) != bits:
        raise FormatError(f"bits must be a whole number of bits per code, got {bits}", "bits")
    return FAMILIES[family].at(int(bits), group)
