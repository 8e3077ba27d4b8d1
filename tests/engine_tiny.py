"""Test-only builders for tiny hand-computable systems, models, traces and scenarios (engine tests)."""

from __future__ import annotations

import numpy as np

from simulator.config.model import ModelSpec
from simulator.config.system import SystemSpec
from simulator.policies.registry import get_policy
from simulator.routing.trace import Trace, TraceMeta
from simulator.scenario import ExpertSizes, Scenario

# GPU: 1000 FLOP/s, 100 B/s HBM, 1 s per kernel. Link: 10 B/s, 1 s latency. NDP: 2 units, 10 B/s, 1 s/op.
TINY_SYSTEM = {
    "name": "tiny",
    "gpu": {"name": "toy", "peak_flops": {"fp16": "1000 FLOPS"}, "hbm_bandwidth": "100 B/s",
            "hbm_capacity": "1 MB", "launch_overhead": "1 s", "compute_efficiency": 1.0,
            "memory_efficiency": 1.0},
    "host": {"memory_capacity": "1 MB", "memory_bandwidth": "100 B/s"},
    "links": [{"name": "cxl", "kind": "cxl", "memory": "cxl", "bandwidth_to_gpu": "10 B/s",
               "bandwidth_from_gpu": "10 B/s", "latency": "1 s", "dma_engines": 1}],
    "ndp": {"units": 2, "peak_flops": {"fp16": "100 FLOPS", "int4": "400 FLOPS"}, "memory_bandwidth": "10 B/s",
            "capacity": "1 MB", "op_overhead": "1 s"},
}

# hidden 4, expert ffn 2: expert = 24 params = 48 B at 16 bit, 44 B at 4 bit / group 4 (12 + 12 + 20).
# attention (gqa, 1 head of 4): 64 params = 128 B, FLOPs 128 + 16 x context; KV 16 B per token.
TINY_MODEL = {
    "name": "tiny", "layers": 1, "hidden": 4, "expert_ffn": 2, "num_experts": 2, "top_k": 1, "vocab": 1,
    "attention": {"kind": "gqa", "heads": 1, "kv_heads": 1, "head_dim": 4},
}


def tiny_system(**link_updates) -> SystemSpec:
    raw = {**TINY_SYSTEM, "links": [{**TINY_SYSTEM["links"][0], **link_updates}]}
    return SystemSpec.model_validate(raw)


def tiny_model(**updates) -> ModelSpec:
    return ModelSpec.model_validate({**TINY_MODEL, **updates})


def make_trace(expert_ids, scores=None, seq_id=None, num_experts: int = 2) -> Trace:
    ids = np.asarray(expert_ids, dtype=np.int16)  # [T, L, k]
    t, layers, k = ids.shape
    if scores is None:
        scores = np.tile(np.linspace(0.9, 0.1, k, dtype=np.float32), (t, layers, 1))
    seq = np.zeros(t, dtype=np.int32) if seq_id is None else np.asarray(seq_id, dtype=np.int32)
    pos = np.zeros(t, dtype=np.int32)
    for s in np.unique(seq):
        pos[seq == s] = np.arange((seq == s).sum())
    meta = TraceMeta(name="hand", model="tiny", num_experts=num_experts, top_k=k, layers=layers, source="test")
    return Trace(meta=meta, expert_ids=ids, scores=np.asarray(scores, dtype=np.float32), seq_id=seq, position=pos)


def tiny_scenario(policy: str, trace: Trace, model: ModelSpec | None = None, system: SystemSpec | None = None,
                  bits: int = 4, group: int = 4, rank: int = 0, **kw) -> Scenario:
    model = model or tiny_model()
    shape = (model.moe_layers, model.num_experts)
    sizes = ExpertSizes(lowbit=np.full(shape, model.expert_bytes(bits, group)),
                        factors=np.full(shape, float(model.expert_factor_bytes(rank))),
                        full=np.full(shape, model.expert_bytes(16)), bits=np.full(shape, bits),
                        rank=np.full(shape, rank))
    kw.setdefault("cache_capacity", 0.0)
    kw.setdefault("context", 0)
    kw.setdefault("steps", None)
    kw.setdefault("attention_group", group)  # attention at the experts' group unless a test says otherwise
    return Scenario(system=system or tiny_system(), model=model, trace=trace, policy=get_policy(policy),
                    sizes=sizes, free_hbm=1e6, group=group, **kw)


def timeline(result) -> list[tuple[str, str, str, float, float]]:
    """(track process, thread, name, start, end) of every logged event, ordered by start then track."""
    log = result.log
    rows = [(*log.tracks[log.track_id[i]], log.names[log.name_id[i]], round(log.start[i], 9), round(log.end[i], 9))
            for i in range(len(log))]
    return sorted(rows, key=lambda r: (r[3], r[0], r[1]))
