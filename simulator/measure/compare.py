"""Measured vs predicted: run the harness and moesim on the same scenario, per configuration.

A configuration is a policy with its settings ("offload-lrc,bits=3,top_n=2,rank=32,cache=8,batch=1"):
every field except the policy is optional (cache = experts per layer of the per-layer caches; cache_bytes
= one shared cache instead; cache_policy = lru or lfu). Both sides get the same RunSpec: the profile's
hwconfig and runtime, the harness's model.yaml and trace, the same tokens, context and group. The harness
is built from the Scenario moesim builds from it (simulator.simulate.build_scenario), so cache capacity,
expert bytes, routing, batch schedule and top-n are one object, not two copies.

Per configuration: measured ms/token (median of `repeats` timed passes after a warm-up pass, each from a
cold cache; device time: on CPU the thread's CPU time, its wall time reported beside it), predicted ms/token (the DES), rel_error = (predicted - measured) / measured, both breakdowns,
and the bookkeeping of both (hits, misses, evictions, bytes copied per form), which must be equal.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from simulator.errors import UserError
from simulator.policies.registry import policy_class

CONFIGS_FILE = Path(__file__).resolve().parents[1] / "data" / "measure-configs.txt"


def default_configs() -> list[str]:
    """The default configurations (simulator/data/measure-configs.txt: policy names live in data, not code)."""
    lines = CONFIGS_FILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@dataclass(frozen=True)
class Config:
    policy: str
    bits: int = 4
    top_n: int = 0
    rank: int | None = None
    cache: int | None = None          # experts per layer (per-layer caches)
    cache_bytes: float | None = None  # or one shared cache of this many bytes
    cache_policy: str | None = None
    batch: int = 1

    @property
    def label(self) -> str:
        cls = policy_class(self.policy)
        parts = [self.policy]
        if "lowbit" in cls.slot_forms:
            parts.append(f"{self.bits}b")
        if cls.compensates:
            parts.append(f"n{self.top_n}")
        if self.cache is not None:
            parts.append(f"cache {self.cache}/layer")
        if self.cache_bytes is not None:
            parts.append(f"cache {self.cache_bytes / 1e6:.0f} MB")
        if self.cache_policy:
            parts.append(self.cache_policy)
        parts.append(f"b{self.batch}")
        return " ".join(parts)


INTS = ("bits", "top_n", "rank", "cache", "batch")


def parse_config(text: str) -> Config:
    """'policy,key=value,...' -> Config (one-line UserError on a bad field)."""
    head, *rest = [p.strip() for p in text.split(",") if p.strip()]
    fields: dict = {"policy": head}
    for part in rest:
        key, eq, value = part.partition("=")
        if not eq or key not in Config.__dataclass_fields__ or key == "policy":
            raise UserError(f"bad configuration item {part!r} in {text!r}; expected key=value with key one of "
                            f"{', '.join(k for k in Config.__dataclass_fields__ if k != 'policy')}", field="--config")
        try:
            fields[key] = int(value) if key in INTS else float(value) if key == "cache_bytes" else value
        except ValueError:
            raise UserError(f"{key} must be a number, got {value!r} in {text!r}", field="--config") from None
    if fields.get("cache_policy") not in (None, "lru", "lfu"):
        raise UserError(f"cache_policy must be lru or lfu in {text!r}", field="--config")
    policy_class(head)  # an unknown policy: one line naming the known ones
    return Config(**fields)


def run_spec_for(cfg: Config, profile_dir, model_path, trace_dir, tokens: int, context: int, group: int):
    from simulator.config.run import RunSpec

    extra = {}
    if cfg.rank is not None:
        extra["rank"] = cfg.rank
    return RunSpec(hwconfig=str(profile_dir / "hwconfig.yaml"), runtime=str(profile_dir / "runtime.yaml"),
                   model=str(model_path), trace=str(trace_dir), policy=cfg.policy, bits=cfg.bits, top_n=cfg.top_n,
                   group=group, cache_experts_per_layer=cfg.cache, cache_bytes=cfg.cache_bytes,
                   cache_policy=cfg.cache_policy, batch=cfg.batch, tokens=tokens, context=context, **extra)


def compare_one(cfg: Config, spec, device, repeats: int, seed: int = 0) -> dict:
    """Measure the harness and simulate the same RunSpec; one result row."""
    from simulator.measure.harness import Harness
    from simulator.simulate import build_scenario, simulate

    sc = build_scenario(spec)
    harness = Harness(sc, device, seed=seed)
    harness.run()  # warm-up: first touches, kernel selection; its figures are dropped
    runs = [harness.run() for _ in range(repeats)]
    book = harness.book.as_dict()
    runs.sort(key=lambda r: r.ms_per_token)
    med = runs[len(runs) // 2]
    measured = statistics.median(r.ms_per_token for r in runs)
    summary = simulate(spec)
    predicted = summary["ms_per_token"]
    sim_book = {"cache_hits": summary["cache_hits"], "cache_misses": summary["cache_misses"],
                "cache_evictions": summary["cache_evictions"],
                "copied_bytes": sum(summary["link_bytes"][n]["to_gpu"] for n in summary["link_bytes"]),
                "fetched_bytes": summary["fetched_bytes"]}
    same = all(book[k] == v for k, v in sim_book.items())
    return {"config": cfg.label, "settings": asdict(cfg), "tokens": med.tokens,
            "measured_ms_per_token": measured, "predicted_ms_per_token": predicted,
            "rel_error": (predicted - measured) / measured,
            "measured_runs_ms_per_token": [r.ms_per_token for r in runs],
            "measured_wall_ms_per_token": statistics.median(1e3 * r.wall_seconds / r.tokens for r in runs),
            "measured_spread": (runs[-1].ms_per_token - runs[0].ms_per_token) / measured,
            "measured_breakdown_ms_per_token": {c: 1e3 * s / med.tokens for c, s in med.breakdown.items()},
            "predicted_breakdown_ms_per_token": summary["breakdown_ms_per_token"],
            "bookkeeping": {"harness": book, "simulator": sim_book, "equal": same},
            "loadavg": list(os.getloadavg())}


def summarize(rows: list[dict]) -> dict:
    errs = [abs(r["rel_error"]) for r in rows]
    return {"configurations": len(rows), "median_abs_rel_error": statistics.median(errs) if errs else None,
            "worst_abs_rel_error": max(errs) if errs else None,
            "bookkeeping_equal": all(r["bookkeeping"]["equal"] for r in rows)}


def table(rows: list[dict], categories=None) -> str:
    """Markdown: measured vs predicted per configuration, with the largest categories side by side."""
    from simulator.scenario import CATEGORIES

    cats = categories or [c for c in CATEGORIES if c != "expert_ndp"]
    head = ("| configuration | measured ms/token | predicted | rel. error | "
            + " | ".join(f"{c} (m / p)" for c in cats) + " |")
    lines = [head, "|---" * (4 + len(cats)) + "|"]
    for r in rows:
        m, p = r["measured_breakdown_ms_per_token"], r["predicted_breakdown_ms_per_token"]
        lines.append(f"| {r['config']} | {r['measured_ms_per_token']:.2f} | {r['predicted_ms_per_token']:.2f} | "
                     f"{r['rel_error']:+.1%} | " + " | ".join(f"{m[c]:.2f} / {p[c]:.2f}" for c in cats) + " |")
    return "\n".join(lines)


def with_defaults(cfg: Config, profiled_rank: int) -> Config:
    """Compensating policies take the profile's rank unless given."""
    if policy_class(cfg.policy).compensates and cfg.rank is None:
        return replace(cfg, rank=profiled_rank)
    return cfg
