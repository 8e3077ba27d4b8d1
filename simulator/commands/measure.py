"""`moesim measure`: a real offloaded decode loop in torch, measured, against moesim's prediction.

    moesim profile --device cpu --out prof/
    moesim measure --device cpu --profile prof/ --trace traces/esft-intent --tokens 32 --out meas/ [--json]

Per configuration (--config, repeatable; default: simulator/data/measure-configs.txt) it runs the
harness (simulator.measure.harness) and `moesim simulate` on the same trace, shape and settings with the
profile's hwconfig and runtime, and prints measured vs predicted ms/token, the relative error, both
breakdowns and whether the bookkeeping (cache hits, misses, evictions, bytes copied) is identical. Without
--profile it first profiles the machine at the harness's shape (written into OUT/profile). --out DIR keeps
results.json, table.md, the harness's model.yaml and trace; nothing half-written is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

from simulator.commands.profile import (
    add_device_arguments,
    add_shape_arguments,
    settings_from_args,
    shape_from_args,
)
from simulator.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("measure", help="run a real offloaded decode loop and compare it with moesim",
                              description="Measure the torch decode harness and compare with moesim's prediction.")
    add_device_arguments(p)
    add_shape_arguments(p)
    p.add_argument("--profile", type=Path, help="a `moesim profile` output directory (its shape, group, context "
                                                "and rank are used; the shape flags are then ignored)")
    p.add_argument("--trace", default="traces/esft-intent", help="routing trace of the preset (traces/esft-intent)")
    p.add_argument("--synthetic-tokens", type=int, default=None, help="a synthetic trace of N tokens instead")
    p.add_argument("--sequences", type=int, default=16, help="sequences of the synthetic trace (16)")
    p.add_argument("--tokens", type=int, default=32, help="decode steps per configuration (32)")
    p.add_argument("--config", action="append", default=None,
                   help="'policy[,bits=B][,top_n=N][,rank=R][,cache=K|cache_bytes=BYTES][,cache_policy=lru|lfu]"
                        "[,batch=B]' (repeatable)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per configuration (3)")
    p.add_argument("--quick", action="store_true", help="when profiling here: the quick profile")
    p.add_argument("--out", type=Path, help="directory for results.json, table.md, model.yaml, trace/ (and profile/)")
    p.add_argument("--force", action="store_true", help="replace --out when it holds a previous moesim measure")
    p.add_argument("--json", action="store_true", help="print results as one JSON object")
    p.set_defaults(func=main, iters=None)


def load_profile_settings(path: Path) -> dict:
    from simulator.fileio import read_text

    for name in ("hwconfig.yaml", "runtime.yaml", "model.yaml", "profile.json"):
        if not (path / name).is_file():
            raise UserError(f"not a moesim profile output (missing {name})", source=path, field="--profile")
    try:
        return json.loads(read_text(path / "profile.json"))["raw"]["settings"]
    except (ValueError, KeyError, TypeError):
        raise UserError("profile.json has no settings", source=path / "profile.json") from None


def main(args: argparse.Namespace) -> int:
    from simulator.fileio import check_output_dir, dumps_json, output_directory

    if args.out is not None:
        check_output_dir(args.out, "measure", args.force)
    if args.tokens < 1 or args.repeats < 1:
        raise UserError("--tokens and --repeats must be >= 1", field="--tokens")
    from simulator.measure import compare
    from simulator.measure.device import device_name, resolve_device
    from simulator.measure.shape import HarnessShape, harness_trace, write_model
    from simulator.routing.trace import save_trace

    configs = [compare.parse_config(c) for c in (args.config or compare.default_configs())]
    device = resolve_device(args.device, args.threads)
    settings = load_profile_settings(args.profile) if args.profile is not None else None
    shape = HarnessShape(**settings["shape"]) if settings else shape_from_args(args)
    model = shape.model_spec()
    batch = max(c.batch for c in configs)
    log = None if args.json else (lambda msg: print(f"moesim measure: {msg}", file=sys.stderr))
    with contextlib.ExitStack() as stack:
        work = (stack.enter_context(output_directory(args.out, "measure", force=args.force, command="moesim measure"))
                if args.out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory())))
        trace = harness_trace(shape, None if args.synthetic_tokens else args.trace, args.synthetic_tokens,
                              args.sequences)
        save_trace(trace, work / "trace", command="moesim measure")
        model_path = write_model(model, work / "model.yaml")
        prof = args.profile
        if prof is None:
            from simulator.measure.profile_writer import profile

            args.bits = "2,3,4,8"
            bits = tuple(sorted({c.bits for c in configs if c.bits < 16} | {2, 3, 4}))
            profile(device, shape, work / "profile", settings=settings_from_args(args), bits=bits, rank=32,
                    group=128, context=512, log=log)
            prof = work / "profile"
            settings = load_profile_settings(prof)
        rows = []
        for cfg in configs:
            cfg = compare.with_defaults(cfg, settings["rank"] or 32)
            if cfg.batch > len(trace.sequence_bounds()):
                raise UserError(f"batch {cfg.batch} exceeds the trace's {len(trace.sequence_bounds())} sequences",
                                field="--config")
            spec = compare.run_spec_for(cfg, prof, model_path, work / "trace", args.tokens, settings["context"],
                                        settings["group"])
            if log:
                log(f"{cfg.label}")
            rows.append(compare.compare_one(cfg, spec, device, args.repeats))
        result = {"device": device_name(device), "device_type": device.type, "profile": str(args.profile or "here"),
                  "shape": shape.as_dict(), "model": model.name, "trace": trace.meta.name, "tokens": args.tokens,
                  "batch_max": batch, "rows": rows, "summary": compare.summarize(rows)}
        if args.out is not None:
            (work / "results.json").write_text(dumps_json(result, indent=1) + "\n")
            (work / "table.md").write_text(compare.table(rows) + "\n")
    if args.json:
        print(dumps_json(result, sort_keys=True))
    else:
        print(compare.table(rows))
        s = result["summary"]
        print(f"\n{s['configurations']} configurations on {result['device']}: median |rel. error| "
              f"{s['median_abs_rel_error']:.1%}, worst {s['worst_abs_rel_error']:.1%}; bookkeeping identical to "
              f"moesim's: {'yes' if s['bookkeeping_equal'] else 'NO'}")
    return 0
