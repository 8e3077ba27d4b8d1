"""Policies' accuracy declarations and what a sweep measures for them: the mapping of every registered
policy, references at the bits they run, bits or mixes the accuracy model cannot measure as invalid
results with a reason, one full-precision constant, and no policy name matched outside the policies."""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import simulator
from simulator.accounting import matrix_bytes
from simulator.accuracy.quantize import quantize
from simulator.config.run import RunSpec
from simulator.errors import UserError
from simulator.policies import registry
from simulator.policies.base import Placement, Policy
from simulator.precision import FULL_PRECISION_BITS, QUANTIZER_BITS, accuracy_bits_problem
from simulator.sweep import SweepSpec, expand, run_sweep
from simulator.sweep.accuracy import FULL_RANK, AccuracySection, accuracy_key, evaluate_accuracy
from simulator.sweep.front import is_reference

R, F, L = "restored", "full", "lowbit"
MIX_3BIT_N2_K6 = {
    "gpu-resident": (L,) * 6, "offload-fp16": (F,) * 6, "offload-lowbit": (L,) * 6,
    "offload-lrc": (R, R, L, L, L, L), "offload-mixed": (F, F, L, L, L, L), "ndp-lowbit": (L,) * 6,
    "ndp-hot": (F,) * 6, "ndp-lrc": (R, R, L, L, L, L),
}


def test_every_registered_policy_declares_its_mix():
    assert set(registry.POLICIES) == set(MIX_3BIT_N2_K6)
    for name, cls in registry.POLICIES.items():
        assert cls.accuracy_mix(3, 2, 6) == MIX_3BIT_N2_K6[name], name
        assert cls.accuracy_mix(FULL_PRECISION_BITS, 2, 6) == (F,) * 6, name   # full precision: all full
        top_n_runs = (MIX_3BIT_N2_K6[name][0],) * 6                           # top-n capped at k
        assert cls.accuracy_mix(3, 9, 6) == cls.accuracy_mix(3, 6, 6) == top_n_runs, name
    assert registry.names(reference=True) == ["gpu-resident"]
    assert registry.names(compensates=True) == ["offload-lrc", "ndp-lrc"]
    assert registry.names(reference=False, needs_ndp=False) == [
        "offload-fp16", "offload-lowbit", "offload-lrc", "offload-mixed"]


@pytest.mark.parametrize("policy, params", [
    ("gpu-resident", ("bits",)), ("offload-fp16", ()), ("offload-mixed", ("bits", "top_n")),
    ("ndp-lrc", ("bits", "top_n", "rank")), ("someone-elses-policy", ("bits",)),
])
def test_weight_parameters_follow_the_declarations(policy, params):
    from simulator.sweep.accuracy import weight_parameters

    assert weight_parameters(policy) == params


def test_a_reference_carries_the_accuracy_of_the_bits_it_runs():
    sec = AccuracySection()
    low4 = accuracy_key(RunSpec(policy="offload-lowbit", bits=4), sec)
    assert accuracy_key(RunSpec(policy="gpu-resident", bits=4), sec) == low4 and low4["bits"] == 4
    assert accuracy_key(RunSpec(policy="gpu-resident", bits=16), sec) == {"weights": "minilm", "bits": 16}
    import pandas as pd
    assert is_reference(pd.Series(["gpu-resident", "offload-lrc", "not-registered"])).tolist() == [
        True, False, False]


def test_unmeasurable_bits_and_mixes_are_user_errors_with_the_reason():
    assert [b for b in range(1, 17) if accuracy_bits_problem(b)] == list(range(9, 16))
    key = accuracy_key(RunSpec(policy="offload-lrc", bits=12, rank=8), AccuracySection())
    with pytest.raises(UserError) as exc:
        evaluate_accuracy(key)
    assert exc.value.render() == ("accuracy: the accuracy model quantizes to 1-8 bits or runs full precision "
                                  "(16); 12 bits cannot be measured")
    # at full precision a policy that ignores --bits is measured as the reference, whatever --bits says
    assert evaluate_accuracy(accuracy_key(RunSpec(policy="offload-fp16", bits=12), AccuracySection())) == {
        "rel_output_error": 0.0, "layer_cosine": 1.0, "cosine": 1.0}


class _LowbitFirst(Policy):
    """Top-n pairs low-bit, the rest full precision: a mix the accuracy model cannot measure."""
    name = "lowbit-first"
    top_n_runs, rest_runs = "lowbit", "full"

    def place(self, layer, expert, tokens, restored, cache) -> Placement:
        return Placement(gpu_tokens=tokens, gpu_form="full" if not restored else "lowbit")


def test_an_unmeasurable_mix_is_an_invalid_accuracy_row_that_is_not_retried(monkeypatch, tmp_path):
    monkeypatch.setitem(registry.POLICIES, _LowbitFirst.name, _LowbitFirst)
    key = accuracy_key(RunSpec(policy="lowbit-first", bits=3, top_n=1), AccuracySection())
    assert key["unsupported"] == ("policy lowbit-first runs a token's top-6 pairs as lowbit/full/full/full/"
                                  "full/full: the accuracy model measures m pairs restored or full precision "
                                  "and the rest low-bit")
    spec = SweepSpec.model_validate({"name": "t", "base": {"hwconfig": "h100-pcie5", "tokens": 2},
                                     "points": [{"policy": "lowbit-first", "bits": 3, "top_n": 1},
                                                {"policy": "offload-mixed", "bits": 3, "top_n": 1}],
                                     "accuracy": {"weights": "minilm"}})
    points = expand(spec)
    assert (points[1].accuracy["rank"], points[1].accuracy["top_n"]) == (FULL_RANK, 1)   # HOBBIT-like kept
    summary = {"tokens_per_s": 1.0}
    with ThreadPoolExecutor(1) as ex:
        first = run_sweep(points[:1], tmp_path, ex, point_fn=lambda run: summary, progress=False)
        again = run_sweep(points[:1], tmp_path, ex, point_fn=lambda run: summary, progress=False)
    row = first.table.iloc[0]
    assert (row["status"], row["accuracy.reason"]) == ("ok", f"accuracy: {key['unsupported']}")
    assert not first.failed and again.ran == 0


def test_full_precision_is_one_constant():
    assert QUANTIZER_BITS == range(1, 9)
    quantize(torch.ones(2, 4), QUANTIZER_BITS[-1], 4)
    with pytest.raises(ValueError, match="bits must be in 1..8, got 9"):
        quantize(torch.ones(2, 4), QUANTIZER_BITS[-1] + 1, 4)
    assert matrix_bytes(128, 8, FULL_PRECISION_BITS) == 128 * 8 * 2               # no scales
    assert matrix_bytes(128, 8, FULL_PRECISION_BITS - 1) == 128 * 8 * 15 / 8 + 8 * 4


ALLOWED: set = set()  # none: even the default policy is named in the registry


def _code_strings(path: Path):
    """String constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_no_policy_name_in_code_outside_the_policies():
    root = Path(simulator.__file__).parent
    hits = {(str(p.relative_to(root)), name)
            for p in root.rglob("*.py") if "policies" not in p.relative_to(root).parts
            for s in _code_strings(p) for name in registry.POLICIES if name in s}
    assert hits <= ALLOWED
