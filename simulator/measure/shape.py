"""The harness's model: a preset's shape, cut down so that it runs where it is measured, and its trace.

A HarnessShape names a preset (or model YAML) and what is changed: the MoE layers kept (the first N of the
trace's), the hidden and expert FFN widths, the shared experts, the vocabulary, and the attention (the
harness runs grouped-query attention; a preset with MLA gets a GQA stand-in of the same hidden width).
Experts per layer and top-k stay the preset's, so the preset's routing traces drive it unchanged.

`model_spec()` is the ModelSpec moesim simulates for it (written as model.yaml into the output folder, never
into the repository), `harness_trace()` the routing: the first N MoE layers of a real trace (e.g.
traces/esft-intent for deepseek-v2-lite) or of a synthetic one from simulator.routing.synthetic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from simulator.config.model import ModelSpec, load_model
from simulator.errors import UserError
from simulator.measure.kernels import Shape
from simulator.routing.trace import Trace, TraceMeta, check_trace_matches_model, load_trace


@dataclass(frozen=True)
class HarnessShape:
    model: str = "deepseek-v2-lite"
    layers: int = 4                  # MoE layers kept (the trace's first ones)
    hidden: int | None = 1024        # None: the preset's
    expert_ffn: int | None = 768
    shared_experts: int | None = 0
    vocab: int | None = 8192
    heads: int | None = 8            # GQA attention of the harness (None: the preset's when it is GQA)
    kv_heads: int | None = 2
    head_dim: int | None = 128

    def preset(self) -> ModelSpec:
        return load_model(self.model)

    def model_spec(self) -> ModelSpec:
        base = self.preset()
        if not 1 <= self.layers <= base.moe_layers:
            raise UserError(f"--layers must lie in [1, {base.moe_layers}] (the MoE layers of {base.name})",
                            field="--layers")
        att = base.attention
        gqa = att.kind == "gqa"
        heads = self.heads or (att.heads if gqa else None)
        kv = self.kv_heads or (att.kv_heads if gqa else None)
        hd = self.head_dim or (att.head_dim if gqa else None)
        if None in (heads, kv, hd):
            raise UserError(f"{base.name} has {att.kind} attention; give --heads, --kv-heads and --head-dim "
                            "for the harness's grouped-query attention", field="--heads")
        if heads % kv:
            raise UserError(f"--heads {heads} is not a multiple of --kv-heads {kv}", field="--kv-heads")
        changes = {k: v for k, v in (("hidden", self.hidden), ("expert_ffn", self.expert_ffn),
                                     ("shared_experts", self.shared_experts), ("vocab", self.vocab)) if v is not None}
        desc = ", ".join(f"{k} {v}" for k, v in changes.items())
        return ModelSpec.model_validate({
            **base.model_dump(), **changes, "name": f"{base.name}-harness",
            "source": f"moesim measure harness: {base.name} ({base.source}) with {self.layers} MoE layers, "
                      f"no dense layers, {desc or 'its widths'}, GQA attention {heads}x{hd} ({kv} kv heads)",
            "layers": self.layers, "first_dense_layers": 0, "dense_ffn": None, "weight_bytes": 2,
            "attention": {"kind": "gqa", "heads": heads, "kv_heads": kv, "head_dim": hd},
        })

    def torch_shape(self) -> Shape:
        m = self.model_spec()
        a = m.attention
        return Shape(hidden=m.hidden, ffn=m.expert_ffn, heads=a.heads, kv_heads=a.kv_heads, head_dim=a.head_dim,
                     vocab=m.vocab, shared_ffn=m.shared_experts * m.expert_ffn)

    def as_dict(self) -> dict:
        return asdict(self)


def write_model(model: ModelSpec, path: Path) -> Path:
    path.write_text("# the harness's model shape, written by moesim (simulator.measure.shape)\n"
                    + yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False))
    return path


def harness_trace(shape: HarnessShape, trace: str | None, synthetic_tokens: int | None, sequences: int,
                  seed: int = 0) -> Trace:
    """The routing of the harness: the first `shape.layers` MoE layers of `trace`, or of a synthetic trace
    of `synthetic_tokens` tokens in `sequences` sequences generated for the preset."""
    base = shape.preset()
    if synthetic_tokens is not None:
        from simulator.routing.synthetic import synthesize

        full = synthesize(base, synthetic_tokens, seed, sequences=sequences)
        source = full.meta.source
    elif trace is not None:
        full = load_trace(trace)
        check_trace_matches_model(full, base, source=trace)
        source = f"{full.meta.source} ({trace})"
    else:
        raise UserError("give --trace or --synthetic-tokens", field="--trace")
    n = shape.layers
    meta = TraceMeta(name=f"{full.meta.name}-first{n}", model=f"{base.name}-harness", num_experts=full.meta.num_experts,
                     top_k=full.meta.top_k, layers=n, score_kind=full.meta.score_kind,
                     source=source, commit=full.meta.commit, license=full.meta.license,
                     notes=f"the first {n} MoE layers of {full.meta.name}, for the moesim measure harness")
    return Trace(meta=meta, expert_ids=np.ascontiguousarray(full.expert_ids[:, :n]),
                 scores=np.ascontiguousarray(full.scores[:, :n]), seq_id=np.asarray(full.seq_id),
                 position=np.asarray(full.position))
