"""Export an EventLog as Chrome Trace Event Format JSON (opens in ui.perfetto.dev and chrome://tracing).

Each component track becomes a (pid, tid) pair: one process per component ("GPU", "link pcie",
"link cxl", "NDP") with one thread per stream, copy engine or unit, named by "process_name" and
"thread_name" metadata events (ph "M"). Every op or transfer is a complete event (ph "X") with ts and dur
in microseconds, its layer / expert / bytes in args. Engines of one link direction get a thread each,
so events on one thread never overlap.
"""

from __future__ import annotations

import json
from pathlib import Path

from simulator.des.log import EventLog
from simulator.fileio import atomic_write


def chrome_trace(log: EventLog) -> dict:
    pids: dict[str, int] = {}
    meta, tid_of = [], []
    for process, thread in log.tracks:
        if process not in pids:
            pids[process] = len(pids) + 1
            meta.append({"ph": "M", "name": "process_name", "pid": pids[process], "tid": 0,
                         "args": {"name": process}})
        tid = len(tid_of) + 1
        tid_of.append((pids[process], tid))
        meta.append({"ph": "M", "name": "thread_name", "pid": pids[process], "tid": tid, "args": {"name": thread}})
    events = []
    for i in range(len(log)):
        pid, tid = tid_of[log.track_id[i]]
        name = log.names[log.name_id[i]]
        layer, expert, nbytes = log.layer[i], log.expert[i], log.nbytes[i]
        args = {}
        if layer >= 0:
            args["layer"] = layer
        if expert >= 0:
            args["expert"] = expert
            name = f"{name} E{expert}"
        if nbytes:
            args["bytes"] = nbytes
        events.append({"name": name, "cat": log.names[log.name_id[i]], "ph": "X", "pid": pid, "tid": tid,
                       "ts": log.start[i] * 1e6, "dur": (log.end[i] - log.start[i]) * 1e6, "args": args})
    return {"traceEvents": meta + events, "displayTimeUnit": "ms"}


def write_chrome_trace(log: EventLog, path: str | Path) -> Path:
    """Write the trace JSON atomically (temp file beside `path`, then rename)."""
    path = Path(path)
    trace = chrome_trace(log)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(trace, separators=(",", ":")), encoding="utf-8"))
    return path
