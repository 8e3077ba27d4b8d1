"""Measured vs predicted on this machine's CPU: `moesim profile --device cpu`, then `moesim measure` over the
default configurations (simulator.measure.compare.DEFAULT_CONFIGS: offload-fp16, offload-lowbit and
offload-lrc at 2/3/4 bits, two cache sizes, LRU and LFU, batch 1 and 8) on the first MoE layers of the real
DeepSeek-V2-Lite routing (traces/esft-intent) at half width; prints the table, the median and worst
|rel. error| and the load average (the figures move with the machine's load: pin threads, take medians).

Usage: python benchmarks/real_offload.py [--tokens 16] [--repeats 3] [--out DIR] [--profile DIR]
The issue's target is a median |rel. error| <= 0.15 over at least 6 configurations.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from simulator.cli import main as moesim


def run(argv: list[str]) -> str:
    buf = StringIO()
    with redirect_stdout(buf):
        code = moesim(argv)
    if code:
        raise SystemExit(f"moesim {' '.join(argv)} exited {code}")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16, help="decode steps per configuration (16)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per configuration (3)")
    ap.add_argument("--profile", type=Path, help="reuse this `moesim profile` output instead of profiling")
    ap.add_argument("--out", type=Path, help="keep the profile and measure outputs here (a new directory)")
    args = ap.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="real-offload-"))
    base.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    prof = args.profile
    if prof is None:
        prof = base / "profile"
        run(["profile", "--device", "cpu", "--out", str(prof)])
    t1 = time.perf_counter()
    result = json.loads(run(["measure", "--device", "cpu", "--profile", str(prof), "--tokens", str(args.tokens),
                             "--repeats", str(args.repeats), "--out", str(base / "measure"), "--json"]))
    t2 = time.perf_counter()
    from simulator.measure.compare import table

    print(table(result["rows"]))
    s = result["summary"]
    print(f"\n{s['configurations']} configurations on {result['device']}, {result['model']} ({result['trace']}), "
          f"{args.tokens} steps, median of {args.repeats} passes")
    print(f"median |rel. error| {s['median_abs_rel_error']:.3f}, worst {s['worst_abs_rel_error']:.3f} "
          f"(target: median <= 0.15); bookkeeping identical to moesim's: {s['bookkeeping_equal']}")
    print(f"profile {t1 - t0:.0f} s, measure {t2 - t1:.0f} s; load average before "
          f"{', '.join(f'{x:.2f}' for x in load0)}, after {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs); outputs in {base}")


if __name__ == "__main__":
    main()
