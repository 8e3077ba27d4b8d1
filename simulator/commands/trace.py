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


def _import_esft(args: argparse.Namespace) -> int:
    from simulator.routing.esft import import_esft

    for path in import_esft(args.dir, args.out):
        print(path)
    return 0
