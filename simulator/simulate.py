"""Resolve a RunSpec (names and numbers) into a Scenario, run it, and return the summary.

`simulate(spec) -> dict` is what sweeps call; `run_spec(spec)` also returns the raw RunResult for the
per-step table and the timeline. All user-input checks live in `build_scenario` and raise one-line
UserErrors: unknown names, trace/model shape mismatch, --rank or --plan on a policy without
compensation, --top-n above the model's k, an NDP policy on a system without NDP units, a plan for
another model shape, resident weights + KV that overflow HBM, gpu-resident experts that do not fit, a
batch above the trace's sequences, a rank above the expert matrices' smaller side, a cache above the free
HBM or with more experts per layer than the model has, --bits/--group/--weight-format that disagree with
the plan (a plan gives them when they are not given), a weight format that cannot store the model's
matrices at its bits and group (experts: --weight-format/--bits/--group; attention: --attention-format/
--attention-bits/--attention-group).

GPU expert cache capacity (bytes):
    free = HBM - resident weights (attention at RunSpec.attention_bits in attention_format, attention_group)
           - KV of the batch at the largest
           context (context + prompt + decode steps) - gpu.reserved_memory
    capacity = RunSpec.cache_bytes if given; else, with cache_experts_per_layer = K, a cache per MoE
           layer of K x (the largest expert's bytes in the policy's slot forms); else `free`.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np

from simulator.config.model import ModelSpec, load_model
from simulator.config.run import RunSpec
from simulator.config.runtime import Runtime, load_runtime
from simulator.config.system import SystemSpec, load_system
from simulator.des.engine import run
from simulator.errors import UserError
from simulator.formats import DEFAULT_FORMAT, FormatError, weight_format
from simulator.metrics import summarize
from simulator.policies.registry import get_policy, names
from simulator.precision import FULL_PRECISION_BITS
from simulator.routing.trace import Trace, check_trace_matches_model, load_trace
from simulator.scenario import ExpertSizes, RunResult, Scenario
from simulator.schedule import steps_bound

DEFAULT_RANK = 32  # compensator rank of lrc policies when neither --rank nor --plan is given


def load_run_trace(spec: RunSpec, model: ModelSpec) -> Trace:
    if spec.synthetic_tokens is not None:
        from simulator.routing.synthetic import synthesize

        return synthesize(model, spec.synthetic_tokens, spec.seed, sequences=spec.batch)
    if spec.trace is None:
        raise UserError("give a trace directory or --synthetic-tokens", field="trace")
    trace = load_trace(spec.trace)
    check_trace_matches_model(trace, model, source=spec.trace)
    return trace


def with_plan_format(spec: RunSpec) -> RunSpec:
    """A run with a plan takes its bits and group from the plan unless they were given; given ones that
    disagree with the plan are a UserError (the plan's bytes and ranks are those of its format)."""
    if spec.plan is None:
        return spec
    from simulator.accuracy.plan import load_plan

    df, meta = load_plan(spec.plan)
    update = {}
    for name in ("bits", "group"):
        values = sorted(set(df[name].astype(int).tolist()))
        if name in spec.model_fields_set and values != [getattr(spec, name)]:
            raise UserError(f"--{name} {getattr(spec, name)} disagrees with the plan's {name} "
                            f"{', '.join(map(str, values))}; leave --{name} out to take the plan's",
                            source=spec.plan, field=name)
        if name not in spec.model_fields_set and len(values) == 1:
            update[name] = values[0]
    # the plan's bytes_lowbit are those of its weight format (plans before formats: the project's own)
    fmt = meta.get("weight_format", DEFAULT_FORMAT)
    if "weight_format" in spec.model_fields_set and spec.weight_format != fmt:
        raise UserError(f"--weight-format {spec.weight_format} disagrees with the plan's weight format {fmt} (its "
                        "bytes are that layout's); leave --weight-format out to take the plan's",
                        source=spec.plan, field="weight_format")
    if "weight_format" not in spec.model_fields_set and spec.weight_format != fmt:
        update["weight_format"] = fmt
    return spec.model_copy(update=update) if update else spec


def check_formats(spec: RunSpec, model: ModelSpec) -> None:
    """A UserError naming the RunSpec field when the expert or attention format cannot store `model`'s
    matrices at its bits and group (simulator.formats.FormatError's field -> the flag)."""
    for which, shapes, prefix in (("expert", model.expert_shapes, ""), ("attention", model.attention_shapes,
                                                                          "attention_")):
        family = getattr(spec, f"{prefix}format" if prefix else "weight_format")
        bits, group = getattr(spec, f"{prefix}bits"), getattr(spec, f"{prefix}group")
        flags = {"bits": f"{prefix}bits", "group": f"{prefix}group"}
        try:
            fmt = weight_format(family, bits, group)
            for d_in, d_out in shapes:
                fmt.check_shape(d_in, d_out)
        except FormatError as exc:
            field = flags.get(exc.field, f"{prefix}format" if prefix else "weight_format")
            raise UserError(f"{which} weights of {model.name}: {exc}", field=field) from None


def expert_sizes(spec: RunSpec, model: ModelSpec, compensates: bool) -> ExpertSizes:
    """Per-expert bytes, bits and ranks: uniform from (bits, group, rank) or from a plan file."""
    shape = (model.moe_layers, model.num_experts)
    full = np.full(shape, model.expert_bytes(FULL_PRECISION_BITS))
    largest = min(model.hidden, model.expert_ffn)  # a rank-r factorisation of a matrix needs r <= its smaller side
    if spec.plan is None:
        rank = (spec.rank if spec.rank is not None else DEFAULT_RANK) if compensates else 0
        if rank > largest:
            raise UserError(f"rank {rank} exceeds {largest}, the smaller dimension of {model.name}'s expert "
                            f"matrices ({model.hidden} x {model.expert_ffn})", field="rank")
        return ExpertSizes(lowbit=np.full(shape, model.expert_bytes(spec.bits, spec.group, spec.weight_format)),
                           factors=np.full(shape, float(model.expert_factor_bytes(rank))), full=full,
                           bits=np.full(shape, spec.bits, dtype=np.int64),
                           rank=np.full(shape, rank, dtype=np.int64))
    from simulator.accuracy.plan import load_plan

    df, meta = load_plan(spec.plan)
    layers, experts = int(df["layer"].max()) + 1, int(df["expert"].max()) + 1
    if (layers, experts) != shape or len(df) != shape[0] * shape[1]:
        raise UserError(f"plan covers {len(df)} (layer, expert) pairs over {layers} layers x {experts} experts "
                        f"(meta model {meta.get('model', '?')!r}) but model {model.name} needs all "
                        f"{shape[0]} x {shape[1]}", source=spec.plan, field="layer")

    def grid(col: str, dtype) -> np.ndarray:  # [L, E]; df is sorted by (layer, expert)
        return df[col].to_numpy(dtype=dtype).reshape(shape)

    if int(df["rank"].max()) > largest:
        raise UserError(f"rank {int(df['rank'].max())} exceeds {largest}, the smaller dimension of {model.name}'s "
                        f"expert matrices ({model.hidden} x {model.expert_ffn})", source=spec.plan, field="rank")

    return ExpertSizes(lowbit=grid("bytes_lowbit", np.float64), factors=grid("bytes_factors", np.float64),
                       full=full, bits=grid("bits", np.int64), rank=grid("rank", np.int64))


def cache_capacity(spec: RunSpec, model: ModelSpec, policy, sizes: ExpertSizes, free: float) -> tuple[float, bool]:
    """(bytes of the GPU expert cache, or of each layer's cache; whether per layer): see the module
    docstring. A cache that does not fit in the HBM left free, or holds more experts per layer than the
    model has, is a UserError."""
    if spec.cache_experts_per_layer is not None:
        if spec.cache_experts_per_layer > model.num_experts:
            raise UserError(f"{spec.cache_experts_per_layer} cached experts per layer but {model.name} has "
                            f"{model.num_experts} per layer", field="cache_experts_per_layer")
        slot = sum(sizes.of(form) for form in policy.slot_forms)  # [L, E]
        capacity = spec.cache_experts_per_layer * float(slot.max())
        total, field = capacity * model.moe_layers, "cache_experts_per_layer"
    else:
        capacity = total = spec.cache_bytes if spec.cache_bytes is not None else free
        field = "cache_bytes"
    if total > free:
        raise UserError(f"the expert cache needs {total / 1e9:.2f} GB but only {free / 1e9:.2f} GB of HBM is free "
                        "after resident weights, KV cache and reserve", field=field)
    return capacity, spec.cache_experts_per_layer is not None


def runtime_fields(spec: RunSpec, system: SystemSpec, runtime: Runtime | None = None) -> dict:
    """The Scenario fields the runtime profile decides (RunSpec's cache_policy, prefetch, prefetcher and its
    prefetch_* parameters override the profile's when given; --prefetch on a profile without a prefetcher
    turns on `recall`), and the system as the runtime's copies see it (pageable copies run at
    the link's pageable bandwidth). `runtime`: this profile instead of loading spec.runtime."""
    rt = runtime if runtime is not None else load_runtime(spec.runtime)
    if rt.copies.host_memory == "pageable":
        system = pageable_system(system, rt.name)
    pf = rt.prefetch
    kind = spec.prefetcher or (pf.kind if pf.kind != "none" else "recall")  # --prefetch on a stack without one
    prefetch = (spec.prefetcher is not None or pf.kind != "none") if spec.prefetch is None else spec.prefetch
    recall = _given(spec.prefetch_hit_rate, pf.recall)
    calibration = _given(spec.prefetch_calibration_tokens, pf.calibration_tokens)
    if prefetch and kind == "transitions" and not calibration:
        raise UserError("the transitions prefetcher learns from a calibration prefix: give "
                        "--prefetch-calibration-tokens N > 0", source=rt.name, field="prefetch.calibration_tokens")
    return {"system": system, "runtime": rt, "op_overhead": rt.op_overhead(system),
            "dequant_efficiency": tuple(rt.dequant.at(b) for b in range(FULL_PRECISION_BITS + 1)),
            "dequant_bytes_per_weight": rt.dequant.extra_bytes_per_weight,
            "attention_dequant_bytes_per_weight": rt.dequant.attention_extra_bytes_per_weight,
            "loads_block_layer": rt.copies.stream == "compute",
            "cache_policy": spec.cache_policy or rt.cache, "prefetch": prefetch, "prefetch_hit_rate": recall,
            "prefetcher": kind, "prefetch_calibration_tokens": calibration,
            "prefetch_successors": _given(spec.prefetch_successors, pf.successors)}


def _given(run_value, profile_value):
    """A run field overrides the runtime profile's figure when given (not None)."""
    return profile_value if run_value is None else run_value


def pageable_system(system: SystemSpec, runtime: str) -> SystemSpec:
    """`system` with each host link's memory -> GPU bandwidth replaced by its pageable figure."""
    links = []
    for link in system.links:
        if link.memory == "host":
            if link.pageable_bandwidth_to_gpu is None:
                raise UserError(f"runtime {runtime!r} copies from pageable memory; give the link's "
                                "pageable_bandwidth_to_gpu", source=system.name, field=f"links.{link.name}")
            link = link.model_copy(update={"bandwidth_to_gpu": link.pageable_bandwidth_to_gpu})
        links.append(link)
    return system.model_copy(update={"links": links})


def build_scenario(spec: RunSpec, system: SystemSpec | None = None, runtime: Runtime | None = None) -> Scenario:
    """`system`, `runtime`: use this hardware / runtime profile instead of loading spec.hwconfig / spec.runtime
    (e.g. a figure being calibrated)."""
    spec = with_plan_format(spec)
    system = system if system is not None else load_system(spec.hwconfig)
    model = load_model(spec.model)
    policy = get_policy(spec.policy)
    if not policy.compensates and (spec.rank is not None or spec.plan is not None):
        raise UserError(f"policy {policy.name} has no low-rank compensation; --rank/--plan apply only to "
                        f"{', '.join(names(compensates=True))}", field="rank" if spec.rank is not None else "plan")
    if spec.rank is not None and spec.plan is not None:
        raise UserError("give --rank or --plan, not both", field="rank")
    if spec.top_n > model.top_k:
        raise UserError(f"top-n {spec.top_n} exceeds the model's top-k {model.top_k} ({model.name})",
                        field="top_n")
    if policy.needs_ndp and system.ndp is None:
        raise UserError(f"policy {policy.name} needs NDP units but {system.name} has none "
                        "(try hwconfig h100-cxl-ndp)", field="policy")
    if spec.cache_bytes is not None and spec.cache_experts_per_layer is not None:
        raise UserError("give --cache-bytes or --cache-experts-per-layer, not both", field="cache_bytes")
    trace = load_run_trace(spec, model)
    sequences = len(trace.sequence_bounds())
    if spec.batch > sequences:  # lockstep decoding of B sequences needs B of them (it ran fewer, reporting B)
        raise UserError(f"batch {spec.batch} exceeds the {sequences} sequences of trace {spec.trace}; at most "
                        f"{sequences} can decode in lockstep", field="batch")
    check_formats(spec, model)
    sizes = expert_sizes(spec, model, policy.compensates)
    steps = steps_bound(trace.sequence_bounds(), spec.batch, spec.tokens)
    kv = model.kv_bytes_per_token * model.layers * spec.batch * (spec.context + spec.prompt + steps)
    resident = model.resident_bytes(spec.attention_bits, spec.attention_group, spec.attention_format)
    free = system.gpu.hbm_capacity - resident - kv - system.gpu.reserved_memory
    if free < 0:
        raise UserError(f"{model.name} does not fit on {system.gpu.name}: resident weights "
                        f"{resident / 1e9:.1f} GB + KV cache {kv / 1e9:.1f} GB + reserve "
                        f"{system.gpu.reserved_memory / 1e9:.1f} GB exceed HBM {system.gpu.hbm_capacity / 1e9:.1f} GB",
                        field="hwconfig")
    capacity, per_layer = cache_capacity(spec, model, policy, sizes, free)
    resolved = {"system": system, "model": model, "trace": trace, "policy": policy, "sizes": sizes,
                "cache_capacity": capacity, "cache_per_layer": per_layer, "free_hbm": free, "steps": spec.tokens,
                **runtime_fields(spec, system, runtime)}
    # every other Scenario field is the RunSpec field of its name (a test checks that each one is)
    return Scenario(**resolved, **{f.name: getattr(spec, f.name) for f in fields(Scenario) if f.name not in resolved})


def run_spec(spec: RunSpec, *, record_events: bool = False, progress: bool = False,
             system: SystemSpec | None = None, runtime: Runtime | None = None) -> tuple[RunResult, dict]:
    """Run one point (on `system` instead of spec.hwconfig when given); returns the raw result and its
    summary (which echoes the spec, with a plan's bits and group)."""
    spec = with_plan_format(spec)
    scenario = build_scenario(spec, system, runtime)
    if spec.engine == "analytic":  # vectorised evaluation of the same cost model (no timeline)
        from simulator.fast.engine import run as run_analytic

        result = run_analytic(scenario)
    else:
        result = run(scenario, record_events=record_events, progress=progress)
    summary = {"spec": spec.model_dump(), **summarize(result)}
    if spec.trace is not None and spec.synthetic_tokens is None:
        summary["trace"] = str(Path(spec.trace))
    return result, summary


def simulate(spec: RunSpec, system: SystemSpec | None = None, runtime: Runtime | None = None) -> dict:
    """The summary dict of one simulation point (the sweep's entry point)."""
    return run_spec(spec, system=system, runtime=runtime)[1]
