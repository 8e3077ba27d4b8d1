"""`moesim profile`: microbenchmarks with torch on this machine -> a hwconfig and a runtime profile.

    moesim profile --device cpu --out prof/          # hwconfig.yaml, runtime.yaml, model.yaml, profile.json
    moesim simulate prof/hwconfig.yaml --runtime prof/runtime.yaml --policy offload-lrc
    moesim measure --profile prof/ --out meas/     # the harness vs moesim with this profile

The op kinds are timed at the harness's shape (the same flags as `moesim measure`), because the runtime
profile's kernel counts and dequant efficiencies are those of the harness's ops; see
simulator.measure.profile_writer for how each figure is derived.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator.errors import UserError


def add_shape_arguments(p: argparse.ArgumentParser) -> None:
    from simulator.measure.shape import HarnessShape

    d = HarnessShape()
    g = p.add_argument_group("harness shape (a preset cut down; experts per layer and top-k stay the preset's)")
    g.add_argument("--model", default=d.model, help=f"model preset or YAML ({d.model})")
    g.add_argument("--layers", type=int, default=d.layers, help=f"MoE layers kept, the trace's first ({d.layers})")
    for name, help_ in (("hidden", "hidden width"), ("expert-ffn", "expert FFN width"),
                        ("shared-experts", "shared experts per MoE layer"), ("vocab", "vocabulary of the LM head"),
                        ("heads", "attention heads (GQA)"), ("kv-heads", "KV heads"), ("head-dim", "head width")):
        default = getattr(d, name.replace("-", "_"))
        g.add_argument(f"--{name}", type=int, default=default, help=f"{help_} ({default}; 0: the preset's)")


def shape_from_args(args: argparse.Namespace):
    from simulator.measure.shape import HarnessShape

    vals = {k: getattr(args, k) for k in ("hidden", "expert_ffn", "shared_experts", "vocab", "heads", "kv_heads",
                                          "head_dim")}
    for k, v in vals.items():
        if v is not None and v < 0:
            raise UserError(f"must be >= 0, got {v}", field=f"--{k.replace('_', '-')}")
    vals = {k: (v or None) if k != "shared_experts" else v for k, v in vals.items()}
    return HarnessShape(model=args.model, layers=args.layers, **vals)


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads torch uses (1: steady timings on a shared box)")


def parse_bits(text: str) -> tuple[int, ...]:
    try:
        bits = tuple(sorted({int(b) for b in text.split(",") if b.strip()}))
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}", field="--bits") from None
    if not bits or any(not 1 <= b <= 8 for b in bits):
        raise UserError(f"code widths must lie in 1-8, got {text!r}", field="--bits")
    return bits


def register(subparsers) -> None:
    p = subparsers.add_parser("profile", help="microbenchmark this machine into a hwconfig + runtime profile",
                              description="Time copies, per-op cost, memory bandwidth, GEMM rate and every op "
                                          "kind of the measure harness with torch; write hwconfig.yaml, "
                                          "runtime.yaml, model.yaml and profile.json.")
    add_device_arguments(p)
    add_shape_arguments(p)
    p.add_argument("--bits", default="2,3,4,8", help="low-bit code widths to time the dequant kernel at (2,3,4,8)")
    p.add_argument("--rank", type=int, default=32, help="compensator rank to time (32; 0: none)")
    p.add_argument("--group", type=int, default=128, help="quantization group (128)")
    p.add_argument("--context", type=int, default=512, help="KV context the attention op is timed at (512)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per figure (5; --quick 3)")
    p.add_argument("--iters", type=int, default=None, help="calls per timed run (20; --quick 4)")
    p.add_argument("--quick", action="store_true", help="few repeats, small buffers: seconds, for tests and CI")
    p.add_argument("--cpu-single-thread", type=float, default=None,
                   help="the host CPU's PassMark single-thread rating, when known (else the profiler's own score)")
    p.add_argument("--out", type=Path, help="directory for the files (refused if it exists, unless a previous "
                                            "profile and --force)")
    p.add_argument("--force", action="store_true", help="replace --out when it holds a previous moesim profile")
    p.add_argument("--json", action="store_true", help="print the summary (raw figures, YAML texts) as JSON")
    p.set_defaults(func=main)


def settings_from_args(args):
    from simulator.measure.microbench import Settings

    s = Settings.quick() if args.quick else Settings()
    for name in ("repeats", "iters"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise UserError(f"must be >= 1, got {value}", field=f"--{name}")
            s = Settings(**{**s.__dict__, name: value})
    return s


def main(args: argparse.Namespace) -> int:
    from simulator.fileio import check_output_dir, dumps_json

    if args.out is not None:
        check_output_dir(args.out, "profile", args.force)
    from simulator.measure.device import resolve_device
    from simulator.measure.profile_writer import profile

    device = resolve_device(args.device, args.threads)
    shape = shape_from_args(args)
    shape.model_spec()  # a bad shape fails before anything is timed
    if args.rank < 0 or args.group < 1 or args.context < 0:
        raise UserError("--rank and --context must be >= 0 and --group >= 1", field="--rank")
    log = None if args.json else (lambda msg: print(f"moesim profile: {msg}", file=sys.stderr))
    summary = profile(device, shape, args.out, settings=settings_from_args(args), bits=parse_bits(args.bits),
                      rank=args.rank, group=args.group, context=args.context,
                      single_thread=args.cpu_single_thread, force=args.force, log=log)
    if args.json:
        print(dumps_json(summary, sort_keys=True))
    else:
        if args.out is None:
            print(summary["hwconfig_yaml"])
            print("---")
            print(summary["runtime_yaml"])
        else:
            print(f"wrote {args.out}/hwconfig.yaml, runtime.yaml, model.yaml, profile.json ({summary['device']}, "
                  f"load average {', '.join(f'{x:.2f}' for x in summary['loadavg_after'])})")
            from simulator.policies.registry import POLICIES

            method = next(n for n, c in POLICIES.items() if c.compensates and not c.needs_ndp)
            print(f"  moesim simulate {args.out}/hwconfig.yaml --runtime {args.out}/runtime.yaml --policy {method}")
    return 0
