"""`moesim simulate`: run one simulation point and print a summary table or JSON; optionally write files.

--out DIR writes steps.parquet (one row per decode step), summary.json and, with the DES engine,
timeline.json (Chrome trace / Perfetto) atomically: into a temporary directory beside DIR, renamed into place at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator.config.run import DEFAULT_TOKENS, RunSpec
from simulator.fileio import check_output_dir, dumps_json, output_directory
from simulator.units import parse_bytes


def register(subparsers) -> None:
    d = RunSpec()
    p = subparsers.add_parser("simulate", help="simulate decoding of one configuration",
                              description="Simulate MoE decoding on one hardware config with one policy.")
    p.add_argument("hwconfig", nargs="?", default=d.hwconfig, help=f"hardware config name or YAML ({d.hwconfig})")
    p.add_argument("--model", default=d.model, help=f"model preset or YAML ({d.model})")
    p.add_argument("--trace", default=d.trace, help=f"trace directory ({d.trace})")
    p.add_argument("--synthetic-tokens", type=int, help="use a synthetic trace of N tokens instead of --trace")
    p.add_argument("--policy", default=d.policy, help=f"placement policy ({d.policy})")
    p.add_argument("--bits", type=int, default=d.bits, help=f"low-bit expert width ({d.bits})")
    p.add_argument("--group", type=int, default=d.group, help=f"quantization group size ({d.group})")
    p.add_argument("--top-n", type=int, default=d.top_n, help=f"experts restored per token ({d.top_n})")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rank", type=int, help="uniform compensator rank (lrc policies; default 32)")
    g.add_argument("--plan", help="compensation plan file with per-expert ranks and bytes")
    p.add_argument("--cache-policy", choices=["lru", "lfu"], default=d.cache_policy)
    p.add_argument("--cache-bytes", type=parse_bytes, help="GPU expert cache size, e.g. '20 GB'")
    p.add_argument("--cache-experts-per-layer", type=int, help="per-layer caches of K experts instead")
    p.add_argument("--prefetch", action="store_true", help="speculatively copy the next layer's experts")
    p.add_argument("--prefetch-hit-rate", type=float, default=d.prefetch_hit_rate)
    p.add_argument("--attention-bits", type=int, default=d.attention_bits)
    p.add_argument("--batch", type=int, default=d.batch, help=f"sequences decoded in lockstep ({d.batch})")
    p.add_argument("--tokens", type=int, default=DEFAULT_TOKENS, help=f"decode steps ({DEFAULT_TOKENS}); 0 = whole trace")
    p.add_argument("--prompt", type=int, default=d.prompt, help="prefill length (0 = none)")
    p.add_argument("--context", type=int, default=d.context, help=f"KV context at the first step ({d.context})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--engine", choices=["des", "analytic"], default=d.engine,
                   help="des: SimPy discrete-event model; analytic: the vectorised fast path of the same "
                        f"cost model ({d.engine})")
    p.add_argument("--out", type=Path, help="directory for steps.parquet, summary.json, timeline.json (DES only)")
    p.add_argument("--force", action="store_true",
                   help="replace --out when it holds a previous `moesim simulate` output (never anything else)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=main)


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    return RunSpec(
        hwconfig=args.hwconfig, model=args.model, trace=args.trace, synthetic_tokens=args.synthetic_tokens,
        policy=args.policy, bits=args.bits, group=args.group, top_n=args.top_n, rank=args.rank, plan=args.plan,
        cache_policy=args.cache_policy, cache_bytes=args.cache_bytes,
        cache_experts_per_layer=args.cache_experts_per_layer, prefetch=args.prefetch,
        prefetch_hit_rate=args.prefetch_hit_rate, attention_bits=args.attention_bits, batch=args.batch,
        tokens=args.tokens or None, prompt=args.prompt, context=args.context, seed=args.seed,
        engine=args.engine)


def main(args: argparse.Namespace) -> int:
    if args.out is not None:  # refuse before simulating, not after
        check_output_dir(args.out, "simulate", args.force)
    from simulator.simulate import run_spec

    spec = spec_from_args(args)
    result, summary = run_spec(spec, record_events=args.out is not None,
                               progress=sys.stderr.isatty() and not args.json)
    if args.out is not None:
        write_outputs(args.out, result, summary, force=args.force)
    if args.json:
        print(dumps_json(summary, sort_keys=True))
    else:
        print_table(summary)
    return 0


def write_outputs(out: Path, result, summary: dict, force: bool = False) -> None:
    from simulator.metrics import step_table
    from simulator.timeline import write_chrome_trace

    with output_directory(out, "simulate", force=force, command="moesim simulate") as tmp:
        step_table(result).to_parquet(tmp / "steps.parquet", index=False)
        (tmp / "summary.json").write_text(dumps_json(summary, indent=2, sort_keys=True) + "\n")
        if result.log is not None:  # the analytic engine has no event timeline
            write_chrome_trace(result.log, tmp / "timeline.json")


def print_table(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{s['policy']} on {s['hwconfig']}: {s['model']}, trace {s['trace']}, batch {s['batch']}",
              show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("tokens (decode steps)", f"{s['tokens']} ({s['steps']})")
    t.add_row("tokens/s", f"{s['tokens_per_s']:.1f}")
    t.add_row("ms/token", f"{s['ms_per_token']:.3f}")
    for cat, ms in s["breakdown_ms_per_token"].items():
        t.add_row(f"  {cat}", f"{ms:.3f}")
    for link, b in s["link_bytes_per_token"].items():
        util = ", ".join(f"{d} {u:.0%}" for d, u in s["link_utilization"][link].items())
        t.add_row(f"link {link}: MB/token (utilization)", f"{b / 1e6:.2f} ({util})")
    hit = s["cache_hit_rate"]
    t.add_row("GPU expert cache hit rate", "n/a" if hit is None else f"{hit:.1%}")
    t.add_row("GPU expert cache capacity", f"{s['cache_capacity_bytes'] / 1e9:.2f} GB")
    t.add_row("GPU utilization", f"{s['gpu_utilization']:.0%}")
    if s["ndp_utilization"]:
        t.add_row("NDP unit utilization", ", ".join(f"{u:.0%}" for u in s["ndp_utilization"]))
    if s["prefill_s"]:
        t.add_row("prefill (s)", f"{s['prefill_s']:.4f}")
    Console().print(t)
