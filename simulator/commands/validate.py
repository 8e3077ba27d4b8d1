"""`moesim validate`: simulate published measured points and print predicted vs measured."""

from __future__ import annotations

import argparse

from simulator.commands.run_flags import describe
from simulator.config.run import RunSpec


def register(subparsers) -> None:
    parser = subparsers.add_parser("validate", help="compare simulated throughput (and energy per token) with published measurements")
    parser.add_argument("files", nargs="*", help="validation YAML files (default: every validation/*.yaml)")
    parser.add_argument("--engine", choices=describe(RunSpec.model_fields["engine"])["choices"], default=None,
                        help="override each point's engine (default: the point's, i.e. des)")
    parser.add_argument("--fit", action="store_true",
                        help="fit each point's `calibrates:` figure to its measurement and print it (shipped vs "
                             "fitted); with --out, also write each fitted runtime profile there")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="with --fit: write <runtime>-fitted-<hwconfig>.yaml profiles into DIR (a new folder, "
                             "or one moesim wrote; --force to overwrite)")
    parser.add_argument("--force", action="store_true", help="with --out: overwrite moesim's files in DIR")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {name, measured, predicted, unit, rel_error, ...} (J/token rows add "
                             "energy_scope and predicted_breakdown_j_per_token; predicted null where the "
                             "hwconfig has no energy figures)")
    parser.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simulator.fileio import dumps_json
    from simulator.validate import error_summary, fit, validate, validation_files, write_fitted_profiles

    paths = [Path(p) for p in args.files] or validation_files()
    if args.fit:
        fits = fit(paths, engine=args.engine)
        if args.out is not None:
            write_fitted_profiles(fits, Path(args.out), force=args.force)
        if args.json:
            print(dumps_json([{k: v for k, v in f.items() if k != "profile"} for f in fits], indent=1))
        for f in [] if args.json else fits:
            print(f"{f['runtime']} on {f['hwconfig']}: {f['figure']} fitted {1e6 * f['fitted']:.2f} us on "
                  f"{f['name']} (shipped profile: {1e6 * f['shipped']:.2f} us on this host)")
        return 0
    rows = validate(paths, engine=args.engine)
    if args.json:
        print(dumps_json(rows, indent=1))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'point':<{width}}  {'measured':>9}  {'predicted':>9}  {'unit':<9} {'error':>7}")
    for r in rows:
        note = f"  [{r['runtime']}]" + (f" (calibrates {r['calibrates']})" if r["calibrates"] else "")
        if r["unit"] == "J/token":
            note = f"  (measured: {r['energy_scope']})"
        if r["predicted"] is None:
            print(f"{r['name']:<{width}}  {r['measured']:9.3f}  {'n/a':>9}  {r['unit']:<9} {'n/a':>7}"
                  f"  ({r['hwconfig']} has no energy figures)")
            continue
        print(f"{r['name']:<{width}}  {r['measured']:9.3f}  {r['predicted']:9.3f}  {r['unit']:<9} "
              f"{100 * r['rel_error']:+6.1f}%{note}")
    s = error_summary(rows)
    for prefix, what in (("", "points"), ("held_out_", "prediction points")):
        if s[f"{prefix}points"] and (prefix == "" or s["held_out_points"] < s["points"]):
            print(f"{s[f'{prefix}points']} {what}: median |error| {100 * s[f'{prefix}median_abs_rel_error']:.1f}%, "
                  f"worst |error| {100 * s[f'{prefix}worst_abs_rel_error']:.1f}%")
    for runtime, kinds in s["by_runtime"].items():
        parts = [f"{k['points']} {kind}: median {100 * k['median_abs_rel_error']:.1f}%, worst "
                 f"{100 * k['worst_abs_rel_error']:.1f}%" for kind, k in kinds.items()]
        print(f"  runtime {runtime}: " + "; ".join(parts))
    if s.get("energy_predicted_points"):
        print(f"{s['energy_predicted_points']} energy points (J/token): median |error| "
              f"{100 * s['energy_median_abs_rel_error']:.1f}%, worst |error| {100 * s['energy_worst_abs_rel_error']:.1f}%")
    return 0
