"""Regression goldens: summary figures of fixed configurations on every shipped real trace.

    python tests/goldens/regenerate.py           recompute, print the differences, rewrite the goldens
    python tests/goldens/regenerate.py --check   recompute and print the differences only (exit 1 if any)

tests/test_goldens.py recomputes the same cases and compares every stored figure within REL_TOL. When a
change to the cost model is deliberate, run this script, read the printed diff, and commit the new
tests/goldens/*.json with the change that caused it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simulator.config.run import RunSpec
from simulator.simulate import simulate
from simulator.sweep.store import flatten, write_json

GOLDEN_DIR = Path(__file__).resolve().parent
REL_TOL = 1e-6
COMMON = {"model": "deepseek-v2-lite", "tokens": 32, "cache_bytes": 4e9, "bits": 3, "group": 128}
CASES = {  # name -> RunSpec fields (with COMMON and the trace)
    "pcie5-offload-fp16": {"hwconfig": "h100-pcie5", "policy": "offload-fp16"},
    "pcie5-offload-lowbit": {"hwconfig": "h100-pcie5", "policy": "offload-lowbit"},
    "pcie5-offload-mixed": {"hwconfig": "h100-pcie5", "policy": "offload-mixed", "top_n": 2},
    "pcie5-offload-lrc": {"hwconfig": "h100-pcie5", "policy": "offload-lrc", "top_n": 2, "rank": 32},
    "cxl-ndp-lowbit": {"hwconfig": "h100-cxl-ndp", "policy": "ndp-lowbit"},
    "cxl-ndp-hot": {"hwconfig": "h100-cxl-ndp", "policy": "ndp-hot"},
    "cxl-ndp-lrc": {"hwconfig": "h100-cxl-ndp", "policy": "ndp-lrc", "top_n": 2, "rank": 32},
    "cxl-ndp-lrc-batch4": {"hwconfig": "h100-cxl-ndp", "policy": "ndp-lrc", "top_n": 2, "rank": 32, "batch": 4},
}


def traces() -> list[str]:
    """The shipped real traces (traces/esft-*), as paths relative to the repository."""
    return sorted(f"traces/{p.name}" for p in (ROOT / "traces").glob("esft-*") if (p / "meta.json").is_file())


def figures(spec: RunSpec) -> dict[str, float]:
    """The numeric summary figures of one run, flattened (breakdown_ms_per_token.attention, ...)."""
    summary = {k: v for k, v in simulate(spec).items() if k != "spec"}
    return {k: float(v) for k, v in sorted(flatten(summary).items())
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def compute(trace: str) -> dict:
    cases = {}
    for name, fields in CASES.items():
        spec = RunSpec(**COMMON, **fields, trace=trace)
        cases[name] = {"spec": spec.model_dump(exclude_defaults=True), "figures": figures(spec)}
    return {"trace": trace, "rel_tol": REL_TOL, "cases": cases}


def golden_path(trace: str) -> Path:
    return GOLDEN_DIR / f"{Path(trace).name}.json"


def differences(old: dict, new: dict, rel_tol: float = REL_TOL) -> list[str]:
    """One line per figure that moved beyond rel_tol, appeared or disappeared."""
    lines = []
    for case in sorted(set(old.get("cases", {})) | set(new["cases"])):
        a = old.get("cases", {}).get(case, {}).get("figures", {})
        b = new["cases"].get(case, {}).get("figures", {})
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                lines.append(f"{case}: {key}: {a.get(key, 'absent')} -> {b.get(key, 'absent')}")
            elif not math.isclose(a[key], b[key], rel_tol=rel_tol, abs_tol=1e-12):
                change = (b[key] - a[key]) / abs(a[key]) if a[key] else math.inf
                lines.append(f"{case}: {key}: {a[key]:.6g} -> {b[key]:.6g} ({change:+.2%})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print differences only, do not write")
    args = parser.parse_args(argv)
    changed = False
    for trace in traces():
        path = golden_path(trace)
        old = json.loads(path.read_text()) if path.is_file() else {}
        new = compute(trace)
        diff = differences(old, new)
        if not old:
            print(f"{path.relative_to(ROOT)}: new, {sum(len(c['figures']) for c in new['cases'].values())} figures")
        else:
            print(f"{path.relative_to(ROOT)}: {len(diff)} difference(s)")
            for line in diff:
                print(f"  {line}")
        changed |= bool(diff)
        if diff and not args.check:
            write_json(path, new)
    return 1 if (changed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
