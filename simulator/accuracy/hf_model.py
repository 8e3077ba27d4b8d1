"""A local Hugging Face causal-LM MoE checkpoint run end to end with transformers, as a pipeline source.

transformers (5.x, the optional extra) builds the model from the directory alone (local_files_only, no
network) in float32 on the CPU, with the tokenizer found in the directory (or another given directory).
Each MoE block is found by structure: a module with a router `gate` (returning router_logits, top-k
weights, top-k ids) and an `experts` module holding the routed experts fused into 3D parameters
gate_up_proj [E, 2F, hidden] (gate rows first, then up) and down_proj [E, hidden, F], as transformers 5
stores Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE and DeepSeek-V2 (checkpoints on disk keep per-expert names;
transformers fuses them on load). Shared experts (Qwen2-MoE, DeepSeek) are left as they are.

Text: every non-empty line of the file is one sequence (batch 1, no padding), tokenized with the
tokenizer's own special tokens, cut to max_position_embeddings; sequences stop once max_tokens are used.
The full-precision reference pass records, per MoE block, its input x [T, hidden] (the real activations
the per-layer metrics use), and per sequence the logits [n, vocab] and final hidden states [n, hidden];
memory is about max_tokens * vocab * 4 bytes for the reference. Log-probabilities, KL and NLL are
computed in float64 from the float32 logits (float32 log-softmax alone puts a ~1e-8 floor under KL).

End to end, each block's `experts` module is swapped for RestoredExperts: it takes the routing the
block's own router made, orders each token's top-k by combine weight (the router score order; DeepSeek's
router returns them unsorted) and runs the top-n with W_hat + U V^T and the rest with W_hat.
Metrics: KL(full || compressed) of the next-token distributions averaged over all token positions,
perplexity of both models on the text (next-token NLL over positions 1..n-1 of each sequence), and the
mean cosine of the final hidden states.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from simulator.accuracy.layer import MoELayer
from simulator.accuracy.restore import restore_routed
from simulator.errors import UserError
from simulator.fileio import read_text

LAYER_INDEX = re.compile(r"(?:^|\.)layers\.(\d+)\.")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def text_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file (one sequence each)."""
    path = Path(path)
    lines = [s for s in (ln.strip() for ln in read_text(path, field="--text").splitlines()) if s]
    if not lines:
        raise UserError("no text", source=path, field="--text")
    return lines


def _transformers():
    try:
        import transformers
    except ImportError:
        raise UserError("evaluating a checkpoint needs transformers: pip install 'moesim[capture]'") from None
    transformers.logging.set_verbosity_error()  # stderr stays for our one-line errors
    transformers.logging.disable_progress_bar()
    return transformers


def find_moe_blocks(model) -> list[tuple[int, torch.nn.Module]]:
    """(decoder layer index, MoE block) in layer order: modules with a router `gate` and fused `experts`."""
    found = []
    for name, module in model.named_modules():
        experts, gate = getattr(module, "experts", None), getattr(module, "gate", None)
        if gate is None or not isinstance(experts, torch.nn.Module):
            continue
        if not (isinstance(getattr(experts, "gate_up_proj", None), torch.Tensor)
                and experts.gate_up_proj.dim() == 3):
            raise UserError(f"unsupported expert layout in {name} ({type(experts).__name__}; expected "
                            "transformers 5 fused gate_up_proj/down_proj)")
        match = LAYER_INDEX.search(name + ".")
        found.append((int(match.group(1)) if match else len(found), module))
    return sorted(found, key=lambda pair: pair[0])


def _route_fn(gate):
    """The block's own router as MoELayer.route: ids and weights ordered by descending weight."""
    def route(x: torch.Tensor):
        with torch.no_grad():
            logits, weights, ids = gate(x)
        return _ordered(ids, weights, torch.softmax(logits.float(), dim=-1))
    return route


def _ordered(ids: torch.Tensor, weights: torch.Tensor, probs: torch.Tensor | None = None):
    order = torch.argsort(weights.float(), dim=-1, descending=True, stable=True)
    ids = ids.gather(-1, order)
    p = probs.gather(-1, ids) if probs is not None else None
    return ids, p, weights.float().gather(-1, order)


def _logp(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.double(), dim=-1)


def _kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p) per position [n] from logits [n, vocab]."""
    ref = _logp(ref_logits)
    return (ref.exp() * (ref - _logp(logits))).sum(dim=-1)


class RestoredExperts(torch.nn.Module):
    """Drop-in for a transformers experts module: forward(hidden [T, H], top_k_index, top_k_weights)."""

    def __init__(self, layer: MoELayer, lowbit: list[dict], restored: list[dict], top_n: int):
        super().__init__()
        self.layer, self.lowbit, self.restored, self.top_n = layer, lowbit, restored, top_n

    def forward(self, hidden_states, top_k_index, top_k_weights):
        ids, _, weights = _ordered(top_k_index, top_k_weights)
        y = restore_routed(self.layer, hidden_states.float(), ids, weights, self.lowbit, self.restored, self.top_n)
        return y.to(hidden_states.dtype)


class HFModelSource:
    """Pipeline source over a transformers MoE model, with reference activations and logits on a text."""

    cacheable = False

    def __init__(self, path: str | Path, text: str | Path, tokenizer: str | Path | None = None,
                 max_tokens: int = 1024):
        transformers = _transformers()
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise UserError("not a Hugging Face checkpoint directory (no config.json)", source=self.path,
                            field="--weights")
        if max_tokens < 2:
            raise UserError(f"must be at least 2, got {max_tokens}", field="--max-tokens")
        tok_dir = Path(tokenizer) if tokenizer else self.path
        if not any((tok_dir / name).is_file() for name in TOKENIZER_FILES):  # transformers 5 would build an empty one
            raise UserError(f"no tokenizer files ({', '.join(TOKENIZER_FILES)}); pass --tokenizer DIR",
                            source=tok_dir, field="--tokenizer")
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"no usable tokenizer ({str(exc).splitlines()[0][:100]}); pass --tokenizer DIR",
                            source=tok_dir, field="--tokenizer") from None
        try:
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                self.path, dtype=torch.float32, local_files_only=True).eval()
        except Exception as exc:  # noqa: BLE001 -- corrupt safetensors (SafetensorError), bad index, bad config
            lines = str(exc).strip().splitlines()
            why = lines[0][:120] if lines else exc.__class__.__name__
            raise UserError(f"cannot load the model ({exc.__class__.__name__}: {why})", source=self.path) from None
        for name, param in self.model.named_parameters():
            if not torch.isfinite(param).all():
                raise UserError(f"parameter {name}: non-finite weights (NaN or inf)", source=self.path,
                                field="--weights")
        self.blocks = find_moe_blocks(self.model)
        if not self.blocks:
            raise UserError(f"no MoE blocks found in {type(self.model).__name__}", source=self.path)
        probe = torch.linspace(-4.0, 4.0, 17)
        for _, block in self.blocks:  # MoELayer's "glu" experts compute silu(gate x) * up x
            if not torch.allclose(block.experts.act_fn(probe), torch.nn.functional.silu(probe)):
                raise UserError(f"expert activation {type(block.experts.act_fn).__name__} is not SiLU",
                                source=self.path)
        self.layers = len(self.blocks)
        self.name = self.model.config.name_or_path or self.path.name
        self.ids = self._tokenize(text_lines(text), max_tokens)
        self._layers = [self._layer(i) for i in range(self.layers)]
        self.inputs, self.ref_logits, self.ref_hidden = self._reference()
        self.ppl_full = math.exp(self._nll(self.ref_logits))

    def _tokenize(self, lines: list[str], max_tokens: int) -> list[torch.Tensor]:
        limit = int(getattr(self.model.config, "max_position_embeddings", max_tokens) or max_tokens)
        out, used = [], 0
        for line in lines:
            ids = self.tokenizer(line, return_tensors="pt")["input_ids"][0, :min(limit, max_tokens - used)]
            if len(ids):
                out.append(ids)
                used += len(ids)
            if used >= max_tokens:
                break
        if not out:
            raise UserError("the text gives no tokens", field="--text")
        return out

    def _layer(self, i: int) -> MoELayer:
        block = self.blocks[i][1]
        gu, down = block.experts.gate_up_proj.detach(), block.experts.down_proj.detach()  # [E,2F,H], [E,H,F]
        f = gu.shape[1] // 2
        experts = [{"gate": gu[e, :f], "up": gu[e, f:], "down": down[e]} for e in range(gu.shape[0])]
        return MoELayer(index=i, router=block.gate.weight.detach(), experts=experts, top_k=int(block.gate.top_k),
                        kind="glu", route_fn=_route_fn(block.gate))

    def layer(self, i: int) -> MoELayer:
        return self._layers[i]

    def activations(self, i: int) -> torch.Tensor:
        return self.inputs[i]

    def _run(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [n, vocab] and final hidden states [n, hidden] of one sequence."""
        with torch.no_grad():
            out = self.model(input_ids=ids[None], output_hidden_states=True, use_cache=False)
        return out.logits[0].float(), out.hidden_states[-1][0].float()

    def _reference(self):
        captured: list[list[torch.Tensor]] = [[] for _ in self.blocks]

        def hook_for(i: int):
            def hook(_module, args):
                captured[i].append(args[0].detach().reshape(-1, args[0].shape[-1]).float())
            return hook

        handles = [block.register_forward_pre_hook(hook_for(i)) for i, (_, block) in enumerate(self.blocks)]
        try:
            logits, hidden = zip(*[self._run(ids) for ids in self.ids])
        finally:
            for h in handles:
                h.remove()
        return [torch.cat(c) for c in captured], list(logits), list(hidden)

    def _nll(self, logits: list[torch.Tensor]) -> float:
        """Mean next-token negative log-likelihood over positions 1..n-1 of every sequence."""
        total, count = 0.0, 0
        for lg, ids in zip(logits, self.ids):
            total += float(-_logp(lg)[:-1].gather(-1, ids[1:, None]).sum())
            count += len(ids) - 1
        return total / count if count else math.nan

    def end_to_end(self, lowbit: list[list[dict]], restored: list[list[dict]], top_n: int) -> dict:
        """KL, perplexities and final-hidden cosine of the model with compressed experts vs the reference."""
        originals = [block.experts for _, block in self.blocks]
        for i, (_, block) in enumerate(self.blocks):
            block.experts = RestoredExperts(self._layers[i], lowbit[i], restored[i], top_n)
        try:
            logits, hidden = zip(*[self._run(ids) for ids in self.ids])
        finally:
            for (_, block), experts in zip(self.blocks, originals):
                block.experts = experts
        kl = torch.cat([_kl(ref, lg) for ref, lg in zip(self.ref_logits, logits)])  # [T]
        cos = torch.cat([torch.nn.functional.cosine_similarity(h, r, dim=-1) for h, r in zip(hidden, self.ref_hidden)])
        return {"kl": float(kl.mean()), "ppl": math.exp(self._nll(list(logits))), "ppl_full": self.ppl_full,
                "cosine": float(cos.mean())}

    def describe(self) -> dict:
        layer = self._layers[0]
        down = layer.experts[0]["down"]
        return {"model": self.name, "weights": str(self.path), "source": f"{self.model.config.model_type} "
                "checkpoint via transformers", "hidden": int(down.shape[0]), "ffn": int(down.shape[1]),
                "num_experts": layer.num_experts, "top_k": layer.top_k, "layers": self.layers,
                "matrices_per_expert": 3, "tokens": sum(len(i) for i in self.ids)}
