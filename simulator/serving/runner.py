"""RunSpec + ServeSpec -> a served workload: the scenario and KV budget, the serving loop, the result.

HBM: free = HBM - resident weights - reserve (simulator.simulate.build_scenario's figure without its KV);
the KV budget is ServeSpec.kv_bytes, else kv_share x free, else (when --cache-bytes or
--cache-experts-per-layer fix the expert cache) all that the cache leaves. The expert cache gets what the
KV budget leaves unless given; the two together must fit in `free`, and the scenario's free HBM is free -
KV budget (so gpu-resident's experts must fit beside the KV cache).

The loop: at the timer's clock, arrivals join the queue; when nothing runs or waits the clock jumps to
the next arrival; else the scheduler plans a chunk of steps (about as many as start before the next
arrival, from the last chunk's step time), the timer times them and keeps those that start before the
next arrival, and the scheduler is advanced by exactly those. The result is the one of composing and
timing step by step (the tests compare both), at a kernel call per chunk.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulator import prefetch as prefetchers
from simulator.config.run import RunSpec
from simulator.config.serve import ServeSpec
from simulator.errors import UserError
from simulator.scenario import Scenario
from simulator.serving.kv import KVBudget
from simulator.serving.metrics import max_sustainable_rate, request_table, summarize_requests
from simulator.serving.routing import RequestRouting
from simulator.serving.scheduler import Scheduler
from simulator.serving.timers import AnalyticTimer, DESTimer
from simulator.workloads.generate import make_workload
from simulator.workloads.loading import load_workload
from simulator.workloads.table import Workload

MAX_CHUNK = 256  # steps planned per chunk at most (Python work per chunk vs. work redone after a cut)
STEP_COLUMNS = ("start_s", "end_s", "tokens", "decode_tokens", "prefill_tokens", "batch", "waiting", "kv_bytes")


@dataclass
class ServeResult:
    requests: pd.DataFrame  # one row per request (simulator.serving.metrics.REQUEST_COLUMNS)
    steps: pd.DataFrame     # one row per step: STEP_COLUMNS (+ the engine's per-step columns)
    summary: dict


def serving_scenario(run: RunSpec, serve: ServeSpec) -> tuple[Scenario, float]:
    """The scenario of a serving run (its cache and free HBM as above) and the KV budget in bytes."""
    from simulator.simulate import build_scenario

    if serve.max_batch > serve.max_tokens_per_step:
        raise UserError(f"max batch {serve.max_batch} exceeds max tokens per step {serve.max_tokens_per_step}: "
                        "the decodes alone would not fit a step", field="max_batch")
    base = run.model_copy(update={"batch": 1, "tokens": 1, "prompt": 0, "context": 0})
    probe = build_scenario(base.model_copy(update={"cache_bytes": None, "cache_experts_per_layer": None}))
    model = probe.model
    token_kv = model.kv_bytes_per_token * model.layers
    free = probe.free_hbm + token_kv  # build_scenario kept one token of KV (batch 1 x 1 step) out of it
    cache_given = run.cache_bytes is not None or run.cache_experts_per_layer is not None
    if serve.kv_bytes is not None:
        kv = serve.kv_bytes
    elif cache_given:
        kv = free - build_scenario(base).cache_total_bytes
    else:
        kv = serve.kv_share * free
    if kv <= 0 or kv > free:
        raise UserError(f"the KV budget {kv / 1e9:.2f} GB does not fit in the {free / 1e9:.2f} GB of HBM free after "
                        "resident weights and reserve (and the expert cache)", field="kv_bytes")
    sc = build_scenario(base if cache_given else base.model_copy(update={"cache_bytes": min(free - kv,
                                                                                            probe.free_hbm)}))
    if sc.cache_total_bytes + kv > free * (1 + 1e-12):
        raise UserError(f"the expert cache {sc.cache_total_bytes / 1e9:.2f} GB and the KV budget {kv / 1e9:.2f} GB "
                        f"exceed the {free / 1e9:.2f} GB of HBM free after resident weights and reserve",
                        field="kv_bytes")
    sc.free_hbm = free - kv
    return sc, kv


def serving_workload(run: RunSpec, serve: ServeSpec) -> Workload:
    return make_workload(load_workload(serve.workload), kind=serve.arrivals, rate=serve.rate,
                         duration=serve.duration, start=serve.start, cv=serve.cv, prompt=serve.prompt_tokens,
                         output=serve.output_tokens, seed=run.seed)


def serve_loop(w: Workload, sched: Scheduler, timer, chunked: bool = True) -> tuple[pd.DataFrame, dict]:
    """Serve `w` with `sched` and `timer` until every request finishes: the step table (STEP_COLUMNS) and
    per-request times (admitted, first token, finish: arrays [N]). `chunked` False plans one step at a
    time (the reference the chunked loop must equal)."""
    n = len(w)
    times = {name: np.full(n, np.nan) for name in ("admitted", "first", "finish")}
    cols = {name: [] for name in STEP_COLUMNS}
    dt = None
    while not sched.finished:
        sched.arrive(timer.now)
        if sched.idle:
            timer.advance(sched.next_arrival())
            continue
        until = sched.next_arrival()
        if not chunked:
            steps = 1
        elif math.isinf(until):
            steps = MAX_CHUNK
        else:
            steps = 1 if dt is None else max(1, min(MAX_CHUNK, math.ceil((until - timer.now) / dt)))
        trial = sched.copy()
        plan = trial.plan(steps)
        k, start, end = timer.run(plan, until)
        if k == plan.steps:
            sched = trial
        else:  # the steps from k on would have seen a new arrival: compose only the k that ran
            plan = sched.plan(k)
        dt = max(float(end[-1] - start[0]) / k, 1e-12)
        for (s, r) in plan.admitted:
            times["admitted"][r] = start[s]
        for (s, r) in plan.first:
            times["first"][r] = end[s]
        for (s, r) in plan.finished:
            times["finish"][r] = end[s]
        for name, x in (("start_s", start), ("end_s", end), ("tokens", plan.lens), ("decode_tokens", plan.decode),
                        ("prefill_tokens", plan.lens - plan.decode), ("batch", plan.batch),
                        ("waiting", plan.waiting), ("kv_bytes", plan.kv_bytes)):
            cols[name].append(np.asarray(x[:k]))
    steps = pd.DataFrame({name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in cols.items()})
    for name in ("tokens", "decode_tokens", "prefill_tokens", "batch", "waiting"):
        steps[name] = steps[name].astype("int64")
    return steps, times


def serve(run: RunSpec, spec: ServeSpec, *, chunked: bool = True) -> ServeResult:
    """Serve the ServeSpec's workload on the RunSpec's machine, timed by run.engine (analytic or des)."""
    t0 = time.perf_counter()
    sc, kv_bytes = serving_scenario(run, spec)
    w = serving_workload(run, spec)
    model = sc.model
    kv = KVBudget(kv_bytes, model.kv_bytes_per_token * model.layers, spec.kv_block)
    need = w.prompt + w.output
    too_big = np.flatnonzero([not kv.fits_ever(int(t)) for t in need])
    if len(too_big):
        i = int(too_big[0])
        raise UserError(f"request {i} (arrival {w.arrival_s[i]:.3f} s: {int(w.prompt[i])} prompt + "
                        f"{int(w.output[i])} output tokens) needs {kv.blocks(int(need[i])) * kv.block * kv.bytes_per_token / 1e9:.3f} "
                        f"GB of KV cache but the budget is {kv_bytes / 1e9:.3f} GB", source=w.source, field="kv_bytes")
    if sc.prefetch_mode == prefetchers.TRANSITIONS:
        raise UserError("the transitions prefetcher is not modelled in serving: its calibration prefix is trace "
                        "tokens that requests replay; use --prefetcher previous-token, --prefetch (recall) or none",
                        field="prefetcher")
    sc.policy.prepare(sc)
    routing = RequestRouting(sc.trace, len(w))
    timer = (AnalyticTimer if run.engine == "analytic" else DESTimer)(sc, routing, spec.max_tokens_per_step)
    sched = Scheduler(w.arrival_s, w.prompt, w.output, spec.max_batch, spec.max_tokens_per_step, kv)
    steps, times = serve_loop(w, sched, timer, chunked=chunked)
    for name, col in (timer.rows or {}).items():  # the engine's per-step columns (those it fills; none for fixed costs)
        if name not in steps.columns and name != "step" and len(col) == len(steps):
            steps[name] = np.frombuffer(col, dtype=np.float64) if len(col) else np.zeros(0)
    req = request_table(w.arrival_s, times["admitted"], times["first"], times["finish"], w.prompt, w.output,
                        spec.slo_ttft, spec.slo_tpot)
    summary = {"policy": sc.policy.name, "hwconfig": sc.system.name, "model": model.name,
               "routing_trace": sc.trace.meta.name, "workload": spec.workload, "arrivals": spec.arrivals,
               "offered_rate": len(w) / spec.duration, "engine": run.engine,
               "kv_budget_bytes": kv_bytes, "cache_capacity_bytes": sc.cache_total_bytes,
               **summarize_requests(req, steps, spec.slo_ttft, spec.slo_tpot),
               "sustainable": None, "wall_s": time.perf_counter() - t0,
               "run": run.model_dump(), "serve": spec.model_dump()}
    att = summary["slo_attainment"]
    summary["sustainable"] = att is not None and att >= spec.slo_attainment
    return ServeResult(req, steps, summary)


def serve_rates(run: RunSpec, spec: ServeSpec, rates: list[float]) -> tuple[pd.DataFrame, float | None]:
    """A rate sweep: one summary row per rate (flattened) and the max sustainable rate under the SLO."""
    rows = []
    for rate in rates:
        s = serve(run, spec.model_copy(update={"rate": rate})).summary
        rows.append({"rate": rate, **flatten(s)})
    table = pd.DataFrame(rows)
    best = max_sustainable_rate(list(table["rate"]), list(table["slo_attainment"]), spec.slo_attainment)
    return table, best


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("run", "serve"):
            out.update(flatten(v, f"{prefix}{k}."))
        elif k not in ("run", "serve"):
            out[f"{prefix}{k}"] = v
    return out
