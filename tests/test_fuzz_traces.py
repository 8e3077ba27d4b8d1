"""Fuzzed broken trace directories: load_trace and `moesim trace stats` fail with one line naming the file
or field, never a traceback and never unpickling."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import UserError
from simulator.routing.trace import ARRAYS, Trace, TraceMeta, load_trace, save_trace

NAMES = ["meta.json", *(f"{n}.npy" for n in ARRAYS)]


def valid_trace(dir_: Path) -> Path:
    """5 tokens in 2 sequences, 2 layers, 6 experts, k=3."""
    rng = np.random.default_rng(0)
    ids = np.stack([[rng.permutation(6)[:3] for _ in range(2)] for _ in range(5)]).astype(np.int16)
    scores = -np.sort(-rng.random((5, 2, 3)), axis=-1).astype(np.float32)
    meta = TraceMeta(name="fz", model="toy", num_experts=6, top_k=3, layers=2, source="test")
    return save_trace(Trace(meta, ids, scores, np.array([0, 0, 0, 1, 1], np.int32),
                            np.array([0, 1, 2, 0, 1], np.int32)), dir_ / "t")


def corrupt(path: Path, kind: str, data: st.DataObject) -> set[str]:
    """Break the trace at `path`; return the words one of which the error must contain."""
    ids = np.load(path / "expert_ids.npy")
    scores = np.load(path / "scores.npy")
    meta = json.loads((path / "meta.json").read_text())
    tok, layer = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 1))
    if kind == "id_out_of_range":
        ids[tok, layer, data.draw(st.integers(0, 2))] = data.draw(st.sampled_from([6, 100, -1, 32767]))
        np.save(path / "expert_ids.npy", ids)
        return {"expert_ids"}
    if kind == "duplicate_id":
        ids[tok, layer, 1] = ids[tok, layer, 0]
        np.save(path / "expert_ids.npy", ids)
        return {"expert_ids"}
    if kind == "bad_score":
        scores[tok, layer, data.draw(st.integers(0, 2))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        np.save(path / "scores.npy", scores)
        return {"scores"}
    if kind == "unsorted_scores":
        scores[tok, layer] = [0.1, 0.5, 0.2]
        np.save(path / "scores.npy", scores)
        return {"scores"}
    if kind == "meta_mismatch":
        field = data.draw(st.sampled_from(["top_k", "layers"]))
        meta[field] = data.draw(st.sampled_from([1, 4, 7]))
        (path / "meta.json").write_text(json.dumps(meta))
        return {field, "expert_ids"}
    if kind == "meta_bad_field":
        field = data.draw(st.sampled_from(sorted(meta)))
        meta[field] = data.draw(st.sampled_from([None, -2, "x", [1], {"a": 1}, 0]))
        (path / "meta.json").write_text(json.dumps(meta))
        return {field, "expert_ids", "meta.json"}
    if kind == "meta_garbage":
        (path / "meta.json").write_bytes(data.draw(st.binary(max_size=60)))
        return {"meta.json"}
    if kind == "missing_file":
        name = data.draw(st.sampled_from(NAMES))
        (path / name).unlink()
        return {name}
    if kind == "not_npy":
        name = data.draw(st.sampled_from(NAMES[1:]))
        (path / name).write_bytes(data.draw(st.binary(max_size=100)))
        return {name}
    if kind == "truncated_npy":
        name = data.draw(st.sampled_from(NAMES[1:]))
        raw = (path / name).read_bytes()
        (path / name).write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
        return {name}
    if kind == "object_npy":
        name = data.draw(st.sampled_from(NAMES[1:]))
        np.save(path / name, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
        return {name}
    if kind == "wrong_dtype":
        name = data.draw(st.sampled_from(NAMES[1:]))
        np.save(path / name, np.load(path / name).astype(np.float64))
        return {name}
    if kind == "wrong_length":
        name = data.draw(st.sampled_from(["seq_id.npy", "position.npy", "scores.npy"]))
        np.save(path / name, np.load(path / name)[:-1])
        return {name.removesuffix(".npy")}
    if kind == "split_sequence":
        np.save(path / "seq_id.npy", np.array([0, 1, 0, 1, 1], np.int32))
        return {"seq_id"}
    raise AssertionError(kind)


KINDS = ["id_out_of_range", "duplicate_id", "bad_score", "unsorted_scores", "meta_mismatch", "meta_bad_field",
         "meta_garbage", "missing_file", "not_npy", "truncated_npy", "object_npy", "wrong_dtype",
         "wrong_length", "split_sequence"]


@settings(max_examples=250, deadline=None)
@given(st.sampled_from(KINDS), st.data())
def test_broken_traces_fail_with_one_line_naming_file_or_field(kind, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = valid_trace(Path(tmp))
        words = corrupt(path, kind, data)
        try:
            load_trace(path)
        except UserError as exc:
            text = exc.render()
            assert "\n" not in text and str(path) in text
            assert any(w in text for w in words), (kind, text)
        else:
            assert kind == "meta_bad_field", f"{kind} loaded"   # e.g. notes="x" is still a valid trace


def test_cli_stats_on_broken_traces_prints_one_line(tmp_path):
    path = valid_trace(tmp_path)
    np.save(path / "scores.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    for target in (path, tmp_path / "absent"):
        proc = subprocess.run([sys.executable, "-m", "simulator.cli", "trace", "stats", str(target)],
                              check=False, capture_output=True, text=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and str(target) in proc.stderr


def test_a_trace_rewritten_after_loading_is_validated_again(tmp_path):
    """Validation runs once per version of a trace's files (a sweep loads one trace per point): loading
    the same files again skips it, a rewritten file is checked again."""
    path = valid_trace(tmp_path)
    load_trace(path)
    load_trace(path)  # unchanged: no second validation needed, and none fails
    ids = np.load(path / "expert_ids.npy")
    ids[0, 0, 0] = 99  # out of range [0, 6)
    np.save(path / "expert_ids.npy", ids)
    st = (path / "expert_ids.npy").stat()  # a later mtime, as a rewrite gets unless within one clock tick
    os.utime(path / "expert_ids.npy", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(UserError, match="expert id 99 out of range"):
        load_trace(path)
