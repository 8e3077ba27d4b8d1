"""`moesim accuracy`: error of the low-bit model with top-n restoration, vs full precision."""

from __future__ import annotations

from simulator.commands.compensate import add_weight_args, settings_from, text_options


def run(args) -> int:
    from dataclasses import asdict

    from simulator.accuracy.api import evaluate
    from simulator.accuracy.plan import load_plan

    s = settings_from(args)
    if args.trace_out:  # refuse before the (long) evaluation, not after
        from simulator.fileio import check_output_dir

        check_output_dir(args.trace_out, "trace", args.force, field="--trace-out")
    if args.figures:
        from simulator.fileio import check_figure_dir

        check_figure_dir(args.figures, field="--figures")
    plan = None
    if args.plan:
        plan, _ = load_plan(args.plan)
    options = {k: v for k, v in asdict(s).items()
               if k not in ("bits", "group", "rank_budget", "alloc", "seed")}
    result = evaluate(args.weights, s.bits, s.group, s.rank_budget, s.alloc, args.top_n, s.seed,
                      plan=plan, plan_source=args.plan or "plan", per_layer=True, **text_options(args), **options)
    if args.figures:
        from simulator.plots.accuracy import write_figures

        result["figures"] = [str(p) for p in write_figures(args.weights, s, args.figures)]
    if args.trace_out:
        from simulator.accuracy.api import open_source
        from simulator.accuracy.minilm import routing_trace
        from simulator.errors import UserError
        from simulator.routing.trace import save_trace

        if args.weights != "minilm":
            raise UserError("routing traces are exported for --weights minilm only", field="--trace-out")
        result["trace"] = str(save_trace(routing_trace(open_source("minilm")), args.trace_out, force=args.force,
                                         command="moesim accuracy --trace-out", field="--trace-out"))
    if args.json:
        from simulator.fileio import dumps_json

        print(dumps_json(result, sort_keys=True))
    else:
        for key, value in result.items():
            if key == "layers":
                for row in value:
                    print(f"{'layer ' + str(row['layer']):>22}: rel_output_error {row['rel_output_error']:.6g}"
                          f"  cosine {row['cosine']:.6g}")
            else:
                print(f"{key:>22}: {value:.6g}" if isinstance(value, float) else f"{key:>22}: {value}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("accuracy", help="measure the error of low-bit experts with top-n restoration",
                              description=__doc__)
    add_weight_args(p)
    p.add_argument("--top-n", type=int, default=0, metavar="N",
                   help="restore (add U V^T to) the top-N of each token's top-k experts; 0 = pure low-bit")
    p.add_argument("--plan", default=None, help="take ranks from this plan (its bits and group must match)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--figures", default=None, metavar="DIR",
                   help="also write the error-vs-rank and kurtosis-vs-error figures (PNG) into DIR")
    p.add_argument("--trace-out", default=None, metavar="DIR",
                   help="also write the MoEfied MiniLM's routing trace on the text sample (minilm only)")
    p.add_argument("--force", action="store_true", help="replace --trace-out when it holds a previous trace")
    p.set_defaults(func=run)
