"""MoE model description and every figure derived from it (parameters, bytes, FLOPs, KV cache).

Derived figures live here and nowhere else, so the simulator and the accuracy model agree. Shapes:
an expert is gate and up [hidden -> expert_ffn] and down [expert_ffn -> hidden]; attention is either
grouped-query (q/k/v/o projections) or DeepSeek multi-head latent attention (MLA).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.accounting import expert_factor_bytes, expert_lowbit_bytes, expert_shapes, matrix_bytes
from simulator.formats import DEFAULT_FORMAT, WeightFormat
from simulator.precision import FULL_PRECISION_BITS, is_full_precision

PRESET_DIR = Path(__file__).resolve().parent / "presets"


class AttentionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # strict: `hidden: true` is not 1

    kind: Literal["gqa", "mla"]
    heads: int = Field(ge=1)
    kv_heads: int | None = Field(default=None, ge=1, description="gqa only")
    head_dim: int | None = Field(default=None, ge=1, description="gqa only")
    kv_lora_rank: int | None = Field(default=None, ge=1, description="mla only")
    q_lora_rank: int | None = Field(default=None, ge=1, description="mla only; null = full q projection")
    qk_nope_head_dim: int | None = Field(default=None, ge=1, description="mla only")
    qk_rope_head_dim: int | None = Field(default=None, ge=1, description="mla only")
    v_head_dim: int | None = Field(default=None, ge=1, description="mla only")

    @model_validator(mode="after")
    def _fields_for_kind(self) -> AttentionSpec:
        need = ("kv_heads", "head_dim") if self.kind == "gqa" else (
            "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"attention kind {self.kind!r} needs {', '.join(missing)}")
        return self

    def params(self, hidden: int) -> int:
        """Weight parameters of one attention layer."""
        return sum(i * o for i, o in self.shapes(hidden))

    def shapes(self, hidden: int) -> list[tuple[int, int]]:
        """(d_in, d_out) of each projection of one attention layer (what a weight format quantizes)."""
        if self.kind == "gqa":
            q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
            return [(hidden, q), (hidden, kv), (hidden, kv), (q, hidden)]
        qk_head = self.qk_nope_head_dim + self.qk_rope_head_dim
        if self.q_lora_rank:
            q = [(hidden, self.q_lora_rank), (self.q_lora_rank, self.heads * qk_head)]
        else:
            q = [(hidden, self.heads * qk_head)]
        kv_a = (hidden, self.kv_lora_rank + self.qk_rope_head_dim)
        kv_b = (self.kv_lora_rank, self.heads * (self.qk_nope_head_dim + self.v_head_dim))
        return [*q, kv_a, kv_b, (self.heads * self.v_head_dim, hidden)]

    def kv_values_per_token(self) -> int:
        """Cached values per token per layer (K and V for gqa; the compressed latent + rope key for mla)."""
        if self.kind == "gqa":
            return 2 * self.kv_heads * self.head_dim
        return self.kv_lora_rank + self.qk_rope_head_dim

    def flops_per_token(self, hidden: int, context: int) -> float:
        """FLOPs of one decode token in one layer: projections (2 per weight) plus score and value
        products over `context` cached tokens (2 * heads * context * (qk_dim + v_dim))."""
        if self.kind == "gqa":
            qk, v = self.head_dim, self.head_dim
        else:  # MLA with absorbed projections attends in the latent space
            qk, v = self.kv_lora_rank + self.qk_rope_head_dim, self.kv_lora_rank
        return 2.0 * self.params(hidden) + 2.0 * self.heads * context * (qk + v)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str
    source: str = Field(default="", description="where the numbers come from")
    layers: int = Field(ge=1, description="all decoder layers, dense ones included")
    first_dense_layers: int = Field(default=0, ge=0, description="leading layers with a dense FFN")
    dense_ffn: int | None = Field(default=None, ge=1, description="FFN width of the dense layers")
    hidden: int = Field(ge=1)
    expert_ffn: int = Field(ge=1)
    gated_experts: bool = Field(default=True, description="gate+up+down (SwiGLU); false: up+down (GELU MLP)")
    num_experts: int = Field(ge=1, description="routed experts per MoE layer")
    top_k: int = Field(ge=1)
    shared_experts: int = Field(default=0, ge=0, description="always-on experts per MoE layer")
    vocab: int = Field(ge=1)
    weight_bytes: int = Field(default=2, ge=1, description="bytes per full-precision weight (bf16/fp16)")
    attention: AttentionSpec

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) exceeds num_experts ({self.num_experts})")
        if self.first_dense_layers >= self.layers:
            raise ValueError("first_dense_layers must leave at least one MoE layer")
        if self.first_dense_layers and self.dense_ffn is None:
            raise ValueError("dense_ffn is required when first_dense_layers > 0")
        return self

    # ---- derived figures (the only place they are computed) ----
    @property
    def moe_layers(self) -> int:
        return self.layers - self.first_dense_layers

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert: (gate,) up and down projections."""
        return sum(i * o for i, o in self.expert_shapes)

    @property
    def expert_shapes(self) -> list[tuple[int, int]]:
        """(d_in, d_out) of each matrix of a routed expert."""
        return expert_shapes(self.hidden, self.expert_ffn, self.gated_experts)

    def expert_bytes(self, bits: float = FULL_PRECISION_BITS, group: int = 128,
                     fmt: str | WeightFormat = DEFAULT_FORMAT) -> float:
        """Bytes of one routed expert stored at `bits` in weight format `fmt` (simulator.formats; full
        precision at FULL_PRECISION_BITS)."""
        return expert_lowbit_bytes(self.hidden, self.expert_ffn, bits, group, fmt, gated=self.gated_experts)

    def expert_factor_bytes(self, rank: int) -> float:
        """Bytes of one expert's rank-r compensator (fp16 factors for each of its matrices)."""
        return expert_factor_bytes(self.hidden, self.expert_ffn, rank, gated=self.gated_experts)

    def expert_flops_per_token(self) -> float:
        """FLOPs of one token through one expert (2 per weight)."""
        return 2.0 * self.expert_params

    def factor_flops_per_token(self, rank: int) -> float:
        """FLOPs of one token through one expert's compensator: x V then (x V) U^T for each matrix."""
        return 2.0 * rank * sum(i + o for i, o in self.expert_shapes)

    @property
    def router_params(self) -> int:
        return self.hidden * self.num_experts

    @property
    def shared_params(self) -> int:
        """Parameters of one MoE layer's shared experts."""
        return self.shared_experts * self.expert_params

    @property
    def dense_ffn_params(self) -> int:
        return 3 * self.hidden * (self.dense_ffn or 0)

    @cached_property
    def attention_params(self) -> int:
        """Parameters of one attention layer."""
        return self.attention.params(self.hidden)

    @property
    def attention_bytes(self) -> float:
        return self.attention_params * self.weight_bytes

    @cached_property
    def attention_shapes(self) -> list[tuple[int, int]]:
        """(d_in, d_out) of each projection of one attention layer."""
        return self.attention.shapes(self.hidden)

    def attention_weight_bytes(self, bits: float = FULL_PRECISION_BITS, group: int = 128,
                               fmt: str | WeightFormat = DEFAULT_FORMAT) -> float:
        """Bytes of one attention layer's weights stored at `bits` in weight format `fmt`, projection by
        projection (groups along each one's d_in); full precision at FULL_PRECISION_BITS."""
        if is_full_precision(bits):
            return self.attention_bytes
        return float(sum(matrix_bytes(i, o, bits, group, fmt) for i, o in self.attention_shapes))

    def resident_bytes(self, attention_bits: float = FULL_PRECISION_BITS, group: int = 128,
                       fmt: str | WeightFormat = DEFAULT_FORMAT) -> float:
        """HBM bytes of the always-resident weights, with attention stored at `attention_bits` in `fmt` with
        its own `group`."""
        other = self.resident_params - self.layers * self.attention_params
        return other * self.weight_bytes + self.layers * self.attention_weight_bytes(attention_bits, group, fmt)

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token adds in one layer."""
        return self.attention.kv_values_per_token() * self.weight_bytes

    @property
    def routed_expert_params_total(self) -> int:
        return self.moe_layers * self.num_experts * self.expert_params

    @property
    def resident_params(self) -> int:
        """Parameters that stay on the GPU in every policy: attention, routers, shared experts, dense FFNs,
        embeddings and LM head."""
        return (self.layers * self.attention_params
                + self.moe_layers * (self.router_params + self.shared_params)
                + self.first_dense_layers * self.dense_ffn_params
                + 2 * self.vocab * self.hidden)

    @property
    def total_params(self) -> int:
        return self.resident_params + self.routed_expert_params_total

    def is_moe_layer(self, layer: int) -> bool:
        return layer >= self.first_dense_layers


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_model(name_or_path: str | Path) -> ModelSpec:
    """Load a model from a preset name (e.g. 'mixtral-8x7b') or a YAML file."""
    from simulator.config.loading import load_named_yaml

    return load_named_yaml(name_or_path, PRESET_DIR, "model", ModelSpec)
