"""Shipped hardware configs and model presets load; derived figures match hand arithmetic."""

import pytest

from simulator.accounting import expert_lowbit_bytes, factor_bytes, matrix_bytes
from simulator.config import list_hwconfigs, list_presets, load_model, load_system
from simulator.errors import UserError


@pytest.mark.parametrize("name", list_hwconfigs())
def test_every_hwconfig_loads(name):
    system = load_system(name)
    assert system.gpu.hbm_capacity > 0 and system.links


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_loads(name):
    model = load_model(name)
    assert model.moe_layers >= 1 and model.top_k <= model.num_experts


def test_shipped_sets_are_complete():
    assert {"h100-pcie5", "a100-pcie4", "rtx4090-pcie4", "t4-pcie3", "h100-cxl-ndp"} <= set(list_hwconfigs())
    assert {"mixtral-8x7b", "mixtral-8x22b", "deepseek-v2-lite", "qwen3-30b-a3b",
            "olmoe-1b-7b"} <= set(list_presets())
    assert load_system("h100-cxl-ndp").ndp is not None


def test_mixtral_expert_arithmetic():
    m = load_model("mixtral-8x7b")
    assert m.expert_params == 3 * 4096 * 14336
    assert m.expert_bytes(16) == 3 * 4096 * 14336 * 2
    # 4-bit, group 128, fp16 scale + fp16 zero: 4 bits + 32 bits / 128 = 4.25 bits per weight
    assert m.expert_bytes(4, 128) == 3 * 4096 * 14336 * 4.25 / 8
    assert m.kv_bytes_per_token == 2 * 8 * 128 * 2
    assert m.attention_params == 4096 * 4096 * 2 + 2 * 4096 * 1024
    assert m.moe_layers == 32


def test_deepseek_v2_lite_arithmetic():
    m = load_model("deepseek-v2-lite")
    assert m.moe_layers == 26
    assert m.expert_params == 3 * 2048 * 1408
    assert m.shared_params == 2 * 3 * 2048 * 1408
    assert m.kv_bytes_per_token == (512 + 64) * 2
    q = 2048 * 16 * (128 + 64)
    kv_a = 2048 * (512 + 64)
    kv_b = 512 * 16 * (128 + 128)
    o = 16 * 128 * 2048
    assert m.attention_params == q + kv_a + kv_b + o
    assert 15.5e9 < m.total_params < 16.0e9  # published: 15.7B total


def test_byte_accounting_hand_cases():
    assert matrix_bytes(256, 2, bits=2, group=128) == 256 * 2 * 2 / 8 + (2 * 2) * 4
    # the packed codes are whole bytes (pack_codes: ceil(300 x 3 / 8) = 113); ceil(100/64)=2 groups per row
    assert matrix_bytes(100, 3, bits=3, group=64) == 113 + (2 * 3) * 4
    assert matrix_bytes(10, 10, bits=16) == 200
    assert factor_bytes(4096, 14336, rank=8) == 8 * (4096 + 14336) * 2
    assert expert_lowbit_bytes(4, 8, 16) == 3 * 4 * 8 * 2


def test_unknown_names_are_user_errors():
    with pytest.raises(UserError, match="unknown hardware config"):
        load_system("no-such-box")
    with pytest.raises(UserError, match="unknown model"):
        load_model("no-such-model")


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngpu: [unclosed\n")
    with pytest.raises(UserError) as exc:
        load_system(bad)
    assert str(bad) in str(exc.value) and "line" in str(exc.value)


def test_bad_field_is_named(tmp_path):
    import yaml

    from simulator.config.system import HWCONFIG_DIR
    data = yaml.safe_load((HWCONFIG_DIR / "h100-pcie5.yaml").read_text())
    data["links"][0]["bandwidth_to_gpu"] = 50
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as exc:
        load_system(path)
    assert "links.0.bandwidth_to_gpu" in str(exc.value)


def test_attention_and_resident_bytes_at_low_bits():
    m = load_model("mixtral-8x7b")
    p = m.attention_params
    assert m.attention_weight_bytes(16) == p * 2
    # 4 bits + one fp16 scale and one fp16 zero per 64 values: 4 + 32/64 = 4.5 bits per weight
    assert m.attention_weight_bytes(4, 64) == p * 4.5 / 8
    assert m.resident_bytes() == m.resident_params * 2
    assert m.resident_bytes(4, 64) == m.resident_params * 2 - m.layers * (p * 2 - p * 4.5 / 8)


def test_ungated_experts_have_two_matrices():
    m = load_model("minilm-moe")
    assert not m.gated_experts
    assert m.expert_params == 2 * 384 * 96
    assert m.expert_bytes(3, 128) == matrix_bytes(384, 96, 3, 128) + matrix_bytes(96, 384, 3, 128)
    assert m.expert_factor_bytes(8) == 2 * 8 * (384 + 96) * 2
    assert m.factor_flops_per_token(8) == 2.0 * 8 * 2 * (384 + 96)


def test_a_model_yaml_with_a_bool_where_a_width_goes_is_rejected(tmp_path):
    """`hidden: true` used to load as hidden = 1 (pydantic's lax int coercion)."""
    import pytest

    from simulator.config.model import load_model
    from simulator.errors import UserError

    path = tmp_path / "m.yaml"
    path.write_text("name: x\nlayers: 2\nhidden: true\nexpert_ffn: 4\nnum_experts: 4\ntop_k: 2\nvocab: 10\n"
                    "attention: {kind: gqa, heads: 1, kv_heads: 1, head_dim: 4}\n")
    with pytest.raises(UserError, match="hidden: Input should be a valid integer"):
        load_model(str(path))
