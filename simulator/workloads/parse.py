"""Workload CSV files -> Workload, with one-line errors naming the file, the row and the field.

Two layouts are read (plain or gzip, chosen by the file's first bytes):

    arrival_s,prompt_tokens,output_tokens            moesim's (workloads/*.csv.gz): seconds from the start
    TIMESTAMP,ContextTokens,GeneratedTokens          the Azure LLM inference trace's raw files: wall-clock
                                                     timestamps, made seconds from the first row

Extra columns are ignored. Rows are numbered from 1 after the header (`row 1` is the file's second line).
Each row must give a finite time >= 0 and integer token counts >= 1; times must strictly increase (sorted,
no duplicates), so the first-come-first-served order is the file's order.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from pathlib import Path

import numpy as np

from simulator.errors import UserError
from simulator.workloads.table import Workload

COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError("file not found", source=path, field="workload") from None
    except IsADirectoryError:
        raise UserError("is a directory; expected a CSV file", source=path, field="workload") from None
    except OSError as exc:
        raise UserError(f"cannot read file ({exc.__class__.__name__})", source=path, field="workload") from None
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"not a readable (gzip) UTF-8 CSV ({exc.__class__.__name__})", source=path,
                        field="workload") from None


def parse_workload(text: str, source: str | Path) -> Workload:
    """The workload in CSV `text` (either layout); `source` names it in errors."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise UserError(f"empty file; expected a header {','.join(COLUMNS)}", source=source, field="header")
    header = [h.strip() for h in header]
    for layout in (COLUMNS, AZURE_COLUMNS):
        if set(layout) <= set(header):
            break
    else:
        ours = [c for c in COLUMNS if c not in header]
        raise UserError(f"missing column{'s' if len(ours) > 1 else ''} {', '.join(ours)}; expected "
                        f"{','.join(COLUMNS)} (or the Azure trace's {','.join(AZURE_COLUMNS)})", source=source,
                        field="header")
    at = [header.index(c) for c in layout]
    azure = layout is AZURE_COLUMNS
    times, prompt, output = [], [], []
    for row_no, row in enumerate(reader, start=1):
        if not row or all(not c.strip() for c in row):
            continue  # blank line
        if len(row) < len(header):
            raise UserError(f"{len(row)} fields, the header has {len(header)}", source=source, field=f"row {row_no}")
        t_text, p_text, o_text = (row[i].strip() for i in at)
        times.append(_timestamp(t_text, source, row_no, layout[0]) if azure
                     else _seconds(t_text, source, row_no, layout[0]))
        prompt.append(_tokens(p_text, source, row_no, layout[1]))
        output.append(_tokens(o_text, source, row_no, layout[2]))
        if len(times) > 1 and not times[-1] > times[-2]:
            what = "repeats" if times[-1] == times[-2] else "comes before"
            raise UserError(f"time {t_text!r} {what} the previous row's; arrivals must be sorted and distinct",
                            source=source, field=f"row {row_no}: {layout[0]}")
    if not times:
        raise UserError("no requests after the header", source=source, field="row 1")
    arrival = np.array(times, dtype=np.int64 if azure else np.float64)
    if azure:  # nanoseconds since the epoch -> seconds from the first request
        arrival = (arrival - arrival[0]).astype(np.float64) / 1e9
    return Workload(arrival, np.array(prompt, dtype=np.int64), np.array(output, dtype=np.int64), str(source))


def _seconds(text: str, source, row: int, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{text!r} is not a number of seconds", source=source, field=f"row {row}: {field}") from None
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{text!r}: expected a finite time >= 0 s", source=source, field=f"row {row}: {field}")
    return value


def _timestamp(text: str, source, row: int, field: str) -> int:
    try:
        stamp = np.datetime64(text.replace(" ", "T"), "ns")
    except ValueError:
        stamp = np.datetime64("NaT")
    if np.isnat(stamp):
        raise UserError(f"{text!r} is not a timestamp like '2023-11-16 18:15:46.6805900'", source=source,
                        field=f"row {row}: {field}")
    return int(stamp.astype(np.int64))


def _tokens(text: str, source, row: int, field: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{text!r} is not a whole number of tokens", source=source,
                        field=f"row {row}: {field}") from None
    if value < 1:
        raise UserError(f"{value} tokens; expected at least 1", source=source, field=f"row {row}: {field}")
    return value


def load_csv(path: str | Path) -> Workload:
    path = Path(path)
    return parse_workload(read_text(path), path)
