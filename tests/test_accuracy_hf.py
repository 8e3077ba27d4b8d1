"""End-to-end accuracy on tiny random transformers MoE checkpoints (no download): exact plumbing checks
(original weights through the swapped experts reproduce the model; full-rank factors at n = k restore it),
KL growing as bits drop, per-layer metrics, plans from the safetensors reader, one-line CLI errors."""

import json
import math

import pytest
import torch
import transformers  # the optional extra; part of .[dev], so CI has it
from accuracy_threads import one_thread  # noqa: F401
from hf_tiny import save_word_tokenizer

from simulator.accuracy.api import evaluate, open_model_source
from simulator.cli import main

TEXT = ["Four score and seven years ago our fathers brought forth on this continent a new nation",
        "Now we are engaged in a great civil war testing whether that nation can long endure",
        "We are met on a great battle field of that war",
        "It is altogether fitting and proper that we should do this",
        "The world will little note nor long remember what we say here"]
WORDS = sorted(set(" ".join(TEXT).split()))
# initializer_range 0.3: peaked next-token distributions, so KL differences are well above rounding
COMMON = {"vocab_size": len(WORDS) + 2, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
          "initializer_range": 0.3}
FAMILIES = {  # name -> (config class, extra fields, full rank = min(hidden, expert ffn), top-k, MoE layers)
    "mixtral": ("MixtralConfig", {"num_local_experts": 8, "num_experts_per_tok": 2}, 32, 2, 2),
    "qwen2_moe": ("Qwen2MoeConfig", {"num_experts": 6, "num_experts_per_tok": 3, "moe_intermediate_size": 16,
                                     "shared_expert_intermediate_size": 16}, 16, 3, 2),
    "qwen3_moe": ("Qwen3MoeConfig", {"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                                     "head_dim": 8}, 16, 2, 2),
    "olmoe": ("OlmoeConfig", {"num_experts": 4, "num_experts_per_tok": 2}, 32, 2, 2),
    # group-limited routing, a dense first layer, shared experts
    "deepseek_v2": ("DeepseekV2Config", {
        "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "n_shared_experts": 1,
        "first_k_dense_replace": 1, "num_hidden_layers": 3, "num_key_value_heads": 4, "kv_lora_rank": 16,
        "q_lora_rank": None, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 8, "n_group": 2,
        "topk_group": 1, "topk_method": "group_limited_greedy"}, 16, 2, 2),
}


def tiny_checkpoint(root, family: str, tokenizer: bool = True):
    cls, extra, *_ = FAMILIES[family]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(getattr(transformers, cls)(**{**COMMON, **extra}))
    path = root / family
    model.save_pretrained(path)
    if tokenizer:
        save_word_tokenizer(path, WORDS)
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    (root / "text.txt").write_text("\n".join(TEXT) + "\n")
    return root


def source_for(root, family):
    path = root / family
    if not path.exists():
        tiny_checkpoint(root, family)
    return open_model_source(str(path), str(root / "text.txt"))


def run(root, family, **kw):
    return evaluate(str(root / family), group=16, alloc="uniform", text=str(root / "text.txt"), **kw)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_swapped_experts_with_original_weights_reproduce_the_model(root, family):
    src = source_for(root, family)
    *_, k, moe_layers = FAMILIES[family]
    assert src.layers == moe_layers and src.layer(0).top_k == k
    assert sum(len(i) for i in src.ids) == sum(len(line.split()) for line in TEXT)
    original = [src.layer(i).experts for i in range(src.layers)]
    end = src.end_to_end(original, original, top_n=k)   # every expert "restored" to its own weights
    assert abs(end["kl"]) < 1e-9 and end["cosine"] > 1 - 1e-6
    assert end["ppl"] == pytest.approx(src.ppl_full, rel=1e-6)
    x = src.activations(0)                               # the router order is the block's own
    _, probs, weights = src.layer(0).route(x)
    assert (weights[:, :-1] >= weights[:, 1:]).all() and (probs[:, :-1] >= probs[:, 1:]).all()


@pytest.mark.parametrize("family", ["mixtral", "deepseek_v2"])
def test_full_rank_restores_and_kl_grows_as_bits_drop(root, family):
    source_for(root, family)
    _, _, full, k, moe_layers = FAMILIES[family]
    lowbit = {b: run(root, family, bits=b, top_n=0) for b in (8, 4, 3, 2)}
    kls = [lowbit[b]["kl"] for b in (8, 4, 3, 2)]
    assert kls == sorted(kls) and kls[0] < 1e-3 and kls[-1] > 1e-2
    assert lowbit[8]["ppl_full"] == lowbit[2]["ppl_full"]
    restored3 = run(root, family, bits=3, rank_budget=full, top_n=k, per_layer=True)
    assert restored3["rel_output_error"] < 1e-3 < lowbit[3]["rel_output_error"]
    assert restored3["kl"] < 1e-4 * kls[2]
    assert [r["layer"] for r in restored3["layers"]] == list(range(moe_layers))
    restored8 = run(root, family, bits=8, rank_budget=full, top_n=k)   # fp16 factors of a tiny residual
    assert abs(restored8["kl"]) < 1e-7 and restored8["ppl"] == pytest.approx(restored8["ppl_full"], rel=1e-5)
    partial = [run(root, family, bits=2, rank_budget=8, top_n=n)["kl"] for n in range(k + 1)]
    assert partial[-1] < partial[0]


def test_cli_json_plan_from_safetensors_and_errors(root, tmp_path, capsys):
    path = tiny_checkpoint(tmp_path, "olmoe")
    plan = tmp_path / "plan.csv"
    assert main(["compensate", "--weights", str(path), "--bits", "3", "--group", "16", "--rank-budget", "4",
                 "--alloc", "kurtosis", "--out", str(plan)]) == 0
    capsys.readouterr()
    args = ["accuracy", "--weights", str(path), "--bits", "3", "--group", "16", "--top-n", "1",
            "--text", str(root / "text.txt"), "--json"]
    assert main([*args, "--plan", str(plan)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mean_rank"] == 4.0 and out["kl"] > 0 and math.isfinite(out["ppl"]) and out["ppl_full"] > 1
    assert [row["layer"] for row in out["layers"]] == [0, 1]
    assert out["rel_output_error"] == pytest.approx(sum(r["rel_output_error"] for r in out["layers"]) / 2)
    bare = tiny_checkpoint(tmp_path / "bare", "olmoe", tokenizer=False)
    assert main(["accuracy", "--weights", str(bare), "--bits", "3", "--text", str(root / "text.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tokenizer: no tokenizer files" in err
    assert main(["accuracy", "--weights", str(bare), "--tokenizer", str(path), "--bits", "3", "--group", "16",
                 "--text", str(root / "text.txt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ppl_full"] == out["ppl_full"]
