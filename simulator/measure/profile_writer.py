"""`moesim profile`: run the microbenchmarks, derive a hwconfig and a runtime profile, write them.

Derivation (every figure from simulator.measure.microbench, nothing from a decode run):
  gpu.launch_overhead       CUDA: device seconds per tiny kernel (CUDA graph); CPU: seconds of one tiny op
                            (on a CPU device the issuing thread is the device, so the whole per-op cost is here)
  runtime host.per_kernel   CUDA: host seconds to issue one tiny op (on the critical path: the harness is
                            eager); CPU: 0 and off the critical path (counted in launch_overhead)
  gpu.hbm_bandwidth         bytes read + written per second by a large device-to-device copy
  gpu.memory_efficiency     the harness's 16-bit expert op at 1 token over three FFN widths, fitted
                            t = a + bytes / B: B / hbm_bandwidth (B above it raises hbm_bandwidth to B)
  gpu.peak_flops.fp16/bf16  a 256-token 16-bit GEMM through an expert matrix (compute_efficiency 1: the
                            peak is what the GEMM reaches)
  links (one, memory host)  host -> device copies over sizes, fitted latency + bytes / bandwidth, from
                            pinned memory (CUDA; pageable_bandwidth_to_gpu from pageable) or a memcpy
                            (CPU: pinned and pageable are the same memory)
  runtime kernels.<kind>    (measured op seconds - its roofline seconds) / seconds per kernel, for each op
                            kind of the harness at the harness's shape: expert from the fit's intercept a
                            plus the host's cache bookkeeping per expert (lookup, insert, slot, copy list),
                            attention at the run's context, router, compensation at the rank, other from
                            the shared experts (per MoE layer) and the LM head (per step) weighted as a
                            step issues them
  runtime dequant.efficiency[b]  stored bytes of a b-bit expert / ((t_b - a) x B): the harness's
                            dequant + GEMM op at 1 token against the 16-bit op's streaming rate
  runtime copies            CPU: pageable, on the compute stream; CUDA: pinned, on a copy stream (what the
                            harness does there)
Every figure is a median over repeats; the spread ((max - min) / median) of each is kept in profile.json
and warned about above SPREAD_WARN.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import torch

from simulator import costs
from simulator.config.runtime import Runtime, load_runtime
from simulator.config.system import SystemSpec, load_system
from simulator.measure import microbench as mb
from simulator.measure.device import cpu_name, device_name
from simulator.measure.shape import HarnessShape, write_model

SPREAD_WARN = 0.25
DEFAULT_BITS = (2, 3, 4, 8)


def measure_machine(device: torch.device, shape: HarnessShape, settings: mb.Settings, bits: tuple[int, ...],
                    rank: int, group: int, context: int, log=None) -> dict:
    """Every microbenchmark; returns the raw figures (seconds per call, fits, spreads)."""
    say = log or (lambda msg: None)
    ts, model = shape.torch_shape(), shape.model_spec()
    raw: dict = {"device": device.type}
    say("per-op cost")
    raw["per_op"] = mb.per_op(device, settings)
    if device.type == "cuda":
        raw["host_issue"] = mb.host_issue(device, settings)
        raw["gpu_launch"] = mb.gpu_launch(device, settings)
        raw["host_sync"] = mb.host_sync(device, settings)
    say("device memory bandwidth")
    raw["device_bandwidth"], raw["device_copy"] = mb.device_copy_bandwidth(device, settings)
    say("copies")
    pinned = device.type == "cuda"
    raw["h2d"] = mb.copy_curve(device, settings, "to_device", pinned)
    raw["d2h"] = mb.copy_curve(device, settings, "from_device", pinned)
    if pinned:
        raw["h2d_pageable"] = mb.copy_curve(device, settings, "to_device", False)
    say("GEMM rate")
    raw["gemm_flops"], raw["gemm"] = mb.gemm_rate(ts, device, settings)
    say("16-bit expert op over FFN widths")
    widths = sorted({max(32, ts.ffn // 2 // 32 * 32), ts.ffn, ts.ffn * 2})
    stream = {}
    for f in widths:
        s2 = mb.K.Shape(ts.hidden, f, ts.heads, ts.kv_heads, ts.head_dim, ts.vocab, ts.shared_ffn)
        stream[f] = (6 * ts.hidden * f, mb.expert_op(s2, 16, group, device, settings)["expert_gpu"])
    a, slope = mb.fit_line([b for b, _ in stream.values()], [fig.seconds for _, fig in stream.values()])
    raw["expert_full"] = {"by_ffn": stream, "intercept": a, "stream_rate": 1.0 / slope if slope > 0 else float("nan")}
    raw["expert_lowbit"] = {}
    for b in bits:
        say(f"{b}-bit dequant + expert op")
        raw["expert_lowbit"][b] = mb.expert_op(ts, b, group, device, settings)["expert_gpu"]
    if rank:
        say(f"compensation at rank {rank}")
        raw["compensation"] = mb.expert_op(ts, 16, group, device, settings, rank=rank)["compensation"]
    say("cache bookkeeping per expert")
    raw["bookkeeping"] = mb.bookkeeping(shape, settings)
    say("attention, router, shared expert, LM head")
    raw["ops"] = mb.layer_ops(ts, model.num_experts, model.top_k, context, device, settings)
    raw["settings"] = {"bits": list(bits), "rank": rank, "group": group, "context": context,
                       "shape": shape.as_dict(), "repeats": settings.repeats, "iters": settings.iters}
    return raw


def figures_with_spread(raw: dict) -> dict[str, mb.Figure]:
    """Every Figure in `raw`, by a dotted name."""
    out = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, mb.Figure):
            out[prefix] = node
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, tuple):
            for v in node:
                walk(prefix, v)

    walk("", raw)
    return out


def _q(seconds: float) -> str:
    return f"{seconds * 1e6:.4g} us"


def _bw(bps: float) -> str:
    return f"{bps / 1e9:.4g} GB/s"


def derive(raw: dict, shape: HarnessShape, device: torch.device, stamp: str, single_thread: float | None) -> tuple[str, str]:
    """(hwconfig YAML text, runtime YAML text) from the raw figures."""
    cuda = device.type == "cuda"
    model = shape.model_spec()
    s = raw["settings"]
    name = device_name(device)
    host_cpu = cpu_name()
    per_op = raw["per_op"].seconds
    launch = raw["gpu_launch"].seconds if cuda else per_op
    host_kernel = raw["host_issue"].seconds if cuda else 0.0
    rating = single_thread if single_thread is not None else round(1e-3 / (raw["host_issue"].seconds if cuda else per_op))
    rating_src = ("PassMark single-thread rating given with --cpu-single-thread" if single_thread is not None else
                  "NOT a PassMark rating: the profiler's own single-thread score, tiny torch ops issued per ms on "
                  "this CPU; the runtime profile states its host figures on this same CPU with the same score, so "
                  "they cancel here; give --cpu-single-thread (the PassMark rating) to carry them to other hosts")
    dev_bw = raw["device_bandwidth"]
    stream_rate = raw["expert_full"]["stream_rate"]
    hbm = max(dev_bw, stream_rate)
    mem_eff = min(1.0, stream_rate / hbm)
    flops = raw["gemm_flops"]
    h2d, d2h = raw["h2d"], raw["d2h"]
    pageable = raw["h2d_pageable"]["bandwidth"] if cuda else h2d["bandwidth"]
    capacity = (torch.cuda.get_device_properties(device).total_memory if cuda else
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    host_capacity = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    src = f"measured by moesim profile on {name}, {stamp}, torch {torch.__version__}"
    sp = {k: v.spread for k, v in figures_with_spread(raw).items()}

    hw = f"""# {src}.
# Every figure below is the median of {s['repeats']} timed runs (spread = (max - min) / median in the comment;
# all raw runs in profile.json). Device: {device.type}{' (the CPU itself: device and host memory are both RAM, a copy is a memcpy, one thread)' if not cuda else ''}.
name: measured-{device.type}
description: "{name} ({device.type}), measured by moesim profile"
gpu:
  name: "{name}"
  peak_flops:   # a 256-token 16-bit GEMM through an expert matrix ({model.hidden} x {model.expert_ffn}), spread {sp['gemm']:.2f}
    fp16: "{flops / 1e12:.6g} TFLOPS"
    bf16: "{flops / 1e12:.6g} TFLOPS"
  hbm_bandwidth: "{_bw(hbm)}"   # device-to-device copy, read + written: {_bw(dev_bw)} (spread {sp['device_copy']:.2f}); the 16-bit expert op streams {_bw(stream_rate)}
  hbm_capacity: "{capacity / 1e9:.6g} GB"   # {'torch.cuda.get_device_properties().total_memory' if cuda else 'physical RAM (sysconf)'}
  launch_overhead: "{_q(launch)}"   # {'device seconds per tiny kernel back to back in a CUDA graph, spread ' + format(sp['gpu_launch'], '.2f') if cuda else 'seconds of one tiny torch op on this thread (Python call, dispatch, output allocation), spread ' + format(sp['per_op'], '.2f')}
  compute_efficiency: 1.0   # peak_flops is what the GEMM reaches (measured), not a datasheet peak
  memory_efficiency: {mem_eff:.4f}   # the 16-bit expert op's streaming rate (fit over FFN widths) / hbm_bandwidth
  reserved_memory: "0 GiB"   # the harness allocates what it uses; the expert cache is sized per run
host:
  cpu:
    name: "{host_cpu}"
    single_thread: {rating}   # {rating_src}
  memory_capacity: "{host_capacity / 1e9:.6g} GB"   # physical RAM (sysconf)
  memory_bandwidth: "{_bw(dev_bw if not cuda else h2d['bandwidth'])}"   # {'the same RAM as the device' if not cuda else 'assumption: no host-memory benchmark; the pinned copy rate as a lower bound'}
links:
  - name: {'memcpy' if not cuda else 'pcie'}
    kind: pcie   # {'a memcpy between a host buffer and a device buffer in RAM' if not cuda else 'the host link of this GPU'}
    memory: host
    bandwidth_to_gpu: "{_bw(h2d['bandwidth'])}"   # fit of {'pinned ' if cuda else ''}host -> device copies over {len(h2d['figures'])} sizes (latency + bytes / bw), sources cold
    bandwidth_from_gpu: "{_bw(d2h['bandwidth'])}"   # the same fit, device -> host
    pageable_bandwidth_to_gpu: "{_bw(pageable)}"   # {'fit of copies from pageable memory' if cuda else 'pinned and pageable are the same memory on a CPU device'}
    latency: "{_q(h2d['latency'])}"   # the fit's intercept: fixed seconds per copy (issue + setup)
    dma_engines: 1   # {'one copy stream' if cuda else 'the one thread'}
"""
    system = SystemSpec.model_validate(_yaml(hw))
    gpu = system.gpu
    rt_base = {"host": {"reference_cpu": host_cpu, "reference_single_thread": rating, "per_kernel": _q(host_kernel),
                        "per_sync": _q(raw["host_sync"].seconds if cuda else 0.0), "on_critical_path": cuda},
               "kernels": dict.fromkeys(("attention", "router", "expert", "compensation", "other"), 1.0),
               "copies": {"host_memory": "pinned" if cuda else "pageable", "stream": "copy" if cuda else "compute"},
               "cache": "lru", "prefetch": {"kind": "none"}, "name": "x", "source": "x"}
    per_kernel = Runtime.model_validate(rt_base).per_kernel(system)

    def kernels(measured: float, work: tuple[float, float]) -> float:
        return max(0.0, (measured - costs.gpu_time(gpu, *work, 0.0)) / per_kernel)

    ops = raw["ops"]
    att_k = kernels(ops["attention"].seconds, costs.attention_work(model, 1, float(s["context"])))
    rou_k = kernels(ops["router"].seconds, costs.router_work(model, 1))
    head_k = kernels(ops["lm_head"].seconds, costs.lm_head_work(model, 1))
    if "shared" in ops:
        sh_k = kernels(ops["shared"].seconds, costs.shared_work(model, 1))
        other_k = (model.moe_layers * sh_k + head_k) / (model.moe_layers + 1)
        other_src = f"shared experts {sh_k:.2f} per MoE layer, LM head {head_k:.2f} per step, weighted as issued"
    else:
        other_k, other_src = head_k, "the LM head (no shared experts in this shape)"
    exp_a = raw["expert_full"]["intercept"]
    book = raw["bookkeeping"].seconds
    exp_k = max(0.0, (exp_a + book) / per_kernel)
    rank = s["rank"]
    comp_k, comp_src = 1.0, "not measured (no --rank): assumption, one kernel"
    if rank and "compensation" in raw:
        comp_k = kernels(raw["compensation"].seconds,
                         costs.compensation_work(model, 1, rank, model.expert_factor_bytes(rank)))
        comp_src = f"rank {rank}, spread {sp['compensation']:.2f}"
    eff_lines = []
    for b, fig in sorted(raw["expert_lowbit"].items()):
        stored = model.expert_bytes(b, s["group"])
        mem = max(fig.seconds - exp_a, 1e-12)
        eff = min(1.0, max(1e-4, stored / (mem * stream_rate)))
        eff_lines.append(f"    {b}: {eff:.5f}   # {b}-bit op {_q(fig.seconds)} (spread {fig.spread:.2f}): "
                         f"{stored / 1e6:.4g} MB stored / ((t - {_q(exp_a)}) x {_bw(stream_rate)})")
    default_eff = min(float(line.split(":")[1].split("#")[0]) for line in eff_lines) if eff_lines else 1.0
    k_src = "(measured op seconds - roofline seconds) / seconds per kernel"
    rt = f"""# {src}.
# The software stack of moesim's measure harness (simulator/measure/kernels.py) on this machine: eager torch
# ops, an unfused dequant kernel, copies {'on a copy stream from pinned memory' if cuda else 'on the compute stream (one thread)'}.
# Kernel counts are effective counts: {k_src}, each op of the harness timed alone at its shape
# ({model.name}: hidden {model.hidden}, expert ffn {model.expert_ffn}, group {s['group']}, context {s['context']}).
name: measured-{device.type}
description: "moesim measure harness on {name}"
source: >-
  {src}; {s['repeats']} repeats of {s['iters']} calls per figure (profile.json)
host:
  reference_cpu: "{host_cpu}"
  reference_single_thread: {rating}   # as hwconfig host.cpu.single_thread (same CPU)
  per_kernel: "{_q(host_kernel)}"   # {'host seconds to issue one tiny op, spread ' + format(sp['host_issue'], '.2f') if cuda else 'in gpu.launch_overhead (the thread is the device)'}
  per_sync: "{_q(raw['host_sync'].seconds if cuda else 0.0)}"   # {'a synchronize on an idle device' if cuda else 'no device to synchronize with'}
  on_critical_path: {'true' if cuda else 'false'}   # {'eager: the host issues each op' if cuda else 'the per-op cost is gpu.launch_overhead'}
kernels:
  attention: {att_k:.3f}   # attention at context {s['context']}: {_q(ops['attention'].seconds)}, spread {ops['attention'].spread:.2f}
  router: {rou_k:.3f}   # router: {_q(ops['router'].seconds)}, spread {ops['router'].spread:.2f}
  expert: {exp_k:.3f}   # intercept of the 16-bit expert op over FFN widths ({_q(exp_a)}) + the cache bookkeeping per expert ({_q(book)}, spread {raw['bookkeeping'].spread:.2f})
  compensation: {comp_k:.3f}   # {comp_src}
  other: {other_k:.3f}   # {other_src}
syncs_per_moe_layer: 0   # routing comes from the trace: no device -> host sync
copies:
  host_memory: {'pinned' if cuda else 'pageable'}
  stream: {'copy' if cuda else 'compute'}
dequant:
  efficiency:
{chr(10).join(eff_lines) if eff_lines else '    {}'}
  default_efficiency: {default_eff:.5f}   # the slowest measured width, for widths not measured
cache: lru   # the harness's cache (simulator.des.cache): measure runs set lru or lfu per configuration
prefetch:
  kind: none   # the harness has no prefetcher
"""
    return hw, rt


def _yaml(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def warnings_for(raw: dict) -> list[str]:
    return [f"{name}: spread {fig.spread:.0%} over {len(fig.runs)} runs (median {_q(fig.seconds)}); the machine "
            "may be busy (load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + ")"
            for name, fig in figures_with_spread(raw).items() if fig.spread > SPREAD_WARN]


def raw_json(raw: dict) -> dict:
    """profile.json: the raw figures, strict JSON."""
    def conv(node):
        if isinstance(node, mb.Figure):
            return node.as_dict()
        if isinstance(node, dict):
            return {str(k): conv(v) for k, v in node.items()}
        if isinstance(node, tuple | list):
            return [conv(v) for v in node]
        return node

    return conv(raw)


def profile(device: torch.device, shape: HarnessShape, out: Path | None, *, settings: mb.Settings,
            bits: tuple[int, ...] = DEFAULT_BITS, rank: int = 32, group: int = 128, context: int = 512,
            single_thread: float | None = None, force: bool = False, log=None) -> dict:
    """Measure, derive, validate (load_system / load_runtime) and write OUT/{hwconfig,runtime,model}.yaml +
    profile.json; returns a summary dict."""
    from simulator.fileio import dumps_json, output_directory

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()
    raw = measure_machine(device, shape, settings, bits, rank, group, context, log)
    hw, rt = derive(raw, shape, device, stamp, single_thread)
    warns = warnings_for(raw)
    summary = {"device": device_name(device), "date": stamp, "torch": torch.__version__,
               "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
               "warnings": warns, "raw": raw_json(raw)}
    if out is not None:
        with output_directory(out, "profile", force=force, command="moesim profile") as tmp:
            (tmp / "hwconfig.yaml").write_text(hw)
            (tmp / "runtime.yaml").write_text(rt)
            write_model(shape.model_spec(), tmp / "model.yaml")
            (tmp / "profile.json").write_text(dumps_json(summary, indent=1) + "\n")
            load_system(tmp / "hwconfig.yaml")   # they load, or nothing is written
            load_runtime(tmp / "runtime.yaml")
    else:
        SystemSpec.model_validate(_yaml(hw))
        Runtime.model_validate(_yaml(rt))
    summary["hwconfig_yaml"], summary["runtime_yaml"] = hw, rt
    for w in warns:
        print(f"moesim profile: warning: {w}", file=sys.stderr)
    return summary
