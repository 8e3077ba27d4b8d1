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

import contextlib
import json
import math
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


_INT_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:160]


@contextlib.contextmanager
def _open(file: Path):
    """safetensors.safe_open with a missing, truncated or corrupt file as a one-line UserError."""
    from safetensors import safe_open

    try:
        handle = safe_open(file, "pt")
    except FileNotFoundError:
        raise UserError("file not found", source=file) from None
    except Exception as exc:  # noqa: BLE001 -- SafetensorError (header too small, incomplete, ...), OSError
        raise UserError(f"not a readable safetensors file ({_first_line(exc)})", source=file) from None
    with handle as h:
        yield h


class HFCheckpoint:
    """A pipeline source over a checkpoint directory (config.json + *.safetensors)."""

    cacheable = False

    def __init__(self, path: Path):
        self.path = Path(path)
        self.index: Path | None = None  # model.safetensors.index.json when the checkpoint has one
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
        except OSError as exc:
            raise UserError(f"cannot read ({exc.strerror or exc.__class__.__name__})", source=cfg_path) from None
        if not isinstance(self.config, dict):
            raise UserError("expected a JSON object", source=cfg_path)
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
            value = self.config.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"expected a positive integer, got {value!r}", source=cfg_path, field=key)
        if self.config["num_experts_per_tok"] > self.config[self.layout.experts_key]:
            raise UserError(f"top-k {self.config['num_experts_per_tok']} exceeds the "
                            f"{self.config[self.layout.experts_key]} experts ({self.layout.experts_key})",
                            source=cfg_path, field="num_experts_per_tok")
        scale = self.config.get("routed_scaling_factor", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise UserError(f"expected a positive number, got {scale!r}", source=cfg_path,
                            field="routed_scaling_factor")

    def _tensor_files(self) -> dict[str, Path]:
        """Tensor name -> file, from model.safetensors.index.json or by reading each file's header."""
        index = self.path / "model.safetensors.index.json"
        if index.exists():
            self.index = index
            return self._index(index)
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise UserError("no *.safetensors files", source=self.path)
        out = {}
        for f in files:
            with _open(f) as h:
                out.update(dict.fromkeys(h.keys(), f))
        return out

    def _index(self, index: Path) -> dict[str, Path]:
        """The weight_map of model.safetensors.index.json: tensor name -> a shard file in this directory."""
        try:
            raw = json.loads(index.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"not valid JSON ({exc.__class__.__name__})", source=index) from None
        except OSError as exc:
            raise UserError(f"cannot read ({exc.strerror or exc.__class__.__name__})", source=index) from None
        weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise UserError("expected a non-empty object of tensor name -> shard file", source=index,
                            field="weight_map")
        root, checked = self.path.resolve(), set()
        for name, shard in weight_map.items():
            if shard in checked:
                continue
            if not isinstance(shard, str) or not shard.endswith(".safetensors"):
                raise UserError(f"tensor {name!r}: expected a .safetensors file name, got {shard!r}",
                                source=index, field="weight_map")
            file = self.path / shard
            if root not in file.resolve().parents:
                raise UserError(f"tensor {name!r}: shard {shard!r} is outside the checkpoint directory",
                                source=index, field="weight_map")
            if not file.is_file():
                raise UserError(f"tensor {name!r}: shard {shard!r} not found", source=index, field="weight_map")
            checked.add(shard)
        return {name: self.path / shard for name, shard in weight_map.items()}

    def _read(self, names: list[str]) -> dict[str, torch.Tensor]:
        missing = [n for n in names if n not in self.files]
        if missing:
            if self.index is not None:
                raise UserError(f"tensor {missing[0]} not listed (incomplete index)", source=self.index,
                                field="weight_map")
            raise UserError(f"tensor {missing[0]} not found in any *.safetensors file", source=self.path)
        out = {}
        for f in sorted({self.files[n] for n in names}):
            with _open(f) as h:
                keys = set(h.keys())
                for n in names:
                    if self.files[n] != f:
                        continue
                    if n not in keys:  # the index lists it in this shard, the shard does not have it
                        raise UserError(f"tensor {n} not in this shard (model.safetensors.index.json says it is)",
                                        source=f)
                    try:
                        t = h.get_tensor(n)
                    except Exception as exc:  # noqa: BLE001 -- safetensors raises its own SafetensorError
                        raise UserError(f"tensor {n}: cannot read ({_first_line(exc)})", source=f) from None
                    if not (t.is_floating_point() or t.dtype in _INT_DTYPES) or t.dim() != 2:
                        raise UserError(f"tensor {n}: expected a 2-D float matrix, got {t.dtype} of shape "
                                        f"{tuple(t.shape)}", source=f)
                    t = t.float()
                    if not torch.isfinite(t).all():
                        raise UserError(f"tensor {n}: non-finite weights (NaN or inf)", source=f)
                    out[n] = t
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
        self._check_shapes(block, t[f"{block}.gate.weight"], experts, n)
        renorm = self.config.get("norm_topk_prob", self.layout.renorm_default)
        return MoELayer(index=i, router=t[f"{block}.gate.weight"], experts=experts,
                        top_k=self.config["num_experts_per_tok"], kind="glu",
                        combine="softmax_renorm" if renorm else "softmax",
                        scale=float(self.config.get("routed_scaling_factor", 1.0)))

    def _check_shapes(self, block: str, router: torch.Tensor, experts: list[dict], n: int) -> None:
        """gate, up: [ffn, hidden]; down: [hidden, ffn]; router: [experts, hidden]; the same for every expert."""
        gate = experts[0]["gate"]
        ffn, hidden = gate.shape
        want = {"gate": (ffn, hidden), "up": (ffn, hidden), "down": (hidden, ffn)}
        for j, expert in enumerate(experts):
            for ours, theirs in self.layout.matrices.items():
                if tuple(expert[ours].shape) != want[ours]:
                    name = f"{block}.experts.{j}.{theirs}.weight"
                    raise UserError(f"tensor {name}: shape {tuple(expert[ours].shape)}, expected {want[ours]} "
                                    f"like expert 0", source=self.files[name])
        if tuple(router.shape) != (n, hidden):
            raise UserError(f"tensor {block}.gate.weight: shape {tuple(router.shape)}, expected ({n}, {hidden}) "
                            f"({self.layout.experts_key} x hidden)", source=self.files[f"{block}.gate.weight"])

    def activations(self, i: int) -> torch.Tensor | None:
        """Reference activations need the whole model run (see hf_model); none from the weights alone."""
        return None

    def describe(self) -> dict:
        layer = self.layer(0)
        down = layer.experts[0]["down"]
        return {"model": self.name, "weights": str(self.path), "source": f"{self.kind} checkpoint",
                "hidden": int(down.shape[0]), "ffn": int(down.shape[1]), "num_experts": layer.num_experts,
                "top_k": layer.top_k, "layers": self.layers, "matrices_per_expert": 3}
