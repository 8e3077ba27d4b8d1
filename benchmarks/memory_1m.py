"""Peak memory simulating a 1M-token synthetic trace of the default model (DeepSeek-V2-Lite: its MLA KV cache
of a 1M-token context still fits an H100; Mixtral's would not) with offload-lrc on h100-pcie5
(target < 1 GB): the trace is synthesised once to
disk (a memory-mapped trace directory), then the DES and the analytic path each run in a fresh process
whose peak RSS (ru_maxrss) is reported next to the RSS of an interpreter that only imports moesim, with
the peak anonymous RSS (the simulator's own memory, sampled) apart from the trace's memory-mapped file
pages (validation and both engines drop the pages they have read as they go: Trace.release).
The analytic path runs the whole trace; the DES runs its first --des-tokens steps of the same trace
(about 1 ms of wall time per simulated token on a laptop core, so 1M tokens would take ~20 minutes:
pass --des-tokens 1000000 for the full run). Both stream: the trace is memory-mapped and per-step rows
are typed arrays (8 bytes per column per step).
Run: python benchmarks/memory_1m.py [--tokens N] [--des-tokens N] [--engine des|analytic|both]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import resource, sys, threading, time
from simulator.config.run import RunSpec
from simulator.simulate import simulate

def rss():  # GiB: anonymous (the process's own memory), file-backed (mapped trace pages)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return [int(status[k].split()[0]) / 2**20 for k in ("RssAnon", "RssFile")]

peak_anon = [0.0]
def sample():
    while True:
        peak_anon[0] = max(peak_anon[0], rss()[0])
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
t = time.perf_counter()
if sys.argv[2] != "none":
    s = simulate(RunSpec(hwconfig="h100-pcie5", trace=sys.argv[1], policy="offload-lrc",
                         tokens=None if sys.argv[3] == "all" else int(sys.argv[3]), engine=sys.argv[2]))
    print(f"tokens {s['tokens']} sim {s['tokens_per_s']:.2f} tok/s", end=" ")
anon, file = rss()
print(f"wall {time.perf_counter() - t:.1f} s peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
      f" (peak anonymous {max(peak_anon[0], anon):.2f} GiB sampled every 50 ms; at exit file-backed {file:.2f} GiB)")
"""
SYNTH = r"""
import sys
from simulator.config.model import load_model
from simulator.config.run import DEFAULT_MODEL
from simulator.routing.synthetic import synthesize
from simulator.routing.trace import save_trace
save_trace(synthesize(load_model(DEFAULT_MODEL), int(sys.argv[2]), seed=0, sequences=64), sys.argv[1])
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--des-tokens", type=int, default=100_000)
    ap.add_argument("--engine", choices=["des", "analytic", "both"], default="both")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synth"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", SYNTH, str(path), str(args.tokens)], check=True)  # keeps this
        # process small: a child inherits its parent's peak RSS
        print(f"synthesised {args.tokens} tokens in {time.perf_counter() - t:.1f} s")
        for eng in ["none"] + (["des", "analytic"] if args.engine == "both" else [args.engine]):
            steps = str(args.des_tokens) if eng == "des" and args.des_tokens < args.tokens else "all"
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), eng, steps], capture_output=True,
                                 text=True, check=False)
            print(f"{eng:9s}", (out.stdout or out.stderr).strip().splitlines()[-1])


if __name__ == "__main__":
    main()
