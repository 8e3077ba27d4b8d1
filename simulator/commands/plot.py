"""`moesim plot KIND ...`: the paper figures as PNG + SVG, each from one command.

    roofline    GPU and NDP-unit rooflines with the decode operating points (from the cost formulas)
    breakdown   stacked ms/token per policy: from a sweep table, or simulating --policies on the spot
    routing     expert heat map and router score distribution of a trace
    accuracy    residual error vs rank, and kurtosis vs quantization error, on real weights
    pareto      link bytes/token and tokens/s vs accuracy error, from a sweep table
    energy      stacked J/token by component per run, and J/token vs accuracy error, from a sweep table
    latency     p50/p99 TTFT and TPOT vs offered rate, one line per policy, from `moesim serve --rates` tables
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from simulator.config.run import DEFAULT_HWCONFIG, DEFAULT_MODEL, DEFAULT_TRACE, RunSpec
from simulator.errors import UserError
from simulator.units import parse_bytes


def _read_table(path: str) -> pd.DataFrame:
    p = Path(path)
    if p.is_dir():
        p = p / "results.parquet"
    if not p.is_file():
        raise UserError("no such table (give a sweep's results.parquet or its output directory)", source=path)
    try:
        return pd.read_parquet(p)
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is the user's: one line, no traceback
        raise UserError(f"not a Parquet table ({exc.__class__.__name__})", source=p) from None


def _roofline(args) -> list:
    from simulator.config.model import load_model
    from simulator.config.system import load_system
    from simulator.plots.roofline import roofline_figure

    return [roofline_figure(load_system(args.hwconfig), load_model(args.model), args.bits, args.group,
                            args.rank, tuple(args.tokens), args.context)]


def _breakdown(args) -> list:
    from simulator.plots.breakdown import breakdown_figure

    if args.table:
        table = _read_table(args.table)
        where = ", ".join(dict.fromkeys(table["hwconfig"])) if "hwconfig" in table else ""
        return [breakdown_figure(table, f"{where}: decode time per token".lstrip(": "))]
    from simulator.simulate import simulate
    from simulator.sweep.store import flatten

    policies = args.policies.split(",") if args.policies else default_policies(args.hwconfig)
    rows = []
    for policy in policies:
        spec = RunSpec(hwconfig=args.hwconfig, model=args.model, trace=args.trace, policy=policy,
                       bits=args.bits, top_n=args.top_n, tokens=args.steps, cache_bytes=args.cache_bytes)
        rows.append({**spec.model_dump(), **flatten(simulate(spec))})
    return [breakdown_figure(pd.DataFrame(rows), f"{args.hwconfig}, {args.model}: decode time per token")]


def default_policies(hwconfig: str) -> list[str]:
    """Every registered policy that is not a reference point and can run on `hwconfig` (NDP or not)."""
    from simulator.config.system import load_system
    from simulator.policies.registry import names

    return names(reference=False, needs_ndp=None if load_system(hwconfig).ndp is not None else False)


def _routing(args) -> list:
    from simulator.plots.routing import trace_figures
    from simulator.routing.trace import load_trace

    return list(trace_figures(load_trace(args.trace), args.layer, args.first_token, args.count).values())


def _accuracy(args) -> list:
    from simulator.accuracy.api import compensate, rank_sweep
    from simulator.accuracy.pipeline import Settings
    from simulator.plots.accuracy import error_vs_rank, kurtosis_vs_error

    sweep = rank_sweep(args.weights, sorted({2, 3, 4, args.bits}), args.group, [0, 4, 8, 16, 32, 64])
    plan, _ = compensate(args.weights, Settings(bits=args.bits, group=args.group))
    return [error_vs_rank(sweep), kurtosis_vs_error(plan, f"{args.bits}-bit, g{args.group}:")]


def _pareto(args) -> list:
    from simulator.plots.pareto import pareto_figure

    return [pareto_figure(pd.concat([_read_table(t) for t in args.table], ignore_index=True))]


def _energy(args) -> list:
    """PREFIX-bars (always) and PREFIX-pareto (when the table has accuracy errors)."""
    from simulator.plots.energy import energy_bars_figure, energy_pareto_figure
    from simulator.sweep.front import ERROR

    table = pd.concat([_read_table(t) for t in args.table], ignore_index=True)
    where = ", ".join(dict.fromkeys(table["hwconfig"])) if "hwconfig" in table else ""
    figures = [energy_bars_figure(table, f"{where}: energy per generated token".lstrip(": "))]
    if ERROR in table and table[ERROR].notna().any():
        figures.append(energy_pareto_figure(table))
    return figures


def _latency(args) -> list:
    from simulator.plots.latency import latency_figure

    tables = []
    for t in args.table:
        p = Path(t)
        tables.append(_read_table(str(p / "rates.parquet") if p.is_dir() else t))
    return [latency_figure(pd.concat(tables, ignore_index=True))]


KINDS = {"roofline": _roofline, "breakdown": _breakdown, "routing": _routing, "accuracy": _accuracy,
         "pareto": _pareto, "energy": _energy, "latency": _latency}
SUFFIXES = {"routing": ["-heatmap", "-scores"], "accuracy": ["-error-vs-rank", "-kurtosis"],
            "energy": ["-bars", "-pareto"]}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw a figure (PNG + SVG): roofline, breakdown, routing, accuracy, pareto, energy, latency",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", help="output path prefix; writes PREFIX.png and PREFIX.svg "
                                      "(default: figures/KIND)")
    hw = argparse.ArgumentParser(add_help=False)
    hw.add_argument("--hwconfig", default=DEFAULT_HWCONFIG)
    hw.add_argument("--model", default=DEFAULT_MODEL)
    hw.add_argument("--bits", type=int, default=3)

    k = kinds.add_parser("roofline", parents=[common, hw], help="GPU + NDP rooflines with operating points")
    k.add_argument("--group", type=int, default=128)
    k.add_argument("--rank", type=int, default=32, help="compensator rank of the compensation point")
    k.add_argument("--tokens", type=int, nargs="+", default=[1, 16], help="tokens per op (one point each)")
    k.add_argument("--context", type=int, default=512, help="KV context of the attention point")

    k = kinds.add_parser("breakdown", parents=[common, hw], help="stacked time breakdown per policy")
    k.add_argument("table", nargs="?", help="sweep results.parquet (or its directory); else simulate now")
    k.add_argument("--policies", help="comma-separated policies (default: every registered policy that is not "
                                      "a reference and runs on --hwconfig)")
    k.add_argument("--trace", default=DEFAULT_TRACE)
    k.add_argument("--top-n", type=int, default=2)
    k.add_argument("--steps", type=int, default=64, help="decode steps per simulated policy")
    k.add_argument("--cache-bytes", type=parse_bytes, default=4e9, help="GPU expert cache, e.g. '4 GB' (4 GB)")

    k = kinds.add_parser("routing", parents=[common], help="expert heat map + router score distribution")
    k.add_argument("--trace", default=DEFAULT_TRACE)
    k.add_argument("--layer", type=int, default=0, help="MoE layer")
    k.add_argument("--first-token", type=int, default=0)
    k.add_argument("--count", type=int, default=200, help="tokens in the heat map")

    k = kinds.add_parser("accuracy", parents=[common], help="error vs rank; kurtosis vs quantization error")
    k.add_argument("--weights", default="minilm", help="'minilm' or a Hugging Face MoE checkpoint dir")
    k.add_argument("--bits", type=int, default=3)
    k.add_argument("--group", type=int, default=128)

    k = kinds.add_parser("pareto", parents=[common], help="bytes/token and tokens/s vs accuracy error")
    k.add_argument("table", nargs="+", help="sweep results.parquet file(s) or directories")

    k = kinds.add_parser("energy", parents=[common], help="stacked J/token by component; J/token vs error")
    k.add_argument("table", nargs="+", help="sweep results.parquet file(s) or directories (the Pareto needs "
                                            "an accuracy: section; without one only PREFIX-bars is drawn)")

    k = kinds.add_parser("latency", parents=[common], help="p50/p99 TTFT and TPOT vs offered rate per policy")
    k.add_argument("table", nargs="+", help="`moesim serve --rates ... --out DIR` outputs (DIR or DIR/rates.parquet)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simulator.plots.style import save

    figures = KINDS[args.kind](args)
    prefix = Path(args.out or f"figures/{args.kind}")
    suffixes = SUFFIXES.get(args.kind, [""])
    for fig, suffix in zip(figures, suffixes):
        for path in save(fig, prefix.with_name(prefix.name + suffix)):
            print(path)
    return 0
