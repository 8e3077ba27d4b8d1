"""Trace capture on tiny randomly initialised MoE models built from transformers configs (no download)."""

import numpy as np
import pytest
import torch
import transformers  # the optional extra; part of .[dev], so CI has it
from hf_tiny import save_word_tokenizer

from simulator.cli import main
from simulator.routing.capture import capture, find_routers
from simulator.routing.trace import load_trace

TEXT = "the cat sat on the mat\nand the dog sat too\n\nthe mat was red\n\n\nred red cat\n"
WORDS = sorted(set(TEXT.split()))
COMMON = {"vocab_size": len(WORDS) + 2, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}
FAMILIES = {  # name -> (config class, extra fields, experts, k)
    "mixtral": ("MixtralConfig", {"num_local_experts": 8, "num_experts_per_tok": 2}, 8, 2),
    "qwen2_moe": ("Qwen2MoeConfig", {"num_experts": 6, "num_experts_per_tok": 3, "moe_intermediate_size": 16,
                                         "shared_expert_intermediate_size": 16}, 6, 3),
    "qwen3_moe": ("Qwen3MoeConfig", {"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                                         "head_dim": 8}, 8, 2),
    "olmoe": ("OlmoeConfig", {"num_experts": 4, "num_experts_per_tok": 2}, 4, 2),
}


def tiny_model(tmp_path, family: str):
    cls, extra, _, _ = FAMILIES[family]
    torch.manual_seed(0)
    config = getattr(transformers, cls)(**COMMON, **extra)
    model = transformers.AutoModelForCausalLM.from_config(config)
    path = tmp_path / family
    model.save_pretrained(path)
    save_word_tokenizer(path, WORDS)
    return path


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_capture_cli_records_every_moe_layer(tmp_path, family):
    path = tiny_model(tmp_path, family)
    (tmp_path / "text.txt").write_text(TEXT)
    out = tmp_path / "trace"
    assert main(["trace", "capture", "--model-path", str(path), "--text", str(tmp_path / "text.txt"),
                 "--out", str(out)]) == 0
    t = load_trace(out)                       # validation: ids in range, no duplicates, sorted scores
    _, _, experts, k = FAMILIES[family]
    assert t.expert_ids.shape == (18, 2, k)   # 11 + 4 + 3 words, in 3 sequences
    assert (t.meta.num_experts, t.meta.top_k, t.meta.layers) == (experts, k, 2)
    assert t.seq_id.tolist() == [0] * 11 + [1] * 4 + [2] * 3
    assert t.position[:11].tolist() == list(range(11))
    assert (t.scores > 0).all() and (t.scores.sum(-1) <= 1 + 1e-5).all()


def test_capture_matches_the_router_logits(tmp_path):
    path = tiny_model(tmp_path, "mixtral")
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    tokens = transformers.AutoTokenizer.from_pretrained(path)("the cat sat", return_tensors="pt")["input_ids"]
    out = model(input_ids=tokens, output_router_logits=True)
    probs = torch.softmax(out.router_logits[1].float(), dim=-1)             # [3, 8] of MoE layer 1
    values, ids = torch.topk(probs, 2, dim=-1)
    t = capture(path, ["the cat sat"], max_tokens=2)                        # cap: first 2 tokens only
    assert t.tokens == 2 and [i for i, _ in find_routers(model)] == [0, 1]
    assert t.expert_ids[:, 1].tolist() == ids[:2].tolist()
    np.testing.assert_allclose(t.scores[:, 1], values[:2].detach().numpy(), rtol=1e-5)


def test_capture_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n\n")
    path = tiny_model(tmp_path, "olmoe")
    assert main(["trace", "capture", "--model-path", str(path), "--text", str(tmp_path / "empty.txt"),
                 "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().endswith("empty.txt: no text")
    (tmp_path / "t.txt").write_text("cat")
    assert main(["trace", "capture", "--model-path", str(tmp_path / "nope"), "--text",
                 str(tmp_path / "t.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
