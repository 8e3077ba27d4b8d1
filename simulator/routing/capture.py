"""Capture routing traces from Hugging Face transformers MoE models with forward hooks on the routers.

Supported families: Mixtral, Qwen2-MoE, Qwen3-MoE and OLMoE. In transformers 5.x each MoE block's
`gate` is a <Family>TopKRouter returning (router_logits [tokens, E], top-k weights, top-k ids); in 4.x
it is an nn.Linear returning the logits. Either way the hook takes the logits and records
softmax(logits) top-k (ids ordered by descending probability), i.e. probabilities over all experts,
not renormalised over the top-k (the same convention as the ESFT traces).

Text: sequences are separated by blank lines; each is tokenised and run alone (batch 1, no padding),
so the routing equals what decoding the text token by token would see (causal attention).
transformers is an optional extra (`pip install 'moesim[capture]'`), imported only here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from simulator.errors import UserError
from simulator.fileio import read_text
from simulator.routing.trace import Trace, TraceMeta

GATE_NAME = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:mlp|block_sparse_moe)\.gate$")


def _transformers():
    try:
        import torch
        import transformers
    except ImportError:
        raise UserError("trace capture needs transformers: pip install 'moesim[capture]'") from None
    return torch, transformers


def read_sequences(path: str | Path) -> list[str]:
    """Sequences of a text file: blocks separated by blank lines."""
    path = Path(path)
    text = read_text(path)
    seqs = [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]
    if not seqs:
        raise UserError("no text", source=path)
    return seqs


def find_routers(model) -> list[tuple[int, object]]:
    """(decoder layer index, router module) of every MoE layer, in layer order."""
    found = [(int(m.group(1)), module) for name, module in model.named_modules()
             if (m := GATE_NAME.search(name))]
    return sorted(found, key=lambda pair: pair[0])


def _router_shape(module, config) -> tuple[int, int]:
    experts = getattr(module, "num_experts", None) or getattr(module, "out_features", None)
    top_k = getattr(module, "top_k", None) or getattr(config, "num_experts_per_tok", None)
    if not experts or not top_k:
        raise UserError(f"cannot tell the experts and top-k of router {type(module).__name__}")
    return int(experts), int(top_k)


def _preset_name(config, experts: int, top_k: int, moe_layers: int) -> str:
    """The model preset with this shape, else the config's model_type."""
    from simulator.config.model import list_presets, load_model

    for name in list_presets():
        m = load_model(name)
        if (m.hidden, m.num_experts, m.top_k, m.moe_layers) == (config.hidden_size, experts, top_k, moe_layers):
            return name
    return str(getattr(config, "model_type", "unknown"))


def capture(model_path: str | Path, sequences: list[str], max_tokens: int = 2048,
            name: str | None = None) -> Trace:
    """Run `sequences` through the model at `model_path` and record each MoE layer's top-k routing."""
    torch, transformers = _transformers()
    model_path = Path(model_path)
    if not model_path.is_dir():
        raise UserError("not a model directory (expected config.json and weights)", source=model_path)
    if max_tokens < 1:
        raise UserError(f"must be at least 1, got {max_tokens}", field="max_tokens")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_path)
        model = transformers.AutoModelForCausalLM.from_pretrained(model_path)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load model or tokenizer ({str(exc).splitlines()[0]})",
                        source=model_path) from None
    model.eval()
    routers = find_routers(model)
    if not routers:
        raise UserError(f"no MoE router modules found in {type(model).__name__} (supported: Mixtral, "
                        "Qwen2-MoE, Qwen3-MoE, OLMoE)", source=model_path)
    experts, top_k = _router_shape(routers[0][1], model.config)
    limit = int(getattr(model.config, "max_position_embeddings", max_tokens) or max_tokens)

    current: list = [None] * len(routers)  # per MoE layer: (ids [n, k], probs [n, k]) of this forward

    def hook_for(slot: int):
        def hook(_module, _inputs, output):
            logits = output[0] if isinstance(output, tuple) else output        # [n, E]
            probs = torch.softmax(logits.detach().float().reshape(-1, logits.shape[-1]), dim=-1)
            values, ids = torch.topk(probs, top_k, dim=-1)                     # sorted descending
            current[slot] = (ids.cpu().numpy(), values.cpu().numpy())
        return hook

    handles = [module.register_forward_hook(hook_for(i)) for i, (_, module) in enumerate(routers)]
    ids_all, scores_all, lengths = [], [], []
    try:
        with torch.no_grad():
            for text in sequences:
                budget = min(max_tokens - sum(lengths), limit)
                if budget <= 0:
                    break
                tokens = tokenizer(text, return_tensors="pt")["input_ids"][:, :budget]   # [1, n]
                if tokens.shape[1] == 0:
                    continue
                current[:] = [None] * len(routers)
                model(input_ids=tokens)
                if any(c is None for c in current):
                    raise UserError("a router did not run; unsupported model layout", source=model_path)
                ids_all.append(np.stack([c[0] for c in current], axis=1))      # [n, L, k]
                scores_all.append(np.stack([c[1] for c in current], axis=1))   # [n, L, k]
                lengths.append(int(tokens.shape[1]))
    finally:
        for h in handles:
            h.remove()
    if not lengths:
        raise UserError("the text gives no tokens", field="text")
    meta = TraceMeta(
        name=name or f"capture-{model_path.name}",
        model=_preset_name(model.config, experts, top_k, len(routers)), num_experts=experts,
        top_k=top_k, layers=len(routers), score_kind="softmax",
        source=f"moesim trace capture of {model_path.name} ({type(model).__name__}, transformers "
               f"{transformers.__version__})",
        notes="softmax(router logits) top-k, not renormalised; decoder layers "
              + ",".join(str(i) for i, _ in routers))
    return Trace(meta=meta, expert_ids=np.concatenate(ids_all).astype(np.int16),
                 scores=np.concatenate(scores_all).astype(np.float32),
                 seq_id=np.repeat(np.arange(len(lengths), dtype=np.int32), lengths),
                 position=np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]))
