"""`moesim simulate`: run one simulation point and print a summary table or JSON; optionally write files.

--out DIR writes steps.parquet (one row per decode step), summary.json and, with the DES engine,
timeline.json (Chrome trace / Perfetto) atomically: into a temporary directory beside DIR, renamed into place at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator.commands.run_flags import add_run_arguments, spec_from_args
from simulator.fileio import check_output_dir, dumps_json, output_directory


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="simulate decoding of one configuration",
                              description="Simulate MoE decoding on one hardware config with one policy. "
                                          "Every run parameter (simulator.config.run.RunSpec) is a flag.")
    add_run_arguments(p)
    p.add_argument("--out", type=Path, help="directory for steps.parquet, summary.json, timeline.json (DES only)")
    p.add_argument("--force", action="store_true",
                   help="replace --out when it holds a previous `moesim simulate` output (never anything else)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=main)


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
    energy = s.get("energy")
    if energy is None:
        t.add_row("energy", f"unknown: {s['hwconfig']} has no energy figures")
    else:
        t.add_row("J/token (tokens/J, average W)",
                  f"{energy['joules_per_token']:.4f} ({energy['tokens_per_joule']:.1f}, {energy['average_power_w']:.0f})")
        for part, joules in energy["breakdown_j_per_token"].items():
            t.add_row(f"  {part}", f"{joules:.4f}")
    Console().print(t)
