"""Serving speed: simulated requests per wall second, the fast path vs the DES side by side.

    python benchmarks/serving_throughput.py [--duration 3600] [--des-duration 10]

1. The same short window of the Azure conversation trace (--des-duration seconds from --des-start) served
   by both timers: requests/s of wall time each, the speed-up, and that both give the same request times.
2. --duration seconds of the trace (3600: the whole hour, ~19k requests) on the fast path alone.
DeepSeek-V2-Lite with the ESFT intent routing trace, offload-lrc, h100-pcie5, default ServeSpec (max batch
64, 512 tokens per step, the trace's own arrival times).
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import wall

from simulator.config.run import RunSpec
from simulator.config.serve import ServeSpec
from simulator.serving.runner import serve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=3600.0)
    p.add_argument("--des-duration", type=float, default=10.0)
    p.add_argument("--des-start", type=float, default=600.0)
    args = p.parse_args()
    run = RunSpec(hwconfig="h100-pcie5", policy="offload-lrc", engine="analytic")
    serve(run, ServeSpec(duration=1.0))  # load the compiled kernel once
    short = ServeSpec(duration=args.des_duration, start=args.des_start)
    t_fast, fast = wall(serve, run, short)
    t_des, des = wall(serve, run.model_copy(update={"engine": "des"}), short)
    n = len(fast.requests)
    same = all(np.allclose(fast.requests[c], des.requests[c], rtol=1e-9, atol=0)
               for c in ("first_token_s", "finish_s"))
    print(f"window {args.des_start:g}-{args.des_start + args.des_duration:g} s: {n} requests, {len(fast.steps)} steps; "
          f"fast {n / t_fast:.1f} req/s wall ({t_fast:.2f} s), DES {n / t_des:.2f} req/s wall ({t_des:.2f} s), "
          f"{t_des / t_fast:.0f}x; request times equal: {same}")
    t_all, full = wall(serve, run, ServeSpec(duration=args.duration))
    s = full.summary
    print(f"{args.duration:g} s of azure-conv: {s['requests']} requests, {s['steps']} steps in {t_all:.1f} s wall "
          f"({s['requests'] / t_all:.1f} req/s wall); TTFT p50/p99 {s['ttft_s']['p50'] * 1e3:.1f}/"
          f"{s['ttft_s']['p99'] * 1e3:.1f} ms, TPOT p50/p99 {s['tpot_s']['p50'] * 1e3:.1f}/"
          f"{s['tpot_s']['p99'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
