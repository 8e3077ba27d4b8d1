"""`moesim serve`: serve a request workload on one configuration; latency percentiles, goodput under an SLO.

    moesim serve h100-pcie5 --policy offload-lrc --workload azure-conv --duration 60
    moesim serve h100-pcie5 --policy offload-lrc --rates 2,4,8,16 --out runs/lrc     # rate sweep + max rate

The machine and the step timing take every `moesim simulate` flag (RunSpec: model, policy, runtime, cache,
...) except --batch, --tokens, --prompt and --context, which the scheduler decides; --engine defaults to
analytic (the DES is the reference, for short windows). The workload, scheduler, KV budget and SLO flags
are ServeSpec's (simulator.config.serve). --out DIR writes requests.parquet (one row per request),
steps.parquet (one row per step) and summary.json, or with --rates rates.parquet (one row per rate, the
input of `moesim plot latency`) and summary.json, atomically and never over anything but a previous
`moesim serve` output (--force).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import BaseModel, ValidationError

from simulator.commands.run_flags import NONE_WORDS, add_run_arguments, describe, run_fields, spec_from_args
from simulator.config.serve import ServeSpec
from simulator.errors import UserError, format_validation_error
from simulator.fileio import check_output_dir, dumps_json, output_directory

NOT_SERVING = ("batch", "tokens", "prompt", "context")  # RunSpec fields the scheduler decides


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve a request workload: TTFT, TPOT, goodput under an SLO",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p)
    group = p.add_argument_group("serving (ServeSpec)")
    add_model_arguments(group, ServeSpec)
    p.add_argument("--rates", help="comma-separated rates (requests/s): a sweep, and the max sustainable rate")
    p.add_argument("--out", type=Path, help="directory for requests.parquet, steps.parquet and summary.json "
                                            "(with --rates: rates.parquet and summary.json)")
    p.add_argument("--force", action="store_true", help="replace --out when it holds a previous `moesim serve` output")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=main)


def add_model_arguments(parser, model: type[BaseModel]) -> None:
    """One --kebab-name flag per field of `model` (strings; the model validates them)."""
    for name, info in model.model_fields.items():
        kind = describe(info)
        default = "none" if info.default is None else info.default
        parser.add_argument("--" + name.replace("_", "-"), dest=f"serve_{name}", default=None, choices=kind["choices"],
                            metavar=None if kind["choices"] else name.upper().split("_")[-1],
                            help=f"{(info.description or name).replace('%', '%%')} (default {default})")


def serve_spec_from_args(args: argparse.Namespace) -> ServeSpec:
    given = {}
    for name, info in ServeSpec.model_fields.items():
        value = getattr(args, f"serve_{name}", None)
        if value is None:
            continue
        if isinstance(value, str) and value.strip().lower() in NONE_WORDS and describe(info)["optional"]:
            value = None
        given[name] = value
    try:
        return ServeSpec.model_validate(given)
    except ValidationError as exc:
        err = format_validation_error(exc)
        name = (err.field or "").split(".")[0]
        raise UserError(err.detail, field="--" + name.replace("_", "-") if name else None) from None


def parse_rates(text: str) -> list[float]:
    rates = []
    for part in text.split(","):
        try:
            rate = float(part)
        except ValueError:
            raise UserError(f"{part.strip()!r} is not a number of requests/s", field="--rates") from None
        if not rate > 0 or rate == float("inf"):
            raise UserError(f"rate {part.strip()}: expected requests/s > 0", field="--rates")
        rates.append(rate)
    return rates


def main(args: argparse.Namespace) -> int:
    serve_spec = serve_spec_from_args(args)
    rates = parse_rates(args.rates) if args.rates else None
    if args.engine is None:
        args.engine = "analytic"
    given = [name for name in NOT_SERVING if name in run_fields(args)]
    if given:
        raise UserError("does not apply to serving: the scheduler decides each step's requests, tokens and "
                        "contexts (see --max-batch, --max-tokens-per-step)", field="--" + given[0])
    run = spec_from_args(args)
    if args.out is not None:  # refuse before serving, not after
        check_output_dir(args.out, "serve", args.force)
    from simulator.serving.runner import serve, serve_rates

    if rates is not None:
        table, best = serve_rates(run, serve_spec, rates)
        summary = {"rates": rates, "max_sustainable_rate": best, "slo": {"ttft_s": serve_spec.slo_ttft,
                   "tpot_s": serve_spec.slo_tpot, "attainment": serve_spec.slo_attainment},
                   "policy": run.policy, "hwconfig": run.hwconfig,
                   "points": table.drop(columns=[c for c in table.columns if c.startswith("serve.")]).to_dict("records")}
        if args.out is not None:
            with output_directory(args.out, "serve", force=args.force, command="moesim serve") as tmp:
                table.to_parquet(tmp / "rates.parquet", index=False)
                (tmp / "summary.json").write_text(dumps_json(summary, indent=2, sort_keys=True) + "\n")
        if args.json:
            print(dumps_json(summary, sort_keys=True))
        else:
            print_rates(table, best, serve_spec)
        return 0
    result = serve(run, serve_spec)
    if args.out is not None:
        with output_directory(args.out, "serve", force=args.force, command="moesim serve") as tmp:
            result.requests.to_parquet(tmp / "requests.parquet", index=False)
            result.steps.to_parquet(tmp / "steps.parquet", index=False)
            (tmp / "summary.json").write_text(dumps_json(result.summary, indent=2, sort_keys=True) + "\n")
    if args.json:
        print(dumps_json(result.summary, sort_keys=True))
    else:
        print_summary(result.summary)
    return 0


def _ms(x) -> str:
    return "n/a" if x is None else f"{x * 1e3:.1f}"


def print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{s['policy']} on {s['hwconfig']}: {s['model']}, {s['workload']} ({s['arrivals']}, "
                    f"{s['offered_rate']:.2f} req/s offered), {s['engine']}", show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("requests (output tokens)", f"{s['requests']} ({s['output_tokens']})")
    t.add_row("makespan (s), steps", f"{s['makespan_s']:.2f}, {s['steps']}")
    for name, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("end-to-end", "e2e_s"), ("queueing", "queue_s")):
        p = s[key]
        t.add_row(f"{name} p50 / p90 / p99 (ms)", " / ".join(_ms(p[q]) for q in ("p50", "p90", "p99")))
    t.add_row("throughput (tokens/s, requests/s)", f"{s['tokens_per_s']:.1f}, {s['requests_per_s']:.2f}")
    t.add_row(f"within SLO (TTFT {_ms(s['slo']['ttft_s'])} ms, TPOT {_ms(s['slo']['tpot_s'])} ms)",
              f"{s['slo_attainment']:.1%}")
    t.add_row("goodput (requests/s)", f"{s['goodput_rps']:.2f}")
    t.add_row("mean batch (requests/step), tokens/step", f"{s['mean_batch']:.2f}, {s['mean_tokens_per_step']:.1f}")
    hit = s.get("cache_hit_rate")
    t.add_row("expert-cache hit rate", "n/a" if hit is None else f"{hit:.1%}")
    t.add_row("link MB per output token", f"{(s.get('link_bytes_per_token') or 0) / 1e6:.2f}")
    t.add_row("KV budget / expert cache (GB)", f"{s['kv_budget_bytes'] / 1e9:.2f} / {s['cache_capacity_bytes'] / 1e9:.2f}")
    t.add_row("wall time (s)", f"{s['wall_s']:.1f}")
    Console().print(t)


def print_rates(table, best, spec: ServeSpec) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{table['policy'].iloc[0]} on {table['hwconfig'].iloc[0]}: SLO TTFT {_ms(spec.slo_ttft)} ms, "
                    f"TPOT {_ms(spec.slo_tpot)} ms for {spec.slo_attainment:.0%} of requests")
    for col in ("rate", "TTFT p50/p99 (ms)", "TPOT p50/p99 (ms)", "within SLO", "goodput (req/s)"):
        t.add_column(col, justify="right")
    for _, r in table.iterrows():
        t.add_row(f"{r['rate']:g}", f"{_ms(r['ttft_s.p50'])} / {_ms(r['ttft_s.p99'])}",
                  f"{_ms(r['tpot_s.p50'])} / {_ms(r['tpot_s.p99'])}", f"{r['slo_attainment']:.1%}",
                  f"{r['goodput_rps']:.2f}")
    Console().print(t)
    print(f"max sustainable rate: {'none of these' if best is None else f'{best:g} requests/s'}")
