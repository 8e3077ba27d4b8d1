"""Peak memory simulating a 1M-token synthetic trace (target < 1 GB): the trace is synthesised once to
disk (a memory-mapped trace directory), then the DES and the analytic path each run in a fresh process
whose peak RSS (ru_maxrss) is reported next to the RSS of an interpreter that only imports moesim.
Run: python benchmarks/memory_1m.py [--tokens N] [--engine des|analytic|both]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import resource, sys, time
from simulator.config.run import RunSpec
from simulator.simulate import simulate
t = time.perf_counter()
if sys.argv[2] != "none":
    s = simulate(RunSpec(hwconfig="h100-pcie5", model="mixtral-8x7b", trace=sys.argv[1], policy="offload-lrc",
                         tokens=None, engine=sys.argv[2]))
    print(f"tokens {s['tokens']} sim {s['tokens_per_s']:.2f} tok/s", end=" ")
print(f"wall {time.perf_counter() - t:.1f} s peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--engine", choices=["des", "analytic", "both"], default="both")
    args = ap.parse_args()
    from simulator.config.model import load_model
    from simulator.routing.synthetic import synthesize
    from simulator.routing.trace import save_trace

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synth"
        t = time.perf_counter()
        save_trace(synthesize(load_model("mixtral-8x7b"), args.tokens, seed=0, sequences=64), path)
        print(f"synthesised {args.tokens} tokens in {time.perf_counter() - t:.1f} s")
        for eng in ["none"] + (["des", "analytic"] if args.engine == "both" else [args.engine]):
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), eng], capture_output=True, text=True,
                                 check=False)
            print(f"{eng:9s}", (out.stdout or out.stderr).strip().splitlines()[-1])


if __name__ == "__main__":
    main()
