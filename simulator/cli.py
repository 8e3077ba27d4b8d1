"""The `moesim` command line: thin subcommands that call the library.

Each subcommand lives in simulator/commands/<name>.py and exposes `register(subparsers)`, which adds
its parser and sets `func` to a callable taking the parsed arguments and returning an exit code.
Bad input raises UserError, printed here as one line on stderr with exit status 2 and no traceback; so
does an OSError from the environment (a full disk, a permission denied). --json output is strict JSON
(simulator.fileio.dumps_json: NaN and inf are null).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pydantic import ValidationError

from simulator import __version__
from simulator.errors import UserError, format_validation_error

COMMANDS = ["simulate", "trace", "compensate", "accuracy", "sweep", "plot", "validate", "serve", "profile", "measure"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moesim",
        description="Simulate MoE decoding with offloaded low-bit experts, low-rank compensation and NDP.")
    parser.add_argument("--version", action="version", version=f"moesim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"simulator.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"simulator.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"moesim {args.command}: error: {exc.render()}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"moesim {args.command}: error: {format_validation_error(exc).render()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moesim {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `moesim trace stats ... --json | head`: the reader left early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # the environment, not a bug: a full disk, a permission, a vanished file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"moesim {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
