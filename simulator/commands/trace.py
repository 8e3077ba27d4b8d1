"""`moesim trace ...`: import, synthesise, capture, describe and plot routing traces."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("trace", help="routing traces: import, synth, capture, stats, plot")
    sub = parser.add_subparsers(dest="trace_command", metavar="ACTION", required=True)

    p = sub.add_parser("import-esft", help="convert deepseek-ai/ESFT expert_scores into trace directories")
    p.add_argument("dir", help="ESFT checkout, its results/expert_scores folder, or one task folder")
    p.add_argument("--out", default="traces", help="folder to write esft-<task>/ into (default: traces)")
    p.add_argument("--force", action="store_true", help="replace esft-<task>/ traces already there")
    p.set_defaults(func=_import_esft)

    p = sub.add_parser("synth", help="write a synthetic trace calibrated to real routing statistics")
    p.add_argument("--model", required=True, help="model preset name or model YAML file")
    p.add_argument("--tokens", type=int, required=True, help="tokens in the trace")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical trace)")
    p.add_argument("--sequences", type=int, default=1, help="sequences the tokens are split into")
    p.add_argument("--params", default=None, help="parameter YAML (default: the shipped fit for the model)")
    p.add_argument("--out", required=True, help="trace directory to write")
    p.add_argument("--force", action="store_true", help="replace --out when it holds a previous trace")
    p.set_defaults(func=_synth)

    p = sub.add_parser("calibrate", help="refit the synthetic-routing parameters to the reference data")
    p.add_argument("--raw", default=None,
                   help="rebuild the reference statistics from this traces_raw folder first")
    p.add_argument("--traces", default="traces", help="folder with the esft-* traces (with --raw)")
    p.add_argument("--models", default=None, help="comma-separated presets (default: all)")
    p.add_argument("--out", default=None, help="folder for routing-synth-<model>.yaml "
                   "(default: the package's simulator/data)")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("capture", help="record router top-k of a Hugging Face MoE model (needs transformers)")
    p.add_argument("--model-path", required=True, help="local model folder (config, weights, tokenizer)")
    p.add_argument("--text", required=True, help="text file; sequences separated by blank lines")
    p.add_argument("--max-tokens", type=int, default=2048, help="tokens to capture in total")
    p.add_argument("--out", required=True, help="trace directory to write")
    p.add_argument("--force", action="store_true", help="replace --out when it holds a previous trace")
    p.set_defaults(func=_capture)

    p = sub.add_parser("plot", help="expert-by-token heat map and router-score distribution of a layer")
    p.add_argument("path", help="trace directory")
    p.add_argument("--layer", type=int, default=0, help="MoE layer index (0 = first MoE layer)")
    p.add_argument("--first-token", type=int, default=0, help="first token of the heat map")
    p.add_argument("--tokens", type=int, default=200, help="tokens in the heat map")
    p.add_argument("--out", required=True, help="folder for the PNG and SVG files")
    p.set_defaults(func=_plot)

    p = sub.add_parser("stats", help="routing statistics of a trace (popularity, locality, scores)")
    p.add_argument("path", help="trace directory")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_stats)


def _import_esft(args: argparse.Namespace) -> int:
    from simulator.routing.esft import import_esft

    for path in import_esft(args.dir, args.out, force=args.force):
        print(path)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from simulator.fileio import dumps_json
    from simulator.routing.stats import format_stats, trace_stats
    from simulator.routing.trace import load_trace

    stats = trace_stats(load_trace(args.path))
    print(dumps_json(stats) if args.json else format_stats(stats))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from simulator.config.model import load_model
    from simulator.fileio import check_output_dir
    from simulator.routing.synthetic import load_params, synthesize
    from simulator.routing.trace import save_trace

    check_output_dir(args.out, "trace", args.force)  # refuse before any work
    model = load_model(args.model)
    params = load_params(model, args.params)
    trace = synthesize(model, args.tokens, args.seed, args.sequences, params)
    print(save_trace(trace, args.out, force=args.force, command="moesim trace synth"))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import json

    from simulator.routing import calibrate as cal

    reference = None
    if args.raw:
        reference = cal.build_reference(args.raw, args.traces)
        tmp = cal.REFERENCE_PATH.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(reference, separators=(",", ":")) + "\n")
        tmp.replace(cal.REFERENCE_PATH)
        print(cal.REFERENCE_PATH)
    models = args.models.split(",") if args.models else None
    for path in cal.calibrate(args.out or cal.DATA_DIR, reference, models):
        print(path)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from simulator.errors import UserError
    from simulator.fileio import check_figure_dir
    from simulator.plots.routing import save_figures, trace_figures
    from simulator.routing.trace import load_trace

    if args.tokens < 1 or args.first_token < 0:
        raise UserError("must be >= 1 (--first-token >= 0)", field="--tokens")
    check_figure_dir(args.out)
    trace = load_trace(args.path)
    figures = trace_figures(trace, args.layer, args.first_token, args.tokens)
    for path in save_figures(figures, args.out, prefix=f"{trace.meta.name}-layer{args.layer}-"):
        print(path)
    return 0


def _capture(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simulator.fileio import check_output_dir
    from simulator.routing.capture import capture, read_sequences
    from simulator.routing.trace import save_trace

    check_output_dir(args.out, "trace", args.force)  # refuse before loading the model
    sequences = read_sequences(args.text)
    trace = capture(args.model_path, sequences, args.max_tokens, name=Path(args.out).name)
    print(save_trace(trace, args.out, force=args.force, command="moesim trace capture"))
    return 0
