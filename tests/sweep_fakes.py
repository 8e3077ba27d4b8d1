"""Test-only stand-ins for the engine and the accuracy model, and a sweep driver the kill tests run as a
subprocess (python tests/sweep_fakes.py OUT LOG). Deterministic; optionally slow (SWEEP_FAKE_SLEEP)."""

from __future__ import annotations

import os
import sys
import time

from simulator.errors import UserError
from simulator.sweep.store import stable_id

FAKE_SWEEP = {
    "name": "fake",
    "base": {"hwconfig": "h100-pcie5", "tokens": 4},
    "grid": {"batch": [1, 2]},
    "policies": [
        {"policy": "offload-fp16"},
        {"policy": "offload-lowbit", "grid": {"bits": [2, 3, 4]}},
        {"policy": "offload-lrc", "grid": {"bits": [2, 3], "top_n": [1, 2], "rank": [8, 32]}},
    ],
    "points": [{"policy": "offload-lowbit", "rank": 8}],  # rank on a non-lrc policy: invalid
    "accuracy": {"weights": "minilm", "alloc": "kurtosis"},
}


def fake_point(run: dict) -> dict:
    """A summary shaped like the engine's, computed from the run parameters."""
    log = os.environ.get("SWEEP_FAKE_LOG")
    if log:
        with open(log, "a") as f:
            f.write(stable_id(run) + "\n")
    time.sleep(float(os.environ.get("SWEEP_FAKE_SLEEP", "0")))
    if run["rank"] and not run["policy"].endswith("lrc"):
        raise UserError("rank needs an lrc policy", field="rank")
    bits = 16 if run["policy"] == "offload-fp16" else run["bits"]
    extra = (run["rank"] or 0) * run["top_n"] if run["policy"].endswith("lrc") else 0
    link = 1e6 * bits + 1e3 * extra
    ms = 1.0 + link / 1e6
    return {"tokens": run["tokens"] * run["batch"], "tokens_per_s": 1e3 * run["batch"] / ms,
            "ms_per_token": ms, "bytes_per_token": link, "link_bytes_per_token": {"pcie": link},
            "breakdown_ms_per_token": {"attention": 1.0, "transfer_stall": ms - 1.0}}


def fake_accuracy(key: dict) -> dict:
    if key["bits"] >= 16 or key["rank"] < 0:
        return {"rel_output_error": 0.0, "cosine": 1.0}
    err = 2.0 ** -key["bits"] / (1 + key["rank"] * key["top_n"] / 16)
    return {"rel_output_error": err, "cosine": 1 - err / 10}


def fake_raising(run: dict) -> dict:
    if run["batch"] == 2:
        raise RuntimeError("boom")
    return fake_point(run)


if __name__ == "__main__":
    from simulator.sweep import SweepSpec, expand, run_sweep
    from simulator.sweep.executors import open_executor

    out, log = sys.argv[1], sys.argv[2]
    os.environ["SWEEP_FAKE_LOG"] = log
    with open_executor(workers=2) as ex:
        run_sweep(expand(SweepSpec.model_validate(FAKE_SWEEP)), out, ex,
                  point_fn=fake_point, accuracy_fn=fake_accuracy, progress=False)
