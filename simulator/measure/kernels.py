"""The harness's weights and ops: packed low-bit experts, their dequant kernel, and one function per op kind.

Byte layouts (each a flat uint8 buffer, so a copy moves exactly the bytes moesim counts for the form):
  full      an expert's matrices in 16-bit: gate [ffn, hidden], up [ffn, hidden], down [hidden, ffn]
            (3 x hidden x ffn x 2 bytes; ModelSpec.expert_bytes(16))
  lowbit    the same weights as b-bit codes, row-major over the three matrices, then one 16-bit scale and
            one 16-bit offset per group of `group` consecutive weights of a row (w = code x scale + offset,
            the asymmetric scale/zero form with the zero folded into the offset). Codes are stored in bit
            planes of width 4, 2 or 1 (b = 3: a 2-bit plane + a 1-bit plane; 8: one byte per code), each
            plane packed 8 / width codes per byte (pack_codes), so n weights take exactly n b / 8 bytes and the buffer
            is n b / 8 + (n / group) x 4 bytes: simulator.accounting.matrix_bytes for the three matrices.
  factors   per matrix V [d_in, r] then U [d_out, r] in 16-bit (r (d_in + d_out) 2 bytes each:
            ModelSpec.expert_factor_bytes)
Each stored form is a Slot: the buffer and the typed views the ops read, made once.

The dequant kernel is torch ops on the device (per plane one shift per code offset over 32-bit words and
a mask, planes combined, codes converted, a multiply and an add with the group scales and offsets) into a scratch buffer reused by every expert: a real
unfused dequantization whose cost `moesim profile` measures per code width.

Ops (each the function the decode loop calls and `moesim profile` times in isolation): attention (GQA with
a KV cache), router, expert (dequant when low-bit, gate/up/down GEMMs, SiLU, weighted scatter-add of the
output), compensation (x V then (x V) U^T per matrix for the restored tokens), shared expert and LM head.
Every op issues the same torch calls at any batch, so its fixed cost does not depend on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from simulator.errors import UserError
from simulator.precision import FULL_PRECISION_BITS

DT = torch.bfloat16
MAX_LOWBIT = 8  # widths the dequant kernel unpacks (1..8); 16 = full precision


def planes(bits: int) -> list[int]:
    """Bit-plane widths a `bits`-wide code is stored in (lowest bits first)."""
    if bits == 8:
        return [8]
    if not 1 <= bits < 8:
        raise UserError(f"the harness stores 1-8 bit codes or {FULL_PRECISION_BITS}-bit weights, not {bits}",
                        field="bits")
    return [w for w in (4, 2, 1) if bits & w][::-1]


def lowbit_layout(n: int, bits: int, group: int) -> dict:
    """Byte offsets of an n-weight low-bit buffer: 'planes' [(width, start, stop)], 'scale', 'offset', 'total'."""
    if n % 32 or n % group:
        raise UserError(f"{n} weights cannot be packed in groups of {group} (need a multiple of 32 and of the "
                        "group)", field="group")
    out, at = [], 0
    for w in planes(bits):
        out.append((w, at, at + n * w // 8))
        at += n * w // 8
    groups = n // group
    return {"planes": out, "scale": (at, at + 2 * groups), "offset": (at + 2 * groups, at + 4 * groups),
            "total": at + 4 * groups}


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes [n] (< 2^bits) -> their packed bit planes, concatenated (n bits / 8 bytes). A plane of
    width w is m = n w / 8 bytes; byte i holds the plane's bits of codes i, m + i, 2 m + i, ... at bit
    offsets 0, w, 2 w, ... (so the kernel unpacks whole 32-bit words with one shift per offset)."""
    parts, shift = [], 0
    for w in planes(bits):
        plane = ((codes >> shift) & ((1 << w) - 1)).to(torch.int32).view(8 // w, -1)     # [per, m]
        offsets = (torch.arange(8 // w, device=codes.device, dtype=torch.int32) * w).view(-1, 1)
        parts.append((plane << offsets).sum(dim=0).to(torch.uint8))
        shift += w
    return torch.cat(parts)


@dataclass
class Shape:
    """The harness model's dimensions (from a ModelSpec: simulator.measure.shape)."""

    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    shared_ffn: int  # shared experts' total FFN width (0: none)

    @property
    def expert_weights(self) -> int:
        return 3 * self.hidden * self.ffn


class Slot:
    """One stored form of one expert in a uint8 buffer, with the typed views the ops read."""

    def __init__(self, buf: torch.Tensor, form: str, shape: Shape, bits: int = FULL_PRECISION_BITS,
                 group: int = 128, rank: int = 0):
        self.buf, self.form, self.nbytes = buf, form, buf.numel()
        h, f = shape.hidden, shape.ffn
        if form == "full":
            w = buf[: 6 * h * f].view(DT)
            self.w = (w[: f * h].view(f, h).t(), w[f * h: 2 * f * h].view(f, h).t(), w[2 * f * h:].view(h, f).t())
        elif form == "lowbit":
            lay = lowbit_layout(shape.expert_weights, bits, group)
            self.planes = [(w, buf[a:b]) for w, a, b in lay["planes"]]
            self.scale = buf[slice(*lay["scale"])].view(DT).view(-1, 1)
            self.offset = buf[slice(*lay["offset"])].view(DT).view(-1, 1)
            self.group = group
        elif form == "factors":
            views, at = [], 0
            for d_in, d_out in ((h, f), (h, f), (f, h)):
                v = buf[at: at + 2 * d_in * rank].view(DT).view(d_in, rank)
                at += 2 * d_in * rank
                u = buf[at: at + 2 * d_out * rank].view(DT).view(d_out, rank).t()
                at += 2 * d_out * rank
                views.append((v, u))
            self.factors = views
        else:
            raise ValueError(f"unknown form {form!r}")


def form_bytes(form: str, shape: Shape, bits: int, group: int, rank: int) -> int:
    """Bytes of the harness's layout of one expert's `form`."""
    h, f = shape.hidden, shape.ffn
    if form == "full":
        return 6 * h * f
    if form == "lowbit":
        return lowbit_layout(shape.expert_weights, bits, group)["total"]
    return 2 * rank * 3 * (h + f)


def fill_random(buf: torch.Tensor, form: str, shape: Shape, bits: int, group: int, rank: int,
                gen: torch.Generator) -> None:
    """Random contents of the right kind (finite 16-bit values: no NaN or subnormal slows a kernel down)."""
    if form == "lowbit":
        lay = lowbit_layout(shape.expert_weights, bits, group)
        a = lay["planes"][-1][2]
        buf[:a].copy_(torch.randint(0, 256, (a,), generator=gen, dtype=torch.uint8))
        groups = (lay["scale"][1] - lay["scale"][0]) // 2
        scale = (0.01 + 0.01 * torch.rand(groups, generator=gen)).to(DT)
        buf[slice(*lay["scale"])].view(DT).copy_(scale)
        buf[slice(*lay["offset"])].view(DT).copy_(-scale * (1 << (bits - 1)))
    else:
        vals = (torch.randn(buf.numel() // 2, generator=gen) * 0.02).to(DT)
        buf.view(DT).copy_(vals)


class Scratch:
    """Work buffers of the dequant kernel, sized for one expert, reused by every call."""

    def __init__(self, shape: Shape, device: torch.device):
        n = shape.expert_weights
        self.n = n
        self.u8 = [torch.empty(n, dtype=torch.uint8, device=device) for _ in range(3)]
        self.q = torch.empty(n, dtype=DT, device=device)
        self.w = torch.empty(n, dtype=DT, device=device)
        h, f = shape.hidden, shape.ffn
        w = self.w
        self.views = (w[: f * h].view(f, h).t(), w[f * h: 2 * f * h].view(f, h).t(), w[2 * f * h:].view(h, f).t())


def dequant(slot: Slot, s: Scratch):
    """The low-bit slot's three matrices in 16-bit (views of the scratch buffer): per bit plane one shift
    per code offset over 32-bit words and one mask, planes combined, codes converted, then x scale +
    offset per group."""
    q, shift = None, 0
    for i, (w, packed) in enumerate(slot.planes):
        if w == 8:
            q = packed
            break
        plane = s.u8[i]
        words, out = packed.view(torch.int32), plane.view(torch.int32).view(8 // w, -1)
        for j in range(8 // w):
            torch.bitwise_right_shift(words, w * j, out=out[j])
        plane.bitwise_and_((1 << w) - 1)
        if q is None:
            q = plane
        else:
            q.bitwise_or_(plane.bitwise_left_shift_(shift))
        shift += w
    s.q.copy_(q)
    g = slot.group
    torch.mul(s.q.view(-1, g), slot.scale, out=s.w.view(-1, g)).add_(slot.offset)
    return s.views


def weights(slot: Slot, s: Scratch):
    return slot.w if slot.form == "full" else dequant(slot, s)


# ---- the ops: each takes the stream clock `mark` callable and attributes its own time ----

def expert(x: torch.Tensor, out: torch.Tensor, idx: torch.Tensor, wts: torch.Tensor, slot: Slot, s: Scratch,
           comp: Slot | None, ridx: torch.Tensor | None, mark) -> None:
    """out[idx] += wts * expert(x[idx]); with `comp` (factors), the tokens at positions `ridx` of idx also
    get the low-rank terms (x V) U^T on each matrix. Time goes to expert_gpu and compensation."""
    wg, wu, wd = weights(slot, s)
    xe = x.index_select(0, idx)
    g = torch.mm(xe, wg)
    u = torch.mm(xe, wu)
    if comp is not None:
        mark("expert_gpu")
        (vg, ug), (vu, uu), _ = comp.factors
        xr = xe.index_select(0, ridx)
        g.index_add_(0, ridx, torch.mm(torch.mm(xr, vg), ug))
        u.index_add_(0, ridx, torch.mm(torch.mm(xr, vu), uu))
        mark("compensation")
    h = F.silu(g).mul_(u)
    y = torch.mm(h, wd)
    if comp is not None:
        mark("expert_gpu")
        vd, ud = comp.factors[2]
        y.index_add_(0, ridx, torch.mm(torch.mm(h.index_select(0, ridx), vd), ud))
        mark("compensation")
    out.index_add_(0, idx, y.mul_(wts))
    mark("expert_gpu")


class Layer:
    """Resident weights of one decoder layer (attention, router, shared experts) and its KV cache."""

    def __init__(self, shape: Shape, experts: int, batch: int, max_len: int, device, gen: torch.Generator):
        h, hd = shape.hidden, shape.head_dim

        def rnd(*size):
            return (torch.randn(*size, generator=gen) * 0.02).to(DT).to(device)

        self.norm1 = torch.ones(h, dtype=DT, device=device)
        self.norm2 = torch.ones(h, dtype=DT, device=device)
        self.wqkv = rnd((shape.heads + 2 * shape.kv_heads) * hd, h).t()
        self.wo = rnd(h, shape.heads * hd).t()
        self.router = rnd(experts, h).t()
        self.k = rnd(batch, shape.kv_heads, max_len, hd)
        self.v = rnd(batch, shape.kv_heads, max_len, hd)
        self.shared = None
        if shape.shared_ffn:
            f = shape.shared_ffn
            self.shared = (rnd(f, h).t(), rnd(f, h).t(), rnd(h, f).t())
        self.shape = shape


def attention(x: torch.Tensor, layer: Layer, rows: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor,
              length: int) -> None:
    """x += attention(x) for B tokens: sequence b at position pos[b] (its KV cache holds pos[b] entries
    before it); `mask` [B, 1, 1, length] marks each sequence's valid entries."""
    sh = layer.shape
    b, hd = x.shape[0], sh.head_dim
    xn = F.rms_norm(x, (sh.hidden,), layer.norm1)
    qkv = torch.mm(xn, layer.wqkv)
    q = qkv[:, : sh.heads * hd].view(b, sh.heads, 1, hd)
    layer.k[rows, :, pos] = qkv[:, sh.heads * hd: (sh.heads + sh.kv_heads) * hd].view(b, sh.kv_heads, hd)
    layer.v[rows, :, pos] = qkv[:, (sh.heads + sh.kv_heads) * hd:].view(b, sh.kv_heads, hd)
    o = F.scaled_dot_product_attention(q, layer.k[:, :, :length], layer.v[:, :, :length], attn_mask=mask,
                                       enable_gqa=True)
    x.add_(torch.mm(o.view(b, sh.heads * hd), layer.wo))


def router(x: torch.Tensor, layer: Layer, k: int) -> torch.Tensor:
    """The MoE block's normalised input; computes the router's top-k (the trace decides the routing)."""
    xn = F.rms_norm(x, (layer.shape.hidden,), layer.norm2)
    torch.topk(torch.softmax(torch.mm(xn, layer.router).float(), dim=-1), k)
    return xn


def shared_expert(xn: torch.Tensor, x: torch.Tensor, layer: Layer) -> None:
    wg, wu, wd = layer.shared
    x.add_(torch.mm(F.silu(torch.mm(xn, wg)).mul_(torch.mm(xn, wu)), wd))


def lm_head(x: torch.Tensor, norm: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return torch.argmax(torch.mm(F.rms_norm(x, (x.shape[1],), norm), head), dim=-1)
