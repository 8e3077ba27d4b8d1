"""Read routed experts from a local Hugging Face MoE checkpoint (safetensors), one layer at a time.

Supported name layouts (by config.json `model_type`):
    mixtral      model.layers.{i}.block_sparse_moe.gate.weight          router [E, hidden]
                 model.layers.{i}.block_sparse_moe.experts.{j}.w1|w3|w2.weight   gate|up|down
    qwen2_moe, qwen3_moe, olmoe, deepseek_v2
                 model.layers.{i}.mlp.gate.weight                       router [E, hidden]
                 model.layers.{i}.mlp.experts.{j}.gate_proj|up_proj|down_proj.weight
Shared experts (Qwen2-MoE, DeepSeek) stay resident and are not compressed. A decoder layer is a MoE layer
when its router tensor exists (this covers DeepSeek's first_k_dense_replace and Qwen's mlp_only_layers).
Only the tensors of the requested layer are read (safetensors safe_open), so memory stays bounded.
Combine rules: Mixtral and Qwen3-MoE renormalize the top-k probabilities (norm_topk_prob); Qwen2-MoE,
OLMoE and DeepSeek-V2 use them as they are (times routed_scaling_factor for DeepSeek). DeepSeek-V2's
group-limited routing is approximated by plain top-k (exact for V2-Lite, whose topk_method is greedy).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from simulator.accuracy.layer import MoELayer
from simulator.errors import UserError


@dataclass(frozen=True)
class Layout:
    block: str                      # MoE block prefix, {i} = decoder layer
    matrices: dict[str, str]        # our name -> checkpoint name
    experts_key: str                # config key with the routed expert count
    renorm_default: bool            # norm_topk_prob when the config does not say


_GLU = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
LAYOUTS = {
    "mixtral": Layout("model.layers.{i}.block_sparse_moe", {"gate": "w1", "up": "w3", "down": "w2"},
                      "num_local_experts", True),
    "qwen2_moe": Layout("model.layers.{i}.mlp", _GLU, "num_experts", False),
    "qwen3_moe": Layout("model.layers.{i}.mlp", _GLU, "num_experts", True),
    "olmoe": Layout("model.layers.{i}.mlp", _GLU, "num_experts", False),
    "deepseek_v2": Layout("model.layers.{i}.mlp", _GLU, "n_routed_experts", False),
}


class HFCheckpoint:
    """A pipeline source over a checkpoint directory (config.json + *.safetensors)."""

    cacheable = False

    def __init__(self, path: Path):
        self.path = Path(path)
        cfg_path = self.path / "config.json"
        if not self.path.is_dir():
            raise UserError("not a directory (expected a Hugging Face checkpoint or 'minilm')", source=self.path,
                            field="--weights")
        try:
            self.config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError("missing config.json", source=self.path) from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError("not valid JSON", source=cfg_path) from None
        kind = self.config.get("model_type")
        if kind not in LAYOUTS:
            raise UserError(f"unsupported model_type {kind!r}; supported: {', '.join(sorted(LAYOUTS))}",
                            source=cfg_path, field="model_type")
        self.kind, self.layout = kind, LAYOUTS[kind]
        self.name = self.config.get("_name_or_path") or self.path.name
        self.files = self._tensor_files()
        router = re.compile(re.escape(self.layout.block).replace(r"\{i\}", r"(\d+)") + r"\.gate\.weight$")
        self.decoder_layers = sorted(int(m.group(1)) for k in self.files if (m := router.match(k)))
        if not self.decoder_layers:
            raise UserError(f"no MoE router tensors named like {self.layout.block}.gate.weight",
                            source=self.path)
        self.layers = len(self.decoder_layers)
        for key in (self.layout.experts_key, "num_experts_per_tok"):
            if not isinstance(self.config.get(key), int):
                raise UserError("missing or not an integer", source=cfg_path, field=key)

    def _tensor_files(self) -> dict[str, Path]:
        """Tensor name -> file, from model.safetensors.index.json or by reading each file's header."""
        from safetensors import safe_open

        index = self.path / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            return {k: self.path / v for k, v in weight_map.items()}
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise UserError("no *.safetensors files", source=self.path)
        out = {}
        for f in files:
            with safe_open(f, "pt") as h:
                out.update(dict.fromkeys(h.keys(), f))
        return out

    def _read(self, names: list[str]) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        missing = [n for n in names if n not in self.files]
        if missing:
            raise UserError(f"tensor {missing[0]} not found", source=self.path)
        out = {}
        for f in sorted({self.files[n] for n in names}):
            with safe_open(f, "pt") as h:
                for n in names:
                    if self.files[n] == f:
                        out[n] = h.get_tensor(n).float()
        return out

    def layer(self, i: int) -> MoELayer:
        """MoE layer i (the i-th decoder layer that has routed experts), read from disk."""
        block = self.layout.block.format(i=self.decoder_layers[i])
        n = self.config[self.layout.experts_key]
        names = [f"{block}.gate.weight"] + [f"{block}.experts.{j}.{m}.weight"
                                            for j in range(n) for m in self.layout.matrices.values()]
        t = self._read(names)
        experts = [{ours: t[f"{block}.experts.{j}.{theirs}.weight"] for ours, theirs in self.layout.matrices.items()}
                   for j in range(n)]
        renorm = self.config.get("norm_topk_prob", self.layout.renorm_default)
        return MoELayer(index=i, router=t[f"{block}.gate.weight"], experts=experts,
                        top_k=self.config["num_experts_per_tok"], kind="glu",
                        combine="softmax_renorm" if renorm else "softmax",
                        scale=float(self.config.get("routed_scaling_factor", 1.0)))

    def activations(self, i: int) -> torch.Tensor | None:
        """Reference activations need the whole model run (see hf_model); none from the weights alone."""
        return None

    def describe(self) -> dict:
        layer = self.layer(0)
        down = layer.experts[0]["down"]
        return {"model": self.name, "weights": str(self.path), "source": f"{self.kind} checkpoint",
                "hidden": int(down.shape[0]), "ffn": int(down.shape[1]), "num_experts": layer.num_experts,
                "top_k": layer.top_k, "layers": self.layers, "matrices_per_expert": 3}
