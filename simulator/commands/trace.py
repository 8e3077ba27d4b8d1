"""`moesim trace ...`: import, synthesise, capture, describe and plot routing traces."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("trace", help="routing traces: import, synth, capture, stats, plot")
    sub = parser.add_subparsers(dest="trace_command", metavar="ACTION", required=True)

    p = sub.add_parser("import-esft", help="convert deepseek-ai/ESFT expert_scores into trace directories")
    p.add_argument("dir", help="ESFT checkout, its results/expert_scores folder, or one task folder")
    p.add_argument("--out", default="traces", help="folder to write esft-<task>/ into (default: traces)")
    p.set_defaults(func=_import_esft)

    p = sub.add_parser("stats", help="routing statistics of a trace (popularity, locality, scores)")
    p.add_argument("path", help="trace directory")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_stats)


def _import_esft(args: argparse.Namespace) -> int:
    from simulator.routing.esft import import_esft

    for path in import_esft(args.dir, args.out):
        print(path)
    return 0


def _stats(args: argparse.Namespace) -> int:
    import json

    from simulator.routing.stats import format_stats, trace_stats
    from simulator.routing.trace import load_trace

    stats = trace_stats(load_trace(args.path))
    print(json.dumps(stats) if args.json else format_stats(stats))
    return 0
