"""Fuzzed broken hardware and model YAML files: a one-line UserError naming the file (and the field), never
a traceback, from the library and from the CLI."""

import copy
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config.model import PRESET_DIR, load_model
from simulator.config.system import load_system
from simulator.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "hwconfigs").glob("*.yaml")) + sorted(PRESET_DIR.glob("*.yaml"))
BAD_VALUES = [None, -1, -3.5, 0, "", "abc", "12 parsecs", "-5 GB/s", "1e400 TB/s", "NaN", [1, 2], {"x": 1},
              True, "80 GB/s/s", "  ", "inf", 10 ** 30, 1, 10 ** 6, "1 TB/s"]


def leaves(node, path=()):
    """(path, value) of every scalar in a nested YAML structure."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, (*path, i))
    else:
        yield path, node


def loader_for(path: Path):
    return load_system if path.parent.name == "hwconfigs" else load_model


def mutate(data, path, action, value):
    data = copy.deepcopy(data)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if action == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "rename" and isinstance(parent, dict):
        parent[f"{path[-1]}_typo"] = parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return data


def check_error(exc: UserError, file: Path, key: str | None = None) -> None:
    """One line naming the file and, for a well-formed mapping, a field (the mutated `key` when the error
    comes from a cross-field check)."""
    text = exc.render()
    assert "\n" not in text
    assert str(file) in text
    if key is not None:
        assert exc.field or key in text, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_shipped_yaml_loads_or_fails_with_one_line(data):
    source = data.draw(st.sampled_from(SHIPPED))
    original = yaml.safe_load(source.read_text())
    path, _ = data.draw(st.sampled_from(list(leaves(original))))
    action = data.draw(st.sampled_from(["drop", "rename", "set"]))
    value = data.draw(st.sampled_from(BAD_VALUES))
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / source.name
        file.write_text(yaml.safe_dump(mutate(original, path, action, value)))
        try:
            loader_for(source)(file)
        except UserError as exc:
            check_error(exc, file, key=str(path[-1]))


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(SHIPPED), st.binary(max_size=200) | st.text(max_size=200))
def test_garbage_files_fail_with_one_line(source, garbage):
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "broken.yaml"
        file.write_bytes(garbage if isinstance(garbage, bytes) else garbage.encode())
        try:
            loader_for(source)(file)
        except UserError as exc:
            check_error(exc, file)
        else:
            raise AssertionError(f"garbage {garbage!r} loaded as a {source.parent.name} file")


def test_every_shipped_yaml_loads():
    for path in SHIPPED:
        loader_for(path)(path)


def test_cli_reports_a_broken_model_yaml_in_one_line(tmp_path):
    bad = tmp_path / "model.yaml"
    bad.write_text((PRESET_DIR / "mixtral-8x7b.yaml").read_text().replace("top_k: 2", "top_k: two"))
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "trace", "synth", "--model", str(bad),
                           "--tokens", "4", "--out", str(tmp_path / "t")],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and f"{bad}: top_k:" in proc.stderr
