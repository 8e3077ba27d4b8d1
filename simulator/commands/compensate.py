"""`moesim compensate`: quantize routed experts, allocate ranks, write the compensation plan."""

from __future__ import annotations

import argparse

from simulator.precision import QUANTIZER_BITS


def add_weight_args(p: argparse.ArgumentParser) -> None:
    """Arguments shared by compensate and accuracy."""
    p.add_argument("--weights", default="minilm",
                   help="'minilm' (shipped MoEfied all-MiniLM-L6-v2) or a Hugging Face MoE checkpoint directory")
    p.add_argument("--bits", type=int, required=True, choices=QUANTIZER_BITS, metavar="B",
                   help=f"bits per weight, {QUANTIZER_BITS.start}-{QUANTIZER_BITS.stop - 1}")
    p.add_argument("--group", type=int, default=128, help="quantization group size along the input dimension")
    p.add_argument("--rank-budget", type=float, default=0.0, metavar="R",
                   help="average rank per routed expert over all MoE layers (each of an expert's matrices "
                        "gets its rank); the total round(R x layers x experts) is split by --alloc")
    p.add_argument("--alloc", choices=["kurtosis", "uniform", "energy"], default="kurtosis")
    p.add_argument("--alpha", type=float, default=1.0, help="kurtosis rule: rank proportional to kurtosis^alpha")
    p.add_argument("--max-rank", type=int, default=None, help="per-expert rank cap (default: smallest matrix dim)")
    p.add_argument("--hqq", action="store_true", help="half-quadratic refinement of the zero points")
    p.add_argument("--act-aware", action="store_true",
                   help="activation-aware factors (LQER/EoRA-style input scaling; needs activations)")
    p.add_argument("--svd", choices=["exact", "randomized"], default="exact")
    p.add_argument("--factor-dtype", choices=["fp16", "int8"], default="fp16",
                   help="factor storage: fp16, or int8 with an fp16 scale per factor column")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text", default=None, metavar="FILE",
                   help="checkpoints: text run through the model, one sequence per non-empty line "
                        "(default: the shipped sample simulator/data/sample.txt)")
    p.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="checkpoints: tokenizer directory when --weights DIR has none")
    p.add_argument("--max-tokens", type=int, default=1024, help="checkpoints: tokens of text to use")


def settings_from(args):
    from simulator.accuracy.pipeline import Settings
    from simulator.errors import UserError

    if args.group < 1:
        raise UserError("must be >= 1", field="--group")
    if args.rank_budget < 0:
        raise UserError("must be >= 0", field="--rank-budget")
    return Settings(bits=args.bits, group=args.group, rank_budget=args.rank_budget, alloc=args.alloc,
                    alpha=args.alpha, max_rank=args.max_rank, hqq=args.hqq, act_aware=args.act_aware,
                    method=args.svd, factor_dtype=args.factor_dtype, seed=args.seed)


def text_options(args) -> dict:
    return {"text": args.text, "tokenizer": args.tokenizer, "max_tokens": args.max_tokens}


def run(args) -> int:
    from pathlib import Path

    from simulator.accuracy.api import compensate
    from simulator.accuracy.plan import SUFFIXES, save_plan
    from simulator.errors import UserError
    from simulator.fileio import check_output_file

    check_output_file(args.out, args.force, is_previous=_is_previous_plan)  # refuse before any work
    if Path(args.out).suffix not in SUFFIXES:  # before the work, not after it
        raise UserError(f"plan file must end in {' or '.join(SUFFIXES)}", source=args.out, field="--out")
    df, meta = compensate(args.weights, settings_from(args), **text_options(args))
    check_output_file(args.out, args.force, is_previous=_is_previous_plan)
    path = save_plan(df, meta, args.out)
    print(f"wrote {path}: {len(df)} experts, mean rank {df['rank'].mean():.2f}, "
          f"rel. weight error {df['err_before'].mean():.4f} -> {df['err_after'].mean():.4f}, "
          f"bytes/expert {(df['bytes_lowbit'] + df['bytes_factors']).mean():.0f}")
    return 0


def _is_previous_plan(path) -> bool:
    """A plan moesim wrote: Parquet with the plan's schema metadata, or CSV with the plan's header and
    its .meta.json sidecar."""
    from pathlib import Path

    from simulator.accuracy.plan import COLUMNS, META_KEY

    path = Path(path)
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return META_KEY in (pq.read_schema(path).metadata or {})
        if path.suffix == ".csv":
            with path.open(encoding="utf-8") as f:
                header = f.readline().strip().split(",")
            return header == list(COLUMNS) and path.with_name(path.name + ".meta.json").is_file()
    except Exception:  # noqa: BLE001 -- unreadable or not Parquet (pyarrow raises its own types): not ours
        return False
    return False


def register(subparsers) -> None:
    p = subparsers.add_parser("compensate", help="quantize experts and allocate low-rank compensation ranks",
                              description=__doc__)
    add_weight_args(p)
    p.add_argument("--out", required=True, help="plan file (.parquet or .csv)")
    p.add_argument("--force", action="store_true", help="replace --out when it holds a previous plan")
    p.set_defaults(func=run)
