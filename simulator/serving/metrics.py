"""Per-request records -> latency metrics, throughput and goodput; a rate sweep -> the max sustainable rate.

Per request (seconds on the serving clock, 0 = the window's start):
  queue_s = admitted - arrival          ttft_s = first_token - arrival     e2e_s = finish - arrival
  tpot_s  = (finish - first_token) / (output - 1)    (undefined, NaN, for a one-token output)
  within_slo: ttft_s <= SLO TTFT and (tpot_s <= SLO TPOT or output == 1)
Run figures: p50 / p90 / p99 of TTFT, TPOT (over requests with output > 1) and e2e latency; makespan =
the last finish; throughput = output tokens / makespan and requests / makespan; goodput = requests within
the SLO / makespan; slo_attainment = their share; mean batch (requests per step, weighted by step time)
and tokens per step; expert-cache hit rate = hits / lookups; link bytes per output token (all links, both
directions). A rate is sustainable when slo_attainment >= the ServeSpec's slo_attainment (DistServe's
goodput definition); the max sustainable rate of a sweep is the highest such rate below the first that
is not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PERCENTILES = (50, 90, 99)
REQUEST_COLUMNS = ("request", "arrival_s", "admitted_s", "first_token_s", "finish_s", "prompt_tokens",
                   "output_tokens", "queue_s", "ttft_s", "tpot_s", "e2e_s", "within_slo")


def request_table(arrival, admitted, first, finish, prompt, output, slo_ttft: float, slo_tpot: float) -> pd.DataFrame:
    out = np.asarray(output)
    ttft = first - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (finish - first) / np.maximum(out - 1, 1), np.nan)
    ok = (ttft <= slo_ttft) & ((out == 1) | (tpot <= slo_tpot))
    return pd.DataFrame({"request": np.arange(len(arrival)), "arrival_s": arrival, "admitted_s": admitted,
                         "first_token_s": first, "finish_s": finish, "prompt_tokens": np.asarray(prompt),
                         "output_tokens": out, "queue_s": admitted - arrival, "ttft_s": ttft, "tpot_s": tpot,
                         "e2e_s": finish - arrival, "within_slo": ok})


def percentiles(x: np.ndarray) -> dict[str, float | None]:
    x = x[np.isfinite(x)]
    return {f"p{q}": float(np.percentile(x, q)) if len(x) else None for q in PERCENTILES}


def summarize_requests(req: pd.DataFrame, steps: pd.DataFrame, slo_ttft: float, slo_tpot: float) -> dict:
    """The run's figures from its request table and step table (columns start_s, end_s, batch, tokens and,
    from an engine timer, cache_hits, cache_misses and bytes_* per link direction)."""
    makespan = float(req["finish_s"].max()) if len(req) else 0.0
    tokens = int(req["output_tokens"].sum())
    dur = (steps["end_s"] - steps["start_s"]).to_numpy()
    busy = float(dur.sum())
    s = {"requests": len(req), "output_tokens": tokens, "prompt_tokens": int(req["prompt_tokens"].sum()),
         "makespan_s": makespan, "steps": len(steps),
         "ttft_s": percentiles(req["ttft_s"].to_numpy()), "tpot_s": percentiles(req["tpot_s"].to_numpy()),
         "e2e_s": percentiles(req["e2e_s"].to_numpy()), "queue_s": percentiles(req["queue_s"].to_numpy()),
         "mean_queue_s": float(req["queue_s"].mean()) if len(req) else None,
         "tokens_per_s": tokens / makespan if makespan > 0 else None,
         "requests_per_s": len(req) / makespan if makespan > 0 else None,
         "slo": {"ttft_s": slo_ttft, "tpot_s": slo_tpot},
         "slo_attainment": float(req["within_slo"].mean()) if len(req) else None,
         "goodput_rps": float(req["within_slo"].sum()) / makespan if makespan > 0 else None,
         "mean_batch": float((steps["batch"].to_numpy() * dur).sum() / busy) if busy > 0 else None,
         "mean_tokens_per_step": float(steps["tokens"].mean()) if len(steps) else None,
         "busy_share": busy / makespan if makespan > 0 else None}
    if "cache_hits" in steps:
        lookups = float(steps["cache_hits"].sum() + steps["cache_misses"].sum())
        s["cache_hit_rate"] = float(steps["cache_hits"].sum()) / lookups if lookups else None
        link = [c for c in steps.columns if c.startswith("bytes_")]
        s["link_bytes_per_token"] = float(steps[link].to_numpy().sum()) / tokens if tokens else None
    return s


def max_sustainable_rate(rates: list[float], attainment: list[float | None], target: float) -> float | None:
    """The highest rate, walking up from the lowest, before the first whose attainment is below `target`
    (None when even the lowest misses it)."""
    best = None
    for rate, att in sorted(zip(rates, attainment)):
        if att is None or att < target:
            break
        best = rate
    return best
