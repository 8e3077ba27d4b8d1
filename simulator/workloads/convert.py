"""The Azure LLM inference trace 2023 -> moesim's workload CSV (workloads/azure-{conv,code}.csv.gz).

    python -m simulator.workloads.convert SRC_DIR OUT_DIR

reads SRC_DIR/AzureLLMInferenceTrace_{conv,code}.csv(.gz) (columns TIMESTAMP, ContextTokens,
GeneratedTokens; github.com/Azure/AzurePublicDataset) and writes OUT_DIR/azure-{conv,code}.csv.gz with
columns arrival_s (seconds from the first request, microsecond resolution), prompt_tokens, output_tokens,
one row per request in arrival order. Every row is kept; the conversion refuses a trace whose rounded
times would not strictly increase. The gzip header carries no name or time, so reruns give identical bytes.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
from pathlib import Path

import numpy as np

from simulator.errors import UserError
from simulator.fileio import atomic_write
from simulator.workloads.parse import load_csv
from simulator.workloads.table import Workload

SERVICES = {"conv": "azure-conv", "code": "azure-code"}


def to_csv(w: Workload) -> str:
    """The workload as moesim's CSV text (times rounded to the microsecond)."""
    micros = np.round(w.arrival_s * 1e6).astype(np.int64)
    if np.any(np.diff(micros) <= 0):
        raise UserError("two requests less than 1 us apart: the CSV's microsecond times would not increase",
                        source=w.source, field="arrival_s")
    out = io.StringIO()
    out.write("arrival_s,prompt_tokens,output_tokens\n")
    for us, p, o in zip(micros.tolist(), w.prompt.tolist(), w.output.tolist()):
        out.write(f"{us // 1_000_000}.{us % 1_000_000:06d},{p},{o}\n")
    return out.getvalue()


def write_gzip_csv(w: Workload, path: Path) -> None:
    data = gzip.compress(to_csv(w).encode(), compresslevel=9, mtime=0)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def convert(src: Path, out: Path) -> list[Path]:
    written = []
    for service, name in SERVICES.items():
        candidates = [src / f"AzureLLMInferenceTrace_{service}.csv{ext}" for ext in (".gz", "")]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise UserError(f"no AzureLLMInferenceTrace_{service}.csv(.gz) here", source=src)
        write_gzip_csv(load_csv(found), out / f"{name}.csv.gz")
        written.append(out / f"{name}.csv.gz")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    args = p.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for path in convert(args.src, args.out):
            print(path)
    except UserError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
