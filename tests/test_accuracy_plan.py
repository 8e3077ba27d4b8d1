"""Compensation plan: round trip in both formats and one-line errors for bad files."""

import json

import numpy as np
import pandas as pd
import pytest

from simulator.accuracy.plan import COLUMNS, load_plan, save_plan
from simulator.errors import UserError


def tiny_plan() -> tuple[pd.DataFrame, dict]:
    rows = [{"layer": layer, "expert": e, "bits": 3, "group": 64, "rank": 4 * e, "kurtosis": 3.0 + e,
             "bytes_lowbit": 1000.5, "bytes_factors": 64.0 * e, "err_before": 0.2, "err_after": 0.1}
            for layer in (1, 0) for e in (1, 0)]
    return pd.DataFrame(rows), {"weights": "tiny", "num_experts": 2, "rank_budget": 2.0}


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip_sorted_and_typed(tmp_path, suffix):
    df, meta = tiny_plan()
    path = save_plan(df, meta, tmp_path / f"plan{suffix}")
    got, got_meta = load_plan(path)
    assert got_meta == meta
    assert list(got.columns) == list(COLUMNS)
    assert got[["layer", "expert"]].values.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert got["rank"].tolist() == [0, 4, 0, 4]
    assert got["rank"].dtype == np.int64 and got["kurtosis"].dtype == np.float64
    assert got["bytes_lowbit"].tolist() == [1000.5] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"plan{suffix}"] + (["plan.csv.meta.json"] if suffix == ".csv" else []))


@pytest.mark.parametrize("column,value,message", [
    ("rank", -1, "rank: negative value -1"),
    ("err_after", float("nan"), "err_after: non-finite"),
    ("expert", 0, "expert: duplicate (layer, expert) pair (0, 0)"),
])
def test_bad_rows_name_file_and_column(tmp_path, column, value, message):
    df, meta = tiny_plan()
    save_plan(df, meta, tmp_path / "plan.csv")
    bad = pd.read_csv(tmp_path / "plan.csv")
    bad.loc[1, column] = value  # row 1 is (layer 0, expert 1)
    bad.to_csv(tmp_path / "plan.csv", index=False)
    with pytest.raises(UserError) as exc:
        load_plan(tmp_path / "plan.csv")
    assert str(exc.value).startswith(f"{tmp_path / 'plan.csv'}: {message}")


def test_missing_column_and_sidecar(tmp_path):
    df, meta = tiny_plan()
    save_plan(df, meta, tmp_path / "plan.csv")
    df.drop(columns="kurtosis").to_csv(tmp_path / "plan.csv", index=False)
    with pytest.raises(UserError, match="kurtosis: missing column"):
        load_plan(tmp_path / "plan.csv")
    (tmp_path / "plan.csv.meta.json").unlink()
    with pytest.raises(UserError, match="missing metadata sidecar"):
        load_plan(tmp_path / "plan.csv")
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="cannot read plan"):
        load_plan(tmp_path / "x.parquet")
    with pytest.raises(UserError, match="must end in"):
        save_plan(df, meta, tmp_path / "plan.txt")
    assert json.dumps(meta)  # metadata is plain JSON
