"""From a RunResult to the per-step table and the summary dict.

Definitions (decode only; the optional prefill is reported as prefill_s):
  tokens            generated tokens = sum over steps of the active batch size
  ms_per_token      decode wall time / tokens;  tokens_per_s = tokens / decode wall time
  breakdown_ms_per_token   the GPU-stream attribution of every instant (simulator.des.gpu) summed
                    over steps, per token; the seven values add up to ms_per_token
  link_bytes_per_token     bytes issued on each link (both directions) per token
  link_utilization  per link and direction: seconds the wire carries bytes / wall time
  gpu_utilization   kernel seconds / wall time;  ndp_utilization: per unit, op seconds / wall time
  cache_hit_rate    demand hits / demand lookups of the GPU expert cache (None when the policy never looks
                    up): a lookup is a layer's own access (cache_hits + prefetch_hits + cache_misses); a
                    demand hit found an entry no unused prefetch brought; the first use of a prefetched entry
                    is a prefetch hit and does not count, so prefetching cannot raise the rate by itself
  prefetch_hits     lookups that were the first use of an entry a prefetch brought (the GPU may still wait
                    for its copy); prefetch_hit_share: their share of the lookups
  prefetch_bytes    bytes copied by prefetches; prefetch_wasted_bytes: of those, entries evicted before any
                    lookup used them or still unused at the end (simulator.prefetch)
  energy            joules per token by component, tokens per joule, average power (simulator.energy;
                    None when the hwconfig has no energy figures)
"""

from __future__ import annotations

import pandas as pd

from simulator.energy import step_energy, summarize_energy
from simulator.scenario import CATEGORIES, RunResult


def step_table(result: RunResult) -> pd.DataFrame:
    """One row per decode step: times, breakdown seconds per category, bytes per link direction, cache, the
    work of its ops and, when the system has energy figures, joules per component."""
    df = pd.DataFrame({name: pd.Series(col, dtype="float64") for name, col in result.steps.items()})
    for col in ("step", "tokens", "cache_hits", "prefetch_hits", "cache_misses", "experts_gpu", "experts_ndp"):
        df[col] = df[col].astype("int64")
    df["latency_s"] = df["end_s"] - df["start_s"]
    energy = step_energy(result.scenario.system, result.steps)
    for name, joules in (energy or {}).items():  # joules per component (simulator.energy)
        df[f"energy_{name}_j"] = joules
    return df


def summarize(result: RunResult) -> dict:
    sc = result.scenario
    rows = result.steps
    tokens = int(sum(rows["tokens"]))
    wall = result.decode_time
    per_tok = 1e3 / tokens if tokens else float("nan")
    link_bytes = {name: {d: float(sum(rows[f"bytes_{name}_{d}"])) for d in busy}
                  for name, busy in result.link_busy.items()}
    c = result.counters
    lookups = c["cache_hits"] + c["prefetch_hits"] + c["cache_misses"]

    def util(busy: float) -> float:
        return busy / wall if wall > 0 else 0.0

    return {
        "policy": sc.policy.name, "hwconfig": sc.system.name, "model": sc.model.name,
        "trace": sc.trace.meta.name, "batch": sc.batch,
        "steps": len(rows["step"]), "tokens": tokens, "sim_time_s": wall, "prefill_s": result.prefill_time,
        "tokens_per_s": tokens / wall if wall > 0 else float("nan"),
        "ms_per_token": wall * per_tok,
        "breakdown_ms_per_token": {cat: float(sum(rows[cat])) * per_tok for cat in CATEGORIES},
        "bytes_per_token": sum(sum(d.values()) for d in link_bytes.values()) / tokens if tokens else 0.0,
        "link_bytes_per_token": {name: sum(d.values()) / tokens if tokens else 0.0
                                 for name, d in link_bytes.items()},
        "link_bytes": link_bytes,
        "link_utilization": {name: {d: util(b) for d, b in busy.items()}
                             for name, busy in result.link_busy.items()},
        "gpu_utilization": util(result.gpu_busy),
        "ndp_utilization": [util(b) for b in result.ndp_busy],
        "cache_hit_rate": c["cache_hits"] / lookups if lookups else None,
        "cache_hits": int(c["cache_hits"]), "prefetch_hits": int(c["prefetch_hits"]),
        "cache_misses": int(c["cache_misses"]),
        "prefetch_hit_share": c["prefetch_hits"] / lookups if lookups else None,
        "cache_evictions": int(c["cache_evictions"]), "cache_capacity_bytes": c["cache_capacity_bytes"],
        "cache_per_layer": sc.cache_per_layer,
        "fetched_bytes": {form: c[f"fetched_{form}_bytes"] for form in ("lowbit", "factors", "full")},
        "prefetch_bytes": c["prefetch_bytes"], "prefetch_wasted_bytes": c["prefetch_wasted_bytes"],
        "experts_gpu_per_step": c["experts_gpu"] / max(len(rows["step"]), 1),
        "experts_ndp_per_step": c["experts_ndp"] / max(len(rows["step"]), 1),
        "energy": summarize_energy(result, tokens),
    }
