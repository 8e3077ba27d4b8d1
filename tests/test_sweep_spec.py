"""Sweep files: expansion order and counts, per-policy grids, dedup, accuracy keys, one-line errors."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import UserError
from simulator.simulate import DEFAULT_RANK
from simulator.sweep import SweepSpec, expand, load_sweep
from simulator.sweep.accuracy import FULL_RANK, AccuracySection, accuracy_key

SPEC = """
name: t
base: {hwconfig: h100-pcie5, tokens: 8}
grid: {batch: [1, 2]}
policies:
  - {policy: offload-fp16}
  - {policy: offload-lrc, bits: 3, grid: {top_n: [1, 2], rank: [16, 64]}}
points:
  - {policy: gpu-resident}
  - {policy: offload-fp16, batch: 1}      # duplicate of the first point: kept once
accuracy: {weights: minilm}
"""


def spec(text: str = SPEC) -> SweepSpec:
    return SweepSpec.model_validate(yaml.safe_load(text))


def test_expansion_order_and_fields():
    pts = expand(spec())
    got = [(p.run.policy, p.run.batch, p.run.bits, p.run.top_n, p.run.rank) for p in pts]
    assert got == [
        ("offload-fp16", 1, 4, 2, None), ("offload-fp16", 2, 4, 2, None),
        ("offload-lrc", 1, 3, 1, 16), ("offload-lrc", 1, 3, 1, 64),
        ("offload-lrc", 1, 3, 2, 16), ("offload-lrc", 1, 3, 2, 64),
        ("offload-lrc", 2, 3, 1, 16), ("offload-lrc", 2, 3, 1, 64),
        ("offload-lrc", 2, 3, 2, 16), ("offload-lrc", 2, 3, 2, 64),
        ("gpu-resident", 1, 4, 2, None),
    ]
    assert [p.index for p in pts] == list(range(11))
    assert all(p.run.hwconfig == "h100-pcie5" and p.run.tokens == 8 for p in pts)


def test_ids_are_stable_and_distinct():
    a, b = expand(spec()), expand(spec())
    assert [p.id for p in a] == [p.id for p in b]
    assert len({p.id for p in a}) == len(a)
    # key order in the file does not matter
    c = expand(spec(SPEC.replace("{hwconfig: h100-pcie5, tokens: 8}", "{tokens: 8, hwconfig: h100-pcie5}")))
    assert [p.id for p in c] == [p.id for p in a]


def test_policy_grid_overrides_top_level_grid_key():
    pts = expand(spec("""
name: t
grid: {bits: [2, 3], batch: [1]}
policies:
  - {policy: offload-lowbit}
  - {policy: offload-lrc, grid: {bits: [4]}}
"""))
    assert [(p.run.policy, p.run.bits) for p in pts] == [
        ("offload-lowbit", 2), ("offload-lowbit", 3), ("offload-lrc", 4)]


def test_grid_without_policies_uses_base_policy_and_empty_spec_is_one_point():
    pts = expand(spec("name: t\nbase: {policy: offload-lowbit}\ngrid: {bits: [2, 3]}"))
    assert [(p.run.policy, p.run.bits) for p in pts] == [("offload-lowbit", 2), ("offload-lowbit", 3)]
    assert len(expand(spec("name: t"))) == 1
    assert [p.run.policy for p in expand(spec("name: t\npoints: [{policy: gpu-resident}]"))] == ["gpu-resident"]


def test_overrides_win_over_the_file():
    pts = expand(spec(), overrides={"engine": "analytic"})
    assert {p.run.engine for p in pts} == {"analytic"}
    assert {p.id for p in pts}.isdisjoint(p.id for p in expand(spec()))


def test_accuracy_keys_follow_the_policy_and_are_shared():
    pts = expand(spec())
    assert pts[0].accuracy == {"weights": "minilm", "bits": 16}
    assert pts[0].accuracy_id == pts[1].accuracy_id                           # offload-fp16: full precision
    lrc = pts[2].accuracy
    assert (lrc["bits"], lrc["rank"], lrc["top_n"], lrc["alloc"]) == (3, 16, 1, "kurtosis")
    assert (lrc["model_top_k"], lrc["model_rank_dim"]) == (6, 1408)       # deepseek-v2-lite
    assert pts[2].accuracy_id == pts[6].accuracy_id                           # batch does not matter
    # gpu-resident at the default 4 bits is a reference with the 4-bit error, not full precision
    ref = pts[10].accuracy
    assert (pts[10].run.policy, ref["bits"], ref["rank"], ref["top_n"]) == ("gpu-resident", 4, 0, 0)
    assert len({p.accuracy_id for p in pts}) == 6


def test_accuracy_key_per_policy_kind():
    from simulator.config.run import RunSpec
    sec = AccuracySection(alloc="energy")
    low = accuracy_key(RunSpec(policy="ndp-lowbit", bits=2, top_n=3, rank=8), sec)
    assert (low["bits"], low["rank"], low["top_n"]) == (2, 0, 0)
    mixed = accuracy_key(RunSpec(policy="offload-mixed", bits=2, top_n=1), sec)
    assert (mixed["rank"], mixed["top_n"]) == (FULL_RANK, 1)
    default = accuracy_key(RunSpec(policy="ndp-lrc"), sec)
    assert (default["rank"], default["alloc"]) == (DEFAULT_RANK, "energy")
    assert accuracy_key(RunSpec(policy="gpu-resident", bits=16), sec) == {"weights": "minilm", "bits": 16}
    resident = accuracy_key(RunSpec(policy="gpu-resident", bits=3, top_n=2), sec)
    assert resident == {**low, "bits": 3}                              # the same measurement as low-bit
    assert accuracy_key(RunSpec(policy="offload-mixed", bits=2, top_n=6), sec) == {"weights": "minilm", "bits": 16}
    assert accuracy_key(RunSpec(policy="someone-elses-policy"), sec) is None
    assert accuracy_key(RunSpec(policy="ndp-lrc", plan="p.parquet"), sec) is None


@pytest.mark.parametrize("text, field, words", [
    ("name: t\ngrid: {bitz: [2]}", "grid", "'bitz' is not a run parameter"),
    ("name: t\ngrid: {bits: []}", "grid", "has no values"),
    ("name: t\npolicies: [{policy: offload-lrc, rnk: 3}]", "policies.0", "'rnk' is not a run parameter"),
    ("name: t\nbogus: 1", "bogus", "Extra inputs"),
])
def test_bad_files_name_the_field(tmp_path, text, field, words):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as exc:
        load_sweep(path)
    line = exc.value.render()
    assert line.startswith(f"{path}: {field}") and words in line and "\n" not in line


def test_bad_value_names_the_policy_entry_and_field():
    with pytest.raises(UserError) as exc:
        expand(spec("name: t\npolicies: [{policy: a}, {policy: b, grid: {bits: [4, 0]}}]"), source="s.yaml")
    assert exc.value.render().startswith("s.yaml: policies[1].bits: Input should be greater than or equal")


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["bits", "batch", "top_n", "group"]),
                       st.lists(st.integers(1, 8), min_size=1, max_size=4), max_size=4))
def test_point_count_is_the_product_of_distinct_values(grid):
    pts = expand(SweepSpec(name="h", grid=grid))
    assert len(pts) == math.prod(len(set(v)) for v in grid.values())
    assert len({p.id for p in pts}) == len(pts)
